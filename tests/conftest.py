"""Shared pytest configuration."""

from __future__ import annotations

import sys
from pathlib import Path

# tests import `tests.peers...` helpers: make the repository root importable
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
