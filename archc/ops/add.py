"""Element-wise sum of tensors of one shape: `add: [a, b, ...]` (a residual merge).

`in_place: true` beside the list says how PyTorch's forward writes it: the first tensor's
variable updated in place, `out += x` (torchvision's MobileNetV3 and EfficientNet blocks:
`result = self.block(input); ... result += input`); by default a new tensor, `a + b`
(torchvision's MobileNetV2: `x + self.conv(x)`). The sum is the same: the IR, its counts and
the state_dict do not change, nor does Keras (`layers.Add`). Overwriting the first tensor is
sound only where nothing else reads it and its producer's backward does not read its output:
lowering checks that (archc.lower.inplace) and refuses a spec where it does not hold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op, Shape, ShapeError
from archc.spec.types import Arguments, TensorName


class AddOptions(Arguments):
    """How PyTorch's forward writes the sum: written beside its list of inputs."""

    in_place: StrictBool = Field(
        False,
        description="true: PyTorch updates the first tensor in place, `out += x` (torchvision's MobileNetV3 and "
        "EfficientNet blocks, `result += input`); the first must be a layer of the same list that nothing else reads. "
        "false: a new tensor, `a + b` (torchvision's MobileNetV2, `x + self.conv(x)`). The same sum either way; "
        "Keras writes layers.Add.",
    )


@dataclass(frozen=True)
class Add(Op):
    """A `add` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "add"
    Args: ClassVar[Any] = list[TensorName]
    OPTIONS: ClassVar[Any] = AddOptions
    MERGE: ClassVar[bool] = True
    in_place: bool = False  # PyTorch's forward updates the first tensor (`out += x`)

    @classmethod
    def merging(cls, n: int, item: Any) -> Add:
        return cls(item.in_place)

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
    def torch_merge_lines(cls, dst: str, srcs: list[str], flats: list[bool], options: dict[str, Any]) -> list[str]:
        """In place: one `+=` per later tensor, so the sum is ((a + b) + c) as the new tensor's;
        the result is then in the first tensor's variable (`dst = a` where `dst` is another)."""
        if not options.get("in_place"):
            return super().torch_merge_lines(dst, srcs, flats, options)
        return [*(f"{srcs[0]} += {s}" for s in srcs[1:]), *([f"{dst} = {srcs[0]}"] if dst != srcs[0] else [])]

    @classmethod
    def keras_merge(cls, ctx: KerasCtx, srcs: list[str], flats: list[bool], a: dict[str, str]) -> tuple[Call, str]:
        return call("layers.Add", name=ctx.name), f"[{', '.join(srcs)}]"

    def label(self) -> str:
        return "+"
