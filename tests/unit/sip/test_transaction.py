"""RFC 3261 §17 / RFC 6026 transaction layer: two sans-IO endpoints over a fake link.

No sockets, no sleeping: `Net` (tests/unit/sip/fakes.py) carries datagrams between a
UAC and a UAS `TransactionLayer` under the test's control and moves a fake clock to
the next armed timer.  Timer values are the defaults: T1 = 0.5 s, T2 = 4 s, T4 = 5 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from ccswitch.sip.message import Request, Response, parse_message
from ccswitch.sip.transaction import (
    AckTimeout,
    ClientTransaction,
    Event,
    IncomingRequest,
    IncomingResponse,
    Peer,
    ServerTransaction,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
)

from .fakes import (
    Endpoint,
    Net,
    Packet,
    ack_for_2xx,
    build_request,
    cancel_for,
    lossy,
    reply,
)

T1, T2, T4 = 0.5, 4.0, 5.0
TRANSPORTS = ["udp", "tcp"]

# first-request retransmission instants: doubling from T1, never capped (timer A)
A_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
# doubling capped at T2 (timers E, G and the 2xx retransmission), all within 64*T1
CAPPED_TIMES = [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]


# ---------------------------------------------------------------- helpers


def pair(transport: str = "udp", **kw: Any) -> tuple[Net, Endpoint, Endpoint]:
    net = Net()
    uac = net.add(Endpoint("uac", "10.0.0.1", 5060, transport, TransactionLayer(**kw)))
    uas = net.add(Endpoint("uas", "10.0.0.2", 5070, transport, TransactionLayer(**kw)))
    return net, uac, uas


def times(pkts: list[Packet]) -> list[float]:
    return [p.sent_at for p in pkts]


def assert_clean(*eps: Endpoint) -> None:
    for ep in eps:
        assert ep.layer.transaction_count == 0, ep.name
        assert ep.layer._acks == {}, ep.name
        assert ep.layer.get_timer() is None, ep.name


def responses(ep: Endpoint, status: int | None = None) -> list[IncomingResponse]:
    return [
        e
        for e in ep.log
        if isinstance(e, IncomingResponse) and (status is None or e.response.status == status)
    ]


def requests(ep: Endpoint, method: str | None = None) -> list[IncomingRequest]:
    return [
        e
        for e in ep.log
        if isinstance(e, IncomingRequest) and (method is None or e.request.method == method)
    ]


def answer(*codes: int, to_tag: str = "ttag1") -> Callable[[Endpoint, Event], None]:
    """UAS TU: answer every new INVITE with `codes` in order, anything else with 200."""

    def on_event(ep: Endpoint, ev: Event) -> None:
        if isinstance(ev, IncomingRequest) and ev.txn is not None:
            for code in codes if ev.request.method == "INVITE" else (200,):
                ep.layer.respond(ev.txn, reply(ev.request, code, to_tag), ep.now)

    return on_event


class AckingUac:
    """UAC TU: ACK every 2xx to an INVITE (re-sending the same ACK for each copy)."""

    def __init__(self, dst: Endpoint) -> None:
        self.dst = dst
        self.invites: dict[str, Request] = {}
        self.acks: dict[tuple[str, str | None], bytes] = {}

    def send(self, ep: Endpoint, invite: Request) -> ClientTransaction:
        self.invites[invite.call_id] = invite
        return ep.layer.send_request(invite, ep.peer_of(self.dst), ep.now)

    def __call__(self, ep: Endpoint, ev: Event) -> None:
        if not isinstance(ev, IncomingResponse):
            return
        r = ev.response
        if r.cseq[1] == "INVITE" and 200 <= r.status < 300:
            key = (r.call_id, r.to_tag)
            if key not in self.acks:
                branch = f"z9hG4bK-ack-{r.call_id}-{r.to_tag}"  # deterministic across runs
                self.acks[key] = ack_for_2xx(self.invites[r.call_id], r, branch).to_bytes()
            ep.layer.send_raw(self.acks[key], ep.peer_of(self.dst))


def kinds(ep: Endpoint) -> list[str]:
    return [type(e).__name__ for e in ep.log]


# ---------------------------------------------------------------- INVITE client


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_client_timer_a_then_b_timeout(transport: str) -> None:
    net, uac, uas = pair(transport)
    inv = build_request("INVITE", src=uac, dst=uas)
    txn = uac.layer.send_request(inv, uac.peer_of(uas), net.now)
    assert txn.state == "calling"
    net.run(drop=lambda p: True)

    sent = net.sent_by(uac, "INVITE")
    assert times(sent) == (A_TIMES if transport == "udp" else [0.0])
    assert {p.data for p in sent} == {inv.to_bytes()}
    assert all(p.dst == uac.peer_of(uas) for p in sent)
    (timeout,) = uac.of(TransactionTimeout)
    assert isinstance(timeout, TransactionTimeout)
    assert timeout.txn is txn and not timeout.transport_error
    assert net.now == 64 * T1
    assert txn.terminated
    # the TU hears about the timeout before the transaction is gone
    assert kinds(uac) == ["TransactionTimeout", "TransactionTerminated"]
    assert_clean(uac, uas)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_client_provisional_stops_a_and_b(transport: str) -> None:
    net, uac, uas = pair(transport)
    txn = uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.exchange()  # INVITE -> UAS, auto 100 Trying -> UAC
    assert txn.state == "proceeding"
    assert [e.response.status for e in responses(uac)] == [100]
    assert uac.layer.get_timer() is None  # A and B both cancelled
    net.advance(1000)
    assert len(net.sent_by(uac, "INVITE")) == 1
    assert not uac.of(TransactionTimeout)
    assert txn.state == "proceeding"
    assert uac.layer.transaction_count == 1


def test_invite_client_provisional_after_retransmissions() -> None:
    net, uac, uas = pair()
    txn = uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    # the first two copies are lost, the third gets its 100 Trying back
    net.run(until=5.0, drop=lambda p: p.src is uac and p.sent_at < 1.5)
    assert times(net.sent_by(uac, "INVITE")) == [0.0, 0.5, 1.5]
    assert txn.state == "proceeding"
    assert uac.layer.get_timer() is None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_client_2xx_accepted_copies_passed_up_timer_m(transport: str) -> None:
    net, uac, uas = pair(transport)
    uas.on_event = answer(180, 200)
    txn = uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.exchange()
    assert txn.state == "accepted"
    assert txn.final is not None and txn.final.status == 200
    assert [e.response.status for e in responses(uac)] == [100, 180, 200]
    assert uac.layer.get_timer() == 64 * T1  # only timer M

    # this TU never ACKs: the UAS keeps retransmitting and every copy must reach the TU
    net.advance(10.0)
    oks = responses(uac, 200)
    assert len(oks) == (5 if transport == "udp" else 1)  # 0, .5, 1.5, 3.5, 7.5
    assert all(e.txn is txn for e in oks)
    assert not net.sent_by(uac, "ACK")  # the layer never ACKs a 2xx itself

    net.advance(64 * T1 - 10.0 - 0.01)
    assert not txn.terminated
    net.advance(0.01)  # timer M
    assert txn.terminated
    assert uac.layer.transaction_count == 0
    assert not uac.of(TransactionTimeout)

    # a 2xx copy after timer M: still passed up (no transaction) so the TU can re-ACK
    ok = oks[0].response
    uac.layer.receive_data(ok.to_bytes(), uac.peer_of(uas), net.now)
    late = uac.layer.events()
    assert len(late) == 1
    assert isinstance(late[0], IncomingResponse) and late[0].txn is None
    assert late[0].response.status == 200
    assert uac.layer.stats["stray_responses"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_client_forked_2xx_each_passed_up(transport: str) -> None:
    net, uac, uas = pair(transport)
    inv = build_request("INVITE", src=uac, dst=uas)
    txn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.drop_all()
    for tag in ("fork-a", "fork-b"):
        uac.layer.receive_response(reply(inv, 200, tag), uac.peer_of(uas), 0.1)
    uac.drain()
    assert [e.response.to_tag for e in responses(uac, 200)] == ["fork-a", "fork-b"]
    assert all(e.txn is txn for e in responses(uac, 200))


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_client_non2xx_ack_built_by_layer(transport: str) -> None:
    net, uac, uas = pair(transport)
    uas.on_event = answer(486, to_tag="busy1")
    routes = [("Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
              ("Route", "<sip:p3.example.com;lr>")]
    inv = build_request("INVITE", src=uac, dst=uas, extra=routes, cseq=314)
    txn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.deliver_all()  # INVITE reaches the UAS, which answers 100 then 486
    net.collect()
    net.duplicate_all()  # the 486 arrives twice: the second is a "retransmission"
    net.deliver_all()
    net.collect()

    # 1xx copies are passed up, the final's copy is absorbed
    assert [e.response.status for e in responses(uac)] == [100, 100, 486]
    assert txn.state == "completed"
    acks = net.sent_by(uac, "ACK")
    assert len(acks) == 2 and acks[0].data == acks[1].data  # the same ACK re-sent
    assert acks[0].dst == uac.peer_of(uas)
    ack = acks[0].parse()
    assert isinstance(ack, Request)
    final = responses(uac, 486)[0].response
    assert str(ack.uri) == str(inv.uri)
    assert ack.get_all("Via") == inv.get_all("Via")[:1]
    assert ack.via.branch == inv.via.branch
    assert ack.get("To") == final.get("To") and ack.to_tag == "busy1"
    assert ack.get("From") == inv.get("From")
    assert ack.call_id == inv.call_id
    assert ack.cseq == (314, "ACK")
    assert ack.get_all("Route") == inv.get_all("Route")
    assert ack.body == b""

    # timer D: 32 s over UDP (to absorb 486 copies), 0 over a reliable transport
    assert uac.layer.get_timer() == (32.0 if transport == "udp" else 0.0)
    net.deliver_all()  # the ACKs reach the UAS: absorbed by its transaction
    assert requests(uas, "ACK") == []
    net.run()
    assert txn.terminated
    assert net.now == (32.0 if transport == "udp" else 0.0)
    assert not uas.of(AckTimeout) and not uac.of(TransactionTimeout)
    assert_clean(uac, uas)


def test_invite_client_late_final_retransmission_reacked_during_timer_d() -> None:
    net, uac, uas = pair()
    inv = build_request("INVITE", src=uac, dst=uas)
    txn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.drop_all()
    busy = reply(inv, 486).to_bytes()
    uac.layer.receive_data(busy, uac.peer_of(uas), 1.0)
    first = uac.layer.datagrams_to_send()
    uac.layer.handle_timer(20.0)  # nothing due before D (32 s after the 486)
    assert uac.layer.datagrams_to_send() == []
    uac.layer.receive_data(busy, uac.peer_of(uas), 20.0)
    assert uac.layer.datagrams_to_send() == first
    assert uac.layer.get_timer() == 33.0
    uac.layer.handle_timer(33.0)
    assert txn.terminated
    # after D a copy is a stray
    uac.layer.receive_data(busy, uac.peer_of(uas), 40.0)
    assert uac.layer.datagrams_to_send() == []
    assert uac.layer.stats["stray_responses"] == 1


# ---------------------------------------------------------------- non-INVITE client


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_invite_client_timer_e_then_f(transport: str) -> None:
    net, uac, uas = pair(transport)
    txn = uac.layer.send_request(build_request("OPTIONS", src=uac, dst=uas), uac.peer_of(uas), 0)
    assert txn.state == "trying"
    net.run(drop=lambda p: True)
    assert times(net.sent_by(uac, "OPTIONS")) == (CAPPED_TIMES if transport == "udp" else [0.0])
    assert [type(e) for e in uac.log] == [TransactionTimeout, TransactionTerminated]
    assert net.now == 64 * T1
    assert_clean(uac)


def test_non_invite_client_timer_e_is_t2_in_proceeding() -> None:
    net, uac, uas = pair()

    def trying(ep: Endpoint, ev: Event) -> None:
        if isinstance(ev, IncomingRequest) and ev.txn is not None:
            ep.layer.respond(ev.txn, reply(ev.request, 100), ep.now)

    uas.on_event = trying
    txn = uac.layer.send_request(build_request("BYE", src=uac, dst=uas), uac.peer_of(uas), 0)
    # only the copy sent at 0.5 gets through; the UAS answers 100 (and re-sends it later)
    net.run(drop=lambda p: p.src is uac and p.sent_at != 0.5)
    assert times(net.sent_by(uac, "BYE")) == [0.0, 0.5, 1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert [e.response.status for e in responses(uac)] == [100]
    assert uac.of(TransactionTimeout) and txn.terminated
    # only the 0.5 s copy reached the UAS, which answered it once
    assert len(net.sent_by(uas, "SIP/2.0 100")) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_invite_client_final_timer_k(transport: str) -> None:
    net, uac, uas = pair(transport)
    uas.on_event = answer()
    req = build_request("OPTIONS", src=uac, dst=uas)
    txn = uac.layer.send_request(req, uac.peer_of(uas), 0)
    net.exchange()
    assert txn.state == "completed" and txn.final is not None and txn.final.status == 200
    assert uac.layer.get_timer() == (T4 if transport == "udp" else 0.0)
    # a retransmitted final is absorbed in Completed
    uac.layer.receive_response(reply(req, 200), uac.peer_of(uas), 1.0 if transport == "udp" else 0)
    assert uac.drain() == []
    net.run()
    assert [type(e) for e in uac.log] == [IncomingResponse, TransactionTerminated]
    assert_clean(uac, uas)


def test_non_invite_client_retransmission_answered_late_completes() -> None:
    net, uac, uas = pair()
    uas.on_event = answer()
    txn = uac.layer.send_request(build_request("OPTIONS", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.run(drop=lambda p: p.sent_at < 7.0)  # losses until the 7.5 s retransmission
    assert times(net.sent_by(uac, "OPTIONS")) == [0.0, 0.5, 1.5, 3.5, 7.5]
    assert txn.final is not None and not uac.of(TransactionTimeout)
    assert_clean(uac, uas)


# ---------------------------------------------------------------- INVITE server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_server_auto_trying_and_last_provisional_resent(transport: str) -> None:
    net, uac, uas = pair(transport)
    inv = build_request("INVITE", src=uac, dst=uas)
    uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.deliver_all()
    uas.drain()
    (ev,) = requests(uas)
    st = ev.txn
    assert isinstance(st, ServerTransaction) and st.state == "proceeding"
    assert ev.peer == uas.peer_of(uac)
    (trying,) = net.collect()
    assert trying.first_line == "SIP/2.0 100 Trying"
    assert trying.dst == uas.peer_of(uac)
    r = trying.parse()
    assert r.to_tag is None and r.call_id == inv.call_id and r.cseq == (1, "INVITE")
    net.deliver_all()

    # retransmission before any other response: the 100 is re-sent
    uas.layer.receive_data(inv.to_bytes(), uas.peer_of(uac), 0.2)
    (again,) = uas.layer.datagrams_to_send()
    assert again == (trying.data, trying.dst)

    uas.layer.respond(st, reply(ev.request, 180), 0.3)
    ((ringing, _),) = uas.layer.datagrams_to_send()
    for _ in range(2):
        uas.layer.receive_data(inv.to_bytes(), uas.peer_of(uac), 0.4)
        assert uas.layer.datagrams_to_send() == [(ringing, uas.peer_of(uac))]
    assert uas.layer.stats["retransmissions_absorbed"] == 3
    assert len(requests(uas)) == 1 and uas.layer.next_event() is None
    assert uas.layer.get_timer() is None  # nothing to retransmit in Proceeding


def test_invite_server_without_auto_trying() -> None:
    net, uac, uas = pair(auto_trying=False)
    inv = build_request("INVITE", src=uac, dst=uas)
    uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.deliver_all()
    assert net.collect() == []  # (collect also drains the UAS events)
    (ev,) = requests(uas)
    assert ev.txn is not None and ev.txn.state == "proceeding"
    # a retransmission before any response: nothing to re-send
    uas.layer.receive_data(inv.to_bytes(), uas.peer_of(uac), 0.1)
    assert uas.layer.datagrams_to_send() == []


def test_invite_server_2xx_retransmitted_until_ack() -> None:
    net, uac, uas = pair()
    uas.on_event = answer(200)
    tu = AckingUac(uas)
    inv = build_request("INVITE", src=uac, dst=uas)
    tu.send(uac, inv)
    net.exchange()  # 100 and 200 reach the UAC, whose TU does not ACK yet
    net.advance(3.6)
    oks = net.sent_by(uas, "SIP/2.0 200")
    assert times(oks) == [0.0, 0.5, 1.5, 3.5]  # T1, 2T1, 4T1...
    assert len({p.data for p in oks}) == 1

    uac.on_event = tu
    ok = responses(uac, 200)[-1]
    tu(uac, ok)  # the TU ACKs now
    net.exchange()
    (ack,) = requests(uas, "ACK")
    assert ack.txn is None  # the ACK to a 2xx is passed up outside any transaction
    assert ack.request.via.branch != inv.via.branch
    assert uas.layer._acks == {}

    net.advance(20.0)
    assert len(net.sent_by(uas, "SIP/2.0 200")) == 4  # stopped by the ACK
    net.run()
    assert net.now == 64 * T1  # timer L (then M on the UAC side at the same instant)
    assert not uas.of(AckTimeout)
    assert_clean(uac, uas)


def test_invite_server_2xx_interval_capped_at_t2() -> None:
    net, uac, uas = pair()
    uas.on_event = answer(200)
    uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.run(drop=lambda p: p.src is uas and p.first_line.startswith("SIP/2.0 200"))
    assert times(net.sent_by(uas, "SIP/2.0 200")) == CAPPED_TIMES
    (timeout,) = uas.of(AckTimeout)
    assert isinstance(timeout, AckTimeout) and timeout.txn.method == "INVITE"
    assert kinds(uas)[-2:] == ["AckTimeout", "TransactionTerminated"]
    assert net.now == 64 * T1
    assert uas.layer.transaction_count == 0 and uas.layer._acks == {}


def test_invite_server_2xx_no_ack_reliable_timer_l() -> None:
    net, uac, uas = pair("tcp")
    uas.on_event = answer(200)
    uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.run()
    assert times(net.sent_by(uas, "SIP/2.0 200")) == [0.0]  # no retransmission over TCP
    assert len(uas.of(AckTimeout)) == 1
    assert net.now == 64 * T1
    assert_clean(uac, uas)


def test_invite_server_2xx_acked_reliable_no_ack_timeout() -> None:
    net, uac, uas = pair("tcp")
    uas.on_event = answer(200)
    tu = AckingUac(uas)
    uac.on_event = tu
    tu.send(uac, build_request("INVITE", src=uac, dst=uas))
    net.run()
    assert len(requests(uas, "ACK")) == 1
    assert not uas.of(AckTimeout)
    assert_clean(uac, uas)


def test_invite_server_invite_retransmission_in_accepted_resends_2xx() -> None:
    net, uac, uas = pair()
    uas.on_event = answer(200)
    inv = build_request("INVITE", src=uac, dst=uas)
    uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.exchange()
    (ok,) = net.sent_by(uas, "SIP/2.0 200")
    uas.layer.receive_data(inv.to_bytes(), uas.peer_of(uac), 0.1)
    assert uas.layer.datagrams_to_send() == [(ok.data, ok.dst)]
    assert len(requests(uas, "INVITE")) == 1


def test_invite_server_ack_reusing_invite_branch_in_accepted_passed_up() -> None:
    """Some UAs (and every RFC 2543 one) send the 2xx ACK with the INVITE's branch.

    It then matches the INVITE server transaction; RFC 6026 says an ACK in Accepted
    goes to the TU, and it must also stop the 2xx retransmissions.
    """
    net, uac, uas = pair()
    uas.on_event = answer(200)
    inv = build_request("INVITE", src=uac, dst=uas)
    uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.exchange()
    ok = responses(uac, 200)[0].response
    ack = ack_for_2xx(inv, ok, branch=inv.via.branch)
    uac.layer.send_raw(ack.to_bytes(), uac.peer_of(uas))
    net.exchange()
    (got,) = requests(uas, "ACK")
    assert got.txn is None
    net.run()
    assert times(net.sent_by(uas, "SIP/2.0 200")) == [0.0]
    assert not uas.of(AckTimeout)
    assert_clean(uac, uas)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_server_non2xx_timer_g_then_h(transport: str) -> None:
    net, uac, uas = pair(transport)
    uas.on_event = answer(486)
    uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.run(drop=lambda p: p.src is uas and p.first_line.startswith("SIP/2.0 486"))
    sent = net.sent_by(uas, "SIP/2.0 486")
    assert times(sent) == (CAPPED_TIMES if transport == "udp" else [0.0])
    assert len({p.data for p in sent}) == 1
    (timeout,) = uas.of(AckTimeout)
    assert isinstance(timeout, AckTimeout) and timeout.txn.final is not None
    assert kinds(uas)[-2:] == ["AckTimeout", "TransactionTerminated"]
    assert net.now == 64 * T1
    assert uas.layer.transaction_count == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_invite_server_ack_absorbed_confirmed_timer_i(transport: str) -> None:
    net, uac, uas = pair(transport)
    uas.on_event = answer(404)
    inv = build_request("INVITE", src=uac, dst=uas)
    uac.layer.send_request(inv, uac.peer_of(uas), 0)
    udp = transport == "udp"
    # over UDP the first 404 is lost and timer G's copy at 0.5 s gets the ACK back
    if not udp:
        net.exchange()
        (ev,) = requests(uas, "INVITE")
        assert ev.txn is not None and ev.txn.state == "confirmed"
        assert uas.layer.get_timer() == 0.0  # timer I is zero over TCP
        net.run()
        assert ev.txn.terminated and requests(uas, "ACK") == []
        assert_clean(uac, uas)
        return
    net.run(until=0.6, drop=lambda p: p.src is uas and p.sent_at == 0 and "404" in p.first_line)
    (st,) = uas.layer._server.values()
    assert st.state == "confirmed"
    assert requests(uas, "ACK") == []  # absorbed, not passed up
    assert times(net.sent_by(uas, "SIP/2.0 404")) == [0.0, 0.5]
    assert uas.layer.get_timer() == 0.5 + T4
    # Confirmed absorbs further ACKs and INVITE copies silently
    uas.layer.receive_data(net.sent_by(uac, "ACK")[0].data, uas.peer_of(uac), net.now)
    uas.layer.receive_data(inv.to_bytes(), uas.peer_of(uac), net.now)
    assert uas.layer.datagrams_to_send() == [] and uas.layer.next_event() is None
    net.run()
    assert st.terminated and not uas.of(AckTimeout)
    assert_clean(uac, uas)


def test_invite_server_confirmed_reliable_timer_i_zero() -> None:
    net, uac, uas = pair("tcp")
    uas.on_event = answer(603)
    uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.exchange()
    (st,) = uas.layer._server.values()
    assert st.state == "confirmed"
    assert uas.layer.get_timer() == 0.0
    uas.layer.handle_timer(uas.layer.get_timer() or 0.0)
    assert st.terminated


def test_invite_server_final_after_final_is_ignored() -> None:
    net, uac, uas = pair()
    uas.on_event = answer(486, 200, 500)
    uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.exchange()
    lines = [p.first_line for p in net.sent_by(uas)]
    assert lines == ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"]


# ---------------------------------------------------------------- non-INVITE server


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_non_invite_server_retransmissions_and_timer_j(transport: str) -> None:
    _net, uac, uas = pair(transport)
    req = build_request("REGISTER", src=uac, dst=uas)
    src = uas.peer_of(uac)
    data = req.to_bytes()
    uas.layer.receive_data(data, src, 0)
    (ev,) = uas.layer.events()
    assert isinstance(ev, IncomingRequest) and ev.txn is not None
    st = ev.txn
    assert st.state == "trying"
    assert uas.layer.datagrams_to_send() == []  # no automatic 100 for non-INVITE

    uas.layer.receive_data(data, src, 0.1)  # Trying: absorbed, nothing sent
    assert uas.layer.datagrams_to_send() == [] and uas.layer.events() == []
    assert uas.layer.stats["retransmissions_absorbed"] == 1

    uas.layer.respond(st, reply(ev.request, 100), 0.2)
    ((trying, dst),) = uas.layer.datagrams_to_send()
    assert st.state == "proceeding" and dst == src
    uas.layer.receive_data(data, src, 0.3)  # Proceeding: the provisional again
    assert uas.layer.datagrams_to_send() == [(trying, src)]

    uas.layer.respond(st, reply(ev.request, 200), 1.0)
    ((ok, _),) = uas.layer.datagrams_to_send()
    assert st.state == "completed"
    uas.layer.receive_data(data, src, 2.0)  # Completed: the final again
    assert uas.layer.datagrams_to_send() == [(ok, src)]
    uas.layer.respond(st, reply(ev.request, 500), 2.0)  # a second final is discarded
    assert uas.layer.datagrams_to_send() == []
    assert uas.layer.events() == []

    assert uas.layer.get_timer() == (1.0 + 64 * T1 if transport == "udp" else 1.0)
    uas.layer.handle_timer(uas.layer.get_timer() or 0)
    assert st.terminated
    assert [type(e) for e in uas.layer.events()] == [TransactionTerminated]
    assert_clean(uas)
    # a copy after J is a new request again
    uas.layer.receive_data(data, src, 100.0)
    assert len(uas.layer.events()) == 1


# ---------------------------------------------------------------- CANCEL


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_matches_invite_and_is_its_own_transaction(transport: str) -> None:
    net, uac, uas = pair(transport)
    seen: dict[str, ServerTransaction | None] = {}

    def uas_tu(ep: Endpoint, ev: Event) -> None:
        if not isinstance(ev, IncomingRequest) or ev.txn is None:
            return
        if ev.request.method == "INVITE":
            ep.layer.respond(ev.txn, reply(ev.request, 180), ep.now)
        elif ev.request.method == "CANCEL":
            invite_txn = ep.layer.find_invite_for_cancel(ev.request)
            seen["cancel"], seen["invite"] = ev.txn, invite_txn
            ep.layer.respond(ev.txn, reply(ev.request, 200), ep.now)
            assert invite_txn is not None
            ep.layer.respond(invite_txn, reply(invite_txn.request, 487), ep.now)

    uas.on_event = uas_tu
    inv = build_request("INVITE", src=uac, dst=uas)
    itxn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.exchange()
    assert itxn.state == "proceeding"
    ctxn = uac.layer.send_request(cancel_for(inv), uac.peer_of(uas), 1.0)
    assert ctxn is not itxn and uac.layer.transaction_count == 2
    net.exchange()

    cancel_st, invite_st = seen["cancel"], seen["invite"]
    assert cancel_st is not None and invite_st is not None
    assert cancel_st is not invite_st
    assert cancel_st.method == "CANCEL" and invite_st.method == "INVITE"
    assert invite_st.request.call_id == inv.call_id
    # the 200 went to the CANCEL transaction, the 487 to the INVITE one (and was ACKed)
    assert ctxn.final is not None and ctxn.final.status == 200
    assert itxn.final is not None and itxn.final.status == 487
    assert [r.response.status for r in responses(uac) if r.txn is ctxn] == [200]
    assert len(net.sent_by(uac, "ACK")) == 1
    assert invite_st.state == "confirmed" and requests(uas, "ACK") == []
    net.run()
    assert_clean(uac, uas)


def test_cancel_without_invite_not_found() -> None:
    _net, uac, uas = pair()
    inv = build_request("INVITE", src=uac, dst=uas)
    cancel = cancel_for(inv)
    uas.layer.receive_data(cancel.to_bytes(), uas.peer_of(uac), 0)
    (ev,) = uas.layer.events()
    assert isinstance(ev, IncomingRequest) and ev.txn is not None
    assert uas.layer.find_invite_for_cancel(ev.request) is None
    # an INVITE with another branch is not the one cancelled
    other = build_request("INVITE", src=uac, dst=uas)
    uas.layer.receive_data(other.to_bytes(), uas.peer_of(uac), 0)
    assert uas.layer.find_invite_for_cancel(ev.request) is None


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_cancel_unanswered_gives_up_invite_after_64_t1(transport: str) -> None:
    """RFC 3261 §9.1: no final response 64*T1 after the CANCEL ends the INVITE transaction.

    In Proceeding the INVITE client transaction has no timer, and the TU cannot end it,
    so a UAS that vanishes after its 100 Trying would otherwise leak it forever.
    """
    net, uac, uas = pair(transport)
    inv = build_request("INVITE", src=uac, dst=uas)
    itxn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.exchange()  # 100 Trying, then the UAS goes away
    assert itxn.state == "proceeding" and uac.layer.get_timer() is None
    net.advance(10.0)
    ctxn = uac.layer.send_request(cancel_for(inv), uac.peer_of(uas), net.now)
    net.run(drop=lambda p: True)
    assert net.now == 10.0 + 64 * T1
    timeouts = [e.txn for e in uac.of(TransactionTimeout)]
    assert ctxn in timeouts and itxn in timeouts
    assert uac.layer.transaction_count == 0


def test_cancel_does_not_extend_timer_b_while_calling() -> None:
    net, uac, uas = pair()
    inv = build_request("INVITE", src=uac, dst=uas)
    itxn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    uac.layer.send_request(cancel_for(inv), uac.peer_of(uas), 5.0)
    net.run(drop=lambda p: True)
    (first, second) = uac.of(TransactionTimeout)
    assert isinstance(first, TransactionTimeout) and first.txn is itxn  # B at 32 s
    assert isinstance(second, TransactionTimeout) and second.txn.method == "CANCEL"
    assert net.now == 5.0 + 64 * T1


@pytest.mark.parametrize("cancel_at", [0.1, 2.0])  # while Calling / while Proceeding
def test_cancel_timeout_survives_later_provisionals(cancel_at: float) -> None:
    net, uac, uas = pair()
    inv = build_request("INVITE", src=uac, dst=uas)
    itxn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.drop_all()
    if cancel_at > 1:
        uac.layer.receive_response(reply(inv, 100), uac.peer_of(uas), 1.0)
    uac.layer.send_request(cancel_for(inv), uac.peer_of(uas), cancel_at)
    for t in (3.0, 4.0):  # the UAS keeps ringing, then vanishes without a final response
        uac.layer.receive_response(reply(inv, 180), uac.peer_of(uas), t)
    net.run(drop=lambda p: True)
    assert itxn.terminated and itxn.final is None
    assert itxn in [e.txn for e in uac.of(TransactionTimeout)]
    assert net.now == cancel_at + 64 * T1
    assert uac.layer.transaction_count == 0


def test_reused_branch_does_not_unregister_the_new_transaction() -> None:
    net, uac, uas = pair()
    uas.on_event = answer()
    branch = "z9hG4bK-reused"
    first = uac.layer.send_request(
        build_request("OPTIONS", src=uac, dst=uas, branch=branch), uac.peer_of(uas), 0
    )
    net.exchange()
    assert first.state == "completed"  # timer K pending
    second = uac.layer.send_request(
        build_request("OPTIONS", src=uac, dst=uas, branch=branch, cseq=2), uac.peer_of(uas), 1.0
    )
    net.collect()
    net.drop_all()  # the second request is lost once
    uac.layer.handle_timer(T4)  # K of the first one
    assert first.terminated and not second.terminated
    net.run()  # E retransmits the second; the UAS answers it
    assert second.final is not None and not uac.of(TransactionTimeout)
    assert uac.layer.stats["stray_responses"] == 0


# ---------------------------------------------------------------- RFC 3581 / response routing

NAT = Peer("udp", "203.0.113.7", 40000)


def raw_invite(via: str, extra_vias: list[str] | None = None) -> bytes:
    lines = [
        "INVITE sip:bob@10.0.0.2 SIP/2.0",
        f"Via: {via}",
        *[f"Via: {v}" for v in extra_vias or []],
        "Max-Forwards: 70",
        "From: <sip:alice@example.com>;tag=a1",
        "To: <sip:bob@example.com>",
        "Call-ID: nat-1",
        "CSeq: 1 INVITE",
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def one_out(layer: TransactionLayer) -> tuple[Response, Peer]:
    out = layer.datagrams_to_send()
    assert len(out) == 1, out
    data, peer = out[0]
    r = parse_message(data)
    assert isinstance(r, Response)
    return r, peer


def test_rport_stamped_and_response_to_source() -> None:
    layer = TransactionLayer()
    layer.receive_data(raw_invite("SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKn1;rport"), NAT, 0)
    r, peer = one_out(layer)
    assert peer == NAT
    assert r.via.params["rport"] == "40000"
    assert r.via.params["received"] == "203.0.113.7"
    assert r.via.branch == "z9hG4bKn1" and r.via.sent_by == "192.168.1.5:5060"
    (ev,) = [e for e in layer.events() if isinstance(e, IncomingRequest)]
    assert ev.request.via.params["rport"] == "40000"  # the TU sees the stamped Via
    # later responses from the TU follow the same route
    assert ev.txn is not None
    layer.respond(ev.txn, reply(ev.request, 200), 0.1)
    r2, peer2 = one_out(layer)
    assert peer2 == NAT and r2.via.params["rport"] == "40000"


def test_rport_same_host_still_gets_received() -> None:
    layer = TransactionLayer()
    src = Peer("udp", "192.168.1.5", 5062)
    layer.receive_data(raw_invite("SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKn2;rport"), src, 0)
    r, peer = one_out(layer)
    assert peer == src
    assert r.via.params == {"branch": "z9hG4bKn2", "rport": "5062", "received": "192.168.1.5"}


def test_received_stamped_without_rport() -> None:
    layer = TransactionLayer()
    layer.receive_data(raw_invite("SIP/2.0/UDP 192.168.1.5:5070;branch=z9hG4bKn3"), NAT, 0)
    r, peer = one_out(layer)
    assert peer == NAT  # force_rport (default): symmetric response routing anyway
    assert r.via.params == {"branch": "z9hG4bKn3", "received": "203.0.113.7"}


def test_no_stamp_when_sent_by_matches_source() -> None:
    layer = TransactionLayer()
    src = Peer("udp", "192.168.1.5", 5060)
    via = "SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKn4"
    layer.receive_data(raw_invite(via), src, 0)
    r, _ = one_out(layer)
    assert r.get("Via") == via


def test_rport_on_comma_joined_via_line() -> None:
    layer = TransactionLayer()
    vias = (
        "SIP/2.0/UDP 192.168.1.5:5060;branch=z9hG4bKtop;rport, "
        "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKdown"
    )
    layer.receive_data(raw_invite(vias, ["SIP/2.0/UDP 10.8.8.8;branch=z9hG4bKlast"]), NAT, 0)
    r, peer = one_out(layer)
    assert peer == NAT
    items = r.get_all("Via")
    assert len(items) == 3
    assert r.via.params == {"branch": "z9hG4bKtop", "rport": "40000", "received": "203.0.113.7"}
    assert items[1] == "SIP/2.0/UDP 10.9.9.9:5060;branch=z9hG4bKdown"
    assert items[2] == "SIP/2.0/UDP 10.8.8.8;branch=z9hG4bKlast"
    assert [n for n, _ in r.headers].count("Via") == 2  # header lines kept as they were


def test_no_force_rport_routes_to_received_and_sent_by_port() -> None:
    layer = TransactionLayer(force_rport=False)
    layer.receive_data(raw_invite("SIP/2.0/UDP 192.168.1.5:5070;branch=z9hG4bKn5"), NAT, 0)
    r, peer = one_out(layer)
    assert peer == Peer("udp", "203.0.113.7", 5070)
    assert r.via.params["received"] == "203.0.113.7"


def test_no_force_rport_default_port_5060() -> None:
    layer = TransactionLayer(force_rport=False)
    src = Peer("udp", "192.168.1.5", 40001)
    layer.receive_data(raw_invite("SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKn6"), src, 0)
    _r, peer = one_out(layer)
    assert peer == Peer("udp", "192.168.1.5", 5060)


def test_no_force_rport_but_rport_requested() -> None:
    layer = TransactionLayer(force_rport=False)
    layer.receive_data(raw_invite("SIP/2.0/UDP 192.168.1.5:5070;branch=z9hG4bKn7;rport"), NAT, 0)
    _r, peer = one_out(layer)
    assert peer == NAT


def test_no_force_rport_maddr_wins_over_received() -> None:
    # RFC 3261 §18.2.2: maddr is checked before received
    layer = TransactionLayer(force_rport=False)
    via = "SIP/2.0/UDP 192.168.1.5:5070;branch=z9hG4bKn8;maddr=239.1.2.3"
    layer.receive_data(raw_invite(via), NAT, 0)
    _r, peer = one_out(layer)
    assert peer == Peer("udp", "239.1.2.3", 5070)


def test_reliable_responses_go_back_on_the_connection() -> None:
    layer = TransactionLayer(force_rport=False)
    conn = Peer("tcp", "203.0.113.7", 40000, conn=17)
    layer.receive_data(raw_invite("SIP/2.0/TCP 192.168.1.5:5070;branch=z9hG4bKn9"), conn, 0)
    r, peer = one_out(layer)
    assert peer == conn
    assert r.via.params["received"] == "203.0.113.7"


# ---------------------------------------------------------------- malformed input


def test_bad_request_answered_400_with_reason_to_source() -> None:
    # without rport and force_rport=False: to received (stamped) and the sent-by port
    for layer, dst in (
        (TransactionLayer(), NAT),
        (TransactionLayer(force_rport=False), Peer("udp", NAT.host, 5070)),
    ):
        data = raw_invite("SIP/2.0/UDP 192.168.1.5:5070;branch=z9hG4bKb1").replace(
            b"Call-ID: nat-1\r\n", b""
        )
        layer.receive_data(data, NAT, 0)
        ((out, peer),) = layer.datagrams_to_send()
        assert peer == dst
        lines = out.decode().split("\r\n")
        assert lines[0] == "SIP/2.0 400 Bad Request (missing Call-ID header)"
        assert "Via: SIP/2.0/UDP 192.168.1.5:5070;branch=z9hG4bKb1;received=203.0.113.7" in lines
        assert layer.stats["parse_errors"] == 1
        assert layer.transaction_count == 0 and layer.events() == []


def test_bad_content_length_answered_400() -> None:
    layer = TransactionLayer()
    data = raw_invite("SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKb2").replace(
        b"Content-Length: 0", b"Content-Length: 99"
    )
    layer.receive_data(data, NAT, 0)
    r, peer = one_out(layer)
    assert (r.status, peer) == (400, NAT)
    assert "Content-Length" in r.reason


def test_bad_request_over_tcp_without_content_length() -> None:
    layer = TransactionLayer()
    conn = Peer("tcp", "203.0.113.7", 40000, conn=3)
    data = raw_invite("SIP/2.0/TCP 192.168.1.5;branch=z9hG4bKb3")
    data = data.replace(b"Content-Length: 0\r\n", b"")
    layer.receive_data(data, conn, 0)
    r, peer = one_out(layer)
    assert (r.status, peer) == (400, conn)


def test_400_reason_names_the_problem() -> None:
    layer = TransactionLayer()
    data = raw_invite("SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKb4").replace(
        b"Max-Forwards: 70", b"Max-Forwards: x"
    )
    layer.receive_data(data, NAT, 0)
    r, _ = one_out(layer)
    assert (r.status, r.reason) == (400, "Bad Request (invalid Max-Forwards)")


def test_bad_ack_never_answered() -> None:
    layer = TransactionLayer()
    data = (
        b"ACK sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKb5\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )  # no Call-ID
    layer.receive_data(data, NAT, 0)
    assert layer.datagrams_to_send() == [] and layer.events() == []
    assert layer.stats["parse_errors"] == 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"hello world",
        b"\x00\xff\xfe garbage",
        b"INVITE sip:x SIP/2.0 extra\r\n\r\n",
    ],
)
def test_garbage_dropped_silently(data: bytes) -> None:
    layer = TransactionLayer()
    layer.receive_data(data, NAT, 0)
    assert layer.datagrams_to_send() == [] and layer.events() == []
    assert layer.stats["parse_errors"] == 1


def test_unparseable_response_dropped() -> None:
    net, uac, uas = pair()
    inv = build_request("INVITE", src=uac, dst=uas)
    txn = uac.layer.send_request(inv, uac.peer_of(uas), 0)
    net.collect()
    net.drop_all()
    bad = reply(inv, 200).to_bytes().replace(b"CSeq: 1 INVITE\r\n", b"")
    uac.layer.receive_data(bad, uac.peer_of(uas), 0.1)
    assert uac.layer.events() == [] and uac.layer.datagrams_to_send() == []
    assert uac.layer.stats["parse_errors"] == 1
    assert txn.state == "calling"


def test_unsupported_version_gets_505_to_source() -> None:
    layer = TransactionLayer()
    data = raw_invite("SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKv1").replace(
        b"INVITE sip:bob@10.0.0.2 SIP/2.0", b"INVITE sip:bob@10.0.0.2 SIP/3.0"
    )
    layer.receive_data(data, NAT, 0)
    r, peer = one_out(layer)
    assert (r.status, peer) == (505, NAT)
    assert layer.transaction_count == 0 and layer.events() == []


def test_unsupported_version_ack_not_answered() -> None:
    layer = TransactionLayer()
    data = (
        b"ACK sip:bob@10.0.0.2 SIP/3.0\r\nVia: SIP/2.0/UDP 192.168.1.5;branch=z9hG4bKv2\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:b@y>;tag=2\r\nCall-ID: v2\r\nCSeq: 1 ACK\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    layer.receive_data(data, NAT, 0)
    assert layer.datagrams_to_send() == [] and layer.events() == []


def rfc2543_invite(cseq: int = 1, method: str = "INVITE", branch: str = "") -> bytes:
    via = "SIP/2.0/UDP 192.168.1.9:5060" + (f";branch={branch}" if branch else "")
    return (
        f"{method} sip:bob@10.0.0.2 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:old@example.com>;tag=o1\r\n"
        f"To: <sip:bob@example.com>\r\nCall-ID: old-1\r\nCSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("branch", ["", "1234abc"])
def test_rfc2543_request_retransmission_matched(branch: str) -> None:
    layer = TransactionLayer()
    src = Peer("udp", "192.168.1.9", 5060)
    layer.receive_data(rfc2543_invite(branch=branch), src, 0)
    (ev,) = [e for e in layer.events() if isinstance(e, IncomingRequest)]
    assert ev.txn is not None
    (trying, _), = layer.datagrams_to_send()
    layer.receive_data(rfc2543_invite(branch=branch), src, 0.5)
    assert layer.events() == []
    assert layer.datagrams_to_send() == [(trying, src)]
    assert layer.transaction_count == 1
    # CANCEL finds it; a new CSeq is a new transaction
    layer.receive_data(rfc2543_invite(method="CANCEL", branch=branch), src, 0.6)
    (cev,) = layer.events()
    assert isinstance(cev, IncomingRequest) and cev.txn is not None and cev.txn is not ev.txn
    assert layer.find_invite_for_cancel(cev.request) is ev.txn
    layer.receive_data(rfc2543_invite(cseq=2, branch=branch), src, 0.7)
    assert layer.transaction_count == 3
    # the non-2xx ACK (same R-URI, Call-ID, From tag, CSeq number, Via) is absorbed
    layer.respond(ev.txn, reply(ev.request, 486, "t9"), 1.0)
    ack = rfc2543_invite(method="ACK", branch=branch).replace(
        b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=t9"
    )
    layer.datagrams_to_send()
    layer.events()
    layer.receive_data(ack, src, 1.1)
    assert ev.txn.state == "confirmed"
    assert [e for e in layer.events() if isinstance(e, IncomingRequest)] == []


def test_rfc2543_ack_for_2xx_passed_up_and_stops_retransmissions() -> None:
    # without a magic cookie the 2xx ACK matches the INVITE transaction (same R-URI,
    # Call-ID, From tag, CSeq number, Via): it must still reach the TU (RFC 6026)
    layer = TransactionLayer()
    src = Peer("udp", "192.168.1.9", 5060)
    layer.receive_data(rfc2543_invite(), src, 0)
    (ev,) = [e for e in layer.events() if isinstance(e, IncomingRequest)]
    assert ev.txn is not None
    layer.respond(ev.txn, reply(ev.request, 200, "t9"), 0)
    layer.datagrams_to_send()
    layer.handle_timer(0.5)
    assert len(layer.datagrams_to_send()) == 1  # the 2xx retransmitted once
    ack = rfc2543_invite(method="ACK").replace(
        b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=t9"
    )
    for at in (0.6, 0.7):  # every copy of the ACK goes up
        layer.receive_data(ack, src, at)
        (aev,) = layer.events()
        assert isinstance(aev, IncomingRequest) and aev.request.method == "ACK"
        assert aev.txn is None
    layer.handle_timer(31.9)
    assert layer.datagrams_to_send() == []
    layer.handle_timer(32.0)  # timer L
    assert [type(e) for e in layer.events()] == [TransactionTerminated]
    assert layer.transaction_count == 0 and layer._acks == {}


# ---------------------------------------------------------------- stray responses


def test_stray_responses_counted_and_dropped() -> None:
    net, uac, uas = pair()
    req = build_request("OPTIONS", src=uac, dst=uas)
    for code in (100, 200, 486):
        uac.layer.receive_response(reply(req, code), uac.peer_of(uas), 0)
    inv = build_request("INVITE", src=uac, dst=uas)
    for code in (180, 486):
        uac.layer.receive_response(reply(inv, code), uac.peer_of(uas), 0)
    assert uac.layer.events() == [] and uac.layer.datagrams_to_send() == []
    assert uac.layer.stats["stray_responses"] == 5
    # a known branch with another method is stray too
    txn = uac.layer.send_request(req, uac.peer_of(uas), 0)
    net.collect()
    net.drop_all()
    wrong = reply(req, 200)
    wrong.set("CSeq", "1 INVITE")
    uac.layer.receive_response(wrong, uac.peer_of(uas), 0)  # a 2xx "to an INVITE": passed up
    wrong.set("CSeq", "1 BYE")
    uac.layer.receive_response(wrong, uac.peer_of(uas), 0)
    evs = uac.layer.events()
    assert len(evs) == 1 and isinstance(evs[0], IncomingResponse) and evs[0].txn is None
    assert uac.layer.stats["stray_responses"] == 6
    assert txn.state == "trying"


def test_stray_2xx_for_invite_passed_up_without_txn() -> None:
    _net, uac, uas = pair()
    inv = build_request("INVITE", src=uac, dst=uas)
    uac.layer.receive_data(reply(inv, 200).to_bytes(), uac.peer_of(uas), 0)
    (ev,) = uac.layer.events()
    assert isinstance(ev, IncomingResponse) and ev.txn is None and ev.response.status == 200
    assert uac.layer.stats["stray_responses"] == 0


# ---------------------------------------------------------------- API guards and timers


def test_ack_cannot_start_a_transaction() -> None:
    _net, uac, uas = pair()
    with pytest.raises(ValueError):
        uac.layer.send_request(build_request("ACK", src=uac, dst=uas), uac.peer_of(uas), 0)


def test_get_timer_skips_cancelled_timers() -> None:
    net, uac, uas = pair()
    txn = uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    assert uac.layer.get_timer() == T1
    net.exchange()  # 100 Trying: A and B cancelled, their heap entries still there
    assert txn.state == "proceeding"
    assert uac.layer.get_timer() is None
    uac.layer.handle_timer(100.0)  # firing a cancelled entry would retransmit / time out
    assert uac.layer.datagrams_to_send() == [] and uac.layer.events() == []


def test_handle_timer_late_leaves_no_timer_in_the_past() -> None:
    layer = TransactionLayer()
    dst = Peer("udp", "10.0.0.9", 5060)
    src = Endpoint("x", "10.0.0.1", 5060)
    txn = layer.send_request(build_request("INVITE", src=src, dst=src), dst, 0)
    layer.datagrams_to_send()
    layer.handle_timer(10.0)  # A was due at 0.5: fires once, re-armed from "now"
    assert len(layer.datagrams_to_send()) == 1
    t = layer.get_timer()
    assert t is not None and t > 10.0
    layer.handle_timer(100.0)  # A and B overdue: one retransmission, then the timeout
    assert len(layer.datagrams_to_send()) == 1
    assert txn.terminated
    assert layer.get_timer() is None
    layer.handle_timer(1000.0)
    assert layer.datagrams_to_send() == [] and layer.events()[-1] == TransactionTerminated(txn)


def test_handle_timer_before_due_does_nothing() -> None:
    layer = TransactionLayer()
    src = Endpoint("x", "10.0.0.1", 5060)
    layer.send_request(build_request("OPTIONS", src=src, dst=src), Peer("udp", "10.0.0.9", 5060), 0)
    layer.datagrams_to_send()
    layer.handle_timer(0.49)
    assert layer.datagrams_to_send() == [] and layer.get_timer() == T1


def test_next_event_and_events_drain_in_order() -> None:
    layer = TransactionLayer()
    src = Endpoint("x", "10.0.0.1", 5060)
    inv = build_request("INVITE", src=src, dst=src)
    layer.receive_data(inv.to_bytes(), Peer("udp", "10.0.0.1", 5060), 0)
    req2 = build_request("OPTIONS", src=src, dst=src)
    layer.receive_data(req2.to_bytes(), Peer("udp", "10.0.0.1", 5060), 0)
    first = layer.next_event()
    assert isinstance(first, IncomingRequest) and first.request.method == "INVITE"
    rest = layer.events()
    assert len(rest) == 1 and isinstance(rest[0], IncomingRequest)
    assert layer.next_event() is None and layer.events() == []


def test_terminate_all() -> None:
    net, uac, uas = pair()
    uas.on_event = answer(180)
    uac.layer.send_request(build_request("INVITE", src=uac, dst=uas), uac.peer_of(uas), 0)
    net.exchange()
    uac.layer.send_request(build_request("OPTIONS", src=uac, dst=uas), uac.peer_of(uas), 0)
    for ep in (uac, uas):
        ep.layer.terminate_all()
        assert ep.layer.events() == []
        assert_clean(ep)


# ---------------------------------------------------------------- scale and fuzz


def run_scale(seed: int, n: int) -> tuple[dict[str, int], Net, Endpoint, Endpoint]:
    rng = random.Random(seed)
    net, uac, uas = pair()
    tu = AckingUac(uas)
    uac.on_event = tu

    def uas_tu(ep: Endpoint, ev: Event) -> None:
        if isinstance(ev, IncomingRequest) and ev.txn is not None:
            r = ev.request
            ep.layer.respond(ev.txn, reply(r, 180, f"t{r.call_id}"), ep.now)
            code = 486 if r.call_id.endswith("7") else 200
            ep.layer.respond(ev.txn, reply(r, code, f"t{r.call_id}"), ep.now)

    uas.on_event = uas_tu
    for i in range(n):
        inv = build_request(
            "INVITE", src=uac, dst=uas, call_id=f"{i}", from_tag=f"f{i}", branch=f"z9hG4bK-s{i}"
        )
        tu.send(uac, inv)
    net.run(drop=lossy(rng, 0.1))
    finals: dict[str, int] = {}
    for e in responses(uac):
        if e.response.status >= 200:
            finals.setdefault(e.response.call_id, e.response.status)
    return finals, net, uac, uas


def test_scale_2000_concurrent_invites_with_losses() -> None:
    n = 2000
    finals, net, uac, uas = run_scale(seed=3261, n=n)
    assert len(finals) == n
    assert sum(1 for c in finals.values() if c == 486) == n // 10
    assert not uac.of(TransactionTimeout) and not uas.of(AckTimeout)
    assert len(requests(uas, "INVITE")) == n  # every retransmission absorbed
    assert uas.layer.stats["retransmissions_absorbed"] > 0
    assert len(net.sent_by(uac, "INVITE")) > n  # losses really happened
    assert_clean(uac, uas)
    # deterministic: the same seed gives the very same exchange
    finals2, net2, _, _ = run_scale(seed=3261, n=n)
    assert finals2 == finals
    assert [(p.sent_at, p.data) for p in net2.wire] == [(p.sent_at, p.data) for p in net.wire]


@pytest.mark.parametrize("seed", range(6))
def test_fuzz_random_link_invariants(seed: int) -> None:
    """Random flows over a link that drops, duplicates and reorders.

    Checked on every timer: get_timer() is never in the past and never a cancelled timer
    (a live timer always retransmits or ends something); in the end nothing leaks.
    """
    rng = random.Random(seed)
    transport = "udp" if seed % 3 else "tcp"
    net, uac, uas = pair(transport)
    tu = AckingUac(uas)

    def uac_tu(ep: Endpoint, ev: Event) -> None:
        tu(ep, ev)
        # cancel on the first provisional: the 180 of the calls the UAS never answers may
        # be lost for good (1xx are not retransmitted), and this TU has no timer of its own
        if (
            isinstance(ev, IncomingResponse)
            and ev.txn is not None
            and ev.response.status < 200
            and ev.txn.method == "INVITE"
            and ev.txn.user is None
        ):
            ev.txn.user = "cancelled"
            ep.layer.send_request(cancel_for(ev.txn.request), ep.peer_of(uas), ep.now)

    def uas_tu(ep: Endpoint, ev: Event) -> None:
        if not isinstance(ev, IncomingRequest) or ev.txn is None:
            return
        r = ev.request
        if r.method == "CANCEL":
            it = ep.layer.find_invite_for_cancel(r)
            ep.layer.respond(ev.txn, reply(r, 200 if it else 481), ep.now)
            if it is not None:
                ep.layer.respond(it, reply(it.request, 487), ep.now)
        elif r.method == "INVITE":
            kind = int(r.call_id) % 3
            if kind == 0:
                ep.layer.respond(ev.txn, reply(r, 200), ep.now)
            elif kind == 1:
                ep.layer.respond(ev.txn, reply(r, 603), ep.now)
            else:
                ep.layer.respond(ev.txn, reply(r, 180), ep.now)  # the UAC cancels
        else:
            ep.layer.respond(ev.txn, reply(r, 200), ep.now)

    uac.on_event, uas.on_event = uac_tu, uas_tu

    def mangle() -> None:
        if transport == "udp":
            net.in_flight = [p for p in net.in_flight if rng.random() > 0.25]
            net.in_flight += [p for p in net.in_flight if rng.random() < 0.1]
            rng.shuffle(net.in_flight)

    starts: list[tuple[float, Request]] = []
    t = 0.0
    for i in range(60):
        method = "INVITE" if i % 2 else rng.choice(["OPTIONS", "BYE", "MESSAGE"])
        req = build_request(method, src=uac, dst=uas, call_id=str(i), from_tag=f"f{i}")
        starts.append((t, req))
        if rng.random() < 0.3:
            t += rng.random() * 3

    for _ in range(100000):
        net.collect()
        if net.in_flight:
            mangle()
            net.deliver_all()
            continue
        when = net.next_timer()
        if starts and (when is None or starts[0][0] <= when):
            start, req = starts.pop(0)
            net.now = max(net.now, start)
            if req.method == "INVITE":
                tu.send(uac, req)
            else:
                uac.layer.send_request(req, uac.peer_of(uas), net.now)
            continue
        if when is None:
            break
        assert when >= net.now
        net.now = when
        for ep in (uac, uas):
            due = ep.layer.get_timer()
            if due is None or due > when:
                continue
            before = (len(ep.log), len(net.wire))
            ep.layer.handle_timer(when)
            after = ep.layer.get_timer()
            assert after is None or after > when
            net.collect()
            assert (len(ep.log), len(net.wire)) != before, "a dead timer was returned"
    assert not starts
    assert_clean(uac, uas)
    assert uac.layer.stats["parse_errors"] == uas.layer.stats["parse_errors"] == 0


# ---------------------------------------------------------------- RFC 3665 call flows

ALICE_HOST, BOB_HOST = "192.0.2.101", "192.0.2.201"


def msg(text: str, transport: str) -> Request | Response:
    """An RFC 3665 message as printed (LF line ends), with Content-Length recomputed."""
    head, _, body = text.strip("\n").partition("\n\n")
    lines = [ln for ln in head.split("\n") if not ln.startswith("Content-Length")]
    wire = "\r\n".join(lines).replace("/TCP ", f"/{transport.upper()} ")
    wire = wire.replace(";transport=tcp", f";transport={transport}")
    raw = (wire + "\r\n\r\n" + (body + "\n" if body else "").replace("\n", "\r\n")).encode()
    m = parse_message(raw)
    m.body = raw.split(b"\r\n\r\n", 1)[1]
    return m


F1_INVITE = """
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Contact: <sip:alice@client.atlanta.example.com;transport=tcp>
Content-Type: application/sdp
Content-Length: 151

v=0
o=alice 2890844526 2890844526 IN IP4 client.atlanta.example.com
s=-
c=IN IP4 192.0.2.101
t=0 0
m=audio 49172 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

F2_RINGING = """
SIP/2.0 180 Ringing
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Contact: <sip:bob@client.biloxi.example.com;transport=tcp>
Content-Length: 0
"""

F3_OK = """
SIP/2.0 200 OK
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Contact: <sip:bob@client.biloxi.example.com;transport=tcp>
Content-Type: application/sdp
Content-Length: 147

v=0
o=bob 2890844527 2890844527 IN IP4 client.biloxi.example.com
s=-
c=IN IP4 192.0.2.201
t=0 0
m=audio 3456 RTP/AVP 0
a=rtpmap:0 PCMU/8000
"""

F4_ACK = """
ACK sip:bob@client.biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bd5
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 ACK
Content-Length: 0
"""

F5_BYE = """
BYE sip:alice@client.atlanta.example.com SIP/2.0
Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7
Max-Forwards: 70
From: Bob <sip:bob@biloxi.example.com>;tag=8321234356
To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 BYE
Content-Length: 0
"""

F6_OK = """
SIP/2.0 200 OK
Via: SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7;received=192.0.2.201
From: Bob <sip:bob@biloxi.example.com>;tag=8321234356
To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 BYE
Content-Length: 0
"""


def rfc_pair(transport: str) -> tuple[Net, Endpoint, Endpoint]:
    net = Net()
    alice = net.add(Endpoint("alice", ALICE_HOST, 5060, transport))
    bob = net.add(Endpoint("bob", BOB_HOST, 5060, transport))
    return net, alice, bob


def answer_as(st: ServerTransaction, text: str, transport: str) -> Response:
    """The UAS TU's response: the RFC text with the Vias of the request as received."""
    r = msg(text, transport)
    assert isinstance(r, Response)
    vias = [v for n, v in st.request.headers if n == "Via"]
    r.remove("Via")
    for v in reversed(vias):
        r.add("Via", v, first=True)
    return r


def same_fields(got: Request | Response, text: str, transport: str) -> None:
    want = msg(text, transport)
    assert got.start_line() == want.start_line()
    for name in ("From", "To", "Call-ID", "CSeq", "Contact", "Content-Type", "Max-Forwards"):
        assert got.get(name) == want.get(name), name
    assert got.body == want.body
    assert got.via.branch == want.via.branch and got.via.sent_by == want.via.sent_by


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rfc3665_2_1_successful_session_establishment(transport: str) -> None:
    net, alice, bob = rfc_pair(transport)
    f1 = msg(F1_INVITE, transport)
    assert isinstance(f1, Request)
    ctx = alice.layer.send_request(f1, alice.peer_of(bob), 0)
    net.collect()
    net.deliver_all()  # F1
    bob.drain()
    (inv,) = requests(bob, "INVITE")
    assert inv.txn is not None
    same_fields(inv.request, F1_INVITE, transport)
    assert inv.request.via.params["received"] == ALICE_HOST  # as in F2/F3
    st = inv.txn
    bob.layer.respond(st, answer_as(st, F2_RINGING, transport), net.now)
    net.advance(2.0)  # Bob's phone rings (the 100 Trying went first)
    bob.layer.respond(st, answer_as(st, F3_OK, transport), net.now)
    net.exchange()
    statuses = [e.response.status for e in responses(alice)]
    assert statuses == [100, 180, 200]
    same_fields(responses(alice, 180)[0].response, F2_RINGING, transport)
    ok = responses(alice, 200)[0]
    same_fields(ok.response, F3_OK, transport)
    assert ok.response.via.params.get("received") == ALICE_HOST
    assert ctx.state == "accepted" and st.state == "accepted"

    f4 = msg(F4_ACK, transport)
    alice.layer.send_raw(f4.to_bytes(), alice.peer_of(bob))  # F4, by Alice's TU
    net.exchange()
    (ack,) = requests(bob, "ACK")
    assert ack.txn is None
    same_fields(ack.request, F4_ACK, transport)
    assert len(net.sent_by(bob, "SIP/2.0 200")) == 1  # the ACK came in time

    net.advance(10.0)  # conversation
    f5 = msg(F5_BYE, transport)
    assert isinstance(f5, Request)
    bye_ctx = bob.layer.send_request(f5, bob.peer_of(alice), net.now)
    net.collect()
    net.deliver_all()  # F5
    alice.drain()
    (bye,) = requests(alice, "BYE")
    assert bye.txn is not None
    same_fields(bye.request, F5_BYE, transport)
    alice.layer.respond(bye.txn, answer_as(bye.txn, F6_OK, transport), net.now)
    net.exchange()  # F6
    (bye_ok,) = responses(bob, 200)
    same_fields(bye_ok.response, F6_OK, transport)
    assert bye_ok.txn is bye_ctx and bye_ctx.state == "completed"

    net.run()
    assert not alice.of(TransactionTimeout) and not bob.of(AckTimeout)
    assert_clean(alice, bob)
    wire = [(p.src.name, p.first_line.split(" sip:")[0]) for p in net.wire]
    assert wire == [
        ("alice", "INVITE"),
        ("bob", "SIP/2.0 100 Trying"),
        ("bob", "SIP/2.0 180 Ringing"),
        ("bob", "SIP/2.0 200 OK"),
        ("alice", "ACK"),
        ("bob", "BYE"),
        ("alice", "SIP/2.0 200 OK"),
    ]


BUSY_TEXT = """
SIP/2.0 486 Busy Here
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Content-Length: 0
"""

BUSY_ACK = """
ACK sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 ACK
Content-Length: 0
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("status", [486, 480, 603])
def test_rfc3665_3_unsuccessful_busy(transport: str, status: int) -> None:
    net, alice, bob = rfc_pair(transport)
    f1 = msg(F1_INVITE, transport)
    assert isinstance(f1, Request)
    ctx = alice.layer.send_request(f1, alice.peer_of(bob), 0)
    net.collect()
    net.deliver_all()
    bob.drain()
    (inv,) = requests(bob, "INVITE")
    assert inv.txn is not None
    reason = {486: "Busy Here", 480: "Temporarily Unavailable", 603: "Decline"}[status]
    text = BUSY_TEXT.replace("486 Busy Here", f"{status} {reason}")
    bob.layer.respond(inv.txn, answer_as(inv.txn, text, transport), net.now)
    net.exchange()
    assert [e.response.status for e in responses(alice)] == [100, status]
    (ack_pkt,) = net.sent_by(alice, "ACK")
    ack = ack_pkt.parse()
    # the layer's ACK is the one RFC 3665 shows (same branch as the INVITE, Bob's To tag)
    same_fields(ack, BUSY_ACK, transport)
    assert ack.get_all("Via") == [f1.get_all("Via")[0]]
    assert inv.txn.state == "confirmed" and requests(bob, "ACK") == []
    net.run()
    assert ctx.terminated and inv.txn.terminated
    assert_clean(alice, bob)


CANCEL_TEXT = """
CANCEL sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 CANCEL
Content-Length: 0
"""

CANCEL_OK = """
SIP/2.0 200 OK
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 CANCEL
Content-Length: 0
"""

TERMINATED = """
SIP/2.0 487 Request Terminated
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>;tag=8321234356
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: 1 INVITE
Content-Length: 0
"""


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rfc3665_3_unsuccessful_no_answer_cancel(transport: str) -> None:
    net, alice, bob = rfc_pair(transport)
    f1 = msg(F1_INVITE, transport)
    assert isinstance(f1, Request)
    ctx = alice.layer.send_request(f1, alice.peer_of(bob), 0)
    net.collect()
    net.deliver_all()
    bob.drain()
    (inv,) = requests(bob, "INVITE")
    st = inv.txn
    assert st is not None
    bob.layer.respond(st, answer_as(st, F2_RINGING, transport), net.now)
    net.exchange()
    net.advance(20.0)  # nobody answers
    cancel = msg(CANCEL_TEXT, transport)
    assert isinstance(cancel, Request)
    cctx = alice.layer.send_request(cancel, alice.peer_of(bob), net.now)
    net.collect()
    net.deliver_all()
    bob.drain()
    (cev,) = requests(bob, "CANCEL")
    assert cev.txn is not None and cev.txn is not st
    assert bob.layer.find_invite_for_cancel(cev.request) is st
    bob.layer.respond(cev.txn, answer_as(cev.txn, CANCEL_OK, transport), net.now)
    bob.layer.respond(st, answer_as(st, TERMINATED, transport), net.now)
    net.exchange()
    assert cctx.final is not None and cctx.final.status == 200
    assert ctx.final is not None and ctx.final.status == 487
    ack = net.sent_by(alice, "ACK")[0].parse()
    same_fields(ack, BUSY_ACK, transport)
    assert st.state == "confirmed"
    net.run()
    assert_clean(alice, bob)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rfc3665_3_unsuccessful_no_response(transport: str) -> None:
    net, alice, bob = rfc_pair(transport)
    f1 = msg(F1_INVITE, transport)
    assert isinstance(f1, Request)
    ctx = alice.layer.send_request(f1, alice.peer_of(bob), 0)
    net.run(drop=lambda p: True)  # Bob's UA is gone
    assert times(net.sent_by(alice, "INVITE")) == (A_TIMES if transport == "udp" else [0.0])
    (to,) = alice.of(TransactionTimeout)
    assert isinstance(to, TransactionTimeout) and to.txn is ctx
    assert_clean(alice, bob)
