"""Run by tests/test_keras_backends.py, once per Keras backend (KERAS_BACKEND is read when
keras is first imported, so each backend needs its own interpreter).

For each model, `archc verify` in eval mode (generated Keras module, torch -> keras
transfer, every block compared); for the first, also the transfer back (keras -> torch
gives every tensor exactly) and one training step of the Keras model on this backend. Prints one JSON
object: {"backend": ..., "results": [{"spec", "ok", "detail"}]}.

Usage: KERAS_BACKEND=jax python tests/keras_backend_check.py SPEC[::PATH=VALUE...] ...
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from archc import api, interop  # noqa: E402
from archc import verify as verifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def check(spec: str, overrides: list[str], full: bool) -> dict:
    graph = api.to_ir(ROOT / spec, overrides)
    report = verifier.verify(graph, batch=2)
    if not report.ok:
        return {"spec": spec, "ok": False, "detail": verifier.to_table(report)}
    if not full:
        return {"spec": spec, "ok": True, "detail": "verified"}
    tm, km = api.load_module(graph, "torch"), api.load_module(graph, "keras")
    torch.manual_seed(1)
    original = tm.build_model()
    verifier.randomize(original, graph, seed=1)
    k_model = km.build_model()
    interop.torch_to_keras(original, k_model, graph)
    copy = tm.build_model()
    interop.keras_to_torch(k_model, copy, graph)
    want, got = original.state_dict(), copy.state_dict()
    differ = [k for k in want if not k.endswith("num_batches_tracked") and not torch.equal(want[k], got[k])]
    if differ:
        return {"spec": spec, "ok": False, "detail": f"keras -> torch changed {differ[:3]}"}
    # one training step on this backend: the loss is finite and the weights move
    x = np.random.default_rng(0).standard_normal((2, *km.INPUT_SHAPE)).astype("float32")
    y = np.array([0, 1])
    k_model.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=not graph_has_softmax(k_model)))
    before = [keras.ops.convert_to_numpy(w).copy() for w in k_model.trainable_weights]
    loss = float(k_model.train_on_batch(x, y))
    moved = any(not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, k_model.trainable_weights))
    ok = np.isfinite(loss) and moved
    return {"spec": spec, "ok": bool(ok), "detail": f"train_on_batch loss {loss:.4g}, weights moved: {moved}"}


def graph_has_softmax(model) -> bool:
    return getattr(model.layers[-1], "activation", None) is keras.activations.softmax


def run(args: list[str]) -> dict:
    results = []
    for i, arg in enumerate(args):
        spec, *overrides = arg.split("::")
        try:
            results.append(check(spec, overrides, full=i == 0))
        except Exception as e:  # reported, so the test names the model and the backend
            results.append({"spec": spec, "ok": False, "detail": f"{type(e).__name__}: {e}"})
    return {"backend": keras.backend.backend(), "results": results}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
