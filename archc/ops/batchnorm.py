"""Batch normalization over channels: `batchnorm: {eps, momentum}` (PyTorch's momentum)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, keras_momentum
from archc.spec.types import NumExpr, Strict


class BatchNormArgs(Strict):
    eps: NumExpr | None = Field(None, description="Added to the variance; unset means defaults.batchnorm.eps.")
    momentum: NumExpr | None = Field(
        None,
        description="PyTorch convention: weight of the new batch in the running average "
        "(Keras momentum = 1 - this). Unset means defaults.batchnorm.momentum.",
    )


@dataclass(frozen=True)
class BatchNorm(Op):
    kind: ClassVar[str] = "batchnorm"
    Args: ClassVar[Any] = BatchNormArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("eps", "num", "defaults.batchnorm.eps"), Attr("momentum", "num", "defaults.batchnorm.momentum"),
    )  # fmt: skip
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"batchnorm": {"batchnorm": {}}}
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight", "bias", "running_mean", "running_var")
    CHANNEL_FREE: ClassVar[bool] = False
    eps: float
    momentum: float  # PyTorch convention: weight of the new batch

    def infer(self, s: Shape) -> Shape:
        if not (self.eps > 0 and 0 < self.momentum < 1):
            raise ShapeError(f"batchnorm needs eps > 0 and 0 < momentum < 1, got {self.eps}, {self.momentum}")
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (2 * s.c, 2 * s.c)  # gamma, beta; running mean, running var

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.BatchNorm1d" if flat else "nn.BatchNorm2d", in_ch, eps=a["eps"], momentum=a["momentum"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.BatchNormalization", epsilon=a["eps"], momentum=keras_momentum(a["momentum"]), name=ctx.name)]
