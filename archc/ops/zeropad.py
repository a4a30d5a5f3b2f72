"""Zero padding: `zeropad: {padding}`, the same on every spatial side, or uneven as
`[[top, bottom], [left, right]]` (Keras' ZeroPadding2D; keras.applications' correct_pad
before a strided conv pads one row and column less at the top and left)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Union

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map, rank_of
from archc.spec.types import Arguments, IntExpr

_Side = Annotated[list[IntExpr], Field(min_length=2, max_length=2)]
PadsExpr = Annotated[
    Union[IntExpr, Annotated[list[_Side], Field(min_length=1, max_length=3)]], Field(union_mode="left_to_right")
]


class ZeroPadArgs(Arguments):
    padding: PadsExpr = Field(
        description="Zeros added on every spatial side, or [before, after] per spatial dimension: "
        "[[top, bottom], [left, right]] in 2-D, [[left, right]] in 1-D, [[front, back], [top, bottom], [left, right]] in 3-D."
    )


@dataclass(frozen=True)
class ZeroPad(Op):
    """A `zeropad` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "zeropad"
    Args: ClassVar[Any] = ZeroPadArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("padding", "pads"),)
    ELEMENTWISE: ClassVar[bool] = True
    RANKED: ClassVar[bool] = True
    padding: int | tuple[tuple[int, int], ...]
    rank: int = 2  # set by lowering

    def sides(self) -> tuple[tuple[int, int], ...]:
        """(before, after) per spatial dimension: ((top, bottom), (left, right)) in 2-D."""
        if isinstance(self.padding, int):
            return ((self.padding, self.padding),) * self.rank
        return self.padding

    def infer(self, s: Shape) -> Shape:
        need_map("zeropad", s)
        sides = self.sides()
        if min(min(side) for side in sides) < 0:
            raise ShapeError(f"zeropad padding must be >= 0, got {self.padding}")
        return Shape(s.c, tuple(n + before + after for n, (before, after) in zip(s.size, sides)))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        module, tree = f"nn.ZeroPad{rank_of(a)}d", ast.parse(a["padding"], mode="eval").body
        if isinstance(tree, ast.Tuple):  # ((top, bottom), (left, right)) -> PyTorch's (left, right, top, bottom): last dimension first
            sides = [ast.unparse(v) for side in reversed(tree.elts) for v in side.elts]  # type: ignore[attr-defined]
            return call(module, f"({', '.join(sides)})")
        return call(module, a["padding"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        tree = ast.parse(a["padding"], mode="eval").body
        padding = a["padding"]
        if rank_of(a) == 1 and isinstance(tree, ast.Tuple):  # ZeroPadding1D takes (left, right) itself
            padding = ast.unparse(tree.elts[0])
        return [call(f"layers.ZeroPadding{rank_of(a)}D", padding, name=ctx.name)]

    def label(self) -> str:
        if isinstance(self.padding, int):
            return f"zeropad {self.padding}"
        return "zeropad " + " / ".join(f"{before},{after}" for before, after in self.sides())
