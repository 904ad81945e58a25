"""The ACD decision core: queues, agents, callers and offers, as pure logic.

No asyncio, sockets or SIP: every entry point takes `now` (monotonic seconds)
and returns results; state changes queue events (drain_events) and finished
records (drain_records); `next_deadline()` says when `tick()` must run next.
The integration layer (channels, ringing, bridging, music, announcements)
drives it:

    after join / leave / login / unpause / set_busy(False) / offer_failed /
    call_ended / configure / callback_failed / any tick():
        for offer in acd.dispatch(now): ring offer.agents for offer.caller
    for ev in acd.drain_events(): bus.publish(ev.pop("event"), **ev)
        # QUEUE_OFFER_CANCEL: stop ringing ev["agent"] for ev["caller"]
        # QUEUE_CALLER_LEAVE with reason timeout / empty / queue_removed:
        #   the caller is still on the line: send it on (overflow / flow edge)
    arm one timer at acd.next_deadline(); when it fires: tick(now), dispatch(now)

Calling dispatch() too often is harmless (it only looks at queues where
something changed since the last call); calling it too rarely delays offers.

Agent state is derived, by precedence, from: ringing (an offer) > on_call
(a queue call) > logged_out > on_call with reason "direct" (busy_direct) >
wrap_up > paused > available. Only `available` agents are offered calls.
A pause requested while ringing, on a call or in wrap-up takes effect when
that ends.

Every operation that comes from call signalling (leave, offer_answered,
offer_failed, call_ended, set_busy, the transfer hooks, callback_*) is
idempotent and tolerant of stale ids (returns False / empty), because in a
real switch a hangup can always race an answer. Operations that come from a
person (login, logout, pause, unpause) raise AcdError on bad input.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ccswitch.apps.acd.model import (
    AGENT_STATE,
    FAIL_REASONS,
    QUEUE_CALL_END,
    QUEUE_CALLBACK_REQUEST,
    QUEUE_CALLER_JOIN,
    QUEUE_CALLER_LEAVE,
    QUEUE_CALLER_OFFER,
    QUEUE_CALLER_SKILLS,
    QUEUE_MEMBER_LOGIN,
    QUEUE_MEMBER_LOGOUT,
    QUEUE_OFFER_CANCEL,
    QUEUE_TIMEOUT,
    AcdError,
    Agent,
    AgentState,
    AgentStateRecord,
    AnswerResult,
    Caller,
    CallerState,
    Event,
    JoinResult,
    JoinStatus,
    Membership,
    Offer,
    QueueCallRecord,
    QueueSpec,
)
from ccswitch.apps.acd.stats import (
    AgentLiveStats,
    QueueHistory,
    QueueLiveStats,
    estimated_wait,
    service_level,
)
from ccswitch.apps.acd.strategies import Candidate, Rng, effective_skills, matches, select

__all__ = ["Acd"]

Record = QueueCallRecord | AgentStateRecord

# leave() reasons the lead may give, and the outcome each records.
_LEAVE_OUTCOME = {
    "abandoned": "abandoned",
    "transferred": "transferred",
    "cancelled": "callback",
}

# Timer kinds (heap entries are validated lazily: a stale one is skipped).
_WRAPUP, _OFFER, _MAXWAIT, _RETRY, _WIDEN, _NOTBEFORE = range(6)
# (when, n, kind, key, sub, token)
_Timer = tuple[float, int, int, str, str, int]


@dataclass(slots=True, eq=False)
class _Queue:
    spec: QueueSpec
    members: dict[str, Membership] = field(default_factory=dict)  # shared with Agent
    callers: list[Caller] = field(default_factory=list)  # waiting/offered, in queue order
    rr_last: str | None = None
    rr_last_order: int | None = None
    history: QueueHistory = field(default_factory=QueueHistory)

    def next_order(self) -> int:
        return 1 + max((m.order for m in self.members.values()), default=-1)


class Acd:
    """The ACD engine. One instance for the whole switch; not thread-safe."""

    def __init__(self, rng: Rng | None = None) -> None:
        self._rng: Rng = rng if rng is not None else random.Random()
        self._queues: dict[str, _Queue] = {}
        self._agents: dict[str, Agent] = {}
        self._callers: dict[str, Caller] = {}  # waiting, offered or connected
        self._busy: set[str] = set()  # extensions on a direct call (agents or not)
        self._available: set[str] = set()  # agents in state available (dispatch's pool)
        self._events: list[Event] = []
        self._records: list[Record] = []
        self._timers: list[_Timer] = []
        self._tn = itertools.count()
        self._jseq = 0
        self._oseq = 0
        self._dirty: set[str] = set()  # queues where a new match may be possible

    # ======================================================================
    # configuration
    # ======================================================================

    def configure(
        self,
        specs: Sequence[QueueSpec],
        now: float,
        names: Mapping[str, str] | None = None,
    ) -> None:
        """Load or reload the queues. Queues that still exist keep their
        callers, logged-in agents and statistics; new settings apply at once
        (including max_wait of callers already waiting). A removed queue's
        waiting callers leave with reason "queue_removed" (the lead sends them
        on) and its agents are logged out of it; calls in progress continue.
        A static member removed from a queue is logged out of it.
        `names`: agent display names by id (default: the id)."""
        seen: set[str] = set()
        for s in specs:
            if s.name in seen:
                raise AcdError(f"queue {s.name!r} defined twice")
            seen.add(s.name)
        members = {s.name: s.member_list() for s in specs}  # validates before any change
        for qname in [q for q in self._queues if q not in seen]:
            self._remove_queue(qname, now)
        touched: dict[str, Agent] = {}  # (ordered: events come out deterministically)
        for spec in specs:
            q = self._queues.get(spec.name)
            if q is None:
                q = self._queues[spec.name] = _Queue(spec)
            q.spec = spec
            wanted = {m.agent: m for m in members[spec.name]}
            for aid, old in list(q.members.items()):
                if old.static and aid not in wanted:
                    a = self._agents[aid]
                    if old.logged_in:
                        self._logout_queues(a, [spec.name], now, "config")
                    self._drop_membership(a, spec.name)
                    touched[a.id] = a
            order = 0
            for mem in members[spec.name]:
                a = self._get_or_create_agent(mem.agent, now)
                found = q.members.get(mem.agent)
                if found is None:
                    ms = Membership(static=True)
                    q.members[mem.agent] = ms
                    a.memberships[spec.name] = ms
                else:
                    ms = found
                ms.penalty = mem.penalty
                ms.skills = dict(mem.skills)
                ms.static = True
                ms.order = order
                order += 1
                touched[a.id] = a
            for ms in sorted((m for m in q.members.values() if not m.static), key=_order):
                ms.order = order
                order += 1
            if q.rr_last is not None and q.rr_last in q.members:
                q.rr_last_order = q.members[q.rr_last].order
            for c in q.callers:
                self._arm_caller_timers(c)
            self._dirty.add(spec.name)
        if names:
            for aid, name in names.items():
                if aid in self._agents:
                    self._agents[aid].name = name
        for spec in specs:
            self._check_empty(self._queues[spec.name], now)
        for a in touched.values():
            self._refresh(a, now, "config")
            self._gc_agent(a)

    def _remove_queue(self, qname: str, now: float) -> None:
        q = self._queues[qname]
        for c in list(q.callers):
            self._withdraw(c, now, "queue_removed")
            self._finish(c, now, "transferred", "queue_removed")
        for aid, ms in list(q.members.items()):
            a = self._agents[aid]
            if ms.logged_in:
                self._logout_queues(a, [qname], now, "queue_removed")
            self._drop_membership(a, qname)
            self._refresh(a, now, "queue_removed")
            self._gc_agent(a)
        del self._queues[qname]
        self._dirty.discard(qname)

    # ======================================================================
    # agents
    # ======================================================================

    def login(
        self, agent: str, queue: str | None, now: float, penalty: int | None = None
    ) -> list[str]:
        """Log `agent` in to `queue`, or to every queue it is a member of
        (queue=None). A non-member may log in to a queue with dynamic_members
        (penalty as given, no skills). `penalty` overrides the member's
        penalty until the next reload. Returns the queues newly logged in to."""
        a = self._agents.get(agent)
        targets: list[str]
        if queue is None:
            if a is None or not a.memberships:
                raise AcdError(f"agent {agent} is not a member of any queue")
            targets = [qn for qn, ms in a.memberships.items() if not ms.logged_in]
            if penalty is not None:
                for ms in a.memberships.values():
                    ms.penalty = penalty
        else:
            q = self._queues.get(queue)
            if q is None:
                raise AcdError(f"no queue {queue!r}")
            mq = a.memberships.get(queue) if a is not None else None
            if mq is None:
                if not q.spec.dynamic_members:
                    raise AcdError(f"agent {agent} is not a member of queue {queue!r}")
                a = self._get_or_create_agent(agent, now)
                mq = Membership(penalty=penalty or 0, static=False, order=q.next_order())
                q.members[agent] = mq
                a.memberships[queue] = mq
            elif penalty is not None:
                mq.penalty = penalty
            targets = [] if mq.logged_in else [queue]
        assert a is not None
        if targets and not a.logged_in:
            a.missed_offers = 0  # a new session
        for qn in targets:
            ms = a.memberships[qn]
            ms.logged_in = True
            self._emit(QUEUE_MEMBER_LOGIN, queue=qn, agent=a.id, penalty=ms.penalty)
        a.busy_direct = a.id in self._busy
        self._refresh(a, now, "login")
        self._mark_agent_queues(a)
        return targets

    def logout(self, agent: str, queue: str | None, now: float) -> list[str]:
        """Log out of `queue` or of all queues (None). Ringing for a call of a
        queue logged out of is withdrawn (QUEUE_OFFER_CANCEL); a call in
        progress continues (no wrap-up after it if no queue is left); a
        wrap-up in progress ends. Leaving the last queue also clears a pause.
        Returns the queues logged out of."""
        a = self._agents.get(agent)
        if a is None:
            raise AcdError(f"unknown agent {agent}")
        if queue is not None and queue not in self._queues:
            raise AcdError(f"no queue {queue!r}")
        targets = a.queues() if queue is None else [q for q in a.queues() if q == queue]
        self._logout_queues(a, targets, now, "agent")
        self._refresh(a, now, "logout")
        self._mark_agent_queues(a)
        self._gc_agent(a)
        return targets

    def _logout_queues(self, a: Agent, queues: list[str], now: float, reason: str) -> None:
        if not queues:
            return
        if a.offer_caller is not None:
            c = self._callers[a.offer_caller]
            if c.queue in queues:
                self._release(c, a, now, "cancelled", cancel="agent_logout")
        for qn in queues:
            a.memberships[qn].logged_in = False
            self._emit(QUEUE_MEMBER_LOGOUT, queue=qn, agent=a.id, reason=reason)
            if not a.memberships[qn].static:
                self._drop_membership(a, qn)
        if not a.logged_in:
            a.wrapup_until = None
            a.paused = False
            a.pause_reason = ""
        for qn in queues:
            if qn in self._queues:
                self._check_empty(self._queues[qn], now)

    def _drop_membership(self, a: Agent, qn: str) -> None:
        a.memberships.pop(qn, None)
        q = self._queues.get(qn)
        if q is not None:
            q.members.pop(a.id, None)

    def pause(self, agent: str, reason: str, now: float) -> bool:
        """Pause (all queues) with a reason; True if anything changed. While
        ringing, on a call or in wrap-up the pause applies when that ends."""
        a = self._logged_in_agent(agent)
        if a.paused and a.pause_reason == reason:
            return False
        a.paused = True
        a.pause_reason = reason
        self._refresh(a, now, "pause")
        return True

    def unpause(self, agent: str, now: float) -> bool:
        """Unpause; resets the missed-offer count. True if it was paused."""
        a = self._logged_in_agent(agent)
        if not a.paused:
            return False
        a.paused = False
        a.pause_reason = ""
        a.missed_offers = 0
        self._refresh(a, now, "unpause")
        self._mark_agent_queues(a)
        return True

    def set_busy(self, agent: str, busy: bool, now: float) -> bool:
        """The extension is (busy=True) or is no longer on a call the ACD did
        not place (a direct call, a consultation call, a feature code call).
        Report every extension, agent or not: the flag is remembered for a
        later login. The lead counts an extension's non-ACD channels and
        reports the transitions 0 -> 1 and 1 -> 0. An agent who goes busy
        while ringing has that offer withdrawn (QUEUE_OFFER_CANCEL).
        Returns True if the flag changed."""
        if busy == (agent in self._busy):
            return False
        if busy:
            self._busy.add(agent)
        else:
            self._busy.discard(agent)
        a = self._agents.get(agent)
        if a is not None:
            a.busy_direct = busy
            if busy and a.offer_caller is not None:
                c = self._callers[a.offer_caller]
                self._release(c, a, now, "cancelled", "agent_busy", why="direct_call")
            self._refresh(a, now, "direct_call" if busy else "direct_call_end")
            if not busy:
                self._mark_agent_queues(a)
        return True

    # ======================================================================
    # callers
    # ======================================================================

    def join(
        self,
        queue: str,
        caller_id: str,
        number: str,
        now: float,
        priority: int = 0,
        skills: Mapping[str, int] | None = None,
    ) -> JoinResult:
        """A caller enters `queue`. VIP numbers get spec.vip_boost added to
        `priority`. A rejected caller (full / empty) gets a QUEUE_CALLER_LEAVE
        with joined=False and no record. A caller still connected to an agent
        (the agent transferred it to a queue before agent_on_transfer was
        reported) first ends that queue call as transferred; a caller waiting
        in a queue cannot join another one (AcdError)."""
        q = self._queues.get(queue)
        if q is None:
            return JoinResult(JoinStatus.UNKNOWN_QUEUE)
        old = self._callers.get(caller_id)
        if old is not None:
            if old.state is not CallerState.CONNECTED:
                raise AcdError(f"caller {caller_id} is already in queue {old.queue}")
            self.transfer_out(caller_id, now)
        spec = q.spec
        if spec.max_callers and len(q.callers) >= spec.max_callers:
            self._emit_reject(queue, caller_id, number, "full")
            return JoinResult(JoinStatus.FULL)
        if not spec.join_empty and not self._any_logged_in(q):
            self._emit_reject(queue, caller_id, number, "empty")
            return JoinResult(JoinStatus.EMPTY)
        if number and number in spec.vip_numbers:
            priority += spec.vip_boost
        self._jseq += 1
        c = Caller(
            id=caller_id,
            number=number,
            queue=queue,
            priority=priority,
            required_skills=dict(skills or {}),
            joined_at=now,
            seq=self._jseq,
        )
        self._callers[caller_id] = c
        self._insert(q, c)
        c.join_position = c.position
        q.history.offered += 1
        self._arm_caller_timers(c)
        self._emit(
            QUEUE_CALLER_JOIN,
            queue=queue,
            caller=caller_id,
            number=number,
            position=c.position,
            priority=priority,
            skills=dict(c.required_skills),
            count=len(q.callers),
        )
        self._dirty.add(queue)
        return JoinResult(JoinStatus.OK, c.position)

    def leave(self, caller_id: str, now: float, reason: str = "abandoned") -> list[str]:
        """The caller is gone: hung up ("abandoned"), sent elsewhere by the lead
        ("transferred"), or a pending callback cancelled ("cancelled").
        Returns the agents whose ringing for it must stop (also announced by
        QUEUE_OFFER_CANCEL). On a connected caller this ends the queue call
        exactly like call_ended(agent) (the caller hung up first)."""
        if reason not in _LEAVE_OUTCOME:
            raise AcdError(f"leave reason must be one of {sorted(_LEAVE_OUTCOME)}")
        c = self._callers.get(caller_id)
        if c is None:
            return []
        if c.state is CallerState.CONNECTED:
            if c.callback and c.talk_from is None:
                self.callback_failed(c.id, now)
            else:
                outcome = "transferred" if reason == "transferred" else "answered"
                self._end_connected(c, now, outcome)
            return []
        stop = self._withdraw(c, now, "caller_left")
        outcome = "callback" if c.callback and reason == "abandoned" else _LEAVE_OUTCOME[reason]
        self._finish(c, now, outcome, reason)
        return stop

    def request_callback(self, caller_id: str, now: float, number: str | None = None) -> bool:
        """The waiting caller chose to be called back (at `number`, default
        their own): they hang up and keep their place. Emits QUEUE_CALLER_LEAVE
        with reason "callback" and keeps_place=True (their channel leaves, the
        entry stays) and QUEUE_CALLBACK_REQUEST. An offer in progress is
        withdrawn. False if the caller is not waiting or offered."""
        c = self._callers.get(caller_id)
        if c is None or c.state is CallerState.CONNECTED or c.callback:
            return False
        self._withdraw(c, now, "callback")
        c.callback = True
        if number:
            c.number = number
        q = self._queues[c.queue]
        q.history.callbacks += 1
        self._emit(
            QUEUE_CALLER_LEAVE,
            queue=c.queue,
            caller=c.id,
            number=c.number,
            reason="callback",
            position=c.position,
            wait=now - c.joined_at,
            agent="",
            callback=True,
            keeps_place=True,
            joined=True,
        )
        self._emit(
            QUEUE_CALLBACK_REQUEST, queue=c.queue, caller=c.id, number=c.number, position=c.position
        )
        self._dirty.add(c.queue)
        return True

    def callback_answered(self, caller_id: str, now: float) -> bool:
        """The callback's customer leg answered (after the agent did): the
        caller is now connected; wait and talk are measured from here."""
        c = self._callers.get(caller_id)
        if c is None or not c.callback or c.state is not CallerState.CONNECTED:
            return False
        if c.talk_from is not None:
            return False
        c.talk_from = now
        self._connected(c, now)
        return True

    def callback_failed(self, caller_id: str, now: float, retry_after: float | None = None) -> bool:
        """The callback's customer leg failed after the agent answered. The
        agent is released at once (no wrap-up). retry_after=None: give up
        (record outcome "callback"); else the entry goes back to its place
        and is not offered again before now + retry_after."""
        c = self._callers.get(caller_id)
        if c is None or not c.callback or c.state is not CallerState.CONNECTED:
            return False
        if c.talk_from is not None:
            return False
        assert c.agent is not None
        a = self._agents[c.agent]
        a.call_caller = None
        c.agent = None
        c.answered_at = None
        q = self._queues.get(c.queue)
        retry = retry_after is not None and q is not None
        self._emit(
            QUEUE_CALL_END,
            queue=c.queue,
            caller=c.id,
            agent=a.id,
            outcome="callback",
            wait=now - c.joined_at,
            talk=0.0,
            wrapup=0.0,
            callback=True,
            retry=retry,
        )
        if retry_after is None or q is None:
            self._finish(c, now, "callback", "callback_failed")
        else:
            c.state = CallerState.WAITING
            c.not_before = now + retry_after
            self._insert(q, c)
            self._push(c.not_before, _NOTBEFORE, c.id, "", c.seq)
        self._refresh(a, now, "callback_failed")
        self._mark_agent_queues(a)
        self._gc_agent(a)
        return True

    # ======================================================================
    # offers and calls
    # ======================================================================

    def dispatch(self, now: float) -> list[Offer]:
        """Match waiting callers (priority, then FIFO; across queues: priority
        then longest waiting) to available agents, reserve them (ringing) and
        return the offers. Only queues where something changed since the
        last dispatch are looked at."""
        if not self._dirty:
            return []
        dirty, self._dirty = self._dirty, set()
        free: dict[str, list[Candidate]] = {}
        agents = self._agents
        for qn in dirty:
            q = self._queues.get(qn)
            if q is None or not q.callers:
                continue
            # (in any order: select() breaks every tie on member order)
            members = q.members
            cands = [
                (agents[aid], ms)
                for aid in self._available
                if (ms := members.get(aid)) is not None and ms.logged_in
            ]
            if cands:
                free[qn] = cands
        if not free:
            return []
        offers: list[Offer] = []
        streams = [self._queues[qn].callers for qn in free]
        candidates_left = sum(len(v) for v in free.values())
        # (offering does not reorder the lists, so they can be walked while offering)
        ordered = streams[0] if len(streams) == 1 else heapq.merge(*streams, key=_caller_key)
        for c in ordered:
            if candidates_left == 0:
                break
            if c.state is not CallerState.WAITING or c.not_before > now:
                continue
            pool = free.get(c.queue)
            if not pool:
                continue
            q = self._queues[c.queue]
            req = effective_skills(c.required_skills, c.widen_steps)
            eligible = [
                (a, ms)
                for a, ms in pool
                if c.retry_until.get(a.id, 0.0) <= now and matches(ms.skills, req)
            ]
            chosen = select(q.spec.strategy, q.spec.name, eligible, req, q.rr_last_order, self._rng)
            if not chosen:
                continue
            offers.append(self._offer(q, c, chosen, now))
            taken = {a.id for a in chosen}
            candidates_left = 0
            for qn, lst in free.items():
                if any(a.id in taken for a, _ in lst):
                    free[qn] = lst = [x for x in lst if x[0].id not in taken]
                candidates_left += len(lst)
        return offers

    def _offer(self, q: _Queue, c: Caller, chosen: list[Agent], now: float) -> Offer:
        spec = q.spec
        self._oseq += 1
        c.state = CallerState.OFFERED
        c.offer_agents = [a.id for a in chosen]
        c.offer_seq = self._oseq
        c.offer_started = now
        c.offer_deadline = now + spec.ring_timeout
        c.offer_ringall = spec.strategy == "ringall"
        c.attempts += 1
        for a in chosen:
            a.offer_caller = c.id
            self._refresh(a, now, "offer")
        last = chosen[-1]
        q.rr_last = last.id
        q.rr_last_order = last.memberships[q.spec.name].order
        self._push(c.offer_deadline, _OFFER, c.id, "", c.offer_seq)
        self._emit(
            QUEUE_CALLER_OFFER,
            queue=q.spec.name,
            caller=c.id,
            number=c.number,
            agents=list(c.offer_agents),
            timeout=spec.ring_timeout,
            attempt=c.attempts,
            callback=c.callback,
            priority=c.priority,
            position=c.position,
        )
        return Offer(
            caller=c.id,
            queue=q.spec.name,
            agents=tuple(c.offer_agents),
            timeout=spec.ring_timeout,
            deadline=c.offer_deadline,
            number=c.number,
            priority=c.priority,
            callback=c.callback,
            attempt=c.attempts,
        )

    def offer_answered(self, caller_id: str, agent: str, now: float) -> AnswerResult:
        """`agent` answered the offer for `caller_id`: bridge them. The other
        agents rung for this caller (ringall) are released and returned (and
        announced by QUEUE_OFFER_CANCEL). ok=False: the offer no longer
        exists; the lead must hang up the agent's leg. For a callback offer
        the lead then calls the customer (callback_answered / _failed)."""
        c = self._callers.get(caller_id)
        if c is None or c.state is not CallerState.OFFERED or agent not in c.offer_agents:
            return AnswerResult(False, reason="stale")
        a = self._agents[agent]
        others = [x for x in c.offer_agents if x != agent]
        for x in others:
            self._release(c, self._agents[x], now, "cancelled", "answered_elsewhere")
        c.offer_agents = []
        a.offer_caller = None
        a.call_caller = c.id
        a.missed_offers = 0
        c.state = CallerState.CONNECTED
        c.agent = agent
        c.answered_at = now
        self._remove(self._queues[c.queue], c)
        if not c.callback:
            c.talk_from = now
            self._connected(c, now)
        self._refresh(a, now, "answered", result="answered")
        return AnswerResult(True, tuple(others))

    def _connected(self, c: Caller, now: float) -> None:
        """Caller and agent are talking: count it and announce the caller's exit."""
        assert c.agent is not None
        a = self._agents[c.agent]
        a.calls_taken[c.queue] = a.calls_taken.get(c.queue, 0) + 1
        a.calls_total += 1
        q = self._queues.get(c.queue)
        wait = now - c.joined_at
        if q is not None:
            h = q.history
            h.answered += 1
            if not c.callback:
                h.waits.append(wait)
                h.sl_answered += 1
                if wait <= q.spec.service_level:
                    h.answered_within += 1
        self._emit(
            QUEUE_CALLER_LEAVE,
            queue=c.queue,
            caller=c.id,
            number=c.number,
            reason="answered",
            position=0,
            wait=wait,
            agent=c.agent or "",
            callback=c.callback,
            keeps_place=False,
            joined=True,
        )

    def offer_failed(self, caller_id: str, agent: str, now: float, reason: str) -> bool:
        """Ringing `agent` for `caller_id` failed (no_answer, busy, rejected,
        error). The agent is released (or auto-paused after the queue's
        autopause_after consecutive misses) and not offered this caller again
        for retry_delay; when no agent is left ringing, the caller waits
        again at the same place. False if there was no such offer."""
        if reason not in FAIL_REASONS:
            raise AcdError(f"offer_failed reason must be one of {sorted(FAIL_REASONS)}")
        c = self._callers.get(caller_id)
        if c is None or c.state is not CallerState.OFFERED or agent not in c.offer_agents:
            return False
        self._fail(c, self._agents[agent], now, reason, cancel=None)
        return True

    def _fail(self, c: Caller, a: Agent, now: float, reason: str, cancel: str | None) -> None:
        spec = self._queues[c.queue].spec
        if spec.retry_delay > 0:
            until = now + spec.retry_delay
            c.retry_until[a.id] = until
            self._push(until, _RETRY, c.id, a.id, c.seq)
        a.missed_offers += 1
        why = reason
        if spec.autopause_after and a.missed_offers >= spec.autopause_after and not a.paused:
            a.paused = True
            a.pause_reason = "autopause"
            why = "autopause"
        self._release(c, a, now, reason, cancel, why=why)

    def call_ended(self, agent: str, now: float) -> bool:
        """The agent's queue call is over (either side hung up). The agent
        gets the queue's wrap-up, then becomes available (tick). A second
        report of the same end (or leave() of that caller) does nothing.
        False if the agent was not on a queue call."""
        a = self._agents.get(agent)
        if a is None or a.call_caller is None:
            return False
        c = self._callers[a.call_caller]
        if c.callback and c.talk_from is None:
            # the agent hung up before the customer answered the callback
            return self.callback_failed(c.id, now)
        self._end_connected(c, now, "answered")
        return True

    def agent_on_transfer(self, agent: str, now: float) -> bool:
        """Hook: the agent transferred their queue caller away (blind, or
        attended once completed). The agent's queue call ends now (wrap-up
        follows) and the record's outcome is "transferred"; the caller is no
        longer the ACD's concern. If the target is an agent, the lead reports
        it with set_busy(target, True) like any non-ACD call."""
        a = self._agents.get(agent)
        if a is None or a.call_caller is None:
            return False
        c = self._callers[a.call_caller]
        if c.callback and c.talk_from is None:
            return self.callback_failed(c.id, now)
        self._end_connected(c, now, "transferred")
        return True

    def transfer_out(self, caller_id: str, now: float, target: str = "") -> list[str]:
        """Hook: the caller's channel was moved out of the queue (redirect,
        exit key, the lead's own overflow). Waiting or offered: the caller
        leaves with outcome "transferred" (returns the agents to stop
        ringing). Connected: the agent's queue call ends as in
        agent_on_transfer."""
        c = self._callers.get(caller_id)
        if c is None:
            return []
        if c.state is CallerState.CONNECTED:
            if c.callback and c.talk_from is None:
                self.callback_failed(c.id, now)
            else:
                self._end_connected(c, now, "transferred")
            return []
        stop = self._withdraw(c, now, "transferred")
        self._finish(c, now, "transferred", "transferred", target=target)
        return stop

    def _end_connected(self, c: Caller, now: float, outcome: str) -> None:
        assert c.agent is not None
        a = self._agents[c.agent]
        a.call_caller = None
        a.last_call_end = now
        q = self._queues.get(c.queue)
        wrapup = q.spec.wrapup if q is not None and a.logged_in else 0.0
        if wrapup > 0:
            a.wrapup_until = now + wrapup
            a.wrapup_queue = c.queue
            self._push(a.wrapup_until, _WRAPUP, a.id, "", 0)
        talk_from = c.talk_from if c.talk_from is not None else now
        talk = max(0.0, now - talk_from)
        if q is not None:
            q.history.handles.append(talk + wrapup)
        wait = talk_from - c.joined_at
        self._emit(
            QUEUE_CALL_END,
            queue=c.queue,
            caller=c.id,
            agent=a.id,
            outcome=outcome,
            wait=wait,
            talk=talk,
            wrapup=wrapup,
            callback=c.callback,
            retry=False,
        )
        self._record(c, now, outcome, a.id, c.talk_from, talk, wrapup)
        c.state = CallerState.GONE
        c.agent = None
        del self._callers[c.id]
        self._refresh(a, now, "call_ended")
        self._mark_agent_queues(a)
        self._gc_agent(a)

    # ======================================================================
    # time
    # ======================================================================

    def tick(self, now: float) -> list[Event]:
        """Run what is due: ring timeouts (reported as no_answer misses, with
        QUEUE_OFFER_CANCEL), wrap-up ends, max_wait expiry (QUEUE_TIMEOUT and
        LEAVE reason timeout: the lead sends the caller to ev["overflow"]),
        retry delays and callback retries ending, skill widening. Returns
        drain_events() (everything queued so far). Call dispatch() after."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            t = heapq.heappop(timers)
            if self._valid(t):
                self._fire(t, now)
        return self.drain_events()

    def next_deadline(self) -> float | None:
        """When tick() must run next (None: nothing pending). May be in the past."""
        timers = self._timers
        while timers and not self._valid(timers[0]):
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def _push(self, when: float, kind: int, key: str, sub: str, token: int) -> None:
        heapq.heappush(self._timers, (when, next(self._tn), kind, key, sub, token))

    def _valid(self, t: _Timer) -> bool:
        when, _, kind, key, sub, token = t
        if kind == _WRAPUP:
            a = self._agents.get(key)
            return a is not None and a.wrapup_until == when
        c = self._callers.get(key)
        if c is None:
            return False
        if kind == _OFFER:
            return c.state is CallerState.OFFERED and c.offer_seq == token
        if c.seq != token:
            return False
        if kind == _MAXWAIT:
            return self._max_wait_deadline(c) == when
        if kind == _RETRY:
            return c.retry_until.get(sub) == when
        if kind == _WIDEN:
            return self._next_widen(c) == when
        if kind == _NOTBEFORE:
            return c.state is CallerState.WAITING and c.not_before == when
        return False

    def _fire(self, t: _Timer, now: float) -> None:
        _, _, kind, key, sub, _ = t
        if kind == _WRAPUP:
            a = self._agents[key]
            a.wrapup_until = None
            self._refresh(a, now, "wrapup_end")
            self._mark_agent_queues(a)
            self._gc_agent(a)
            return
        c = self._callers[key]
        if kind == _OFFER:
            for aid in list(c.offer_agents):
                self._fail(c, self._agents[aid], now, "no_answer", cancel="timeout")
        elif kind == _MAXWAIT:
            spec = self._queues[c.queue].spec
            self._withdraw(c, now, "max_wait")
            wait = now - c.joined_at
            self._emit(
                QUEUE_TIMEOUT,
                queue=c.queue,
                caller=c.id,
                number=c.number,
                overflow=spec.overflow,
                wait=wait,
            )
            self._finish(c, now, "timeout", "timeout", overflow=spec.overflow)
        elif kind == _RETRY:
            del c.retry_until[sub]
            self._dirty.add(c.queue)
        elif kind == _WIDEN:
            c.widen_steps += 1
            self._emit(
                QUEUE_CALLER_SKILLS,
                queue=c.queue,
                caller=c.id,
                step=c.widen_steps,
                skills=effective_skills(c.required_skills, c.widen_steps),
            )
            self._dirty.add(c.queue)
            nxt = self._next_widen(c)
            if nxt is not None:
                self._push(nxt, _WIDEN, c.id, "", c.seq)
        elif kind == _NOTBEFORE:
            self._dirty.add(c.queue)

    def _max_wait_deadline(self, c: Caller) -> float | None:
        if c.callback or c.state is CallerState.CONNECTED:
            return None
        q = self._queues.get(c.queue)
        if q is None or q.spec.max_wait <= 0:
            return None
        return c.joined_at + q.spec.max_wait

    def _next_widen(self, c: Caller) -> float | None:
        if c.state is CallerState.CONNECTED or not c.required_skills:
            return None
        q = self._queues.get(c.queue)
        if q is None or q.spec.skill_widen_after <= 0:
            return None
        if c.widen_steps >= max(c.required_skills.values()) - 1:
            return None  # every level is down to 1 already
        return c.joined_at + (c.widen_steps + 1) * q.spec.skill_widen_after

    def _arm_caller_timers(self, c: Caller) -> None:
        d = self._max_wait_deadline(c)
        if d is not None:
            self._push(d, _MAXWAIT, c.id, "", c.seq)
        w = self._next_widen(c)
        if w is not None:
            self._push(w, _WIDEN, c.id, "", c.seq)

    # ======================================================================
    # outputs and queries
    # ======================================================================

    def drain_events(self) -> list[Event]:
        """Events queued since the last drain, oldest first (each a dict with
        "event" = its name and its fields)."""
        ev, self._events = self._events, []
        return ev

    def drain_records(self) -> list[Record]:
        """Finished QueueCallRecords and AgentStateRecords (monotonic times:
        store r.shifted(time.time() - loop.time()))."""
        out, self._records = self._records, []
        return out

    def split_spans(self, now: float) -> None:
        """Close every agent's open state span at `now` (into drain_records)
        and open a new one: call it periodically (e.g. every 15 minutes) and
        before shutting down, so stored agent statistics include time spent
        in the current state."""
        for a in self._agents.values():
            # rings are short and each span is one offer: never split them
            if a.span_state in (AgentState.LOGGED_OUT, AgentState.RINGING):
                continue
            if now > a.span_start:
                self._close_span(a, now, "")
                a.span_start = now

    def get_agent(self, agent: str) -> Agent | None:
        return self._agents.get(agent)

    def get_caller(self, caller_id: str) -> Caller | None:
        return self._callers.get(caller_id)

    def get_spec(self, queue: str) -> QueueSpec | None:
        q = self._queues.get(queue)
        return q.spec if q is not None else None

    def queue_names(self) -> list[str]:
        return list(self._queues)

    def agent_ids(self) -> list[str]:
        return sorted(self._agents)

    def members(self, queue: str) -> list[tuple[str, Membership]]:
        """(agent, membership) in member order."""
        q = self._queues.get(queue)
        if q is None:
            return []
        return sorted(q.members.items(), key=lambda kv: kv[1].order)

    def positions(self, queue: str) -> list[tuple[str, int]]:
        """(caller id, position) of the callers in the queue (waiting, being
        offered, or pending callbacks), in queue order."""
        q = self._queues.get(queue)
        return [] if q is None else [(c.id, c.position) for c in q.callers]

    def estimated_wait(self, caller_id: str, now: float) -> float | None:
        """Seconds; formula in ccswitch/apps/acd/stats.py. None: unknown."""
        c = self._callers.get(caller_id)
        if c is None or c.position == 0:
            return None
        q = self._queues[c.queue]
        available = staffed = 0
        for aid, ms in q.members.items():
            if not ms.logged_in:
                continue
            a = self._agents[aid]
            if a.state is AgentState.AVAILABLE:
                available += 1
            if not a.paused:
                staffed += 1
        return estimated_wait(c.position, available, staffed, q.history, now - c.joined_at)

    def queue_status(self, queue: str, now: float) -> QueueLiveStats:
        q = self._queues.get(queue)
        if q is None:
            raise AcdError(f"no queue {queue!r}")
        counts = dict.fromkeys(AgentState, 0)
        logged_in = 0
        for aid, ms in q.members.items():
            if ms.logged_in:
                logged_in += 1
                counts[self._agents[aid].state] += 1
        h = q.history
        return QueueLiveStats(
            queue=queue,
            strategy=q.spec.strategy,
            waiting=len(q.callers),
            ringing_callers=sum(1 for c in q.callers if c.state is CallerState.OFFERED),
            callbacks=sum(1 for c in q.callers if c.callback),
            longest_wait=max((now - c.joined_at for c in q.callers if not c.callback), default=0.0),
            logged_in=logged_in,
            available=counts[AgentState.AVAILABLE],
            ringing=counts[AgentState.RINGING],
            on_call=counts[AgentState.ON_CALL],
            wrap_up=counts[AgentState.WRAP_UP],
            paused=counts[AgentState.PAUSED],
            offered=h.offered,
            answered=h.answered,
            abandoned=h.abandoned,
            timeouts=h.timeouts,
            service_level=service_level(h.answered_within, h.sl_answered, h.unanswered_late),
            avg_wait=h.avg_wait(),
            avg_handle=h.avg_handle(),
        )

    def agent_status(self, agent: str, now: float) -> AgentLiveStats:
        a = self._agents.get(agent)
        if a is None:
            raise AcdError(f"unknown agent {agent}")
        return AgentLiveStats(
            agent=a.id,
            name=a.name,
            state=str(a.state),
            since=a.since,
            duration=max(0.0, now - a.since),
            pause_reason=a.pause_reason if a.paused else "",
            queues=tuple(a.queues()),
            calls_taken=dict(a.calls_taken),
            calls_total=a.calls_total,
            missed_offers=a.missed_offers,
            busy_direct=a.busy_direct,
            last_call_end=a.last_call_end,
            wrapup_until=a.wrapup_until,
        )

    def counts(self) -> dict[str, int]:
        """Sizes of the internal tables (for leak checks and the CLI)."""
        return {
            "queues": len(self._queues),
            "agents": len(self._agents),
            "callers": len(self._callers),
            "busy": len(self._busy),
            "available": len(self._available),
            "timers": len(self._timers),
            "dirty": len(self._dirty),
            "events": len(self._events),
            "records": len(self._records),
        }

    def check_invariants(self) -> list[str]:
        """Cross-checks of the internal state; [] when consistent (tests, debug)."""
        errs: list[str] = []
        for qn, q in self._queues.items():
            keys = [c.key for c in q.callers]
            if keys != sorted(keys):
                errs.append(f"{qn}: callers out of order")
            for i, c in enumerate(q.callers, 1):
                if c.position != i:
                    errs.append(f"{qn}: {c.id} position {c.position} != {i}")
                if self._callers.get(c.id) is not c:
                    errs.append(f"{qn}: listed caller {c.id} not registered")
                if c.queue != qn or c.state not in (CallerState.WAITING, CallerState.OFFERED):
                    errs.append(f"{qn}: listed caller {c.id} in state {c.state}")
            for aid, ms in q.members.items():
                a = self._agents.get(aid)
                if a is None or a.memberships.get(qn) is not ms:
                    errs.append(f"{qn}: membership of {aid} not shared")
        listed = {c.id for q in self._queues.values() for c in q.callers}
        for cid, c in self._callers.items():
            if c.state is CallerState.GONE:
                errs.append(f"gone caller {cid} still registered")
            if c.state in (CallerState.WAITING, CallerState.OFFERED) and cid not in listed:
                errs.append(f"caller {cid} ({c.state}) not in its queue")
            if c.state is CallerState.WAITING and c.offer_agents:
                errs.append(f"waiting caller {cid} has offer agents")
            if c.state is CallerState.OFFERED:
                if not c.offer_agents:
                    errs.append(f"offered caller {cid} has no agent")
                if len(c.offer_agents) > 1 and not c.offer_ringall:
                    errs.append(f"caller {cid} offered to {c.offer_agents} without ringall")
                if len(set(c.offer_agents)) != len(c.offer_agents):
                    errs.append(f"caller {cid} offered twice to one agent")
                for aid in c.offer_agents:
                    a = self._agents.get(aid)
                    if a is None or a.offer_caller != cid:
                        errs.append(f"caller {cid} offered to {aid} who is not ringing for it")
            if c.state is CallerState.CONNECTED:
                a = self._agents.get(c.agent or "")
                if a is None or a.call_caller != cid:
                    errs.append(f"connected caller {cid} without its agent")
        if not self._available <= set(self._agents):
            errs.append("available set holds unknown agents")
        for aid, a in self._agents.items():
            st, _, _ = self._derive(a)
            if st is not a.state:
                errs.append(f"agent {aid} state {a.state} != derived {st}")
            if a.offer_caller is not None:
                oc = self._callers.get(a.offer_caller)
                if oc is None or aid not in oc.offer_agents:
                    errs.append(f"agent {aid} ringing for a caller without that offer")
                elif not (a.memberships.get(oc.queue) and a.memberships[oc.queue].logged_in):
                    errs.append(f"agent {aid} ringing for {oc.queue} without being logged in")
                if a.call_caller is not None:
                    errs.append(f"agent {aid} ringing while on a queue call")
            if a.call_caller is not None:
                cc = self._callers.get(a.call_caller)
                if cc is None or cc.agent != aid or cc.state is not CallerState.CONNECTED:
                    errs.append(f"agent {aid} on a call with a caller not connected to it")
            if (a.state is AgentState.AVAILABLE) != (aid in self._available):
                errs.append(f"agent {aid} available set out of sync")
            if a.busy_direct != (aid in self._busy):
                errs.append(f"agent {aid} busy flag out of sync")
            if not a.logged_in and (a.paused or a.wrapup_until is not None):
                errs.append(f"logged-out agent {aid} paused or in wrap-up")
            for qn, ms in a.memberships.items():
                mq = self._queues.get(qn)
                if mq is None or mq.members.get(aid) is not ms:
                    errs.append(f"agent {aid}: membership of {qn} not shared")
        return errs

    # ======================================================================
    # internals
    # ======================================================================

    def _emit(self, kind: str, /, **fields: Any) -> None:
        fields["event"] = kind
        self._events.append(fields)

    def _emit_reject(self, queue: str, caller_id: str, number: str, reason: str) -> None:
        self._emit(
            QUEUE_CALLER_LEAVE,
            queue=queue,
            caller=caller_id,
            number=number,
            reason=reason,
            position=0,
            wait=0.0,
            agent="",
            callback=False,
            keeps_place=False,
            joined=False,
        )

    def _get_or_create_agent(self, aid: str, now: float) -> Agent:
        a = self._agents.get(aid)
        if a is None:
            a = Agent(id=aid, name=aid, since=now, span_start=now)
            a.busy_direct = aid in self._busy
            self._agents[aid] = a
        return a

    def _gc_agent(self, a: Agent) -> None:
        if (
            not a.memberships
            and a.offer_caller is None
            and a.call_caller is None
            and a.wrapup_until is None
            and self._agents.get(a.id) is a
        ):
            del self._agents[a.id]
            self._available.discard(a.id)

    def _logged_in_agent(self, agent: str) -> Agent:
        a = self._agents.get(agent)
        if a is None:
            raise AcdError(f"unknown agent {agent}")
        if not a.logged_in:
            raise AcdError(f"agent {agent} is not logged in")
        return a

    def _any_logged_in(self, q: _Queue) -> bool:
        return any(ms.logged_in for ms in q.members.values())

    def _check_empty(self, q: _Queue, now: float) -> None:
        """leave_when_empty: with no agent logged in any more, waiting callers
        leave with reason "empty" (pending callbacks stay)."""
        if not q.spec.leave_when_empty or self._any_logged_in(q):
            return
        for c in [c for c in q.callers if not c.callback]:
            self._withdraw(c, now, "empty")
            self._finish(c, now, "empty", "empty")

    def _mark_agent_queues(self, a: Agent) -> None:
        if a.state is AgentState.AVAILABLE:
            for qn, ms in a.memberships.items():
                if ms.logged_in:
                    self._dirty.add(qn)

    def _insert(self, q: _Queue, c: Caller) -> None:
        lst = q.callers
        key = c.key
        lo, hi = 0, len(lst)
        while lo < hi:  # bisect on Caller.key
            mid = (lo + hi) // 2
            if lst[mid].key < key:
                lo = mid + 1
            else:
                hi = mid
        lst.insert(lo, c)
        for i in range(lo, len(lst)):
            lst[i].position = i + 1

    def _remove(self, q: _Queue, c: Caller) -> None:
        lst = q.callers
        i = c.position - 1
        if not (0 <= i < len(lst) and lst[i] is c):
            i = lst.index(c)
        del lst[i]
        c.position = 0
        for j in range(i, len(lst)):
            lst[j].position = j + 1

    def _withdraw(self, c: Caller, now: float, cancel: str) -> list[str]:
        """Stop every ring in progress for `c` (no miss counted)."""
        stop = list(c.offer_agents)
        for aid in stop:
            self._release(c, self._agents[aid], now, "cancelled", cancel)
        return stop

    def _release(
        self,
        c: Caller,
        a: Agent,
        now: float,
        result: str,
        cancel: str | None,
        why: str | None = None,
    ) -> None:
        """`a` stops ringing for `c`. cancel: the reason for a QUEUE_OFFER_CANCEL
        (the ACD decided, the lead must stop the ring); None: the lead told us."""
        c.offer_agents.remove(a.id)
        a.offer_caller = None
        if cancel is not None:
            self._emit(QUEUE_OFFER_CANCEL, queue=c.queue, caller=c.id, agent=a.id, reason=cancel)
        if not c.offer_agents:
            c.state = CallerState.WAITING
            self._dirty.add(c.queue)
        self._refresh(a, now, why or result, result=result)
        self._mark_agent_queues(a)
        self._gc_agent(a)

    def _finish(self, c: Caller, now: float, outcome: str, reason: str, **extra: Any) -> None:
        """A caller not (or no longer) connected leaves the queue for good."""
        q = self._queues.get(c.queue)
        position = c.position
        wait = now - c.joined_at
        if q is not None:
            if position:
                self._remove(q, c)
            h = q.history
            if outcome == "abandoned":
                h.abandoned += 1
            elif outcome == "timeout":
                h.timeouts += 1
            late = wait > q.spec.service_level
            if outcome in ("abandoned", "timeout", "empty") and late and not c.callback:
                h.unanswered_late += 1
        self._emit(
            QUEUE_CALLER_LEAVE,
            queue=c.queue,
            caller=c.id,
            number=c.number,
            reason=reason,
            position=position,
            wait=wait,
            agent="",
            callback=c.callback,
            keeps_place=False,
            joined=True,
            **extra,
        )
        self._record(c, now, outcome, "", None, 0.0, 0.0)
        c.state = CallerState.GONE
        del self._callers[c.id]

    def _record(
        self,
        c: Caller,
        now: float,
        outcome: str,
        agent: str,
        answered: float | None,
        talk: float,
        wrapup: float,
    ) -> None:
        q = self._queues.get(c.queue)
        self._records.append(
            QueueCallRecord(
                queue=c.queue,
                caller_id=c.id,
                number=c.number,
                joined=c.joined_at,
                answered=answered,
                ended=now,
                agent=agent,
                outcome=outcome,
                wait=(answered if answered is not None else now) - c.joined_at,
                talk=talk,
                wrapup=wrapup,
                callback=c.callback,
                priority=c.priority,
                service_level=q.spec.service_level if q is not None else 0.0,
                position=c.join_position,
            )
        )

    def _derive(self, a: Agent) -> tuple[AgentState, str, str]:
        if a.offer_caller is not None:
            return AgentState.RINGING, "", self._callers[a.offer_caller].queue
        if a.call_caller is not None:
            return AgentState.ON_CALL, "", self._callers[a.call_caller].queue
        if not a.logged_in:
            return AgentState.LOGGED_OUT, "", ""
        if a.busy_direct:
            return AgentState.ON_CALL, "direct", ""
        if a.wrapup_until is not None:
            return AgentState.WRAP_UP, "", a.wrapup_queue
        if a.paused:
            return AgentState.PAUSED, a.pause_reason, ""
        return AgentState.AVAILABLE, "", ""

    def _refresh(self, a: Agent, now: float, why: str, result: str = "") -> None:
        """Recompute the agent's state; on a change close the span and emit AGENT_STATE."""
        state, reason, queue = self._derive(a)
        if state is a.span_state and reason == a.span_reason and queue == a.span_queue:
            return
        self._close_span(a, now, result)
        prev = a.state
        a.state = state
        a.since = now
        if state is AgentState.AVAILABLE:
            self._available.add(a.id)
        else:
            self._available.discard(a.id)
        a.span_state = state
        a.span_reason = reason
        a.span_queue = queue
        a.span_start = now
        self._emit(
            AGENT_STATE,
            agent=a.id,
            name=a.name,
            state=str(state),
            prev_state=str(prev),
            reason=why,
            pause_reason=a.pause_reason if state is AgentState.PAUSED else "",
            queue=queue,
        )

    def _close_span(self, a: Agent, now: float, result: str) -> None:
        st = a.span_state
        if st is AgentState.LOGGED_OUT:
            return
        if now <= a.span_start and st is not AgentState.RINGING:
            return  # zero-length spans are noise, except rings (each is an offer)
        self._records.append(
            AgentStateRecord(
                agent=a.id,
                state=str(st),
                reason=a.span_reason,
                queue=a.span_queue,
                start=a.span_start,
                end=now,
                result=result if st is AgentState.RINGING else "",
            )
        )


def _caller_key(c: Caller) -> tuple[int, int]:
    return c.key


def _order(ms: Membership) -> int:
    return ms.order
