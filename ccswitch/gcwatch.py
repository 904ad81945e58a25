"""Cyclic-GC pauses, measured: a full collection stops the event loop (and so the media
clock) for as long as it walks every tracked object, which grows with live calls."""

from __future__ import annotations

import gc
import time
from typing import Any


class GcWatch:
    """Times every collection through `gc.callbacks` (two perf_counter calls each)."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.pause_total = [0.0, 0.0, 0.0]
        self.pause_max = [0.0, 0.0, 0.0]  # since start
        self.window_max = 0.0  # any generation, since the last take_window(reset=True)
        self._t0 = 0.0
        self._installed = False

    def install(self) -> None:
        if not self._installed:
            gc.callbacks.append(self._cb)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._cb)
            self._installed = False

    def _cb(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = int(info.get("generation", 0))
        d = time.perf_counter() - self._t0
        self.collections[g] += 1
        self.pause_total[g] += d
        if d > self.pause_max[g]:
            self.pause_max[g] = d
        if d > self.window_max:
            self.window_max = d

    def take_window(self, reset: bool = False) -> float:
        w = self.window_max
        if reset:
            self.window_max = 0.0
        return w
