"""Depthwise 2-D convolution: `depthwise_conv: {kernel, stride, padding, multiplier, bias}`.

One filter per input channel (`multiplier` filters each): PyTorch's `nn.Conv2d` with
`groups` = the input channels, Keras' `DepthwiseConv2D`, keras.applications'
layer for MobileNet. (`conv` with `groups` = the channels computes the same function, but
its Keras form is a grouped `Conv2D`, whose kernel layout and layer type are not
keras.applications'.)

The padding is what `DepthwiseConv2D` can say itself: 0 ('valid') or, at stride 1, half
the (odd) kernel on every side ('same'). Anything else is an explicit `zeropad` layer
before it, as keras.applications' MobileNetV2 pads before its strided depthwise convs.
A padding that varies between instances of a block kind, `1 if stride == 1 else 0`,
becomes `padding="same" if stride == 1 else "valid"` in Keras.
"""

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
    positive,
    unless,
    window,
)
from archc.spec.types import BoolExpr, IntExpr, Strict


class DepthwiseConvArgs(Strict):
    kernel: IntExpr = Field(description="Square kernel size.")
    stride: IntExpr = Field(1, description="Stride in both spatial dimensions.")
    padding: IntExpr = Field(
        0,
        description="Zeros on every side: 0, or (kernel - 1) // 2 at stride 1 (Keras' 'valid' and 'same'); "
        "pad otherwise with a zeropad layer before it.",
    )
    multiplier: IntExpr = Field(1, description="Filters per input channel (Keras' depth_multiplier).")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.conv.bias.")


@dataclass(frozen=True)
class DepthwiseConv(Op):
    kind: ClassVar[str] = "depthwise_conv"
    Args: ClassVar[Any] = DepthwiseConvArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("kernel", "int"), Attr("stride", "int", 1), Attr("padding", "int", 0), Attr("multiplier", "int", 1),
        Attr("bias", "bool", "defaults.conv.bias"),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    kernel: int
    stride: int = 1
    padding: int = 0
    multiplier: int = 1
    bias: bool = False

    def infer(self, s: Shape) -> Shape:
        positive("depthwise_conv", multiplier=self.multiplier)
        h, w = window("depthwise_conv", s, self.kernel, self.stride, self.padding)
        same = self.stride == 1 and self.kernel % 2 == 1 and self.padding == (self.kernel - 1) // 2
        if self.padding and not same:
            raise ShapeError(
                f"depthwise_conv padding must be 0 ('valid') or (kernel - 1) // 2 at stride 1 ('same'), "
                f"got padding {self.padding} with kernel {self.kernel}, stride {self.stride}; "
                "put a zeropad layer before it for any other padding"
            )
        return Shape(s.c * self.multiplier, h, w)

    def params(self, s: Shape) -> tuple[int, int]:
        out = s.c * self.multiplier
        return (out * self.kernel * self.kernel + (out if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        out = self.infer(s)
        return out.c * self.kernel * self.kernel * out.h * out.w  # type: ignore[operator]

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        multiplier = args.get("multiplier", ast.Constant(1))
        if isinstance(multiplier, ast.Constant) and multiplier.value == 1:
            return in_channels
        return ast.BinOp(in_channels, ast.Mult(), multiplier)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        if a["multiplier"] == "1":
            out_ch = in_ch
        elif in_ch.isdigit() and a["multiplier"].isdigit():
            out_ch = str(int(in_ch) * int(a["multiplier"]))
        else:
            out_ch = f"{_operand(in_ch)} * {_operand(a['multiplier'])}"
        return call(
            "nn.Conv2d", in_ch, out_ch, kernel_size=a["kernel"], stride=unless(a["stride"], "1"),
            padding=unless(a["padding"], "0"), groups=in_ch, bias=a["bias"],
        )  # fmt: skip

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call(
            "layers.DepthwiseConv2D", a["kernel"], strides=unless(a["stride"], "1"), padding=_keras_padding(a["padding"]),
            depth_multiplier=unless(a["multiplier"], "1"), use_bias=a["bias"], name=ctx.name,
        )]  # fmt: skip

    def to_keras(self, name: str, w: Any) -> Any:
        if name != "weight":
            return w
        out, _, kh, kw = w.shape  # (C * multiplier, 1, kh, kw) -> (kh, kw, C, multiplier)
        return w.reshape(out // self.multiplier, self.multiplier, kh, kw).transpose(2, 3, 0, 1)

    def to_torch(self, name: str, k: Any) -> Any:
        if name != "weight":
            return k
        kh, kw, c, m = k.shape
        return k.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw)

    def label(self) -> str:
        text = f"depthwise {self.kernel}×{self.kernel}" + (f" /{self.stride}" if self.stride > 1 else "")
        return text + (f", x{self.multiplier}" if self.multiplier > 1 else "")


def _keras_padding(padding: str) -> str | None:
    """Keras' padding for a padding written as source: None ('valid', the default) for 0,
    'same' for any other literal (infer allows only the 'same' amount), and for an
    expression the condition it encodes: `1 if stride == 1 else 0` -> "same" if stride == 1 else "valid"."""
    try:
        value = ast.literal_eval(padding)
    except (ValueError, SyntaxError):
        value = None
    if isinstance(value, int):
        return '"same"' if value else None
    tree = ast.parse(padding, mode="eval").body
    if isinstance(tree, ast.IfExp) and isinstance(tree.body, ast.Constant) and isinstance(tree.orelse, ast.Constant):
        same, valid = ('"same"', '"valid"')
        body = same if tree.body.value else valid
        orelse = same if tree.orelse.value else valid
        return f"{body} if {ast.unparse(tree.test)} else {orelse}"
    condition = f"({padding})" if isinstance(tree, ast.IfExp) else padding
    return f'"same" if {condition} else "valid"'


def _operand(src: str) -> str:
    """`src` as an operand of `*`: parenthesized unless a name, a number or a call."""
    tree = ast.parse(src, mode="eval").body
    return src if isinstance(tree, (ast.Name, ast.Constant, ast.Call, ast.Attribute)) else f"({src})"
