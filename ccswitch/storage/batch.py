"""A store whose writes are queued and committed in batches by a background task.

Call-path code must never wait for SQLite: operations are queued without blocking
and one transaction every `flush_interval` writes them all (at 500 calls/s one
aiosqlite round trip per update would be too slow).  A failed batch is kept, in
order, and retried with back-off up to 5 s.  Subclasses implement `_write`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite

from ccswitch.storage.db import open_database

log = logging.getLogger("ccswitch.storage")

Op = TypeVar("Op", bound=str)


class BatchedStore(Generic[Op]):
    def __init__(self, *, flush_interval: float) -> None:
        self.flush_interval = flush_interval
        self._db: aiosqlite.Connection | None = None
        self._pending: list[tuple[Op, tuple[Any, ...]]] = []
        self._wakeup = asyncio.Event()
        self._closing = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # -- life cycle ---------------------------------------------------------

    async def open(self, path: str | Path) -> None:
        if self._db is not None:
            raise RuntimeError(f"{type(self).__name__} is already open")
        self._db = await open_database(path)
        self._closing.clear()
        self._task = asyncio.create_task(self._flusher(), name=f"{type(self).__name__}-flush")

    async def close(self) -> None:
        """Write what is queued, then close. Raises if that last write fails."""
        if self._db is None:
            return
        self._closing.set()
        self._wakeup.set()
        if self._task is not None:
            await self._task
            self._task = None
        try:
            await self.flush()
        finally:
            db, self._db = self._db, None
            await db.close()

    @property
    def pending(self) -> int:
        """Operations queued and not yet written."""
        return len(self._pending)

    def _enqueue(self, op: Op, args: tuple[Any, ...]) -> None:
        if self._db is None or self._closing.is_set():
            raise RuntimeError(f"{type(self).__name__} is not open")
        self._pending.append((op, args))
        self._wakeup.set()

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError(f"{type(self).__name__} is not open")
        return self._db

    # -- writing --------------------------------------------------------------

    async def flush(self) -> None:
        """Write every queued operation now, in one transaction."""
        async with self._lock:
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                await self._write(batch)
            except BaseException:
                # keep them, in order, ahead of anything queued meanwhile
                self._pending[:0] = batch
                raise

    async def _write(self, batch: list[tuple[Op, tuple[Any, ...]]]) -> None:
        raise NotImplementedError

    async def _transaction(self, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
        """executemany() each (sql, rows) with rows, in order, in one transaction."""
        db = self._conn()
        await db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                if rows:
                    await db.executemany(sql, rows)
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise

    async def _flusher(self) -> None:
        backoff = self.flush_interval
        while not self._closing.is_set():
            await self._wakeup.wait()
            # let a batch gather; close() cuts the wait short
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), backoff)
            if self._closing.is_set():
                return  # close() writes the rest itself
            try:
                await self.flush()
            except Exception:
                log.exception("%s: writing %d queued operations failed; will retry",
                              type(self).__name__, len(self._pending))
                backoff = min(backoff * 2, 5.0)
                self._wakeup.set()
            else:
                backoff = self.flush_interval
