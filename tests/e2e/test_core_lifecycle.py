"""Shutdown, crash recovery and bad configuration (issue 2: core).

SIGTERM hangs up live calls with BYE and closes recordings and CDRs; kill -9
leaves a playable recording missing at most the last second or two, and the next
start closes the CDR as interrupted; a broken config.yaml stops start-up with
`config.yaml:LINE: message` and no traceback.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.server import CcswitchServer
from tests.e2e.test_core_calls import A_TONE, B_TONE, finished_cdrs, phone, tone
from tests.peers import audio
from tests.peers.baresip import Baresip


def strict_wav(path: Path) -> tuple[int, int, float]:
    """Check that a WAV is complete and self-consistent as a player would read it:
    RIFF size = file size - 8 and the data chunk size matches the bytes present.
    Returns (channels, rate, seconds declared by the header)."""
    raw = path.read_bytes()
    assert raw[:4] == b"RIFF" and raw[8:12] == b"WAVE", f"{path}: not a RIFF/WAVE file"
    riff = struct.unpack("<I", raw[4:8])[0]
    assert riff == len(raw) - 8, f"{path}: RIFF size {riff} != file size {len(raw)} - 8"
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, ch, rate = struct.unpack("<HHI", raw[body:body + 8])
            bits = struct.unpack("<H", raw[body + 14:body + 16])[0]
            fmt = (tag, ch, rate, bits)
        elif cid == b"data":
            assert fmt is not None, "data before fmt"
            assert body + size == len(raw), \
                f"{path}: data chunk says {size} bytes, file holds {len(raw) - body}"
            tag, ch, rate, bits = fmt
            assert (tag, bits) == (1, 16)
            return ch, rate, size / (ch * 2 * rate)
        pos = body + size + (size & 1)
    raise AssertionError(f"{path}: no data chunk")


async def stop_phones(*uas: Baresip) -> None:
    """Stop phones together: with the registrar gone each one waits ~2-4 s for its
    un-REGISTER before the driver kills it."""
    await asyncio.gather(*(u.stop() for u in uas))


async def _talking_call(server: CcswitchServer, a: Baresip, b: Baresip) -> float:
    assert await a.register() and await b.register()
    await a.call("1002", timeout=10)
    await b.wait_established(5)
    return time.monotonic()


async def test_sigterm_hangs_up_calls_and_finalises(server: CcswitchServer,
                                                    tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001", source=tone(tmp_path, A_TONE)) as a, \
            phone(server, tmp_path, "1002", answermode="auto",
                  source=tone(tmp_path, B_TONE)) as b:
        await _talking_call(server, a, b)
        await asyncio.sleep(2.0)
        server.signal(signal.SIGTERM)
        await a.wait_closed(5)  # both phones get a BYE
        await b.wait_closed(5)
        assert server.proc is not None
        rc = await asyncio.to_thread(server.proc.wait, 10)
        await stop_phones(a, b)
    assert rc == 0, server.log()
    assert "Traceback" not in server.log(200000)
    rows = server.cdrs()
    assert len(rows) == 1
    c = rows[0]
    assert c["end"] is not None and not c["interrupted"], c
    assert (c["disposition"], c["hangup_cause"]) == ("ANSWERED", "SYSTEM_SHUTDOWN")
    (rec,) = server.recordings()
    ch, rate, secs = strict_wav(rec)
    assert (ch, rate) == (2, 8000) and secs > 1.5
    rate, st = audio.load_wav(rec)
    assert audio.tone_present(st[0], rate, A_TONE) and audio.tone_present(st[1], rate, B_TONE)
    assert not server.socket_path.exists()  # control socket removed on the way out


async def test_kill9_leaves_valid_recording_and_restart_marks_interrupted(
        server: CcswitchServer, tmp_path: Path) -> None:
    async with phone(server, tmp_path, "1001", source=tone(tmp_path, A_TONE)) as a, \
            phone(server, tmp_path, "1002", answermode="auto",
                  source=tone(tmp_path, B_TONE)) as b:
        answered = await _talking_call(server, a, b)
        await asyncio.sleep(4.0)
        talked = time.monotonic() - answered
        server.kill9()
        (rec,) = server.recordings()
        ch, rate, secs = strict_wav(rec)
        await stop_phones(a, b)
    assert (ch, rate) == (2, 8000)
    # at most ~1 s of audio lost (header rewritten every second, plus jitter slack)
    assert secs >= talked - 2.0, (secs, talked)
    assert secs <= talked + 0.5, (secs, talked)
    r, st = audio.load_wav(rec)
    assert audio.tone_present(st[0], r, A_TONE) and audio.tone_present(st[1], r, B_TONE)
    before = server.cdrs()
    assert len(before) == 1 and before[0]["end"] is None, before

    # a new server on the same directory (database, recordings) closes the open CDR
    again = CcswitchServer(server.dir)
    again.start()
    try:
        rows = await finished_cdrs(again)
        (c,) = rows
        assert c["interrupted"] and c["hangup_cause"] == "INTERRUPTED", c
        assert c["disposition"] == "ANSWERED"
        assert c["answer"] is not None and c["end"] >= c["answer"]
        # the end is taken from the recording (the last audio written), not restart time
        assert c["end"] - c["answer"] < talked + 2.0
        out = await asyncio.to_thread(again.cli, "cdr", "--last", "5")
        assert "INTERRUPTED" in out.stdout
    finally:
        again.stop()


# ---------------------------------------------------------------- bad configuration
GOOD = """\
server:
  listen:
    - {{transport: udp, address: 127.0.0.1, port: {port}}}
rtp:
  address: 127.0.0.1
  port_min: 32000
  port_max: 32099
database:
  path: ccswitch.db
control:
  socket: ccswitch.sock
extensions:
  - number: "1001"
    password: secret1001
  - number: "1002"
    password: secret1002
"""


def _run(cfg: Path, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccswitch", "--config", str(cfg), "run"],
        capture_output=True, text=True, timeout=timeout, cwd=cfg.parent)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = int(s.getsockname()[1])
    s.close()
    return p


BROKEN: list[tuple[str, str, str, str]] = [
    # (id, text replaced, replacement, needle of the line the message must name)
    ("unknown-key", "  port_max: 32099\n", "  port_max: 32099\n  jitter: 5\n", "jitter"),
    ("wrong-type", "  port_min: 32000\n", "  port_min: lots\n", "port_min"),
    ("duplicate-extension", '  - number: "1002"\n', '  - number: "1001"\n',
     '- number: "1001"'),
]


@pytest.mark.parametrize(("case", "old", "new", "needle"), BROKEN, ids=[b[0] for b in BROKEN])
def test_bad_config_names_file_and_line(tmp_path: Path, case: str, old: str, new: str,
                                        needle: str) -> None:
    text = GOOD.format(port=_free_port())
    assert old in text
    text = text.replace(old, new)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    line = _line_of(text, needle)
    if case == "duplicate-extension":
        line = [i for i, ln in enumerate(text.splitlines(), 1) if needle in ln][1]
    r = _run(cfg)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    assert f"config.yaml:{line}: " in out, (line, out)


def test_port_in_use_names_the_listen_line(tmp_path: Path) -> None:
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy.bind(("127.0.0.1", 0))
    try:
        port = busy.getsockname()[1]
        text = GOOD.format(port=port)
        cfg = tmp_path / "config.yaml"
        cfg.write_text(text)
        r = _run(cfg)
    finally:
        busy.close()
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    line = _line_of(text, "transport: udp")
    assert f"config.yaml:{line}: " in out and "in use" in out, (line, out)


def test_good_config_starts(tmp_path: Path) -> None:
    """The base of the broken cases is itself valid (so each case fails for its reason)."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(GOOD.format(port=_free_port()))
    with open(tmp_path / "out.log", "wb") as out:
        p = subprocess.Popen([sys.executable, "-m", "ccswitch", "--config", str(cfg), "run"],
                             stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 15
        while not (tmp_path / "ccswitch.sock").exists():
            assert p.poll() is None, (tmp_path / "out.log").read_text()
            assert time.monotonic() < deadline, "did not start"
            time.sleep(0.05)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(10)
    assert rc == 0
