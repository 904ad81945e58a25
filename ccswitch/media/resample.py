"""Conversion of prompt audio to the 8 kHz PCM16 mono that calls carry.

Uses soxr (a proper anti-aliasing filter): `audioop.ratecv`, and pydub's `set_frame_rate`
built on it, have none, and a 6 kHz tone resampled to 8 kHz with them comes back as a
loud 2 kHz alias. Runs once per prompt file (callers cache), so numpy is fine.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import soxr

from ccswitch.media.wav import read_wav

with warnings.catch_warnings():
    # audioop is deprecated since 3.11 and gone in 3.13 (then provided by `audioop-lts`).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["RATE", "load_audio_8k", "to_pcm8k"]

RATE = 8000


def to_pcm8k(pcm: bytes, rate: int, channels: int) -> bytes:
    """PCM16LE (interleaved `channels`) at `rate` Hz -> PCM16LE mono at 8 kHz.

    Channels are averaged; resampling uses soxr's very-high-quality filter, which removes
    everything above 4 kHz before decimating.
    """
    if rate <= 0 or channels <= 0:
        raise ValueError(f"bad format: {channels} channels at {rate} Hz")
    frame = 2 * channels
    pcm = pcm[: len(pcm) - len(pcm) % frame]
    if channels == 2:
        pcm = audioop.tomono(pcm, 2, 0.5, 0.5)
    elif channels > 2:
        x = np.frombuffer(pcm, dtype="<i2").reshape(-1, channels).mean(axis=1)
        pcm = np.rint(x).astype("<i2").tobytes()
    if rate == RATE or not pcm:
        return bytes(pcm)
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    y = soxr.resample(x, rate, RATE, quality="VHQ")
    return np.clip(np.rint(y), -32768, 32767).astype("<i2").tobytes()  # type: ignore[no-any-return]


def load_audio_8k(path: str | os.PathLike[str]) -> bytes:
    """Load an audio file as 8 kHz PCM16 mono.

    WAV files (recognised by content, not by name) are read directly. Other formats
    (mp3, ogg, flac...) go through pydub, which needs the `ffmpeg` program; without it a
    ValueError names the file and the fix.
    """
    p = Path(path)
    with open(p, "rb") as f:
        magic = f.read(12)
    if magic[:4] == b"RIFF" and magic[8:12] == b"WAVE":
        rate, channels, pcm = read_wav(p)
        return to_pcm8k(pcm, rate, channels)
    if shutil.which("ffmpeg") is None and shutil.which("avconv") is None:
        raise ValueError(
            f"{p}: not a WAV file, and decoding other formats needs ffmpeg, which is not "
            f"installed. Install it (Debian/Ubuntu: apt-get install ffmpeg), or convert the "
            f"file to WAV once: ffmpeg -i '{p.name}' -ar 8000 -ac 1 '{p.stem}.wav' "
            f"(or: sox '{p.name}' -r 8000 -c 1 -b 16 '{p.stem}.wav')"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # pydub warns about ffmpeg at import
        from pydub import AudioSegment
    try:
        seg = AudioSegment.from_file(str(p))
    except Exception as exc:  # pydub raises CouldntDecodeError, ffmpeg errors, OSError...
        raise ValueError(f"{p}: cannot decode audio: {exc}") from exc
    if seg.sample_width != 2:
        seg = seg.set_sample_width(2)
    return to_pcm8k(bytes(seg.raw_data), int(seg.frame_rate), int(seg.channels))
