"""Conference room 800 with three real baresip phones: each hears the other two, never itself."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.server import CcswitchServer
from tests.peers import audio
from tests.peers.baresip import Baresip

TONES = {"1001": 500.0, "1002": 900.0, "1003": 1300.0}


async def test_three_party_conference(server: CcswitchServer, tmp_path: Path) -> None:
    server.config["conferences"] = [{"number": "800", "name": "test"}]
    server.stop()
    server.start()
    phones = [
        Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                tmp_dir=tmp_path, name=f"ua{ext}",
                source=audio.write_tone_wav(tmp_path / f"{ext}.wav", f, 60))
        for ext, f in TONES.items()
    ]
    for p in phones:
        await p.start()
    try:
        for p in phones:
            assert await p.register()
        for p in phones:
            await p.call("800")
        def three() -> bool:
            conf = [c for c in server.cli_json("channels") if c["app"] == "Conference"]
            return len(conf) == 3
        await server.wait_for(three, timeout=10)
        show = server.cli_json("conference", "show", "800")
        assert len(show["members"]) == 3
        await asyncio.sleep(3.0)
        for p in phones:
            await p.hangup()
        wavs = {p.user: p.received_wav() for p in phones}
    finally:
        for p in phones:
            await p.stop()
    for ext, wav in wavs.items():
        assert wav is not None
        rate, x = audio.load_mono(wav)
        x = x[-int(2.0 * rate):]  # the last two seconds: all three were in the room
        for other, f in TONES.items():
            ratio = audio.tone_ratio(x, rate, f)
            if other == ext:
                assert ratio < 0.05, f"{ext} hears itself ({ratio:.2f})"
            else:
                assert ratio > 0.2, f"{ext} does not hear {other} ({ratio:.2f})"
    # the room was recorded, mixed
    recs = [r for r in server.recordings() if r.name.startswith("conf-800-")]
    assert recs
    rate, x = audio.load_mono(recs[0])
    for f in TONES.values():
        assert audio.tone_ratio(x, rate, f) > 0.1
