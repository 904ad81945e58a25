"""SIP trunks end to end (issue 6), with SIPp playing the provider.

- registration: a SIPp registrar challenges ccswitch's REGISTER, grants a 4 s binding
  and expects the refresh; a wrong password ends "failed" with the provider's answer as
  last error; `ccswitch trunks` shows both; a call to our registered Contact user is
  recognised as the provider's (no challenge) and reaches its DID's flow;
- outbound: a baresip extension dials 9 + 10 digits; the SIPp provider challenges the
  INVITE (digest checked with verifyauth), sees +1 and 10 digits, the extension's caller
  ID in From and P-Asserted-Identity, sends 183 early media then 200 and echoes RTP: the
  phone hears its own tone through the trunk; an extension outside the route's list is
  refused;
- failover: a provider that never answers (progress timeout), then one answering 503,
  then one that takes the call; a 486 is relayed without trying the next trunk;
- inbound: a SIPp provider (recognised by source address and port) calls DIDs that
  reach a flow (its tone checked on the wire) and a baresip extension (tones both ways);
  an unknown DID gets 404; unknown sources are challenged, wrong credentials get 403 and
  nothing reaches the provider: no open relay;
- origination: `ccswitch originate` rings an extension then dials out and bridges (the
  phone hears the far end), and calls a number into a flow (tone checked on the wire);
  bad requests exit with their codes.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.server import CcswitchServer
from tests.peers import audio, netutil
from tests.peers.baresip import Baresip
from tests.peers.pcap import Capture, analyse
from tests.peers.sipp import SippProcess, run_sipp, scenario_path, start_sipp

pytestmark = pytest.mark.timeout(90)

TRUNK_USER = "trunkuser"  # the SIPp provider accepts password "secret<user>"
TRUNK_PASS = "secrettrunkuser"
A_TONE = 700.0
B_TONE = 1100.0
FLOW_TONE = 1500.0

NATIONAL = {"name": "national", "patterns": ["_9NXXNXXXXXX"], "strip": 1, "prepend": "+1",
            "trunks": ["prov"]}


def trunk(port: int, **kw: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"host": "127.0.0.1", "port": port, "username": TRUNK_USER,
                         "password": TRUNK_PASS}
    t.update(kw)
    return t


def tone_flow(workdir: Path) -> None:
    """flows/tone.yaml: answer, play a 2 s 1500 Hz prompt, hang up."""
    (workdir / "prompts").mkdir(parents=True, exist_ok=True)
    (workdir / "flows").mkdir(parents=True, exist_ok=True)
    audio.write_tone_wav(workdir / "prompts" / "tone1500.wav", FLOW_TONE, 2.0)
    (workdir / "flows" / "tone.yaml").write_text(
        "flow: tone\nstart: answer\nnodes:\n"
        "  answer: {type: answer, next: tone}\n"
        "  tone: {type: play, prompt: tone1500, barge_in: false, next: bye}\n"
        "  bye: {type: hangup}\n")


def server_with(tmp_path: Path, config: dict[str, Any], flow: bool = False
                ) -> CcswitchServer:
    srv = CcswitchServer(tmp_path / "server", config)
    if flow:
        tone_flow(srv.dir)
    return srv


def phone(server: CcswitchServer, tmp_path: Path, ext: str, **kw: Any) -> Baresip:
    return Baresip(user=ext, password=f"secret{ext}", domain=server.domain, register=True,
                   tmp_dir=tmp_path, name=f"ua{ext}", **kw)


def hears(ua: Baresip, freq: float) -> bool:
    rx = ua.received_wav()
    if rx is None:
        return False
    rate, x = audio.load_mono(rx)
    return audio.tone_present(x, rate, freq)


def messages(res_dir: Path) -> str:
    return (res_dir / "messages.log").read_text(errors="replace")


def sip_requests(log: str, method: str) -> list[str]:
    """The text of each `method` request sipp received (from its -trace_msg log)."""
    out = []
    for block in re.split(r"\n-{20,}[^\n]*\n", log):
        text = block.strip()
        m = re.search(rf"^{method} sip:", text, re.M)
        if m and "message received" in text:
            out.append(text[m.start():])
    return out


def header(msg: str, name: str) -> str:
    m = re.search(rf"^{name}:\s*(.*)$", msg, re.M | re.I)
    return m.group(1).strip() if m else ""


async def trunks(server: CcswitchServer) -> dict[str, dict[str, Any]]:
    rows = await server.acli_json("trunks")
    return {r["name"]: r for r in rows}


async def finished_cdrs(server: CcswitchServer, n: int) -> list[dict[str, Any]]:
    def done() -> list[dict[str, Any]] | None:
        rows = [c for c in server.cdrs() if c["end"] is not None]
        return rows if len(rows) >= n else None

    rows: list[dict[str, Any]] = await server.wait_for(done, timeout=10)
    return rows


def extra(cdr: dict[str, Any]) -> dict[str, Any]:
    raw = cdr.get("extra")
    return json.loads(raw) if raw else {}


async def provider(scenario: str, port: int, tmp_path: Path, **kw: Any) -> SippProcess:
    kw.setdefault("timeout", 40)
    return await start_sipp(scenario, service=None, caller=None, local_port=port,
                            workdir=tmp_path, trace_msg=True, **kw)


def scenario_486(tmp_path: Path) -> Path:
    """uas_trunk_503.xml answering 486 Busy Here instead."""
    p = tmp_path / "uas_trunk_486.xml"
    p.write_text(scenario_path("uas_trunk_503.xml").read_text()
                 .replace("503 Service Unavailable", "486 Busy Here"))
    return p


EARLY_MEDIA = """
  <send>
    <![CDATA[

      SIP/2.0 183 Session Progress
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]Rej[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=provider 1 1 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a=sendrecv

    ]]>
  </send>
  <pause milliseconds="700" />
"""


def scenario_183_503(tmp_path: Path) -> Path:
    """uas_trunk_503.xml sending early media (183 + SDP) for 0.7 s before its 503."""
    p = tmp_path / "uas_trunk_183_503.xml"
    text = scenario_path("uas_trunk_503.xml").read_text()
    marker = "      SIP/2.0 503 Service Unavailable"
    head, tail = text.split(marker)
    head = head[:head.rindex("  <send>")]
    p.write_text(head + EARLY_MEDIA + "  <send>\n    <![CDATA[\n\n" + marker + tail)
    return p


def wire_tone(cap_path: Path, dst_port: int, freq: float) -> tuple[bool, list[float]]:
    """Did an RTP stream towards `dst_port` carry `freq`?  (present, dominant
    frequency of each stream, for the message)"""
    cap = analyse(cap_path)
    streams = [s.audio() for s in cap.streams if s.dst_port == dst_port and s.packets > 20]
    present = any(audio.tone_present(x, 8000, freq) for x in streams)
    return present, [round(audio.dominant_freq(x, 8000)) for x in streams]


# ---------------------------------------------------------------- registration
async def test_registration_refresh_wrong_password_and_inbound_by_contact(
        tmp_path: Path) -> None:
    good, bad = netutil.free_sip_port(), netutil.free_sip_port()
    cfg = {
        "trunks": {
            "prov": trunk(good, register=True, expires=3600),
            # behind NAT towards this provider: its public address in Via and Contact
            "wrong": trunk(bad, register=True, username="otheruser", password="not-it",
                           retry_min=1, retry_max=600, external_address="203.0.113.50"),
        },
        "dids": [{"number": "+15551230100", "flow": "tone"}],
    }
    reg_ok = await provider("uas_trunk_registrar.xml", good, tmp_path, keys={"expires": "4"})
    reg_bad = await provider("uas_trunk_registrar.xml", bad, tmp_path, keys={"expires": "4"})
    srv = server_with(tmp_path, cfg, flow=True)
    srv.start()
    try:
        async with reg_ok, reg_bad:
            t0 = time.monotonic()

            async def state(name: str, want: str) -> dict[str, Any]:
                async def get() -> dict[str, Any] | None:
                    row = (await trunks(srv))[name]
                    return row if row["state"] == want else None

                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    row = await get()
                    if row is not None:
                        return row
                    await asyncio.sleep(0.1)
                raise AssertionError(f"{name} never {want}: {await trunks(srv)}\n{srv.log()}")

            ok = await state("prov", "registered")
            failed = await state("wrong", "failed")
            assert failed["last_error"] == "403 Forbidden", failed
            assert failed["registration"]["next_attempt_in"] > 60  # no hammering
            # the binding was granted for 4 s: the refresh must come before it lapses
            res_ok = await reg_ok.wait(timeout=15)
            refreshed = time.monotonic() - t0
            assert res_ok.ok, res_ok.summary()
            ok = (await trunks(srv))["prov"]
            assert ok["state"] == "registered" and ok["last_error"] is None, ok
            assert ok["registration"]["expires_in"] > 3000, ok  # the refresh's grant
            res_bad = await reg_bad.wait(timeout=5)

            # the provider calls our registered Contact: recognised without a challenge
            contact = ok["registration"]["contact"]
            line = re.match(r"<sip:([^@]+)@", contact)
            assert line is not None and line.group(1).startswith(f"{TRUNK_USER}-"), contact
            res_in = await run_sipp("uac_trunk_did.xml", srv.domain, service=line.group(1),
                                    caller="+15559876543", keys={"did": "+15551230100"},
                                    timeout=15, workdir=tmp_path, trace_msg=True)
            assert res_in.ok, res_in.summary()
            # the table view
            table = srv.cli("trunks").stdout
            assert re.search(r"prov\s+register\s+registered", table), table
            assert "403 Forbidden" in table, table
    finally:
        srv.stop()
    assert refreshed < 10
    regs = sip_requests(messages(res_ok.workdir), "REGISTER")
    assert len(regs) >= 3, regs  # challenged, answered, refreshed
    first, answered, refresh = regs[:3]
    assert header(first, "Authorization") == ""
    for r in (answered, refresh):
        auth = header(r, "Authorization")
        assert f'username="{TRUNK_USER}"' in auth and 'realm="provider.example"' in auth, auth
    assert "nc=00000001" in header(answered, "Authorization")
    assert "nc=00000002" in header(refresh, "Authorization")  # the cached challenge
    assert header(first, "To") == f"<sip:{TRUNK_USER}@127.0.0.1:{good}>"
    assert header(refresh, "Call-ID") == header(first, "Call-ID")
    bad_regs = sip_requests(messages(res_bad.workdir), "REGISTER")
    assert 'username="otheruser"' in header(bad_regs[1], "Authorization")
    assert re.fullmatch(r"<sip:otheruser-[0-9a-f]{10}@203\.0\.113\.50:\d+>",
                        header(bad_regs[0], "Contact")), bad_regs[0]
    assert "SIP/2.0/UDP 203.0.113.50:" in header(bad_regs[0], "Via")
    assert "@127.0.0.1:" in header(first, "Contact")  # the other trunk: unchanged
    # the inbound call: answered by the flow, which hung up (BYE came from ccswitch)
    inmsgs = messages(res_in.workdir)
    assert "SIP/2.0 401" not in inmsgs and re.search(r"^BYE sip:", inmsgs, re.M)
    cdrs = [c for c in srv.cdrs() if c["callee"] == "+15551230100"]
    assert len(cdrs) == 1 and cdrs[0]["caller"] == "+15559876543", srv.cdrs()
    assert cdrs[0]["disposition"] == "ANSWERED"
    assert extra(cdrs[0])["trunk"] == "prov"


# ---------------------------------------------------------------- outbound
async def test_outbound_digits_caller_id_digest_early_media_and_tones(tmp_path: Path) -> None:
    port = netutil.free_sip_port()
    cfg = {
        "extensions": [
            {"number": "1001", "password": "secret1001", "name": "Alice",
             "caller_id": "+15551230001"},
            {"number": "1002", "password": "secret1002", "name": "Bob"},
            {"number": "1003", "password": "secret1003", "name": "Carol"},
        ],
        "trunks": {"prov": trunk(port, caller_id="+15551230000")},
        "outbound_routes": [dict(NATIONAL, extensions=["_100[12]"])],
    }
    prov = await provider("uas_trunk_provider.xml", port, tmp_path, rtp_echo=True)
    srv = server_with(tmp_path, cfg)
    srv.start()
    try:
        async with prov, phone(srv, tmp_path, "1001", source=audio.write_tone_wav(
                tmp_path / "a.wav", A_TONE, 30)) as a, phone(srv, tmp_path, "1003") as c:
            assert await a.register() and await c.register()
            await a.dial("95552345678")
            await a.wait_event("CALL_PROGRESS", 5)  # the provider's 183 reached the phone
            await a.wait_established(8)
            busy = await trunks(srv)
            assert busy["prov"]["active_calls"] == 1, busy
            await asyncio.sleep(2.5)
            await a.hangup()
            await a.wait_closed(5)
            res = await prov.wait(timeout=10)
            # an extension not allowed on the route: refused, nothing sent to the provider
            await c.dial("95552345678")
            closed = await c.wait_closed(5)
            assert closed.param.startswith("403"), closed.param
            rx_ok = hears(a, A_TONE)  # its own tone, echoed by the provider
            after = (await trunks(srv))["prov"]
    finally:
        srv.stop()
    assert res.ok, res.summary()
    assert rx_ok, "the phone did not hear the far end through the trunk"
    assert after["active_calls"] == 0 and after["calls_out"] == 1, after
    invites = sip_requests(messages(res.workdir), "INVITE")
    assert len(invites) == 2, invites  # challenged once, then with credentials
    first, second = invites
    for inv in invites:  # 9 stripped, +1 prepended
        assert inv.startswith(f"INVITE sip:+15552345678@127.0.0.1:{port} SIP/2.0"), inv[:80]
        assert header(inv, "To") == f"<sip:+15552345678@127.0.0.1:{port}>"
        # the extension's own number, not the trunk's default; name from the extension
        assert header(inv, "From").startswith('"Alice" <sip:+15551230001@127.0.0.1>'), inv
        assert header(inv, "P-Asserted-Identity") == \
            '"Alice" <sip:+15551230001@127.0.0.1>', inv
    assert header(first, "Authorization") == ""
    auth = header(second, "Authorization")
    assert f'username="{TRUNK_USER}"' in auth and 'realm="provider.example"' in auth, auth
    assert f'uri="sip:+15552345678@127.0.0.1:{port}"' in auth, auth
    # RFC 3261 22.2: same Call-ID and From tag, CSeq + 1
    assert header(first, "Call-ID") == header(second, "Call-ID")
    assert header(first, "From") == header(second, "From")
    assert (header(first, "CSeq"), header(second, "CSeq")) == ("1 INVITE", "2 INVITE")
    cdrs = await finished_cdrs(srv, 2)
    out = next(c for c in cdrs if c["caller"] == "1001")
    assert (out["callee"], out["disposition"]) == ("95552345678", "ANSWERED"), out
    assert extra(out)["trunk"] == "prov" and extra(out)["dialled"] == "+15552345678", out
    denied = next(c for c in cdrs if c["caller"] == "1003")
    assert denied["disposition"] != "ANSWERED"


# ---------------------------------------------------------------- failover
async def test_failover_on_timeout_and_503_not_on_486(tmp_path: Path) -> None:
    dead, p503, good = (netutil.free_sip_port() for _ in range(3))
    cfg = {
        "trunks": {
            # nothing listens there: no progress within 1 s -> next trunk
            "dead": {"host": "127.0.0.1", "port": dead, "progress_timeout": 1},
            "busy": {"host": "127.0.0.1", "port": p503},
            "good": {"host": "127.0.0.1", "port": good, "caller_id": "+15551230000"},
        },
        "outbound_routes": [dict(NATIONAL, trunks=["dead", "busy", "good"])],
    }
    srv = server_with(tmp_path, cfg)
    srv.start()
    try:
        a_ctx = phone(srv, tmp_path, "1001", source=audio.write_tone_wav(
            tmp_path / "a.wav", A_TONE, 30))
        async with a_ctx as a:
            assert await a.register()
            # 183 with early media, then 503: the caller must survive the failed provider
            rej = await provider(scenario_183_503(tmp_path), p503, tmp_path)
            ok = await provider("uas_echo.xml", good, tmp_path, rtp_echo=True)
            async with rej, ok:
                t0 = time.monotonic()
                await a.dial("95552345678")
                await a.wait_event("CALL_PROGRESS", 5)  # the failing provider's 183
                await a.wait_established(10)
                setup = time.monotonic() - t0
                await asyncio.sleep(2.0)
                heard = hears(a, A_TONE)
                await a.hangup()
                await a.wait_closed(5)
                res_rej = await rej.wait(timeout=5)
                res_ok = await ok.wait(timeout=10)
            state = await trunks(srv)
            # 486 from the first provider that answers: relayed, the next one not tried
            busy = await provider(scenario_486(tmp_path), p503, tmp_path)
            spare = await provider("uas_echo.xml", good, tmp_path, rtp_echo=True)
            async with busy, spare:
                await a.dial("95552345678")
                closed = await a.wait_closed(8)
                res_busy = await busy.wait(timeout=5)
                res_spare = await spare.stop()
    finally:
        srv.stop()
    assert res_rej.ok, res_rej.summary()  # it got the INVITE and answered 503
    assert res_ok.ok, res_ok.summary()
    assert heard, "no audio through the trunk that answered"
    assert 1.7 <= setup < 8.0, setup  # the progress timeout, 0.7 s of 183, an answer
    assert state["dead"]["calls_failed"] == 1 and state["busy"]["calls_failed"] == 1, state
    assert "(no progress)" in state["dead"]["last_call_error"], state["dead"]
    assert state["busy"]["last_call_error"].endswith(": 503"), state["busy"]
    assert state["good"]["calls_out"] == 1 and state["good"]["calls_failed"] == 0, state
    assert closed.param.startswith("486"), closed.param
    assert res_busy.ok, res_busy.summary()
    assert res_spare.attempted == 0, res_spare.summary()  # 4xx: no failover
    invites = sip_requests(messages(res_ok.workdir), "INVITE")
    assert invites and invites[0].startswith("INVITE sip:+15552345678@"), invites
    cdrs = await finished_cdrs(srv, 2)
    assert [c["disposition"] for c in cdrs] == ["ANSWERED", "BUSY"], cdrs


# ---------------------------------------------------------------- inbound
async def test_inbound_dids_to_flow_and_extension_and_no_open_relay(tmp_path: Path) -> None:
    uac, other, out = (netutil.free_sip_port() for _ in range(3))
    cfg = {
        "trunks": {
            # IP peering: the provider is recognised by its source address and port
            "peer": {"host": "127.0.0.1", "port": uac, "allowed_addresses": [f"127.0.0.1:{uac}"]},
            "prov": {"host": "127.0.0.1", "port": out},
        },
        "outbound_routes": [NATIONAL],
        "dids": [{"number": "+15551230100", "flow": "tone"},
                 {"number": "+15551230101", "extension": "1002"}],
    }
    srv = server_with(tmp_path, cfg, flow=True)
    srv.start()
    lo, hi = srv.config["rtp"]["port_min"], srv.config["rtp"]["port_max"]
    cap_path = tmp_path / "in.pcap"

    async def did_call(ruri: str, port: int = uac, did: str | None = None) -> SippProcess:
        return await start_sipp("uac_trunk_did.xml", srv.domain, service=ruri,
                                caller="+15559876543", keys={"did": did or ruri},
                                local_port=port, timeout=15, workdir=tmp_path,
                                trace_msg=True)

    try:
        outside = await provider("uas_echo.xml", out, tmp_path, rtp_echo=True)
        b_ctx = phone(srv, tmp_path, "1002", answermode="auto",
                      source=audio.write_tone_wav(tmp_path / "b.wav", B_TONE, 30))
        async with outside, b_ctx as b, Capture(cap_path, ports=[srv.port],
                                                 port_ranges=[(lo, hi)], max_seconds=60):
            assert await b.register()
            # DID -> flow: the caller hears the flow's prompt, then the flow hangs up
            to_flow = await did_call("+15551230100")
            res_flow = await to_flow.wait(timeout=20)
            # DID -> extension (the provider drops the +: DIDs match in either form)
            to_ext = await did_call("15551230101", did="+15551230101")
            await b.wait_established(8)
            await asyncio.sleep(3.0)
            await b.hangup()
            res_ext = await to_ext.wait(timeout=10)
            b_heard = b.received_wav()
            # unknown DID: 404; a provider's call to an outside number: 404, never relayed
            res_unknown = await (await did_call("+15551239999")).wait(timeout=10)
            res_relay = await (await did_call("95552345678")).wait(timeout=10)
            # an unknown source: challenged; wrong credentials: 403; nothing goes out
            res_stranger = await (await did_call("95552345678", port=other)).wait(timeout=10)
            res_badauth = await run_sipp("uac_load.xml", srv.domain, service="95552345678",
                                         caller="1001", auth_user="1001",
                                         auth_pass="wrong-password", timeout=10,
                                         workdir=tmp_path, trace_msg=True)
            res_out = await outside.stop()
    finally:
        srv.stop()
    assert res_flow.ok, res_flow.summary()
    assert re.search(r"^BYE sip:", messages(res_flow.workdir), re.M)  # the flow hung up
    present, freq = wire_tone(cap_path, to_flow.media_port, FLOW_TONE)
    assert present, f"flow prompt not heard by the provider's caller (dominant {freq} Hz)"
    assert res_ext.ok, res_ext.summary()
    # both ways: the provider's pcap reached the phone, the phone's tone reached the provider
    assert b_heard is not None
    rate, x = audio.load_mono(b_heard)
    assert len(x) / rate > 2.0 and audio.rms_dbfs(x) > -40.0, audio.rms_dbfs(x)
    present, freq = wire_tone(cap_path, to_ext.media_port, B_TONE)
    assert present, f"the phone's tone did not reach the provider (dominant {freq} Hz)"
    for res, code in ((res_unknown, "404"), (res_relay, "404"), (res_stranger, "401")):
        assert not res.ok
        assert re.search(rf"^SIP/2.0 {code} ", messages(res.workdir), re.M), res.summary()
    assert not res_badauth.ok
    assert re.search(r"^SIP/2.0 403 ", messages(res_badauth.workdir), re.M)
    assert res_out.attempted == 0, res_out.summary()  # no call reached the outside
    cdrs = await finished_cdrs(srv, 4)
    by_callee = {c["callee"]: c for c in cdrs}
    assert by_callee["+15551230100"]["disposition"] == "ANSWERED"
    assert by_callee["15551230101"]["caller"] == "+15559876543"
    assert by_callee["15551230101"]["disposition"] == "ANSWERED"
    assert extra(by_callee["15551230101"])["trunk"] == "peer"
    assert by_callee["+15551239999"]["hangup_cause"] == "UNALLOCATED_NUMBER"
    assert "95552345678" not in {c["callee"] for c in cdrs if c["disposition"] == "ANSWERED"}


# ---------------------------------------------------------------- origination
async def test_originate_extension_to_number_and_number_into_flow(tmp_path: Path) -> None:
    port = netutil.free_sip_port()
    cfg = {
        "trunks": {"prov": trunk(port, caller_id="+15551230000")},
        "outbound_routes": [NATIONAL],
    }
    srv = server_with(tmp_path, cfg, flow=True)
    srv.start()
    lo, hi = srv.config["rtp"]["port_min"], srv.config["rtp"]["port_max"]
    cap_path = tmp_path / "orig.pcap"

    def originate(*args: str) -> tuple[int, str]:
        r = srv.cli("originate", *args, check=False, timeout=60)
        return r.returncode, r.stdout + r.stderr

    try:
        prov = await provider("uas_trunk_provider.xml", port, tmp_path, rtp_echo=True, calls=2)
        a_ctx = phone(srv, tmp_path, "1001", answermode="auto",
                      source=audio.write_tone_wav(tmp_path / "a.wav", A_TONE, 30))
        async with prov, a_ctx as a, Capture(cap_path, ports=[srv.port],
                                             port_ranges=[(lo, hi)], max_seconds=60):
            assert await a.register()
            # ring 1001 (auto-answers), then dial out through the trunk and bridge
            t0 = time.monotonic()
            rc1, out1 = await asyncio.to_thread(
                originate, "1001", "95552345678", "--caller-id", "+15551230099",
                "--timeout", "10")
            took = time.monotonic() - t0
            await a.wait_established(1)
            await asyncio.sleep(2.5)
            heard = hears(a, A_TONE)  # the far end (echo) through the bridge
            chans = await srv.acli_json("channels")
            await a.hangup()
            await a.wait_closed(5)
            # an internal destination goes through the dialplan: 1003 has no phone
            rc_local, out_local = await asyncio.to_thread(
                originate, "1001", "1003", "--timeout", "5")
            await a.wait_closed(5)  # the source leg is released
            # call a number through the trunk and run a flow when it answers
            rc2, out2 = await asyncio.to_thread(
                originate, "95552345679", "--flow", "tone", "--timeout", "10", "--json")
            res = await prov.wait(timeout=15)
            # refused requests: exit codes
            rc_flow, out_flow = await asyncio.to_thread(originate, "1001", "--flow", "nosuch")
            rc_absent, out_absent = await asyncio.to_thread(
                originate, "1003", "95552345678", "--timeout", "2")
            rc_route, out_route = await asyncio.to_thread(originate, "1001", "12")
    finally:
        srv.stop()
    assert rc1 == 0, out1
    assert re.match(r"1001 -> 95552345678: answered, call [0-9a-f]{12}$", out1.strip()), out1
    assert took < 10, took  # reported once the far end answered, not when the call ends
    assert heard, "the originating phone did not hear the far end"
    assert len(chans) == 2 and all(c["state"] == "Up" for c in chans), chans
    assert rc2 == 0, out2
    r2 = json.loads(out2)
    assert (r2["result"], r2["stage"], r2["flow"]) == ("answered", "source", "tone"), r2
    assert res.ok, res.summary()
    invites = [m for m in sip_requests(messages(res.workdir), "INVITE")
               if "Authorization" in m]
    assert len(invites) == 2, invites
    assert invites[0].startswith("INVITE sip:+15552345678@")
    assert "<sip:+15551230099@" in header(invites[0], "From")  # --caller-id
    assert invites[1].startswith("INVITE sip:+15552345679@")
    assert "<sip:+15551230000@" in header(invites[1], "From")  # the trunk's default
    present, freqs = wire_tone(cap_path, prov.media_port, FLOW_TONE)
    assert present, f"the flow's prompt did not reach the called number ({freqs} Hz)"
    present, freqs = wire_tone(cap_path, prov.media_port, A_TONE)
    assert present, f"the phone's audio did not reach the called number ({freqs} Hz)"
    assert rc_local == 7 and "unavailable (destination, SIP 480)" in out_local, out_local
    assert rc_flow == 4 and "no flow named 'nosuch'" in out_flow, (rc_flow, out_flow)
    assert rc_absent == 7 and "unavailable" in out_absent, (rc_absent, out_absent)
    assert rc_route == 4 and "no outbound route" in out_route, (rc_route, out_route)
    cdrs = await finished_cdrs(srv, 3)
    orig = next(c for c in cdrs if c["callee"] == "1001")
    assert orig["disposition"] == "ANSWERED"
    assert extra(orig)["originate"] == {"source": "1001", "to": "95552345678"}
    assert extra(orig)["dialled"] == "+15552345678"
