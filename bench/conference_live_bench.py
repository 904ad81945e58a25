"""Live conferences over the network: per-member CPU, loss, jitter and pacing of the mix.

    .venv/bin/python bench/conference_live_bench.py [--layouts 1x50,20x5] [--seconds 20]
                                                    [--talkers 2] [--no-record]

The server runs with rooms 850 (the big one) and 900-919 (the small ones).  This process
is every member's phone: one SIP UAC socket and one RTP socket per member, each member an
extension of its own dialing its room with digest auth, like a phone would.  In each room
--talkers members send a steady tone (each its own frequency), the others an open
microphone's -55 dBFS noise; all send 20 ms PCMU paced by one timer spread over four
phases of the frame (phones are not in phase).

Printed per layout, over a --seconds window after every member joined and --settle passed:
  members   joined / asked
  us/m/f    server CPU per mixed member stream per 20 ms frame (process CPU time in the
            window / (members x frames)): what mixing, encoding, sending, receiving and
            recording one member costs
  loss      sequence gaps in the streams the server sends members, %
  jitter    RFC 3550 interarrival jitter, ms, mean and max over members
  pacing    |interval - 20 ms| between consecutive packets of one member's stream (kernel
            arrival times, SO_TIMESTAMPNS), p50/p99 and the share over 5 ms
  heard     share of sampled packets (1 in 10) a member receives that carry audio above
            -40 dBFS: members hear the talkers; a talker hears the other talker(s)
  lag       the media engine's worst tick lateness in the window (/api/status)
  cpu       server / this generator, % of one core
Not a test: it measures.  Loss here also counts what the generator itself failed to read
in time: compare cpu gen with 100 %.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

from bench.core_cps import cpu_seconds
from bench.ivr_bench import (
    Leg,
    RtpPeer,
    RtpSender,
    SipUac,
    StreamStats,
    api,
    drop_recordings,
    log_problems,
    noise_payloads,
    pcts,
    run_fast,
    self_cpu,
    tone_frame,
)
from tests.e2e.server import CcswitchServer

BIG_ROOM = 850
SMALL_BASE = 900
SMALL_ROOMS = 20
HEARD_RMS = int(32767 * 10 ** (-40 / 20))


class Member:
    """One phone in a room: what it receives is accounted here."""

    __slots__ = ("bench", "heard", "last_t", "leg", "room", "sampled", "stats", "talker")

    def __init__(self, bench: ConfBench, room: str, talker: bool) -> None:
        self.bench = bench
        self.room = room
        self.talker = talker
        self.stats = StreamStats()
        self.leg: Leg | None = None
        self.last_t = 0.0
        self.sampled = 0
        self.heard = 0

    def on_packet(self, _peer: RtpPeer, data: bytes, t: float) -> None:
        b = self.bench
        if not b.measuring or data[1] & 0x7F != 0:
            self.last_t = 0.0
            return
        step = self.stats.feed(data, t)
        if step == 0:
            return
        if step == 1 and self.last_t:
            b.devs.append(abs((t - self.last_t) * 1000.0 - 20.0))
        self.last_t = t
        if self.stats.rx % 10 == 0:
            self.sampled += 1
            if audioop.rms(audioop.ulaw2lin(data[12:], 2), 2) > HEARD_RMS:
                self.heard += 1


class ConfBench:
    def __init__(self, srv: CcswitchServer, uac: SipUac, a: argparse.Namespace) -> None:
        self.srv = srv
        self.uac = uac
        self.a = a
        self.loop = asyncio.get_running_loop()
        self.sender = RtpSender(self.loop)
        self.noise = noise_payloads(50, -55.0)
        self.measuring = False
        self.devs: list[float] = []
        self.members: list[Member] = []
        self.failures: dict[str, int] = {}

    def payloads(self, talker_no: int) -> list[bytes]:
        if talker_no < 0:
            return self.noise
        # 400, 650, 900, ... Hz: multiples of 50 Hz, so every 20 ms frame is the same
        return [audioop.lin2ulaw(tone_frame(400.0 + 250.0 * talker_no, -16.0), 2)]

    async def join(self, room: str, ext: int, talker_no: int) -> None:
        m = Member(self, room, talker_no >= 0)
        peer = RtpPeer(self.loop, m.on_packet, self.payloads(talker_no))
        leg = Leg(str(ext), f"pw{ext}", room, peer)
        m.leg = leg
        try:
            why = await self.uac.call(leg)
        except TimeoutError:
            why = "timeout"
        if why:
            self.failures[why] = self.failures.get(why, 0) + 1
            peer.close()
            return
        self.members.append(m)
        self.sender.add(peer)

    async def layout(self, rooms: int, size: int) -> None:
        a = self.a
        self.members = []
        self.failures = {}
        names = [str(BIG_ROOM)] if rooms == 1 else [str(SMALL_BASE + i) for i in range(rooms)]
        ext = a.ext_base
        tasks = []
        for k in range(size):  # fill the rooms round-robin, at --setup-rate joins per second
            for name in names:
                talker_no = k if k < a.talkers else -1
                tasks.append(asyncio.create_task(self.join(name, ext, talker_no)))
                ext += 1
                await asyncio.sleep(1.0 / a.setup_rate)
        await asyncio.gather(*tasks)
        await asyncio.sleep(a.settle)
        srv = self.srv
        assert srv.proc is not None
        await api(srv, "GET", "/api/status?reset=1")
        self.devs = []
        for m in self.members:
            m.stats = StreamStats()
            m.last_t = 0.0
            m.sampled = m.heard = 0
        c_srv, c_gen, t0 = cpu_seconds(srv.proc.pid), self_cpu(), time.monotonic()
        self.measuring = True
        await asyncio.sleep(a.seconds)
        self.measuring = False
        dt = time.monotonic() - t0
        srv_cpu = cpu_seconds(srv.proc.pid) - c_srv
        gen_cpu = self_cpu() - c_gen
        st = await api(srv, "GET", "/api/status")
        lag = st.get("media", {}).get("max_tick_lag_ms", float("nan"))
        confs = await api(srv, "GET", "/api/conferences")
        in_rooms = sum(len(c.get("members", [])) if isinstance(c.get("members"), list)
                       else int(c.get("members", 0)) for c in confs) if isinstance(
                           confs, list) else -1
        n = len(self.members)
        us = srv_cpu / max(1, n) / (dt / 0.02) * 1e6
        rx = sum(m.stats.rx for m in self.members)
        lost = sum(m.stats.lost for m in self.members)
        jit = [m.stats.jitter * 1000 for m in self.members if m.stats.rx > 10]
        devs = sorted(self.devs)
        over5 = 100.0 * sum(1 for x in devs if x > 5.0) / len(devs) if devs else float("nan")

        def heard(ms: list[Member]) -> str:
            s = sum(m.sampled for m in ms)
            return f"{100.0 * sum(m.heard for m in ms) / s:.0f}" if s else "-"

        listeners = [m for m in self.members if not m.talker]
        talkers = [m for m in self.members if m.talker]
        print(f"{rooms:>3}x{size:<3} {n:>4}/{rooms * size:<4} {in_rooms:>5} {us:>7.1f} "
              f"{100.0 * lost / max(1, rx + lost):>6.3f} "
              f"{(sum(jit) / len(jit)) if jit else float('nan'):>5.2f}/"
              f"{max(jit) if jit else float('nan'):<5.2f} "
              f"{pcts(devs):>9} {over5:>6.2f} {heard(listeners):>4}/{heard(talkers):<4} "
              f"{lag:>7} {srv_cpu / dt * 100:>7.0f}/{gen_cpu / dt * 100:.0f}", flush=True)
        if self.failures:
            print(f"      join failures: {self.failures}")
        await asyncio.gather(*(self.leave(m) for m in self.members))
        await asyncio.sleep(2.0)

    async def leave(self, m: Member) -> None:
        assert m.leg is not None
        self.sender.remove(m.leg.rtp)
        await self.uac.bye(m.leg)
        self.uac.forget(m.leg)
        m.leg.rtp.close()


async def run(a: argparse.Namespace) -> None:
    layouts = [tuple(int(v) for v in x.split("x")) for x in a.layouts.split(",")]
    for rooms, _size in layouts:
        if rooms != 1 and rooms > SMALL_ROOMS:
            raise SystemExit(f"at most {SMALL_ROOMS} small rooms")
    nmax = max(r * s for r, s in layouts)
    work = Path(tempfile.mkdtemp(prefix="ccsw-confb."))
    exts = [{"number": str(a.ext_base + i), "password": f"pw{a.ext_base + i}"}
            for i in range(nmax)]
    confs = [{"number": str(BIG_ROOM), "name": "big"}] + [
        {"number": str(SMALL_BASE + i), "name": f"small{i}"} for i in range(SMALL_ROOMS)]
    srv = CcswitchServer(work / "server", {
        "logging": {"level": a.log_level},
        "recordings": {"enabled": not a.no_record, "directory": "recordings"},
        "rtp": {"port_min": 40000, "port_max": 59999},
        "tts": {"enabled": False},
        "extensions": exts,
        "conferences": confs,
    })
    srv.start()
    loop = asyncio.get_running_loop()
    try:
        assert srv.proc is not None
        _, uac = await loop.create_datagram_endpoint(
            lambda: SipUac(("127.0.0.1", srv.port), srv.domain), local_addr=("127.0.0.1", 0))
        b = ConfBench(srv, uac, a)
        b.sender.start()
        print(f"server pid {srv.proc.pid}, generator pid {os.getpid()}, {os.cpu_count()} cores; "
              f"recording {'off' if a.no_record else 'on'}; {a.talkers} talker(s) per room, "
              f"the others -55 dBFS noise; window {a.seconds:g} s", flush=True)
        print(f"{'layout':<7} {'members':>9} {'rooms':>5} {'us/m/f':>7} {'loss%':>6} "
              f"{'jitter ms':>11} {'pacing ms':>9} {'>5ms%':>6} {'heard %':>9} "
              f"{'lag ms':>7} {'cpu srv/gen %':>13}", flush=True)
        print(f"{'':<7} {'':>9} {'':>5} {'':>7} {'':>6} {'mean/max':>11} {'p50/p99':>9} "
              f"{'':>6} {'lis/talk':>9}", flush=True)
        for rooms, size in layouts:
            await b.layout(rooms, size)
        b.sender.stop()
        st = await api(srv, "GET", "/api/status")
        print(f"after the run: {st.get('channels')} channel(s) left on the server")
    finally:
        srv.stop()
    print(log_problems(srv))
    drop_recordings(srv)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--layouts", default="1x50,20x5", help="ROOMSxMEMBERS steps")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per layout")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the last join")
    ap.add_argument("--talkers", type=int, default=2, help="members sending a tone per room")
    ap.add_argument("--setup-rate", type=float, default=40.0, help="joins per second")
    ap.add_argument("--ext-base", type=int, default=5000)
    ap.add_argument("--no-record", action="store_true", help="call recording off")
    ap.add_argument("--log-level", default="warning", help="the server's logging level")
    a = ap.parse_args()
    random.seed(1)
    run_fast(run(a))


if __name__ == "__main__":
    main()
