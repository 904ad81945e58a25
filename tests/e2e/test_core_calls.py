"""Calls through the B2BUA with real peers (issue 2: core).

SIPp with pcap media into a baresip, failure responses relayed or generated,
CANCEL, the no-answer timeout, forking to two contacts, transcoding, TCP, and the
CLI's view of a live call.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.e2e.rawsip import RawSip, hang_up, place_call
from tests.e2e.server import CcswitchServer, running_server
from tests.peers import audio, netutil
from tests.peers.baresip import Baresip
from tests.peers.sipp import SippProcess, run_sipp, start_sipp

A_TONE = 700.0
B_TONE = 1100.0
C_TONE = 1500.0


def phone(server: CcswitchServer, tmp_path: Path, ext: str, name: str | None = None,
          **kw: Any) -> Baresip:
    return Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                   tmp_dir=tmp_path, name=name or f"ua{ext}", **kw)


def tone(tmp_path: Path, freq: float) -> Path:
    return audio.write_tone_wav(tmp_path / f"tone{int(freq)}.wav", freq, 20)


def hears(ua: Baresip, freq: float) -> bool:
    rx = ua.received_wav()
    if rx is None:
        return False
    rate, x = audio.load_mono(rx)
    return audio.tone_present(x, rate, freq)


async def finished_cdrs(server: CcswitchServer, n: int = 1) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        rows = [c for c in server.cdrs() if c["end"] is not None]
        return rows if len(rows) >= n else None

    rows: list[dict[str, Any]] = await server.wait_for(done, timeout=10)
    return rows


async def no_channels(server: CcswitchServer) -> None:
    await server.wait_for(lambda: server.cli_json("channels") == [], timeout=10)


# ---------------------------------------------------------------- SIPp with pcap media
async def test_sipp_pcap_call_into_baresip(server: CcswitchServer, tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1002", answermode="auto") as b:
        assert await b.register()
        sipp = await start_sipp("uac_call_pcap.xml", server.domain, service="1002",
                                caller="1001", auth_user="1001", auth_pass="secret1001",
                                timeout=20, workdir=tmp_path, trace_msg=True)
        async with sipp:
            await b.wait_established(10)
            chans = await server.acli_json("channels")
            assert {c["codec"] for c in chans} == {"PCMA"}, chans  # sipp offers PCMA first
            await asyncio.sleep(3.0)  # let the pcap play
            await b.hangup()  # our BYE reaches sipp while it waits for one
            await b.wait_closed(5)
            res = await sipp.wait(10)
        assert res.ok, res.summary()
        rx = b.received_wav()
    # digest on INVITE: 401, ACK, then INVITE with Authorization
    msgs = (res.workdir / "messages.log").read_text(errors="replace")
    assert "SIP/2.0 401 Unauthorized" in msgs
    assert re.search(r"ACK sip:1002@", msgs)
    assert re.search(r"Authorization: Digest .*username=\"1001\"", msgs)
    assert "SIP/2.0 100 Trying" in msgs  # once authenticated, the INVITE is proceeding
    # the phone heard the pcap (non-silent audio for most of the call)
    assert rx is not None
    rate, x = audio.load_mono(rx)
    assert len(x) / rate > 2.0
    assert audio.rms_dbfs(x) > -40.0, audio.rms_dbfs(x)
    recs = server.recordings()
    assert len(recs) == 1
    rate, st = audio.load_wav(recs[0])
    assert st.shape[0] == 2 and rate == 8000
    assert audio.rms_dbfs(st[0]) > -40.0  # the caller's side: the pcap
    (c,) = await finished_cdrs(server)
    assert (c["caller"], c["callee"], c["disposition"]) == ("1001", "1002", "ANSWERED")
    assert c["recording"]


# ---------------------------------------------------------------- failures
async def test_unknown_number_404_and_unregistered_480(server: CcswitchServer,
                                                      tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001") as a:
        assert await a.register()
        await a.dial("9999")
        ev = await a.wait_event("CALL_CLOSED", 5)
        assert ev.param.startswith("404"), ev.param
        await a.dial("1003")  # a known extension with no registration
        ev = await a.wait_event("CALL_CLOSED", 5)
        assert ev.param.startswith("480"), ev.param
    rows = await finished_cdrs(server, 2)
    got = {c["callee"]: (c["disposition"], c["hangup_cause"]) for c in rows}
    assert got == {"9999": ("FAILED", "UNALLOCATED_NUMBER"),
                   "1003": ("NO ANSWER", "SUBSCRIBER_ABSENT")}
    assert server.recordings() == []


async def test_busy_486_relayed(server: CcswitchServer, tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001") as a, phone(server, tmp_path, "1002") as b:
        assert await a.register() and await b.register()
        await a.dial("1002")
        await b.wait_incoming(5)
        await a.wait_event("CALL_RINGING", 5)  # 180 relayed
        await b.hangup()  # baresip rejects a ringing call with 486
        ev = await a.wait_event("CALL_CLOSED", 5)
        assert ev.param.startswith("486"), ev.param
        await b.wait_closed(5)
    (c,) = await finished_cdrs(server)
    assert (c["disposition"], c["hangup_cause"]) == ("BUSY", "USER_BUSY")
    await no_channels(server)


async def sipp_uas_as(server: CcswitchServer, tmp_path: Path, ext: str,
                      scenario: str) -> SippProcess:
    """A SIPp UAS registered as `ext`.  The server sends requests to the address a
    REGISTER came from (NAT-safe), so the REGISTER is sent from the very port sipp
    then binds (a later -p overrides the driver's own)."""
    async with RawSip("127.0.0.1", server.port) as reg:
        port = reg.local_port
        _, fin = await reg.register(ext, f"secret{ext}", expires=300,
                                    contact=f"<sip:{ext}@127.0.0.1:{port}>")
        assert fin is not None and fin.status == 200
    # a target makes start_sipp skip its wait for the port it picked (not ours)
    uas = await start_sipp(scenario, server.domain, service=None, caller=None, calls=1,
                           timeout=20, workdir=tmp_path, extra_args=["-p", str(port)])
    for _ in range(100):
        if netutil.udp_port_bound(port):
            return uas
        await asyncio.sleep(0.05)
    await uas.stop()
    raise AssertionError(f"sipp did not bind {port}")


async def test_decline_603_relayed(server: CcswitchServer, tmp_path: Path) -> None:
    uas = await sipp_uas_as(server, tmp_path, "1003", "uas_decline.xml")
    async with uas, phone(server, tmp_path, "1001") as a:
        assert await a.register()
        await a.dial("1003")
        ev = await a.wait_event("CALL_CLOSED", 5)
        assert ev.param.startswith("603"), ev.param
        res = await uas.wait(10)
        assert res.ok, res.summary()  # the server ACKed the 603
    (c,) = await finished_cdrs(server)
    assert (c["disposition"], c["hangup_cause"]) == ("FAILED", "CALL_REJECTED")


async def test_cancel_while_ringing(server: CcswitchServer, tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1002") as b:
        assert await b.register()
        res_f = asyncio.ensure_future(run_sipp(
            "uac_cancel.xml", server.domain, service="1002", caller="1001",
            auth_user="1001", auth_pass="secret1001", timeout=15, workdir=tmp_path))
        try:
            await b.wait_incoming(5)
            ev = await b.wait_closed(5)  # the callee stops ringing
        finally:
            res = await res_f
        assert "CALL_ESTABLISHED" not in [e.type for e in b.events]
        del ev
    assert res.ok, res.summary()  # uac_cancel.xml requires the 487 (a 200 fails it)
    (c,) = await finished_cdrs(server)
    assert (c["disposition"], c["hangup_cause"]) == ("CANCELLED", "ORIGINATOR_CANCEL")
    await no_channels(server)


async def test_no_answer_timeout(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", {"calls": {"no_answer_timeout": 2}}) as server:
        async with phone(server, tmp_path, "1001") as a, phone(server, tmp_path, "1002") as b:
            assert await a.register() and await b.register()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await a.dial("1002")
            await b.wait_incoming(5)
            ev = await a.wait_event("CALL_CLOSED", 8)
            took = loop.time() - t0
            assert ev.param.startswith("480"), ev.param
            assert 1.5 < took < 5.0, took
            await b.wait_closed(5)  # its ringing stopped (CANCEL)
        (c,) = await finished_cdrs(server)
        assert (c["disposition"], c["hangup_cause"]) == ("NO ANSWER", "NO_ANSWER")


# ---------------------------------------------------------------- forking
async def test_fork_to_two_contacts_first_answer_wins(server: CcswitchServer,
                                                      tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001", source=tone(tmp_path, A_TONE)) as a, \
            phone(server, tmp_path, "1002", name="b1", source=tone(tmp_path, B_TONE)) as b1, \
            phone(server, tmp_path, "1002", name="b2", source=tone(tmp_path, C_TONE)) as b2:
        assert await a.register() and await b1.register() and await b2.register()
        regs = await server.acli_json("registrations")
        assert [r["extension"] for r in regs].count("1002") == 2
        await a.dial("1002")
        await b1.wait_incoming(5)
        await b2.wait_incoming(5)
        await b2.answer()
        await a.wait_established(5)
        await b2.wait_established(5)
        ev = await b1.wait_closed(5)  # the losing branch was CANCELled
        assert "CALL_ESTABLISHED" not in [e.type for e in b1.events], ev
        chans = await server.acli_json("channels")
        assert len(chans) == 2 and all(c["state"] == "Up" for c in chans)
        await asyncio.sleep(2.0)
        await a.hangup()
        await a.wait_closed(5)
        await b2.wait_closed(5)
    assert hears(a, C_TONE) and not hears(a, B_TONE)
    assert hears(b2, A_TONE)
    (c,) = await finished_cdrs(server)
    assert c["disposition"] == "ANSWERED"


# ---------------------------------------------------------------- transcoding, TCP
async def _tones_both_ways(server: CcswitchServer, a: Baresip, b: Baresip,
                           callee: str, check: Callable[[list[dict[str, Any]]], None]
                           | None = None) -> None:
    await a.call(callee, timeout=10)
    await b.wait_established(5)
    if check is not None:
        check(await server.acli_json("channels"))
    await asyncio.sleep(2.0)
    await a.hangup()
    await a.wait_closed(5)
    await b.wait_closed(5)


async def test_transcoding_pcmu_to_pcma(server: CcswitchServer, tmp_path: Path) -> None:
    def codecs(chans: list[dict[str, Any]]) -> None:
        by_dir = {c["direction"]: c["codec"] for c in chans}
        assert by_dir == {"inbound": "PCMU", "outbound": "PCMA"}, chans

    async with phone(server, tmp_path, "1001", codecs=["PCMU"],
                     source=tone(tmp_path, A_TONE)) as a, \
            phone(server, tmp_path, "1002", codecs=["PCMA"], answermode="auto",
                  source=tone(tmp_path, B_TONE)) as b:
        assert await a.register() and await b.register()
        await _tones_both_ways(server, a, b, "1002", codecs)
    assert hears(a, B_TONE), "caller (PCMU) did not hear the callee (PCMA)"
    assert hears(b, A_TONE), "callee (PCMA) did not hear the caller (PCMU)"
    rate, st = audio.load_wav(server.recordings()[0])
    assert audio.tone_present(st[0], rate, A_TONE) and audio.tone_present(st[1], rate, B_TONE)


async def test_tcp_phone_calls_udp_phone_and_back(server: CcswitchServer,
                                                 tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001", transport="tcp",
                     source=tone(tmp_path, A_TONE), answermode="auto") as a, \
            phone(server, tmp_path, "1002", answermode="auto",
                  source=tone(tmp_path, B_TONE)) as b:
        assert await a.register() and await b.register()
        regs = {r["extension"]: r for r in await server.acli_json("registrations")}
        assert regs["1001"]["source"].startswith("tcp:")
        assert regs["1002"]["source"].startswith("udp:")
        await _tones_both_ways(server, a, b, "1002")
        assert hears(a, B_TONE) and hears(b, A_TONE)
        # and the other way: the server calls the TCP phone over its connection
        a.mark()
        await _tones_both_ways(server, b, a, "1001")
        assert hears(a, B_TONE) and hears(b, A_TONE)
    rows = await finished_cdrs(server, 2)
    assert [r["disposition"] for r in rows] == ["ANSWERED", "ANSWERED"]


# ---------------------------------------------------------------- CLI on a live call
async def test_cli_channels_hangup_and_cdr(server: CcswitchServer, tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001") as a, \
            phone(server, tmp_path, "1002", answermode="auto") as b:
        assert await a.register() and await b.register()
        await a.call("1002", timeout=10)
        await b.wait_established(5)
        r = await asyncio.to_thread(server.cli, "channels")
        lines = r.stdout.splitlines()
        header = next(ln for ln in lines if "Channel" in ln)
        for col in ("Channel", "State", "Caller", "Callee", "Codec", "Duration",
                    "Bridged with"):
            assert col in header, header
        rows = [ln for ln in lines if ln.strip().startswith("SIP/")]
        assert len(rows) == 2, r.stdout
        assert all(" Up " in ln for ln in rows)
        assert "2 active channels, 1 active call" in r.stdout
        chans = await server.acli_json("channels")
        inbound = next(c for c in chans if c["direction"] == "inbound")
        for key in (inbound["id"][:8], inbound["name"]):
            shown = await asyncio.to_thread(server.cli, "channel", "show", key)
            assert json.loads(shown.stdout)["id"] == inbound["id"]
        out = await asyncio.to_thread(server.cli, "hangup", inbound["name"])
        assert inbound["name"] in out.stdout
        ea = await a.wait_closed(5)  # both phones get a BYE
        eb = await b.wait_closed(5)
        del ea, eb
        missing = await asyncio.to_thread(server.cli, "hangup", "SIP/nope-00000000",
                                          check=False)
        assert missing.returncode == 4
    await no_channels(server)
    (c,) = await finished_cdrs(server)
    assert (c["disposition"], c["hangup_cause"]) == ("ANSWERED", "NORMAL_CLEARING")
    r = await asyncio.to_thread(server.cli, "cdr", "--last", "5")
    for col in ("Start", "Caller", "Callee", "Disposition", "Cause"):
        assert col in r.stdout
    row = next(ln for ln in r.stdout.splitlines() if "1001" in ln and "1002" in ln)
    assert "ANSWERED" in row
    assert "1 call record" in r.stdout


# ---------------------------------------------------------------- IPv6
async def test_ipv6_phones_call_each_other(tmp_path: Path) -> None:
    """Both phones on [::1]: REGISTER, INVITE and RTP over IPv6 (media bound to ::1)."""
    with running_server(tmp_path / "srv", ipv6=True) as server:
        dom = f"[::1]:{server.port}"

        def v6phone(ext: str, **kw: Any) -> Baresip:
            return Baresip(user=ext, password=f"secret{ext}", domain=dom, register=True,
                           tmp_dir=tmp_path, name=f"v6-{ext}", ipv6=True, **kw)

        async with v6phone("1001", source=tone(tmp_path, A_TONE)) as a, \
                v6phone("1002", answermode="auto", source=tone(tmp_path, B_TONE)) as b:
            assert await a.register() and await b.register()
            regs = await server.acli_json("registrations")
            assert sorted(r["extension"] for r in regs) == ["1001", "1002"]
            assert all(r["source"].startswith("udp:::1:") for r in regs), regs

            def v6media(chans: list[dict[str, Any]]) -> None:
                assert len(chans) == 2
                assert all(c["media"]["remote"].startswith("::1") for c in chans), chans

            await _tones_both_ways(server, a, b, "1002", v6media)
        assert hears(a, B_TONE) and hears(b, A_TONE)
        (c,) = await finished_cdrs(server)
        assert c["disposition"] == "ANSWERED"


# ---------------------------------------------------------------- symmetric RTP (NAT)
def _ulaw_encode(x: np.ndarray) -> bytes:
    """G.711 mu-law from the textbook (not the product's codec)."""
    s = np.clip(np.round(x * 32767), -32768, 32767).astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    mag = np.minimum(np.abs(s), 32635) + 0x84
    exp = np.clip(np.floor(np.log2(np.maximum(mag >> 7, 1))).astype(np.int32), 0, 7)
    mant = (mag >> (exp + 3)) & 0x0F
    return bytes((~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8))


def _ulaw_decode(b: bytes) -> np.ndarray:
    u = ~np.frombuffer(b, dtype=np.uint8).astype(np.int32) & 0xFF
    exp = (u >> 4) & 7
    mag = (((u & 0x0F) << 3) + 0x84 << exp) - 0x84
    return np.where(u & 0x80, -mag, mag).astype(np.float64) / 32768.0


async def test_symmetric_rtp_latches_to_real_source(server: CcswitchServer,
                                                    tmp_path: Path) -> None:
    """A caller behind NAT: its SDP names one port, its RTP comes from another.  The
    server must send media back to where the RTP really comes from."""
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the port the SDP names
    real.bind(("127.0.0.1", 0))
    decoy.bind(("127.0.0.1", 0))
    real.setblocking(False)
    decoy.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        async with phone(server, tmp_path, "1002", answermode="auto",
                         source=tone(tmp_path, B_TONE)) as b, \
                RawSip("127.0.0.1", server.port) as s:
            assert await b.register()
            sdp = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   f"m=audio {decoy.getsockname()[1]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
                   "a=sendrecv\r\n").encode()
            call = await place_call(s, "1002", "1001", "secret1001", sdp)
            body = call.answer.body.decode()
            host = re.search(r"c=IN IP4 (\S+)", body)
            port = re.search(r"m=audio (\d+)", body)
            assert host and port, body
            dst = (host.group(1), int(port.group(1)))
            await b.wait_established(5)

            pcm = _ulaw_encode(audio.tone(A_TONE, 3.0, 8000, 0.5))
            got: list[bytes] = []

            async def receive() -> None:
                while True:
                    data = await loop.sock_recv(real, 2048)
                    if len(data) > 12 and data[1] & 0x7F == 0:
                        got.append(data[12:])

            rx = asyncio.ensure_future(receive())
            t0 = loop.time()
            for i in range(150):  # 3 s of 20 ms packets from the "real" port
                hdr = struct.pack("!BBHII", 0x80, 0x80 if i == 0 else 0, i, i * 160, 0x1234)
                await loop.sock_sendto(real, hdr + pcm[i * 160:(i + 1) * 160], dst)
                await asyncio.sleep(max(0.0, t0 + (i + 1) * 0.02 - loop.time()))
            rx.cancel()
            r = await hang_up(s, call)
            assert r is not None and r.status == 200
            await b.wait_closed(5)
        assert len(got) > 75, f"only {len(got)} RTP packets came back to the real source"
        x = _ulaw_decode(b"".join(got))
        assert audio.tone_present(x, 8000, B_TONE), "the callee's audio did not come back"
        assert hears(b, A_TONE), "the callee did not hear the NATed caller"
    finally:
        real.close()
        decoy.close()
