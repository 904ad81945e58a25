"""The event bus: one stream of call, queue and agent events for the CLI, API, CDRs and wallboard.

Publishing is synchronous and cheap; a subscriber that needs to do I/O queues
the event itself.  Event names follow Asterisk/FreeSWITCH usage.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("ccswitch.events")

CHANNEL_CREATE = "CHANNEL_CREATE"
CHANNEL_RINGING = "CHANNEL_RINGING"
CHANNEL_ANSWER = "CHANNEL_ANSWER"
CHANNEL_BRIDGE = "CHANNEL_BRIDGE"
CHANNEL_UNBRIDGE = "CHANNEL_UNBRIDGE"
CHANNEL_HANGUP = "CHANNEL_HANGUP"
DTMF = "DTMF"

Event = dict[str, Any]
Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subs: list[tuple[Subscriber, frozenset[str] | None]] = []
        self._wants: dict[str, bool] = {}  # event type -> has a subscriber (cache)
        self.published = 0

    def subscribe(self, callback: Subscriber, types: set[str] | None = None) -> Callable[[], None]:
        entry = (callback, frozenset(types) if types else None)
        self._subs.append(entry)
        self._wants.clear()

        def unsubscribe() -> None:
            if entry in self._subs:
                self._subs.remove(entry)
                self._wants.clear()

        return unsubscribe

    def wants(self, event_type: str) -> bool:
        """Whether anyone subscribes to `event_type`: publishers check this before building
        the event's fields (per call, most event types have no subscriber)."""
        w = self._wants.get(event_type)
        if w is None:
            w = self._wants[event_type] = any(
                t is None or event_type in t for _, t in self._subs)
        return w

    def publish(self, event_type: str, **fields: Any) -> None:
        self.published += 1
        if not self.wants(event_type):
            return
        ev: Event = {"event": event_type, "time": time.time(), **fields}
        for cb, types in list(self._subs):
            if types is None or event_type in types:
                try:
                    cb(ev)
                except Exception:  # a broken subscriber must not break call handling
                    log.exception("event subscriber failed on %s", event_type)
