"""IR -> Keras 3 source, laid out like keras.applications' resnet.py / densenet.py.

One function per block kind, `(x, in_channels, *, params..., name) -> x`, with
hierarchical layer names (`layer1_0_conv1`), stages as loops, channels_last.
Padding is always explicit: `ZeroPadding2D` then an unpadded layer, because
Keras' 'same' pads unevenly with stride 2 and would not match PyTorch.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from archc import ops
from archc.backends import common, decide, keras_idioms, keras_init, variables
from archc.backends.alternatives import chain_lines
from archc.backends.identity import IdentityMap, IdentitySet
from archc.backends.tables import keras_table_lines
from archc.code import INDENT, LINE, Call, call, render, render_applied
from archc.errors import SpecError
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    ParallelInst,
    StageInst,
    SymBlock,
    SymGroup,
    SymLayer,
    SymParallel,
    SymShortcut,
    SymStage,
    instance_name,
    is_merge,
    keras_name,
    path_reads,
    path_variable,
)
from archc.ops import init
from archc.ops.base import suffixed
from archc.spec import expr

I1 = " " * 4
# Module-level names of generated modules besides the block functions.
GLOBALS = (
    "math", "keras", "layers", "INPUT_SHAPE", "build_model", init.KERAS_HELPER, *common.helper_names("keras"),
    *sorted(expr.HELPER_DEFINITIONS),
)  # fmt: skip


def graph_globals(graph: Graph) -> tuple[str, ...]:
    """The initializer constants a module defines for the weighted op kinds it uses
    (`CONV_KERNEL_INITIALIZER`, or `KERNEL_INITIALIZER` where kinds share one): asked of those
    kinds only, so a check imports no other op."""
    tensors = [(kind.upper(), t.keras_arg.upper()) for kind in sorted(common.op_kinds(graph)) for t in ops.ALL[kind].TENSORS.values()]
    return tuple(dict.fromkeys(name for kind, arg in tensors for name in (f"{kind}_{arg}", arg)))


def module_names(graph: Graph) -> list[common.ModuleName]:
    """One function per block kind, named as the block (`build_model` builds the model)."""
    return [
        common.ModuleName(b.name, f"block {b.name!r}", f"function {b.name} in Keras", f"block.{b.name}") for b in graph.blocks
    ]


def validate(graph: Graph) -> None:
    """Keras names every layer after its node id (`layer1.0.conv1` -> `layer1_0_conv1`, with a
    `_pad` layer before padded convs and pools) and requires the names to be unique."""
    seen = {"input": "the input"}
    for node in graph.nodes:
        names = [keras_name(node.id)]
        if getattr(node.op, "padding", 0) or getattr(node.op, "ceil_mode", False):  # ceil_mode pads too
            names.append(names[0] + "_pad")
        if node.op.keras_output(names[0]) != names[0]:  # a layer after it (a transposed conv's crop, a subsample)
            names.append(node.op.keras_output(names[0]))
        for name in names:
            other = seen.get(name)
            if other is not None:
                clash = f"two layers are named {node.id!r}" if other == node.id else f"{node.id!r} and {other!r}"
                raise SpecError(f"{clash} would both be named {name!r} in Keras; rename one of them", node.where)
            seen[name] = node.id


def context(graph: Graph, memory_efficient: bool = False) -> dict[str, Any]:
    return KerasEmitter(graph).context()


def layer_lines(kind: str, a: dict[str, str], ctx: ops.KerasCtx, var: str, where: Any) -> list[tuple[Call, str]]:
    """Statements for one primitive layer applied to `var`; `ctx.name` is the layer name's source."""
    problem = ops.KINDS[kind].keras_problem(a, ctx)
    if problem:
        raise SpecError(problem, where)
    return [(layer, var) for layer in ops.KINDS[kind].keras_layers(a, ctx)]


def expression(kind: str, a: dict[str, str], name: str, var: str, nonneg: bool, where: Any, in_shape: Any = None) -> str:
    """An EXPRESSION op (no layer of its own) applied to `var`."""
    ctx = ops.KerasCtx(name, nonneg, in_shape)
    problem = ops.KINDS[kind].keras_problem(a, ctx)
    if problem:
        raise SpecError(problem, where)
    return ops.KINDS[kind].keras_expr(var, a, ctx)


def _split_call(head: str, applied: str) -> list[str]:
    """`head + applied` on one line, or split as ruff splits a long `Layer(...)([a, b])`: at
    the arguments of its last call."""
    one = head + applied
    cut = applied.rfind(")(")
    if len(one) <= LINE or cut < 0 or not applied.endswith(")"):
        return [one]
    indent = head[: len(head) - len(head.lstrip())]
    return [f"{head}{applied[: cut + 2]}", f"{indent}{INDENT}{applied[cut + 2 : -1]}", f"{indent})"]


def applied_lines(stmt: tuple[Call, str], indent: str = I1) -> list[str]:
    layer, var = stmt
    return render_applied(layer, indent, f"{var} = ", f"({var})")


def _renamed(item: Any, name: str) -> Any:
    return dataclasses.replace(item, name=name)


class KerasEmitter:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.helpers: set[str] = set()
        self.needs_math = False
        self.functions: set[str] = set()  # expression functions the module defines (make_divisible)
        self.x_is_input = False  # inside a block function: `x` still holds the block input
        self.reserved = frozenset(b.name for b in graph.blocks)  # the block functions: no variable may shadow one
        self.sigs = {b.name: dataclasses.replace(common.signature(b, graph), reserved=self.reserved) for b in graph.blocks}
        self.initializers = keras_init.Initializers(graph)  # a layer's initializer arguments; the module constants
        self.instances = {b.name: common.instances_of(graph, b.name) for b in graph.blocks}
        self.varying = decide.varying(graph, self.instances)
        self.decider = decide.Decider(())  # the bindings where the code being printed runs
        self.passed = IdentitySet()  # the block kind's layers an unconditional entry follows (keras_idioms.followed)
        self.fusions: IdentityMap[SymLayer] = IdentityMap()  # a conv or dense -> the activation it may take in (keras_idioms.fusions)
        self.fused: IdentityMap[str] = IdentityMap()  # the activations taken in (no layer of their own) -> the variable their conv wrote
        self.next_step: common.Step | None = None  # the step after the one being printed, in its list
        self.called: set[str] = set()  # the block kinds the printed block functions call
        self.absorbed = keras_idioms.absorbed(graph)  # model-level layers left out or taken in

    def block_function(self, block: BlockType) -> dict[str, Any]:
        """The block kind's function; a layer named like one of its parameters (timm's `se`
        layer of a block whose `se` is the SE reduction) gets a variable of its own (`out_se`)."""
        sig = self.sigs[block.name]
        outer = self.reserved
        self.reserved = outer | {"name", *sig.channels, *(n for n, _, _ in sig.params), *sig.flags}
        try:
            return self._block_function(block)
        finally:
            self.reserved = outer

    def _block_function(self, block: BlockType) -> dict[str, Any]:
        sig = self.sigs[block.name]
        self.decider = decide.Decider(decide.scopes(self.graph, self.instances[block.name], self.varying[block.name]))
        block = decide.block(block, self.decider)  # what its instances decide, printed decided
        self.called |= {item.block for item in decide.calls((*block.layers, *block.after))}
        added = block.connectivity == "skip" or bool(block.after and block.after[0].condition is None)  # the add reads the last
        self.passed = keras_idioms.followed(block.layers, added, frozenset(block.outputs)) | keras_idioms.followed(block.after, False, frozenset(block.outputs))
        read = decide.read_by_name(block)
        self.fusions = keras_idioms.fusions(block.layers, self.passed, read)
        self.fusions.update(keras_idioms.fusions(block.after, self.passed, read))
        self.fused = IdentityMap()
        hoist = common.Hoister(decide.live((*block.layers, *block.after)), sig.arguments(), in_channels=False)  # Keras layers infer them
        body: list[str] = []
        uses: dict[str, int] = {}
        skip = block.connectivity == "skip"
        shortcuts = common.emitted_shortcuts(block, sig) if skip else []

        def apply_shortcuts(point: str | None, var: str) -> list[str]:
            out: list[str] = []
            for sc, condition in shortcuts:
                if sc.input == point:
                    if condition is not None:
                        out.append(f"{I1}if {condition}:")
                    out += self._shortcut(sc, hoist, I1 + I1 if condition is not None else I1, var)
            return out

        reads_input = any("input" in item.inputs for item in (*block.layers, *block.after))
        returns: dict[str, str] = {}  # each layer's variable
        if skip:
            body.append(I1 + "identity = x")
        if reads_input:
            body.append(I1 + "inputs = x")
        var = "x"
        if common.sequential(block):  # numbered as its nn.Sequential in PyTorch: conditions and stages shift the numbers
            first = "inputs" if reads_input else "x"  # a resize may read the block input
            body += self._group(SymGroup("", block.layers, ast.Name("in_channels")), hoist, uses, block, "", I1, first)
        else:
            self.x_is_input = reads_input  # `x` still holds the block input (`inputs`)
            first = sig.variables[0] if len(block.inputs) > 1 else "inputs" if reads_input else "x"
            steps = list(variables.plan(block.layers, first, "x", set(), inputs=block.inputs, reserved=self.reserved, outputs=frozenset(block.outputs)))
            for step, self.next_step in zip(steps, [*steps[1:], None]):
                body += self._sym_layer(step, hoist, uses, block)
                var = step.dst
                returns.setdefault(step.item.name, step.dst)
                returns.update({f"{step.item.name}.{entry}": v for entry, v in step.taps})
                self.x_is_input &= step.dst != "x" and not isinstance(step.item, (SymGroup, SymParallel, SymStage))
                body += apply_shortcuts(step.item.name, var)
        body += apply_shortcuts(None, "identity")
        if skip:
            body += render_applied(call("layers.Add", name='f"{name}_add"'), I1, "x = ", f"([{var}, identity])")
            var = "x"
        steps = list(variables.plan(block.after, var, "x", set(), reserved=self.reserved))
        for step, self.next_step in zip(steps, [*steps[1:], None]):
            body += self._sym_layer(step, hoist, uses, block)
            var = step.dst
        if block.outputs:  # several: each kept in a variable of its own (a tap's too)
            var = ", ".join(returns[o] for o in block.outputs)
        body.append(f"{I1}return {var}")
        self.x_is_input = False
        return {
            "name": block.name,
            "doc": common.docstring(block.doc or f"The {block.name} block.", 4),
            "signature": [
                *(f"{v}: keras.KerasTensor" for v in sig.variables), *(f"{c}: int" for c in sig.channels), "*", *sig.parts(), "name: str",
            ],
            "body": chain_lines(keras_idioms.merge_guards(body)),  # alternatives: if/elif/else
            "returns": f"tuple[{', '.join(['keras.KerasTensor'] * len(block.outputs))}]" if block.outputs else "keras.KerasTensor",
        }

    def _sym_layer(
        self, step: common.Step, hoist: common.Hoister, uses: dict[str, int], block: BlockType, prefix: str = "", indent: str = I1,
    ) -> list[str]:  # fmt: skip
        """One item of a block kind applied to `step.srcs`, written to `step.dst` at `indent`;
        guarded by its condition (its body one level deeper, laid out for that depth)."""
        layer = step.item
        if decide.never(layer):  # no instance runs it: its variable holds what it passes on
            return [f"{indent}{step.dst} = {step.passthrough}"] * (step.dst != step.passthrough and not (step.dst == "x" and step.passthrough == "inputs" and self.x_is_input))
        self.needs_math |= any(expr.uses_math(t) for t in common.sym_trees(layer))
        self.functions |= common.helper_functions(layer)
        lines = hoist.definitions(variables.width_trees(layer), indent)
        src = step.srcs[0]
        merge = isinstance(layer, SymLayer) and layer.kind in common._MERGES
        at = indent
        if layer.condition is not None:
            if step.dst != step.passthrough and not (step.dst == "x" and step.passthrough == "inputs" and self.x_is_input):
                lines.append(f"{indent}{step.dst} = {step.passthrough}")
            lines.append(f"{indent}if {hoist.condition(layer.condition)}:")
            src = src if merge or src == "x" else step.dst  # `x` is read in place: nothing to route
            at = indent + I1
        uses[prefix + layer.name] = uses.get(prefix + layer.name, 0) + 1
        n = uses[prefix + layer.name]
        suffix = prefix + path_variable(layer.name if n == 1 else f"{layer.name}_{n}")  # an entry of a container: m_lat_0
        name = 'f"{name}_' + suffix + '"'
        if isinstance(layer, SymGroup):
            outer, self.decider = self.decider, self.decider.within(layer.condition)
            body = self._group(layer, hoist, uses, block, prefix, at, taps=dict(step.taps))
            self.decider = outer
        elif isinstance(layer, SymBlock):  # a function call: reads and writes any variable
            lead = (src, *step.srcs[1:]) if layer.more_channels else (src,)
            body = self._inner(layer, hoist.src(layer.in_channels), name, at, f"{step.targets} = ", hoist.src, lead=lead)
            src = step.dst
        elif isinstance(layer, SymParallel):
            body = self._parallel(common.Step(layer, step.srcs, step.dst, step.passthrough, False), hoist, uses, block, prefix, at, name)
            src = step.dst
        elif not isinstance(layer, SymLayer):
            body = self._nested(layer, hoist, name, at)
        elif merge:
            op = ops.KINDS[layer.kind]
            options = {key: expr.to_python(tree) for key, tree in layer.args}  # a weighted sum's
            call_, applied = op.keras_merge(ops.KerasCtx(name, False, None), list(step.srcs), list(layer.flat), options)  # type: ignore[attr-defined]
            self.helpers |= {call_.func} & set(common.helper_names("keras"))
            body = render_applied(call_, at, f"{step.dst} = ", f"({applied})")
            src = step.dst  # nothing to route
        else:
            args = {}
            for key, tree in layer.args:
                if key != "init":
                    args[key] = tree.value if key == "fn" else (hoist.src(tree) if key in ("filters", "units", "groups") else expr.to_python(tree))  # type: ignore[attr-defined]
            body = []
            if layer.kind in common._EXPRESSIONS:
                args = ops.KINDS[layer.kind].with_reads(args, step.srcs)
                body = _split_call(f"{at}{step.dst} = ", expression(layer.kind, args, name, src, layer.nonneg_in, layer.where or block.where))
            inits = ()
            if ops.ALL[layer.kind].TENSORS:
                inits = self.initializers(
                    layer.kind, layer.arg("init").value, args, expr.to_python(layer.in_channels), layer.where or block.where,  # type: ignore[attr-defined]
                    f"{block.name}_{prefix}{path_variable(layer.name)}",
                )
            ctx = ops.KerasCtx(name, layer.nonneg_in, None, inits, possible=lambda condition: decide.holds_somewhere(self.instances[block.name], condition))
            stmts = self._layer_lines(layer.kind, args, ctx, src, layer.where or block.where) if not body else []
            act = self.fusions.get(layer)
            activation = act and stmts[-1][0].func in keras_idioms.ACTIVATED and stmts[-1][0].guard is None and keras_idioms.activation_of(act)
            out = step.dst  # the variable the last layer writes
            if activation:  # keras.applications' `Conv2D(..., activation="relu")`: the activation's layer is left out
                stmts[-1] = (keras_idioms.with_activation(stmts[-1][0], activation), stmts[-1][1])
                after = self.next_step
                if after is not None and after.item is act and layer.condition is None:  # straight into the activation's variable
                    out = after.dst
                self.fused[act] = out
            if layer in self.fused:  # its conv or dense applied it
                stmts = []
                if self.fused[layer] != step.dst and src != step.dst:
                    body.append(f"{at}{step.dst} = {src}")
                elif layer.condition is not None:
                    lines.pop()  # the `if` over nothing
            if layer in self.passed and stmts and all(stmt.func == "layers.Identity" for stmt, _ in stmts):
                # computes nothing, holds no weights, and no block output is its tensor: left out
                # (a PyTorch nn.Identity keeps its place in a numbered list; a Keras name needs none)
                stmts = []
                if src != step.dst:
                    body.append(f"{at}{step.dst} = {src}")
                elif layer.condition is not None:
                    lines.pop()  # the `if` over nothing
            for k, (stmt, _) in enumerate(stmts):
                if stmt.guard is not None and decide.holds_everywhere(self.instances[block.name], stmt.guard):
                    stmt = stmt.when(None)  # e.g. a padding of (kernel - 1) // 2 where every kernel is 3 or 5
                if k == 0 and stmt.guard is not None and src != step.dst:  # the later layers read step.dst either way
                    body.append(f"{at}{step.dst} = {src}")
                    src = step.dst
                body += render_applied(stmt, at, f"{out if k == len(stmts) - 1 else step.dst} = ", f"({src if k == 0 else step.dst})")
            src = step.dst
        if isinstance(layer, (SymGroup, SymStage)):
            # blocks, stages and lists work on `x`: route the input in and the output out
            routed = src != "x" and not (src == "inputs" and self.x_is_input)
            body = [f"{at}x = {src}"] * routed + body + [f"{at}{step.dst} = x"] * (step.dst != "x")
        return lines + body

    def _layer_lines(self, kind: str, a: dict[str, str], ctx: ops.KerasCtx, var: str, where: Any) -> list[tuple[Call, str]]:
        """layer_lines, noting the helper classes (an op's HELPERS) its layers are."""
        lines = layer_lines(kind, a, ctx, var, where)
        self.helpers |= {layer.func for layer, _ in lines} & set(common.helper_names("keras"))
        return lines

    def _group(
        self, group: SymGroup, hoist: common.Hoister, uses: dict[str, int], block: BlockType, prefix: str, indent: str,
        first: str = "x", taps: dict[str, str] | None = None,
    ) -> list[str]:  # fmt: skip
        """A list inside a block kind, inlined on `x`; entries are numbered as the PyTorch
        nn.Sequential numbers them (conditional ones count only where they hold); `taps`: entries
        read from outside the list, each kept in its variable (`body_2 = x`)."""
        lines: list[str] = []
        terms: list[str] = []  # the positions of earlier entries that are not one each: int(condition), a stage's count
        fixed = 0  # the earlier entries that are one each (unconditional); one that never runs is none
        inner = f"{prefix}{path_variable(group.name)}_" if group.name else prefix  # a block kind that is a sequence: its own numbering
        steps = list(variables.plan(group.children, first, "x", set(), reserved=self.reserved))
        for k, child_step in enumerate(steps):
            child = child_step.item
            self.next_step = steps[k + 1] if k + 1 < len(steps) else None
            if decide.never(child):  # numbered as lowering numbers it: no number, its tensor its input's
                lines += self._sym_layer(child_step, hoist, uses, block, inner, indent)
                continue
            index = common.position(terms, fixed)
            if not index.isdigit():  # the same number in every instance where the entry runs: that number
                index = self._decided_index(index, child.condition)
            condition = hoist.condition(child.condition)
            if common.spliced(child, group):
                count = expr.to_python(child.repeat)
                if condition:
                    lines += [f"{indent}if {condition}:", *self._spliced(child, hoist, inner, index, indent + I1)]
                else:
                    lines += self._spliced(child, hoist, inner, index, indent)
                terms.append(f"({count}) * int({condition})" if condition else count)
                continue
            if group.positional and index != child.name:  # the entries before it that run shift its number
                if index.isdigit():  # an entry before it with this number never runs where it does: no `_2` suffix
                    uses.pop(inner + index, None)
                renamed = _renamed(child, index if index.isdigit() else "{" + index + "}")
                if child in self.passed:
                    self.passed.add(renamed)
                if child in self.fused:
                    self.fused[renamed] = self.fused[child]
                if child in self.fusions:
                    self.fusions[renamed] = self.fusions[child]
                child = renamed
                child_step = common.Step(child, child_step.srcs, child_step.dst, child_step.passthrough, child_step.inplace)
            lines += self._sym_layer(child_step, hoist, uses, block, inner, indent)
            if taps and child.name in taps:
                lines.append(f"{indent}{taps[child.name]} = {child_step.dst}")
            if condition is not None:
                terms.append(f"int({condition})")
            else:
                fixed += 1
        return lines

    def _decided_index(self, index: str, condition: ast.expr | None) -> str:
        """An entry's position (`int(expanded != in_channels) + 1`) as a number where every
        instance that runs the entry gives it the same one, else with its decided conditions."""
        here = self.decider.within(condition)
        tree = expr.parse(index)
        value = here.decided(tree)
        return str(value) if type(value) is int else expr.to_python(here.tree(tree))

    def _parallel(
        self, step: common.Step, hoist: common.Hoister, uses: dict[str, int], block: BlockType, prefix: str, indent: str, name: str,
    ) -> list[str]:  # fmt: skip
        """A module list: each path applied to its input and collected in a list named after
        it, then merged; layer names follow the PyTorch modules (`{name}_convs_0_1`)."""
        layer = step.item
        assert isinstance(layer, SymParallel)
        outs = f"{prefix}{layer.name}" if layer.name.isdigit() else common.tensor_variable(layer.name, self.reserved)  # a row of a grid: fuse_1
        srcs = list(step.srcs)
        lines: list[str] = []
        taken = {"x", "inputs", "identity", *(common.tensor_variable(i.name, self.reserved) for i in (*block.layers, *block.after))}
        while outs in taken - {common.tensor_variable(layer.name, self.reserved)}:  # a row of a grid (`0`): not a layer's variable
            outs += "_"
        if "x" in srcs and any(isinstance(path, (SymGroup, SymParallel)) for path in layer.children):  # a list works on `x`
            keep = f"{outs}_input"
            while keep in taken:
                keep += "_"
            lines.append(f"{indent}{keep} = x")
            srcs = [keep if src == "x" else src for src in srcs]
        self.x_is_input = False  # the paths write `x`
        lines.append(f"{indent}{outs} = []")
        for path, read in zip(layer.children, path_reads(layer.children, srcs)):  # a row of a grid reads several
            lines += self._sym_layer(common.Step(path, read, "x", read[0], False), hoist, uses, block, f"{prefix}{path_variable(layer.name)}_", indent)
            lines.append(f"{indent}{outs}.append(x)")
        each = [f"{outs}[{k}]" for k in range(len(layer.children))]
        merge, applied = ops.KINDS[layer.merge].keras_merge(ops.KerasCtx(name, False, None), each, list(layer.flat), {})  # type: ignore[attr-defined]
        if applied == f"[{', '.join(each)}]":
            applied = outs
        return lines + render_applied(merge, indent, f"{step.dst} = ", f"({applied})")

    def _spliced(self, sym: SymStage, hoist: common.Hoister, inner: str, index: str, indent: str) -> list[str]:
        """An unnamed stage whose instances are entries of the enclosing sequence (common.spliced):
        named on from its position `index`, as the PyTorch nn.Sequential numbers them."""
        start = expr.parse(index)
        first = index if index.isdigit() else "{" + index + "}"
        lines = self._inner(sym.first, hoist.src(sym.first.in_channels), f'f"{{name}}_{inner}{first}"', indent, "x = ")
        if common.later_loop(sym).startswith("for i"):  # the arguments read the instance index: loop over it
            lines.append(f"{indent}{common.later_loop(sym)}:")
            position = expr.to_python(expr.fold(ast.BinOp(ast.Name("i"), ast.Add(), start)))
            return lines + self._inner(sym.rest, expr.to_python(sym.rest.in_channels), f'f"{{name}}_{inner}{{{position}}}"', indent + I1, "x = ")
        bounds = [expr.fold(ast.BinOp(start, ast.Add(), ast.Constant(1))), expr.fold(ast.BinOp(start, ast.Add(), sym.repeat))]
        lines.append(f"{indent}for i in range({', '.join(expr.to_python(b) for b in bounds)}):")
        return lines + self._inner(sym.rest, expr.to_python(sym.rest.in_channels), f'f"{{name}}_{inner}{{i}}"', indent + I1, "x = ")

    def _nested(self, sym: SymBlock | SymStage, hoist: common.Hoister, name: str, indent: str) -> list[str]:
        """A block or stage inside a block kind, applied to `x` at `indent`; layer names continue the outer `name`."""
        prefix = name[:-1]
        if isinstance(sym, SymBlock):
            return self._inner(sym, hoist.src(sym.in_channels), prefix + '"', indent, "x = ", hoist.src)
        key = common.stage_key(sym.names)[2:-1]  # the pattern inside f"..."
        count = expr.to_python(sym.repeat)
        lines: list[str] = []
        if sym.connectivity == "dense":
            lines.append(f"{indent}for i in range({count}):")
            name = f'{prefix}_{key}"'
            lines += self._inner(sym.rest, expr.to_python(sym.rest.in_channels), name, indent + I1, "y = ")
            concat = call("layers.Concatenate", name=suffixed(name, "_concat"))
            return lines + render_applied(concat, indent + I1, "x = ", "([x, y])")
        first_key = instance_name(sym.names, 0)
        lines += self._inner(sym.first, hoist.src(sym.first.in_channels), f'{prefix}_{first_key}"', indent, "x = ")
        lines.append(f"{indent}for i in range(1, {count}):")
        return lines + self._inner(sym.rest, expr.to_python(sym.rest.in_channels), f'{prefix}_{key}"', indent + I1, "x = ")

    def _inner(
        self, sym: SymBlock, in_channels: str, name: str, indent: str, head: str, src: Any = expr.to_python, lead: tuple[str, ...] = ("x",),
    ) -> list[str]:  # fmt: skip
        c = common.inner_call(sym.block, sym, self.sigs[sym.block], in_channels, lead=lead, src=src)
        return render(Call(c.func, (*c.args, f"name={name}")), indent, head)

    def _shortcut(self, sc: SymShortcut, hoist: common.Hoister, indent: str, src: str) -> list[str]:
        """`identity = ...(src)`; layer names follow the IR's node ids (`downsample_0`, `downsample_1`)."""
        in_ch, out_ch, stride = hoist.src(sc.in_channels), hoist.src(sc.out_channels), expr.to_python(sc.stride)
        base = 'f"{name}_' + sc.name
        if sc.kind == "option_a":
            self.helpers.add("PadShortcut")
            return render_applied(call("PadShortcut", stride, f"{out_ch} - {in_ch}", name=base + '"'), indent, "identity = ", f"({src})")
        conv_args, bn_args = common.projection_args(sc, hoist, self.graph.input_shape.rank)
        conv_kind, bn_kind = ops.Conv.kind, ops.BatchNorm.kind
        inits = self.initializers(conv_kind, self.graph.init(conv_kind), conv_args, in_ch, self.graph.locate(f"defaults.{conv_kind}.init"), "")
        (conv,) = ops.Conv.keras_layers(conv_args, ops.KerasCtx(base + ('_0"' if bn_args else '"'), False, None, inits))
        lines = render_applied(conv, indent, "identity = ", f"({src})")
        if bn_args is not None:
            inits = self.initializers(bn_kind, self.graph.init(bn_kind), bn_args, out_ch, self.graph.locate(f"defaults.{bn_kind}.init"), "")
            (bn,) = ops.BatchNorm.keras_layers(bn_args, ops.KerasCtx(base + '_1"', False, None, inits))
            lines += render_applied(bn, indent, "identity = ", "(identity)")
        return lines

    # --- the model ----------------------------------------------------------------------------

    def model_body(self) -> list[str]:
        lines = [I1 + 'inputs = keras.Input(shape=INPUT_SHAPE, name="input")']
        outputs = frozenset(o.item for o in self.graph.outputs)
        body = self.graph.flat_body()
        first = "inputs" if common.reads_input(body) or "input" in outputs else "x"
        if first == "x":
            lines.append(I1 + "x = inputs")
        var = "x"
        steps = variables.plan(body, first, "x", set(), outputs=outputs, reserved=self.reserved)
        shapes = common.model_shapes(self.graph)
        held = "x"  # the variable whose tensor `x` holds too (after `conv2_2 = x`), None where unknown
        for step in steps:
            item = step.item
            if is_merge(item):
                ctx = ops.KerasCtx(common.literal(keras_name(item.name)), False, None)
                flats = [not shapes[n].spatial for n in item.inputs]
                options = {key: common.literal(value) for key, value in item.op.values().items()}  # type: ignore[union-attr]
                merge, applied = item.op.keras_merge(ctx, list(step.srcs), flats, options)  # type: ignore[union-attr]
                self.helpers |= {merge.func} & set(common.helper_names("keras"))
                lines += render_applied(merge, I1, f"{step.dst} = ", f"({applied})")
                held = "x" if step.dst == "x" else held  # it writes its variable only
            elif isinstance(item, LayerInst) and item.op.READS:  # reads other tensors: their variables
                args = {k: common.literal(v) for k, v in item.op.values().items() if v is not None}
                args = item.op.with_reads(args, step.srcs)
                shown = common.literal(keras_name(item.name))
                lines += _split_call(f"{I1}{step.dst} = ", expression(item.op.kind, args, shown, step.srcs[0], item.nonneg_in, item.where, item.in_shape))
                held = "x" if step.dst == "x" else held
            elif isinstance(item, ParallelInst):
                lines += self._model_parallel(item, step)
                held = "x" if step.dst == "x" else None  # its paths ran on `x`
            else:
                several = isinstance(item, BlockInst) and bool(item.more_in)  # reads its tensors in place
                if step.srcs[0] not in ("x", held) and not several:
                    lines.append(f"{I1}x = {step.srcs[0]}")
                held = step.dst
                if step.taps:
                    lines += self._tapped(item, dict(step.taps))  # type: ignore[arg-type]
                else:  # an entry of a `modules:` container is named by its path (`fpn_inner_blocks_0`)
                    lead = step.srcs if several else ("x",)
                    head = ", ".join(("x", *step.unpacked))  # a kind with several outputs: the later ones too
                    lines += self._items((item,), "", as_name=keras_name(item.name) if "." in item.name else None, lead=lead, head=head)
                if step.dst != "x":
                    lines.append(f"{I1}{step.dst} = x")
            var = step.dst
        returned = common.returned(self.graph, steps, first)
        lines += render(call("keras.Model", "inputs", returned or var, name=common.literal(self.graph.name)), I1, "return ")
        return lines

    def _model_parallel(self, item: ParallelInst, step: common.Step) -> list[str]:
        """A module list at model level: each path on `x` from its input, collected in a list
        named after it, then merged; layer names follow the PyTorch modules (`convs_0_1`)."""
        outs = common.tensor_variable(item.name, self.reserved)
        srcs = list(step.srcs)
        lines: list[str] = []
        taken = {"x", "inputs", *(common.tensor_variable(i.name, self.reserved) for i in self.graph.flat_body()), *srcs}
        while outs in taken - {common.tensor_variable(item.name, self.reserved)} or outs in srcs:  # a row of a grid: not another tensor's variable
            outs += "_"
        if "x" in srcs:  # the paths write `x`
            keep = f"{outs}_input"
            while keep in taken:
                keep += "_"
            lines.append(f"{I1}{keep} = x")
            srcs = [keep if src == "x" else src for src in srcs]
        lines.append(f"{I1}{outs} = []")
        for path, read in zip(item.items, path_reads(item.items, srcs)):
            if isinstance(path, ParallelInst):  # a row of a grid: its paths read their own tensors
                row = dataclasses.replace(path, name=f"{item.name}.{path.name}")
                lines += self._model_parallel(row, common.Step(row, read, "x", read[0], False))
            else:
                lines.append(f"{I1}x = {read[0]}")
                lines += self._items((path,), keras_name(item.name) + "_", as_name=path.name)
            lines.append(f"{I1}{outs}.append(x)")
        each = [f"{outs}[{k}]" for k in range(len(item.items))]
        flats = [not path.out_shape.spatial for path in item.items]
        merge, applied = ops.KINDS[item.merge].keras_merge(ops.KerasCtx(common.literal(keras_name(item.name)), False, None), each, flats, {})  # type: ignore[attr-defined]
        if applied == f"[{', '.join(each)}]":
            applied = outs
        return lines + render_applied(merge, I1, f"{step.dst} = ", f"({applied})")

    def _items(
        self, items: tuple[Inst, ...], prefix: str, as_name: str | None = None, uses: dict[str, int] | None = None,
        lead: tuple[str, ...] = ("x",), head: str = "x",
    ) -> list[str]:  # fmt: skip
        """The items on `x`; `lead`: the tensors a block instance reads (its several inputs); `head`:
        what it assigns (its several outputs)."""
        lines: list[str] = []
        uses = {} if uses is None else uses  # a list written in pieces (_tapped) shares one
        for item in items:
            uses[item.name] = uses.get(item.name, 0) + 1
            name = as_name or (item.name if uses[item.name] == 1 else f"{item.name}_{uses[item.name]}")
            full = prefix + name
            if isinstance(item, GroupInst) and item.positional:
                looped = keras_table_lines(self, item, full + "_", I1, self._rolled) if item.tables else None
                lines += looped if looped is not None else self._rolled(item.items, full + "_")
            elif isinstance(item, GroupInst):
                lines += self._items(item.items, full + "_")
            elif isinstance(item, LayerInst) and item.output in self.absorbed.gone:
                continue  # an Identity, or an activation its conv or dense applies
            elif isinstance(item, LayerInst):
                exposed = dict(item.exposed)
                values = item.op.values()
                args = {k: exposed.get(k) or (v if k == "fn" else common.literal(v)) for k, v in values.items() if v is not None and k != "init"}
                if item.op.EXPRESSION:
                    lines.append(f"{I1}x = {expression(item.op.kind, args, common.literal(full), 'x', item.nonneg_in, item.where, item.in_shape)}")
                    continue
                inits = ()
                if item.op.TENSORS:
                    inits = self.initializers(item.op.kind, values["init"], args, common.literal(item.in_shape.c), item.where, full)
                ctx = ops.KerasCtx(common.literal(full), item.nonneg_in, item.in_shape, inits)
                stmts = self._layer_lines(item.op.kind, args, ctx, "x", item.where)
                if item.output in self.absorbed.activation:  # keras.applications' Conv2D(..., activation="relu")
                    stmts[-1] = (keras_idioms.with_activation(stmts[-1][0], self.absorbed.activation[item.output]), stmts[-1][1])
                for stmt in stmts:
                    lines += applied_lines(stmt)
            elif isinstance(item, BlockInst):
                lines += self._instances([item], item.block, None, full, lead=lead, head=head)
            else:
                assert isinstance(item, StageInst)
                lines += self._instances(list(item.instances), item.block, item, full + "_")
        return lines

    def _tapped(self, group: GroupInst, taps: dict[str, str]) -> list[str]:
        """A group whose entries are read from outside it: in pieces that end at each such entry,
        whose tensor gets its variable (`backbone_layer3 = x`)."""
        lines: list[str] = []
        prefix = group.name + "_"
        start = 0
        uses: dict[str, int] = {}
        for end, child in enumerate(group.items, start=1):
            if child.name not in taps and end < len(group.items):
                continue
            if group.positional:
                lines += self._rolled(group.items[start:end], prefix, start)
            else:
                lines += self._items(group.items[start:end], prefix, uses=uses)
            if child.name in taps:
                lines.append(f"{I1}{taps[child.name]} = x")
            start = end
        return lines

    def _rolled(self, items: tuple[Inst, ...], prefix: str, start: int = 0) -> list[str]:
        """A numbered list; consecutive instances of one block kind become loops where their
        arguments allow (named by position, as the PyTorch nn.Sequential numbers them; the
        list's entries from `start` on)."""
        lines: list[str] = []
        k = 0
        while k < len(items):
            item = items[k]
            end = k + 1
            if isinstance(item, BlockInst):
                while end < len(items) and isinstance(items[end], BlockInst) and items[end].block == item.block:  # type: ignore[union-attr]
                    end += 1
                chunk = list(items[k:end])
                stage = common.as_stage(tuple(chunk))  # type: ignore[arg-type]
                lines += self._instances(chunk, item.block, stage, prefix, offset=start + k)  # type: ignore[arg-type]
            else:
                lines += self._items((item,), prefix, as_name=item.name)
            k = end
        return lines

    def _instances(
        self, insts: list[BlockInst], block_name: str, stage: StageInst | None, prefix: str, offset: int = 0,
        lead: tuple[str, ...] = ("x",), head: str = "x",
    ) -> list[str]:  # fmt: skip
        block = self.graph.block(block_name)
        sig = self.sigs[block_name]
        rows = [common.instance_values(inst, block, sig) for inst in insts]
        dense = stage is not None and stage.connectivity == "dense"
        lines: list[str] = []
        for run in common.runs(rows):
            run = common.Run(run.start + offset, run.count, run.values)
            looped = run.count > 2
            singles = [run] if looped else [
                common.Run(run.start + k, 1, tuple((v + s * k if s else v, 0) for v, s in run.values))  # type: ignore[operator]
                for k in range(run.count)
            ]
            for r in singles:
                var = "i" if looped else "_"
                if stage is None:
                    name_src = common.literal(prefix)
                else:
                    name_src, _ = common.name_pattern(stage, r, var, "_", prefix)
                c = common.instance_call(block_name, block, sig, r, var, lead=lead)
                c = Call(c.func, (*c.args, f"name={name_src}"))
                indent = I1 + I1 if looped else I1
                if looped:
                    bounds = f"{r.start}, {r.start + r.count}" if r.start else f"{r.count}"
                    lines.append(f"{I1}for i in range({bounds}):")
                lines += render(c, indent, "y = " if dense else f"{head} = ")
                if dense:
                    lines += render_applied(call("layers.Concatenate", name=suffixed(name_src, "_concat")), indent, "x = ", "([x, y])")
        return lines

    def context(self) -> dict[str, Any]:
        unused = common.inline_only(self.graph) | common.unreferenced(self.graph)  # their layers are written out in place
        blocks = [self.block_function(b) for b in self.graph.blocks if b.name not in unused]
        # a kind without instances that no printed function calls any more (its call was a branch that never runs): no function
        blocks = [f for f in blocks if self.instances[f["name"]] or f["name"] in self.called]
        body = self.model_body()
        self.helpers |= common.expression_helpers(self.graph, "keras") | self.initializers.helpers
        shape = (*self.graph.input_shape.size, self.graph.input_shape.c)  # channels last, at every rank
        exposed = [f"{n}: {type(v).__name__} = {common.literal(v)}" for n, v in self.graph.exposed]
        return {
            "doc": common.docstring(self.graph.doc or self.graph.name, 0),
            "header": common.header(self.graph, "keras"),
            "stdlib_imports": ["import math"] if self.needs_math or self.initializers.needs_math else [],
            "input_shape": common.literal(shape),
            "input_layout": common.input_layout(self.graph.input_shape.rank, "keras"),
            "functions": sorted(self.functions),
            "helpers": sorted(self.helpers),
            "constants": [line for name, config in self.initializers.constants.items() for line in init.config_source(config, "", f"{name} = ")],
            "blocks": blocks,
            "params": exposed,
            "body": body,
        }
