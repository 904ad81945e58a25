"""Energy VAD: onset within ~120 ms, end after 0.7 s of silence, immune to low music."""

from __future__ import annotations

import pytest

from ccswitch.speech.vad import FRAME_BYTES, EnergyVad, VadEvent, frame_dbfs
from tests.unit.speech import synth

pytestmark = pytest.mark.skipif(not synth.have_espeak(), reason="espeak-ng not installed")


def run(vad: EnergyVad, pcm: bytes) -> list[tuple[int, int]]:
    """(frame index, event) for every event."""
    return [(i, ev) for i, f in enumerate(synth.frames(pcm))
            if (ev := vad.process(f)) != VadEvent.NONE]


def first_loud_frame(pcm: bytes, above: float = -42.0) -> int:
    return next(i for i, f in enumerate(synth.frames(pcm)) if frame_dbfs(f) > above)


def test_word_starts_and_ends() -> None:
    word = synth.speak("representative", "espeak:en-us")
    pcm = synth.padded(word, lead=1.0, tail=1.5)
    vad = EnergyVad()
    events = run(vad, pcm)
    assert [e for _, e in events] == [VadEvent.START, VadEvent.END]
    onset = first_loud_frame(pcm)
    (start, _), (end, _) = events
    # speech_started ~100-150 ms after the onset
    assert 4 <= start - onset <= 8
    # ended 0.7 s after the last loud frame, not later
    last_loud = max(i for i, f in enumerate(synth.frames(pcm)) if frame_dbfs(f) > -50)
    assert 30 <= end - last_loud <= 40
    # the utterance holds the pre-roll, the word, and 0.3 s of tail, in whole frames
    assert len(vad.utterance) % FRAME_BYTES == 0
    assert len(word) < len(vad.utterance) < len(word) + 2 * 8000 * 1.0
    assert 0.6 * len(word) / 16000 < vad.speech_seconds <= len(word) / 16000


def test_low_music_and_steady_noise_do_not_trigger() -> None:
    vad = EnergyVad()
    assert run(vad, synth.music(8.0, dbfs=-45)) == []
    vad = EnergyVad()
    assert run(vad, synth.noise(5.0, dbfs=-35)) == []
    # speech over that noise bed still opens an utterance
    speech = synth.speak("billing", "espeak:en-us")
    bed = synth.noise(3.0, dbfs=-35, seed=3)
    import numpy as np

    mix = np.frombuffer(bed, dtype="<i2").astype(np.int32)
    s = np.frombuffer(speech, dtype="<i2").astype(np.int32)
    mix[8000: 8000 + len(s)] += s
    pcm = np.clip(mix, -32768, 32767).astype("<i2").tobytes()
    assert [e for _, e in run(vad, pcm)][:1] == [VadEvent.START]


def test_click_is_discarded_and_listening_continues() -> None:
    vad = EnergyVad()
    pcm = (synth.silence(0.5) + synth.noise(0.14, -15) + synth.silence(1.0)
           + synth.speak("yes", "espeak:en-us") + synth.silence(1.0))
    assert [e for _, e in run(vad, pcm)] == [VadEvent.START, VadEvent.DISCARD,
                                              VadEvent.START, VadEvent.END]


def test_max_utterance() -> None:
    vad = EnergyVad(max_utterance=3.0)
    words = b"".join(synth.speak(w, "espeak:en-us") for w in
                     ["one two three four five six seven eight nine ten"] * 2)
    events = run(vad, synth.silence(0.3) + words)
    assert events[0][1] == VadEvent.START
    assert events[1][1] == VadEvent.END
    assert events[1][0] - events[0][0] <= 3.0 / 0.02
    assert len(vad.utterance) <= 2 * 8000 * 3.0
