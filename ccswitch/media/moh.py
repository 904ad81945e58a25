"""Music on hold: one shared, looped, decoded stream per class.

Every listener of a class hears the same position of the same stream (as
Asterisk's default MOH mode), so a hundred callers on hold cost one decode
and one frame slice per 20 ms tick, not a hundred players.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ccswitch.media.engine import FrameSource, MediaEngine
from ccswitch.media.player import FramePlayer, PromptCache
from ccswitch.media.tones import sine

log = logging.getLogger("ccswitch.moh")

AUDIO_EXTS = (".wav", ".mp3", ".ogg", ".flac")


class MohClass:
    """The shared stream of one class; `listener()` gives a FrameSource for an endpoint."""

    def __init__(self, name: str, clips: list[bytes], engine: MediaEngine) -> None:
        self.name = name
        self.engine = engine
        self._player = FramePlayer(clips, loop=True)
        self._tick = -1
        self._frame = bytes(320)
        self.listeners = 0

    def frame(self) -> bytes:
        tick = self.engine.tick_count
        if tick != self._tick:
            self._tick = tick
            self._frame = self._player.next_frame() or bytes(320)
        return self._frame

    def listener(self) -> MohListener:
        return MohListener(self)


class MohListener(FrameSource):
    __slots__ = ("moh",)

    def __init__(self, moh: MohClass) -> None:
        self.moh = moh

    def next_frame(self) -> bytes:
        return self.moh.frame()


class MusicOnHold:
    """All classes found under `<prompts>/moh/<class>/`, loaded once."""

    def __init__(self, directory: Path, engine: MediaEngine, cache: PromptCache) -> None:
        self.directory = directory
        self.engine = engine
        self.cache = cache
        self.classes: dict[str, MohClass] = {}

    def load(self) -> None:
        classes: dict[str, MohClass] = {}
        if self.directory.is_dir():
            for d in sorted(p for p in self.directory.iterdir() if p.is_dir()):
                files = sorted(f for f in d.iterdir() if f.suffix.lower() in AUDIO_EXTS)
                clips = []
                for f in files:
                    try:
                        clips.append(self.cache.get(f))
                    except (OSError, ValueError) as e:
                        log.error("music on hold %s: cannot load %s: %s", d.name, f, e)
                if clips:
                    classes[d.name] = MohClass(d.name, clips, self.engine)
        self.classes = classes

    def get(self, name: str | None) -> MohClass:
        name = name or "default"
        c = self.classes.get(name) or self.classes.get("default")
        if c is None:
            # no music installed: a soft tone every 4 s beats dead air (callers hang up)
            c = MohClass(name, [sine(425, 200, dbfs=-24) + bytes(2 * 8000 * 4)], self.engine)
            self.classes[name] = c
        return c
