"""Fast checks of the peer helpers' pure parts (no sockets, no processes)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tests.peers import audio, netutil, pcap, rawsip, sipp_gen
from tests.peers.sipp import SCENARIO_DIR, _pct

SIPP_PCAPS = Path("/usr/share/sip-tester")


def test_dominant_freq_and_tone_present() -> None:
    x = audio.tone(1100, 1.0) + 0.01 * np.random.default_rng(1).standard_normal(8000)
    assert abs(audio.dominant_freq(x, 8000) - 1100) < 2
    assert audio.tone_present(x, 8000, 1100)
    assert not audio.tone_present(x, 8000, 700)
    assert audio.dominant_freq(np.zeros(8000), 8000) == 0.0
    mix = audio.tone(700, 1.0) + audio.tone(1100, 1.0)
    assert 0.4 < audio.tone_ratio(mix, 8000, 700) < 0.6


def test_rms_dbfs_of_full_scale_sine() -> None:
    t = np.arange(8000) / 8000
    assert audio.rms_dbfs(np.sin(2 * np.pi * 1000 * t)) == pytest.approx(-3.01, abs=0.05)
    assert audio.rms_dbfs(np.zeros(10)) == -200.0


def test_segments_find_two_tones(tmp_path: Path) -> None:
    silence = np.zeros(4000)
    x = np.concatenate([silence, audio.tone(700, 0.5), silence, audio.tone(1300, 0.3)])
    segs = audio.segments(x, 8000)
    assert [round(s.freq, -1) for s in segs] == [700, 1300]
    assert segs[0].start == pytest.approx(0.5, abs=0.03)
    assert segs[1].duration == pytest.approx(0.3, abs=0.05)


def test_detect_dtmf_generated_wav(tmp_path: Path) -> None:
    p = audio.write_dtmf_wav(tmp_path / "d.wav", "159#0*D", on=0.07, off=0.05)
    rate, x = audio.load_mono(p)
    assert audio.detect_dtmf(x, rate) == "159#0*D"
    # a repeated digit needs a gap; noise alone and a single tone are not digits
    assert audio.detect_dtmf(audio.tone(770, 1.0), 8000) == ""
    assert audio.detect_dtmf(0.3 * np.random.default_rng(2).standard_normal(8000), 8000) == ""
    # too short (< 2 blocks of 25.6 ms) is rejected
    short = audio.write_dtmf_wav(tmp_path / "s.wav", "5", on=0.03)
    assert audio.detect_dtmf(audio.load_mono(short)[1], 8000) == ""


def test_load_wav_still_being_written(tmp_path: Path) -> None:
    """sndfile fills in the RIFF sizes only on close: data size 0 must read to EOF."""
    p = audio.write_tone_wav(tmp_path / "t.wav", 500, 0.5)
    raw = bytearray(p.read_bytes())
    raw[4:8] = struct.pack("<I", 0)
    raw[40:44] = struct.pack("<I", 0)
    q = tmp_path / "open.wav"
    q.write_bytes(bytes(raw))
    rate, x = audio.load_wav(q)
    assert rate == 8000 and x.shape == (1, 4000)


def test_load_wav_ulaw_via_sox(tmp_path: Path) -> None:
    src = audio.write_tone_wav(tmp_path / "t.wav", 600, 0.5)
    import subprocess

    ul = tmp_path / "u.wav"
    subprocess.run(["sox", str(src), "-e", "u-law", str(ul)], check=True)
    rate, x = audio.load_mono(ul)
    assert rate == 8000 and abs(audio.dominant_freq(x, rate) - 600) < 2


def test_u8_roundtrip() -> None:
    x = audio.tone(440, 0.1)
    y = audio.u8_to_float(audio.float_to_u8(x))
    assert np.max(np.abs(x - y)) < 0.01


@pytest.mark.skipif(not SIPP_PCAPS.is_dir(), reason="sip-tester pcaps not installed")
def test_pcap_reader_on_sipp_pcaps() -> None:
    cap = pcap.analyse(SIPP_PCAPS / "dtmf_2833_1.pcap", ports=(), event_pts=(101,))
    assert [s.digits for s in cap.streams if s.digits] == ["1"]
    ev = next(s for s in cap.streams if s.digits).events[0]
    assert ev.end and ev.duration > 0
    g = pcap.analyse(SIPP_PCAPS / "g711a.pcap")
    s = max(g.streams, key=lambda s: s.packets)
    assert set(s.pts) == {8}
    a = s.audio()
    # g711a.pcap uses 30 ms packets (240 bytes): ~7 s of audio
    assert len(a) == sum(len(p[4]) for p in s.payloads) == 240 * s.packets
    assert audio.rms_dbfs(a) > -40


def test_g711_tables_known_values() -> None:
    # mu-law 0xFF and A-law 0xD5 are the zero codes; 0x80 / 0xAA are the largest positive
    assert pcap.decode_g711(b"\xff", "ulaw")[0] == 0.0
    assert pcap.decode_g711(b"\x80", "ulaw")[0] == pytest.approx(32124 / 32768)
    assert abs(pcap.decode_g711(b"\xd5", "alaw")[0]) < 0.001
    assert pcap.decode_g711(b"\xaa", "alaw")[0] == pytest.approx(32256 / 32768)


def test_loopback_guard() -> None:
    for ok in ("127.0.0.1", "127.5.6.7:5060", "[::1]:5060", "localhost"):
        assert netutil.assert_loopback(ok) == ok
    for bad in ("10.0.0.1", "192.0.2.2:5060", "example.com"):
        with pytest.raises(netutil.NonLoopbackError):
            netutil.assert_loopback(bad)
    assert netutil.uri_host("sip:100@127.0.0.1:5060;transport=tcp") == "127.0.0.1"


def test_rtp_ranges_do_not_overlap() -> None:
    a = netutil.free_rtp_range(40)
    b = netutil.free_rtp_range(40)
    assert 30000 <= a[0] < a[1] <= 31999 and a[0] % 2 == 0
    assert a[1] < b[0] or b[1] < a[0]


def test_percentile_nearest_rank() -> None:
    v = [float(i) for i in range(1, 101)]
    assert (_pct(v, 50), _pct(v, 95), _pct(v, 99)) == (50.0, 95.0, 99.0)


def test_committed_uac_scenarios_match_generator() -> None:
    for name, gen in sipp_gen.ALL.items():
        assert (SCENARIO_DIR / name).read_text() == gen(), f"regenerate {name} (gen_uac.py all)"
    with pytest.raises(ValueError):
        sipp_gen.dtmf_pcap("12A")


def test_rawsip_messages() -> None:
    req = rawsip.build_request("OPTIONS", "sip:a@127.0.0.1:5060", local_port=4000)
    assert req.startswith(b"OPTIONS sip:a@127.0.0.1:5060 SIP/2.0\r\n") and req.endswith(b"\r\n\r\n")
    assert b"Call-ID" not in rawsip.malformed("no_call_id", "127.0.0.1", 5060)
    for case in rawsip.MALFORMED_CASES:
        assert rawsip.malformed(case, "127.0.0.1", 5060)
    r = rawsip.parse_response(b"SIP/2.0 400 Bad Request\r\nv: SIP/2.0/UDP x\r\ni: abc\r\n\r\n")
    assert r.status == 400 and r.header("Call-ID") == "abc" and r.header("via")
