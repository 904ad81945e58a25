"""Users, tokens, sessions, the audit log and scoped CDR search on a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from ccswitch.storage.audit import AuditStore
from ccswitch.storage.cdr_search import CdrQuery, Scope, search_sync, summary_sync
from ccswitch.storage.users import UserExists, UserStore


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "ccswitch.db"


def test_users_tokens_sessions(db: Path) -> None:
    s = UserStore()
    s.open_sync(db)
    try:
        u = s.add("Ann", "supervisor", "hash1", "1003", ["sales"])
        assert (u.username, u.role, u.extension, u.queues) == ("Ann", "supervisor", "1003",
                                                               ["sales"])
        with pytest.raises(UserExists):
            s.add("ann", "agent", "h")  # names are case-insensitive
        with pytest.raises(ValueError):
            s.add("bob", "root", "h")
        assert s.get("ANN") is not None and s.count() == 1
        tid = s.add_token(u.id, "ci", "tokhash")
        found = s.user_for_token("tokhash")
        assert found is not None and found.username == "Ann"
        assert s.user_for_token("other") is None
        assert s.tokens(u.id)[0]["last_used"] is not None
        s.add_session(u.id, "sesshash", time.time() + 60)
        assert s.user_for_session("sesshash", time.time()) is not None
        assert s.user_for_session("sesshash", time.time() + 120) is None  # expired
        # a new password ends the sessions, not the tokens
        s.update("Ann", password_hash="hash2")
        assert s.user_for_session("sesshash", time.time()) is None
        assert s.user_for_token("tokhash") is not None
        assert s.delete_token(u.id, tid) and s.user_for_token("tokhash") is None
        s.update("Ann", role="agent", extension="1002", queues=[])
        u2 = s.get("Ann")
        assert u2 is not None and (u2.role, u2.extension, u2.queues) == ("agent", "1002", [])
        assert [x.username for x in s.by_extension("1002")] == ["Ann"]
        assert s.delete("Ann") and not s.delete("Ann") and s.get("Ann") is None
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*) FROM api_tokens").fetchone()[0] == 0
        conn.close()
    finally:
        s.close()


def test_audit_search(db: Path) -> None:
    a = AuditStore()
    a.open_sync(db)
    try:
        a.add_sync(action="login", username="ann", source="10.0.0.1", status=401, when=100.0)
        a.add_sync(action="channel_hangup", username="bob", source="::1", status=200,
                   when=200.0, detail={"cause": "NORMAL_CLEARING"})
        a.add_sync(action="channel_hold", username="bob", status=200, when=300.0)
        rows = a.search_sync()
        assert [r["action"] for r in rows] == ["channel_hold", "channel_hangup", "login"]
        assert rows[1]["detail"] == {"cause": "NORMAL_CLEARING"}
        assert [r["action"] for r in a.search_sync(action="channel_")] == []
        assert [r["time"] for r in a.search_sync(username="bob", since=250)] == [300.0]
        assert len(a.search_sync(limit=1)) == 1
        # LIKE wildcards in the prefix are literal
        assert a.search_sync(action="channel%.") == []
    finally:
        a.close()


def _cdr(conn: sqlite3.Connection, uuid: str, caller: str, callee: str, start: float,
         answered: bool, rec: str | None = None, **extra: object) -> None:
    conn.execute(
        'INSERT INTO cdr (call_uuid, caller, callee, start, answer, "end", billsec,'
        " disposition, recording, extra) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (uuid, caller, callee, start, start + 1 if answered else None, start + 10,
         9 if answered else 0, "ANSWERED" if answered else "NO ANSWER", rec,
         json.dumps(extra)))


def test_scoped_cdr_search(db: Path) -> None:
    s = UserStore()
    s.open_sync(db)  # migrates: the cdr table exists
    s.close()
    conn = sqlite3.connect(db)
    _cdr(conn, "a", "555", "600", 1000, True, "/r/a.wav", queue="sales", agent="1002")
    _cdr(conn, "b", "556", "601", 1100, True, "/r/b.wav", queue="support", agent="1004")
    _cdr(conn, "c", "1001", "1002", 1200, False)
    _cdr(conn, "d", "1001", "1003", 1300, True, "/r/d.wav")
    conn.commit()
    every = Scope()

    def ids(q: CdrQuery, scope: Scope = every) -> list[str]:
        return [r["call_uuid"] for r in search_sync(conn, q, scope)]

    assert ids(CdrQuery()) == ["d", "c", "b", "a"]
    assert ids(CdrQuery(queue="sales")) == ["a"]
    assert ids(CdrQuery(agent="1002")) == ["c", "a"]  # answered it, or was called
    assert ids(CdrQuery(caller="1001", callee="1003")) == ["d"]
    assert ids(CdrQuery(number="1002")) == ["c"]
    assert ids(CdrQuery(since=1100, until=1300)) == ["c", "b"]
    assert ids(CdrQuery(disposition="NO ANSWER")) == ["c"]
    assert ids(CdrQuery(with_recording=True)) == ["d", "b", "a"]
    with pytest.raises(ValueError):
        ids(CdrQuery(disposition="nope"))
    # a supervisor of sales (agent 1002); for recordings only the queue counts
    sup = Scope(queues=["sales"], numbers=["1002"])
    assert ids(CdrQuery(), sup) == ["c", "a"]
    assert ids(CdrQuery(with_recording=True), Scope(queues=["sales"])) == ["a"]
    # an agent: calls from, to or answered by its extension; nothing without one
    assert ids(CdrQuery(), Scope(numbers=["1004"])) == ["b"]
    assert ids(CdrQuery(), Scope(numbers=[])) == []
    summary = summary_sync(conn, 1050, sup)
    assert summary == {"calls": 1, "answered": 0, "missed": 1, "avg_billsec": None}
    summary = summary_sync(conn, 0, every)
    assert summary["calls"] == 4 and summary["answered"] == 3 and summary["avg_billsec"] == 9
    conn.close()
