"""The CLI in HTTP mode (token from a cli.yaml), `users passwd admin` before the first start,
and a backup / restore round trip taken while the server runs."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.e2e.apiclient import api_overrides, base_url
from tests.e2e.server import CcswitchServer


def _cli(srv: CcswitchServer, *args: str, env: dict[str, str] | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "ccswitch", "--config", str(srv.config_path), *args],
        capture_output=True, text=True, timeout=30, cwd=srv.dir, input=stdin,
        env=dict(os.environ, **(env or {})))


def test_cli_http_mode_users_backup_restore(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CCSWITCH_ADMIN_PASSWORD", raising=False)
    monkeypatch.delenv("CCSWITCH_API_URL", raising=False)
    monkeypatch.delenv("CCSWITCH_TOKEN", raising=False)
    srv = CcswitchServer(tmp_path / "server", api_overrides())
    srv.write_config()
    # the admin password set before the first start (the README's first command)
    r = _cli(srv, "users", "passwd", "admin", stdin="first-admin-pw\n")
    assert r.returncode == 0, r.stderr
    srv.start()
    try:
        assert "shown only this once" not in srv.log(), "a password was generated anyway"
        r = _cli(srv, "users", "add", "ann", "--role", "agent", "--extension", "1002",
                 "--json")
        assert r.returncode == 0, r.stderr
        generated = json.loads(r.stdout)["password"]
        assert len(generated) >= 12
        admin_token = json.loads(_cli(srv, "users", "token", "admin", "--json").stdout)["token"]
        ann_token = json.loads(_cli(srv, "users", "token", "ann", "--json").stdout)["token"]
        # HTTP mode from a cli.yaml: the token's user and role apply
        cli_yaml = tmp_path / "cli.yaml"
        cli_yaml.write_text(yaml.safe_dump({"url": base_url(srv), "token": admin_token}))
        http = ("--cli-config", str(cli_yaml))
        r = _cli(srv, *http, "queues", "--json")
        assert r.returncode == 0, r.stderr
        assert {q["name"] for q in json.loads(r.stdout)} == {"sales", "support"}
        r = _cli(srv, *http, "users", "list")
        assert r.returncode == 0 and "ann" in r.stdout and "admin" in r.stdout, r.stdout
        r = _cli(srv, "--api-url", base_url(srv), "--token", ann_token, "users", "list")
        assert r.returncode == 8, (r.returncode, r.stderr)  # an agent: forbidden
        r = _cli(srv, "--api-url", base_url(srv), "--token", ann_token, "agent", "login",
                 "1002", "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["result"] == ["sales"], r.stderr
        r = _cli(srv, "--api-url", base_url(srv), "--token", ann_token, "agent", "login",
                 "1004")
        assert r.returncode == 8  # not this agent's own
        r = _cli(srv, "--api-url", base_url(srv), "--token", "ccs_wrong", "queues")
        assert r.returncode == 8
        r = _cli(srv, *http, "channel", "show", "nothing")
        assert r.returncode == 4
        r = _cli(srv, *http, "channels", "--watch", "--json", "--watch-limit", "1")
        assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0]) == [], r.stderr
        r = _cli(srv, "channels", "--watch", "--json", "--watch-limit", "1")  # the socket
        assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0]) == [], r.stderr
        r = _cli(srv, *http, "audit", "--json", "--action", "agent_login")
        rows = json.loads(r.stdout)
        assert [(x["username"], x["target"], x["status"]) for x in rows] == [
            ("ann", "1004", 403), ("ann", "1002", 200)]
        r = _cli(srv, *http, "recordings", "search", "--since=-1h", "--json")
        assert r.returncode == 0 and json.loads(r.stdout) == []
        # the password from `users passwd` works for the web login
        r = _cli(srv, *http, "users", "tokens", "admin", "--json")
        assert len(json.loads(r.stdout)) == 1

        # ---- backup while running, change things, restore, and the change is undone
        r = _cli(srv, "backup", "--output", str(tmp_path / "bk"), "--json")
        assert r.returncode == 0, r.stderr
        archive = Path(json.loads(r.stdout)["path"])
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert {"ccswitch.db", "config.yaml", "manifest.json"} <= set(names)
        assert manifest["schema_version"] >= 3
        assert _cli(srv, "users", "delete", "ann").returncode == 0
        r = _cli(srv, "restore", str(archive))
        assert r.returncode == 1 and "running" in r.stderr  # refused while running
        r = _cli(srv, "restore", str(archive), "--force")  # stops the server first
        assert r.returncode == 0, r.stderr
        assert srv.proc is not None
        srv.proc.wait(10)
        srv.start()
        r = _cli(srv, *http, "users", "list", "--json")
        assert "ann" in {u["username"] for u in json.loads(r.stdout)}, r.stdout
        # the API token made before the backup works again, and so does the agent's
        r = _cli(srv, "--api-url", base_url(srv), "--token", ann_token, "agents", "--json")
        assert r.returncode == 0, r.stderr
        assert (srv.dir / "ccswitch.db.pre-restore").exists()
        # the restored database says it was restored (the shutdown's entry went with the
        # database it was written to, kept as ccswitch.db.pre-restore)
        r = _cli(srv, *http, "audit", "--json", "--action", "restore")
        assert [(x["username"], x["detail"]["forced"]) for x in json.loads(r.stdout)] == [
            ("local", True)]
    finally:
        srv.stop()
