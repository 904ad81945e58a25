"""Test audio for the speech layer: words spoken by flite / espeak-ng as 8 kHz telephone
audio (G.711 mu-law round trip), plus tones, noise and synthetic music.

Shared by tests/unit/speech and bench/speech_bench.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache

import numpy as np

from ccswitch.media.resample import to_pcm8k
from ccswitch.media.wav import read_wav

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000

# flite voices (more natural) and espeak-ng voices; "flite:kal" is 8 kHz native
FLITE_VOICES = ("flite:slt", "flite:rms", "flite:awb", "flite:kal16", "flite:kal")
ESPEAK_VOICES = ("espeak:en-us", "espeak:en", "espeak:en-us+f3")
KOREAN_VOICES = ("espeak:ko", "espeak:ko+f3", "espeak:ko+m3", "espeak:ko+f1", "espeak:ko+m7")

# the menu the rejection thresholds were chosen on ("dev")
MENU = {
    "sales": ["sales", "buy", "purchase"],
    "support": ["support", "technical support", "help"],
    "billing": ["billing", "invoice", "payment"],
    "operator": ["operator", "agent", "representative", "person"],
    "yes": ["yes", "yeah"],
    "no": ["no", "nope"],
    "repeat": ["repeat", "again", "main menu"],
}
OOV = ["banana", "weather", "hello how are you", "I want to cancel my subscription",
       "what time is it", "seven", "pizza", "goodbye", "tomorrow morning", "elephant",
       "my password does not work", "the quick brown fox", "thank you very much", "London",
       "computer", "um", "coffee", "I would like to speak to someone about my order"]
# a second menu and other words, never used to choose thresholds ("held-out")
MENU2 = {
    "checking": ["checking", "checking account"],
    "savings": ["savings"],
    "balance": ["balance", "account balance"],
    "transfer": ["transfer", "move money"],
    "card": ["credit card", "lost card"],
    "hours": ["opening hours", "branch"],
    "cancel": ["cancel"],
    "spanish": ["spanish"],
}
OOV2 = ["dog", "window", "please hold on", "nothing", "chicken soup", "monday", "blue",
        "the internet is down", "my name is john", "television", "happy birthday",
        "can you hear me", "orange juice", "seventeen"]
KO_MENU = {"sales": ["영업", "판매"], "support": ["지원", "기술 지원"], "yes": ["네", "예"],
           "no": ["아니요"], "agent": ["상담원"]}
KO_OOV = ["안녕하세요", "감사합니다", "바나나", "오늘 날씨가 좋네요", "비밀번호를 잊어버렸어요",
          "커피", "사과", "학교", "내일 아침", "여보세요", "컴퓨터", "전화번호", "저기요",
          "잠깐만요"]


def phrases(menu: dict[str, list[str]]) -> list[str]:
    return [p for ps in menu.values() for p in ps]


def have_flite() -> bool:
    return shutil.which("flite") is not None


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def telephone(pcm: bytes) -> bytes:
    """G.711 mu-law round trip, as a call carries it."""
    return audioop.ulaw2lin(audioop.lin2ulaw(pcm, 2), 2)


@lru_cache(maxsize=4096)
def speak(text: str, voice: str = "flite:slt") -> bytes:
    """`text` spoken by "flite:<voice>" or "espeak:<voice>" as 8 kHz PCM16 telephone audio."""
    engine, _, name = voice.partition(":")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "o.wav")
        if engine == "flite":
            cmd = ["flite", "-voice", name or "slt", "-t", text, "-o", out]
        elif engine == "espeak":
            cmd = ["espeak-ng", "-v", name or "en-us", "-w", out, text]
        else:
            raise ValueError(voice)
        subprocess.run(cmd, check=True, capture_output=True)
        rate, channels, pcm = read_wav(out)
    return telephone(to_pcm8k(pcm, rate, channels))


def silence(seconds: float) -> bytes:
    return bytes(2 * int(RATE * seconds))


def padded(pcm: bytes, lead: float = 0.5, tail: float = 1.2, noise_db: float | None = -65.0,
           seed: int = 0) -> bytes:
    """Speech with silence (or a faint noise floor, as a phone line has) around it."""
    out = silence(lead) + pcm + silence(tail)
    if noise_db is None:
        return out
    x = np.frombuffer(out, dtype="<i2").astype(np.float64)
    x += np.random.default_rng(seed).standard_normal(len(x)) * 32768 * 10 ** (noise_db / 20)
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def _pcm(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()  # type: ignore[no-any-return]


def noise(seconds: float, dbfs: float = -20.0, seed: int = 1, as_array: bool = False):  # type: ignore[no-untyped-def]
    """White noise at an RMS level in dBFS."""
    x = np.random.default_rng(seed).standard_normal(int(RATE * seconds))
    x *= 32768 * 10 ** (dbfs / 20)
    return x if as_array else _pcm(x)


def tone(seconds: float, freq: float = 440.0, dbfs: float = -15.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    return _pcm(np.sin(2 * np.pi * freq * t) * 32768 * 10 ** (dbfs / 20) * np.sqrt(2))


def music(seconds: float, dbfs: float = -20.0, seed: int = 2) -> bytes:
    """Hold-music-like audio: a melody of harmonic notes over chords, with envelopes."""
    rng = np.random.default_rng(seed)
    n = int(RATE * seconds)
    t = np.arange(n) / RATE
    x = np.zeros(n)
    scale = [261.6, 293.7, 329.6, 349.2, 392.0, 440.0, 493.9, 523.3]
    note = int(0.25 * RATE)
    for i in range(0, n, note):
        f = scale[int(rng.integers(len(scale)))]
        seg = slice(i, min(n, i + note))
        tt = t[seg] - t[i]
        env = np.exp(-tt * 6)
        for h, a in ((1, 1.0), (2, 0.5), (3, 0.3), (4, 0.15)):
            x[seg] += a * env * np.sin(2 * np.pi * f * h * tt)
    chord = int(RATE)
    for i in range(0, n, chord):
        root = scale[int(rng.integers(4))] / 2
        seg = slice(i, min(n, i + chord))
        for r in (1.0, 1.25, 1.5):
            x[seg] += 0.4 * np.sin(2 * np.pi * root * r * t[seg])
    x *= 32768 * 10 ** (dbfs / 20) / (np.sqrt(np.mean(x * x)) + 1e-9)
    return telephone(_pcm(x))


def babble(seconds: float, dbfs: float = -20.0) -> bytes:
    """Several overlapping talkers (espeak-ng), like a busy room."""
    sentences = ["the meeting has been moved to thursday afternoon",
                 "could you pass me the report from last week",
                 "we are going to the station after lunch"]
    n = int(RATE * seconds)
    x = np.zeros(n)
    for i, s in enumerate(sentences):
        v = np.frombuffer(speak(s, ("espeak:en-us", "espeak:en", "espeak:en-us+f3")[i]),
                          dtype="<i2").astype(np.float64)
        v = np.tile(v, n // len(v) + 1)[i * 800: i * 800 + n]
        x += v
    x *= 32768 * 10 ** (dbfs / 20) / (np.sqrt(np.mean(x * x)) + 1e-9)
    return _pcm(x)


def frames(pcm: bytes, size: int = 320) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm) - size + 1, size)]
