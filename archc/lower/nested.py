"""Blocks and stages inside a block kind (and in the top function): their symbolic form, the
channels and stride after them as expressions of the outer kind's, and the tensors a kind's
items carry while it is typed (`SymTensor`)."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockType,
    SymBlock,
    SymLayer,
    SymShortcut,
    SymStage,
    channel_params,
)
from archc.lower.context import State, check_arity, check_inline
from archc.lower.limits import check_repeat
from archc.lower.values import STAGE_INDEX, uses_index
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource


@dataclass(frozen=True)
class SymTensor:
    """A tensor inside a block kind: its channels and stride (from the block input) as
    expressions, whether it is known to be >= 0, and whether it is flat."""

    channels: ast.expr
    stride: ast.expr
    nonneg: bool
    flat: bool
    last: bool = False  # a map PyTorch holds channels-last (after a permute)
    positions: ast.expr | None = None  # H*W (D*H*W, L) where the kind fixes the map's size


def if_(condition: ast.expr, then: ast.expr, other: ast.expr) -> ast.expr:
    """`then if condition else other`, or just `then` where the two agree whenever the
    condition fails (`in_channels * t` is `in_channels` where `t != 1` fails)."""
    if isinstance(other, ast.IfExp) and expr.to_python(other.test) == expr.to_python(condition):
        other = other.orelse  # `a if c else (b if c else d)` is `a if c else d`
    if expr.to_python(then) == expr.to_python(other):
        return then
    if isinstance(condition, ast.Compare) and len(condition.ops) == 1 and isinstance(condition.ops[0], ast.NotEq):
        left, right = condition.left, condition.comparators[0]
        if isinstance(left, ast.Name) and expr.to_python(expr.substitute(then, {left.id: right})) == expr.to_python(other):
            return then
        sides = {expr.to_python(left), expr.to_python(right)}
        if {expr.to_python(then), expr.to_python(other)} == sides and len(sides) == 2:
            return then  # `a if a != b else b` is `a`
    return expr.fold(ast.IfExp(condition, then, other))


def sym_value(raw: Any, channels: ast.expr) -> ast.expr:
    if isinstance(raw, list):  # a [height, width] pair
        return ast.Tuple([sym_value(v, channels) for v in raw], ast.Load())
    tree = expr.parse(raw) if isinstance(raw, str) else ast.Constant(raw)
    return expr.substitute(tree, {"channels": channels})


def declared(source: BlockSource, key: str) -> ast.expr:
    """A block kind's declared `out_channels` or `out_stride`, over its parameters and in_channels."""
    raw = getattr(source.definition, key)
    tree = expr.parse(raw) if isinstance(raw, str) else ast.Constant(raw)
    unknown = expr.free_names(tree) - set(source.definition.params) - set(channel_params(source.definition.input_names))
    if unknown:
        raise SpecError(f"`{key}` may use the block's parameters and its inputs' channels; unknown: {', '.join(sorted(unknown))}", source.locate(key))
    return tree


def sym_nested(state: State, name: str, kind: str, body: Any, channels: ast.expr, where: Location, more: tuple[ast.expr, ...] = (), top: bool = False, at: Any = None):  # type: ignore[no-untyped-def]
    """A block or stage inside a block kind: (its symbolic form, channels after it, its stride);
    `more`: the channels of the tensors after the first that a block with several inputs reads;
    `top`: in the top function, a stage whose instances change the shape one after another is
    typed instance by instance when it is specialised (`SymStage.free`)."""
    inner = _type_of(state, body.block if kind == "block" else body.stage, where)
    def key(*sub: str) -> Location:  # where a key of the entry is written (`at`), else the entry
        return at(*sub) if at is not None else where

    check_arity(state.spec.blocks[inner.name], name, kind, 1 + len(more), key(kind) if kind == "stage" else where)
    declared = {p for p, _, _ in inner.params}
    for section in ("with", "first", "last") if kind == "stage" else ("with",):
        for given_key in getattr(body, "with_" if section == "with" else section):
            if given_key not in declared:
                known = ", ".join(p for p, _, _ in inner.params) or "none"
                raise SpecError(f"block {inner.name!r} has no parameter {given_key!r}; its parameters: {known}", key(section, given_key))
    given = {*body.with_, *(body.first if kind == "stage" else ()), *(body.last if kind == "stage" else ())}
    for p, default, type_name in inner.params:
        if default is None and p not in given:
            raise SpecError(f"block {inner.name!r} needs parameter {p!r} ({type_name}); pass it in `with:`", where)
    common = {k: sym_value(v, channels) for k, v in body.with_.items()}
    if kind == "block":
        sym = dataclasses.replace(sym_instance(inner, name, common, channels), more_channels=more)
        return sym, frame(inner, sym, inner.out_channels), frame(inner, sym, inner.stride)
    repeat = sym_value(body.repeat, channels)
    opening, first_args, later, middle = _stage_args(inner, name, body, channels, repeat, where)
    first = sym_instance(inner, name, first_args, channels)
    first_out = frame(inner, first, inner.out_channels)
    if body.connectivity == "dense" and top:  # the top function's: typed instance by instance when specialised
        written = tuple(tuple((k, sym_value(v, channels)) for k, v in args.items()) for args in (body.with_, body.first, body.last))
        free = SymStage(name, inner.name, repeat, "dense", body.names, first, first, channels, free=True, written=written)
        return free, ast.Name(free_channels(where)), ast.Constant(0)
    if body.connectivity == "dense":
        growth = frame(inner, sym_instance(inner, name, later, ast.Name("in_channels")), inner.out_channels)
        if {"in_channels", STAGE_INDEX} & expr.free_names(growth) or body.first:
            raise SpecError(f"{name}: inside a block, a dense stage's instances must add a fixed number of channels", where)
        step = ast.BinOp(ast.Name("i"), ast.Mult(), growth)
        rest = sym_instance(inner, name, later, expr.fold(ast.BinOp(channels, ast.Add(), step)))
        out = expr.fold(ast.BinOp(channels, ast.Add(), ast.BinOp(repeat, ast.Mult(), growth)))
        if not is_one(frame(inner, rest, inner.stride)):
            raise SpecError(f"{name}: instances of a dense stage may not change the map size", where)
        return SymStage(name, inner.name, repeat, "dense", body.names, first, rest, channels), out, ast.Constant(1)
    head = sym_instance(inner, name, opening, channels)  # the first instance where there are more
    head_out = frame(inner, head, inner.out_channels)
    rest = sym_instance(inner, name, later, head_out)
    between = sym_instance(inner, name, middle, head_out)  # neither first nor last
    between_out = frame(inner, between, inner.out_channels)
    if top and (body.last or uses_index(body) or expr.to_python(between_out) != expr.to_python(head_out)
                or not is_one(frame(inner, between, inner.stride))):  # fmt: skip
        # the top function's: each instance's arguments are `with:`, `first:` on the first, `last:`
        # on the last, and its channels are known once it is specialised, instance by instance
        written = tuple(tuple((k, sym_value(v, channels)) for k, v in args.items()) for args in (body.with_, body.first, body.last))
        free = SymStage(name, inner.name, repeat, "none", body.names, first, rest, channels, free=True, written=written)
        return free, ast.Name(free_channels(where)), ast.Constant(0)
    if expr.to_python(between_out) != expr.to_python(head_out) or not is_one(frame(inner, between, inner.stride)):
        raise SpecError(
            f"{name}: inside a block, a stage's later instances must keep their input shape "
            f"(here {expr.to_python(head_out)} -> {expr.to_python(between_out)} channels); use a stage at model level",
            where,
        )
    stage = SymStage(name, inner.name, repeat, "none", body.names, first, rest, channels)
    first_stride = frame(inner, first, inner.stride)
    if not body.last:
        return stage, first_out, first_stride
    # the last instance's channels and stride: `rest` at i = repeat - 1, or the first where it is the only one
    final = {STAGE_INDEX: expr.fold(ast.BinOp(repeat, ast.Sub(), ast.Constant(1)))}
    last_out = expr.fold(expr.substitute(frame(inner, rest, inner.out_channels), final))
    last_stride = expr.fold(expr.substitute(frame(inner, rest, inner.stride), final))
    both = expr.fold(ast.BinOp(frame(inner, head, inner.stride), ast.Mult(), last_stride))
    alone = ast.Compare(repeat, [ast.Eq()], [ast.Constant(1)])
    return stage, _pick(alone, first_out, last_out), _pick(alone, first_stride, both)


def _stage_args(
    inner: BlockType, name: str, body: m.StageItem, channels: ast.expr, repeat: ast.expr, where: Location,
) -> tuple[dict[str, ast.expr], ...]:  # fmt: skip
    """A stage's arguments inside a block kind, as expressions: (opening, first, later,
    middle) for its first instance where it has more, its first instance (its `last:` too
    where `repeat == 1`), every later one (over the loop variable `i`, `last:` as a
    condition `i == repeat - 1`), and those neither first nor last. As at model level,
    `last:` applies after `first:` when there is one instance."""
    index = ast.Name(STAGE_INDEX)
    middle = {k: sym_value(v, channels) for k, v in body.with_.items()}
    opening = {**middle, **{k: sym_value(v, channels) for k, v in body.first.items()}}
    defaults = {p: ast.Constant(d) for p, d, _ in inner.params if d is not None}
    first, later = dict(opening), dict(middle)
    alone = ast.Compare(repeat, [ast.Eq()], [ast.Constant(1)])
    final = ast.Compare(index, [ast.Eq()], [expr.fold(ast.BinOp(repeat, ast.Sub(), ast.Constant(1)))])
    for key, raw in body.last.items():
        value = sym_value(raw, channels)
        for args, before, test in ((first, opening, alone), (later, middle, final)):
            other = before.get(key, defaults.get(key))
            test = expr.fold(test)
            if isinstance(test, ast.Constant) or other is None:
                if other is None and not isinstance(test, ast.Constant):
                    raise SpecError(
                        f"{name}: `last:` gives {key!r}, which the other instances of block {inner.name!r} need too; "
                        "give it in `with:`",
                        where,
                    )
                if test.value:  # type: ignore[attr-defined]
                    args[key] = value
                continue
            args[key] = _pick(test, value, other)
    at_zero = {STAGE_INDEX: ast.Constant(0)}
    opening, first = ({k: expr.fold(expr.substitute(v, at_zero)) for k, v in d.items()} for d in (opening, first))
    return opening, first, later, middle


def _pick(test: ast.expr, then: ast.expr, other: ast.expr) -> ast.expr:
    """`then if test else other`, decided where the test is a constant."""
    test = expr.fold(test)
    if isinstance(test, ast.Constant):
        return then if test.value else other
    return if_(test, then, other)


def free_channels(where: Location | str) -> str:
    """The name the channels of a tensor that the top function's form leaves to specialisation
    (after a free stage or a flatten, an entry of a list read from outside it) take in its scope."""
    return f"<channels after {where}>"


def sym_inline(
    state: State, name: str, kind: str, body: Any, here: SymTensor, where: Location, start: int,
    condition: ast.expr | None = None, passed: SymTensor | None = None,
) -> list[tuple[SymLayer, SymTensor]]:  # fmt: skip
    """A block or stage written `inline` in a numbered list of a block kind: the layers of each
    instance (its kind's, unnamed and in sequence), their arguments and conditions in the outer
    kind's terms, numbered from `start`, each with the tensor after it. Under the entry's
    `condition`, each layer is under it too, and where it fails the entry passes `passed` on."""
    source = state.spec.blocks.get(body.block if kind == "block" else body.stage)
    if source is not None:  # an unknown kind is reported by its typing
        check_inline(source, where)
    sym, _, _ = sym_nested(state, name, kind, body, here.channels, where)
    if here.last or here.flat:
        raise SpecError(f"{name}: an `inline` block reads a map held channels-first (its layers are typed for one)", where)
    if isinstance(sym, SymBlock):
        instances = [sym]
    else:
        repeat = sym.repeat
        if sym.connectivity != "none" or sym.names != "{i}":
            raise SpecError("a stage without a name is numbered with its list: it takes no `names:` and no dense connectivity", where)
        if not (isinstance(repeat, ast.Constant) and type(repeat.value) is int):
            raise SpecError(
                f"{name}: an `inline` stage inside a block kind repeats a fixed number of times (its layers are "
                f"numbered entries of the list); `repeat: {expr.to_python(repeat)}` depends on the kind's parameters",
                where,
            )
        check_repeat(repeat.value, where)
        instances = [sym.first, *[sym.rest] * (repeat.value - 1)]
    inner = state.block_types[sym.block]
    out: list[tuple[SymLayer, SymTensor]] = []
    cur = here
    for inst in instances:
        for layer in inner.layers:
            assert isinstance(layer, SymLayer)  # check_inline: layers in sequence
            own = None if layer.condition is None else expr.fold(frame(inner, inst, layer.condition))
            if isinstance(own, ast.Constant):
                if not own.value:
                    continue  # never present: takes no number
                own = None
            both = own if condition is None else condition if own is None else ast.BoolOp(ast.And(), [condition, own])
            op = ops.KINDS[layer.kind]
            args = tuple((k, expr.fold(frame(inner, inst, t))) for k, t in layer.args)
            params = dict(args)
            step = params[op.SPATIAL_STRIDE] if op.SPATIAL_STRIDE else ast.Constant(1)
            step = step.elts[0] if isinstance(step, ast.Tuple) else step
            result = SymTensor(
                op.out_channels(params, cur.channels), expr.fold(ast.BinOp(cur.stride, ast.Mult(), step)),
                op.sym_nonneg(params, cur.nonneg),
                (cur.flat or (layer.kind == "dense" and not cur.last) or layer.kind == "global_avgpool") if op.FLAT_OUT is None else op.FLAT_OUT,
                op.last_after(params, cur.last),
            )  # fmt: skip
            if own is not None:
                result = SymTensor(
                    if_(own, result.channels, cur.channels), if_(own, result.stride, cur.stride),
                    result.nonneg and cur.nonneg, result.flat, result.last,
                )  # fmt: skip
            out.append((SymLayer(str(start + len(out)), layer.kind, args, cur.channels, cur.nonneg, (), both, (cur.flat,)), result))
            cur = result
    if out and condition is not None and passed is not None:  # absent, the entry passes its input on
        layer, last = out[-1]
        out[-1] = (layer, SymTensor(
            if_(condition, last.channels, passed.channels), if_(condition, last.stride, passed.stride),
            last.nonneg and passed.nonneg, last.flat, last.last,
        ))  # fmt: skip
    if not out:
        raise SpecError(f"{name}: this `inline` instance has no layers (every `if:` fails)", where)
    return out


def sym_instance(inner: BlockType, name: str, args: dict[str, ast.expr], in_channels: ast.expr) -> SymBlock:
    """An instance of `inner` with its shortcut switches as conditions (torchvision's
    `stride != 1 or in_channels != planes * expansion`)."""
    sym = SymBlock(name, inner.name, tuple(args.items()), (), in_channels)
    flags = tuple((sc.name, frame(inner, sym, changes(sc))) for sc in inner.shortcuts if sc.when == "shape_changes")
    return SymBlock(name, inner.name, tuple(args.items()), flags, in_channels)


def changes(sc: SymShortcut) -> ast.expr:
    """When a `shape_changes` shortcut applies, as an expression over its block's parameters."""
    return ast.BoolOp(ast.Or(), [
        ast.Compare(sc.stride, [ast.NotEq()], [ast.Constant(1)]),
        ast.Compare(sc.in_channels, [ast.NotEq()], [sc.out_channels]),
    ])  # fmt: skip


def frame(inner: BlockType, sym: SymBlock, tree: ast.expr) -> ast.expr:
    """An expression of the inner kind (over its parameters) in the outer kind's terms."""
    values = {p: ast.Constant(d) for p, d, _ in inner.params if d is not None}
    values.update(dict(sym.args))
    values.update(zip(inner.channel_params, (sym.in_channels, *sym.more_channels)))
    return expr.substitute(tree, values)


def is_one(tree: ast.expr) -> bool:
    return isinstance(tree, ast.Constant) and tree.value == 1


def _type_of(state: State, block: str, where: Location) -> BlockType:
    """`kinds.type_of`: the symbolic form of a kind, built once (symbolic.py types a kind's
    items with this module's functions, hence the import here)."""
    from archc.lower.kinds import type_of

    return type_of(state, block, where)
