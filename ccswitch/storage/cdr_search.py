"""CDR and recording search for the API: more criteria than CdrStore.search (caller,
callee, agent, queue, recordings only) and a role scope (a supervisor's queues and
agents, an agent's own calls) applied in SQL, so that LIMIT counts visible rows only.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from ccswitch.storage.cdr import _SELECT, DISPOSITIONS, _row_to_dict

__all__ = ["CdrQuery", "Scope", "search_sync"]


@dataclass
class Scope:
    """What a user may see; None fields mean "no restriction"."""

    queues: list[str] | None = None  # calls through these queues
    numbers: list[str] | None = None  # calls from / to / answered by these extensions

    @property
    def unrestricted(self) -> bool:
        return self.queues is None and self.numbers is None


@dataclass
class CdrQuery:
    since: float | None = None
    until: float | None = None
    number: str | None = None  # caller or callee
    caller: str | None = None
    callee: str | None = None
    agent: str | None = None
    queue: str | None = None
    disposition: str | None = None
    call_uuid: str | None = None
    with_recording: bool = False
    limit: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


def _sql(q: CdrQuery, scope: Scope) -> tuple[str, list[Any]]:
    where: list[str] = []
    p: list[Any] = []
    if q.since is not None:
        where.append("start >= ?")
        p.append(float(q.since))
    if q.until is not None:
        where.append("start < ?")
        p.append(float(q.until))
    if q.number:
        where.append("(caller = ? OR callee = ?)")
        p += [q.number, q.number]
    if q.caller:
        where.append("caller = ?")
        p.append(q.caller)
    if q.callee:
        where.append("callee = ?")
        p.append(q.callee)
    if q.agent:
        where.append("(json_extract(extra, '$.agent') = ? OR callee = ?)")
        p += [q.agent, q.agent]
    if q.queue:
        where.append("json_extract(extra, '$.queue') = ?")
        p.append(q.queue)
    if q.disposition:
        if q.disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
        where.append("disposition = ?")
        p.append(q.disposition)
    if q.call_uuid:
        where.append("call_uuid = ?")
        p.append(q.call_uuid)
    if q.with_recording:
        where.append("recording IS NOT NULL AND recording != ''")
    if not scope.unrestricted:
        ors: list[str] = []
        if scope.queues:
            marks = ",".join("?" * len(scope.queues))
            ors.append(f"json_extract(extra, '$.queue') IN ({marks})")
            p += scope.queues
        if scope.numbers:
            marks = ",".join("?" * len(scope.numbers))
            ors.append(f"caller IN ({marks}) OR callee IN ({marks})"
                       f" OR json_extract(extra, '$.agent') IN ({marks})")
            p += scope.numbers * 3
        where.append("(" + " OR ".join(ors) + ")" if ors else "0")
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start DESC, id DESC LIMIT ?"
    p.append(max(1, min(int(q.limit), 10000)))
    return sql, p


def search_sync(conn: sqlite3.Connection, q: CdrQuery, scope: Scope) -> list[dict[str, Any]]:
    sql, params = _sql(q, scope)
    return [_row_to_dict(r) for r in conn.execute(sql, params).fetchall()]


def summary_sync(conn: sqlite3.Connection, since: float, scope: Scope) -> dict[str, Any]:
    """Calls started since `since` (visible to `scope`): count, answered, missed, mean billsec."""
    sql, params = _sql(CdrQuery(since=since, limit=1), scope)
    # reuse the WHERE clause of the search: replace the select list and drop ORDER/LIMIT
    where = sql[len(_SELECT):].rsplit(" ORDER BY", 1)[0]
    row = conn.execute(
        "SELECT COUNT(*), SUM(answer IS NOT NULL), "
        "AVG(CASE WHEN answer IS NOT NULL THEN billsec END) FROM cdr" + where,
        params[:-1]).fetchone()
    calls, answered, avg = int(row[0] or 0), int(row[1] or 0), row[2]
    return {"calls": calls, "answered": answered, "missed": calls - answered,
            "avg_billsec": round(float(avg), 1) if avg is not None else None}
