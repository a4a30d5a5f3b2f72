"""Deploy pass: parallel linear branches that meet at an add become one conv (structural
re-parameterisation, RepVGG's and MobileOne's deploy form), in any block kind whose branches
are linear up to the add.

A branch is the identity of the tensor the branches read, a batch norm of it, a conv of it
(with the batch norm folded into it before this pass), or a call of a block kind that is one
such conv. Adds that only join branches (nested adds, an add under `if:` that passes its
first input on where its condition fails) are one sum. The convs must be centred (padding
kernel // 2, odd kernels, no dilation) with one stride and one groups; the merged conv has
the largest kernel and takes the name of the last add (so a spec names its deploy conv by
naming that add). The weights: archc.deploy.weights; the deploy check proves each merge
exact on the model. Imports neither torch nor tensorflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archc.deploy.doc import kind, name_and_body, reads
from archc.spec import expr


@dataclass(frozen=True)
class Merge:
    """A conv `name` of block kind `owner` that sums `branches`, each a chain of training
    layers (conv, then batch norms; a batch norm alone; () the identity) by their paths in an
    instance of `owner`; `needs`: per branch, the layer whose presence in an instance says the
    branch is there (an entry under `if:`), or None (always)."""

    owner: str
    name: str
    branches: tuple[tuple[str, ...], ...]
    needs: tuple[str | None, ...]


@dataclass(frozen=True)
class _Leaf:
    chain: tuple[str, ...]
    needs: str | None
    conv: (
        dict[str, str] | None
    )  # the conv's arguments as expressions; None for a norm or the identity


def merge(
    doc: dict[str, Any], folded: dict[tuple[str, str], str]
) -> tuple[list[str], list[Merge]]:
    """Merge the branches of every block kind; `folded`: (kind, conv) -> the batch norm folded into it."""
    done: list[str] = []
    merges: list[Merge] = []
    for owner_name, owner in doc["blocks"].items():
        if owner.get("connectivity", "none") != "none" or owner.get("outputs"):
            continue
        entries = owner["layers"]
        k = len(entries) - 1
        while k > 0:
            found = _branches(doc, owner_name, owner, entries, k, folded)
            if found is None:
                k -= 1
                continue
            members, leaves, source, conv = found
            name = name_and_body(entries[k])[0]
            order = {name_and_body(e)[0]: j for j, e in enumerate(entries)}
            branches = [
                m
                for m in sorted(members, key=order.__getitem__)
                if kind(name_and_body(entries[order[m]])[1]) != "add"
            ]
            if any(not leaf.chain for leaf in leaves):
                branches.append(source)
            done.append(
                f"block {owner_name}: branches {', '.join(branches)} and the adds joining them merged into one conv {name}"
            )
            merged = (
                {"conv": conv}
                if _first_reads(entries, k, members, source, owner)
                else {"conv": conv, "from": source}
            )
            entries[k] = {name: merged}
            for j in sorted(
                (i for i in range(k) if name_and_body(entries[i])[0] in members),
                reverse=True,
            ):
                del entries[j]
            merges.append(
                Merge(
                    owner_name,
                    name,
                    tuple(leaf.chain for leaf in leaves),
                    tuple(leaf.needs for leaf in leaves),
                )
            )
            k = len(entries) - 1
    return done, merges


def _first_reads(
    entries: list[Any], k: int, members: set[str], source: str, owner: dict[str, Any]
) -> bool:
    """After the members go, the entry at `k` is the first, and `source` is the kind's input."""
    first_input = (owner.get("inputs") or ["input"])[0]
    return source == first_input and all(
        name_and_body(e)[0] in members for e in entries[:k]
    )


def _branches(
    doc: dict[str, Any],
    owner_name: str,
    owner: dict[str, Any],
    entries: list[Any],
    k: int,
    folded: dict[tuple[str, str], str],
) -> tuple[set[str], list[_Leaf], str, dict[str, Any]] | None:
    """If entry k is an add of linear branches: (the entries it replaces, the branches, the
    tensor they read, the merged conv's arguments); else None."""
    name, body = name_and_body(entries[k])
    if kind(body) != "add" or not isinstance(body["add"], list) or "from" in body:
        return None
    index = {name_and_body(e)[0]: j for j, e in enumerate(entries)}
    inputs = owner.get("inputs") or ["input"]
    read = reads(owner)
    members: set[str] = set()
    leaves: list[_Leaf] = []
    sources: set[str] = set()
    top_if = body.get("if")

    def visit(x: str, allowed_if: str | None, needs: str | None) -> bool:
        """`allowed_if`: the condition x may have; `needs`: the conditional add above it."""
        if x in inputs:
            sources.add(x)
            leaves.append(_Leaf((), needs, None))
            return True
        if x not in index or read[x] != 1:
            return False
        j = index[x]
        _, b = name_and_body(entries[j])
        cond = b.get("if")
        if cond is not None and cond != allowed_if:
            return False
        members.add(x)
        needs = x if cond is not None else needs
        op = kind(b)
        if op == "add" and isinstance(b["add"], list) and "from" not in b:
            return all(visit(y, cond or allowed_if, needs) for y in b["add"])
        source = b.get("from") or (name_and_body(entries[j - 1])[0] if j else inputs[0])
        if not isinstance(source, str) or source not in inputs:
            return False
        sources.add(source)
        if op == "batchnorm":
            leaves.append(_Leaf((x,), needs, None))
            return True
        if op == "conv":
            chain = (x, folded[(owner_name, x)]) if (owner_name, x) in folded else (x,)
            leaves.append(
                _Leaf(
                    chain,
                    needs,
                    {key: str(v) for key, v in b["conv"].items() if key != "init"},
                )
            )
            return True
        if op == "block":
            inner = _single_conv(doc, b, folded)
            if inner is None:
                return False
            conv_name, norm, args = inner
            chain = (
                (f"{x}.{conv_name}", f"{x}.{norm}") if norm else (f"{x}.{conv_name}",)
            )
            leaves.append(_Leaf(chain, needs, args))
            return True
        return False

    # where the last add's `if:` fails it passes its first input on: that one is unconditional
    if not all(
        visit(y, None if i == 0 else top_if, name if top_if is not None and i else None)
        for i, y in enumerate(body["add"])
    ):
        return None
    convs = [leaf.conv for leaf in leaves if leaf.conv is not None]
    if len(leaves) < 2 or not convs or len(sources) != 1:
        return None
    conv = _merged_args(convs)
    return (members, leaves, sources.pop(), conv) if conv is not None else None


def _single_conv(
    doc: dict[str, Any], call: dict[str, Any], folded: dict[tuple[str, str], str]
) -> tuple[str, str | None, dict[str, str]] | None:
    """A call of a block kind that is one conv of its input: the conv's name, the norm folded
    into it, and its arguments with the call's values substituted."""
    kind_name = call["block"]
    definition = doc["blocks"].get(kind_name)
    if (
        definition is None
        or definition.get("after")
        or definition.get("shortcut")
        or len(definition["layers"]) != 1
    ):
        return None
    name, body = name_and_body(definition["layers"][0])
    if (
        kind(body) != "conv"
        or body.get("from", "input") != "input"
        or "if" in body
        or definition.get("inputs")
    ):
        return None
    values: dict[str, Any] = {
        p: decl
        for p, decl in definition.get("params", {}).items()
        if not (isinstance(decl, str) and decl in ("int", "float", "bool", "str"))
    }
    values.update(call.get("with", {}))
    trees = {p: expr.parse(str(v)) for p, v in values.items()}
    args = {
        key: expr.to_python(expr.substitute(expr.parse(str(v)), trees))
        for key, v in body["conv"].items()
        if key != "init"
    }
    return name, folded.get((kind_name, name)), args


def _merged_args(convs: list[dict[str, str]]) -> dict[str, Any] | None:
    """One conv for centred convs of one stride, groups and width: the largest kernel."""
    for key in ("filters", "stride", "groups"):
        if len({c.get(key, "1") for c in convs}) != 1:
            return None
    kernels = []
    for c in convs:
        try:
            kernel, padding, dilation = (
                int(c["kernel"]),
                int(c.get("padding", "0")),
                int(c.get("dilation", "1")),
            )
        except (
            ValueError
        ):  # a kernel per dimension, or one an expression gives: not merged
            return None
        if kernel % 2 == 0 or padding != kernel // 2 or dilation != 1:
            return None
        kernels.append(kernel)
    first = convs[0]
    size = max(kernels)
    args: dict[str, Any] = {"filters": _value(first["filters"]), "kernel": size}
    if first.get("stride", "1") != "1":
        args["stride"] = _value(first["stride"])
    if size > 1:
        args["padding"] = size // 2
    if first.get("groups", "1") != "1":
        args["groups"] = _value(first["groups"])
    args["bias"] = True
    return args


def _value(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text
