"""IR -> PyTorch source, laid out like torchvision's resnet.py / densenet.py.

One `nn.Module` class per block kind (archc.backends.torch_blocks), stages as
`nn.Sequential` (or a `DenseStage` for dense connectivity) built in loops, a flat
one-op-per-line `forward`, and module names taken from the spec so state_dict keys match.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

from archc import ops
from archc.backends import common, template_dir, variables
from archc.backends.tables import TableEmission
from archc.backends.torch_blocks import (
    INDENT2,
    BlockEmission,
    layer_module,
    moduleless,
    more_inputs,
)
from archc.backends.torch_init import InitEmission
from archc.backends.torch_lists import (
    ListEmission,
    container_module,
    flattened,
    inst_rows,
    ordered_dict,
    parallel_lines,
    sequential_keys,
    tapped_calls,
)
from archc.code import Call, Code, Gen, Seq, call, render
from archc.ir.graph import (
    BlockInst,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    ParallelInst,
    StageInst,
    SymLayer,
    instance_name,
    is_merge,
    merged_containers,
)
from archc.ops import init
from archc.spec import expr

# Module-level names of generated modules besides the block classes.
GLOBALS = (
    "math", "OrderedDict", "Iterator", "torch", "F", "Tensor", "nn", "INPUT_SHAPE", "DenseStage", "build_model", init.TORCH_HELPER,
    *common.helper_names("torch"), *sorted(expr.HELPER_DEFINITIONS),
)  # fmt: skip


def module_names(graph: Graph) -> list[common.ModuleName]:
    """The model's class and one class per block kind (`class:`, else CamelCase: `basic` -> `Basic`),
    each located at its `class:` where it has one."""
    model = common.class_of(graph)
    key = "class" if graph.class_name else "name"
    names = [common.ModuleName(model, f"model {graph.name!r}", f"class {model} in PyTorch", key)]
    for block in graph.blocks:
        cls = common.class_of(block)
        key = f"block.{block.name}.class" if block.class_name else f"block.{block.name}"
        names.append(common.ModuleName(cls, f"block {block.name!r}", f"class {cls} in PyTorch", key))
    return names


def graph_globals(graph: Graph) -> tuple[str, ...]:
    """None depends on the ops it uses: GLOBALS holds them all."""
    return ()


def validate(graph: Graph) -> None:
    """PyTorch expresses every graph lowering accepts."""


def context(graph: Graph, memory_efficient: bool = False) -> dict[str, Any]:
    return TorchEmitter(graph, memory_efficient).context()


def concrete_args(op: ops.Op, exposed: dict[str, str]) -> dict[str, str]:
    """Arguments of a concrete op as literals (or the build_model argument that sets them)."""
    out = {}
    for key, value in op.values().items():
        if value is None or key == "init":  # initialisation: the model's init loop (init_lines)
            continue
        out[key] = exposed.get(key) or (value if key == "fn" else common.literal(value))
    return out


@functools.cache
def _modules_read(helper: str) -> frozenset[str]:
    """The modules a helper's code reads by name (`torch`, `F`): its template
    (templates/torch/NAME.py.j2) is plain Python, so it is parsed, not searched as text."""
    tree = ast.parse((template_dir() / "torch" / f"{helper}.py.j2").read_text())
    return frozenset(n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name))

@functools.cache
def _reads_tensor(helper: str) -> bool:
    """Whether a helper's code names `Tensor` (its annotations)."""
    tree = ast.parse((template_dir() / "torch" / f"{helper}.py.j2").read_text())
    return any(isinstance(n, ast.Name) and n.id == "Tensor" for n in ast.walk(tree))


class TorchEmitter(BlockEmission, InitEmission, ListEmission, TableEmission):
    def __init__(self, graph: Graph, memory_efficient: bool = False):
        self.graph = graph
        self.memory_efficient = memory_efficient  # the default of build_model(memory_efficient=...)
        self.helpers: set[str] = set()
        self.needs_math = False
        self.functions: set[str] = set()  # expression functions the module defines (make_divisible)
        self.needs_ordered_dict = False
        self.needs_checkpoint = False
        self.annotated: set[str] = set()  # the lists __init__ has annotated (TableEmission)
        self.sigs = {b.name: common.signature(b, graph) for b in graph.blocks}
        self.names = {b.name: common.class_of(b) for b in graph.blocks}
        in_dense, elsewhere = _dense_usage(graph)
        # Kinds that dense stages call with the list of earlier features; `standalone`
        # ones are also called on a tensor outside dense stages.
        self.dense_kinds = in_dense
        self.standalone = in_dense & elsewhere
        # Dense kinds whose concat -> ... -> first conv can be recomputed in backward.
        self.checkpointed = {
            b.name for b in graph.blocks
            if b.name in in_dense and b.connectivity == "none"
            and all(isinstance(x, SymLayer) and not moduleless(x.kind) and x.condition is None for x in b.layers)
            and any(x.kind == "conv" for x in b.layers)
        }

    # --- the model ------------------------------------------------------------------------

    def model(self) -> dict[str, Any]:
        if self.graph.numbered:  # an nn.Sequential subclass: its children numbered, no forward
            children = Call("super().__init__", tuple(self._rolled(self.graph.body, inplace_first=False, inlined=self.graph.inlined)))
            return {**self._model_class([*render(children, INDENT2), *self.init_lines(INDENT2)], []), "base": "nn.Sequential"}
        init: list[str] = []
        forward: list[str] = []
        defined: set[str] = set()
        first = "x"
        outputs = frozenset(o.item for o in self.graph.outputs)
        body = self.graph.flat_body()
        if common.reads_input(body) or "input" in outputs:
            forward.append("inputs = x")
            first = "inputs"
        var = first
        steps = variables.plan(body, first, "x", set(), keep_first=first == "inputs", outputs=outputs)
        containers = merged_containers(self.graph.body)
        for step in steps:
            item = step.item
            var = step.dst
            if is_merge(item) and item.op.module_free():  # type: ignore[union-attr]
                op = item.op  # type: ignore[union-attr]
                flats = [not s.spatial for s in self._input_shapes(item)]
                forward += op.torch_merge_lines(step.dst, list(step.srcs), flats, op.values())
                continue
            top = item.name.split(".")[0]
            if top in containers and top not in defined:  # its entries are defined with it
                defined.add(top)
                init += render(self._module(containers[top], inplace=False), INDENT2, f"self.{top} = ")
            if isinstance(item, ParallelInst):
                if top not in containers:
                    init += render(self._module(item, inplace=False), INDENT2, f"self.{item.name} = ")
                flats = tuple(not path.out_shape.spatial for path in item.items)
                taken = frozenset({"x", "inputs", *(variables.tensor_variable(i.name) for i in body), *(v for s in steps for v in s.srcs)})
                forward += parallel_lines(common.module_path(item.name), item.merge, flats, step.srcs, step.dst, INDENT2, inst_rows(item), taken)
                continue
            if isinstance(item, LayerInst) and item.op.EXPRESSION:  # no module
                args = item.op.with_reads(concrete_args(item.op, dict(item.exposed)), step.srcs)
                forward += [line[len(INDENT2):] for line in render(item.op.torch_expr(step.srcs[0], args), INDENT2, f"{step.dst} = ")]
                continue
            tapped = frozenset(entry for entry, _ in step.taps)
            src = ", ".join((step.srcs[0], *more_inputs(item, step)))
            a = concrete_args(item.op, dict(item.exposed)) if isinstance(item, LayerInst) else None
            if top in containers:  # an entry of a `modules:` container, defined with it
                forward += self._call_line(common.module_path(item.name), _kind(item), src, step.targets, a)
                continue
            if item.name not in defined:
                defined.add(item.name)
                looped = self.table_lines(item, f"self.{item.name}", INDENT2, tapped) if isinstance(item, GroupInst) and item.tables else None
                init += looped if looped is not None else render(self._module(item, inplace=step.inplace, tapped=tapped), INDENT2, f"self.{item.name} = ")
            if step.taps:
                forward += tapped_calls(item, step)  # type: ignore[arg-type]
                continue
            forward += self._call_line(item.name, _kind(item), src, step.targets, a)
        returned = common.returned(self.graph, steps, first)
        forward += [line[len(INDENT2):] for line in render(returned or var, INDENT2, "return ")]
        init += self.init_lines(INDENT2)
        return {**self._model_class(init, forward), "base": "nn.Module"}

    def _model_class(self, init: list[str], forward: list[str]) -> dict[str, Any]:
        signature = [f"{n}: {type(v).__name__} = {common.literal(v)}" for n, v in self.graph.exposed]
        call_args = [f"{n}={n}" for n, _ in self.graph.exposed]
        if self.checkpointed:
            signature.append(f"memory_efficient: bool = {self.memory_efficient}")
            call_args.append("memory_efficient=memory_efficient")
        return {
            "name": common.class_of(self.graph),
            "doc": common.docstring(self.graph.doc or self.graph.name, 4),
            "signature": signature,
            "init": init,
            "forward": forward,
            "returns": "dict[str, Tensor]" if self.graph.outputs else "Tensor",
            "call_args": call_args,
        }

    def _input_shapes(self, item: Inst) -> list[Any]:
        """Shapes of the model-level tensors a merge reads."""
        shapes = common.model_shapes(self.graph)
        return [shapes[n] for n in item.inputs]

    def _module(self, item: Inst, inplace: bool, tapped: frozenset[str] = frozenset()) -> Code:
        if isinstance(item, LayerInst):
            module = layer_module(item.op.kind, concrete_args(item.op, dict(item.exposed)), common.literal(item.in_shape.c), not item.in_shape.spatial, inplace)
            return module
        if isinstance(item, BlockInst):
            block = self.graph.block(item.block)
            sig = self.sigs[item.block]
            (run,) = common.runs([common.instance_values(item, block, sig)])
            return common.instance_call(self.names[item.block], block, sig, run, "_")
        if isinstance(item, StageInst):
            return self._stage(item)
        if isinstance(item, ParallelInst):  # an nn.ModuleList; nothing else reads a path's input
            return call("nn.ModuleList", Seq(tuple(flattened(_kind(path), self._module(path, inplace=False)) for path in item.items)))
        assert isinstance(item, GroupInst)
        self.needs_ordered_dict |= not item.positional
        if item.dataflow:  # entries called one by one
            return container_module(item, lambda child: self._module(child, inplace=False))
        entries: list[tuple[str | None, Code]] = []  # (key, module), or (None, a comprehension of a stage's)
        named = dict(item.named)
        skip = 0
        safe = False  # the list's input may be read elsewhere; an entry's output is its own unless it aliases
        for k, (child, key) in enumerate(zip(item.items, sequential_keys(item))):
            if k in named:  # an unnamed stage with `names:`: its instances, alike ones in a loop
                entries += self._stage_entries(named[k])
                self.needs_ordered_dict = True
                skip = len(named[k].instances)
            if skip:
                skip -= 1
            else:
                module = self._module(child, inplace=safe)
                if _kind(child) == "global_avgpool":
                    module = call("nn.Sequential", module, call("nn.Flatten"))
                entries.append((key, module))
            safe = (safe or not variables.aliases(child)) and child.name not in tapped  # a tap's tensor is read again
        if item.positional:
            return Call("nn.Sequential", tuple(self._rolled(item.items, inplace_first=False, inlined=item.inlined, tapped=tapped)))
        return call("nn.Sequential", ordered_dict(entries))

    def _stage(self, stage: StageInst) -> Code:
        plain_names = stage.names == "{i}" and stage.connectivity == "none"
        parts: list[Code] = []
        for key, module in self._stage_entries(stage, plain_names):
            if key is None or plain_names:
                parts.append(module)
            else:
                assert isinstance(module, Call)
                parts.append(Call(f"{common.literal(key)}: {module.func}", module.args))
        if plain_names:
            return Call("nn.Sequential", tuple(parts))
        mapping: Code = parts[0] if len(parts) == 1 and isinstance(parts[0], Gen) else Seq(tuple(parts), "{}")
        if isinstance(mapping, Gen):
            mapping = Gen(mapping.elem, mapping.clause, brackets="{}")
        if stage.connectivity == "dense":
            self.helpers.add("DenseStage")
            return call("DenseStage", mapping)
        self.needs_ordered_dict = True
        return call("nn.Sequential", call("OrderedDict", mapping))

    def _stage_entries(self, stage: StageInst, plain_names: bool = False) -> list[tuple[str | None, Code]]:
        """A stage's instances: (name, module) each, or (None, a loop over alike ones):
        `*(Unit(...) for _ in range(3))` for numbered ones (`plain_names`), else
        `**{f"conv2_{i + 1}": Unit(...) for i in range(3)}`, which an unnamed stage with `names:`
        puts into the enclosing list's OrderedDict as it is (`graph.named_into`)."""
        block = self.graph.block(stage.block)
        sig = self.sigs[stage.block]
        rows = [common.instance_values(inst, block, sig) for inst in stage.instances]
        entries: list[tuple[str | None, Code]] = []
        for run in common.runs(rows):
            looped = run.count > 2
            var = "i" if looped and any(step for _, step in run.values) or (looped and not plain_names) else "_"
            if run.start == 0 or var == "_":
                clause = f"for {var} in range({run.count})"
            else:
                clause = f"for {var} in range({run.start}, {run.start + run.count})"
            if not looped:
                for k in range(run.count):
                    single = common.Run(run.start + k, 1, tuple((v + s * k if s else v, 0) for v, s in run.values))  # type: ignore[operator]
                    entries.append((instance_name(stage.names, run.start + k), self._instance_call(stage, single, var)))
                continue
            module = self._instance_call(stage, run, var)
            if plain_names:
                entries.append((None, Gen(module, clause, prefix="*")))
            else:
                key, _ = common.name_pattern(stage, run, var, "", "")
                entries.append((None, Gen(Call(f"{key}: {module.func}", module.args), clause, prefix="**", brackets="{}")))
        return entries

    def _instance_call(self, stage: StageInst, run: common.Run, var: str) -> Call:
        block = self.graph.block(stage.block)
        module = common.instance_call(self.names[stage.block], block, self.sigs[stage.block], run, var)
        if stage.connectivity == "dense" and stage.block in self.checkpointed:
            module = Call(module.func, (*module.args, "memory_efficient=memory_efficient"))
        return module

    # --- the module ------------------------------------------------------------------------

    def context(self) -> dict[str, Any]:
        unused = common.unreferenced(self.graph)  # written only `inline` in block kinds: their layers are written out
        blocks = [self.block_class(b) for b in self.graph.blocks if b.name not in unused]
        model = self.model()
        self.helpers |= common.op_helpers(self.graph, "torch")
        imports = ["import math"] if self.needs_math else []
        if self.needs_ordered_dict:
            imports.append("from collections import OrderedDict")
        if self.needs_checkpoint:
            imports += ["from collections.abc import Iterator", "from contextlib import contextmanager, nullcontext"]
        helper_modules = {name for helper in self.helpers for name in _modules_read(helper)}
        helper_modules |= common.op_names(self.graph)  # an op's expression in forward (`F.interpolate`)
        uses_torch = "torch" in helper_modules
        uses_torch |= any("torch." in line for b in blocks for _, body in b["methods"] for line in body)
        uses_torch |= any("torch." in line for lines in (model["forward"], model["init"], *(b["init"] for b in blocks)) for line in lines)
        torch_imports = ["import torch"] if uses_torch else []
        if "F" in helper_modules:
            torch_imports.append("import torch.nn.functional as F")
        # a numbered model of numbered kinds has no forward to annotate
        typed = bool(model["forward"]) or any(b["methods"] for b in blocks) or any(_reads_tensor(h) for h in self.helpers)
        torch_imports.append("from torch import Tensor, nn" if typed else "from torch import nn")
        if self.needs_checkpoint:
            torch_imports.append("from torch.utils.checkpoint import checkpoint")
        return {
            "doc": common.docstring(self.graph.doc or self.graph.name, 0),
            "header": common.header(self.graph, "torch"),
            "stdlib_imports": imports,
            "imports": torch_imports,
            "input_shape": common.literal(self.graph.input_shape.as_tuple()),
            "input_layout": common.input_layout(self.graph.input_shape.rank, "torch"),
            "functions": sorted(self.functions),
            "helpers": sorted(self.helpers),
            "blocks": blocks,
            "model": model,
        }


def _dense_usage(graph: Graph) -> tuple[set[str], set[str]]:
    """Block kinds instantiated in dense stages, and kinds instantiated anywhere else."""
    dense: set[str] = set()
    other: set[str] = set()

    def walk(items: tuple[Inst, ...]) -> None:
        for item in items:
            if isinstance(item, StageInst):
                (dense if item.connectivity == "dense" else other).add(item.block)
                for inst in item.instances:
                    walk(inst.children)
            elif isinstance(item, BlockInst):
                other.add(item.block)
                walk(item.children)
            elif isinstance(item, (GroupInst, ParallelInst)):
                walk(item.items)

    walk(graph.body)
    return dense, other


def _kind(item: Inst) -> str:
    return item.op.kind if isinstance(item, LayerInst) else type(item).__name__


