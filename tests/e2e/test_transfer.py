"""Transfers with real baresip phones: blind REFER and the ## feature code."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
