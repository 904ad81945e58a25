"""Agent state machine: login, pause, direct calls, ringing, wrap-up, auto-pause."""

from __future__ import annotations

import pytest

from ccswitch.apps.acd import (
    AGENT_STATE,
    QUEUE_MEMBER_LOGIN,
    QUEUE_MEMBER_LOGOUT,
    QUEUE_OFFER_CANCEL,
    AcdError,
    Member,
)

from .conftest import Harness, spec


def test_login_logout_all_member_queues_and_events() -> None:
    h = Harness(spec("q1", members=["a1"]), spec("q2", members=["a1", "a2"]))
    assert h.state("a1") == "logged_out"
    assert h.acd.login("a1", None, h.t) == ["q1", "q2"]
    assert h.acd.login("a1", None, h.t) == []  # already
    assert h.state("a1") == "available"
    assert [e["queue"] for e in h.named(QUEUE_MEMBER_LOGIN, agent="a1")] == ["q1", "q2"]
    (st,) = h.named(AGENT_STATE, agent="a1")
    assert (
        st["state"] == "available" and st["prev_state"] == "logged_out" and st["reason"] == "login"
    )
    assert h.acd.logout("a1", "q1", h.t) == ["q1"]
    assert h.state("a1") == "available"  # still in q2
    assert h.acd.logout("a1", None, h.t) == ["q2"]
    assert h.state("a1") == "logged_out"
    assert len(h.named(QUEUE_MEMBER_LOGOUT, agent="a1")) == 2
    h.ok()


def test_login_errors_and_dynamic_members() -> None:
    h = Harness(spec("q", members=["a1"]), spec("dyn", members=[], dynamic_members=True))
    with pytest.raises(AcdError, match="no queue"):
        h.acd.login("a1", "nope", h.t)
    with pytest.raises(AcdError, match="not a member"):
        h.acd.login("x9", "q", h.t)
    with pytest.raises(AcdError, match="not a member of any queue"):
        h.acd.login("x9", None, h.t)
    assert h.acd.login("x9", "dyn", h.t, penalty=3) == ["dyn"]
    assert h.acd.members("dyn")[0][1].penalty == 3
    assert h.state("x9") == "available"
    h.acd.logout("x9", None, h.t)
    assert h.acd.get_agent("x9") is None  # dynamic agents do not linger
    with pytest.raises(AcdError, match="not logged in"):
        h.acd.pause("a1", "lunch", h.t)
    with pytest.raises(AcdError, match="unknown agent"):
        h.acd.logout("zz", None, h.t)
    h.ok()


def test_paused_agent_is_never_offered_and_unpause_dispatches() -> None:
    h = Harness(spec(members=["a1"]))
    h.login("a1")
    assert h.acd.pause("a1", "lunch", h.t)
    assert not h.acd.pause("a1", "lunch", h.t)
    assert h.acd.pause("a1", "meeting", h.t)  # reason change
    st = h.acd.agent_status("a1", h.t)
    assert st.state == "paused" and st.pause_reason == "meeting"
    h.join("c1")
    assert h.advance(100) == []
    assert h.acd.unpause("a1", h.t)
    assert not h.acd.unpause("a1", h.t)
    assert h.dispatch()[0].agents == ("a1",)
    events = [(e["state"], e.get("pause_reason")) for e in h.named(AGENT_STATE, agent="a1")]
    assert events == [
        ("available", ""),
        ("paused", "lunch"),
        ("paused", "meeting"),
        ("available", ""),
        ("ringing", ""),
    ]


def test_pause_while_ringing_or_on_call_applies_afterwards() -> None:
    h = Harness(spec(members=["a1"], wrapup=5))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.acd.pause("a1", "break", h.t)
    assert h.state("a1") == "ringing"
    h.answer("c1", "a1")
    assert h.state("a1") == "on_call"
    h.advance(30)
    h.end("a1")
    assert h.state("a1") == "wrap_up"
    h.advance(5)
    assert h.state("a1") == "paused"
    h.join("c2")
    assert h.advance(60) == []


def test_agent_on_direct_call_is_never_offered() -> None:
    h = Harness(spec(members=["a1", "a2"], strategy="linear"))
    h.login("a1", "a2")
    assert h.acd.set_busy("a1", True, h.t)
    assert not h.acd.set_busy("a1", True, h.t)
    st = h.acd.agent_status("a1", h.t)
    assert st.state == "on_call" and st.busy_direct
    h.join("c1")
    assert h.dispatch()[0].agents == ("a2",)
    h.join("c2")
    assert h.dispatch() == []
    h.acd.set_busy("a1", False, h.t)
    assert h.dispatch()[0].agents == ("a1",)


def test_busy_flag_reported_before_login_is_remembered() -> None:
    h = Harness(spec(members=["a1"]))
    h.acd.set_busy("a1", True, h.t)  # e.g. the *45 call itself, or any call
    h.acd.set_busy("someone-else", True, h.t)  # not an agent at all: fine
    h.login("a1")
    assert h.state("a1") == "on_call"
    h.join("c1")
    assert h.dispatch() == []
    h.acd.set_busy("a1", False, h.t)
    assert h.state("a1") == "available"
    assert h.dispatch()[0].agents == ("a1",)


def test_direct_call_while_ringing_withdraws_the_offer_without_a_miss() -> None:
    h = Harness(spec(members=["a1", "a2"], strategy="linear", retry_delay=60))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    h.acd.set_busy("a1", True, h.t)
    (cancel,) = h.named(QUEUE_OFFER_CANCEL)
    assert cancel["agent"] == "a1" and cancel["reason"] == "agent_busy"
    assert h.state("a1") == "on_call"
    a1 = h.acd.get_agent("a1")
    assert a1 is not None and a1.missed_offers == 0
    assert h.dispatch()[0].agents == ("a2",)
    # a late answer from a1's phone is refused: the lead hangs that leg up
    assert not h.acd.offer_answered("c1", "a1", h.t).ok
    h.ok()


def test_wrap_up_then_available_and_applied_once() -> None:
    h = Harness(spec(members=["a1"], wrapup=20))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.advance(60)
    h.end("a1")
    assert h.state("a1") == "wrap_up"
    until = h.t + 20
    a1 = h.acd.get_agent("a1")
    assert a1 is not None and a1.wrapup_until == until
    assert h.acd.next_deadline() == until
    # duplicate reports of the same end: no second wrap-up
    h.advance(10)
    assert not h.acd.call_ended("a1", h.t)
    assert h.acd.leave("c1", h.t) == []
    assert not h.acd.agent_on_transfer("a1", h.t)
    assert a1.wrapup_until == until
    h.join("c2")
    assert h.dispatch() == []
    offers = h.advance(10)
    assert h.t == until and [o.caller for o in offers] == ["c2"]
    records = [r for r in h.acd.drain_records() if hasattr(r, "caller_id")]
    assert len(records) == 1


def test_no_wrap_up_configured_goes_straight_to_available() -> None:
    h = Harness(spec(members=["a1"], wrapup=0))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.end("a1")
    assert h.state("a1") == "available"
    assert h.acd.next_deadline() in (None, h.t + 10)  # only the stale ring deadline


def test_ring_timeout_is_enforced_by_tick() -> None:
    h = Harness(spec(members=["a1", "a2"], strategy="linear", ring_timeout=15, retry_delay=0))
    h.login("a1", "a2")
    h.join("c1")
    (o,) = h.dispatch()
    assert o.deadline == h.t + 15 and h.acd.next_deadline() == o.deadline
    offers = h.advance(15)
    (cancel,) = h.named(QUEUE_OFFER_CANCEL)
    assert cancel["reason"] == "timeout" and cancel["agent"] == "a1"
    a1 = h.acd.get_agent("a1")
    assert a1 is not None and a1.missed_offers == 1
    # retry_delay 0: linear rings a1 again at once (it is first and free)
    assert [o.agents for o in offers] == [("a1",)]


def test_retry_delay_is_per_agent_and_caller() -> None:
    h = Harness(spec(members=["a1"], retry_delay=20))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.fail("c1", "a1")
    assert h.dispatch() == []  # not c1 again for 20 s
    h.join("c2")
    assert h.dispatch()[0].caller == "c2"  # but other callers, yes
    h.fail("c2", "a1")
    offers = h.advance(20)
    assert [o.caller for o in offers] == ["c1"]  # c1 (first in line) after its delay
    h.ok()


def test_autopause_after_consecutive_misses_and_reset() -> None:
    h = Harness(spec(members=["a1"], autopause_after=3))
    h.login("a1")
    for i in range(2):
        h.join(f"c{i}")
        h.dispatch()
        h.fail(f"c{i}", "a1", "no_answer")
        h.acd.leave(f"c{i}", h.t)
    h.join("ok")
    h.dispatch()
    h.answer("ok", "a1")  # an answer resets the count
    h.end("a1")
    a1 = h.acd.get_agent("a1")
    assert a1 is not None and a1.missed_offers == 0
    h.join("d")
    for _ in range(3):
        (_o,) = h.dispatch()  # retry_delay 0: the same caller again
        h.fail("d", "a1", "rejected")
    assert h.state("a1") == "paused" and a1.pause_reason == "autopause"
    last = h.named(AGENT_STATE, agent="a1")[-1]
    assert last["state"] == "paused" and last["reason"] == "autopause"
    assert last["prev_state"] == "ringing"
    assert h.dispatch() == []
    h.acd.unpause("a1", h.t)
    assert a1.missed_offers == 0 and h.dispatch()


def test_logout_while_ringing_withdraws_and_reoffers() -> None:
    h = Harness(spec(members=["a1", "a2"], strategy="linear"))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    h.acd.logout("a1", None, h.t)
    (cancel,) = h.named(QUEUE_OFFER_CANCEL)
    assert cancel["reason"] == "agent_logout"
    assert h.state("a1") == "logged_out"
    assert h.dispatch()[0].agents == ("a2",)
    assert not h.acd.offer_answered("c1", "a1", h.t).ok
    h.ok()


def test_logout_from_another_queue_keeps_the_ring() -> None:
    h = Harness(spec("q1", members=["a1"]), spec("q2", members=["a1"]))
    h.login("a1")
    h.join("c1", queue="q1")
    h.dispatch()
    h.acd.logout("a1", "q2", h.t)
    assert h.state("a1") == "ringing" and h.named(QUEUE_OFFER_CANCEL) == []


def test_logout_while_on_call_keeps_the_call_then_logged_out_without_wrapup() -> None:
    h = Harness(spec(members=["a1"], wrapup=30))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.acd.logout("a1", None, h.t)
    assert h.state("a1") == "on_call"
    h.advance(10)
    h.end("a1")
    assert h.state("a1") == "logged_out"
    (rec,) = [r for r in h.acd.drain_records() if hasattr(r, "caller_id")]
    assert rec.outcome == "answered" and rec.talk == 10 and rec.wrapup == 0  # type: ignore[union-attr]


def test_logout_during_wrapup_leaves_no_timer() -> None:
    h = Harness(spec(members=["a1"], wrapup=30, ring_timeout=5))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.advance(6)
    h.end("a1")
    h.acd.logout("a1", None, h.t)
    assert h.state("a1") == "logged_out"
    assert h.acd.next_deadline() is None
    h.acd.login("a1", None, h.t)
    assert h.state("a1") == "available"


def test_penalty_override_on_login() -> None:
    h = Harness(spec(members=[Member("a1", 0), Member("a2", 1)], strategy="linear"))
    h.acd.login("a1", "q", h.t, penalty=5)
    h.login("a2")
    h.join("c1")
    assert h.dispatch()[0].agents == ("a2",)


def test_agent_status_fields() -> None:
    h = Harness(spec(members=["a1"], wrapup=10))
    h.acd.configure([spec(members=["a1"], wrapup=10)], h.t, names={"a1": "Alice"})
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.advance(42)
    st = h.acd.agent_status("a1", h.t)
    assert (st.agent, st.name, st.state, st.duration) == ("a1", "Alice", "on_call", 42)
    assert st.calls_taken == {"q": 1} and st.calls_total == 1 and st.queues == ("q",)
    with pytest.raises(AcdError):
        h.acd.agent_status("nope", h.t)
