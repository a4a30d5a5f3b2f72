"""Primitive operations of the graph IR: typed, frozen, framework-free.

Each op knows how it transforms a shape (`infer`), how many parameters it
holds for a given input (`params`: trainable, non-trainable) and how many
multiply-accumulates it costs (`macs`: convolutions and dense layers only, the
convention behind torchvision's and most papers' "FLOPs"). Shapes are
(C, H, W) for feature maps and (C,) once flattened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


class ShapeError(ValueError):
    """An op cannot accept its input shape; lowering adds the location."""


@dataclass(frozen=True)
class Shape:
    c: int
    h: int | None = None
    w: int | None = None

    @property
    def spatial(self) -> bool:
        return self.h is not None

    def numel(self) -> int:
        return self.c * (self.h or 1) * (self.w or 1)

    def __str__(self) -> str:
        return f"({self.c}, {self.h}, {self.w})" if self.spatial else f"({self.c},)"

    def as_tuple(self) -> tuple[int, ...]:
        return (self.c, self.h, self.w) if self.spatial else (self.c,)


def _need_map(op: str, s: Shape) -> None:
    if not s.spatial:
        raise ShapeError(f"{op} needs a feature map (C, H, W) but gets the flat shape {s}")


def _window(op: str, s: Shape, kernel: int, stride: int, padding: int, dilation: int = 1) -> tuple[int, int]:
    _need_map(op, s)
    if kernel < 1 or stride < 1 or padding < 0:
        raise ShapeError(f"{op} needs kernel >= 1, stride >= 1 and padding >= 0, got {kernel}, {stride}, {padding}")
    span = dilation * (kernel - 1) + 1
    h = (s.h + 2 * padding - span) // stride + 1  # type: ignore[operator]
    w = (s.w + 2 * padding - span) // stride + 1  # type: ignore[operator]
    if h < 1 or w < 1:
        raise ShapeError(
            f"{op} with kernel {kernel}, stride {stride}, padding {padding} shrinks {s} below 1x1; "
            "use a larger input or fewer downsampling steps"
        )
    return h, w


@dataclass(frozen=True)
class Op:
    kind: ClassVar[str]
    has_params: ClassVar[bool] = False

    def infer(self, s: Shape) -> Shape:
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (0, 0)

    def macs(self, s: Shape) -> int:
        return 0


@dataclass(frozen=True)
class Conv(Op):
    kind: ClassVar[str] = "conv"
    has_params: ClassVar[bool] = True
    filters: int
    kernel: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    dilation: int = 1
    bias: bool = False

    def infer(self, s: Shape) -> Shape:
        for field in ("filters", "kernel", "stride", "groups", "dilation"):
            if getattr(self, field) < 1:
                raise ShapeError(f"conv {field} must be >= 1, got {getattr(self, field)}")
        if self.padding < 0:
            raise ShapeError(f"conv padding must be >= 0, got {self.padding}")
        _need_map("conv", s)
        if s.c % self.groups or self.filters % self.groups:
            raise ShapeError(
                f"conv groups={self.groups} must divide input channels {s.c} and filters {self.filters}"
            )
        return Shape(self.filters, *_window("conv", s, self.kernel, self.stride, self.padding, self.dilation))

    def params(self, s: Shape) -> tuple[int, int]:
        weights = self.filters * (s.c // self.groups) * self.kernel * self.kernel
        return (weights + (self.filters if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        out = self.infer(s)
        return self.filters * (s.c // self.groups) * self.kernel * self.kernel * out.h * out.w  # type: ignore[operator]


@dataclass(frozen=True)
class BatchNorm(Op):
    kind: ClassVar[str] = "batchnorm"
    has_params: ClassVar[bool] = True
    eps: float
    momentum: float  # PyTorch convention: weight of the new batch

    def infer(self, s: Shape) -> Shape:
        if not (self.eps > 0 and 0 < self.momentum < 1):
            raise ShapeError(f"batchnorm needs eps > 0 and 0 < momentum < 1, got {self.eps}, {self.momentum}")
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (2 * s.c, 2 * s.c)  # gamma, beta; running mean, running var


@dataclass(frozen=True)
class Act(Op):
    kind: ClassVar[str] = "act"
    fn: str
    negative_slope: float | None = None  # leaky_relu
    alpha: float | None = None  # elu

    # Activations whose output is never negative (so zero padding equals -inf padding for max pooling).
    NONNEGATIVE: ClassVar[frozenset[str]] = frozenset({"relu", "relu6", "sigmoid", "softmax"})


@dataclass(frozen=True)
class MaxPool(Op):
    kind: ClassVar[str] = "maxpool"
    kernel: int
    stride: int
    padding: int = 0

    def infer(self, s: Shape) -> Shape:
        if self.padding * 2 > self.kernel:
            raise ShapeError(f"maxpool padding {self.padding} must be at most half the kernel {self.kernel}")
        return Shape(s.c, *_window("maxpool", s, self.kernel, self.stride, self.padding))


@dataclass(frozen=True)
class AvgPool(Op):
    kind: ClassVar[str] = "avgpool"
    kernel: int
    stride: int
    padding: int = 0

    def infer(self, s: Shape) -> Shape:
        if self.padding * 2 > self.kernel:
            raise ShapeError(f"avgpool padding {self.padding} must be at most half the kernel {self.kernel}")
        return Shape(s.c, *_window("avgpool", s, self.kernel, self.stride, self.padding))


@dataclass(frozen=True)
class GlobalAvgPool(Op):
    """Average over H and W; the output is flat (C,)."""

    kind: ClassVar[str] = "global_avgpool"

    def infer(self, s: Shape) -> Shape:
        _need_map("global_avgpool", s)
        return Shape(s.c)


@dataclass(frozen=True)
class Dense(Op):
    kind: ClassVar[str] = "dense"
    has_params: ClassVar[bool] = True
    units: int
    bias: bool = True

    def infer(self, s: Shape) -> Shape:
        if s.spatial:
            raise ShapeError(f"dense needs a flat input but gets {s}; add flatten or global_avgpool before it")
        if self.units < 1:
            raise ShapeError(f"dense units must be >= 1, got {self.units}")
        return Shape(self.units)

    def params(self, s: Shape) -> tuple[int, int]:
        return (s.c * self.units + (self.units if self.bias else 0), 0)

    def macs(self, s: Shape) -> int:
        return s.c * self.units


@dataclass(frozen=True)
class Dropout(Op):
    kind: ClassVar[str] = "dropout"
    rate: float

    def infer(self, s: Shape) -> Shape:
        if not 0 <= self.rate < 1:
            raise ShapeError(f"dropout rate must be in [0, 1), got {self.rate}")
        return s


@dataclass(frozen=True)
class Flatten(Op):
    """Flatten a map to (C*H*W,). PyTorch orders C,H,W and Keras H,W,C: only the 1x1 case is layout-free."""

    kind: ClassVar[str] = "flatten"

    def infer(self, s: Shape) -> Shape:
        return Shape(s.numel())


@dataclass(frozen=True)
class ZeroPad(Op):
    kind: ClassVar[str] = "zeropad"
    padding: int

    def infer(self, s: Shape) -> Shape:
        _need_map("zeropad", s)
        if self.padding < 0:
            raise ShapeError(f"zeropad padding must be >= 0, got {self.padding}")
        return Shape(s.c, s.h + 2 * self.padding, s.w + 2 * self.padding)  # type: ignore[operator]


@dataclass(frozen=True)
class PadShortcut(Op):
    """He et al.'s option A shortcut: take every `stride`-th pixel, zero-pad the new channels."""

    kind: ClassVar[str] = "pad_shortcut"
    stride: int
    extra: int  # channels added; half before (rounded down), the rest after

    def infer(self, s: Shape) -> Shape:
        _need_map("option_a shortcut", s)
        if self.stride < 1:
            raise ShapeError(f"option_a shortcut stride must be >= 1, got {self.stride}")
        if self.extra < 0:
            raise ShapeError(f"option_a shortcut cannot reduce channels ({s.c} -> {s.c + self.extra})")
        return Shape(s.c + self.extra, -(-s.h // self.stride), -(-s.w // self.stride))  # type: ignore[operator]


@dataclass(frozen=True)
class Add(Op):
    """Residual merge: the inputs must have equal shapes."""

    kind: ClassVar[str] = "add"


@dataclass(frozen=True)
class Concat(Op):
    """Channel concatenation: the inputs must have equal H and W."""

    kind: ClassVar[str] = "concat"


def merge_shape(op: Op, shapes: list[Shape]) -> Shape:
    if isinstance(op, Add):
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"cannot add shapes {' and '.join(map(str, shapes))}")
        return shapes[0]
    if any((s.h, s.w) != (shapes[0].h, shapes[0].w) for s in shapes):
        raise ShapeError(f"cannot concatenate maps of different size: {', '.join(map(str, shapes))}")
    return Shape(sum(s.c for s in shapes), shapes[0].h, shapes[0].w)
