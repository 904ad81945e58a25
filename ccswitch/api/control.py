"""The local control API: JSON over HTTP on a Unix socket (what the CLI talks to).

The socket file is created mode 0600: whoever can open it is the machine's
administrator.  The networked API with tokens and roles builds on the same
handlers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ccswitch.call.channel import Channel

if TYPE_CHECKING:
    from ccswitch.server import Server


def status_snapshot(s: Server, reset_lag: bool = False) -> dict[str, Any]:
    """Server counters for `ccswitch status` and GET /api/status."""
    return {
        "uptime": round(time.time() - s.started, 1),
        "channels": len(s.manager.channels),
        "registrations": len(s.ua.registrar.all(s.ua.now())),
        "transactions": s.ua.layer.transaction_count,
        "rtp_ports_free": s.engine.ports_free,
        "sip": dict(s.ua.layer.stats, **s.ua.stats),
        # the 20 ms media clock's worst lateness (reset starts a new window: benches)
        "media": {"endpoints": s.engine.endpoints,
                  "max_tick_lag_ms": round(
                      s.engine.take_max_tick_lag(reset=reset_lag) * 1000.0, 2)},
        # cyclic GC: the longest pause in the same window, and per generation since start
        "gc": {"max_pause_ms": round(s.gc_watch.take_window(reset=reset_lag) * 1000.0, 2),
               "collections": list(s.gc_watch.collections),
               "pause_max_ms": [round(x * 1000.0, 2) for x in s.gc_watch.pause_max]},
    }


def channel_row(ch: Channel) -> dict[str, Any]:
    return ch.snapshot()


class ControlServer:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.app = web.Application()
        self.app.add_routes([
            web.get("/api/status", self.status),
            web.get("/api/channels", self.channels),
            # channel names contain a slash (SIP/1001-00000001): let {id} span it
            web.get("/api/channels/{id:.+}", self.channel),
            web.post("/api/channels/{id:.+}/hangup", self.hangup),
            web.get("/api/registrations", self.registrations),
            web.get("/api/cdr", self.cdr),
            web.post("/api/reload", self.reload),
            web.get("/api/conferences", self.conferences),
            web.get("/api/conferences/{number}", self.conference),
            web.post("/api/conferences/{number}/{action}/{member:.+}", self.conference_action),
            web.get("/api/parking", self.parking),
            web.get("/api/queues", self.queues),
            web.get("/api/queues/{name}", self.queue),
            web.get("/api/queues/{name}/stats", self.queue_stats),
            web.get("/api/agents", self.agents),
            web.post("/api/agents/{agent}/{action}", self.agent_action),
            web.get("/api/flows", self.flows),
            web.get("/api/trunks", self.trunks),
            web.post("/api/originate", self.originate),
        ])
        self.runner: web.AppRunner | None = None
        self.path: Path | None = None

    async def start(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()  # a stale socket from a killed server
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        old = os.umask(0o177)
        try:
            site = web.UnixSite(self.runner, str(path))
            await site.start()
        finally:
            os.umask(old)
        self.path = path

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.path is not None and self.path.exists():
            self.path.unlink()

    # ---- handlers
    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(status_snapshot(self.server,
                                                 request.query.get("reset") == "1"))

    async def channels(self, request: web.Request) -> web.Response:
        return web.json_response([channel_row(c) for c in self.server.manager.list()])

    def _find(self, request: web.Request) -> Channel:
        ch = self.server.manager.find(request.match_info["id"])
        if ch is None:
            raise web.HTTPNotFound(text='{"error": "no such channel"}',
                                   content_type="application/json")
        return ch

    async def channel(self, request: web.Request) -> web.Response:
        return web.json_response(channel_row(self._find(request)))

    async def hangup(self, request: web.Request) -> web.Response:
        ch = self._find(request)
        cause = "NORMAL_CLEARING"
        if request.can_read_body:
            try:
                body = await request.json()
                cause = str(body.get("cause", cause))
            except ValueError:
                pass
        ch.hangup(cause)
        return web.json_response({"hungup": ch.name, "cause": cause})

    async def registrations(self, request: web.Request) -> web.Response:
        ua = self.server.ua
        now = ua.now()
        rows = []
        for b in ua.registrar.all(now):
            ext = ua.extensions.get(b.aor)
            rows.append({
                "extension": b.aor,
                "name": ext.name if ext else "",
                "contact": str(b.uri),
                "source": f"{b.peer.transport}:{b.peer.host}:{b.peer.port}",
                "expires_in": b.expires_in(now),
                "user_agent": b.user_agent,
            })
        return web.json_response(rows)

    async def conferences(self, request: web.Request) -> web.Response:
        return web.json_response([r.info() for r in self.server.conferences.rooms.values()])

    def _room(self, request: web.Request) -> Any:
        room = self.server.conferences.rooms.get(request.match_info["number"])
        if room is None:
            raise web.HTTPNotFound(text='{"error": "no such conference"}',
                                   content_type="application/json")
        return room

    async def conference(self, request: web.Request) -> web.Response:
        return web.json_response(self._room(request).info())

    async def conference_action(self, request: web.Request) -> web.Response:
        room = self._room(request)
        action = request.match_info["action"]
        key = request.match_info["member"]
        member = next((cid for cid, m in room.members.items()
                       if key in (cid, m.chan.name) or cid.startswith(key)), None)
        if member is None:
            raise web.HTTPNotFound(text='{"error": "no such member"}',
                                   content_type="application/json")
        if action == "mute":
            room.mute(member, True)
        elif action == "unmute":
            room.mute(member, False)
        elif action == "kick":
            room.kick(member)
        else:
            raise web.HTTPBadRequest(text='{"error": "action is mute, unmute or kick"}',
                                     content_type="application/json")
        return web.json_response({"conference": room.number, "member": member,
                                  "action": action})

    async def queues(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.queues.queues_info())

    async def queue(self, request: web.Request) -> web.Response:
        info = self.server.queues.queue_info(request.match_info["name"])
        if info is None:
            raise web.HTTPNotFound(text='{"error": "no such queue"}',
                                   content_type="application/json")
        return web.json_response(info)

    async def queue_stats(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.server.queues.queue_info(name) is None:
            raise web.HTTPNotFound(text='{"error": "no such queue"}',
                                   content_type="application/json")
        q = request.query
        now = time.time()
        lt = time.localtime(now)
        midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
        try:
            since = float(q.get("since", midnight))
            until = float(q.get("until", now + 1))
            bucket = float(q.get("bucket", 900))
            stats = await self.server.queues.stats(name, since, until, bucket)
        except ValueError as e:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(e)}),
                                     content_type="application/json") from None
        return web.json_response(stats)

    async def agents(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.queues.agents_info())

    async def agent_action(self, request: web.Request) -> web.Response:
        from ccswitch.apps.acd.model import AcdError

        agent = request.match_info["agent"]
        action = request.match_info["action"]
        body: dict[str, Any] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = {}
        qs = self.server.queues
        try:
            if action == "login":
                result: Any = qs.login(agent, body.get("queue"))
            elif action == "logout":
                result = qs.logout(agent, body.get("queue"))
            elif action == "pause":
                result = qs.pause(agent, str(body.get("reason") or "paused"))
            elif action == "unpause":
                result = qs.unpause(agent)
            else:
                raise web.HTTPBadRequest(text='{"error": "action is login, logout, pause or '
                                              'unpause"}', content_type="application/json")
        except AcdError as e:
            raise web.HTTPNotFound(text=json.dumps({"error": str(e)}),
                                   content_type="application/json") from None
        return web.json_response({"agent": agent, "action": action, "result": result})

    async def parking(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.parking.info())

    async def reload(self, request: web.Request) -> web.Response:
        ok, message = await self.server.reload()
        return web.json_response({"ok": ok, "message": message}, status=200 if ok else 422)

    async def trunks(self, request: web.Request) -> web.Response:
        return web.json_response(self.server.trunks.status())

    async def originate(self, request: web.Request) -> web.Response:
        """Place a call: {"source": extension or number, "to": number | "flow": name,
        "timeout": s, "caller_id", "caller_name", "trunk", "wait": bool}.  200 with the
        outcome (result: answered, busy, no_answer, failed, cancelled; or placed when not
        waiting); 404 for an unknown flow / trunk / no route; 400 for a bad request."""
        from ccswitch.apps.trunks import OriginateError

        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("source"), str):
            return web.json_response({"error": "expected a JSON object with 'source'"},
                                     status=400)

        def opt(key: str) -> str | None:
            v = body.get(key)
            return str(v) if v is not None else None

        try:
            timeout = float(body.get("timeout", 30))
            result = await self.server.trunks.originate(
                body["source"], to=opt("to"), flow=opt("flow"), timeout=timeout,
                caller_id=opt("caller_id"), caller_name=opt("caller_name"),
                trunk=opt("trunk"), wait=bool(body.get("wait", True)))
        except OriginateError as e:
            return web.json_response({"error": str(e)}, status=e.status)
        except (TypeError, ValueError) as e:
            return web.json_response({"error": str(e)}, status=400)
        return web.json_response(result)

    async def flows(self, request: web.Request) -> web.Response:
        fs = self.server.flows
        return web.json_response({
            "version": fs.version,
            "flows": [{"name": f.name, "path": str(f.path), "nodes": len(f.nodes),
                       "start": f.start} for f in fs.flows.values()],
        })

    async def cdr(self, request: web.Request) -> web.Response:
        n = int(request.query.get("last", "20"))
        await self.server.cdr.flush()
        return web.json_response(await self.server.cdr.last(max(1, min(n, 10000))))
