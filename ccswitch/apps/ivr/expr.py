"""A small, safe expression and template language for flows (never `eval`).

Templates: ``"Hello {{name}}, you have {{vars.count}} messages"`` — only variable
lookups (dotted paths), with an optional default: ``{{name|there}}``.

Expressions (branch conditions): Python syntax parsed with `ast` and evaluated
over a whitelist of node types: literals, variable names, dotted attribute
access into dicts, comparisons (== != < <= > >= in, not in), and/or/not,
and a few functions: matches(s, regex), startswith(s, p), endswith(s, p),
len(x), int(x), str(x), lower(s).  Anything else is refused at load time.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

TEMPLATE_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|([^}]*))?\}\}")


class ExprError(ValueError):
    pass


def lookup(env: Mapping[str, Any], path: str) -> Any:
    cur: Any = env
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def render(template: str, env: Mapping[str, Any]) -> str:
    """Interpolate {{var}} references; missing variables become "" (or the default)."""
    if "{{" not in template:
        return template

    def sub(m: re.Match[str]) -> str:
        v = lookup(env, m.group(1))
        if v is None:
            return m.group(2) if m.group(2) is not None else ""
        return str(v)

    return TEMPLATE_RE.sub(sub, template)


def template_vars(template: str) -> list[str]:
    return [m.group(1) for m in TEMPLATE_RE.finditer(template)]


def is_template(s: str) -> bool:
    return "{{" in s


def _matches(s: Any, pattern: Any) -> bool:
    try:
        return re.search(str(pattern), "" if s is None else str(s)) is not None
    except re.error:
        return False


def _int(x: Any) -> int:
    try:
        return int(x)
    except (TypeError, ValueError):
        return 0


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "matches": _matches,
    "startswith": lambda s, p: str(s or "").startswith(str(p)),
    "endswith": lambda s, p: str(s or "").endswith(str(p)),
    "len": lambda x: len(x) if hasattr(x, "__len__") else 0,
    "int": _int,
    "str": lambda x: "" if x is None else str(x),
    "lower": lambda s: str(s or "").lower(),
}

# arguments each function takes: checked at load time, or a wrong count would pass
# `flows check` and raise TypeError on every call reaching the branch
ARITY = {"matches": 2, "startswith": 2, "endswith": 2, "len": 1, "int": 1, "str": 1,
         "lower": 1}

_CMP: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: _ord(a) < _ord(b),
    ast.LtE: lambda a, b: _ord(a) <= _ord(b),
    ast.Gt: lambda a, b: _ord(a) > _ord(b),
    ast.GtE: lambda a, b: _ord(a) >= _ord(b),
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
}


def _ord(x: Any) -> Any:
    """Compare numbers numerically even when they arrive as digit strings."""
    if isinstance(x, str):
        try:
            return float(x)
        except ValueError:
            return x
    return 0 if x is None else x


class Expression:
    """A compiled, validated expression."""

    def __init__(self, text: str) -> None:
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise ExprError(f"invalid expression {text!r}: {e.msg}") from None
        _check(tree.body)
        self.tree = tree.body

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return _eval(self.tree, env)

    def __call__(self, env: Mapping[str, Any]) -> bool:
        return bool(self.evaluate(env))


def _check(node: ast.AST) -> None:
    if isinstance(node, ast.BoolOp | ast.UnaryOp):
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, ast.Not | ast.USub):
            raise ExprError("only 'not' and '-' are allowed as unary operators")
        for child in (node.values if isinstance(node, ast.BoolOp) else [node.operand]):
            _check(child)
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _CMP:
                raise ExprError(f"comparison {type(op).__name__} is not allowed")
        _check(node.left)
        for c in node.comparators:
            _check(c)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, str | int | float | bool | type(None)):
            raise ExprError("only string, number, true/false/None literals are allowed")
    elif isinstance(node, ast.Name):
        pass
    elif isinstance(node, ast.Attribute):
        _check(node.value)
    elif isinstance(node, ast.List | ast.Tuple):
        for e in node.elts:
            _check(e)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ExprError(f"unknown function; allowed: {', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise ExprError("keyword arguments are not allowed")
        if len(node.args) != ARITY[node.func.id]:
            raise ExprError(f"{node.func.id}() takes {ARITY[node.func.id]} argument(s), "
                            f"got {len(node.args)}")
        for a in node.args:
            _check(a)
    else:
        raise ExprError(f"{type(node).__name__} is not allowed in expressions")


_NAMES = {"true": True, "false": False, "True": True, "False": False, "None": None,
          "null": None}


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in env:
            return env[node.id]
        return _NAMES.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _eval(node.value, env)
        return base.get(node.attr) if isinstance(base, Mapping) else None
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            val: Any = True
            for v in node.values:
                val = _eval(v, env)
                if not val:
                    return val
            return val
        for v in node.values:
            val = _eval(v, env)
            if val:
                return val
        return val
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, env)
        if isinstance(node.op, ast.Not):
            return not operand
        try:
            return -_ord(operand)
        except TypeError:  # -'abc' has no value (like a missing variable): no crash
            return None
    if isinstance(node, ast.Compare):
        left = _eval(node.left, env)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, env)
            try:
                ok = _CMP[type(op)](left, right)
            except TypeError:
                ok = False
            if not ok:
                return False
            left = right
        return True
    if isinstance(node, ast.List | ast.Tuple):
        return [_eval(e, env) for e in node.elts]
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](*[_eval(a, env) for a in node.args])
    raise ExprError(f"cannot evaluate {type(node).__name__}")
