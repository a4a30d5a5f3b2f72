"""`archc convert SPEC SRC DST`: a PyTorch checkpoint to Keras weights, or back.

The direction follows the file names: a Keras weights file ends in `.weights.h5`;
anything else (`.pth`, `.pt`, `.bin`) is a PyTorch state_dict. Both models are
generated from SPEC in memory, the source file is checked tensor by tensor against
the model SPEC describes (the first missing, unexpected or misshapen tensor is a
`SpecError`: the checkpoint does not fit the spec), the weights are moved through
the IR by `archc.interop`, and one random batch must give the same output in both
frameworks before DST is written (atomically: a temporary file, then a rename).

PyTorch files are read with `torch.load(..., weights_only=True)`: a checkpoint cannot
run code. torch and keras are imported here, never by the compiler core.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archc.errors import SpecError
from archc.ir.graph import Graph

KERAS_SUFFIX = ".weights.h5"
TORCH_SUFFIXES = (".pth", ".pt", ".bin")

# progress(step, done, total), for the steps build, read, transfer, check and write
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Result:
    direction: str  # torch->keras | keras->torch
    tensors: int  # tensors written (PyTorch state_dict entries or Keras variables)
    max_abs: float  # max |torch - keras| of the output on the check batch
    magnitude: float  # max |torch| of that output
    tolerance: float


def kind_of(path: str | Path) -> str:
    """'keras' for a .weights.h5 file, 'torch' for .pth/.pt/.bin; else a SpecError."""
    name = str(path).lower()
    if name.endswith(KERAS_SUFFIX):
        return "keras"
    if name.endswith(TORCH_SUFFIXES):
        return "torch"
    if name.endswith((".h5", ".keras")):
        raise SpecError(f"{path}: Keras weights files end in {KERAS_SUFFIX} (what keras.Model.save_weights writes)")
    raise SpecError(
        f"{path}: cannot tell the framework from the name; use {KERAS_SUFFIX} for Keras weights "
        f"or {', '.join(TORCH_SUFFIXES)} for a PyTorch state_dict"
    )


def convert(
    graph: Graph, src: Path, dst: Path, *, tolerance: float = 1e-4, seed: int = 0, progress: Progress | None = None
) -> Result:
    """Convert `src` to `dst` for the model of `graph`; nothing is written unless the outputs agree."""
    report = progress or (lambda step, done, total: None)
    source, target = kind_of(src), kind_of(dst)
    if source == target:
        raise SpecError(f"{src} and {dst} are both {source} files; convert goes from PyTorch to Keras or back")
    if not src.is_file():
        raise SpecError(f"{src}: file not found")
    import numpy as np
    import torch

    from archc import interop
    from archc.api import load_module
    from archc.frameworks import import_quietly
    from archc.verify import build_keras

    keras = import_quietly("keras")  # without TensorFlow's start-up log lines

    tm, km = load_module(graph, "torch"), load_module(graph, "keras")
    report("build", 0, 2)
    t_model = tm.build_model()
    report("build", 1, 2)
    k_model = build_keras(km, graph)
    report("build", 2, 2)
    if source == "torch":
        report("read", 0, 1)
        state = _read_torch(src, t_model)
        t_model.load_state_dict(state, strict=False)  # strict checking is _read_torch's, with better messages
        report("read", 1, 1)
        transfer(interop.torch_to_keras, t_model, k_model, graph, report)
    else:
        report("read", 0, 1)
        _check_keras_file(src, k_model)
        k_model.load_weights(str(src))
        report("read", 1, 1)
        transfer(interop.keras_to_torch, k_model, t_model, graph, report)

    report("check", 0, 1)
    t_model.eval()
    x = np.random.default_rng(seed).standard_normal((2, *graph.input_shape.as_tuple())).astype("float32")
    with torch.no_grad():
        want = t_model(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(k_model(x.transpose(0, 2, 3, 1), training=False))
    max_abs = float(np.abs(want - got).max()) if want.shape == got.shape else float("inf")
    magnitude = float(np.abs(want).max())
    if not max_abs <= tolerance * max(1.0, magnitude):
        raise ConversionMismatch(
            f"the converted model disagrees with the source: output max |torch - keras| {max_abs:.2e} > "
            f"{tolerance:g} x max(1, {magnitude:.2e}); {dst} was not written (run archc verify {graph.source})"
        )
    report("check", 1, 1)

    report("write", 0, 1)
    with _atomic(dst) as tmp:
        if target == "keras":
            k_model.save_weights(str(tmp))
            tensors = sum(len(layer.weights) for layer in k_model.layers)
        else:
            state = t_model.state_dict()
            torch.save(state, tmp)
            tensors = len(state)
    report("write", 1, 1)
    return Result(f"{source}->{target}", tensors, max_abs, magnitude, tolerance)


class ConversionMismatch(RuntimeError):
    """Both models hold the checkpoint's weights but compute different functions: a bug in archc."""


def transfer(move: Callable[..., None], a: Any, b: Any, graph: Graph, report: Progress) -> None:
    """`move(a, b, graph)` (an `archc.interop` copy), reporting each weighted node as a transfer step."""
    total = sum(1 for node in graph.nodes if node.op.weight_names())
    done = 0

    def step(node_id: str) -> None:
        nonlocal done
        done += 1
        report("transfer", done, total)

    report("transfer", 0, total)
    move(a, b, graph, on_node=step)


# --- reading and checking the source file ---------------------------------------------------


def _read_torch(src: Path, model: Any) -> dict[str, Any]:
    """The state_dict in `src` (also under a "state_dict" or "model" key, as training scripts
    save it), after checking that its tensors are exactly the model's, with the same shapes."""
    import pickle

    import torch

    try:
        loaded = torch.load(src, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SpecError(
            f"{src}: not a PyTorch state_dict that can be loaded safely (torch.load(weights_only=True): {first})"
        ) from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model"):
            if isinstance(loaded.get(key), dict) and all(isinstance(v, torch.Tensor) for v in loaded[key].values()):
                loaded = loaded[key]
                break
    if not (isinstance(loaded, dict) and all(isinstance(v, torch.Tensor) for v in loaded.values())):
        raise SpecError(f"{src}: expected a state_dict (a mapping of names to tensors), found {type(loaded).__name__}")
    want = model.state_dict()
    for key, tensor in want.items():
        if key not in loaded:
            if key.endswith(".num_batches_tracked"):
                loaded[key] = tensor  # a counter, not a weight: older checkpoints lack it
                continue
            raise SpecError(f"{src}: missing tensor {key} {_shape(tensor.shape)}, which the spec's model holds{_HINT}")
        if tuple(loaded[key].shape) != tuple(tensor.shape):
            raise SpecError(
                f"{src}: tensor {key} has shape {_shape(loaded[key].shape)} but the spec's model needs "
                f"{_shape(tensor.shape)}{_HINT}"
            )
    for key, tensor in loaded.items():
        if key not in want:
            raise SpecError(f"{src}: unexpected tensor {key} {_shape(tensor.shape)}, which the spec's model lacks{_HINT}")
    return loaded


_HINT = "; was it saved from a model of this spec (with these --set values)?"


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def keras_file_layout(model: Any) -> list[tuple[str, str, tuple[int, ...]]]:
    """(dataset path, what it is, shape) of every variable `model.save_weights` writes, in model
    order. Keras 3 names a layer's group by its class, numbered in order (`layers/conv2d_3/vars/0`),
    not by the layer's name."""
    used: dict[str, int] = {}
    out = []
    for layer in model.layers:
        name = _snake(type(layer).__name__)
        if name in used:
            used[name] += 1
            name = f"{name}_{used[name]}"
        else:
            used[name] = 0
        for i, var in enumerate([*layer.trainable_weights, *layer.non_trainable_weights]):
            out.append((f"layers/{name}/vars/{i}", f"{layer.name} {var.name}", tuple(int(d) for d in var.shape)))
    return out


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case, which Keras uses for the group names."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _check_keras_file(src: Path, model: Any) -> None:
    import h5py

    try:
        with h5py.File(src, "r") as f:
            have: dict[str, tuple[int, ...]] = {}
            f.visititems(lambda name, obj: have.__setitem__(name, tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None)
    except OSError as e:
        raise SpecError(f"{src}: not a Keras weights file (HDF5): {e}") from None
    layout = keras_file_layout(model)
    for path, what, shape in layout:
        if path not in have:
            raise SpecError(f"{src}: missing tensor {path} ({what}) {_shape(shape)}, which the spec's model holds{_HINT}")
        if have[path] != shape:
            raise SpecError(
                f"{src}: tensor {path} ({what}) has shape {_shape(have[path])} but the spec's model needs {_shape(shape)}{_HINT}"
            )
    expected = {path for path, _, _ in layout}
    for path, shape in have.items():
        if path not in expected:
            raise SpecError(f"{src}: unexpected tensor {path} {_shape(shape)}, which the spec's model lacks{_HINT}")


@contextmanager
def _atomic(dst: Path) -> Iterator[Path]:
    """A temporary path beside `dst` (same suffix, as Keras insists on .weights.h5), renamed onto
    `dst` when the block succeeds and removed when it fails."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    suffix = KERAS_SUFFIX if str(dst).lower().endswith(KERAS_SUFFIX) else dst.suffix
    fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp" + suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; weights are an ordinary file
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
