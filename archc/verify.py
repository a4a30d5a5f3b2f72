"""`archc verify`: prove that the PyTorch and Keras code of a spec compute the same function.

Both modules are generated and executed in memory (no files written). The PyTorch
model gets random weights: He-uniform kernels, random biases and BatchNorm
gamma/beta, and running statistics measured on a calibration batch and then
perturbed per channel, so activations stay O(1) through deep nets and a BatchNorm
mistake cannot hide behind mean 0 / variance 1. `archc.interop` copies the
weights into the Keras model, one random batch goes through both (NCHW and NHWC),
and every model-level item, stage, block instance and group is compared.

A row passes when max |torch - keras| <= tolerance * max(1, max |torch|) (float32
rounding grows with the magnitude of the values compared), or within ROUNDING times
PyTorch's own float32 error at that point, measured against a float64 copy of the model
(rounding also grows with depth: a deep net's last stages are further from exact in
float32 alone than a fixed tolerance allows).
The verdict passes only when every row does: a table with a row over tolerance is a
failure, whatever the output shows (two mistakes can cancel at the output).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import logging
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archc import interop
from archc.api import load_module, to_ir
from archc.backends import keras_idioms
from archc.convert import Progress, transfer
from archc.errors import SpecError
from archc.frameworks import import_quietly
from archc.ir.graph import (
    BlockInst,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    ParallelInst,
    StageInst,
)
from archc.ops import Shape
from archc.spec.loader import LoadedSpec

# Each block is run as its own Keras model, so TensorFlow warns about function retracing;
# the report is the output here, not its log.
logging.getLogger("tensorflow").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Row:
    item: str  # PyTorch module path (`layer1.0`); repeated model-level layers get `#2`, ...
    depth: int  # nesting level, for indentation
    shape: tuple[int, ...]  # IR output shape, (C, H, W) or (C,)
    max_abs: float  # max |torch - keras|
    magnitude: float  # max |torch|
    within: bool  # max_abs <= tolerance * max(1, magnitude)
    problem: str = ""  # why the outputs could not be compared at all
    float32_error: float = 0.0  # max |torch float32 - torch float64| here: PyTorch's own rounding (measured only when some row is over the tolerance)

    @property
    def max_rel(self) -> float:
        """max |torch - keras| relative to the magnitude of the output."""
        if self.magnitude > 0:
            return self.max_abs / self.magnitude
        return 0.0 if self.max_abs == 0 else math.inf


@dataclass(frozen=True)
class Report:
    """Rows in model order, containers before their contents; the last model-level row is the
    output. It passes when every row does; the first row over tolerance locates where a
    disagreement starts."""

    spec: str
    model: str
    mode: str  # eval | train
    batch: int
    seed: int
    tolerance: float
    rows: tuple[Row, ...]
    keras_backend: str  # tensorflow | jax | torch
    versions: dict[str, str]  # of torch, keras and the Keras backend's framework

    @property
    def output(self) -> Row:
        return next(r for r in reversed(self.rows) if r.depth == 0)

    @property
    def ok(self) -> bool:
        return all(r.within and not r.problem for r in self.rows)

    def first_disagreement(self) -> Row | None:
        """The earliest row off tolerance, descending into a failing container's contents."""
        bad = [i for i, r in enumerate(self.rows) if r.problem or not r.within]
        if not bad:
            return None
        i = bad[0]
        for j in bad[1:]:
            if any(r.depth <= self.rows[i].depth for r in self.rows[i + 1 : j + 1]):
                break  # left row i's contents
            i = j
        return self.rows[i]

    def to_dict(self) -> dict[str, Any]:
        rows = [_finite({**asdict(r), "shape": list(r.shape), "max_rel": r.max_rel}) for r in self.rows]
        return {
            "spec": self.spec, "model": self.model, "mode": self.mode, "batch": self.batch, "seed": self.seed,
            "tolerance": self.tolerance, "keras_backend": self.keras_backend, "versions": self.versions, "ok": self.ok,
            "output": rows[self.rows.index(self.output)], "blocks": rows,
        }  # fmt: skip


def _finite(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no infinity: a row whose outputs could not be compared reports null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


FOLD_KEEP = (3, 2)  # siblings shown before and after a folded run
FOLD_MIN = 4  # fold a run of at least this many agreeing siblings (a stage of 200 blocks)


def _units(rows: list[Row]) -> list[list[Row]]:
    """Split rows into units: a row and the deeper rows that follow it (its blocks, groups)."""
    units: list[list[Row]] = []
    for r in rows:
        if units and r.depth > units[-1][0].depth:
            units[-1].append(r)
        else:
            units.append([r])
    return units


def _fold(rows: list[Row]) -> list[Row | str]:
    """The rows to print: in a long run of sibling items that all agree (the blocks of a deep
    stage), the middle becomes one line saying how many and their worst relative difference.
    Items that disagree are never folded."""
    out: list[Row | str] = []
    units = _units(rows)
    head, tail = FOLD_KEEP
    i = 0
    while i < len(units):
        j = i
        while j < len(units) and all(r.within and not r.problem for r in units[j]):
            j += 1
        run = units[i:j]
        if len(run) >= head + tail + FOLD_MIN:
            for unit in run[:head]:
                out += [unit[0], *_fold(unit[1:])]
            middle = [r for unit in run[head:-tail] for r in unit]
            worst = max(middle, key=lambda r: r.max_rel)
            depth = run[head][0].depth
            out.append(
                f"{'  ' * depth}... {len(run) - head - tail} more ({run[head][0].item} to {run[-tail - 1][0].item}), "
                f"all ok; worst rel diff {worst.max_rel:.2e} ({worst.item})"
            )
            for unit in run[-tail:]:
                out += [unit[0], *_fold(unit[1:])]
        else:
            for unit in run:
                out += [unit[0], *_fold(unit[1:])]
        if j < len(units):  # a unit with a disagreement: shown, its agreeing contents folded
            out += [units[j][0], *_fold(units[j][1:])]
            j += 1
        i = j
    return out


def to_table(report: Report, all_rows: bool = False) -> str:
    """The report as text; long runs of agreeing blocks are folded unless `all_rows`."""
    v = report.versions
    backend = report.keras_backend
    head = (
        f"{report.spec}: {report.model}, {report.mode} mode, batch {report.batch}, seed {report.seed}\n"
        f"torch {v['torch']}; keras {v['keras']} on {backend}" + ("" if backend == "torch" else f" {v[backend]}") + "\n"
        f"pass: every row's max |torch - keras| <= {report.tolerance:g} x max(1, max |torch|), "
        f"or {ROUNDING} x PyTorch's own float32 error there; rows over that bound are marked 'over'"
    )
    width = max(len("item"), *(2 * r.depth + len(r.item) for r in report.rows))
    lines = [head, "", f"{'item':<{width}}  {'output shape':<16}{'max |diff|':>12}{'max |torch|':>13}{'rel diff':>11}"]
    for r in list(report.rows) if all_rows else _fold(list(report.rows)):
        if isinstance(r, str):
            lines.append(r)
            continue
        name = "  " * r.depth + r.item
        shape = "(" + ", ".join(map(str, r.shape)) + ("," if len(r.shape) == 1 else "") + ")"
        status = r.problem or ("ok" if r.within else "over")
        lines.append(f"{name:<{width}}  {shape:<16}{r.max_abs:>12.2e}{r.magnitude:>13.2e}{r.max_rel:>11.2e}  {status}")
    out = report.output
    bound = report.tolerance * max(1.0, out.magnitude)
    worst = max(report.rows, key=lambda r: r.max_rel)
    if report.ok:
        verdict = f"PASS: every row within tolerance; output max |diff| {out.max_abs:.2e} <= {bound:.2e}; worst rel diff {worst.max_rel:.2e} ({worst.item})"
    else:
        first = report.first_disagreement()
        assert first is not None
        verdict = (
            f"FAIL: output max |diff| {out.max_abs:.2e}, bound {bound:.2e}; "
            f"the first disagreement is at {first.item} ({first.problem or f'max |diff| {first.max_abs:.2e}'})"
        )
    return "\n".join([*lines, "", verdict])


# --- what is compared ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    item: str
    module: str  # PyTorch module path
    call: int  # which call of that module (a model-level activation may be applied twice)
    node: str  # IR node that gives the output (its Keras layer is keras_name(node))
    depth: int
    shape: Shape


def points(graph: Graph) -> list[_Point]:
    """Every model-level item, and inside groups and stages every item and block instance,
    in the order of a depth-first walk (containers before their contents)."""
    out: list[_Point] = []
    tapped = graph.tapped()

    def walk(items: tuple[Inst, ...], path: tuple[str, ...], depth: int) -> None:
        uses: dict[str, int] = {}
        for item in items:
            if isinstance(item, GroupInst) and item.dataflow:  # never called itself: its entries are
                walk(item.items, (*path, item.name), depth)
                continue
            uses[item.name] = uses.get(item.name, 0) + 1
            n = uses[item.name]
            node_path = ".".join((*path, item.name if n == 1 else f"{item.name}_{n}"))
            label = ".".join((*path, item.name)) + ("" if n == 1 else f"#{n}")
            if path:  # in a group (nn.Sequential): a repeated activation is a module of its own
                out.append(_Point(label, node_path, 0, item.output, depth, item.out_shape))
            elif item.name in tapped:  # run in pieces (taps): its output is its last entry's
                assert isinstance(item, GroupInst)
                last = item.items[-1].name
                key = last if sum(c.name == last for c in item.items) == 1 else f"{last}_{sum(c.name == last for c in item.items)}"
                out.append(_Point(label, f"{item.name}.{key}", 0, item.output, depth, item.out_shape))
            else:  # at model level the model calls the same module again
                out.append(_Point(label, item.name, n - 1, item.output, depth, item.out_shape))
            if isinstance(item, (GroupInst, ParallelInst)):
                walk(item.items, (*path, item.name), depth + 1)
            elif isinstance(item, StageInst):
                walk(item.instances, (*path, item.name), depth + 1)
            else:
                assert isinstance(item, (LayerInst, BlockInst))

    walk(graph.body, (), 0)
    return out


ROUNDING = 4  # a row also passes within this many times PyTorch's own float32 error there


def x_of(graph: Graph, batch: int, seed: int) -> np.ndarray:
    """The random batch both models run."""
    return np.random.default_rng(seed).standard_normal((batch, *graph.input_shape.as_tuple())).astype("float32")


def _float64_run(t_model: Any, paths: list[str], x: np.ndarray) -> tuple[dict[str, list[np.ndarray]], Any]:
    """PyTorch's outputs at `paths` (and its result) computed in float64: how far its float32
    run is from exact at each point. Float32 rounding grows with depth (a 150-layer ResNet's
    last stage is ~1e-4 of its magnitude off in float32 alone), so a difference between the
    frameworks within a few times that is rounding, not a mistake."""
    model = copy.deepcopy(t_model).double()
    captured: dict[str, list[np.ndarray]] = {path: [] for path in paths}
    hooks = [
        model.get_submodule(path).register_forward_hook(lambda _m, _i, out, path=path: captured[path].append(out.detach().numpy()))
        for path in captured
    ]
    with torch.no_grad():
        result = model(torch.from_numpy(x.astype("float64")))
    for hook in hooks:
        hook.remove()
    return captured, result


def _error(single: np.ndarray, double: np.ndarray | None) -> float:
    if double is None or single.shape != double.shape:
        return 0.0
    return float(np.abs(single.astype("float64") - double).max())


def _row(item: str, depth: int, shape: tuple[int, ...], want: np.ndarray, got: np.ndarray, tolerance: float, error: float) -> Row:
    """A compared row: within when max |torch - keras| <= tolerance x max(1, max |torch|), or
    within ROUNDING x PyTorch's own float32 error at that point."""
    max_abs, magnitude = float(np.abs(want - got).max()), float(np.abs(want).max())
    within = max_abs <= max(tolerance * max(1.0, magnitude), ROUNDING * error)
    return Row(item, depth, shape, max_abs, magnitude, within, "", error)


def _observable(pts: list[_Point], graph: Graph) -> list[_Point]:
    """The points both models expose. An expression op (a channel slice), a bare parameter (a
    layer scale) or a merge at model level (`torch.cat`, `+`) has no PyTorch module: where it
    gives the model's output, that output is compared (module ""); elsewhere its point is left
    out, and the next one covers it."""
    nodes = {n.id: n for n in graph.nodes}
    output = [p for p in pts if p.depth == 0][-1]
    out = []
    for p in pts:
        op = nodes[p.node].op
        if not (op.EXPRESSION or op.PARAMETER or (op.module_free() and p.node == p.module)):
            out.append(p)
        elif p is output and not graph.outputs:  # several outputs: each is compared as one
            out.append(dataclasses.replace(p, module="", call=0))
    return out


# --- building and running the two models --------------------------------------------------------


def randomize(model: Any, graph: Graph, seed: int) -> None:
    """Random weights for every IR node of the PyTorch model, BatchNorm statistics included."""
    gen = torch.Generator().manual_seed(seed)
    norms = []
    with torch.no_grad():
        for node in graph.nodes:
            if not node.op.weight_names():
                continue
            # a bare parameter (layer scale) is not a submodule: the op randomizes the tensor itself
            target = model.get_parameter(node.id) if node.op.PARAMETER else model.get_submodule(node.id)
            node.op.randomize(target, gen)
            if node.op.RUNNING_STATS:
                norms.append(target)
        # Running statistics: measured on a calibration batch (momentum None = plain average),
        # then each channel's mean shifted and variance scaled at random.
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        # dropout and stochastic depth draw from the global generator in training mode:
        # seeded here too, so that the same seed gives the same statistics
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model(torch.randn((2, *graph.input_shape.as_tuple()), generator=gen))
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            std = m.running_var.sqrt()
            m.running_mean.add_(0.25 * std * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.mul_(torch.rand(m.running_var.shape, generator=gen) * 1.5 + 0.5)
            m.num_batches_tracked.zero_()


@contextmanager
def deep_stack(graph: Graph) -> Iterator[None]:
    """Room on the stack while Keras walks a functional graph: it recurses through it
    (building a model, a probe model over inner layers, calling either), and
    ResNet-1202 is thousands of layers deep."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20 * len(graph.nodes)))
    try:
        yield
    finally:
        sys.setrecursionlimit(limit)


def build_keras(module: Any, graph: Graph, **kwargs: Any) -> Any:
    """`module.build_model(**kwargs)` for a generated Keras module, with room on the stack."""
    with deep_stack(graph):
        return module.build_model(**kwargs)


def smaller(spec: LoadedSpec, height: int = 128, width: int = 128) -> LoadedSpec:
    """The spec with its 2-D input at most `height` x `width`, where Keras builds it so (AlexNet's
    adaptive pool to 6x6 needs a map divisible by 6 there): else the spec as it is. Every layer
    is size-agnostic, so a smaller input checks the same code; a size that is not a multiple of
    the stride checks how each strided layer rounds."""
    from archc.api import load_spec
    from archc.backends import check

    shape = spec.model.input
    if len(shape) != 3 or (shape[1] <= height and shape[2] <= width):
        return spec
    small = load_spec(spec.path, (*spec.overrides, f"input=[{shape[0]}, {min(height, shape[1])}, {min(width, shape[2])}]"))
    try:
        check(to_ir(small), ("keras",))
    except SpecError:
        return spec
    return small


def versions() -> tuple[str, dict[str, str]]:
    """The Keras backend, and the versions of torch, keras and that backend's framework."""
    keras = import_quietly("keras")  # here, not on import: deploy uses this module without Keras
    backend = keras.backend.backend()
    found = {"torch": torch.__version__, "keras": keras.__version__}
    found.setdefault(backend, getattr(importlib.import_module(backend), "__version__", "unknown"))
    return backend, found


def _first(out: Any) -> Any:
    """A module's value: its output, or the first of a block kind's several (the row's node)."""
    return out[0] if isinstance(out, tuple) else out


def verify(
    spec: str | Path | Graph, *, tolerance: float = 1e-4, batch: int = 2, train_mode: bool = False, seed: int = 0,
    progress: Progress | None = None,
) -> Report:  # fmt: skip
    """Build both backends of `spec`, transfer random weights, compare every block's output;
    `progress(step, done, total)` follows the steps build, transfer and run."""
    keras = import_quietly("keras")  # without TensorFlow's start-up log lines
    report = progress or (lambda step, done, total: None)
    graph = to_ir(spec)
    tm, km = load_module(graph, "torch"), load_module(graph, "keras")
    report("build", 0, 2)
    torch.manual_seed(seed)
    t_model = tm.build_model()
    randomize(t_model, graph, seed)
    report("build", 1, 2)
    k_model = build_keras(km, graph)
    report("build", 2, 2)
    transfer(interop.torch_to_keras, t_model, k_model, graph, report)

    # Dropout is random, so it is off in both; --train-mode is about BatchNorm's batch statistics.
    t_model.train(train_mode)
    for m in t_model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.eval()
    for layer in k_model.layers:
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0

    absorbed = keras_idioms.absorbed(graph)  # layers the Keras code leaves out or takes in
    # a conv whose activation its Keras layer applies has no Keras tensor of its own: the activation's row covers it
    pts = [p for p in _observable(points(graph), graph) if p.module == "" or keras_idioms.keras_layer(graph, p.node, absorbed) is not None]
    captured: dict[str, list[np.ndarray]] = {p.module: [] for p in pts}
    hooks = [
        t_model.get_submodule(path).register_forward_hook(
            lambda _m, _i, out, path=path: captured[path].append(_first(out).detach().numpy().copy())
        )
        for path in captured
    ]
    x = x_of(graph, batch, seed)
    report("run", 0, 2)
    with torch.no_grad():
        t_result = t_model(torch.from_numpy(x))
    for hook in hooks:
        hook.remove()
    report("run", 1, 2)

    def keras_output(p: _Point) -> str:  # "": the model's output
        return "" if p.module == "" else keras_idioms.keras_layer(graph, p.node, absorbed) or ""

    names = list(dict.fromkeys(keras_output(p) for p in pts))
    with deep_stack(graph):
        probe = keras.Model(k_model.input, [k_model.get_layer(n).output if n else k_model.output for n in names])
        outs = probe(interop.channels_last(x), training=train_mode)
    k_outs = dict(zip(names, (keras.ops.convert_to_numpy(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs]))))
    report("run", 2, 2)

    # each row: a Row that says why nothing could be compared, or what it compares: (item,
    # depth, shape, torch and keras in Keras' layout, PyTorch's own value, where the float64
    # copy of the model has that value)
    entries: list[Row | tuple[Any, ...]] = []
    for p in pts:
        calls = captured[p.module]
        got = k_outs[keras_output(p)]
        if p.call >= len(calls):
            entries.append(Row(p.item, p.depth, p.shape.as_tuple(), math.inf, math.nan, False, "never run by torch"))
            continue
        want = interop.keras_layout(calls[p.call], p.shape, interop.flattened_map(graph, p.node))
        if want.shape != got.shape:
            problem = f"shapes differ: torch {tuple(want.shape)}, keras {tuple(got.shape)}"
            entries.append(Row(p.item, p.depth, p.shape.as_tuple(), math.inf, math.nan, False, problem))
            continue
        entries.append((p.item, p.depth, p.shape.as_tuple(), want, got, calls[p.call], (p.module, p.call)))
    if graph.outputs:  # the model's outputs, each a row of its own (`output 'aux'`)
        with deep_stack(graph):
            k_result = k_model(interop.channels_last(x), training=train_mode)
        for (key, want, got), o in zip(interop.output_pairs(graph, t_result, k_result), graph.outputs):
            if want.shape != got.shape:
                entries.append(Row(f"output {key!r}", 0, o.shape.as_tuple(), math.inf, math.nan, False, "shapes differ"))
                continue
            entries.append((f"output {key!r}", 0, o.shape.as_tuple(), want, got, t_result[key].numpy(), (None, key)))

    def rows_with(error: Any) -> list[Row]:
        return [e if isinstance(e, Row) else _row(*e[:5], tolerance, error(e[5], e[6])) for e in entries]

    rows = rows_with(lambda single, where: 0.0)
    if not all(row.within for row in rows if not row.problem):
        # over the tolerance somewhere: how far is PyTorch's own float32 run from exact there?
        exact, exact_result = _float64_run(t_model, [p.module for p in pts], x)

        def float32_error(single: np.ndarray, where: tuple[str | None, Any]) -> float:
            module, at = where  # module None: the model's output `at`
            double = exact_result[at] if module is None else exact[module][at] if at < len(exact[module]) else None
            return _error(single, None if double is None else np.asarray(double))

        rows = rows_with(float32_error)
    mode = "train" if train_mode else "eval"
    return Report(graph.source, graph.name, mode, batch, seed, tolerance, tuple(rows), *versions())
