"""Vosk engine with the Korean model from PyPI (the only Vosk model installable here)."""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path
from typing import Any

import pytest

from ccswitch.speech import create_recognizer
from ccswitch.speech.vosk_engine import load_vosk
from tests.unit.speech import synth
from tests.unit.speech.conftest import recognise_all

pytest.importorskip("vosk")
KO = synth.phrases(synth.KO_MENU)
VOICES = ("espeak:ko", "espeak:ko+f3")


def test_model_and_grammar(vosk_ko: Any) -> None:
    assert vosk_ko.name == "vosk:ko"
    assert not vosk_ko.has_unk  # this model has no [unk]: decoy syllables instead
    gjson, pmap = vosk_ko.grammar(KO)
    assert list(pmap) == KO
    assert "영업" in gjson and "[unk]" not in gjson
    words = __import__("json").loads(gjson)
    assert len(words) > len(KO) + 30
    assert "내" not in words  # sounds like 네 (merged vowels): not a decoy


async def test_korean_words(vosk_ko: Any, executor: concurrent.futures.Executor) -> None:
    # espeak-ng's Korean is poor: 지원 and others come out unlike the words (bench);
    # 영업, 네 and 아니요 are what it says clearly enough
    words = ["영업", "네", "아니요"]
    pcms = [synth.padded(synth.speak(w, v), seed=i)
            for i, (v, w) in enumerate((v, w) for v in VOICES for w in words)]
    results = await recognise_all(vosk_ko, KO, pcms, executor)
    got = [r.phrase if r else None for r in results]
    expected = words * len(VOICES)
    assert sum(g == w for g, w in zip(got, expected, strict=True)) >= 5, got
    assert all(g in (w, None) for g, w in zip(got, expected, strict=True)), got


async def test_korean_other_words_and_noise_are_no_match(
        vosk_ko: Any, executor: concurrent.futures.Executor) -> None:
    pcms = [synth.padded(synth.speak(w, v), seed=i)
            for i, (v, w) in enumerate((v, w) for v in VOICES for w in synth.KO_OOV)]
    pcms += [synth.silence(0.5) + synth.noise(2.0, -20), synth.silence(0.5) + synth.music(4.0)]
    results = await recognise_all(vosk_ko, KO, pcms, executor)
    accepted = [r.phrase for r in results if r is not None and r.phrase is not None]
    assert len(accepted) <= 1, accepted


def test_out_of_vocabulary_phrase_dropped(vosk_ko: Any,
                                          caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "ccswitch.speech"):
        gjson, pmap = vosk_ko.grammar(["영업", "sales"])
    assert list(pmap) == ["영업"] and '"sales"' not in gjson
    assert "sales" in caplog.text and "vocabulary" in caplog.text


def test_missing_model_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "models" / "vosk-model-small-en-us-0.15"
    with caplog.at_level(logging.WARNING, "ccswitch.speech"):
        assert load_vosk(str(path)) is None
        assert create_recognizer("vosk", str(path), "en") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    msg = warnings[0].getMessage()
    assert str(path) in msg and "alphacephei.com/vosk/models" in msg
    assert "vosk-model-small-en-us-0.15" in msg and "'en-us'" in msg


def test_factory() -> None:
    with pytest.raises(ValueError, match="unknown speech engine"):
        create_recognizer("whisper")
