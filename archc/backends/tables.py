"""A model-level list holding a table of stages (`GroupInst.tables`), written as torchvision
writes EfficientNet's features and keras.applications its blocks: the table as a list of
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

    def __init__(self, emitter: Any, group: GroupInst, reserved: set[str]):
        self.ok = len(group.tables) == 1 and not group.inlined and group.positional
        if not self.ok:
            return
        self.table = table = group.tables[0]
        self.block = emitter.graph.block(table.block)
        sig = emitter.sigs[table.block]
        self.setting = f"{table.block}_setting"
        self.ok = not sig.flags and len(sig.channels) == 1 and not {STAGE, self.setting} & reserved
        self.end = table.start + len(table.rows)
        first = group.items[table.start].items[0]  # type: ignore[union-attr]
        assert isinstance(first, BlockInst)
        self.in_channels = first.in_shape.c
        self.trees = dict(table.args)
        self.reads = {n for tree in (*self.trees.values(), table.out_channels) for n in expr.free_names(tree)}
        self.emitter = emitter

    def head(self, indent: str) -> list[str]:
        """The table, then the names the loop keeps, before it."""
        for tree in (*self.trees.values(), self.table.out_channels):  # the functions it calls, `math`
            self.emitter.functions |= expr.helper_functions(tree)
            self.emitter.needs_math |= expr.uses_math(tree)
        table = self.table
        lines = [f"{indent}# {', '.join(table.columns)}: one stage per row", f"{indent}{self.setting} = ["]
        lines += [f"{indent}{INDENT}({', '.join(common.literal(v) for v in row)}{',' if len(row) == 1 else ''})," for row in table.rows]
        lines.append(f"{indent}]")
        return lines

    def counters(self, indent: str) -> list[str]:
        lines = [f"{indent}in_channels = {self.in_channels}"]
        if TOTAL_STAGE_BLOCKS in self.reads:
            lines.append(f"{indent}{TOTAL_STAGE_BLOCKS} = {_total(self.table, self.setting)}")
        if STAGE_BLOCK_ID in self.reads:
            lines.append(f"{indent}{STAGE_BLOCK_ID} = {self.table.block_id}")
        return lines

    def kwargs(self) -> dict[str, str]:
        """The block call's arguments after its input channels, in the kind's order."""
        return {name: expr.to_python(self.trees[name]) for name, _, _ in self.block.params if name in self.trees}

    def step(self, indent: str) -> list[str]:
        """After each instance: the next one's input channels, its index among all."""
        out = self.table.out_channels
        lines = [] if isinstance(out, ast.Name) and out.id == "in_channels" else [f"{indent}in_channels = {expr.to_python(out)}"]
        if STAGE_BLOCK_ID in self.reads:
            lines.append(f"{indent}{STAGE_BLOCK_ID} += 1")
        return lines


def _total(table: Table, setting: str) -> str:
    """`total_stage_blocks`: the sum of the table's repeats where they are all the model's
    stage instances (torchvision's `sum(cnf.num_layers for cnf in ...)`), else its value."""
    k = table.columns.index("repeat")
    if table.block_id == 0 and sum(row[k] for row in table.rows) == table.total_stage_blocks:  # type: ignore[misc]
        index = "-1" if k == len(table.columns) - 1 else str(k)
        return f"sum(row[{index}] for row in {setting})"
    return str(table.total_stage_blocks)


def _for(indent: str, names: tuple[str, ...], iterable: str) -> list[str]:
    """`for a, b in iterable:`, its targets one per line where it is too long (as ruff formats it)."""
    one = f"{indent}for {', '.join(names)} in {iterable}:"
    if len(one) <= LINE:
        return [one]
    return [f"{indent}for (", *(f"{indent}{INDENT}{n}," for n in names), f"{indent}) in {iterable}:"]


class TableEmission:
    """PyTorch: `attr = nn.Sequential(*layers)`, the table's stages built in a loop."""

    graph: Any
    _rolled: Callable[..., list[Code]]

    def table_lines(self, group: GroupInst, attr: str, indent: str, tapped: frozenset[str]) -> list[str] | None:
        """None where the group is written as its entries (several tables, a tapped or `inline` list)."""
        loop = Loop(self, group, {n for n, _ in self.graph.exposed})
        if not loop.ok or tapped:
            return None
        table = loop.table
        inner, body = indent + INDENT, indent + 2 * INDENT
        lines = loop.head(indent)
        lines += render(Seq(tuple(self._rolled(group.items[: table.start], inplace_first=False))), indent, f"{LIST}: list[nn.Module] = ")
        lines += loop.counters(indent)
        lines += _for(indent, table.columns, loop.setting)
        lines.append(f"{inner}{STAGE}: list[nn.Module] = []")
        lines.append(f"{inner}for {STAGE_INDEX if STAGE_INDEX in loop.reads else '_'} in range(repeat):")
        module = call(common.class_of(loop.block), "in_channels", **loop.kwargs())
        lines += render(call(f"{STAGE}.append", module), body)
        lines += loop.step(body)
        lines.append(f"{inner}{LIST}.append(nn.Sequential(*{STAGE}))")
        for part in self._rolled(group.items[loop.end :], inplace_first=True):
            lines += render(call(f"{LIST}.append", part), indent)
        lines.append(f"{indent}{attr} = nn.Sequential(*{LIST})")
        return lines


def keras_table_lines(emitter: Any, group: GroupInst, prefix: str, indent: str, rolled: Callable[..., list[str]]) -> list[str] | None:
    """Keras: the group's entries on `x`, the table's stages in a loop whose instances are
    named as the PyTorch modules (`features_1_0`); None where it is written out."""
    loop = Loop(emitter, group, set(emitter.reserved))
    if not loop.ok:
        return None
    table = loop.table
    inner, body = indent + INDENT, indent + 2 * INDENT
    lines = rolled(group.items[: table.start], prefix)
    lines += loop.head(indent)
    lines += loop.counters(indent)
    lines += render(call("enumerate", loop.setting, f"start={table.start}"), indent, f"for {STAGE}, ({', '.join(table.columns)}) in ", ":")
    lines.append(f"{inner}for {STAGE_INDEX} in range(repeat):")
    name = f'f"{prefix}{{{STAGE}}}_{{{STAGE_INDEX}}}"'
    lines += render(call(loop.block.name, "x", "in_channels", **loop.kwargs(), name=name), body, "x = ")
    lines += loop.step(body)
    lines += rolled(group.items[loop.end :], prefix, loop.end)
    return lines
