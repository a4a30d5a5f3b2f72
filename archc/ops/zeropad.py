"""Zero padding on every spatial side: `zeropad: {padding}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map
from archc.spec.types import IntExpr, Strict


class ZeroPadArgs(Strict):
    padding: IntExpr = Field(description="Zeros added on every spatial side.")


@dataclass(frozen=True)
class ZeroPad(Op):
    kind: ClassVar[str] = "zeropad"
    Args: ClassVar[Any] = ZeroPadArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("padding", "int"),)
    ELEMENTWISE: ClassVar[bool] = True
    padding: int

    def infer(self, s: Shape) -> Shape:
        need_map("zeropad", s)
        if self.padding < 0:
            raise ShapeError(f"zeropad padding must be >= 0, got {self.padding}")
        return Shape(s.c, s.h + 2 * self.padding, s.w + 2 * self.padding)  # type: ignore[operator]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.ZeroPad2d", a["padding"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.ZeroPadding2D", a["padding"], name=ctx.name)]

    def label(self) -> str:
        return f"zeropad {self.padding}"
