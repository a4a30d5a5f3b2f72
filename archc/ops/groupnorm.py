"""Group normalization: `groupnorm: {groups, eps}` (Wu and He, 2018).

The C channels of a map are split into `groups` runs of C / groups consecutive channels;
each sample's values in one run (every position of every channel in it) are normalized
(mean 0, variance 1, biased variance plus eps), then scaled and shifted by a learned
per-channel weight and bias. No running statistics: the same in training and inference,
which is why segmentation, detection and video models with small batches use it.
PyTorch's `nn.GroupNorm(groups, C)` (weight, bias: torchvision's and timm's names), at
every rank; Keras' `GroupNormalization(groups=...)` over its channels-last axis, which
groups the same consecutive channels, with gamma and beta (PyTorch's weight and bias)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call
from archc.ops.base import (
    Attr,
    Defaults,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    need_map,
    positive,
)
from archc.spec.types import Arguments, IntExpr, NumExpr


class GroupNormArgs(Arguments):
    groups: IntExpr = Field(description="Number of groups of consecutive channels; must divide the channels (timm's group_size g: groups = channels / g).")
    eps: NumExpr = Field(1e-05, description="Added to the variance (PyTorch's default 1e-5).")


@dataclass(frozen=True)
class GroupNorm(Op):
    """A `groupnorm` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "groupnorm"
    Args: ClassVar[Any] = GroupNormArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("groups", "int"), Attr("eps", "num", 1e-05))
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight", "bias")  # Keras: gamma, beta, in this order
    CHANNEL_FREE: ClassVar[bool] = False
    TORCH_DEFAULTS: ClassVar[Defaults] = {"nn.GroupNorm": {"eps": 1e-05, "affine": True}}
    # groups (Keras' default 32) is always written: it is what the layer is
    KERAS_DEFAULTS: ClassVar[Defaults] = {
        "layers.GroupNormalization": {"axis": -1, "epsilon": 0.001, "center": True, "scale": True}
    }
    groups: int
    eps: float = 1e-05

    def infer(self, s: Shape) -> Shape:
        need_map("groupnorm", s)
        positive("groupnorm", groups=self.groups)
        if not self.eps > 0:
            raise ShapeError(f"groupnorm needs eps > 0, got {self.eps}")
        if s.c % self.groups:
            raise ShapeError(f"groupnorm groups={self.groups} must divide the input channels {s.c}")
        if s.c // self.groups * math.prod(s.size) == 1:  # its statistics are of that one value: the output is 0
            raise ShapeError(
                f"groupnorm groups={self.groups} on {s.c} channels of a {'x'.join(map(str, s.size))} map normalizes one value "
                "per group (always 0; PyTorch refuses it): use fewer groups or normalize a larger map"
            )
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (2 * s.c, 0)  # weight, bias

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call("nn.GroupNorm", a["groups"], in_ch, eps=a["eps"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call("layers.GroupNormalization", groups=a["groups"], epsilon=a["eps"], name=ctx.name)]

    def randomize(self, module: Any, gen: Any) -> None:
        module.weight.uniform_(0.5, 1.5, generator=gen)
        module.bias.uniform_(-0.5, 0.5, generator=gen)

    def label(self) -> str:
        return f"group norm, {self.groups} groups"
