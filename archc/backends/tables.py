"""A model-level list holding tables of stages (`GroupInst.tables`), written as torchvision
writes EfficientNet's features and keras.applications its blocks: each table as a list of
tuples and a loop over its rows that builds each row's instances. PyTorch builds them into
the list's modules (`nn.Sequential(*layers)`), Keras applies them to `x`, named as the
PyTorch modules are."""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from archc.backends import common
from archc.code import INDENT, LINE, Code, Seq, call, render
from archc.ir.graph import BlockInst, GroupInst, Table
from archc.lower.values import STAGE_BLOCK_ID, STAGE_INDEX, TOTAL_STAGE_BLOCKS
from archc.spec import expr

LIST = "layers"  # PyTorch: the list the stages are built into (torchvision's)
STAGE = "stage"  # PyTorch: a row's instances; Keras: the row's number in the list


class Loop:
    """What both emitters print of one table: the table, the names the loop keeps, the
    arguments of its block call."""

    def __init__(self, emitter: Any, group: GroupInst, table: Table, before: Loop | None):
        self.table = table
        self.block = emitter.graph.block(table.block)
        self.setting = f"{table.block}_setting"
        first = group.items[table.start] if table.flat else group.items[table.start].items[0]  # type: ignore[union-attr]
        assert isinstance(first, BlockInst)
        self.in_channels = first.in_shape.c
        self.trees = dict(table.args)
        self.reads = {n for tree in (*self.trees.values(), table.out_channels) for n in expr.free_names(tree)}
        self.emitter = emitter
        self.named = False  # Keras: the instance's index is in its name
        # what the loop before it (if it ends where this one starts) leaves in the counters
        self.follows = before is not None and before.table.end == table.start
        self.counted = self.follows and STAGE_BLOCK_ID in before.reads  # type: ignore[union-attr]
        self.totalled = before is not None and (before.totalled or TOTAL_STAGE_BLOCKS in before.reads)
        sig = emitter.sigs[table.block]
        self.between = emitter.graph.block(table.between[0]) if table.between else None
        self.index = next(n for n in ("k", "k_", "k__") if n not in table.columns)  # the row's, where `between` needs it
        if table.between:
            trees = (*(t for _, t in table.between[1]), table.between[2])
            self.reads |= {n for tree in trees for n in expr.free_names(tree)}
        # its lines fit as printed (in __init__: a row of the table, a step in `for i`), or it is written out
        lines = [f"{3 * INDENT}{_row(row)}," for row in table.rows]
        lines += [4 * INDENT + line for line in (*self.step(""), *(self.between_call("_", ())[1] if self.between else ()))]
        sigs = [sig, *([emitter.sigs[table.between[0]]] if table.between else [])]  # called with in_channels alone
        self.ok = all(not s.flags and len(s.channels) == 1 for s in sigs) and all(len(line) <= LINE for line in lines)

    def head(self, indent: str) -> list[str]:
        """The table, then the names the loop keeps, before it."""
        between = (*(t for _, t in self.table.between[1]), self.table.between[2]) if self.table.between else ()
        for tree in (*self.trees.values(), self.table.out_channels, *between):  # the functions it calls, `math`
            self.emitter.functions |= expr.helper_functions(tree)
            self.emitter.needs_math |= expr.uses_math(tree)
        table = self.table
        each = "stage" if "repeat" in table.columns else "block"
        lines = [f"{indent}# {', '.join(table.columns)}: one {each} per row", f"{indent}{self.setting} = ["]
        lines += [f"{indent}{INDENT}{_row(row)}," for row in table.rows]
        lines.append(f"{indent}]")
        return lines

    def counters(self, indent: str, tables: int) -> list[str]:
        lines = [] if self.follows else [f"{indent}in_channels = {self.in_channels}"]
        if TOTAL_STAGE_BLOCKS in self.reads and not self.totalled:
            lines.append(f"{indent}{TOTAL_STAGE_BLOCKS} = {_total(self.table, self.setting, tables)}")
        if STAGE_BLOCK_ID in self.reads and not self.counted:
            lines.append(f"{indent}{STAGE_BLOCK_ID} = {self.table.block_id}")
        return lines

    def instances(self, lines: list[str], indent: str) -> str:
        """`for i in range(repeat):` added to `lines` where rows repeat; the indent of the call."""
        if "repeat" not in self.table.columns:
            return indent
        lines.append(f"{indent}for {STAGE_INDEX if STAGE_INDEX in self.reads or self.named else '_'} in range(repeat):")
        return indent + INDENT

    def kwargs(self) -> dict[str, str]:
        """The block call's arguments after its input channels, in the kind's order."""
        return {name: expr.to_python(self.trees[name]) for name, _, _ in self.block.params if name in self.trees}

    def between_call(self, func: str, lead: tuple[str, ...], **more: str) -> tuple[Any, list[str]]:
        """`between`'s call, and the next instance's input channels after it."""
        assert self.table.between is not None and self.between is not None
        trees = dict(self.table.between[1])
        kwargs = {name: expr.to_python(trees[name]) for name, _, _ in self.between.params if name in trees}
        out = self.table.between[2]
        step = [] if isinstance(out, ast.Name) and out.id == "in_channels" else [f"in_channels = {expr.to_python(out)}"]
        return call(func, *lead, "in_channels", **kwargs, **more), step

    def step(self, indent: str) -> list[str]:
        """After each instance: the next one's input channels, its index among all."""
        out = self.table.out_channels
        lines = [] if isinstance(out, ast.Name) and out.id == "in_channels" else [f"{indent}in_channels = {expr.to_python(out)}"]
        if STAGE_BLOCK_ID in self.reads:
            lines.append(f"{indent}{STAGE_BLOCK_ID} += 1")
        return lines


def _row(row: tuple[Any, ...]) -> str:
    """A row of a table as the tuple literal both emitters print (and measure)."""
    return f"({', '.join(common.literal(v) for v in row)}{',' if len(row) == 1 else ''})"


def loops(emitter: Any, group: GroupInst, reserved: set[str]) -> list[Loop] | None:
    """The group's tables as loops, in order; None where it is written as its entries."""
    if not group.tables or group.inlined or not group.positional:
        return None
    out: list[Loop] = []
    kinds = [table.block for table in group.tables]
    for table in group.tables:
        out.append(Loop(emitter, group, table, out[-1] if out else None))
        if kinds.count(table.block) > 1:  # a kind's tables numbered: `unit_setting_1`, `unit_setting_2`
            out[-1].setting += f"_{sum(t.block == table.block for t in group.tables[: len(out)])}"
    names = {STAGE, *(loop.setting for loop in out)}
    if not all(loop.ok for loop in out) or names & reserved:
        return None
    return out


def _total(table: Table, setting: str, tables: int) -> str:
    """`total_stage_blocks`: the sum of the table's repeats where they are all the model's
    stage instances (torchvision's `sum(cnf.num_layers for cnf in ...)`), else its value."""
    if tables > 1 or table.block_id != 0:
        return str(table.total_stage_blocks)
    if "repeat" not in table.columns:
        return f"len({setting})" if len(table.rows) == table.total_stage_blocks else str(table.total_stage_blocks)
    k = table.columns.index("repeat")
    if sum(row[k] for row in table.rows) == table.total_stage_blocks:  # type: ignore[misc]
        index = "-1" if k == len(table.columns) - 1 else str(k)
        return f"sum(row[{index}] for row in {setting})"
    return str(table.total_stage_blocks)


def _for(indent: str, names: tuple[str, ...], iterable: str, lead: str = "") -> list[str]:
    """`for a, b in iterable:` (`lead`: `for k, (a, b) in enumerate(...)`), split as ruff
    formats it where it is too long: the call's arguments, else the targets one per line."""
    targets = f"{lead}({', '.join(names)})" if lead else ", ".join(names)
    one = f"{indent}for {targets} in {iterable}:"
    if len(one) <= LINE:
        return [one]
    func, paren, args = iterable.partition("(")
    if paren and len(f"{indent}for {targets} in {func}(") <= LINE:
        return [f"{indent}for {targets} in {func}(", f"{indent}{INDENT}{args[:-1]}", f"{indent}):"]
    return [f"{indent}for {lead}(", *(f"{indent}{INDENT}{n}," for n in names), f"{indent}) in {iterable}:"]


class TableEmission:
    """PyTorch: `attr = nn.Sequential(*layers)`, the tables' stages built in loops."""

    graph: Any
    _rolled: Callable[..., list[Code]]
    annotated: set[str]  # the lists __init__ has annotated (mypy wants one annotation per name)

    def _annotated(self, name: str) -> str:
        """`: list[nn.Module]` where __init__ assigns `name` the first time."""
        if name in self.annotated:
            return ""
        self.annotated.add(name)
        return ": list[nn.Module]"

    def table_lines(self, group: GroupInst, attr: str, indent: str, tapped: frozenset[str]) -> list[str] | None:
        """None where the group is written as its entries (see `loops`; a tapped list)."""
        found = loops(self, group, {n for n, _ in self.graph.exposed})
        if found is None or tapped:
            return None
        lines: list[str] = []
        at = 0
        for k, loop in enumerate(found):
            table = loop.table
            lines += loop.head(indent)
            parts = self._rolled(group.items[at : table.start], inplace_first=at > 0)
            if k == 0:
                lines += render(Seq(tuple(parts)), indent, f"{LIST}{self._annotated(LIST)} = ")
            else:
                lines += [line for part in parts for line in render(call(f"{LIST}.append", part), indent)]
            lines += loop.counters(indent, len(found))
            inner = indent + INDENT
            if table.between:  # before each row but the first
                lines += _for(indent, table.columns, f"enumerate({loop.setting})", f"{loop.index}, ")
                between, step = loop.between_call(common.class_of(loop.between), ())
                lines.append(f"{inner}if {loop.index} > 0:")
                lines += render(call(f"{LIST}.append", between), inner + INDENT)
                lines += [inner + INDENT + line for line in step]
            else:
                lines += _for(indent, table.columns, loop.setting)
            into = LIST if table.flat else STAGE
            if not table.flat:
                lines.append(f"{inner}{STAGE}{self._annotated(STAGE)} = []")
            body = loop.instances(lines, inner)
            lines += render(call(f"{into}.append", call(common.class_of(loop.block), "in_channels", **loop.kwargs())), body)
            lines += loop.step(body)
            if not table.flat:
                lines.append(f"{inner}{LIST}.append(nn.Sequential(*{STAGE}))")
            at = table.end
        for part in self._rolled(group.items[at:], inplace_first=True):
            lines += render(call(f"{LIST}.append", part), indent)
        lines.append(f"{indent}{attr} = nn.Sequential(*{LIST})")
        return lines


def keras_table_lines(emitter: Any, group: GroupInst, prefix: str, indent: str, rolled: Callable[..., list[str]]) -> list[str] | None:
    """Keras: the group's entries on `x`, the tables' stages in loops whose instances are
    named as the PyTorch modules (`features_1_0`; a `flat` table's `features_2`); None where
    they are written out."""
    found = loops(emitter, group, set(emitter.reserved))
    if found is None:
        return None
    lines: list[str] = []
    at = 0
    for loop in found:
        table = loop.table
        lines += rolled(group.items[at : table.start], prefix, at)
        lines += loop.head(indent)
        lines += loop.counters(indent, len(found))
        entry = next(n for n in ("entry", "entry_", "entry__") if n not in table.columns)
        counted = (table.flat and "repeat" in table.columns) or table.between is not None  # entries numbered on through the list
        if table.between:
            lines.append(f"{indent}{entry} = {table.start}")
            lines += _for(indent, table.columns, f"enumerate({loop.setting})", f"{loop.index}, ")
            between, step = loop.between_call(loop.between.name, ("x",), name=f'f"{prefix}{{{entry}}}"')  # type: ignore[union-attr]
            lines.append(f"{indent}{INDENT}if {loop.index} > 0:")
            lines += render(between, indent + 2 * INDENT, "x = ")
            lines += [indent + 2 * INDENT + line for line in (*step, f"{entry} += 1")]
            index = f"{{{STAGE_INDEX}}}" if "repeat" in table.columns else "0"
            name = f'f"{prefix}{{{entry}}}"' if table.flat else f'f"{prefix}{{{entry}}}_{index}"'
        elif counted:
            lines.append(f"{indent}{entry} = {table.start}")
            lines += _for(indent, table.columns, loop.setting)
            name = f'f"{prefix}{{{entry}}}"'
        elif table.flat:  # one instance per row
            lines += _for(indent, table.columns, f"enumerate({loop.setting}, start={table.start})", f"{entry}, ")
            name = f'f"{prefix}{{{entry}}}"'
        else:
            lines += _for(indent, table.columns, f"enumerate({loop.setting}, start={table.start})", f"{STAGE}, ")
            name = f'f"{prefix}{{{STAGE}}}_{{{STAGE_INDEX}}}"' if "repeat" in table.columns else f'f"{prefix}{{{STAGE}}}_0"'
        loop.named = not table.flat  # the index names the instance
        body = loop.instances(lines, indent + INDENT)
        lines += render(call(loop.block.name, "x", "in_channels", **loop.kwargs(), name=name), body, "x = ")
        lines += loop.step(body)
        if counted and table.flat:
            lines.append(f"{body}{entry} += 1")
        elif counted:  # a row's stage is one entry
            lines.append(f"{indent}{INDENT}{entry} += 1")
        at = table.end
    return lines + rolled(group.items[at:], prefix, at)
