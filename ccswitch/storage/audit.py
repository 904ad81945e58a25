"""The audit log: who changed what, when, from where (one row per state-changing request,
login success and failure).  Written at once (low volume, must not be lost in a batch);
read by admins through the API or the CLI.  Schema: ccswitch/storage/db.py (migration 3).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from typing import Any

from ccswitch.storage.users import SyncDb

__all__ = ["AuditStore"]

_COLS = ("id", "time", "username", "role", "source", "method", "path", "action", "target",
         "status", "detail")


def _row(r: tuple[Any, ...]) -> dict[str, Any]:
    d = dict(zip(_COLS, r, strict=True))
    try:
        d["detail"] = json.loads(d["detail"] or "{}")
    except ValueError:
        d["detail"] = {}
    return d


class AuditStore(SyncDb):
    def add_sync(self, *, action: str, username: str = "", role: str = "", source: str = "",
                 method: str = "", path: str = "", target: str = "", status: int = 0,
                 detail: dict[str, Any] | None = None, when: float | None = None) -> int:
        row = (when if when is not None else time.time(), username, role, source, method, path,
               action, target, int(status),
               json.dumps(detail or {}, separators=(",", ":"), default=str)[:4000])

        def ins(c: sqlite3.Connection) -> int:
            cur = c.execute("INSERT INTO audit (time, username, role, source, method, path,"
                            " action, target, status, detail) VALUES (?,?,?,?,?,?,?,?,?,?)", row)
            return int(cur.lastrowid or 0)

        return self.run(ins)

    async def add(self, **fields: Any) -> int:
        return await asyncio.to_thread(lambda: self.add_sync(**fields))

    def search_sync(self, since: float | None = None, until: float | None = None,
                    username: str | None = None, action: str | None = None,
                    limit: int = 100) -> list[dict[str, Any]]:
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if until is not None:
            where.append("time < ?")
            params.append(until)
        if username:
            where.append("username = ?")
            params.append(username)
        if action:
            # "channel." matches every channel action
            if action.endswith("."):
                where.append("action LIKE ? ESCAPE '\\'")
                params.append(action.replace("%", "\\%").replace("_", "\\_") + "%")
            else:
                where.append("action = ?")
                params.append(action)
        sql = f"SELECT {', '.join(_COLS)} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time DESC, id DESC LIMIT ?"
        params.append(max(1, min(int(limit), 10000)))
        return [_row(r) for r in self.run(lambda c: c.execute(sql, params).fetchall())]

    async def search(self, **kw: Any) -> list[dict[str, Any]]:
        return await asyncio.to_thread(lambda: self.search_sync(**kw))
