"""Thin asyncio transports: they move bytes between sockets and the SIP core.

No protocol logic lives here: UDP datagrams and framed TCP messages go to
`on_data(bytes, Peer)`, and `send(bytes, Peer)` picks the socket for a peer.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass

from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import StreamFramer
from ccswitch.sip.transaction import Peer

log = logging.getLogger("ccswitch.transport")

OnData = Callable[[bytes, Peer], None]

# A datagram bigger than this cannot be SIP we want; drop it before parsing.
MAX_DATAGRAM = 65535


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, on_data: OnData) -> None:
        self.on_data = on_data
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) < 4:
            return  # keep-alive CRLFs and noise
        try:
            self.on_data(data, Peer("udp", str(addr[0]), int(addr[1])))
        except Exception:  # the listener must survive any input
            log.exception("error processing datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class TcpConnection(asyncio.Protocol):
    def __init__(self, owner: Transports, conn_id: int) -> None:
        self.owner = owner
        self.conn_id = conn_id
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Peer | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        addr = transport.get_extra_info("peername")
        self.peer = Peer("tcp", str(addr[0]), int(addr[1]), self.conn_id)
        self.owner._conns[self.conn_id] = self
        self.owner._by_addr[(self.peer.host, self.peer.port)] = self.conn_id

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None and self.transport is not None
        try:
            msgs = self.framer.feed(data)
        except ParseError as e:
            log.info("closing TCP connection from %s: %s", self.peer.host, e.reason)
            self.transport.close()
            return
        for m in msgs:
            if m == b"\r\n\r\n":
                self.transport.write(b"\r\n")  # RFC 5626 keep-alive pong
                continue
            try:
                self.owner.on_data(m, self.peer)
            except Exception:
                log.exception("error processing TCP message from %s", self.peer.host)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._conns.pop(self.conn_id, None)
        if self.peer is not None:
            key = (self.peer.host, self.peer.port)
            if self.owner._by_addr.get(key) == self.conn_id:
                del self.owner._by_addr[key]


@dataclass
class Listener:
    transport: str
    host: str
    port: int
    family: int
    server: object


class Transports:
    """Every SIP listener of the server, and the way out to a peer."""

    def __init__(self, on_data: OnData) -> None:
        self.on_data = on_data
        self.listeners: list[Listener] = []
        self._udp: dict[int, asyncio.DatagramTransport] = {}  # family -> transport
        self._conns: dict[int, TcpConnection] = {}
        self._by_addr: dict[tuple[str, int], int] = {}
        self._conn_ids = itertools.count(1)
        self._pending: dict[tuple[str, int], list[bytes]] = {}
        self._connecting: set[asyncio.Future[None]] = set()

    async def listen(self, transport: str, host: str, port: int) -> Listener:
        """Bind one listener; raises OSError (e.g. port in use) for the caller to report."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if transport == "udp":
            sock = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            # a large receive buffer absorbs bursts (load tests, many phones re-registering)
            for size in (4 * 1024 * 1024, 1024 * 1024):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                    break
                except OSError:
                    continue
            t, _ = await loop.create_datagram_endpoint(lambda: UdpProtocol(self.on_data),
                                                       sock=sock)
            real_port = int(sock.getsockname()[1])
            self._udp.setdefault(family, t)
            lst = Listener("udp", host, real_port, family, t)
        else:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            srv = await loop.create_server(
                lambda: TcpConnection(self, next(self._conn_ids)), sock=sock)
            real_port = int(sock.getsockname()[1])
            lst = Listener("tcp", host, real_port, family, srv)
        self.listeners.append(lst)
        return lst

    def send(self, data: bytes, peer: Peer) -> None:
        if peer.transport == "udp":
            family = socket.AF_INET6 if ":" in peer.host else socket.AF_INET
            t = self._udp.get(family)
            if t is None:
                log.warning("no UDP listener for %s", peer.host)
                return
            t.sendto(data, (peer.host, peer.port))
            return
        conn = self._conns.get(peer.conn) if peer.conn else None
        if conn is None:
            cid = self._by_addr.get((peer.host, peer.port))
            conn = self._conns.get(cid) if cid is not None else None
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.transport.write(data)
            return
        self._connect_and_send(data, peer)

    def _connect_and_send(self, data: bytes, peer: Peer) -> None:
        key = (peer.host, peer.port)
        pending = self._pending.get(key)
        if pending is not None:
            pending.append(data)
            return
        self._pending[key] = [data]

        async def connect() -> None:
            loop = asyncio.get_running_loop()
            try:
                _, proto = await asyncio.wait_for(loop.create_connection(
                    lambda: TcpConnection(self, next(self._conn_ids)), peer.host, peer.port),
                    timeout=5.0)
            except (TimeoutError, OSError) as e:
                log.info("TCP connect to %s:%d failed: %s", peer.host, peer.port, e)
                self._pending.pop(key, None)
                return
            for d in self._pending.pop(key, []):
                if proto.transport is not None:
                    proto.transport.write(d)

        task = asyncio.ensure_future(connect())
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def close(self) -> None:
        for lst in self.listeners:
            srv = lst.server
            if isinstance(srv, (asyncio.DatagramTransport, asyncio.base_events.Server)):
                srv.close()
        for c in list(self._conns.values()):
            if c.transport is not None:
                c.transport.close()
