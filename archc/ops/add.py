"""Element-wise sum of tensors of one shape: `add: [a, b, ...]` (a residual merge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape, ShapeError
from archc.spec.types import TensorName


@dataclass(frozen=True)
class Add(Op):
    """A `add` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "add"
    Args: ClassVar[Any] = list[TensorName]
    MERGE: ClassVar[bool] = True

    def infer_many(self, shapes: list[Shape]) -> Shape:
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"cannot add shapes {' and '.join(map(str, shapes))}")
        return shapes[0]

    def nonneg_after(self, nonneg_in: bool) -> bool:
        return nonneg_in  # a sum of non-negative tensors

    @classmethod
    def torch_merge(cls, srcs: list[str], flats: list[bool]) -> str:
        return " + ".join(srcs)

    @classmethod
    def keras_merge(cls, ctx: KerasCtx, srcs: list[str], flats: list[bool], a: dict[str, str]) -> tuple[Call, str]:
        return call("layers.Add", name=ctx.name), f"[{', '.join(srcs)}]"

    def label(self) -> str:
        return "+"
