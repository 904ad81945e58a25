"""Tone generation (PCM16LE mono) and a small tone meter for tests and diagnostics.

Generation runs once per tone and callers cache the result, so numpy is fine here.
Levels are in dBFS of each sine's peak: 0 dBFS is a full-scale sine (peak 32767); in a
dual tone each component has that level, so the sum peaks up to 6 dB higher.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["cadence", "dominant_frequency", "dual", "level_dbfs", "silence", "sine", "tone_level"]

_FULL = 32767.0


def _samples(ms: float, rate: int) -> int:
    if ms < 0:
        raise ValueError(f"duration must be >= 0 ms, got {ms}")
    return round(rate * ms / 1000.0)


def _synth(freqs: tuple[float, ...], n: int, rate: int, dbfs: float) -> bytes:
    t = np.arange(n, dtype=np.float64) * (2.0 * np.pi / rate)
    amp = _FULL * 10.0 ** (dbfs / 20.0)
    acc = np.zeros(n, dtype=np.float64)
    for f in freqs:
        acc += np.sin(t * f)
    acc *= amp
    np.clip(np.rint(acc, out=acc), -32768, 32767, out=acc)
    return acc.astype("<i2").tobytes()


def sine(freq: float, ms: float, rate: int = 8000, dbfs: float = -10.0) -> bytes:
    """A sine tone of `ms` milliseconds."""
    return _synth((freq,), _samples(ms, rate), rate, dbfs)


def dual(f1: float, f2: float, ms: float, rate: int = 8000, dbfs: float = -10.0) -> bytes:
    """Two summed sines, each at `dbfs` (ringback, busy, DTMF...)."""
    return _synth((f1, f2), _samples(ms, rate), rate, dbfs)


def silence(ms: float, rate: int = 8000) -> bytes:
    return bytes(2 * _samples(ms, rate))


def cadence(
    on_ms: float,
    off_ms: float,
    total_ms: float,
    f1: float,
    f2: float | None = None,
    rate: int = 8000,
    dbfs: float = -10.0,
) -> bytes:
    """`total_ms` of a tone switched on for `on_ms` and off for `off_ms`, repeated.

    Ringback (North America): ``cadence(2000, 4000, 6000, 440, 480)``; busy:
    ``cadence(500, 500, 1000, 480, 620)``. Loop the result for a continuous tone.
    """
    freqs = (f1,) if f2 is None else (f1, f2)
    total = _samples(total_ms, rate)
    on = _samples(on_ms, rate)
    off = _samples(off_ms, rate)
    if on + off <= 0:
        raise ValueError("on_ms + off_ms must be > 0")
    period = _synth(freqs, on, rate, dbfs) + bytes(2 * off)
    reps = -(-total // (on + off))
    return (period * reps)[: 2 * total]


def _pcm(pcm: bytes) -> npt.NDArray[np.float64]:
    return np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2).astype(np.float64)


def tone_level(pcm: bytes, freq: float, rate: int = 8000) -> float:
    """Level (dBFS, sine-peak scale) of the component of `pcm` at `freq` (single-bin DFT).

    For a pure tone at `freq` this returns its `dbfs`; -inf-like (-200) for silence.
    """
    x = _pcm(pcm)
    if x.size == 0:
        return -200.0
    t = np.arange(x.size) * (2.0 * np.pi * freq / rate)
    amp = 2.0 * abs(complex(np.dot(x, np.cos(t)), -np.dot(x, np.sin(t)))) / x.size
    return 20.0 * float(np.log10(max(amp, 1e-10) / _FULL))


def level_dbfs(pcm: bytes) -> float:
    """RMS level of `pcm` in dBFS on the sine-peak scale (a full-scale sine reads 0)."""
    x = _pcm(pcm)
    if x.size == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(x * x)))
    return 20.0 * float(np.log10(max(rms * np.sqrt(2.0), 1e-10) / _FULL))


def dominant_frequency(pcm: bytes, rate: int = 8000) -> float:
    """Frequency (Hz) of the strongest spectral peak (Hann window, parabolic interpolation)."""
    x = _pcm(pcm)
    if x.size < 4:
        return 0.0
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    k = int(np.argmax(spec[1:])) + 1
    if 0 < k < spec.size - 1:
        a, b, c = (float(v) for v in np.log(spec[k - 1 : k + 2] + 1e-12))
        den = a - 2.0 * b + c
        k_f = k + (0.5 * (a - c) / den if den else 0.0)
    else:
        k_f = float(k)
    return k_f * rate / x.size
