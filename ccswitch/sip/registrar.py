"""Registrar and location service (RFC 3261 §10.3), sans-IO.

Authentication happens before `handle()`: this module only manages bindings.
Each binding remembers the peer the REGISTER came from, so requests to a
phone behind NAT go back through the same flow (address, port, connection).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ccswitch.sip.dialog import uri_peer
from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import Request, Response, make_response
from ccswitch.sip.transaction import Peer
from ccswitch.sip.uri import NameAddr, SipURI


@dataclass(slots=True)
class Binding:
    aor: str
    contact: str  # the Contact value as sent (name-addr text)
    uri: SipURI
    expires_at: float
    call_id: str
    cseq: int
    peer: Peer
    registered_at: float
    user_agent: str = ""
    q: float = 1.0
    nat: bool = True  # the REGISTER came from another address than its Via said

    def target(self) -> Peer:
        """Where requests to this contact go: back through the registering flow when the
        phone is behind NAT (or on a stream), to the Contact address otherwise."""
        if self.nat or self.peer.reliable:
            return self.peer
        return uri_peer(self.uri, self.peer.transport)

    def expires_in(self, now: float) -> int:
        return max(0, int(self.expires_at - now + 0.5))


@dataclass(slots=True)
class Registrar:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    bindings: dict[str, list[Binding]] = field(default_factory=dict)

    def lookup(self, aor: str, now: float) -> list[Binding]:
        bs = self.bindings.get(aor)
        if not bs:
            return []
        live = [b for b in bs if b.expires_at > now]
        if len(live) != len(bs):
            self._store(aor, live)
        return sorted(live, key=lambda b: -b.q)

    def _store(self, aor: str, bs: list[Binding]) -> None:
        if bs:
            self.bindings[aor] = bs
        else:
            self.bindings.pop(aor, None)

    def expire(self, now: float) -> int:
        """Drop expired bindings; returns how many were removed."""
        removed = 0
        for aor in list(self.bindings):
            bs = self.bindings[aor]
            live = [b for b in bs if b.expires_at > now]
            removed += len(bs) - len(live)
            self._store(aor, live)
        return removed

    def all(self, now: float) -> list[Binding]:
        out: list[Binding] = []
        for aor in sorted(self.bindings):
            out.extend(self.lookup(aor, now))
        return out

    def handle(self, req: Request, aor: str, peer: Peer, now: float,
               max_contacts: int = 5) -> Response:
        """Apply an (already authenticated) REGISTER; returns the response to send."""
        try:
            return self._handle(req, aor, peer, now, max_contacts)
        except ParseError as e:
            return make_response(req, 400, f"Bad Request ({e.reason})")

    def _handle(self, req: Request, aor: str, peer: Peer, now: float,
                max_contacts: int) -> Response:
        call_id = req.call_id
        cseq = req.cseq[0]
        exp_hdr = req.get("Expires")
        default = _expires(exp_hdr)
        raw = req.get_all("Contact")
        current = list(self.bindings.get(aor, []))
        if "*" in raw:
            if len(raw) != 1 or default != 0:
                return make_response(req, 400, "Bad Request (Contact * needs Expires: 0)")
            self._store(aor, [b for b in current if b.call_id == call_id and b.cseq >= cseq])
            return self._ok(req, aor, now)
        updates: list[tuple[NameAddr, int]] = []
        for value in raw:
            na = NameAddr.parse(value)
            if not isinstance(na.uri, SipURI):
                return make_response(req, 400, "Bad Request (Contact is not a SIP URI)")
            e = _expires(na.params.get("expires"))
            if e is not None:
                expires = e
            elif default is not None:
                expires = default
            else:
                expires = self.default_expires
            if 0 < expires < self.min_expires:
                resp = make_response(req, 423)
                resp.headers.append(("Min-Expires", str(self.min_expires)))
                return resp
            updates.append((na, min(expires, self.max_expires)))
        ua = req.get("User-Agent", "") or ""
        via = req.via
        # NAT: the phone's own idea of its address (Via sent-by) is not where it sent from
        nat = via.host != peer.host or (via.port or 5060) != peer.port
        for na, expires in updates:
            uri = na.sip_uri
            existing = next((b for b in current if _same_uri(b.uri, uri)), None)
            if existing is not None:
                if existing.call_id == call_id and cseq <= existing.cseq:
                    return make_response(req, 500, "Server Internal Error (out-of-order REGISTER)")
                current.remove(existing)
            if expires == 0:
                continue
            q_s = na.params.get("q")
            try:
                q = float(q_s) if q_s else 1.0
            except ValueError:
                q = 1.0
            contact = na.copy()
            contact.params.pop("expires", None)
            current.append(Binding(aor, str(contact), uri, now + expires, call_id, cseq, peer,
                                   now, ua, q, nat))
        # a phone that rebooted registers a new Contact: make room by dropping the oldest
        current = [b for b in current if b.expires_at > now]
        while len(current) > max_contacts:
            current.sort(key=lambda b: b.registered_at)
            current.pop(0)
        self._store(aor, current)
        return self._ok(req, aor, now)

    def _ok(self, req: Request, aor: str, now: float) -> Response:
        resp = make_response(req, 200)
        for b in self.lookup(aor, now):
            resp.headers.append(("Contact", f"{b.contact};expires={b.expires_in(now)}"))
        return resp


def _expires(v: str | None) -> int | None:
    """An Expires value: ASCII digits only, huge values capped (no int() on 5,000 digits)."""
    if v is None or not v.isascii() or not v.isdigit():
        return None
    return int(v) if len(v) <= 9 else 999_999_999


def _same_uri(a: SipURI, b: SipURI) -> bool:
    """RFC 3261 §19.1.4-ish comparison, good enough for binding identity."""
    return (
        a.scheme == b.scheme
        and a.user == b.user
        and a.host.lower() == b.host.lower()
        and (a.port or 5060) == (b.port or 5060)
        and a.transport == b.transport
    )
