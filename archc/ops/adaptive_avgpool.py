"""Adaptive average pooling to a fixed size: `adaptive_avgpool: {size}` -> (C, size, size).

PyTorch picks each output cell's window from the input size. Keras has no such layer, so
the keras backend needs a case where a plain layer computes the same: size 1 (global
average pooling, keeping the map), an input of exactly size x size (nothing to do), or an
input divisible by size (average pooling with window and stride H // size, W // size, the
windows PyTorch uses then). Those last two need the concrete input size, known at model
level; inside a block kind only size 1 can be written for Keras."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, need_map, positive
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
    size: int

    def infer(self, s: Shape) -> Shape:
        need_map("adaptive_avgpool", s)
        positive("adaptive_avgpool", size=self.size)
        return Shape(s.c, self.size, self.size)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.AdaptiveAvgPool2d", a["size"])

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if a["size"] == "1":
            return None
        if ctx.in_shape is None or not a["size"].isdigit():
            return (
                f"adaptive_avgpool with size {a['size']} inside a block kind: its Keras pooling window depends on the "
                "input size; write it at model level, or use size 1 (global average pooling)"
            )
        k, (h, w) = int(a["size"]), (ctx.in_shape.h, ctx.in_shape.w)
        if (h, w) != (k, k) and (h % k or w % k):  # type: ignore[operator]
            return (
                f"adaptive_avgpool to {k}x{k} from a {h}x{w} map: PyTorch's windows then differ in size and overlap, "
                f"and Keras has no layer that matches them; use an input size divisible by {k} (or size 1)"
            )
        return None

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if a["size"] == "1":
            return [call("layers.GlobalAveragePooling2D", keepdims="True", name=ctx.name)]
        assert ctx.in_shape is not None  # keras_problem said so
        k, h, w = int(a["size"]), ctx.in_shape.h, ctx.in_shape.w
        if (h, w) == (k, k):
            return [call("layers.Identity", name=ctx.name)]
        window = str(h // k) if h == w else f"({h // k}, {w // k})"  # type: ignore[operator]
        return [call("layers.AveragePooling2D", window, name=ctx.name)]

    def label(self) -> str:
        return f"adaptive avgpool {self.size}×{self.size}"
