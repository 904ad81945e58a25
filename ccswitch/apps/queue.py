"""Queues and agents: the ACD core (ccswitch.apps.acd) wired to channels.

The core decides (who rings for whom, states, statistics); this module does:
ring agents' phones for offers, bridge the caller to the agent who answers,
music on hold and position / wait-time announcements for waiting callers,
"press 1 to be called back", feature codes and the queue log.

Every ACD operation is followed by `_kick()`: dispatch new offers, publish
events, store records, re-arm the one timer the core needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccswitch.apps.acd.core import Acd
from ccswitch.apps.acd.model import (
    QUEUE_CALLER_LEAVE,
    QUEUE_OFFER_CANCEL,
    AcdError,
    Member,
    Offer,
    QueueSpec,
)
from ccswitch.call import events as ev
from ccswitch.call.channel import Bridge, Channel, ChannelGone
from ccswitch.config import Config, QueueConfig
from ccswitch.storage.queue_log import QueueLogStore

if TYPE_CHECKING:
    from ccswitch.call.sipua import SipChannel, SipUA
    from ccswitch.media.moh import MusicOnHold

log = logging.getLogger("ccswitch.queue")

Speak = Callable[[Channel, str], Awaitable[None]]


def _consume_gone(t: asyncio.Future[None]) -> None:
    """Done callback of an announcement task nobody awaits: a hang-up (ChannelGone) is
    expected there; anything else is logged rather than left unretrieved."""
    if t.cancelled():
        return
    e = t.exception()
    if e is not None and not isinstance(e, ChannelGone):
        log.error("queue announcement failed: %r", e)


@dataclass
class Waiter:
    """A caller on the line, waiting in a queue."""

    chan: Channel
    queue: str
    joined: float
    result: asyncio.Future[Any]  # the agent's channel, or an outcome string
    callback_offered: bool = False


@dataclass
class Ring:
    """One agent being rung for one caller."""

    caller: str
    agent: str
    legs: list[SipChannel] = field(default_factory=list)
    cancelled: bool = False
    task: asyncio.Task[Any] | None = None


class QueueService:
    def __init__(self, ua: SipUA, moh: MusicOnHold, speak: Speak,
                 publish: Callable[..., None], db_path: Path,
                 on_bridged: Callable[[Channel, Channel], None] | None = None,
                 cdr_extra: Callable[..., None] | None = None) -> None:
        self.ua = ua
        self.moh = moh
        self.speak = speak
        self.publish = publish
        self.db_path = db_path
        self.on_bridged = on_bridged
        self.cdr_extra = cdr_extra or (lambda *a, **k: None)
        self.acd = Acd()
        self.store = QueueLogStore()
        self.cfg: dict[str, QueueConfig] = {}
        self.numbers: dict[str, str] = {}  # dialled number -> queue
        self.waiters: dict[str, Waiter] = {}
        self.rings: dict[tuple[str, str], Ring] = {}
        self.agent_legs: dict[str, Channel] = {}  # agent -> its answered queue leg
        self.direct_calls: dict[str, int] = {}  # agent -> non-queue calls in progress
        self._direct_by_id: dict[str, str] = {}  # channel id -> agent
        self._timer: asyncio.TimerHandle | None = None
        self._wall_offset = 0.0
        self._names: dict[str, str] = {}

    # ------------------------------------------------------------ lifecycle
    async def start(self, cfg: Config) -> None:
        await self.store.open(self.db_path)
        self.configure(cfg)

    async def stop(self) -> None:
        now = self.now()
        self.acd.split_spans(now)
        self._store_records()
        if self._timer is not None:
            self._timer.cancel()
        await self.store.close()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def configure(self, cfg: Config) -> None:
        """(Re)load queue settings; waiting callers and agent states are kept."""
        self.cfg = dict(cfg.queues)
        self.numbers = {q.number: name for name, q in cfg.queues.items() if q.number}
        self._names = {e.number: e.name or e.number for e in cfg.extensions}
        specs = [self._spec(name, q) for name, q in cfg.queues.items()]
        self.acd.configure(specs, self.now(), self._names)
        self._kick()

    @staticmethod
    def _spec(name: str, q: QueueConfig) -> QueueSpec:
        target = q.overflow.target()
        return QueueSpec(
            name=name, strategy=q.strategy, ring_timeout=q.ring_timeout,
            retry_delay=q.retry_delay, wrapup=q.wrapup, max_callers=q.max_callers,
            join_empty=q.join_empty, leave_when_empty=q.leave_when_empty,
            max_wait=q.max_wait, overflow=f"{target[0]}:{target[1]}" if target else "",
            service_level=q.service_level, autopause_after=q.autopause_after,
            skill_widen_after=q.skill_widen_after, vip_numbers=tuple(q.vip_numbers),
            members=tuple(Member(m.agent, m.penalty, dict(m.skills)) for m in q.members),
        )

    # ------------------------------------------------------------ the engine loop
    def _kick(self) -> None:
        now = self.now()
        try:
            offers = self.acd.dispatch(now)
        except AcdError:
            log.exception("dispatch failed")
            offers = []
        for offer in offers:
            for agent in offer.agents:
                self._start_ring(offer, agent)
        for e in self.acd.drain_events():
            self._on_acd_event(e)
        self._store_records()
        self._arm()

    def _arm(self) -> None:
        when = self.acd.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = asyncio.get_running_loop().call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for e in self.acd.tick(self.now()):
            self._on_acd_event(e)
        self._kick()

    def _store_records(self) -> None:
        offset = time.time() - self.now()
        for r in self.acd.drain_records():
            with contextlib.suppress(RuntimeError):  # the store is closed at shutdown
                self.store.add(r.shifted(offset))

    def _on_acd_event(self, e: dict[str, Any]) -> None:
        name = e.pop("event")
        self.publish(name, **e)
        if name == QUEUE_OFFER_CANCEL:
            ring = self.rings.get((e["caller"], e["agent"]))
            if ring is not None:
                self._stop_ring(ring)
        elif name == QUEUE_CALLER_LEAVE:
            w = self.waiters.get(e["caller"])
            reason = e.get("reason")
            if w is not None and reason in ("timeout", "empty", "queue_removed") \
                    and not w.result.done():
                w.result.set_result(("timeout", e.get("overflow", "")))

    # ------------------------------------------------------------ the caller's side
    async def run_caller(self, chan: Channel, queue: str, priority: int = 0,
                         skills: dict[str, int] | None = None) -> tuple[str, str]:
        """Keep `chan` in `queue` until an agent answers (then until the call ends).

        Returns (outcome, detail): ("answered", agent), ("timeout", overflow target),
        ("full", ""), ("closed", "") (no agents), ("callback", ""), ("abandoned", "").
        """
        now = self.now()
        res = self.acd.join(queue, chan.id, chan.caller, now, priority=priority, skills=skills)
        if not res.ok:
            self._kick()
            return ("full" if res.status == "full" else "closed"), ""
        w = Waiter(chan, queue, now, asyncio.get_running_loop().create_future())
        self.waiters[chan.id] = w
        chan.app, chan.app_data = "Queue", queue
        self.cdr_extra(chan.linkedid, queue=queue)
        self._kick()
        announcer: asyncio.Task[Any] | None = None
        try:
            if not chan.is_up:
                await chan.answer()
            self._hold_music(chan, queue)
            announcer = asyncio.ensure_future(self._announce_loop(w))
            _done, _ = await asyncio.wait([w.result, chan.hungup],
                                         return_when=asyncio.FIRST_COMPLETED)
            outcome = w.result.result() if w.result.done() else None
        except ChannelGone:
            outcome = None
        finally:
            if announcer is not None:
                announcer.cancel()
            self.waiters.pop(chan.id, None)
        if outcome is None or chan.is_gone:
            # the caller hung up while waiting (or while an agent rang)
            if isinstance(outcome, tuple) and outcome[0] == "callback":
                return "callback", ""
            self.acd.leave(chan.id, self.now(), "abandoned")
            self._kick()
            self.cdr_extra(chan.linkedid, queue=queue, queue_outcome="abandoned",
                           queue_wait=round(self.now() - w.joined, 1))
            return "abandoned", ""
        if isinstance(outcome, tuple):
            kind, detail = outcome
            if kind == "timeout":
                self._stop_music(chan)
                self.cdr_extra(chan.linkedid, queue=queue, queue_outcome="timeout",
                               queue_wait=round(self.now() - w.joined, 1))
                return "timeout", detail
            return kind, detail
        # an agent answered: `outcome` is the agent's leg, already bridged by the ringer
        agent_leg: Channel = outcome
        self.cdr_extra(chan.linkedid, queue=queue, agent=agent_leg.endpoint_name,
                       queue_outcome="answered", queue_wait=round(self.now() - w.joined, 1))
        await asyncio.shield(chan.hungup)
        return "answered", agent_leg.endpoint_name

    def _hold_music(self, chan: Channel, queue: str) -> None:
        q = self.cfg.get(queue)
        if chan.media is not None:
            chan.media.set_source(self.moh.get(q.moh if q else None).listener())

    def _stop_music(self, chan: Channel) -> None:
        if chan.media is not None and chan.bridge is None:
            chan.media.set_source(None)

    async def _announce_loop(self, w: Waiter) -> None:
        """Position and estimated wait every N seconds; the callback offer; '1' to accept."""
        q = self.cfg.get(w.queue)
        if q is None:
            return
        chan = w.chan
        next_ann = w.joined + q.first_announcement_after
        next_cb = w.joined + q.callback_offer_after
        chan.flush_dtmf()
        while not chan.is_gone and not w.result.done():
            now = self.now()
            times = []
            if q.announce_position_every > 0:
                times.append(next_ann)
            if q.callback:
                times.append(next_cb)
            wait = max(0.05, min(times) - now) if times else None
            waiter: asyncio.Future[Any] = asyncio.ensure_future(chan.dtmf_event.wait())
            try:
                _done, _ = await asyncio.wait([waiter, w.result, chan.hungup], timeout=wait,
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
            if w.result.done() or chan.is_gone:
                return
            if chan.dtmf_event.is_set():
                d = chan._take_digit()
                if d == "1" and w.callback_offered:
                    await self._take_callback(w)
                    return
                continue
            now = self.now()
            if q.callback and now >= next_cb and not w.callback_offered:
                w.callback_offered = True
                await self._say_over_music(w, "To hang up and keep your place in line, "
                                              "press 1. We will call you back.")
            if q.announce_position_every > 0 and now >= next_ann:
                next_ann = now + q.announce_position_every
                await self._say_over_music(w, self._position_text(w))

    def _position_text(self, w: Waiter) -> str:
        pos = next((p for cid, p in self.acd.positions(w.queue) if cid == w.chan.id), 0)
        text = f"You are caller number {pos}." if pos else "Please hold."
        q = self.cfg.get(w.queue)
        if q is not None and q.announce_holdtime:
            est = self.acd.estimated_wait(w.chan.id, self.now())
            if est is not None and est >= 30:
                minutes = max(1, round(est / 60))
                text += (f" Your estimated wait is about {minutes} "
                         f"minute{'s' if minutes != 1 else ''}.")
        return text

    async def _say_over_music(self, w: Waiter, text: str) -> None:
        """Interrupt the music for an announcement; an agent answering stops it at once."""
        chan = w.chan
        say = asyncio.ensure_future(self.speak(chan, text))
        say.add_done_callback(_consume_gone)
        done, _ = await asyncio.wait([say, w.result, chan.hungup],
                                     return_when=asyncio.FIRST_COMPLETED)
        if say not in done:
            say.cancel()  # the agent is there: the bridge replaced the prompt already
            return
        if not w.result.done() and not chan.is_gone and chan.bridge is None:
            self._hold_music(chan, w.queue)

    async def _take_callback(self, w: Waiter) -> None:
        chan = w.chan
        if not self.acd.request_callback(chan.id, self.now(), chan.caller):
            return
        self._kick()
        w.result.set_result(("callback", ""))
        self.cdr_extra(chan.linkedid, queue=w.queue, queue_outcome="callback")
        with contextlib.suppress(ChannelGone):
            await self.speak(chan, "Thank you. We will call you back.")
        chan.hangup("NORMAL_CLEARING")

    # ------------------------------------------------------------ the agent's side
    def _start_ring(self, offer: Offer, agent: str) -> None:
        ring = Ring(offer.caller, agent)
        self.rings[(offer.caller, agent)] = ring
        ring.task = asyncio.ensure_future(self._ring(offer, ring))

    def _stop_ring(self, ring: Ring) -> None:
        ring.cancelled = True
        for leg in ring.legs:
            if not leg.is_up and not leg.is_gone:
                leg.hangup("ORIGINATOR_CANCEL")
        if ring.task is not None and not ring.legs:
            ring.task.cancel()

    async def _ring(self, offer: Offer, ring: Ring) -> None:
        agent = ring.agent
        key = (offer.caller, agent)
        w = self.waiters.get(offer.caller)
        try:
            bindings = self.ua.lookup(agent)
            if not bindings:
                self.acd.offer_failed(offer.caller, agent, self.now(), "error")
                return
            if w is not None:
                cid, cname, linkedid = w.chan.caller, w.chan.caller_name, w.chan.linkedid
            else:  # a callback: the customer is called once the agent answers
                cid, cname, linkedid = offer.number, "Callback", None
            for b in bindings:
                leg = await self.ua.originate(b, caller=cid, caller_name=cname, dest=agent,
                                              linkedid=linkedid, variables={"acd_leg": True})
                ring.legs.append(leg)
            if ring.cancelled:
                self._stop_ring(ring)
                return
            answered = await self._first_answer(ring.legs)
            if ring.cancelled:
                if answered is not None:
                    answered.hangup("NORMAL_CLEARING")
                return
            if answered is None:
                reason = "busy" if any(leg.hangup_cause == "USER_BUSY" for leg in ring.legs) \
                    else "rejected" if any(leg.hangup_cause == "CALL_REJECTED"
                                           for leg in ring.legs) else "no_answer"
                self.acd.offer_failed(offer.caller, agent, self.now(), reason)
                return
            for leg in ring.legs:
                if leg is not answered:
                    leg.hangup("LOSE_RACE")
            res = self.acd.offer_answered(offer.caller, agent, self.now())
            if not res.ok:
                answered.hangup("NORMAL_CLEARING")
                return
            for other in res.stop_ringing:
                r2 = self.rings.get((offer.caller, other))
                if r2 is not None:
                    self._stop_ring(r2)
            self.agent_legs[agent] = answered
            answered.listeners.append(self._agent_leg_event)
            if w is not None:
                self._connect(w, answered)
            else:
                await self._callback_call(offer, answered)
        except Exception:
            log.exception("ringing agent %s failed", agent)
            self.acd.offer_failed(offer.caller, agent, self.now(), "error")
        finally:
            if self.rings.get(key) is ring:
                del self.rings[key]
            self._kick()

    async def _first_answer(self, legs: list[SipChannel]) -> SipChannel | None:
        pending: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(asyncio.shield(leg.answered)) for leg in legs]
        gone: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(asyncio.shield(leg.hungup)) for leg in legs]
        try:
            while True:
                if any(leg.is_up for leg in legs):
                    return next(leg for leg in legs if leg.is_up)
                if all(leg.is_gone for leg in legs):
                    return None
                await asyncio.wait(pending + gone, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in pending + gone:
                f.cancel()

    def _connect(self, w: Waiter, agent_leg: Channel) -> None:
        chan = w.chan
        if chan.is_gone:
            agent_leg.hangup("NORMAL_CLEARING")
            return
        # the bridge stops whatever the caller was hearing (music or announcement) at once
        Bridge(self.ua.manager, chan, agent_leg)
        if self.on_bridged is not None:
            self.on_bridged(chan, agent_leg)
        if not w.result.done():
            w.result.set_result(agent_leg)

    async def _callback_call(self, offer: Offer, agent_leg: Channel) -> None:
        """The agent answered a callback: call the customer and bridge them."""
        with contextlib.suppress(ChannelGone):  # the agent hung up: failed, below
            await self.speak(agent_leg, "Calling back the customer.")
        if agent_leg.is_gone:
            self.acd.callback_failed(offer.caller, self.now())
            return
        from ccswitch.apps.dial import dial

        # the agent leg is the call's first leg: it owns the CDR and the recording
        res = await dial(self.ua, agent_leg, [offer.number], 30.0, bridge=False)  # type: ignore[arg-type]
        cust = res.answered_by
        if cust is None or agent_leg.is_gone:
            self.acd.callback_failed(offer.caller, self.now())
            if not agent_leg.is_gone:
                agent_leg.hangup("NORMAL_CLEARING")
            return
        self.acd.callback_answered(offer.caller, self.now())
        Bridge(self.ua.manager, agent_leg, cust)
        if self.on_bridged is not None:
            self.on_bridged(agent_leg, cust)
        self.cdr_extra(agent_leg.linkedid, queue=offer.queue, agent=offer.agents[0],
                       queue_outcome="callback_answered", callback=True)

    def _agent_leg_event(self, ch: Channel, what: str, data: Any) -> None:
        if what != "hangup":
            return
        agent = ch.endpoint_name
        if self.agent_legs.get(agent) is ch:
            del self.agent_legs[agent]
            self.acd.call_ended(agent, self.now())
            self._kick()

    # ------------------------------------------------------------ direct calls
    def on_channel_event(self, e: dict[str, Any]) -> None:
        """Agents on any non-queue call are never offered a queue call."""
        t = e["event"]
        if t not in (ev.CHANNEL_CREATE, ev.CHANNEL_HANGUP):
            return
        if t == ev.CHANNEL_CREATE:
            # vars are set right after creation (acd_leg): decide on the next tick
            asyncio.get_running_loop().call_soon(self._direct_start, e["channel"])
        else:
            self._direct_end(e["channel"])

    def _agent_of(self, ch: Channel) -> str | None:
        if ch.vars.get("acd_leg"):
            return None
        name = ch.endpoint_name
        return name if self.acd.get_agent(name) is not None else None

    def _direct_start(self, chan_id: str) -> None:
        ch = self.ua.manager.channels.get(chan_id)
        if ch is None:
            return
        agent = self._agent_of(ch)
        if agent is None:
            return
        self._direct_by_id[chan_id] = agent
        n = self.direct_calls.get(agent, 0) + 1
        self.direct_calls[agent] = n
        if n == 1:
            self.acd.set_busy(agent, True, self.now())
            self._kick()

    def _direct_end(self, chan_id: str) -> None:
        agent = self._direct_by_id.pop(chan_id, None)
        if agent is None:
            return
        n = self.direct_calls.get(agent, 0) - 1
        if n <= 0:
            self.direct_calls.pop(agent, None)
            self.acd.set_busy(agent, False, self.now())
            self._kick()
        else:
            self.direct_calls[agent] = n

    # ------------------------------------------------------------ agent control
    def login(self, agent: str, queue: str | None) -> list[str]:
        out = self.acd.login(agent, queue, self.now())
        self._kick()
        return out

    def logout(self, agent: str, queue: str | None) -> list[str]:
        out = self.acd.logout(agent, queue, self.now())
        self._kick()
        return out

    def pause(self, agent: str, reason: str) -> bool:
        ok = self.acd.pause(agent, reason or "paused", self.now())
        self._kick()
        return ok

    def unpause(self, agent: str) -> bool:
        ok = self.acd.unpause(agent, self.now())
        self._kick()
        return ok

    async def feature(self, chan: Channel, code: str, kind: str) -> None:
        """*45 / *46 / *47 / *48 dialled by an agent's phone."""
        agent = chan.caller
        await chan.answer()
        try:
            if kind == "login":
                qs = self.login(agent, None)
                text = ("You are logged in to " + ", ".join(qs) + ".") if qs else \
                    "You were already logged in."
            elif kind == "logout":
                self.logout(agent, None)
                text = "You are logged out."
            elif kind == "pause":
                self.pause(agent, "phone")
                text = "You are paused."
            else:
                self.unpause(agent)
                text = "You are available."
        except AcdError as e:
            text = "That did not work: " + str(e).replace("_", " ") + "."
        with contextlib.suppress(ChannelGone):  # hung up before the confirmation ended
            await self.speak(chan, text)
        chan.hangup("NORMAL_CLEARING")

    # ------------------------------------------------------------ views (CLI, API, wallboard)
    def queues_info(self) -> list[dict[str, Any]]:
        return [self._queue_summary(name) for name in self.acd.queue_names()]

    def _queue_summary(self, name: str) -> dict[str, Any]:
        s = self.acd.queue_status(name, self.now())
        q = self.cfg.get(name)
        return {
            "name": name, "number": q.number if q else None, "strategy": s.strategy,
            "waiting": s.waiting, "callbacks": s.callbacks,
            "longest_wait": round(s.longest_wait, 1),
            "agents": {"available": s.available, "ringing": s.ringing, "on_call": s.on_call,
                       "wrap_up": s.wrap_up, "paused": s.paused, "logged_in": s.logged_in},
            "offered": s.offered, "answered": s.answered, "abandoned": s.abandoned,
            "service_level_today": s.service_level,
            "avg_wait": s.avg_wait, "avg_handle": s.avg_handle,
        }

    def queue_info(self, name: str) -> dict[str, Any] | None:
        if self.acd.get_spec(name) is None:
            return None
        d = self._queue_summary(name)
        now = self.now()
        callers = []
        for cid, pos in self.acd.positions(name):
            c = self.acd.get_caller(cid)
            if c is None:
                continue
            ch = self.ua.manager.channels.get(cid)
            callers.append({"channel": ch.name if ch else cid, "caller": c.number,
                            "position": pos, "wait": round(now - c.joined_at, 1),
                            "priority": c.priority, "callback": c.callback,
                            "state": str(c.state)})
        d["callers"] = callers
        members = []
        for agent, ms in self.acd.members(name):
            a = self.acd.agent_status(agent, now)
            members.append({"agent": agent, "name": a.name, "state": a.state,
                            "since": time.time() - a.duration, "duration": round(a.duration, 1),
                            "pause_reason": a.pause_reason, "penalty": ms.penalty,
                            "calls_taken": a.calls_taken.get(name, 0),
                            "logged_in": ms.logged_in, "skills": dict(ms.skills)})
        d["members"] = members
        return d

    def agents_info(self) -> list[dict[str, Any]]:
        now = self.now()
        out = []
        for agent in self.acd.agent_ids():
            a = self.acd.agent_status(agent, now)
            out.append({"agent": agent, "name": a.name, "state": a.state,
                        "since": time.time() - a.duration, "duration": round(a.duration, 1),
                        "pause_reason": a.pause_reason, "queues": list(a.queues),
                        "calls_taken": a.calls_total, "missed_offers": a.missed_offers})
        return out

    async def stats(self, name: str, since: float, until: float,
                    bucket: float = 900) -> dict[str, Any]:
        await self.store.flush()
        spec = self.acd.get_spec(name)
        res = await self.store.stats(name, since, until, bucket,
                                     spec.service_level if spec else None)
        return res.as_dict()
