"""The flow interpreter: runs a validated Flow on one channel.

Each node type is a coroutine returning the event it ended with ("next",
"timeout", "no_match"...) or a `Jump` to a named node; the transition table of
the node maps the event to the next node.  An event with no transition ends
the call (a flow that does not say what to do next hangs up, like Asterisk
falling off the end of a context).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ccswitch.apps.ivr.expr import Expression, lookup, render
from ccswitch.apps.ivr.flow import Flow, FlowSet, Node, find_prompt
from ccswitch.apps.ivr.schedule import schedule_state
from ccswitch.call.channel import Channel, ChannelGone
from ccswitch.config import ScheduleConfig
from ccswitch.media import tones
from ccswitch.media.dtmf import GoertzelDetector
from ccswitch.media.player import PromptCache
from ccswitch.media.wav import CrashSafeWav

log = logging.getLogger("ccswitch.ivr")

IVR_NODE = "IVR_NODE"
MAX_INSTANT_STEPS = 200  # belt and braces against loops the validator could not see

BEEP = tones.sine(1000, 200, dbfs=-12)


@dataclass
class Jump:
    target: str


@dataclass
class DialOutcome:
    status: str  # ANSWER, BUSY, NOANSWER, CHANUNAVAIL, CANCEL, FAILED


@dataclass
class IvrServices:
    prompts_dir: Path
    prompt_cache: PromptCache
    schedules: dict[str, ScheduleConfig]
    recordings_dir: Path
    dial: Callable[[Channel, list[str], float], Awaitable[DialOutcome]]
    tts: Any = None  # ccswitch.speech.tts.Tts | None
    recognizers: dict[str, Any] = field(default_factory=dict)  # language -> Recognizer
    default_language: str = "en"
    executor: Executor | None = None
    publish: Callable[..., None] = lambda *a, **k: None
    on_path: Callable[[Channel, list[dict[str, Any]]], None] = lambda c, p: None
    queue: Callable[[Channel, Node, dict[str, Any]], Awaitable[str]] | None = None
    now: Callable[[], datetime] = lambda: datetime.now(UTC)


class FlowRunner:
    def __init__(self, services: IvrServices, chan: Channel, flows: FlowSet, flow: Flow,
                 variables: dict[str, Any] | None = None) -> None:
        self.s = services
        self.chan = chan
        self.flows = flows  # the version this call started with
        self.flow = flow
        self.vars: dict[str, Any] = dict(flow.variables)
        if variables:
            self.vars.update(variables)
        self.stack: list[tuple[Flow, str]] = []
        self.path: list[dict[str, Any]] = []
        self.node: Node | None = None

    # ---------------------------------------------------------------- helpers
    def env(self) -> dict[str, Any]:
        now = self.s.now().astimezone()
        c = self.chan
        env: dict[str, Any] = {
            "caller": c.caller, "caller_name": c.caller_name, "dest": c.dest,
            "channel": c.name, "call_id": c.linkedid,
            "hour": now.hour, "minute": now.minute, "weekday": now.strftime("%a").lower(),
            "date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H:%M"),
        }
        env.update(self.vars)
        env["vars"] = self.vars
        return env

    def _record(self, **entry: Any) -> None:
        self.path.append(entry)
        self.s.on_path(self.chan, self.path)

    async def prompt_audio(self, spec: Any) -> list[bytes]:
        """A prompt spec (name, {play}, {say}, list) as PCM clips."""
        if spec is None:
            return []
        if isinstance(spec, list):
            out: list[bytes] = []
            for item in spec:
                out.extend(await self.prompt_audio(item))
            return out
        env = self.env()
        if isinstance(spec, dict) and "say" in spec:
            return [await self._tts(render(str(spec["say"]), env), spec.get("voice"))]
        name = render(str(spec["play"] if isinstance(spec, dict) else spec), env)
        if ".." in Path(name).parts or name.startswith("/"):
            # the validator refuses such names but cannot see what a template renders to
            # (variables can come from an http reply)
            log.warning("%s: prompt '%s' is outside the prompts directory", self.chan.name,
                        name)
            return []
        path = find_prompt(self.s.prompts_dir, name)
        if path is None:
            log.warning("%s: prompt '%s' not found", self.chan.name, name)
            return []
        return [await asyncio.to_thread(self.s.prompt_cache.get, path)]

    async def _tts(self, text: str, voice: str | None = None) -> bytes:
        if self.s.tts is None:
            log.warning("%s: no text-to-speech engine; skipping %r", self.chan.name, text[:40])
            return b""
        path = await self.s.tts.render(text, voice)
        pcm: bytes = await asyncio.to_thread(self.s.prompt_cache.get, path)
        return pcm

    async def ensure_up(self) -> None:
        """Media nodes answer the call first (like Asterisk's Playback)."""
        if not self.chan.is_up:
            await self.chan.answer()

    async def play(self, spec: Any, barge_in: bool = True,
                   stop: asyncio.Event | None = None) -> str | None:
        await self.ensure_up()
        clips = await self.prompt_audio(spec)
        if not clips:
            return None
        return await self.chan.play(clips, barge_in=barge_in, stop=stop)

    # ---------------------------------------------------------------- main loop
    async def run(self) -> None:
        chan = self.chan
        chan.app = "IVR"
        if chan.media is not None and chan.media.inband is None:
            # in-band DTMF for phones that send tones in the audio (dropped as soon as
            # the phone sends RFC 4733 events)
            chan.media.inband = GoertzelDetector()
        node_name: str | None = self.flow.start
        instant = 0
        try:
            while node_name is not None:
                node = self.flow.nodes[node_name]
                self.node = node
                chan.app_data = f"{self.flow.name}:{node.name}"
                self.s.publish(IVR_NODE, channel=chan.id, name=chan.name,
                               linkedid=chan.linkedid, flow=self.flow.name, node=node.name,
                               type=node.type)
                handler = HANDLERS[node.type]
                flow_name = self.flow.name  # subflow/transfer/return switch self.flow
                t0 = time.monotonic()
                result = await handler(self, node)
                if isinstance(result, Jump):
                    self._record(flow=flow_name, node=node.name, event="choice",
                                 next=result.target, **self._last_input)
                    node_name = result.target
                else:
                    node_name = self._transition(node, result)
                self._last_input = {}
                if time.monotonic() - t0 < 0.001:
                    instant += 1
                    if instant > MAX_INSTANT_STEPS:
                        log.error("%s: flow %s loops without waiting; hanging up",
                                  chan.name, self.flow.name)
                        break
                else:
                    instant = 0
        except ChannelGone:
            pass
        finally:
            if not chan.is_gone:
                chan.hangup("NORMAL_CLEARING")

    _last_input: dict[str, Any] = {}  # noqa: RUF012 - per-instance after the first write

    def _transition(self, node: Node, event: str | None) -> str | None:
        if event is None:
            return None
        target = node.edges.get(event)
        if target is None and event not in ("next",) and "failed" in node.edges and \
                event not in node.edges:
            target = node.edges["failed"] if event == "failed" else None
        self._record(flow=self.flow.name, node=node.name, event=event, next=target,
                     **self._last_input)
        if target is None and event == "__return__":
            return None
        return target

    # ---------------------------------------------------------------- flow switching
    def enter(self, flow: Flow) -> str:
        self.flow = flow
        for k, v in flow.variables.items():
            self.vars.setdefault(k, v)
        return flow.start


# ---------------------------------------------------------------- node handlers

Handler = Callable[[FlowRunner, Node], Awaitable["str | Jump | None"]]


async def n_answer(r: FlowRunner, node: Node) -> str:
    await r.chan.answer()
    return "next"


async def n_play(r: FlowRunner, node: Node) -> str:
    await r.play(node.get("prompt"), barge_in=node.get("barge_in", True))
    return "next"


async def n_say(r: FlowRunner, node: Node) -> str:
    await r.play({"say": node.get("text"), "voice": node.get("voice")},
                 barge_in=node.get("barge_in", True))
    return "next"


async def n_set(r: FlowRunner, node: Node) -> str:
    env = r.env()
    for k, v in (node.get("variables") or {}).items():
        r.vars[str(k)] = render(v, env) if isinstance(v, str) else v
    return "next"


async def n_goto(r: FlowRunner, node: Node) -> str:
    return "next"


async def n_branch(r: FlowRunner, node: Node) -> str | Jump:
    env = r.env()
    conds: list[tuple[Expression, str]] = node.get("conditions") or []
    for expr, target in conds:
        if expr(env):
            return Jump(target)
    return "else"


async def n_schedule(r: FlowRunner, node: Node) -> str:
    cfg = r.s.schedules.get(node.get("schedule"))
    if cfg is None:
        return "failed"
    state = schedule_state(cfg, r.s.now())
    if state == "holiday" and "holiday" not in node.edges:
        return "closed"
    return state


async def n_hangup(r: FlowRunner, node: Node) -> None:
    r.chan.hangup(str(node.get("cause") or "NORMAL_CLEARING"))
    return None


async def n_subflow(r: FlowRunner, node: Node) -> str | Jump:
    name = render(str(node.get("flow")), r.env())
    flow = r.flows.get(name)
    if flow is None:
        log.error("%s: subflow '%s' not found", r.chan.name, name)
        return "failed"
    r.stack.append((r.flow, node.edges["next"]))
    return Jump(_enter_marker(r, flow))


async def n_return(r: FlowRunner, node: Node) -> Jump | None:
    if not r.stack:
        return None
    flow, target = r.stack.pop()
    r.flow = flow
    return Jump(target)


async def n_transfer(r: FlowRunner, node: Node) -> Jump | str:
    name = render(str(node.get("flow")), r.env())
    flow = r.flows.get(name)
    if flow is None:
        log.error("%s: transfer to unknown flow '%s'", r.chan.name, name)
        return "failed"
    r.stack.clear()
    return Jump(_enter_marker(r, flow))


def _enter_marker(r: FlowRunner, flow: Flow) -> str:
    return r.enter(flow)


async def n_dial(r: FlowRunner, node: Node) -> str:
    env = r.env()
    targets = [render(x, env) for x in node.get("extension") or []]
    timeout = float(node.get("timeout", 30.0))
    res = await r.s.dial(r.chan, targets, timeout)
    return {"ANSWER": "next", "BUSY": "busy", "NOANSWER": "no_answer"}.get(res.status, "failed")


async def n_queue(r: FlowRunner, node: Node) -> str:
    if r.s.queue is None:
        return "failed"
    return await r.s.queue(r.chan, node, r.env())


# ---------------------------------------------------------------- input nodes


async def _listen(
    r: FlowRunner, prompt: list[bytes], *, max_digits: int, terminators: str,
    timeout: float, inter: float, phrases: list[str], language: str | None,
) -> tuple[str, str]:
    """Play `prompt` and wait for input: ("digits", "12"), ("speech", phrase or ""),
    or ("timeout", "")."""
    chan = r.chan
    await r.ensure_up()
    session = None
    rec = r.s.recognizers.get(language or r.s.default_language) if phrases else None
    if rec is not None and chan.media is not None and r.s.executor is not None:
        session = rec.session(phrases, r.s.executor)
        chan.media.taps.append(session.feed)
    try:
        stop = session.speech_started if session is not None else None
        if prompt:
            await chan.play(prompt, barge_in=True, stop=stop)
        digits_t = asyncio.ensure_future(chan.get_digits(
            max_digits, terminators=terminators, first_timeout=timeout, inter_timeout=inter))
        waits: list[asyncio.Future[Any]] = [digits_t]
        speech_t: asyncio.Future[Any] | None = None
        if session is not None:
            speech_t = asyncio.ensure_future(session.result())
            waits.append(speech_t)
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if speech_t is not None and speech_t in done:
                res = speech_t.result()
                log.info("%s: heard %r (%.2f) -> %s", chan.name, res.text, res.confidence,
                         res.phrase or "no match")
                return "speech", res.phrase or ""
            digits, _why = digits_t.result()
            if digits:
                return "digits", digits
            if speech_t is not None and session is not None and session.speech_started.is_set():
                # the caller is still talking: give the recogniser time to finish
                try:
                    res = await asyncio.wait_for(asyncio.shield(speech_t), 8.0)
                    log.info("%s: heard %r (%.2f) -> %s", chan.name, res.text,
                             res.confidence, res.phrase or "no match")
                    return "speech", res.phrase or ""
                except TimeoutError:
                    pass
            return "timeout", ""
        finally:
            for t in waits:
                t.cancel()
    finally:
        if session is not None:
            if chan.media is not None and session.feed in chan.media.taps:
                chan.media.taps.remove(session.feed)
            session.close()


async def n_menu(r: FlowRunner, node: Node) -> str | Jump:
    options: dict[str, str] = node.get("options") or {}
    patterns: list[tuple[str, str]] = node.get("match") or []
    keywords: dict[str, list[str]] = node.get("keywords") or {}
    by_phrase = {w: target for target, words in keywords.items() for w in words}
    max_digits = int(node.get("max_digits") or max([len(k) for k in options] or [1]))
    if patterns and not node.get("max_digits"):
        max_digits = 20
    terminator = str(node.get("terminator", "#"))
    timeout = float(node.get("timeout", 5.0))
    inter = float(node.get("inter_digit_timeout", 2.0))
    retries = int(node.get("retries", 2))
    attempt = 0
    greeting = await r.prompt_audio(node.get("greeting"))
    short = await r.prompt_audio(node.get("short_greeting")) or greeting
    while True:
        kind, value = await _listen(
            r, greeting if attempt == 0 else short, max_digits=max_digits,
            terminators=terminator, timeout=timeout, inter=inter,
            phrases=list(by_phrase), language=node.get("language") or r.flow.language)
        r._last_input = {"input": kind, "value": value}
        target: str | None = None
        if kind == "digits":
            target = options.get(value)
            if target is None:
                for pat, tgt in patterns:
                    if re.fullmatch(pat, value):
                        target = tgt
                        break
        elif kind == "speech" and value:
            target = by_phrase.get(value)
        if target is not None:
            if node.get("variable"):
                r.vars[str(node.get("variable"))] = value
            return Jump(target)
        event = "timeout" if kind == "timeout" else "no_match"
        if event in node.edges:
            return event
        attempt += 1
        if attempt > retries:
            return "max_retries"
        r.chan.flush_dtmf()
        await r.play(node.get("timeout_prompt" if event == "timeout" else "invalid"))


async def n_collect(r: FlowRunner, node: Node) -> str:
    min_d = int(node.get("min_digits", 1))
    max_d = int(node.get("max_digits", 20))
    terminator = str(node.get("terminator", "#"))
    timeout = float(node.get("timeout", 5.0))
    inter = float(node.get("inter_digit_timeout", 3.0))
    validate = node.get("validate")
    retries = int(node.get("retries", 0))
    attempt = 0
    await r.ensure_up()
    while True:
        prompt = await r.prompt_audio(node.get("prompt"))
        if prompt:
            await r.chan.play(prompt, barge_in=True)
        digits, why = await r.chan.get_digits(max_d, terminators=terminator,
                                              first_timeout=timeout, inter_timeout=inter)
        r._last_input = {"input": "digits", "value": digits}
        if not digits and why == "timeout":
            event = "timeout"
        elif len(digits) < min_d or (validate and not re.fullmatch(str(validate), digits)):
            event = "no_match"
        else:
            r.vars[str(node.get("variable"))] = digits
            return "next"
        if event in node.edges and (retries == 0 or attempt >= retries):
            return event
        attempt += 1
        if attempt > retries:
            return "max_retries" if "max_retries" in node.edges else event
        r.chan.flush_dtmf()
        await r.play(node.get("invalid"))


async def n_record(r: FlowRunner, node: Node) -> str:
    chan = r.chan
    env = r.env()
    await r.ensure_up()
    if node.get("prompt") is not None:
        await r.play(node.get("prompt"))
    if node.get("beep", True):
        await chan.play(BEEP, barge_in=False)
    chan.flush_dtmf()
    name = render(str(node.get("file") or "messages/{{date}}/{{call_id}}-" + node.name), env)
    name = re.sub(r"[^A-Za-z0-9_\-./]", "_", name).lstrip("/")
    if ".." in Path(name).parts:
        return "failed"
    if chan.media is None:  # before the file is created: no empty file, no leaked fd
        return "failed"
    path = r.s.recordings_dir / (name if name.endswith(".wav") else name + ".wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    max_s = float(node.get("max_seconds", 60.0))
    silence_s = float(node.get("silence_seconds", 3.0))
    terminators = str(node.get("terminators", "#"))
    wav = CrashSafeWav(path, 1)
    heard = [0.0, 0.0]  # seconds of audio, seconds of trailing silence
    ended = asyncio.Event()

    def tap(pcm: bytes) -> None:
        wav.append(pcm)
        heard[0] += len(pcm) / 16000
        if tones.level_dbfs(pcm) < -45.0:
            heard[1] += len(pcm) / 16000
            if heard[1] >= silence_s and heard[0] > heard[1]:
                ended.set()
        else:
            heard[1] = 0.0

    chan.media.taps.append(tap)
    try:
        deadline = time.monotonic() + max_s
        while not ended.is_set() and time.monotonic() < deadline:
            waiter: asyncio.Future[Any] = asyncio.ensure_future(chan.dtmf_event.wait())
            ender: asyncio.Future[Any] = asyncio.ensure_future(ended.wait())
            try:
                await asyncio.wait([waiter, ender, chan.hungup],
                                   timeout=deadline - time.monotonic(),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                ender.cancel()
            if chan.is_gone:
                break
            d = chan._take_digit()
            if d is not None and d in terminators:
                break
    finally:
        if tap in chan.media.taps:
            chan.media.taps.remove(tap)
        wav.close()
    if node.get("variable"):
        r.vars[str(node.get("variable"))] = str(path)
    r._last_input = {"input": "recording", "value": str(path)}
    return "next"


async def n_http(r: FlowRunner, node: Node) -> str:
    import aiohttp

    env = r.env()
    url = render(str(node.get("url")), env)
    method = str(node.get("method", "GET")).upper()
    timeout = float(node.get("timeout", 5.0))
    body = node.get("body")
    payload = _render_obj(body, env) if body is not None else None
    headers = {str(k): render(str(v), env) for k, v in (node.get("headers") or {}).items()}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s,
            s.request(method, url, json=payload, headers=headers) as resp,
        ):
            status = resp.status
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        log.info("%s: http %s %s failed: %s", r.chan.name, method, url, e)
        r._last_input = {"input": "http", "value": f"error: {type(e).__name__}"}
        return "failed"
    if node.get("status_variable"):
        r.vars[str(node.get("status_variable"))] = status
    r._last_input = {"input": "http", "value": status}
    if not 200 <= status < 300:
        return "failed"
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        data = {"text": text}
    for var, path in (node.get("variables") or {}).items():
        r.vars[str(var)] = lookup({"json": data}, str(path)) if str(path).startswith(
            "json") else lookup(data if isinstance(data, dict) else {}, str(path))
    return "next"


def _render_obj(obj: Any, env: dict[str, Any]) -> Any:
    if isinstance(obj, str):
        return render(obj, env)
    if isinstance(obj, dict):
        return {str(k): _render_obj(v, env) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_render_obj(v, env) for v in obj]
    return obj


HANDLERS: dict[str, Handler] = {
    "answer": n_answer,
    "play": n_play,
    "say": n_say,
    "menu": n_menu,
    "collect": n_collect,
    "set": n_set,
    "branch": n_branch,
    "schedule": n_schedule,
    "goto": n_goto,
    "subflow": n_subflow,
    "return": n_return,
    "dial": n_dial,
    "transfer": n_transfer,
    "record": n_record,
    "http": n_http,
    "hangup": n_hangup,
    "queue": n_queue,
}
