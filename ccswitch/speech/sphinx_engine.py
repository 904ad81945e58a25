"""PocketSphinx recognizer: the English engine that works out of the box.

Uses the US English acoustic model and dictionary shipped in the `pocketsphinx` pip
package, with a JSGF grammar of the menu's phrases. Pocketsphinx 5 fails at 8 kHz, so
the utterance is upsampled to 16 kHz with soxr (the empty 4-8 kHz band costs accuracy;
figures in bench/speech_bench.py).

Pocketsphinx 5.1.1 HOLDS the GIL while decoding (measured: a Python thread ran at 6%
of its speed during decodes), so decoding in the server's thread pool would stall the
event loop for ~100 ms per utterance. Decoding therefore runs in worker PROCESSES
(spawned, not forked: the server has threads); the executor thread that calls
`decode` only waits for the answer.

Grammar mode never rejects: any sound comes out as the closest phrase. Rejection here
(measured, then chosen) compares the grammar's alignment with a free phone loop
(allphone search, context-independent phones, uniform phone probabilities) over the
same audio, with every senone scored in both passes so their scores are comparable:
- acoustic fit: the phrase's acoustic score minus the phone loop's over the phrase's
  frames, per frame, must be >= MIN_SCORE (a non-phrase word fits a phone sequence
  much better than it fits any phrase);
- coverage: the phrase must cover the loud part of the utterance (a sentence holding a
  phrase-like word, "goodbye" for "buy", leaves loud frames that the grammar has to
  call silence).
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import hashlib
import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import soxr

from ccswitch.speech.base import Decoded, SpeechSession, phrase_map

__all__ = ["MAX_UNCOVERED", "MIN_SCORE", "SphinxRecognizer"]

log = logging.getLogger("ccswitch.speech")

# Rejection thresholds, chosen on the "dev" menu of bench/speech_bench.py (flite and
# espeak-ng voices, 8 kHz mu-law) and checked on the held-out menu.
# On flite voices, dev menu, 3 noise seeds (correct / false accepts of 18 other words):
# -15: 82% / 2.2%, -20: 90% / 4.8%, -25: 92% / 7.8%.
MIN_SCORE = -20.0  # per-frame acoustic margin to the phone loop (pocketsphinx log units)
MAX_UNCOVERED = 2  # loud 10 ms frames allowed outside the phrase (beyond 50 ms of slack)
_SLACK_FRAMES = 5
_LOUD_RANGE_DB = 30.0
# silence added around the utterance: with batch CMN over a short utterance the decoder
# otherwise stretches the last word over the tail (measured: false accepts 3/90 -> 11/90)
_PAD = bytes(2 * 8000 * 15 // 100)
_PHONES = "_phones"
_FILLERS = ("<", "[")  # <s> </s> <sil> [NOISE] [SPEECH]
_MAX_SEARCHES = 64  # grammars kept per decoder


def _new_decoder() -> tuple[Any, OrderedDict[str, None]]:
    from pocketsphinx import Decoder

    # compallsen: both passes normalise by the same best senone score in each frame
    d = Decoder(lm=None, loglevel="FATAL", compallsen=True)
    d.add_allphone_file(_PHONES, None)
    return d, OrderedDict()


def _uncovered(x: np.ndarray[Any, Any], start: int, end: int) -> int:
    """Loud 10 ms frames (8 kHz samples `x`) outside frames [start, end]."""
    n = len(x) // 80
    if n == 0:
        return 0
    frames = x[: n * 80].reshape(n, 80)
    db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1.0)
    threshold = max(float(db.max()) - _LOUD_RANGE_DB, float(np.percentile(db, 10)) + 10.0)
    loud = db > threshold
    loud[max(0, start): max(0, end + 1)] = False
    return int(loud.sum())


def _decode_with(entry: tuple[Any, OrderedDict[str, None]], pcm: bytes, name: str,
                 jsgf: str) -> tuple[str, float, bool]:
    """(grammar text, confidence, accepted) for 8 kHz PCM16 `pcm`, with one decoder."""
    pcm = _PAD + pcm + _PAD
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    pcm16 = np.clip(np.rint(soxr.resample(x, 8000, 16000, quality="HQ")),
                    -32768, 32767).astype("<i2").tobytes()
    d, searches = entry
    if name in searches:
        searches.move_to_end(name)
    else:
        d.add_jsgf_string(name, jsgf)
        searches[name] = None
        if len(searches) > _MAX_SEARCHES:
            d.remove_search(searches.popitem(last=False)[0])
    lmath = d.get_logmath()

    d.activate_search(name)
    d.start_utt()
    d.process_raw(pcm16, full_utt=True)
    d.end_utt()
    hyp = d.hyp()
    if hyp is None or not hyp.hypstr:
        return "", 0.0, False
    text = str(hyp.hypstr)
    gsegs = [(s.word, s.start_frame, s.end_frame, lmath.log(s.ascore), lmath.log(s.lscore))
             for s in d.seg()]
    words = [g for g in gsegs if not g[0].startswith(_FILLERS)]
    if not words:
        return text, 0.0, False
    s0, e0 = words[0][1], words[-1][2]
    if _uncovered(x, s0 - _SLACK_FRAMES, e0 + _SLACK_FRAMES) > MAX_UNCOVERED:
        return text, 0.0, False  # speech outside the phrase: no need for the second pass
    # the grammar's segment scores are not shifted like its hypothesis score and the
    # phone loop's segment scores are (x1024 in pocketsphinx 5.1.1): calibrate on this
    # decode rather than trust the constant
    hyp_score = lmath.log(hyp.score)
    seg_total = sum(g[3] + g[4] for g in gsegs)
    scale = seg_total / hyp_score if hyp_score < 0 and seg_total < 0 else 1024.0

    d.activate_search(_PHONES)
    d.start_utt()
    d.process_raw(pcm16, full_utt=True)
    d.end_utt()
    loop_score = 0.0
    for s in d.seg():
        overlap = min(s.end_frame, e0) - max(s.start_frame, s0) + 1
        if overlap > 0:
            loop_score += lmath.log(s.ascore) * overlap / (s.end_frame - s.start_frame + 1)
    phrase_score = sum(w[3] for w in words) / scale
    margin = (phrase_score - loop_score) / (e0 - s0 + 1)
    confidence = min(1.0, max(0.0, 1.0 + margin / (-2.0 * MIN_SCORE)))  # 0.5 at MIN_SCORE
    return text, confidence, margin >= MIN_SCORE


# ---------------------------------------------------------------- worker processes
_worker_entry: tuple[Any, OrderedDict[str, None]] | None = None


def _worker_init() -> None:
    global _worker_entry
    _worker_entry = _new_decoder()


def _worker_decode(pcm: bytes, name: str, jsgf: str) -> tuple[str, float, bool]:
    global _worker_entry
    if _worker_entry is None:
        _worker_entry = _new_decoder()
    return _decode_with(_worker_entry, pcm, name, jsgf)


def _worker_ready() -> int:
    return os.getpid()


class SphinxRecognizer:
    """`SphinxRecognizer()`: US English, model from the pocketsphinx package.

    `processes` worker processes decode (default: one per CPU); 0 decodes in the
    calling thread (holds the GIL: for tools and tests, not for the server).
    Blocking: starts and warms the workers (~1 s)."""

    name = "pocketsphinx:en"

    def __init__(self, processes: int | None = None) -> None:
        self.processes = (os.cpu_count() or 1) if processes is None else processes
        self._lock = threading.Lock()
        self._grammars: dict[tuple[str, ...], tuple[str, str, dict[str, str]]] = {}
        self._warned: set[str] = set()
        self._local: list[tuple[Any, OrderedDict[str, None]]] = []  # idle decoders
        first = _new_decoder()  # fails here, at start-up, if the package is broken
        self._dict = first[0]
        self._procs: concurrent.futures.ProcessPoolExecutor | None = None
        if self.processes > 0:
            self._procs = self._start_workers()
            for f in [self._procs.submit(_worker_ready) for _ in range(self.processes)]:
                f.result()  # all started and loaded now, not at the first caller's word
        else:
            self._local.append(first)

    def _start_workers(self) -> concurrent.futures.ProcessPoolExecutor:
        # spawn, not fork: forking a process that runs threads can deadlock the child.
        # Like any spawn pool, the creating program's main module must be import-safe
        # (`if __name__ == "__main__":`); `python -m ccswitch` and the console script are.
        return concurrent.futures.ProcessPoolExecutor(
            self.processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init)

    def grammar(self, phrases: list[str]) -> tuple[str, str, dict[str, str]]:
        """(search name, JSGF, normalised phrase -> phrase) for a phrase list (cached).

        Phrases with a word missing from the dictionary are dropped with a warning."""
        key = tuple(phrases)
        with self._lock:
            cached = self._grammars.get(key)
            if cached is not None:
                return cached
            pmap: dict[str, str] = {}
            for norm, original in phrase_map(phrases).items():
                missing = [w for w in norm.split() if self._dict.lookup_word(w) is None]
                if missing:
                    if norm not in self._warned:
                        self._warned.add(norm)
                        log.warning("%s: phrase %r dropped from the grammar: %s not in the "
                                    "pronunciation dictionary", self.name, original,
                                    ", ".join(missing))
                    continue
                pmap[norm] = original
            jsgf = ""
            if pmap:
                jsgf = ("#JSGF V1.0;\ngrammar menu;\npublic <menu> = "
                        + " | ".join(pmap) + ";\n")
            name = "g" + hashlib.sha1(jsgf.encode()).hexdigest()[:16]
            if len(self._grammars) > 512:
                self._grammars.clear()
            self._grammars[key] = (name, jsgf, pmap)
            return name, jsgf, pmap

    def session(self, phrases: list[str],
                executor: concurrent.futures.Executor) -> SpeechSession:
        name, jsgf, pmap = self.grammar(phrases)
        return SpeechSession(lambda pcm: self.decode(pcm, name, jsgf, pmap), executor)

    def decode(self, pcm: bytes, name: str, jsgf: str, pmap: dict[str, str]) -> Decoded:
        """Blocking: one utterance (8 kHz PCM16) against a grammar from `grammar()`."""
        if not pmap or len(pcm) < 320:
            return "", None, 0.0
        procs = self._procs
        if procs is not None:
            try:
                text, conf, accepted = procs.submit(_worker_decode, pcm, name, jsgf).result()
            except concurrent.futures.process.BrokenProcessPool:
                # a worker died (killed, out of memory): new workers for the next calls
                with self._lock:
                    if self._procs is procs:
                        log.error("%s: a decoder process died; restarting them", self.name)
                        self._procs = self._start_workers()
                raise
        else:
            with self._lock:
                entry = self._local.pop() if self._local else None
            if entry is None:
                entry = _new_decoder()
            try:
                text, conf, accepted = _decode_with(entry, pcm, name, jsgf)
            finally:
                with self._lock:
                    self._local.append(entry)
        return text, (pmap.get(text) if accepted else None), conf

    def close(self) -> None:
        if self._procs is not None:
            self._procs.shutdown(wait=False, cancel_futures=True)
            self._procs = None
