"""Split attention's radix arithmetic in a traced forward (timm's SplitAttn, ResNeSt), rewritten
in the torch.fx graph into channel slices and merges, which archc has:

    x5 = x.reshape((B, R, C // R, H, W));  x5.sum(dim=1)     -> slice_0(x) + ... + slice_R-1(x)
    (x5 * a.reshape((B, R, C // R, 1, 1))).sum(dim=1)        -> slice_0(x) * slice_0(a) + ...

and timm's RadixSoftmax, whose archc layer (`softmax: {radix, cardinality}`) keeps its input's
shape, makes the `.view(B, -1, 1, 1)` after it nothing. A view is a radix split when the
shapes torch.fx's ShapeProp records say so: (N, C, ...) seen as (N, R, C / R, ...), whatever
the spelling. What is not read this way stays in the graph, and the import names it.
"""

from __future__ import annotations

import operator
from typing import Any

from archc.importer import patterns


def radix_softmax(x: Any, radix: int) -> Any:
    """Marker: archc's `softmax: {radix, cardinality: 1}`, a softmax over the R parts of x's
    channels (N, R * C, ...) at each of the C; computed, as patterns.channel_shuffle."""
    return x.reshape(x.shape[0], radix, -1, *x.shape[2:]).softmax(1).reshape(x.shape)


def rewrite(module: Any, graph: Any, input_shape: tuple[int, ...]) -> None:
    """Rewrite the radix splits in `graph` (a trace of `module`) in place."""
    if not any(_sum_over_splits(n) for n in graph.nodes):
        return
    shapes = patterns._shapes(module, graph, input_shape)
    if shapes is None:
        return
    made: dict[tuple[Any, int], list[Any]] = {}  # (x, R) -> x's slices, made once
    for node in list(graph.nodes):
        if _sum_over_splits(node):
            _sum(graph, node, shapes, made)
        elif patterns._is(node, *patterns._VIEWS):
            _softmax_view(module, graph, node, shapes)
            _softmax_written(graph, node, shapes)
    patterns._drop_unused_shape_arithmetic(graph, shapes)


def _sum_over_splits(node: Any) -> bool:
    """x.sum(dim=1) (or torch.sum(x, 1)) of a tensor."""
    return patterns._is(node, "sum") and patterns._arg(node, 1, "dim") == 1 and set(node.kwargs) <= {"dim"}


def _split(node: Any, shapes: dict[Any, tuple[int, ...]]) -> tuple[Any, int] | None:
    """(x, R) where `node` views x (N, C, ...) as (N, R, C / R, ...)."""
    if not patterns._is(node, *patterns._VIEWS):
        return None
    x = patterns._arg(node, 0, "input")
    shape, split = shapes.get(x), shapes.get(node)
    if shape is None or split is None or len(shape) < 3 or len(split) != len(shape) + 1:
        return None
    if split[0] != shape[0] or split[3:] != shape[2:] or split[1] * split[2] != shape[1] or split[1] < 2:
        return None
    return x, split[1]


def _parts(graph: Any, x: Any, radix: int, channels: int, name: str, made: dict[tuple[Any, int], list[Any]]) -> list[Any]:
    """x's R channel slices (those made for an earlier sum, which come before this one)."""
    if (x, radix) in made:
        return made[x, radix]
    size = channels // radix
    parts = []
    for k in range(radix):
        part = graph.call_function(patterns.channel_slice, (x, k * size, None if k == radix - 1 else (k + 1) * size))
        part.meta["archc_name"] = f"{name}{k + 1}"
        parts.append(part)
    made[x, radix] = parts
    return parts


def _sum(graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]], made: dict[tuple[Any, int], list[Any]]) -> None:
    """sum(dim=1) of a radix split, or of the product of two splits with one radix."""
    source = patterns._arg(node, 0, "input")
    split = _split(source, shapes)
    factors = None
    if split is None and source.op == "call_function" and source.target in (operator.mul, operator.imul) and len(source.args) == 2:
        factors = [_split(a, shapes) for a in source.args]
        if any(f is None for f in factors) or factors[0][1] != factors[1][1]:  # type: ignore[index]
            return
    elif split is None:
        return
    with graph.inserting_before(node):
        if factors is None:
            x, radix = split  # type: ignore[misc]
            terms = _parts(graph, x, radix, shapes[x][1], "split", made)
        else:
            (x, radix), (a, _) = factors  # type: ignore[misc]
            xs = _parts(graph, x, radix, shapes[x][1], "split", made)
            attn = _parts(graph, a, radix, shapes[a][1], "attn", made)
            terms = [graph.call_function(operator.mul, (p, q)) for p, q in zip(xs, attn)]
        total = terms[0]
        for term in terms[1:]:
            total = graph.call_function(operator.add, (total, term))
    node.replace_all_uses_with(total)
    graph.erase_node(node)
    for dead in [source, *(source.args if factors is not None else ())]:
        if not dead.users:
            graph.erase_node(dead)


def _softmax_view(module: Any, graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """`self.rsoftmax(x).view(B, -1, 1, 1)`: timm's RadixSoftmax flattens its output, archc's
    softmax keeps its input's shape, so the view back to that shape is nothing."""
    source = patterns._arg(node, 0, "input")
    if getattr(source, "op", None) != "call_module" or type(module.get_submodule(str(source.target))).__name__ != "RadixSoftmax":
        return
    given = source.args[0] if source.args else None
    if given is None or shapes.get(given) is None or shapes.get(node) != shapes[given]:
        return
    node.replace_all_uses_with(source)
    graph.erase_node(node)
    shapes[source] = shapes[given]  # the archc layer's output, as what reads it sees it


def _softmax_written(graph: Any, node: Any, shapes: dict[Any, tuple[int, ...]]) -> None:
    """`torch.softmax(x.view(N, R, C / R, ...), dim=1)` viewed back to x's shape (timm's
    SelectiveKernelAttn, flattened by archc.importer.stacks): `softmax: {radix: R}`."""
    if getattr(node, "_erased", False):
        return  # erased by _softmax_view
    soft = patterns._arg(node, 0, "input")
    if not (patterns._is(soft, "softmax") and patterns._arg(soft, 1, "dim") == 1 and set(soft.kwargs) <= {"dim"} and len(soft.users) == 1):
        return
    split = _split(patterns._arg(soft, 0, "input"), shapes)
    if split is None or shapes.get(node) != shapes[split[0]]:
        return
    with graph.inserting_before(node):
        made = graph.call_function(radix_softmax, split)
    node.replace_all_uses_with(made)
    view = patterns._arg(soft, 0, "input")
    for dead in (node, soft, *([view] if len(view.users) == 1 else [])):
        graph.erase_node(dead)
