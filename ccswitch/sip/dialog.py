"""Dialogs (RFC 3261 §12) and request builders for a user agent, sans-IO.

A `Dialog` holds the state both ends share (Call-ID, tags, CSeq counters,
remote target, route set) and builds in-dialog requests.  The free functions
build out-of-dialog requests (INVITE, CANCEL, REGISTER...) with fresh ids.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import Request, Response
from ccswitch.sip.transaction import MAGIC, Peer
from ccswitch.sip.uri import NameAddr, SipURI, format_host


def new_branch() -> str:
    return MAGIC + os.urandom(8).hex()


def new_tag() -> str:
    return os.urandom(6).hex()


def new_call_id(host: str) -> str:
    return f"{os.urandom(10).hex()}@{host}"


@dataclass(slots=True)
class LocalAddress:
    """How we appear on one transport: sent-by for Via, host:port for Contact."""

    transport: str
    host: str
    port: int

    def via(self, branch: str | None = None) -> str:
        # what str(Via(...)) gives, without building one (a Via per request we send)
        return (f"SIP/2.0/{self.transport.upper()} {format_host(self.host)}:{self.port}"
                f";branch={branch or new_branch()};rport")

    def contact_uri(self, user: str | None = None) -> SipURI:
        params: dict[str, str | None] = {}
        if self.transport != "udp":
            params["transport"] = self.transport
        return SipURI("sip", user, self.host, self.port, params=params)


def uri_peer(uri: SipURI, default_transport: str = "udp") -> Peer:
    """Where to send a request for `uri` (no DNS: hosts are addresses or resolved by callers)."""
    transport = uri.params.get("transport") or default_transport
    maddr = uri.params.get("maddr")
    port = uri.port or (5061 if uri.scheme == "sips" else 5060)
    return Peer(transport.lower(), maddr or uri.host, port)


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # From/To value for our side, without tag (name-addr text)
    remote_uri: str
    remote_target: SipURI
    local_contact: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 1
    remote_seq: int | None = None
    secure: bool = False
    # for sending: the transport/peer the dialog was created on (reused for TCP connections)
    peer: Peer | None = None

    # ---- creation
    @classmethod
    def from_uas(cls, req: Request, local_tag: str, local_contact: str, peer: Peer) -> Dialog:
        """We answered `req` (an INVITE or SUBSCRIBE) with a 2xx/1xx carrying `local_tag`."""
        contacts = req.contacts()
        if not contacts or not isinstance(contacts[0].uri, SipURI):
            raise ParseError("missing or non-SIP Contact")
        from_ = req.from_
        return cls(
            call_id=req.call_id,
            local_tag=local_tag,
            remote_tag=from_.tag or "",
            local_uri=_strip_tag(req.to),
            remote_uri=_strip_tag(from_),
            remote_target=contacts[0].uri,
            local_contact=local_contact,
            route_set=req.get_all("Record-Route"),
            local_seq=0,
            remote_seq=req.cseq[0],
            peer=peer,
        )

    @classmethod
    def from_uac(cls, req: Request, resp: Response, local_contact: str, peer: Peer) -> Dialog:
        """Our request `req` got a dialog-creating response `resp` (1xx with tag or 2xx)."""
        contacts = resp.contacts()
        if contacts and isinstance(contacts[0].uri, SipURI):
            target = contacts[0].uri
        else:
            target = req.sip_uri  # liberal: some UAs omit Contact in 18x
        to = resp.to
        return cls(
            call_id=req.call_id,
            local_tag=req.from_tag or "",
            remote_tag=to.tag or "",
            local_uri=_strip_tag(req.from_),
            remote_uri=_strip_tag(to),
            remote_target=target,
            local_contact=local_contact,
            route_set=list(reversed(resp.get_all("Record-Route"))),
            local_seq=req.cseq[0],
            remote_seq=None,
            peer=peer,
        )

    @property
    def id(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    # ---- requests
    def next_hop(self) -> Peer:
        if self.route_set:
            na = NameAddr.parse(self.route_set[0])
            uri = na.sip_uri
        else:
            uri = self.remote_target
        default = self.peer.transport if self.peer else "udp"
        p = uri_peer(uri, default)
        if self.peer is not None and self.peer.reliable and p.transport == self.peer.transport:
            # keep using the connection the dialog was set up on
            return self.peer
        return p

    def _request_uri_and_routes(self) -> tuple[SipURI, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if isinstance(first.uri, SipURI) and "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # strict router (RFC 3261 §12.2.1.1)
        routes = [*self.route_set[1:], f"<{self.remote_target}>"]
        return first.sip_uri, routes

    def create_request(
        self,
        method: str,
        local: LocalAddress,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        cseq: int | None = None,
        branch: str | None = None,
    ) -> Request:
        if cseq is None:
            self.local_seq += 1
            cseq = self.local_seq
        ruri, routes = self._request_uri_and_routes()
        hs: list[tuple[str, str]] = [
            ("Via", local.via(branch)),
            ("Max-Forwards", "70"),
            ("From", f"{self.local_uri};tag={self.local_tag}"),
            ("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag
             else self.remote_uri),
            ("Call-ID", self.call_id),
            ("CSeq", f"{cseq} {method}"),
        ]
        hs.extend(("Route", r) for r in routes)
        if method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER", "NOTIFY"):
            hs.append(("Contact", self.local_contact))
        if headers:
            hs.extend(headers)
        if body and content_type:
            hs.append(("Content-Type", content_type))
        return Request(method, ruri.copy(), hs, body)

    def create_ack(self, invite_cseq: int, local: LocalAddress, body: bytes = b"",
                   content_type: str | None = None) -> Request:
        """ACK for a 2xx (RFC 3261 §13.2.2.4): its own transaction-less branch."""
        return self.create_request("ACK", local, body=body, content_type=content_type,
                                   cseq=invite_cseq)

    def accept_remote_seq(self, req: Request) -> bool:
        """RFC 3261 §12.2.2: a lower CSeq than the last is out of order (answer 500)."""
        if req.method in ("ACK", "CANCEL"):
            return True
        n = req.cseq[0]
        if self.remote_seq is not None and n < self.remote_seq:
            return False
        self.remote_seq = n
        return True

    def update_target(self, msg: Request | Response) -> None:
        """Target refresh (re-INVITE, UPDATE and their 2xx)."""
        contacts = msg.contacts()
        if contacts and isinstance(contacts[0].uri, SipURI):
            self.remote_target = contacts[0].uri


def _strip_tag(na: NameAddr) -> str:
    c = na.copy()
    c.params.pop("tag", None)
    return str(c)


def build_request(
    method: str,
    uri: SipURI,
    *,
    local: LocalAddress,
    from_: str,
    to: str,
    call_id: str | None = None,
    cseq: int = 1,
    contact: str | None = None,
    from_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    headers: list[tuple[str, str]] | None = None,
    routes: list[str] | None = None,
    branch: str | None = None,
) -> Request:
    """An out-of-dialog request with fresh Call-ID / From tag / branch (RFC 3261 §8.1.1)."""
    hs: list[tuple[str, str]] = [
        ("Via", local.via(branch)),
        ("Max-Forwards", "70"),
        ("From", f"{from_};tag={from_tag or new_tag()}"),
        ("To", to),
        ("Call-ID", call_id or new_call_id(local.host)),
        ("CSeq", f"{cseq} {method}"),
    ]
    if routes:
        hs.extend(("Route", r) for r in routes)
    if contact:
        hs.append(("Contact", contact))
    if headers:
        hs.extend(headers)
    if body and content_type:
        hs.append(("Content-Type", content_type))
    return Request(method, uri.copy(), hs, body)


def make_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same branch, R-URI, Call-ID, From, To."""
    hs: list[tuple[str, str]] = [("Via", invite.get_all("Via")[0])]
    for n, v in invite.headers:
        if n in ("From", "To", "Call-ID", "Route", "Max-Forwards"):
            hs.append((n, v))
    hs.append(("CSeq", f"{invite.cseq[0]} CANCEL"))
    return Request("CANCEL", invite.uri, hs)
