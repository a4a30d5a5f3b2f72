"""RMS normalization over the channels: `rmsnorm: {eps}`.

Each position's C values are divided by their root mean square (plus eps under the root)
and then scaled by a learned weight per channel, no shift (Zhang & Sennrich 2019; timm's
RmsNorm2d in convnext_atto_rms):

    x * rsqrt(mean(x ** 2 over the channels) + eps) * weight

Where the channels are PyTorch's last axis (a flat input, or a map held channels-last after
a `permute`) this is `nn.RMSNorm(C, eps=eps)`; on a channels-first map it is `RmsNorm2d`, a
class the generated module defines (templates/torch/RmsNorm2d.py.j2: an nn.RMSNorm whose
forward reduces over dim 1, as timm's rms_norm2d). Both hold `weight` (C,), starting at ones.
Keras holds maps channels-last, so it is always `RMSNormalization(axis=-1)`, its weight
`scale` (C,)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call
from archc.ops.base import Attr, Defaults, KerasCtx, Op, Shape, ShapeError, need_rank
from archc.spec.types import Arguments, NumExpr


class RmsNormArgs(Arguments):
    eps: NumExpr = Field(description="Added to the mean square (timm's RmsNorm2d: 1e-6).")


@dataclass(frozen=True)
class RmsNorm(Op):
    """An `rmsnorm` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "rmsnorm"
    Args: ClassVar[Any] = RmsNormArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("eps", "num"),)
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight",)
    CHANNEL_FREE: ClassVar[bool] = False
    CHANNELS_LAST: ClassVar[bool] = True
    LAYOUT: ClassVar[bool] = True
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True  # normalizes over every feature, scales each
    HELPERS: ClassVar[dict[str, str]] = {"torch": "RmsNorm2d"}  # channels-first maps only
    TORCH_DEFAULTS: ClassVar[Defaults] = {
        module: {"eps": None, "elementwise_affine": True} for module in ("nn.RMSNorm", "RmsNorm2d")
    }  # RmsNorm2d: an nn.RMSNorm with its own forward; eps is always written (None: the dtype's epsilon)
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.RMSNormalization": {"axis": -1, "epsilon": 1e-06}}
    eps: float
    channels_last: bool = False  # set by lowering: the channels are PyTorch's last axis

    def infer(self, s: Shape) -> Shape:
        if not self.eps > 0:
            raise ShapeError(f"rmsnorm needs eps > 0, got {self.eps}")
        if not s.last:
            need_rank("rmsnorm over the channels of a map", s)
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (s.c, 0)

    @classmethod
    def helper(cls, backend: str, args: dict[str, Any]) -> str | None:
        last = args.get("channels_last", False)
        last = last.value if isinstance(last, ast.Constant) else last
        return None if last is True else cls.HELPERS.get(backend)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        module = "nn.RMSNorm" if a.get("channels_last") == "True" else "RmsNorm2d"
        return cls.torch_call(module, in_ch, eps=a["eps"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call("layers.RMSNormalization", epsilon=a["eps"], name=ctx.name)]

    def feature_axis(self, name: str) -> int | None:
        return 0  # weight: one value per feature

    def randomize(self, module: Any, gen: Any) -> None:
        module.weight.uniform_(0.5, 1.5, generator=gen)
