"""The spec language as pydantic v2 models.

A spec is a model (`archc: 1`, `name`, `input`, `layers`, ...) or a block
library (`archc: 1`, `library`, `blocks`). Layers are written as one-key
mappings, `- conv1: {conv: {filters: 64, kernel: 7}}`, so the name comes first
and becomes the module name in generated code. Numbers may be expressions
(see `archc.spec.expr`); they are parsed here and evaluated during lowering.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Discriminator,
    Field,
    PydanticInvalidForJsonSchema,
    StrictBool,
    StrictInt,
    Tag,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, SchemaValidator, core_schema
from typing_extensions import TypeAliasType

from archc import ops
from archc.spec.block_parts import DeployMerge, Shortcut
from archc.spec.defaults import Defaults
from archc.spec.init_rules import InitPair
from archc.spec.types import (
    BoolExpr,
    ClassName,
    ExprStr,
    FiniteFloat,
    IntExpr,
    Name,
    OutputKey,
    ParamValue,
    PositiveInt,
    Strict,
    TensorName,
    _layer_name,
    model_of,
)

FORMAT_VERSION = 1


def _empty_list() -> list[Any]:
    """`default_factory=list` as a Python function: pydantic reads a default factory's signature,
    and a builtin's is parsed from its text by the tokenize module (about 2 ms of a `check`)."""
    return []


def _prose(value: str) -> str:
    """Docs and messages are printed into docstrings and terminals: plain text only."""
    bad = next((ch for ch in value if not (ch.isprintable() or ch in " \t\n")), None)
    if bad is not None:
        raise ValueError(f"control or formatting character {bad!r} is not allowed in text")
    return " ".join(value.split())


MAX_DOC = 2000  # characters of a `doc:`; a module's docstring holds it whole
Doc = Annotated[str, Field(max_length=MAX_DOC), AfterValidator(_prose)]
Message = Annotated[str, Field(max_length=300), AfterValidator(_prose)]


def _names_pattern(value: str) -> str:
    """Instance names are only ever dict keys (`nn.Sequential(OrderedDict(...))`), f-string text
    and Keras layer-name parts, never Python identifiers, so besides letters, digits and _ they
    may hold `-`: torchvision's RegNet names its blocks `block1-0` (add_module). Nothing else:
    `.` would split a state_dict key, `/` a Keras name, quotes and braces the f-string."""
    if not re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9_-]*)?\{[in]\}", value):
        raise ValueError(
            f"names must be letters, digits, _ and - (not starting with _ or -) followed by {{i}} (from 0) or "
            f"{{n}} (from 1), e.g. 'denselayer{{n}}' or 'block1-{{i}}'; got {value!r}"
        )
    return value


class Flow(Strict):
    """What every layer entry may say besides its kind: where it reads from, and when it exists."""

    from_: TensorName | None = Field(
        None,
        alias="from",
        description="Read this tensor instead of the previous one: `input` (the block's or model's input) "
        "or the name of an earlier layer in this list or an enclosing one; at model level also a tap into a group "
        "written earlier, `group.entry` (`backbone.layer3`, `backbone.4`).",
    )
    if_: BoolExpr | None = Field(
        None,
        alias="if",
        description="Keep the layer only where this holds (an expression over the block's parameters and "
        "in_channels, evaluated at build time); elsewhere the layer is absent and passes its input on.",
    )

    @property
    def reads(self) -> tuple[str, ...]:
        """The tensors `from:` names: none (the previous one), one, or a block instance's several."""
        if self.from_ is None:
            return ()
        return tuple(self.from_) if isinstance(self.from_, list) else (self.from_,)


def _op_item(kind: str, args: Any, options: Any = None) -> type[Flow]:
    """`{conv: {...}, from: ..., if: ...}`: the entry model of one op kind; a merge's `options`
    (an Arguments declaration) are fields beside its list (`{weighted_sum: [a, b], normalize: false}`)."""
    optional = isinstance(args, type) and all(not f.is_required() for f in args.model_fields.values())
    default = args.model_construct() if optional else ...  # all optional: may be written bare (`batchnorm`)
    if getattr(args, "__origin__", None) is list:  # merges: `add: [a, b]` lists their inputs
        default = ...
    description = (args.__doc__ or "").strip() if isinstance(args, type) else f"{kind}: the tensors it merges"
    return create_model(
        f"{kind.title().replace('_', '')}Item",
        __base__=Flow,
        **{kind: (args, Field(default, description=description or f"{kind} arguments"))},
        **({k: (f.annotation, f) for k, f in model_of(options).model_fields.items()} if options is not None else {}),
    )


class _Items(Mapping[str, type[Flow]]):
    """Layer kind -> its entry model: an op kind's is made the first time it is asked for
    (a spec uses a few of the ~30 kinds; making a model class costs about 0.2 ms)."""

    def __init__(self, composites: dict[str, type[Flow]]):
        self._made = dict(composites)
        self._keys = (*ops.KINDS, *composites)
        self._known = frozenset(self._keys)

    def __getitem__(self, kind: str) -> type[Flow]:
        item = self._made.get(kind)
        if item is None:
            if kind not in ops.KINDS:
                raise KeyError(kind)
            item = self._made[kind] = _op_item(kind, ops.KINDS[kind].args_model(), ops.KINDS[kind].OPTIONS)
        return item

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, kind: object) -> bool:
        return kind in self._known


# --- composite items -------------------------------------------------------------


class BlockItem(Flow):
    """One instance of a block kind."""

    from_: TensorName | Annotated[list[TensorName], Field(min_length=2, max_length=16)] | None = Field(  # type: ignore[assignment]
        None,
        alias="from",
        description="Read this tensor instead of the previous one (see any layer's `from`); for a block kind "
        "with several `inputs`, the list of tensors it reads, one per input in their order.",
    )
    block: Name = Field(description="Block kind, defined in `blocks:` or a `use:` library.")
    with_: dict[Name, ParamValue] = Field(default_factory=dict, alias="with", description="Block parameters.")
    inline: StrictBool = Field(
        False,
        description="In a numbered list: the instance's layers become entries of the list, numbered with it "
        "(torchvision's make_layers: `features.0` conv, `features.1` relu), rather than one nested entry. "
        "The block kind's layers must all be unnamed layers.",
    )


class StageItem(Flow):
    """A block repeated `repeat` times; the first and last instances may differ (`first:`, `last:`)."""

    stage: Name = Field(description="Block kind to repeat.")
    repeat: IntExpr = Field(description="Number of instances (>= 1).")
    with_: dict[Name, ParamValue] = Field(
        default_factory=dict,
        alias="with",
        description="Parameters of every instance; at model level, expressions here and in first/last may "
        "read `i`, the instance's index from 0, `stage_block_id`, its index among the instances of all the "
        "model's stages, and `total_stage_blocks`, their number.",
    )
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
        "stages, 'denselayer{n}' for dense blocks, 'block1-{i}' for RegNet stages). A stage written "
        "without a name of its own in a numbered list, with '{i}', numbers its instances with the list; with "
        "another pattern its instances are entries of the enclosing list (attributes of the model at model "
        "level) under these names, with no level of their own ('conv2_{n}': conv2_1, conv2_2).",
    )
    inline: StrictBool = Field(
        False,
        description="In a numbered list: the instance's layers become entries of the list, numbered with it "
        "(torchvision's make_layers: `features.0` conv, `features.1` relu), rather than one nested entry. "
        "The block kind's layers must all be unnamed layers.",
    )


class StagesItem(Flow):
    """A table of stages of one block kind, one row per stage (torchvision's `_efficientnet_conf`,
    `inverted_residual_setting`): each row is one unnamed entry of the enclosing list, an
    nn.Sequential of its `repeat` instances, numbered on as `- - stage: ...` entries would be
    (`flat`: its instances are entries of the list, as `- stage: ...` ones); the generated code
    keeps the table and builds the stages in a loop."""

    stages: Name = Field(description="Block kind of every stage of the table.")
    columns: Annotated[list[Name], Field(min_length=1, max_length=32)] = Field(
        description="What each row's values are, in order: `repeat` (the stage's number of instances; without it, one), "
        "parameters of the kind (given to every instance unless `with`, `first` or `last` sets that parameter), "
        "and names that `with`, `first` and `last` read (`first: {stride: stride}`)."
    )
    rows: Annotated[list[Annotated[list[ParamValue], Field(min_length=1, max_length=32)]], Field(min_length=1, max_length=256)] = Field(
        description="One stage per row: one value per column, expressions over the model's parameters."
    )
    with_: dict[Name, ParamValue] = Field(
        default_factory=dict,
        alias="with",
        description="Parameters of every instance of every row; expressions here and in first/last read the row's "
        "columns, `i` (the instance's index in its stage), `stage_block_id` (its index among the instances of all "
        "the model's stages) and `total_stage_blocks` (their number).",
    )
    first: dict[Name, ParamValue] = Field(
        default_factory=dict, description="Overrides for the first instance of each stage, e.g. {stride: stride}."
    )
    last: dict[Name, ParamValue] = Field(
        default_factory=dict, description="Overrides for the last instance of each stage, applied after `first`."
    )
    flat: StrictBool = Field(
        False,
        description="Each row's instances are entries of the enclosing list, numbered on (torchvision's MobileNetV2 "
        "and V3 `features.2`, `features.3`), rather than one nn.Sequential per row (EfficientNet's `features.2.0`).",
    )
    between: BlockItem | None = Field(
        None,
        description="A block instance between consecutive rows' stages, an entry of the list before each row but the "
        "first, its `with` reading that row's columns (ConvNeXt's downsampling to the next stage's width).",
    )

    @model_validator(mode="after")
    def _columns(self) -> StagesItem:
        seen: set[str] = set()
        for column in self.columns:
            if column in seen:
                raise ValueError(f"column {column!r} is written twice")
            seen.add(column)
        if "stage" in seen:
            raise ValueError("'stage' is used by the generated code (the list a row's instances are built into); choose another column name")
        return self


class GroupItem(Flow):
    """A named sequence of layers (a container, e.g. torchvision's `features`); entries written
    without a name are numbered like the children of an nn.Sequential."""

    group: list[LayerEntry]


class BranchesItem(Flow):
    """Parallel branches from one input, merged (an Inception module). The branch names are
    module names of the enclosing block or model; the entry's own name names the merge."""

    branches: list[LayerEntry] = Field(min_length=2, description="The branches: layers, blocks or lists.")
    merge: Literal["concat", "add"] = Field("concat", description="How the branch outputs are merged.")


class ModulesItem(Flow):
    """A container of modules wired by dataflow, not run in sequence (torchvision's FPN
    `inner_blocks`, LRASPP's head): each entry reads the previous one unless it names others
    (`from:`, merges), as in the model's own list, and the model's forward calls each entry
    where it is read. Named entries make an nn.ModuleDict, numbered ones an nn.ModuleList;
    their tensors are read from outside as `name.entry`, at model level and in a block kind."""

    modules: list[LayerEntry] = Field(min_length=1, description="The entries: layers, blocks, lists or containers.")



class ParallelItem(Flow):
    """A module list (torchvision's nn.ModuleList): unnamed paths numbered as its modules
    (`convs.0`, `convs.1`; a path that is a list numbers its layers on, `convs.0.1`), each
    reading the list's input or its own `from:`, their outputs merged. A path may be a module
    list of its own, a row of a grid (`fuse.1.0`). The entry's name is the module list's."""

    parallel: list[LayerEntry] = Field(
        min_length=2,
        description="The paths, without names: a layer, a list of layers (an nn.Sequential), a block, or a module list "
        "whose paths are not module lists (a row of a grid).",
    )
    merge: Literal["concat", "add", "multiply"] = Field("concat", description="How the paths' outputs are merged.")


ITEMS: Mapping[str, type[Flow]] = _Items(
    {"block": BlockItem, "stage": StageItem, "stages": StagesItem, "group": GroupItem, "branches": BranchesItem, "parallel": ParallelItem, "modules": ModulesItem}
)
_ITEM_KEYS = tuple(ITEMS)
_SHORTHANDS: Mapping[str, dict[str, Any]] = ops.SHORTHANDS  # imports a kind's module as a spec names it
POSITIONAL = "#"  # the key of an entry written without a name; lowering numbers it


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


def _is_body(value: Any) -> bool:
    """A layer body: a shorthand, a list (a group) or a mapping with a layer key."""
    return (isinstance(value, str) and value in _SHORTHANDS) or isinstance(value, list) or _body_kind(value) is not None


def _name_entry(value: Any) -> Any:
    """`- relu`, `- {conv: {...}}` and `- [...]` (a list in a list) are entries without a name: `{"#": body}`."""
    if (isinstance(value, str) and value in _SHORTHANDS) or isinstance(value, list):
        return {POSITIONAL: value}
    if isinstance(value, dict) and value:
        key = next(iter(value))
        if len(value) > 1 or (key in ITEMS and not _is_body(value[key])):
            return {POSITIONAL: value} if _body_kind(value) is not None else value
    return value


_UNKNOWN_LAYER = (
    "expected a layer: one of " + ", ".join(_ITEM_KEYS) + ", or a shorthand such as batchnorm, relu, act, global_avgpool, flatten"
)


def tagged_body() -> Any:
    """The layer union as pydantic would validate it whole: every kind's model, tagged by its
    key (for the JSON schema; validation builds it a kind at a time, see _Layer)."""
    return Annotated[
        Union[tuple(Annotated[item, Tag(kind)] for kind, item in ITEMS.items())],  # type: ignore[valid-type]
        Discriminator(_body_kind, custom_error_type="unknown_layer", custom_error_message=_UNKNOWN_LAYER),
    ]


def _core_schema(item: type[Flow]) -> core_schema.CoreSchema:
    item.model_rebuild()  # defer_build: generated now, on first use
    return item.__pydantic_core_schema__


@functools.cache
def _kind_validator(kind: str) -> SchemaValidator:
    """tagged_body() restricted to one layer kind: the same validation, errors and locations
    (`conv1.conv.conv.filters`: the tag, then the field) as the whole union for that kind."""
    return SchemaValidator(
        core_schema.tagged_union_schema(
            {kind: _core_schema(ITEMS[kind])},
            discriminator=_body_kind,
            custom_error_type="unknown_layer",
            custom_error_message=_UNKNOWN_LAYER,
        )
    )


def _validate_layer(value: Any) -> Any:
    kind = _body_kind(value)
    if kind is None:
        raise PydanticCustomError("unknown_layer", _UNKNOWN_LAYER)
    return _kind_validator(kind).validate_python(value)


class _Layer:
    """A layer body, validated as tagged_body() would validate it, but with each kind's
    validator built the first time a spec uses that kind: a spec uses a few of the ~30
    kinds, and generating their schemas was the largest cost of `check` inside archc."""

    eager = False  # json_schema(): the whole union, as pydantic generates it

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        if _Layer.eager:
            return handler(tagged_body())
        return core_schema.no_info_plain_validator_function(_validate_layer)

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> Any:
        if _Layer.eager:
            return handler(schema)
        raise PydanticInvalidForJsonSchema(
            "the spec models validate layers a kind at a time; their JSON schema is "
            "archc.spec.models.json_schema() (or archc.schema.schema(), `archc schema`)"
        )


LayerBody = Annotated[Any, _Layer(), BeforeValidator(_normalize_body)]


def _one_entry(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) != 1:
        raise ValueError("each list item is one `name: layer` pair, or a layer without a name")
    return value


def _entry_name(value: str) -> str:
    """A layer's name, or `convs.1`: entry 1 of the numbered container `convs`, written at the
    place of the list where forward calls it (docs/spec.md "Containers wired by dataflow")."""
    if value == POSITIONAL:
        return value
    container, dot, number = value.partition(".")
    if dot and number.isdigit() and number.isascii() and (number == "0" or not number.startswith("0")):
        _layer_name(container)
        return value
    return _layer_name(value)


EntryName = Annotated[str, Field(max_length=64), AfterValidator(_entry_name)]
# Named (TypeAliasType), as the value types in archc.spec.types: five fields hold lists of layer
# entries, and pydantic generates a named type's schema once rather than once per field.
LayerEntry = TypeAliasType("LayerEntry", Annotated[dict[EntryName, LayerBody], BeforeValidator(_name_entry), AfterValidator(_one_entry)])


# --- blocks, defaults, specs ---------------------------------------------------------


class Check(Strict):
    that: ExprStr = Field(description="An expression that must be true, e.g. '(depth - 2) % 6 == 0'.")
    message: Message = Field(description="Shown when it is false; {name} is replaced by the value of a parameter.")


ParamDecl = Annotated[
    Union[StrictBool, StrictInt, FiniteFloat, Literal["int", "float", "bool"]],
    Field(union_mode="left_to_right"),
]


class BlockDef(Strict):
    doc: Doc = Field("", description="One line describing the block.")
    class_: ClassName | None = Field(
        None,
        alias="class",
        description="The PyTorch class this kind becomes, spelled exactly (`MBConv`, `CNBlock`: torchvision's names); "
        "unset: the kind's name in CapWords (`mbconv` -> `Mbconv`). Keras' block functions keep the kind's name.",
    )
    params: dict[Name, ParamDecl] = Field(
        default_factory=dict,
        description="Parameter name -> default value, or a type name (int, float, bool) for a required one.",
    )
    inputs: list[Name] | None = Field(
        None,
        min_length=2,
        max_length=16,
        description="Several named inputs (`inputs: [low, high]`), read by name as `input` is in a block with "
        "one; their channels are the parameters `low_channels`, `high_channels` (a block with one input has "
        "`in_channels`). An instance gives them in order: `from: [backbone.4, backbone.16]`.",
    )
    outputs: list[TensorName] | None = Field(
        None,
        min_length=2,
        max_length=16,
        description="Several outputs (`outputs: [features, logits]`): layers of the block (or entries of its lists, "
        "`body.relu`) whose tensors it returns, in order. The first is the instance's tensor (what the next layer "
        "reads); each is read from outside as `instance.output` (`from: head.logits`, `head.body.relu`).",
    )
    connectivity: Literal["none", "skip"] = Field(
        "none",
        description="none: layers in sequence. skip: output = after(layers(x) + shortcut(x)). "
        "Dense connectivity is a stage's (stage: ..., connectivity: dense).",
    )
    sum: Literal["in_place", "new"] = Field("in_place", description="skip only: how PyTorch's forward adds the shortcut. "
        "in_place: the layers' output updated, `out += identity` (torchvision's ResNet Bottleneck and BasicBlock, ConvNeXt's "
        "CNBlock). new: a new tensor, the shortcut first, `out = identity + out` (torchvision's RegNet ResBottleneckBlock, "
        "`self.proj(x) + self.f(x)`). The same sum either way; Keras writes layers.Add.")  # fmt: skip
    shortcut: Shortcut | list[Shortcut] | None = Field(
        None,
        description="skip only: the shortcut, or a list of them tried in order (the first whose `when` holds "
        "is used; an expression `when` must not also hold where an earlier one is used); with none "
        "applying, the identity.",
    )
    layers: list[LayerEntry] = Field(min_length=1, description="The block's layers.")
    after: list[LayerEntry] = Field(default_factory=_empty_list, description="skip only: layers after the addition.")
    checks: list[Check] = Field(default_factory=_empty_list, description="Rules on the parameters.")
    out_channels: IntExpr | None = Field(
        None,
        description="The block's output channels, over its parameters and in_channels (e.g. 'filters'); required "
        "where the block contains itself (directly or through another block), checked on every instance.",
    )
    out_stride: IntExpr = Field(
        1,
        description="With out_channels: how much the block shrinks the map, over its parameters and in_channels "
        "(1: the same size); checked on every instance.",
    )

    deploy: DeployMerge | list[DeployMerge] | None = Field(
        None,
        description="The block's deploy form for `archc deploy`: which parallel linear branches merge into "
        "which conv (`{merge: [conv_kxk, conv_1x1, identity], into: reparam_conv}`), or a list of such; checked "
        "(each branch linear up to the adds joining them, one conv for all) wherever the spec is lowered. "
        "Unset: the branches archc finds linear are merged, named after their last add.",
    )

    @field_validator("sum")
    @classmethod
    def _sum_skip_only(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("connectivity") != "skip":  # written: a default is not validated
            raise ValueError("`sum` says how a skip block adds its shortcut; it only applies to blocks with connectivity: skip")
        return value

    @model_validator(mode="after")
    def _skip_only(self) -> BlockDef:
        if self.connectivity != "skip" and (self.shortcut is not None or self.after):
            raise ValueError("`shortcut` and `after` only apply to blocks with connectivity: skip")
        if self.inputs is not None:
            if len(set(self.inputs)) != len(self.inputs) or "input" in self.inputs:
                raise ValueError("`inputs` are distinct names, none of them `input`")
            if self.connectivity == "skip":
                raise ValueError("a block with several inputs has no skip connectivity (which input would it add?); "
                                 "write the sum as a layer, e.g. `sum: {add: [low, out]}`")
        if self.outputs is not None:
            if len(set(self.outputs)) != len(self.outputs):
                raise ValueError("`outputs` are distinct layer names")
            if self.connectivity == "skip":
                raise ValueError("a block with several outputs has no skip connectivity (its result is the sum); "
                                 "write the sum as a layer, e.g. `sum: {add: [input, out]}`, and name it in `outputs`")
        names = [sc.name for sc in self.shortcuts]
        if len(set(names)) != len(names):
            raise ValueError("shortcuts need distinct names (`name:`)")
        if len(names) > 1 and any(sc.when == "always" for sc in self.shortcuts):
            raise ValueError("a shortcut with `when: always` is used on every instance, so it must be the only one")
        return self

    @model_validator(mode="after")
    def _signature(self) -> BlockDef:
        if self.out_channels is None and "out_stride" in self.model_fields_set:
            raise ValueError("`out_stride` is declared together with `out_channels`; add `out_channels:`")
        return self

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names its layers read its inputs by: `input`, or those of `inputs:`."""
        return tuple(self.inputs) if self.inputs else ("input",)

    @property
    def deploy_merges(self) -> tuple[DeployMerge, ...]:
        if self.deploy is None:
            return ()
        return tuple(self.deploy) if isinstance(self.deploy, list) else (self.deploy,)

    @property
    def shortcuts(self) -> tuple[Shortcut, ...]:
        if self.shortcut is None:
            return ()
        return tuple(self.shortcut) if isinstance(self.shortcut, list) else (self.shortcut,)


def _library_ref(value: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*|[\w./-]+\.ya?ml", value):
        raise ValueError(f"a library is a shipped name (resnet, densenet, squeezenet, inception, efficientnet, mobilenet_v3, deeplab, timm_resnet) or a path ending in .yaml; got {value!r}")
    return value


LibraryRef = Annotated[str, Field(max_length=200), AfterValidator(_library_ref)]


def _format_version(value: Any) -> Any:
    if type(value) is not int:  # Literal[1] alone would also take true and 1.0
        raise ValueError(f"the format version is the integer 1, got {value!r}")
    return value


FormatVersion = Annotated[Literal[1], BeforeValidator(_format_version)]


def _input_rank(value: Any) -> Any:
    """The input's length is its rank: (C, L), (C, H, W) or (C, D, H, W); another length gets
    that said, not a missing or extra item."""
    if isinstance(value, (list, tuple)) and not 2 <= len(value) <= 4:
        raise ValueError(
            f"input {list(value)} has {len(value)} dimensions; archc compiles (channels, length), "
            "(channels, height, width) or (channels, depth, height, width)"
        )
    return value


class ModelSpec(Strict):
    archc: FormatVersion = Field(description="Spec format version.")
    extends: str | None = Field(
        None,
        pattern=r"^[\w./-]+\.ya?ml$",
        description="A base spec (path relative to this file) that this one modifies; see 'Variants'.",
    )
    name: Name = Field(description="Model name; also the generated class name's source.")
    class_: ClassName | None = Field(
        None,
        alias="class",
        description="The model's PyTorch class, spelled exactly (`ResNet`, `EfficientNet`); unset: the name in CapWords "
        "(`resnet50` -> `Resnet50`). A family spec gives its family's, which the specs that extend it and every "
        "`--set` build keep.",
    )
    doc: Doc = Field("", description="What the model is, with its reference.")
    input: Annotated[tuple[PositiveInt, ...], Field(min_length=2, max_length=4), BeforeValidator(_input_rank)] = Field(
        description="Input shape: (channels, length), (channels, height, width) or (channels, depth, height, width); "
        "its length sets the rank of every map (see 'Tensor rank')."
    )
    params: dict[Name, ParamValue] = Field(default_factory=dict, description="Model parameters used in expressions.")
    defaults: Defaults = Field(Defaults.model_construct(), description="Values for layer settings a layer leaves unset.")
    use: list[LibraryRef] = Field(
        default_factory=_empty_list, description="Block libraries: a shipped name (resnet, densenet, squeezenet, inception, efficientnet, mobilenet_v3, deeplab, timm_resnet) or a path."
    )
    blocks: dict[Name, BlockDef] = Field(default_factory=dict, description="Block kinds defined in this spec.")
    checks: list[Check] = Field(default_factory=_empty_list, description="Rules on the model parameters.")
    layers: list[LayerEntry] = Field(
        min_length=1,
        description="The network, input to output. Every module entry has a name (its attribute, `conv1.weight`), "
        "or none has: a numbered model, whose entries follow a list's rules and are numbered like an "
        "nn.Sequential's children (`0.weight`, `1.0.weight`; an nn.Sequential subclass in PyTorch, Keras layers "
        "`0`, `1_0`).",
    )
    outputs: dict[OutputKey, TensorName] | None = Field(
        None,
        min_length=1,
        description="Several outputs: key -> a model-level layer whose tensor it is (or a tap, `backbone.layer3`); "
        "forward returns a dict in this order (torchvision's {'out': ..., 'aux': ...}), Keras a dict-output Model; "
        "an output whose layer is absent is left out. Unset: the last layer's tensor.",
    )


class LibrarySpec(Strict):
    archc: FormatVersion = Field(description="Spec format version.")
    library: Name = Field(description="Library name.")
    doc: Doc = Field("", description="What the library holds, with its reference.")
    blocks: dict[Name, BlockDef] = Field(description="The block kinds it provides.")


# Validators are built on first use (defer_build): forward references (a list holds layer
# entries, which hold lists) resolve then too.


def build_validators() -> None:
    """Build the validators of the models that several others hold first (InitPair: every
    `init`; BlockDef: a spec's and a library's blocks): pydantic reuses a complete model's
    schema in the models that contain it, where it would otherwise generate it again in
    each. The validators are the same either way; only the time to build them differs."""
    InitPair.model_rebuild()
    BlockDef.model_rebuild()


def json_schema() -> dict[str, Any]:
    """ModelSpec's JSON schema. It needs the whole layer union, which validation builds per
    kind (_Layer): the models that hold layer entries are rebuilt with it for the schema, and
    rebuilt lazily again afterwards."""
    holders = (GroupItem, BranchesItem, ParallelItem, BlockDef, ModelSpec, LibrarySpec)
    _Layer.eager = True
    try:
        for model in holders:
            model.model_rebuild(force=True)
        return ModelSpec.model_json_schema(mode="validation")
    finally:
        _Layer.eager = False
        for model in holders:
            model.model_rebuild(force=True)
