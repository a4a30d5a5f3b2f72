"""The model's own list: the top function. It is typed by `symbolic` like every block kind
(`top=True`: its parameters have their values, and what only a block class needs to print,
a channel count as one expression, it may leave to specialisation) and specialised once by
`specialise`, to the model's parameters and input. The model's code is printed from that
instance; each block kind's from its symbolic form."""

from __future__ import annotations

import ast
from typing import Any

from archc import ops
from archc.errors import SpecError
from archc.ir.graph import (
    Inst,
    Output,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymStage,
)
from archc.lower import limits
from archc.lower.context import (
    State,
    Tensor,
    item_kind,
    join_path,
    lookup,
    numbered_model,
)
from archc.lower.specialise import Specialiser
from archc.lower.symbolic import build_type
from archc.lower.values import typed_value
from archc.ops import Shape
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource


def lower_top(state: State, scope: dict[str, Any], in_shape: Shape) -> tuple[tuple[Inst, ...], Shape]:
    """The model's items and its last tensor's shape; its outputs in state.outputs."""
    model = state.spec.model
    definition = m.BlockDef.model_construct(
        doc=model.doc, class_=None, params=dict(scope), inputs=None, outputs=None, connectivity="none",
        shortcut=None, layers=model.layers, after=[], checks=[], out_channels=None, out_stride=1,
    )  # fmt: skip
    source = BlockSource(model.name, definition, state.spec.source, ())
    btype = build_type(state, source, top=True)
    spec = Specialiser(state, source, btype, {**scope, "in_channels": in_shape.c}, {"input": Tensor("input", in_shape, False)}, {}, [])
    spec.numbering = [0, _stage_blocks(btype.layers, scope)]
    inlined = state.inlined if numbered_model(model.layers) else None  # an nn.Sequential model's, as a list's
    children, last = spec.items(btype.layers, (), "input", btype.numbered, inlined=inlined)
    references(state, spec.placed or [], set(scope))
    state.outputs = _outputs(state, spec.env)
    return tuple(children), spec.env[last].shape


def _stage_blocks(items: tuple[SymItem, ...], scope: dict[str, Any]) -> int:
    """The number of instances of the top function's stages, those whose `if:` holds (its
    `total_stage_blocks`). A repeat or condition that does not evaluate counts nothing here:
    specialisation reports it."""
    total = 0
    for item in items:
        try:
            if item.condition is not None and not expr.evaluate(item.condition, scope):
                continue
            if isinstance(item, SymStage):
                repeat = expr.evaluate(item.repeat, scope)
                total += repeat if isinstance(repeat, int) and not isinstance(repeat, bool) else 0
        except expr.ExprError:
            continue
        if isinstance(item, (SymGroup, SymParallel)):
            total += _stage_blocks(item.children, scope)
    return total


def _outputs(state: State, env: dict[str, Tensor]) -> list[Output]:
    """The tensors `outputs:` names, in its order (none: the model's last tensor alone); an
    output whose layer is absent (`if: aux_loss` fails) is absent too."""
    written = state.spec.model.outputs or {}
    out = []
    for key, name in written.items():
        where = state.spec.locate("outputs", key)
        if name not in env and name in state.absent:
            continue
        tensor = lookup(env, name, where)
        out.append(Output(key, name, tensor.node, tensor.shape))
    if written and not out:
        raise SpecError("every layer that `outputs:` names is absent (their `if:`s fail): the model would return nothing", state.spec.locate("outputs"))
    return out


def references(state: State, placed: list[tuple[SymItem, tuple[str, ...] | None, bool]], params: set[str]) -> None:
    """Where the top function's items read the model's parameters, for build_model()'s
    arguments (`_exposed_params`): an argument that is a parameter itself, of a layer or of one
    call of a block kind (state.param_refs, with the item's kind and path); any other use
    (an expression of it, a condition, a repeat count, a stage's first or last instance alone)
    pins it (state.pinned)."""

    def pin(tree: ast.expr | None) -> None:
        if tree is not None:
            state.pinned.update(expr.free_names(tree) & params)

    def refer(tree: ast.expr, attr: str, at: int, path: tuple[str, ...]) -> None:
        if isinstance(tree, ast.Name) and tree.id in params:
            state.param_refs.setdefault(tree.id, []).append((at, attr, path))
        else:
            pin(tree)

    for item, path, call in placed:
        pin(item.condition)
        if path is None:
            continue
        state.top_kinds.append(item.kind if isinstance(item, SymLayer) else "composite")
        state.top_paths.append(join_path(path))
        at = len(state.top_kinds) - 1
        if isinstance(item, SymLayer) and not ops.KINDS[item.kind].MERGE:
            for attr, tree in item.args:
                refer(tree, attr, at, path)
        elif isinstance(item, SymBlock):
            for key, tree in item.args:
                refer(tree, key, at, path)
        elif isinstance(item, SymStage):
            pin(item.repeat)
            first, rest = dict(item.first.args), dict(item.rest.args)
            for key in first.keys() | rest.keys():
                trees = [t for t in (first.get(key), rest.get(key)) if t is not None]
                if call and len(trees) == 2 and ast.dump(trees[0]) == ast.dump(trees[1]):
                    refer(trees[0], key, at, path)
                else:
                    for tree in trees:
                        pin(tree)


def check_size(state: State, entries: list[dict[str, Any]], scope: dict[str, expr.Value], yaml_path: tuple[Any, ...], total: int = 0) -> int:
    """Bound the expanded size from the repeat counts before expanding anything,
    so an absurd spec fails at once instead of after building limits.MAX_NODES nodes."""
    for index, entry in enumerate(entries):
        (name, body), = entry.items()
        kind = item_kind(body)
        where = state.spec.source.locate((*yaml_path, index, name))
        if kind in ("group", "modules"):
            total = check_size(state, getattr(body, kind), scope, (*yaml_path, index, name, kind), total)
            continue
        count = _block_size(state, getattr(body, kind), ()) if kind in ("block", "stage", "stages") else 1
        if kind == "stage":
            count = (count + 1) * _repeat(body.repeat, scope, where)  # + a concat per instance in dense stages
        elif kind == "stages":  # a table: a stage per row
            at = body.columns.index("repeat") if "repeat" in body.columns else None
            count *= sum(_repeat(row[at], scope, where) if at is not None and len(row) > at else 1 for row in body.rows)
        total += count
        if total > limits.MAX_NODES:
            raise SpecError(
                f"the model expands to more than {limits.MAX_NODES} layers (up to {total} by here); "
                "raise archc.lower.limits.MAX_NODES deliberately if you mean it",
                where,
            )
    return total


def _repeat(raw: Any, scope: dict[str, expr.Value], where: Any) -> int:
    """A stage's repeat count, 1 where it does not evaluate to one in range (lowering reports it)."""
    try:
        repeat = typed_value(raw, scope, where, "any")
    except SpecError:
        return 1
    return repeat if isinstance(repeat, int) and 1 <= repeat <= limits.MAX_REPEAT else 1


def _block_size(state: State, block: str, seen: tuple[str, ...]) -> int:
    """Nodes one instance of `block` adds at least (a stage inside it counted once)."""
    source = state.spec.blocks.get(block)
    if source is None or block in seen:
        return 1  # lowering reports it
    d = source.definition
    size = 3  # shortcut (<= 2 nodes) and add
    for entry in (*d.layers, *d.after):
        (body,) = entry.values()
        kind = item_kind(body)
        size += _block_size(state, getattr(body, kind), (*seen, block)) + 1 if kind in ("block", "stage") else 1
    return size
