"""Bounded loopback capture (tcpdump) and a small pcap/pcapng reader for SIP/RTP.

    async with Capture(tmp_path / "c.pcap", ports=[sip_port], port_ranges=[(30000, 31999)]):
        ...                                    # run the call
    cap = analyse(tmp_path / "c.pcap")
    [s.digits for s in cap.streams]            # RFC 4733 digits per RTP stream
    cap.sip                                    # SIP ladder (first lines)

The reader learns telephone-event payload types and media ports from the SDP
seen in the capture, so a pcap of one call is self-describing.  It decodes
UDP only (SIP over TCP is ignored).  G.711 payloads can be decoded with
:func:`decode_g711` to check what a peer really sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

DTMF_EVENTS = "0123456789*#ABCD"
_STATIC_PT = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 18: "G729/8000", 13: "CN/8000"}


# ------------------------------------------------------------------ capture
class Capture:
    """tcpdump on ``lo`` into ``path``, limited to the given ports and ``max_seconds``.

    Stops with SIGINT (flushes), then SIGKILL of our own PID.  The loopback is
    shared with other workloads: always give ports or a BPF ``bpf`` filter."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        ports: Iterable[int] = (),
        port_ranges: Iterable[tuple[int, int]] = (),
        bpf: str | None = None,
        max_seconds: float = 120.0,
        iface: str = "lo",
    ) -> None:
        self.path = Path(path)
        terms = [f"udp port {p} or tcp port {p}" for p in ports]
        terms += [f"udp portrange {a}-{b}" for a, b in port_ranges]
        if bpf:
            terms.append(f"({bpf})")
        if not terms:
            raise ValueError("give ports, port_ranges or bpf: the loopback is shared")
        self.filter = " or ".join(terms)
        self.max_seconds = max_seconds
        self.iface = iface
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_path = self.path.with_suffix(self.path.suffix + ".log")

    async def __aenter__(self) -> Capture:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, timeout: float = 5.0) -> None:
        if shutil.which("tcpdump") is None:
            raise RuntimeError("tcpdump not installed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        errf = open(self._stderr_path, "wb")  # noqa: SIM115 - handed to the child
        try:
            # -U/--immediate-mode: nothing is lost at stop; -Z root: keep the right to
            # write into root-owned dirs; `timeout` bounds the capture even if we die
            self._proc = await asyncio.create_subprocess_exec(
                "timeout", "-s", "INT", "-k", "3", str(int(self.max_seconds)),
                "tcpdump", "-i", self.iface, "-n", "-U", "--immediate-mode", "-s", "0",
                "-Z", "root", "-w", str(self.path), self.filter,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=errf,
                start_new_session=True,
            )
        finally:
            errf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self._stderr_path.read_text(errors="replace")
            if "listening on" in log:
                return
            if self._proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        await self.stop()
        log = self._stderr_path.read_text(errors="replace")
        raise RuntimeError(f"tcpdump did not start: {log}")

    async def stop(self) -> None:
        p = self._proc
        if p is None:
            return
        self._proc = None
        if p.returncode is None:
            # the child is `timeout`, in its own session: INT to the group reaches tcpdump
            for sig, wait in ((signal.SIGINT, 3.0), (signal.SIGKILL, 2.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)
                try:
                    await asyncio.wait_for(p.wait(), wait)
                    break
                except TimeoutError:
                    continue


# --------------------------------------------------------------- pcap read
def packets(path: str | os.PathLike[str]) -> Iterator[tuple[float, int, bytes]]:
    """Yield ``(time_s, linktype, frame)`` from a pcap or pcapng file."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        return
    magic = data[:4]
    little = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    big = (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    if magic in little + big:
        e = "<" if magic in little else ">"
        nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        linktype = struct.unpack(e + "I", data[20:24])[0] & 0x0FFFFFFF
        pos = 24
        while pos + 16 <= len(data):
            sec, frac, incl, _orig = struct.unpack(e + "IIII", data[pos : pos + 16])
            pos += 16
            yield sec + frac / (1e9 if nano else 1e6), linktype, data[pos : pos + incl]
            pos += incl
    elif magic == b"\x0a\x0d\x0d\x0a":
        pos, e = 0, "<"
        ifaces: list[tuple[int, float]] = []
        while pos + 12 <= len(data):
            btype = struct.unpack(e + "I", data[pos : pos + 4])[0]
            if btype == 0x0A0D0D0A:
                e = "<" if data[pos + 8 : pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
                ifaces = []
            blen = struct.unpack(e + "I", data[pos + 4 : pos + 8])[0]
            if blen < 12:
                break
            body = data[pos + 8 : pos + blen - 4]
            if btype == 1:
                lt = struct.unpack(e + "H", body[:2])[0]
                tsres = 1e-6
                opt = 8
                while opt + 4 <= len(body):
                    code, olen = struct.unpack(e + "HH", body[opt : opt + 4])
                    if code == 0:
                        break
                    if code == 9 and olen >= 1:
                        v = body[opt + 4]
                        tsres = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
                    opt += 4 + ((olen + 3) & ~3)
                ifaces.append((lt, tsres))
            elif btype == 6:
                iface, th, tl, cap, _ol = struct.unpack(e + "IIIII", body[:20])
                lt, tsres = ifaces[iface] if iface < len(ifaces) else (1, 1e-6)
                yield ((th << 32) | tl) * tsres, lt, body[20 : 20 + cap]
            elif btype == 3:
                lt = ifaces[0][0] if ifaces else 1
                yield 0.0, lt, body[4:]
            pos += blen
    else:
        raise ValueError("not a pcap/pcapng file")


def udp_of(linktype: int, frame: bytes) -> tuple[str, int, str, int, bytes] | None:
    """``(src_ip, sport, dst_ip, dport, payload)`` of a UDP frame, else None."""
    if linktype == 1:  # Ethernet (tcpdump on lo)
        off, etype = 14, struct.unpack("!H", frame[12:14])[0]
        while etype == 0x8100 and len(frame) >= off + 4:
            etype = struct.unpack("!H", frame[off + 2 : off + 4])[0]
            off += 4
    elif linktype == 113:  # Linux cooked
        off, etype = 16, struct.unpack("!H", frame[14:16])[0]
    elif linktype == 276:  # Linux cooked v2
        off, etype = 20, struct.unpack("!H", frame[0:2])[0]
    elif linktype == 0:  # BSD loopback
        fam = struct.unpack("<I", frame[:4])[0]
        off, etype = 4, 0x0800 if fam == 2 else 0x86DD
    elif linktype in (101, 228, 229, 12):  # raw IP
        off, etype = 0, 0x0800 if frame[0] >> 4 == 4 else 0x86DD
    else:
        return None
    ip = frame[off:]
    if etype == 0x0800 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 17 or struct.unpack("!H", ip[6:8])[0] & 0x1FFF:
            return None
        src, dst = ".".join(map(str, ip[12:16])), ".".join(map(str, ip[16:20]))
        udp = ip[ihl:]
    elif etype == 0x86DD and len(ip) >= 40:
        if ip[6] != 17:
            return None

        def v6(b: bytes) -> str:
            return ":".join(f"{struct.unpack('!H', b[i : i + 2])[0]:x}" for i in range(0, 16, 2))

        src, dst, udp = v6(ip[8:24]), v6(ip[24:40]), ip[40:]
    else:
        return None
    if len(udp) < 8:
        return None
    sport, dport, ulen = struct.unpack("!HHH", udp[:6])
    return src, sport, dst, dport, udp[8:ulen] if ulen >= 8 else udp[8:]


# ---------------------------------------------------------------- analysis
_SIP_START = re.compile(rb"^(?:[A-Z]+ [^ ]+ SIP/2\.0|SIP/2\.0 \d{3})")


@dataclass
class SipMessage:
    t: float
    src: str
    dst: str
    first_line: str
    call_id: str | None
    text: str


@dataclass
class RtpEvent:
    event: int
    t: float
    timestamp: int
    end: bool
    duration: int
    volume: int
    packets: int
    marker: bool

    @property
    def digit(self) -> str:
        return DTMF_EVENTS[self.event] if self.event < 16 else "?"


@dataclass
class RtpStream:
    src: str
    dst: str
    ssrc: int
    pts: dict[int, int] = field(default_factory=dict)
    packets: int = 0
    first: float = 0.0
    last: float = 0.0
    lost: int = 0
    marker_packets: int = 0
    events: list[RtpEvent] = field(default_factory=list)
    payloads: list[tuple[float, int, int, int, bytes]] = field(default_factory=list, repr=False)
    """(time, pt, seq, timestamp, payload) of every packet, in capture order."""

    @property
    def digits(self) -> str:
        return "".join(e.digit for e in self.events)

    @property
    def src_port(self) -> int:
        return int(self.src.rsplit(":", 1)[1])

    @property
    def dst_port(self) -> int:
        return int(self.dst.rsplit(":", 1)[1])

    def audio(self, pt: int | None = None) -> npt.NDArray[np.float64]:
        """Decoded G.711 audio of this stream (packets of ``pt``, default: the most used
        of 0/8), concatenated in sequence order; PT 0 = mu-law, 8 = A-law."""
        if pt is None:
            cands = [p for p in (0, 8) if p in self.pts]
            if not cands:
                return np.zeros(0)
            pt = max(cands, key=lambda p: self.pts[p])
        chunks = sorted((seq, pl) for _t, p, seq, _ts, pl in self.payloads if p == pt)
        return decode_g711(b"".join(pl for _s, pl in chunks), "ulaw" if pt == 0 else "alaw")


@dataclass
class CaptureAnalysis:
    sip: list[SipMessage]
    sdp_ports: dict[int, dict[int, str]]
    event_pts: list[int]
    streams: list[RtpStream]

    def streams_to(self, port: int) -> list[RtpStream]:
        return [s for s in self.streams if s.dst_port == port]

    def streams_from(self, port: int) -> list[RtpStream]:
        return [s for s in self.streams if s.src_port == port]

    def digits(self, *, to_port: int | None = None, from_port: int | None = None) -> list[str]:
        return [
            s.digits for s in self.streams
            if s.digits and (to_port is None or s.dst_port == to_port)
            and (from_port is None or s.src_port == from_port)
        ]


def parse_sdp(body: str) -> tuple[str | None, list[tuple[int, dict[int, str]]]]:
    """``(connection ip, [(media port, {pt: "enc/rate"})])`` of an SDP body."""
    ip: str | None = None
    media: list[tuple[int, dict[int, str]]] = []
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("c=IN IP"):
            ip = line.split()[-1]
        elif line.startswith("m=audio"):
            parts = line.split()
            pts = {int(p): _STATIC_PT.get(int(p), "?") for p in parts[3:] if p.isdigit()}
            media.append((int(parts[1]), pts))
        elif line.startswith("a=rtpmap:") and media:
            m = re.match(r"a=rtpmap:(\d+)\s+(\S+)", line)
            if m:
                media[-1][1][int(m.group(1))] = m.group(2)
    return ip, media


def analyse(
    path: str | os.PathLike[str], *, ports: Iterable[int] = (), event_pts: Iterable[int] = (101,),
    keep_payloads: bool = True,
) -> CaptureAnalysis:
    """SIP messages, RTP streams and RFC 4733 events of a capture.

    RTP is looked for on the media ports announced in SDP (plus ``ports``); with no
    SDP at all every non-SIP UDP flow that looks like RTP is used."""
    sip: list[SipMessage] = []
    sip_ports: set[int] = set()
    sdp_ports: dict[int, dict[int, str]] = {}
    udp: list[tuple[float, str, int, str, int, bytes]] = []
    t0: float | None = None
    for ts, lt, frame in packets(path):
        u = udp_of(lt, frame)
        if u is None:
            continue
        if t0 is None:
            t0 = ts
        src, sp, dst, dp, pl = u
        if _SIP_START.match(pl[:64]):
            text = pl.decode("utf-8", "replace")
            head, _, body = text.partition("\r\n\r\n")
            first = head.splitlines()[0] if head else ""
            cid = re.search(r"(?im)^(?:call-id|i)\s*:\s*(\S+)", head)
            sip.append(SipMessage(round(ts - t0, 4), f"{src}:{sp}", f"{dst}:{dp}", first,
                                  cid.group(1) if cid else None, text))
            sip_ports.update((sp, dp))
            if "application/sdp" in head.lower() and body:
                for port, pts in parse_sdp(body)[1]:
                    if port:
                        sdp_ports.setdefault(port, {}).update(pts)
            continue
        udp.append((ts - t0, src, sp, dst, dp, pl))
    want = set(sdp_ports) | set(ports)
    heuristic = not want
    evpts = set(event_pts)
    for pts in sdp_ports.values():
        evpts.update(pt for pt, enc in pts.items() if enc.lower().startswith("telephone-event"))
    streams: dict[tuple[str, str, int], RtpStream] = {}
    seqs: dict[tuple[str, str, int], list[int]] = {}
    evmap: dict[tuple[str, str, int], dict[int, RtpEvent]] = {}
    for t, src, sp, dst, dp, pl in udp:
        if heuristic:
            if sp in sip_ports or dp in sip_ports:
                continue
        elif sp not in want and dp not in want:
            continue
        if len(pl) < 12 or pl[0] >> 6 != 2:
            continue
        pt = pl[1] & 0x7F
        if 72 <= pt <= 76:  # RTCP
            continue
        marker = bool(pl[1] & 0x80)
        cc = pl[0] & 0x0F
        seq, rts, ssrc = struct.unpack("!HII", pl[2:12])
        hlen = 12 + 4 * cc
        if pl[0] & 0x10 and len(pl) >= hlen + 4:
            hlen += 4 + 4 * struct.unpack("!H", pl[hlen + 2 : hlen + 4])[0]
        payload = pl[hlen:]
        if pl[0] & 0x20 and payload:
            payload = payload[: -payload[-1]]
        key = (f"{src}:{sp}", f"{dst}:{dp}", ssrc)
        st = streams.get(key)
        if st is None:
            st = streams[key] = RtpStream(key[0], key[1], ssrc, first=t)
            seqs[key] = []
            evmap[key] = {}
        st.packets += 1
        st.last = t
        st.pts[pt] = st.pts.get(pt, 0) + 1
        st.marker_packets += marker
        seqs[key].append(seq)
        if keep_payloads:
            st.payloads.append((t, pt, seq, rts, payload))
        if pt in evpts and len(payload) >= 4:
            ev, flags, dur = payload[0], payload[1], struct.unpack("!H", payload[2:4])[0]
            e = evmap[key].get(rts)
            if e is None:
                e = RtpEvent(ev, round(t, 4), rts, False, 0, flags & 0x3F, 0, marker)
                evmap[key][rts] = e
            e.packets += 1
            e.duration = max(e.duration, dur)
            e.end = e.end or bool(flags & 0x80)
    out = []
    for key, st in streams.items():
        s = seqs[key]
        if s:
            unwrapped, base, prev = [], 0, s[0]
            for v in s:
                if v < prev and prev - v > 30000:
                    base += 65536
                unwrapped.append(v + base)
                prev = v
            st.lost = max(0, max(unwrapped) - min(unwrapped) + 1 - len(set(s)))
        st.events = sorted(evmap[key].values(), key=lambda e: e.t)
        st.first, st.last = round(st.first, 4), round(st.last, 4)
        out.append(st)
    out.sort(key=lambda s: s.first)
    return CaptureAnalysis(sip, sdp_ports, sorted(evpts), out)


# ------------------------------------------------------------------- G.711
def _ulaw_table() -> npt.NDArray[np.float64]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exp, mant = u & 0x80, (u >> 4) & 0x07, u & 0x0F
    mag = (((mant << 3) + 0x84) << exp) - 0x84
    return np.where(sign != 0, -mag, mag).astype(np.float64) / 32768.0


def _alaw_table() -> npt.NDArray[np.float64]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exp, mant = a & 0x80, (a >> 4) & 0x07, a & 0x0F
    mag = np.where(exp == 0, (mant << 4) + 8, ((mant << 4) + 0x108) << np.maximum(exp - 1, 0))
    return np.where(sign != 0, mag, -mag).astype(np.float64) / 32768.0


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def decode_g711(data: bytes, law: str) -> npt.NDArray[np.float64]:
    """G.711 bytes -> floats (ITU-T G.711 expansion; ``law`` = "ulaw" or "alaw")."""
    idx = np.frombuffer(data, dtype=np.uint8)
    return (_ULAW if law == "ulaw" else _ALAW)[idx]
