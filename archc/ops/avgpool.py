"""Average pooling: `avgpool: {kernel, stride, padding, ceil_mode, count_include_pad}`.

Padded zeros count by default (PyTorch's count_include_pad=True), which is what Keras gets
from explicit ZeroPadding2D. `count_include_pad: false` divides each window by the pixels
inside the input: Keras' 'same' average pooling (keras.applications' InceptionV3) where it
is that exactly (stride 1, padding (kernel - 1) / 2), else the PaddedAveragePooling2D
helper (the mean over a window's input pixels). ceil_mode's last windows, where partial,
leave out the rows and columns past the padded input (a ZeroPadding2D then that helper);
where none is partial, ceil_mode gives the floor-mode windows. Where archc cannot decide
that (inside a block kind, a stride that is an expression), the helper does, with
ceil_mode=True, on the input it is called on (padding not counted only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.ops.base import (
    Attr,
    Defaults,
    KerasCtx,
    Shape,
    ShapeError,
    rank_of,
    ranked,
    sizes,
    suffixed,
)
from archc.ops.conv import literal_sizes
from archc.ops.maxpool import POOL_ATTRS, Pool, PoolArgs, ceil_pads, same_pool


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
    TORCH: ClassVar[str] = "nn.AvgPool{rank}d"
    KERAS: ClassVar[str] = "layers.AveragePooling{rank}D"
    HELPERS: ClassVar[dict[str, str]] = {"keras": "PaddedAveragePooling2D"}  # templates/keras/PaddedAveragePooling2D.py.j2
    TORCH_DEFAULTS: ClassVar[Defaults] = ranked(
        TORCH,
        lambda rank: {
            "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
            **({"divisor_override": None} if rank > 1 else {}),  # AvgPool1d has none
        },
    )  # fmt: skip
    KERAS_DEFAULTS: ClassVar[Defaults] = ranked(KERAS, lambda rank: {"strides": None, "padding": "valid", "data_format": None})
    count_include_pad: bool = True

    def infer(self, s: Shape) -> Shape:
        out = super().infer(s)
        if s.rank == 3 and any(n < k for n, k in zip(s.size, sizes(self.kernel, 3))):
            raise ShapeError(
                f"avgpool with kernel {self.kernel} on the 3-D map {s}: PyTorch's AvgPool3d needs every size at least "
                "the kernel, padding aside; use a larger input or a smaller kernel"
            )
        return out

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        if _ceil_at_call(a, ctx):
            return None
        problem = super().keras_problem(a, ctx)
        if problem is None and rank_of(a) != 2 and any(c.func == cls.HELPERS["keras"] for c in cls.keras_layers(a, ctx)):
            return (
                f"avgpool on a {rank_of(a)}-D map with padding that does not count (count_include_pad: false) or a partial "
                "ceil_mode window: Keras' helper for it is 2-D; use count_include_pad: true and no ceil_mode"
            )
        return problem

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        include = a.get("count_include_pad", "True") == "True"
        if _ceil_at_call(a, ctx):
            helper = cls.HELPERS["keras"]
            return [call(helper, a["kernel"], strides=a["stride"], padding=a["padding"], ceil_mode="True", name=ctx.name)]
        if not include and same_pool(a):
            return [cls.keras_call(cls.KERAS.format(rank=rank_of(a)), a["kernel"], strides="1", padding='"same"', name=ctx.name)]
        pads = ceil_pads(a, ctx)
        partial = pads is not None and any(after > before for before, after in pads)
        if not partial and (include or literal_sizes(a["padding"]) == (0,)):  # each window counts all its pixels
            return super().keras_layers(a, ctx)
        helper = cls.HELPERS["keras"]
        if not include:  # the padding counts nowhere: the helper pads it all
            padding = a["padding"] if pads is None else str(pads)
            return [call(helper, a["kernel"], strides=a["stride"], padding=padding, name=ctx.name)]
        # a partial last window, the padding counted: the zero-padded input is the helper's input,
        # and the helper adds the rows and columns past it, which count nowhere
        assert pads is not None
        (p, bottom), (_, right) = pads
        zero = call("layers.ZeroPadding2D", a["padding"], name=suffixed(ctx.name, "_pad"))
        extra = str(((0, max(0, bottom - p)), (0, max(0, right - p))))  # an axis without a partial window: none
        return [zero] * bool(p) + [call(helper, a["kernel"], strides=a["stride"], padding=extra, name=ctx.name)]


def _ceil_at_call(a: dict[str, str], ctx: KerasCtx) -> bool:
    """A 2-D ceil_mode pool not counting the padding, whose partial last windows archc cannot
    decide (inside a block kind, or a stride that is an expression): the Keras helper finds
    them on the input it is called on (timm's ResNet-D shortcut, `avg_down`)."""
    if a.get("ceil_mode", "False") == "False" or a.get("count_include_pad", "True") == "True" or rank_of(a) != 2:
        return False
    padding = literal_sizes(a["padding"])
    if literal_sizes(a["stride"]) == (1,) or padding is None or len(padding) != 1:  # the helper's padding: one int
        return False
    return ctx.in_shape is None or any(literal_sizes(a[k], 2) is None for k in ("padding", "kernel", "stride"))

