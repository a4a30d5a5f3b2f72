"""Deploy passes over the spec document: drop what is the identity at inference, and fold
each batch norm into the conv or dense layer before it. Each pass says what it did; the
weights follow from the two graphs (archc.deploy.weights), so a pass keeps every name the
weights are found by.

In a numbered list (an nn.Sequential) a removed entry becomes an `identity` entry, so the
entries after it keep their numbers and checkpoint keys, as torch.fx's conv-bn fusion
leaves an nn.Identity. A named entry is removed unless something reads it by name (then
it too becomes an identity). Imports neither torch nor tensorflow.
"""

from __future__ import annotations

from typing import Any

from archc import ops
from archc.deploy.doc import (
    Entry,
    kind,
    lists,
    name_and_body,
    owners,
    reads,
    reads_previous,
)
from archc.spec.models import POSITIONAL, Defaults


def strip(doc: dict[str, Any]) -> list[str]:
    """Remove every layer that is the identity at inference (dropout, stochastic depth)."""
    done = []
    for owner_name, owner in owners(doc):
        for path, entries in list(lists(owner)):
            read = reads(owner)
            for k in reversed(range(len(entries))):
                name, body = name_and_body(entries[k])
                op = kind(body) if isinstance(body, dict) else None
                if not (op in ops.KINDS and ops.KINDS[op].INFERENCE_IDENTITY):
                    continue
                _remove(entries, k, read)
                done.append(f"{_where(owner_name, path, name, k)}: {op} removed")
    return done


def fold(doc: dict[str, Any]) -> tuple[list[str], dict[tuple[str, str], str]]:
    """Fold each batch norm into the conv or dense layer it reads, where nothing else reads
    that layer's output and the layer exists only where the norm does; a projection
    shortcut's conv + batch norm likewise. Also returns (function, layer) -> the norm folded
    into it, for the layers of a function's own list."""
    done = []
    folded: dict[tuple[str, str], str] = {}
    for owner_name, owner in owners(doc):
        for path, entries in list(lists(owner)):
            read = reads(owner)
            for k in reversed(range(1, len(entries))):
                name, body = name_and_body(entries[k])
                layer_name, layer = name_and_body(entries[k - 1])
                if not (
                    isinstance(body, dict)
                    and kind(body) == "batchnorm"
                    and isinstance(layer, dict)
                ):
                    continue
                op = kind(layer)
                if (
                    not (op in ops.KINDS and ops.KINDS[op].folds_norm(_args(layer, op)))
                    or body.get("from", layer_name) != layer_name
                ):
                    continue
                read_elsewhere = (
                    read[str(k - 1)]
                    if layer_name == POSITIONAL
                    else read[layer_name] > 1
                )  # the norm reads it once
                if layer.get("if") not in (None, body.get("if")) or read_elsewhere:
                    continue  # the layer's own output is read elsewhere, or it exists without the norm
                args = layer[op]
                bias = args.get("bias", _default(doc, op, "bias"))
                if "if" in body and "if" not in layer and bias is not True:  # a bias where the norm is
                    args["bias"] = f"({body['if']}) or ({bias})" if isinstance(bias, str) else body["if"]
                else:
                    args["bias"] = True
                _remove(entries, k, read)
                if not path and layer_name != POSITIONAL:
                    folded[(owner_name, layer_name)] = name
                done.append(
                    f"{_where(owner_name, path, name, k)}: batch norm folded into {layer_name if layer_name != POSITIONAL else k - 1}"
                )
        for shortcut in _shortcuts(owner):
            if shortcut.get("kind") == "projection" and shortcut.get("batchnorm", True):
                shortcut["batchnorm"] = False
                shortcut["bias"] = True
                done.append(
                    f"block {owner_name}: batch norm of shortcut {shortcut.get('name', 'downsample')} folded into its conv"
                )
    return done, folded


def fold_after_calls(doc: dict[str, Any]) -> list[str]:
    """Fold a batch norm that follows every call of a block kind ending in a conv (timm's deep
    stem, then the model's bn1) into that conv: the kind's conv gets a bias, the norms go."""
    sites: dict[str, list[tuple[dict[str, Any], list[Entry], int]]] = {}
    refused: set[str] = set()
    for _, owner in owners(doc):
        read = reads(owner)
        for _, entries in lists(owner):
            for k, (name, body) in enumerate(map(name_and_body, entries)):
                if not isinstance(body, dict) or not ({"block", "stage", "stages"} & body.keys()):
                    continue
                called = body.get("block", body.get("stage", body.get("stages")))
                if isinstance(body.get("between"), dict):  # a table's `between` instance: no site, never folded
                    refused.add(body["between"].get("block"))
                after = name_and_body(entries[k + 1])[1] if k + 1 < len(entries) else None
                if (
                    "block" in body and not body.get("inline") and "if" not in body and name != POSITIONAL and read[name] == 1
                    and isinstance(after, dict) and kind(after) == "batchnorm" and after.get("from", name) == name and "if" not in after
                ):  # fmt: skip
                    sites.setdefault(called, []).append((owner, entries, k + 1))
                else:
                    refused.add(called)
    done = []
    for called, calls in sites.items():
        definition = doc["blocks"].get(called)
        if called in refused or definition is None or set(definition) & {"after", "shortcut", "outputs", "inputs"}:
            continue
        last_name, last = name_and_body(definition["layers"][-1])
        op = kind(last) if isinstance(last, dict) else None
        by = str(len(definition["layers"]) - 1) if last_name == POSITIONAL else last_name  # read by name or number
        if not (op in ops.KINDS and ops.KINDS[op].folds_norm(_args(last, op))) or "if" in last or reads(definition)[by]:
            continue
        last[op]["bias"] = True
        for owner, entries, k in sorted(calls, key=lambda call: -call[2]):  # later entries of a list first
            norm = name_and_body(entries[k])[0]
            _remove(entries, k, reads(owner))
            done.append(f"{norm}: batch norm folded into the last layer of block {called}")
    return done


# Per-channel linear ops a batch norm may pass through to a dense layer: the mean over the map
# of scale * x + shift is scale * mean(x) + shift; a flatten after it keeps the channels' order.
THROUGH = ("global_avgpool", "flatten")


def fold_before(doc: dict[str, Any], merged: set[tuple[str, str]]) -> list[str]:
    """Fold a batch norm into the conv after it where that is exact: the conv pads nothing
    (zero padding after the shift is not the shift of zero padding), or into the dense layer
    after it and a global average pool (the pool of an affine map per channel is that map of
    the pool). Only where the norm's own input is known not to be a conv or dense layer (it is
    an op of the same list, or the model's input): there `fold` is the pass, and the weights
    tell the two apart by it. Not into a conv of `merged` ((block kind, name): made by merge).
    A norm this cannot fold stays."""
    done = []
    for owner_name, owner in owners(doc):
        for path, entries in list(lists(owner)):
            read = reads(owner)
            for k in reversed(range(len(entries) - 1)):
                name, body = name_and_body(entries[k])
                if not (isinstance(body, dict) and kind(body) == "batchnorm" and "if" not in body and reads_previous(body)):
                    continue
                if k == 0:
                    if owner_name or path:  # a block kind's or a nested list's input: made elsewhere
                        continue
                else:
                    before = name_and_body(entries[k - 1])[1]
                    op = kind(before) if isinstance(before, dict) else None
                    if op not in ops.KINDS or ops.KINDS[op].FOLDS_NORM:
                        continue
                target = _reader(entries, k, read)
                if target is None:
                    continue
                j, pooled = target
                target_name, layer = name_and_body(entries[j])
                op = kind(layer)
                if (owner_name, target_name) in merged:
                    continue
                if op == "conv" and j == k + 1 and _unpadded(layer["conv"]) and ops.KINDS["conv"].folds_norm(layer["conv"]):
                    pass
                elif not (op == "dense" and (pooled or (k and kind(name_and_body(entries[k - 1])[1]) == "global_avgpool"))):
                    continue
                layer[op]["bias"] = True
                _remove(entries, k, read)
                into = target_name if target_name != POSITIONAL else str(j)
                done.append(f"{_where(owner_name, path, name, k)}: batch norm folded into {into} after it")
    return done


def _args(layer: dict[str, Any], op: str) -> dict[str, Any]:
    """A layer's arguments as the spec writes them (a shorthand has none)."""
    args = layer.get(op)
    return args if isinstance(args, dict) else {}


def _reader(entries: list[Entry], k: int, read: Any) -> tuple[int, bool] | None:
    """The entry that alone reads the norm at `k`, through global average pools (and a
    flatten after one) that nothing else reads, and whether it reads through one."""
    j, pooled = k, False
    while j + 1 < len(entries):
        name, body = name_and_body(entries[j])
        if (read[str(j)] if name == POSITIONAL else read[name] != 1) or "if" in body:
            return None
        nxt = name_and_body(entries[j + 1])[1]
        if not (isinstance(nxt, dict) and reads_previous(nxt)) or "if" in nxt:
            return None
        op = kind(nxt)
        if op == "global_avgpool" or (op == "flatten" and pooled):
            j, pooled = j + 1, True
            continue
        return (j + 1, pooled) if op in ("conv", "dense") else None
    return None


def _unpadded(args: dict[str, Any]) -> bool:
    padding = args.get("padding", 0)
    return padding == 0 or (isinstance(padding, list) and all(p == 0 for p in padding))


def _default(doc: dict[str, Any], op: str, attr: str) -> Any:
    """What a layer of kind `op` that leaves `attr` unset gets: its `defaults.KIND.ATTR`
    (as the op declares), or the op's own default."""
    default = next(a.default for a in ops.KINDS[op].ATTRS if a.name == attr)
    if isinstance(default, str) and default.startswith("defaults."):
        _, section, key = default.split(".")
        unset = getattr(getattr(Defaults.model_construct(), section), key)  # the spec models' own default
        return doc.get("defaults", {}).get(section, {}).get(key, unset)
    return default


def _shortcuts(owner: dict[str, Any]) -> list[dict[str, Any]]:
    sc = owner.get("shortcut")
    return sc if isinstance(sc, list) else [sc] if isinstance(sc, dict) else []


def _remove(entries: list[Entry], k: int, read: Any) -> None:
    """Entry k is the identity now: drop it, or keep an identity where its place or name is read."""
    name, body = name_and_body(entries[k])
    numbered = all(name_and_body(e)[0] == POSITIONAL for e in entries)
    if numbered or read[name] or len(entries) == 1:
        kept = {
            "identity": {},
            **({"from": body["from"]} if "from" in body else {}),
            **({"if": body["if"]} if "if" in body else {}),
        }
        entries[k] = {name: kept}
        return
    if (
        "from" in body
        and k + 1 < len(entries)
        and reads_previous(name_and_body(entries[k + 1])[1])
    ):
        nxt_name, nxt = name_and_body(entries[k + 1])
        entries[k + 1] = {
            nxt_name: {**nxt, "from": body["from"]}
        }  # what it read, it reads now
    del entries[k]


def _where(owner: str, path: tuple[str, ...], name: str, k: int) -> str:
    return ".".join(
        p
        for p in (
            (f"block {owner}" if owner else "model"),
            *path,
            name if name != POSITIONAL else str(k),
        )
        if p
    )
