"""Customer context ("screen pop") for agents offered a queue call.

On QUEUE_CALLER_OFFER, for each agent rung: gather the caller's number and name,
the IVR path (the CDR's `ivr_path`, else the IVR_NODE events seen for the
call), channel and IVR variables, the queue, the wait so far and the caller's
previous calls (CDRs), then publish SCREEN_POP on the bus (the agent page shows
it) and, when `api.webhook_url` is set, POST the same JSON there (a failure is
logged, never retried: the agent page still has it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccswitch.server import Server

log = logging.getLogger("ccswitch.screenpop")

SCREEN_POP = "SCREEN_POP"
_TRAIL_CALLS = 2000  # IVR trails kept in memory (calls), oldest forgotten first


def _json_safe(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if depth > 4:
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in list(value.items())[:100]}
    if isinstance(value, list | tuple):
        return [_json_safe(v, depth + 1) for v in list(value)[:100]]
    return str(value)


class ScreenPops:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.last: dict[str, dict[str, Any]] = {}  # agent -> the latest pop
        self._trails: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._session: Any = None
        self._unsub = server.bus.subscribe(self._on_event, {"QUEUE_CALLER_OFFER", "IVR_NODE"})
        self.webhook_failures = 0
        self.webhook_sent = 0

    async def close(self) -> None:
        self._unsub()
        for t in list(self._tasks):
            t.cancel()
        if self._session is not None:
            await self._session.close()

    def _on_event(self, e: dict[str, Any]) -> None:
        if e["event"] == "IVR_NODE":
            key = str(e.get("linkedid") or e.get("channel"))
            trail = self._trails.get(key)
            if trail is None:
                trail = self._trails[key] = []
                while len(self._trails) > _TRAIL_CALLS:
                    self._trails.popitem(last=False)
            if len(trail) < 200:
                trail.append({"flow": e.get("flow"), "node": e.get("node"),
                              "type": e.get("type"), "time": e.get("time")})
            return
        t = asyncio.ensure_future(self._pop(e))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def build(self, e: dict[str, Any]) -> dict[str, Any]:
        s = self.server
        caller_id = str(e.get("caller", ""))
        ch = s.manager.channels.get(caller_id)
        linkedid = ch.linkedid if ch is not None else caller_id
        number = str(e.get("number") or (ch.caller if ch else ""))
        wait = None
        qs = getattr(s, "queues", None)
        if qs is not None:
            c = qs.acd.get_caller(caller_id)
            if c is not None:
                wait = round(qs.now() - c.joined_at, 1)
        if wait is None and ch is not None:
            wait = round(time.time() - ch.created, 1)
        ivr_path: list[Any] = []
        previous: list[dict[str, Any]] = []
        try:
            await s.cdr.flush()
            row = await s.cdr.get(linkedid)
            if row is not None:
                ivr_path = list(row["extra"].get("ivr_path") or [])
            n = s.cfg.api.previous_calls
            if number and n:
                rows = await s.cdr.search(number=number, limit=n + 1)
                for r in rows:
                    if r["call_uuid"] == linkedid:
                        continue
                    x = r["extra"]
                    previous.append({
                        "call_uuid": r["call_uuid"], "start": r["start"],
                        "caller": r["caller"], "callee": r["callee"],
                        "disposition": r["disposition"], "billsec": r["billsec"],
                        "queue": x.get("queue"), "agent": x.get("agent"),
                        "queue_outcome": x.get("queue_outcome")})
                previous = previous[:n]
        except Exception as ex:  # the database is busy or closing: pop what we have
            log.warning("screen pop: cannot read call records: %s", ex)
        if not ivr_path:
            ivr_path = list(self._trails.get(linkedid, []))
        variables: dict[str, Any] = {}
        if ch is not None:
            for k, v in ch.vars.items():
                if k in ("features_watched", "acd_leg", "monitor"):
                    continue
                variables[str(k)] = _json_safe(v)
        return {
            "queue": e.get("queue"), "channel": caller_id, "call_uuid": linkedid,
            "caller_number": number, "caller_name": ch.caller_name if ch else "",
            "callee": ch.dest if ch else "", "wait": wait, "position": e.get("position"),
            "priority": e.get("priority"), "attempt": e.get("attempt"),
            "callback": bool(e.get("callback")), "ivr_path": _json_safe(ivr_path),
            "variables": variables, "previous_calls": previous, "offered_at": time.time(),
        }

    async def _pop(self, e: dict[str, Any]) -> None:
        pop = await self.build(e)
        for agent in e.get("agents") or []:
            item = dict(pop, agent=str(agent))
            self.last[str(agent)] = item
            self.server.bus.publish(SCREEN_POP, **item)
            if self.server.cfg.api.webhook_url:
                await self._webhook(item)

    async def _webhook(self, item: dict[str, Any]) -> None:
        import aiohttp

        url = self.server.cfg.api.webhook_url
        if not url:
            return
        timeout = self.server.cfg.api.webhook_timeout
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            body = json.dumps(dict(item, event=SCREEN_POP), default=str)
            async with self._session.post(
                    url, data=body, headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
            self.webhook_sent += 1
        except Exception as ex:
            self.webhook_failures += 1
            log.warning("screen pop webhook %s failed: %s", url, ex or type(ex).__name__)
