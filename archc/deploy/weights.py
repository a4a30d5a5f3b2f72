"""The deploy model's weights from the training model's, through the two graphs: a node of the
deploy graph that the training graph has under the same id keeps its tensors, with the batch
norm that read it folded in where the deploy graph no longer has that norm; a conv that stands
for a projection shortcut's conv + batch norm (`downsample` for `downsample.0` and
`downsample.1`) is that pair folded; a conv made by merging parallel branches
(archc.deploy.merge) is the sum of its branches, each a chain of conv and batch norm, or the
identity, written as a kernel of the merged size. In float64, on numpy arrays keyed as
PyTorch's state_dict; numpy is imported here, never torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from archc.deploy.fold import THROUGH
from archc.interop import torch_key
from archc.ir.graph import Graph, Node
from archc.ops.base import sizes

if TYPE_CHECKING:
    from archc.deploy.merge import Merge

State = Mapping[str, np.ndarray]


def deploy_state(
    train: Graph, deploy: Graph, state: State, merges: Sequence[Merge]
) -> dict[str, np.ndarray]:
    """The deploy model's tensors for every weighted node of `deploy`, from `state`, the
    training model's (`{node_id}.{name}` keys); other entries (num_batches_tracked) are the
    caller's to copy."""
    nodes = {n.id: n for n in train.nodes}
    kept = {n.id: n for n in deploy.nodes}
    readers: dict[str, list[Node]] = {}
    for n in train.nodes:
        for i in n.inputs:
            readers.setdefault(i, []).append(n)
    out: dict[str, np.ndarray] = {}
    for d in deploy.nodes:
        if not d.op.weight_names():
            continue
        t = nodes.get(d.id)
        if t is not None and t.op.kind == d.op.kind:
            tensors = {
                name: np.asarray(state[torch_key(t.id, name)], np.float64)
                for name in t.op.weight_names()
            }
            before = _norm_before(t, nodes, kept)
            if before is not None:
                tensors |= dict(zip(("weight", "bias"), _fold_before(tensors["weight"], tensors.get("bias"), t, before, state)))
            norm = next(
                (
                    n
                    for n in readers.get(t.id, ())
                    if n.op.kind == "batchnorm" and _gone(n, kept)
                ),
                None,
            )
            if norm is not None and type(d.op).folds_norm(d.op.values()):
                tensors |= dict(  # the layer's other tensors (a gain) as they are
                    zip(
                        ("weight", "bias"),
                        _fold(tensors["weight"], tensors.get("bias"), norm, state),
                    )
                )
        elif (
            f"{d.id}.0" in nodes and f"{d.id}.1" in nodes
        ):  # nn.Sequential(conv, bn) -> the conv
            conv = nodes[f"{d.id}.0"]
            w = np.asarray(state[torch_key(conv.id, "weight")], np.float64)
            b = state.get(torch_key(conv.id, "bias"))
            tensors = dict(
                zip(
                    ("weight", "bias"),
                    _fold(
                        w,
                        None if b is None else np.asarray(b, np.float64),
                        nodes[f"{d.id}.1"],
                        state,
                    ),
                )
            )
        else:
            tensors = _merged(d, nodes, state, merges, deploy)
        for name in d.op.weight_names():
            value = tensors.get(name)
            if value is None and name == "bias":
                value = np.zeros(d.shape.c)
            out[torch_key(d.id, name)] = value
    return out


def _norm_before(t: Node, nodes: dict[str, Node], kept: dict[str, Node]) -> Node | None:
    """The batch norm folded into `t` from before it (archc.deploy.fold.fold_before): the one
    `t` reads, through global average pools and flattens, that the deploy graph no longer has
    and that was not folded into a conv or dense layer before it (that one reads such a layer)."""
    src = nodes.get(t.inputs[0]) if t.inputs else None
    while src is not None and src.op.kind in THROUGH:
        src = nodes.get(src.inputs[0])
    if src is None or src.op.kind != "batchnorm" or not _gone(src, kept):
        return None
    made = nodes.get(src.inputs[0])
    return None if made is not None and made.op.FOLDS_NORM and made.id in kept else src


def _fold_before(
    w: np.ndarray, b: np.ndarray | None, layer: Node, norm: Node, state: State
) -> tuple[np.ndarray, np.ndarray]:
    """`layer(scale * x + shift)` as one layer of x: the weight scaled along its input
    channels, the bias plus the weight applied to the shift (no padding, so the shift
    reaches every position). A grouped conv's output channel o reads input channels
    group(o) * (in / groups) + j."""
    scale, shift = _affine(norm, state)
    out, per_group = w.shape[0], w.shape[1]
    groups = len(scale) // per_group
    channel = (np.arange(out) // (out // groups))[:, None] * per_group + np.arange(per_group)[None, :]  # (out, in / groups)
    spatial = (1,) * (w.ndim - 2)
    w2 = w * scale[channel].reshape(out, per_group, *spatial)
    bias = (0.0 if b is None else b) + (w.reshape(out, per_group, -1).sum(axis=2) * shift[channel]).sum(axis=1)
    return w2, bias


def _gone(norm: Node, kept: dict[str, Node]) -> bool:
    return norm.id not in kept or kept[norm.id].op.kind != "batchnorm"


def _affine(norm: Node, state: State) -> tuple[np.ndarray, np.ndarray]:
    """Batch norm at inference as y = scale * x + shift, per channel."""
    get = lambda name: np.asarray(state[torch_key(norm.id, name)], np.float64)  # noqa: E731
    gamma = get("weight") if "weight" in norm.op.weight_names() else 1.0
    scale = gamma / np.sqrt(get("running_var") + norm.op.eps)
    return scale, get("bias") - get("running_mean") * scale


def _fold(
    w: np.ndarray, b: np.ndarray | None, norm: Node, state: State
) -> tuple[np.ndarray, np.ndarray]:
    scale, shift = _affine(norm, state)
    w = w * scale.reshape(
        -1, *([1] * (w.ndim - 1))
    )  # output channels lead a conv's and a dense layer's weight
    return w, (0.0 if b is None else b) * scale + shift


def _merged(
    d: Node,
    nodes: dict[str, Node],
    state: State,
    merges: Sequence[Merge],
    deploy: Graph,
) -> dict[str, np.ndarray]:
    for merge in merges:
        prefix = d.id[: -len(merge.name)] if d.id.endswith(merge.name) else None
        if prefix is None or (prefix and not prefix.endswith(".")):
            continue
        chains = [[f"{prefix}{n}" for n in chain] for chain in merge.branches]
        there = [need is None or f"{prefix}{need}" in nodes for need in merge.needs]
        if all(all(n in nodes for n in chain) for chain, t in zip(chains, there) if t):
            return _sum(
                d, [chain for chain, t in zip(chains, there) if t], nodes, state, deploy
            )
    raise ValueError(
        f"deploy weights: no training layers found for {d.id}"
    )  # a bug in archc.deploy


def _sum(
    d: Node,
    chains: list[list[str]],
    nodes: dict[str, Node],
    state: State,
    deploy: Graph,
) -> dict[str, np.ndarray]:
    """One conv kernel for parallel branches added together: each branch's kernel centred in
    the merged one (the branches are centred convs of one stride), biases summed."""
    readers = {n.id: n for n in deploy.nodes}
    source = readers.get(d.inputs[0])
    in_channels = source.shape.c if source is not None else deploy.input_shape.c
    groups = d.op.groups
    kernel = sizes(d.op.kernel, d.shape.rank)
    weight = np.zeros((d.shape.c, in_channels // groups, *kernel))
    bias = np.zeros(d.shape.c)
    for chain in chains:
        steps = [nodes[n] for n in chain]
        if steps and steps[0].op.kind != "batchnorm":
            conv, steps = steps[0], steps[1:]
            w = np.asarray(state[torch_key(conv.id, "weight")], np.float64)
            b = state.get(torch_key(conv.id, "bias"))
            b = np.zeros(w.shape[0]) if b is None else np.asarray(b, np.float64)
        else:  # the identity of the branches' input, as a kernel
            w = np.zeros((d.shape.c, in_channels // groups, *([1] * len(kernel))))
            for c in range(d.shape.c):
                w[(c, c % (in_channels // groups), *([0] * len(kernel)))] = 1.0
            b = np.zeros(d.shape.c)
        for norm in steps:
            w, b = _fold(w, b, norm, state)
        pad = [((k - s) // 2, (k - s) // 2) for k, s in zip(kernel, w.shape[2:])]
        weight += np.pad(w, [(0, 0), (0, 0), *pad])
        bias += b
    return {"weight": weight, "bias": bias}
