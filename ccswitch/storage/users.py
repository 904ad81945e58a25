"""Users of the API and web pages, their API tokens and web sessions.

Secrets never reach the database in clear: passwords arrive here already hashed
(argon2, ccswitch/api/auth.py), API tokens and session ids as SHA-256 digests
(they are long random strings: a fast hash is enough and allows lookup).

The store uses a plain sqlite3 connection driven from worker threads
(`asyncio.to_thread`): every call is short, and password hashing (the slow
part) happens in threads anyway.  The same class serves the CLI without a
running server (`open_sync`).  Schema: ccswitch/storage/db.py (migration 3).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from ccswitch.storage.db import open_database

__all__ = ["ROLES", "SyncDb", "User", "UserExists", "UserStore", "migrate_sync"]

ROLES: Final[tuple[str, ...]] = ("admin", "supervisor", "agent")

T = TypeVar("T")


class UserExists(ValueError):
    pass


@dataclass
class User:
    id: int
    username: str
    role: str
    extension: str = ""
    queues: list[str] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0
    password_hash: str = field(default="", repr=False)

    def public(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role, "extension": self.extension or None,
                "queues": list(self.queues), "created": self.created, "updated": self.updated}


_USER_COLS = "id, username, role, extension, queues, created, updated, password_hash"


def _user(row: tuple[Any, ...] | None) -> User | None:
    if row is None:
        return None
    try:
        queues = [str(q) for q in json.loads(row[4] or "[]")]
    except ValueError:
        queues = []
    return User(int(row[0]), str(row[1]), str(row[2]), str(row[3] or ""), queues,
                float(row[5]), float(row[6]), str(row[7] or ""))


def migrate_sync(path: str | Path) -> None:
    """Create / migrate the database file (for tools running without the server)."""

    async def run() -> None:
        conn = await open_database(path)
        await conn.close()

    asyncio.run(run())


class SyncDb:
    """One sqlite3 connection used from worker threads, one statement batch at a time."""

    def __init__(self) -> None:
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    async def open(self, path: str | Path) -> None:
        conn = await open_database(path)  # brings the schema up to date
        await conn.close()
        self.open_sync(path, migrate=False)

    def open_sync(self, path: str | Path, migrate: bool = True) -> None:
        if migrate:
            migrate_sync(path)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                               timeout=5.0)
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA foreign_keys=ON")
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("database is not open")
            return fn(self._conn)

    async def arun(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self.run, fn)


class UserStore(SyncDb):
    # ---- users
    def count(self) -> int:
        return self.run(lambda c: int(c.execute("SELECT COUNT(*) FROM users").fetchone()[0]))

    def get(self, username: str) -> User | None:
        return self.run(lambda c: _user(c.execute(
            f"SELECT {_USER_COLS} FROM users WHERE username = ?", (username,)).fetchone()))

    def all(self) -> list[User]:
        rows = self.run(lambda c: c.execute(
            f"SELECT {_USER_COLS} FROM users ORDER BY username").fetchall())
        return [u for u in (_user(r) for r in rows) if u is not None]

    def add(self, username: str, role: str, password_hash: str, extension: str = "",
            queues: builtins.list[str] | None = None) -> User:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        now = time.time()

        def ins(c: sqlite3.Connection) -> None:
            try:
                c.execute("INSERT INTO users (username, password_hash, role, extension, queues,"
                          " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (username, password_hash, role, extension,
                           json.dumps(queues or []), now, now))
            except sqlite3.IntegrityError:
                raise UserExists(f"user {username!r} exists") from None

        self.run(ins)
        u = self.get(username)
        assert u is not None
        return u

    def update(self, username: str, *, password_hash: str | None = None,
               role: str | None = None, extension: str | None = None,
               queues: builtins.list[str] | None = None) -> User | None:
        sets: list[str] = []
        params: list[Any] = []
        if password_hash is not None:
            sets.append("password_hash = ?")
            params.append(password_hash)
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"role must be one of {', '.join(ROLES)}")
            sets.append("role = ?")
            params.append(role)
        if extension is not None:
            sets.append("extension = ?")
            params.append(extension)
        if queues is not None:
            sets.append("queues = ?")
            params.append(json.dumps(queues))
        if sets:
            sets.append("updated = ?")
            params.append(time.time())
            params.append(username)

            def upd(c: sqlite3.Connection) -> None:
                c.execute(f"UPDATE users SET {', '.join(sets)} WHERE username = ?", params)
                if password_hash is not None:
                    # a new password ends every web session of the user
                    c.execute("DELETE FROM web_sessions WHERE user_id = "
                              "(SELECT id FROM users WHERE username = ?)", (username,))

            self.run(upd)
        return self.get(username)

    def delete(self, username: str) -> bool:
        def dele(c: sqlite3.Connection) -> bool:
            row = c.execute("SELECT id FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                return False
            c.execute("BEGIN")
            c.execute("DELETE FROM api_tokens WHERE user_id = ?", (row[0],))
            c.execute("DELETE FROM web_sessions WHERE user_id = ?", (row[0],))
            c.execute("DELETE FROM users WHERE id = ?", (row[0],))
            c.execute("COMMIT")
            return True

        return self.run(dele)

    def by_extension(self, extension: str) -> builtins.list[User]:
        rows = self.run(lambda c: c.execute(
            f"SELECT {_USER_COLS} FROM users WHERE extension = ?", (extension,)).fetchall())
        return [u for u in (_user(r) for r in rows) if u is not None]

    # ---- API tokens
    def add_token(self, user_id: int, name: str, token_hash: str) -> int:
        def ins(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO api_tokens (user_id, name, token_hash, created)"
                            " VALUES (?, ?, ?, ?)", (user_id, name, token_hash, time.time()))
            return int(cur.lastrowid or 0)

        return self.run(ins)

    def tokens(self, user_id: int) -> builtins.list[dict[str, Any]]:
        rows = self.run(lambda c: c.execute(
            "SELECT id, name, created, last_used FROM api_tokens WHERE user_id = ? ORDER BY id",
            (user_id,)).fetchall())
        return [{"id": r[0], "name": r[1], "created": r[2], "last_used": r[3]} for r in rows]

    def delete_token(self, user_id: int, token_id: int) -> bool:
        return self.run(lambda c: c.execute(
            "DELETE FROM api_tokens WHERE id = ? AND user_id = ?",
            (token_id, user_id)).rowcount > 0)

    def user_for_token(self, token_hash: str) -> User | None:
        def find(c: sqlite3.Connection) -> User | None:
            row = c.execute(
                "SELECT t.id, t.last_used, " + ", ".join(f"u.{x.strip()}" for x in
                                                        _USER_COLS.split(","))
                + " FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
                (token_hash,)).fetchone()
            if row is None:
                return None
            now = time.time()
            if row[1] is None or now - float(row[1]) > 60:  # one write a minute at most
                c.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (now, row[0]))
            return _user(row[2:])

        return self.run(find)

    # ---- web sessions
    def add_session(self, user_id: int, token_hash: str, expires: float) -> None:
        now = time.time()

        def ins(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM web_sessions WHERE expires < ?", (now,))
            c.execute("INSERT INTO web_sessions (user_id, token_hash, created, expires)"
                      " VALUES (?, ?, ?, ?)", (user_id, token_hash, now, expires))

        self.run(ins)

    def user_for_session(self, token_hash: str, now: float) -> User | None:
        return self.run(lambda c: _user(c.execute(
            "SELECT " + ", ".join(f"u.{x.strip()}" for x in _USER_COLS.split(","))
            + " FROM web_sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.token_hash = ? AND s.expires > ?", (token_hash, now)).fetchone()))

    def delete_session(self, token_hash: str) -> None:
        self.run(lambda c: c.execute("DELETE FROM web_sessions WHERE token_hash = ?",
                                     (token_hash,)))
