"""In-band DTMF detection: real digits under impairments, and no talk-off on speech/music."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from ccswitch.media import dtmf, g711, tones
from ccswitch.media.dtmf import EVENT_CHARS, GoertzelDetector, dtmf_tone
from ccswitch.media.wav import read_wav

DATA = Path(__file__).resolve().parents[2] / "data" / "media"
FRAME = 320  # 20 ms


def detect(pcm: bytes, frame: int = FRAME) -> list[str]:
    det = GoertzelDetector()
    out: list[str] = []
    for i in range(0, len(pcm), frame):
        out += det.feed(pcm[i : i + frame])
    return out


def pcm16(x: np.ndarray) -> bytes:
    return bytes(np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes())


def ulaw(pcm: bytes) -> bytes:
    """What a G.711 call does to the audio."""
    return g711.decode(g711.PCMU, g711.encode(g711.PCMU, pcm))


def impaired(
    rng: np.random.Generator,
    digit: str,
    ms: float,
    level: float = -12.0,
    twist: float = 0.0,
    offsets: tuple[float, float] = (0.0, 0.0),
    snr: float | None = None,
    lead_ms: float = 30.0,
    tail_ms: float = 60.0,
) -> bytes:
    """A digit with twist (dB, >0: column tone weaker), frequency offsets, white noise at
    `snr` dB below the tone power, after `lead_ms` of (noisy) silence, through mu-law."""
    fr, fc = dtmf._DIGIT_FREQS[digit]
    n = round(8 * ms)
    t = np.arange(n) / 8000.0
    a = 32767 * 10 ** (level / 20)
    ar = a * 10 ** (min(0.0, twist) / 20)
    ac = a * 10 ** (-max(0.0, twist) / 20)
    ph = rng.uniform(0, 2 * np.pi, 2)
    tone = ar * np.sin(2 * np.pi * fr * (1 + offsets[0]) * t + ph[0])
    tone += ac * np.sin(2 * np.pi * fc * (1 + offsets[1]) * t + ph[1])
    x = np.concatenate([np.zeros(round(8 * lead_ms)), tone, np.zeros(round(8 * tail_ms))])
    if snr is not None:
        x += rng.normal(0, np.sqrt(np.mean(tone**2) / 10 ** (snr / 10)), x.size)
    return ulaw(pcm16(x))


def test_dtmf_tone_frequencies_and_level() -> None:
    pcm = dtmf_tone("9", 200, level_dbfs=-7.0)
    assert len(pcm) == 3200
    assert abs(tones.tone_level(pcm, 852) - -7.0) < 0.05
    assert abs(tones.tone_level(pcm, 1477) - -7.0) < 0.05
    assert tones.tone_level(pcm, 941) < -40
    with pytest.raises(ValueError):
        dtmf_tone("E")


def test_all_sixteen_digits_in_20ms_frames() -> None:
    seq = b"".join(dtmf_tone(d, 50, level_dbfs=-10) + tones.silence(50) for d in EVENT_CHARS)
    assert "".join(detect(ulaw(seq))) == EVENT_CHARS
    # Any framing gives the same result: odd sizes, one sample at a time, all at once.
    assert "".join(detect(seq, frame=2 * 37)) == EVENT_CHARS
    assert "".join(detect(seq[:16000], frame=2)) == EVENT_CHARS[:10]
    assert "".join(GoertzelDetector().feed(seq)) == EVENT_CHARS


def test_fast_dialling_40ms_tone_40ms_pause(rng: np.random.Generator) -> None:
    digits = "5551234#"
    x = b"".join(
        impaired(rng, d, 40, snr=30, lead_ms=0, tail_ms=40) for d in digits
    )  # noise restarts per digit: fine, it is noise
    assert "".join(detect(tones.silence(13) + x)) == digits


@pytest.mark.parametrize("digit", list(EVENT_CHARS))
def test_detects_40ms_digits_under_impairments(digit: str, rng: np.random.Generator) -> None:
    """40 ms tones, 20 dB SNR white noise, twist up to 6 dB either way, +/-1.5 % on each
    tone independently, random alignment to the analysis blocks, mu-law coded."""
    failures = []
    for twist, off_r, off_c, level in itertools.product(
        (-6.0, 0.0, 6.0), (-0.015, 0.015), (-0.015, 0.015), (-25.0, -10.0)
    ):
        lead = float(rng.uniform(10, 40))
        pcm = impaired(rng, digit, 40, level, twist, (off_r, off_c), snr=20, lead_ms=lead)
        got = detect(pcm)
        if got != [digit]:
            failures.append((twist, off_r, off_c, level, got))
    assert failures == []


def test_quiet_and_loud_digits(rng: np.random.Generator) -> None:
    for level in (-36.0, -30.0, -20.0, -6.5):  # -6.5 dBFS per tone: the sum peaks near 0
        assert detect(impaired(rng, "8", 60, level, snr=30)) == ["8"]
    assert detect(impaired(rng, "8", 60, -50.0)) == []  # below the -42 dBFS floor


def test_short_tones_rejected_and_short_gaps_bridged(rng: np.random.Generator) -> None:
    for lead in np.linspace(0, 13, 14):
        assert detect(impaired(rng, "3", 15, snr=30, lead_ms=float(lead))) == []
    # A 10 ms dropout inside one key press must not register the digit twice...
    for lead in np.linspace(0, 13, 14):
        pcm = impaired(rng, "6", 60, snr=30, lead_ms=float(lead), tail_ms=10)
        pcm += impaired(rng, "6", 60, snr=30, lead_ms=0, tail_ms=50)
        assert detect(pcm) == ["6"]
    # ...while a real 40 ms pause between two presses of the same key is two digits.
    for lead in np.linspace(0, 13, 14):
        pcm = impaired(rng, "6", 50, snr=30, lead_ms=float(lead), tail_ms=40)
        pcm += impaired(rng, "6", 50, snr=30, lead_ms=0, tail_ms=50)
        assert detect(pcm) == ["6", "6"]


def mix(parts: list[tuple[float, float]], ms: float = 100) -> bytes:
    """Sum of sines [(frequency, dBFS)], with silence around."""
    t = np.arange(round(8 * ms)) / 8000.0
    x = sum(32767 * 10 ** (db / 20) * np.sin(2 * np.pi * f * t) for f, db in parts)
    return ulaw(pcm16(np.concatenate([np.zeros(400), np.asarray(x), np.zeros(800)])))


@pytest.mark.parametrize("digit", ["1", "5", "9", "D"])
def test_second_harmonics_reject_instrument_like_tones(digit: str) -> None:
    fr, fc = dtmf._DIGIT_FREQS[digit]
    clean = [(fr, -12.0), (fc, -12.0), (2 * fr, -42.0), (2 * fc, -42.0)]
    buzzy = [(fr, -12.0), (fc, -12.0), (2 * fr, -22.0), (2 * fc, -22.0)]  # 10 dB down
    assert detect(mix(clean)) == [digit]
    assert detect(mix(buzzy)) == []


def test_two_keys_at_once_are_rejected() -> None:
    """Keys 1 and 4 together: 697 and 770 Hz with 1209 Hz. No dominant row: no digit."""
    assert detect(mix([(697, -12.0), (770, -16.0), (1209, -12.0)])) == []
    assert detect(mix([(697, -12.0), (852, -16.0), (1336, -12.0)])) == []
    # A much weaker stray tone does not prevent detection.
    assert detect(mix([(697, -12.0), (770, -32.0), (1209, -12.0)])) == ["1"]


def test_long_press_is_one_digit(rng: np.random.Generator) -> None:
    assert detect(impaired(rng, "*", 3000, snr=20)) == ["*"]


@pytest.mark.parametrize(
    ("name", "pcm"),
    [
        ("dial tone", tones.dual(350, 440, 2000, dbfs=-13)),
        ("ringback", tones.cadence(2000, 4000, 6000, 440, 480, dbfs=-13)),
        ("busy", tones.cadence(500, 500, 3000, 480, 620, dbfs=-13)),
        ("row tone alone", tones.sine(770, 1000, dbfs=-10)),
        ("column tone alone", tones.sine(1336, 1000, dbfs=-10)),
        ("1 kHz test tone", tones.sine(1000, 1000, dbfs=-10)),
        ("white noise", pcm16(np.random.default_rng(0).normal(0, 3000, 16000))),
    ],
)
def test_call_progress_tones_and_noise_are_not_digits(name: str, pcm: bytes) -> None:
    assert detect(ulaw(pcm)) == [], name


def corpus(name: str) -> bytes:
    rate, channels, pcm = read_wav(DATA / name)
    assert (rate, channels) == (8000, 1)
    return pcm


@pytest.mark.parametrize("name", ["speech_8k.wav", "music_chords_8k.wav", "music_melody_8k.wav"])
def test_no_talk_off_on_speech_and_music(name: str) -> None:
    """A minute of varied espeak-ng speech and a minute of synthesized music (plucked
    chords; a sawtooth/square melody over a sweeping pad): not a single digit."""
    pcm = corpus(name)
    assert len(pcm) >= 2 * 8000 * 20
    assert detect(pcm) == []
    # Louder and quieter versions too (speech levels vary by call).
    x = np.frombuffer(pcm, "<i2").astype(np.float64)
    assert detect(pcm16(x * 0.1)) == []
    assert detect(pcm16(x * 0.02)) == []


def test_digit_in_the_middle_of_speech() -> None:
    speech = corpus("speech_8k.wav")
    cut = 2 * 8000 * 7  # in the middle of a sentence
    pcm = speech[: 2 * 8000 * 3] + dtmf_tone("7", 60, level_dbfs=-12) + speech[cut : cut + 32000]
    assert detect(pcm) == ["7"]


def test_digit_over_speech(rng: np.random.Generator) -> None:
    """Talk-down: the caller presses a key while someone talks (speech 10 dB down)."""
    speech = np.frombuffer(corpus("speech_8k.wav"), "<i2").astype(np.float64)
    tone = np.frombuffer(dtmf_tone("#", 80, level_dbfs=-10), "<i2").astype(np.float64)
    for _ in range(20):
        start = int(rng.integers(0, speech.size - 8000))
        bed = speech[start : start + 8000] * 10 ** (-10 / 20)
        bed[2000 : 2000 + tone.size] += tone
        assert detect(ulaw(pcm16(bed))) == ["#"], start


def test_corpus_files_are_small() -> None:
    wavs = sorted(Path(DATA).glob("*.wav"))
    assert len(wavs) >= 3
    assert sum(p.stat().st_size for p in wavs) < 1_100_000


def test_reset() -> None:
    det = GoertzelDetector()
    tone = dtmf_tone("1", 100)
    assert det.feed(tone) == ["1"]
    assert det.feed(tone) == []  # still held
    det.reset()
    assert det.feed(tone) == ["1"]


def test_other_rates() -> None:
    det = GoertzelDetector(rate=16000)
    pcm = dtmf_tone("4", 60, rate=16000) + tones.silence(60, rate=16000)
    pcm += dtmf_tone("C", 60, rate=16000) + tones.silence(60, rate=16000)
    assert det.feed(pcm) == ["4", "C"]
