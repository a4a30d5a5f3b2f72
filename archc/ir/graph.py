"""The graph IR: an expanded dataflow graph plus the hierarchy it came from.

- `Node`: one primitive op in the expanded graph, with its output shape and
  parameter counts. Ids are dotted module paths (`layer1.0.conv1`), so they are
  deterministic and equal to PyTorch state_dict prefixes.
- `BlockType`: a block kind with symbolic layer arguments (expressions over its
  parameters and `in_channels`), from which emitters write one class or
  function per kind.
- `LayerInst` / `BlockInst` / `StageInst` / `GroupInst`: the instance tree with
  concrete arguments and shapes; stages keep their repeat structure so
  emitters can write loops.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

from archc.errors import Location
from archc.ops import KINDS, Op, Shape
from archc.ops.init import Init


@dataclass(frozen=True)
class Node:
    """One op of the flat graph: its id (the PyTorch module path), the op and the ids of its inputs."""

    id: str
    op: Op
    inputs: tuple[str, ...]
    shape: Shape
    trainable: int = 0
    non_trainable: int = 0
    macs: int = 0
    where: Location | None = field(default=None, compare=False, repr=False)  # the spec entry it comes from
    # what each input edge is: data (the previous tensor or a named one), residual (a skip
    # connection's shortcut), dense (the running concatenation of a dense stage), branch
    # (a parallel branch into its merge), gate (a squeeze-and-excitation multiplier)
    edges: tuple[str, ...] = ()

    def edge(self, i: int) -> str:
        return self.edges[i] if self.edges else "data"


@dataclass(frozen=True)
class SymLayer:
    """A layer of a block kind, its arguments as expressions (Python `ast`)."""

    name: str
    kind: str
    args: tuple[tuple[str, ast.expr], ...]
    in_channels: ast.expr  # channels entering this layer, as an expression
    nonneg_in: bool = False  # input known to be >= 0 (after relu), for max-pool padding
    inputs: tuple[str, ...] = ()  # tensors read by name (`input`, earlier layers); () is the previous one
    condition: ast.expr | None = None  # present only where this holds
    flat: tuple[bool, ...] = ()  # per input: flat (C,) rather than a map
    # the tensor it passes on where its condition fails, when not the one it reads (the
    # merge of `branches` passes on the branches' input, not the last branch's output)
    passes: str | None = None
    where: Location | None = field(default=None, compare=False)  # the spec entry
    at: tuple[Any, ...] = field(default=(), compare=False)  # its YAML path in the block's source

    def arg(self, key: str) -> ast.expr:
        return dict(self.args)[key]


@dataclass(frozen=True)
class SymBlock:
    """An instance of another block kind inside a block kind; its arguments are expressions
    over the outer kind's parameters and `in_channels`."""

    name: str
    block: str
    args: tuple[tuple[str, ast.expr], ...]  # parameters given (the others keep their defaults)
    flags: tuple[tuple[str, ast.expr], ...]  # the inner kind's shortcut switches, as conditions
    in_channels: ast.expr
    inputs: tuple[str, ...] = ()
    condition: ast.expr | None = None
    where: Location | None = field(default=None, compare=False)
    at: tuple[Any, ...] = field(default=(), compare=False)
    more_channels: tuple[ast.expr, ...] = ()  # a kind with several inputs: the channels of the later ones
    more_outputs: tuple[str, ...] = ()  # a kind with several outputs: the names of the later ones
    inline: bool = False  # the top function's `inline` entry: its layers are entries of the enclosing list
    table: TableEntry | None = field(default=None, compare=False)  # a table's `between` instance before row k


@dataclass(frozen=True)
class SymStage:
    """A stage inside a block kind: `repeat` instances of `block`, in sequence or dense."""

    name: str
    block: str
    repeat: ast.expr
    connectivity: str  # none | dense
    names: str  # instance name pattern, {i} from 0 or {n} from 1
    first: SymBlock  # the first instance (name unused)
    rest: SymBlock  # every later one; in dense stages its in_channels grows with the loop variable `i`
    in_channels: ast.expr
    inputs: tuple[str, ...] = ()
    condition: ast.expr | None = None
    where: Location | None = field(default=None, compare=False)
    at: tuple[Any, ...] = field(default=(), compare=False)
    free: bool = False  # the top function's: each instance reads the shape the one before gives
    written: tuple[tuple[tuple[str, ast.expr], ...], ...] = ()  # a free stage's `with:`, `first:`, `last:`
    inline: bool = False  # the top function's `inline` entry: its instances' layers are entries of the list
    table: TableEntry | None = field(default=None, compare=False)  # a row of a `flat` table


@dataclass(frozen=True)
class SymGroup:
    """A list inside a block kind (an nn.Sequential); entries may be conditional."""

    name: str
    children: tuple[SymItem, ...]
    in_channels: ast.expr
    inputs: tuple[str, ...] = ()
    condition: ast.expr | None = None
    where: Location | None = field(default=None, compare=False)
    at: tuple[Any, ...] = field(default=(), compare=False)
    # a `modules:` container (nn.ModuleDict / nn.ModuleList), its entries wired by dataflow as
    # at model level (GroupInst.dataflow): their `inputs` are the block's paths (`fuse.1.0`);
    # one without inputs reads the one before it in `flat_items` order
    dataflow: bool = False
    # a row of a table of stages (`stages:`): the group is the row's stage, an nn.Sequential of
    # its instances (a `flat` table's rows are SymStages, a `between` instance a SymBlock)
    table: TableEntry | None = field(default=None, compare=False)

    @property
    def positional(self) -> bool:
        return bool(self.children) and all(c.name.isdigit() for c in self.children)


@dataclass(frozen=True)
class SymTable:
    """A table of stages as the spec writes it (`stages:`): each row one stage of `block`."""

    block: str
    columns: tuple[str, ...]
    cells: tuple[tuple[ast.expr, ...], ...]  # per row, a value per column
    # every argument the instances are given, as one expression over the columns, `i` (the
    # instance's index in its stage), `stage_block_id` and `total_stage_blocks`: `with:`, the
    # columns that are parameters, `first:` as `X if i == 0 else ...`, `last:` as `X if i == repeat - 1 else ...`
    args: tuple[tuple[str, ast.expr], ...]
    flat: bool = False  # each row's instances are entries of the list, not an nn.Sequential
    where: Location | None = field(default=None, compare=False)
    # `between:` the block kind before each row but the first, and its arguments over the columns
    between: tuple[str, tuple[tuple[str, ast.expr], ...]] | None = None


@dataclass(frozen=True)
class TableEntry:
    """Where a list entry comes from in a table of stages: row `row`'s stage, or (`between`) the
    block instance before it."""

    table: SymTable
    row: int
    between: bool = False


@dataclass(frozen=True)
class Table:
    """A table of stages in a list (`GroupInst.tables`): from the list's entry `start` on, one
    stage per row, `repeat` instances of `block` each: an nn.Sequential per row (its entries
    `start` to `start + len(rows) - 1`), or, `flat`, the instances themselves, entries of the
    list. Lowering checked that the arguments, evaluated per instance over its row, its index
    and its `stage_block_id`, are the instances' arguments, and `out_channels` their channels,
    so a loop over the rows builds those very instances."""

    start: int
    flat: bool
    end: int  # the list's entry after the table's last
    block: str
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]  # each row's values, evaluated
    args: tuple[tuple[str, ast.expr], ...]  # SymTable.args, the model's parameters folded in
    out_channels: ast.expr  # an instance's output channels, over the same names and `in_channels`
    block_id: int | None  # `stage_block_id` of the first instance (None: not at model level)
    total_stage_blocks: int | None
    # `between:` before each row but the first, an entry of the list: its kind, its arguments over
    # the row's columns (parameters folded in) and its output channels, over them and `in_channels`
    between: tuple[str, tuple[tuple[str, ast.expr], ...], ast.expr] | None = None


@dataclass(frozen=True)
class SymParallel:
    """A module list inside a block kind (an nn.ModuleList): paths named `0`, `1`, ... (each a
    layer, a list, a block or a module list of its own: a row of a grid), each reading its
    own tensor, their outputs merged."""

    name: str
    children: tuple[SymItem, ...]  # the paths, named by their position
    merge: str  # concat | add | multiply
    in_channels: ast.expr
    inputs: tuple[str, ...] = ()  # per path, the tensor it reads; a row's paths, each theirs (path_reads)
    flat: tuple[bool, ...] = ()  # per path, whether its output is flat (C,)
    passes: str | None = None  # what it passes on where its condition fails: the list's input
    condition: ast.expr | None = None
    where: Location | None = field(default=None, compare=False)
    at: tuple[Any, ...] = field(default=(), compare=False)


SymItem = Union[SymLayer, SymBlock, SymStage, SymGroup, SymParallel]


def flat_items(items: Sequence[Any]) -> tuple[Any, ...]:
    """A list of a block kind's items (or the model's) with its `modules:` containers opened:
    their entries, named by path (`fuse.1.0`), in the order the code calls them; a read of a
    container by its name reads its last entry. Items without containers are returned as they are."""
    if not any(isinstance(i, (SymGroup, GroupInst)) and i.dataflow for i in items):
        return tuple(items)
    out: list[Any] = []

    def walk(group: Sequence[Any], prefix: str) -> None:
        for item in group:
            if isinstance(item, (SymGroup, GroupInst)) and item.dataflow:
                walk(item.children if isinstance(item, SymGroup) else item.items, f"{prefix}{item.name}.")
            else:
                out.append(dataclasses.replace(item, name=prefix + item.name) if prefix else item)

    walk(items, "")
    last = container_results(out)  # a container read by its name gives its last entry's tensor

    def resolved(item: Any) -> Any:
        passes = getattr(item, "passes", None)
        if passes in last:
            item = dataclasses.replace(item, passes=last[passes])
        return dataclasses.replace(item, inputs=tuple(last.get(n, n) for n in item.inputs)) if set(item.inputs) & set(last) else item

    return tuple(resolved(i) for i in out)


def merged_containers(items: Any) -> dict[str, Any]:
    """The `modules:` containers of a list (SymGroup or GroupInst, dataflow) by name, the pieces
    of one written entry by entry (`convs.0`, `convs.1`: archc.lower.containers.piece) joined into one."""
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, (SymGroup, GroupInst)) and item.dataflow:
            if item.name in out:
                key = "children" if isinstance(item, SymGroup) else "items"
                item = dataclasses.replace(out[item.name], **{key: (*getattr(out[item.name], key), *getattr(item, key))})
            out[item.name] = item
    return out


def path_reads(paths: Sequence[Any], inputs: Sequence[str]) -> list[tuple[str, ...]]:
    """What each path of a module list reads, from the list's `inputs` (one per path, a row
    of a grid one per path of its own, in order): one tensor, or a row's several."""
    out: list[tuple[str, ...]] = []
    k = 0
    for path in paths:
        n = len(path.children) if isinstance(path, SymParallel) else len(path.items) if isinstance(path, ParallelInst) else 1
        out.append(tuple(inputs[k:k + n]))
        k += n
    return out


def spliced(item: SymItem, numbered: bool) -> bool:
    """An unnamed stage of a numbered list (a positional list, or a block kind whose layers are
    all unnamed) contributes its instances to the list's numbering, as torchvision's `_stack` is
    `nn.Sequential(first, *remaining)`."""
    return isinstance(item, SymStage) and item.name.isdigit() and numbered and item.connectivity == "none" and item.names == "{i}"


def named_into(item: SymItem) -> bool:
    """An unnamed stage with a `names:` pattern (`conv2_{n}`): its instances are entries of the
    enclosing list under those names (`conv2_1`, `conv2_2`; at model level, attributes of the
    model), with no level of their own, as many checkpoints lay them out."""
    return isinstance(item, SymStage) and item.name.isdigit() and item.names != "{i}" and item.connectivity == "none"


def is_merge(item: object) -> bool:
    """A layer that reads several tensors (add, concat, multiply, the merge of branches)."""
    if isinstance(item, SymLayer):
        return KINDS[item.kind].MERGE
    return isinstance(item, LayerInst) and item.op.MERGE


def passed_on(item: SymItem | LayerInst, prev: str) -> str:
    """The tensor an item passes on where its condition fails, `prev` being the one before it:
    a merge of branches the branches' input, another merge the tensor before it, any other
    item what it reads. Lowering, the liveness pass and both emitters ask this one rule."""
    passes = getattr(item, "passes", None)
    if passes:
        return passes
    return prev if is_merge(item) else (item.inputs or (prev,))[0]


@dataclass(frozen=True)
class SymShortcut:
    """A block kind's shortcut, with `when` as the condition its code tests."""

    kind: str  # projection | option_a
    when: str  # shape_changes | always | expression (see `condition`)
    condition: ast.expr | None  # `when` as an expression over the block's parameters
    input: str | None  # the layer whose output it reads; None: the block input
    name: str
    in_channels: ast.expr
    out_channels: ast.expr
    stride: ast.expr  # of the branch from `input` on
    batchnorm: bool
    bias: bool
    eps: float | None
    momentum: float | None


@dataclass(frozen=True)
class BlockType:
    """A block kind as its generated class or function is written: parameters and symbolic layers."""

    name: str
    doc: str
    params: tuple[tuple[str, object, str], ...]  # (name, default or None when required, type)
    connectivity: str  # none | skip
    layers: tuple[SymItem, ...]
    after: tuple[SymItem, ...]
    shortcuts: tuple[SymShortcut, ...]
    out_channels: ast.expr
    stride: ast.expr  # of the whole block
    where: Location
    nonneg_out: bool = False  # its output is known to be >= 0 (it ends with a relu)
    # its layers are unnamed and run in sequence: an nn.Sequential subclass in PyTorch (torchvision's
    # Conv2dNormActivation), numbered `0`, `1`, ...; its unnamed stages number on (`_stack`)
    numbered: bool = False
    inputs: tuple[str, ...] = ("input",)  # the names its layers read its inputs by
    # several outputs: the layers whose tensors it returns, the first being its value (out_channels,
    # stride); for each later one, (name, channels, stride) as expressions
    outputs: tuple[str, ...] = ()
    more_outputs: tuple[tuple[str, ast.expr, ast.expr], ...] = ()
    class_name: str | None = None  # its `class:` as spelled; None: a backend derives one from the name
    sum: str = "in_place"  # skip: PyTorch's forward writes `out += identity` (in_place) or `out = identity + out` (new)

    @property
    def channel_params(self) -> tuple[str, ...]:
        """The constructor's channel arguments, one per input."""
        return channel_params(self.inputs)


def channel_params(inputs: Sequence[str]) -> tuple[str, ...]:
    """The channels of a block kind's inputs, as its expressions and its generated constructor
    name them: `in_channels` for the one `input`, `low_channels`, `high_channels` for `inputs:
    [low, high]` (torchvision's LRASPPHead(low_channels, high_channels, ...))."""
    return ("in_channels",) if tuple(inputs) == ("input",) else tuple(f"{n}_channels" for n in inputs)


@dataclass(frozen=True)
class Counts:
    """Parameter counts: trainable, and non-trainable (BatchNorm statistics)."""

    trainable: int = 0
    non_trainable: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.trainable + other.trainable, self.non_trainable + other.non_trainable)

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable


@dataclass(frozen=True)
class LayerInst:
    """A primitive layer of the model, with its shapes and counts."""

    name: str
    op: Op
    in_shape: Shape
    out_shape: Shape
    counts: Counts
    nonneg_in: bool = False
    exposed: tuple[tuple[str, str], ...] = ()  # (attr, model param) emitted as a build_model argument
    where: Location | None = None  # where the spec writes it, for a backend's complaints
    inputs: tuple[str, ...] = ()  # the tensors it reads by name (a merge's, or `from:`); () is the previous one
    output: str = ""  # the IR node that gives its value


@dataclass(frozen=True)
class BlockInst:
    """One instance of a block kind: its argument values, items, shapes and counts."""

    name: str
    block: str
    args: tuple[tuple[str, object], ...]  # every parameter's concrete value
    shortcut: str | None  # name of the shortcut this instance uses; None: identity
    in_shape: Shape
    out_shape: Shape
    counts: Counts
    children: tuple[Inst, ...] = ()
    inputs: tuple[str, ...] = ()
    output: str = ""  # the IR node that gives its value
    # In a stage whose arguments use the instance index `i`: (parameter, its expression over `i`
    # alone, the model's parameters folded in), for emitters to write loops; and this index.
    indexed: tuple[tuple[str, ast.expr], ...] = field(default=(), compare=False)
    index: int = 0
    more_in: tuple[Shape, ...] = ()  # a kind with several inputs: the shapes of the later ones
    exposed: tuple[tuple[str, str], ...] = ()  # (parameter, model param) passed on from build_model()
    more_out: tuple[tuple[str, str, Shape], ...] = ()  # a kind with several outputs: (name, node, shape) of the later ones

    @property
    def more_outputs(self) -> tuple[str, ...]:
        return tuple(name for name, _, _ in self.more_out)


def instance_name(pattern: str, k: int) -> str:
    """The name of instance `k` (from 0) of a stage whose instances are named `pattern`
    (`names:`): `{i}` is k, `{n}` is k + 1 (`denselayer{n}`, `block1-{i}`)."""
    return pattern.replace("{i}", str(k)).replace("{n}", str(k + 1))


def instance_of(pattern: str, name: str) -> bool:
    """Whether `name` is one `instance_name` gives for some k (`conv2_2` of `conv2_{n}`)."""
    parts = re.split(r"\{[in]\}", pattern)
    return re.fullmatch("[0-9]+".join(map(re.escape, parts)), name) is not None


@dataclass(frozen=True)
class StageInst:
    """A block repeated `repeat` times (in sequence or densely connected)."""

    name: str
    block: str
    connectivity: str  # none | dense
    names: str  # instance name pattern, {i} from 0 or {n} from 1
    instances: tuple[BlockInst, ...]
    in_shape: Shape
    out_shape: Shape
    counts: Counts
    inputs: tuple[str, ...] = ()
    output: str = ""  # the IR node that gives its value


@dataclass(frozen=True)
class GroupInst:
    """A named list of items (a container such as torchvision's `features`)."""

    name: str
    items: tuple[Inst, ...]
    in_shape: Shape
    out_shape: Shape
    counts: Counts
    inputs: tuple[str, ...] = ()
    output: str = ""  # the IR node that gives its value
    # block instances written `inline`: (index of their first layer in `items`, their number of
    # layers, the instance); the layers are numbered entries of this list (torchvision's VGG)
    inlined: tuple[tuple[int, int, BlockInst], ...] = ()
    # unnamed stages with `names:` (`named_into`): (index of their first instance in `items`,
    # the stage); their instances are entries of this list under the stage's names
    named: tuple[tuple[int, StageInst], ...] = field(default=(), compare=False)
    # entries wired by dataflow (`modules:`), not run in sequence: an nn.ModuleDict or
    # nn.ModuleList whose entries the model calls one by one; their `inputs` are model-level
    # names (`fpn.inner_blocks.2`), and an entry without inputs reads the one before it in
    # `flat_body` order
    dataflow: bool = False
    tables: tuple[Table, ...] = field(default=(), compare=False)  # tables among `items` (emitters print a loop)

    @property
    def positional(self) -> bool:
        """Entries numbered like an nn.Sequential's children."""
        return bool(self.items) and all(item.name.isdigit() for item in self.items)


@dataclass(frozen=True)
class ParallelInst:
    """A module list (`parallel:`): its paths `items`, named `0`, `1`, ..., each reading its
    own tensor (`inputs`, one per path), merged by `merge` into the node `output`."""

    name: str
    merge: str  # concat | add | multiply
    items: tuple[Inst, ...]
    in_shape: Shape
    out_shape: Shape
    counts: Counts
    inputs: tuple[str, ...] = ()  # per path; a row of a grid one per path of its own (path_reads)
    output: str = ""  # the merge's IR node


Inst = Union[LayerInst, BlockInst, StageInst, GroupInst, ParallelInst]


def keras_name(node_id: str) -> str:
    """The Keras layer name of an IR node, as the Keras backend writes it and weight transfer
    reads it: `layer1.0.conv1` -> `layer1_0_conv1`."""
    return node_id.replace(".", "_")


def path_variable(path: str) -> str:
    """The variable the generated code holds a tensor read by its path in (`backbone.layer3`:
    `backbone_layer3`); lowering refuses a layer of that name."""
    return path.replace(".", "_")


def tapped_groups(items: Sequence[Any], outputs: Iterable[str]) -> dict[str, set[str]]:
    """Groups among `items` (run in sequence) whose entries later items or the outputs read
    from outside them (`from: backbone.layer3`): group -> those entries. The code runs such a
    group in pieces, and verify reads its last entry's module."""
    groups = {item.name for item in items if isinstance(item, (GroupInst, SymGroup))}
    taps: dict[str, set[str]] = {}
    for name in [*(n for item in items for n in item.inputs), *outputs]:
        group, dot, entry = name.rpartition(".")
        if dot and group in groups:
            taps.setdefault(group, set()).add(entry)
    return taps


def container_results(flat: tuple[Inst, ...] | list[Inst]) -> dict[str, str]:
    """For the `modules:` containers among the items of `Graph.flat_body`: container path ->
    the path of its last entry, whose tensor reading the container by name gives."""
    last: dict[str, str] = {}
    for item in flat:
        parts = item.name.split(".")
        for k in range(1, len(parts)):
            last[".".join(parts[:k])] = item.name
    return last


@dataclass(frozen=True)
class Output:
    """One of the model's outputs (`outputs:`): its key, the model-level item whose tensor it
    is (`input` for the input itself), that tensor's node and shape."""

    key: str
    item: str
    node: str
    shape: Shape


@dataclass(frozen=True)
class Graph:
    """The lowered model: every op with shapes and counts, the item tree and the block kinds."""

    name: str
    doc: str
    input_shape: Shape
    output_shape: Shape
    params: tuple[tuple[str, object], ...]  # model parameters, evaluated
    exposed: tuple[tuple[str, object], ...]  # those that build_model() accepts, with defaults
    blocks: tuple[BlockType, ...]  # in order of first use
    body: tuple[Inst, ...]
    nodes: tuple[Node, ...] = field(repr=False)
    source: str  # spec path as given
    sha256: str
    # where names that reach generated code are written: "name", "class", "params.P", "block.B",
    # "block.B.class", "block.B.params.P", "block.B.shortcut" (for a backend's complaints about them)
    locations: tuple[tuple[str, Location], ...] = field(default=(), repr=False)
    # each weighted kind's rules from `defaults:` (ops.init), which its layers share unless they say
    inits: tuple[tuple[str, Init], ...] = ()
    # several outputs, in order (`outputs:`; forward returns a dict); () : the last tensor alone,
    # whose shape is `output_shape` (with several, `output_shape` is the first one's)
    outputs: tuple[Output, ...] = ()
    class_name: str | None = None  # the model's `class:` as spelled; None: a backend derives one from the name
    # the model's layers are all unnamed (`numbered_model`): its children are numbered `0`, `1`, ...,
    # an nn.Sequential subclass in PyTorch (torchvision's detection trunks)
    numbered: bool = False
    inlined: tuple[tuple[int, int, BlockInst], ...] = ()  # its instances written `inline` (GroupInst.inlined)

    def locate(self, key: str) -> Location | None:
        return dict(self.locations).get(key)

    def init(self, kind: str) -> Init:
        return dict(self.inits)[kind]

    @property
    def counts(self) -> Counts:
        return Counts(sum(n.trainable for n in self.nodes), sum(n.non_trainable for n in self.nodes))

    def block(self, name: str) -> BlockType:
        return next(b for b in self.blocks if b.name == name)

    def flat_body(self) -> tuple[Inst, ...]:
        """The model's items in order with its `modules:` containers opened: their entries,
        named by path (`fpn.inner_blocks.0`), as the model's forward calls them."""
        return flat_items(self.body)

    def tapped(self) -> dict[str, set[str]]:
        """Model-level groups run in sequence whose entries are read from outside them: see
        `tapped_groups`."""
        return tapped_groups(self.flat_body(), [o.item for o in self.outputs])

