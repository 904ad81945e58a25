"""Live queue statistics and the estimated wait time (pure, in memory).

Interval statistics (15-minute buckets, days) come from the stored records:
see ccswitch/storage/queue_log.py, which uses the same service-level formula
as `service_level()` here.

Service level (per queue threshold T seconds):

    SL = answered with wait <= T / (answered + unanswered with wait > T)

where "unanswered" = abandoned, timeout and empty (callers who hung up or
were sent away); callers who left for another destination and callers who
gave up within T ("short abandons", not the queue's fault) are left out, and
so are callbacks altogether (their wait is not time spent on hold; they are
counted separately). Asterisk's is answered-within-T / (answered +
abandoned): it counts short abandons against the queue and ignores timeouts.
No call in the denominator: SL is None.

Estimated wait (announced to a caller at `position`):

    EWT = 0                                   if position <= a
    EWT = (position - a) * H / n              otherwise

with a = agents available now in the queue, n = agents logged in to the
queue and not paused (available, ringing, on a call or in wrap-up: those who
will take calls), H = mean handle time (talk + wrap-up) of the last 20
answered calls of the queue. With no handle history yet: the mean of the
last 20 answered waits minus what this caller has already waited (>= 0).
No history at all, or n == 0: None (announce nothing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = [
    "HISTORY",
    "AgentLiveStats",
    "QueueHistory",
    "QueueLiveStats",
    "estimated_wait",
    "service_level",
]

HISTORY = 20  # answered calls remembered per queue for the estimates


def service_level(within: int, answered: int, unanswered_late: int) -> float | None:
    """Percentage; see the module docstring."""
    den = answered + unanswered_late
    return None if den == 0 else 100.0 * within / den


@dataclass(slots=True)
class QueueHistory:
    """Counters since the ACD started (they survive reloads) and recent history."""

    waits: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    handles: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))
    offered: int = 0  # callers who joined
    answered: int = 0
    sl_answered: int = 0  # answered, callbacks excluded
    answered_within: int = 0  # of which with wait <= service_level
    abandoned: int = 0
    timeouts: int = 0
    unanswered_late: int = 0  # abandoned / timeout / empty with wait > service_level
    callbacks: int = 0  # callback requests

    def avg_wait(self) -> float | None:
        return sum(self.waits) / len(self.waits) if self.waits else None

    def avg_handle(self) -> float | None:
        return sum(self.handles) / len(self.handles) if self.handles else None


def estimated_wait(
    position: int, available: int, staffed: int, history: QueueHistory, waited: float
) -> float | None:
    """See the module docstring."""
    if staffed <= 0 or position <= 0:
        return None
    h = history.avg_handle()
    if h is not None:
        ahead = position - available
        return 0.0 if ahead <= 0 else ahead * h / staffed
    w = history.avg_wait()
    if w is not None:
        return max(0.0, w - waited)
    return None


@dataclass(frozen=True, slots=True)
class QueueLiveStats:
    queue: str
    strategy: str
    waiting: int  # callers in the queue (waiting or being offered), callbacks included
    ringing_callers: int  # of which being offered to an agent now
    callbacks: int  # of which callbacks (the caller hung up and keeps the place)
    longest_wait: float
    logged_in: int  # agents logged in to this queue, by state:
    available: int
    ringing: int
    on_call: int  # queue calls (any queue) and direct calls
    wrap_up: int
    paused: int
    offered: int  # counters since the ACD started
    answered: int
    abandoned: int
    timeouts: int
    service_level: float | None  # %, of the calls counted since start
    avg_wait: float | None  # mean of the last 20 answered waits
    avg_handle: float | None  # mean talk + wrap-up of the last 20 answered calls


@dataclass(frozen=True, slots=True)
class AgentLiveStats:
    agent: str
    name: str
    state: str
    since: float
    duration: float  # in this state, seconds
    pause_reason: str
    queues: tuple[str, ...]  # logged in to
    calls_taken: dict[str, int]
    calls_total: int
    missed_offers: int
    busy_direct: bool
    last_call_end: float | None
    wrapup_until: float | None
