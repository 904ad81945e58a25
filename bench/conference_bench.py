"""Conference mixing cost: CPU per mixed member stream per 20 ms frame.

    .venv/bin/python bench/conference_bench.py [--quick]

Layouts: one room of 50 members, and 20 rooms of 5 members (100 members).
Traffic per room:
  all talk       every member sends speech all the time: every output differs and the
                 limiter works on every frame (the worst case)
  2 talk + hiss  two talkers; everybody else's open microphone sends -60 dBFS noise
  ... gate       the same with the mixer's noise gate on (hiss is not summed)
  2 talk + DTX   two talkers; the others send nothing (phones with silence suppression)

Each tick, for each room: G.711-decode every member's packet and `put()` it, `mix()`, and
G.711-encode every member's output with `ccswitch.media.g711.encode`:
  per member   one encode per member (what Endpoint.send_pcm does today)
  shared       one encode per distinct output object: members who do not talk share one
Figures are process CPU time (not wall time: the box is shared) per room tick divided by
the room's members: median and p99 over ticks, and the members one core could serve at
the mean (20 ms / mean).  Socket I/O is not included (see ARCHITECTURE.md: ~11-13 us per
packet sent, about the same again received).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ccswitch.media import g711
from ccswitch.media.mixer import Mixer
from ccswitch.media.wav import read_wav

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "media"
QUICK = "--quick" in sys.argv
TICKS = 300 if QUICK else 1500
WARMUP = 50
FB = 320
PT = g711.PCMU


def _speech_payloads() -> list[bytes]:
    _, _, pcm = read_wav(DATA / "speech_8k.wav")
    return [g711.encode(PT, pcm[i : i + FB]) for i in range(0, len(pcm) - FB + 1, FB)]


SPEECH = _speech_payloads()
_rng = np.random.default_rng(7)
HISS = [
    g711.encode(PT, _rng.integers(-40, 41, 160, dtype=np.int16).astype("<i2").tobytes())
    for _ in range(64)
]

# source(member index, tick) -> G.711 payload, or None when the member sends nothing
Source = Callable[[int, int], bytes | None]


def talk_all(i: int, t: int) -> bytes | None:
    return SPEECH[(t + 67 * i) % len(SPEECH)]


def two_talk_hiss(i: int, t: int) -> bytes | None:
    return SPEECH[(t + 67 * i) % len(SPEECH)] if i < 2 else HISS[(t + i) % len(HISS)]


def two_talk_dtx(i: int, t: int) -> bytes | None:
    return SPEECH[(t + 67 * i) % len(SPEECH)] if i < 2 else None


def _timer_overhead() -> int:
    clock = time.process_time_ns
    samples = []
    for _ in range(2000):
        t0 = clock()
        samples.append(clock() - t0)
    return int(statistics.median(samples))


def run(rooms: int, size: int, source: Source, gate: bool, shared: bool,
        overhead: int) -> list[float]:
    """Microseconds of CPU per member stream, one value per room tick."""
    mixers: list[Mixer[int]] = []
    for _ in range(rooms):
        m: Mixer[int] = Mixer(gate=gate)
        for i in range(size):
            m.add(i)
        mixers.append(m)
    clock = time.process_time_ns
    decode, encode = g711.decode, g711.encode
    per_stream: list[float] = []
    for t in range(WARMUP + TICKS):
        for r, m in enumerate(mixers):
            payloads = [source(i + 5 * r, t) for i in range(size)]
            t0 = clock()
            for i, p in enumerate(payloads):
                if p is not None:
                    m.put(i, decode(PT, p))
            out = m.mix()
            if shared:
                cache: dict[int, bytes] = {}
                for pcm in out.values():
                    k = id(pcm)
                    if k not in cache:
                        cache[k] = encode(PT, pcm)
            else:
                for pcm in out.values():
                    encode(PT, pcm)
            dt = clock() - t0 - overhead
            if t >= WARMUP:
                per_stream.append(dt / 1000 / size)
    return per_stream


def p99(xs: list[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * len(s)))]


def main() -> None:
    overhead = _timer_overhead()
    print(f"python {sys.version.split()[0]}; {TICKS} ticks of 20 ms per case; "
          f"CPU us per member stream per frame (decode + put + mix + encode); "
          f"timer overhead {overhead} ns subtracted")
    print(f"{'layout':<12} {'traffic':<20} {'encode':<10} {'median':>7} {'p99':>7} "
          f"{'mean':>7} {'streams/core':>13}")
    cases: list[tuple[str, Source, bool]] = [
        ("all talk", talk_all, False),
        ("2 talk + hiss", two_talk_hiss, False),
        ("2 talk + hiss, gate", two_talk_hiss, True),
        ("2 talk + DTX", two_talk_dtx, False),
    ]
    for layout, rooms, size in (("1 x 50", 1, 50), ("20 x 5", 20, 5)):
        for name, src, gate in cases:
            for shared in (False, True):
                xs = run(rooms, size, src, gate, shared, overhead)
                mean = statistics.fmean(xs)
                print(f"{layout:<12} {name:<20} {'shared' if shared else 'per member':<10} "
                      f"{statistics.median(xs):7.2f} {p99(xs):7.2f} {mean:7.2f} "
                      f"{20000 / mean:13,.0f}")
    print("streams/core = 20 ms / mean: mixing alone, before RTP receive and send")


if __name__ == "__main__":
    main()
