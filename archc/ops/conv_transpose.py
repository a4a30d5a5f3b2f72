"""Transposed 2-D convolution ("deconvolution"):
`conv_transpose: {filters, kernel, stride, padding, output_padding, groups, bias}`.

Output size (H - 1) * stride - 2 * padding + kernel + output_padding, as PyTorch's
ConvTranspose2d. Keras' Conv2DTranspose runs unpadded ('valid', with the same
output_padding) and a Cropping2D then removes `padding` rows and columns on every
side, which is exactly what PyTorch's padding does to the full result."""

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
    need_map,
    positive,
    suffixed,
    unless,
)
from archc.ops.init import BIAS, DEFAULT, Init, InitSpec, Tensor, product, weight
from archc.spec.types import Arguments, BoolExpr, IntExpr


class ConvTransposeArgs(Arguments):
    filters: IntExpr = Field(description="Output channels.")
    kernel: IntExpr = Field(description="Square kernel size.")
    stride: IntExpr = Field(1, description="Upsampling factor in both spatial dimensions.")
    padding: IntExpr = Field(0, description="Rows and columns removed from every side of the full result (PyTorch's padding).")
    output_padding: IntExpr = Field(
        0, description="Extra rows and columns at the bottom and right, less than stride (PyTorch's output_padding)."
    )
    groups: IntExpr = Field(1, description="Grouped transposed convolution (PyTorch only: Keras has no groups here).")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.conv.bias.")
    init: InitSpec | None = Field(
        None, description="Initialisation; what it leaves unset comes from defaults.conv_transpose.init."
    )


@dataclass(frozen=True)
class ConvTranspose(Op):
    """A `conv_transpose` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "conv_transpose"
    Args: ClassVar[Any] = ConvTransposeArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("filters", "int"), Attr("kernel", "int"), Attr("stride", "int", 1), Attr("padding", "int", 0),
        Attr("output_padding", "int", 0), Attr("groups", "int", 1), Attr("bias", "bool", "defaults.conv.bias"),
        Attr("init", "init", "defaults.conv_transpose.init"),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    TENSORS: ClassVar[dict[str, Tensor]] = {"weight": weight("kernel_initializer"), "bias": BIAS}
    TORCH_CLASS: ClassVar[str | None] = "nn.ConvTranspose2d"
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    output_padding: int = 0
    groups: int = 1
    bias: bool = False
    init: Init = DEFAULT

    def infer(self, s: Shape) -> Shape:
        need_map("conv_transpose", s)
        positive("conv_transpose", filters=self.filters, kernel=self.kernel, stride=self.stride, groups=self.groups)
        if self.padding < 0 or not 0 <= self.output_padding < self.stride:
            raise ShapeError(
                f"conv_transpose needs padding >= 0 and 0 <= output_padding < stride, got padding {self.padding}, "
                f"output_padding {self.output_padding}, stride {self.stride}"
            )
        if s.c % self.groups or self.filters % self.groups:
            raise ShapeError(f"conv_transpose groups={self.groups} must divide input channels {s.c} and filters {self.filters}")

        def size(n: int) -> int:
            return (n - 1) * self.stride - 2 * self.padding + self.kernel + self.output_padding

        h, w = size(s.h), size(s.w)  # type: ignore[arg-type]
        if h < 1 or w < 1:
            raise ShapeError(f"conv_transpose with kernel {self.kernel} and padding {self.padding} crops {s} below 1x1")
        return Shape(self.filters, h, w)

    def params(self, s: Shape) -> tuple[int, int]:
        weights = s.c * (self.filters // self.groups) * self.kernel * self.kernel
        return (weights + (self.filters if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        """Every input pixel multiplies its kernel into the output (torchvision / fvcore)."""
        return s.c * self.filters * self.kernel * self.kernel * s.h * s.w // self.groups  # type: ignore[operator]

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        return args["filters"]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call(
            "nn.ConvTranspose2d", in_ch, a["filters"], kernel_size=a["kernel"],
            stride=unless(a["stride"], "1"), padding=unless(a["padding"], "0"),
            output_padding=unless(a["output_padding"], "0"), groups=unless(a["groups"], "1"), bias=a["bias"],
        )  # fmt: skip

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if a["groups"] != "1":
            return (
                "conv_transpose with groups: Keras' Conv2DTranspose has no groups argument, so the keras backend "
                "cannot build it; use groups: 1 or the torch backend only"
            )
        return None

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        # Unset, Keras' own output_padding gives H * stride where kernel < stride: always state
        # it unless it is 0 and the kernel is known to be at least the stride.
        literal = a["kernel"].isdigit() and a["stride"].isdigit()
        plain = a["output_padding"] == "0" and literal and int(a["kernel"]) >= int(a["stride"])
        out = [call(
            "layers.Conv2DTranspose", a["filters"], a["kernel"], strides=unless(a["stride"], "1"),
            output_padding=None if plain else a["output_padding"], use_bias=a["bias"], **dict(ctx.initializers),
            name=ctx.name,
        )]  # fmt: skip
        if a["padding"] != "0":
            out.append(call("layers.Cropping2D", a["padding"], name=suffixed(ctx.name, "_crop")))
        return out

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        """PyTorch's weight is (in, out / groups, k, k): its fan_in is out / groups * k * k."""
        out = a["filters"] if a["groups"] == "1" else f"{a['filters']} // {a['groups']}"
        return product(out, a["kernel"], a["kernel"])

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(in_ch, a["kernel"], a["kernel"])

    def keras_output(self, name: str) -> str:
        return name + "_crop" if self.padding else name

    def to_keras(self, name: str, w: Any) -> Any:
        return w.transpose(2, 3, 1, 0) if name == "weight" else w  # (in, out, kh, kw) -> (kh, kw, out, in)

    def to_torch(self, name: str, k: Any) -> Any:
        return k.transpose(3, 2, 0, 1) if name == "weight" else k

    def label(self) -> str:
        text = f"conv_transpose {self.kernel}×{self.kernel}" + (f" ×{self.stride}" if self.stride > 1 else "") + f", {self.filters}"
        return text + (f", groups {self.groups}" if self.groups > 1 else "")
