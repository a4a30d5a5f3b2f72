"""Upsampling by an integer factor: `upsample: {scale, mode}` (nearest or bilinear).

Bilinear is PyTorch's `align_corners=False` (half-pixel centres), which is what Keras'
UpSampling2D computes: the two agree to float rounding (tests/test_ops_new.py)."""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    Defaults,
    KerasCtx,
    Op,
    Shape,
    need_map,
    need_rank,
    positive,
    rank_of,
)
from archc.spec.types import Arguments, IntExpr

MODES = ("nearest", "bilinear")


class UpsampleArgs(Arguments):
    scale: IntExpr = Field(2, description="Integer factor for height and width.")
    mode: Literal[MODES] = Field(  # type: ignore[valid-type]
        "nearest", description="nearest: repeat pixels; bilinear: interpolate (PyTorch align_corners=False)."
    )


def mode_literal(a: dict[str, str]) -> str:
    """The mode as a string literal; a block kind's argument arrives as Python source."""
    value = a["mode"]
    return json.dumps(ast.literal_eval(value) if value[:1] in "\"'" else value)


@dataclass(frozen=True)
class Upsample(Op):
    """A `upsample` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "upsample"
    Args: ClassVar[Any] = UpsampleArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("scale", "int", 2), Attr("mode", "str", "nearest"))
    ELEMENTWISE: ClassVar[bool] = True  # both modes average non-negative values into non-negative ones
    RANKED: ClassVar[bool] = True
    TORCH_DEFAULTS: ClassVar[Defaults] = {"nn.Upsample": {"mode": "nearest", "align_corners": None}}
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.UpSampling2D": {"interpolation": "nearest", "data_format": None}}
    scale: int = 2
    mode: str = "nearest"
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        need_map("upsample", s)
        positive("upsample", scale=self.scale)
        if self.mode == "bilinear":
            need_rank("upsample with mode bilinear", s)  # nearest follows every rank
        return Shape(s.c, tuple(n * self.scale for n in s.size))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        mode = mode_literal(a)
        corners = "False" if mode == '"bilinear"' else None
        return cls.torch_call("nn.Upsample", scale_factor=a["scale"], mode=mode, align_corners=corners)

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if rank_of(a) != 2:  # nearest (infer refuses bilinear there): UpSampling1D and 3D repeat
            return [call(f"layers.UpSampling{rank_of(a)}D", size=a["scale"], name=ctx.name)]
        return [cls.keras_call("layers.UpSampling2D", size=a["scale"], interpolation=mode_literal(a), name=ctx.name)]

    def label(self) -> str:
        return f"upsample ×{self.scale} {self.mode}"
