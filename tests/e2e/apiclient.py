"""Helpers for the HTTP API tests: a server with the API on, users of every role, a client
that validates JSON answers against the served OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.e2e.server import DEMO_EXTENSIONS, CcswitchServer
from tests.peers.netutil import free_tcp_port

ADMIN_PASSWORD = "admin-secret-pw"
PASSWORDS = {"admin": ADMIN_PASSWORD, "sup": "sup-secret-pw", "agent": "agent-secret-pw",
             "agent2": "agent2-secret-pw"}
ROLES = ("admin", "supervisor", "agent")
USER_OF_ROLE = {"admin": "admin", "supervisor": "sup", "agent": "agent"}

EXTENSIONS = [dict(e) for e in DEMO_EXTENSIONS] + [
    {"number": "1004", "password": "secret1004", "name": "Dave"}]
QUEUES = {
    "sales": {"number": "600", "strategy": "ringall", "members": [{"agent": "1002"}],
              "first_announcement_after": 600, "announce_position_every": 0,
              "callback": False, "ring_timeout": 10, "wrapup": 0, "service_level": 20},
    "support": {"number": "601", "strategy": "ringall", "members": [{"agent": "1004"}],
                "first_announcement_after": 600, "announce_position_every": 0,
                "callback": False, "ring_timeout": 10, "wrapup": 0},
}


def api_overrides(**api: Any) -> dict[str, Any]:
    return {"extensions": EXTENSIONS, "queues": QUEUES,
            "api": dict({"enabled": True, "port": free_tcp_port()}, **api),
            "conferences": [{"number": "800", "name": "test"}]}


@contextmanager
def api_server(workdir: Path, monkeypatch: Any, **api: Any) -> Iterator[CcswitchServer]:
    """A running server with the API on and the users admin, sup (supervisor of sales,
    extension 1003), agent (extension 1002, in sales) and agent2 (1004, in support)."""
    monkeypatch.setenv("CCSWITCH_ADMIN_PASSWORD", ADMIN_PASSWORD)
    srv = CcswitchServer(workdir, api_overrides(**api))
    srv.start()
    try:
        srv.cli("users", "add", "sup", "--role", "supervisor", "--queues", "sales",
                "--extension", "1003", "--password", PASSWORDS["sup"])
        srv.cli("users", "add", "agent", "--role", "agent", "--extension", "1002",
                "--password", PASSWORDS["agent"])
        srv.cli("users", "add", "agent2", "--role", "agent", "--extension", "1004",
                "--password", PASSWORDS["agent2"])
        yield srv
    finally:
        srv.stop()


def base_url(srv: CcswitchServer) -> str:
    return f"http://127.0.0.1:{srv.config['api']['port']}"


def tokens(srv: CcswitchServer) -> dict[str, str]:
    """An API token per role (made through the local socket)."""
    out = {}
    for role, user in USER_OF_ROLE.items():
        out[role] = json.loads(srv.cli("users", "token", user, "--json").stdout)["token"]
    out["agent2"] = json.loads(srv.cli("users", "token", "agent2", "--json").stdout)["token"]
    return out


class Api:
    """aiohttp client; `validate=True` checks 200 / error bodies against the document."""

    def __init__(self, base: str, cookies: bool = True) -> None:
        self.base = base
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True) if cookies else aiohttp.DummyCookieJar())
        self.doc: dict[str, Any] | None = None
        self.registry: Registry | None = None

    async def close(self) -> None:
        await self.session.close()

    async def load_doc(self) -> dict[str, Any]:
        async with self.session.get(self.base + "/api/openapi.json") as r:
            assert r.status == 200
            self.doc = await r.json()
        self.registry = Registry().with_resource("urn:ccswitch", Resource.from_contents(
            dict(self.doc, **{"$schema": "https://json-schema.org/draft/2020-12/schema"})))
        return self.doc

    def validator(self, schema: dict[str, Any]) -> Draft202012Validator:
        assert self.registry is not None
        # refs in the document are "#/components/...": resolve them against it
        return Draft202012Validator(_rebase(schema), registry=self.registry)

    async def req(self, method: str, path: str, token: str | None = None, body: Any = None,
                  headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, json=body, headers=h,
                                        allow_redirects=False) as r:
            ctype = r.headers.get("Content-Type", "")
            data: Any = await r.json() if "json" in ctype else await r.read()
            return r.status, data

    def check(self, method: str, doc_path: str, status: int, data: Any) -> None:
        """`data` matches the documented schema of (method, path, status)."""
        assert self.doc is not None
        op = self.doc["paths"][doc_path][method.lower()]
        resp = op["responses"].get(str(status))
        assert resp is not None, f"{method} {doc_path}: status {status} is not documented"
        content = resp.get("content", {})
        if "application/json" in content:
            schema = content["application/json"]["schema"]
            errors = sorted(self.validator(schema).iter_errors(data), key=str)
            assert not errors, f"{method} {doc_path} {status}: {errors[0].message}"


def _rebase(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: ("urn:ccswitch" + v if k == "$ref" and isinstance(v, str)
                    and v.startswith("#") else _rebase(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rebase(x) for x in schema]
    return schema
