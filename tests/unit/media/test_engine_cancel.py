"""Cancelling a task while it allocates RTP ports loses neither the ports nor a channel.

A queue withdraws an offer by cancelling the task that rings the agent; when that landed
while the agent's leg was getting its ports, the pair stayed marked as used and the leg
stayed in the channel list, never called and never hung up (found by bench/queue_bench.py).
"""

from __future__ import annotations

import asyncio

import pytest

from ccswitch.call.channel import ChannelManager
from ccswitch.call.events import EventBus
from ccswitch.call.sipua import SipUA
from ccswitch.media.engine import MediaEngine
from ccswitch.sip.transaction import Peer
from ccswitch.sip.uri import SipURI


async def _cancel_during(coro_task: asyncio.Task[object]) -> None:
    await asyncio.sleep(0)  # the task runs to its first wait: the socket registration
    assert not coro_task.done()
    coro_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await coro_task


async def test_cancelled_endpoint_creation_gives_the_ports_back() -> None:
    engine = MediaEngine("127.0.0.1", 41000, 41009)  # 5 pairs
    engine.start()
    try:
        for _ in range(10):  # more than the range holds: a leak would exhaust it
            await _cancel_during(asyncio.ensure_future(engine.create_endpoint()))
            assert engine.ports_free == 5
        ep = await engine.create_endpoint()
        assert engine.ports_free == 4 and ep.transport is not None
        ep.close()
    finally:
        engine.stop()


async def test_cancelled_originate_ends_its_leg() -> None:
    bus = EventBus()
    hangups: list[dict[str, object]] = []
    bus.subscribe(hangups.append, {"CHANNEL_HANGUP"})
    engine = MediaEngine("127.0.0.1", 41100, 41109)
    engine.start()
    manager = ChannelManager(bus, engine)
    ua = SipUA(manager=manager, engine=engine, realm="r", server_name="s", extensions={},
               on_inbound_call=None)  # type: ignore[arg-type]
    try:
        task = asyncio.ensure_future(ua.originate_uri(
            SipURI.parse("sip:1002@127.0.0.1:5999"), Peer("udp", "127.0.0.1", 5999),
            caller="1001", caller_name="", dest="1002"))
        await _cancel_during(task)  # type: ignore[arg-type]
        assert manager.channels == {}
        assert [e["cause"] for e in hangups] == ["ORIGINATOR_CANCEL"]
        assert engine.ports_free == 5
    finally:
        engine.stop()
