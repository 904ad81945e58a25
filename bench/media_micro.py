"""Micro-benchmarks of the per-packet media primitives: median microseconds per call.

    .venv/bin/python bench/media_micro.py [--quick]

Each figure is the median over several runs of the mean time per call in a tight loop
(the loop itself adds ~0.05 us per call); the best run is shown too, as a hint of the
cost on an idle core when the machine is shared.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ccswitch.media import g711, rtp, tones
from ccswitch.media.dtmf import EventReceiver, GoertzelDetector, dtmf_tone, encode_event_packets
from ccswitch.media.engine import Endpoint, MediaEngine, connect
from ccswitch.media.player import FramePlayer
from ccswitch.media.wav import StereoRecorder, read_wav

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "media"
QUICK = "--quick" in sys.argv
RUNS = 5 if QUICK else 11


def bench(name: str, make: Callable[[], Callable[[int], object]], n: int) -> float:
    """`make()` returns fn(i) doing call number i; timed over n calls, RUNS times."""
    n = max(1, n // 5) if QUICK else n
    results = []
    for _ in range(RUNS):
        fn = make()
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        results.append((time.perf_counter() - t0) / n * 1e6)
    med = statistics.median(results)
    print(f"{name:<52} {med:8.2f} us  (min {min(results):6.2f})")
    return med


class _NullTransport:
    def sendto(self, data: bytes, addr: object) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    pcm = tones.sine(1000, 20, dbfs=-10.0)
    ulaw = g711.encode(g711.PCMU, pcm)
    pkts = [rtp.build_packet(0, i & 0xFFFF, 160 * i, 0xABCDEF, ulaw) for i in range(1000)]
    print(f"python {sys.version.split()[0]}; per 20 ms frame (160 samples) unless noted")

    bench("g711.decode PCMU (160 B -> 320 B)", lambda: lambda i: g711.decode(0, ulaw), 200_000)
    bench("g711.encode PCMU (320 B -> 160 B)", lambda: lambda i: g711.encode(0, pcm), 200_000)
    bench("g711.transcode PCMU -> PCMA", lambda: lambda i: g711.transcode(ulaw, 0, 8), 200_000)
    bench("rtp.parse_header", lambda: lambda i: rtp.parse_header(pkts[i % 1000]), 200_000)

    def forward() -> Callable[[int], object]:
        out = rtp.OutStream()
        return lambda i: out.forward(pkts[i % 1000], i * 0.02)

    bench("OutStream.forward (header rewrite)", forward, 200_000)

    def forward_pt() -> Callable[[int], object]:
        out = rtp.OutStream()
        return lambda i: out.forward(pkts[i % 1000], i * 0.02, 8)

    bench("OutStream.forward with PT rewrite", forward_pt, 200_000)

    def make() -> Callable[[int], object]:
        out = rtp.OutStream()
        return lambda i: out.make(0, ulaw, i * 0.02)

    bench("OutStream.make (local audio)", make, 200_000)

    def instats() -> Callable[[int], object]:
        st = rtp.InStats()
        return lambda i: st.update(i & 0xFFFF, 160 * i, 100.0 + 0.02 * i + (i % 7) * 0.001)

    bench("InStats.update", instats, 200_000)

    events = encode_event_packets("5", 100)

    def receiver() -> Callable[[int], object]:
        rx = EventReceiver()
        k = len(events)
        return lambda i: rx.feed(8000 * (i // k), events[i % k][0], events[i % k][1], i * 0.02)

    bench("EventReceiver.feed (RFC 4733 packet)", receiver, 200_000)

    tmp = Path(tempfile.mkdtemp())

    def recorder() -> Callable[[int], object]:
        rec = StereoRecorder(tmp / "bench.wav")

        def put(i: int) -> None:
            rec.put(0, pcm, 160 * i)
            rec.put(1, pcm, 160 * i + 40)
            if i % 50 == 49:  # once per second, 200 ms behind
                rec.flush_until(160 * i - 1600)

        return put

    med = bench("StereoRecorder.put x2 + flush_until/s (per frame)", recorder, 50_000)
    print(f"{'  = per side and frame':<52} {med / 2:8.2f} us")

    def recorder_put() -> Callable[[int], object]:
        rec = StereoRecorder(tmp / "bench2.wav")

        def put(i: int) -> None:
            rec.put(0, pcm, 160 * (i % 3000))
            if i % 3000 == 2999:
                rec.flush_until(0)

        return put

    bench("StereoRecorder.put only (one side)", recorder_put, 200_000)

    # the engine's per-packet path: a packet received on one endpoint of a two-party
    # bridge and relayed out of the other (stats, header rewrite), with and without the
    # call recorder on the caller's endpoint (decode + placement, both directions);
    # sockets are stubbed, so this is the Python part only (uvloop + kernel come on top)
    def bridged(record: bool) -> Callable[[], Callable[[int], object]]:
        def mk() -> Callable[[int], object]:
            eng = MediaEngine("127.0.0.1", 40000, 40010)
            clock = [100.0]
            eng.now = lambda: clock[0]
            a, b = Endpoint(eng, 40000), Endpoint(eng, 40002)
            for ep, port in ((a, 30000), (b, 31000)):
                ep.transport = _NullTransport()  # type: ignore[assignment]
                ep.remote, ep.latched, ep.codec_pt, ep.dtmf_pt = ("127.0.0.1", port), True, 0, 101
            connect(a, b)
            if record:
                a.record_to(eng.new_recorder(tmp / f"bridge{len(list(tmp.iterdir()))}.wav"))
            pa = [rtp.build_packet(0, i & 0xFFFF, 160 * i, 0x1111, ulaw) for i in range(1000)]
            pb = [rtp.build_packet(0, i & 0xFFFF, 160 * i, 0x2222, ulaw) for i in range(1000)]
            src_a, src_b = ("127.0.0.1", 30000), ("127.0.0.1", 31000)

            def one(i: int) -> None:  # one packet each way = one 20 ms frame of the call
                clock[0] = 100.0 + 0.02 * i
                a.datagram_received(pa[i % 1000], src_a)
                b.datagram_received(pb[i % 1000], src_b)
                if record and i % 50 == 0:
                    for r in list(eng._recorders):
                        r.flush(clock[0])

            return one
        return mk

    med = bench("bridged call frame (2 packets relayed)", bridged(False), 50_000)
    print(f"{'  = per packet':<52} {med / 2:8.2f} us")
    med = bench("bridged + recorded call frame (2 packets)", bridged(True), 50_000)
    print(f"{'  = per packet':<52} {med / 2:8.2f} us")

    def player() -> Callable[[int], object]:
        p = FramePlayer(tones.sine(440, 10_000), loop=True)
        return lambda i: p.next_frame()

    bench("FramePlayer.next_frame", player, 200_000)

    _, _, speech = read_wav(DATA / "speech_8k.wav")
    speech_frames = [speech[i : i + 320] for i in range(0, len(speech) - 320, 320)]
    tone = dtmf_tone("5", 20)
    silence = bytes(320)

    def goertzel(frames: list[bytes]) -> Callable[[], Callable[[int], object]]:
        def mk() -> Callable[[int], object]:
            det = GoertzelDetector()
            return lambda i: det.feed(frames[i % len(frames)])

        return mk

    bench("GoertzelDetector.feed, speech", goertzel(speech_frames), len(speech_frames))
    bench("GoertzelDetector.feed, DTMF tone", goertzel([tone]), 20_000)
    bench("GoertzelDetector.feed, silence", goertzel([silence]), 50_000)


if __name__ == "__main__":
    main()
