"""SQLite persistence of queue calls and agent spans, and interval statistics."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ccswitch.apps.acd import AgentStateRecord, QueueCallRecord
from ccswitch.storage.queue_log import QueueLogStore, agent_stats_sync, stats_sync

from .conftest import Harness, spec

T0 = 1_700_000_000.0  # wall clock (a multiple of 900)
DAY = 86_400.0


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "ccswitch.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[QueueLogStore]:
    s = QueueLogStore(flush_interval=60)
    await s.open(db_path)
    yield s
    await s.close()


def call(
    caller: str,
    joined: float,
    outcome: str,
    wait: float,
    talk: float = 0.0,
    wrapup: float = 0.0,
    agent: str = "",
    callback: bool = False,
    queue: str = "q",
    sl: float = 20.0,
) -> QueueCallRecord:
    answered = joined + wait if outcome in ("answered", "transferred") and agent else None
    return QueueCallRecord(
        queue=queue,
        caller_id=caller,
        number=f"n{caller}",
        joined=joined,
        answered=answered,
        ended=joined + wait + talk,
        agent=agent,
        outcome=outcome,
        wait=wait,
        talk=talk,
        wrapup=wrapup,
        callback=callback,
        priority=0,
        service_level=sl,
        position=1,
    )


async def test_tables_exist_and_pending_is_written_on_close(db_path: Path) -> None:
    s = QueueLogStore(flush_interval=60)
    await s.open(db_path)
    s.add(call("c1", T0, "abandoned", 5))
    s.add(AgentStateRecord("a1", "available", "", "", T0, T0 + 10))
    assert s.pending == 2
    await s.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM queue_call").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM agent_state").fetchone()[0] == 1
    with pytest.raises(RuntimeError):
        s.add(call("c2", T0, "abandoned", 5))


async def test_interval_stats_formulas(store: QueueLogStore, db_path: Path) -> None:
    b0, b1 = T0, T0 + 900
    rows = [
        # bucket 0
        call("a", b0 + 0, "answered", 10, talk=100, wrapup=20, agent="x"),  # within SL
        call("b", b0 + 10, "answered", 30, talk=200, wrapup=20, agent="x"),  # late
        call("c", b0 + 20, "abandoned", 5),  # short abandon: not in SL
        call("d", b0 + 30, "abandoned", 45),  # late abandon
        call("e", b0 + 40, "timeout", 60),  # late timeout
        call("f", b0 + 50, "answered", 300, talk=60, agent="y", callback=True),  # not in SL/ASA
        call("g", b0 + 60, "transferred", 0),  # left for another destination while waiting
        # bucket 1 (joined exactly on its start)
        call(
            "h", b1, "transferred", 2, talk=40, wrapup=20, agent="x"
        ),  # answered, then transferred
        call("i", b1 + 899.9, "callback", 100, callback=True),  # callback never completed
        # other queue, and outside the range
        call("z", b0, "answered", 1, agent="x", queue="other"),
        call("old", b0 - 1, "abandoned", 1),
        call("late", b0 + 2700, "abandoned", 1),
    ]
    for r in rows:
        store.add(r)
    await store.flush()
    st = await store.stats("q", b0, b0 + 1800 + 300, bucket=900)
    assert [(b.start - T0, b.end - T0) for b in st.buckets] == [(0, 900), (900, 1800), (1800, 2100)]
    x0, x1, x2 = st.buckets
    assert (x0.offered, x0.answered, x0.abandoned, x0.timeouts, x0.transferred) == (7, 3, 2, 1, 1)
    assert (x0.callbacks, x0.callbacks_answered) == (1, 1)
    assert x0.abandon_rate == pytest.approx(100 * 2 / 7)
    # SL = within (a) / (answered non-callback a, b + late d, e) = 1 / 4
    assert x0.service_level == pytest.approx(25.0)
    assert x0.asa == pytest.approx(20.0)  # (10 + 30) / 2, callback excluded
    assert x0.aht == pytest.approx((120 + 220 + 60) / 3)  # talk + wrap-up, all answered
    assert x0.avg_abandon_wait == pytest.approx(25.0)
    assert x0.longest_wait == 300
    assert (x1.offered, x1.answered, x1.transferred, x1.callbacks, x1.callbacks_answered) == (
        2,
        1,
        0,
        1,
        0,
    )
    assert x1.service_level == 100.0 and x1.aht == 60
    assert x2.offered == 0 and x2.service_level is None and x2.asa is None
    tot = st.total
    assert (tot.offered, tot.answered, tot.abandoned) == (9, 4, 2)
    assert tot.service_level == pytest.approx(100 * 2 / 5)
    # a stricter threshold given explicitly: a (10 s) is no longer within; c (5 s) is not late
    st5 = await store.stats("q", b0, b0 + 1800, bucket=1800, service_level=5)
    assert st5.total.service_level == pytest.approx(100 * 1 / 5)  # h / (a, b, h + d, e)
    # day bucket and the sync reader agree
    day = await store.stats("q", b0, b0 + DAY, bucket=DAY)
    assert len(day.buckets) == 1 and day.total.offered == 10
    sync = stats_sync(db_path, "q", b0, b0 + 1800 + 300, bucket=900)
    assert sync.as_dict() == st.as_dict()
    d = st.as_dict()
    assert d["total"]["service_level"] == pytest.approx(40.0) and len(d["buckets"]) == 3


async def test_stats_argument_checks(store: QueueLogStore) -> None:
    with pytest.raises(ValueError):
        await store.stats("q", T0, T0)
    with pytest.raises(ValueError):
        await store.stats("q", T0, T0 + 10, bucket=0)
    with pytest.raises(ValueError):
        await store.stats("q", T0, T0 + 10 * DAY, bucket=1)


async def test_agent_stats(store: QueueLogStore, db_path: Path) -> None:
    spans = [
        AgentStateRecord("a1", "available", "", "", T0 - 100, T0 + 100),  # clipped to 100
        AgentStateRecord("a1", "ringing", "", "q", T0 + 100, T0 + 110, "no_answer"),
        AgentStateRecord("a1", "ringing", "", "q", T0 + 110, T0 + 115, "answered"),
        AgentStateRecord("a1", "on_call", "", "q", T0 + 115, T0 + 415),
        AgentStateRecord("a1", "wrap_up", "", "q", T0 + 415, T0 + 445),
        AgentStateRecord("a1", "paused", "lunch", "", T0 + 445, T0 + 1045),
        AgentStateRecord("a1", "paused", "autopause", "", T0 + 1045, T0 + 1145),
        AgentStateRecord("a1", "on_call", "direct", "", T0 + 1145, T0 + 1200),
        AgentStateRecord("a1", "available", "", "", T0 + 1200, T0 + 5000),  # clipped at until
        AgentStateRecord("a2", "available", "", "", T0, T0 + 500),
    ]
    for sp in spans:
        store.add(sp)
    store.add(call("c1", T0 + 100, "answered", 15, talk=300, wrapup=30, agent="a1"))
    store.add(call("c2", T0 - 5000, "answered", 15, talk=300, wrapup=30, agent="a1"))  # earlier
    await store.flush()
    st = await store.agent_stats("a1", T0, T0 + 1800)
    assert st.time_by_state == {
        "available": 100 + 600,
        "ringing": 15,
        "on_call": 300 + 55,
        "wrap_up": 30,
        "paused": 700,
    }
    assert st.pause_by_reason == {"lunch": 600, "autopause": 100}
    assert st.logged_in == 1800
    assert (st.offers, st.missed, st.calls, st.talk, st.wrapup) == (2, 1, 1, 300, 30)
    assert st.aht == 330
    assert st.occupancy == pytest.approx(100 * (15 + 355 + 30) / (1800 - 700))
    assert st.calls_by_queue == {"q": 1}
    assert agent_stats_sync(db_path, "a1", T0, T0 + 1800).as_dict() == st.as_dict()
    empty = await store.agent_stats("nobody", T0, T0 + 1800)
    assert empty.calls == 0 and empty.aht is None and empty.occupancy is None


def test_sync_readers_without_database_or_tables(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        stats_sync(tmp_path / "none.db", "q", T0, T0 + 900)
    old = tmp_path / "old.db"
    sqlite3.connect(old).close()  # a database from before this migration
    assert stats_sync(old, "q", T0, T0 + 900).total.offered == 0
    assert agent_stats_sync(old, "a", T0, T0 + 900).calls == 0


async def test_engine_records_round_trip(store: QueueLogStore) -> None:
    """What the lead does: drain the ACD's records, shift them to wall time, store."""
    h = Harness(spec(members=["a1"], wrapup=10, service_level=20, strategy="linear"))
    mono0 = h.t
    offset = T0 - mono0
    h.login("a1")
    h.acd.pause("a1", "x", h.t)
    for c in ("c1", "c2", "c3"):
        h.join(c)
    h.advance(5)
    h.acd.unpause("a1", h.t)
    h.dispatch()
    h.answer("c1", "a1")
    h.advance(60)
    h.end("a1")
    h.advance(3)
    h.acd.leave("c3", h.t)  # waited 68 s: a late abandon
    h.advance(7)
    h.answer("c2", "a1")  # waited 75 s
    h.advance(30)
    h.end("a1")
    h.advance(100)
    h.acd.split_spans(h.t)
    for r in h.acd.drain_records():
        store.add(r.shifted(offset))
    await store.flush()
    st = await store.stats("q", T0, T0 + 900)
    live = h.acd.queue_status("q", h.t)
    tot = st.total
    assert (tot.offered, tot.answered, tot.abandoned) == (live.offered, live.answered, 1)
    assert tot.service_level == pytest.approx(live.service_level)  # the same formula
    assert tot.service_level == pytest.approx(100 / 3)
    assert tot.asa == pytest.approx((5 + 75) / 2)
    assert tot.aht == pytest.approx((60 + 10 + 30 + 10) / 2)
    ag = await store.agent_stats("a1", T0, T0 + 900)
    assert ag.calls == 2 and ag.talk == 90 and ag.offers == 2 and ag.missed == 0
    assert ag.time_by_state["paused"] == 5
    assert ag.logged_in == pytest.approx(h.t - mono0)
