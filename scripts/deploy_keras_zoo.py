"""The deploy Keras module against the training Keras model for every zoo spec, as a table (make test-slow
runs the same check on every zoo spec, tests/test_deploy.py): archc.deploy.keras_check at height and width at most 128 where
Keras builds the spec so. Prints a markdown table; exit 1 if any spec differs by more than
1e-4 of its outputs' scale or fails.

    .venv/bin/python scripts/deploy_keras_zoo.py [SPEC ...]   # default: every specs/**/*.yaml
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archc.api import load_spec  # noqa: E402
from archc.deploy.keras_check import check_keras  # noqa: E402
from archc.verify import smaller  # noqa: E402

TOLERANCE = 1e-4


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted((ROOT / "specs").rglob("*.yaml"))
    print("| spec | input | params train / deploy | rewrites | max rel | s |")
    print("|---|---|---|---:|---:|---:|")
    failed = []
    for path in paths:
        name = path.resolve().relative_to(ROOT).as_posix()
        start = time.perf_counter()
        try:
            result = check_keras(smaller(load_spec(path)))
        except Exception as error:  # a failure is a row of the table, and the run goes on
            traceback.print_exc(file=sys.stderr)
            print(f"| {name} | | | | {type(error).__name__} | {time.perf_counter() - start:.0f} |", flush=True)
            failed.append(name)
            continue
        seconds = time.perf_counter() - start
        size = "x".join(map(str, result.input[1:]))
        print(
            f"| {name} | {size} | {result.train_params:,} / {result.deploy_params:,} | {len(result.steps)} "
            f"| {result.max_rel:.1e} | {seconds:.0f} |",
            flush=True,
        )
        if not (result.max_rel <= TOLERANCE and result.deploy_params <= result.train_params):
            failed.append(name)
    print(f"\n{len(paths) - len(failed)} of {len(paths)} specs: deploy Keras outputs equal to the training Keras outputs (<= {TOLERANCE:g})")
    if failed:
        print("failed: " + ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
