"""RTP packets (RFC 3550): header parsing and building, SSRC/seq/ts rewriting, receive stats.

Sans-IO: bytes in, bytes out, wall time passed in as ``now`` (seconds, monotonic).
Everything here runs once per packet, so it sticks to `struct` and integer arithmetic.
"""

from __future__ import annotations

import random
import struct

__all__ = [
    "InStats",
    "OutStream",
    "build_packet",
    "is_rtcp",
    "parse_header",
    "payload",
]

_HDR = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, seq, ts, ssrc
_REWRITE = struct.Struct("!BHII")  # M/PT, seq, ts, ssrc (packed at offset 1)
_TS_SSRC = struct.Struct("!II")  # at offset 4
_EXT = struct.Struct("!HH")  # profile, length in 32-bit words
_MASK32 = 0xFFFFFFFF
_HALF32 = 0x80000000


def parse_header(data: bytes) -> tuple[int, int, int, int, int, int] | None:
    """Return ``(pt, marker, seq, ts, ssrc, payload_offset)`` or None if not valid RTP.

    Skips CSRCs and a header extension. None when the version is not 2, the packet is
    too short for what its header announces, or its padding count is impossible.
    Use `payload()` to get the payload without the padding.
    """
    n = len(data)
    if n < 12:
        return None
    b0, b1, seq, ts, ssrc = _HDR.unpack_from(data)
    if b0 >> 6 != 2:
        return None
    off = 12 + ((b0 & 0x0F) << 2)
    if b0 & 0x10:
        if off + 4 > n:
            return None
        off += 4 + (_EXT.unpack_from(data, off)[1] << 2)
    if off > n:
        return None
    if b0 & 0x20:
        pad = data[n - 1]
        if pad == 0 or off + pad > n:
            return None
    return b1 & 0x7F, b1 >> 7, seq, ts, ssrc, off


def payload(data: bytes) -> bytes | None:
    """The payload of an RTP packet with CSRCs, extension and padding removed."""
    hdr = parse_header(data)
    if hdr is None:
        return None
    end = len(data) - data[-1] if data[0] & 0x20 else len(data)
    return data[hdr[5] : end]


def build_packet(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """A minimal RTP packet (no CSRC, no extension, no padding)."""
    return (
        _HDR.pack(0x80, (0x80 if marker else 0) | (pt & 0x7F), seq & 0xFFFF, ts & _MASK32, ssrc)
        + payload
    )


def is_rtcp(data: bytes) -> bool:
    """True if a packet on an rtcp-mux port is RTCP rather than RTP.

    RFC 5761 section 4: RTCP packet types occupy 192-223 in the second byte, a range
    RTP cannot use once payload types 64-95 are avoided. This covers SR/RR/SDES/BYE/APP
    (200-204) as well as feedback (205, 206) and XR (207).
    """
    return len(data) >= 8 and data[0] >> 6 == 2 and 192 <= data[1] <= 223


class OutStream:
    """Our outgoing RTP stream towards one peer.

    It has its own random SSRC, sequence and timestamp base. Forwarded packets (from the
    other leg) and locally generated ones (`make`, prompts and tones) share one timeline:

    * `forward` maps the incoming timestamp through an offset. The offset is re-anchored
      when the incoming SSRC changes, when the incoming timestamp jumps by more than
      ``max_jump`` seconds, and after locally generated packets, so that the outgoing
      timestamp continues from the last one plus the elapsed wall time (or right after
      the last packet, if that is later).
    * `make` advances the timestamp by the samples of each packet; after a pause longer
      than ``gap_tolerance`` seconds (nothing sent) it jumps by the wall time instead.

    The first packet after a re-anchor carries the marker bit (a new talkspurt), which
    tells the far jitter buffer to resynchronise. ``rate`` is the RTP clock rate; a
    forwarded packet is assumed to last 20 ms when the timeline switches right after it.
    """

    __slots__ = (
        "_event_now",
        "_event_ts",
        "_frame",
        "_fwd",
        "_gap",
        "_in_ssrc",
        "_in_ts",
        "_jump",
        "_last_now",
        "_last_ts",
        "_mark",
        "_next_ts",
        "_offset",
        "_rate",
        "_seq",
        "_span",
        "octets",
        "packets",
        "ssrc",
    )

    def __init__(
        self,
        ssrc: int | None = None,
        seq: int | None = None,
        ts: int | None = None,
        *,
        rate: int = 8000,
        max_jump: float = 3.0,
        gap_tolerance: float = 0.2,
    ) -> None:
        self.ssrc = random.getrandbits(32) if ssrc is None else ssrc & _MASK32
        self._seq = random.getrandbits(16) if seq is None else seq & 0xFFFF
        start_ts = random.getrandbits(32) if ts is None else ts & _MASK32
        self._rate = rate
        self._jump = int(max_jump * rate)
        self._span = 2 * self._jump
        self._gap = int(gap_tolerance * rate)
        self._frame = rate // 50
        # While forwarding (_fwd), the timeline is implicit: the last packet's timestamp is
        # _in_ts + _offset, which spares the per-packet bookkeeping. Otherwise _last_ts was
        # sent at wall time _last_now and _next_ts is where the next packet starts.
        # _last_now < 0: nothing sent yet.
        self._fwd = False
        self._last_ts = start_ts
        self._next_ts = start_ts
        self._last_now = -1.0
        self._in_ssrc = -1  # never equal to a real SSRC
        self._in_ts = 0
        self._offset = 0
        self._mark = False
        self._event_ts = -1  # timestamp of the telephone-event being sent
        self._event_now = 0.0  # and when it began
        self.packets = 0  # for RTCP SR
        self.octets = 0  # payload octets (approximated as len - 12 for forwarded packets)

    @property
    def seq(self) -> int:
        """Sequence number of the next packet."""
        return self._seq

    @property
    def last_ts(self) -> int:
        """RTP timestamp of the most recent packet (the base timestamp before any)."""
        if self._fwd:
            return (self._in_ts + self._offset) & _MASK32
        return self._last_ts

    def forward(self, data: bytes, now: float, pt: int | None = None) -> bytearray:
        """Rewrite a received RTP packet for this stream (SSRC, seq, ts; PT if given).

        `data` must be a valid RTP packet (check with `parse_header` first). The marker
        bit is kept. Returns a new buffer; `data` is not modified.
        """
        ts, ssrc = _TS_SSRC.unpack_from(data, 4)
        d = (ts - self._in_ts) & _MASK32
        if ssrc != self._in_ssrc or not self._fwd or ((d + self._jump) & _MASK32) > self._span:
            self._anchor(ts, ssrc, now)
            self._in_ts = ts
            self._last_now = now
        elif d < _HALF32:  # later than the latest: not reordered, not a telephone-event update
            self._in_ts = ts
            self._last_now = now
        buf = bytearray(data)
        b1 = data[1] if pt is None else (data[1] & 0x80) | pt
        if self._mark:
            b1 |= 0x80
            self._mark = False
        seq = self._seq
        _REWRITE.pack_into(buf, 1, b1, seq, (ts + self._offset) & _MASK32, self.ssrc)
        self._seq = (seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(data) - 12
        return buf

    def _settle(self) -> None:
        """Leave forwarding mode: make the implicit timeline explicit."""
        if self._fwd:
            self._fwd = False
            self._last_ts = (self._in_ts + self._offset) & _MASK32
            self._next_ts = (self._last_ts + self._frame) & _MASK32

    def _resume_ts(self, now: float) -> int:
        """Where the timeline continues after a switch of source: the later of 'right
        after the last packet' and 'last packet plus elapsed wall time'."""
        if self._last_now < 0.0:
            return self._next_ts
        wall = (self._last_ts + round((now - self._last_now) * self._rate)) & _MASK32
        if ((wall - self._next_ts) & _MASK32) < _HALF32:
            return wall
        return self._next_ts

    def _anchor(self, ts: int, ssrc: int, now: float) -> None:
        self._settle()
        self._offset = (self._resume_ts(now) - ts) & _MASK32
        self._in_ssrc = ssrc
        self._fwd = True
        self._mark = True

    def _continue_ts(self, now: float) -> tuple[int, bool]:
        """Timestamp for a locally generated packet, and whether it starts a talkspurt."""
        if self._fwd or self._last_now < 0.0:  # first packet, or after forwarding
            self._settle()
            return self._resume_ts(now), True
        ts = self._next_ts
        wall = (self._last_ts + round((now - self._last_now) * self._rate)) & _MASK32
        late = (wall - ts) & _MASK32
        if self._gap < late < _HALF32:  # we stopped sending for a while
            return wall, True
        return ts, False

    def make(
        self, pt: int, payload: bytes, now: float, marker: bool = False, samples: int = 160
    ) -> bytes:
        """Build a locally generated packet (prompt, tone, comfort noise...).

        The packet's timestamp is the current position of the timeline, which then
        advances by `samples`.
        """
        ts, start = self._continue_ts(now)
        seq = self._seq
        pkt = _HDR.pack(0x80, (0x80 if marker or start else 0) | pt, seq, ts, self.ssrc) + payload
        self._seq = (seq + 1) & 0xFFFF
        self._last_ts = ts
        self._last_now = now
        self._next_ts = (ts + samples) & _MASK32
        self.packets += 1
        self.octets += len(payload)
        return pkt

    def make_event(
        self, pt: int, payload: bytes, now: float, marker: bool = False, is_end: bool = False
    ) -> bytes:
        """Build an RFC 4733 telephone-event packet.

        All packets of one event carry the event's start timestamp: pass ``marker=True``
        on the first (it takes the current position of the timeline), then the updates
        and the end packets. Event packets may be interleaved with `make` or `forward`
        audio, which they leave alone; when no audio is made during the event, the
        timeline resumes after it at start + the event's duration.
        """
        if marker or self._event_ts < 0:
            self._event_ts = self._position(now)
            self._event_now = now
            marker = True
        ts = self._event_ts
        # No audio since the event began: the audio resumes after the event.
        if is_end and not self._fwd and self._last_now < self._event_now and len(payload) >= 4:
            end = (ts + ((payload[2] << 8) | payload[3])) & _MASK32
            if ((end - self._next_ts) & _MASK32) < _HALF32:
                self._next_ts = end
        seq = self._seq
        pkt = _HDR.pack(0x80, (0x80 if marker else 0) | pt, seq, ts, self.ssrc) + payload
        self._seq = (seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        return pkt

    def _position(self, now: float) -> int:
        """The timeline's current position, without switching modes."""
        if self._fwd:
            last = (self._in_ts + self._offset) & _MASK32
            nxt = (last + self._frame) & _MASK32
        else:
            last, nxt = self._last_ts, self._next_ts
        if self._last_now < 0.0:
            return nxt
        wall = (last + round((now - self._last_now) * self._rate)) & _MASK32
        late = (wall - nxt) & _MASK32
        if late < _HALF32 and (self._fwd or late > self._gap):
            return wall
        return nxt


class InStats:
    """Receive statistics of one incoming stream, per RFC 3550 appendix A.1 and A.8.

    Call `update` for each received packet of one payload clock (audio; not the
    telephone-event packets, whose timestamps stand still during an event).
    """

    __slots__ = (
        "_arrival",
        "_bad_seq",
        "_base_seq",
        "_clock",
        "_cycles",
        "_expected_prior",
        "_jitter16",
        "_max_seq",
        "_received_prior",
        "_ts",
        "late",
        "packets",
    )

    MAX_DROPOUT = 3000
    MAX_MISORDER = 100

    def __init__(self, clock: int = 8000) -> None:
        self._clock = clock
        self.packets = 0
        self.late = 0  # packets not newer than the highest seq: duplicates or reordered
        self._base_seq = 0
        self._max_seq = 0
        self._cycles = 0
        self._bad_seq = -1
        self._arrival = 0
        self._ts = 0
        self._jitter16 = 0  # jitter in timestamp units, scaled by 16 (A.8 integer form)
        self._expected_prior = 0
        self._received_prior = 0

    def _restart(self, seq: int) -> None:
        self._base_seq = seq
        self._max_seq = seq
        self._cycles = 0
        self._bad_seq = -1
        self.packets = 0
        self.late = 0
        self._expected_prior = 0
        self._received_prior = 0

    def update(self, seq: int, ts: int, arrival_now: float) -> None:
        """Account one received packet (seq, RTP timestamp, arrival time in seconds)."""
        arrival = int(arrival_now * self._clock)
        if self.packets == 0:
            self._restart(seq)
        else:
            udelta = (seq - self._max_seq) & 0xFFFF
            if udelta < self.MAX_DROPOUT:
                if udelta == 0:
                    self.late += 1
                elif seq < self._max_seq:
                    self._cycles += 0x10000
                self._max_seq = seq
            elif udelta <= 0x10000 - self.MAX_MISORDER:
                # A big jump: the sender restarted. Believe it on the second packet.
                if seq != self._bad_seq:
                    self._bad_seq = (seq + 1) & 0xFFFF
                    return
                self._restart(seq)
            else:
                self.late += 1
            if self.packets:
                # transit-time difference, with the ts step taken modulo 2^32 (wrap-safe)
                tsd = (ts - self._ts) & _MASK32
                if tsd >= _HALF32:
                    tsd -= 1 << 32
                d = (arrival - self._arrival) - tsd
                if d < 0:
                    d = -d
                self._jitter16 += d - ((self._jitter16 + 8) >> 4)
        self._arrival = arrival
        self._ts = ts
        self.packets += 1

    @property
    def max_seq(self) -> int:
        """Extended highest sequence number received (cycles * 65536 + seq)."""
        return self._cycles + self._max_seq

    @property
    def expected(self) -> int:
        return self._cycles + self._max_seq - self._base_seq + 1 if self.packets else 0

    @property
    def lost(self) -> int:
        """Cumulative packets lost (negative if duplicates outnumber losses, as in RTCP)."""
        return self.expected - self.packets

    @property
    def jitter(self) -> int:
        """Interarrival jitter in timestamp units (the RTCP RR field)."""
        return self._jitter16 >> 4

    @property
    def jitter_ms(self) -> float:
        return (self._jitter16 / 16.0) * 1000.0 / self._clock

    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, as the 8-bit RTCP RR field."""
        expected = self.expected
        exp_int = expected - self._expected_prior
        rec_int = self.packets - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.packets
        lost_int = exp_int - rec_int
        if exp_int <= 0 or lost_int <= 0:
            return 0
        return (lost_int << 8) // exp_int
