"""What every op kind shares: shapes, the `Op` base class and the emission helpers.

An op kind is one module in `archc.ops` holding everything archc knows about it:
- `Args`: its spec arguments (`conv: {filters: 64, ...}`), an `Arguments` declaration
  written like a pydantic model and made into one where it is used (`args_model`),
  with `ATTRS` saying how lowering fills in what a layer leaves unset;
- the frozen op itself: `infer` (shape rule), `params` (trainable, non-trainable)
  and `macs` (multiply-accumulates: convolutions and dense layers only, the
  convention behind torchvision's "FLOPs");
- `torch_module` / `keras_layers`: its PyTorch module and Keras layers, given
  each argument as Python source (a literal, or an expression of a block's
  parameters); or, for a module-free op (`EXPRESSION`, e.g. a channel slice),
  `torch_expr` / `keras_expr`: an expression of its input in `forward`;
- `HELPERS`: a class the generated module defines for it, per backend
  (templates/<backend>/<name>.py.j2), where the framework has none;
- `WEIGHTS` and `to_keras` / `to_torch`: its tensors and their layouts, for
  moving weights between the two frameworks;
- `label`: how the diagram shows it.

Shapes are (C, H, W) for feature maps, (C, L) or (C, D, H, W) in a model whose input has that
rank (`Shape.size`; `RANKED` ops emit Conv1d/2d/3d and the like), and (C,) once flattened. A map may be held
channels-last in PyTorch (`Shape.last`, after a `permute`): only ops that work on the
last axis (`CHANNELS_LAST`: linear layers, layer norm, activations) accept it there.
Keras holds every map channels-last, so the flag changes nothing in Keras.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from archc.code import Call, Code, call
from archc.ops.init import Tensor
from archc.spec.types import Arguments, model_of


class ShapeError(ValueError):
    """An op cannot accept its input shape; lowering adds the location."""


@dataclass(frozen=True)
class Shape:
    """A tensor shape: channels and the map's spatial sizes, `size` ((L,), (H, W) or (D, H, W):
    its rank is their number, the spatial dimensions of the model's input), or () once flat."""

    c: int
    size: tuple[int, ...] = ()
    last: bool = False  # a map PyTorch holds as (H, W, C), after a permute (ConvNeXt's block)

    @property
    def spatial(self) -> bool:
        return bool(self.size)

    @property
    def rank(self) -> int:
        """Spatial dimensions: 1, 2 or 3 for a map, 0 when flat."""
        return len(self.size)

    def numel(self) -> int:
        return self.c * math.prod(self.size)

    def __str__(self) -> str:
        return str(self.as_tuple() if not self.last else (*self.size, self.c))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.c, *self.size)


RANK_NAMES = {1: "1-D (C, L)", 2: "2-D (C, H, W)", 3: "3-D (C, D, H, W)"}


def need_rank(op: str, s: Shape, ranks: tuple[int, ...] = (2,)) -> None:
    """Refuse a map of a rank the op cannot follow."""
    if s.spatial and s.rank not in ranks:
        can = " or ".join(RANK_NAMES[r] for r in ranks)
        raise ShapeError(f"{op} works on {can} maps only, not on the {RANK_NAMES[s.rank]} map {s}")


def sizes(value: int | tuple[int, ...], rank: int) -> tuple[int, ...]:
    """A size given once for every spatial dimension, or one per dimension."""
    if isinstance(value, tuple):
        if len(value) != rank:
            raise ShapeError(f"{list(value)} has {len(value)} values but the map has {rank} spatial dimensions")
        return value
    return (value,) * rank


REQUIRED = object()


@dataclass(frozen=True)
class Attr:
    """One argument of an op as lowering sees it.

    `default`: REQUIRED (must be written), a value, `"defaults.SECTION.KEY"` (the
    model's `defaults:`, which must then be set) or `"=OTHER"` (another argument's
    value, e.g. a pool's stride is its kernel).
    """

    name: str
    # int | num | bool | str | pair (an int, or one int per spatial dimension, [height, width]: a
    # tuple; lowering checks its length against the rank) | pads (an int, or [before, after] per
    # spatial dimension, [[top, bottom], [left, right]]: a tuple of pairs) | const (a literal
    # written in the spec, used as it is: e.g. a tuple of per-channel numbers) | init (an
    # initialisation rule, see archc.ops.init)
    type: str
    default: Any = REQUIRED


def need_map(op: str, s: Shape) -> None:
    if not s.spatial:
        raise ShapeError(f"{op} needs a feature map (C, H, W), (C, L) or (C, D, H, W) but gets the flat shape {s}")


def positive(op: str, **values: int) -> None:
    for key, value in values.items():
        if value < 1:
            raise ShapeError(f"{op} {key} must be >= 1, got {value}")


def show(value: int | tuple[int, ...], rank: int = 2) -> str:
    """A kernel size as the diagram shows it: 3×3, 1×7, 3×3×3, 80."""
    return "×".join(str(v) for v in sizes(value, rank))


Size = int | tuple[int, ...]  # one value for every spatial dimension, or one per dimension


def window(op: str, s: Shape, kernel: Size, stride: Size, padding: Size, dilation: Size = 1, ceil: bool = False) -> tuple[int, ...]:
    """Output sizes of a sliding window, as PyTorch computes them (ceil_mode included).
    Each argument is one value for every spatial dimension or one per dimension."""
    need_map(op, s)
    ks, ss, ps, ds = (sizes(v, s.rank) for v in (kernel, stride, padding, dilation))
    if min(ks) < 1 or min(ss) < 1 or min(ps) < 0:
        raise ShapeError(f"{op} needs kernel >= 1, stride >= 1 and padding >= 0, got {kernel}, {stride}, {padding}")
    positive(op, dilation=min(ds))

    def size(n: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
        span = dilation * (kernel - 1) + 1
        room = n + 2 * padding - span
        out = (-(-room // stride) if ceil else room // stride) + 1
        if ceil and (out - 1) * stride >= n + padding:
            out -= 1  # PyTorch: the last window must start inside the input or left padding
        return out

    out = tuple(size(*args) for args in zip(s.size, ks, ss, ps, ds))
    if min(out) < 1:
        ones = "x".join("1" * s.rank)
        raise ShapeError(
            f"{op} with kernel {kernel}, stride {stride}, padding {padding} shrinks {s} below {ones}; "
            "use a larger input or fewer downsampling steps"
        )
    return out


def by_rank(ranks: set[int]) -> list[int]:
    """Ranks in the order generated code names them: 2-D first (as before ranks), then flat, 1-D, 3-D."""
    return sorted(ranks, key=lambda r: (r != 2, r))


def rank_of(a: dict[str, str]) -> int:
    """A RANKED op's rank from its arguments as source (a map's spatial dimensions; 0: flat)."""
    return int(a["rank"])


Defaults = dict[str, dict[str, Any]]  # a class as generated code names it -> keyword -> its default


def ranked(pattern: str, defaults: Callable[[int], dict[str, Any]], ranks: tuple[int, ...] = (1, 2, 3)) -> Defaults:
    """Defaults of a class at each rank (`nn.Conv{rank}d`: nn.Conv1d, nn.Conv2d, nn.Conv3d)."""
    return {pattern.format(rank=rank): defaults(rank) for rank in ranks}


def ones(rank: int) -> int | tuple[int, ...]:
    """Keras' default stride or dilation at a rank: 1 for 1-D layers, else (1, 1) or (1, 1, 1)."""
    return 1 if rank == 1 else (1,) * rank


def is_default(src: Code | None, default: Any) -> bool:
    """Whether an argument, as source, is the framework's default: a literal of the same type
    and value (True is not 1; floats compared exactly). A default given per spatial dimension
    ((1, 1)) is also met by one int for them all (`strides=1`), which is how the framework
    reads that int; an expression of a block's parameters is never the default."""
    if not isinstance(src, str):
        return False
    try:
        value = ast.literal_eval(src)
    except (ValueError, TypeError, SyntaxError):
        return False
    if type(value) is int and isinstance(default, tuple) and all(type(d) is int for d in default):
        value = (value,) * len(default)
    return type(value) is type(default) and repr(value) == repr(default)


def without_defaults(func: str, table: Defaults, kwargs: dict[str, Code | None]) -> dict[str, Code | None]:
    """The keyword arguments of a call of `func`, those that equal its default in `table` left out."""
    defaults = table.get(func, {})
    return {key: None if key in defaults and is_default(value, defaults[key]) else value for key, value in kwargs.items()}


def pads_when(padding: str) -> str | None:
    """The condition under which a Keras padding, given as source, pads at all: None when it
    always does, else its parts that are not constants, e.g. `padding` or `ph or pw` for a
    block kind's parameters (a ZeroPadding2D of 0 would be a layer that does nothing)."""
    parts: dict[str, ast.expr] = {}
    stack = [ast.parse(padding, mode="eval").body]
    while stack:  # an int, (h, w) or ((top, bottom), (left, right))
        node = stack.pop()
        if isinstance(node, ast.Tuple):
            stack += reversed(node.elts)
        elif isinstance(node, ast.Constant):
            if node.value:
                return None
        else:
            parts.setdefault(ast.unparse(node), node)
    if not parts:
        return None
    nodes = list(parts.values())  # unparsed as one `or`: parenthesised where needed (`p or (1 if s else 0)`)
    return ast.unparse(nodes[0] if len(nodes) == 1 else ast.BoolOp(ast.Or(), nodes))


def keras_momentum(momentum: str) -> str:
    """PyTorch's momentum weighs the new batch; Keras' weighs the running average."""
    try:
        return repr(1 - float(momentum))
    except ValueError:
        return f"1 - ({momentum})"


def suffixed(name: str, suffix: str) -> str:
    """`name` is a Python string literal or f-string; append a suffix inside it."""
    return name[:-1] + suffix + name[-1]


@dataclass(frozen=True)
class KerasCtx:
    """What a Keras emission needs besides the arguments."""

    name: str  # the layer name's source: a string literal or an f-string
    nonneg: bool  # the input is known to be >= 0 (after relu)
    in_shape: Shape | None  # concrete input shape, where known (model level)
    # the layer's initializer arguments (`kernel_initializer=...`), as sources; see ops.init
    initializers: tuple[tuple[str, Any], ...] = ()  # source text, or a Call laid out by archc.code
    # whether a condition (source over a block kind's parameters) may hold in some instance of
    # it: False only where every instance is known to fail it (so a guarded layer is left out)
    possible: Callable[[str], bool] = lambda condition: True


class Op:
    """Base of every op kind. Subclasses are frozen dataclasses whose fields are the
    concrete arguments; the class attributes describe the kind."""

    kind: ClassVar[str]
    # The spec arguments (None: not a spec layer): an archc.spec.types.Arguments declaration
    # (made into its pydantic model where it is used, see args_model), Empty, or list[LayerName].
    Args: ClassVar[Any] = None
    ATTRS: ClassVar[tuple[Attr, ...]] = ()
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {}  # `relu` -> {"act": {"fn": "relu"}}
    WEIGHTS: ClassVar[tuple[str, ...]] = ()  # PyTorch tensor names, in Keras' get_weights() order
    CHANNEL_FREE: ClassVar[bool] = True  # the module does not depend on the channels it receives
    ELEMENTWISE: ClassVar[bool] = False  # keeps the sign of its input (for max-pool padding)
    SPATIAL_STRIDE: ClassVar[str | None] = None  # the argument that divides H and W, if any
    MERGE: ClassVar[bool] = False  # reads several tensors
    # A merge's options, written beside its list of inputs (`{weighted_sum: [a, b], normalize: false}`):
    # an Arguments declaration of literal fields, or None. See `merging`.
    OPTIONS: ClassVar[Any] = None
    FLAT_OUT: ClassVar[bool | None] = None  # the output is flat (True) or a map (False); None: as its input
    # Computed by an expression of its input (`torch_expr`, `keras_expr`), not by a module or a
    # named layer; the result may be a view of its input (so nothing after it works in place).
    EXPRESSION: ClassVar[bool] = False
    # Its PyTorch module may return its input tensor itself or a view of it (nn.Identity, and
    # nn.Dropout in eval, return the input; nn.Flatten a view), so what reads its output must not
    # overwrite that tensor in place where its input is still read elsewhere. EXPRESSION ops too.
    ALIASES: ClassVar[bool] = False
    HELPERS: ClassVar[dict[str, str]] = {}  # backend -> a class the generated module defines for it
    # Arguments that name other tensors it reads besides its input (`resize: {like: low}`): the
    # op's inputs are its input and these, and its code receives their variables in place of the names.
    READS: ClassVar[tuple[str, ...]] = ()
    TORCH_NAMES: ClassVar[frozenset[str]] = frozenset()  # modules its PyTorch expression reads (`F`)
    # Inference forms (archc.deploy): the identity at inference (dropout, stochastic depth), so
    # the deploy form drops it; a linear map whose output channels lead its weight (conv, dense),
    # so a batch norm after it folds into its weight and bias.
    INFERENCE_IDENTITY: ClassVar[bool] = False
    FOLDS_NORM: ClassVar[bool] = False
    # Keeps running statistics (PyTorch's reset_running_stats / momentum), which `archc verify`
    # measures on a calibration batch after `randomize`.
    RUNNING_STATS: ClassVar[bool] = False
    # Works on the last axis of a PyTorch tensor, so it also accepts a map held channels-last
    # (`Shape.last`) and keeps it so; every other op needs channels-first.
    CHANNELS_LAST: ClassVar[bool] = False
    # Its PyTorch module depends on where the channels are: lowering adds the argument
    # `channels_last` (true for a flat input or a map held channels-last).
    LAYOUT: ClassVar[bool] = False
    # Its module or layer depends on the rank of the map it reads (Conv1d, Conv2d, Conv3d):
    # lowering adds the argument `rank` (the input's spatial dimensions; 0 when flat).
    RANKED: ClassVar[bool] = False
    # A bare parameter of the enclosing module (torchvision's `self.layer_scale =
    # nn.Parameter(...)`), not a module: its state_dict key is its own path, and it cannot be
    # an entry of a list. `torch_apply` says how `forward` uses it.
    PARAMETER: ClassVar[bool] = False
    # Keras computes the fans of its kernel as PyTorch does of its weight (ops.init). "swapped":
    # Keras' fan_in is PyTorch's fan_out and the other way round (a depthwise kernel (k, k, C, 1)
    # against (C, 1, k, k)): a fan rule's mode is swapped, the same Keras initializer otherwise.
    # False: other fans, the fan rules written out with PyTorch's fans (`fan_in`, `fan_out`).
    KERAS_FANS: ClassVar[bool | str] = True
    # Passes flat features on in the order they arrive in: it works element-wise or per feature.
    # After a flatten of a map with H*W > 1 that order is C,H,W in PyTorch and H,W,C in Keras,
    # so archc.interop reorders the per-feature tensors (`feature_axis`) of what reads such an
    # op's output, as it does for what reads the flatten. False: the op's output features are
    # its own (a dense layer's units), or it is not known to keep the order.
    KEEPS_FEATURE_ORDER: ClassVar[bool] = False
    # Its tensors with an `init` argument (ops.init), by role (weight, bias): what each rule means
    # there and Keras' argument for it. Empty: the op takes no `init`.
    TENSORS: ClassVar[dict[str, Tensor]] = {}
    # PyTorch's class that the model's init loop tests for this kind (`isinstance(m, ...)`);
    # `{rank}` in it stands for the rank of a RANKED op (nn.Conv{rank}d)
    TORCH_CLASS: ClassVar[str | None] = None
    # The defaults of the classes its emission calls (`torch_call`, `keras_call`): class as
    # generated code names it (a helper of HELPERS included) -> constructor keyword -> default.
    # A keyword whose value is its default is left out of generated code, so archc relies on
    # each of these; tests/test_framework_defaults.py pins them to the installed torch and keras
    # (and to the helper templates), so that an upgrade that changes one fails there instead of
    # silently changing models. Listed too: the defaults archc never writes but relies on
    # (`padding_mode="zeros"`, `affine=True`).
    TORCH_DEFAULTS: ClassVar[Defaults] = {}
    KERAS_DEFAULTS: ClassVar[Defaults] = {}

    # --- shapes and counts -------------------------------------------------------------

    def infer(self, s: Shape) -> Shape:
        return s

    def params(self, s: Shape) -> tuple[int, int]:
        return (0, 0)

    def macs(self, s: Shape) -> int:
        return 0

    @classmethod
    def last_after(cls, args: dict[str, Any], last_in: bool) -> bool:
        """Whether PyTorch holds the output map channels-last (`args`: values, or `ast`
        expressions in a block kind); only a permute changes it."""
        return last_in

    def nonneg_after(self, nonneg_in: bool) -> bool:
        """Whether the output is known to be >= 0."""
        return nonneg_in and self.ELEMENTWISE

    @classmethod
    def sym_positions(cls, args: dict[str, ast.expr], positions: ast.expr | None) -> ast.expr | None:
        """The positions (H*W) of its output map inside a block kind, given its input's where
        the kind fixes them (None: not fixed): kept by a layer that keeps the feature order."""
        return positions if cls.KEEPS_FEATURE_ORDER else None

    @classmethod
    def sym_nonneg(cls, args: dict[str, ast.expr], nonneg_in: bool) -> bool:
        """`nonneg_after` for a layer of a block kind, its arguments as expressions."""
        return nonneg_in and cls.ELEMENTWISE

    def infer_reading(self, s: Shape, reads: list[Shape]) -> Shape:
        """The output shape given also the shapes of the tensors its READS name."""
        return self.infer(s)

    @classmethod
    def with_reads(cls, a: dict[str, str], srcs: tuple[str, ...] | list[str]) -> dict[str, str]:
        """Its arguments as source, the tensors its READS name replaced by their variables
        (`srcs`: its input's, then theirs)."""
        return {**a, **{key: src for key, src in zip(cls.READS, srcs[1:])}}

    def weight_names(self) -> tuple[str, ...]:
        return self.WEIGHTS

    @classmethod
    def merging(cls, n: int, item: Any) -> Op:
        """A MERGE op of `n` tensors, given its spec entry (its OPTIONS are fields of it)."""
        return cls()

    @classmethod
    def keeps_output(cls, args: dict[str, ast.expr]) -> bool:
        """Whether its PyTorch module's backward reads its output (a softmax's, relu's), so that
        a merge written `in_place` (archc.lower.inplace) must not overwrite it; `args`: its
        arguments as a block kind holds them."""
        return False

    @classmethod
    def torch_merge_lines(cls, dst: str, srcs: list[str], flats: list[bool], options: dict[str, Any]) -> list[str]:
        """A merge without a module in PyTorch's forward, writing `dst` (`options`: the values
        of its OPTIONS): `dst = a + b`, its `torch_merge`, unless the op writes it otherwise."""
        return [f"{dst} = {cls.torch_merge(srcs, flats)}"]  # type: ignore[attr-defined]

    @classmethod
    def module_free(cls) -> bool:
        """Code in `forward`, no module: an expression, or a merge without weights (`a + b`);
        a merge with weights (a weighted sum) is a module called on the tensors it merges."""
        return cls.EXPRESSION or (cls.MERGE and not cls.WEIGHTS)

    @classmethod
    def folds_norm(cls, args: dict[str, Any]) -> bool:
        """Whether a batch norm folds into this layer's weight and bias (archc.deploy), given its
        arguments (as the spec writes them, or values): FOLDS_NORM, unless they say otherwise."""
        return cls.FOLDS_NORM

    @classmethod
    def helper(cls, backend: str, args: dict[str, Any]) -> str | None:
        """The helper class (of HELPERS) a layer with these arguments (values, or `ast`
        expressions in a block kind) needs in `backend`, if any (common.op_helpers: the
        torch backend's; Keras notes the helper classes among the layers it writes)."""
        return cls.HELPERS.get(backend)

    # --- symbolic channels ---------------------------------------------------------------

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        """Channels after the op, as an expression over the block's parameters."""
        return in_channels

    # --- emission ---------------------------------------------------------------------

    @classmethod
    def torch_call(cls, func: str, *args: Code | None, **kwargs: Code | None) -> Call:
        """A PyTorch constructor call, leaving out the keywords whose values are its defaults."""
        return call(func, *args, **without_defaults(func, cls.TORCH_DEFAULTS, kwargs))

    @classmethod
    def keras_call(cls, func: str, *args: Code | None, **kwargs: Code | None) -> Call:
        """A Keras layer call, leaving out the keywords whose values are its defaults."""
        return call(func, *args, **without_defaults(func, cls.KERAS_DEFAULTS, kwargs))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        raise NotImplementedError(cls.kind)

    @classmethod
    def torch_apply(cls, attr: str, src: str, a: dict[str, str]) -> str:
        """The op applied to `src` in `forward`, its module (or parameter) being `attr`, its
        arguments `a` as source text."""
        return f"{attr}({src})"

    @classmethod
    def torch_after(cls, var: str) -> list[str]:
        """Lines after the module call in `forward` (e.g. a flatten)."""
        return []

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        raise NotImplementedError(cls.kind)

    @classmethod
    def keras_problem(cls, a: dict[str, str], ctx: KerasCtx) -> str | None:
        """Why the Keras backend cannot match PyTorch for these arguments, if it cannot (a
        limit of the keras backend only: archc.backends names it so)."""
        return None

    def keras_output(self, name: str) -> str:
        """The Keras layer that gives this op's output, given the name of its (weighted)
        layer: itself, unless the op ends in a further layer (a transposed conv's cropping)."""
        return name

    @classmethod
    def torch_expr(cls, src: str, a: dict[str, str]) -> Code:
        """An EXPRESSION op in PyTorch's `forward`, applied to the variable `src` (a Call where
        the line may need splitting)."""
        raise NotImplementedError(cls.kind)

    @classmethod
    def keras_expr(cls, src: str, a: dict[str, str], ctx: KerasCtx) -> str:
        """An EXPRESSION op applied to the Keras tensor `src`."""
        raise NotImplementedError(cls.kind)

    # --- weights ---------------------------------------------------------------------

    @classmethod
    def fan_in(cls, a: dict[str, str], in_ch: str) -> str | None:
        """Its weight's fan_in as PyTorch computes it, as source (a literal where the
        arguments are): the bound of PyTorch's default bias. None: the op has no weight."""
        return None

    @classmethod
    def fan_out(cls, a: dict[str, str], in_ch: str) -> str | None:
        """Its weight's fan_out as PyTorch computes it, as source; None: no weight."""
        return None

    @classmethod
    def torch_init_classes(cls, ranks: set[int]) -> tuple[str, ...]:
        """The classes of PyTorch's init loop branch for this kind, given the ranks of the
        tensors its layers give (`ranks`: the values that occur; 0 for flat ones)."""
        if not cls.TORCH_CLASS:
            return ()
        return tuple(dict.fromkeys(cls.TORCH_CLASS.format(rank=max(r, 1)) for r in by_rank(ranks)))

    @classmethod
    def group_fan_out(cls, a: dict[str, str]) -> str | None:
        """fan_out / groups, as source: torchvision's RegNet initialises by it."""
        return None

    def feature_axis(self, name: str) -> int | None:
        """The axis of its PyTorch tensor `name` that runs over its input's flat features (a
        dense weight's columns; a flat batch norm's or layer norm's per-feature vectors), which
        archc.interop reorders between PyTorch's C,H,W and Keras' H,W,C where those features
        come from a flatten; None: the tensor does not depend on their order."""
        return None

    def to_keras(self, name: str, w: Any) -> Any:
        return w

    def to_torch(self, name: str, k: Any) -> Any:
        return k

    def randomize(self, module: Any, gen: Any) -> None:
        """Random values for the PyTorch module's tensors (`archc verify`), drawn with the
        torch.Generator `gen`; the default suits a weight and an optional bias."""
        bound = (6 / module.weight[0].numel()) ** 0.5  # He uniform: keeps activations O(1)
        module.weight.uniform_(-bound, bound, generator=gen)
        if module.bias is not None:
            module.bias.uniform_(-0.5, 0.5, generator=gen)

    # --- spec arguments -----------------------------------------------------------------

    @classmethod
    def args_model(cls) -> Any:
        """The pydantic type that validates this kind's spec arguments."""
        declared = cls.Args
        return model_of(declared) if isinstance(declared, type) and issubclass(declared, Arguments) else declared

    # --- diagram ----------------------------------------------------------------------

    def label(self) -> str:
        return self.kind

    def values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

