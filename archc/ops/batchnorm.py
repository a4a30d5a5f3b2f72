"""Batch normalization over channels: `batchnorm: {eps, momentum, scale}` (PyTorch's momentum).

`scale: false` leaves out the learned scale (gamma fixed at 1), as Keras'
`BatchNormalization(scale=False)` in keras.applications' InceptionV3: PyTorch has no such
option (`affine` drops both gamma and beta), so the torch backend defines
`BatchNorm2dNoScale`, a BatchNorm2d whose `weight` is None (F.batch_norm then multiplies by
nothing): the same function, the same buffers, and one parameter per channel, not two."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    Defaults,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    by_rank,
    keras_momentum,
    need_rank,
    rank_of,
    ranked,
)
from archc.ops.init import DEFAULT, ONES, ZEROS, Init, Tensor
from archc.spec.init_rules import InitSpec
from archc.spec.types import Arguments, NumExpr


class BatchNormArgs(Arguments):
    eps: NumExpr | None = Field(None, description="Added to the variance; unset means defaults.batchnorm.eps.")
    momentum: NumExpr | None = Field(
        None,
        description="PyTorch convention: weight of the new batch in the running average "
        "(Keras momentum = 1 - this). Unset means defaults.batchnorm.momentum.",
    )
    scale: StrictBool | None = Field(
        None,
        description="Learn a per-channel scale (gamma); false: gamma is 1 and only the shift is learned "
        "(Keras scale=False). Unset means defaults.batchnorm.scale.",
    )
    init: InitSpec | None = Field(
        None, description="Initialisation of gamma (weight) and beta (bias); unset parts come from defaults.batchnorm.init."
    )


@dataclass(frozen=True)
class BatchNorm(Op):
    """A `batchnorm` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "batchnorm"
    Args: ClassVar[Any] = BatchNormArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("eps", "num", "defaults.batchnorm.eps"), Attr("momentum", "num", "defaults.batchnorm.momentum"),
        Attr("scale", "bool", "defaults.batchnorm.scale"), Attr("init", "init", "defaults.batchnorm.init"),
    )  # fmt: skip
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"batchnorm": {"batchnorm": {}}}
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight", "bias", "running_mean", "running_var")
    CHANNEL_FREE: ClassVar[bool] = False
    RUNNING_STATS: ClassVar[bool] = True
    RANKED: ClassVar[bool] = True  # BatchNorm1d for flat features and (C, L) maps, 2d, 3d
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True  # per feature
    TENSORS: ClassVar[dict[str, Tensor]] = {  # gamma and beta: ones and zeros in both frameworks
        "weight": Tensor("gamma_initializer", ONES, ONES, switch="scale", subclass_when_off=True, noun="batch norm's weight"),
        "bias": Tensor("beta_initializer", ZEROS, ZEROS, noun="batch norm's bias"),
    }
    HELPERS: ClassVar[dict[str, str]] = {"torch": "BatchNorm2dNoScale"}  # templates/torch/BatchNorm2dNoScale.py.j2, scale=False only
    TORCH_DEFAULTS: ClassVar[Defaults] = ranked(
        "nn.BatchNorm{rank}d", lambda rank: {"eps": 1e-05, "momentum": 0.1, "affine": True, "track_running_stats": True}
    )
    KERAS_DEFAULTS: ClassVar[Defaults] = {
        "layers.BatchNormalization": {"axis": -1, "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True}
    }
    eps: float
    momentum: float  # PyTorch convention: weight of the new batch
    scale: bool = True  # learned gamma
    init: Init = DEFAULT
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        if not (self.eps > 0 and 0 < self.momentum < 1):
            raise ShapeError(f"batchnorm needs eps > 0 and 0 < momentum < 1, got {self.eps}, {self.momentum}")
        if not self.scale and not s.spatial:
            raise ShapeError(f"batchnorm with scale: false needs a feature map (C, H, W), got the flat shape {s}")
        if not self.scale:
            need_rank("batchnorm with scale: false", s)
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return ((2 if self.scale else 1) * s.c, 2 * s.c)  # gamma, beta; running mean, running var

    def weight_names(self) -> tuple[str, ...]:
        return self.WEIGHTS if self.scale else self.WEIGHTS[1:]

    def feature_axis(self, name: str) -> int | None:
        return 0  # gamma, beta and the running statistics: one value per feature

    def randomize(self, module: Any, gen: Any) -> None:
        if module.weight is not None:  # None: scale: false
            module.weight.uniform_(0.5, 1.5, generator=gen)
        module.bias.uniform_(-0.5, 0.5, generator=gen)  # running statistics: verify calibrates them

    @classmethod
    def helper(cls, backend: str, args: dict[str, Any]) -> str | None:
        scale = args.get("scale", True)
        scale = scale.value if isinstance(scale, ast.Constant) else scale
        return None if scale is True else cls.HELPERS.get(backend)

    @classmethod
    def torch_init_classes(cls, ranks: set[int]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f"nn.BatchNorm{max(r, 1)}d" for r in by_rank(ranks)))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        if a.get("scale", "True") != "True":
            return call("BatchNorm2dNoScale", in_ch, eps=a["eps"], momentum=a["momentum"])
        return cls.torch_call(f"nn.BatchNorm{max(rank_of(a), 1)}d", in_ch, eps=a["eps"], momentum=a["momentum"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        scale = "True" if a.get("scale", "True") == "True" else "False"
        return [
            cls.keras_call(
                "layers.BatchNormalization", epsilon=a["eps"], momentum=keras_momentum(a["momentum"]), scale=scale,
                **dict(ctx.initializers), name=ctx.name,
            )
        ]  # fmt: skip
