"""Run SIPp 3.6.1 scenarios from asyncio tests.

    res = await run_sipp("uac_load.xml", f"127.0.0.1:{port}", service="200", caller="1001",
                         auth_user="1001", auth_pass="secret1001", rate=20, calls=100,
                         duration_ms=500, timeout=30, workdir=tmp_path)
    assert res.ok, res.summary()
    res.rtt["setup"].p95                       # ms, from the scenario's "setup" timer

    async with await start_sipp("uas_echo.xml", rtp_echo=True, calls=1, workdir=tmp_path) as uas:
        ...                                     # dial f"sip:x@127.0.0.1:{uas.port}"
        res = await uas.wait(timeout=20)

Every run gets a free local SIP port (``-p``; sipp would otherwise take 5060),
a free media port in 30000-31999 (``-mi 127.0.0.1 -mp``), a free control port
(``-cp``), ``-nostdin``, ``-trace_err``, ``-trace_stat -fd 1``, ``-trace_rtt``,
``-timeout`` and ``-recv_timeout``, and runs in its own working directory
(default: a temp dir) where every sipp file lands.  The process is bounded by
an outer timeout as well, and stopped by PID only.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv as csvmod
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.peers import netutil, sipp_gen

SCENARIO_DIR = Path(__file__).resolve().parent / "sipp"
USERS_CSV = SCENARIO_DIR / "users.csv"

_FAIL_COLS = {
    "FailedCannotSendMessage(C)": "cannot_send",
    "FailedMaxUDPRetrans(C)": "max_udp_retrans",
    "FailedTcpConnect(C)": "tcp_connect",
    "FailedTcpClosed(C)": "tcp_closed",
    "FailedUnexpectedMessage(C)": "unexpected_msg",
    "FailedCallRejected(C)": "rejected",
    "FailedCmdNotSent(C)": "cmd_not_sent",
    "FailedRegexpDoesntMatch(C)": "regexp_no_match",
    "FailedRegexpShouldntMatch(C)": "regexp_match",
    "FailedRegexpHdrNotFound(C)": "regexp_hdr_missing",
    "FailedOutboundCongestion(C)": "outbound_congestion",
    "FailedTimeoutOnRecv(C)": "timeout_recv",
    "FailedTimeoutOnSend(C)": "timeout_send",
    "FailedTestDoesntMatch(C)": "test_no_match",
    "FailedTestShouldntMatch(C)": "test_match",
    "FailedStrcmpDoesntMatch(C)": "strcmp_no_match",
    "FailedStrcmpShouldntMatch(C)": "strcmp_match",
}


@dataclass(frozen=True)
class RttStats:
    """Response-time distribution of one scenario timer (ms, nearest rank).

    sipp's clock is coarse (~4 ms steps on this machine): loopback values read 0 or 4."""

    name: str
    count: int
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


@dataclass
class SippResult:
    exit_code: int | None
    attempted: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    dead_call_msgs: int = 0
    out_of_call_msgs: int = 0
    call_rate: float = 0.0
    failure_reasons: dict[str, int] = field(default_factory=dict)
    rtt: dict[str, RttStats] = field(default_factory=dict)
    errors_tail: str = ""
    output_tail: str = ""
    workdir: Path = Path()
    cmd: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    killed: bool = False
    """True if sipp had to be killed (outer timeout or stop()); counts come from its
    last 1-second statistics dump."""

    @property
    def ok(self) -> bool:
        """sipp exit 0, at least one successful call and none failed."""
        return self.exit_code == 0 and self.failed == 0 and self.successful > 0

    def summary(self) -> str:
        s = (f"sipp rc={self.exit_code} attempted={self.attempted} ok={self.successful} "
             f"failed={self.failed} rate={self.call_rate:.1f}/s retrans={self.retransmissions} "
             f"elapsed={self.elapsed:.1f}s")
        if self.failure_reasons:
            s += " reasons=" + ",".join(f"{k}:{v}" for k, v in sorted(self.failure_reasons.items()))
        for r in self.rtt.values():
            s += f" {r.name}[n={r.count} p50={r.p50} p95={r.p95} p99={r.p99} max={r.max}]ms"
        if self.killed:
            s += " KILLED"
        s += f" dir={self.workdir}"
        if self.errors_tail and not self.ok:
            s += "\n--- errors.log tail:\n" + self.errors_tail
        if not self.ok and self.output_tail:
            s += "\n--- output tail:\n" + self.output_tail[-800:]
        return s


def scenario_path(scenario: str | os.PathLike[str]) -> Path:
    """A file path, or a name of a scenario in tests/peers/sipp/."""
    p = Path(scenario)
    if p.is_file():
        return p.resolve()
    q = SCENARIO_DIR / str(scenario)
    if q.is_file():
        return q
    raise FileNotFoundError(f"sipp scenario not found: {scenario}")


def write_dtmf_scenario(path: str | os.PathLike[str], digits: str, *, wait_ms: int = 2000,
                        gap_ms: int = 600, hold_ms: int = 4000) -> Path:
    """Write a uac_dtmf_pcap variant sending ``digits`` (RFC 4733 pcaps, PT 101)."""
    p = Path(path)
    p.write_text(sipp_gen.dtmf_pcap(digits, wait_ms, gap_ms, hold_ms))
    return p


def write_users_csv(path: str | os.PathLike[str], users: Iterable[tuple[str, str]],
                    order: str = "SEQUENTIAL") -> Path:
    """Injection file for register_auth.xml: field0 = user, field1 = [authentication ...]."""
    lines = [order] + [f"{u};[authentication username={u} password={pw}]" for u, pw in users]
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


def _pct(vals: Sequence[float], p: float) -> float:
    k = max(0, min(len(vals) - 1, math.ceil(p / 100.0 * len(vals)) - 1))
    return vals[k]


def _read_stat(path: Path) -> dict[str, str] | None:
    try:
        with open(path, newline="") as f:
            rows = [r for r in csvmod.reader(f, delimiter=";") if r and any(c.strip() for c in r)]
    except OSError:
        return None
    if len(rows) < 2:
        return None
    head, last = rows[0], rows[-1]
    return {h.strip(): (last[i].strip() if i < len(last) else "") for i, h in enumerate(head)}


def _read_rtt(workdir: Path) -> dict[str, RttStats]:
    vals: dict[str, list[float]] = {}
    for f in workdir.glob("*_rtt.csv"):
        with open(f, newline="") as fh:
            for r in csvmod.reader(fh, delimiter=";"):
                if len(r) < 3 or r[0].startswith("Date"):
                    continue
                try:
                    vals.setdefault(r[2].strip(), []).append(float(r[1]))
                except ValueError:
                    continue
    out = {}
    for name, v in vals.items():
        v.sort()
        out[name] = RttStats(name, len(v), _pct(v, 50), _pct(v, 95), _pct(v, 99), v[-1],
                             round(sum(v) / len(v), 3))
    return out


def _tail(path: Path, n: int = 1500) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-n:].decode("utf-8", "replace")


class SippProcess:
    """A running sipp (see :func:`start_sipp`)."""

    def __init__(self, proc: asyncio.subprocess.Process, cmd: list[str], workdir: Path,
                 port: int, media_port: int, control_port: int, hard_timeout: float,
                 own_workdir: bool) -> None:
        self.proc = proc
        self.cmd = cmd
        self.workdir = workdir
        self.port = port
        self.media_port = media_port
        self.control_port = control_port
        self.hard_timeout = hard_timeout
        self.started = time.monotonic()
        self._own_workdir = own_workdir
        self._result: SippResult | None = None
        self._killed = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def uri_host(self) -> str:
        """``127.0.0.1:<port>``: where to send requests to this sipp."""
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> SippProcess:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _signal_and_wait(self, sig: int, wait: float) -> bool:
        if self.proc.returncode is not None:
            return True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)  # our own child, by PID
        try:
            await asyncio.wait_for(self.proc.wait(), wait)
            return True
        except TimeoutError:
            return False

    async def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to exit (at most ``timeout``, default: its hard limit), then
        collect the result.  On timeout sipp is stopped and ``killed`` is set."""
        if self._result is not None:
            return self._result
        if timeout is None:
            limit = self.hard_timeout - (time.monotonic() - self.started)
        else:
            limit = timeout
        try:
            await asyncio.wait_for(self.proc.wait(), max(0.1, limit))
        except TimeoutError:
            self._killed = True
            await self._terminate(grace=1.0)
        return self._collect()

    async def stop(self, grace: float = 3.0) -> SippResult:
        """Soft exit (SIGUSR1: no new calls, finish current ones) for ``grace`` s,
        then SIGTERM, then SIGKILL - all by PID.  Returns the result."""
        if self._result is not None:
            return self._result
        if self.proc.returncode is None:
            await self._terminate(grace)
        return self._collect()

    async def _terminate(self, grace: float) -> None:
        if await self._signal_and_wait(signal.SIGUSR1, grace):
            return
        self._killed = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if await self._signal_and_wait(sig, 2.0):
                return

    def _collect(self) -> SippResult:
        res = SippResult(exit_code=self.proc.returncode, workdir=self.workdir, cmd=self.cmd,
                         elapsed=round(time.monotonic() - self.started, 3), killed=self._killed)
        s = _read_stat(self.workdir / "stat.csv")
        if s is not None:
            def num(key: str) -> float:
                try:
                    return float(s.get(key, "0") or 0)
                except ValueError:
                    return 0.0
            res.attempted = int(num("TotalCallCreated")
                                or num("OutgoingCall(C)") + num("IncomingCall(C)"))
            res.successful = int(num("SuccessfulCall(C)"))
            res.failed = int(num("FailedCall(C)"))
            res.retransmissions = int(num("Retransmissions(C)"))
            res.dead_call_msgs = int(num("DeadCallMsgs(C)"))
            res.out_of_call_msgs = int(num("OutOfCallMsgs(C)"))
            res.call_rate = round(num("CallRate(C)"), 2)
            res.failure_reasons = {short: int(num(col)) for col, short in _FAIL_COLS.items()
                                   if int(num(col))}
        res.rtt = _read_rtt(self.workdir)
        res.errors_tail = _tail(self.workdir / "errors.log")
        res.output_tail = _tail(self.workdir / "sipp.out", 2000)
        self._result = res
        return res


async def start_sipp(
    scenario: str | os.PathLike[str],
    target: str | None = None,
    *,
    service: str | None = "100",
    caller: str | None = "1001",
    auth_user: str | None = None,
    auth_pass: str | None = None,
    auth_uri: str | None = None,
    rate: float = 10.0,
    calls: int = 1,
    limit: int = 100,
    duration_ms: int = 1000,
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    recv_timeout_ms: int = 10000,
    csv: str | os.PathLike[str] | None = None,
    keys: Mapping[str, str] | None = None,
    rtp_echo: bool = False,
    transport: str = "u1",
    trace_msg: bool = False,
    local_port: int | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> SippProcess:
    """Start sipp without waiting; ``target`` (``host:port``) is None for a UAS.

    ``calls`` is ``-m`` (a UAS exits after that many calls), ``timeout`` is sipp's
    ``-timeout`` and, plus 10 s, the hard limit of :meth:`SippProcess.wait`.
    ``keys`` adds ``-key k v`` pairs (``service``/``caller`` are keys too).
    ``local_port`` forces the SIP port (default: a free one; never 5060)."""
    if shutil.which("sipp") is None:
        raise RuntimeError("sipp not installed (apt-get install sip-tester)")
    sf = scenario_path(scenario) if not str(scenario).startswith("sn:") else None
    if target is not None:
        netutil.assert_loopback(target)
    own = workdir is None
    base = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="sipp-"))
    base.mkdir(parents=True, exist_ok=True)
    wd = Path(tempfile.mkdtemp(prefix=f"sipp-{Path(str(scenario)).stem}-", dir=base)) if not own \
        else base
    port = local_port if local_port is not None else netutil.free_sip_port()
    cport = netutil.free_udp_port()
    # [auto_media_port] advances by 4 per call: keep all of them inside the peer RTP range
    span = 40
    if sf is not None and "[auto_media_port]" in sf.read_text(errors="replace"):
        span = max(span, 4 * calls + 8)
        if span > 1900:
            raise ValueError(f"{sf.name} uses [auto_media_port]: at most 473 calls per run "
                             "(media ports must stay in 30000-31999)")
    mlo, _mhi = netutil.free_rtp_range(span)
    cmd: list[str] = ["sipp"]
    cmd += ["-sf", str(sf)] if sf is not None else ["-sn", str(scenario)[3:]]
    if service is not None:
        cmd += ["-s", service]
    all_keys = dict(keys or {})
    if caller is not None:
        all_keys.setdefault("caller", caller)
    for k, v in all_keys.items():
        cmd += ["-key", k, v]
    if auth_user is not None:
        cmd += ["-au", auth_user]
    if auth_pass is not None:
        cmd += ["-ap", auth_pass]
    if auth_uri is not None:
        cmd += ["-auth_uri", auth_uri]
    if csv is not None:
        cmd += ["-inf", str(Path(csv).resolve())]
    cmd += ["-t", transport, "-i", netutil.LOOPBACK, "-p", str(port), "-cp", str(cport),
            "-mi", netutil.LOOPBACK, "-mp", str(mlo), "-bind_local",
            "-r", f"{rate:g}", "-l", str(limit), "-m", str(calls), "-d", str(duration_ms),
            "-trace_err", "-error_file", "errors.log",
            "-trace_stat", "-stf", "stat.csv", "-fd", "1",
            "-trace_rtt", "-rtt_freq", "1",
            "-trace_screen", "-screen_file", "screen.log",
            "-recv_timeout", str(recv_timeout_ms), "-nostdin",
            "-timeout", f"{math.ceil(timeout)}s"]
    if trace_msg:
        cmd += ["-trace_msg", "-message_file", "messages.log"]
    if rtp_echo:
        cmd += ["-rtp_echo"]
    cmd += list(extra_args)
    if target is not None:
        cmd.append(target)
    (wd / "cmd.txt").write_text(" ".join(cmd) + "\n")
    out = open(wd / "sipp.out", "wb")  # noqa: SIM115 - handed to the child
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, cwd=wd, stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()
    sp = SippProcess(proc, cmd, wd, port, mlo, cport, timeout + 10.0, own)
    if target is None:
        # a UAS must be listening before the test sends to it
        await _wait_listening(sp, port)
    return sp


async def _wait_listening(sp: SippProcess, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sp.proc.returncode is not None:
            out = _tail(sp.workdir / "sipp.out")
            raise RuntimeError(f"sipp exited rc={sp.proc.returncode}: {out}")
        if netutil.udp_port_bound(port):
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"sipp did not bind 127.0.0.1:{port}: {_tail(sp.workdir / 'sipp.out')}")


async def run_sipp(
    scenario: str | os.PathLike[str],
    target: str | None = None,
    **kw: object,
) -> SippResult:
    """:func:`start_sipp` + :meth:`SippProcess.wait` (same keyword arguments)."""
    sp = await start_sipp(scenario, target, **kw)  # type: ignore[arg-type]
    return await sp.wait()
