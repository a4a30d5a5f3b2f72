"""Space to depth: `space_to_depth: {block: B}`, each B x B block of positions becomes
B*B*C channels of one position, (C, H, W) -> (B*B*C, H/B, W/B) (TResNet's stem, timm's
`SpaceToDepth`). H and W must be multiples of B. The channel order is timm's, which is
TensorFlow's `tf.nn.space_to_depth`'s: the position (i, j) inside the block is the high part
of the channel index and the input channel the low part,

    out[(i * B + j) * C + c, y, x] = in[c, y * B + i, x * B + j]

(PyTorch's nn.PixelUnshuffle orders them the other way round, c * B * B + i * B + j, which
is another layer). No weights: a permutation of the input's elements.

Neither framework has the layer in this order, so the generated modules define
`SpaceToDepth` (templates/<backend>/SpaceToDepth.py.j2): PyTorch's views the map as
(N, C, H/B, B, W/B, B) and permutes it to (N, B, B, C, H/B, W/B), as timm does; Keras',
on channels-last maps, reshapes to (N, H/B, B, W/B, B, C) and transposes to
(N, H/B, W/B, B, B, C), the same order."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    need_map,
    need_rank,
    positive,
)
from archc.spec import expr
from archc.spec.types import Arguments, IntExpr


class SpaceToDepthArgs(Arguments):
    block: IntExpr = Field(
        description="Side of the square block of positions that becomes one position's channels (timm's block_size, 4 in "
        "TResNet); must divide the map's height and width."
    )


@dataclass(frozen=True)
class SpaceToDepth(Op):
    """A `space_to_depth` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "space_to_depth"
    Args: ClassVar[Any] = SpaceToDepthArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("block", "int"),)
    ELEMENTWISE: ClassVar[bool] = True  # a permutation keeps the sign
    SPATIAL_STRIDE: ClassVar[str | None] = "block"  # H and W divided by the block
    HELPERS: ClassVar[dict[str, str]] = {"torch": "SpaceToDepth", "keras": "SpaceToDepth"}
    block: int

    def infer(self, s: Shape) -> Shape:
        need_map("space_to_depth", s)
        need_rank("space_to_depth", s)
        positive("space_to_depth", block=self.block)
        if any(n % self.block for n in s.size):
            raise ShapeError(
                f"space_to_depth block {self.block} must divide the map's height and width, got {s}; "
                f"use an input whose sizes are multiples of {self.block}"
            )
        b = self.block
        return Shape(s.c * b * b, tuple(n // b for n in s.size))

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        block = args["block"]
        return expr.fold(ast.BinOp(ast.BinOp(in_channels, ast.Mult(), block), ast.Mult(), block))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("SpaceToDepth", a["block"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("SpaceToDepth", a["block"], name=ctx.name)]

    def label(self) -> str:
        return f"space to depth, {self.block}×{self.block} blocks"
