"""`ccswitch` commands of the operations API, and the CLI's HTTP mode.

Two ways to reach a server:

* the local control socket (default; whoever can open it is the administrator),
* HTTP with an API token: `--api-url URL --token TOKEN`, or $CCSWITCH_API_URL /
  $CCSWITCH_TOKEN, or a file (default ~/.config/ccswitch/cli.yaml, or --cli-config,
  or $CCSWITCH_CLI_CONFIG) holding `url:` and `token:`.  The token is then the
  user's: the server applies that user's role.

Exit codes: 0 ok, 1 error, 2 bad configuration, 3 server not running, 4 not found,
8 not allowed (401 / 403).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from ccswitch.cli import CliError, _fmt_duration, _q, _table, api

DEFAULT_CLI_CONFIG = "~/.config/ccswitch/cli.yaml"
EXIT_FORBIDDEN = 8


# ---------------------------------------------------------------------------- HTTP mode
def http_target(args: argparse.Namespace) -> tuple[str, str] | None:
    """(base URL, token) when the CLI talks HTTP, else None (the local socket)."""
    if getattr(args, "socket", None):
        return None
    url = getattr(args, "api_url", None) or os.environ.get("CCSWITCH_API_URL")
    token = getattr(args, "token", None) or os.environ.get("CCSWITCH_TOKEN")
    path = Path(os.path.expanduser(getattr(args, "cli_config", None)
                                   or os.environ.get("CCSWITCH_CLI_CONFIG")
                                   or DEFAULT_CLI_CONFIG))
    if (not url or not token) and path.is_file():
        import yaml

        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise CliError(f"{path}: {e}", 2) from None
        if not isinstance(data, dict):
            raise CliError(f"{path}: expected url: and token:", 2)
        url = url or data.get("url")
        token = token or data.get("token")
    if not url:
        return None
    if not token:
        raise CliError("HTTP mode needs a token (--token, $CCSWITCH_TOKEN or cli.yaml)", 2)
    return str(url).rstrip("/"), str(token)


def http_api(target: tuple[str, str], method: str, path: str, body: Any = None,
             timeout: float = 10.0, raw: bool = False) -> Any:
    base, token = target
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            content = resp.read()
            if raw:
                return content
            status = resp.status
    except urllib.error.HTTPError as e:
        content = e.read()
        status = e.code
    except (urllib.error.URLError, OSError) as e:
        raise CliError(f"ccswitch is not reachable at {base}: {e}", 3) from None
    try:
        payload = json.loads(content) if content else None
    except ValueError:
        payload = content.decode(errors="replace")
    return check(status, payload)


def check(status: int, payload: Any) -> Any:
    msg = payload.get("error") if isinstance(payload, dict) else payload
    if status in (401, 403):
        raise CliError(str(msg or "not allowed"), EXIT_FORBIDDEN)
    if status == 404:
        raise CliError(str(msg or "not found"), 4)
    if status == 422 and isinstance(payload, dict):
        raise CliError(str(payload.get("message")), 1)
    if status >= 400:
        raise CliError(str(msg or f"server error {status}"), 1)
    return payload


def add_global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-url", help="talk HTTP to this server (e.g. http://127.0.0.1:8080) "
                   "instead of the local socket")
    p.add_argument("--token", help="API token for --api-url (or $CCSWITCH_TOKEN)")
    p.add_argument("--cli-config", help=f"url/token file (default {DEFAULT_CLI_CONFIG})")


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2) if getattr(args, "json", False) else text)


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _parse_time(v: str | None) -> float | None:
    """Epoch seconds, YYYY-MM-DD[ HH:MM[:SS]], or -2h / -30m / -1d (before now)."""
    if v is None:
        return None
    v = v.strip()
    try:
        return float(v)
    except ValueError:
        pass
    if v.startswith("-") and v[-1:] in ("s", "m", "h", "d") and v[1:-1].isdigit():
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}[v[-1]]
        return time.time() - int(v[1:-1]) * mult
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(v, fmt))
        except ValueError:
            continue
    raise CliError(f"bad time {v!r}: epoch seconds, YYYY-MM-DD[ HH:MM], or -2h", 1)


# ---------------------------------------------------------------------------- users
def _local_users(args: argparse.Namespace) -> tuple[Any, Any]:
    """The user and audit stores opened on the database directly (no server needed)."""
    from ccswitch.config import ConfigError, load_config
    from ccswitch.storage.audit import AuditStore
    from ccswitch.storage.users import UserStore

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise CliError(str(e), 2) from None
    users, audit = UserStore(), AuditStore()
    users.open_sync(cfg.database.path)
    audit.open_sync(cfg.database.path, migrate=False)
    return users, audit


def _users_call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """Through the API (HTTP or socket); None when the server is not running (then local)."""
    try:
        return api(args, method, path, body)
    except CliError as e:
        if e.code == 3 and http_target(args) is None:
            return None
        raise


def _ask_password(args: argparse.Namespace) -> str:
    if getattr(args, "password", None):
        return str(args.password)
    if os.environ.get("CCSWITCH_PASSWORD"):
        return os.environ["CCSWITCH_PASSWORD"]
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\n")
        if line:
            return line
        raise CliError("give --password, $CCSWITCH_PASSWORD or a line on standard input", 1)
    a = getpass.getpass("New password: ")
    if a != getpass.getpass("Again: "):
        raise CliError("the passwords differ", 1)
    return a


def cmd_users(args: argparse.Namespace) -> int:
    from ccswitch.api import auth

    act = args.action
    name = args.username
    if act != "list" and not name:
        raise CliError(f"users {act} needs a user name", 1)
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    if act == "list":
        rows = _users_call(args, "GET", "/api/users")
        if rows is None:
            users, _ = _local_users(args)
            rows = [u.public() for u in users.all()]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        _table(None, ["User", "Role", "Extension", "Queues", "Created"],
               [[u["username"], u["role"], u["extension"] or "-", ",".join(u["queues"]) or "-",
                 _when(u["created"])] for u in rows], f"{len(rows)} user(s)")
        return 0
    if act == "add":
        if not args.role:
            raise CliError("users add needs --role admin|supervisor|agent", 1)
        body: dict[str, Any] = {"username": name, "role": args.role,
                                "extension": args.extension, "queues": queues or []}
        if args.password:
            body["password"] = args.password
        r = _users_call(args, "POST", "/api/users", body)
        if r is None:
            users, audit = _local_users(args)
            password = args.password or auth.generate_password()
            if len(password) < 8:
                raise CliError("the password needs at least 8 characters", 1)
            try:
                u = users.add(name, args.role, auth.hash_password(password),
                              args.extension or "", queues or [])
            except ValueError as e:
                raise CliError(str(e), 1) from None
            audit.add_sync(action="user_add", username="local", role="admin", source="cli",
                           target=name, status=200, detail={"role": args.role})
            r = dict(u.public(), password=password if not args.password else "(as given)")
        _print(args, r, f"user {r['username']} ({r['role']}) added"
               + (f"; password: {r['password']}" if not args.password else ""))
        return 0
    if act in ("passwd", "set"):
        body = {}
        if act == "passwd":
            body["password"] = _ask_password(args)
            if len(body["password"]) < 8:
                raise CliError("the password needs at least 8 characters", 1)
        if args.role:
            body["role"] = args.role
        if args.extension is not None:
            body["extension"] = args.extension
        if queues is not None:
            body["queues"] = queues
        r = _users_call(args, "PATCH", f"/api/users/{_q(name)}", body)
        if r is None:
            users, audit = _local_users(args)
            if users.get(name) is None:
                if act == "passwd" and name == "admin":  # before the first start
                    users.add("admin", "admin", auth.hash_password(body["password"]))
                else:
                    raise CliError(f"no user {name!r}", 4)
            u = users.update(name, password_hash=auth.hash_password(body["password"])
                             if "password" in body else None, role=body.get("role"),
                             extension=body.get("extension"), queues=body.get("queues"))
            audit.add_sync(action="user_update", username="local", role="admin",
                           source="cli", target=name, status=200,
                           detail={k: ("***" if k == "password" else v)
                                   for k, v in body.items()})
            r = u.public() if u is not None else {}
        _print(args, r, f"user {name} updated")
        return 0
    if act == "delete":
        r = _users_call(args, "DELETE", f"/api/users/{_q(name)}")
        if r is None:
            users, audit = _local_users(args)
            if not users.delete(name):
                raise CliError(f"no user {name!r}", 4)
            audit.add_sync(action="user_delete", username="local", role="admin",
                           source="cli", target=name, status=200)
            r = {"ok": True}
        _print(args, r, f"user {name} deleted")
        return 0
    if act == "token":
        r = _users_call(args, "POST", f"/api/users/{_q(name)}/tokens",
                        {"name": args.token_name or ""})
        if r is None:
            users, audit = _local_users(args)
            u = users.get(name)
            if u is None:
                raise CliError(f"no user {name!r}", 4)
            token = auth.new_token()
            tid = users.add_token(u.id, args.token_name or "", auth.hash_secret(token))
            audit.add_sync(action="token_add", username="local", role="admin", source="cli",
                           target=name, status=200)
            r = {"id": tid, "name": args.token_name or "", "token": token, "username": name}
        _print(args, r, r["token"])
        return 0
    if act == "tokens":
        rows = _users_call(args, "GET", f"/api/users/{_q(name)}/tokens")
        if rows is None:
            users, _ = _local_users(args)
            u = users.get(name)
            if u is None:
                raise CliError(f"no user {name!r}", 4)
            rows = users.tokens(u.id)
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        _table(None, ["Id", "Name", "Created", "Last used"],
               [[str(t["id"]), t["name"] or "-", _when(t["created"]), _when(t["last_used"])]
                for t in rows], f"{len(rows)} token(s)")
        return 0
    raise CliError(f"unknown users action {act}", 1)


# ---------------------------------------------------------------------------- records
def _filters(args: argparse.Namespace) -> str:
    q: dict[str, Any] = {}
    for k in ("number", "caller", "callee", "agent", "queue", "disposition", "limit"):
        v = getattr(args, k, None)
        if v is not None:
            q[k] = v
    since = _parse_time(getattr(args, "since", None))
    until = _parse_time(getattr(args, "until", None))
    if since is not None:
        q["since"] = since
    if until is not None:
        q["until"] = until
    return urllib.parse.urlencode(q)


def cmd_recordings(args: argparse.Namespace) -> int:
    if args.action == "get":
        if not args.call:
            raise CliError("recordings get needs a call uuid", 1)
        target = http_target(args)
        out = Path(args.output or f"{args.call}.wav")
        if target is not None:
            data = http_api(target, "GET", f"/api/recordings/{_q(args.call)}", raw=True,
                            timeout=60)
            out.write_bytes(data)
        else:
            row = api(args, "GET", f"/api/cdr/{_q(args.call)}")
            if not row.get("recording") or not Path(row["recording"]).is_file():
                raise CliError("no recording for that call", 4)
            import shutil

            shutil.copyfile(row["recording"], out)
        print(str(out))
        return 0
    rows = api(args, "GET", "/api/recordings?" + _filters(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table(None, ["Start", "Caller", "Callee", "Queue", "Agent", "Disposition", "Bill", "Call",
                  "File"],
           [[_when(r["start"]), r["caller"], r["callee"], r["extra"].get("queue") or "-",
             r["extra"].get("agent") or "-", r["disposition"] or "-",
             str(int(r["billsec"] or 0)), r["call_uuid"][:12], r["recording"] or "-"]
            for r in rows], f"{len(rows)} recording(s)")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    q: dict[str, Any] = {"limit": args.limit}
    since = _parse_time(args.since)
    if since is not None:
        q["since"] = since
    if args.user:
        q["user"] = args.user
    if args.action:
        q["action"] = args.action
    rows = api(args, "GET", "/api/audit?" + urllib.parse.urlencode(q))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    _table(None, ["Time", "User", "Role", "From", "Action", "Target", "Status"],
           [[_when(r["time"]), r["username"] or "-", r["role"] or "-", r["source"],
             r["action"], r["target"] or "-", str(r["status"])] for r in rows],
           f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}")
    return 0


# ---------------------------------------------------------------------------- channel control
def cmd_call_control(args: argparse.Namespace) -> int:
    ch = _q(args.channel)
    if args.command == "transfer":
        r = api(args, "POST", f"/api/channels/{ch}/transfer", {"to": args.number})
    elif args.command == "record":
        r = api(args, "POST", f"/api/channels/{ch}/recording/{args.action}")
    else:
        r = api(args, "POST", f"/api/channels/{ch}/{args.command}")
    _print(args, r, f"{r['channel']}: {r['action']}")
    return 0


def cmd_monitor(args: argparse.Namespace) -> int:
    if args.action == "list":
        rows = api(args, "GET", "/api/monitor")
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        _table(None, ["Id", "Supervisor", "Agent", "Mode", "Caller", "Since"],
               [[m["monitor"], m["supervisor"], m["agent"], m["mode"], m.get("caller") or "-",
                 _fmt_duration(time.time() - m["started"])] for m in rows],
               f"{len(rows)} session(s)")
        return 0
    if not args.target:
        raise CliError(f"monitor {args.action} needs an agent (start) or a session id", 1)
    if args.action in ("listen", "whisper", "barge"):
        body: dict[str, Any] = {"agent": args.target, "mode": args.action,
                                "timeout": args.timeout}
        if args.extension:
            body["extension"] = args.extension
        r = api(args, "POST", "/api/monitor", body, timeout=args.timeout + 10)
    elif args.action == "mode":
        if args.mode is None:
            raise CliError("monitor mode ID needs --mode listen|whisper|barge", 1)
        r = api(args, "POST", f"/api/monitor/{_q(args.target)}/mode", {"mode": args.mode})
    else:
        r = api(args, "POST", f"/api/monitor/{_q(args.target)}/stop")
    _print(args, r, f"monitor {r['monitor']}: {r['agent']} in {r['mode']} mode"
           + (" (stopped)" if r.get("stopped") else ""))
    return 0


# ---------------------------------------------------------------------------- backups
def _server_running(args: argparse.Namespace) -> bool:
    try:
        api(args, "GET", "/api/status", timeout=3.0)
        return True
    except CliError as e:
        return e.code != 3


def cmd_backup(args: argparse.Namespace) -> int:
    from ccswitch.backup import BackupError, make_backup
    from ccswitch.config import ConfigError

    try:
        path = make_backup(args.config, args.output)
    except ConfigError as e:
        raise CliError(str(e), 2) from None
    except (BackupError, OSError) as e:
        raise CliError(str(e), 1) from None
    _print(args, {"path": str(path), "size": path.stat().st_size}, str(path))
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from ccswitch.backup import BackupError, restore_backup

    if http_target(args) is not None:
        raise CliError("restore works on this machine's files: run it without --api-url", 1)
    if _server_running(args):
        if not args.force:
            raise CliError("ccswitch is running: stop it first (or --force to stop it)", 1)
        api(args, "POST", "/api/shutdown")
        deadline = time.monotonic() + 30
        while _server_running(args):
            if time.monotonic() > deadline:
                raise CliError("the server did not stop", 1)
            time.sleep(0.2)
    try:
        r = restore_backup(args.file, args.config)
    except BackupError as e:
        raise CliError(str(e), 1) from None
    _, audit = _local_users(args)  # the restored database records that it was restored
    audit.add_sync(action="restore", username="local", role="admin", source="cli",
                   target=str(args.file), status=200,
                   detail={"created": r["manifest"].get("created"), "forced": args.force})
    _print(args, r, "restored " + ", ".join(r["restored"]))
    return 0


# ---------------------------------------------------------------------------- channels --watch
def watch_channels(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_watch(args))
    except KeyboardInterrupt:
        return 0


def _channel_table(chans: list[dict[str, Any]]) -> Any:
    from rich import box
    from rich.table import Table

    n = len(chans)
    calls = len({c["linkedid"] for c in chans})
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold",
              caption=f"{n} active channel{'s' if n != 1 else ''}, {calls} active call"
                      f"{'s' if calls != 1 else ''}  ({time.strftime('%H:%M:%S')})")
    for col in ("Channel", "State", "Caller", "Callee", "Codec", "Duration", "Bridged with",
                "Application"):
        t.add_column(col, no_wrap=True)
    for c in chans:
        app = c["app"] + (f"({c['app_data']})" if c.get("app_data") else "")
        t.add_row(c["name"], c["state"], c["caller"], c["callee"], c["codec"] or "-",
                  _fmt_duration(c["duration"]), c["bridged_with"] or "-", app or "-")
    return t


async def _watch(args: argparse.Namespace) -> int:
    import aiohttp

    target = http_target(args)
    headers: dict[str, str] = {}
    if target is not None:
        url = target[0].replace("http", "ws", 1) + "/api/events?types=CHANNEL_*"
        headers["Authorization"] = f"Bearer {target[1]}"
        connector: aiohttp.BaseConnector | None = None
    else:
        from ccswitch.cli import _socket_path

        connector = aiohttp.UnixConnector(path=_socket_path(args))
        url = "ws://localhost/api/events?types=CHANNEL_*"
    limit = args.watch_limit
    updates = 0

    def fetch() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = api(args, "GET", "/api/channels")
        return rows

    live: Any = None
    if not args.json:
        from rich.console import Console
        from rich.live import Live

        live = Live(console=Console(), auto_refresh=False)
        live.start()

    def show(chans: list[dict[str, Any]]) -> None:
        nonlocal updates
        updates += 1
        if live is not None:
            live.update(_channel_table(chans), refresh=True)
        else:
            print(json.dumps(chans), flush=True)

    try:
        async with aiohttp.ClientSession(connector=connector) as session:
            try:
                ws = await session.ws_connect(url, headers=headers, heartbeat=30)
            except aiohttp.WSServerHandshakeError as e:
                raise CliError(f"event stream refused: {e.status} {e.message}",
                               EXIT_FORBIDDEN if e.status in (401, 403) else 1) from None
            except (aiohttp.ClientError, OSError) as e:
                raise CliError(f"ccswitch is not running ({e})", 3) from None
            async with ws:
                show(await asyncio.to_thread(fetch))
                while limit is None or updates < limit:
                    try:
                        msg = await ws.receive(timeout=1.0)
                    except TimeoutError:
                        if live is not None:  # durations keep running
                            show(await asyncio.to_thread(fetch))
                        continue
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    if json.loads(msg.data).get("event", "").startswith("CHANNEL_"):
                        show(await asyncio.to_thread(fetch))
    finally:
        if live is not None:
            live.stop()
    return 0


# ---------------------------------------------------------------------------- registration
def register(add: Any) -> None:
    """Add the operations commands to `ccswitch` (called by cli.build_parser)."""
    sp = add("users", cmd_users, "web/API users: list|add|passwd|set|delete|token|tokens")
    sp.add_argument("action", choices=["list", "add", "passwd", "set", "delete", "token",
                                       "tokens"])
    sp.add_argument("username", nargs="?")
    sp.add_argument("--role", choices=["admin", "supervisor", "agent"])
    sp.add_argument("--extension", help="the user's phone extension (agents: their agent id)")
    sp.add_argument("--queues", help="a supervisor's queues, comma-separated ('*': all)")
    sp.add_argument("--password", help="(else generated for add; asked for passwd)")
    sp.add_argument("--token-name", help="a label for `users token`")
    sp.add_argument("--json", action="store_true")

    sp = add("recordings", cmd_recordings, "recordings search [filters] | get CALL [-o FILE]")
    sp.add_argument("action", choices=["search", "get"])
    sp.add_argument("call", nargs="?")
    sp.add_argument("-o", "--output")
    for k in ("number", "caller", "callee", "agent", "queue"):
        sp.add_argument(f"--{k}")
    sp.add_argument("--disposition",
                    choices=["ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED"])
    sp.add_argument("--since", help="epoch, YYYY-MM-DD[ HH:MM] or --since=-2h")
    sp.add_argument("--until")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")

    sp = add("audit", cmd_audit, "the audit log (admins)")
    sp.add_argument("--since")
    sp.add_argument("--user")
    sp.add_argument("--action", help="exact, or a prefix ending in '.'")
    sp.add_argument("--limit", type=int, default=50)
    sp.add_argument("--json", action="store_true")

    for name, help_ in (("hold", "put a channel's party on hold (music)"),
                        ("unhold", "take it off hold")):
        sp = add(name, cmd_call_control, help_)
        sp.add_argument("channel")
        sp.add_argument("--json", action="store_true")
    sp = add("transfer", cmd_call_control, "blind-transfer a channel's party to NUMBER")
    sp.add_argument("channel")
    sp.add_argument("number")
    sp.add_argument("--json", action="store_true")
    sp = add("record", cmd_call_control, "record start|stop CHANNEL")
    sp.add_argument("action", choices=["start", "stop"])
    sp.add_argument("channel")
    sp.add_argument("--json", action="store_true")

    sp = add("monitor", cmd_monitor,
             "monitor listen|whisper|barge AGENT [--extension EXT] | list | mode ID | stop ID")
    sp.add_argument("action", choices=["listen", "whisper", "barge", "list", "mode", "stop"])
    sp.add_argument("target", nargs="?", help="the agent (extension), or a session id")
    sp.add_argument("--mode", choices=["listen", "whisper", "barge"])
    sp.add_argument("--extension", help="the phone to ring (default: your user's)")
    sp.add_argument("--timeout", type=float, default=30.0)
    sp.add_argument("--json", action="store_true")

    sp = add("backup", cmd_backup, "online backup of the database, config.yaml and flows")
    sp.add_argument("--output", "-o", help="directory (default: backup.directory)")
    sp.add_argument("--json", action="store_true")
    sp = add("restore", cmd_restore, "restore a backup (the server must be stopped)")
    sp.add_argument("file")
    sp.add_argument("--force", action="store_true", help="stop the running server first")
    sp.add_argument("--json", action="store_true")
