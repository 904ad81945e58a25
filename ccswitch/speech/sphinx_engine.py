"""PocketSphinx recognizer: the English engine that works out of the box.

Uses the US English acoustic model and dictionary shipped in the `pocketsphinx` pip
package, with a JSGF grammar of the menu's phrases. Pocketsphinx 5 fails at 8 kHz, so
the utterance is upsampled to 16 kHz with soxr (the empty 4-8 kHz band costs accuracy:
measured 92% on flite voices, ~50% on espeak-ng voices; see bench/speech_bench.py).

Grammar mode never rejects: any sound comes out as the closest phrase. Rejection here
(measured, then chosen) compares the grammar's alignment with a free phone loop
(allphone search, context-independent phones, uniform phone probabilities) over the
same audio, with every senone scored in both passes so their scores are comparable:
- acoustic fit: the phrase's acoustic score minus the phone loop's over the phrase's
  frames, per frame, must be >= `min_score` (a non-phrase word fits a phone sequence
  much better than any phrase);
- coverage: the phrase must cover the loud part of the utterance (a sentence that
  contains a phrase-like word, "goodbye" for "buy", leaves loud frames outside it:
  the grammar labels them silence).
Decoders are not thread-safe: a pool, one decoder per decode at a time.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import queue
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import soxr

from ccswitch.speech.base import Decoded, SpeechSession, phrase_map

__all__ = ["SphinxRecognizer"]

log = logging.getLogger("ccswitch.speech")

_PHONES = "_phones"
_FILLERS = ("<", "[")  # <s> </s> <sil> [NOISE] [SPEECH]
_MAX_SEARCHES = 64  # grammars kept per decoder


class SphinxRecognizer:
    """`SphinxRecognizer()`: US English, model from the pocketsphinx package."""

    name = "pocketsphinx:en"
    # rejection thresholds, chosen on flite/espeak-ng telephone audio (speech_bench.py)
    min_score = -30.0  # per-frame log-score margin to the phone loop (scaled units)
    max_uncovered = 2  # loud 10 ms frames outside the phrase (beyond 50 ms of slack)
    slack_frames = 5
    loud_range_db = 30.0

    def __init__(self) -> None:
        from pocketsphinx import Decoder

        self._Decoder: Any = Decoder
        self._pool: queue.SimpleQueue[tuple[Any, OrderedDict[str, None]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._grammars: dict[tuple[str, ...], tuple[str, str, dict[str, str]]] = {}
        self._warned: set[str] = set()
        first = self._new_decoder()  # fails here, at start-up, if the model is broken
        self._dict = first[0]
        self._pool.put(first)

    def _new_decoder(self) -> tuple[Any, OrderedDict[str, None]]:
        # compallsen: both passes normalise scores by the same best senone per frame
        d = self._Decoder(lm=None, loglevel="FATAL", compallsen=True)
        d.add_allphone_file(_PHONES, None)
        return d, OrderedDict()

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
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        pcm16 = np.clip(np.rint(soxr.resample(x, 8000, 16000, quality="HQ")),
                        -32768, 32767).astype("<i2").tobytes()
        try:
            entry = self._pool.get_nowait()
        except queue.Empty:
            entry = self._new_decoder()
        try:
            text, conf, accepted = self._decode_with(entry, pcm16, x, name, jsgf)
        finally:
            self._pool.put(entry)
        return text, (pmap.get(text) if accepted else None), conf

    def _decode_with(self, entry: tuple[Any, OrderedDict[str, None]], pcm16: bytes,
                     x: np.ndarray[Any, Any], name: str, jsgf: str) -> tuple[str, float, bool]:
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
        # the grammar's segment scores are not shifted like its hypothesis score and the
        # phone loop's segments (x1024 in pocketsphinx 5.1.1): calibrate on this decode
        hyp_score = lmath.log(hyp.score)
        seg_total = sum(g[3] + g[4] for g in gsegs)
        scale = seg_total / hyp_score if hyp_score < 0 and seg_total < 0 else 1024.0

        d.activate_search(_PHONES)
        d.start_utt()
        d.process_raw(pcm16, full_utt=True)
        d.end_utt()
        psegs = [(s.word, s.start_frame, s.end_frame, lmath.log(s.ascore)) for s in d.seg()]

        s0, e0 = words[0][1], words[-1][2]
        n = e0 - s0 + 1
        phrase_score = sum(w[3] for w in words) / scale
        loop_score = 0.0
        for _w, s, e, a in psegs:
            overlap = min(e, e0) - max(s, s0) + 1
            if overlap > 0:
                loop_score += a * overlap / (e - s + 1)
        margin = (phrase_score - loop_score) / n
        confidence = min(1.0, max(0.0, 1.0 + margin / (-2.0 * self.min_score)))
        uncovered = self._uncovered(x, s0 - self.slack_frames, e0 + self.slack_frames)
        accepted = margin >= self.min_score and uncovered <= self.max_uncovered
        return text, confidence, accepted

    def _uncovered(self, x: np.ndarray[Any, Any], start: int, end: int) -> int:
        """Loud 10 ms frames (8 kHz samples `x`) outside frames [start, end]."""
        n = len(x) // 80
        if n == 0:
            return 0
        frames = x[: n * 80].reshape(n, 80)
        db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1.0)
        threshold = max(float(db.max()) - self.loud_range_db,
                        float(np.percentile(db, 10)) + 10.0)
        loud = db > threshold
        loud[max(0, start): max(0, end + 1)] = False
        return int(loud.sum())
