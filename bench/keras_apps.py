"""Generated Keras vs keras.applications: forward and training-step throughput.

Models in keras.applications' layout come from specs/keras/resnet50.yaml and
specs/keras/densenet121.yaml (DenseNet-121 falls back to the zoo's specs/densenet121.yaml,
whose Keras build has keras.applications' parameter count); a missing spec is reported.
Both models run in one process on the same input, in alternating (ABBA) rounds.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from archc.backends import emit  # noqa: E402
from archc.lower import lower  # noqa: E402
from archc.spec.loader import load_spec  # noqa: E402

CASES = {
    "ResNet50": (["specs/keras/resnet50.yaml"], keras.applications.ResNet50),
    "DenseNet121": (["specs/keras/densenet121.yaml", "specs/densenet121.yaml"], keras.applications.DenseNet121),
}


def generated_model(spec: Path) -> keras.Model:
    path = Path(tempfile.mkdtemp()) / f"{spec.stem}_keras.py"
    path.write_text(emit(lower(load_spec(spec)), "keras"))
    module_spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.build_model()


def alternate(fns: dict[str, object], rounds: int) -> tuple[dict[str, float], float]:
    """Median seconds of each of two functions in alternating ABBA rounds, and the median
    paired ratio first/second (neighbouring runs share the machine's load)."""
    for fn in fns.values():
        fn()  # warm up: tracing and first-call costs
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(rounds):
        for k in keys if r % 2 == 0 else reversed(keys):
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    a, b = (times[k] for k in keys)
    return {k: statistics.median(v) for k, v in times.items()}, statistics.median(x / y for x, y in zip(a, b))


def main(batch: int = 8, rounds: int = 6) -> None:
    print(f"\n### Generated Keras vs keras.applications (keras {keras.__version__}, CPU, batch {batch} at 224x224, images/s)\n")
    print("| model | spec | params gen / app | forward gen | forward app | ratio | train gen | train app | ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, 224, 224, 3)).astype("float32")
    y = rng.integers(0, 1000, size=(batch,))
    for name, (candidates, app) in CASES.items():
        spec = next((ROOT / c for c in candidates if (ROOT / c).exists()), None)
        if spec is None:
            print(f"| {name} | spec missing: {candidates[0]} | | | | | | | |")
            continue
        models = {"gen": generated_model(spec), "app": app(weights=None)}
        counts = " / ".join(f"{m.count_params():,}" for m in models.values())
        for m in models.values():
            m.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
        order = ("app", "gen")  # ratio = app time / gen time: above 1, generated is faster
        fwd, fwd_ratio = alternate({k: (lambda m=models[k]: m.predict_on_batch(x)) for k in order}, rounds)
        train, train_ratio = alternate({k: (lambda m=models[k]: m.train_on_batch(x, y)) for k in order}, rounds)
        print(
            f"| {name} | {spec.relative_to(ROOT)} | {counts} | {batch / fwd['gen']:.1f} | {batch / fwd['app']:.1f} "
            f"| {fwd_ratio:.3f} | {batch / train['gen']:.1f} | {batch / train['app']:.1f} | {train_ratio:.3f} |"
        )


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    main(rounds=4 if quick else 10)
