"""Efficient channel attention (ECA-Net, Wang et al. 2020): `eca: {kernel: K}`.

Each channel is gated by a sigmoid of a 1-D convolution, across the channels, of the
channels' global averages: squeeze-and-excitation without its bottleneck, K weights in all
(no bias). As timm's `EcaModule` (timm.layers.eca, its default sigmoid gate):

    y = x.mean((2, 3)).view(N, 1, C)     # the channels as a sequence
    y = sigmoid(conv(y)).view(N, C, 1, 1)  # conv: nn.Conv1d(1, 1, K, padding=(K - 1) // 2, bias=False)
    out = x * y

K is odd, so the padding keeps the C positions. ECA-Net picks K from the channels (timm's
gamma 2, beta 1: K = the odd number nearest |log2(C) + 1| / 2, at least 3); archc states it.

Neither framework has the layer, so the generated modules define `EfficientChannelAttention`
(templates/<backend>/EfficientChannelAttention.py.j2). PyTorch's holds the child `conv`, so
its state_dict key is `NAME.conv.weight`, shape (1, 1, K), as timm's `se.conv.weight`;
Keras' holds one weight `kernel` in Conv1D's layout (K, 1, 1), initialised as PyTorch
initialises its conv, and convolves the (C, 1) sequence of channels with `keras.ops.conv`
(padding "same"). A weight of the layer itself, not of a nested Conv1D: `archc convert`
finds each weight in Keras' file under its layer (convert.keras_file_layout)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_rank
from archc.spec.types import Arguments, IntExpr


class EcaArgs(Arguments):
    kernel: IntExpr = Field(
        description="Size of the 1-D convolution across the channels: odd, >= 1 (timm's kernel_size; ECA-Net's 3 to 9)."
    )


@dataclass(frozen=True)
class Eca(Op):
    """An `eca` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "eca"
    Args: ClassVar[Any] = EcaArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("kernel", "int"),)
    WEIGHTS: ClassVar[tuple[str, ...]] = ("conv.weight",)  # the child conv's, as timm's EcaModule
    ELEMENTWISE: ClassVar[bool] = True  # a positive gate per channel keeps the sign
    HELPERS: ClassVar[dict[str, str]] = {"torch": "EfficientChannelAttention", "keras": "EfficientChannelAttention"}
    kernel: int

    def infer(self, s: Shape) -> Shape:
        if not s.spatial or s.last:
            raise ShapeError(f"eca needs a channels-first feature map (C, H, W), got {s}")
        need_rank("eca", s)
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ShapeError(
                f"eca needs an odd kernel >= 1 (its padding (kernel - 1) / 2 on each side keeps the channels), got {self.kernel}"
            )
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (self.kernel, 0)

    def macs(self, s: Shape) -> int:
        return s.c * self.kernel  # the conv across the channels, one output per channel

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("EfficientChannelAttention", kernel_size=a["kernel"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("EfficientChannelAttention", kernel_size=a["kernel"], name=ctx.name)]

    def to_keras(self, name: str, w: Any) -> Any:
        return w.transpose(2, 1, 0)  # PyTorch's Conv1d (out 1, in 1, K) -> Keras' Conv1D (K, in 1, out 1)

    def to_torch(self, name: str, k: Any) -> Any:
        return k.transpose(2, 1, 0)

    def randomize(self, module: Any, gen: Any) -> None:
        module.conv.weight.uniform_(-1.0, 1.0, generator=gen)  # a gate's input of order 1

    def label(self) -> str:
        return f"eca, kernel {self.kernel}"
