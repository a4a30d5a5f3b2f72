"""Dropout: `dropout: {rate}`; the identity at inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, Defaults, KerasCtx, Op, Shape, ShapeError
from archc.spec.types import Arguments, NumExpr


class DropoutArgs(Arguments):
    rate: NumExpr = Field(description="Probability of zeroing an element, in [0, 1).")


@dataclass(frozen=True)
class Dropout(Op):
    """A `dropout` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "dropout"
    INFERENCE_IDENTITY: ClassVar[bool] = True  # archc.deploy
    CHANNELS_LAST: ClassVar[bool] = True  # elementwise: any layout
    Args: ClassVar[Any] = DropoutArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("rate", "num"),)
    ELEMENTWISE: ClassVar[bool] = True
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True
    ALIASES: ClassVar[bool] = True  # nn.Dropout in eval returns its input
    TORCH_DEFAULTS: ClassVar[Defaults] = {"nn.Dropout": {"inplace": False}}  # p: always written, as the rate it is
    rate: float

    def infer(self, s: Shape) -> Shape:
        if not 0 <= self.rate < 1:
            raise ShapeError(f"dropout rate must be in [0, 1), got {self.rate}")
        return s

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call("nn.Dropout", p=a["rate"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Dropout", a["rate"], name=ctx.name)]

    def label(self) -> str:
        return f"dropout {self.rate:g}"
