"""The media engine: RTP endpoints, relaying, playback, recording, DTMF (asyncio shell).

Kept behind a narrow interface (create an endpoint, set its remote, connect two
endpoints, play, record, tap audio, DTMF callback) with no SIP or call
knowledge, so it can later run as one worker process per core.

Hot path (`Endpoint.datagram_received`): a bridged packet costs one header
rewrite (`OutStream.forward`) and one `sendto`; decoding happens only when a
recorder, detector or audio tap is attached.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ccswitch.media import g711, rtp
from ccswitch.media.diskio import DiskWriter
from ccswitch.media.dtmf import EventReceiver, GoertzelDetector, encode_event_packets
from ccswitch.media.player import FramePlayer
from ccswitch.media.rtp import InStats, OutStream
from ccswitch.media.wav import StereoRecorder

log = logging.getLogger("ccswitch.media")

_SEQ_TS = struct.Struct("!HI")
_TS = struct.Struct("!I")
FRAME = 0.02
SAMPLES = 160
FLUSH_SLOTS = 50  # ticks per second: each recorder is flushed once a second
POOL_MAX = 1024  # released RTP/RTCP port pairs kept bound for reuse
POOL_QUARANTINE = 2.0  # s before a released pair serves another call
_MASK32 = 0xFFFFFFFF

Addr = tuple[str, int]
AudioTap = Callable[[bytes], None]


class FrameSource:
    """Anything that yields 20 ms PCM16 frames (a prompt player, music on hold, a mixer)."""

    def next_frame(self) -> bytes | None:
        raise NotImplementedError


class PcmSource(FrameSource):
    """Plays PCM clips (prompts) once or looped."""

    __slots__ = ("player",)

    def __init__(self, pcm: bytes | list[bytes], loop: bool = False) -> None:
        self.player = FramePlayer(pcm, loop=loop)

    def next_frame(self) -> bytes | None:
        return self.player.next_frame()


class CallRecorder:
    """Places RTP audio of two directions on one stereo timeline.

    Positions come from RTP timestamps (so jitter does not smear audio), anchored
    to wall time at the first packet of each stream and re-anchored when a stream
    drifts more than half a second from wall time (SSRC change, source switch).
    """

    __slots__ = ("_anchor", "_closed", "path", "rec", "t0")

    def __init__(self, path: Path, now: float, writer: DiskWriter | None = None) -> None:
        if writer is None:  # (a writer makes the directories on its thread)
            path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rec = StereoRecorder(str(path), writer=writer)
        self.t0 = now
        self._anchor: list[tuple[int, int] | None] = [None, None]
        self._closed = False

    def put(self, side: int, pcm: bytes, ts: int, now: float) -> None:
        wall = int((now - self.t0) * 8000)
        a = self._anchor[side]
        if a is not None:
            d = (ts - a[0]) & _MASK32
            if d >= 0x80000000:
                d -= 0x100000000
            idx = a[1] + d
            if -4000 < idx - wall < 4000:
                self.rec.put(side, pcm, idx)
                return
        # the packet was sent `len` samples ago at the latest: anchor it ending now
        idx = max(0, wall - len(pcm) // 2)
        self._anchor[side] = (ts, idx)
        self.rec.put(side, pcm, idx)

    def flush(self, now: float, final: bool = False) -> None:
        if self._closed:
            return
        # leave 200 ms for late packets unless closing
        upto = int((now - self.t0) * 8000) - (0 if final else 1600)
        if upto > 0:
            self.rec.flush_until(upto)

    def close(self, now: float) -> None:
        if not self._closed:
            self.flush(now, final=True)
            self._closed = True
            self.rec.close(int((now - self.t0) * 8000))


class Endpoint(asyncio.DatagramProtocol):
    """One RTP port pair facing one remote party."""

    def __init__(self, engine: MediaEngine, port: int, symmetric: bool = True) -> None:
        self.engine = engine
        self.port = port
        self.symmetric = symmetric
        self.transport: asyncio.DatagramTransport | None = None
        self.rtcp: asyncio.DatagramTransport | None = None
        self.remote: Addr | None = None
        self.family = socket.AF_INET
        self.bind_host = ""  # the address the sockets are bound to (set by the engine)
        self.latched = False
        self._candidate: Addr | None = None
        self._candidate_n = 0
        self.codec_pt = 0
        self.dtmf_pt = -1
        self.out = OutStream()
        self.stats = InStats()
        self.rx_packets = 0
        self.tx_packets = 0
        self.peer: Endpoint | None = None
        self.send_enabled = True  # False while the remote holds us (sendonly/inactive)
        self.events = EventReceiver()
        self.inband: GoertzelDetector | None = None
        self.on_dtmf: Callable[[str, str], None] | None = None  # (digit, "rfc4733"|"inband")
        self.taps: list[AudioTap] = []  # decoded received audio (speech, mixer, monitor)
        self.recorder: CallRecorder | None = None
        self.rec_rx_side = 0
        self.rec_tx_side = 1
        self.source: FrameSource | None = None
        self.on_source_done: Callable[[], None] | None = None
        self.closed = False

    # ---- asyncio protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP port unreachable while the far end is not listening yet: not fatal

    def datagram_received(self, data: bytes, addr: Addr) -> None:
        # the hot path: one call per RTP packet, so locals and no helper calls when bridged
        if addr != self.remote:
            if len(addr) > 2:
                addr = (addr[0], addr[1])  # IPv6: drop flowinfo and scope id
            if addr != self.remote and not self._accept_source(addr):
                return
        if len(data) < 12:
            return
        b0 = data[0]
        if b0 >> 6 != 2:
            return
        pt = data[1] & 0x7F
        now = self.engine.now()
        if pt == self.codec_pt:
            self.rx_packets += 1
            seq, ts = _SEQ_TS.unpack_from(data, 2)
            self.stats.update(seq, ts, now)
            recorder = self.recorder
            if recorder is not None or self.taps or self.inband is not None:
                # plain 12-byte header (no CSRC, extension, padding): the usual case
                payload = data[12:] if b0 == 0x80 else _payload(data)
                pcm = g711.decode(pt, payload)
                if recorder is not None:
                    recorder.put(self.rec_rx_side, pcm, ts, now)
                for tap in self.taps:
                    tap(pcm)
                if self.inband is not None:
                    for d in self.inband.feed(pcm):
                        if self.on_dtmf is not None:
                            self.on_dtmf(d, "inband")
            peer = self.peer
            if peer is not None and peer.source is None:
                peer.relay(data, pt, now)
        elif pt == self.dtmf_pt:
            ts = _TS.unpack_from(data, 4)[0]
            cc = b0 & 0x0F
            payload = data[12 + 4 * cc :]
            digit = self.events.feed(ts, payload, bool(data[1] & 0x80), now)
            if digit is not None:
                # the phone sends RFC 4733: in-band detection would only double-count
                self.inband = None
                if self.on_dtmf is not None:
                    self.on_dtmf(digit, "rfc4733")
            peer = self.peer
            if peer is not None and peer.source is None and peer.dtmf_pt >= 0:
                peer.relay(data, pt, now)
        # else: comfort noise, unknown payloads, RTCP on the RTP port: ignored

    def _accept_source(self, addr: Addr) -> bool:
        """Symmetric RTP: latch to where the phone really sends from (NAT)."""
        if not self.symmetric:
            return False
        if self.remote is None or not self.latched:
            self.remote = addr
            self.latched = True
            return True
        # re-latch only when a new source persists (a stray packet must not hijack the call)
        if addr == self._candidate:
            self._candidate_n += 1
            if self._candidate_n >= 5:
                self.remote = addr
                self._candidate = None
                return True
        else:
            self._candidate = addr
            self._candidate_n = 1
        return False

    # ---- sending
    def relay(self, data: bytes, in_pt: int, now: float) -> None:
        """Send a packet received on the bridged endpoint out of this one."""
        remote = self.remote
        transport = self.transport
        if remote is None or not self.send_enabled or transport is None:
            return
        peer = self.peer
        peer_dtmf = peer.dtmf_pt if peer is not None else -2
        if in_pt == self.codec_pt:
            # same codec on both legs: a header rewrite (the common, fast case)
            pkt: bytes | bytearray = self.out.forward(data, now)
        elif in_pt == peer_dtmf:
            out_pt = self.dtmf_pt if self.dtmf_pt != in_pt else None
            pkt = self.out.forward(data, now, out_pt)
        else:
            # different codecs on the two legs: transcode G.711 u-law <-> A-law; the new
            # packet has a plain 12-byte header (no CSRC, extension or padding left)
            payload = _payload(data)
            hdr = bytes((0x80, data[1])) + data[2:12]
            pkt = self.out.forward(
                hdr + g711.transcode(payload, in_pt, self.codec_pt), now, self.codec_pt
            )
        transport.sendto(pkt, remote)
        self.tx_packets += 1
        recorder = self.recorder
        if recorder is not None and in_pt != self.dtmf_pt and in_pt != peer_dtmf:
            payload = data[12:] if data[0] == 0x80 else _payload(data)
            recorder.put(self.rec_tx_side, g711.decode(in_pt, payload),
                         _TS.unpack_from(pkt, 4)[0], now)

    def send_pcm(self, pcm: bytes, now: float) -> None:
        """Send one locally generated 20 ms frame (prompt, music, mixer output)."""
        pkt = self.out.make(self.codec_pt, g711.encode(self.codec_pt, pcm), now)
        if self.recorder is not None:
            # recorded even while the far end is unknown or holding: it is what we played
            self.recorder.put(self.rec_tx_side, pcm, _TS.unpack_from(pkt, 4)[0], now)
        remote = self.remote
        if remote is None or not self.send_enabled or self.transport is None:
            return
        self.transport.sendto(pkt, remote)
        self.tx_packets += 1

    def send_dtmf(self, digit: str, duration_ms: int = 160) -> None:
        """Send an RFC 4733 event (all packets of the event, paced by the engine)."""
        if self.dtmf_pt < 0:
            return
        self.engine._queue_event(self, encode_event_packets(digit, duration_ms))

    # ---- configuration
    def set_remote(self, host: str, port: int) -> None:
        if port == 0:
            self.remote = None
            return
        addr = (host, port)
        if not self.latched or (self.remote != addr and not self.symmetric):
            self.remote = addr

    def set_source(self, source: FrameSource | None,
                   on_done: Callable[[], None] | None = None) -> None:
        """Play frames from `source` instead of relaying the bridged peer."""
        self.source = source
        self.on_source_done = on_done
        if source is None:
            self.engine._playing.discard(self)
        else:
            self.engine._playing.add(self)

    def record_to(self, recorder: CallRecorder | None, rx_side: int = 0, tx_side: int = 1) -> None:
        self.recorder = recorder
        self.rec_rx_side, self.rec_tx_side = rx_side, tx_side

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.peer is not None and self.peer.peer is self:
            self.peer.peer = None
        self.peer = None
        self.engine._playing.discard(self)
        self.engine._release(self)  # keeps the sockets for a later call, or closes them
        # the channel's callbacks point back at it: drop them so that a finished call's
        # objects are freed by reference counting, not left to the cyclic GC
        self.on_dtmf = None
        self.on_source_done = None
        self.source = None
        self.taps = []
        self.recorder = None

    def info(self) -> dict[str, object]:
        return {
            "port": self.port,
            "remote": f"{self.remote[0]}:{self.remote[1]}" if self.remote else None,
            "codec": g711.CODEC_NAMES.get(self.codec_pt, str(self.codec_pt)),
            "rx_packets": self.rx_packets,
            "tx_packets": self.tx_packets,
            "lost": self.stats.lost,
            "jitter_ms": round(self.stats.jitter_ms, 2),
        }


def _payload(data: bytes) -> bytes:
    return rtp.payload(data) or b""


class _Sink(asyncio.DatagramProtocol):
    """RTCP socket: bound so the far end gets no ICMP errors; reports are ignored.
    Also what a pooled (idle) RTP socket delivers to."""


_SINK = _Sink()


def connect(a: Endpoint, b: Endpoint) -> None:
    """Relay media both ways between two endpoints (a two-party bridge)."""
    a.peer = b
    b.peer = a


def disconnect(a: Endpoint) -> None:
    b = a.peer
    a.peer = None
    if b is not None and b.peer is a:
        b.peer = None


class MediaEngine:
    def __init__(self, bind_host: str, port_min: int, port_max: int) -> None:
        self.bind_host = bind_host
        self.port_min = port_min + (port_min & 1)
        self.port_max = port_max
        self._used: set[int] = set()
        # released port pairs kept bound for reuse, per bind address, oldest first:
        # (release time, port, RTP transport, RTCP transport)
        self._pool: dict[str, deque[tuple[float, int, asyncio.DatagramTransport,
                                          asyncio.DatagramTransport]]] = {}
        self._pooled: set[int] = set()
        self._playing: set[Endpoint] = set()
        self._events: list[tuple[Endpoint, list[tuple[bytes, bool, bool]]]] = []
        self._recorders: set[CallRecorder] = set()
        self.disk = DiskWriter()  # recording writes: the loop never waits for the disk
        # recorders are flushed once a second, a slice of them per tick: all at once took
        # the loop away for tens of ms with a few hundred calls (a latency spike for all)
        self._flush_slots: list[set[CallRecorder]] = [set() for _ in range(FLUSH_SLOTS)]
        self._next_slot = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._t0 = 0.0
        self._tick_n = 0
        self.tick_count = 0  # ticks run so far (shared sources advance once per tick)
        self.tick_hooks: list[Callable[[float], None]] = []  # e.g. conference mixers
        self.now: Callable[[], float] = lambda: 0.0
        self.endpoints = 0
        self.max_tick_lag = 0.0  # since start
        self._window_lag = 0.0  # since the last take_max_tick_lag(reset=True)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.now = loop.time
        self._t0 = loop.time()
        self._tick_n = 0
        self._schedule()

    def stop(self) -> None:
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        now = self.now()
        for r in list(self._recorders):
            r.close(now)
        self._recorders.clear()
        self.disk.close()  # every recording complete on disk before the process ends
        for slot in self._flush_slots:
            slot.clear()
        for pool in self._pool.values():
            for _, _, t, rtcp in pool:
                t.close()
                rtcp.close()
        self._pool.clear()
        self._pooled.clear()
        self._loop = None  # endpoints closed from now on close their sockets

    def take_max_tick_lag(self, reset: bool = False) -> float:
        """The worst tick lateness (s) since the last reset (since start if never reset)."""
        lag = self._window_lag
        if reset:
            self._window_lag = 0.0
        return lag

    @property
    def ports_free(self) -> int:
        return (self.port_max - self.port_min + 1) // 2 - len(self._used)

    @property
    def bind_host6(self) -> str | None:
        """Where IPv6 media binds: the configured address if it is IPv6, else the IPv6
        counterpart of an IPv4 wildcard or loopback (dual-stack media)."""
        h = self.bind_host
        if ":" in h:
            return h
        if h == "0.0.0.0":
            return "::"
        if h.startswith("127."):
            return "::1"
        return None

    async def create_endpoint(self, symmetric: bool = True, ipv6: bool = False) -> Endpoint:
        loop = asyncio.get_running_loop()
        host = self.bind_host
        if ipv6 and self.bind_host6 is not None:
            host = self.bind_host6
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        n = (self.port_max - self.port_min + 1) // 2
        if n <= len(self._used):
            raise OSError(errno.EADDRINUSE, "RTP port range exhausted")
        pool = self._pool.get(host)
        if pool and self.now() - pool[0][0] >= POOL_QUARANTINE:
            # a port pair released by an earlier call: no socket, bind or loop registration
            _, port, t, rtcp = pool.popleft()
            self._pooled.discard(port)
            if not t.is_closing() and not rtcp.is_closing():
                self._used.add(port)
                ep = Endpoint(self, port, symmetric)
                ep.family = family
                ep.bind_host = host
                t.set_protocol(ep)
                ep.connection_made(t)
                ep.rtcp = rtcp
                self.endpoints += 1
                return ep
            t.close()
            rtcp.close()
        start = random.randrange(n)
        for i in range(n):
            port = self.port_min + 2 * ((start + i) % n)
            if port in self._used or port in self._pooled:
                continue
            rtp_sock = socket.socket(family, socket.SOCK_DGRAM)
            rtcp_sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                if family == socket.AF_INET6:
                    for s in (rtp_sock, rtcp_sock):
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                rtp_sock.bind((host, port))
                rtcp_sock.bind((host, port + 1))
            except OSError:
                rtp_sock.close()
                rtcp_sock.close()
                continue
            rtp_sock.setblocking(False)
            rtcp_sock.setblocking(False)
            self._used.add(port)
            ep = Endpoint(self, port, symmetric)
            ep.family = family
            ep.bind_host = host
            try:
                await loop.create_datagram_endpoint(lambda ep=ep: ep, sock=rtp_sock)  # type: ignore[misc]
                t, _ = await loop.create_datagram_endpoint(_Sink, sock=rtcp_sock)
            except BaseException:
                # cancelled (or failed) half-way: the pair goes back to the range
                self._used.discard(port)
                if ep.transport is not None:
                    ep.transport.close()
                else:
                    rtp_sock.close()
                rtcp_sock.close()
                raise
            ep.rtcp = t
            self.endpoints += 1
            return ep
        raise OSError(errno.EADDRINUSE, "no free RTP port in range")

    def _release(self, ep: Endpoint) -> None:
        if ep.port in self._used:
            self._used.discard(ep.port)
            self.endpoints -= 1
        t, rtcp = ep.transport, ep.rtcp
        ep.transport = None
        ep.rtcp = None
        if t is None or rtcp is None or t.is_closing() or rtcp.is_closing() \
                or self._loop is None or len(self._pooled) >= POOL_MAX:
            if t is not None:
                t.close()
            if rtcp is not None:
                rtcp.close()
            return
        # keep the bound pair for a later call (creating and registering two sockets is
        # most of an endpoint's set-up cost); what still arrives for the old call is
        # dropped meanwhile, and the quarantine keeps a late stream of the old call from
        # being latched by the next one
        t.set_protocol(_SINK)
        self._pool.setdefault(ep.bind_host, deque()).append((self.now(), ep.port, t, rtcp))
        self._pooled.add(ep.port)

    def new_recorder(self, path: Path) -> CallRecorder:
        rec = CallRecorder(path, self.now(), self.disk)
        self._recorders.add(rec)
        self._flush_slots[self._next_slot].add(rec)
        self._next_slot = (self._next_slot + 1) % FLUSH_SLOTS
        return rec

    def close_recorder(self, rec: CallRecorder) -> None:
        rec.close(self.now())
        self._recorders.discard(rec)
        for slot in self._flush_slots:
            slot.discard(rec)

    def _queue_event(self, ep: Endpoint, packets: list[tuple[bytes, bool, bool]]) -> None:
        self._events.append((ep, list(packets)))

    # ---- the 20 ms clock: one timer for every endpoint that plays something
    def _schedule(self) -> None:
        assert self._loop is not None
        self._tick_n += 1
        self._tick_handle = self._loop.call_at(self._t0 + self._tick_n * FRAME, self._tick)

    def _tick(self) -> None:
        self.tick_count += 1
        now = self.now()
        due = self._t0 + self._tick_n * FRAME
        lag = now - due
        if lag > self._window_lag:
            self._window_lag = lag
            if lag > self.max_tick_lag:
                self.max_tick_lag = lag
        if lag > 0.2:
            # the loop stalled: resynchronise instead of bursting many frames
            self._t0 = now - self._tick_n * FRAME
        for hook in list(self.tick_hooks):
            try:
                hook(now)
            except Exception:  # one broken room must not stop every stream
                log.exception("media tick hook failed")
        for ep in list(self._playing):
            src = ep.source
            if src is None:
                continue
            frame = src.next_frame()
            if frame is None:
                ep.source = None
                self._playing.discard(ep)
                cb, ep.on_source_done = ep.on_source_done, None
                if cb is not None:
                    cb()
                continue
            ep.send_pcm(frame, now)
        if self._events:
            still: list[tuple[Endpoint, list[tuple[bytes, bool, bool]]]] = []
            for ep, pkts in self._events:
                if ep.closed or ep.remote is None or ep.transport is None:
                    continue
                # one event packet per 20 ms, as a phone would send them
                payload, marker, is_end = pkts.pop(0)
                ep.transport.sendto(ep.out.make_event(ep.dtmf_pt, payload, now, marker, is_end),
                                    ep.remote)
                if is_end:
                    # the end packet is sent three times in a row (RFC 4733 §2.5.1.4)
                    while pkts and pkts[0][2]:
                        p2, m2, e2 = pkts.pop(0)
                        ep.transport.sendto(ep.out.make_event(ep.dtmf_pt, p2, now, m2, e2),
                                            ep.remote)
                if pkts:
                    still.append((ep, pkts))
            self._events = still
        for r in self._flush_slots[self.tick_count % FLUSH_SLOTS]:
            r.flush(now)
        self._schedule()
