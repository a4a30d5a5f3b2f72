"""Deploy pass: parallel linear branches that meet at an add become one conv (structural
re-parameterisation, RepVGG's and MobileOne's deploy form), in any block kind whose branches
are linear up to the add.

A branch is the identity of the tensor the branches read, a batch norm of it, a conv of it
(with the batch norm folded into it before this pass, the add reading the norm by name or
not), or a call of a block kind that is one such conv. A block kind that declares its deploy
form (`deploy: {merge: [...], into: NAME}`) gets exactly that merge, checked here with a
located error for what is not one (the lowering runs this pass for such a spec). Adds that only join branches (nested adds, an add under `if:` that passes its
first input on where its condition fails) are one sum. The convs must be centred (padding
kernel // 2, odd kernels, no dilation) with one stride and one groups; the merged conv has
the largest kernel and takes the name of the last add (so a spec names its deploy conv by
naming that add). The weights: archc.deploy.weights; the deploy check proves each merge
exact on the model. Imports neither torch nor tensorflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from archc.deploy.doc import kind, lists, name_and_body, read_sites, reads
from archc.errors import Location, SpecError
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
    doc: dict[str, Any],
    folded: dict[tuple[str, str], str],
    locate: Callable[..., Location | None] = lambda kind, *sub: None,
) -> tuple[list[str], list[Merge]]:
    """Merge the branches of every block kind; `folded`: (kind, conv) -> the batch norm folded
    into it. A kind that declares its deploy form (`deploy:`) gets exactly the merges it
    declares, each checked (a SpecError where `locate(kind, *path)` says); any other kind,
    those found."""
    done: list[str] = []
    merges: list[Merge] = []
    for owner_name, owner in doc["blocks"].items():
        declared = owner.pop("deploy", None)
        if declared is not None:
            forms = declared if isinstance(declared, list) else [declared]
            for i, form in enumerate(forms):
                path = ("deploy", i) if isinstance(declared, list) else ("deploy",)
                where = lambda *sub, path=path: locate(owner_name, *path, *sub)  # noqa: E731
                _declared(doc, owner_name, owner, form, folded, where, done, merges)
            continue
        if owner.get("connectivity", "none") != "none" or owner.get("outputs"):
            continue
        entries = owner["layers"]
        k = len(entries) - 1
        while k > 0:
            found = _branches(doc, owner_name, owner, entries, k, folded)
            if found is None:
                k -= 1
                continue
            name = name_and_body(entries[k])[0]
            _apply(owner_name, owner, k, found, name, done, merges)
            k = len(entries) - 1
    return done, merges


def _apply(
    owner_name: str,
    owner: dict[str, Any],
    k: int,
    found: tuple[set[str], list[_Leaf], str, dict[str, Any]],
    name: str,
    done: list[str],
    merges: list[Merge],
    how: str = "",
) -> None:
    """Replace the add at `k` and the branches it joins by one conv `name`."""
    entries = owner["layers"]
    members, leaves, source, conv = found
    add_name = name_and_body(entries[k])[0]
    order = {name_and_body(e)[0]: j for j, e in enumerate(entries)}
    branches = [
        m
        for m in sorted(members, key=order.__getitem__)
        if kind(name_and_body(entries[order[m]])[1]) != "add"
    ]
    if any(not leaf.chain for leaf in leaves):
        branches.append(source)
    done.append(
        f"block {owner_name}: branches {', '.join(branches)} and the adds joining them merged into one conv {name}{how}"
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
    if name != add_name:
        _rename(owner, add_name, name)
    merges.append(
        Merge(
            owner_name,
            name,
            tuple(leaf.chain for leaf in leaves),
            tuple(leaf.needs for leaf in leaves),
        )
    )


def _declared(
    doc: dict[str, Any],
    owner_name: str,
    owner: dict[str, Any],
    form: dict[str, Any],
    folded: dict[tuple[str, str], str],
    where: Callable[..., Location | None],
    done: list[str],
    merges: list[Merge],
) -> None:
    """Apply one declared merge (`{merge: [...], into: NAME}`) of block kind `owner_name`, or
    raise the SpecError that says why it is not a merge of linear branches."""
    wanted, into = form["merge"], form["into"]
    head = f"block {owner_name}: deploy: "
    if owner.get("connectivity", "none") != "none" or owner.get("outputs"):
        raise SpecError(head + "branches merge in a block kind with connectivity: none and one output", where())
    entries = owner["layers"]
    inputs = owner.get("inputs") or ["input"]
    known = {name_and_body(e)[0] for e in entries} | set(inputs)
    for i, branch in enumerate(wanted):
        if branch not in known:
            raise SpecError(head + f"{branch!r} is not a layer of block {owner_name} (nor its input)", where("merge", i))
    joins = {
        k: leaves for k in range(len(entries)) if (leaves := _joined(entries, k)) is not None
    }
    at = max((k for k, leaves in joins.items() if set(leaves) == set(wanted)), default=None)
    if at is None:
        adds = "; ".join(f"{name_and_body(entries[k])[0]} joins {', '.join(leaves)}" for k, leaves in joins.items())
        raise SpecError(
            head + f"no add joins exactly the branches {', '.join(wanted)} (through nested adds)"
            + (f"; {adds}" if adds else f"; block {owner_name} has no add of a list"),
            where("merge"),
        )
    add_name = name_and_body(entries[at])[0]
    others = {
        name_and_body(e)[0] for _, es in lists(owner) for e in es
    } - set(wanted) - {add_name} - set(_added(entries, at))
    if into in others or into in inputs:
        raise SpecError(head + f"`into: {into}` is already a name in block {owner_name}; name the merged conv anew "
                        f"or after the add joining the branches ({add_name})", where("into"))  # fmt: skip
    why: list[tuple[str | None, str]] = []
    found = _branches(doc, owner_name, owner, entries, at, folded, why)
    if found is None:
        branch, reason = why[0] if why else (None, "they are not linear up to the add")
        at_branch = where("merge", wanted.index(branch)) if branch in wanted else where("merge")
        raise SpecError(head + f"the branches joined by {add_name} cannot be merged into one conv: {reason}", at_branch)
    _apply(owner_name, owner, at, found, into, done, merges, " (declared)")


def _joined(entries: list[Any], k: int) -> list[str] | None:
    """What the add of a list at `k` joins, through the adds of lists it reads; None if entry `k` is no such add."""
    index = {name_and_body(e)[0]: j for j, e in enumerate(entries)}

    def is_add(body: dict[str, Any]) -> bool:
        return kind(body) == "add" and isinstance(body["add"], list) and "from" not in body

    if not is_add(name_and_body(entries[k])[1]):
        return None
    leaves: list[str] = []

    def walk(body: dict[str, Any]) -> None:
        for y in body["add"]:
            j = index.get(y)
            if j is not None and j < k and is_add(inner := name_and_body(entries[j])[1]):
                walk(inner)
            else:
                leaves.append(y)

    walk(name_and_body(entries[k])[1])
    return leaves


def _added(entries: list[Any], k: int) -> list[str]:
    """The adds that the add at `k` reads (through adds): they go with it."""
    index = {name_and_body(e)[0]: j for j, e in enumerate(entries)}
    out: list[str] = []
    todo = list(name_and_body(entries[k])[1]["add"])
    while todo:
        y = todo.pop()
        j = index.get(y)
        if j is not None and j < k and _joined(entries, j) is not None:
            out.append(y)
            todo += name_and_body(entries[j])[1]["add"]
    return out


def _rename(owner: dict[str, Any], old: str, new: str) -> None:
    """Every read of tensor `old` in a block kind reads `new` (doc.read_sites: the places
    `reads` counts, the kind's `outputs:` among them)."""
    for holder, key in read_sites(owner):
        value = holder[key]
        if isinstance(value, list):
            holder[key] = [new if v == old else v for v in value]
        elif isinstance(value, dict):
            holder[key] = {k: new if v == old else v for k, v in value.items()}
        elif value == old:
            holder[key] = new


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
    why: list[tuple[str | None, str]] | None = None,
) -> tuple[set[str], list[_Leaf], str, dict[str, Any]] | None:
    """If entry k is an add of linear branches: (the entries it replaces, the branches, the
    tensor they read, the merged conv's arguments); else None, with (the branch, the reason)
    appended to `why`."""
    why = [] if why is None else why

    def no(branch: str | None, reason: str) -> bool:
        why.append((branch, reason))
        return False

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
        if x not in index:
            return no(x, f"{x} is not a layer of the block")
        if read[x] != 1:
            return no(x, f"{x} is read elsewhere too (a branch's output only reaches the adds)")
        j = index[x]
        _, b = name_and_body(entries[j])
        cond = b.get("if")
        if cond is not None and cond != allowed_if:
            return no(x, f"{x} exists under `if: {cond}`, and the add reading it under another condition")
        members.add(x)
        needs = x if cond is not None else needs
        op = kind(b)
        if op == "add" and isinstance(b["add"], list) and "from" not in b:
            return all(visit(y, cond or allowed_if, needs) for y in b["add"])
        conv = b.get("from") or (name_and_body(entries[j - 1])[0] if j else None)
        if op == "identity" and folded.get((owner_name, conv)) == x:  # a batch norm read by name, folded into its conv
            return visit(conv, cond or allowed_if, needs)
        if op not in ("batchnorm", "conv", "block"):
            return no(x, f"{x} is a layer of kind {op}, not linear: a branch is a conv, a batch norm, the identity, or a call of a block "
                      "kind that is one conv (each reading the block's input, linear up to the add)")
        source = b.get("from") or (name_and_body(entries[j - 1])[0] if j else inputs[0])
        if not isinstance(source, str) or source not in inputs:
            return no(x, f"{x} reads {source}, not the block's input")
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
        inner = _single_conv(doc, b, folded)  # a call of a block kind
        if inner is None:
            return no(x, f"{x} calls block kind {b['block']}, which is not one conv (and its batch norm)")
        conv_name, norm, args = inner
        chain = (f"{x}.{conv_name}", f"{x}.{norm}") if norm else (f"{x}.{conv_name}",)
        leaves.append(_Leaf(chain, needs, args))
        return True

    # where the last add's `if:` fails it passes its first input on: that one is unconditional
    if not all(
        visit(y, None if i == 0 else top_if, name if top_if is not None and i else None)
        for i, y in enumerate(body["add"])
    ):
        return None
    convs = [leaf.conv for leaf in leaves if leaf.conv is not None]
    if len(leaves) < 2 or not convs or len(sources) != 1:
        no(None, "no branch is a conv" if not convs else "the branches read different tensors")
        return None
    conv = _merged_args(convs)
    if conv is None:
        no(None, "their convs are not one conv's parts (one filters, stride and groups; odd kernels given as "
           "numbers, padded kernel // 2, without dilation; no standardized weight)")
        return None
    return members, leaves, sources.pop(), conv


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
    """One conv for centred convs of one stride, groups and width: the largest kernel; not of
    standardized convs (each computes with its own weight normalized, which no sum is)."""
    if any(c.get("standardize", "False") != "False" for c in convs):
        return None
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
