"""A hand-made SIP client for e2e tests: raw requests over UDP or TCP, IPv4 or IPv6.

Used where a real phone cannot go (malformed input, IPv6, exact header checks).
It parses responses with its own few lines of code, not with ccswitch's parser,
so the tests do not check the product with itself (digest responses are computed
with ccswitch.sip.auth.build_authorization, which has its own unit tests against
RFC vectors).
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from dataclasses import dataclass, field


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse_response(data: bytes) -> RawResponse | None:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    first = lines[0].split(" ", 2)
    if len(first) < 2 or first[0] != "SIP/2.0" or not first[1].isdigit():
        return None
    headers = []
    for ln in lines[1:]:
        k, sep, v = ln.partition(":")
        if sep:
            headers.append((k.strip(), v.strip()))
    return RawResponse(int(first[1]), first[2] if len(first) > 2 else "", headers, body, data)


def fmt_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class RawSip:
    """One socket to the server.  ``async with RawSip(host, port) as s``."""

    def __init__(self, host: str, port: int, transport: str = "udp") -> None:
        self.host = host
        self.port = port
        self.transport = transport
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(fam, kind)
        self.sock.bind((host, 0))
        if transport == "tcp":
            self.sock.settimeout(5)
            self.sock.connect((host, port))
        self.sock.setblocking(False)
        self.local_port = int(self.sock.getsockname()[1])
        self._buf = b""
        self.user = "1001"

    async def __aenter__(self) -> RawSip:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # ---- building
    @property
    def local(self) -> str:
        return f"{fmt_host(self.host)}:{self.local_port}"

    @property
    def remote(self) -> str:
        return f"{fmt_host(self.host)}:{self.port}"

    def request(self, method: str, ruri: str | None = None, *, user: str | None = None,
                to_user: str | None = None, call_id: str | None = None, cseq: int = 1,
                branch: str | None = None, via_params: str = ";rport",
                extra: list[str] | None = None, body: bytes = b"",
                content_length: int | None = None, omit: tuple[str, ...] = (),
                contact: str | None = None, from_tag: str | None = None) -> bytes:
        user = user or self.user
        to_user = to_user or user
        ruri = ruri or f"sip:{self.remote}"
        tp = self.transport.upper()
        hs = [
            f"Via: SIP/2.0/{tp} {self.local};branch={branch or 'z9hG4bK' + secrets.token_hex(8)}"
            f"{via_params}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{self.remote}>;tag={from_tag or secrets.token_hex(4)}",
            f"To: <sip:{to_user}@{self.remote}>",
            f"Call-ID: {call_id or secrets.token_hex(10)}@test",
            f"CSeq: {cseq} {method}",
            f"Contact: {contact or f'<sip:{user}@{self.local};transport={self.transport}>'}",
            "User-Agent: ccswitch-e2e-raw",
            *(extra or []),
            f"Content-Length: {len(body) if content_length is None else content_length}",
        ]
        hs = [h for h in hs if h.split(":", 1)[0] not in omit]
        return (f"{method} {ruri} SIP/2.0\r\n" + "\r\n".join(hs) + "\r\n\r\n").encode() + body

    # ---- I/O
    async def send(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            await loop.sock_sendto(self.sock, data, (self.host, self.port))
        else:
            await loop.sock_sendall(self.sock, data)

    async def _recv_one(self, deadline: float) -> bytes | None:
        loop = asyncio.get_running_loop()
        if self.transport == "udp":
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                data, _ = await asyncio.wait_for(loop.sock_recvfrom(self.sock, 65535), left)
            except TimeoutError:
                return None
            return bytes(data)
        while True:
            # frame by Content-Length
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self._buf[:end].decode("utf-8", "replace")
                n = 0
                for ln in head.split("\r\n")[1:]:
                    k, _, v = ln.partition(":")
                    if k.strip().lower() in ("content-length", "l"):
                        n = int(v.strip() or 0)
                if len(self._buf) >= end + 4 + n:
                    msg, self._buf = self._buf[: end + 4 + n], self._buf[end + 4 + n:]
                    return msg
            elif self._buf.startswith(b"\r\n"):
                self._buf = self._buf.lstrip(b"\r\n")
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(self.sock, 65535), left)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self._buf += chunk

    async def recv(self, timeout: float = 3.0, skip_provisional: bool = True
                   ) -> RawResponse | None:
        """The next response (skipping 1xx unless asked), or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            data = await self._recv_one(deadline)
            if data is None:
                return None
            r = parse_response(data)
            if r is None:
                continue  # a request from the server (e.g. OPTIONS keep-alive): ignore
            if skip_provisional and r.status < 200:
                continue
            return r

    async def recv_request(self, method: str, timeout: float = 3.0) -> bytes | None:
        """The next request of `method` from the server (raw bytes), or None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            data = await self._recv_one(deadline)
            if data is None:
                return None
            if data.startswith(method.encode() + b" "):
                return data

    async def transact(self, data: bytes, timeout: float = 3.0) -> RawResponse | None:
        await self.send(data)
        return await self.recv(timeout)

    async def register(self, user: str, password: str, *, expires: int = 60,
                       to_user: str | None = None, via_params: str = ";rport",
                       contact: str | None = None
                       ) -> tuple[RawResponse | None, RawResponse | None]:
        """REGISTER -> 401 -> REGISTER with digest. Returns (challenge, final).

        ``contact`` (a full Contact value) registers another UA, e.g. a SIPp UAS."""
        from ccswitch.sip.auth import build_authorization

        call_id = secrets.token_hex(10)
        ruri = f"sip:{self.remote}"
        first = await self.transact(self.request(
            "REGISTER", ruri, user=user, to_user=to_user, call_id=call_id, cseq=1,
            via_params=via_params, contact=contact, extra=[f"Expires: {expires}"]))
        if first is None or first.status != 401:
            return first, None
        chal = first.get("WWW-Authenticate")
        assert chal is not None
        auth = build_authorization(chal, "REGISTER", ruri, user, password)
        final = await self.transact(self.request(
            "REGISTER", ruri, user=user, to_user=to_user, call_id=call_id, cseq=2,
            via_params=via_params, contact=contact,
            extra=[f"Expires: {expires}", f"Authorization: {auth}"]))
        return first, final

    async def options(self, timeout: float = 3.0) -> RawResponse | None:
        return await self.transact(self.request("OPTIONS"), timeout)


@dataclass
class RawCall:
    """Dialog state of a call placed by :func:`place_call` (enough for ACK and BYE)."""

    call_id: str
    from_tag: str
    to_tag: str
    from_user: str
    ruri: str
    cseq: int
    answer: RawResponse


async def place_call(s: RawSip, number: str, user: str, password: str, sdp: bytes,
                     timeout: float = 10.0, extra: list[str] | None = None) -> RawCall:
    """INVITE -> 401 -> ACK -> INVITE with digest -> 200 -> ACK, by hand."""
    from ccswitch.sip.auth import build_authorization

    call_id = secrets.token_hex(10)
    from_tag = secrets.token_hex(4)
    ruri = f"sip:{number}@{s.remote}"

    def invite(cseq: int, branch: str, hdrs: list[str]) -> bytes:
        return s.request("INVITE", ruri, user=user, to_user=number, call_id=call_id,
                         from_tag=from_tag, cseq=cseq, branch=branch, body=sdp,
                         extra=["Content-Type: application/sdp", *more, *hdrs])

    more = list(extra or [])

    b1 = "z9hG4bK" + secrets.token_hex(8)
    r = await s.transact(invite(1, b1, []), timeout)
    if r is None or r.status != 401:
        raise AssertionError(f"expected a 401 challenge, got {r}")
    to_hdr = r.get("To") or ""
    await s.send(_ack(s, ruri, user, number, call_id, from_tag, to_hdr, 1, b1))
    chal = r.get("WWW-Authenticate")
    assert chal is not None
    auth = build_authorization(chal, "INVITE", ruri, user, password)
    b2 = "z9hG4bK" + secrets.token_hex(8)
    r = await s.transact(invite(2, b2, [f"Authorization: {auth}"]), timeout)
    if r is None or r.status != 200:
        raise AssertionError(f"call not answered: {r}")
    to_hdr = r.get("To") or ""
    to_tag = to_hdr.split(";tag=")[1].split(";")[0]
    await s.send(_ack(s, ruri, user, number, call_id, from_tag, to_hdr, 2,
                      "z9hG4bK" + secrets.token_hex(8)))
    return RawCall(call_id, from_tag, to_tag, user, ruri, 2, r)


def _ack(s: RawSip, ruri: str, user: str, number: str, call_id: str, from_tag: str,
         to_hdr: str, cseq: int, branch: str) -> bytes:
    return (f"ACK {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{s.transport.upper()} {s.local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:{user}@{s.remote}>;tag={from_tag}\r\n"
            f"To: {to_hdr}\r\n"
            f"Call-ID: {call_id}@test\r\n"
            f"CSeq: {cseq} ACK\r\n"
            "Content-Length: 0\r\n\r\n").encode()


async def hang_up(s: RawSip, call: RawCall, timeout: float = 3.0) -> RawResponse | None:
    call.cseq += 1
    bye = (f"BYE {call.ruri} SIP/2.0\r\n"
           f"Via: SIP/2.0/{s.transport.upper()} {s.local};branch=z9hG4bK"
           f"{secrets.token_hex(8)};rport\r\n"
           "Max-Forwards: 70\r\n"
           f"From: <sip:{call.from_user}@{s.remote}>;tag={call.from_tag}\r\n"
           f"To: {call.answer.get('To')}\r\n"
           f"Call-ID: {call.call_id}@test\r\n"
           f"CSeq: {call.cseq} BYE\r\n"
           "Content-Length: 0\r\n\r\n").encode()
    return await s.transact(bye, timeout)
