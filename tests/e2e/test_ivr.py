"""The IVR with real peers: a three-level menu driven by RFC 4733, SIPp DTMF pcaps and
in-band tones; invalid input and timeouts; a broken flow edit refused mid-call.

Prompts here are tones (one frequency per node), so what the caller hears tells exactly
which node spoke, in which order.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.e2e.server import CcswitchServer
from tests.peers import audio
from tests.peers.baresip import Baresip
from tests.peers.sipp import run_sipp, write_dtmf_scenario

F = {"greet": 400.0, "level2": 600.0, "level3": 800.0, "leaf": 1000.0, "invalid": 1200.0,
     "timeout": 1400.0, "bye": 1600.0}

FLOW = """
flow: tivr
start: answer
nodes:
  answer: {type: answer, next: main}
  main:
    type: menu
    greeting: greet
    options: {"1": level2, "9": bye}
    invalid: invalid
    timeout_prompt: timeout
    timeout: 3
    retries: 1
    max_retries: bye
  level2:
    type: menu
    greeting: level2
    options: {"3": level3}
    invalid: invalid
    timeout: 4
    max_retries: bye
  level3:
    type: menu
    greeting: level3
    options: {"4": leaf}
    invalid: invalid
    timeout: 4
    max_retries: bye
  leaf: {type: play, prompt: leaf, next: bye}
  bye: {type: play, prompt: bye, next: end}
  end: {type: hangup}
"""


@pytest.fixture
def ivr_server(tmp_path: Path) -> CcswitchServer:
    srv = CcswitchServer(tmp_path / "server", {
        "routes": [{"number": "200", "flow": "tivr"}],
        "flows": {"directory": "flows"}, "prompts": {"directory": "prompts"},
        "tts": {"enabled": False},
    })
    (srv.dir / "flows").mkdir()
    (srv.dir / "prompts").mkdir()
    (srv.dir / "flows" / "tivr.yaml").write_text(FLOW)
    for name, f in F.items():
        # 44.1 kHz prompts: the server must resample them (anti-aliased) to 8 kHz
        audio.write_tone_wav(srv.dir / "prompts" / f"{name}.wav", f, 1.2, rate=44100)
    srv.start()
    yield srv  # type: ignore[misc]
    srv.stop()


def heard_sequence(wav: Path) -> list[float]:
    """The prompt tones heard, in order: 100 ms windows classified by the strongest of
    the known prompt frequencies, runs of at least 3 windows, repeats merged."""
    rate, x = audio.load_mono(wav)
    n = rate // 10
    labels: list[float | None] = []
    for i in range(0, len(x) - n, n):
        w = x[i:i + n]
        if audio.rms_dbfs(w) < -45:
            labels.append(None)
            continue
        best = max(F.values(), key=lambda f: audio.tone_ratio(w, rate, f, tol_hz=25))
        labels.append(best if audio.tone_ratio(w, rate, best, tol_hz=25) > 0.5 else None)
    seq: list[float] = []
    run_f, run_n = None, 0
    for lab in [*labels, None]:
        if lab == run_f:
            run_n += 1
            continue
        if run_f is not None and run_n >= 3 and (not seq or seq[-1] != run_f):
            seq.append(run_f)
        run_f, run_n = lab, 1
    return seq


def ivr_path(server: CcswitchServer) -> list[dict[str, object]]:
    rows = [c for c in server.cdrs() if c["callee"] == "200"]
    assert rows, "no CDR for the IVR call"
    extra = json.loads(str(rows[-1]["extra"]))
    path: list[dict[str, object]] = extra.get("ivr_path", [])
    return path


async def test_three_levels_with_rfc4733(ivr_server: CcswitchServer, tmp_path: Path) -> None:
    server = ivr_server
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="caller") as ua:
        assert await ua.register()
        await ua.call("200")
        await asyncio.sleep(0.6)  # barge into the greeting
        await ua.send_dtmf("1")
        await asyncio.sleep(1.6)  # hear level 2's prompt
        chans = await server.acli_json("channels")
        assert chans[0]["app"] == "IVR" and chans[0]["app_data"] == "tivr:level2"
        await ua.send_dtmf("3")
        await asyncio.sleep(1.6)
        await ua.send_dtmf("4")
        await ua.wait_closed(10)  # leaf, bye, hang-up by the flow
        wav = ua.received_wav()
    assert wav is not None
    seq = heard_sequence(wav)
    assert seq == [F["greet"], F["level2"], F["level3"], F["leaf"], F["bye"]], seq
    nodes = [p["node"] for p in ivr_path(server)]
    assert nodes[:4] == ["answer", "main", "level2", "level3"]
    assert "leaf" in nodes


async def test_invalid_and_timeout_edges(ivr_server: CcswitchServer, tmp_path: Path) -> None:
    server = ivr_server
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="caller") as ua:
        assert await ua.register()
        await ua.call("200")
        await asyncio.sleep(1.5)
        await ua.send_dtmf("7")  # not an option: invalid prompt, then the greeting again
        # then silence: timeout prompt, retries exhausted -> bye -> hang-up
        await ua.wait_closed(20)
        wav = ua.received_wav()
    assert wav is not None
    seq = heard_sequence(wav)
    assert seq[:3] == [F["greet"], F["invalid"], F["greet"]], seq
    assert F["timeout"] in seq or seq[-1] == F["bye"], seq
    assert seq[-1] == F["bye"]
    events = [p["event"] for p in ivr_path(server)]
    assert "max_retries" in events


async def test_sipp_dtmf_pcaps(ivr_server: CcswitchServer, tmp_path: Path) -> None:
    server = ivr_server
    scen = write_dtmf_scenario(tmp_path / "dtmf.xml", "134", wait_ms=1500, gap_ms=1600,
                               hold_ms=4000)
    res = await run_sipp(scen, server.domain, service="200", caller="1001",
                         auth_user="1001", auth_pass="secret1001", calls=1, timeout=40,
                         workdir=tmp_path / "sipp")
    assert res.successful == 1, res.summary()

    def done() -> bool:
        return any(p["node"] == "leaf" for p in ivr_path(server)) if server.cdrs() else False

    await server.wait_for(done, timeout=10)


async def test_inband_dtmf(ivr_server: CcswitchServer, tmp_path: Path) -> None:
    server = ivr_server
    digits = audio.write_dtmf_wav(tmp_path / "d1.wav", "1", on=0.12, lead=0.1)
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="caller") as ua:
        assert await ua.register()
        await ua.call("200")
        await asyncio.sleep(0.8)
        await ua.play(digits)  # the digit travels as audio only
        await server.wait_for(
            lambda: any(c["app_data"] == "tivr:level2" for c in server.cli_json("channels")),
            timeout=8)
        await ua.hangup()


async def test_broken_flow_edit_refused_mid_call(ivr_server: CcswitchServer,
                                                 tmp_path: Path) -> None:
    server = ivr_server
    flow_file = server.dir / "flows" / "tivr.yaml"
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="caller") as ua:
        assert await ua.register()
        await ua.call("200")
        await asyncio.sleep(0.6)
        await ua.send_dtmf("1")
        # an edit that points an option at a node that does not exist
        flow_file.write_text(FLOW.replace('{"3": level3}', '{"3": nowhere}'))
        r = await asyncio.to_thread(server.cli, "reload", check=False)
        assert r.returncode != 0
        out = r.stdout + r.stderr
        assert "tivr.yaml:" in out and "node 'level2'" in out and "nowhere" in out, out
        # the call goes on with the version it started with
        await asyncio.sleep(1.4)
        await ua.send_dtmf("3")
        await asyncio.sleep(1.6)
        await ua.send_dtmf("4")
        await ua.wait_closed(10)
    assert "leaf" in [p["node"] for p in ivr_path(server)]
    # `flows check` says the same, with the line
    r = server.cli("flows", "check", str(flow_file), check=False)
    assert r.returncode == 1 and "tivr.yaml:" in r.stdout
