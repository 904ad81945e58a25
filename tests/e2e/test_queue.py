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


async def test_two_callers_served_in_arrival_order(qserver: CcswitchServer,
                                                   tmp_path: Path) -> None:
    server = qserver
    server.cli("agent", "login", "1002")
    agent_src = audio.write_tone_wav(tmp_path / "agent.wav", AGENT_TONE, 90)
    async with Baresip(user="1002", password="secret1002", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="agent", source=agent_src,
                       answermode="manual") as agent, \
            Baresip(user="1001", password="secret1001", domain=server.domain, register=True,
                    tmp_dir=tmp_path, name="c1001",
                    source=audio.write_tone_wav(tmp_path / "c1.wav", 500.0, 90)) as c1, \
            Baresip(user="1003", password="secret1003", domain=server.domain, register=True,
                    tmp_dir=tmp_path, name="c1003",
                    source=audio.write_tone_wav(tmp_path / "c3.wav", 800.0, 90)) as c3:
        assert await agent.register() and await c1.register() and await c3.register()
        # first caller: the agent rings; the second waits behind it
        await c1.call("300", timeout=10)  # answered by the queue (music on hold)
        await agent.wait_incoming(10)
        await c3.call("300", timeout=10)
        q = await server.acli_json("queue", "show", "support")
        assert [c["caller"] for c in q["callers"]] == ["1001", "1003"]
        await agent.answer()
        await agent.wait_established(5)
        await asyncio.sleep(2.0)
        chans = await server.acli_json("channels")
        bridged = {c["caller"]: c["bridged_with"] for c in chans if c["direction"] == "inbound"}
        assert bridged.get("1001"), chans
        await c1.hangup()
        await agent.wait_closed(5)
        # now the second caller is offered
        await agent.wait_incoming(15)
        await agent.answer()
        await agent.wait_established(5)
        await asyncio.sleep(2.0)
        await c3.hangup()
        await agent.wait_closed(5)
        rx1, rx3 = c1.received_wav(), c3.received_wav()
        agent_calls = agent.recordings("dec")
    for wav in (rx1, rx3):
        assert wav is not None
        rate, x = audio.load_mono(wav)
        assert audio.tone_ratio(x, rate, AGENT_TONE) > 0.1, "caller did not hear the agent"
    # the agent took the callers in arrival order: 1001 (500 Hz) first, then 1003 (800 Hz)
    assert len(agent_calls) >= 2
    heard = []
    for wav in agent_calls[-2:]:
        rate, x = audio.load_mono(wav)
        heard.append(max((500.0, 800.0), key=lambda f: audio.tone_ratio(x, rate, f)))
    assert heard == [500.0, 800.0]
    stats = server.cli_json("stats", "queue", "support", "--today")
    assert stats["total"]["offered"] == 2
    assert stats["total"]["answered"] == 2
