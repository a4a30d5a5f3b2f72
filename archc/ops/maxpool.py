"""Max pooling: `maxpool: {kernel, stride, padding, ceil_mode}`.

PyTorch pads max pooling with -inf, so a padded pixel is never picked. In Keras, archc pads
explicitly before an unpadded MaxPooling2D: with zeros (ZeroPadding2D, as keras.applications'
ResNet) where the input is known to be non-negative (after a relu), else with -inf (the
NegInfPadding2D helper); Keras' 'same' max pooling where it is PyTorch's exactly (stride 1,
padding (kernel - 1) / 2). ceil_mode's last windows read extra bottom and right padding."""

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
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        try:
            _keras_padding(a, ctx)
        except ShapeError as e:
            return str(e)
        return None

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        """Explicit padding (`_pad`), then the unpadded pooling layer."""
        out = []
        padding = _keras_padding(a, ctx)
        if padding not in ("0", "((0, 0), (0, 0))"):
            pad = cls.keras_pad(ctx)
            out.append(call(pad, padding, name=suffixed(ctx.name, "_pad")).when(pads_when(padding)))
        out.append(call(cls.KERAS, a["kernel"], strides=a["stride"], name=ctx.name))
        return out

    @classmethod
    def keras_pad(cls, ctx: KerasCtx) -> str:
        """The Keras layer that pads this pool's input."""
        return "layers.ZeroPadding2D"

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
    """Symmetric padding, or for ceil_mode ((top, bottom), (left, right)) with the extra
    bottom/right rows PyTorch's last window reads (ceil_pads)."""
    pads = ceil_pads(a, ctx)
    return a["padding"] if pads is None else str(pads)


def ceil_pads(a: dict[str, str], ctx: KerasCtx) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """For ceil_mode with a stride, the padding ((top, bottom), (left, right)) whose unpadded
    windows are PyTorch's (decided on the concrete input size): bottom and right are more than
    the padding where a last window is partial (reaches past the padded input). None: the
    symmetric padding (no ceil_mode, or stride 1, where ceil_mode changes nothing)."""
    if a.get("ceil_mode", "False") == "False" or a["stride"] == "1":
        return None
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
    return pads[0], pads[1]


@dataclass(frozen=True)
class MaxPool(Pool):
    """A `maxpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "maxpool"
    Args: ClassVar[Any] = PoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = POOL_ATTRS
    ELEMENTWISE: ClassVar[bool] = True
    TORCH: ClassVar[str] = "nn.MaxPool2d"
    KERAS: ClassVar[str] = "layers.MaxPooling2D"
    HELPERS: ClassVar[dict[str, str]] = {"keras": "NegInfPadding2D"}  # templates/keras/NegInfPadding2D.py.j2

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if same_pool(a):
            return [call(cls.KERAS, a["kernel"], strides="1", padding='"same"', name=ctx.name)]
        return super().keras_layers(a, ctx)

    @classmethod
    def keras_pad(cls, ctx: KerasCtx) -> str:
        """Zeros where the input is non-negative (never above a window's maximum), else -inf."""
        return "layers.ZeroPadding2D" if ctx.nonneg else "NegInfPadding2D"
