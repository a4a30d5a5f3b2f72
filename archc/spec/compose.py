"""Variants: `extends:` chains and `--set path=value` overrides, on plain YAML data.

Both act before validation, on the data and its `SourceMap`, so every value
keeps the location of whoever supplied it: a line of the base spec, a line of
the spec that extends it, or the `--set` on the command line.

Merge rules for `extends:` (the extending spec wins):
- mappings merge key by key, recursively;
- any other value, lists included, replaces the base value;
- `key: null` deletes the key from the base;
- `{$replace: value}` replaces a mapping wholesale instead of merging;
- `{$append: [items]}` appends to the base list;
- a mapping over a list of `name: layer` entries patches it by name: `layer3: {repeat: 23}`
  merges into that entry, `layer3: null` removes it, and a new entry is placed with
  `{$before: NAME, ...}` or `{$after: NAME, ...}` (an existing one given either moves), and
  `{$rename: NEW}` gives an existing entry another name (its body and location kept).

Override paths: `params.depth`, `input[1]`, and list entries by name:
`layers.layer3.repeat` finds the `layer3: ...` entry of the `layers` list.
"""

from __future__ import annotations

import bisect
import os
import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from archc.errors import Location, SpecError, SpecWarning
from archc.spec.models import MAX_DOC
from archc.spec.yamlsrc import (
    Path_,
    SourceMap,
    load_yaml_bytes,
    load_yaml_text,
    read_spec_bytes,
)

MAX_EXTENDS_DEPTH = 16  # a chain longer than this is a mistake, not a design
OVERRIDE = "--set "  # the `file` of a value's location when a --set override supplied it


def from_override(where: Location) -> bool:
    """True when `where` is a `--set` on the command line (its paths are relative to the
    working directory, as every path on a command line is)."""
    return where.file.startswith(OVERRIDE)


def _resolved(path: Path, where: Location) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise SpecError(f"extends: cannot resolve {path}: a symlink loop or an unreadable path", where) from None


def load_chain(path: Path) -> tuple[Any, SourceMap, list[bytes]]:
    """Load `path` and, recursively, the specs it extends; merged data, its map, each file's bytes.
    A `doc:` that describes a base whose params a later spec changed is a warning (`_stale_doc`)."""
    data, smap, raws, stale = _load_chain(path, ())
    for warning in stale:
        warnings.warn(warning, stacklevel=3)
    return data, smap, raws


def _load_chain(path: Path, seen: tuple[Path, ...]) -> tuple[Any, SourceMap, list[bytes], list[SpecWarning]]:
    raw = read_spec_bytes(path)
    data, smap = load_yaml_bytes(raw, str(path))
    if not (isinstance(data, dict) and "extends" in data):
        return data, smap, [raw], []
    ref, where = data["extends"], smap.locate(("extends",))
    if not isinstance(ref, str) or not re.fullmatch(r"[\w./-]+\.ya?ml", ref):
        raise SpecError("extends: give the path of a .yaml spec, relative to this file", where)
    base_path = Path(os.path.normpath(path.parent / ref))
    chain = (*seen, _resolved(path, where))
    if _resolved(base_path, where) in chain:
        names = " -> ".join(p.name for p in (*chain, base_path))
        raise SpecError(f"extends cycle: {names}", where)
    if len(chain) > MAX_EXTENDS_DEPTH:
        raise SpecError(f"extends chain is deeper than {MAX_EXTENDS_DEPTH} files", where)
    if not base_path.is_file():
        raise SpecError(f"extends: {base_path} not found (paths are relative to the file that names them)", where)
    base, base_map, base_raw, stale = _load_chain(base_path, chain)
    if not isinstance(base, dict):
        raise SpecError(f"extends: {base_path} is not a spec mapping", where)
    if "library" in base:
        raise SpecError(f"extends: {base_path} is a block library, not a model spec; list it under `use:` instead", where)
    merged = SourceMap(smap.file)
    result = _merge(base, data, (), base_map, smap, merged)
    if "doc" in data:
        stale = []  # this spec describes itself (or deletes the description with `doc: null`)
    elif (warning := _stale_doc(base, result, merged, path.name, base_path.name)) is not None:
        stale = [*stale, warning]
    return result, merged, [*base_raw, raw], stale


def _stale_doc(base: dict[Any, Any], result: dict[Any, Any], smap: SourceMap, name: str, base_name: str) -> SpecWarning | None:
    """A spec that changes its base's params but keeps the base's `doc:` describes a model it is
    not: the doc in `result` gets a note saying what differs (for the generated docstring), and
    the warning, at the first changed param, says to write a `doc:`."""
    old, new, doc = base.get("params"), result.get("params"), result.get("doc")
    if not (isinstance(old, dict) and isinstance(new, dict) and isinstance(doc, str) and doc.strip()):
        return None
    changed = [k for k, v in new.items() if k in old and (type(v), v) != (type(old[k]), old[k])]
    if not changed:
        return None
    shown = [f"{k}={_brief(new[k])} instead of {_brief(old[k])}" for k in changed[:6]]
    changes = ", ".join(shown) + (f" and {len(changed) - 6} more" if len(changed) > 6 else "")
    note = f"({name} extends {base_name} with {changes}: the text above describes {base_name}.)"
    doc = " ".join(doc.split())
    if len(doc) + 1 + len(note) > MAX_DOC:
        doc = doc[: MAX_DOC - len(note) - 5] + "..."
    result["doc"] = f"{doc} {note}"
    return SpecWarning(
        f"this spec changes params of {base_name} ({', '.join(changed)}) but keeps its doc, which describes "
        f"{base_name}; add a `doc:` for this model (until then the generated docstring notes what differs)",
        smap.locate_key(("params", changed[0])),
    )


def _brief(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _merge(
    base: Any, over: Any, path: Path_, bmap: SourceMap, omap: SourceMap, out: SourceMap,
    bpath: Path_ | None = None, opath: Path_ | None = None,
) -> Any:  # fmt: skip
    """`over` merged onto `base`, placed at `path`; `bpath` and `opath` are where the two
    were written when that differs from `path` (an entry patched by name moves)."""
    bp, op = path if bpath is None else bpath, path if opath is None else opath
    if isinstance(over, dict) and len(over) == 1 and "$replace" in over:
        return _copy(over["$replace"], (*op, "$replace"), path, omap, out)
    if isinstance(over, dict) and len(over) == 1 and "$append" in over:
        items = over["$append"]
        if not isinstance(base, list) or not isinstance(items, list):
            raise SpecError("$append needs a list here and in the base spec", omap.locate((*op, "$append")))
        out.marks[path] = omap.locate(op)
        head = [_copy(v, (*bp, i), (*path, i), bmap, out) for i, v in enumerate(base)]
        tail = [_copy(v, (*op, "$append", i), (*path, len(base) + i), omap, out) for i, v in enumerate(items)]
        return head + tail
    if isinstance(base, list) and isinstance(over, dict):
        return _patch_entries(base, over, path, bmap, omap, out, bp, op)
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return _copy(over, op, path, omap, out)
    out.marks[path] = omap.locate(op) if op else bmap.locate(bp)
    if op in omap.key_marks:
        out.key_marks[path] = omap.key_marks[op]
    merged: dict[Any, Any] = {}
    for key, value in base.items():
        if key not in over:
            merged[key] = _copy(value, (*bp, key), (*path, key), bmap, out)
        elif over[key] is not None:
            merged[key] = _merge(value, over[key], (*path, key), bmap, omap, out, (*bp, key), (*op, key))
    for key, value in over.items():
        if key not in base and value is not None:
            merged[key] = _copy(value, (*op, key), (*path, key), omap, out)
    return merged


# --- patching a list of `name: layer` entries by name -------------------------------------

_PLACES = ("$before", "$after")


def _patch_entries(
    base: list[Any], over: dict[Any, Any], path: Path_, bmap: SourceMap, omap: SourceMap, out: SourceMap,
    bp: Path_, op: Path_,
) -> list[Any]:  # fmt: skip
    """A list of `name: layer` entries edited by a mapping keyed by entry name, in order:
    `name: {...}` merges into that entry, `name: null` removes it, and `$before: other` or
    `$after: other` in the mapping places a new entry (or moves an existing one). Each
    patch costs the same however long the list is."""
    names = [next(iter(e)) if isinstance(e, dict) and len(e) == 1 else None for e in base]
    if None in names:
        raise SpecError(
            f"{_show(path)}: only a list of `name: layer` entries can be patched by name; "
            "replace the whole list, or use {$append: [...]}",
            omap.locate(op),
        )
    rows = _Rows(names)
    for key, patch in over.items():
        where = omap.locate_key((*op, key))
        named = list(rows.named(key))  # a copy: `$rename` moves the row to another name
        if len(named) > 1:
            raise SpecError(
                f"{_show(path)} has {len(named)} entries named {key!r}; "
                "a list is patched by name only where the name is unique",
                where,
            )
        places = {k: patch[k] for k in _PLACES if isinstance(patch, dict) and k in patch}
        if isinstance(patch, dict) and "$rename" in patch:  # the entry keeps its body under another name
            new = patch["$rename"]
            at = omap.locate((*op, key, "$rename"))
            if not named:
                raise SpecError(f"$rename renames an existing entry: {_unknown(key, rows.names(), path)}", at)
            if not (isinstance(new, str) and new.isidentifier()) or rows.named(new):
                raise SpecError(f"$rename: {new!r} is not a free name in {_show(path)}; give an identifier no other entry has", at)
            rows.rename(named[0], new)
        if len(places) > 1:
            raise SpecError("give $before or $after, not both", where)
        if not named and patch is None:
            raise SpecError(f"cannot remove {key!r}: {_unknown(key, rows.names(), path)}", where)
        if not named and not places:
            raise SpecError(
                f"{_unknown(key, rows.names(), path, 'to add it, place it with $before: NAME or $after: NAME')}", where
            )
        row = named[0] if named else _Row(key, None)
        if patch is None:
            rows.remove(row)
            continue
        if named and places:
            rows.remove(row)
        body = {k: v for k, v in patch.items() if k not in (*_PLACES, "$rename")} if isinstance(patch, dict) else patch
        row.patch = None if body == {} and row.index is not None else (body, key)  # a move alone changes nothing else
        if places:
            (place, anchor), = places.items()
            at = rows.named(anchor)
            if not at:
                raise SpecError(f"{place}: {_unknown(anchor, rows.names(), path)}", omap.locate((*op, key, place)))
            if len(at) > 1:
                raise SpecError(
                    f"{place}: {_show(path)} has {len(at)} entries named {anchor!r}; "
                    "place an entry next to one whose name is unique",
                    omap.locate((*op, key, place)),
                )
            rows.insert(row, at[0], after=place == "$after")
    out.marks[path] = omap.locate(op)
    result = []
    for j, row in enumerate(rows):
        name, i, dst = row.name, row.index, (*path, j)
        was = row.base_name  # its name in the base list (another where it is renamed)
        if i is None:  # a new entry, written in the patch
            body, key = row.patch
            out.marks[dst] = omap.locate((*op, key))
            out.key_marks[(*dst, name)] = omap.locate_key((*op, key))
            result.append({name: _copy(body, (*op, key), (*dst, name), omap, out)})
            continue
        out.marks[dst] = bmap.locate((*bp, i))
        if (*bp, i, was) in bmap.key_marks:
            out.key_marks[(*dst, name)] = bmap.key_marks[(*bp, i, was)]
        if row.patch is None:
            result.append({name: _copy(base[i][was], (*bp, i, was), (*dst, name), bmap, out)})
        else:
            body, key = row.patch
            result.append({name: _merge(base[i][was], body, (*dst, name), bmap, omap, out, (*bp, i, was), (*op, key))})
    return result


class _Row:
    """An entry of a list being patched: its name, its index in the base list (None for a new
    entry), its patch (body, key in the patch mapping) if any, and its neighbours."""

    def __init__(self, name: Any, index: int | None):
        self.name, self.index, self.base_name = name, index, name
        self.patch: tuple[Any, Any] | None = None
        self.before = self.after = self


class _Rows:
    """The entries of a list being patched, in order (a linked list: removing, moving and
    placing an entry take constant time), and the entries of each name."""

    def __init__(self, names: list[Any]):
        self.end = _Row(None, None)  # before the first entry and after the last
        self.by_name: dict[Any, list[_Row]] = {}
        for i, name in enumerate(names):
            self.insert(_Row(name, i), self.end, after=False)

    def named(self, name: Any) -> list[_Row]:
        return self.by_name.get(name, [])

    def insert(self, row: _Row, anchor: _Row, after: bool) -> None:
        row.before = anchor if after else anchor.before
        row.after = row.before.after
        row.before.after = row.after.before = row
        self.by_name.setdefault(row.name, []).append(row)

    def rename(self, row: _Row, name: str) -> None:
        self.by_name[row.name].remove(row)
        row.name = name
        self.by_name.setdefault(name, []).append(row)

    def remove(self, row: _Row) -> None:
        row.before.after, row.after.before = row.after, row.before
        self.by_name[row.name].remove(row)

    def __iter__(self) -> Iterator[_Row]:
        row = self.end.after
        while row is not self.end:
            yield row
            row = row.after

    def names(self) -> list[Any]:
        return [row.name for row in self]


def _unknown(name: Any, names: list[Any], path: Path_, advice: str = "") -> str:
    import difflib  # error messages only: not imported by a successful check

    close = difflib.get_close_matches(str(name), [str(n) for n in names], n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"entries: {', '.join(map(str, names))}"
    return "; ".join(part for part in (f"no entry named {name!r} in {_show(path)}", advice, hint) if part)


def _copy(value: Any, src: Path_, dst: Path_, smap: SourceMap, out: SourceMap) -> Any:
    """`value` placed at `dst`, with the locations it had at `src`."""
    out.marks[dst] = smap.locate(src)
    if src in smap.key_marks:
        out.key_marks[dst] = smap.key_marks[src]
    if isinstance(value, dict):
        return {k: _copy(v, (*src, k), (*dst, k), smap, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, (*src, i), (*dst, i), smap, out) for i, v in enumerate(value)]
    return value


# --- --set path=value ------------------------------------------------------------------

_SEGMENT = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def apply_overrides(data: Any, smap: SourceMap, texts: Sequence[str]) -> Any:
    """Apply `path=value` overrides in order, in place; a value is YAML (`110`, `0.5`,
    `[3, 64, 64]`). Each costs what its path and the values it adds and replaces hold,
    however large the spec."""
    entries = _Entries()
    for text in texts:
        data = _apply_override(data, smap, text, entries)
    return data


def _apply_override(data: Any, smap: SourceMap, text: str, entries: _Entries) -> Any:
    where = Location(OVERRIDE + (text if len(text) <= 80 else text[:77] + "..."))  # a --set is its own "file"
    path_text, eq, value_text = text.partition("=")
    if not eq or not path_text.strip() or not value_text.strip():
        raise SpecError("expected path=value, e.g. --set params.depth=110", where)
    steps = parse_path(path_text.strip(), where)
    if steps[0] == "extends":
        raise SpecError("extends cannot be set with --set (it is read before overrides apply); "
                        "write a spec that extends the other one", where)  # fmt: skip
    value, _ = load_yaml_text(value_text, where.file)
    node, path = data, ()
    owner: tuple[list[Any], int] | None = None  # the list that holds `node`, and where
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or not 0 <= step < len(node):
                size = f"a list of {len(node)}" if isinstance(node, list) else "not a list"
                raise SpecError(f"[{step}] does not exist at {_show(path)} ({size})", where)
            key: Any = step
        elif isinstance(node, dict):
            if step not in node and (not last or path == ("params",)):
                # a new key is fine for a layer's settings, but a new model parameter is a typo:
                # nothing would read it
                import difflib  # error messages only: not imported by a successful check

                hint = difflib.get_close_matches(step, [str(k) for k in node], n=1)
                what = "no parameter" if path == ("params",) else "no key"
                raise SpecError(
                    f"{what} {step!r} at {_show(path)}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                    + f" (it has: {', '.join(map(str, node)) or 'nothing'})",
                    where,
                )  # fmt: skip
            key = step
        elif isinstance(node, list):
            index = entries.find(node, step)
            if index is None:
                names = [name for name in map(_entry_name, node) if name is not None]
                raise SpecError(f"no entry named {step!r} in {_show(path)}; entries: {', '.join(map(str, names))}", where)
            owner, node, path = (node, index), node[index], (*path, index)
            key = step
        else:
            raise SpecError(f"{_show(path)} is a value, not a mapping or list", where)
        if last:
            _forget(smap, (*path, key), node[key] if isinstance(node, list) or key in node else None)
            changed = (node, key) if isinstance(node, list) else owner  # an entry of a list may change its name
            before = _entry_name(changed[0][changed[1]]) if changed else None
            node[key] = _copy(value, (), (*path, key), SourceMap(where.file, {(): where}), smap)
            if changed:
                entries.renamed(changed[0], changed[1], before)
        else:
            owner = (node, key) if isinstance(node, list) else None
            node, path = node[key], (*path, key)
    return data


def _forget(smap: SourceMap, path: Path_, value: Any) -> None:
    """Drop the locations of `value`, found at `path`, and of everything in it (a value that
    replaces it brings its own)."""
    stack = [(path, value)]
    while stack:
        at, value = stack.pop()
        smap.marks.pop(at, None)
        smap.key_marks.pop(at, None)
        if isinstance(value, dict):
            stack.extend(((*at, k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*at, k), v) for k, v in enumerate(value))


def _entry_name(entry: Any) -> Any:
    """The name of a `name: layer` entry of a list, or None for anything else."""
    return next(iter(entry)) if isinstance(entry, dict) and len(entry) == 1 else None


class _Entries:
    """Where each name is in the lists of `name: layer` entries that overrides look into,
    built once per list and kept as overrides change its entries: finding an entry by name
    is a dict lookup, not a walk along the list."""

    def __init__(self) -> None:
        self.lists: dict[int, tuple[list[Any], dict[Any, list[int]]]] = {}  # id -> (the list, kept alive; name -> indexes)

    def _index(self, entries: list[Any]) -> dict[Any, list[int]]:
        if id(entries) not in self.lists:
            index: dict[Any, list[int]] = {}
            for k, entry in enumerate(entries):
                name = _entry_name(entry)
                if name is not None:
                    index.setdefault(name, []).append(k)
            self.lists[id(entries)] = (entries, index)
        return self.lists[id(entries)][1]

    def find(self, entries: list[Any], name: str) -> int | None:
        """The index of the first entry named `name`."""
        at = self._index(entries).get(name)
        return at[0] if at else None

    def renamed(self, entries: list[Any], k: int, before: Any) -> None:
        """Entry `k` of `entries`, named `before` (None: not an entry), has just been changed."""
        after = _entry_name(entries[k])
        if id(entries) in self.lists and before != after:
            index = self.lists[id(entries)][1]
            if before is not None:
                index[before].remove(k)
            if after is not None:
                bisect.insort(index.setdefault(after, []), k)


def parse_path(text: str, where: Location) -> list[str | int]:
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _SEGMENT.match(text, pos)
        if not m or (pos == 0 and text.startswith(".")):
            raise SpecError(f"bad path {text!r} at {text[pos:]!r}; write e.g. params.depth or input[1]", where)
        steps.append(m.group(1) if m.group(1) else int(m.group(2)))
        pos = m.end()
    return steps


def _show(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "the spec root"
