"""The model's own list: layers, groups, branches, stages and blocks at model level,
lowered in order with concrete shapes. Blocks are instantiated by `specialise`."""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockInst,
    Counts,
    GroupInst,
    Inst,
    LayerInst,
    Node,
    Output,
    ParallelInst,
    StageInst,
    instance_name,
)
from archc.lower import limits
from archc.lower.context import (
    Ctx,
    State,
    Tensor,
    check_arity,
    check_layout,
    check_list_entry,
    check_merge_named,
    check_outputs_place,
    check_path,
    check_tap_variables,
    counts_of,
    item_kind,
    join_path,
    lookup,
    shown,
    unread,
)
from archc.lower.limits import add_node, check_repeat
from archc.lower.specialise import instantiate
from archc.lower.values import (
    STAGE_INDEX,
    call_args,
    provenance,
    ranked_values,
    raw_args,
    typed_value,
    uses_index,
)
from archc.ops import Shape, ShapeError
from archc.spec import expr
from archc.spec import models as m
from archc.spec.models import POSITIONAL


def lower_items(
    state: State, ctx: Ctx, entries: list[dict[str, Any]], shape: Shape, cur: str, nonneg: bool,
    env: dict[str, Tensor] | None = None, offset: int = 0, prev: str = "input", in_group: bool = False,
    first_position: int = 0, inlined: list[tuple[int, int, BlockInst]] | None = None, in_modules: bool = False,
) -> tuple[tuple[Inst, ...], Shape, str, bool]:  # fmt: skip
    """Lower a list of `name: layer` entries of the model's in sequence (a block kind's are
    its symbolic form's, specialised: `specialise`).

    Each entry reads the previous tensor, or the ones it names (`from:`, a merge's
    list) from `env`: the tensors of this list and of the lists enclosing it, by
    spec name, `input` among them. Unnamed entries are numbered from `first_position`;
    `inlined` collects the block instances written `inline` in this list, as (index of
    their first layer in the result, number of layers, instance). An unnamed stage of a
    list (`in_group`) contributes its instances to the numbering.
    """
    items: list[Inst] = []
    seen: dict[str, Any] = {}
    uses: dict[str, int] = {}
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
            check_list_entry(shown(written, index), kind, body, where)
        inputs: tuple[str, ...] = body.reads
        others: tuple[Tensor, ...] = ()  # a block with several inputs: the tensors after the first
        if inputs:  # its input, whether it is present or passes that input on
            at = (lambda k: ctx.where(index, written, "from", k)) if len(inputs) > 1 else (lambda k: ctx.where(index, written, "from"))
            source, *more = [lookup(env, n, at(k)) for k, n in enumerate(inputs)]
            cur, shape, nonneg = source.node, source.shape, source.nonneg
            others = tuple(more)
        if kind == "block" and body.block in state.spec.blocks:
            check_outputs_place(state.spec.blocks[body.block], written, body.if_ is not None, in_group or in_modules, where)
        if body.if_ is not None and not typed_value(body.if_, {**ctx.scope, "channels": shape.c}, ctx.where(index, written, "if"), "bool", state=state):
            if written != POSITIONAL:
                env[written] = Tensor(cur, shape, nonneg)  # an absent layer passes its input on
                flow.aliases[written] = (inputs or (prev,))[0]
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
        sub = Ctx(ctx.source, (*ctx.yaml_path, index, written), (*ctx.module_path, node_name), ctx.scope, ctx.top_level)
        if ctx.top_level:
            state.top_kinds.append(kind if kind in ops.KINDS else "composite")
            state.top_paths.append(join_path(sub.module_path))
        if kind == "group":
            gpath = (*sub.yaml_path, "group")  # written `name: {group: [...]}`, or `name: [...]`
            gpath = gpath if gpath in ctx.source.marks else sub.yaml_path
            gctx = Ctx(ctx.source, gpath, sub.module_path, ctx.scope, ctx.top_level)
            inlined_here: list[tuple[int, int, BlockInst]] = []
            children, out, cur, nonneg = lower_items(
                state, gctx, body.group, shape, cur, nonneg, env={**env}, in_group=True, inlined=inlined_here
            )
            item = GroupInst(name, children, shape, out, counts_of(children), inlined=tuple(inlined_here))
            if model_level:  # taps: `from: backbone.layer3` reads an entry of this group from outside it
                env.update({f"{name}.{c.name}": Tensor(c.output, c.out_shape, False) for c in children if c.output})
        elif kind == "modules":
            if not (model_level or in_modules):
                raise SpecError(f"{name}: `modules:` is a container of the model's own list: write it at model level or in another `modules:`", where)
            item, cur, nonneg = _lower_modules(state, sub, body, name, shape, cur, nonneg, env, flow.resolve(prev))
            item = _resolved(item, flow.resolve)  # its entries' reads of absent layers outside it
        elif kind in ("block", "stage") and body.inline:
            if written != POSITIONAL or inlined is None:
                raise SpecError(
                    f"{shown(written, index)}: `inline` writes a block's layers as entries of a numbered list: "
                    "use it on an unnamed entry of a list",
                    where,
                )
            parent = Ctx(ctx.source, sub.yaml_path, ctx.module_path, ctx.scope, ctx.top_level)
            if kind == "block":
                args = call_args(state, sub, body.block, body.with_, {}, "with")
                inst, cur = instantiate(state, parent, body.block, args, name, shape, cur, first_position=position - 1)
                insts = [inst]
            else:
                stage, cur = _lower_stage(state, sub, body, name, shape, cur, spliced_at=position - 1, inline=True)
                insts = list(stage.instances)
            for inst in insts:
                if not inst.children:
                    raise SpecError(f"{shown(written, index)}: this `inline` instance has no layers (every `if:` fails)", where)
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
        elif kind == "parallel":
            item, cur, nonneg = _lower_parallel(state, sub, body, name, shape, cur, nonneg, env, body.from_ or prev)
            inputs = item.inputs  # one per path
        elif kind == "block":
            args = call_args(state, sub, body.block, body.with_, {}, "with", top_index=len(state.top_kinds) - 1 if ctx.top_level else None)
            item, cur = instantiate(state, sub, body.block, args, name, shape, cur, others=others)
            nonneg = state.block_types[body.block].nonneg_out
        elif kind == "stage" and written == POSITIONAL and in_group:
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
            check_merge_named(written, kind, where)
            if body.from_ is not None or len(names) < 2:
                raise SpecError(f"{name}: {kind} lists the tensors it merges (at least two), e.g. {kind}: [input, conv2]", where)
            sources = [lookup(env, n, sub.where(kind, i)) for i, n in enumerate(names)]
            check_layout(name, kind, any(t.shape.last for t in sources), where)
            op = ops.KINDS[kind].merging(len(names), body)
            try:
                out = op.infer_many([t.shape for t in sources])  # type: ignore[attr-defined]
            except ShapeError as e:
                raise SpecError(f"{name}: {e} (from {', '.join(names)})", where) from None
            node_id = join_path(ctx.module_path, node_name)
            edges = tuple("gate" if kind == "multiply" and t.shape != out else "data" for t in sources)
            counts = Counts(*op.params(out))  # a weighted sum's weights
            add_node(state, Node(node_id, op, tuple(t.node for t in sources), out, counts.trainable, counts.non_trainable, edges=edges), where)
            nonneg = all(t.nonneg for t in sources) and op.nonneg_after(True)
            item = LayerInst(name, op, sources[0].shape, out, counts, where=where, inputs=tuple(flow.resolve(n) for n in names))
            cur = node_id
        else:
            op = _primitive(state, sub, kind, getattr(body, kind), shape, len(state.top_kinds) - 1)
            check_layout(name, kind, shape.last, where, in_group)
            read = [getattr(op, key) for key in op.READS]  # other tensors it reads (`resize: {like: low}`)
            if read and in_group:
                raise SpecError(f"{name}: {kind} reads {', '.join(read)} too, so it cannot be an entry of a list; write it outside", where)
            others = [lookup(env, n, sub.where(kind, key)) for n, key in zip(read, op.READS)]
            try:
                out = op.infer_reading(shape, [t.shape for t in others])
            except ShapeError as e:
                detail = str(e) if str(shape) in str(e) else f"{e} (input {shape})"
                raise SpecError(f"{name}: {detail}", where) from None
            if out.spatial:
                out = dataclasses.replace(out, last=op.last_after(op.values(), shape.last))
            counts = Counts(*op.params(shape))
            node_id = join_path(ctx.module_path, node_name)
            sources = (cur, *(t.node for t in others))
            add_node(state, Node(node_id, op, sources, out, counts.trainable, counts.non_trainable, op.macs(shape)), where)
            if read:
                inputs = (*(inputs or (prev,)), *read)
            item = LayerInst(name, op, shape, out, counts, nonneg_in=nonneg, where=where)
            cur = node_id
            nonneg = op.nonneg_after(nonneg)
        if inputs:  # an absent layer's name reads what it passes on
            item = dataclasses.replace(item, inputs=tuple(flow.resolve(n) for n in inputs))
        item = dataclasses.replace(item, output=cur)
        items.append(item)
        read = [*(item.inputs if item.inputs else (prev,)), *((body.from_ or prev,) if kind == "branches" else ())]
        if kind == "modules":  # what its entries read from outside it (a row of HRNet's fuse layers reads x0 ... xn)
            read += container_reads(item)  # type: ignore[arg-type]
        reads.update(read)
        flow.readers[name] = [flow.resolve(n) for n in read] + _containers_read(read, items)  # a tap reads its container
        flow.spans[name] = (first_node, len(state.nodes), first_item, len(items))
        defined[name] = where
        shape = item.out_shape
        env[name] = Tensor(cur, shape, nonneg)
        if isinstance(item, BlockInst):  # the later outputs of a kind with several: `name.output`
            env.update({f"{name}.{o}": Tensor(node, o_shape, False) for o, node, o_shape in item.more_out})
        prev = name
    if model_level:
        check_tap_variables(reads, defined)
        state.outputs = _outputs(state, env, flow)
        outputs = {o.item for o in state.outputs} | set(_containers_read([o.item for o in state.outputs], items))
        flow.prune(state, items, defined, outputs or {flow.resolve(prev)})
    return tuple(items), shape, cur, nonneg


def _lower_modules(
    state: State, ctx: Ctx, body: m.ModulesItem, name: str, shape: Shape, cur: str, nonneg: bool,
    env: dict[str, Tensor], prev: str,
) -> tuple[GroupInst, str, bool]:  # fmt: skip
    """A `modules:` container: its entries lowered as a list of the model's own (dataflow, not
    in sequence), in a scope of their own; each of its tensors is then a tensor of the
    enclosing list under its path (`fpn.inner_blocks.2`), and the entries' reads are
    rewritten to such paths, so the emitters call them from the model's forward."""
    where = ctx.where()
    mpath = (*ctx.yaml_path, "modules")
    inner = {**env}
    mctx = Ctx(ctx.source, mpath, ctx.module_path, ctx.scope, ctx.top_level)
    children, out, cur, nonneg = lower_items(state, mctx, body.modules, shape, cur, nonneg, env=inner, prev=prev, in_modules=True)
    numbered = [c.name.isdigit() for c in children]
    if any(numbered) and not all(numbered):
        raise SpecError(f"{name}: a `modules:` container has named entries (nn.ModuleDict) or numbered ones (nn.ModuleList), not both", where)
    if all(numbered) and any(not _is_module(c) for c in children):
        raise SpecError(
            f"{name}: the entries of a numbered `modules:` container are modules (an nn.ModuleList): "
            "write merges and resizes in a named container or outside it",
            where,
        )
    local = {key for key in inner if key not in env or inner[key] is not env[key]}
    env.update({f"{name}.{key}": inner[key] for key in local})
    item = GroupInst(name, _qualified(tuple(children), name, local), shape, out, counts_of(children), dataflow=True)
    return item, cur, nonneg


def _resolved(group: GroupInst, resolve: Any) -> GroupInst:
    """A `modules:` container whose entries' reads name what absent layers outside it pass on."""
    items = tuple(
        dataclasses.replace(
            _resolved(item, resolve) if isinstance(item, GroupInst) and item.dataflow else item,
            inputs=tuple(resolve(n) for n in item.inputs),
        )
        for item in group.items
    )
    return dataclasses.replace(group, items=items)


def container_reads(group: GroupInst) -> list[str]:
    """The tensors outside a `modules:` container that its entries (and their paths) read."""
    out: list[str] = []
    for item in group.items:
        inner = container_reads(item) if isinstance(item, GroupInst) and item.dataflow else []
        out += [n for n in (*item.inputs, *inner) if n != group.name and not n.startswith(f"{group.name}.")]
    return out


def _is_module(item: Inst) -> bool:
    """An entry with a PyTorch module (not a merge or an expression in forward)."""
    return not isinstance(item, LayerInst) or not item.op.module_free()


def _qualified(items: tuple[Inst, ...], prefix: str, local: set[str]) -> tuple[Inst, ...]:
    """`items` with their reads of the container's own tensors written as model-level paths."""
    out = []
    for item in items:
        inputs = tuple(f"{prefix}.{n}" if n in local or n.split(".")[0] in local else n for n in item.inputs)
        if isinstance(item, GroupInst) and item.dataflow:
            item = dataclasses.replace(item, items=_qualified(item.items, prefix, local))
        out.append(dataclasses.replace(item, inputs=inputs))
    return tuple(out)


def _containers_read(names: list[str], items: list[Inst]) -> list[str]:
    """The containers that reads by path (`backbone.layer3`, `fpn.inner_blocks.2`, `h.logits`)
    read: a group run in sequence only where the path names its last entry (the entries
    after a tapped one need a reader of their own: a backend builds only what is read)."""
    groups = {item.name: item for item in items if isinstance(item, GroupInst) and not item.dataflow}
    out = []
    for name in names:
        head, dot, entry = name.partition(".")
        group = groups.get(head)
        if dot and (group is None or (group.items and group.items[-1].name == entry)):
            out.append(head)
    return out


def _outputs(state: State, env: dict[str, Tensor], flow: _Flow) -> list[Output]:
    """The tensors `outputs:` names, in its order (none: the model's last tensor alone)."""
    written = state.spec.model.outputs or {}
    out = []
    for key, name in written.items():
        tensor = lookup(env, name, state.spec.locate("outputs", key))
        if name in flow.aliases:  # its layer is absent (`if: aux_loss` fails): so is the output
            continue
        out.append(Output(key, name, tensor.node, tensor.shape))
    if written and not out:
        raise SpecError("every layer that `outputs:` names is absent (their `if:`s fail): the model would return nothing", state.spec.locate("outputs"))
    return out


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

    def prune(self, state: State, items: list[Inst], defined: dict[str, Location], outputs: set[str]) -> None:
        count: dict[str, int] = dict.fromkeys(outputs, 1)
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
        unread({n: w for n, w in defined.items() if n not in dead}, {n for n, k in count.items() if k}, "the model")
        nodes = {i for name in dead for i in range(*self.spans[name][:2])}
        insts = {i for name in dead for i in range(*self.spans[name][2:])}
        state.nodes[:] = [node for i, node in enumerate(state.nodes) if i not in nodes]
        items[:] = [item for i, item in enumerate(items) if i not in insts]


def _merged_names(body: Any, kind: str) -> list[str]:
    """The tensors a merge lists."""
    op = ops.KINDS.get(kind)
    return list(getattr(body, kind)) if op is not None and op.MERGE else []


def _lower_branches(
    state: State, ctx: Ctx, body: m.BranchesItem, name: str, shape: Shape, cur: str, nonneg: bool,
    env: dict[str, Tensor], prev: str,
) -> tuple[list[Inst], Inst, str, bool]:  # fmt: skip
    """Parallel branches from one input: each branch is an entry of the enclosing list that
    reads `prev` (its names are module names there); the merge is the entry `name`."""
    bctx = Ctx(ctx.source, (*ctx.yaml_path, "branches"), ctx.module_path[:-1], ctx.scope, ctx.top_level)
    outs: list[Tensor] = []
    branches: list[Inst] = []
    ends: list[str] = []
    for k, entry in enumerate(body.branches):
        (written,) = entry
        if written == POSITIONAL:
            raise SpecError("branches need names: they are module names", bctx.where(k))
        items, out, node, nn = lower_items(state, bctx, [entry], shape, cur, nonneg, env={**env}, offset=k)
        branches += [dataclasses.replace(item, inputs=item.inputs or (prev,)) for item in items]  # a branch may read another tensor
        ends.append(items[-1].name if items else prev)  # a branch whose `if:` fails passes the input on
        outs.append(Tensor(node, out, nn))
        env[written] = outs[-1]
    op = ops.KINDS[body.merge]()
    try:
        merged = op.infer_many([t.shape for t in outs])  # type: ignore[attr-defined]
    except ShapeError as e:
        raise SpecError(f"{name}: {e}", ctx.where()) from None
    node_id = join_path(ctx.module_path)
    add_node(state, Node(node_id, op, tuple(t.node for t in outs), merged, edges=("branch",) * len(outs)), ctx.where())
    merge = LayerInst(name, op, outs[0].shape, merged, Counts(), where=ctx.where(), inputs=tuple(ends))
    return branches, merge, node_id, all(t.nonneg for t in outs)


def _lower_parallel(
    state: State, ctx: Ctx, body: m.ParallelItem, name: str, shape: Shape, cur: str, nonneg: bool,
    env: dict[str, Tensor], read: str,
) -> tuple[ParallelInst, str, bool]:  # fmt: skip
    """A module list at model level: path k (module `name.k`) reads `read` (the list's input)
    or its own `from:`; the merge of their outputs is the node `name`."""
    pctx = Ctx(ctx.source, (*ctx.yaml_path, "parallel"), ctx.module_path, ctx.scope, ctx.top_level)
    paths: list[Inst] = []
    outs: list[Tensor] = []
    sources: list[str] = []
    for k, entry in enumerate(body.parallel):
        (written, path), = entry.items()
        check_path(name, k, written, item_kind(path), path, pctx.where(k))
        items, out, node, nn = lower_items(state, pctx, [entry], shape, cur, nonneg, env={**env}, offset=k, prev=read, first_position=k)
        (inst,) = items
        outs.append(Tensor(node, out, nn))
        if isinstance(inst, ParallelInst):  # a row of a grid: its paths read their own tensors
            paths.append(inst)
            sources += inst.inputs
            continue
        paths.append(dataclasses.replace(inst, inputs=()))
        sources.append(path.from_ or read)
    op = ops.KINDS[body.merge]()
    try:
        merged = op.infer_many([t.shape for t in outs])  # type: ignore[attr-defined]
    except ShapeError as e:
        shapes = ", ".join(str(t.shape) for t in outs)
        raise SpecError(f"{name}: {e}" + ("" if all(str(t.shape) in str(e) for t in outs) else f" (its paths give {shapes})"), ctx.where()) from None
    node_id = join_path(ctx.module_path)
    add_node(state, Node(node_id, op, tuple(t.node for t in outs), merged, edges=("branch",) * len(outs)), ctx.where())
    inst = ParallelInst(name, body.merge, tuple(paths), shape, merged, counts_of(paths), inputs=tuple(sources))
    return inst, node_id, all(t.nonneg for t in outs) and op.nonneg_after(True)


def _primitive(state: State, ctx: Ctx, kind: str, args: Any, shape: Shape, top_index: int) -> ops.Op:
    scope = {**ctx.scope, "channels": shape.c}
    raw = raw_args(state, kind, args, lambda: ctx.where(kind))
    values: dict[str, Any] = {}
    for attr in ops.KINDS[kind].ATTRS:
        value = raw[attr.name]
        if attr.type in ("str", "const", "init", "tensor") or value is None:
            values[attr.name] = value
            continue
        ref = (top_index, attr.name, ctx.module_path) if ctx.top_level else None
        try:
            values[attr.name] = typed_value(value, scope, None, attr.type, state=state, ref_ok=ctx.top_level, ref=ref)
        except SpecError as e:  # located only on failure: deep stages run this loop thousands of times
            where = ctx.where(kind) if getattr(args, attr.name) is None else ctx.where(kind, attr.name)
            raise SpecError(e.message + provenance(state, value, where), where) from None
    if ops.KINDS[kind].LAYOUT:
        values["channels_last"] = shape.last or not shape.spatial
    values = ranked_values(ops.KINDS[kind], values, shape.rank, state.rank, lambda key: ctx.where(kind, key))
    return ops.KINDS[kind](**values)


def _lower_stage(
    state: State, ctx: Ctx, body: m.StageItem, name: str, shape: Shape, cur: str, spliced_at: int | None = None,
    inline: bool = False,
) -> tuple[StageInst, str]:  # fmt: skip
    """A stage; `spliced_at`: its instances are entries of the enclosing list from that position on
    (an unnamed stage in a numbered list, as torchvision's MobileNet `features`); with `inline`,
    the layers of its instances are those entries (torchvision's VGG `features`)."""
    repeat = typed_value(body.repeat, ctx.scope, ctx.where("repeat"), "any", state=state)
    check_repeat(repeat, ctx.where("repeat"))
    if body.stage in state.spec.blocks:
        check_arity(state.spec.blocks[body.stage], name, "stage", 1, ctx.where("stage"))
    indexed = uses_index(body)
    common = first = last = {}
    # its instances pass a model param on from build_model() where each is one call (not spliced into a list)
    top_index = len(state.top_kinds) - 1 if ctx.top_level and spliced_at is None else None
    if not indexed:
        common, first, last = _stage_args(state, ctx, body, repeat, ctx.scope, top_index)
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
        ictx = Ctx(ctx.source, ctx.yaml_path, parent if inline else (*parent, inst_name), ctx.scope, False)
        before = cur
        if indexed:  # the arguments read the instance's index `i`
            icommon, ifirst, ilast = _stage_args(state, ctx, body, repeat, {**ctx.scope, STAGE_INDEX: k}, top_index)
            args = ilast if k == repeat - 1 else ifirst if k == 0 else icommon
        else:
            args = last if k == repeat - 1 else first if k == 0 else common
        inst, inst_out = instantiate(
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
            cur = join_path(ctx.module_path, f"{inst_name}_concat")
            add_node(state, Node(cur, concat, (before, inst_out), out, edges=("dense", "data")), ctx.where())
        else:
            out, cur = inst.out_shape, inst_out
    if indexed:
        instances = _with_index_trees(body, ctx.scope, instances)
    stage = StageInst(name, body.stage, body.connectivity, body.names, tuple(instances), stage_in, out, counts_of(instances))
    return stage, cur


def _stage_args(
    state: State, ctx: Ctx, body: m.StageItem, repeat: int, scope: dict[str, expr.Value], top_index: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:  # fmt: skip
    """A stage's arguments for its later, first and last instances (`top_index`: see `call_args`;
    a model param in `with:` that `first:` or `last:` overrides is not every instance's)."""
    sctx = dataclasses.replace(ctx, scope=scope)
    common = call_args(state, sctx, body.stage, body.with_, {}, "with", top_index=top_index)
    for key in (body.first.keys() | body.last.keys()) & body.with_.keys():
        raw = body.with_[key]
        if isinstance(raw, str) and raw.strip() in state.spec.model.params:
            state.pinned.add(raw.strip())
    first = call_args(state, sctx, body.stage, body.first, common, "first")
    last = call_args(state, sctx, body.stage, body.last, first if repeat == 1 else common, "last")
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


def check_size(state: State, entries: list[dict[str, Any]], scope: dict[str, expr.Value], yaml_path: tuple[Any, ...], total: int = 0) -> int:
    """Bound the expanded size from the repeat counts before expanding anything,
    so an absurd spec fails at once instead of after building limits.MAX_NODES nodes."""
    for index, entry in enumerate(entries):
        (name, body), = entry.items()
        kind = item_kind(body)
        where = state.spec.source.locate((*yaml_path, index, name))
        if kind in ("group", "modules"):
            total = check_size(state, getattr(body, kind), scope, (*yaml_path, index, name, kind), total)
            continue
        count = _block_size(state, getattr(body, kind), ()) if kind in ("block", "stage") else 1
        if kind == "stage":
            try:
                repeat = typed_value(body.repeat, scope, where, "any")
            except SpecError:
                repeat = 1
            if not isinstance(repeat, int) or not 1 <= repeat <= limits.MAX_REPEAT:
                repeat = 1  # lowering reports it where it is evaluated
            count = (count + 1) * repeat  # + a concat per instance in dense stages
        total += count
        if total > limits.MAX_NODES:
            raise SpecError(
                f"the model expands to more than {limits.MAX_NODES} layers (up to {total} by here); "
                "raise archc.lower.limits.MAX_NODES deliberately if you mean it",
                where,
            )
    return total


def _block_size(state: State, block: str, seen: tuple[str, ...]) -> int:
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
