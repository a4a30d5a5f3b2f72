"""Value types of the spec language, shared by the spec models and the op modules.

Numbers may be expressions (see `archc.spec.expr`): they are parsed here and
evaluated during lowering. Names become Python identifiers in generated code,
so they are checked here once.
"""

from __future__ import annotations

import functools
import keyword
import types
from typing import Annotated, Union

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
)
from typing_extensions import TypeAliasType

from archc.spec import expr

# Names the generated modules use themselves; a spec name must not shadow them.
RESERVED_NAMES = frozenset(
    {
        # locals, arguments and globals of the generated modules
        "memory_efficient", "self", "x", "y", "out", "identity", "inputs", "name", "i", "_",
        # the index names a model-level stage's arguments read (archc.lower.values.INDEX_NAMES)
        "stage_block_id", "total_stage_blocks",
        "nn", "F", "torch", "Tensor", "math", "keras", "layers", "OrderedDict",
        "PadShortcut", "DenseStage", "in_channels", "channels", "build_model", "INPUT_SHAPE",
        # builtins the generated code calls (expressions print round, abs, min, max, int, float;
        # the regnet helpers call sorted and set), and the functions it defines (expr.HELPER_DEFINITIONS)
        "super", "int", "float", "bool", "str", "dict", "list", "tuple", "range", "len", "sorted", "set",
        "round", "abs", "min", "max", "None", "True", "False", "true", "false", "make_divisible",
        "regnet_stages", "regnet_width", "regnet_depth", "regnet_block_widths",
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


def _class_name(value: str) -> str:
    """A class the PyTorch module defines (`class: MBConv`): CapWords as PEP 8 and torchvision
    write them, so no local variable, argument or module of the generated code (all lower case)
    can shadow it. One leading underscore is allowed, as torchvision marks a module-private class
    (densenet.py's `_DenseLayer`): at module level it is no attribute of nn.Module, whose own
    private names (`_modules`) a layer name must avoid. Two are refused: `__x` is mangled inside
    a class body, and a dunder (`__name__`) is the module's own."""
    if not value.isidentifier() or not value.isascii():
        raise ValueError(f"{value!r} is not a Python class name: use letters, digits and _, starting with a capital letter")
    if value.startswith("__"):
        raise ValueError(f"class name {value!r} starts with two underscores (mangled in a class body); use at most one")
    if not value.lstrip("_")[:1].isupper():  # keywords included: True, None and False are reserved below
        raise ValueError(
            f"class name {value!r} must start with a capital letter, optionally after one underscore (CapWords: 'MBConv', '_DenseLayer')"
        )
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is used by the generated code; choose another name")
    return value


ClassName = Annotated[str, Field(max_length=64), AfterValidator(_class_name)]

# Reserved names that a layer may still have: names the generated code uses that a layer name
# never becomes. A layer is an attribute (`self.out`) and a Keras layer name (`"layers_0"`); a
# tensor read by name gets the variable `out_NAME` instead of `NAME`, so the code's own locals
# (`out`, `identity`, `x`, `y`, `inputs`) and Keras' `layers` module stay its own.
# torchvision's MNASNet calls its modules `layers`; timm's and torchvision's heads, `out`.
LAYER_NAMES = frozenset({"layers", "out", "identity", "x", "y", "inputs"})


def _layer_name(value: str) -> str:
    return value if value in LAYER_NAMES else _identifier(value)


LayerName = Annotated[str, Field(max_length=64), AfterValidator(_layer_name)]


def _tensor_name(value: str) -> str:
    """A tensor read by name: a layer's name, or a tap into a model-level container, its path
    (`backbone.layer3`, `backbone.4` for a numbered entry, `fpn.layer_blocks.0`)."""
    first, *rest = value.split(".")
    if not _number(first):
        _layer_name(first)
    for part in rest:
        if not (part.isdigit() and part.isascii() and (part == "0" or not part.startswith("0"))):
            _layer_name(part)
    return value


def _number(part: str) -> bool:
    return part.isdigit() and part.isascii() and (part == "0" or not part.startswith("0"))


TensorName = Annotated[str, Field(max_length=200), AfterValidator(_tensor_name)]


def _output_key(value: str) -> str:
    """A key of the model's outputs: a dict key in PyTorch and Keras, so any short text of
    letters, digits, `_`, `-` and `.` (torchvision's FPN returns "0" ... "3" and "pool")."""
    if not value or not all(ch.isalnum() or ch in "_-." for ch in value) or not value.isascii():
        raise ValueError(f"{value!r} is not a valid output key: use letters, digits, _, - and .")
    return value


OutputKey = Annotated[str, Field(max_length=64), AfterValidator(_output_key)]


def _expression(value: str) -> str:
    try:
        expr.parse(value)
    except expr.ExprError as e:
        raise ValueError(str(e)) from None
    return value


ExprStr = Annotated[str, AfterValidator(_expression)]
PositiveInt = Annotated[StrictInt, Field(ge=1)]
FiniteFloat = Annotated[StrictFloat, AllowInfNan(False)]  # YAML's .inf and .nan have no Python literal
# The value types below are named (TypeAliasType): pydantic generates a named type's schema once
# and refers to it, where an unnamed one is generated again for every field that uses it (about
# 35 M instructions, 5 ms, of each `archc check`). The JSON schema (archc.schema) writes them out
# in place again, as before; validation and messages are the same.
IntExpr = TypeAliasType("IntExpr", Annotated[Union[StrictInt, ExprStr], Field(union_mode="left_to_right")])
NumExpr = TypeAliasType("NumExpr", Annotated[Union[StrictInt, FiniteFloat, ExprStr], Field(union_mode="left_to_right")])
# A size per spatial dimension: one value for all, or one per dimension ([height, width]: a 1x7
# kernel is [1, 7]; [depth, height, width] for a 3-D map; lowering checks the count against the rank).
IntPairExpr = TypeAliasType("IntPairExpr", Annotated[Union[StrictInt, ExprStr, Annotated[list[IntExpr], Field(min_length=1, max_length=3)]], Field(union_mode="left_to_right")])
BoolExpr = TypeAliasType("BoolExpr", Annotated[Union[StrictBool, ExprStr], Field(union_mode="left_to_right")])
ParamValue = TypeAliasType("ParamValue", Annotated[Union[StrictBool, StrictInt, FiniteFloat, ExprStr], Field(union_mode="left_to_right")])


class Strict(BaseModel):
    # defer_build: a model's validator is built when it is first used, not at import (a
    # `check` validates one ModelSpec, whose schema holds the others); default instances
    # are made with model_construct() for the same reason.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class Empty(Strict):
    pass


class Arguments:
    """An op kind's spec arguments, written as a `Strict` model is written (fields with
    `Field(...)`, a docstring, validators) but made into one only where it is used: `model_of`
    makes the `Strict` model of the same name, module and body. A spec uses a few of the ~20
    kinds with arguments, and making a pydantic model class costs about 0.2 ms."""


@functools.cache
def model_of(declared: type[Arguments]) -> type[Strict]:
    """The `Strict` model of an Arguments declaration (its base's model first, for one
    declared on another): what `class X(Strict)` with the same body would have made."""
    bases = [b for b in declared.__bases__ if issubclass(b, Arguments) and b is not Arguments]
    base = model_of(bases[0]) if bases else Strict
    body = {k: v for k, v in vars(declared).items() if k not in ("__dict__", "__weakref__")}
    return types.new_class(declared.__name__, (base,), {}, lambda ns: ns.update(body))


VALUE_TYPES = ("IntExpr", "NumExpr", "IntPairExpr", "BoolExpr", "ParamValue")  # the named ones above
