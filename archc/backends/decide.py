"""What the instances of a block kind decide: a condition that has the same value in every
instance of the kind in this model (where the code around it runs) is printed decided.

keras.applications' mobilenet_v3.py writes `name=prefix + "squeeze_excite/..."` where a block
kind's code always takes one path, never `f"{name}_{int(activation and use_hs) + 2}"` under
`if activation and not use_hs:` (where the int is always 0). A block function is printed from
its kind's symbolic form; this pass evaluates the kind's conditions (comparisons, `and`/`or`/
`not`, the tests of `a if c else b`, the arguments of `int(...)`) in each instance's bindings
(its arguments and `in_channels`), narrowed by the conditions the code is under, and replaces
those with one value everywhere by that value. A binding that cannot be evaluated (a loop
variable, a parameter that build_model() takes) decides nothing. Plain arguments (`use_hs`
passed on to an inner call) are left as they are: only tests are decided."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from archc.ir.graph import (
    BlockType,
    Graph,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymShortcut,
    SymStage,
)
from archc.spec import expr

_UNKNOWN = object()


def _value(tree: ast.expr, scope: Mapping[str, Any]) -> Any:
    try:
        return expr.evaluate(tree, scope)
    except (expr.ExprError, TypeError, ValueError, ArithmeticError):
        return _UNKNOWN


class Decider:
    """The bindings of a block kind's instances where the code being printed runs."""

    def __init__(self, scopes: Sequence[Mapping[str, Any]]):
        self.scopes = tuple(scopes)

    def within(self, condition: ast.expr | None, holds: bool = True) -> Decider:
        """The bindings where `condition` holds (fails, with holds=False); one where it cannot
        be told stays."""
        if condition is None:
            return self
        kept = []
        for scope in self.scopes:
            value = _value(condition, scope)
            if value is _UNKNOWN or bool(value) == holds:
                kept.append(scope)
        return Decider(kept)

    def decided(self, tree: ast.expr) -> Any:
        """The value `tree` has in every binding, or _UNKNOWN (none, or several values)."""
        if not self.scopes:
            return _UNKNOWN
        values = [_value(tree, scope) for scope in self.scopes]
        first = values[0]
        if first is _UNKNOWN or any(v is _UNKNOWN or type(v) is not type(first) or v != first for v in values[1:]):
            return _UNKNOWN
        return first

    def tree(self, tree: ast.expr, test: bool = False) -> ast.expr:
        """`tree` with its decided conditions replaced by their values (folded), or `tree`
        itself where nothing is decided; `test`: it is read as a condition (a bare name decides)."""
        out = self._tree(tree, test)
        return tree if out is tree else expr.fold(out)

    def _tree(self, tree: ast.expr, test: bool) -> ast.expr:
        if not self.scopes or isinstance(tree, ast.Constant):
            return tree
        condition = isinstance(tree, (ast.Compare, ast.BoolOp)) or (isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not))
        if condition or (test and isinstance(tree, ast.Name)):
            value = self.decided(tree)
            if isinstance(value, (bool, int)) and (test or isinstance(value, bool)):
                return ast.Constant(value)
        if isinstance(tree, ast.IfExp):
            test_ = self._tree(tree.test, True)
            if isinstance(test_, ast.Constant):
                return self._tree(tree.body if test_.value else tree.orelse, test)
            body, orelse = self.within(tree.test)._tree(tree.body, test), self.within(tree.test, False)._tree(tree.orelse, test)
            return tree if (test_, body, orelse) == (tree.test, tree.body, tree.orelse) else ast.IfExp(test_, body, orelse)
        if isinstance(tree, ast.BoolOp):
            values = [self._tree(v, True) for v in tree.values]
            return tree if all(a is b for a, b in zip(values, tree.values)) else ast.BoolOp(tree.op, values)
        if isinstance(tree, ast.UnaryOp):
            operand = self._tree(tree.operand, isinstance(tree.op, ast.Not))
            return tree if operand is tree.operand else ast.UnaryOp(tree.op, operand)
        if isinstance(tree, ast.BinOp):
            left, right = self._tree(tree.left, False), self._tree(tree.right, False)
            return tree if (left, right) == (tree.left, tree.right) else ast.BinOp(left, tree.op, right)
        if isinstance(tree, ast.Compare):
            parts = [self._tree(t, False) for t in (tree.left, *tree.comparators)]
            return tree if all(a is b for a, b in zip(parts, (tree.left, *tree.comparators))) else ast.Compare(parts[0], tree.ops, parts[1:])
        if isinstance(tree, ast.Call):
            as_test = isinstance(tree.func, ast.Name) and tree.func.id in ("int", "bool")
            args = [self._tree(a, as_test) for a in tree.args]
            return tree if all(a is b for a, b in zip(args, tree.args)) else ast.Call(tree.func, args, tree.keywords)
        return tree


def scopes(graph: Graph, instances: Sequence[Any], varying: frozenset[str]) -> list[dict[str, Any]]:
    """Each instance's bindings, less the parameters build_model() may change (`varying`, and
    each instance's own `exposed`)."""
    out = []
    for inst in instances:
        left_out = varying | {p for p, _ in inst.exposed}
        scope = {k: v for k, v in inst.args if k not in left_out}
        scope["in_channels"] = inst.in_shape.c
        out.append(scope)
    return out


def varying(graph: Graph, instances: Mapping[str, Sequence[Any]]) -> dict[str, frozenset[str]]:
    """Per block kind, the parameters an argument of build_model() reaches through the block
    calls inside other kinds (an outer kind's exposed parameter passed on): never decided."""
    out: dict[str, set[str]] = {b.name: {p for inst in instances.get(b.name, ()) for p, _ in inst.exposed} for b in graph.blocks}
    changed = True
    while changed:
        changed = False
        for block in graph.blocks:
            for item in calls((*block.layers, *block.after)):
                for key, tree in item.args:
                    if expr.free_names(tree) & out[block.name] and key not in out.setdefault(item.block, set()):
                        out[item.block].add(key)
                        changed = True
    return {name: frozenset(params) for name, params in out.items()}


def calls(items: Sequence[SymItem]) -> list[SymBlock]:
    """The block calls of a list (and of its lists), less those under an entry that never runs."""
    out: list[SymBlock] = []
    for item in items:
        if never(item):
            continue
        if isinstance(item, SymBlock):
            out.append(item)
        elif isinstance(item, SymStage):
            out += [item.first, item.rest]
        elif isinstance(item, (SymGroup, SymParallel)):
            out += calls(item.children)
    return out


def block(btype: BlockType, decider: Decider) -> BlockType:
    """The block kind with what its instances decide printed decided: a condition that holds in
    each instance where it is read is dropped, a shortcut whose condition never holds is dropped
    (the block adds its input where it has none), and an entry whose condition never holds is
    kept in its list as NEVER: the list's numbering (a numbered list counts only the entries that
    run, as lowering does) and its dataflow (an absent entry passes on what it reads, which its
    `from:` may name) are the IR's, whether or not a layer is printed for each entry."""
    if not decider.scopes:
        return btype
    return dataclasses.replace(
        btype,
        layers=_items(btype.layers, decider),
        after=_items(btype.after, decider),
        shortcuts=tuple(d for d in (_shortcut(s, decider) for s in btype.shortcuts) if d is not None),
    )


NEVER = ast.Constant(False)  # the condition of an entry that no instance runs: no code, its place kept


def never(item: Any) -> bool:
    """Whether an entry of a block kind runs in no instance (its condition is NEVER, or `if: false`)."""
    condition = getattr(item, "condition", None)
    return isinstance(condition, ast.Constant) and condition.value is False


def live(items: Sequence[SymItem]) -> tuple[SymItem, ...]:
    """The entries of a list (and of its lists) that run in some instance: those printed."""
    return tuple(dataclasses.replace(i, children=live(i.children)) if isinstance(i, SymGroup) else i for i in items if not never(i))


def read_by_name(btype: BlockType) -> frozenset[str]:
    """The names a block kind's entries read by name (`inputs`), its shortcuts read and it
    returns; an entry of a list read from outside it (a tap, `body.relu`) by its path and its list's name."""
    names = {sc.input for sc in btype.shortcuts if sc.input is not None} | set(btype.outputs)

    def walk(items: Sequence[Any]) -> None:
        for item in items:
            names.update(n.split(".")[0] for n in item.inputs)
            names.update(item.inputs)
            walk(getattr(item, "children", ()))

    walk((*btype.layers, *btype.after))
    return frozenset(names)


def _never(tree: ast.expr | None, decider: Decider) -> bool:
    if tree is None:
        return False
    out = decider.tree(tree, True)
    return isinstance(out, ast.Constant) and not out.value


def _items(items: Sequence[SymItem], decider: Decider) -> tuple[SymItem, ...]:
    return tuple(dataclasses.replace(i, condition=NEVER) if _never(i.condition, decider) else _item(i, decider) for i in items)


def _condition(tree: ast.expr | None, decider: Decider) -> ast.expr | None:
    if tree is None:
        return None
    out = decider.tree(tree, True)
    if isinstance(out, ast.Constant):
        return None if out.value else tree
    return out


def _item(item: SymItem, decider: Decider) -> SymItem:
    condition = _condition(item.condition, decider)
    inner = decider.within(condition)
    changes: dict[str, Any] = {"condition": condition, "in_channels": inner.tree(item.in_channels)}
    if isinstance(item, SymLayer):
        changes["args"] = tuple((k, inner.tree(t) if isinstance(t, ast.expr) else t) for k, t in item.args)
    elif isinstance(item, SymBlock):
        changes["args"] = tuple((k, inner.tree(t)) for k, t in item.args)
        changes["flags"] = tuple((k, inner.tree(t, True)) for k, t in item.flags)
        changes["more_channels"] = tuple(inner.tree(t) for t in item.more_channels)
    elif isinstance(item, SymStage):
        changes.update(repeat=inner.tree(item.repeat), first=_item(item.first, inner), rest=_item(item.rest, inner))
    elif isinstance(item, SymGroup):
        changes["children"] = _items(item.children, inner)
    elif isinstance(item, SymParallel):  # its paths are positions: each stays
        changes["children"] = tuple(_item(c, inner) for c in item.children)
    return dataclasses.replace(item, **changes)  # type: ignore[arg-type]


def _shortcut(sc: SymShortcut, decider: Decider) -> SymShortcut | None:
    if sc.condition is None:
        return sc
    if _never(sc.condition, decider):
        return None
    condition = _condition(sc.condition, decider)
    inner = decider.within(condition)
    if condition is None:
        return dataclasses.replace(
            sc, when="always", condition=None, in_channels=inner.tree(sc.in_channels),
            out_channels=inner.tree(sc.out_channels), stride=inner.tree(sc.stride),
        )  # fmt: skip
    return dataclasses.replace(
        sc, condition=condition, in_channels=inner.tree(sc.in_channels), out_channels=inner.tree(sc.out_channels), stride=inner.tree(sc.stride),
    )  # fmt: skip


def holds_somewhere(instances: Sequence[Any], condition: str) -> bool:
    """Whether `condition` (source over a block kind's parameters) may hold in some of its
    `instances`: False only where each instance fails it."""
    try:
        tree = expr.parse(condition)
        return any(expr.evaluate(tree, {**dict(i.args), "in_channels": i.in_shape.c}) for i in instances)
    except (expr.ExprError, TypeError):
        return True


def holds_everywhere(instances: Sequence[Any], condition: str) -> bool:
    """Whether `condition` (source over a block kind's parameters) holds in every one of its
    `instances` (there being some); False where that cannot be told."""
    try:
        tree = expr.parse(condition)
    except expr.ExprError:
        return False
    for inst in instances:
        try:
            if not expr.evaluate(tree, {**dict(inst.args), "in_channels": inst.in_shape.c}):
                return False
        except (expr.ExprError, TypeError):
            return False
    return bool(instances)
