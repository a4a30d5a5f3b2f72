"""Global average pooling: `global_avgpool`; the output is flat (C,)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import Defaults, KerasCtx, Op, Shape, need_map, rank_of, ranked
from archc.spec.types import Empty


@dataclass(frozen=True)
class GlobalAvgPool(Op):
    """A `global_avgpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "global_avgpool"
    Args: ClassVar[Any] = Empty
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"global_avgpool": {"global_avgpool": {}}}
    ELEMENTWISE: ClassVar[bool] = True
    RANKED: ClassVar[bool] = True
    KERAS_DEFAULTS: ClassVar[Defaults] = ranked(
        "layers.GlobalAveragePooling{rank}D", lambda rank: {"keepdims": False, "data_format": None}
    )  # flat output, as nn.AdaptiveAvgPool2d(1) then the flatten archc adds
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        need_map("global_avgpool", s)
        return Shape(s.c)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call(f"nn.AdaptiveAvgPool{rank_of(a)}d", "1")

    @classmethod
    def torch_after(cls, var: str) -> list[str]:
        return [f"{var} = torch.flatten({var}, 1)"]

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call(f"layers.GlobalAveragePooling{rank_of(a)}D", name=ctx.name)]

    def label(self) -> str:
        return "global avgpool"
