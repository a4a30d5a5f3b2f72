"""Layer scale (Touvron et al. 2021, CaiT): `layer_scale: {init_value: V}`, a learned
multiplier per channel, as at the end of ConvNeXt's residual branch.

In PyTorch it is a bare parameter of the enclosing module, as torchvision's CNBlock has
it: `self.layer_scale = nn.Parameter(torch.ones(C, 1, 1) * V)`, used in `forward` as
`self.layer_scale * out`, so its state_dict key is the layer's own path
(`features.1.0.layer_scale`); it therefore cannot be an entry of a list. Keras has no
such layer; the generated module defines `LayerScale` (templates/keras/LayerScale.py.j2)
with one weight `gamma` of shape (C,), as keras.applications' ConvNeXt. Every element starts
at `init_value` (its initialisation: torchvision's `layer_scale` and keras.applications'
`layer_scale_init_value` are 1e-6; unset, 1: the identity).

`vector: true` keeps the PyTorch parameter a vector (C,), reshaped where it multiplies, as
timm's ConvNeXt block has its `gamma`: `x.mul(self.gamma.reshape(1, -1, 1, 1))` (the
state_dict holds (C,), so timm's checkpoints load)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.code import flat as source
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_rank
from archc.spec.types import Arguments, NumExpr


class LayerScaleArgs(Arguments):
    init_value: NumExpr = Field(1.0, description="Every element's starting value (ConvNeXt's: 1e-6).")
    vector: StrictBool = Field(
        False,
        description="The PyTorch parameter is a vector (C,), reshaped to (1, C, 1, 1) where it multiplies (timm's "
        "ConvNeXt `gamma`); false: (C, 1, 1), as torchvision's CNBlock `layer_scale`. Keras' weight is (C,) either way.",
    )


@dataclass(frozen=True)
class LayerScale(Op):
    """A `layer_scale` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "layer_scale"
    Args: ClassVar[Any] = LayerScaleArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("init_value", "num", 1.0), Attr("vector", "bool", False))
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"layer_scale": {"layer_scale": {}}}
    WEIGHTS: ClassVar[tuple[str, ...]] = ("",)  # the parameter itself: its key is the layer's path
    CHANNEL_FREE: ClassVar[bool] = False
    PARAMETER: ClassVar[bool] = True
    HELPERS: ClassVar[dict[str, str]] = {"keras": "LayerScale"}
    init_value: float = 1.0
    vector: bool = False

    def infer(self, s: Shape) -> Shape:
        if not s.spatial or s.last:
            raise ShapeError(f"layer_scale needs a channels-first feature map (C, H, W), got {s}")
        need_rank("layer_scale", s)
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (s.c, 0)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        ones = call("torch.ones", in_ch) if a.get("vector") == "True" else call("torch.ones", in_ch, "1", "1")
        value = _unless_one(a["init_value"])
        return call("nn.Parameter", ones if value is None else f"{source(ones)} * {value}")

    @classmethod
    def torch_apply(cls, attr: str, src: str, a: dict[str, str]) -> str:
        if a.get("vector") == "True":
            return f"{src}.mul({attr}.reshape(1, -1, 1, 1))"  # timm's ConvNeXtBlock
        return f"{attr} * {src}"

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("LayerScale", _unless_one(a["init_value"]), name=ctx.name)]

    def to_keras(self, name: str, w: Any) -> Any:
        return w.reshape(-1)  # (C, 1, 1) -> (C,)

    def to_torch(self, name: str, k: Any) -> Any:
        return k.reshape(-1) if self.vector else k.reshape(-1, 1, 1)

    def randomize(self, module: Any, gen: Any) -> None:
        module.uniform_(0.5, 1.5, generator=gen)  # `module` is the parameter itself: a multiplier of order 1

    def label(self) -> str:
        return "layer scale"


def _unless_one(value: str) -> str | None:
    """The starting value, left out where it is 1 (the identity, the default)."""
    return None if value in ("1", "1.0") else value
