"""Start the real ccswitch server as a subprocess on 127.0.0.1 with ephemeral ports."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.peers.netutil import free_rtp_range, free_sip_port

ROOT = Path(__file__).resolve().parents[2]

DEMO_EXTENSIONS = [
    {"number": "1001", "password": "secret1001", "name": "Alice"},
    {"number": "1002", "password": "secret1002", "name": "Bob"},
    {"number": "1003", "password": "secret1003", "name": "Carol"},
]


class CcswitchServer:
    """A running `ccswitch run` with its own directory, ports, database and recordings."""

    def __init__(self, workdir: Path, overrides: dict[str, Any] | None = None,
                 ipv6: bool = False) -> None:
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_sip_port()
        # the server's media ports: a free block outside the peers' 30000-31999
        lo, hi = free_rtp_range(200, 32000, 39999)
        listen = [
            {"transport": "udp", "address": "127.0.0.1", "port": self.port},
            {"transport": "tcp", "address": "127.0.0.1", "port": self.port},
        ]
        if ipv6:
            listen += [
                {"transport": "udp", "address": "::1", "port": self.port},
                {"transport": "tcp", "address": "::1", "port": self.port},
            ]
        self.config: dict[str, Any] = {
            "server": {"listen": listen},
            "rtp": {"address": "127.0.0.1", "port_min": lo, "port_max": hi},
            "calls": {"no_answer_timeout": 15},
            "database": {"path": "ccswitch.db"},
            "control": {"socket": "ccswitch.sock"},
            "recordings": {"directory": "recordings"},
            "logging": {"level": "debug"},
            # recognizers load big models: only the speech tests turn them on
            "speech": {"enabled": False},
            "extensions": [dict(e) for e in DEMO_EXTENSIONS],
        }
        for k, v in (overrides or {}).items():
            if isinstance(v, dict) and isinstance(self.config.get(k), dict):
                self.config[k].update(v)
            else:
                self.config[k] = v
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "server.log"

    @property
    def domain(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.dir / "config.yaml"

    @property
    def socket_path(self) -> Path:
        return self.dir / "ccswitch.sock"

    @property
    def db_path(self) -> Path:
        return self.dir / "ccswitch.db"

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))

    def start(self, timeout: float = 20.0) -> None:
        # the SIP port was free when picked, but the loopback is shared and another
        # process can take it (as an ephemeral port) before ccswitch binds: pick again
        for attempt in range(3):
            try:
                self._start_once(timeout)
                return
            except RuntimeError as e:
                if "port in use" not in str(e) or attempt == 2:
                    raise
            old, self.port = self.port, free_sip_port()
            for lst in self.config["server"]["listen"]:
                if lst.get("port") == old:
                    lst["port"] = self.port

    def _start_once(self, timeout: float) -> None:
        self.write_config()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ccswitch", "--config", str(self.config_path), "run"],
            cwd=self.dir, stdout=logf, stderr=subprocess.STDOUT, env=env,
        )
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ccswitch exited ({self.proc.returncode}):\n{self.log()}")
            if self.socket_path.exists() and self._api_up():
                return
            time.sleep(0.05)
        raise RuntimeError(f"ccswitch did not start in {timeout}s:\n{self.log()}")

    def _api_up(self) -> bool:
        """The control API answers: start-up (flows, listeners) is complete."""
        import socket as so

        s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
        try:
            s.settimeout(1.0)
            s.connect(str(self.socket_path))
            s.sendall(b"GET /api/status HTTP/1.0\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False
        finally:
            s.close()

    def log(self, tail: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    # ---- talking to it
    def cli(self, *args: str, check: bool = True, timeout: float = 20.0
            ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "ccswitch", "--config", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout, cwd=self.dir,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"ccswitch {' '.join(args)} failed ({r.returncode}):\n"
                                 f"{r.stdout}\n{r.stderr}")
        return r

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)

    async def acli_json(self, *args: str) -> Any:
        return await asyncio.to_thread(self.cli_json, *args)

    def cdrs(self) -> list[dict[str, Any]]:
        con = sqlite3.connect(self.db_path)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute("SELECT * FROM cdr ORDER BY start")]
        finally:
            con.close()

    async def wait_for(self, predicate: Any, timeout: float = 10.0, interval: float = 0.1
                       ) -> Any:
        """Poll `predicate()` (sync) until truthy; for state only visible by asking."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = await asyncio.to_thread(predicate)
            if last:
                return last
            await asyncio.sleep(interval)
        raise AssertionError(f"condition not met in {timeout}s (last={last!r})\n{self.log()}")

    def recordings(self) -> list[Path]:
        return sorted((self.dir / "recordings").rglob("*.wav"))


@contextmanager
def running_server(workdir: Path, overrides: dict[str, Any] | None = None,
                   ipv6: bool = False) -> Iterator[CcswitchServer]:
    srv = CcswitchServer(workdir, overrides, ipv6)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
