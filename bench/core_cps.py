"""Calls per second through the B2BUA: SIPp UAC (digest auth) -> ccswitch -> SIPp UAS.

Each call is INVITE (401, ACK, INVITE with credentials) / 100 / 180 / 200 / ACK / BYE /
200 on the caller's side and INVITE / 180 / 200 / ACK / BYE / 200 on the callee's
side: the real dialplan path (auth, Dial app, media endpoints, CDR, recording).

    .venv/bin/python bench/core_cps.py [--rates 100,200,300,400,500] [--seconds 10]

Prints, per offered rate: calls attempted / succeeded / failed, achieved calls/s,
setup time percentiles (sipp's clock has ~4 ms resolution) and the server's CPU
use (share of one core).  Not a test: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccswitch.sip.auth import build_authorization
from ccswitch.sip.message import Response, parse_message
from tests.e2e.server import CcswitchServer
from tests.peers.sipp import run_sipp, start_sipp


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def register_contact(server_port: int, ext: str, password: str, contact_port: int) -> None:
    """REGISTER `ext` with a Contact pointing at a SIPp UAS (digest computed here)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    lp = s.getsockname()[1]

    def req(cseq: int, auth: str | None) -> bytes:
        lines = [
            f"REGISTER sip:127.0.0.1:{server_port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bK-bench-{cseq};rport",
            f"From: <sip:{ext}@127.0.0.1>;tag=bench{ext}",
            f"To: <sip:{ext}@127.0.0.1>",
            f"Call-ID: bench-reg-{ext}@127.0.0.1",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{ext}@127.0.0.1:{contact_port}>",
            "Expires: 3600",
            "Max-Forwards: 70",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    s.sendto(req(1, None), ("127.0.0.1", server_port))
    r = parse_message(s.recv(65535))
    assert isinstance(r, Response) and r.status == 401, r
    auth = build_authorization(r.get("WWW-Authenticate") or "", "REGISTER",
                               f"sip:127.0.0.1:{server_port}", ext, password)
    s.sendto(req(2, auth), ("127.0.0.1", server_port))
    r = parse_message(s.recv(65535))
    assert isinstance(r, Response) and r.status == 200, r
    s.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="100,200,300,400,500")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--record", action="store_true", help="keep call recording on")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ccsw-cps."))
    srv = CcswitchServer(work / "server", {
        "logging": {"level": "warning"},
        "recordings": {"enabled": bool(a.record), "directory": "recordings"},
        "rtp": {"port_min": 40000, "port_max": 59999},
    })
    srv.start()
    try:
        assert srv.proc is not None
        uas = await start_sipp("uas_echo.xml", None, calls=10, limit=400,
                               extra_args=["-m", "100000000"],
                               timeout=3600, workdir=work / "uas")
        register_contact(srv.port, "1002", "secret1002", uas.port)
        print(f"server pid {srv.proc.pid}, callee = SIPp UAS on {uas.port}")
        print(f"{'rate':>6} {'attempted':>9} {'ok':>7} {'failed':>6} {'cps':>7} "
              f"{'setup p50/p95/p99 ms':>22} {'server cpu':>10}")
        for rate in [int(x) for x in a.rates.split(",")]:
            calls = int(rate * a.seconds)
            c0, t0 = cpu_seconds(srv.proc.pid), time.monotonic()
            res = await run_sipp("uac_load.xml", srv.domain, service="1002", caller="1001",
                                 auth_user="1001", auth_pass="secret1001", rate=rate,
                                 # sipp sizes its media port block by `calls`: keep it
                                 # small and give the real count with -m
                                 calls=10, extra_args=["-m", str(calls)],
                                 limit=max(200, rate * 2), duration_ms=0,
                                 timeout=a.seconds * 4 + 30, workdir=work / f"uac{rate}")
            c1, t1 = cpu_seconds(srv.proc.pid), time.monotonic()
            st = res.rtt.get("setup")
            pct = f"{st.p50:.0f}/{st.p95:.0f}/{st.p99:.0f}" if st else "-"
            cps = res.successful / max(res.elapsed, 1e-9)
            print(f"{rate:>6} {res.attempted:>9} {res.successful:>7} {res.failed:>6} "
                  f"{cps:>7.1f} {pct:>22} {(c1 - c0) / (t1 - t0) * 100:>9.0f}%", flush=True)
            if res.failed:
                print("   failures:", res.failure_reasons)
            await asyncio.sleep(1.0)
        await uas.stop()
    finally:
        srv.stop()


if __name__ == "__main__":
    asyncio.run(main())
