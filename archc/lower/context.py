"""Where lowering is (`Ctx`), what it accumulates for one model (`State`), and the
checks that every list of layers shares."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Counts,
    Inst,
    Node,
    Output,
    StageInst,
    SymItem,
    path_variable,
)
from archc.ops import Shape, init
from archc.ops.init import Init
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource, LoadedSpec
from archc.spec.models import POSITIONAL
from archc.spec.yamlsrc import SourceMap


def item_kind(body: Any) -> str:
    return _kind_of(type(body))


@functools.cache
def _kind_of(cls: type) -> str:
    return next(k for k in m._ITEM_KEYS if k in cls.model_fields)


@dataclass
class Ctx:
    """Where lowering is: the file and YAML path of the current list, the scope of names."""

    source: SourceMap
    yaml_path: tuple[Any, ...]
    module_path: tuple[str, ...]
    scope: dict[str, expr.Value]
    top_level: bool  # model-level items (model params are in scope)

    def where(self, *sub: Any) -> Location:
        return self.source.locate((*self.yaml_path, *sub))


@dataclass
class State:
    """What lowering accumulates for one model: nodes, block kinds, names in use."""

    spec: LoadedSpec
    nodes: list[Node] = field(default_factory=list)
    block_types: dict[str, BlockType] = field(default_factory=dict)
    param_refs: dict[str, list[tuple[int, str, LayerKey]]] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)  # model params used where they cannot be arguments
    top_kinds: list[str] = field(default_factory=list)  # kinds of model-level items, in order
    top_paths: list[str] = field(default_factory=list)  # their module paths (the ids of their nodes)
    block_stack: list[str] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)  # block kinds whose symbolic form is being built
    # (block, parameter, value) -> where a model parameter behind that argument was set (extends, --set)
    arg_notes: dict[tuple[str, str, Any], str] = field(default_factory=dict)
    params: int = 0  # parameters so far, trainable and not
    inits: dict[str, Init] = field(default_factory=dict)  # each kind's rules from `defaults:` (ops.init)
    outputs: list[Output] = field(default_factory=list)  # the model's, from `outputs:`
    absent: set[str] = field(default_factory=set)  # the model's entries whose `if:` fails
    # a numbered model's instances written `inline` (GroupInst.inlined; Graph.inlined)
    inlined: list[tuple[int, int, BlockInst]] = field(default_factory=list)

    @property
    def rank(self) -> int:
        """The spatial dimensions of the model's maps: its input's, (C, L) 1, (C, H, W) 2, (C, D, H, W) 3."""
        return len(self.spec.model.input) - 1

    def init(self, kind: str) -> Init:
        """The rules of `kind` in `defaults:` (unset: torch_default), checked where they are written."""
        if kind not in self.inits:
            written = getattr(self.spec.model.defaults, kind).init
            self.inits[kind] = init.default_init(written)
            if written is not None:
                check_init(self.inits[kind], kind, self.spec.locate("defaults", kind, "init"))
        return self.inits[kind]


LayerKey = tuple[str, ...]


def check_layout(name: str, kind: str, last: bool, where: Location, in_group: bool = False) -> None:
    """A map PyTorch holds channels-last reaches only ops that work on the last axis; a bare
    parameter (layer_scale) is an attribute of its module, never an entry of a list."""
    op = ops.KINDS[kind]
    if last and not op.CHANNELS_LAST:
        raise SpecError(
            f"{name}: {kind} needs a channels-first map, but after the permute PyTorch holds this one "
            "channels-last; add `permute: {to: channels_first}` before it",
            where,
        )
    if in_group and op.PARAMETER:
        raise SpecError(
            f"{name}: {kind} is a bare parameter of its module in PyTorch (torchvision's `self.{kind} = "
            "nn.Parameter(...)`), not a module, so it cannot be an entry of a list; write it in a block kind's layers",
            where,
        )


def numbered_definition(definition: Any) -> bool:
    """A block kind of unnamed layers run in sequence: PyTorch's nn.Sequential subclass (the
    torch backend's `_sequential`), whose unnamed stages contribute their instances to its
    numbering, as torchvision's `_stack` is `nn.Sequential(first, *remaining)`. An unnamed
    expression (a resize) takes no number: its forward applies it (torchvision's ASPPPooling)."""
    if definition.connectivity != "none" or definition.after:
        return False
    for entry in definition.layers:
        (written, body), = entry.items()
        kind = item_kind(body)
        op = ops.KINDS.get(kind)
        if written != POSITIONAL or body.from_ is not None or kind in ("group", "branches", "parallel") or (op is not None and (op.MERGE or op.PARAMETER)):
            return False
    return True


def check_named_layers(source: BlockSource) -> None:
    """A block kind numbers its layers (an nn.Sequential) only when none has a name; in one
    with named layers, an unnamed layer with weights or a module of its own would have no
    attribute to live in."""
    definition = source.definition  # `after:` too: a block kind with one is never numbered
    entries = [(section, i, *next(iter(entry.items()))) for section in ("layers", "after") for i, entry in enumerate(getattr(definition, section))]
    for section, i, written, body in entries:  # the reason a bare parameter makes a block unnumbered
        op = ops.KINDS.get(item_kind(body))
        if written == POSITIONAL and op is not None and op.PARAMETER:
            raise SpecError(
                f"{op.kind} is a bare parameter of its block in PyTorch (`self.NAME = nn.Parameter(...)`), "
                f"so it needs a name (`{op.kind}: {op.kind}`)",
                source.locate(section, i),
            )
    for section, i, written, body in entries:
        op = ops.KINDS.get(item_kind(body))
        if written == POSITIONAL and not (op is not None and (op.MERGE or op.EXPRESSION)):
            raise SpecError(
                f"block {source.name!r} names some of its layers, so this one needs a name too (`NAME: ...`): "
                "only a block kind whose layers are all unnamed (and that has no `after:`) is numbered, like nn.Sequential",
                source.locate(section, i),
            )


def unread(defined: dict[str, Location], reads: set[str], scope: str) -> None:
    """A layer whose output nothing reads would be built by PyTorch but dropped by Keras."""
    for name, where in defined.items():
        if name not in reads:
            raise SpecError(
                f"layer {name!r} of {scope} is never read: no later layer reads it and it is not the output; "
                "read it (`from:`, a merge) or remove it",
                where,
            )


def check_arity(source: BlockSource, name: str, kind: str, given: int, where: Location) -> None:
    """An instance reads as many tensors as its kind has inputs (`from: [a, b]` for `inputs: [low, high]`)."""
    inputs = source.definition.input_names
    if kind == "stage" and source.definition.outputs:
        raise SpecError(f"{name}: a stage chains one tensor from instance to instance; block {source.name!r} returns several", where)
    want = len(inputs)
    if want == given:
        return
    if kind == "stage":
        raise SpecError(f"{name}: a stage repeats a block with one input; block {source.name!r} has {want} ({', '.join(inputs)})", where)
    if want == 1:
        raise SpecError(f"{name}: block {source.name!r} reads one input; `from:` names one tensor", where)
    raise SpecError(
        f"{name}: block {source.name!r} reads {want} inputs ({', '.join(inputs)}): write `from: [...]` with "
        f"{want} tensors, one per input in that order",
        where,
    )


def check_outputs_place(source: BlockSource, written: str, conditional: bool, contained: bool, where: Location) -> None:
    """An instance of a kind with several outputs is called by name where its outputs are
    unpacked: a named, unconditional entry of the model's list or of a block kind's."""
    outputs = source.definition.outputs
    if not outputs:
        return
    what = f"block {source.name!r} returns several tensors ({', '.join(outputs)})"
    if written == POSITIONAL or contained:
        raise SpecError(
            f"{what}: its instance is a named entry of the model's list or of a block kind's, not of a list, "
            "a module list or `modules:` (which pass one tensor on)",
            where,
        )
    if conditional:
        raise SpecError(f"{written}: {what}, so its instance cannot be conditional (what would each output be where it is absent?)", where)


def shown(written: str, index: int) -> str:
    """An entry's name for messages: its name, or its position when it has none."""
    return f"entry {index}" if written == POSITIONAL else written


def check_list_entry(written: str, kind: str, body: Any, where: Location, model: bool = False) -> None:
    """An entry of a list (an nn.Sequential in PyTorch) reads the previous one and is a module;
    `model`: of a numbered model's own list (`numbered_model`), whose unnamed stages number on."""
    if model and kind == "stage" and body.names != "{i}":
        raise SpecError(
            f"{written}: the model's layers are all unnamed, so it numbers them (an nn.Sequential, `0.weight`): "
            f"a stage takes no `names: {body.names}` here; drop it, or name the model's layers",
            where,
        )
    if kind == "parallel":
        raise SpecError(
            f"{written}: a module list is not an entry of a list (an nn.Sequential cannot run an nn.ModuleList's "
            "paths and merge them); write it outside the list",
            where,
        )
    if body.from_ is not None or kind == "branches" or ops.KINDS.get(kind, ops.Op).MERGE:
        raise SpecError(
            f"{written}: the entries of a list run in sequence (it becomes an nn.Sequential); "
            "read other tensors with `from:` or merges outside the list",
            where,
        )
    if ops.KINDS.get(kind, ops.Op).EXPRESSION:
        raise SpecError(
            f"{written}: {kind} is an expression in PyTorch's forward, not a module, so it cannot be an entry of a "
            "list (an nn.Sequential); write it outside the list",
            where,
        )


def numbered_model(layers: list[dict[str, Any]]) -> bool:
    """The model's own layers all unnamed, a module among them: a numbered model, an
    nn.Sequential subclass whose children are `0`, `1`, ... (torchvision's detection trunks);
    its entries follow a list's rules (`check_list_entry`). Where some are named, an unnamed
    module is refused (`check_top_entry`); a model of unnamed merges, expressions, branches and
    stages with `names:` alone numbers nothing and stays as it was."""
    bodies = [body for entry in layers for written, body in entry.items() if written == POSITIONAL]
    return len(bodies) == len(layers) and any(_numbered_entry(item_kind(body), body) for body in bodies)


def _numbered_entry(kind: str, body: Any) -> bool:
    """An unnamed model-level entry that is a module of its own (or an `inline` instance's
    modules): numbered in a numbered model, else it needs a name."""
    op = ops.KINDS.get(kind)
    if kind == "branches" or (op is not None and (op.EXPRESSION or op.MERGE or op.PARAMETER)):
        return False  # no module of its own (its branches are named)
    return not (kind == "stage" and body.names != "{i}" and body.connectivity == "none")  # graph.named_into


def check_top_entry(kind: str, body: Any, where: Location) -> None:
    """An unnamed entry of the model's own list that is a module has no attribute to live in
    (`self.0` is no Python): unless none of the model's layers has a name (`numbered_model`),
    torchvision numbers modules only inside a list (`features.0`)."""
    if getattr(body, "inline", False):
        return  # refused with its own message
    if kind == "stage" and not _numbered_entry(kind, body):  # graph.named_into
        attribute = body.names.replace("{i}", "0").replace("{n}", "1")
        if not attribute.isidentifier():
            raise SpecError(
                f"this stage places its instances into the model as attributes under `names: {body.names}`, "
                f"and {attribute!r} is no Python attribute: use letters, digits and _ (`-` is for the keys of a "
                "list, `features: [...]`), or give the stage a name (`NAME: {stage: ...}`, an nn.Sequential)",
                where,
            )
        return  # its instances are attributes of the model under its `names:`
    if not _numbered_entry(kind, body):
        return
    raise SpecError(
        f"this {kind} is a module of the model, so it needs a name, its attribute and checkpoint key (`NAME: ...`); "
        "unnamed entries are numbered only inside a list (`features: [...]`, torchvision's `features.0`) or when "
        "none of the model's layers has a name (an nn.Sequential model, `0.weight`)",
        where,
    )


def check_named_instances(stage: StageInst, items: tuple[SymItem, ...], before: list[Inst], where: Location | None) -> None:
    """The names an unnamed stage with `names:` gives its instances in the enclosing list
    (`graph.named_into`) name nothing else there: another entry, or an instance of another
    such stage."""
    taken = {item.name for item in items} | {inst.name for inst in before}
    for inst in stage.instances:
        if inst.name in taken:
            raise SpecError(
                f"`names: {stage.names}` names an instance {inst.name!r}, a name another entry of this list has too: "
                "rename one, or give the stage a name (`NAME: {stage: ...}`, an nn.Sequential of its own)",
                where,
            )


def check_after_reads(source: BlockSource, written: str, reads: tuple[str, ...], where: Location) -> None:
    """`after:` runs on the merged output of a skip or dense block; the layers of `layers:` are
    the branch the merge closes, so an `after:` entry reads the output, not one of them."""
    inner = {name for entry in source.definition.layers for name in entry}
    for name in reads:
        if name in inner:
            raise SpecError(
                f"{written}: an `after:` entry reads the block's output after its {source.definition.connectivity} "
                f"connection, not {name!r} of its `layers:`; to use {name!r} there, write the block with "
                "`connectivity: none` and the shortcut as layers (`add: [...]`), or move this entry into `layers:`",
                where,
            )


def check_merge_named(written: str, kind: str, where: Location) -> None:
    """A merge with weights (a weighted sum) is a module: its name is its attribute."""
    if written == POSITIONAL and ops.KINDS[kind].WEIGHTS:
        raise SpecError(
            f"{kind} has weights, so it is a module and needs a name, its attribute (`fuse: {{{kind}: [a, b]}}`)", where
        )


def check_path(name: str, k: int, written: str, kind: str, body: Any, where: Location) -> None:
    """Path k of the module list `name` (`parallel:`) is an unnamed, unconditional module:
    a layer with a module of its own, a list, a block, or a module list whose paths are not
    module lists (a row of a grid, HRNet's `fuse_layers.i`)."""
    if written != POSITIONAL:
        raise SpecError(
            f"{name}.{k}: the paths of a parallel list are numbered (`{name}.{k}`), so they take no name; "
            "write the entry without one (named paths are `branches`)",
            where,
        )
    op = ops.KINDS.get(kind) if kind in ops.KINDS else None
    if kind not in ("block", "group", "parallel") and (op is None or op.MERGE or op.EXPRESSION or op.PARAMETER):
        raise SpecError(
            f"{name}.{k}: a path of a parallel list is a module of an nn.ModuleList: a layer with a module, "
            f"a list of layers, a block or a module list (a row of a grid), not {kind}",
            where,
        )
    if len(body.reads) > 1:
        raise SpecError(f"{name}.{k}: a path of a parallel list reads one tensor; an instance of a block with several inputs is an entry of its own", where)
    if body.if_ is not None:
        raise SpecError(f"{name}.{k}: a path of a parallel list cannot be conditional (its index would move); put `if:` on the list", where)
    if kind == "parallel" and any(item_kind(next(iter(e.values()))) == "parallel" for e in body.parallel):
        raise SpecError(
            f"{name}.{k}: a row of a grid of module lists (`{name}.{k}.j`) holds paths, not module lists of its own; "
            "a grid has two levels",
            where,
        )


@dataclass(frozen=True)
class Tensor:
    """A tensor a later entry may name: its node id (or `input`), shape and sign."""

    node: str
    shape: Shape
    nonneg: bool


def lookup(env: dict[str, Tensor], name: str, where: Location) -> Tensor:
    if name not in env:
        import difflib  # error messages only: not imported by a successful check

        hint = difflib.get_close_matches(name, list(env), n=1)
        guess = f"did you mean {hint[0]!r}? " if hint else ""
        known = ", ".join(env)
        raise SpecError(
            f"unknown tensor {name!r}: a layer reads `input` or an earlier layer of its list or an enclosing one; "
            f"{guess}known here: {known}",
            where,
        )
    return env[name]


def check_init(rules: Init, kind: str, where: Any) -> None:
    for role in ("weight", "bias"):
        problem = init.problem(getattr(rules, role), role, kind)
        if problem:
            raise SpecError(f"{kind} init {role}: {problem}", where)


def check_inline(source: BlockSource, where: Location) -> None:
    """A block written `inline` contributes its layers to a numbered list: they must be
    unnamed layers in sequence (what an nn.Sequential can hold), with no skip connection."""
    definition = source.definition
    for entry in definition.layers:
        ((written, body),) = entry.items()
        kind = item_kind(body)
        plain = kind in ops.KINDS and not ops.KINDS[kind].MERGE and not ops.KINDS[kind].EXPRESSION
        if written != POSITIONAL or not plain or body.from_ is not None or definition.connectivity != "none":
            raise SpecError(
                f"block {source.name!r} cannot be written `inline`: its layers become entries of a numbered list, "
                "so they must all be unnamed layers in sequence (no names, blocks, lists, merges, `from:` or skip)",
                where,
            )


def sc_index(source: BlockSource, k: int) -> tuple[int, ...]:
    return (k,) if isinstance(source.definition.shortcut, list) else ()


def join_path(path: tuple[str, ...], *more: str) -> str:
    return ".".join((*path, *more))


def counts_of(items: Any) -> Counts:
    total = Counts()
    for item in items:
        total = total + item.counts
    return total


def check_tap_variables(reads: set[str], defined: dict[str, Location]) -> None:
    """The code holds a tap `backbone.layer3` in the variable `backbone_layer3`: no layer may
    have that name."""
    for name in sorted(n for n in reads if "." in n):
        variable = path_variable(name)
        if variable in defined:
            raise SpecError(
                f"layer {variable!r} has the name the generated code gives the tap {name!r}; rename the layer",
                defined[variable],
            )
