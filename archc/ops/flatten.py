"""Flatten a map to (C*H*W,): `flatten`. PyTorch orders C,H,W and Keras H,W,C;
`archc.interop` reorders the weights of the dense layer that follows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape
from archc.spec.types import Empty


@dataclass(frozen=True)
class Flatten(Op):
    """A `flatten` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "flatten"
    Args: ClassVar[Any] = Empty
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"flatten": {"flatten": {}}}
    ELEMENTWISE: ClassVar[bool] = True
    ALIASES: ClassVar[bool] = True  # a view of its input

    def infer(self, s: Shape) -> Shape:
        return Shape(s.numel())

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.Flatten")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Flatten", name=ctx.name)]
