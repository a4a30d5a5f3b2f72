"""Lowering: a validated spec becomes the graph IR.

Lowering walks the spec top to bottom with the current shape in hand, because
expressions may read it (`in_channels`, `channels`). For every block kind it
also records a symbolic form (`BlockType`) so emitters can write one class per
kind. Shape rules and parameter counts live in the ops (`archc.ops`);
lowering only applies them and turns their complaints into located errors.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Counts,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    Node,
    StageInst,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymShortcut,
    SymStage,
    instance_name,
    spliced,
)
from archc.ops import Shape, ShapeError, init
from archc.ops.init import Init
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource, LoadedSpec
from archc.spec.models import POSITIONAL
from archc.spec.yamlsrc import SourceMap

# Limits that keep a spec from asking for an absurd graph; raise them deliberately.
MAX_NODES = 200_000  # expanded graph size; far above any published CNN
MAX_CHANNELS = 1_000_000  # channels, units, kernel sizes: any integer argument
MAX_REPEAT = 10_000  # instances in one stage
MAX_ELEMENTS = 10**9  # values in one feature map (C*H*W)
MAX_PARAMS = 10**10  # parameters in the whole model (40 GB of float32)
MAX_BLOCK_DEPTH = 16  # blocks inside blocks; real networks nest two or three

def item_kind(body: Any) -> str:
    return _kind_of(type(body))


@functools.cache
def _kind_of(cls: type) -> str:
    return next(k for k in m._ITEM_KEYS if k in cls.model_fields)


@dataclass
class _Ctx:
    """Where lowering is: the file and YAML path of the current list, the scope of names."""

    source: SourceMap
    yaml_path: tuple[Any, ...]
    module_path: tuple[str, ...]
    scope: dict[str, expr.Value]
    top_level: bool  # model-level items (model params are in scope)

    def where(self, *sub: Any) -> Location:
        return self.source.locate((*self.yaml_path, *sub))


@dataclass
class _State:
    """What lowering accumulates for one model: nodes, block kinds, names in use."""

    spec: LoadedSpec
    nodes: list[Node] = field(default_factory=list)
    block_types: dict[str, BlockType] = field(default_factory=dict)
    param_refs: dict[str, list[tuple[int, str, LayerKey]]] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)  # model params used where they cannot be arguments
    top_kinds: list[str] = field(default_factory=list)  # kinds of model-level items, in order
    block_stack: list[str] = field(default_factory=list)
    typing: list[str] = field(default_factory=list)  # block kinds whose symbolic form is being built
    # (block, parameter, value) -> where a model parameter behind that argument was set (extends, --set)
    arg_notes: dict[tuple[str, str, Any], str] = field(default_factory=dict)
    params: int = 0  # parameters so far, trainable and not
    inits: dict[str, Init] = field(default_factory=dict)  # each kind's rules from `defaults:` (ops.init)

    def init(self, kind: str) -> Init:
        """The rules of `kind` in `defaults:` (unset: torch_default), checked where they are written."""
        if kind not in self.inits:
            written = getattr(self.spec.model.defaults, kind).init
            self.inits[kind] = init.default_init(written)
            if written is not None:
                _check_init(self.inits[kind], kind, self.spec.locate("defaults", kind, "init"))
        return self.inits[kind]


LayerKey = tuple[str, ...]


@expr.work_budget
def lower(spec: LoadedSpec) -> Graph:
    """Lower a loaded spec to the IR; raises SpecError for any mistake in the spec."""
    model = spec.model
    state = _State(spec)
    scope: dict[str, expr.Value] = {}
    top = _Ctx(spec.source, ("params",), (), scope, True)
    for name, raw in model.params.items():
        scope[name] = _value(raw, scope, top.where(name), "param", state=state, ref_ok=False)
    _run_checks(model.checks, scope, _Ctx(spec.source, ("checks",), (), scope, True), state)
    c, h, w = model.input
    in_shape = Shape(c, h, w)
    if max(c, h, w) > MAX_CHANNELS or in_shape.numel() > MAX_ELEMENTS:
        raise SpecError(
            f"input {in_shape} exceeds the limits of {MAX_CHANNELS} per dimension and {MAX_ELEMENTS} values; "
            "raise archc.lower.MAX_CHANNELS / MAX_ELEMENTS deliberately if you mean it",
            spec.locate("input"),
        )
    _check_size(state, model.layers, {**scope, "in_channels": c}, ("layers",))
    top = _Ctx(spec.source, ("layers",), (), {**scope, "in_channels": c}, True)
    body, out_shape, _, _ = _lower_items(state, top, model.layers, in_shape, "input", False)
    if out_shape.last:
        where = spec.locate("layers", len(model.layers) - 1)
        raise SpecError("the model ends with a map PyTorch holds channels-last; end with `permute: {to: channels_first}`", where)
    exposed = _exposed_params(state, scope)
    body = tuple(_mark_exposed(item, exposed, state.param_refs) for item in body)
    return Graph(
        name=model.name,
        doc=model.doc,
        input_shape=in_shape,
        output_shape=out_shape,
        params=tuple(scope.items()),
        exposed=tuple((p, scope[p]) for p in exposed),
        blocks=tuple(state.block_types.values()),
        body=body,
        nodes=tuple(state.nodes),
        inits=tuple((kind, state.init(kind)) for kind in init.KINDS if init.section(kind) == kind),
        source=shlex.join([spec.path, *(a for o in spec.overrides for a in ("--set", o))]),
        sha256=spec.sha256,
        locations=_locations(state),
    )


# --- values ------------------------------------------------------------------------


def _value(
    raw: Any, scope: dict[str, expr.Value], where: Location | None, want: str, *, state: _State | None = None,
    ref_ok: bool = False, ref: tuple[int, str, LayerKey] | None = None,
) -> Any:  # fmt: skip
    """Evaluate a literal or expression and check its type (int, num, bool, param; pair:
    an int, or [height, width] ints, which becomes a tuple)."""
    if want == "pads" and isinstance(raw, list):  # [[top, bottom], [left, right]]
        return tuple(_value(v, scope, where, "pair", state=state) for v in raw)
    if want in ("pair", "pads"):
        if isinstance(raw, list):
            return tuple(_value(v, scope, where, "int", state=state) for v in raw)
        want = "int"
    value = raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            value = expr.bounded(raw)  # YAML's .inf and .nan, or a 60-digit literal
        except expr.ExprError as e:
            raise SpecError(str(e), where) from None
    if isinstance(raw, str):
        try:
            tree, names = _parse(raw)
            value = expr.evaluate(tree, scope)
        except expr.ExprError as e:
            hint = ""
            if STAGE_INDEX not in scope and re.search(rf"\b{STAGE_INDEX}\b", raw):
                hint = f"; `{STAGE_INDEX}`, the instance index, exists in a stage's `with`, `first` and `last` at model level"
            raise SpecError(str(e) + hint + _provenance(state, raw, where), where) from None
        if state is not None:
            for name in names & state.spec.model.params.keys():
                if ref_ok and ref is not None and raw.strip() == name:
                    state.param_refs.setdefault(name, []).append(ref)
                else:
                    state.pinned.add(name)
    problem = _type_problem(value, want)
    if problem:
        raise SpecError(problem + _provenance(state, raw, where), where)
    return float(value) if want == "num" else value


def _type_problem(value: Any, want: str) -> str | None:
    if want in ("int", "param_int"):
        if isinstance(value, bool) or not isinstance(value, int):
            hint = "; use // or int(...) for whole numbers" if isinstance(value, float) else ""
            return f"must be an integer, got {value!r}{hint}"
        if value > MAX_CHANNELS:
            return (
                f"{value} exceeds the limit of {MAX_CHANNELS} for a layer size; "
                "raise archc.lower.MAX_CHANNELS deliberately if you mean it"
            )
    elif want in ("num", "param_float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"must be a number, got {value!r}"
    elif want in ("bool", "param_bool") and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    return None


def _provenance(state: _State | None, raw: Any, where: Location | None) -> str:
    """' (depth = 21 from --set params.depth=21)' for each model parameter in `raw` that was
    set in another file than `where` (an extending spec, a --set), else ''."""
    notes = _notes(state, raw, where)
    return f" ({'; '.join(notes)})" if notes else ""


def _notes(state: _State | None, raw: Any, where: Location | None) -> list[str]:
    if state is None or where is None or not isinstance(raw, str):
        return []  # without a location yet, the caller adds the notes when it locates the error
    try:
        names = expr.free_names(expr.parse(raw)) & set(state.spec.model.params)
    except expr.ExprError:
        return []
    notes = []
    for name in sorted(names):
        source = state.spec.source.locate(("params", name))
        if source.file != where.file:
            notes.append(f"{name} = {state.spec.model.params[name]!r} from {source}")
    return notes


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[ast.expr, frozenset[str]]:
    """Parse each distinct expression once: a deep stage evaluates the same few many times."""
    tree = expr.parse(text)
    return tree, expr.free_names(tree)


def _run_checks(checks: list[m.Check], scope: dict[str, expr.Value], ctx: _Ctx, state: _State) -> None:
    """Fail on the first false check, saying where its model parameters were set if elsewhere."""
    for i, check in enumerate(checks):
        ok = _value(check.that, scope, ctx.where(i, "that"), "any", state=state)
        if not ok:

            def fill(name: str) -> str:
                return repr(scope[name]) if name in scope else "{" + name + "}"

            message = _format_message(check.message, fill)
            where = ctx.where(i)
            raise SpecError(message + (_provenance(state, check.that, where) if ctx.top_level else ""), where)


def _block_checks(state: _State, source: BlockSource, scope: dict[str, Any], where: Location) -> None:
    """A block's rules, reported where the failing instance is written (the rule may live in a library)."""
    for i, check in enumerate(source.definition.checks):
        if not _value(check.that, scope, source.locate("checks", i, "that"), "any"):
            names = sorted(expr.free_names(expr.parse(check.that)))
            notes = [state.arg_notes[key] for key in ((source.name, n, scope.get(n)) for n in names) if key in state.arg_notes]
            message = _format_message(check.message, lambda n: repr(scope[n]) if n in scope else "{" + n + "}")
            rule = f"rule of block {source.name!r} at {source.locate('checks', i)}"
            raise SpecError(f"{message} ({'; '.join([*notes, rule])})", where)


def _format_message(template: str, fill: Any) -> str:
    """Replace {name} by values; nothing else of str.format is available to specs."""
    out, i = [], 0
    while i < len(template):
        j = template.find("{", i)
        k = template.find("}", j + 1) if j >= 0 else -1
        if j < 0 or k < 0 or not template[j + 1 : k].isidentifier():
            out.append(template[i:] if j < 0 or k < 0 else template[i : j + 1])
            i = len(template) if j < 0 or k < 0 else j + 1
            continue
        out.append(template[i:j] + fill(template[j + 1 : k]))
        i = k + 1
    return "".join(out)


# --- items ---------------------------------------------------------------------------


def _lower_items(
    state: _State, ctx: _Ctx, entries: list[dict[str, Any]], shape: Shape, cur: str, nonneg: bool,
    seen: dict[str, Any] | None = None, uses: dict[str, int] | None = None, env: dict[str, Tensor] | None = None,
    offset: int = 0, prev: str = "input", in_group: bool = False, first_position: int = 0,
    inlined: list[tuple[int, int, BlockInst]] | None = None, numbered: bool = False,
) -> tuple[tuple[Inst, ...], Shape, str, bool]:  # fmt: skip
    """Lower a list of `name: layer` entries in sequence.

    Each entry reads the previous tensor, or the ones it names (`from:`, a merge's
    list) from `env`: the tensors of this list and of the lists enclosing it, by
    spec name, `input` among them. `seen`/`uses` track names across lists that
    share a module (a block's layers and `after`). Unnamed entries are numbered from
    `first_position`; `inlined` collects the block instances written `inline` in this
    list, as (index of their first layer in the result, number of layers, instance). An
    unnamed stage of a list (`in_group`) or of a numbered block kind (`numbered`, see
    `_numbered`) contributes its instances to the numbering.
    """
    items: list[Inst] = []
    seen = {} if seen is None else seen
    uses = {} if uses is None else uses
    model_level = env is None and ctx.top_level
    env = {"input": Tensor(cur, shape, nonneg)} if env is None else env
    position = first_position
    reads: set[str] = set()
    defined: dict[str, Location] = {}
    flow = _Flow()
    for index, entry in enumerate(entries, start=offset):
        (written, body), = entry.items()
        kind = item_kind(body)
        where = ctx.where(index, written)
        if in_group:
            _check_list_entry(_shown(written, index), kind, body, where)
        inputs: tuple[str, ...] = ()
        if body.from_ is not None:  # its input, whether it is present or passes that input on
            source = _lookup(env, body.from_, ctx.where(index, written, "from"))
            cur, shape, nonneg = source.node, source.shape, source.nonneg
            inputs = (body.from_,)
        if body.if_ is not None and not _value(body.if_, {**ctx.scope, "channels": shape.c}, ctx.where(index, written, "if"), "bool", state=state):
            if written != POSITIONAL:
                env[written] = Tensor(cur, shape, nonneg)  # an absent layer passes its input on
                flow.aliases[written] = body.from_ or prev
                prev = written
            flow.excused.update(flow.resolve(n) for n in _merged_names(body, kind))
            continue
        name = str(position) if written == POSITIONAL else written
        position += 1
        first_node, first_item = len(state.nodes), len(items)
        if name in seen and not (kind == "act" and seen[name] == body):
            raise SpecError(f"duplicate layer name {name!r} in this list; only identical activations may share a name", where)
        uses[name] = uses.get(name, 0) + 1
        node_name = name if uses[name] == 1 else f"{name}_{uses[name]}"  # a shared activation, called again
        seen[name] = body
        sub = _Ctx(ctx.source, (*ctx.yaml_path, index, written), (*ctx.module_path, node_name), ctx.scope, ctx.top_level)
        if ctx.top_level:
            state.top_kinds.append(kind if kind in ops.KINDS else "composite")
        if kind == "group":
            gpath = (*sub.yaml_path, "group")  # written `name: {group: [...]}`, or `name: [...]`
            gpath = gpath if gpath in ctx.source.marks else sub.yaml_path
            gctx = _Ctx(ctx.source, gpath, sub.module_path, ctx.scope, ctx.top_level)
            inlined_here: list[tuple[int, int, BlockInst]] = []
            children, out, cur, nonneg = _lower_items(
                state, gctx, body.group, shape, cur, nonneg, env={**env}, in_group=True, inlined=inlined_here
            )
            item: Inst = GroupInst(name, children, shape, out, _sum(children), inlined=tuple(inlined_here))
        elif kind in ("block", "stage") and body.inline:
            if written != POSITIONAL or inlined is None:
                raise SpecError(
                    f"{_shown(written, index)}: `inline` writes a block's layers as entries of a numbered list: "
                    "use it on an unnamed entry of a list",
                    where,
                )
            parent = _Ctx(ctx.source, sub.yaml_path, ctx.module_path, ctx.scope, ctx.top_level)
            if kind == "block":
                args = _call_args(state, sub, body.block, body.with_, {}, "with")
                inst, cur = _instantiate(state, parent, body.block, args, name, shape, cur, first_position=position - 1)
                insts = [inst]
            else:
                stage, cur = _lower_stage(state, sub, body, name, shape, cur, spliced_at=position - 1, inline=True)
                insts = list(stage.instances)
            for inst in insts:
                if not inst.children:
                    raise SpecError(f"{_shown(written, index)}: this `inline` instance has no layers (every `if:` fails)", where)
                inlined.append((len(items), len(inst.children), inst))
                items.extend(inst.children)
            position += len(items) - inlined[-len(insts)][0] - 1
            item = items.pop()  # the last layer is this entry's result
            nonneg = state.block_types[body.block if kind == "block" else body.stage].nonneg_out
            name = item.name
        elif kind == "branches":
            branches, item, cur, nonneg = _lower_branches(state, sub, body, name, shape, cur, nonneg, env, body.from_ or prev)
            items.extend(branches)
            inputs = ()  # the branches read `from:`; the merge reads the branches
        elif kind == "block":
            args = _call_args(state, sub, body.block, body.with_, {}, "with")
            item, cur = _instantiate(state, sub, body.block, args, name, shape, cur)
            nonneg = state.block_types[body.block].nonneg_out
        elif kind == "stage" and written == POSITIONAL and (in_group or (numbered and body.connectivity == "none")):
            stage, cur = _lower_stage(state, sub, body, name, shape, cur, spliced_at=position - 1)
            items.extend(stage.instances[:-1])
            item = stage.instances[-1]
            position += len(stage.instances) - 1
            nonneg = state.block_types[body.stage].nonneg_out
        elif kind == "stage":
            item, cur = _lower_stage(state, sub, body, name, shape, cur)
            nonneg = body.connectivity == "none" and state.block_types[body.stage].nonneg_out
        elif ops.KINDS[kind].MERGE:
            names = getattr(body, kind)
            if body.from_ is not None or len(names) < 2:
                raise SpecError(f"{name}: {kind} lists the tensors it merges (at least two), e.g. {kind}: [input, conv2]", where)
            sources = [_lookup(env, n, sub.where(kind, i)) for i, n in enumerate(names)]
            _check_layout(name, kind, any(t.shape.last for t in sources), where)
            op = ops.KINDS[kind]()
            try:
                out = op.infer_many([t.shape for t in sources])  # type: ignore[attr-defined]
            except ShapeError as e:
                raise SpecError(f"{name}: {e} (from {', '.join(names)})", where) from None
            node_id = _join(ctx.module_path, node_name)
            edges = tuple("gate" if kind == "multiply" and t.shape != out else "data" for t in sources)
            _add_node(state, Node(node_id, op, tuple(t.node for t in sources), out, edges=edges), where)
            nonneg = all(t.nonneg for t in sources) and op.nonneg_after(True)
            item = LayerInst(name, op, sources[0].shape, out, Counts(), where=where, inputs=tuple(names))
            cur = node_id
        else:
            op = _primitive(state, sub, kind, getattr(body, kind), shape, len(state.top_kinds) - 1)
            _check_layout(name, kind, shape.last, where, in_group)
            try:
                out = op.infer(shape)
            except ShapeError as e:
                detail = str(e) if str(shape) in str(e) else f"{e} (input {shape})"
                raise SpecError(f"{name}: {detail}", where) from None
            if out.spatial:
                out = dataclasses.replace(out, last=op.last_after(op.values(), shape.last))
            counts = Counts(*op.params(shape))
            node_id = _join(ctx.module_path, node_name)
            _add_node(state, Node(node_id, op, (cur,), out, counts.trainable, counts.non_trainable, op.macs(shape)), where)
            item = LayerInst(name, op, shape, out, counts, nonneg_in=nonneg, where=where)
            cur = node_id
            nonneg = op.nonneg_after(nonneg)
        if inputs:
            item = dataclasses.replace(item, inputs=inputs)
        item = dataclasses.replace(item, output=cur)
        items.append(item)
        read = [*(item.inputs if item.inputs else (prev,)), *((body.from_ or prev,) if kind == "branches" else ())]
        reads.update(read)
        flow.readers[name] = [flow.resolve(n) for n in read]
        flow.spans[name] = (first_node, len(state.nodes), first_item, len(items))
        defined[name] = where
        shape = item.out_shape
        env[name] = Tensor(cur, shape, nonneg)
        prev = name
    if model_level:
        flow.prune(state, items, defined, flow.resolve(prev))
    return tuple(items), shape, cur, nonneg


@dataclass
class _Flow:
    """Who reads what among the model's layers, to drop those that only absent layers read
    (`a` below a merge whose `if:` fails is built by no backend) and report the others."""

    aliases: dict[str, str] = field(default_factory=dict)  # absent layer -> the tensor it passes on
    readers: dict[str, list[str]] = field(default_factory=dict)
    spans: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # its nodes and items
    excused: set[str] = field(default_factory=set)  # read by layers that are absent or dropped

    def resolve(self, name: str) -> str:
        while name in self.aliases:
            name = self.aliases[name]
        return name

    def prune(self, state: _State, items: list[Inst], defined: dict[str, Location], output: str) -> None:
        count: dict[str, int] = {output: 1}
        for read in self.readers.values():
            for name in read:
                count[name] = count.get(name, 0) + 1
        dead: list[str] = []
        changed = True
        while changed:
            changed = False
            for name in defined:
                if name not in dead and not count.get(name) and name in self.excused:
                    dead.append(name)
                    changed = True
                    for read in self.readers[name]:
                        count[read] -= 1
                        self.excused.add(read)
        _unread({n: w for n, w in defined.items() if n not in dead}, {n for n, k in count.items() if k}, "the model")
        nodes = {i for name in dead for i in range(*self.spans[name][:2])}
        insts = {i for name in dead for i in range(*self.spans[name][2:])}
        state.nodes[:] = [node for i, node in enumerate(state.nodes) if i not in nodes]
        items[:] = [item for i, item in enumerate(items) if i not in insts]


def _merged_names(body: Any, kind: str) -> list[str]:
    """The tensors a merge lists."""
    op = ops.KINDS.get(kind)
    return list(getattr(body, kind)) if op is not None and op.MERGE else []


def _check_layout(name: str, kind: str, last: bool, where: Location, in_group: bool = False) -> None:
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


def _numbered(definition: Any) -> bool:
    """A block kind of unnamed layers run in sequence: PyTorch's nn.Sequential subclass (the
    torch backend's `_sequential`), whose unnamed stages contribute their instances to its
    numbering, as torchvision's `_stack` is `nn.Sequential(first, *remaining)`."""
    if definition.connectivity != "none" or definition.after:
        return False
    for entry in definition.layers:
        (written, body), = entry.items()
        kind = item_kind(body)
        op = ops.KINDS.get(kind)
        if written != POSITIONAL or body.from_ is not None or kind in ("group", "branches") or (op is not None and (op.MERGE or op.EXPRESSION or op.PARAMETER)):
            return False
    return True


def _check_named_layers(source: BlockSource) -> None:
    """A block kind numbers its layers (an nn.Sequential) only when none has a name; in one
    with named layers, an unnamed layer with weights or a module of its own would have no
    attribute to live in."""
    entries = [(i, *next(iter(entry.items()))) for i, entry in enumerate(source.definition.layers)]
    for i, written, body in entries:  # the reason a bare parameter makes a block unnumbered
        op = ops.KINDS.get(item_kind(body))
        if written == POSITIONAL and op is not None and op.PARAMETER:
            raise SpecError(
                f"{op.kind} is a bare parameter of its block in PyTorch (`self.NAME = nn.Parameter(...)`), "
                f"so it needs a name (`{op.kind}: {op.kind}`)",
                source.locate("layers", i),
            )
    for i, written, body in entries:
        op = ops.KINDS.get(item_kind(body))
        if written == POSITIONAL and not (op is not None and (op.MERGE or op.EXPRESSION)):
            raise SpecError(
                f"block {source.name!r} names some of its layers, so this one needs a name too (`NAME: ...`): "
                "only a block kind whose layers are all unnamed is numbered, like nn.Sequential",
                source.locate("layers", i),
            )


def _unread(defined: dict[str, Location], reads: set[str], scope: str) -> None:
    """A layer whose output nothing reads would be built by PyTorch but dropped by Keras."""
    for name, where in defined.items():
        if name not in reads:
            raise SpecError(
                f"layer {name!r} of {scope} is never read: no later layer reads it and it is not the output; "
                "read it (`from:`, a merge) or remove it",
                where,
            )


def _shown(written: str, index: int) -> str:
    """An entry's name for messages: its name, or its position when it has none."""
    return f"entry {index}" if written == POSITIONAL else written


def _check_list_entry(written: str, kind: str, body: Any, where: Location) -> None:
    """An entry of a list (an nn.Sequential in PyTorch) reads the previous one and is a module."""
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


@dataclass(frozen=True)
class Tensor:
    """A tensor a later entry may name: its node id (or `input`), shape and sign."""

    node: str
    shape: Shape
    nonneg: bool


def _lookup(env: dict[str, Tensor], name: str, where: Location) -> Tensor:
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


def _lower_branches(
    state: _State, ctx: _Ctx, body: m.BranchesItem, name: str, shape: Shape, cur: str, nonneg: bool,
    env: dict[str, Tensor], prev: str,
) -> tuple[list[Inst], Inst, str, bool]:  # fmt: skip
    """Parallel branches from one input: each branch is an entry of the enclosing list that
    reads `prev` (its names are module names there); the merge is the entry `name`."""
    bctx = _Ctx(ctx.source, (*ctx.yaml_path, "branches"), ctx.module_path[:-1], ctx.scope, ctx.top_level)
    outs: list[Tensor] = []
    branches: list[Inst] = []
    ends: list[str] = []
    for k, entry in enumerate(body.branches):
        (written,) = entry
        if written == POSITIONAL:
            raise SpecError("branches need names: they are module names", bctx.where(k))
        items, out, node, nn = _lower_items(state, bctx, [entry], shape, cur, nonneg, env={**env}, offset=k)
        branches += [dataclasses.replace(item, inputs=item.inputs or (prev,)) for item in items]  # a branch may read another tensor
        ends.append(items[-1].name if items else prev)  # a branch whose `if:` fails passes the input on
        outs.append(Tensor(node, out, nn))
        env[written] = outs[-1]
    op = ops.KINDS[body.merge]()
    try:
        merged = op.infer_many([t.shape for t in outs])  # type: ignore[attr-defined]
    except ShapeError as e:
        raise SpecError(f"{name}: {e}", ctx.where()) from None
    node_id = _join(ctx.module_path)
    _add_node(state, Node(node_id, op, tuple(t.node for t in outs), merged, edges=("branch",) * len(outs)), ctx.where())
    merge = LayerInst(name, op, outs[0].shape, merged, Counts(), where=ctx.where(), inputs=tuple(ends))
    return branches, merge, node_id, all(t.nonneg for t in outs)


def _raw_args(state: _State, kind: str, args: Any, where: Any) -> dict[str, Any]:
    """A layer's arguments as written, with what it leaves unset filled in from the op's
    defaults and the model's `defaults:` (values or expression strings; None: not applicable)."""
    op = ops.KINDS[kind]
    raw: dict[str, Any] = {}
    for attr in op.ATTRS:
        value = getattr(args, attr.name)
        if attr.type == "init":  # the layer's rules over its kind's
            raw[attr.name] = init.layer_init(value, state.init(init.section(kind)))
            if value is not None:
                _check_init(raw[attr.name], kind, where() if callable(where) else where)
            continue
        raw[attr.name] = value if value is not None else _default(state.spec.model.defaults, kind, attr, raw, where)
    if kind == "act":
        problem = ops.Act.check_args(raw)
        if problem:
            raise SpecError(problem, where() if callable(where) else where)
    return raw


def _primitive(state: _State, ctx: _Ctx, kind: str, args: Any, shape: Shape, top_index: int) -> ops.Op:
    scope = {**ctx.scope, "channels": shape.c}
    raw = _raw_args(state, kind, args, lambda: ctx.where(kind))
    values: dict[str, Any] = {}
    for attr in ops.KINDS[kind].ATTRS:
        value = raw[attr.name]
        if attr.type in ("str", "const", "init") or value is None:
            values[attr.name] = value
            continue
        ref = (top_index, attr.name, ctx.module_path) if ctx.top_level else None
        try:
            values[attr.name] = _value(value, scope, None, attr.type, state=state, ref_ok=ctx.top_level, ref=ref)
        except SpecError as e:  # located only on failure: deep stages run this loop thousands of times
            where = ctx.where(kind) if getattr(args, attr.name) is None else ctx.where(kind, attr.name)
            raise SpecError(e.message + _provenance(state, value, where), where) from None
    if ops.KINDS[kind].LAYOUT:
        values["channels_last"] = shape.last or not shape.spatial
    return ops.KINDS[kind](**values)


def _check_init(rules: Init, kind: str, where: Any) -> None:
    for role in ("weight", "bias"):
        problem = init.problem(getattr(rules, role), role, kind)
        if problem:
            raise SpecError(f"{kind} init {role}: {problem}", where)


def _default(defaults: m.Defaults, kind: str, attr: ops.Attr, values: dict[str, Any], where: Any) -> Any:
    if attr.default is ops.REQUIRED:
        raise SpecError(f"{kind} needs `{attr.name}`", where() if callable(where) else where)
    if isinstance(attr.default, str) and attr.default.startswith("="):
        return values[attr.default[1:]]
    if isinstance(attr.default, str) and attr.default.startswith("defaults."):
        path = attr.default.split(".")[1:]
        value: Any = defaults
        for part in path:
            value = getattr(value, part)
        if value is None:
            section, key = path
            raise SpecError(
                f"{kind} {attr.name} is not set: write it on this layer or once in `defaults: {{{section}: {{{key}: ...}}}}` "
                "(archc never relies on a framework default)",
                where() if callable(where) else where,
            )
        return value
    return attr.default


# --- blocks and stages ------------------------------------------------------------------


def _call_args(
    state: _State, ctx: _Ctx, block: str, raw: dict[str, Any], base: dict[str, Any], key: str,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate `with:` arguments, type-checked here (where the value is written) when the block is known."""
    source = state.spec.blocks.get(block)
    declared = source.definition.params if source else {}
    args = dict(base)
    for name, value in raw.items():
        if source is not None and name not in declared:
            known = ", ".join(declared) or "none"
            raise SpecError(f"block {block!r} has no parameter {name!r}; its parameters: {known}", ctx.where(key, name))
        decl = declared.get(name)
        kind = decl if isinstance(decl, str) else {bool: "bool", int: "int", float: "float"}.get(type(decl), "")
        where = ctx.where(key, name)
        try:
            args[name] = _value(value, {**ctx.scope}, where, f"param_{kind}", state=state)
        except SpecError as e:
            raise SpecError(f"block {block!r} parameter {name!r} {e.message}", e.where) from None
        for note in _notes(state, value, where):
            state.arg_notes[(block, name, args[name])] = note
    return args


def _lower_stage(
    state: _State, ctx: _Ctx, body: m.StageItem, name: str, shape: Shape, cur: str, spliced_at: int | None = None,
    inline: bool = False,
) -> tuple[StageInst, str]:  # fmt: skip
    """A stage; `spliced_at`: its instances are entries of the enclosing list from that position on
    (an unnamed stage in a numbered list, as torchvision's MobileNet `features`); with `inline`,
    the layers of its instances are those entries (torchvision's VGG `features`)."""
    repeat = _value(body.repeat, ctx.scope, ctx.where("repeat"), "any", state=state)
    _check_repeat(repeat, ctx.where("repeat"))
    indexed = _uses_index(body)
    common = first = last = {}
    if not indexed:
        common, first, last = _stage_args(state, ctx, body, repeat, ctx.scope)
    instances: list[BlockInst] = []
    stage_in, out = shape, shape
    if spliced_at is not None and (body.connectivity == "dense" or body.names != "{i}"):
        raise SpecError("a stage without a name is numbered with its list: it takes no `names:` and no dense connectivity", ctx.where())
    parent = ctx.module_path if spliced_at is None else ctx.module_path[:-1]
    position = spliced_at
    for k in range(repeat):
        inst_name = instance_name(body.names, k) if spliced_at is None else str(spliced_at + k)
        if inline:
            inst_name = str(position)
        ictx = _Ctx(ctx.source, ctx.yaml_path, parent if inline else (*parent, inst_name), ctx.scope, False)
        before = cur
        if indexed:  # the arguments read the instance's index `i`
            icommon, ifirst, ilast = _stage_args(state, ctx, body, repeat, {**ctx.scope, STAGE_INDEX: k})
            args = ilast if k == repeat - 1 else ifirst if k == 0 else icommon
        else:
            args = last if k == repeat - 1 else first if k == 0 else common
        inst, inst_out = _instantiate(
            state, ictx, body.stage, args, inst_name, out, cur, stage_ctx=ctx, first_position=position if inline else None
        )
        if inline:
            position += len(inst.children)  # type: ignore[operator]
        instances.append(dataclasses.replace(inst, output=inst_out))
        if body.connectivity == "dense":
            concat = ops.Concat()
            try:
                out = concat.infer_many([out, inst.out_shape])
            except ShapeError as e:
                raise SpecError(f"{name}.{inst_name}: {e}", ctx.where()) from None
            cur = _join(ctx.module_path, f"{inst_name}_concat")
            _add_node(state, Node(cur, concat, (before, inst_out), out, edges=("dense", "data")), ctx.where())
        else:
            out, cur = inst.out_shape, inst_out
    if indexed:
        instances = _with_index_trees(body, ctx.scope, instances)
    stage = StageInst(name, body.stage, body.connectivity, body.names, tuple(instances), stage_in, out, _sum(instances))
    return stage, cur


STAGE_INDEX = "i"  # in a stage's `with`, `first` and `last`: the instance's index, from 0


def _uses_index(body: m.StageItem) -> bool:
    """Whether a stage's arguments read the instance index `i` (a name no spec may define)."""
    for raw in (*body.with_.values(), *body.first.values(), *body.last.values()):
        try:
            if isinstance(raw, str) and STAGE_INDEX in _parse(raw)[1]:
                return True
        except expr.ExprError:
            pass  # reported where the argument is evaluated
    return False


def _stage_args(
    state: _State, ctx: _Ctx, body: m.StageItem, repeat: int, scope: dict[str, expr.Value],
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:  # fmt: skip
    """A stage's arguments for its later, first and last instances."""
    sctx = dataclasses.replace(ctx, scope=scope)
    common = _call_args(state, sctx, body.stage, body.with_, {}, "with")
    first = _call_args(state, sctx, body.stage, body.first, common, "first")
    last = _call_args(state, sctx, body.stage, body.last, first if repeat == 1 else common, "last")
    return common, first, last


def _with_index_trees(body: m.StageItem, scope: dict[str, expr.Value], instances: list[BlockInst]) -> list[BlockInst]:
    """Record, on the instances of a stage whose arguments use `i`, each such argument as an
    expression of `i` alone (the model's parameters folded in), where it varies: emitters
    then write one loop, `CNBlock(96, sd_prob=0.1 * (3 + i) / 17.0) for i in range(3)`,
    rather than a line per instance. Only where that expression gives every instance's value
    exactly (Python evaluates it as archc does)."""
    repeat = len(instances)
    trees: list[dict[str, ast.expr]] = []
    for k in range(repeat):
        raw = dict(body.with_)
        if k == 0:
            raw.update(body.first)
        if k == repeat - 1:
            raw.update(body.last)
        here: dict[str, ast.expr] = {}
        for key, value in raw.items():
            tree = expr.parse(value) if isinstance(value, str) else None
            if tree is not None and STAGE_INDEX in expr.free_names(tree):
                here[key] = expr.substitute(tree, {n: ast.Constant(scope[n]) for n in expr.free_names(tree) - {STAGE_INDEX}})
        trees.append(here)
    all_args = [dict(inst.args) for inst in instances]
    indexed_keys = {key for here in trees for key in here}
    varies = {key: len({args[key] for args in all_args}) > 1 for key in indexed_keys}  # once per key, not per instance
    out = []
    for k, inst in enumerate(instances):
        args = all_args[k]
        keep = []
        for key, tree in trees[k].items():
            try:
                exact = expr.evaluate(tree, {STAGE_INDEX: k}) == args[key]
            except expr.ExprError:
                exact = False
            if varies[key] and exact:
                keep.append((key, tree))
        out.append(dataclasses.replace(inst, indexed=tuple(keep), index=k))
    return out


def _check_block_depth(stack: list[str], name: str, where: Location) -> None:
    if len(stack) >= MAX_BLOCK_DEPTH:
        raise SpecError(
            f"blocks nested more than {MAX_BLOCK_DEPTH} deep ({stack[0]} -> ... -> {name}); "
            "raise archc.lower.MAX_BLOCK_DEPTH deliberately if you mean it",
            where,
        )


@contextmanager
def _entering(state: _State, name: str, where: Location) -> Iterator[None]:
    if name in state.block_stack:
        raise SpecError(f"block {name!r} contains itself ({' -> '.join([*state.block_stack, name])})", where)
    _check_block_depth(state.block_stack, name, where)
    state.block_stack.append(name)
    try:
        yield
    finally:
        state.block_stack.pop()


def _instantiate(
    state: _State, ctx: _Ctx, block: str, args: dict[str, Any], name: str, shape: Shape, cur: str,
    stage_ctx: _Ctx | None = None, first_position: int | None = None, switches: dict[str, bool] | None = None,
) -> tuple[BlockInst, str]:  # fmt: skip
    """One instance; `first_position`: written `inline`, its layers are entries of the
    enclosing numbered list (ctx's module path) from that position on; `switches`: see `_expand`."""
    where = (stage_ctx or ctx).where()
    source = state.spec.blocks.get(block)
    if source is None:
        known = ", ".join(sorted(state.spec.blocks)) or "none (add `use: [resnet]` or a `blocks:` section)"
        import difflib  # error messages only: not imported by a successful check

        hint = difflib.get_close_matches(block, list(state.spec.blocks), n=1)
        guess = f"did you mean {hint[0]!r}? " if hint else ""
        raise SpecError(f"unknown block {block!r}; {guess}known blocks: {known}", where)
    try:
        return _expand(state, ctx, source, args, name, shape, cur, where, first_position, switches)
    except SpecError as e:
        if e.where is None or e.where.file == where.file or e.where.file.startswith("--set"):
            raise
        # a mistake inside a library block shows at the instance that triggered it
        raise SpecError(f"{_join(ctx.module_path)} (block {block!r}, {e.where}): {e.message}", where) from None


def _expand(
    state: _State, ctx: _Ctx, source: BlockSource, args: dict[str, Any], name: str, shape: Shape, cur: str,
    where: Location, first_position: int | None = None, switches: dict[str, bool] | None = None,
) -> tuple[BlockInst, str]:  # fmt: skip
    """One instance of a block kind: its symbolic form (`BlockType`, what the code is printed
    from) specialised to these arguments and this input. `switches`: inside another block
    kind, the values its code passes for the `shape_changes` shortcuts."""
    block = source.name
    if first_position is not None:
        _check_inline(source, where)
    if shape.last:
        raise SpecError(f"block {block!r} gets a map PyTorch holds channels-last; add `permute: {{to: channels_first}}` before it", where)
    with _entering(state, block, where):
        params = _bind(source, args, where)
        scope = {**params, "in_channels": shape.c}
        _block_checks(state, source, scope, where)
        btype = _type_of(state, block, where)
        first_node = len(state.nodes)  # the block's nodes are the ones added from here on
        spec = _Specialiser(state, source, btype, scope, {"input": Tensor(cur, shape, False)}, {})
        children, last = spec.items(btype.layers, ctx.module_path, "input", btype.numbered, first_position or 0)
        out = spec.env[last]
        used_shortcut = None
        if btype.connectivity == "skip":
            out, used_shortcut = spec.merge_skip(ctx.module_path, out, where, switches)
            spec.env[SUM] = out
            after, last = spec.items(btype.after, ctx.module_path, SUM, False)
            children = (*children, *after)
            out = spec.env[last]
        spec.check_channels(btype.out_channels, out.shape, f"block {block!r}")
    counts = Counts(
        sum(n.trainable for n in state.nodes[first_node:]), sum(n.non_trainable for n in state.nodes[first_node:])
    )
    inst = BlockInst(name, block, tuple(params.items()), used_shortcut, shape, out.shape, counts, tuple(children))
    return inst, out.node


SUM = "<sum>"  # the tensor a skip block's `after` list reads: the branch plus the shortcut


@dataclass
class _Specialiser:
    """Specialise the items of a block kind (`SymItem`s, their arguments expressions over
    the kind's parameters and `in_channels`) to one instance: evaluate, infer shapes, count.
    The code is printed from the same items, so what archc counts is what the code builds;
    where the two could still part (a channel count the code computes from an expression),
    they are compared and a difference is a bug in archc."""

    state: _State
    source: BlockSource
    btype: BlockType
    scope: dict[str, Any]  # the block's parameters and in_channels
    env: dict[str, Tensor]  # tensors by name: `input`, the items so far
    uses: dict[str, int]  # module names so far (an activation used again is called again)

    def where(self, item: SymItem, *sub: Any) -> Location:
        return self.source.locate(*item.at, *sub)

    def value(self, tree: ast.expr, scope: dict[str, Any], want: str, where: Any) -> Any:
        """An expression's value, of the type `want` (lowering's `_value` types)."""
        if isinstance(tree, ast.Tuple):  # a [height, width] pair, or padding pairs
            inner = "pair" if want == "pads" else "int"
            return tuple(self.value(t, scope, inner, where) for t in tree.elts)
        try:
            value = expr.evaluate(tree, scope)
        except expr.ExprError as e:
            raise SpecError(str(e), where() if callable(where) else where) from None
        problem = _type_problem(value, "int" if want in ("pair", "pads") else want)
        if problem:
            raise SpecError(problem, where() if callable(where) else where)
        return float(value) if want == "num" else value

    def holds(self, item: SymItem, scope: dict[str, Any]) -> bool:
        if item.condition is None:
            return True
        return bool(self.value(item.condition, scope, "any", lambda: self.where(item, "if")))

    def check_channels(self, tree: ast.expr, shape: Shape, what: str, scope: dict[str, Any] | None = None) -> None:
        """The channel count the generated code computes equals the one the IR infers."""
        got = expr.evaluate(tree, self.scope if scope is None else scope)
        if got != shape.c:
            raise AssertionError(f"{what}: the code computes {expr.to_python(tree)} = {got} channels, the IR has {shape}")

    def items(
        self, items: tuple[SymItem, ...], path: tuple[str, ...], prev: str, numbered: bool, position: int = 0,
        scope: dict[str, Any] | None = None,
    ) -> tuple[list[Inst], str]:  # fmt: skip
        """The items of one list; returns their instances and the name of the tensor it ends with.
        In a numbered list (an nn.Sequential), unnamed entries are numbered as present."""
        scope = self.scope if scope is None else scope
        out: list[Inst] = []
        for item in items:
            reads = item.inputs or (prev,)
            if not self.holds(item, scope):  # absent: passes on what it reads
                passes = (item.passes if isinstance(item, SymLayer) else None) or (prev if _is_merge(item) else reads[0])
                self.env[item.name] = self.env[passes]
                prev = item.name
                continue
            name = str(position) if item.name.isdigit() else item.name
            position += 1
            src = self.env[reads[0]]
            if isinstance(item, SymStage) and spliced(item, numbered):
                stage, tensor = self.stage(item, path, src, scope, spliced_at=position - 1)
                out.extend(stage.instances)
                position += len(stage.instances) - 1
            else:
                inst, tensor = self.item(item, name, path, reads, src, scope)
                if item.inputs:
                    inst = dataclasses.replace(inst, inputs=item.inputs)
                out.append(dataclasses.replace(inst, output=tensor.node))
            self.env[item.name] = tensor
            prev = item.name
        return out, prev

    def item(
        self, item: SymItem, name: str, path: tuple[str, ...], reads: tuple[str, ...], src: Tensor, scope: dict[str, Any],
    ) -> tuple[Inst, Tensor]:  # fmt: skip
        if isinstance(item, SymLayer) and ops.KINDS[item.kind].MERGE:
            return self.merge(item, name, path, [self.env[n] for n in reads])
        if isinstance(item, SymLayer):
            return self.layer(item, name, path, src, scope)
        if isinstance(item, SymGroup):
            group_path = (*path, name)
            children, last = self.items(item.children, group_path, reads[0], item.positional, scope=scope)
            out = self.env[last]
            return GroupInst(name, tuple(children), src.shape, out.shape, _sum(children)), out
        if isinstance(item, SymBlock):
            return self.block(item, name, (*path, name), src, scope, self.where(item))
        stage, tensor = self.stage(item, path, src, scope)
        return stage, tensor

    def node_id(self, path: tuple[str, ...], name: str) -> str:
        """`path.name`, or `path.name_2` for an activation called again under its name."""
        base = _join(path, name)
        self.uses[base] = self.uses.get(base, 0) + 1
        return base if self.uses[base] == 1 else f"{base}_{self.uses[base]}"

    def layer(self, item: SymLayer, name: str, path: tuple[str, ...], src: Tensor, scope: dict[str, Any]) -> tuple[Inst, Tensor]:
        op_class = ops.KINDS[item.kind]
        given = dict(item.args)
        values: dict[str, Any] = {}
        for attr in op_class.ATTRS:
            tree = given.get(attr.name)
            if tree is None or attr.type in ("str", "const", "init"):
                values[attr.name] = None if tree is None else tree.value  # type: ignore[attr-defined]
                continue
            values[attr.name] = self.value(tree, scope, attr.type, lambda: self.where(item, item.kind, attr.name))
        if op_class.LAYOUT:
            values["channels_last"] = given["channels_last"].value  # type: ignore[attr-defined]
        op = op_class(**values)
        shape = src.shape
        if not (op_class.CHANNEL_FREE or op_class.EXPRESSION):
            self.check_channels(item.in_channels, shape, f"{self.source.name}.{item.name}", scope)
        try:
            out = op.infer(shape)
        except ShapeError as e:
            detail = str(e) if str(shape) in str(e) else f"{e} (input {shape})"
            raise SpecError(f"{name}: {detail}", item.where) from None
        if out.spatial:
            out = dataclasses.replace(out, last=op.last_after(op.values(), shape.last))
        counts = Counts(*op.params(shape))
        node_id = self.node_id(path, name)
        _add_node(self.state, Node(node_id, op, (src.node,), out, counts.trainable, counts.non_trainable, op.macs(shape)), item.where)
        inst = LayerInst(name, op, shape, out, counts, nonneg_in=src.nonneg, where=item.where)
        return inst, Tensor(node_id, out, op.nonneg_after(src.nonneg))

    def merge(self, item: SymLayer, name: str, path: tuple[str, ...], sources: list[Tensor]) -> tuple[Inst, Tensor]:
        op = ops.KINDS[item.kind]()
        try:
            out = op.infer_many([t.shape for t in sources])  # type: ignore[attr-defined]
        except ShapeError as e:
            raise SpecError(f"{name}: {e} (from {', '.join(item.inputs)})", item.where) from None
        if item.passes is not None:  # the merge of `branches`
            edges: tuple[str, ...] = ("branch",) * len(sources)
        else:
            edges = tuple("gate" if item.kind == "multiply" and t.shape != out else "data" for t in sources)
        node_id = self.node_id(path, name)
        _add_node(self.state, Node(node_id, op, tuple(t.node for t in sources), out, edges=edges), item.where)
        inst = LayerInst(name, op, sources[0].shape, out, Counts(), where=item.where, inputs=item.inputs)
        nonneg = all(t.nonneg for t in sources) and op.nonneg_after(True)
        return inst, Tensor(node_id, out, nonneg)

    def arguments(self, sym: SymBlock, scope: dict[str, Any], where: Location) -> tuple[BlockSource, dict[str, Any]]:
        """An inner instance's arguments, typed as its kind declares them."""
        inner = self.state.spec.blocks[sym.block]
        args: dict[str, Any] = {}
        for key, tree in sym.args:
            decl = inner.definition.params[key]
            kind = decl if isinstance(decl, str) else {bool: "bool", int: "int", float: "float"}.get(type(decl), "")
            try:
                args[key] = self.value(tree, scope, f"param_{kind}", where)
            except SpecError as e:
                raise SpecError(f"block {sym.block!r} parameter {key!r} {e.message}", e.where) from None
        return inner, args

    def block(
        self, sym: SymBlock, name: str, path: tuple[str, ...], src: Tensor, scope: dict[str, Any], where: Location,
        first_position: int | None = None,
    ) -> tuple[BlockInst, Tensor]:  # fmt: skip
        _, args = self.arguments(sym, scope, where)
        self.check_channels(sym.in_channels, src.shape, f"{self.source.name}.{sym.name}", scope)
        switches = {flag: bool(self.value(tree, scope, "any", where)) for flag, tree in sym.flags}
        ctx = _Ctx(self.source.source, (*self.source.path, *sym.at), path, {}, False)
        inst, node = _instantiate(self.state, ctx, sym.block, args, name, src.shape, src.node, switches=switches)
        nonneg = self.state.block_types[sym.block].nonneg_out
        return inst, Tensor(node, inst.out_shape, nonneg)

    def stage(
        self, sym: SymStage, path: tuple[str, ...], src: Tensor, scope: dict[str, Any], spliced_at: int | None = None,
    ) -> tuple[StageInst, Tensor]:  # fmt: skip
        """A stage inside a block kind; `spliced_at`: its instances are entries of the enclosing
        numbered list from that position on (torchvision's `nn.Sequential(first, *remaining)`)."""
        where = self.where(sym)
        repeat = self.value(sym.repeat, scope, "any", lambda: self.where(sym, "repeat"))
        _check_repeat(repeat, self.where(sym, "repeat"))
        stage_path = (*path, sym.name) if spliced_at is None else path
        dense = sym.connectivity == "dense"
        cur, instances = src, []
        for k in range(repeat):
            inst_name = str(spliced_at + k) if spliced_at is not None else instance_name(sym.names, k)
            here = {**scope, STAGE_INDEX: k}
            one = sym.rest if dense or k > 0 else sym.first
            inst, out = self.block(one, inst_name, (*stage_path, inst_name), cur, here, where)
            instances.append(dataclasses.replace(inst, output=out.node))
            if dense:
                concat = ops.Concat()
                try:
                    shape = concat.infer_many([cur.shape, inst.out_shape])
                except ShapeError as e:
                    raise SpecError(f"{sym.name}.{inst_name}: {e}", where) from None
                node_id = _join(stage_path, f"{inst_name}_concat")
                _add_node(self.state, Node(node_id, concat, (cur.node, out.node), shape, edges=("dense", "data")), where)
                cur = Tensor(node_id, shape, False)
            else:
                cur = out
        name = sym.name
        stage = StageInst(name, sym.block, sym.connectivity, sym.names, tuple(instances), src.shape, cur.shape, _sum(instances))
        nonneg = not dense and self.state.block_types[sym.block].nonneg_out
        return dataclasses.replace(stage, output=cur.node), Tensor(cur.node, cur.shape, nonneg)

    def merge_skip(
        self, path: tuple[str, ...], branch: Tensor, where: Location, switches: dict[str, bool] | None,
    ) -> tuple[Tensor, str | None]:  # fmt: skip
        """The sum of the branch and a shortcut: the first of the kind's shortcuts that applies
        (projection or option A), else the identity. A `shape_changes` shortcut applies where
        the shapes differ; inside another block kind, where the code's switch says so, and the
        two must agree."""
        btype, source = self.btype, self.source
        chosen: SymShortcut | None = None
        chosen_in = self.env["input"]
        for k, sc in enumerate(btype.shortcuts):
            sc_in = self.env[sc.input] if sc.input else self.env["input"]
            if sc.when == "always":
                holds = True
            elif sc.when == "shape_changes":
                holds = branch.shape != sc_in.shape
                if switches is not None and switches.get(sc.name, False) != holds:
                    raise SpecError(
                        f"block {source.name!r} changes the map size without a stride here; inside another block its "
                        "shortcut must follow from its stride and channels",
                        where,
                    )
            else:
                holds = bool(self.value(sc.condition, self.scope, "bool", lambda: source.locate("shortcut", *_sc_index(source, k), "when")))  # type: ignore[arg-type]
            if holds and chosen is not None and sc.when not in ("always", "shape_changes"):
                raise SpecError(
                    f"block {source.name!r}: shortcuts {chosen.name!r} and {sc.name!r} both apply to this instance; "
                    "make their `when` conditions exclusive",
                    where,
                )
            if holds and chosen is None:
                chosen, chosen_in = sc, sc_in
        tensor = chosen_in
        if chosen is None:
            if branch.shape != tensor.shape:
                raise SpecError(
                    f"identity shortcut over a shape change: block {source.name!r} maps {tensor.shape} to {branch.shape}; "
                    "declare `shortcut: {kind: projection}` (or option_a) on the block",
                    where,
                )
        else:
            for node_id, op in self.shortcut_ops(chosen, path, tensor, branch):
                try:
                    new_shape = op.infer(tensor.shape)
                except ShapeError as e:
                    raise SpecError(f"shortcut of block {source.name!r}: {e}", where) from None
                t, nt = op.params(tensor.shape)
                _add_node(self.state, Node(node_id, op, (tensor.node,), new_shape, t, nt, op.macs(tensor.shape)), where)
                tensor = Tensor(node_id, new_shape, False)
            if tensor.shape != branch.shape:
                raise SpecError(
                    f"shortcut of block {source.name!r} gives {tensor.shape} but the branch gives {branch.shape}; "
                    "the branch must downsample by a whole stride",
                    where,
                )
        add_id = _join(path, "add")
        _add_node(self.state, Node(add_id, ops.Add(), (branch.node, tensor.node), branch.shape, edges=("data", "residual")), where)
        return Tensor(add_id, branch.shape, False), chosen.name if chosen else None

    def shortcut_ops(self, sc: SymShortcut, path: tuple[str, ...], src: Tensor, branch: Tensor) -> list[tuple[str, ops.Op]]:
        """The shortcut's layers with their node ids: its stride is the one its code computes
        (`sc.stride`, the branch's from the shortcut's input), not a product over every layer."""
        stride = self.value(sc.stride, self.scope, "int", self.source.locate("shortcut"))
        base = _join(path, sc.name)
        if sc.kind != "projection":
            return [(base, ops.PadShortcut(stride, branch.shape.c - src.shape.c))]
        loc = self.source.locate("shortcut")
        written = next(s for s in self.source.definition.shortcuts if s.name == sc.name)
        defaults = self.state.spec.model.defaults
        if written.bias is None and defaults.conv.bias is None:
            raise SpecError("shortcut conv bias is not set: add defaults.conv.bias or shortcut.bias", loc)
        self.check_channels(sc.out_channels, branch.shape, f"shortcut of block {self.source.name!r}")
        conv = ops.Conv(branch.shape.c, 1, stride, 0, 1, 1, sc.bias, self.state.init("conv"))
        if not sc.batchnorm:
            return [(base, conv)]  # a lone conv is the module itself
        if sc.eps is None or sc.momentum is None:
            raise SpecError("shortcut batchnorm needs defaults.batchnorm.eps and momentum", loc)
        # conv + BN is an nn.Sequential (`downsample.0`, `downsample.1`)
        return [(f"{base}.0", conv), (f"{base}.1", ops.BatchNorm(sc.eps, sc.momentum, init=self.state.init("batchnorm")))]


def _check_repeat(repeat: Any, where: Location) -> None:
    if isinstance(repeat, bool) or not isinstance(repeat, int):
        hint = "; use // or int(...) for whole numbers" if isinstance(repeat, float) else ""
        raise SpecError(f"repeat must be an integer, got {repeat!r}{hint}", where)
    if not 1 <= repeat <= MAX_REPEAT:
        raise SpecError(
            f"repeat must be between 1 and {MAX_REPEAT}, got {repeat} "
            "(raise archc.lower.MAX_REPEAT deliberately if you mean it)",
            where,
        )


def _check_inline(source: BlockSource, where: Location) -> None:
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


def _bind(source: BlockSource, args: dict[str, Any], where: Location) -> dict[str, Any]:
    """Every parameter's value: the arguments (named and typed in `_call_args`) over the defaults."""
    params: dict[str, Any] = {}
    for key, decl in source.definition.params.items():
        if key not in args:
            if isinstance(decl, str):
                raise SpecError(f"block {source.name!r} needs parameter {key!r} ({decl}); pass it in `with:`", where)
            params[key] = decl
        else:
            params[key] = float(args[key]) if decl == "float" or type(decl) is float else args[key]
    return params


def _sc_index(source: BlockSource, k: int) -> tuple[int, ...]:
    return (k,) if isinstance(source.definition.shortcut, list) else ()


# --- symbolic block kinds ------------------------------------------------------------------


def _block_type(state: _State, source: BlockSource) -> BlockType:
    """The block kind with layer arguments as expressions over its parameters."""
    definition = source.definition
    layer_names = {n for entry in (*definition.layers, *definition.after) for n in entry}
    for sc in definition.shortcuts:
        if sc.name in definition.params or sc.name in layer_names:
            raise SpecError(
                f"shortcut name {sc.name!r} is also a parameter or layer of block {source.name!r}; rename it",
                source.locate("shortcut"),
            )
    defaults = state.spec.model.defaults
    channels: ast.expr = ast.Name("in_channels")
    stride: ast.expr = ast.Constant(1)
    points: dict[str, SymTensor] = {"input": SymTensor(channels, stride, False, False)}

    reads: set[str] = set()  # tensors something reads (to reject layers whose output goes nowhere)
    defined: dict[str, Location] = {}
    aliases: dict[str, str] = {}  # entries that are never present -> the tensor they pass on
    last_of: dict[tuple[Any, ...], str] = {}  # each list's last tensor, by its section

    def sym_layers(
        entries: list[dict[str, Any]], section: tuple[Any, ...], prev: str, in_group: bool = False, offset: int = 0,
    ) -> tuple[SymItem, ...]:  # fmt: skip
        """The entries of one list, each reading `prev` (the name of the tensor before it) or what it names."""
        out: list[SymItem] = []
        position = 0
        for index, entry in enumerate(entries, start=offset):
            (written, body), = entry.items()
            kind = item_kind(body)
            where = source.locate(*section, index, written)
            if in_group:
                _check_list_entry(_shown(written, index), kind, body, where)
            name = str(position) if written == POSITIONAL else written
            inputs: tuple[str, ...] = (body.from_,) if body.from_ is not None else ()
            here = points[_sym_source(points, inputs[0] if inputs else prev, source.locate(*section, index, written, "from"))]
            condition = _sym_condition(body.if_, definition, here.channels, source.locate(*section, index, written, "if"))
            if isinstance(condition, ast.Constant) and not condition.value:
                points[name] = here  # never present
                aliases[name] = inputs[0] if inputs else prev
                prev = name
                continue
            passed = here  # what the item passes on where it is absent
            if condition is not None:  # its input where it is present
                here = dataclasses.replace(here, channels=_assume(condition, here.channels))
            position += 1
            if kind in ("block", "stage"):
                if body.inline:
                    raise SpecError(f"{name}: `inline` is available in lists at model level, not inside a block kind", where)
                item, after_ch, nested_stride = _sym_nested(state, name, kind, body, here.channels, where)
                inner = state.block_types[body.block if kind == "block" else body.stage]
                nonneg_out = inner.nonneg_out and (kind == "block" or body.connectivity == "none")
                result = SymTensor(after_ch, expr.fold(ast.BinOp(here.stride, ast.Mult(), nested_stride)), nonneg_out, False)
            elif kind == "group":
                if in_group:
                    raise SpecError(f"{_shown(written, index)}: a list inside a list is not supported in a block; use a block kind", where)
                source_name = inputs[0] if inputs else prev
                if here is not points[source_name]:  # simplified under its condition
                    source_name = f"{name}.input"
                    points[source_name] = here
                group_section = (*section, index, written, "group")  # `name: {group: [...]}`, or `name: [...]`
                if (*source.path, *group_section) not in source.source.marks:
                    group_section = group_section[:-1]
                children = sym_layers(body.group, group_section, source_name, in_group=True)
                item, result = SymGroup(name, children, here.channels), points[LAST]
            elif kind == "branches":
                # every branch reads the branches' input (`from:` or the previous tensor) and is
                # present where the branches are; absent, the merge passes that input on
                read = inputs[0] if inputs else prev
                tracked = read
                if here is not points[read]:  # simplified under the condition
                    tracked = f"{name}.input"
                    points[tracked] = here
                ends = []
                for k, branch in enumerate(body.branches):
                    (bname,) = branch
                    if bname == POSITIONAL:
                        raise SpecError("branches need names: they are module names", source.locate(*section, index, written, "branches", k))
                    for child in sym_layers([branch], (*section, index, written, "branches"), tracked, offset=k):
                        if condition is not None:
                            both = condition if child.condition is None else ast.BoolOp(ast.And(), [condition, child.condition])
                            child = dataclasses.replace(child, condition=both)
                        out.append(_with_inputs(child, child.inputs or (read,)))  # a branch may read another tensor
                        ends.append(child.name)
                    if not ends or ends[-1] != bname:  # a branch whose `if:` never holds passes the input on
                        ends.append(read)
                        points[bname] = points[tracked]
                reads.update(ends)
                reads.add(read)
                merged = _sym_merge(body.merge, [points[e] for e in ends])
                flats = tuple(points[e].flat for e in ends)
                item = SymLayer(name, body.merge, (), merged.channels, False, tuple(ends), None, flats, passes=read)
                inputs = ()
                result = merged
            elif ops.KINDS[kind].MERGE:
                inputs = tuple(getattr(body, kind))
                if body.from_ is not None or len(inputs) < 2:
                    raise SpecError(f"{name}: {kind} lists the tensors it merges (at least two), e.g. {kind}: [input, conv2]", where)
                sources = [points[_sym_source(points, n, source.locate(*section, index, written, kind, i))] for i, n in enumerate(inputs)]
                _check_layout(name, kind, any(t.last for t in sources), where)
                result = _sym_merge(kind, sources)
                item = SymLayer(name, kind, (), sources[0].channels, False, inputs, None, tuple(t.flat for t in sources))
            else:
                if kind == "flatten":
                    raise SpecError(f"{name}: flatten inside a block is not supported; flatten at model level", where)
                op = ops.KINDS[kind]
                _check_layout(name, kind, here.last, where, in_group)
                args = _sym_args(state, kind, getattr(body, kind), here.channels, where)
                if op.LAYOUT:
                    args = (*args, ("channels_last", ast.Constant(here.last or here.flat)))
                params = dict(args)
                item = SymLayer(name, kind, args, here.channels, here.nonneg, (), None, (here.flat,))
                step = params[op.SPATIAL_STRIDE] if op.SPATIAL_STRIDE else ast.Constant(1)
                result = SymTensor(
                    op.out_channels(params, here.channels),
                    expr.fold(ast.BinOp(here.stride, ast.Mult(), step)),
                    op.sym_nonneg(params, here.nonneg),
                    (here.flat or (kind == "dense" and not here.last) or kind == "global_avgpool") if op.FLAT_OUT is None else op.FLAT_OUT,
                    op.last_after(params, here.last),
                )
            if inputs:
                item = _with_inputs(item, inputs)
            reads.update(item.inputs if item.inputs else (prev,))
            if not in_group:
                defined[name] = where
            if condition is not None:
                item = dataclasses.replace(item, condition=condition)
                if result.last != passed.last:
                    raise SpecError(f"{name}: a layer under `if:` may not change where PyTorch holds the channels", where)
                result = SymTensor(
                    _if(condition, result.channels, passed.channels), _if(condition, result.stride, passed.stride),
                    result.nonneg and passed.nonneg, result.flat, result.last,
                )
            points[name] = result
            prev = name
            out.append(dataclasses.replace(item, where=where, at=(*section, index, written)))
        points[LAST] = points[prev]
        last_of[section] = prev
        return tuple(out)

    layers = sym_layers(definition.layers, ("layers",), "input")
    channels, stride = points[LAST].channels, points[LAST].stride
    if points[LAST].last:
        raise SpecError(
            f"block {source.name!r} ends with a map PyTorch holds channels-last; end with `permute: {{to: channels_first}}`",
            source.locate("layers", len(definition.layers) - 1),
        )
    shortcuts = []
    names = [next(iter(e)) for e in definition.layers]
    for k, sc in enumerate(definition.shortcuts):
        if sc.input is not None and (sc.input not in points or names.count(sc.input) > 1):
            raise SpecError(
                f"shortcut input {sc.input!r} is not a layer (used once) of block {source.name!r}: {', '.join(names)}",
                source.locate("shortcut", *_sc_index(source, k), "input"),
            )
        sc_channels, sc_stride = (points[sc.input].channels, points[sc.input].stride) if sc.input else (ast.Name("in_channels"), ast.Constant(1))
        if not isinstance(sc_stride, ast.Constant) or sc_stride.value != 1:
            raise SpecError(f"shortcut input {sc.input!r} comes after a strided layer; read an earlier one", source.locate("shortcut"))
        condition = None
        if sc.when not in ("shape_changes", "always"):
            condition = expr.parse(sc.when)
            unknown = expr.free_names(condition) - set(definition.params)
            if unknown:
                where = source.locate("shortcut", *_sc_index(source, k), "when")
                raise SpecError(f"`when` may use only the block's parameters; unknown: {', '.join(sorted(unknown))}", where)
        bias = sc.bias if sc.bias is not None else bool(defaults.conv.bias)
        shortcuts.append(SymShortcut(
            sc.kind, sc.when if condition is None else "expression", condition, sc.input, sc.name, sc_channels,
            channels, stride, sc.batchnorm, bias, defaults.batchnorm.eps, defaults.batchnorm.momentum,
        ))  # fmt: skip
    # `after` reads the sum of the branch and the shortcut (nothing is known of its sign)
    points["after.input"] = SymTensor(channels, stride, definition.connectivity == "none" and points[LAST].nonneg, False)
    after = sym_layers(definition.after, ("after",), "after.input")
    channels = points[LAST].channels
    kept = {sc.input for sc in definition.shortcuts if sc.input} | {n for item in after for n in item.inputs}
    layers = _live(layers, {last_of[("layers",)], *kept}, aliases)
    after = _live(after, {last_of[("after",)]}, aliases)
    params = tuple(
        (k, None, v) if isinstance(v, str) else (k, v, {bool: "bool", int: "int", float: "float"}[type(v)])
        for k, v in definition.params.items()
    )
    reads.update({prev_name for prev_name in (layers[-1].name if layers else None, after[-1].name if after else None) if prev_name})
    reads.update(sc.input for sc in definition.shortcuts if sc.input)
    _unread(defined, reads, f"block {source.name!r}")
    # the output is known to be >= 0 when the last layer says so (after the merge, for skip blocks)
    nonneg_out = points[LAST].nonneg and (definition.connectivity == "none" or bool(definition.after))
    if not _numbered(definition):
        _check_named_layers(source)
    numbered = definition.connectivity == "none" and not after and all(
        layer.name.isdigit() and not layer.inputs and not isinstance(layer, SymGroup)
        and not (isinstance(layer, SymLayer) and (ops.KINDS[layer.kind].MERGE or ops.KINDS[layer.kind].EXPRESSION))
        for layer in layers
    )  # fmt: skip
    return BlockType(
        source.name, definition.doc, params, definition.connectivity, layers, after, tuple(shortcuts), channels,
        stride, source.locate(), nonneg_out, numbered,
    )  # fmt: skip


LAST = "<last>"  # key of the tensor a list of a block kind ends with


@dataclass(frozen=True)
class SymTensor:
    """A tensor inside a block kind: its channels and stride (from the block input) as
    expressions, whether it is known to be >= 0, and whether it is flat."""

    channels: ast.expr
    stride: ast.expr
    nonneg: bool
    flat: bool
    last: bool = False  # a map PyTorch holds channels-last (after a permute)


def _sym_source(points: dict[str, SymTensor], name: str, where: Location) -> str:
    if name not in points or "." in name and not name.endswith(".input"):
        known = ", ".join(n for n in points if "." not in n)
        raise SpecError(f"unknown tensor {name!r}: a layer reads `input` or an earlier layer of its block; known here: {known}", where)
    return name


def _sym_condition(raw: Any, definition: m.BlockDef, channels: ast.expr, where: Location) -> ast.expr | None:
    """An `if:` inside a block kind, over its parameters, in_channels and channels."""
    if raw is None:
        return None
    tree = expr.parse(raw) if isinstance(raw, str) else ast.Constant(raw)
    unknown = expr.free_names(tree) - set(definition.params) - {"in_channels", "channels"}
    if unknown:
        raise SpecError(f"`if` may use the block's parameters, in_channels and channels; unknown: {', '.join(sorted(unknown))}", where)
    return expr.substitute(tree, {"channels": channels})


def _if(condition: ast.expr, then: ast.expr, other: ast.expr) -> ast.expr:
    """`then if condition else other`, or just `then` where the two agree whenever the
    condition fails (`in_channels * t` is `in_channels` where `t != 1` fails)."""
    if expr.to_python(then) == expr.to_python(other):
        return then
    if isinstance(condition, ast.Compare) and len(condition.ops) == 1 and isinstance(condition.ops[0], ast.NotEq):
        left, right = condition.left, condition.comparators[0]
        if isinstance(left, ast.Name) and expr.to_python(expr.substitute(then, {left.id: right})) == expr.to_python(other):
            return then
        sides = {expr.to_python(left), expr.to_python(right)}
        if {expr.to_python(then), expr.to_python(other)} == sides and len(sides) == 2:
            return then  # `a if a != b else b` is `a`
    return expr.fold(ast.IfExp(condition, then, other))


_NEGATED: dict[type, type] = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt}


def _negation(tree: ast.expr) -> str:
    """The source of `not tree`, written as Python would simplify it (`stride != 1` for `stride == 1`)."""
    if isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not):
        return expr.to_python(tree.operand)
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and type(tree.ops[0]) in _NEGATED:
        return expr.to_python(ast.Compare(tree.left, [_NEGATED[type(tree.ops[0])]()], tree.comparators))
    return expr.to_python(ast.UnaryOp(ast.Not(), tree))


def _assume(condition: ast.expr, tree: ast.expr) -> ast.expr:
    """`tree` where `condition` holds: a `then if c else other` whose `c` is the condition
    (or its negation) is `then` (or `other`). An item under `if: stride != 1` reads
    `in_channels`, not `in_channels // 2 if stride == 1 else in_channels`."""
    if not isinstance(tree, ast.IfExp):
        return tree
    if expr.to_python(tree.test) == expr.to_python(condition):
        return _assume(condition, tree.body)
    if expr.to_python(condition) == _negation(tree.test) or expr.to_python(tree.test) == _negation(condition):
        return _assume(condition, tree.orelse)
    return tree


def _sym_merge(kind: str, sources: list[SymTensor]) -> SymTensor:
    first = sources[0]
    channels = ops.Concat.merged_channels([t.channels for t in sources]) if kind == "concat" else first.channels
    spatial = [t for t in sources if not t.flat] or sources
    return SymTensor(expr.fold(channels), spatial[0].stride, all(t.nonneg for t in sources) and kind != "multiply", all(t.flat for t in sources))


def _with_inputs(item: SymItem, inputs: tuple[str, ...]) -> SymItem:
    return dataclasses.replace(item, inputs=inputs)


def _type_of(state: _State, block: str, where: Location) -> BlockType:
    """The symbolic form of a block kind, built once."""
    if block in state.block_types:
        return state.block_types[block]
    source = state.spec.blocks.get(block)
    if source is None:
        known = ", ".join(sorted(state.spec.blocks)) or "none (add `use: [resnet]` or a `blocks:` section)"
        raise SpecError(f"unknown block {block!r}; known blocks: {known}", where)
    if block in state.typing:
        raise SpecError(f"block {block!r} contains itself ({' -> '.join([*state.typing, block])})", where)
    _check_block_depth(state.typing, block, where)
    state.typing.append(block)
    try:
        btype = _block_type(state, source)
    finally:
        state.typing.pop()
    return state.block_types.setdefault(block, btype)


def _sym_nested(state: _State, name: str, kind: str, body: Any, channels: ast.expr, where: Location):  # type: ignore[no-untyped-def]
    """A block or stage inside a block kind: (its symbolic form, channels after it, its stride)."""
    inner = _type_of(state, body.block if kind == "block" else body.stage, where)
    declared = {p for p, _, _ in inner.params}
    for key in [*body.with_, *(body.first if kind == "stage" else {})]:
        if key not in declared:
            raise SpecError(f"block {inner.name!r} has no parameter {key!r}; its parameters: {', '.join(declared) or 'none'}", where)
    common = {k: _sym(v, channels) for k, v in body.with_.items()}
    if kind == "block":
        sym = _sym_instance(inner, name, common, channels)
        return sym, _frame(inner, sym, inner.out_channels), _frame(inner, sym, inner.stride)
    if body.last:
        raise SpecError(f"{name}: `last:` is not supported on a stage inside a block; give the block a parameter", where)
    if _uses_index(body):
        raise SpecError(
            f"{name}: the instance index `{STAGE_INDEX}` is available to stages at model level, not inside a block; "
            "give the block a parameter",
            where,
        )
    repeat = _sym(body.repeat, channels)
    first = _sym_instance(inner, name, {**common, **{k: _sym(v, channels) for k, v in body.first.items()}}, channels)
    first_out = _frame(inner, first, inner.out_channels)
    if body.connectivity == "dense":
        growth = _frame(inner, _sym_instance(inner, name, common, ast.Name("in_channels")), inner.out_channels)
        if "in_channels" in expr.free_names(growth) or body.first:
            raise SpecError(f"{name}: inside a block, a dense stage's instances must add a fixed number of channels", where)
        step = ast.BinOp(ast.Name("i"), ast.Mult(), growth)
        rest = _sym_instance(inner, name, common, expr.fold(ast.BinOp(channels, ast.Add(), step)))
        out = expr.fold(ast.BinOp(channels, ast.Add(), ast.BinOp(repeat, ast.Mult(), growth)))
        if not _is_one(_frame(inner, rest, inner.stride)):
            raise SpecError(f"{name}: instances of a dense stage may not change the map size", where)
        return SymStage(name, inner.name, repeat, "dense", body.names, first, rest, channels), out, ast.Constant(1)
    rest = _sym_instance(inner, name, common, first_out)
    rest_out = _frame(inner, rest, inner.out_channels)
    if expr.to_python(rest_out) != expr.to_python(first_out) or not _is_one(_frame(inner, rest, inner.stride)):
        raise SpecError(
            f"{name}: inside a block, a stage's later instances must keep their input shape "
            f"(here {expr.to_python(first_out)} -> {expr.to_python(rest_out)} channels); use a stage at model level",
            where,
        )
    stage = SymStage(name, inner.name, repeat, "none", body.names, first, rest, channels)
    return stage, first_out, _frame(inner, first, inner.stride)


def _sym_instance(inner: BlockType, name: str, args: dict[str, ast.expr], in_channels: ast.expr) -> SymBlock:
    """An instance of `inner` with its shortcut switches as conditions (torchvision's
    `stride != 1 or in_channels != planes * expansion`)."""
    sym = SymBlock(name, inner.name, tuple(args.items()), (), in_channels)
    flags = tuple((sc.name, _frame(inner, sym, _changes(sc))) for sc in inner.shortcuts if sc.when == "shape_changes")
    return SymBlock(name, inner.name, tuple(args.items()), flags, in_channels)


def _changes(sc: SymShortcut) -> ast.expr:
    """When a `shape_changes` shortcut applies, as an expression over its block's parameters."""
    return ast.BoolOp(ast.Or(), [
        ast.Compare(sc.stride, [ast.NotEq()], [ast.Constant(1)]),
        ast.Compare(sc.in_channels, [ast.NotEq()], [sc.out_channels]),
    ])  # fmt: skip


def _frame(inner: BlockType, sym: SymBlock, tree: ast.expr) -> ast.expr:
    """An expression of the inner kind (over its parameters) in the outer kind's terms."""
    values = {p: ast.Constant(d) for p, d, _ in inner.params if d is not None}
    values.update(dict(sym.args))
    values["in_channels"] = sym.in_channels
    return expr.substitute(tree, values)


def _is_one(tree: ast.expr) -> bool:
    return isinstance(tree, ast.Constant) and tree.value == 1


def _sym_args(state: _State, kind: str, args: Any, channels: ast.expr, where: Location) -> tuple[tuple[str, ast.expr], ...]:
    out = []
    raw = _raw_args(state, kind, args, where)
    for attr in ops.KINDS[kind].ATTRS:
        value = raw[attr.name]
        if value is not None:
            out.append((attr.name, ast.Constant(value) if attr.type in ("str", "const", "init") else _sym(value, channels)))
    return tuple(out)


def _sym(raw: Any, channels: ast.expr) -> ast.expr:
    if isinstance(raw, list):  # a [height, width] pair
        return ast.Tuple([_sym(v, channels) for v in raw], ast.Load())
    tree = expr.parse(raw) if isinstance(raw, str) else ast.Constant(raw)
    return expr.substitute(tree, {"channels": channels})


# --- whole-model checks --------------------------------------------------------------------


def _check_size(state: _State, entries: list[dict[str, Any]], scope: dict[str, expr.Value], yaml_path: tuple[Any, ...], total: int = 0) -> int:
    """Bound the expanded size from the repeat counts before expanding anything,
    so an absurd spec fails at once instead of after building MAX_NODES nodes."""
    for index, entry in enumerate(entries):
        (name, body), = entry.items()
        kind = item_kind(body)
        where = state.spec.source.locate((*yaml_path, index, name))
        if kind == "group":
            total = _check_size(state, body.group, scope, (*yaml_path, index, name, "group"), total)
            continue
        count = _block_size(state, getattr(body, kind), ()) if kind in ("block", "stage") else 1
        if kind == "stage":
            try:
                repeat = _value(body.repeat, scope, where, "any")
            except SpecError:
                repeat = 1
            if not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
                repeat = 1  # lowering reports it where it is evaluated
            count = (count + 1) * repeat  # + a concat per instance in dense stages
        total += count
        if total > MAX_NODES:
            raise SpecError(
                f"the model expands to more than {MAX_NODES} layers (up to {total} by here); "
                "raise archc.lower.MAX_NODES deliberately if you mean it",
                where,
            )
    return total


def _block_size(state: _State, block: str, seen: tuple[str, ...]) -> int:
    """Nodes one instance of `block` adds at least (a stage inside it counted once)."""
    source = state.spec.blocks.get(block)
    if source is None or block in seen:
        return 1  # lowering reports it
    d = source.definition
    size = 3  # shortcut (<= 2 nodes) and add
    for entry in (*d.layers, *d.after):
        (body,) = entry.values()
        kind = item_kind(body)
        size += _block_size(state, getattr(body, kind), (*seen, block)) + 1 if kind in ("block", "stage") else 1
    return size


def _locations(state: _State) -> tuple[tuple[str, Location], ...]:
    """Where the names that reach generated code are written, for the backends' checks."""
    spec = state.spec
    out = [("name", spec.locate("name"))]
    out += [(f"params.{p}", spec.locate("params", p)) for p in spec.model.params]
    for block in state.block_types:
        source = spec.blocks[block]
        out.append((f"block.{block}", source.source.locate_key(source.path)))
        out += [(f"block.{block}.params.{p}", source.locate("params", p)) for p in source.definition.params]
        if source.definition.shortcuts:
            out.append((f"block.{block}.shortcut", source.locate("shortcut")))
    # the `defaults:` rules, for checks of the layers that take them from there (a projection shortcut)
    out += [(f"defaults.{kind}.init", spec.locate("defaults", kind, "init")) for kind in init.KINDS if init.section(kind) == kind]
    return tuple(out)


# --- helpers ------------------------------------------------------------------------------


def _join(path: tuple[str, ...], *more: str) -> str:
    return ".".join((*path, *more))


def _add_node(state: _State, node: Node, where: Location) -> None:
    if len(state.nodes) >= MAX_NODES:
        raise SpecError(
            f"the model expands to more than {MAX_NODES} layers; raise archc.lower.MAX_NODES deliberately if you mean it",
            where,
        )
    if node.shape.c > MAX_CHANNELS or node.shape.numel() > MAX_ELEMENTS:
        raise SpecError(
            f"{node.id} would produce {node.shape}, over the limits of {MAX_CHANNELS} channels and "
            f"{MAX_ELEMENTS} values per map; raise archc.lower.MAX_CHANNELS / MAX_ELEMENTS deliberately if you mean it",
            where,
        )
    state.params += node.trainable + node.non_trainable
    if state.params > MAX_PARAMS:
        raise SpecError(
            f"the model has more than {MAX_PARAMS} parameters at {node.id}; "
            "raise archc.lower.MAX_PARAMS deliberately if you mean it",
            where,
        )
    node = dataclasses.replace(node, where=where)
    state.nodes.append(node)


def _sum(items: Any) -> Counts:
    total = Counts()
    for item in items:
        total = total + item.counts
    return total


def _exposed_params(state: _State, scope: dict[str, expr.Value]) -> list[str]:
    """Model params that build_model() can take: used only as the width of a layer
    that nothing channel-dependent follows (the classifier), or as a dropout rate."""
    exposed = []
    for name, refs in state.param_refs.items():
        if name in state.pinned or isinstance(scope[name], bool):
            continue
        ok = all(
            attr == "rate" or (attr in ("units", "filters") and all(k in ops.KINDS and ops.KINDS[k].CHANNEL_FREE for k in state.top_kinds[idx + 1 :]))
            for idx, attr, _ in refs
        )
        if ok:
            exposed.append(name)
    return exposed


def _mark_exposed(item: Inst, exposed: list[str], refs: dict[str, list[tuple[int, str, LayerKey]]], path: LayerKey = ()) -> Inst:
    """Record on each model-level layer which of its arguments come from build_model()."""
    here = (*path, item.name)
    if isinstance(item, GroupInst):
        items = tuple(_mark_exposed(child, exposed, refs, here) for child in item.items)
        return dataclasses.replace(item, items=items)
    if isinstance(item, LayerInst):
        marks = tuple((attr, p) for p in exposed for _, attr, where in refs.get(p, []) if where == here)
        return dataclasses.replace(item, exposed=marks) if marks else item
    return item


def _is_merge(item: SymItem) -> bool:
    return isinstance(item, SymLayer) and ops.KINDS[item.kind].MERGE


def _live(items: tuple[SymItem, ...], outputs: set[str], aliases: dict[str, str]) -> tuple[SymItem, ...]:
    """Each item of a block kind's list exists where its condition holds and something that
    exists reads it: a layer read only by a merge under `if:` exists where the merge does,
    in the IR and in both backends alike (a Keras model drops a layer nothing reads).

    Walks the list backwards with, per item, the condition under which its value is used
    (ALWAYS, or an expression over the block's parameters); an item that is absent passes
    its input on, so that input is used where the item's value is and its condition fails."""
    index: dict[str, int] = {}  # name -> the latest item of that name so far
    wiring: list[tuple[list[object], object]] = []  # per item: what it reads, what it passes on

    def resolve(name: str) -> object:
        while name in aliases and name not in index:
            name = aliases[name]
        return index.get(name, name)

    for k, item in enumerate(items):
        prev: object = k - 1 if k else None
        reads = [resolve(n) for n in item.inputs] or [prev]
        passes = resolve(item.passes) if isinstance(item, SymLayer) and item.passes else prev if _is_merge(item) else reads[0]
        wiring.append((reads, passes))
        index[item.name] = k
    used: dict[object, Any] = {resolve(name): ALWAYS for name in outputs}
    out = list(items)
    for k in reversed(range(len(items))):
        item, (reads, passes) = items[k], wiring[k]
        when = used.get(k)
        if when is None:
            continue  # nothing reads it (reported as an unread layer where it is defined)
        condition = item.condition
        for source in reads:
            used[source] = _either(used.get(source), when if source == passes else _both(condition, when))
        if condition is not None and passes not in reads:
            used[passes] = _either(used.get(passes), _both(ast.UnaryOp(ast.Not(), condition), when))
        if when is not ALWAYS and not _implies(condition, when):
            out[k] = dataclasses.replace(item, condition=_both(condition, when))
    return tuple(out)


ALWAYS = ast.Constant(True)


def _both(a: ast.expr | None, b: Any) -> Any:
    if b is ALWAYS or b is None:
        return a if a is not None else ALWAYS
    if a is None or a is ALWAYS:
        return b
    return ast.BoolOp(ast.And(), [*_conjuncts(a), *(t for t in _conjuncts(b) if expr.to_python(t) not in {expr.to_python(c) for c in _conjuncts(a)})])


def _either(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if a is ALWAYS or b is ALWAYS:
        return ALWAYS
    if expr.to_python(a) == expr.to_python(b):
        return a
    return ast.BoolOp(ast.Or(), [a, b])


def _conjuncts(tree: ast.expr) -> list[ast.expr]:
    if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And):
        return [t for v in tree.values for t in _conjuncts(v)]
    return [tree]


def _implies(condition: ast.expr | None, when: ast.expr) -> bool:
    """Whether `condition` holding means `when` holds, as far as their conjuncts tell."""
    if condition is None:
        return False
    have = {expr.to_python(t) for t in _conjuncts(condition)}
    return all(expr.to_python(t) in have for t in _conjuncts(when))
