"""The flow interpreter with a fake channel (real digit and barge-in logic, fake media)
and a virtual clock: every time below is exact, in seconds since the call arrived.

Prompt lengths (fakes.PROMPT_TONES): greet 2.0, short 1.0, invalid 0.8, timeout 0.8,
sales 1.0, support 1.0, bye 0.5, hello 0.5, record_now 0.5, collect 1.5.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ccswitch.apps.ivr.runner import IVR_NODE, MAX_INSTANT_STEPS, FlowRunner
from ccswitch.config import ScheduleConfig
from ccswitch.media import tones
from ccswitch.media.dtmf import GoertzelDetector

from .fakes import (
    SILENCE,
    TONE,
    CallResult,
    Env,
    FakeChannel,
    FakeDial,
    FakeRecognizer,
    InlineExecutor,
    Utterance,
    call,
    make_env,
    wav_seconds,
)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path)


def plays(r: CallResult) -> list[tuple[str, float, float, str | None]]:
    """(prompt, start, end, how it ended) for every playback."""
    return [(" + ".join(p.labels), p.start, p.end, p.result) for p in r.chan.plays]


def steps(r: CallResult) -> list[tuple[str, str, str | None]]:
    return [(e["node"], e["event"], e["next"]) for e in r.runner.path]


def entry(r: CallResult, node: str) -> dict[str, Any]:
    return next(e for e in r.runner.path if e["node"] == node)


# ---------------------------------------------------------------- menus by digit

MENU = """
flow: t
nodes:
  answer: {type: answer, next: menu}
  menu:
    type: menu
    greeting: greet
    short_greeting: short
    options: {"1": sales, "2": support}
    invalid: invalid
    timeout_prompt: timeout
    timeout: 3
    retries: 2
    max_retries: bye
  sales: {type: play, prompt: sales, next: end}
  support: {type: play, prompt: support, next: end}
  bye: {type: play, prompt: bye, next: end}
  end: {type: hangup}
"""


def test_menu_option_by_digit(env: Env) -> None:
    r = call(env, env.flowset({"t": MENU}), script=lambda c: c.press(2.5, "2"))
    assert plays(r) == [("greet", 0.0, 2.0, None), ("support", 2.5, 3.5, None)]
    assert steps(r) == [("answer", "next", "menu"), ("menu", "choice", "support"),
                        ("support", "next", "end")]
    assert entry(r, "menu")["input"] == "digits" and entry(r, "menu")["value"] == "2"
    assert r.chan.hangups == ["NORMAL_CLEARING"] and r.duration == 3.5
    assert r.chan.answer_count == 1


def test_barge_in_a_digit_stops_the_greeting_and_is_used(env: Env) -> None:
    r = call(env, env.flowset({"t": MENU}), script=lambda c: c.press(0.7, "1"))
    assert plays(r) == [("greet", 0.0, 0.7, "dtmf"), ("sales", 0.7, 1.7, None)]
    assert entry(r, "menu")["next"] == "sales"


def test_invalid_then_short_greeting_then_max_retries(env: Env) -> None:
    def script(c: FakeChannel) -> None:
        c.press(2.2, "9")
        c.press(3.5, "7")  # during the short greeting: barges in
        c.press(6.0, "5")

    r = call(env, env.flowset({"t": MENU}), script=script)
    assert plays(r) == [
        ("greet", 0.0, 2.0, None),
        ("invalid", 2.2, 3.0, None),
        ("short", 3.0, 3.5, "dtmf"),
        ("invalid", 3.5, 4.3, None),
        ("short", 4.3, 5.3, None),
        ("bye", 6.0, 6.5, None),
    ]
    assert steps(r)[1] == ("menu", "max_retries", "bye")
    assert entry(r, "menu")["value"] == "5"


def test_invalid_then_a_valid_choice(env: Env) -> None:
    def script(c: FakeChannel) -> None:
        c.press(2.2, "9")
        c.press(3.2, "1")

    r = call(env, env.flowset({"t": MENU}), script=script)
    assert [p[0] for p in plays(r)] == ["greet", "invalid", "short", "sales"]
    assert steps(r)[1] == ("menu", "choice", "sales")


def test_keys_typed_ahead_after_an_invalid_key_are_discarded(env: Env) -> None:
    # "9" and "1" arrive together: "9" is invalid and the queued "1" is flushed with it
    r = call(env, env.flowset({"t": MENU}), script=lambda c: c.press(2.2, "91", gap=0))
    assert [p[0] for p in plays(r)][:3] == ["greet", "invalid", "short"]
    assert plays(r)[2] == ("short", 3.0, 4.0, None)


def test_timeouts_play_the_timeout_prompt_then_max_retries(env: Env) -> None:
    r = call(env, env.flowset({"t": MENU}))
    assert plays(r) == [
        ("greet", 0.0, 2.0, None),
        ("timeout", 5.0, 5.8, None),
        ("short", 5.8, 6.8, None),
        ("timeout", 9.8, 10.6, None),
        ("short", 10.6, 11.6, None),
        ("bye", 14.6, 15.1, None),
    ]
    assert entry(r, "menu") | {} == {"flow": "t", "node": "menu", "event": "max_retries",
                                     "next": "bye", "input": "timeout", "value": ""}


def test_timeout_edge_is_taken_at_once(env: Env) -> None:
    flow = MENU.replace("    max_retries: bye\n", "    on: {timeout: bye}\n")
    r = call(env, env.flowset({"t": flow}))
    assert plays(r) == [("greet", 0.0, 2.0, None), ("bye", 5.0, 5.5, None)]
    assert steps(r)[1] == ("menu", "timeout", "bye")


def test_no_match_edge_is_taken_at_once(env: Env) -> None:
    flow = MENU.replace("    max_retries: bye\n", "    no_match: bye\n")
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(2.5, "8"))
    assert plays(r) == [("greet", 0.0, 2.0, None), ("bye", 2.5, 3.0, None)]
    assert steps(r)[1] == ("menu", "no_match", "bye")


def test_max_retries_without_an_edge_ends_the_call(env: Env) -> None:
    flow = MENU.replace("    max_retries: bye\n", "    retries: 0\n").replace(
        "    retries: 2\n", "").replace("  bye: {type: play, prompt: bye, next: end}\n", "")
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(2.5, "8"))
    assert [p[0] for p in plays(r)] == ["greet"]
    assert steps(r)[-1] == ("menu", "max_retries", None)
    assert r.chan.hangups == ["NORMAL_CLEARING"] and r.duration == 2.5


REGEX_MENU = """
flow: t
nodes:
  menu:
    type: menu
    greeting: greet
    options: {"0": operator}
    match: [{pattern: "^1[0-9]{3}$", next: ext}]
    variable: choice
    inter_digit_timeout: 1
    invalid: invalid
    retries: 0
  ext: {type: dial, extension: "{{choice}}", timeout: 20, next: end}
  operator: {type: dial, extension: [1001, 1002], next: end}
  end: {type: hangup}
"""


def test_menu_by_regex_on_the_digits_entered(env: Env) -> None:
    r = call(env, env.flowset({"t": REGEX_MENU}), script=lambda c: c.press(2.5, "1234"))
    # no terminator: the entry ends at the inter-digit timeout after the last key (2.8)
    assert steps(r)[0] == ("menu", "choice", "ext")
    assert r.runner.vars["choice"] == "1234"
    assert env.dial.calls == [(["1234"], 20.0)]
    assert r.duration == 3.8 + env.dial.delay


def test_menu_regex_entry_ended_by_the_terminator(env: Env) -> None:
    r = call(env, env.flowset({"t": REGEX_MENU}), script=lambda c: c.press(2.5, "1234#"))
    assert env.dial.calls == [(["1234"], 20.0)] and r.duration == 2.9 + env.dial.delay


def test_menu_options_are_checked_before_patterns(env: Env) -> None:
    r = call(env, env.flowset({"t": REGEX_MENU}), script=lambda c: c.press(2.5, "0#"))
    assert steps(r)[0] == ("menu", "choice", "operator")
    assert env.dial.calls == [(["1001", "1002"], 30.0)]


def test_menu_regex_must_match_the_whole_entry(env: Env) -> None:
    r = call(env, env.flowset({"t": REGEX_MENU}), script=lambda c: c.press(2.5, "12345#"))
    assert steps(r) == [("menu", "max_retries", None)] and env.dial.calls == []


def test_multi_digit_options_end_when_enough_keys_are_in(env: Env) -> None:
    flow = """
flow: t
nodes:
  menu: {type: menu, greeting: greet, options: {"11": a, "12": b}}
  a: {type: play, prompt: sales}
  b: {type: play, prompt: support}
"""
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(2.5, "12"))
    assert plays(r)[-1] == ("support", 2.6, 3.6, None)


def test_play_without_barge_in_keeps_the_key_for_the_next_menu(env: Env) -> None:
    flow = """
flow: t
nodes:
  intro: {type: play, prompt: greet, barge_in: false, next: menu}
  menu: {type: menu, greeting: short, options: {"2": support}}
  support: {type: play, prompt: support}
"""
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(0.5, "2"))
    # the intro plays to its end; the menu greeting is skipped by the queued key
    assert plays(r) == [("greet", 0.0, 2.0, None), ("short", 2.0, 2.0, "dtmf"),
                        ("support", 2.0, 3.0, None)]


def test_play_with_barge_in_stops_at_the_key(env: Env) -> None:
    flow = """
flow: t
nodes:
  intro: {type: play, prompt: [greet, hello], next: menu}
  menu: {type: menu, greeting: short, options: {"2": support}}
  support: {type: play, prompt: support}
"""
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(0.5, "2"))
    assert plays(r) == [("greet + hello", 0.0, 0.5, "dtmf"), ("short", 0.5, 0.5, "dtmf"),
                        ("support", 0.5, 1.5, None)]


def test_media_nodes_answer_the_call_first(env: Env) -> None:
    r = call(env, env.flowset({"t": "flow: t\nnodes:\n  p: {type: play, prompt: hello}\n"}))
    assert r.chan.answer_count == 1 and plays(r) == [("hello", 0.0, 0.5, None)]
    assert r.chan.hangups == ["NORMAL_CLEARING"]  # no transition: the call ends


def test_caller_hanging_up_mid_menu_ends_the_run_cleanly(env: Env) -> None:
    r = call(env, env.flowset({"t": MENU}), script=lambda c: c.hang_up_at(2.5))
    assert r.chan.is_gone and r.chan.hangup_cause == "CALLER_HANGUP"
    assert r.chan.hangups == []  # the runner does not hang up a channel that is gone
    assert steps(r) == [("answer", "next", "menu")]
    assert r.duration == 2.5


def test_caller_hanging_up_during_a_prompt(env: Env) -> None:
    r = call(env, env.flowset({"t": MENU}), script=lambda c: c.hang_up_at(1.0))
    assert r.chan.plays[0].end == 1.0 and r.chan.hangups == []


# ---------------------------------------------------------------- speech

SPEECH = """
flow: t
language: en
nodes:
  menu:
    type: menu
    greeting: greet
    short_greeting: short
    options: {"1": sales, "9": sorry}
    keywords: {sales: [sales, buy], support: [support, help]}
    invalid: invalid
    timeout: 3
    max_retries: bye
  sales: {type: play, prompt: sales, next: end}
  support: {type: play, prompt: support, next: end}
  sorry: {type: play, prompt: invalid, next: end}
  bye: {type: play, prompt: bye, next: end}
  end: {type: hangup}
"""


def speech_env(env: Env, *script: Utterance | None, language: str = "en") -> FakeRecognizer:
    rec = FakeRecognizer(*script)
    env.recognizers = {language: rec}
    env.executor = InlineExecutor(1)
    return rec


def test_spoken_synonym_barges_in_and_picks_its_node(env: Env) -> None:
    rec = speech_env(env, Utterance(0.5, 1.2, "help", "help"))
    r = call(env, env.flowset({"t": SPEECH}))
    assert plays(r) == [("greet", 0.0, 0.5, "stop"), ("support", 1.2, 2.2, None)]
    assert entry(r, "menu") == {"flow": "t", "node": "menu", "event": "choice",
                                "next": "support", "input": "speech", "value": "help"}
    (session,) = rec.sessions
    assert session.phrases == ["sales", "buy", "support", "help"]
    assert session.closed and r.chan.media is not None and r.chan.media.taps == []


def test_unrecognised_speech_goes_to_no_match_not_the_nearest_keyword(env: Env) -> None:
    speech_env(env, Utterance(2.5, 3.0, "sale", None))
    flow = SPEECH.replace("    max_retries: bye\n", "    max_retries: bye\n    no_match: sorry\n")
    r = call(env, env.flowset({"t": flow}))
    assert steps(r)[0] == ("menu", "no_match", "sorry")
    assert plays(r)[1] == ("invalid", 3.0, 3.8, None)
    assert entry(r, "menu")["input"] == "speech" and entry(r, "menu")["value"] == ""


def test_unrecognised_speech_without_no_match_edge_is_a_retry(env: Env) -> None:
    rec = speech_env(env, Utterance(2.5, 3.0, "banana", None), Utterance(0.5, 1.0, "buy", "buy"))
    r = call(env, env.flowset({"t": SPEECH}))
    assert plays(r) == [("greet", 0.0, 2.0, None), ("invalid", 3.0, 3.8, None),
                        ("short", 3.8, 4.3, "stop"), ("sales", 4.8, 5.8, None)]
    assert [s.closed for s in rec.sessions] == [True, True]
    assert entry(r, "menu")["value"] == "buy"


def test_speech_started_before_the_digit_timeout_is_waited_for(env: Env) -> None:
    rec = speech_env(env, Utterance(4.5, 6.0, "sales please", "sales"))
    taps: list[Any] = []

    async def during(chan: FakeChannel, runner: FlowRunner) -> None:
        await asyncio.sleep(3.0)
        assert chan.media is not None
        taps.extend(chan.media.taps)

    r = call(env, env.flowset({"t": SPEECH}), during=during)
    assert plays(r) == [("greet", 0.0, 2.0, None), ("sales", 6.0, 7.0, None)]
    assert taps == [rec.sessions[0].feed]  # the recogniser hears the caller meanwhile


def test_speech_that_never_resolves_times_out(env: Env) -> None:
    speech_env(env, Utterance(4.5, 100.0, "mumble", "sales"))
    flow = SPEECH.replace("    max_retries: bye\n", "    on: {timeout: bye}\n")
    r = call(env, env.flowset({"t": flow}))
    # digit timeout at 5.0, then up to 8 s for the recogniser to finish
    assert steps(r)[0] == ("menu", "timeout", "bye") and plays(r)[-1][1] == 13.0


def test_digits_still_work_in_a_speech_menu(env: Env) -> None:
    rec = speech_env(env, None)
    r = call(env, env.flowset({"t": SPEECH}), script=lambda c: c.press(1.0, "1"))
    assert plays(r) == [("greet", 0.0, 1.0, "dtmf"), ("sales", 1.0, 2.0, None)]
    assert rec.sessions[0].closed


def test_no_recognizer_for_the_language_means_digits_only(env: Env) -> None:
    rec = speech_env(env, Utterance(0.5, 1.0, "sales", "sales"), language="ko")
    r = call(env, env.flowset({"t": SPEECH}), script=lambda c: c.press(2.5, "1"))
    assert rec.sessions == [] and steps(r)[0] == ("menu", "choice", "sales")


def test_menu_language_overrides_the_flow_language(env: Env) -> None:
    rec = speech_env(env, Utterance(0.5, 1.0, "영업", "영업"), language="ko")
    flow = SPEECH.replace("    timeout: 3\n", "    timeout: 3\n    language: ko\n").replace(
        "support: [support, help]", "support: [support, help, 영업]")
    r = call(env, env.flowset({"t": flow}))
    assert len(rec.sessions) == 1 and steps(r)[0] == ("menu", "choice", "support")


# ---------------------------------------------------------------- collect

COLLECT = """
flow: t
nodes:
  answer: {type: answer, next: ask}
  ask:
    type: collect
    prompt: collect
    variable: pin
    min_digits: 4
    max_digits: 6
    timeout: 4
    inter_digit_timeout: 2
    validate: "^[1-9][0-9]*$"
    next: ok
    no_match: bad
    on: {timeout: slow}
  ok: {type: play, prompt: sales, next: end}
  bad: {type: play, prompt: invalid, next: end}
  slow: {type: play, prompt: timeout, next: end}
  end: {type: hangup}
"""


@pytest.mark.parametrize(("keys", "at", "event", "pin", "done"), [
    ("123456", 2.0, "next", "123456", 2.5),  # max_digits ends the entry
    ("1234567", 2.0, "next", "123456", 2.5),  # the 7th key is not part of it
    ("1234#", 2.0, "next", "1234", 2.4),  # terminator
    ("12345", 2.0, "next", "12345", 4.4),  # inter-digit timeout after the 5th key
    ("12#", 2.0, "no_match", None, 2.2),  # fewer than min_digits
    ("12", 2.0, "no_match", None, 4.1),  # ... ended by the inter-digit timeout
    ("0123#", 2.0, "no_match", None, 2.4),  # fails the validation pattern
    ("#", 2.0, "no_match", None, 2.0),  # the terminator alone
    ("", 0.0, "timeout", None, 5.5),  # first-digit timeout after the prompt
    ("9876#", 0.5, "next", "9876", 0.9),  # barge-in over the prompt
])
def test_collect(env: Env, keys: str, at: float, event: str, pin: str | None,
                 done: float) -> None:
    r = call(env, env.flowset({"t": COLLECT}), script=lambda c: c.press(at, keys))
    target = {"next": "ok", "no_match": "bad", "timeout": "slow"}[event]
    assert steps(r)[1] == ("ask", event, target)
    assert r.runner.vars.get("pin") == pin
    assert r.chan.plays[1].start == done
    assert r.chan.plays[0].result == ("dtmf" if at < 1.5 and keys else None)


def test_collect_custom_terminator_and_default_lengths(env: Env) -> None:
    flow = """
flow: t
nodes:
  ask: {type: collect, prompt: collect, variable: acct, terminator: "*", next: ok}
  ok: {type: hangup}
"""
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(2.0, "12#3*"))
    assert r.runner.vars["acct"] == "12#3" and r.duration == 2.4


COLLECT_RETRIES = """
flow: t
nodes:
  ask:
    type: collect
    prompt: collect
    variable: pin
    min_digits: 2
    timeout: 3
    retries: 2
    invalid: invalid
    next: ok
    max_retries: bye
  ok: {type: play, prompt: sales, next: end}
  bye: {type: play, prompt: bye, next: end}
  end: {type: hangup}
"""


def test_collect_retries_with_the_invalid_prompt(env: Env) -> None:
    def script(c: FakeChannel) -> None:
        c.press(2.0, "1#")  # too short
        # 2.9-4.4 prompt again, then a timeout at 7.4
        c.press(10.0, "42#")

    r = call(env, env.flowset({"t": COLLECT_RETRIES}), script=script)
    assert plays(r) == [
        ("collect", 0.0, 1.5, None), ("invalid", 2.1, 2.9, None),
        ("collect", 2.9, 4.4, None), ("invalid", 7.4, 8.2, None),
        ("collect", 8.2, 9.7, None), ("sales", 10.2, 11.2, None),
    ]
    assert r.runner.vars["pin"] == "42"


def test_collect_max_retries(env: Env) -> None:
    r = call(env, env.flowset({"t": COLLECT_RETRIES}))
    assert [p[0] for p in plays(r)] == ["collect", "invalid", "collect", "invalid",
                                        "collect", "bye"]
    assert steps(r)[0] == ("ask", "max_retries", "bye") and "pin" not in r.runner.vars


def test_collect_error_edge_after_the_retries(env: Env) -> None:
    flow = COLLECT_RETRIES.replace("    retries: 2\n", "    retries: 1\n").replace(
        "    max_retries: bye\n", "    no_match: bye\n")
    r = call(env, env.flowset({"t": flow}),
             script=lambda c: (c.press(2.0, "1#"), c.press(4.0, "2#")))
    assert [p[0] for p in plays(r)] == ["collect", "invalid", "collect", "bye"]
    assert steps(r)[0] == ("ask", "no_match", "bye")


# ---------------------------------------------------------------- set, branch, templates

VARS = """
flow: t
variables: {lang: en, tier: basic}
nodes:
  a:
    type: set
    variables: {greeting: "Hello {{caller}} from {{dest}}", n: 5, tier: "{{tier}}-plus"}
    next: b
  b:
    type: branch
    conditions:
      - {if: "caller == '9999'", next: d}
      - {if: "n > 4 and tier == 'basic-plus' and matches(caller, '^10')", next: c}
    else: d
  c: {type: say, text: "{{greeting}}, tier {{vars.tier}}", next: e}
  d: {type: hangup}
  e: {type: play, prompt: "{{lang}}-hello", next: f}
  f: {type: hangup, cause: USER_BUSY}
"""


def test_set_branch_and_templates(env: Env) -> None:
    r = call(env, env.flowset({"t": VARS}))
    assert env.tts.texts == ["Hello 1001 from 200, tier basic-plus"]
    assert r.chan.played == ["say:Hello 1001 from 200, tier basic-plus", "en-hello"]
    assert steps(r)[:2] == [("a", "next", "b"), ("b", "choice", "c")]
    assert r.runner.vars == {"lang": "en", "tier": "basic-plus", "n": 5,
                             "greeting": "Hello 1001 from 200"}
    assert r.chan.hangups == ["USER_BUSY"]


def test_branch_else_and_call_variables(env: Env) -> None:
    r = call(env, env.flowset({"t": VARS}), caller="2002")
    assert steps(r)[1] == ("b", "else", "d") and r.chan.played == []
    # variables given when the call starts override the flow's defaults
    r = call(env, env.flowset({"t": VARS}, version=2), variables={"lang": "fr"})
    assert r.chan.played[-1] == "fr-hello"


@pytest.fixture
def tokyo_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_time_variables_come_from_the_services_clock_in_local_time(
        env: Env, tokyo_tz: None) -> None:
    env.now = datetime(2024, 3, 4, 0, 30, tzinfo=UTC)  # 09:30 on Monday in Tokyo
    flow = """
flow: t
nodes:
  s: {type: set, variables: {stamp: "{{date}} {{time}} {{weekday}}"}, next: b}
  b:
    type: branch
    conditions: [{if: "hour == 9 and minute == 30 and weekday == 'mon'", next: right}]
    else: wrong
  right: {type: hangup}
  wrong: {type: hangup, cause: WRONG}
"""
    r = call(env, env.flowset({"t": flow}))
    assert r.runner.vars["stamp"] == "2024-03-04 09:30 mon"
    assert r.chan.hangups == ["NORMAL_CLEARING"]


def test_templated_prompt_cannot_escape_the_prompts_directory(env: Env) -> None:
    from .fakes import write_wav

    write_wav(env.root / "outside.wav", tones.sine(300, 500))
    flow = "flow: t\nnodes:\n  p: {type: play, prompt: '{{p}}', next: q}\n" \
           "  q: {type: play, prompt: '{{q}}'}\n"
    r = call(env, env.flowset({"t": flow}),
             variables={"p": "../outside", "q": str(env.root / "outside")})
    assert r.chan.plays == []


# ---------------------------------------------------------------- schedule


SCHED = """
flow: t
nodes:
  s: {type: schedule, schedule: office, open: o, closed: c, holiday: h}
  o: {type: play, prompt: sales}
  c: {type: play, prompt: support}
  h: {type: play, prompt: bye}
"""
OFFICE = ScheduleConfig(timezone="Europe/Paris", hours={"mon-fri": ["09:00-17:00"]},
                        holidays=["12-25"])


@pytest.mark.parametrize(("now", "state", "prompt"), [
    (datetime(2024, 3, 4, 10, 0, tzinfo=UTC), "open", "sales"),  # 11:00 in Paris
    (datetime(2024, 3, 4, 16, 30, tzinfo=UTC), "closed", "support"),  # 17:30 in Paris
    (datetime(2024, 3, 2, 10, 0, tzinfo=UTC), "closed", "support"),  # Saturday
    (datetime(2024, 12, 25, 10, 0, tzinfo=UTC), "holiday", "bye"),  # a Wednesday
])
def test_schedule_node(env: Env, now: datetime, state: str, prompt: str) -> None:
    env.schedules = {"office": OFFICE}
    env.now = now
    r = call(env, env.flowset({"t": SCHED}))
    assert steps(r)[0][:2] == ("s", state) and r.chan.played == [prompt]


def test_schedule_holiday_without_a_holiday_edge_is_closed(env: Env) -> None:
    env.schedules = {"office": OFFICE}
    env.now = datetime(2024, 12, 25, 10, 0, tzinfo=UTC)
    flow = SCHED.replace(", holiday: h}", "}").replace("  h: {type: play, prompt: bye}\n", "")
    r = call(env, env.flowset({"t": flow}))
    assert steps(r)[0] == ("s", "closed", "c")


def test_schedule_removed_from_config_takes_the_failed_edge(env: Env) -> None:
    env.schedules = {"office": OFFICE}
    flows = env.flowset({"t": SCHED.replace("holiday: h}", "holiday: h, failed: h}")})
    env.schedules = {}  # a reload dropped it
    r = call(env, flows)
    assert steps(r)[0] == ("s", "failed", "h")


# ---------------------------------------------------------------- subflows and transfers

MAIN = """
flow: main
variables: {company: Acme}
nodes:
  a: {type: answer, next: s}
  s: {type: subflow, flow: sales, next: after}
  after: {type: play, prompt: bye, next: end}
  end: {type: hangup}
"""
SALES = """
flow: sales
variables: {dept: sales, company: Other}
nodes:
  intro: {type: play, prompt: sales, next: done}
  done: {type: return}
"""


def test_subflow_call_and_return(env: Env) -> None:
    r = call(env, env.flowset({"main": MAIN, "sales": SALES}), "main")
    assert r.chan.played == ["sales", "bye"]
    assert [(e["flow"], e["node"], e["event"], e["next"]) for e in r.runner.path] == [
        ("main", "a", "next", "s"),
        ("main", "s", "choice", "intro"),
        ("sales", "intro", "next", "done"),
        ("sales", "done", "choice", "after"),
        ("main", "after", "next", "end"),
    ]
    # the subflow's defaults do not overwrite the caller's variables
    assert r.runner.vars == {"company": "Acme", "dept": "sales"}
    assert r.runner.stack == [] and r.runner.flow.name == "main"


def test_nested_subflows_return_in_order(env: Env) -> None:
    sales = SALES.replace("intro: {type: play, prompt: sales, next: done}",
                          "intro: {type: subflow, flow: deep, next: after_deep}\n"
                          "  after_deep: {type: play, prompt: sales, next: done}")
    deep = "flow: deep\nnodes:\n  x: {type: play, prompt: hello, next: r}\n" \
           "  r: {type: return}\n"
    r = call(env, env.flowset({"main": MAIN, "sales": sales, "deep": deep}), "main")
    assert r.chan.played == ["hello", "sales", "bye"]


def test_return_outside_a_subflow_ends_the_call(env: Env) -> None:
    r = call(env, env.flowset({"sales": SALES}), "sales")
    assert r.chan.played == ["sales"] and r.chan.hangups == ["NORMAL_CLEARING"]


def test_subflow_not_found_at_run_time_takes_the_failed_edge(env: Env) -> None:
    flow = MAIN.replace("flow: sales, next: after}", 'flow: "{{dept}}", next: end, '
                                                     "failed: after}")
    r = call(env, env.flowset({"main": flow}), "main", variables={"dept": "nowhere"})
    assert steps(r)[1] == ("s", "failed", "after") and r.chan.played == ["bye"]


def test_transfer_to_another_flow_clears_the_subflow_stack(env: Env) -> None:
    sales = SALES.replace("next: done}", "next: away}\n  away: {type: transfer, flow: other}")
    sales = sales.replace("  done: {type: return}\n", "")
    other = "flow: other\nnodes:\n  o: {type: play, prompt: support, next: r}\n" \
            "  r: {type: return}\n"
    r = call(env, env.flowset({"main": MAIN, "sales": sales, "other": other}), "main")
    # `return` in the transferred-to flow does not come back to main
    assert r.chan.played == ["sales", "support"]
    assert r.runner.path[-1]["flow"] == "other" and r.chan.hangups == ["NORMAL_CLEARING"]
    assert entry(r, "away")["flow"] == "sales" and entry(r, "away")["next"] == "o"


def test_a_running_call_keeps_the_flow_version_it_started_with(env: Env) -> None:
    main = """
flow: main
nodes:
  menu: {type: menu, greeting: greet, options: {"1": s}}
  s: {type: subflow, flow: sales, next: end}
  end: {type: hangup}
"""
    v1 = env.flowset({"main": main, "sales": SALES.replace("prompt: sales", "prompt: v1")})
    reloaded: list[Any] = []

    async def during(chan: FakeChannel, runner: FlowRunner) -> None:
        await asyncio.sleep(1.0)  # mid-greeting, the administrator edits and reloads
        v2 = env.flowset({"main": main.replace("greeting: greet", "greeting: short"),
                          "sales": SALES.replace("prompt: sales", "prompt: v2")}, version=2)
        reloaded.append(v2)

    r = call(env, v1, "main", during=during, script=lambda c: c.press(1.5, "1"))
    assert r.chan.played == ["greet", "v1"]
    assert r.runner.flows is v1 and r.runner.flow is v1.flows["main"]
    # a new call gets the new version
    r2 = call(env, reloaded[0], "main", script=lambda c: c.press(0.5, "1"))
    assert r2.chan.played == ["short", "v2"]


# ---------------------------------------------------------------- dial and queue

DIAL = """
flow: t
nodes:
  d:
    type: dial
    extension: [1001, "1002"]
    timeout: 20s
    next: ok
    busy: busy
    no_answer: nobody
    failed: broken
  ok: {type: hangup}
  busy: {type: hangup, cause: USER_BUSY}
  nobody: {type: hangup, cause: NO_ANSWER}
  broken: {type: hangup, cause: FAILURE}
"""


@pytest.mark.parametrize(("status", "event"), [
    ("ANSWER", "next"), ("BUSY", "busy"), ("NOANSWER", "no_answer"),
    ("CHANUNAVAIL", "failed"), ("CANCEL", "failed"), ("FAILED", "failed"),
])
def test_dial_outcomes_map_to_edges(env: Env, status: str, event: str) -> None:
    env.dial = FakeDial(status, delay=4.0)
    r = call(env, env.flowset({"t": DIAL}))
    assert env.dial.calls == [(["1001", "1002"], 20.0)]
    assert steps(r)[0][:2] == ("d", event) and r.duration == 4.0


def test_dial_outcome_without_an_edge_ends_the_call(env: Env) -> None:
    env.dial = FakeDial("BUSY")
    flow = "flow: t\nnodes:\n  d: {type: dial, extension: 1001, next: ok}\n" \
           "  ok: {type: hangup, cause: WRONG}\n"
    r = call(env, env.flowset({"t": flow}))
    assert steps(r) == [("d", "busy", None)] and r.chan.hangups == ["NORMAL_CLEARING"]


def test_queue_node(env: Env) -> None:
    env.queue.outcome = "full"
    flow = "flow: t\nnodes:\n  q: {type: queue, queue: support, next: ok, full: over}\n" \
           "  ok: {type: hangup}\n  over: {type: hangup, cause: FULL}\n"
    r = call(env, env.flowset({"t": flow}), variables={"priority": 3})
    assert env.queue.calls[0][0] == "support" and env.queue.calls[0][1]["priority"] == 3
    assert r.chan.hangups == ["FULL"]


def test_queue_without_a_queue_service_fails(env: Env) -> None:
    flow = "flow: t\nnodes:\n  q: {type: queue, queue: support, failed: over}\n" \
           "  over: {type: hangup, cause: NOQ}\n"
    flows = env.flowset({"t": flow})
    env.queue = None  # type: ignore[assignment]
    r = call(env, flows)
    assert r.chan.hangups == ["NOQ"]


# ---------------------------------------------------------------- record

RECORD = """
flow: t
nodes:
  answer: {type: answer, next: rec}
  rec:
    type: record
    prompt: record_now
    file: "msg-{{caller}}"
    max_seconds: 30
    silence_seconds: 2
    variable: msg
    next: thanks
    failed: oops
  thanks: {type: play, prompt: bye, next: end}
  oops: {type: hangup, cause: FAILED}
  end: {type: hangup}
"""


def test_record_ended_by_silence(env: Env) -> None:
    # prompt 0-0.5, beep 0.5-0.7, then recording: voice until 2.0, silence after
    r = call(env, env.flowset({"t": RECORD}),
             script=lambda c: c.stream(0.0, [TONE] * 100 + [SILENCE] * 400))
    path = env.recordings / "msg-1001.wav"
    assert r.chan.played == ["record_now", "beep", "bye"]
    assert r.runner.vars["msg"] == str(path) and entry(r, "rec")["value"] == str(path)
    assert r.chan.plays[2].start == pytest.approx(4.0, abs=0.03)  # 2 s of silence heard
    assert wav_seconds(path) == pytest.approx(3.3, abs=0.03)
    assert r.chan.media is not None and r.chan.media.taps == []


def test_record_ended_by_hash_not_by_other_keys(env: Env) -> None:
    def script(c: FakeChannel) -> None:
        c.stream(0.0, [TONE] * 500)
        c.press(0.3, "#")  # during the prompt: stops it, then flushed after the beep
        c.press(1.5, "5")
        c.press(3.0, "#")

    r = call(env, env.flowset({"t": RECORD}), script=script)
    assert plays(r)[:2] == [("record_now", 0.0, 0.3, "dtmf"), ("beep", 0.3, 0.5, None)]
    assert r.chan.plays[2].start == 3.0
    assert wav_seconds(env.recordings / "msg-1001.wav") == pytest.approx(2.5, abs=0.03)


def test_record_of_silence_only_ends_at_max_seconds(env: Env) -> None:
    flow = RECORD.replace("max_seconds: 30", "max_seconds: 3")
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.stream(0.0, [SILENCE] * 500))
    assert r.chan.plays[2].start == pytest.approx(3.7)
    assert wav_seconds(env.recordings / "msg-1001.wav") == pytest.approx(3.0, abs=0.03)


def test_record_keeps_what_was_said_when_the_caller_hangs_up(env: Env) -> None:
    def script(c: FakeChannel) -> None:
        c.stream(0.0, [TONE] * 500)
        c.hang_up_at(2.0)

    r = call(env, env.flowset({"t": RECORD}), script=script)
    assert wav_seconds(env.recordings / "msg-1001.wav") == pytest.approx(1.3, abs=0.03)
    assert r.chan.hangups == [] and r.duration == 2.0


def test_record_default_file_name_and_no_beep(env: Env) -> None:
    flow = RECORD.replace('    file: "msg-{{caller}}"\n', "    beep: false\n")
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(2.0, "#"))
    assert r.chan.played == ["record_now", "bye"]
    path = Path(r.runner.vars["msg"])
    assert path.parent == env.recordings / "messages" / "2024-03-04"
    assert path.name == f"{r.chan.linkedid}-rec.wav" and path.is_file()


def test_record_without_media_fails_without_leaving_a_file(env: Env) -> None:
    r = call(env, env.flowset({"t": RECORD}), media=False)
    assert steps(r)[1] == ("rec", "failed", "oops") and r.chan.hangups == ["FAILED"]
    assert not (env.recordings / "msg-1001.wav").exists()


# ---------------------------------------------------------------- hangup, guard, path


def test_hangup_node_with_a_cause(env: Env) -> None:
    flow = "flow: t\nnodes:\n  a: {type: answer, next: h}\n" \
           "  h: {type: hangup, cause: CALL_REJECTED}\n"
    r = call(env, env.flowset({"t": flow}))
    assert r.chan.hangups == ["CALL_REJECTED"] and r.chan.hangup_cause == "CALL_REJECTED"
    assert steps(r) == [("a", "next", "h")]


def test_instant_step_guard_hangs_up_a_loop_that_never_waits(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    # the validator cannot see this one: templated prompts that do not exist play nothing
    flow = """
flow: t
nodes:
  a: {type: answer, next: p}
  p: {type: play, prompt: "{{nothing}}", next: q}
  q: {type: play, prompt: "{{nothing}}", next: p}
"""
    with caplog.at_level(logging.ERROR, logger="ccswitch.ivr"):
        r = call(env, env.flowset({"t": flow}))
    assert r.chan.hangups == ["NORMAL_CLEARING"] and r.duration == 0.0
    assert len(r.runner.path) == MAX_INSTANT_STEPS + 1
    assert any("loops without waiting" in m for m in caplog.messages)


def test_waiting_steps_reset_the_instant_step_guard(env: Env) -> None:
    flow = """
flow: t
nodes:
  p: {type: play, prompt: hello, next: s}
  s: {type: set, variables: {x: "1"}, next: g}
  g: {type: goto, next: p}
"""
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.hang_up_at(200.0))
    # 400 rounds of play + 2 instant nodes: never cut by the guard, ended by the caller
    assert len(r.chan.plays) == 400 and r.chan.hangups == []


def test_path_and_events(env: Env) -> None:
    rec = speech_env(env, None, Utterance(0.5, 1.0, "sales", "sales"))
    flow = """
flow: t
language: en
nodes:
  answer: {type: answer, next: menu}
  menu: {type: menu, greeting: greet, options: {"1": sales}, keywords: {more: [more]}}
  more: {type: menu, greeting: short, options: {"2": sales}, keywords: {sales: [sales]}}
  sales: {type: play, prompt: sales, next: end}
  end: {type: hangup}
"""
    r = call(env, env.flowset({"t": flow}), script=lambda c: c.press(1.0, "1"))
    assert len(rec.sessions) == 1
    assert r.runner.path == [
        {"flow": "t", "node": "answer", "event": "next", "next": "menu"},
        {"flow": "t", "node": "menu", "event": "choice", "next": "sales", "input": "digits",
         "value": "1"},
        {"flow": "t", "node": "sales", "event": "next", "next": "end"},
    ]
    # on_path is told after every step, with the whole path so far
    assert [len(p) for p in env.paths] == [1, 2, 3] and env.paths[-1] == r.runner.path
    nodes = [(e["event"], e["flow"], e["node"], e["type"]) for e in env.events]
    assert nodes == [(IVR_NODE, "t", "answer", "answer"), (IVR_NODE, "t", "menu", "menu"),
                     (IVR_NODE, "t", "sales", "play"), (IVR_NODE, "t", "end", "hangup")]
    assert all(e["channel"] == r.chan.id and e["linkedid"] == r.chan.linkedid
               for e in env.events)
    assert r.chan.app == "IVR" and r.chan.app_data == "t:end"
    assert r.chan.media is not None and isinstance(r.chan.media.inband, GoertzelDetector)


def test_path_records_speech_input(env: Env) -> None:
    speech_env(env, Utterance(0.5, 1.0, "sales", "sales"))
    r = call(env, env.flowset({"t": SPEECH}))
    assert entry(r, "menu") == {"flow": "t", "node": "menu", "event": "choice",
                                "next": "sales", "input": "speech", "value": "sales"}


def test_say_without_a_tts_engine_is_skipped(env: Env) -> None:
    flow = "flow: t\nnodes:\n  s: {type: say, text: Hello, next: p}\n" \
           "  p: {type: play, prompt: hello}\n"
    flows = env.flowset({"t": flow})
    env.tts = None  # type: ignore[assignment]
    r = call(env, flows)
    assert r.chan.played[-1] == "hello" and r.duration == 0.5


# ---------------------------------------------------------------- http (real local server)


HTTP = """
flow: t
nodes:
  q:
    type: http
    url: "{{base}}/account/{{caller}}"
    timeout: 1
    variables: {name: name, balance: json.account.balance, tier: account.tier, nope: x.y}
    status_variable: status
    next: ok
    failed: bad
  ok: {type: hangup}
  bad: {type: hangup, cause: FAILED}
"""


@pytest.fixture
async def crm() -> Any:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    seen: list[dict[str, Any]] = []

    async def account(req: web.Request) -> web.Response:
        seen.append({"method": req.method, "path": req.path})
        return web.json_response({"name": "Alice", "account": {"balance": 12.5,
                                                               "tier": "gold"}})

    async def post(req: web.Request) -> web.Response:
        seen.append({"method": req.method, "json": await req.json(),
                     "token": req.headers.get("X-Token")})
        return web.json_response({"ticket": 42})

    async def slow(req: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    async def boom(req: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def text(req: web.Request) -> web.Response:
        return web.Response(text="plain words")

    app = web.Application()
    app.router.add_get("/account/{caller}", account)
    app.router.add_post("/ticket", post)
    app.router.add_get("/slow", slow)
    app.router.add_get("/boom", boom)
    app.router.add_get("/text", text)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.seen = seen  # type: ignore[attr-defined]
    yield server
    await server.close()


async def run_real(env: Env, flow: str, **variables: Any) -> tuple[FlowRunner, FakeChannel]:
    flows = env.flowset({"t": flow})
    chan = env.channel(media=False)
    f = flows.get("t")
    assert f is not None
    runner = FlowRunner(env.services(), chan, flows, f, variables)
    await asyncio.wait_for(runner.run(), 10)
    return runner, chan


async def test_http_get_extracts_variables(env: Env, crm: Any) -> None:
    base = str(crm.make_url("")).rstrip("/")
    runner, chan = await run_real(env, HTTP, base=base)
    assert crm.seen == [{"method": "GET", "path": "/account/1001"}]
    assert chan.hangups == ["NORMAL_CLEARING"]
    assert runner.vars["name"] == "Alice" and runner.vars["balance"] == 12.5
    assert runner.vars["tier"] == "gold" and runner.vars["nope"] is None
    assert runner.vars["status"] == 200
    assert runner.path[0] == {"flow": "t", "node": "q", "event": "next", "next": "ok",
                              "input": "http", "value": 200}


async def test_http_post_renders_the_json_body_and_headers(env: Env, crm: Any) -> None:
    flow = """
flow: t
nodes:
  q:
    type: http
    method: post
    url: "{{base}}/ticket"
    body: {caller: "{{caller}}", n: 5, tags: ["{{dest}}", x], nested: {who: "{{caller_name}}"}}
    headers: {X-Token: "t-{{caller}}"}
    variables: {ticket: ticket}
    next: ok
  ok: {type: hangup}
"""
    runner, _ = await run_real(env, flow, base=str(crm.make_url("")).rstrip("/"))
    assert crm.seen == [{"method": "POST", "token": "t-1001", "json": {
        "caller": "1001", "n": 5, "tags": ["200", "x"], "nested": {"who": "Alice"}}}]
    assert runner.vars["ticket"] == 42


async def test_http_server_error_takes_the_failed_edge(env: Env, crm: Any) -> None:
    flow = HTTP.replace("/account/{{caller}}", "/boom")
    runner, chan = await run_real(env, flow, base=str(crm.make_url("")).rstrip("/"))
    assert chan.hangups == ["FAILED"] and runner.vars["status"] == 500
    assert "name" not in runner.vars


async def test_http_timeout_takes_the_failed_edge(env: Env, crm: Any) -> None:
    flow = HTTP.replace("/account/{{caller}}", "/slow").replace("timeout: 1", "timeout: 0.2")
    t0 = asyncio.get_running_loop().time()
    runner, chan = await run_real(env, flow, base=str(crm.make_url("")).rstrip("/"))
    assert chan.hangups == ["FAILED"] and asyncio.get_running_loop().time() - t0 < 2.0
    assert runner.path[0]["value"] == "error: TimeoutError" and "status" not in runner.vars


async def test_http_connection_refused_takes_the_failed_edge(env: Env) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runner, chan = await run_real(env, HTTP, base=f"http://127.0.0.1:{port}")
    assert chan.hangups == ["FAILED"]
    assert str(runner.path[0]["value"]).startswith("error: ")


async def test_http_non_json_reply_is_text(env: Env, crm: Any) -> None:
    flow = HTTP.replace("/account/{{caller}}", "/text").replace(
        "{name: name, balance: json.account.balance, tier: account.tier, nope: x.y}",
        "{body: text}")
    runner, chan = await run_real(env, flow, base=str(crm.make_url("")).rstrip("/"))
    assert chan.hangups == ["NORMAL_CLEARING"] and runner.vars["body"] == "plain words"
