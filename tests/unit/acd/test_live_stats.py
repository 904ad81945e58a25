"""Live statistics, estimated wait, and the records handed to storage."""

from __future__ import annotations

import pytest

from ccswitch.apps.acd import AgentStateRecord, QueueCallRecord
from ccswitch.apps.acd.stats import QueueHistory, estimated_wait, service_level

from .conftest import Harness, spec


def test_queue_status_counts() -> None:
    h = Harness(spec(members=["a1", "a2", "a3", "a4", "a5"], wrapup=30, strategy="linear"))
    h.login("a1", "a2", "a3", "a4")
    for a in ("a1", "a2", "a3"):
        h.acd.pause(a, "x", h.t)
    h.acd.pause("a4", "lunch", h.t)
    h.join("c1")
    h.advance(5)
    h.join("c2")
    h.join("c3")
    h.join("c4")
    for a in ("a1", "a2", "a3"):
        h.acd.unpause(a, h.t)
    (o1, o2, o3) = h.dispatch()
    assert [o.caller for o in (o1, o2, o3)] == ["c1", "c2", "c3"]
    h.answer("c1", o1.agents[0])
    h.answer("c2", o2.agents[0])
    h.end(o2.agents[0])  # wrap-up
    h.advance(5)
    st = h.acd.queue_status("q", h.t)
    assert (st.waiting, st.ringing_callers, st.longest_wait) == (2, 1, 5)
    assert (st.logged_in, st.available, st.ringing, st.on_call, st.wrap_up, st.paused) == (
        4,
        0,
        1,
        1,
        1,
        1,
    )
    assert (st.offered, st.answered, st.abandoned, st.timeouts) == (4, 2, 0, 0)
    assert st.service_level == 100.0
    assert st.avg_wait == pytest.approx(2.5)  # c1 waited 5, c2 waited 0
    assert st.avg_handle == 30.0  # 0 talk + 30 wrap-up


def test_service_level_formula_live() -> None:
    h = Harness(spec(members=["a1"], service_level=20))
    h.login("a1")
    h.acd.pause("a1", "x", h.t)
    h.join("quick")
    h.join("late")
    h.join("short_abandon")
    h.join("long_abandon")
    h.advance(10)
    h.acd.leave("short_abandon", h.t)  # within 20 s: not counted
    h.acd.unpause("a1", h.t)
    (_o,) = h.dispatch()
    h.answer("quick", "a1")  # waited 10
    h.end("a1")
    h.acd.pause("a1", "x", h.t)
    h.advance(20)
    h.acd.leave("long_abandon", h.t)  # 30 s: counted against
    h.acd.unpause("a1", h.t)
    (_o,) = h.dispatch()
    h.answer("late", "a1")  # waited 30
    st = h.acd.queue_status("q", h.t)
    # 1 within / (2 answered + 1 late abandon)
    assert st.service_level == pytest.approx(100 / 3)
    assert st.abandoned == 2
    assert service_level(0, 0, 0) is None


def test_estimated_wait_formula() -> None:
    hist = QueueHistory()
    assert estimated_wait(3, 0, 2, hist, 0) is None  # no history
    hist.waits.extend([40, 60])
    assert estimated_wait(3, 0, 2, hist, 15) == 35  # mean wait 50 - waited 15
    assert estimated_wait(3, 0, 2, hist, 80) == 0
    hist.handles.extend([100, 200])  # H = 150
    assert estimated_wait(3, 0, 2, hist, 0) == 225  # 3 * 150 / 2
    assert estimated_wait(3, 1, 2, hist, 0) == 150  # (3 - 1) * 150 / 2
    assert estimated_wait(1, 1, 2, hist, 0) == 0
    assert estimated_wait(3, 0, 0, hist, 0) is None  # nobody to take calls
    for i in range(30):
        hist.handles.append(float(i))
    assert len(hist.handles) == 20 and hist.avg_handle() == sum(range(10, 30)) / 20


def test_estimated_wait_from_the_engine() -> None:
    h = Harness(spec(members=["a1", "a2", "a3"], wrapup=10))
    h.login("a1", "a2")
    h.acd.pause("a1", "x", h.t)  # paused agents do not count
    h.acd.login("a3", None, h.t)
    h.join("c0")
    (o,) = h.dispatch()
    h.answer("c0", o.agents[0])
    h.advance(50)
    h.end(o.agents[0])  # handle = 50 + 10
    for c in ("c1", "c2", "c3"):
        h.join(c)
    h.dispatch()  # one of them rings the remaining available agent
    # staffed = a2, a3 (2); available now = 0; c2 is position 2 -> 2 * 60 / 2
    assert h.acd.estimated_wait("c2", h.t) == 60
    assert h.acd.estimated_wait("nope", h.t) is None


def test_records_and_state_spans() -> None:
    h = Harness(spec(members=["a1"], wrapup=5, service_level=15))
    h.login("a1")
    h.advance(10)
    h.join("c1", number="555")
    h.t += 3  # the lead dispatches late (only the clock moves)
    (_o,) = h.dispatch()
    h.advance(2)
    h.answer("c1", "a1")
    h.advance(40)
    h.end("a1")
    h.advance(5)
    h.acd.pause("a1", "lunch", h.t)
    h.advance(100)
    h.acd.split_spans(h.t)
    recs = h.acd.drain_records()
    (call,) = [r for r in recs if isinstance(r, QueueCallRecord)]
    t0 = 1000.0
    assert call == QueueCallRecord(
        queue="q",
        caller_id="c1",
        number="555",
        joined=t0 + 10,
        answered=t0 + 15,
        ended=t0 + 55,
        agent="a1",
        outcome="answered",
        wait=5,
        talk=40,
        wrapup=5,
        callback=False,
        priority=0,
        service_level=15,
        position=1,
    )
    spans = [
        (r.state, r.start - t0, r.end - t0, r.reason, r.queue, r.result)
        for r in recs
        if isinstance(r, AgentStateRecord)
    ]
    assert spans == [
        ("available", 0, 13, "", "", ""),
        ("ringing", 13, 15, "", "q", "answered"),
        ("on_call", 15, 55, "", "q", ""),
        ("wrap_up", 55, 60, "", "q", ""),
        # (available 60-60: zero-length spans are not recorded)
        ("paused", 60, 160, "lunch", "", ""),
    ]
    shifted = call.shifted(1e9)
    assert shifted.joined == t0 + 10 + 1e9 and shifted.answered == t0 + 15 + 1e9
    assert shifted.wait == call.wait
    # after the split, the open span restarts at the split time
    h.advance(20)
    h.acd.logout("a1", None, h.t)
    (last,) = h.acd.drain_records()
    assert isinstance(last, AgentStateRecord)
    assert (last.state, last.start - t0, last.end - t0) == ("paused", 160, 180)


def test_direct_calls_show_as_on_call_direct_spans() -> None:
    h = Harness(spec(members=["a1"]))
    h.login("a1")
    h.acd.set_busy("a1", True, h.t)
    h.advance(30)
    h.acd.set_busy("a1", False, h.t)
    spans = [r for r in h.acd.drain_records() if isinstance(r, AgentStateRecord)]
    assert [(s.state, s.reason, s.end - s.start) for s in spans] == [("on_call", "direct", 30)]
