"""Average pooling: `avgpool: {kernel, stride, padding, ceil_mode, count_include_pad}`.

Padded zeros count by default (PyTorch's count_include_pad=True), which is what Keras gets
from explicit ZeroPadding2D. `count_include_pad: false` divides each window by the pixels
inside the input: Keras' 'same' average pooling (keras.applications' InceptionV3), which
archc emits where it is that exactly (stride 1, padding (kernel - 1) / 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx
from archc.ops.maxpool import POOL_ATTRS, Pool, PoolArgs, same_pool


class AvgPoolArgs(PoolArgs):
    count_include_pad: StrictBool | None = Field(
        None,
        description="Count padded zeros in each window's average (PyTorch's default); false: divide by the pixels "
        "inside the input (Keras' 'same' average pooling). Unset means defaults.avgpool.count_include_pad.",
    )


@dataclass(frozen=True)
class AvgPool(Pool):
    """A `avgpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "avgpool"
    Args: ClassVar[Any] = AvgPoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (*POOL_ATTRS, Attr("count_include_pad", "bool", "defaults.avgpool.count_include_pad"))
    ELEMENTWISE: ClassVar[bool] = True
    TORCH: ClassVar[str] = "nn.AvgPool2d"
    KERAS: ClassVar[str] = "layers.AveragePooling2D"
    count_include_pad: bool = True

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if a.get("count_include_pad", "True") != "True" and same_pool(a):
            return [call(cls.KERAS, a["kernel"], strides="1", padding='"same"', name=ctx.name)]
        return super().keras_layers(a, ctx)

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if a.get("ceil_mode", "False") != "False":
            return "avgpool with ceil_mode divides its last window by fewer elements in PyTorch; Keras cannot match it"
        if a.get("count_include_pad", "True") != "True" and a["padding"] != "0" and not same_pool(a):
            return (
                "avgpool with count_include_pad: false is Keras' 'same' average pooling only at stride 1 with padding "
                "(kernel - 1) / 2; Keras cannot match other paddings"
            )
        return None
