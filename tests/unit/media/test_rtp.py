from __future__ import annotations

import struct

import pytest

from ccswitch.media import dtmf, rtp
from ccswitch.media.rtp import InStats, OutStream, build_packet, is_rtcp, parse_header, payload

PAY = bytes(range(160))


def hdr(data: bytes) -> tuple[int, int, int, int, int, int]:
    h = parse_header(data)
    assert h is not None
    return h


# --------------------------------------------------------------------------- parsing


def test_build_and_parse_round_trip() -> None:
    pkt = build_packet(8, 65535, 0xFFFFFFFF, 0xDEADBEEF, PAY, marker=True)
    assert len(pkt) == 172 and pkt[0] == 0x80 and pkt[1] == 0x88
    assert parse_header(pkt) == (8, 1, 65535, 0xFFFFFFFF, 0xDEADBEEF, 12)
    assert payload(pkt) == PAY
    assert hdr(build_packet(0, 1, 2, 3, b""))[:2] == (0, 0)


def test_csrc_extension_and_padding() -> None:
    csrcs = struct.pack("!II", 1, 2)
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x01" * 8
    pad = b"\x00\x00\x00\x04"
    b0 = 0x80 | 0x20 | 0x10 | 2  # padding, extension, CC=2
    pkt = struct.pack("!BBHII", b0, 0, 7, 160, 99) + csrcs + ext + PAY + pad
    pt, marker, seq, ts, ssrc, off = hdr(pkt)
    assert (pt, marker, seq, ts, ssrc) == (0, 0, 7, 160, 99)
    assert off == 12 + 8 + 4 + 8
    assert payload(pkt) == PAY


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00" + b"\x00" * 9,  # 11 bytes
        b"\x40" + b"\x00" * 20,  # version 1
        b"\xc0" + b"\x00" * 20,  # version 3
        b"\x83" + b"\x00" * 13,  # CC=3 but only 2 bytes of CSRC
        b"\x90" + b"\x00" * 13,  # extension header cut short
        b"\x90" + b"\x00" * 11 + b"\xbe\xde\x00\x05" + b"\x00" * 8,  # extension too long
        b"\xa0" + b"\x00" * 11 + b"\x01\x02\x00",  # padding count 0
        b"\xa0" + b"\x00" * 11 + b"\x01\x02\x09",  # padding longer than payload
    ],
)
def test_invalid_packets(data: bytes) -> None:
    assert parse_header(data) is None
    assert payload(data) is None


def test_is_rtcp() -> None:
    rr = struct.pack("!BBHI", 0x81, 201, 7, 1234) + b"\x00" * 24
    sr = struct.pack("!BBHI", 0x80, 200, 6, 1234) + b"\x00" * 20
    assert is_rtcp(rr) and is_rtcp(sr)
    assert is_rtcp(struct.pack("!BBHI", 0x81, 205, 2, 1) + b"\x00" * 4)  # RTPFB
    for pt in (0, 8, 9, 13, 18, 96, 101, 127):
        for m in (False, True):
            assert not is_rtcp(build_packet(pt, 1, 2, 3, PAY, marker=m))
    assert not is_rtcp(b"\x81\xc9")  # too short


# --------------------------------------------------------------------------- OutStream


def incoming(
    n: int, seq0: int = 100, ts0: int = 5000, ssrc: int = 0xAAAA, pt: int = 0
) -> list[bytes]:
    return [build_packet(pt, seq0 + i, ts0 + 160 * i, ssrc, PAY, marker=(i == 0)) for i in range(n)]


def test_forward_rewrites_ssrc_seq_ts_and_keeps_the_rest() -> None:
    out = OutStream(ssrc=0x12345678, seq=65534, ts=1_000_000)
    src = incoming(4)
    res = [out.forward(p, now=10.0 + 0.02 * i) for i, p in enumerate(src)]
    heads = [hdr(bytes(p)) for p in res]
    assert [h[4] for h in heads] == [0x12345678] * 4
    assert [h[2] for h in heads] == [65534, 65535, 0, 1]  # wraps
    assert [h[3] for h in heads] == [1_000_000 + 160 * i for i in range(4)]
    assert [h[1] for h in heads] == [1, 0, 0, 0]  # marker kept (and set on the first anyway)
    assert all(bytes(p)[12:] == PAY for p in res)
    assert src[1] == build_packet(0, 101, 5160, 0xAAAA, PAY)  # input untouched
    assert out.seq == 2 and out.last_ts == 1_000_480 and out.packets == 4


def test_forward_random_bases() -> None:
    a, b = OutStream(), OutStream()
    assert (a.ssrc, a.seq, a.last_ts) != (b.ssrc, b.seq, b.last_ts)


def test_forward_can_rewrite_payload_type_keeping_marker() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    first, second = incoming(2, pt=96)
    assert hdr(bytes(out.forward(first, 0.0, pt=8)))[:2] == (8, 1)
    assert hdr(bytes(out.forward(second, 0.02, pt=8)))[:2] == (8, 0)


def test_forward_small_timestamp_gaps_keep_the_offset() -> None:
    """Silence suppression: the sender skips packets, ts advances with them."""
    out = OutStream(ssrc=1, seq=0, ts=0)
    p1 = build_packet(0, 1, 1000, 7, PAY)
    p2 = build_packet(0, 2, 1000 + 8000, 7, PAY)  # 1 s later
    out.forward(p1, 0.0)
    assert hdr(bytes(out.forward(p2, 1.0)))[3] == 8000
    assert hdr(bytes(out.forward(build_packet(0, 3, 500, 7, PAY), 1.01)))[3] == 0 - 500 & 0xFFFFFFFF


def test_forward_ssrc_change_continues_from_wall_clock() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    for i, p in enumerate(incoming(10, ssrc=0xA)):
        out.forward(p, 0.02 * i)
    assert out.last_ts == 1440
    # New source 0.5 s after the last packet (a transfer, a re-INVITE to another phone).
    later = incoming(3, ts0=987654, ssrc=0xB, seq0=9)
    heads = [hdr(bytes(out.forward(p, 0.18 + 0.5 + 0.02 * i))) for i, p in enumerate(later)]
    assert [h[3] for h in heads] == [1440 + 4000 + 160 * i for i in range(3)]
    assert [h[1] for h in heads] == [1, 0, 0]
    assert [h[2] for h in heads] == [10, 11, 12]


def test_forward_new_source_immediately_does_not_overlap() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    out.forward(build_packet(0, 1, 50, 0xA, PAY), 1.0)
    # Same instant, other SSRC: continue right after the previous packet, not on top of it.
    assert hdr(bytes(out.forward(build_packet(0, 1, 9999, 0xB, PAY), 1.0)))[3] == 160


def test_forward_timestamp_jump_reanchors() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    out.forward(build_packet(0, 1, 1000, 0xA, PAY), 5.0)
    # Same SSRC, timestamp jumps by an hour: the sender restarted its clock.
    jumped = out.forward(build_packet(0, 2, 1000 + 8000 * 3600, 0xA, PAY), 5.02)
    assert hdr(bytes(jumped))[3] == 160
    assert hdr(bytes(jumped))[1] == 1
    back = out.forward(build_packet(0, 3, 1000 + 8000 * 3600 + 160, 0xA, PAY), 5.04)
    assert hdr(bytes(back))[3] == 320


def test_forward_timestamp_wraps() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0xFFFFFF00)
    pkts = [build_packet(0, i, 0xFFFFFFA0 + 160 * i & 0xFFFFFFFF, 0xA, PAY) for i in range(3)]
    ts = [hdr(bytes(out.forward(p, 0.02 * i)))[3] for i, p in enumerate(pkts)]
    assert ts == [0xFFFFFF00, 0xFFFFFFA0, 0x40]
    assert out.last_ts == (0xFFFFFF00 + 320) & 0xFFFFFFFF


def test_reordered_packet_keeps_its_timestamp_and_does_not_move_the_timeline() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    a, b, c = incoming(3)
    out.forward(a, 0.0)
    out.forward(c, 0.04)
    assert hdr(bytes(out.forward(b, 0.045)))[3] == 160
    assert out.last_ts == 320


def test_make_advances_by_samples_and_shares_the_timeline_with_forward() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    t = 0.0
    for p in incoming(5):
        out.forward(p, t)
        t += 0.02
    # Forwarding stops (the far end is put on hold), a prompt starts at once.
    made = [out.make(0, PAY, t + 0.02 * i) for i in range(3)]
    heads = [hdr(p) for p in made]
    assert [h[3] for h in heads] == [800, 960, 1120]
    assert [h[1] for h in heads] == [1, 0, 0]
    assert [h[2] for h in heads] == [5, 6, 7]
    assert all(p[12:] == PAY for p in made)
    t += 0.06
    # Forwarding resumes with the same incoming SSRC: still re-anchored after the prompt.
    res = out.forward(build_packet(0, 105, 5000 + 160 * 5, 0xAAAA, PAY), t)
    assert hdr(bytes(res))[3] == 1280 and hdr(bytes(res))[1] == 1


def test_make_keeps_ts_regular_under_pacing_jitter_but_jumps_after_a_pause() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    times = [0.0, 0.027, 0.035, 0.061, 0.080, 0.101]  # a jittery pacer
    ts = [hdr(out.make(0, PAY, now))[3] for now in times]
    assert ts == [160 * i for i in range(6)]
    # Nothing sent for 2 s (between two prompts): the timestamp follows the wall clock.
    h = hdr(out.make(0, PAY, 2.101))
    assert h[3] == 800 + 16000 and h[1] == 1
    assert hdr(out.make(0, PAY, 2.121, samples=80))[3] == 16960
    assert hdr(out.make(0, PAY[:80], 2.131))[3] == 17040


def test_make_event_uses_one_timestamp_per_event() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    t = 0.0
    for _ in range(5):
        out.make(0, PAY, t)
        t += 0.02
    pkts = []
    for i, (pl, marker, is_end) in enumerate(dtmf.encode_event_packets("5", 100)):
        pkts.append(out.make_event(101, pl, t + 0.02 * min(i, 4), marker=marker, is_end=is_end))
    heads = [hdr(p) for p in pkts]
    assert {h[3] for h in heads} == {800}
    assert [h[0] for h in heads] == [101] * len(pkts)
    assert [h[1] for h in heads] == [1] + [0] * (len(pkts) - 1)
    assert [h[2] for h in heads] == list(range(5, 5 + len(pkts)))
    # Audio resumes after the event: start + 100 ms.
    assert hdr(out.make(0, PAY, t + 0.1))[3] == 800 + 800


def test_make_event_interleaved_with_audio() -> None:
    """A prompt keeps playing while we send a digit: both timelines stay intact."""
    out = OutStream(ssrc=1, seq=0, ts=0)
    events = dtmf.encode_event_packets("#", 100)
    audio_ts, event_ts = [], []
    t = 0.0
    for i in range(12):
        audio_ts.append(hdr(out.make(0, PAY, t))[3])
        if 2 <= i < 2 + len(events):
            pl, marker, is_end = events[i - 2]
            event_ts.append(hdr(out.make_event(101, pl, t, marker, is_end))[3])
        t += 0.02
    assert audio_ts == [160 * i for i in range(12)]
    assert event_ts == [480] * len(events)  # where the audio sent at that tick ends


def test_make_event_while_forwarding() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    events = dtmf.encode_event_packets("1", 60)
    fwd_ts, fwd_marks, event_ts = [], [], []
    for i, p in enumerate(incoming(10)):
        h = hdr(bytes(out.forward(p, 0.02 * i)))
        fwd_ts.append(h[3])
        fwd_marks.append(h[1])
        if 3 <= i < 3 + len(events):
            pl, marker, is_end = events[i - 3]
            event_ts.append(hdr(out.make_event(101, pl, 0.02 * i + 0.001, marker, is_end))[3])
    assert fwd_ts == [160 * i for i in range(10)]
    assert fwd_marks == [1] + [0] * 9  # no re-anchoring because of the events
    assert event_ts == [640] * len(events)  # right after the packet forwarded at i=3


def test_out_stream_counters() -> None:
    out = OutStream(ssrc=1, seq=0, ts=0)
    out.make(0, PAY, 0.0)
    out.forward(build_packet(0, 1, 1, 1, PAY), 0.02)
    assert out.packets == 2 and out.octets == 320


# --------------------------------------------------------------------------- InStats


def test_instats_no_loss_perfect_timing() -> None:
    st = InStats()
    for i in range(100):
        st.update(1000 + i, 160 * i, 100.0 + 0.02 * i)
    assert (st.packets, st.expected, st.lost, st.max_seq) == (100, 100, 0, 1099)
    assert st.jitter == 0 and st.jitter_ms == 0.0


def test_instats_loss_wrap_and_reorder() -> None:
    st = InStats()
    seqs = [65530, 65531, 65533, 65535, 0, 2, 1, 3, 3, 4]  # 65532 and 65534 lost, 1 late, 3 dup
    for i, s in enumerate(seqs):
        st.update(s, 160 * i, 0.02 * i)
    assert st.max_seq == 65536 + 4
    assert st.expected == 11
    assert st.packets == 10
    assert st.lost == 1  # 2 lost, one duplicate counted as received (as RFC 3550 does)
    assert st.late == 2


def test_instats_fraction_lost() -> None:
    st = InStats()
    for i in range(50):
        if i % 4 != 3:
            st.update(i, 160 * i, 0.02 * i)
    assert st.fraction_lost() == (12 * 256) // 50  # 12 lost of 50 expected (0..49)
    for i in range(50, 60):
        st.update(i, 160 * i, 0.02 * i)
    assert st.fraction_lost() == 0


def test_instats_jitter_follows_rfc3550() -> None:
    st = InStats()
    delays = [0.0, 0.010, 0.0, 0.030, 0.005, 0.0, 0.020] * 10
    j = 0.0
    prev = None
    for i, d in enumerate(delays):
        arrival = 1.0 + 0.02 * i + d
        st.update(i, 160 * i, arrival)
        transit = round(arrival * 8000) - 160 * i
        if prev is not None:
            j += (abs(transit - prev) - j) / 16
        prev = transit
    assert abs(st.jitter_ms - j / 8) < 0.1
    assert st.jitter_ms > 5


def test_instats_sender_restart() -> None:
    st = InStats()
    for i in range(10):
        st.update(i, 160 * i, 0.02 * i)
    st.update(40000, 0, 0.22)  # a jump: not believed yet
    assert st.packets == 10
    st.update(40001, 160, 0.24)  # confirmed: statistics restart
    assert (st.packets, st.expected, st.lost) == (1, 1, 0)
    st.update(40002, 320, 0.26)
    assert (st.packets, st.expected, st.max_seq) == (2, 2, 40002)


def test_instats_timestamp_wrap_does_not_spike_jitter() -> None:
    st = InStats()
    for i in range(20):
        st.update(i, (0xFFFFFF00 + 160 * i) & 0xFFFFFFFF, 0.02 * i)
    assert st.jitter == 0


def test_module_exports() -> None:
    assert set(rtp.__all__) >= {"InStats", "OutStream", "build_packet", "is_rtcp", "parse_header"}
