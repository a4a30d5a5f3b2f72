"""Move PyTorch's channels axis: `permute: {to: channels_last}` and back with
`permute: {to: channels_first}` (torchvision's `Permute([0, 2, 3, 1])` and
`Permute([0, 3, 1, 2])` in ConvNeXt's block, around a LayerNorm and two Linear layers
applied at every position). Shapes stay (C, H, W) in archc; the map is marked as held
channels-last (`Shape.last`), where only ops that work on the last axis are allowed.
PyTorch has no Permute module, so the generated module defines one
(templates/torch/Permute.py.j2); Keras holds every map channels-last already, so there
it is an Identity layer."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map, need_rank
from archc.spec.types import Arguments

DIMS = {"channels_last": "[0, 2, 3, 1]", "channels_first": "[0, 3, 1, 2]"}


class PermuteArgs(Arguments):
    to: Literal["channels_last", "channels_first"] = Field(
        description="channels_last: PyTorch's (N, C, H, W) becomes (N, H, W, C); channels_first: back."
    )


@dataclass(frozen=True)
class Permute(Op):
    """A `permute` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "permute"
    Args: ClassVar[Any] = PermuteArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("to", "str"),)
    ELEMENTWISE: ClassVar[bool] = True
    ALIASES: ClassVar[bool] = True  # a view of its input
    CHANNELS_LAST: ClassVar[bool] = True
    HELPERS: ClassVar[dict[str, str]] = {"torch": "Permute"}
    to: str

    def infer(self, s: Shape) -> Shape:
        need_map("permute", s)
        need_rank("permute", s)
        last = self.to == "channels_last"
        if s.last == last:
            raise ShapeError(f"permute to {self.to}: the map is {self.to} already")
        return dataclasses.replace(s, last=last)

    @classmethod
    def last_after(cls, args: dict[str, Any], last_in: bool) -> bool:
        to = args["to"]
        return (to.value if isinstance(to, ast.Constant) else to) == "channels_last"

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("Permute", DIMS[ast.literal_eval(a["to"])])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Identity", name=ctx.name)]  # Keras maps are channels-last already

    def label(self) -> str:
        return f"permute to {self.to.replace('_', ' ')}"
