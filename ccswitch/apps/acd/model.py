"""The ACD's data model: states, queue settings, agents, callers, offers, events, records.

Plain data, no behaviour beyond small helpers; `core.Acd` owns every mutation.
The `Agent` and `Caller` objects that `Acd` hands out (get_agent, get_caller)
are its live objects: read them, never write them.

Events (dicts: "event" = the name, then these fields; times are not
included: the bus stamps them):

QUEUE_CALLER_JOIN    queue caller number position priority skills count
QUEUE_CALLER_LEAVE   queue caller number reason position wait agent callback
                     keeps_place joined [+ overflow (timeout) | target (transferred)]
    reason: answered (the caller is bridged to `agent`), abandoned, timeout,
    empty (leave_when_empty), transferred, queue_removed, cancelled (a pending
    callback cancelled), callback_failed, callback (keeps_place=True: the
    caller hung up to be called back, the entry stays), and for a join refused
    (joined=False, no JOIN before): full, empty.
    The caller is still on the line after timeout / empty / queue_removed:
    the lead sends it on (`overflow`, or the flow's error edge).
QUEUE_CALLER_OFFER   queue caller number agents timeout attempt callback priority position
QUEUE_OFFER_CANCEL   queue caller agent reason
    The lead must stop ringing `agent` for `caller`. reason: caller_left,
    answered_elsewhere (ringall), timeout (ring timeout), max_wait,
    agent_logout, agent_busy, callback, transferred, queue_removed, empty.
QUEUE_CALLER_SKILLS  queue caller step skills (the required levels after widening)
QUEUE_CALLBACK_REQUEST queue caller number position
QUEUE_CALL_END       queue caller agent outcome wait talk wrapup callback retry
    once per answered offer: outcome answered / transferred, or callback (the
    callback's customer was not reached; retry: the entry waits again)
QUEUE_TIMEOUT        queue caller number overflow wait
QUEUE_MEMBER_LOGIN   queue agent penalty
QUEUE_MEMBER_LOGOUT  queue agent reason (agent, config, queue_removed)
AGENT_STATE          agent name state prev_state reason pause_reason queue
    reason = what caused the change: login, logout, offer, answered,
    call_ended, wrapup_end, pause, unpause, autopause, no_answer, busy,
    rejected, error, cancelled, direct_call / direct_call_end, config...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

__all__ = [
    "AGENT_STATE",
    "ANSWER_REASONS",
    "FAIL_REASONS",
    "OUTCOMES",
    "QUEUE_CALLBACK_REQUEST",
    "QUEUE_CALLER_JOIN",
    "QUEUE_CALLER_LEAVE",
    "QUEUE_CALLER_OFFER",
    "QUEUE_CALLER_SKILLS",
    "QUEUE_CALL_END",
    "QUEUE_MEMBER_LOGIN",
    "QUEUE_MEMBER_LOGOUT",
    "QUEUE_OFFER_CANCEL",
    "QUEUE_TIMEOUT",
    "STRATEGIES",
    "AcdError",
    "Agent",
    "AgentState",
    "AgentStateRecord",
    "AnswerResult",
    "Caller",
    "CallerState",
    "Event",
    "JoinResult",
    "JoinStatus",
    "Member",
    "Membership",
    "Offer",
    "QueueCallRecord",
    "QueueSpec",
]

Event = dict[str, Any]

# -- event names (the lead publishes them as they are: bus.publish(ev.pop("event"), **ev)) --
QUEUE_CALLER_JOIN: Final = "QUEUE_CALLER_JOIN"
QUEUE_CALLER_LEAVE: Final = "QUEUE_CALLER_LEAVE"
QUEUE_CALLER_OFFER: Final = "QUEUE_CALLER_OFFER"
QUEUE_OFFER_CANCEL: Final = "QUEUE_OFFER_CANCEL"
QUEUE_CALLER_SKILLS: Final = "QUEUE_CALLER_SKILLS"
QUEUE_CALLBACK_REQUEST: Final = "QUEUE_CALLBACK_REQUEST"
QUEUE_CALL_END: Final = "QUEUE_CALL_END"
QUEUE_TIMEOUT: Final = "QUEUE_TIMEOUT"
QUEUE_MEMBER_LOGIN: Final = "QUEUE_MEMBER_LOGIN"
QUEUE_MEMBER_LOGOUT: Final = "QUEUE_MEMBER_LOGOUT"
AGENT_STATE: Final = "AGENT_STATE"

STRATEGIES: Final[frozenset[str]] = frozenset(
    {"ringall", "roundrobin", "leastrecent", "fewestcalls", "random", "linear", "skills"}
)
# Why an offer to one agent failed, as the lead reports it.
FAIL_REASONS: Final[frozenset[str]] = frozenset({"no_answer", "busy", "rejected", "error"})
# Ringing span results (agent_state rows): the fail reasons plus these.
ANSWER_REASONS: Final[frozenset[str]] = frozenset({"answered", "cancelled"})
# Queue call outcomes (queue_call rows).
OUTCOMES: Final[frozenset[str]] = frozenset(
    {"answered", "transferred", "abandoned", "timeout", "empty", "callback"}
)


class AcdError(ValueError):
    """A request that cannot be honoured as asked (unknown queue or agent, not a member...)."""


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


class CallerState(StrEnum):
    WAITING = "waiting"
    OFFERED = "offered"
    CONNECTED = "connected"
    GONE = "gone"


class JoinStatus(StrEnum):
    OK = "ok"
    FULL = "full"
    EMPTY = "empty"
    UNKNOWN_QUEUE = "unknown_queue"


@dataclass(frozen=True, slots=True)
class Member:
    """A static queue member from config. Member order is the `linear` order."""

    agent: str
    penalty: int = 0
    skills: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class QueueSpec:
    """One queue's settings, built by the lead from config.yaml.

    `members` items may be `Member`s or plain `(agent, penalty, skills)` tuples.
    """

    name: str
    strategy: str = "ringall"
    ring_timeout: float = 15.0
    retry_delay: float = 5.0
    wrapup: float = 0.0
    max_callers: int = 0  # 0 = unlimited
    join_empty: bool = True
    leave_when_empty: bool = False
    max_wait: float = 0.0  # 0 = no limit
    overflow: str = ""  # opaque to the ACD, echoed in QUEUE_TIMEOUT / LEAVE(timeout)
    service_level: float = 20.0
    autopause_after: int = 0  # 0 = never
    skill_widen_after: float = 0.0  # 0 = never widen
    vip_numbers: Sequence[str] = ()
    vip_boost: int = 10  # added to the priority of callers from vip_numbers
    members: Sequence[Member | tuple[str, int, Mapping[str, int]]] = ()
    dynamic_members: bool = False  # may non-members log in (with login(..., penalty=))?

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise AcdError(f"queue {self.name!r}: unknown strategy {self.strategy!r}")
        for attr in ("ring_timeout", "retry_delay", "wrapup", "max_wait", "skill_widen_after"):
            if getattr(self, attr) < 0:
                raise AcdError(f"queue {self.name!r}: {attr} must be >= 0")
        if self.ring_timeout <= 0:
            raise AcdError(f"queue {self.name!r}: ring_timeout must be > 0")

    def member_list(self) -> list[Member]:
        out: list[Member] = []
        seen: set[str] = set()
        for m in self.members:
            mem = m if isinstance(m, Member) else Member(m[0], int(m[1]), dict(m[2]))
            if mem.agent in seen:
                raise AcdError(f"queue {self.name!r}: agent {mem.agent!r} listed twice")
            seen.add(mem.agent)
            out.append(mem)
        return out


@dataclass(slots=True)
class Membership:
    """An agent's place in one queue."""

    penalty: int = 0
    skills: dict[str, int] = field(default_factory=dict)
    logged_in: bool = False
    static: bool = True  # from QueueSpec.members (False: a dynamic login)
    order: int = 0  # position in the queue's member order (linear, roundrobin)


@dataclass(slots=True, eq=False)
class Agent:
    """An agent: one extension. `state` is derived from the fields below it."""

    id: str
    name: str
    state: AgentState = AgentState.LOGGED_OUT
    since: float = 0.0
    pause_reason: str = ""
    memberships: dict[str, Membership] = field(default_factory=dict)
    calls_taken: dict[str, int] = field(default_factory=dict)  # per queue
    calls_total: int = 0
    last_call_end: float | None = None
    missed_offers: int = 0  # consecutive
    busy_direct: bool = False
    wrapup_until: float | None = None
    paused: bool = False
    offer_caller: str | None = None  # the caller this agent is ringing for
    call_caller: str | None = None  # the queue caller this agent is talking to
    wrapup_queue: str = ""
    # the open state span (for AgentStateRecord)
    span_state: AgentState = AgentState.LOGGED_OUT
    span_reason: str = ""
    span_queue: str = ""
    span_start: float = 0.0

    @property
    def logged_in(self) -> bool:
        return any(m.logged_in for m in self.memberships.values())

    def queues(self) -> list[str]:
        """Queues this agent is logged in to."""
        return [q for q, m in self.memberships.items() if m.logged_in]


@dataclass(slots=True, eq=False)
class Caller:
    """A caller's entry in a queue (also a pending callback)."""

    id: str
    number: str
    queue: str
    priority: int
    required_skills: dict[str, int]
    joined_at: float
    seq: int  # global join order: FIFO tie-break within a priority
    state: CallerState = CallerState.WAITING
    position: int = 0  # 1-based while waiting or offered; 0 once connected or gone
    join_position: int = 0
    callback: bool = False
    # offer in progress
    offer_agents: list[str] = field(default_factory=list)
    offer_deadline: float = 0.0
    offer_seq: int = 0
    offer_started: float = 0.0
    offer_ringall: bool = False
    attempts: int = 0
    # agent -> time before which this agent is not offered this caller again
    retry_until: dict[str, float] = field(default_factory=dict)
    not_before: float = 0.0  # callback retry: not offered before this
    # connected
    agent: str | None = None
    answered_at: float | None = None  # when caller and agent were connected
    talk_from: float | None = None  # talk time starts here (callback: customer answered)
    widen_steps: int = 0  # skill widening steps already announced

    @property
    def key(self) -> tuple[int, int]:
        """Queue order: priority (higher first), then join order."""
        return (-self.priority, self.seq)


@dataclass(frozen=True, slots=True)
class JoinResult:
    status: JoinStatus
    position: int = 0

    @property
    def ok(self) -> bool:
        return self.status is JoinStatus.OK


@dataclass(frozen=True, slots=True)
class Offer:
    """Ring these agents for this caller (the agents are reserved: state ringing).

    The ACD expires the offer itself at `deadline` (tick): the lead need not
    time the ring, though it may use `timeout` for the INVITE too.
    `callback`: the caller is not on the line: ring the agent first and, once
    the agent answers, call `number` (see Acd.callback_answered).
    """

    caller: str
    queue: str
    agents: tuple[str, ...]
    timeout: float
    deadline: float
    number: str
    priority: int
    callback: bool
    attempt: int


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """offer_answered(): ok=False means the offer no longer exists (the caller
    left, the ring timed out, another agent answered first...): the lead must
    hang up the agent's answered leg. `stop_ringing`: agents whose ringing for
    this caller must stop (ringall)."""

    ok: bool
    stop_ringing: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QueueCallRecord:
    """One queue call, produced once the caller's time in the queue is over.

    Times are the ACD's (monotonic) clock: convert with shifted(wall - mono)
    before storing. wait = (answered or ended) - joined; talk = ended -
    talk start (0 if not answered); wrapup = the wrap-up the agent was given.
    """

    queue: str
    caller_id: str
    number: str
    joined: float
    answered: float | None
    ended: float
    agent: str
    outcome: str
    wait: float
    talk: float
    wrapup: float
    callback: bool
    priority: int
    service_level: float
    position: int  # at join

    def shifted(self, offset: float) -> QueueCallRecord:
        return dataclasses.replace(
            self,
            joined=self.joined + offset,
            answered=None if self.answered is None else self.answered + offset,
            ended=self.ended + offset,
        )


@dataclass(frozen=True, slots=True)
class AgentStateRecord:
    """One span of an agent's state (logged_out spans are not recorded).

    reason: the pause reason, or "direct" for on_call on a non-queue call;
    queue: for ringing / on_call / wrap_up of a queue call; result: how a
    ringing span ended (answered, no_answer, busy, rejected, error, cancelled).
    """

    agent: str
    state: str
    reason: str
    queue: str
    start: float
    end: float
    result: str = ""

    def shifted(self, offset: float) -> AgentStateRecord:
        return dataclasses.replace(self, start=self.start + offset, end=self.end + offset)
