"""The PyTorch backend's module lists (`parallel:`, torchvision's nn.ModuleList of ASPP's
`convs`), numbered block kinds with expressions among their modules (torchvision's
ASPPPooling, an nn.Sequential subclass whose forward resizes back), containers wired by
dataflow (`modules:`, nn.ModuleDict / nn.ModuleList) and groups run in pieces (taps)."""

from __future__ import annotations

import keyword
from collections.abc import Callable

from archc import ops
from archc.backends import common, variables
from archc.code import LINE, Call, Code, Gen, Seq, call, flat, render
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    ParallelInst,
    StageInst,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
)


class ListEmission:
    """Module lists in archc.backends.torch.TorchEmitter (a base class of it): it builds the
    modules of their paths with the emitter's own layer, block and forward code."""

    needs_ordered_dict: bool
    _sym_module: Callable[[SymLayer, variables.Hoister, bool], Code]  # a layer's module
    _nested: Callable[..., Code]  # a block or stage inside a block kind
    _forward_lines: Callable[[variables.Step, variables.Hoister], list[str]]  # an item in forward
    graph: Graph
    sigs: dict[str, common.Signature]
    _module: Callable[..., Code]  # a model-level item's module
    _stage: Callable[[StageInst], Code]  # a model-level stage's modules

    def _rolled(
        self, items: tuple[Inst, ...], inplace_first: bool, inlined: tuple[tuple[int, int, BlockInst], ...] = (),
        tapped: frozenset[str] = frozenset(),
    ) -> list[Code]:  # fmt: skip
        """The children of a numbered nn.Sequential; consecutive instances of one block kind
        are written as loops where their arguments allow, as a stage's are. The layers of a
        block written `inline` are its nn.Sequential unpacked in place (`*Conv3x3(...)`)."""
        parts: list[Code] = []
        starts = {start: (count, inst) for start, count, inst in inlined}
        k = 0
        safe = inplace_first  # whether the next entry may overwrite its input (see variables.plan)
        while k < len(items):
            if k in starts:
                run: list[BlockInst] = []
                end = k
                while end in starts and starts[end][1].block == starts[k][1].block:
                    run.append(starts[end][1])
                    end += starts[end][0]
                # a widening first instance stands alone, so the equal ones after it make one loop
                block, sig = self.graph.block(run[0].block), self.sigs[run[0].block]
                rows = [common.instance_values(inst, block, sig) for inst in run[:3]]
                chunks = [run[:1], run[1:]] if len(rows) == 3 and rows[0] != rows[1] == rows[2] else [run]
                for chunk in chunks:
                    stage = common.as_stage(tuple(chunk))
                    parts += [unpacked(part) for part in self._stage(stage).args]  # type: ignore[union-attr]
                k, safe = end, True
                continue
            item = items[k]
            if isinstance(item, BlockInst):
                end = k
                while end < len(items) and isinstance(items[end], BlockInst) and items[end].block == item.block:  # type: ignore[union-attr]
                    end += 1
                chunk = tuple(items[k:end])
                stage = common.as_stage(chunk)  # type: ignore[arg-type]
                parts += list(self._stage(stage).args)  # type: ignore[union-attr]
                k, safe = end, True
                continue
            module = self._module(item, inplace=safe)
            parts.append(flattened(item.op.kind, module) if isinstance(item, LayerInst) else module)
            k, safe = k + 1, (safe or not variables.aliases(item)) and item.name not in tapped
        return parts

    def _path_module(self, path: SymItem, hoist: variables.Hoister) -> Code:
        """A path of a module list: a layer's module, a list's nn.Sequential or a block. Nothing
        else reads its input, so only a list's later entries may work in place."""
        if isinstance(path, SymLayer):
            return flattened(path.kind, self._sym_module(path, hoist, False))
        if isinstance(path, SymParallel):  # a row of a grid: a module list of its own
            return call("nn.ModuleList", Seq(tuple(self._path_module(p, hoist) for p in path.children)))
        if not isinstance(path, SymGroup):
            return self._nested(path, hoist)
        modules: dict[str, Code] = {}
        for step in variables.plan(path.children, "x", "out", set()):
            child = step.item
            modules[child.name] = self._sym_module(child, hoist, step.inplace) if isinstance(child, SymLayer) else self._nested(child, hoist)
        if path.positional:
            return Call("nn.Sequential", tuple(modules.values()))
        self.needs_ordered_dict = True
        return call("nn.Sequential", call("OrderedDict", **modules))

    def _sequence_forward(self, block: BlockType, hoist: variables.Hoister) -> list[str]:
        """The forward of a numbered block kind with expressions among its modules: all the
        modules in a row are nn.Sequential's own forward, others each by its index; each
        expression in its place."""
        steps = variables.plan(block.layers, "x", "out", set())
        count = sum(not free(step.item) for step in steps)
        lines: list[str] = []
        run: list[variables.Step] = []
        first = 0  # the index of the run's first module
        for step in [*steps, None]:
            if step is not None and not free(step.item):
                run.append(step)
                continue
            if run and len(run) == count:
                lines.append(f"{run[-1].dst} = super().forward({run[0].srcs[0]})")
            else:  # one line per module, as torchvision's forward reads
                lines += [f"{s.dst} = self[{first + k}]({s.srcs[0]})" for k, s in enumerate(run)]
            first, run = first + len(run), []
            if step is not None:
                lines += self._forward_lines(step, hoist)
        return [*lines, f"return {steps[-1].dst}"]


Row = tuple[str, tuple[bool, ...]] | None  # a path that is a module list (a row of a grid): its merge and flats


def parallel_lines(
    name: str, merge: str, flats: tuple[bool, ...], srcs: tuple[str, ...], dst: str, indent: str,
    rows: tuple[Row, ...] = (), taken: frozenset[str] = frozenset(),
) -> list[str]:  # fmt: skip
    """`dst = ` a module list applied, as lines at `indent` (returned without it), split as ruff
    format splits them: torchvision's ASPP loop as a comprehension where every path reads one
    tensor and the merge is a concatenation, else each path by its index. A row of a grid
    (HRNet's fuse layers) is merged first into a variable of its own, not one of `taken`
    (`fuse_1 = self.fuse[1][0](x0) + self.fuse[1][1](x1)`); `srcs` holds its paths' inputs."""
    if any(rows):
        lines: list[str] = []
        applied: list[str] = []
        start = 0
        for k, row in enumerate(rows):
            read = srcs[start:start + (len(row[1]) if row else 1)]
            start += len(read)
            if row is None:
                applied.append(f"self.{name}[{k}]({read[0]})")
                continue
            var = "".join(c if c.isalnum() else "_" for c in name).strip("_") + f"_{k}"
            while var in taken or var in srcs or var == dst:
                var += "_"
            lines += parallel_lines(f"{name}[{k}]", row[0], row[1], read, var, indent)
            applied.append(var)
        return lines + _merged(merge, applied, flats, dst, indent)
    if merge == "concat" and len(set(srcs)) == 1:
        each = "path" if srcs[0] != "path" else "path_"
        code: Code = Call("torch.cat", (Gen(f"{each}({srcs[0]})", f"for {each} in self.{name}", brackets="[]"), "1"))
        return [line[len(indent):] for line in render(code, indent, f"{dst} = ")]
    return _merged(merge, [f"self.{name}[{k}]({src})" for k, src in enumerate(srcs)], flats, dst, indent)


def _merged(merge: str, applied: list[str], flats: tuple[bool, ...], dst: str, indent: str) -> list[str]:
    """`dst = ` the merge of the tensors `applied` (code text), lines as ruff formats them."""
    if merge == "concat":
        code = Call("torch.cat", (Seq(tuple(applied)), "1"))
        return [line[len(indent):] for line in render(code, indent, f"{dst} = ")]
    # a chain of + or *: the terms hold neither
    text = ops.KINDS[merge].torch_merge(applied, list(flats))  # type: ignore[attr-defined]
    if len(f"{indent}{dst} = {text}") <= LINE:
        return [f"{dst} = {text}"]
    sign = " + " if merge == "add" else " * "
    terms = text.split(sign)
    return [f"{dst} = (", f"    {terms[0]}", *(f"    {sign.strip()} {t}" for t in terms[1:]), ")"]


def sym_rows(layer: SymParallel) -> tuple[Row, ...]:
    """Per path of a module list in a block kind: a row of a grid (its merge and flats), or None."""
    return tuple((p.merge, p.flat) if isinstance(p, SymParallel) else None for p in layer.children)


def inst_rows(item: ParallelInst) -> tuple[Row, ...]:
    """Per path of a model-level module list: a row of a grid (its merge and flats), or None."""
    return tuple(
        (p.merge, tuple(not q.out_shape.spatial for q in p.items)) if isinstance(p, ParallelInst) else None for p in item.items
    )


def flattened(kind: str, module: Code) -> Code:
    """A module that forward follows with a flatten (global_avgpool), as an entry of a container."""
    return call("nn.Sequential", module, call("nn.Flatten")) if kind in ops.KINDS and ops.KINDS[kind].torch_after("x") else module


def free(item: SymItem) -> bool:
    """An item of a block kind that is code in `forward`, no module (a merge or an expression)."""
    return isinstance(item, SymLayer) and ops.KINDS[item.kind].module_free()


def container_module(group: GroupInst, module_of: Callable[[Inst], Code]) -> Code:
    """A `modules:` container: the modules of its entries (merges and expressions have none) in
    an nn.ModuleList (numbered) or an nn.ModuleDict (named)."""
    entries = [c for c in group.items if not (isinstance(c, LayerInst) and c.op.module_free())]
    if group.positional:
        return call("nn.ModuleList", Seq(tuple(module_of(child) for child in entries), "[]"))
    return call("nn.ModuleDict", call("OrderedDict", **{child.name: module_of(child) for child in entries}))


def sym_container_module(group: SymGroup, module_of: Callable[[SymItem], Code]) -> Code:
    """A `modules:` container of a block kind, as `container_module` writes the model's."""
    entries = [c for c in group.children if not free(c)]
    if group.positional:
        return call("nn.ModuleList", Seq(tuple(module_of(child) for child in entries), "[]"))
    return call("nn.ModuleDict", call("OrderedDict", **{child.name: module_of(child) for child in entries}))


def tapped_calls(group: GroupInst | SymGroup, step: variables.Step) -> list[str]:
    """A group whose entries are read from outside it, run in pieces that end at each such
    entry (`backbone_layer3 = ...`): a named group entry by entry (`self.backbone.conv1(x)`),
    a numbered one in slices of its nn.Sequential (`self.backbone[:5](x)`)."""
    taps = dict(step.taps)
    keys = sequential_keys(group)
    entries = _entries(group)
    cuts = [k + 1 for k, child in enumerate(entries) if child.name in taps]
    if cuts[-1] != len(entries):
        cuts.append(len(entries))
    lines, src, start = [], step.srcs[0], 0
    for end in cuts:
        last = entries[end - 1].name
        dst = taps.get(last, step.dst) if end < len(entries) else step.dst
        if not group.positional:
            for key in keys[start:end - 1]:
                lines.append(f"x = self.{group.name}.{key}({src})")
                src = "x"
            lines.append(f"{dst} = self.{group.name}.{keys[end - 1]}({src})")
        else:
            part = f"[{start}]" if end == start + 1 else f"[{start or ''}:{end if end < len(entries) else ''}]"
            lines.append(f"{dst} = self.{group.name}{part}({src})")
        if end == len(entries) and last in taps and taps[last] != dst:
            lines.append(f"{taps[last]} = {dst}")
        src, start = dst, end
    return lines


def _entries(group: GroupInst | SymGroup) -> tuple[Inst | SymItem, ...]:
    """The entries of a model-level group or of a list of a block kind (whose entries are all
    present where it is run in pieces: symbolic._group_taps)."""
    return group.items if isinstance(group, GroupInst) else group.children


def sequential_keys(group: GroupInst | SymGroup) -> list[str]:
    """The keys of a group's nn.Sequential, entry by entry: nn.Sequential calls each entry once,
    so an activation used again gets an entry of its own, named like its IR node (`relu_2`)."""
    uses: dict[str, int] = {}
    keys = []
    for child in _entries(group):
        uses[child.name] = uses.get(child.name, 0) + 1
        keys.append(child.name if uses[child.name] == 1 else f"{child.name}_{uses[child.name]}")
    return keys


def ordered_dict(entries: list[tuple[str | None, Code]]) -> Call:
    """The OrderedDict of a named nn.Sequential from its (key, module) entries, a stage's loop
    (None, `**{f"conv2_{i + 1}": Unit(...) for i in range(3)}`) among them: keyword arguments
    where every key is a Python name, else a dict (a list that numbers its unnamed entries among
    named ones, `{"0": ..., "conv2_1": ...}`)."""
    if all(key is None or (key.isidentifier() and not keyword.iskeyword(key)) for key, _ in entries):
        if all(key is not None for key, _ in entries):
            return call("OrderedDict", **dict(entries))  # type: ignore[arg-type]
        return Call("OrderedDict", tuple(code if key is None else call("", **{key: code}).args[0] for key, code in entries))
    shown = [code if key is None else f"{common.literal(key)}: {code}" if isinstance(code, str) else Call(f"{common.literal(key)}: {code.func}", code.args) for key, code in entries]  # type: ignore[union-attr]
    return Call("OrderedDict", (Seq(tuple(shown), "{}"),))


def unpacked(part: Code) -> Code:
    """An instance (or a loop of instances) of an nn.Sequential block kind, unpacked into the
    enclosing nn.Sequential: `*Conv3x3(...)`, `*(layer for _ in range(3) for layer in Conv3x3(...))`."""
    if isinstance(part, Gen):
        return Gen("layer", part.clause, prefix="*", more=(f"for layer in {flat(part.elem)}",))
    assert isinstance(part, Call)
    return Call(part.func, part.args, prefix="*")
