"""The ccswitch SQLite database: connection settings and schema migrations.

One database file (config `database.path`) holds every store's tables (CDRs
now; recordings index, agents, audit later). Its schema has ONE linear
history, `MIGRATIONS`, and the file's `PRAGMA user_version` is the number of
migrations applied. To change the schema, append a migration; never edit one
that has shipped. A store opens the file with `open_database()`, which brings
the schema up to date.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiosqlite

__all__ = [
    "MIGRATIONS",
    "DatabaseTooNew",
    "Migration",
    "connect_readonly_sync",
    "migrate",
    "open_database",
]

# A migration is a list of SQL statements, or an async function for data
# changes that SQL alone cannot express. It runs inside a transaction.
Migration = Sequence[str] | Callable[[aiosqlite.Connection], Awaitable[None]]

_V1_CDR: tuple[str, ...] = (
    """
    CREATE TABLE cdr (
        id           INTEGER PRIMARY KEY,
        call_uuid    TEXT NOT NULL UNIQUE,
        caller       TEXT NOT NULL DEFAULT '',
        caller_name  TEXT,
        callee       TEXT NOT NULL DEFAULT '',
        start        REAL NOT NULL,
        answer       REAL,
        "end"        REAL,
        duration     REAL,
        billsec      REAL,
        disposition  TEXT,
        hangup_cause TEXT,
        recording    TEXT,
        interrupted  INTEGER NOT NULL DEFAULT 0,
        extra        TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX cdr_start ON cdr (start)",
    "CREATE INDEX cdr_caller ON cdr (caller, start)",
    "CREATE INDEX cdr_callee ON cdr (callee, start)",
    # Calls still in progress (or cut by a crash): small, and what recovery scans.
    'CREATE INDEX cdr_open ON cdr (call_uuid) WHERE "end" IS NULL',
)

# Queue (ACD) history: one row per queue call, one per agent state span
# (ccswitch/storage/queue_log.py).
_V2_QUEUE_LOG: tuple[str, ...] = (
    """
    CREATE TABLE queue_call (
        id            INTEGER PRIMARY KEY,
        queue         TEXT NOT NULL,
        caller_id     TEXT NOT NULL,
        number        TEXT NOT NULL DEFAULT '',
        joined        REAL NOT NULL,
        answered      REAL,
        ended         REAL NOT NULL,
        agent         TEXT NOT NULL DEFAULT '',
        outcome       TEXT NOT NULL,
        wait          REAL NOT NULL DEFAULT 0,
        talk          REAL NOT NULL DEFAULT 0,
        wrapup        REAL NOT NULL DEFAULT 0,
        callback      INTEGER NOT NULL DEFAULT 0,
        priority      INTEGER NOT NULL DEFAULT 0,
        service_level REAL NOT NULL DEFAULT 0,
        position      INTEGER NOT NULL DEFAULT 0
    )
    """,
    "CREATE INDEX queue_call_joined ON queue_call (queue, joined)",
    "CREATE INDEX queue_call_agent ON queue_call (agent, joined)",
    """
    CREATE TABLE agent_state (
        id      INTEGER PRIMARY KEY,
        agent   TEXT NOT NULL,
        state   TEXT NOT NULL,
        reason  TEXT NOT NULL DEFAULT '',
        queue   TEXT NOT NULL DEFAULT '',
        start   REAL NOT NULL,
        "end"   REAL NOT NULL,
        result  TEXT NOT NULL DEFAULT ''
    )
    """,
    # Spans overlapping [since, until) are found from their end.
    'CREATE INDEX agent_state_end ON agent_state (agent, "end")',
)

# Users of the API and web pages, their API tokens and web sessions (secrets are stored
# hashed), and the audit log of state-changing requests (ccswitch/storage/users.py, audit.py).
_V3_USERS_AUDIT: tuple[str, ...] = (
    """
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL DEFAULT '',
        role          TEXT NOT NULL,
        extension     TEXT NOT NULL DEFAULT '',
        queues        TEXT NOT NULL DEFAULT '[]',
        created       REAL NOT NULL,
        updated       REAL NOT NULL
    )
    """,
    """
    CREATE TABLE api_tokens (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name       TEXT NOT NULL DEFAULT '',
        token_hash TEXT NOT NULL UNIQUE,
        created    REAL NOT NULL,
        last_used  REAL
    )
    """,
    """
    CREATE TABLE web_sessions (
        id         INTEGER PRIMARY KEY,
        user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        created    REAL NOT NULL,
        expires    REAL NOT NULL
    )
    """,
    """
    CREATE TABLE audit (
        id       INTEGER PRIMARY KEY,
        time     REAL NOT NULL,
        username TEXT NOT NULL DEFAULT '',
        role     TEXT NOT NULL DEFAULT '',
        source   TEXT NOT NULL DEFAULT '',
        method   TEXT NOT NULL DEFAULT '',
        path     TEXT NOT NULL DEFAULT '',
        action   TEXT NOT NULL,
        target   TEXT NOT NULL DEFAULT '',
        status   INTEGER NOT NULL DEFAULT 0,
        detail   TEXT NOT NULL DEFAULT '{}'
    )
    """,
    "CREATE INDEX audit_time ON audit (time)",
    "CREATE INDEX audit_user ON audit (username, time)",
)

MIGRATIONS: tuple[Migration, ...] = (_V1_CDR, _V2_QUEUE_LOG, _V3_USERS_AUDIT)


class DatabaseTooNew(RuntimeError):
    """The file was written by a newer ccswitch (more migrations than we know)."""


async def open_database(
    path: str | Path, migrations: Sequence[Migration] = MIGRATIONS
) -> aiosqlite.Connection:
    """Open (creating it and its directory if needed) and migrate the database.

    The connection is in autocommit mode (isolation_level=None): writers use
    explicit BEGIN/COMMIT, so a batch is exactly one transaction.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(str(path), isolation_level=None)
    try:
        # WAL: readers (the CLI) never block the writer; NORMAL: no fsync per
        # commit (a power cut may lose the last commits, never corrupts).
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await migrate(conn, migrations)
    except BaseException:
        await conn.close()
        raise
    return conn


async def user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the migrations not yet applied; return the resulting version."""
    target = len(migrations)
    version = await user_version(conn)
    if version > target:
        raise DatabaseTooNew(
            f"database schema version {version} is newer than this ccswitch ({target})"
        )
    while version < target:
        # IMMEDIATE takes the write lock first, so two processes starting at
        # once cannot both apply the same migration.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            version = await user_version(conn)
            if version < target:
                step = migrations[version]
                if callable(step):
                    await step(conn)
                else:
                    for statement in step:
                        await conn.execute(statement)
                version += 1
                await conn.execute(f"PRAGMA user_version = {version:d}")
            await conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                await conn.execute("ROLLBACK")
            raise
    return version


def connect_readonly_sync(path: str | Path, timeout: float = 5.0) -> sqlite3.Connection:
    """A read-only sqlite3 connection, for tools such as the CLI.

    Safe while the server writes (WAL). Raises FileNotFoundError if there is
    no database yet.
    """
    p = Path(path).absolute()
    if not p.exists():
        raise FileNotFoundError(f"no database at {p}")
    return sqlite3.connect(f"{p.as_uri()}?mode=ro", uri=True, timeout=timeout)
