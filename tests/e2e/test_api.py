"""The HTTP API against its OpenAPI document: every documented operation, called as every
role and unauthenticated; answers checked against the documented statuses and schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from tests.e2e.apiclient import (
    PASSWORDS,
    ROLES,
    Api,
    api_server,
    base_url,
    tokens,
)
from tests.e2e.server import CcswitchServer

# path parameters: chosen inside every role's scope (agent 1002 is in sales, sup's queue)
PARAMS = {"id": "nosuchchannel", "name": "sales", "agent": "1002", "number": "800",
          "member": "nobody", "call": "nosuchcall", "username": "agent2", "token_id": "999999",
          "file": "app.css"}
BODIES: dict[str, Any] = {
    "login": {"username": "agent", "password": PASSWORDS["agent"]},
    "me_password": {"old_password": "wrong-password", "new_password": "another-password"},
    "hangup": {}, "transfer": {"to": "1001"},
    "originate": {"source": "1001", "to": "1004", "wait": False},
    "agent_action": {"reason": "break"},
    "monitor_start": {"agent": "1002", "mode": "listen", "extension": "1003"},
    "monitor_mode": {"mode": "whisper"},
    "user_add": {"username": "newuser", "role": "agent", "extension": "1001"},
    "user_update": {"extension": "1004"},
    "token_add": {"name": "sweep"},
}
# what an allowed role may get besides 200 (no call, room, recording... exists)
NOT_FOUND_OK = {"channel", "hangup", "transfer", "hold", "unhold", "record_start",
                "record_stop", "conference", "conference_action", "cdr_one", "recording",
                "monitor_mode", "monitor_stop", "token_delete", "screenpop", "originate",
                "monitor_start"}
SKIP_CALL = {"shutdown", "user_delete", "events", "logout"}  # run separately


@pytest.fixture
def srv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with api_server(tmp_path / "server", monkeypatch) as s:
        yield s


def _path(path: str, name: str) -> str:
    action = {"agent_action": "login", "conference_action": "mute"}.get(name)
    if action:
        path = path.replace("{action}", action)
    for k, v in PARAMS.items():
        path = path.replace("{" + k + "}", v)
    return path


async def test_every_operation_every_role(srv: CcswitchServer) -> None:
    api = Api(base_url(srv), cookies=False)
    toks = tokens(srv)
    try:
        doc = await api.load_doc()
        validate(doc)  # a valid OpenAPI 3.1 document
        ops = [(p, m, o) for p, item in doc["paths"].items() for m, o in item.items()]
        assert len(ops) >= 50
        for doc_path, method, op in ops:
            name = op["operationId"]
            roles = op["x-roles"]
            if name in SKIP_CALL:
                continue
            path = _path(doc_path, name)
            if name == "queue_stats":
                path += "?bucket=3600"
            for who in (None, *ROLES):
                if name == "user_add":
                    BODIES["user_add"]["username"] = f"new{who}"
                if name == "originate":
                    BODIES["originate"]["source"] = {"admin": "1001", "supervisor": "1003",
                                                     "agent": "1002"}.get(str(who), "1001")
                st, data = await api.req(method.upper(), path, toks[who] if who else None,
                                         BODIES.get(name) if method != "get" else None)
                where = f"{method.upper()} {path} as {who or 'nobody'}"
                if "public" in roles:
                    assert st < 400 or (name == "login" and st == 429), f"{where}: {st} {data}"
                elif who is None:
                    assert st == 401, f"{where}: {st}"
                elif who not in roles:
                    assert st == 403, f"{where}: {st}"
                else:
                    ok = {200} | ({404} if name in NOT_FOUND_OK else set())
                    if name == "me_password":
                        ok = {400}  # the old password given is wrong
                    if name == "monitor_start":
                        ok = {409}  # agent 1002 is not on a call
                    assert st in ok, f"{where}: {st} {data}"
                if isinstance(data, dict | list):
                    api.check(method, doc_path, st, data)
        # the pages and the event stream
        st, html = await api.req("GET", "/wallboard")
        assert st == 200 and b"/static/wallboard.js" in html
        for who in (None, *ROLES):
            hdr = {"Authorization": f"Bearer {toks[who]}"} if who else {}
            if who is None:
                with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                    await api.session.ws_connect(api.base + "/api/events", headers=hdr)
                assert ei.value.status == 401
                continue
            async with api.session.ws_connect(api.base + "/api/events", headers=hdr) as ws:
                hello = json.loads((await ws.receive(timeout=5)).data)
                assert hello["event"] == "HELLO" and hello["role"] == who
        # a token in the query string works for the stream only
        async with api.session.ws_connect(
                api.base + f"/api/events?token={toks['agent']}") as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["user"] == "agent"
        st, _ = await api.req("GET", f"/api/channels?token={toks['agent']}")
        assert st == 401
        # unknown paths and methods are JSON errors too
        st, data = await api.req("GET", "/api/nope", toks["admin"])
        assert st == 404 and "error" in data
        # deleting users: the last admin cannot go; others can
        st, data = await api.req("DELETE", "/api/users/admin", toks["admin"])
        assert st == 409, data
        st, data = await api.req("DELETE", "/api/users/newadmin", toks["admin"])
        assert st == 200
        st, _ = await api.req("DELETE", "/api/users/newagent", toks["supervisor"])
        assert st == 403
        # shutdown: refused to non-admins (the admin call is in test_api_backup)
        for who in ("supervisor", "agent"):
            st, _ = await api.req("POST", "/api/shutdown", toks[who])
            assert st == 403
    finally:
        await api.close()


async def test_sessions_cookies_csrf_and_audit(srv: CcswitchServer) -> None:
    api = Api(base_url(srv))
    try:
        await api.load_doc()
        # wrong password: 401, audited as a failed login
        st, data = await api.req("POST", "/api/login", body={"username": "sup",
                                                              "password": "nope-nope"})
        assert st == 401
        st, me = await api.req("POST", "/api/login", body={"username": "sup",
                                                            "password": PASSWORDS["sup"]})
        assert st == 200 and me["role"] == "supervisor" and me["queues"] == ["sales"]
        api.check("post", "/api/login", st, me)
        # the cookie now authenticates; a change without the CSRF header is refused
        st, data = await api.req("GET", "/api/me")
        assert st == 200 and data["username"] == "sup" and data["via"] == "session"
        st, data = await api.req("POST", "/api/agents/1002/login")
        assert st == 403 and "X-Requested-With" in data["error"]
        st, data = await api.req("POST", "/api/agents/1002/login",
                                 headers={"X-Requested-With": "ccswitch"})
        assert st == 200 and data["result"] == ["sales"], data
        # scope: sup supervises sales (agent 1002), not support (agent 1004)
        st, data = await api.req("POST", "/api/agents/1004/login",
                                 headers={"X-Requested-With": "ccswitch"})
        assert st == 403
        st, qs = await api.req("GET", "/api/queues")
        assert [q["name"] for q in qs] == ["sales"]
        st, _ = await api.req("GET", "/api/queues/support")
        assert st == 403
        st, ags = await api.req("GET", "/api/agents")
        assert {a["agent"] for a in ags} == {"1002"}
        # the event stream with the cookie: from our own pages only
        with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
            await api.session.ws_connect(api.base + "/api/events",
                                         headers={"Origin": "http://evil.example"})
        assert ei.value.status == 403
        async with api.session.ws_connect(api.base + "/api/events",
                                          headers={"Origin": api.base}) as ws:
            assert json.loads((await ws.receive(timeout=5)).data)["user"] == "sup"
        # log out: the cookie no longer works
        st, _ = await api.req("POST", "/api/logout", headers={"X-Requested-With": "ccswitch"})
        assert st == 200
        api.session.cookie_jar.clear()
        st, _ = await api.req("GET", "/api/me")
        assert st == 401
        # five failures in a row: throttled
        for _ in range(5):
            await api.req("POST", "/api/login", body={"username": "agent", "password": "x"})
        st, _ = await api.req("POST", "/api/login", body={"username": "agent",
                                                           "password": PASSWORDS["agent"]})
        assert st == 429
        # the audit log (admins only) has all of it: who, what, when, from where
        toks = tokens(srv)
        st, rows = await api.req("GET", "/api/audit?limit=500", toks["admin"])
        assert st == 200
        api.check("get", "/api/audit", st, rows)
        logins = [(r["username"], r["status"]) for r in rows if r["action"] == "login"]
        assert ("sup", 401) in logins and ("sup", 200) in logins and ("agent", 429) in logins
        mine = [r for r in rows if r["action"] == "agent_login"]
        assert {(r["username"], r["target"], r["status"]) for r in mine} >= {
            ("sup", "1002", 200), ("sup", "1004", 403)}
        assert all(r["source"] == "127.0.0.1" and r["time"] > 0 for r in mine)
        csrf = [r for r in rows if r["action"] == "agent_login" and r["status"] == 403
                and r["target"] == "1002"]
        assert csrf, "the refused (CSRF) request is audited too"
        # users added through the local socket are audited as the local admin
        adds = [r for r in rows if r["action"] == "user_add"]
        assert {r["target"] for r in adds} >= {"sup", "agent", "agent2"}
        assert all(r["username"] in ("local", "system") for r in adds)
        # passwords never reach the log
        assert "sup-secret-pw" not in json.dumps(rows)
        st, _ = await api.req("GET", "/api/audit", toks["supervisor"])
        assert st == 403
        st, rows = await api.req("GET", "/api/audit?user=sup&action=login", toks["admin"])
        assert rows and all(r["username"] == "sup" and r["action"] == "login" for r in rows)
    finally:
        await api.close()
