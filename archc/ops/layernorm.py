"""Layer normalization over the channels: `layernorm: {eps}`.

Each position's C values are normalized (mean 0, variance 1, biased variance plus eps)
and then scaled and shifted by a learned per-channel weight and bias, as ConvNeXt does.
Where the channels are PyTorch's last axis (a flat input, or a map held channels-last
after a `permute`) this is `nn.LayerNorm(C)`; on a channels-first map it is torchvision's
`LayerNorm2d` (which permutes around `F.layer_norm`), a class the generated module
defines (templates/torch/LayerNorm2d.py.j2). Keras holds maps channels-last, so it is
always `LayerNormalization(axis=-1)`."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call
from archc.ops.base import Attr, Defaults, KerasCtx, Op, Shape, ShapeError, need_rank
from archc.spec.types import Arguments, NumExpr


class LayerNormArgs(Arguments):
    eps: NumExpr = Field(description="Added to the variance (ConvNeXt: 1e-6).")


@dataclass(frozen=True)
class LayerNorm(Op):
    """A `layernorm` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "layernorm"
    Args: ClassVar[Any] = LayerNormArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("eps", "num"),)
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight", "bias")
    CHANNEL_FREE: ClassVar[bool] = False
    CHANNELS_LAST: ClassVar[bool] = True
    LAYOUT: ClassVar[bool] = True
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True  # normalizes over every feature, scales each
    HELPERS: ClassVar[dict[str, str]] = {"torch": "LayerNorm2d"}  # channels-first maps only
    TORCH_DEFAULTS: ClassVar[Defaults] = {
        module: {"eps": 1e-05, "elementwise_affine": True, "bias": True} for module in ("nn.LayerNorm", "LayerNorm2d")
    }  # LayerNorm2d: an nn.LayerNorm with its own forward
    KERAS_DEFAULTS: ClassVar[Defaults] = {
        "layers.LayerNormalization": {"axis": -1, "epsilon": 0.001, "center": True, "scale": True}
    }
    # PyTorch's module where the channels are its last axis, where they are first; Keras' layer
    MODULES: ClassVar[tuple[str, str, str]] = ("nn.LayerNorm", "LayerNorm2d", "layers.LayerNormalization")
    eps: float
    channels_last: bool = False  # set by lowering: the channels are PyTorch's last axis

    def infer(self, s: Shape) -> Shape:
        if not self.eps > 0:
            raise ShapeError(f"{self.kind} needs eps > 0, got {self.eps}")
        if not s.last:
            need_rank(f"{self.kind} over the channels of a map", s)
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (2 * s.c, 0)

    @classmethod
    def helper(cls, backend: str, args: dict[str, Any]) -> str | None:
        last = args.get("channels_last", False)
        last = last.value if isinstance(last, ast.Constant) else last
        return None if last is True else cls.HELPERS.get(backend)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        module = cls.MODULES[0] if a.get("channels_last") == "True" else cls.MODULES[1]
        return cls.torch_call(module, in_ch, eps=a["eps"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call(cls.MODULES[2], epsilon=a["eps"], name=ctx.name)]

    def feature_axis(self, name: str) -> int | None:
        return 0  # weight and bias: one value per feature

    def randomize(self, module: Any, gen: Any) -> None:
        module.weight.uniform_(0.5, 1.5, generator=gen)
        module.bias.uniform_(-0.5, 0.5, generator=gen)
