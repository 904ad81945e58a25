"""Call control with real peers (issue 5): hold, transfers, conferences, park, pickup.

Every phone plays its own tone (TONES); what a phone hears is checked by frequency.
Music on hold is recognised by cross-correlating what was heard with
prompts/moh/default/music.wav (a plucked-chord loop), not just "some audio".
baresip stops writing its received-audio file after any re-INVITE it sends or
receives, so audio after a hold is read from a pcap of the phone's RTP ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from ccswitch.storage.queue_log import agent_stats_sync
from tests.e2e.server import DEMO_EXTENSIONS, ROOT, CcswitchServer, running_server
from tests.peers import audio
from tests.peers.baresip import Baresip, CallFailed
from tests.peers.pcap import Capture, decode_g711, packets, udp_of

Audio = npt.NDArray[np.float64]

TONES = {"1001": 600.0, "1002": 900.0, "1003": 1300.0, "1004": 1700.0, "1005": 2100.0}
MUSIC = ROOT / "prompts" / "moh" / "default" / "music.wav"
EXTENSIONS = [dict(e) for e in DEMO_EXTENSIONS] + [
    {"number": "1004", "password": "secret1004", "name": "Dave"},
    {"number": "1005", "password": "secret1005", "name": "Erin"}]


# ---------------------------------------------------------------- server and phones
def _overrides(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "extensions": EXTENSIONS,
        "prompts": {"directory": str(ROOT / "prompts")},  # the shipped music on hold
        "conferences": [{"number": "800", "name": "test"},
                        {"number": "801", "name": "pin", "pin": "4321"}],
        "parking": {"slots": "701-709", "timeout": 60},
    }
    cfg.update(extra)
    return cfg


@pytest.fixture
def ccs(tmp_path: Path) -> Iterator[CcswitchServer]:
    with running_server(tmp_path / "server", _overrides()) as srv:
        yield srv


def phone(server: CcswitchServer, tmp_path: Path, ext: str, **kw: Any) -> Baresip:
    src = audio.write_tone_wav(tmp_path / f"{ext}.wav", TONES[ext], 90)
    return Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                   tmp_dir=tmp_path, name=f"ua{ext}", source=src, **kw)


@contextlib.asynccontextmanager
async def phones(server: CcswitchServer, tmp_path: Path, *exts: str,
                 **kw: dict[str, Any]) -> AsyncIterator[list[Baresip]]:
    """Registered baresips for `exts`; kw maps an extension to its Baresip options."""
    async with contextlib.AsyncExitStack() as stack:
        uas = [await stack.enter_async_context(phone(server, tmp_path, e, **kw.get(e, {})))
               for e in exts]
        for ua in uas:
            assert await ua.register(), f"{ua.user} did not register"
        yield uas


async def channels(server: CcswitchServer) -> list[dict[str, Any]]:
    return list(await server.acli_json("channels"))


def _ext(ch: dict[str, Any]) -> str:
    return str(ch["name"]).split("/", 1)[1].rsplit("-", 1)[0]


async def wait_bridged(server: CcswitchServer, a: str, b: str, timeout: float = 10.0) -> None:
    """Wait until a channel of extension `a` is bridged with one of extension `b`."""
    def check() -> bool:
        chans = server.cli_json("channels")
        names = {c["name"]: _ext(c) for c in chans}
        return any(_ext(c) == a and names.get(c["bridged_with"] or "") == b for c in chans)
    await server.wait_for(check, timeout=timeout)


# ---------------------------------------------------------------- audio checks
_music_cache: list[Audio] = []


def _music() -> Audio:
    if not _music_cache:
        rate, x = audio.load_mono(MUSIC)
        assert rate == 8000
        _music_cache.append(x)
    return _music_cache[0]


def moh_similarity(x: Audio, rate: int = 8000, win_s: float = 0.5) -> float:
    """Best normalised cross-correlation of any `win_s` window of `x` with the looped
    music-on-hold file: ~1 for the music itself (through G.711), ~0 for tones/silence."""
    m = _music()
    n = int(win_s * rate)
    best = 0.0
    for start in range(0, max(0, len(x) - n) + 1, n // 2):
        seg = x[start:start + n]
        ex = float(np.dot(seg, seg))
        if len(seg) < n or ex < n * 1e-6:  # silence: nothing to compare
            continue
        mm = np.concatenate([m, m[:n]])
        size = 1 << int(np.ceil(np.log2(len(mm) + n)))
        corr = np.fft.irfft(np.fft.rfft(mm, size) * np.conj(np.fft.rfft(seg, size)), size)
        corr = corr[:len(m)]
        c2 = np.concatenate([[0.0], np.cumsum(mm * mm)])
        em = c2[n:n + len(m)] - c2[:len(m)]
        em = np.maximum(em, ex * 0.05)  # quiet stretches of the music must not win
        best = max(best, float(np.max(np.abs(corr) / np.sqrt(ex * em))))
    return best


def hears_music(x: Audio, rate: int = 8000) -> bool:
    return audio.rms_dbfs(x) > -55 and moh_similarity(x, rate) > 0.6


def hears(x: Audio, freq: float, rate: int = 8000, min_ratio: float = 0.3) -> bool:
    return len(x) >= rate // 2 and audio.tone_present(x, rate, freq, min_ratio=min_ratio)


def describe(x: Audio, rate: int = 8000) -> str:
    tones = {e: round(audio.tone_ratio(x, rate, f), 2) for e, f in TONES.items()}
    return (f"{len(x) / rate:.1f}s {audio.rms_dbfs(x):.0f} dBFS tones={tones} "
            f"music={moh_similarity(x, rate):.2f}")


class RxLog:
    """G.711 audio a phone received, read from a pcap of its RTP port range, with the
    capture (wall) time of every packet: slices by time, whatever re-INVITEs happened."""

    def __init__(self, path: Path, ports: tuple[int, int]) -> None:
        self.frames: list[tuple[float, int, bytes]] = []  # (time, pt, payload)
        lo, hi = ports
        for ts, lt, frame in packets(path):
            u = udp_of(lt, frame)
            if u is None:
                continue
            _src, _sp, _dst, dp, pl = u
            if not lo <= dp <= hi or len(pl) < 12 or pl[0] >> 6 != 2:
                continue
            pt = pl[1] & 0x7F
            if pt not in (0, 8):
                continue
            hlen = 12 + 4 * (pl[0] & 0x0F)
            if pl[0] & 0x10 and len(pl) >= hlen + 4:
                hlen += 4 + 4 * struct.unpack("!H", pl[hlen + 2:hlen + 4])[0]
            self.frames.append((ts, pt, pl[hlen:]))

    def between(self, t0: float, t1: float) -> Audio:
        parts = [decode_g711(p, "ulaw" if pt == 0 else "alaw")
                 for ts, pt, p in self.frames if t0 <= ts < t1]
        return np.concatenate(parts) if parts else np.zeros(0)

    def packets_between(self, t0: float, t1: float) -> int:
        return sum(1 for ts, _pt, _p in self.frames if t0 <= ts < t1)


@contextlib.asynccontextmanager
async def capture(tmp_path: Path, name: str, *uas: Baresip,
                  ports: tuple[int, ...] = ()) -> AsyncIterator[Path]:
    path = tmp_path / f"{name}.pcap"
    async with Capture(path, port_ranges=[ua.rtp_range for ua in uas], ports=ports,
                       max_seconds=90):
        yield path


def rx_wav(ua: Baresip) -> Audio:
    wav = ua.received_wav()
    assert wav is not None, f"{ua.user} recorded nothing"
    rate, x = audio.load_mono(wav)
    assert rate == 8000
    return x


# ================================================================ 1. hold and resume
async def test_hold_resume_baresip_music_then_two_way_audio(ccs: CcswitchServer,
                                                             tmp_path: Path) -> None:
    """B (callee) holds with a re-INVITE a=sendonly: A hears the music on hold and no
    longer B's tone; B resumes: tones pass both ways again."""
    async with phones(ccs, tmp_path, "1001", "1002", **{"1002": {"answermode": "auto"}}) \
            as (a, b):
        async with capture(tmp_path, "hold", a, b, ports=(ccs.port,)) as pcap:
            await a.call("1002")
            await b.wait_established(5)
            await asyncio.sleep(2.0)
            await b.hold()
            await asyncio.sleep(3.0)
            await b.resume()
            await asyncio.sleep(2.5)
            t_end = time.time()
            await a.hangup()
            await b.wait_closed(5)
        rx_a = RxLog(pcap, a.rtp_range)
        rx_b = RxLog(pcap, b.rtp_range)
    # when ccswitch answered B's re-INVITEs: hold (a=recvonly), then resume (a=sendrecv)
    t_hold = sip_times(pcap, r"\ASIP/2\.0 200 (?=.*^CSeq: \d+ INVITE)(?=.*^a=recvonly)")[0]
    t_resume = next(t for t in sip_times(
        pcap, r"\ASIP/2\.0 200 (?=.*^CSeq: \d+ INVITE)(?=.*^a=sendrecv)") if t > t_hold)
    before = rx_a.between(t_hold - 1.5, t_hold)
    held = rx_a.between(t_hold + 0.1, t_resume)
    after = rx_a.between(t_resume + 0.3, t_end)
    assert hears(before, TONES["1002"]), f"A before hold: {describe(before)}"
    assert hears_music(held), f"A on hold: {describe(held)}"
    assert audio.tone_ratio(held, 8000, TONES["1002"]) < 0.05, f"held: {describe(held)}"
    assert hears(after, TONES["1002"]), f"A after resume: {describe(after)}"
    assert not hears_music(after), f"music after resume: {describe(after)}"
    # B heard A before the hold and after resume (B's own file stops at its re-INVITE)
    b_after = rx_b.between(t_resume + 0.3, t_end)
    assert hears(rx_b.between(t_hold - 1.5, t_hold), TONES["1001"])
    assert hears(b_after, TONES["1001"]), f"B after resume: {describe(b_after)}"


def sip_times(pcap: Path, pattern: str) -> list[float]:
    """Capture times of the SIP messages (UDP) whose text matches `pattern`."""
    rx = re.compile(pattern, re.S | re.M)
    out = []
    for ts, lt, frame in packets(pcap):
        u = udp_of(lt, frame)
        if u is None:
            continue
        text = u[4].decode("utf-8", "replace")
        if text.startswith(("SIP/2.0", "INVITE", "UPDATE", "ACK", "BYE", "REFER", "NOTIFY")) \
                and rx.search(text):
            out.append(ts)
    return out


HOLD_FORMS = {  # callee -> (method, a= direction, c= address, the direction we must answer)
    "1001": ("INVITE", "sendonly", "127.0.0.1", "recvonly"),
    "1003": ("INVITE", "inactive", "127.0.0.1", "inactive"),
    "1004": ("INVITE", "sendrecv", "0.0.0.0", "recvonly"),  # RFC 2543 hold
    "1005": ("UPDATE", "sendonly", "127.0.0.1", "recvonly"),
}


async def test_hold_forms_from_sipp_caller(ccs: CcswitchServer, tmp_path: Path) -> None:
    """Four callers (SIPp as 1002, echoing RTP) hold at once, each with another SDP form:
    re-INVITE a=sendonly, a=inactive, c=0.0.0.0, and UPDATE a=sendonly.  Each callee
    (baresip) hears music instead of its own echo, ccswitch sends nothing to the holder and
    answers with the mirrored direction; after resume each callee hears itself again."""
    from tests.peers.sipp import start_sipp

    exts = list(HOLD_FORMS)
    async with phones(ccs, tmp_path, *exts, **{e: {"answermode": "auto"} for e in exts}) \
            as uas:
        pcap = tmp_path / "hold.pcap"
        async with Capture(pcap, ports=[ccs.port], port_ranges=[(30000, 31999)],
                           max_seconds=60):
            procs = [await start_sipp(
                "uac_hold.xml", ccs.domain, service=e, caller="1002", auth_user="1002",
                auth_pass="secret1002", rtp_echo=True, duration_ms=2200, trace_msg=True,
                timeout=30, workdir=tmp_path / f"sipp{e}",
                keys={"holdmethod": m, "holddir": d, "holdaddr": addr})
                for e, (m, d, addr, _ans) in HOLD_FORMS.items()]
            results = await asyncio.gather(*(sp.wait(30) for sp in procs))
            for ua in uas:
                await ua.wait_closed(5)
    failures = []
    for ua, sp, res in zip(uas, procs, results, strict=True):
        method, _d, _a, answer = HOLD_FORMS[ua.user]
        form = f"{ua.user} {HOLD_FORMS[ua.user][:3]}"
        if not res.ok:
            failures.append(f"{form}: {res.summary()}")
            continue
        cid = re.escape((sp.workdir / "messages.log").read_text(errors="replace")
                        .split("Call-ID:", 1)[1].split()[0])
        # from ccswitch's 200 to the hold (CSeq 10) and to the resume (CSeq 11): the
        # moments it applied them, whatever the load on the machine
        times = [sip_times(pcap, rf"\ASIP/2\.0 200 (?=.*^Call-ID: {cid})(?=.*^CSeq: {n} )")
                 for n in (10, 11)] + [sip_times(pcap, rf"\ABYE (?=.*^Call-ID: {cid})")]
        if not all(times):
            failures.append(f"{form}: hold/resume/BYE not all captured: {times}")
            continue
        th, tr, tb = (t[0] for t in times)
        rx = RxLog(pcap, ua.rtp_range)
        before, held, after = (rx.between(th - 1.5, th), rx.between(th + 0.1, tr),
                               rx.between(tr + 0.3, tb))
        tone = TONES[ua.user]
        if not hears(before, tone):
            failures.append(f"{form}: before hold {describe(before)}")
        if not hears_music(held) or audio.tone_ratio(held, 8000, tone) > 0.05:
            failures.append(f"{form}: on hold {describe(held)}")
        if not hears(after, tone):
            failures.append(f"{form}: after resume {describe(after)}")
        # nothing was sent to the holding party while it held
        to_sipp = RxLog(pcap, (sp.media_port, sp.media_port))
        if to_sipp.packets_between(th + 0.1, tr) or to_sipp.packets_between(tr + 0.3, tb) < 20:
            failures.append(f"{form}: RTP to the holder {to_sipp.packets_between(th + 0.1, tr)}"
                            f" while held, {to_sipp.packets_between(tr + 0.3, tb)} after")
        # the SDP answers mirror the hold, then sendrecv again
        answers = [m.group(1) for m in map(_DIRECTION.search, sipp_received(
            sp.workdir, rf"^SIP/2\.0 200 .*^CSeq: *1[01] {method}")) if m]
        if answers != [answer, "sendrecv"]:
            failures.append(f"{form}: SDP answers {answers}")
    assert not failures, "\n".join(failures)


_DIRECTION = re.compile(r"^a=(sendrecv|sendonly|recvonly|inactive)", re.M)


def sipp_received(workdir: Path, pattern: str) -> list[str]:
    """The SIP messages a sipp received (its -trace_msg log) matching `pattern`."""
    text = (workdir / "messages.log").read_text(errors="replace")
    rx = re.compile(pattern, re.S | re.M)
    out = []
    for chunk in re.split(r"(?:^|\n)-{20,}[^\n]*\n", text):
        head, _, msg = chunk.partition("\n\n")
        if "message received" in head and rx.search(msg.replace("\r\n", "\n")):
            out.append(msg.replace("\r\n", "\n"))
    return out


# ================================================================ 2. blind transfer
async def test_blind_transfer_refer_to_unavailable_target(ccs: CcswitchServer,
                                                          tmp_path: Path) -> None:
    """B REFERs A to 1004 (configured, not registered): B gets NOTIFY 100 then a NOTIFY
    whose sipfrag is the failure (subscription terminated).  baresip 1.0.0 reports
    TRANSFER_FAILED and then hangs up, so A's call ends with B's and nothing is left
    behind (the way back to a transferor that stays is tested with the ## code)."""
    async with phones(ccs, tmp_path, "1001", "1002", **{"1002": {"answermode": "auto"}}) \
            as (a, b), capture(tmp_path, "blindfail", a, b, ports=(ccs.port,)) as pcap:
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.transfer("1004")
        failed = await b.wait_event("TRANSFER_FAILED", 10)
        await a.wait_closed(5)
    assert failed.param.startswith("480"), failed
    notify = _sip_texts(pcap, r"^NOTIFY ")
    frags = [n.split("\r\n\r\n", 1)[1].split("\r\n", 1)[0] for n in notify]
    assert frags[0].startswith("SIP/2.0 100"), frags
    assert re.match(r"SIP/2\.0 480 ", frags[-1]), frags
    assert "Subscription-State: terminated" in notify[-1]
    assert "Subscription-State: active" in notify[0]
    await ccs.wait_for(lambda: not ccs.cli_json("channels"), 5)


async def test_blind_transfer_code_to_unavailable_target_returns_to_transferor(
        ccs: CcswitchServer, tmp_path: Path) -> None:
    """B presses ## 1004 # (1004 unreachable): A is connected back to B, tones both ways."""
    async with phones(ccs, tmp_path, "1001", "1002", **{"1002": {"answermode": "auto"}}) \
            as (a, b):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.send_dtmf("##1004#")
        await ccs.wait_for(lambda: _transfer_attempted(ccs), timeout=10)
        await wait_bridged(ccs, "1001", "1002", timeout=10)
        await asyncio.sleep(2.5)
        chans = await channels(ccs)
        await a.hangup()
        await b.wait_closed(5)
        rx_a, rx_b = rx_wav(a), rx_wav(b)
    assert sorted(_ext(c) for c in chans) == ["1001", "1002"], chans
    assert hears(rx_a[-12000:], TONES["1002"]), f"A: {describe(rx_a[-12000:])}"
    assert hears(rx_b[-12000:], TONES["1001"]), f"B: {describe(rx_b[-12000:])}"


def _transfer_attempted(server: CcswitchServer) -> bool:
    return "transfers SIP/1001" in server.log(20000)


def _sip_texts(pcap: Path, pattern: str) -> list[str]:
    rx = re.compile(pattern, re.S | re.M)
    out = []
    for _ts, lt, frame in packets(pcap):
        u = udp_of(lt, frame)
        if u is not None:
            text = u[4].decode("utf-8", "replace")
            if rx.search(text.split("\r\n", 1)[0]) or rx.match(text):
                out.append(text)
    return out


async def test_blind_transfer_by_feature_code(ccs: CcswitchServer, tmp_path: Path) -> None:
    """B presses ## 1003 # (no REFER): A waits with music, then talks to C; B is hung up."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003",
                      **{"1002": {"answermode": "auto"}, "1003": {"answermode": "auto"}}) \
            as (a, b, c):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.send_dtmf("##1003#")
        await b.wait_closed(10)
        await c.wait_established(10)
        await wait_bridged(ccs, "1001", "1003")
        await asyncio.sleep(2.5)
        chans = await channels(ccs)
        await a.hangup()
        await c.wait_closed(5)
        rx_a, rx_c = rx_wav(a), rx_wav(c)
    assert sorted(_ext(ch) for ch in chans) == ["1001", "1003"], chans
    assert hears(rx_c[-16000:], TONES["1001"]), f"C: {describe(rx_c[-16000:])}"
    assert hears(rx_a[-16000:], TONES["1003"]), f"A: {describe(rx_a[-16000:])}"
    assert hears_music(rx_a), "A did not hear music while B dialled"


# ================================================================ 3. attended transfer
async def _register_sipp(server: CcswitchServer, tmp_path: Path, user: str) -> int:
    """REGISTER `user` with a contact on a port a sipp UAS will then listen on."""
    from tests.peers import netutil
    from tests.peers.sipp import run_sipp, write_users_csv

    port = netutil.free_sip_port()
    csv = write_users_csv(tmp_path / f"users-{user}.csv", [(user, f"secret{user}")])
    res = await run_sipp("register_auth.xml", server.domain, service=None, caller=None,
                         csv=csv, local_port=port, timeout=10, workdir=tmp_path / "sipp")
    assert res.ok, res.summary()
    return port


async def test_attended_transfer_refer_with_replaces(ccs: CcswitchServer,
                                                     tmp_path: Path) -> None:
    """A calls B (SIPp); B holds A (A hears music), calls C on a second call, then REFERs
    call 1 with Refer-To: <sip:1003@...?Replaces=call 2>: ccswitch joins A and C, sends
    B NOTIFY 100 then 200 and ends both of B's legs; A and C exchange tones."""
    from tests.peers import netutil
    from tests.peers.sipp import start_sipp

    b_port = await _register_sipp(ccs, tmp_path, "1002")
    twin = f"127.0.0.1:{netutil.free_tcp_port()}"
    async with phones(ccs, tmp_path, "1001", "1003", **{"1003": {"answermode": "auto"}}) \
            as (a, c):
        b2 = await start_sipp("xfer_attended_b2.xml", ccs.domain, service="1003",
                              caller="1002", auth_user="1002", auth_pass="secret1002",
                              extra_args=["-3pcc", twin], trace_msg=True, timeout=30,
                              workdir=tmp_path / "sipp")
        async with b2:
            await ccs.wait_for(lambda: netutil.tcp_port_listening(int(twin.split(":")[1])), 5)
            b1 = await start_sipp("xfer_attended_b1.xml", None, service=None, caller=None,
                                  keys={"user": "1002", "target": "1003",
                                        "server": ccs.domain},
                                  extra_args=["-3pcc", twin], local_port=b_port,
                                  trace_msg=True, timeout=30, workdir=tmp_path / "sipp")
            async with b1:
                await a.call("1002")
                await c.wait_established(15)
                r1, r2 = await asyncio.gather(b1.wait(20), b2.wait(20))
        assert r1.ok, r1.summary() + r1.errors_tail
        assert r2.ok, r2.summary() + r2.errors_tail
        await wait_bridged(ccs, "1001", "1003")
        await asyncio.sleep(2.5)
        chans = await channels(ccs)
        await a.hangup()
        await c.wait_closed(5)
        rx_a, rx_c = rx_wav(a), rx_wav(c)
    assert sorted(_ext(ch) for ch in chans) == ["1001", "1003"], chans
    notifies = sipp_received(r1.workdir, r"^NOTIFY ")
    frags = [n.split("\n\n", 1)[1].strip() for n in notifies]
    assert frags and frags[0].startswith("SIP/2.0 100"), frags
    assert frags[-1].startswith("SIP/2.0 200"), frags
    assert hears_music(rx_a), "A did not hear music while B consulted C"
    assert hears(rx_a[-16000:], TONES["1003"]), f"A: {describe(rx_a[-16000:])}"
    assert hears(rx_c[-16000:], TONES["1001"]), f"C: {describe(rx_c[-16000:])}"


async def _consult(ccs: CcswitchServer, b: Baresip, c: Baresip) -> None:
    """B presses *2 1003 #: A waits with music, C (auto answer) talks with B."""
    await b.send_dtmf("*21003#")
    await c.wait_established(10)
    await wait_bridged(ccs, "1002", "1003")


async def test_attended_transfer_code_completed_by_hanging_up(ccs: CcswitchServer,
                                                              tmp_path: Path) -> None:
    """*2 + number: B consults C while A hears music; B hangs up: A and C are connected."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003",
                      **{"1002": {"answermode": "auto"}, "1003": {"answermode": "auto"}}) \
            as (a, b, c):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await _consult(ccs, b, c)
        await asyncio.sleep(1.5)
        rx_c_consult = rx_wav(c)
        await b.hangup()
        await b.wait_closed(5)
        await wait_bridged(ccs, "1001", "1003")
        await asyncio.sleep(2.5)
        chans = await channels(ccs)
        await a.hangup()
        await c.wait_closed(5)
        rx_a, rx_c = rx_wav(a), rx_wav(c)
    assert sorted(_ext(ch) for ch in chans) == ["1001", "1003"], chans
    assert hears(rx_c_consult[-8000:], TONES["1002"]), "C did not talk with B first"
    assert hears_music(rx_a), "A did not hear music during the consultation"
    assert hears(rx_a[-16000:], TONES["1003"]), f"A: {describe(rx_a[-16000:])}"
    assert hears(rx_c[-16000:], TONES["1001"]), f"C: {describe(rx_c[-16000:])}"
    # joined once (a second join would tear down and rebuild the A-C bridge)
    assert ccs.log(200000).count("attended transfer: ") == 1


async def test_attended_transfer_code_cancelled(ccs: CcswitchServer, tmp_path: Path) -> None:
    """*2 + number, then *1: C is hung up and B is back with A (tones both ways)."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003",
                      **{"1002": {"answermode": "auto"}, "1003": {"answermode": "auto"}}) \
            as (a, b, c):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await _consult(ccs, b, c)
        await asyncio.sleep(1.0)
        await b.send_dtmf("*1")
        await c.wait_closed(5)
        await wait_bridged(ccs, "1001", "1002")
        await asyncio.sleep(2.5)
        chans = await channels(ccs)
        await a.hangup()
        await b.wait_closed(5)
        rx_a, rx_b = rx_wav(a), rx_wav(b)
    assert sorted(_ext(ch) for ch in chans) == ["1001", "1002"], chans
    assert hears(rx_a[-16000:], TONES["1002"]), f"A: {describe(rx_a[-16000:])}"
    assert hears(rx_b[-16000:], TONES["1001"]), f"B: {describe(rx_b[-16000:])}"


async def test_attended_transfer_code_target_hangs_up(ccs: CcswitchServer,
                                                      tmp_path: Path) -> None:
    """The consulted party hangs up: B is back with A (the transfer did not happen)."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003",
                      **{"1002": {"answermode": "auto"}, "1003": {"answermode": "auto"}}) \
            as (a, b, c):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await _consult(ccs, b, c)
        await asyncio.sleep(1.0)
        await c.hangup()
        await c.wait_closed(5)
        await wait_bridged(ccs, "1001", "1002")
        await asyncio.sleep(2.5)
        chans = await channels(ccs)
        await a.hangup()
        await b.wait_closed(5)
        rx_a, rx_b = rx_wav(a), rx_wav(b)
    assert sorted(_ext(ch) for ch in chans) == ["1001", "1002"], chans
    assert hears(rx_a[-16000:], TONES["1002"]), f"A: {describe(rx_a[-16000:])}"
    assert hears(rx_b[-16000:], TONES["1001"]), f"B: {describe(rx_b[-16000:])}"


# ================================================================ 4. conferences
async def _members(ccs: CcswitchServer, room: str) -> dict[str, dict[str, Any]]:
    """Members of a room by extension ({} when the room does not exist)."""
    r = await asyncio.to_thread(ccs.cli, "conference", "show", room, "--json", check=False)
    if r.returncode != 0:
        return {}
    return {_ext(m): m for m in __import__("json").loads(r.stdout)["members"]}


async def _wait_members(ccs: CcswitchServer, room: str, exts: set[str],
                        timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        m = await _members(ccs, room)
        if set(m) == exts:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"room {room}: members {sorted(m)}, expected {sorted(exts)}")
        await asyncio.sleep(0.2)


def _heard(x: Audio, secs: float = 1.5) -> dict[str, float]:
    tail = x[-int(secs * 8000):]
    return {e: audio.tone_ratio(tail, 8000, f) for e, f in TONES.items()}


async def test_conference_mute_and_kick_by_cli(ccs: CcswitchServer, tmp_path: Path) -> None:
    """`ccswitch conference mute 800 <channel>`: the others stop hearing A while A still
    hears them; `kick`: that member's call ends and the room goes on without it."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003") as (a, b, c):
        for p in (a, b, c):
            await p.call("800")
        members = await _wait_members(ccs, "800", {"1001", "1002", "1003"})
        await asyncio.sleep(2.0)
        before = {p.user: _heard(rx_wav(p)) for p in (b, c)}
        # members are named by channel id (a channel name holds a '/', see the report)
        r = await asyncio.to_thread(ccs.cli, "conference", "mute", "800",
                                    members["1001"]["channel"])
        assert "mute" in r.stdout
        shown = await _members(ccs, "800")
        assert shown["1001"]["muted"] and not shown["1002"]["muted"]
        await asyncio.sleep(2.0)
        muted = {p.user: _heard(rx_wav(p)) for p in (a, b, c)}
        await asyncio.to_thread(ccs.cli, "conference", "kick", "800",
                                members["1003"]["channel"])
        await c.wait_closed(5)
        left = await _wait_members(ccs, "800", {"1001", "1002"})
        await asyncio.sleep(1.5)
        after_kick = _heard(rx_wav(a))
        for p in (a, b):
            await p.hangup()
    for ext in ("1002", "1003"):
        assert before[ext]["1001"] > 0.1, f"{ext} did not hear A before the mute: {before}"
        assert muted[ext]["1001"] < 0.02, f"{ext} still hears muted A: {muted[ext]}"
    assert muted["1002"]["1003"] > 0.1 and muted["1003"]["1002"] > 0.1, muted
    assert muted["1001"]["1002"] > 0.1 and muted["1001"]["1003"] > 0.1, "muted A is deaf"
    assert "1003" not in left
    assert after_kick["1002"] > 0.2 and after_kick["1003"] < 0.02, after_kick


async def test_conference_pin(ccs: CcswitchServer, tmp_path: Path) -> None:
    """Room 801 asks for PIN 4321: a wrong PIN is refused three times and hung up; the
    right one (after one wrong try) joins, and the members hear each other."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003") as (a, b, c):
        await a.call("801")
        await a.send_dtmf("1111#")
        await asyncio.sleep(0.5)
        assert not await _members(ccs, "801"), "a wrong PIN was let in"
        await a.send_dtmf("4321#")
        await _wait_members(ccs, "801", {"1001"})
        await b.call("801")
        await b.send_dtmf("4321#")
        await _wait_members(ccs, "801", {"1001", "1002"})
        await c.call("801")
        await c.send_dtmf("1#2#3#")
        closed = await c.wait_closed(20)
        await asyncio.sleep(1.5)
        assert set(await _members(ccs, "801")) == {"1001", "1002"}
        heard_a, heard_b = _heard(rx_wav(a)), _heard(rx_wav(b))
        for p in (a, b):
            await p.hangup()
    assert heard_a["1002"] > 0.2 and heard_b["1001"] > 0.2, (heard_a, heard_b)
    assert heard_a["1001"] < 0.02 and heard_b["1002"] < 0.02, "members hear themselves"
    assert closed.type == "CALL_CLOSED"


async def test_three_way_call_by_feature_code(ccs: CcswitchServer, tmp_path: Path) -> None:
    """A talks to B; B presses *3 1003 #: C is called and all three are in an ad-hoc
    conference, each hearing the other two and not themselves."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003",
                      **{"1002": {"answermode": "auto"}, "1003": {"answermode": "auto"}}) \
            as (a, b, c):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.send_dtmf("*31003#")
        await c.wait_established(10)

        def three() -> bool:
            return any(len(r["members"]) == 3 for r in ccs.cli_json("conference", "list"))
        await ccs.wait_for(three, timeout=10)
        await asyncio.sleep(2.0)
        heard = {p.user: _heard(rx_wav(p)) for p in (a, b, c)}
        await b.hangup()
        await b.wait_closed(5)
        await asyncio.sleep(1.5)
        after = {p.user: _heard(rx_wav(p), 1.0) for p in (a, c)}
        await a.hangup()
        await c.wait_closed(5)
    for me, h in heard.items():
        for other in ("1001", "1002", "1003"):
            if other == me:
                assert h[other] < 0.02, f"{me} hears itself: {h}"
            else:
                assert h[other] > 0.1, f"{me} does not hear {other}: {h}"
    # B left: A and C go on talking
    assert after["1001"]["1003"] > 0.2 and after["1003"]["1001"] > 0.2, after


# ================================================================ 5. park and pickup
def _parked(ccs: CcswitchServer) -> dict[str, str]:
    """Parked calls: slot -> extension of the parked channel."""
    return {c["app_data"]: _ext(c) for c in ccs.cli_json("channels") if c["app"] == "Parked"}


async def test_park_by_feature_code_and_retrieve(ccs: CcswitchServer, tmp_path: Path) -> None:
    """B presses #72: A is parked in the first free slot (701) with music and B's call
    ends; C dials 701 and talks to A."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003", **{"1002": {"answermode": "auto"}}) \
            as (a, b, c):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.send_dtmf("#72")
        await b.wait_closed(15)  # after being told the slot
        parked = await ccs.wait_for(lambda: _parked(ccs), timeout=5)
        await asyncio.sleep(2.0)
        rx_parked = rx_wav(a)
        await c.call("701")
        await wait_bridged(ccs, "1003", "1001")
        assert not _parked(ccs)
        await asyncio.sleep(2.0)
        rx_a, rx_c = rx_wav(a), rx_wav(c)
        await c.hangup()
        await a.wait_closed(5)
    assert parked == {"701": "1001"}, parked
    assert hears_music(rx_parked[-12000:]), f"parked A: {describe(rx_parked[-12000:])}"
    assert hears(rx_a[-12000:], TONES["1003"]), f"A: {describe(rx_a[-12000:])}"
    assert hears(rx_c[-12000:], TONES["1001"]), f"C: {describe(rx_c[-12000:])}"


async def test_park_by_transfer_times_out_and_rings_the_parker(tmp_path: Path) -> None:
    """B blind-transfers A to slot 705 (REFER): A waits with music; nobody retrieves it,
    so after parking.timeout ccswitch rings B again and B talks to A."""
    with running_server(tmp_path / "server", _overrides(parking={"timeout": 5})) as ccs:
        async with phones(ccs, tmp_path, "1001", "1002") as (a, b):
            await a.dial("1002")
            await b.wait_incoming(5)
            await b.answer()
            await b.wait_established(5)
            await asyncio.sleep(1.0)
            await b.transfer("705")
            await b.wait_closed(10)
            parked = await ccs.wait_for(lambda: _parked(ccs), timeout=5)
            t_parked = time.monotonic()
            await b.wait_incoming(15)
            rang_after = time.monotonic() - t_parked
            assert not _parked(ccs)
            await b.answer()
            await b.wait_established(5)
            await wait_bridged(ccs, "1001", "1002")
            await asyncio.sleep(2.0)
            rx_a = rx_wav(a)
            await b.hangup()
            await a.wait_closed(5)
    assert parked == {"705": "1001"}, parked
    assert 3.5 < rang_after < 8.0, rang_after
    assert hears_music(rx_a), "A did not hear music while parked"
    assert hears(rx_a[-12000:], TONES["1002"]), f"A after the ring-back: {describe(rx_a)}"


async def test_directed_pickup(ccs: CcswitchServer, tmp_path: Path) -> None:
    """A calls B, B rings (manual answer); C dials ** 1002: C gets A's call and B's
    ringing stops."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003") as (a, b, c), \
            capture(tmp_path, "pickup", ports=(ccs.port,)):
        await a.dial("1002")
        await b.wait_incoming(5)
        await c.call("**1002")
        await b.wait_closed(5)  # CANCEL: picked up elsewhere
        await a.wait_established(5)
        await wait_bridged(ccs, "1003", "1001")
        await asyncio.sleep(2.0)
        chans = await channels(ccs)
        rx_a, rx_c = rx_wav(a), rx_wav(c)
        await a.hangup()
        await c.wait_closed(5)
    assert sorted(_ext(ch) for ch in chans) == ["1001", "1003"], chans
    assert hears(rx_a[-12000:], TONES["1003"]), f"A: {describe(rx_a[-12000:])}"
    assert hears(rx_c[-12000:], TONES["1001"]), f"C: {describe(rx_c[-12000:])}"


# ================================================================ 6. continuity
def _timeline(x: Audio, rate: int = 8000, win: float = 0.5) -> list[str]:
    """What `x` holds, per `win` window (extension whose tone dominates, "music", or "-"),
    with repeats collapsed: the stages of a call in order."""
    n = int(win * rate)
    labels: list[str] = []
    for i in range(0, len(x) - n + 1, n):
        seg = x[i:i + n]
        ratios = {e: audio.tone_ratio(seg, rate, f) for e, f in TONES.items()}
        best = max(ratios, key=lambda e: ratios[e])
        if ratios[best] > 0.5:
            label = best
        elif audio.rms_dbfs(seg) > -55 and moh_similarity(seg, rate, win) > 0.6:
            label = "music"
        else:
            label = "-"
        if label != "-" and (not labels or labels[-1] != label):
            labels.append(label)
    return labels


def _subsequence(want: list[str], got: list[str]) -> bool:
    it = iter(got)
    return all(w in it for w in want)


async def test_recording_and_cdr_follow_hold_transfer_and_park(ccs: CcswitchServer,
                                                               tmp_path: Path) -> None:
    """A's call: B answers, holds and resumes, blind-transfers A to C (REFER); C parks A
    (#72); D retrieves it from 701.  The call has one recording, which holds every stage
    in order (B, music, B, C, music, D), and one CDR listing the parties, the transfer
    and the parking."""
    async with phones(ccs, tmp_path, "1001", "1002", "1003", "1004",
                      **{"1002": {"answermode": "auto"}, "1003": {"answermode": "auto"}}) \
            as (a, b, c, d):
        await a.call("1002")
        await b.wait_established(5)
        await asyncio.sleep(1.5)
        await b.hold()
        await asyncio.sleep(2.5)
        await b.resume()
        await asyncio.sleep(1.5)
        await b.transfer("1003")
        await b.wait_closed(10)
        await c.wait_established(10)
        await wait_bridged(ccs, "1001", "1003")
        await asyncio.sleep(1.5)
        await c.send_dtmf("#72")
        await c.wait_closed(15)
        await ccs.wait_for(lambda: _parked(ccs), timeout=5)
        await asyncio.sleep(2.0)
        await d.call("701")
        await wait_bridged(ccs, "1004", "1001")
        await asyncio.sleep(2.0)
        await d.hangup()
        await a.wait_closed(5)
    await ccs.wait_for(lambda: not ccs.cli_json("channels"), 5)
    cdrs = [r for r in await ccs.acli_json("cdr") if r["caller"] == "1001"]
    assert len(cdrs) == 1, cdrs
    cdr = cdrs[0]
    # D's own call to 701 has its own recording; A's call has exactly one
    recs = [r for r in ccs.recordings() if not r.name.startswith("conf-")]
    assert len(recs) == 2 and cdr["recording"] in {str(r) for r in recs}, (recs, cdr)
    rate, st = audio.load_wav(cdr["recording"])
    heard, said = st[1], st[0]
    stages = _timeline(heard, rate)
    assert _subsequence(["1002", "music", "1002", "1003", "music", "1004"], stages), stages
    assert audio.tone_ratio(said, rate, TONES["1001"]) > 0.5
    assert cdr["callee"] == "1002", cdr
    extra = cdr["extra"]
    assert extra["parties"] == ["1002", "1003", "1004"], extra
    assert [(t["kind"], t["by"], t["to"], t["ok"]) for t in extra["transfers"]] == \
        [("blind", "1002", "1003", True)], extra
    assert [(p["event"], p["slot"]) for p in extra["parked"]] == \
        [("park", "701"), ("unpark", "701")], extra
    assert extra["parked"][0]["parker"] == "1003" and "1004" in extra["parked"][1]["by"]


def queue_calls(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("SELECT * FROM queue_call ORDER BY joined")]
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


@pytest.fixture
def qccs(tmp_path: Path) -> Iterator[CcswitchServer]:
    queues = {
        "support": {"number": "300", "strategy": "leastrecent", "members": [{"agent": "1002"}],
                    "first_announcement_after": 600, "announce_position_every": 0,
                    "callback": False, "ring_timeout": 10, "wrapup": 0},
        "sales": {"number": "301", "members": [{"agent": "1003"}], "callback": False,
                  "first_announcement_after": 600, "announce_position_every": 0},
    }
    with running_server(tmp_path / "server", _overrides(queues=queues)) as srv:
        yield srv


async def test_queue_stats_after_transfer_credit_each_agent(qccs: CcswitchServer,
                                                            tmp_path: Path) -> None:
    """A queue call answered by agent 1002, who holds it (the customer hears music),
    resumes, then blind-transfers it to agent 1003 (who lets it ring 2 s): 1002's queue
    call ends at the transfer (outcome "transferred", talk ~4 s: not the ring time nor
    1003's talk), 1003's time on the call is counted for 1003, and the CDR names both
    agents and the transfer.  (While 1002 rings, ** 1002 from another phone is refused:
    a queue's ringing cannot be picked up.)"""
    ccs = qccs
    for agent in ("1002", "1003"):
        ccs.cli("agent", "login", agent)
    async with phones(ccs, tmp_path, "1001", "1002", "1003") as (a, b, c):
        await a.call("300")
        await b.wait_incoming(10)
        # a queue ringing an agent cannot be picked up: refused, not answered into silence
        with pytest.raises(CallFailed, match="404"):
            await c.call("**1002", timeout=5)
        await b.answer()
        await b.wait_established(5)
        await asyncio.sleep(1.0)
        await b.hold()  # a queue call on hold: the customer hears music
        await asyncio.sleep(2.0)
        await b.resume()
        await asyncio.sleep(0.7)
        t_xfer = time.time()
        await b.transfer("1003")
        await c.wait_incoming(10)
        await asyncio.sleep(2.0)
        await c.answer()
        await c.wait_established(5)
        await b.wait_closed(5)
        await wait_bridged(ccs, "1001", "1003")
        await asyncio.sleep(3.0)
        rx_a = rx_wav(a)
        await a.hangup()
        await c.wait_closed(5)
    await ccs.wait_for(lambda: not ccs.cli_json("channels"), 5)
    stages = _timeline(rx_a)
    assert _subsequence(["1002", "music", "1002", "1003"], stages), stages
    calls = await ccs.wait_for(lambda: queue_calls(ccs.db_path), timeout=5)
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["agent"] == "1002" and call["outcome"] == "transferred", call
    assert 3.2 < call["talk"] < 4.8, call  # talk + hold, not 1003's ringing (2 s)
    # 1003 took it as a direct (non-queue) call: busy from ringing (2 s) to the end (3 s)
    busy_1003 = await ccs.wait_for(lambda: agent_stats_sync(
        ccs.db_path, "1003", t_xfer, time.time() + 1).time_by_state.get("on_call", 0.0), 5)
    assert 4.5 < busy_1003 < 7.5, busy_1003
    cdr = next(r for r in await ccs.acli_json("cdr") if r["caller"] == "1001")
    assert cdr["extra"]["queue"] == "support" and cdr["extra"]["agent"] == "1002", cdr
    assert cdr["extra"]["parties"] == ["1002", "1003"], cdr
    assert [(t["by"], t["to"]) for t in cdr["extra"]["transfers"]] == [("1002", "1003")]
