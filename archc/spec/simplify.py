"""Simplification of the expressions a block kind's code prints (issue 21 §3).

`simplify(tree, ints)` returns a tree that `expr.evaluate` gives the same value (and type) for
on every binding of its names, and that raises where the original raises, with two rules:

- conditions: inside `a if c else b`, a conditional on the same test `c` is decided (`c` holds
  in `a`, fails in `b`), so `a if c else (b if c else d)` is `a if c else d` at any depth (and
  `b if stride != 1 else d` under `stride == 1` is `d`); a
  conditional whose branches agree is its branch where its test cannot raise;
- linear arithmetic: a sum of integer multiples of names known to hold ints (`ints`) and of
  integer constants is collected (`in_channels - (in_channels - planes)` is `planes`), where
  that makes the tree smaller. Python ints are exact, so this holds for any values; floats,
  bools, `/`, `//`, `%` and `**` are not linear and are left as they are.

The one difference: archc's bound on numbers (expr.MAX_INT) may be met by an intermediate value
of the original that the simplified tree no longer computes. Imports neither torch nor tensorflow.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Set
from typing import Any, TypeVar

from archc.spec import expr

_T = TypeVar("_T")
_Linear = dict[str, tuple[ast.expr, int]]  # atom's dump -> (atom, coefficient); "" is the constant


def simplify(tree: ast.expr, ints: Set[str] = frozenset(), scope: Set[str] | None = None) -> ast.expr:
    """`tree` simplified, `ints` being the names that always hold ints (not bools); `tree`
    itself is left as it is, and returned where nothing changes. With `scope` (the names that
    exist), a tree that would lose a name outside it is left as it is: evaluating it reports
    the unknown name, as it does in a branch that is not taken (`width if true else nn`)."""
    out = _simplify(tree, ints, {})
    if ast.dump(out) == ast.dump(tree):
        return tree
    if scope is not None and any(n not in scope and not n.startswith("<") for n in expr.free_names(tree) - expr.free_names(out)):
        return tree
    return expr.fold(out)


def simplify_all(obj: _T, ints: Set[str], scope: Set[str] | None = None) -> _T:
    """`obj` (an expression, a tuple, a dataclass such as a block kind of the IR) with every
    expression in it simplified; parts where nothing changes are kept as they are."""
    if isinstance(obj, ast.expr):
        return simplify(obj, ints, scope)  # type: ignore[return-value]
    if type(obj) is tuple:
        items = tuple(simplify_all(item, ints, scope) for item in obj)
        return obj if all(a is b for a, b in zip(items, obj)) else items  # type: ignore[return-value]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            new = simplify_all(value, ints, scope)
            if new is not value:
                changes[f.name] = new
        return dataclasses.replace(obj, **changes) if changes else obj  # type: ignore[return-value]
    return obj


def _simplify(node: ast.expr, ints: Set[str], known: dict[str, bool]) -> ast.expr:
    if isinstance(node, ast.IfExp):
        test = _simplify(node.test, ints, known)
        key = ast.dump(test)
        if key in known:  # decided by an enclosing conditional on the same test
            return _simplify(node.body if known[key] else node.orelse, ints, known)
        if isinstance(test, ast.Constant):
            return _simplify(node.body if test.value else node.orelse, ints, known)
        negation = ast.dump(_negated(test))
        body = _simplify(node.body, ints, {**known, key: True, negation: False})
        orelse = _simplify(node.orelse, ints, {**known, key: False, negation: True})
        if ast.dump(body) == ast.dump(orelse) and _cannot_raise(test):
            return body
        return ast.IfExp(test, body, orelse)
    if isinstance(node, (ast.BinOp, ast.UnaryOp)):
        linear = _linear(node, ints)
        if linear is not None:
            collected = _build(linear)
            if collected is not None and _size(collected) < _size(node):
                return collected
    if isinstance(node, ast.Tuple):
        return ast.Tuple([_simplify(e, ints, known) for e in node.elts], ast.Load())
    fields = {}
    for name, value in ast.iter_fields(node):
        if isinstance(value, ast.expr):
            value = _simplify(value, ints, known)
        elif isinstance(value, list):
            value = [_simplify(v, ints, known) if isinstance(v, ast.expr) else v for v in value]
        fields[name] = value
    return type(node)(**fields)


_NEGATED = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt}


def _negated(test: ast.expr) -> ast.expr:
    """A test that holds exactly where `test` fails: `not c` for `c`, `stride != 1` for `stride == 1`
    (exact: archc's numbers are never NaN)."""
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    if isinstance(test, ast.Compare) and len(test.ops) == 1:
        return ast.Compare(test.left, [_NEGATED[type(test.ops[0])]()], test.comparators)
    return ast.UnaryOp(ast.Not(), test)


def _cannot_raise(node: ast.expr) -> bool:
    """`node` evaluates without error whatever numbers its names hold (bounds aside)."""
    if isinstance(node, (ast.Name, ast.Constant)):
        return True
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)) and _cannot_raise(node.left) and _cannot_raise(node.right)
    if isinstance(node, ast.UnaryOp):
        return _cannot_raise(node.operand)
    if isinstance(node, ast.BoolOp):
        return all(map(_cannot_raise, node.values))
    if isinstance(node, ast.Compare):
        return _cannot_raise(node.left) and all(map(_cannot_raise, node.comparators))
    if isinstance(node, ast.IfExp):
        return _cannot_raise(node.test) and _cannot_raise(node.body) and _cannot_raise(node.orelse)
    return False


def _linear(node: ast.expr, ints: Set[str]) -> _Linear | None:
    """`node` as integer multiples of int names plus an int constant, or None where it is not
    one (a float, a bool, any other operation)."""
    if isinstance(node, ast.Constant):
        return {"": (node, node.value)} if type(node.value) is int else None
    if isinstance(node, ast.Name):
        return {node.id: (node, 1)} if node.id in ints else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _linear(node.operand, ints)
        sign = -1 if isinstance(node.op, ast.USub) else 1
        return None if inner is None else {k: (a, sign * c) for k, (a, c) in inner.items()}
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult)):
        left, right = _linear(node.left, ints), _linear(node.right, ints)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Mult):
            for factor, other in ((left, right), (right, left)):
                if set(factor) <= {""}:  # a constant times a linear form
                    k = factor[""][1] if factor else 0
                    return {key: (a, k * c) for key, (a, c) in other.items()}
            return None
        sign = -1 if isinstance(node.op, ast.Sub) else 1
        out = dict(left)
        for key, (atom, c) in right.items():
            out[key] = (out[key][0] if key in out else atom, out.get(key, (atom, 0))[1] + sign * c)
        return out
    return None


def _build(linear: _Linear) -> ast.expr | None:
    """The tree of a linear form: its terms in the order they first appear, the constant last."""
    terms = [(a, c) for key, (a, c) in linear.items() if key and c != 0]
    constant = linear.get("", (None, 0))[1]
    out: ast.expr | None = None
    for atom, c in terms:
        term = atom if abs(c) == 1 else ast.BinOp(ast.Constant(abs(c)), ast.Mult(), atom)
        if out is None:
            out = term if c > 0 else ast.UnaryOp(ast.USub(), atom) if c == -1 else ast.BinOp(ast.Constant(c), ast.Mult(), atom)
        else:
            out = ast.BinOp(out, ast.Add() if c > 0 else ast.Sub(), term)
    if out is None:
        return ast.Constant(constant)
    if constant:
        out = ast.BinOp(out, ast.Add() if constant > 0 else ast.Sub(), ast.Constant(abs(constant)))
    return out


def _size(node: ast.AST) -> int:
    return sum(1 for _ in ast.walk(node))
