"""The safe template and expression language (parsed with `ast` and a whitelist)."""

from __future__ import annotations

import ast
import builtins
from typing import Any

import pytest

from ccswitch.apps.ivr import expr as expr_mod
from ccswitch.apps.ivr.expr import (
    ExprError,
    Expression,
    is_template,
    lookup,
    render,
    template_vars,
)

ENV: dict[str, Any] = {
    "caller": "1001", "dest": "200", "hour": 9, "account": "9123", "name": "Alice",
    "count": "10", "empty": "", "zero": 0, "none": None, "tags": ["vip", "fr"],
    "vars": {"lang": "fr", "crm": {"tier": "gold", "balance": 12.5}},
}


def ev(text: str, env: dict[str, Any] | None = None) -> Any:
    return Expression(text)(ENV if env is None else env)


# ---------------------------------------------------------------- templates


def test_render_variables_and_dotted_paths() -> None:
    assert render("Hi {{name}}, you called {{dest}}", ENV) == "Hi Alice, you called 200"
    assert render("{{vars.crm.tier}}/{{ vars.lang }}", ENV) == "gold/fr"
    assert render("{{vars.crm.balance}} {{hour}} {{zero}}", ENV) == "12.5 9 0"


def test_render_missing_variables_and_defaults() -> None:
    assert render("[{{nope}}]", ENV) == "[]"
    assert render("[{{vars.nope.deeper}}]", ENV) == "[]"
    assert render("[{{name.first}}]", ENV) == "[]"  # no attribute access into strings
    assert render("Hello {{nope|there}}!", ENV) == "Hello there!"
    assert render("{{none|nobody}} {{name|nobody}}", ENV) == "nobody Alice"
    assert render("[{{empty|default}}]", ENV) == "[]"  # set but empty is not missing
    assert render("{{x|}}", ENV) == ""


def test_render_leaves_everything_else_alone() -> None:
    assert render("no templates here", ENV) == "no templates here"
    assert render("{{ 1+1 }} {{name()}} {{__class__.__mro__}}", ENV) == \
        "{{ 1+1 }} {{name()}} "
    assert render("{single} {{ name }}", ENV) == "{single} Alice"


def test_template_helpers() -> None:
    assert is_template("{{a}}") and not is_template("{a}")
    assert template_vars("{{a}} and {{b.c|d}}") == ["a", "b.c"]
    assert lookup({"a": {"b": {"c": 1}}}, "a.b.c") == 1
    assert lookup({"a": {"b": 1}}, "a.b.c") is None
    assert lookup({"a": [1, 2]}, "a.0") is None  # mappings only


# ---------------------------------------------------------------- expressions


@pytest.mark.parametrize(("text", "expected"), [
    ("caller == '1001'", True),
    ("caller != '1001'", False),
    ("hour >= 9 and hour < 17", True),
    ("hour > 9 or caller == '1001'", True),
    ("not (hour > 9)", True),
    ("count > 9", True),  # digit strings compare as numbers
    ("count > '9'", True),  # both sides numeric strings: numeric, not lexical
    ("account >= 9000", True),
    ("'10' < '9'", False),
    ("name < 5", False),  # incomparable: false, not an exception
    ("1 < hour < 10", True),  # chains
    ("1 < hour < 5", False),
    ("'vip' in tags", True),
    ("'gold' not in tags", True),
    ("'fr' in vars.lang", True),
    ("caller in ['1001', '1002']", True),
    ("caller in ('2000',)", False),
    ("'x' in none", False),
    ("'x' not in none", True),
    ("5 in name", False),  # TypeError inside `in` is false
    ("vars.crm.tier == 'gold'", True),
    ("vars.crm.missing == None", True),
    ("name.upper == None", True),  # attributes only read mappings
    ("missing", False),
    ("empty or name", True),
    ("zero == 0 and none == null", True),
    ("true and not false", True),
    ("-hour < 0", True),
    ("matches(account, '^9[0-9]+$')", True),
    ("matches(caller, '^2')", False),
    ("matches(none, '^$')", True),
    ("matches(caller, '(')", False),  # a bad pattern does not match
    ("startswith(account, '91')", True),
    ("endswith(caller, '01')", True),
    ("startswith(none, '')", True),
    ("len(tags) == 2", True),
    ("len(name) == 5", True),
    ("len(hour) == 0", True),
    ("int(count) == 10", True),
    ("int('abc') == 0", True),
    ("int(none) == 0", True),
    ("str(hour) == '9'", True),
    ("str(none) == ''", True),
    ("lower('ABC') == 'abc'", True),
    ("lower(vars.crm.tier) == 'gold'", True),
])
def test_evaluate(text: str, expected: bool) -> None:
    assert ev(text) is expected


def test_boolean_operators_return_python_values() -> None:
    assert Expression("empty or name").evaluate(ENV) == "Alice"
    assert Expression("name and hour").evaluate(ENV) == 9
    assert Expression("-count").evaluate(ENV) == -10.0


def test_unary_minus_of_a_non_number_is_false_not_a_crash() -> None:
    # a branch must never crash the call on a caller-supplied value
    assert ev("-name < 0") is False
    assert ev("-tags == 1") is False


@pytest.mark.parametrize("text", [
    "__import__('os').system('id')",
    "open('/etc/passwd')",
    "eval('1')",
    "exec('x=1')",
    "getattr(name, 'upper')",
    "name.upper()",
    "'abc'.join(tags)",
    "vars.crm.get('tier')",
    "(lambda: 1)()",
    "lambda: 1",
    "[x for x in tags]",
    "{x for x in tags}",
    "{x: 1 for x in tags}",
    "(x for x in tags)",
    "tags[0]",
    "name[0:1]",
    "{'a': 1}",
    "{1, 2}",
    "1 + 2",
    "count * 10",
    "~hour",
    "+hour",
    "hour if caller else 0",
    "(x := 1)",
    "f'{name}'",
    "b'bytes' == name",
    "... == name",
    "caller is None",
    "caller is not None",
    "int(count, base=16)",
    "len(*tags)",
    "matches(**vars)",
    "unknown(1)",
])
def test_dangerous_or_unknown_constructs_are_refused_at_parse_time(text: str) -> None:
    with pytest.raises(ExprError):
        Expression(text)


def test_a_bare_function_name_is_an_unknown_variable_not_the_function() -> None:
    assert Expression("len").evaluate(ENV) is None
    assert Expression("__builtins__").evaluate(ENV) is None


@pytest.mark.parametrize("text", [
    "matches(account)", "matches(account, '^9', 1)", "len()", "len(tags, tags)",
    "startswith(name)", "int()", "lower()",
])
def test_wrong_number_of_arguments_is_refused_at_parse_time(text: str) -> None:
    # otherwise `flows check` accepts it and every call reaching the branch crashes
    with pytest.raises(ExprError, match="argument"):
        Expression(text)


@pytest.mark.parametrize(("text", "message"), [
    ("x ==", "invalid expression 'x ==': invalid syntax"),
    ("a; b", "invalid expression 'a; b': invalid syntax"),
    ("tags[0]", "Subscript is not allowed in expressions"),
    ("name.upper()", "unknown function; allowed: endswith, int, len, lower, matches, "
                     "startswith, str"),
    ("int(x, base=2)", "keyword arguments are not allowed"),
    ("x is None", "comparison Is is not allowed"),
    ("~x", "only 'not' and '-' are allowed as unary operators"),
    ("b'x'", "only string, number, true/false/None literals are allowed"),
])
def test_refusal_messages(text: str, message: str) -> None:
    with pytest.raises(ExprError) as ei:
        Expression(text)
    assert str(ei.value) == message


def test_never_evals_or_compiles_code(monkeypatch: pytest.MonkeyPatch) -> None:
    real_compile = builtins.compile

    def no_eval(*a: Any, **k: Any) -> Any:
        raise AssertionError("eval/exec must not be used")

    def ast_only(source: Any, filename: Any, mode: str, flags: int = 0, *a: Any,
                 **k: Any) -> Any:
        # ast.parse compiles to a syntax tree only; compiling to code would be eval
        assert flags & ast.PyCF_ONLY_AST, "code must not be compiled"
        return real_compile(source, filename, mode, flags, *a, **k)

    e = Expression("caller == '1001' and matches(account, '^9') and len(tags) > 1")
    monkeypatch.setattr(builtins, "eval", no_eval)
    monkeypatch.setattr(builtins, "exec", no_eval)
    monkeypatch.setattr(builtins, "compile", ast_only)
    try:
        assert e(ENV) is True
        assert Expression("hour >= 9")(ENV) is True
    finally:
        monkeypatch.undo()


def test_variables_cannot_reach_python_objects() -> None:
    class Sneaky:
        secret = "s3cret"

    env = {"obj": Sneaky(), "d": {"__class__": "ok"}}
    assert Expression("obj.secret").evaluate(env) is None
    assert Expression("d.__class__").evaluate(env) == "ok"  # only the mapping's own keys
    assert Expression("obj.__class__.__name__").evaluate(env) is None


def test_expression_keeps_its_text() -> None:
    e = Expression("  hour > 9 ")
    assert e.text == "  hour > 9 "
    assert e({"hour": 10}) is True and e({"hour": "8"}) is False


def test_every_function_has_an_arity() -> None:
    assert set(expr_mod.ARITY) == set(expr_mod.FUNCTIONS)
    with pytest.raises(ExprError) as ei:
        Expression("matches(x)")
    assert str(ei.value) == "matches() takes 2 argument(s), got 1"
