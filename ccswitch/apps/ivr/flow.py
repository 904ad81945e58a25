"""Flow files: loading, validation (with file:line and node name) and the compiled model.

A flow is a YAML mapping:

    start: welcome            # first node (default: the first node listed)
    language: en              # speech recognizer for menus with keywords
    variables: {company: Example}
    nodes:
      welcome:
        type: play
        prompt: welcome       # prompts/welcome.wav  (or {say: "text"}, or a list)
        next: main

Every node has a `type`; its transitions are fields named after events
(`next`, `timeout`, `no_match`, `max_retries`, `failed`, `busy`...) or an
`on:` mapping of event -> node.  Errors are collected, never raised one by one,
and each reads `file:line: node 'x': message`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.nodes import Node as YamlNode

from ccswitch.apps.ivr.expr import ExprError, Expression, is_template

# ---------------------------------------------------------------- YAML with lines


class LDict(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]
    value_lines: dict[str, int]


class LList(list[Any]):
    line: int = 0
    item_lines: list[int]


def _build(node: YamlNode, errors: list[tuple[int, str]]) -> Any:
    if isinstance(node, MappingNode):
        d = LDict()
        d.line = node.start_mark.line + 1
        d.key_lines, d.value_lines = {}, {}
        for k, v in node.value:
            # keys as written: YAML 1.1 would turn `on:` or `yes:` into booleans
            if not isinstance(k, ScalarNode):
                errors.append((k.start_mark.line + 1, "mapping keys must be plain words"))
                continue
            key = str(k.value)
            if key in d:
                errors.append((k.start_mark.line + 1, f"duplicate key '{key}'"))
            d[key] = _build(v, errors)
            d.key_lines[key] = k.start_mark.line + 1
            d.value_lines[key] = v.start_mark.line + 1
        return d
    if isinstance(node, SequenceNode):
        lst = LList()
        lst.line = node.start_mark.line + 1
        lst.item_lines = []
        for item in node.value:
            lst.append(_build(item, errors))
            lst.item_lines.append(item.start_mark.line + 1)
        return lst
    assert isinstance(node, ScalarNode)
    if node.tag == _BOOL_TAG and node.style is None and node.value.lower() not in _BOOL_WORDS:
        # YAML 1.1 reads plain yes/no/on/off as booleans: a confirmation menu's keywords
        # [yes, no] or `next: no` must stay words (bool fields still accept them)
        return node.value
    return _SCALAR_LOADER.construct_object(node)


_BOOL_TAG = "tag:yaml.org,2002:bool"
_BOOL_WORDS = ("true", "false")
_YAML11_BOOLS = {"yes": True, "on": True, "no": False, "off": False}


_SCALAR_LOADER = yaml.SafeLoader("")


def load_yaml_lines(text: str, name: str) -> tuple[Any, list[tuple[int, str]]]:
    errors: list[tuple[int, str]] = []
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e)
        return None, [(line, f"YAML syntax error: {problem}")]
    if node is None:
        return None, [(1, "empty flow file")]
    try:
        return _build(node, errors), errors
    except yaml.YAMLError as e:
        return None, [(1, f"YAML error: {e}")]


# ---------------------------------------------------------------- node type specs

PROMPT = "prompt"  # str name | {say: text} | {play: name} | list of those
TARGET = "target"
DURATION = "duration"
REGEX = "regex"
EXPR = "expr"


@dataclass(frozen=True)
class Spec:
    fields: dict[str, Any]  # name -> kind (type or marker)
    required: tuple[str, ...] = ()
    edges: tuple[str, ...] = ("next",)
    required_edges: tuple[str, ...] = ()
    waits: bool = True  # consumes time / waits for the caller (loop check)


NODE_TYPES: dict[str, Spec] = {
    "answer": Spec({}, waits=False),
    "play": Spec({"prompt": PROMPT, "barge_in": bool}, ("prompt",)),
    "say": Spec({"text": str, "voice": str, "barge_in": bool}, ("text",)),
    "menu": Spec(
        {"greeting": PROMPT, "short_greeting": PROMPT, "options": "options",
         "match": "match", "keywords": "keywords", "max_digits": int, "terminator": str,
         "timeout": DURATION, "inter_digit_timeout": DURATION, "retries": int,
         "invalid": PROMPT, "timeout_prompt": PROMPT, "language": str, "variable": str},
        ("greeting",), edges=("max_retries", "no_match", "timeout", "failed"),
    ),
    "collect": Spec(
        {"prompt": PROMPT, "min_digits": int, "max_digits": int, "terminator": str,
         "timeout": DURATION, "inter_digit_timeout": DURATION, "validate": REGEX,
         "variable": str, "retries": int, "invalid": PROMPT},
        ("variable",), edges=("next", "timeout", "no_match", "max_retries"),
        required_edges=("next",),
    ),
    "set": Spec({"variables": dict}, ("variables",), waits=False),
    "branch": Spec({"conditions": "conditions"}, ("conditions",), edges=("else",),
                   required_edges=("else",), waits=False),
    "schedule": Spec({"schedule": str}, ("schedule",), edges=("open", "closed", "holiday"),
                     required_edges=("open", "closed"), waits=False),
    "goto": Spec({}, edges=("next",), required_edges=("next",), waits=False),
    "subflow": Spec({"flow": str}, ("flow",), edges=("next",), required_edges=("next",)),
    "return": Spec({}, edges=()),
    "dial": Spec({"extension": "extensions", "timeout": DURATION},
                 ("extension",), edges=("next", "busy", "no_answer", "failed")),
    "transfer": Spec({"flow": str}, ("flow",), edges=()),
    "record": Spec({"file": str, "prompt": PROMPT, "max_seconds": DURATION,
                    "silence_seconds": DURATION, "terminators": str, "beep": bool,
                    "variable": str},
                   edges=("next", "failed")),
    "http": Spec({"url": str, "method": str, "body": dict, "headers": dict,
                  "timeout": DURATION, "variables": dict, "status_variable": str},
                 ("url",), edges=("next", "failed")),
    "hangup": Spec({"cause": str}, edges=()),
    "queue": Spec({"queue": str, "priority": int, "skills": dict, "timeout": DURATION},
                  ("queue",), edges=("next", "timeout", "full", "closed", "failed")),
}

ALWAYS_EDGES = ("failed",)  # any node may name a failure edge


@dataclass
class Node:
    name: str
    type: str
    line: int
    fields: dict[str, Any]
    edges: dict[str, str]
    field_lines: dict[str, int] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


@dataclass
class Flow:
    name: str
    path: Path
    start: str
    nodes: dict[str, Node]
    variables: dict[str, Any]
    language: str | None = None
    description: str = ""
    version: int = 0
    uses_tts: bool = False
    say_texts: list[str] = field(default_factory=list)  # static texts to pre-render

    def node(self, name: str) -> Node:
        return self.nodes[name]


@dataclass
class FlowIssue:
    file: str
    line: int
    node: str | None
    message: str

    def __str__(self) -> str:
        where = f"node '{self.node}': " if self.node else ""
        return f"{self.file}:{self.line}: {where}{self.message}"


class FlowError(Exception):
    def __init__(self, issues: list[FlowIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line))
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass
class Context:
    """What validation checks references against."""

    prompts_dir: Path
    schedules: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    flows: set[str] = field(default_factory=set)  # flow names that exist
    tts_available: bool = True
    numbers: set[str] = field(default_factory=set)  # dialable numbers


PROMPT_EXTS = (".wav", ".mp3", ".ogg", ".flac")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_duration(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        m = _DURATION_RE.match(v)
        if m:
            n = float(m.group(1))
            unit = m.group(2) or "s"
            return n / 1000 if unit == "ms" else n * 60 if unit == "m" else n
    return None


def find_prompt(prompts_dir: Path, name: str) -> Path | None:
    p = prompts_dir / name
    if p.suffix.lower() in PROMPT_EXTS and p.is_file():
        return p
    for ext in PROMPT_EXTS:
        q = prompts_dir / (name + ext)
        if q.is_file():
            return q
    return None


class _Validator:
    def __init__(self, file: str, ctx: Context) -> None:
        self.file = file
        self.ctx = ctx
        self.issues: list[FlowIssue] = []
        self.say_texts: list[str] = []
        self.uses_tts = False

    def err(self, line: int, node: str | None, msg: str) -> None:
        self.issues.append(FlowIssue(self.file, line, node, msg))

    # ---- prompts
    def prompt(self, v: Any, line: int, node: str, what: str) -> None:
        if isinstance(v, str):
            self._play_name(v, line, node)
        elif isinstance(v, dict):
            keys = set(v)
            if keys == {"say"} or keys == {"say", "voice"}:
                if not isinstance(v["say"], str) or not v["say"].strip():
                    self.err(line, node, f"{what}: 'say' needs text")
                else:
                    self._say(v["say"], line, node)
            elif keys == {"play"}:
                if not isinstance(v["play"], str):
                    self.err(line, node, f"{what}: 'play' needs a prompt name")
                else:
                    self._play_name(v["play"], line, node)
            else:
                self.err(line, node, f"{what}: a prompt is a name, {{play: name}} or "
                         f"{{say: text}}, not {sorted(keys)}")
        elif isinstance(v, list):
            if not v:
                self.err(line, node, f"{what}: empty prompt list")
            lines = getattr(v, "item_lines", [line] * len(v))
            for item, ln in zip(v, lines, strict=False):
                self.prompt(item, ln, node, what)
        else:
            self.err(line, node, f"{what}: expected a prompt name, {{say: text}} or a list, "
                     f"got {_tname(v)}")

    def _play_name(self, name: str, line: int, node: str) -> None:
        if is_template(name):
            return
        if ".." in Path(name).parts or name.startswith("/"):
            self.err(line, node, f"prompt '{name}' must be a name inside the prompts directory")
            return
        if find_prompt(self.ctx.prompts_dir, name) is None:
            self.err(line, node, f"missing prompt file '{name}' (looked for "
                     f"{self.ctx.prompts_dir / name}.wav)")

    def _say(self, text: str, line: int, node: str) -> None:
        self.uses_tts = True
        if not self.ctx.tts_available:
            self.err(line, node, "text-to-speech is not available (install espeak-ng; "
                     "pyttsx3 needs libespeak-ng1) but this flow uses 'say'")
        elif not is_template(text):
            self.say_texts.append(text)

    # ---- fields
    def field(self, node: str, key: str, kind: Any, v: Any, line: int, fl: dict[str, Any],
              targets: list[tuple[str, int, str]]) -> Any:
        """Validate one field; returns the normalised value."""
        if kind is PROMPT:
            self.prompt(v, line, node, key)
            return v
        if kind is bool:
            if isinstance(v, str) and v.lower() in _YAML11_BOOLS:
                return _YAML11_BOOLS[v.lower()]
            if not isinstance(v, bool):
                self.err(line, node, f"'{key}' must be true or false, got {_tname(v)}")
            return v
        if kind is int:
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                self.err(line, node, f"'{key}' must be a whole number >= 0, got {_tname(v)}")
            return v
        if kind is str:
            if isinstance(v, int | float) and not isinstance(v, bool):
                return str(v)
            if not isinstance(v, str):
                self.err(line, node, f"'{key}' must be text, got {_tname(v)}")
            return v
        if kind is dict:
            if not isinstance(v, dict):
                self.err(line, node, f"'{key}' must be a mapping, got {_tname(v)}")
            return v
        if kind is DURATION:
            d = parse_duration(v)
            if d is None or d < 0:
                self.err(line, node, f"'{key}' must be a duration in seconds (e.g. 5 or "
                         f"'500ms'), got {v!r}")
                return 0.0
            return d
        if kind is REGEX:
            if not isinstance(v, str):
                self.err(line, node, f"'{key}' must be a regular expression string")
                return v
            try:
                re.compile(v)
            except re.error as e:
                self.err(line, node, f"'{key}': invalid regular expression: {e}")
            return v
        if kind == "options":
            if not isinstance(v, dict):
                self.err(line, node, "'options' must map digits to nodes")
                return {}
            out = {}
            for digit, target in v.items():
                ln = getattr(v, "value_lines", {}).get(digit, line)
                if not re.fullmatch(r"[0-9*#A-Da-d]+", str(digit)):
                    self.err(ln, node, f"options: '{digit}' is not a key sequence")
                if not isinstance(target, str):
                    self.err(ln, node, f"options: '{digit}' must name a node")
                    continue
                targets.append((target, ln, f"options '{digit}'"))
                out[str(digit)] = target
            return out
        if kind == "match":
            out_m: list[tuple[str, str]] = []
            if not isinstance(v, list):
                self.err(line, node, "'match' must be a list of {pattern, next}")
                return out_m
            for item, ln in zip(v, getattr(v, "item_lines", [line] * len(v)), strict=False):
                if not isinstance(item, dict) or set(item) != {"pattern", "next"}:
                    self.err(ln, node, "each 'match' entry needs exactly 'pattern' and 'next'")
                    continue
                try:
                    re.compile(str(item["pattern"]))
                except re.error as e:
                    self.err(ln, node, f"match: invalid regular expression: {e}")
                    continue
                targets.append((str(item["next"]), ln, "match"))
                out_m.append((str(item["pattern"]), str(item["next"])))
            return out_m
        if kind == "keywords":
            out_k: dict[str, list[str]] = {}
            if not isinstance(v, dict):
                self.err(line, node, "'keywords' must map nodes to lists of words")
                return out_k
            for target, words in v.items():
                ln = getattr(v, "value_lines", {}).get(target, line)
                if isinstance(words, str):
                    words = [words]
                if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                    self.err(ln, node, f"keywords '{target}': expected a list of words")
                    continue
                targets.append((str(target), getattr(v, "key_lines", {}).get(target, ln),
                                "keywords"))
                out_k[str(target)] = [w.strip().lower() for w in words if w.strip()]
            return out_k
        if kind == "conditions":
            out_c: list[tuple[Expression, str]] = []
            if not isinstance(v, list):
                self.err(line, node, "'conditions' must be a list of {if, next}")
                return out_c
            for item, ln in zip(v, getattr(v, "item_lines", [line] * len(v)), strict=False):
                if not isinstance(item, dict) or set(item) != {"if", "next"}:
                    self.err(ln, node, "each condition needs exactly 'if' and 'next'")
                    continue
                try:
                    expr = Expression(str(item["if"]))
                except ExprError as e:
                    self.err(ln, node, str(e))
                    continue
                targets.append((str(item["next"]), ln, "condition"))
                out_c.append((expr, str(item["next"])))
            return out_c
        if kind == "extensions":
            vals = v if isinstance(v, list) else [v]
            out_e = []
            for x in vals:
                if isinstance(x, int | str) and not isinstance(x, bool):
                    out_e.append(str(x))
                else:
                    self.err(line, node, "'extension' must be a number or a list of numbers")
            return out_e
        raise AssertionError(kind)


def _kl(d: Any) -> dict[str, int]:
    kl: dict[str, int] = getattr(d, "key_lines", {})
    return kl


def _vl(d: Any) -> dict[str, int]:
    vl: dict[str, int] = getattr(d, "value_lines", {})
    return vl


def parse_flow(text: str, path: Path, ctx: Context, name: str | None = None) -> Flow:
    """Parse and validate one flow; raises FlowError listing every problem."""
    file = str(path)
    data, yerr = load_yaml_lines(text, file)
    v = _Validator(file, ctx)
    for line, msg in yerr:
        v.err(line, None, msg)
    if data is None:
        raise FlowError(v.issues)
    if not isinstance(data, dict):
        v.err(getattr(data, "line", 1), None, "a flow file must be a mapping with 'nodes'")
        raise FlowError(v.issues)
    top_allowed = {"flow", "description", "start", "language", "variables", "nodes"}
    for k in data:
        if k not in top_allowed:
            v.err(_kl(data).get(k, 1), None, f"unknown key '{k}'"
                  f"{_suggest(k, top_allowed)} (allowed: {', '.join(sorted(top_allowed))})")
    fname = str(data.get("flow") or name or path.stem)
    nodes_raw = data.get("nodes")
    if not isinstance(nodes_raw, dict) or not nodes_raw:
        v.err(_kl(data).get("nodes", getattr(data, "line", 1)), None,
              "missing or empty 'nodes' mapping")
        raise FlowError(v.issues)
    variables = data.get("variables") or {}
    if not isinstance(variables, dict):
        v.err(_kl(data).get("variables", 1), None, "'variables' must be a mapping")
        variables = {}
    nodes: dict[str, Node] = {}
    all_targets: list[tuple[str, str, int, str]] = []  # (from node, target, line, via)
    for nname, raw in nodes_raw.items():
        nline = _kl(nodes_raw).get(nname, 1)
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", nname):
            v.err(nline, nname, "node names are letters, digits, '_' and '-'")
        if not isinstance(raw, dict):
            v.err(nline, nname, f"a node must be a mapping with a 'type', got {_tname(raw)}")
            continue
        ntype = raw.get("type")
        if ntype is None:
            v.err(nline, nname, f"missing field 'type' (one of: {', '.join(NODE_TYPES)})")
            continue
        spec = NODE_TYPES.get(str(ntype))
        if spec is None:
            v.err(_vl(raw).get("type", nline), nname,
                  f"unknown node type '{ntype}'{_suggest(str(ntype), NODE_TYPES)}")
            continue
        fields: dict[str, Any] = {}
        edges: dict[str, str] = {}
        targets: list[tuple[str, int, str]] = []
        allowed_edges = set(spec.edges) | set(ALWAYS_EDGES)
        for key, val in raw.items():
            kline = _kl(raw).get(key, nline)
            vline = _vl(raw).get(key, kline)
            if key == "type":
                continue
            if key == "on":
                if not isinstance(val, dict):
                    v.err(vline, nname, "'on' must map events to nodes")
                    continue
                for evname, tgt in val.items():
                    ln = _vl(val).get(evname, vline)
                    if evname not in allowed_edges:
                        v.err(_kl(val).get(evname, ln), nname,
                              f"'{ntype}' has no '{evname}' event (events: "
                              f"{', '.join(sorted(allowed_edges)) or 'none'})")
                        continue
                    if not isinstance(tgt, str):
                        v.err(ln, nname, f"event '{evname}' must name a node")
                        continue
                    edges[evname] = tgt
                    targets.append((tgt, ln, evname))
                continue
            if key in allowed_edges and key in spec.fields and (
                    not isinstance(val, str) or val[:1].isdigit()):
                # `timeout: 5` is the field (seconds); `timeout: goodbye` is the transition
                fields[key] = v.field(nname, key, spec.fields[key], val, vline, fields, targets)
                continue
            if key in allowed_edges:
                if not isinstance(val, str):
                    v.err(vline, nname, f"'{key}' must name a node, got {_tname(val)}")
                    continue
                edges[key] = val
                targets.append((val, vline, key))
                continue
            kind = spec.fields.get(key)
            if kind is None:
                known = sorted(set(spec.fields) | allowed_edges | {"type", "on"})
                v.err(kline, nname, f"unknown field '{key}' for type '{ntype}'"
                      f"{_suggest(key, known)}")
                continue
            fields[key] = v.field(nname, key, kind, val, vline, fields, targets)
        for req in spec.required:
            if req not in fields and req not in raw:
                v.err(nline, nname, f"missing field '{req}' (required for type '{ntype}')")
        for req in spec.required_edges:
            if req not in edges:
                v.err(nline, nname, f"missing transition '{req}' (required for type '{ntype}')")
        if ntype == "say" and isinstance(fields.get("text"), str):
            v._say(fields["text"], _vl(raw).get("text", nline), nname)
        assert isinstance(raw, LDict)
        _check_refs(v, nname, str(ntype), fields, raw, nline, ctx)
        node = Node(nname, str(ntype), nline, fields, edges,
                    {k: _vl(raw).get(k, nline) for k in raw})
        nodes[nname] = node
        for tgt, ln, via in targets:
            all_targets.append((nname, tgt, ln, via))
    start = data.get("start")
    if start is None:
        start = next(iter(nodes_raw))
    elif not isinstance(start, str) or start not in nodes_raw:
        v.err(_vl(data).get("start", 1), None, f"start node '{start}' does not exist")
    for src, tgt, ln, via in all_targets:
        if tgt not in nodes_raw:
            v.err(ln, src, f"{via}: unknown target node '{tgt}'{_suggest(tgt, nodes_raw)}")
    if isinstance(start, str) and start in nodes:
        _check_graph(v, nodes, start)
    if v.issues:
        raise FlowError(v.issues)
    lang = data.get("language")
    return Flow(fname, path, str(start), nodes, dict(variables),
                str(lang) if lang else None, str(data.get("description") or ""),
                uses_tts=v.uses_tts, say_texts=v.say_texts)


def _check_refs(v: _Validator, nname: str, ntype: str, fields: dict[str, Any], raw: LDict,
                nline: int, ctx: Context) -> None:
    def ln(key: str) -> int:
        return _vl(raw).get(key, nline)

    if ntype == "schedule":
        s = fields.get("schedule")
        if isinstance(s, str) and s not in ctx.schedules:
            v.err(ln("schedule"), nname, f"unknown schedule '{s}' (config.yaml schedules: "
                  f"{', '.join(sorted(ctx.schedules)) or 'none defined'})")
    if ntype in ("subflow", "transfer"):
        f = fields.get("flow")
        if isinstance(f, str) and not is_template(f) and f not in ctx.flows:
            v.err(ln("flow"), nname, f"unknown flow '{f}'{_suggest(f, ctx.flows)}")
    if ntype == "queue":
        q = fields.get("queue")
        if isinstance(q, str) and not is_template(q) and q not in ctx.queues:
            v.err(ln("queue"), nname, f"unknown queue '{q}'{_suggest(q, ctx.queues)}")
    if ntype == "dial":
        for x in fields.get("extension") or []:
            if ctx.numbers and not is_template(x) and x not in ctx.numbers:
                v.err(ln("extension"), nname, f"'{x}' is not a configured extension")
    if ntype == "menu" and not (
            fields.get("options") or fields.get("match") or fields.get("keywords")):
            v.err(nline, nname, "a menu needs 'options', 'match' or 'keywords'")
    if ntype == "collect":
        mn, mx = fields.get("min_digits", 1), fields.get("max_digits", 20)
        if isinstance(mn, int) and isinstance(mx, int) and mn > mx:
            v.err(ln("min_digits"), nname, f"min_digits ({mn}) > max_digits ({mx})")
    if ntype == "http":
        m = str(fields.get("method", "GET")).upper()
        if m not in ("GET", "POST"):
            v.err(ln("method"), nname, f"method must be GET or POST, got '{m}'")


def successors(node: Node) -> Iterable[str]:
    yield from node.edges.values()
    opts = node.fields.get("options")
    if isinstance(opts, dict):
        yield from opts.values()
    for _, tgt in node.fields.get("match") or []:
        yield tgt
    kws = node.fields.get("keywords")
    if isinstance(kws, dict):
        yield from kws
    for _, tgt in node.fields.get("conditions") or []:
        yield tgt


def _check_graph(v: _Validator, nodes: dict[str, Node], start: str) -> None:
    # reachability from the start node
    seen = {start}
    stack = [start]
    while stack:
        n = nodes.get(stack.pop())
        if n is None:
            continue
        for s in successors(n):
            if s not in seen and s in nodes:
                seen.add(s)
                stack.append(s)
    for name, n in nodes.items():
        if name not in seen:
            v.err(n.line, name, f"unreachable node (no path from start node '{start}')")
    # a cycle of nodes that never wait would spin forever without the caller doing anything
    instant = {name for name, n in nodes.items() if not NODE_TYPES[n.type].waits}
    color: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def dfs(name: str, path: list[str]) -> None:
        color[name] = 1
        path.append(name)
        for s in successors(nodes[name]):
            if s not in instant or s not in nodes:
                continue
            if color.get(s) == 1:
                cyc = path[path.index(s):]
                key = frozenset(cyc)
                if key not in reported:
                    reported.add(key)
                    n0 = nodes[s]
                    v.err(n0.line, s, "loop that never waits for the caller: "
                          + " -> ".join([*cyc, s]))
            elif color.get(s) is None:
                dfs(s, path)
        path.pop()
        color[name] = 2

    for name in sorted(instant):
        if color.get(name) is None:
            dfs(name, [])


def _tname(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, int | float):
        return f"number {v}"
    return f"'{v}'" if isinstance(v, str) else type(v).__name__


def _suggest(word: str, candidates: Iterable[str]) -> str:
    import difflib

    m = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.7)
    return f" (did you mean '{m[0]}'?)" if m else ""


# ---------------------------------------------------------------- the registry


@dataclass
class FlowSet:
    """Every flow of a flows directory, loaded and validated together."""

    flows: dict[str, Flow]
    version: int

    def get(self, name: str) -> Flow | None:
        return self.flows.get(name)


def flow_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yaml", ".yml"))


def load_flows(paths: list[Path], ctx: Context, version: int = 1,
               on_tts_missing: Callable[[FlowIssue], None] | None = None) -> FlowSet:
    """Load several flow files; raises FlowError with every problem of every file.

    When TTS is unavailable, flows that use `say` are left out (reported through
    `on_tts_missing`) instead of failing the whole set.
    """
    names = {p.stem for p in paths}
    texts: dict[Path, str] = {}
    issues: list[FlowIssue] = []
    for p in paths:
        try:
            texts[p] = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            issues.append(FlowIssue(str(p), 1, None, f"cannot read: {e}"))
    # a flow may name itself with `flow:`; collect names first for cross references
    for p, t in texts.items():
        m = re.search(r"(?m)^flow:\s*['\"]?([A-Za-z0-9_\-]+)", t)
        if m:
            names.discard(p.stem)
            names.add(m.group(1))
    ctx.flows = set(names) | ctx.flows
    flows: dict[str, Flow] = {}
    for p, t in texts.items():
        try:
            f = parse_flow(t, p, ctx)
        except FlowError as e:
            tts_only = [i for i in e.issues if "text-to-speech is not available" in i.message]
            if tts_only and len(tts_only) == len(e.issues) and on_tts_missing is not None:
                on_tts_missing(tts_only[0])
                continue
            issues.extend(e.issues)
            continue
        if f.name in flows:
            # point at the `flow:` line (not line 1) like every other message
            m = re.search(r"(?m)^flow:", t)
            line = t.count("\n", 0, m.start()) + 1 if m else 1
            issues.append(FlowIssue(str(p), line, None,
                                    f"flow name '{f.name}' already used by {flows[f.name].path}"))
            continue
        f.version = version
        flows[f.name] = f
    if issues:
        raise FlowError(issues)
    return FlowSet(flows, version)
