"""Which layer kinds get an initialisation rule when `archc import` reads torchvision's
classification models (archc.importer.init), one line per model:

    PYTHONPATH=$PWD .tvenv/bin/python bench/import_init.py [--skip-large] [NAME ...]

Each model is built as `archc import` builds it (no pretrained weights, bench/import_coverage.py's
arguments; NAME ...: only those), and the rules recognised from its tensors are printed per kind, `-` for a kind
whose layers no single rule fits (or whose tensors are too small to decide). Recognition only:
whether the model imports is bench/import_coverage.py's table.
"""

from __future__ import annotations

import sys
import time

LARGE = ("vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_128gf", "regnet_y_32gf", "regnet_y_16gf", "regnet_x_32gf")


def main() -> None:
    import torch
    import torchvision.models as tvm

    from archc.importer.init import recognise, spec_rules, tensors
    from bench.import_coverage import TV_ARGS

    skip = LARGE if "--skip-large" in sys.argv else ()
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    for name in tvm.list_models(module=tvm):
        if name in skip or only and name not in only:
            continue
        torch.manual_seed(0)
        start = time.perf_counter()
        model = tvm.get_model(name, weights=None, **TV_ARGS.get(name, {}))
        present = sorted({kind for kind, _ in tensors(model)})
        found, written = recognise(model), spec_rules(model)
        cells = [f"{kind}: {written[kind]}" if kind in written else f"{kind}: -" for kind in present]
        missing = [f"{k}.{r}" for k, r in sorted(tensors(model)) if r not in found.get(k, {})]
        print(f"{name} | {' | '.join(cells)} | undecided: {', '.join(missing) or 'none'} | {time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    main()
