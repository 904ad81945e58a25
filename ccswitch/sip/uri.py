"""SIP URI, name-addr and Via types (RFC 3261 §19.1, §20.10, §20.42).

Pure parsing and formatting; no I/O.  Parsers are liberal where real phones
deviate harmlessly and strict where a mistake would misroute a request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ccswitch.sip.errors import ParseError

# token chars (RFC 3261 §25.1)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)$")
_PORT_RE = re.compile(r"^[0-9]{1,5}$")
# user part: unreserved / escaped / user-unreserved (generous)
_USER_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]*$")
_PASSWORD_RE = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,%]*$")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# sent-protocol SP sent-by: name / version / transport LWS rest
_VIA_RE = re.compile(r"([^\s/]++)\s*+/\s*+([^\s/]++)\s*+/\s*+([^\s/;]++)\s++(\S.*+)", re.DOTALL)


# Fast paths for the shapes nearly every message has (one C-level match each); anything
# else, including every error, takes the general parsers, which give the same result
# for these shapes.  Parameters have no quotes, spaces or empty names here.
_FAST_HOST = r"([A-Za-z0-9\-.]++|\[[0-9A-Fa-f:.]++\])(?::([0-9]{1,5}+))?+"
_FAST_PARAMS = r"((?:;[A-Za-z0-9\-.!%*_+`'~]++(?:=[^;\s\"<>,?@]*+)?+)*+)"
_FAST_URI_RE = re.compile(
    r"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/%]++)@)?+" + _FAST_HOST + _FAST_PARAMS)
_FAST_NAMEADDR_RE = re.compile(
    r'(?:"([^"\\\r\n]*+)"[ \t]*+|([A-Za-z0-9\-.!%*_+`\'~]++(?:[ \t]++[A-Za-z0-9\-.!%*_+`\'~]++)*+)'
    r"[ \t]*+)?+<(sips?:[^<>\s\"]++)>" + _FAST_PARAMS)
_FAST_VIA_RE = re.compile(r"SIP/2\.0/([A-Z]++) " + _FAST_HOST + _FAST_PARAMS)


def is_token(s: str) -> bool:
    return _TOKEN_RE.fullmatch(s) is not None


# a quoted-string (RFC 3261 §25.1) with quoted-pairs; group 1 is the closing quote, if any.
# Possessive quantifiers: linear time on hostile input.
_QUOTED = r'"(?:[^"\\]++|\\.)*+(")?+'
# one parameter: plain characters and whole quoted strings (which may hide ';')
_PARAM_ITEM_RE = re.compile(r'(?:[^;"]++|"(?:[^"\\]++|\\.)*+")*+', re.DOTALL)
_MAX_PARAMS = 256  # bounds per-message work on hostile input; real headers carry < 20
_MAX_QUOTES = 512  # likewise for '"' in one value (each costs a regex loop step)


def _split_quoted(s: str) -> list[str]:
    """s.split(";"), except inside quoted strings (only used when s contains '"')."""
    if s.count('"') > _MAX_QUOTES:
        raise ParseError("too many quoted strings")
    out: list[str] = []
    pos = 0
    n = len(s)
    while True:
        m = _PARAM_ITEM_RE.match(s, pos)  # *+ always matches, possibly empty
        end = m.end() if m is not None else pos
        out.append(s[pos:end])
        if end == n:
            return out
        if s[end] != ";":  # a '"' that never closes
            raise ParseError("unterminated quoted string in parameters")
        if len(out) > _MAX_PARAMS:
            raise ParseError("too many parameters")
        pos = end + 1


def _split_params(s: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    parts = _split_quoted(s) if '"' in s else s.split(";")
    last = len(parts) - 1
    if last >= _MAX_PARAMS:
        raise ParseError("too many parameters")
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name:
            # ";;" is a syntax error (RFC 4475 badinv01); one trailing ';' is tolerated
            if i == last and not eq and not value.strip():
                continue
            raise ParseError("empty parameter" if not eq else "empty parameter name")
        params[name.lower()] = value.strip() if eq else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def format_host(host: str) -> str:
    """Bracket bare IPv6 addresses."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def split_hostport(hp: str) -> tuple[str, int | None]:
    """'host', 'host:5060', '[::1]:5060' -> (host-without-brackets, port)."""
    hp = hp.strip()
    if hp.startswith("["):
        end = hp.find("]")
        if end < 0:
            raise ParseError("unterminated IPv6 reference")
        host, rest = hp[: end + 1], hp[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ParseError(f"bad host/port {hp[:60]!r}")
        port_s = rest[1:] if rest else ""
    else:
        host, colon, port_s = hp.partition(":")
        if colon and not port_s:
            raise ParseError(f"empty port in {hp[:60]!r}")
    if not host or _HOST_RE.fullmatch(host) is None:
        raise ParseError(f"bad host {host[:60]!r}")
    port: int | None = None
    if port_s:
        if _PORT_RE.fullmatch(port_s) is None or int(port_s) > 65535:
            raise ParseError(f"bad port {port_s[:20]!r}")
        port = int(port_s)
    return strip_brackets(host), port


@dataclass(slots=True)
class SipURI:
    scheme: str = "sip"
    user: str | None = None
    host: str = ""
    port: int | None = None
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None  # raw "?a=b&c=d" part, kept verbatim

    @classmethod
    def parse(cls, text: str) -> SipURI:
        m = _FAST_URI_RE.fullmatch(text)
        if m is not None:
            scheme, user, host, port_s, params_s = m.groups()
            if user is not None or "@" not in text:
                port = int(port_s) if port_s is not None else None
                if port is None or port <= 65535:
                    if host[0] == "[":
                        host = host[1:-1]
                    return cls(scheme, user, host, port, None,
                               _split_params(params_s[1:]) if params_s else {}, None)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> SipURI:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        scheme = scheme.lower()
        if not colon or scheme not in ("sip", "sips"):
            raise ParseError(f"not a SIP URI: {text[:60]!r}")
        if not rest or " " in rest or "\t" in rest:
            raise ParseError(f"bad SIP URI {text[:60]!r}")
        user: str | None = None
        password: str | None = None
        # userinfo first: user and password may contain '?', ';', '/' and ',' (RFC 3261
        # §25.1 user-unreserved; RFC 4475 intmeth) but never an unescaped '@'
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1 :]
            user, pcolon, pw = userinfo.partition(":")
            if pcolon:
                if _PASSWORD_RE.fullmatch(pw) is None:
                    raise ParseError("bad password in URI")
                password = pw
            if not user or _USER_RE.fullmatch(user) is None:
                raise ParseError(f"bad user part {user[:60]!r}")
        rest, qmark, hdrs = rest.partition("?")
        hostport, _, params_s = rest.partition(";")
        host, port = split_hostport(hostport)
        params = _split_params(params_s) if params_s else {}
        return cls(scheme, user, host, port, password, params, hdrs if qmark else None)

    @property
    def hostport(self) -> str:
        h = format_host(self.host)
        return h if self.port is None else f"{h}:{self.port}"

    def __str__(self) -> str:
        s = self.scheme + ":"
        if self.user is not None:
            s += self.user
            if self.password is not None:
                s += ":" + self.password
            s += "@"
        s += self.hostport + format_params(self.params)
        if self.headers is not None:
            s += "?" + self.headers
        return s

    @property
    def transport(self) -> str:
        t = self.params.get("transport")
        return (t or "udp").lower()

    def copy(self) -> SipURI:
        return SipURI(
            self.scheme, self.user, self.host, self.port, self.password, dict(self.params),
            self.headers,
        )


def parse_any_uri(text: str) -> SipURI | str:
    """A SipURI for sip:/sips:, the raw text for other absolute URIs (tel:, urn:...)."""
    text = text.strip()
    low = text[:5].lower()
    if low.startswith(("sip:", "sips:")):
        return SipURI.parse(text)
    scheme, colon, rest = text.partition(":")
    if not colon or not rest or _SCHEME_RE.fullmatch(scheme) is None:
        raise ParseError(f"bad URI {text[:60]!r}")
    if any(c in rest for c in " \t<>\""):
        raise ParseError(f"bad URI {text[:60]!r}")
    return text


_QUOTED_AT_START_RE = re.compile(_QUOTED, re.DOTALL)
# display-name as tokens separated by LWS (RFC 3261 §25.1 *(token LWS))
_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]++(?:\s++[A-Za-z0-9\-.!%*_+`'~]++)*+")


def _unquote(s: str) -> str:
    """Undo a quoted-string (RFC 3261 §25.1) including backslash escapes."""
    inner = s[1:-1]
    if "\\" not in inner:
        return inner
    # a backslash escapes the next character: split at escaped backslashes (two in a row),
    # drop the remaining backslashes.  str methods only: a regex substitution costs about a
    # microsecond per escape, which hostile 60 kB display names would multiply
    return "\\".join(p.replace("\\", "") for p in inner.split("\\\\"))


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class NameAddr:
    """From/To/Contact/Route values: [display] <uri> *(;param)."""

    uri: SipURI | str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    bracketed: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        m = _FAST_NAMEADDR_RE.fullmatch(text)
        if m is not None:
            quoted, tokens, uri_s, params_s = m.groups()
            display = quoted if quoted is not None else (tokens or None)
            uri = SipURI.parse(uri_s)
            return cls(uri, display, _split_params(params_s[1:]) if params_s else {}, True)
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> NameAddr:
        text = text.strip()
        if not text:
            raise ParseError("empty address")
        display: str | None = None
        if text.startswith('"'):
            # quoted display name, may contain escaped quotes
            m = _QUOTED_AT_START_RE.match(text)
            if m is None or m.group(1) is None:
                raise ParseError("unterminated quoted display name")
            display = _unquote(m.group(0))
            text = text[m.end() :].lstrip()
            if not text.startswith("<"):
                raise ParseError("display name not followed by <uri>")
        lt = text.find("<")
        if lt > 0 and display is None and 0 <= text.find(";") < lt:
            lt = -1  # the '<' is inside a parameter of an addr-spec, e.g. +sip.instance="<urn:..>"
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise ParseError("unterminated <uri>")
            if display is None:
                d = text[:lt].strip()
                display = d or None
                if d and _DISPLAY_TOKENS_RE.fullmatch(d) is None:
                    raise ParseError(f"bad display name {d[:40]!r}")
            uri = parse_any_uri(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
            if rest and not rest.startswith(";"):
                raise ParseError(f"junk after address: {rest[:30]!r}")
            params = _split_params(rest[1:]) if rest else {}
            return cls(uri, display, params, True)
        # addr-spec: parameters after the URI belong to the header (RFC 3261 §20)
        if "," in text or "?" in text:
            raise ParseError("addr-spec with ',' or '?' must be enclosed in <>")
        uri_s, _, params_s = text.partition(";")
        uri = parse_any_uri(uri_s)
        return cls(uri, None, _split_params(params_s) if params_s else {}, False)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def sip_uri(self) -> SipURI:
        if not isinstance(self.uri, SipURI):
            raise ParseError(f"not a SIP URI: {self.uri[:60]}")
        return self.uri

    def __str__(self) -> str:
        s = f"<{self.uri}>"
        if self.display:
            s = quote(self.display) + " " + s
        return s + format_params(self.params)

    def copy(self) -> NameAddr:
        uri = self.uri.copy() if isinstance(self.uri, SipURI) else self.uri
        return NameAddr(uri, self.display, dict(self.params), self.bracketed)


@dataclass(slots=True)
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _FAST_VIA_RE.fullmatch(text)
        if m is not None:
            transport, host, port_s, params_s = m.groups()
            port = int(port_s) if port_s is not None else None
            if port is None or port <= 65535:
                if host[0] == "[":
                    host = host[1:-1]
                return cls(transport, host, port,
                           _split_params(params_s[1:]) if params_s else {})
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> Via:
        # LWS is allowed around the '/' of sent-protocol and before sent-by (RFC 3261
        # §25.1 SLASH = SWS "/" SWS; RFC 4475 wsinv)
        m = _VIA_RE.fullmatch(text.strip())
        if m is None:
            raise ParseError("bad Via")
        name, version, transport, rest = m.groups()
        if name.upper() != "SIP" or version != "2.0":
            raise ParseError(f"bad Via protocol {name}/{version}/{transport}"[:60])
        transport = transport.upper()
        if not is_token(transport):
            raise ParseError("bad Via transport")
        sent_by, _, params_s = rest.partition(";")
        sent_by = sent_by.strip()
        if " " in sent_by or "\t" in sent_by:
            # whitespace is allowed around ':' only (COLON = SWS ":" SWS); "192.0.2.1 5060"
            # must not become host "192.0.2.15060"
            sent_by = ":".join(p.strip(" \t") for p in sent_by.split(":"))
        host, port = split_hostport(sent_by)
        params = _split_params(params_s) if params_s else {}
        return cls(transport, host, port, params)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def sent_by(self) -> str:
        h = format_host(self.host)
        return h if self.port is None else f"{h}:{self.port}"

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"
