"""Per-channel input normalization: `normalization: {mean, variance}`, as Keras'
Normalization layer: y = (x - mean) / max(sqrt(variance), 1e-7).

- With `mean` and `variance` written in the spec (one number per channel), they are
  constants: no weights, nothing in the state_dict (keras.applications' ConvNeXt
  preprocessing, ImageNet's statistics in pixels).
- Without them, they are non-trainable weights set from data (Keras' `adapt()`), with
  Keras' sample `count`: 2C + 1 numbers, the identity until adapted (keras.applications'
  EfficientNet).

PyTorch has no such module, so the generated module defines one
(templates/torch/Normalization.py.j2): constants are non-persistent buffers, learned
statistics persistent ones, so the state_dict holds exactly Keras' weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, model_validator

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_map, need_rank
from archc.spec.types import Arguments, FiniteFloat, StrictInt

Numbers = tuple[StrictInt | FiniteFloat, ...]


class NormalizationArgs(Arguments):
    mean: Numbers | None = Field(None, description="Per-channel mean, a constant; unset: learned from data (adapt).")
    variance: Numbers | None = Field(None, description="Per-channel variance (>= 0), a constant; set with mean.")

    @model_validator(mode="after")
    def _both_or_neither(self) -> NormalizationArgs:
        if (self.mean is None) != (self.variance is None):
            raise ValueError("give both mean and variance (constants) or neither (statistics learned from data)")
        if self.variance is not None and min(self.variance) < 0:
            raise ValueError("variance must be >= 0")
        return self


@dataclass(frozen=True)
class Normalization(Op):
    """A `normalization` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "normalization"
    Args: ClassVar[Any] = NormalizationArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("mean", "const", None), Attr("variance", "const", None))
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"normalization": {"normalization": {}}}  # learned
    WEIGHTS: ClassVar[tuple[str, ...]] = ("mean", "variance", "count")
    CHANNEL_FREE: ClassVar[bool] = False
    HELPERS: ClassVar[dict[str, str]] = {"torch": "Normalization"}
    mean: tuple[float, ...] | None = None
    variance: tuple[float, ...] | None = None

    @property
    def learned(self) -> bool:
        return self.mean is None

    def infer(self, s: Shape) -> Shape:
        need_map("normalization", s)
        need_rank("normalization", s)
        if not self.learned and not len(self.mean) == len(self.variance) == s.c:  # type: ignore[arg-type]
            raise ShapeError(
                f"normalization needs one mean and one variance per channel ({s.c}), "
                f"got {len(self.mean)} and {len(self.variance)}"  # type: ignore[arg-type]
            )
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (0, 2 * s.c + 1) if self.learned else (0, 0)

    def weight_names(self) -> tuple[str, ...]:
        return self.WEIGHTS if self.learned else ()

    def randomize(self, module: Any, gen: Any) -> None:
        if self.learned:  # constants stay as written
            module.mean.uniform_(-0.5, 0.5, generator=gen)
            module.variance.uniform_(0.5, 2.0, generator=gen)
            module.count.fill_(1000)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("Normalization", in_ch, mean=a.get("mean"), variance=a.get("variance"))

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Normalization", mean=a.get("mean"), variance=a.get("variance"), name=ctx.name)]

    def label(self) -> str:
        if self.learned:
            return "normalize (learned statistics)"
        stds = ", ".join(f"{math.sqrt(v):.3g}" for v in self.variance)  # type: ignore[union-attr]
        return f"normalize, mean {', '.join(f'{m:.3g}' for m in self.mean)}; std {stds}"  # type: ignore[union-attr]
