"""Callers: joining, leaving, timeouts, empty queues, callbacks, transfers and races."""

from __future__ import annotations

import pytest

from ccswitch.apps.acd import (
    QUEUE_CALL_END,
    QUEUE_CALLBACK_REQUEST,
    QUEUE_CALLER_JOIN,
    QUEUE_CALLER_LEAVE,
    QUEUE_CALLER_OFFER,
    QUEUE_OFFER_CANCEL,
    QUEUE_TIMEOUT,
    AcdError,
    JoinStatus,
    QueueCallRecord,
)

from .conftest import Harness, spec


def calls(h: Harness) -> list[QueueCallRecord]:
    return [r for r in h.acd.drain_records() if isinstance(r, QueueCallRecord)]


def test_join_results() -> None:
    h = Harness(spec(max_callers=2, join_empty=False, members=["a1"]))
    r = h.acd.join("nope", "c0", "1", h.t)
    assert r.status is JoinStatus.UNKNOWN_QUEUE and not r.ok
    r = h.acd.join("q", "c0", "1", h.t)
    assert r.status is JoinStatus.EMPTY
    h.login("a1")
    h.acd.pause("a1", "x", h.t)  # paused still counts as logged in
    assert h.join("c1") == 1 and h.join("c2") == 2
    r = h.acd.join("q", "c3", "1", h.t)
    assert r.status is JoinStatus.FULL and r.position == 0
    rejects = [e["reason"] for e in h.named(QUEUE_CALLER_LEAVE, joined=False)]
    assert rejects == ["empty", "full"]
    with pytest.raises(AcdError, match="already"):
        h.acd.join("q", "c1", "1", h.t)
    assert [e["caller"] for e in h.named(QUEUE_CALLER_JOIN)] == ["c1", "c2"]
    assert calls(h) == []  # rejected joins are not queue calls


def test_abandon_while_waiting_updates_positions_and_records() -> None:
    h = Harness(spec(members=["a1"]))
    for c in ("c1", "c2", "c3"):
        h.join(c)
    h.advance(25)
    assert h.acd.leave("c2", h.t) == []
    assert h.acd.positions("q") == [("c1", 1), ("c3", 2)]
    (ev,) = h.named(QUEUE_CALLER_LEAVE, caller="c2")
    assert ev["reason"] == "abandoned" and ev["position"] == 2 and ev["wait"] == 25
    (rec,) = calls(h)
    assert (rec.outcome, rec.wait, rec.answered, rec.agent, rec.position) == (
        "abandoned",
        25,
        None,
        "",
        2,
    )
    assert h.acd.leave("c2", h.t) == []  # twice: nothing
    assert h.acd.get_caller("c2") is None
    h.ok()


def test_caller_hangs_up_while_agent_rings_no_stuck_ringing() -> None:
    """app_queue / mod_callcenter: agent left "ringing" after the caller hung up."""
    h = Harness(spec(strategy="ringall", members=["a1", "a2"]))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    stop = h.acd.leave("c1", h.t)
    assert sorted(stop) == ["a1", "a2"]
    assert {e["agent"] for e in h.named(QUEUE_OFFER_CANCEL, reason="caller_left")} == {"a1", "a2"}
    assert h.state("a1") == h.state("a2") == "available"
    assert h.acd.get_agent("a1").missed_offers == 0  # type: ignore[union-attr]
    # the late answer and the late failure are refused, nothing sticks
    assert not h.acd.offer_answered("c1", "a1", h.t).ok
    assert not h.acd.offer_failed("c1", "a2", h.t, "no_answer")
    h.advance(100)
    assert [o.caller for o in h.offers] == ["c1"]  # only the first offer
    assert h.acd.next_deadline() is None
    h.ok()


def test_left_caller_is_never_offered_again_even_with_retry_timers() -> None:
    h = Harness(spec(members=["a1"], retry_delay=5))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.fail("c1", "a1")
    h.acd.leave("c1", h.t)
    assert h.advance(60) == []
    assert [o.caller for o in h.offers] == ["c1"]


def test_answer_races() -> None:
    h = Harness(spec(strategy="ringall", members=["a1", "a2"]))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    r = h.acd.offer_answered("c1", "a2", h.t)  # a2 answered at the same time
    assert not r.ok and r.reason == "stale"
    assert not h.acd.offer_answered("c1", "a1", h.t).ok  # duplicate 200 OK
    assert h.state("a2") == "available" and h.state("a1") == "on_call"
    assert not h.acd.offer_answered("nope", "a1", h.t).ok
    with pytest.raises(AcdError):
        h.acd.offer_failed("c1", "a1", h.t, "whatever")
    h.ok()


def test_caller_hangs_up_during_the_call_ends_it_once() -> None:
    h = Harness(spec(members=["a1"], wrapup=10))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.advance(30)
    assert h.acd.leave("c1", h.t) == []  # the caller hung up first
    assert h.state("a1") == "wrap_up"
    assert not h.acd.call_ended("a1", h.t)  # then the agent leg's end: no second wrap-up
    (rec,) = calls(h)
    assert (rec.outcome, rec.talk, rec.wrapup, rec.agent) == ("answered", 30, 10, "a1")
    assert len(h.named(QUEUE_CALL_END)) == 1


def test_max_wait_timeout_with_overflow_withdraws_a_ring() -> None:
    h = Harness(spec(members=["a1"], max_wait=60, overflow="voicemail:200", ring_timeout=30))
    h.join("c1")
    h.advance(45)
    h.login("a1")
    h.dispatch()
    assert h.state("a1") == "ringing"
    h.advance(15)
    (to,) = h.named(QUEUE_TIMEOUT)
    assert to["overflow"] == "voicemail:200" and to["wait"] == 60 and to["caller"] == "c1"
    (lv,) = h.named(QUEUE_CALLER_LEAVE, caller="c1")
    assert lv["reason"] == "timeout" and lv["overflow"] == "voicemail:200"
    assert h.named(QUEUE_OFFER_CANCEL)[0]["reason"] == "max_wait"
    assert h.state("a1") == "available"
    (rec,) = calls(h)
    assert rec.outcome == "timeout" and rec.wait == 60
    h.ok()


def test_leave_when_empty_drops_waiting_callers_but_keeps_callbacks() -> None:
    h = Harness(spec(members=["a1", "a2"], leave_when_empty=True))
    h.login("a1", "a2")
    h.acd.pause("a1", "x", h.t)
    h.acd.pause("a2", "x", h.t)
    h.join("c1")
    h.join("c2")
    h.join("cb")
    assert h.acd.request_callback("cb", h.t)
    h.acd.logout("a1", None, h.t)
    assert h.acd.positions("q") == [("c1", 1), ("c2", 2), ("cb", 3)]
    h.acd.logout("a2", None, h.t)
    assert {e["caller"] for e in h.named(QUEUE_CALLER_LEAVE, reason="empty")} == {"c1", "c2"}
    assert h.acd.positions("q") == [("cb", 1)]
    assert {r.outcome for r in calls(h)} == {"empty"}


def test_callback_keeps_place_and_is_served_agent_first() -> None:
    h = Harness(spec(members=["a1"], wrapup=5, max_wait=100))
    h.join("c1")
    h.join("c2")
    h.join("c3")
    h.advance(10)
    assert h.acd.request_callback("c2", h.t, number="+15551234")
    assert not h.acd.request_callback("c2", h.t)  # already
    (lv,) = h.named(QUEUE_CALLER_LEAVE, caller="c2")
    assert lv["reason"] == "callback" and lv["keeps_place"] and lv["position"] == 2
    (cb,) = h.named(QUEUE_CALLBACK_REQUEST)
    assert cb["number"] == "+15551234"
    assert h.acd.positions("q") == [("c1", 1), ("c2", 2), ("c3", 3)]
    assert h.acd.queue_status("q", h.t).callbacks == 1
    h.login("a1")
    (o,) = h.dispatch()
    assert o.caller == "c1" and not o.callback
    h.answer("c1", "a1")
    h.end("a1")
    (o,) = h.advance(5)
    assert o.caller == "c2" and o.callback and o.number == "+15551234"
    h.answer("c2", "a1")  # the agent first...
    assert h.named(QUEUE_CALLER_LEAVE, caller="c2", reason="answered") == []
    h.advance(8)
    assert h.acd.callback_answered("c2", h.t)  # ...then the customer
    assert not h.acd.callback_answered("c2", h.t)
    (lv,) = h.named(QUEUE_CALLER_LEAVE, caller="c2", reason="answered")
    assert lv["callback"] and lv["wait"] == 23
    h.advance(90)  # past c2's max_wait (100 s): callbacks never time out
    h.end("a1")
    recs = {r.caller_id: r for r in calls(h)}
    r2 = recs["c2"]
    assert (r2.outcome, r2.callback, r2.talk, r2.wait, r2.number) == (
        "answered",
        True,
        90,
        23,
        "+15551234",
    )
    assert "c3" in recs and recs["c3"].outcome == "timeout"  # c3 stayed on hold


def test_callback_failed_retry_and_give_up() -> None:
    h = Harness(spec(members=["a1"], wrapup=30))
    h.join("c1")
    h.join("c2")
    h.acd.request_callback("c1", h.t)
    h.login("a1")
    (o,) = h.dispatch()
    assert o.caller == "c1"
    h.answer("c1", "a1")
    assert h.acd.callback_failed("c1", h.t, retry_after=120)
    assert h.state("a1") == "available"  # no wrap-up for a failed callback
    assert h.acd.positions("q") == [("c1", 1), ("c2", 2)]
    (o,) = h.dispatch()
    assert o.caller == "c2"  # c1 not before its retry time
    h.answer("c2", "a1")
    h.end("a1")
    offers = h.advance(120)
    assert [o.caller for o in offers] == ["c1"]
    h.answer("c1", "a1")
    # the agent hangs up before the customer answered: a failed callback, given up
    assert h.acd.call_ended("a1", h.t)
    assert h.state("a1") == "available"
    (_lv,) = h.named(QUEUE_CALLER_LEAVE, caller="c1", reason="callback_failed")
    rec = next(r for r in calls(h) if r.caller_id == "c1")
    assert rec.outcome == "callback" and rec.answered is None
    assert h.acd.agent_status("a1", h.t).calls_total == 1  # only c2: failed callbacks do not count
    h.ok()


def test_callback_can_be_cancelled_and_offer_in_progress_is_withdrawn() -> None:
    h = Harness(spec(members=["a1"]))
    h.login("a1")
    h.join("c1")
    h.dispatch()
    assert h.acd.request_callback("c1", h.t)  # pressed 1 while a1 started ringing
    assert h.named(QUEUE_OFFER_CANCEL)[0]["reason"] == "callback"
    h.acd.pause("a1", "x", h.t)
    assert h.acd.leave("c1", h.t, reason="cancelled") == []
    (rec,) = calls(h)
    assert rec.outcome == "callback" and rec.callback


def test_agent_transfer_does_not_leave_agent_on_call() -> None:
    """app_queue: agent stuck "on call" after a transfer."""
    h = Harness(spec(members=["a1", "a2"], wrapup=5, strategy="linear"))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    h.answer("c1", "a1")
    h.advance(20)
    # a1 blind-transfers the caller to a2 (a direct call as far as the ACD knows)
    assert h.acd.agent_on_transfer("a1", h.t)
    h.acd.set_busy("a2", True, h.t)
    assert h.state("a1") == "wrap_up" and h.state("a2") == "on_call"
    (rec,) = calls(h)
    assert rec.outcome == "transferred" and rec.answered is not None and rec.talk == 20
    assert not h.acd.call_ended("a1", h.t)  # the old leg's BYE later: nothing
    h.advance(5)
    assert h.state("a1") == "available"
    h.acd.set_busy("a2", False, h.t)
    assert h.state("a2") == "available"
    h.ok()


def test_transfer_out_of_waiting_and_connected_callers() -> None:
    h = Harness(spec(members=["a1"], wrapup=0))
    h.login("a1")
    h.join("c1")
    h.join("c2")
    h.dispatch()
    stop = h.acd.transfer_out("c1", h.t, target="ivr:main")  # exit key while a1 rang
    assert stop == ["a1"]
    (lv,) = h.named(QUEUE_CALLER_LEAVE, caller="c1")
    assert lv["reason"] == "transferred" and lv["target"] == "ivr:main"
    (_o,) = h.dispatch()
    h.answer("c2", "a1")
    assert h.acd.transfer_out("c2", h.t) == []
    assert h.state("a1") == "available"
    assert [(r.caller_id, r.outcome) for r in calls(h)] == [
        ("c1", "transferred"),
        ("c2", "transferred"),
    ]
    assert h.acd.transfer_out("c2", h.t) == []
    h.ok()


def test_offer_event_fields() -> None:
    h = Harness(spec(members=["a1"], ring_timeout=12))
    h.login("a1")
    h.join("c1", number="555")
    h.dispatch()
    (ev,) = h.named(QUEUE_CALLER_OFFER)
    assert ev == {
        "event": QUEUE_CALLER_OFFER,
        "queue": "q",
        "caller": "c1",
        "number": "555",
        "agents": ["a1"],
        "timeout": 12,
        "attempt": 1,
        "callback": False,
        "priority": 0,
        "position": 1,
    }


def test_leave_reason_is_validated() -> None:
    h = Harness(spec())
    with pytest.raises(AcdError):
        h.acd.leave("x", h.t, reason="bogus")


def test_agent_transfers_caller_into_a_queue_before_the_hook() -> None:
    h = Harness(spec("q1", members=["a1"], wrapup=0), spec("q2", members=["a2"]))
    h.login("a1", "a2")
    h.join("c1", queue="q1")
    h.dispatch()
    h.answer("c1", "a1")
    assert h.join("c1", queue="q2") == 1  # same channel, now in q2
    assert h.state("a1") == "available"  # not stuck on call
    assert not h.acd.agent_on_transfer("a1", h.t)  # the late hook: nothing to do
    (o,) = h.dispatch()
    assert o.caller == "c1" and o.agents == ("a2",)
    assert [(r.queue, r.outcome) for r in calls(h)] == [("q1", "transferred")]
    h.ok()
