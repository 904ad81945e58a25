"""The `ccswitch` command: run the server, and ask the running server questions."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = "config.yaml"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _socket_path(args: argparse.Namespace) -> str:
    if getattr(args, "socket", None):
        return str(args.socket)
    from ccswitch.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        raise CliError(str(e), 2) from None
    return str(cfg.control.socket)


def api(args: argparse.Namespace, method: str, path: str, body: Any = None,
        timeout: float = 10.0) -> Any:
    from ccswitch.cli_ops import http_api, http_target

    target = http_target(args)  # --api-url / $CCSWITCH_API_URL / cli.yaml: HTTP + token
    if target is not None:
        return http_api(target, method, path, body, timeout)
    sock = _socket_path(args)
    conn = UnixHTTPConnection(sock, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    except (FileNotFoundError, ConnectionRefusedError):
        raise CliError(f"ccswitch is not running (no control socket at {sock})", 3) from None
    except OSError as e:
        raise CliError(f"cannot reach ccswitch at {sock}: {e}", 3) from None
    finally:
        conn.close()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    if resp.status == 404:
        msg = payload.get("error") if isinstance(payload, dict) else payload
        raise CliError(str(msg or "not found"), 4)
    if resp.status == 422 and isinstance(payload, dict):
        raise CliError(str(payload.get("message")), 1)
    if resp.status == 400 and isinstance(payload, dict) and "error" in payload:
        raise CliError(str(payload["error"]), 1)
    if resp.status >= 400:
        raise CliError(f"server error {resp.status}: {payload}", 1)
    return payload


def _q(part: str) -> str:
    """A channel name or id as one URL path segment (names contain '/')."""
    return urllib.parse.quote(part, safe="")


def _fmt_duration(sec: float) -> str:
    s = int(sec)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _table(title: str | None, columns: list[str], rows: list[list[str]], footer: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    t = Table(box=box.SIMPLE_HEAD, title=title, show_edge=False, pad_edge=False,
              header_style="bold")
    for c in columns:
        t.add_column(c, no_wrap=True)
    for r in rows:
        t.add_row(*r)
    console = Console(width=max(120, Console().width))
    console.print(t)
    console.print(footer)


def cmd_channels(args: argparse.Namespace) -> int:
    if getattr(args, "watch", False):
        from ccswitch.cli_ops import watch_channels

        return watch_channels(args)
    chans = api(args, "GET", "/api/channels")
    if args.json:
        print(json.dumps(chans, indent=2))
        return 0
    rows = []
    for c in chans:
        app = c["app"] + (f"({c['app_data']})" if c.get("app_data") else "")
        rows.append([c["name"], c["state"], c["caller"], c["callee"], c["codec"] or "-",
                     _fmt_duration(c["duration"]), c["bridged_with"] or "-", app or "-"])
    n = len(chans)
    calls = len({c["linkedid"] for c in chans})
    summary = (f"{n} active channel{'s' if n != 1 else ''}, "
               f"{calls} active call{'s' if calls != 1 else ''}")
    _table(None, ["Channel", "State", "Caller", "Callee", "Codec", "Duration", "Bridged with",
                  "Application"], rows, summary)
    return 0


def cmd_channel_show(args: argparse.Namespace) -> int:
    c = api(args, "GET", f"/api/channels/{_q(args.id)}")
    print(json.dumps(c, indent=2))
    return 0


def cmd_hangup(args: argparse.Namespace) -> int:
    r = api(args, "POST", f"/api/channels/{_q(args.channel)}/hangup", {"cause": args.cause})
    if args.json:
        print(json.dumps(r))
    else:
        print(f"hung up {r['hungup']} ({r['cause']})")
    return 0


def cmd_registrations(args: argparse.Namespace) -> int:
    regs = api(args, "GET", "/api/registrations")
    if args.json:
        print(json.dumps(regs, indent=2))
        return 0
    rows = [[r["extension"], r["name"], r["contact"], r["source"], str(r["expires_in"]),
             r["user_agent"][:30]] for r in regs]
    _table(None, ["Ext", "Name", "Contact", "Source", "Expires", "User-Agent"], rows,
           f"{len(regs)} registration{'s' if len(regs) != 1 else ''}")
    return 0


def cmd_cdr(args: argparse.Namespace) -> int:
    try:
        rows = api(args, "GET", f"/api/cdr?last={args.last}")
    except CliError as e:
        if e.code != 3:
            raise
        # server not running: read the database directly
        from ccswitch.config import ConfigError, load_config
        from ccswitch.storage.cdr import read_last_sync

        try:
            cfg = load_config(args.config)
        except ConfigError as ce:
            raise CliError(str(ce), 2) from None
        if not Path(cfg.database.path).exists():
            rows = []
        else:
            rows = read_last_sync(cfg.database.path, args.last)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    out = []
    for r in rows:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["start"]))
        out.append([start, r["caller"], r["callee"], r["disposition"] or "-",
                    r["hangup_cause"] or "-", str(int(r["duration"] or 0)),
                    str(int(r["billsec"] or 0)), r["call_uuid"][:12],
                    "yes" if r.get("recording") else "-"])
    _table(None, ["Start", "Caller", "Callee", "Disposition", "Cause", "Dur", "Bill", "Call",
                  "Rec"], out, f"{len(rows)} call record{'s' if len(rows) != 1 else ''}")
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    r = api(args, "POST", "/api/reload")
    print(r["message"])
    return 0


def cmd_flows_check(args: argparse.Namespace) -> int:
    """Validate flows offline: every error as file:line: node 'x': message."""
    from ccswitch.apps.ivr.flow import Context, FlowError, flow_files, load_flows
    from ccswitch.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(str(e))
        return 2
    target = Path(args.path) if args.path else Path(cfg.flows.directory)
    paths = flow_files(target) if target.is_dir() else [target]
    if not paths:
        print(f"no flow files in {target}")
        return 1
    flows_dir = Path(cfg.flows.directory)
    known = {p.stem for p in flow_files(flows_dir)} if flows_dir.is_dir() else set()
    from ccswitch.speech.tts import tts_available

    ctx = Context(prompts_dir=Path(cfg.prompts.directory), schedules=set(cfg.schedules),
                  queues=set(cfg.queues),
                  numbers={e.number for e in cfg.extensions}, flows=known,
                  tts_available=cfg.tts.enabled and tts_available())
    try:
        fs = load_flows(paths, ctx)
    except FlowError as e:
        print(str(e))
        n = len(e.issues)
        print(f"{n} error{'s' if n != 1 else ''}", file=sys.stderr)
        return 1
    for f in fs.flows.values():
        print(f"{f.path}: ok ({len(f.nodes)} nodes, start '{f.start}')")
    return 0


def cmd_conference(args: argparse.Namespace) -> int:
    if args.action == "list":
        rooms = api(args, "GET", "/api/conferences")
        if args.json:
            print(json.dumps(rooms, indent=2))
            return 0
        rows = [[r["number"], r["name"], str(len(r["members"])),
                 ", ".join(m["name"] for m in r["members"] if m["talking"]) or "-"]
                for r in rooms]
        _table(None, ["Room", "Name", "Members", "Talking"], rows,
               f"{len(rooms)} active conference{'s' if len(rooms) != 1 else ''}")
        return 0
    if not args.room:
        raise CliError("give the conference number", 1)
    if args.action == "show":
        room = api(args, "GET", f"/api/conferences/{args.room}")
        if args.json:
            print(json.dumps(room, indent=2))
            return 0
        rows = [[m["name"], m["caller"], "yes" if m["muted"] else "-",
                 "yes" if m["talking"] else "-", "yes" if m["moderator"] else "-",
                 _fmt_duration(time.time() - m["joined"])] for m in room["members"]]
        _table(f"Conference {room['number']} ({room['name']})",
               ["Channel", "Caller", "Muted", "Talking", "Moderator", "Joined"], rows,
               f"{len(rows)} member{'s' if len(rows) != 1 else ''}")
        return 0
    if not args.member:
        raise CliError(f"conference {args.action} needs a member (channel name or id)", 1)
    r = api(args, "POST", f"/api/conferences/{_q(args.room)}/{args.action}/{_q(args.member)}")
    print(json.dumps(r) if args.json else f"{args.action}: {r['member']} in {r['conference']}")
    return 0


def cmd_trunks(args: argparse.Namespace) -> int:
    trunks = api(args, "GET", "/api/trunks")
    if args.json:
        print(json.dumps(trunks, indent=2))
        return 0
    rows = []
    for t in trunks:
        reg = t.get("registration") or {}
        expires = reg.get("expires_in")
        nxt = reg.get("next_attempt_in")
        if t["state"] in ("failed", "retrying") and nxt is not None:
            when = f"retry in {nxt}s"
        else:
            when = f"{expires}s" if expires is not None else "-"
        limit = f"/{t['max_calls']}" if t["max_calls"] else ""
        rows.append([t["name"], t["mode"], t["state"], t["address"] or t["host"], when,
                     f"{t['active_calls']}{limit}",
                     f"{t['calls_in']}/{t['calls_out']}/{t['calls_failed']}",
                     (t["last_error"] or "-")[:40]])
    n = len(trunks)
    _table(None, ["Trunk", "Mode", "State", "Address", "Expires", "Active", "In/Out/Failed",
                  "Last error"], rows, f"{n} trunk{'s' if n != 1 else ''}")
    return 0


# originate outcomes -> exit codes (0 answered or placed; 4 not found is the API's 404)
ORIGINATE_EXIT = {"answered": 0, "placed": 0, "busy": 5, "no_answer": 6, "unavailable": 7,
                  "failed": 7, "cancelled": 7}


def cmd_originate(args: argparse.Namespace) -> int:
    if (args.destination is None) == (args.flow is None):
        raise CliError("give a DESTINATION number or --flow NAME (one of them)", 1)
    body = {"source": args.source, "to": args.destination, "flow": args.flow,
            "timeout": args.timeout, "caller_id": args.caller_id,
            "caller_name": args.caller_name, "trunk": args.trunk, "wait": not args.no_wait}
    # the source rings, then the destination: wait for both, plus a margin
    r = api(args, "POST", "/api/originate", body, timeout=2 * args.timeout + 15)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        target = f"flow {args.flow}" if args.flow else args.destination
        status = r.get("sip_status")
        what = r["result"].replace("_", " ")
        detail = f" ({r['stage']}, SIP {status})" if r["result"] not in (
            "answered", "placed") and status else ""
        call = f", call {r['call'][:12]}" if r.get("call") else ""
        print(f"{args.source} -> {target}: {what}{detail}{call}")
    return ORIGINATE_EXIT.get(r["result"], 1)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}%"


def _secs(v: float | None) -> str:
    return "-" if v is None else _fmt_duration(v)


def cmd_queues(args: argparse.Namespace) -> int:
    qs = api(args, "GET", "/api/queues")
    if args.json:
        print(json.dumps(qs, indent=2))
        return 0
    rows = []
    for q in qs:
        a = q["agents"]
        rows.append([q["name"], q["number"] or "-", q["strategy"], str(q["waiting"]),
                     _secs(q["longest_wait"]), f"{a['available']}/{a['logged_in']}",
                     str(a["on_call"]), str(a["paused"]), str(a["wrap_up"]),
                     _pct(q["service_level_today"])])
    _table(None, ["Queue", "Number", "Strategy", "Waiting", "Longest", "Avail/In", "On call",
                  "Paused", "Wrap-up", "SL"], rows,
           f"{len(qs)} queue{'s' if len(qs) != 1 else ''}")
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    q = api(args, "GET", f"/api/queues/{_q(args.name)}")
    if args.json:
        print(json.dumps(q, indent=2))
        return 0
    a = q["agents"]
    print(f"{q['name']} ({q['strategy']}): {q['waiting']} waiting, longest "
          f"{_secs(q['longest_wait'])}; agents {a['available']} available, {a['ringing']} "
          f"ringing, {a['on_call']} on call, {a['wrap_up']} wrap-up, {a['paused']} paused; "
          f"SL {_pct(q['service_level_today'])}")
    rows = [[m["agent"], m["name"], m["state"] if m["logged_in"] else "logged_out",
             _secs(m["duration"]), m["pause_reason"] or "-", str(m["penalty"]),
             str(m["calls_taken"])] for m in q["members"]]
    _table("Members", ["Agent", "Name", "State", "For", "Pause reason", "Penalty", "Calls"],
           rows, "")
    rows = [[str(c["position"]), c["caller"], c["channel"], _secs(c["wait"]), str(c["priority"]),
             "yes" if c["callback"] else "-", c["state"]] for c in q["callers"]]
    _table("Callers", ["Pos", "Caller", "Channel", "Wait", "Prio", "Callback", "State"], rows,
           f"{len(rows)} caller{'s' if len(rows) != 1 else ''}")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    ags = api(args, "GET", "/api/agents")
    if args.json:
        print(json.dumps(ags, indent=2))
        return 0
    rows = [[a["agent"], a["name"], a["state"], _secs(a["duration"]), a["pause_reason"] or "-",
             ", ".join(a["queues"]) or "-", str(a["calls_taken"])] for a in ags]
    _table(None, ["Agent", "Name", "State", "For", "Pause reason", "Queues", "Calls"], rows,
           f"{len(ags)} agent{'s' if len(ags) != 1 else ''}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    if args.queue:
        body["queue"] = args.queue
    if args.reason:
        body["reason"] = args.reason
    r = api(args, "POST", f"/api/agents/{_q(args.agent)}/{args.action}", body)
    print(json.dumps(r) if args.json else f"agent {r['agent']}: {r['action']} -> {r['result']}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    now = time.time()
    lt = time.localtime(now)
    midnight = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
    since = midnight if args.today or args.since is None else args.since
    bucket = args.bucket
    s = api(args, "GET", f"/api/queues/{_q(args.name)}/stats?since={since}"
                         f"&until={now + 1}&bucket={bucket}")
    if args.json:
        print(json.dumps(s, indent=2))
        return 0

    def row(label: str, b: dict[str, Any]) -> list[str]:
        return [label, str(b["offered"]), str(b["answered"]), str(b["abandoned"]),
                _pct(None if b["abandon_rate"] is None else 100 * b["abandon_rate"]),
                _pct(b["service_level"]), _secs(b["asa"]), _secs(b["aht"]),
                str(b.get("callbacks", 0))]

    rows = [row(time.strftime("%H:%M", time.localtime(b["start"])), b)
            for b in s["buckets"] if b["offered"]]
    rows.append(row("total", s["total"]))
    _table(f"Queue {args.name} since {time.strftime('%Y-%m-%d %H:%M', time.localtime(since))}",
           ["Interval", "Offered", "Answered", "Abandoned", "Aband%", "SL", "ASA", "AHT",
            "Callbacks"], rows, "")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    print(json.dumps(api(args, "GET", "/api/status"), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ccswitch.server import run_server

    return run_server(args.config)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccswitch", description="SIP softswitch and contact center")
    p.add_argument("--config", "-c", default=os.environ.get("CCSWITCH_CONFIG", DEFAULT_CONFIG),
                   help="configuration file (default: config.yaml, or $CCSWITCH_CONFIG)")
    p.add_argument("--socket", help="control socket (default: from the configuration)")
    from ccswitch.cli_ops import add_global_options, register

    add_global_options(p)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Any, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(fn=fn)
        return sp

    sp = add("run", cmd_run, "run the server in the foreground")
    sp.add_argument("--config", "-c", dest="config", default=argparse.SUPPRESS)
    sp = add("channels", cmd_channels, "list live channels")
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--watch", action="store_true",
                    help="keep the table up to date from the event stream (Ctrl-C ends)")
    sp.add_argument("--watch-limit", type=int, default=None, help=argparse.SUPPRESS)
    sp = add("channel", cmd_channel_show, "show one channel (`channel show ID`)")
    sp.add_argument("action", choices=["show"])
    sp.add_argument("id")
    sp = add("hangup", cmd_hangup, "hang up a channel by name or id")
    sp.add_argument("channel")
    sp.add_argument("--cause", default="NORMAL_CLEARING")
    sp.add_argument("--json", action="store_true")
    sp = add("registrations", cmd_registrations, "list registered contacts")
    sp.add_argument("--json", action="store_true")
    sp = add("cdr", cmd_cdr, "show call detail records")
    sp.add_argument("--last", type=int, default=20)
    sp.add_argument("--json", action="store_true")
    add("status", cmd_status, "server status")
    sp = add("trunks", cmd_trunks, "SIP trunks: registration state, last error, active calls")
    sp.add_argument("--json", action="store_true")
    sp = add("originate", cmd_originate,
             "place a call: ring an extension (or call a number), then dial DESTINATION "
             "or run --flow")
    sp.add_argument("source", help="an extension (rung first) or an outside number")
    sp.add_argument("destination", nargs="?", help="the number to connect the source to")
    sp.add_argument("--flow", help="run this flow when the source answers instead")
    sp.add_argument("--timeout", type=float, default=30.0,
                    help="seconds each party may ring (default 30)")
    sp.add_argument("--caller-id", help="caller ID number presented on the outside call")
    sp.add_argument("--caller-name", help="caller name presented")
    sp.add_argument("--trunk", help="call the outside number through this trunk, as given "
                    "(default: the outbound routes)")
    sp.add_argument("--no-wait", action="store_true",
                    help="return once the call is placed, not when it is answered")
    sp.add_argument("--json", action="store_true")
    sp = add("conference", cmd_conference, "conference list|show|mute|unmute|kick")
    sp.add_argument("action", choices=["list", "show", "mute", "unmute", "kick"])
    sp.add_argument("room", nargs="?")
    sp.add_argument("member", nargs="?")
    sp.add_argument("--json", action="store_true")
    sp = add("queues", cmd_queues, "list queues with live figures")
    sp.add_argument("--json", action="store_true")
    sp = add("queue", cmd_queue_show, "show one queue (`queue show NAME`)")
    sp.add_argument("action", choices=["show"])
    sp.add_argument("name")
    sp.add_argument("--json", action="store_true")
    sp = add("agents", cmd_agents, "list agents and their states")
    sp.add_argument("--json", action="store_true")
    sp = add("agent", cmd_agent, "agent login|logout|pause|unpause EXT [--queue Q]")
    sp.add_argument("action", choices=["login", "logout", "pause", "unpause"])
    sp.add_argument("agent")
    sp.add_argument("--queue")
    sp.add_argument("--reason")
    sp.add_argument("--json", action="store_true")
    sp = add("stats", cmd_stats, "queue statistics (`stats queue NAME --today`)")
    sp.add_argument("kind", choices=["queue"])
    sp.add_argument("name")
    sp.add_argument("--today", action="store_true")
    sp.add_argument("--since", type=float, default=None, help="epoch seconds")
    sp.add_argument("--bucket", type=float, default=900.0)
    sp.add_argument("--json", action="store_true")
    add("reload", cmd_reload, "reload config.yaml and flows (a broken edit is refused)")
    sp = add("flows", cmd_flows_check, "check flows (`flows check [PATH]`)")
    sp.add_argument("action", choices=["check"])
    sp.add_argument("path", nargs="?")
    register(add)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.fn(args)
        return rc
    except CliError as e:
        print(f"ccswitch: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
