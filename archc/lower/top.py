"""The model's own list as the top function: typed by `symbolic` like every block kind and
specialised once by `specialise`, to the model's parameters and input."""

from __future__ import annotations

import ast
from typing import Any

from archc import ops
from archc.errors import SpecError
from archc.ir.graph import Inst, Output, SymBlock, SymItem, SymLayer, SymStage
from archc.lower.context import State, Tensor, join_path, lookup
from archc.lower.specialise import _Specialiser
from archc.lower.symbolic import _block_type
from archc.ops import Shape
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource


def lower_top(state: State, scope: dict[str, Any], in_shape: Shape) -> tuple[tuple[Inst, ...], Shape, str, bool, dict[str, Tensor]]:
    """The model's items, its last tensor's shape, node and sign, and every tensor by name."""
    model = state.spec.model
    definition = m.BlockDef.model_construct(
        doc=model.doc, class_=None, params=dict(scope), inputs=None, outputs=None, connectivity="none",
        shortcut=None, layers=model.layers, after=[], checks=[], out_channels=None, out_stride=1,
    )  # fmt: skip
    source = BlockSource(model.name, definition, state.spec.source, ())
    btype = _block_type(state, source, top=True)
    spec = _Specialiser(state, source, btype, {**scope, "in_channels": in_shape.c}, {"input": Tensor("input", in_shape, False)}, {}, [])
    children, last = spec.items(btype.layers, (), "input", btype.numbered)
    references(state, spec.placed or [], set(scope))
    state.outputs = _outputs(state, spec.env)
    out = spec.env[last]
    return tuple(children), out.shape, out.node, out.nonneg, spec.env


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
