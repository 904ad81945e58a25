"""The wallboard and the agent page in headless Chromium (Debian's chromium), driven over
the DevTools protocol: log in, then watch a live call from a real baresip phone, agent
state changes made through the API and a screen pop appear without reloading the page."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.apiclient import PASSWORDS, Api, api_server, base_url, tokens
from tests.peers.baresip import Baresip
from tests.peers.netutil import free_tcp_port

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="chromium is not installed (apt-get install chromium)")


class Browser:
    """One headless Chromium with a fresh profile, one page, driven over CDP."""

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.port = free_tcp_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.session = aiohttp.ClientSession()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Browser:
        self.proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-extensions",
            "--no-proxy-server", "--window-size=1600,1000",
            f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}",
            "--remote-allow-origins=*", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        url = None
        while url is None:
            if time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as r:
                    pages = [t for t in await r.json() if t["type"] == "page"]
                    if pages:
                        url = pages[0]["webSocketDebuggerUrl"]
            await asyncio.sleep(0.1)
        self.ws = await self.session.ws_connect(url, max_msg_size=0)
        self._reader = asyncio.ensure_future(self._read())
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self._id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[self._id] = fut
        await self.ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        data = await asyncio.wait_for(fut, 20)
        if "error" in data:
            raise RuntimeError(f"{method}: {data['error']}")
        result: dict[str, Any] = data.get("result", {})
        return result

    async def js(self, expr: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expr, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr}: {r['exceptionDetails']}")
        return r["result"].get("value")

    async def wait(self, expr: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                last = await self.js(expr)
                if last:
                    return last
            await asyncio.sleep(0.1)
        body = await self.js("document.body ? document.body.innerText : ''")
        raise AssertionError(f"not true in {timeout}s: {expr} (last {last!r})\n{body}")

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete' && !!window.cc")

    async def screenshot(self, path: Path) -> None:
        r = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(r["data"]))

    async def login(self, user: str, password: str) -> None:
        await self.wait("document.getElementById('login').classList.contains('show')")
        await self.js(f"""(() => {{
            document.getElementById('login-user').value = {json.dumps(user)};
            document.getElementById('login-pass').value = {json.dumps(password)};
            document.getElementById('login-form').requestSubmit(); }})()""")
        await self.wait("!document.getElementById('login').classList.contains('show') "
                        "&& cc.me !== null")

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.send("Browser.close")
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        await self.session.close()
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def _row(sel: str, attr: str) -> str:
    return f"(document.querySelector({json.dumps(sel)}) || {{dataset: {{}}}}).dataset.{attr}"


async def test_wallboard_and_agent_page_live(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    with api_server(tmp_path / "server", monkeypatch) as srv:
        api = Api(base_url(srv), cookies=False)
        toks = tokens(srv)
        browser = await Browser(tmp_path / "profile").start()
        try:
            # ---- the wallboard, as the supervisor of "sales"
            await browser.goto(base_url(srv) + "/wallboard")
            await browser.login("sup", PASSWORDS["sup"])
            await browser.wait("document.querySelector('.tile[data-queue=sales]') !== null")
            assert await browser.js("document.querySelector('.tile[data-queue=support]')") \
                is None, "a supervisor sees only their queues"
            await browser.wait(_row("#agents tr[data-agent='1002']", "state")
                               + " === 'logged_out'")
            await browser.wait("document.getElementById('live').classList.contains('live')")
            await browser.js("window.__marker = 'same page'")

            # agent state changes made through the API appear by themselves
            st, _ = await api.req("POST", "/api/agents/1002/login", toks["admin"])
            assert st == 200
            await browser.wait(_row("#agents tr[data-agent='1002']", "state")
                               + " === 'available'")
            await browser.wait("document.querySelector('.tile[data-queue=sales]')"
                               ".innerText.includes('1 / 1')")
            st, _ = await api.req("POST", "/api/agents/1002/pause", toks["admin"],
                                  {"reason": "lunch"})
            assert st == 200
            await browser.wait("(document.querySelector(\"#agents tr[data-agent='1002'] "
                               "[data-field=state]\") || {}).textContent === 'paused (lunch)'")
            st, _ = await api.req("POST", "/api/agents/1002/unpause", toks["admin"])

            # a live call from a real phone appears, with a running timer, then goes
            async with Baresip(user="1001", password="secret1001", domain=srv.domain,
                               register=True, tmp_dir=tmp_path, name="cust") as cust, \
                    Baresip(user="1002", password="secret1002", domain=srv.domain,
                            register=True, tmp_dir=tmp_path, name="agent",
                            answermode="auto") as agent:
                assert await cust.register() and await agent.register()
                await cust.call("1002", timeout=10)
                await agent.wait_established(5)
                await browser.wait("[...document.querySelectorAll('#calls tbody tr')].some("
                                   "r => r.innerText.includes('1001') && "
                                   "r.innerText.includes('Up'))")
                t0 = await browser.js("document.querySelector('#calls tbody tr .timer')"
                                      ".textContent")
                await asyncio.sleep(2.2)
                t1 = await browser.js("document.querySelector('#calls tbody tr .timer')"
                                      ".textContent")
                assert t0 != t1, "the call timer does not run"
                await browser.wait("document.getElementById('t-active').textContent === '1'")
                await browser.screenshot(tmp_path / "wallboard.png")
                await cust.hangup()
                await agent.wait_closed(5)
                await browser.wait("document.querySelector('#calls tbody').innerText"
                                   ".includes('No calls')")
                await browser.wait("document.getElementById('t-calls').textContent === '1'")
                assert await browser.js("window.__marker") == "same page", "the page reloaded"
                assert await browser.js(
                    "performance.getEntriesByType('navigation').length") == 1

                # ---- the agent page: state controls and the screen pop of a queue call
                await browser.js("document.getElementById('logout').click()")
                await browser.wait("document.getElementById('login').classList"
                                   ".contains('show')")
                await browser.goto(base_url(srv) + "/agent")
                await browser.login("agent", PASSWORDS["agent"])
                await browser.wait("document.getElementById('state').textContent"
                                   " === 'available'")
                await browser.js("document.getElementById('pause-reason').value = 'training';"
                                 "document.getElementById('btn-pause').click()")
                await browser.wait("document.getElementById('state').textContent"
                                   " === 'paused (training)'")
                st, a = await api.req("GET", "/api/agents/1002", toks["admin"])
                assert a["state"] == "paused" and a["pause_reason"] == "training"
                await browser.js("document.getElementById('btn-unpause').click()")
                await browser.wait("document.getElementById('state').textContent"
                                   " === 'available'")
                await browser.js("window.__marker = 'agent page'")
                await cust.call("600", timeout=10)
                await browser.wait("(document.getElementById('pop-caller') || {})"
                                   ".textContent === '1001 · Alice'"
                                   " || (document.getElementById('pop-caller') || {})"
                                   ".textContent === '1001'", timeout=15)
                assert await browser.js("document.getElementById('pop-queue').textContent") \
                    == "sales"
                assert "Previous calls (1)" in await browser.js(
                    "document.getElementById('pop').textContent")
                await agent.wait_established(10)
                await browser.wait("document.getElementById('state').textContent"
                                   " === 'on call'")
                await browser.screenshot(tmp_path / "agent.png")
                await cust.hangup()
                await agent.wait_closed(5)
                assert await browser.js("window.__marker") == "agent page"
        finally:
            await browser.close()
            await api.close()
    with contextlib.suppress(OSError):
        shutil.copy(tmp_path / "wallboard.png", "/tmp/ccswitch-wallboard.png")
        shutil.copy(tmp_path / "agent.png", "/tmp/ccswitch-agent.png")
