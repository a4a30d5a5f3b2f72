"""Blur pooling: `blurpool: {kernel: K, stride: S, pad_mode}`, anti-aliased downsampling
(Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"; timm's `BlurPool2d`,
TResNet's and the anti-aliased ResNets' strided layers). Each channel is blurred by a fixed K x K binomial
filter, the outer product of the row of Pascal's triangle divided by 2^(K-1) with itself
(K = 3: [1, 2, 1] / 4, so the filter sums to 1), after padding of P = (S - 1 + K - 1) // 2
on every side (timm's get_padding) by reflection (`pad_mode: reflect`, timm's default) or
with zeros (`pad_mode: zeros`, timm's `blurpc`, pad_mode="constant"), at stride S: a
depthwise convolution whose weights are constants,

    out[c] = conv2d(pad(in, P, pad_mode), filter, stride=S)[c]

No trainable weights and no saved state: the filter is a constant of the layer, which
PyTorch holds as timm does, a non-persistent buffer (`filt`, (1, 1, K, K), moved and cast
with the model, not in the state_dict, so timm's checkpoints load strictly), and Keras
builds in `call`. The coefficients are exact in float32 for the sizes allowed (K <= 16) and
each product of two is rounded once, so both frameworks hold timm's filter to the bit.

Reflection needs the padding narrower than the map (PyTorch refuses P >= H or W). Neither
framework has the layer, so the generated modules define `BlurPool2d` / `BlurPool2D`
(templates/<backend>/). MACs: the depthwise convolution's, K*K per channel and position."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_rank, window
from archc.spec.types import Arguments, IntExpr

PAD_MODES = ("reflect", "zeros")
FRAMEWORK_MODE = {"reflect": "reflect", "zeros": "constant"}  # F.pad's and keras.ops.pad's names

MAX_KERNEL = 16  # a bound: the coefficients (below 2^13) are exact in float32 far beyond it


class BlurPoolArgs(Arguments):
    kernel: IntExpr = Field(
        3, description=f"Side of the binomial filter, 2 to {MAX_KERNEL} (timm's filt_size; 3 in TResNet: [1, 2, 1] / 4 each way)."
    )
    stride: IntExpr = Field(2, description="Stride of the downsampling, >= 1.")
    pad_mode: Literal[PAD_MODES] = Field(  # type: ignore[valid-type]
        "reflect", description="reflect: pad by reflection, the edge not repeated (timm's default); zeros: pad with zeros (timm's blurpc)."
    )


def padding(kernel: int, stride: int) -> int:
    """The padding on every side: timm's get_padding(kernel, stride)."""
    return (stride - 1 + kernel - 1) // 2


@dataclass(frozen=True)
class BlurPool(Op):
    """A `blurpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "blurpool"
    Args: ClassVar[Any] = BlurPoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("kernel", "int", 3), Attr("stride", "int", 2), Attr("pad_mode", "str", "reflect"))
    ELEMENTWISE: ClassVar[bool] = True  # non-negative weights: a non-negative input stays so
    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    HELPERS: ClassVar[dict[str, str]] = {"torch": "BlurPool2d", "keras": "BlurPool2D"}
    kernel: int = 3
    stride: int = 2
    pad_mode: str = "reflect"

    def infer(self, s: Shape) -> Shape:
        need_rank("blurpool", s)
        if not 2 <= self.kernel <= MAX_KERNEL or self.stride < 1:
            raise ShapeError(f"blurpool needs a kernel from 2 to {MAX_KERNEL} and a stride >= 1, got kernel {self.kernel}, stride {self.stride}")
        p = padding(self.kernel, self.stride)
        out = window("blurpool", s, self.kernel, self.stride, p)
        if self.pad_mode == "reflect" and any(p >= n for n in s.size):
            raise ShapeError(
                f"blurpool with kernel {self.kernel}, stride {self.stride} pads {p} on each side by reflection, "
                f"which needs a map wider than that, got {s}; use a larger input or fewer downsampling steps"
            )
        return Shape(s.c, out)

    def macs(self, s: Shape) -> int:
        out = self.infer(s)
        return s.c * self.kernel * self.kernel * out.size[0] * out.size[1]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("BlurPool2d", a["kernel"], stride=a["stride"], pad_mode=_framework_mode(a))

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("BlurPool2D", a["kernel"], strides=a["stride"], pad_mode=_framework_mode(a), name=ctx.name)]

    def label(self) -> str:
        return f"blur pool {self.kernel}×{self.kernel}, /{self.stride}" + (", zero padding" if self.pad_mode == "zeros" else "")


def _framework_mode(a: dict[str, str]) -> str | None:
    """The helpers' pad_mode as source (F.pad's name), None where it is their default, reflect."""
    mode = FRAMEWORK_MODE[ast.literal_eval(a.get("pad_mode", '"reflect"'))]
    return None if mode == "reflect" else json.dumps(mode)
