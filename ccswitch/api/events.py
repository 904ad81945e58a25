"""Fan-out of bus events to WebSocket clients, with per-client filters and role scope.

Publishing stays cheap: an event is serialised once (only if some client wants it)
and put on each interested client's bounded queue; a client too slow to keep up
is disconnected (code 1013) rather than letting its queue grow without bound.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccswitch.api.auth import Principal
    from ccswitch.call.events import EventBus

QUEUE_LIMIT = 5000

# visible(principal, event, known linkedids of this client) -> bool
Visible = Callable[["Principal", dict[str, Any], set[str]], bool]


class Client:
    def __init__(self, principal: Principal, types: str | None, queue: str | None,
                 agent: str | None) -> None:
        self.principal = principal
        self.exact: set[str] = set()
        self.prefixes: list[str] = []
        for t in (types or "").split(","):
            t = t.strip().upper()
            if not t:
                continue
            if t.endswith("*"):
                self.prefixes.append(t[:-1])
            else:
                self.exact.add(t)
        self.queue = queue or None
        self.agent = agent or None
        self.known: set[str] = set()  # calls (linkedids) this client may follow
        self.queue_: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LIMIT)
        self.overflowed = False

    def wants_type(self, t: str) -> bool:
        if not self.exact and not self.prefixes:
            return True
        return t in self.exact or any(t.startswith(p) for p in self.prefixes)

    def wants(self, e: dict[str, Any]) -> bool:
        if not self.wants_type(e["event"]):
            return False
        if self.queue is not None and e.get("queue") != self.queue:
            return False
        if self.agent is not None:
            agents = e.get("agents")
            if e.get("agent") != self.agent and not (isinstance(agents, list)
                                                     and self.agent in agents):
                return False
        return True

    def push(self, data: str) -> None:
        try:
            self.queue_.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    def close(self) -> None:
        try:
            self.queue_.put_nowait(None)
        except asyncio.QueueFull:
            # make room for the end marker: the client is being dropped anyway
            self.queue_.get_nowait()
            self.queue_.put_nowait(None)


class EventHub:
    def __init__(self, bus: EventBus, visible: Visible) -> None:
        self.clients: set[Client] = set()
        self.visible = visible
        self.sent = 0
        self.bus = bus
        self._unsub: Callable[[], None] | None = None

    def add(self, client: Client) -> None:
        # subscribed only while someone listens: an idle hub costs the bus nothing
        if self._unsub is None:
            self._unsub = self.bus.subscribe(self._on_event)
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        if not self.clients and self._unsub is not None:
            self._unsub()
            self._unsub = None

    def close(self) -> None:
        for c in list(self.clients):
            c.close()
        if self._unsub is not None:
            self._unsub()
            self._unsub = None

    def _on_event(self, e: dict[str, Any]) -> None:
        if not self.clients:
            return
        data: str | None = None
        for c in list(self.clients):
            if c.overflowed or not c.wants(e):
                continue
            if not self.visible(c.principal, e, c.known):
                continue
            if data is None:
                data = json.dumps(e, default=str, separators=(",", ":"))
            c.push(data)
            self.sent += 1
