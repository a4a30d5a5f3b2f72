"""The model's own list as the top function: typed by `symbolic` like every block kind and
specialised once by `specialise`, to the model's parameters and input."""

from __future__ import annotations

from typing import Any

from archc.ir.graph import Inst
from archc.lower.context import State, Tensor
from archc.lower.specialise import _Specialiser
from archc.lower.symbolic import _block_type
from archc.ops import Shape
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
    spec = _Specialiser(state, source, btype, {**scope, "in_channels": in_shape.c}, {"input": Tensor("input", in_shape, False)}, {})
    children, last = spec.items(btype.layers, (), "input", btype.numbered)
    out = spec.env[last]
    return tuple(children), out.shape, out.node, out.nonneg, spec.env
