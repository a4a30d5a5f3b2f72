"""Convolution: `conv: {filters, kernel, stride, padding, groups, dilation, bias}`, over the
map's rank (Conv1d/2d/3d, Keras Conv1D/2D/3D); kernel, stride, padding and dilation are one
value for every spatial dimension or one per dimension.

`standardize: true, eps: E` convolves with the weight standardized (Qiao et al. 2019, BiT's
ResNetV2; timm's StdConv2d): each filter's weights normalized to mean 0 and variance 1 (the
biased variance, plus E) when the layer runs, as timm computes it,

    weight = F.batch_norm(self.weight.reshape(1, out_channels, -1), None, None,
                          training=True, momentum=0.0, eps=eps).reshape_as(self.weight)

so the stored weight is the raw one, by the same key (`conv1.weight`), and the counts are a
conv's. `gain: true` adds NFNet's scaled form (timm's ScaledStdConv2d): the standardized
weight times a learned gain per filter, `gain` of shape (filters, 1, 1, 1) starting at ones,
and gamma / sqrt(fan_in) (`gamma`, 1 unless set). Both on 2-D maps: the generated modules
define `StdConv2d` / `ScaledStdConv2d` (nn.Conv2d with that forward) and `StdConv2D` /
`ScaledStdConv2D` (Keras' Conv2D, its kernel standardized in `convolution_op`; the kernel
moves between the frameworks as a conv's, the gain as a (filters,) vector). A batch norm does
not fold into such a conv (the standardization would undo the scaling): archc.deploy leaves
it (Op.folds_norm)."""

from __future__ import annotations

import ast
import math
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
    need_rank,
    ones,
    pads_when,
    positive,
    rank_of,
    ranked,
    show,
    sizes,
    suffixed,
    window,
)
from archc.ops.init import BIAS, DEFAULT, Init, Tensor, product, weight
from archc.spec.init_rules import InitSpec
from archc.spec.types import Arguments, BoolExpr, IntExpr, IntPairExpr, NumExpr


class ConvArgs(Arguments):
    filters: IntExpr = Field(description="Output channels.")
    kernel: IntPairExpr = Field(
        description="Kernel size: one value for every spatial dimension, or one per dimension ([height, width]: a 1x7 "
        "kernel is [1, 7]; [depth, height, width] in 3-D)."
    )
    stride: IntPairExpr = Field(1, description="Stride: one value for every spatial dimension, or one per dimension.")
    padding: IntPairExpr = Field(
        0, description="Zero padding on every side (symmetric, as in PyTorch); one value, or one per dimension."
    )
    groups: IntExpr = Field(1, description="Grouped convolution; must divide input and output channels.")
    dilation: IntPairExpr = Field(1, description="Kernel dilation: one value, or one per dimension.")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.conv.bias.")
    init: InitSpec | None = Field(None, description="Initialisation; what it leaves unset comes from defaults.conv.init.")
    standardize: StrictBool = Field(
        False,
        description="Weight standardization (BiT's StdConv2d): each filter's weights normalized to mean 0, variance 1 "
        "(plus `eps`) before the convolution; 2-D maps. A literal.",
    )
    eps: NumExpr | None = Field(None, description="Added to the variance of a standardized weight (BiT: 1e-8, timm: 1e-6).")
    gain: StrictBool = Field(
        False,
        description="With `standardize`: NFNet's scaled form (timm's ScaledStdConv2d), the standardized weight times a "
        "learned gain per filter (shape (filters, 1, 1, 1), starting at 1) and gamma / sqrt(fan_in). A literal.",
    )
    gamma: NumExpr | None = Field(None, description="With `gain`: the constant factor of its scale (1 unless set).")


@dataclass(frozen=True)
class Conv(Op):
    """A `conv` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "conv"
    FOLDS_NORM: ClassVar[bool] = True  # archc.deploy
    Args: ClassVar[Any] = ConvArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("filters", "int"), Attr("kernel", "pair"), Attr("stride", "pair", 1), Attr("padding", "pair", 0),
        Attr("groups", "int", 1), Attr("dilation", "pair", 1), Attr("bias", "bool", "defaults.conv.bias"),
        Attr("init", "init", "defaults.conv.init"), Attr("standardize", "const", False), Attr("eps", "num", None),
        Attr("gain", "const", False), Attr("gamma", "num", None),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    TENSORS: ClassVar[dict[str, Tensor]] = {"weight": weight("kernel_initializer"), "bias": BIAS}
    TORCH_CLASS: ClassVar[str | None] = "nn.Conv{rank}d"
    HELPERS: ClassVar[dict[str, str]] = {"torch": "StdConv2d", "keras": "StdConv2D"}  # standardized only: see helper()
    SPATIAL_STRIDE: ClassVar[str | None] = "stride"
    RANKED: ClassVar[bool] = True
    TORCH_DEFAULTS: ClassVar[Defaults] = ranked(
        "nn.Conv{rank}d",
        lambda rank: {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True, "padding_mode": "zeros"},
    )
    KERAS_DEFAULTS: ClassVar[Defaults] = ranked(
        "layers.Conv{rank}D",
        lambda rank: {
            "strides": ones(rank), "padding": "valid", "dilation_rate": ones(rank), "groups": 1, "use_bias": True,
            "activation": None, "data_format": None,
        },
    )  # fmt: skip
    filters: int
    kernel: Size
    stride: Size = 1
    padding: Size = 0
    groups: int = 1
    dilation: Size = 1
    bias: bool = False
    init: Init = DEFAULT
    standardize: bool = False
    eps: float | None = None
    gain: bool = False
    gamma: float | None = None
    rank: int = 2  # set by lowering

    def infer(self, s: Shape) -> Shape:
        positive("conv", filters=self.filters, groups=self.groups)
        self._check_standardize(s)
        size = window("conv", s, self.kernel, self.stride, self.padding, self.dilation)
        if s.c % self.groups or self.filters % self.groups:
            raise ShapeError(f"conv groups={self.groups} must divide input channels {s.c} and filters {self.filters}")
        return Shape(self.filters, size)

    def _check_standardize(self, s: Shape) -> None:
        if not self.standardize:
            for key in ("eps", "gain", "gamma"):
                if getattr(self, key) not in (None, False):
                    raise ShapeError(f"conv {key} belongs to weight standardization: add `standardize: true`, or leave {key} out")
            return
        if self.eps is None:
            raise ShapeError("conv standardize needs `eps`, added to each filter's variance (BiT's StdConv2d: 1e-8, timm's default 1e-6)")
        if not self.eps > 0:
            raise ShapeError(f"conv standardize needs eps > 0, got {self.eps}")
        if self.gamma is not None and not self.gain:
            raise ShapeError("conv gamma scales the learned gain: add `gain: true`, or leave gamma out")
        if s.spatial:
            need_rank("conv with standardize", s)

    def params(self, s: Shape) -> tuple[int, int]:
        weights = self.filters * (s.c // self.groups) * math.prod(sizes(self.kernel, s.rank))
        return (weights + (self.filters if self.bias else 0) + (self.filters if self.gain else 0), 0)

    def macs(self, s: Shape) -> int:
        out = self.infer(s)
        return self.filters * (s.c // self.groups) * math.prod(sizes(self.kernel, s.rank)) * math.prod(out.size)

    def weight_names(self) -> tuple[str, ...]:
        return ("weight", *(("bias",) if self.bias else ()), *(("gain",) if self.gain else ()))  # Keras' order: kernel, bias, gain

    @classmethod
    def folds_norm(cls, args: dict[str, Any]) -> bool:
        """Not with a standardized weight: folding scales the weight, and standardization undoes it."""
        return cls.FOLDS_NORM and not _flag(args.get("standardize"))

    @classmethod
    def helper(cls, backend: str, args: dict[str, Any]) -> str | None:
        if not _flag(args.get("standardize")):
            return None
        return STANDARDIZED[backend][_flag(args.get("gain"))]

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        return args["filters"]

    @classmethod
    def sym_positions(cls, args: dict[str, ast.expr], positions: ast.expr | None) -> ast.expr | None:
        """A 1x1 convolution without padding keeps the positions at stride 1, and one position
        at any stride (timm's classifier head, a 1x1 conv of the pooled map before flatten)."""
        def ones(key: str) -> bool:
            try:
                value = ast.literal_eval(args[key])
            except (KeyError, ValueError, TypeError, SyntaxError):
                return False
            return all(v == 1 for v in (value if isinstance(value, (list, tuple)) else [value]))

        single = isinstance(positions, ast.Constant) and positions.value == 1
        if positions is None or not ones("kernel") or not (ones("stride") or single):
            return None
        try:
            padded = ast.literal_eval(args["padding"])
        except (KeyError, ValueError, TypeError, SyntaxError):
            return None
        return positions if all(v == 0 for v in (padded if isinstance(padded, (list, tuple)) else [padded])) else None

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        module = cls.torch_call(
            f"nn.Conv{rank_of(a)}d", in_ch, a["filters"], kernel_size=a["kernel"], stride=a["stride"],
            padding=a["padding"], dilation=a["dilation"], groups=a["groups"], bias=a["bias"],
        )  # fmt: skip
        return _standardized(module, a, "torch")

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        same, rank = _same(a), rank_of(a)
        out = []
        if literal_sizes(a["padding"]) not in ((0,), (0,) * rank) and not same:
            padding = keras_sizes(a["padding"], rank)
            out.append(call(f"layers.ZeroPadding{rank}D", padding, name=suffixed(ctx.name, "_pad")).when(pads_when(padding)))
        strides, subsample = a["stride"], _strided_dilation(a, ctx)
        if subsample is not None:  # Keras' Conv2D refuses strides > 1 with dilation > 1
            strides = _stride_unless_dilated(a)
        layer = cls.keras_call(
            f"layers.Conv{rank}D", a["filters"], a["kernel"], strides=strides,
            padding='"same"' if same else None, dilation_rate=a["dilation"],
            groups=a["groups"], use_bias=a["bias"], **dict(ctx.initializers), name=ctx.name,
        )  # fmt: skip
        out.append(_standardized(layer, a, "keras"))
        if subsample is not None:  # every stride-th output of the stride-1 conv: PyTorch's strided one exactly
            out.append(call(f"layers.MaxPooling{rank}D", "1", strides=a["stride"], name=suffixed(ctx.name, "_subsample")).when(subsample or None))
        return out

    def keras_output(self, name: str) -> str:
        return name + "_subsample" if shown(self.stride) != "1" and shown(self.dilation) != "1" else name

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(in_ch if a["groups"] == "1" else f"{in_ch} // {a['groups']}", *_area(a["kernel"], rank_of(a)))

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        return product(a["filters"], *_area(a["kernel"], rank_of(a)))

    @classmethod
    def group_fan_out(cls, a: dict[str, str]) -> str | None:
        out = product(*_area(a["kernel"], rank_of(a)), a["filters"])
        if a["groups"] == "1":
            return out
        return str(int(out) // int(a["groups"])) if out.isdigit() and a["groups"].isdigit() else f"{out} // {a['groups']}"

    def to_keras(self, name: str, w: Any) -> Any:
        if name == "gain":
            return w.reshape(-1)  # (O, 1, 1, 1) -> (O,)
        return kernel_to_keras(w) if name == "weight" else w  # (O, I, *k) -> (*k, I, O)

    def to_torch(self, name: str, k: Any) -> Any:
        if name == "gain":
            return k.reshape(-1, 1, 1, 1)
        return kernel_to_torch(k) if name == "weight" else k

    def randomize(self, module: Any, gen: Any) -> None:
        super().randomize(module, gen)
        if self.gain:
            module.gain.uniform_(0.5, 1.5, generator=gen)

    def label(self) -> str:
        text = f"conv {show(self.kernel, self.rank)}" + (f" /{shown(self.stride)}" if shown(self.stride) != "1" else "") + f", {self.filters}"
        text += (f", groups {self.groups}" if self.groups > 1 else "") + (f", dilation {shown(self.dilation)}" if shown(self.dilation) != "1" else "")
        return text + (", scaled std" if self.gain else ", std" if self.standardize else "")


# The helper classes of a standardized conv, per backend: [plain, with a gain]
STANDARDIZED = {"torch": ("StdConv2d", "ScaledStdConv2d"), "keras": ("StdConv2D", "ScaledStdConv2D")}


def _flag(value: Any) -> bool:
    """A literal flag as a layer holds it: a value, its source, or an `ast` constant (a block kind's)."""
    value = value.value if isinstance(value, ast.Constant) else value
    return value is True or value == "True"


def _standardized(conv: Call, a: dict[str, str], backend: str) -> Call:
    """A conv's module or layer (its keywords those of nn.Conv2d / Conv2D, whose defaults the
    helper keeps) as the standardizing helper's, with eps (and gamma) added."""
    if not _flag(a.get("standardize")):
        return conv
    extra = call("", eps=a["eps"], gamma=a.get("gamma") if _flag(a.get("gain")) else None).args
    name = [arg for arg in conv.args if isinstance(arg, str) and arg.startswith("name=")]  # Keras' name stays last
    args = tuple(arg for arg in conv.args if arg not in name)
    return Call(STANDARDIZED[backend][_flag(a.get("gain"))], args + extra + tuple(name))


def shown(value: Size) -> str:
    """A stride or dilation as the diagram shows it: 2, 1×2×2 ("1" where it is 1 everywhere)."""
    values = value if isinstance(value, tuple) else (value,)
    return "1" if set(values) == {1} else "×".join(str(v) for v in values)


def _strided_dilation(a: dict[str, str], ctx: KerasCtx) -> str | None:
    """Where a conv has both a stride and a dilation above 1, which Keras' Conv2D refuses (it
    then runs at stride 1 and keeps every stride-th output): None where that is never, "" where
    always (literal arguments), else the condition over the block kind's parameters."""
    parts = []
    for key in ("stride", "dilation"):
        value = literal_sizes(a[key])
        if value is not None and set(value) == {1}:
            return None
        if value is None:
            parts.append(ast.Compare(ast.parse(a[key], mode="eval").body, [ast.Gt()], [ast.Constant(1)]))
    if not parts:
        return ""
    condition = ast.unparse(parts[0] if len(parts) == 1 else ast.BoolOp(ast.And(), parts))
    return condition if ctx.possible(condition) else None


def _stride_unless_dilated(a: dict[str, str]) -> str:
    """The Conv2D's stride where it keeps every stride-th output itself: its stride where the
    dilation is 1, else 1."""
    dilation = ast.parse(a["dilation"], mode="eval").body
    if isinstance(dilation, (ast.Constant, ast.Tuple)):
        return "1"
    one = ast.Compare(dilation, [ast.Eq()], [ast.Constant(1)])
    return ast.unparse(ast.IfExp(one, ast.parse(a["stride"], mode="eval").body, ast.Constant(1)))


def _same(a: dict[str, str]) -> bool:
    """A stride-1 conv padded by (kernel - 1) / 2 on every side is Keras' 'same' exactly
    (the uneven split only happens with strides), so it needs no ZeroPadding layer:
    one op less, as in keras.applications. Per dimension for a (height, width) kernel
    (a 1x7 kernel padded (0, 3)). Decided on literal arguments only."""
    rank = rank_of(a)
    kernel, padding = literal_sizes(a["kernel"], rank), literal_sizes(a["padding"], rank)
    if kernel is None or padding is None or literal_sizes(a["stride"]) != (1,) or literal_sizes(a["dilation"]) != (1,):
        return False
    return all(k % 2 == 1 and p == (k - 1) // 2 for k, p in zip(kernel, padding)) and max(padding) > 0


def _area(kernel: str, rank: int) -> list[str]:
    """The kernel's sizes as factors of a fan (one literal where they are)."""
    literal = literal_sizes(kernel, rank)
    if literal:
        return [str(math.prod(literal))]
    return kernel_factors(kernel, rank)


def kernel_factors(kernel: str, rank: int) -> list[str]:
    """A kernel's source as one source per spatial dimension: `(3, 7, 7)`'s values, or `k` `rank` times."""
    tree = ast.parse(kernel, mode="eval").body
    return [ast.unparse(e) for e in tree.elts] if isinstance(tree, ast.Tuple) else [kernel] * rank


def literal_sizes(src: str, rank: int = 0) -> tuple[int, ...] | None:
    """An argument's source as one size per spatial dimension, if it is a literal: `3`,
    `(1, 7)`; a single value is repeated `rank` times (kept single for rank 0), and a tuple
    whose values are all alike is one value for rank 0."""
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError):
        return None
    values = value if isinstance(value, tuple) else (value,)
    if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    if rank == 0:
        return values[:1] if len(set(values)) == 1 else values
    return values * rank if len(values) == 1 else values


def keras_sizes(src: str, rank: int) -> str:
    """A per-dimension argument as Keras' 1-D layers take it: one value, not a 1-tuple
    (ZeroPadding1D reads a pair as (left, right))."""
    tree = ast.parse(src, mode="eval").body
    if rank == 1 and isinstance(tree, ast.Tuple) and len(tree.elts) == 1:
        return ast.unparse(tree.elts[0])
    return src


def kernel_to_keras(w: Any) -> Any:
    """A PyTorch conv weight (O, I, *kernel) as Keras' kernel (*kernel, I, O), at any rank."""
    return w.transpose(*range(2, w.ndim), 1, 0)


def kernel_to_torch(k: Any) -> Any:
    """Keras' kernel (*kernel, I, O) as PyTorch's (O, I, *kernel)."""
    return k.transpose(k.ndim - 1, k.ndim - 2, *range(k.ndim - 2))
