from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[2] / "data" / "media"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
