"""Tables of stages (`stages:`): a run of stages of one block kind written as rows, as
torchvision writes `_efficientnet_conf` and `inverted_residual_setting`.

Each row is lowered as the entry `- - stage: KIND` it stands for (one numbered nn.Sequential
of its `repeat` instances), so names, shapes, counts and checks are those of stage entries;
the table itself stays on the row groups (`SymGroup.table`) and, specialised, on the list
that holds them (`GroupInst.tables`: the rows' values and one expression per argument),
which the emitters print as a table and a loop."""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator
from typing import Any

from archc.errors import SpecError
from archc.ir.graph import BlockInst, BlockType, GroupInst, SymTable, Table
from archc.lower.values import (
    INDEX_NAMES,
    STAGE_BLOCK_ID,
    STAGE_INDEX,
    TOTAL_STAGE_BLOCKS,
)
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource

REPEAT = "repeat"  # the column of each row's number of instances


def _tree(value: Any) -> ast.expr:
    return expr.parse(value) if isinstance(value, str) else ast.Constant(value)


def opened(
    state: Any, source: BlockSource, entries: list[dict[str, Any]], section: tuple[Any, ...], offset: int, top: bool, in_group: bool,
) -> Iterator[tuple[int, str, Any, tuple[Any, ...], tuple[SymTable, int] | None]]:  # fmt: skip
    """The entries of one list as (index, written name, body, the section that locates it,
    its table and row): a table's rows are `- - stage: KIND` entries, located at their row."""
    for index, entry in enumerate(entries, start=offset):
        ((written, body),) = entry.items()
        if not isinstance(body, m.StagesItem):
            yield index, written, body, section, None
            continue
        here = (*section, index, written)
        table = sym_table(state, source, body, here, top and in_group and written == m.POSITIONAL)
        for r, row in enumerate(body.rows):
            yield r, m.POSITIONAL, _row_body(body, table, row), (*here, "rows"), (table, r)


def sym_table(state: Any, source: BlockSource, body: m.StagesItem, here: tuple[Any, ...], placed: bool) -> SymTable:
    """The table as expressions, its rows and columns checked against the kind."""
    where = source.locate(*here)
    if not placed:
        raise SpecError(
            "a table of stages (`stages:`) is an unnamed entry of a list at model level (`features: [...]`), "
            "each row a numbered nn.Sequential of its stage",
            where,
        )
    if body.from_ is not None or body.if_ is not None:
        raise SpecError("a table of stages takes no `from:` or `if:`: its rows read the entry before it", where)
    kind = state.spec.blocks.get(body.stages)
    if kind is None:
        return SymTable(body.stages, tuple(body.columns), (), ())  # the rows' stages report the unknown kind
    declared = kind.definition.params
    model = state.spec.model.params
    written = {key: _tree(v) for part in (body.with_, body.first, body.last) for key, v in part.items()}
    read = {n for tree in written.values() for n in expr.free_names(tree)}
    for c, column in enumerate(body.columns):
        at = source.locate(*here, "columns", c)
        if column in model:
            raise SpecError(f"column {column!r} is also a parameter of the model, which the table's expressions would no longer read; rename the column", at)
        if column != REPEAT and column not in declared and column not in read:
            known = ", ".join(declared) or "none"
            raise SpecError(
                f"column {column!r} is neither `repeat`, a parameter of block {body.stages!r} ({known}), "
                "nor a name that the table's `with`, `first` or `last` reads",
                at,
            )
    for r, row in enumerate(body.rows):
        if len(row) != len(body.columns):
            raise SpecError(
                f"row {r} has {len(row)} values for the {len(body.columns)} columns {', '.join(body.columns)}", source.locate(*here, "rows", r)
            )
    implicit = [c for c in body.columns if c in declared and c not in written]
    args: dict[str, ast.expr] = {}
    for key in [*(p for p in declared if p in implicit or p in written), *(p for p in written if p not in declared)]:
        default = declared.get(key)
        base = _tree(body.with_[key]) if key in body.with_ else ast.Name(key) if key in implicit else None
        tree = base
        if key in body.first:
            tree = _if(ast.Constant(0), _tree(body.first[key]), base, default)
        if key in body.last:
            last = ast.BinOp(ast.Name(REPEAT), ast.Sub(), ast.Constant(1))
            tree = _if(last, _tree(body.last[key]), tree, default)
        assert tree is not None
        args[key] = tree
    cells = tuple(tuple(_tree(v) for v in row) for row in body.rows)
    return SymTable(body.stages, tuple(body.columns), cells, tuple(args.items()), where)


def _if(index: ast.expr, then: ast.expr, otherwise: ast.expr | None, default: Any) -> ast.expr:
    """`then if i == index else otherwise`, `otherwise` the parameter's default where nothing else sets it."""
    if otherwise is None:
        otherwise = ast.Constant(default if not isinstance(default, str) else None)
    test = ast.Compare(ast.Name(STAGE_INDEX), [ast.Eq()], [index])
    return ast.IfExp(test, then, otherwise)


def _row_body(body: m.StagesItem, table: SymTable, row: list[Any]) -> m.GroupItem:
    """Row `row` as the entry `- - stage: KIND` it stands for: the columns' values written into
    `with`, `first` and `last` (a column that is a parameter nothing else sets, into `with`)."""
    cells = dict(zip(table.columns, row))
    values = {c: _tree(v) for c, v in cells.items()}

    def put(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            tree = expr.parse(value)
        except expr.ExprError:
            return value  # reported where the stage's argument is evaluated
        if not expr.free_names(tree) & values.keys():
            return value
        return expr.to_python(expr.substitute(tree, {n: values[n] for n in expr.free_names(tree) if n in values}))

    given = {*body.with_, *body.first, *body.last}
    with_ = {c: v for c, v in cells.items() if c != REPEAT and c not in given and c in dict(table.args)}
    with_.update((k, put(v)) for k, v in body.with_.items())
    stage = m.StageItem.model_construct(
        stage=body.stages, repeat=cells.get(REPEAT, 1), with_=with_,
        first={k: put(v) for k, v in body.first.items()}, last={k: put(v) for k, v in body.last.items()},
    )  # fmt: skip
    return m.GroupItem.model_construct(group=[{m.POSITIONAL: stage}])


def table_of(rows: list[tuple[int, GroupInst]], btype: BlockType, scope: dict[str, Any], total: int | None) -> Table | None:
    """The table whose rows are `rows` (their index in the list, their group), its values and
    arguments evaluated in the model's `scope`; None where the loop would not build exactly
    the instances lowering built (emitters then write the stages out)."""
    first_at, first = rows[0]
    sym, _, start = first.table_row  # type: ignore[misc]
    if not sym.args or [r for _, g in rows for r in [g.table_row[1]]] != list(range(len(sym.cells))):  # type: ignore[index]
        return None
    names = {*sym.columns, *INDEX_NAMES, REPEAT}
    try:
        values = tuple(tuple(expr.evaluate(cell, scope) for cell in row) for row in sym.cells)
        args = tuple((key, expr.fold(expr.substitute(tree, {n: ast.Constant(scope[n]) for n in expr.free_names(tree) - names if n in scope})))
                     for key, tree in sym.args)  # fmt: skip
    except expr.ExprError:
        return None
    if any(expr.free_names(tree) - names for _, tree in args):
        return None
    given_args = dict(args)
    defaults = {p: ast.Constant(d) for p, d, _ in btype.params if p not in given_args and d is not None}
    out_channels = expr.fold(expr.substitute(btype.out_channels, {**defaults, **given_args}))
    if expr.free_names(out_channels) - names - {"in_channels"}:
        return None
    block_id = start
    for (_, group), row in zip(rows, values):
        env: dict[str, Any] = dict(zip(sym.columns, row))
        for k, inst in enumerate(group.items):
            if not isinstance(inst, BlockInst) or inst.block != sym.block or inst.exposed:
                return None
            here = {**env, STAGE_INDEX: k}
            if block_id is not None and total is not None:
                here.update({STAGE_BLOCK_ID: block_id + k, TOTAL_STAGE_BLOCKS: total})
            given = dict(inst.args)
            try:
                if any(expr.evaluate(tree, here) != given.get(key) for key, tree in args):
                    return None
                if expr.evaluate(out_channels, {**here, "in_channels": inst.in_shape.c}) != inst.out_shape.c:
                    return None
            except expr.ExprError:
                return None
        block_id = None if block_id is None else block_id + len(group.items)
    return Table(first_at, sym.block, sym.columns, values, args, out_channels, start, total)


def with_tables(group: GroupInst, types: dict[str, BlockType], scope: dict[str, Any], total: int | None) -> GroupInst:
    """`group` with the tables of its rows (runs of consecutive row groups of one table)."""
    runs: list[list[tuple[int, GroupInst]]] = []
    for k, item in enumerate(group.items):
        if isinstance(item, GroupInst) and item.table_row is not None:
            if runs and runs[-1][-1][0] == k - 1 and runs[-1][-1][1].table_row[0] is item.table_row[0]:  # type: ignore[index]
                runs[-1].append((k, item))
            else:
                runs.append([(k, item)])
    made = (table_of(run, types[run[0][1].table_row[0].block], scope, total) for run in runs)  # type: ignore[index]
    tables = tuple(t for t in made if t is not None)
    return dataclasses.replace(group, tables=tables) if tables else group
