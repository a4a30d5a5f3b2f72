"""Softmax over the channels: `softmax`, of a map (C, H, W) at every position or of a flat
(C,) tensor; or over groups of channels, as split attention (ResNeSt) does:
`softmax: {radix: R, cardinality: K}`.

The plain form is PyTorch's `nn.Softmax(dim=1)` and Keras' `layers.Activation("softmax")`
(the last axis, Keras' channels; keras.applications writes its softmax so).

The grouped form is timm's `RadixSoftmax(radix, cardinality)` (timm.layers.split_attn), its
arguments named as timm names them: the C channels, seen as K x R x (C / (K R)) (cardinal
group, radix split, channel), get a softmax over the R splits of each channel and are put
in radix-major order, R x K x (C / (K R)), which is the order SplitAttn's weighted sum reads;
with radix 1 it is a sigmoid (timm's special case), with no grouping. timm returns the result
flattened to (B, C H W) and SplitAttn views it back to (B, C, 1, 1); archc's op is the two
together, so the output has the input's shape. Neither framework has the grouped form; the
generated modules define `RadixSoftmax` (templates/torch/, templates/keras/): PyTorch's
reshapes (B, C, H, W) as timm does, Keras' reshapes (B, H, W, C) at every position, and both
give the channels the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_rank, positive
from archc.spec.types import Arguments, IntExpr


class SoftmaxArgs(Arguments):
    radix: IntExpr | None = Field(
        None,
        description="Split attention's radix (timm's RadixSoftmax): a softmax over this many groups of "
        "channels, the result in radix-major order; 1 is a sigmoid. Unset: a softmax over all channels.",
    )
    cardinality: IntExpr | None = Field(None, description="With radix: the number of cardinal groups; unset: 1.")

    @model_validator(mode="after")
    def _radix_first(self) -> Any:
        if self.cardinality is not None and self.radix is None:  # type: ignore[attr-defined]
            raise ValueError("cardinality applies to the grouped softmax only: give radix too")
        return self


@dataclass(frozen=True)
class Softmax(Op):
    """A `softmax` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "softmax"
    Args: ClassVar[Any] = SoftmaxArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("radix", "int", None), Attr("cardinality", "int", 1))
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"softmax": {"softmax": {}}}
    HELPERS: ClassVar[dict[str, str]] = {"torch": "RadixSoftmax", "keras": "RadixSoftmax"}
    radix: int | None = None  # None: over all channels
    cardinality: int = 1  # with radix only

    def infer(self, s: Shape) -> Shape:
        if self.radix is None:
            return s
        positive("softmax", radix=self.radix, cardinality=self.cardinality)
        need_rank("softmax with radix", s)
        groups = self.radix * self.cardinality
        if self.radix > 1 and s.c % groups:
            raise ShapeError(
                f"softmax radix={self.radix}, cardinality={self.cardinality}: radix x cardinality "
                f"({groups}) must divide the input channels {s.c}"
            )
        return s

    @classmethod
    def keeps_output(cls, args: dict[str, Any]) -> bool:
        return True  # softmax's backward reads its output, as the radix-1 sigmoid's does

    def nonneg_after(self, nonneg_in: bool) -> bool:
        return True  # a softmax and a sigmoid are positive

    @classmethod
    def sym_nonneg(cls, args: dict[str, Any], nonneg_in: bool) -> bool:
        return True

    @classmethod
    def helper(cls, backend: str, args: dict[str, Any]) -> str | None:
        return cls.HELPERS.get(backend) if args.get("radix") is not None else None

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        if "radix" in a:
            return call("RadixSoftmax", a["radix"], a["cardinality"])
        return call("nn.Softmax", dim="1")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if "radix" in a:
            return [call("RadixSoftmax", a["radix"], a["cardinality"], name=ctx.name)]
        return [call("layers.Activation", '"softmax"', name=ctx.name)]

    def label(self) -> str:
        if self.radix is None:
            return "softmax"
        if self.radix == 1:
            return "sigmoid (radix 1)"
        return f"radix softmax, radix {self.radix}, cardinality {self.cardinality}"
