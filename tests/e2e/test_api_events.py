"""The event stream, call control, records and screen pops during real calls placed by baresip.

One server, phones 1001 (customer), 1002 (agent of sales) and 1004 (agent of support):
a direct call 1001 -> 1002 (event stream content and scope, channels, hold, recording,
CDR / recording search and download), then a queue call 1001 -> sales answered by 1002
(screen pop on the stream, on the API and to a webhook, with the previous call)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.apiclient import Api, api_server, base_url, tokens
from tests.peers import audio
from tests.peers.baresip import Baresip
from tests.peers.netutil import free_tcp_port


class Stream:
    """A WebSocket event stream collecting events in the background."""

    def __init__(self, api: Api, token: str, query: str = "") -> None:
        self.api, self.token, self.query = api, token, query
        self.events: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._new = asyncio.Event()

    async def start(self) -> Stream:
        ws = await self.api.session.ws_connect(
            f"{self.api.base}/api/events{self.query}",
            headers={"Authorization": f"Bearer {self.token}"})
        first = json.loads((await ws.receive(timeout=5)).data)
        assert first["event"] == "HELLO"

        async def run() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.events.append(json.loads(msg.data))
                    self._new.set()

        self._task = asyncio.ensure_future(run())
        return self

    async def wait(self, pred: Any, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.events:
                if pred(e):
                    return e
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such event in {[e['event'] for e in self.events]}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), left)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def test_events_calls_records_and_screen_pop(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # a webhook receiver for the screen pops
    hooks: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        hooks.append(await request.json())
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/pop", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = free_tcp_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    tone = audio.write_tone_wav(tmp_path / "c.wav", 600.0, 60)
    with api_server(tmp_path / "server", monkeypatch,
                    webhook_url=f"http://127.0.0.1:{hook_port}/pop") as srv:
        api = Api(base_url(srv), cookies=False)
        toks = tokens(srv)
        await api.load_doc()
        admin = await Stream(api, toks["admin"]).start()
        mine = await Stream(api, toks["agent"]).start()  # agent 1002
        other = await Stream(api, toks["agent2"]).start()  # agent 1004: not its call
        hangups = await Stream(api, toks["admin"], "?types=CHANNEL_HANGUP").start()
        queue_only = await Stream(api, toks["admin"], "?queue=sales").start()
        try:
            async with Baresip(user="1001", password="secret1001", domain=srv.domain,
                               register=True, tmp_dir=tmp_path, name="c1001",
                               source=tone) as cust, \
                    Baresip(user="1002", password="secret1002", domain=srv.domain,
                            register=True, tmp_dir=tmp_path, name="a1002",
                            answermode="auto") as agent, \
                    Baresip(user="1004", password="secret1004", domain=srv.domain,
                            register=True, tmp_dir=tmp_path, name="a1004") as a4:
                assert await cust.register() and await agent.register() and await a4.register()
                # ---- a direct call: the stream shows it as it happens
                await cust.call("1002", timeout=10)
                await agent.wait_established(5)
                create = await admin.wait(lambda e: e["event"] == "CHANNEL_CREATE"
                                          and e["caller"] == "1001")
                call = create["linkedid"]
                assert create["callee"] == "1002" and create["direction"] == "inbound"
                for t in ("CHANNEL_RINGING", "CHANNEL_ANSWER", "CHANNEL_BRIDGE"):
                    ev = await admin.wait(lambda e, t=t: e["event"] == t
                                          and e.get("linkedid") == call)
                    assert ev["time"] >= create["time"]
                await mine.wait(lambda e: e["event"] == "CHANNEL_ANSWER"
                                and e.get("linkedid") == call)
                # REST views during the call, by role
                st, chans = await api.req("GET", "/api/channels", toks["admin"])
                api.check("get", "/api/channels", st, chans)
                legs = [c for c in chans if c["linkedid"] == call]
                assert len(legs) == 2 and all(c["state"] == "Up" for c in legs)
                st, own = await api.req("GET", "/api/channels", toks["agent"])
                assert {c["id"] for c in own} == {c["id"] for c in legs}
                st, none = await api.req("GET", "/api/channels", toks["agent2"])
                assert st == 200 and none == []
                inbound = next(c for c in legs if c["direction"] == "inbound")
                st, one = await api.req("GET", f"/api/channels/{inbound['id'][:10]}",
                                        toks["agent"])
                assert st == 200 and one["id"] == inbound["id"]
                api.check("get", "/api/channels/{id}", st, one)
                st, _ = await api.req("GET", f"/api/channels/{inbound['id']}", toks["agent2"])
                assert st == 404
                # hold: the customer hears music; unhold; stop and restart the recording
                st, r = await api.req("POST", f"/api/channels/{inbound['id']}/hold",
                                      toks["agent"])
                assert st == 200 and r["action"] == "hold"
                api.check("post", "/api/channels/{id}/hold", st, r)
                await admin.wait(lambda e: e["event"] == "CHANNEL_HOLD")
                await asyncio.sleep(1.0)
                st, _ = await api.req("POST", f"/api/channels/{inbound['id']}/unhold",
                                      toks["agent"])
                assert st == 200
                st, _ = await api.req("POST", f"/api/channels/{inbound['id']}/recording/stop",
                                      toks["agent"])
                assert st == 403  # recording control: supervisors and admins
                st, r = await api.req("POST", f"/api/channels/{inbound['id']}/recording/stop",
                                      toks["admin"])
                assert st == 200, r
                st, r = await api.req("POST", f"/api/channels/{inbound['id']}/recording/start",
                                      toks["admin"])
                assert st == 200 and r["path"].endswith(f"{call}-2.wav"), r
                await asyncio.sleep(1.0)
                await cust.hangup()
                await agent.wait_closed(5)
                for leg in legs:
                    ev = await admin.wait(lambda e, i=leg["id"]: e["event"] == "CHANNEL_HANGUP"
                                          and e["channel"] == i)
                    assert ev["cause"] == "NORMAL_CLEARING" and ev["answered"] is True
                await hangups.wait(lambda e: e.get("linkedid") == call)
                assert {e["event"] for e in hangups.events} == {"CHANNEL_HANGUP"}
                assert not [e for e in other.events if e.get("linkedid") == call], \
                    "an agent saw another agent's call"

                # ---- records: search by role, download the recording
                rows: list[dict[str, Any]] = []
                for _ in range(50):
                    st, rows = await api.req("GET", "/api/cdr?caller=1001&callee=1002",
                                             toks["admin"])
                    if rows and rows[0]["end"]:
                        break
                    await asyncio.sleep(0.1)
                api.check("get", "/api/cdr", st, rows)
                assert [r["call_uuid"] for r in rows] == [call]
                assert rows[0]["disposition"] == "ANSWERED"
                st, rows = await api.req("GET", f"/api/cdr?since={time.time() - 600}"
                                                "&disposition=ANSWERED", toks["agent"])
                assert [r["call_uuid"] for r in rows] == [call]
                st, rows = await api.req("GET", "/api/cdr", toks["agent2"])
                assert rows == []
                st, rows = await api.req("GET", "/api/recordings?number=1001", toks["admin"])
                assert [r["call_uuid"] for r in rows] == [call]
                st, rows = await api.req("GET", "/api/recordings", toks["supervisor"])
                assert rows == []  # not a call of the supervisor's queue
                st, wav = await api.req("GET", f"/api/recordings/{call}", toks["admin"])
                assert st == 200 and wav[:4] == b"RIFF" and len(wav) > 8000
                st, _ = await api.req("GET", f"/api/recordings/{call}", toks["supervisor"])
                assert st == 404
                st, _ = await api.req("GET", "/api/cdr?disposition=nope", toks["admin"])
                assert st == 400

                # ---- a queue call: the agent gets a screen pop with the earlier call
                st, r = await api.req("POST", "/api/agents/1002/login", toks["agent"])
                assert st == 200 and r["result"] == ["sales"]
                await cust.call("600", timeout=10)
                pop = await mine.wait(lambda e: e["event"] == "SCREEN_POP", timeout=15)
                assert pop["agent"] == "1002" and pop["queue"] == "sales"
                assert pop["caller_number"] == "1001"
                assert pop["wait"] is not None and pop["wait"] >= 0
                assert [c["call_uuid"] for c in pop["previous_calls"]] == [call]
                assert isinstance(pop["variables"], dict) and isinstance(pop["ivr_path"], list)
                await agent.wait_established(10)
                await queue_only.wait(lambda e: e["event"] == "QUEUE_CALLER_OFFER")
                assert all(e.get("queue") == "sales" for e in queue_only.events)
                st, p = await api.req("GET", "/api/agents/1002/screenpop", toks["agent"])
                api.check("get", "/api/agents/{agent}/screenpop", st, p)
                assert st == 200 and p["call_uuid"] == pop["call_uuid"]
                st, _ = await api.req("GET", "/api/agents/1002/screenpop", toks["agent2"])
                assert st == 403
                assert not [e for e in other.events if e["event"] == "SCREEN_POP"]
                # the agent's state went through ringing to on_call, on the stream
                await mine.wait(lambda e: e["event"] == "AGENT_STATE"
                                and e["state"] == "on_call")
                for _ in range(50):
                    if hooks:
                        break
                    await asyncio.sleep(0.1)
                assert hooks and hooks[0]["event"] == "SCREEN_POP"
                assert hooks[0]["caller_number"] == "1001" and hooks[0]["agent"] == "1002"
                await cust.hangup()
                await agent.wait_closed(5)
                await admin.wait(lambda e: e["event"] == "QUEUE_CALL_END")
        finally:
            for s in (admin, mine, other, hangups, queue_only):
                s.stop()
            await api.close()
            await runner.cleanup()
        # the queue call's record carries the queue and the agent; CDR writes are batched
        # (0.1 s) and this call can end a few ms before this line: wait for its outcome
        rows = await srv.wait_for(lambda: [
            c for c in srv.cdrs()
            if c["callee"] == "600" and "queue_outcome" in json.loads(c["extra"] or "{}")])
        assert json.loads(rows[0]["extra"])["agent"] == "1002"
