"""Monitoring's media routing, without sockets: which party hears the mix in each mode,
DTMF switching, and the plain bridge restored at the end."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from ccswitch.apps.monitor import MonitorError, MonitorService
from ccswitch.call.events import EventBus


class FakeEndpoint:
    def __init__(self) -> None:
        self.taps: list[Any] = []
        self.source: Any = None
        self.peer: Any = None

    def set_source(self, source: Any, on_done: Any = None) -> None:
        self.source = source


class FakeChannel:
    def __init__(self, name: str) -> None:
        self.id = self.name = self.endpoint_name = name
        self.caller = name
        self.media = FakeEndpoint()
        self.listeners: list[Any] = []
        self.vars: dict[str, Any] = {}
        self.is_gone = False
        self.app = self.app_data = ""
        self.hung_up = False

    def hangup(self, cause: str = "") -> None:
        self.hung_up = True
        self.is_gone = True
        for cb in list(self.listeners):
            cb(self, "hangup", cause)

    def notify(self, what: str, data: Any = None) -> None:
        for cb in list(self.listeners):
            cb(self, what, data)


def tone(f: float) -> bytes:
    t = np.arange(160) / 8000
    return (np.sin(2 * np.pi * f * t) * 8000).astype("<i2").tobytes()


def level(pcm: bytes, f: float) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    t = np.arange(len(x)) / 8000
    return float(abs(np.dot(x, np.exp(-2j * np.pi * f * t))) / len(x))


@pytest.fixture
def parts() -> tuple[MonitorService, FakeChannel, FakeChannel, FakeChannel, list[str]]:
    bus = EventBus()
    events: list[str] = []
    bus.subscribe(lambda e: events.append(e["event"] + ":" + str(e.get("mode", ""))))
    server = SimpleNamespace(engine=SimpleNamespace(tick_hooks=[]), bus=bus)
    svc = MonitorService(server)  # type: ignore[arg-type]
    return svc, FakeChannel("sup"), FakeChannel("agent"), FakeChannel("caller"), events


def run_tick(svc: MonitorService, parties: dict[str, FakeChannel], freqs: dict[str, float]
             ) -> dict[str, bytes]:
    """Feed each party's tone into its taps, run the tick, return what each endpoint plays."""
    for _ in range(3):  # fill the jitter buffers
        for k, ch in parties.items():
            for tap in ch.media.taps:
                tap(tone(freqs[k]))
        for hook in svc.engine_hooks:
            hook(0.0)
    return {k: ch.media.source.next_frame() for k, ch in parties.items()
            if ch.media.source is not None}


def test_modes_route_the_mix(parts: Any) -> None:
    svc, sup, agent, caller, events = parts
    s = svc.start(sup, "agent", agent, caller, "listen", "boss")  # type: ignore[arg-type]
    parties = {"sup": sup, "agent": agent, "caller": caller}
    freqs = {"sup": 1300.0, "agent": 900.0, "caller": 500.0}
    out = run_tick(svc, parties, freqs)
    # listen: only the supervisor gets the mix; the parties keep the plain relay
    assert set(out) == {"sup"}
    assert level(out["sup"], 500) > 1000 and level(out["sup"], 900) > 1000
    assert level(out["sup"], 1300) < 50
    sup.notify("dtmf", "5")  # whisper: the agent gets caller + supervisor
    out = run_tick(svc, parties, freqs)
    assert s.mode == "whisper" and set(out) == {"sup", "agent"}
    assert level(out["agent"], 1300) > 1000 and level(out["agent"], 500) > 1000
    assert level(out["agent"], 900) < 50
    sup.notify("dtmf", "6")  # barge: everyone
    out = run_tick(svc, parties, freqs)
    assert set(out) == {"sup", "agent", "caller"}
    assert level(out["caller"], 1300) > 1000 and level(out["caller"], 900) > 1000
    assert level(out["caller"], 500) < 50
    sup.notify("dtmf", "4")
    assert s.mode == "listen" and agent.media.source is None and caller.media.source is None
    sup.notify("dtmf", "9")  # not a mode key
    assert s.mode == "listen"
    # the call ends: monitoring stops, taps and hooks go, the supervisor is hung up
    caller.hangup()
    assert sup.hung_up and not svc.sessions and not svc.engine_hooks
    assert not agent.media.taps and not agent.listeners
    assert events.count("MONITOR_START:listen") == 1
    assert "MONITOR_MODE:whisper" in events and "MONITOR_STOP:" in events


def test_one_monitor_per_call_and_bad_modes(parts: Any) -> None:
    svc, sup, agent, caller, _ = parts
    with pytest.raises(MonitorError):
        svc.start(sup, "agent", agent, caller, "spy", "boss")
    s = svc.start(sup, "agent", agent, caller, "barge", "boss")
    with pytest.raises(MonitorError) as ei:
        svc.start(FakeChannel("sup2"), "agent", agent, caller, "listen", "other")
    assert ei.value.status == 409
    with pytest.raises(MonitorError):
        s.set_mode("shout")
    s.stop("api")  # the parties go back to the plain bridge
    assert agent.media.source is None and caller.media.source is None and sup.hung_up


def test_feature_codes_parse() -> None:
    from ccswitch.config import load_config_text

    server = SimpleNamespace(engine=SimpleNamespace(tick_hooks=[]), bus=EventBus(),
                             cfg=load_config_text("features: {monitor_barge: '*99'}"))
    svc = MonitorService(server)  # type: ignore[arg-type]
    assert svc.feature_mode("*611002") == ("listen", "1002")
    assert svc.feature_mode("*621002") == ("whisper", "1002")
    assert svc.feature_mode("*991002") == ("barge", "1002")
    assert svc.feature_mode("*61") is None and svc.feature_mode("1002") is None
