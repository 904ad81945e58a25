"""Trunk decisions without sockets: config sections, inbound recognition and DIDs,
failover policy, caller ID towards a provider, the challenged INVITE retry, the
registration driver over a fake UA, status and authorisation for calls out."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

import pytest

from ccswitch.apps.trunks import (
    TRUNK_REGISTRATION,
    TrunkManager,
    address_rules,
    caller_identity,
    default_contact_user,
    did_of,
    match_source,
    should_failover,
)
from ccswitch.call.sipua import MAX_INVITE_CHALLENGES, SipChannel, authorized_retry
from ccswitch.config import Config, ConfigError, TrunkConfig, load_config_text
from ccswitch.sip.auth import DigestServer, parse_auth_header
from ccswitch.sip.dialog import LocalAddress, build_request
from ccswitch.sip.message import Request, Response, make_response, parse_message
from ccswitch.sip.transaction import Peer
from ccswitch.sip.uri import SipURI

BASE = """
extensions:
  - {number: 1001, password: secret1001, name: Alice, caller_id: +15551230001}
  - {number: 1002, password: secret1002}
  - {number: 1003, password: secret1003}
"""

TRUNKS = BASE + """
trunks:
  prov:
    host: 192.0.2.10
    port: 5070
    register: true
    username: acct77
    password: Pw-secret-77
  peer:
    host: 198.51.100.5
    allowed_addresses: [198.51.100.5, 203.0.113.0/28, "127.0.0.1:5099", "[2001:db8::7]:5060"]
    did_source: to
    max_calls: 1
  off:
    host: 198.51.100.9
    enabled: false
    allowed_addresses: [198.51.100.9]
outbound_routes:
  - {name: emergency, patterns: [911], trunks: [prov], emergency: true}
  - {name: national, patterns: [_9NXXNXXXXXX], strip: 1, prepend: +1, trunks: [prov, peer],
     extensions: ["_100[12]"]}
dids:
  - {number: +15551230100, extension: 1002}
  - {number: _+1555123XXXX, extension: 1001, trunks: [peer]}
"""


def load(text: str) -> Config:
    return load_config_text(textwrap.dedent(text), "config.yaml")


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return str(info.value).splitlines()


# ---------------------------------------------------------------- configuration


def test_trunk_sections_load_with_numbers_kept_as_typed() -> None:
    cfg = load(TRUNKS + "\n  - {number: 0101, flow: main}\n")
    assert set(cfg.trunks) == {"prov", "peer", "off"}
    prov = cfg.trunks["prov"]
    assert (prov.port, prov.transport, prov.expires, prov.codecs) == (5070, "udp", 3600,
                                                                      ["PCMU", "PCMA"])
    assert "Pw-secret-77" not in repr(prov)  # never printed
    assert cfg.outbound_routes[1].prepend == "+1"
    assert cfg.outbound_routes[0].patterns == ["911"]  # an unquoted YAML integer
    assert cfg.extension("1001") is not None and cfg.extension("1001").caller_id == \
        "+15551230001"
    assert [d.number for d in cfg.dids] == ["+15551230100", "_+1555123XXXX", "0101"]
    assert cfg.dids[0].target() == ("extension", "1002")
    # exact DIDs are dialled internally too: they take part in the clash check
    assert ("+15551230100", "DID") in [(n, k) for n, k, _ in cfg.dialable_numbers()]
    assert "_+1555123XXXX" not in [n for n, _, _ in cfg.dialable_numbers()]


def test_trunk_config_errors_name_file_and_line() -> None:
    lines = errors(BASE + """
trunks:
  p1:
    host: 192.0.2.10
    register: true
    allowed_addresses: [10.0.0.0/33, "10.0.0.1:0", 10.0.0.0/8]
    retry_min: 60
    retry_max: 5
  "bad name!":
    host: not_a_host!
outbound_routes:
  - {name: r, patterns: [_9X.], strip: 5, trunks: [p2]}
  - {name: r, patterns: ["re:("], trunks: [p1]}
dids:
  - {number: 1001, extension: 1002}
  - {number: +15550001, queue: nosuch}
  - {number: +15550002, flow: a, extension: 1001}
  - {number: +15550003, conference: "800"}
  - {number: +15550004, extension: 1009, trunks: [p9]}
""")
    text = "\n".join(lines)
    assert "config.yaml:10: trunks.p1.register: a registering trunk needs username and " \
           "password" in text
    assert "'10.0.0.0/33' is not an IP address" in text
    assert "'10.0.0.1:0' is not an IP address" in text
    assert "10.0.0.0/8'" not in text  # a network is fine
    assert "config.yaml:13: trunks.p1.retry_max: must be at least retry_min (60)" in text
    assert "trunk name 'bad name!'" in text
    assert "'not_a_host!' is not an IP address or host name" in text
    assert "config.yaml:17: outbound_routes[0].trunks: route 'r': no trunk named 'p2'" in text
    assert "strip 5 is longer than the shortest number pattern '_9X.' matches (3)" in text
    assert "invalid regular expression" in text
    assert "duplicate outbound route name 'r'" in text
    assert "config.yaml:20: dids[0].number: number '1001' is already used by the " \
           "extension at line 3" in text
    assert "no queue named 'nosuch'" in text
    assert "give exactly one of flow, queue, extension, conference" in text
    assert "no conference '800'" in text
    assert "no extension 1009" in text and "no trunk named 'p9'" in text


def test_did_equal_to_its_own_extension_is_not_a_clash() -> None:
    cfg = load(BASE + "dids:\n  - {number: 1001, extension: 1001}\n")
    assert cfg.dids[0].target() == ("extension", "1001")


def test_demo_config_has_no_trunk_but_a_valid_commented_example() -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config.yaml"
    text = path.read_text()
    cfg = load_config_text(text, str(path))
    assert cfg.trunks == {} and cfg.dids == [] and cfg.outbound_routes == []
    # uncomment the example block (the lines between its markers) and it loads
    start = text.index("# trunks:")
    end = text.index("# (end of the trunk example)")
    block = "\n".join(line.replace("# ", "", 1) if line.startswith("# ") else line
                      for line in text[start:end].splitlines())
    cfg = load_config_text(text[:start] + block + "\n" + text[end:], str(path))
    assert set(cfg.trunks) >= {"provider"}
    assert cfg.trunks["provider"].register
    assert cfg.outbound_routes and cfg.dids


# ---------------------------------------------------------------- pure helpers


def test_default_contact_user_is_secret_stable_and_per_trunk() -> None:
    a = default_contact_user("prov", "acct77", "Pw-secret-77")
    assert a == default_contact_user("prov", "acct77", "Pw-secret-77")
    assert a.startswith("acct77-") and len(a) == len("acct77-") + 10
    assert a != default_contact_user("prov", "acct77", "other-password")
    assert a != default_contact_user("prov2", "acct77", "Pw-secret-77")


@pytest.mark.parametrize("host,port,ok", [
    ("198.51.100.5", 5060, True),       # exact IP, any port
    ("198.51.100.5", 40000, True),
    ("203.0.113.14", 5060, True),       # inside the /28
    ("203.0.113.16", 5060, False),      # just outside
    ("127.0.0.1", 5099, True),          # IP:port
    ("127.0.0.1", 5098, False),         # same IP, another port: not the provider
    ("2001:db8::7", 5060, True),
    ("2001:db8::7", 5061, False),
    ("::ffff:198.51.100.5", 5060, True),  # v4-mapped source on a dual-stack socket
    ("not-an-ip", 5060, False),
])
def test_match_source(host: str, port: int, ok: bool) -> None:
    rules = address_rules(["198.51.100.5", "203.0.113.0/28", "127.0.0.1:5099",
                           "[2001:db8::7]:5060"])
    assert match_source(rules, host, port) is ok


def _invite(ruri: str, to: str = "<sip:+15551230100@ccswitch.example>",
            extra: list[tuple[str, str]] | None = None) -> Request:
    uri = SipURI.parse(ruri)
    req = build_request("INVITE", uri, local=LocalAddress("udp", "192.0.2.10", 5070),
                        from_='"Bob" <sip:+15559876543@provider.example>', to=to,
                        headers=extra or [])
    msg = parse_message(req.to_bytes())
    assert isinstance(msg, Request)
    return msg


def test_did_of_request_uri_to_and_auto() -> None:
    line = "acct77-0123456789"
    by_line = _invite(f"sip:{line}@192.0.2.1")
    direct = _invite("sip:15551230101@192.0.2.1", to="<sip:anything@x>")
    assert did_of(by_line, "auto", line, "acct77") == "+15551230100"  # To: ours is Contact
    assert did_of(_invite("sip:acct77@192.0.2.1"), "auto", line, "acct77") == "+15551230100"
    assert did_of(direct, "auto", line, "acct77") == "15551230101"
    assert did_of(direct, "request_uri", line) == "15551230101"
    assert did_of(direct, "to", line) == "anything"


@pytest.mark.parametrize("status,next_trunk", [
    (500, True), (502, True), (503, True), (504, True), (408, True),
    (404, False), (486, False), (403, False), (480, False), (484, False), (603, False),
])
def test_failover_policy(status: int, next_trunk: bool) -> None:
    assert should_failover(status) is next_trunk


def _tcfg(**kw: Any) -> TrunkConfig:
    kw.setdefault("host", "sip.provider.example")
    return TrunkConfig(**kw)


def test_caller_identity_towards_the_provider() -> None:
    c = caller_identity(_tcfg(), "+15551230001", "Alice")
    assert c.from_ == '"Alice" <sip:+15551230001@sip.provider.example>'
    assert c.headers == (("P-Asserted-Identity",
                          '"Alice" <sip:+15551230001@sip.provider.example>'),)
    # account name in From (providers that authorise on it), the number asserted
    c = caller_identity(_tcfg(from_user="acct77", from_domain="voip.example"), "+1555", None)
    assert c.from_ == "<sip:acct77@voip.example>"
    assert c.headers == (("P-Asserted-Identity", "<sip:+1555@voip.example>"),)
    # presentation restricted: anonymous From, identity only to the provider
    c = caller_identity(_tcfg(privacy=True), "+1555", "Alice")
    assert "anonymous" in c.from_ and ("Privacy", "id") in c.headers
    # no number: the trunk's default; a bad one: the account, nothing asserted
    c = caller_identity(_tcfg(caller_id="+15550000000", caller_id_name="Example"), None,
                        None)
    assert c.from_ == '"Example" <sip:+15550000000@sip.provider.example>'
    c = caller_identity(_tcfg(username="acct77", p_asserted_identity=False), "not a number",
                        None)
    assert (c.from_, c.headers, c.number) == ("<sip:acct77@sip.provider.example>", (), "")


# ---------------------------------------------------------------- the challenged INVITE


def _our_invite() -> Request:
    req = build_request(
        "INVITE", SipURI.parse("sip:+15552345678@sip.provider.example"),
        local=LocalAddress("udp", "192.0.2.1", 5060), from_="<sip:+15551230001@x>",
        to="<sip:+15552345678@sip.provider.example>", contact="<sip:c@192.0.2.1>",
        body=b"v=0\r\n", content_type="application/sdp")
    return req


def _challenge(req: Request, srv: DigestServer, status: int = 401, stale: bool = False,
               nonce_of: str | None = None) -> Response:
    values = srv.challenge(1000.0, stale=stale)
    if nonce_of is not None:  # re-challenge with the nonce just answered
        old = parse_auth_header(values[0])[1]["nonce"]
        values = [v.replace(old, nonce_of) for v in values]
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    resp = make_response(req, status, to_tag="prov", headers=[(name, v) for v in values])
    msg = parse_message(resp.to_bytes())
    assert isinstance(msg, Response)
    return msg


def test_authorized_retry_keeps_the_dialog_and_answers_the_challenge() -> None:
    srv = DigestServer("provider.example", b"s" * 32)
    inv = _our_invite()
    retry = authorized_retry(inv, _challenge(inv, srv), "acct77", "pw", None,
                             "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnew;rport")
    assert retry is not None
    assert retry.call_id == inv.call_id and retry.from_tag == inv.from_tag
    assert retry.cseq == (inv.cseq[0] + 1, "INVITE")
    assert retry.via.branch == "z9hG4bKnew" != inv.via.branch
    assert retry.body == inv.body and str(retry.uri) == str(inv.uri)
    header = retry.get("Authorization")
    assert header is not None
    res = srv.verify(header, "INVITE", 1000.5, {"acct77": "pw"}.get)
    assert res.ok, res
    # 407 -> Proxy-Authorization
    proxy = authorized_retry(inv, _challenge(inv, srv, 407), "acct77", "pw", None, "v")
    assert proxy is not None and proxy.get("Proxy-Authorization") is not None
    assert proxy.get("Authorization") is None


def test_authorized_retry_gives_up_on_rejection_realm_and_loops() -> None:
    srv = DigestServer("provider.example", b"s" * 32)
    inv = _our_invite()
    via = "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK2;rport"
    retry = authorized_retry(inv, _challenge(inv, srv), "acct77", "pw", None, via)
    assert retry is not None
    nonce = parse_auth_header(retry.get("Authorization") or "")[1]["nonce"]
    # the same nonce again without stale: the credentials are wrong
    assert authorized_retry(retry, _challenge(retry, srv, nonce_of=nonce), "acct77", "pw",
                            None, via, tries=2) is None
    # stale=true: answer again
    assert authorized_retry(retry, _challenge(retry, srv, stale=True, nonce_of=nonce),
                            "acct77", "pw", None, via, tries=2) is not None
    # a realm we do not hold credentials for
    assert authorized_retry(inv, _challenge(inv, srv), "acct77", "pw", "other.example",
                            via) is None
    # a provider that keeps challenging with new nonces
    assert authorized_retry(inv, _challenge(inv, srv), "acct77", "pw", None, via,
                            tries=MAX_INVITE_CHALLENGES + 1) is None


# ---------------------------------------------------------------- the manager (fake UA)


@dataclass
class FakeBus:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def publish(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


@dataclass
class FakeManager:
    bus: FakeBus = field(default_factory=FakeBus)


@dataclass
class FakeTxn:
    request: Request


class FakeUA:
    """What TrunkManager uses of SipUA: requests go to `sent` instead of the network."""

    def __init__(self, extensions: dict[str, Any]) -> None:
        self.extensions = extensions
        self.sent: list[tuple[Request, Peer, Any]] = []
        self.loop = None  # no timers: deadlines are read from the registration
        self.t = 1000.0
        self.listen = {("udp", 2): 5060}

    def now(self) -> float:
        return self.t

    def send_request(self, req: Request, peer: Peer, user: Any = None) -> FakeTxn:
        msg = parse_message(req.to_bytes())
        assert isinstance(msg, Request)
        self.sent.append((msg, peer, user))
        return FakeTxn(msg)

    def local_address(self, peer: Peer) -> LocalAddress:
        return LocalAddress(peer.transport, "192.0.2.1", 5060)

    def _pump(self) -> None:
        pass


def manager(text: str = TRUNKS) -> tuple[TrunkManager, FakeUA, FakeManager]:
    cfg = load(text)
    ua = FakeUA({e.number: e for e in cfg.extensions})
    fm = FakeManager()
    mgr = TrunkManager(ua, fm, cfg)  # type: ignore[arg-type]
    for name, tcfg in cfg.trunks.items():
        mgr.trunks[name] = mgr._build(name, tcfg)
    return mgr, ua, fm


def test_lookup_recognises_by_source_or_registered_contact_only() -> None:
    mgr, _, _ = manager()
    line = mgr.trunks["prov"].contact_user
    assert line == default_contact_user("prov", "acct77", "Pw-secret-77")
    # by our Contact user, from any address: the provider's registration
    found = mgr.lookup(_invite(f"sip:{line}@192.0.2.1"), Peer("udp", "192.0.2.99", 5060))
    assert found is not None and found[0].name == "prov" and found[1] == "+15551230100"
    assert found[0].username == "acct77" and found[0].password == "Pw-secret-77"
    # by source address (did_source: to)
    found = mgr.lookup(_invite("sip:whatever@192.0.2.1"), Peer("udp", "203.0.113.3", 5060))
    assert found is not None and found[0].name == "peer" and found[1] == "+15551230100"
    # neither: the account name alone, a disabled trunk's address, a stranger
    for ruri, host in (("sip:acct77@192.0.2.1", "192.0.2.99"),
                       ("sip:+15551230100@192.0.2.1", "198.51.100.9"),
                       (f"sip:{line}x@192.0.2.1", "192.0.2.99")):
        assert mgr.lookup(_invite(ruri), Peer("udp", host, 5060)) is None, (ruri, host)


def test_dids_per_trunk_and_normalised() -> None:
    mgr, _, _ = manager()
    assert mgr.match_did("+15551230100", "prov").target == "1002"  # type: ignore[union-attr]
    assert mgr.match_did("15551230100", "prov").target == "1002"  # type: ignore[union-attr]
    assert mgr.match_did("+15551230177", "peer").target == "1001"  # type: ignore[union-attr]
    assert mgr.match_did("+15551230177", "prov") is None  # the pattern is peer's only
    assert mgr.match_did("+15559999999", "peer") is None
    assert mgr.local_did("+15551230100") is not None
    assert mgr.local_did("_+1555123XXXX") is None


def test_routes_and_who_may_dial_out() -> None:
    mgr, ua, _ = manager()
    route, number = mgr.select("95552345678", "1001") or (None, "")
    assert route is not None and route.name == "national" and number == "+15552345678"
    assert mgr.select("95552345678", "1003") is None  # not in the route's list
    assert mgr.matches_any_route("95552345678")  # so: 403, not 404
    assert mgr.select("911", "1003") is not None  # emergency: open to everyone
    assert mgr.select("12", "1001") is None and not mgr.matches_any_route("12")

    def chan(ext: str | None, trunk: bool = False, **vars: Any) -> SipChannel:
        ch = SipChannel.__new__(SipChannel)  # only the identity fields matter here
        ch.ext = ua.extensions.get(ext) if ext else None
        ch.trunk = mgr.trunks["peer"].info if trunk else None
        ch.vars = dict(vars)
        return ch

    assert mgr.authorising_extension(chan("1001")) == "1001"
    assert mgr.authorising_extension(chan(None, trunk=True)) is None  # a provider's call
    # transferred: the transferring extension's permissions, never a trunk's
    assert mgr.authorising_extension(chan(None, trunk=True, transferred_by="1002")) == "1002"
    assert mgr.authorising_extension(chan("1001", transferred_by="peer")) is None


def test_registration_driver_challenge_state_events_timeout_and_unregister() -> None:
    mgr, ua, fm = manager()
    t = mgr.trunks["prov"]
    t.peer = Peer("udp", "192.0.2.10", 5070)
    mgr._start_registration(t)
    assert t.reg is not None and t.driver is not None
    first, peer, user = ua.sent[-1]
    assert peer == t.peer and user is t.driver
    assert str(first.uri) == "sip:192.0.2.10:5070" and first.get("Expires") == "3600"
    assert f"<sip:{t.contact_user}@192.0.2.1:5060>" == first.get("Contact")
    provider = DigestServer("provider.example", b"p" * 32)
    t.driver(_challenge(first, provider), FakeTxn(first))  # type: ignore[arg-type]
    second = ua.sent[-1][0]
    assert provider.verify(second.get("Authorization") or "", "REGISTER", 1000.0,
                           {"acct77": "Pw-secret-77"}.get).ok
    ok = make_response(second, 200, to_tag="r", headers=[("Expires", "120")])
    t.driver(ok, FakeTxn(second))  # type: ignore[arg-type]
    assert t.reg.state == "registered"
    assert (TRUNK_REGISTRATION, {"trunk": "prov", "state": "registered", "error": None}) \
        in fm.bus.events
    row = next(r for r in mgr.status() if r["name"] == "prov")
    assert row["state"] == "registered" and row["registration"]["expires_in"] == 120
    assert row["registration"]["next_attempt_in"] == 90  # refreshed 30 s before expiry
    # the refresh times out: failed, with the reason, and a retry scheduled
    ua.t = 1090.0
    t.driver._fire()
    refresh = ua.sent[-1][0]
    assert refresh.get("Authorization") is not None  # pre-emptive, cached challenge
    t.driver.on_txn_timeout(FakeTxn(refresh))  # type: ignore[arg-type]
    row = next(r for r in mgr.status() if r["name"] == "prov")
    assert row["state"] == "failed"
    assert row["last_error"] == "timeout (no response from the registrar)"
    assert 0 < row["registration"]["next_attempt_in"] <= 5
    # stopping un-registers: Expires 0, then nothing more is scheduled
    ua.t = 1096.0
    t.driver._fire()  # the retry
    assert ua.sent[-1][0].cseq[0] == refresh.cseq[0] + 1 and t.reg.state == "retrying"
    mgr.stop()
    last = ua.sent[-1][0]
    assert last.get("Expires") == "0" and t.driver.timer is None


def test_status_rows_and_limits() -> None:
    mgr, _, _ = manager()
    rows = {r["name"]: r for r in mgr.status()}
    assert rows["off"]["state"] == "disabled"
    assert rows["peer"]["mode"] == "ip" and rows["peer"]["state"] == "ip"
    assert rows["prov"]["mode"] == "register" and rows["prov"]["registration"] is None
    peer = mgr.trunks["peer"]
    assert not peer.full
    peer.active.add("x")
    assert peer.full  # max_calls: 1
    assert {"active_calls", "max_calls", "calls_in", "calls_out", "calls_failed",
            "last_error"} <= set(rows["peer"])


def test_trunk_named_like_an_extension_is_refused() -> None:
    lines = errors(BASE + "trunks:\n  '1001': {host: 192.0.2.1}\n")
    assert any("trunk name '1001' is an extension number" in x for x in lines), lines


def test_external_address_per_trunk_in_via_contact_and_sdp() -> None:
    from ccswitch.call.sipua import SipUA

    mgr, _, _ = manager(TRUNKS.replace("    max_calls: 1\n",
                                       "    max_calls: 1\n    external_address: 198.51.100.77\n")
                        .replace("    password: Pw-secret-77\n",
                                 "    password: Pw-secret-77\n"
                                 "    external_address: pbx.example.com\n"))
    mgr.trunks["prov"].peer = Peer("udp", "192.0.2.10", 5070)
    mgr._rebuild_addresses()
    assert mgr.address_for("192.0.2.10") == "pbx.example.com"  # the resolved provider
    assert mgr.address_for("203.0.113.9") == "198.51.100.77"  # inside allowed_addresses
    assert mgr.address_for("2001:db8::7") == "198.51.100.77"
    assert mgr.address_for("192.0.2.99") is None  # anyone else: the usual address
    ua = SipUA(manager=None, engine=None, realm="r", server_name="s",  # type: ignore[arg-type]
               extensions={}, on_inbound_call=None)  # type: ignore[arg-type]
    ua.listen_host[("udp", 2)] = "192.0.2.1"
    ua.listen[("udp", 2)] = 5060
    ua.address_for = mgr.address_for
    provider = Peer("udp", "192.0.2.10", 5070)
    assert ua.local_address(provider).host == "pbx.example.com"  # Via / Contact
    assert ua.media_ip_for("192.0.2.10") == "pbx.example.com"  # SDP c=
    assert ua.local_ip_for("192.0.2.99") == "192.0.2.1"
    assert ua.media_ip_for("192.0.2.99") == "192.0.2.1"


async def test_reload_restarts_only_changed_trunks_and_keeps_counters() -> None:
    mgr, ua, _ = manager()
    await mgr.start()  # IP hosts: registrations go out at once
    prov = mgr.trunks["prov"]
    peer = mgr.trunks["peer"]
    assert prov.reg is not None and prov.reg.state == "registering"
    assert ua.sent[-1][0].get("Expires") == "3600"
    peer.calls_in = 3
    before = len(ua.sent)
    # same trunks: nothing restarts, nothing is sent
    await mgr.reload(load(TRUNKS))
    assert mgr.trunks["prov"] is prov and mgr.trunks["peer"] is peer and len(ua.sent) == before
    # a new password for prov, a new limit for peer, a new route
    text = TRUNKS.replace("Pw-secret-77", "Pw-new-88").replace("max_calls: 1", "max_calls: 2")
    text = text.replace("dids:", "  - {name: intl, patterns: [\"_+X.\"], trunks: [peer]}\n"
                        "dids:")
    await mgr.reload(load(text))
    sent = [r for r, _, _ in ua.sent[before:]]
    assert [r.get("Expires") for r in sent] == ["0", "3600"]  # un-REGISTER, REGISTER
    assert prov.driver is not None and prov.driver.stopped
    assert mgr.trunks["prov"] is not prov
    assert mgr.trunks["prov"].contact_user == default_contact_user("prov", "acct77",
                                                                   "Pw-new-88")
    assert mgr.trunks["peer"].cfg.max_calls == 2 and mgr.trunks["peer"].calls_in == 3
    assert mgr.select("+4420", None) is not None  # the new route is in force
    # a provider still using the old Contact is no longer recognised
    old_line = _invite(f"sip:{prov.contact_user}@192.0.2.1")
    assert mgr.lookup(old_line, Peer("udp", "192.0.2.99", 5060)) is None
    mgr.stop()
