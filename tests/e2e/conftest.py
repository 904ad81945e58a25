"""Fixtures for end-to-end tests: the real server plus real peers, all on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import CcswitchServer, running_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CcswitchServer]:
    with running_server(tmp_path / "server") as srv:
        yield srv


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
