"""The PyTorch backend's block classes: one `nn.Module` class per block kind (an
`nn.Sequential` subclass for a numbered one), its `__init__` built from the kind's symbolic
layers with their arguments as expressions over its parameters, and a flat `forward`, as
torchvision's BasicBlock and Bottleneck read; torchvision's memory-efficient dense layers."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Callable
from typing import Any

from archc import ops
from archc.backends import _signature, alternatives, common, variables
from archc.backends.identity import IdentityMap, IdentitySet
from archc.backends.torch_lists import (
    free,
    parallel_lines,
    sym_container_module,
    sym_rows,
    tapped_calls,
)
from archc.code import LINE, Call, Code, Gen, Seq, call, render
from archc.errors import SpecError
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Graph,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymShortcut,
    SymStage,
    instance_name,
    is_merge,
    merged_containers,
    path_variable,
    tapped_groups,
)
from archc.spec import expr, logic

INDENT2 = " " * 8


def layer_module(kind: str, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
    """The module for one primitive layer; `a` holds each argument as source text."""
    return ops.KINDS[kind].torch_module(a, in_ch, flat, inplace)


def _args(layer: Any, hoist: variables.Hoister) -> dict[str, str] | None:
    """A layer's arguments as source text, as its op's torch_apply reads them (None: not a layer)."""
    return symbolic_args(layer, hoist) if isinstance(layer, SymLayer) else None


def symbolic_args(layer: SymLayer, hoist: variables.Hoister) -> dict[str, str]:
    out = {}
    for key, tree in layer.args:
        if key == "init":
            continue
        if key == "fn":
            out[key] = tree.value  # type: ignore[attr-defined]
        elif key in ("filters", "units", "groups"):  # a depthwise conv's groups are its width
            out[key] = hoist.src(tree)
        else:
            out[key] = expr.to_python(tree)
    return out


class BlockEmission:
    """The block classes of archc.backends.torch.TorchEmitter (a base class of it): it reads the
    graph, the kinds' signatures and class names and which kinds dense stages call, and notes
    the helpers and imports its code needs."""

    graph: Graph
    sigs: dict[str, common.Signature]
    names: dict[str, str]  # block kind -> its class name
    helpers: set[str]
    functions: set[str]
    needs_math: bool
    needs_ordered_dict: bool
    needs_checkpoint: bool
    dense_kinds: set[str]  # kinds that dense stages call with the list of earlier features
    standalone: set[str]  # dense kinds also called on a tensor outside dense stages
    checkpointed: set[str]  # dense kinds whose concat -> ... -> first conv is recomputed in backward
    _path_module: Callable[[SymItem, variables.Hoister], Code]  # a path of a module list
    _sequence_forward: Callable[[BlockType, variables.Hoister], list[str]]  # a numbered kind's forward

    def block_class(self, block: BlockType) -> dict[str, Any]:
        sig = self.sigs[block.name]
        layers = (*block.layers, *block.after)
        hoist = variables.Hoister(layers, sig.arguments())
        self.needs_math |= any(expr.uses_math(t) for layer in layers for t in common.sym_trees(layer))
        self.functions |= {f for layer in layers for f in common.helper_functions(layer)}
        init: list[str] = []
        defined: set[str] = set()
        # An activation may work in place unless its input is also read elsewhere: the block
        # input (a skip or dense connection keeps it), a shortcut's input or a named tensor.
        after_read = {sc.input for sc in block.shortcuts}
        taps = [f"{group}.{entry}" for group, entries in tapped_groups(block.layers, block.outputs).items() for entry in entries]
        self.block_locals = frozenset({"x", "out", "identity", *(variables.tensor_variable(n) for n in (*(i.name for i in (*block.layers, *block.after)), *taps))})
        self.switches: IdentityMap[str] = IdentityMap()
        self.named_conditions = _named_conditions((*block.layers, *block.after))
        self.assigned = IdentitySet()
        if common.sequential(block):
            modules = tuple(layer for layer in block.layers if not free(layer))
            group = SymGroup("layers", modules, ast.Name("in_channels"))
            init = self._group_lines(group, hoist, INDENT2, target="super().__init__")
            expressions = [layer for layer in block.layers if free(layer)]  # torchvision's ASPPPooling
            for layer in expressions:
                init += self._init_lines(layer, hoist, False, INDENT2)
            return {
                "name": self.names[block.name],
                "base": "nn.Sequential",
                "doc": common.docstring(block.doc or f"The {block.name} block.", 4),
                "signature": ["in_channels: int", *(["*", *sig.parts()] if sig.parts() else [])],
                "init": init,
                "methods": [("forward(self, x: Tensor) -> Tensor", self._sequence_forward(block, hoist))] if expressions else [],
            }
        first = sig.variables[0]
        containers = merged_containers(layers)
        chain = _InitChain()
        for step in [*variables.plan(block.layers, first, "out", after_read, inputs=block.inputs, outputs=frozenset(block.outputs)), *variables.plan(block.after, "out", "out", after_read, True)]:
            layer = step.item
            module_free = isinstance(layer, SymLayer) and moduleless(layer.kind)
            top = layer.name.split(".")[0]
            if top in containers and top not in defined:  # its entries are defined with it
                defined.add(top)
                init += hoist.definitions(variables.width_trees(containers[top]), INDENT2)
                init += render(self._container_module(containers[top], hoist), INDENT2, f"self.{top} = ")
            if top in containers and not module_free:
                continue
            if layer.name in defined and not module_free:
                continue  # a shared activation: one module, called again in forward
            defined.add(layer.name)
            init = chain.add(init, layer.condition, self._init_lines(layer, hoist, step.inplace, INDENT2, frozenset(entry for entry, _ in step.taps)))
        signature = [f"{c}: int" for c in sig.channels] + (["*", *sig.parts()] if sig.parts() else [])  # "*" needs a parameter after it
        if block.name in self.checkpointed:
            signature.append("memory_efficient: bool = False")
            init.insert(0, f"{INDENT2}self.memory_efficient = memory_efficient")
            methods = self._dense_methods(block, hoist)
        else:
            forward = self._block_forward(block, sig, init, hoist)
            if block.name in self.dense_kinds:
                forward = [*self._as_list(block), "x = torch.cat(features, 1)", *forward]
                methods = [(f"forward(self, {self._features_param(block)}) -> Tensor", forward)]
            else:
                result = f"tuple[{', '.join(['Tensor'] * len(block.outputs))}]" if block.outputs else "Tensor"
                head = _signature("forward", ["self", *(f"{v}: Tensor" for v in sig.variables)], result)  # split where long
                methods = [(head[len("    def ") : -1], forward)]
        init.insert(0, f"{INDENT2}super().__init__()")
        return {
            "name": self.names[block.name],
            "base": "nn.Module",
            "doc": common.docstring(block.doc or f"The {block.name} block.", 4),
            "signature": signature,
            "init": init,
            "methods": methods,
        }

    def _features_param(self, block: BlockType) -> str:
        return "features: Tensor | list[Tensor]" if block.name in self.standalone else "features: list[Tensor]"

    def _as_list(self, block: BlockType) -> list[str]:
        """A dense stage passes the list of the stage input and earlier outputs; elsewhere a tensor."""
        return ["if isinstance(features, Tensor):", "    features = [features]"] if block.name in self.standalone else []

    def _dense_methods(self, block: BlockType, hoist: variables.Hoister) -> list[tuple[str, list[str]]]:
        """torchvision's memory-efficient dense layer: concat -> ... -> first conv is a
        separate method, checkpointed (recomputed in backward) only when gradients flow,
        so the concatenated features are not kept alive for every layer. Features are
        passed unpacked: the stage's list grows after the call, before the recompute."""
        self.needs_checkpoint = True
        self.helpers.add("checkpointed")
        split = next(i for i, layer in enumerate(block.layers) if layer.kind == "conv") + 1
        bottleneck = ["out = torch.cat(features, 1)"]
        for layer in block.layers[:split]:
            bottleneck += self._call_line(layer.name, layer.kind, "out", "out", _args(layer, hoist))
        forward = [
            *self._as_list(block),
            "if self.memory_efficient and any(f.requires_grad for f in features):",
            "    out = checkpointed(self, features)",
            "else:",
            "    out = self._bottleneck(*features)",
        ]
        for layer in block.layers[split:]:
            forward += self._call_line(layer.name, layer.kind, "out", "out", _args(layer, hoist))
        return [
            ("_bottleneck(self, *features: Tensor) -> Tensor", [*bottleneck, "return out"]),
            (f"forward(self, {self._features_param(block)}) -> Tensor", [*forward, "return out"]),
        ]

    def _block_forward(self, block: BlockType, sig: common.Signature, init: list[str], hoist: variables.Hoister) -> list[str]:
        skip = block.connectivity == "skip"
        shortcuts = common.emitted_shortcuts(block, sig) if skip else []
        for sc, condition in shortcuts:
            module = self._shortcut_module(sc, hoist)
            if condition is None:
                init += render(module, INDENT2, f"self.{sc.name} = ")
            else:
                init += [f"{INDENT2}self.{sc.name} = None", f"{INDENT2}if {condition}:"]
                init += render(module, INDENT2 + "    ", f"self.{sc.name} = ")

        def apply_shortcuts(point: str | None, var: str) -> list[str]:
            out: list[str] = []
            for sc, condition in shortcuts:
                if sc.input == point:
                    line = f"identity = self.{sc.name}({var})"
                    out += [line] if condition is None else [f"if self.{sc.name} is not None:", "    " + line]
            return out

        lines = ["identity = x"] if skip else []
        var = sig.variables[0]
        steps = variables.plan(block.layers, var, "out", {sc.input for sc in block.shortcuts}, inputs=block.inputs, outputs=frozenset(block.outputs))
        chain: list[ast.expr] = []  # the conditions of the `if`/`elif` chain the last lines close
        for step in steps:
            lines, chain = _chained(lines, chain, step.item.condition, self._forward_lines(step, hoist))
            var = step.dst
            more = apply_shortcuts(step.item.name, var)
            lines, chain = lines + more, chain if not more else []
        lines += apply_shortcuts(None, "x")
        if skip:
            # the branch's output may be x itself where every layer passed its input on (an identity)
            fresh = not variables.aliases(steps[-1].item) or steps[-1].inplace
            if block.sum == "new":  # torchvision's RegNet: `self.proj(x) + self.f(x)`, the shortcut first
                lines.append(f"out = identity + {var}")
            else:
                lines.append(f"{var} += identity" if var == "out" and fresh else f"out = {var} + identity")
            var = "out"
        chain = []
        for step in variables.plan(block.after, var, "out", set(), True):
            lines, chain = _chained(lines, chain, step.item.condition, self._forward_lines(step, hoist))
            var = step.dst
        if block.outputs:  # several: each kept in a variable of its own (a tap's too)
            held: dict[str, str] = {}
            for step in steps:
                for name, v in ((step.item.name, step.dst), *((f"{step.item.name}.{e}", v) for e, v in step.taps)):
                    held.setdefault(name, v)
            var = ", ".join(held[o] for o in block.outputs)
        lines.append(f"return {var}")
        return lines

    def _init_lines(self, layer: SymItem, hoist: variables.Hoister, inplace: bool, indent: str, tapped: frozenset[str] = frozenset()) -> list[str]:
        """`self.name = Module(...)` for one item of a block kind, guarded by its condition;
        `tapped`: a list's entries read from outside it (no entry after one works in place)."""
        lines = hoist.definitions(variables.width_trees(layer), indent)
        condition = hoist.condition(layer.condition)
        switch = self.named_conditions.get(expr.to_python(layer.condition)) if layer.condition is not None else None
        if switch is not None:  # a condition used twice: computed once, as the switch it is (torchvision's use_res_connect)
            if switch not in self.assigned:
                self.assigned.add(switch)
                lines.append(f"{indent}self.{self._switch(switch)} = {condition}")
            condition = f"self.{self._switch(switch)}"
        if isinstance(layer, SymLayer) and moduleless(layer.kind):
            lines += [f"{indent}self.{self._switch(layer)} = {condition}"] if condition and switch is not layer else []
            inner = indent + "    " if condition else indent
            stored = [f"{inner}self.{_stored(layer, key)} = {value}" for key, value in _forward_args(layer, hoist, stored=False).items()]
            return lines + ([f"{indent}if self.{self._switch(layer)}:"] if condition and stored else []) + stored
        if isinstance(layer, SymGroup):
            if condition is None:
                return lines + self._group_lines(layer, hoist, indent, tapped=tapped)
            group = self._group_lines(layer, hoist, indent + "    ")
            return [*lines, f"{indent}self.{layer.name} = None", f"{indent}if {condition}:", *group]
        if isinstance(layer, SymLayer):
            module: Code = layer_module(layer.kind, symbolic_args(layer, hoist), hoist.src(layer.in_channels), layer.flat[0], inplace)
        elif isinstance(layer, SymParallel):  # torchvision's ASPP: `self.convs = nn.ModuleList(modules)`
            module = call("nn.ModuleList", Seq(tuple(self._path_module(path, hoist) for path in layer.children)))
        else:
            module = self._nested(layer, hoist)
        if condition is None:
            return lines + render(module, indent, f"self.{layer.name} = ")
        return [*lines, f"{indent}self.{layer.name} = None", f"{indent}if {condition}:", *render(module, indent + "    ", f"self.{layer.name} = ")]

    def _container_module(self, group: SymGroup, hoist: variables.Hoister) -> Code:
        """A `modules:` container of a block kind, as at model level (container_module)."""
        self.needs_ordered_dict |= not group.positional

        def module_of(child: SymItem) -> Code:
            if isinstance(child, SymGroup) and child.dataflow:
                return self._container_module(child, hoist)
            if isinstance(child, SymLayer):
                return self._sym_module(child, hoist, False)
            return self._path_module(child, hoist)

        return sym_container_module(group, module_of)

    def _sym_module(self, layer: SymLayer, hoist: variables.Hoister, inplace: bool) -> Code:
        return layer_module(layer.kind, symbolic_args(layer, hoist), hoist.src(layer.in_channels), layer.flat[0], inplace)

    def _switch(self, layer: SymLayer) -> str:
        """The attribute that says whether a conditional merge or expression is present:
        `use_NAME`, numbered on where alternatives under other conditions share the name."""
        if layer not in self.switches:
            taken = set(self.switches.values())
            name, k = f"use_{layer.name}", 2
            while name in taken:
                name, k = f"use_{layer.name}_{k}", k + 1
            self.switches[layer] = name
        return self.switches[layer]

    def _group_lines(
        self, group: SymGroup, hoist: variables.Hoister, indent: str, target: str | None = None, tapped: frozenset[str] = frozenset(),
    ) -> list[str]:  # fmt: skip
        """An nn.Sequential inside a block kind; conditional entries are appended when they hold.
        `target`: the call that receives the modules (`super().__init__` for a block kind that
        is itself a numbered sequence); by default `self.NAME = nn.Sequential(...)`."""
        modules: list[tuple[str, Code, str | None]] = []
        trees: list[ast.expr | None] = []  # each entry's condition (alternatives.keywords)
        lines = hoist.definitions(variables.width_trees(group), indent)
        for step in variables.plan(group.children, "x", "out", set(tapped)):  # a tap's tensor is read again
            child = step.item
            condition = hoist.condition(child.condition)
            if isinstance(child, SymLayer):
                code: Code = layer_module(child.kind, symbolic_args(child, hoist), hoist.src(child.in_channels), child.flat[0], step.inplace)
            elif isinstance(child, SymGroup):
                raise SpecError(f"{group.name}.{child.name}: a list inside a list is not supported in a block; use a block kind", None)
            elif common.spliced(child, group):  # its instances are entries of this sequence, as torchvision's _stack
                first, rest = self._inner(child.first, hoist.src(child.first.in_channels)), self._inner(child.rest, expr.to_python(child.rest.in_channels))
                modules += [(child.name, first, condition), (child.name, Gen(rest, common.later_loop(child), prefix="*"), condition)]
                trees += [child.condition, child.condition]
                continue
            else:
                code = self._nested(child, hoist)
            modules.append((child.name, code, condition))
            trees.append(child.condition)
        head = f"{target}(" if target else f"self.{group.name} = nn.Sequential("
        if not any(c for _, _, c in modules):
            if group.positional:
                sequence = Call(target or "nn.Sequential", tuple(code for _, code, _ in modules))
                return lines + render(sequence, indent, "" if target else f"self.{group.name} = ")
            self.needs_ordered_dict = True
            return lines + render(call("nn.Sequential", call("OrderedDict", **{n: code for n, code, _ in modules})), indent, f"self.{group.name} = ")
        local = "layers" if target else f"{group.name}_layers"  # a block kind that is a sequence: torchvision's `layers`
        if not group.positional:
            lines.append(f"{indent}{local}: dict[str, nn.Module] = {{}}")
            for (name, code, condition), keyword in zip(modules, alternatives.keywords(trees)):  # alternatives: if/elif/else
                if condition:
                    lines.append(f"{indent}{alternatives.guard(keyword, condition)}")
                lines += render(code, indent + ("    " if condition else ""), f"{local}[{common.literal(name)}] = ")
        else:  # torchvision's way: a list, extended where a condition holds
            runs: list[tuple[str | None, list[Code], ast.expr | None]] = []  # consecutive entries under one condition
            for (_, code, condition), tree in zip(modules, trees):
                if runs and runs[-1][0] == condition:
                    runs[-1][1].append(code)
                else:
                    runs.append((condition, [code], tree))
            first: list[Code] = runs.pop(0)[1] if runs[0][0] is None else []
            lines += render(Seq(tuple(first)), indent, f"{local}: list[nn.Module] = ")
            for (condition, run, _), keyword in zip(runs, alternatives.keywords([tree for _, _, tree in runs])):  # alternatives: if/elif/else
                inner = indent + "    " if condition else indent
                if condition:
                    lines.append(f"{indent}{alternatives.guard(keyword, condition)}")
                if len(run) == 1 and isinstance(run[0], Gen):  # a loop of instances (an unnamed stage)
                    grow = Call(f"{local}.extend", (dataclasses.replace(run[0], prefix=""),))
                elif len(run) > 1:
                    grow = Call(f"{local}.extend", (Seq(tuple(run)),))
                else:
                    grow = Call(f"{local}.append", tuple(run))
                lines += render(grow, inner)
        whole = f"*{local}" if group.positional else f"OrderedDict({local})"
        self.needs_ordered_dict |= not group.positional
        return [*lines, f"{indent}{head}{whole})"]

    def _forward_lines(self, step: variables.Step, hoist: variables.Hoister) -> list[str]:
        """One item of a block kind in `forward`: read `step.srcs`, write `step.dst`."""
        layer = step.item
        kind = getattr(layer, "kind", "block")
        if isinstance(layer, SymLayer) and ops.KINDS[kind].MERGE and ops.KINDS[kind].module_free():
            options = {key: tree.value for key, tree in layer.args}  # type: ignore[attr-defined]  # its OPTIONS (`in_place`)
            body = ops.KINDS[kind].torch_merge_lines(step.dst, list(step.srcs), list(layer.flat), options)
            guard = f"if self.{self._switch(layer)}:"
        elif isinstance(layer, SymParallel):
            indent = INDENT2 + "    " * (layer.condition is not None)
            body = parallel_lines(common.module_path(layer.name), layer.merge, layer.flat, step.srcs, step.dst, indent, sym_rows(layer), self.block_locals)
            guard = f"if self.{layer.name} is not None:"
        elif isinstance(layer, SymLayer) and ops.KINDS[kind].EXPRESSION:
            args = ops.KINDS[kind].with_reads({**symbolic_args(layer, hoist), **_forward_args(layer, hoist, stored=True)}, step.srcs)
            indent = INDENT2 if layer.condition is None else INDENT2 + "    "
            body = [line[len(indent):] for line in render(ops.KINDS[kind].torch_expr(step.srcs[0], args), indent, f"{step.dst} = ")]
            guard = f"if self.{self._switch(layer)}:"
        elif step.taps:  # a list read from outside it (never conditional): run in pieces
            return tapped_calls(layer, step)  # type: ignore[arg-type]
        else:
            src = ", ".join((step.srcs[0] if layer.condition is None or is_merge(layer) else step.dst, *more_inputs(layer, step)))
            body = self._call_line(common.module_path(layer.name), kind, src, step.targets, _args(layer, hoist))
            guard = f"if self.{layer.name} is not None:"
        if layer.condition is None:
            return body
        preface = [f"{step.dst} = {step.passthrough}"] if step.dst != step.passthrough else []
        return [*preface, guard, *("    " + line for line in body)]

    def _nested(self, sym: SymBlock | SymStage, hoist: variables.Hoister) -> Code:
        """A block or stage inside a block kind, its arguments as expressions."""
        if isinstance(sym, SymBlock):
            return self._inner(sym, hoist.src(sym.in_channels), hoist.src)
        key = common.stage_key(sym.names)
        if sym.connectivity == "dense":
            self.helpers.add("DenseStage")
            layer = self._inner(sym.rest, expr.to_python(sym.rest.in_channels))
            count = expr.to_python(sym.repeat)
            return call("DenseStage", Gen(Call(f"{key}: {layer.func}", layer.args), f"for i in range({count})", brackets="{}"))
        first = self._inner(sym.first, hoist.src(sym.first.in_channels))
        rest = self._inner(sym.rest, expr.to_python(sym.rest.in_channels))
        if sym.names == "{i}":
            return Call("nn.Sequential", (first, Gen(rest, common.later_loop(sym), prefix="*")))
        self.needs_ordered_dict = True
        first_key = common.literal(instance_name(sym.names, 0))
        count = expr.to_python(sym.repeat)
        rest_items = Gen(Call(f"{key}: {rest.func}", rest.args), f"for i in range(1, {count})", prefix="**", brackets="{}")
        return call("nn.Sequential", call("OrderedDict", Seq((Call(f"{first_key}: {first.func}", first.args), rest_items), "{}")))

    def _inner(self, sym: SymBlock, in_channels: str, src: Any = expr.to_python) -> Call:
        return common.inner_call(self.names[sym.block], sym, self.sigs[sym.block], in_channels, src=src)

    def _shortcut_module(self, sc: SymShortcut, hoist: variables.Hoister) -> Code:
        in_ch, out_ch, stride = hoist.src(sc.in_channels), hoist.src(sc.out_channels), expr.to_python(sc.stride)
        if sc.kind == "option_a":
            self.helpers.add("PadShortcut")
            return call("PadShortcut", stride, f"{out_ch} - {in_ch}")
        conv_args, bn_args = common.projection_args(sc, hoist, self.graph.input_shape.rank)
        conv = ops.Conv.torch_module(conv_args, in_ch, False, False)
        if bn_args is None:
            return conv
        return Call("nn.Sequential", (conv, ops.BatchNorm.torch_module(bn_args, out_ch, False, False)))

    @staticmethod
    def _call_line(name: str, kind: str, src: str, dst: str, a: dict[str, str] | None = None) -> list[str]:
        """`dst = self.name(src)` (or the op's own form, given its arguments `a` as source
        text), split as ruff splits it when long (a module deep in a container:
        `self.classifier.high_classifier(...)`)."""
        op = ops.KINDS.get(kind)
        applied = op.torch_apply(f"self.{name}", src, a or {}) if op else f"self.{name}({src})"
        line = f"{dst} = {applied}"
        if len(INDENT2 + line) > LINE and applied == f"self.{name}({src})":
            return [f"{dst} = self.{name}(", f"    {src}", ")", *(op.torch_after(dst) if op else [])]
        return [line, *(op.torch_after(dst) if op else [])]


class _InitChain:
    """Alternatives in `__init__`: a conditional module whose lines are `self.b = None` then
    `if B:` and that directly follows another such (or its chain) under conditions that exclude
    each other is printed as the chain's `elif B:` (`else:` where one of them always holds), its
    `self.b = None` moved up with the chain's: `self.a = None`, `self.b = None`, `if A: ...
    elif B: ...`. Nothing else is printed between them, and their bodies assign only their own
    modules, which no condition reads."""

    def __init__(self) -> None:
        self.conditions: list[ast.expr] = []
        self.end = -1  # the length of `__init__` after the chain's last body
        self.nones = 0  # where the next `self.NAME = None` goes

    def add(self, init: list[str], condition: ast.expr | None, new: list[str]) -> list[str]:
        """`init` with `new` (an item's lines, under `condition`) appended, chained where it may be."""
        shaped = condition is not None and len(new) > 2 and new[0].endswith(" = None") and new[1].startswith(f"{INDENT2}if ")
        if not shaped:
            self.conditions, self.end = [], -1
            return init + new
        assert condition is not None
        if len(init) == self.end and all(logic.excludes(c, condition) for c in self.conditions):
            self.conditions.append(condition)
            closed = logic.exhaustive(self.conditions)
            guard = f"{INDENT2}else:" if closed else f"{INDENT2}el{new[1].lstrip()}"
            out = [*init[: self.nones], new[0], *init[self.nones :], guard, *new[2:]]
            self.nones += 1
            self.conditions, self.end = ([], -1) if closed else (self.conditions, len(out))
            return out
        self.conditions, self.nones = [condition], len(init) + 1
        out = init + new
        self.end = len(out)
        return out


def _chained(lines: list[str], chain: list[ast.expr], condition: ast.expr | None, new: list[str]) -> tuple[list[str], list[ast.expr]]:
    """Alternatives in `forward`: an item's lines `new` appended to `lines`, its guard (`if
    self.b is not None:`, `if self.use_b:`, which holds exactly where its condition does) made
    the `elif` of the chain whose body ends `lines` where its condition excludes each of
    `chain`'s (a module's `else:` where one of them always holds: a switch, `use_b`, stays
    read, as `__init__` sets it); the chain after it. Guards read only attributes, which no
    body assigns."""
    if condition is None or not new[0].startswith("if "):  # unconditional, or a line first (`out = x`)
        return lines + new, [condition] if condition is not None else []
    if chain and all(logic.excludes(c, condition) for c in chain):
        chain = [*chain, condition]
        if logic.exhaustive(chain) and new[0].endswith(" is not None:"):  # a switch (`use_b`) stays read
            return [*lines, "else:", *new[1:]], []
        return [*lines, "el" + new[0], *new[1:]], chain
    return lines + new, [condition]


def _stored(layer: SymLayer, key: str) -> str:
    return f"{path_variable(layer.name)}_{key}"  # an entry of a container: `m_up_size`


def _forward_args(layer: SymLayer, hoist: variables.Hoister, stored: bool) -> dict[str, str]:
    """The arguments of an expression op that are expressions of the block's parameters:
    `forward` cannot see those, so `__init__` stores each as `self.<layer>_<argument>`.
    stored=False: argument -> its source in `__init__`; True: argument -> the attribute."""
    if not ops.KINDS[layer.kind].EXPRESSION:
        return {}
    args = symbolic_args(layer, hoist)
    variable = [key for key, tree in layer.args if not isinstance(tree, ast.Constant)]
    return {key: f"self.{_stored(layer, key)}" if stored else args[key] for key in variable}


def more_inputs(item: object, step: variables.Step) -> tuple[str, ...]:
    """The tensors after the first that an instance of a block kind with several inputs, or a
    merge with a module (a weighted sum: `self.fuse(a, b)`), reads."""
    several = isinstance(item, SymBlock) and item.more_channels or isinstance(item, BlockInst) and item.more_in or is_merge(item)
    return step.srcs[1:] if several else ()


def moduleless(kind: str) -> bool:
    """A merge or an expression: code in `forward`, no module."""
    return ops.KINDS[kind].module_free()


def _named_conditions(items: tuple[SymItem, ...]) -> dict[str, SymLayer]:
    """The compound conditions (`stride == 1 and in_channels == out_channels`) of a block kind's
    switches (a conditional merge or expression, `use_NAME`) that other items of the kind are
    under too, by their source: each is computed once, as the switch, and the others read it."""
    written: dict[str, int] = {}
    for item in items:
        if isinstance(item.condition, ast.BoolOp):  # `depth > 1` reads as well as a name for it
            text = expr.to_python(item.condition)
            written[text] = written.get(text, 0) + 1
    named: dict[str, SymLayer] = {}
    for item in items:
        if isinstance(item, SymLayer) and moduleless(item.kind) and isinstance(item.condition, ast.BoolOp) and written[expr.to_python(item.condition)] > 1:
            named.setdefault(expr.to_python(item.condition), item)  # the first such switch; later ones read it
    return named
