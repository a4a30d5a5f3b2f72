"""Stochastic depth ("drop path", Huang et al. 2016): `stochastic_depth: {rate}`.

In training each sample's whole residual branch is zeroed with probability `rate`
and the survivors are scaled by 1 / (1 - rate) (torchvision's StochasticDepth in
"row" mode); at inference it is the identity. It sits at the end of a residual
branch, before the add. PyTorch has no such layer outside torchvision, so the
generated module defines one (templates/torch/StochasticDepth.py.j2); Keras'
Dropout with one noise value per sample (`noise_shape=(None, 1, 1, 1)`) is
exactly this, and is what keras.applications' EfficientNet uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map, need_rank
from archc.spec.types import Arguments, NumExpr


class StochasticDepthArgs(Arguments):
    rate: NumExpr = Field(description="Probability of dropping a sample's whole branch, in [0, 1).")


@dataclass(frozen=True)
class StochasticDepth(Op):
    """A `stochastic_depth` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "stochastic_depth"
    INFERENCE_IDENTITY: ClassVar[bool] = True  # archc.deploy
    CHANNELS_LAST: ClassVar[bool] = True  # elementwise: any layout
    Args: ClassVar[Any] = StochasticDepthArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("rate", "num"),)
    ELEMENTWISE: ClassVar[bool] = True
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True  # one factor per sample
    ALIASES: ClassVar[bool] = True  # the identity in eval
    CHANNEL_FREE: ClassVar[bool] = True
    HELPERS: ClassVar[dict[str, str]] = {"torch": "StochasticDepth"}
    rate: float

    def infer(self, s: Shape) -> Shape:
        need_map("stochastic_depth", s)  # one noise value per sample of a (C, H, W) map: Keras' noise_shape
        need_rank("stochastic_depth", s)
        if not 0 <= self.rate < 1:
            raise ShapeError(f"stochastic_depth rate must be in [0, 1), got {self.rate}")
        return s

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("StochasticDepth", a["rate"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Dropout", a["rate"], noise_shape="(None, 1, 1, 1)", name=ctx.name)]

    def label(self) -> str:
        return f"stochastic depth {self.rate:g}"
