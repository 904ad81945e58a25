"""Helpers for the ACD tests: a fake clock driving the engine like the lead would."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from ccswitch.apps.acd import Acd, Event, Member, Offer, QueueSpec


def spec(
    name: str = "q", members: Iterable[str | Member] = ("a1", "a2", "a3"), **kw: Any
) -> QueueSpec:
    """A QueueSpec with sane test defaults: no retry delay, no wrap-up unless asked."""
    kw.setdefault("retry_delay", 0.0)
    kw.setdefault("ring_timeout", 10.0)
    mem = [m if isinstance(m, Member) else Member(m) for m in members]
    return QueueSpec(name=name, members=mem, **kw)


class Harness:
    """An Acd plus a fake clock. `advance()` fires every due timer in order,
    dispatching after each, as the integration layer does."""

    def __init__(self, *specs: QueueSpec, seed: int = 0, t: float = 1000.0) -> None:
        self.t = t
        self.acd = Acd(rng=random.Random(seed))
        self.acd.configure(list(specs), self.t)
        self.offers: list[Offer] = []
        self.events: list[Event] = []

    # -- driving ----------------------------------------------------------
    def dispatch(self) -> list[Offer]:
        got = self.acd.dispatch(self.t)
        self.offers += got
        self._collect()
        return got

    def advance(self, dt: float) -> list[Offer]:
        """Move the clock by dt, running tick + dispatch at every deadline on the way."""
        end = self.t + dt
        got: list[Offer] = []
        got += self.dispatch()
        while True:
            d = self.acd.next_deadline()
            if d is None or d > end:
                break
            self.t = max(self.t, d)
            self.events += self.acd.tick(self.t)
            got += self.dispatch()
        self.t = end
        return got

    def _collect(self) -> None:
        self.events += self.acd.drain_events()

    # -- shortcuts ----------------------------------------------------------
    def login(self, *agents: str, queue: str | None = None) -> None:
        for a in agents:
            self.acd.login(a, queue, self.t)
        self._collect()

    def join(self, caller: str, queue: str = "q", number: str = "", **kw: Any) -> int:
        r = self.acd.join(queue, caller, number or f"n-{caller}", self.t, **kw)
        self._collect()
        assert r.ok, r
        return r.position

    def answer(self, caller: str, agent: str) -> tuple[str, ...]:
        r = self.acd.offer_answered(caller, agent, self.t)
        self._collect()
        assert r.ok, r
        return r.stop_ringing

    def fail(self, caller: str, agent: str, reason: str = "no_answer") -> None:
        assert self.acd.offer_failed(caller, agent, self.t, reason)
        self._collect()

    def end(self, agent: str) -> None:
        assert self.acd.call_ended(agent, self.t)
        self._collect()

    def state(self, agent: str) -> str:
        a = self.acd.get_agent(agent)
        return "gone" if a is None else str(a.state)

    def named(self, name: str, **match: Any) -> list[Event]:
        self._collect()
        return [
            e
            for e in self.events
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())
        ]

    def ok(self) -> None:
        assert self.acd.check_invariants() == []


def offer_map(offers: Iterable[Offer]) -> Mapping[str, tuple[str, ...]]:
    return {o.caller: o.agents for o in offers}


@pytest.fixture
def h() -> Harness:
    return Harness(spec())
