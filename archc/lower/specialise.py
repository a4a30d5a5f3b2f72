"""An instance of a block kind: its symbolic form specialised to the instance's
arguments and input (values, shapes, counts, nodes)."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Counts,
    GroupInst,
    Inst,
    LayerInst,
    Node,
    ParallelInst,
    StageInst,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymShortcut,
    SymStage,
    channel_params,
    instance_name,
    named_into,
    passed_on,
    path_reads,
    spliced,
)
from archc.lower.context import (
    Ctx,
    State,
    Tensor,
    check_arity,
    check_inline,
    check_named_instances,
    counts_of,
    join_path,
    lookup,
    sc_index,
)
from archc.lower.kinds import type_of, unknown_block
from archc.lower.limits import add_node, check_block_depth, check_repeat
from archc.lower.nested import declared, free_channels
from archc.lower.tables import TableRow, with_tables
from archc.lower.values import (
    INDEX_NAMES,
    STAGE_BLOCK_ID,
    STAGE_INDEX,
    TOTAL_STAGE_BLOCKS,
    bind_params,
    block_checks,
    index_hint,
    param_notes,
    ranked_values,
    type_problem,
)
from archc.ops import Shape, ShapeError
from archc.spec import expr
from archc.spec.loader import BlockSource


@contextmanager
def _entering(state: State, name: str, where: Location) -> Iterator[None]:
    check_block_depth(state.block_stack, name, where)
    state.block_stack.append(name)
    try:
        yield
    finally:
        state.block_stack.pop()


def instantiate(
    state: State, ctx: Ctx, block: str, args: dict[str, Any], name: str, shape: Shape, cur: str,
    stage_ctx: Ctx | None = None, first_position: int | None = None, switches: dict[str, bool] | None = None,
    others: tuple[Tensor, ...] = (),
) -> tuple[BlockInst, str]:  # fmt: skip
    """One instance; `first_position`: written `inline`, its layers are entries of the
    enclosing numbered list (ctx's module path) from that position on; `switches`: see `_expand`;
    `others`: for a kind with several inputs, the tensors after the first (`shape`, `cur`)."""
    where = (stage_ctx or ctx).where()
    source = state.spec.blocks.get(block)
    if source is None:
        raise unknown_block(state, block, where)
    try:
        return _expand(state, ctx, source, args, name, shape, cur, where, first_position, switches, others)
    except SpecError as e:
        if e.where is None or e.where == where or e.where.file.startswith("--set"):
            raise
        # a mistake this instance's arguments make inside its kind names the instance and them
        # (`layer2.0 (planes=128, stride=2): ...`), once, at the innermost instance
        own = getattr(e, "in_instance", False) and not getattr(e, "attributed", False)
        shown = ", ".join(f"{k}={str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in args.items())
        path = join_path(ctx.module_path)
        if e.where.file == where.file:
            if not own:
                raise
            error = SpecError(f"{path} ({shown}): {e.message}" if shown else f"{path}: {e.message}", e.where)
        else:  # a mistake inside a library block shows at the instance that triggered it
            head = f"{path} (block {block!r}, {shown + ', ' if own and shown else ''}{e.where})"
            error = SpecError(f"{head}: {e.message}", where)
        error.attributed = True  # type: ignore[attr-defined]
        raise error from None


def _expand(
    state: State, ctx: Ctx, source: BlockSource, args: dict[str, Any], name: str, shape: Shape, cur: str,
    where: Location, first_position: int | None = None, switches: dict[str, bool] | None = None,
    others: tuple[Tensor, ...] = (),
) -> tuple[BlockInst, str]:  # fmt: skip
    """One instance of a block kind: its symbolic form (`BlockType`, what the code is printed
    from) specialised to these arguments and this input. `switches`: inside another block
    kind, the values its code passes for the `shape_changes` shortcuts."""
    block = source.name
    if first_position is not None:
        check_inline(source, where)
    if shape.last:
        raise SpecError(f"block {block!r} gets a map PyTorch holds channels-last; add `permute: {{to: channels_first}}` before it", where)
    with _entering(state, block, where):
        params = bind_params(source, args, where)
        inputs = (Tensor(cur, shape, False), *others)
        channels = dict(zip(channel_params(source.definition.input_names), (t.shape.c for t in inputs)))
        scope = {**params, **channels}
        check_arity(source, join_path(ctx.module_path), "block", len(inputs), where)
        block_checks(state, source, scope, where)
        btype = type_of(state, block, where)
        try:
            inst, node = _specialise(state, ctx, source, btype, params, scope, name, inputs, where, first_position, switches)
            check_declared(source, scope, inst)
        except SpecError as e:
            e.in_instance = True  # type: ignore[attr-defined]
            raise
    return inst, node


def _specialise(
    state: State, ctx: Ctx, source: BlockSource, btype: BlockType, params: dict[str, Any], scope: dict[str, Any],
    name: str, inputs: tuple[Tensor, ...], where: Location, first_position: int | None, switches: dict[str, bool] | None,
) -> tuple[BlockInst, str]:  # fmt: skip
    """The instance's items, shortcut and `after`, from the block kind's symbolic form."""
    first_node = len(state.nodes)  # the block's nodes are the ones added from here on
    spec = Specialiser(state, source, btype, scope, dict(zip(btype.inputs, inputs)), {})
    children, last = spec.items(btype.layers, ctx.module_path, btype.inputs[0], btype.numbered, first_position or 0)
    out = spec.env[btype.outputs[0] if btype.outputs else last]
    used_shortcut = None
    if btype.connectivity == "skip":
        out, used_shortcut = spec.merge_skip(ctx.module_path, out, where, switches)
        spec.env[SUM] = out
        after, last = spec.items(btype.after, ctx.module_path, SUM, False)
        children = (*children, *after)
        out = spec.env[last]
    spec.check_channels(btype.out_channels, out.shape, f"block {source.name!r}")
    counts = Counts(
        sum(n.trainable for n in state.nodes[first_node:]), sum(n.non_trainable for n in state.nodes[first_node:])
    )
    shape = inputs[0].shape
    inst = BlockInst(name, source.name, tuple(params.items()), used_shortcut, shape, out.shape, counts, tuple(children))
    more_out = tuple((o, spec.env[o].node, spec.env[o].shape) for o in btype.outputs[1:])
    return dataclasses.replace(inst, more_in=tuple(t.shape for t in inputs[1:]), more_out=more_out), out.node


def check_declared(source: BlockSource, scope: dict[str, Any], inst: BlockInst) -> None:
    """An instance has the output channels and stride its kind declares (`out_channels`,
    `out_stride`): the symbolic form of a recursive kind types its inner instances by them."""
    if source.definition.out_channels is None:
        return
    for key in ("out_channels", "out_stride"):
        tree = declared(source, key)
        try:
            want = expr.evaluate(tree, scope)
        except expr.ExprError as e:
            raise SpecError(str(e), source.locate(key)) from None
        problem = type_problem(want, "int") or (None if want >= 1 else f"must be at least 1, got {want}")
        if problem:  # the code passes it on as a channel count
            raise SpecError(f"block {source.name!r}: {key} {expr.to_python(tree)} {problem}", source.locate(key))
        if key == "out_channels":
            found, ok = inst.out_shape.c, want == inst.out_shape.c
        else:  # each side divided by the stride, rounded either way (a padded conv rounds up, a pool down)
            sides = tuple(zip(inst.in_shape.size, inst.out_shape.size))
            found = "x".join(f"{a}->{b}" for a, b in sides)
            ok = all(a // want <= b <= -(-a // want) for a, b in sides)
        if not ok:
            raise SpecError(
                f"block {source.name!r} declares {key} {expr.to_python(tree)} = {want!r}, but this instance gives "
                f"{found}{' channels' if key == 'out_channels' else ' (map size)'}; correct the declaration",
                source.locate(key),
            )


def _free_instance(sym: SymStage, k: int, repeat: int) -> SymBlock:
    """Instance k of a free stage: `with:`, then `first:` on the first, `last:` on the last."""
    common, first, last = (dict(args) for args in sym.written)
    args = {**common, **(first if k == 0 else {}), **(last if k == repeat - 1 else {})}
    return dataclasses.replace(sym.first, args=tuple(args.items()))


def _with_index_trees(sym: SymStage, scope: dict[str, Any], instances: list[BlockInst]) -> list[BlockInst]:
    """Record, on the instances of a free stage whose arguments use `i` (or `stage_block_id`,
    `i` plus the instances of the stages before), each such argument as an expression of `i`
    alone (the model's parameters folded in), where it varies: emitters then write one loop,
    `CNBlock(96, sd_prob=0.1 * (3 + i) / 17.0) for i in range(3)`, rather than a line per
    instance. Only where that expression gives every instance's value exactly (Python
    evaluates it as archc does)."""
    repeat = len(instances)
    index = {STAGE_INDEX: ast.Name(STAGE_INDEX)}
    if STAGE_BLOCK_ID in scope:  # the model's stages are numbered: this one's from scope[STAGE_BLOCK_ID]
        start = scope[STAGE_BLOCK_ID]
        index[STAGE_BLOCK_ID] = ast.BinOp(ast.Constant(start), ast.Add(), ast.Name(STAGE_INDEX)) if start else ast.Name(STAGE_INDEX)
    trees = []
    for k in range(repeat):
        here = {}
        for key, tree in _free_instance(sym, k, repeat).args:
            names = expr.free_names(tree)
            if names & index.keys():
                here[key] = expr.substitute(tree, {n: index.get(n) or ast.Constant(scope[n]) for n in names})
        trees.append(here)
    all_args = [dict(inst.args) for inst in instances]
    keys = {key for here in trees for key in here}
    varies = {key: len({args[key] for args in all_args}) > 1 for key in keys}  # once per key, not per instance
    # an argument of the model-wide index is its expression even where the stage has one instance
    # (`sd_prob=0.2 * 15 / 16`), where its value varies over the model's first and last instance
    for args in sym.written:
        for key, tree in args:
            if STAGE_BLOCK_ID in expr.free_names(tree) and not varies.get(key, True):
                ends = [{**scope, STAGE_INDEX: 0, STAGE_BLOCK_ID: n} for n in (0, scope[TOTAL_STAGE_BLOCKS] - 1)]
                try:
                    varies[key] = expr.evaluate(tree, ends[0]) != expr.evaluate(tree, ends[1])
                except expr.ExprError:
                    pass
    out = []
    for k, inst in enumerate(instances):
        keep = []
        for key, tree in trees[k].items():
            try:
                exact = expr.evaluate(tree, {STAGE_INDEX: k}) == all_args[k][key]
            except expr.ExprError:
                exact = False
            if varies[key] and exact:
                keep.append((key, tree))
        out.append(dataclasses.replace(inst, indexed=tuple(keep), index=k))
    return out


SUM = "<sum>"  # the tensor a skip block's `after` list reads: the branch plus the shortcut


@dataclass
class Specialiser:
    """Specialise the items of a block kind (`SymItem`s, their arguments expressions over
    the kind's parameters and `in_channels`) to one instance: evaluate, infer shapes, count.
    The code is printed from the same items, so what archc counts is what the code builds;
    where the two could still part (a channel count the code computes from an expression),
    they are compared and a difference is a bug in archc."""

    state: State
    source: BlockSource
    btype: BlockType
    scope: dict[str, Any]  # the block's parameters and in_channels
    env: dict[str, Tensor]  # tensors by name: `input`, the items so far
    uses: dict[str, int]  # module names so far (an activation used again is called again)
    # the top function's items with their module paths (None: absent) and whether each is one
    # call (not a stage spliced into a list), for `top.references`
    placed: list[tuple[SymItem, tuple[str, ...] | None, bool]] | None = None
    # the top function's: the index of the next instance among all its stages' and their number
    numbering: list[int] | None = None

    def where(self, item: SymItem, *sub: Any) -> Location:
        return self.source.locate(*item.at, *sub)

    def value(self, tree: ast.expr, scope: dict[str, Any], want: str, where: Any) -> Any:
        """An expression's value, of the type `want` (lowering's `typed_value` types)."""
        if isinstance(tree, ast.Tuple):  # a [height, width] pair, or padding pairs
            inner = "pair" if want == "pads" else "int"
            return tuple(self.value(t, scope, inner, where) for t in tree.elts)
        try:
            value = expr.evaluate(tree, scope)
        except expr.ExprError as e:
            hint = index_hint(expr.free_names(tree), scope, model_level=False)
            raise SpecError(str(e) + hint, where() if callable(where) else where) from None
        problem = type_problem(value, "int" if want in ("pair", "pads") else want)
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
        scope: dict[str, Any] | None = None, inlined: list[tuple[int, int, BlockInst]] | None = None,
        rows: list[TableRow] | None = None, named: list[tuple[int, StageInst]] | None = None,
    ) -> tuple[list[Inst], str]:  # fmt: skip
        """The items of one list; returns their instances and the name of the tensor it ends with.
        In a numbered list (an nn.Sequential), unnamed entries are numbered as present; `inlined`
        collects the instances written `inline` (the top function's) as (index of their first
        layer, number of layers, instance); `rows`, the rows of tables of stages among them
        (`tables.TableRow`); `named`, the unnamed stages with `names:` (`graph.named_into`) as
        (index of their first instance, the stage)."""
        scope = self.scope if scope is None else scope
        out: list[Inst] = []
        for item in items:
            row = getattr(item, "table", None)
            if row is not None and rows is not None:  # a table's row, its entries from here on
                rows.append(TableRow(row.table, row.row, row.between, len(out), self.numbering[0] if self.numbering is not None else None))
            reads = item.inputs or (prev,)
            if not self.holds(item, scope):  # absent: passes on what it reads
                if self.placed is not None:
                    self.placed.append((item, None, False))
                self.env[item.name] = self.env[passed_on(item, prev)]
                prev = item.name
                continue
            name = str(position) if item.name.isdigit() else item.name
            position += not (numbered and not item.name.isdigit())  # an expression of a numbered kind has no number
            src = self.read(reads[0], item)
            if self.placed is not None:
                self.placed.append((item, (*path, name), not (isinstance(item, SymStage) and (spliced(item, numbered) or named_into(item)))))
            if isinstance(item, (SymBlock, SymStage)) and item.inline and inlined is not None:
                before = len(out)
                tensor = self.inline(item, path, src, scope, position - 1, out, inlined)
                position += len(out) - before - 1  # its layers are numbered on
            elif isinstance(item, SymStage) and named_into(item):  # its instances are named entries of this list
                stage, tensor = self.stage(item, path, src, scope, spliced_at=position - 1, named=True)
                check_named_instances(stage, items, out, item.where)
                if named is not None:
                    named.append((len(out), stage))
                out.extend(stage.instances)
                position -= 1  # named entries take no number
                for inst in stage.instances:  # each read by its name (`from: conv2_2`)
                    self.env[inst.name] = Tensor(inst.output, inst.out_shape, tensor.nonneg)
                    if self.placed is not None:
                        self.scope[free_channels(inst.name)] = inst.out_shape.c
            elif isinstance(item, SymStage) and spliced(item, numbered):
                stage, tensor = self.stage(item, path, src, scope, spliced_at=position - 1)
                out.extend(stage.instances)
                position += len(stage.instances) - 1
            else:
                inst, tensor = self.item(item, name, path, reads, src, scope)
                if item.inputs:
                    inst = dataclasses.replace(inst, inputs=item.inputs)
                out.append(dataclasses.replace(inst, output=tensor.node))
                if isinstance(inst, BlockInst):  # the later outputs of a kind with several
                    self.env.update({f"{item.name}.{o}": Tensor(node, shape, False) for o, node, shape in inst.more_out})
            self.env[item.name] = tensor
            if self.placed is not None:  # the top function: channels its form leaves to here (a free stage, a flatten)
                self.scope[free_channels(item.where)] = tensor.shape.c
            prev = item.name
        return out, prev

    def inline(
        self, item: SymBlock | SymStage, path: tuple[str, ...], src: Tensor, scope: dict[str, Any], at: int,
        out: list[Inst], inlined: list[tuple[int, int, BlockInst]],
    ) -> Tensor:  # fmt: skip
        """An `inline` entry of the top function's numbered list, from position `at`: each
        instance's layers are appended to `out` as entries of the list (torchvision's VGG
        `features`)."""
        if isinstance(item, SymBlock):
            inst, tensor = self.block(item, str(at), path, src, scope, self.where(item), first_position=at)
            insts = [inst]
        else:
            stage, tensor = self.stage(item, path, src, scope, spliced_at=at, inline=True)
            insts = list(stage.instances)
        for inst in insts:
            if not inst.children:
                raise SpecError(f"entry {at}: this `inline` instance has no layers (every `if:` fails)", item.where)
            inlined.append((len(out), len(inst.children), inst))
            out.extend(inst.children)
        return tensor

    def read(self, name: str, item: SymItem) -> Tensor:
        """The tensor `name`; in the top function, an entry of a list read from outside it is
        known only here, where the list is specialised (`backbone.layer3`)."""
        return self.env[name] if name in self.env else lookup(self.env, name, item.where or self.where(item))

    def item(
        self, item: SymItem, name: str, path: tuple[str, ...], reads: tuple[str, ...], src: Tensor, scope: dict[str, Any],
    ) -> tuple[Inst, Tensor]:  # fmt: skip
        if isinstance(item, SymLayer) and ops.KINDS[item.kind].MERGE:
            return self.merge(item, name, path, [self.read(n, item) for n in reads])
        if isinstance(item, SymLayer):
            return self.layer(item, name, path, src, scope, [self.read(n, item) for n in reads[1:]])
        if isinstance(item, SymGroup) and item.dataflow:
            return self.container(item, name, path, reads[0], scope, f"{item.name}.")
        if isinstance(item, SymGroup):
            group_path = (*path, name)
            inlined: list[tuple[int, int, BlockInst]] = []
            rows: list[TableRow] = []
            named: list[tuple[int, StageInst]] = []
            children, last = self.items(
                item.children, group_path, reads[0], item.positional, scope=scope, inlined=inlined, rows=rows, named=named
            )
            self.env.update({f"{item.name}.{c.name}": self.env[c.name] for c in item.children})  # taps: `body.2`
            if self.placed is not None:  # the top function's: its entries as they are numbered here
                for c in children:
                    self.env[f"{item.name}.{c.name}"] = Tensor(c.output, c.out_shape, False)
                    self.scope[free_channels(f"{item.name}.{c.name}")] = c.out_shape.c
            out = self.env[last]
            group = GroupInst(name, tuple(children), src.shape, out.shape, counts_of(children), inlined=tuple(inlined), named=tuple(named))
            total = self.numbering[1] if self.numbering is not None else None
            return with_tables(group, rows, self.state.block_types, self.scope, total), out
        if isinstance(item, SymBlock):
            return self.block(item, name, (*path, name), src, scope, self.where(item), others=tuple(self.env[n] for n in reads[1:]))
        if isinstance(item, SymParallel):
            return self.parallel(item, name, path, reads, scope)
        stage, tensor = self.stage(item, path, src, scope)
        return stage, tensor

    def container(
        self, item: SymGroup, name: str, path: tuple[str, ...], prev: str, scope: dict[str, Any], prefix: str,
    ) -> tuple[GroupInst, Tensor]:  # fmt: skip
        """A `modules:` container: the GroupInst lowering gives one at model level (dataflow, its
        entries' reads the block's paths). Each entry's tensor is `prefix + entry` in `env`;
        an entry without reads reads the one before it."""
        first = self.env[prev]
        children: list[Inst] = []
        for child in item.children:
            reads = child.inputs or (prev,)
            if self.placed is not None:
                self.placed.append((child, (*path, name, child.name), True))
            if isinstance(child, SymGroup) and child.dataflow:
                inst, tensor = self.container(child, child.name, (*path, name), prev, scope, f"{prefix}{child.name}.")
            else:
                inst, tensor = self.item(child, child.name, (*path, name), reads, self.env[reads[0]], scope)
            if child.inputs:
                inst = dataclasses.replace(inst, inputs=child.inputs)
            children.append(dataclasses.replace(inst, output=tensor.node))
            prev = prefix + child.name
            self.env[prev] = tensor
        out = self.env[prev]
        return GroupInst(name, tuple(children), first.shape, out.shape, counts_of(children), dataflow=True), out

    def node_id(self, path: tuple[str, ...], name: str) -> str:
        """`path.name`, or `path.name_2` for an activation called again under its name."""
        base = join_path(path, name)
        self.uses[base] = self.uses.get(base, 0) + 1
        return base if self.uses[base] == 1 else f"{base}_{self.uses[base]}"

    def layer(
        self, item: SymLayer, name: str, path: tuple[str, ...], src: Tensor, scope: dict[str, Any], others: list[Tensor],
    ) -> tuple[Inst, Tensor]:  # fmt: skip
        """A primitive layer; `others`: the tensors its READS name (`resize: {like: low}`)."""
        op_class = ops.KINDS[item.kind]
        given = dict(item.args)
        values: dict[str, Any] = {}
        for attr in op_class.ATTRS:
            tree = given.get(attr.name)
            if tree is None or attr.type in ("str", "const", "init", "tensor"):
                values[attr.name] = None if tree is None else tree.value  # type: ignore[attr-defined]
                continue
            try:
                values[attr.name] = self.value(tree, scope, attr.type, lambda: self.where(item, item.kind, attr.name))
            except SpecError as e:  # in the top function, where model parameters in it were set (extends, --set)
                notes = param_notes(self.state, expr.to_python(tree), e.where) if self.placed is not None else []
                raise SpecError(e.message + (f" ({'; '.join(notes)})" if notes else ""), e.where) from None
        if op_class.LAYOUT:
            values["channels_last"] = given["channels_last"].value  # type: ignore[attr-defined]
        shape = src.shape
        values = ranked_values(op_class, values, shape.rank, self.state.rank, lambda key: self.where(item, item.kind, key))
        op = op_class(**values)
        if not (op_class.CHANNEL_FREE or op_class.EXPRESSION):
            self.check_channels(item.in_channels, shape, f"{self.source.name}.{item.name}", scope)
        try:
            out = op.infer_reading(shape, [t.shape for t in others])
        except ShapeError as e:
            detail = str(e) if str(shape) in str(e) else f"{e} (input {shape})"
            raise SpecError(f"{name}: {detail}", item.where) from None
        if out.spatial:
            out = dataclasses.replace(out, last=op.last_after(op.values(), shape.last))
        counts = Counts(*op.params(shape))
        node_id = self.node_id(path, name)
        sources = (src.node, *(t.node for t in others))
        add_node(self.state, Node(node_id, op, sources, out, counts.trainable, counts.non_trainable, op.macs(shape)), item.where)
        inst = LayerInst(name, op, shape, out, counts, nonneg_in=src.nonneg, where=item.where)
        return inst, Tensor(node_id, out, op.nonneg_after(src.nonneg))

    def merge(self, item: SymLayer, name: str, path: tuple[str, ...], sources: list[Tensor]) -> tuple[Inst, Tensor]:
        op = ops.KINDS[item.kind](**{k: t.value for k, t in item.args})  # type: ignore[attr-defined]
        try:
            out = op.infer_many([t.shape for t in sources])  # type: ignore[attr-defined]
        except ShapeError as e:
            raise SpecError(f"{name}: {e} (from {', '.join(item.inputs)})", item.where) from None
        if item.passes is not None:  # the merge of `branches`
            edges: tuple[str, ...] = ("branch",) * len(sources)
        else:
            edges = tuple("gate" if item.kind == "multiply" and t.shape != out else "data" for t in sources)
        node_id = self.node_id(path, name)
        counts = Counts(*op.params(out))  # a weighted sum's weights
        add_node(self.state, Node(node_id, op, tuple(t.node for t in sources), out, counts.trainable, counts.non_trainable, edges=edges), item.where)
        inst = LayerInst(name, op, sources[0].shape, out, counts, where=item.where, inputs=item.inputs)
        nonneg = all(t.nonneg for t in sources) and op.nonneg_after(True)
        return inst, Tensor(node_id, out, nonneg)

    def parallel(
        self, item: SymParallel, name: str, path: tuple[str, ...], reads: tuple[str, ...], scope: dict[str, Any],
    ) -> tuple[Inst, Tensor]:  # fmt: skip
        """A module list: path k (module `name.k`) reads `reads[k]` (a row of a grid, the
        tensors its paths read); the merge of their outputs is the node `name`."""
        paths: list[Inst] = []
        outs: list[Tensor] = []
        for k, (child, read) in enumerate(zip(item.children, path_reads(item.children, reads))):
            if self.placed is not None:
                self.placed.append((child, (*path, name, str(k)), True))
            inst, tensor = self.item(child, str(k), (*path, name), read, self.env[read[0]], scope)
            if isinstance(child, SymParallel):
                inst = dataclasses.replace(inst, inputs=read)
            paths.append(dataclasses.replace(inst, output=tensor.node))
            outs.append(tensor)
        op = ops.KINDS[item.merge]()
        try:
            out = op.infer_many([t.shape for t in outs])  # type: ignore[attr-defined]
        except ShapeError as e:
            shapes = ", ".join(str(t.shape) for t in outs)
            raise SpecError(f"{name}: {e}" + ("" if all(str(t.shape) in str(e) for t in outs) else f" (its paths give {shapes})"), item.where) from None
        node_id = self.node_id(path, name)
        add_node(self.state, Node(node_id, op, tuple(t.node for t in outs), out, edges=("branch",) * len(outs)), item.where)
        inst = ParallelInst(name, item.merge, tuple(paths), self.env[item.passes or reads[0]].shape, out, counts_of(paths))
        return inst, Tensor(node_id, out, all(t.nonneg for t in outs) and op.nonneg_after(True))

    def arguments(self, sym: SymBlock, scope: dict[str, Any], where: Location) -> tuple[BlockSource, dict[str, Any]]:
        """An inner instance's arguments, typed as its kind declares them."""
        inner = self.state.spec.blocks[sym.block]
        args: dict[str, Any] = {}
        for key, tree in sym.args:
            decl = inner.definition.params[key]
            kind = decl if isinstance(decl, str) else {bool: "bool", int: "int", float: "float"}.get(type(decl), "")
            at = self.where(sym, "with", key) if sym.at else where
            # in the top function, a value that model parameters set elsewhere (extends, --set) says so
            notes = param_notes(self.state, expr.to_python(tree), at) if self.placed is not None else []
            try:
                args[key] = self.value(tree, scope, f"param_{kind}", at)
            except SpecError as e:
                more = f" ({'; '.join(notes)})" if notes else ""
                raise SpecError(f"block {sym.block!r} parameter {key!r} {e.message}{more}", e.where) from None
            for note in notes:
                self.state.arg_notes[(sym.block, key, args[key])] = note
        return inner, args

    def block(
        self, sym: SymBlock, name: str, path: tuple[str, ...], src: Tensor, scope: dict[str, Any], where: Location,
        first_position: int | None = None, others: tuple[Tensor, ...] = (), free: bool = False,
    ) -> tuple[BlockInst, Tensor]:  # fmt: skip
        """An instance of another kind; `free`: a later instance of a free stage, which takes
        the shape the one before gives (its code is printed from it, not from `sym`)."""
        _, args = self.arguments(sym, scope, where)
        switches = None
        if not free:
            for tree, tensor in zip((sym.in_channels, *sym.more_channels), (src, *others)):
                self.check_channels(tree, tensor.shape, f"{self.source.name}.{sym.name}", scope)
            switches = {flag: bool(self.value(tree, scope, "any", where)) for flag, tree in sym.flags}
        ctx = Ctx(self.source.source, (*self.source.path, *sym.at), path, {}, False)
        inst, node = instantiate(
            self.state, ctx, sym.block, args, name, src.shape, src.node, switches=switches, others=others, first_position=first_position
        )
        nonneg = self.state.block_types[sym.block].nonneg_out
        return inst, Tensor(node, inst.out_shape, nonneg)

    def stage(
        self, sym: SymStage, path: tuple[str, ...], src: Tensor, scope: dict[str, Any], spliced_at: int | None = None,
        inline: bool = False, named: bool = False,
    ) -> tuple[StageInst, Tensor]:  # fmt: skip
        """A stage inside a block kind; `spliced_at`: its instances are entries of the enclosing
        numbered list from that position on (torchvision's `nn.Sequential(first, *remaining)`),
        or, `named`, entries of the enclosing list under its `names:` (`graph.named_into`)."""
        where = self.where(sym)
        repeat = self.value(sym.repeat, scope, "any", lambda: self.where(sym, "repeat"))
        check_repeat(repeat, self.where(sym, "repeat"))
        stage_path = (*path, sym.name) if spliced_at is None else path
        dense = sym.connectivity == "dense"
        cur, instances = src, []
        position = spliced_at
        start = None
        if self.numbering is not None:  # the top function's: its stages' instances are numbered through
            start, total = self.numbering
            scope = {**scope, STAGE_BLOCK_ID: start, TOTAL_STAGE_BLOCKS: total}
            self.numbering[0] += repeat
        for k in range(repeat):
            inst_name = str(spliced_at + k) if spliced_at is not None and not named else instance_name(sym.names, k)
            here = {**scope, STAGE_INDEX: k}
            if start is not None:
                here[STAGE_BLOCK_ID] = start + k
            one = _free_instance(sym, k, repeat) if sym.free else sym.rest if dense or k > 0 else sym.first
            one = dataclasses.replace(one, at=sym.at)  # located at the stage
            if inline:  # its layers are entries of the list from `position` on
                inst, out = self.block(one, str(position), stage_path, cur, here, where, first_position=position, free=sym.free)
                position += len(inst.children)  # type: ignore[operator]
            else:
                inst, out = self.block(one, inst_name, (*stage_path, inst_name), cur, here, where, free=sym.free)
            instances.append(dataclasses.replace(inst, output=out.node))
            if dense:
                concat = ops.Concat()
                try:
                    shape = concat.infer_many([cur.shape, inst.out_shape])
                except ShapeError as e:
                    raise SpecError(f"{sym.name}.{inst_name}: {e}", where) from None
                node_id = join_path(stage_path, f"{inst_name}_concat")
                add_node(self.state, Node(node_id, concat, (cur.node, out.node), shape, edges=("dense", "data")), where)
                cur = Tensor(node_id, shape, False)
            else:
                cur = out
        if any(INDEX_NAMES & expr.free_names(tree) for args in sym.written for _, tree in args):
            instances = _with_index_trees(sym, scope, instances)
        name = sym.name
        stage = StageInst(name, sym.block, sym.connectivity, sym.names, tuple(instances), src.shape, cur.shape, counts_of(instances))
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
                holds = bool(self.value(sc.condition, self.scope, "bool", lambda: source.locate("shortcut", *sc_index(source, k), "when")))  # type: ignore[arg-type]
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
                add_node(self.state, Node(node_id, op, (tensor.node,), new_shape, t, nt, op.macs(tensor.shape)), where)
                tensor = Tensor(node_id, new_shape, False)
            if tensor.shape != branch.shape:
                raise SpecError(
                    f"shortcut of block {source.name!r} gives {tensor.shape} but the branch gives {branch.shape}; "
                    "the branch must downsample by a whole stride",
                    where,
                )
        add_id = join_path(path, "add")
        add_node(self.state, Node(add_id, ops.Add(), (branch.node, tensor.node), branch.shape, edges=("data", "residual")), where)
        return Tensor(add_id, branch.shape, False), chosen.name if chosen else None

    def shortcut_ops(self, sc: SymShortcut, path: tuple[str, ...], src: Tensor, branch: Tensor) -> list[tuple[str, ops.Op]]:
        """The shortcut's layers with their node ids: its stride is the one its code computes
        (`sc.stride`, the branch's from the shortcut's input), not a product over every layer."""
        stride = self.value(sc.stride, self.scope, "int", self.source.locate("shortcut"))
        base = join_path(path, sc.name)
        if sc.kind != "projection":
            return [(base, ops.PadShortcut(stride, branch.shape.c - src.shape.c))]
        loc = self.source.locate("shortcut")
        written = next(s for s in self.source.definition.shortcuts if s.name == sc.name)
        defaults = self.state.spec.model.defaults
        if written.bias is None and defaults.conv.bias is None:
            raise SpecError("shortcut conv bias is not set: add defaults.conv.bias or shortcut.bias", loc)
        self.check_channels(sc.out_channels, branch.shape, f"shortcut of block {self.source.name!r}")
        conv = ops.Conv(branch.shape.c, 1, stride, 0, 1, 1, sc.bias, self.state.init("conv"), rank=src.shape.rank)
        if not sc.batchnorm:
            return [(base, conv)]  # a lone conv is the module itself
        if sc.eps is None or sc.momentum is None:
            raise SpecError("shortcut batchnorm needs defaults.batchnorm.eps and momentum", loc)
        # conv + BN is an nn.Sequential (`downsample.0`, `downsample.1`)
        return [(f"{base}.0", conv), (f"{base}.1", ops.BatchNorm(sc.eps, sc.momentum, init=self.state.init("batchnorm"), rank=src.shape.rank))]
