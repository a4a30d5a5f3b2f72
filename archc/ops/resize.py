"""Resizing to another tensor's height and width: `resize: {like: NAME, mode}` (nearest or
bilinear). The size is read from `like` when the model runs, so the model works at any
input size: torchvision's segmentation heads end with `F.interpolate(x, size=input_shape,
mode="bilinear", align_corners=False)`, and its ASPP pooling branch resizes back to the
feature map's size. Not a module: an expression in `forward`, `F.interpolate(x,
size=like.shape[-2:], ...)` in PyTorch; a `ResizeLike` helper layer in Keras.

Bilinear is PyTorch's `align_corners=False` (half-pixel centres, no antialiasing), which
is what Keras' image resizing computes; nearest is PyTorch's (the source pixel
floor(i * in / out)), which Keras' own nearest (half-pixel) is not, so the helper gathers
those pixels itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from archc.code import Call, Code
from archc.ops.base import (
    REQUIRED,
    Attr,
    Defaults,
    KerasCtx,
    Op,
    Shape,
    ShapeError,
    need_map,
    need_rank,
)
from archc.ops.upsample import MODES, mode_literal
from archc.spec.types import Arguments, TensorName


class ResizeArgs(Arguments):
    like: TensorName = Field(description="The tensor whose height and width the output takes (read when the model runs).")
    mode: Literal[MODES] = Field(  # type: ignore[valid-type]
        "nearest", description="nearest (PyTorch's) or bilinear (PyTorch's align_corners=False)."
    )


@dataclass(frozen=True)
class Resize(Op):
    """A `resize` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "resize"
    Args: ClassVar[Any] = ResizeArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (Attr("like", "tensor", REQUIRED), Attr("mode", "str", "nearest"))
    EXPRESSION: ClassVar[bool] = True
    ELEMENTWISE: ClassVar[bool] = True  # both modes average values into their range: the sign is kept
    READS: ClassVar[tuple[str, ...]] = ("like",)
    HELPERS: ClassVar[dict[str, str]] = {"keras": "ResizeLike"}
    TORCH_NAMES: ClassVar[frozenset[str]] = frozenset({"F"})
    TORCH_DEFAULTS: ClassVar[Defaults] = {"F.interpolate": {"mode": "nearest", "align_corners": None}}
    like: str = ""
    mode: str = "nearest"

    def infer(self, s: Shape) -> Shape:
        raise ShapeError("resize takes its size from `like`")  # lowering calls infer_reading

    def infer_reading(self, s: Shape, reads: list[Shape]) -> Shape:
        need_map("resize", s)
        need_rank("resize", s)
        (like,) = reads
        if not like.spatial:
            raise ShapeError(f"resize takes the height and width of `like`, but {self.like} is flat {like}")
        return Shape(s.c, like.size)

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        raise NotImplementedError("resize is an expression in forward, not a module")

    @classmethod
    def torch_expr(cls, src: str, a: dict[str, str]) -> Code:
        mode = mode_literal(a)
        corners = {"align_corners": "False"} if mode == '"bilinear"' else {}
        return cls.torch_call("F.interpolate", src, size=f"{a['like']}.shape[-2:]", mode=mode, **corners)

    @classmethod
    def keras_expr(cls, src: str, a: dict[str, str], ctx: KerasCtx) -> str:
        return f"ResizeLike({mode_literal(a)}, name={ctx.name})([{src}, {a['like']}])"

    def label(self) -> str:
        return f"resize like {self.like}, {self.mode}"
