"""Supervisor monitoring with tones: listen, whisper, barge.

Caller 1001 plays 500 Hz, agent 1002 plays 900 Hz, supervisor 1003 plays 1300 Hz.  The
supervisor starts by feature code (*61 + 1002: listen), presses 5 (whisper), then the
API switches to barge, then the supervisor hangs up.  What each phone received in each
phase (cut from its recording of received audio at the moments we switched):

    listen:  supervisor hears 500 + 900; caller and agent never hear 1300
    whisper: agent hears 1300 (and still 500); the caller never hears 1300
    barge:   everyone hears everyone
    after:   the plain call again: nobody hears 1300
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.apiclient import Api, api_server, base_url, tokens
from tests.peers import audio
from tests.peers.baresip import Baresip, CallFailed

CALLER, AGENT, SUP = 500.0, 900.0, 1300.0
PHASE = 3.0
EDGE = 0.7  # seconds trimmed at each end of a phase (switching, jitter buffers)


def _frames(path: Path | None) -> int:
    """Samples written so far to a phone's received-audio recording (8 kHz mono s16)."""
    if path is None or not path.exists():
        return 0
    return max(0, (path.stat().st_size - 44) // 2)


def _cut(path: Path, start: int, end: int) -> Any:
    rate, x = audio.load_mono(path)
    assert rate == 8000
    e = int(EDGE * rate)
    seg = x[start + e:end - e]
    assert len(seg) > rate // 2, f"phase too short in {path.name}: {len(seg)} samples"
    return seg


def _hears(x: Any, f: float) -> float:
    return float(audio.tone_ratio(x, 8000, f, tol_hz=20))


async def test_listen_whisper_barge_with_tones(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    tones = {ext: audio.write_tone_wav(tmp_path / f"{ext}.wav", f, 90)
             for ext, f in (("1001", CALLER), ("1002", AGENT), ("1003", SUP))}
    with api_server(tmp_path / "server", monkeypatch) as srv:
        api = Api(base_url(srv), cookies=False)
        toks = tokens(srv)
        try:
            async with Baresip(user="1001", password="secret1001", domain=srv.domain,
                               register=True, tmp_dir=tmp_path, name="caller",
                               source=tones["1001"]) as caller, \
                    Baresip(user="1002", password="secret1002", domain=srv.domain,
                            register=True, tmp_dir=tmp_path, name="agent",
                            source=tones["1002"], answermode="auto") as agent, \
                    Baresip(user="1003", password="secret1003", domain=srv.domain,
                            register=True, tmp_dir=tmp_path, name="sup",
                            source=tones["1003"]) as sup:
                assert await caller.register() and await agent.register() \
                    and await sup.register()
                # an extension that is no supervisor's may not monitor
                with pytest.raises(CallFailed) as ei:
                    await caller.call("*611002", timeout=10)
                assert "403" in str(ei.value)

                await caller.call("1002", timeout=10)
                await agent.wait_established(5)
                await asyncio.sleep(1.0)
                await sup.call("*611002", timeout=10)  # listen
                st, sessions = await api.req("GET", "/api/monitor", toks["supervisor"])
                assert st == 200 and len(sessions) == 1, sessions
                mon = sessions[0]
                assert (mon["agent"], mon["mode"], mon["supervisor"]) == ("1002", "listen", "sup")
                st, _none = await api.req("GET", "/api/monitor", toks["agent"])
                assert st == 403
                phones = {"caller": caller, "agent": agent, "sup": sup}
                wavs = {k: p.received_wav() for k, p in phones.items()}
                assert all(wavs.values())
                marks: list[dict[str, int]] = [{k: _frames(w) for k, w in wavs.items()}]
                await asyncio.sleep(PHASE)
                marks.append({k: _frames(w) for k, w in wavs.items()})
                await sup.send_dtmf("5")  # whisper
                await asyncio.sleep(0.4)
                st, sessions = await api.req("GET", "/api/monitor", toks["admin"])
                assert sessions[0]["mode"] == "whisper"
                marks.append({k: _frames(w) for k, w in wavs.items()})
                await asyncio.sleep(PHASE)
                marks.append({k: _frames(w) for k, w in wavs.items()})
                st, r = await api.req("POST", f"/api/monitor/{mon['monitor']}/mode",
                                      toks["supervisor"], {"mode": "barge"})
                assert st == 200 and r["mode"] == "barge", r
                marks.append({k: _frames(w) for k, w in wavs.items()})
                await asyncio.sleep(PHASE)
                marks.append({k: _frames(w) for k, w in wavs.items()})
                await sup.hangup()
                await sup.wait_closed(5)
                for _ in range(30):
                    st, sessions = await api.req("GET", "/api/monitor", toks["admin"])
                    if not sessions:
                        break
                    await asyncio.sleep(0.1)
                assert sessions == []
                marks.append({k: _frames(w) for k, w in wavs.items()})
                await asyncio.sleep(PHASE)
                marks.append({k: _frames(w) for k, w in wavs.items()})
                # the call itself went on: both parties are still there
                st, chans = await api.req("GET", "/api/channels", toks["admin"])
                assert len(chans) == 2, chans
                # started from the API: the supervisor's phone rings, answering starts it
                start = asyncio.ensure_future(api.req(
                    "POST", "/api/monitor", toks["supervisor"], {"agent": "1002",
                                                                 "mode": "barge"}))
                await sup.wait_incoming(10)
                await sup.answer()
                st, r = await start
                assert st == 200 and r["mode"] == "barge" and r["supervisor"] == "sup", r
                listed = await srv.acli_json("monitor", "list")
                assert [m["monitor"] for m in listed] == [r["monitor"]]
                st, r2 = await api.req("POST", f"/api/monitor/{r['monitor']}/stop",
                                       toks["supervisor"])
                assert st == 200 and r2["stopped"] is True
                await sup.wait_closed(5)  # the supervisor's leg is hung up
                await caller.hangup()
                await agent.wait_closed(5)
        finally:
            await api.close()
        st_rows = srv.cli_json("audit", "--action", "monitor_mode")
        assert [(r["username"], r["status"]) for r in st_rows] == [("sup", 200)]

    phases = {"listen": (marks[0], marks[1]), "whisper": (marks[2], marks[3]),
              "barge": (marks[4], marks[5]), "after": (marks[6], marks[7])}
    heard: dict[str, dict[str, dict[float, float]]] = {}
    for phase, (a, b) in phases.items():
        heard[phase] = {}
        for who, wav in wavs.items():
            assert wav is not None
            if phase == "after" and who == "sup":
                continue  # hung up
            x = _cut(wav, a[who], b[who])
            heard[phase][who] = {f: _hears(x, f) for f in (CALLER, AGENT, SUP)}
    report = "\n".join(f"{p:8} {w:6} " + " ".join(f"{f:.0f}:{r:.2f}" for f, r in h.items())
                       for p, d in heard.items() for w, h in d.items())
    yes, no = 0.2, 0.01

    def check(phase: str, who: str, f: float, present: bool) -> None:
        r = heard[phase][who][f]
        ok = r > yes if present else r < no
        assert ok, f"{phase}: {who} {'should' if present else 'must not'} hear {f:.0f} Hz " \
                   f"(ratio {r:.3f})\n{report}"

    # listen: the supervisor hears both parties, nobody hears the supervisor
    check("listen", "sup", CALLER, True)
    check("listen", "sup", AGENT, True)
    check("listen", "caller", SUP, False)
    check("listen", "agent", SUP, False)
    check("listen", "caller", AGENT, True)
    check("listen", "agent", CALLER, True)
    # whisper: the agent hears the supervisor (and the caller); the caller never does
    check("whisper", "agent", SUP, True)
    check("whisper", "agent", CALLER, True)
    check("whisper", "caller", SUP, False)
    check("whisper", "caller", AGENT, True)
    check("whisper", "sup", CALLER, True)
    check("whisper", "sup", AGENT, True)
    # barge: everyone hears everyone else, nobody hears themselves
    for who, own in (("caller", CALLER), ("agent", AGENT), ("sup", SUP)):
        for f in (CALLER, AGENT, SUP):
            if f != own:
                check("barge", who, f, True)
    check("barge", "sup", SUP, False)
    # after: the plain two-party call
    check("after", "caller", SUP, False)
    check("after", "agent", SUP, False)
    check("after", "caller", AGENT, True)
    check("after", "agent", CALLER, True)
    assert np.isfinite(heard["barge"]["caller"][SUP])
