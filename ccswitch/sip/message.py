"""SIP message model, parser and serializer (RFC 3261 §7, §20, §25).

`parse_message(data)` turns one datagram (or one framed stream message) into a
`Request` or `Response`; `msg.to_bytes()` turns it back.  Header names are
canonicalised (compact forms expanded, case normalised) at parse time; values
are kept as text and parsed on demand, with the few that every message needs
(top Via, CSeq, Call-ID, From/To tags) cached.

A malformed message raises `ParseError` whose text is fit for a 400 reason
phrase.  `BadRequest` additionally carries what was parsed so far, so the
caller can still answer it.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

from ccswitch.sip.errors import ParseError
from ccswitch.sip.uri import NameAddr, SipURI, Via, is_token, parse_any_uri

SIP_VERSION = "SIP/2.0"

COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "b": "Referred-By", "u": "Allow-Events",
    "x": "Session-Expires", "a": "Accept-Contact", "j": "Reject-Contact",
    "d": "Request-Disposition", "y": "Identity",
}

_SPECIAL_CASE = {
    "call-id": "Call-ID", "cseq": "CSeq", "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version", "rack": "RAck", "rseq": "RSeq", "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match", "p-asserted-identity": "P-Asserted-Identity",
    "p-preferred-identity": "P-Preferred-Identity",
}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1).  Authorization-style
# headers are not: their parameters contain commas.
MULTI_VALUE = frozenset({
    "Via", "Contact", "Route", "Record-Route", "Allow", "Supported", "Require",
    "Proxy-Require", "Unsupported", "Accept", "Accept-Encoding", "Accept-Language",
    "Content-Encoding", "Allow-Events", "In-Reply-To", "Warning", "Alert-Info",
    "Call-Info", "Error-Info", "Reason", "Path", "Service-Route",
})

_name_cache: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """'call-id' / 'i' / 'CALL-ID' -> 'Call-ID'."""
    c = _name_cache.get(name)
    if c is not None:
        return c
    low = name.lower()
    if len(low) == 1 and low in COMPACT:
        c = COMPACT[low]
    elif low in _SPECIAL_CASE:
        c = _SPECIAL_CASE[low]
    else:
        c = "-".join(p[:1].upper() + p[1:] for p in low.split("-"))
    if len(_name_cache) < 4096:  # bounded: names come from the network
        _name_cache[name] = c
    return c


# one list item: runs of plain characters, quoted strings and <...>, which hide commas.
# An unterminated quote or '<' runs to the end.  Possessive: linear on hostile input.
_MAX_QUOTES = 512  # in a value parsed on every message: bounds the regex work
_LIST_ITEM_RE = re.compile(r'(?:[^,"<]++|"(?:[^"\\]++|\\.)*+"?+|<[^>]*+>?+)++', re.DOTALL)


def split_commas(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and <...>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    if '"' not in value and "<" not in value:
        # common case (e.g. "Via: a, b"): nothing can hide a comma
        return [p for p in (x.strip() for x in value.split(",")) if p]
    return [p for p in (x.strip() for x in _LIST_ITEM_RE.findall(value)) if p]


def _first_item(value: str) -> str | None:
    """split_commas(value)[0] without splitting the rest (a Via list may be long)."""
    if value.count('"') > _MAX_QUOTES:
        raise ParseError("too many quoted strings")
    m = _LIST_ITEM_RE.match(value.lstrip(", \t"))  # skip empty items
    return m.group(0).strip() if m is not None else None


REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 301: "Moved Permanently",
    302: "Moved Temporarily", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}

_CSEQ_RE = re.compile(r"\s*+([0-9]++)\s++(\S++)\s*+")


def _uint(s: str) -> int | None:
    """A decimal of ASCII digits, or None.  Huge values are capped at 2**62 (int() would
    raise on more than 4300 digits) and non-ASCII digits such as '²' are refused."""
    if not s.isdigit() or not s.isascii():
        return None
    t = s.lstrip("0")
    if len(t) > 18:
        return 1 << 62
    return int(t) if t else 0


class Message:
    """Common part of requests and responses: ordered headers and a body."""

    __slots__ = ("_cache", "body", "headers")

    def __init__(self, headers: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = headers if headers is not None else []
        self.body = body
        self._cache: dict[str, object] = {}

    # ---- header access (names may be given in any case or compact form)
    def get(self, name: str, default: str | None = None) -> str | None:
        name = canonical_name(name)
        for n, v in self.headers:
            if n == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split into items."""
        name = canonical_name(name)
        vals = [v for n, v in self.headers if n == name]
        if name in MULTI_VALUE:
            out: list[str] = []
            for v in vals:
                out.extend(split_commas(v))
            return out
        return vals

    def has(self, name: str) -> bool:
        name = canonical_name(name)
        return any(n == name for n, _ in self.headers)

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence of the header by one value (at the first position)."""
        name = canonical_name(name)
        self._cache.clear()
        for i, (n, _) in enumerate(self.headers):
            if n == name:
                self.headers[i] = (name, value)
                self.headers[i + 1 :] = [h for h in self.headers[i + 1 :] if h[0] != name]
                return
        self.headers.append((name, value))

    def add(self, name: str, value: str, first: bool = False) -> None:
        name = canonical_name(name)
        self._cache.clear()
        if first:
            for i, (n, _) in enumerate(self.headers):
                if n == name:
                    self.headers.insert(i, (name, value))
                    return
            self.headers.insert(0, (name, value))
        else:
            self.headers.append((name, value))

    def remove(self, name: str) -> None:
        name = canonical_name(name)
        self._cache.clear()
        self.headers = [h for h in self.headers if h[0] != name]

    def remove_first(self, name: str) -> None:
        """Remove the first list item of a (possibly comma-joined) header, e.g. the top Via."""
        name = canonical_name(name)
        self._cache.clear()
        for i, (n, v) in enumerate(self.headers):
            if n == name:
                items = split_commas(v)
                if len(items) <= 1:
                    del self.headers[i]
                else:
                    self.headers[i] = (n, ", ".join(items[1:]))
                return

    # ---- commonly used parsed views (cached until a header changes)
    @property
    def call_id(self) -> str:
        v = self.get("Call-ID")
        if v is None:
            raise ParseError("missing Call-ID")
        return v

    @property
    def cseq(self) -> tuple[int, str]:
        c = self._cache.get("cseq")
        if c is None:
            v = self.get("CSeq")
            if v is None:
                raise ParseError("missing CSeq")
            m = _CSEQ_RE.fullmatch(v)
            if not m:
                raise ParseError("invalid CSeq")
            num = _uint(m.group(1))
            if num is None or num >= 2**31:
                raise ParseError("CSeq number too large")
            c = self._cache["cseq"] = (num, m.group(2))
        return c  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        c = self._cache.get("vias")
        if c is None:
            c = self._cache["vias"] = [Via.parse(v) for v in self.get_all("Via")]
        return c  # type: ignore[return-value]

    @property
    def via(self) -> Via:
        c = self._cache.get("via")
        if c is None:
            v = self.get("Via")
            top = _first_item(v) if v is not None else None
            if top is None:
                raise ParseError("missing Via")
            c = self._cache["via"] = Via.parse(top)
        return c  # type: ignore[return-value]

    def _addr(self, name: str) -> NameAddr:
        c = self._cache.get(name)
        if c is None:
            v = self.get(name)
            if v is None:
                raise ParseError(f"missing {name}")
            c = self._cache[name] = NameAddr.parse(v)
        return c  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        return self._addr("From")

    @property
    def to(self) -> NameAddr:
        return self._addr("To")

    @property
    def from_tag(self) -> str | None:
        return self.from_.tag

    @property
    def to_tag(self) -> str | None:
        return self.to.tag

    def contacts(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.get_all("Contact") if v != "*"]

    @property
    def content_type(self) -> str:
        v = self.get("Content-Type")
        return v.split(";", 1)[0].strip().lower() if v else ""

    def _head_lines(self) -> Iterator[str]:
        for n, v in self.headers:
            if n != "Content-Length":
                yield f"{n}: {v}\r\n"
        yield f"Content-Length: {len(self.body)}\r\n\r\n"

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        head = self.start_line() + "\r\n" + "".join(self._head_lines())
        return head.encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(Message):
    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: SipURI | str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self.version = version

    @property
    def sip_uri(self) -> SipURI:
        if not isinstance(self.uri, SipURI):
            raise ParseError("Request-URI is not a SIP URI")
        return self.uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("reason", "status", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = SIP_VERSION,
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason if reason is not None else REASONS.get(status, "Unknown")
        self.version = version

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


class BadRequest(ParseError):
    """A request that parsed far enough to be answered with a 400."""

    def __init__(self, reason: str, request: Request) -> None:
        super().__init__(reason)
        self.request = request


# RFC 3261 §8.2.6.2 headers copied into a response
_RESPONSE_COPY = ("Via", "From", "To", "Call-ID", "CSeq")


def make_response(
    req: Request,
    status: int,
    reason: str | None = None,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """A response to `req` with Via, From, To (+ tag), Call-ID and CSeq copied."""
    hs: list[tuple[str, str]] = []
    add_tag = to_tag is not None and status > 100
    for n, v in req.headers:
        if n in _RESPONSE_COPY:
            if n == "To" and add_tag and _to_tag_or_none(req) is None:
                v = f"{v};tag={to_tag}"
            hs.append((n, v))
    hs.extend(headers)
    return Response(status, reason, hs, body)


def _to_tag_or_none(req: Request) -> str | None:
    # the parsed To (cached) rather than a substring test: "; tag = x" has a tag and
    # "<sip:a@b;tag=x>" (a URI parameter) has not
    try:
        return req.to_tag
    except ParseError:
        return None


_valid_names: dict[str, str] = {}  # raw header name -> canonical, names seen valid
_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_SIP_VERSION_RE = re.compile(r"[Ss][Ii][Pp]/[0-9]{1,3}\.[0-9]{1,3}")
_MAX_HEADER_BYTES = 64 * 1024
_MAX_HEADER_LINES = 1024  # bounds the per-line loop on hostile input (real: < 100)


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4 :]
    idx = data.find(b"\n\n")  # liberal: bare-LF senders
    if idx >= 0:
        return data[:idx], data[idx + 2 :]
    # no empty line: a datagram carrying only headers
    return data.rstrip(b"\r\n"), b""


def parse_message(data: bytes, stream: bool = False) -> Request | Response:
    """Parse one SIP message.  Raises ParseError (or BadRequest) with the problem.

    A request with a SIP version other than 2.0 is returned unvalidated (its syntax is
    unknown); the caller answers it 505 after checking `.version` (RFC 3261 §8.2.5).
    """
    # leading CRLFs are allowed before the start line (RFC 3261 §7.5)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    if not data:
        raise ParseError("empty message")
    head_b, body = _split_head(data)
    if len(head_b) > _MAX_HEADER_BYTES:
        raise ParseError("headers too large")
    try:
        head = head_b.decode("utf-8")
    except UnicodeDecodeError:
        head = head_b.decode("utf-8", "surrogateescape")
    if "\r" in head:
        head = head.replace("\r\n", "\n")
    lines = head.split("\n")
    if len(lines) > _MAX_HEADER_LINES:
        raise ParseError("too many header lines")
    start = lines[0]
    headers: list[tuple[str, str]] = []
    folded: list[str] | None = None  # continuation lines of headers[-1], joined once
    known = _valid_names
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and folded is None:
            # fast path: a header name seen before (never a continuation line: cached
            # names are tokens, which cannot start with SP or HT)
            cname = known.get(name)
            if cname is not None:
                headers.append((cname, value.strip()))
                continue
        if line[:1] in (" ", "\t"):
            # folded continuation (RFC 3261 §7.3.1): join with one space
            if not headers:
                raise ParseError("continuation line before first header")
            part = line.strip()
            if part:
                if folded is None:
                    folded = [headers[-1][1]] if headers[-1][1] else []
                folded.append(part)
            continue
        if folded is not None:
            headers[-1] = (headers[-1][0], " ".join(folded))
            folded = None
        if not colon:
            if not line.strip():
                continue
            raise ParseError(f"malformed header line {line[:40]!r}")
        cname = _valid_names.get(name)
        if cname is None:
            sname = name.rstrip(" \t")
            if not sname or not is_token(sname):
                raise ParseError(f"bad header name {sname[:40]!r}")
            cname = canonical_name(sname)
            if len(_valid_names) < 4096:
                _valid_names[name] = cname  # keyed by the raw name, as looked up
        headers.append((cname, value.strip()))
    if folded is not None:
        headers[-1] = (headers[-1][0], " ".join(folded))

    msg: Request | Response
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2:
            raise ParseError("bad status line")
        version, code = parts[0], parts[1]
        if version.upper() != SIP_VERSION:
            raise ParseError(f"unsupported version {version[:20]!r}")
        if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
            raise ParseError(f"bad status code {code[:20]!r}")
        msg = Response(int(code), parts[2] if len(parts) > 2 else "", headers)
    else:
        line_error: str | None = None
        parts = start.split(" ")
        if len(parts) == 3:
            method, uri_s, version = parts
        else:
            # extra or trailing SP (RFC 4475 lwsstart, trws) or LWS inside the URI (lwsruri):
            # invalid, but if it still looks like a Request-Line it is answerable with a 400
            parts = start.split()
            if len(parts) < 3 or not _SIP_VERSION_RE.fullmatch(parts[-1]):
                raise ParseError("bad request line")
            method, uri_s, version = parts[0], " ".join(parts[1:-1]), parts[-1]
            line_error = (
                "whitespace in Request-URI" if len(parts) > 3
                else "extra whitespace in Request-Line"
            )
        if _METHOD_RE.fullmatch(method) is None:
            raise ParseError(f"bad method {method[:20]!r}")
        uri: SipURI | str = uri_s
        if version.upper() == SIP_VERSION:
            version = SIP_VERSION
        elif _SIP_VERSION_RE.fullmatch(version):
            # answerable, but with 505 (RFC 3261 §8.2.5; RFC 4475 badvers): the rest of
            # the message may follow another version's syntax, so it is not validated
            with contextlib.suppress(ParseError):
                uri = parse_any_uri(uri_s)
            return Request(method, uri, headers, body, version)
        else:
            raise ParseError(f"bad SIP version {version[:20]!r}")
        if line_error is None:
            try:
                uri = parse_any_uri(uri_s)
            except ParseError as e:
                line_error = f"bad Request-URI: {e.reason}"
            else:
                if isinstance(uri, SipURI) and uri.headers is not None:
                    # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI
                    line_error = "headers not allowed in Request-URI"
        msg = Request(method, uri, headers, b"", version)
        if line_error is not None:
            raise BadRequest(line_error, msg)

    # ---- body framing (RFC 3261 §18.3)
    cl_s: str | None = None
    names = [n for n, _ in headers]
    if "Content-Length" in names:
        for n, v in headers:
            if n == "Content-Length":
                if cl_s is not None and v != cl_s:
                    # RFC 4475 mcl01: as unframeable as an invalid value
                    raise _bad(msg, "conflicting Content-Length values")
                cl_s = v
    if cl_s is not None:
        cl = _uint(cl_s)
        if cl is None:
            raise _bad(msg, "invalid Content-Length")
        if cl > len(body):
            raise _bad(msg, "Content-Length larger than body")
        body = body[:cl]
    elif stream:
        raise _bad(msg, "missing Content-Length on stream transport")
    msg.body = body
    _validate(msg, names)
    return msg


def _bad(msg: Message, reason: str) -> ParseError:
    if isinstance(msg, Request):
        return BadRequest(reason, msg)
    return ParseError(reason)


_MANDATORY = ("Via", "From", "To", "Call-ID", "CSeq")


def _validate(msg: Request | Response, names: list[str]) -> None:
    """Mandatory headers (RFC 3261 §8.1.1) and their syntax.  `names`: the header names."""
    for name in _MANDATORY:
        count = names.count(name)
        if not count:
            raise _bad(msg, f"missing {name} header")
        if count > 1 and name != "Via":
            raise _bad(msg, f"duplicate {name} header")
    try:
        msg.via  # noqa: B018 - parse to validate
        msg.from_  # noqa: B018
        msg.to  # noqa: B018
        _num, method = msg.cseq
    except ParseError as e:
        raise _bad(msg, e.reason) from None
    if isinstance(msg, Request):
        if method != msg.method:
            raise _bad(msg, "CSeq method does not match request method")
        mf = msg.get("Max-Forwards")
        if mf is not None:
            hops = _uint(mf)
            if hops is None or hops > 255:
                raise _bad(msg, "invalid Max-Forwards")
        for name in ("Expires",):
            v = msg.get(name)
            if v is not None and _uint(v) is None:
                raise _bad(msg, f"invalid {name}")


class StreamFramer:
    """Splits a TCP byte stream into SIP messages using Content-Length (RFC 3261 §18.3).

    Also recognises RFC 5626 keep-alives: a CRLFCRLF "ping" yields b"\\r\\n\\r\\n" so
    the transport can answer it with a CRLF "pong".
    """

    MAX_MESSAGE = 256 * 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for the end of the headers
        self._total = -1  # size of the message at the head of the buffer, once known

    def feed(self, data: bytes) -> list[bytes]:
        """Append received bytes; return the complete messages (and pings) now available.

        Raises ParseError when the stream cannot be framed any more (the caller closes
        the connection: RFC 4475 §3.1.2.3)."""
        self._buf += data
        out: list[bytes] = []
        buf = self._buf
        while buf:
            total = self._total
            if total < 0:
                if buf[0] in (13, 10):
                    # keep-alive ping, or CRLFs between messages
                    if buf[:4] == b"\r\n\r\n":
                        out.append(b"\r\n\r\n")
                        del buf[:4]
                        continue
                    if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                        break  # maybe a ping still arriving
                    del buf[:1]
                    continue
                # resume the search where the last feed() stopped (no quadratic rescans)
                end = buf.find(b"\r\n\r\n", self._scan)
                if end < 0:
                    if len(buf) > _MAX_HEADER_BYTES:
                        raise ParseError("headers too large")
                    self._scan = max(0, len(buf) - 3)
                    break
                if end > _MAX_HEADER_BYTES:
                    raise ParseError("headers too large")
                self._scan = 0
                cl = _find_content_length(bytes(buf[:end]))
                if cl is None:
                    raise ParseError("missing Content-Length on stream transport")
                total = end + 4 + cl
                if total > self.MAX_MESSAGE:
                    raise ParseError("message too large")
                self._total = total
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._total = -1
        return out


# a Content-Length line, its value possibly folded onto the next line
_CL_RE = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(?:\r?\n[ \t]+)?([^\r\n]*)")


def _find_content_length(head: bytes) -> int | None:
    """The Content-Length of a header block; ParseError if invalid or conflicting."""
    cl: int | None = None
    for m in _CL_RE.finditer(head):
        raw = m.group(1).strip(b" \t")
        v = _uint(raw.decode("ascii", "replace"))
        if v is None:
            raise ParseError("invalid Content-Length")
        if cl is not None and v != cl:
            raise ParseError("conflicting Content-Length values")
        cl = v
    return cl
