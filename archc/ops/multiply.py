"""Element-wise product: `multiply: [x, gate]`. A gate of shape (C, 1, 1) or (C,)
broadcasts over a (C, H, W) map, as in squeeze-and-excitation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape, ShapeError, need_rank
from archc.spec.types import TensorName


@dataclass(frozen=True)
class Multiply(Op):
    """A `multiply` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "multiply"
    Args: ClassVar[Any] = list[TensorName]
    MERGE: ClassVar[bool] = True

    def infer_many(self, shapes: list[Shape]) -> Shape:
        full = max(shapes, key=lambda s: s.numel())
        for s in shapes:
            if s.c != full.c or (s.spatial and s.size not in (full.size, (1,) * full.rank)):
                raise ShapeError(
                    f"cannot multiply shapes {' and '.join(map(str, shapes))}: a gate must have the map's "
                    f"channels and shape (C, 1, 1) or (C,)"
                )
        if any(not s.spatial for s in shapes) and full.spatial:
            need_rank("multiply by a flat gate", full)  # its code adds two axes to the gate
        return full

    @classmethod
    def torch_merge(cls, srcs: list[str], flats: list[bool]) -> str:
        return " * ".join(f"{s}[:, :, None, None]" if flat and not all(flats) else s for s, flat in zip(srcs, flats))

    @classmethod
    def keras_merge(cls, ctx: KerasCtx, srcs: list[str], flats: list[bool], a: dict[str, str]) -> tuple[Call, str]:
        # Keras broadcasts a (N, C) gate over (N, H, W, C) once it is reshaped to (N, 1, 1, C)
        if any(flats) and not all(flats):
            srcs = [f"layers.Reshape((1, 1, -1))({s})" if flat else s for s, flat in zip(srcs, flats)]
        return call("layers.Multiply", name=ctx.name), f"[{', '.join(srcs)}]"

    def label(self) -> str:
        return "×"
