"""Differential tests of the expression language: archc's evaluator and the Python source
it prints for generated code (`expr.to_python`) must mean the same thing, for random
expressions and bindings, before and after constant folding. Plus the cost bounds of
every function (issue 13)."""

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.spec import expr

SETTINGS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck), max_examples=600)
NAMES = ("a", "b", "c")
values = st.one_of(st.integers(-20, 20), st.sampled_from([0.0, 0.5, -1.5, 2.25, 3.0]), st.booleans())


def expressions(max_leaves: int = 12):
    leaves = st.one_of(
        st.sampled_from(NAMES),
        st.integers(0, 20).map(str),
        st.sampled_from(["0.5", "2.0", "true", "false", "0"]),
    )

    def extend(inner):
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**"]), inner)
        logic = st.tuples(inner, st.sampled_from(["and", "or"]), inner)
        compare = st.tuples(inner, st.sampled_from(["<", "<=", "==", "!=", ">", ">="]), inner)
        call1 = st.tuples(st.sampled_from(["floor", "ceil", "abs", "int", "float", "round"]), inner)
        call2 = st.tuples(st.sampled_from(["min", "max", "round"]), inner, inner)
        return st.one_of(
            binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            logic.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            compare.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda t: f"(not {t})"),
            inner.map(lambda t: f"(-{t})"),
            call1.map(lambda t: f"{t[0]}({t[1]})"),
            call2.map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


def python_value(source: str, scope: dict) -> object:
    return eval(source, {"__builtins__": {"round": round, "abs": abs, "min": min, "max": max, "int": int, "float": float}, "math": math}, dict(scope))  # noqa: S307


def same(x: object, y: object) -> bool:
    return type(x) is type(y) and x == y


@settings(**SETTINGS)
@given(expressions(), st.fixed_dictionaries({n: values for n in NAMES}))
def test_evaluator_equals_python_on_the_printed_expression(text, scope):
    tree = expr.parse(text)
    try:
        value = expr.evaluate(tree, scope)
    except expr.ExprError:
        return  # out of archc's bounds (or an error Python would raise too)
    assert same(python_value(expr.to_python(tree), scope), value), text
    folded = expr.substitute(tree, {"a": expr.constant(scope["a"])})  # what emitters print for a bound parameter
    assert same(python_value(expr.to_python(folded), scope), value), (text, expr.to_python(folded))
    assert same(expr.evaluate(folded, scope), value), (text, expr.to_python(folded))


@pytest.mark.parametrize(
    "text, scope, value",
    [
        ("1 + (planes > 100 or 2)", {"planes": 64}, 3),  # issue 13: was 2 (a bool), the module ran 3
        ("max(a or bb, 2)", {"a": 0, "bb": 5}, 5),
        ("a and bb", {"a": 3, "bb": 0}, 0),
        ("a or bb", {"a": 3, "bb": 0}, 3),
        ("a and 1 // a", {"a": 0}, 0),  # short-circuits as Python does
    ],
)
def test_and_or_return_the_deciding_operand(text, scope, value):
    tree = expr.parse(text)
    assert same(expr.evaluate(tree, scope), value)
    assert same(python_value(expr.to_python(tree), scope), value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("round(1, -10**7)", "digit count"),
        ("round(1, 10**9)", "digit count"),
        ("round(1, 2.5)", "must be an integer"),
        ("round(1, 2, 3)", "round() takes"),
        ("floor(1, 2)", "exactly one argument"),
        ("max(3)", "single number"),
        ("1" + "9" * 400, "exceeds the limit"),
        ("10 ** 60 * 10 ** 60", "exceeds the limit"),
    ],
)
def test_every_function_is_bounded(text, message):
    start = time.process_time()
    with pytest.raises(expr.ExprError, match=message.replace("(", r"\(").replace(")", r"\)")):
        expr.evaluate(expr.parse(text), {})
    assert time.process_time() - start < 0.5


@pytest.mark.parametrize(
    "text, scope",
    [
        ("(not b) and 1", {"b": 0}),  # `and 1` decides the type: 1, not True
        ("a * 1.0", {"a": 3}),  # a float, not the int 3
        ("a // 1", {"a": 2.5}),  # 2.0, not 2.5
        ("(a > 1) + 0", {"a": 3}),  # 1, not True
        ("a + (not (-(not b)))", {"a": 0, "b": 0}),
        ("(a != 1) or false", {"a": 1}),
    ],
)
def test_folding_keeps_pythons_value_and_type(text, scope):
    tree = expr.parse(text)
    value = expr.evaluate(tree, scope)
    folded = expr.fold(expr.substitute(tree, {}))
    assert same(python_value(expr.to_python(folded), scope), value), expr.to_python(folded)
