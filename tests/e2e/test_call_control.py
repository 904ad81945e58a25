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
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tests.e2e.server import DEMO_EXTENSIONS, ROOT, CcswitchServer, running_server
from tests.peers import audio
from tests.peers.baresip import Baresip
from tests.peers.pcap import Capture, decode_g711, packets, udp_of

Audio = npt.NDArray[np.float64]

TONES = {"1001": 600.0, "1002": 900.0, "1003": 1300.0, "1004": 1700.0}
MUSIC = ROOT / "prompts" / "moh" / "default" / "music.wav"
EXTENSIONS = [dict(e) for e in DEMO_EXTENSIONS] + [
    {"number": "1004", "password": "secret1004", "name": "Dave"}]


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
        async with capture(tmp_path, "hold", a, b) as pcap:
            await a.call("1002")
            await b.wait_established(5)
            await asyncio.sleep(2.0)
            t_hold = time.time()
            await b.hold()
            await asyncio.sleep(4.0)
            t_resume = time.time()
            await b.resume()
            await asyncio.sleep(3.0)
            t_end = time.time()
            await a.hangup()
            await b.wait_closed(5)
        rx_a = RxLog(pcap, a.rtp_range)
        rx_b = RxLog(pcap, b.rtp_range)
    before = rx_a.between(t_hold - 1.5, t_hold)
    held = rx_a.between(t_hold + 0.5, t_resume)
    after = rx_a.between(t_resume + 0.7, t_end)
    assert hears(before, TONES["1002"]), f"A before hold: {describe(before)}"
    assert hears_music(held), f"A on hold: {describe(held)}"
    assert audio.tone_ratio(held, 8000, TONES["1002"]) < 0.05, f"held: {describe(held)}"
    assert hears(after, TONES["1002"]), f"A after resume: {describe(after)}"
    assert not hears_music(after), f"music after resume: {describe(after)}"
    # B heard A before the hold and after resume (B's own file stops at its re-INVITE)
    b_after = rx_b.between(t_resume + 0.7, t_end)
    assert hears(rx_b.between(t_hold - 1.5, t_hold), TONES["1001"])
    assert hears(b_after, TONES["1001"]), f"B after resume: {describe(b_after)}"


def sip_times(pcap: Path, pattern: str) -> list[float]:
    """Capture times of the SIP messages (UDP) whose text matches `pattern`."""
    rx = re.compile(pattern, re.S)
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


@pytest.mark.parametrize("method,direction,address,answer", [
    ("INVITE", "sendonly", "127.0.0.1", "recvonly"),
    ("INVITE", "inactive", "127.0.0.1", "inactive"),
    ("INVITE", "sendrecv", "0.0.0.0", "recvonly"),  # RFC 2543 hold
    ("UPDATE", "sendonly", "127.0.0.1", "recvonly"),
], ids=["reinvite-sendonly", "reinvite-inactive", "reinvite-c0", "update-sendonly"])
async def test_hold_forms_from_sipp_caller(ccs: CcswitchServer, tmp_path: Path, method: str,
                                           direction: str, address: str, answer: str) -> None:
    """The caller (SIPp, echoing RTP) holds with each SDP form: the callee (baresip A)
    hears music instead of its own echo, ccswitch stops sending to the holder and answers
    with the mirrored direction; after resume A hears itself again (two-way path)."""
    from tests.peers.sipp import start_sipp

    async with phones(ccs, tmp_path, "1001", **{"1001": {"answermode": "auto"}}) as (a,):
        pcap = tmp_path / "hold.pcap"
        async with Capture(pcap, ports=[ccs.port], port_ranges=[a.rtp_range, (30000, 31999)],
                           max_seconds=60):
            sp = await start_sipp("uac_hold.xml", ccs.domain, service="1001", caller="1002",
                                  auth_user="1002", auth_pass="secret1002", rtp_echo=True,
                                  duration_ms=2500, trace_msg=True, timeout=30,
                                  workdir=tmp_path / "sipp",
                                  keys={"holdmethod": method, "holddir": direction,
                                        "holdaddr": address})
            res = await sp.wait(30)
            await a.wait_closed(5)
    assert res.ok, res.summary()
    t_hold = sip_times(pcap, r"^(?:INVITE|UPDATE) .*Subject: hold")
    t_resume = sip_times(pcap, r"^(?:INVITE|UPDATE) .*Subject: resume")
    t_bye = sip_times(pcap, r"^BYE ")
    assert t_hold and t_resume and t_bye
    th, tr, tb = t_hold[0], t_resume[0], t_bye[0]
    rx_a = RxLog(pcap, a.rtp_range)
    before, held, after = (rx_a.between(th - 1.5, th), rx_a.between(th + 0.3, tr),
                           rx_a.between(tr + 0.5, tb))
    assert hears(before, TONES["1001"]), f"A before hold: {describe(before)}"
    assert hears_music(held), f"A on hold: {describe(held)}"
    assert audio.tone_ratio(held, 8000, TONES["1001"]) < 0.05, describe(held)
    assert hears(after, TONES["1001"]), f"A after resume: {describe(after)}"
    # nothing was sent to the holding party while it held
    to_sipp = RxLog(pcap, (sp.media_port, sp.media_port))
    assert to_sipp.packets_between(th + 0.3, tr) == 0
    assert to_sipp.packets_between(tr + 0.5, tb) > 20
    # the SDP answers mirror the hold, then sendrecv again
    answers = [m.group(1) for m in map(_DIRECTION.search, sipp_received(
        sp.workdir, rf"^SIP/2\.0 200 .*^CSeq: *1[01] {method}")) if m]
    assert answers == [answer, "sendrecv"], answers


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
