"""REFER (RFC 3515), Replaces (RFC 3891), Referred-By (RFC 3892) and Refer-Sub (RFC 4488).

Sans-IO helpers for call transfer: parse what a transferring phone sends, build what the
transferee side sends back.

* `parse_refer_to` reads a Refer-To value.  An attended transfer embeds the dialog to
  replace as an escaped URI header: ``<sip:bob@host?Replaces=id%40h%3Bto-tag%3Da%3Bfrom-tag%3Db>``
  (RFC 3891 §6.1).  Phones differ in the details (lower-case escapes, a raw '@' in the
  call-id, tag order, unescaped ';' inside <...>, no angle brackets for a blind transfer),
  and parsing is liberal about those and strict about what could misroute or inject:
  every problem raises `ParseError`, never anything else.
* A Replaces value names a dialog *as seen by the UA that receives it*: to-tag is that
  UA's local tag, from-tag its remote tag (RFC 3891 §3).  When a phone REFERs ccswitch
  with Replaces naming its other call through ccswitch, `Replaces.matches(call_id,
  dialog.local_tag, dialog.remote_tag)` finds our leg.
* Progress goes back in NOTIFYs carrying ``message/sipfrag`` (`refer_notify`): 100 Trying
  at once, then the final status of the new call, with ``Subscription-State: terminated``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, unquote_to_bytes

from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import REASONS, Message, canonical_name
from ccswitch.sip.uri import NameAddr, SipURI, is_token
from ccswitch.sip.uri import quote as quote_display

__all__ = [
    "SIPFRAG_TYPE",
    "ReferTarget",
    "Replaces",
    "format_refer_to",
    "format_referred_by",
    "format_replaces",
    "notify_headers",
    "parse_refer_event",
    "parse_refer_to",
    "parse_referred_by",
    "parse_replaces",
    "parse_sipfrag",
    "parse_subscription_state",
    "refer_notify",
    "refer_sub",
    "refer_to_of",
    "sipfrag",
]

SIPFRAG_TYPE = "message/sipfrag;version=2.0"

_MAX_LEN = 4096  # a Refer-To is a URI plus a Replaces: real ones are < 400 characters
# call-id = word ["@" word] (RFC 3261 §25.1)
_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CALL_ID_RE = re.compile(f"{_WORD}(?:@{_WORD})?")
# where the URI's headers begin: '?' followed by "name=" (a '?' may also sit in a user part)
_HDRS_START_RE = re.compile(r"\?(?=[A-Za-z][A-Za-z0-9\-.!%*_+`'~]*=)")
_QUOTED_RE = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_CTL_RE = re.compile(r"[\x00-\x1f\x7f]")
_SIPFRAG_RE = re.compile(
    r"SIP/2\.0[ \t]+([1-6][0-9][0-9])(?:[ \t]+([^\r\n]*))?(?:[\r\n]|$)", re.IGNORECASE
)
# characters left unescaped in a URI header value (RFC 3261 §25.1 hvalue)
_HVALUE_SAFE = "-_.!~*'()[]/?:+$"
_VISUAL_SEPARATORS = str.maketrans("", "", "-.()")  # RFC 3966 §3 visual-separator


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog a new INVITE replaces (RFC 3891)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    def matches(self, call_id: str, local_tag: str, remote_tag: str) -> bool:
        """Does this name our dialog (call_id, local_tag, remote_tag)?  RFC 3891 §3: the
        to-tag is the local tag and the from-tag the remote tag of the UA receiving it."""
        return (self.call_id == call_id and self.to_tag == local_tag
                and self.from_tag == remote_tag)

    def __str__(self) -> str:
        return format_replaces(self.call_id, self.to_tag, self.from_tag, self.early_only)


@dataclass(slots=True)
class ReferTarget:
    """A parsed Refer-To: where to send the transferee, and which dialog it replaces."""

    addr: NameAddr  # display name, the URI without its headers part, Refer-To parameters
    replaces: Replaces | None = None
    headers: dict[str, str] = field(default_factory=dict)  # other embedded headers, decoded

    @property
    def uri(self) -> SipURI | str:
        """The target URI (a SipURI; the text for tel: URIs), without '?headers'."""
        return self.addr.uri

    @property
    def method(self) -> str:
        """The method the REFER asks for (``;method=`` URI parameter, INVITE by default)."""
        u = self.addr.uri
        m = u.params.get("method") if isinstance(u, SipURI) else None
        return (m or "INVITE").upper()

    @property
    def user(self) -> str:
        """The dialled number or name: the URI's user part, unescaped.

        Phone numbers (tel: URIs, ``;user=phone``) lose visual separators and parameters
        (``+1-212-555-0101`` -> ``+12125550101``).  A URI without a user part such as
        ``sip:2002`` (seen from softphones) gives its host when that is not a domain or an
        address; otherwise "".
        """
        u = self.addr.uri
        if isinstance(u, SipURI):
            if u.user is None:
                host = u.host
                return host if "." not in host and ":" not in host else ""
            if u.params.get("user") == "phone":
                return unquote(u.user.split(";", 1)[0]).translate(_VISUAL_SEPARATORS)
            return unquote(u.user)
        return unquote(u[4:].split(";", 1)[0]).translate(_VISUAL_SEPARATORS)

    def __str__(self) -> str:
        return format_refer_to(self.addr.uri, self.replaces, display=self.addr.display,
                               headers=self.headers, params=self.addr.params)


# ---------------------------------------------------------------------- Replaces


def parse_replaces(value: str, *, strict: bool = True) -> Replaces:
    """Parse a Replaces value (the header, or the unescaped Refer-To URI header).

    ``98732@sip.example.com;from-tag=r33th4x0r;to-tag=ff87ff;early-only``.  RFC 3891
    requires both tags; with ``strict=False`` a missing tag is accepted as "" (older
    baresip sent the call-id alone) and the caller matches on what it has.
    """
    text = value.strip()
    if not text:
        raise ParseError("empty Replaces")
    if len(text) > _MAX_LEN:
        raise ParseError("Replaces too long")
    call_id, *params = text.split(";")
    call_id = call_id.strip()
    if _CALL_ID_RE.fullmatch(call_id) is None:
        raise ParseError(f"bad call-id in Replaces: {call_id[:60]!r}")
    tags: dict[str, str] = {}
    early = False
    for i, p in enumerate(params):
        name, eq, v = p.partition("=")
        name = name.strip().lower()
        v = v.strip()
        if not name:
            if i == len(params) - 1 and not eq:
                continue  # one trailing ';' is harmless
            raise ParseError("empty parameter in Replaces")
        if not is_token(name):
            raise ParseError(f"bad parameter name in Replaces: {name[:30]!r}")
        if name in ("to-tag", "from-tag"):
            if name in tags:
                raise ParseError(f"more than one {name} in Replaces")
            if v and not is_token(v):
                raise ParseError(f"bad {name} in Replaces: {v[:40]!r}")
            if not v and strict:
                raise ParseError(f"empty {name} in Replaces")
            tags[name] = v
        elif name == "early-only":
            early = True
        # other generic-params are allowed and ignored (RFC 3891 §6.1)
    if strict and ("to-tag" not in tags or "from-tag" not in tags):
        raise ParseError("Replaces needs a to-tag and a from-tag")
    return Replaces(call_id, tags.get("to-tag", ""), tags.get("from-tag", ""), early)


def format_replaces(call_id: str, to_tag: str, from_tag: str, early_only: bool = False) -> str:
    """The Replaces header value (unescaped; `format_refer_to` escapes it for a URI).

    An empty tag is left out: only a leniently parsed Replaces has one.
    """
    if _CALL_ID_RE.fullmatch(call_id) is None:
        raise ValueError(f"bad call-id {call_id!r}")
    s = call_id
    for name, tag in (("to-tag", to_tag), ("from-tag", from_tag)):
        if tag:
            if not is_token(tag):
                raise ValueError(f"bad tag {tag!r}")
            s += f";{name}={tag}"
    return s + ";early-only" if early_only else s


# ---------------------------------------------------------------------- Refer-To


def _unescape(s: str) -> str:
    if "%" in s:
        try:
            s = unquote_to_bytes(s).decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("bad escaping in Refer-To header value") from None
    if _CTL_RE.search(s):
        # a decoded CR/LF would let the REFER's author inject headers into our INVITE
        raise ParseError("control character in Refer-To header value")
    return s


def _split_uri_headers(uri_text: str) -> tuple[str, str | None]:
    """'sip:b@h;p?Replaces=..' -> ('sip:b@h;p', 'Replaces=..').

    Found by '?name=' rather than by the first '@', which may sit unescaped in a call-id.
    """
    m = _HDRS_START_RE.search(uri_text)
    if m is None:
        return uri_text, None
    return uri_text[: m.start()], uri_text[m.end():]


def parse_refer_to(value: str, *, strict: bool = True) -> ReferTarget:
    """Parse a Refer-To header value (name-addr or addr-spec, RFC 3515 §2.1).

    Accepts sip:, sips: and tel: targets; anything else (http: "web refers") raises
    ParseError, as does a malformed URI, escape or Replaces.  `strict` is passed on to
    `parse_replaces`.
    """
    text = value.strip()
    if not text:
        raise ParseError("empty Refer-To")
    if len(text) > _MAX_LEN:
        raise ParseError("Refer-To too long")
    # find the URI text: inside <...> (after an optional display name) or the addr-spec
    if text.startswith('"'):
        q = _QUOTED_RE.match(text)
        if q is None:
            raise ParseError("unterminated quoted display name in Refer-To")
        lt = text.find("<", q.end())
        if lt < 0 or text[q.end():lt].strip():
            raise ParseError("display name not followed by <uri> in Refer-To")
    else:
        lt = text.find("<")
        if lt > 0 and 0 <= text.find(";") < lt:
            lt = -1  # the '<' is in a parameter of an addr-spec (+sip.instance="<urn:..>")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise ParseError("unterminated <uri> in Refer-To")
        uri_text, hdrs = _split_uri_headers(text[lt + 1 : gt])
        rebuilt = text[: lt + 1] + uri_text + text[gt:]
    else:
        uri_text, hdrs = _split_uri_headers(text)
        params = ""
        if hdrs is not None:
            # addr-spec: what follows the headers after ';' are Refer-To parameters
            hdrs, semi, params = hdrs.partition(";")
            params = semi + params
        rebuilt = uri_text + params
    addr = NameAddr.parse(rebuilt)
    uri = addr.uri
    if isinstance(uri, SipURI) and uri.headers is not None:
        raise ParseError("bad headers in Refer-To URI")  # a '?' not followed by name=value
    if isinstance(uri, str):
        if uri[:4].lower() != "tel:":
            raise ParseError(f"unsupported Refer-To URI {uri[:40]!r}")
        if len(uri) <= 4:
            raise ParseError("empty tel: URI in Refer-To")

    headers: dict[str, str] = {}
    replaces: Replaces | None = None
    if hdrs is not None:
        for item in hdrs.split("&"):
            if not item:
                continue
            name, eq, raw = item.partition("=")
            if not eq or not is_token(name):
                raise ParseError(f"bad header in Refer-To URI: {item[:40]!r}")
            cname = canonical_name(name)
            if cname in headers or (cname == "Replaces" and replaces is not None):
                raise ParseError(f"{cname[:30]} twice in Refer-To URI")
            decoded = _unescape(raw)
            if cname == "Replaces":
                replaces = parse_replaces(decoded, strict=strict)
            else:
                headers[cname] = decoded
    return ReferTarget(addr, replaces, headers)


def format_refer_to(
    uri: SipURI | str,
    replaces: Replaces | None = None,
    *,
    display: str | None = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str | None] | None = None,
) -> str:
    """A Refer-To value, ``<uri?Replaces=...>`` with RFC 3261 §19.1.1 escaping.

    Any headers already in `uri` are dropped: the target is `uri` plus `replaces` and
    `headers`.
    """
    if isinstance(uri, SipURI):
        base = uri.copy()
        base.headers = None
        s = str(base)
    else:
        s = uri
    items = []
    if replaces is not None:
        items.append("Replaces=" + quote(str(replaces), safe=_HVALUE_SAFE))
    for name, v in (headers or {}).items():
        if not is_token(name):
            raise ValueError(f"bad header name {name!r}")
        items.append(f"{name}={quote(v, safe=_HVALUE_SAFE)}")
    if items:
        s += "?" + "&".join(items)
    out = f"<{s}>"
    if display:
        out = quote_display(display) + " " + out
    for k, pv in (params or {}).items():
        out += f";{k}" if pv is None else f";{k}={pv}"
    return out


def refer_to_of(msg: Message, *, strict: bool = True) -> ReferTarget:
    """The Refer-To of a REFER: exactly one is required (RFC 3515 §2.4.1: else 400)."""
    values = msg.get_all("Refer-To")
    if not values:
        raise ParseError("missing Refer-To")
    if len(values) > 1:
        raise ParseError("more than one Refer-To")
    return parse_refer_to(values[0], strict=strict)


# ---------------------------------------------------------------------- Referred-By


def parse_referred_by(value: str) -> NameAddr:
    """Referred-By (RFC 3892): a name-addr or addr-spec, with an optional ``cid`` param."""
    if len(value) > _MAX_LEN:
        raise ParseError("Referred-By too long")
    return NameAddr.parse(value)


def format_referred_by(who: NameAddr | SipURI | str) -> str:
    """Referred-By value for the INVITE a REFER triggers (always in angle brackets: some
    PBXes reject the bare form)."""
    if isinstance(who, NameAddr):
        return str(who)
    return f"<{who}>"


def refer_sub(msg: Message) -> bool:
    """Does the REFER want the implicit subscription (NOTIFYs)?  False only for
    ``Refer-Sub: false`` (RFC 4488); answer such a REFER with ``Refer-Sub: false`` too."""
    v = msg.get("Refer-Sub")
    if v is None:
        return True
    word = v.split(";", 1)[0].strip().lower()
    if word == "true":
        return True
    if word == "false":
        return False
    raise ParseError(f"bad Refer-Sub {v[:30]!r}")


# ---------------------------------------------------------------------- NOTIFY / sipfrag


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """A message/sipfrag body with a status line: ``b"SIP/2.0 100 Trying\\r\\n"``."""
    if not 100 <= status <= 699:
        raise ValueError(f"bad status {status}")
    if reason is None:
        reason = REASONS.get(status, "")
    if _CTL_RE.search(reason):
        raise ValueError("control character in reason phrase")
    return f"SIP/2.0 {status} {reason}\r\n".encode()


def parse_sipfrag(body: bytes | str) -> tuple[int, str]:
    """(status, reason) from the status line of a sipfrag NOTIFY body.

    Tolerates leading blank lines, a missing CRLF and headers after the status line.
    """
    if isinstance(body, bytes):
        body = body[:_MAX_LEN].decode("utf-8", "replace")
    m = _SIPFRAG_RE.match(body.lstrip("\r\n \t"))
    if m is None:
        raise ParseError("sipfrag without a SIP/2.0 status line")
    return int(m.group(1)), (m.group(2) or "").strip()


def notify_headers(status: int, *, refer_id: int | None = None,
                   expires: int = 60) -> list[tuple[str, str]]:
    """Event, Subscription-State and Content-Type of a REFER progress NOTIFY.

    `refer_id` is the REFER's CSeq number, required when the REFER was not the first in
    its dialog (RFC 3515 §2.4.6); a final `status` (>= 200) terminates the subscription.
    """
    event = "refer" if refer_id is None else f"refer;id={refer_id}"
    state = "terminated;reason=noresource" if status >= 200 else f"active;expires={expires}"
    return [("Event", event), ("Subscription-State", state), ("Content-Type", SIPFRAG_TYPE)]


def refer_notify(status: int, reason: str | None = None, *, refer_id: int | None = None,
                 expires: int = 60) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and body of the NOTIFY reporting `status` of the referred call."""
    return notify_headers(status, refer_id=refer_id, expires=expires), sipfrag(status, reason)


def parse_refer_event(value: str) -> int | None:
    """The id of an ``Event: refer[;id=N]`` header (None without id); ParseError when the
    event package is not refer or the id is not a number."""
    pkg, *params = value.split(";")
    if pkg.strip().lower() != "refer":
        raise ParseError(f"not a refer event: {value[:30]!r}")
    for p in params:
        name, _, v = p.partition("=")
        if name.strip().lower() == "id":
            v = v.strip()
            if not v.isascii() or not v.isdigit() or len(v) > 10:
                raise ParseError(f"bad refer event id {v[:20]!r}")
            return int(v)
    return None


def parse_subscription_state(value: str) -> tuple[str, dict[str, str | None]]:
    """``terminated;reason=noresource`` -> ("terminated", {"reason": "noresource"})."""
    state, *params = value.split(";")
    state = state.strip().lower()
    if not is_token(state):
        raise ParseError(f"bad Subscription-State {value[:30]!r}")
    out: dict[str, str | None] = {}
    for p in params:
        name, eq, v = p.partition("=")
        name = name.strip().lower()
        if not name:
            continue
        out[name] = v.strip() if eq else None
    return state, out
