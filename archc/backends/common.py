"""What both emitters share: naming, instance runs, argument lists, the header (and the
variables of a block's code: archc.backends.variables)."""

from __future__ import annotations

import ast
import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from archc import __version__
from archc.backends.variables import Hoister, Step, tensor_variable

# keras.py reads these two here, as common.plan and common.width_trees
from archc.backends.variables import plan as plan
from archc.backends.variables import width_trees as width_trees
from archc.code import Call, Seq, call
from archc.ir.graph import (
    BlockInst,
    BlockType,
    Graph,
    GroupInst,
    StageInst,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymShortcut,
    SymStage,
    channel_params,
    container_results,
    instance_name,
)
from archc.ir.graph import spliced as numbered_on
from archc.ops import ALL, KINDS, Shape
from archc.spec import expr


class _KindsWith:
    """The layer kinds whose class sets a flag (`kind in _MERGES`), asking only the kinds
    asked about: the op modules are imported as a spec uses them (archc.ops)."""

    def __init__(self, flag: str):
        self.flag = flag

    def __contains__(self, kind: object) -> bool:
        return kind in KINDS and bool(getattr(KINDS[kind], self.flag))  # type: ignore[index]


_MERGES = _KindsWith("MERGE")
_EXPRESSIONS = _KindsWith("EXPRESSION")


def class_name(name: str) -> str:
    """`dense_layer` -> `DenseLayer`, `resnet50` -> `Resnet50`."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Model"


def class_of(owner: Graph | BlockType) -> str:
    """The class a model or block kind becomes: its `class:` as spelled, else `class_name`."""
    return owner.class_name or class_name(owner.name)


class ModuleName(NamedTuple):
    """A name a backend's generated module defines for the spec: `form` is what `owner`
    (`block 'basic'`) becomes there (`class Basic in PyTorch`), `key` its place in the spec."""

    name: str
    owner: str
    form: str
    key: str


def helper_names(backend: str) -> tuple[str, ...]:
    """Every class or function a template may add to a generated module of `backend`: each
    template but module.py.j2 is named after the one it defines, such as an op's helper class
    (HELPERS = {"torch": "PadShortcut"}: templates/torch/PadShortcut.py.j2). Read from the
    templates, not from every op class, which would import every op module."""
    from archc.backends import template_dir

    names = (path.name.removesuffix(".py.j2") for path in (template_dir() / backend).glob("*.py.j2"))
    return tuple(sorted(name for name in names if name != "module"))


def op_helpers(graph: Graph, backend: str) -> set[str]:
    """The helper classes (an op's HELPERS) that the module for `graph` defines: for every
    op in the expanded graph and every layer of a block kind, present or not, as `helper()`
    decides from its arguments. (The Keras emitter notes the helpers of the layers it writes
    instead: a max pool's padding layer depends on its input's sign, not on its arguments.)"""
    # helper() is one of HELPERS[backend] or None: an op kind without one needs none
    found = {type(node.op).helper(backend, node.op.values()) for node in graph.nodes if backend in node.op.HELPERS}

    def walk(items: tuple[SymItem, ...]) -> None:
        for item in items:
            if isinstance(item, SymLayer):
                found.add(ALL[item.kind].helper(backend, dict(item.args)))
            elif isinstance(item, (SymGroup, SymParallel)):
                walk(item.children)

    for block in graph.blocks:
        walk((*block.layers, *block.after))
    return {h for h in found if h is not None}


def op_kinds(graph: Graph) -> set[str]:
    """Every op kind of `graph`: of the expanded graph and of every layer of a block kind."""
    kinds = {node.op.kind for node in graph.nodes}

    def walk(items: tuple[SymItem, ...]) -> None:
        for item in items:
            if isinstance(item, SymLayer):
                kinds.add(item.kind)
            elif isinstance(item, (SymGroup, SymParallel)):
                walk(item.children)

    for block in graph.blocks:
        walk((*block.layers, *block.after))
    return {kind for kind in kinds if kind in ALL}


def op_names(graph: Graph) -> set[str]:
    """The modules the PyTorch expressions of the ops of `graph` read (TORCH_NAMES: `F`)."""
    return {name for kind in op_kinds(graph) for name in ALL[kind].TORCH_NAMES}


def expression_helpers(graph: Graph, backend: str) -> set[str]:
    """The helper classes that the expressions of the ops of `graph` call in `backend`
    (a module-free op writes its helper's name into a line of code, not a layer object)."""
    return {ALL[kind].HELPERS[backend] for kind in op_kinds(graph) if ALL[kind].EXPRESSION and backend in ALL[kind].HELPERS}


HEADER_MARK = "Generated by archc"


def header(graph: Graph, backend: str) -> str:
    """The module docstring's provenance lines: spec, its sha256, archc version; no timestamp."""
    source = _docstring_safe(graph.source)
    return (
        f"{HEADER_MARK} {__version__} ({backend} backend) from {source}\n"
        f"spec sha256: {graph.sha256}\n"
        f"Do not edit: change the spec and run `archc build {source} --backend {backend}`."
    )


def docstring(text: str, indent: int) -> str:
    """Wrap prose for a docstring at `indent`."""
    text = " ".join(_docstring_safe(text).split())
    return textwrap.fill(text, width=88 - indent, subsequent_indent=" " * indent, break_on_hyphens=False)


def _docstring_safe(text: str) -> str:
    """Text that cannot end a docstring or start an escape: no quotes, backslashes
    or control characters (the spec models already reject the latter in docs; paths
    come from the file system)."""
    text = text.replace("\\", "/").replace('"', "'")
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def literal(value: object) -> str:
    """Spec values reach generated code only as Python literals."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a valid Python literal, in ruff's preferred double quotes
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    raise TypeError(f"no literal for {type(value).__name__}")


@dataclass(frozen=True)
class Signature:
    """A block kind's constructor arguments after `in_channels`, keyword-only."""

    params: tuple[tuple[str, object, str], ...]  # name, default (None: required), type
    flags: tuple[str, ...]  # switches of `when: shape_changes` shortcuts that some instance uses
    inputs: tuple[str, ...] = ("input",)  # the kind's inputs (BlockType.inputs)
    reserved: frozenset[str] = frozenset()  # module-level names its variables must not shadow (`plan`'s)

    @property
    def channels(self) -> tuple[str, ...]:
        """The positional channel arguments, one per input (`in_channels`; `low_channels`, ...)."""
        return channel_params(self.inputs)

    @property
    def variables(self) -> tuple[str, ...]:
        """The variables `forward` (or the Keras function) reads its inputs from: `x`, or one per input."""
        return ("x",) if self.inputs == ("input",) else tuple(tensor_variable(n, self.reserved) for n in self.inputs)

    def arguments(self) -> set[str]:
        """Every name bound in a block's constructor or function besides the hoisted ones."""
        return {"self", "x", "name", *self.channels, *self.variables, *(n for n, _, _ in self.params), *self.flags}

    def parts(self) -> list[str]:
        out = [f"{n}: {t}" for n, d, t in self.params if d is None]
        out += [f"{n}: {t} = {literal(d)}" for n, d, t in self.params if d is not None]
        out += [f"{flag}: bool = False" for flag in self.flags]
        return out


def signature(block: BlockType, graph: Graph) -> Signature:
    used = {inst.shortcut for inst in instances_of(graph, block.name)}
    flags = tuple(sc.name for sc in block.shortcuts if sc.when == "shape_changes" and sc.name in used)
    return Signature(block.params, flags, block.inputs)


def emitted_shortcuts(block: BlockType, sig: Signature) -> list[tuple[SymShortcut, str | None]]:
    """The shortcuts a block's code builds, each with the condition guarding it (None: always)."""
    out: list[tuple[SymShortcut, str | None]] = []
    for sc in block.shortcuts:
        if sc.when == "always":
            out.append((sc, None))
        elif sc.condition is not None:
            out.append((sc, expr.to_python(sc.condition)))
        elif sc.name in sig.flags:
            out.append((sc, sc.name))
    return out


_DIMS = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def input_layout(rank: int, backend: str) -> str:
    """INPUT_SHAPE's comment: its dimensions and the batch layout, PyTorch's channels first
    ((channels, height, width); NCHW) or Keras' channels last, at the input's rank."""
    dims = _DIMS[rank]
    letters = "".join(d[0].upper() for d in dims)
    if backend == "torch":
        return f"({', '.join(('channels', *dims))}); batches are NC{letters}"
    return f"({', '.join((*dims, 'channels'))}); batches are N{letters}C (channels_last)"


def projection_args(sc: SymShortcut, hoist: Hoister, rank: int) -> tuple[dict[str, str], dict[str, str] | None]:
    """A projection shortcut as the arguments of its 1x1 conv and (or None) its batch norm,
    each as source text, for the conv and batchnorm op modules to emit (`rank`: the maps')."""
    conv = {
        "filters": hoist.src(sc.out_channels), "kernel": "1", "stride": expr.to_python(sc.stride), "padding": "0",
        "groups": "1", "dilation": "1", "bias": literal(sc.bias), "rank": str(rank),
    }  # fmt: skip
    bn = {"eps": literal(sc.eps), "momentum": literal(sc.momentum), "rank": str(rank)} if sc.batchnorm else None
    return conv, bn


def as_stage(instances: tuple[BlockInst, ...]) -> StageInst:
    """Consecutive instances of one block kind in a numbered list, as a stage (named by
    position), so that they are written in loops as a stage's instances are."""
    first = instances[0]
    counts = first.counts
    for inst in instances[1:]:
        counts = counts + inst.counts
    return StageInst(first.name, first.block, "none", "{i}", instances, first.in_shape, instances[-1].out_shape, counts)


def instances_of(graph: Graph, block: str) -> list[BlockInst]:
    found: list[BlockInst] = []

    def walk(items: tuple) -> None:  # type: ignore[type-arg]
        for item in items:
            if isinstance(item, BlockInst):
                if item.block == block:
                    found.append(item)
                walk(item.children)
            elif isinstance(item, StageInst):
                walk(item.instances)
            elif hasattr(item, "items"):
                walk(item.items)

    walk(graph.body)
    return found


def inline_only(graph: Graph) -> set[str]:
    """Block kinds whose every instance is written `inline` (its layers numbered entries of a
    list): a backend that writes those layers out needs no class or function for the kind."""
    inlined: set[str] = set()

    def walk(items: tuple) -> None:  # type: ignore[type-arg]
        for item in items:
            inlined.update(inst.block for _, _, inst in getattr(item, "inlined", ()))
            walk(getattr(item, "items", ()))

    walk(graph.body)
    return {name for name in inlined if not instances_of(graph, name)}


def unreferenced(graph: Graph) -> set[str]:
    """Block kinds that neither the model's items nor another kind's code use: written only
    `inline` inside block kinds, whose code writes their layers out in place."""
    used: set[str] = set()

    def symbolic(items: tuple) -> None:  # type: ignore[type-arg]
        for item in items:
            if isinstance(item, (SymBlock, SymStage)):
                used.add(item.block)
            elif isinstance(item, (SymGroup, SymParallel)):
                symbolic(item.children)

    def walk(items: tuple) -> None:  # type: ignore[type-arg]
        for item in items:
            if isinstance(item, (BlockInst, StageInst)):
                used.add(item.block)
            used.update(inst.block for _, _, inst in getattr(item, "inlined", ()))
            walk(getattr(item, "items", ()))

    for block in graph.blocks:
        symbolic((*block.layers, *block.after))
    walk(graph.body)
    return {block.name for block in graph.blocks} - used


# --- instances and runs -------------------------------------------------------------------


@dataclass(frozen=True)
class Indexed:
    """An argument of a stage's instance that is an expression of its index `i`, at
    instance `k`: consecutive instances step by one, so a loop writes the expression."""

    source: str  # the expression, as Python over `i`
    tree: ast.expr = field(compare=False, hash=False)
    k: int = 0

    @property
    def value(self) -> object:
        return expr.evaluate(self.tree, {"i": self.k})

    def __add__(self, step: int) -> Indexed:
        return Indexed(self.source, self.tree, self.k + step)

    def at(self, index: str) -> str:
        """The expression where `i` is the source `index`."""
        return expr.to_python(expr.substitute(self.tree, {"i": expr.parse(index)}))

    def alone(self) -> str:
        """A float at this instance, outside a loop: its expression, the index's integer sums
        folded (`0.2 * (2 + i) / 16` at 1 is `0.2 * 3 / 16`, not 0.037500000000000006); its
        value where that does not evaluate to it exactly, and an int's or a bool's."""
        if type(self.value) is not float:
            return literal(self.value)
        tree = _AtIndex(self.k).visit(ast.parse(expr.to_python(self.tree), mode="eval").body)
        try:
            exact = expr.evaluate(tree, {}) == self.value and not isinstance(tree, ast.Constant)
        except expr.ExprError:
            exact = False
        return expr.to_python(tree) if exact else literal(self.value)


class _AtIndex(ast.NodeTransformer):
    """`i` as the number k, then sums and differences of two int literals as their value."""

    def __init__(self, k: int):
        self.k = k

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return ast.Constant(self.k) if node.id == "i" else node

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        a, b = node.left, node.right
        if isinstance(node.op, (ast.Add, ast.Sub)) and all(isinstance(t, ast.Constant) and type(t.value) is int for t in (a, b)):
            return ast.Constant(a.value + b.value if isinstance(node.op, ast.Add) else a.value - b.value)  # type: ignore[attr-defined]
        return node


@dataclass(frozen=True)
class Exposed:
    """An argument of an instance that build_model() passes on (BlockInst.exposed): the model
    param's name, printed as is."""

    name: str


def instance_values(inst: BlockInst, block: BlockType, sig: Signature) -> tuple[object, ...]:
    indexed: dict[str, object] = {key: Indexed(expr.to_python(tree), tree, inst.index) for key, tree in inst.indexed}
    indexed.update((key, Exposed(param)) for key, param in inst.exposed)
    values: list[object] = [inst.in_shape.c, *(s.c for s in inst.more_in), *(indexed.get(k, v) for k, v in inst.args)]
    values += [inst.shortcut == flag for flag in sig.flags]
    return tuple(values)


@dataclass(frozen=True)
class Run:
    """Consecutive instances whose arguments step evenly: one loop in generated code."""

    start: int
    count: int
    values: tuple[tuple[object, int], ...]  # per argument: (value at `start`, step per instance)

    def arg(self, k: int, var: str) -> str:
        """Argument k as source inside a loop over `var` (which counts from `start`)."""
        value, step = self.values[k]
        if isinstance(value, Exposed):
            return value.name
        if isinstance(value, Indexed):  # `var` counts from `start`, where the index is value.k
            if step == 0:
                return value.alone()
            shift = value.k - self.start
            return value.at(var if shift == 0 else f"{var} + {shift}" if shift > 0 else f"{var} - {-shift}")
        if step == 0:
            return literal(value)
        base = value - step * self.start  # type: ignore[operator]
        term = var if step == 1 else f"{step} * {var}"
        if base == 0:
            return term
        return f"{base} + {term}" if base > 0 else f"{term} - {-base}"  # type: ignore[operator]


def runs(rows: list[tuple[object, ...]]) -> list[Run]:
    """Split instances into maximal runs whose arguments are constant or step evenly. The
    first instance (a stage's, with its `first:` overrides) does not pair up with the second
    when the second starts a longer run: `First(...), *(Rest(...) for _ in range(3))`."""
    out: list[Run] = []
    s = 0
    while s < len(rows):
        e = _run_end(rows, s)
        if s == 0 and e == 2 and _run_end(rows, 1) - 1 > 2:  # a loop (more than two) follows
            e = 1
        steps = [_step(a, b) for a, b in zip(rows[s], rows[s + 1])] if e - s > 1 else [0] * len(rows[s])
        out.append(Run(s, e - s, tuple(zip(rows[s], steps))))  # type: ignore[arg-type]
        s = e
    return out


def _run_end(rows: list[tuple[object, ...]], s: int) -> int:
    """The end of the longest run from `s` whose arguments are constant or step evenly."""
    e = s + 1
    steps: list[int | None] | None = None
    while e < len(rows):
        cand = [_step(a, b) for a, b in zip(rows[s], rows[e])] if steps is None else steps
        if any(c is None for c in cand):
            break
        if all(rows[e][k] == _at(rows[s][k], cand[k], e - s) for k in range(len(cand))):  # type: ignore[arg-type]
            steps = cand
            e += 1
        else:
            break
    return e


def _step(a: object, b: object) -> int | None:
    if type(a) is int and type(b) is int:
        return b - a
    if isinstance(a, Indexed) and isinstance(b, Indexed):
        return b.k - a.k if a.source == b.source and b.k != a.k else None
    return 0 if a == b else None


def _at(value: object, step: int, k: int) -> object:
    return value + step * k if step else value  # type: ignore[operator]


def instance_call(func: str, block: BlockType, sig: Signature, run: Run, var: str, lead: tuple[str, ...] = ()) -> Call:
    """`Func(in_channels, param=value, ...)`, leaving out parameters at their default."""
    names = [*sig.channels, *(n for n, _, _ in block.params), *sig.flags]
    defaults: dict[str, object] = {n: d for n, d, _ in block.params}
    defaults.update((flag, False) for flag in sig.flags)
    args: list[str] = [*lead, *(run.arg(k, var) for k in range(len(sig.channels)))]
    kwargs: dict[str, str] = {}
    for k, name in enumerate(names[len(sig.channels):], start=len(sig.channels)):
        value, step = run.values[k]
        if step == 0 and name in defaults and defaults[name] is not None and value == defaults[name] and type(value) is type(defaults[name]):
            continue
        kwargs[name] = run.arg(k, var)
    return call(func, *args, **kwargs)


def inner_call(
    func: str, sym: SymBlock, sig: Signature, in_channels: str, lead: tuple[str, ...] = (), src: Callable[[ast.expr], str] = expr.to_python,
) -> Call:  # fmt: skip
    """A call of an inner block kind inside another: arguments are expressions (`src` prints
    them, naming hoisted ones), and each shortcut switch is a condition on them
    (`downsample=stride != 1 or ...`)."""
    kwargs = {k: src(v) for k, v in sym.args}
    for flag, condition in sym.flags:
        if flag in sig.flags and not (isinstance(condition, ast.Constant) and condition.value is False):
            kwargs[flag] = expr.to_python(condition)
    return call(func, *lead, in_channels, *(src(t) for t in sym.more_channels), **kwargs)


def sym_trees(layer: SymItem) -> list[ast.expr]:
    """Every expression a symbolic layer, block, stage or list puts into generated code."""
    own = [layer.condition] if layer.condition is not None else []
    if isinstance(layer, (SymGroup, SymParallel)):
        return own + [t for child in layer.children for t in sym_trees(child)]
    if isinstance(layer, SymStage):
        return [*own, layer.repeat, *sym_trees(layer.first), *sym_trees(layer.rest)]
    trees = [*own, layer.in_channels, *(t for _, t in layer.args)]
    return trees + [t for _, t in layer.flags] if isinstance(layer, SymBlock) else trees


def helper_functions(layer: SymItem) -> set[str]:
    """The expression functions (expr.HELPER_FUNCTIONS) that a symbolic item's code calls."""
    return {f for tree in sym_trees(layer) for f in expr.helper_functions(tree)}


def sequential(block: BlockType) -> bool:
    """A block kind whose layers are numbered and run in sequence: an nn.Sequential subclass,
    as torchvision's Conv2dNormActivation, so its state_dict keys are `0.weight`, `1.weight`, ..."""
    return block.numbered


def spliced(item: SymItem, group: SymGroup) -> bool:
    """An unnamed stage of a numbered sequence whose instances are entries of the sequence
    itself, numbered on from its position, as lowering numbers them."""
    return numbered_on(item, group.positional)


def reads_input(items: tuple) -> bool:  # type: ignore[type-arg]
    return any("input" in item.inputs for item in items)


def later_loop(sym: SymStage) -> str:
    """The loop that builds a stage's later instances inside a block kind: over the index `i`
    where their arguments read it (`Unit(w, rate=0.1 * i) for i in range(1, n)`), else `_`."""
    if "i" in {n for _, tree in sym.rest.args for n in expr.free_names(tree)}:  # lowering's STAGE_INDEX
        return f"for i in range(1, {expr.to_python(sym.repeat)})"
    return f"for _ in range({expr.to_python(expr.fold(ast.BinOp(sym.repeat, ast.Sub(), ast.Constant(1))))})"


def stage_key(pattern: str) -> str:
    """An instance name pattern as an f-string over the loop variable `i`."""
    return 'f"' + pattern.replace("{n}", "{i + 1}") + '"'


def name_pattern(stage: StageInst, run: Run, var: str, sep: str, prefix: str) -> tuple[str, bool]:
    """Instance name inside a loop: (source, is_fstring)."""
    pattern = stage.names
    if run.count == 1 or "{" not in pattern:
        k = run.start
        return literal(prefix + instance_name(pattern, k)), False
    index = var if "{i}" in pattern else f"{var} + 1"
    text = prefix + pattern.replace("{i}", "{" + index + "}").replace("{n}", "{" + index + "}")
    return 'f"' + text + '"', True


def model_shapes(graph: Graph) -> dict[str, Shape]:
    """The shape of every tensor the model's own list can read by name: `input`, its items, the
    entries of its groups (taps, `backbone.layer3`) and the later outputs of its instances (`h.logits`)."""
    body = graph.flat_body()
    shapes = {"input": graph.input_shape, **{i.name: i.out_shape for i in body}}
    shapes.update({name: shapes[path] for name, path in container_results(body).items()})
    for item in body:
        if isinstance(item, GroupInst):
            shapes.update({f"{item.name}.{c.name}": c.out_shape for c in item.items})
        if isinstance(item, BlockInst):  # the later outputs of a kind with several
            shapes.update({f"{item.name}.{o}": shape for o, _, shape in item.more_out})
    return shapes


def module_path(name: str) -> str:
    """The attribute path of a model-level module by its name: `fpn.inner_blocks[0]` for
    `fpn.inner_blocks.0` (an entry of an nn.ModuleList)."""
    first, *rest = name.split(".")
    return first + "".join(f"[{part}]" if part.isdigit() else f".{part}" for part in rest)


def returned(graph: Graph, steps: list[Step], first: str) -> Seq | None:
    """The dict a model with several outputs returns (`{"out": classifier, ...}`, in the
    order of `outputs:`); None: it returns its last tensor."""
    if not graph.outputs:
        return None
    var = {"input": first, **{step.item.name: step.dst for step in steps}}
    var.update({f"{step.item.name}.{entry}": v for step in steps for entry, v in step.taps})
    var.update({f"{step.item.name}.{o}": v for step in steps for o, v in zip(getattr(step.item, "more_outputs", ()), step.unpacked)})
    var.update({name: var[path] for name, path in container_results([step.item for step in steps]).items()})
    return Seq(tuple(f"{literal(o.key)}: {var[o.item]}" for o in graph.outputs), "{}")
