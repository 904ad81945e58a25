"""Recognizer interface shared by the engines, and the session that feeds them.

A `SpeechSession` is fed 20 ms frames of the caller's 8 kHz audio on the event loop
thread. `feed` only appends to a buffer and runs the energy VAD; when an utterance ends,
the engine decodes it in the executor (Vosk and PocketSphinx release the GIL), so the
loop never blocks. One session recognises one utterance.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from ccswitch.speech.vad import FRAME_BYTES, EnergyVad, VadEvent

__all__ = ["Recognizer", "SpeechResult", "SpeechSession", "normalize", "phrase_map"]

log = logging.getLogger("ccswitch.speech")


@dataclass
class SpeechResult:
    text: str  # raw recognizer text ("" if nothing)
    phrase: str | None  # the matched phrase from the session's phrase list; None = no_match
    confidence: float  # 0..1 where available
    duration: float  # seconds of speech


class Recognizer(Protocol):
    name: str  # "vosk:ko", "pocketsphinx:en"

    def session(self, phrases: list[str],
                executor: concurrent.futures.Executor) -> SpeechSession: ...


_NON_WORD = re.compile(r"[^\w\s']+")
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Comparison form of a phrase or a recognizer's text: NFC, lower case, punctuation
    (except apostrophes) removed, single spaces."""
    t = unicodedata.normalize("NFC", text).lower().replace("_", " ")
    return _SPACES.sub(" ", _NON_WORD.sub(" ", t)).strip()


def phrase_map(phrases: Iterable[str]) -> dict[str, str]:
    """normalised phrase -> the phrase as the menu wrote it (first one wins)."""
    out: dict[str, str] = {}
    for p in phrases:
        n = normalize(p)
        if n and n not in out:
            out[n] = p
    return out


# (text, matched phrase or None, confidence): what an engine's decoder returns
Decoded = tuple[str, str | None, float]


class SpeechSession:
    """One utterance: `feed` 8 kHz PCM16 frames, `await result()`.

    `decode` is the engine's blocking decoder, called once in `executor` with the
    utterance (8 kHz PCM16 mono). `result()` never completes if nobody speaks: the
    caller applies its own timeout. After `close()`, feeding is a no-op and a pending
    `result()` is cancelled.
    """

    def __init__(self, decode: Callable[[bytes], Decoded],
                 executor: concurrent.futures.Executor, vad: EnergyVad | None = None) -> None:
        self.speech_started = asyncio.Event()
        self._decode = decode
        self._executor = executor
        self._vad = vad or EnergyVad()
        self._partial = b""  # bytes of an incomplete frame
        self._result: asyncio.Future[SpeechResult] | None = None
        self._job: asyncio.Future[Decoded] | None = None
        self._duration = 0.0
        self._closed = False

    def _future(self) -> asyncio.Future[SpeechResult]:
        if self._result is None:
            self._result = asyncio.get_running_loop().create_future()
        return self._result

    def feed(self, pcm: bytes) -> None:
        if self._closed or self._job is not None:
            return
        if self._partial:
            pcm = self._partial + pcm
            self._partial = b""
        n = len(pcm)
        pos = 0
        vad = self._vad
        while pos + FRAME_BYTES <= n:
            ev = vad.process(pcm[pos:pos + FRAME_BYTES])
            pos += FRAME_BYTES
            if ev == VadEvent.START:
                self.speech_started.set()
            elif ev == VadEvent.END:
                self._start_decode(vad.utterance, vad.speech_seconds)
                return
        if pos < n:
            self._partial = pcm[pos:]

    def _start_decode(self, utterance: bytes, duration: float) -> None:
        self._duration = duration
        self._future()
        loop = asyncio.get_running_loop()
        self._job = loop.run_in_executor(self._executor, self._decode, utterance)
        self._job.add_done_callback(self._decoded)

    def _decoded(self, job: asyncio.Future[Decoded]) -> None:
        res = self._result
        if res is None or res.done() or job.cancelled():
            return
        exc = job.exception()
        if exc is not None:
            res.set_exception(exc)
            return
        text, phrase, confidence = job.result()
        res.set_result(SpeechResult(text, phrase, confidence, self._duration))

    async def result(self) -> SpeechResult:
        fut = self._future()
        if self._closed and not fut.done():
            fut.cancel()
        return await asyncio.shield(fut)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._partial = b""
        self._vad.reset()
        if self._job is not None and not self._job.done():
            self._job.cancel()  # not started yet: skip the decode
        if self._result is not None and not self._result.done():
            self._result.cancel()
