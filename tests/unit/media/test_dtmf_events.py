"""RFC 4733 telephone-events: parsing, sending, and receiving each digit exactly once."""

from __future__ import annotations

import pytest

from ccswitch.media import rtp
from ccswitch.media.dtmf import EVENT_CHARS, EventReceiver, encode_event_packets, parse_event


def test_parse_event() -> None:
    assert parse_event(bytes([5, 0x0A, 0x01, 0x40])) == ("5", False, 10, 320)
    assert parse_event(bytes([11, 0x80 | 7, 0x03, 0x20])) == ("#", True, 7, 800)
    assert parse_event(bytes([15, 0, 0, 0])) == ("D", False, 0, 0)
    assert parse_event(bytes([16, 0, 0, 160])) is None  # flash: not DTMF
    assert parse_event(b"\x05\x0a\x01") is None
    assert EVENT_CHARS == "0123456789*#ABCD"


def test_encode_event_packets() -> None:
    pkts = encode_event_packets("7", duration_ms=160, volume=10, step_ms=20)
    assert len(pkts) == 7 + 3
    parsed = [parse_event(p) for p, _, _ in pkts]
    assert [p[3] for p in parsed if p] == [160 * i for i in range(1, 8)] + [1280] * 3
    assert [m for _, m, _ in pkts] == [True] + [False] * 9
    assert [e for _, _, e in pkts] == [False] * 7 + [True] * 3
    assert all(p == ("7", e, 10, p[3]) for p, (_, _, e) in zip(parsed, pkts, strict=True) if p)
    assert encode_event_packets("a")[0][0][0] == 12
    short = encode_event_packets("1", duration_ms=20)
    assert [(m, e) for _, m, e in short] == [(True, True), (False, True), (False, True)]
    for bad in ("x", "", "11"):
        with pytest.raises(ValueError):
            encode_event_packets(bad)
    with pytest.raises(ValueError):
        encode_event_packets("1", duration_ms=9000)


def send(
    rx: EventReceiver, digit: str, ts: int, t0: float, drop: frozenset[int] = frozenset()
) -> list[str]:
    """Feed one event as a phone sends it (20 ms apart, end x3); return what came out."""
    got = []
    for i, (pl, marker, _) in enumerate(encode_event_packets(digit, 120)):
        if i in drop:
            continue
        d = rx.feed(ts, pl, marker, t0 + 0.02 * i)
        if d is not None:
            got.append(d)
    return got


def test_each_event_once() -> None:
    rx = EventReceiver()
    assert send(rx, "1", 1000, 0.0) == ["1"]
    assert rx.take_ended() == ("1", 120)
    assert rx.take_ended() is None
    assert send(rx, "2", 3000, 0.5) == ["2"]
    assert rx.ended == ("2", 120)


def test_lost_start_packets() -> None:
    rx = EventReceiver()
    assert send(rx, "9", 1000, 0.0, drop=frozenset({0, 1, 2})) == ["9"]
    rx2 = EventReceiver()
    assert send(rx2, "9", 1000, 0.0, drop=frozenset({0, 1, 2, 3, 4, 5})) == [
        "9"
    ]  # only end packets
    assert rx2.ended == ("9", 120)


def test_same_digit_twice_differs_by_timestamp() -> None:
    rx = EventReceiver()
    assert send(rx, "5", 8000, 0.0) + send(rx, "5", 8000 + 1600, 0.2) == ["5", "5"]


def test_late_end_packet_of_previous_event_is_not_a_new_digit() -> None:
    rx = EventReceiver()
    pkts = encode_event_packets("4", 60)
    first_end = pkts[-1][0]
    assert send(rx, "4", 100, 0.0) == ["4"]
    assert rx.feed(900, encode_event_packets("6")[0][0], True, 0.3) == "6"
    assert rx.feed(100, first_end, False, 0.31) is None  # a straggler


def test_end_retransmissions_and_duplicates_absorbed() -> None:
    rx = EventReceiver()
    pkts = encode_event_packets("0", 100)
    out = [rx.feed(42, p, m, 0.001 * i) for i, (p, m, _) in enumerate(pkts + pkts)]
    assert [d for d in out if d] == ["0"]


def test_replayed_identical_event_counts_again() -> None:
    """SIPp plays the same DTMF pcap twice: same SSRC, same timestamps."""
    rx = EventReceiver()
    assert send(rx, "3", 777, 0.0) == ["3"]
    assert send(rx, "3", 777, 0.5) == ["3"]  # starts again (marker) after the end
    assert send(rx, "3", 777, 3.0) == ["3"]  # and after a long silence


def test_other_events_and_garbage_ignored() -> None:
    rx = EventReceiver()
    assert rx.feed(1, bytes([16, 0x80, 0, 160]), True, 0.0) is None
    assert rx.feed(1, b"\x01", True, 0.0) is None
    assert rx.ended is None


def test_many_events_stay_bounded() -> None:
    rx = EventReceiver()
    for i in range(1000):
        assert send(rx, EVENT_CHARS[i % 16], 160 * 20 * i, 0.4 * i) == [EVENT_CHARS[i % 16]]
    assert len(rx._seen) <= 20


def test_through_rtp_packets() -> None:
    """Sender side OutStream.make_event -> packets -> parse -> receiver: one digit each."""
    out = rtp.OutStream()
    rx = EventReceiver()
    got = []
    t = 0.0
    for digit in "12#":
        for pl, marker, is_end in encode_event_packets(digit, 80):
            pkt = out.make_event(101, pl, t, marker=marker, is_end=is_end)
            h = rtp.parse_header(pkt)
            assert h is not None and h[0] == 101
            d = rx.feed(h[3], pkt[h[5] :], bool(h[1]), t)
            if d:
                got.append(d)
            t += 0.02
        t += 0.1
    assert got == ["1", "2", "#"]
