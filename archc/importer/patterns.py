"""Tensor idioms in a traced forward that are one archc layer: rewritten in the torch.fx graph,
before its nodes become entries, into calls of the marker functions below (which ops.function
maps to layers).

- a channel shuffle written out, as torchvision's `channel_shuffle(x, groups)`: a view of
  (N, C, ...) as (N, groups, C // groups, ...), a transpose of dims 1 and 2 (a `contiguous()`
  or not), and a view back to (N, C, ...) -> `shuffle: {groups}`;
- `x.chunk(k, dim=1)`, `x.split(size or sizes, dim=1)` (or torch.chunk, torch.split) whose
  parts are indexed by constants -> one channel `slice` per part read;
- indexing on the channel axis with constant bounds, `x[:, a:b]`, `x[:, :n, :, :]`,
  `x[:, a:, ...]` -> a channel `slice`;
- `x.contiguous()` (timm's CrossStage) is dropped: the same values.

The patterns are read from the nodes' shapes on the module's input (torch.fx's ShapeProp), not
from how the shapes are spelt (`x.size()`, `x.shape[1]`, -1), so every spelling of the same
computation is recognised; the import's check proves the result. The shape arithmetic the
pattern leaves unused (`x.size()`, its items, `C // groups`) is removed.
"""

from __future__ import annotations

import contextlib
import io
import operator
from typing import Any


def channel_shuffle(x: Any, groups: int) -> Any:
    """Marker: archc's `shuffle` layer. It computes the layer, so that a later pass's ShapeProp
    (archc.importer.radix) runs the rewritten graph."""
    n, c = x.shape[:2]
    return x.reshape(n, groups, c // groups, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


def channel_slice(x: Any, start: int, stop: int | None) -> Any:
    """Marker: archc's `slice` layer, channels start:stop (None: to the end); computed, as
    channel_shuffle."""
    return x[:, start:stop]


_VIEWS = ("view", "reshape")


def rewrite(module: Any, graph: Any, input_shape: tuple[int, ...]) -> None:
    """Rewrite the idioms in `graph` (a trace of `module`) in place; nothing when it has none."""
    if any(_is(n, "transpose", "chunk", "split") or _is_index(n) and isinstance(n.args[1], tuple) for n in graph.nodes):
        shapes = _shapes(module, graph, input_shape)
        if shapes is None:
            return  # the forward does not run node by node; the entries then name what is unsupported
        for node in list(graph.nodes):  # the splits first: their parts' indexing is not a channel index
            if _is(node, "chunk", "split"):
                _split(graph, node, shapes)
        for node in list(graph.nodes):
            if _is_index(node):
                _index(graph, node, shapes)
            elif _is(node, "transpose"):
                _shuffle(graph, node, shapes)
        _drop_unused_shape_arithmetic(graph, shapes)
    for node in list(graph.nodes):  # x.contiguous(): the same values (after the shuffle, which may read one)
        if _is(node, "contiguous") and len(node.args) == 1 and set(node.kwargs) <= {"memory_format"}:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)


def _is(node: Any, *names: str) -> bool:
    import torch

    if node.op == "call_method":
        return node.target in names
    return node.op == "call_function" and any(node.target is getattr(torch, n, None) for n in names)


def _is_index(node: Any) -> bool:
    return node.op == "call_function" and node.target is operator.getitem


def _shapes(module: Any, graph: Any, input_shape: tuple[int, ...]) -> dict[Any, tuple[int, ...]] | None:
    import torch
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = torch.fx.GraphModule(module, graph)
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints what it re-raises
            ShapeProp(gm).propagate(torch.randn(1, *input_shape))
    except Exception:
        return None
    return {n: tuple(n.meta["tensor_meta"].shape) for n in graph.nodes if hasattr(n.meta.get("tensor_meta"), "shape")}


def _arg(node: Any, i: int, name: str, default: Any = None) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


def _split(graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """x.chunk(k, dim=1), x.split(size, dim=1), x.split([sizes], dim=1), each part read by a
    constant index -> channel slices. torch's parts: chunk, ceil(C / k) each; split by a
    size, that size each; either, the last part what is left."""
    x, dim = _arg(node, 0, "input", node.kwargs.get("tensor")), _arg(node, 2, "dim", 0)
    if x not in shapes or len(shapes[x]) < 3 or dim not in (1, 1 - len(shapes[x])):
        return
    channels = shapes[x][1]
    if _is(node, "chunk"):
        k = _arg(node, 1, "chunks")
        size = -(-channels // k) if type(k) is int and k > 0 else None  # ceil(C / k)
    else:
        size = _arg(node, 1, "split_size_or_sections", node.kwargs.get("split_size"))
    if type(size) is int and size > 0:
        sizes = [size] * -(-channels // size)  # ceil(C / size) parts
    elif isinstance(size, (list, tuple)) and all(type(s) is int and s > 0 for s in size) and sum(size) == channels:
        sizes = list(size)
    else:
        return
    sizes[-1] = channels - sum(sizes[:-1])
    users = list(node.users)
    parts = len(sizes)
    if not users:
        return
    if not all(_is_index(u) and type(u.args[1]) is int and -parts <= u.args[1] < parts for u in users):
        return
    name = "chunk" if _is(node, "chunk") else "split"
    made: dict[int, Any] = {}  # part -> its slice (one however often it is read)
    for user in users:
        i = user.args[1] % parts
        if i not in made:
            start = sum(sizes[:i])
            stop = None if i == parts - 1 else start + sizes[i]
            with graph.inserting_before(user):
                made[i] = graph.call_function(channel_slice, (x, start, stop))
            made[i].meta["archc_name"] = f"{name}{i + 1}"  # the entry's name
            shapes[made[i]] = shapes[user]  # a part may be indexed again (x.split(...)[1][:, :2])
        user.replace_all_uses_with(made[i])
        graph.erase_node(user)
    graph.erase_node(node)


def _index(graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """x[:, a:b], x[:, a:b, :, :], x[:, a:b, ...] with constant bounds (step 1) -> a slice."""
    x, index = node.args
    shape = shapes.get(x)
    if shape is None or len(shape) < 3 or not isinstance(index, tuple) or len(index) < 2:
        return
    everything = slice(None, None, None)
    rest = [i for i in index[2:] if i is not Ellipsis]
    if index[0] != everything or not isinstance(index[1], slice) or any(i != everything for i in rest):
        return
    if len(index) - len(rest) > 3 or 2 + len(rest) > len(shape):  # at most one Ellipsis; no more axes than x has
        return
    bounds = (index[1].start, index[1].stop, index[1].step)
    if not all(b is None or type(b) is int for b in bounds) or bounds[2] not in (None, 1):
        return
    start, stop, _ = index[1].indices(shape[1])
    if start >= stop:
        return  # no channels: no layer
    with graph.inserting_before(node):
        part = graph.call_function(channel_slice, (x, start, None if stop == shape[1] else stop))
    shapes[part] = shapes[node]
    node.replace_all_uses_with(part)
    graph.erase_node(node)


def index_text(node: Any) -> str | None:
    """How an indexing node reads in the source, `x[:, ::2]` (None: no indexing by slices), for
    the message that refuses it."""
    index = node.args[1] if _is_index(node) and len(node.args) == 2 else None
    if not isinstance(index, (tuple, slice)):
        return None

    def item(i: Any) -> str:
        if i is Ellipsis:
            return "..."
        if not isinstance(i, slice):
            return getattr(i, "name", repr(i))
        bounds = [item(b) if b is not None else "" for b in (i.start, i.stop, i.step)]
        return ":".join(bounds if i.step is not None else bounds[:2])

    items = index if isinstance(index, tuple) else (index,)
    return f"{getattr(node.args[0], 'name', '?')}[{', '.join(item(i) for i in items)}]"


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
