"""SIP trunks: registration to providers, inbound DIDs, outbound calls with failover,
origination, status.

One `TrunkManager` per server.  It

- keeps each registering trunk registered: an `OutboundRegistration` (sans-IO) driven
  through the SipUA's transaction layer, with one timer per trunk for refreshes and
  retries;
- recognises a provider's INVITE before digest authentication (`SipUA.trunk_lookup`):
  by source address (`allowed_addresses`: IP, network or IP:port) or, for a registering
  trunk, by the Request-URI user being our registered Contact user.  That user defaults
  to ``<username>-<token>`` with a token derived from the password (Asterisk's
  ``line`` idea), so a scanner cannot guess it; a recognised call only ever reaches the
  DIDs (`inbound_target`), never a trunk again, so recognition cannot be abused for
  toll fraud;
- places calls out (`call_out`, `dial_out`): the first outbound route matching the
  dialled number that the extension may use; its trunks in order, the next one on 5xx,
  408 or no progress within the trunk's `progress_timeout`, never on other 4xx/6xx
  (the number is wrong or busy: another provider will say the same); ringing and early
  media (183) reach the caller; a 401/407 is answered with the trunk's credentials (in
  SipChannel);
- originates calls for the CLI (`originate`): ring an extension, then dial a number and
  bridge; or call a number and run a flow when it answers;
- reports state (`status`) for `ccswitch trunks`.

The pure helpers (`match_source`, `did_of`, `default_contact_user`, `caller_identity`,
`should_failover`, `outbound_routes`) hold the decisions and are unit-tested alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ccswitch.apps.dial import RINGBACK, DialResult
from ccswitch.apps.routing import (
    DidRule,
    OutboundRoute,
    caller_id_headers,
    match_did,
    resolve_caller_id,
    select_route,
)
from ccswitch.call.channel import Bridge, Channel
from ccswitch.call.sipua import SipChannel, SipUA, TrunkInfo
from ccswitch.config import Config, TrunkConfig, parse_address_rule
from ccswitch.media.engine import PcmSource
from ccswitch.sip.dialog import LocalAddress
from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import Request, Response
from ccswitch.sip.outreg import OutboundRegistration
from ccswitch.sip.transaction import ClientTransaction, Peer
from ccswitch.sip.uri import SipURI, format_host

if TYPE_CHECKING:
    from ccswitch.call.channel import ChannelManager

log = logging.getLogger("ccswitch.trunks")

TRUNK_REGISTRATION = "TRUNK_REGISTRATION"  # event: a trunk's registration state changed
ORIGINATE = "ORIGINATE"  # event: an originated call's outcome

AddressRule = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]


# ---------------------------------------------------------------- pure helpers


def default_contact_user(name: str, username: str, password: str) -> str:
    """Our Contact user at a provider: the account name plus a token only someone knowing
    the password can compute, stable across restarts (the provider keeps sending to the
    binding it has) and different per trunk."""
    mac = hmac.new(password.encode(), f"ccswitch-trunk-line:{name}".encode(),
                   hashlib.sha256).hexdigest()[:10]
    return f"{username}-{mac}"


def address_rules(texts: Sequence[str]) -> list[AddressRule]:
    rules = []
    for t in texts:
        r = parse_address_rule(t)
        if r is not None:
            rules.append(r)
    return rules


def match_source(rules: Sequence[AddressRule], host: str, port: int) -> bool:
    """Is `host`:`port` (a packet's source) one of `rules`?"""
    if not rules:
        return False
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for net, rport in rules:
        if ip.version == net.version and ip in net and (rport is None or rport == port):
            return True
    return False


def _uri_user(value: str | None) -> str:
    if not value:
        return ""
    try:
        from ccswitch.sip.uri import NameAddr

        return NameAddr.parse(value).sip_uri.user or ""
    except ParseError:
        return ""


def did_of(req: Request, source: str, contact_user: str | None,
           username: str | None = None) -> str:
    """The called number of a provider's INVITE.  `source`: request_uri, to, or auto
    (the Request-URI user, unless it is our Contact or account user: then To's)."""
    try:
        ruser = req.sip_uri.user or ""
    except ParseError:
        ruser = ""
    if source == "request_uri":
        return ruser
    to_user = _uri_user(req.get("To"))
    if source == "to":
        return to_user
    if not ruser or ruser in (contact_user, username):
        return to_user or ruser
    return ruser


_FAILOVER_4XX = frozenset({408})


def should_failover(status: int) -> bool:
    """Try the next trunk after this final status?  5xx (the provider cannot carry the
    call now) and 408 / no response (it is unreachable): yes.  Other 4xx (404 unknown
    number, 486 busy, 403 refused...) and 6xx: no, the next provider would say the same
    about the same number, and a busy callee must not be rung twice."""
    return 500 <= status < 600 or status in _FAILOVER_4XX


def outbound_routes(cfg: Config) -> list[OutboundRoute]:
    return [OutboundRoute(name=r.name, patterns=list(r.patterns), trunks=list(r.trunks),
                          strip=r.strip, prepend=r.prepend, caller_id=r.caller_id,
                          allowed_extensions=r.extensions, emergency=r.emergency)
            for r in cfg.outbound_routes]


@dataclass(frozen=True)
class DidEntry:
    rule: DidRule
    trunks: tuple[str, ...] | None


def did_entries(cfg: Config) -> list[DidEntry]:
    out = []
    for d in cfg.dids:
        kind, target = d.target() or ("", "")
        out.append(DidEntry(DidRule(d.number, kind, target),
                            tuple(d.trunks) if d.trunks is not None else None))
    return out


def _user_part(number: str) -> str:
    return number.replace("#", "%23")


@dataclass(frozen=True)
class CallerIdentity:
    from_: str
    headers: tuple[tuple[str, str], ...]
    number: str


def caller_identity(tcfg: TrunkConfig, number: str | None, name: str | None) -> CallerIdentity:
    """From and P-Asserted-Identity towards the provider for a caller `number` / `name`
    (falling back to the trunk's caller_id, then its account name, then anonymous)."""
    domain = tcfg.from_domain or tcfg.host
    number = number or tcfg.caller_id
    name = name or tcfg.caller_id_name
    if number:
        try:
            cid = caller_id_headers(number, name, domain=domain, privacy=tcfg.privacy,
                                    from_user=tcfg.from_user,
                                    assert_identity=tcfg.p_asserted_identity)
            return CallerIdentity(cid.from_, cid.headers, number)
        except ValueError as e:
            log.warning("caller ID %r not usable: %s", number, e)
    user = tcfg.from_user or tcfg.username or "anonymous"
    return CallerIdentity(f"<sip:{user}@{format_host(domain)}>", (), "")


# ---------------------------------------------------------------- per-trunk state


@dataclass
class Trunk:
    name: str
    cfg: TrunkConfig
    info: TrunkInfo
    rules: list[AddressRule]
    contact_user: str | None
    peer: Peer | None = None  # resolved provider address
    reg: OutboundRegistration | None = None
    driver: _RegistrationDriver | None = None
    active: set[str] = field(default_factory=set)  # channel ids of its live legs
    calls_in: int = 0
    calls_out: int = 0
    calls_failed: int = 0
    last_error: str | None = None  # last call failure or resolution error
    last_error_at: float | None = None

    @property
    def full(self) -> bool:
        return self.cfg.max_calls > 0 and len(self.active) >= self.cfg.max_calls

    def note_error(self, text: str) -> None:
        self.last_error = text
        self.last_error_at = time.time()


class _RegistrationDriver:
    """Runs one OutboundRegistration: sends its requests through the UA's transaction
    layer (it is the client transactions' user), feeds back responses and timeouts, and
    arms one timer at its next deadline (refresh or retry)."""

    def __init__(self, mgr: TrunkManager, trunk: Trunk, reg: OutboundRegistration) -> None:
        self.mgr = mgr
        self.trunk = trunk
        self.reg = reg
        self.ua = mgr.ua
        self.timer: asyncio.TimerHandle | None = None
        self.stopped = False
        self.last_state = reg.state

    def start(self) -> None:
        self._send(self.reg.start(self.ua.now()))
        self._after()

    def _send(self, req: Request | None) -> None:
        if req is not None:
            self.ua.send_request(req, self.reg.peer, user=self)

    # the UA calls its client transactions' user with each response
    def __call__(self, resp: Response, txn: ClientTransaction) -> None:
        if self.stopped and not self.reg.in_flight:
            return
        self._send(self.reg.on_response(resp, self.ua.now()))
        self._after()

    def on_txn_timeout(self, txn: ClientTransaction) -> None:
        self.reg.on_timeout(self.ua.now(), "timeout (no response from the registrar)",
                            request=txn.request)
        self._after()

    def _fire(self) -> None:
        self.timer = None
        if self.stopped:
            return
        self._send(self.reg.handle_deadline(self.ua.now()))
        self._after()
        self.ua._pump()

    def _after(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.stopped:
            return
        when = self.reg.next_deadline()
        if when is not None and self.ua.loop is not None:
            self.timer = self.ua.loop.call_at(when, self._fire)
        state = self.reg.state
        if state != self.last_state:
            self.last_state = state
            log.info("trunk %s: registration %s%s", self.trunk.name, state,
                     f" ({self.reg.last_error})" if self.reg.last_error else "")
            self.mgr.publish(TRUNK_REGISTRATION, trunk=self.trunk.name, state=state,
                             error=self.reg.last_error)

    def stop(self, unregister: bool) -> None:
        self.stopped = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        # also when failed: a binding granted earlier may still be live at the provider
        if unregister and self.reg.state != "unregistered":
            self._send(self.reg.unregister(self.ua.now()))
            self.ua._pump()


# ---------------------------------------------------------------- the manager


class OriginateError(Exception):
    """A refused originate request; `status` is the HTTP status the API answers."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


RunFlow = Callable[[Channel, str], Awaitable[None]]
# Server.connect: (channel, number, on_answer) -> (DIALSTATUS, SIP code)
Connect = Callable[[Channel, str, Callable[[], None] | None], Awaitable[tuple[str, int]]]


class TrunkManager:
    def __init__(self, ua: SipUA, manager: ChannelManager, cfg: Config, *,
                 on_call_info: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.ua = ua
        self.manager = manager
        self.cfg = cfg
        self.trunks: dict[str, Trunk] = {}
        self.routes: list[OutboundRoute] = []
        self.dids: list[DidEntry] = []
        self.on_call_info = on_call_info  # (linkedid, fields) -> CDR extra
        self.run_flow: RunFlow | None = None
        self.on_bridged: Callable[[Channel, Channel], None] | None = None  # feature codes
        self.connect: Connect | None = None  # the dialplan, for internal destinations
        self.flow_exists: Callable[[str], bool] = lambda name: False
        self._addresses: dict[str, str] = {}  # remote IP -> our external address for it
        self._address_rules: list[tuple[list[AddressRule], str]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._configure(cfg)

    # ------------------------------------------------------------ lifecycle
    def _configure(self, cfg: Config) -> None:
        self.cfg = cfg
        self.routes = outbound_routes(cfg)
        self.dids = did_entries(cfg)

    def _build(self, name: str, tcfg: TrunkConfig) -> Trunk:
        username = tcfg.auth_username or tcfg.username
        info = TrunkInfo(name=name, codecs=list(tcfg.codecs), rtp_symmetric=tcfg.rtp_symmetric,
                         username=username, password=tcfg.password or "", realm=tcfg.realm)
        contact_user = tcfg.contact_user
        if contact_user is None and tcfg.register and tcfg.username and tcfg.password:
            contact_user = default_contact_user(name, tcfg.username, tcfg.password)
        return Trunk(name, tcfg, info, address_rules(tcfg.allowed_addresses), contact_user)

    async def start(self) -> None:
        """Resolve providers, start registrations, install the UA hooks."""
        self.ua.trunk_lookup = self.lookup
        self.ua.address_for = self.address_for
        for name, tcfg in self.cfg.trunks.items():
            t = self._build(name, tcfg)
            self.trunks[name] = t
            self._spawn(self._start_trunk(t))
        await asyncio.sleep(0)  # let IP-addressed trunks send their first REGISTER now

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_trunk(self, t: Trunk) -> None:
        """Resolve the provider (in the background: DNS must not hold up start-up; a
        registering trunk keeps trying with back-off), then register."""
        if not t.cfg.enabled:
            return
        delay = t.cfg.retry_min
        while await self._resolve(t) is None:
            if not t.cfg.register:
                return  # calls out resolve again when they need it
            await asyncio.sleep(delay)
            delay = min(delay * 2, t.cfg.retry_max)
            if self.trunks.get(t.name) is not t:
                return  # replaced by a reload
        self._rebuild_addresses()
        if t.cfg.register:
            self._start_registration(t)

    async def _resolve(self, t: Trunk) -> Peer | None:
        host = t.cfg.host
        try:
            ipaddress.ip_address(host)
            ip = host
        except ValueError:
            try:
                loop = asyncio.get_running_loop()
                infos = await loop.getaddrinfo(host, t.cfg.port, type=socket.SOCK_DGRAM)
            except OSError as e:
                t.note_error(f"cannot resolve {host}: {e}")
                log.error("trunk %s: cannot resolve %s: %s", t.name, host, e)
                return None
            fams = {fam for (_, fam) in self.ua.listen}
            ordered = sorted(infos, key=lambda i: i[0] != socket.AF_INET)
            ip = next((str(i[4][0]) for i in ordered if int(i[0]) in fams),
                      str(ordered[0][4][0]) if ordered else "")
            if not ip:
                t.note_error(f"cannot resolve {host}")
                return None
        t.peer = Peer(t.cfg.transport, ip, t.cfg.port)
        return t.peer

    def _start_registration(self, t: Trunk) -> None:
        cfg = t.cfg
        if t.peer is None or not cfg.username or not cfg.password:
            return
        base = self.ua.local_address(t.peer)
        local = LocalAddress(base.transport, base.host, base.port)
        domain = cfg.from_domain or cfg.host
        if cfg.port != 5060:
            domain = f"{format_host(domain)}:{cfg.port}"
        reg = OutboundRegistration(
            cfg.username, domain, cfg.auth_username or cfg.username, cfg.password,
            local=local, expires=cfg.expires, contact_user=t.contact_user,
            transport=cfg.transport, peer=t.peer, realm=cfg.realm,
            retry_min=cfg.retry_min, retry_max=cfg.retry_max, name=t.name,
        )
        t.reg = reg
        t.driver = _RegistrationDriver(self, t, reg)
        t.driver.start()
        self.ua._pump()

    def stop(self) -> None:
        """Un-REGISTER (the provider stops sending calls here) and stop every timer."""
        for t in self.trunks.values():
            if t.driver is not None:
                t.driver.stop(unregister=True)
        for task in list(self._tasks):
            task.cancel()

    async def reload(self, cfg: Config) -> None:
        """New routes and DIDs at once; trunks whose settings changed are restarted
        (their live calls continue)."""
        old = self.trunks
        self._configure(cfg)
        new: dict[str, Trunk] = {}
        starting = []
        for name, tcfg in cfg.trunks.items():
            t = old.get(name)
            if t is not None and t.cfg == tcfg:
                new[name] = t
                continue
            if t is not None and t.driver is not None:
                t.driver.stop(unregister=True)
            nt = self._build(name, tcfg)
            if t is not None:
                nt.active = t.active
                nt.calls_in, nt.calls_out, nt.calls_failed = t.calls_in, t.calls_out, \
                    t.calls_failed
            new[name] = nt
            starting.append(nt)
        for name, t in old.items():
            if name not in new and t.driver is not None:
                t.driver.stop(unregister=True)
        self.trunks = new
        for t in starting:
            self._spawn(self._start_trunk(t))
        self._rebuild_addresses()
        await asyncio.sleep(0)

    def publish(self, event: str, **fields: Any) -> None:
        self.manager.bus.publish(event, **fields)

    # ------------------------------------------------------------ UA hooks
    def _rebuild_addresses(self) -> None:
        exact: dict[str, str] = {}
        rules: list[tuple[list[AddressRule], str]] = []
        for t in self.trunks.values():
            ext = t.cfg.external_address
            if not ext or not t.cfg.enabled:
                continue
            if t.peer is not None:
                exact[t.peer.host] = ext
            if t.rules:
                rules.append((t.rules, ext))
        self._addresses = exact
        self._address_rules = rules

    def address_for(self, host: str) -> str | None:
        """Our address as a trunk's provider must see it (its external_address)."""
        if not self._addresses and not self._address_rules:
            return None
        a = self._addresses.get(host)
        if a is not None:
            return a
        for rules, ext in self._address_rules:
            if any(match_source([(net, None)], host, 0) for net, _ in rules):
                return ext
        return None

    def lookup(self, req: Request, peer: Peer) -> tuple[TrunkInfo, str] | None:
        """The trunk an INVITE comes from (None: not a provider's, authenticate it)."""
        if not self.trunks:
            return None
        try:
            ruser = req.sip_uri.user
        except ParseError:
            ruser = None
        for t in self.trunks.values():
            if not t.cfg.enabled:
                continue
            by_line = bool(t.cfg.register and t.contact_user and ruser == t.contact_user)
            if by_line or match_source(t.rules, peer.host, peer.port):
                dest = did_of(req, t.cfg.did_source, t.contact_user, t.cfg.username)
                return t.info, dest
        return None

    # ------------------------------------------------------------ inbound
    def inbound_target(self, chan: SipChannel) -> tuple[str, str]:
        """Where a provider's call goes: ("flow", name), ("extension", number),
        ("queue", name), ("conference", room) or ("reject", SIP status)."""
        assert chan.trunk is not None
        t = self.trunks.get(chan.trunk.name)
        if t is None:
            return "reject", "503"
        t.calls_in += 1
        if t.full:
            log.warning("%s: trunk %s at its limit of %d calls", chan.name, t.name,
                        t.cfg.max_calls)
            return "reject", "503"
        self._track(t, chan)
        rule = self.match_did(chan.dest, t.name, t.cfg.country_code)
        self._info(chan.linkedid, trunk=t.name, direction="inbound", did=chan.dest)
        if rule is None:
            log.info("%s: no DID %r on trunk %s", chan.name, chan.dest, t.name)
            return "reject", "404"
        chan.vars["did"] = chan.dest
        chan.vars["trunk"] = t.name
        return rule.kind, rule.target

    def match_did(self, number: str, trunk: str | None,
                  country_code: str | None = None) -> DidRule | None:
        rules = [e.rule for e in self.dids if e.trunks is None or trunk in e.trunks]
        return match_did(rules, number, country_code)

    def local_did(self, number: str) -> DidRule | None:
        """An exact DID dialled from inside (routed locally, not through a provider)."""
        for e in self.dids:
            if e.rule.pattern.kind == "exact" and e.rule.number == number:
                return e.rule
        return None

    # ------------------------------------------------------------ outbound
    def select(self, number: str, extension: str | None) -> tuple[OutboundRoute, str] | None:
        return select_route(self.routes, number, extension)

    def matches_any_route(self, number: str) -> bool:
        return any(r.match(number) is not None for r in self.routes)

    def authorising_extension(self, chan: Channel) -> str | None:
        """The extension whose outbound permissions a call to an outside number uses, or
        None (it may not go out): the calling extension, or for a transferred call the
        extension that transferred it.  A provider's call, or a call transferred by one
        (a REFER or feature code from outside), never goes back out: no toll fraud."""
        if "transferred_by" in chan.vars:
            who = chan.vars["transferred_by"]
            return who if isinstance(who, str) and who in self.ua.extensions else None
        if isinstance(chan, SipChannel) and chan.trunk is None and chan.ext is not None:
            return chan.ext.number
        return None

    async def connect_out(self, chan: SipChannel, number: str, extension: str,
                          timeout: float, on_answer: Callable[[], None] | None = None
                          ) -> tuple[str, int]:
        """`extension` dialled a number that is not local: through its outbound route.
        Returns a DIALSTATUS-like (status, SIP code) as Server.connect does: NOROUTE 404
        without a route, FAILED 403 when routes exist but not for this extension."""
        sel = self.select(number, extension)
        if sel is None:
            if self.matches_any_route(number):
                log.info("%s: extension %s may not dial %s", chan.name, extension, number)
                return "FAILED", 403
            return "NOROUTE", 404
        route, out = sel
        chan.app, chan.app_data = "Trunk", f"{route.name}/{out}"

        def answered(leg: Channel) -> None:
            if self.on_bridged is not None:
                self.on_bridged(chan, leg)
            if on_answer is not None:
                on_answer()

        res = await self.dial_out(chan, route, out, timeout=timeout, extension=extension,
                                  on_answer=answered)
        return res.status, res.sip_status

    def _caller_for(self, route: OutboundRoute | None, t: Trunk, chan: Channel | None,
                    extension: str | None, caller_id: str | None,
                    caller_name: str | None) -> CallerIdentity:
        ext_cfg = self.cfg.extension(extension) if extension else None
        if caller_id is None:
            if route is not None:
                caller_id = resolve_caller_id(route, ext_cfg.caller_id if ext_cfg else None,
                                              t.cfg.caller_id)
            else:
                caller_id = (ext_cfg.caller_id if ext_cfg else None) or t.cfg.caller_id
            if caller_id is None and chan is not None and chan.caller:
                caller_id = chan.caller
        if caller_name is None and chan is not None and chan.caller_name:
            caller_name = chan.caller_name
        return caller_identity(t.cfg, caller_id, caller_name)

    async def dial_out(
        self,
        chan: SipChannel | None,
        route: OutboundRoute | None,
        number: str,
        *,
        timeout: float,
        extension: str | None = None,
        trunks: Sequence[str] | None = None,
        caller_id: str | None = None,
        caller_name: str | None = None,
        bridge: bool = True,
        linkedid: str | None = None,
        on_answer: Callable[[Channel], None] | None = None,
    ) -> DialResult:
        """Call `number` through the route's trunks (or `trunks`) in order.

        With `chan` (the caller) its ringing / early media / answer follow the provider's
        and, with `bridge`, the answered leg is bridged to it and this returns when the
        caller hangs up.  Without `chan` the answered leg is returned (in
        `answered_by`) for the caller to use."""
        names = list(trunks if trunks is not None else route.trunks if route else ())
        best = 0
        tried: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for name in names:
            t = self.trunks.get(name)
            if t is None or not t.cfg.enabled:
                continue
            if t.full:
                log.info("trunk %s: at its limit of %d calls, trying the next", name,
                         t.cfg.max_calls)
                best = best or 503
                continue
            if t.peer is None and await self._resolve(t) is None:
                best = best or 503
                continue
            if chan is not None and chan.is_gone:
                return DialResult("CANCEL", 487)
            tried.append(name)
            left = deadline - loop.time()
            if left <= 0:
                return DialResult("NOANSWER", 480)
            ident = self._caller_for(route, t, chan, extension, caller_id, caller_name)
            res = await self._attempt(chan, t, number, ident, left, bridge=bridge,
                                      linkedid=linkedid or (chan.linkedid if chan else None),
                                      on_answer=on_answer)
            if res.status in ("ANSWER", "CANCEL", "NOANSWER"):
                return res
            status = res.sip_status or 503
            t.calls_failed += 1
            t.note_error(f"{number}: {status}" + (" (no progress)" if res.status == "TIMEOUT"
                                                  else ""))
            if not should_failover(status) and res.status != "TIMEOUT":
                return res
            log.info("trunk %s failed (%s) for %s: trying the next trunk", name, status,
                     number)
            best = status if res.status != "TIMEOUT" else (best or 503)
        if not tried:
            log.warning("no usable trunk for %s (%s)", number, ", ".join(names) or "none")
        return DialResult("CHANUNAVAIL" if not tried else "FAILED", best or 503)

    async def _attempt(self, chan: SipChannel | None, t: Trunk, number: str,
                       ident: CallerIdentity, timeout: float, *, bridge: bool,
                       linkedid: str | None,
                       on_answer: Callable[[Channel], None] | None = None) -> DialResult:
        """One provider: returns ANSWER, CANCEL (the caller left), NOANSWER (timeout
        after progress), TIMEOUT (no progress in time) or FAILED with the status."""
        assert t.peer is not None
        cfg = t.cfg
        host = format_host(cfg.host)
        hostport = host if cfg.port == 5060 else f"{host}:{cfg.port}"
        user = _user_part(number)
        params: dict[str, str | None] = {} if cfg.transport == "udp" else \
            {"transport": cfg.transport}
        uri = SipURI("sip", user, cfg.host, cfg.port if cfg.port != 5060 else None,
                     params=params)
        q: asyncio.Queue[tuple[Channel, str, Any]] = asyncio.Queue()
        leg_box: list[SipChannel] = []
        early: list[Bridge] = []

        def listener(c: Channel, what: str, data: Any) -> None:
            if what in ("failed", "hangup") and leg_box and c is leg_box[0] and early:
                # the early-media bridge must not take the caller down with this leg:
                # the next trunk may still connect it
                b = early.pop()
                if c.bridge is b:
                    b.destroy()
            q.put_nowait((c, what, data))

        leg = await self.ua.originate_uri(
            uri, t.peer, caller=ident.number or (chan.caller if chan else ""),
            caller_name=chan.caller_name if chan else "", dest=number, from_=ident.from_,
            to=f"<sip:{user}@{hostport}>", trunk=t.info, linkedid=linkedid,
            codecs=_codec_order(chan, list(cfg.codecs)), headers=list(ident.headers),
        )
        leg_box.append(leg)
        leg.listeners.append(listener)
        self._track(t, leg)
        t.calls_out += 1
        self._info(leg.linkedid, trunk=t.name, direction="outbound", dialled=number)
        if chan is not None:
            chan.listeners.append(listener)
        if leg.is_gone:
            q.put_nowait((leg, "failed", 503))
        loop = asyncio.get_running_loop()
        progress_by = loop.time() + min(cfg.progress_timeout, timeout)
        deadline = loop.time() + timeout
        progressed = False
        ringback: PcmSource | None = None
        try:
            while True:
                now = loop.time()
                until = deadline if progressed else min(deadline, progress_by)
                try:
                    c, what, data = await asyncio.wait_for(q.get(), max(0.0, until - now))
                except TimeoutError:
                    if progressed or loop.time() >= deadline:
                        return DialResult("NOANSWER", 480)
                    log.info("trunk %s: no progress from the provider in %.0f s", t.name,
                             cfg.progress_timeout)
                    return DialResult("TIMEOUT", 408)
                if chan is not None and c is chan:
                    if what == "hangup":
                        return DialResult("CANCEL", 487)
                    continue
                if c is not leg:
                    continue
                if what == "ringing":
                    progressed = True
                    if chan is not None:
                        chan.ring()
                        # an answered caller (originate, IVR), or one whose early media
                        # came from a provider that then failed: ringback is ours to play
                        ours = chan.is_up or (chan.early_media and chan.bridge is None)
                        if ours and chan.media is not None and chan.media.source is None:
                            ringback = PcmSource(RINGBACK, loop=True)
                            chan.media.set_source(ringback)
                elif what == "progress":
                    progressed = True
                    if chan is not None and not early and leg.media and chan.media:
                        chan.progress()  # 183 to the caller: it hears the provider's audio
                        early.append(Bridge(self.manager, chan, leg))
                elif what == "answered":
                    if chan is not None and chan.is_gone:
                        leg.hangup("NORMAL_CLEARING")
                        return DialResult("CANCEL", 487)
                    if chan is None or not bridge:
                        return DialResult("ANSWER", 200, leg)
                    if chan.media is not None and ringback is not None and \
                            chan.media.source is ringback:
                        chan.media.set_source(None)
                    early.clear()
                    await chan.answer()
                    Bridge(self.manager, chan, leg)
                    if on_answer is not None:
                        on_answer(leg)
                    await asyncio.shield(chan.hungup)
                    return DialResult("ANSWER", 200, leg)
                elif what in ("failed", "hangup"):
                    status = data if isinstance(data, int) else 503
                    return DialResult("FAILED", status)
        finally:
            if chan is not None:
                if listener in chan.listeners:
                    chan.listeners.remove(listener)
                if chan.media is not None and ringback is not None and \
                        chan.media.source is ringback:
                    chan.media.set_source(None)
            if listener in leg.listeners:
                leg.listeners.remove(listener)
            if not leg.is_up and not leg.is_gone:
                if early:
                    b = early.pop()
                    if leg.bridge is b:
                        b.destroy()
                leg.hangup("NORMAL_CLEARING" if chan is not None and chan.is_gone
                           else "NO_ANSWER")

    def _track(self, t: Trunk, ch: Channel) -> None:
        if ch.is_gone:
            return
        t.active.add(ch.id)

        def gone(c: Channel, what: str, data: Any) -> None:
            if what == "hangup":
                t.active.discard(c.id)

        ch.listeners.append(gone)

    def _info(self, linkedid: str, **fields: Any) -> None:
        if self.on_call_info is not None:
            self.on_call_info(linkedid, fields)

    # ------------------------------------------------------------ origination
    async def originate(
        self,
        source: str,
        *,
        to: str | None = None,
        flow: str | None = None,
        timeout: float = 30.0,
        caller_id: str | None = None,
        caller_name: str | None = None,
        trunk: str | None = None,
        wait: bool = True,
    ) -> dict[str, Any]:
        """Place a call: `source` (an extension, rung first, or an outside number called
        through the routes or `trunk`), then `to` (a number, dialled and bridged) or
        `flow` (run on the answered source).  Returns the outcome as a dict; with `wait`
        once it is known (the destination answered or failed, or the flow started)."""
        if (to is None) == (flow is None):
            raise OriginateError("give a destination number or a flow (one of them)")
        if flow is not None and not self.flow_exists(flow):
            raise OriginateError(f"no flow named {flow!r}", 404)
        if trunk is not None and trunk not in self.trunks:
            raise OriginateError(f"no trunk named {trunk!r}", 404)
        if not 1 <= timeout <= 600:
            raise OriginateError("timeout must be between 1 and 600 seconds")
        is_ext = source in self.ua.extensions
        src_route: tuple[OutboundRoute | None, str, list[str] | None] = \
            (None, source, None) if is_ext else self._plan(source, None, trunk)
        dst_route: tuple[OutboundRoute | None, str, list[str] | None] | None = None
        if to is not None and not self._is_local(to):
            dst_route = self._plan(to, source if is_ext else None, trunk)
        if to is not None and dst_route is None and self.connect is None:
            raise OriginateError("local destinations need the dialplan", 500)
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[dict[str, Any]] = loop.create_future()
        task = asyncio.ensure_future(self._originate(
            source, is_ext, src_route, to, dst_route, flow, timeout, caller_id, caller_name,
            outcome))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if not wait:
            return {"result": "placed", "source": source, "to": to, "flow": flow}
        return await asyncio.shield(outcome)

    def _is_local(self, number: str) -> bool:
        """An internal number (extension, route, queue, conference, our DID...): the
        dialplan's, whatever outbound route might also match it."""
        return number in self.ua.extensions or any(
            n == number for n, _, _ in self.cfg.dialable_numbers())

    def _plan(self, number: str, extension: str | None, trunk: str | None
              ) -> tuple[OutboundRoute | None, str, list[str] | None]:
        if trunk is not None:
            return None, number, [trunk]
        sel = self.select(number, extension)
        if sel is None:
            who = f"extension {extension}" if extension else "originated calls"
            raise OriginateError(f"no outbound route for {number} ({who})", 404)
        return sel[0], sel[1], None

    async def _ring_extension(self, ext: str, *, caller: str, caller_name: str,
                              timeout: float) -> tuple[SipChannel | None, int]:
        """Ring every contact of `ext`; the first to answer wins.  (leg, SIP status)."""
        bindings = self.ua.lookup(ext)
        if not bindings:
            return None, 480
        q: asyncio.Queue[tuple[Channel, str, Any]] = asyncio.Queue()

        def listener(c: Channel, what: str, data: Any) -> None:
            q.put_nowait((c, what, data))

        legs: list[SipChannel] = []
        winner: SipChannel | None = None
        best = 0
        try:
            linkedid: str | None = None
            for b in bindings:
                leg = await self.ua.originate(b, caller=caller, caller_name=caller_name,
                                              dest=ext, linkedid=linkedid)
                linkedid = linkedid or leg.linkedid  # one call: one CDR
                leg.listeners.append(listener)
                legs.append(leg)
                if leg.is_gone:
                    q.put_nowait((leg, "failed", 503))
            pending = set(legs)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while pending:
                try:
                    c, what, data = await asyncio.wait_for(q.get(),
                                                           max(0.0, deadline - loop.time()))
                except TimeoutError:
                    return None, 408
                if what == "answered" and c in pending:
                    assert isinstance(c, SipChannel)
                    winner = c
                    return c, 200
                if what in ("failed", "hangup") and c in pending:
                    pending.discard(c)
                    status = data if isinstance(data, int) else 480
                    best = status if status in (486, 600, 603) or not best else best
            return None, best or 480
        finally:
            for leg in legs:
                if listener in leg.listeners:
                    leg.listeners.remove(listener)
                if leg is not winner and not leg.is_gone:
                    leg.hangup("LOSE_RACE" if winner is not None else "NO_ANSWER")

    async def _originate(
        self, source: str, is_ext: bool,
        src_route: tuple[OutboundRoute | None, str, list[str] | None],
        to: str | None, dst_route: tuple[OutboundRoute | None, str, list[str] | None] | None,
        flow: str | None, timeout: float, caller_id: str | None, caller_name: str | None,
        outcome: asyncio.Future[dict[str, Any]],
    ) -> None:
        result: dict[str, Any] = {"source": source, "to": to, "flow": flow}

        def report(res: str, stage: str, status: int, **extra: Any) -> None:
            if outcome.done():
                return  # known already (the call may go on long after)
            result.update(result=res, stage=stage, sip_status=status, **extra)
            self.publish(ORIGINATE, **result)
            outcome.set_result(dict(result))

        first: SipChannel | None = None
        try:
            # 1. the source
            if is_ext:
                shown = to or flow or ""
                first, status = await self._ring_extension(
                    source, caller=(to if to is not None else caller_id or ""),
                    caller_name=caller_name or ("Call to " + to if to else shown),
                    timeout=timeout)
            else:
                route, number, trunks = src_route
                res = await self.dial_out(None, route, number, timeout=timeout,
                                          trunks=trunks, caller_id=caller_id,
                                          caller_name=caller_name)
                first = res.answered_by if isinstance(res.answered_by, SipChannel) else None
                status = res.sip_status
                result["dialled"] = number
                if first is None:
                    report(_outcome(status, res.status), "source", status)
                    return
            if first is None:
                report(_outcome(status), "source", status)
                return
            result["call"] = first.linkedid
            result["source_channel"] = first.name
            if is_ext:
                # from now on the extension is the caller (its phone was shown the
                # destination): the next leg presents the extension, not the number
                ext = self.ua.extensions[source]
                first.caller, first.caller_name = ext.number, ext.name
            self._info(first.linkedid, originate={"source": source, "to": to, "flow": flow})
            # 2a. a flow on the answered source
            if flow is not None:
                report("answered", "source", 200)
                assert self.run_flow is not None
                await self.run_flow(first, flow)
                return
            # 2b. a number: an extension (dialled as if from the source) or out again
            assert to is not None
            if dst_route is None:
                # internal: whatever the dialplan makes of it, as if the source dialled it
                assert self.connect is not None
                dstatus, code = await self.connect(
                    first, to, lambda: report("answered", "destination", 200))
            else:
                route, number, trunks = dst_route
                result["dialled"] = number

                def answered(leg: Channel) -> None:
                    report("answered", "destination", 200, destination_channel=leg.name)

                res = await self.dial_out(
                    first, route, number, timeout=timeout, trunks=trunks,
                    extension=source if is_ext else None, caller_id=caller_id,
                    caller_name=caller_name, on_answer=answered)
                dstatus, code = res.status, res.sip_status
            if dstatus in ("ANSWER", "DONE"):
                report("answered", "destination", 200)
            else:
                report(_outcome(code, dstatus), "destination", code)
        except Exception as e:  # the API caller must always get an answer
            log.exception("originate %s failed", source)
            report("failed", "source" if first is None else "destination", 500, error=str(e))
        finally:
            if first is not None and not first.is_gone and (flow is None):
                first.hangup("NORMAL_CLEARING")

    # ------------------------------------------------------------ status
    def status(self) -> list[dict[str, Any]]:
        now = self.ua.now()
        rows = []
        for t in self.trunks.values():
            cfg = t.cfg
            reg = t.reg
            mode = "register" if cfg.register else ("ip" if t.rules else "outbound")
            if not cfg.enabled:
                state = "disabled"
            elif reg is not None:
                state = reg.state
            elif cfg.register:
                state = "failed" if t.last_error else "registering"  # resolving the host
            else:
                state = "ip" if t.rules else "n/a"
            reg_info: dict[str, Any] | None = None
            if reg is not None:
                deadline = reg.next_deadline()
                reg_info = {
                    "state": reg.state,
                    "last_error": reg.last_error,
                    "expires_in": (max(0, round(reg.registered_until - now))
                                   if reg.registered_until is not None else None),
                    "granted_expires": reg.granted_expires,
                    "next_attempt_in": (max(0, round(deadline - now))
                                        if deadline is not None else None),
                    "attempts": reg.attempts,
                    "contact": reg.contact,
                    "public_address": (f"{reg.public_address[0]}:{reg.public_address[1]}"
                                       if reg.public_address else None),
                }
            last_error = (reg.last_error if reg is not None and reg.last_error else None) \
                or t.last_error
            rows.append({
                "name": t.name,
                "enabled": cfg.enabled,
                "host": cfg.host,
                "port": cfg.port,
                "transport": cfg.transport,
                "address": f"{t.peer.host}:{t.peer.port}" if t.peer else None,
                "mode": mode,
                "state": state,
                "last_error": last_error,
                "registration": reg_info,
                "active_calls": len(t.active),
                "max_calls": cfg.max_calls,
                "calls_in": t.calls_in,
                "calls_out": t.calls_out,
                "calls_failed": t.calls_failed,
                "last_call_error": t.last_error,
                "external_address": cfg.external_address,
            })
        return rows


def _outcome(status: int, dial_status: str | None = None) -> str:
    """An originate's result word (the CLI's exit code follows it)."""
    if dial_status == "NOANSWER" or status == 408:
        return "no_answer"
    if status in (486, 600):
        return "busy"
    if dial_status == "CANCEL" or status == 487:
        return "cancelled"
    if status in (404, 480):
        return "unavailable"  # an extension with no registered phone, an unknown number
    return "failed"


def _codec_order(chan: Channel | None, codecs: list[str]) -> list[str]:
    """The trunk's codecs, the caller's first when the trunk allows it (no transcoding)."""
    if chan is None:
        return codecs
    first = chan.codec
    return [first] + [c for c in codecs if c != first] if first in codecs else codecs
