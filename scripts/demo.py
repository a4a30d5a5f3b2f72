"""Import generated torch and keras modules, run a forward pass in each, compare with the IR.

Usage: python scripts/demo.py TORCH_MODULE.py KERAS_MODULE.py
"""

import importlib.util
import os
import sys

from archc.frameworks import import_quietly

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counts(trainable: int, non_trainable: int) -> str:
    return (
        f"{trainable:,} trainable + {non_trainable:,} non-trainable (BatchNorm statistics) "
        f"= {trainable + non_trainable:,} parameters"
    )


def main(torch_path: str, keras_path: str) -> None:
    import numpy as np
    import torch

    tm = load(torch_path)
    model = tm.build_model().eval()
    x = torch.randn(2, *tm.INPUT_SHAPE)
    with torch.no_grad():
        y = model(x)
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    print(f"torch  {torch_path}: input {tuple(x.shape)} -> output {tuple(y.shape)}")
    print(f"       {counts(trainable, buffers)}")

    import_quietly("keras")  # before the Keras module imports it: without TensorFlow's start-up log lines
    km = load(keras_path)
    kmodel = km.build_model()
    xk = np.random.default_rng(0).standard_normal((2, *km.INPUT_SHAPE)).astype("float32")
    yk = kmodel(xk, training=False)
    k_trainable = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    k_fixed = sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights)
    print(f"keras  {keras_path}: input {xk.shape} -> output {tuple(yk.shape)}")
    print(f"       {counts(k_trainable, k_fixed)}")
    print(
        "Non-trainable parameters are BatchNorm running means and variances: PyTorch keeps them as\n"
        "buffers (model.parameters() omits them), Keras counts them in count_params() "
        f"({kmodel.count_params():,} here)."
    )
    if tuple(y.shape) != tuple(yk.shape):
        sys.exit("output shapes differ between the backends")
    if (trainable, buffers) != (k_trainable, k_fixed):
        sys.exit("parameter counts differ between the backends")


if __name__ == "__main__":
    main(*sys.argv[1:3])
