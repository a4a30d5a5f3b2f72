"""`archc deploy` at inference: the deploy PyTorch module against the reference in eval mode,
against torch.fx's conv-bn fusion of the reference, and both after torch.jit.freeze +
optimize_for_inference; latency at batch 1 and throughput at batch 32.

Every model of a row holds the same weights (the reference's, moved by archc.deploy.weights
into the deploy module) and the outputs are checked equal before timing. The variants of a
row run in one process in alternating rounds (A B B A), and each ratio is the median of the
per-round ratios, so machine noise hits both sides alike. Needs torchvision and timm (.tvenv):

    PYTHONPATH=. .tvenv/bin/python bench/deploy.py [--quick] [--device cuda] [MODEL ...]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from abba import ratio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# model -> (spec, reference factory)
MODELS = {
    "resnet50": ("specs/resnet50.yaml", "torchvision.resnet50"),
    "mobilenet_v3_large": ("specs/mobilenet_v3_large.yaml", "torchvision.mobilenet_v3_large"),
    "efficientnet_b0": ("specs/efficientnet_b0.yaml", "torchvision.efficientnet_b0"),
    "convnext_tiny": ("specs/convnext_tiny.yaml", "torchvision.convnext_tiny"),
    "repvgg_a0": ("specs/repvgg_a0.yaml", "timm.repvgg_a0"),
}


def reference(factory: str) -> torch.nn.Module:
    library, name = factory.split(".")
    if library == "timm":
        import timm

        return timm.create_model(name, pretrained=False)
    import torchvision

    return getattr(torchvision.models, name)()


def deploy_module(spec_path: str, ref: torch.nn.Module) -> torch.nn.Module:
    """The deploy form of the spec, holding the reference's weights moved by archc."""
    import numpy as np

    from archc.api import load_module, load_spec
    from archc.deploy.run import forms
    from archc.deploy.weights import deploy_state

    train, the_plan, graph = forms(load_spec(ROOT / spec_path))
    state = {k: v.detach().double().numpy() for k, v in ref.state_dict().items()}
    moved = deploy_state(train, graph, state, the_plan.merges)
    model = load_module(graph, "torch").build_model()
    target = model.state_dict()
    model.load_state_dict({k: torch.from_numpy(np.asarray(moved.get(k, state.get(k)))).to(v.dtype) for k, v in target.items()})
    return model.eval()


def frozen(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    traced = torch.jit.trace(model, x, check_trace=False)
    return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rounds, reps = (3, 3) if args.quick else (7, 10)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; ratio = other / deploy (>1: deploy faster)")
    print(f"{'model':<20}{'batch':>6}{'deploy ms':>11}{'vs eval':>9}{'vs fx fuse':>12}{'both frozen':>13}")
    for name in args.models:
        spec_path, factory = MODELS[name]
        ref = reference(factory).eval()
        with torch.no_grad():
            for m in ref.modules():
                if isinstance(m, torch.nn.BatchNorm2d):  # trained-like statistics
                    m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0)
        dep = deploy_module(spec_path, ref)
        try:
            from torch.fx.experimental.optimization import fuse

            fused = fuse(copy.deepcopy(ref))
        except Exception as e:  # noqa: BLE001 - a model torch.fx cannot trace: say so in the row
            print(f"{name}: torch.fx cannot fuse it ({type(e).__name__})", file=sys.stderr)
            fused = None
        device = torch.device(args.device)
        ref, dep = ref.to(device), dep.to(device)
        fused = fused.to(device) if fused is not None else None
        for batch in (1, 32):
            x = torch.randn(batch, 3, 224, 224, device=device)
            n = reps if batch == 1 else max(1, reps // 5)
            sync = torch.cuda.synchronize if x.is_cuda else lambda: None
            fdep, fref = frozen(dep, x), frozen(ref, x)
            with torch.inference_mode():
                torch.testing.assert_close(dep(x), ref(x), rtol=1e-3, atol=1e-3)
                ms, _, vs_eval = ratio(lambda: dep(x), lambda: ref(x), rounds, n, sync)
                vs_fx = ratio(lambda: dep(x), lambda: fused(x), rounds, n, sync)[2] if fused is not None else float("nan")
                vs_frozen = ratio(lambda: fdep(x), lambda: fref(x), rounds, n, sync)[2]
            print(f"{name:<20}{batch:>6}{ms * 1000:>11.1f}{vs_eval:>9.2f}{vs_fx:>12.2f}{vs_frozen:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
