"""`archc convert SPEC SRC DST`: a PyTorch checkpoint to Keras weights, or back.

The direction follows the file names: a Keras weights file ends in `.weights.h5`;
anything else (`.pth`, `.pt`, `.bin`) is a PyTorch state_dict. Both models are
generated from SPEC in memory, the source file is checked tensor by tensor against
the model SPEC describes (the first missing, unexpected or misshapen tensor, and one
that is sparse, quantized, on the meta device, complex, of integers where the model
holds floats, or holds NaN or inf, is a `SpecError` naming it: the file's fault, not
archc's), the weights are moved through the IR by `archc.interop`, and one random
batch must give the same output in both frameworks before DST is written
(atomically: a temporary file, then a rename).

PyTorch files are read with `torch.load(..., weights_only=True)`: a checkpoint cannot
run code. Keras files are read only through hard links, from data inside the file.
torch and keras are imported here, never by the compiler core.
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
    from archc.verify import build_keras, deep_stack

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
        k_model.load_weights(str(src))  # after _check_keras_file, which refuses what Keras would
        report("read", 1, 1)
        transfer(interop.keras_to_torch, k_model, t_model, graph, report)

    report("check", 0, 1)
    t_model.eval()
    x = np.random.default_rng(seed).standard_normal((2, *graph.input_shape.as_tuple())).astype("float32")
    with torch.no_grad():
        t_result = t_model(torch.from_numpy(x))
    with deep_stack(graph):
        k_result = k_model(interop.channels_last(x), training=False)
    pairs = [(want, keras.ops.convert_to_numpy(got)) for _, want, got in interop.output_pairs(graph, t_result, k_result)]
    if not all(np.isfinite(want).all() for want, _ in pairs):
        raise SpecError(
            f"{src}: with these weights the spec's model computes NaN or inf on the check batch (standard-normal "
            f"inputs), so the conversion cannot be checked; {dst} was not written"
        )
    max_abs = max(float(np.abs(want - got).max()) if want.shape == got.shape else float("inf") for want, got in pairs)
    magnitude = max(float(np.abs(want).max()) for want, _ in pairs)
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

# Where training scripts keep the model's state_dict inside a checkpoint dict.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
SAVE_STATE_DICT = "torch.save(model.state_dict(), PATH)"


def _read_torch(src: Path, model: Any) -> dict[str, Any]:
    """The state_dict in `src` (also under a WRAPPER_KEYS entry, as training scripts save it, and
    with the `module.` prefix of nn.DataParallel removed), after checking that its tensors are
    exactly the model's: the same names and shapes, dense, of the same kind of number, finite."""
    import torch

    loaded = _load_torch(src)
    if isinstance(loaded, dict):
        for key in WRAPPER_KEYS:
            inner = loaded.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                loaded = inner
                break
    if not isinstance(loaded, dict):
        raise SpecError(f"{src}: expected a state_dict (a mapping of names to tensors), found {type(loaded).__name__}")
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            wrappers = ", ".join(repr(k) for k in WRAPPER_KEYS[:-1]) + f" or {WRAPPER_KEYS[-1]!r}"
            raise SpecError(
                f"{src}: expected a state_dict (a mapping of names to tensors), but entry {key!r} is of type "
                f"{type(value).__name__}; a training checkpoint's weights are read from its {wrappers} entry"
            )
    want = model.state_dict()
    if loaded and all(isinstance(k, str) and k.startswith("module.") for k in loaded) and not any(k.startswith("module.") for k in want):
        loaded = {k.removeprefix("module."): v for k, v in loaded.items()}  # saved from nn.DataParallel / DDP
    for key, tensor in want.items():
        if key not in loaded:
            if key.endswith(".num_batches_tracked"):
                loaded[key] = tensor  # a counter, not a weight: older checkpoints lack it
                continue
            raise SpecError(f"{src}: missing tensor {key} {_shape(tensor.shape)}, which the spec's model holds{_HINT}")
        _check_torch_tensor(src, key, loaded[key], tensor)
    for key, tensor in loaded.items():
        if key not in want:
            raise SpecError(f"{src}: unexpected tensor {key} {_shape(tensor.shape)}, which the spec's model lacks{_HINT}")
    return loaded


def _load_torch(src: Path) -> Any:
    """torch.load(weights_only=True): tensors and plain containers only, never code. A refusal
    says what the file holds instead, found by reading its pickle's opcodes, not by running it."""
    import torch

    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # whatever torch.load meets in a file is the file's doing
        if "weights only load failed" not in str(e).lower():
            detail = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().split(". ")[0].splitlines()[0] if str(e).strip() else ""
            raise SpecError(
                f"{src}: torch.load cannot read it ({type(e).__name__}{': ' + detail if detail else ''}); "
                f"convert reads a file written by {SAVE_STATE_DICT}"
            ) from None
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(src)  # PyTorch >= 2.5
    except Exception:  # an older PyTorch, or the legacy (non-zip) format
        found = []
    if any(name.startswith("torch.nn.modules.") for name in found):
        raise SpecError(
            f"{src}: holds a whole pickled model (torch.save(model)), which cannot be loaded without running "
            f"its code; save its weights instead, {SAVE_STATE_DICT}, and convert that file"
        )
    if found and all(name.startswith("numpy.") for name in found):
        raise SpecError(
            f"{src}: holds numpy arrays, which torch.load(weights_only=True) does not read; "
            "save torch tensors: torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, PATH)"
        )
    objects = f"it pickles {', '.join(found[:3])}{' and more' if len(found) > 3 else ''}" if found else "it pickles Python objects"
    raise SpecError(
        f"{src}: not a PyTorch state_dict that can be loaded safely: {objects}, which "
        f"torch.load(weights_only=True) refuses to run; save tensors only: {SAVE_STATE_DICT}"
    )


def _check_torch_tensor(src: Path, key: str, got: Any, want: Any) -> None:
    """`got` can stand for the model's tensor `want`: dense, with real values, the same shape,
    the same kind of number (floating point for weights, integer for counters), finite."""
    import torch

    what = f"tensor {key}"
    if got.layout != torch.strided:
        raise SpecError(f"{src}: {what} is stored in the {_unprefixed(got.layout)} layout, not dense; save it with tensor.to_dense()")
    if got.is_quantized:
        raise SpecError(f"{src}: {what} is quantized ({_unprefixed(got.dtype)}); save the float weights: tensor.dequantize()")
    if got.is_meta:
        raise SpecError(
            f"{src}: {what} is on the meta device and holds no values (saved from a model that was never "
            "given weights?); save the state_dict of a model with real weights"
        )
    if tuple(got.shape) != tuple(want.shape):
        raise SpecError(f"{src}: {what} has shape {_shape(got.shape)} but the spec's model needs {_shape(want.shape)}{_HINT}")
    if got.is_floating_point():
        values = got.detach().to(torch.float64).numpy()  # exact for every floating dtype, bfloat16 included
    elif got.is_complex():
        values = got.detach().to(torch.complex128).numpy()
    else:
        values = got.detach().numpy()
    _check_values(src, what, values, _unprefixed(got.dtype), _unprefixed(want.dtype))


def _unprefixed(value: Any) -> str:
    """A torch dtype or layout as numpy and users spell it: float32, sparse_coo."""
    return str(value).removeprefix("torch.")


def _check_values(src: Path, what: str, values: Any, stored: str, needed: str) -> None:
    """The values of one tensor (a numpy array; `stored` names its dtype in the file) can be given
    to a model variable of dtype `needed`: the same kind of number, finite before and after."""
    import numpy as np

    needed_dtype = np.dtype(needed)
    floating = np.issubdtype(needed_dtype, np.floating)
    fits = np.issubdtype(values.dtype, np.floating) if floating else np.issubdtype(values.dtype, np.integer)
    if not fits:
        kind = "floating-point" if floating else "integer"
        raise SpecError(f"{src}: {what} holds {stored} values but the spec's model needs {kind} values ({needed})")
    if not floating:
        return
    nan, inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if nan or inf:
        counts = " and ".join(f"{n:,} {name}" for n, name in ((nan, "NaN"), (inf, "inf")) if n)
        raise SpecError(
            f"{src}: {what} holds {counts} of {values.size:,} values; only finite weights can be converted "
            "(was the checkpoint saved after training diverged?)"
        )
    with np.errstate(over="ignore"):
        if not np.isfinite(values.astype(needed_dtype)).all():
            raise SpecError(
                f"{src}: {what} holds values beyond the range of {needed}, the spec model's dtype "
                f"(largest |x| = {float(np.abs(values).max()):.3g})"
            )


_HINT = "; was it saved from a model of this spec (with these --set values)?"


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(int(d)) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def keras_file_layout(model: Any) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(dataset path, what it is, shape, dtype) of every variable `model.save_weights` writes, in model
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
            out.append((f"layers/{name}/vars/{i}", f"{layer.name} {var.name}", tuple(int(d) for d in var.shape), str(var.dtype)))
    return out


def _snake(name: str) -> str:
    """keras.src.utils.naming.to_snake_case, which Keras uses for the group names."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _check_keras_file(src: Path, model: Any) -> None:
    """Every variable the model's save_weights would write is in `src` with its shape, stored in
    the file itself (no HDF5 links, external or virtual datasets, which Keras refuses and which
    would read other files), holding finite floating-point values; and nothing else is."""
    import h5py
    import numpy as np

    try:
        with h5py.File(src, "r") as f:
            have: dict[str, tuple[int, ...]] = {}
            f.visititems(lambda name, obj: have.__setitem__(name, tuple(obj.shape)) if isinstance(obj, h5py.Dataset) else None)
            layout = keras_file_layout(model)
            if layout and f.get("layers", getlink=True) is None:
                raise SpecError(f"{src}: not a Keras weights file: it has no layers/ group, which keras.Model.save_weights writes")
            for path, what, shape, dtype in layout:
                dataset = _dataset(src, f, path)
                if dataset is None:
                    raise SpecError(f"{src}: missing tensor {path} ({what}) {_shape(shape)}, which the spec's model holds{_HINT}")
                if dataset.shape != shape:
                    raise SpecError(
                        f"{src}: tensor {path} ({what}) has shape {_shape(dataset.shape)} but the spec's model needs {_shape(shape)}{_HINT}"
                    )
                _check_values(src, f"tensor {path} ({what})", np.asarray(dataset[()]), str(dataset.dtype), dtype)
                have.pop(path, None)
    except OSError as e:
        raise SpecError(f"{src}: not a Keras weights file (HDF5): {e}") from None
    for path, shape in have.items():
        raise SpecError(f"{src}: unexpected tensor {path} {_shape(shape)}, which the spec's model lacks{_HINT}")


def _dataset(src: Path, f: Any, path: str) -> Any:
    """The dataset at `path` (None if there is none), reached through hard links only, its
    values inside the file: HDF5 soft and external links, external storage and virtual
    datasets are refused (as Keras refuses them), never followed or read."""
    import h5py

    node = f
    parts = path.split("/")
    for depth, part in enumerate(parts):
        here = "/".join(parts[: depth + 1])
        link = node.get(part, getlink=True) if isinstance(node, h5py.Group) else None  # looks at the link, follows nothing
        if link is None:
            return None
        if not isinstance(link, h5py.HardLink):
            raise SpecError(f"{src}: {here} is an HDF5 {type(link).__name__}; Keras loads only tensors stored in the file itself")
        node = node[part]
    if not isinstance(node, h5py.Dataset):
        raise SpecError(f"{src}: {path} is an HDF5 group where the spec's model has a tensor")
    if node.external or node.is_virtual:
        how = "external storage" if node.external else "a virtual dataset"
        raise SpecError(f"{src}: {path} keeps its values outside the file ({how}); Keras loads only tensors stored in the file itself")
    return node


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
