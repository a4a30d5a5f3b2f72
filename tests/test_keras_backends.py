"""Generated Keras modules, archc.interop and archc verify under each Keras 3 backend.

Keras picks its backend once, at import, so each backend runs tests/keras_backend_check.py
in its own interpreter (the suite's own backend, tensorflow, in the test process): a CIFAR ResNet (option-A shortcuts), a DenseNet (dense
concatenation, transitions), keras.applications' ResNet50V2 layout (pre-activation,
'same' padding, max-pool shortcuts) at a small input and the helper layers of archc's exact
Keras forms (tests/keras_exact.yaml), each verified against PyTorch; the first also
transferred back and trained for one step."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, need

need("torch")
need("keras")

# Small members of each family (the backends' eager dispatch, not arithmetic, sets the time).
MODELS = [
    "specs/cifar/resnet.yaml::params.depth=8",
    "specs/cifar/densenet_bc100_k12.yaml::params.depth=16",
    # ResNet50V2's layout (pre-activation, conv and max-pool shortcuts) in four narrow stages
    "specs/keras/resnet50v2.yaml::input=[3, 32, 32]::layers.conv2.repeat=2"
    + "".join(f"::layers.conv{s}.repeat=1" for s in (3, 4, 5))
    + "".join(f"::layers.conv{s}.with.filters=16" for s in (2, 3, 4, 5)),
    "tests/keras_exact.yaml",
]
BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_backend(backend):
    need(BACKENDS[backend])
    import keras

    if keras.backend.backend() == backend:  # this interpreter has it already (the suite's default)
        from keras_backend_check import run as run_checks

        check(backend, run_checks(MODELS))
        return
    env = {
        **os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
        # XLA compiles every eager jax op and traced train step; unoptimised code compiles ~5x faster
        "XLA_FLAGS": "--xla_backend_optimization_level=0", "JAX_PLATFORMS": "cpu",
    }  # fmt: skip
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests/keras_backend_check.py"), *MODELS],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    check(backend, json.loads(run.stdout.strip().splitlines()[-1]))


def check(backend, report):
    assert report["backend"] == backend
    assert [r["spec"] for r in report["results"]] == [m.split("::")[0] for m in MODELS]
    failed = [f"{r['spec']}: {r['detail']}" for r in report["results"] if not r["ok"]]
    assert not failed, f"KERAS_BACKEND={backend}:\n" + "\n".join(failed)
