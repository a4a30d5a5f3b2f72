"""Adaptive average pooling to a fixed size: `adaptive_avgpool: {size}` -> (C, size, size)
(size in every spatial dimension, at any rank).

PyTorch picks each output cell's window from the input size. Keras has no such layer, so
the keras backend needs a case where a plain layer computes the same: size 1 (global
average pooling, keeping the map), an input of exactly size x size (nothing to do), or an
input divisible by size (average pooling with window and stride H // size, W // size, the
windows PyTorch uses then). Those last two need the concrete input size, known at model
level; inside a block kind only size 1 can be written for Keras."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, need_map, positive, rank_of
from archc.spec import expr
from archc.spec.types import Arguments, IntExpr


class AdaptiveAvgPoolArgs(Arguments):
    size: IntExpr = Field(description="Output height and width (1: global average pooling that keeps the map).")


@dataclass(frozen=True)
class AdaptiveAvgPool(Op):
    """A `adaptive_avgpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "adaptive_avgpool"
    Args: ClassVar[Any] = AdaptiveAvgPoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("size", "int"),)
    ELEMENTWISE: ClassVar[bool] = True  # averages keep the sign
    RANKED: ClassVar[bool] = True
    size: int
    rank: int = 2  # set by lowering

    @classmethod
    def sym_positions(cls, args: dict[str, ast.expr], positions: ast.expr | None) -> ast.expr | None:
        """It fixes them: size ** rank."""
        return expr.fold(ast.BinOp(args["size"], ast.Pow(), args["rank"]))

    def infer(self, s: Shape) -> Shape:
        need_map("adaptive_avgpool", s)
        positive("adaptive_avgpool", size=self.size)
        return Shape(s.c, (self.size,) * s.rank)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call(f"nn.AdaptiveAvgPool{rank_of(a)}d", a["size"])

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if a["size"] == "1":
            return None
        if ctx.in_shape is None or not a["size"].isdigit():
            return (
                f"adaptive_avgpool with size {a['size']} inside a block kind: its Keras pooling window depends on the "
                "input size; write it at model level, or use size 1 (global average pooling)"
            )
        k, size = int(a["size"]), ctx.in_shape.size
        if any(n % k for n in size):
            cells, shown = "x".join([str(k)] * len(size)), "x".join(map(str, size))
            return (
                f"adaptive_avgpool to {cells} from a {shown} map: PyTorch's windows then differ in size and overlap, "
                f"and Keras has no layer that matches them; use an input size divisible by {k} (or size 1)"
            )
        return None

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        rank = rank_of(a)
        if a["size"] == "1":
            return [call(f"layers.GlobalAveragePooling{rank}D", keepdims="True", name=ctx.name)]
        assert ctx.in_shape is not None  # keras_problem said so
        k, size = int(a["size"]), ctx.in_shape.size
        if set(size) == {k}:
            return [call("layers.Identity", name=ctx.name)]
        windows = [n // k for n in size]
        window = str(windows[0]) if len(set(windows)) == 1 else str(tuple(windows))
        return [call(f"layers.AveragePooling{rank}D", window, name=ctx.name)]

    def label(self) -> str:
        return f"adaptive avgpool {'×'.join([str(self.size)] * self.rank)}"
