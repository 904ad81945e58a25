"""Property-style test: thousands of random operations, in random order, against
the invariants the issue lists, with a fake clock and a simulated lead that
behaves like the real one (rings what dispatch() offers, stops what
QUEUE_OFFER_CANCEL says, and sometimes reports stale or duplicate events)."""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from typing import Any

import pytest

from ccswitch.apps.acd import (
    AGENT_STATE,
    QUEUE_CALL_END,
    QUEUE_CALLER_JOIN,
    QUEUE_CALLER_LEAVE,
    QUEUE_OFFER_CANCEL,
    Acd,
    AcdError,
    AgentState,
    CallerState,
    Member,
    Offer,
    QueueCallRecord,
    QueueSpec,
)
from ccswitch.apps.acd.strategies import effective_skills, matches

AGENTS = [f"a{i}" for i in range(8)]


def specs(variant: int) -> list[QueueSpec]:
    sales = QueueSpec(
        "sales",
        strategy="ringall" if variant % 2 == 0 else "linear",
        ring_timeout=8,
        retry_delay=3,
        wrapup=4,
        max_wait=90,
        overflow="voicemail",
        autopause_after=3,
        vip_numbers=["vip"],
        members=[Member("a0", 0), Member("a1", 1), Member("a2", 0), Member("a3", 2)],
    )
    support = QueueSpec(
        "support",
        strategy="skills",
        ring_timeout=6,
        retry_delay=0,
        wrapup=0,
        skill_widen_after=15,
        leave_when_empty=True,
        members=[
            Member("a2", 0, {"es": 3, "fr": 1}),
            Member("a3", 0, {"es": 1}),
            Member("a4", 1, {"fr": 3}),
            Member("a5", 0, {"es": 2, "fr": 2}),
        ],
        dynamic_members=True,
    )
    billing = QueueSpec(
        "billing",
        strategy=["roundrobin", "leastrecent", "fewestcalls", "random"][variant % 4],
        ring_timeout=10,
        retry_delay=5,
        wrapup=2,
        max_callers=6,
        join_empty=False,
        members=[Member(a, i % 2) for i, a in enumerate(["a5", "a6", "a7", "a0"])],
    )
    out = [sales, support, billing]
    if variant == 3:
        out.remove(billing)  # a queue disappears in a reload
    return out


class Sim:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)
        self.t = 100.0
        self.acd = Acd(rng=random.Random(seed + 1))
        self.variant = 0
        self.acd.configure(specs(0), self.t)
        self.ringing: set[tuple[str, str]] = set()  # what the lead is ringing
        self.calls: dict[str, str] = {}  # agent -> caller, bridged (lead's view)
        self.next_id = 0
        self.joined: set[str] = set()
        self.gone: set[str] = set()
        self.live: set[str] = set()  # joined and not gone
        self.final_leaves: Counter[str] = Counter()
        self.call_ends: Counter[str] = Counter()
        self.records: Counter[str] = Counter()
        self.agent_state: dict[str, str] = {}
        self.offers_made = 0
        self.answered = 0

    # -- the lead ------------------------------------------------------------
    def dispatch(self) -> None:
        acd = self.acd
        free = {
            aid
            for aid in acd.agent_ids()
            if (a := acd.get_agent(aid)) is not None and a.state is AgentState.AVAILABLE
        }
        snapshot = {
            aid: (a.busy_direct, a.paused, a.wrapup_until, set(a.queues()))
            for aid in free
            if (a := acd.get_agent(aid)) is not None
        }
        before = {cid: self._caller_view(cid) for cid in self.live}
        offers = acd.dispatch(self.t)
        seen: set[str] = set()
        for o in offers:
            self._check_offer(o, snapshot, before, seen)
            for aid in o.agents:
                self.ringing.add((o.caller, aid))
        self.offers_made += len(offers)
        self.events()

    def _caller_view(self, cid: str) -> Any:
        c = self.acd.get_caller(cid)
        if c is None:
            return None
        return (c.state, effective_skills(c.required_skills, c.widen_steps), c.queue)

    def _check_offer(
        self, o: Offer, snapshot: dict[str, Any], before: dict[str, Any], seen: set[str]
    ) -> None:
        assert o.caller not in self.gone, f"{o.caller} offered after leaving"
        view = before.get(o.caller)
        assert view is not None and view[0] is CallerState.WAITING, (o, view)
        spec = self.acd.get_spec(o.queue)
        assert spec is not None
        if spec.strategy != "ringall":
            assert len(o.agents) == 1, o
        members = dict(self.acd.members(o.queue))
        for aid in o.agents:
            assert aid not in seen, f"{aid} offered twice in one dispatch"
            seen.add(aid)
            assert aid in snapshot, f"{aid} offered while not available"
            busy, paused, wrap, queues = snapshot[aid]
            assert not busy and not paused and wrap is None
            assert o.queue in queues
            assert matches(members[aid].skills, view[1]), (aid, view)
            assert not any(a == aid for _, a in self.ringing), f"{aid} already ringing"
            assert aid not in self.calls, f"{aid} offered while on a call"

    def events(self, evs: list[Any] | None = None) -> None:
        for ev in self.acd.drain_events() if evs is None else evs:
            name = ev["event"]
            if name == QUEUE_OFFER_CANCEL:
                pair = (ev["caller"], ev["agent"])
                assert pair in self.ringing, f"cancel of a ring the lead does not have {pair}"
                self.ringing.discard(pair)
            elif name == QUEUE_CALLER_JOIN:
                assert ev["caller"] not in self.gone
            elif name == QUEUE_CALLER_LEAVE and ev["joined"] and not ev["keeps_place"]:
                cid = ev["caller"]
                if ev["reason"] != "answered":
                    self._gone(cid)
                    self.final_leaves[cid] += 1
                    assert self.final_leaves[cid] == 1, f"{cid} left twice"
                    assert not any(c == cid for c, _ in self.ringing), f"{cid} left while ringing"
            elif name == QUEUE_CALL_END:
                cid = ev["caller"]
                assert self.calls.pop(ev["agent"]) == cid
                if not ev["retry"]:  # a callback that will be tried again is not over
                    self.call_ends[cid] += 1
                    assert self.call_ends[cid] == 1, f"{cid}: call ended twice (double wrap-up)"
                    self._gone(cid)
            elif name == AGENT_STATE:
                prev = self.agent_state.get(ev["agent"], "logged_out")
                assert ev["prev_state"] == prev, ev
                assert ev["state"] != prev or ev["state"] == "paused" or ev["state"] == "on_call"
                self.agent_state[ev["agent"]] = ev["state"]
        for rec in self.acd.drain_records():
            if isinstance(rec, QueueCallRecord):
                self.records[rec.caller_id] += 1
                assert self.records[rec.caller_id] == 1, f"{rec.caller_id} recorded twice"
                assert rec.wait >= 0 and rec.talk >= 0
            else:
                assert rec.end >= rec.start

    def _gone(self, cid: str) -> None:
        self.gone.add(cid)
        self.live.discard(cid)
        assert self.acd.get_caller(cid) is None

    def advance(self, dt: float) -> None:
        end = self.t + dt
        while True:
            d = self.acd.next_deadline()
            if d is None or d > end:
                break
            self.t = max(self.t, d)
            self.events(self.acd.tick(self.t))  # tick() returns the queued events
            nd = self.acd.next_deadline()
            assert nd is None or nd > self.t
            self.dispatch()
        self.t = end

    # -- random operations ------------------------------------------------------
    def pick_caller(self) -> str:
        if self.live and self.r.random() < 0.9:
            return self.r.choice(sorted(self.live))
        return f"c{self.r.randrange(self.next_id + 2)}"  # maybe gone or unknown

    def step(self) -> None:
        r = self.r
        acd = self.acd
        op = r.choices(
            [
                "join",
                "leave",
                "answer",
                "fail",
                "stale",
                "end",
                "transfer",
                "login",
                "logout",
                "pause",
                "unpause",
                "busy",
                "callback",
                "cb_result",
                "advance",
                "reload",
            ],
            weights=[14, 5, 12, 6, 3, 8, 2, 4, 2, 3, 4, 4, 2, 3, 12, 0.3],
        )[0]
        t = self.t
        if op == "join":
            cid = f"c{self.next_id}"
            self.next_id += 1
            q = r.choice(["sales", "support", "billing"])
            skills = {}
            if q == "support" and r.random() < 0.7:
                skills = {r.choice(["es", "fr"]): r.randint(1, 3)}
            number = "vip" if r.random() < 0.1 else f"n{cid}"
            res = acd.join(q, cid, number, t, priority=r.choice([0, 0, 0, 1, 5]), skills=skills)
            if res.ok:
                self.joined.add(cid)
                self.live.add(cid)
        elif op == "leave":
            cid = self.pick_caller()
            reason = r.choice(["abandoned", "abandoned", "transferred", "cancelled"])
            stop = acd.leave(cid, t, reason=reason)
            for aid in stop:
                assert (cid, aid) in self.ringing
        elif op == "answer" and self.ringing:
            cid, aid = r.choice(sorted(self.ringing))
            assert acd.offer_answered(cid, aid, t).ok, "a ring the lead has must be answerable"
            self.ringing.discard((cid, aid))
            self.calls[aid] = cid
            self.answered += 1
        elif op == "fail" and self.ringing:
            cid, aid = r.choice(sorted(self.ringing))
            assert acd.offer_failed(
                cid, aid, t, r.choice(["no_answer", "busy", "rejected", "error"])
            )
            self.ringing.discard((cid, aid))
        elif op == "stale":
            cid, aid = self.pick_caller(), r.choice(AGENTS)
            if (cid, aid) not in self.ringing:
                assert not acd.offer_answered(cid, aid, t).ok
                assert not acd.offer_failed(cid, aid, t, "no_answer")
        elif op == "end":
            aid = r.choice(AGENTS)
            acd.call_ended(aid, t)
            if r.random() < 0.3:
                acd.call_ended(aid, t)  # duplicate BYE
        elif op == "transfer":
            if r.random() < 0.5:
                acd.agent_on_transfer(r.choice(AGENTS), t)
            else:
                for aid in acd.transfer_out(self.pick_caller(), t, target="x"):
                    assert any(a == aid for _, a in self.ringing)
        elif op == "login":
            queue = r.choice([None, None, "sales", "support", "billing"])
            with contextlib.suppress(AcdError):
                acd.login(r.choice([*AGENTS, "dyn1"]), queue, t)
        elif op == "logout":
            with contextlib.suppress(AcdError):
                acd.logout(r.choice(AGENTS), r.choice([None, "sales", "support"]), t)
        elif op == "pause":
            with contextlib.suppress(AcdError):
                acd.pause(r.choice(AGENTS), r.choice(["lunch", "break"]), t)
        elif op == "unpause":
            with contextlib.suppress(AcdError):
                acd.unpause(r.choice(AGENTS), t)
        elif op == "busy":
            acd.set_busy(r.choice([*AGENTS, "x100"]), r.random() < 0.4, t)
        elif op == "callback":
            acd.request_callback(self.pick_caller(), t)
        elif op == "cb_result":
            cid = self.pick_caller()
            c = acd.get_caller(cid)
            if c is not None and c.callback and c.state is CallerState.CONNECTED:
                if r.random() < 0.6:
                    acd.callback_answered(cid, t)
                else:
                    acd.callback_failed(cid, t, retry_after=r.choice([None, 0.0, 10.0]))
        elif op == "advance":
            self.advance(r.choice([0.0, 0.5, 1.0, 3.0, 7.0, 20.0]))
        elif op == "reload":
            self.variant = r.randrange(4)
            acd.configure(specs(self.variant), t)
        self.events()
        if r.random() < 0.85:  # the lead dispatches after (nearly) every operation
            self.dispatch()
        self.check()

    def check(self) -> None:
        acd = self.acd
        assert acd.check_invariants() == []
        # the lead's view of rings and calls is the ACD's
        acd_rings = set()
        for cid in self.live:
            c = acd.get_caller(cid)
            assert c is not None
            acd_rings |= {(cid, a) for a in c.offer_agents}
        assert acd_rings == self.ringing

    def teardown(self) -> None:
        acd = self.acd
        for cid in sorted(self.live):
            acd.leave(cid, self.t, reason="cancelled" if self.r.random() < 0.3 else "abandoned")
        self.events()
        for aid in [*AGENTS, "dyn1", "x100"]:
            acd.set_busy(aid, False, self.t)
        self.advance(1000)
        self.dispatch()
        assert not self.ringing and not self.calls
        # states never stick: available, paused or logged out (wrap-up has expired)
        for aid in acd.agent_ids():
            a = acd.get_agent(aid)
            assert a is not None
            assert a.state in (AgentState.AVAILABLE, AgentState.PAUSED, AgentState.LOGGED_OUT)
            assert a.offer_caller is None and a.call_caller is None and a.wrapup_until is None
        # every caller who joined left exactly once and was recorded exactly once
        assert self.joined == set(self.final_leaves) | set(self.call_ends)
        assert set(self.records) == self.joined
        assert all(n == 1 for n in self.records.values())
        for aid in acd.agent_ids():
            with contextlib.suppress(AcdError):
                acd.logout(aid, None, self.t)
        acd.configure([], self.t)
        self.advance(1000)
        self.events()
        acd.dispatch(self.t)
        assert acd.counts() == dict.fromkeys(
            (
                "queues",
                "agents",
                "callers",
                "busy",
                "available",
                "timers",
                "dirty",
                "events",
                "records",
            ),
            0,
        )


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_random_operations_keep_invariants(seed: int) -> None:
    sim = Sim(seed)
    for aid in AGENTS[:6]:
        sim.acd.login(aid, None, sim.t)
    for _ in range(5000):
        sim.step()
    # the run did exercise the machinery
    assert sim.offers_made > 300 and sim.answered > 100, (sim.offers_made, sim.answered)
    sim.teardown()
