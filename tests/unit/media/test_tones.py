from __future__ import annotations

import numpy as np
import pytest

from ccswitch.media import tones


def test_sine() -> None:
    pcm = tones.sine(1000, 100, dbfs=-10.0)
    assert len(pcm) == 1600
    x = np.frombuffer(pcm, "<i2")
    assert abs(x.max() - 32767 * 10 ** (-0.5)) < 2
    assert abs(tones.tone_level(pcm, 1000) - -10.0) < 0.01
    assert abs(tones.level_dbfs(pcm) - -10.0) < 0.01
    assert abs(tones.dominant_frequency(pcm) - 1000) < 1
    assert len(tones.sine(440, 20, rate=16000)) == 640


def test_dual_each_component_at_the_level() -> None:
    pcm = tones.dual(440, 480, 1000, dbfs=-13.0)
    assert abs(tones.tone_level(pcm, 440) - -13.0) < 0.01
    assert abs(tones.tone_level(pcm, 480) - -13.0) < 0.01
    assert tones.tone_level(pcm, 1000) < -60


def test_full_scale_does_not_wrap() -> None:
    x = np.frombuffer(tones.dual(700, 1200, 100, dbfs=0.0), "<i2")
    assert x.max() == 32767 and x.min() == -32768  # clipped, not wrapped


def test_silence() -> None:
    assert tones.silence(20) == bytes(320)
    assert tones.silence(0) == b""
    assert tones.level_dbfs(tones.silence(10)) < -150
    with pytest.raises(ValueError):
        tones.silence(-1)


def test_ringback_cadence() -> None:
    pcm = tones.cadence(2000, 4000, 6000, 440, 480)
    assert len(pcm) == 2 * 48000
    on, off = pcm[: 2 * 16000], pcm[2 * 16000 :]
    assert abs(tones.tone_level(on, 440) - -10.0) < 0.01
    assert off == bytes(len(off))


def test_busy_cadence_repeats_and_is_cut_at_total() -> None:
    pcm = tones.cadence(500, 500, 2250, 480, 620)
    assert len(pcm) == 2 * 18000
    for k in range(3):
        seg_on = pcm[2 * 8000 * k : 2 * (8000 * k + 4000)]
        seg_off = pcm[2 * (8000 * k + 4000) : 2 * 8000 * (k + 1)]
        assert tones.tone_level(seg_on, 620) > -11 and seg_off == bytes(len(seg_off))
    assert tones.tone_level(pcm[2 * 16000 :], 480) > -11  # the last 250 ms: tone


def test_single_frequency_cadence() -> None:
    pcm = tones.cadence(100, 100, 400, 1000)
    assert abs(tones.tone_level(pcm[:1600], 1000) - -10.0) < 0.05
    with pytest.raises(ValueError):
        tones.cadence(0, 0, 100, 400)


def test_meters_on_empty_input() -> None:
    assert tones.tone_level(b"", 1000) == -200.0
    assert tones.level_dbfs(b"") == -200.0
    assert tones.dominant_frequency(b"") == 0.0
