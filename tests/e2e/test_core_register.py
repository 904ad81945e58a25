"""Registrar, OPTIONS, authentication, IPv6, rport and malformed input (issue 2: core).

SIPp registers the demo users with digest auth; a hand-made client checks what a
real phone cannot show: identical challenges for known and unknown users, rport,
IPv6, and the 400s for broken requests.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

from tests.e2e.rawsip import RawResponse, RawSip
from tests.e2e.server import CcswitchServer, running_server
from tests.peers.sipp import USERS_CSV, run_sipp


def _challenge_shape(r: RawResponse) -> tuple[object, ...]:
    """Everything of a 401 except the values that must differ (nonce, tags, ids)."""
    chal = r.get("WWW-Authenticate") or ""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', chal))
    params.pop("nonce", None)
    params.pop("opaque", None)
    names = sorted({k.lower() for k, _ in r.headers} - {"date"})
    return r.status, r.reason, names, chal.split()[0], sorted(params.items())


async def test_sipp_registers_demo_users_with_digest(server: CcswitchServer,
                                                     tmp_path: Path) -> None:
    res = await run_sipp("register_auth.xml", server.domain, service=None, caller=None,
                         csv=USERS_CSV, calls=3, rate=10, timeout=15, workdir=tmp_path,
                         trace_msg=True)
    assert res.ok and res.successful == 3, res.summary()
    # each REGISTER was challenged first: the 401 carries an MD5 qop=auth challenge
    msgs = next(res.workdir.glob("messages.log")).read_text(errors="replace")
    assert msgs.count("SIP/2.0 401 Unauthorized") >= 3
    assert re.search(r'WWW-Authenticate: Digest realm="[^"]+", nonce="[^"]+"', msgs)
    assert 'qop="auth"' in msgs
    regs = await server.acli_json("registrations")
    assert sorted(r["extension"] for r in regs) == ["1001", "1002", "1003"]
    assert all(r["user_agent"] == "sipp-ccswitch-tests" for r in regs)
    table = server.cli("registrations").stdout
    for col in ("Ext", "Contact", "Expires"):
        assert col in table
    assert "3 registrations" in table


async def test_wrong_password_and_unknown_user_look_the_same(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port) as s:
        ch_ok, fin_ok = await s.register("1001", "secret1001")
        ch_bad, fin_bad = await s.register("1001", "wrong-password")
        ch_unk, fin_unk = await s.register("7777", "whatever1")
    assert ch_ok is not None and fin_ok is not None and fin_ok.status == 200
    assert ch_bad is not None and fin_bad is not None and ch_unk is not None
    assert fin_unk is not None
    assert fin_bad.status == 403 and fin_unk.status == 403
    # no enumeration: the unknown extension gets the same challenge and the same refusal
    assert _challenge_shape(ch_unk) == _challenge_shape(ch_bad) == _challenge_shape(ch_ok)
    assert (fin_unk.reason, sorted(k for k, _ in fin_unk.headers)) == \
        (fin_bad.reason, sorted(k for k, _ in fin_bad.headers))
    regs = await server.acli_json("registrations")
    assert [r["extension"] for r in regs] == ["1001"]


async def test_register_refresh_and_unregister(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port) as s, RawSip("127.0.0.1", server.port) as s2:
        _, fin = await s.register("1002", "secret1002", expires=120)
        assert fin is not None and fin.status == 200
        assert "expires=120" in (fin.get("Contact") or "").replace(" ", "")
        _, fin = await s.register("1002", "secret1002", expires=300)  # refresh
        assert fin is not None and fin.status == 200
        regs = await server.acli_json("registrations")
        assert len(regs) == 1 and 200 < regs[0]["expires_in"] <= 300
        _, fin = await s.register("1002", "secret1002", expires=0)  # Expires: 0
        assert fin is not None and fin.status == 200
        assert await server.acli_json("registrations") == []
        # two devices on one extension, then "Contact: *" removes both
        for sock in (s, s2):
            _, fin = await sock.register("1002", "secret1002", expires=300)
            assert fin is not None and fin.status == 200
        regs = await server.acli_json("registrations")
        assert sorted(r["contact"] for r in regs) == sorted(
            f"sip:1002@127.0.0.1:{x.local_port};transport=udp" for x in (s, s2)), regs
        _, fin = await s.register("1002", "secret1002", expires=0, contact="*")
        assert fin is not None and fin.status == 200, fin
    assert await server.acli_json("registrations") == []


async def test_options_answered(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port) as s:
        r = await s.options()
    assert r is not None and r.status == 200
    assert "INVITE" in (r.get("Allow") or "")
    if shutil.which("sipsak"):
        p = await asyncio.to_thread(
            subprocess.run, ["sipsak", "-s", f"sip:ping@{server.domain}"],
            capture_output=True, text=True, timeout=10)
        assert p.returncode == 0, p.stdout + p.stderr


async def test_invite_without_credentials_is_challenged(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port) as s:
        inv = s.request("INVITE", f"sip:1002@{s.remote}", user="1001",
                        extra=["Content-Type: application/sdp"],
                        body=b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                             b"t=0 0\r\nm=audio 30000 RTP/AVP 0\r\n")
        await s.send(inv)
        # the challenge is the first answer: no 100 Trying before it (pyVoIP would take
        # a 100 for "proceeding" and never answer the challenge)
        r = await s.recv(3, skip_provisional=False)
        assert r is not None and r.status == 401, r
        assert (r.get("WWW-Authenticate") or "").startswith("Digest ")
        # a bogus Authorization is challenged again (bad nonce) or refused, never accepted
        bad = inv.replace(b"Content-Type:", b'Authorization: Digest username="1001", '
                          b'realm="ccswitch", nonce="xyz", uri="sip:1002@x", '
                          b'response="00000000000000000000000000000000"\r\nContent-Type:')
        r2 = await s.transact(bad.replace(b"CSeq: 1 INVITE", b"CSeq: 2 INVITE"))
        assert r2 is not None and r2.status in (401, 403), r2
    assert await server.acli_json("channels") == []
    assert server.cdrs() == []


async def test_rport_and_received_filled(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port) as s:
        r = await s.options()
        assert r is not None and r.status == 200
        via = r.get("Via") or ""
        assert f"rport={s.local_port}" in via, via
        assert "received=127.0.0.1" in via, via
        # the Via sent-by lies (a phone behind NAT): the response still comes back here
        req = s.request("OPTIONS", via_params=";rport").replace(
            f"SIP/2.0/UDP {s.local}".encode(), b"SIP/2.0/UDP 192.0.2.77:5999")
        r = await s.transact(req)
        assert r is not None and r.status == 200
        via = r.get("Via") or ""
        assert "received=127.0.0.1" in via and f"rport={s.local_port}" in via, via


async def test_ipv6_register_and_options(tmp_path: Path) -> None:
    with running_server(tmp_path / "srv", ipv6=True) as server:
        async with RawSip("::1", server.port) as s:
            r = await s.options()
            assert r is not None and r.status == 200
            assert "received=::1" in (r.get("Via") or "") or "received=[::1]" in (
                r.get("Via") or "")
            ch, fin = await s.register("1003", "secret1003")
            assert ch is not None and ch.status == 401
            assert fin is not None and fin.status == 200, fin
        async with RawSip("::1", server.port, "tcp") as t:
            r = await t.options()
            assert r is not None and r.status == 200
        regs = await server.acli_json("registrations")
        assert len(regs) == 1 and regs[0]["extension"] == "1003"
        assert "::1" in regs[0]["source"] and "::1" in regs[0]["contact"]


# ---------------------------------------------------------------- malformed input
def _broken_requests(s: RawSip) -> list[tuple[str, bytes, str]]:
    """(what, bytes, regex the 400 reason must match)."""
    ok = s.request("OPTIONS")
    no_callid = s.request("OPTIONS", omit=("Call-ID",))
    bad_cseq = ok.replace(b"CSeq: 1 OPTIONS", b"CSeq: abc OPTIONS")
    cseq_mismatch = ok.replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE")
    long_cl = s.request("OPTIONS", content_length=500, body=b"short")
    no_via = s.request("OPTIONS", omit=("Via",))
    return [
        ("missing Call-ID", no_callid, r"(?i)call-id"),
        ("bad CSeq", bad_cseq, r"(?i)cseq"),
        ("CSeq method mismatch", cseq_mismatch, r"(?i)cseq|method"),
        ("Content-Length larger than the body", long_cl, r"(?i)content-length|body"),
        ("missing Via", no_via, r"(?i)via"),
    ]


JUNK = [
    b"\x00\x01\x02\x03" * 50,
    bytes(range(256)) * 4,
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"INVITE\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",  # a response to nothing
    b"\r\n\r\n\r\n\r\n",
]


async def _assert_serving(host: str, port: int) -> None:
    async with RawSip(host, port) as s:
        r = await s.options()
        assert r is not None and r.status == 200, "server stopped answering"


async def test_malformed_udp_gets_400_with_reason(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port) as s:
        for what, data, pattern in _broken_requests(s):
            await s.send(data)
            r = await s.recv(2)
            if what == "missing Via":
                # no Via: no way to route a response over UDP; silence is correct too
                assert r is None or (r.status == 400 and re.search(pattern, r.reason)), r
                continue
            assert r is not None, f"{what}: no response"
            assert r.status == 400 and re.search(pattern, r.reason), (what, r.status, r.reason)
        for junk in JUNK:
            await s.send(junk)
        assert await s.recv(1.0) is None, "junk must not be answered"
        # a 60 kB header (near the UDP maximum): answered at once, normally or with a
        # 400 naming the size, and it must not stall the server
        await s.send(s.request("OPTIONS", extra=["X-Huge: " + "a" * 60000]))
        r = await s.recv(2)
        assert r is not None and (r.status == 200 or (
            r.status in (400, 513) and re.search(r"(?i)large|long|size", r.reason))), r
    await _assert_serving("127.0.0.1", server.port)
    assert "Traceback" not in server.log(200000)


async def test_malformed_tcp_gets_400_and_server_survives(server: CcswitchServer) -> None:
    async with RawSip("127.0.0.1", server.port, "tcp") as s:
        for what, data, pattern in _broken_requests(s):
            if what == "Content-Length larger than the body":
                continue  # on a stream that is just an incomplete message
            await s.send(data)
            r = await s.recv(2)
            assert r is not None, f"{what}: no response over TCP"
            assert r.status == 400 and re.search(pattern, r.reason), (what, r.status, r.reason)
        r = await s.options()
        assert r is not None and r.status == 200
    # headers beyond any sane size on a stream: refused (400/513 or the connection closed)
    async with RawSip("127.0.0.1", server.port, "tcp") as s:
        await s.send(s.request("OPTIONS", extra=["X-Huge: " + "a" * 100000]))
        r = await s.recv(2)
        assert r is None or r.status in (400, 513), r
    # junk on a stream: the server may close the connection, but must keep serving others
    async with RawSip("127.0.0.1", server.port, "tcp") as s:
        for junk in JUNK:
            try:
                await s.send(junk)
            except OSError:
                break
        await asyncio.sleep(0.3)
    async with RawSip("127.0.0.1", server.port, "tcp") as s:
        r = await s.options()
        assert r is not None and r.status == 200
    await _assert_serving("127.0.0.1", server.port)
    assert "Traceback" not in server.log(200000)


async def test_torture_then_real_call_works(server: CcswitchServer, tmp_path: Path) -> None:
    """After a burst of broken input on UDP and TCP, two real phones still call."""
    from tests.e2e.test_core_calls import phone

    for transport in ("udp", "tcp"):
        async with RawSip("127.0.0.1", server.port, transport) as s:
            for _, data, _ in _broken_requests(s):
                await s.send(data)
            for junk in JUNK:
                try:
                    await s.send(junk)
                except OSError:
                    break  # the server closed the TCP connection: fine
    async with phone(server, tmp_path, "1001") as a, \
            phone(server, tmp_path, "1002", answermode="auto") as b:
        assert await a.register() and await b.register()
        await a.call("1002", timeout=10)
        await b.wait_established(5)
        await a.hangup()
        await b.wait_closed(5)
