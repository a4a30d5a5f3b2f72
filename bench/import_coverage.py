"""How much of torchvision and timm `archc import` rebuilds exactly (issue 22's coverage table).

    PYTHONPATH=$PWD .tvenv/bin/python bench/import_coverage.py [--limit-seconds N] [--only torchvision|timm]

Every row is archc.importer.import_spec with its check (strict state_dict load, outputs within
1e-5 on a random input): `exact yes` means the imported spec rebuilt the model. A refusal is the
importer's one line, its first unsupported construct; any other exception is a row
`archc bug: ...`. In one process: each model is built, imported and dropped in turn.

The models, chosen by these rules before anything is imported (never by whether it imports):

- torchvision: every model of torchvision.models.list_models(module=M) for the classification,
  segmentation and video modules, with default constructor arguments and weights=None
  (segmentation also weights_backbone=None: no download), except
  googlenet and inception_v3, given `aux_logits=False, init_weights=False` (their training-only
  auxiliary heads; the README's import section uses the same arguments).
- torchvision detection backbones: for each detection model of list_models(module=detection)
  (weights=None, weights_backbone=None, so plain BatchNorm2d), the convolutional trunk its heads
  read, as a `DetectionTrunk` (an nn.Sequential subclass) of its children in order: for FPN
  models `model.backbone.body`'s (torchvision's IntermediateLayerGetter, already cut after the
  last layer it returns; the FPN itself returns a dict of maps), for SSD models
  `model.backbone.features`'s. The row's output is the trunk's last feature map.
- timm: for each module of TIMM_MODULES (timm's files that define convolutional networks),
  timm.list_models(module=...) sorted by name, the first TIMM_PER_MODULE (pretrained=False).

Input sizes, to bound the time on a CPU: timm models at 3x128x128 unless their pretrained_cfg
says fixed_input_size, then its input_size; torchvision classification, segmentation and
detection trunks at 3x128x128, except the vision transformers (vit_*, swin_*, maxvit_t: fixed
224 input or window sizes) at 3x224x224; video models at 3x8x112x112, grown to the smallest
clip their weights' meta states (`min_temporal_size`, `min_size`: mvit_* 16x224x224, s3d
14x224x224), except swin3d_* (3x8x224x224, its window sizes).

Time: a model whose import passes --model-seconds (default 300, SIGALRM) is a row `timeout`;
once --limit-seconds (default unbounded) have passed, the remaining models are listed as
skipped, not run.
"""

from __future__ import annotations

import argparse
import gc
import re
import signal
import sys
import time
from collections import Counter, OrderedDict
from pathlib import Path

TIMM_MODULES = (
    "resnet", "resnetv2", "efficientnet", "mobilenetv3", "regnet", "convnext", "densenet", "dla",
    "dpn", "ghostnet", "hrnet", "rexnet", "res2net", "resnest", "selecsls", "sknet", "senet", "vgg",
    "xception", "xception_aligned", "inception_v3", "byobnet", "cspnet", "vovnet", "nfnet",
    "repghost", "hardcorenas", "tresnet",
)  # fmt: skip
TIMM_PER_MODULE = 5
TV_ARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},
}
HERE = Path(__file__).resolve()


def detection_trunk(name: str):  # type: ignore[no-untyped-def]
    """The trunk of torchvision detection model NAME (the module docstring's rule)."""
    import torch
    import torchvision

    class DetectionTrunk(torch.nn.Sequential):
        pass

    model = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    backbone = model.backbone
    parts = backbone.body if hasattr(backbone, "body") else backbone.features
    return DetectionTrunk(OrderedDict(parts.named_children()))


def rows() -> list[tuple[str, str, dict, tuple[int, ...]]]:
    """(group, source, args, input shape) for every model, by the rules above."""
    import timm
    import torchvision.models as tvm

    out = []
    for name in tvm.list_models(module=tvm):
        fixed = name.startswith(("vit_", "swin_", "maxvit_"))
        out.append(("torchvision", f"torchvision:{name}", TV_ARGS.get(name, {}), (3, 224, 224) if fixed else (3, 128, 128)))
    for name in tvm.list_models(module=tvm.segmentation):
        out.append(("torchvision-segmentation", f"torchvision:{name}", {"weights_backbone": None}, (3, 128, 128)))
    for name in tvm.list_models(module=tvm.video):
        meta = next(iter(tvm.get_model_weights(name))).meta
        frames, (height, width) = max(8, meta.get("min_temporal_size") or 0), (max(112, n) for n in meta.get("min_size", (0, 0)))
        shape = (3, 8, 224, 224) if name.startswith("swin3d") else (3, frames, height, width)
        out.append(("torchvision-video", f"torchvision:{name}", {}, shape))
    for name in tvm.list_models(module=tvm.detection):
        out.append(("torchvision-detection", f"{HERE}:detection_trunk", {"name": name}, (3, 128, 128)))
    for module in TIMM_MODULES:
        for name in sorted(timm.list_models(module=module))[:TIMM_PER_MODULE]:
            cfg = timm.get_pretrained_cfg(name)
            cfg = cfg.to_dict() if cfg is not None else {}
            size = tuple(cfg["input_size"]) if cfg.get("fixed_input_size") and cfg.get("input_size") else (3, 128, 128)
            out.append((f"timm-{module}", f"timm:{name}", {}, size))
    return out


class Timeout(Exception):
    pass


def _alarm(signum, frame):  # type: ignore[no-untyped-def]
    raise Timeout


def construct(message: str, source: str) -> str:
    """The refusal without the source and module path: `Class: what`, numbers generalised."""
    text = message.removeprefix(f"cannot import {source}: ")
    parts = text.split(": ")
    if len(parts) >= 2 and re.fullmatch(r"[\w.]+", parts[0]):
        text = ": ".join(parts[1:])  # drop the module path (`layer1.0.bn1`)
    text = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "N", text)
    return text[:140]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit-seconds", type=float, default=None)
    parser.add_argument("--model-seconds", type=int, default=300)
    parser.add_argument("--only", choices=("torchvision", "timm"), default=None)
    parser.add_argument("--names", help="Comma-separated model names: only these of the rule's rows (a rerun).")
    parser.add_argument("--summarize", metavar="FILE", help="Only summarise the rows of an earlier run's output.")
    ns = parser.parse_args()
    if ns.summarize:
        summarize_file(ns.summarize)
        return 0

    import torch

    from archc.errors import SpecError
    from archc.importer import import_spec

    torch.set_num_threads(2)
    todo = [r for r in rows() if ns.only is None or r[0].startswith(ns.only)]
    if ns.names:
        wanted = set(ns.names.split(","))
        todo = [r for r in todo if r[1].split(":")[-1] in wanted or r[2].get("name") in wanted]
    print(f"{len(todo)} models; torch {torch.__version__}", flush=True)
    print("| group | model | exact | spec lines | seconds | first unsupported construct |")
    print("|---|---|---|---|---|---|", flush=True)
    signal.signal(signal.SIGALRM, _alarm)
    start = time.monotonic()
    results = []  # (group, model, status, construct)
    for group, source, args, shape in todo:
        label = source.split(":")[-1] if "detection" not in group else args["name"]
        if ns.limit_seconds is not None and time.monotonic() - start > ns.limit_seconds:
            results.append((group, label, "skipped", ""))
            print(f"| {group} | {label} | skipped (time budget) | | | |", flush=True)
            continue
        t0 = time.monotonic()
        lines, why, status = "", "", "no"
        signal.alarm(ns.model_seconds)
        try:
            result = import_spec(source, shape, args)
            status, lines = "yes", str(result.text.count("\n"))
        except SpecError as e:
            why = construct(str(e), source)
        except Timeout:
            status, why = "timeout", f"over {ns.model_seconds} s"
        except Exception as e:  # a crash of the importer is itself a row
            why = "archc bug: " + " ".join(f"{type(e).__name__}: {e}".split())[:200]
        finally:
            signal.alarm(0)
        seconds = time.monotonic() - t0
        results.append((group, label, status, why))
        print(f"| {group} | {label} | {status} | {lines} | {seconds:.1f} | {why.replace('|', '/')} |", flush=True)
        gc.collect()

    print(f"\ntotal {time.monotonic() - start:.0f} s\n")
    summarize(results)
    return 0


def summarize(results: list[tuple[str, str, str, str]]) -> None:
    """The exact rate per source and the refusals ranked by how many models each blocks."""
    print("| source | exact | run | skipped |")
    print("|---|---|---|---|")
    for source in ("torchvision", "timm"):
        mine = [r for r in results if r[0].split("-")[0] == source]
        if not mine:
            continue
        run = [r for r in mine if r[2] != "skipped"]
        exact = sum(r[2] == "yes" for r in run)
        print(f"| {source} | {exact}/{len(run)} ({100 * exact / max(len(run), 1):.0f}%) | {len(run)} | {len(mine) - len(run)} |")
    print("\n| models blocked | first unsupported construct |")
    print("|---|---|")
    for why, n in Counter(r[3] for r in results if r[2] in ("no", "timeout")).most_common():
        print(f"| {n} | {why.replace('|', '/')} |")


def summarize_file(path: str) -> None:
    """The summary of the rows of an earlier run's output (one that was stopped before its end):
    models it did not reach are not counted."""
    results = []
    for line in Path(path).read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith(("torchvision", "timm")):
            status = "skipped" if cells[2].startswith("skipped") else cells[2]
            # rows of a run before construct() dropped the module path of a module-level refusal
            why = re.sub(r"^[\w.]+: (\w+ (holds|is never called|in a numbered) .*)$", r"\1", cells[5])
            results.append((cells[0], cells[1], status, why))
    print(f"{len(results)} rows in {path}\n")
    summarize(results)


if __name__ == "__main__":
    sys.exit(main())
