"""Outbound registration client against a fake provider registrar (DigestServer + Registrar).

Every message crosses a serialise/parse round trip, as on the wire.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ccswitch.sip.auth import DigestServer, parse_auth_header
from ccswitch.sip.dialog import LocalAddress
from ccswitch.sip.message import Request, Response, make_response, parse_message
from ccswitch.sip.outreg import MAX_CHALLENGES, OutboundRegistration, refresh_delay
from ccswitch.sip.registrar import Registrar
from ccswitch.sip.transaction import Peer

REALM = "provider.example"
USER = "trunk1"
PASSWORD = "Zx9-very-secret-pw"
LOCAL = LocalAddress("udp", "192.0.2.1", 5080)
NOW = 1000.0


def wire_req(req: Request) -> Request:
    msg = parse_message(req.to_bytes())
    assert isinstance(msg, Request)
    return msg


def wire_resp(resp: Response) -> Response:
    msg = parse_message(resp.to_bytes())
    assert isinstance(msg, Response)
    return msg


class FakeProvider:
    """A provider's registrar.  `on_bad_password`: "403" (what ccswitch's own server does),
    "same-nonce" (re-challenge with the nonce just used) or "new-nonce"."""

    def __init__(
        self,
        *,
        password: str = PASSWORD,
        require_auth: bool = True,
        proxy: bool = False,
        nonce_ttl: float = 300.0,
        min_expires: int = 60,
        max_expires: int = 3600,
        on_bad_password: str = "403",
    ) -> None:
        self.users = {USER: password}
        self.require_auth = require_auth
        self.proxy = proxy
        self.auth = DigestServer(REALM, b"k" * 32, nonce_ttl=nonce_ttl)
        self.registrar = Registrar(min_expires=min_expires, max_expires=max_expires)
        self.on_bad_password = on_bad_password
        self.received: list[Request] = []
        self.peer = Peer("udp", "192.0.2.1", 5080)

    def challenge(self, req: Request, now: float, stale: bool = False,
                  nonce: str | None = None) -> Response:
        values = self.auth.challenge(now, stale=stale)
        if nonce is not None:
            values = [v.replace(parse_auth_header(v)[1]["nonce"], nonce) for v in values]
        name = "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"
        return make_response(req, 407 if self.proxy else 401, to_tag="srv",
                             headers=[(name, v) for v in values])

    def handle(self, request: Request, now: float) -> Response:
        req = wire_req(request)
        self.received.append(req)
        # what the transaction layer does on receipt (RFC 3581)
        via = req.via
        via.params["received"] = "203.0.113.7"
        via.params["rport"] = "40123"
        req.set("Via", str(via))
        return wire_resp(self._handle(req, now))

    def _handle(self, req: Request, now: float) -> Response:
        if self.require_auth:
            value = req.get("Proxy-Authorization" if self.proxy else "Authorization")
            if value is None:
                return self.challenge(req, now)
            res = self.auth.verify(value, "REGISTER", now, self.users.get)
            if res.status == "stale":
                return self.challenge(req, now, stale=True)
            if res.denied:
                if self.on_bad_password == "same-nonce":
                    return self.challenge(req, now, nonce=parse_auth_header(value)[1]["nonce"])
                if self.on_bad_password == "new-nonce":
                    return self.challenge(req, now)
                return make_response(req, 403, to_tag="srv")
            if not res.ok:
                return self.challenge(req, now)
        aor = str(req.to.sip_uri)
        return self.registrar.handle(req, aor, self.peer, now)

    def bindings(self, now: float) -> list[str]:
        return [b.contact for b in self.registrar.all(now)]


def make_reg(**kw: Any) -> OutboundRegistration:
    kw.setdefault("local", LOCAL)
    kw.setdefault("rng", lambda: 0.0)
    return OutboundRegistration(USER, REALM, USER, PASSWORD, **kw)


def drive(reg: OutboundRegistration, server: FakeProvider, req: Request | None, now: float,
          limit: int = 20) -> int:
    """Exchange requests and responses until the client has nothing more to send;
    returns how many requests it sent (the bound proves there is no loop)."""
    sent = 0
    while req is not None:
        sent += 1
        assert sent <= limit, "registration client loops"
        req = reg.on_response(server.handle(req, now), now)
    return sent


def auth_params(req: Request, name: str = "Authorization") -> dict[str, str]:
    value = req.get(name)
    assert value is not None, f"no {name} in {req}"
    return parse_auth_header(value)[1]


# ------------------------------------------------------------------ happy paths


def test_challenge_then_registered_with_granted_expiry() -> None:
    server = FakeProvider()
    reg = make_reg()
    assert reg.state == "unregistered" and reg.next_deadline() is None
    first = reg.start(NOW)
    assert reg.state == "registering" and reg.attempts == 1
    assert str(first.uri) == f"sip:{REALM}"
    assert first.get("To") == f"<sip:{USER}@{REALM}>"
    assert first.from_.sip_uri.user == USER and first.from_tag
    assert first.get("Contact") == "<sip:trunk1@192.0.2.1:5080>"
    assert first.get("Expires") == "3600"
    assert first.get("Authorization") is None
    assert reg.peer == Peer("udp", REALM, 5060)

    resp = server.handle(first, NOW)
    assert resp.status == 401
    second = reg.on_response(resp, NOW + 0.1)
    assert second is not None
    assert second.call_id == first.call_id
    assert second.cseq == (first.cseq[0] + 1, "REGISTER")
    assert second.from_tag == first.from_tag
    assert second.via.branch != first.via.branch
    p = auth_params(second)
    assert p["username"] == USER and p["realm"] == REALM and p["uri"] == f"sip:{REALM}"
    assert p["nc"] == "00000001"

    assert reg.on_response(server.handle(second, NOW + 0.2), NOW + 0.2) is None
    assert reg.state == "registered"
    assert reg.last_error is None and reg.attempts == 0
    assert reg.granted_expires == 3600
    # counted from when the authenticated REGISTER was sent, not from the 200
    assert reg.registered_until == NOW + 0.1 + 3600
    assert reg.next_deadline() == pytest.approx(NOW + 0.1 + 3240)
    assert server.bindings(NOW + 1) == ["<sip:trunk1@192.0.2.1:5080>"]
    assert reg.public_address == ("203.0.113.7", 40123)


def test_provider_answering_200_without_challenge() -> None:
    server = FakeProvider(require_auth=False)
    reg = make_reg()
    assert drive(reg, server, reg.start(NOW), NOW) == 1
    assert reg.state == "registered" and reg.granted_expires == 3600
    assert all(r.get("Authorization") is None for r in server.received)


def test_granted_expiry_from_our_contact_param() -> None:
    server = FakeProvider(max_expires=600)
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    assert reg.granted_expires == 600
    assert reg.next_deadline() == pytest.approx(NOW + 540)


def test_granted_expiry_ignores_other_contacts_then_uses_expires_header() -> None:
    reg = make_reg()
    req = reg.start(NOW)
    resp = make_response(req, 200, headers=[
        ("Contact", "<sip:someone-else@198.51.100.9:5060>;expires=30"),
        ("Expires", "120"),
    ])
    assert reg.on_response(wire_resp(resp), NOW) is None
    assert reg.granted_expires == 120
    assert reg.next_deadline() == pytest.approx(NOW + 90)


def test_granted_expiry_defaults_to_requested() -> None:
    reg = make_reg(expires=300)
    req = reg.start(NOW)
    reg.on_response(wire_resp(make_response(req, 200)), NOW)
    assert reg.granted_expires == 300 and reg.next_deadline() == pytest.approx(NOW + 270)


def test_our_contact_with_expires_zero_is_a_failure() -> None:
    reg = make_reg()
    req = reg.start(NOW)
    resp = make_response(req, 200, headers=[("Contact", f"{reg.contact};expires=0")])
    reg.on_response(wire_resp(resp), NOW)
    assert reg.state == "failed" and reg.last_error == "registrar granted no binding"


@pytest.mark.parametrize(("granted", "delay"), [
    (3600, 3240), (600, 540), (300, 270), (120, 90), (60, 30), (20, 10), (1, 0.5),
])
def test_refresh_delay(granted: int, delay: float) -> None:
    assert refresh_delay(granted) == pytest.approx(delay)


def test_407_uses_proxy_authorization() -> None:
    server = FakeProvider(proxy=True)
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    assert reg.state == "registered"
    last = server.received[-1]
    assert last.get("Proxy-Authorization") is not None and last.get("Authorization") is None


def test_tcp_transport_in_uris_and_peer() -> None:
    reg = make_reg(local=LocalAddress("tcp", "192.0.2.1", 5080), transport="tcp")
    req = reg.start(NOW)
    assert str(req.uri) == f"sip:{REALM};transport=tcp"
    assert req.get("Contact") == "<sip:trunk1@192.0.2.1:5080;transport=tcp>"
    assert reg.peer == Peer("tcp", REALM, 5060)


def test_domain_with_port_and_explicit_peer() -> None:
    proxy = Peer("udp", "198.51.100.20", 5060)
    reg = OutboundRegistration("4420", "sip.provider.example:5070", "acct", PASSWORD,
                               local=LOCAL, peer=proxy, contact_user="in")
    req = reg.start(NOW)
    assert str(req.uri) == "sip:sip.provider.example:5070"
    assert req.get("To") == "<sip:4420@sip.provider.example:5070>"
    assert req.get("Contact") == "<sip:in@192.0.2.1:5080>"
    assert reg.peer == proxy


# ------------------------------------------------------------------ refresh and nonces


def test_refresh_reuses_nonce_with_incremented_nc() -> None:
    server = FakeProvider(nonce_ttl=100_000)
    reg = make_reg()
    first = reg.start(NOW)
    drive(reg, server, first, NOW)
    nonce = auth_params(server.received[-1])["nonce"]
    due = reg.next_deadline()
    assert due is not None
    assert reg.handle_deadline(due - 1) is None
    refresh = reg.handle_deadline(due)
    assert refresh is not None
    assert reg.state == "registered"  # the binding is still valid while refreshing
    assert refresh.call_id == first.call_id
    assert refresh.cseq[0] == server.received[-1].cseq[0] + 1
    p = auth_params(refresh)
    assert p["nonce"] == nonce and p["nc"] == "00000002"
    # accepted at once: no extra round trip
    assert drive(reg, server, refresh, due) == 1
    assert reg.state == "registered"
    assert reg.registered_until == pytest.approx(due + 3600)
    assert reg.next_deadline() == pytest.approx(due + 3240)


def test_stale_nonce_on_refresh_reauthenticates() -> None:
    server = FakeProvider(nonce_ttl=300)
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    old_nonce = auth_params(server.received[-1])["nonce"]
    due = reg.next_deadline()
    assert due is not None
    refresh = reg.handle_deadline(due)
    assert refresh is not None
    resp = server.handle(refresh, due)
    assert resp.status == 401
    assert "stale=true" in (resp.get("WWW-Authenticate") or "")
    again = reg.on_response(resp, due)
    assert again is not None
    p = auth_params(again)
    assert p["nonce"] != old_nonce and p["nc"] == "00000001"
    assert drive(reg, server, again, due) == 1
    assert reg.state == "registered" and reg.attempts == 0


def test_stale_challenge_with_same_nonce_is_answered_not_rejected() -> None:
    reg = make_reg(preemptive_auth=False)
    req = reg.start(NOW)
    server = FakeProvider()
    challenge = server.handle(req, NOW)
    answer = reg.on_response(challenge, NOW)
    assert answer is not None
    nonce = auth_params(answer)["nonce"]
    stale = server.challenge(wire_req(answer), NOW, stale=True, nonce=nonce)
    again = reg.on_response(wire_resp(stale), NOW)
    assert again is not None and reg.state == "registering"
    p = auth_params(again)
    assert p["nonce"] == nonce and p["nc"] == "00000002"  # same nonce: nc keeps counting


def test_same_nonce_rechallenge_after_preemptive_credentials_is_answered() -> None:
    # a server that ignores pre-emptive credentials and re-issues its nonce: not a rejection
    server = FakeProvider(nonce_ttl=100_000)
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    nonce = auth_params(server.received[-1])["nonce"]
    due = reg.next_deadline()
    assert due is not None
    refresh = reg.handle_deadline(due)
    assert refresh is not None
    resp = wire_resp(server.challenge(wire_req(refresh), due, nonce=nonce))
    answer = reg.on_response(resp, due)
    assert answer is not None
    assert auth_params(answer)["nc"] == "00000003"
    assert drive(reg, server, answer, due) == 1 and reg.state == "registered"


def test_refresh_without_preemptive_auth_takes_a_challenge() -> None:
    server = FakeProvider()
    reg = make_reg(preemptive_auth=False)
    drive(reg, server, reg.start(NOW), NOW)
    due = reg.next_deadline()
    assert due is not None
    refresh = reg.handle_deadline(due)
    assert refresh is not None and refresh.get("Authorization") is None
    assert drive(reg, server, refresh, due) == 2
    assert reg.state == "registered"


# ------------------------------------------------------------------ wrong credentials


def test_wrong_password_403_fails_and_backs_off_to_retry_max() -> None:
    server = FakeProvider(password="the-real-one")
    reg = make_reg(retry_min=5, retry_max=300)
    assert drive(reg, server, reg.start(NOW), NOW) == 2
    assert reg.state == "failed" and reg.last_error == "403 Forbidden"
    assert reg.registered_until is None
    # not worth a quick retry: a provider's fail2ban would ban us
    assert reg.next_deadline() == pytest.approx(NOW + 300)


def test_wrong_password_same_nonce_rechallenge_is_authentication_rejected() -> None:
    server = FakeProvider(password="the-real-one", on_bad_password="same-nonce")
    reg = make_reg()
    assert drive(reg, server, reg.start(NOW), NOW) == 2
    assert reg.state == "failed" and reg.last_error == "authentication rejected"
    assert reg.next_deadline() == pytest.approx(NOW + 300)


def test_wrong_password_rotating_nonces_is_bounded() -> None:
    server = FakeProvider(password="the-real-one", on_bad_password="new-nonce")
    reg = make_reg()
    sent = drive(reg, server, reg.start(NOW), NOW)
    assert sent == MAX_CHALLENGES + 1
    assert reg.state == "failed" and reg.last_error == "authentication rejected"
    # the retry starts a new attempt with the same bound
    due = reg.next_deadline()
    assert due is not None
    retry = reg.handle_deadline(due)
    assert reg.state == "retrying" and reg.attempts == 2
    assert drive(reg, server, retry, due) <= MAX_CHALLENGES + 1
    assert reg.state == "failed"


def test_realm_restriction_refuses_other_realms() -> None:
    server = FakeProvider()
    reg = make_reg(realm="someone-else.example")
    assert drive(reg, server, reg.start(NOW), NOW) == 1
    assert reg.state == "failed"
    assert reg.last_error == "401: no challenge for realm 'someone-else.example'"
    assert all(r.get("Authorization") is None for r in server.received)


def test_password_never_logged_nor_in_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server = FakeProvider(password="the-real-one")
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    assert reg.state == "failed"
    assert caplog.records  # the failure was logged...
    assert PASSWORD not in caplog.text  # ...without the password
    assert PASSWORD not in repr(reg)
    assert all(PASSWORD not in bytes(r).decode() for r in server.received)


# ------------------------------------------------------------------ 423, 3xx, 5xx


def test_423_retries_with_min_expires_and_keeps_it() -> None:
    server = FakeProvider(min_expires=600)
    reg = make_reg(expires=60)
    drive(reg, server, reg.start(NOW), NOW)
    assert reg.state == "registered"
    statuses = [r.get("Expires") for r in server.received]
    assert statuses[0] == "60" and statuses[-1] == "600"
    assert reg.expires == 600 and reg.granted_expires == 600
    due = reg.next_deadline()
    assert due is not None
    refresh = reg.handle_deadline(due)
    assert refresh is not None and refresh.get("Expires") == "600"


@pytest.mark.parametrize("min_expires", [None, "30", "junk"])
def test_423_without_usable_min_expires_fails(min_expires: str | None) -> None:
    reg = make_reg(expires=60)
    req = reg.start(NOW)
    hs = [("Min-Expires", min_expires)] if min_expires is not None else []
    assert reg.on_response(wire_resp(make_response(req, 423, headers=hs)), NOW) is None
    assert reg.state == "failed" and reg.last_error is not None
    assert "423" in reg.last_error


def test_redirect_followed_once_then_back_to_configured_registrar() -> None:
    reg = make_reg()
    req = reg.start(NOW)
    moved = make_response(req, 302, headers=[("Contact", "<sip:x@reg2.example:5070>")])
    follow = reg.on_response(wire_resp(moved), NOW)
    assert follow is not None
    assert str(follow.uri) == "sip:reg2.example:5070"
    assert follow.call_id == req.call_id and follow.cseq[0] == req.cseq[0] + 1
    assert reg.peer == Peer("udp", "reg2.example", 5070)
    again = make_response(follow, 302, headers=[("Contact", "<sip:reg3.example>")])
    assert reg.on_response(wire_resp(again), NOW) is None
    assert reg.state == "failed" and "redirect" in (reg.last_error or "")
    assert reg.peer == Peer("udp", REALM, 5060)
    due = reg.next_deadline()
    assert due is not None
    retry = reg.handle_deadline(due)
    assert retry is not None and str(retry.uri) == f"sip:{REALM}"


def test_refreshes_stay_at_the_redirected_registrar() -> None:
    server = FakeProvider()
    reg = make_reg()
    req = reg.start(NOW)
    moved = make_response(req, 301, headers=[("Contact", "<sip:reg2.example>")])
    follow = reg.on_response(wire_resp(moved), NOW)
    drive(reg, server, follow, NOW)
    assert reg.state == "registered"
    due = reg.next_deadline()
    assert due is not None
    refresh = reg.handle_deadline(due)
    assert refresh is not None and str(refresh.uri) == "sip:reg2.example"
    assert reg.peer == Peer("udp", "reg2.example", 5060)


def test_503_retry_after_is_a_floor() -> None:
    reg = make_reg()
    req = reg.start(NOW)
    resp = make_response(req, 503, headers=[("Retry-After", "120 (maintenance)")])
    reg.on_response(wire_resp(resp), NOW)
    assert reg.state == "failed" and reg.last_error == "503 Service Unavailable"
    assert reg.next_deadline() == pytest.approx(NOW + 120)


def test_5xx_is_transient() -> None:
    reg = make_reg()
    req = reg.start(NOW)
    reg.on_response(wire_resp(make_response(req, 500)), NOW)
    assert reg.next_deadline() == pytest.approx(NOW + 5)


# ------------------------------------------------------------------ timeouts, back-off


def test_server_down_backoff_sequence_bounded_by_retry_max() -> None:
    reg = make_reg(retry_min=5, retry_max=300)
    now = NOW
    req: Request | None = reg.start(now)
    delays = []
    for attempt in range(1, 11):
        assert req is not None and reg.attempts == attempt
        now += 32  # timer F
        reg.on_timeout(now)
        assert reg.state == "failed" and reg.last_error == "timeout"
        due = reg.next_deadline()
        assert due is not None
        delays.append(due - now)
        assert reg.handle_deadline(due - 0.01) is None
        now = due
        req = reg.handle_deadline(now)
        assert reg.state == "retrying"
    assert delays == pytest.approx([5, 10, 20, 40, 80, 160, 300, 300, 300, 300])


def test_backoff_jitter_stays_within_bounds() -> None:
    values = iter([0.999, 0.5, 0.0, 0.999, 0.999, 0.999, 0.999, 0.999])
    reg = make_reg(retry_min=5, retry_max=60, rng=lambda: next(values))
    now = NOW
    reg.start(now)
    delays = []
    for _ in range(6):
        reg.on_timeout(now)
        due = reg.next_deadline()
        assert due is not None
        delays.append(due - now)
        now = due
        reg.handle_deadline(now)
    bases = [5, 10, 20, 40, 60, 60]
    for d, base in zip(delays, bases, strict=True):
        assert 0.75 * base <= d <= base <= 60
    assert delays[0] == pytest.approx(5 * (1 - 0.25 * 0.999))
    assert delays[2] == pytest.approx(20)


def test_recovery_after_server_comes_back() -> None:
    server = FakeProvider()
    reg = make_reg()
    reg.start(NOW)
    reg.on_timeout(NOW + 32, reason="transport error: connection refused")
    assert reg.last_error == "transport error: connection refused"
    due = reg.next_deadline()
    assert due is not None
    drive(reg, server, reg.handle_deadline(due), due)
    assert reg.state == "registered" and reg.attempts == 0 and reg.last_error is None


def test_refresh_timeout_fails_then_retries() -> None:
    server = FakeProvider(nonce_ttl=100_000)
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    due = reg.next_deadline()
    assert due is not None
    reg.handle_deadline(due)
    reg.on_timeout(due + 32)
    assert reg.state == "failed" and reg.registered_until is None
    assert reg.next_deadline() == pytest.approx(due + 32 + 5)  # first failure: retry_min


def test_timeout_of_superseded_request_is_ignored() -> None:
    reg = make_reg()
    old = reg.start(NOW)
    reg.unregister(NOW + 1)
    reg.on_timeout(NOW + 33, request=old)
    assert reg.in_flight and reg.state == "unregistered"


def test_stray_and_provisional_responses_are_ignored() -> None:
    reg = make_reg()
    old = reg.start(NOW)
    new = reg.start(NOW + 1)  # restart: a new CSeq
    assert reg.on_response(wire_resp(make_response(old, 200)), NOW + 1) is None
    assert reg.state == "registering"
    assert reg.on_response(wire_resp(make_response(new, 100)), NOW + 1) is None
    assert reg.state == "registering" and reg.in_flight
    other = make_response(new, 200)
    other.set("Call-ID", "someone-else@x")
    assert reg.on_response(wire_resp(other), NOW + 1) is None
    assert reg.state == "registering"
    # nothing pending: a late response changes nothing
    reg.on_response(wire_resp(make_response(new, 200)), NOW + 1)
    assert reg.state == "registered"
    assert reg.on_response(wire_resp(make_response(new, 500)), NOW + 2) is None
    assert reg.state == "registered"


# ------------------------------------------------------------------ unregister


def test_unregister_removes_binding_and_stops_timers() -> None:
    server = FakeProvider(nonce_ttl=100_000)
    reg = make_reg()
    drive(reg, server, reg.start(NOW), NOW)
    assert server.bindings(NOW + 1)
    bye = reg.unregister(NOW + 10)
    assert bye.get("Expires") == "0"
    assert bye.get("Contact") == reg.contact  # ours only, never '*'
    assert bye.call_id == server.received[-1].call_id
    assert reg.state == "unregistered" and reg.next_deadline() is None
    assert drive(reg, server, bye, NOW + 10) == 1  # pre-emptive credentials accepted
    assert server.bindings(NOW + 11) == []
    assert reg.state == "unregistered" and not reg.in_flight
    assert reg.registered_until is None and reg.next_deadline() is None


def test_unregister_answers_a_challenge() -> None:
    server = FakeProvider()
    reg = make_reg(preemptive_auth=False)
    drive(reg, server, reg.start(NOW), NOW)
    bye = reg.unregister(NOW + 10)
    assert drive(reg, server, bye, NOW + 10) == 2
    assert server.received[-1].get("Expires") == "0"
    assert server.bindings(NOW + 11) == [] and reg.state == "unregistered"


def test_unregister_failure_does_not_retry() -> None:
    reg = make_reg()
    bye = reg.unregister(NOW)
    reg.on_response(wire_resp(make_response(bye, 503)), NOW)
    assert reg.state == "unregistered" and reg.next_deadline() is None
    assert reg.last_error == "503 Service Unavailable"
    bye = reg.unregister(NOW + 1)
    reg.on_timeout(NOW + 33)
    assert reg.state == "unregistered" and reg.next_deadline() is None


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("kw", [
    {"expires": 0}, {"retry_min": 0}, {"retry_min": 10, "retry_max": 5},
])
def test_bad_parameters(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_reg(**kw)


def test_bad_domain() -> None:
    with pytest.raises(ValueError, match="bad registrar domain"):
        OutboundRegistration(USER, "bad domain:99999", USER, PASSWORD, local=LOCAL)
