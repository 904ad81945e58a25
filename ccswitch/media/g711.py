"""G.711 (PCMU / PCMA) codec helpers.

Everything goes through `audioop` (C code): a 20 ms frame costs well under a microsecond.
PCM is always signed 16-bit little-endian mono (the host byte order `audioop` uses on the
platforms we run on).
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # audioop is deprecated since 3.11 and gone in 3.13 (then provided by `audioop-lts`).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "CODEC_NAMES",
    "PCMA",
    "PCMU",
    "decode",
    "encode",
    "silence_payload",
    "transcode",
]

PCMU = 0
PCMA = 8
CODEC_NAMES: dict[int, str] = {PCMU: "PCMU", PCMA: "PCMA"}

# Direct byte-to-byte tables: transcoding is then a single bytes.translate() call.
# They are built through 16-bit linear, which is what G.711's own conversion does
# (up to the rounding of the few codes that have no exact counterpart).
_ALL = bytes(range(256))
_U2A = audioop.lin2alaw(audioop.ulaw2lin(_ALL, 2), 2)
_A2U = audioop.lin2ulaw(audioop.alaw2lin(_ALL, 2), 2)
_SILENCE_BYTE = {PCMU: 0xFF, PCMA: 0xD5}
_silence_cache: dict[tuple[int, int], bytes] = {}


def _unknown(pt: int) -> ValueError:
    return ValueError(f"not a G.711 payload type: {pt!r} (expected {PCMU} or {PCMA})")


def decode(pt: int, payload: bytes) -> bytes:
    """G.711 payload -> PCM16LE mono (two bytes per input byte)."""
    if pt == PCMU:
        return audioop.ulaw2lin(payload, 2)
    if pt == PCMA:
        return audioop.alaw2lin(payload, 2)
    raise _unknown(pt)


def encode(pt: int, pcm: bytes) -> bytes:
    """PCM16LE mono -> G.711 payload. `pcm` must hold a whole number of samples."""
    if pt == PCMU:
        return audioop.lin2ulaw(pcm, 2)
    if pt == PCMA:
        return audioop.lin2alaw(pcm, 2)
    raise _unknown(pt)


def transcode(payload: bytes, from_pt: int, to_pt: int) -> bytes:
    """Convert a G.711 payload between PCMU and PCMA (identity when they are equal)."""
    if from_pt == to_pt:
        if from_pt not in CODEC_NAMES:
            raise _unknown(from_pt)
        return payload
    if from_pt == PCMU and to_pt == PCMA:
        return payload.translate(_U2A)
    if from_pt == PCMA and to_pt == PCMU:
        return payload.translate(_A2U)
    raise _unknown(to_pt if from_pt in CODEC_NAMES else from_pt)


def silence_payload(pt: int, samples: int = 160) -> bytes:
    """A payload of digital silence: 0xFF for PCMU, 0xD5 for PCMA. Cached per size."""
    key = (pt, samples)
    cached = _silence_cache.get(key)
    if cached is None:
        byte = _SILENCE_BYTE.get(pt)
        if byte is None:
            raise _unknown(pt)
        if samples < 0:
            raise ValueError(f"samples must be >= 0, got {samples}")
        cached = bytes((byte,)) * samples
        if len(_silence_cache) < 64:
            _silence_cache[key] = cached
    return cached
