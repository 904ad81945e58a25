"""PocketSphinx engine: menu words from 8 kHz telephone audio, rejection of the rest.

The audio is deterministic (same synthesis, same noise seeds), so are the decodes; the
bars are set a little below what bench/speech_bench.py measures (flite: ~90% of menu
words, held-out words rejected 69/70)."""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import logging
from typing import Any

import pytest

from tests.unit.speech import synth
from tests.unit.speech.conftest import recognise, recognise_all

pytest.importorskip("pocketsphinx")
needs_flite = pytest.mark.skipif(not synth.have_flite(), reason="flite not installed "
                                 "(apt-get install flite)")
VOICES = ("flite:rms", "flite:awb", "flite:kal16")
TARGET = {p: key for key, ps in synth.MENU.items() for p in ps}


def audio(texts: list[str], voices: tuple[str, ...]) -> list[tuple[str, bytes]]:
    return [(t, synth.padded(synth.speak(t, v), seed=i))
            for i, (v, t) in enumerate((v, t) for v in voices for t in texts)]


@needs_flite
async def test_menu_words(sphinx: Any, executor: concurrent.futures.Executor) -> None:
    phrases = synth.phrases(synth.MENU)
    samples = audio(phrases, VOICES)
    results = await recognise_all(sphinx, phrases, [p for _, p in samples], executor)
    correct = sum(r is not None and r.phrase is not None and TARGET[r.phrase] == TARGET[t]
                  for (t, _), r in zip(samples, results, strict=True))
    wrong = sum(r is not None and r.phrase is not None and TARGET[r.phrase] != TARGET[t]
                for (t, _), r in zip(samples, results, strict=True))
    assert correct >= 0.8 * len(samples), (correct, len(samples))
    assert wrong <= 1
    ok = next(r for (t, _), r in zip(samples, results, strict=True)
              if r is not None and r.phrase == t)
    assert 0.5 <= ok.confidence <= 1.0 and ok.duration > 0.1 and ok.text == ok.phrase


@needs_flite
async def test_other_words_are_no_match(sphinx: Any,
                                        executor: concurrent.futures.Executor) -> None:
    phrases = synth.phrases(synth.MENU2)
    samples = audio(synth.OOV2, VOICES)
    results = await recognise_all(sphinx, phrases, [p for _, p in samples], executor)
    accepted = [(t, r.phrase) for (t, _), r in zip(samples, results, strict=True)
                if r is not None and r.phrase is not None]
    assert len(accepted) <= 1, accepted
    assert all(r is not None for r in results)  # each was heard, then rejected


async def test_sentences_containing_menu_like_words_are_no_match(
        sphinx: Any, executor: concurrent.futures.Executor) -> None:
    phrases = synth.phrases(synth.MENU)
    sentences = ["I want to cancel my subscription", "hello how are you",
                 "my password does not work", "thank you very much", "goodbye",
                 "I would like to speak to someone about my order"]
    voices = ("espeak:en-us",) + (VOICES[:2] if synth.have_flite() else ())
    samples = audio(sentences, voices)
    results = await recognise_all(sphinx, phrases, [p for _, p in samples], executor)
    assert [r.phrase for r in results if r is not None and r.phrase] == []


async def test_noise_tone_and_music_are_no_match(sphinx: Any,
                                                 executor: concurrent.futures.Executor
                                                 ) -> None:
    phrases = synth.phrases(synth.MENU)
    sounds = [synth.silence(0.5) + synth.noise(2.0, -20), synth.silence(0.5) + synth.music(4.0),
              synth.silence(0.5) + synth.tone(1.0, 440) + synth.silence(1.0),
              synth.silence(0.5) + synth.babble(3.0)]
    results = await recognise_all(sphinx, phrases, sounds, executor)
    assert all(r is None or r.phrase is None for r in results), results


async def test_espeak_voice(sphinx: Any, executor: concurrent.futures.Executor) -> None:
    # espeak-ng's robotic voice is recognised far worse than flite (bench: ~50% before
    # rejection); these words are among the ones it gets
    phrases = synth.phrases(synth.MENU)
    words = ["operator", "technical support", "billing", "repeat", "main menu"]
    results = await recognise_all(sphinx, phrases,
                                  [synth.padded(synth.speak(w, "espeak:en-us")) for w in words],
                                  executor)
    got = [r.phrase if r else None for r in results]
    assert sum(g == w for g, w in zip(got, words, strict=True)) >= 3, got


async def test_unknown_words_are_dropped_with_a_warning(
        sphinx: Any, executor: concurrent.futures.Executor,
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "ccswitch.speech"):
        _, _, pmap = sphinx.grammar(["Billing", "zorbleflux", "Operator"])
    assert list(pmap.values()) == ["Billing", "Operator"]
    assert "zorbleflux" in caplog.text and "dictionary" in caplog.text
    r = await recognise(sphinx, ["Billing", "zorbleflux", "Operator"],
                        synth.padded(synth.speak("operator", "espeak:en-us")), executor)
    assert r is not None and r.phrase == "Operator"  # the menu's spelling comes back


def test_in_process_decoding() -> None:
    from ccswitch.speech.sphinx_engine import SphinxRecognizer

    rec = SphinxRecognizer(processes=0)
    name, jsgf, pmap = rec.grammar(["billing", "operator"])
    text, phrase, conf = rec.decode(synth.padded(synth.speak("billing", "espeak:en-us")),
                                    name, jsgf, pmap)
    assert text == "billing" and phrase == "billing" and conf >= 0.5
    assert rec.decode(b"", name, jsgf, pmap) == ("", None, 0.0)


async def test_a_dead_worker_is_replaced(executor: concurrent.futures.Executor) -> None:
    import os
    import signal

    from ccswitch.speech.sphinx_engine import SphinxRecognizer

    rec = SphinxRecognizer(processes=1)
    try:
        procs = rec._procs
        assert procs is not None
        pid = next(iter(procs._processes))
        os.kill(pid, signal.SIGKILL)
        pcm = synth.padded(synth.speak("billing", "espeak:en-us"))
        with pytest.raises(concurrent.futures.process.BrokenProcessPool):
            await recognise(rec, ["billing", "operator"], pcm, executor)
        r = await recognise(rec, ["billing", "operator"], pcm, executor)
        assert r is not None and r.phrase == "billing"
    finally:
        rec.close()
