"""REFER / Replaces / Referred-By / sipfrag helpers (ccswitch/sip/refer.py).

Refer-To values marked "seen" are copied from public traces and source (the host names
are theirs or anonymised as in the source); values marked "style" follow the shape a
vendor's phones use (call-id format, URI parameters) without being a verbatim capture.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable

import pytest

from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import Request, parse_message
from ccswitch.sip.refer import (
    SIPFRAG_TYPE,
    Replaces,
    format_refer_to,
    format_referred_by,
    format_replaces,
    notify_headers,
    parse_refer_event,
    parse_refer_to,
    parse_referred_by,
    parse_replaces,
    parse_sipfrag,
    parse_subscription_state,
    refer_notify,
    refer_sub,
    refer_to_of,
    sipfrag,
)
from ccswitch.sip.uri import NameAddr, SipURI

# (label, Refer-To value, user, call-id, to-tag, from-tag, early-only) for attended transfers
ATTENDED = [
    (
        "RFC 3515 §2.1 / RFC 3891 example",
        "<sip:dave@denver.example.org?Replaces=12345%40192.168.118.3%3Bto-tag%3D12345"
        "%3Bfrom-tag%3D5FFE-3994>",
        "dave", "12345@192.168.118.3", "12345", "5FFE-3994", False,
    ),
    (
        # seen: AudioCodes SBC manual; lower-case escapes, from-tag before to-tag, sips
        "AudioCodes",
        "<sips:a8342043f@atlanta.example.com?Replaces=12345601%40atlanta.example.com"
        "%3bfrom-tag%3d314159%3bto-tag%3d1234567>",
        "a8342043f", "12345601@atlanta.example.com", "1234567", "314159", False,
    ),
    (
        # seen: Twinkle 1.10 (kamailio issue 4301): URI params before '?', lower-case escapes
        "Twinkle",
        "<sip:atpsh-685d3cd2-69-4@172.23.42.1;transport=tcp?Replaces=lmhzfrkbucirwbc"
        "%40fedora.fritz.box%3bto-tag%3dXDQD403r30jeS%3bfrom-tag%3dtwbnd>",
        "atpsh-685d3cd2-69-4", "lmhzfrkbucirwbc@fedora.fritz.box", "XDQD403r30jeS", "twbnd",
        False,
    ),
    (
        # seen: sipsorcery (issue 211): ':' left unescaped in the call-id (it may be)
        "sipsorcery",
        "<sip:+493*******@10.10.10.5:5060?Replaces=680242e01e0d4aff685836eb6140cd72"
        "%4010.10.10.5:5060%3Bto-tag%3Das0e332af4%3Bfrom-tag%3DUOWVAIMFMQ>",
        "+493*******", "680242e01e0d4aff685836eb6140cd72@10.10.10.5:5060", "as0e332af4",
        "UOWVAIMFMQ", False,
    ),
    (
        # seen (format string): baresip call_replace_transfer since PR 3404, raw call-id
        "baresip",
        "<sip:2008@sbc01-eu.test;transport=tls?Replaces=be283d03c65b8639%3Bto-tag%3D"
        "a1b2c3d4e5f60718%3Bfrom-tag%3Dedc2a0bb064179d5>",
        "2008", "be283d03c65b8639", "a1b2c3d4e5f60718", "edc2a0bb064179d5", False,
    ),
    (
        # seen (format): SIP.js attended transfer puts a quoted display name first
        "SIP.js",
        '"Carol Smith" <sip:carol@203.0.113.9:50432;transport=ws?Replaces=og655lpfvr99'
        "t9ub3lta%3Bto-tag%3Dy7t9KgQ09ZcyN%3Bfrom-tag%3Dvb0o700g6b>",
        "carol", "og655lpfvr99t9ub3lta", "y7t9KgQ09ZcyN", "vb0o700g6b", False,
    ),
    (
        # style: Linphone / belle-sip (short random tags, call-id without host)
        "Linphone",
        "<sip:bob@sip.example.org?Replaces=rLcZO1veQZ%3Bto-tag%3DbuuHibw%3Bfrom-tag%3DYtewbeyea>",
        "bob", "rLcZO1veQZ", "buuHibw", "Ytewbeyea", False,
    ),
    (
        # style: Yealink (call-id "0_<n>@<ip>", '@' not escaped, numeric tags)
        "Yealink",
        "<sip:1003@192.168.1.10:5060?Replaces=0_2952871098@192.168.1.20%3Bto-tag%3D"
        "3894512771%3Bfrom-tag%3D1208793311>",
        "1003", "0_2952871098@192.168.1.20", "3894512771", "1208793311", False,
    ),
    (
        # style: Yealink semi-attended transfer (target still ringing): early-only
        "Yealink semi-attended",
        "<sip:1003@192.168.1.10:5060?Replaces=0_2952871098%40192.168.1.20%3Bto-tag%3D"
        "3894512771%3Bfrom-tag%3D1208793311%3Bearly-only>",
        "1003", "0_2952871098@192.168.1.20", "3894512771", "1208793311", True,
    ),
    (
        # style: Polycom (user=phone, dashed hex call-id)
        "Polycom",
        "<sip:1003@pbx.example.com;user=phone?Replaces=4c1a2b3d-9e8f7a6b-2c3d4e5f%40"
        "192.168.1.21%3Bto-tag%3Das5f2c1d%3Bfrom-tag%3D1A2B3C4D-5E6F7A8B>",
        "1003", "4c1a2b3d-9e8f7a6b-2c3d4e5f@192.168.1.21", "as5f2c1d", "1A2B3C4D-5E6F7A8B",
        False,
    ),
    (
        # style: Grandstream with "Refer-To Use Target Contact": the target's Contact URI
        "Grandstream",
        "<sip:1003@192.168.1.30:5062;transport=udp?Replaces=1392826582-5062-1%40BJC.BGI.B.CJ"
        "%3Bto-tag%3D1290734071%3Bfrom-tag%3D436738722>",
        "1003", "1392826582-5062-1@BJC.BGI.B.CJ", "1290734071", "436738722", False,
    ),
    (
        # liberal: some devices leave ';' and '=' unescaped inside <...>
        "unescaped",
        "<sip:1003@pbx.example.com?Replaces=abc123@10.0.0.1;to-tag=t1;from-tag=f1>",
        "1003", "abc123@10.0.0.1", "t1", "f1", False,
    ),
]


@pytest.mark.parametrize("case", ATTENDED, ids=[c[0] for c in ATTENDED])
def test_attended_transfer_refer_to(case: tuple[str, str, str, str, str, str, bool]) -> None:
    _, value, user, call_id, to_tag, from_tag, early = case
    t = parse_refer_to(value)
    assert t.user == user
    assert isinstance(t.uri, SipURI) and t.uri.headers is None
    assert t.replaces == Replaces(call_id, to_tag, from_tag, early)
    assert t.headers == {}
    assert t.method == "INVITE"
    # formatting it again gives canonical escaping that parses back to the same thing
    again = parse_refer_to(str(t))
    assert again.replaces == t.replaces and str(again.uri) == str(t.uri)
    assert again.addr.display == t.addr.display


BLIND = [
    # seen: Linphone Android blind transfer (addr-spec, no angle brackets)
    ("sip:135778@sip.example.org", "135778", "sip:135778@sip.example.org"),
    # seen: JsSIP / AudioCodes Mediant
    ("<sip:web3@audiocodes.com>", "web3", "sip:web3@audiocodes.com"),
    # seen: Sipdroid sends a URI without a host; the number is all there is
    ("<sip:2002>", "2002", "sip:2002"),
    # seen: SIP.js attended-style display name on a blind target
    ('"friendlyName" <sip:1002@pbx.example.com>', "1002", "sip:1002@pbx.example.com"),
    # phone numbers: escapes undone, visual separators dropped for tel: and user=phone
    ("<sip:%2B4930123456@gw.example.com>", "+4930123456", "sip:%2B4930123456@gw.example.com"),
    ("<sip:+1-212-555-0101@gw.example.com;user=phone>", "+12125550101",
     "sip:+1-212-555-0101@gw.example.com;user=phone"),
    ("<tel:+1-212-555-0101;phone-context=example.com>", "+12125550101",
     "tel:+1-212-555-0101;phone-context=example.com"),
    ("<sip:*72%23@pbx>", "*72#", "sip:*72%23@pbx"),
    ("<sip:conference.example.com>", "", "sip:conference.example.com"),
    ('sip:1004@pbx;+sip.instance="<urn:uuid:0f8016fc>"', "1004", "sip:1004@pbx"),
    ("  <SIP:800@pbx.example.com:5060;transport=UDP>  ", "800",
     "sip:800@pbx.example.com:5060;transport=UDP"),
]


@pytest.mark.parametrize(("value", "user", "uri"), BLIND)
def test_blind_transfer_refer_to(value: str, user: str, uri: str) -> None:
    t = parse_refer_to(value)
    assert t.user == user
    assert str(t.uri) == uri
    assert t.replaces is None


def test_refer_to_with_other_embedded_headers_and_method() -> None:
    t = parse_refer_to(
        "<sip:bob@biloxi.example.net?Accept-Contact=sip:bobsdesk.biloxi.example.net"
        "&Replaces=a%40b%3Bfrom-tag%3D1%3Bto-tag%3D2&x-custom=hello%20world>;foo=bar"
    )
    assert t.headers == {"Accept-Contact": "sip:bobsdesk.biloxi.example.net",
                         "X-Custom": "hello world"}
    assert t.replaces == Replaces("a@b", "2", "1")
    assert t.addr.params == {"foo": "bar"}
    assert parse_refer_to(str(t)).headers == t.headers
    assert parse_refer_to("<sip:carol@cleveland.example.org;method=SUBSCRIBE>").method == (
        "SUBSCRIBE"
    )


def test_addr_spec_with_headers_and_params() -> None:
    # not allowed by RFC 3261 (must be bracketed) but sent anyway: ';' after the headers
    # are Refer-To parameters
    t = parse_refer_to("sip:1003@pbx?Replaces=x%3Bto-tag%3Da%3Bfrom-tag%3Db;foo=1")
    assert t.replaces == Replaces("x", "a", "b")
    assert t.addr.params == {"foo": "1"}
    assert str(t.uri) == "sip:1003@pbx"


def test_raw_at_in_call_id_of_a_userless_uri() -> None:
    t = parse_refer_to("<sip:pbx.example.com?Replaces=abc@10.0.0.1%3Bto-tag%3D1%3Bfrom-tag%3D2>")
    assert t.uri == SipURI(host="pbx.example.com")
    assert t.replaces is not None and t.replaces.call_id == "abc@10.0.0.1"


def test_lenient_mode_accepts_replaces_without_tags() -> None:
    # older baresip: "Refer-To: <%s?Replaces=%s>" with the call-id alone
    value = "<sip:2008@sbc01-eu.test;transport=tls?Replaces=be283d03c65b8639>"
    with pytest.raises(ParseError):
        parse_refer_to(value)
    t = parse_refer_to(value, strict=False)
    assert t.replaces == Replaces("be283d03c65b8639", "", "")
    assert str(t) == value  # formats back as it came
    assert str(t.replaces) == "be283d03c65b8639"


# ---------------------------------------------------------------------- Replaces


def test_parse_replaces_header_forms() -> None:
    # RFC 3891 §6.1 example of the header in an INVITE
    r = parse_replaces("98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff")
    assert r == Replaces("98732@sip.example.com", "ff87ff", "r33th4x0r")
    assert parse_replaces("a@b ; to-tag = 1 ; FROM-TAG=2 ; early-only ; x=y ;") == Replaces(
        "a@b", "1", "2", True
    )
    assert str(r) == "98732@sip.example.com;to-tag=ff87ff;from-tag=r33th4x0r"
    assert parse_replaces(str(r)) == r


def test_replaces_matches_from_the_recipients_point_of_view() -> None:
    # phone B called ccswitch (B's tag "b1", ours "s1"); B names that dialog as seen by us
    r = parse_replaces("call-7@10.0.0.2;to-tag=s1;from-tag=b1")
    assert r.matches("call-7@10.0.0.2", local_tag="s1", remote_tag="b1")
    assert not r.matches("call-7@10.0.0.2", local_tag="b1", remote_tag="s1")
    assert not r.matches("call-8@10.0.0.2", local_tag="s1", remote_tag="b1")


def test_format_replaces_and_refer_to_round_trip() -> None:
    call_id = "a;b"  # ';' is not a call-id character: refused
    with pytest.raises(ValueError):
        format_replaces(call_id, "1", "2")
    with pytest.raises(ValueError):
        format_replaces("abc", "bad tag", "2")
    odd = 'x%y"z/[1]{2}?:<3>@host-1.example'  # every odd character a call-id may hold
    s = format_replaces(odd, "to1", "from1", early_only=True)
    assert s == f"{odd};to-tag=to1;from-tag=from1;early-only"
    rep = parse_replaces(s)
    uri = SipURI.parse("sip:bob@host:5070;transport=tcp?old=1")
    refer_to = format_refer_to(uri, rep, display='Bob "B" Smith')
    assert refer_to.startswith('"Bob \\"B\\" Smith" <sip:bob@host:5070;transport=tcp?Replaces=')
    assert "old=1" not in refer_to
    enc = refer_to[refer_to.index("Replaces=") + 9 : -1]
    # RFC 3261 hvalue: ';', '=', '@', '%', '"', '<', '>', '{', '}' escaped, ':' '/' '?' '[' not
    for ch in ';=@"<>{}':
        assert ch not in enc, ch
    assert re.fullmatch(r"(?:[^%]|%[0-9A-F]{2})*", enc)  # every '%' starts an upper-case escape
    assert "%25" in enc and "%40" in enc and ":" in enc and "[1]" in enc
    back = parse_refer_to(refer_to)
    assert back.replaces == rep
    assert back.addr.display == 'Bob "B" Smith'
    assert str(back.uri) == "sip:bob@host:5070;transport=tcp"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        ";to-tag=1;from-tag=2",  # no call-id
        "a b;to-tag=1;from-tag=2",  # space in call-id
        "abc;to-tag=1",  # no from-tag
        "abc;from-tag=2",
        "abc",
        "abc;to-tag=;from-tag=2",
        "abc;to-tag=1;to-tag=3;from-tag=2",
        "abc;to-tag=a b;from-tag=2",
        "abc;;to-tag=1;from-tag=2",
        "abc;to-tag=1;from-tag=2;=x",
        "abc;to-tag=1;from-tag=2;b@d=1",
        "a@b@c;to-tag=1;from-tag=2",
        "é;to-tag=1;from-tag=2",
        "x" * 5000 + ";to-tag=1;from-tag=2",
    ],
)
def test_malformed_replaces(text: str) -> None:
    with pytest.raises(ParseError):
        parse_replaces(text)


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "value",
    [
        "",
        "<>",
        "<sip:>",
        "<sip:bob@host",
        "sip:bob@host>",  # junk after an addr-spec host
        "Bob <sip:bob@host",
        '"Bob <sip:bob@host>',  # unterminated display name
        '"Bob" sip:bob@host',
        "<http://example.com/transfer>",
        "<mailto:bob@example.com>",
        "<tel:>",
        "<sip:bob@host?Replaces=>",
        "<sip:bob@host?Replaces=abc%3Bto-tag%3D1>",  # no from-tag
        "<sip:bob@host?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&Replaces=b%3Bto-tag%3D1%3Bfrom-tag%3D2>",
        "<sip:bob@host?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&replaces=a>",
        "<sip:bob@host?X-A=1&X-A=2>",
        "<sip:bob@host?Replaces=a%0D%0AVia:%20x%3Bto-tag%3D1%3Bfrom-tag%3D2>",  # CRLF
        "<sip:bob@host?X-Evil=a%0d%0aContact:%20%3Csip:x%3E>",
        "<sip:bob@host?X-Bad=%FF%FE>",  # not UTF-8
        "<sip:bob@host?Replaces=a b%3Bto-tag%3D1%3Bfrom-tag%3D2>",
        "<sip:bob@host?=x>",
        "<sip:bob@host?Replaces=a%3Bto-tag%3D1%3Bfrom-tag%3D2&junk>",
        "sip:bob@host, sip:carol@host",
        "<sip:bob@host:99999>",
        "<sip:bob@ho st>",
        "<sip:" + "a" * 5000 + "@host>",
    ],
)
def test_malformed_refer_to_raises_parse_error(value: str) -> None:
    with pytest.raises(ParseError):
        parse_refer_to(value)


def test_mutated_refer_to_raises_only_parse_error() -> None:
    """Random damage to real values: either a result or ParseError, nothing else."""
    rnd = random.Random(3515)
    alphabet = '<>"@;?&=%:/\\ \t\r\n\x00abcAF09-._~*é'
    seeds = [c[1] for c in ATTENDED] + [b[0] for b in BLIND]
    for _ in range(4000):
        s = list(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 6)):
            op = rnd.random()
            pos = rnd.randrange(len(s) + 1)
            if op < 0.4 and s:
                del s[min(pos, len(s) - 1)]
            elif op < 0.8:
                s.insert(pos, rnd.choice(alphabet))
            else:
                s[pos:pos] = s[rnd.randrange(len(s)) :][:10]
        text = "".join(s)
        for strict in (True, False):
            try:
                t = parse_refer_to(text, strict=strict)
            except ParseError:
                continue
            # what parsed must also format and parse again, and expose a user
            assert isinstance(t.user, str)
            parse_refer_to(str(t), strict=strict)


def test_random_input_to_the_other_parsers_raises_only_parse_error() -> None:
    rnd = random.Random(3891)
    alphabet = ';=@%:- \t\r\nabcT0129/SIP.\x00é'
    seeds = ["98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only",
             "SIP/2.0 200 OK\r\n", "refer;id=93809824", "terminated;reason=noresource"]
    parsers: list[Callable[[str], object]] = [
        parse_replaces, parse_sipfrag, parse_refer_event, parse_subscription_state,
        parse_referred_by,
    ]
    for _ in range(3000):
        s = list(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 5)):
            pos = rnd.randrange(len(s) + 1)
            if rnd.random() < 0.5 and s:
                del s[min(pos, len(s) - 1)]
            else:
                s.insert(pos, rnd.choice(alphabet))
        text = "".join(s)
        for fn in parsers:
            with contextlib.suppress(ParseError):
                fn(text)
        try:
            r = parse_replaces(text, strict=False)
        except ParseError:
            continue
        assert parse_replaces(str(r), strict=False) == r


# ---------------------------------------------------------------------- in a message


REFER = (
    "REFER sip:ccswitch@192.0.2.1:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK776asdhds\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:1001@pbx.example.com>;tag=ldn4539zq7\r\n"
    "To: <sip:1002@pbx.example.com>;tag=as700b813c\r\n"
    "Call-ID: 40dba7f9502a2e520a8a8a3666b003c3\r\n"
    "CSeq: 2 REFER\r\n"
    "Contact: <sip:1001@192.0.2.20:5060>\r\n"
    "{refer_to}"
    "b: \"Joe\" <sip:1001@pbx.example.com>;cid=\"LkqbpRisoYluZlAJuzXx8ZJ@192.0.2.20\"\r\n"
    "{extra}"
    "Content-Length: 0\r\n\r\n"
)


def _refer(refer_to: str, extra: str = "") -> Request:
    msg = parse_message(REFER.format(refer_to=refer_to, extra=extra).encode())
    assert isinstance(msg, Request)
    return msg


def test_refer_to_of_a_message_compact_forms_and_refer_sub() -> None:
    req = _refer("r: <sip:1003@pbx.example.com?Replaces=c1%3Bto-tag%3Da%3Bfrom-tag%3Db>\r\n")
    t = refer_to_of(req)
    assert t.user == "1003" and t.replaces == Replaces("c1", "a", "b")
    rb = parse_referred_by(req.get("Referred-By") or "")
    assert rb.display == "Joe" and rb.params["cid"] == '"LkqbpRisoYluZlAJuzXx8ZJ@192.0.2.20"'
    assert refer_sub(req)
    assert not refer_sub(_refer("Refer-To: <sip:1003@pbx>\r\n", "Refer-Sub: false\r\n"))
    assert refer_sub(_refer("Refer-To: <sip:1003@pbx>\r\n", "Refer-Sub: TRUE;x=1\r\n"))
    with pytest.raises(ParseError):
        refer_sub(_refer("Refer-To: <sip:1003@pbx>\r\n", "Refer-Sub: maybe\r\n"))


def test_refer_needs_exactly_one_refer_to() -> None:
    with pytest.raises(ParseError, match="missing"):
        refer_to_of(_refer(""))
    with pytest.raises(ParseError, match="more than one"):
        refer_to_of(_refer("Refer-To: <sip:1003@pbx>\r\nRefer-To: <sip:1004@pbx>\r\n"))


def test_referred_by() -> None:
    assert format_referred_by(SipURI.parse("sip:1001@pbx")) == "<sip:1001@pbx>"
    assert format_referred_by("sip:1001@pbx") == "<sip:1001@pbx>"
    na = NameAddr.parse('"Joe" <sip:1001@pbx>;cid="x@y"')
    assert parse_referred_by(format_referred_by(na)) == na
    with pytest.raises(ParseError):
        parse_referred_by("<sip:1001@pbx")


# ---------------------------------------------------------------------- NOTIFY


def test_sipfrag_bodies() -> None:
    assert sipfrag(100) == b"SIP/2.0 100 Trying\r\n"
    assert sipfrag(200) == b"SIP/2.0 200 OK\r\n"
    assert sipfrag(486, "Busy Here") == b"SIP/2.0 486 Busy Here\r\n"
    assert sipfrag(299) == b"SIP/2.0 299 \r\n"
    for bad in (99, 700):
        with pytest.raises(ValueError):
            sipfrag(bad)
    with pytest.raises(ValueError):
        sipfrag(200, "OK\r\nVia: x")
    for status in (100, 180, 183, 200, 404, 503, 603):
        assert parse_sipfrag(sipfrag(status)) == (status, sipfrag(status)[12:-2].decode())


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"SIP/2.0 200 OK", (200, "OK")),  # no CRLF (some phones)
        (b"\r\nSIP/2.0 180 Ringing\r\n", (180, "Ringing")),
        (b"sip/2.0 603 Declined\r\nContent-Length: 0\r\n\r\n", (603, "Declined")),
        (b"SIP/2.0 100\r\n", (100, "")),
        (b"SIP/2.0 503 Service Unavailable\r\nRetry-After: 10\r\n", (503, "Service Unavailable")),
    ],
)
def test_parse_sipfrag(body: bytes, expected: tuple[int, str]) -> None:
    assert parse_sipfrag(body) == expected


@pytest.mark.parametrize(
    "body", [b"", b"\r\n", b"SIP/2.0 20 OK", b"SIP/2.0 800 X", b"INVITE sip:a@b SIP/2.0\r\n",
             b"SIP/3.0 200 OK", b"HTTP/1.1 200 OK", b"SIP/2.0 2000 OK", b"\xff\xfe"],
)
def test_parse_sipfrag_rejects(body: bytes) -> None:
    with pytest.raises(ParseError):
        parse_sipfrag(body)


def test_notify_headers_first_and_later_refers() -> None:
    assert notify_headers(100) == [
        ("Event", "refer"),
        ("Subscription-State", "active;expires=60"),
        ("Content-Type", "message/sipfrag;version=2.0"),
    ]
    hdrs, body = refer_notify(200, refer_id=93809824)
    assert dict(hdrs) == {
        "Event": "refer;id=93809824",
        "Subscription-State": "terminated;reason=noresource",
        "Content-Type": SIPFRAG_TYPE,
    }
    assert body == b"SIP/2.0 200 OK\r\n"
    hdrs, body = refer_notify(180, expires=30)
    assert dict(hdrs)["Subscription-State"] == "active;expires=30"
    assert parse_sipfrag(refer_notify(486)[1]) == (486, "Busy Here")
    assert dict(refer_notify(486)[0])["Subscription-State"].startswith("terminated")
    # what we send parses back with the receiving-side helpers
    assert parse_refer_event(dict(hdrs)["Event"]) is None
    assert parse_refer_event("refer;id=93809824") == 93809824
    assert parse_subscription_state("terminated;reason=noresource") == (
        "terminated", {"reason": "noresource"}
    )
    assert parse_subscription_state("Active ; expires=60") == ("active", {"expires": "60"})


@pytest.mark.parametrize("value", ["presence", "refer;id=abc", "refer;id=", "refer;id=²",
                                   "refer;id=12345678901"])
def test_parse_refer_event_rejects(value: str) -> None:
    with pytest.raises(ParseError):
        parse_refer_event(value)


def test_parse_subscription_state_rejects() -> None:
    with pytest.raises(ParseError):
        parse_subscription_state("")
    with pytest.raises(ParseError):
        parse_subscription_state("act ive")
