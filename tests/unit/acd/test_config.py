"""configure(): first load, reload keeping state, removed queues and members."""

from __future__ import annotations

import pytest

from ccswitch.apps.acd import (
    QUEUE_CALLER_LEAVE,
    QUEUE_MEMBER_LOGOUT,
    QUEUE_TIMEOUT,
    AcdError,
    Member,
    QueueCallRecord,
    QueueSpec,
)

from .conftest import Harness, spec


def test_reload_keeps_callers_agents_stats_and_rr_memory() -> None:
    h = Harness(spec(strategy="roundrobin", members=["a1", "a2", "a3"]))
    h.login("a1", "a2", "a3")
    h.join("c1")
    (o,) = h.dispatch()
    h.answer("c1", o.agents[0])
    h.end(o.agents[0])
    h.join("c2")
    h.join("c3")
    h.acd.pause("a2", "x", h.t)
    h.acd.pause("a3", "x", h.t)
    before = h.acd.queue_status("q", h.t)
    h.acd.configure([spec(strategy="roundrobin", members=["a1", "a2", "a3"], ring_timeout=33)], h.t)
    h.ok()
    after = h.acd.queue_status("q", h.t)
    assert (after.offered, after.answered, after.waiting) == (before.offered, before.answered, 2)
    assert h.acd.positions("q") == [("c2", 1), ("c3", 2)]
    assert h.state("a2") == "paused" and h.state("a1") == "available"
    h.acd.unpause("a2", h.t)
    h.acd.unpause("a3", h.t)
    (o1, o2) = h.dispatch()
    # a1 took the last call: roundrobin continues with a2, a3; new ring_timeout applies
    assert (o1.agents, o2.agents, o1.timeout) == (("a2",), ("a3",), 33)


def test_reload_applies_new_max_wait_to_waiting_callers() -> None:
    h = Harness(spec(members=["a1"]))
    h.join("c1")
    h.advance(50)
    h.acd.configure([spec(members=["a1"], max_wait=30, overflow="q2")], h.t)
    assert h.acd.next_deadline() == h.t - 20  # already overdue
    h.advance(0)
    (to,) = h.named(QUEUE_TIMEOUT)
    assert to["overflow"] == "q2" and to["wait"] == 50


def test_reload_removes_queue_and_members() -> None:
    h = Harness(spec("q1", members=["a1", "a2"]), spec("q2", members=["a1"]))
    h.login("a1", "a2")
    h.join("w1", queue="q1")
    h.join("w2", queue="q1")
    (o,) = [o for o in h.dispatch() if o.caller == "w1"]
    h.answer("w1", o.agents[0])
    talking = o.agents[0]
    # q1 removed, a2 no longer a member of anything
    h.acd.configure([spec("q2", members=["a1"])], h.t)
    h.ok()
    (lv,) = h.named(QUEUE_CALLER_LEAVE, reason="queue_removed")
    assert lv["caller"] == "w2"
    assert h.acd.queue_names() == ["q2"]
    assert {e["agent"] for e in h.named(QUEUE_MEMBER_LOGOUT, reason="queue_removed")} == {
        "a1",
        "a2",
    }
    # the call in progress goes on and ends cleanly
    assert h.state(talking) == "on_call"
    h.advance(10)
    h.end(talking)
    recs = [r for r in h.acd.drain_records() if isinstance(r, QueueCallRecord)]
    assert {(r.caller_id, r.outcome) for r in recs} == {("w2", "transferred"), ("w1", "answered")}
    assert h.acd.get_agent("a2") is None  # no longer configured anywhere
    assert h.state("a1") in ("available",)
    h.ok()


def test_removed_static_member_is_logged_out_and_new_member_starts_logged_out() -> None:
    h = Harness(spec(members=["a1", "a2"]))
    h.login("a1", "a2")
    h.acd.configure([spec(members=["a2", "a3"])], h.t)
    assert h.state("a1") == "gone"
    assert h.state("a2") == "available" and h.state("a3") == "logged_out"
    assert [m for m, _ in h.acd.members("q")] == ["a2", "a3"]
    h.ok()


def test_member_order_and_skills_change_on_reload() -> None:
    h = Harness(spec(strategy="linear", members=["a1", "a2"]))
    h.login("a1", "a2")
    h.acd.configure([spec(strategy="linear", members=[Member("a2", 0, {"x": 2}), "a1"])], h.t)
    h.join("c1")
    assert h.dispatch()[0].agents == ("a2",)
    ms = dict(h.acd.members("q"))["a2"]
    assert ms.skills == {"x": 2}


def test_strategy_change_while_ringall_offer_in_progress() -> None:
    h = Harness(spec(strategy="ringall", members=["a1", "a2"]))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    h.acd.configure([spec(strategy="linear", members=["a1", "a2"])], h.t)
    h.ok()  # the ringall offer in progress is allowed to finish
    assert h.answer("c1", "a2") == ("a1",)
    h.ok()


def test_configure_empty_tears_everything_down() -> None:
    h = Harness(spec("q1", members=["a1"]), spec("q2", members=["a2"], wrapup=5))
    h.login("a1", "a2")
    h.join("c1", queue="q1")
    h.join("c2", queue="q2")
    h.dispatch()
    h.answer("c2", "a2")
    h.acd.configure([], h.t)
    h.end("a2")
    h.advance(100)
    h.acd.drain_events()
    h.acd.drain_records()
    assert h.acd.counts() == dict.fromkeys(
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


def test_bad_specs() -> None:
    with pytest.raises(AcdError, match="strategy"):
        QueueSpec("q", strategy="ringsome")
    with pytest.raises(AcdError, match="ring_timeout"):
        QueueSpec("q", ring_timeout=0)
    h = Harness()
    with pytest.raises(AcdError, match="twice"):
        h.acd.configure([spec("q"), spec("q")], h.t)
    with pytest.raises(AcdError, match="listed twice"):
        h.acd.configure([spec("q", members=["a", "a"])], h.t)
    # tuples work as members too
    h.acd.configure([QueueSpec("q", members=[("a1", 2, {"es": 1})])], h.t)
    assert h.acd.members("q")[0][1].penalty == 2
