"""Energy voice-activity detector for 8 kHz PCM16 mono, 20 ms frames.

Sans-IO and cheap enough to run on the event loop for every received frame: one
`audioop.rms` and a few comparisons per 20 ms. The threshold is relative to an adaptive
noise floor (fast down, slow up) AND above an absolute level, so steady background noise
and low-level music do not open an utterance, while a talker does within ~120 ms.
"""

from __future__ import annotations

import math
import warnings
from collections import deque

with warnings.catch_warnings():
    # audioop is deprecated since 3.11 and gone in 3.13 (then provided by `audioop-lts`).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["FRAME_BYTES", "EnergyVad", "VadEvent", "frame_dbfs"]

RATE = 8000
FRAME_BYTES = 320  # 20 ms of 8 kHz PCM16
FRAME_S = 0.02


class VadEvent:
    NONE = 0
    START = 1  # the caller started speaking (~120 ms after onset)
    END = 2  # an utterance is complete: `EnergyVad.utterance` holds it
    DISCARD = 3  # a too-short burst (click, cough) ended: listening again


def frame_dbfs(frame: bytes) -> float:
    """RMS level of a PCM16 frame in dBFS (digital silence: -90)."""
    rms = audioop.rms(frame, 2)
    return 20.0 * math.log10(rms / 32768.0) if rms > 1 else -90.0


class EnergyVad:
    """Feed 20 ms frames with `process`; act on the returned `VadEvent`.

    An utterance starts when `start_frames` of the last `start_window` frames are louder
    than max(noise floor + `on_db`, `abs_min_db`); it ends after `end_silence` seconds
    below the lower continuation threshold max(floor + `off_db`, `abs_off_db`) (weak
    final consonants are 30 dB below the vowel), or at `max_utterance` seconds.
    Utterances shorter than `min_speech` from onset to last loud frame are discarded
    (a click; flite says "no" in 0.2 s).
    The utterance handed out includes `preroll` seconds before the onset (weak initial
    consonants) and at most `tail` seconds of the final silence.
    """

    def __init__(self, *, on_db: float = 12.0, off_db: float = 7.0,
                 abs_min_db: float = -42.0, abs_off_db: float = -57.0,
                 start_frames: int = 6, start_window: int = 8,
                 min_speech: float = 0.2, end_silence: float = 0.7,
                 max_utterance: float = 8.0, preroll: float = 0.3, tail: float = 0.3,
                 floor_rise: float = 0.02) -> None:
        self.on_db = on_db
        self.off_db = off_db
        self.abs_min_db = abs_min_db
        self.abs_off_db = abs_off_db
        self.start_frames = start_frames
        self._window_mask = (1 << start_window) - 1
        self.min_speech_frames = round(min_speech / FRAME_S)
        self.end_silence_frames = round(end_silence / FRAME_S)
        self.max_frames = round(max_utterance / FRAME_S)
        self.tail_frames = round(tail / FRAME_S)
        self.floor_rise = floor_rise
        self.floor: float | None = None  # dBFS
        self.in_speech = False
        self.utterance = b""  # set when END is returned
        self.speech_seconds = 0.0  # onset to last loud frame of the last utterance
        self._recent = 0  # bit per recent frame: 1 = loud
        self._pre: deque[bytes] = deque(maxlen=max(start_window, round(preroll / FRAME_S)))
        self._buf = bytearray()
        self._frames = 0  # frames in the current utterance (after the pre-roll)
        self._onset = 0  # frame index (in _frames) of the first loud frame
        self._silence = 0  # current run of quiet frames
        self._last_loud = 0  # frame index (in _frames) of the last loud frame
        self._pre_frames = 0

    def reset(self) -> None:
        """Back to listening (the noise floor is kept)."""
        self.in_speech = False
        self._recent = 0
        self._pre.clear()
        self._buf = bytearray()
        self._frames = self._onset = self._silence = self._last_loud = 0

    def process(self, frame: bytes) -> int:
        """One 20 ms frame (320 bytes) -> a VadEvent code."""
        db = frame_dbfs(frame)
        floor = self.floor
        if floor is None:
            floor = self.floor = db
        if not self.in_speech:
            loud = db > floor + self.on_db and db > self.abs_min_db
            # noise floor: follows quiet frames down at once, creeps up otherwise, so a
            # steady noise or music bed is absorbed within seconds but speech is not
            if db < floor:
                self.floor = db
            elif not loud:
                self.floor = floor + self.floor_rise * (db - floor)
            self._recent = ((self._recent << 1) | loud) & self._window_mask
            self._pre.append(frame)
            if self._recent.bit_count() < self.start_frames:
                return VadEvent.NONE
            # onset: the pre-roll holds the triggering frames and what preceded them
            self.in_speech = True
            self._buf = bytearray(b"".join(self._pre))
            self._pre_frames = len(self._pre)
            self._pre.clear()
            self._frames = self._pre_frames
            self._onset = self._frames - self._recent.bit_length()  # oldest loud frame
            self._last_loud = self._frames
            self._silence = 0
            return VadEvent.START
        loud = db > floor + self.off_db and db > self.abs_off_db
        # slower rise while "speaking": a noise that switched on loud ends its utterance
        # once the floor has caught up, instead of running to max_utterance every time
        self.floor = db if db < floor else floor + 0.25 * self.floor_rise * (db - floor)
        self._buf += frame
        self._frames += 1
        if loud:
            self._silence = 0
            self._last_loud = self._frames
        else:
            self._silence += 1
        if self._silence < self.end_silence_frames and self._frames < self.max_frames:
            return VadEvent.NONE
        # end of the utterance
        speech_frames = self._last_loud - self._onset
        self.speech_seconds = speech_frames * FRAME_S
        keep = min(self._frames, self._last_loud + self.tail_frames) * FRAME_BYTES
        utterance = bytes(self._buf[:keep])
        enough = speech_frames >= self.min_speech_frames
        self.reset()
        if not enough:
            return VadEvent.DISCARD
        self.utterance = utterance
        return VadEvent.END
