"""SpeechSession: cheap feed on the loop, decode in the executor, one result, close."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

from ccswitch.speech.base import Decoded, SpeechSession, normalize, phrase_map
from tests.unit.speech import synth

WORD = synth.silence(0.4) + synth.tone(0.6, 300, -20) + synth.silence(1.0)


def test_normalize_and_phrase_map() -> None:
    assert normalize("  Technical   Support! ") == "technical support"
    assert normalize("Don't") == "don't"
    assert normalize("기술  지원.") == "기술 지원"
    assert phrase_map(["Sales", "sales", "Main menu", " "]) == {"sales": "Sales",
                                                                 "main menu": "Main menu"}


async def test_decodes_once_in_the_executor(executor: concurrent.futures.Executor) -> None:
    calls: list[tuple[int, int]] = []
    loop_thread = threading.get_ident()

    def decode(pcm: bytes) -> Decoded:
        calls.append((threading.get_ident(), len(pcm)))
        return "sales", "sales", 0.9

    s = SpeechSession(decode, executor)
    # odd chunk sizes: feed re-frames into 20 ms frames
    for i in range(0, len(WORD), 100):
        s.feed(WORD[i:i + 100])
    res = await asyncio.wait_for(s.result(), 5)
    assert s.speech_started.is_set()
    assert res.phrase == "sales" and res.text == "sales" and res.confidence == 0.9
    assert 0.5 <= res.duration <= 0.7
    assert len(calls) == 1 and calls[0][0] != loop_thread
    s.feed(WORD)  # one utterance per session
    await asyncio.sleep(0.05)
    assert len(calls) == 1
    s.close()


async def test_no_speech_never_completes(executor: concurrent.futures.Executor) -> None:
    s = SpeechSession(lambda pcm: ("", None, 0.0), executor)
    for f in synth.frames(synth.silence(3.0)):
        s.feed(f)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(s.result(), 0.3)
    assert not s.speech_started.is_set()
    s.close()


async def test_close_cancels_a_waiting_result(executor: concurrent.futures.Executor) -> None:
    s = SpeechSession(lambda pcm: ("", None, 0.0), executor)
    waiter = asyncio.ensure_future(s.result())
    await asyncio.sleep(0)
    s.close()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    s.feed(WORD)  # no-op after close


async def test_decoder_error_reaches_the_caller(executor: concurrent.futures.Executor) -> None:
    def decode(pcm: bytes) -> Decoded:
        raise RuntimeError("decoder broke")

    s = SpeechSession(decode, executor)
    for f in synth.frames(WORD):
        s.feed(f)
    with pytest.raises(RuntimeError, match="decoder broke"):
        await asyncio.wait_for(s.result(), 5)
