"""The HTTP control API, event stream, wallboard and agent pages, and what they need.

`Operations` is everything the operations issue adds to a running server: the
user and audit stores, the HTTP API (aiohttp; every route is in
ccswitch/api/openapi.py's OPS), the WebSocket event hub, supervisor monitoring,
screen pops, metrics, structured logs and scheduled backups.  The server calls
`start(control_app)` before its Unix-socket control API starts (the local API
then also gets every route it lacks, as the local administrator) and `stop()`.

Every handler gets the request and the `Principal` making it; the wrapper
around it authenticates (bearer token, session cookie; local socket = admin),
checks the operation's roles (401 / 403), turns errors into JSON, and writes
state-changing requests to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ccswitch.api import auth
from ccswitch.api.auth import Principal
from ccswitch.api.events import Client, EventHub
from ccswitch.api.metrics import Metrics
from ccswitch.api.openapi import OPS, Op, document
from ccswitch.apps.monitor import MonitorError, MonitorService
from ccswitch.apps.screenpop import ScreenPops
from ccswitch.call.channel import Channel
from ccswitch.storage.audit import AuditStore
from ccswitch.storage.cdr_search import CdrQuery, Scope, search_sync, summary_sync
from ccswitch.storage.users import ROLES, User, UserExists, UserStore

if TYPE_CHECKING:
    from ccswitch.server import Server

log = logging.getLogger("ccswitch.api")

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]
LOCAL = Principal("local", "admin", via="local")
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
_SECRET_KEYS = ("password", "token", "secret")
_CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                  ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
                  ".json": "application/json"}


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json_error(status: int, message: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Bearer realm="ccswitch"'} if status == 401 else None
    return web.json_response({"error": message}, status=status, headers=headers)


def _sanitize(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: ("***" if any(s in str(k).lower() for s in _SECRET_KEYS) else _sanitize(v))
                for k, v in body.items()}
    return body


def _midnight(now: float | None = None) -> float:
    lt = time.localtime(now if now is not None else time.time())
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def _num(q: Any, key: str, default: float | None = None) -> float | None:
    v = q.get(key)
    if v is None or v == "":
        return default
    try:
        return float(v)
    except ValueError:
        raise ApiError(400, f"{key} must be a number") from None


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Routing errors (no such path, wrong method) as JSON too."""
    try:
        resp: web.StreamResponse = await handler(request)
        return resp
    except web.HTTPException as e:
        if e.status >= 400 and e.content_type != "application/json":
            return _json_error(e.status, e.reason)
        raise


class Operations:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.users = UserStore()
        self.audit = AuditStore()
        self.monitor = MonitorService(server)
        self.monitor.authorize_extension = self._authorize_extension
        self.pops: ScreenPops | None = None
        self.metrics: Metrics | None = None
        self.hub: EventHub | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.app: web.Application | None = None
        self._fails: dict[tuple[str, str], list[float]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._backup_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ life cycle
    async def start(self, control_app: web.Application | None = None) -> None:
        from ccswitch import logctx

        s = self.server
        cfg = s.cfg
        logctx.install(cfg.logging.format)
        self._wrap_inbound()
        db = Path(cfg.database.path)
        await self.users.open(db)
        await self.audit.open(db)
        if cfg.api.enabled:
            await self._first_admin()
        self.pops = ScreenPops(s)
        self.metrics = Metrics(s)
        self.metrics.start()
        self.hub = EventHub(s.bus, self._visible)
        if control_app is not None:
            self.extend_local(control_app)
        if cfg.api.enabled:
            await self._listen()
        if cfg.backup.interval_hours > 0:
            self._backup_task = asyncio.ensure_future(self._backups())

    async def stop(self) -> None:
        self.monitor.stop_all()
        if self._backup_task is not None:
            self._backup_task.cancel()
        if self.hub is not None:
            self.hub.close()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.pops is not None:
            await self.pops.close()
        if self.metrics is not None:
            self.metrics.stop()
        for t in list(self._tasks):
            t.cancel()
        self.users.close()
        self.audit.close()

    def _wrap_inbound(self) -> None:
        """Every task a new call starts logs with the call's uuid."""
        from ccswitch import logctx

        ua = self.server.ua
        inner = ua.on_inbound_call

        async def bound(chan: Any) -> None:
            logctx.bind_call(chan.linkedid)
            await inner(chan)

        ua.on_inbound_call = bound

    async def _first_admin(self) -> None:
        if await self.users.arun(lambda c: c.execute("SELECT COUNT(*) FROM users").fetchone()[0]):
            return
        password = os.environ.get("CCSWITCH_ADMIN_PASSWORD", "")
        generated = not password
        if generated:
            password = auth.generate_password()
        h = await asyncio.to_thread(auth.hash_password, password)
        await asyncio.to_thread(self.users.add, "admin", "admin", h)
        await self.audit.add(action="user_add", username="system", role="admin",
                             source="startup", target="admin", status=200,
                             detail={"role": "admin", "password": "generated" if generated
                                     else "from CCSWITCH_ADMIN_PASSWORD"})
        if generated:
            # printed once, never logged: the hash is all that is kept
            print("=" * 64 + "\nccswitch: created the web/API user 'admin' with password:\n\n"
                  f"    {password}\n\nIt is shown only this once. Change it with "
                  "`ccswitch users passwd admin`.\n" + "=" * 64, flush=True)
        else:
            log.info("created user 'admin' with the password from CCSWITCH_ADMIN_PASSWORD")

    async def _listen(self) -> None:
        from ccswitch.config import ConfigError, ConfigIssue
        from ccswitch.server import StartupError

        cfg = self.server.cfg
        app = self.build_app()
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.api.listen, cfg.api.port)
        try:
            await site.start()
        except OSError as e:
            await self.runner.cleanup()
            self.runner = None
            reason = "port in use" if e.errno == 98 else (e.strerror or str(e))
            raise StartupError(str(ConfigError([ConfigIssue(
                cfg.file, cfg.line_of(cfg.api, "port"),
                f"api {cfg.api.listen}:{cfg.api.port}: {reason}")]))) from None
        self.port = cfg.api.port
        log.info("HTTP API and wallboard on http://%s:%d/", cfg.api.listen, cfg.api.port)

    async def _backups(self) -> None:
        from ccswitch.backup import make_backup, prune

        cfg = self.server.cfg.backup
        while True:
            await asyncio.sleep(cfg.interval_hours * 3600)
            try:
                path = await asyncio.to_thread(make_backup, self.server.config_path,
                                               cfg.directory)
                gone = await asyncio.to_thread(prune, cfg.directory, cfg.keep)
                log.info("backup written to %s (%d old one(s) removed)", path, len(gone))
            except Exception:
                log.exception("scheduled backup failed")

    # ------------------------------------------------------------ apps and routing
    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[_errors], client_max_size=1 << 20)
        for op in OPS:
            app.router.add_route(op.method, op.aiohttp_path, self._wrap(op))
        self.app = app
        return app

    def extend_local(self, app: web.Application) -> None:
        """Add to the Unix-socket API every route it lacks (as the local admin), and audit
        the state-changing requests of the ones it has."""
        have = {(r.method, r.resource.canonical) for r in app.router.routes()
                if r.resource is not None}
        for op in OPS:
            if op.tag == "pages" or op.name in ("login", "logout", "metrics"):
                continue
            if (op.method, op.aiohttp_path) in have:
                continue
            app.router.add_route(op.method, op.aiohttp_path, self._wrap(op, local=True))

        @web.middleware
        async def audit_local(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.method in ("GET", "HEAD") or request.get("audited"):
                resp: web.StreamResponse = await handler(request)
                return resp
            status = 500
            try:
                resp = await handler(request)
                status = resp.status
                return resp
            except web.HTTPException as e:
                status = e.status
                raise
            finally:
                if not request.get("audited"):
                    await self._audit(request, LOCAL, _route_action(request), status)

        app.middlewares.append(audit_local)

    def _wrap(self, op: Op, local: bool = False) -> Callable[[web.Request],
                                                             Awaitable[web.StreamResponse]]:
        fn: Handler = getattr(self, "h_" + op.name)
        public = op.roles == ("public",)

        async def handler(request: web.Request) -> web.StreamResponse:
            who: Principal | None = LOCAL if local else None
            status = 500
            try:
                if who is None and not public:
                    who = await self._authenticate(request)
                    if who is None:
                        raise ApiError(401, "authentication required")
                    if who.via == "session" and request.method not in ("GET", "HEAD") and \
                            request.headers.get(auth.CSRF_HEADER) != "ccswitch":
                        raise ApiError(403, f"{auth.CSRF_HEADER}: ccswitch is required "
                                            "with a session cookie")
                    if who.via == "session" and op.name == "events" and \
                            not _same_origin(request):
                        # a page of another site opening our stream with the user's cookie
                        raise ApiError(403, "cross-origin event stream refused")
                    if who.role not in op.roles:
                        raise ApiError(403, f"forbidden for role {who.role}")
                if who is not None:
                    who.members_of = self._members_of
                resp = await fn(request, who or Principal("", "public", via="none"))
                status = resp.status
                return resp
            except ApiError as e:
                status = e.status
                return _json_error(e.status, str(e))
            except MonitorError as e:
                status = e.status
                return _json_error(e.status, str(e))
            except web.HTTPException as e:
                status = e.status
                raise
            except (asyncio.CancelledError, ConnectionResetError):
                status = 499
                raise
            except Exception:
                log.exception("%s %s failed", request.method, request.path)
                return _json_error(500, "internal error")
            finally:
                if request.method not in ("GET", "HEAD") and op.name != "login":
                    request["audited"] = True
                    await self._audit(request, who, _action(op, request), status)

        return handler

    async def _authenticate(self, request: web.Request) -> Principal | None:
        h = request.headers.get("Authorization", "")
        token = h[7:].strip() if h[:7].lower() == "bearer " else ""
        if not token and request.path == "/api/events":
            token = request.query.get("token", "")
        user: User | None = None
        via = "token"
        if token:
            th = auth.hash_secret(token)
            user = await asyncio.to_thread(self.users.user_for_token, th)
        else:
            sid = request.cookies.get(auth.SESSION_COOKIE)
            if sid:
                via = "session"
                user = await asyncio.to_thread(self.users.user_for_session,
                                               auth.hash_secret(sid), time.time())
        if user is None:
            return None
        return Principal(user.username, user.role, user.extension, list(user.queues), via)

    async def _audit(self, request: web.Request, who: Principal | None, action: str,
                     status: int) -> None:
        detail: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            if request.body_exists and request.content_type == "application/json":
                body = await request.json()
                if isinstance(body, dict):
                    detail = _sanitize(body)
        if request.query_string:
            detail["query"] = request.query_string[:500]
        target = "/".join(v for k, v in request.match_info.items() if k != "action")
        if not target:  # POST /api/users, /api/monitor, /api/originate: the body names it
            target = str(next((detail[k] for k in ("username", "agent", "channel", "source")
                               if isinstance(detail.get(k), str)), ""))
        try:
            await self.audit.add(action=action, username=who.username if who else "",
                                 role=who.role if who else "", source=_source(request),
                                 method=request.method, path=request.path, target=target,
                                 status=status, detail=detail)
        except Exception:
            log.exception("cannot write the audit log")

    # ------------------------------------------------------------ scope helpers
    def _members_of(self, queue: str) -> set[str]:
        out: set[str] = set()
        q = self.server.cfg.queues.get(queue)
        if q is not None:
            out.update(m.agent for m in q.members)
        qs = getattr(self.server, "queues", None)
        if qs is not None:
            with contextlib.suppress(Exception):
                out.update(a for a, _ in qs.acd.members(queue))
        return out

    def _sup_agents(self, who: Principal) -> set[str]:
        out: set[str] = set()
        for q in who.queues:
            out |= self._members_of(q)
        return out

    def _call_info(self, ch: Channel, groups: dict[str, list[Channel]] | None = None
                   ) -> tuple[set[str], set[str]]:
        """(extensions / numbers, queues) involved in the call of `ch` (`groups`: the live
        channels by call, when the caller has them already)."""
        if groups is not None:
            legs = list(groups.get(ch.linkedid, ()))
        else:
            legs = [c for c in self.server.manager.channels.values()
                    if c.linkedid == ch.linkedid]
        other = ch.bridged_with()
        if other is not None and other not in legs:
            legs.append(other)
        if ch not in legs:
            legs.append(ch)
        parties: set[str] = set()
        queues: set[str] = set()
        for c in legs:
            parties.update((c.endpoint_name, c.caller, c.dest))
            if c.app == "Queue" and c.app_data:
                queues.add(c.app_data)
        return parties, queues

    def _sees_channel(self, who: Principal, ch: Channel,
                      groups: dict[str, list[Channel]] | None = None) -> bool:
        if who.all_queues:
            return True
        parties, queues = self._call_info(ch, groups)
        if who.role == "supervisor":
            return bool(queues & set(who.queues)) or bool(parties & self._sup_agents(who))
        return bool(who.extension) and who.extension in parties

    def _cdr_scope(self, who: Principal, recordings: bool = False) -> Scope:
        if who.all_queues:
            return Scope()
        if who.role == "supervisor":
            if recordings:
                return Scope(queues=list(who.queues))
            return Scope(queues=list(who.queues), numbers=sorted(self._sup_agents(who)))
        return Scope(numbers=[who.extension] if who.extension else [])

    def _visible(self, who: Principal, e: dict[str, Any], known: set[str]) -> bool:
        """May `who` see event `e` on the stream (`known`: calls already shown)."""
        if who.all_queues:
            return True
        who.members_of = self._members_of
        t = e["event"]
        agent = e.get("agent")
        queue = e.get("queue")
        link = e.get("linkedid")
        if link is None and isinstance(e.get("caller"), str):
            ch = self.server.manager.channels.get(e["caller"])
            link = ch.linkedid if ch is not None else None
        if link is not None and link in known:
            return True
        ok = False
        if isinstance(queue, str) and queue:
            ok = who.sees_queue(queue) if who.role == "supervisor" else (
                agent == who.extension or who.extension in (e.get("agents") or []))
        elif isinstance(agent, str) and agent:
            ok = who.controls_agent(agent)
        elif t.startswith(("CHANNEL_", "DTMF", "IVR_", "TRANSFER", "CALL_", "CONFERENCE_")):
            ch = self.server.manager.channels.get(str(e.get("channel")))
            if ch is not None:
                ok = self._sees_channel(who, ch)
            else:
                name = str(e.get("name") or "")
                parties = {str(e.get("caller") or ""), str(e.get("callee") or ""),
                           name.split("/", 1)[-1].rsplit("-", 1)[0]}
                mine = self._sup_agents(who) if who.role == "supervisor" else {who.extension}
                ok = bool(parties & mine - {""})
        if ok and link is not None:
            known.add(str(link))
            if len(known) > 5000:
                known.clear()
        return ok

    def _find(self, request: web.Request, who: Principal) -> Channel:
        ch = self.server.manager.find(request.match_info["id"])
        if ch is None or not self._sees_channel(who, ch):
            raise ApiError(404, "no such channel")
        return ch

    def _queue_svc(self) -> Any:
        qs = getattr(self.server, "queues", None)
        if qs is None:
            raise ApiError(404, "queues are not available")
        return qs

    async def _authorize_extension(self, extension: str, agent: str) -> str | None:
        users = await asyncio.to_thread(self.users.by_extension, extension)
        for u in users:
            p = Principal(u.username, u.role, u.extension, list(u.queues),
                          members_of=self._members_of)
            if p.is_supervisor and p.supervises_agent(agent):
                return str(u.username)
        return None

    # ============================================================ handlers: sessions
    async def h_login(self, request: web.Request, _: Principal) -> web.StreamResponse:
        body = await _body(request)
        username = str(body.get("username") or "")
        password = str(body.get("password") or "")
        src = _source(request)
        key = (src, username.lower())
        now = time.time()
        fails = [t for t in self._fails.get(key, []) if now - t < 300]
        self._fails[key] = fails
        if len(fails) >= 5:
            await self.audit.add(action="login", username=username, source=src,
                                 method="POST", path=request.path, status=429,
                                 detail={"result": "throttled"})
            raise ApiError(429, "too many failed attempts: wait a few minutes")
        user = await asyncio.to_thread(self.users.get, username) if username else None
        if user is None:
            await asyncio.to_thread(auth.verify_dummy, password)
            ok = False
        else:
            ok = await asyncio.to_thread(auth.verify_password, user.password_hash, password)
        if not ok or user is None:
            fails.append(now)
            await self.audit.add(action="login", username=username, source=src, method="POST",
                                 path=request.path, status=401, detail={"result": "failure"})
            raise ApiError(401, "wrong user name or password")
        self._fails.pop(key, None)
        sid = auth.new_token()
        hours = self.server.cfg.api.session_hours
        await asyncio.to_thread(self.users.add_session, user.id, auth.hash_secret(sid),
                                now + hours * 3600)
        await self.audit.add(action="login", username=user.username, role=user.role,
                             source=src, method="POST", path=request.path, status=200,
                             detail={"result": "success"})
        resp = web.json_response(Principal(user.username, user.role, user.extension,
                                           list(user.queues), "session").info())
        resp.set_cookie(auth.SESSION_COOKIE, sid, max_age=int(hours * 3600), httponly=True,
                        samesite="Strict", path="/", secure=request.secure)
        return resp

    async def h_logout(self, request: web.Request, who: Principal) -> web.StreamResponse:
        sid = request.cookies.get(auth.SESSION_COOKIE)
        if sid:
            await asyncio.to_thread(self.users.delete_session, auth.hash_secret(sid))
        resp = web.json_response({"ok": True})
        resp.del_cookie(auth.SESSION_COOKIE, path="/")
        return resp

    async def h_me(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(who.info())

    async def h_me_password(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await _body(request)
        old, new = str(body.get("old_password") or ""), str(body.get("new_password") or "")
        if len(new) < 8:
            raise ApiError(400, "the new password needs at least 8 characters")
        user = await asyncio.to_thread(self.users.get, who.username)
        if user is None:
            raise ApiError(400, "this account cannot change a password here")
        if not await asyncio.to_thread(auth.verify_password, user.password_hash, old):
            raise ApiError(400, "the old password is wrong")
        h = await asyncio.to_thread(auth.hash_password, new)
        await asyncio.to_thread(lambda: self.users.update(who.username, password_hash=h))
        return web.json_response({"ok": True})

    # ============================================================ handlers: system
    async def h_status(self, request: web.Request, who: Principal) -> web.StreamResponse:
        from ccswitch.api.control import status_snapshot

        return web.json_response(status_snapshot(self.server))

    async def h_reload(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ok, message = await self.server.reload()
        return web.json_response({"ok": ok, "message": message}, status=200 if ok else 422)

    async def h_flows(self, request: web.Request, who: Principal) -> web.StreamResponse:
        fs = self.server.flows
        return web.json_response({
            "version": fs.version,
            "flows": [{"name": f.name, "path": str(f.path), "nodes": len(f.nodes),
                       "start": f.start} for f in fs.flows.values()],
        })

    async def h_backup(self, request: web.Request, who: Principal) -> web.StreamResponse:
        from ccswitch.backup import make_backup, prune

        cfg = self.server.cfg.backup
        path = await asyncio.to_thread(make_backup, self.server.config_path, cfg.directory)
        await asyncio.to_thread(prune, cfg.directory, cfg.keep)
        return web.json_response({"path": str(path), "size": path.stat().st_size})

    async def h_shutdown(self, request: web.Request, who: Principal) -> web.StreamResponse:
        log.warning("shutdown requested by %s", who.username)
        asyncio.get_running_loop().call_later(0.2, self.server.request_stop)
        return web.json_response({"ok": True})

    async def h_openapi(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(document())

    async def h_metrics(self, request: web.Request, who: Principal) -> web.StreamResponse:
        assert self.metrics is not None
        return web.Response(text=self.metrics.render(),
                            content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Format": "0.0.4"})

    async def h_today(self, request: web.Request, who: Principal) -> web.StreamResponse:
        since = _midnight()
        await self.server.cdr.flush()
        scope = self._cdr_scope(who)
        summary = await self.users.arun(lambda c: summary_sync(c, since, scope))
        qsum = {"offered": 0, "answered": 0, "abandoned": 0}
        qs = getattr(self.server, "queues", None)
        if qs is not None:
            for q in qs.queues_info():
                if who.sees_queue(q["name"]):
                    for k in qsum:
                        qsum[k] += int(q.get(k) or 0)
        return web.json_response(dict(summary, since=since, queues=qsum))

    # ============================================================ handlers: channels
    async def h_channels(self, request: web.Request, who: Principal) -> web.StreamResponse:
        chans = self.server.manager.list()
        groups: dict[str, list[Channel]] = {}
        for c in chans:
            groups.setdefault(c.linkedid, []).append(c)
        return web.json_response([c.snapshot() for c in chans
                                  if self._sees_channel(who, c, groups)])

    async def h_channel(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(self._find(request, who).snapshot())

    async def h_hangup(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ch = self._find(request, who)
        body = await _body(request)
        cause = str(body.get("cause") or "NORMAL_CLEARING")
        ch.hangup(cause)
        return web.json_response({"channel": ch.name, "action": "hangup", "ok": True,
                                  "hungup": ch.name, "cause": cause})

    async def h_transfer(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ch = self._find(request, who)
        body = await _body(request)
        to = str(body.get("to") or "")
        if not re.fullmatch(r"[0-9*#+]{1,32}", to):
            raise ApiError(400, "'to' must be a number")
        transferor = ch.bridged_with()
        if transferor is None:
            raise ApiError(409, "the channel is not in a two-party call")
        # the transferee is this channel: its party goes to `to`, the other side leaves
        t = asyncio.ensure_future(self.server.transfers.blind(transferor, to, None))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return web.json_response({"channel": ch.name, "action": "transfer", "ok": True,
                                  "to": to})

    async def h_hold(self, request: web.Request, who: Principal) -> web.StreamResponse:
        from ccswitch.media.engine import PcmSource

        ch = self._find(request, who)
        other = ch.bridged_with()
        if other is None or ch.media is None or other.media is None:
            raise ApiError(409, "the channel is not in a two-party call")
        if ch.vars.get("api_hold"):
            raise ApiError(409, "already on hold")
        ch.vars["api_hold"] = True
        # the held party hears music; the other side hears silence, not the held party
        ch.media.set_source(self.server.moh.get(ch.vars.get("moh_class")).listener())
        other.media.set_source(PcmSource(bytes(320), loop=True))
        self.server.bus.publish("CHANNEL_HOLD", channel=ch.id, name=ch.name,
                                linkedid=ch.linkedid, other=other.id, by=who.username)
        return web.json_response({"channel": ch.name, "action": "hold", "ok": True})

    async def h_unhold(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ch = self._find(request, who)
        if not ch.vars.pop("api_hold", None):
            raise ApiError(409, "not on hold")
        other = ch.bridged_with()
        for c in (ch, other):
            if c is not None and c.media is not None:
                c.media.set_source(None)  # back to the bridge's relay
        self.server.bus.publish("CHANNEL_UNHOLD", channel=ch.id, name=ch.name,
                                linkedid=ch.linkedid, by=who.username)
        return web.json_response({"channel": ch.name, "action": "unhold", "ok": True})

    async def h_record_start(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ch = self._find(request, who)
        lead = self.server.manager.channels.get(ch.linkedid) or ch
        if lead.media is None or not lead.is_up:
            raise ApiError(409, "the call is not answered")
        if lead.recorder is not None:
            raise ApiError(409, "already recording")
        s = self.server
        day = time.strftime("%Y/%m/%d", time.localtime(lead.created))
        base = Path(s.cfg.recordings.directory) / day
        path = base / f"{lead.linkedid}.wav"
        n = 1
        while path.exists():
            n += 1
            path = base / f"{lead.linkedid}-{n}.wav"
        try:
            rec = s.engine.new_recorder(path)
        except OSError as e:
            raise ApiError(409, f"cannot record: {e}") from None
        lead.recorder = rec
        lead.recording_path = str(path)
        lead.media.record_to(rec, rx_side=0, tx_side=1)
        s.cdr.set_recording(lead.linkedid, path)

        def close_on_hangup(c: Channel, what: str, data: Any) -> None:
            if what == "hangup" and c.recorder is rec:
                s.engine.close_recorder(rec)

        lead.listeners.append(close_on_hangup)
        s.bus.publish("RECORDING_START", channel=lead.id, linkedid=lead.linkedid,
                      path=str(path), by=who.username)
        return web.json_response({"channel": lead.name, "action": "recording_start",
                                  "ok": True, "path": str(path)})

    async def h_record_stop(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ch = self._find(request, who)
        lead = self.server.manager.channels.get(ch.linkedid) or ch
        rec = lead.recorder
        if rec is None:
            raise ApiError(409, "not recording")
        if lead.media is not None:
            lead.media.record_to(None)
        lead.recorder = None
        self.server.engine.close_recorder(rec)
        self.server.bus.publish("RECORDING_STOP", channel=lead.id, linkedid=lead.linkedid,
                                path=lead.recording_path, by=who.username)
        return web.json_response({"channel": lead.name, "action": "recording_stop",
                                  "ok": True, "path": lead.recording_path})

    async def h_originate(self, request: web.Request, who: Principal) -> web.StreamResponse:
        from ccswitch.apps.trunks import OriginateError

        body = await _body(request)
        source = body.get("source")
        if not isinstance(source, str) or not source:
            raise ApiError(400, "expected a JSON object with 'source'")
        if not who.is_admin and source != who.extension:
            raise ApiError(403, "you may only originate from your own extension")

        def opt(key: str) -> str | None:
            v = body.get(key)
            return str(v) if v is not None else None

        try:
            result = await self.server.trunks.originate(
                source, to=opt("to"), flow=opt("flow"), timeout=float(body.get("timeout", 30)),
                caller_id=opt("caller_id"), caller_name=opt("caller_name"),
                trunk=opt("trunk"), wait=bool(body.get("wait", True)))
        except OriginateError as e:
            raise ApiError(e.status, str(e)) from None
        except (TypeError, ValueError) as e:
            raise ApiError(400, str(e)) from None
        return web.json_response(result)

    # ============================================================ handlers: queues, agents
    async def h_queues(self, request: web.Request, who: Principal) -> web.StreamResponse:
        qs = getattr(self.server, "queues", None)
        rows = qs.queues_info() if qs is not None else []
        return web.json_response([q for q in rows if who.sees_queue(q["name"])])

    async def h_queue(self, request: web.Request, who: Principal) -> web.StreamResponse:
        name = request.match_info["name"]
        info = self._queue_svc().queue_info(name)
        if info is None:
            raise ApiError(404, "no such queue")
        if not who.sees_queue(name):
            raise ApiError(403, "not one of your queues")
        return web.json_response(info)

    async def h_queue_stats(self, request: web.Request, who: Principal) -> web.StreamResponse:
        name = request.match_info["name"]
        qs = self._queue_svc()
        if qs.queue_info(name) is None:
            raise ApiError(404, "no such queue")
        if not who.sees_queue(name):
            raise ApiError(403, "not one of your queues")
        q = request.query
        now = time.time()
        since = _num(q, "since", _midnight(now))
        until = _num(q, "until", now + 1)
        bucket = _num(q, "bucket", 900.0)
        assert since is not None and until is not None and bucket is not None
        if bucket <= 0 or until <= since:
            raise ApiError(400, "need since < until and bucket > 0")
        try:
            stats = await qs.stats(name, since, until, bucket)
        except ValueError as e:
            raise ApiError(400, str(e)) from None
        return web.json_response(stats)

    def _agents_visible(self, who: Principal) -> list[dict[str, Any]]:
        qs = getattr(self.server, "queues", None)
        rows = qs.agents_info() if qs is not None else []
        return [a for a in rows if who.supervises_agent(a["agent"]) or
                (who.role == "agent" and a["agent"] == who.extension)]

    async def h_agents(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(self._agents_visible(who))

    async def h_agent(self, request: web.Request, who: Principal) -> web.StreamResponse:
        agent = request.match_info["agent"]
        if not who.controls_agent(agent):
            raise ApiError(403, "not one of your agents")
        row = next((a for a in self._agents_visible(who) if a["agent"] == agent), None)
        if row is None:
            raise ApiError(404, "no such agent")
        return web.json_response(row)

    async def h_agent_action(self, request: web.Request, who: Principal) -> web.StreamResponse:
        from ccswitch.apps.acd.model import AcdError

        agent = request.match_info["agent"]
        action = request.match_info["action"]
        if action not in ("login", "logout", "pause", "unpause"):
            raise ApiError(400, "action is login, logout, pause or unpause")
        if not who.controls_agent(agent):
            raise ApiError(403, "not one of your agents")
        body = await _body(request)
        queue = body.get("queue")
        if queue is not None and not who.sees_queue(str(queue)) and who.role != "agent":
            raise ApiError(403, "not one of your queues")
        qs = self._queue_svc()
        try:
            if action == "login":
                result: Any = qs.login(agent, str(queue) if queue else None)
            elif action == "logout":
                result = qs.logout(agent, str(queue) if queue else None)
            elif action == "pause":
                result = qs.pause(agent, str(body.get("reason") or "paused"))
            else:
                result = qs.unpause(agent)
        except AcdError as e:
            raise ApiError(404, str(e)) from None
        return web.json_response({"agent": agent, "action": action, "result": result})

    async def h_screenpop(self, request: web.Request, who: Principal) -> web.StreamResponse:
        agent = request.match_info["agent"]
        if not who.controls_agent(agent):
            raise ApiError(403, "not one of your agents")
        pop = self.pops.last.get(agent) if self.pops is not None else None
        if pop is None:
            raise ApiError(404, "no call offered to this agent yet")
        return web.json_response(pop)

    # ============================================================ handlers: conferences...
    async def h_conferences(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response([r.info() for r in self.server.conferences.rooms.values()])

    def _room(self, request: web.Request) -> Any:
        room = self.server.conferences.rooms.get(request.match_info["number"])
        if room is None:
            raise ApiError(404, "no such conference")
        return room

    async def h_conference(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(self._room(request).info())

    async def h_conference_action(self, request: web.Request, who: Principal
                                  ) -> web.StreamResponse:
        room = self._room(request)
        action = request.match_info["action"]
        key = request.match_info["member"]
        if action not in ("mute", "unmute", "kick"):
            raise ApiError(400, "action is mute, unmute or kick")
        member = next((cid for cid, m in room.members.items()
                       if key in (cid, m.chan.name) or cid.startswith(key)), None)
        if member is None:
            raise ApiError(404, "no such member")
        if action == "kick":
            room.kick(member)
        else:
            room.mute(member, action == "mute")
        return web.json_response({"conference": room.number, "member": member,
                                  "action": action})

    async def h_parking(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(self.server.parking.info())

    async def h_registrations(self, request: web.Request, who: Principal) -> web.StreamResponse:
        ua = self.server.ua
        now = ua.now()
        rows = []
        for b in ua.registrar.all(now):
            ext = ua.extensions.get(b.aor)
            rows.append({"extension": b.aor, "name": ext.name if ext else "",
                         "contact": str(b.uri),
                         "source": f"{b.peer.transport}:{b.peer.host}:{b.peer.port}",
                         "expires_in": b.expires_in(now), "user_agent": b.user_agent})
        return web.json_response(rows)

    async def h_trunks(self, request: web.Request, who: Principal) -> web.StreamResponse:
        trunks = getattr(self.server, "trunks", None)
        return web.json_response(trunks.status() if trunks is not None else [])

    # ============================================================ handlers: records
    def _cdr_query(self, request: web.Request, recordings: bool) -> CdrQuery:
        q = request.query
        limit = q.get("limit") or q.get("last") or "100"
        try:
            n = int(limit)
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        return CdrQuery(since=_num(q, "since"), until=_num(q, "until"),
                        number=q.get("number") or None, caller=q.get("caller") or None,
                        callee=q.get("callee") or None, agent=q.get("agent") or None,
                        queue=q.get("queue") or None, disposition=q.get("disposition") or None,
                        with_recording=recordings, limit=n)

    async def _search(self, query: CdrQuery, scope: Scope) -> list[dict[str, Any]]:
        await self.server.cdr.flush()
        try:
            return await self.users.arun(lambda c: search_sync(c, query, scope))
        except ValueError as e:
            raise ApiError(400, str(e)) from None

    async def h_cdr(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(await self._search(self._cdr_query(request, False),
                                                    self._cdr_scope(who)))

    async def h_cdr_one(self, request: web.Request, who: Principal) -> web.StreamResponse:
        rows = await self._search(CdrQuery(call_uuid=request.match_info["call"], limit=1),
                                  self._cdr_scope(who))
        if not rows:
            raise ApiError(404, "no such call")
        return web.json_response(rows[0])

    async def h_recordings(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response(await self._search(self._cdr_query(request, True),
                                                    self._cdr_scope(who, recordings=True)))

    async def h_recording(self, request: web.Request, who: Principal) -> web.StreamResponse:
        rows = await self._search(CdrQuery(call_uuid=request.match_info["call"], limit=1,
                                           with_recording=True),
                                  self._cdr_scope(who, recordings=True))
        if not rows:
            raise ApiError(404, "no such recording")
        path = Path(rows[0]["recording"])
        if not path.is_absolute():
            path = Path(self.server.config_path).parent / path
        root = Path(self.server.cfg.recordings.directory).resolve()
        try:
            real = path.resolve()
            real.relative_to(root)
        except (OSError, ValueError):
            raise ApiError(404, "no such recording") from None
        if not real.is_file():
            raise ApiError(404, "the recording file is missing")
        return web.FileResponse(real, headers={
            "Content-Type": "audio/wav",
            "Content-Disposition": f'attachment; filename="{real.name}"'})

    # ============================================================ handlers: events
    async def h_events(self, request: web.Request, who: Principal) -> web.StreamResponse:
        assert self.hub is not None
        q = request.query
        client = Client(who, q.get("types"), q.get("queue"), q.get("agent"))
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"event": "HELLO", "time": time.time(),
                                      "user": who.username, "role": who.role}))
        self.hub.add(client)

        async def reader() -> None:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
            client.close()

        rt = asyncio.ensure_future(reader())
        try:
            while True:
                data = await client.queue_.get()
                if data is None:
                    break
                await ws.send_str(data)
        except (ConnectionResetError, RuntimeError):
            pass
        finally:
            self.hub.remove(client)
            rt.cancel()
            if client.overflowed:
                await ws.close(code=1013, message=b"too slow: events dropped")
            else:
                await ws.close()
        return ws

    # ============================================================ handlers: monitoring
    def _session(self, request: web.Request, who: Principal) -> Any:
        s = self.monitor.sessions.get(request.match_info["id"])
        if s is None or not who.supervises_agent(s.agent):
            raise ApiError(404, "no such monitoring session")
        return s

    async def h_monitors(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response([m for m in self.monitor.list()
                                  if who.supervises_agent(m["agent"])])

    async def h_monitor_start(self, request: web.Request, who: Principal
                              ) -> web.StreamResponse:
        body = await _body(request)
        mode = str(body.get("mode") or "listen")
        agent = body.get("agent")
        channel = body.get("channel")
        agent_id, _, _ = self.monitor.find_call(str(agent) if agent else None,
                                                str(channel) if channel else None)
        if not who.supervises_agent(agent_id):
            raise ApiError(403, "not one of your agents")
        ext = str(body.get("extension") or who.extension or "")
        if not ext:
            raise ApiError(400, "give the 'extension' to ring (your user has none)")
        timeout = float(body.get("timeout") or 30.0)
        session = await self.monitor.call_supervisor(ext, str(agent) if agent else None,
                                                     str(channel) if channel else None,
                                                     mode, who.username, timeout)
        return web.json_response(session.info())

    async def h_monitor_mode(self, request: web.Request, who: Principal) -> web.StreamResponse:
        s = self._session(request, who)
        body = await _body(request)
        s.set_mode(str(body.get("mode") or ""))
        return web.json_response(s.info())

    async def h_monitor_stop(self, request: web.Request, who: Principal) -> web.StreamResponse:
        s = self._session(request, who)
        s.stop("api")
        return web.json_response(dict(s.info(), stopped=True))

    # ============================================================ handlers: users, audit
    def _user(self, request: web.Request) -> User:
        u = self.users.get(request.match_info["username"])
        if u is None:
            raise ApiError(404, "no such user")
        return u

    async def h_users(self, request: web.Request, who: Principal) -> web.StreamResponse:
        users = await asyncio.to_thread(self.users.all)
        return web.json_response([u.public() for u in users])

    async def h_user(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return web.json_response((await asyncio.to_thread(self._user, request)).public())

    @staticmethod
    def _check_fields(body: dict[str, Any]) -> tuple[str | None, list[str] | None]:
        ext = body.get("extension")
        if ext is not None and not re.fullmatch(r"[0-9*#+]{0,32}", str(ext)):
            raise ApiError(400, "extension must be a number")
        queues = body.get("queues")
        if queues is not None and (not isinstance(queues, list)
                                   or not all(isinstance(q, str) for q in queues)):
            raise ApiError(400, "queues must be a list of names")
        return (str(ext) if ext is not None else None), queues

    async def h_user_add(self, request: web.Request, who: Principal) -> web.StreamResponse:
        body = await _body(request)
        username = str(body.get("username") or "")
        role = str(body.get("role") or "")
        if not _USERNAME.fullmatch(username):
            raise ApiError(400, "username: 1-64 of letters, digits, _ . @ -")
        if role not in ROLES:
            raise ApiError(400, f"role must be one of {', '.join(ROLES)}")
        ext, queues = self._check_fields(body)
        password = body.get("password")
        generated = password is None
        password = auth.generate_password() if password is None else str(password)
        if len(password) < 8:
            raise ApiError(400, "the password needs at least 8 characters")
        h = await asyncio.to_thread(auth.hash_password, password)
        try:
            u = await asyncio.to_thread(self.users.add, username, role, h, ext or "",
                                        queues or [])
        except UserExists as e:
            raise ApiError(409, str(e)) from None
        out = u.public()
        out["password"] = password if generated else "(as given)"
        return web.json_response(out)

    async def h_user_update(self, request: web.Request, who: Principal) -> web.StreamResponse:
        u = await asyncio.to_thread(self._user, request)
        body = await _body(request)
        role = body.get("role")
        if role is not None and role not in ROLES:
            raise ApiError(400, f"role must be one of {', '.join(ROLES)}")
        ext, queues = self._check_fields(body)
        h = None
        if body.get("password") is not None:
            pw = str(body["password"])
            if len(pw) < 8:
                raise ApiError(400, "the password needs at least 8 characters")
            h = await asyncio.to_thread(auth.hash_password, pw)
        if u.role == "admin" and role not in (None, "admin") and await self._last_admin(u):
            raise ApiError(409, "that is the last admin")
        nu = await asyncio.to_thread(lambda: self.users.update(
            u.username, password_hash=h, role=str(role) if role else None, extension=ext,
            queues=queues))
        assert nu is not None
        return web.json_response(nu.public())

    async def _last_admin(self, u: User) -> bool:
        users = await asyncio.to_thread(self.users.all)
        return [x.username for x in users if x.role == "admin"] == [u.username]

    async def h_user_delete(self, request: web.Request, who: Principal) -> web.StreamResponse:
        u = await asyncio.to_thread(self._user, request)
        if u.role == "admin" and await self._last_admin(u):
            raise ApiError(409, "that is the last admin")
        await asyncio.to_thread(self.users.delete, u.username)
        return web.json_response({"ok": True})

    async def h_tokens(self, request: web.Request, who: Principal) -> web.StreamResponse:
        u = await asyncio.to_thread(self._user, request)
        return web.json_response(await asyncio.to_thread(self.users.tokens, u.id))

    async def h_token_add(self, request: web.Request, who: Principal) -> web.StreamResponse:
        u = await asyncio.to_thread(self._user, request)
        body = await _body(request)
        token = auth.new_token()
        name = str(body.get("name") or "")[:64]
        tid = await asyncio.to_thread(self.users.add_token, u.id, name,
                                      auth.hash_secret(token))
        return web.json_response({"id": tid, "name": name, "token": token,
                                  "username": u.username})

    async def h_token_delete(self, request: web.Request, who: Principal) -> web.StreamResponse:
        u = await asyncio.to_thread(self._user, request)
        try:
            tid = int(request.match_info["token_id"])
        except ValueError:
            raise ApiError(404, "no such token") from None
        if not await asyncio.to_thread(self.users.delete_token, u.id, tid):
            raise ApiError(404, "no such token")
        return web.json_response({"ok": True})

    async def h_audit(self, request: web.Request, who: Principal) -> web.StreamResponse:
        q = request.query
        try:
            limit = int(q.get("limit") or 100)
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        rows = await self.audit.search(since=_num(q, "since"), until=_num(q, "until"),
                                       username=q.get("user") or None,
                                       action=q.get("action") or None, limit=limit)
        return web.json_response(rows)

    # ============================================================ pages
    async def h_page_root(self, request: web.Request, who: Principal) -> web.StreamResponse:
        raise web.HTTPFound("/wallboard")

    def _file(self, name: str) -> web.StreamResponse:
        path = STATIC / name
        if not path.is_file():
            raise ApiError(404, "no such file")
        ctype = _CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        return web.Response(body=path.read_bytes(), content_type=ctype,
                            headers={"Cache-Control": "no-cache",
                                     "X-Content-Type-Options": "nosniff",
                                     "Content-Security-Policy":
                                         "default-src 'self'; connect-src 'self' ws: wss:"})

    async def h_page_wallboard(self, request: web.Request, who: Principal
                               ) -> web.StreamResponse:
        return self._file("wallboard.html")

    async def h_page_agent(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return self._file("agent.html")

    async def h_static(self, request: web.Request, who: Principal) -> web.StreamResponse:
        return self._file(request.match_info["file"])


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin:
        return True  # not a browser page (browsers always send Origin on WebSockets)
    return urllib.parse.urlsplit(origin).netloc == request.host


def _source(request: web.Request) -> str:
    remote = request.remote
    return remote if remote else "unix"


def _action(op: Op, request: web.Request) -> str:
    if op.name in ("agent_action", "conference_action"):
        return op.name.split("_")[0] + "_" + request.match_info.get("action", "")
    return op.name


def _route_action(request: web.Request) -> str:
    """An action name for the control socket's own routes."""
    parts = [p for p in request.path.split("/") if p and p != "api"]
    if parts[:1] == ["channels"] and parts:
        return "channel_" + parts[-1]
    if parts[:1] == ["agents"] and len(parts) >= 3:
        return "agent_" + parts[-1]
    if parts[:1] == ["conferences"] and len(parts) >= 3:
        return "conference_" + parts[2]
    return "_".join(parts[:1]) or "request"
