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

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.ops.base import Defaults, Shape
from archc.ops.layernorm import LayerNorm
from archc.spec.types import Arguments, NumExpr


class RmsNormArgs(Arguments):
    eps: NumExpr = Field(description="Added to the mean square (timm's RmsNorm2d: 1e-6).")


@dataclass(frozen=True)
class RmsNorm(LayerNorm):
    """An `rmsnorm` layer with its arguments resolved (what it is: the module docstring): a
    layer norm's rules (the channels, their layout, eps) with a weight and no bias."""

    kind: ClassVar[str] = "rmsnorm"
    Args: ClassVar[Any] = RmsNormArgs
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight",)
    HELPERS: ClassVar[dict[str, str]] = {"torch": "RmsNorm2d"}  # channels-first maps only
    MODULES: ClassVar[tuple[str, str, str]] = ("nn.RMSNorm", "RmsNorm2d", "layers.RMSNormalization")
    TORCH_DEFAULTS: ClassVar[Defaults] = {
        module: {"eps": None, "elementwise_affine": True} for module in ("nn.RMSNorm", "RmsNorm2d")
    }  # RmsNorm2d: an nn.RMSNorm with its own forward; eps is always written (None: the dtype's epsilon)
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.RMSNormalization": {"axis": -1, "epsilon": 1e-06}}

    def params(self, s: Shape) -> tuple[int, int]:
        return (s.c, 0)

    def randomize(self, module: Any, gen: Any) -> None:
        module.weight.uniform_(0.5, 1.5, generator=gen)
