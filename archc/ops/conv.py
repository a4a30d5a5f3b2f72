"""2-D convolution: `conv: {filters, kernel, stride, padding, groups, dilation, bias}`."""

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
    hw,
    pads_when,
    positive,
    show,
    suffixed,
    unless,
    window,
)
from archc.ops.init import BIAS, DEFAULT, Init, InitSpec, Tensor, product, weight
from archc.spec.types import Arguments, BoolExpr, IntExpr, IntPairExpr


class ConvArgs(Arguments):
    filters: IntExpr = Field(description="Output channels.")
    kernel: IntPairExpr = Field(description="Kernel size: one value (square), or [height, width] (a 1x7 kernel is [1, 7]).")
    stride: IntExpr = Field(1, description="Stride in both spatial dimensions.")
    padding: IntPairExpr = Field(
        0, description="Zero padding on every side (symmetric, as in PyTorch); one value, or [height, width]."
    )
    groups: IntExpr = Field(1, description="Grouped convolution; must divide input and output channels.")
    dilation: IntExpr = Field(1, description="Kernel dilation.")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.conv.bias.")
    init: InitSpec | None = Field(None, description="Initialisation; what it leaves unset comes from defaults.conv.init.")


@dataclass(frozen=True)
class Conv(Op):
    """A `conv` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "conv"
    Args: ClassVar[Any] = ConvArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("filters", "int"), Attr("kernel", "pair"), Attr("stride", "int", 1), Attr("padding", "pair", 0),
        Attr("groups", "int", 1), Attr("dilation", "int", 1), Attr("bias", "bool", "defaults.conv.bias"),
        Attr("init", "init", "defaults.conv.init"),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    TENSORS: ClassVar[dict[str, Tensor]] = {"weight": weight("kernel_initializer"), "bias": BIAS}
    TORCH_CLASS: ClassVar[str | None] = "nn.Conv2d"
    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    filters: int
    kernel: int | tuple[int, int]
    stride: int = 1
    padding: int | tuple[int, int] = 0
    groups: int = 1
    dilation: int = 1
    bias: bool = False
    init: Init = DEFAULT

    def infer(self, s: Shape) -> Shape:
        positive("conv", filters=self.filters, groups=self.groups)
        h, w = window("conv", s, self.kernel, self.stride, self.padding, self.dilation)
        if s.c % self.groups or self.filters % self.groups:
            raise ShapeError(f"conv groups={self.groups} must divide input channels {s.c} and filters {self.filters}")
        return Shape(self.filters, h, w)

    def params(self, s: Shape) -> tuple[int, int]:
        kh, kw = hw(self.kernel)
        weights = self.filters * (s.c // self.groups) * kh * kw
        return (weights + (self.filters if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        out = self.infer(s)
        kh, kw = hw(self.kernel)
        return self.filters * (s.c // self.groups) * kh * kw * out.h * out.w  # type: ignore[operator]

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        return args["filters"]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call(
            "nn.Conv2d", in_ch, a["filters"], kernel_size=a["kernel"],
            stride=unless(a["stride"], "1"), padding=unless(a["padding"], "0"),
            dilation=unless(a["dilation"], "1"), groups=unless(a["groups"], "1"), bias=a["bias"],
        )  # fmt: skip

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        same = _same(a)
        out = []
        if a["padding"] not in ("0", "(0, 0)") and not same:
            out.append(call("layers.ZeroPadding2D", a["padding"], name=suffixed(ctx.name, "_pad")).when(pads_when(a["padding"])))
        strides, subsample = unless(a["stride"], "1"), _strided_dilation(a, ctx)
        if subsample is not None:  # Keras' Conv2D refuses strides > 1 with dilation > 1
            strides = unless(_stride_unless_dilated(a), "1")
        out.append(call(
            "layers.Conv2D", a["filters"], a["kernel"], strides=strides,
            padding='"same"' if same else None, dilation_rate=unless(a["dilation"], "1"),
            groups=unless(a["groups"], "1"), use_bias=a["bias"], **dict(ctx.initializers), name=ctx.name,
        ))  # fmt: skip
        if subsample is not None:  # every stride-th output of the stride-1 conv: PyTorch's strided one exactly
            out.append(call("layers.MaxPooling2D", "1", strides=a["stride"], name=suffixed(ctx.name, "_subsample")).when(subsample or None))
        return out

    def keras_output(self, name: str) -> str:
        return name + "_subsample" if self.stride > 1 and self.dilation > 1 else name

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(in_ch if a["groups"] == "1" else f"{in_ch} // {a['groups']}", *_area(a["kernel"]))

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(a["filters"], *_area(a["kernel"]))

    @classmethod
    def group_fan_out(cls, a: dict[str, str]) -> str | None:
        out = product(*_area(a["kernel"]), a["filters"])
        if a["groups"] == "1":
            return out
        return str(int(out) // int(a["groups"])) if out.isdigit() and a["groups"].isdigit() else f"{out} // {a['groups']}"

    def to_keras(self, name: str, w: Any) -> Any:
        return w.transpose(2, 3, 1, 0) if name == "weight" else w  # OIHW -> HWIO

    def to_torch(self, name: str, k: Any) -> Any:
        return k.transpose(3, 2, 0, 1) if name == "weight" else k

    def label(self) -> str:
        text = f"conv {show(self.kernel)}" + (f" /{self.stride}" if self.stride > 1 else "") + f", {self.filters}"
        return text + (f", groups {self.groups}" if self.groups > 1 else "") + (f", dilation {self.dilation}" if self.dilation > 1 else "")


def _strided_dilation(a: dict[str, str], ctx: KerasCtx) -> str | None:
    """Where a conv has both a stride and a dilation above 1, which Keras' Conv2D refuses (it
    then runs at stride 1 and keeps every stride-th output): None where that is never, "" where
    always (literal arguments), else the condition over the block kind's parameters."""
    parts = []
    for key in ("stride", "dilation"):
        value = literal_pair(a[key])
        if value == (1, 1):
            return None
        if value is None:
            parts.append(ast.Compare(ast.parse(a[key], mode="eval").body, [ast.Gt()], [ast.Constant(1)]))
    if not parts:
        return ""
    condition = ast.unparse(parts[0] if len(parts) == 1 else ast.BoolOp(ast.And(), parts))
    return condition if ctx.possible(condition) else None


def _stride_unless_dilated(a: dict[str, str]) -> str:
    """The Conv2D's stride where it keeps every stride-th output itself: its stride where the
    dilation is 1, else 1."""
    dilation = ast.parse(a["dilation"], mode="eval").body
    if isinstance(dilation, ast.Constant):
        return "1"
    one = ast.Compare(dilation, [ast.Eq()], [ast.Constant(1)])
    return ast.unparse(ast.IfExp(one, ast.parse(a["stride"], mode="eval").body, ast.Constant(1)))


def _same(a: dict[str, str]) -> bool:
    """A stride-1 conv padded by (kernel - 1) / 2 on every side is Keras' 'same' exactly
    (the uneven split only happens with strides), so it needs no ZeroPadding2D layer:
    one op less, as in keras.applications. Per dimension for a (height, width) kernel
    (a 1x7 kernel padded (0, 3)). Decided on literal arguments only."""
    kernel, padding = literal_pair(a["kernel"]), literal_pair(a["padding"])
    if kernel is None or padding is None or a["stride"] != "1" or a["dilation"] != "1":
        return False
    return all(k % 2 == 1 and p == (k - 1) // 2 for k, p in zip(kernel, padding)) and max(padding) > 0


def _area(kernel: str) -> list[str]:
    """The kernel's height and width as factors of a fan (one literal where they are)."""
    pair = literal_pair(kernel)
    if pair:
        return [str(pair[0] * pair[1])]
    return [f"{kernel}[0]", f"{kernel}[1]"] if kernel.startswith("(") else [kernel, kernel]


def literal_pair(src: str) -> tuple[int, int] | None:
    """An argument's source as (height, width), if it is a literal: `3`, `(1, 7)`."""
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value, value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None
