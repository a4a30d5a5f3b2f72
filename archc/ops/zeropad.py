"""Zero padding: `zeropad: {padding}` on every spatial side, or per side with `top`,
`bottom`, `left`, `right` (each defaults to `padding`).

Uneven padding is what keras.applications' `correct_pad` gives before a strided 'valid'
conv, ((0, 1), (0, 1)) on an even input: `zeropad: {bottom: 1, right: 1}`. PyTorch's
`nn.ZeroPad2d` takes the sides as (left, right, top, bottom), Keras' `ZeroPadding2D` as
((top, bottom), (left, right))."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map
from archc.spec.types import IntExpr, Strict


class ZeroPadArgs(Strict):
    padding: IntExpr = Field(0, description="Zeros added on every spatial side (the sides not given below).")
    top: IntExpr | None = Field(None, description="Rows of zeros above; unset means `padding`.")
    bottom: IntExpr | None = Field(None, description="Rows of zeros below; unset means `padding`.")
    left: IntExpr | None = Field(None, description="Columns of zeros on the left; unset means `padding`.")
    right: IntExpr | None = Field(None, description="Columns of zeros on the right; unset means `padding`.")


SIDES = ("top", "bottom", "left", "right")


@dataclass(frozen=True)
class ZeroPad(Op):
    kind: ClassVar[str] = "zeropad"
    Args: ClassVar[Any] = ZeroPadArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("padding", "int", 0), *(Attr(side, "int", "=padding") for side in SIDES))
    ELEMENTWISE: ClassVar[bool] = True
    padding: int = 0
    top: int = 0
    bottom: int = 0
    left: int = 0
    right: int = 0

    def infer(self, s: Shape) -> Shape:
        need_map("zeropad", s)
        sides = {"padding": self.padding, **{side: getattr(self, side) for side in SIDES}}
        negative = {k: v for k, v in sides.items() if v < 0}
        if negative:
            raise ShapeError(f"zeropad padding must be >= 0, got {', '.join(f'{k} {v}' for k, v in negative.items())}")
        return Shape(s.c, s.h + self.top + self.bottom, s.w + self.left + self.right)  # type: ignore[operator]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        if _even(a):
            return call("nn.ZeroPad2d", a["padding"])
        return call("nn.ZeroPad2d", f"({a['left']}, {a['right']}, {a['top']}, {a['bottom']})")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if _even(a):
            return [call("layers.ZeroPadding2D", a["padding"], name=ctx.name)]
        return [call("layers.ZeroPadding2D", f"(({a['top']}, {a['bottom']}), ({a['left']}, {a['right']}))", name=ctx.name)]

    def label(self) -> str:
        if self.top == self.bottom == self.left == self.right == self.padding:
            return f"zeropad {self.padding}"
        return f"zeropad t{self.top} b{self.bottom} l{self.left} r{self.right}"


def _even(a: dict[str, str]) -> bool:
    """Every side is `padding` (as written: sides left unset copy it)."""
    return all(a[side] == a["padding"] for side in SIDES)
