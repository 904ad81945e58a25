"""SipURI, parse_any_uri, NameAddr and Via (ccswitch/sip/uri.py)."""

from __future__ import annotations

import pytest

from ccswitch.sip.errors import ParseError
from ccswitch.sip.uri import (
    NameAddr,
    SipURI,
    Via,
    format_host,
    is_token,
    parse_any_uri,
    quote,
    split_hostport,
)

# ------------------------------------------------------------------------ SipURI


def test_sip_uri_parts() -> None:
    u = SipURI.parse("sip:alice:secret@atlanta.example.com:5061;transport=TCP;lr?subject=x&a=b")
    assert u.scheme == "sip"
    assert (u.user, u.password) == ("alice", "secret")
    assert (u.host, u.port) == ("atlanta.example.com", 5061)
    assert u.params == {"transport": "TCP", "lr": None}
    assert u.headers == "subject=x&a=b"
    assert u.transport == "tcp"
    assert u.hostport == "atlanta.example.com:5061"


def test_sip_uri_minimal_and_defaults() -> None:
    u = SipURI.parse("sip:example.com")
    assert u == SipURI(host="example.com")
    assert u.user is None and u.port is None and u.headers is None
    assert u.transport == "udp"
    assert str(u) == "sip:example.com"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@atlanta.example.com",
        "sips:bob@biloxi.example.com:5061",
        "sip:alice:pw@host;maddr=239.255.255.1;ttl=15",
        "sip:+1-212-555-1212:1234@gateway.com;user=phone",
        "sip:host;lr",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
        "sip:[2001:db8::10]:5070;transport=tcp",
        "sip:alice@[::1]",
    ],
)
def test_sip_uri_round_trip(text: str) -> None:
    u = SipURI.parse(text)
    assert str(u) == text
    assert SipURI.parse(str(u)) == u


def test_scheme_is_case_insensitive_param_names_lowercased_values_kept() -> None:
    u = SipURI.parse("SIP:Alice@Example.COM;Transport=TLS;MADDR=X")
    assert u.scheme == "sip"
    assert u.user == "Alice"  # the user part is case-sensitive
    assert u.host == "Example.COM"
    assert u.params == {"transport": "TLS", "maddr": "X"}
    assert SipURI.parse("sIpS:h").scheme == "sips"


def test_user_part_may_contain_unusual_characters() -> None:
    # RFC 4475 intmeth: '?', ';', '/', ',' belong to the user part before '@'
    u = SipURI.parse("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&pw=1,x!@example.com")
    assert u.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == "&pw=1,x!"
    assert (u.host, u.params, u.headers) == ("example.com", {}, None)
    # RFC 4475 semiuri: the ';' before '@' is part of the user
    u = SipURI.parse("sip:user;par=u%40example.net@example.com")
    assert (u.user, u.host, u.params) == ("user;par=u%40example.net", "example.com", {})


def test_escapes_are_kept_verbatim() -> None:
    u = SipURI.parse("sip:%61lice%40home@example.com;n%61me=v%61lue")
    assert u.user == "%61lice%40home"
    assert u.params == {"n%61me": "v%61lue"}
    assert str(u) == "sip:%61lice%40home@example.com;n%61me=v%61lue"


def test_headers_after_host_and_an_at_sign_there() -> None:
    u = SipURI.parse("sip:alice@example.com?to=sip:bob@biloxi.com")
    assert (u.user, u.host, u.headers) == ("alice", "example.com", "to=sip:bob@biloxi.com")
    u = SipURI.parse("sip:example.com;lr?h=v")
    assert (u.user, u.params, u.headers) == (None, {"lr": None}, "h=v")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:[::1]", "::1", None),
        ("sip:[::1]:5060", "::1", 5060),
        ("sip:bob@[2001:db8::9:1]:5062;transport=tcp", "2001:db8::9:1", 5062),
        ("sip:[::ffff:192.0.2.1]", "::ffff:192.0.2.1", None),
        ("sip:192.0.2.1:65535", "192.0.2.1", 65535),
    ],
)
def test_ipv6_and_ipv4_hosts(text: str, host: str, port: int | None) -> None:
    u = SipURI.parse(text)
    assert (u.host, u.port) == (host, port)
    # the host is stored without brackets and bracketed again on output
    assert str(u) == text


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:@example.com",  # empty user
        "sip:alice@",  # empty host
        "sip:alice@exa mple.com",
        "sip:alice@example.com:",  # empty port
        "sip:alice@example.com:65536",
        "sip:alice@example.com:50a",
        "sip:alice@example.com:123456",
        "sip:alice@exa_mple.com",
        "sip:alice@[::1",  # unterminated IPv6 reference
        "sip:alice@[::1]x",
        "sip:alice@[::g]",
        "sip:::1",  # IPv6 without brackets
        "sip:al ice@example.com",
        "sip:al<ice@example.com",
        "sip:alice:pass word@example.com",
        "sip:alice@example.com;;lr",  # empty parameter (RFC 4475 badinv01)
        "sip:alice@example.com;=x",
        "http://example.com",
        "sipx:alice@example.com",
        "alice@example.com",
    ],
)
def test_bad_sip_uris(text: str) -> None:
    with pytest.raises(ParseError):
        SipURI.parse(text)


def test_one_trailing_semicolon_is_tolerated() -> None:
    assert SipURI.parse("sip:alice@example.com;lr;").params == {"lr": None}
    assert SipURI.parse("sip:alice@example.com;").params == {}


def test_too_many_parameters() -> None:
    with pytest.raises(ParseError, match="too many parameters"):
        SipURI.parse("sip:h" + ";p" * 300)
    assert len(SipURI.parse("sip:h" + "".join(f";p{i}" for i in range(200))).params) == 200


def test_copy_is_independent() -> None:
    u = SipURI.parse("sip:alice@example.com;lr")
    c = u.copy()
    c.params["transport"] = "tcp"
    c.user = "bob"
    assert u == SipURI.parse("sip:alice@example.com;lr")
    assert c != u


# --------------------------------------------------------------- parse_any_uri


def test_parse_any_uri_sip_and_others() -> None:
    assert isinstance(parse_any_uri("  sip:alice@example.com "), SipURI)
    assert isinstance(parse_any_uri("SIPS:alice@example.com"), SipURI)
    tel = parse_any_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert tel == "tel:+1-201-555-0123;phone-context=example.com"
    assert parse_any_uri("urn:service:sos") == "urn:service:sos"
    assert parse_any_uri("soap.beep://192.0.2.103:3002") == "soap.beep://192.0.2.103:3002"


@pytest.mark.parametrize(
    "text",
    ["", "tel:", "no-scheme", "1tel:+123", "tel:+1 234", "tel:<+1>", 'tel:"1"', ":x", "<sip:a@b>"],
)
def test_parse_any_uri_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        parse_any_uri(text)


# -------------------------------------------------------------------- NameAddr


def test_name_addr_with_quoted_display_and_params() -> None:
    a = NameAddr.parse('"Doe, John \\"JD\\"" <sip:jd@example.com;transport=tcp>;tag=abc;expires=60')
    assert a.display == 'Doe, John "JD"'
    assert a.sip_uri == SipURI(user="jd", host="example.com", params={"transport": "tcp"})
    assert a.params == {"tag": "abc", "expires": "60"}
    assert a.tag == "abc"
    assert a.bracketed


def test_name_addr_quoted_pairs() -> None:
    # \\ is a backslash, \" a quote, \X any X (RFC 3261 quoted-pair)
    assert NameAddr.parse(r'"a\\b\"c\d" <sip:x@y>').display == 'a\\b"cd'
    assert NameAddr.parse(r'"\\\\" <sip:x@y>').display == "\\\\"
    assert NameAddr.parse(r'"\\\"" <sip:x@y>').display == '\\"'
    assert NameAddr.parse('"" <sip:x@y>').display == ""


def test_name_addr_token_display_with_and_without_space() -> None:
    a = NameAddr.parse("Bob  Smith <sip:bob@example.com>;tag=1")
    assert (a.display, a.tag) == ("Bob  Smith", "1")
    # RFC 4475 lwsdisp: no LWS between the display name and '<'
    assert NameAddr.parse("caller<sip:caller@example.com>").display == "caller"
    assert NameAddr.parse("<sip:x@y>").display is None


def test_name_addr_without_brackets_params_belong_to_the_header() -> None:
    a = NameAddr.parse("sip:alice@example.com;tag=88sja8x;user=phone")
    assert not a.bracketed
    assert a.display is None
    assert a.sip_uri == SipURI(user="alice", host="example.com")
    assert a.params == {"tag": "88sja8x", "user": "phone"}
    # inside <> the same parameters belong to the URI
    b = NameAddr.parse("<sip:alice@example.com;tag=88sja8x>")
    assert b.tag is None and b.sip_uri.params == {"tag": "88sja8x"}


def test_name_addr_quoted_parameter_values() -> None:
    a = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:f81d4fae>";x="p;q,r"')
    assert a.params == {"+sip.instance": '"<urn:uuid:f81d4fae>"', "x": '"p;q,r"'}
    # addr-spec form: the '<' inside a parameter value does not start a URI
    b = NameAddr.parse('sip:a@b;+sip.instance="<urn:uuid:1>";expires=3600')
    assert not b.bracketed
    assert b.params == {"+sip.instance": '"<urn:uuid:1>"', "expires": "3600"}


def test_name_addr_with_other_schemes() -> None:
    a = NameAddr.parse('"Alice" <tel:+1-201-555-0123>;tag=x')
    assert a.uri == "tel:+1-201-555-0123" and a.tag == "x"
    with pytest.raises(ParseError):
        a.sip_uri  # noqa: B018
    assert NameAddr.parse("tel:+358-555-1234567;tag=1").params == {"tag": "1"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        '"unterminated <sip:a@b>',  # RFC 4475 quotbal
        '"Alice" sip:a@b',  # quoted display name without <>
        "<sip:a@b",
        "<sip:a@b> junk",
        "Bell, Alexander <sip:a@b>",  # RFC 4475 baddn: non-token display name unquoted
        "Alice@Home <sip:a@b>",
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # RFC 4475 regbadct
        "sip:a@b,sip:c@d",
        "<sip:a@b>;;",  # RFC 4475 badinv01
        "<sip:a@b>;=1",
        '<sip:a@b>;x="unterminated',
        "<not a uri>",
    ],
)
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(ParseError):
        NameAddr.parse(text)


def test_empty_parameter_value_and_trailing_semicolon() -> None:
    assert NameAddr.parse("<sip:a@b>;tag").params == {"tag": None}
    assert NameAddr.parse("<sip:a@b>;tag=").params == {"tag": ""}
    assert NameAddr.parse("<sip:a@b>;tag=1;").params == {"tag": "1"}


def test_name_addr_spaces_inside_brackets_are_ignored() -> None:
    # RFC 4475 badaspec: invalid, but "elements attempting to be liberal may ignore the spaces"
    a = NameAddr.parse('"Watson, Thomas" < sip:t.watson@example.org >')
    assert a.sip_uri == SipURI(user="t.watson", host="example.org")


def test_name_addr_str_round_trip_and_quoting() -> None:
    a = NameAddr.parse('"A \\"B\\" \\\\C" <sip:x@y;lr>;tag=1;q=0.5')
    s = str(a)
    assert s == '"A \\"B\\" \\\\C" <sip:x@y;lr>;tag=1;q=0.5'
    assert NameAddr.parse(s) == a
    # addr-spec form is written as name-addr: the header parameters stay header parameters
    b = NameAddr.parse("sip:x@y;tag=2")
    assert str(b) == "<sip:x@y>;tag=2"
    assert NameAddr.parse(str(b)).params == b.params
    assert quote('a"b\\c') == '"a\\"b\\\\c"'


def test_name_addr_copy_is_deep() -> None:
    a = NameAddr.parse("<sip:x@y;lr>;tag=1")
    c = a.copy()
    c.params["tag"] = "2"
    c.sip_uri.params["transport"] = "tcp"
    assert a.tag == "1" and a.sip_uri.params == {"lr": None}


# ------------------------------------------------------------------------- Via


def test_via_basic() -> None:
    v = Via.parse("SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds")
    assert (v.transport, v.host, v.port) == ("UDP", "pc33.atlanta.example.com", None)
    assert v.branch == "z9hG4bK776asdhds"
    assert v.sent_by == "pc33.atlanta.example.com"
    assert str(v) == "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds"


def test_via_ipv6_with_received_and_rport() -> None:
    v = Via.parse(
        "SIP/2.0/TCP [2001:db8::9:1]:5060;branch=z9hG4bKas3;received=2001:db8::9:255;rport"
    )
    assert (v.transport, v.host, v.port) == ("TCP", "2001:db8::9:1", 5060)
    assert v.params == {"branch": "z9hG4bKas3", "received": "2001:db8::9:255", "rport": None}
    assert v.sent_by == "[2001:db8::9:1]:5060"
    assert Via.parse(str(v)) == v
    v = Via.parse("SIP/2.0/UDP [::1];rport=5062;received=[::1]")
    assert (v.host, v.port) == ("::1", None)
    assert v.params == {"rport": "5062", "received": "[::1]"}
    assert str(v) == "SIP/2.0/UDP [::1];rport=5062;received=[::1]"


def test_via_lws_everywhere() -> None:
    # RFC 4475 wsinv after unfolding
    v = Via.parse("SIP  /   2.0 /UDP     192.0.2.2;branch=390skdjuw")
    assert (v.transport, v.host, v.branch) == ("UDP", "192.0.2.2", "390skdjuw")
    v = Via.parse("SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8  ")
    assert (v.transport, v.host, v.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    v = Via.parse("SIP/2.0/UDP\thost.example.com : 5070 ;rport")
    assert (v.host, v.port, v.params) == ("host.example.com", 5070, {"rport": None})


def test_via_transport_is_uppercased_and_may_be_unknown() -> None:
    assert Via.parse("sip/2.0/tls h").transport == "TLS"
    assert Via.parse("SIP/2.0/UNKNOWN t4.example.com").transport == "UNKNOWN"
    assert Via.parse("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK").transport == "WSS"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",  # no sent-by
        "SIP/2.0 host",
        "SIP/2.0/UDPhost",
        "SIP/7.0/UDP c.example.com",  # RFC 4475 badvers
        "SIPS/2.0/UDP host",
        "SIP/2.0/U(P host",
        "SIP/2.0/UDP host:0x50",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP [::1",
        "SIP/2.0/UDP ho st;branch=1",
        "SIP/2.0/UDP 192.0.2.1 5060",  # not 192.0.2.15060
        "SIP/2.0/UDP 192.0.2.15;;",  # RFC 4475 badinv01
        "SIP/2.0/UDP host;=x",
        'SIP/2.0/UDP host;x="open',
    ],
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(ParseError):
        Via.parse(text)


# -------------------------------------------------------------------- helpers


def test_split_hostport_and_format_host() -> None:
    assert split_hostport("example.com") == ("example.com", None)
    assert split_hostport(" example.com:5060 ") == ("example.com", 5060)
    assert split_hostport("[::1]:5060") == ("::1", 5060)
    assert split_hostport("[fe80::1]") == ("fe80::1", None)
    assert format_host("::1") == "[::1]"
    assert format_host("[::1]") == "[::1]"
    assert format_host("192.0.2.1") == "192.0.2.1"


def test_is_token() -> None:
    assert is_token("!interesting-Method0123456789_*+`.%indeed'~")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a:b")
    assert not is_token("a\n")
    assert not is_token("é")
