"""Generated PyTorch vs hand-written references on CPU: forward and training-step
throughput, peak training memory; and DenseNet's memory_efficient option.

Throughput: both models live in one process, get the same input, and run in alternating
rounds (ABBA order), so machine noise hits both alike; we report medians. Peak memory:
torch's CPU allocator is invisible to tracemalloc, so each (model, variant) runs a few
training steps in a fresh subprocess and reports the growth of its peak resident set
size (VmHWM) over the resident size just before the first step.

References: torchvision (resnet50, densenet121) where importable; otherwise those rows say
so. The CIFAR references are hand-written in bench/reference_models.py.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

import reference_models  # noqa: E402
from torchvision_ops import OpCounter  # noqa: E402  (counts aten ops; torch only)

# name -> (batch, input size, reference factory name, generated module)
WORKLOADS = {
    "resnet50": (8, 224, "torchvision.resnet50", "resnet50"),
    "densenet121": (8, 224, "torchvision.densenet121", "densenet121"),
    "resnet56": (64, 32, "reference_models.resnet56", "resnet56"),
    "densenet_bc100_k12": (64, 32, "reference_models.densenet_bc100_k12", "densenet_bc100_k12"),
}


def load_generated(name: str):  # type: ignore[no-untyped-def]
    path = ROOT / "generated" / f"{name}_torch.py" if not name.endswith(".py") else Path(name)
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference(factory: str):  # type: ignore[no-untyped-def]
    owner, name = factory.split(".")
    if owner == "torchvision":
        try:
            import torchvision
        except ImportError:
            return None
        return getattr(torchvision.models, name)(weights=None)
    return getattr(reference_models, name)()


def model_pair(workload: str, **options):  # type: ignore[no-untyped-def]
    batch, size, factory, generated = WORKLOADS[workload]
    torch.manual_seed(0)
    gen = load_generated(generated).build_model(**options)
    torch.manual_seed(0)
    ref = reference(factory)
    if ref is not None and sum(p.numel() for p in ref.parameters()) != sum(p.numel() for p in gen.parameters()):
        raise SystemExit(f"{workload}: reference and generated models differ in size")
    return gen, ref, batch, size


def step_fn(model, x, y, train: bool):  # type: ignore[no-untyped-def]
    if not train:
        model.eval()

        def forward() -> None:
            with torch.no_grad():
                model(x)

        return forward
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    return train_step


def alternate(fns: dict[str, object], rounds: int, iters: int, warmup: int = 1) -> tuple[dict[str, float], float]:
    """Median seconds per iteration of each of two functions run in alternating ABBA
    rounds, and the median over rounds of the paired ratio first/second: runs next to
    each other in time share the machine's load, so their ratio is the steadier figure."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys if r % 2 == 0 else reversed(keys):
            t = time.perf_counter()
            for _ in range(iters):
                fns[k]()
            times[k].append((time.perf_counter() - t) / iters)
    a, b = (times[k] for k in keys)
    return {k: statistics.median(v) for k, v in times.items()}, statistics.median(x / y for x, y in zip(a, b))


def op_counts(model, size: int) -> collections.Counter[str]:  # type: ignore[no-untyped-def]
    x, y = torch.randn(2, 3, size, size), torch.randint(0, 10, (2,))
    fn = step_fn(model, x, y, train=True)
    with OpCounter() as counter:
        fn()
    return counter.ops


def throughput(rounds: int, iters: int) -> None:
    print(f"\n### Throughput, generated vs reference (CPU, images/s; ratio = median over {rounds} alternating rounds of reference time / generated time)\n")
    print("| model | batch | input | reference | aten ops per train step gen / ref | forward gen | forward ref | ratio | train gen | train ref | ratio |")
    print("|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for workload, (batch, size, factory, _) in WORKLOADS.items():
        gen, ref, batch, size = model_pair(workload)
        if ref is None:
            print(f"| {workload} | {batch} | {size} | {factory}: not importable here | | | | | | | |")
            continue
        g_ops, r_ops = op_counts(gen, min(size, 64)), op_counts(ref, min(size, 64))  # counts do not depend on the size
        same = "identical" if g_ops == r_ops else f"differ: {dict((g_ops - r_ops) + (r_ops - g_ops))}"
        ops = f"{sum(g_ops.values()):,} / {sum(r_ops.values()):,} ({same})"
        torch.manual_seed(1)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        row = []
        for train in (False, True):
            t, ratio = alternate({"ref": step_fn(ref, x, y, train), "gen": step_fn(gen, x, y, train)}, rounds, iters)
            row += [batch / t["gen"], batch / t["ref"], ratio]
        print(f"| {workload} | {batch} | {size} | {factory} | {ops} | {row[0]:.1f} | {row[1]:.1f} | {row[2]:.3f} | {row[3]:.1f} | {row[4]:.1f} | {row[5]:.3f} |")


def peak_rss_child(args: argparse.Namespace) -> None:
    """Run in a fresh process: peak RSS growth (MiB) over a few training steps."""
    options = {"memory_efficient": True} if args.memory_efficient else {}
    if args.which == "gen":
        torch.manual_seed(0)
        model = load_generated(args.module).build_model(**options)
    else:
        model = reference(WORKLOADS[args.workload][2])
    x, y = torch.randn(args.batch, 3, args.size, args.size), torch.randint(0, 10, (args.batch,))
    fn = step_fn(model, x, y, train=True)
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    for _ in range(args.steps):
        fn()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec
    status = Path("/proc/self/status").read_text()
    peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024
    print(json.dumps({"peak_mib": (peak - before) / 2**20}))


def peak_rss(module: str, workload: str, which: str, batch: int, size: int, steps: int, memory_efficient: bool = False) -> float:
    cmd = [sys.executable, __file__, "--peak", which, "--module", module, "--workload", workload,
           "--batch", str(batch), "--size", str(size), "--steps", str(steps)]  # fmt: skip
    if memory_efficient:
        cmd.append("--memory-efficient")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def memory(steps: int, repeats: int) -> None:
    print("\n### Peak training memory, generated vs reference (CPU, growth of peak RSS over a fresh process's RSS before the first step)\n")
    print("| model | batch | generated MiB | reference MiB | ratio |")
    print("|---|---:|---:|---:|---:|")
    for workload, (batch, size, factory, generated) in WORKLOADS.items():
        if factory.startswith("torchvision") and reference(factory) is None:
            print(f"| {workload} | {batch} | | {factory}: not importable here | |")
            continue
        # alternate the order of the two fresh processes and keep the median of each
        gen, ref = [], []
        for r in range(repeats):
            order = ("gen", "ref") if r == 0 else ("ref", "gen")
            for which in order:
                (gen if which == "gen" else ref).append(peak_rss(generated, workload, which, batch, size, steps))
        g, rf = statistics.median(gen), statistics.median(ref)
        print(f"| {workload} | {batch} | {g:.0f} | {rf:.0f} | {g / rf:.3f} |")


def densenet_bc250_k24() -> Path | None:
    """Generate DenseNet-BC L=250 k=24 from the zoo's L=100 spec (needs archc)."""
    try:
        from archc.backends import emit
        from archc.lower import lower
        from archc.spec.loader import load_spec_text
    except ImportError:
        return None
    text = (ROOT / "specs/cifar/densenet_bc100_k12.yaml").read_text()
    text = text.replace("params: {depth: 100, growth_rate: 12,", "params: {depth: 250, growth_rate: 24,")
    graph = lower(load_spec_text(text, "densenet_bc250_k24.yaml", ROOT / "specs"))
    assert graph.counts.trainable == 15_324_406, graph.counts  # Huang et al.: 15.3M
    path = Path(tempfile.mkdtemp()) / "densenet_bc250_k24_torch.py"
    path.write_text(emit(graph, "torch"))
    return path


def memory_efficient(steps: int, rounds: int, bc250_batch: int) -> None:
    print("\n### DenseNet memory_efficient: peak training memory and step time, efficient vs standard (generated models)\n")
    print("| model | batch | input | standard MiB | efficient MiB | memory ratio | standard s/step | efficient s/step | time ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    bc250 = densenet_bc250_k24()
    cases = [("densenet121", "densenet121", 8, 224)]
    if bc250 is not None:
        cases.insert(0, ("densenet_bc L=250 k=24", str(bc250), bc250_batch, 32))
    else:
        print("| densenet_bc L=250 k=24 | | | archc not importable here | | | | | |")
    for label, module, batch, size in cases:
        mem = {flag: peak_rss(module, "densenet121", "gen", batch, size, steps, flag) for flag in (False, True)}
        torch.manual_seed(1)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        fns = {}
        for flag in (False, True):
            torch.manual_seed(0)
            fns[flag] = step_fn(load_generated(module).build_model(memory_efficient=flag), x, y, train=True)
        t, ratio = alternate({True: fns[True], False: fns[False]}, rounds, 1)
        print(
            f"| {label} | {batch} | {size} | {mem[False]:.0f} | {mem[True]:.0f} | {mem[True] / mem[False]:.3f} "
            f"| {t[False]:.2f} | {t[True]:.2f} | {ratio:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewest rounds; DenseNet-BC-250 at batch 16")
    parser.add_argument("--only", choices=["throughput", "memory", "memory_efficient"])
    parser.add_argument("--peak", choices=["gen", "ref"], dest="which", help=argparse.SUPPRESS)
    parser.add_argument("--module", help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--memory-efficient", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.which:
        peak_rss_child(args)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.only in (None, "throughput"):
        throughput(rounds=4 if args.quick else 10, iters=1)
    if args.only in (None, "memory"):
        memory(steps=2, repeats=1 if args.quick else 2)
    if args.only in (None, "memory_efficient"):
        memory_efficient(steps=2, rounds=2, bc250_batch=16 if args.quick else 64)


if __name__ == "__main__":
    main()
