"""The SIP user-agent core: turns transactions into registrations and channels.

Sits between the sans-IO SIP stack (`ccswitch.sip`) and the call model:
REGISTER goes to the registrar, an initial INVITE becomes an inbound
`SipChannel` handed to the dialplan, in-dialog requests go to their channel,
and `originate()` makes outbound channels.  Transports call `on_data()`; this
class arms the one transaction timer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ccswitch.call.causes import cause_from_sip, reason_header, sip_from_cause
from ccswitch.call.channel import Channel, ChannelGone, ChannelManager, ChannelState
from ccswitch.media.engine import Endpoint, MediaEngine
from ccswitch.sip import sdp as sdpmod
from ccswitch.sip.auth import (
    AuthError,
    DigestServer,
    build_authorization,
    choose_challenge,
    parse_auth_header,
)
from ccswitch.sip.dialog import Dialog, LocalAddress, build_request, make_cancel, new_tag
from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import Request, Response, make_response, split_commas
from ccswitch.sip.refer import (
    ReferTarget,
    Replaces,
    parse_replaces,
    refer_notify,
    refer_sub,
    refer_to_of,
)
from ccswitch.sip.registrar import Binding, Registrar
from ccswitch.sip.transaction import (
    AckTimeout,
    ClientTransaction,
    IncomingRequest,
    IncomingResponse,
    Peer,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)
from ccswitch.sip.uri import NameAddr, SipURI, format_host, quote

log = logging.getLogger("ccswitch.sip")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
SUPPORTED = "replaces, timer"

SendFn = Callable[[bytes, Peer], None]


@dataclass(slots=True)
class Extension:
    """What the UA needs to know about a local extension."""

    number: str
    password: str
    name: str = ""
    rtp_symmetric: bool = True
    max_contacts: int = 5
    codecs: list[str] = field(default_factory=lambda: ["PCMU", "PCMA"])
    legacy_digest: bool = False


@dataclass(slots=True)
class TrunkInfo:
    """What the UA needs to know about a SIP trunk (provider) for one call leg.

    Inbound: a request recognised as the trunk's (by `SipUA.trunk_lookup`) skips digest
    authentication.  Outbound: a 401/407 from the provider is answered with `username` /
    `password` (only for `realm` when set), and media offers use `codecs`."""

    name: str
    codecs: list[str] = field(default_factory=lambda: ["PCMU", "PCMA"])
    rtp_symmetric: bool = True
    username: str | None = None
    password: str = field(default="", repr=False)
    realm: str | None = None


TrunkLookup = Callable[[Request, Peer], "tuple[TrunkInfo, str] | None"]


class SipUA:
    def __init__(
        self,
        *,
        manager: ChannelManager,
        engine: MediaEngine,
        realm: str,
        server_name: str,
        extensions: dict[str, Extension],
        on_inbound_call: Callable[[SipChannel], Awaitable[None]],
        on_refer: Callable[[SipChannel, ReferTarget, Callable[[int, str | None], None]],
                           Awaitable[None]] | None = None,
        auth_algorithms: tuple[str, ...] = ("MD5",),
        nonce_ttl: float = 300.0,
        external_address: str | None = None,
        rtp_external_address: str | None = None,
    ) -> None:
        self.manager = manager
        self.engine = engine
        self.realm = realm
        self.server_name = server_name
        self.extensions = extensions
        self.on_inbound_call = on_inbound_call
        self.on_refer = on_refer
        self.external_address = external_address
        self.rtp_external_address = rtp_external_address
        # 100 Trying is sent by _on_invite once the INVITE is authenticated: a challenge
        # goes out at once anyway, and some UAs (pyVoIP) take a 100 before the 401 as
        # "call proceeding" and never answer the challenge
        self.layer = TransactionLayer(server_header=server_name, auto_trying=False)
        self.auth = DigestServer(realm, secrets.token_bytes(32), nonce_ttl, auth_algorithms)
        self.registrar = Registrar()
        self.dialogs: dict[tuple[str, str, str], SipChannel] = {}
        self.listen: dict[tuple[str, int], int] = {}  # (transport, family) -> port
        self.listen_host: dict[tuple[str, int], str] = {}
        self._send: SendFn = lambda data, peer: None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._local_ip_cache: dict[str, str] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stats = {"invites": 0, "registers": 0, "auth_failures": 0}
        # trunks (set by the trunk manager): recognise a provider's INVITE before digest
        # auth, returning the trunk and the called number (DID); and our address as seen
        # by a given remote host (a trunk's external address), for Via/Contact/SDP
        self.trunk_lookup: TrunkLookup | None = None
        self.address_for: Callable[[str], str | None] | None = None

    # ------------------------------------------------------------ transport glue
    def attach(self, send: SendFn) -> None:
        self.loop = asyncio.get_running_loop()
        self._send = send

    def now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def on_data(self, data: bytes, peer: Peer) -> None:
        self.layer.receive_data(data, peer, self.now())
        self._pump()

    def _pump(self) -> None:
        layer = self.layer
        # events may generate more events (e.g. a response sent terminates a transaction)
        while True:
            evs = layer.events()
            if not evs:
                break
            for e in evs:
                try:
                    self._dispatch(e)
                except ParseError as exc:
                    log.info("dropped message: %s", exc.reason)
                except Exception:
                    log.exception("error handling %s", type(e).__name__)
        out = layer.datagrams_to_send()
        if out:
            send = self._send
            for data, peer in out:
                send(data, peer)
        when = layer.get_timer()
        if when is not None and (self._timer is None or when < self._timer_at):
            if self._timer is not None:
                self._timer.cancel()
            assert self.loop is not None
            self._timer_at = when
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.layer.handle_timer(self.now())
        self._pump()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("call task failed", exc_info=task.exception())

    # ------------------------------------------------------------ addresses
    def local_ip_for(self, host: str) -> str:
        """Our address as seen from `host` (the source address the kernel would pick)."""
        if self.address_for is not None:
            override = self.address_for(host)
            if override:
                return override
        if self.external_address and not _is_local(host):
            return self.external_address
        ip = self._local_ip_cache.get(host)
        if ip is None:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            bound = self.listen_host.get(("udp", family)) or self.listen_host.get(("tcp", family))
            if bound and bound not in ("0.0.0.0", "::"):
                ip = bound
            else:
                s = socket.socket(family, socket.SOCK_DGRAM)
                try:
                    s.connect((host, 9))
                    ip = str(s.getsockname()[0])
                except OSError:
                    ip = "127.0.0.1" if family == socket.AF_INET else "::1"
                finally:
                    s.close()
            if len(self._local_ip_cache) < 10000:
                self._local_ip_cache[host] = ip
        return ip

    def local_address(self, peer: Peer) -> LocalAddress:
        family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
        port = self.listen.get((peer.transport, family)) or self.listen.get(
            ("udp", family), 5060)
        return LocalAddress(peer.transport, self.local_ip_for(peer.host), port)

    def media_ip_for(self, host: str) -> str:
        if self.address_for is not None and self.address_for(host):
            return self.local_ip_for(host)  # a trunk's external address: SDP too
        if self.rtp_external_address and not _is_local(host):
            return self.rtp_external_address
        return self.local_ip_for(host)

    def contact_for(self, peer: Peer, user: str = "ccswitch") -> str:
        return f"<{self.local_address(peer).contact_uri(user)}>"

    # ------------------------------------------------------------ sending helpers
    def respond(self, txn: ServerTransaction, resp: Response) -> None:
        self.layer.respond(txn, resp, self.now())

    def reply(self, txn: ServerTransaction, status: int, reason: str | None = None,
              headers: list[tuple[str, str]] | None = None, to_tag: str | None = None,
              body: bytes = b"") -> None:
        resp = make_response(txn.request, status, reason, to_tag=to_tag or new_tag(),
                             headers=headers or (), body=body)
        self.respond(txn, resp)

    def send_request(self, req: Request, peer: Peer, user: object = None) -> ClientTransaction:
        if not req.has("User-Agent"):
            req.headers.append(("User-Agent", self.server_name))
        txn = self.layer.send_request(req, peer, self.now())
        txn.user = user
        return txn

    # ------------------------------------------------------------ dispatch
    def _dispatch(self, e: object) -> None:
        if isinstance(e, IncomingRequest):
            self._on_request(e.request, e.peer, e.txn)
        elif isinstance(e, IncomingResponse):
            self._on_response(e.response, e.txn)
        elif isinstance(e, TransactionTimeout):
            user = e.txn.user
            on_timeout = getattr(user, "on_txn_timeout", None)  # channels, registrations
            if on_timeout is not None:
                on_timeout(e.txn)
        elif isinstance(e, AckTimeout):
            user = e.txn.user
            if isinstance(user, SipChannel):
                user.on_ack_timeout()
        elif isinstance(e, TransactionTerminated):
            pass

    def _on_request(self, req: Request, peer: Peer, txn: ServerTransaction | None) -> None:
        method = req.method
        if txn is None:  # ACK for a 2xx
            ch = self._dialog_for(req)
            if ch is not None:
                ch.on_ack(req)
            return
        mf = req.get("Max-Forwards")
        if mf is not None and mf == "0" and method != "OPTIONS":
            self.reply(txn, 483)
            return
        to_tag = req.to_tag
        if to_tag:
            ch = self._dialog_for(req)
            if ch is None:
                self.reply(txn, 481, to_tag=to_tag)
                return
            ch.on_in_dialog_request(req, txn)
            return
        if method == "INVITE":
            self._on_invite(req, peer, txn)
        elif method == "REGISTER":
            self._on_register(req, peer, txn)
        elif method == "CANCEL":
            self._on_cancel(req, txn)
        elif method == "OPTIONS":
            self.reply(txn, 200, headers=[("Allow", ALLOW), ("Accept", "application/sdp"),
                                          ("Supported", SUPPORTED)])
        elif method in ("SUBSCRIBE", "PUBLISH"):
            self.reply(txn, 489, headers=[("Allow-Events", "")])
        elif method in ("BYE", "INFO", "UPDATE", "PRACK", "NOTIFY", "REFER"):
            self.reply(txn, 481)
        elif method == "MESSAGE":
            self.reply(txn, 405, headers=[("Allow", ALLOW)])
        else:
            self.reply(txn, 501, headers=[("Allow", ALLOW)])

    def find_replaced(self, rep: Replaces) -> SipChannel | None:
        """The channel whose dialog a Replaces header names (RFC 3891: to-tag is ours)."""
        ch = self.dialogs.get((rep.call_id, rep.to_tag, rep.from_tag))
        if ch is None:
            # tolerate peers that swap the tags
            ch = self.dialogs.get((rep.call_id, rep.from_tag, rep.to_tag))
        return ch

    def _dialog_for(self, req: Request) -> SipChannel | None:
        return self.dialogs.get((req.call_id, req.to_tag or "", req.from_tag or ""))

    def _on_response(self, resp: Response, txn: ClientTransaction | None) -> None:
        if txn is None:
            # 2xx retransmission after the INVITE transaction ended: re-ACK via the dialog
            key = (resp.call_id, resp.from_tag or "", resp.to_tag or "")
            ch = self.dialogs.get(key)
            if ch is not None:
                ch.on_stray_2xx(resp)
            return
        user = txn.user
        if isinstance(user, SipChannel):
            user.on_response(resp, txn)
        elif callable(user):
            user(resp, txn)

    # ------------------------------------------------------------ authentication
    def _password(self, user: str) -> str | None:
        ext = self.extensions.get(user)
        return ext.password if ext else None

    def _legacy(self, user: str) -> bool:
        ext = self.extensions.get(user)
        return ext.legacy_digest if ext else False

    def authenticate(self, req: Request, txn: ServerTransaction) -> Extension | None:
        """Digest-check `req`; on failure the response is sent and None returned."""
        header = req.get("Authorization") or req.get("Proxy-Authorization")
        now = self.now()
        if header is None:
            self._challenge(txn, stale=False)
            return None
        res = self.auth.verify(header, req.method, now, self._password, self._legacy)
        if res.ok and res.username is not None:
            return self.extensions[res.username]
        if res.status == "stale":
            self._challenge(txn, stale=True)
            return None
        if res.status in ("bad_nonce", "malformed", "bad_realm"):
            log.info("auth %s from %s: %s", req.method, txn.peer.host, res.reason)
            self._challenge(txn, stale=False)
            return None
        # wrong password and unknown user get the same answer (no enumeration)
        self.stats["auth_failures"] += 1
        log.warning("auth failed for %s %s from %s:%d", req.method,
                    _safe_user(res.username), txn.peer.host, txn.peer.port)
        self.reply(txn, 403)
        return None

    def _challenge(self, txn: ServerTransaction, stale: bool) -> None:
        values = self.auth.challenge(self.now(), stale=stale)
        self.reply(txn, 401, headers=[("WWW-Authenticate", v) for v in values])

    # ------------------------------------------------------------ REGISTER
    def _on_register(self, req: Request, peer: Peer, txn: ServerTransaction) -> None:
        self.stats["registers"] += 1
        ext = self.authenticate(req, txn)
        if ext is None:
            return
        try:
            to_user = req.to.sip_uri.user
        except ParseError:
            to_user = None
        if to_user != ext.number:
            # credentials of one extension may not register another AOR
            self.reply(txn, 403, "Forbidden (To does not match credentials)")
            return
        resp = self.registrar.handle(req, ext.number, peer, self.now(), ext.max_contacts)
        resp.headers.append(("Date", _http_date()))
        self.respond(txn, resp)
        if resp.status == 200:
            self.manager.bus.publish("REGISTRATION", extension=ext.number,
                                     contacts=len(self.registrar.lookup(ext.number, self.now())),
                                     peer=f"{peer.host}:{peer.port}")

    def lookup(self, number: str) -> list[Binding]:
        return self.registrar.lookup(number, self.now())

    # ------------------------------------------------------------ INVITE
    def _on_invite(self, req: Request, peer: Peer, txn: ServerTransaction) -> None:
        self.stats["invites"] += 1
        try:
            ruri = req.sip_uri
        except ParseError:
            self.reply(txn, 416)
            return
        # a provider's call (by source address or registration) is not challenged: it
        # is routed by DID only, never back out (no relay for unauthenticated callers)
        found = self.trunk_lookup(req, peer) if self.trunk_lookup is not None else None
        trunk: TrunkInfo | None = None
        ext: Extension | None = None
        if found is not None:
            trunk, dest = found
        else:
            ext = self.authenticate(req, txn)
            if ext is None:
                return
            dest = ruri.user or ""
        replaced: SipChannel | None = None
        if req.get("Replaces") is not None:
            replaced = self._replaced_by(req, txn, ext)
            if replaced is None:
                return
        self.respond(txn, make_response(req, 100))
        if req.body and req.content_type not in ("application/sdp", ""):
            self.reply(txn, 415, headers=[("Accept", "application/sdp")])
            return
        offer: sdpmod.SessionDescription | None = None
        if req.body:
            try:
                offer = sdpmod.parse_sdp(req.body)
            except sdpmod.SdpError as e:
                self.reply(txn, 400, f"Bad Request (SDP: {e})")
                return
        ch = SipChannel(self, txn=txn, peer=peer, ext=ext, dest=dest, offer=offer, trunk=trunk)
        ch.replaces = replaced
        txn.user = ch
        self.spawn(ch.start_inbound())

    def _replaced_by(self, req: Request, txn: ServerTransaction,
                     ext: Extension | None) -> SipChannel | None:
        """The answered leg an INVITE with Replaces (RFC 3891) takes over, or None after
        replying why not.  Only a phone of the extension that owns the leg may take it
        (moving a call between one user's devices): another extension could otherwise
        seize any call whose dialog identifiers it learned.  Early dialogs (call pickup
        by Replaces) are not offered: pickup is the feature code."""
        try:
            rep = parse_replaces(req.get("Replaces") or "")
        except ParseError as e:
            self.reply(txn, 400, f"Bad Request ({e})")
            return None
        old = self.find_replaced(rep)
        if old is None or old.is_gone:
            self.reply(txn, 481)
            return None
        if ext is None or old.ext is None or old.ext.number != ext.number:
            self.reply(txn, 403, "Forbidden (not your call)")
            return None
        if not old.is_up:  # an early dialog
            self.reply(txn, 481)
            return None
        if rep.early_only:  # "only if still early": it is answered (RFC 3891 §3)
            self.reply(txn, 486)
            return None
        return old

    def _on_cancel(self, req: Request, txn: ServerTransaction) -> None:
        inv = self.layer.find_invite_for_cancel(req)
        if inv is None:
            self.reply(txn, 481)
            return
        self.reply(txn, 200, to_tag=req.to_tag or "")
        user = inv.user
        if isinstance(user, SipChannel):
            user.on_cancel()

    # ------------------------------------------------------------ outbound calls
    async def originate(
        self,
        binding: Binding,
        *,
        caller: str,
        caller_name: str,
        dest: str,
        linkedid: str | None = None,
        codecs: list[str] | None = None,
        endpoint_name: str | None = None,
        symmetric: bool = True,
        headers: list[tuple[str, str]] | None = None,
        variables: dict[str, Any] | None = None,
    ) -> SipChannel:
        """Call a registered contact; returns the outbound channel (ringing or failed).
        `variables` are set on the channel before anything else can see it."""
        ext = self.extensions.get(binding.aor)
        ch = SipChannel(
            self, txn=None, peer=binding.target(), ext=ext, dest=dest, offer=None,
            caller=caller, caller_name=caller_name, linkedid=linkedid,
            endpoint_name=endpoint_name or binding.aor,
        )
        if variables:
            ch.vars.update(variables)
        if not await self._outbound_media(ch, ext.rtp_symmetric if ext else symmetric):
            return ch
        ch.send_invite(binding.uri, codecs or (ext.codecs if ext else ["PCMU", "PCMA"]),
                       headers or [])
        return ch

    async def originate_uri(
        self,
        uri: SipURI,
        peer: Peer,
        *,
        caller: str,
        caller_name: str,
        dest: str,
        from_: str | None = None,
        to: str | None = None,
        trunk: TrunkInfo | None = None,
        linkedid: str | None = None,
        codecs: list[str] | None = None,
        endpoint_name: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> SipChannel:
        """Call any URI through `peer` (a trunk's provider); `from_` / `to` (name-addr
        without tag) replace the defaults.  Returns the outbound channel (ringing or
        failed); a 401/407 is answered with the trunk's credentials."""
        ch = SipChannel(
            self, txn=None, peer=peer, ext=None, dest=dest, offer=None, caller=caller,
            caller_name=caller_name, linkedid=linkedid,
            endpoint_name=endpoint_name or (trunk.name if trunk else peer.host), trunk=trunk,
        )
        if not await self._outbound_media(ch, trunk.rtp_symmetric if trunk else True):
            return ch
        ch.send_invite(uri, codecs or ch.codecs, headers or [], from_=from_, to=to)
        return ch

    async def _outbound_media(self, ch: SipChannel, symmetric: bool) -> bool:
        """RTP ports for a new outbound leg; False (the leg ended) when none are free.
        A caller cancelled meanwhile (a queue withdrawing its offer) ends the leg too:
        left as it was, it would stay in the channel list, never called, for good."""
        try:
            ep = await self.engine.create_endpoint(symmetric=symmetric,
                                                   ipv6=":" in ch.peer.host)
        except OSError as e:
            log.error("no RTP port for outbound call: %s", e)
            ch._set_gone("SWITCH_CONGESTION")
            return False
        except asyncio.CancelledError:
            ch._set_gone("ORIGINATOR_CANCEL")
            raise
        ch.attach_media(ep)
        return True

    # ------------------------------------------------------------ shutdown
    def hangup_all(self, cause: str = "SYSTEM_SHUTDOWN") -> None:
        for ch in list(self.manager.channels.values()):
            if isinstance(ch, SipChannel):
                ch.hangup(cause)
        self._pump()


MAX_INVITE_CHALLENGES = 2  # a provider that keeps challenging refuses our credentials


def authorized_retry(invite: Request, resp: Response, username: str, password: str,
                     realm: str | None, via: str, *, tries: int = 1) -> Request | None:
    """The INVITE answering the 401/407 `resp` to `invite` (sans-IO), or None when the
    challenge cannot or should not be answered: not a usable digest challenge, another
    realm than `realm`, the nonce we already answered without stale=true (wrong
    credentials), or more than MAX_INVITE_CHALLENGES rounds."""
    proxy = resp.status == 407
    values = resp.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate")
    if realm is not None:
        values = [v for v in values if _auth_param(v, "realm") == realm]
    if tries > MAX_INVITE_CHALLENGES:
        return None
    try:
        chosen = choose_challenge(values)
    except AuthError:
        return None
    name = "Proxy-Authorization" if proxy else "Authorization"
    answered = [_auth_param(v, "nonce") for v in invite.get_all(name)]
    nonce = _auth_param(chosen, "nonce")
    stale = (_auth_param(chosen, "stale") or "").lower() == "true"
    if nonce in answered and not stale:
        return None
    try:
        value = build_authorization(chosen, "INVITE", str(invite.uri), username, password,
                                    body=invite.body)
    except (AuthError, ValueError):
        return None
    cseq = invite.cseq[0] + 1
    headers: list[tuple[str, str]] = []
    for n, v in invite.headers:
        if n == "Via":
            if not any(h[0] == "Via" for h in headers):
                headers.append(("Via", via))
        elif n == "CSeq":
            headers.append(("CSeq", f"{cseq} INVITE"))
        elif n not in ("Authorization", "Proxy-Authorization"):
            headers.append((n, v))
    headers.append((name, value))
    uri = invite.uri.copy() if isinstance(invite.uri, SipURI) else invite.uri
    return Request("INVITE", uri, headers, invite.body)


def _auth_param(value: str, key: str) -> str | None:
    try:
        return parse_auth_header(value)[1].get(key)
    except AuthError:
        return None


def _safe_user(u: str | None) -> str:
    """Usernames come from the network: keep logs single-line and short."""
    if not u:
        return "-"
    return "".join(c if c.isprintable() else "?" for c in u[:32])


def _is_local(host: str) -> bool:
    return host.startswith(("127.", "10.", "192.168.", "169.254.")) or host == "::1" or (
        host.startswith("172.") and 16 <= int(host.split(".")[1] or 0) <= 31
        if host.count(".") == 3 and host.split(".")[1].isdigit() else False
    )


def _http_date() -> str:
    from email.utils import formatdate

    return formatdate(usegmt=True)


class SipChannel(Channel):
    """A SIP call leg (one dialog and its media)."""

    def __init__(
        self,
        ua: SipUA,
        *,
        txn: ServerTransaction | None,
        peer: Peer,
        ext: Extension | None,
        dest: str,
        offer: sdpmod.SessionDescription | None,
        caller: str | None = None,
        caller_name: str | None = None,
        linkedid: str | None = None,
        endpoint_name: str | None = None,
        trunk: TrunkInfo | None = None,
    ) -> None:
        inbound = txn is not None
        if inbound and ext is not None:
            caller = ext.number
            caller_name = ext.name
        elif inbound:
            assert txn is not None and trunk is not None  # only trunks skip authentication
            caller, caller_name = _remote_identity(txn.request)
        super().__init__(
            ua.manager,
            endpoint_name=endpoint_name or (ext.number if ext else
                                            trunk.name if trunk else peer.host),
            direction="inbound" if inbound else "outbound",
            caller=caller or "",
            caller_name=caller_name or "",
            dest=dest,
            linkedid=linkedid,
        )
        self.ua = ua
        self.peer = peer
        self.ext = ext
        self.trunk = trunk  # a provider's leg (inbound recognised, or outbound through it)
        self.replaces: SipChannel | None = None  # the leg this one takes over (RFC 3891)
        self.auth_tries = 0  # outbound: challenges answered
        self.invite_txn = txn  # inbound: the INVITE server transaction
        self.out_txn: ClientTransaction | None = None  # outbound INVITE
        self.invite: Request | None = txn.request if txn else None
        self.offer = offer
        self.negotiated: sdpmod.Negotiated | None = None
        self.local_tag = new_tag()
        self.dialog: Dialog | None = None
        self.final_sent = False
        self.confirmed = False
        self.pending_cancel = False
        self.got_provisional = False
        self.sdp_version = 1
        self.sdp_id = secrets.randbelow(2**31)
        self.remote_hold = False
        self._refers = 0
        self.media_ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.early_media = False
        self.manager.add(self)
        if inbound:
            self.state = ChannelState.RING
            assert txn is not None
            ua.dialogs[(txn.request.call_id, self.local_tag, txn.request.from_tag or "")] = self

    # ------------------------------------------------------------ inbound set-up
    async def start_inbound(self) -> None:
        """Allocate media, negotiate the offer, then run the dialplan."""
        ua = self.ua
        try:
            ep = await ua.engine.create_endpoint(
                symmetric=self.ext.rtp_symmetric if self.ext else
                self.trunk.rtp_symmetric if self.trunk else True,
                ipv6=":" in self.peer.host)
        except OSError as e:
            log.error("no RTP port: %s", e)
            self.hangup("SWITCH_CONGESTION")
            return
        if self.is_gone:
            ep.close()
            return
        self.attach_media(ep)
        if self.offer is not None:
            try:
                self._negotiate(self.offer)
            except sdpmod.SdpError as e:
                self._final(488, f"Not Acceptable Here ({e})", "INCOMPATIBLE_DESTINATION")
                return
        if not self.media_ready.done():
            self.media_ready.set_result(True)
        try:
            await ua.on_inbound_call(self)
        finally:
            if not self.is_gone:
                self.hangup("NORMAL_CLEARING")

    @property
    def codecs(self) -> list[str]:
        if self.ext is not None:
            return self.ext.codecs
        return self.trunk.codecs if self.trunk is not None else ["PCMU", "PCMA"]

    def attach_media(self, ep: Endpoint) -> None:
        self.media = ep
        ep.on_dtmf = self._on_dtmf

    def _negotiate(self, offer: sdpmod.SessionDescription) -> sdpmod.Negotiated:
        assert self.media is not None
        codecs = self.codecs
        host = self.ua.media_ip_for(self.peer.host)
        neg = sdpmod.negotiate(offer, host, self.media.port, codecs,
                               session_id=self.sdp_id, version=self.sdp_version)
        self._apply(neg)
        return neg

    def _apply(self, neg: sdpmod.Negotiated) -> None:
        ep = self.media
        assert ep is not None
        self.negotiated = neg
        ep.codec_pt = neg.codec_pt
        ep.dtmf_pt = neg.dtmf_pt if neg.dtmf_pt is not None else -1
        self.remote_hold = neg.remote_hold
        ep.send_enabled = neg.direction in ("sendrecv", "sendonly")
        if neg.remote_address not in ("0.0.0.0", "::"):
            ep.set_remote(neg.remote_address, neg.remote_port)

    # ------------------------------------------------------------ Channel API
    def _contact(self) -> str:
        return self.ua.contact_for(self.peer)

    def _response(self, status: int, reason: str | None = None, body: bytes = b"",
                  headers: list[tuple[str, str]] | None = None) -> Response:
        assert self.invite is not None
        hs: list[tuple[str, str]] = []
        if 100 < status < 300:
            hs.append(("Contact", self._contact()))
            hs.append(("Allow", ALLOW))
            hs.append(("Supported", SUPPORTED))
        if headers:
            hs.extend(headers)
        if body:
            hs.append(("Content-Type", "application/sdp"))
        return make_response(self.invite, status, reason, to_tag=self.local_tag, headers=hs,
                             body=body)

    def _answer_sdp(self) -> bytes:
        if self.negotiated is not None:
            return self.negotiated.answer.to_bytes()
        # late offer (INVITE without SDP): we offer in the 2xx, the answer comes in the ACK
        assert self.media is not None
        host = self.ua.media_ip_for(self.peer.host)
        codecs = self.codecs
        return sdpmod.build_offer(host, self.media.port, codecs, session_id=self.sdp_id,
                                  version=self.sdp_version).to_bytes()

    def ring(self) -> None:
        if self.direction != "inbound" or self.final_sent or self.is_gone:
            return
        if self.state in (ChannelState.RING,):
            self.ua.respond(self._invite_txn(), self._response(180))
            self._set_ringing()

    def progress(self) -> None:
        """183 with our SDP: the caller hears what we play before answer (early media)."""
        if self.direction != "inbound" or self.final_sent or self.is_gone or self.early_media:
            return
        if self.negotiated is None:
            return
        self.early_media = True
        self.ua.respond(self._invite_txn(), self._response(183, body=self._answer_sdp()))
        self._set_early()

    async def answer(self) -> None:
        if self.direction != "inbound":
            return
        if self.is_up:
            return
        if self.is_gone:
            raise ChannelGone(self.hangup_cause or "")
        await self.media_ready
        if self.is_gone:
            raise ChannelGone(self.hangup_cause or "")
        txn = self._invite_txn()
        self.final_sent = True
        self.ua.respond(txn, self._response(200, body=self._answer_sdp()))
        self.dialog = Dialog.from_uas(txn.request, self.local_tag, self._contact(), self.peer)
        self._set_up()
        self.ua._pump()

    def _invite_txn(self) -> ServerTransaction:
        assert self.invite_txn is not None
        return self.invite_txn

    def _final(self, status: int, reason: str | None, cause: str) -> None:
        if not self.final_sent and self.invite_txn is not None:
            self.final_sent = True
            self.ua.respond(self.invite_txn, self._response(
                status, reason, headers=[("Reason", reason_header(cause))]))
            self.ua._pump()
        self._set_gone(cause)

    def reject(self, status: int, cause: str | None = None, reason: str | None = None) -> None:
        self._final(status, reason, cause or cause_from_sip(status))

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        if self.is_gone:
            return
        if self.direction == "inbound":
            if not self.final_sent:
                self._final(sip_from_cause(cause), None, cause)
                return
            self._send_bye(cause)
        else:
            if self.dialog is not None and self.state == ChannelState.UP:
                self._send_bye(cause)
            else:
                self._cancel_outbound()
                self._set_gone(cause)
        self.ua._pump()

    def _send_bye(self, cause: str) -> None:
        d = self.dialog
        if d is not None:
            req = d.create_request("BYE", self.ua.local_address(self.peer),
                                   headers=[("Reason", reason_header(cause))])
            self.ua.send_request(req, self._next_hop(), user=None)
        self._set_gone(cause)

    def _next_hop(self) -> Peer:
        d = self.dialog
        if d is not None and d.route_set:
            return d.next_hop()
        # the flow the call came in on (NAT-safe, reuses TCP connections)
        return self.peer

    # ------------------------------------------------------------ inbound events
    def on_cancel(self) -> None:
        if self.final_sent:
            return
        self.final_sent = True
        self.ua.respond(self._invite_txn(), self._response(487))
        self._set_gone("ORIGINATOR_CANCEL")

    def on_ack(self, req: Request) -> None:
        self.confirmed = True
        if self.negotiated is None and req.body and self.media is not None:
            # late-offer answer
            try:
                offer = sdpmod.parse_sdp(self._answer_sdp())
                ans = sdpmod.parse_sdp(req.body)
                self._apply(sdpmod.parse_answer(offer, ans))
            except sdpmod.SdpError as e:
                log.info("%s: bad SDP in ACK: %s", self.name, e)
                self.hangup("INCOMPATIBLE_DESTINATION")

    def on_ack_timeout(self) -> None:
        log.info("%s: no ACK for our 2xx, ending the call", self.name)
        self.hangup("RECOVERY_ON_TIMER_EXPIRE")

    def on_in_dialog_request(self, req: Request, txn: ServerTransaction) -> None:
        ua = self.ua
        m = req.method
        if self.dialog is not None and not self.dialog.accept_remote_seq(req):
            ua.reply(txn, 500, "Server Internal Error (CSeq out of order)",
                     to_tag=self.local_tag)
            return
        if m == "INVITE":
            # only an INVITE's server transaction reports to its user (ACK timeout,
            # CANCEL); a BYE's lingers 32 s and would keep the whole call alive with it
            txn.user = self
        if m == "BYE":
            ua.respond(txn, make_response(req, 200))
            cause = "NORMAL_CLEARING"
            self._set_gone(cause)
        elif m == "INVITE":
            self._on_reinvite(req, txn)
        elif m == "UPDATE":
            if req.body:
                self._on_reinvite(req, txn)
            else:
                ua.respond(txn, make_response(req, 200, headers=[("Contact", self._contact())]))
        elif m == "INFO":
            digit = _info_dtmf(req)
            ua.respond(txn, make_response(req, 200))
            if digit:
                self._on_dtmf(digit, "info")
        elif m == "OPTIONS":
            ua.respond(txn, make_response(req, 200, headers=[("Allow", ALLOW)]))
        elif m == "NOTIFY":
            ua.respond(txn, make_response(req, 200))
        elif m == "REFER":
            self._on_refer(req, txn)
        else:
            ua.respond(txn, make_response(req, 501, headers=[("Allow", ALLOW)]))

    # ------------------------------------------------------------ transfers (RFC 3515)
    def _on_refer(self, req: Request, txn: ServerTransaction) -> None:
        ua = self.ua
        try:
            target = refer_to_of(req)
            sub = refer_sub(req)
        except ParseError as e:
            ua.respond(txn, make_response(req, 400, f"Bad Request ({e.reason})"))
            return
        if ua.on_refer is None or self.dialog is None:
            ua.respond(txn, make_response(req, 603, "Decline (transfers not available)"))
            return
        refer_id = req.cseq[0] if self._refers else None
        self._refers += 1
        hs = [("Contact", self._contact())]
        if not sub:
            hs.append(("Refer-Sub", "false"))
        ua.respond(txn, make_response(req, 202, headers=hs))

        def report(status: int, reason: str | None = None) -> None:
            if sub:
                self.send_refer_notify(status, reason, refer_id)

        report(100)
        ua.spawn(ua.on_refer(self, target, report))
        ua._pump()

    def send_refer_notify(self, status: int, reason: str | None, refer_id: int | None) -> None:
        """NOTIFY the transferor of the referred call's progress (message/sipfrag)."""
        if self.dialog is None or self.is_gone:
            return
        headers, body = refer_notify(status, reason, refer_id=refer_id)
        ctype = next(v for n, v in headers if n == "Content-Type")
        hs = [(n, v) for n, v in headers if n != "Content-Type"]
        req = self.dialog.create_request("NOTIFY", self.ua.local_address(self.peer), body=body,
                                         content_type=ctype, headers=hs)
        self.ua.send_request(req, self._next_hop())
        self.ua._pump()

    def _on_reinvite(self, req: Request, txn: ServerTransaction) -> None:
        ua = self.ua
        if self.dialog is not None:
            self.dialog.update_target(req)
        body = b""
        if req.body:
            try:
                offer = sdpmod.parse_sdp(req.body)
                self.sdp_version += 1
                was_hold = self.remote_hold
                neg = self._negotiate(offer)
                body = neg.answer.to_bytes()
                if neg.remote_hold != was_hold:
                    self._notify("hold" if neg.remote_hold else "unhold")
            except sdpmod.SdpError as e:
                ua.respond(txn, make_response(req, 488, f"Not Acceptable Here ({e})"))
                return
        else:
            body = self._answer_sdp()
        hs = [("Contact", self._contact()), ("Allow", ALLOW), ("Supported", SUPPORTED)]
        if body:
            hs.append(("Content-Type", "application/sdp"))
        ua.respond(txn, make_response(req, 200, headers=hs, body=body))

    # ------------------------------------------------------------ outbound
    def send_invite(self, target: SipURI, codecs: list[str],
                    headers: list[tuple[str, str]], *, from_: str | None = None,
                    to: str | None = None) -> None:
        ua = self.ua
        assert self.media is not None
        local = ua.local_address(self.peer)
        host = ua.media_ip_for(self.peer.host)
        offer = sdpmod.build_offer(host, self.media.port, codecs, dtmf_pt=101,
                                   session_id=self.sdp_id, version=self.sdp_version)
        self.offer = offer
        domain = format_host(self.peer.host)
        display = f"{quote(self.caller_name)} " if self.caller_name else ""
        from_ = from_ or f"{display}<sip:{self.caller}@{format_host(local.host)}>"
        to = to or f"<sip:{self.dest}@{domain}>"
        req = build_request(
            "INVITE", target, local=local, from_=from_, to=to, from_tag=self.local_tag,
            contact=ua.contact_for(self.peer, self.caller or "ccswitch"),
            body=offer.to_bytes(), content_type="application/sdp",
            headers=[("Allow", ALLOW), ("Supported", SUPPORTED), *headers],
        )
        self.invite = req
        self.out_txn = ua.send_request(req, self.peer, user=self)
        ua._pump()

    def on_response(self, resp: Response, txn: ClientTransaction) -> None:
        if txn is not self.out_txn:
            return  # BYE/CANCEL responses: nothing to do
        code = resp.status
        if code < 200:
            if code > 100:
                self.got_provisional = True
                if self.pending_cancel:
                    self._send_cancel()
                    return
                if resp.body and resp.content_type == "application/sdp":
                    self._take_answer(resp)
                    if not self.is_gone:
                        self._set_early()
                elif code in (180, 181, 182) or code == 183:
                    self._set_ringing()
            return
        if code < 300:
            self._on_2xx(resp)
            return
        if code in (401, 407) and self._retry_with_credentials(resp):
            return
        # "failed" (with the SIP status) before "hangup": Dial takes the first event of a
        # leg, and must relay 486/603 rather than guess a status from the hangup cause
        self._notify("failed", code)
        self._set_gone(cause_from_sip(code))

    def _retry_with_credentials(self, resp: Response) -> bool:
        """A provider challenged our INVITE: send it again with credentials (RFC 3261
        §22.2: same Call-ID and From tag, CSeq + 1, a new branch).  False: give up."""
        trunk = self.trunk
        if (trunk is None or trunk.username is None or self.invite is None
                or self.pending_cancel or self.is_gone):
            return False
        self.auth_tries += 1
        retry = authorized_retry(self.invite, resp, trunk.username, trunk.password,
                                 trunk.realm, self.ua.local_address(self.peer).via(),
                                 tries=self.auth_tries)
        if retry is None:
            log.warning("%s: provider %s refused our credentials (%d %s)", self.name,
                        trunk.name, resp.status, resp.reason)
            return False
        self.invite = retry
        self.got_provisional = False  # CANCEL waits for a provisional of the new INVITE
        self.out_txn = self.ua.send_request(retry, self.peer, user=self)
        return True

    def _take_answer(self, resp: Response) -> None:
        if self.offer is None:
            return
        try:
            ans = sdpmod.parse_sdp(resp.body)
            self._apply(sdpmod.parse_answer(self.offer, ans))
        except sdpmod.SdpError as e:
            log.info("%s: bad SDP answer: %s", self.name, e)

    def _on_2xx(self, resp: Response) -> None:
        ua = self.ua
        assert self.invite is not None
        if self.dialog is None:
            self.dialog = Dialog.from_uac(self.invite, resp, ua.contact_for(self.peer),
                                          self.peer)
            ua.dialogs[(self.invite.call_id, self.local_tag, resp.to_tag or "")] = self
        elif resp.to_tag != self.dialog.remote_tag:
            # a second fork answered: ACK it and hang it up (we keep the first)
            d2 = Dialog.from_uac(self.invite, resp, ua.contact_for(self.peer), self.peer)
            ack = d2.create_ack(self.invite.cseq[0], ua.local_address(self.peer))
            ua.layer.send_raw(ack.to_bytes(), self.peer)
            bye = d2.create_request("BYE", ua.local_address(self.peer))
            ua.send_request(bye, self.peer)
            return
        self._send_ack()
        if self.state == ChannelState.UP:
            return
        if resp.body:
            self._take_answer(resp)
        if self.is_gone or self.pending_cancel:
            # we gave up on the call while it was being answered: end it properly
            self.pending_cancel = False
            self.state = ChannelState.UP
            self._send_bye("ORIGINATOR_CANCEL")
            return
        self._set_up()

    def _send_ack(self) -> None:
        assert self.dialog is not None and self.invite is not None
        ack = self.dialog.create_ack(self.invite.cseq[0], self.ua.local_address(self.peer))
        self.ua.layer.send_raw(ack.to_bytes(), self._next_hop())

    def on_stray_2xx(self, resp: Response) -> None:
        if self.dialog is not None and resp.to_tag == self.dialog.remote_tag:
            self._send_ack()
            self.ua._pump()

    def _cancel_outbound(self) -> None:
        if self.out_txn is None or self.out_txn.final is not None:
            return
        if self.got_provisional:
            self._send_cancel()
        else:
            self.pending_cancel = True  # RFC 3261 §9.1: wait for a provisional

    def _send_cancel(self) -> None:
        assert self.invite is not None
        self.pending_cancel = True  # a late 2xx will be ACKed and BYEd
        cancel = make_cancel(self.invite)
        self.ua.send_request(cancel, self.peer, user=None)

    def on_txn_timeout(self, txn: ClientTransaction) -> None:
        if txn is self.out_txn and not self.is_gone:
            self._notify("failed", 408)  # before "hangup", as in on_response
            self._set_gone("RECOVERY_ON_TIMER_EXPIRE")
        elif txn is self.out_txn and self.pending_cancel:
            self.pending_cancel = False

    def _set_gone(self, cause: str) -> None:
        super()._set_gone(cause)
        ua = self.ua
        if self.direction == "inbound" and self.invite_txn is not None:
            key = (self.invite_txn.request.call_id, self.local_tag,
                   self.invite_txn.request.from_tag or "")
            ua.dialogs.pop(key, None)
        elif self.dialog is not None:
            ua.dialogs.pop((self.dialog.call_id, self.local_tag, self.dialog.remote_tag), None)
        if not self.media_ready.done():
            self.media_ready.set_result(False)
        txn = self.invite_txn
        if txn is not None and txn.user is self and self.final_sent:
            # the INVITE's transaction lingers 32 s after the call and needs nothing more
            # from it: let the channel (media, dialog, SDP...) be freed now, not then
            txn.user = None


def _remote_identity(req: Request) -> tuple[str, str]:
    """Caller number and name of a trunk's INVITE: P-Asserted-Identity (a provider
    asserts what it verified), else From; kept short and printable (it reaches CDRs and
    phones' displays)."""
    for name in ("P-Asserted-Identity", "From"):
        value = req.get(name)
        if value is None:
            continue
        try:
            parts = split_commas(value)
            na = NameAddr.parse(parts[0] if parts else value)
            user = na.sip_uri.user or ""
        except ParseError:
            continue
        display = na.display or ""
        clean = "".join(c for c in user[:32] if c.isprintable() and c not in "<>\"'")
        return clean, "".join(c if c.isprintable() else " " for c in display[:64])
    return "", ""


def _info_dtmf(req: Request) -> str | None:
    """DTMF from SIP INFO: application/dtmf-relay ('Signal=5') or application/dtmf ('5')."""
    ct = req.content_type
    text = req.body.decode("ascii", "replace").strip()
    if ct == "application/dtmf-relay":
        for line in text.splitlines():
            k, _, v = line.partition("=")
            if k.strip().lower() == "signal":
                v = v.strip()
                if v == "10":
                    return "*"
                if v == "11":
                    return "#"
                return v[:1].upper() if v else None
        return None
    if ct == "application/dtmf":
        v = text[:2]
        if v == "10":
            return "*"
        if v == "11":
            return "#"
        return v[:1].upper() if v else None
    return None


def _unused(*_: object) -> None:
    """Keep linters quiet about names kept for the public surface."""


_unused(NameAddr, os)
