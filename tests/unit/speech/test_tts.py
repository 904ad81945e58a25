"""Text to speech (ccswitch.speech.tts): 8 kHz output, disk cache, one render per text."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from ccswitch.speech import tts as tts_mod
from ccswitch.speech.tts import Tts, TtsError, tts_available

pytestmark = pytest.mark.skipif(not tts_available(), reason="no espeak-ng")


@pytest.fixture
async def tts(tmp_path: Path) -> AsyncIterator[Tts]:
    t = Tts(tmp_path / "cache", "en", 160)
    yield t
    t.close()


def read(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        x = np.frombuffer(w.readframes(params.nframes), dtype="<i2")
    return params, x


async def test_output_is_8khz_mono_16bit(tts: Tts) -> None:
    path = await tts.render("Press one for sales, two for support.")
    params, x = read(path)
    assert (params.framerate, params.nchannels, params.sampwidth) == (8000, 1, 2)
    assert 1.0 < len(x) / 8000 < 6.0
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) > 500  # speech, not silence
    assert path.parent.parent == tts.cache_dir


async def test_second_render_is_a_cache_hit(tts: Tts, tmp_path: Path) -> None:
    p1 = await tts.render("Welcome to the demo.")
    assert tts.renders == 1
    p2 = await tts.render("Welcome to the demo.")
    assert p2 == p1 and tts.renders == 1
    assert await tts.render("Welcome to the demo.", voice="en-us") != p1
    assert tts.renders == 2
    # the cache is on disk: a restarted server does not render again
    again = Tts(tmp_path / "cache", "en", 160)
    try:
        assert await again.render("Welcome to the demo.") == p1
        assert again.renders == 0
    finally:
        again.close()


async def test_concurrent_requests_render_once_per_text(tts: Tts) -> None:
    texts = ["Sales.", "Support.", "Billing."]
    paths = await asyncio.gather(*(tts.render(texts[i % 3]) for i in range(10)))
    assert tts.renders == 3
    assert len(set(paths)) == 3
    assert all(paths[i] == paths[i % 3] for i in range(10))
    for p in set(paths):
        assert read(p)[0].nframes > 0


async def test_espeak_fallback_without_pyttsx3(tmp_path: Path) -> None:
    t = Tts(tmp_path, use_pyttsx3=False)
    params, x = read(await t.render("Goodbye."))
    assert params.framerate == 8000 and len(x) > 1000


async def test_no_engine_is_a_clear_error(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(tts_mod.ctypes.util, "find_library", lambda name: None)
    assert not tts_available()
    t = Tts(tmp_path)
    assert not t.available
    with pytest.raises(TtsError, match="espeak-ng"):
        await t.render("Hello.")
    assert not any(tmp_path.rglob("*.wav"))  # nothing half-written is cached
