"""Depthwise convolution: `depthwise_conv: {kernel, stride, padding, bias}`, one filter per
input channel (a conv with groups = filters = input channels, as PyTorch writes it; Keras'
DepthwiseConv2D, as keras.applications' MobileNetV2 and EfficientNet write it, whose kernel
is laid out (kh, kw, channels, 1)).

Keras' DepthwiseConv2D pads 'same' or not at all. Where every instance's padding is 0 or
(kernel - 1) / 2 at stride 1 (Keras' 'same' exactly), archc writes that, as
keras.applications does: a padding that depends on the block's parameters becomes
`padding="same" if ... else "valid"`. Any other padding is a ZeroPadding2D before an
unpadded DepthwiseConv2D (as for a conv). keras.applications' uneven padding before a
strided depthwise conv is a `zeropad` layer in front of it."""

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
    Size,
    ones,
    pads_when,
    rank_of,
    ranked,
    show,
    sizes,
    suffixed,
    window,
)
from archc.ops.conv import Conv, keras_sizes, kernel_factors, literal_sizes, shown
from archc.ops.init import BIAS, DEFAULT, Init, Tensor, product, weight
from archc.spec.init_rules import InitSpec
from archc.spec.types import Arguments, BoolExpr, IntPairExpr


class DepthwiseConvArgs(Arguments):
    kernel: IntPairExpr = Field(description="Kernel size: one value for every spatial dimension, or one per dimension.")
    stride: IntPairExpr = Field(1, description="Stride: one value, or one per dimension.")
    padding: IntPairExpr = Field(0, description="Zero padding on every side: one value, or one per dimension.")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.conv.bias.")
    init: InitSpec | None = Field(
        None, description="Initialisation, with PyTorch's fans (fan_in k*k, fan_out channels*k*k); unset parts come from defaults.conv.init."
    )


@dataclass(frozen=True)
class DepthwiseConv(Op):
    """A `depthwise_conv` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "depthwise_conv"
    FOLDS_NORM: ClassVar[bool] = True  # archc.deploy
    Args: ClassVar[Any] = DepthwiseConvArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("kernel", "pair"), Attr("stride", "pair", 1), Attr("padding", "pair", 0),
        Attr("bias", "bool", "defaults.conv.bias"), Attr("init", "init", "defaults.conv.init"),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    TENSORS: ClassVar[dict[str, Tensor]] = {"weight": weight("depthwise_initializer"), "bias": BIAS}  # an nn.Conv2d: the convs' branch of the init loop
    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    # Keras' kernel (k, k, C, 1) has fan_in C*k*k and fan_out k*k, PyTorch's (C, 1, k, k) the
    # other way round: a fan rule's mode is swapped for Keras (ops.init.swap_fans)
    KERAS_FANS: ClassVar[bool | str] = "swapped"
    RANKED: ClassVar[bool] = True
    TORCH_DEFAULTS: ClassVar[Defaults] = Conv.TORCH_DEFAULTS  # an nn.Conv2d with groups = its channels
    KERAS_DEFAULTS: ClassVar[Defaults] = ranked(
        "layers.DepthwiseConv{rank}D",
        lambda rank: {
            "strides": ones(rank), "padding": "valid", "depth_multiplier": 1, "dilation_rate": ones(rank),
            "use_bias": True, "activation": None, "data_format": None,
        },
        ranks=(1, 2),  # Keras has no DepthwiseConv3D (keras_problem)
    )  # fmt: skip
    kernel: Size
    stride: Size = 1
    padding: Size = 0
    bias: bool = False
    init: Init = DEFAULT
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        return Shape(s.c, window("depthwise_conv", s, self.kernel, self.stride, self.padding))

    def params(self, s: Shape) -> tuple[int, int]:
        return (s.c * math.prod(sizes(self.kernel, s.rank)) + (s.c if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        out = self.infer(s)
        return s.c * math.prod(sizes(self.kernel, s.rank)) * math.prod(out.size)

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call(
            f"nn.Conv{rank_of(a)}d", in_ch, in_ch, kernel_size=a["kernel"], stride=a["stride"],
            padding=a["padding"], groups=in_ch, bias=a["bias"],
        )  # fmt: skip

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if rank_of(a) == 3:
            return "depthwise_conv on a 3-D map: Keras has DepthwiseConv1D and DepthwiseConv2D, no 3-D one"
        return None

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        explicit, rank = _pads_otherwise(a, ctx), rank_of(a)  # explicit: a ZeroPadding layer pads every instance
        out = []
        if explicit:
            padding = keras_sizes(a["padding"], rank)
            out.append(call(f"layers.ZeroPadding{rank}D", padding, name=suffixed(ctx.name, "_pad")).when(pads_when(padding)))
        out.append(cls.keras_call(
            f"layers.DepthwiseConv{rank}D", a["kernel"], strides=a["stride"],
            padding=None if explicit else _keras_padding(a["padding"]), use_bias=a["bias"], **dict(ctx.initializers),
            name=ctx.name,
        ))  # fmt: skip
        return out

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(*kernel_factors(a["kernel"], rank_of(a)))

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(in_ch, *kernel_factors(a["kernel"], rank_of(a)))

    @classmethod
    def group_fan_out(cls, a: dict[str, str]) -> str | None:
        return product(*kernel_factors(a["kernel"], rank_of(a)))  # fan_out / groups, one group per channel

    def to_keras(self, name: str, w: Any) -> Any:
        return w.transpose(*range(2, w.ndim), 0, 1) if name == "weight" else w  # (C, 1, *k) -> (*k, C, 1)

    def to_torch(self, name: str, k: Any) -> Any:
        return k.transpose(k.ndim - 2, k.ndim - 1, *range(k.ndim - 2)) if name == "weight" else k

    def label(self) -> str:
        stride = shown(self.stride)
        return f"depthwise {show(self.kernel, self.rank)}" + (f" /{stride}" if stride != "1" else "")


def _pads_otherwise(a: dict[str, str], ctx: KerasCtx) -> bool:
    """Whether the padding may be neither 0 nor Keras' 'same' (stride 1, padding
    (kernel - 1) // 2 of an odd kernel): decided on literal arguments, else over the block
    kind's instances (`ctx.possible`)."""
    rank = rank_of(a)
    ps, ks, ss = (literal_sizes(a[key], rank) for key in ("padding", "kernel", "stride"))
    if ps is not None and ks is not None and ss is not None:
        return any(p > 0 for p in ps) and not all(s == 1 and k % 2 == 1 and p == (k - 1) // 2 for p, k, s in zip(ps, ks, ss))
    p, k, s = (ast.parse(a[key], mode="eval").body for key in ("padding", "kernel", "stride"))

    def equal(left: ast.expr, right: ast.expr) -> ast.expr:
        return ast.Compare(left, [ast.Eq()], [right])

    one, two = ast.Constant(1), ast.Constant(2)
    same = [equal(s, one), equal(ast.BinOp(k, ast.Mod(), two), one), equal(p, ast.BinOp(ast.BinOp(k, ast.Sub(), one), ast.FloorDiv(), two))]
    return ctx.possible(ast.unparse(ast.BoolOp(ast.And(), [p, ast.UnaryOp(ast.Not(), ast.BoolOp(ast.And(), same))])))


def _keras_padding(src: str) -> str | None:
    """'same' where the padding is not 0 (every instance is checked to be 'same' exactly there):
    `padding="same"`, nothing for 0, or `"same" if stride == 1 else "valid"` for PyTorch's
    `kernel // 2 if stride == 1 else 0`."""
    tree = ast.parse(src, mode="eval").body
    if isinstance(tree, ast.Constant):
        return '"same"' if tree.value else None
    if isinstance(tree, ast.Tuple) and literal_sizes(src) is not None:  # per dimension: 'same' where any pads
        return '"same"' if any(literal_sizes(src)) else None  # type: ignore[arg-type]
    if isinstance(tree, ast.IfExp) and isinstance(tree.orelse, ast.Constant) and tree.orelse.value == 0:
        return f'"same" if {ast.unparse(tree.test)} else "valid"'
    return f'"same" if {src} else "valid"' if isinstance(tree, ast.Name) else f'"same" if ({src}) else "valid"'
