"""Stand-ins for the parts of a running Server the API layer reads."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ccswitch.call.events import EventBus
from ccswitch.config import load_config_text
from ccswitch.gcwatch import GcWatch


def stub_server(tmp_path: Path, extra_yaml: str = "") -> Any:
    cfg = load_config_text(
        "database: {path: db.sqlite}\n"
        "queues:\n"
        "  sales: {number: '600', members: [{agent: '1002'}]}\n"
        "  support: {number: '601', members: [{agent: '1004'}]}\n" + extra_yaml,
        str(tmp_path / "config.yaml"))
    bus = EventBus()
    engine = SimpleNamespace(tick_hooks=[], ports_free=100, max_tick_lag=0.001)
    manager = SimpleNamespace(channels={}, list=lambda: [], find=lambda key: None)
    ua = SimpleNamespace(registrar=SimpleNamespace(all=lambda now: []), now=lambda: 0.0,
                         extensions={}, on_inbound_call=None)
    return SimpleNamespace(cfg=cfg, bus=bus, engine=engine, manager=manager, ua=ua,
                           started=time.time(), config_path=str(tmp_path / "config.yaml"),
                           gc_watch=GcWatch())


@pytest.fixture
def server(tmp_path: Path) -> Any:
    return stub_server(tmp_path)
