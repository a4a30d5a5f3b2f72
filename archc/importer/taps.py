"""What a segmentation model's forward reads besides tensors: the named maps of a backbone,
the size of a tensor, and the dict it returns.

- torchvision's IntermediateLayerGetter (torchvision.models._utils): a module dict whose
  forward runs its children in order and returns the outputs of some of them by new names
  (`return_layers`, {"layer4": "out"}); it is cut after the last of them. It is a list of
  its children, and `features["out"]` a read of one child's output: the list's own name
  where it is the last child, `backbone.layer3` for another;
- `x.shape[-2:]` (or `x.size()[2:]`, or the pair `(x.shape[-2], x.shape[-1])`), the spatial size of x, read by
  `F.interpolate(y, size=..., mode=...)`: archc's `resize: {like: x, mode}`.
"""

from __future__ import annotations

import operator
from typing import Any

from archc.importer.ops import Unsupported


def layer_getter(module: Any) -> dict[str, str] | None:
    """An IntermediateLayerGetter's `return_layers` (child name -> tap name); None for any
    other module. Read by its class (its forward is a Python loop over a dict, which is
    what the taps assume), not by tracing."""
    cls = type(module)
    if cls.__name__ != "IntermediateLayerGetter" or cls.__module__ != "torchvision.models._utils":
        return None
    children = [k for k, _ in module.named_children()]
    taps = dict(module.return_layers)
    if not taps or not set(taps) <= set(children):
        raise Unsupported(f"IntermediateLayerGetter returning {sorted(taps)}, not children of its own")
    return taps


def tap_names(taps: dict[str, str], children: list[str], name: str) -> dict[str, str]:
    """Tap name -> the spec's name of that child's output in the getter's list `name`."""
    last = children[-1]
    return {out: name if child == last else f"{name}.{child}" for child, out in taps.items()}


def size_of(node: Any, sizes: dict[Any, tuple[Any, Any]]) -> tuple[Any, Any] | None:
    """(x, False) where `node` is x.shape or x.size(), (x, start) where it is their items
    from `start` on (`x.shape[-2:]`), each read only as the size of an F.interpolate (so that
    any other use is refused where it is); None for other nodes."""
    import torch.fx
    import torch.nn.functional as F

    def spatial(n: Any) -> bool:  # x.shape[k:] (or x.shape[k], one item of a pair), read only as interpolate's size
        index = n.args[1] if n.op == "call_function" and n.target is operator.getitem and len(n.args) == 2 else None
        items = isinstance(index, slice) and index.step is None and index.stop is None and type(index.start) is int
        return (
            (items or type(index) is int) and bool(n.users)
            and all(u.op == "call_function" and u.target is F.interpolate and n not in u.args[:1] for u in n.users)
        )  # fmt: skip

    whole = (node.op == "call_function" and node.target is getattr and len(node.args) == 2 and node.args[1] == "shape") or (
        node.op == "call_method" and node.target == "size" and len(node.args) == 1 and not node.kwargs
    )
    if whole and isinstance(node.args[0], torch.fx.Node) and node.users and all(spatial(u) for u in node.users):
        return (node.args[0], False)
    if node.op == "call_function" and node.target is operator.getitem and node.args[0] in sizes and spatial(node):
        index = node.args[1]
        return (sizes[node.args[0]][0], index.start if isinstance(index, slice) else (index,))
    return None


def resize(node: Any, sizes: dict[Any, tuple[Any, Any]], rank: int) -> tuple[Any, str] | None:
    """F.interpolate(y, size=x.shape[-2:], mode=m) -> (x, m): resize y like x; None when
    `node` is no such call. `rank`: the maps' number of dimensions (4 for images)."""
    import torch.fx
    import torch.nn.functional as F

    if node.op != "call_function" or node.target is not F.interpolate:
        return None
    names = ["input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor", "antialias"]
    given = {**dict(zip(names, node.args)), **node.kwargs}
    size = given.get("size")
    if isinstance(size, (tuple, list)):  # (x.shape[-2], x.shape[-1]), GhostNetV2's spelling
        pair = [sizes.get(item) if isinstance(item, torch.fx.Node) else None for item in size]
        if len(pair) != 2 or any(p is None or not isinstance(p[1], tuple) for p in pair) or pair[0][0] is not pair[1][0]:  # type: ignore[index]
            return None
        if (pair[0][1][0], pair[1][1][0]) not in ((-2, -1), (2, 3)):  # type: ignore[index]
            return None
        x, start = pair[0][0], 2  # type: ignore[index]
    elif isinstance(size, torch.fx.Node) and size in sizes and not isinstance(sizes[size][1], tuple):
        x, start = sizes[size]
    else:
        return None
    if given.get("scale_factor") is not None or given.get("antialias", False):
        return None
    if rank != 4 or start not in (2, -2):
        return None  # archc's resize takes a 2-D map's height and width
    mode = given.get("mode", "nearest")
    corners = given.get("align_corners")
    if mode == "nearest" and corners is None or mode == "bilinear" and corners is False:
        return x, mode
    return None
