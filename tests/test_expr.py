"""The expression evaluator: Python syntax, never Python evaluation."""

import ast

import pytest

from archc.errors import SpecError
from archc.lower import lower
from archc.spec import expr
from archc.spec.loader import load_spec_text


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


# --- the work budget of expression functions: one per spec, each RegNet design paid once ----


def _width(design: int) -> ast.expr:
    """A call of RegNet design number `design`, 1,000 blocks deep (designs differ in w_a)."""
    return expr.parse(f"regnet_width(1000, 8, {1 + design / 64}, 2, 1)")


@expr.work_budget
def _evaluate_all(trees):
    return [expr.evaluate(tree, {}) for tree in trees]


def test_a_spec_pays_for_each_regnet_design_once(monkeypatch):
    monkeypatch.setattr(expr, "MAX_FUNCTION_WORK", 2000)
    widths = _evaluate_all([_width(0)] * 500 + [_width(1)] * 500)  # two designs: the whole budget
    assert widths == [expr.regnet_width(1000, 8, 1, 2, 1)] * 500 + [expr.regnet_width(1000, 8, 1 + 1 / 64, 2, 1)] * 500
    with pytest.raises(expr.ExprError) as info:
        _evaluate_all([_width(0), _width(1), _width(2)])
    assert str(info.value) == (
        "regnet_width(): this spec's expression functions ran out of work: its distinct RegNet designs add up "
        "to more than 2000 blocks (archc.spec.expr.MAX_FUNCTION_WORK); reuse one design (a parameter), "
        "or raise the limit deliberately if you mean it"
    )
    assert len(_evaluate_all([_width(0), _width(1)])) == 2  # each call has its own budget
    assert len([expr.evaluate(_width(k), {}) for k in range(3)]) == 3  # outside one, nothing is counted


def test_lowering_gives_each_spec_its_own_budget(monkeypatch):
    """Specs lowered one after another in one process each have the whole budget."""
    monkeypatch.setattr(expr, "MAX_FUNCTION_WORK", 1500)

    def spec(*w_a):
        params = ", ".join(f"w{k}: 'regnet_width(1000, 8, {a}, 2, 1)'" for k, a in enumerate(w_a))
        units = " + ".join(f"w{k}" for k in range(len(w_a)))
        return load_spec_text(f"archc: 1\nname: n\ninput: [3, 8, 8]\nparams: {{{params}}}\nlayers:\n"
                              f"  - pool: global_avgpool\n  - fc: {{dense: {{units: {units}}}}}\n")  # fmt: skip

    for w_a in (1.5, 2.5):  # 1,000 blocks each
        assert lower(spec(w_a)).output_shape.as_tuple() == (expr.regnet_width(1000, 8, w_a, 2, 1),)
    with pytest.raises(SpecError, match=r"^<string>:4:54: regnet_width\(\): .* more than 1500 blocks"):
        lower(spec(3.5, 4.5))  # located at w1, the design one too many


def test_each_text_is_parsed_once():
    """Validation and lowering parse the same texts; they share one tree (trees are never changed)."""
    assert expr.parse("max(a, true) + 1") is expr.parse("max(a, true) + 1")
    assert ast.dump(expr.parse("max(a, true) + 1")) == ast.dump(ast.parse("max(a, True) + 1", mode="eval").body)
