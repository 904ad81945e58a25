"""Concurrent DTMF IVR calls: digits recognised, prompt pacing, engine tick lag, server CPU.

    .venv/bin/python bench/ivr_bench.py [--calls 100,250,500] [--seconds 20] [--no-record]

The server runs a generated three-level flow (menu -> 3 sub-menus -> 9 sub-sub-menus ->
27 leaves, options 1-3 everywhere) whose prompts are pure tones, one frequency per node,
each a whole number of periods per 20 ms (multiples of 50 Hz), so every frame of a prompt
is the same 160 G.711 bytes: one dict lookup on a received payload tells which node is
speaking.  That gives, per packet, the node heard, without decoding audio.

Callers: this process (asyncio + uvloop) is N phones.  Each call slot has its own
extension (so its CDRs can be matched), calls the flow's number with digest auth and
sends 20 ms PCMU (by default SIPp's own g711a.pcap speech, transcoded and re-framed, so
the server's in-band DTMF detector works as it would on a real caller until the first
RFC 4733 event; --caller-audio noise for -50 dBFS noise) and, for each menu, once the menu's prompt
is heard, an RFC 4733 digit (PT 101, 100 ms, end packet x3, built here) after a random
2.5-4.5 s (barge-in: the prompts last 6 s).  Three digits per call, then the leaf plays
and the server hangs up; the slot calls again.  Received RTP is read with recvmsg and
SO_TIMESTAMPNS, i.e. with the kernel's arrival time: on loopback that is the server's
send time, free of this process's own scheduling delay.

Printed per step (N concurrent calls, a window of --seconds):
  done     calls ended (server BYE) in the window; audio-ok = heard exactly the expected
           node sequence (main -> sub -> sub-sub -> leaf)
  digit    time from our first event packet to the first packet of the next node's
           prompt (digit recognised + barge-in + next node started), p50/p99
  pacing   |interval - 20 ms| between consecutive packets of one prompt, p50/p99/max,
           and the share of intervals off by more than 5 ms (the issue's criterion)
  switch   extra silence between two prompts (interval - 20 ms), p50/p99
  loss     sequence gaps in the server's streams; RFC 3550 jitter (mean over calls)
  lag      the media engine's worst 20 ms tick lateness (/api/status?reset=1 window)
  cpu      server / this generator, % of one core
After the run (server stopped, CDRs flushed): per step, the share of calls whose CDR
`extra.ivr_path` shows exactly the expected nodes and digits.  Server log errors are
counted.  Not a test: it measures.

The helpers here (SIP UAC, kernel-timestamped RTP peer, paced sender, CPU and API
helpers) are reused by bench/queue_bench.py and bench/conference_live_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import socket
import sqlite3
import struct
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from bench.core_cps import cpu_seconds
from ccswitch.sip.auth import build_authorization
from ccswitch.sip.message import Request, Response, parse_message
from tests.e2e.server import CcswitchServer

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; SCM_TIMESTAMPNS == same
FRAME = 0.02
_HDR = struct.Struct("!BBHII")
_SEQ_TS = struct.Struct("!HI")
_TSNS = struct.Struct("qq")
_EV = struct.Struct("!BBH")
_STAMP = struct.Struct("!4sd")
_STAMP_FILL = b"\xfe" * (160 - _STAMP.size)
_wall = time.time  # CLOCK_REALTIME, the clock of SO_TIMESTAMPNS


# ------------------------------------------------------------------ small helpers
def pct(vals: list[float], p: float) -> float:
    """Nearest-rank percentile of a SORTED list."""
    if not vals:
        return float("nan")
    return vals[min(len(vals) - 1, max(0, int(len(vals) * p / 100.0 + 0.5) - 1))]


def pcts(vals: list[float], ps: tuple[float, ...] = (50, 99)) -> str:
    s = sorted(vals)
    return "/".join(f"{pct(s, p):.1f}" for p in ps) if s else "-"


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _http_unix(sock_path: Path, method: str, path: str, body: Any = None) -> Any:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10.0)
        s.connect(str(sock_path))
        data = json.dumps(body).encode() if body is not None else b""
        hdr = f"{method} {path} HTTP/1.0\r\n"
        if body is not None:
            hdr += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        s.sendall(hdr.encode() + b"\r\n" + data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return json.loads(out.split(b"\r\n\r\n", 1)[1] or b"null")


async def api(srv: CcswitchServer, method: str, path: str, body: Any = None) -> Any:
    """The server's local JSON API (the CLI's), off the event loop."""
    return await asyncio.to_thread(_http_unix, srv.socket_path, method, path, body)


def log_problems(srv: CcswitchServer) -> str:
    """A one-line summary of errors / tracebacks in the server log, with the first ones."""
    try:
        lines = srv.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "server log unreadable"
    bad = [ln for ln in lines if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", ln)]
    warn = [ln for ln in lines if re.search(r"\bWARNING\b", ln)]
    out = f"server log: {len(bad)} error line(s), {len(warn)} warning line(s)"
    seen: dict[str, int] = {}
    for ln in bad + warn:
        key = re.sub(r"[0-9a-f]{8,}|\d+", "#", ln.split(" ", 3)[-1])[:120]
        seen[key] = seen.get(key, 0) + 1
    for k, n in sorted(seen.items(), key=lambda kv: -kv[1])[:6]:
        out += f"\n     {n:>6} x {k}"
    return out


def drop_recordings(srv: CcswitchServer) -> None:
    """Say how much the run recorded, then delete it (recordings are 32 kB/s per call)."""
    rec = srv.dir / "recordings"
    if rec.exists():
        wavs = list(rec.rglob("*.wav"))
        print(f"recordings: {len(wavs)} files, "
              f"{sum(p.stat().st_size for p in wavs) / 1e6:.0f} MB (deleted)")
        shutil.rmtree(rec, ignore_errors=True)


def run_fast(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run on uvloop when installed (the generator must outpace the server)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main)


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def tone_frame(freq: float, dbfs: float = -10.0) -> bytes:
    """One 20 ms PCM16 frame of a sine; with freq a multiple of 50 Hz every frame is equal."""
    a = 32767 * 10 ** (dbfs / 20)
    return struct.pack("<160h", *[round(a * math.sin(2 * math.pi * freq * n / 8000))
                                  for n in range(160)])


def noise_payloads(n: int = 50, dbfs: float = -50.0, seed: int = 7) -> list[bytes]:
    """PCMU payloads of low Gaussian noise (a caller's open microphone)."""
    rnd = random.Random(seed)
    sd = 32767 * 10 ** (dbfs / 20)
    out = []
    for _ in range(n):
        pcm = struct.pack("<160h", *(max(-32768, min(32767, int(rnd.gauss(0, sd))))
                                     for _ in range(160)))
        out.append(audioop.lin2ulaw(pcm, 2))
    return out


SIPP_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


def pcap_payloads(path: Path = SIPP_PCAP) -> list[bytes]:
    """SIPp's own caller audio (g711a.pcap: 7 s of speech, A-law in 30 ms packets) as 20 ms
    PCMU payloads; low noise when the file is missing."""
    from tests.peers.pcap import packets, udp_of

    if not path.exists():
        return noise_payloads()
    pcm = b""
    for _t, lt, frame in packets(path):
        u = udp_of(lt, frame)
        if u is not None and len(u[4]) > 12 and u[4][1] & 0x7F == 8:
            pcm += audioop.alaw2lin(u[4][12:], 2)
    ulaw = audioop.lin2ulaw(pcm, 2)
    return [ulaw[i:i + 160] for i in range(0, len(ulaw) - 159, 160)]


def dtmf_packets(digit: str, duration_ms: int = 100) -> list[tuple[bytes, bool]]:
    """RFC 4733 payloads (payload, marker) for one digit: updates every 20 ms, end x3."""
    code = "0123456789*#ABCD".index(digit)
    out: list[tuple[bytes, bool]] = []
    d = 160
    while d < duration_ms * 8:
        out.append((_EV.pack(code, 10, d), not out))
        d += 160
    end = _EV.pack(code, 0x80 | 10, duration_ms * 8)
    out += [(end, False)] * 3
    return out


# ------------------------------------------------------------------ RTP
Handler = Callable[["RtpPeer", bytes, float], None]


class RtpPeer:
    """One phone's RTP socket: a raw non-blocking socket read on readiness with recvmsg, so
    each packet comes with the kernel's arrival time (SO_TIMESTAMPNS)."""

    __slots__ = ("dest", "ev_ts", "event_sent_at", "events", "fd", "frame_no", "handler",
                 "loop", "payloads", "port", "rx", "seq", "sock", "ssrc", "stamp", "ts", "tx",
                 "tx_fail")

    def __init__(self, loop: asyncio.AbstractEventLoop, handler: Handler | None,
                 payloads: list[bytes]) -> None:
        self.loop = loop
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
        s.setblocking(False)
        self.sock = s
        self.fd = s.fileno()
        self.port = s.getsockname()[1]
        self.handler = handler
        self.payloads = payloads
        self.frame_no = random.randrange(len(payloads)) if payloads else 0
        self.dest: tuple[str, int] | None = None
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)
        self.ts = random.getrandbits(32)
        self.events: list[tuple[bytes, bool]] = []
        self.event_sent_at = 0.0
        self.ev_ts = 0
        self.stamp = b""  # 4 bytes: payloads are stamp + send time (wall, !d) + filler
        self.rx = 0
        self.tx = 0
        self.tx_fail = 0
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        recvmsg = self.sock.recvmsg
        handler = self.handler
        while True:
            try:
                data, anc, _flags, _addr = recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.rx += 1
            if handler is None or len(data) < 12:
                continue
            if anc:
                sec, nsec = _TSNS.unpack_from(anc[0][2])
                t = sec + nsec * 1e-9
            else:
                t = _wall()
            handler(self, data, t)

    def queue_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        self.events.extend(dtmf_packets(digit, duration_ms))

    def send_frame(self) -> None:
        """One 20 ms slot: the next DTMF event packet if any, else audio."""
        dest = self.dest
        if dest is None:
            return
        self.seq = (self.seq + 1) & 0xFFFF
        if self.events:
            payload, marker = self.events.pop(0)
            if marker:  # an event's packets all carry the timestamp of its start
                self.event_sent_at = _wall()
                self.ev_ts = self.ts
            pkt = _HDR.pack(0x80, 101 | (0x80 if marker else 0), self.seq,
                            self.ev_ts, self.ssrc) + payload
        elif self.stamp:
            pkt = _HDR.pack(0x80, 0, self.seq, self.ts, self.ssrc) + _STAMP.pack(
                self.stamp, _wall()) + _STAMP_FILL
        else:
            p = self.payloads
            pkt = _HDR.pack(0x80, 0, self.seq, self.ts, self.ssrc) + (
                p[self.frame_no % len(p)] if p else b"\xff" * 160)
            self.frame_no += 1
        self.ts = (self.ts + 160) & 0xFFFFFFFF
        try:
            self.sock.sendto(pkt, dest)
            self.tx += 1
        except (BlockingIOError, InterruptedError, OSError):
            self.tx_fail += 1

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.fd)
        self.sock.close()
        self.dest = None


class RtpSender:
    """One timer for every peer: peers are spread over SLOTS phases of the 20 ms frame
    (phones are not in phase), the timer fires once per phase for the peers in it."""

    SLOTS = 4

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.slots: list[dict[int, RtpPeer]] = [{} for _ in range(self.SLOTS)]
        self._n = 0
        self._next_slot = 0
        self._t0 = 0.0
        self._h: asyncio.TimerHandle | None = None

    def add(self, peer: RtpPeer) -> None:
        self.slots[self._next_slot][id(peer)] = peer
        self._next_slot = (self._next_slot + 1) % self.SLOTS

    def remove(self, peer: RtpPeer) -> None:
        for s in self.slots:
            s.pop(id(peer), None)

    def start(self) -> None:
        self._t0 = self.loop.time()
        self._n = 0
        self._schedule()

    def stop(self) -> None:
        if self._h is not None:
            self._h.cancel()

    def _schedule(self) -> None:
        self._n += 1
        self._h = self.loop.call_at(self._t0 + self._n * FRAME / self.SLOTS, self._tick)

    def _tick(self) -> None:
        for p in list(self.slots[self._n % self.SLOTS].values()):
            p.send_frame()
        self._schedule()


class StreamStats:
    """Sequence loss, RFC 3550 interarrival jitter and 20 ms interval deviation of one
    received stream (kernel arrival times)."""

    __slots__ = ("jitter", "last_seq", "last_t", "last_ts", "lost", "reordered", "rx")

    def __init__(self) -> None:
        self.last_seq = -1
        self.last_t = 0.0
        self.last_ts = 0
        self.jitter = 0.0
        self.lost = 0
        self.rx = 0
        self.reordered = 0

    def feed(self, data: bytes, t: float) -> int:
        """Account one packet; returns the sequence step (1 = next in order, 0 = old or
        duplicate: ignore the packet, >1 = that many minus one lost)."""
        seq, ts = _SEQ_TS.unpack_from(data, 2)
        if self.last_seq >= 0:
            d = (seq - self.last_seq) & 0xFFFF
            if d == 0 or d >= 0x8000:
                self.reordered += 1
                return 0
            self.lost += d - 1
            dd = abs((t - self.last_t) - ((ts - self.last_ts) & 0xFFFFFFFF) / 8000.0)
            if dd < 1.0:  # a timeline jump (new talkspurt after a long pause) is not jitter
                self.jitter += (dd - self.jitter) / 16.0
        else:
            d = 1
        self.rx += 1
        self.last_seq = seq
        self.last_t = t
        self.last_ts = ts
        return d


# ------------------------------------------------------------------ SIP (caller side)
class Leg:
    """One call placed by the bench (we are the UAC)."""

    __slots__ = ("call_id", "contact", "ended", "ext", "from_tag", "invite_wall", "number",
                 "password", "rtp", "to")

    def __init__(self, ext: str, password: str, number: str, rtp: RtpPeer) -> None:
        self.ext = ext
        self.password = password
        self.number = number
        self.rtp = rtp
        self.call_id = f"b{random.getrandbits(64):x}@127.0.0.1"
        self.from_tag = f"t{random.getrandbits(40):x}"
        self.to = ""
        self.contact = ""
        self.invite_wall = 0.0
        self.ended: asyncio.Future[str] = rtp.loop.create_future()


_SDP_C = re.compile(rb"^c=IN IP4 (\S+)", re.M)
_SDP_M = re.compile(rb"^m=audio (\d+)", re.M)


def _branch() -> str:
    return f"z9hG4bK-{random.getrandbits(48):x}"


class SipUac(asyncio.DatagramProtocol):
    """A minimal UAC for many calls over one UDP socket: INVITE with digest, ACK, BYE,
    answers the server's BYE (and other in-dialog requests) with 200."""

    def __init__(self, server: tuple[str, int], domain: str) -> None:
        self.server = server
        self.domain = domain
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.legs: dict[str, Leg] = {}
        self.waiting: dict[str, tuple[int, asyncio.Future[Response], list[bool]]] = {}
        self.acks: dict[str, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def error_received(self, exc: Exception) -> None:
        pass

    def send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr or self.server)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = parse_message(data)
        except Exception:
            return
        cid = msg.call_id
        if isinstance(msg, Request):
            if msg.method == "ACK":
                return
            leg = self.legs.get(cid)
            body = b""
            if msg.method == "INVITE" and leg is not None:
                body = self._sdp(leg)
            self.send(_response(msg, 200, body=body,
                                contact=f"<sip:{leg.ext if leg else 'x'}@127.0.0.1:{self.port}>"
                                if msg.method == "INVITE" else None), addr)
            if msg.method == "BYE" and leg is not None and not leg.ended.done():
                leg.ended.set_result("server")
            return
        w = self.waiting.get(cid)
        if w is not None and msg.cseq[0] == w[0]:
            if msg.status >= 200:
                if not w[1].done():
                    w[1].set_result(msg)
            else:
                w[2][0] = True  # provisional: stop retransmitting
        elif msg.status >= 200 and msg.cseq[1] == "INVITE" and cid in self.acks:
            self.send(self.acks[cid])  # our ACK was lost: the 2xx is retransmitted

    async def request(self, cid: str, cseq: int, data: bytes, final_wait: float = 64.0
                      ) -> Response:
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        prov = [False]
        self.waiting[cid] = (cseq, fut, prov)
        interval = 0.5
        deadline = time.monotonic() + final_wait
        try:
            while time.monotonic() < deadline:
                if not prov[0]:
                    self.send(data)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), interval)
                except TimeoutError:
                    interval = min(interval * 2, 4.0)
            raise TimeoutError(f"no final response for {cid} CSeq {cseq}")
        finally:
            self.waiting.pop(cid, None)

    def _sdp(self, leg: Leg) -> bytes:
        return (f"v=0\r\no=bench {leg.rtp.port} 1 IN IP4 127.0.0.1\r\ns=-\r\n"
                f"c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {leg.rtp.port} RTP/AVP 0 101\r\n"
                f"a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
                f"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n").encode()

    def _invite(self, leg: Leg, cseq: int, branch: str, auth: str | None) -> bytes:
        sdp = self._sdp(leg)
        lines = [
            f"INVITE sip:{leg.number}@{self.domain} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport",
            f"From: <sip:{leg.ext}@{self.domain}>;tag={leg.from_tag}",
            f"To: <sip:{leg.number}@{self.domain}>",
            f"Call-ID: {leg.call_id}",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:{leg.ext}@127.0.0.1:{self.port}>",
            "Max-Forwards: 70",
            "Content-Type: application/sdp",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        lines.append(f"Content-Length: {len(sdp)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + sdp

    def _in_dialog(self, leg: Leg, method: str, cseq: int, branch: str) -> bytes:
        return (f"{method} {leg.contact} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
                f"From: <sip:{leg.ext}@{self.domain}>;tag={leg.from_tag}\r\n"
                f"To: {leg.to}\r\nCall-ID: {leg.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()

    async def call(self, leg: Leg) -> str:
        """Place the call; returns "" when answered (RTP destination set), else why not."""
        self.legs[leg.call_id] = leg
        b1 = _branch()
        r = await self.request(leg.call_id, 1, self._invite(leg, 1, b1, None))
        cseq = 1
        if r.status in (401, 407):
            self.send((f"ACK sip:{leg.number}@{self.domain} SIP/2.0\r\n"
                       f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={b1};rport\r\n"
                       f"From: <sip:{leg.ext}@{self.domain}>;tag={leg.from_tag}\r\n"
                       f"To: {r.get('To')}\r\nCall-ID: {leg.call_id}\r\nCSeq: 1 ACK\r\n"
                       f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode())
            hdr = "WWW-Authenticate" if r.status == 401 else "Proxy-Authenticate"
            auth = build_authorization(r.get(hdr) or "", "INVITE",
                                       f"sip:{leg.number}@{self.domain}", leg.ext, leg.password)
            cseq = 2
            leg.invite_wall = _wall()
            r = await self.request(leg.call_id, 2, self._invite(leg, 2, _branch(), auth))
        if r.status != 200:
            self.legs.pop(leg.call_id, None)
            return f"{r.status} {r.reason}"
        leg.to = r.get("To") or ""
        contacts = r.contacts()
        leg.contact = str(contacts[0].uri) if contacts else f"sip:{self.domain}"
        mc, mm = _SDP_C.search(r.body), _SDP_M.search(r.body)
        leg.rtp.dest = ((mc.group(1).decode() if mc else "127.0.0.1"),
                        int(mm.group(1)) if mm else 0)
        ack = self._in_dialog(leg, "ACK", cseq, _branch())
        self.acks[leg.call_id] = ack
        self.send(ack)
        return ""

    async def bye(self, leg: Leg) -> None:
        if not leg.ended.done():
            leg.ended.set_result("us")
            with contextlib.suppress(TimeoutError):
                await self.request(leg.call_id, 10, self._in_dialog(leg, "BYE", 10, _branch()),
                                   final_wait=8.0)

    def forget(self, leg: Leg) -> None:
        self.legs.pop(leg.call_id, None)
        self.acks.pop(leg.call_id, None)


def _response(req: Request, status: int, *, to_tag: str | None = None, body: bytes = b"",
              contact: str | None = None, reason: str | None = None) -> bytes:
    out = [f"SIP/2.0 {status} {reason or {200: 'OK', 180: 'Ringing', 100: 'Trying', 487: 'Request Terminated', 481: 'Call/Transaction Does Not Exist'}.get(status, 'OK')}"]  # noqa: E501
    for n, v in req.headers:
        if n in ("Via", "From", "Call-ID", "CSeq"):
            out.append(f"{n}: {v}")
        elif n == "To":
            if to_tag and ";tag=" not in v:
                v = f"{v};tag={to_tag}"
            out.append(f"To: {v}")
    if contact:
        out.append(f"Contact: {contact}")
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(out) + "\r\n\r\n").encode() + body


# ------------------------------------------------------------------ the IVR bench
def node_ids() -> tuple[list[str], list[str]]:
    menus = ["m"] + [f"m{a}" for a in "123"] + [f"m{a}{b}" for a in "123" for b in "123"]
    leaves = [f"l{a}{b}{c}" for a in "123" for b in "123" for c in "123"]
    return menus, leaves


def write_flow(srv_dir: Path, prompt_s: float, leaf_s: float, timeout: float
               ) -> dict[bytes, str]:
    """The flow, one tone prompt per node; returns {PCMU payload of a frame: prompt id}."""
    menus, leaves = node_ids()
    ids = menus + leaves + ["inv", "tmo", "bye"]
    table: dict[bytes, str] = {}
    for i, pid in enumerate(ids):
        frame = tone_frame(300 + 50 * i)
        secs = leaf_s if pid.startswith("l") or pid in ("bye", "inv", "tmo") else prompt_s
        write_wav(srv_dir / "prompts" / f"{pid}.wav", frame * int(secs * 50))
        table[audioop.lin2ulaw(frame, 2)] = pid
    lines = ["flow: bench", "start: answer", "nodes:", "  answer: {type: answer, next: m}"]
    for m in menus:
        kind = "m" if len(m) < 3 else "l"  # level 1 and 2 lead to menus, level 3 to leaves
        opts = ", ".join(f'"{d}": {kind}{m[1:]}{d}' for d in "123")
        lines.append(f"  {m}: {{type: menu, greeting: {m}, options: {{{opts}}}, invalid: inv, "
                     f"timeout_prompt: tmo, timeout: {timeout}, retries: 0, "
                     f"max_retries: bye}}")
    for leaf in leaves:
        lines.append(f"  {leaf}: {{type: play, prompt: {leaf}, next: end}}")
    lines += ["  bye: {type: play, prompt: bye, next: end}", "  end: {type: hangup}"]
    (srv_dir / "flows").mkdir(parents=True, exist_ok=True)
    (srv_dir / "flows" / "bench.yaml").write_text("\n".join(lines) + "\n")
    return table


class IvrCall:
    """One IVR call's expectations and what was heard (fed from RtpPeer packets)."""

    __slots__ = ("bench", "cur", "digits", "ended_at", "expected", "ext", "heard", "leg",
                 "ok_audio", "stage", "stats", "step", "unknown", "wrong")

    def __init__(self, bench: IvrBench, ext: str, digits: str) -> None:
        self.bench = bench
        self.ext = ext
        self.digits = digits
        self.expected = ["m", "m" + digits[0], "m" + digits[:2], "l" + digits]
        self.stage = 0
        self.cur: str | None = None
        self.heard: list[str] = []
        self.wrong = False
        self.unknown = 0
        self.stats = StreamStats()
        self.leg: Leg | None = None
        self.ended_at = 0.0
        self.ok_audio = False
        self.step = 0

    def on_packet(self, peer: RtpPeer, data: bytes, t: float) -> None:
        if data[1] & 0x7F != 0:
            return
        st = self.stats
        last_t = st.last_t
        d = st.feed(data, t)
        if d == 0:
            return
        b = self.bench
        pid = b.table.get(data[12:])
        if pid is None:
            self.unknown += 1
            pid = self.cur
        meas = b.measuring
        if meas:
            b.rx += 1
            b.lost += d - 1
        if pid == self.cur:
            if d == 1 and meas:
                b.devs.append(abs((t - last_t) * 1000.0 - 20.0))
            return
        if self.cur is not None and meas:
            b.switch_gaps.append((t - last_t) * 1000.0 - 20.0 * d)
        self.cur = pid
        self.heard.append(pid or "?")
        if self.stage < 4 and pid == self.expected[self.stage]:
            if self.stage > 0 and meas and peer.event_sent_at:
                b.digit_lat.append((t - peer.event_sent_at) * 1000.0)
            if self.stage < 3:
                k = self.stage
                b.loop.call_later(random.uniform(*b.digit_delay), self._press, peer, k)
            self.stage += 1
        else:
            self.wrong = True

    def _press(self, peer: RtpPeer, k: int) -> None:
        if peer.dest is not None:
            peer.queue_dtmf(self.digits[k])
            if self.bench.measuring:
                self.bench.digits_sent += 1


class IvrBench:
    def __init__(self, srv: CcswitchServer, uac: SipUac, a: argparse.Namespace,
                 table: dict[bytes, str]) -> None:
        self.srv = srv
        self.uac = uac
        self.a = a
        self.table = table
        self.loop = asyncio.get_running_loop()
        self.sender = RtpSender(self.loop)
        self.noise = pcap_payloads() if a.caller_audio == "pcap" else noise_payloads()
        self.digit_delay = tuple(float(x) for x in a.digit_delay.split(","))
        self.active = 0  # slots that should be running
        self.stopping = False
        self.step = 0
        self.calls: list[IvrCall] = []  # every call placed (for the CDR check)
        self.setup_failures: dict[str, int] = {}
        self.stuck = 0
        self.tasks: list[asyncio.Future[None]] = []
        self.reset()

    def reset(self) -> None:
        self.measuring = False
        self.rx = 0
        self.lost = 0
        self.devs: list[float] = []
        self.switch_gaps: list[float] = []
        self.digit_lat: list[float] = []
        self.digits_sent = 0
        self.window_calls: list[IvrCall] = []

    async def slot(self, i: int) -> None:
        ext = str(self.a.ext_base + i)
        while not self.stopping and i < self.active:
            digits = "".join(random.choice("123") for _ in range(3))
            call = IvrCall(self, ext, digits)
            peer = RtpPeer(self.loop, call.on_packet, self.noise)
            leg = Leg(ext, f"pw{ext}", self.a.number, peer)
            call.leg = leg
            try:
                why = await self.uac.call(leg)
            except TimeoutError:
                why = "timeout"
            if why:
                self.setup_failures[why] = self.setup_failures.get(why, 0) + 1
                peer.close()
                self.uac.forget(leg)
                await asyncio.sleep(1.0)
                continue
            self.calls.append(call)
            self.sender.add(peer)
            limit = 3 * (self.a.prompt_seconds + self.a.timeout) + self.a.leaf_seconds + 20
            try:
                await asyncio.wait_for(asyncio.shield(leg.ended), limit)
            except TimeoutError:
                self.stuck += 1
                await self.uac.bye(leg)
            self.sender.remove(peer)
            peer.close()
            self.uac.forget(leg)
            call.ended_at = _wall()
            call.ok_audio = call.stage == 4 and not call.wrong and leg.ended.result() == "server"
            call.step = self.step
            if self.measuring:
                self.window_calls.append(call)
            await asyncio.sleep(random.uniform(0.0, 0.5))

    async def grow(self, n: int, rate: float) -> None:
        while self.active < n:
            i = self.active
            self.active += 1
            self.tasks.append(asyncio.ensure_future(self.slot(i)))
            await asyncio.sleep(1.0 / rate)


async def run_ivr(a: argparse.Namespace) -> None:
    steps = [int(x) for x in a.calls.split(",")]
    nmax = max(steps)
    work = Path(tempfile.mkdtemp(prefix="ccsw-ivrb."))
    exts = [{"number": str(a.ext_base + i), "password": f"pw{a.ext_base + i}"}
            for i in range(nmax)]
    srv = CcswitchServer(work / "server", {
        "logging": {"level": "warning"},
        "recordings": {"enabled": not a.no_record, "directory": "recordings"},
        "rtp": {"port_min": 40000, "port_max": 59999},
        "calls": {"no_answer_timeout": 30},
        "routes": [{"number": a.number, "flow": "bench"}],
        "flows": {"directory": "flows"}, "prompts": {"directory": "prompts"},
        "tts": {"enabled": False},
        "extensions": exts,
    })
    table = write_flow(srv.dir, a.prompt_seconds, a.leaf_seconds, a.timeout)
    srv.start()
    loop = asyncio.get_running_loop()
    try:
        assert srv.proc is not None
        _, uac = await loop.create_datagram_endpoint(
            lambda: SipUac(("127.0.0.1", srv.port), srv.domain), local_addr=("127.0.0.1", 0))
        b = IvrBench(srv, uac, a, table)
        b.sender.start()
        print(f"server pid {srv.proc.pid}, generator pid {os.getpid()}, {os.cpu_count()} cores; "
              f"recording {'off' if a.no_record else 'on'}; menu prompts {a.prompt_seconds:g} s, "
              f"digit {a.digit_delay} s into each, leaf {a.leaf_seconds:g} s; caller audio "
              f"{a.caller_audio}", flush=True)
        print(f"{'calls':>5} {'done':>5} {'audio-ok':>8} {'fail':>4} {'digits':>6} "
              f"{'digit ms p50/p99':>16} {'pacing |dev| ms p50/p99/max':>27} {'>5ms%':>6} "
              f"{'switch ms p50/p99':>17} {'loss%':>6} {'jit ms':>6} {'lag ms':>7} "
              f"{'cpu srv/gen %':>13}", flush=True)
        results = []
        for n in steps:
            b.step = n
            await b.grow(n, a.setup_rate)
            await asyncio.sleep(a.settle)
            await api(srv, "GET", "/api/status?reset=1")
            b.reset()
            c_srv, c_gen, t0 = cpu_seconds(srv.proc.pid), self_cpu(), time.monotonic()
            b.measuring = True
            await asyncio.sleep(a.seconds)
            b.measuring = False
            dt = time.monotonic() - t0
            cpu_s = (cpu_seconds(srv.proc.pid) - c_srv) / dt * 100
            cpu_g = (self_cpu() - c_gen) / dt * 100
            st = await api(srv, "GET", "/api/status")
            lag = st.get("media", {}).get("max_tick_lag_ms", float("nan"))
            gcp = st.get("gc", {}).get("max_pause_ms", float("nan"))
            wc = b.window_calls
            ok = sum(c.ok_audio for c in wc)
            devs = sorted(b.devs)
            over5 = 100.0 * sum(1 for x in devs if x > 5.0) / len(devs) if devs else float("nan")
            jit = [c.stats.jitter * 1000 for c in wc if c.stats.rx > 10]
            fails = sum(b.setup_failures.values()) + b.stuck
            print(f"{n:>5} {len(wc):>5} {ok:>8} {fails:>4} {b.digits_sent:>6} "
                  f"{pcts(b.digit_lat):>16} {pcts(devs, (50, 99, 100)):>27} {over5:>6.2f} "
                  f"{pcts(b.switch_gaps):>17} "
                  f"{100.0 * b.lost / max(1, b.rx + b.lost):>6.3f} "
                  f"{(sum(jit) / len(jit)) if jit else float('nan'):>6.2f} {lag:>7} "
                  f"{cpu_s:>8.0f}/{cpu_g:.0f}", flush=True)
            bad = [c for c in wc if not c.ok_audio]
            for c in bad[:3]:
                print(f"      e.g. {c.ext} digits {c.digits}: heard {c.heard}, "
                      f"ended by {c.leg.ended.result() if c.leg and c.leg.ended.done() else '?'}")
            print(f"      longest GC pause in the window {gcp} ms")
            unknown = sum(c.unknown for c in wc)
            if unknown:
                print(f"      {unknown} packets with an unknown payload")
            results.append((n, list(wc)))
        # drain: no new calls, let those in progress finish
        b.stopping = True
        t_end = time.monotonic() + 3 * (a.prompt_seconds + a.timeout) + a.leaf_seconds + 25
        while uac.legs and time.monotonic() < t_end:
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)
        st = await api(srv, "GET", "/api/status")
        b.sender.stop()
        print(f"after the run: {st.get('channels')} channel(s) left on the server, "
              f"{len(uac.legs)} call(s) still up here; set-up failures {b.setup_failures or 0}, "
              f"calls without the server's BYE in time {b.stuck}")
        for leg in list(uac.legs.values()):
            await uac.bye(leg)
    finally:
        srv.stop()
    cdr_check(srv, results)
    print(log_problems(srv))
    drop_recordings(srv)


def cdr_check(srv: CcswitchServer, results: list[tuple[int, list[IvrCall]]]) -> None:
    """Match each window call to its CDR (caller extension + start time) and compare the
    stored ivr_path with the digits sent."""
    con = sqlite3.connect(f"file:{srv.db_path}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT caller, start, extra, hangup_cause FROM cdr").fetchall()
    finally:
        con.close()
    by_ext: dict[str, list[tuple[float, dict[str, Any], str]]] = {}
    for caller, start, extra, cause in rows:
        by_ext.setdefault(caller, []).append((float(start), json.loads(extra or "{}"), cause))
    print("CDR check (extra.ivr_path vs digits sent, calls that ended in each window):")
    for n, calls in results:
        found = exact = leaf = 0
        bad: list[str] = []
        for c in calls:
            cands = by_ext.get(c.ext, [])
            if c.leg is None or not cands:
                continue
            start, extra, _cause = min(cands, key=lambda r: abs(r[0] - c.leg.invite_wall))
            if abs(start - c.leg.invite_wall) > 2.0:
                continue
            found += 1
            path = extra.get("ivr_path", [])
            nodes = [p.get("node") for p in path]
            want = ["answer", "m", "m" + c.digits[0], "m" + c.digits[:2], "l" + c.digits]
            values = [p.get("value") for p in path[1:4]]
            if "l" + c.digits in nodes:
                leaf += 1
            if nodes == want and values == list(c.digits):
                exact += 1
            elif len(bad) < 3:
                bad.append(f"{c.ext} sent {c.digits}: path {[(p.get('node'), p.get('event'), p.get('value')) for p in path]}")  # noqa: E501
        tot = len(calls)
        print(f"  {n:>4} calls: {tot} ended, {found} CDRs found, expected leaf reached "
              f"{100.0 * leaf / max(1, tot):.2f} %, exact path and digits "
              f"{100.0 * exact / max(1, tot):.2f} %")
        for x in bad:
            print(f"       e.g. {x}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="100,250,500", help="concurrent calls per step")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per step")
    ap.add_argument("--settle", type=float, default=6.0, help="seconds after a step's ramp")
    ap.add_argument("--setup-rate", type=float, default=60.0, help="new call slots per second")
    ap.add_argument("--prompt-seconds", type=float, default=6.0, help="menu prompt length")
    ap.add_argument("--leaf-seconds", type=float, default=2.0)
    ap.add_argument("--digit-delay", default="2.5,4.5", help="min,max s after a menu's prompt "
                    "starts before its digit")
    ap.add_argument("--timeout", type=float, default=8.0, help="menu no-input timeout")
    ap.add_argument("--number", default="299", help="the flow's dialled number")
    ap.add_argument("--ext-base", type=int, default=6000, help="first caller extension")
    ap.add_argument("--no-record", action="store_true", help="call recording off")
    ap.add_argument("--caller-audio", choices=("pcap", "noise"), default="pcap",
                    help="what callers send: SIPp's g711a.pcap speech (-25 dBFS, keeps the "
                    "in-band DTMF detector busy until the first RFC 4733 digit) or -50 dBFS noise")
    a = ap.parse_args()
    run_fast(run_ivr(a))


if __name__ == "__main__":
    main()
