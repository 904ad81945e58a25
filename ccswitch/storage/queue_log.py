"""Queue (ACD) history: one row per queue call and per agent state span, and
interval statistics computed from them.

The ACD core (ccswitch/apps/acd) produces finished records; the integration
layer hands them here after converting their monotonic times to wall-clock
epoch seconds (`record.shifted(time.time() - loop.time())`). As with CDRs,
`add()` only queues: a background task writes every `flush_interval` seconds
in one transaction; `flush()` forces it, `close()` writes what is left.
A record is written once, when it is complete: a crash loses the queue calls
in progress (their CDRs remain).

Interval statistics (`stats`, `stats_sync`): buckets of `bucket` seconds
starting at `since` (pass a local midnight for 15-minute and day buckets
aligned on the clock); a call belongs to the bucket in which it joined.

- offered: calls that entered the queue (rejected joins, full / empty, are not rows);
- answered: connected to an agent (`answered` set; outcome answered or
  transferred by the agent); abandoned: hung up while waiting;
- abandon_rate = abandoned / offered (%);
- service level (threshold T = the queue's service_level at the time of the
  call, or the `service_level` argument):
      SL = answered with wait <= T / (answered + (abandoned, timeout, empty) with wait > T)
  callbacks excluded (their wait is not time on hold), short abandons
  excluded (as in ccswitch/apps/acd/stats.py). Asterisk's: answered-within-T /
  (answered + abandoned).
- asa (average speed of answer) = mean wait of answered calls, callbacks excluded;
- aht (average handle time) = mean (talk + wrap-up) of answered calls;
- callbacks: calls that asked for a callback; callbacks_answered: of which connected.

Agent statistics (`agent_stats`): time per state clipped to [since, until)
(logged-out time is not recorded), pause time per reason, offers (ring
spans that started in the interval) and missed offers, calls answered in the
interval with their talk and wrap-up time, and occupancy = (ringing +
on_call + wrap_up) / (logged-in time - paused time).
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, Protocol, cast

from ccswitch.storage.batch import BatchedStore
from ccswitch.storage.db import connect_readonly_sync

__all__ = [
    "AgentIntervalStats",
    "AgentStateLike",
    "BucketStats",
    "IntervalStats",
    "QueueCallLike",
    "QueueLogStore",
    "agent_stats_sync",
    "stats_sync",
]

log = logging.getLogger(__name__)

MAX_BUCKETS: Final = 100_000


class QueueCallLike(Protocol):
    """What a queue call record provides (ccswitch.apps.acd.QueueCallRecord)."""

    @property
    def queue(self) -> str: ...
    @property
    def caller_id(self) -> str: ...
    @property
    def number(self) -> str: ...
    @property
    def joined(self) -> float: ...
    @property
    def answered(self) -> float | None: ...
    @property
    def ended(self) -> float: ...
    @property
    def agent(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def wait(self) -> float: ...
    @property
    def talk(self) -> float: ...
    @property
    def wrapup(self) -> float: ...
    @property
    def callback(self) -> bool: ...
    @property
    def priority(self) -> int: ...
    @property
    def service_level(self) -> float: ...
    @property
    def position(self) -> int: ...


class AgentStateLike(Protocol):
    """What an agent state span provides (ccswitch.apps.acd.AgentStateRecord)."""

    @property
    def agent(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def result(self) -> str: ...


_CALL_COLUMNS: Final = (
    "queue",
    "caller_id",
    "number",
    "joined",
    "answered",
    "ended",
    "agent",
    "outcome",
    "wait",
    "talk",
    "wrapup",
    "callback",
    "priority",
    "service_level",
    "position",
)
_INSERT_CALL: Final = (
    f"INSERT INTO queue_call ({', '.join(_CALL_COLUMNS)})"
    f" VALUES ({', '.join('?' * len(_CALL_COLUMNS))})"
)
_INSERT_STATE: Final = (
    'INSERT INTO agent_state (agent, state, reason, queue, start, "end", result)'
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)

_Op = Literal["call", "state"]

# Per-bucket sums; T = the threshold (?3 overrides the row's when not NULL).
_STATS_SQL: Final = """
SELECT CAST((joined - ?1) / ?2 AS INTEGER) AS b,
       COUNT(*),
       SUM(answered IS NOT NULL),
       SUM(outcome = 'abandoned'),
       SUM(outcome = 'timeout'),
       SUM(outcome = 'empty'),
       SUM(outcome = 'transferred' AND answered IS NULL),
       SUM(callback),
       SUM(callback AND answered IS NOT NULL),
       SUM(answered IS NOT NULL AND NOT callback AND wait <= COALESCE(?3, service_level)),
       SUM(answered IS NOT NULL AND NOT callback),
       SUM(outcome IN ('abandoned', 'timeout', 'empty') AND NOT callback
           AND wait > COALESCE(?3, service_level)),
       TOTAL(CASE WHEN answered IS NOT NULL AND NOT callback THEN wait END),
       TOTAL(CASE WHEN answered IS NOT NULL THEN talk + wrapup END),
       TOTAL(CASE WHEN answered IS NOT NULL THEN talk END),
       TOTAL(CASE WHEN outcome = 'abandoned' THEN wait END),
       MAX(wait)
FROM queue_call
WHERE queue = ?4 AND joined >= ?1 AND joined < ?5
GROUP BY b
"""
_SUM_FIELDS: Final = (
    "offered",
    "answered",
    "abandoned",
    "timeouts",
    "empty",
    "transferred",
    "callbacks",
    "callbacks_answered",
    "answered_within_sl",
    "sl_answered",
    "sl_unanswered_late",
    "wait_answered",
    "handle_total",
    "talk_total",
    "wait_abandoned",
)

# Time per (state, reason), clipped to [?2, ?3).
_AGENT_TIME_SQL: Final = """
SELECT state, reason, TOTAL(MIN("end", ?3) - MAX(start, ?2))
FROM agent_state
WHERE agent = ?1 AND "end" > ?2 AND start < ?3
GROUP BY state, reason
"""
_AGENT_RINGS_SQL: Final = """
SELECT result, COUNT(*)
FROM agent_state
WHERE agent = ?1 AND state = 'ringing' AND start >= ?2 AND start < ?3
GROUP BY result
"""
_AGENT_CALLS_SQL: Final = """
SELECT queue, COUNT(*), TOTAL(talk), TOTAL(wrapup), SUM(outcome = 'transferred')
FROM queue_call
WHERE agent = ?1 AND answered IS NOT NULL AND answered >= ?2 AND answered < ?3
GROUP BY queue
"""
_MISSED: Final = frozenset({"no_answer", "busy", "rejected", "error"})


@dataclass(slots=True)
class BucketStats:
    start: float
    end: float
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    timeouts: int = 0
    empty: int = 0
    transferred: int = 0  # left the queue to another destination while waiting
    callbacks: int = 0
    callbacks_answered: int = 0
    answered_within_sl: int = 0
    sl_answered: int = 0  # SL denominator parts (see the module docstring)
    sl_unanswered_late: int = 0
    wait_answered: float = 0.0  # sums, for the means
    handle_total: float = 0.0
    talk_total: float = 0.0
    wait_abandoned: float = 0.0
    longest_wait: float = 0.0

    @property
    def abandon_rate(self) -> float | None:
        return 100.0 * self.abandoned / self.offered if self.offered else None

    @property
    def service_level(self) -> float | None:
        den = self.sl_answered + self.sl_unanswered_late
        return 100.0 * self.answered_within_sl / den if den else None

    @property
    def asa(self) -> float | None:
        return self.wait_answered / self.sl_answered if self.sl_answered else None

    @property
    def aht(self) -> float | None:
        return self.handle_total / self.answered if self.answered else None

    @property
    def avg_abandon_wait(self) -> float | None:
        return self.wait_abandoned / self.abandoned if self.abandoned else None

    def add(self, other: BucketStats) -> None:
        for name in _SUM_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.longest_wait = max(self.longest_wait, other.longest_wait)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            abandon_rate=self.abandon_rate,
            service_level=self.service_level,
            asa=self.asa,
            aht=self.aht,
            avg_abandon_wait=self.avg_abandon_wait,
        )
        return d


@dataclass(slots=True)
class IntervalStats:
    queue: str
    since: float
    until: float
    bucket: float
    buckets: list[BucketStats]
    total: BucketStats

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "since": self.since,
            "until": self.until,
            "bucket": self.bucket,
            "buckets": [b.as_dict() for b in self.buckets],
            "total": self.total.as_dict(),
        }


@dataclass(slots=True)
class AgentIntervalStats:
    agent: str
    since: float
    until: float
    time_by_state: dict[str, float] = field(default_factory=dict)
    pause_by_reason: dict[str, float] = field(default_factory=dict)
    logged_in: float = 0.0
    offers: int = 0
    missed: int = 0
    calls: int = 0
    calls_by_queue: dict[str, int] = field(default_factory=dict)
    transferred: int = 0
    talk: float = 0.0
    wrapup: float = 0.0

    @property
    def aht(self) -> float | None:
        return (self.talk + self.wrapup) / self.calls if self.calls else None

    @property
    def occupancy(self) -> float | None:
        staffed = self.logged_in - self.time_by_state.get("paused", 0.0)
        busy = sum(self.time_by_state.get(s, 0.0) for s in ("ringing", "on_call", "wrap_up"))
        return 100.0 * busy / staffed if staffed > 0 else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(aht=self.aht, occupancy=self.occupancy)
        return d


# -- query helpers shared by the async store and the sync (CLI) readers ------


def _check_range(since: float, until: float, bucket: float) -> int:
    if not until > since:
        raise ValueError("until must be after since")
    if not bucket > 0:
        raise ValueError("bucket must be > 0")
    n = math.ceil((until - since) / bucket)
    if n > MAX_BUCKETS:
        raise ValueError(f"too many buckets ({n}); use a larger bucket")
    return n


def _stats_params(
    queue: str, since: float, until: float, bucket: float, service_level: float | None
) -> tuple[Any, ...]:
    return (float(since), float(bucket), service_level, queue, float(until))


def _build_stats(
    queue: str,
    since: float,
    until: float,
    bucket: float,
    n: int,
    rows: Sequence[Sequence[Any]],
) -> IntervalStats:
    buckets = [
        BucketStats(start=since + i * bucket, end=min(until, since + (i + 1) * bucket))
        for i in range(n)
    ]
    total = BucketStats(start=since, end=until)
    for row in rows:
        i = int(row[0])
        if not 0 <= i < n:  # float rounding at the edge
            i = min(max(i, 0), n - 1)
        b = buckets[i]
        part = BucketStats(start=b.start, end=b.end)
        for name, value in zip(_SUM_FIELDS, row[1:-1], strict=True):
            setattr(part, name, type(getattr(part, name))(value or 0))
        part.longest_wait = float(row[-1] or 0.0)
        b.add(part)
        total.add(part)
    return IntervalStats(queue, since, until, bucket, buckets, total)


def _build_agent(
    agent: str,
    since: float,
    until: float,
    times: Sequence[Sequence[Any]],
    rings: Sequence[Sequence[Any]],
    calls: Sequence[Sequence[Any]],
) -> AgentIntervalStats:
    out = AgentIntervalStats(agent, since, until)
    for state, reason, secs in times:
        secs = float(secs or 0.0)
        out.time_by_state[state] = out.time_by_state.get(state, 0.0) + secs
        out.logged_in += secs
        if state == "paused":
            out.pause_by_reason[reason] = out.pause_by_reason.get(reason, 0.0) + secs
    for result, count in rings:
        out.offers += int(count)
        if result in _MISSED:
            out.missed += int(count)
    for queue, count, talk, wrapup, transferred in calls:
        out.calls += int(count)
        out.calls_by_queue[queue] = int(count)
        out.talk += float(talk or 0.0)
        out.wrapup += float(wrapup or 0.0)
        out.transferred += int(transferred or 0)
    return out


def _call_row(r: QueueCallLike) -> tuple[Any, ...]:
    return (
        r.queue,
        r.caller_id,
        r.number,
        float(r.joined),
        None if r.answered is None else float(r.answered),
        float(r.ended),
        r.agent,
        r.outcome,
        float(r.wait),
        float(r.talk),
        float(r.wrapup),
        int(bool(r.callback)),
        int(r.priority),
        float(r.service_level),
        int(r.position),
    )


def _state_row(r: AgentStateLike) -> tuple[Any, ...]:
    return (r.agent, r.state, r.reason, r.queue, float(r.start), float(r.end), r.result)


class QueueLogStore(BatchedStore[_Op]):
    """Queue calls and agent state spans in the ccswitch SQLite database."""

    def __init__(self, *, flush_interval: float = 1.0) -> None:
        super().__init__(flush_interval=flush_interval)

    # -- recording (non-blocking: queued) -------------------------------------

    def add_call(self, rec: QueueCallLike) -> None:
        """A finished queue call, times in epoch seconds."""
        self._enqueue("call", _call_row(rec))

    def add_agent_state(self, rec: AgentStateLike) -> None:
        """A finished agent state span, times in epoch seconds."""
        self._enqueue("state", _state_row(rec))

    def add(self, rec: QueueCallLike | AgentStateLike) -> None:
        """Either kind (what Acd.drain_records() returns, once shifted)."""
        if hasattr(rec, "caller_id"):
            self.add_call(cast(QueueCallLike, rec))
        else:
            self.add_agent_state(rec)

    # -- writing --------------------------------------------------------------

    async def _write(self, batch: list[tuple[_Op, tuple[Any, ...]]]) -> None:
        await self._transaction([
            (_INSERT_CALL, [row for op, row in batch if op == "call"]),
            (_INSERT_STATE, [row for op, row in batch if op == "state"]),
        ])

    # -- queries (see only what has been written: flush() first if needed) ---

    async def stats(
        self,
        queue: str,
        since: float,
        until: float,
        bucket: float = 900,
        service_level: float | None = None,
    ) -> IntervalStats:
        """Statistics of `queue` per bucket over [since, until), and in total."""
        n = _check_range(since, until, bucket)
        params = _stats_params(queue, since, until, bucket, service_level)
        rows = await self._conn().execute_fetchall(_STATS_SQL, params)
        return _build_stats(queue, since, until, bucket, n, list(rows))

    async def agent_stats(self, agent: str, since: float, until: float) -> AgentIntervalStats:
        _check_range(since, until, until - since)
        db = self._conn()
        params = (agent, float(since), float(until))
        times = await db.execute_fetchall(_AGENT_TIME_SQL, params)
        rings = await db.execute_fetchall(_AGENT_RINGS_SQL, params)
        calls = await db.execute_fetchall(_AGENT_CALLS_SQL, params)
        return _build_agent(agent, since, until, list(times), list(rings), list(calls))

    async def calls(
        self,
        queue: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Queue calls, newest first."""
        sql, params = _calls_sql(queue, since, until, limit)
        rows = await self._conn().execute_fetchall(sql, params)
        return [_call_dict(r) for r in rows]


def _calls_sql(
    queue: str | None, since: float | None, until: float | None, limit: int
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if queue is not None:
        where.append("queue = ?")
        params.append(queue)
    if since is not None:
        where.append("joined >= ?")
        params.append(float(since))
    if until is not None:
        where.append("joined < ?")
        params.append(float(until))
    sql = f"SELECT {', '.join(_CALL_COLUMNS)} FROM queue_call"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY joined DESC, id DESC LIMIT ?"
    params.append(max(0, int(limit)))
    return sql, params


def _call_dict(row: Sequence[Any]) -> dict[str, Any]:
    d = dict(zip(_CALL_COLUMNS, row, strict=True))
    d["callback"] = bool(d["callback"])
    return d


# -- sync readers for the CLI (work while the server writes: WAL) ------------


def _read_sync(path: str | Path, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    conn = connect_readonly_sync(path)
    try:
        return fn(conn)
    finally:
        conn.close()


def _no_table(e: sqlite3.OperationalError) -> bool:
    return "no such table" in str(e)


def stats_sync(
    path: str | Path,
    queue: str,
    since: float,
    until: float,
    bucket: float = 900,
    service_level: float | None = None,
) -> IntervalStats:
    """`QueueLogStore.stats` with plain sqlite3 (FileNotFoundError: no database)."""
    n = _check_range(since, until, bucket)
    params = _stats_params(queue, since, until, bucket, service_level)

    def run(conn: sqlite3.Connection) -> list[Any]:
        try:
            return conn.execute(_STATS_SQL, params).fetchall()
        except sqlite3.OperationalError as e:
            if _no_table(e):
                return []  # a database from before the queue log
            raise

    return _build_stats(queue, since, until, bucket, n, _read_sync(path, run))


def agent_stats_sync(
    path: str | Path, agent: str, since: float, until: float
) -> AgentIntervalStats:
    """`QueueLogStore.agent_stats` with plain sqlite3."""
    _check_range(since, until, until - since)
    params = (agent, float(since), float(until))

    def run(conn: sqlite3.Connection) -> tuple[list[Any], list[Any], list[Any]]:
        try:
            return (
                conn.execute(_AGENT_TIME_SQL, params).fetchall(),
                conn.execute(_AGENT_RINGS_SQL, params).fetchall(),
                conn.execute(_AGENT_CALLS_SQL, params).fetchall(),
            )
        except sqlite3.OperationalError as e:
            if _no_table(e):
                return [], [], []
            raise

    times, rings, calls = _read_sync(path, run)
    return _build_agent(agent, since, until, times, rings, calls)
