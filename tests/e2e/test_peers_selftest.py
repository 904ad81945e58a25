"""Self-test of the peer helpers in tests/peers/, without ccswitch.

The real SIP peers are pointed at each other (baresip <-> baresip, sipp <-> sipp,
pyVoIP -> baresip, sipp -> baresip) so that a failing e2e test of the server can
be trusted to be about the server, not about the harness.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.peers import audio, rawsip, sipp_gen
from tests.peers.baresip import Baresip
from tests.peers.pcap import Capture, analyse
from tests.peers.sipp import USERS_CSV, run_sipp, start_sipp, write_dtmf_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("baresip", "sipp", "sox", "tcpdump")),
        reason="baresip, sipp, sox and tcpdump are needed (apt-get install baresip sip-tester "
               "sox tcpdump)",
    ),
]


def _in(port: int, rng: tuple[int, int]) -> bool:
    return rng[0] <= port <= rng[1]


@pytest.mark.timeout(40)
async def test_baresip_to_baresip_tones_and_dtmf(tmp_path: Path) -> None:
    t700 = audio.write_tone_wav(tmp_path / "700.wav", 700, 1.0)
    t1100 = audio.write_tone_wav(tmp_path / "1100.wav", 1100, 1.0)
    async with (
        Baresip(user="alice", source=t700, loop_source=True, tmp_dir=tmp_path) as alice,
        Baresip(user="bob", source=t1100, loop_source=True, answermode="auto",
                tmp_dir=tmp_path) as bob,
    ):
        async with Capture(tmp_path / "c.pcap", ports=[alice.sip_port, bob.sip_port],
                           port_ranges=[alice.rtp_range, bob.rtp_range], max_seconds=30):
            await alice.dial(bob.uri)  # direct, no registrar
            await alice.wait_established(5)
            await bob.wait_established(5)
            await alice.send_dtmf("159#", gap=0.3)
            await bob.wait_dtmf("159#", 5)
            await asyncio.sleep(0.5)  # a little audio after the last digit
            await alice.hangup()
            await bob.wait_closed(5)
            await alice.wait_closed(5)
        assert [e.param for e in bob.events_of("CALL_DTMF_START")] == list("159#")
        assert alice.dtmf_sent == "159#" and alice.dtmf_received == ""
        for ua, heard, not_heard in ((alice, 1100, 700), (bob, 700, 1100)):
            wav = ua.received_wav()
            assert wav is not None, f"{ua.name} recorded nothing"
            rate, x = audio.load_mono(wav)
            assert len(x) / rate > 1.0
            assert audio.tone_present(x, rate, heard), audio.segments(x, rate)
            assert not audio.tone_present(x, rate, not_heard, min_ratio=0.05)
            assert abs(audio.dominant_freq(x, rate) - heard) < 5
    cap = analyse(tmp_path / "c.pcap")
    # the same digits as RFC 4733 events on the wire, alice -> bob
    assert [s.digits for s in cap.streams if s.digits] == ["159#"]
    stream = next(s for s in cap.streams if s.digits)
    assert _in(stream.src_port, alice.rtp_range) and _in(stream.dst_port, bob.rtp_range)
    assert all(e.end and e.marker for e in stream.events)
    assert [m.first_line.split()[0] for m in cap.sip if not m.first_line.startswith("SIP")] == [
        "INVITE", "ACK", "BYE"]


@pytest.mark.timeout(40)
async def test_baresip_hold_resume_and_blind_transfer(tmp_path: Path) -> None:
    """Three phones at once: alice calls bob, holds/resumes, bob transfers alice to carol."""
    async with (
        Baresip(user="alice", tmp_dir=tmp_path) as alice,
        Baresip(user="bob", answermode="auto", tmp_dir=tmp_path) as bob,
        Baresip(user="carol", answermode="auto", tmp_dir=tmp_path) as carol,
        Capture(tmp_path / "c.pcap", ports=[alice.sip_port, bob.sip_port, carol.sip_port],
                max_seconds=30),
    ):
        await alice.call(bob.uri, timeout=5)
        await bob.wait_established(5)
        await alice.hold()
        await bob.wait_event("CALL_REMOTE_SDP", 5)  # the hold re-INVITE
        await alice.resume()
        await bob.wait_event("CALL_REMOTE_SDP", 5)
        await bob.transfer(carol.uri)  # REFER to alice; alice calls carol
        ev = await carol.wait_established(10)
        assert ev.peeruri.startswith("sip:alice@")
        await bob.wait_closed(10)
        await alice.wait_event("CALL_ESTABLISHED", 10)
        await alice.hangup()
        await carol.wait_closed(5)
    cap = analyse(tmp_path / "c.pcap")
    invites = [m for m in cap.sip if m.first_line.startswith("INVITE")]
    directions = [next((ln for ln in m.text.splitlines() if ln.startswith(
        ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"))), "") for m in invites]
    assert directions[:3] == ["a=sendrecv", "a=sendonly", "a=sendrecv"]
    refer = [m for m in cap.sip if m.first_line.startswith("REFER")]
    assert len(refer) == 1 and carol.uri in refer[0].text


@pytest.mark.timeout(30)
async def test_sipp_pcap_call_against_sipp_echo(tmp_path: Path) -> None:
    scen = tmp_path / "uac_call_pcap_short.xml"
    scen.write_text(sipp_gen.call_pcap(hold_ms=2500))  # pcap plays ~7 s; BYE after 2.5 s
    uas = await start_sipp("uas_echo.xml", rtp_echo=True, calls=1, timeout=20, service=None,
                           caller=None, workdir=tmp_path)
    async with uas, Capture(tmp_path / "c.pcap", ports=[uas.port],
                            port_ranges=[(uas.media_port, uas.media_port + 2)], max_seconds=20):
        res = await run_sipp(scen, uas.uri_host, service="200", caller="1001", timeout=15,
                             workdir=tmp_path)
        uas_res = await uas.wait(timeout=10)
    assert res.ok, res.summary()
    assert res.rtt["setup"].count == 1 and res.rtt["setup"].max < 1000
    assert uas_res.ok, uas_res.summary()
    cap = analyse(tmp_path / "c.pcap")
    to_echo = [s for s in cap.streams if s.dst_port == uas.media_port and s.pts.get(8)]
    from_echo = [s for s in cap.streams if s.src_port == uas.media_port and s.pts.get(8)]
    assert to_echo and from_echo, [(s.src, s.dst, s.pts) for s in cap.streams]
    # the echo sends back what it got: same number of packets (a few in flight at BYE)
    assert abs(to_echo[0].packets - from_echo[0].packets) <= 3 and to_echo[0].packets > 50


@pytest.mark.timeout(30)
async def test_sipp_register_auth_against_sipp_registrar(tmp_path: Path) -> None:
    async with await start_sipp("uas_registrar.xml", calls=3, timeout=15, service=None,
                                caller=None, workdir=tmp_path) as reg:
        res = await run_sipp("register_auth.xml", reg.uri_host, csv=USERS_CSV, calls=3, rate=20,
                             timeout=10, workdir=tmp_path)
        reg_res = await reg.wait(timeout=10)
    assert res.ok and res.successful == 3, res.summary()
    assert reg_res.ok and reg_res.successful == 3, reg_res.summary()


@pytest.mark.timeout(30)
async def test_baresip_register_digest_ok_and_wrong_password(tmp_path: Path) -> None:
    reg = await start_sipp("uas_registrar.xml", calls=10, timeout=15, service=None,
                           caller=None, workdir=tmp_path)
    async with (
        reg,
        Baresip(user="1002", password="secret1002", domain=reg.uri_host, register=True,
                tmp_dir=tmp_path) as good,
        Baresip(user="1003", password="wrong", domain=reg.uri_host, register=True,
                tmp_dir=tmp_path) as bad,
    ):
        assert await good.register(timeout=5) is True
        assert await bad.register(timeout=5) is False
        await asyncio.gather(good.stop(), bad.stop())  # quit waits for un-REGISTER


@pytest.mark.timeout(30)
async def test_sipp_dtmf_pcap_and_cancel_against_baresip(tmp_path: Path) -> None:
    async with Baresip(user="bob", answermode="auto", tmp_dir=tmp_path) as bob:
        scen = write_dtmf_scenario(tmp_path / "dtmf.xml", "12#", wait_ms=300, gap_ms=300,
                                   hold_ms=300)
        res = await run_sipp(scen, f"127.0.0.1:{bob.sip_port}", service="bob", timeout=15,
                             workdir=tmp_path)
        assert res.ok, res.summary()
        await bob.wait_dtmf("12#", 5)
    async with Baresip(user="carol", answermode="manual", tmp_dir=tmp_path) as carol:
        res = await run_sipp("uac_cancel.xml", f"127.0.0.1:{carol.sip_port}", service="carol",
                             timeout=15, workdir=tmp_path)
        assert res.ok, res.summary()
        assert "cancel" in res.rtt and "ring" in res.rtt
        await carol.wait_incoming(5)
        await carol.wait_closed(5)
        # raw probes: OPTIONS to a known user, then malformed input does not kill it
        r = await rawsip.options("127.0.0.1", carol.sip_port, user="carol")
        assert r is not None and r.status == 200
        for case in ("garbage", "no_call_id", "unknown_method"):
            await rawsip.send_malformed(case, "127.0.0.1", carol.sip_port, timeout=0.3)
        r = await rawsip.options("127.0.0.1", carol.sip_port, user="carol")
        assert r is not None and r.status == 200


@pytest.mark.timeout(40)
async def test_pyvoip_calls_baresip_directly(tmp_path: Path) -> None:
    from tests.peers.pyvoip_peer import PyVoipPeer

    t1100 = audio.write_tone_wav(tmp_path / "1100.wav", 1100, 1.0)
    async with Baresip(user="bob", source=t1100, loop_source=True, answermode="auto",
                       tmp_dir=tmp_path) as bob:
        # no registrar: pyVoIP's "server" is bob itself, REGISTER is skipped
        async with PyVoipPeer(server_port=bob.sip_port, user="py", register=False,
                              tone_hz=700) as phone:
            call = await phone.call("bob", timeout=5)
            # pyVoIP's ACK never matches (random To-tag): bob sees RTP, not CALL_ESTABLISHED
            await bob.wait_event("CALL_RTPESTAB", 5)
            await asyncio.sleep(1.5)
            await bob.send_dtmf("47", gap=0.3)
            await call.wait_dtmf("47", 5)
            await call.hangup()
            await bob.wait_closed(5)
        rx = call.received()
        assert audio.tone_present(rx, 8000, 1100), audio.segments(rx, 8000)
        wav = bob.received_wav()
        assert wav is not None
        rate, x = audio.load_mono(wav)
        assert audio.tone_present(x, rate, 700), audio.segments(x, rate)


@pytest.mark.timeout(30)
async def test_pyvoip_registers_with_digest(tmp_path: Path) -> None:
    from tests.peers.pyvoip_peer import PyVoipError, PyVoipPeer

    async with await start_sipp("uas_registrar.xml", calls=3, timeout=15, service=None,
                                caller=None, workdir=tmp_path) as reg:
        async with PyVoipPeer(server_port=reg.port, user="1001", password="secret1001") as ph:
            assert ph.registered
        with pytest.raises(PyVoipError):
            async with PyVoipPeer(server_port=reg.port, user="1002", password="nope",
                                  register_timeout=2):
                pass
