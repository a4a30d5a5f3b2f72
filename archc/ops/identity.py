"""The identity: `identity`. It computes nothing; it holds a place, as torchvision's and
timm's `nn.Identity()` do where a layer is switched off (a list keeps its numbering, so
the checkpoint keys after it stay those of the reference). PyTorch's `nn.Identity`, Keras'
`layers.Identity` (with the layer's hierarchical name)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.code import Call, call
from archc.ops.base import KerasCtx, Op
from archc.spec.types import Empty


@dataclass(frozen=True)
class Identity(Op):
    """An `identity` layer (what it is: the module docstring)."""

    kind: ClassVar[str] = "identity"
    Args: ClassVar[Any] = Empty
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"identity": {"identity": {}}}
    ELEMENTWISE: ClassVar[bool] = True
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True
    ALIASES: ClassVar[bool] = True  # nn.Identity returns its input
    CHANNELS_LAST: ClassVar[bool] = True  # any layout

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("nn.Identity")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("layers.Identity", name=ctx.name)]
