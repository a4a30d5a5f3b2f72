"""He et al.'s option A shortcut (a block's `shortcut: {kind: option_a}`, not a spec layer):
take every `stride`-th pixel and zero-pad the new channels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape, ShapeError, need_map, need_rank


@dataclass(frozen=True)
class PadShortcut(Op):
    """An option A shortcut with its channels resolved (see the module docstring)."""

    kind: ClassVar[str] = "pad_shortcut"
    HELPERS: ClassVar[dict[str, str]] = {"torch": "PadShortcut", "keras": "PadShortcut"}  # templates/*/PadShortcut.py.j2
    stride: int
    extra: int  # channels added; half before (rounded down), the rest after

    def infer(self, s: Shape) -> Shape:
        need_map("option_a shortcut", s)
        need_rank("option_a shortcut", s)  # its helpers take every stride-th row and column
        if self.stride < 1:
            raise ShapeError(f"option_a shortcut stride must be >= 1, got {self.stride}")
        if self.extra < 0:
            raise ShapeError(f"option_a shortcut cannot reduce channels ({s.c} -> {s.c + self.extra})")
        return Shape(s.c + self.extra, tuple(-(-n // self.stride) for n in s.size))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("PadShortcut", a["stride"], a["extra"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("PadShortcut", a["stride"], a["extra"], name=ctx.name)]

    def label(self) -> str:
        return f"option A /{self.stride}, +{self.extra} zero channels"
