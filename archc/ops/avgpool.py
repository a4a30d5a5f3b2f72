"""Average pooling: `avgpool: {kernel, stride, padding, ceil_mode}`; padded zeros count
(PyTorch's count_include_pad=True), which is what Keras gets from explicit ZeroPadding2D."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from archc.ops.base import Attr, KerasCtx
from archc.ops.maxpool import POOL_ATTRS, Pool, PoolArgs


@dataclass(frozen=True)
class AvgPool(Pool):
    kind: ClassVar[str] = "avgpool"
    Args: ClassVar[Any] = PoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = POOL_ATTRS
    ELEMENTWISE: ClassVar[bool] = True
    TORCH: ClassVar[str] = "nn.AvgPool2d"
    KERAS: ClassVar[str] = "layers.AveragePooling2D"

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if a.get("ceil_mode", "False") != "False":
            return "avgpool with ceil_mode divides its last window by fewer elements in PyTorch; Keras cannot match it"
        return None
