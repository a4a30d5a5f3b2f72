"""Fully connected layer: `dense: {units, bias}`, on flat features, or at every position
of a map held channels-last (after a `permute`, as in ConvNeXt's block: PyTorch's
nn.Linear and Keras' Dense both act on the last axis)."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call
from archc.ops.base import Attr, Defaults, KerasCtx, Op, Shape, ShapeError
from archc.ops.init import BIAS, DEFAULT, Init, Tensor, product, weight
from archc.spec.init_rules import InitSpec
from archc.spec.types import Arguments, BoolExpr, IntExpr


class DenseArgs(Arguments):
    units: IntExpr = Field(description="Output features.")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.dense.bias.")
    init: InitSpec | None = Field(None, description="Initialisation; what it leaves unset comes from defaults.dense.init.")


@dataclass(frozen=True)
class Dense(Op):
    """A `dense` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "dense"
    FOLDS_NORM: ClassVar[bool] = True  # archc.deploy
    Args: ClassVar[Any] = DenseArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("units", "int"), Attr("bias", "bool", "defaults.dense.bias"), Attr("init", "init", "defaults.dense.init"),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    TENSORS: ClassVar[dict[str, Tensor]] = {
        "weight": weight("kernel_initializer", ("{m}.in_features", "{m}.out_features")), "bias": BIAS,
    }  # fmt: skip
    TORCH_CLASS: ClassVar[str | None] = "nn.Linear"
    TORCH_DEFAULTS: ClassVar[Defaults] = {"nn.Linear": {"bias": True}}
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.Dense": {"use_bias": True, "activation": None}}
    CHANNELS_LAST: ClassVar[bool] = True
    units: int
    bias: bool = True
    init: Init = DEFAULT

    def infer(self, s: Shape) -> Shape:
        if s.spatial and not s.last:
            raise ShapeError(
                f"dense needs a flat input but gets {s}; add flatten or global_avgpool before it "
                "(or, to apply it at every position, permute: {to: channels_last})"
            )
        if self.units < 1:
            raise ShapeError(f"dense units must be >= 1, got {self.units}")
        return Shape(self.units, s.size, s.last)

    def params(self, s: Shape) -> tuple[int, int]:
        return (s.c * self.units + (self.units if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        return s.numel() * self.units

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", "bias") if self.bias else ("weight",)

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        return args["units"]

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call("nn.Linear", in_ch, a["units"], bias=a["bias"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [cls.keras_call("layers.Dense", a["units"], use_bias=a["bias"], **dict(ctx.initializers), name=ctx.name)]

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(in_ch)

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(a["units"])

    def feature_axis(self, name: str) -> int | None:
        return 1 if name == "weight" else None  # (units, in features); its output is its units

    def to_keras(self, name: str, w: Any) -> Any:
        return w.T if name == "weight" else w

    def to_torch(self, name: str, k: Any) -> Any:
        return k.T if name == "weight" else k

    def label(self) -> str:
        return f"dense {self.units}"
