"""`archc deploy SPEC -o DIR`: write the inference form of SPEC (archc.deploy.plan) as a spec
and its generated PyTorch and Keras modules, after proving it: the training model (random
weights with non-trivial batch-norm statistics, or `--weights`) and the deploy model with the
moved weights (archc.deploy.weights, in float64, unrounded) give the same outputs in eval mode,
in float64, within `tolerance` relative to the output's magnitude: a proof of the rewrites
(about 1e-15), apart from float32 rounding (about 1e-6, reported). A mismatch is a SpecError naming the first
module (block instance or layer, in the order of the model) whose outputs differ; nothing is
written then. With `--weights`, the moved PyTorch checkpoint and, through `archc convert`, the
Keras weights are written too. Files go to a temporary name first, then are renamed.

torch (and keras, for the Keras weights) are imported here, never by the compiler core.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.deploy import SUFFIX, Plan, plan
from archc.errors import SpecError
from archc.ir.graph import Graph
from archc.spec.loader import LoadedSpec


@dataclass(frozen=True)
class Result:
    plan: Plan
    train: Graph
    deploy: Graph
    max_rel: float  # float64: |training - deploy| / max(1, |training|), over the outputs and softmax inputs
    max_rel32: float  # the same for the float32 models users run
    own_rel32: float  # the training model's own float32 rounding: float32 against float64
    files: tuple[Path, ...]
    models: tuple[Any, Any]  # the training and deploy PyTorch models that were compared (float32, eval mode)


def deploy(
    spec: LoadedSpec, out: Path, *, weights: Path | None = None, tolerance: float = 1e-5, seed: int = 0,
    progress: Callable[[str], None] = lambda step: None, write: bool = True,
) -> Result:  # fmt: skip
    """`write=False`: the check alone (nothing is written)."""
    import torch

    from archc.api import compile, load_module, load_spec, to_ir
    from archc.verify import points, randomize, x_of

    train = to_ir(spec)
    the_plan = plan(spec, train)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{train.name}{SUFFIX}"
    spec_file = stem.with_suffix(".yaml")
    fd, scratch = tempfile.mkstemp(
        prefix=f".{spec_file.name}.", suffix=".yaml", dir=out
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(the_plan.text(spec.path))
        progress("lower")
        graph = to_ir(load_spec(scratch))
        progress("weights")
        t_model = load_module(train, "torch").build_model()
        if weights is not None:
            from archc.convert import _read_torch

            t_model.load_state_dict(_read_torch(weights, t_model), strict=True)
        else:
            randomize(t_model, train, seed)
        t_model.eval()
        d_model, exact = deploy_models(train, graph, the_plan, t_model)
        progress("check")
        x = torch.from_numpy(x_of(train, 1, seed))
        # a norm folded into the layer after it is an identity there: its own output differs
        identities = {n.id for n in graph.nodes if n.op.kind == "identity"} - {n.id for n in train.nodes if n.op.kind == "identity"}
        paths = [p.module for p in points(train) if _has(d_model, p.module) and p.module not in identities]
        # a softmax saturated by random statistics (a one-hot output) hides any difference in
        # its input: the inputs of every softmax both models run are compared as well
        softmaxes = [n.id for n in train.nodes if n.op.kind == "softmax" and _has(t_model, n.id) and _has(d_model, n.id)]
        want, want_at = _run(t_model, x.double(), paths, softmaxes)
        got, got_at = _run(exact, x.double(), paths, softmaxes)
        max_rel = _worst(want, want_at, got, got_at, softmaxes)
        if not max_rel <= tolerance:
            first = next(
                (p for p in paths if _rel(want_at[p], got_at[p]) > tolerance),
                "the output",
            )
            raise SpecError(
                f"{spec.path}: the deploy form differs from the training form (relative difference {max_rel:.3g} > {tolerance:g}); "
                f"first at {first}: please report it with the spec"
            )
        want64, want64_at = want, want_at
        want, want_at = _run(t_model, x, [], softmaxes, double=False)
        got, got_at = _run(d_model, x, [], softmaxes, double=False)
        max_rel32 = _worst(want, want_at, got, got_at, softmaxes)
        own_rel32 = _worst(want64, want64_at, want, want_at, softmaxes)
        if not write:
            return Result(the_plan, train, graph, max_rel, max_rel32, own_rel32, (), (t_model, d_model))
        progress("write")
        files = [spec_file]
        texts = {out / f"{train.name}{SUFFIX}_{backend}.py": compile(graph, backend) for backend in ("torch", "keras")}
        for path, text in texts.items():  # both compiled (a backend may refuse) before either is written
            _atomic_text(path, text)
            files.append(path)
        if weights is not None:
            pth = stem.with_suffix(".pth")
            torch.save(d_model.state_dict(), _tmp(pth))
            os.replace(_tmp(pth), pth)
            from archc.convert import convert

            h5 = out / f"{train.name}{SUFFIX}.weights.h5"
            convert(graph, pth, h5, seed=seed)
            files += [pth, h5]
        os.replace(scratch, spec_file)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)
    return Result(the_plan, train, graph, max_rel, max_rel32, own_rel32, tuple(files), (t_model, d_model))


def forms(spec: LoadedSpec) -> tuple[Graph, Plan, Graph]:
    """The training graph, the deploy plan and the deploy graph of a spec, nothing written."""
    from archc.api import load_spec, to_ir

    train = to_ir(spec)
    the_plan = plan(spec, train)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "deploy.yaml").write_text(the_plan.text(spec.path))
        return train, the_plan, to_ir(load_spec(Path(tmp) / "deploy.yaml"))


def deploy_models(train: Graph, graph: Graph, the_plan: Plan, t_model: Any) -> tuple[Any, Any]:
    """The deploy PyTorch model of `graph` in eval mode with `t_model`'s weights moved to it
    (archc.deploy.weights), in float32 as users run it and in float64 unrounded."""
    import numpy as np
    import torch

    from archc.api import load_module
    from archc.deploy.weights import deploy_state

    state = {k: v.detach().double().numpy() for k, v in t_model.state_dict().items()}
    moved = deploy_state(train, graph, state, the_plan.merges)
    d_model = load_module(graph, "torch").build_model().eval()
    exact = copy.deepcopy(d_model).double()  # the moved weights unrounded: the check is of the passes
    for model in (d_model, exact):
        target = model.state_dict()
        for key, value in target.items():
            new = moved.get(key, state.get(key))
            if new is None or tuple(new.shape) != tuple(value.shape):
                raise RuntimeError(f"deploy weights: no tensor for {key}")  # a bug in archc.deploy
            target[key] = torch.from_numpy(np.asarray(new)).to(value.dtype)
        model.load_state_dict(target, strict=True)
    return d_model, exact


def _worst(want: Any, want_at: dict[Any, Any], got: Any, got_at: dict[Any, Any], softmaxes: Sequence[str]) -> float:
    """The largest relative difference of the outputs and of every softmax's input."""
    inputs = [(s, "in") for s in softmaxes if (s, "in") in want_at]
    return max([_rel(want, got), *(_rel(want_at[k], got_at[k]) for k in inputs)])


def _has(model: Any, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def _run(model: Any, x: Any, paths: list[str], inputs_of: Sequence[str] = (), *, double: bool = True) -> tuple[Any, dict[Any, Any]]:
    """The model's output, each path's first output, and the first input of each module of
    `inputs_of` (keyed (path, "in")); float64 unless double is False."""
    import torch

    model = copy.deepcopy(model).double() if double else model
    seen: dict[Any, Any] = {}

    def keep(
        path: str, out: Any
    ) -> None:  # a hook that returns a value replaces the output
        seen.setdefault(path, _flat(out))

    hooks = [
        model.get_submodule(p).register_forward_hook(lambda _m, _i, o, p=p: keep(p, o))
        for p in paths
    ] + [
        model.get_submodule(p).register_forward_pre_hook(lambda _m, i, p=p: keep((p, "in"), i[0]))
        for p in inputs_of
    ]
    with torch.no_grad():
        result = _flat(model(x))
    for hook in hooks:
        hook.remove()
    return result, seen


def _flat(out: Any) -> Any:
    """A model's or module's output as one float64 array (a dict or tuple of tensors joined)."""
    import numpy as np
    import torch

    if isinstance(out, torch.Tensor):
        return out.detach().double().numpy().ravel()
    values = out.values() if isinstance(out, dict) else out
    return np.concatenate([_flat(v) for v in values])


def _rel(want: Any, got: Any) -> float:
    import numpy as np

    if want.shape != got.shape:
        return float("inf")
    return float(np.abs(want - got).max() / max(1.0, float(np.abs(want).max())))


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _atomic_text(path: Path, text: str) -> None:
    _tmp(path).write_text(text, encoding="utf-8")
    os.replace(_tmp(path), path)
