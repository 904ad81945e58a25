"""The flow loader and validator: every error kind, reported as `file:line: node 'x': msg`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ccswitch.apps.ivr.expr import Expression
from ccswitch.apps.ivr.flow import (
    Context,
    Flow,
    FlowError,
    FlowIssue,
    load_flows,
    parse_duration,
    parse_flow,
)

from .fakes import write_wav

F = "flows/t.yaml"  # the file name every message starts with


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    prompts = tmp_path / "prompts"
    for name in ("hello", "greet", "bye", "sub/inner"):
        write_wav(prompts / f"{name}.wav", bytes(160))
    return Context(prompts_dir=prompts, schedules={"office"}, queues={"support"},
                   flows={"t", "sales"}, numbers={"1001", "1002"})


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def parse(text: str, ctx: Context) -> Flow:
    return parse_flow(src(text), Path(F), ctx)


def errors(text: str, ctx: Context) -> list[str]:
    with pytest.raises(FlowError) as ei:
        parse(text, ctx)
    return [str(i) for i in ei.value.issues]


def only(text: str, ctx: Context) -> str:
    errs = errors(text, ctx)
    assert len(errs) == 1, errs
    return errs[0]


# ---------------------------------------------------------------- a good flow


def test_a_valid_flow_with_every_node_type_loads(ctx: Context) -> None:
    flow = parse("""
        flow: t
        description: every node type
        language: en
        variables: {company: Example, n: 3}
        nodes:
          answer: {type: answer, next: hours}
          hours: {type: schedule, schedule: office, open: menu, closed: closed, holiday: closed}
          closed: {type: say, text: "We are closed.", next: bye}
          menu:
            type: menu
            greeting: [greet, {say: "Welcome to {{company}}"}, {play: hello}]
            options: {"1": sales, "2": ask, 9: bye}
            match: [{pattern: "^1[0-9]{3}$", next: dial}]
            keywords: {sales: [Sales, " buy "], bye: goodbye}
            timeout: 500ms
            inter_digit_timeout: 1.5
            max_retries: bye
          sales: {type: subflow, flow: sales, next: bye}
          ask:
            type: collect
            variable: account
            min_digits: 4
            max_digits: 8
            validate: "^[0-9]+$"
            next: check
            timeout: bye
          check:
            type: branch
            conditions: [{if: "matches(account, '^9')", next: lookup}]
            else: vars
          lookup:
            type: http
            url: "http://crm/{{account}}"
            method: post
            body: {caller: "{{caller}}"}
            variables: {name: json.name}
            next: vars
            failed: bye
          vars: {type: set, variables: {seen: "yes"}, next: rec}
          rec: {type: record, max_seconds: 2m, silence_seconds: 3, beep: false, next: q}
          q: {type: queue, queue: support, priority: 2, timeout: 30, next: back}
          back: {type: goto, next: dial}
          dial: {type: dial, extension: [1001, "1002"], timeout: 20s, busy: bye, next: bye}
          bye: {type: play, prompt: bye, next: away}
          away: {type: transfer, flow: sales}
    """, ctx)
    assert flow.name == "t" and flow.start == "answer"
    assert flow.language == "en" and flow.description == "every node type"
    assert flow.variables == {"company": "Example", "n": 3}
    menu = flow.nodes["menu"]
    assert menu.line == 9 and menu.type == "menu"
    assert menu.fields["options"] == {"1": "sales", "2": "ask", "9": "bye"}
    assert menu.fields["match"] == [("^1[0-9]{3}$", "dial")]
    assert menu.fields["keywords"] == {"sales": ["sales", "buy"], "bye": ["goodbye"]}
    assert menu.fields["timeout"] == 0.5 and menu.fields["inter_digit_timeout"] == 1.5
    assert menu.edges == {"max_retries": "bye"}
    assert flow.nodes["ask"].edges == {"next": "check", "timeout": "bye"}
    (expr, target), = flow.nodes["check"].fields["conditions"]
    assert isinstance(expr, Expression) and target == "lookup"
    assert flow.nodes["rec"].fields["max_seconds"] == 120.0
    assert flow.nodes["q"].fields["timeout"] == 30.0 and flow.nodes["q"].edges == {"next": "back"}
    assert flow.nodes["dial"].fields == {"extension": ["1001", "1002"], "timeout": 20.0}
    assert flow.nodes["dial"].edges == {"busy": "bye", "next": "bye"}
    # static texts are pre-rendered at load time; templated ones cannot be
    assert flow.uses_tts and flow.say_texts == ["We are closed."]


def test_start_defaults_to_the_first_node_and_name_to_the_file_stem(ctx: Context) -> None:
    flow = parse("""
        nodes:
          first: {type: play, prompt: hello, next: second}
          second: {type: hangup}
    """, ctx)
    assert flow.start == "first" and flow.name == "t" and not flow.uses_tts


def test_parse_duration() -> None:
    assert parse_duration(5) == 5.0
    assert parse_duration("2.5") == 2.5
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m") == 120.0
    assert parse_duration(" 3 s ") == 3.0
    for bad in (True, "fast", "5h", None, [5]):
        assert parse_duration(bad) is None


# ---------------------------------------------------------------- file-level errors


def test_yaml_syntax_error_reports_its_line(ctx: Context) -> None:
    assert only("""
        flow: t
        nodes:
          a:
            type: answer
           next: b
    """, ctx) == f"{F}:5: YAML syntax error: expected <block end>, but found " \
                 "'<block mapping start>'"


def test_unterminated_quote_is_a_syntax_error(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: play, prompt: 'hello, next: b}
    """, ctx).startswith(f"{F}:3: YAML syntax error: ")


@pytest.mark.parametrize("text", ["", "# just a comment\n"])
def test_empty_file(ctx: Context, text: str) -> None:
    assert only(text, ctx) == f"{F}:1: empty flow file"


@pytest.mark.parametrize(("text", "line"), [
    ("- answer\n- hangup\n", 1),
    ("# comment\n# comment\n- answer\n", 3),
    ("just words\n", 1),
])
def test_a_file_that_is_not_a_mapping(ctx: Context, text: str, line: int) -> None:
    assert only(text, ctx) == f"{F}:{line}: a flow file must be a mapping with 'nodes'"


def test_unknown_top_level_key_with_suggestion(ctx: Context) -> None:
    assert only("""
        flow: t
        lenguage: en
        nodes:
          a: {type: hangup}
    """, ctx) == (f"{F}:2: unknown key 'lenguage' (did you mean 'language'?) (allowed: "
                  "description, flow, language, nodes, start, variables)")


def test_unknown_top_level_key_without_a_close_match(ctx: Context) -> None:
    assert only("""
        colour: blue
        nodes:
          a: {type: hangup}
    """, ctx) == (f"{F}:1: unknown key 'colour' (allowed: "
                  "description, flow, language, nodes, start, variables)")


def test_missing_nodes(ctx: Context) -> None:
    assert only("""
        flow: t
        start: a
    """, ctx) == f"{F}:1: missing or empty 'nodes' mapping"


@pytest.mark.parametrize("nodes", ["{}", "[a, b]", "", "5"])
def test_empty_or_malformed_nodes_reported_at_the_nodes_key(ctx: Context, nodes: str) -> None:
    assert only(f"flow: t\n\nnodes: {nodes}\n", ctx) == f"{F}:3: missing or empty 'nodes' mapping"


def test_unknown_start_node(ctx: Context) -> None:
    assert only("""
        flow: t
        start: welcom
        nodes:
          welcome: {type: hangup}
    """, ctx) == f"{F}:2: start node 'welcom' does not exist"


def test_variables_must_be_a_mapping(ctx: Context) -> None:
    assert only("""
        variables: [a, b]
        nodes:
          a: {type: hangup}
    """, ctx) == f"{F}:1: 'variables' must be a mapping"


def test_duplicate_keys_are_errors_at_the_second_occurrence(ctx: Context) -> None:
    assert errors("""
        nodes:
          a: {type: play, prompt: hello, next: b}
          b: {type: hangup}
          b:
            type: play
            prompt: hello
            prompt: bye
    """, ctx) == [
        f"{F}:4: duplicate key 'b'",
        f"{F}:7: duplicate key 'prompt'",
    ]


def test_non_scalar_mapping_key(ctx: Context) -> None:
    assert f"{F}:2: mapping keys must be plain words" in errors("""
        nodes:
          ? [a, b]
          : {type: hangup}
          c: {type: hangup}
    """, ctx)


# ---------------------------------------------------------------- node-level errors


def test_node_that_is_not_a_mapping(ctx: Context) -> None:
    assert errors("""
        nodes:
          a: {type: play, prompt: hello, next: b}
          b: hangup
    """, ctx) == [f"{F}:3: node 'b': a node must be a mapping with a 'type', got 'hangup'"]


def test_node_names_are_words(ctx: Context) -> None:
    assert only("""
        nodes:
          main menu: {type: hangup}
    """, ctx) == f"{F}:2: node 'main menu': node names are letters, digits, '_' and '-'"


def test_missing_type(ctx: Context) -> None:
    assert only("""
        nodes:
          a:
            prompt: hello
    """, ctx) == (f"{F}:2: node 'a': missing field 'type' (one of: answer, play, say, menu, "
                  "collect, set, branch, schedule, goto, subflow, return, dial, transfer, "
                  "record, http, hangup, queue)")


def test_unknown_type_with_suggestion_at_the_type_line(ctx: Context) -> None:
    assert only("""
        nodes:
          a:
            prompt: hello
            type: plya
    """, ctx) == f"{F}:4: node 'a': unknown node type 'plya' (did you mean 'play'?)"


def test_unknown_type_without_suggestion(ctx: Context) -> None:
    assert only("nodes:\n  a: {type: voicemail}\n", ctx) == \
        f"{F}:2: node 'a': unknown node type 'voicemail'"


def test_unknown_field_with_suggestion(ctx: Context) -> None:
    assert errors("""
        nodes:
          a:
            type: play
            prompt: hello
            nxet: b
          b: {type: hangup}
    """, ctx) == [
        f"{F}:5: node 'a': unknown field 'nxet' for type 'play' (did you mean 'next'?)",
        # the typo'd edge is no edge at all
        f"{F}:6: node 'b': unreachable node (no path from start node 'a')",
    ]


def test_unknown_field_that_is_another_types_edge(ctx: Context) -> None:
    # `busy` is a dial edge, not a play edge
    assert only("""
        nodes:
          a: {type: play, prompt: hello, busy: a}
    """, ctx) == f"{F}:2: node 'a': unknown field 'busy' for type 'play'"


# one flow per bad field value; the node under test is `x` on line 3
WRONG_TYPES = [
    ("{type: play, prompt: hello, barge_in: 3, next: a}",
     "'barge_in' must be true or false, got number 3"),
    ("{type: record, beep: 'loud', next: a}", "'beep' must be true or false, got 'loud'"),
    ("{type: menu, greeting: hello, options: {'1': a}, retries: -1}",
     "'retries' must be a whole number >= 0, got number -1"),
    ("{type: menu, greeting: hello, options: {'1': a}, retries: two}",
     "'retries' must be a whole number >= 0, got 'two'"),
    ("{type: menu, greeting: hello, options: {'1': a}, max_digits: true}",
     "'max_digits' must be a whole number >= 0, got true/false"),
    ("{type: menu, greeting: hello, options: {'1': a}, max_digits: 1.5}",
     "'max_digits' must be a whole number >= 0, got number 1.5"),
    ("{type: collect, variable: [a], next: a}", "'variable' must be text, got a list"),
    ("{type: collect, variable: v, terminator: {a: 1}, next: a}",
     "'terminator' must be text, got a mapping"),
    ("{type: say, text: null, next: a}", "'text' must be text, got nothing"),
    ("{type: collect, variable: v, inter_digit_timeout: soon, next: a}",
     "'inter_digit_timeout' must be a duration in seconds (e.g. 5 or '500ms'), got 'soon'"),
    ("{type: record, max_seconds: -1, next: a}",
     "'max_seconds' must be a duration in seconds (e.g. 5 or '500ms'), got -1"),
    ("{type: dial, extension: 1001, timeout: [5], next: a}",
     "'timeout' must be a duration in seconds (e.g. 5 or '500ms'), got [5]"),
    ("{type: collect, variable: v, validate: '[0-9', next: a}",
     "'validate': invalid regular expression: unterminated character set at position 0"),
    ("{type: collect, variable: v, validate: 5, next: a}",
     "'validate' must be a regular expression string"),
    ("{type: set, variables: [a, b], next: a}", "'variables' must be a mapping, got a list"),
    ("{type: http, url: 'http://x', headers: 'x', next: a}",
     "'headers' must be a mapping, got 'x'"),
    ("{type: menu, greeting: hello, options: {'1': a}, match: {pattern: '1'}}",
     "'match' must be a list of {pattern, next}"),
    ("{type: menu, greeting: hello, options: {'1': a}, keywords: [sales]}",
     "'keywords' must map nodes to lists of words"),
    ("{type: branch, conditions: {if: 'x == 1', next: a}, else: a}",
     "'conditions' must be a list of {if, next}"),
    ("{type: dial, extension: [1001, {a: 1}], next: a}",
     "'extension' must be a number or a list of numbers"),
    ("{type: dial, extension: true, next: a}",
     "'extension' must be a number or a list of numbers"),
    ("{type: play, prompt: 5, next: a}",
     "prompt: expected a prompt name, {say: text} or a list, got number 5"),
    ("{type: play, prompt: {say: hi, speed: 2}, next: a}",
     "prompt: a prompt is a name, {play: name} or {say: text}, not ['say', 'speed']"),
    ("{type: play, prompt: {say: '  '}, next: a}", "prompt: 'say' needs text"),
    ("{type: play, prompt: {play: [hello]}, next: a}", "prompt: 'play' needs a prompt name"),
    ("{type: play, prompt: [], next: a}", "prompt: empty prompt list"),
]


@pytest.mark.parametrize(("node", "message"), WRONG_TYPES)
def test_wrong_type_for_a_field(ctx: Context, node: str, message: str) -> None:
    text = f"nodes:\n  a: {{type: play, prompt: hello, next: x}}\n  x: {node}\n"
    assert errors(text, ctx) == [f"{F}:3: node 'x': {message}"]


def test_shape_errors_inside_options_match_keywords_conditions(ctx: Context) -> None:
    assert errors("""
        nodes:
          m:
            type: menu
            greeting: hello
            options:
              "1": m
              x1: m
              "2": [m]
            match:
              - {pattern: '^1', next: m}
              - {pattern: '^2'}
              - {pattern: '(', next: m}
              - just text
            keywords:
              m: [sales, 5]
          b:
            type: branch
            conditions:
              - {if: "x == 1", next: m}
              - {if: "x ==", next: m}
              - {if: "system('ls')", next: m}
              - {when: "x", next: m}
            else: m
    """, ctx) == [
        f"{F}:7: node 'm': options: 'x1' is not a key sequence",
        f"{F}:8: node 'm': options: '2' must name a node",
        f"{F}:11: node 'm': each 'match' entry needs exactly 'pattern' and 'next'",
        f"{F}:12: node 'm': match: invalid regular expression: missing ), unterminated "
        "subpattern at position 0",
        f"{F}:13: node 'm': each 'match' entry needs exactly 'pattern' and 'next'",
        f"{F}:15: node 'm': keywords 'm': expected a list of words",
        f"{F}:16: node 'b': unreachable node (no path from start node 'm')",
        f"{F}:20: node 'b': invalid expression 'x ==': invalid syntax",
        f"{F}:21: node 'b': unknown function; allowed: endswith, int, len, lower, matches, "
        "startswith, str",
        f"{F}:22: node 'b': each condition needs exactly 'if' and 'next'",
    ]


def test_missing_required_field(ctx: Context) -> None:
    assert errors("""
        nodes:
          a: {type: goto, next: b}
          b:
            type: play
            next: c
          c: {type: collect, next: d}
          d: {type: http, method: GET}
    """, ctx) == [
        f"{F}:3: node 'b': missing field 'prompt' (required for type 'play')",
        f"{F}:6: node 'c': missing field 'variable' (required for type 'collect')",
        f"{F}:7: node 'd': missing field 'url' (required for type 'http')",
    ]


def test_missing_required_transition(ctx: Context) -> None:
    assert errors("""
        nodes:
          a: {type: schedule, schedule: office, open: b}
          b: {type: branch, conditions: [{if: "x", next: c}]}
          c: {type: collect, variable: v, timeout: a}
          d: {type: goto}
    """, ctx) == [
        f"{F}:2: node 'a': missing transition 'closed' (required for type 'schedule')",
        f"{F}:3: node 'b': missing transition 'else' (required for type 'branch')",
        f"{F}:4: node 'c': missing transition 'next' (required for type 'collect')",
        f"{F}:5: node 'd': missing transition 'next' (required for type 'goto')",
        f"{F}:5: node 'd': unreachable node (no path from start node 'a')",
    ]


def test_an_edge_must_name_a_node(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: play, prompt: hello, next: [b]}
    """, ctx) == f"{F}:2: node 'a': 'next' must name a node, got a list"


# ---------------------------------------------------------------- references


def test_unknown_target_node_everywhere_a_target_can_be(ctx: Context) -> None:
    assert errors("""
        nodes:
          m:
            type: menu
            greeting: hello
            options: {"1": salse}
            match:
              - {pattern: "^9", next: nine}
            keywords:
              suport: [support]
            on: {timeout: goodby}
            max_retries: b
          b:
            type: branch
            conditions: [{if: "caller == '1'", next: vip}]
            else: goodbye
          goodbye: {type: hangup}
    """, ctx) == [
        f"{F}:5: node 'm': options '1': unknown target node 'salse'",
        f"{F}:7: node 'm': match: unknown target node 'nine'",
        f"{F}:9: node 'm': keywords: unknown target node 'suport'",
        f"{F}:10: node 'm': timeout: unknown target node 'goodby' (did you mean 'goodbye'?)",
        f"{F}:14: node 'b': condition: unknown target node 'vip'",
    ]


def test_unknown_next_target(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: answer, next: menu}
    """, ctx) == f"{F}:2: node 'a': next: unknown target node 'menu'"


def test_unknown_event_in_on(ctx: Context) -> None:
    assert only("""
        nodes:
          a:
            type: play
            prompt: hello
            on:
              next: b
              busy: b
          b: {type: hangup}
    """, ctx) == f"{F}:7: node 'a': 'play' has no 'busy' event (events: failed, next)"


def test_on_must_be_a_mapping(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: play, prompt: hello, on: next}
    """, ctx) == f"{F}:2: node 'a': 'on' must map events to nodes"


def test_on_is_a_string_key_not_yaml_1_1_true(ctx: Context) -> None:
    # YAML 1.1 reads an unquoted `on` key as the boolean true
    flow = parse("""
        nodes:
          a:
            type: collect
            variable: v
            on: {next: b, timeout: b, failed: b}
          b: {type: hangup}
    """, ctx)
    assert flow.nodes["a"].edges == {"next": "b", "timeout": "b", "failed": "b"}


def test_yes_no_words_stay_words_in_keywords_and_targets(ctx: Context) -> None:
    # a confirmation menu says "yes" / "no" and may have nodes named so; YAML 1.1 would
    # read the unquoted words as booleans
    flow = parse("""
        variables: {answer: no, strict: false}
        nodes:
          confirm:
            type: menu
            greeting: hello
            keywords:
              yes: [yes, yeah]
              no: [no, nope, off]
            options: {"1": yes, "2": no}
          yes: {type: play, prompt: hello, barge_in: no, next: no}
          no: {type: hangup}
    """, ctx)
    assert flow.nodes["confirm"].fields["keywords"] == {"yes": ["yes", "yeah"],
                                                        "no": ["no", "nope", "off"]}
    assert flow.nodes["confirm"].fields["options"] == {"1": "yes", "2": "no"}
    assert flow.nodes["yes"].edges == {"next": "no"}
    assert flow.nodes["yes"].fields["barge_in"] is False  # true/false fields accept no
    assert flow.variables == {"answer": "no", "strict": False}  # only true/false are booleans


def test_timeout_number_is_the_field_and_a_name_is_the_edge(ctx: Context) -> None:
    flow = parse("""
        nodes:
          a: {type: menu, greeting: hello, options: {"1": b}, timeout: 5}
          b: {type: menu, greeting: hello, options: {"1": c}, timeout: "250ms"}
          c: {type: menu, greeting: hello, options: {"1": d}, timeout: goodbye}
          d: {type: menu, greeting: hello, options: {"1": a}, timeout: 7, on: {timeout: d}}
          goodbye: {type: hangup}
    """, ctx)
    n = flow.nodes
    assert n["a"].fields["timeout"] == 5.0 and "timeout" not in n["a"].edges
    assert n["b"].fields["timeout"] == 0.25 and "timeout" not in n["b"].edges
    assert "timeout" not in n["c"].fields and n["c"].edges["timeout"] == "goodbye"
    assert n["d"].fields["timeout"] == 7.0 and n["d"].edges["timeout"] == "d"


def test_timeout_edge_to_an_unknown_node(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: menu, greeting: hello, options: {"1": a}, timeout: nowhere}
    """, ctx) == f"{F}:2: node 'a': timeout: unknown target node 'nowhere'"


def test_missing_prompt_file(ctx: Context) -> None:
    prompts = ctx.prompts_dir
    assert errors("""
        nodes:
          a: {type: play, prompt: welcome, next: b}
          b:
            type: menu
            greeting:
              - greet
              - {play: menu_intro}
              - {say: "Press 1"}
            invalid: sorry
            options: {"1": a}
    """, ctx) == [
        f"{F}:2: node 'a': missing prompt file 'welcome' (looked for {prompts}/welcome.wav)",
        f"{F}:7: node 'b': missing prompt file 'menu_intro' (looked for "
        f"{prompts}/menu_intro.wav)",
        f"{F}:9: node 'b': missing prompt file 'sorry' (looked for {prompts}/sorry.wav)",
    ]


def test_prompts_that_are_not_checked_as_files(ctx: Context) -> None:
    flow = parse("""
        nodes:
          a: {type: play, prompt: "{{lang}}/welcome", next: b}
          b: {type: play, prompt: {say: "Hello {{name}}"}, next: c}
          c: {type: play, prompt: [hello.wav, sub/inner, {play: "x-{{n}}"}], next: d}
          d: {type: say, text: "Hi {{caller}}"}
    """, ctx)
    assert flow.uses_tts and flow.say_texts == []


@pytest.mark.parametrize("name", ["../secret", "sub/../../secret", "/etc/passwd"])
def test_prompt_path_escaping_the_prompts_directory(ctx: Context, name: str) -> None:
    (ctx.prompts_dir.parent / "secret.wav").write_bytes(b"")
    assert only(f"nodes:\n  a: {{type: play, prompt: '{name}'}}\n", ctx) == \
        f"{F}:2: node 'a': prompt '{name}' must be a name inside the prompts directory"


def test_say_without_tts(ctx: Context) -> None:
    ctx.tts_available = False
    msg = ("text-to-speech is not available (install espeak-ng; pyttsx3 needs libespeak-ng1) "
           "but this flow uses 'say'")
    assert errors("""
        nodes:
          a: {type: say, text: Hello, next: b}
          b: {type: play, prompt: [hello, {say: "Bye {{name}}"}]}
    """, ctx) == [f"{F}:2: node 'a': {msg}", f"{F}:3: node 'b': {msg}"]


def test_unreachable_node(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: play, prompt: hello, next: c}
          orphan: {type: play, prompt: hello, next: c}
          c: {type: hangup}
    """, ctx) == f"{F}:3: node 'orphan': unreachable node (no path from start node 'a')"


def test_nodes_reached_only_through_options_keywords_match_and_conditions(
        ctx: Context) -> None:
    parse("""
        nodes:
          m:
            type: menu
            greeting: hello
            options: {"1": o}
            match: [{pattern: "^2", next: p}]
            keywords: {k: [kay]}
          o: {type: hangup}
          p: {type: branch, conditions: [{if: "true", next: q}], else: o}
          q: {type: hangup}
          k: {type: hangup}
    """, ctx)


def test_loop_of_non_waiting_nodes_reported_once_with_its_path(ctx: Context) -> None:
    assert only("""
        nodes:
          a: {type: answer, next: b}
          b: {type: set, variables: {x: 1}, next: c}
          c: {type: schedule, schedule: office, open: d, closed: w}
          d: {type: branch, conditions: [{if: "x == 1", next: e}], else: w}
          e: {type: goto, next: a}
          w: {type: menu, greeting: hello, options: {"1": a}}
    """, ctx) == (f"{F}:2: node 'a': loop that never waits for the caller: "
                  "a -> b -> c -> d -> e -> a")


def test_goto_to_itself(ctx: Context) -> None:
    assert only("""
        nodes:
          start: {type: play, prompt: hello, next: spin}
          spin: {type: goto, next: spin}
    """, ctx) == f"{F}:3: node 'spin': loop that never waits for the caller: spin -> spin"


def test_two_distinct_instant_loops_are_both_reported(ctx: Context) -> None:
    assert errors("""
        nodes:
          a: {type: play, prompt: hello, next: b}
          b: {type: set, variables: {x: 1}, next: c}
          c: {type: branch, conditions: [{if: "x", next: b}], else: d}
          d: {type: goto, next: c}
    """, ctx) == [
        f"{F}:3: node 'b': loop that never waits for the caller: b -> c -> b",
        f"{F}:4: node 'c': loop that never waits for the caller: c -> d -> c",
    ]


def test_a_loop_through_a_waiting_node_is_fine(ctx: Context) -> None:
    parse("""
        nodes:
          a: {type: answer, next: b}
          b: {type: set, variables: {x: 1}, next: m}
          m: {type: menu, greeting: hello, options: {"1": b, "2": c}}
          c: {type: collect, variable: v, next: g}
          g: {type: goto, next: b}
    """, ctx)


def test_unknown_schedule_queue_flow_and_extension(ctx: Context) -> None:
    assert errors("""
        nodes:
          a: {type: schedule, schedule: ofice, open: b, closed: b}
          b: {type: queue, queue: suport, next: c}
          c: {type: subflow, flow: sals, next: d}
          d: {type: dial, extension: [1001, 1003], next: e}
          e: {type: transfer, flow: elsewhere}
    """, ctx) == [
        f"{F}:2: node 'a': unknown schedule 'ofice' (config.yaml schedules: office)",
        f"{F}:3: node 'b': unknown queue 'suport' (did you mean 'support'?)",
        f"{F}:4: node 'c': unknown flow 'sals' (did you mean 'sales'?)",
        f"{F}:5: node 'd': '1003' is not a configured extension",
        f"{F}:6: node 'e': unknown flow 'elsewhere'",
    ]


def test_no_schedules_defined(ctx: Context) -> None:
    ctx.schedules = set()
    assert only("""
        nodes:
          a: {type: schedule, schedule: office, open: b, closed: b}
          b: {type: hangup}
    """, ctx) == f"{F}:2: node 'a': unknown schedule 'office' (config.yaml schedules: none defined)"


def test_templated_references_are_checked_at_run_time(ctx: Context) -> None:
    parse("""
        nodes:
          a: {type: queue, queue: "{{dept}}", next: b}
          b: {type: subflow, flow: "{{dept}}", next: c}
          c: {type: dial, extension: "{{ext}}", next: d}
          d: {type: transfer, flow: "{{next_flow}}"}
    """, ctx)


def test_any_extension_when_none_are_configured(ctx: Context) -> None:
    ctx.numbers = set()
    parse("nodes:\n  a: {type: dial, extension: 4242}\n", ctx)


def test_collect_min_digits_above_max_digits(ctx: Context) -> None:
    assert only("""
        nodes:
          a:
            type: collect
            variable: pin
            max_digits: 4
            min_digits: 6
            next: b
          b: {type: hangup}
    """, ctx) == f"{F}:6: node 'a': min_digits (6) > max_digits (4)"


def test_collect_min_digits_above_default_max(ctx: Context) -> None:
    assert only("nodes:\n  a: {type: collect, variable: v, min_digits: 21, next: a}\n",
                ctx) == f"{F}:2: node 'a': min_digits (21) > max_digits (20)"


def test_http_method(ctx: Context) -> None:
    assert only("""
        nodes:
          a:
            type: http
            url: http://example.invalid/
            method: delete
    """, ctx) == f"{F}:5: node 'a': method must be GET or POST, got 'DELETE'"


def test_menu_without_options_match_or_keywords(ctx: Context) -> None:
    assert only("""
        nodes:
          a:
            type: menu
            greeting: hello
            timeout: 3
    """, ctx) == f"{F}:2: node 'a': a menu needs 'options', 'match' or 'keywords'"


def test_several_errors_are_reported_together_sorted_by_line(ctx: Context) -> None:
    # detection order differs from line order: targets and the graph are checked last
    text = """
        flow: t
        nodes:
          a: {type: play, prompt: hello, next: nowhere}
          b: {type: play, prompt: missing, next: a}
          c: {type: record, beep: maybe}
        extra: 1
    """
    with pytest.raises(FlowError) as ei:
        parse(text, ctx)
    lines = str(ei.value).splitlines()
    assert lines == [
        f"{F}:3: node 'a': next: unknown target node 'nowhere'",
        f"{F}:4: node 'b': missing prompt file 'missing' (looked for "
        f"{ctx.prompts_dir}/missing.wav)",
        f"{F}:4: node 'b': unreachable node (no path from start node 'a')",
        f"{F}:5: node 'c': 'beep' must be true or false, got 'maybe'",
        f"{F}:5: node 'c': unreachable node (no path from start node 'a')",
        f"{F}:6: unknown key 'extra' (allowed: description, flow, language, nodes, start, "
        "variables)",
    ]


def test_flow_issue_format() -> None:
    assert str(FlowIssue("f.yaml", 3, "menu", "boom")) == "f.yaml:3: node 'menu': boom"
    assert str(FlowIssue("f.yaml", 1, None, "boom")) == "f.yaml:1: boom"
    err = FlowError([FlowIssue("b.yaml", 1, None, "x"), FlowIssue("a.yaml", 9, None, "y"),
                     FlowIssue("a.yaml", 2, None, "z")])
    assert [(i.file, i.line) for i in err.issues] == [("a.yaml", 2), ("a.yaml", 9),
                                                      ("b.yaml", 1)]


# ---------------------------------------------------------------- several files


def write_flows(d: Path, files: dict[str, str]) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in files.items():
        p = d / name
        p.write_text(src(text))
        out.append(p)
    return sorted(out)


MAIN = """
    flow: main
    nodes:
      a: {type: subflow, flow: sales, next: b}
      b: {type: transfer, flow: support}
"""
SALES = """
    flow: sales
    nodes:
      s: {type: play, prompt: hello, next: r}
      r: {type: return}
"""


def test_load_flows_resolves_cross_flow_references(ctx: Context, tmp_path: Path) -> None:
    ctx.flows = set()
    paths = write_flows(tmp_path / "flows", {
        "main.yaml": MAIN,
        "sales_menu.yaml": SALES,  # named by its `flow:` key, not the file name
        "support.yaml": "nodes:\n  s: {type: hangup}\n",  # named after the file
    })
    fs = load_flows(paths, ctx, version=7)
    assert sorted(fs.flows) == ["main", "sales", "support"]
    assert fs.version == 7 and all(f.version == 7 for f in fs.flows.values())
    assert fs.get("sales") is fs.flows["sales"] and fs.get("sales_menu") is None


def test_load_flows_unknown_flow_reference(ctx: Context, tmp_path: Path) -> None:
    ctx.flows = set()
    paths = write_flows(tmp_path / "flows", {"main.yaml": MAIN, "sales.yaml": SALES})
    with pytest.raises(FlowError) as ei:
        load_flows(paths, ctx)
    assert [str(i) for i in ei.value.issues] == [
        f"{tmp_path}/flows/main.yaml:4: node 'b': unknown flow 'support'"]


def test_load_flows_duplicate_flow_names(ctx: Context, tmp_path: Path) -> None:
    paths = write_flows(tmp_path / "flows", {
        "a.yaml": "flow: main\nnodes:\n  x: {type: hangup}\n",
        "b.yaml": "# the new main menu\n\nflow: main\nnodes:\n  y: {type: hangup}\n",
    })
    with pytest.raises(FlowError) as ei:
        load_flows(paths, ctx)
    assert [str(i) for i in ei.value.issues] == [
        f"{paths[1]}:3: flow name 'main' already used by {paths[0]}"]


def test_load_flows_reports_every_file(ctx: Context, tmp_path: Path) -> None:
    paths = write_flows(tmp_path / "flows", {
        "a.yaml": "nodes:\n  x: {type: play, prompt: nope}\n",
        "b.yaml": "nodes:\n  y: {type: hangup}\n  z: {type: hangup}\n",
        "c.yaml": "nodes:\n  ok: {type: hangup}\n",
    })
    (tmp_path / "flows" / "d.yaml").write_bytes(b"nodes: \xff\xfe\n")
    paths.append(tmp_path / "flows" / "d.yaml")
    with pytest.raises(FlowError) as ei:
        load_flows(paths, ctx)
    msgs = [str(i) for i in ei.value.issues]
    assert msgs[0] == f"{paths[0]}:2: node 'x': missing prompt file 'nope' (looked for " \
                      f"{ctx.prompts_dir}/nope.wav)"
    assert msgs[1] == f"{paths[1]}:3: node 'z': unreachable node (no path from start node 'y')"
    assert msgs[2].startswith(f"{paths[3]}:1: cannot read: ")
    assert len(msgs) == 3


def test_flows_using_say_are_skipped_without_tts(ctx: Context, tmp_path: Path) -> None:
    ctx.tts_available = False
    paths = write_flows(tmp_path / "flows", {
        "digits.yaml": "nodes:\n  a: {type: play, prompt: hello}\n",
        "spoken.yaml": "nodes:\n  a: {type: play, prompt: hello, next: b}\n"
                       "  b: {type: say, text: Goodbye}\n",
    })
    skipped: list[FlowIssue] = []
    fs = load_flows(paths, ctx, on_tts_missing=skipped.append)
    assert list(fs.flows) == ["digits"]
    assert [str(i) for i in skipped] == [
        f"{paths[1]}:3: node 'b': text-to-speech is not available (install espeak-ng; "
        "pyttsx3 needs libespeak-ng1) but this flow uses 'say'"]
    # without the callback the whole set is refused
    with pytest.raises(FlowError, match="text-to-speech is not available"):
        load_flows(paths, ctx)


def test_a_say_flow_with_another_error_is_not_silently_skipped(
        ctx: Context, tmp_path: Path) -> None:
    ctx.tts_available = False
    paths = write_flows(tmp_path / "flows", {
        "spoken.yaml": "nodes:\n  a: {type: say, text: Hi, next: gone}\n",
    })
    skipped: list[FlowIssue] = []
    with pytest.raises(FlowError) as ei:
        load_flows(paths, ctx, on_tts_missing=skipped.append)
    assert skipped == []
    assert [i.message for i in ei.value.issues] == [
        "text-to-speech is not available (install espeak-ng; pyttsx3 needs libespeak-ng1) "
        "but this flow uses 'say'",
        "next: unknown target node 'gone'"]
