"""Event stream filters, scope and the bound on a slow client's queue."""

from __future__ import annotations

from typing import Any

from ccswitch.api import events as evmod
from ccswitch.api.auth import Principal
from ccswitch.api.events import Client, EventHub
from ccswitch.call.events import EventBus

ADMIN = Principal("a", "admin")


def test_client_filters() -> None:
    c = Client(ADMIN, "channel_hangup, QUEUE_*", None, None)
    assert c.wants({"event": "CHANNEL_HANGUP"}) and c.wants({"event": "QUEUE_CALLER_JOIN"})
    assert not c.wants({"event": "CHANNEL_CREATE"})
    q = Client(ADMIN, None, "sales", None)
    assert q.wants({"event": "QUEUE_CALLER_JOIN", "queue": "sales"})
    assert not q.wants({"event": "QUEUE_CALLER_JOIN", "queue": "support"})
    assert not q.wants({"event": "CHANNEL_CREATE"})
    a = Client(ADMIN, None, None, "1002")
    assert a.wants({"event": "AGENT_STATE", "agent": "1002"})
    assert a.wants({"event": "QUEUE_CALLER_OFFER", "agents": ["1003", "1002"]})
    assert not a.wants({"event": "AGENT_STATE", "agent": "1003"})


def test_hub_scope_and_overflow(monkeypatch: Any) -> None:
    bus = EventBus()
    seen: list[str] = []

    def visible(p: Principal, e: dict[str, Any], known: set[str]) -> bool:
        seen.append(p.username)
        return p.role == "admin" or e.get("agent") == p.extension

    hub = EventHub(bus, visible)
    admin = Client(ADMIN, None, None, None)
    agent = Client(Principal("b", "agent", extension="1002"), None, None, None)
    assert not bus.wants("AGENT_STATE")  # nobody listens: not subscribed
    hub.add(admin)
    hub.add(agent)
    bus.publish("AGENT_STATE", agent="1002", state="available")
    bus.publish("AGENT_STATE", agent="1003", state="paused")
    assert admin.queue_.qsize() == 2 and agent.queue_.qsize() == 1
    assert '"agent":"1002"' in agent.queue_.get_nowait()  # type: ignore[operator]
    # a client that does not read is dropped, with an end marker, not grown for ever
    monkeypatch.setattr(evmod, "QUEUE_LIMIT", 3)
    slow = Client(ADMIN, None, None, None)
    hub.add(slow)
    for i in range(10):
        bus.publish("CHANNEL_CREATE", channel=str(i))
    assert slow.overflowed
    items = []
    while not slow.queue_.empty():
        items.append(slow.queue_.get_nowait())
    assert items[-1] is None and len(items) <= 3
    hub.close()
    assert not bus.wants("CHANNEL_CREATE")
