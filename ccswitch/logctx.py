"""Structured logs that carry the call uuid.

A context variable holds the call (linkedid) a task works for; it is set once
when a call's task starts (`bind_call`), and asyncio copies it into every task
that task spawns, so everything logged on behalf of the call carries it at the
cost of one ContextVar.get() per log record.  `install()` adds the filter to the
root handlers and sets the format: text (`... [call=abc123] message`) or JSON
(one object per line: ts, level, logger, call, msg, exc).
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from typing import Any

__all__ = ["bind_call", "current_call", "install"]

_call: contextvars.ContextVar[str] = contextvars.ContextVar("ccswitch_call", default="")


def bind_call(call_uuid: str) -> None:
    _call.set(call_uuid)


def current_call() -> str:
    return _call.get()


class CallFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call"):
            record.call = _call.get()
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(call_tag)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        call = getattr(record, "call", "")
        record.call_tag = f"[call={call}] " if call else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call = getattr(record, "call", "")
        if call:
            out["call"] = call
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def install(fmt: str = "text") -> None:
    root = logging.getLogger()
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    for h in root.handlers:
        if not any(isinstance(f, CallFilter) for f in h.filters):
            h.addFilter(CallFilter())
        h.setFormatter(formatter)
