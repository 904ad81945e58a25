"""Hand-made SIP datagrams for robustness tests (malformed input, odd requests).

    replies = await send_udp("127.0.0.1", port, malformed("no_call_id", "127.0.0.1", port))
    assert replies == [] or parse_response(replies[0]).status == 400

The server must answer a parseable-but-invalid request with 400 (when it can
find enough of Via to reply) or drop it, and never crash or stop answering;
tests usually send every :data:`MALFORMED_CASES` item and then check that a
normal OPTIONS still gets a 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from dataclasses import dataclass

from tests.peers import netutil

CRLF = "\r\n"


def new_branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


def build_request(
    method: str,
    uri: str,
    *,
    local_port: int,
    local_host: str = "127.0.0.1",
    from_uri: str = "sip:raw@127.0.0.1",
    to_uri: str | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    transport: str = "UDP",
    extra_headers: tuple[str, ...] = (),
    body: str = "",
    content_type: str | None = None,
    max_forwards: int = 70,
) -> bytes:
    """A well-formed request (start here and break one thing)."""
    h = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local_host}:{local_port};branch={branch or new_branch()};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_uri}>;tag={secrets.token_hex(4)}",
        f"To: <{to_uri or uri}>",
        f"Call-ID: {call_id or secrets.token_hex(8) + '@127.0.0.1'}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:raw@{local_host}:{local_port}>",
        *extra_headers,
    ]
    if body:
        h.append(f"Content-Type: {content_type or 'application/sdp'}")
    h.append(f"Content-Length: {len(body.encode())}")
    return (CRLF.join(h) + CRLF + CRLF + body).encode()


@dataclass
class Response:
    status: int
    reason: str
    headers: dict[str, list[str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        v = self.headers.get(name.lower())
        return v[0] if v else None


_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
            "l": "content-length", "c": "content-type", "k": "supported"}


def parse_response(data: bytes) -> Response:
    """Parse a SIP response (headers lower-cased, compact forms expanded)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0"):
        raise ValueError(f"not a SIP response: {lines[0]!r}")
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" not in line:
            continue
        k, v = line.split(":", 1)
        k = k.strip().lower()
        headers.setdefault(_COMPACT.get(k, k), []).append(v.strip())
    return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers, body, data)


async def send_udp(
    host: str, port: int, data: bytes, *, timeout: float = 2.0, until_final: bool = True,
    sock: socket.socket | None = None,
) -> list[bytes]:
    """Send one datagram from a fresh socket on 127.0.0.1 (or ``sock``) and collect
    replies for ``timeout`` s (or until the first final response if ``until_final``)."""
    netutil.assert_loopback(host)
    own = sock is None
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if own:
            s.bind((netutil.LOOPBACK, 0))
        s.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendto(s, data, (host, port))
        out: list[bytes] = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                pkt = await asyncio.wait_for(loop.sock_recv(s, 65535), left)
            except TimeoutError:
                break
            out.append(pkt)
            if until_final and pkt.startswith(b"SIP/2.0 ") and not pkt.startswith(b"SIP/2.0 1"):
                break
        return out
    finally:
        if own:
            s.close()


async def send_tcp(host: str, port: int, data: bytes, *, timeout: float = 2.0) -> bytes:
    """Send ``data`` on a new TCP connection and return whatever arrives in ``timeout`` s."""
    netutil.assert_loopback(host)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(data)
        await writer.drain()
        buf = b""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65535), left)
            except TimeoutError:
                break
            if not chunk:
                break
            buf += chunk
        return buf
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def local_port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def malformed(case: str, host: str, port: int, local_port: int = 9) -> bytes:
    """One malformed message of :data:`MALFORMED_CASES` aimed at ``host:port``.

    ``local_port`` is written into Via (where a server would send its 400)."""
    uri = f"sip:probe@{host}:{port}"

    def req(**kw: object) -> str:
        return build_request("OPTIONS", uri, local_port=local_port, **kw).decode()  # type: ignore[arg-type]

    good = req()
    if case == "garbage":
        return b"this is not SIP at all\r\n\r\n"
    if case == "empty":
        return b"\r\n\r\n"
    if case == "binary":
        return bytes(range(256)) * 4
    if case == "bad_start_line":
        return good.replace("OPTIONS " + uri + " SIP/2.0", "OPTIONS  SIP/2.0", 1).encode()
    if case == "bad_version":
        return good.replace("SIP/2.0\r\n", "SIP/3.0\r\n", 1).encode()
    if case == "bad_uri":
        return good.replace(uri, "sip:@@:::", 1).encode()
    if case == "no_call_id":
        return _drop(good, "Call-ID")
    if case == "no_cseq":
        return _drop(good, "CSeq")
    if case == "no_from":
        return _drop(good, "From")
    if case == "no_via":
        return _drop(good, "Via")
    if case == "bad_cseq":
        return _subst(good, "CSeq", "CSeq: abc OPTIONS")
    if case == "cseq_method_mismatch":
        return _subst(good, "CSeq", "CSeq: 1 INVITE")
    if case == "negative_content_length":
        return _subst(good, "Content-Length", "Content-Length: -5")
    if case == "short_body":
        return _subst(good, "Content-Length", "Content-Length: 500").replace(
            b"\r\n\r\n", b"\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n", 1)
    if case == "huge_header":
        big = "X-Big: " + "A" * 60000 + "\r\n"
        return good.replace("Max-Forwards", big + "Max-Forwards", 1).encode()
    if case == "many_headers":
        extra = "".join(f"X-H{i}: {i}\r\n" for i in range(2000))
        return good.replace("Max-Forwards", extra + "Max-Forwards", 1).encode()
    if case == "no_header_colon":
        return good.replace("Max-Forwards: 70", "Max-Forwards 70", 1).encode()
    if case == "non_utf8":
        return good.encode().replace(b"sip:raw@", b"sip:\xff\xfe\xc3(@", 1)
    if case == "lf_only":
        return good.replace("\r\n", "\n").encode()
    if case == "truncated":
        return good.encode()[: len(good) // 2]
    if case == "max_forwards_zero":
        return _subst(good, "Max-Forwards", "Max-Forwards: 0")
    if case == "unknown_method":
        return build_request("FROBNICATE", uri, local_port=local_port)
    if case == "invite_bad_sdp":
        return build_request("INVITE", uri, local_port=local_port,
                             body="v=0\r\nthis is not sdp\r\nm=audio notaport RTP/AVP x\r\n")
    raise KeyError(case)


def _drop(msg: str, name: str) -> bytes:
    return "\r\n".join(ln for ln in msg.split("\r\n") if not ln.startswith(name + ":")).encode()


def _subst(msg: str, name: str, line: str) -> bytes:
    lines = msg.split("\r\n")
    return "\r\n".join(line if ln.startswith(name + ":") else ln for ln in lines).encode()


MALFORMED_CASES = (
    "garbage", "empty", "binary", "bad_start_line", "bad_version", "bad_uri", "no_call_id",
    "no_cseq", "no_from", "no_via", "bad_cseq", "cseq_method_mismatch",
    "negative_content_length", "short_body", "huge_header", "many_headers", "no_header_colon",
    "non_utf8", "lf_only", "truncated", "max_forwards_zero", "unknown_method", "invite_bad_sdp",
)
"""Expected handling (RFC 3261): 400 for parseable requests with a usable Via
(missing mandatory header, bad CSeq/Content-Length, bad URI), 505 for bad_version,
483 for max_forwards_zero, 405/501 for unknown_method, 488/400 for invite_bad_sdp;
garbage/empty/binary/truncated/no_via: silently dropped.  lf_only is legal
(RFC 3261 7.5 tolerates bare LF) - a 200 is fine.  huge_header may exceed a
UDP-sized limit: drop or 513."""


async def send_malformed(case: str, host: str, port: int, *, timeout: float = 1.0) -> list[bytes]:
    """Send :func:`malformed` ``case`` from a fresh socket whose port is written into Via."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((netutil.LOOPBACK, 0))
        data = malformed(case, host, port, local_port_of(s))
        return await send_udp(host, port, data, timeout=timeout, sock=s)
    finally:
        s.close()


async def options(host: str, port: int, *, user: str = "ping",
                  timeout: float = 2.0) -> Response | None:
    """OPTIONS to ``sip:<user>@host:port``; the final response, or None if nothing came."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((netutil.LOOPBACK, 0))
        data = build_request("OPTIONS", f"sip:{user}@{host}:{port}", local_port=local_port_of(s))
        for pkt in await send_udp(host, port, data, timeout=timeout, sock=s):
            r = parse_response(pkt)
            if r.status >= 200:
                return r
        return None
    finally:
        s.close()
