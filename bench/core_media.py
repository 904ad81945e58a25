"""N concurrent bridged, recorded calls with RTP both ways: loss, added latency and jitter.

    .venv/bin/python bench/core_media.py [--calls 100,200,300,400,500] [--seconds 20]

Caller side: this process (asyncio + uvloop) sets up the calls itself (INVITE, 401,
ACK, INVITE with digest credentials as 1001, 200, ACK) and then sends one 20 ms PCMU
packet per call and frame, with the call index, a sequence number and the send time
in the payload.  One timer serves every call: it fires four times per frame, each time
for a quarter of the calls (phones are not in phase; one burst of N packets per frame
would measure the burst's queueing rather than the server).  Callee: SIPp uas_echo.xml with
-rtp_echo registered as 1002, which sends every packet back to where it came from,
so each packet crosses ccswitch twice (caller -> caller leg -> callee leg -> SIPp and
back), and both directions are recorded (recordings are ON).

Per step (N calls up), the same generator first sends straight to the SIPp echo port
for a few seconds (the baseline: generator + echo + kernel), then through ccswitch.
Printed per step: packets sent, loss %, round-trip p50/p99 and ADDED p50/p99 (through
ccswitch minus baseline), added jitter (RFC 3550 interarrival jitter of the echoed
stream, mean over calls), the engine's worst 20 ms tick lag, and CPU (share of one
core) of the server, this generator and SIPp, so the reader sees the 2-core split.
Not a test: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.core_cps import cpu_seconds, register_contact
from ccswitch.sip.auth import build_authorization
from ccswitch.sip.message import Request, Response, parse_message
from ccswitch.sip.sdp import parse_sdp
from tests.e2e.server import CcswitchServer
from tests.peers.sipp import start_sipp

_HDR = struct.Struct("!BBHII")
_META = struct.Struct("!IId")  # call index, sequence, send time (loop clock)
_FILL = b"\xff" * (160 - _META.size)  # PCMU silence after the metadata
FRAME = 0.02
_clock = time.perf_counter


def pct(vals: list[float], p: float) -> float:
    if not vals:
        return float("nan")
    return vals[min(len(vals) - 1, max(0, int(len(vals) * p / 100.0 + 0.5) - 1))]


class RtpSide(asyncio.DatagramProtocol):
    """One call's RTP socket: sends what the tick hands it, measures what comes back."""

    __slots__ = ("bench", "idx", "jitter", "last_transit", "received", "transport")

    def __init__(self, bench: MediaBench, idx: int) -> None:
        self.bench = bench
        self.idx = idx
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.jitter = 0.0
        self.last_transit = -1.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        b = self.bench
        if len(data) < 12 + _META.size or not (b.measuring or b.rx_tail):
            return
        _idx, seq, sent = _META.unpack_from(data, 12 + 4 * (data[0] & 0x0F))
        if seq < b.window_seq or seq >= b.window_end:
            return  # sent outside this window
        rtt = _clock() - sent
        b.rtts.append(rtt)
        self.received += 1
        # RFC 3550 A.8 interarrival jitter, on the send clock rather than RTP timestamps
        if self.last_transit >= 0.0:
            d = abs(rtt - self.last_transit)
            self.jitter += (d - self.jitter) / 16.0
        self.last_transit = rtt

    def error_received(self, exc: Exception) -> None:
        pass


class Call:
    __slots__ = ("call_id", "contact", "dest", "echo", "from_tag", "idx", "rtp", "rtp_port",
                 "ssrc", "to")

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.call_id = f"media-{idx}-{random.getrandbits(40):x}@127.0.0.1"
        self.from_tag = f"t{random.getrandbits(40):x}"
        self.to = ""  # To with the server's tag, once answered
        self.contact = ""  # the server's Contact URI (in-dialog Request-URI)
        self.dest: tuple[str, int] | None = None  # where the server wants our RTP
        self.echo: tuple[str, int] | None = None  # SIPp's echo port (baseline)
        self.rtp: RtpSide | None = None
        self.rtp_port = 0
        self.ssrc = random.getrandbits(32)


class SipClient(asyncio.DatagramProtocol):
    """Minimal UAC over one UDP socket: one request in flight per call, retransmitted."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.waiting: dict[str, tuple[int, asyncio.Future[Response]]] = {}
        self.acks: dict[str, bytes] = {}  # call-id -> ACK for the 2xx (re-sent on retransmits)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            msg = parse_message(data)
        except Exception:
            return
        if isinstance(msg, Request):
            if msg.method in ("BYE", "OPTIONS", "NOTIFY", "INFO", "UPDATE"):
                self.send(_response_to(msg, 200))
            return
        cid = msg.call_id
        w = self.waiting.get(cid)
        if w is not None and msg.cseq[0] == w[0] and msg.status >= 200 and not w[1].done():
            w[1].set_result(msg)
        elif msg.status >= 200 and msg.cseq[1] == "INVITE" and cid in self.acks:
            self.send(self.acks[cid])  # our ACK was lost: the 2xx is retransmitted

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.server)

    async def request(self, cid: str, cseq: int, data: bytes) -> Response:
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.waiting[cid] = (cseq, fut)
        interval = 0.5
        try:
            for _ in range(7):
                self.send(data)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), interval)
                except TimeoutError:
                    interval = min(interval * 2, 4.0)
            raise TimeoutError(f"no final response for {cid} CSeq {cseq}")
        finally:
            self.waiting.pop(cid, None)


def _response_to(req: Request, status: int) -> bytes:
    hs = "".join(f"{n}: {v}\r\n" for n, v in req.headers
                 if n in ("Via", "From", "To", "Call-ID", "CSeq"))
    return f"SIP/2.0 {status} OK\r\n{hs}Content-Length: 0\r\n\r\n".encode()


class MediaBench:
    def __init__(self, srv: CcswitchServer, sip: SipClient, echo: tuple[str, int]) -> None:
        self.srv = srv
        self.sip = sip
        self.echo = echo
        self.loop = asyncio.get_running_loop()
        self.calls: list[Call] = []
        self.measuring = False
        self.rx_tail = False
        self.baseline = False
        self.seq = 0  # one sequence for every call: the frame number
        self.window_seq = 0
        self.window_end = 0
        self.rtts: list[float] = []
        self.sent = 0
        self.failed_setups = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._n = 0

    # ---- signalling
    def _invite(self, c: Call, cseq: int, branch: str, auth: str | None) -> bytes:
        uri = f"sip:1002@{self.srv.domain}"
        sdp = (f"v=0\r\no=bench {c.idx} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
               f"t=0 0\r\nm=audio {c.rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
               f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
               f"a=sendrecv\r\n")
        lines = [
            f"INVITE {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip.port};branch={branch};rport",
            f"From: <sip:1001@{self.srv.domain}>;tag={c.from_tag}",
            f"To: <sip:1002@{self.srv.domain}>",
            f"Call-ID: {c.call_id}",
            f"CSeq: {cseq} INVITE",
            f"Contact: <sip:1001@127.0.0.1:{self.sip.port}>",
            "Max-Forwards: 70",
            "Content-Type: application/sdp",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        lines.append(f"Content-Length: {len(sdp)}")
        return ("\r\n".join(lines) + "\r\n\r\n" + sdp).encode()

    def _in_dialog(self, c: Call, method: str, cseq: int, branch: str) -> bytes:
        return (f"{method} {c.contact} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip.port};branch={branch};rport\r\n"
                f"From: <sip:1001@{self.srv.domain}>;tag={c.from_tag}\r\n"
                f"To: {c.to}\r\nCall-ID: {c.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()

    async def setup(self, c: Call) -> bool:
        proto = RtpSide(self, c.idx)
        t, _ = await self.loop.create_datagram_endpoint(lambda: proto,
                                                        local_addr=("127.0.0.1", 0))
        c.rtp = proto
        c.rtp_port = t.get_extra_info("sockname")[1]
        c.echo = self.echo
        b1 = f"z9hG4bK-{c.idx}-1-{random.getrandbits(32):x}"
        r = await self.sip.request(c.call_id, 1, self._invite(c, 1, b1, None))
        if r.status not in (401, 407):
            return False
        ack = (f"ACK sip:1002@{self.srv.domain} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip.port};branch={b1};rport\r\n"
               f"From: <sip:1001@{self.srv.domain}>;tag={c.from_tag}\r\n"
               f"To: {r.get('To')}\r\nCall-ID: {c.call_id}\r\nCSeq: 1 ACK\r\n"
               f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        self.sip.send(ack)
        hdr = "WWW-Authenticate" if r.status == 401 else "Proxy-Authenticate"
        auth = build_authorization(r.get(hdr) or "", "INVITE", f"sip:1002@{self.srv.domain}",
                                   "1001", "secret1001")
        b2 = f"z9hG4bK-{c.idx}-2-{random.getrandbits(32):x}"
        r = await self.sip.request(c.call_id, 2, self._invite(c, 2, b2, auth))
        if r.status != 200:
            return False
        c.to = r.get("To") or ""
        contacts = r.contacts()
        c.contact = str(contacts[0].uri) if contacts else f"sip:{self.srv.domain}"
        sd = parse_sdp(r.body)
        m = sd.media[0]
        conn = m.connection or sd.connection
        c.dest = (conn.address if conn is not None else "127.0.0.1", m.port)
        ack2 = self._in_dialog(c, "ACK", 2, f"z9hG4bK-{c.idx}-3-{random.getrandbits(32):x}")
        self.sip.acks[c.call_id] = ack2
        self.sip.send(ack2)
        return True

    async def hangup(self, c: Call) -> None:
        with contextlib.suppress(TimeoutError):
            await self.sip.request(c.call_id, 3, self._in_dialog(
                c, "BYE", 3, f"z9hG4bK-{c.idx}-4-{random.getrandbits(32):x}"))
        self.sip.acks.pop(c.call_id, None)
        if c.rtp is not None and c.rtp.transport is not None:
            c.rtp.transport.close()

    async def grow(self, n: int, rate: float) -> None:
        """Set up calls until `n` are up, at most `rate` new calls per second."""
        sem = asyncio.Semaphore(32)
        pending: list[asyncio.Task[None]] = []

        async def one(c: Call) -> None:
            async with sem:
                ok = False
                try:
                    ok = await self.setup(c)
                except (TimeoutError, OSError, ValueError) as e:
                    print(f"   call {c.idx} set-up failed: {e}", flush=True)
                if ok:
                    self.calls.append(c)
                else:
                    self.failed_setups += 1

        start = len(self.calls) + self.failed_setups
        for i in range(start, start + n - len(self.calls)):
            pending.append(asyncio.ensure_future(one(Call(i))))
            await asyncio.sleep(1.0 / rate)
        await asyncio.gather(*pending)

    # ---- media: one timer for every call
    # Phones are not in phase: each call gets one of SLOTS phases of the 20 ms frame, and
    # the timer fires once per phase for the calls in it (one timer, no task per call).
    SLOTS = 4

    def start_media(self) -> None:
        self._t0 = self.loop.time()
        self._n = 0
        self._schedule()

    def _schedule(self) -> None:
        self._n += 1
        self._tick_handle = self.loop.call_at(self._t0 + self._n * FRAME / self.SLOTS,
                                              self._tick)

    def _tick(self) -> None:
        slot = self._n % self.SLOTS
        if slot == 0:
            self.seq += 1
        now = _clock()  # the loop clock has 1 ms steps (uvloop): too coarse for latency
        seq = self.seq
        ts = (seq * 160) & 0xFFFFFFFF
        hdr_pack = _HDR.pack
        meta_pack = _META.pack
        baseline = self.baseline
        sent = 0
        for c in self.calls[slot::self.SLOTS]:
            rtp = c.rtp
            dest = c.echo if baseline else c.dest
            if rtp is None or rtp.transport is None or dest is None:
                continue
            pkt = hdr_pack(0x80, 0, seq & 0xFFFF, ts, c.ssrc) + meta_pack(c.idx, seq, now) + _FILL
            rtp.transport.sendto(pkt, dest)
            sent += 1
        if self.measuring and self.window_seq <= seq < self.window_end:
            self.sent += sent
        self._schedule()

    def begin_window(self) -> None:
        for c in self.calls:
            if c.rtp is not None:
                c.rtp.received = 0
                c.rtp.jitter = 0.0
                c.rtp.last_transit = -1.0
        self.rtts = []
        self.sent = 0
        self.window_seq = self.seq + 1  # the next frame: every phase of it
        self.window_end = 1 << 62
        self.measuring = True


def api_get(sock_path: Path, path: str) -> dict[str, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(5.0)
        s.connect(str(sock_path))
        s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return json.loads(data.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def measure(b: MediaBench, seconds: float, server_pid: int | None, uas_pid: int
                  ) -> dict[str, float]:
    """One window of `seconds`: counts, RTT distribution, CPU of each process."""
    b.begin_window()
    c_self, c_uas, t0 = self_cpu(), cpu_seconds(uas_pid), time.monotonic()
    c_srv = cpu_seconds(server_pid) if server_pid else 0.0
    await asyncio.sleep(seconds)
    # the window ends: later packets are neither counted as sent nor as received, and
    # the packets of the window still in flight get a short tail to come back
    b.window_end = b.seq + 1
    while b.seq < b.window_end:  # the frame in progress goes out whole
        await asyncio.sleep(FRAME / 4)
    sent = b.sent
    b.measuring = False
    b.rx_tail = True
    await asyncio.sleep(0.4)
    b.rx_tail = False
    dt = time.monotonic() - t0
    rtts = sorted(b.rtts)
    received = sum(c.rtp.received for c in b.calls if c.rtp is not None)
    jit = [c.rtp.jitter for c in b.calls if c.rtp is not None and c.rtp.received > 1]
    return {
        "sent": sent, "received": received,
        "loss": max(0.0, (sent - received) / sent * 100.0) if sent else float("nan"),
        "p50": pct(rtts, 50) * 1000, "p99": pct(rtts, 99) * 1000,
        "jitter": (sum(jit) / len(jit) * 1000) if jit else float("nan"),
        "cpu_self": (self_cpu() - c_self) / dt * 100,
        "cpu_uas": (cpu_seconds(uas_pid) - c_uas) / dt * 100,
        "cpu_srv": ((cpu_seconds(server_pid) - c_srv) / dt * 100) if server_pid else 0.0,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", default="100,200,300,400,500")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per step")
    ap.add_argument("--baseline-seconds", type=float, default=5.0)
    ap.add_argument("--setup-rate", type=float, default=100.0, help="new calls per second")
    ap.add_argument("--no-record", action="store_true", help="recording off (comparison)")
    a = ap.parse_args()
    steps = [int(x) for x in a.calls.split(",")]
    work = Path(tempfile.mkdtemp(prefix="ccsw-media."))
    srv = CcswitchServer(work / "server", {
        "logging": {"level": "warning"},
        "recordings": {"enabled": not a.no_record, "directory": "recordings"},
        "rtp": {"port_min": 40000, "port_max": 59999},
        "calls": {"no_answer_timeout": 30},
    })
    srv.start()
    try:
        assert srv.proc is not None
        uas = await start_sipp("uas_echo.xml", None, calls=10, limit=max(steps) + 100,
                               rtp_echo=True, extra_args=["-m", "100000000"],
                               timeout=3600, workdir=work / "uas")
        register_contact(srv.port, "1002", "secret1002", uas.port)
        loop = asyncio.get_running_loop()
        _, sip = await loop.create_datagram_endpoint(
            lambda: SipClient(("127.0.0.1", srv.port)), local_addr=("127.0.0.1", 0))
        b = MediaBench(srv, sip, ("127.0.0.1", uas.media_port))
        b.start_media()
        print(f"server pid {srv.proc.pid}, SIPp echo pid {uas.pid} (media port "
              f"{uas.media_port}), generator pid {os.getpid()}, recording "
              f"{'off' if a.no_record else 'on'}; {os.cpu_count()} cores")
        print(f"{'calls':>5} {'sent':>8} {'loss%':>7} {'rtt p50/p99 ms':>15} "
              f"{'base p50/p99':>13} {'ADDED p50/p99 ms':>16} {'+jitter ms':>10} "
              f"{'tick lag ms':>11} {'cpu srv/gen/sipp %':>19}", flush=True)
        for n in steps:
            await b.grow(n, a.setup_rate)
            await asyncio.sleep(1.0)
            b.baseline = True
            await asyncio.sleep(0.5)
            base = await measure(b, a.baseline_seconds, None, uas.pid)
            b.baseline = False
            await asyncio.sleep(1.0)
            api_get(srv.socket_path, "/api/status?reset=1")
            via = await measure(b, a.seconds, srv.proc.pid, uas.pid)
            st = api_get(srv.socket_path, "/api/status")
            lag = st.get("media", {}).get("max_tick_lag_ms", float("nan"))  # type: ignore[union-attr]
            print(f"{len(b.calls):>5} {via['sent']:>8.0f} {via['loss']:>7.3f} "
                  f"{via['p50']:>7.2f}/{via['p99']:<7.2f} "
                  f"{base['p50']:>6.2f}/{base['p99']:<6.2f} "
                  f"{via['p50'] - base['p50']:>8.2f}/{via['p99'] - base['p99']:<7.2f} "
                  f"{via['jitter'] - base['jitter']:>10.2f} {lag:>11} "
                  f"{via['cpu_srv']:>7.0f}/{via['cpu_self']:.0f}/{via['cpu_uas']:.0f}"
                  + (f"  (base loss {base['loss']:.3f}%)" if base["loss"] > 0.001 else ""),
                  flush=True)
            if b.failed_setups:
                print(f"   {b.failed_setups} call set-ups failed so far", flush=True)
        if b._tick_handle is not None:
            b._tick_handle.cancel()
        await asyncio.gather(*(b.hangup(c) for c in b.calls[:]))
        await uas.stop()
    finally:
        srv.stop()
        rec = work / "server" / "recordings"
        if rec.exists():
            # recordings are large (32 kB/s per call): keep the sizes, drop the audio
            total = sum(p.stat().st_size for p in rec.rglob("*.wav"))
            print(f"recordings: {len(list(rec.rglob('*.wav')))} files, {total / 1e6:.0f} MB")
            import shutil

            shutil.rmtree(rec, ignore_errors=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
