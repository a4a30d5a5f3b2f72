"""What the Keras code leaves out or merges to read like keras.applications (issue 21 §5):
an Identity layer (it computes nothing and holds no weights) has no layer, an activation
directly after a conv or dense is that layer's `activation=` (`Conv2D(64, 3, activation="relu",
...)`), and consecutive layers under one condition share one `if`. Where a layer is left out,
`archc verify` reads its tensor at the layer that holds it (keras_layer)."""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from archc import ops
from archc.backends import common, decide
from archc.backends.identity import IdentityMap, IdentitySet
from archc.code import Call
from archc.ir.graph import (
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    SymGroup,
    SymLayer,
    is_merge,
    keras_name,
)
from archc.spec import expr


def merge_guards(lines: list[str]) -> list[str]:
    """One `if` for consecutive layers under the same condition, as keras.applications writes
    `if block_id:` over three layers: an `if` line that repeats the `if` whose body ends just
    above it (nothing at its own level in between) is dropped. Conditions read only the block
    function's arguments, which nothing reassigns, so the merged body runs exactly when each
    part would have."""
    out: list[str] = []
    open_guard: str | None = None  # the `if` line whose body the last lines belong to
    for line in lines:
        indent = line[: len(line) - len(line.lstrip())]
        if open_guard is not None and line == open_guard:
            continue
        if open_guard is not None and len(indent) <= len(open_guard) - len(open_guard.lstrip()):
            open_guard = None
        if line.lstrip().startswith("if ") and line.endswith(":") and open_guard is None:
            open_guard = line
        out.append(line)
    return out


@dataclasses.dataclass(frozen=True)
class Absorbed:
    """The model-level layers (its list and its lists' entries) with no Keras layer of their own:
    `gone`: node -> the node whose Keras layer gives its tensor; `activation`: conv or dense
    node -> the `activation=` it takes (its own tensor, before it, has no Keras layer)."""

    gone: dict[str, str]
    activation: dict[str, str]


def absorbed(graph: Graph) -> Absorbed:
    """An Identity layer (computes nothing, holds no weights) is left out, and an activation
    directly after a conv or dense whose tensor nothing else reads is its `activation=`
    (keras.applications' VGG16: `Conv2D(64, 3, activation="relu", ...)`), unless the spec names
    the activation after its function. `archc verify` reads the layers by these names."""
    readers: dict[str, list[str]] = {}
    for node in graph.nodes:
        for src in node.inputs:
            readers.setdefault(src, []).append(node.id)
    outputs = {o.node for o in graph.outputs}
    nodes = {n.id: n for n in graph.nodes}
    gone: dict[str, str] = {}
    activation: dict[str, str] = {}

    def layers_of(item: LayerInst) -> list[Call]:
        args = {k: v if k == "fn" else common.literal(v) for k, v in item.op.values().items() if v is not None and k != "init"}
        if item.op.EXPRESSION or item.exposed or item.op.READS or is_merge(item):
            return []
        try:
            return list(item.op.keras_layers(args, ops.KerasCtx('"_"', item.nonneg_in, item.in_shape)))
        except (NotImplementedError, KeyError):  # one printed another way (a merge)
            return []

    def walk(items: tuple[Inst, ...]) -> None:
        for k, item in enumerate(items):
            if isinstance(item, GroupInst):
                walk(item.items)
            if not isinstance(item, LayerInst) or item.output not in nodes:
                continue
            node = nodes[item.output]
            calls = layers_of(item)
            if calls and all(c.func == "layers.Identity" for c in calls) and len(node.inputs) == 1:
                gone[node.id] = node.inputs[0]
            after = items[k + 1] if k + 1 < len(items) else None
            if (
                calls and calls[-1].func in ACTIVATED and calls[-1].guard is None and isinstance(after, LayerInst)
                and after.op.kind == ops.Act.kind and after.output in nodes and nodes[after.output].inputs == (node.id,)
                and readers.get(node.id) == [after.output] and node.id not in outputs
                and after.name.rpartition(".")[2] != after.op.values().get("fn")
            ):  # fmt: skip
                fused = fused_activation(after.op.kind, {k: v if k == "fn" else common.literal(v) for k, v in after.op.values().items() if v is not None and k != "init"}, ops.KerasCtx('"_"', after.nonneg_in, after.in_shape))
                if fused:
                    activation[node.id] = fused
                    gone[after.output] = node.id

    walk(graph.flat_body())
    return Absorbed(gone, activation)


def keras_layer(graph: Graph, node: str, absorbed: Absorbed) -> str | None:
    """The Keras layer whose output is `node`'s tensor; None: none is (a conv or dense that
    takes the activation after it in)."""
    if node in absorbed.activation:
        return None
    while node in absorbed.gone:
        node = absorbed.gone[node]
    if node == "input":
        return "input"
    op = next(n.op for n in graph.nodes if n.id == node)
    return op.keras_output(keras_name(node))


def followed(items: tuple[Any, ...], last: bool, returned: frozenset[str], prefix: str = "") -> IdentitySet:
    """The layers of a block kind's list (and of its lists' lists) that an
    unconditional entry follows (`last`: the list's last one is followed too): their tensors
    are never a block's output, which `archc verify` reads by layer name. `returned`: the
    layers the block returns by name (`body.relu`: an entry of its list `body`, whose path
    here is `prefix` + its name)."""
    out = IdentitySet()
    for k, item in enumerate(items):
        next_runs = items[k + 1].condition is None if k + 1 < len(items) else last
        if isinstance(item, SymLayer) and next_runs and prefix + item.name not in returned:
            out.add(item)
        elif isinstance(item, SymGroup):
            out |= followed(item.children, next_runs, returned, f"{prefix}{item.name}.")
    return out


# Keras layers that take an `activation=` (keras.applications writes VGG's and EfficientNet's
# squeeze-and-excitation convs so: `Conv2D(..., activation="relu")`).
ACTIVATED = frozenset({"layers.Conv1D", "layers.Conv2D", "layers.Conv3D", "layers.DepthwiseConv2D", "layers.Dense"})


def fused_activation(kind: str, a: dict[str, str], ctx: ops.KerasCtx) -> str | None:
    """The `activation=` value an op's layer can take in its Keras layer before it, as keras.applications
    writes it: an op whose Keras form is one `layers.Activation("name")`; None: another form."""
    try:
        (layer,) = ops.KINDS[kind].keras_layers(a, ctx)
    except ValueError:
        return None
    if layer.func != "layers.Activation" or layer.guard is not None or not isinstance(layer.args[0], str) or not layer.args[0].startswith('"'):
        return None
    return layer.args[0]


def with_activation(layer: Call, activation: str) -> Call:
    """`layer` with `activation=` before its name."""
    args = list(layer.args)
    at = next((k for k, arg in enumerate(args) if isinstance(arg, str) and arg.startswith("name=")), len(args))
    return dataclasses.replace(layer, args=(*args[:at], f"activation={activation}", *args[at:]))


def fusions(items: tuple[Any, ...], passed: IdentitySet, read: frozenset[str], prefix: str = "") -> IdentityMap[Any]:
    """The layers of a block kind's lists whose next entry is an activation that can
    be their `activation=`: it reads them only, under the same condition, and its tensor is no
    block output (`passed`); nothing else reads theirs (`read`: the names read by name, an
    entry of a list by its path, `body.relu`, whose path here is `prefix` + its name). One the
    spec names after its function (`gelu`) is a layer asked for by name (keras.applications'
    ConvNeXt has `{prefix}_gelu` Activation layers after its Dense ones): it stays."""
    out: IdentityMap[Any] = IdentityMap()
    for a, b in zip(items, items[1:]):
        if (
            isinstance(a, SymLayer) and isinstance(b, SymLayer) and b.kind == ops.Act.kind and not b.inputs and b in passed
            and not decide.never(a)
            and a.name not in read and prefix + a.name not in read and b.name != b.arg("fn").value  # type: ignore[attr-defined]
            and ast.dump(a.condition or ast.Constant(None)) == ast.dump(b.condition or ast.Constant(None))
        ):  # fmt: skip
            out[a] = b
    for item in items:
        if isinstance(item, SymGroup):
            out.update(fusions(item.children, passed, read, f"{prefix}{item.name}."))
    return out


def activation_of(act: SymLayer) -> str | None:
    """The `activation=` value of a block kind's activation entry (fused_activation)."""
    args = {key: tree.value if key == "fn" else expr.to_python(tree) for key, tree in act.args if key != "init"}  # type: ignore[attr-defined]
    return fused_activation(act.kind, args, ops.KerasCtx('"_"', act.nonneg_in, None))
