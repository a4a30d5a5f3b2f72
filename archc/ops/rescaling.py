"""Rescaling: `rescaling: {scale, offset}`, y = x * scale + offset (Keras' Rescaling, the
first layer of keras.applications' EfficientNet: scale 1/255 turns pixels into [0, 1]).
PyTorch has no such module, so the generated module defines one
(templates/torch/Rescaling.py.j2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call
from archc.ops.base import Attr, Defaults, KerasCtx, Op
from archc.spec.types import Arguments, NumExpr


class RescalingArgs(Arguments):
    scale: NumExpr = Field(description="Multiplier, e.g. 1 / 255.")
    offset: NumExpr = Field(0.0, description="Added after scaling.")


@dataclass(frozen=True)
class Rescaling(Op):
    """A `rescaling` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "rescaling"
    Args: ClassVar[Any] = RescalingArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("scale", "num"), Attr("offset", "num", 0.0))
    HELPERS: ClassVar[dict[str, str]] = {"torch": "Rescaling"}
    TORCH_DEFAULTS: ClassVar[Defaults] = {"Rescaling": {"offset": 0.0}}  # templates/torch/Rescaling.py.j2
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.Rescaling": {"offset": 0.0}}
    scale: float
    offset: float = 0.0

    def nonneg_after(self, nonneg_in: bool) -> bool:
        return nonneg_in and self.scale >= 0 and self.offset >= 0

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call("Rescaling", a["scale"], offset=a["offset"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call("layers.Rescaling", a["scale"], offset=a["offset"], name=ctx.name)]

    def label(self) -> str:
        return f"x * {self.scale:.4g}" + (f" + {self.offset:g}" if self.offset else "")
