"""Reshape a flat (C,) to a (C, 1, 1) map: `reshape`, the inverse of `global_avgpool`'s
flattening (keras.applications' squeeze-and-excitation pools to (C,) and reshapes before
its 1x1 convs: Keras' Reshape((1, 1, C)), PyTorch's nn.Unflatten(1, (C, 1, 1))); (C, 1) or
(C, 1, 1, 1) in a model of 1-D or 3-D maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape, ShapeError, rank_of
from archc.spec.types import Empty


@dataclass(frozen=True)
class Reshape(Op):
    """A `reshape` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "reshape"
    Args: ClassVar[Any] = Empty
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"reshape": {"reshape": {}}}
    ELEMENTWISE: ClassVar[bool] = True
    FLAT_OUT: ClassVar[bool | None] = False
    ALIASES: ClassVar[bool] = True  # a view of its input
    CHANNEL_FREE: ClassVar[bool] = False
    RANKED: ClassVar[bool] = True  # the model's rank: its input is flat
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        if s.spatial:
            raise ShapeError(f"reshape turns a flat (C,) into (C, 1, 1) but gets the map {s}")
        return Shape(s.c, (1,) * self.rank)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.Unflatten", "1", f"({in_ch}{', 1' * rank_of(a)})")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Reshape", f"({'1, ' * rank_of(a)}-1)", name=ctx.name)]

    def label(self) -> str:
        return "reshape to (C, 1, 1)"
