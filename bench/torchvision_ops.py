"""aten operators per training step, generated PyTorch vs torchvision (CPU).

One training step = forward + cross-entropy loss, backward, and an SGD (momentum 0.9)
optimizer step; each aten operator it dispatches is counted with a TorchDispatchMode, by
phase. Equal counts (and an equal sequence) mean the generated model does the same work as
torchvision's, whatever the machine's noise does to timings. Where the counts differ, the
table below the summary lists each operator whose count differs, per phase, with the
modules whose forward dispatched it: the measured reason.

Needs only torch, torchvision and the generated module files (generated/NAME_torch.py), not
archc. A model whose generated file does not exist is reported as "not generated".

    make bench-torchvision                                  # = the command below, all models
    PYTHONPATH=. .tvenv/bin/python bench/torchvision_ops.py [MODEL ...] [--size 224] [--batch 2]
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("mobilenet_v2", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf")
PHASES = ("forward", "backward", "optimizer")


class OpCounter(TorchDispatchMode):
    """Counts the aten operators dispatched while it is active: equal counts mean equal
    work. `phase` labels what runs now; during forward, `modules` is the stack of modules
    whose forward is running (set by `attribute`), so each op is also charged to the
    innermost one's class."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.by_phase: collections.Counter[tuple[str, str]] = collections.Counter()
        self.sources: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.sequence: list[tuple[str, str]] = []
        self.phase = "step"
        self.modules: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = str(func.overloadpacket)
        self.ops[name] += 1
        self.by_phase[self.phase, name] += 1
        self.sequence.append((self.phase, name))
        if self.phase == "forward":
            self.sources[name][self.modules[-1] if self.modules else "(functional)"] += 1
        return func(*args, **(kwargs or {}))

    def attribute(self, model: torch.nn.Module) -> list[object]:
        """Hooks that keep `modules` up to date; returns their handles."""

        def enter(module: torch.nn.Module, args: object) -> None:
            self.modules.append(type(module).__name__)

        def leave(module: torch.nn.Module, args: object, out: object) -> None:
            self.modules.pop()  # a hook that returns a value would replace the module's output

        handles = []
        for module in model.modules():
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
        return handles


def load_generated(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def count_step(model: torch.nn.Module, batch: int, size: int) -> OpCounter:
    """The ops of one steady-state training step: a first step runs uncounted, so SGD's
    momentum buffers exist (the first step creates them, every later one updates them)."""
    torch.manual_seed(1)
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 1000, (batch,))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    counter = OpCounter()

    def step(count: bool) -> None:
        opt.zero_grad(set_to_none=True)
        counter.phase = "forward"
        loss = F.cross_entropy(model(x), y)
        counter.phase = "backward"
        loss.backward()
        counter.phase = "optimizer"
        opt.step()

    step(False)
    handles = counter.attribute(model)
    try:
        with counter:
            step(True)
    finally:
        for handle in handles:
            handle.remove()  # type: ignore[attr-defined]
    return counter


def compare(name: str, generated_dir: Path, batch: int, size: int) -> tuple[str, list[str]]:
    """One summary row and the difference lines for one model."""
    import torchvision

    path = generated_dir / f"{name}_torch.py"
    if not path.exists():
        return f"| {name} | not generated ({path.name} missing) | | | | | | | |", []
    torch.manual_seed(0)
    gen = load_generated(path).build_model()
    torch.manual_seed(0)
    tv = torchvision.models.get_model(name, weights=None)
    params = [sum(p.numel() for p in m.parameters()) for m in (gen, tv)]
    g_keys, t_keys = list(gen.state_dict()), list(tv.state_dict())
    keys = "equal" if g_keys == t_keys else "equal, other order" if sorted(g_keys) == sorted(t_keys) else "differ"
    if keys != "differ":
        tv.load_state_dict(gen.state_dict())  # the same weights, so the same numbers flow (not needed for counts)
    g, t = count_step(gen, batch, size), count_step(tv, batch, size)
    totals = f"{sum(g.ops.values()):,} / {sum(t.ops.values()):,}"
    phases = [f"{sum(v for (p, _), v in c.by_phase.items() if p == ph):,}" for ph in PHASES for c in (g, t)]
    per_phase = " | ".join(f"{phases[2 * i]} / {phases[2 * i + 1]}" for i in range(len(PHASES)))
    if g.sequence == t.sequence:
        verdict = "identical sequence"
    elif g.ops == t.ops:
        i = next(i for i, (a, b) in enumerate(zip(g.sequence, t.sequence)) if a != b)
        verdict = f"same counts, order differs from op {i} ({g.sequence[i]} vs {t.sequence[i]})"
    else:
        verdict = "counts differ (below)"
    row = f"| {name} | {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} | {params[0]:,} / {params[1]:,} | {keys} | {totals} | {per_phase} | {verdict} |"
    lines = []
    for phase, op in sorted(set(g.by_phase) | set(t.by_phase)):
        a, b = g.by_phase[phase, op], t.by_phase[phase, op]
        if a != b:
            where = ""
            if phase == "forward":
                where = f" — generated: {_sources(g.sources[op])}; torchvision: {_sources(t.sources[op])}"
            lines.append(f"- {phase} `{op}`: generated {a}, torchvision {b} ({a - b:+d}){where}")
    return row, lines


def _sources(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counter.most_common()) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=list(MODELS), help=f"torchvision model names (default: {' '.join(MODELS)})")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=224, help="input height and width (the counts do not depend on it)")
    parser.add_argument("--generated", type=Path, default=ROOT / "generated", help="the folder of NAME_torch.py files")
    args = parser.parse_args()
    import torchvision

    print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, CPU; batch {args.batch} at "
        f"{args.size}x{args.size}, train mode; one steady-state step: forward + cross-entropy, backward, SGD(momentum=0.9)\n"
    )
    print("| model | generated | params gen / tv | state_dict keys | aten ops per train step gen / tv | forward | backward | optimizer | verdict |")
    print("|---|---|---:|---|---:|---:|---:|---:|---|")
    differences, failed = {}, []
    for name in args.models:
        try:
            row, lines = compare(name, args.generated, args.batch, args.size)
        except Exception as e:  # a broken generated file or an unknown name: report it, go on with the rest
            failed.append(name)
            row, lines = f"| {name} | failed: {type(e).__name__}: {e} | | | | | | | |", []
        print(row, flush=True)
        if lines:
            differences[name] = lines
    for name, lines in differences.items():
        print(f"\n#### {name}: operators whose count differs (forward ops with the modules that dispatched them)\n")
        print("\n".join(lines))
    if failed:
        raise SystemExit(f"\nfailed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
