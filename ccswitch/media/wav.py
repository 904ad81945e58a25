"""WAV reading (tolerant) and crash-safe WAV writing, plus the two-sided call recorder.

`read_wav` converts whatever it finds to PCM16LE. `CrashSafeWav` keeps the file a valid WAV
at every moment: frames are written first, the header sizes after, so a process killed at
any point leaves a file that ends at the last flush. `StereoRecorder` places each side's
audio on the call's sample timeline and writes caller left, callee right.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ccswitch.media.diskio import DiskWriter

with warnings.catch_warnings():
    # audioop is deprecated since 3.11 and gone in 3.13 (then provided by `audioop-lts`).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["CrashSafeWav", "StereoRecorder", "read_wav"]

_FMT_PCM = 1
_FMT_FLOAT = 3
_FMT_ALAW = 6
_FMT_ULAW = 7
_FMT_EXTENSIBLE = 0xFFFE
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")
_U32 = struct.Struct("<I")
_MAX_DATA = 0xFFFFFFFF - 36 - 1  # RIFF sizes are 32-bit


def read_wav(path: str | os.PathLike[str]) -> tuple[int, int, bytes]:
    """Read a WAV file: ``(rate, channels, pcm16le)`` with channels interleaved.

    Walks the chunks itself: tolerates the fake RIFF/data lengths of streamed writers
    (espeak-ng --stdout, ffmpeg pipes: the data then runs to the end of the file), odd
    chunk padding, and unknown chunks. Converts 8-bit unsigned, 16/24/32-bit integer,
    32/64-bit float, mu-law and A-law to 16-bit. Raises ValueError naming the file.
    """
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return _parse_wav(raw)
    except ValueError as exc:
        raise ValueError(f"{os.fspath(path)}: {exc}") from None


def _parse_wav(raw: bytes) -> tuple[int, int, bytes]:
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    fmt: tuple[int, int, int, int] | None = None  # tag, channels, rate, bits
    pos = 12
    n = len(raw)
    while pos + 8 <= n:
        cid, size = _CHUNK.unpack_from(raw, pos)
        pos += 8
        if cid == b"fmt ":
            if size < 16 or pos + 16 > n:
                raise ValueError("truncated fmt chunk")
            tag, channels, rate, _brate, _align, bits = _FMT.unpack_from(raw, pos)
            if tag == _FMT_EXTENSIBLE and size >= 40 and pos + 26 <= n:
                tag = struct.unpack_from("<H", raw, pos + 24)[0]  # SubFormat GUID's first field
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            end = n if size > n - pos else pos + size  # fake/oversized length: to EOF
            return fmt[2], fmt[1], _to_pcm16(raw[pos:end], *fmt)
        pos += size + (size & 1)
    raise ValueError("no data chunk" if fmt else "no fmt chunk")


def _to_pcm16(data: bytes, tag: int, channels: int, rate: int, bits: int) -> bytes:
    if channels < 1 or rate < 1:
        raise ValueError(f"bad format: {channels} channels at {rate} Hz")
    if tag in (_FMT_ULAW, _FMT_ALAW):
        data = data[: len(data) - len(data) % channels]
        return audioop.ulaw2lin(data, 2) if tag == _FMT_ULAW else audioop.alaw2lin(data, 2)
    width = bits // 8
    if bits % 8 or width < 1:
        raise ValueError(f"unsupported sample size: {bits} bits")
    frame = width * channels
    data = data[: len(data) - len(data) % frame]
    if tag == _FMT_PCM:
        if width == 1:  # 8-bit WAV is unsigned
            return audioop.lin2lin(audioop.bias(data, 1, -128), 1, 2)
        if width == 2:
            return data
        if width in (3, 4):
            return audioop.lin2lin(data, width, 2)
    elif tag == _FMT_FLOAT and width in (4, 8):
        x = np.frombuffer(data, dtype="<f4" if width == 4 else "<f8")
        y = np.clip(np.rint(x * 32768.0), -32768, 32767).astype("<i2")
        return y.tobytes()
    raise ValueError(f"unsupported WAV encoding: format tag {tag:#x}, {bits} bits")


def _header(channels: int, rate: int, data_bytes: int) -> bytes:
    align = 2 * channels
    return (
        b"RIFF"
        + _U32.pack(36 + data_bytes)
        + b"WAVEfmt "
        + _U32.pack(16)
        + _FMT.pack(_FMT_PCM, channels, rate, rate * align, align, 16)
        + b"data"
        + _U32.pack(data_bytes)
    )


class _File:
    """The open file behind a CrashSafeWav, whichever thread opened it."""

    __slots__ = ("fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def open(self, header: bytes, make_dirs: bool) -> None:
        if make_dirs:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, header)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd

    def write_then_sizes(self, data: bytes, data_bytes: int) -> None:
        """Append `data`, then make the header cover the file up to `data_bytes`."""
        fd = self.fd
        if fd < 0:
            return  # the open failed (and was reported): nothing to add to
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.pwrite(fd, _U32.pack(36 + data_bytes), 4)
        os.pwrite(fd, _U32.pack(data_bytes), 40)

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class CrashSafeWav:
    """A PCM16 WAV file that is valid at every moment.

    The header (with sizes 0) is written at once. `append` only buffers; `flush` writes
    the buffered frames at the end of the file and then rewrites the RIFF and data sizes
    (``pwrite``, so the append position never moves). A ``kill -9`` therefore loses at
    most what was appended since the last flush. (A power cut can lose more: there is no
    fsync, as it would cost a disk round trip per flush.) Appends that would take the data
    past the 4 GiB RIFF limit are dropped and counted in `dropped_bytes`.

    With a `writer`, opening (directories included), writes and closing all run on its
    thread, in order: even creating a file can wait for the file system's journal while
    a disk is busy writing back.  An error there is logged by the writer, not raised.
    """

    def __init__(self, path: str | os.PathLike[str], channels: int, rate: int = 8000,
                 writer: DiskWriter | None = None) -> None:
        self.path = Path(path)
        self._writer = writer
        self.channels = channels
        self.rate = rate
        self._align = 2 * channels
        self._file = f = _File(self.path)
        header = _header(channels, rate, 0)
        if writer is not None:
            writer.submit(lambda: f.open(header, True))
        else:
            f.open(header, False)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._data_bytes = 0
        self.dropped_bytes = 0
        self._closed = False

    @property
    def frames(self) -> int:
        """Frames written to the file (flushed)."""
        return self._data_bytes // self._align

    @property
    def pending_frames(self) -> int:
        return self._pending_bytes // self._align

    def append(self, pcm: bytes) -> None:
        """Buffer interleaved PCM16 frames (whole frames only)."""
        if self._closed:
            raise ValueError(f"{self.path}: append after close")
        if len(pcm) % self._align:
            raise ValueError(f"{len(pcm)} bytes is not a whole number of {self._align}-byte frames")
        if self._data_bytes + self._pending_bytes + len(pcm) > _MAX_DATA:
            self.dropped_bytes += len(pcm)
            return
        if pcm:
            self._pending.append(bytes(pcm))
            self._pending_bytes += len(pcm)

    def flush(self) -> None:
        """Write buffered frames, then the sizes that cover them."""
        if self._closed or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._data_bytes += len(data)
        if self._writer is not None:
            f, total = self._file, self._data_bytes
            self._writer.submit(lambda: f.write_then_sizes(data, total))
        else:
            self._file.write_then_sizes(data, self._data_bytes)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._writer is not None:
                self._writer.submit(self._file.close)
            else:
                self._file.close()

    def __enter__(self) -> CrashSafeWav:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StereoRecorder:
    """Two-sided call recording on one sample timeline: side 0 left (caller), 1 right.

    `put` places mono PCM16 at an absolute sample index (0 = start of the recording);
    overlapping writes overwrite, and audio before what was already flushed is dropped
    (late packets). `flush_until` interleaves [flushed, sample) of both sides, with
    silence where nothing was put, writes it to the file and updates the header. Positions
    and timing are the caller's business: this only handles buffers. Call `flush_until`
    about every `flush_interval` seconds of audio (`due` says when), leaving some slack
    for late packets: a kill -9 then loses at most that much audio.

    Writes more than `max_ahead` seconds beyond the flushed point are dropped (a bogus
    position must not allocate gigabytes); `dropped_samples` counts all dropped samples.
    """

    __slots__ = (
        "_bufs",
        "_flushed",
        "_interval",
        "_max_ahead",
        "_wav",
        "dropped_samples",
        "flush_interval",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        rate: int = 8000,
        flush_interval: float = 1.0,
        max_ahead: float = 60.0,
        writer: DiskWriter | None = None,
    ) -> None:
        self._wav = CrashSafeWav(path, 2, rate, writer)
        self._bufs = (bytearray(), bytearray())  # PCM from _flushed onwards, per side
        self._flushed = 0
        self.flush_interval = flush_interval
        self._interval = int(flush_interval * rate)
        self._max_ahead = int(max_ahead * rate)
        self.dropped_samples = 0

    @property
    def wav(self) -> CrashSafeWav:
        return self._wav

    @property
    def flushed(self) -> int:
        """Sample index up to which the timeline has been written."""
        return self._flushed

    def due(self, sample: int) -> bool:
        """True once `sample` is `flush_interval` or more past the flushed point."""
        return sample - self._flushed >= self._interval

    def put(self, side: int, pcm: bytes, at_sample: int) -> None:
        """Place mono PCM16 for `side` (0 or 1) at sample index `at_sample`."""
        buf = self._bufs[side]
        start = (at_sample - self._flushed) * 2
        if start < 0:
            if -start >= len(pcm):
                self.dropped_samples += len(pcm) >> 1
                return
            self.dropped_samples += -start >> 1
            pcm = pcm[-start:]
            start = 0
        end = start + len(pcm)
        if end > self._max_ahead * 2:
            self.dropped_samples += len(pcm) >> 1
            return
        have = len(buf)
        if start >= have:
            if start > have:
                buf.extend(bytes(start - have))
            buf += pcm
        else:
            buf[start:end] = pcm  # overwrite (grows the buffer if pcm runs past its end)

    def flush_until(self, sample: int) -> None:
        """Write the timeline up to `sample` (exclusive) to the file, header included."""
        n = sample - self._flushed
        if n <= 0:
            return
        # numpy interleaves a second of audio in ~15 us; audioop.tostereo + add took ~200.
        out = np.zeros((n, 2), dtype="<i2")
        for side, buf in enumerate(self._bufs):
            k = min(len(buf) >> 1, n)
            if k:
                out[:k, side] = np.frombuffer(buf, dtype="<i2", count=k)
                del buf[: 2 * k]  # (the temporary view above is gone: resizing is allowed)
        self._flushed = sample
        self._wav.append(out.tobytes())
        self._wav.flush()

    def close(self, final_sample: int | None = None) -> None:
        """Flush up to `final_sample` (default: the end of what was put) and close."""
        if final_sample is None:
            final_sample = self._flushed + max(len(self._bufs[0]), len(self._bufs[1])) // 2
        self.flush_until(final_sample)
        self._wav.close()
