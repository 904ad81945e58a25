"""The HTTP API's route table and its OpenAPI 3.1 document.

`OPS` is the single list of operations: ccswitch/api/http.py registers a
handler for each one (by `name`) and `document()` describes each one, so the
two cannot drift apart silently; tests/unit/api checks the app's routes against
the document and validates responses against its schemas.

Roles: "public" (no authentication), else the roles allowed to call it; a
handler may narrow further by scope (a supervisor's queues, an agent's own calls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["OPS", "Op", "document"]

ALL = ("admin", "supervisor", "agent")
SUP = ("admin", "supervisor")
ADMIN = ("admin",)
PUBLIC = ("public",)


@dataclass(frozen=True)
class Param:
    name: str
    where: str = "query"  # query, path
    type: str = "string"
    desc: str = ""
    enum: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class Op:
    method: str
    path: str  # OpenAPI path
    name: str  # operationId and handler name
    summary: str
    roles: tuple[str, ...]
    tag: str
    response: str | None = None  # schema name (components) for 200
    response_type: str = "application/json"
    body: str | None = None  # request schema name
    params: tuple[Param, ...] = ()
    route: str | None = None  # the aiohttp route when it differs (regex parameters)
    extra_status: tuple[int, ...] = ()
    description: str = ""
    array: bool = False  # 200 is an array of `response`
    body_required: bool = True

    @property
    def aiohttp_path(self) -> str:
        return self.route or self.path


def P(name: str, desc: str = "", **kw: Any) -> Param:
    return Param(name, "path", desc=desc, required=True, **kw)


def Q(name: str, desc: str = "", **kw: Any) -> Param:
    return Param(name, "query", desc=desc, **kw)


_CDR_FILTERS = (
    Q("since", "start time from (epoch seconds)", type="number"),
    Q("until", "start time before (epoch seconds)", type="number"),
    Q("number", "caller or callee number"), Q("caller", "caller number"),
    Q("callee", "callee number"), Q("agent", "agent extension that answered"),
    Q("queue", "queue name"),
    Q("disposition", "disposition",
      enum=("ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CANCELLED")),
    Q("limit", "at most this many rows (default 100)", type="integer"),
)
_CH = "/api/channels/{id}"
_CHR = "/api/channels/{id:.+}"

OPS: tuple[Op, ...] = (
    # ---- sessions
    Op("POST", "/api/login", "login", "Log in (sets the session cookie)", PUBLIC, "auth",
       "Me", body="Login", extra_status=(401, 429)),
    Op("POST", "/api/logout", "logout", "Log out (ends the session)", ALL, "auth", "Ok",
       body_required=False),
    Op("GET", "/api/me", "me", "Who am I", ALL, "auth", "Me"),
    Op("POST", "/api/me/password", "me_password", "Change my password", ALL, "auth", "Ok",
       body="PasswordChange", extra_status=(400,)),
    # ---- system
    Op("GET", "/api/status", "status", "Uptime and counters", SUP, "system", "Status"),
    Op("POST", "/api/reload", "reload", "Reload config.yaml and flows", ADMIN, "system",
       "Reload", extra_status=(422,), body_required=False),
    Op("GET", "/api/flows", "flows", "Loaded flows", SUP, "system", "Flows"),
    Op("POST", "/api/backup", "backup", "Make a backup now", ADMIN, "system", "Backup",
       body_required=False),
    Op("POST", "/api/shutdown", "shutdown", "Stop the server (calls are hung up)", ADMIN,
       "system", "Ok", body_required=False),
    Op("GET", "/api/openapi.json", "openapi", "This document", PUBLIC, "system", "Object"),
    Op("GET", "/metrics", "metrics", "Prometheus metrics", SUP, "system", None,
       response_type="text/plain"),
    Op("GET", "/api/stats/today", "today", "Today's figures (calls and queues)", SUP, "system",
       "Today"),
    # ---- channels
    Op("GET", "/api/channels", "channels", "Live channels", ALL, "channels", "Channel",
       array=True, description="Agents see only their own calls."),
    Op("GET", _CH, "channel", "One channel (id, id prefix or name)", ALL, "channels",
       "Channel", params=(P("id"),), route=_CHR, extra_status=(404,)),
    Op("POST", _CH + "/hangup", "hangup", "Hang up a channel", ALL, "channels", "ChannelAction",
       params=(P("id"),), route=_CHR + "/hangup", body="Hangup", extra_status=(404,),
       body_required=False),
    Op("POST", _CH + "/transfer", "transfer", "Blind-transfer the channel's party",
       ALL, "channels", "ChannelAction", params=(P("id"),), route=_CHR + "/transfer",
       body="Transfer", extra_status=(400, 404, 409)),
    Op("POST", _CH + "/hold", "hold", "Put the other party on hold (music)", ALL, "channels",
       "ChannelAction", params=(P("id"),), route=_CHR + "/hold", extra_status=(404, 409),
       body_required=False),
    Op("POST", _CH + "/unhold", "unhold", "Take the other party off hold", ALL, "channels",
       "ChannelAction", params=(P("id"),), route=_CHR + "/unhold", extra_status=(404, 409),
       body_required=False),
    Op("POST", _CH + "/recording/start", "record_start", "Start recording the call", SUP,
       "channels", "ChannelAction", params=(P("id"),), route=_CHR + "/recording/start",
       extra_status=(404, 409), body_required=False),
    Op("POST", _CH + "/recording/stop", "record_stop", "Stop recording the call", SUP,
       "channels", "ChannelAction", params=(P("id"),), route=_CHR + "/recording/stop",
       extra_status=(404, 409), body_required=False),
    Op("POST", "/api/originate", "originate", "Place a call", ALL, "channels", "Originate",
       body="OriginateRequest", extra_status=(400, 404),
       description="Agents may only originate from their own extension."),
    # ---- queues and agents
    Op("GET", "/api/queues", "queues", "Queues with live figures", ALL, "queues", "Queue",
       array=True),
    Op("GET", "/api/queues/{name}", "queue", "One queue: members and callers", ALL, "queues",
       "QueueDetail", params=(P("name"),), extra_status=(404,)),
    Op("GET", "/api/queues/{name}/stats", "queue_stats", "Interval statistics", SUP, "queues",
       "QueueStats", params=(P("name"), Q("since", type="number"), Q("until", type="number"),
                             Q("bucket", "seconds per bucket", type="number")),
       extra_status=(400, 404)),
    Op("GET", "/api/agents", "agents", "Agents and their states", ALL, "queues", "Agent",
       array=True),
    Op("GET", "/api/agents/{agent}", "agent", "One agent", ALL, "queues", "Agent",
       params=(P("agent"),), extra_status=(404,)),
    Op("POST", "/api/agents/{agent}/{action}", "agent_action",
       "Agent login, logout, pause, unpause", ALL, "queues", "AgentAction",
       params=(P("agent"), P("action", enum=("login", "logout", "pause", "unpause"))),
       body="AgentActionRequest", extra_status=(400, 404), body_required=False),
    Op("GET", "/api/agents/{agent}/screenpop", "screenpop", "The last call offered (screen pop)",
       ALL, "queues", "ScreenPop", params=(P("agent"),), extra_status=(404,)),
    # ---- conferences, parking, registrations, trunks
    Op("GET", "/api/conferences", "conferences", "Live conference rooms", SUP, "conferences",
       "Conference", array=True),
    Op("GET", "/api/conferences/{number}", "conference", "One room", SUP, "conferences",
       "Conference", params=(P("number"),), extra_status=(404,)),
    Op("POST", "/api/conferences/{number}/{action}/{member}", "conference_action",
       "Mute, unmute or kick a member", SUP, "conferences", "ConferenceAction",
       params=(P("number"), P("action", enum=("mute", "unmute", "kick")), P("member")),
       extra_status=(400, 404), body_required=False),
    Op("GET", "/api/parking", "parking", "Parked calls", SUP, "conferences", "Parked",
       array=True),
    Op("GET", "/api/registrations", "registrations", "Registered contacts", SUP, "system",
       "Registration", array=True),
    Op("GET", "/api/trunks", "trunks", "SIP trunks and their registration state", SUP,
       "system", "Trunk", array=True),
    # ---- call records and recordings
    Op("GET", "/api/cdr", "cdr", "Search call records", ALL, "records", "Cdr", array=True,
       params=_CDR_FILTERS, extra_status=(400,),
       description="Supervisors see their queues' and agents' calls, agents their own."),
    Op("GET", "/api/cdr/{call}", "cdr_one", "One call record", ALL, "records", "Cdr",
       params=(P("call", "call uuid"),), extra_status=(404,)),
    Op("GET", "/api/recordings", "recordings", "Search recorded calls", SUP, "records", "Cdr",
       array=True, params=_CDR_FILTERS, extra_status=(400,)),
    Op("GET", "/api/recordings/{call}", "recording", "Download a recording (WAV)", SUP,
       "records", None, response_type="audio/wav", params=(P("call", "call uuid"),),
       extra_status=(404,)),
    # ---- events
    Op("GET", "/api/events", "events", "Event stream (WebSocket)", ALL, "events", "Event",
       params=(Q("types", "comma-separated event types; a trailing * matches a prefix"),
               Q("queue", "only events of this queue"), Q("agent", "only this agent's"),
               Q("token", "API token, for clients that cannot set headers")),
       extra_status=(101,),
       description="Upgrade to a WebSocket; each message is one JSON event "
                   "({event, time, ...}). Scoped like the REST views."),
    # ---- monitoring
    Op("GET", "/api/monitor", "monitors", "Monitoring sessions", SUP, "monitor", "Monitor",
       array=True),
    Op("POST", "/api/monitor", "monitor_start", "Listen, whisper or barge on an agent's call",
       SUP, "monitor", "Monitor", body="MonitorRequest", extra_status=(400, 404, 408, 409),
       description="Rings the supervisor's extension; once answered, monitoring starts."),
    Op("POST", "/api/monitor/{id}/mode", "monitor_mode", "Switch listen / whisper / barge",
       SUP, "monitor", "Monitor", params=(P("id"),), body="MonitorMode",
       extra_status=(400, 404)),
    Op("POST", "/api/monitor/{id}/stop", "monitor_stop", "Stop monitoring", SUP, "monitor",
       "Monitor", params=(P("id"),), extra_status=(404,), body_required=False),
    # ---- users and audit
    Op("GET", "/api/users", "users", "Users", ADMIN, "users", "User", array=True),
    Op("POST", "/api/users", "user_add", "Add a user", ADMIN, "users", "UserCreated",
       body="UserCreate", extra_status=(400, 409)),
    Op("GET", "/api/users/{username}", "user", "One user", ADMIN, "users", "User",
       params=(P("username"),), extra_status=(404,)),
    Op("PATCH", "/api/users/{username}", "user_update", "Change role, extension, queues or "
       "password", ADMIN, "users", "User", params=(P("username"),), body="UserUpdate",
       extra_status=(400, 404)),
    Op("DELETE", "/api/users/{username}", "user_delete", "Delete a user", ADMIN, "users", "Ok",
       params=(P("username"),), extra_status=(404,)),
    Op("GET", "/api/users/{username}/tokens", "tokens", "A user's API tokens", ADMIN, "users",
       "Token", array=True, params=(P("username"),), extra_status=(404,)),
    Op("POST", "/api/users/{username}/tokens", "token_add", "New API token (shown once)",
       ADMIN, "users", "TokenCreated", params=(P("username"),), body="TokenCreate",
       extra_status=(404,), body_required=False),
    Op("DELETE", "/api/users/{username}/tokens/{token_id}", "token_delete", "Revoke a token",
       ADMIN, "users", "Ok", params=(P("username"), P("token_id", type="integer")),
       extra_status=(404,)),
    Op("GET", "/api/audit", "audit", "The audit log", ADMIN, "users", "Audit", array=True,
       params=(Q("since", type="number"), Q("until", type="number"), Q("user"),
               Q("action", "exact, or a prefix ending in '.'"), Q("limit", type="integer"))),
    # ---- pages
    Op("GET", "/", "page_root", "Redirect to the wallboard", PUBLIC, "pages", None,
       response_type="text/html", extra_status=(302,)),
    Op("GET", "/wallboard", "page_wallboard", "The wallboard", PUBLIC, "pages", None,
       response_type="text/html"),
    Op("GET", "/agent", "page_agent", "The agent page", PUBLIC, "pages", None,
       response_type="text/html"),
    Op("GET", "/static/{file}", "static", "Page assets", PUBLIC, "pages", None,
       response_type="application/octet-stream", params=(P("file"),), extra_status=(404,),
       route="/static/{file:[A-Za-z0-9_.-]+}"),
)

# ---------------------------------------------------------------------------- schemas


def _obj(props: dict[str, Any], required: tuple[str, ...] = (), extra: bool = True
         ) -> dict[str, Any]:
    d: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        d["required"] = list(required)
    if not extra:
        d["additionalProperties"] = False
    return d


S = {"type": "string"}
SN = {"type": ["string", "null"]}
N = {"type": "number"}
NN = {"type": ["number", "null"]}
I_ = {"type": "integer"}
B = {"type": "boolean"}
A = {"type": "array"}
O_ = {"type": "object"}
ROLE = {"type": "string", "enum": ["admin", "supervisor", "agent"]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _obj({"error": S}, ("error",)),
    "Ok": _obj({"ok": B}, ("ok",)),
    "Object": O_,
    "Login": _obj({"username": S, "password": S}, ("username", "password")),
    "Me": _obj({"username": S, "role": ROLE, "extension": SN,
                "queues": {"type": "array", "items": S}, "via": S},
               ("username", "role", "extension", "queues")),
    "PasswordChange": _obj({"old_password": S, "new_password": {"type": "string",
                                                                 "minLength": 8}},
                           ("old_password", "new_password")),
    "Status": _obj({"uptime": N, "channels": I_, "registrations": I_, "transactions": I_,
                    "rtp_ports_free": I_, "sip": O_},
                   ("uptime", "channels", "registrations")),
    "Reload": _obj({"ok": B, "message": S}, ("ok", "message")),
    "Flows": _obj({"version": I_, "flows": A}, ("version", "flows")),
    "Backup": _obj({"path": S, "size": I_}, ("path", "size")),
    "Today": _obj({"since": N, "calls": I_, "answered": I_, "missed": I_,
                   "avg_billsec": NN, "queues": _obj({"offered": I_, "answered": I_,
                                                      "abandoned": I_})},
                  ("since", "calls", "answered", "missed", "queues")),
    "Channel": _obj({"id": S, "name": S, "state": S, "direction": S, "caller": S,
                     "caller_name": S, "callee": S, "codec": S, "created": N,
                     "answered": NN, "duration": N, "billsec": N, "bridged_with": SN,
                     "linkedid": S, "app": S, "app_data": S, "recording": SN,
                     "media": {"type": ["object", "null"]}},
                    ("id", "name", "state", "caller", "callee", "linkedid", "duration")),
    "ChannelAction": _obj({"channel": S, "action": S, "ok": B}, ("channel", "action", "ok")),
    "Hangup": _obj({"cause": S}),
    "Transfer": _obj({"to": S}, ("to",)),
    "OriginateRequest": _obj({"source": S, "to": SN, "flow": SN, "timeout": N,
                              "caller_id": SN, "caller_name": SN, "trunk": SN, "wait": B},
                             ("source",)),
    "Originate": _obj({"result": S}, ("result",)),
    "AgentCounts": _obj({k: I_ for k in ("available", "ringing", "on_call", "wrap_up",
                                         "paused", "logged_in")},
                        ("available", "ringing", "on_call", "wrap_up", "paused", "logged_in")),
    "Queue": _obj({"name": S, "number": SN, "strategy": S, "waiting": I_, "longest_wait": N,
                   "agents": {"$ref": "#/components/schemas/AgentCounts"},
                   "service_level_today": NN},
                  ("name", "strategy", "waiting", "longest_wait", "agents",
                   "service_level_today")),
    "QueueDetail": {"allOf": [
        {"$ref": "#/components/schemas/Queue"},
        _obj({"callers": {"type": "array", "items": _obj(
            {"channel": S, "caller": S, "position": I_, "wait": N, "priority": I_},
            ("channel", "caller", "position", "wait"))},
              "members": {"type": "array", "items": _obj(
                  {"agent": S, "name": S, "state": S, "since": N, "pause_reason": SN,
                   "calls_taken": I_, "penalty": I_}, ("agent", "state", "since"))}},
             ("callers", "members"))]},
    "QueueStats": _obj({"buckets": A, "total": _obj(
        {k: {"type": ["number", "null"]} for k in ("offered", "answered", "abandoned",
                                                   "abandon_rate", "service_level", "asa",
                                                   "aht", "callbacks")},
        ("offered", "answered", "abandoned"))}, ("buckets", "total")),
    "Agent": _obj({"agent": S, "name": S, "state": S, "since": N, "pause_reason": SN,
                   "queues": {"type": "array", "items": S}, "calls_taken": I_},
                  ("agent", "state", "since", "queues")),
    "AgentActionRequest": _obj({"queue": SN, "reason": SN}),
    "AgentAction": _obj({"agent": S, "action": S, "result": {}}, ("agent", "action", "result")),
    "ScreenPop": _obj({"agent": S, "queue": SN, "channel": S, "call_uuid": S,
                       "caller_number": S, "caller_name": S, "wait": NN, "ivr_path": A,
                       "variables": O_, "previous_calls": A, "offered_at": N},
                      ("agent", "channel", "caller_number", "ivr_path", "variables",
                       "previous_calls")),
    "Conference": _obj({"number": S, "name": S, "created": N, "members": A},
                       ("number", "name", "members")),
    "ConferenceAction": _obj({"conference": S, "member": S, "action": S},
                             ("conference", "member", "action")),
    "Parked": _obj({"slot": S, "channel": S, "caller": S}, ("slot", "channel")),
    "Registration": _obj({"extension": S, "name": S, "contact": S, "source": S,
                          "expires_in": N, "user_agent": S},
                         ("extension", "contact", "expires_in")),
    "Trunk": _obj({"name": S, "state": S, "mode": S}, ("name", "state")),
    "Cdr": _obj({"call_uuid": S, "caller": S, "caller_name": SN, "callee": S, "start": N,
                 "answer": NN, "end": NN, "duration": NN, "billsec": NN, "disposition": SN,
                 "hangup_cause": SN, "recording": SN, "interrupted": B, "extra": O_},
                ("call_uuid", "caller", "callee", "start", "disposition", "extra")),
    "Event": _obj({"event": S, "time": N}, ("event", "time")),
    "MonitorRequest": _obj({"agent": S, "channel": S, "mode": {
        "type": "string", "enum": ["listen", "whisper", "barge"]}, "extension": S,
        "timeout": N}, ("mode",)),
    "MonitorMode": _obj({"mode": {"type": "string", "enum": ["listen", "whisper", "barge"]}},
                        ("mode",)),
    "Monitor": _obj({"monitor": S, "supervisor": S, "agent": S, "mode": S, "started": N,
                     "channel": S, "caller_channel": S, "stopped": B},
                    ("monitor", "agent", "mode")),
    "User": _obj({"username": S, "role": ROLE, "extension": SN,
                  "queues": {"type": "array", "items": S}, "created": N, "updated": N},
                 ("username", "role", "extension", "queues")),
    "UserCreate": _obj({"username": {"type": "string", "pattern": "^[A-Za-z0-9_.@-]{1,64}$"},
                        "role": ROLE, "password": {"type": "string", "minLength": 8},
                        "extension": SN, "queues": {"type": "array", "items": S}},
                       ("username", "role")),
    "UserCreated": {"allOf": [{"$ref": "#/components/schemas/User"},
                              _obj({"password": S}, ("password",))]},
    "UserUpdate": _obj({"role": ROLE, "password": {"type": "string", "minLength": 8},
                        "extension": SN, "queues": {"type": "array", "items": S}}),
    "Token": _obj({"id": I_, "name": S, "created": N, "last_used": NN},
                  ("id", "name", "created")),
    "TokenCreate": _obj({"name": S}),
    "TokenCreated": _obj({"id": I_, "name": S, "token": S, "username": S},
                         ("id", "token", "username")),
    "Audit": _obj({"id": I_, "time": N, "username": S, "role": S, "source": S, "method": S,
                   "path": S, "action": S, "target": S, "status": I_, "detail": O_},
                  ("id", "time", "username", "action", "status", "source")),
}

_STATUS_TEXT = {101: "Switching Protocols (WebSocket)", 302: "Redirect", 400: "Bad request",
                401: "Not authenticated", 403: "Forbidden", 404: "Not found",
                408: "Timed out", 409: "Conflict with the current state",
                422: "Refused", 429: "Too many attempts"}


def document(version: str = "0.1.0") -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        item = paths.setdefault(op.path, {})
        params = [{"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                   "description": p.desc,
                   "schema": dict({"type": p.type}, **({"enum": list(p.enum)} if p.enum
                                                       else {}))}
                  for p in op.params]
        ok: dict[str, Any] = {"description": "OK"}
        if op.response_type == "application/json":
            schema: dict[str, Any] = {"$ref": f"#/components/schemas/{op.response}"} \
                if op.response else {}
            if op.array:
                schema = {"type": "array", "items": schema}
            ok["content"] = {"application/json": {"schema": schema}}
        else:
            ok["content"] = {op.response_type: {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {"200": ok}
        err = {"content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/Error"}}}}
        statuses = set(op.extra_status)
        if op.roles != PUBLIC:
            statuses |= {401, 403}
        for code in sorted(statuses):
            responses[str(code)] = dict({"description": _STATUS_TEXT.get(code, str(code))},
                                        **(err if code >= 400 else {}))
        o: dict[str, Any] = {
            "operationId": op.name, "summary": op.summary, "tags": [op.tag],
            "responses": responses,
            "x-roles": list(op.roles),
        }
        if op.description:
            o["description"] = op.description
        if params:
            o["parameters"] = params
        if op.body:
            o["requestBody"] = {"required": op.body_required, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body}"}}}}
        if op.roles == PUBLIC:
            o["security"] = []
        item[op.method.lower()] = o
    return {
        "openapi": "3.1.0",
        "info": {"title": "ccswitch API", "version": version,
                 "description": "Control, monitoring and events of a ccswitch server. "
                                "Authenticate with `Authorization: Bearer <token>` (API "
                                "tokens: `ccswitch users token NAME`) or the session cookie "
                                "set by POST /api/login (then state-changing requests need "
                                "`X-Requested-With: ccswitch`). Roles: admin, supervisor, "
                                "agent (x-roles on each operation)."},
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "ccswitch_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }
