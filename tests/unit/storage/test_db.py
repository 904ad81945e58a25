from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import pytest

from ccswitch.storage.db import (
    MIGRATIONS,
    DatabaseTooNew,
    Migration,
    connect_readonly_sync,
    migrate,
    open_database,
)


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_new_database_is_migrated_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "ccswitch.db"  # directories are created
    conn = await open_database(path)
    try:
        assert list(await conn.execute_fetchall("PRAGMA journal_mode")) == [("wal",)]
        assert list(await conn.execute_fetchall("PRAGMA synchronous")) == [(1,)]  # NORMAL
        names = {r[0] for r in await conn.execute_fetchall("SELECT name FROM sqlite_master")}
        assert {"cdr", "cdr_start", "cdr_open"} <= names
    finally:
        await conn.close()
    assert version_of(path) == len(MIGRATIONS)


async def test_forward_migration_on_reopen(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    conn = await open_database(path)
    await conn.execute("INSERT INTO cdr (call_uuid, start) VALUES ('old', 1.0)")
    await conn.close()

    async def backfill(conn: aiosqlite.Connection) -> None:
        await conn.execute("UPDATE cdr SET trunk = 'legacy'")

    later: list[Migration] = [*MIGRATIONS, ["ALTER TABLE cdr ADD COLUMN trunk TEXT"], backfill]
    conn = await open_database(path, later)
    try:
        rows = await conn.execute_fetchall("SELECT call_uuid, trunk FROM cdr")
        assert list(rows) == [("old", "legacy")]
        assert await migrate(conn, later) == len(later)  # nothing left to do
    finally:
        await conn.close()
    assert version_of(path) == len(MIGRATIONS) + 2


async def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    await (await open_database(path)).close()
    broken: list[Migration] = [
        *MIGRATIONS,
        ["CREATE TABLE half (x)", "THIS IS NOT SQL"],
    ]
    with pytest.raises(sqlite3.OperationalError):
        await open_database(path, broken)
    assert version_of(path) == len(MIGRATIONS)
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "half" not in tables


async def test_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(DatabaseTooNew, match="newer"):
        await open_database(path)


def test_readonly_connection(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        connect_readonly_sync(tmp_path / "missing.db")
    path = tmp_path / "x.db"
    sqlite3.connect(path).close()
    conn = connect_readonly_sync(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE t (x)")
    finally:
        conn.close()
