"""The SIP message model: parse_message, Request/Response, make_response, StreamFramer."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import (
    COMPACT,
    BadRequest,
    Request,
    Response,
    StreamFramer,
    canonical_name,
    make_response,
    parse_message,
    split_commas,
)
from ccswitch.sip.uri import NameAddr, SipURI

HEAD = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "To: Bob <sip:bob@biloxi.example.com>\r\n"
    "From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    "CSeq: 314159 INVITE\r\n"
)


def req(extra: str = "", body: bytes = b"", head: str = HEAD) -> bytes:
    """A valid INVITE with `extra` header lines (CRLF-terminated) and `body`."""
    cl = f"Content-Length: {len(body)}\r\n" if "Content-Length" not in extra else ""
    return (head + extra + cl + "\r\n").encode() + body


def parse_req(data: bytes, stream: bool = False) -> Request:
    msg = parse_message(data, stream=stream)
    assert isinstance(msg, Request)
    return msg


# ------------------------------------------------------------------ basics


def test_parse_request_basics() -> None:
    m = parse_req(req(body=b"v=0\r\n"))
    assert m.method == "INVITE"
    assert m.uri == SipURI(user="bob", host="biloxi.example.com")
    assert m.sip_uri.host == "biloxi.example.com"
    assert m.version == "SIP/2.0"
    assert m.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert m.cseq == (314159, "INVITE")
    assert m.from_tag == "1928301774" and m.to_tag is None
    assert m.from_.display == "Alice" and m.to.display == "Bob"
    assert m.via.branch == "z9hG4bK776asdhds"
    assert m.body == b"v=0\r\n"
    assert repr(m) == "<Request INVITE sip:bob@biloxi.example.com>"


def test_parse_response_basics() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710\r\nCSeq: 314159 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    m = parse_message(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason, m.version) == (180, "Ringing", "SIP/2.0")
    assert m.to_tag == "a6c85cf"
    assert m.via.params["received"] == "192.0.2.1"
    assert repr(m) == "<Response 180 Ringing>"
    # a reason phrase may hold spaces and UTF-8; an absent one is empty
    m = parse_message(data.replace(b"180 Ringing", "183 Ça sonne, patience".encode()))
    assert isinstance(m, Response) and m.reason == "Ça sonne, patience"
    m = parse_message(data.replace(b"180 Ringing", b"180"))
    assert isinstance(m, Response) and (m.status, m.reason) == (180, "")


def test_leading_crlf_and_bare_lf_are_accepted() -> None:
    assert parse_req(b"\r\n\r\n" + req()).method == "INVITE"
    m = parse_req(req(body=b"abc").replace(b"\r\n", b"\n"))
    assert m.body == b"abc" and m.cseq == (314159, "INVITE")


def test_header_only_datagram_without_blank_line() -> None:
    m = parse_req(HEAD.encode())
    assert m.body == b"" and m.call_id.startswith("a84b")


# ----------------------------------------------------- header names and values


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"), ("m", "Contact"), ("f", "From"), ("t", "To"), ("v", "Via"),
        ("l", "Content-Length"), ("c", "Content-Type"), ("k", "Supported"), ("s", "Subject"),
        ("e", "Content-Encoding"), ("o", "Event"), ("r", "Refer-To"), ("b", "Referred-By"),
        ("u", "Allow-Events"),
    ],
)
def test_compact_forms(compact: str, full: str) -> None:
    assert COMPACT[compact] == full
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full
    head = HEAD.replace("Content-Length", "X")
    if f"\r\n{full}: " in head:  # a mandatory header: rename it
        head = head.replace(f"\r\n{full}: ", f"\r\n{compact.upper()} : ")
        data = req(head=head)
    elif full == "Content-Length":
        data = (head + f"{compact.upper()}: 2\r\n\r\nab").encode()
    else:
        data = req(f"{compact.upper()} : compact-value\r\n", head=head)
    m = parse_req(data)
    assert not any(len(n) == 1 for n, _ in m.headers)
    [value] = [v for n, v in m.headers if n == full]
    assert m.get(compact) == m.get(full) == m.get(full.upper()) == value
    if full == "Content-Length":
        assert m.body == b"ab"
    elif f"\r\n{full}: " not in HEAD:
        assert value == "compact-value"


def test_message_in_compact_form_only() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nt: <sip:b@x>;tag=2\r\n"
        b"f: <sip:a@x>;tag=1\r\ni: cid\r\nCSeq: 1 BYE\r\nm: <sip:b@h>\r\nc: text/plain\r\n"
        b"l: 2\r\n\r\nhi"
    )
    m = parse_message(data)
    assert (m.call_id, m.to_tag, m.from_tag, m.body) == ("cid", "2", "1", b"hi")
    assert m.content_type == "text/plain"
    assert [str(c) for c in m.contacts()] == ["<sip:b@h>"]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("call-id", "Call-ID"), ("CALL-ID", "Call-ID"), ("cseq", "CSeq"), ("CSEQ", "CSeq"),
        ("via", "Via"), ("VIA", "Via"), ("www-authenticate", "WWW-Authenticate"),
        ("content-LENGTH", "Content-Length"), ("max-forwards", "Max-Forwards"),
        ("x-custom-header", "X-Custom-Header"), ("RSEQ", "RSeq"), ("rack", "RAck"),
    ],
)
def test_header_names_are_case_insensitive(raw: str, canonical: str) -> None:
    assert canonical_name(raw) == canonical
    if f"\r\n{canonical}: " in HEAD:
        m = parse_req(req(head=HEAD.replace(f"\r\n{canonical}: ", f"\r\n{raw.swapcase()}: ")))
    elif canonical == "Content-Length":
        m = parse_req((HEAD + f"{raw.swapcase()}: 0\r\n\r\n").encode())
    else:
        m = parse_req(req(f"{raw.swapcase()}: v1\r\n"))
    [value] = [v for n, v in m.headers if n == canonical]
    assert m.get(raw) == m.get(canonical) == m.get(canonical.lower()) == value
    assert m.has(raw.upper())


def test_mixed_case_mandatory_headers() -> None:
    data = req().replace(b"Call-ID:", b"cAlL-iD:").replace(b"CSeq:", b"CSEQ   :")
    m = parse_req(data.replace(b"Via:", b"vIa:"))
    assert m.call_id.startswith("a84b") and m.cseq == (314159, "INVITE") and m.via.branch


@pytest.mark.parametrize(
    "folded",
    [
        "Subject: I know you're there,\r\n pick up the phone\r\n",
        "Subject: I know you're there,\r\n\tpick up the phone\r\n",
        "Subject: I know you're there,\r\n   \t  pick up\r\n the phone\r\n",
        "Subject:\r\n I know you're there, pick up the phone\r\n",
        "Subject: I know you're there,   \r\n \r\n   pick up the phone  \r\n",
    ],
)
def test_line_folding(folded: str) -> None:
    m = parse_req(req(folded))
    assert m.get("Subject") == "I know you're there, pick up the phone"


def test_folding_in_mandatory_headers_and_content_length() -> None:
    data = req(body=b"1234").replace(b"CSeq: 314159 INVITE", b"CSeq: 314159\r\n\tINVITE")
    data = data.replace(b"Content-Length: 4", b"Content-Length:\r\n 4")
    for stream in (False, True):
        m = parse_req(data, stream=stream)
        assert m.cseq == (314159, "INVITE") and m.body == b"1234"
    assert StreamFramer().feed(data) == [data]


def test_continuation_before_the_first_header_is_an_error() -> None:
    with pytest.raises(ParseError, match="continuation line"):
        parse_message(b"INVITE sip:a@b SIP/2.0\r\n folded: x\r\n" + req()[len(b"INVITE ") :])


def test_multi_value_headers_are_split_outside_quotes_and_brackets() -> None:
    extra = (
        'Contact: "Doe, John" <sip:jd@example.com;x=a,b>;q=0.7, <sip:j2@example.com>\r\n'
        "Contact: sip:j3@example.com;expires=60\r\n"
        "Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\n"
        "Route: <sip:p3.example.com;lr>\r\n"
        "Supported: replaces, timer ,100rel\r\n"
        "Authorization: Digest username=\"a\", realm=\"b\", nonce=\"c\"\r\n"
        "Date: Sat, 13 Nov 2010 23:29:00 GMT\r\n"
    )
    m = parse_req(req(extra).replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com\r\n"
        b"Via: SIP/2.0/UDP c.example.com;branch=z9hG4bK3",
    ))
    assert [v.host for v in m.vias] == ["a.example.com", "b.example.com", "c.example.com"]
    assert m.via.host == "a.example.com"
    contacts = m.contacts()
    assert [c.display for c in contacts] == ["Doe, John", None, None]
    assert contacts[0].sip_uri.params == {"x": "a,b"} and contacts[0].params == {"q": "0.7"}
    assert contacts[2].params == {"expires": "60"}
    assert m.get_all("Route") == [
        "<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>", "<sip:p3.example.com;lr>",
    ]
    assert m.get_all("Supported") == ["replaces", "timer", "100rel"]
    # not list headers: the commas belong to the value
    assert len(m.get_all("Authorization")) == 1
    assert m.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert m.get("Contact") == '"Doe, John" <sip:jd@example.com;x=a,b>;q=0.7, <sip:j2@example.com>'


def test_contact_star_is_not_an_address() -> None:
    m = parse_req(req("Contact: *\r\nExpires: 0\r\n"))
    assert m.get_all("Contact") == ["*"] and m.contacts() == []


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("", []),
        ("  ", []),
        ("a", ["a"]),
        (" a , b ,c ", ["a", "b", "c"]),
        ("a,,b, ,", ["a", "b"]),
        (",a", ["a"]),
        ('"x, y" <sip:a>, <sip:b,c>;q=1, z', ['"x, y" <sip:a>', "<sip:b,c>;q=1", "z"]),
        ('"a\\", b" <x>, c', ['"a\\", b" <x>', "c"]),
        ('"\\\\", x', ['"\\\\"', "x"]),
        ('"unterminated, quote', ['"unterminated, quote']),
        ("<unterminated, bracket", ["<unterminated, bracket"]),
    ],
)
def test_split_commas(value: str, items: list[str]) -> None:
    assert split_commas(value) == items


def test_header_values_keep_non_utf8_bytes() -> None:
    data = req("X-Raw: caf\xe9\r\n".replace("\xe9", "@")).replace(b"caf@", b"caf\xe9")
    m = parse_req(data)
    assert m.get("X-Raw") == "caf\udce9"
    assert b"X-Raw: caf\xe9\r\n" in m.to_bytes()


# ----------------------------------------------------------- UDP body framing


def test_udp_body_longer_than_content_length_is_truncated() -> None:
    m = parse_req(req("Content-Length: 3\r\n", b"abcdef"))
    assert m.body == b"abc"
    assert m.to_bytes().endswith(b"Content-Length: 3\r\n\r\nabc")


def test_udp_without_content_length_takes_the_rest() -> None:
    m = parse_req(HEAD.encode() + b"\r\nwhole rest\r\n")
    assert m.body == b"whole rest\r\n"


def test_content_length_zero_with_trailing_octets() -> None:
    assert parse_req(req("Content-Length: 0\r\n", b"garbage")).body == b""


def test_content_length_larger_than_body() -> None:
    with pytest.raises(BadRequest, match="Content-Length larger than body") as e:
        parse_message(req("Content-Length: 10\r\n", b"abc"))
    assert e.value.request.method == "INVITE"
    resp = req("Content-Length: 10\r\n", b"abc").replace(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"SIP/2.0 200 OK"
    )
    with pytest.raises(ParseError, match="larger than body") as e2:
        parse_message(resp)
    assert not isinstance(e2.value, BadRequest)  # responses are not answered


@pytest.mark.parametrize("value", ["five", "-1", "+3", "3 4", "0x10", "²", "١", "3.0", ""])
def test_invalid_content_length(value: str) -> None:
    with pytest.raises(BadRequest, match="invalid Content-Length"):
        parse_message(req(f"Content-Length: {value}\r\n".replace("  ", " "), b"abc"))


def test_huge_content_length_values() -> None:
    with pytest.raises(BadRequest, match="larger than body"):
        parse_message(req("Content-Length: " + "9" * 5000 + "\r\n", b"abc"))
    # leading zeros are fine, however many
    assert parse_req(req("Content-Length: " + "0" * 5000 + "3\r\n", b"abc")).body == b"abc"


def test_duplicate_content_length() -> None:
    assert parse_req(req("Content-Length: 3\r\nl: 3\r\n", b"abc")).body == b"abc"
    with pytest.raises(BadRequest, match="conflicting Content-Length"):
        parse_message(req("Content-Length: 3\r\nl: 2\r\n", b"abc"))


def test_stream_message_needs_content_length() -> None:
    with pytest.raises(BadRequest, match="missing Content-Length"):
        parse_message(HEAD.encode() + b"\r\n", stream=True)


# ----------------------------------------------------------- validation errors


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.replace(b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b""),
         "missing Call-ID header"),
        (lambda d: d.replace(b"Via:", b"Xia:"), "missing Via header"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE\r\n", b""), "missing CSeq header"),
        (lambda d: d.replace(b"To: ", b"X: "), "missing To header"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE\r\n", b"CSeq: 1 INVITE\r\nCSeq: 2 INVITE\r\n"),
         "duplicate CSeq header"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"),
         "CSeq method does not match"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE"),
         "CSeq number too large"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: " + b"1" * 5000 + b" INVITE"),
         "CSeq number too large"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: INVITE"), "invalid CSeq"),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: \xc2\xb2 INVITE"), "invalid CSeq"),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), "invalid Max-Forwards"),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"),
         "invalid Max-Forwards"),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: \xc2\xb2"),
         "invalid Max-Forwards"),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Expires: -1"), "invalid Expires"),
        (lambda d: d.replace(b"branch=z9hG4bK776asdhds", b"branch=z9hG4bK776asdhds;;"),
         "empty parameter"),
        (lambda d: d.replace(b"To: Bob <", b"To: Bob, Jr <"), "bad display name"),
        (lambda d: d.replace(b"SIP/2.0\r\n", b"SIP/2.0  \r\n", 1), "extra whitespace"),
        (lambda d: d.replace(b"sip:bob@biloxi.example.com ", b"<sip:bob@biloxi.example.com> ", 1),
         "bad Request-URI"),
        (lambda d: d.replace(b"sip:bob@biloxi.example.com ", b"sip:bob@biloxi.example.com?x=y ", 1),
         "headers not allowed in Request-URI"),
    ],
)
def test_bad_requests_are_answerable(mutate: Callable[[bytes], bytes], reason: str) -> None:
    data = mutate(req())
    with pytest.raises(BadRequest) as e:
        parse_message(data)
    assert reason in e.value.reason
    assert str(e.value) == e.value.reason
    assert e.value.request.method == "INVITE"
    resp = make_response(e.value.request, 400, f"Bad Request ({e.value.reason})")
    assert resp.to_bytes().startswith(f"SIP/2.0 400 Bad Request ({e.value.reason})".encode())


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (b"garbage\r\n\r\n", "bad request line"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "bad SIP version"),
        (b"INV(ITE sip:a@b SIP/2.0\r\n\r\n", "bad method"),
        (b"SIP/2.0\r\n\r\n", "bad status line"),
        (b"SIP/2.0 1000 Big\r\n\r\n", "bad status code"),
        (b"SIP/2.0 099 Small\r\n\r\n", "bad status code"),
        (b"SIP/2.0 7xx Wrong\r\n\r\n", "bad status code"),
        ("SIP/2.0 2٠٠ OK\r\n\r\n".encode(), "bad status code"),
        (b"SIP/3.0 200 OK\r\n\r\n", "unsupported version"),
        (b"SIP/2.0 200 OK\r\nBad Name: x\r\n\r\n", "bad header name"),
        (b"SIP/2.0 200 OK\r\n: x\r\n\r\n", "bad header name"),
        (b"SIP/2.0 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"SIP/2.0 200 OK\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", "headers too large"),
        (b"SIP/2.0 200 OK\r\n" + b"X: a\r\n" * 1100 + b"\r\n", "too many header lines"),
    ],
)
def test_unanswerable_parse_errors(data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as e:
        parse_message(data)
    assert not isinstance(e.value, BadRequest)
    assert reason in e.value.reason


def test_response_with_errors_is_not_a_bad_request() -> None:
    data = req().replace(b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"SIP/2.0 200 OK")
    with pytest.raises(ParseError, match="missing Via") as e:
        parse_message(data.replace(b"Via:", b"Xia:"))
    assert not isinstance(e.value, BadRequest)


def test_other_sip_version_is_returned_for_a_505() -> None:
    data = req().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1).replace(b"SIP/2.0/UDP", b"SIP/3.0/UDP")
    m = parse_req(data)
    assert m.version == "SIP/3.0"
    assert m.uri == SipURI(user="bob", host="biloxi.example.com")
    assert make_response(m, 505).to_bytes().startswith(b"SIP/2.0 505 Version Not Supported")
    # the version token is case-insensitive
    assert parse_req(req().replace(b"SIP/2.0\r\n", b"sip/2.0\r\n", 1)).version == "SIP/2.0"


def test_other_uri_schemes_in_the_request_line() -> None:
    m = parse_req(req().replace(b"sip:bob@biloxi.example.com SIP", b"tel:+1-201-555-0123 SIP", 1))
    assert m.uri == "tel:+1-201-555-0123"
    with pytest.raises(ParseError, match="not a SIP URI"):
        m.sip_uri  # noqa: B018


def test_ipv6_everywhere() -> None:
    data = (
        b"OPTIONS sip:[2001:db8::10]:5070;transport=tcp SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP [2001:db8::9:1]:5060;branch=z9hG4bKas3"
        b";received=2001:db8::9:255;rport\r\n"
        b"Max-Forwards: 70\r\nTo: <sip:[2001:db8::10]>\r\n"
        b"From: <sip:alice@[2001:db8::9:1]>;tag=1\r\nCall-ID: v6\r\nCSeq: 1 OPTIONS\r\n"
        b"Contact: <sip:alice@[2001:db8::9:1]:5060>\r\nContent-Length: 0\r\n\r\n"
    )
    m = parse_req(data)
    assert (m.sip_uri.host, m.sip_uri.port) == ("2001:db8::10", 5070)
    assert (m.via.host, m.via.port) == ("2001:db8::9:1", 5060)
    assert m.via.sent_by == "[2001:db8::9:1]:5060"
    assert m.via.params == {"branch": "z9hG4bKas3", "received": "2001:db8::9:255", "rport": None}
    assert m.to.sip_uri.host == "2001:db8::10"
    assert m.contacts()[0].sip_uri.hostport == "[2001:db8::9:1]:5060"
    assert parse_message(m.to_bytes()).to_bytes() == m.to_bytes()


# -------------------------------------------------------- header manipulation


def test_set_replaces_all_occurrences_at_the_first_position() -> None:
    m = parse_req(req("X-A: 1\r\nX-B: b\r\nX-A: 2\r\n"))
    m.set("x-a", "3")
    names = [n for n, _ in m.headers]
    assert m.get_all("X-A") == ["3"]
    assert names.index("X-A") < names.index("X-B")
    m.set("X-New", "n")
    assert m.headers[-1] == ("X-New", "n")


def test_add_appends_or_prepends() -> None:
    m = parse_req(req("Route: <sip:p1;lr>\r\nX-B: b\r\n"))
    m.add("route", "<sip:p2;lr>")
    m.add("Route", "<sip:p0;lr>", first=True)
    assert m.get_all("Route") == ["<sip:p0;lr>", "<sip:p1;lr>", "<sip:p2;lr>"]
    m.add("Record-Route", "<sip:rr;lr>", first=True)
    assert m.headers[0] == ("Record-Route", "<sip:rr;lr>")


def test_remove_and_remove_first() -> None:
    m = parse_req(req().replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        b"Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2\r\n"
        b"Via: SIP/2.0/UDP c;branch=z9hG4bK3",
    ))
    assert m.via.host == "a"
    m.remove_first("v")
    assert m.via.host == "b"  # the cached view follows the change
    assert [v.host for v in m.vias] == ["b", "c"]
    m.remove_first("Via")
    assert [v.host for v in m.vias] == ["c"]
    m.remove_first("Via")
    assert not m.has("Via")
    m.remove_first("Via")  # nothing left: no error
    with pytest.raises(ParseError, match="missing Via"):
        m.via  # noqa: B018
    m.remove("x-none")
    m.add("X-A", "1")
    m.add("X-A", "2")
    m.remove("x-a")
    assert not m.has("X-A") and m.get("X-A", "dflt") == "dflt"


def test_remove_first_respects_quoted_commas() -> None:
    m = parse_req(req('Contact: "A, B" <sip:a@x>, "C, D" <sip:c@x>\r\n'))
    m.remove_first("m")
    assert [c.display for c in m.contacts()] == ["C, D"]


def test_caches_are_invalidated_by_changes() -> None:
    m = parse_req(req())
    assert m.cseq == (314159, "INVITE") and m.to_tag is None
    m.set("CSeq", "2 INVITE")
    m.set("To", "<sip:bob@biloxi.example.com>;tag=x")
    assert m.cseq == (2, "INVITE") and m.to_tag == "x"


# ------------------------------------------------------------- make_response


def test_make_response_copies_the_right_headers_in_order() -> None:
    r = parse_req(req(
        "Record-Route: <sip:p1;lr>\r\nContact: <sip:alice@pc33>\r\n",
        b"v=0\r\n",
    ).replace(
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds",
        b"Via: SIP/2.0/UDP p2;branch=z9hG4bK2\r\nVia: SIP/2.0/UDP p1;branch=z9hG4bK1, "
        b"SIP/2.0/UDP pc33;branch=z9hG4bK0",
    ))
    resp = make_response(r, 486)
    assert (resp.status, resp.reason) == (486, "Busy Here")
    assert [n for n, _ in resp.headers] == ["Via", "Via", "To", "From", "Call-ID", "CSeq"]
    assert resp.get_all("Via") == r.get_all("Via")
    assert [v.host for v in resp.vias] == ["p2", "p1", "pc33"]
    assert resp.body == b""
    assert resp.get("Call-ID") == r.get("Call-ID") and resp.cseq == r.cseq
    back = parse_message(resp.to_bytes())
    assert isinstance(back, Response) and back.to_bytes() == resp.to_bytes()


def test_make_response_to_tag_rules() -> None:
    r = parse_req(req())
    assert make_response(r, 180, to_tag="abc").to_tag == "abc"
    assert make_response(r, 100, to_tag="abc").to_tag is None  # 100 Trying: no tag needed
    assert make_response(r, 200).to_tag is None  # caller did not ask
    # a tag that is already there stays, however it is spelled
    for to in ("<sip:b@x>;tag=old", "<sip:b@x> ;  TAG = old", "sip:b@x;tag=old"):
        r2 = parse_req(req().replace(b"To: Bob <sip:bob@biloxi.example.com>", f"To: {to}".encode()))
        assert make_response(r2, 200, to_tag="new").to_tag == "old"
    # a 'tag' URI parameter inside <> is not a To tag
    r3 = parse_req(req().replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:b@x;tag=u>"))
    resp = make_response(r3, 200, to_tag="new")
    assert resp.to_tag == "new" and resp.to.sip_uri.params == {"tag": "u"}


def test_make_response_extra_headers_reason_and_body() -> None:
    r = parse_req(req())
    resp = make_response(
        r, 200, "Fine", to_tag="t", headers=[("Contact", "<sip:bob@h>"), ("Content-Type", "a/b")],
        body=b"xyz",
    )
    wire = resp.to_bytes()
    assert wire.startswith(b"SIP/2.0 200 Fine\r\n")
    assert wire.endswith(b"Content-Type: a/b\r\nContent-Length: 3\r\n\r\nxyz")
    assert make_response(r, 299).reason == "Unknown"
    # the request is not modified
    assert r.to_tag is None and r.to_bytes() == parse_req(req()).to_bytes()


# ---------------------------------------------------------- serializer


def test_build_and_round_trip_a_request() -> None:
    r = Request("OPTIONS", SipURI.parse("sip:bob@[::1]:5080;transport=tcp"))
    r.add("Via", "SIP/2.0/TCP [::1]:5090;branch=z9hG4bKx;rport")
    r.add("From", str(NameAddr.parse('"A, B" <sip:a@x>;tag=1')))
    r.add("To", "<sip:bob@x>")
    r.add("Call-ID", "c1")
    r.add("CSeq", "7 OPTIONS")
    r.add("Content-Length", "999")  # recomputed on output
    r.body = b"hello"
    wire = r.to_bytes()
    assert wire.startswith(b"OPTIONS sip:bob@[::1]:5080;transport=tcp SIP/2.0\r\n")
    assert wire.count(b"Content-Length") == 1
    assert wire.endswith(b"Content-Length: 5\r\n\r\nhello")
    assert bytes(r) == wire
    back = parse_req(wire, stream=True)
    assert (back.method, back.uri, back.body) == ("OPTIONS", r.uri, b"hello")
    assert back.from_.display == "A, B" and back.via.sent_by == "[::1]:5090"
    assert back.to_bytes() == wire


def test_reserialized_message_is_stable() -> None:
    raw = req(
        "v :  SIP/2.0/UDP   b.example.com ; branch = z9hG4bK2\r\n"
        "Subject: one\r\n two\r\n",
        b"body",
    )
    once = parse_message(raw).to_bytes()
    assert parse_message(once).to_bytes() == once
    assert b"Via: SIP/2.0/UDP   b.example.com ; branch = z9hG4bK2\r\n" in once
    assert b"Subject: one two\r\n" in once


# ---------------------------------------------------------- StreamFramer


def _two() -> tuple[bytes, bytes]:
    a = req(body=b"first body")
    b = req(body=b"second").replace(b"CSeq: 314159", b"CSeq: 314160")
    return a, b


def test_framer_splits_concatenated_messages() -> None:
    a, b = _two()
    assert StreamFramer().feed(a + b) == [a, b]


def test_framer_byte_by_byte_and_every_split_point() -> None:
    a, b = _two()
    wire = a + b"\r\n\r\n" + b
    f = StreamFramer()
    out: list[bytes] = []
    for i in range(len(wire)):
        out += f.feed(wire[i : i + 1])
    assert out == [a, b"\r\n\r\n", b]
    for cut in range(1, len(wire)):
        f = StreamFramer()
        assert f.feed(wire[:cut]) + f.feed(wire[cut:]) == [a, b"\r\n\r\n", b]


def test_framer_keepalives() -> None:
    a, _ = _two()
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == [b"\r\n\r\n"]  # RFC 5626 ping: the transport pongs
    assert f.feed(b"\r\n") == []  # a pong, or half a ping: wait
    assert f.feed(b"\r\n") == [b"\r\n\r\n"]
    assert f.feed(b"\r\n" + a) == [a]  # a lone CRLF before a message is skipped
    assert f.feed(b"\r\n\r\n\r\n\r\n") == [b"\r\n\r\n", b"\r\n\r\n"]


def test_framer_waits_for_the_body() -> None:
    a, _ = _two()
    f = StreamFramer()
    assert f.feed(a[:-3]) == []
    assert f.feed(a[-3:]) == [a]
    assert f.feed(b"") == []


def test_framer_errors() -> None:
    with pytest.raises(ParseError, match="missing Content-Length"):
        StreamFramer().feed(HEAD.encode() + b"\r\nbody")
    with pytest.raises(ParseError, match="invalid Content-Length"):
        StreamFramer().feed(req("Content-Length: -5\r\n"))
    with pytest.raises(ParseError, match="invalid Content-Length"):
        StreamFramer().feed((HEAD + "l: five\r\n\r\n").encode())
    with pytest.raises(ParseError, match="invalid Content-Length"):
        StreamFramer().feed((HEAD + "Content-Length: ").encode() + "²".encode() + b"\r\n\r\n")
    with pytest.raises(ParseError, match="conflicting Content-Length"):
        StreamFramer().feed(req("Content-Length: 1\r\nl: 2\r\n", b"12"))
    f = StreamFramer()
    assert f.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"a" * 60_000) == []
    with pytest.raises(ParseError, match="headers too large"):
        f.feed(b"a" * 10_000)
    with pytest.raises(ParseError, match="message too large"):
        StreamFramer().feed(req(f"Content-Length: {StreamFramer.MAX_MESSAGE}\r\n"))


def test_framer_agrees_with_parse_message_on_compact_and_duplicate_lengths() -> None:
    data = req("l: 4\r\nContent-Length: 4\r\n", b"abcd")
    [framed] = StreamFramer().feed(data + b"next")
    assert framed == data
    assert parse_req(framed, stream=True).body == b"abcd"


def test_framer_handles_large_bodies_fed_in_small_pieces() -> None:
    body = bytes(range(256)) * 400  # 100 kB, NULs and CRLFs included
    data = req(body=body)
    f = StreamFramer()
    out: list[bytes] = []
    for i in range(0, len(data), 13):
        out += f.feed(data[i : i + 13])
    assert out == [data]
    assert parse_req(out[0], stream=True).body == body
