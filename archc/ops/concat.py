"""Channel concatenation of maps of one size: `concat: [a, b, ...]`."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape, ShapeError
from archc.spec.types import TensorName


@dataclass(frozen=True)
class Concat(Op):
    """A `concat` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "concat"
    Args: ClassVar[Any] = list[TensorName]
    MERGE: ClassVar[bool] = True

    def infer_many(self, shapes: list[Shape]) -> Shape:
        if any(s.size != shapes[0].size for s in shapes):
            raise ShapeError(f"cannot concatenate maps of different size: {', '.join(map(str, shapes))}")
        return Shape(sum(s.c for s in shapes), shapes[0].size)

    def nonneg_after(self, nonneg_in: bool) -> bool:
        return nonneg_in

    @classmethod
    def merged_channels(cls, channels: list[ast.expr]) -> ast.expr:
        if len(channels) > 2 and len({ast.dump(c) for c in channels}) == 1:  # torchvision's len(self.convs) * out_channels
            return ast.BinOp(ast.Constant(len(channels)), ast.Mult(), channels[0])
        total = channels[0]
        for c in channels[1:]:
            total = ast.BinOp(total, ast.Add(), c)
        return total

    @classmethod
    def torch_merge(cls, srcs: list[str], flats: list[bool]) -> str:
        return f"torch.cat([{', '.join(srcs)}], 1)"

    @classmethod
    def keras_merge(cls, ctx: KerasCtx, srcs: list[str], flats: list[bool], a: dict[str, str]) -> tuple[Call, str]:
        return call("layers.Concatenate", name=ctx.name), f"[{', '.join(srcs)}]"

    def label(self) -> str:
        return "concat"
