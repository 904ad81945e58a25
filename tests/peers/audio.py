"""Audio analysis and generation for e2e tests (numpy; independent of ccswitch).

Everything here is written from the textbook definitions on purpose: the
product has its own tone/DTMF code, and the tests must not check the product
with itself.

Samples are float64 numpy arrays in [-1, 1].  ``load_wav`` returns
``(rate, data)`` with ``data.shape == (channels, frames)``; ``load_mono``
returns one channel as a 1-D array.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
DTMF_HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
DTMF_KEYS = ("123A", "456B", "789C", "*0#D")


# ------------------------------------------------------------------- reading
def _parse_riff(raw: bytes) -> tuple[int, int, int, int, bytes] | None:
    """(format_tag, channels, rate, bits, data) of a RIFF/WAVE file, or None.

    Tolerates a data chunk whose size is 0 or larger than the file: a WAV still
    being written (baresip's sndfile updates the header only on close)."""
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        body = pos + 8
        if cid == b"fmt ":
            tag, ch, rate = struct.unpack("<HHI", raw[body : body + 8])
            bits = struct.unpack("<H", raw[body + 14 : body + 16])[0]
            if tag == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag in the GUID
                tag = struct.unpack("<H", raw[body + 24 : body + 26])[0]
            fmt = (tag, ch, rate, bits)
        elif cid == b"data" and fmt is not None:
            end = len(raw) if size == 0 or body + size > len(raw) else body + size
            return (*fmt, raw[body:end])
        pos = body + size + (size & 1)
    return None


def _decode(tag: int, ch: int, bits: int, data: bytes) -> FloatArray | None:
    if tag == 1 and bits == 16:
        x = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").astype(np.float64) / 32768.0
    elif tag == 1 and bits == 8:
        x = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif tag == 1 and bits == 32:
        x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<i4").astype(np.float64) / 2**31
    elif tag == 1 and bits == 24:
        b = np.frombuffer(data[: len(data) // 3 * 3], dtype=np.uint8)
        b = b.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v & 0x800000, v - 0x1000000, v)
        x = v.astype(np.float64) / 2**23
    elif tag == 3 and bits == 32:
        x = np.frombuffer(data[: len(data) // 4 * 4], dtype="<f4").astype(np.float64)
    else:
        return None
    n = len(x) // ch
    return np.ascontiguousarray(x[: n * ch].reshape(n, ch).T)


def load_wav(path: str | os.PathLike[str]) -> tuple[int, FloatArray]:
    """Read a WAV as ``(rate, data[channels, frames])`` floats in [-1, 1].

    PCM 8/16/24/32-bit and float32 are decoded directly; anything else
    (mu-law, A-law, other containers) goes through ``sox``."""
    raw = Path(path).read_bytes()
    riff = _parse_riff(raw)
    if riff is not None:
        tag, ch, rate, bits, data = riff
        x = _decode(tag, ch, bits, data)
        if x is not None:
            return rate, x
    if shutil.which("sox") is None:
        raise ValueError(f"cannot decode {path} and sox is not installed")
    fd, tmp = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        subprocess.run(["sox", "-V1", str(path), "-b", "16", "-e", "signed-integer", tmp],
                       check=True, capture_output=True, timeout=60)
        riff = _parse_riff(Path(tmp).read_bytes())
    finally:
        os.unlink(tmp)
    if riff is None:
        raise ValueError(f"sox output for {path} is not a WAV")
    tag, ch, rate, bits, data = riff
    x = _decode(tag, ch, bits, data)
    assert x is not None
    return rate, x


def load_mono(path: str | os.PathLike[str], channel: int = 0) -> tuple[int, FloatArray]:
    rate, x = load_wav(path)
    return rate, x[channel]


def u8_to_float(data: bytes) -> FloatArray:
    """8-bit unsigned linear (pyVoIP's audio frames) -> floats."""
    return (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0


def float_to_u8(x: FloatArray) -> bytes:
    """floats -> 8-bit unsigned linear (what pyVoIP's ``write_audio`` takes)."""
    return bytes(np.clip(np.round(x * 127.0 + 128.0), 0, 255).astype(np.uint8).tobytes())


def cut(
    x: FloatArray, rate: int, start: float | None = None, end: float | None = None
) -> FloatArray:
    a = int(max(0.0, start or 0.0) * rate)
    b = len(x) if end is None else min(len(x), int(end * rate))
    return x[a:b]


# -------------------------------------------------------------------- level
def dbfs(power: float) -> float:
    """Power (mean square, full-scale sine = 0.5) -> dB relative to full-scale square."""
    return 10.0 * float(np.log10(power)) if power > 1e-20 else -200.0


def rms_dbfs(x: FloatArray) -> float:
    """RMS level in dBFS (full-scale square wave = 0 dB, full-scale sine = -3 dB)."""
    if len(x) == 0:
        return -200.0
    return dbfs(float(np.mean(np.square(x))))


# ----------------------------------------------------------------- spectrum
def _welch(x: FloatArray, rate: int, nfft: int | None = None) -> tuple[FloatArray, FloatArray]:
    """Averaged Hann-windowed power spectrum, 50 % overlap. Returns (freqs, power)."""
    if nfft is None:
        nfft = 256
        while nfft < min(len(x), rate // 2):
            nfft *= 2
    if len(x) < nfft:
        x = np.concatenate([x, np.zeros(nfft - len(x))])
    win = np.hanning(nfft)
    hop = nfft // 2
    starts = np.arange(0, len(x) - nfft + 1, hop)
    frames = np.stack([x[s : s + nfft] for s in starts]) * win
    power = np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(nfft, 1.0 / rate)
    return np.asarray(freqs, dtype=np.float64), np.asarray(power, dtype=np.float64)


def dominant_freq(x: FloatArray, rate: int, fmin: float = 50.0, fmax: float | None = None) -> float:
    """Frequency (Hz) of the strongest spectral peak (Welch + parabolic interpolation).

    Returns 0.0 for silence (below -70 dBFS)."""
    if len(x) == 0 or rms_dbfs(x) < -70.0:
        return 0.0
    freqs, p = _welch(x, rate)
    fmax = rate / 2.0 - 50.0 if fmax is None else fmax
    band = np.nonzero((freqs >= fmin) & (freqs <= fmax))[0]
    if len(band) < 3:
        return 0.0
    k = int(band[np.argmax(p[band])])
    if 0 < k < len(p) - 1:
        a, b, c = np.log(p[k - 1 : k + 2] + 1e-30)
        den = a - 2 * b + c
        delta = 0.5 * (a - c) / den if den != 0 else 0.0
    else:
        delta = 0.0
    return float((k + delta) * rate / ((len(p) - 1) * 2))


def tone_ratio(x: FloatArray, rate: int, freq: float, tol_hz: float = 15.0) -> float:
    """Fraction of the signal's power (above 50 Hz) within ``freq +- tol_hz``."""
    if len(x) == 0:
        return 0.0
    freqs, p = _welch(x, rate)
    total = float(np.sum(p[freqs >= 50.0]))
    if total <= 0:
        return 0.0
    near = float(np.sum(p[(freqs >= freq - tol_hz) & (freqs <= freq + tol_hz)]))
    return near / total


def tone_present(
    x: FloatArray, rate: int, freq: float, tol_hz: float = 15.0, min_ratio: float = 0.5,
    min_dbfs: float = -50.0,
) -> bool:
    """True if at least ``min_ratio`` of the power is within ``freq +- tol_hz`` and the
    signal is louder than ``min_dbfs``."""
    return rms_dbfs(x) > min_dbfs and tone_ratio(x, rate, freq, tol_hz) >= min_ratio


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    rms_dbfs: float
    freq: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def segments(
    x: FloatArray, rate: int, thresh_db: float = -40.0, frame_ms: float = 20.0,
    min_len: float = 0.1, max_gap: float = 0.15,
) -> list[Segment]:
    """Active (louder than ``thresh_db``) segments with level and dominant frequency."""
    n = max(1, int(rate * frame_ms / 1000.0))
    nfr = len(x) // n
    if nfr == 0:
        return []
    pw = np.mean(np.square(x[: nfr * n].reshape(nfr, n)), axis=1)
    active = 10.0 * np.log10(np.maximum(pw, 1e-20)) > thresh_db
    spans: list[tuple[int, int]] = []
    start: int | None = None
    last = -1
    for i in (int(v) for v in np.nonzero(active)[0]):
        if start is None:
            start = i
        elif (i - last - 1) * n / rate > max_gap:
            spans.append((start, last + 1))
            start = i
        last = i
    if start is not None:
        spans.append((start, last + 1))
    out = []
    for a, b in spans:
        t0, t1 = a * n / rate, b * n / rate
        if t1 - t0 < min_len:
            continue
        seg = x[a * n : b * n]
        out.append(Segment(round(t0, 3), round(t1, 3), round(rms_dbfs(seg), 1),
                           round(dominant_freq(seg, rate), 1)))
    return out


# --------------------------------------------------------------------- DTMF
def _goertzel_blocks(blocks: FloatArray, rate: int, freqs: tuple[float, ...]) -> FloatArray:
    """Goertzel power |X(f)|^2 for every block (rows) and freq: result[blocks, freqs].

    The classic second-order recursion s[n] = x[n] + 2cos(w) s[n-1] - s[n-2],
    vectorised across blocks and frequencies (the loop is over block samples)."""
    coeff = 2.0 * np.cos(2.0 * np.pi * np.asarray(freqs) / rate)  # (F,)
    s1 = np.zeros((blocks.shape[0], len(freqs)))
    s2 = np.zeros_like(s1)
    for n in range(blocks.shape[1]):
        s0 = blocks[:, n : n + 1] + coeff * s1 - s2
        s2 = s1
        s1 = s0
    return np.asarray(s1 * s1 + s2 * s2 - coeff * s1 * s2, dtype=np.float64)


@dataclass(frozen=True)
class DtmfTone:
    digit: str
    start: float
    end: float


def detect_dtmf_tones(
    x: FloatArray, rate: int, min_db: float = -45.0, block_ms: float = 25.6, min_blocks: int = 2,
) -> list[DtmfTone]:
    """In-band DTMF digits with their times (Goertzel over ~25.6 ms blocks).

    A block counts as a digit when both groups have one clear winner (6 dB over
    the rest of the group), the twist is within +-8 dB and the two tones carry
    most (>60 %) of the block's energy; a digit needs ``min_blocks`` blocks in a
    row (about 51 ms), a repeat needs a non-digit block in between."""
    n = max(64, round(rate * block_ms / 1000.0))
    nb = len(x) // n
    if nb == 0:
        return []
    blocks = x[: nb * n].reshape(nb, n)
    energy = np.sum(np.square(blocks), axis=1)
    lp = _goertzel_blocks(blocks, rate, DTMF_LOW)
    hp = _goertzel_blocks(blocks, rate, DTMF_HIGH)
    li = np.argmax(lp, axis=1)
    hi = np.argmax(hp, axis=1)
    rows = np.arange(nb)
    lmax, hmax = lp[rows, li], hp[rows, hi]
    lsorted, hsorted = np.sort(lp, axis=1), np.sort(hp, axis=1)
    l_ok = lmax > 4.0 * lsorted[:, -2]
    h_ok = hmax > 4.0 * hsorted[:, -2]
    # for a sine of amplitude A: |X|^2 = (A n / 2)^2 and energy = A^2 n / 2 -> 2|X|^2/(n E) = 1
    purity = 2.0 * (lmax + hmax) / (n * np.maximum(energy, 1e-20))
    twist = 10.0 * np.log10(np.maximum(lmax, 1e-30) / np.maximum(hmax, 1e-30))
    level = 10.0 * np.log10(np.maximum(energy / n, 1e-20))
    ok = (level > min_db) & l_ok & h_ok & (purity > 0.6) & (np.abs(twist) <= 8.0)
    labels = [DTMF_KEYS[int(li[i])][int(hi[i])] if ok[i] else "" for i in range(nb)]
    out: list[DtmfTone] = []
    i = 0
    while i < nb:
        d = labels[i]
        j = i
        while j < nb and labels[j] == d:
            j += 1
        if d and j - i >= min_blocks:
            out.append(DtmfTone(d, round(i * n / rate, 3), round(j * n / rate, 3)))
        i = j
    return out


def detect_dtmf(x: FloatArray, rate: int, **kw: float) -> str:
    """In-band DTMF digits found in ``x``, as a string (e.g. ``"159#"``)."""
    return "".join(t.digit for t in detect_dtmf_tones(x, rate, **kw))  # type: ignore[arg-type]


# ---------------------------------------------------------------- generation
def _write_pcm16(path: str | os.PathLike[str], x: FloatArray, rate: int) -> Path:
    pcm = np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()
    hdr = b"RIFF" + struct.pack("<I", 36 + len(pcm)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    hdr += b"data" + struct.pack("<I", len(pcm))
    p = Path(path)
    p.write_bytes(hdr + pcm)
    return p


def tone(freq: float, secs: float, rate: int = 8000, amplitude: float = 0.5,
         freq2: float | None = None) -> FloatArray:
    """A sine (or dual tone with ``freq2``, each at amplitude/2) with 5 ms fades."""
    t = np.arange(round(secs * rate)) / rate
    if freq2 is None:
        x = amplitude * np.sin(2 * np.pi * freq * t)
    else:
        x = amplitude / 2 * (np.sin(2 * np.pi * freq * t) + np.sin(2 * np.pi * freq2 * t))
    ramp = min(len(x) // 2, int(0.005 * rate))
    if ramp > 0:
        env = np.linspace(0.0, 1.0, ramp)
        x[:ramp] *= env
        x[-ramp:] *= env[::-1]
    return x


def write_tone_wav(path: str | os.PathLike[str], freq: float, secs: float, rate: int = 8000,
                   amplitude: float = 0.5) -> Path:
    """Write a mono 16-bit sine WAV (amplitude 0.5 = -9 dBFS RMS)."""
    return _write_pcm16(path, tone(freq, secs, rate, amplitude), rate)


def write_dtmf_wav(path: str | os.PathLike[str], digits: str, rate: int = 8000,
                   on: float = 0.1, off: float = 0.1, amplitude: float = 0.5,
                   lead: float = 0.2) -> Path:
    """Write in-band DTMF digits (``on`` s tone, ``off`` s silence), with ``lead`` s of silence."""
    parts = [np.zeros(int(lead * rate))]
    for d in digits:
        row = next((r for r, keys in enumerate(DTMF_KEYS) if d.upper() in keys), None)
        if row is None:
            raise ValueError(f"not a DTMF digit: {d!r}")
        col = DTMF_KEYS[row].index(d.upper())
        parts.append(tone(DTMF_LOW[row], on, rate, amplitude, DTMF_HIGH[col]))
        parts.append(np.zeros(int(off * rate)))
    return _write_pcm16(path, np.concatenate(parts), rate)


def write_speech_wav(path: str | os.PathLike[str], text: str, voice: str = "en",
                     rate: int = 8000, engine: str = "espeak-ng", speed: int = 160) -> Path:
    """Speak ``text`` into an 8 kHz (``rate``) mono 16-bit WAV.

    ``engine`` is ``"espeak-ng"`` (default) or ``"flite"`` (if installed; ``voice`` is
    then a flite voice name such as ``"slt"``)."""
    p = Path(path)
    fd, raw = tempfile.mkstemp(suffix=".wav")
    os.close(fd)
    try:
        if engine == "flite":
            if shutil.which("flite") is None:
                raise RuntimeError("flite is not installed")
            cmd = ["flite", "-voice", voice or "slt", "-t", text, "-o", raw]
        else:
            if shutil.which("espeak-ng") is None:
                raise RuntimeError("espeak-ng is not installed")
            cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-w", raw, text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        subprocess.run(["sox", "-V1", raw, "-r", str(rate), "-c", "1", "-b", "16",
                        "-e", "signed-integer", str(p)],
                       check=True, capture_output=True, timeout=60)
    finally:
        os.unlink(raw)
    return p


def convert_wav(src: str | os.PathLike[str], dst: str | os.PathLike[str], rate: int = 8000,
                pad_s: float = 0.0) -> Path:
    """Any sox-readable file -> mono 16-bit WAV at ``rate`` (optionally silence-padded)."""
    cmd = ["sox", "-V1", str(src), "-r", str(rate), "-c", "1", "-b", "16", "-e", "signed-integer",
           str(dst)]
    if pad_s > 0:
        cmd += ["pad", "0", f"{pad_s:.3f}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)
    return Path(dst)
