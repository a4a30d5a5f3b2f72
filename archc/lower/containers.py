"""`modules:` containers in a block kind's list or the model's (symbolic.py's walker calls
these): their entries typed in a scope of their own and read by path (`fuse.1.0`), and the
checks that keep what PyTorch builds what Keras builds."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    container_results,
    flat_items,
)
from archc.lower.context import State, check_outputs_place
from archc.spec import models as m
from archc.spec.loader import BlockSource

if TYPE_CHECKING:
    from archc.lower.nested import SymTensor


def sym_modules(
    state: State, sym_layers: Any, points: dict[str, SymTensor], defined: dict[str, Location], source: BlockSource,
    name: str, body: m.ModulesItem, at: tuple[Any, ...], read: str, where: Location, last_key: str,
) -> tuple[SymGroup, SymTensor]:  # fmt: skip
    """A `modules:` container in a block kind (or the model, the top function):
    its entries in a scope of their own, the first reading `read`; each of its tensors is then
    a tensor of the block under its path (`fuse.1.0`), and the entries' reads of the
    container's own tensors are written as such paths. Its tensor is its last entry's."""
    before = dict(points)
    before_defined = set(defined)
    children = sym_layers(body.modules, (*at, "modules"), read)
    result = points[last_key]
    changed = {key for key in points if key != last_key and (key not in before or points[key] is not before[key])}
    entries = {c.name for c in children}  # and their own tensors (`inner.2`), not what a list's layers left
    local = {key for key in changed if key.split(".")[0] in entries}
    for key in changed:
        if key in local:
            points[f"{name}.{key}"] = points[key]
        if key in before:
            points[key] = before[key]
        else:
            del points[key]
    points[last_key] = result
    for key in set(defined) - before_defined:
        del defined[key]
    numbered = [c.name.isdigit() for c in children]
    if any(numbered) and not all(numbered):
        raise SpecError(f"{name}: a `modules:` container has named entries (nn.ModuleDict) or numbered ones (nn.ModuleList), not both", where)
    for child, entry in zip(children, body.modules):
        (written,) = entry
        if child.condition is not None:
            raise SpecError(f"{name}.{child.name}: the entries of a `modules:` container inside a block kind are not conditional", child.where)
        if isinstance(child, SymBlock) and child.more_outputs:
            check_outputs_place(state.spec.blocks[child.block], written, False, True, child.where)
        if all(numbered) and isinstance(child, SymLayer) and ops.KINDS[child.kind].module_free():
            raise SpecError(
                f"{name}: the entries of a numbered `modules:` container are modules (an nn.ModuleList): "
                "write merges and resizes in a named container or outside it",
                where,
            )
    children = qualified(children, name, local)
    if body.from_ is not None and not children[0].inputs:  # the first entry reads the container's `from:`
        children = (dataclasses.replace(children[0], inputs=(read,)), *children[1:])
    return SymGroup(name, children, before[read].channels, dataflow=True), result


def piece(item: SymItem, kind: str, in_group: bool, in_channels: Any, where: Location) -> SymGroup:
    """`convs.1: {...}`: entry 1 of the numbered container `convs` (an nn.ModuleList), written
    at the place of the list where forward calls it, between the block's other layers (timm's
    Res2Net runs convs[i], bns[i] and an add in turn). It is a piece of the container: a
    one-entry `modules:` container, which `merged_containers` joins with the others of its name."""
    container, number = item.name.split(".")
    if in_group:
        raise SpecError(f"{item.name}: an entry written as `container.number` is an entry of a block kind's `layers:` or the model's, not of a list or `after:`", where)
    if not (kind in ("block", "group") or (kind in ops.KINDS and not ops.KINDS[kind].module_free())):
        raise SpecError(f"{item.name}: the entries of a numbered container are modules: a layer PyTorch holds as a module or a block, not {kind}", where)
    if item.condition is not None:
        raise SpecError(f"{item.name}: an entry of a container is not conditional; put `if:` on the block", where)
    return SymGroup(container, (dataclasses.replace(item, name=number, where=where),), in_channels, dataflow=True, where=where)


def written_name(item: SymItem) -> str:
    """An item's name as the spec writes it: `convs.1` for a piece of the container convs."""
    if isinstance(item, SymGroup) and item.dataflow and len(item.at) and "." in str(item.at[-1]):
        return f"{item.name}.{item.children[0].name}"
    return item.name


def check_pieces(items: tuple[SymItem, ...]) -> None:
    """The entries written `convs.0`, `convs.1`, ... of one list are numbered from 0 in the
    order they are written, and no other item of the list is named `convs`."""
    numbers: dict[str, list[int]] = {}
    for item in items:
        if isinstance(item, SymGroup) and item.dataflow and len(item.at) and "." in str(item.at[-1]):
            (child,) = item.children
            got = numbers.setdefault(item.name, [])
            if int(child.name) != len(got):
                raise SpecError(
                    f"{item.name}.{child.name}: the entries of container {item.name!r} are numbered from 0 in the order "
                    f"they are written; expected {item.name}.{len(got)}",
                    item.where,
                )
            got.append(int(child.name))
    for item in items:
        if item.name in numbers and not (isinstance(item, SymGroup) and item.dataflow and "." in str(item.at[-1])):
            raise SpecError(f"{item.name}: the name of a container whose entries are written `{item.name}.0`, ...; name this layer otherwise", item.where)


def implicit_read(item: SymItem, prev: str) -> tuple[str, ...]:
    """What an item without `inputs` reads: the tensor before it, unless it is a `modules:`
    container whose first entry reads another (Keras would drop a layer only that reads)."""
    first = item
    while isinstance(first, SymGroup) and first.dataflow:
        if first.inputs:
            return first.inputs
        first = first.children[0]
    return first.inputs[:1] if first is not item and first.inputs else (prev,)


def check_entries_read(layers: tuple[SymItem, ...], kept: set[str], scope: str) -> None:
    """Every entry of a block kind's `modules:` containers is read (by a later item, as the
    block's result, an output or a shortcut's input): Keras builds no layer nothing reads."""
    flat = flat_items(layers)
    last = container_results(flat)
    read = {last.get(n, n) for n in kept} | {flat[-1].name}
    for k, item in enumerate(flat):
        read.update(item.inputs or ((flat[k - 1].name,) if k else ()))
    for item in flat:
        if "." in item.name and item.name not in read:
            raise SpecError(
                f"entry {item.name!r} of {scope} is never read: no later layer reads it and it is not the "
                "block's result; read it (`from:`, a merge) or remove it",
                item.where,
            )


def qualified(items: tuple[SymItem, ...], prefix: str, local: set[str]) -> tuple[SymItem, ...]:
    """`items` with their reads of the container's own tensors written as the block's paths
    (`fpn.inner.2`), so the emitters call them from the enclosing forward."""

    def path(n: str) -> str:
        return f"{prefix}.{n}" if n in local or n.split(".")[0] in local else n

    out = []
    for item in items:
        if isinstance(item, SymGroup) and item.dataflow:
            item = dataclasses.replace(item, children=qualified(item.children, prefix, local))
        if isinstance(item, SymParallel):  # a row of a grid, and its own rows
            item = dataclasses.replace(item, children=qualified(item.children, prefix, local))
            if item.passes is not None:
                item = dataclasses.replace(item, passes=path(item.passes))
        out.append(dataclasses.replace(item, inputs=tuple(path(n) for n in item.inputs)))
    return tuple(out)
