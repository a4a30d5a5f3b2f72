"""A range of channels: `slice: {start, stop}` (ShuffleNet's channel split, the two
paths of a dual-path block). `channels` in its arguments is the input's channel count,
e.g. `stop: channels // 2`. Not a module: an expression in `forward`, `x[:, start:stop]`
in PyTorch (a view, as torchvision's `x.chunk(2, dim=1)`) and `x[..., start:stop]` in Keras."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map
from archc.spec import expr
from archc.spec.types import Arguments, IntExpr


class SliceArgs(Arguments):
    start: IntExpr = Field(0, description="First channel kept (from 0).")
    stop: IntExpr | None = Field(None, description="Channel after the last one kept; unset means all the rest.")


def _bound(src: str) -> bool:
    """Whether a slice bound is written without spaces around its colon (as ruff formats it)."""
    try:
        tree = ast.parse(src, mode="eval").body
    except SyntaxError:
        return False
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.USub):
        tree = tree.operand
    return isinstance(tree, (ast.Name, ast.Constant))


def channel_slice(a: dict[str, str]) -> str:
    """`start:stop`, leaving out a start of 0 and an unset stop; spaced like ruff format
    where a bound is an expression (`: in_channels // 2`)."""
    start = "" if a["start"] == "0" else a["start"]
    stop = a.get("stop", "")
    if all(_bound(b) for b in (start, stop) if b):
        return f"{start}:{stop}"
    return f"{start} : {stop}".strip()


@dataclass(frozen=True)
class Slice(Op):
    """A `slice` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "slice"
    Args: ClassVar[Any] = SliceArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("start", "int", 0), Attr("stop", "int", None))
    CHANNEL_FREE: ClassVar[bool] = False  # its output channels depend on the input's
    ELEMENTWISE: ClassVar[bool] = True
    EXPRESSION: ClassVar[bool] = True
    start: int = 0
    stop: int | None = None

    def infer(self, s: Shape) -> Shape:
        need_map("slice", s)
        stop = s.c if self.stop is None else self.stop
        if not 0 <= self.start < stop <= s.c:
            raise ShapeError(
                f"slice needs 0 <= start < stop <= channels ({s.c}), got start {self.start}, stop {stop}"
            )
        return Shape(stop - self.start, s.size)

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        stop = args.get("stop", in_channels)
        return expr.fold(ast.BinOp(stop, ast.Sub(), args["start"]))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        raise NotImplementedError("slice is an expression in forward, not a module")

    @classmethod
    def torch_expr(cls, src: str, a: dict[str, str]) -> str:
        return f"{src}[:, {channel_slice(a)}]"

    @classmethod
    def keras_expr(cls, src: str, a: dict[str, str], ctx: KerasCtx) -> str:
        return f"{src}[..., {channel_slice(a)}]"

    def label(self) -> str:
        return f"slice [{self.start}:{'' if self.stop is None else self.stop}]"
