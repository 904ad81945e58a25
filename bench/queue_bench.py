"""A busy queue: callers waiting with music and announcements while agents take calls.

    .venv/bin/python bench/queue_bench.py [--sizes 200x50] [--seconds 60] [--no-record]

200 callers wait in one queue (strategy leastrecent, wrap-up 0) hearing music on hold and
position / estimated-wait announcements that the server renders by text to speech (first
after 5 s, then every 15 s), while 50 agents take calls continuously.  A step "WxA" keeps
W callers waiting and A agents busy: W + A caller slots each call the queue again as soon
as their call ends.

Agents: this process is every agent's phone (one UDP socket, every agent REGISTERed with a
Contact on it, logged in through the control API): an INVITE is answered with 180 at once
and 200 after a 0.2-0.6 s ring, the agent talks 3-9 s (sending 20 ms PCMU stamped with its
send time) and hangs up with BYE.  SIP is read with recvmsg + SO_TIMESTAMPNS, so the
arrival time of an INVITE is the kernel's.  Offer gap = arrival of the next INVITE for an
agent minus the moment it sent its BYE (or answered the server's BYE): the time from an
agent becoming free to the next call being offered (wrap-up is 0), the issue's target
being p99 < 50 ms.

Callers: this process too (asyncio UAC, dialing the queue as 1001; they send low-noise
PCMU).  What the server sends a waiting caller is classified per packet: agent audio (the
stamp), music on hold (the music file's frames are known: a dict of their PCMU bytes),
else an announcement.  For the hold phase: sequence loss, |interval - 20 ms| (kernel
arrival times), RFC 3550 jitter, announcements heard, the extra silence at music <->
announcement switches, and the silence between the last hold packet and the agent's first
packet ("connect").  Bridged: the agent -> caller latency through the server.

The TTS cache is kept in --tts-cache (default /tmp/ccswitch-bench-tts) so that only the
first run pays for rendering "You are caller number N" for every N.  Not a test: it
measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import socket
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.core_cps import cpu_seconds
from bench.ivr_bench import (
    _SDP_C,
    _SDP_M,
    _STAMP,
    _TSNS,
    SO_TIMESTAMPNS,
    Leg,
    RtpPeer,
    RtpSender,
    SipUac,
    StreamStats,
    _branch,
    _response,
    api,
    audioop,
    drop_recordings,
    log_problems,
    noise_payloads,
    pcts,
    run_fast,
    self_cpu,
    write_wav,
)
from ccswitch.sip.auth import build_authorization
from ccswitch.sip.message import Request, Response, parse_message
from tests.e2e.server import CcswitchServer

_wall = time.time
AGENT_MAGIC = b"AGNT"


def moh_music(seconds: float = 20.0) -> bytes:
    """Synthetic 'music': a slow chord progression with a tremolo (every frame differs)."""
    chords = [(262, 330, 392), (220, 262, 330), (175, 220, 262), (196, 247, 294)]
    n = int(seconds * 50) * 160
    out = []
    for i in range(n):
        t = i / 8000.0
        ch = chords[int(t / 2.5) % len(chords)]
        env = 0.75 + 0.25 * math.sin(2 * math.pi * 0.7 * t)
        v = sum(math.sin(2 * math.pi * f * t) for f in ch) / 3.0
        out.append(round(9000 * env * v))
    return struct.pack(f"<{n}h", *out)


# ------------------------------------------------------------------ agents (UAS)
class Agent:
    __slots__ = ("busy", "calls", "dialog", "ext", "free_at", "invite", "last_resp", "rtp",
                 "to_tag")

    def __init__(self, ext: str, rtp: RtpPeer) -> None:
        self.ext = ext
        self.rtp = rtp
        self.busy = False
        self.free_at = 0.0  # wall time it last became free (0: never had a call)
        self.invite: Request | None = None
        self.to_tag = ""
        self.last_resp = b""
        self.dialog = ""  # Call-ID of the current call
        self.calls = 0


class AgentPhones:
    """Every agent's phone on one raw UDP socket read with kernel timestamps."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: tuple[str, int], domain: str,
                 sender: RtpSender, a: argparse.Namespace) -> None:
        self.loop = loop
        self.server = server
        self.domain = domain
        self.sender = sender
        self.a = a
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
        self.sock = s
        self.port = s.getsockname()[1]
        self.total_double = 0
        self.agents: dict[str, Agent] = {}
        self.by_call: dict[str, Agent] = {}
        self._talking: set[RtpPeer] = set()
        self._tasks: set[asyncio.Future[None]] = set()
        self.waiting: dict[str, asyncio.Future[Response]] = {}
        self.talk_range = tuple(float(x) for x in a.talk.split(","))
        self.ring_range = tuple(float(x) for x in a.ring.split(","))
        self.reset()
        loop.add_reader(s.fileno(), self._readable)

    def reset(self) -> None:
        self.measuring = False
        self.offer_gaps: list[float] = []
        self.answered = 0
        self.double_offers = 0
        self.cancels = 0
        self.server_byes = 0

    def send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            self.sock.sendto(data, addr or self.server)

    def _readable(self) -> None:
        while True:
            try:
                data, anc, _f, addr = self.sock.recvmsg(65535, 64)
            except (BlockingIOError, InterruptedError, OSError):
                return
            if anc:
                sec, nsec = _TSNS.unpack_from(anc[0][2])
                t = sec + nsec * 1e-9
            else:
                t = _wall()
            try:
                msg = parse_message(data)
            except Exception:
                continue
            if isinstance(msg, Response):
                fut = self.waiting.get(f"{msg.call_id} {msg.cseq[0]}")
                if fut is not None and msg.status >= 200 and not fut.done():
                    fut.set_result(msg)
                continue
            self._on_request(msg, t, addr)

    # ---- requests from the server
    def _on_request(self, req: Request, t: float, addr: tuple[str, int]) -> None:
        cid = req.call_id
        if req.method == "INVITE":
            ag = self.by_call.get(cid)
            if ag is not None:  # retransmission or re-INVITE
                if req.to_tag:
                    self.send(_response(req, 200, body=self._sdp(ag),
                                        contact=self._contact(ag)), addr)
                elif ag.last_resp:
                    self.send(ag.last_resp, addr)
                return
            user = getattr(req.uri, "user", "")
            ag = self.agents.get(user or "")
            if ag is None:
                self.send(_response(req, 404, reason="Not Found"), addr)
                return
            if ag.busy:
                self.double_offers += 1  # "an agent never gets two calls"
                self.total_double += 1
                self.send(_response(req, 486, to_tag="busy", reason="Busy Here"), addr)
                return
            if ag.free_at and self.measuring:
                self.offer_gaps.append((t - ag.free_at) * 1000.0)
            ag.busy = True
            ag.invite = req
            ag.dialog = cid
            ag.to_tag = f"a{random.getrandbits(32):x}"
            self.by_call[cid] = ag
            mc, mm = _SDP_C.search(req.body), _SDP_M.search(req.body)
            ag.rtp.dest = ((mc.group(1).decode() if mc else "127.0.0.1"),
                           int(mm.group(1)) if mm else 0)
            ag.last_resp = _response(req, 180, to_tag=ag.to_tag, contact=self._contact(ag))
            self.send(ag.last_resp, addr)
            self.loop.call_later(random.uniform(*self.ring_range), self._answer, ag, cid, addr)
        elif req.method == "ACK":
            ag = self.by_call.get(cid)
            if ag is not None and ag.dialog == cid and ag.rtp not in self._talking:
                self._talking.add(ag.rtp)
                self.sender.add(ag.rtp)
                self.loop.call_later(random.uniform(*self.talk_range), self._hangup, ag, cid)
        elif req.method == "CANCEL":
            self.send(_response(req, 200), addr)
            ag = self.by_call.get(cid)
            if ag is not None and ag.invite is not None and ag.dialog == cid:
                self.send(_response(ag.invite, 487, to_tag=ag.to_tag,
                                    reason="Request Terminated"), addr)
                self.cancels += 1
                self._free(ag, t)
        elif req.method == "BYE":
            self.send(_response(req, 200), addr)
            ag = self.by_call.get(cid)
            if ag is not None and ag.dialog == cid:
                self.server_byes += 1
                self._free(ag, t)
        else:
            self.send(_response(req, 200), addr)

    def _answer(self, ag: Agent, cid: str, addr: tuple[str, int]) -> None:
        if ag.dialog != cid or ag.invite is None:
            return  # cancelled meanwhile
        resp = _response(ag.invite, 200, to_tag=ag.to_tag, body=self._sdp(ag),
                         contact=self._contact(ag))
        ag.last_resp = resp
        self.send(resp, addr)
        if self.measuring:
            self.answered += 1
        ag.calls += 1

        def again(n: int) -> None:  # 200 retransmitted until the ACK (T1 doubling)
            if ag.dialog == cid and ag.rtp not in self._talking and n < 6:
                self.send(resp, addr)
                self.loop.call_later(0.5 * 2 ** n, again, n + 1)

        self.loop.call_later(0.5, again, 1)

    def _hangup(self, ag: Agent, cid: str) -> None:
        inv = ag.invite
        if ag.dialog != cid or inv is None:
            return
        contacts = inv.contacts()
        ruri = str(contacts[0].uri) if contacts else f"sip:{self.domain}"
        frm = inv.get("From") or ""
        to = inv.get("To") or ""
        bye = (f"BYE {ruri} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={_branch()};rport\r\n"
               f"From: {to};tag={ag.to_tag}\r\nTo: {frm}\r\nCall-ID: {cid}\r\n"
               f"CSeq: 1 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        self._free(ag, _wall())
        self.send(bye)
        self._tasks.add(t := asyncio.ensure_future(self._bye_retrans(cid, bye)))
        t.add_done_callback(self._tasks.discard)

    async def _bye_retrans(self, cid: str, bye: bytes) -> None:
        fut: asyncio.Future[Response] = self.loop.create_future()
        self.waiting[f"{cid} 1"] = fut
        try:
            for i in range(6):
                try:
                    await asyncio.wait_for(asyncio.shield(fut), 0.5 * 2 ** i)
                    return
                except TimeoutError:
                    self.send(bye)
        finally:
            self.waiting.pop(f"{cid} 1", None)

    def _free(self, ag: Agent, t: float) -> None:
        ag.free_at = t
        ag.busy = False
        self.by_call.pop(ag.dialog, None)
        ag.dialog = ""
        ag.invite = None
        self.sender.remove(ag.rtp)
        self._talking.discard(ag.rtp)

    def _contact(self, ag: Agent) -> str:
        return f"<sip:{ag.ext}@127.0.0.1:{self.port}>"

    def _sdp(self, ag: Agent) -> bytes:
        p = ag.rtp.port
        return (f"v=0\r\no=agent {p} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                f"t=0 0\r\nm=audio {p} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                f"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n").encode()

    # ---- registration
    async def register(self, ext: str, password: str) -> None:
        cid = f"reg-{ext}-{random.getrandbits(32):x}@127.0.0.1"

        def req(cseq: int, auth: str | None) -> bytes:
            lines = [
                f"REGISTER sip:{self.domain} SIP/2.0",
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={_branch()};rport",
                f"From: <sip:{ext}@{self.domain}>;tag=r{ext}",
                f"To: <sip:{ext}@{self.domain}>",
                f"Call-ID: {cid}", f"CSeq: {cseq} REGISTER",
                f"Contact: <sip:{ext}@127.0.0.1:{self.port}>",
                "Expires: 3600", "Max-Forwards: 70"]
            if auth:
                lines.append(f"Authorization: {auth}")
            return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

        async def transact(cseq: int, data: bytes) -> Response:
            fut: asyncio.Future[Response] = self.loop.create_future()
            self.waiting[f"{cid} {cseq}"] = fut
            try:
                for i in range(5):
                    self.send(data)
                    try:
                        return await asyncio.wait_for(asyncio.shield(fut), 0.5 * 2 ** i)
                    except TimeoutError:
                        pass
                raise TimeoutError(f"REGISTER {ext}: no answer")
            finally:
                self.waiting.pop(f"{cid} {cseq}", None)

        r = await transact(1, req(1, None))
        if r.status == 401:
            auth = build_authorization(r.get("WWW-Authenticate") or "", "REGISTER",
                                       f"sip:{self.domain}", ext, password)
            r = await transact(2, req(2, auth))
        if r.status != 200:
            raise RuntimeError(f"REGISTER {ext}: {r.status}")
        rtp = RtpPeer(self.loop, None, [])
        rtp.stamp = AGENT_MAGIC
        self.agents[ext] = Agent(ext, rtp)


# ------------------------------------------------------------------ callers
class Caller:
    """One caller's view of what the server sends while waiting, and after."""

    __slots__ = ("anns", "bench", "cls", "hold", "last_hold_t", "last_t", "seq_stats")

    def __init__(self, bench: QueueBench) -> None:
        self.bench = bench
        self.seq_stats = StreamStats()  # the whole stream (sequence continuity)
        self.hold = StreamStats()  # music / announcements only, until bridged
        self.cls = ""  # "moh", "ann" or "agent"
        self.last_t = 0.0
        self.last_hold_t = 0.0
        self.anns: list[float] = []

    def on_packet(self, peer: RtpPeer, data: bytes, t: float) -> None:
        if data[1] & 0x7F != 0:
            return
        last_t = self.seq_stats.last_t
        d = self.seq_stats.feed(data, t)
        if d == 0:
            return
        b = self.bench
        meas = b.measuring
        payload = data[12:]
        if payload[:4] == AGENT_MAGIC:
            if self.cls != "agent":
                if self.cls and meas:
                    b.connect_gaps.append((t - last_t) * 1000.0 - 20.0)
                self.cls = "agent"
            if meas:
                b.bridged_lat.append((t - _STAMP.unpack_from(payload)[1]) * 1000.0)
            return
        if self.cls == "agent":
            # music / announcement after the agent was connected: the caller hears it
            # instead of the agent (the relay is suppressed while a source plays)
            if meas:
                b.hold_after_agent += 1
                b.hold_after_agent_callers.add(id(self))
            return
        cls = "moh" if payload in b.moh_table else "ann"
        dh = self.hold.feed(data, t)
        if meas:
            b.hold_rx += 1
            b.hold_lost += max(0, dh - 1)
        if cls == self.cls:
            if dh == 1 and meas:
                b.devs.append(abs((t - last_t) * 1000.0 - 20.0))
        else:
            if self.cls and meas:
                b.switch_gaps.append((t - last_t) * 1000.0 - 20.0)
            if cls == "ann":
                self.anns.append(t)
                if meas:
                    b.anns_heard += 1
            self.cls = cls
        self.last_hold_t = t


class QueueBench:
    def __init__(self, srv: CcswitchServer, uac: SipUac, agents: AgentPhones,
                 sender: RtpSender, a: argparse.Namespace, moh_table: set[bytes]) -> None:
        self.srv = srv
        self.uac = uac
        self.agents = agents
        self.sender = sender
        self.a = a
        self.moh_table = moh_table
        self.loop = asyncio.get_running_loop()
        self.noise = noise_payloads()
        self.slots = 0
        self.stopping = False
        self.tasks: list[asyncio.Future[None]] = []
        self.callers_done: list[Caller] = []
        self.setup_failures: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.measuring = False
        self.hold_rx = 0
        self.hold_lost = 0
        self.devs: list[float] = []
        self.switch_gaps: list[float] = []
        self.connect_gaps: list[float] = []
        self.bridged_lat: list[float] = []
        self.anns_heard = 0
        self.hold_after_agent = 0
        self.hold_after_agent_callers: set[int] = set()
        self.window_callers: list[Caller] = []

    async def slot(self, i: int) -> None:
        while not self.stopping and i < self.slots:
            c = Caller(self)
            peer = RtpPeer(self.loop, c.on_packet, self.noise)
            leg = Leg("1001", "secret1001", self.a.number, peer)
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
            self.sender.add(peer)
            await leg.ended
            self.sender.remove(peer)
            peer.close()
            self.uac.forget(leg)
            if self.measuring:
                self.window_callers.append(c)
            await asyncio.sleep(random.uniform(0.0, 0.3))

    async def grow(self, n: int, rate: float) -> None:
        while self.slots < n:
            i = self.slots
            self.slots += 1
            self.tasks.append(asyncio.ensure_future(self.slot(i)))
            await asyncio.sleep(1.0 / rate)


async def run(a: argparse.Namespace) -> None:
    sizes = [tuple(int(x) for x in s.split("x")) for s in a.sizes.split(",")]
    max_agents = max(ag for _, ag in sizes)
    agent_exts = [str(a.agent_base + i) for i in range(max_agents)]
    work = Path(tempfile.mkdtemp(prefix="ccsw-queueb."))
    tts_cache = Path(a.tts_cache)
    tts_cache.mkdir(parents=True, exist_ok=True)
    cached0 = len(list(tts_cache.rglob("*.wav")))
    srv = CcswitchServer(work / "server", {
        "logging": {"level": a.log_level},
        "recordings": {"enabled": not a.no_record, "directory": "recordings"},
        "rtp": {"port_min": 40000, "port_max": 59999},
        "calls": {"no_answer_timeout": 30},
        "prompts": {"directory": "prompts"},
        "tts": {"enabled": True, "cache": str(tts_cache)},
        "extensions": [{"number": "1001", "password": "secret1001", "name": "Caller"}]
        + [{"number": e, "password": f"pw{e}"} for e in agent_exts],
        "queues": {"bench": {
            "number": a.number, "strategy": a.strategy,
            "members": [{"agent": e} for e in agent_exts],
            "moh": "default", "first_announcement_after": 5,
            "announce_position_every": a.announce_every, "announce_holdtime": True,
            "max_wait": 0, "ring_timeout": 15, "retry_delay": 1, "wrapup": 0,
            "autopause_after": 0, "callback": False, "service_level": 20}},
    })
    music = moh_music()
    write_wav(srv.dir / "prompts" / "moh" / "default" / "music.wav", music)
    moh_table = {audioop.lin2ulaw(music[i:i + 320], 2) for i in range(0, len(music), 320)}
    srv.start()
    loop = asyncio.get_running_loop()
    try:
        assert srv.proc is not None
        sender = RtpSender(loop)
        sender.start()
        _, uac = await loop.create_datagram_endpoint(
            lambda: SipUac(("127.0.0.1", srv.port), srv.domain), local_addr=("127.0.0.1", 0))
        phones = AgentPhones(loop, ("127.0.0.1", srv.port), srv.domain, sender, a)
        b = QueueBench(srv, uac, phones, sender, a, moh_table)
        ports0 = (await api(srv, "GET", "/api/status")).get("rtp_ports_free")
        print(f"server pid {srv.proc.pid}, generator pid {os.getpid()}, {os.cpu_count()} cores; "
              f"recording {'off' if a.no_record else 'on'}; strategy {a.strategy}, wrap-up 0, "
              f"ring {a.ring} s, talk {a.talk} s, announcements every {a.announce_every:g} s; "
              f"TTS cache {tts_cache} ({cached0} files before)", flush=True)
        hdr = (f"{'wait x agents':>13} {'answered/s':>10} {'offer gap ms p50/p99/max (n)':>30} "
               f"{'hold loss%':>10} {'hold |dev| ms p50/p99/max':>26} {'>5ms%':>6} "
               f"{'jit ms':>6} {'anns':>5} {'switch ms p50/p99':>17} "
               f"{'connect ms p50/p99':>18} {'bridged ms p50/p99':>18} {'lag ms':>7} "
               f"{'cpu srv/gen %':>13}")
        printed_hdr = False
        for waiting, n_agents in sizes:
            for ext in agent_exts[:n_agents]:
                if ext not in phones.agents:
                    await phones.register(ext, f"pw{ext}")
                    await api(srv, "POST", f"/api/agents/{ext}/login", {"queue": "bench"})
            await b.grow(waiting + n_agents, a.setup_rate)
            await asyncio.sleep(a.settle)
            q = await api(srv, "GET", "/api/queues/bench")
            await api(srv, "GET", "/api/status?reset=1")
            b.reset()
            phones.reset()
            c_srv, c_gen, t0 = cpu_seconds(srv.proc.pid), self_cpu(), time.monotonic()
            b.measuring = phones.measuring = True
            await asyncio.sleep(a.seconds)
            b.measuring = phones.measuring = False
            dt = time.monotonic() - t0
            cpu_s = (cpu_seconds(srv.proc.pid) - c_srv) / dt * 100
            cpu_g = (self_cpu() - c_gen) / dt * 100
            st = await api(srv, "GET", "/api/status")
            q2 = await api(srv, "GET", "/api/queues/bench")
            lag = st.get("media", {}).get("max_tick_lag_ms", float("nan"))
            gaps = sorted(phones.offer_gaps)
            devs = sorted(b.devs)
            over5 = 100.0 * sum(1 for x in devs if x > 5.0) / len(devs) if devs else float("nan")
            jits = [c.hold.jitter * 1000 for c in b.window_callers if c.hold.rx > 50]
            if not printed_hdr:
                print(hdr, flush=True)
                printed_hdr = True
            gap_s = (f"{pcts(gaps, (50, 99, 100))} ({len(gaps)})" if gaps else "-")
            print(f"{waiting:>7}x{n_agents:<5} {phones.answered / dt:>10.1f} {gap_s:>30} "
                  f"{100.0 * b.hold_lost / max(1, b.hold_rx + b.hold_lost):>10.3f} "
                  f"{pcts(devs, (50, 99, 100)):>26} {over5:>6.2f} "
                  f"{(sum(jits) / len(jits)) if jits else float('nan'):>6.2f} "
                  f"{b.anns_heard:>5} {pcts(b.switch_gaps):>17} {pcts(b.connect_gaps):>18} "
                  f"{pcts(b.bridged_lat):>18} {lag:>7} {cpu_s:>8.0f}/{cpu_g:.0f}", flush=True)
            print(f"      longest GC pause in the window "
                  f"{st.get('gc', {}).get('max_pause_ms')} ms", flush=True)
            ag = q2.get("agents", {})
            print(f"      queue before/after the window: waiting {q.get('waiting')}/"
                  f"{q2.get('waiting')}, longest wait {q2.get('longest_wait')} s; agents "
                  f"available {ag.get('available')}, ringing {ag.get('ringing')}, on call "
                  f"{ag.get('on_call')}, paused {ag.get('paused')}; in the window: "
                  f"{len(b.window_callers)} callers served, {phones.double_offers} INVITEs to "
                  f"a busy agent, {phones.cancels} CANCELs, {phones.server_byes} server BYEs "
                  f"to agents", flush=True)
            if b.hold_after_agent:
                print(f"      !! {b.hold_after_agent} hold-audio packets ("
                      f"{b.hold_after_agent / 50:.1f} s) reached {len(b.hold_after_agent_callers)}"
                      f" caller(s) AFTER their agent was connected", flush=True)
        b.stopping = True
        # the waiting callers hang up; the agents finish their calls
        for leg in list(uac.legs.values()):
            await uac.bye(leg)
        await asyncio.sleep(a.talk_max_drain)
        st = await api(srv, "GET", "/api/status")
        q3 = await api(srv, "GET", "/api/queues/bench")
        agents_after = await api(srv, "GET", "/api/agents")
        states: dict[str, int] = {}
        for x in agents_after:
            states[x["state"]] = states.get(x["state"], 0) + 1
        print(f"after the run: {st.get('channels')} channel(s) left, RTP port pairs free "
              f"{ports0} before / {st.get('rtp_ports_free')} after, queue waiting "
              f"{q3.get('waiting')}, agent states {states}; set-up failures "
              f"{b.setup_failures or 0}; TTS cache now {len(list(tts_cache.rglob('*.wav')))} "
              f"files", flush=True)
        if st.get("channels"):
            for ch in (await api(srv, "GET", "/api/channels"))[:8]:
                print(f"      left: {ch.get('name')} {ch.get('state')} app={ch.get('app')} "
                      f"{ch.get('app_data')} caller={ch.get('caller')} dest={ch.get('dest')} "
                      f"bridged_with={ch.get('bridged_with')}")
        sender.stop()
    finally:
        srv.stop()
    print(log_problems(srv))
    drop_recordings(srv)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200x50", help="steps WAITINGxAGENTS, e.g. 200x50,400x100")
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window per step")
    ap.add_argument("--settle", type=float, default=20.0, help="seconds after a step's ramp")
    ap.add_argument("--setup-rate", type=float, default=50.0, help="new caller slots per second")
    ap.add_argument("--ring", default="0.2,0.6", help="agent ring time range, s")
    ap.add_argument("--talk", default="3,9", help="agent talk time range, s")
    ap.add_argument("--announce-every", type=float, default=15.0)
    ap.add_argument("--strategy", default="leastrecent")
    ap.add_argument("--number", default="300")
    ap.add_argument("--agent-base", type=int, default=2001)
    ap.add_argument("--tts-cache", default="/tmp/ccswitch-bench-tts")
    ap.add_argument("--no-record", action="store_true", help="call recording off")
    ap.add_argument("--log-level", default="warning", help="the server's logging level")
    a = ap.parse_args()
    a.talk_max_drain = float(a.talk.split(",")[1]) + 2.0
    run_fast(run(a))


if __name__ == "__main__":
    main()
