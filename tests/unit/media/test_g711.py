from __future__ import annotations

import numpy as np
import pytest

from ccswitch.media import g711, tones

ALL = bytes(range(256))


def test_constants() -> None:
    assert (g711.PCMU, g711.PCMA) == (0, 8)
    assert g711.CODEC_NAMES == {0: "PCMU", 8: "PCMA"}


@pytest.mark.parametrize("pt", [g711.PCMU, g711.PCMA])
def test_decode_is_pcm16_and_encode_inverts_it(pt: int) -> None:
    pcm = g711.decode(pt, ALL)
    assert len(pcm) == 512
    back = g711.encode(pt, pcm)
    if pt == g711.PCMU:
        # 0x7F and 0xFF are both zero in mu-law: zero encodes as 0xFF.
        assert back == ALL.replace(b"\x7f", b"\xff")
    else:
        assert back == ALL


def test_known_values() -> None:
    s = np.frombuffer(g711.decode(g711.PCMU, b"\x00\x80\xff"), "<i2").tolist()
    assert s == [-32124, 32124, 0]
    s = np.frombuffer(g711.decode(g711.PCMA, b"\xd5\x55\x2a\xaa"), "<i2").tolist()
    assert s == [8, -8, -32256, 32256]


@pytest.mark.parametrize("pt", [g711.PCMU, g711.PCMA])
def test_tone_survives_round_trip(pt: int) -> None:
    pcm = tones.sine(1000, 200, dbfs=-10.0)
    out = g711.decode(pt, g711.encode(pt, pcm))
    assert abs(tones.tone_level(out, 1000) - -10.0) < 0.1
    x = np.frombuffer(pcm, "<i2").astype(float)
    err = x - np.frombuffer(out, "<i2")
    snr = 10 * np.log10(np.mean(x * x) / np.mean(err * err))
    assert snr > 33  # G.711 is ~38 dB at this level


def test_transcode_matches_decode_then_encode() -> None:
    for a, b in [(g711.PCMU, g711.PCMA), (g711.PCMA, g711.PCMU)]:
        assert g711.transcode(ALL, a, b) == g711.encode(b, g711.decode(a, ALL))
    assert g711.transcode(ALL, g711.PCMU, g711.PCMU) is ALL


def test_silence_payload() -> None:
    assert g711.silence_payload(g711.PCMU) == b"\xff" * 160
    assert g711.silence_payload(g711.PCMA, 80) == b"\xd5" * 80
    for pt in (g711.PCMU, g711.PCMA):
        pcm = g711.decode(pt, g711.silence_payload(pt))
        assert np.abs(np.frombuffer(pcm, "<i2")).max() <= 8


def test_unknown_payload_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="18"):
        g711.decode(18, b"\x00")
    with pytest.raises(ValueError):
        g711.encode(9, b"\x00\x00")
    with pytest.raises(ValueError):
        g711.transcode(b"\x00", 0, 18)
    with pytest.raises(ValueError):
        g711.transcode(b"\x00", 3, 3)
    with pytest.raises(ValueError):
        g711.silence_payload(101)
