from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr

from ccswitch.media import tones
from ccswitch.media.resample import load_audio_8k, to_pcm8k


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def test_anti_aliasing_removes_a_6khz_tone() -> None:
    """audioop.ratecv would fold 6 kHz onto 2 kHz at full strength."""
    src = tones.sine(6000, 1000, rate=44100, dbfs=-6.0)
    out = to_pcm8k(src, 44100, 1)
    assert len(out) == 2 * 8000
    assert tones.level_dbfs(out[1600:-1600]) < -6.0 - 40.0
    assert tones.tone_level(out[1600:-1600], 2000) < -6.0 - 40.0


@pytest.mark.parametrize("rate", [11025, 16000, 22050, 44100, 48000])
def test_1khz_survives_with_its_frequency_and_level(rate: int) -> None:
    out = to_pcm8k(tones.sine(1000, 1000, rate=rate, dbfs=-10.0), rate, 1)
    assert abs(len(out) // 2 - 8000) <= 1
    mid = out[1600:-1600]
    assert abs(tones.dominant_frequency(mid) - 1000) < 2
    assert abs(tones.tone_level(mid, 1000) - -10.0) < 0.2


def test_3400hz_telephone_band_edge_is_kept() -> None:
    out = to_pcm8k(tones.sine(3400, 500, rate=48000, dbfs=-10.0), 48000, 1)
    assert abs(tones.tone_level(out[800:-800], 3400) - -10.0) < 1.0


def test_stereo_and_multichannel_are_averaged() -> None:
    left = np.frombuffer(tones.sine(440, 500, rate=16000, dbfs=-6.0), "<i2")
    stereo = np.stack([left, np.zeros_like(left)], axis=1).astype("<i2").tobytes()
    out = to_pcm8k(stereo, 16000, 2)
    assert abs(tones.tone_level(out[800:-800], 440) - -12.0) < 0.2
    quad = np.stack([left, left, left, left], axis=1).astype("<i2").tobytes()
    assert abs(tones.tone_level(to_pcm8k(quad, 16000, 4)[800:-800], 440) - -6.0) < 0.2


def test_8khz_mono_passes_through() -> None:
    pcm = tones.sine(700, 100)
    assert to_pcm8k(pcm, 8000, 1) == pcm
    assert to_pcm8k(b"", 44100, 1) == b""
    with pytest.raises(ValueError):
        to_pcm8k(pcm, 0, 1)


def test_filter_overshoot_is_clipped_not_wrapped() -> None:
    square = np.where(np.arange(44100) % 100 < 50, 32767, -32768).astype("<i2")
    ref = soxr.resample(square.astype(np.float32), 44100, 8000, quality="VHQ")
    assert ref.max() > 33000 and ref.min() < -33000  # the filter rings past full scale
    out = np.frombuffer(to_pcm8k(square.tobytes(), 44100, 1), "<i2")
    assert (out[ref > 32767] == 32767).all()
    assert (out[ref < -32768] == -32768).all()


def test_load_wav_at_any_rate(tmp_path: Path) -> None:
    p = write_wav(tmp_path / "p.wav", tones.sine(1000, 500, rate=22050, dbfs=-10.0), 22050)
    pcm = load_audio_8k(p)
    assert abs(len(pcm) // 2 - 4000) <= 1
    assert abs(tones.tone_level(pcm[800:-800], 1000) - -10.0) < 0.2


def test_load_recognises_wav_by_content(tmp_path: Path) -> None:
    p = write_wav(tmp_path / "prompt.mp3", tones.sine(500, 100), 8000)  # misnamed
    assert load_audio_8k(p) == tones.sine(500, 100)


def test_other_formats_without_ffmpeg_explain_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    p = tmp_path / "welcome.mp3"
    p.write_bytes(b"ID3\x03\x00\x00\x00" + b"\x00" * 100)
    with pytest.raises(ValueError) as exc:
        load_audio_8k(p)
    msg = str(exc.value)
    assert "welcome.mp3" in msg and "ffmpeg" in msg and "apt-get install ffmpeg" in msg


def test_broken_wav_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "broken.wav"
    p.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(ValueError, match=r"broken\.wav"):
        load_audio_8k(p)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError):
        load_audio_8k("/nonexistent/prompt.wav")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_compressed_formats_through_pydub(tmp_path: Path) -> None:  # pragma: no cover
    src = write_wav(tmp_path / "s.wav", tones.sine(1000, 1000, rate=44100, dbfs=-10.0), 44100)
    ogg = tmp_path / "s.ogg"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(src), str(ogg)], check=True)
    pcm = load_audio_8k(ogg)
    assert abs(tones.dominant_frequency(pcm[1600:-1600]) - 1000) < 3
