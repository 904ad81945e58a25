"""Prompt playback, sans-IO: a shared prompt cache and a 20 ms frame iterator.

The pacer (transport side) calls `FramePlayer.next_frame()` every 20 ms and encodes the
frame; nothing here knows about time or sockets.
"""

from __future__ import annotations

import os
from pathlib import Path

from ccswitch.media.resample import load_audio_8k

__all__ = ["FramePlayer", "PromptCache"]


class PromptCache:
    """Prompts decoded to 8 kHz PCM16 once and shared by every call that plays them.

    Keyed by resolved path; a file whose mtime or size changed is reloaded on the next
    `get`, so prompts can be replaced on disk without a restart.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int, bytes]] = {}

    def get(self, path: str | os.PathLike[str]) -> bytes:
        p = Path(path).resolve()
        st = p.stat()
        key = str(p)
        entry = self._entries.get(key)
        if entry is not None and entry[0] == st.st_mtime_ns and entry[1] == st.st_size:
            return entry[2]
        pcm = load_audio_8k(p)
        self._entries[key] = (st.st_mtime_ns, st.st_size, pcm)
        return pcm

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_bytes(self) -> int:
        return sum(len(e[2]) for e in self._entries.values())

    def clear(self) -> None:
        self._entries.clear()


class FramePlayer:
    """Plays one clip or a sequence of clips as fixed-size frames (default 20 ms at 8 kHz).

    Frames run across clip boundaries without gaps; only the very last frame is padded
    with silence. With ``loop=True`` playback wraps to the first clip seamlessly and never
    ends (empty content excepted). Clips are never copied (a PromptCache entry is shared
    by every call playing it); each frame is a 320-byte bytes slice, which CPython makes
    faster than a memoryview slice (~0.15 vs ~0.25 us) and which is a real `bytes`.
    """

    __slots__ = (
        "_base",
        "_clip",
        "_clips",
        "_emitted",
        "_frame",
        "_loop",
        "_offset",
        "_rate",
        "_total",
    )

    def __init__(
        self,
        pcm_list: list[bytes] | bytes,
        loop: bool = False,
        frame_bytes: int = 320,
        rate: int = 8000,
    ) -> None:
        clips = [pcm_list] if isinstance(pcm_list, bytes | bytearray | memoryview) else pcm_list
        # Keep bytes objects as they are (shared with PromptCache); odd bytes are dropped.
        self._clips = [
            c if isinstance(c, bytes) and not len(c) & 1 else bytes(c)[: len(c) & ~1]
            for c in clips
            if len(c) > 1
        ]
        if frame_bytes <= 0 or frame_bytes & 1:
            raise ValueError(f"frame_bytes must be a positive even number, got {frame_bytes}")
        self._frame = frame_bytes
        self._loop = loop
        self._rate = rate
        self._total = sum(len(c) for c in self._clips)
        self._clip = 0  # index of the current clip
        self._offset = 0  # byte offset in the current clip
        self._base = 0  # byte offset of the current clip in the whole content
        self._emitted = 0  # bytes emitted, including loops and padding

    @property
    def done(self) -> bool:
        return self._clip >= len(self._clips)

    @property
    def position_ms(self) -> int:
        """Position in the content (wraps when looping)."""
        return (self._base + self._offset) * 500 // self._rate

    @property
    def elapsed_ms(self) -> int:
        """Audio emitted so far, loops and final padding included."""
        return self._emitted * 500 // self._rate

    @property
    def duration_ms(self) -> int:
        return self._total * 500 // self._rate

    def next_frame(self) -> bytes | None:
        """The next frame, or None once everything was played."""
        clips = self._clips
        if self._clip >= len(clips):
            return None
        size = self._frame
        clip = clips[self._clip]
        off = self._offset
        end = off + size
        if end < len(clip):  # the common case: one slice
            self._offset = end
            self._emitted += size
            return clip[off:end]
        parts = [clip[off:]]
        have = len(clip) - off
        self._advance_clip()
        while have < size and self._clip < len(clips):
            clip = clips[self._clip]
            take = min(size - have, len(clip))
            parts.append(clip[:take])
            have += take
            if take == len(clip):
                self._advance_clip()
            else:
                self._offset = take
        if have < size:
            parts.append(bytes(size - have))
        self._emitted += size
        return b"".join(parts)

    def _advance_clip(self) -> None:
        self._base += len(self._clips[self._clip])
        self._clip += 1
        self._offset = 0
        if self._clip >= len(self._clips) and self._loop:
            self._clip = 0
            self._base = 0

    def seek(self, ms: int) -> None:
        """Jump to `ms` into the content (clamped; the end means done)."""
        target = max(0, min(self._total, ms * self._rate // 500 & ~1))
        base = 0
        for i, clip in enumerate(self._clips):
            if target < base + len(clip):
                self._clip, self._base, self._offset = i, base, target - base
                return
            base += len(clip)
        self._clip, self._base, self._offset = len(self._clips), base, 0
