"""The spec as a document the deploy passes rewrite: plain mappings and lists, as a person
writes them, with the block kinds the model uses written out (a library's kinds included),
and the few facts the passes need about its lists (which entries read which).

A list entry is `{name: body}`; `body` is a mapping with one layer key (`conv: {...}`,
`block: basic`, `add: [a, b]`, `group: [...]`) and perhaps `from:` and `if:`. An entry
written without a name has the name `#` (archc.spec.models.POSITIONAL) and is numbered.
Imports neither torch nor tensorflow.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import yaml

from archc import ops
from archc.spec.loader import LoadedSpec
from archc.spec.models import ITEMS, POSITIONAL

Entry = dict[str, Any]
# keys whose value is a list of entries nested in an entry's body
NESTED = ("group", "branches", "modules", "parallel")


def document(spec: LoadedSpec, kinds: list[str]) -> dict[str, Any]:
    """The spec's model with every block kind in `kinds` (those the model uses) written out:
    the deploy spec stands alone (no `use:` and no `extends:`)."""
    doc = spec.model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    doc.pop("use", None)
    doc.pop("extends", None)
    doc["blocks"] = {
        name: spec.blocks[name].definition.model_dump(
            by_alias=True, exclude_unset=True, mode="json"
        )
        for name in kinds
    }
    return doc


def name_and_body(entry: Entry) -> tuple[str, dict[str, Any]]:
    ((name, body),) = entry.items()
    return name, body


def kind(body: dict[str, Any]) -> str | None:
    """The layer key of a body: an op kind (`conv`) or an item (`block`, `stage`, `group`, ...)."""
    return next((key for key in body if key in ops.KINDS or key in ITEMS), None)


def owners(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each function of the spec: its block kinds by name, then the model ("")."""
    yield from doc["blocks"].items()
    yield "", doc


def lists(owner: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], list[Entry]]]:
    """Every list of entries in a function, with its path of entry names (a nested `group:`
    list's entries are `group.k`); `after:` is the list after a skip block's addition."""
    for key in ("layers", "after"):
        if key in owner:
            yield from _lists(owner[key], ())


def _lists(entries: list[Entry], path: tuple[str, ...], in_sequence: bool = True) -> Iterator[tuple[tuple[str, ...], list[Entry]]]:
    """The lists run in sequence (each entry reads the one before it unless it says); the
    paths of `parallel:` and `branches:` each read the list's input, so only the lists
    inside them are."""
    if in_sequence:
        yield path, entries
    numbered = all(name_and_body(e)[0] == POSITIONAL for e in entries)
    for k, entry in enumerate(entries):
        name, body = name_and_body(entry)
        for key in NESTED:
            if isinstance(body, dict) and isinstance(body.get(key), list):
                yield from _lists(body[key], (*path, str(k) if numbered else name), key in ("group", "modules"))


def read_sites(obj: Any) -> Iterator[tuple[dict[str, Any], str]]:
    """Every place a function names a tensor it reads, as (holder, key): `holder[key]` is a
    name, a list of names or a dict of them (`from:`, `outputs:`, a shortcut's `input:`, a
    merge's list, an op's tensor argument such as `resize: {like: x}`)."""
    if isinstance(obj, list):
        for item in obj:
            yield from read_sites(item)
    if not isinstance(obj, dict):
        return
    for key, value in obj.items():
        if key in ("from", "outputs", "input") or (key in ops.KINDS and ops.KINDS[key].MERGE and isinstance(value, list)):
            yield obj, key
        elif key in ops.KINDS and isinstance(value, dict):
            yield from ((value, read) for read in ops.KINDS[key].READS if read in value)
        yield from read_sites(value)


def names_at(value: Any) -> list[Any]:
    """The names a read site holds."""
    return list(value) if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]


def reads(owner: dict[str, Any]) -> Counter[str]:
    """How often each tensor name is read by name in a function (`read_sites`), a dotted name
    (`backbone.4`) also under each of its parts; and each entry read by the entry after it
    without a name (`entries` below) once more."""
    counts: Counter[str] = Counter()
    for holder, key in read_sites(owner):
        for name in names_at(holder[key]):
            if isinstance(name, str):
                counts[name] += 1
                if "." in name:
                    counts.update(name.split("."))
    for _, entries in lists(owner):
        for before, entry in zip(entries, entries[1:]):
            if reads_previous(name_and_body(entry)[1]):
                counts[name_and_body(before)[0]] += 1
    return counts


def reads_previous(body: dict[str, Any]) -> bool:
    """The entry reads the entry before it (it names no input and is not a merge of names)."""
    k = kind(body)
    return "from" not in body and not (
        k in ops.KINDS and ops.KINDS[k].MERGE and isinstance(body[k], list)
    )


def used_kinds(doc: dict[str, Any]) -> set[str]:
    """The block kinds the model calls, directly or through other kinds."""
    seen: set[str] = set()
    todo = [doc]
    while todo:
        owner = todo.pop()
        for name in _called(owner):
            if name not in seen and name in doc["blocks"]:
                seen.add(name)
                todo.append(doc["blocks"][name])
    return seen


def _called(obj: Any) -> Iterator[str]:
    if isinstance(obj, list):
        for item in obj:
            yield from _called(item)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("block", "stage", "stages") and isinstance(value, str):
                yield value
            elif key != "blocks":
                yield from _called(value)


_SHORT = {
    json.dumps(body, sort_keys=True): name for name, body in ops.SHORTHANDS.items()
}


def to_yaml(doc: dict[str, Any], header: str) -> str:
    """The document as a spec file: entries without a name and layers with nothing to set
    written as a person writes them (`- relu`, `- bn: batchnorm`)."""

    def tidy(obj: Any) -> Any:
        if isinstance(obj, list):
            return [tidy(item) for item in obj]
        if not isinstance(obj, dict):
            return obj
        obj = {key: tidy(value) for key, value in obj.items()}
        layer = kind(obj)
        if (
            layer is not None
        ):  # the layer first, its wiring last: `{conv: {...}, from: x, if: c}`
            obj = {layer: obj[layer], **{k: v for k, v in obj.items() if k not in (layer, "from", "if")},
                   **{k: obj[k] for k in ("from", "if") if k in obj}}  # fmt: skip
        short = _SHORT.get(json.dumps(obj, sort_keys=True))
        if short is not None:
            return short
        if len(obj) == 1 and POSITIONAL in obj:
            return obj[POSITIONAL]
        if len(obj) == 1 and isinstance(
            obj.get("group"), list
        ):  # a list of entries is a group
            return obj["group"]
        return obj

    body = yaml.safe_dump(
        tidy(doc),
        sort_keys=False,
        default_flow_style=None,
        width=110,
        allow_unicode=True,
    )
    return (
        "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + body
    )


_NAME = re.compile(r"[A-Za-z_]\w*")


def drop_unused_params(doc: dict[str, Any]) -> list[str]:
    """Parameters no expression reads any more (a dropout rate once its dropout is gone): off
    the block kinds and their calls' `with:`, `first:` and `last:`, then off the model."""
    done = []
    for kind_name, definition in doc.get("blocks", {}).items():
        params = definition.get("params", {})
        read = _names({k: v for k, v in definition.items() if k != "params"}) | _names(list(params.values()))
        for param in [p for p in params if p not in read]:
            del params[param]
            for call in _calls(doc, kind_name):
                for key in ("with", "first", "last"):
                    call.get(key, {}).pop(param, None)
                columns = call.get("columns", []) if "stages" in call else []
                if param in columns and param not in _names([call.get(key, {}) for key in ("with", "first", "last")]):
                    k = columns.index(param)  # a table's column of it: off the columns and every row
                    del columns[k]
                    for row in call.get("rows", []):
                        del row[k]
            done.append(f"block {kind_name}: parameter {param} unused, removed")
    params = doc.get("params", {})
    read = _names({k: v for k, v in doc.items() if k != "params"}) | _names(list(params.values()))
    for param in [p for p in params if p not in read]:
        del params[param]
        done.append(f"model: parameter {param} unused, removed")
    return done


def _names(obj: Any) -> set[str]:
    """Every identifier in the strings of `obj` (expressions, and more: a superset is safe)."""
    if isinstance(obj, str):
        return set(_NAME.findall(obj))
    if isinstance(obj, dict):  # a `doc:` is prose
        return set().union(*(_names(v) for k, v in obj.items() if k != "doc")) if obj else set()
    if isinstance(obj, list):
        return set().union(*(_names(v) for v in obj)) if obj else set()
    return set()


def _calls(obj: Any, kind_name: str) -> Iterator[dict[str, Any]]:
    if isinstance(obj, list):
        for item in obj:
            yield from _calls(item, kind_name)
    elif isinstance(obj, dict):
        if kind_name in (obj.get("block"), obj.get("stage"), obj.get("stages")):
            yield obj
        for value in obj.values():
            yield from _calls(value, kind_name)
