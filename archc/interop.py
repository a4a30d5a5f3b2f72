"""Copy weights between the generated PyTorch and Keras models of one spec.

Train in one framework, deploy in the other:

    from archc.interop import torch_to_keras, keras_to_torch
    torch_to_keras(torch_model, keras_model, "specs/resnet50.yaml")
    keras_to_torch(keras_model, torch_model, "specs/resnet50.yaml")

The transfer is driven by the IR, not by layer order: every weighted node's id
is its PyTorch module path (`layer1.0.conv1`, so its state_dict keys are
`layer1.0.conv1.weight`, ...) and, with dots as underscores, its Keras layer
name (`layer1_0_conv1`). Layouts are converted on the way: conv kernels
(O, I, *k) <-> (*k, I, O) at every rank (OIHW <-> HWIO in 2-D; grouped convs included), dense
kernels transposed, and where a
flatten of a feature map feeds a layer with per-feature tensors (a dense layer, a flat
batch norm or layer norm, through the ops that keep the features' order: `Op.KEEPS_FEATURE_ORDER`),
those tensors' feature axes (`Op.feature_axis`) are reordered between PyTorch's C,H,W and
Keras' H,W,C. A weight missing on either
side, an unexpected one, or a shape that disagrees with the spec is an error.
Nothing here imports torch or keras until a model is handed over.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from archc import ops
from archc.api import to_ir
from archc.ir.graph import Graph, Node, keras_name
from archc.ops import Shape
from archc.spec.loader import LoadedSpec

__all__ = ["TransferError", "keras_name", "keras_to_torch", "torch_to_keras"]


class TransferError(ValueError):
    """The models do not hold the weights their spec says they should."""


def torch_key(node_id: str, name: str) -> str:
    """The state_dict key of a layer's tensor; a bare parameter (layer_scale) is its own path."""
    return f"{node_id}.{name}" if name else node_id


def flattened_map(graph: Graph, node_id: str) -> Shape | None:
    """The (C, H, W) map whose flattening gives the features at `node_id`, when the
    flatten reorders them (H*W > 1) and only ops that keep the features' order follow it;
    else None."""
    nodes = {n.id: n for n in graph.nodes}
    while node_id in nodes:
        node = nodes[node_id]
        if isinstance(node.op, ops.Flatten):
            src = nodes[node.inputs[0]].shape if node.inputs[0] in nodes else graph.input_shape
            return src if src.spatial and math.prod(src.size) > 1 else None
        if node.shape.spatial or not node.op.KEEPS_FEATURE_ORDER:
            return None
        node_id = node.inputs[0]
    return None


# --- one weighted node: its tensors in Keras' order, and the layout conversions ---------------


@dataclass(frozen=True)
class _Slot:
    node: Node
    names: tuple[str, ...]  # PyTorch attribute names, in Keras' get_weights() order
    flat: Shape | None  # features flattened from this (C, H, W) map


def _slots(graph: Graph) -> list[_Slot]:
    slots = []
    for node in graph.nodes:
        names = node.op.weight_names()
        if names:
            slots.append(_Slot(node, names, flattened_map(graph, node.inputs[0]) if not node.shape.spatial else None))
    return slots


def keras_feature_order(shape: Shape) -> np.ndarray:
    """Keras' flat features of a map (H,W,C; L,C; D,H,W,C), as indices of PyTorch's (C,H,W; C,L; C,D,H,W)."""
    return channels_last(np.arange(shape.numel()).reshape(1, *shape.as_tuple())).reshape(-1)


def _feature_axis(slot: _Slot, name: str) -> int | None:
    return None if slot.flat is None else slot.node.op.feature_axis(name)


def _to_keras(slot: _Slot, name: str, w: np.ndarray) -> np.ndarray:
    axis = _feature_axis(slot, name)
    if axis is not None:
        w = np.take(w, keras_feature_order(slot.flat), axis=axis)  # type: ignore[arg-type]
    return slot.node.op.to_keras(name, w)


def _to_torch(slot: _Slot, name: str, k: np.ndarray) -> np.ndarray:
    w = slot.node.op.to_torch(name, k)
    axis = _feature_axis(slot, name)
    if axis is not None:
        w = np.take(w, np.argsort(keras_feature_order(slot.flat)), axis=axis)  # type: ignore[arg-type]
    return w


# --- the two directions ------------------------------------------------------------------------


def torch_to_keras(
    torch_model: Any, keras_model: Any, spec: str | Path | LoadedSpec | Graph, on_node: Callable[[str], None] | None = None
) -> None:
    """Copy every weight of `torch_model` into `keras_model`, both generated from `spec`
    (a spec path, a loaded spec or its IR graph); `on_node(node_id)` follows each weighted node."""
    graph = to_ir(spec)
    slots = _slots(graph)
    state = _torch_state(torch_model, slots, graph)
    layers = _keras_layers(keras_model, slots, graph)
    for slot in slots:
        layer = layers[keras_name(slot.node.id)]
        new = []
        for name, dest in zip(slot.names, layer.weights):  # the variables' shapes and dtypes, not their values
            value = _to_keras(slot, name, state[torch_key(slot.node.id, name)].detach().cpu().numpy())
            _check_shape(slot, name, value.shape, tuple(dest.shape), "keras")
            new.append(value.astype(dest.dtype, copy=False))
        layer.set_weights(new)
        if hasattr(layer, "finalize_state"):  # preprocessing layers (Normalization) derive state from their weights
            layer.finalize_state()
        if on_node:
            on_node(slot.node.id)


def keras_to_torch(
    keras_model: Any, torch_model: Any, spec: str | Path | LoadedSpec | Graph, on_node: Callable[[str], None] | None = None
) -> None:
    """Copy every weight of `keras_model` into `torch_model`, both generated from `spec`."""
    import torch

    graph = to_ir(spec)
    slots = _slots(graph)
    state = _torch_state(torch_model, slots, graph)
    layers = _keras_layers(keras_model, slots, graph)
    for slot in slots:
        for name, value in zip(slot.names, layers[keras_name(slot.node.id)].get_weights()):
            key = torch_key(slot.node.id, name)
            value = _to_torch(slot, name, value)
            _check_shape(slot, name, value.shape, tuple(state[key].shape), "torch")
            state[key] = torch.from_numpy(np.ascontiguousarray(value)).to(state[key].dtype)
        if on_node:
            on_node(slot.node.id)
    torch_model.load_state_dict(state, strict=True)


def _check_shape(slot: _Slot, name: str, got: tuple[int, ...], want: tuple[int, ...], side: str) -> None:
    if tuple(got) != tuple(want):
        raise TransferError(
            f"{slot.node.id}.{name}: the source gives shape {tuple(got)} but the {side} model holds {tuple(want)}; "
            "were both models generated from this spec with the same build_model() arguments?"
        )


def _torch_state(model: Any, slots: list[_Slot], graph: Graph) -> dict[str, Any]:
    """The state_dict, after checking that it holds exactly the tensors the IR expects."""
    state = model.state_dict()
    have = {k for k in state if not k.endswith(".num_batches_tracked")}
    want = {torch_key(s.node.id, n) for s in slots for n in s.names}
    _check_sets("PyTorch state_dict", have, want, graph)
    return state


def _keras_layers(model: Any, slots: list[_Slot], graph: Graph) -> dict[str, Any]:
    """Weighted layers by name, after checking they are exactly the ones the IR expects,
    each with the number of weights its node implies."""
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    by_name = {keras_name(s.node.id): s for s in slots}
    _check_sets("Keras model's weighted layers", set(layers), set(by_name), graph)
    for name, slot in by_name.items():
        count = len(layers[name].weights)
        if count != len(slot.names):
            raise TransferError(
                f"Keras layer {name} holds {count} weights but {slot.node.id} needs {len(slot.names)} "
                f"({', '.join(slot.names)}); was the model generated from this spec?"
            )
    return layers


def _check_sets(what: str, have: set[str], want: set[str], graph: Graph) -> None:
    missing, extra = sorted(want - have), sorted(have - want)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {len(extra)}: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
        raise TransferError(
            f"the {what} does not match spec {graph.name} ({graph.source}): {'; '.join(parts)}; "
            "was the model generated from this spec?"
        )


# --- the models' outputs, side by side ------------------------------------------------------------


def channels_last(x: np.ndarray) -> np.ndarray:
    """A batch in PyTorch's layout as Keras holds it, at any rank: (N, C, L) -> (N, L, C),
    NCHW -> NHWC, (N, C, D, H, W) -> (N, D, H, W, C)."""
    return np.moveaxis(x, 1, -1)


def channels_first(x: np.ndarray) -> np.ndarray:
    """A batch in Keras' layout as PyTorch holds it (the inverse of channels_last)."""
    return np.moveaxis(x, -1, 1)


def keras_layout(out: np.ndarray, shape: Shape, flat_from: Shape | None) -> np.ndarray:
    """A PyTorch output in Keras' layout: channels last at every rank (a map PyTorch holds
    channels-last after a permute is so already); flat features in (D,) H, W, C order."""
    n = out.shape[0]
    if out.size != n * shape.numel():
        return out  # misshapen: reported as a mismatch
    if shape.spatial:
        return channels_last(out) if out.ndim == shape.rank + 2 and not shape.last else out
    if flat_from is not None:
        return channels_last(out.reshape(n, *flat_from.as_tuple())).reshape(n, -1)
    return out.reshape(n, -1)


def output_pairs(graph: Graph, torch_out: Any, keras_out: Any) -> list[tuple[str | None, np.ndarray, np.ndarray]]:
    """(key, PyTorch's output in Keras' layout, Keras' output) for each of the model's outputs:
    one with key None, or one per key of `outputs:` (both models return dicts)."""
    if not graph.outputs:
        last = graph.body[-1].output
        want = keras_layout(torch_out.detach().numpy(), graph.output_shape, flattened_map(graph, last))
        return [(None, want, np.asarray(keras_out))]
    pairs = []
    for o in graph.outputs:
        want = keras_layout(torch_out[o.key].detach().numpy(), o.shape, flattened_map(graph, o.node))
        pairs.append((o.key, want, np.asarray(keras_out[o.key])))
    return pairs
