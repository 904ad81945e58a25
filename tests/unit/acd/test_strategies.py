"""Each strategy, penalties, skills (with widening) and caller priority."""

from __future__ import annotations

import random

import pytest

from ccswitch.apps.acd import QUEUE_CALLER_SKILLS, QUEUE_OFFER_CANCEL, Member

from .conftest import Harness, offer_map, spec


def take_call(h: Harness, caller: str, talk: float = 10.0) -> str:
    """join, dispatch, answer, talk, hang up; returns the agent that took it."""
    h.join(caller)
    (o,) = h.dispatch()
    assert len(o.agents) == 1
    agent = o.agents[0]
    h.answer(caller, agent)
    h.advance(talk)
    h.end(agent)
    return agent


def test_ringall_rings_every_free_member_and_answer_releases_the_others() -> None:
    h = Harness(spec(strategy="ringall", members=["a1", "a2", "a3", "a4"]))
    h.login("a1", "a2", "a3", "a4")
    h.acd.pause("a3", "lunch", h.t)
    h.join("c1")
    (o,) = h.dispatch()
    assert o.agents == ("a1", "a2", "a4") and o.timeout == 10.0
    assert [h.state(a) for a in ("a1", "a2", "a3", "a4")] == [
        "ringing",
        "ringing",
        "paused",
        "ringing",
    ]
    h.ok()
    stop = h.answer("c1", "a2")
    assert sorted(stop) == ["a1", "a4"]
    cancels = h.named(QUEUE_OFFER_CANCEL)
    assert {(e["agent"], e["reason"]) for e in cancels} == {
        ("a1", "answered_elsewhere"),
        ("a4", "answered_elsewhere"),
    }
    assert [h.state(a) for a in ("a1", "a2", "a4")] == ["available", "on_call", "available"]
    # the released agents got no miss
    assert h.acd.get_agent("a1").missed_offers == 0  # type: ignore[union-attr]
    h.ok()


def test_ringall_partial_failures_keep_the_others_ringing() -> None:
    h = Harness(spec(strategy="ringall", members=["a1", "a2"]))
    h.login("a1", "a2")
    h.join("c1")
    h.dispatch()
    h.fail("c1", "a1", "rejected")
    c = h.acd.get_caller("c1")
    assert c is not None and str(c.state) == "offered" and c.offer_agents == ["a2"]
    assert h.state("a1") == "available"
    assert h.dispatch() == []  # the caller is still being offered: a1 is not added
    h.fail("c1", "a2", "busy")
    assert str(c.state) == "waiting"
    h.ok()


def test_ringall_uses_only_the_lowest_penalty_tier() -> None:
    h = Harness(
        spec(strategy="ringall", members=[Member("a1", 0), Member("a2", 1), Member("a3", 0)])
    )
    h.login("a1", "a2", "a3")
    h.join("c1")
    assert h.dispatch()[0].agents == ("a1", "a3")
    h.join("c2")
    # the penalty-0 tier is busy (ringing for c1): now the penalty-1 agent is used
    assert h.dispatch()[0].agents == ("a2",)


def test_penalty_higher_tier_only_when_lower_tier_is_busy() -> None:
    h = Harness(spec(strategy="linear", members=[Member("hi", 5), Member("lo", 0)]))
    h.login("hi", "lo")
    h.join("c1")
    h.join("c2")
    offers = offer_map(h.dispatch())
    # c1 first gets the penalty-0 agent; with it reserved, c2 gets the penalty-5 one
    assert offers == {"c1": ("lo",), "c2": ("hi",)}


def test_linear_always_hunts_from_the_first_member() -> None:
    h = Harness(spec(strategy="linear", members=["a1", "a2", "a3"]))
    h.login("a3", "a2", "a1")  # login order does not matter
    assert [take_call(h, f"c{i}") for i in range(3)] == ["a1", "a1", "a1"]
    h.join("x")
    h.join("y")
    assert offer_map(h.dispatch()) == {"x": ("a1",), "y": ("a2",)}


def test_roundrobin_continues_after_the_last_agent_and_wraps() -> None:
    h = Harness(spec(strategy="roundrobin", members=["a1", "a2", "a3"]))
    h.login("a1", "a2", "a3")
    assert [take_call(h, f"c{i}") for i in range(5)] == ["a1", "a2", "a3", "a1", "a2"]
    # the next one after a2 is a3; if a3 is paused, a1
    h.acd.pause("a3", "break", h.t)
    assert take_call(h, "c5") == "a1"


def test_roundrobin_remembers_a_missed_agent_and_moves_on() -> None:
    h = Harness(spec(strategy="roundrobin", members=["a1", "a2", "a3"], retry_delay=30))
    h.login("a1", "a2", "a3")
    h.join("c1")
    assert h.dispatch()[0].agents == ("a1",)
    h.fail("c1", "a1")
    assert h.dispatch()[0].agents == ("a2",)


def test_leastrecent_prefers_never_called_then_longest_idle() -> None:
    h = Harness(spec(strategy="leastrecent", members=["a1", "a2", "a3"]))
    h.login("a1", "a2", "a3")
    assert take_call(h, "c1") == "a1"  # nobody called yet: member order
    assert take_call(h, "c2") == "a2"  # a2, a3 never called
    assert take_call(h, "c3") == "a3"
    assert take_call(h, "c4") == "a1"  # a1's call ended first
    # a2 ended before a3 and a1: a2 next
    assert take_call(h, "c5") == "a2"


def test_fewestcalls_counts_calls_in_this_queue_only() -> None:
    h = Harness(
        spec("q", strategy="fewestcalls", members=["a1", "a2"]),
        spec("other", strategy="linear", members=["a2"]),
    )
    h.login("a1", "a2")
    # a2 takes 3 calls in "other"
    for i in range(3):
        h.join(f"o{i}", queue="other")
        (o,) = h.dispatch()
        h.answer(f"o{i}", o.agents[0])
        h.end(o.agents[0])
    assert take_call(h, "c1") == "a1"  # tie in q (0 / 0): longest idle = never called
    assert take_call(h, "c2") == "a2"  # a1 has 1 in q, a2 0 in q
    assert take_call(h, "c3") == "a1"  # 1 / 1: a1 idle longer
    a2 = h.acd.get_agent("a2")
    assert a2 is not None and a2.calls_taken == {"other": 3, "q": 1} and a2.calls_total == 4


def test_random_is_driven_by_the_injected_rng() -> None:
    def picks(seed: int) -> list[str]:
        h = Harness(spec(strategy="random", members=["a1", "a2", "a3", "a4"]), seed=seed)
        h.login("a1", "a2", "a3", "a4")
        return [take_call(h, f"c{i}") for i in range(40)]

    assert picks(7) == picks(7)
    assert picks(7) != picks(8)
    assert set(picks(7)) == {"a1", "a2", "a3", "a4"}


def test_random_respects_penalty() -> None:
    h = Harness(
        spec(strategy="random", members=[Member("a1", 1), Member("a2", 0), Member("a3", 0)])
    )
    h.login("a1", "a2", "a3")
    assert {take_call(h, f"c{i}") for i in range(30)} == {"a2", "a3"}


def skills_queue(**kw: object) -> Harness:
    members = [
        Member("es1", 0, {"es": 1}),
        Member("es3", 0, {"es": 3}),
        Member("both", 0, {"es": 2, "fr": 2}),
        Member("none", 0, {}),
    ]
    return Harness(spec(strategy="skills", members=members, **kw))  # type: ignore[arg-type]


def test_skills_best_match_first_and_hard_filter() -> None:
    h = skills_queue()
    h.login("es1", "es3", "both", "none")
    h.join("c1", skills={"es": 1})
    assert h.dispatch()[0].agents == ("es3",)  # highest level
    h.join("c2", skills={"es": 2, "fr": 1})
    assert h.dispatch()[0].agents == ("both",)  # the only one with both
    h.join("c3", skills={"fr": 1})
    assert h.dispatch() == []  # nobody else speaks French; "none" is not offered
    h.join("c4")  # no requirement: anyone free, best total (0 for all): longest idle
    assert h.dispatch()[0].agents == ("es1",)


def test_skills_tie_goes_to_the_longest_idle() -> None:
    members = [Member("x", 0, {"es": 2}), Member("y", 0, {"es": 2})]
    h = Harness(spec(strategy="skills", members=members))
    h.login("x", "y")
    assert take_call(h, "c1", talk=5) == "x"
    assert take_call(h, "c2", talk=5) == "y"  # x has a call end, y none
    assert take_call(h, "c3", talk=5) == "x"


def test_skills_widen_after_waiting() -> None:
    h = skills_queue(skill_widen_after=30)
    h.login("es1")
    h.join("c1", skills={"es": 3})
    assert h.dispatch() == []
    assert h.acd.next_deadline() == h.t + 30
    assert h.advance(29.9) == []
    assert h.advance(0.1) == []  # required level 2 at 30 s: es1 has 1
    assert [e["skills"] for e in h.named(QUEUE_CALLER_SKILLS)] == [{"es": 2}]
    offers = h.advance(30)  # level 1 at 60 s
    assert offer_map(offers) == {"c1": ("es1",)}
    assert [e["skills"] for e in h.named(QUEUE_CALLER_SKILLS)] == [{"es": 2}, {"es": 1}]
    h.ok()


def test_widening_never_drops_below_one_nor_drops_the_skill() -> None:
    h = skills_queue(skill_widen_after=10)
    h.login("none")
    h.join("c1", skills={"es": 2})
    assert h.advance(1000) == []  # "none" lacks the skill altogether
    assert len(h.named(QUEUE_CALLER_SKILLS)) == 1  # 2 -> 1, then no more steps
    assert h.acd.next_deadline() is None


def test_required_skills_filter_under_any_strategy() -> None:
    members = [Member("a1", 0, {}), Member("a2", 0, {"vip": 1})]
    h = Harness(spec(strategy="linear", members=members))
    h.login("a1", "a2")
    h.join("c1", skills={"vip": 1})
    assert h.dispatch()[0].agents == ("a2",)


def test_priority_first_then_fifo_and_positions() -> None:
    h = Harness(spec(strategy="linear", members=["a1"], vip_numbers=["555"]))
    assert h.join("c1") == 1
    assert h.join("c2") == 2
    assert h.join("vip", number="555") == 1  # boosted by vip_boost (10)
    assert h.join("p5", priority=5) == 2
    assert h.join("c3") == 5
    assert h.acd.positions("q") == [("vip", 1), ("p5", 2), ("c1", 3), ("c2", 4), ("c3", 5)]
    c = h.acd.get_caller("vip")
    assert c is not None and c.priority == 10
    h.login("a1")
    served = []
    for _ in range(5):
        (o,) = h.dispatch()
        served.append(o.caller)
        h.answer(o.caller, "a1")
        h.end("a1")
    assert served == ["vip", "p5", "c1", "c2", "c3"]


def test_agent_in_two_queues_takes_the_longest_waiting_caller() -> None:
    h = Harness(spec("sales", members=["a1"]), spec("support", members=["a1"]))
    h.join("s1", queue="support")
    h.advance(5)
    h.join("x1", queue="sales")
    h.join("x2", queue="sales", priority=1)
    h.login("a1")
    # priority wins across queues, then the longest wait
    assert [o.caller for o in h.dispatch()] == ["x2"]
    h.answer("x2", "a1")
    h.end("a1")
    assert [o.caller for o in h.dispatch()] == ["s1"]


@pytest.mark.parametrize(
    "strategy", ["roundrobin", "leastrecent", "fewestcalls", "random", "linear", "skills"]
)
def test_one_agent_per_offer_and_all_served(strategy: str) -> None:
    rng = random.Random(3)
    h = Harness(spec(strategy=strategy, members=[f"a{i}" for i in range(5)]))
    h.login(*[f"a{i}" for i in range(5)])
    for i in range(20):
        h.join(f"c{i}")
    served: list[str] = []
    while len(served) < 20:
        offers = h.dispatch()
        for o in offers:
            assert len(o.agents) == 1
            h.answer(o.caller, o.agents[0])
            served.append(o.caller)
        busy = [a for a in (f"a{i}" for i in range(5)) if h.state(a) == "on_call"]
        h.end(rng.choice(busy))
        h.ok()
    assert served == [f"c{i}" for i in range(20)]  # FIFO whatever the strategy
