"""A block whose forward calls the entries of an nn.ModuleList child one at a time, between
other ops (timm's Res2Net: `for i, (conv, bn) in enumerate(zip(self.convs, self.bns))`, each
part through convs[i], bns[i] and a ReLU, plus the previous part): each entry becomes an entry
of the block's list named by its path, `convs.1`, which the spec writes where forward calls it
(docs/spec.md "Containers wired by dataflow"), so the state_dict keys stay the original's.

The spec numbers such entries from 0 in the order they are written, which is the order forward
calls them: a list whose entries are called in another order, some twice or some never, is
refused in one line.
"""

from __future__ import annotations

from typing import Any

from archc.importer.ops import Unsupported


def entry_call(module: Any, target: str) -> tuple[str, int] | None:
    """(the list's name, the entry's number) where `target` (a call_module's) is an entry of an
    nn.ModuleList child of `module` (or of an nn.Sequential whose children are all numbered,
    called entry by entry), `convs.1`; None for anything else."""
    import torch.nn as nn

    head, dot, key = target.partition(".")
    if not dot or not key.isdigit() or str(int(key)) != key:
        return None
    child = getattr(module, head, None)
    if type(child) is nn.ModuleList or (type(child) is nn.Sequential and all(k.isdigit() for k, _ in child.named_children())):
        return head, int(key)
    return None


def check_order(graph: Any, module: Any, what: str) -> None:
    """Every entry of each list called entry by entry is called once, in the order of its
    numbers, as the spec writes them: refuse anything else."""
    seen: dict[str, list[int]] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            found = entry_call(module, str(node.target))
            if found is not None:
                seen.setdefault(found[0], []).append(found[1])
    for head, numbers in seen.items():
        size = len(getattr(module, head))
        if numbers != list(range(size)):
            raise Unsupported(
                f"{what}: forward calls the entries {numbers} of {head} ({size} entries) one at a time, where a spec "
                "writes each entry once, numbered in the order forward calls them"
            )


def still_read(graph: Any, names: dict[Any, str], name: str, node: Any) -> bool:
    """Whether a tensor that `name` holds before `node` is read after it (Res2Net's first ReLU,
    whose output each part slices, called again on every part): a shared activation called
    again at `node` then takes a name of its own, or the later reads would read the new call."""
    order = {n: k for k, n in enumerate(graph.nodes)}
    return any(order[user] > order[node] for held, held_name in names.items() if held_name == name for user in held.users)
