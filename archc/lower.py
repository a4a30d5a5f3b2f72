"""Lowering: a validated spec becomes the graph IR.

Lowering walks the spec top to bottom with the current shape in hand, because
expressions may read it (`in_channels`, `channels`). For every block kind it
also records a symbolic form (`BlockType`) so emitters can write one class per
kind. Shape rules and parameter counts live in the ops (`archc.ir.ops`);
lowering only applies them and turns their complaints into located errors.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from archc.errors import Location, SpecError
from archc.ir import ops
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
    SymLayer,
    SymShortcut,
)
from archc.ir.ops import Shape, ShapeError
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource, LoadedSpec
from archc.spec.yamlsrc import SourceMap

MAX_NODES = 200_000  # expanded graph size; far above any published CNN
MAX_CHANNELS = 1_000_000
MAX_REPEAT = 10_000

REQUIRED = object()
# Attribute table for primitive layers: (attribute, type, default). A default of
# "defaults.X.Y" reads the model's `defaults:`; REQUIRED must be written.
ATTRS: dict[str, tuple[tuple[str, str, Any], ...]] = {
    "conv": (
        ("filters", "int", REQUIRED), ("kernel", "int", REQUIRED), ("stride", "int", 1),
        ("padding", "int", 0), ("groups", "int", 1), ("dilation", "int", 1),
        ("bias", "bool", "defaults.conv.bias"),
    ),
    "batchnorm": (("eps", "num", "defaults.batchnorm.eps"), ("momentum", "num", "defaults.batchnorm.momentum")),
    "maxpool": (("kernel", "int", REQUIRED), ("stride", "int", "kernel"), ("padding", "int", 0)),
    "avgpool": (("kernel", "int", REQUIRED), ("stride", "int", "kernel"), ("padding", "int", 0)),
    "dense": (("units", "int", REQUIRED), ("bias", "bool", "defaults.dense.bias")),
    "dropout": (("rate", "num", REQUIRED),),
    "zeropad": (("padding", "int", REQUIRED),),
    "global_avgpool": (),
    "flatten": (),
    "act": (),  # handled separately: fn is a name, not a number
}  # fmt: skip
OP_TYPES: dict[str, type[ops.Op]] = {
    "conv": ops.Conv, "batchnorm": ops.BatchNorm, "maxpool": ops.MaxPool, "avgpool": ops.AvgPool,
    "dense": ops.Dense, "dropout": ops.Dropout, "zeropad": ops.ZeroPad,
    "global_avgpool": ops.GlobalAvgPool, "flatten": ops.Flatten, "act": ops.Act,
}  # fmt: skip
# Ops whose constructor does not depend on the channels they receive.
CHANNEL_FREE = frozenset({"act", "maxpool", "avgpool", "global_avgpool", "dropout", "flatten", "zeropad"})
_ACT_DEFAULTS = {"leaky_relu": ("negative_slope", 0.01), "elu": ("alpha", 1.0)}


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
    spec: LoadedSpec
    nodes: list[Node] = field(default_factory=list)
    block_types: dict[str, BlockType] = field(default_factory=dict)
    param_refs: dict[str, list[tuple[int, str, LayerKey]]] = field(default_factory=dict)
    pinned: set[str] = field(default_factory=set)  # model params used where they cannot be arguments
    top_kinds: list[str] = field(default_factory=list)  # kinds of model-level items, in order
    block_stack: list[str] = field(default_factory=list)


LayerKey = tuple[str, ...]


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
    top = _Ctx(spec.source, ("layers",), (), {**scope, "in_channels": c}, True)
    body, out_shape, _, _ = _lower_items(state, top, model.layers, in_shape, "input", False)
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
        source=spec.path,
        sha256=spec.sha256,
    )


# --- values ------------------------------------------------------------------------


def _value(
    raw: Any, scope: dict[str, expr.Value], where: Location | None, want: str, *, state: _State | None = None,
    ref_ok: bool = False, ref: tuple[int, str, LayerKey] | None = None,
) -> Any:  # fmt: skip
    """Evaluate a literal or expression and check its type (int, num, bool, param)."""
    value = raw
    if isinstance(raw, str):
        try:
            tree, names = _parse(raw)
            value = expr.evaluate(tree, scope)
        except expr.ExprError as e:
            raise SpecError(str(e), where) from None
        if state is not None:
            for name in names & state.spec.model.params.keys():
                if ref_ok and ref is not None and raw.strip() == name:
                    state.param_refs.setdefault(name, []).append(ref)
                else:
                    state.pinned.add(name)
    if want == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            hint = "; use // or int(...) for whole numbers" if isinstance(value, float) else ""
            raise SpecError(f"must be an integer, got {value!r}{hint}", where)
        if value > MAX_CHANNELS:
            raise SpecError(
                f"{value} exceeds the limit of {MAX_CHANNELS} for a layer size; "
                "raise archc.lower.MAX_CHANNELS deliberately if you mean it",
                where,
            )
    elif want == "num":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"must be a number, got {value!r}", where)
        value = float(value)
    elif want == "bool" and not isinstance(value, bool):
        raise SpecError(f"must be true or false, got {value!r}", where)
    return value


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[ast.expr, frozenset[str]]:
    """Parse each distinct expression once: a deep stage evaluates the same few many times."""
    tree = expr.parse(text)
    return tree, frozenset(expr.free_names(tree))


def _run_checks(checks: list[m.Check], scope: dict[str, expr.Value], ctx: _Ctx, state: _State) -> None:
    for i, check in enumerate(checks):
        ok = _value(check.that, scope, ctx.where(i, "that"), "any", state=state)
        if not ok:

            def fill(name: str) -> str:
                return repr(scope[name]) if name in scope else "{" + name + "}"

            message = _format_message(check.message, fill)
            raise SpecError(message, ctx.where(i))


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
    seen: dict[str, Any] | None = None, uses: dict[str, int] | None = None,
) -> tuple[tuple[Inst, ...], Shape, str, bool]:  # fmt: skip
    """Lower a list of `name: layer` entries in sequence.

    `seen`/`uses` track names across lists that share a module (a block's layers and `after`).
    """
    items: list[Inst] = []
    seen = {} if seen is None else seen
    uses = {} if uses is None else uses
    for index, entry in enumerate(entries):
        (name, body), = entry.items()
        where = ctx.where(index, name)
        kind = item_kind(body)
        if name in seen and not (kind == "act" and seen[name] == body):
            raise SpecError(f"duplicate layer name {name!r} in this list; only identical activations may share a name", where)
        uses[name] = uses.get(name, 0) + 1
        node_name = name if uses[name] == 1 else f"{name}_{uses[name]}"  # a shared activation, called again
        seen[name] = body
        sub = _Ctx(ctx.source, (*ctx.yaml_path, index, name), (*ctx.module_path, node_name), ctx.scope, ctx.top_level)
        if ctx.top_level:
            state.top_kinds.append(kind if kind in OP_TYPES else "composite")
        if kind == "group":
            gctx = _Ctx(ctx.source, (*sub.yaml_path, "group"), sub.module_path, ctx.scope, ctx.top_level)
            children, out, cur, nonneg = _lower_items(state, gctx, body.group, shape, cur, nonneg)
            item: Inst = GroupInst(name, children, shape, out, _sum(children))
        elif kind == "block":
            args = _call_args(state, sub, body.with_, {}, "with")
            item, cur = _instantiate(state, sub, body.block, args, name, shape, cur)
            nonneg = False
        elif kind == "stage":
            item, cur = _lower_stage(state, sub, body, name, shape, cur)
            nonneg = False
        else:
            op = _primitive(state, sub, kind, getattr(body, kind), shape, len(state.top_kinds) - 1)
            try:
                out = op.infer(shape)
            except ShapeError as e:
                raise SpecError(f"{name}: {e}", where) from None
            counts = Counts(*op.params(shape))
            node_id = _join(ctx.module_path, node_name)
            _add_node(state, Node(node_id, op, (cur,), out, counts.trainable, counts.non_trainable, op.macs(shape)), where)
            item = LayerInst(name, op, shape, out, counts, nonneg_in=nonneg)
            cur = node_id
            nonneg = _nonneg_after(op, nonneg)
        items.append(item)
        shape = item.out_shape
    return tuple(items), shape, cur, nonneg


def _nonneg_after(op: ops.Op, nonneg: bool) -> bool:
    if isinstance(op, ops.Act):
        return op.fn in ops.Act.NONNEGATIVE
    return nonneg and isinstance(op, (ops.MaxPool, ops.AvgPool, ops.GlobalAvgPool, ops.Dropout, ops.Flatten, ops.ZeroPad))


def _primitive(state: _State, ctx: _Ctx, kind: str, args: Any, shape: Shape, top_index: int) -> ops.Op:
    scope = {**ctx.scope, "channels": shape.c}
    if kind == "act":
        return _act(args, state.spec.model.defaults, lambda raw, key: _value(raw, scope, ctx.where(kind, key), "num"), ctx.where(kind))
    values: dict[str, Any] = {}
    for attr, want, default in ATTRS[kind]:
        raw = getattr(args, attr)
        ref = (top_index, attr, ctx.module_path) if ctx.top_level else None
        try:
            if raw is None:
                raw = _default(state.spec.model.defaults, kind, attr, default, values, None)
            values[attr] = _value(raw, scope, None, want, state=state, ref_ok=ctx.top_level, ref=ref)
        except SpecError as e:  # located only on failure: deep stages run this loop thousands of times
            raise SpecError(e.message, ctx.where(kind) if raw is None else ctx.where(kind, attr)) from None
    return OP_TYPES[kind](**values)


def _act(args: m.ActArgs, defaults: m.Defaults, evaluate: Any, where: Location) -> ops.Act:
    fn = args.fn or defaults.activation
    values: dict[str, Any] = {}
    for key in ("negative_slope", "alpha"):
        raw = getattr(args, key)
        extra = _ACT_DEFAULTS.get(fn)
        if raw is not None and (extra is None or extra[0] != key):
            raise SpecError(f"{key} does not apply to {fn}", where)
        if extra and extra[0] == key:
            values[key] = evaluate(raw if raw is not None else extra[1], key)
    return ops.Act(fn, **values)


def _default(defaults: m.Defaults, kind: str, attr: str, default: Any, values: dict[str, Any], where: Location | None) -> Any:
    if default is REQUIRED:
        raise SpecError(f"{kind} needs `{attr}`", where)
    if default == "kernel":
        return values["kernel"]
    if isinstance(default, str) and default.startswith("defaults."):
        _, section, key = default.split(".")
        value = getattr(getattr(defaults, section), key)
        if value is None:
            raise SpecError(
                f"{kind} {attr} is not set: write it on this layer or once in `defaults: {{{section}: {{{key}: ...}}}}` "
                "(archc never relies on a framework default)",
                where,
            )
        return value
    return default


# --- blocks and stages ------------------------------------------------------------------


def _call_args(state: _State, ctx: _Ctx, raw: dict[str, Any], base: dict[str, Any], key: str) -> dict[str, Any]:
    args = dict(base)
    for name, value in raw.items():
        args[name] = _value(value, {**ctx.scope}, ctx.where(key, name), "param", state=state)
    return args


def _lower_stage(state: _State, ctx: _Ctx, body: m.StageItem, name: str, shape: Shape, cur: str) -> tuple[StageInst, str]:
    repeat = _value(body.repeat, ctx.scope, ctx.where("stage", "repeat"), "int", state=state)
    if not 1 <= repeat <= MAX_REPEAT:
        raise SpecError(
            f"repeat must be between 1 and {MAX_REPEAT}, got {repeat} "
            "(raise archc.lower.MAX_REPEAT deliberately if you mean it)",
            ctx.where("stage", "repeat"),
        )
    common = _call_args(state, ctx, body.with_, {}, "stage")
    first = _call_args(state, ctx, body.first, common, "stage")
    instances: list[BlockInst] = []
    stage_in, out = shape, shape
    for k in range(repeat):
        inst_name = body.names.replace("{i}", str(k)).replace("{n}", str(k + 1))
        ictx = _Ctx(ctx.source, ctx.yaml_path, (*ctx.module_path, inst_name), ctx.scope, False)
        before = cur
        inst, inst_out = _instantiate(state, ictx, body.stage, first if k == 0 else common, inst_name, out, cur, stage_ctx=ctx)
        instances.append(inst)
        if body.connectivity == "dense":
            concat = ops.Concat()
            try:
                out = ops.merge_shape(concat, [out, inst.out_shape])
            except ShapeError as e:
                raise SpecError(f"{name}.{inst_name}: {e}", ctx.where()) from None
            cur = _join(ctx.module_path, f"{inst_name}_concat")
            _add_node(state, Node(cur, concat, (before, inst_out), out), ctx.where())
        else:
            out, cur = inst.out_shape, inst_out
    stage = StageInst(name, body.stage, body.connectivity, body.names, tuple(instances), stage_in, out, _sum(instances))
    return stage, cur


@contextmanager
def _entering(state: _State, name: str, where: Location) -> Iterator[None]:
    if name in state.block_stack:
        raise SpecError(f"block {name!r} contains itself ({' -> '.join([*state.block_stack, name])})", where)
    state.block_stack.append(name)
    try:
        yield
    finally:
        state.block_stack.pop()


def _instantiate(
    state: _State, ctx: _Ctx, block: str, args: dict[str, Any], name: str, shape: Shape, cur: str,
    stage_ctx: _Ctx | None = None,
) -> tuple[BlockInst, str]:  # fmt: skip
    where = (stage_ctx or ctx).where()
    first_node = len(state.nodes)  # the block's nodes are the ones added from here on
    source = state.spec.blocks.get(block)
    if source is None:
        known = ", ".join(sorted(state.spec.blocks)) or "none (add `use: [resnet]` or a `blocks:` section)"
        raise SpecError(f"unknown block {block!r}; known blocks: {known}", where)
    definition = source.definition
    with _entering(state, block, where):
        params = _bind(source, args, where)
        if definition.checks:
            _run_checks(definition.checks, {**params, "in_channels": shape.c}, _Ctx(source.source, (*source.path, "checks"), (), {}, False), state)
        btype = state.block_types.get(block) or _block_type(state, source)
        state.block_types.setdefault(block, btype)
        bctx = _Ctx(source.source, (*source.path, "layers"), ctx.module_path, {**params, "in_channels": shape.c}, False)
        block_in = cur
        seen: dict[str, Any] = {}
        uses: dict[str, int] = {}
        children, out, cur, _ = _lower_items(state, bctx, definition.layers, shape, cur, False, seen, uses)
        used_shortcut = False
        if definition.connectivity == "skip":
            out, cur, used_shortcut = _merge_skip(state, source, ctx, params, shape, out, block_in, cur, children, where)
            if definition.after:
                actx = _Ctx(source.source, (*source.path, "after"), ctx.module_path, bctx.scope, False)
                after, out, cur, _ = _lower_items(state, actx, definition.after, out, cur, False, seen, uses)
                children = (*children, *after)
    counts = _sum_nodes(state, ctx.module_path, first_node)
    inst = BlockInst(name, block, tuple(params.items()), used_shortcut, shape, out, counts, children)
    return inst, cur


def _bind(source: BlockSource, args: dict[str, Any], where: Location) -> dict[str, Any]:
    declared = source.definition.params
    for key in args:
        if key not in declared:
            known = ", ".join(declared) or "none"
            raise SpecError(f"block {source.name!r} has no parameter {key!r}; its parameters: {known}", where)
    params: dict[str, Any] = {}
    for key, decl in declared.items():
        kind = decl if isinstance(decl, str) else ("bool" if isinstance(decl, bool) else type(decl).__name__)
        if key not in args:
            if isinstance(decl, str):
                raise SpecError(f"block {source.name!r} needs parameter {key!r} ({decl}); pass it in `with:`", where)
            params[key] = decl
            continue
        value = args[key]
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "bool": isinstance(value, bool)}[kind]  # fmt: skip
        if not ok:
            raise SpecError(f"block {source.name!r} parameter {key!r} must be {kind}, got {value!r}", where)
        params[key] = float(value) if kind == "float" else value
    return params


def _merge_skip(state, source, ctx, params, in_shape, out_shape, block_in, cur, children, where):  # type: ignore[no-untyped-def]
    """Add the shortcut to the branch output: identity, projection or option A."""
    shortcut = source.definition.shortcut
    add_inputs = [block_in]
    used = False
    if out_shape != in_shape or (shortcut and shortcut.when == "always"):
        if shortcut is None:
            raise SpecError(
                f"identity shortcut over a shape change: block {source.name!r} maps {in_shape} to {out_shape}; "
                "declare `shortcut: {kind: projection}` (or option_a) on the block",
                where,
            )
        stride = _branch_stride(children)
        sc_path = (*ctx.module_path, shortcut.name)
        if shortcut.kind == "projection":
            defaults = state.spec.model.defaults
            bias = shortcut.bias if shortcut.bias is not None else defaults.conv.bias
            if bias is None:
                raise SpecError("shortcut conv bias is not set: add defaults.conv.bias or shortcut.bias", source.locate("shortcut"))
            sc_ops: list[ops.Op] = [ops.Conv(out_shape.c, 1, stride, 0, 1, 1, bias)]
            if shortcut.batchnorm:
                bn = defaults.batchnorm
                if bn.eps is None or bn.momentum is None:
                    raise SpecError("shortcut batchnorm needs defaults.batchnorm.eps and momentum", source.locate("shortcut"))
                sc_ops.append(ops.BatchNorm(bn.eps, bn.momentum))
            names = [str(i) for i in range(len(sc_ops))]
        else:
            sc_ops = [ops.PadShortcut(stride, out_shape.c - in_shape.c)]
            names = []
        prev, shape = block_in, in_shape
        for op, sub in zip(sc_ops, names or [None]):
            try:
                new_shape = op.infer(shape)
            except ShapeError as e:
                raise SpecError(f"shortcut of block {source.name!r}: {e}", where) from None
            node_id = _join(sc_path, sub) if sub else _join(sc_path)
            t, nt = op.params(shape)
            _add_node(state, Node(node_id, op, (prev,), new_shape, t, nt, op.macs(shape)), where)
            prev, shape = node_id, new_shape
        if shape != out_shape:
            raise SpecError(
                f"shortcut of block {source.name!r} gives {shape} but the branch gives {out_shape}; "
                "the branch must downsample by a whole stride",
                where,
            )
        add_inputs = [prev]
        used = True
    add_id = _join(ctx.module_path, "add")
    _add_node(state, Node(add_id, ops.Add(), (cur, add_inputs[0]), out_shape), where)
    return out_shape, add_id, used


def _branch_stride(children: tuple[Inst, ...]) -> int:
    stride = 1
    for child in children:
        if isinstance(child, LayerInst) and isinstance(child.op, (ops.Conv, ops.MaxPool, ops.AvgPool)):
            stride *= child.op.stride
        elif not isinstance(child, LayerInst):
            stride *= max(1, (child.in_shape.h or 1) // (child.out_shape.h or 1))
    return stride


# --- symbolic block kinds ------------------------------------------------------------------


def _block_type(state: _State, source: BlockSource) -> BlockType:
    """The block kind with layer arguments as expressions over its parameters."""
    definition = source.definition
    defaults = state.spec.model.defaults
    channels: ast.expr = ast.Name("in_channels")
    stride: ast.expr = ast.Constant(1)
    nonneg = False

    def sym_layers(entries: list[dict[str, Any]], section: str) -> tuple[SymLayer, ...]:
        nonlocal channels, stride, nonneg
        out: list[SymLayer] = []
        for index, entry in enumerate(entries):
            (name, body), = entry.items()
            kind = item_kind(body)
            where = source.locate(section, index, name)
            if kind not in OP_TYPES:
                raise SpecError(
                    f"{name}: blocks may contain only primitive layers for now; use stages at model level", where
                )
            if kind == "flatten":
                raise SpecError(f"{name}: flatten inside a block is not supported; flatten at model level", where)
            args = _sym_args(kind, getattr(body, kind), defaults, channels, where)
            out.append(SymLayer(name, kind, args, channels, nonneg))
            params = dict(args)
            if kind in ("conv",):
                channels = params["filters"]
            elif kind == "dense":
                channels = params["units"]
            if kind in ("conv", "maxpool", "avgpool"):
                stride = expr.fold(ast.BinOp(stride, ast.Mult(), params["stride"]))
            if kind == "act":
                nonneg = params["fn"].value in ops.Act.NONNEGATIVE  # type: ignore[attr-defined]
            elif kind in ("conv", "dense", "batchnorm"):
                nonneg = False
        return tuple(out)

    layers = sym_layers(definition.layers, "layers")
    branch_channels, branch_stride = channels, stride
    shortcut = None
    if definition.connectivity == "skip" and definition.shortcut is not None:
        sc = definition.shortcut
        bias = sc.bias if sc.bias is not None else bool(defaults.conv.bias)
        shortcut = SymShortcut(
            sc.kind, sc.when, sc.name, branch_channels, branch_stride, sc.batchnorm, bias,
            defaults.batchnorm.eps, defaults.batchnorm.momentum,
        )  # fmt: skip
    after = sym_layers(definition.after, "after")
    params = tuple(
        (k, None, v) if isinstance(v, str) else (k, v, {bool: "bool", int: "int", float: "float"}[type(v)])
        for k, v in definition.params.items()
    )
    return BlockType(source.name, definition.doc, params, definition.connectivity, layers, after, shortcut, channels, source.locate())


def _sym_args(kind: str, args: Any, defaults: m.Defaults, channels: ast.expr, where: Location) -> tuple[tuple[str, ast.expr], ...]:
    if kind == "act":
        fn = args.fn or defaults.activation
        out: list[tuple[str, ast.expr]] = [("fn", ast.Constant(fn))]
        extra = _ACT_DEFAULTS.get(fn)
        if extra:
            raw = getattr(args, extra[0])
            out.append((extra[0], _sym(raw if raw is not None else extra[1], channels)))
        return tuple(out)
    values: dict[str, ast.expr] = {}
    for attr, _, default in ATTRS[kind]:
        raw = getattr(args, attr)
        if raw is None:
            if default == "kernel":
                values[attr] = values["kernel"]
                continue
            raw = _default(defaults, kind, attr, default, {}, where)
        values[attr] = _sym(raw, channels)
    return tuple(values.items())


def _sym(raw: Any, channels: ast.expr) -> ast.expr:
    tree = expr.parse(raw) if isinstance(raw, str) else ast.Constant(raw)
    return expr.substitute(tree, {"channels": channels})


# --- helpers ------------------------------------------------------------------------------


def _join(path: tuple[str, ...], *more: str) -> str:
    return ".".join((*path, *more))


def _add_node(state: _State, node: Node, where: Location) -> None:
    if len(state.nodes) >= MAX_NODES:
        raise SpecError(
            f"the model expands to more than {MAX_NODES} layers; raise archc.lower.MAX_NODES deliberately if you mean it",
            where,
        )
    if node.shape.numel() > 10**9 or node.shape.c > MAX_CHANNELS:
        raise SpecError(f"{node.id} would produce {node.shape} (over the {MAX_CHANNELS}-channel limit)", where)
    state.nodes.append(node)


def _sum(items: Any) -> Counts:
    total = Counts()
    for item in items:
        total = total + item.counts
    return total


def _sum_nodes(state: _State, path: tuple[str, ...], start: int) -> Counts:
    prefix = _join(path) + "."
    total = Counts()
    for node in state.nodes[start:]:
        if node.id.startswith(prefix):
            total = total + Counts(node.trainable, node.non_trainable)
    return total


def _exposed_params(state: _State, scope: dict[str, expr.Value]) -> list[str]:
    """Model params that build_model() can take: used only as the width of a layer
    that nothing channel-dependent follows (the classifier), or as a dropout rate."""
    exposed = []
    for name, refs in state.param_refs.items():
        if name in state.pinned or isinstance(scope[name], bool):
            continue
        ok = all(
            attr == "rate" or (attr in ("units", "filters") and all(k in CHANNEL_FREE for k in state.top_kinds[idx + 1 :]))
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
