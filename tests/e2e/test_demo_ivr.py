"""The shipped demo IVR (flows/*.yaml, prompts by TTS) driven by a real phone.

Which prompt the caller heard is decided by correlating the received audio with
each candidate prompt as the server rendered it: the branch reached is told
apart by its own words, not by a status code.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest

from ccswitch.speech.tts import Tts
from tests.e2e.server import ROOT, CcswitchServer
from tests.peers import audio
from tests.peers.baresip import Baresip

PRICING = "Pricing. The standard plan costs twenty dollars per month."
NEW_ORDERS = ("New orders. A sales representative will call you back within one "
              "business day.")
INTERNET = "Internet support. Please restart your router, then wait two minutes."
PHONE = "Phone support. Please check that your phone is plugged in."


@pytest.fixture
def demo(tmp_path: Path) -> CcswitchServer:
    srv = CcswitchServer(tmp_path / "server", {
        "routes": [{"number": "200", "flow": "main"}],
        "schedules": {"office": {"timezone": "UTC", "hours": {"mon-sun": ["00:00-24:00"]}}},
        "flows": {"directory": "flows"}, "prompts": {"directory": "prompts"},
        "tts": {"cache": "tts"},
        "queues": {"support": {"number": "300", "members": [{"agent": "1002"}]}},
    })
    shutil.copytree(ROOT / "flows", srv.dir / "flows")
    shutil.copytree(ROOT / "prompts", srv.dir / "prompts")
    srv.start()
    yield srv  # type: ignore[misc]
    srv.stop()


def prompt_pcm(server: CcswitchServer, text: str) -> np.ndarray:
    path = Tts(server.dir / "tts", "en", 160).path_for(text)
    assert path.exists(), f"prompt not rendered: {text!r}"
    _rate, x = audio.load_mono(path)
    return x


def match(received: np.ndarray, prompt: np.ndarray) -> float:
    """Peak normalised cross-correlation of a prompt inside the received audio."""
    if len(received) < len(prompt):
        received = np.pad(received, (0, len(prompt) - len(received)))
    n = 1 << int(np.ceil(np.log2(len(received) + len(prompt))))
    c = np.fft.irfft(np.fft.rfft(received, n) * np.conj(np.fft.rfft(prompt, n)), n)
    # energy of the received audio under the sliding window (prefix sums: O(n))
    cs = np.concatenate(([0.0], np.cumsum(received ** 2)))
    starts = np.arange(len(received))
    ends = np.minimum(starts + len(prompt), len(received))
    e = np.sqrt(cs[ends] - cs[starts])
    score = np.abs(c[:len(received)]) / (np.sqrt(np.sum(prompt ** 2)) * (e + 1e-9))
    return float(np.max(score[e > 1e-3 * np.sqrt(np.sum(prompt ** 2))]))


async def navigate(server: CcswitchServer, tmp_path: Path, steps: list[tuple[float, str]]
                   ) -> np.ndarray:
    async with Baresip(user="1001", password="secret1001", domain=server.domain,
                       register=True, tmp_dir=tmp_path, name="caller") as ua:
        assert await ua.register()
        await ua.call("200", timeout=15)
        for delay, digits in steps:
            await asyncio.sleep(delay)
            if digits:
                await ua.send_dtmf(digits)
        await ua.hangup()
        wav = ua.received_wav()
    assert wav is not None
    _, x = audio.load_mono(wav)
    return x


async def test_demo_sales_pricing_branch(demo: CcswitchServer, tmp_path: Path) -> None:
    rx = await navigate(demo, tmp_path, [(3.0, "1"), (3.0, "2"), (6.0, "")])
    scores = {t: match(rx, prompt_pcm(demo, t)) for t in (PRICING, NEW_ORDERS, INTERNET, PHONE)}
    assert scores[PRICING] > 0.5, scores
    assert all(scores[t] < 0.3 for t in (NEW_ORDERS, INTERNET, PHONE)), scores


async def test_demo_support_internet_branch(demo: CcswitchServer, tmp_path: Path) -> None:
    rx = await navigate(demo, tmp_path, [(3.0, "2"), (3.0, "1"), (6.0, "")])
    scores = {t: match(rx, prompt_pcm(demo, t)) for t in (PRICING, NEW_ORDERS, INTERNET, PHONE)}
    assert scores[INTERNET] > 0.5, scores
    assert all(scores[t] < 0.3 for t in (PRICING, NEW_ORDERS, PHONE)), scores
