"""Differential tests of the expression language: archc's evaluator and the Python source
it prints for generated code (`expr.to_python`) must mean the same thing, for random
expressions and bindings, before and after constant folding. Plus the cost bounds of
every function (issue 13)."""

import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.backends import _environment
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
        call2 = st.tuples(st.sampled_from(["min", "max", "round", "make_divisible"]), inner, inner)
        call3 = st.tuples(inner, st.integers(1, 16), st.integers(1, 64))
        return st.one_of(
            binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            logic.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            compare.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda t: f"(not {t})"),
            inner.map(lambda t: f"(-{t})"),
            call1.map(lambda t: f"{t[0]}({t[1]})"),
            call2.map(lambda t: f"{t[0]}({t[1]}, {t[2]})"),
            call3.map(lambda t: f"make_divisible({t[0]}, {t[1]}, {t[2]})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        )

    return st.recursive(leaves, extend, max_leaves=max_leaves)


def generated_functions() -> dict:
    """The expression functions as generated modules define them (templates/functions/)."""
    namespace: dict = {"math": math}  # modules whose helpers use math import it
    for name in sorted(expr.HELPER_DEFINITIONS):
        exec(_environment().get_template(f"functions/{name}.py.j2").render(), namespace)  # noqa: S102
    return {name: namespace[name] for name in expr.HELPER_DEFINITIONS}


BUILTINS = {"round": round, "abs": abs, "min": min, "max": max, "int": int, "float": float, "isinstance": isinstance}
GENERATED = generated_functions()


def python_value(source: str, scope: dict) -> object:
    return eval(source, {"__builtins__": BUILTINS, "math": math, **GENERATED}, dict(scope))  # noqa: S307


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
        ("make_divisible(10, 0)", "divisor must be a positive integer"),
        ("make_divisible(10, 2.5)", "divisor must be a positive integer"),
        ("make_divisible(10, true)", "divisor must be a positive integer"),
        ("make_divisible(10, 8, -1)", "minimum must be a positive integer"),
        ("make_divisible(true)", "value must be a number"),
        ("make_divisible(1, 2, 3, 4)", "make_divisible() takes"),
        ("make_divisible(2 ** 53, 5404319552844595)", "exceeds the limit"),  # 2 divisors: 1.2 * 2 ** 53
        ("regnet_stages(1001, 8, 1, 2)", "depth must be an integer from 1 to 1000"),
        ("regnet_width(16.0, 48, 27.89, 2.09, 1)", "depth must be an integer"),
        ("regnet_stages(16, 44, 27.89, 2.09)", "invalid RegNet settings"),  # w_0 not a multiple of 8
        ("regnet_stages(16, 48, -1, 2.09)", "invalid RegNet settings"),
        ("regnet_stages(16, 48, 27.89, 1)", "invalid RegNet settings"),
        ("regnet_stages(16, 0, 27.89, 2)", "invalid RegNet settings"),
        ("regnet_stages(16, 48, 27.89, true)", "must be numbers"),
        ("regnet_width(16, 48, 27.89, 2.09, 5)", "stage 5 does not exist: this design has stages 1 to 4"),
        ("regnet_depth(16, 48, 27.89, 2.09, 0)", "stage 0 does not exist"),
        ("regnet_depth(16, 48, 27.89, 2.09, 1.0)", "stage 1.0 does not exist"),
        ("regnet_depth(16, 48, 27.89, 2.09)", "regnet_depth() takes (depth, w_0, w_a, w_m, stage)"),
        ("regnet_stages(16, 48, 27.89, 2.09, 1)", "regnet_stages() takes (depth, w_0, w_a, w_m)"),
        ("regnet_width(1000, 8, 2 ** 53, 1.00000006, 4)", "exceeds the limit"),  # the widest call: 1,000 blocks
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


@pytest.mark.parametrize(
    "text, value",
    [
        ("make_divisible(72 * 0.75)", 56),  # MobileNetV3-Large at width 0.75
        ("make_divisible(240 // 4, 8)", 64),  # its squeeze-and-excitation widths
        ("make_divisible(120 // 4, 8)", 32),
        ("make_divisible(16 * 0.5)", 8),  # never below the divisor
        ("make_divisible(3, 8, 16)", 16),  # nor below min_value
        ("make_divisible(83, 8)", 80),  # MNASNet's _round_to_multiple_of docstring: (83, 8) -> 80
        ("make_divisible(84, 8)", 88),  # but (84, 8) -> 88
        ("make_divisible(11.5, 10)", 20),  # 10 would lose more than 10%: one divisor more
        ("make_divisible(100, 3)", 99),
    ],
)
def test_make_divisible_values(text, value):
    tree = expr.parse(text)
    assert same(expr.evaluate(tree, {}), value)
    assert same(python_value(expr.to_python(tree), {}), value)


def test_make_divisible_helper_is_archcs_function():
    """The function generated modules define equals the evaluator's on a grid of
    widths, multipliers and divisors (torchvision's own is compared in test_torchvision.py)."""
    helper = GENERATED["make_divisible"]
    for channels in range(1, 400, 7):
        for mult in (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 2.0):
            for divisor in (1, 4, 8, 16):
                v = channels * mult
                assert same(helper(v, divisor), expr.make_divisible(v, divisor)), (v, divisor)
                assert same(helper(v, divisor, 24), expr.make_divisible(v, divisor, 24)), (v, divisor)


@pytest.mark.parametrize(
    "text, value",
    [
        # torchvision's regnet_y_400mf: stage widths 48, 104, 208, 440, depths 1, 3, 6, 6
        ("regnet_stages(16, 48, 27.89, 2.09)", 4),
        ("regnet_width(16, 48, 27.89, 2.09, 1)", 48),
        ("regnet_width(16, 48, 27.89, 2.09, 4)", 440),
        ("regnet_depth(16, 48, 27.89, 2.09, 3)", 6),
        # regnet_x_400mf: widths 32, 64, 160, 392 before the group-width adjustment (400 after it)
        ("regnet_width(22, 24, 24.48, 2.54, 4)", 392),
        ("regnet_depth(22, 24, 24.48, 2.54, 4)", 12),
        ("int(make_divisible(regnet_width(22, 24, 24.48, 2.54, 4), 16) / 1.0)", 400),
        # w_0 * w_m = 436 is a tie at 54.5 eighths only in float32 (2.18 is 2.1800000667572021 there,
        # and the product rounds to 436.0): torchvision rounds it to even, 432; float64 would say 440
        ("regnet_width(25, 200, 92.96, 2.18, 2)", 432),
        ("regnet_stages(1, 8, 0, 2)", 1),
    ],
)
def test_regnet_values(text, value):
    """torchvision's numbers (test_torchvision.py compares BlockParams on thousands of designs),
    from the evaluator and from the functions a generated module defines."""
    tree = expr.parse(text)
    assert same(expr.evaluate(tree, {}), value)
    assert same(python_value(expr.to_python(tree), {}), value)


def test_regnet_helpers_are_archcs_functions():
    """The functions generated modules define equal the evaluator's on a grid of designs."""
    for depth in (1, 7, 27, 64):
        for w_0 in (8, 48, 200):
            for w_a in (0, 0.5, 27.89, 106.23, 300.0):
                for w_m in (1.01, 2.09, 2.5, 3.7):
                    stages = expr.regnet_stages(depth, w_0, w_a, w_m)
                    assert same(GENERATED["regnet_stages"](depth, w_0, w_a, w_m), stages)
                    assert GENERATED["regnet_block_widths"](depth, w_0, w_a, w_m) == expr.regnet_block_widths(depth, w_0, w_a, w_m)
                    for k in range(1, stages + 1):
                        for name in ("regnet_width", "regnet_depth"):
                            assert same(GENERATED[name](depth, w_0, w_a, w_m, k), getattr(expr, name)(depth, w_0, w_a, w_m, k))
