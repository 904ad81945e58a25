"""Conference mixer (ccswitch/media/mixer.py): minus-one sums, mute/deaf, limiter, FIFOs."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from ccswitch.media import tones
from ccswitch.media.mixer import DEFAULT_LIMIT, Mixer, tone_join, tone_leave

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FB = 320  # bytes in a 20 ms frame at 8 kHz
FREQS = {"a": 500.0, "b": 900.0, "c": 1300.0}


def frames_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FB] for i in range(0, len(pcm) - FB + 1, FB)]


def arr(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def run(mixer: Mixer[str], streams: dict[str, list[bytes]], ticks: int) -> dict[str, bytes]:
    """Feed each member's frame i then mix, `ticks` times; concatenated output per member."""
    out: dict[str, bytearray] = {k: bytearray() for k in mixer}
    for i in range(ticks):
        for k, fr in streams.items():
            if i < len(fr):
                mixer.put(k, fr[i])
        for k, pcm in mixer.mix().items():
            out.setdefault(k, bytearray()).extend(pcm)
    return {k: bytes(v) for k, v in out.items()}


def three_party(dbfs: float = -10.0, ms: int = 400) -> tuple[Mixer[str], dict[str, list[bytes]]]:
    m: Mixer[str] = Mixer()
    streams = {}
    for k, f in FREQS.items():
        m.add(k)
        streams[k] = frames_of(tones.sine(f, ms, dbfs=dbfs))
    return m, streams


def heard(pcm: bytes, freq: float) -> float:
    return tones.tone_level(pcm, freq)


# ------------------------------------------------------------------ minus one


@pytest.mark.parametrize("numpy_from", [2, 100])  # numpy path and audioop path
def test_each_member_hears_the_other_two_and_not_itself(numpy_from: int) -> None:
    m, streams = three_party()
    m.numpy_from = numpy_from
    out = run(m, streams, 20)
    for me in FREQS:
        for other, f in FREQS.items():
            level = heard(out[me], f)
            if other == me:
                assert level < -80, (me, other, level)
            else:
                assert abs(level - -10.0) < 0.5, (me, other, level)
    # the recording mix has all three
    full = m.mix_all()
    for f in FREQS.values():
        assert abs(heard(full, f) - -10.0) < 1.0


@pytest.mark.parametrize("n", [2, 3, 5, 12, 50])
@pytest.mark.parametrize("numpy_from", [2, 6, 1000])
def test_minus_one_is_exact_for_any_room_size(n: int, numpy_from: int,
                                             rng: np.random.Generator) -> None:
    m: Mixer[int] = Mixer(numpy_from=numpy_from)
    for i in range(n):
        m.add(i)
    # quiet random signals: the sum never reaches the limit, so no gain is applied
    x = rng.integers(-400, 400, size=(n, 160), dtype=np.int16)
    x[x == 0] = 1
    for i in range(n):
        m.put(i, x[i].tobytes())
    out = m.mix()
    total = x.astype(np.int64).sum(axis=0)
    for i in range(n):
        assert np.array_equal(arr(out[i]), total - x[i]), i
    assert np.array_equal(arr(m.mix_all()), total)


def test_single_talker_is_passed_through_untouched_and_shared() -> None:
    m: Mixer[str] = Mixer()
    for k in "abcd":
        m.add(k)
    speech = tones.dual(350, 440, 20, dbfs=-12)
    m.put("a", speech)
    out = m.mix()
    assert out["a"] == m.silence
    assert out["b"] == speech
    # listeners who do not talk share one object: the engine can encode it once
    assert out["b"] is out["c"] is out["d"]


def test_two_loud_talkers_whose_sum_fits_are_mixed_exactly() -> None:
    """Peaks add up past the limit, the actual sum does not: no gain may be applied."""
    m: Mixer[str] = Mixer()
    for k in "abc":
        m.add(k)
    a = np.zeros(160, dtype="<i2")
    b = np.zeros(160, dtype="<i2")
    a[:80] = 20000
    b[80:] = -20000
    for _ in range(3):
        m.put("a", a.tobytes())
        m.put("b", b.tobytes())
        out = m.mix()
        assert out["a"] == b.tobytes() and out["b"] == a.tobytes()
        assert out["c"] == (a + b).tobytes() == m.mix_all()


# ------------------------------------------------------------------ mute / deaf


def test_muted_member_is_not_heard_but_still_hears_and_is_detected() -> None:
    m, streams = three_party()
    m.set_muted("b")
    assert m.is_muted("b")
    out = run(m, streams, 20)
    assert heard(out["a"], FREQS["b"]) < -80
    assert heard(out["c"], FREQS["b"]) < -80
    assert heard(out["a"], FREQS["c"]) > -11
    # b hears both others
    assert heard(out["b"], FREQS["a"]) > -11 and heard(out["b"], FREQS["c"]) > -11
    assert heard(m.mix_all(), FREQS["b"]) < -80
    # talking while muted is still shown (like "you are muted" hints)
    assert m.is_talking("b")
    m.set_muted("b", False)
    out = run(m, {k: v[:5] for k, v in streams.items()}, 5)
    assert heard(out["a"][-FB * 3 :], FREQS["b"]) > -11


def test_deaf_member_gets_silence_but_is_heard() -> None:
    m, streams = three_party()
    m.set_deaf("c")
    assert m.is_deaf("c")
    m.play(tone_join())  # not even announcements
    out = run(m, streams, 20)
    assert out["c"] == bytes(len(out["c"]))
    assert heard(out["a"], FREQS["c"]) > -11


# ------------------------------------------------------------------ limiter


def _flat_top_run(x: np.ndarray, near: float) -> int:
    """Longest run of equal consecutive samples whose magnitude is >= `near`."""
    best = run = 1
    for i in range(1, x.size):
        if x[i] == x[i - 1] and abs(int(x[i])) >= near:
            run += 1
            best = max(best, run)
        else:
            run = 1
    return best


def _residual_db(y: np.ndarray, freqs: list[float], rate: int = 8000) -> float:
    """Energy left after a least-squares fit of sines at `freqs`, relative to the signal."""
    t = np.arange(y.size) / rate
    basis = np.column_stack(
        [f(2 * np.pi * fr * t) for fr in freqs for f in (np.sin, np.cos)]
    )
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    res = y - basis @ coef
    return 10 * float(np.log10(np.sum(res**2) / np.sum(y.astype(np.float64) ** 2)))


def test_two_full_scale_tones_are_limited_not_clipped() -> None:
    m: Mixer[str] = Mixer()
    for k in "abc":
        m.add(k)
    sa = frames_of(tones.sine(500, 1000, dbfs=0.0))
    sb = frames_of(tones.sine(700, 1000, dbfs=0.0))
    out = run(m, {"a": sa, "b": sb}, 50)
    y = arr(out["c"])
    assert int(np.abs(y).max()) <= DEFAULT_LIMIT < 32767
    assert _flat_top_run(y, 0.8 * DEFAULT_LIMIT) == 1
    # both tones still there, about 6 dB down (the sum peaks near 2x full scale)
    for f in (500, 700):
        assert -9.0 < heard(out["c"][FB * 10 :], f) < -4.0
    # once the gain has settled the output is a clean scaled copy: no distortion products
    assert _residual_db(y[160 * 10 :], [500, 700]) < -50
    # the naive saturating sum, for contrast, is flat-topped and distorted: the checks bite
    naive = arr(b"".join(audioop.add(x, z, 2) for x, z in zip(sa, sb, strict=True)))
    assert _flat_top_run(naive, 0.8 * DEFAULT_LIMIT) > 1
    assert _residual_db(naive[160 * 10 :], [500, 700]) > -30
    # a and b hear one full-scale tone each: limited only by the ceiling
    assert int(np.abs(arr(out["a"])).max()) <= DEFAULT_LIMIT


def test_many_loud_members_never_exceed_the_limit(rng: np.random.Generator) -> None:
    m: Mixer[int] = Mixer()
    n = 20
    for i in range(n):
        m.add(i)
    for _ in range(30):
        for i in range(n):
            m.put(i, rng.integers(-32768, 32767, size=160, dtype=np.int16).tobytes())
        out = m.mix()
        for pcm in [*out.values(), m.mix_all()]:
            assert int(np.abs(arr(pcm)).max()) <= DEFAULT_LIMIT


def test_limiter_gain_recovers_smoothly_after_a_loud_burst() -> None:
    m: Mixer[str] = Mixer()
    for k in "abc":
        m.add(k)
    loud_a = frames_of(tones.sine(500, 200, dbfs=0.0))
    loud_b = frames_of(tones.sine(700, 200, dbfs=0.0))
    quiet = frames_of(tones.sine(500, 600, dbfs=-20.0))
    out = run(m, {"a": loud_a + quiet, "b": loud_b}, 40)
    y = arr(out["c"])
    ref = arr(b"".join(quiet)).astype(np.float64)
    after = y[160 * 10 :].astype(np.float64)  # the quiet part, as c hears it
    # gain per 2.5 ms block (peak ratio): starts reduced, rises monotonically to 1
    blocks = [
        np.abs(after[i : i + 20]).max() / max(np.abs(ref[i : i + 20]).max(), 1.0)
        for i in range(0, after.size, 20)
    ]
    assert blocks[0] < 0.6
    assert all(b2 >= b1 - 0.02 for b1, b2 in itertools.pairwise(blocks))
    # bounded release (~60 dB/s): no jump of more than ~1 dB from one block to the next
    assert max(b2 / b1 for b1, b2 in itertools.pairwise(blocks)) < 1.12
    assert blocks[-1] > 0.99  # back to unity within the 400 ms of quiet audio


# ------------------------------------------------------------------ silence, gaps, FIFO


def test_silent_and_absent_members() -> None:
    m: Mixer[str] = Mixer()
    for k in "abcd":
        m.add(k)
    tone = frames_of(tones.sine(500, 200))
    out = run(m, {"a": tone, "b": [bytes(FB)] * 10}, 10)  # c, d send nothing at all
    assert heard(out["b"], 500) > -11 and heard(out["c"], 500) > -11
    assert out["a"] == bytes(len(out["a"]))
    assert m.stats("c")["underruns"] == 10
    assert m.stats("a")["underruns"] == 0
    assert m.mix() == {k: m.silence for k in "abcd"}


def test_missing_frames_give_a_gap_and_playout_resumes_in_order() -> None:
    m: Mixer[str] = Mixer()
    m.add("a")
    m.add("b")
    fr = [np.full(160, 100 * (i + 1), dtype="<i2").tobytes() for i in range(6)]
    got = []
    for i in range(6):
        if i != 2:  # packet 2 lost
            m.put("a", fr[i])
        got.append(int(arr(m.mix()["b"])[0]))
    assert got == [100, 200, 0, 400, 500, 600]


def test_fifo_keeps_newest_three_frames_and_reports_drops() -> None:
    m: Mixer[str] = Mixer(max_jitter_frames=3)
    m.add("a")
    m.add("b")
    for i in range(5):  # a burst of five frames after a network stall
        m.put("a", np.full(160, 100 * (i + 1), dtype="<i2").tobytes())
    assert m.stats("a")["buffered_ms"] == 60
    assert m.stats("a")["dropped_ms"] == 40
    got = [int(arr(m.mix()["b"])[0]) for _ in range(4)]
    assert got == [300, 400, 500, 0]


def test_standing_latency_is_trimmed_after_a_second() -> None:
    m: Mixer[str] = Mixer(max_jitter_frames=3)
    m.add("a")
    m.add("b")
    frame = tones.sine(500, 20)
    m.put("a", frame)
    m.put("a", frame)
    for _ in range(60):  # three frames queued at every tick for more than a second
        m.put("a", frame)
        m.mix()
    assert m.stats("a")["trimmed_frames"] >= 1
    assert m.stats("a")["buffered_ms"] <= 40


def test_thirty_ms_packets_play_out_continuously() -> None:
    """A 30 ms ptime phone against the 20 ms tick: the FIFO re-frames it without gaps."""
    m: Mixer[str] = Mixer()
    m.add("a")
    m.add("b")
    src = np.arange(1, 240 * 20 + 1, dtype=np.int64) % 20000 + 1
    pkts = [src[i : i + 240].astype("<i2").tobytes() for i in range(0, src.size, 240)]
    heard_b = bytearray()
    t_pkt = 0
    for tick in range(30):
        now = tick * 20
        while t_pkt < len(pkts) and t_pkt * 30 <= now:
            m.put("a", pkts[t_pkt])
            t_pkt += 1
        heard_b += m.mix()["b"]
    y = arr(bytes(heard_b))
    start = int(np.flatnonzero(y)[0])
    body = y[start : start + 160 * 20]
    assert np.array_equal(body, src[: body.size])  # every sample, in order, no gap


def test_odd_length_input_does_not_shift_samples() -> None:
    m: Mixer[str] = Mixer()
    m.add("a")
    m.add("b")
    m.put("a", np.full(160, 1000, dtype="<i2").tobytes() + b"\x01")
    assert arr(m.mix()["b"]).tolist() == [1000] * 160


# ------------------------------------------------------------------ membership changes


def test_members_join_and_leave_mid_stream() -> None:
    m, streams = three_party(ms=1000)
    out = run(m, {k: v[:10] for k, v in streams.items()}, 10)
    m.add("d")
    m.remove("b")
    m.remove("b")  # twice: harmless
    m.put("b", streams["b"][10])  # a late packet from the departed member: ignored
    assert sorted(m) == ["a", "c", "d"] and len(m) == 3 and "b" not in m
    out = run(m, {k: streams[k][10:] for k in "ac"}, 10)
    assert set(out) == {"a", "c", "d"}
    assert heard(out["a"], FREQS["b"]) < -80
    assert heard(out["a"], FREQS["c"]) > -11
    assert heard(out["d"], FREQS["a"]) > -11 and heard(out["d"], FREQS["c"]) > -11
    with pytest.raises(ValueError):
        m.add("a")
    # the last member leaves: nothing to mix, nothing to send
    for k in list(m):
        m.remove(k)
    assert m.mix() == {}
    assert m.mix_all() == m.silence


# ------------------------------------------------------------------ talker detection, gate


def test_talker_events_with_attack_and_hangover() -> None:
    m: Mixer[str] = Mixer(talk_attack_frames=2, talk_hangover_frames=5)
    m.add("a")
    m.add("b")
    tone = tones.sine(500, 20, dbfs=-20)
    m.put("a", tone)
    m.mix()
    assert m.pop_events() == [] and not m.is_talking("a")  # one frame: a click, not speech
    m.put("a", tone)
    m.mix()
    assert m.pop_events() == [("a", True)] and m.talking == ["a"]
    assert -21 < m.level_dbfs("a") < -19
    for _ in range(4):
        m.mix()
    assert m.pop_events() == []
    m.mix()
    assert m.pop_events() == [("a", False)] and m.talking == []
    assert m.level_dbfs("a") == -100.0
    # leaving while talking ends the talk
    m.put("a", tone)
    m.mix()
    m.put("a", tone)
    m.mix()
    m.remove("a")
    assert m.pop_events() == [("a", True), ("a", False)]


def test_gate_keeps_background_noise_out_of_the_mix(rng: np.random.Generator) -> None:
    m: Mixer[int] = Mixer(gate=True)
    n = 10
    for i in range(n):
        m.add(i)
    speech = frames_of(tones.sine(500, 200, dbfs=-15))
    for t in range(10):
        m.put(0, speech[t])
        for i in range(1, n):  # -60 dBFS hiss from every open microphone
            m.put(i, rng.integers(-30, 30, size=160, dtype=np.int16).tobytes())
        out = m.mix()
        # listeners hear the talker alone, bit-exact; the talker hears nothing
        assert out[5] == speech[t]
        assert out[0] == m.silence
    # without the gate the hiss of nine members adds up in the talker's ear
    m2: Mixer[int] = Mixer()
    for i in range(n):
        m2.add(i)
        m2.put(i, speech[0] if i == 0 else rng.integers(-30, 30, 160, dtype=np.int16).tobytes())
    assert m2.mix()[0] != m2.silence


# ------------------------------------------------------------------ announcements, tones


def test_room_announcement_reaches_everyone_including_talkers() -> None:
    m, streams = three_party()
    chime = tone_join()
    m.play(chime)
    n = -(-len(chime) // FB)
    out = run(m, streams, n)
    padded = arr(chime + bytes(n * FB - len(chime)))
    for k in "abc":
        assert heard(out[k], 784.0) > -30, k
        # still minus one: exactly the two others plus the chime
        others = sum(arr(b"".join(streams[o][:n])) for o in "abc" if o != k)
        assert np.array_equal(arr(out[k]), others + padded), k
    out = run(m, {k: v[n:] for k, v in streams.items()}, 2)
    # finished: only the others again
    assert np.array_equal(arr(out["a"]), sum(arr(b"".join(streams[o][n : n + 2])) for o in "bc"))


def test_private_prompt_replaces_the_room_for_one_member() -> None:
    m, streams = three_party()
    prompt = tones.sine(2000, 60, dbfs=-10)
    m.play_to("a", prompt)
    m.play_to("zz", prompt)  # unknown member: ignored
    out = run(m, streams, 3)
    assert heard(out["a"], 2000) > -11 and heard(out["a"], FREQS["b"]) < -80
    assert heard(out["b"], 2000) < -80 and heard(out["b"], FREQS["a"]) > -11
    out = run(m, streams, 2)
    assert heard(out["a"], FREQS["b"]) > -11  # back in the room


def test_join_and_leave_chimes() -> None:
    j, lv = tone_join(), tone_leave()
    assert len(j) == len(lv) == 2 * 8000 * 280 // 1000
    assert j is tone_join()  # generated once
    yj = arr(j)
    assert int(np.abs(yj).max()) < DEFAULT_LIMIT
    assert abs(int(yj[0])) < 200 and abs(int(yj[-1])) < 200  # faded: no clicks
    half = len(j) // 2
    # rising for join, falling for leave
    assert tones.dominant_frequency(j[:half]) < tones.dominant_frequency(j[half:])
    assert tones.dominant_frequency(lv[:half]) > tones.dominant_frequency(lv[half:])
    assert len(tone_join(16000)) == 2 * len(j)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Mixer(frame_samples=0)
    with pytest.raises(ValueError):
        Mixer(limit=40000)
    with pytest.raises(ValueError):
        Mixer(max_jitter_frames=0)
    m: Mixer[str] = Mixer()
    with pytest.raises(KeyError):
        m.set_muted("nobody")


def test_wideband_frame_size() -> None:
    m: Mixer[str] = Mixer(frame_samples=320, rate=16000)
    m.add("a")
    m.add("b")
    m.add("c")
    a = tones.sine(3000, 20, rate=16000, dbfs=0.0)
    b = tones.sine(5000, 20, rate=16000, dbfs=0.0)
    for _ in range(5):
        m.put("a", a)
        m.put("b", b)
        out = m.mix()
    assert len(out["c"]) == 640
    assert int(np.abs(arr(out["c"])).max()) <= DEFAULT_LIMIT
