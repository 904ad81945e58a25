"""Core calls between real baresip phones through ccswitch (issue: core B2BUA)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.server import CcswitchServer
from tests.peers import audio
from tests.peers.baresip import Baresip

A_TONE = 700.0
B_TONE = 1100.0


def phone(server: CcswitchServer, tmp_path: Path, ext: str, **kw: object) -> Baresip:
    return Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                   tmp_dir=tmp_path, name=f"ua{ext}", **kw)  # type: ignore[arg-type]


async def test_two_phones_call_with_tones_dtmf_recording_cdr(
        server: CcswitchServer, tmp_path: Path) -> None:
    a_wav = audio.write_tone_wav(tmp_path / "a.wav", A_TONE, 20)
    b_wav = audio.write_tone_wav(tmp_path / "b.wav", B_TONE, 20)
    async with phone(server, tmp_path, "1001", source=a_wav) as a, \
            phone(server, tmp_path, "1002", source=b_wav, answermode="auto") as b:
        assert await a.register() and await b.register()
        regs = await server.acli_json("registrations")
        assert sorted(r["extension"] for r in regs) == ["1001", "1002"]

        await a.call("1002", timeout=10)
        await b.wait_established(5)
        chans = await server.acli_json("channels")
        assert len(chans) == 2
        by_dir = {c["direction"]: c for c in chans}
        assert by_dir["inbound"]["caller"] == "1001"
        assert by_dir["inbound"]["callee"] == "1002"
        assert by_dir["inbound"]["state"] == "Up"
        assert by_dir["inbound"]["bridged_with"] == by_dir["outbound"]["name"]
        assert by_dir["inbound"]["name"].startswith("SIP/1001-")
        assert by_dir["outbound"]["name"].startswith("SIP/1002-")

        await asyncio.sleep(1.0)
        await a.send_dtmf("159#", gap=0.3)
        await b.wait_dtmf("159#", timeout=5)
        await asyncio.sleep(1.5)
        await a.hangup()
        await a.wait_closed(5)
        await b.wait_closed(5)
        a_rx, b_rx = a.received_wav(), b.received_wav()

    assert a_rx is not None and b_rx is not None
    rate, x = audio.load_mono(a_rx)
    assert audio.tone_present(x, rate, B_TONE), "caller did not hear the callee's tone"
    rate, x = audio.load_mono(b_rx)
    assert audio.tone_present(x, rate, A_TONE), "callee did not hear the caller's tone"

    # the recording: caller on the left, callee on the right
    recs = server.recordings()
    assert len(recs) == 1
    rate, st = audio.load_wav(recs[0])
    assert st.shape[0] == 2 and rate == 8000
    assert audio.tone_present(st[0], rate, A_TONE)
    assert audio.tone_present(st[1], rate, B_TONE)
    assert st.shape[1] / rate > 2.5

    def cdr_done() -> list[dict[str, object]]:
        return [c for c in server.cdrs() if c["end"] is not None]

    cdrs = await server.wait_for(cdr_done)
    assert len(cdrs) == 1
    c = cdrs[0]
    assert (c["caller"], c["callee"], c["disposition"], c["hangup_cause"]) == (
        "1001", "1002", "ANSWERED", "NORMAL_CLEARING")
    assert c["recording"] and (Path(server.dir / str(c["recording"])).exists()
                               or Path(str(c["recording"])).exists())
    assert float(c["billsec"]) > 2.0  # type: ignore[arg-type]
    assert server.cli_json("channels") == []
