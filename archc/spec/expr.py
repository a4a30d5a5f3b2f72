"""A small, safe expression language for numbers in specs.

Expressions use Python's syntax, so `(depth - 2) // 6`, `4 * growth_rate` and
`floor(compression * in_channels)` read as expected, but they are never run by
Python: `parse` accepts only the node types listed below, and `evaluate` walks
that tree itself. Results are bounded so no expression can exhaust memory.
The same tree can be printed back as Python source (`to_python`) for generated
code, where it means exactly what `evaluate` computed.
"""

from __future__ import annotations

import ast
import collections
import contextvars
import functools
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

Value = int | float | bool

MAX_INT = 2**53  # beyond any real layer size; keeps ints exact as floats too
MAX_EXPR_CHARS = 500
MAX_EXPR_DEPTH = 50  # nesting; the evaluator, substitution and printing all recurse
MAX_ROUND_DIGITS = 20  # round(x, n) needs 10**|n|; beyond 20 digits a float has nothing left to round
MAX_REGNET_DEPTH = 1000  # blocks of a RegNet design, which a regnet_* call walks (torchvision's are <= 27)
# Work of expression functions per spec lowered, in steps. Every function but the regnet_* ones
# is a few operations and costs nothing here; a RegNet design of depth d costs d steps the first
# time a spec uses it, and is remembered (a repeated call is free). The zoo needs < 100 steps;
# 100,000 steps take about 0.3 s.
MAX_FUNCTION_WORK = 100_000
LIMITS_HINT = "raise archc.spec.expr.MAX_INT deliberately if you mean it"

_BINOPS: dict[type, Callable[[Value, Value], Value]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Value, Value], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """torchvision's `_make_divisible` (from the TensorFlow MobileNet code): `v` rounded to a
    multiple of `divisor`, at least `min_value` (default: `divisor`), and never more than 10%
    below `v`. Generated modules that print it define the same function
    (templates/functions/make_divisible.py.j2)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _float32(v: float) -> float:
    """`v` rounded to the nearest float32 (ties to even), as a Python float: torchvision
    computes RegNet widths with float32 tensors, and ties of its roundings depend on that."""
    mantissa, exponent = math.frexp(v)  # mantissa in [0.5, 1): 24 bits of it are a float32's
    return math.ldexp(round(mantissa * 2**24), exponent - 24)


def regnet_block_widths(depth: int, w_0: int, w_a: float, w_m: float) -> list[int]:
    """torchvision's RegNet block widths (`BlockParams.from_init_params`): block j's width
    u_j = w_0 + w_a * j is quantised in log space to w_0 * w_m ** round(log(u_j / w_0) / log(w_m))
    and rounded to a multiple of 8, every step in float32 as torchvision's tensors compute it.
    Generated modules that print a regnet_* function define the same function
    (templates/functions/regnet_block_widths.py.j2)."""
    f32 = _float32
    w0, wa, wm, log_wm = f32(w_0), f32(w_a), f32(w_m), f32(math.log(w_m))
    widths = []
    for j in range(depth):
        u = f32(f32(j * wa) + w0)
        capacity = round(f32(f32(math.log(f32(u / w0))) / log_wm))
        widths.append(round(f32(w0 * f32(wm**capacity)) / 8) * 8)
    return widths


@functools.lru_cache(maxsize=256, typed=True)
def _regnet_design(depth: int, w_0: int, w_a: float, w_m: float) -> tuple[tuple[int, int], ...]:
    """Each stage's (width, blocks) of a RegNet design, widest last (torchvision starts a stage
    where the width changes, and the widths never decrease). Computed once per design: a spec
    may ask for the same design in every parameter and every instance of a stage."""
    return tuple(sorted(collections.Counter(regnet_block_widths(depth, w_0, w_a, w_m)).items()))


def regnet_stages(depth: int, w_0: int, w_a: float, w_m: float) -> int:
    """How many stages a RegNet design has: its distinct block widths."""
    return len(_regnet_design(depth, w_0, w_a, w_m))


def regnet_width(depth: int, w_0: int, w_a: float, w_m: float, stage: int) -> int:
    """The block width of RegNet stage `stage` (from 1), before torchvision's group-width
    adjustment (`_adjust_widths_groups_compatibilty`, which a spec writes with make_divisible)."""
    return _regnet_design(depth, w_0, w_a, w_m)[stage - 1][0]


def regnet_depth(depth: int, w_0: int, w_a: float, w_m: float, stage: int) -> int:
    """The number of blocks of RegNet stage `stage` (from 1)."""
    return _regnet_design(depth, w_0, w_a, w_m)[stage - 1][1]


# name in a spec -> (implementation, Python source used in generated code)
FUNCTIONS: dict[str, tuple[Callable[..., Value], str]] = {
    "floor": (math.floor, "math.floor"),
    "ceil": (math.ceil, "math.ceil"),
    "round": (round, "round"),
    "abs": (abs, "abs"),
    "min": (min, "min"),
    "max": (max, "max"),
    "int": (int, "int"),
    "float": (float, "float"),
    "make_divisible": (make_divisible, "make_divisible"),
    "regnet_stages": (regnet_stages, "regnet_stages"),
    "regnet_width": (regnet_width, "regnet_width"),
    "regnet_depth": (regnet_depth, "regnet_depth"),
}
# Functions that are neither builtins nor `math`'s: a generated module that prints one defines
# it, from templates/functions/NAME.py.j2, with the functions it calls (HELPER_SUPPORT).
HELPER_FUNCTIONS = frozenset({"make_divisible", "regnet_stages", "regnet_width", "regnet_depth"})
_REGNET = ("regnet_block_widths",)
HELPER_SUPPORT: dict[str, tuple[str, ...]] = {"regnet_stages": _REGNET, "regnet_width": _REGNET, "regnet_depth": _REGNET}
# Every function a generated module may define from templates/functions/.
HELPER_DEFINITIONS = HELPER_FUNCTIONS | {s for names in HELPER_SUPPORT.values() for s in names}
# Helpers whose definitions use `math` (the module then imports it).
HELPERS_USING_MATH = frozenset({"regnet_block_widths"})


class ExprError(ValueError):
    """An expression is malformed or cannot be evaluated; the caller adds the location."""


# --- the work budget of expression functions, one per spec lowered ---------------------------


class _Budget:
    """Steps left to the expression functions of one spec, and the RegNet designs already paid for."""

    def __init__(self) -> None:
        self.left = MAX_FUNCTION_WORK  # read now, so a deliberately raised limit applies
        self.paid: set[tuple[Value, ...]] = set()


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("archc_expr_budget", default=None)
_F = TypeVar("_F", bound=Callable[..., Any])


def work_budget(func: _F) -> _F:
    """`func` (lowering one spec) runs with a fresh budget of MAX_FUNCTION_WORK steps for the
    expression functions it evaluates; an expression evaluated outside such a call has none."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        token = _BUDGET.set(_Budget())
        try:
            return func(*args, **kwargs)
        finally:
            _BUDGET.reset(token)

    return run  # type: ignore[return-value]


def _charge(name: str, design: tuple[Value, ...], steps: int) -> None:
    """Pay `steps` for a RegNet design the first time this spec uses it, before it is computed."""
    budget = _BUDGET.get()
    if budget is None or design in budget.paid:
        return
    if steps > budget.left:
        raise ExprError(
            f"{name}(): this spec's expression functions ran out of work: its distinct RegNet designs add up "
            f"to more than {MAX_FUNCTION_WORK} blocks (archc.spec.expr.MAX_FUNCTION_WORK); reuse one design "
            "(a parameter), or raise the limit deliberately if you mean it"
        )
    budget.left -= steps
    budget.paid.add(design)


# Trees are never changed once made (transformers work on copies), so a tree is shared by every
# use of its text, and what is computed from a tree is kept per tree object: validation and
# lowering parse the same texts, and lowering and both backends ask for the same trees' names
# and source many times (about 4 % of a `check`).
_PER_TREE = 8192


@functools.lru_cache(maxsize=_PER_TREE)
def parse(text: str) -> ast.expr:
    """Parse `text` and check that it uses only the whitelisted constructs."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(
            f"expression longer than {MAX_EXPR_CHARS} characters "
            "(archc.spec.expr.MAX_EXPR_CHARS); name parts of it as params"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        raise ExprError(f"invalid expression {text!r}: {getattr(e, 'msg', e)}") from None
    nodes, depth = _nodes(tree)
    if depth > MAX_EXPR_DEPTH:
        raise ExprError(f"expression nested deeper than {MAX_EXPR_DEPTH} levels (archc.spec.expr.MAX_EXPR_DEPTH)")
    for node in nodes:
        _check_node(node, text)
    if any(isinstance(node, ast.Name) and node.id in ("true", "false") for node in nodes):
        tree = _Booleans().visit(tree)
    return tree


class _Booleans(ast.NodeTransformer):
    """`true` / `false` (YAML's spelling) mean Python's True / False."""

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return ast.Constant(node.id == "true") if node.id in ("true", "false") else node


def _nodes(tree: ast.AST) -> tuple[list[ast.AST], int]:
    """Every node of `tree`, and its nesting depth (without recursion: any depth is measured;
    read from `_fields` directly, which is twice as fast as ast.iter_child_nodes)."""
    nodes, deepest, stack = [], 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nodes.append(node)
        deepest = max(deepest, depth)
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, ast.AST):
                stack.append((value, depth + 1))
            elif isinstance(value, list):
                stack.extend((item, depth + 1) for item in value if isinstance(item, ast.AST))
    return nodes, deepest


_ALLOWED = (
    ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.Name,
    ast.Constant, ast.Load, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


def _check_node(node: ast.AST, text: str) -> None:
    if not isinstance(node, _ALLOWED):
        raise ExprError(f"{type(node).__name__} is not allowed in expression {text!r}")
    if isinstance(node, ast.Constant) and type(node.value) not in (int, float, bool):
        raise ExprError(f"only numbers and true/false are allowed in expression {text!r}")
    if isinstance(node, ast.Constant):
        bounded(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) not in _BINOPS:
        raise ExprError(f"operator {type(node.op).__name__} is not allowed in {text!r}")
    if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
        raise ExprError(f"operator {type(node.op).__name__} is not allowed in {text!r}")
    if isinstance(node, ast.Compare) and any(type(op) not in _CMPOPS for op in node.ops):
        raise ExprError(f"only ==, !=, <, <=, >, >= comparisons are allowed in {text!r}")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise ExprError(
                f"unknown function in {text!r}; available: {', '.join(sorted(FUNCTIONS))}"
            )
        if node.keywords:
            raise ExprError(f"keyword arguments are not allowed in {text!r}")


def free_names(tree: ast.expr) -> frozenset[str]:
    """Variables an expression reads (function names excluded)."""
    return _NO_NAMES if type(tree) is ast.Constant else _free_names(tree)  # most arguments are numbers


_NO_NAMES: frozenset[str] = frozenset()


@functools.lru_cache(maxsize=_PER_TREE)
def _free_names(tree: ast.expr) -> frozenset[str]:
    nodes = _nodes(tree)[0]
    callees = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
    return frozenset(n.id for n in nodes if isinstance(n, ast.Name) and id(n) not in callees)


def evaluate(tree: ast.expr, scope: Mapping[str, Value]) -> Value:
    """Evaluate a parsed expression with the given variables.

    Every name must be in scope, including names in a branch that is not taken:
    the same tree may be printed into generated code, where a stray name would
    reach a global of the generated module.
    """
    unknown = sorted(n for n in free_names(tree) if n not in scope)  # not set(scope): scopes can be large
    if unknown:
        import difflib  # error messages only

        names = [n for n in scope if n.isidentifier()]  # not the internal names lowering binds
        known = ", ".join(sorted(names)) or "none"
        hint = difflib.get_close_matches(unknown[0], names, n=1)
        guess = f"; did you mean {hint[0]!r}?" if hint else ""
        raise ExprError(f"unknown name {unknown[0]!r}{guess} (known here: {known})")
    return bounded(_eval(tree, scope))


def _eval(node: ast.expr, scope: Mapping[str, Value]) -> Value:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return scope[node.id]
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, scope), _eval(node.right, scope)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > MAX_INT):
            raise ExprError(f"power {left} ** {right} is out of range (exponents are limited to 64)")
        try:
            return bounded(_BINOPS[type(node.op)](left, right))
        except ZeroDivisionError:
            raise ExprError("division by zero") from None
        except OverflowError:
            raise ExprError("arithmetic overflow") from None
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, scope)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BoolOp):  # Python's: the first operand that decides, not a bool
        stop_when = isinstance(node.op, ast.Or)  # `or` stops at a true operand, `and` at a false one
        for operand in node.values:
            value = _eval(operand, scope)
            if bool(value) == stop_when:
                return value
        return value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, comparator in zip(node.ops, node.comparators):
            right = _eval(comparator, scope)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, scope) else node.orelse, scope)
    if isinstance(node, ast.Call):
        func = FUNCTIONS[node.func.id][0]  # type: ignore[union-attr]
        args = [_eval(a, scope) for a in node.args]
        _check_args(node.func.id, args)  # type: ignore[union-attr]
        try:
            return bounded(func(*args))
        except (TypeError, ValueError, OverflowError) as e:
            raise ExprError(f"{node.func.id}(): {e}") from None  # type: ignore[union-attr]
    raise ExprError(f"unsupported expression node {type(node).__name__}")


def _check_args(name: str, args: list[Value]) -> None:
    """Bounds on what each function may be asked, so no call costs more than a few operations
    (every argument is already a bounded number; `round`'s digit count is the one that is not)."""
    if name in ("min", "max"):
        if not args:
            raise ExprError(f"{name}() needs at least one argument")
        if len(args) == 1:
            raise ExprError(f"{name}() of a single number; write the number, or give two or more")
    elif name == "round":
        if not 1 <= len(args) <= 2:
            raise ExprError(f"round() takes a number and optionally a digit count, got {len(args)} arguments")
        if len(args) == 2:
            digits = args[1]
            if isinstance(digits, bool) or not isinstance(digits, int):
                raise ExprError(f"round(): the digit count must be an integer, got {digits!r}")
            if abs(digits) > MAX_ROUND_DIGITS:
                raise ExprError(f"round(): digit count {digits} is out of range (at most {MAX_ROUND_DIGITS} either way)")
    elif name == "make_divisible":
        _check_make_divisible(args)
    elif name.startswith("regnet_"):
        _check_regnet(name, args)
    elif len(args) != 1:
        raise ExprError(f"{name}() takes exactly one argument, got {len(args)}")


def _check_make_divisible(args: list[Value]) -> None:
    """make_divisible(v, divisor=8, min_value=divisor): a number and positive integers
    (so Python's result is an integer, as torchvision's; divisor 0 would divide by zero)."""
    if not 1 <= len(args) <= 3:
        raise ExprError(f"make_divisible() takes a number, optionally a divisor and a minimum, got {len(args)} arguments")
    if isinstance(args[0], bool):
        raise ExprError(f"make_divisible(): the value must be a number, got {args[0]!r}")
    for what, value in zip(("divisor", "minimum"), args[1:]):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExprError(f"make_divisible(): the {what} must be a positive integer, got {value!r}")


def _check_regnet(name: str, args: list[Value]) -> None:
    """regnet_*(depth, w_0, w_a, w_m[, stage]): torchvision's own validity rule on the design
    (`w_a >= 0`, `w_0 > 0` a multiple of 8, `w_m > 1`), a depth of at most MAX_REGNET_DEPTH
    blocks (the cost of computing the design), paid from the spec's budget, and a stage that exists."""
    wanted = 4 if name == "regnet_stages" else 5
    signature = "depth, w_0, w_a, w_m" + ("" if wanted == 4 else ", stage")
    if len(args) != wanted:
        raise ExprError(f"{name}() takes ({signature}), got {len(args)} arguments")
    if any(isinstance(a, bool) for a in args):
        raise ExprError(f"{name}(): the arguments ({signature}) must be numbers, got {args!r}")
    depth, w_0, w_a, w_m = args[:4]
    if not isinstance(depth, int) or not 1 <= depth <= MAX_REGNET_DEPTH:
        raise ExprError(f"{name}(): depth must be an integer from 1 to {MAX_REGNET_DEPTH} (archc.spec.expr.MAX_REGNET_DEPTH), got {depth!r}")
    if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % 8 != 0:
        raise ExprError(f"{name}(): invalid RegNet settings (torchvision needs w_a >= 0, w_0 > 0 a multiple of 8, w_m > 1), got w_0={w_0!r}, w_a={w_a!r}, w_m={w_m!r}")
    _charge(name, (depth, w_0, w_a, w_m), depth)
    if wanted == 5:
        try:
            count = regnet_stages(depth, w_0, w_a, w_m)  # type: ignore[arg-type]
        except OverflowError:
            raise ExprError(f"{name}(): arithmetic overflow (w_m {w_m!r} too close to 1)") from None
        stage = args[4]
        if not isinstance(stage, int) or not 1 <= stage <= count:
            raise ExprError(f"{name}(): stage {stage!r} does not exist: this design has stages 1 to {count}")


def _magnitude(value: int | float) -> str:
    """A number for a message, even one too large for `float` or `str`."""
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    return f"{value:.3g}"


def bounded(value: object) -> Value:
    if isinstance(value, bool):
        return value
    if not isinstance(value, (int, float)):  # e.g. the complex result of (-8) ** 0.5
        raise ExprError(f"{value!r} is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExprError(f"{value} is not a finite number")
    if abs(value) > MAX_INT:
        raise ExprError(f"{_magnitude(value)} exceeds the limit of {MAX_INT:.3g} ({LIMITS_HINT})")
    return value


# --- symbolic use: substitution and printing as Python source -------------------


def substitute(tree: ast.expr, values: Mapping[str, ast.expr]) -> ast.expr:
    """Replace variables by expressions, folding constants where possible. Trees are shared
    (parsed once, see `parse`) and never changed in place: the replacement is made
    in a copy, and only when there is something to replace."""
    if not any(isinstance(n, ast.Name) and n.id in values for n in ast.walk(tree)):
        return fold(tree)
    return fold(_Subst(values).visit(_copy(tree)))


def _copy(node: Any) -> Any:
    """A copy of an expression tree for a transformer to change. Unlike copy.deepcopy it keeps
    no memo: a sub-tree that occurs twice (a substituted value) is copied twice, so a
    transformer visits each copy once."""
    if isinstance(node, ast.AST):
        return type(node)(**{name: _copy(value) for name, value in ast.iter_fields(node)})
    if isinstance(node, list):
        return [_copy(item) for item in node]
    return node


class _Subst(ast.NodeTransformer):
    def __init__(self, values: Mapping[str, ast.expr]):
        self.values = values

    def visit_Name(self, node: ast.Name) -> ast.expr:
        return self.values.get(node.id, node)


def fold(tree: ast.expr) -> ast.expr:
    """Evaluate sub-trees without variables and drop `* 1` / `+ 0`."""
    if type(tree) is ast.Constant:
        return tree
    if isinstance(tree, ast.Tuple):  # a [height, width] pair of a layer argument
        return ast.Tuple([fold(v) for v in tree.elts], ast.Load())
    if not free_names(tree):
        try:
            return ast.Constant(evaluate(tree, {}))
        except ExprError:
            return tree
    if isinstance(tree, ast.BinOp):
        left, right = fold(tree.left), fold(tree.right)
        lc = left.value if isinstance(left, ast.Constant) else None
        rc = right.value if isinstance(right, ast.Constant) else None
        # identities, only where Python's value keeps its type: an int constant (1.0 would make a
        # float), a kept operand that is not a bool (0 + True is 1), and `// 1` of an int only
        if isinstance(tree.op, ast.Mult) and _int(lc) == 1 and not _boolean(right):
            return right
        if isinstance(tree.op, ast.Mult) and _int(rc) == 1 and not _boolean(left):
            return left
        if isinstance(tree.op, ast.FloorDiv) and _int(rc) == 1 and _integral(left):
            return left
        if isinstance(tree.op, (ast.Add, ast.Sub)) and _int(rc) == 0 and not _boolean(left):
            return left
        if isinstance(tree.op, ast.Add) and _int(lc) == 0 and not _boolean(right):
            return right
        return ast.BinOp(left, tree.op, right)
    if isinstance(tree, ast.Compare) and len(tree.ops) == 1 and isinstance(tree.ops[0], (ast.Eq, ast.NotEq)):
        left, right = fold(tree.left), fold(tree.comparators[0])
        if ast.dump(left) == ast.dump(right):  # x == x, x != x
            return ast.Constant(isinstance(tree.ops[0], ast.Eq))
        return ast.Compare(left, tree.ops, [right])
    if isinstance(tree, ast.BoolOp):  # Python's semantics: the value is the operand that decides
        stop_when = isinstance(tree.op, ast.Or)
        values: list[ast.expr] = []
        folded = [fold(v) for v in tree.values]
        for k, value in enumerate(folded):
            if isinstance(value, ast.Constant):
                if bool(value.value) == stop_when:
                    values.append(value)  # decides whenever it is reached; later operands never run
                    break
                if k < len(folded) - 1 or (_boolean(value) and values and all(map(_boolean, values))):
                    continue  # passes evaluation on (a last one only decides the type, and that is bool)
            values.append(value)
        return values[0] if len(values) == 1 else ast.BoolOp(tree.op, values)
    return tree


def _int(value: object) -> int | None:
    return value if type(value) is int else None


def _integral(tree: ast.expr) -> bool:
    """True when `tree` always evaluates to an int (not a float, not a bool)."""
    if isinstance(tree, ast.Call):
        return tree.func.id in ("floor", "ceil", "int") or (tree.func.id == "round" and len(tree.args) == 1)  # type: ignore[union-attr]
    if isinstance(tree, ast.BinOp) and not isinstance(tree.op, (ast.Div, ast.Pow)):
        return _integral(tree.left) and _integral(tree.right)
    return isinstance(tree, ast.Constant) and type(tree.value) is int


def _boolean(tree: ast.expr) -> bool:
    """True when `tree` always evaluates to a bool (so `tree or False` is `tree`)."""
    if isinstance(tree, ast.Constant):
        return isinstance(tree.value, bool)
    if isinstance(tree, ast.BoolOp):
        return all(map(_boolean, tree.values))
    return isinstance(tree, ast.Compare) or (isinstance(tree, ast.UnaryOp) and isinstance(tree.op, ast.Not))


def constant(value: Value) -> ast.expr:
    return ast.Constant(value)


@functools.lru_cache(maxsize=_PER_TREE)
def to_python(tree: ast.expr) -> str:
    """Python source for an expression; spec functions map to their Python names (in a
    copy of the tree, made only when it calls one)."""
    if not any(isinstance(n, ast.Call) for n in ast.walk(tree)):
        return ast.unparse(tree)
    return ast.unparse(_Rename().visit(_copy(tree)))


def replace_named(tree: ast.expr, names: Mapping[str, str]) -> ast.expr:
    """A copy of `tree` in which each sub-expression whose source is a key of `names` is
    that name (`a_channels // group_width`); `tree` itself is left as it is."""
    if isinstance(tree, ast.expr) and not isinstance(tree, (ast.Name, ast.Constant)):
        name = names.get(to_python(tree))
        if name is not None:
            return ast.Name(name, ast.Load())
    if isinstance(tree, ast.AST):
        return type(tree)(**{field: replace_named(value, names) for field, value in ast.iter_fields(tree)})
    if isinstance(tree, list):
        return [replace_named(item, names) for item in tree]  # type: ignore[return-value]
    return tree


class _Rename(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.expr:
        self.generic_visit(node)
        node.func = ast.Name(FUNCTIONS[node.func.id][1])  # type: ignore[union-attr]
        return node


@functools.lru_cache(maxsize=_PER_TREE)
def helper_functions(tree: ast.expr) -> frozenset[str]:
    """The HELPER_FUNCTIONS an expression calls and the helpers they call, which its module must define."""
    called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and n.func.id in HELPER_FUNCTIONS}  # type: ignore[union-attr]
    return frozenset(called | {s for name in called for s in HELPER_SUPPORT.get(name, ())})


@functools.lru_cache(maxsize=_PER_TREE)
def uses_math(tree: ast.expr) -> bool:
    """The printed expression, or a helper it makes its module define, uses `math`."""
    return any(
        isinstance(n, ast.Call) and FUNCTIONS[n.func.id][1].startswith("math.")  # type: ignore[union-attr]
        for n in ast.walk(tree)
    ) or bool(helper_functions(tree) & HELPERS_USING_MATH)
