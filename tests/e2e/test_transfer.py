"""Transfers with real baresip phones: blind REFER and the ## feature code; a call moved
between phones by INVITE with Replaces."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.rawsip import RawSip, hang_up, place_call
from tests.e2e.server import CcswitchServer
from tests.peers import audio
from tests.peers.baresip import Baresip

TONES = {"1001": 600.0, "1002": 900.0, "1003": 1300.0}


def phone(server: CcswitchServer, tmp_path: Path, ext: str, **kw: object) -> Baresip:
    src = audio.write_tone_wav(tmp_path / f"{ext}.wav", TONES[ext], 60)
    return Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                   tmp_dir=tmp_path, name=f"ua{ext}", source=src, **kw)  # type: ignore[arg-type]


async def _heard(ua: Baresip, freq: float, since_s: float = 0.0) -> bool:
    wav = ua.received_wav()
    if wav is None:
        return False
    rate, x = audio.load_mono(wav)
    x = x[int(since_s * rate):]
    return len(x) > rate and audio.tone_present(x, rate, freq, min_ratio=0.3)


async def test_blind_transfer_by_refer(server: CcswitchServer, tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001") as a, \
            phone(server, tmp_path, "1002", answermode="auto") as b, \
            phone(server, tmp_path, "1003", answermode="auto") as c:
        assert await a.register() and await b.register() and await c.register()
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.transfer("1003")
        # the transferor's leg ends, the transferee now talks to the target
        await b.wait_closed(10)
        await c.wait_established(10)
        await asyncio.sleep(2.5)
        chans = await server.acli_json("channels")
        assert len(chans) == 2, chans
        names = {ch["name"].split("-")[0] for ch in chans}
        assert names == {"SIP/1001", "SIP/1003"}
        await a.hangup()
        await c.wait_closed(5)
        c_rx = c.received_wav()
    assert c_rx is not None
    rate, x = audio.load_mono(c_rx)
    assert audio.tone_present(x, rate, TONES["1001"], min_ratio=0.3), "C did not hear A"
    # the recording of the customer call holds both stages: B's tone, then C's
    recs = server.recordings()
    assert len(recs) == 1
    rate, st = audio.load_wav(recs[0])
    right = st[1]
    assert audio.tone_ratio(right, rate, TONES["1002"]) > 0.05
    assert audio.tone_ratio(right, rate, TONES["1003"]) > 0.05


# ------------------------------------------------------------ INVITE with Replaces
def _rtp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


def _sdp(rtp: socket.socket) -> bytes:
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {rtp.getsockname()[1]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=sendrecv\r\n").encode()


async def _rtp_hears(rtp: socket.socket, freq: float, secs: float = 1.5) -> bool:
    """Drop what is queued, then decode `secs` of fresh PCMU and look for `freq`."""
    from tests.e2e.test_core_calls import _ulaw_decode

    with contextlib.suppress(BlockingIOError):
        while True:
            rtp.recv(2048)
    loop = asyncio.get_running_loop()
    payload = b""
    end = loop.time() + secs
    while loop.time() < end:
        try:
            data = await asyncio.wait_for(loop.sock_recv(rtp, 2048), end - loop.time())
        except TimeoutError:
            break
        if len(data) > 12 and data[1] & 0x7F == 0:
            payload += data[12:]
    x = _ulaw_decode(payload) if payload else np.zeros(0)
    return len(x) > 8000 and audio.tone_present(x, 8000, freq, min_ratio=0.3)


async def test_invite_with_replaces_moves_a_call_to_another_phone(
        server: CcswitchServer, tmp_path: Path) -> None:
    """RFC 3891: a second phone of extension 1001 takes over 1001's call with 1002 (the
    first phone's dialog gets a BYE, 1002's call goes on with the new phone); another
    extension is refused, an unknown dialog gets 481."""
    r1, r2, r3 = _rtp_socket(), _rtp_socket(), _rtp_socket()
    try:
        async with phone(server, tmp_path, "1002", answermode="auto") as b, \
                RawSip("127.0.0.1", server.port) as s1, \
                RawSip("127.0.0.1", server.port) as s2, \
                RawSip("127.0.0.1", server.port) as s3:
            assert await b.register()
            call = await place_call(s1, "1002", "1001", "secret1001", _sdp(r1))
            await b.wait_established(5)
            assert await _rtp_hears(r1, TONES["1002"])
            rep = (f"Replaces: {call.call_id}@test;to-tag={call.to_tag};"
                   f"from-tag={call.from_tag}")
            with pytest.raises(AssertionError, match="status=403"):
                await place_call(s3, "1002", "1003", "secret1003", _sdp(r3), extra=[rep])
            with pytest.raises(AssertionError, match="status=481"):
                await place_call(s3, "1002", "1001", "secret1001", _sdp(r3),
                                 extra=["Replaces: nosuch@test;to-tag=a1;from-tag=b2"])
            call2 = await place_call(s2, "1002", "1001", "secret1001", _sdp(r2), extra=[rep])
            assert await s1.recv_request("BYE", 5) is not None  # the first phone lets go
            assert await _rtp_hears(r2, TONES["1002"])  # the new phone hears 1002
            assert not b.events_of("CALL_CLOSED")  # 1002 never noticed
            chans = await server.acli_json("channels")
            # the old leg is gone: the new phone's leg and 1002's leg remain
            assert sorted(c["direction"] for c in chans) == ["inbound", "outbound"], chans
            r = await hang_up(s2, call2)
            assert r is not None and r.status == 200
            await b.wait_closed(5)
    finally:
        for s in (r1, r2, r3):
            s.close()
