from __future__ import annotations

import os
import wave
from pathlib import Path

import pytest

from ccswitch.media import tones
from ccswitch.media.player import FramePlayer, PromptCache


def frames(p: FramePlayer, limit: int = 10_000) -> list[bytes]:
    out: list[bytes] = []
    while (f := p.next_frame()) is not None and len(out) < limit:
        out.append(f)
    return out


def ramp(n_bytes: int, start: int = 0) -> bytes:
    return bytes((start + i) % 251 for i in range(n_bytes))


def test_single_clip_last_frame_zero_padded() -> None:
    pcm = ramp(2000)
    p = FramePlayer(pcm)
    assert p.duration_ms == 125 and p.position_ms == 0 and not p.done
    out = frames(p)
    assert [len(f) for f in out] == [320] * 7
    assert b"".join(out) == pcm + bytes(240)
    assert p.done and p.next_frame() is None
    assert p.elapsed_ms == 140 and p.position_ms == 125


def test_exact_multiple_needs_no_padding() -> None:
    out = frames(FramePlayer(ramp(640)))
    assert b"".join(out) == ramp(640) and len(out) == 2


def test_clip_sequence_has_no_gaps_between_clips() -> None:
    clips = [ramp(500), ramp(100, 7), ramp(1000, 3), ramp(2, 1)]
    out = frames(FramePlayer(clips))
    assert all(len(f) == 320 for f in out)
    total = sum(len(c) for c in clips)
    assert b"".join(out) == b"".join(clips) + bytes(-total % 320)


def test_position_ms_across_clips() -> None:
    p = FramePlayer([ramp(480), ramp(480)])  # 30 ms + 30 ms
    p.next_frame()
    assert p.position_ms == 20
    p.next_frame()
    assert p.position_ms == 40
    p.next_frame()
    assert p.position_ms == 60 and p.done


def test_loop_wraps_seamlessly_and_never_ends() -> None:
    pcm = ramp(1000)
    p = FramePlayer(pcm, loop=True)
    out = [p.next_frame() for _ in range(20)]
    assert not p.done
    joined = b"".join(f for f in out if f is not None)
    assert joined == (pcm * 7)[: 20 * 320]
    assert p.position_ms == (20 * 320) % 1000 // 16
    assert p.elapsed_ms == 400


def test_loop_of_a_clip_shorter_than_a_frame() -> None:
    p = FramePlayer([ramp(100)], loop=True)
    assert p.next_frame() == (ramp(100) * 4)[:320]


def test_empty_content() -> None:
    for content in (b"", [], [b""]):
        for loop in (False, True):
            p = FramePlayer(content, loop=loop)
            assert p.done and p.next_frame() is None


def test_clips_are_shared_not_copied() -> None:
    pcm = ramp(3200)
    p = FramePlayer([pcm, pcm])
    assert p._clips[0] is pcm and p._clips[1] is pcm


def test_other_frame_sizes_and_odd_input() -> None:
    out = frames(FramePlayer(ramp(641), frame_bytes=160))
    assert b"".join(out) == ramp(640) + bytes(0) and len(out) == 4
    with pytest.raises(ValueError):
        FramePlayer(b"", frame_bytes=321)


def test_seek() -> None:
    pcm = ramp(16000)  # 1 s
    p = FramePlayer([pcm[:8000], pcm[8000:]])
    p.seek(700)
    assert p.position_ms == 700
    assert p.next_frame() == pcm[11200:11520]
    p.seek(10_000)
    assert p.done
    p.seek(0)
    assert p.next_frame() == pcm[:320]


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def test_prompt_cache_loads_once_and_shares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = tmp_path / "hello.wav"
    write_wav(p, tones.sine(1000, 200, rate=16000), 16000)
    cache = PromptCache()
    a = cache.get(p)
    assert len(a) == 3200
    monkeypatch.chdir(tmp_path)
    assert cache.get("hello.wav") is a  # same file, other spelling
    assert cache.get(str(p)) is a
    assert len(cache) == 1 and cache.total_bytes == 3200


def test_prompt_cache_reloads_a_changed_file(tmp_path: Path) -> None:
    p = tmp_path / "menu.wav"
    write_wav(p, tones.sine(500, 100), 8000)
    cache = PromptCache()
    first = cache.get(p)
    write_wav(p, tones.sine(500, 300), 8000)
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = cache.get(p)
    assert len(first) == 1600 and len(second) == 4800
    cache.clear()
    assert len(cache) == 0


def test_prompt_cache_errors(tmp_path: Path) -> None:
    cache = PromptCache()
    with pytest.raises(FileNotFoundError):
        cache.get(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(ValueError, match=r"bad\.wav"):
        cache.get(bad)
