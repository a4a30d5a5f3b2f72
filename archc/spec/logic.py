"""Whether conditions exclude each other, or one of them always holds: decided symbolically,
for every binding of their names (not only a model's instances: a `--set` may create others).
The emitters print alternatives as `if ... elif ... else` from it (archc.backends.alternatives)
and lowering knows that a layer read under complementary conditions always exists.

Two conditions exclude each other where their conjunction is false for every binding. A
condition is read as `and`/`or`/`not` over literals, and a contradiction is looked for in each
way the conjunction can hold. Literals that contradict:
- one expression's truth and its negation (`bn` / `not bn`, `f(x) > 1` / `not f(x) > 1`);
- comparisons of the same expression with numbers whose sets of solutions are disjoint
  (`stride == 1` / `stride == 2`, `stride > 1` / `stride <= 1`, `x < 2` / `x > 3`), decided
  exactly over the reals (Fractions), so sound for any int or float value;
- comparisons of the same two expressions under operators no pair of values satisfies
  together (`e != in_channels` / `e == in_channels`, `a < b` / `b <= a`).
Spec expressions are pure (numbers, names and whitelisted functions), so an expression has one
value per binding; ordering comparisons are over numbers, totally ordered (NaN is no spec
value). Anything else (`x` / `x == 0`, an integer gap as in `x < 2` / `x > 1`) is not seen:
False is answered, which callers read as "may hold together" (the safe answer)."""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Sequence
from fractions import Fraction

from archc.spec import expr

_OPS: dict[type, Callable[[object, object], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt,
    ast.LtE: operator.le, ast.Gt: operator.gt, ast.GtE: operator.ge,
}  # fmt: skip
_NEGATED = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt}
_FLIPPED = {ast.Eq: ast.Eq, ast.NotEq: ast.NotEq, ast.Lt: ast.Gt, ast.Gt: ast.Lt, ast.LtE: ast.GtE, ast.GtE: ast.LtE}
_BRANCHES = 64  # the ways a conjunction may hold that are examined; past this, nothing is claimed


def negate(tree: ast.expr) -> ast.expr:
    """`not tree`, with the negation pushed onto the literals (De Morgan; `x < 1` -> `x >= 1`)."""
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not):
        return tree.operand
    if isinstance(tree, ast.BoolOp):
        return ast.BoolOp(ast.Or() if isinstance(tree.op, ast.And) else ast.And(), [negate(v) for v in tree.values])
    if isinstance(tree, ast.Compare) and all(type(op) in _NEGATED for op in tree.ops):
        pairs = _pairs(tree)
        return ast.BoolOp(ast.Or(), [negate(p) for p in pairs]) if len(pairs) > 1 else ast.Compare(tree.left, [_NEGATED[type(tree.ops[0])]()], tree.comparators)
    if isinstance(tree, ast.Constant):
        return ast.Constant(not tree.value)
    return ast.UnaryOp(ast.Not(), tree)


def excludes(a: ast.expr, b: ast.expr) -> bool:
    """Whether `a and b` is false for every binding (see the module docstring for what is seen)."""
    return unsatisfiable([a, b])


def exhaustive(conditions: Sequence[ast.expr]) -> bool:
    """Whether one of `conditions` holds for every binding."""
    return unsatisfiable([negate(c) for c in conditions])


def unsatisfiable(conditions: Sequence[ast.expr]) -> bool:
    """Whether the conjunction of `conditions` is false for every binding; False where that
    is not seen."""
    budget = [_BRANCHES]
    return _unsat(list(conditions), [], budget) and budget[0] >= 0


def _pairs(tree: ast.Compare) -> list[ast.expr]:
    """`a < b < c` as `a < b`, `b < c`."""
    sides = [tree.left, *tree.comparators]
    return [ast.Compare(sides[k], [op], [sides[k + 1]]) for k, op in enumerate(tree.ops)]


def _unsat(todo: list[ast.expr], literals: list[tuple], budget: list[int]) -> bool:
    """Whether `todo` and `literals` cannot all hold (each way an `or` may hold examined)."""
    budget[0] -= 1
    if budget[0] < 0:
        return False
    if not todo:
        return any(_contradict(a, b) for k, a in enumerate(literals) for b in literals[k + 1 :])
    head, rest = todo[0], todo[1:]
    if isinstance(head, ast.BoolOp) and isinstance(head.op, ast.And):
        return _unsat([*head.values, *rest], literals, budget)
    if isinstance(head, ast.BoolOp):
        return all(_unsat([v, *rest], literals, budget) for v in head.values)
    if isinstance(head, ast.UnaryOp) and isinstance(head.op, ast.Not):
        pushed = negate(head.operand)
        if not (isinstance(pushed, ast.UnaryOp) and isinstance(pushed.op, ast.Not)):
            return _unsat([pushed, *rest], literals, budget)
        return _unsat(rest, [*literals, ("truth", expr.to_python(head.operand), False)], budget)
    if isinstance(head, ast.Constant):
        return not head.value or _unsat(rest, literals, budget)
    if isinstance(head, ast.Compare) and all(type(op) in _OPS for op in head.ops):
        return _unsat(rest, [*literals, *(_comparison(p) for p in _pairs(head))], budget)  # type: ignore[arg-type]
    return _unsat(rest, [*literals, ("truth", expr.to_python(head), True)], budget)


def _comparison(tree: ast.Compare) -> tuple:
    """("cmp", left, op, right): a number on the right (`1 < x` is `x > 1`); two expressions
    in the order of their source, so that `a == b` and `b != a` are compared."""
    left, op, right = tree.left, type(tree.ops[0]), tree.comparators[0]
    if isinstance(left, ast.Constant) or (not isinstance(right, ast.Constant) and expr.to_python(left) > expr.to_python(right)):
        left, op, right = right, _FLIPPED[op], left
    value = right.value if isinstance(right, ast.Constant) else expr.to_python(right)
    return ("cmp", expr.to_python(left), op, isinstance(right, ast.Constant), value)


def _contradict(a: tuple, b: tuple) -> bool:
    if a[0] != b[0] or a[1] != b[1]:
        return False
    if a[0] == "truth":
        return a[2] != b[2]
    _, _, op1, const1, v1 = a
    _, _, op2, const2, v2 = b
    if const1 != const2 or (not const1 and v1 != v2):
        return False
    c1, c2 = (Fraction(v1), Fraction(v2)) if const1 else (Fraction(0), Fraction(0))  # the same expression: one point
    lo, hi = min(c1, c2), max(c1, c2)
    # each literal's solutions are intervals with ends among lo and hi: a point of each piece
    # of the line they cut shows whether both can hold
    points = (lo - 1, lo, (lo + hi) / 2, hi, hi + 1)
    return not any(_OPS[op1](x, c1) and _OPS[op2](x, c2) for x in points)
