"""Queues with real phones: agent login by feature code, callers served in order, stats."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import DEMO_EXTENSIONS, CcswitchServer, running_server
from tests.peers import audio
from tests.peers.baresip import Baresip

AGENT_TONE = 1500.0


@pytest.fixture
def qserver(tmp_path: Path) -> Any:
    exts = [dict(e) for e in DEMO_EXTENSIONS] + [
        {"number": "1004", "password": "secret1004", "name": "Dave"}]
    queues = {"support": {
        "number": "300", "strategy": "leastrecent", "members": [{"agent": "1002"}],
        "first_announcement_after": 600, "announce_position_every": 0, "callback": False,
        "ring_timeout": 10, "wrapup": 0, "service_level": 20}}
    with running_server(tmp_path / "server", {"extensions": exts, "queues": queues}) as srv:
        yield srv


def _agent_state(server: CcswitchServer, agent: str) -> str:
    for a in server.cli_json("agents"):
        if a["agent"] == agent:
            return str(a["state"])
    return "?"


async def test_agent_feature_codes_login_pause_logout(qserver: CcswitchServer,
                                                     tmp_path: Path) -> None:
    server = qserver
    async with Baresip(user="1002", password="secret1002", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="agent") as agent:
        assert await agent.register()
        assert _agent_state(server, "1002") == "logged_out"
        for code, state in (("*45", "available"), ("*47", "paused"), ("*48", "available"),
                            ("*46", "logged_out")):
            await agent.call(code, timeout=10)  # answered, confirmation, hung up by us
            await agent.wait_closed(15)
            await server.wait_for(lambda s=state: _agent_state(server, "1002") == s)


async def test_three_callers_served_in_arrival_order(qserver: CcswitchServer,
                                                     tmp_path: Path) -> None:
    """Three callers queue behind a paused agent; once unpaused, the auto-answering
    agent takes them in arrival order, and tones pass both ways on every call."""
    server = qserver
    server.cli("agent", "login", "1002")
    server.cli("agent", "pause", "1002", "--reason", "setup")
    agent_src = audio.write_tone_wav(tmp_path / "agent.wav", AGENT_TONE, 90)
    tones = {"1001": 500.0, "1003": 800.0, "1004": 1100.0}

    def caller(ext: str) -> Baresip:
        return Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                       tmp_dir=tmp_path, name=f"c{ext}",
                       source=audio.write_tone_wav(tmp_path / f"c{ext}.wav", tones[ext], 90))

    async with Baresip(user="1002", password="secret1002", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="agent", source=agent_src,
                       answermode="auto") as agent, \
            caller("1001") as c1, caller("1003") as c3, caller("1004") as c4:
        callers = {"1001": c1, "1003": c3, "1004": c4}
        assert await agent.register()
        for c in callers.values():
            assert await c.register()
        for c in callers.values():  # each answered by the queue (music on hold)
            await c.call("300", timeout=10)
            await asyncio.sleep(0.3)
        q = await server.acli_json("queue", "show", "support")
        assert [c["caller"] for c in q["callers"]] == ["1001", "1003", "1004"]
        await asyncio.to_thread(server.cli, "agent", "unpause", "1002")
        served = []
        for _ in range(3):
            await agent.wait_established(15)
            await asyncio.sleep(2.0)
            chans = await server.acli_json("channels")
            bridged = [c["caller"] for c in chans
                       if c["direction"] == "inbound" and c["bridged_with"]]
            assert len(bridged) == 1, chans
            served.append(bridged[0])
            await callers[bridged[0]].hangup()
            await agent.wait_closed(5)
        received = {ext: c.received_wav() for ext, c in callers.items()}
        agent_calls = agent.recordings("dec")
    assert served == ["1001", "1003", "1004"]
    for ext, wav in received.items():
        assert wav is not None
        rate, x = audio.load_mono(wav)
        assert audio.tone_ratio(x, rate, AGENT_TONE) > 0.1, f"{ext} did not hear the agent"
    # what the agent heard, call by call: each caller's own tone, in arrival order
    assert len(agent_calls) >= 3
    heard = []
    for wav in agent_calls[-3:]:
        rate, x = audio.load_mono(wav)
        heard.append(max(tones.values(), key=lambda f: audio.tone_ratio(x, rate, f)))
    assert heard == [500.0, 800.0, 1100.0]
    stats = server.cli_json("stats", "queue", "support", "--today")
    assert stats["total"]["offered"] == 3
    assert stats["total"]["answered"] == 3


def _match(received: Any, prompt: Any) -> float:
    from tests.e2e.test_demo_ivr import match

    return match(received, prompt)


def _tts(server: CcswitchServer, text: str) -> Any:
    from ccswitch.speech.tts import Tts

    path = Tts(server.dir / "var" / "tts", "en", 160).path_for(text)
    assert path.exists(), f"not rendered: {text!r}"
    return audio.load_mono(path)[1]


@pytest.fixture
def aserver(tmp_path: Path) -> Any:
    exts = [dict(e) for e in DEMO_EXTENSIONS] + [
        {"number": "1004", "password": "secret1004", "name": "Dave"}]
    queues = {"sales": {
        "number": "301", "members": [{"agent": "1002"}], "join_empty": True,
        "first_announcement_after": 1.5, "announce_position_every": 8,
        "announce_holdtime": False, "callback": True, "callback_offer_after": 30,
        "vip_numbers": ["1004"], "ring_timeout": 10, "wrapup": 0}}
    # the callback test presses 1 once the offer was made: make it come quickly there
    if "callback" in str(tmp_path):
        queues["sales"]["callback_offer_after"] = 1.0
    with running_server(tmp_path / "server", {"extensions": exts, "queues": queues}) as srv:
        yield srv


async def test_position_announcements_vip_and_abandon(aserver: CcswitchServer,
                                                      tmp_path: Path) -> None:
    """Nobody logged in: three callers wait; each hears its position; a VIP jumps ahead."""
    server = aserver
    phones = {ext: Baresip(user=ext, password=f"secret{ext}", domain=server.domain,
                           register=True, tmp_dir=tmp_path, name=f"c{ext}")
              for ext in ("1001", "1003", "1004")}
    for p in phones.values():
        await p.start()
        assert await p.register()
    try:
        await phones["1001"].call("301")
        await asyncio.sleep(3.0)
        await phones["1003"].call("301")
        await asyncio.sleep(3.0)
        await phones["1004"].call("301")  # VIP: served before the others
        q = await server.acli_json("queue", "show", "sales")
        assert [c["caller"] for c in q["callers"]] == ["1004", "1001", "1003"]
        await asyncio.sleep(5.0)  # 1001's second announcement: now number 2
        for p in phones.values():
            await p.hangup()
        rx = {ext: audio.load_mono(p.received_wav())[1]  # type: ignore[arg-type]
              for ext, p in phones.items()}
    finally:
        for p in phones.values():
            await p.stop()
    n = {i: _tts(server, f"You are caller number {i}.") for i in (1, 2)}
    best = {ext: max((1, 2), key=lambda i, x=x: _match(x, n[i])) for ext, x in rx.items()}
    assert best["1003"] == 2, best
    assert best["1004"] == 1, best
    assert _match(rx["1001"], n[1]) > 0.5 and _match(rx["1001"], n[2]) > 0.5
    stats = server.cli_json("stats", "queue", "sales", "--today")
    assert stats["total"]["abandoned"] == 3 and stats["total"]["offered"] == 3


async def test_callback_keeps_place_and_calls_back(aserver: CcswitchServer,
                                                   tmp_path: Path) -> None:
    server = aserver
    server.cli("agent", "login", "1002")
    server.cli("agent", "pause", "1002", "--reason", "lunch")
    cust_src = audio.write_tone_wav(tmp_path / "cust.wav", 700.0, 90)
    agent_src = audio.write_tone_wav(tmp_path / "agent.wav", AGENT_TONE, 90)
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="cust", source=cust_src,
                       answermode="auto") as cust, \
            Baresip(user="1002", password="secret1002", domain=server.domain, register=True,
                    tmp_dir=tmp_path, name="agent", source=agent_src,
                    answermode="auto") as agent:
        assert await cust.register() and await agent.register()
        await cust.call("301")
        await asyncio.sleep(2.5)  # the offer comes after callback_offer_after (1 s here)
        await cust.send_dtmf("1")
        await cust.wait_closed(40)  # "we will call you back", then the server hangs up
        q = await server.acli_json("queue", "show", "sales")
        assert q["callers"] and q["callers"][0]["callback"] is True
        server.cli("agent", "unpause", "1002")
        # the agent is rung first, then the customer is called back and bridged
        await agent.wait_established(15)
        await cust.wait_established(20)
        await asyncio.sleep(2.5)
        await agent.hangup()
        await cust.wait_closed(10)
        rx = cust.received_wav()
    assert rx is not None
    rate, x = audio.load_mono(rx)
    assert audio.tone_ratio(x, rate, AGENT_TONE) > 0.1
    stats = server.cli_json("stats", "queue", "sales", "--today")
    assert stats["total"]["callbacks"] == 1
