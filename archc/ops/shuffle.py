"""Channel shuffle (ShuffleNet): `shuffle: {groups}`. The channels, seen as a
groups x (C / groups) matrix, are transposed, so that the next grouped layer sees
channels from every group. PyTorch has nn.ChannelShuffle; Keras has no layer, so the
generated Keras module defines one (templates/keras/ChannelShuffle.py.j2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    need_map,
    need_rank,
    positive,
)
from archc.spec.types import Arguments, IntExpr


class ShuffleArgs(Arguments):
    groups: IntExpr = Field(description="Number of groups; must divide the channels.")


@dataclass(frozen=True)
class Shuffle(Op):
    """A `shuffle` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "shuffle"
    Args: ClassVar[Any] = ShuffleArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("groups", "int"),)
    # nn.ChannelShuffle(groups) is built without the channels (which groups must divide)
    CHANNEL_FREE: ClassVar[bool] = True
    ELEMENTWISE: ClassVar[bool] = True  # a permutation
    HELPERS: ClassVar[dict[str, str]] = {"keras": "ChannelShuffle"}
    groups: int

    def infer(self, s: Shape) -> Shape:
        need_map("shuffle", s)
        need_rank("shuffle", s)
        positive("shuffle", groups=self.groups)
        if s.c % self.groups:
            raise ShapeError(f"shuffle groups={self.groups} must divide the input channels {s.c}")
        return s

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.ChannelShuffle", a["groups"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("ChannelShuffle", a["groups"], name=ctx.name)]

    def label(self) -> str:
        return f"channel shuffle, {self.groups} groups"
