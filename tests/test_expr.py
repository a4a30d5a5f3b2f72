"""The expression evaluator: Python syntax, never Python evaluation."""

import pytest

from archc.spec import expr


@pytest.mark.parametrize(
    "text, scope, value",
    [
        ("(depth - 2) // 6", {"depth": 110}, 18),
        ("4 * growth_rate", {"growth_rate": 12}, 48),
        ("floor(compression * in_channels)", {"compression": 0.5, "in_channels": 25}, 12),
        ("int(planes * (base_width / 64)) * groups", {"planes": 64, "base_width": 4, "groups": 32}, 128),
        ("depth >= 8 and (depth - 2) % 6 == 0", {"depth": 21}, False),
        ("max(1, x) if x > 0 else 0", {"x": 3}, 3),
    ],
)
def test_evaluates_like_python(text, scope, value):
    assert expr.evaluate(expr.parse(text), scope) == value
    assert eval(expr.to_python(expr.parse(text)).replace("math.", ""), {"floor": int, **scope}) == value  # noqa: S307


@pytest.mark.parametrize(
    "text",
    ["__import__('os')", "x.__class__", "[1, 2]", "'a' * 3", "lambda: 1", "open('f')", "(x := 1)", "x[0]"],
)
def test_rejects_anything_else(text):
    with pytest.raises(expr.ExprError):
        expr.parse(text)


@pytest.mark.parametrize("text", ["10 ** 100", "2 ** 60 * 2 ** 60", "1 / 0", "9e400"])
def test_results_are_bounded(text):
    with pytest.raises(expr.ExprError):
        expr.evaluate(expr.parse(text), {})
