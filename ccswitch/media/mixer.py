"""Conference mixing core (sans-IO): per-member jitter FIFOs, "minus one" mixing, limiter.

The engine calls `Mixer.mix()` once per 20 ms tick and sends each member the frame it gets
back; decoded audio arrives in between through `put()`.  Nothing here knows about sockets,
RTP or time: the tick *is* the clock.

Mixing: every unmuted member with audio in this tick is a *contributor*.  The room total T
is computed once; a contributor hears ``T - own`` and everybody else hears T itself (one
shared `bytes` object, so callers can encode it once per codec for all of them).  Members
who are silent, muted or have no frame this tick cost almost nothing, which is the common
case in big rooms where one or two people talk.

No hard clipping: sums are formed in 32 bits (numpy), or in 16 bits (audioop, C speed) only
when they provably cannot exceed the limit: the contributors' peaks add up to no more than
it, or, for two talkers, their one sum stays under it.  When an output would exceed
`limit`, a look-ahead-free peak limiter scales it: gains are computed per 2.5 ms sub-frame
(look-ahead within the frame), interpolated linearly per sample, drop as fast as needed and
recover at a bounded rate (`release_db_per_s`), so a loud multi-party sum is turned down
smoothly instead of being flat-topped.  The limiter state is kept per output stream.

Cost (`bench/conference_bench.py`, shared 2-core box, decode + put + mix + G.711 encode):
about 1-3 us per member stream per frame when two people talk and the others are gated
or silent, about 10 us when everyone talks and the limiter works on every frame.  The
numpy path has ~10 us of fixed cost per room and a fraction of a microsecond per extra
contributor, so it takes over from chains of audioop calls at `numpy_from` contributors.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Hashable, Iterator
from functools import lru_cache
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from ccswitch.media import tones

with warnings.catch_warnings():
    # audioop is deprecated since 3.11 and gone in 3.13 (then provided by `audioop-lts`).
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["DEFAULT_LIMIT", "Mixer", "tone_join", "tone_leave"]

K = TypeVar("K", bound=Hashable)

# -0.9 dBFS: below G.711's own ceiling (u-law 32124, A-law 32256), so the codec never clips
DEFAULT_LIMIT = 29490
_NO_ONE = 1 << 30  # "quiet for ever" for the gate counter


class _Member:
    __slots__ = (
        "ann",
        "contributing",
        "deaf",
        "dropped",
        "gain",
        "level",
        "loud_run",
        "muted",
        "part",
        "pkt",
        "primed",
        "q",
        "quiet_run",
        "talking",
        "trimmed",
        "underruns",
        "window_min",
    )

    def __init__(self) -> None:
        # the jitter FIFO: whole frames (frame-sized packets are queued as they come, no
        # copy) plus the leftover of packets that are not a whole number of frames
        self.q: deque[bytes] = deque()
        self.part = bytearray()
        self.pkt = 0  # bytes in the last put(): the member's packet size
        self.primed = False  # playing out (else waiting for the prefill)
        self.ann = bytearray()  # a private prompt that replaces the mix while it plays
        self.muted = False
        self.deaf = False
        self.gain = 1.0  # limiter gain of this member's own output ("all but me")
        self.contributing = False  # was in the sum last tick
        self.level = 0  # RMS of the last frame (0 when absent)
        self.loud_run = 0
        self.quiet_run = _NO_ONE
        self.talking = False
        self.window_min = _NO_ONE  # fewest frames left after a take in this window
        self.dropped = 0  # frames dropped because the FIFO overflowed or was trimmed
        self.trimmed = 0  # frames dropped to bring latency down
        self.underruns = 0  # ticks with no (complete) frame


@lru_cache(maxsize=8)
def _chime(notes: tuple[float, ...], note_ms: float, gap_ms: float, rate: int,
           dbfs: float) -> bytes:
    """Notes played one after another, each with 8 ms raised-cosine fades (no clicks)."""
    out = bytearray()
    fade = max(1, round(rate * 0.008))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, fade))
    for i, f in enumerate(notes):
        x = np.frombuffer(tones.sine(f, note_ms, rate, dbfs), dtype="<i2").astype(np.float64)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
        out += np.rint(x).astype("<i2").tobytes()
        if i < len(notes) - 1:
            out += tones.silence(gap_ms, rate)
    return bytes(out)


def tone_join(rate: int = 8000) -> bytes:
    """Rising two-note chime (G5 -> C6, 280 ms) played to a room when someone joins."""
    return _chime((784.0, 1046.5), 120.0, 40.0, rate, -16.0)


def tone_leave(rate: int = 8000) -> bytes:
    """Falling two-note chime (C6 -> G5) played when someone leaves."""
    return _chime((1046.5, 784.0), 120.0, 40.0, rate, -16.0)


class Mixer(Generic[K]):
    """One conference room's mixer.  Member ids are any hashable (channel ids...).

    Per tick: `put()` each member's decoded audio as it arrives, then `mix()` once.
    """

    def __init__(
        self,
        frame_samples: int = 160,
        *,
        rate: int = 8000,
        max_jitter_frames: int = 3,
        limit: int = DEFAULT_LIMIT,
        release_db_per_s: float = 60.0,
        talk_threshold: int = 300,
        talk_attack_frames: int = 2,
        talk_hangover_frames: int = 25,
        gate: bool = False,
        numpy_from: int = 8,
    ) -> None:
        """
        max_jitter_frames: FIFO bound per member; older audio beyond it is dropped.
        limit: peak ceiling of every output (PCM16 units).
        talk_threshold: RMS (PCM16 units; 300 is about -38 dBFS) above which a frame is
            "loud"; `talk_attack_frames` loud frames in a row start talking,
            `talk_hangover_frames` quiet ones stop it.
        gate: when True only members loud now or within the hangover are summed (keeps
            the background noise of 50 open microphones out of the mix, and is cheaper).
        numpy_from: contributors from which the numpy path beats chains of audioop calls.
        """
        if frame_samples <= 0:
            raise ValueError("frame_samples must be > 0")
        if not 1000 <= limit <= 32767:
            raise ValueError("limit must be in 1000..32767")
        if max_jitter_frames < 1:
            raise ValueError("max_jitter_frames must be >= 1")
        self.frame_samples = frame_samples
        self.frame_bytes = 2 * frame_samples
        self.rate = rate
        self.silence = bytes(self.frame_bytes)
        self.limit = limit
        self.talk_threshold = talk_threshold
        self.talk_attack = talk_attack_frames
        self.talk_hangover = talk_hangover_frames
        self.gate = gate
        self.numpy_from = max(2, numpy_from)
        self._max_frames = max_jitter_frames
        self._members: dict[K, _Member] = {}
        self._ann = bytearray()  # room-wide announcement queue (join/leave tones)
        self._events: list[tuple[K, bool]] = []
        self._total_gain = 1.0
        self._last_all = self.silence
        self._ticks = 0
        # limiter geometry: sub-frames of ~2.5 ms (the largest of 8/4/2/1 that divides)
        k = next(k for k in (8, 4, 2, 1) if frame_samples % k == 0)
        self._k = k
        sub_s = frame_samples / k / rate
        self._r = 10.0 ** (release_db_per_s * sub_s / 20.0)  # gain rise per sub-frame
        j = np.arange(k, dtype=np.float64)
        self._r_pow = self._r ** j  # r^k
        self._r_pow1 = self._r ** (j + 1.0)  # r^(k+1)
        self._rinv_pow = self._r ** -j  # r^-j
        self._ramp = (np.arange(1, frame_samples // k + 1, dtype=np.float64)
                      / (frame_samples // k))

    # ------------------------------------------------------------------ membership
    def add(self, member_id: K) -> None:
        if member_id in self._members:
            raise ValueError(f"{member_id!r} is already a member")
        self._members[member_id] = _Member()

    def remove(self, member_id: K) -> None:
        """Forget a member (no error if unknown: leaving may race with other clean-up)."""
        m = self._members.pop(member_id, None)
        if m is not None and m.talking:
            self._events.append((member_id, False))

    def __contains__(self, member_id: object) -> bool:
        return member_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[K]:
        return iter(self._members)

    def set_muted(self, member_id: K, muted: bool = True) -> None:
        self._members[member_id].muted = muted

    def set_deaf(self, member_id: K, deaf: bool = True) -> None:
        self._members[member_id].deaf = deaf

    def is_muted(self, member_id: K) -> bool:
        return self._members[member_id].muted

    def is_deaf(self, member_id: K) -> bool:
        return self._members[member_id].deaf

    # ------------------------------------------------------------------ input
    def put(self, member_id: K, pcm: bytes) -> None:
        """Queue decoded PCM16 from a member (any length; 20 ms per call is typical).

        Unknown members are ignored: packets may still arrive just after a member left.
        """
        m = self._members.get(member_id)
        if m is None:
            return
        fb = self.frame_bytes
        q = m.q
        n = len(pcm)
        if n == fb and not m.part:
            q.append(pcm if type(pcm) is bytes else bytes(pcm))
        else:
            part = m.part
            part += pcm
            if n & 1:  # an odd byte would shift every later sample: drop it
                del part[-1]
            while len(part) >= fb:
                q.append(bytes(part[:fb]))
                del part[:fb]
        p = m.pkt = n & ~1
        cap = self._max_frames
        if p > fb:
            cap = max(cap, -(-(2 * p + fb) // fb))  # room for the prefill (see mix) + a packet
        while len(q) > cap:
            # the member sends faster than we mix (clock drift, a burst after a stall):
            # keep the newest audio, bounding latency
            q.popleft()
            m.dropped += 1

    def play(self, pcm: bytes) -> None:
        """Mix `pcm` into what every (non-deaf) member hears, e.g. `tone_join()`."""
        self._ann += pcm[: len(pcm) & ~1]

    def play_to(self, member_id: K, pcm: bytes) -> None:
        """Play `pcm` to one member only, instead of the room, while it lasts."""
        m = self._members.get(member_id)
        if m is not None:
            m.ann += pcm[: len(pcm) & ~1]

    # ------------------------------------------------------------------ talker detection
    @property
    def talking(self) -> list[K]:
        return [k for k, m in self._members.items() if m.talking]

    def is_talking(self, member_id: K) -> bool:
        return self._members[member_id].talking

    def level_dbfs(self, member_id: K) -> float:
        """RMS level of the member's last frame in dBFS (sine-peak scale; -100 if silent)."""
        rms = self._members[member_id].level
        return 20.0 * math.log10(rms * math.sqrt(2.0) / 32767.0) if rms > 0 else -100.0

    def pop_events(self) -> list[tuple[K, bool]]:
        """Talk start (True) / stop (False) transitions since the last call."""
        ev, self._events = self._events, []
        return ev

    def stats(self, member_id: K) -> dict[str, int]:
        m = self._members[member_id]
        return {
            "buffered_ms": (len(m.q) * self.frame_bytes + len(m.part)) * 500 // self.rate,
            "dropped_ms": m.dropped * self.frame_bytes * 500 // self.rate,
            "trimmed_frames": m.trimmed,
            "underruns": m.underruns,
        }

    # ------------------------------------------------------------------ mixing
    def mix_all(self) -> bytes:
        """The full mix of the last `mix()` (everyone unmuted, limited): for recording."""
        return self._last_all

    def mix(self) -> dict[K, bytes]:
        """Advance one frame: consume one frame per member, return what each one hears."""
        fb = self.frame_bytes
        silence = self.silence
        self._ticks += 1
        window_end = self._ticks % 50 == 0  # once a second: see whether latency can shrink
        thr = self.talk_threshold
        gate = self.gate
        hang = self.talk_hangover
        rms = audioop.rms

        contrib: list[_Member] = []
        frames: list[bytes] = []
        ids: list[K] = []
        limiting = self._total_gain < 1.0
        total_gain = self._total_gain
        for mid, m in self._members.items():
            q = m.q
            if not m.primed:
                # (re)start playout once a frame is buffered, or, for packets longer than a
                # frame (30 ms ptime against the 20 ms tick), a packet and a frame: less would
                # run dry between two packets every time
                p = m.pkt
                m.primed = len(q) * fb + len(m.part) >= (fb if p <= fb else p + fb)
            frame: bytes | None
            if m.primed and q:
                frame = q.popleft()
                if len(q) < m.window_min:
                    m.window_min = len(q)
                level = rms(frame, 2)
            else:
                frame = None
                level = 0
                m.primed = False
                m.underruns += 1
                m.window_min = 0
            if window_end:
                # two spare frames for a whole second is latency nobody needs
                if m.window_min >= 2:
                    q.popleft()
                    m.trimmed += 1
                    m.dropped += 1
                m.window_min = _NO_ONE
            # talker detection
            m.level = level
            if level >= thr:
                m.loud_run += 1
                m.quiet_run = 0
                if not m.talking and m.loud_run >= self.talk_attack:
                    m.talking = True
                    self._events.append((mid, True))
            else:
                m.loud_run = 0
                if m.quiet_run < _NO_ONE:
                    m.quiet_run += 1
                if m.talking and m.quiet_run >= hang:
                    m.talking = False
                    self._events.append((mid, False))
            if frame is None or level == 0 or m.muted or (gate and m.quiet_run >= hang):
                # absent, (near) digital silence: RMS under one step adds nothing, muted or
                # gated out
                m.contributing = False
                continue
            if not m.contributing:
                # it heard the room total until now: continue from that gain
                m.gain = total_gain
                m.contributing = True
            if m.gain < 1.0:
                limiting = True
            contrib.append(m)
            frames.append(frame)
            ids.append(mid)

        extra: bytes | None = None
        if self._ann:
            extra = bytes(self._ann[:fb])
            del self._ann[:fb]
            if len(extra) < fb:
                extra += silence[len(extra):]

        n = len(frames)
        own: list[bytes]
        if n == 0 and extra is None:
            total = silence
            own = []
            self._total_gain = 1.0
        else:
            res = None
            if not limiting and n < self.numpy_from:
                res = self._mix_audioop(frames, extra)
            if res is None:
                res = self._mix_numpy(frames, extra, contrib, limiting)
            total, own = res
        self._last_all = total

        out: dict[K, bytes] = {}
        for mid, m in self._members.items():
            if m.deaf:
                out[mid] = silence
            elif m.ann:
                a = bytes(m.ann[:fb])
                del m.ann[:fb]
                out[mid] = a if len(a) == fb else a + silence[len(a):]
            else:
                out[mid] = total
        for mid, o in zip(ids, own, strict=True):
            if out[mid] is total:  # not deaf, no private prompt
                out[mid] = o
        return out

    def _mix_audioop(self, frames: list[bytes],
                     extra: bytes | None) -> tuple[bytes, list[bytes]] | None:
        """16-bit sums when they are provably exact and under the limit, else None.

        Exact when the contributors' peaks add up to no more than the limit: no partial sum
        can then exceed it.  Two talkers (the usual overlap) get a finer test: each hears
        the other unchanged, and only the total is checked after one add.
        """
        peak = audioop.max
        add = audioop.add
        limit = self.limit
        n = len(frames)
        bound = 0 if extra is None else peak(extra, 2)
        top = 0
        for f in frames:
            p = peak(f, 2)
            bound += p
            if p > top:
                top = p
        if bound > limit:
            if n == 2 and extra is None and top <= limit:
                total = add(frames[0], frames[1], 2)
                if peak(total, 2) <= limit:  # limit < 32767: nothing saturated either
                    self._total_gain = 1.0
                    return total, [frames[1], frames[0]]
            return None
        self._total_gain = 1.0
        if extra is None:
            if n == 1:
                return frames[0], [self.silence]
            if n == 2:
                return add(frames[0], frames[1], 2), [frames[1], frames[0]]
            total = frames[0]
            for f in frames[1:]:
                total = add(total, f, 2)
        else:
            total = extra
            for f in frames:
                total = add(total, f, 2)
        mul = audioop.mul
        return total, [add(total, mul(f, 2, -1.0), 2) for f in frames]

    def _mix_numpy(self, frames: list[bytes], extra: bytes | None, contrib: list[_Member],
                   limiting: bool) -> tuple[bytes, list[bytes]]:
        """32-bit sums for every row at once; the limiter only when a row needs it."""
        n = len(frames)
        fs = self.frame_samples
        a = np.frombuffer(b"".join(frames), dtype="<i2").reshape(n, fs)
        s = np.empty((n + 1, fs), dtype=np.int32)
        total = s[n]
        if n:
            a.sum(axis=0, dtype=np.int32, out=total)
        else:
            total[:] = 0
        if extra is not None:
            total += np.frombuffer(extra, dtype="<i2")
        np.subtract(total, a, out=s[:n])
        hi = int(s.max())
        lo = int(s.min())
        if not limiting and hi <= self.limit and -lo <= self.limit:
            self._total_gain = 1.0
            b = s.astype("<i2").tobytes()
        else:
            g0 = np.empty(n + 1, dtype=np.float64)
            g0[:n] = [m.gain for m in contrib]
            g0[n] = self._total_gain
            y, g1 = self._limit(s, g0)
            for m, g in zip(contrib, g1[:n].tolist(), strict=True):
                m.gain = g
            self._total_gain = float(g1[n])
            b = y.tobytes()
        fb = self.frame_bytes
        return b[n * fb:], [b[i * fb:(i + 1) * fb] for i in range(n)]

    def _limit(self, s: npt.NDArray[np.int32],
               g0: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int16],
                                                    npt.NDArray[np.float64]]:
        """Scale each row so |sample| <= limit; gains change smoothly.  Returns (PCM, gains).

        Per sub-frame k: target gt[k] = min(1, limit / peak[k]).  The gain at the end of
        sub-frame k is e[k] = min(gt[k], gt[k+1], e[k-1] * r) (look-ahead inside the frame,
        bounded release), the gain at its start is e[k-1]; the per-sample gain ramps
        linearly between the two.  Both ends are <= gt[k], so no sample can exceed the
        limit; only the first sub-frame can step down (no look-ahead across frames).
        """
        rows = s.shape[0]
        sub = np.abs(s).reshape(rows, self._k, -1).max(axis=2)
        gt = self.limit / np.maximum(sub, self.limit)  # min(1, limit / peak), as float
        h = gt.copy()
        np.minimum(gt[:, :-1], gt[:, 1:], out=h[:, :-1])
        # knots[:, k + 1] = e[k] = min over j <= k of h[j] r^(k-j) (<= h[k] <= 1), and
        # <= g0 r^(k+1); knots[:, 0] = the gain the frame starts with
        knots = np.empty((rows, self._k + 1))
        e = knots[:, 1:]
        np.minimum.accumulate(h * self._rinv_pow, axis=1, out=e)
        e *= self._r_pow
        np.minimum(e, g0[:, None] * self._r_pow1, out=e)
        np.minimum(g0, gt[:, 0], out=knots[:, 0])
        start = knots[:, :-1, None]
        g = start + (e[:, :, None] - start) * self._ramp
        # |s * g| <= limit by construction: rounding cannot leave int16
        y = np.rint(s * g.reshape(rows, -1))
        return y.astype("<i2"), knots[:, -1].copy()
