"""Training-step comparison on a GPU: generated PyTorch vs torchvision.

Self-contained: needs only torch, torchvision and the pre-generated module files
(generated/NAME_torch.py for mobilenet_v2, efficientnet_b0, convnext_tiny, regnet_y_400mf,
resnet50, densenet121), not archc. Batch 256, bf16 autocast, channels_last, SGD;
eager for every model first, then torch.compile; DenseNet-121 also with memory_efficient
on. Generated and reference models run alternately in one process on the same input;
compile time is reported separately. Prints a markdown table. A model whose generated file
is missing is reported as "not generated", one that fails as "failed: ...", and the run
goes on; cases past the time budget are listed as skipped.

    python bench/gpu.py                                  # on the GPU machine; past --budget (400 s) cases are skipped
    python bench/gpu.py --models resnet50 densenet121    # a subset (e.g. the rest, in a second call)
    python bench/gpu.py --device cpu --batch 4 --steps 1 --rounds 1 --warmup 0 --no-compile --models mobilenet_v2   # smoke test anywhere
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision

HERE = Path(__file__).resolve().parent


def load(path: Path):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Runner:
    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, compile_: bool):
        self.device = device
        self.model = model.to(device, memory_format=torch.channels_last).train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.fn = torch.compile(self.model) if compile_ else self.model
        self.x, self.y = x, y
        self.compile_s = 0.0

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device, dtype=torch.bfloat16):
            loss = F.cross_entropy(self.fn(self.x), self.y)
        loss.backward()
        self.opt.step()

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def compare(runners: dict[str, Runner], warmup: int, rounds: int, steps: int) -> dict[str, tuple[float, float, float]]:
    """(median s/step, peak GiB, first-step seconds) per runner, alternating rounds."""
    out: dict[str, list[float]] = {k: [] for k in runners}
    first: dict[str, float] = {}
    peak: dict[str, float] = {}
    for name, r in runners.items():
        if r.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        r.step()
        r.sync()
        first[name] = time.perf_counter() - t  # includes compilation for torch.compile
        for _ in range(warmup):
            r.step()
        r.sync()
        peak[name] = torch.cuda.max_memory_allocated() / 2**30 if r.device == "cuda" else float("nan")
    keys = list(runners)
    for i in range(rounds):
        for name in keys if i % 2 == 0 else reversed(keys):
            r = runners[name]
            r.sync()
            t = time.perf_counter()
            for _ in range(steps):
                r.step()
            r.sync()
            out[name].append((time.perf_counter() - t) / steps)
    return {k: (statistics.median(out[k]), peak[k], first[k]) for k in runners}


# The four of issue 12 first: resnet50 and densenet121 were measured before (bench/RESULTS.md, section 8).
MODELS = ("mobilenet_v2", "efficientnet_b0", "convnext_tiny", "regnet_y_400mf", "resnet50", "densenet121")
EFFICIENT = {"densenet121"}  # models with a memory_efficient option (generated and torchvision)


def cases(models: list[str], compile_: bool) -> list[tuple[str, str, bool]]:
    """Eager runs of every model (and memory_efficient where it exists), then compiled ones."""
    out = [(m, "eager", e) for m in models for e in ((False, True) if m in EFFICIENT else (False,))]
    return out + ([(m, "compile", False) for m in models] if compile_ else [])


def run_case(args: argparse.Namespace, model: str, mode: str, efficient: bool, x: torch.Tensor, y: torch.Tensor) -> str:
    path = args.generated / f"{model}_torch.py"
    if not path.exists():
        return f"| {model} | {mode} | {efficient} | not generated ({path.name} missing) | | | | | | |"
    torch.manual_seed(0)
    options = {"memory_efficient": True} if efficient else {}
    gen = load(path).build_model(**options)
    tv = torchvision.models.get_model(model, weights=None, **options)
    runners = {k: Runner(m, x, y, args.device, mode == "compile") for k, m in (("gen", gen), ("tv", tv))}
    res = compare(runners, args.warmup, args.rounds, args.steps)
    (g, gp, gf), (t, tp, tf) = res["gen"], res["tv"]
    return (
        f"| {model} | {mode} | {efficient} | {g * 1e3:.1f} | {t * 1e3:.1f} | {t / g:.3f} "
        f"| {gp:.2f} | {tp:.2f} | {gp / tp:.3f} | {gf:.1f} / {tf:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--generated", type=Path, default=HERE.parent / "generated")
    parser.add_argument("--models", nargs="+", default=list(MODELS), help=f"torchvision model names (default: {' '.join(MODELS)})")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument(
        "--budget", type=float, default=400, help="seconds; later cases are skipped past it (one compile case can take 3 minutes more)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, torchvision {torchvision.__version__}, batch {args.batch}, bf16 autocast, channels_last\n")
    print("| model | mode | memory_efficient | gen ms/step | tv ms/step | throughput ratio gen/tv | gen peak GiB | tv peak GiB | memory ratio | first step gen / tv s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    x = torch.randn(args.batch, 3, 224, 224, device=args.device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=args.device)
    for model, mode, efficient in cases(args.models, not args.no_compile):
        if time.perf_counter() - start > args.budget:
            print(f"| {model} | {mode} | {efficient} | skipped: past the {args.budget:.0f} s budget | | | | | | |")
            continue
        try:
            row = run_case(args, model, mode, efficient, x, y)
        except Exception as e:  # one broken model must not cost the rest of a scarce GPU run
            row = f"| {model} | {mode} | {efficient} | failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} | | | | | | |"
        print(row, flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
