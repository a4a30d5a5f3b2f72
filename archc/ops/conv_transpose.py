"""Transposed convolution ("deconvolution"), over the map's rank (ConvTranspose1d/2d/3d):
`conv_transpose: {filters, kernel, stride, padding, output_padding, groups, bias}`.

Output size (H - 1) * stride - 2 * padding + kernel + output_padding, as PyTorch's
ConvTranspose2d. Keras' Conv2DTranspose runs unpadded ('valid', with the same
output_padding) and a Cropping2D then removes `padding` rows and columns on every
side, which is exactly what PyTorch's padding does to the full result."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    Defaults,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    Size,
    need_map,
    ones,
    positive,
    rank_of,
    ranked,
    show,
    sizes,
    suffixed,
)
from archc.ops.conv import (
    keras_sizes,
    kernel_factors,
    kernel_to_keras,
    kernel_to_torch,
    literal_sizes,
    shown,
)
from archc.ops.init import BIAS, DEFAULT, Init, Tensor, product, weight
from archc.spec.init_rules import InitSpec
from archc.spec.types import Arguments, BoolExpr, IntExpr, IntPairExpr


class ConvTransposeArgs(Arguments):
    filters: IntExpr = Field(description="Output channels.")
    kernel: IntPairExpr = Field(description="Kernel size: one value for every spatial dimension, or one per dimension.")
    stride: IntPairExpr = Field(1, description="Upsampling factor: one value, or one per dimension.")
    padding: IntPairExpr = Field(
        0, description="Rows and columns removed from every side of the full result (PyTorch's padding); one value, or one per dimension."
    )
    output_padding: IntPairExpr = Field(
        0, description="Extra rows and columns at the bottom and right, less than stride (PyTorch's output_padding); one value, or one per dimension."
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
        Attr("filters", "int"), Attr("kernel", "pair"), Attr("stride", "pair", 1), Attr("padding", "pair", 0),
        Attr("output_padding", "pair", 0), Attr("groups", "int", 1), Attr("bias", "bool", "defaults.conv.bias"),
        Attr("init", "init", "defaults.conv_transpose.init"),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    TENSORS: ClassVar[dict[str, Tensor]] = {"weight": weight("kernel_initializer"), "bias": BIAS}
    TORCH_CLASS: ClassVar[str | None] = "nn.ConvTranspose{rank}d"
    RANKED: ClassVar[bool] = True
    TORCH_DEFAULTS: ClassVar[Defaults] = ranked(
        "nn.ConvTranspose{rank}d",
        lambda rank: {
            "stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "bias": True, "dilation": 1,
            "padding_mode": "zeros",
        },
    )  # fmt: skip
    KERAS_DEFAULTS: ClassVar[Defaults] = ranked(
        "layers.Conv{rank}DTranspose",
        lambda rank: {
            "strides": ones(rank), "padding": "valid", "output_padding": None, "dilation_rate": ones(rank),
            "use_bias": True, "activation": None, "data_format": None,
        },
    )  # fmt: skip
    filters: int
    kernel: Size
    stride: Size = 1
    padding: Size = 0
    output_padding: Size = 0
    groups: int = 1
    bias: bool = False
    init: Init = DEFAULT
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        need_map("conv_transpose", s)
        ks, ss, ps, os = (sizes(v, s.rank) for v in (self.kernel, self.stride, self.padding, self.output_padding))
        positive("conv_transpose", filters=self.filters, kernel=min(ks), stride=min(ss), groups=self.groups)
        if min(ps) < 0 or not all(0 <= o < stride for o, stride in zip(os, ss)):
            raise ShapeError(
                f"conv_transpose needs padding >= 0 and 0 <= output_padding < stride, got padding {self.padding}, "
                f"output_padding {self.output_padding}, stride {self.stride}"
            )
        if s.c % self.groups or self.filters % self.groups:
            raise ShapeError(f"conv_transpose groups={self.groups} must divide input channels {s.c} and filters {self.filters}")

        size = tuple((n - 1) * st - 2 * p + k + o for n, k, st, p, o in zip(s.size, ks, ss, ps, os))
        if min(size) < 1:
            raise ShapeError(f"conv_transpose with kernel {self.kernel} and padding {self.padding} crops {s} below {'x'.join('1' * s.rank)}")
        return Shape(self.filters, size)

    def params(self, s: Shape) -> tuple[int, int]:
        weights = s.c * (self.filters // self.groups) * math.prod(sizes(self.kernel, s.rank))
        return (weights + (self.filters if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        """Every input pixel multiplies its kernel into the output (torchvision / fvcore)."""
        return s.c * self.filters * math.prod(sizes(self.kernel, s.rank)) * math.prod(s.size) // self.groups

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        return args["filters"]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call(
            f"nn.ConvTranspose{rank_of(a)}d", in_ch, a["filters"], kernel_size=a["kernel"], stride=a["stride"],
            padding=a["padding"], output_padding=a["output_padding"], groups=a["groups"], bias=a["bias"],
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
        rank = rank_of(a)
        kernel, stride = literal_sizes(a["kernel"], rank), literal_sizes(a["stride"], rank)
        plain = literal_sizes(a["output_padding"]) == (0,) and kernel is not None and stride is not None and all(
            k >= st for k, st in zip(kernel, stride)
        )
        out = [cls.keras_call(
            f"layers.Conv{rank}DTranspose", a["filters"], a["kernel"], strides=a["stride"],
            output_padding=None if plain else a["output_padding"], use_bias=a["bias"], **dict(ctx.initializers),
            name=ctx.name,
        )]  # fmt: skip
        if literal_sizes(a["padding"]) != (0,):
            out.append(call(f"layers.Cropping{rank}D", keras_sizes(a["padding"], rank), name=suffixed(ctx.name, "_crop")))
        return out

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        """PyTorch's weight is (in, out / groups, k, k): its fan_in is out / groups * k * k."""
        out = a["filters"] if a["groups"] == "1" else f"{a['filters']} // {a['groups']}"
        return product(out, *kernel_factors(a["kernel"], rank_of(a)))

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(in_ch, *kernel_factors(a["kernel"], rank_of(a)))

    def keras_output(self, name: str) -> str:
        return name + "_crop" if any(sizes(self.padding, self.rank)) else name

    def to_keras(self, name: str, w: Any) -> Any:
        return kernel_to_keras(w) if name == "weight" else w  # (in, out, *k) -> (*k, out, in)

    def to_torch(self, name: str, k: Any) -> Any:
        return kernel_to_torch(k) if name == "weight" else k

    def label(self) -> str:
        stride = shown(self.stride)
        text = f"conv_transpose {show(self.kernel, self.rank)}" + (f" ×{stride}" if stride != "1" else "") + f", {self.filters}"
        return text + (f", groups {self.groups}" if self.groups > 1 else "")
