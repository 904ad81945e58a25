"""read_wav tolerance, CrashSafeWav's always-valid file, StereoRecorder's timeline."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from ccswitch.media.diskio import DiskWriter
from ccswitch.media.wav import CrashSafeWav, StereoRecorder, read_wav


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    n = len(body) if size is None else size
    return cid + struct.pack("<I", n) + body + (b"\x00" if len(body) & 1 else b"")


def fmt(tag: int, channels: int, rate: int, bits: int, extra: bytes = b"") -> bytes:
    align = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra
    return chunk(b"fmt ", body)


def riff(*chunks: bytes, size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def write(tmp_path: Path, data: bytes, name: str = "x.wav") -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def samples(pcm: bytes) -> list[int]:
    return [int(v) for v in np.frombuffer(pcm, "<i2")]


def test_reads_16bit_like_the_wave_module(tmp_path: Path) -> None:
    p = tmp_path / "a.wav"
    pcm = np.arange(-500, 500, 3, dtype="<i2").tobytes()
    with wave.open(str(p), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(pcm)
    assert read_wav(p) == (22050, 2, pcm)


def test_fake_lengths_as_streamed_by_espeak_ng(tmp_path: Path) -> None:
    pcm = struct.pack("<4h", 1, -2, 3, -4)
    for fake in (0xFFFFFFFF, 0x7FFFF000):
        data = riff(fmt(1, 1, 22050, 16), chunk(b"data", pcm, size=fake), size=fake)
        assert read_wav(write(tmp_path, data)) == (22050, 1, pcm)


def test_odd_and_unknown_chunks_are_skipped(tmp_path: Path) -> None:
    pcm = struct.pack("<2h", 7, 8)
    data = riff(
        chunk(b"LIST", b"INFOabc"),  # odd size: one pad byte follows
        fmt(1, 1, 8000, 16),
        chunk(b"fact", b"\x02\x00\x00\x00"),
        chunk(b"data", pcm),
        chunk(b"junk", b"zz"),
    )
    assert read_wav(write(tmp_path, data)) == (8000, 1, pcm)


def test_partial_last_frame_is_dropped(tmp_path: Path) -> None:
    data = riff(fmt(1, 2, 8000, 16), chunk(b"data", struct.pack("<3h", 1, 2, 3)))
    assert samples(read_wav(write(tmp_path, data))[2]) == [1, 2]


@pytest.mark.parametrize(
    ("tag", "bits", "raw", "expected"),
    [
        (1, 8, bytes([128, 255, 0, 129]), [0, 32512, -32768, 256]),
        (1, 24, b"\x00\x00\x80" + b"\xff\xff\x7f" + b"\x00\x01\x00", [-32768, 32767, 1]),
        (1, 32, struct.pack("<3i", -(2**31), 2**31 - 1, 65536 * 5), [-32768, 32767, 5]),
        (3, 32, struct.pack("<4f", 0.5, -1.0, 1.5, 0.0), [16384, -32768, 32767, 0]),
        (3, 64, struct.pack("<2d", -0.25, 0.25), [-8192, 8192]),
        (7, 8, b"\x00\x80\xff", [-32124, 32124, 0]),  # mu-law
        (6, 8, b"\xd5\x55", [8, -8]),  # A-law
    ],
)
def test_sample_formats(
    tmp_path: Path, tag: int, bits: int, raw: bytes, expected: list[int]
) -> None:
    data = riff(fmt(tag, 1, 16000, bits), chunk(b"data", raw))
    assert read_wav(write(tmp_path, data)) == (
        16000,
        1,
        struct.pack(f"<{len(expected)}h", *expected),
    )


def test_wave_format_extensible(tmp_path: Path) -> None:
    guid_pcm = b"\x01\x00\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    extra = struct.pack("<HHI", 22, 24, 0x4) + guid_pcm
    data = riff(fmt(0xFFFE, 1, 48000, 24, extra), chunk(b"data", b"\x00\x00\x40"))
    assert read_wav(write(tmp_path, data)) == (48000, 1, struct.pack("<h", 16384))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"ID3\x03\x00" + b"\x00" * 40, "not a RIFF/WAVE"),
        (riff(fmt(1, 1, 8000, 16)), "no data chunk"),
        (riff(chunk(b"data", b"\x00\x00")), "data chunk before fmt"),
        (riff(fmt(2, 1, 8000, 4), chunk(b"data", b"\x00\x00")), "unsupported"),  # MS ADPCM
        (riff(fmt(1, 0, 8000, 16), chunk(b"data", b"\x00\x00")), "bad format"),
    ],
)
def test_errors_name_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    p = write(tmp_path, data, "prompt.wav")
    with pytest.raises(ValueError, match=message) as exc:
        read_wav(p)
    assert "prompt.wav" in str(exc.value)


# --------------------------------------------------------------------------- CrashSafeWav


def wave_frames(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getnchannels(), w.readframes(w.getnframes())


def test_crash_safe_wav_is_valid_at_every_step(tmp_path: Path) -> None:
    p = tmp_path / "rec.wav"
    w = CrashSafeWav(p, channels=2, rate=8000)
    assert wave_frames(p) == (2, b"")
    w.append(b"\x01\x00\x02\x00" * 100)
    assert wave_frames(p) == (2, b"") and w.pending_frames == 100  # buffered only
    w.flush()
    assert wave_frames(p) == (2, b"\x01\x00\x02\x00" * 100) and w.frames == 100
    w.append(b"\x03\x00\x04\x00" * 50)
    w.flush()
    assert read_wav(p) == (8000, 2, b"\x01\x00\x02\x00" * 100 + b"\x03\x00\x04\x00" * 50)
    raw = p.read_bytes()
    assert struct.unpack_from("<I", raw, 4)[0] == len(raw) - 8
    assert struct.unpack_from("<I", raw, 40)[0] == len(raw) - 44
    w.close()
    w.close()
    with pytest.raises(ValueError):
        w.append(b"\x00\x00\x00\x00")


def test_crash_safe_wav_rejects_partial_frames(tmp_path: Path) -> None:
    with CrashSafeWav(tmp_path / "m.wav", channels=2) as w, pytest.raises(ValueError):
        w.append(b"\x00\x00")


def test_bytes_beyond_the_header_size_are_ignored(tmp_path: Path) -> None:
    """A crash between writing frames and updating the sizes: the file still reads as
    what the header covers."""
    p = tmp_path / "m.wav"
    with CrashSafeWav(p, channels=1) as w:
        w.append(b"\x05\x00" * 10)
    with open(p, "ab") as f:
        f.write(b"\x07\x00" * 3 + b"\x01")
    assert read_wav(p)[2] == b"\x05\x00" * 10
    assert wave_frames(p) == (1, b"\x05\x00" * 10)


def test_writes_on_a_disk_writer_thread_land_in_order(tmp_path: Path) -> None:
    """With a DiskWriter the loop only queues bytes: after `drain` the file holds every
    flush in order, with a header that covers exactly them; `close` closes the fd there."""
    disk = DiskWriter()
    p = tmp_path / "rec.wav"
    w = CrashSafeWav(p, channels=1, writer=disk)
    expected = b""
    for i in range(200):
        chunk = struct.pack("<h", i) * 160
        w.append(chunk)
        expected += chunk
        w.flush()
    assert w.frames == 200 * 160  # counted when queued
    assert disk.drain()
    assert read_wav(p) == (8000, 1, expected)
    raw = p.read_bytes()
    assert struct.unpack_from("<I", raw, 40)[0] == len(raw) - 44
    w.close()
    disk.close()
    assert disk.jobs == 203 and disk.errors == 0  # open, 200 flushes, drain mark, close


def test_a_file_the_writer_cannot_create_costs_one_error_not_the_call(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a directory should be")
    disk = DiskWriter()
    w = CrashSafeWav(tmp_path / "blocker" / "day" / "rec.wav", channels=1, writer=disk)
    for _ in range(5):
        w.append(b"\x00\x01" * 160)
        w.flush()  # no file: the writes are skipped quietly
    w.close()
    assert disk.drain()
    assert disk.errors == 1
    disk.close()


def test_disk_writer_survives_failing_jobs(tmp_path: Path) -> None:
    disk = DiskWriter()

    def broken() -> None:
        raise OSError(28, "No space left on device")

    ran: list[int] = []
    disk.submit(broken)
    disk.submit(lambda: ran.append(1))
    assert disk.drain()
    assert ran == [1] and disk.errors == 1
    disk.close()
    disk.submit(lambda: ran.append(2))  # a new thread after close
    disk.close()
    assert ran == [1, 2]


CRASH = r"""
import os, signal, sys
from ccswitch.media.wav import StereoRecorder
rec = StereoRecorder(sys.argv[1], flush_interval=0.5)
for i in range(100):  # 2 s of call audio, 20 ms packets on both sides
    rec.put(0, b"\x10\x00" * 160, i * 160)
    rec.put(1, b"\x20\x00" * 160, i * 160 + 40)
    if rec.due(i * 160):
        rec.flush_until(i * 160)  # the caller keeps 20 ms of slack for late packets
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_recorder_survives_kill_9(tmp_path: Path) -> None:
    p = tmp_path / "call.wav"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[3]))
    proc = subprocess.run([sys.executable, "-c", CRASH, str(p)], env=env, timeout=60)
    assert proc.returncode == -9
    rate, channels, pcm = read_wav(p)
    assert (rate, channels) == (8000, 2)
    frames = len(pcm) // 4
    # Flushed every 0.5 s of audio: at 4000, 8000 and 12000; the rest is lost.
    assert frames == 12000
    x = np.frombuffer(pcm, "<i2").reshape(-1, 2)
    assert (x[:, 0] == 16).all()
    assert (x[:40, 1] == 0).all() and (x[40:, 1] == 32).all()
    assert wave_frames(p)[0] == 2


# --------------------------------------------------------------------------- StereoRecorder


def lr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rate, channels, pcm = read_wav(path)
    assert (rate, channels) == (8000, 2)
    x = np.frombuffer(pcm, "<i2").reshape(-1, 2)
    return x[:, 0], x[:, 1]


def const(v: int, n: int) -> bytes:
    return struct.pack("<h", v) * n


def test_sides_are_aligned_and_gaps_are_silence(tmp_path: Path) -> None:
    p = tmp_path / "r.wav"
    rec = StereoRecorder(p)
    rec.put(0, const(1000, 160), 0)
    rec.put(1, const(2000, 160), 80)
    rec.put(0, const(1001, 160), 800)  # 80 ms later: a gap (lost packets, DTX)
    rec.flush_until(1200)
    left, right = lr(p)
    assert left.size == 1200
    assert (left[:160] == 1000).all() and (left[160:800] == 0).all()
    assert (left[800:960] == 1001).all() and (left[960:] == 0).all()
    assert (right[:80] == 0).all() and (right[80:240] == 2000).all() and (right[240:] == 0).all()
    rec.close()
    assert lr(p)[0].size == 1200


def test_overlapping_writes_overwrite(tmp_path: Path) -> None:
    p = tmp_path / "r.wav"
    rec = StereoRecorder(p)
    rec.put(0, const(1, 160), 0)
    rec.put(0, const(2, 160), 80)
    rec.put(0, const(3, 20), 100)  # inside what is already there
    rec.close()
    left, right = lr(p)
    assert left.tolist() == [1] * 80 + [2] * 20 + [3] * 20 + [2] * 120
    assert (right == 0).all()


def test_late_packets_are_trimmed_or_dropped(tmp_path: Path) -> None:
    p = tmp_path / "r.wav"
    rec = StereoRecorder(p)
    rec.put(0, const(5, 480), 0)
    rec.flush_until(480)
    assert rec.flushed == 480
    rec.put(1, const(7, 160), 400)  # 80 samples too late: only the tail is kept
    rec.put(1, const(9, 160), 0)  # entirely too late
    assert rec.dropped_samples == 80 + 160
    rec.close(800)
    left, right = lr(p)
    assert left.size == 800
    assert (right[:480] == 0).all() and (right[480:560] == 7).all() and (right[560:] == 0).all()


def test_due_follows_flush_interval(tmp_path: Path) -> None:
    p = tmp_path / "r.wav"
    rec = StereoRecorder(p, flush_interval=1.0)
    assert not rec.due(7999) and rec.due(8000)
    rec.put(0, const(3, 8160), 0)
    rec.flush_until(8000)
    assert rec.wav.frames == 8000 and lr(p)[0].size == 8000  # on disk, header updated
    assert not rec.due(15999) and rec.due(16000)
    rec.flush_until(7000)  # never backwards
    assert rec.flushed == 8000
    rec.close()
    assert lr(p)[0].size == 8160


def test_close_defaults_to_the_end_of_what_was_put(tmp_path: Path) -> None:
    p = tmp_path / "r.wav"
    rec = StereoRecorder(p)
    rec.put(1, const(4, 100), 1000)
    rec.close()
    _, right = lr(p)
    assert right.size == 1100 and (right[1000:] == 4).all() and (right[:1000] == 0).all()


def test_far_future_positions_are_dropped_not_allocated(tmp_path: Path) -> None:
    rec = StereoRecorder(tmp_path / "r.wav", max_ahead=60.0)
    rec.put(0, const(1, 160), 8000 * 3600)
    assert rec.dropped_samples == 160
    rec.close()
    assert lr(tmp_path / "r.wav")[0].size == 0


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_reads_espeak_ng_stdout(tmp_path: Path) -> None:
    """espeak-ng --stdout writes 0x7FFFF000 as the data length (it cannot seek back)."""
    raw = subprocess.run(
        ["espeak-ng", "--stdout", "one two three"], capture_output=True, check=True
    ).stdout
    assert struct.unpack_from("<I", raw, 40)[0] > len(raw)  # the fake length
    rate, channels, pcm = read_wav(write(tmp_path, raw))
    assert (rate, channels) == (22050, 1)
    assert len(pcm) == len(raw) - 44 and len(pcm) > 22050  # over half a second of speech
