"""Which items of a list exist: an entry only absent merges read is dropped (`drop_excused`),
and each item exists where its condition holds and something that exists reads it (`live`).
The conditions are expressions over a block kind's parameters (`ast`), so the code a kind
prints and the instances specialised from it agree on what is built."""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from archc.errors import Location
from archc.ir.graph import SymItem, passed_on
from archc.spec import expr, logic


def resolve(aliases: dict[str, str], name: str) -> str:
    while name in aliases:
        name = aliases[name]
    return name


def drop_excused(
    items: tuple[SymItem, ...], excused: set[str], returned: set[str], aliases: dict[str, str], defined: dict[str, Location],
) -> tuple[SymItem, ...]:  # fmt: skip
    """The list without the entries that only merges which are never present read (and, in
    turn, the entries only those read): no backend builds them; they leave `defined`."""

    def through(name: str) -> str:
        return resolve(aliases, name)

    readers: dict[str, list[str]] = {n: [] for n in returned}
    reads: dict[str, list[str]] = {}
    prev = "input"
    for item in items:
        reads[item.name] = [through(n) for n in (*(item.inputs or (prev,)), *_inner_reads(item))]
        reads[item.name] += [n.split(".")[0] for n in item.inputs if "." in n]  # a tap reads its group
        for n in reads[item.name]:
            readers.setdefault(n, []).append(item.name)
        prev = item.name
    excused = {through(n) for n in excused}
    dead: set[str] = set()
    changed = True
    while changed:
        changed = False
        for item in items:
            alive = [r for r in readers.get(item.name, []) if r not in dead]
            if item.name not in dead and item.name in excused and not alive and item.name not in returned:
                dead.add(item.name)
                excused.update(reads[item.name])
                changed = True
    for name in dead:
        defined.pop(name, None)
    return tuple(item for item in items if item.name not in dead)


def _inner_reads(item: SymItem) -> list[str]:
    """The tensors the entries of a list or module list read by name."""
    out: list[str] = []
    for child in getattr(item, "children", ()):
        out += [*child.inputs, *_inner_reads(child)]
    return out


def live(items: tuple[SymItem, ...], outputs: set[str], aliases: dict[str, str]) -> tuple[SymItem, ...]:
    """Each item of a block kind's list exists where its condition holds and something that
    exists reads it: a layer read only by a merge under `if:` exists where the merge does,
    in the IR and in both backends alike (a Keras model drops a layer nothing reads).

    Walks the list backwards with, per item, the condition under which its value is used
    (ALWAYS, or an expression over the block's parameters); an item that is absent passes
    its input on, so that input is used where the item's value is and its condition fails."""
    index: dict[str, int] = {}  # name -> the latest item of that name so far
    wiring: list[tuple[list[object], object]] = []  # per item: what it reads, what it passes on

    def resolve(name: str) -> object:
        if "." in name and name.split(".")[0] in index:  # a tap reads its list
            name = name.split(".")[0]
        while name in aliases and name not in index:
            name = aliases[name]
        return index.get(name, name)

    for k, item in enumerate(items):
        prev = items[k - 1].name if k else "input"
        reads = [resolve(n) for n in item.inputs or (prev,)]
        wiring.append((reads, resolve(passed_on(item, prev))))
        index[item.name] = k
    used: dict[object, Any] = {resolve(name): ALWAYS for name in outputs}
    out = list(items)
    for k in reversed(range(len(items))):
        item, (reads, passes) = items[k], wiring[k]
        when = used.get(k)
        if when is None:
            continue  # nothing reads it (reported as an unread layer where it is defined)
        condition = item.condition
        for source in reads:
            used[source] = _either(used.get(source), when if source == passes else _both(condition, when))
        if condition is not None and passes not in reads:
            used[passes] = _either(used.get(passes), _both(ast.UnaryOp(ast.Not(), condition), when))
        if when is not ALWAYS and not _implies(condition, when):
            out[k] = dataclasses.replace(item, condition=_both(condition, when))
    return tuple(out)


ALWAYS = ast.Constant(True)


def _both(a: ast.expr | None, b: Any) -> Any:
    if b is ALWAYS or b is None:
        return a if a is not None else ALWAYS
    if a is None or a is ALWAYS:
        return b
    return ast.BoolOp(ast.And(), [*_conjuncts(a), *(t for t in _conjuncts(b) if expr.to_python(t) not in {expr.to_python(c) for c in _conjuncts(a)})])


def _either(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if a is ALWAYS or b is ALWAYS:
        return ALWAYS
    if expr.to_python(a) == expr.to_python(b):
        return a
    if logic.exhaustive([a, b]):  # read under `if: sum` and under `if: not sum`: always
        return ALWAYS
    return ast.BoolOp(ast.Or(), [a, b])


def _conjuncts(tree: ast.expr) -> list[ast.expr]:
    if isinstance(tree, ast.BoolOp) and isinstance(tree.op, ast.And):
        return [t for v in tree.values for t in _conjuncts(v)]
    return [tree]


def _implies(condition: ast.expr | None, when: ast.expr) -> bool:
    """Whether `condition` holding means `when` holds, as far as their conjuncts tell or
    archc.spec.logic sees (`sum` and `not not sum`)."""
    if condition is None:
        return False
    have = {expr.to_python(t) for t in _conjuncts(condition)}
    return all(expr.to_python(t) in have for t in _conjuncts(when)) or logic.unsatisfiable([condition, logic.negate(when)])
