"""A forward that branches on its input's size, traced at the spec's input shape.

A spec has one input shape, so a module's forward is traced for the maps it gets there. When
tracing needs a Python value of a size, a `bool` (`if x.shape[-2] < 7:`, `max(7,
x.shape[-1])`), an `int` or a `float` (`range(x.size(1))`, `math.ceil(x.shape[-1] / s)`), the
tracer computes it: the value is read off a run of the forward's nodes so far (its children,
the real modules) on an input of the module's shape at that input (the shape a forward pass of
the whole model gave it). The graph then holds the branch that input takes, and nothing of the
test (its size reads, no longer read, are removed).

Only a value made of sizes is computed: `x.shape`, `x.size()`, `x.dim()`, `x.ndim` of a traced
tensor, their items and Python arithmetic and comparisons on them. A condition on a tensor's
values (`if x.sum() > 0:`) stays refused as torch.fx refuses it, and so does one whose value
differs between batches of 1 and 2 (a size test of the batch, which a spec does not fix).
Size reads that stay symbolic (`F.interpolate(y, size=x.shape[-2:])`, archc's `resize: {like:
x}`) are untouched: they never ask for a Python value. A size a call takes as an argument,
where archc's layer needs a number (F.pad's amounts from timm's 'same' padding rule: a
`zeropad`), is its number at the input as well (`fold`); a view's shape stays as it is spelt
(patterns.py reads views off the traced shapes).

The result is exact at the spec's input shape only: each value computed is recorded (`tests`:
its expression and value, or the call with its numbers) for the spec's comment and `doc:`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import operator
from collections.abc import Iterator
from typing import Any

_BINARY = {
    operator.lt: "<", operator.le: "<=", operator.gt: ">", operator.ge: ">=", operator.eq: "==", operator.ne: "!=",
    operator.add: "+", operator.sub: "-", operator.mul: "*", operator.floordiv: "//", operator.truediv: "/",
    operator.mod: "%", operator.pow: "**", operator.and_: "&", operator.or_: "|",
}  # fmt: skip
_UNARY = {operator.neg: "-", operator.pos: "+", operator.not_: "not ", operator.abs: "abs", math.ceil: "ceil", math.floor: "floor", math.trunc: "trunc"}


def _read(node: Any) -> bool:  # x.shape, x.ndim, x.size(...), x.dim()
    if node.op == "call_function" and node.target is getattr and len(node.args) == 2:
        return node.args[1] in ("shape", "ndim")
    return node.op == "call_method" and node.target in ("size", "dim")


def is_size(node: Any) -> bool:
    """`node` computes a number (or a tuple of them) from sizes only: a size read of a traced
    tensor, or an item, arithmetic or comparison of such values and constants."""
    if _read(node):
        return True
    if node.op != "call_function" or (node.target not in _BINARY and node.target not in _UNARY and node.target is not operator.getitem):
        return False
    return bool(node.all_input_nodes) and all(is_size(n) for n in node.all_input_nodes)


_PRECEDENCE = {"|": 2, "&": 3, "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "**": 8}  # comparisons 1, unary 7, others 9


def _precedence(node: Any) -> int:
    import torch.fx

    if not isinstance(node, torch.fx.Node) or node.op != "call_function":
        return 9
    if node.target in _BINARY:
        return _PRECEDENCE.get(_BINARY[node.target], 1)
    return 7 if node.target in _UNARY and not _UNARY[node.target].isalpha() else 9


def text(node: Any) -> str:
    """The expression a size node computes, in Python (`x.shape[-2] < 7`); a tensor is its
    node's name."""
    import torch.fx

    def show(a: Any, below: int = 0) -> str:  # parenthesised where its precedence is `below` or less
        if isinstance(a, torch.fx.Node):
            return f"({text(a)})" if _precedence(a) <= below else text(a)
        if isinstance(a, slice):
            return ":".join("" if v is None else show(v) for v in (a.start, a.stop)) + ("" if a.step is None else f":{show(a.step)}")
        if isinstance(a, (tuple, list)):
            return ", ".join(show(v) for v in a)
        return repr(a)

    if node.op == "call_function" and node.target is getattr:
        return f"{show(node.args[0], 8)}.{node.args[1]}"
    if node.op == "call_method" and node.target in ("size", "dim"):
        return f"{show(node.args[0], 8)}.{node.target}({', '.join(show(a) for a in node.args[1:])})"
    if node.op == "call_function" and node.target is operator.getitem:
        return f"{show(node.args[0], 8)}[{show(node.args[1])}]"
    if node.op == "call_function" and node.target in _BINARY:
        p = _precedence(node)
        return f"{show(node.args[0], p - 1 if p > 1 else 1)} {_BINARY[node.target]} {show(node.args[1], p)}"
    if node.op == "call_function" and node.target in _UNARY:
        sym = _UNARY[node.target]
        return f"{sym}({show(node.args[0])})" if sym.isalpha() else f"{sym}{show(node.args[0], 6)}"
    return str(node.name)


def call_text(node: Any) -> str:
    """A call with its positional arguments (`pad(x, (0, 1, 0, 1))`)."""
    import torch.fx

    name = str(node.target) if isinstance(node.target, str) else getattr(node.target, "__name__", str(node.target))
    shown = [a.name if isinstance(a, torch.fx.Node) else repr(a) for a in node.args]
    return f"{name}({', '.join(shown)})"


def _evaluate(root: Any, target: Any, input_shape: tuple[int, ...], batch: int, memo: dict[Any, Any]) -> Any:
    """The value of `target`, a node of the graph being traced from `root`, when the forward
    runs on a batch of `batch` random inputs of `input_shape`: its ancestors run in order."""
    needed: set[Any] = set()
    stack = [target]
    while stack:
        n = stack.pop()
        if n not in needed and n not in memo:
            needed.add(n)
            stack.extend(n.all_input_nodes)
    placeholders = [n for n in target.graph.nodes if n.op == "placeholder"]
    with _unpatched():
        _run(root, target, needed, placeholders[0], input_shape, batch, memo)
    return memo[target]


@contextlib.contextmanager
def _unpatched() -> Iterator[None]:
    """torch.nn.Module's own __call__ and __getattr__, which torch.fx replaces while it traces
    (a call would be a node, a parameter a proxy): the nodes then run on real tensors."""
    import torch
    from torch.fx import _symbolic_trace as fx

    patched = torch.nn.Module.__call__, torch.nn.Module.__getattr__
    torch.nn.Module.__call__, torch.nn.Module.__getattr__ = fx._orig_module_call, fx._orig_module_getattr  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.nn.Module.__call__, torch.nn.Module.__getattr__ = patched  # type: ignore[method-assign]


def _run(root: Any, target: Any, needed: set[Any], first: Any, input_shape: tuple[int, ...], batch: int, memo: dict[Any, Any]) -> None:
    import torch
    import torch.fx

    for n in target.graph.nodes:
        if n not in needed:
            continue
        args, kwargs = torch.fx.node.map_arg((n.args, n.kwargs), lambda a: memo[a])
        if n.op == "placeholder":
            if n is not first:
                raise ValueError(f"a size of the input {n.name}, which archc does not trace")
            memo[n] = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
        elif n.op == "get_attr":
            memo[n] = functools.reduce(getattr, str(n.target).split("."), root)
        elif n.op == "call_module":
            memo[n] = root.get_submodule(str(n.target))(*args, **kwargs)
        elif n.op == "call_function":
            memo[n] = n.target(*args, **kwargs)
        elif n.op == "call_method":
            memo[n] = getattr(args[0], str(n.target))(*args[1:], **kwargs)
        if n is target:
            break


@functools.cache
def _classes() -> tuple[type, type]:
    import torch
    import torch.fx
    from torch.fx.proxy import TraceError

    class SizeProxy(torch.fx.Proxy):
        """A proxy whose Python number, where one is asked for, is its size at the input shape."""

        def __int__(self) -> int:
            return int(self.tracer.concrete(self, "int"))  # type: ignore[attr-defined]

        def __index__(self) -> int:
            return operator.index(self.tracer.concrete(self, "int"))  # type: ignore[attr-defined]

        def __float__(self) -> float:
            return float(self.tracer.concrete(self, "float"))  # type: ignore[attr-defined]

    class SizeTracer(torch.fx.Tracer):
        """Module-level leaf tracing (every child a call) whose size tests are computed."""

        def __init__(self, input_shape: tuple[int, ...] | None):
            super().__init__()
            self.input_shape = input_shape  # the module's input, one tensor's (C, H, W); None: another kind
            self.tests: list[str] = []  # `x.shape[-2] < 7 is True`, in the order traced
            self.memo: dict[int, dict[Any, Any]] = {1: {}, 2: {}}
            self.evaluating = False

        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return True

        def proxy(self, node: Any) -> Any:
            return SizeProxy(node, self)

        def to_bool(self, obj: Any) -> bool:
            return bool(self.concrete(obj, "bool"))

        def concrete(self, proxy: Any, how: str) -> Any:
            node = proxy.node
            if self.input_shape is None or not is_size(node):
                if how == "bool":
                    raise TraceError("symbolically traced variables cannot be used as inputs to control flow")
                raise TypeError(f"{how}() of a traced value ({node.name}) that is no size of a tensor")
            value = self.value(node, {"bool": bool, "int": int, "float": float}[how])
            self.tests.append(f"{text(node)} is {value}" if how == "bool" else f"{how}({text(node)}) is {value}")
            return value

        def value(self, node: Any, cast: Any) -> Any:
            """The value of the size node `node` at the input shape, the same for a batch of 1 and
            of 2 (TraceError otherwise)."""
            assert self.input_shape is not None
            if self.evaluating:  # a value asked for while the nodes run: they are not plain tensor code
                raise TraceError(f"a test of {text(node)} inside the run that computes another")
            try:
                self.evaluating = True
                with torch.no_grad():
                    values = [cast(_evaluate(self.root, node, self.input_shape, b, self.memo[b])) for b in (1, 2)]
            except Exception as e:
                raise TraceError(f"a test of {text(node)} that its forward's nodes cannot compute ({type(e).__name__}: {e})") from None
            finally:
                self.evaluating = False
            if values[0] != values[1]:
                raise TraceError(f"a test of {text(node)}, which depends on the batch size (a spec fixes only the input's shape)")
            return values[0]

    return SizeProxy, SizeTracer


def tracer(input_shape: tuple[int, ...] | None) -> Any:
    """A torch.fx tracer (every child module a call) that computes the size tests of a forward
    whose input is one tensor of (C, H, W) `input_shape`; None: no size test is computed."""
    return _classes()[1](input_shape)


def _number(value: Any) -> Any:  # a torch.Size is a tuple of ints
    return tuple(int(v) for v in value) if isinstance(value, tuple) else value


def fold(graph: Any, tracer: Any) -> None:
    """A size value a call takes as an argument (F.pad's amounts from a 'same' padding rule, a
    pool's window) becomes its number at the input shape, recorded as a test is: archc's layers
    take numbers. Kept symbolic: the size arithmetic itself, F.interpolate's size (archc's
    `resize: {like: x}`, taps.py) and a view's or reshape's shape (patterns.py reads those off
    the shapes). A value that differs between batches of 1 and 2 stays, and is refused later."""
    import torch
    import torch.fx
    import torch.nn.functional as F
    from torch.fx.proxy import TraceError

    if tracer.input_shape is None:
        return
    asserted = False
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is torch._assert and node.args and is_size(node.args[0]):
            try:  # an assertion (SKNet's `_assert(x.shape[1] == num_paths)`) takes no branch and gives no number
                holds = tracer.value(node.args[0], bool)
            except TraceError:
                continue
            if holds and not node.users:  # it holds at this input: nothing to keep (one that fails stays, and is refused)
                graph.erase_node(node)
                asserted = True
            continue
        if node.op not in ("call_function", "call_method", "call_module") or is_size(node) or node.target is F.interpolate:
            continue
        if node.op == "call_method" and node.target in ("view", "reshape", "expand"):
            continue
        folded = False

        def number(arg: Any) -> Any:
            nonlocal folded
            if not is_size(arg):
                return arg
            try:
                value = tracer.value(arg, _number)
            except TraceError:
                return arg
            folded = True
            return value

        node.args, node.kwargs = torch.fx.node.map_arg((node.args, node.kwargs), number)
        if folded:
            tracer.tests.append(call_text(node))
    if asserted:
        prune(graph)


def prune(graph: Any) -> None:
    """Remove the size reads and their arithmetic that nothing reads (a computed test's)."""
    for node in reversed(list(graph.nodes)):
        if not node.users and node.op != "output" and is_size(node):
            graph.erase_node(node)


def describe(found: dict[str, tuple[str, tuple[int, ...], list[str]]], shape: tuple[int, ...]) -> tuple[str, list[str]]:
    """The spec's `doc:` and comment lines for the size values computed (found: path -> class,
    its input, tests), instances with the same tests on the same input on one line; ("", [])
    where there are none."""
    if not found:
        return "", []
    groups: dict[tuple[str, tuple[int, ...], tuple[str, ...]], list[str]] = {}
    for path, (cls, size, tests) in found.items():
        groups.setdefault((cls, size, tuple(tests)), []).append(path or "model")
    at = "x".join(map(str, shape))
    wheres = [paths[0] + (f" and {len(paths) - 1} more" if len(paths) > 1 else "") for paths in groups.values()]
    classes: dict[str, list[str]] = {}
    for path, (cls, _, _) in found.items():
        classes.setdefault(cls, []).append(path or "model")
    named = [f"{cls} ({paths[0] if len(paths) == 1 else f'{len(paths)} modules'})" for cls, paths in classes.items()]
    doc = f"Imported at input {at}, where the forwards of {_listed(named)} read their input's size as Python values (tests, numbers): exact at this input only."
    lines = [f"traced at input {at}, where these forwards read their input's size as Python values; the spec has the branches and numbers they gave there (exact at this input only):"]
    for ((cls, size, tests), paths), where in zip(groups.items(), wheres):
        lines.append(f"  {where} ({cls}, input {'x'.join(map(str, size))}): {'; '.join(tests)}")
    return doc, lines


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
