"""Values in a spec: literals and expressions, evaluated and typed where they are
written; a layer's arguments with its kind's and the model's defaults filled in; a
block kind's parameters bound; `checks:` rules."""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable
from typing import Any

from archc import ops
from archc.errors import Location, SpecError
from archc.lower import limits
from archc.lower.context import Ctx, LayerKey, State, check_init
from archc.ops import init
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import BlockSource


def typed_value(
    raw: Any, scope: dict[str, expr.Value], where: Location | None, want: str, *, state: State | None = None,
    ref_ok: bool = False, ref: tuple[int, str, LayerKey] | None = None,
) -> Any:  # fmt: skip
    """Evaluate a literal or expression and check its type (int, num, bool, param; pair:
    an int, or one int per spatial dimension, which becomes a tuple: see ranked_values)."""
    if want == "pads" and isinstance(raw, list):  # [[top, bottom], [left, right]]
        return tuple(typed_value(v, scope, where, "pair", state=state) for v in raw)
    if want in ("pair", "pads"):
        if isinstance(raw, list):
            return tuple(typed_value(v, scope, where, "int", state=state) for v in raw)
        want = "int"
    value = raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        try:
            value = expr.bounded(raw)  # YAML's .inf and .nan, or a 60-digit literal
        except expr.ExprError as e:
            raise SpecError(str(e), where) from None
    if isinstance(raw, str):
        try:
            tree, names = _parse(raw)
            value = expr.evaluate(tree, scope)
        except expr.ExprError as e:
            hint = index_hint(set(re.findall(r"\w+", raw)), scope)
            raise SpecError(str(e) + hint + provenance(state, raw, where), where) from None
        if state is not None:
            for name in names & state.spec.model.params.keys():
                if ref_ok and ref is not None and raw.strip() == name:
                    state.param_refs.setdefault(name, []).append(ref)
                else:
                    state.pinned.add(name)
    problem = type_problem(value, want)
    if problem:
        raise SpecError(problem + provenance(state, raw, where), where)
    return float(value) if want == "num" else value


def ranked_values(
    op: type[ops.Op], values: dict[str, Any], rank: int, model_rank: int, where: Callable[[str], Location | None]
) -> dict[str, Any]:
    """A layer's values for a map of `rank` spatial dimensions (0: flat): each per-dimension
    list (a `pair` or `pads` argument) must have one value per dimension, else a SpecError at
    that argument (`where(name)`); a one-value list of a 1-D map becomes its value; a RANKED op
    gets its `rank` (`op_rank`)."""
    out = dict(values)
    for attr in op.ATTRS:
        value = values.get(attr.name)
        if attr.type not in ("pair", "pads") or not isinstance(value, tuple) or not rank:
            continue
        if len(value) != rank:
            shown = [list(v) if isinstance(v, tuple) else v for v in value]
            raise SpecError(
                f"{op.kind} {attr.name} {shown} has {len(value)} values but the maps here have {rank} spatial "
                f"dimension{'s' * (rank > 1)} (input {RANK_SHAPES[rank]}); give one value for all, or one per dimension",
                where(attr.name),
            )
        if rank == 1 and attr.type == "pair":
            out[attr.name] = value[0]
    if op.RANKED:
        out["rank"] = op_rank(op, rank == 0, model_rank)
    return out


def op_rank(op: type[ops.Op], flat: bool, model_rank: int) -> int:
    """A RANKED op's `rank`: the model's (its input's spatial dimensions), or 0 on a flat input
    unless the op makes a map of it (reshape)."""
    return 0 if flat and op.FLAT_OUT is not False else model_rank


RANK_SHAPES = {1: "(C, L)", 2: "(C, H, W)", 3: "(C, D, H, W)"}


def type_problem(value: Any, want: str) -> str | None:
    if want in ("int", "param_int"):
        if isinstance(value, bool) or not isinstance(value, int):
            hint = "; use // or int(...) for whole numbers" if isinstance(value, float) else ""
            return f"must be an integer, got {value!r}{hint}"
        if value > limits.MAX_CHANNELS:
            return (
                f"{value} exceeds the limit of {limits.MAX_CHANNELS} for a layer size; "
                "raise archc.lower.limits.MAX_CHANNELS deliberately if you mean it"
            )
    elif want in ("num", "param_float") and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return f"must be a number, got {value!r}"
    elif want in ("bool", "param_bool") and not isinstance(value, bool):
        return f"must be true or false, got {value!r}"
    return None


def provenance(state: State | None, raw: Any, where: Location | None) -> str:
    """' (depth = 21 from --set params.depth=21)' for each model parameter in `raw` that was
    set in another file than `where` (an extending spec, a --set), else ''."""
    notes = param_notes(state, raw, where)
    return f" ({'; '.join(notes)})" if notes else ""


def param_notes(state: State | None, raw: Any, where: Location | None) -> list[str]:
    if state is None or where is None or not isinstance(raw, str):
        return []  # without a location yet, the caller adds the notes when it locates the error
    try:
        names = expr.free_names(expr.parse(raw)) & set(state.spec.model.params)
    except expr.ExprError:
        return []
    notes = []
    for name in sorted(names):
        source = state.spec.source.locate(("params", name))
        if source.file != where.file:
            notes.append(f"{name} = {state.spec.model.params[name]!r} from {source}")
    return notes


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[ast.expr, frozenset[str]]:
    """Parse each distinct expression once: a deep stage evaluates the same few many times."""
    tree = expr.parse(text)
    return tree, expr.free_names(tree)


def run_checks(checks: list[m.Check], scope: dict[str, expr.Value], ctx: Ctx, state: State) -> None:
    """Fail on the first false check, saying where its model parameters were set if elsewhere."""
    for i, check in enumerate(checks):
        ok = typed_value(check.that, scope, ctx.where(i, "that"), "any", state=state)
        if not ok:

            def fill(name: str) -> str:
                return repr(scope[name]) if name in scope else "{" + name + "}"

            message = _format_message(check.message, fill)
            where = ctx.where(i)
            raise SpecError(message + (provenance(state, check.that, where) if ctx.top_level else ""), where)


def block_checks(state: State, source: BlockSource, scope: dict[str, Any], where: Location) -> None:
    """A block's rules, reported where the failing instance is written (the rule may live in a library)."""
    for i, check in enumerate(source.definition.checks):
        if not typed_value(check.that, scope, source.locate("checks", i, "that"), "any"):
            names = sorted(expr.free_names(expr.parse(check.that)))
            notes = [state.arg_notes[key] for key in ((source.name, n, scope.get(n)) for n in names) if key in state.arg_notes]
            message = _format_message(check.message, lambda n: repr(scope[n]) if n in scope else "{" + n + "}")
            rule = f"rule of block {source.name!r} at {source.locate('checks', i)}"
            raise SpecError(f"{message} ({'; '.join([*notes, rule])})", where)


def _format_message(template: str, fill: Any) -> str:
    """Replace {name} by values; nothing else of str.format is available to specs."""
    out, i = [], 0
    while i < len(template):
        j = template.find("{", i)
        k = template.find("}", j + 1) if j >= 0 else -1
        if j < 0 or k < 0 or not template[j + 1 : k].isidentifier():
            out.append(template[i:] if j < 0 or k < 0 else template[i : j + 1])
            i = len(template) if j < 0 or k < 0 else j + 1
            continue
        out.append(template[i:j] + fill(template[j + 1 : k]))
        i = k + 1
    return "".join(out)


def raw_args(state: State, kind: str, args: Any, where: Any) -> dict[str, Any]:
    """A layer's arguments as written, with what it leaves unset filled in from the op's
    defaults and the model's `defaults:` (values or expression strings; None: not applicable)."""
    op = ops.KINDS[kind]
    raw: dict[str, Any] = {}
    for attr in op.ATTRS:
        value = getattr(args, attr.name)
        if attr.type == "init":  # the layer's rules over its kind's
            raw[attr.name] = init.layer_init(value, state.init(init.section(kind)))
            if value is not None:
                check_init(raw[attr.name], kind, where() if callable(where) else where)
            continue
        raw[attr.name] = value if value is not None else _default(state.spec.model.defaults, kind, attr, raw, where)
    if kind == "act":
        problem = ops.Act.check_args(raw)
        if problem:
            raise SpecError(problem, where() if callable(where) else where)
    return raw


def _default(defaults: m.Defaults, kind: str, attr: ops.Attr, values: dict[str, Any], where: Any) -> Any:
    if attr.default is ops.REQUIRED:
        raise SpecError(f"{kind} needs `{attr.name}`", where() if callable(where) else where)
    if isinstance(attr.default, str) and attr.default.startswith("="):
        return values[attr.default[1:]]
    if isinstance(attr.default, str) and attr.default.startswith("defaults."):
        path = attr.default.split(".")[1:]
        value: Any = defaults
        for part in path:
            value = getattr(value, part)
        if value is None:
            section, key = path
            raise SpecError(
                f"{kind} {attr.name} is not set: write it on this layer or once in `defaults: {{{section}: {{{key}: ...}}}}` "
                "(archc never relies on a framework default)",
                where() if callable(where) else where,
            )
        return value
    return attr.default


def call_args(
    state: State, ctx: Ctx, block: str, raw: dict[str, Any], base: dict[str, Any], key: str, top_index: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate `with:` arguments, type-checked here (where the value is written) when the block is known.
    `top_index`: the call is the model-level item of that index (state.top_kinds), whose arguments may
    pass a model param on from build_model() (recorded in state.param_refs, judged by lowering's
    `_exposed_params`)."""
    source = state.spec.blocks.get(block)
    declared = source.definition.params if source else {}
    args = dict(base)
    for name, value in raw.items():
        if source is not None and name not in declared:
            known = ", ".join(declared) or "none"
            raise SpecError(f"block {block!r} has no parameter {name!r}; its parameters: {known}", ctx.where(key, name))
        decl = declared.get(name)
        kind = decl if isinstance(decl, str) else {bool: "bool", int: "int", float: "float"}.get(type(decl), "")
        where = ctx.where(key, name)
        try:
            ref = (top_index, name, ctx.module_path) if top_index is not None and ctx.top_level else None
            args[name] = typed_value(value, {**ctx.scope}, where, f"param_{kind}", state=state, ref_ok=ref is not None, ref=ref)
        except SpecError as e:
            raise SpecError(f"block {block!r} parameter {name!r} {e.message}", e.where) from None
        for note in param_notes(state, value, where):
            state.arg_notes[(block, name, args[name])] = note
    return args


STAGE_INDEX = "i"  # in a stage's `with`, `first` and `last`: the instance's index, from 0
# in a model-level stage's `with`, `first` and `last`: the instance's index among the instances
# of all the model's stages, from 0, and their number (torchvision's EfficientNet and ConvNeXt
# `stage_block_id` / `total_stage_blocks`, for stochastic depth rates growing over the model)
STAGE_BLOCK_ID = "stage_block_id"
TOTAL_STAGE_BLOCKS = "total_stage_blocks"
INDEX_NAMES = frozenset({STAGE_INDEX, STAGE_BLOCK_ID, TOTAL_STAGE_BLOCKS})


_INDEX_MEANING = {
    STAGE_INDEX: "the instance index",
    STAGE_BLOCK_ID: "the instance's index among all the model's stage instances",
    TOTAL_STAGE_BLOCKS: "the number of the model's stage instances",
}


def index_hint(names: frozenset[str] | set[str], scope: Any, model_level: bool = True) -> str:
    """Where an expression reads an index name that does not exist there: where it does."""
    missing = sorted(INDEX_NAMES & set(names) - set(scope))
    if not missing:
        return ""
    name = missing[0]
    where = " at model level" if model_level or name != STAGE_INDEX else ""
    return f"; `{name}`, {_INDEX_MEANING[name]}, exists in a stage's `with`, `first` and `last`{where}"


def uses_index(body: m.StageItem) -> bool:
    """Whether a stage's arguments read an index name (`i`, `stage_block_id`,
    `total_stage_blocks`: names no spec may define)."""
    for raw in (*body.with_.values(), *body.first.values(), *body.last.values()):
        try:
            if isinstance(raw, str) and INDEX_NAMES & _parse(raw)[1]:
                return True
        except expr.ExprError:
            pass  # reported where the argument is evaluated
    return False


def bind_params(source: BlockSource, args: dict[str, Any], where: Location) -> dict[str, Any]:
    """Every parameter's value: the arguments (named and typed in `call_args`) over the defaults."""
    params: dict[str, Any] = {}
    for key, decl in source.definition.params.items():
        if key not in args:
            if isinstance(decl, str):
                raise SpecError(f"block {source.name!r} needs parameter {key!r} ({decl}); pass it in `with:`", where)
            params[key] = decl
        else:
            params[key] = float(args[key]) if decl == "float" or type(decl) is float else args[key]
    return params
