"""Outbound registration: ccswitch registering to a SIP provider (RFC 3261 §10.2), sans-IO.

One `OutboundRegistration` per trunk.  It builds REGISTER requests and reacts to their
responses; the caller sends each returned request to `reg.peer` through a client
transaction, feeds the final response to `on_response()` (or a transaction timeout to
`on_timeout()`), and calls `handle_deadline(now)` when `next_deadline()` passes.  Every
call that returns a `Request` wants it sent; `None` means nothing to send.

States: ``unregistered`` (not started, or unregistered) → ``registering`` (first attempt
in flight) → ``registered`` (binding granted; stays so while a refresh is in flight) or
``failed`` (last attempt failed, a retry is scheduled at `next_deadline()`) →
``retrying`` (that retry in flight) → ``registered`` or ``failed`` again.

Timing choices:

- Refresh: a binding granted for E seconds is refreshed ``min(E/2, max(30, E/10))``
  seconds before it expires, counted from when the REGISTER was *sent* (the registrar
  counts from when it received it, so we are never late by the network delay).  That is
  90% of E for E >= 300 (3600 → 3240 s, like linphone and belle-sip; several minutes to
  ride out a provider blip with retries before the binding lapses), at least 30 s of
  margin for shorter bindings (a challenge round trip plus several UDP retransmissions),
  and never earlier than half-way (E=60 → 30 s, so short bindings are not refreshed in a
  tight loop).  Asterisk chan_sip refreshes only 15 s early; a refresh that meets a 401
  and one lost packet there already lets the binding lapse.
- Retry after a failure: exponential back-off, ``retry_min * 2**(n-1)`` capped at
  ``retry_max`` for the n-th consecutive failed attempt, minus up to 25% random jitter
  (so a fleet of trunks that failed together does not retry in lockstep).  Failures that
  will not fix themselves in seconds (authentication rejected, 403, 404, other 4xx/6xx)
  wait ``retry_max`` straight away: hammering a provider with bad credentials gets the
  source address banned by fail2ban-style guards (Asterisk has forbidden_retry_interval
  and auth_rejection_permanent for the same reason).  A Retry-After on a failure is
  honoured as a floor (capped at an hour).

Authentication: 401 → Authorization, 407 → Proxy-Authorization, computed with
`build_authorization`; the challenge is cached and answered pre-emptively on refreshes
with the nonce-count incremented (no extra round trip while the server keeps the nonce).
A new challenge with the same nonce keeps counting nc upwards; a new nonce restarts at 1.
After answering a challenge, being challenged again with the same nonce and no
stale=true means wrong credentials: "authentication rejected".  At most
`MAX_CHALLENGES` challenges are answered per attempt, so a server that rotates nonces
on bad credentials cannot loop us either.  The password is never logged nor shown in
repr().
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from ccswitch.sip.auth import AuthError, build_authorization, choose_challenge, parse_auth_header
from ccswitch.sip.dialog import LocalAddress, build_request, new_call_id, new_tag, uri_peer
from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import Request, Response
from ccswitch.sip.transaction import Peer
from ccswitch.sip.uri import SipURI, format_host, split_hostport

__all__ = [
    "MAX_CHALLENGES",
    "STATES",
    "OutboundRegistration",
    "refresh_delay",
]

log = logging.getLogger("ccswitch.outreg")

STATES = ("unregistered", "registering", "registered", "failed", "retrying")

REFRESH_MARGIN_MIN = 30.0  # seconds of margin before expiry, at least (short bindings)
REFRESH_MARGIN_FRACTION = 0.1  # of the granted expiry (long bindings)
JITTER = 0.25  # a retry delay loses up to this fraction, at random
MAX_CHALLENGES = 3  # challenges answered within one attempt
MAX_423 = 2  # Interval Too Brief rounds within one attempt
MAX_RETRY_AFTER = 3600.0  # a provider's Retry-After is honoured up to this
MIN_REFRESH_DELAY = 1.0  # never refresh sooner than this after a 200 (degenerate grants)

# failures worth a quick retry: the server or the path is temporarily unwell
_TRANSIENT = frozenset({408, 480, 500, 502, 503, 504})


def refresh_delay(granted: float) -> float:
    """Seconds after sending a REGISTER granted `granted` seconds at which to refresh it."""
    margin = min(granted / 2, max(REFRESH_MARGIN_MIN, granted * REFRESH_MARGIN_FRACTION))
    return granted - margin


class OutboundRegistration:
    """Keeps one binding registered at a provider's registrar.

    `domain` is the registrar's host[:port]: the Request-URI is ``sip:domain`` and the
    AoR (From/To) ``sip:aor_user@domain``.  `peer` is where requests go (an outbound
    proxy, or the resolved registrar: this layer does no DNS); by default the domain's
    host and port on `transport`.  With `realm`, only challenges for that realm are
    answered (the credentials are not offered to anyone else).  `rng` returns floats in
    [0, 1) for the retry jitter.
    """

    def __init__(
        self,
        aor_user: str,
        domain: str,
        username: str,
        password: str,
        *,
        local: LocalAddress,
        expires: int = 3600,
        contact_user: str | None = None,
        transport: str = "udp",
        peer: Peer | None = None,
        realm: str | None = None,
        retry_min: float = 5.0,
        retry_max: float = 300.0,
        rng: Callable[[], float] = random.random,
        user_agent: str | None = None,
        preemptive_auth: bool = True,
        name: str = "",
    ) -> None:
        if expires < 1:
            raise ValueError("expires must be at least 1 second (0 means unregister)")
        if retry_min <= 0 or retry_max < retry_min:
            raise ValueError("need 0 < retry_min <= retry_max")
        try:
            host, port = split_hostport(domain)
        except ParseError as e:
            raise ValueError(f"bad registrar domain {domain!r}: {e}") from None
        transport = transport.lower()
        self.name = name or f"{aor_user}@{domain}"
        self.aor_user = aor_user
        self.domain = domain
        self.username = username
        self._password = password
        self.local = local
        self.contact_user = contact_user if contact_user is not None else aor_user
        self.transport = transport
        self.realm = realm
        self.retry_min = float(retry_min)
        self.retry_max = float(retry_max)
        self.user_agent = user_agent
        self.preemptive_auth = preemptive_auth
        self._rng = rng

        params: dict[str, str | None] = {} if transport == "udp" else {"transport": transport}
        self._registrar_uri = SipURI("sip", None, host, port, params=params)
        default_port = port or (5061 if transport == "tls" else 5060)
        self._peer = peer if peer is not None else Peer(transport, host, default_port)
        self._aor = f"<sip:{aor_user}@{format_host(host)}{'' if port is None else f':{port}'}>"
        self._contact_uri = local.contact_uri(self.contact_user)
        self._contact = f"<{self._contact_uri}>"
        # RFC 3261 §10.2: one Call-ID for all registrations of this boot cycle, CSeq + 1 each
        self._call_id = new_call_id(local.host)
        self._from_tag = new_tag()
        self._cseq = 0

        self._expires = expires  # what we ask for (raised by a 423)
        self._state = "unregistered"
        self.last_error: str | None = None
        self.registered_until: float | None = None
        self.granted_expires: int | None = None
        self.attempts = 0  # attempts since the last success (the one in flight included)
        self.public_address: tuple[str, int] | None = None  # received/rport seen by the server

        # the request awaiting its final response
        self._pending: Request | None = None
        self._pending_unregister = False
        self._pending_expires = expires
        self._sent_at = 0.0
        # per attempt (REGISTER plus its challenge / 423 / 3xx follow-ups)
        self._challenges = 0
        self._answered_nonce: str | None = None  # nonce answered in the pending request
        self._interval_rounds = 0
        self._redirects = 0
        # cached challenge: (header to send, challenge value, nonce); nc last used
        self._auth: tuple[str, str, str] | None = None
        self._nc = 0
        # registrar after a 3xx: used until the next failure
        self._redirect: tuple[SipURI, Peer] | None = None

        self._deadline: float | None = None
        self._deadline_kind = ""  # "refresh" | "retry"

    def __repr__(self) -> str:
        return f"<OutboundRegistration {self.name} {self._state}>"

    # ------------------------------------------------------------ properties
    @property
    def state(self) -> str:
        return self._state

    @property
    def peer(self) -> Peer:
        """Where to send the requests this object returns (changes after a 3xx)."""
        return self._redirect[1] if self._redirect is not None else self._peer

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def contact(self) -> str:
        return self._contact

    @property
    def expires(self) -> int:
        """The expiry we ask for (the configured one, or the registrar's Min-Expires)."""
        return self._expires

    @property
    def in_flight(self) -> bool:
        return self._pending is not None

    def next_deadline(self) -> float | None:
        """When `handle_deadline` wants to be called (refresh or retry); None: no timer."""
        return self._deadline

    # ------------------------------------------------------------ inputs
    def start(self, now: float) -> Request:
        """The first REGISTER (or a restart: forgets any scheduled refresh or retry)."""
        self.attempts = 0
        self._redirect = None
        self._deadline = None
        return self._begin_attempt(now, "registering")

    def handle_deadline(self, now: float) -> Request | None:
        """The refresh or retry REGISTER once `next_deadline()` has passed."""
        if self._deadline is None or now < self._deadline:
            return None
        kind = self._deadline_kind
        self._deadline = None
        if kind == "refresh":
            # still registered while the refresh is in flight: the binding is valid
            return self._begin_attempt(now, "registered")
        return self._begin_attempt(now, "retrying")

    def unregister(self, now: float) -> Request:
        """REGISTER with Expires: 0 for our Contact (not '*': other devices sharing the
        account keep their bindings).  Nothing is retried afterwards."""
        self._deadline = None
        self._set_state("unregistered")
        self.registered_until = None
        self.granted_expires = None
        self.attempts = 0
        self._reset_attempt()
        return self._send(now, unregister=True, answering=False)

    def on_response(self, resp: Response, now: float) -> Request | None:
        """A response to one of our REGISTERs; returns a follow-up REGISTER to send, if any.
        Responses to anything but the request in flight (late, stray) are ignored."""
        pending = self._pending
        if pending is None:
            return None
        try:
            cseq, method = resp.cseq
            call_id = resp.call_id
        except ParseError:
            return None
        if method != "REGISTER" or cseq != self._cseq or call_id != self._call_id:
            return None
        status = resp.status
        if status < 200:
            return None
        self._pending = None
        self._observe_via(resp)
        if status < 300:
            return self._on_success(resp, now)
        if status in (401, 407):
            return self._on_challenge(resp, now)
        if status == 423:
            return self._on_interval_too_brief(resp, now)
        if status < 400:
            return self._on_redirect(resp, now)
        self._fail(now, f"{status} {resp.reason}", fatal=status not in _TRANSIENT,
                   retry_after=_retry_after(resp))
        return None

    def on_timeout(self, now: float, reason: str = "timeout",
                   request: Request | None = None) -> None:
        """The transaction of the request in flight timed out (or hit a transport error:
        pass `reason`).  With `request`, a timeout of a superseded request is ignored."""
        if self._pending is None:
            return
        if request is not None and request.cseq[0] != self._cseq:
            return
        self._pending = None
        self._fail(now, reason, fatal=False)

    # ------------------------------------------------------------ building requests
    def _begin_attempt(self, now: float, state: str) -> Request:
        self.attempts += 1
        self._reset_attempt()
        self._set_state(state)
        return self._send(now, unregister=False, answering=False)

    def _reset_attempt(self) -> None:
        self._challenges = 0
        self._answered_nonce = None
        self._interval_rounds = 0
        self._redirects = 0

    def _send(self, now: float, *, unregister: bool, answering: bool) -> Request:
        uri = self._redirect[0] if self._redirect is not None else self._registrar_uri
        expires = 0 if unregister else self._expires
        headers: list[tuple[str, str]] = [("Expires", str(expires))]
        if self.user_agent:
            headers.append(("User-Agent", self.user_agent))
        self._answered_nonce = None
        if self._auth is not None and (answering or self.preemptive_auth):
            hname, challenge, nonce = self._auth
            self._nc += 1
            try:
                value = build_authorization(challenge, "REGISTER", str(uri), self.username,
                                            self._password, nc=self._nc)
            except (AuthError, ValueError):  # nc wrapped, or a challenge we cannot answer
                self._auth = None
            else:
                headers.append((hname, value))
                if answering:
                    self._answered_nonce = nonce
        self._cseq += 1
        req = build_request(
            "REGISTER", uri, local=self.local, from_=self._aor, to=self._aor,
            call_id=self._call_id, cseq=self._cseq, contact=self._contact,
            from_tag=self._from_tag, headers=headers,
        )
        self._pending = req
        self._pending_unregister = unregister
        self._pending_expires = expires
        self._sent_at = now
        return req

    # ------------------------------------------------------------ responses
    def _on_success(self, resp: Response, now: float) -> Request | None:
        if self._pending_unregister:
            self._set_state("unregistered")
            self.last_error = None
            return None
        granted = self._granted(resp)
        if granted <= 0:
            # a 200 that lists our Contact with expires=0: the binding was not kept
            self._fail(now, "registrar granted no binding", fatal=False)
            return None
        self.granted_expires = granted
        self.registered_until = self._sent_at + granted
        self.attempts = 0
        self.last_error = None
        self._set_state("registered")
        refresh_at = self._sent_at + refresh_delay(granted)
        self._schedule(max(refresh_at, now + MIN_REFRESH_DELAY), "refresh")
        return None

    def _granted(self, resp: Response) -> int:
        """Our Contact's expires param, else the Expires header, else what we asked for."""
        try:
            contacts = resp.contacts()
        except ParseError:
            contacts = []
        for na in contacts:
            if isinstance(na.uri, SipURI) and self._is_our_contact(na.uri):
                value = _nonneg_int(na.params.get("expires"))
                if value is not None:
                    return value
        value = _nonneg_int(resp.get("Expires"))
        return value if value is not None else self._pending_expires

    def _is_our_contact(self, uri: SipURI) -> bool:
        ours = self._contact_uri
        default = 5061 if ours.scheme == "sips" else 5060
        return (uri.user == ours.user and uri.host.lower() == ours.host.lower()
                and (uri.port or default) == (ours.port or default))

    def _on_challenge(self, resp: Response, now: float) -> Request | None:
        proxy = resp.status == 407
        values = resp.get_all("Proxy-Authenticate" if proxy else "WWW-Authenticate")
        if self.realm is not None:
            values = [v for v in values if _challenge_realm(v) == self.realm]
        try:
            chosen = choose_challenge(values)
            params = parse_auth_header(chosen)[1]
        except AuthError:
            what = f"for realm {self.realm!r}" if self.realm is not None else "we support"
            self._fail(now, f"{resp.status}: no challenge {what}", fatal=True)
            return None
        nonce = params["nonce"]
        stale = params.get("stale", "").lower() == "true"
        self._challenges += 1
        rejected = nonce == self._answered_nonce and not stale
        if rejected or self._challenges > MAX_CHALLENGES:
            self._auth = None
            self._fail(now, "authentication rejected", fatal=True)
            return None
        if self._auth is None or self._auth[2] != nonce:
            self._nc = 0  # new nonce: the count starts again
        self._auth = ("Proxy-Authorization" if proxy else "Authorization", chosen, nonce)
        return self._send(now, unregister=self._pending_unregister, answering=True)

    def _on_interval_too_brief(self, resp: Response, now: float) -> Request | None:
        minimum = _nonneg_int(resp.get("Min-Expires"))
        self._interval_rounds += 1
        if (self._pending_unregister or minimum is None or minimum <= self._pending_expires
                or self._interval_rounds > MAX_423):
            self._fail(now, "423 Interval Too Brief without a usable Min-Expires", fatal=True)
            return None
        self._expires = minimum  # the registrar's floor stands for refreshes too
        return self._send(now, unregister=False, answering=False)

    def _on_redirect(self, resp: Response, now: float) -> Request | None:
        self._redirects += 1
        target: SipURI | None = None
        try:
            for na in resp.contacts():
                if isinstance(na.uri, SipURI):
                    target = na.uri.copy()
                    break
        except ParseError:
            target = None
        if target is None or self._redirects > 1:
            self._fail(now, f"{resp.status} {resp.reason} (redirect not followed)", fatal=True)
            return None
        target.user = None  # a registrar is addressed by domain (RFC 3261 §10.2)
        target.headers = None
        self._redirect = (target, uri_peer(target, self.transport))
        # credentials were for the old registrar: let the new one challenge for its realm
        self._auth = None
        return self._send(now, unregister=self._pending_unregister, answering=False)

    def _fail(self, now: float, error: str, *, fatal: bool,
              retry_after: float | None = None) -> None:
        self.last_error = error
        if self._pending_unregister:
            self._set_state("unregistered")
            return
        self.registered_until = None
        self.granted_expires = None
        self._redirect = None  # start again from the configured registrar
        self._set_state("failed")
        delay = self._backoff(fatal)
        if retry_after is not None:
            delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
        self._schedule(now + delay, "retry")
        log.info("registration %s failed (%s), attempt %d, retry in %.0f s",
                 self.name, error, self.attempts, delay)

    def _backoff(self, fatal: bool) -> float:
        if fatal:
            base = self.retry_max
        else:
            n = min(max(self.attempts, 1), 32)
            base = min(self.retry_max, self.retry_min * 2 ** (n - 1))
        return base * (1.0 - JITTER * self._rng())

    def _schedule(self, when: float, kind: str) -> None:
        self._deadline = when
        self._deadline_kind = kind

    def _set_state(self, state: str) -> None:
        if state != self._state:
            log.debug("registration %s: %s -> %s", self.name, self._state, state)
            self._state = state

    def _observe_via(self, resp: Response) -> None:
        """Our address as the registrar saw it (RFC 3581), for NAT detection by the caller."""
        try:
            via = resp.via
        except ParseError:
            return
        received = via.params.get("received")
        rport = via.params.get("rport")
        if received or rport:
            port = int(rport) if rport and rport.isdigit() else (via.port or self.local.port)
            self.public_address = (received or via.host, port)


def _nonneg_int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or not value.isascii() or len(value) > 10:
        return None
    return int(value)


def _retry_after(resp: Response) -> float | None:
    value = resp.get("Retry-After")
    if value is None:
        return None
    # Retry-After: 120 (comment);duration=3600
    return _nonneg_int(value.split(";", 1)[0].split("(", 1)[0])


def _challenge_realm(value: str) -> str | None:
    try:
        return parse_auth_header(value)[1].get("realm")
    except AuthError:
        return None

