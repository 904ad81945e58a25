"""Agent selection: which free agents to ring for one caller.

`select()` gets the candidates already filtered (free, logged in to the
queue, not in retry delay for this caller, having the required skills) and
applies penalty first, then the queue's strategy:

- penalty: only the lowest penalty present among the candidates is used
  (Asterisk: higher-penalty members ring only when no lower-penalty member
  is free);
- ringall: every candidate of that penalty, in member order;
- linear: the first in member order;
- roundrobin: the first in member order after the last agent this queue
  offered a call to (wrapping around);
- leastrecent: the longest idle since the end of their last call (any
  queue); agents who never took a call come first;
- fewestcalls: fewest calls taken in this queue; tie: longest idle;
- random: uniform (the rng is injectable);
- skills: highest total of the agent's levels in the required skills; tie:
  longest idle.

Remaining ties break on member order, so every strategy but random is
deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from ccswitch.apps.acd.model import Agent, Membership

__all__ = ["Candidate", "Rng", "effective_skills", "matches", "select"]

Candidate = tuple[Agent, Membership]


class Rng(Protocol):
    def random(self) -> float: ...


def effective_skills(required: Mapping[str, int], steps: int) -> dict[str, int]:
    """Required levels after `steps` widening steps: each drops by one per step, never below 1
    (a requirement already at 1 or below stays as it is: the skill itself is still needed)."""
    if steps <= 0:
        return dict(required)
    return {s: (lvl if lvl <= 1 else max(1, lvl - steps)) for s, lvl in required.items()}


def matches(skills: Mapping[str, int], required: Mapping[str, int]) -> bool:
    for s, lvl in required.items():
        have = skills.get(s)
        if have is None or have < lvl:
            return False
    return True


def _idle_key(a: Agent) -> tuple[bool, float]:
    # Never-called agents first, then the earliest end of last call.
    return (a.last_call_end is not None, a.last_call_end if a.last_call_end is not None else 0.0)


def select(
    strategy: str,
    queue: str,
    candidates: Sequence[Candidate],
    required: Mapping[str, int],
    rr_last_order: int | None,
    rng: Rng,
) -> list[Agent]:
    """The agents to ring (all of them for ringall, else one); [] if no candidate."""
    if not candidates:
        return []
    best = min(m.penalty for _, m in candidates)
    group = [c for c in candidates if c[1].penalty == best]
    if strategy == "ringall":
        group.sort(key=lambda c: c[1].order)
        return [a for a, _ in group]
    if len(group) == 1:
        return [group[0][0]]
    chosen: Candidate
    if strategy == "linear":
        chosen = min(group, key=lambda c: c[1].order)
    elif strategy == "roundrobin":
        last = -1 if rr_last_order is None else rr_last_order
        chosen = min(group, key=lambda c: (c[1].order <= last, c[1].order))
    elif strategy == "leastrecent":
        chosen = min(group, key=lambda c: (_idle_key(c[0]), c[1].order))
    elif strategy == "fewestcalls":
        chosen = min(
            group, key=lambda c: (c[0].calls_taken.get(queue, 0), _idle_key(c[0]), c[1].order)
        )
    elif strategy == "random":
        group.sort(key=lambda c: c[1].order)
        chosen = group[min(len(group) - 1, int(rng.random() * len(group)))]
    elif strategy == "skills":
        chosen = min(
            group,
            key=lambda c: (
                -sum(c[1].skills.get(s, 0) for s in required),
                _idle_key(c[0]),
                c[1].order,
            ),
        )
    else:  # QueueSpec validates the name
        raise ValueError(f"unknown strategy {strategy!r}")
    return [chosen[0]]
