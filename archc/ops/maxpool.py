"""Max pooling: `maxpool: {kernel, stride, padding, ceil_mode}`.

PyTorch pads max pooling with -inf, so a padded pixel is never picked. In Keras, archc pads
explicitly before an unpadded MaxPooling2D: with zeros (ZeroPadding2D, as keras.applications'
ResNet) where the input is known to be non-negative (after a relu), else with -inf (the
NegInfPadding2D helper); Keras' 'same' max pooling where it is PyTorch's exactly (stride 1,
padding (kernel - 1) / 2). ceil_mode's last windows read extra bottom and right padding."""

from __future__ import annotations

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
    Size,
    pads_when,
    rank_of,
    ranked,
    show,
    sizes,
    suffixed,
    window,
)
from archc.ops.conv import keras_sizes, literal_sizes, shown
from archc.spec.types import Arguments, IntPairExpr


class PoolArgs(Arguments):
    kernel: IntPairExpr = Field(description="Window size: one value for every spatial dimension, or one per dimension.")
    stride: IntPairExpr | None = Field(None, description="Stride (one value, or one per dimension); unset means the window size.")
    padding: IntPairExpr = Field(
        0,
        description="Padding on every side (max pooling never picks it; average pooling: count_include_pad); one value, "
        "or one per dimension.",
    )
    ceil_mode: StrictBool = Field(
        False, description="Round the output size up, as PyTorch's ceil_mode (a last, partial window)."
    )


POOL_ATTRS = (Attr("kernel", "pair"), Attr("stride", "pair", "=kernel"), Attr("padding", "pair", 0), Attr("ceil_mode", "bool", False))


@dataclass(frozen=True)
class Pool(Op):
    """What max and average pooling share."""

    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    RANKED: ClassVar[bool] = True
    TORCH: ClassVar[str]  # with {rank}: nn.MaxPool{rank}d
    KERAS: ClassVar[str]
    kernel: Size
    stride: Size
    padding: Size = 0
    ceil_mode: bool = False
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        rank = max(s.rank, 1)
        if any(p * 2 > k for p, k in zip(sizes(self.padding, rank), sizes(self.kernel, rank))):
            raise ShapeError(f"{self.kind} padding {self.padding} must be at most half the kernel {self.kernel}")
        return Shape(s.c, window(self.kind, s, self.kernel, self.stride, self.padding, ceil=self.ceil_mode))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        # count_include_pad counts nothing without padding: written only with it
        extra = {"count_include_pad": a.get("count_include_pad", "True")} if cls.kind == "avgpool" and a["padding"] != "0" else {}
        return cls.torch_call(
            cls.TORCH.format(rank=rank_of(a)), kernel_size=a["kernel"], stride=a["stride"], padding=a["padding"],
            ceil_mode=a.get("ceil_mode", "False"), **extra,
        )  # fmt: skip

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        try:
            _keras_padding(a, ctx)
        except ShapeError as e:
            return str(e)
        return None

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        """Explicit padding (`_pad`), then the unpadded pooling layer."""
        out, rank = [], rank_of(a)
        padding = _keras_padding(a, ctx)
        if literal_sizes(padding) != (0,) and padding != str(((0, 0),) * rank):
            pad = cls.keras_pad(ctx, rank)
            out.append(call(pad, padding, name=suffixed(ctx.name, "_pad")).when(pads_when(padding)))
        out.append(cls.keras_call(cls.KERAS.format(rank=rank), a["kernel"], strides=a["stride"], name=ctx.name))
        return out

    @classmethod
    def keras_pad(cls, ctx: KerasCtx, rank: int) -> str:
        """The Keras layer that pads this pool's input."""
        return f"layers.ZeroPadding{rank}D"

    def label(self) -> str:
        stride = shown(self.stride)
        return f"{self.kind} {show(self.kernel, self.rank)}" + (f" /{stride}" if stride != "1" else "") + (" ceil" if self.ceil_mode else "")


def same_pool(a: dict[str, str]) -> bool:
    """Stride 1 padded by (kernel - 1) / 2: Keras' 'same' max pooling, which ignores the
    padding exactly as PyTorch's -inf padding does (and is symmetric at stride 1)."""
    rank = rank_of(a)
    kernel, padding = literal_sizes(a["kernel"], rank), literal_sizes(a["padding"], rank)
    if kernel is None or padding is None or literal_sizes(a["stride"]) != (1,):
        return False
    return all(k % 2 == 1 and p == (k - 1) // 2 > 0 for k, p in zip(kernel, padding))


def _keras_padding(a: dict[str, str], ctx: KerasCtx) -> str:
    """Symmetric padding, or for ceil_mode ((top, bottom), (left, right)) with the extra
    bottom/right rows PyTorch's last window reads (ceil_pads)."""
    pads = ceil_pads(a, ctx)
    return keras_sizes(a["padding"], rank_of(a)) if pads is None else str(pads)


def ceil_pads(a: dict[str, str], ctx: KerasCtx) -> tuple[tuple[int, int], ...] | None:
    """For ceil_mode with a stride, the padding ((top, bottom), (left, right)) whose unpadded
    windows are PyTorch's (decided on the concrete input size): bottom and right are more than
    the padding where a last window is partial (reaches past the padded input). None: the
    symmetric padding (no ceil_mode, or stride 1, where ceil_mode changes nothing)."""
    if a.get("ceil_mode", "False") == "False" or literal_sizes(a["stride"]) == (1,):
        return None
    rank = rank_of(a)
    literal = [literal_sizes(a[k], rank) for k in ("padding", "kernel", "stride")]
    if ctx.in_shape is None or None in literal:
        raise ShapeError(
            "ceil_mode pooling with a stride inside a block kind: its Keras padding depends on the input size; "
            "write it at model level"
        )
    pads = []
    for n, p, k, s in zip(ctx.in_shape.size, *literal):  # type: ignore[misc]
        out = window("pool", Shape(1, (n,)), k, s, p, ceil=True)[0]
        pads.append((p, max(0, (out - 1) * s + k - n - p)))
    return tuple(pads)


@dataclass(frozen=True)
class MaxPool(Pool):
    """A `maxpool` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "maxpool"
    Args: ClassVar[Any] = PoolArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = POOL_ATTRS
    ELEMENTWISE: ClassVar[bool] = True
    TORCH: ClassVar[str] = "nn.MaxPool{rank}d"
    KERAS: ClassVar[str] = "layers.MaxPooling{rank}D"
    HELPERS: ClassVar[dict[str, str]] = {"keras": "NegInfPadding2D"}  # templates/keras/NegInfPadding2D.py.j2
    TORCH_DEFAULTS: ClassVar[Defaults] = ranked(
        TORCH, lambda rank: {"stride": None, "padding": 0, "dilation": 1, "return_indices": False, "ceil_mode": False}
    )
    KERAS_DEFAULTS: ClassVar[Defaults] = ranked(KERAS, lambda rank: {"strides": None, "padding": "valid", "data_format": None})

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        if same_pool(a):
            return [cls.keras_call(cls.KERAS.format(rank=rank_of(a)), a["kernel"], strides="1", padding='"same"', name=ctx.name)]
        return super().keras_layers(a, ctx)

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        padded = literal_sizes(a["padding"]) != (0,) and not same_pool(a)
        if padded and not ctx.nonneg and rank_of(a) != 2:
            return (
                f"maxpool with padding on a {rank_of(a)}-D map that may be negative: Keras' -inf padding helper is 2-D; "
                "pool after the relu, or without padding"
            )
        return super().keras_problem(a, ctx)

    @classmethod
    def keras_pad(cls, ctx: KerasCtx, rank: int) -> str:
        """Zeros where the input is non-negative (never above a window's maximum), else -inf."""
        return f"layers.ZeroPadding{rank}D" if ctx.nonneg else "NegInfPadding2D"
