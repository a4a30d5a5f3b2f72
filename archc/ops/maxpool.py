"""Max pooling: `maxpool: {kernel, stride, padding, ceil_mode}`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    pads_when,
    suffixed,
    unless,
    window,
)
from archc.spec.types import Arguments, IntExpr


class PoolArgs(Arguments):
    kernel: IntExpr = Field(description="Square window size.")
    stride: IntExpr | None = Field(None, description="Stride; unset means the window size.")
    padding: IntExpr = Field(
        0, description="Padding on every side (max pooling never picks it; average pooling: count_include_pad)."
    )
    ceil_mode: StrictBool = Field(
        False, description="Round the output size up, as PyTorch's ceil_mode (a last, partial window)."
    )


POOL_ATTRS = (Attr("kernel", "int"), Attr("stride", "int", "=kernel"), Attr("padding", "int", 0), Attr("ceil_mode", "bool", False))


@dataclass(frozen=True)
class Pool(Op):
    """What max and average pooling share."""

    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    TORCH: ClassVar[str]
    KERAS: ClassVar[str]
    kernel: int
    stride: int
    padding: int = 0
    ceil_mode: bool = False

    def infer(self, s: Shape) -> Shape:
        if self.padding * 2 > self.kernel:
            raise ShapeError(f"{self.kind} padding {self.padding} must be at most half the kernel {self.kernel}")
        return Shape(s.c, *window(self.kind, s, self.kernel, self.stride, self.padding, ceil=self.ceil_mode))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        extra = {"count_include_pad": a.get("count_include_pad", "True")} if cls.kind == "avgpool" and a["padding"] != "0" else {}
        ceil = {"ceil_mode": "True"} if a.get("ceil_mode", "False") != "False" else {}
        return call(cls.TORCH, kernel_size=a["kernel"], stride=a["stride"], padding=unless(a["padding"], "0"), **ceil, **extra)

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if cls.kind == "maxpool" and same_pool(a):
            return [call(cls.KERAS, a["kernel"], strides="1", padding='"same"', name=ctx.name)]
        out = []
        padding = _keras_padding(a, ctx)
        if padding not in ("0", "((0, 0), (0, 0))"):
            out.append(call("layers.ZeroPadding2D", padding, name=suffixed(ctx.name, "_pad")).when(pads_when(padding)))
        out.append(call(cls.KERAS, a["kernel"], strides=a["stride"], name=ctx.name))
        return out

    def label(self) -> str:
        return f"{self.kind} {self.kernel}×{self.kernel}" + (f" /{self.stride}" if self.stride > 1 else "") + (" ceil" if self.ceil_mode else "")


def same_pool(a: dict[str, str]) -> bool:
    """Stride 1 padded by (kernel - 1) / 2: Keras' 'same' max pooling, which ignores the
    padding exactly as PyTorch's -inf padding does (and is symmetric at stride 1)."""
    if not all(a[k].isdigit() for k in ("kernel", "padding", "stride")):
        return False
    kernel, padding = int(a["kernel"]), int(a["padding"])
    return a["stride"] == "1" and kernel % 2 == 1 and padding == (kernel - 1) // 2 > 0


def _keras_padding(a: dict[str, str], ctx: KerasCtx) -> str:
    """Symmetric padding, plus for ceil_mode the extra bottom/right rows PyTorch's last
    window reads (decided on the concrete input size)."""
    if a.get("ceil_mode", "False") == "False" or a["stride"] == "1":  # with stride 1, ceil_mode changes nothing
        return a["padding"]
    if ctx.in_shape is None or not all(a[k].isdigit() for k in ("padding", "kernel", "stride")):
        raise ShapeError(
            "ceil_mode pooling with a stride inside a block kind: its Keras padding depends on the input size; "
            "write it at model level"
        )
    p, k, s = int(a["padding"]), int(a["kernel"]), int(a["stride"])
    pads = []
    for n in (ctx.in_shape.h, ctx.in_shape.w):
        out = window("pool", Shape(1, n, n), k, s, p, ceil=True)[0]
        pads.append((p, max(0, (out - 1) * s + k - n - p)))
    (top, bottom), (left, right) = pads
    return f"(({top}, {bottom}), ({left}, {right}))"


@dataclass(frozen=True)
class MaxPool(Pool):
    """A `maxpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "maxpool"
    Args: ClassVar[Any] = PoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = POOL_ATTRS
    ELEMENTWISE: ClassVar[bool] = True
    TORCH: ClassVar[str] = "nn.MaxPool2d"
    KERAS: ClassVar[str] = "layers.MaxPooling2D"

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        """Keras pads with zeros, not -inf: only harmless on a non-negative input."""
        if same_pool(a):
            return None
        try:
            padding = _keras_padding(a, ctx)
        except ShapeError as e:
            return str(e)
        if padding not in ("0", "((0, 0), (0, 0))") and not ctx.nonneg:
            return (
                "maxpool with padding needs a non-negative input (after relu) in the keras backend (ceil_mode pads too): "
                "Keras has no -inf padding, and zero padding would change the result"
            )
        return None
