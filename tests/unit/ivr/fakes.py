"""Test doubles for the IVR interpreter: a virtual-time event loop, a channel with a fake
media endpoint, scripted callers, and fake dial / queue / TTS / speech services.

Time is virtual: `run_virtual` runs a coroutine on an event loop whose clock jumps
straight to the next timer whenever nothing is ready, so a 5 s menu timeout costs no
real time and every run is deterministic.  Work that asyncio would hand to a thread
(`asyncio.to_thread`, prompt decoding) runs inline, so no real I/O can race the clock.
The runner's own `time.monotonic` (the instant-step guard, record deadlines) is pointed
at the same virtual clock while a test runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import selectors
import wave
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from unittest import mock

from ccswitch.apps.ivr import runner as runner_mod
from ccswitch.apps.ivr.flow import Context, FlowSet, Node, load_flows
from ccswitch.apps.ivr.runner import DialOutcome, FlowRunner, IvrServices
from ccswitch.call.channel import Channel, ChannelManager, ChannelState
from ccswitch.call.events import EventBus
from ccswitch.config import ScheduleConfig
from ccswitch.media import tones
from ccswitch.media.player import PromptCache
from ccswitch.speech.base import SpeechResult

T = TypeVar("T")

# ---------------------------------------------------------------- virtual time


class _VirtualSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    loop: VirtualClockLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready  # type: ignore[no-any-return]
        if timeout is None:
            # nothing scheduled at all: only real I/O could wake us, which these tests
            # never wait for, so this is a deadlock in the code under test
            ready = super().select(2.0)
            if not ready:
                raise RuntimeError("virtual clock: nothing scheduled and nothing ready")
            return ready  # type: ignore[no-any-return]
        self.loop.advance(timeout)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self, start: float = 1000.0) -> None:
        sel = _VirtualSelector()
        sel.loop = self
        self._now = start
        super().__init__(sel)

    def time(self) -> float:
        return self._now

    def advance(self, dt: float) -> None:
        self._now += max(dt, 0.0)


class InlineExecutor(concurrent.futures.ThreadPoolExecutor):
    """Runs submitted work at once on the calling thread (no race with virtual time)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as e:  # handed to the awaiting coroutine
            fut.set_exception(e)
        return fut


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualClockLoop()
    loop.set_default_executor(InlineExecutor())
    clock = SimpleNamespace(monotonic=loop.time)
    try:
        with mock.patch.object(runner_mod, "time", clock):
            return loop.run_until_complete(coro)
    finally:
        pending = asyncio.all_tasks(loop)
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# ---------------------------------------------------------------- audio files


def write_wav(path: Path, pcm: bytes, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


TONE = tones.sine(700, 20, dbfs=-12)  # one 20 ms frame of "voice"
SILENCE = bytes(320)  # one 20 ms frame of silence


# ---------------------------------------------------------------- channel and media


@dataclass
class PlayRecord:
    labels: list[str]
    start: float
    barge_in: bool
    end: float = 0.0
    result: str | None = "?"


class FakeMedia:
    """What the runner and Channel.play use of a media endpoint: a playback source that
    finishes after its duration (virtual time), audio taps and the in-band detector slot."""

    def __init__(self) -> None:
        self.taps: list[Callable[[bytes], None]] = []
        self.inband: Any = None
        self.source: Any = None
        self.on_source_done: Callable[[], None] | None = None
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None

    def set_source(self, source: Any, on_done: Callable[[], None] | None = None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.source = source
        self.on_source_done = on_done
        if source is not None:
            secs = source.player.duration_ms / 1000
            self._timer = asyncio.get_running_loop().call_later(secs, self._finished)

    def _finished(self) -> None:
        self._timer = None
        cb = self.on_source_done
        self.source = None
        self.on_source_done = None
        if cb is not None:
            cb()

    def feed(self, pcm: bytes) -> None:
        for tap in list(self.taps):
            tap(pcm)

    def send_dtmf(self, digit: str) -> None:
        pass

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()


class FakeChannel(Channel):
    """A real Channel (digits, barge-in and playback logic are the production code) whose
    signalling and media are fakes."""

    tech = "FAKE"

    def __init__(self, *, caller: str = "1001", dest: str = "200", media: bool = True,
                 labeler: Callable[[bytes], str] | None = None) -> None:
        super().__init__(ChannelManager(EventBus(), None),  # type: ignore[arg-type]
                         endpoint_name="t", direction="inbound", caller=caller,
                         caller_name="Alice", dest=dest)
        self.state = ChannelState.RING
        self.media = FakeMedia() if media else None  # type: ignore[assignment]
        self.plays: list[PlayRecord] = []
        self.answer_count = 0
        self.hangups: list[str] = []
        self._labeler = labeler or (lambda pcm: f"<{len(pcm)} bytes>")
        self.t0 = asyncio.get_running_loop().time()

    def now(self) -> float:
        """Seconds since the channel was created."""
        return round(asyncio.get_running_loop().time() - self.t0, 6)

    async def answer(self) -> None:
        self.answer_count += 1
        self._set_up()

    def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        self.hangups.append(cause)
        self._set_gone(cause)

    async def play(self, pcm: bytes | list[bytes], *, barge_in: bool = True,
                   stop: asyncio.Event | None = None, loop: bool = False) -> str | None:
        clips = [pcm] if isinstance(pcm, bytes) else list(pcm)
        rec = PlayRecord([self._labeler(c) for c in clips], self.now(), barge_in)
        self.plays.append(rec)
        try:
            rec.result = await super().play(pcm, barge_in=barge_in, stop=stop, loop=loop)
        finally:
            rec.end = self.now()
        return rec.result

    # ---- scripting the caller
    def press(self, at: float, keys: str, gap: float = 0.1) -> None:
        """Send `keys` (RFC 4733) starting `at` seconds after the channel was created."""
        loop = asyncio.get_running_loop()
        for i, k in enumerate(keys):
            loop.call_at(self.t0 + at + i * gap, self._on_dtmf, k, "rfc4733")

    def hang_up_at(self, at: float) -> None:
        asyncio.get_running_loop().call_at(self.t0 + at, self._set_gone, "CALLER_HANGUP")

    def stream(self, at: float, frames: Iterable[bytes]) -> None:
        """Feed received audio frames to the taps, one every 20 ms from `at`."""
        loop = asyncio.get_running_loop()
        for i, f in enumerate(frames):
            loop.call_at(self.t0 + at + i * 0.02, self._feed, f)

    def _feed(self, pcm: bytes) -> None:
        if self.media is not None and not self.is_gone:
            self.media.feed(pcm)  # type: ignore[attr-defined]

    @property
    def played(self) -> list[str]:
        """Labels of every clip of every playback, in order."""
        return [label for p in self.plays for label in p.labels]


# ---------------------------------------------------------------- services


class FakeTts:
    """Renders each text to a WAV of silence whose length is unique to the text."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.texts: list[str] = []  # every render call, in order
        self.paths: dict[str, Path] = {}

    async def render(self, text: str, voice: str | None = None) -> Path:
        self.texts.append(text)
        p = self.paths.get(text)
        if p is None:
            n = len(self.paths)
            # 0.5 s + 10 ms per distinct text: distinct PCM for each text
            p = write_wav(self.dir / f"tts{n}.wav", bytes(2 * (4000 + 80 * n)))
            self.paths[text] = p
        return p


@dataclass
class Utterance:
    """What a fake recognizer session hears: speech starts `start` s after the session
    opens and the result arrives `end` s after; `phrase` None means not a menu word."""

    start: float
    end: float
    text: str
    phrase: str | None
    confidence: float = 0.9


class FakeSession:
    def __init__(self, phrases: list[str], utt: Utterance | None) -> None:
        self.phrases = phrases
        self.speech_started = asyncio.Event()
        self.fed = 0
        self.closed = False
        loop = asyncio.get_running_loop()
        self._result: asyncio.Future[SpeechResult] = loop.create_future()
        if utt is not None:
            loop.call_later(utt.start, self.speech_started.set)
            loop.call_later(utt.end, self._done, utt)

    def _done(self, utt: Utterance) -> None:
        if not self._result.done():
            self._result.set_result(SpeechResult(utt.text, utt.phrase, utt.confidence,
                                                 utt.end - utt.start))

    def feed(self, pcm: bytes) -> None:
        self.fed += len(pcm)

    async def result(self) -> SpeechResult:
        return await asyncio.shield(self._result)

    def close(self) -> None:
        self.closed = True
        if not self._result.done():
            self._result.cancel()


class FakeRecognizer:
    """Each session hears the next scripted utterance (None: the caller says nothing)."""

    def __init__(self, *script: Utterance | None, name: str = "fake:en") -> None:
        self.name = name
        self.script = list(script)
        self.sessions: list[FakeSession] = []

    def session(self, phrases: list[str], executor: Any) -> FakeSession:
        utt = self.script.pop(0) if self.script else None
        s = FakeSession(phrases, utt)
        self.sessions.append(s)
        return s


class FakeDial:
    def __init__(self, status: str = "ANSWER", delay: float = 1.0) -> None:
        self.status = status
        self.delay = delay
        self.calls: list[tuple[list[str], float]] = []

    async def __call__(self, chan: Channel, targets: list[str], timeout: float) -> DialOutcome:
        self.calls.append((targets, timeout))
        await asyncio.sleep(self.delay)
        return DialOutcome(self.status)


class FakeQueue:
    def __init__(self, outcome: str = "next") -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(self, chan: Channel, node: Node, env: dict[str, Any]) -> str:
        self.calls.append((str(node.get("queue")), env))
        await asyncio.sleep(1.0)
        return self.outcome


PROMPT_TONES = {  # prompt name -> (Hz, ms): distinct PCM for each, so plays can be told apart
    "greet": (400, 2000), "short": (450, 1000), "invalid": (500, 800), "timeout": (550, 800),
    "sales": (600, 1000), "support": (650, 1000), "bye": (700, 500), "hello": (750, 500),
    "en-hello": (800, 500), "fr-hello": (850, 500), "v1": (900, 500), "v2": (950, 500),
    "record_now": (1000, 500), "collect": (1050, 1500),
}


@dataclass
class Env:
    """Everything a FlowRunner needs, in a temporary directory."""

    root: Path
    prompts: Path
    flows_dir: Path
    recordings: Path
    cache: PromptCache
    tts: FakeTts
    dial: FakeDial
    queue: FakeQueue
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)
    recognizers: dict[str, Any] = field(default_factory=dict)
    now: datetime = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)  # a Monday
    paths: list[list[dict[str, Any]]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    executor: Any = None

    def context(self, **kw: Any) -> Context:
        kw.setdefault("schedules", set(self.schedules))
        kw.setdefault("queues", {"support"})
        return Context(prompts_dir=self.prompts, **kw)

    def flowset(self, flows: dict[str, str], version: int = 1, **ctx: Any) -> FlowSet:
        d = self.flows_dir / f"v{version}"
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in flows.items():
            p = d / f"{name}.yaml"
            p.write_text(text)
            paths.append(p)
        return load_flows(paths, self.context(**ctx), version)

    def services(self) -> IvrServices:
        def on_path(chan: Channel, path: list[dict[str, Any]]) -> None:
            self.paths.append([dict(e) for e in path])

        def publish(event: str, **fields: Any) -> None:
            self.events.append({"event": event, **fields})

        return IvrServices(
            prompts_dir=self.prompts, prompt_cache=self.cache, schedules=self.schedules,
            recordings_dir=self.recordings, dial=self.dial, tts=self.tts,
            recognizers=self.recognizers, executor=self.executor, publish=publish,
            on_path=on_path, queue=self.queue, now=lambda: self.now,
        )

    def label(self, pcm: bytes) -> str:
        for name in PROMPT_TONES:
            if pcm == self.cache.get(self.prompts / f"{name}.wav"):
                return name
        for text, p in (self.tts.paths if self.tts is not None else {}).items():
            if pcm == self.cache.get(p):
                return f"say:{text}"
        if pcm == runner_mod.BEEP:
            return "beep"
        return f"<{len(pcm)} bytes>"

    def channel(self, **kw: Any) -> FakeChannel:
        return FakeChannel(labeler=self.label, **kw)


def make_env(root: Path) -> Env:
    prompts = root / "prompts"
    for name, (hz, ms) in PROMPT_TONES.items():
        write_wav(prompts / f"{name}.wav", tones.sine(hz, ms, dbfs=-12))
    env = Env(root=root, prompts=prompts, flows_dir=root / "flows",
              recordings=root / "recordings", cache=PromptCache(), tts=FakeTts(root / "tts"),
              dial=FakeDial(), queue=FakeQueue())
    env.tts.dir.mkdir()
    return env


@dataclass
class CallResult:
    runner: FlowRunner
    chan: FakeChannel
    duration: float


def call(env: Env, flows: FlowSet, flow: str = "t", *,
         script: Callable[[FakeChannel], None] | None = None,
         during: Callable[[FakeChannel, FlowRunner], Coroutine[Any, Any, None]] | None = None,
         variables: dict[str, Any] | None = None, **chan_kw: Any) -> CallResult:
    """Run one call through `flow` in virtual time; `script` schedules the caller's input."""

    async def main() -> CallResult:
        chan = env.channel(**chan_kw)
        if script is not None:
            script(chan)
        f = flows.get(flow)
        assert f is not None, flow
        runner = FlowRunner(env.services(), chan, flows, f, variables)
        side = asyncio.ensure_future(during(chan, runner)) if during is not None else None
        await asyncio.wait_for(runner.run(), 3600)
        if side is not None:
            await side
        return CallResult(runner, chan, chan.now())

    return run_virtual(main())
