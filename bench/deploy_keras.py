"""`archc deploy` in Keras: the deploy Keras module of each keras-layout spec (specs/keras/)
against keras.applications' model, at inference; latency at batch 1 and throughput at batch 32.

Both models of a row hold the same weights: keras.applications' (random, batch-norm statistics
made non-trivial as tests/test_keras_applications.py does) are copied by layer name into the
generated training Keras model, from it into the training PyTorch model (archc.interop), moved
to the deploy form by archc (archc.deploy.run.deploy_models: folds, merges), and copied into
the deploy Keras module (archc.interop, as `archc convert` does). The logits are checked equal
(to 1e-4 of their scale, or 4x keras.applications' own float32
rounding, its float32 logits against the same model in float64, where that is larger) before timing. Both sides are timed without the final
softmax (keras.applications' with classifier_activation=None; the deploy model up to its
logits layer) and called the same way: a `tf.function` of `model(x, training=False)` (graph
mode, as `predict` runs; no XLA). Alternating A B B A rounds in one process (bench/abba.py),
ratio = keras.applications / deploy per round, median (>1: the deploy module is faster):

    .venv/bin/python bench/deploy_keras.py [--quick] [MODEL ...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]
from abba import ratio  # noqa: E402
from test_keras_applications import CASES, LOGITS, leaves, paired, randomize  # noqa: E402 - the tests' weight pairing

MODELS = {Path(spec).stem: (spec, constructor, renames) for spec, constructor, renames in CASES}
BOUND = 1e-4  # |logits difference| / max(1, |logits|), or 4x keras.applications' own float32 rounding where that is larger


def models(spec_path: str, constructor: str, renames) -> tuple[keras.Model, keras.Model, keras.Model, tuple[int, ...]]:
    """keras.applications' model (logits), the same in float64, and the deploy Keras module
    (up to its logits), with the same weights."""
    from archc.api import load_module, load_spec
    from archc.deploy.run import deploy_models, forms
    from archc.interop import keras_to_torch, torch_to_keras

    train, the_plan, graph = forms(load_spec(ROOT / spec_path))
    reference = getattr(keras.applications, constructor)(weights=None, classifier_activation=None)
    randomize(reference, np.random.default_rng(0))
    keras.config.set_dtype_policy("float64")
    try:
        reference64 = getattr(keras.applications, constructor)(weights=None, classifier_activation=None)
    finally:
        keras.config.set_dtype_policy("float32")
    reference64.set_weights(reference.get_weights())
    for layer in leaves(reference64):
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    k_train = load_module(train, "keras").build_model()
    ref_layers, our_layers, pairs = paired(train, k_train, reference, renames)
    for n, layer in our_layers.items():
        layer.set_weights(ref_layers[pairs[n]].get_weights())
        if hasattr(layer, "finalize_state"):
            layer.finalize_state()
    t_train = load_module(train, "torch").build_model().eval()
    keras_to_torch(k_train, t_train, train)
    d_model, _ = deploy_models(train, graph, the_plan, t_train)
    k_deploy = load_module(graph, "keras").build_model()
    torch_to_keras(d_model, k_deploy, graph)
    logits = keras.Model(k_deploy.input, k_deploy.get_layer(LOGITS.get(constructor, "predictions")).output)
    return reference, reference64, logits, tuple(k_deploy.input_shape[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    args = parser.parse_args()
    rounds, reps = (3, 3) if args.quick else (7, 10)
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, CPU, {os.cpu_count()} cores; "
          f"tf.function(model(x, training=False)); ratio = keras.applications / deploy (>1: deploy faster)")  # fmt: skip
    print(f"{'model':<18}{'input':>10}{'params app / deploy':>26}{'max rel':>10}{'own':>9}{'batch':>6}{'deploy ms':>11}{'app ms':>9}{'ratio':>7}")
    for name in args.models:
        ref, ref64, dep, shape = models(*MODELS[name])
        counts = f"{ref.count_params():,} / {dep.count_params():,}"
        calls = {m: tf.function(lambda x, m=m: m(x, training=False)) for m in (ref, dep)}
        for batch in (1, 32):
            x = tf.constant(np.random.default_rng(1).standard_normal((batch, *shape)).astype("float32"))
            want, got = (calls[m](x).numpy().astype(np.float64) for m in (ref, dep))
            # the float64 reference on the first two inputs (TensorFlow's float64 depthwise 7x7
            # convs on CPU take over 20 minutes for ConvNeXt at batch 32)
            exact = np.asarray(ref64(tf.cast(x[:2], "float64"), training=False))
            rel = np.abs(want - got).max() / max(1.0, np.abs(want).max())
            own = np.abs(want[:2] - exact).max() / max(1.0, np.abs(want[:2]).max())
            if not rel <= max(BOUND, 4 * own):
                raise SystemExit(f"{name}: the deploy module's logits differ from keras.applications' by {rel:.3g} (its own float32 rounding: {own:.3g})")
            ms, app_ms, r = ratio(lambda: calls[dep](x), lambda: calls[ref](x), rounds, reps if batch == 1 else max(1, reps // 5))
            size = "x".join(map(str, shape[:2]))
            print(f"{name:<18}{size:>10}{counts:>26}{rel:>10.1e}{own:>9.1e}{batch:>6}{ms * 1000:>11.1f}{app_ms * 1000:>9.1f}{r:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
