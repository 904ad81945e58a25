"""Call detail records: one row per call, written in batches.

Call control reports a call's life with `start`, `answer`, `end` and
`update_extra`. These do not touch the database: they append to a queue that
a background task writes every `flush_interval` seconds in one transaction
(at 500 calls/s that is ~1500 updates/s; one thread round trip each would
not keep up). `flush()` forces a write; `close()` writes what is left.

Times are wall-clock epoch seconds (time.time()), not the monotonic clock.
Call these methods from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Literal, get_args

from ccswitch.storage.batch import BatchedStore
from ccswitch.storage.db import connect_readonly_sync

__all__ = [
    "DISPOSITIONS",
    "CdrStore",
    "Disposition",
    "disposition_for",
    "read_last_sync",
]

log = logging.getLogger(__name__)

Disposition = Literal["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED"]
DISPOSITIONS: Final[tuple[str, ...]] = get_args(Disposition)

INTERRUPTED: Final = "INTERRUPTED"

# Columns as returned by queries (dict keys), in table order.
COLUMNS: Final[tuple[str, ...]] = (
    "call_uuid",
    "caller",
    "caller_name",
    "callee",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "hangup_cause",
    "recording",
    "interrupted",
    "extra",
)
_SELECT: Final = "SELECT " + ", ".join(f'"{c}"' for c in COLUMNS) + " FROM cdr"

_INSERT: Final = (
    "INSERT INTO cdr (call_uuid, caller, caller_name, callee, start, recording, extra)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_uuid) DO NOTHING"
)
# First answer wins; an answer after the end is ignored.
_ANSWER: Final = (
    'UPDATE cdr SET answer = ? WHERE call_uuid = ? AND answer IS NULL AND "end" IS NULL'
)
# First end wins, so a duplicate hangup report cannot rewrite a finished CDR.
_END: Final = (
    'UPDATE cdr SET "end" = ?1, disposition = ?2, hangup_cause = ?3,'
    " duration = MAX(0, ?1 - start),"
    " billsec = CASE WHEN answer IS NULL THEN 0 ELSE MAX(0, ?1 - answer) END"
    ' WHERE call_uuid = ?4 AND "end" IS NULL'
)
_EXTRA: Final = "UPDATE cdr SET extra = json_patch(extra, ?) WHERE call_uuid = ?"
_RECORDING: Final = "UPDATE cdr SET recording = ? WHERE call_uuid = ?"
_RECOVER: Final = (
    'UPDATE cdr SET "end" = ?1, disposition = ?2, hangup_cause = ?3, interrupted = 1,'
    " duration = MAX(0, ?1 - start),"
    " billsec = CASE WHEN answer IS NULL THEN 0 ELSE MAX(0, ?1 - answer) END"
    ' WHERE call_uuid = ?4 AND "end" IS NULL'
)

# Keys usable in extra_filters: a name, or a dotted path into nested objects.
_EXTRA_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

_Op = Literal["start", "recording", "answer", "end", "extra"]

# Q.850 causes (by their usual names) that get a disposition other than FAILED.
_CAUSE_DISPOSITION: Final[dict[str, Disposition]] = {
    "USER_BUSY": "BUSY",
    "NO_ANSWER": "NO ANSWER",
    "NO_USER_RESPONSE": "NO ANSWER",
    "ORIGINATOR_CANCEL": "CANCELLED",
}


def disposition_for(hangup_cause: str, answered: bool) -> Disposition:
    """The usual CDR disposition for a Q.850 cause (as Asterisk reports it)."""
    if answered:
        return "ANSWERED"
    return _CAUSE_DISPOSITION.get(hangup_cause, "FAILED")


def _row_to_dict(row: Sequence[Any]) -> dict[str, Any]:
    out = dict(zip(COLUMNS, row, strict=True))
    out["interrupted"] = bool(out["interrupted"])
    try:
        out["extra"] = json.loads(out["extra"]) if out["extra"] else {}
    except ValueError:
        out["extra"] = {}
    return out


class CdrStore(BatchedStore[_Op]):
    """CDRs in the ccswitch SQLite database."""

    def __init__(self, *, flush_interval: float = 0.1) -> None:
        super().__init__(flush_interval=flush_interval)

    # -- recording a call (non-blocking: queued) ----------------------------

    def start(
        self,
        call_uuid: str,
        caller: str,
        caller_name: str | None,
        callee: str,
        start: float,
        recording: str | Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        rec = str(recording) if recording is not None else None
        # Serialize now, so that a value JSON cannot hold fails in the caller,
        # not later inside a batch.
        extra_json = json.dumps(extra, separators=(",", ":")) if extra else "{}"
        row = (call_uuid, caller, caller_name, callee, float(start), rec, extra_json)
        self._enqueue("start", row)

    def answer(self, call_uuid: str, when: float) -> None:
        self._enqueue("answer", (float(when), call_uuid))

    def end(self, call_uuid: str, when: float, disposition: str, hangup_cause: str) -> None:
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {DISPOSITIONS}, not {disposition!r}")
        self._enqueue("end", (float(when), disposition, hangup_cause, call_uuid))

    def set_recording(self, call_uuid: str, path: str | Path) -> None:
        """The call's recording file (known once the call is answered)."""
        self._enqueue("recording", (str(path), call_uuid))

    def update_extra(self, call_uuid: str, **fields: Any) -> None:
        """Merge `fields` into the row's `extra` JSON (RFC 7396: None removes a key)."""
        if fields:
            self._enqueue("extra", (json.dumps(fields, separators=(",", ":")), call_uuid))

    # -- writing --------------------------------------------------------------

    async def _write(self, batch: list[tuple[_Op, tuple[Any, ...]]]) -> None:
        groups: dict[_Op, list[tuple[Any, ...]]] = {
            "start": [], "recording": [], "answer": [], "end": [], "extra": []}
        for op, args in batch:
            groups[op].append(args)
        # Grouped by kind, in this order: every row exists before it is
        # updated, and an answer in the same batch is there before the end
        # that computes billsec from it. Within a kind the order is kept.
        await self._transaction([
            (_INSERT, groups["start"]), (_RECORDING, groups["recording"]),
            (_ANSWER, groups["answer"]), (_END, groups["end"]), (_EXTRA, groups["extra"]),
        ])

    async def recover_interrupted(self, now: float) -> int:
        """Close the CDRs of calls cut short by a crash; return how many.

        Such a row is marked interrupted, with cause INTERRUPTED and
        disposition ANSWERED if it was answered, else FAILED. Its end is the
        recording file's modification time (the last audio written), or
        failing that the answer or start time; never later than `now`.
        """
        await self.flush()
        db = self._conn()
        rows = await db.execute_fetchall(
            'SELECT call_uuid, start, answer, recording FROM cdr WHERE "end" IS NULL'
        )
        if not rows:
            return 0
        fixes = await asyncio.to_thread(_recovery_updates, list(rows), now)
        await db.execute("BEGIN IMMEDIATE")
        try:
            await db.executemany(_RECOVER, fixes)
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        log.warning("closed %d CDRs of calls interrupted by a restart", len(fixes))
        return len(fixes)

    # -- queries (see only what has been written: flush() first if needed) ---

    async def get(self, call_uuid: str) -> dict[str, Any] | None:
        rows = await self._conn().execute_fetchall(f"{_SELECT} WHERE call_uuid = ?", (call_uuid,))
        return next((_row_to_dict(r) for r in rows), None)

    async def last(self, n: int = 20) -> list[dict[str, Any]]:
        """The `n` most recent calls, newest first."""
        rows = await self._conn().execute_fetchall(
            f"{_SELECT} ORDER BY start DESC, id DESC LIMIT ?", (max(0, n),)
        )
        return [_row_to_dict(r) for r in rows]

    async def search(
        self,
        since: float | None = None,
        until: float | None = None,
        number: str | None = None,
        disposition: str | None = None,
        limit: int = 100,
        extra_filters: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Calls newest first, filtered by all the criteria given.

        since/until bound the start time (since <= start < until); number
        matches the caller or the callee exactly; extra_filters match keys of
        `extra` by equality (`{"queue": "sales", "agent.id": 7}`; None matches
        a missing key).
        """
        sql, params = _search_sql(since, until, number, disposition, limit, extra_filters)
        rows = await self._conn().execute_fetchall(sql, params)
        return [_row_to_dict(r) for r in rows]


def _recovery_updates(rows: Iterable[Sequence[Any]], now: float) -> list[tuple[Any, ...]]:
    """UPDATE parameters for unfinished rows (runs in a thread: it stats files)."""
    out: list[tuple[Any, ...]] = []
    for call_uuid, start, answer, recording in rows:
        floor = answer if answer is not None else start
        end = floor
        if recording:
            with contextlib.suppress(OSError):  # no file: fall back to floor
                end = os.stat(recording).st_mtime
        end = max(floor, min(end, now))
        disposition = "ANSWERED" if answer is not None else "FAILED"
        out.append((end, disposition, INTERRUPTED, call_uuid))
    return out


def _search_sql(
    since: float | None,
    until: float | None,
    number: str | None,
    disposition: str | None,
    limit: int,
    extra_filters: dict[str, Any] | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if since is not None:
        where.append("start >= ?")
        params.append(float(since))
    if until is not None:
        where.append("start < ?")
        params.append(float(until))
    if number is not None:
        where.append("(caller = ? OR callee = ?)")
        params += [number, number]
    if disposition is not None:
        if disposition not in DISPOSITIONS:
            raise ValueError(f"disposition must be one of {DISPOSITIONS}, not {disposition!r}")
        where.append("disposition = ?")
        params.append(disposition)
    for key, value in (extra_filters or {}).items():
        if not _EXTRA_KEY.fullmatch(key):
            raise ValueError(f"bad extra filter key {key!r}")
        expr = f"json_extract(extra, '$.{key}')"
        if value is None:
            where.append(f"{expr} IS NULL")
        elif isinstance(value, bool | int | float | str):
            where.append(f"{expr} = ?")
            params.append(int(value) if isinstance(value, bool) else value)
        else:
            raise TypeError(f"extra filter {key!r}: only str, int, float, bool or None")
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY start DESC, id DESC LIMIT ?"
    params.append(max(0, int(limit)))
    return sql, params


def read_last_sync(path: str | Path, n: int = 20) -> list[dict[str, Any]]:
    """The `n` most recent CDRs, read with plain sqlite3 (for the CLI).

    Works while the server is writing (WAL readers do not block it, nor it
    them). Raises FileNotFoundError if there is no database.
    """
    conn = connect_readonly_sync(path)
    try:
        try:
            rows = conn.execute(
                f"{_SELECT} ORDER BY start DESC, id DESC LIMIT ?", (max(0, n),)
            ).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []  # created but never migrated
            raise
    finally:
        conn.close()
    return [_row_to_dict(r) for r in rows]
