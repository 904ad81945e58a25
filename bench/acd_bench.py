"""ACD decision core: time from an agent becoming free to the next offer.

    .venv/bin/python bench/acd_bench.py [--quick]

200 callers wait in a queue (a new caller joins whenever one is connected, so
the queue stays at 200), 50 agents take calls continuously: ring 0.5-3 s, talk
20-120 s, wrap-up 5 s, an occasional pause of 30 s. Simulated time, real CPU
time: for every agent becoming free we time the ACD calls the integration
layer makes at that moment, in the order it makes them:

- wrap-up expiry: tick(now) + dispatch(now)
- unpause:        unpause(agent, now) + dispatch(now)
- no wrap-up:     call_ended(agent, now) + dispatch(now)

and print p50 / p99 / max in microseconds, per strategy (the skills run has
callers needing one of 4 skills at levels 1-3 and widening after 30 s).
The issue's target for the whole path (SIP included) is p99 < 50 ms.
"""

from __future__ import annotations

import heapq
import random
import statistics
import sys
import time

from ccswitch.apps.acd import Acd, Member, Offer, QueueSpec

QUICK = "--quick" in sys.argv
CALLERS = 200
AGENTS = 50
FREES = 3_000 if QUICK else 20_000
SKILLS = ("en", "es", "fr", "de")


def run(strategy: str, wrapup: float, seed: int = 1) -> tuple[list[float], float, int]:
    rnd = random.Random(seed)
    skills = strategy == "skills"
    members = [
        Member(
            f"a{i}",
            penalty=i % 3 if strategy == "linear" else 0,
            skills={s: rnd.randint(1, 3) for s in rnd.sample(SKILLS, 2)} if skills else {},
        )
        for i in range(AGENTS)
    ]
    spec = QueueSpec(
        "support",
        strategy=strategy,
        ring_timeout=15,
        retry_delay=5,
        wrapup=wrapup,
        skill_widen_after=30 if skills else 0,
        members=members,
    )
    acd = Acd(rng=random.Random(seed))
    now = 0.0
    acd.configure([spec], now)
    n = 0

    def join() -> None:
        nonlocal n
        n += 1
        req = {rnd.choice(SKILLS): rnd.randint(1, 3)} if skills else None
        acd.join("support", f"c{n}", f"+1555{n:07d}", now, skills=req)

    for _ in range(CALLERS):
        join()
    for m in members:
        acd.login(m.agent, None, now)

    # (time, seq, kind, caller, agent)
    sim: list[tuple[float, int, str, str, str]] = []
    seq = 0

    def schedule(t: float, kind: str, caller: str = "", agent: str = "") -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(sim, (t, seq, kind, caller, agent))

    def ring(offers: list[Offer]) -> None:
        for o in offers:
            # ringall: the first agent to pick up wins, the others are released
            schedule(now + rnd.uniform(0.5, 3.0), "answer", o.caller, rnd.choice(o.agents))

    ring(acd.dispatch(now))
    samples: list[float] = []
    acd_cpu = 0.0
    calls = 0
    perf = time.perf_counter
    while len(samples) < FREES:
        deadline = acd.next_deadline()
        if deadline is not None and (not sim or deadline <= sim[0][0]):
            now = max(now, deadline)
            t0 = perf()
            acd.tick(now)
            offers = acd.dispatch(now)
            dt = perf() - t0
            acd_cpu += dt
            if offers:
                samples.append(dt)
            ring(offers)
            continue
        now, _, kind, caller, agent = heapq.heappop(sim)
        t0 = perf()
        if kind == "answer":
            if acd.offer_answered(caller, agent, now).ok:
                calls += 1
                join()
                schedule(now + rnd.uniform(20, 120), "hangup", caller, agent)
            offers = acd.dispatch(now)
            acd_cpu += perf() - t0
        elif kind == "hangup":
            acd.call_ended(agent, now)
            if rnd.random() < 0.02:
                acd.pause(agent, "break", now)
                schedule(now + 30, "unpause", "", agent)
            offers = acd.dispatch(now)
            dt = perf() - t0
            acd_cpu += dt
            if offers and wrapup == 0:
                samples.append(dt)
        else:  # unpause
            acd.unpause(agent, now)
            offers = acd.dispatch(now)
            dt = perf() - t0
            acd_cpu += dt
            if offers:
                samples.append(dt)
        ring(offers)
        acd.drain_events()
        acd.drain_records()
    assert not acd.check_invariants()
    return samples, acd_cpu, calls


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    print(
        f"python {sys.version.split()[0]}; {CALLERS} callers waiting, {AGENTS} agents, "
        f"{FREES} agent-free events per run"
    )
    print(
        f"{'strategy':<12} {'wrapup':>6} {'p50 us':>8} {'p99 us':>8} {'max us':>8}"
        f" {'ACD us/call':>12}"
    )
    for strategy, wrapup in (
        ("ringall", 5.0),
        ("roundrobin", 5.0),
        ("leastrecent", 5.0),
        ("fewestcalls", 5.0),
        ("random", 5.0),
        ("linear", 5.0),
        ("skills", 5.0),
        ("leastrecent", 0.0),
    ):
        samples, cpu, calls = run(strategy, wrapup)
        us = [s * 1e6 for s in samples]
        print(
            f"{strategy:<12} {wrapup:>6.0f} {statistics.median(us):>8.1f} {pct(us, 0.99):>8.1f}"
            f" {max(us):>8.1f} {cpu / max(1, calls) * 1e6:>12.1f}"
        )


if __name__ == "__main__":
    main()
