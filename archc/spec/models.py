"""The spec language as pydantic v2 models.

A spec is a model (`archc: 1`, `name`, `input`, `layers`, ...) or a block
library (`archc: 1`, `library`, `blocks`). Layers are written as one-key
mappings, `- conv1: {conv: {filters: 64, kernel: 7}}`, so the name comes first
and becomes the module name in generated code. Numbers may be expressions
(see `archc.spec.expr`); they are parsed here and evaluated during lowering.
"""

from __future__ import annotations

import keyword
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    model_validator,
)

from archc.spec import expr

FORMAT_VERSION = 1

# Names the generated modules use themselves; a spec name must not shadow them.
RESERVED_NAMES = frozenset(
    {
        # locals, arguments and globals of the generated modules
        "memory_efficient", "self", "x", "y", "out", "identity", "inputs", "name", "i", "_",
        "nn", "F", "torch", "Tensor", "math", "keras", "layers", "OrderedDict",
        "PadShortcut", "DenseStage", "in_channels", "channels", "build_model", "INPUT_SHAPE",
        # builtins the generated code calls (expressions print round, abs, min, max, int, float)
        "super", "int", "float", "bool", "str", "dict", "list", "tuple", "range", "len",
        "round", "abs", "min", "max", "None", "True", "False", "true", "false",
        # public attributes of torch.nn.Module, nn.Sequential and nn.ModuleDict (torch 2.13),
        # which a submodule of that name would shadow; tests/test_safety.py keeps this complete
        "T_destination", "add_module", "append", "apply", "bfloat16", "buffers", "call_super_init",
        "children", "clear", "compile", "cpu", "cuda", "double", "dump_patches", "eval", "extend",
        "extra_repr", "forward", "get_buffer", "get_extra_state", "get_parameter", "get_submodule",
        "half", "insert", "ipu", "items", "keys", "load_state_dict", "modules", "mtia",
        "named_buffers", "named_children", "named_modules", "named_parameters", "parameters", "pop",
        "register_backward_hook", "register_buffer", "register_forward_hook",
        "register_forward_pre_hook", "register_full_backward_hook", "register_full_backward_pre_hook",
        "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook", "register_module",
        "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
        "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "state_dict", "to",
        "to_empty", "train", "training", "type", "update", "values", "xpu", "zero_grad",
    }
)  # fmt: skip

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softmax")


def _identifier(value: str) -> str:
    if not value.isidentifier() or not value.isascii():
        raise ValueError(f"{value!r} is not a valid name: use letters, digits and _, not starting with a digit")
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise ValueError(f"{value!r} is a Python keyword; choose another name")
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is used by the generated code; choose another name")
    if value.startswith("_"):
        raise ValueError(f"{value!r}: names may not start with an underscore (private in Python and torch)")
    return value


Name = Annotated[str, Field(max_length=64), AfterValidator(_identifier)]


def _prose(value: str) -> str:
    """Docs and messages are printed into docstrings and terminals: plain text only."""
    bad = next((ch for ch in value if not (ch.isprintable() or ch in " \t\n")), None)
    if bad is not None:
        raise ValueError(f"control or formatting character {bad!r} is not allowed in text")
    return " ".join(value.split())


Doc = Annotated[str, Field(max_length=2000), AfterValidator(_prose)]
Message = Annotated[str, Field(max_length=300), AfterValidator(_prose)]


def _expression(value: str) -> str:
    try:
        expr.parse(value)
    except expr.ExprError as e:
        raise ValueError(str(e)) from None
    return value


ExprStr = Annotated[str, AfterValidator(_expression)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
FiniteFloat = Annotated[StrictFloat, AllowInfNan(False)]  # YAML's .inf and .nan have no Python literal
IntExpr = Annotated[Union[StrictInt, ExprStr], Field(union_mode="left_to_right")]
NumExpr = Annotated[Union[StrictInt, FiniteFloat, ExprStr], Field(union_mode="left_to_right")]
BoolExpr = Annotated[Union[StrictBool, ExprStr], Field(union_mode="left_to_right")]
ParamValue = Annotated[Union[StrictBool, StrictInt, FiniteFloat, ExprStr], Field(union_mode="left_to_right")]


class Strict(BaseModel):
    # defer_build: a model's validator is built when it is first used, not at import (see the
    # end of this module); default instances are made with model_construct() for the same reason.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


# --- primitive layers -----------------------------------------------------------


class ConvArgs(Strict):
    filters: IntExpr = Field(description="Output channels.")
    kernel: IntExpr = Field(description="Square kernel size.")
    stride: IntExpr = Field(1, description="Stride in both spatial dimensions.")
    padding: IntExpr = Field(0, description="Zero padding on every side (symmetric, as in PyTorch).")
    groups: IntExpr = Field(1, description="Grouped convolution; must divide input and output channels.")
    dilation: IntExpr = Field(1, description="Kernel dilation.")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.conv.bias.")


class BatchNormArgs(Strict):
    eps: NumExpr | None = Field(None, description="Added to the variance; unset means defaults.batchnorm.eps.")
    momentum: NumExpr | None = Field(
        None,
        description="PyTorch convention: weight of the new batch in the running average "
        "(Keras momentum = 1 - this). Unset means defaults.batchnorm.momentum.",
    )


class ActArgs(Strict):
    fn: Literal[ACTIVATIONS] | None = Field(None, description="Activation; unset means defaults.activation.")  # type: ignore[valid-type]
    negative_slope: NumExpr | None = Field(None, description="leaky_relu only (default 0.01).")
    alpha: NumExpr | None = Field(None, description="elu only (default 1.0).")


class PoolArgs(Strict):
    kernel: IntExpr = Field(description="Square window size.")
    stride: IntExpr | None = Field(None, description="Stride; unset means the window size.")
    padding: IntExpr = Field(
        0, description="Padding on every side. Average pooling counts padded zeros (PyTorch count_include_pad=True)."
    )


class DenseArgs(Strict):
    units: IntExpr = Field(description="Output features.")
    bias: BoolExpr | None = Field(None, description="Learnable bias; unset means defaults.dense.bias.")


class DropoutArgs(Strict):
    rate: NumExpr = Field(description="Probability of zeroing an element, in [0, 1).")


class ZeroPadArgs(Strict):
    padding: IntExpr = Field(description="Zeros added on every spatial side.")


class Empty(Strict):
    pass


class ConvItem(Strict):
    conv: ConvArgs


class BatchNormItem(Strict):
    batchnorm: BatchNormArgs = BatchNormArgs.model_construct()


class ActItem(Strict):
    act: ActArgs = ActArgs.model_construct()

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        # `act: relu` is short for `act: {fn: relu}`
        if isinstance(data, dict) and isinstance(data.get("act"), str):
            return {**data, "act": {"fn": data["act"]}}
        return data


class MaxPoolItem(Strict):
    maxpool: PoolArgs


class AvgPoolItem(Strict):
    avgpool: PoolArgs


class GlobalAvgPoolItem(Strict):
    global_avgpool: Empty = Empty.model_construct()


class DenseItem(Strict):
    dense: DenseArgs


class DropoutItem(Strict):
    dropout: DropoutArgs


class FlattenItem(Strict):
    flatten: Empty = Empty.model_construct()


class ZeroPadItem(Strict):
    zeropad: ZeroPadArgs


# --- composite items -------------------------------------------------------------


class BlockItem(Strict):
    """One instance of a block kind."""

    block: Name = Field(description="Block kind, defined in `blocks:` or a `use:` library.")
    with_: dict[Name, ParamValue] = Field(default_factory=dict, alias="with", description="Block parameters.")


def _names_pattern(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_]*\{[in]\}", value):
        raise ValueError(
            f"names must be letters, digits and _ followed by {{i}} (from 0) or {{n}} (from 1), "
            f"e.g. 'denselayer{{n}}'; got {value!r}"
        )
    return value


class StageItem(Strict):
    """A block repeated `repeat` times; the first and last instances may differ (`first:`, `last:`)."""

    stage: Name = Field(description="Block kind to repeat.")
    repeat: IntExpr = Field(description="Number of instances (>= 1).")
    with_: dict[Name, ParamValue] = Field(default_factory=dict, alias="with", description="Parameters of every instance.")
    first: dict[Name, ParamValue] = Field(
        default_factory=dict, description="Overrides for the first instance, e.g. {stride: 2}."
    )
    last: dict[Name, ParamValue] = Field(
        default_factory=dict,
        description="Overrides for the last instance (Keras ResNet v2 downsamples there), applied after `first`.",
    )
    connectivity: Literal["none", "dense"] = Field(
        "none",
        description="none: instances run in sequence. dense: each instance receives the concatenation "
        "of the stage input and all earlier outputs, and the stage returns that concatenation.",
    )
    names: Annotated[str, AfterValidator(_names_pattern)] = Field(
        "{i}",
        max_length=64,
        description="Instance names: {i} counts from 0, {n} from 1 (torchvision: '{i}' for ResNet "
        "stages, 'denselayer{n}' for dense blocks).",
    )


class GroupItem(Strict):
    """A named sequence of layers (a container, e.g. torchvision's `features`)."""

    group: list[LayerEntry]


_SHORTHANDS: dict[str, dict[str, Any]] = {
    "batchnorm": {"batchnorm": {}},
    "act": {"act": {}},
    "global_avgpool": {"global_avgpool": {}},
    "flatten": {"flatten": {}},
    **{fn: {"act": {"fn": fn}} for fn in ACTIVATIONS},
}
_ITEM_KEYS = (
    "conv", "batchnorm", "act", "maxpool", "avgpool", "global_avgpool", "dense", "dropout",
    "flatten", "zeropad", "block", "stage", "group",
)  # fmt: skip


def _normalize_body(value: Any) -> Any:
    if isinstance(value, str) and value in _SHORTHANDS:
        return _SHORTHANDS[value]
    if isinstance(value, list):
        return {"group": value}
    return value


def _body_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in _ITEM_KEYS:
            if key in value:
                return key
    return None


_TaggedBody = Annotated[
    Union[
        Annotated[ConvItem, Tag("conv")],
        Annotated[BatchNormItem, Tag("batchnorm")],
        Annotated[ActItem, Tag("act")],
        Annotated[MaxPoolItem, Tag("maxpool")],
        Annotated[AvgPoolItem, Tag("avgpool")],
        Annotated[GlobalAvgPoolItem, Tag("global_avgpool")],
        Annotated[DenseItem, Tag("dense")],
        Annotated[DropoutItem, Tag("dropout")],
        Annotated[FlattenItem, Tag("flatten")],
        Annotated[ZeroPadItem, Tag("zeropad")],
        Annotated[BlockItem, Tag("block")],
        Annotated[StageItem, Tag("stage")],
        Annotated[GroupItem, Tag("group")],
    ],
    Discriminator(
        _body_kind,
        custom_error_type="unknown_layer",
        custom_error_message="expected a layer: one of " + ", ".join(_ITEM_KEYS) + ", or a shorthand such as "
        "batchnorm, relu, act, global_avgpool, flatten",
    ),
]
LayerBody = Annotated[_TaggedBody, BeforeValidator(_normalize_body)]


def _one_entry(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) != 1:
        raise ValueError("each list item is one `name: layer` pair")
    return value


LayerEntry = Annotated[dict[Name, LayerBody], AfterValidator(_one_entry)]


# --- blocks, defaults, specs ---------------------------------------------------------


class Shortcut(Strict):
    """What a `skip` block adds to its branch output instead of its input, and when."""

    kind: Literal["projection", "option_a"] = Field(
        "projection",
        description="projection: 1x1 conv (with the branch's stride) + optional BN. option_a: parameter-free, "
        "subsample by the stride and zero-pad the new channels (He et al. 2015).",
    )
    when: Union[Literal["shape_changes", "always"], ExprStr] = Field(
        "shape_changes",
        union_mode="left_to_right",
        description="shape_changes: only on instances whose branch changes the shape; always: on every instance; "
        "or a boolean expression over the block's parameters, e.g. conv_shortcut.",
    )
    input: Name | None = Field(
        None,
        description="Read the output of this layer of the block instead of the block input, e.g. the "
        "pre-activation's relu (ResNet v2).",
    )
    name: Name = Field("downsample", description="Module name of the shortcut (torchvision: downsample).")
    batchnorm: StrictBool = Field(True, description="projection only: follow the 1x1 conv with batch norm.")
    bias: StrictBool | None = Field(None, description="projection only: conv bias; unset means defaults.conv.bias.")


class Check(Strict):
    that: ExprStr = Field(description="An expression that must be true, e.g. '(depth - 2) % 6 == 0'.")
    message: Message = Field(description="Shown when it is false; {name} is replaced by the value of a parameter.")


ParamDecl = Annotated[
    Union[StrictBool, StrictInt, FiniteFloat, Literal["int", "float", "bool"]],
    Field(union_mode="left_to_right"),
]


class BlockDef(Strict):
    doc: Doc = Field("", description="One line describing the block.")
    params: dict[Name, ParamDecl] = Field(
        default_factory=dict,
        description="Parameter name -> default value, or a type name (int, float, bool) for a required one.",
    )
    connectivity: Literal["none", "skip"] = Field(
        "none",
        description="none: layers in sequence. skip: output = after(layers(x) + shortcut(x)). "
        "Dense connectivity is a stage's (stage: ..., connectivity: dense).",
    )
    shortcut: Shortcut | list[Shortcut] | None = Field(
        None,
        description="skip only: the shortcut, or a list of them tried in order (the first whose `when` holds "
        "is used; an expression `when` must not also hold where an earlier one is used); with none "
        "applying, the identity.",
    )
    layers: list[LayerEntry] = Field(min_length=1, description="The block's layers.")
    after: list[LayerEntry] = Field(default_factory=list, description="skip only: layers after the addition.")
    checks: list[Check] = Field(default_factory=list, description="Rules on the parameters.")

    @model_validator(mode="after")
    def _skip_only(self) -> BlockDef:
        if self.connectivity != "skip" and (self.shortcut is not None or self.after):
            raise ValueError("`shortcut` and `after` only apply to blocks with connectivity: skip")
        names = [sc.name for sc in self.shortcuts]
        if len(set(names)) != len(names):
            raise ValueError("shortcuts need distinct names (`name:`)")
        if len(names) > 1 and any(sc.when == "always" for sc in self.shortcuts):
            raise ValueError("a shortcut with `when: always` is used on every instance, so it must be the only one")
        return self

    @property
    def shortcuts(self) -> tuple[Shortcut, ...]:
        if self.shortcut is None:
            return ()
        return tuple(self.shortcut) if isinstance(self.shortcut, list) else (self.shortcut,)


class ConvDefaults(Strict):
    bias: StrictBool | None = Field(None, description="Conv bias when a conv does not say.")


class DenseDefaults(Strict):
    bias: StrictBool = Field(True, description="Dense bias when a dense layer does not say.")


class BatchNormDefaults(Strict):
    eps: FiniteFloat | None = Field(None, gt=0, description="Batch-norm epsilon (PyTorch 1e-5, Keras apps 1.001e-5).")
    momentum: FiniteFloat | None = Field(
        None, gt=0, lt=1, description="Batch-norm momentum, PyTorch convention (PyTorch 0.1; Keras 0.99 is 0.01 here)."
    )


class Defaults(Strict):
    conv: ConvDefaults = Field(ConvDefaults.model_construct(), description="Conv settings a conv layer does not give itself.")
    dense: DenseDefaults = Field(DenseDefaults.model_construct(), description="Dense settings a dense layer does not give itself.")
    batchnorm: BatchNormDefaults = Field(
        BatchNormDefaults.model_construct(), description="Batch-norm numerics; archc never relies on a framework's defaults."
    )
    activation: Literal[ACTIVATIONS] = Field("relu", description="Activation of a bare `act` layer.")  # type: ignore[valid-type]


def _library_ref(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*|[\w./-]+\.ya?ml", value):
        raise ValueError(f"a library is a shipped name (resnet, densenet) or a path ending in .yaml; got {value!r}")
    return value


LibraryRef = Annotated[str, Field(max_length=200), AfterValidator(_library_ref)]


class ModelSpec(Strict):
    archc: Literal[1] = Field(description="Spec format version.")
    extends: str | None = Field(
        None,
        pattern=r"^[\w./-]+\.ya?ml$",
        description="A base spec (path relative to this file) that this one modifies; see 'Variants'.",
    )
    name: Name = Field(description="Model name; also the generated class name's source.")
    doc: Doc = Field("", description="What the model is, with its reference.")
    input: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(description="Input shape as (channels, height, width).")
    params: dict[Name, ParamValue] = Field(default_factory=dict, description="Model parameters used in expressions.")
    defaults: Defaults = Field(Defaults.model_construct(), description="Values for layer settings a layer leaves unset.")
    use: list[LibraryRef] = Field(
        default_factory=list, description="Block libraries: a shipped name (resnet, densenet) or a path."
    )
    blocks: dict[Name, BlockDef] = Field(default_factory=dict, description="Block kinds defined in this spec.")
    checks: list[Check] = Field(default_factory=list, description="Rules on the model parameters.")
    layers: list[LayerEntry] = Field(min_length=1, description="The network, input to output.")



class LibrarySpec(Strict):
    archc: Literal[1] = Field(description="Spec format version.")
    library: Name = Field(description="Library name.")
    doc: Doc = Field("", description="What the library holds, with its reference.")
    blocks: dict[Name, BlockDef] = Field(description="The block kinds it provides.")


# Validators are built on first use (defer_build): `check` validates a ModelSpec and its
# libraries, whose schemas hold every other model, so building each class's own
# validator at import would be wasted work. Forward references resolve then too.
