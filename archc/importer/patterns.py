"""Tensor idioms in a traced forward that are one archc layer: rewritten in the torch.fx graph,
before its nodes become entries, into calls of the marker functions below (which ops.function
maps to layers).

- a channel shuffle written out, as torchvision's `channel_shuffle(x, groups)`: a view of
  (N, C, ...) as (N, groups, C // groups, ...), a transpose of dims 1 and 2 (a `contiguous()`
  or not), and a view back to (N, C, ...) -> `shuffle: {groups}`;
- `x.chunk(k, dim=1)` (or torch.chunk) whose parts are indexed -> one channel `slice` per part.

The patterns are read from the nodes' shapes on the module's input (torch.fx's ShapeProp), not
from how the shapes are spelt (`x.size()`, `x.shape[1]`, -1), so every spelling of the same
computation is recognised; the import's check proves the result. The shape arithmetic the
pattern leaves unused (`x.size()`, its items, `C // groups`) is removed.
"""

from __future__ import annotations

import operator
from typing import Any


def channel_shuffle(x: Any, groups: int) -> Any:
    """Marker: archc's `shuffle` layer (never called: the traced graph only names it)."""
    raise NotImplementedError


def channel_slice(x: Any, start: int, stop: int | None) -> Any:
    """Marker: archc's `slice` layer, channels start:stop (None: to the end)."""
    raise NotImplementedError


_VIEWS = ("view", "reshape")


def rewrite(module: Any, graph: Any, input_shape: tuple[int, ...]) -> None:
    """Rewrite the idioms in `graph` (a trace of `module`) in place; nothing when it has none."""
    if not any(_is(n, "transpose", "chunk") for n in graph.nodes):
        return
    shapes = _shapes(module, graph, input_shape)
    if shapes is None:
        return  # the forward does not run node by node; the entries then name what is unsupported
    for node in list(graph.nodes):
        if _is(node, "chunk"):
            _chunk(graph, node, shapes)
        elif _is(node, "transpose"):
            _shuffle(graph, node, shapes)
    _drop_unused_shape_arithmetic(graph, shapes)


def _is(node: Any, *names: str) -> bool:
    import torch

    if node.op == "call_method":
        return node.target in names
    return node.op == "call_function" and any(node.target is getattr(torch, n, None) for n in names)


def _shapes(module: Any, graph: Any, input_shape: tuple[int, ...]) -> dict[Any, tuple[int, ...]] | None:
    import torch
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = torch.fx.GraphModule(module, graph)
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.randn(1, *input_shape))
    except Exception:
        return None
    return {n: tuple(n.meta["tensor_meta"].shape) for n in graph.nodes if hasattr(n.meta.get("tensor_meta"), "shape")}


def _arg(node: Any, i: int, name: str, default: Any = None) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _chunk(graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """x.chunk(k, dim=1), each part read by indexing -> channel slices (torch's chunk sizes:
    ceil(C / k) each, the last part what is left)."""
    x, k, dim = _arg(node, 0, "input"), _arg(node, 1, "chunks"), _arg(node, 2, "dim", 0)
    if x not in shapes or type(k) is not int or k < 1 or dim != 1 or len(shapes[x]) < 3:
        return
    users = list(node.users)
    if not users or not all(u.op == "call_function" and u.target is operator.getitem and type(u.args[1]) is int for u in users):
        return
    channels = shapes[x][1]
    size = -(-channels // k)
    parts = -(-channels // size)
    for user in users:
        i = user.args[1] % parts if -parts <= user.args[1] < parts else None
        if i is None:
            return
    for user in users:
        i = user.args[1] % parts
        stop = None if i == parts - 1 else (i + 1) * size
        with graph.inserting_before(user):
            part = graph.call_function(channel_slice, (x, i * size, stop))
        part.meta["archc_name"] = f"chunk{i + 1}"  # the entry's name
        user.replace_all_uses_with(part)
        graph.erase_node(user)
    graph.erase_node(node)


def _shuffle(graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """view(N, g, C // g, ...) -> transpose(1, 2) [-> contiguous] -> view(N, C, ...) -> shuffle."""
    split = _arg(node, 0, "input")
    dims = sorted(d % len(shapes.get(node, (0,))) for d in (_arg(node, 1, "dim0"), _arg(node, 2, "dim1")) if type(d) is int)
    if dims != [1, 2] or not _is(split, *_VIEWS) or len(split.users) != 1:
        return
    x = _arg(split, 0, "input")
    if x not in shapes or split not in shapes:
        return
    shape, grouped = shapes[x], shapes[split]
    if len(shape) < 3 or len(grouped) != len(shape) + 1 or grouped[0] != shape[0] or grouped[3:] != shape[2:]:
        return
    groups = grouped[1]
    if groups * grouped[2] != shape[1]:
        return
    last = node
    if len(last.users) == 1 and _is(next(iter(last.users)), "contiguous"):
        last = next(iter(last.users))
    if len(last.users) != 1:
        return
    merge = next(iter(last.users))
    if not _is(merge, *_VIEWS) or _arg(merge, 0, "input") is not last or shapes.get(merge) != shape:
        return
    with graph.inserting_before(merge):
        shuffled = graph.call_function(channel_shuffle, (x, groups))
    merge.replace_all_uses_with(shuffled)
    for dead in (merge, *([last] if last is not node else []), node, split):
        graph.erase_node(dead)


def _drop_unused_shape_arithmetic(graph: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """Remove the size() calls, their items and the integer arithmetic on them that nothing
    reads (never a node that gives a tensor)."""
    shape_ops = {operator.getitem, operator.floordiv, operator.mul, operator.add, operator.sub, getattr}
    for node in reversed(list(graph.nodes)):
        if node.users or node in shapes:
            continue
        if (node.op == "call_method" and node.target in ("size", "dim")) or (node.op == "call_function" and node.target in shape_ops):
            graph.erase_node(node)
