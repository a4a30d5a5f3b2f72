"""A block kind's symbolic form (`BlockType`): its items with arguments as
expressions over its parameters and `in_channels`, the channels and stride each
tensor has, and under which condition each item exists. Built once per kind
(archc.lower.kinds); the emitters print it and `specialise` evaluates it."""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Set as AbstractSet
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockType,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymShortcut,
    SymStage,
    channel_params,
    instance_of,
    named_into,
)
from archc.lower.containers import (
    check_entries_read,
    check_pieces,
    implicit_read,
    piece,
    sym_modules,
    written_name,
)
from archc.lower.context import (
    State,
    check_after_reads,
    check_inline,
    check_layout,
    check_list_entry,
    check_merge_named,
    check_named_layers,
    check_outputs_place,
    check_path,
    check_tap_variables,
    check_top_entry,
    item_kind,
    numbered_definition,
    numbered_model,
    sc_index,
    shown,
    unread,
)
from archc.lower.inplace import check_in_place
from archc.lower.liveness import drop_excused, live, resolve
from archc.lower.nested import (
    SymTensor,
    frame,
    free_channels,
    if_,
    sym_inline,
    sym_nested,
    sym_value,
)
from archc.lower.tables import opened
from archc.lower.values import STAGE_INDEX, op_rank, raw_args, type_problem
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource
from archc.spec.models import POSITIONAL
from archc.spec.simplify import simplify_all


def build_type(state: State, source: BlockSource, top: bool = False) -> BlockType:
    """The block kind with layer arguments as expressions over its parameters. `top`: the
    model's own list, the top function, whose code is printed from its one instance (so what
    a block class needs to print, a channel count or stride as one expression, it may lack)."""
    definition = source.definition
    layer_names = {n for entry in (*definition.layers, *definition.after) for n in entry}
    for sc in definition.shortcuts:
        if sc.name in definition.params or sc.name in layer_names:
            message = f"shortcut name {sc.name!r} is also a parameter or layer of block {source.name!r}; rename it"
            raise SpecError(message, source.locate("shortcut"))
    defaults = state.spec.model.defaults
    inputs_of = definition.input_names
    _check_channel_params(source, inputs_of, layer_names)
    points: dict[str, SymTensor] = {
        n: SymTensor(ast.Name(c), ast.Constant(1), False, False) for n, c in zip(inputs_of, channel_params(inputs_of))
    }
    # the top function's tensors have their channels as numbers where the form gives them (its
    # parameters and input have their values): no expression grows along the model, and its
    # stride, which only a block class's shortcut reads, is not tracked
    known = {p: ast.Constant(v) for p, v in definition.params.items()} if top else {}
    if top:
        known["in_channels"] = ast.Constant(state.spec.model.input[0])

    def settled(t: SymTensor) -> SymTensor:
        if not top:
            return t
        values = {n: known[n] for n in expr.free_names(t.channels) if n in known}
        channels = expr.fold(expr.substitute(t.channels, values)) if values else t.channels
        return dataclasses.replace(t, channels=channels, stride=ast.Constant(1))

    reads: set[str] = set()  # tensors something reads (to reject layers whose output goes nowhere)
    numbered_top = top and numbered_model(definition.layers)  # an nn.Sequential model: its entries are a list's
    sequence = (numbered_definition(definition) and not top) or numbered_top  # the model's own list numbers every unnamed entry
    defined: dict[str, Location] = {}
    aliases: dict[str, str] = {}  # entries that are never present -> the tensor they pass on
    excused: set[str] = set()  # tensors that merges never present list (dropped where nothing else reads them)
    lists: set[str] = set()  # the top function's lists (groups), whose entries it may read from outside
    last_of: dict[tuple[Any, ...], str] = {}  # each list's last tensor, by its section
    taps: dict[str, str | None] = {}  # `group.entry` read from outside its list -> why it cannot be, or None
    named: dict[str, str] = {}  # the top function's stages named into its lists: `names:` pattern (conv2_{n}) -> entry

    def sym_layers(
        entries: list[dict[str, Any]], list_section: tuple[Any, ...], prev: str, in_group: bool = False, offset: int = 0,
    ) -> tuple[SymItem, ...]:  # fmt: skip
        """The entries of one list, each reading `prev` (the name of the tensor before it) or what it names;
        a table's rows are entries of their own (`tables.opened`), located by `section`."""
        out: list[SymItem] = []
        position = 0
        seen: dict[str, Any] = {}  # the names of this list's entries so far
        modules: dict[str, tuple[bool, Any]] = {}  # name -> (a module?, its first entry's options)
        for index, written, body, section, row in opened(state, source, entries, list_section, offset, top, in_group):
            kind = item_kind(body)
            where = source.locate(*section, index, written)
            if in_group or (numbered_top and section == ("layers",)):
                check_list_entry(shown(written, index), kind, body, where, numbered_top and not in_group)
            elif top and written == POSITIONAL and section == ("layers",):
                check_top_entry(kind, body, where)
            if section == ("after",):
                check_after_reads(source, shown(written, index), body.reads, where)
            # in a numbered block kind an unnamed expression takes no number (torchvision's ASPPPooling)
            unindexed = written == POSITIONAL and section == ("layers",) and sequence and ops.KINDS.get(kind, ops.Op).EXPRESSION
            name = str(position) if written == POSITIONAL and not unindexed else kind if unindexed else written
            if unindexed and name in points:
                raise SpecError(f"block {source.name!r} has two unnamed {kind} layers; name them", where)
            inputs: tuple[str, ...] = body.reads
            here = points[_sym_source(points, inputs[0] if inputs else prev, source.locate(*section, index, written, "from"), top, lists, named.keys())]
            condition = _sym_condition(body.if_, definition, here.channels, source.locate(*section, index, written, "if"), top)
            if top and isinstance(body.if_, str):  # a condition is no argument build_model() can take
                state.pinned.update(expr.free_names(expr.parse(body.if_)) & definition.params.keys())
            if isinstance(condition, ast.Constant) and not condition.value:
                points[name] = here  # never present
                aliases[name] = inputs[0] if inputs else prev
                prev = resolve(aliases, name)  # what the next entry reads
                if kind in ops.KINDS and ops.KINDS[kind].MERGE:  # what only it merges is not built either
                    excused.update(getattr(body, kind))
                continue
            if name in seen and condition is None and seen[name] is not None and not (kind == "act" and seen[name] == body):
                raise SpecError(f"duplicate layer name {name!r} in this list; only identical activations may share a name", where)
            module = not (kind in ops.KINDS and (ops.KINDS[kind].MERGE or ops.KINDS[kind].EXPRESSION))
            conditional = condition is not None or (name in seen and seen[name] is None)
            same = name in modules and modules[name][1] == body.model_dump(exclude={"if_"})  # one module, used twice
            if not top and conditional and name in modules and (module or modules[name][0]) and not same:
                # the printed class has one attribute per name: alternatives are merges only
                raise SpecError(
                    f"block {source.name!r} has two layers named {name!r} under `if:`; alternatives of one name "
                    "must be merges (add, concat, ...): give the others names of their own", where
                )
            modules.setdefault(name, (module, body.model_dump(exclude={"if_"})))
            seen[name] = body if condition is None else None  # entries under `if:` may be alternatives
            passed = here  # what the item passes on where it is absent
            if condition is not None:  # its input where it is present
                here = dataclasses.replace(here, channels=_assume(condition, here.channels))
            position += not unindexed
            if kind in ("block", "stage") and body.inline:
                if written != POSITIONAL or not (in_group or (sequence and section == ("layers",))):
                    raise SpecError(
                        f"{shown(written, index)}: `inline` writes a block's layers as entries of a numbered list: "
                        "use it on an unnamed entry of a list",
                        where,
                    )
                if top:  # the top function's: specialised as the instances it is, their layers spliced in
                    inlined_kind = state.spec.blocks.get(body.block if kind == "block" else body.stage)
                    if inlined_kind is not None:
                        check_inline(inlined_kind, where)
                    item, _, _ = sym_nested(state, name, kind, body, here.channels, where, (), top)
                    item = dataclasses.replace(item, inline=True)
                    inner = state.block_types[body.block if kind == "block" else body.stage]
                    result = SymTensor(ast.Name(free_channels(where)), ast.Constant(0), inner.nonneg_out, False)
                    out.append(dataclasses.replace(item, where=where, at=(*section, index, written), condition=condition))
                    points[name] = result
                    reads.update((name, prev))  # it reads the entry before it
                    prev = name
                    continue
                *expanded, (item, result) = sym_inline(state, shown(written, index), kind, body, here, where, int(name), condition, passed)
                condition = None  # each layer is under it
                for layer, tensor in expanded:  # the instance's layers are entries of this list, each read by the next
                    out.append(dataclasses.replace(layer, where=where, at=(*section, index, written)))
                    points[layer.name] = tensor
                    reads.add(layer.name)
                position += len(expanded)
                name = item.name
            elif kind in ("block", "stage"):
                more = tuple(points[_sym_source(points, n, source.locate(*section, index, written, "from", k + 1), top, lists, named.keys())].channels for k, n in enumerate(inputs[1:]))
                item, after_ch, nested_stride = sym_nested(
                    state, name, kind, body, here.channels, where, more, top, lambda *key: source.locate(*section, index, written, *key)
                )
                inner = state.block_types[body.block if kind == "block" else body.stage]
                nonneg_out = inner.nonneg_out and (kind == "block" or body.connectivity == "none")
                result = SymTensor(after_ch, expr.fold(ast.BinOp(here.stride, ast.Mult(), nested_stride)), nonneg_out, False)
                if inner.outputs:  # its later outputs, read as `name.output`
                    check_outputs_place(state.spec.blocks[inner.name], written, body.if_ is not None, in_group, where)
                    item = dataclasses.replace(item, more_outputs=tuple(o for o, _, _ in inner.more_outputs))
                    for o, o_channels, o_stride in inner.more_outputs:
                        points[f"{name}.{o}"] = SymTensor(
                            frame(inner, item, o_channels), expr.fold(ast.BinOp(here.stride, ast.Mult(), frame(inner, item, o_stride))), False, False,
                        )  # fmt: skip
            elif kind == "group":
                if in_group and not top:
                    raise SpecError(f"{shown(written, index)}: a list inside a list is not supported in a block; use a block kind", where)
                source_name = inputs[0] if inputs else prev
                if here is not points[source_name]:  # simplified under its condition
                    source_name = f"{name}.input"
                    points[source_name] = here
                group_section = (*section, index, written, "group")  # `name: {group: [...]}`, or `name: [...]`
                if (*source.path, *group_section) not in source.source.marks:
                    group_section = group_section[:-1]
                children = sym_layers(body.group, group_section, source_name, in_group=True)
                item, result = SymGroup(name, children, here.channels), points[LAST]
                _check_named_into(children, top)
                lists.add(name)
                taps.update(_group_taps(points, item, condition, top))
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
            elif kind == "modules":
                if in_group:
                    raise SpecError(f"{name}: a `modules:` container is an entry of a block kind's list or of another `modules:`, not of a list", where)
                if condition is not None:
                    raise SpecError(f"{name}: a `modules:` container inside a block kind is not conditional; put `if:` on the block", where)
                item, result = sym_modules(
                    state, lambda entries, sub, read: sym_layers(entries, sub, read), points, defined, source, name, body,
                    (*section, index, written), inputs[0] if inputs else prev, where, LAST,
                )  # fmt: skip
                inputs = (inputs[0],) if inputs else ()  # its `from:`, as at model level
            elif kind == "parallel":
                item, result = _sym_parallel(
                    lambda entries, sub, read, k: sym_layers(entries, sub, read, offset=k), points, defined, reads,
                    source, name, body, (*section, index, written), inputs[0] if inputs else prev, here,
                )  # fmt: skip
                inputs = item.inputs
            elif ops.KINDS[kind].MERGE:
                inputs = tuple(getattr(body, kind))
                check_merge_named(written, kind, where)
                if body.from_ is not None or len(inputs) < 2:
                    raise SpecError(f"{name}: {kind} lists the tensors it merges (at least two), e.g. {kind}: [input, conv2]", where)
                sources = [points[_sym_source(points, n, source.locate(*section, index, written, kind, i), top, lists, named.keys())] for i, n in enumerate(inputs)]
                if condition is not None:  # each as it is where the merge is present
                    sources = [dataclasses.replace(t, channels=_assume(condition, t.channels)) for t in sources]
                check_layout(name, kind, any(t.last for t in sources), where)
                merge = ops.KINDS[kind].merging(len(inputs), body)
                result = _sym_merge(kind, sources)
                result = dataclasses.replace(result, nonneg=result.nonneg and merge.nonneg_after(True))
                options = tuple((k, ast.Constant(v)) for k, v in merge.values().items())
                item = SymLayer(name, kind, options, sources[0].channels, False, inputs, None, tuple(t.flat for t in sources))
            else:
                op = ops.KINDS[kind]
                check_layout(name, kind, here.last, where, in_group)
                args = _sym_args(state, kind, getattr(body, kind), here.channels, source.locate(*section, index, written, kind))
                if op.LAYOUT:
                    args = (*args, ("channels_last", ast.Constant(here.last or here.flat)))
                if op.RANKED:
                    args = (*args, ("rank", ast.Constant(op_rank(op, here.flat, state.rank))))
                params = dict(args)
                item = SymLayer(name, kind, args, here.channels, here.nonneg, (), None, (here.flat,))
                step = params[op.SPATIAL_STRIDE] if op.SPATIAL_STRIDE else ast.Constant(1)
                if isinstance(step, ast.Tuple):  # per dimension: the block's stride is one value for all
                    if len({ast.dump(e) for e in step.elts}) > 1 and not top:
                        if definition.shortcuts or definition.connectivity != "none":
                            raise SpecError(
                                f"{name}: a stride that differs per dimension inside a block kind (its shortcut follows one "
                                "stride); write that layer at model level",
                                source.locate(*section, index, written, kind, op.SPATIAL_STRIDE),
                            )
                        # no shortcut follows it (the video ResNets' 1x2x2 convs, their downsample written
                        # out): the kind's stride is only read as 1 or not, which the product is exactly when
                        # every dimension's is
                        step = functools.reduce(lambda a, b: ast.BinOp(a, ast.Mult(), b), step.elts)
                    else:
                        step = step.elts[0]
                stride = expr.fold(ast.BinOp(here.stride, ast.Mult(), step))
                read = [params[key].value for key in op.READS]  # type: ignore[attr-defined]  # other tensors it reads
                if read:
                    if in_group:
                        raise SpecError(f"{name}: {kind} reads {', '.join(read)} too, so it cannot be an entry of a list; write it outside", where)
                    others = [points[_sym_source(points, n, source.locate(*section, index, written, kind, key), top, lists, named.keys())] for n, key in zip(read, op.READS)]
                    inputs = (*(inputs or (prev,)), *read)
                    stride = others[0].stride  # it takes their size
                result = SymTensor(
                    op.out_channels(params, here.channels),
                    stride,
                    op.sym_nonneg(params, here.nonneg),
                    (here.flat or (kind == "dense" and not here.last) or kind == "global_avgpool") if op.FLAT_OUT is None else op.FLAT_OUT,
                    op.last_after(params, here.last),
                    op.sym_positions(params, None if here.flat else here.positions),
                )
                if kind == "flatten":
                    result = dataclasses.replace(result, channels=_flattened(name, here, where, top))
            if inputs:  # an entry that is never present is read as what it passes on
                item = _with_inputs(item, tuple(resolve(aliases, n) for n in inputs))
            reads.update(item.inputs if item.inputs else implicit_read(item, prev))
            if not in_group:
                defined[name] = where
            if condition is not None:
                item = dataclasses.replace(item, condition=condition)
                if result.last != passed.last:
                    raise SpecError(f"{name}: a layer under `if:` may not change where PyTorch holds the channels", where)
                result = SymTensor(
                    if_(condition, result.channels, passed.channels), if_(condition, result.stride, passed.stride),
                    result.nonneg and passed.nonneg, result.flat, result.last, _same(result.positions, passed.positions),
                )
            points[name] = settled(result)
            prev = name
            if top and named_into(item):  # its instances are read by name (`from: conv2_2`), known once specialised
                named[item.names] = name
            if row is not None:
                item = dataclasses.replace(item, table=row)
            if "." in name:  # `convs.1`: an entry of the container convs, written in place
                item = piece(item, kind, in_group or section == ("after",), here.channels, where)
            out.append(dataclasses.replace(item, where=where, at=(*section, index, written)))
        check_pieces(tuple(out))
        points[LAST] = points[prev]
        last_of[list_section] = prev
        return tuple(out)

    layers = sym_layers(definition.layers, ("layers",), inputs_of[0])
    outputs = tuple(definition.outputs or ())
    for k, o in enumerate(outputs):
        if o not in defined and o not in taps:
            known = ", ".join(n for n in defined if not n.isdigit())
            raise SpecError(f"output {o!r} of block {source.name!r} is not a layer of its list; its layers: {known}", source.locate("outputs", k))
    if outputs:  # its value is its first output
        points[LAST] = points[outputs[0]]
    channels, stride = points[LAST].channels, points[LAST].stride
    if points[LAST].last and not top:  # the model's may end so where it names its outputs (`lower`)
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
                source.locate("shortcut", *sc_index(source, k), "input"),
            )
        sc_channels, sc_stride = (points[sc.input].channels, points[sc.input].stride) if sc.input else (ast.Name("in_channels"), ast.Constant(1))
        if not isinstance(sc_stride, ast.Constant) or sc_stride.value != 1:
            raise SpecError(f"shortcut input {sc.input!r} comes after a strided layer; read an earlier one", source.locate("shortcut"))
        condition = None
        if sc.when not in ("shape_changes", "always"):
            condition = expr.parse(sc.when)
            unknown = expr.free_names(condition) - set(definition.params)
            if unknown:
                where = source.locate("shortcut", *sc_index(source, k), "when")
                raise SpecError(f"`when` may use only the block's parameters; unknown: {', '.join(sorted(unknown))}", where)
        bias = sc.bias if sc.bias is not None else bool(defaults.conv.bias)
        shortcuts.append(SymShortcut(
            sc.kind, sc.when if condition is None else "expression", condition, sc.input, sc.name, sc_channels,
            channels, stride, sc.batchnorm, bias, defaults.batchnorm.eps, defaults.batchnorm.momentum,
        ))  # fmt: skip
    # `after` reads the sum of the branch and the shortcut (nothing is known of its sign)
    points["after.input"] = SymTensor(channels, stride, definition.connectivity == "none" and points[LAST].nonneg, False)
    after = sym_layers(definition.after, ("after",), "after.input")
    check_pieces((*layers, *after))  # no item of `after:` named as a container of `layers:`
    channels = points[LAST].channels
    kept = {sc.input for sc in definition.shortcuts if sc.input} | {n for item in after for n in item.inputs}
    for key, o in (state.spec.model.outputs or {}).items() if top else ():  # tensors of its own, or absent
        if o not in aliases:
            _sym_source(points, o, state.spec.locate("outputs", key), top, lists, named.keys())
    _check_taps((*layers, *after), outputs, taps, defined, reads, source)
    # the top function returns the tensors the model's `outputs:` names (a tap reads its group), or its last
    returned = [n for o in (state.spec.model.outputs or {}).values() for n in {o, o.split(".")[0]}] if top else []
    layers = live(layers, {*([] if returned else [last_of[("layers",)]]), *kept, *outputs, *returned}, aliases)
    after = live(after, {last_of[("after",)]}, aliases)
    params = block_params(definition)
    if not returned:
        reads.update(written_name(items[-1]) for items in (layers, after) if items)
    reads.update(returned)
    reads.update(sc.input for sc in definition.shortcuts if sc.input)
    reads.update(outputs)
    if top:
        state.absent = set(aliases)
    layers = drop_excused(layers, excused, {*returned, *kept, *outputs}, aliases, defined)
    for items, starts in ((layers, inputs_of), (after, ("after.input",))):  # merges written `in_place: true`
        check_in_place(items, starts, {*returned, *kept, *outputs}, state.block_types, "the model" if top else f"block {source.name!r}", source.locate)
    containers = {i.name for i in (*layers, *after) if isinstance(i, SymGroup) and i.dataflow}
    reads.update(n.split(".")[0] for n in tuple(reads) if n.split(".")[0] in containers)  # read by a path into it
    reads.update(resolve(aliases, n) for n in tuple(reads))  # reading an entry that is never present reads what it passes on
    reads.update(stage for pattern, stage in named.items() if any(instance_of(pattern, n) for n in reads))  # by an instance's name
    unread(defined, reads, "the model" if top else f"block {source.name!r}")
    if containers:
        check_entries_read(layers, {*kept, *outputs, *returned}, "the model" if top else f"block {source.name!r}")
    for k, n in enumerate(definition.inputs or ()):
        if n not in reads:
            raise SpecError(f"input {n!r} of block {source.name!r} is never read; read it (`from: {n}`, a merge) or remove it", source.locate("inputs", k))
    # the output is known to be >= 0 when the last layer says so (after the merge, for skip blocks)
    nonneg_out = points[LAST].nonneg and (definition.connectivity == "none" or bool(definition.after))
    if not numbered_definition(definition) and not top:
        check_named_layers(source)
    numbered = numbered_top or definition.connectivity == "none" and not after and not outputs and all(
        (layer.name.isdigit() and not layer.inputs and not isinstance(layer, (SymGroup, SymParallel))
         and not (isinstance(layer, SymLayer) and (ops.KINDS[layer.kind].MERGE or ops.KINDS[layer.kind].EXPRESSION)))
        or (sequence and isinstance(layer, SymLayer) and ops.KINDS[layer.kind].EXPRESSION and not layer.name.isdigit())
        for layer in layers
    )  # fmt: skip
    _check_named_into(layers, top)
    if numbered and any(not layer.name.isdigit() for layer in layers) and any(
        layer.condition is not None or isinstance(layer, SymStage) for layer in layers
    ):
        raise SpecError(
            f"block {source.name!r}: a block kind of unnamed layers with an unnamed expression (numbered around it) "
            "has no conditional or repeated entries, whose numbers would move; name its layers",
            source.locate("layers"),
        )
    btype = BlockType(
        source.name, definition.doc, params, definition.connectivity, layers, after, tuple(shortcuts), channels,
        stride, source.locate(), nonneg_out, numbered, inputs_of, outputs,
        tuple((o, points[o].channels, points[o].stride) for o in outputs[1:]), definition.class_, definition.sum,
    )  # fmt: skip
    if top:  # printed from its instance, whose values are numbers: nothing to simplify
        return btype
    scope = {name for name, _, _ in btype.params} | set(btype.channel_params) | {STAGE_INDEX}
    return simplify_all(btype, int_names(btype), scope)


def int_names(btype: BlockType) -> frozenset[str]:
    """The names a block kind's expressions read that always hold ints: its channel arguments,
    its parameters of type int (specialisation refuses any other value) and a stage's index."""
    params = {name for name, _, _ in btype.params}
    ints = {name for name, _, kind in btype.params if kind == "int"} | set(btype.channel_params)
    return frozenset(ints | ({STAGE_INDEX} - params))


def _check_channel_params(source: BlockSource, inputs: tuple[str, ...], layer_names: set[str]) -> None:
    """The names a kind's inputs and their channels take are not also its parameters or layers."""
    definition = source.definition
    for k, (n, c) in enumerate(zip(inputs, channel_params(inputs))):
        taken = [x for x in (n, c) if x in definition.params or (x in layer_names and inputs != ("input",))]
        if taken:
            where = source.locate("inputs", k) if definition.inputs else source.locate("params", taken[0])
            raise SpecError(
                f"block {source.name!r}: {taken[0]!r} names an input or its channels and also a parameter or layer; rename one",
                where,
            )


LAST = "<last>"  # key of the tensor a list of a block kind ends with


def _check_named_into(items: tuple[SymItem, ...] | list[SymItem], top: bool) -> None:
    """An unnamed stage with a `names:` pattern places its instances into the enclosing list under
    those names (`graph.named_into`): supported in the model's lists, not yet inside a block kind."""
    for item in items:
        if not top and named_into(item):
            raise SpecError(
                f"an unnamed stage with `names: {item.names}` places its instances into the enclosing list under "
                "those names, which archc supports in the model's `layers:` and its lists but not inside a block "
                "kind: give the stage a name (`NAME: {stage: ...}`, its own nn.Sequential whose instances take "
                "these names), or leave `names:` out",
                item.where,
            )


def _group_taps(points: dict[str, SymTensor], group: SymGroup, condition: ast.expr | None, top: bool = False) -> dict[str, str | None]:
    """The entries of a list of a block kind as tensors of the kind (`body.2`, `body.conv1`),
    read from outside it (taps): the code runs the list in pieces that end at each tapped entry,
    which it can where every entry is there in every instance (and so is numbered alike)."""
    why = None
    if top and (group.positional or any(c.condition is not None for c in group.children)):
        return {}  # the top function's: its entries are numbered and known once it is specialised
    if top:  # the model's code is printed from its instance, which cuts a list anywhere
        condition = None
    if condition is not None:
        why = "the list is under `if:`"
    elif any(c.condition is not None for c in group.children):
        why = "an entry of the list is under `if:`"
    elif group.positional and any(isinstance(c, SymStage) for c in group.children):
        why = "an unnamed stage of the list numbers its instances with it"
    out: dict[str, str | None] = {}
    for child in group.children:
        points[f"{group.name}.{child.name}"] = points[child.name]
        out[f"{group.name}.{child.name}"] = why
    return out


def _check_taps(
    items: tuple[SymItem, ...], outputs: tuple[str, ...], taps: dict[str, str | None], defined: dict[str, Location],
    reads: set[str], source: BlockSource,
) -> None:  # fmt: skip
    """Taps into a block kind's lists: each readable (`_group_taps`), each list read through its
    taps counted as read, and no layer named like the variable the code holds a tap in."""
    def walk(items: tuple[SymItem, ...]) -> None:
        for item in items:
            for name in item.inputs:
                if taps.get(name):
                    raise SpecError(f"{item.name} reads {name!r}, an entry of a list of block {source.name!r} that "
                                    f"cannot be read from outside it: {taps[name]}; read the list itself", item.where)
            if isinstance(item, (SymGroup, SymParallel)):
                walk(item.children)

    walk(items)
    for k, name in enumerate(outputs):
        if taps.get(name):
            raise SpecError(f"output {name!r} of block {source.name!r} cannot be read from outside its list: {taps[name]}",
                            source.locate("outputs", k))
    read = {n for n in reads | set(outputs) if n in taps}
    # a tap of a list's last entry reads the list; of an earlier one, the entries after it still need a reader
    ends = {f"{item.name}.{item.children[-1].name}" for item in items if isinstance(item, SymGroup) and item.children}
    reads.update(n.split(".")[0] for n in read & ends)
    check_tap_variables(read, defined)


def _sym_parallel(
    sym_layers: Any, points: dict[str, SymTensor], defined: dict[str, Location], reads: set[str], source: BlockSource,
    name: str, body: m.ParallelItem, at: tuple[Any, ...], read: str, here: SymTensor,
) -> tuple[SymParallel, SymTensor]:  # fmt: skip
    """A module list in a block kind: each unnamed path (a layer with a module, a list or a
    block) is typed as an entry of its own reading `read` (the list's input) or its `from:`,
    and named by its position; the merge of their outputs is the list's tensor."""
    tracked = read
    if here is not points[read]:  # simplified under the list's condition
        tracked = f"{name}.input"
        points[tracked] = here
    paths: list[SymItem] = []
    outs: list[SymTensor] = []
    sources: list[str] = []
    for k, entry in enumerate(body.parallel):
        (written, path), = entry.items()
        where = source.locate(*at, "parallel", k)
        check_path(name, k, written, item_kind(path), path, where)
        before_points, before_defined = dict(points), set(defined)
        (child,) = sym_layers([entry], (*at, "parallel"), tracked, k)
        outs.append(points[LAST])
        for key in set(points) - set(before_points):
            del points[key]
        points.update(before_points)  # a path named `0` shadowed a row `0` of a container of rows
        for key in set(defined) - before_defined:
            del defined[key]
        if isinstance(child, SymGroup) and any(c.condition is not None or isinstance(c, SymStage) for c in child.children):
            raise SpecError(f"{name}.{k}: the entries of a list in a parallel list cannot be conditional or stages", where)
        if isinstance(child, SymParallel):  # a row of a grid: its paths read their own tensors
            sources += [read if n == tracked else n for n in child.inputs]
            paths.append(dataclasses.replace(child, name=str(k), inputs=(), passes=None))
            continue
        sources.append(child.inputs[0] if child.inputs else read)
        paths.append(dataclasses.replace(child, name=str(k), inputs=()))
    reads.update(sources)
    merged = _sym_merge(body.merge, outs)
    item = SymParallel(name, tuple(paths), body.merge, here.channels, tuple(sources), tuple(t.flat for t in outs), passes=read)
    return item, merged


def _same(a: ast.expr | None, b: ast.expr | None) -> ast.expr | None:
    return a if a is not None and b is not None and expr.to_python(a) == expr.to_python(b) else None


def _flattened(name: str, here: SymTensor, where: Location, top: bool = False) -> ast.expr:
    """The features of a `flatten` inside a block kind: channels times the map's positions,
    which the kind must fix (PyTorch's nn.Linear after it is built with that count); in the
    top function, known once it is specialised."""
    if here.flat:
        return here.channels
    if here.positions is None and top:
        return ast.Name(free_channels(where))
    if here.positions is None:
        raise SpecError(
            f"{name}: flatten inside a block kind gives channels x height x width features, and the kind does not fix "
            "its map's size; put `adaptive_avgpool: {size: N}` (or global_avgpool) before it, or flatten at model level",
            where,
        )
    return expr.fold(ast.BinOp(here.channels, ast.Mult(), here.positions))


def _sym_source(
    points: dict[str, SymTensor], name: str, where: Location, top: bool = False, lists: AbstractSet[str] = frozenset(),
    named: AbstractSet[str] = frozenset(),
) -> str:  # fmt: skip
    """`name`, a tensor in scope; in the top function, an entry of a list (`backbone.4`, an
    instance of an unnamed stage there) or an instance a stage names into its list (`conv2_2`
    of `names: conv2_{n}`) is known once the list is specialised."""
    entry = top and name not in points and name.count(".") == 1 and name.split(".")[0] in lists
    if entry or (top and name not in points and any(instance_of(pattern, name) for pattern in named)):
        points[name] = SymTensor(ast.Name(free_channels(name)), ast.Constant(0), False, False)
    if name not in points:
        import difflib  # error messages only

        names = [n for n in points if (top or "." not in n) and not n.startswith("<") and not n.endswith(".input")]
        hint = difflib.get_close_matches(name, names, n=1)
        guess = f"did you mean {hint[0]!r}? " if hint else ""
        known = ", ".join(names)
        scope = "of its list or an enclosing one" if top else "of its block"
        raise SpecError(f"unknown tensor {name!r}: a layer reads `input` or an earlier layer {scope}; {guess}known here: {known}", where)
    return name


def _sym_condition(raw: Any, definition: m.BlockDef, channels: ast.expr, where: Location, top: bool = False) -> ast.expr | None:
    """An `if:` inside a block kind, over its parameters, in_channels and channels; in the top
    function the parameters have their values (an entry whose `if:` fails is never typed)."""
    if raw is None:
        return None
    tree = expr.parse(raw) if isinstance(raw, str) else ast.Constant(raw)
    inputs = channel_params(definition.input_names)  # in_channels, or low_channels, high_channels, ...
    unknown = expr.free_names(tree) - set(definition.params) - {*inputs, "channels"}
    if unknown:
        raise SpecError(f"`if` may use the block's parameters, {', '.join(inputs)} and channels; unknown: {', '.join(sorted(unknown))}", where)
    if not top:
        return expr.substitute(tree, {"channels": channels})
    values = {p: ast.Constant(v) for p, v in definition.params.items()}
    tree = expr.fold(expr.substitute(tree, {"channels": channels, **values}))
    problem = type_problem(tree.value, "bool") if isinstance(tree, ast.Constant) else None
    if problem:
        raise SpecError(problem, where)
    return None if isinstance(tree, ast.Constant) and tree.value else tree  # always present: unconditional


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


def block_params(definition: m.BlockDef) -> tuple[tuple[str, object, str], ...]:
    """A block kind's parameters: (name, default or None where required, type)."""
    return tuple(
        (k, None, v) if isinstance(v, str) else (k, v, {bool: "bool", int: "int", float: "float"}[type(v)])
        for k, v in definition.params.items()
    )


def _sym_args(state: State, kind: str, args: Any, channels: ast.expr, where: Location) -> tuple[tuple[str, ast.expr], ...]:
    out = []
    raw = raw_args(state, kind, args, where)
    for attr in ops.KINDS[kind].ATTRS:
        value = raw[attr.name]
        if value is not None:
            out.append((attr.name, ast.Constant(value) if attr.type in ("str", "const", "init", "tensor") else sym_value(value, channels)))
    return tuple(out)

