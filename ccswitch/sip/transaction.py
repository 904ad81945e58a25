"""RFC 3261 §17 transaction layer, sans-IO (with the RFC 6026 "Accepted" states).

Shape borrowed from aioquic: feed input with `receive_data(data, peer, now)`,
`send_request(...)` and `respond(...)`, then drain `next_event()` and
`datagrams_to_send()`; arm one timer at `get_timer()` and call
`handle_timer(now)` when it fires.  Nothing here touches sockets or clocks.

Responsibilities:
- parse incoming bytes; answer unparseable requests with a 400 naming the problem;
- stamp `received` / `rport` on the top Via (RFC 3581) and route responses back to
  the packet's source (symmetric response routing, what phones behind NAT need);
- match requests and responses to transactions; absorb retransmissions;
- retransmit over UDP (timers A, E, G and the 2xx retransmission of an INVITE
  server) and time out (B, F, H, L) as RFC 3261/6026 say; give an INVITE up 64*T1
  after its CANCEL if no final response came (RFC 3261 §9.1);
- build the ACK for a non-2xx final response.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from ccswitch.sip.errors import ParseError
from ccswitch.sip.message import (
    SIP_VERSION,
    BadRequest,
    Request,
    Response,
    make_response,
    parse_message,
    split_commas,
)

MAGIC = "z9hG4bK"


class Peer(NamedTuple):
    """Where a message came from or goes to.  `conn` identifies a stream connection (0 = none)."""

    transport: str  # "udp" | "tcp"
    host: str
    port: int
    conn: int = 0

    @property
    def reliable(self) -> bool:
        return self.transport != "udp"


# ---------------------------------------------------------------- events


@dataclass(slots=True)
class IncomingRequest:
    request: Request
    peer: Peer
    txn: ServerTransaction | None  # None for an ACK to a 2xx (it has no transaction)


@dataclass(slots=True)
class IncomingResponse:
    response: Response
    txn: ClientTransaction | None  # None: a 2xx retransmission after the transaction ended


@dataclass(slots=True)
class TransactionTimeout:
    """A client transaction got no final response (timer B/F), or a transport error."""

    txn: ClientTransaction
    transport_error: bool = False


@dataclass(slots=True)
class AckTimeout:
    """An INVITE server transaction never got its ACK (timer H for non-2xx, L for 2xx)."""

    txn: ServerTransaction


@dataclass(slots=True)
class TransactionTerminated:
    txn: ClientTransaction | ServerTransaction


Event = IncomingRequest | IncomingResponse | TransactionTimeout | AckTimeout | TransactionTerminated


# ---------------------------------------------------------------- transactions

_ids = itertools.count(1)


class _Txn:
    __slots__ = ("_timers", "id", "key", "last_sent", "layer", "peer", "request", "state")

    def __init__(self, layer: TransactionLayer, request: Request, peer: Peer, key: str) -> None:
        self.id = next(_ids)
        self.layer = layer
        self.request = request
        self.peer = peer
        self.key = key
        self.state = "init"
        self.last_sent: bytes | None = None
        self._timers: dict[str, float] = {}

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def terminated(self) -> bool:
        return self.state == "terminated"

    def _arm(self, name: str, when: float) -> None:
        self._timers[name] = when
        self.layer._schedule(when, self, name)

    def _cancel(self, name: str) -> None:
        self._timers.pop(name, None)

    def _send(self, data: bytes) -> None:
        self.last_sent = data
        self.layer._out.append((data, self.peer))

    def _fire(self, name: str, now: float) -> None:
        raise NotImplementedError

    def _terminate(self) -> None:
        if self.state != "terminated":
            self.state = "terminated"
            self._timers.clear()
            self.layer._remove(self)


class ClientTransaction(_Txn):
    """INVITE (17.1.1) or non-INVITE (17.1.2) client transaction."""

    __slots__ = ("_interval", "final", "user")

    def __init__(self, layer: TransactionLayer, request: Request, peer: Peer, key: str) -> None:
        super().__init__(layer, request, peer, key)
        self.final: Response | None = None
        self._interval = layer.t1
        self.user: object = None  # free slot for the transaction user (e.g. its call leg)

    def _start(self, now: float) -> None:
        L = self.layer
        self._send(self.request.to_bytes())
        if self.method == "INVITE":
            self.state = "calling"
            if not self.peer.reliable:
                self._arm("A", now + L.t1)
            self._arm("B", now + 64 * L.t1)
        else:
            self.state = "trying"
            if not self.peer.reliable:
                self._arm("E", now + L.t1)
            self._arm("F", now + 64 * L.t1)

    def _on_response(self, resp: Response, now: float) -> None:
        L = self.layer
        code = resp.status
        if self.method == "INVITE":
            if self.state in ("calling", "proceeding"):
                if code < 200:
                    self.state = "proceeding"
                    self._cancel("A")
                    self._cancel("B")
                    L._events.append(IncomingResponse(resp, self))
                elif code < 300:
                    # RFC 6026: Accepted; the TU ACKs every 2xx copy (forked ones included)
                    self.state = "accepted"
                    self.final = resp
                    self._timers.clear()
                    self._arm("M", now + 64 * L.t1)
                    L._events.append(IncomingResponse(resp, self))
                else:
                    self.state = "completed"
                    self.final = resp
                    self._timers.clear()
                    self._send(self._ack_for(resp).to_bytes())
                    self._arm("D", now + (0 if self.peer.reliable else 32.0))
                    L._events.append(IncomingResponse(resp, self))
            elif self.state == "accepted" and 200 <= code < 300:
                L._events.append(IncomingResponse(resp, self))
            elif self.state == "completed" and code >= 300 and self.last_sent is not None:
                self.layer._out.append((self.last_sent, self.peer))  # re-ACK
        else:
            if self.state in ("trying", "proceeding"):
                if code < 200:
                    self.state = "proceeding"
                    L._events.append(IncomingResponse(resp, self))
                else:
                    self.state = "completed"
                    self.final = resp
                    self._timers.clear()
                    self._arm("K", now + (0 if self.peer.reliable else L.t4))
                    L._events.append(IncomingResponse(resp, self))

    def _ack_for(self, resp: Response) -> Request:
        """ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
        req = self.request
        hs: list[tuple[str, str]] = []
        top_via = req.get_all("Via")[0]
        hs.append(("Via", top_via))
        for n, v in req.headers:
            if n in ("From", "Call-ID", "Route", "Max-Forwards"):
                hs.append((n, v))
        to = resp.get("To")
        hs.append(("To", to if to is not None else req.get("To") or ""))
        hs.append(("CSeq", f"{req.cseq[0]} ACK"))
        return Request("ACK", req.uri, hs)

    def _fire(self, name: str, now: float) -> None:
        L = self.layer
        if name in ("A", "E"):
            if self.last_sent is not None:
                L._out.append((self.last_sent, self.peer))
            if name == "A":
                self._interval *= 2
            else:
                self._interval = min(self._interval * 2, L.t2) if self.state == "trying" else L.t2
            self._arm(name, now + self._interval)
        elif name in ("B", "F", "cancel"):
            # report the timeout before TransactionTerminated: a TU that forgets the
            # transaction on Terminated must still learn that the request failed
            L._events.append(TransactionTimeout(self))
            self._terminate()
        elif name in ("D", "K", "M"):
            self._terminate()


class ServerTransaction(_Txn):
    """INVITE (17.2.1) or non-INVITE (17.2.2) server transaction."""

    __slots__ = ("_interval", "ack_key", "final", "user")

    def __init__(self, layer: TransactionLayer, request: Request, peer: Peer, key: str) -> None:
        super().__init__(layer, request, peer, key)
        self.final: Response | None = None
        self._interval = layer.t1
        self.ack_key: tuple[str, int] | None = None
        self.user: object = None

    def _on_request(self, req: Request, now: float) -> None:
        """A request matched this transaction: a retransmission, or the ACK."""
        if req.method == "ACK":
            if self.state == "completed":
                self.state = "confirmed"
                self._timers.clear()
                self._arm("I", now + (0 if self.peer.reliable else self.layer.t4))
            return
        if self.last_sent is not None and self.state in ("proceeding", "completed", "accepted"):
            self.layer._out.append((self.last_sent, self.peer))

    def respond(self, resp: Response, now: float) -> None:
        if self.state in ("terminated", "completed", "confirmed"):
            return  # too late: the final response is already out
        code = resp.status
        L = self.layer
        data = resp.to_bytes()
        if self.method == "INVITE":
            if self.state == "accepted":
                if 200 <= code < 300:
                    # another 2xx (e.g. a re-send by the TU): replace what we retransmit
                    self._send(data)
                return
            self._send(data)
            if code < 200:
                self.state = "proceeding"
            elif code < 300:
                self.state = "accepted"
                self.final = resp
                self._timers.clear()
                if not self.peer.reliable:
                    self._arm("G2xx", now + L.t1)
                self._arm("L", now + 64 * L.t1)
                self.ack_key = (self.request.call_id, self.request.cseq[0])
                L._acks[self.ack_key] = self
            else:
                self.state = "completed"
                self.final = resp
                if not self.peer.reliable:
                    self._arm("G", now + L.t1)
                self._arm("H", now + 64 * L.t1)
        else:
            self._send(data)
            if code < 200:
                self.state = "proceeding"
            else:
                self.state = "completed"
                self.final = resp
                self._arm("J", now + (0 if self.peer.reliable else 64 * L.t1))

    def _fire(self, name: str, now: float) -> None:
        L = self.layer
        if name in ("G", "G2xx"):
            if self.last_sent is not None:
                L._out.append((self.last_sent, self.peer))
            self._interval = min(self._interval * 2, L.t2)
            self._arm(name, now + self._interval)
        elif name == "H":
            L._events.append(AckTimeout(self))  # before TransactionTerminated (see B/F)
            self._terminate()
        elif name == "L":
            # RFC 6026 timer L; if the 2xx was never ACKed the TU should end the dialog
            acked = self.ack_key is not None and self.ack_key not in L._acks
            if not acked:
                L._events.append(AckTimeout(self))
            self._terminate()
        elif name in ("I", "J"):
            self._terminate()

    def _acked(self) -> None:
        """The ACK for our 2xx arrived: stop retransmitting it (transaction lingers for L)."""
        self._cancel("G2xx")


# ---------------------------------------------------------------- the layer


class TransactionLayer:
    """All transactions of one SIP endpoint."""

    def __init__(
        self,
        *,
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        server_header: str | None = None,
        force_rport: bool = True,
        auto_trying: bool = True,
    ) -> None:
        self.t1, self.t2, self.t4 = t1, t2, t4
        self.server_header = server_header
        self.force_rport = force_rport
        self.auto_trying = auto_trying
        self._client: dict[str, ClientTransaction] = {}
        self._server: dict[str, ServerTransaction] = {}
        self._acks: dict[tuple[str, int], ServerTransaction] = {}
        self._heap: list[tuple[float, int, _Txn, str]] = []
        self._seq = itertools.count()
        # a deque: next_event() drains from the left, and a list's pop(0) made a burst of
        # n events cost O(n^2)
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Peer]] = []
        self.stats = {"parse_errors": 0, "retransmissions_absorbed": 0, "stray_responses": 0}

    # ---- output
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        ev = list(self._events)
        self._events.clear()
        return ev

    def datagrams_to_send(self) -> list[tuple[bytes, Peer]]:
        out, self._out = self._out, []
        return out

    def send_raw(self, data: bytes, peer: Peer) -> None:
        """Send outside any transaction (ACK for 2xx, stateless responses)."""
        self._out.append((data, peer))

    # ---- timers
    def get_timer(self) -> float | None:
        heap = self._heap
        while heap:
            when, _, txn, name = heap[0]
            if txn._timers.get(name) == when:
                return when
            heapq.heappop(heap)  # cancelled or re-armed: drop lazily
        return None

    def handle_timer(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, _, txn, name = heapq.heappop(heap)
            if txn._timers.get(name) != when:
                continue
            del txn._timers[name]
            txn._fire(name, now)

    def _schedule(self, when: float, txn: _Txn, name: str) -> None:
        heapq.heappush(self._heap, (when, next(self._seq), txn, name))

    def _remove(self, txn: _Txn) -> None:
        if isinstance(txn, ClientTransaction):
            # only if it is still the one registered (the TU may have reused a branch)
            if self._client.get(txn.key) is txn:
                del self._client[txn.key]
        else:
            if self._server.get(txn.key) is txn:
                del self._server[txn.key]
            if (
                isinstance(txn, ServerTransaction)
                and txn.ack_key is not None
                and self._acks.get(txn.ack_key) is txn
            ):
                del self._acks[txn.ack_key]
        self._events.append(TransactionTerminated(txn))  # type: ignore[arg-type]

    @property
    def transaction_count(self) -> int:
        return len(self._client) + len(self._server)

    # ---- input
    def receive_data(self, data: bytes, peer: Peer, now: float) -> None:
        try:
            msg = parse_message(data, stream=peer.reliable)
        except BadRequest as e:
            self.stats["parse_errors"] += 1
            self._reject(e.request, e.reason, peer)
            return
        except ParseError:
            # not even a request line we can answer: drop (RFC 3261 §18.3)
            self.stats["parse_errors"] += 1
            return
        if isinstance(msg, Request):
            self.receive_request(msg, peer, now)
        else:
            self.receive_response(msg, peer, now)

    def _reject(self, req: Request, reason: str, peer: Peer) -> None:
        if req.method == "ACK":
            return  # never answer an ACK
        # stamp received/rport so that the 400 follows the normal response routing
        # (to the source), not a sent-by that may be a private address behind NAT
        self._try_stamp_via(req, peer)
        try:
            resp = make_response(req, 400, f"Bad Request ({reason})")
            self._add_server_header(resp)
            self._out.append((resp.to_bytes(), self._response_peer(req, peer)))
        except ParseError:
            pass

    def _add_server_header(self, resp: Response) -> None:
        if self.server_header:
            resp.headers.append(("Server", self.server_header))

    def _response_peer(self, req: Request, peer: Peer) -> Peer:
        """Where responses to `req` go (RFC 3261 §18.2.2 with RFC 3581 rport)."""
        if peer.reliable:
            return peer
        try:
            via = req.via
        except ParseError:
            return peer
        if "rport" in via.params or self.force_rport:
            return peer
        # §18.2.2 order: maddr, then received, then sent-by
        host = via.params.get("maddr") or via.params.get("received") or via.host
        return Peer(peer.transport, host, via.port or 5060, peer.conn)

    def _stamp_via(self, req: Request, peer: Peer) -> None:
        """RFC 3581 / 3261 §18.2.1: add received= and fill rport on the top Via."""
        via = req.via
        changed = False
        if via.host != peer.host:
            via.params["received"] = peer.host
            changed = True
        if "rport" in via.params and not via.params["rport"]:
            via.params["rport"] = str(peer.port)
            via.params.setdefault("received", peer.host)
            changed = True
        if changed:
            for i, (n, v) in enumerate(req.headers):
                if n == "Via":
                    items = split_commas(v)
                    items[0] = str(via)
                    req.headers[i] = ("Via", ", ".join(items))
                    break
            req._cache.pop("vias", None)

    def _try_stamp_via(self, req: Request, peer: Peer) -> None:
        # an unparseable Via is left alone: _response_peer then falls back to the source
        with contextlib.suppress(ParseError):
            self._stamp_via(req, peer)

    def receive_request(self, req: Request, peer: Peer, now: float) -> None:
        if req.version.upper() != SIP_VERSION:
            if req.method == "ACK":
                return  # never answer an ACK, not even with a 505
            self._try_stamp_via(req, peer)
            resp = make_response(req, 505)
            self._add_server_header(resp)
            self._out.append((resp.to_bytes(), self._response_peer(req, peer)))
            return
        try:
            self._stamp_via(req, peer)
        except ParseError as e:
            self._reject(req, e.reason, peer)
            return
        key = self._server_key(req)
        txn = self._server.get(key)
        if txn is not None and not (req.method == "ACK" and txn.state == "accepted"):
            self.stats["retransmissions_absorbed"] += req.method != "ACK"
            txn._on_request(req, now)
            return
        if req.method == "ACK":
            # ACK to a 2xx: normally its own branch.  RFC 2543 peers (and some broken
            # UAs) reuse the INVITE's, so it matched the transaction above while Accepted;
            # RFC 6026 passes such an ACK to the TU too.  Either way: stop our 2xx
            # retransmissions and pass it up.
            st = self._acks.pop((req.call_id, req.cseq[0]), None)
            if st is not None:
                st._acked()
            self._events.append(IncomingRequest(req, peer, None))
            return
        txn = ServerTransaction(self, req, self._response_peer(req, peer), key)
        txn.state = "proceeding" if req.method == "INVITE" else "trying"
        self._server[key] = txn
        if req.method == "INVITE" and self.auto_trying:
            trying = make_response(req, 100)
            self._add_server_header(trying)
            txn.respond(trying, now)
        self._events.append(IncomingRequest(req, peer, txn))

    def receive_response(self, resp: Response, peer: Peer, now: float) -> None:
        try:
            via = resp.via
            branch = via.branch or ""
            method = resp.cseq[1]
        except ParseError:
            self.stats["parse_errors"] += 1
            return
        txn = self._client.get(branch + "|" + method)
        if txn is None:
            if method == "INVITE" and 200 <= resp.status < 300:
                # a 2xx retransmission after the transaction ended: the TU must re-ACK
                self._events.append(IncomingResponse(resp, None))
            else:
                self.stats["stray_responses"] += 1
            return
        txn._on_response(resp, now)

    def find_invite_for_cancel(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (RFC 3261 §9.2)."""
        key = self._server_key(cancel, method="INVITE")
        return self._server.get(key)

    def _server_key(self, req: Request, method: str | None = None) -> str:
        via = req.via
        m = method or ("INVITE" if req.method == "ACK" else req.method)
        branch = via.branch
        if branch and branch.startswith(MAGIC):
            # the CSeq number too: some UAs (pyVoIP) resend a challenged INVITE with the
            # same branch and CSeq+1; CANCEL and the ACK of a non-2xx carry the INVITE's
            # number, so their matching is unchanged
            return f"{branch}|{via.sent_by}|{m}|{req.cseq[0]}"
        # RFC 2543 peers: no magic cookie, match on dialog-ish identifiers (§17.2.3)
        return f"2543|{req.call_id}|{req.cseq[0]}|{req.from_tag}|{via.sent_by}|{m}|{req.uri}"

    # ---- TU actions
    def send_request(self, req: Request, peer: Peer, now: float) -> ClientTransaction:
        """Start a client transaction.  The top Via must carry a fresh branch."""
        if req.method == "ACK":
            raise ValueError("ACK is not sent in a transaction; use send_raw")
        branch = req.via.branch or ""
        key = branch + "|" + req.method
        txn = ClientTransaction(self, req, peer, key)
        self._client[key] = txn
        txn._start(now)
        if req.method == "CANCEL":
            # RFC 3261 §9.1: no final response 64*T1 after the CANCEL -> give the INVITE
            # up.  Proceeding has no timer of its own, and the TU has no way to end a
            # client transaction, so without this a vanished UAS leaks it forever.
            inv = self._client.get(branch + "|INVITE")
            # (its own timer: a 1xx arriving later cancels B, but must not cancel this)
            if inv is not None and inv.state in ("calling", "proceeding"):
                inv._arm("cancel", now + 64 * self.t1)
        return txn

    def respond(self, txn: ServerTransaction, resp: Response, now: float) -> None:
        if self.server_header and resp.status >= 200 and not resp.has("Server"):
            self._add_server_header(resp)
        txn.respond(resp, now)

    def terminate_all(self) -> None:
        """Drop every transaction (shutdown)."""
        for t in list(self._client.values()) + list(self._server.values()):
            t._terminate()
        self._events.clear()
