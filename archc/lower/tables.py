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
from typing import Any, NamedTuple

from archc.errors import SpecError
from archc.ir.graph import (
    BlockInst,
    BlockType,
    GroupInst,
    Inst,
    SymTable,
    Table,
    TableEntry,
)
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
) -> Iterator[tuple[int, str, Any, tuple[Any, ...], TableEntry | None]]:  # fmt: skip
    """The entries of one list as (index, written name, body, the section that locates it,
    its table and row): a table's rows are `- - stage: KIND` entries, located at their row, each
    but the first after its `between` instance."""
    for index, entry in enumerate(entries, start=offset):
        ((written, body),) = entry.items()
        if not isinstance(body, m.StagesItem):
            yield index, written, body, section, None
            continue
        here = (*section, index) if written == m.POSITIONAL else (*section, index, written)  # as the YAML nests it
        table = sym_table(state, source, body, here, top and in_group and written == m.POSITIONAL)
        for r, row in enumerate(body.rows):
            stage, between = _row_entries(body, table, row)
            if r > 0 and between is not None:
                yield r, m.POSITIONAL, between, (*here, "between"), TableEntry(table, r, True)
            row_body = stage if body.flat else m.GroupItem.model_construct(group=[{m.POSITIONAL: stage}])
            yield r, m.POSITIONAL, row_body, (*here, "rows"), TableEntry(table, r)


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
        # kinds imports this module (through symbolic): imported where it is needed
        from archc.lower.kinds import unknown_block

        raise unknown_block(state, body.stages, source.locate(*here, "stages"))
    declared = kind.definition.params
    model = state.spec.model.params
    written = {key: _tree(v) for part in (body.with_, body.first, body.last) for key, v in part.items()}
    read = {n for tree in written.values() for n in expr.free_names(tree)}
    between = _between(state, source, body, here)
    read |= {n for _, tree in (between[1] if between else ()) for n in expr.free_names(tree)}
    for c, column in enumerate(body.columns):
        at = source.locate(*here, "columns", c)
        if column in model and column in read:
            raise SpecError(
                f"column {column!r} is also a parameter of the model: `with`, `first`, `last` and `between` would read the column, "
                "not the parameter; rename the column",
                at,
            )
        if column != REPEAT and column not in declared and column not in read:
            known = ", ".join(declared) or "none"
            raise SpecError(
                f"column {column!r} is neither `repeat`, a parameter of block {body.stages!r} ({known}), "
                "nor a name that the table's `with`, `first`, `last` or `between` reads",
                at,
            )
    for r, row in enumerate(body.rows):
        for value in row:
            late = expr.free_names(_tree(value)) & (INDEX_NAMES | (set(body.columns) - set(model))) if isinstance(value, str) else set()
            if late:
                raise SpecError(
                    f"row {r} reads {', '.join(sorted(late))}: a row's values are expressions over the model's parameters; "
                    "what varies per instance or reads the columns belongs in `with`, `first` or `last`",
                    source.locate(*here, "rows", r),
                )
        if len(row) != len(body.columns):
            raise SpecError(
                f"row {r} has {len(row)} values for the {len(body.columns)} columns {', '.join(body.columns)}", source.locate(*here, "rows", r)
            )
    implicit = [c for c in body.columns if c in declared and c not in written]
    single = REPEAT not in body.columns  # one instance per row: the first and the last, `i` 0
    args: dict[str, ast.expr] = {}
    for key in [*(p for p in declared if p in implicit or p in written), *(p for p in written if p not in declared)]:
        default = declared.get(key)
        base = _tree(body.with_[key]) if key in body.with_ else ast.Name(key) if key in implicit else None
        tree = base
        if key in body.first:
            tree = _if(ast.Constant(0), _tree(body.first[key]), base, default) if not single else _tree(body.first[key])
        if key in body.last:
            last = ast.BinOp(ast.Name(REPEAT), ast.Sub(), ast.Constant(1))
            tree = _if(last, _tree(body.last[key]), tree, default) if not single else _tree(body.last[key])
        assert tree is not None
        args[key] = expr.substitute(tree, {STAGE_INDEX: ast.Constant(0)}) if single else tree
    cells = tuple(tuple(_tree(v) for v in row) for row in body.rows)
    return SymTable(body.stages, tuple(body.columns), cells, tuple(args.items()), body.flat, where, between)


def _between(state: Any, source: BlockSource, body: m.StagesItem, here: tuple[Any, ...]) -> tuple[str, tuple[tuple[str, ast.expr], ...]] | None:
    """`between:` as its kind and its arguments, expressions over the model's parameters and the row's columns."""
    item = body.between
    if item is None:
        return None
    where = source.locate(*here, "between")
    if item.from_ is not None or item.if_ is not None or item.inline:
        raise SpecError("`between:` is one block instance of the list: it takes no `from:`, `if:` or `inline`", where)
    args = tuple((k, _tree(v)) for k, v in item.with_.items())
    late = {n for _, tree in args for n in expr.free_names(tree)} & INDEX_NAMES
    if late:
        raise SpecError(f"`between:` reads {', '.join(sorted(late))}, which name a stage's instances; it reads the row's columns", where)
    return item.block, args


def _if(index: ast.expr, then: ast.expr, otherwise: ast.expr | None, default: Any) -> ast.expr:
    """`then if i == index else otherwise`, `otherwise` the parameter's default where nothing else sets it."""
    if otherwise is None:
        otherwise = ast.Constant(default if not isinstance(default, str) else None)
    test = ast.Compare(ast.Name(STAGE_INDEX), [ast.Eq()], [index])
    return ast.IfExp(test, then, otherwise)


def _row_entries(body: m.StagesItem, table: SymTable, row: list[Any]) -> tuple[m.StageItem, m.BlockItem | None]:
    """Row `row` as the stage entry it stands for (in its own list, `- - stage: KIND`, unless
    the table is `flat`), and its `between` instance: the columns' values written into `with`,
    `first` and `last` (a column that is a parameter nothing else sets, into `with`)."""
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
    if body.between is None:
        return stage, None
    between = m.BlockItem.model_construct(block=body.between.block, with_={k: put(v) for k, v in body.between.with_.items()})
    return stage, between


def _kept(tree: ast.expr) -> ast.expr:
    """`a if ... and a == b else b` as `b` (a skip block's width: its input's where the stride
    is 1 and the width is kept, else out_channels, is out_channels), `a if ... else a` as `a`;
    the instances check it."""
    if isinstance(tree, ast.IfExp):
        test, body, orelse = tree.test, _kept(tree.body), _kept(tree.orelse)
        terms = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
        same = {expr.to_python(body), expr.to_python(orelse)}
        if len(same) == 1:  # either way
            return body
        for term in terms:
            if isinstance(term, ast.Compare) and len(term.ops) == 1 and isinstance(term.ops[0], ast.Eq):
                if {expr.to_python(term.left), expr.to_python(term.comparators[0])} == same:
                    return orelse
        return ast.IfExp(test, body, orelse)
    return tree


class TableRow(NamedTuple):
    """An entry of a list from a table of stages, as specialisation meets it."""

    table: SymTable
    row: int
    between: bool  # the `between` instance before the row's stage
    at: int  # the list's entry where it starts
    block_id: int | None  # `stage_block_id` of its first instance (None: not at model level)


def _folded(trees: tuple[tuple[str, ast.expr], ...], btype: BlockType, scope: dict[str, Any], names: set[str]) -> tuple[tuple[tuple[str, ast.expr], ...], ast.expr] | None:
    """Arguments with the model's parameters folded in, and the kind's output channels over
    them; None where they read anything but `names` (and `in_channels`)."""
    args = tuple((key, expr.fold(expr.substitute(tree, {n: ast.Constant(scope[n]) for n in expr.free_names(tree) - names if n in scope}))) for key, tree in trees)
    given = dict(args)
    defaults = {p: ast.Constant(d) for p, d, _ in btype.params if p not in given and d is not None}
    out_channels = _kept(expr.fold(expr.substitute(btype.out_channels, {**defaults, **given})))
    if any(expr.free_names(tree) - names for _, tree in args) or expr.free_names(out_channels) - names - {"in_channels"}:
        return None
    return args, out_channels


def _builds(inst: Inst, block: str, args: tuple[tuple[str, ast.expr], ...], out_channels: ast.expr, here: dict[str, Any]) -> bool:
    """Whether the call the loop makes here is `inst`: its kind, arguments and output channels."""
    if not isinstance(inst, BlockInst) or inst.block != block or inst.exposed:
        return False
    given = dict(inst.args)
    try:
        return all(expr.evaluate(tree, here) == given.get(key) for key, tree in args) and (
            expr.evaluate(out_channels, {**here, "in_channels": inst.in_shape.c}) == inst.out_shape.c
        )
    except expr.ExprError:
        return False


def table_of(rows: list[TableRow], items: tuple[Inst, ...], types: dict[str, BlockType], scope: dict[str, Any], total: int | None) -> Table | None:
    """The table whose entries are `rows`, its values and arguments evaluated in the model's
    `scope`; None where the loop would not build exactly the instances lowering built
    (emitters then write the stages out)."""
    sym = rows[0].table
    expected = [(r, between) for r in range(len(sym.cells)) for between in (True, False) if not (between and (r == 0 or sym.between is None))]
    if [(r.row, r.between) for r in rows] != expected:
        return None
    names = {*sym.columns, *INDEX_NAMES, REPEAT}
    try:
        values = tuple(tuple(expr.evaluate(cell, scope) for cell in row) for row in sym.cells)
        stage = _folded(sym.args, types[sym.block], scope, names)
        between = _folded(sym.between[1], types[sym.between[0]], scope, set(sym.columns)) if sym.between else None
    except expr.ExprError:
        return None
    if stage is None or (sym.between is not None and between is None):
        return None
    at = rows[0].at
    for row in rows:
        env: dict[str, Any] = {REPEAT: 1, **dict(zip(sym.columns, values[row.row]))}
        count = 1 if row.between or not sym.flat else env[REPEAT]
        if row.at != at or at + count > len(items):
            return None
        if row.between:
            if not _builds(items[at], sym.between[0], *between, env):  # type: ignore[index, misc]
                return None
            at += 1
            continue
        insts = items[at].items if not sym.flat else items[at : at + count]  # type: ignore[union-attr]
        at += count
        if len(insts) != env[REPEAT]:
            return None
        for k, inst in enumerate(insts):
            here = {**env, STAGE_INDEX: k}
            if row.block_id is not None and total is not None:
                here.update({STAGE_BLOCK_ID: row.block_id + k, TOTAL_STAGE_BLOCKS: total})
            if not _builds(inst, sym.block, *stage, here):
                return None
    more = (sym.between[0], *between) if sym.between and between else None  # type: ignore[misc]
    return Table(rows[0].at, sym.flat, at, sym.block, sym.columns, values, *stage, rows[0].block_id, total, more)


def with_tables(group: GroupInst, rows: list[TableRow], types: dict[str, BlockType], scope: dict[str, Any], total: int | None) -> GroupInst:
    """`group` with the tables of its rows (each table's rows in order)."""
    runs: list[list[TableRow]] = []
    for row in rows:
        if runs and runs[-1][-1].table is row.table:
            runs[-1].append(row)
        else:
            runs.append([row])
    made = (table_of(run, group.items, types, scope, total) for run in runs)
    tables = tuple(t for t in made if t is not None)
    return dataclasses.replace(group, tables=tables) if tables else group
