"""Whether a merge written `in_place: true` (`{add: [block, input], in_place: true}`, PyTorch's
`out += x`) may overwrite its first tensor: checked on a list of a block kind (or the model's)
as lowering built it, so every spec the emitters print in place is sound.

Overwriting tensor T is sound where (1) T is not the list's input (the caller still holds it),
(2) nothing but the merge reads T (no later layer, shortcut, output or tap), and (3) no
backward reads T: the layer that produced it does not keep its output for backward (relu's
and softmax's do, Op.keeps_output). Where the layer named first may pass its input on (under
a false `if:`, or an op that may return its input or a view of it, Op.ALIASES), T may be that
input, so the same must hold of it, read only by that layer, and so on up the list."""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockType,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymStage,
    flat_items,
    passed_on,
)
from archc.spec import expr, logic

Values = dict[str, ast.expr]  # a kind's parameters, as an instance gives them
Ends = tuple[str | None, bool]  # what keeps the item's output for backward (None: nothing); whether it may pass its input on


def check_in_place(
    items: Sequence[SymItem], inputs: Sequence[str], outside: set[str], types: dict[str, BlockType], scope: str,
    locate: Callable[..., Location],
) -> None:  # fmt: skip
    """Raise a located SpecError for a merge of `items` written `in_place` whose first tensor
    may not be overwritten. `inputs`: the list's inputs; `outside`: the tensors read from
    outside the list (a shortcut's input, outputs, taps); `scope`: "block 'x'" or "the model"."""
    flat = flat_items(items)
    outside = {*outside, *(n.split(".")[0] for n in outside)}  # an output `body.relu` reads the list `body`
    readers: dict[str, list[str]] = {}
    before: dict[str, str] = {}  # item -> the tensor before it (what it reads when it names none)
    prev = inputs[0]
    for item in flat:
        for n in (*(item.inputs or (prev,)), *_inner_reads(item)):
            readers.setdefault(n, []).append(item.name)
            if "." in n:  # a tap reads its list
                readers.setdefault(n.split(".")[0], []).append(item.name)
        before[item.name] = prev
        prev = item.name
    by_name = {item.name: item for item in flat}

    def problem(name: str, reader: str) -> str | None:
        if name in inputs:
            return f"{name!r} is {'the' if len(inputs) == 1 else 'an'} input of {scope}, which its caller still holds"
        if name not in by_name:
            return f"{name!r} is not a layer of this list"
        others = [r for r in readers.get(name, []) if r != reader]
        if others:
            return f"{name!r} is also read by {others[0]!r}"
        if readers.get(name, []).count(reader) > 1:
            return f"{reader!r} reads {name!r} twice"
        if name in outside:
            return f"{name!r} is also read from outside the list (a shortcut's input, an output or a tap)"
        item = by_name[name]
        keeps, passes = ends(item, types, set())
        if keeps is not None:
            return f"{name!r} ends with {keeps}, whose backward reads its output (autograd would fail)"
        if not passes:
            return None
        source = passed_on(item, before[name])
        why = problem(source, name)
        return f"{name!r} may pass its input on (under its `if:`, or as an identity or view), and {why}" if why else None

    for item in flat:
        if not (isinstance(item, SymLayer) and ops.KINDS[item.kind].MERGE and getattr(dict(item.args).get("in_place"), "value", None) is True):
            continue
        first = item.inputs[0]
        why = problem(first, item.name)
        if why is not None:
            raise SpecError(
                f"{item.name}: `in_place: true` overwrites the first tensor it lists, {first!r} (PyTorch's `+=`), "
                f"but {why}; drop `in_place` (PyTorch then writes a new tensor, `a + b`), or list first a layer of this list "
                "that only this merge reads",
                locate(*item.at, "in_place") if item.at else item.where,
            )


def ends(item: SymItem, types: dict[str, BlockType], seen: set[str], values: Values | None = None) -> Ends:
    """What keeps an item's output for PyTorch's backward, and whether the item may pass its
    input on (its output being its input or a view of it). `values`: the parameters of the
    kind the item belongs to, where an instance gives them (`activation: false`), so that an
    item whose `if:` fails there is known absent."""
    known = _decide(item, values or {}, ())
    if known is False:
        return None, True  # absent: it passes its input on
    keeps, passes = _present(item, types, seen, values or {})
    return keeps, passes or known is None


def _present(item: SymItem, types: dict[str, BlockType], seen: set[str], values: Values) -> Ends:
    """`ends` of an item where it is present."""
    if isinstance(item, SymLayer):
        op = ops.KINDS[item.kind]
        keeps = f"{item.kind} {item.name!r}" if op.keeps_output(dict(item.args)) else None
        return keeps, op.ALIASES or op.EXPRESSION
    if isinstance(item, SymParallel):  # its paths' outputs merged: a new tensor
        return None, False
    if isinstance(item, SymGroup):
        return _list_end(item.children, None, types, seen, values)
    if isinstance(item, SymBlock):
        btype = types.get(item.block)
        given = {p: ast.Constant(default) for p, default, _ in btype.params if default is not None} if btype else {}
        return _kind_end(item.block, types, seen, {**given, **{k: expr.substitute(v, values) for k, v in item.args}})
    if isinstance(item, SymStage):
        if item.connectivity == "dense":  # the concatenated features: a new tensor
            return None, False
        first, rest = ends(item.first, types, seen, values), ends(item.rest, types, seen, values)
        repeat = expr.substitute(item.repeat, values)
        once = isinstance(repeat, ast.Constant) and isinstance(repeat.value, int) and repeat.value >= 1
        return first[0] or rest[0], first[1] or rest[1] or not once  # no instances: its input
    return f"{item.name!r}", True  # an item this check does not know: not overwritten


def _kind_end(kind: str, types: dict[str, BlockType], seen: set[str], values: Values) -> Ends:
    """What an instance of block kind `kind` returns, as `ends` says of an item."""
    btype = types.get(kind)
    if btype is None or kind in seen or not btype.layers:  # a kind that contains itself: unknown here
        return f"an instance of {kind!r}, whose output is not known here", True
    seen = {*seen, kind}
    if btype.connectivity == "skip":  # `after` reads the sum, a tensor of its own
        return _list_end(btype.after, None, types, seen, values) if btype.after else (None, False)
    return _list_end(btype.layers, btype.outputs[0] if btype.outputs else None, types, seen, values, btype.inputs[0])


def _list_end(
    items: Sequence[SymItem], name: str | None, types: dict[str, BlockType], seen: set[str], values: Values, start: str = "input",
) -> Ends:  # fmt: skip
    """`ends` of the tensor `name` (None: the last) of a list that starts from `start`: walks
    back through the items that may pass their input on. At an item under `if:` it follows
    both cases, knowing in each whether the condition holds, so alternatives under opposite
    conditions (`if: x == y` / `if: x != y`, torchvision's FusedMBConv) leave no gap."""
    flat = flat_items(items)
    before = {item.name: prev for item, prev in zip(flat, (start, *(i.name for i in flat)))}
    by_name = {item.name: item for item in flat}

    def walk(name: str, facts: tuple[ast.expr, ...], budget: list[int]) -> Ends:
        while name in by_name:
            item = by_name[name]
            known = _decide(item, values, facts)
            if known is None:
                budget[0] -= 1
                if budget[0] < 0:  # too many cases to follow: not known
                    return f"{name!r}, whose output is not known here", True
                condition = expr.substitute(item.condition, values)  # type: ignore[arg-type]
                present = walk_present(item, name, (*facts, condition), budget)
                absent = walk(passed_on(item, before[name]), (*facts, logic.negate(condition)), budget)
                return present[0] or absent[0], present[1] or absent[1]
            if known:
                return walk_present(item, name, facts, budget)
            name = passed_on(item, before[name])
        if name != start:  # another of the kind's inputs, or a tensor outside the list
            return f"a layer that may return {name!r}", True
        return None, True

    def walk_present(item: SymItem, name: str, facts: tuple[ast.expr, ...], budget: list[int]) -> Ends:
        keeps, passes = _present(item, types, seen, values)
        if keeps is not None or not passes:
            return keeps, passes
        return walk(passed_on(item, before[name]), facts, budget)

    if not flat:
        return None, True
    return walk(flat[-1].name if name is None else name, (), [64])


def _decide(item: SymItem, values: Values, facts: tuple[ast.expr, ...]) -> bool | None:
    """Whether an item is present: True, False, or None where it depends on what is not known;
    `facts`: conditions known to hold on the path walked (archc.spec.logic decides from them)."""
    if item.condition is None:
        return True
    condition = expr.substitute(item.condition, values)
    if isinstance(condition, ast.Constant):
        return bool(condition.value)
    if logic.unsatisfiable([*facts, condition]):
        return False
    if logic.unsatisfiable([*facts, logic.negate(condition)]):
        return True
    return None


def _inner_reads(item: Any) -> list[str]:
    """The tensors the entries of a list or module list read by name."""
    out: list[str] = []
    for child in getattr(item, "children", ()):
        out += [*child.inputs, *_inner_reads(child)]
    return out
