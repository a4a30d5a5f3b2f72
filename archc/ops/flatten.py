"""Flatten a map to (C*H*W,): `flatten`. PyTorch orders C,H,W and Keras H,W,C; the ops
after it that keep that order (`Op.KEEPS_FEATURE_ORDER`) pass it on, and `archc.interop`
reorders the per-feature tensors (`Op.feature_axis`) of what reads it: a dense layer's weight,
a flat batch norm's or layer norm's vectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call
from archc.ops.base import Defaults, KerasCtx, Op, Shape
from archc.spec.types import Empty


@dataclass(frozen=True)
class Flatten(Op):
    """A `flatten` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "flatten"
    Args: ClassVar[Any] = Empty
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"flatten": {"flatten": {}}}
    ELEMENTWISE: ClassVar[bool] = True
    ALIASES: ClassVar[bool] = True  # a view of its input
    FLAT_OUT: ClassVar[bool | None] = True
    TORCH_DEFAULTS: ClassVar[Defaults] = {"nn.Flatten": {"start_dim": 1, "end_dim": -1}}  # all but the batch axis
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.Flatten": {"data_format": None}}

    def infer(self, s: Shape) -> Shape:
        return Shape(s.numel())

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call("nn.Flatten")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call("layers.Flatten", name=ctx.name)]
