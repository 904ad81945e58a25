"""Test doubles for the sans-IO transaction layer: a hand-driven clock and a fake link.

Endpoints never touch sockets.  `Net` collects what each `TransactionLayer` wants to
send, keeps it "in flight" until the test decides to deliver, drop, duplicate or
reorder it, and hands delivered datagrams to the destination layer with the right
source `Peer`.  Time only moves when the test (or `Net.run`) moves it, always to the
next armed timer, so every run is deterministic.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ccswitch.sip.message import Request, Response, make_response, parse_message
from ccswitch.sip.transaction import Event, Peer, TransactionLayer

_branches = itertools.count(1)


def new_branch() -> str:
    return f"z9hG4bK-t{next(_branches)}"


@dataclass(eq=False)
class Endpoint:
    """One SIP element: a TransactionLayer bound to host:port on one transport."""

    name: str
    host: str
    port: int
    transport: str = "udp"
    layer: TransactionLayer = field(default_factory=TransactionLayer)
    # the transaction user: called with every event as soon as it is produced
    on_event: Callable[[Endpoint, Event], None] | None = None
    log: list[Event] = field(default_factory=list)
    net: Net | None = None

    @property
    def now(self) -> float:
        assert self.net is not None
        return self.net.now

    def peer_of(self, other: Endpoint, conn: int = 0) -> Peer:
        """How `other` is addressed from this endpoint."""
        if conn == 0 and self.transport != "udp":
            conn = 1
        return Peer(self.transport, other.host, other.port, conn)

    def drain(self) -> list[Event]:
        """Move new events to `log` (running the TU callback); return just the new ones."""
        new: list[Event] = []
        while True:
            ev = self.layer.next_event()
            if ev is None:
                return new
            new.append(ev)
            self.log.append(ev)
            if self.on_event is not None:
                self.on_event(self, ev)

    def of(self, cls: type) -> list[Event]:
        return [e for e in self.log if isinstance(e, cls)]


@dataclass(eq=False)
class Packet:
    src: Endpoint
    dst: Peer
    data: bytes
    sent_at: float

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode()

    def parse(self) -> Request | Response:
        return parse_message(self.data)


class Net:
    """The fake link plus the fake clock shared by every endpoint."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.endpoints: dict[tuple[str, int], Endpoint] = {}
        self.in_flight: list[Packet] = []
        self.wire: list[Packet] = []  # every datagram ever sent, in order
        self.delivered: list[Packet] = []
        self.nowhere: list[Packet] = []  # addressed to no endpoint

    def add(self, ep: Endpoint) -> Endpoint:
        self.endpoints[(ep.host, ep.port)] = ep
        ep.net = self
        return ep

    # ---- collecting output
    def collect(self) -> list[Packet]:
        """Run TU callbacks and move every endpoint's output into flight; return the new packets."""
        new: list[Packet] = []
        progress = True
        while progress:
            progress = False
            for ep in list(self.endpoints.values()):
                if ep.drain():
                    progress = True
                for data, dst in ep.layer.datagrams_to_send():
                    pkt = Packet(ep, dst, data, self.now)
                    new.append(pkt)
                    progress = True
        self.in_flight.extend(new)
        self.wire.extend(new)
        return new

    # ---- link behaviour
    def deliver(self, pkt: Packet) -> None:
        self.in_flight.remove(pkt)
        self._hand_over(pkt)

    def _hand_over(self, pkt: Packet) -> None:
        dst = self.endpoints.get((pkt.dst.host, pkt.dst.port))
        if dst is None:
            self.nowhere.append(pkt)
            return
        self.delivered.append(pkt)
        src = pkt.src
        dst.layer.receive_data(
            pkt.data, Peer(src.transport, src.host, src.port, pkt.dst.conn), self.now
        )

    def deliver_all(self, drop: Callable[[Packet], bool] | None = None) -> list[Packet]:
        """Deliver everything in flight (in order) except what `drop` rejects."""
        batch, self.in_flight = self.in_flight, []
        for pkt in batch:
            if drop is None or not drop(pkt):
                self._hand_over(pkt)
        return batch

    def drop_all(self) -> list[Packet]:
        batch, self.in_flight = self.in_flight, []
        return batch

    def duplicate_all(self) -> None:
        self.in_flight = [p for p in self.in_flight for _ in range(2)]

    def reverse_all(self) -> None:
        self.in_flight.reverse()

    def exchange(self, drop: Callable[[Packet], bool] | None = None, limit: int = 1000) -> None:
        """Collect and deliver until nothing more is produced at this instant."""
        for _ in range(limit):
            self.collect()
            if not self.in_flight:
                return
            self.deliver_all(drop)
        raise AssertionError(f"messages still bouncing after {limit} rounds")

    # ---- the clock
    def next_timer(self) -> float | None:
        whens = [w for ep in self.endpoints.values() if (w := ep.layer.get_timer()) is not None]
        return min(whens) if whens else None

    def fire_timers(self, until: float | None = None) -> bool:
        """Advance the clock to the earliest timer (not past `until`) and fire it everywhere."""
        when = self.next_timer()
        if when is None or (until is not None and when > until):
            return False
        assert when >= self.now, "timer in the past"
        self.now = when
        for ep in self.endpoints.values():
            t = ep.layer.get_timer()
            if t is not None and t <= self.now:
                ep.layer.handle_timer(self.now)
                after = ep.layer.get_timer()
                assert after is None or after > self.now, "timer in the past after handle_timer"
        return True

    def advance(self, dt: float) -> None:
        """Move the clock by `dt`, firing (and exchanging around) every timer on the way."""
        end = self.now + dt
        self.exchange()
        while self.fire_timers(until=end):
            self.exchange()
        self.now = end

    def run(
        self,
        until: float = 1e9,
        drop: Callable[[Packet], bool] | None = None,
    ) -> None:
        """Exchange and fire timers until quiet (or `until`)."""
        self.exchange(drop)
        while self.fire_timers(until=until):
            self.exchange(drop)

    def sent_by(self, ep: Endpoint, first_line_prefix: str = "") -> list[Packet]:
        return [p for p in self.wire if p.src is ep and p.first_line.startswith(first_line_prefix)]


def lossy(rng: random.Random, rate: float) -> Callable[[Packet], bool]:
    return lambda _pkt: rng.random() < rate


# ---------------------------------------------------------------- message builders


def build_request(
    method: str,
    *,
    src: Endpoint,
    dst: Endpoint,
    branch: str | None = None,
    call_id: str = "call-1@test",
    cseq: int = 1,
    from_tag: str = "ftag1",
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    rport: bool = True,
    uri: str | None = None,
) -> Request:
    via = f"SIP/2.0/{src.transport.upper()} {src.host}:{src.port};branch={branch or new_branch()}"
    if rport:
        via += ";rport"
    to = f"<sip:bob@{dst.host}:{dst.port}>"
    if to_tag:
        to += f";tag={to_tag}"
    hs = [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", f"<sip:alice@{src.host}:{src.port}>;tag={from_tag}"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
        ("Contact", f"<sip:alice@{src.host}:{src.port}>"),
    ]
    hs.extend(extra or [])
    return Request(method, uri or f"sip:bob@{dst.host}:{dst.port}", hs, body)


def cancel_for(invite: Request) -> Request:
    """CANCEL built per RFC 3261 §9.1: same R-URI, top Via, Call-ID, From, To, CSeq number."""
    hs: list[tuple[str, str]] = [("Via", invite.get_all("Via")[0])]
    for n in ("Max-Forwards", "From", "To", "Call-ID"):
        v = invite.get(n)
        assert v is not None
        hs.append((n, v))
    hs.append(("CSeq", f"{invite.cseq[0]} CANCEL"))
    hs.extend((n, v) for n, v in invite.headers if n == "Route")
    return Request("CANCEL", invite.uri, hs)


def ack_for_2xx(invite: Request, resp: Response, branch: str | None = None) -> Request:
    """ACK for a 2xx (RFC 3261 §13.2.2.4): a new branch, To with the response's tag."""
    top = invite.via
    hs: list[tuple[str, str]] = [
        ("Via", f"SIP/2.0/{top.transport} {top.sent_by};branch={branch or new_branch()};rport"),
        ("Max-Forwards", "70"),
    ]
    for n in ("From", "Call-ID"):
        v = invite.get(n)
        assert v is not None
        hs.append((n, v))
    to = resp.get("To")
    assert to is not None
    hs.append(("To", to))
    hs.append(("CSeq", f"{invite.cseq[0]} ACK"))
    return Request("ACK", invite.uri, hs)


def reply(
    req: Request,
    status: int,
    to_tag: str | None = "ttag1",
    reason: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    return make_response(req, status, reason, to_tag, headers or [])
