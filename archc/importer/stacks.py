"""Paths stacked on a new axis (timm's SelectiveKernel, SKNet): `torch.stack(paths, dim=1)`, a
child module that reads the stack and returns a map per path (SelectiveKernelAttn: the sum
over the paths, a squeeze-excite, a softmax over the paths), then `(stack * attn).sum(1)`.
archc's maps have one channel axis, so the stack is the paths' concatenation on the channels,
(N, P, C, ...) read as (N, P * C, ...), as split attention's radix axis is (ResNeSt,
archc.importer.radix); rewritten in the torch.fx graphs:

- the parent: `torch.stack(xs, 1)` -> `torch.cat(xs, 1).reshape(-1, P, C, ...)`, and a child
  called on it that returns (N, P, C', ...) is called on the concatenation and returns
  (N, P * C', ...) (`flattened`); radix.rewrite then turns `(x * a).sum(1)` into slices,
  products and adds;
- the child (`flatten_child`): its input is the concatenation, viewed as (N, P, C, ...) where
  its forward reads it, its result flattened back; radix.rewrite turns `x.sum(1)` into slices
  and adds and `softmax(x.view(N, P, C', ...), dim=1)` flattened into `softmax: {radix: P}`.

A stack or a child that does not fit stays in the graph, and the import names it.
"""

from __future__ import annotations

import operator
from typing import Any

from archc.importer import patterns


def rewrite(module: Any, graph: Any, input_shape: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """Rewrite the stacks on dim 1 in `graph` (a trace of `module`); returns what `finish` needs."""
    import torch

    stacks = [n for n in graph.nodes if patterns._is(n, "stack") and patterns._arg(n, 1, "dim") == 1 and set(n.kwargs) <= {"dim"}]
    if not stacks:
        return []
    shapes = patterns._shapes(module, graph, input_shape)
    if shapes is None:
        return []
    made = []
    for stack in stacks:
        tensors = patterns._arg(stack, 0, "tensors")
        if not isinstance(tensors, (list, tuple)) or len({shapes.get(t) for t in tensors}) != 1 or shapes.get(tensors[0]) is None:
            continue
        count, shape = len(tensors), shapes[tensors[0]]
        if len(shape) < 3:
            continue
        with graph.inserting_before(stack):
            cat = graph.call_function(torch.cat, (list(tensors), 1))
            view = graph.call_method("reshape", (cat, (-1, count, *shape[1:])))
        stack.replace_all_uses_with(view)
        graph.erase_node(stack)
        for user in list(view.users):
            out = shapes.get(user)
            if user.op != "call_module" or user.args != (view,) or user.kwargs or out is None or len(out) != len(shape) + 1 or out[1] != count:
                continue
            with graph.inserting_after(user):
                flat = graph.call_method("reshape", (user, (-1, count * out[2], *out[3:])))
            with graph.inserting_after(flat):
                back = graph.call_method("reshape", (flat, (-1, *out[1:])))
            user.replace_all_uses_with(back, delete_user_cb=lambda u, flat=flat: u is not flat)
            made.append((user, view, cat, flat, back, count))
    return made


def finish(graph: Any, made: list[tuple[Any, ...]]) -> dict[str, int]:
    """After radix.rewrite: each flattened child reads the concatenation and gives the
    flattened result itself. Returns {the child's name: its number of paths}."""
    out = {}
    for user, view, cat, flat, back, count in made:
        if not getattr(back, "_erased", False):  # radix.rewrite erases it where it read it
            if back.users:
                continue  # the parent reads the per-path view otherwise: left for the import to name
            graph.erase_node(back)
        user.args = (cat,)
        flat.replace_all_uses_with(user)
        graph.erase_node(flat)
        if not view.users:
            graph.erase_node(view)
        out[str(user.target)] = count
    return out


def flatten_child(module: Any, graph: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The trace of a child that reads P stacked paths, `shape` (P, C, ...): made to read their
    concatenation (P * C, ...) and to return its per-path result flattened the same way; its
    assertions on the stacked shape (which the view keeps) go. Returns its new input shape."""
    import torch

    placeholder = next(n for n in graph.nodes if n.op == "placeholder")
    result_shapes = patterns._shapes(module, graph, shape)
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    got = result_shapes.get(result) if result_shapes is not None and hasattr(result, "op") else None
    if got is None or len(got) != len(shape) + 1 or got[1] != shape[0]:
        return shape
    with graph.inserting_after(placeholder):
        stacked = graph.call_method("reshape", (placeholder, (-1, *shape)))
    placeholder.replace_all_uses_with(stacked, delete_user_cb=lambda u: u is not stacked)
    with graph.inserting_before(output):
        flat = graph.call_method("reshape", (result, (-1, got[1] * got[2], *got[3:])))
    output.args = (flat,)
    checks = {operator.eq, operator.getitem, getattr}
    for node in reversed(list(graph.nodes)):
        if node.op == "call_function" and not node.users and (node.target is torch._assert or node.target in checks):
            graph.erase_node(node)
    return (shape[0] * shape[1], *shape[2:])
