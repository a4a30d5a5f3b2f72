"""Zero padding: `zeropad: {padding}`, the same on every spatial side, or uneven as
`[[top, bottom], [left, right]]` (Keras' ZeroPadding2D; keras.applications' correct_pad
before a strided conv pads one row and column less at the top and left)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Union

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map
from archc.spec.types import Arguments, IntExpr

_Side = Annotated[list[IntExpr], Field(min_length=2, max_length=2)]
PadsExpr = Annotated[
    Union[IntExpr, Annotated[list[_Side], Field(min_length=2, max_length=2)]], Field(union_mode="left_to_right")
]


class ZeroPadArgs(Arguments):
    padding: PadsExpr = Field(
        description="Zeros added on every spatial side, or [[top, bottom], [left, right]]."
    )


@dataclass(frozen=True)
class ZeroPad(Op):
    """A `zeropad` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "zeropad"
    Args: ClassVar[Any] = ZeroPadArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("padding", "pads"),)
    ELEMENTWISE: ClassVar[bool] = True
    padding: int | tuple[tuple[int, int], tuple[int, int]]

    def sides(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right)."""
        if isinstance(self.padding, int):
            return (self.padding,) * 4
        (top, bottom), (left, right) = self.padding
        return top, bottom, left, right

    def infer(self, s: Shape) -> Shape:
        need_map("zeropad", s)
        top, bottom, left, right = self.sides()
        if min(top, bottom, left, right) < 0:
            raise ShapeError(f"zeropad padding must be >= 0, got {self.padding}")
        return Shape(s.c, s.h + top + bottom, s.w + left + right)  # type: ignore[operator]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        tree = ast.parse(a["padding"], mode="eval").body
        if isinstance(tree, ast.Tuple):  # ((top, bottom), (left, right)) -> PyTorch's (left, right, top, bottom)
            (top, bottom), (left, right) = ([ast.unparse(v) for v in side.elts] for side in tree.elts)  # type: ignore[attr-defined]
            return call("nn.ZeroPad2d", f"({left}, {right}, {top}, {bottom})")
        return call("nn.ZeroPad2d", a["padding"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.ZeroPadding2D", a["padding"], name=ctx.name)]

    def label(self) -> str:
        if isinstance(self.padding, int):
            return f"zeropad {self.padding}"
        top, bottom, left, right = self.sides()
        return f"zeropad {top},{bottom} / {left},{right}"
