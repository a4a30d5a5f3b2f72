"""Lists of tensors passed between modules (timm's SelecSLS: a block takes `[x]` or
`[x, skip]` and returns `[out, out]` or `[out, skip]`, an nn.Sequential subclass runs the
blocks in a chain, and a module returns the list's first tensor).

A list is no tensor of a spec, so the import follows each list's elements to the entries
that computed them. A module called with a list is traced with one placeholder per element;
what it returns (a list, or one tensor) must be, element by element, either the one tensor
it computes or one of its inputs passed on. It is then a block kind with one output and one
input per element it reads (docs/spec.md, "Block kinds with several inputs"), and its
parent reads each element it passes on where that element was computed. A module that only
passes an input on (`return x[0]`) is no entry at all. A module that calls its children in
order, each on what the one before returned (an nn.Sequential in all but its forward), is
the `modules:` container of them, whose entries read earlier ones by number
(`from: ["1", "0"]`), with the keys the original's (`features.1.conv1.0.weight`).

The same holds of a call with several tensors (timm's DLA: `self.tree1(x, shortcut)`,
`self.root([x2, x1] + children)`, `self.tree2(x1, None, children)`): the module is traced as
the call gives its arguments (tensors, lists of them, constants), and is a block kind with
an input per tensor it reads, named after its parameters (`shortcut`, `children0`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from archc.importer.ops import Unsupported

Call = list[tuple[str, Any]]  # forward's parameters as one call gives them: None a tensor, n a list of n, (value,) a constant


def concrete(module: Any, call: Call | None, settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """The concrete arguments that trace `module` as `call` calls it: one fx placeholder per
    tensor, a list of them for a list (fx flattens it), constants as given; and its settings
    (trace._settings) for the parameters the call leaves out."""
    if call is None:
        return settings
    import torch.fx

    out = dict(settings or {})
    for p, kind in call:
        out[p] = torch.fx.PH if kind is None else [torch.fx.PH] * kind if isinstance(kind, int) else kind[0]
    return out


def leaf_names(call: Call) -> list[str]:
    """The names of a call's tensors, in order: a tensor parameter's own (`shortcut`; `x0`
    where the name is the generated code's, as `x` is), a list's elements numbered (`x0`, `x1`)."""
    from archc.spec.types import _identifier

    def plain(p: str) -> str:
        try:
            return _identifier(p)
        except ValueError:
            return f"{p}0"

    return [n for p, kind in call for n in ([plain(p)] if kind is None else [f"{p}{k}" for k in range(kind)] if isinstance(kind, int) else [])]


def hook(tracer: Any) -> Callable[..., None]:
    """A forward pre-hook (with kwargs) that records the shapes of every tensor a module is
    called with, in the order of its forward's parameters, lists flattened."""
    import torch

    def record(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if id(module) in tracer.leaves:
            return
        try:
            bound = inspect.signature(type(module).forward).bind(module, *args, **kwargs)
        except (TypeError, ValueError):
            return
        shapes = []
        for v in list(bound.arguments.values())[1:]:
            for t in v if isinstance(v, (list, tuple)) else [v]:
                if isinstance(t, torch.Tensor):
                    shapes.append(tuple(t.shape[1:]))
        tracer.leaves[id(module)] = shapes

    return record


def outputs(graph: Any, what: str, returns_list: bool, names: list[str]) -> tuple[tuple[int, ...], tuple[int | None, ...]]:
    """A graph traced on a list (see concrete): (the elements its computation reads, what each
    element of its result is: None for its own tensor, k for its input k passed on). The
    graph is rewritten to return its own tensor, its placeholders named `x0`, `x1` (for
    trace._entries) where it reads several, and the ones it does not read removed."""
    import torch.fx

    placeholders = [n for n in graph.nodes if n.op == "placeholder" and not _guarded(n)]  # not a constant's
    if len(placeholders) != len(names):
        raise Unsupported(f"{what}: forward reads {len(placeholders)} inputs where it is called with {len(names)} tensors")
    (out,) = [n for n in graph.nodes if n.op == "output"]
    leaves = out.args[0] if isinstance(out.args[0], (list, tuple)) else [out.args[0]]
    if not all(isinstance(leaf, torch.fx.Node) for leaf in leaves) or (not returns_list and len(leaves) != 1):
        raise Unsupported(f"{what}: forward returns something other than tensors it computes or was given")
    own = list(dict.fromkeys(leaf for leaf in leaves if leaf not in placeholders))
    if len(own) > 1:
        raise Unsupported(f"{what}: forward returns {len(own)} tensors it computes in a list, where a block gives one")
    passes = tuple(None if leaf not in placeholders else placeholders.index(leaf) for leaf in leaves)
    read = tuple(k for k, p in enumerate(placeholders) if any(u is not out for u in p.users))
    out.args = (own[0] if own else placeholders[passes[0]],)  # type: ignore[index]
    graph._codegen = torch.fx.graph.CodeGen()  # the list's pytree form is gone with the list
    for k, p in enumerate(placeholders):
        if k not in read and not (not own and passes == (k,)):
            graph.erase_node(p)
        elif len(read) > 1:
            p.meta["archc_input"] = names[k]
    return read, passes


def _guarded(node: Any) -> bool:
    """A placeholder of a constant the trace fixed, read only by fx's checks of its value
    (trace._drop_guards removes them)."""
    import torch
    from torch.fx._symbolic_trace import _assert_is_none

    def check(u: Any) -> bool:
        return u.op == "call_function" and (u.target is _assert_is_none or u.target is torch._assert) and not u.users

    return bool(node.users) and all(check(u) or u.users and all(check(w) for w in u.users) for u in node.users)


def chain(module: Any, n: int) -> list[tuple[str, Any]] | None:
    """The children of a module whose forward, traced on a list of n tensors, calls each
    child once in order, the first on the whole list and each later on what the one before
    returned, and returns the last's result; None for any other module."""
    import torch.fx

    class LeafTracer(torch.fx.Tracer):
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return True

    children = list(module.named_children())
    if not children:
        return None
    try:
        graph = LeafTracer().trace(module, concrete_args=concrete(module, [(_first(module), n)], None))
    except Exception:
        return None
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    body = [node for node in graph.nodes if node.op not in ("placeholder", "output")]
    (out,) = [node for node in graph.nodes if node.op == "output"]
    if [str(node.target) for node in body] != [k for k, _ in children] or any(node.op != "call_module" or node.kwargs for node in body):
        return None
    first = body[0].args
    if len(first) != 1 or not isinstance(first[0], (list, tuple)) or list(first[0]) != placeholders:
        return None
    if any(later.args != (earlier,) for earlier, later in zip(body, body[1:])):
        return None
    result = out.args[0]
    return children if (result if not isinstance(result, (list, tuple)) else list(result)) in (body[-1], [body[-1]]) else None


def call(
    tracer: Any, node: Any, child: Any, path: str, target: str, flow: dict[Any, tuple[str, ...]], name_of: Callable[[Any], str]
) -> tuple[Any, tuple[str, ...] | None, str | None] | None:
    """A call of a module with a list of tensors, in a parent's traced forward: None where the
    call is no such call; else (the parent's entry for it, or None where it only passes an
    input on; the elements of the list it returns, None where it returns a tensor; the name
    that tensor has where it is no entry). `flow` maps the parent's list-valued nodes to the
    names of their elements."""
    from archc.importer.trace import Entry, Group

    found = arguments(node, child, flow, name_of, id(child) in tracer.returns)
    if found is None:
        return None
    spec, elements = found
    children = chain(child, len(elements)) if id(child) in tracer.returns and len(spec) == 1 and isinstance(spec[0][1], int) else None
    if children is None:
        entry, out, alias = block(tracer, child, path, spec, elements)
        if entry is not None:
            entry.name = target
        return entry, own_name(out, target), alias
    if not target.isidentifier():
        raise Unsupported(f"{path}: {type(child).__name__} passes lists between its entries, which need a name to be read by")
    entries: list[Any] = []
    inside = elements
    for k, (key, grandchild) in enumerate(children):
        entry, out, _ = block(tracer, grandchild, f"{path}.{key}", [(_first(grandchild), len(inside))], inside)
        if entry is None or out is None:
            raise Unsupported(f"{path}.{key}: {type(grandchild).__name__} in a chain of lists takes a list and does not return one")
        previous = str(k - 1) if k else None
        if previous is not None and entry.src == previous:
            entry.src = None
        entry.name = None
        entries.append(entry)
        inside = own_name(out, str(k))  # type: ignore[assignment]
    ids = {str(k) for k in range(len(entries))}
    last = str(len(entries) - 1)  # the container's own tensor, read by its name
    out = tuple(target if name == last else f"{target}.{name}" if name in ids else name for name in inside)
    first = entries[0].src
    src = first if isinstance(first, str) else None  # the container reads what its first entry reads
    if isinstance(first, str):
        entries[0].src = None
    modules = any(e.src is not None for e in entries)  # a plain list where each reads the one before
    group = Group(entries, modules=modules)
    return Entry(target, group, src, channels=tracer._channels(child)), out, None


def arguments(node: Any, child: Any, flow: dict[Any, tuple[str, ...]], name_of: Callable[[Any], str], returns: bool) -> tuple[Call, tuple[str, ...]] | None:
    """A call's parameters (see Call) and the names of its tensors, where it passes a list
    (one a module returned, one of two or more tensors, or any that the module returns a list
    for) or several tensors; None for a call of one tensor (trace._entries' own case)."""
    import torch.fx

    try:
        bound = inspect.signature(type(child).forward).bind(child, *node.args, **node.kwargs)
    except (TypeError, ValueError):
        return None
    spec: Call = []
    elements: list[Any] = []  # names, or fx nodes named once the call is known to be one of these
    listed = tensors = 0
    for p, v in list(bound.arguments.items())[1:]:
        if isinstance(v, torch.fx.Node) and v in flow:
            spec.append((p, len(flow[v])))
            elements += flow[v]
            listed += 2
        elif isinstance(v, torch.fx.Node):
            spec.append((p, None))
            elements.append(v)
            tensors += 1
        elif isinstance(v, (list, tuple)) and all(isinstance(t, torch.fx.Node) and t not in flow for t in v):
            spec.append((p, len(v)))
            elements += list(v)
            listed += 2 if len(v) > 1 or returns else 1 if v else 0
        elif v is None or isinstance(v, (bool, int, float, str)):
            spec.append((p, (v,)))
        else:
            return None
    if listed < 2 and tensors + listed < 2:
        return None
    return spec, tuple(e if isinstance(e, str) else name_of(e) for e in elements)


def _first(module: Any) -> str:
    return list(inspect.signature(type(module).forward).parameters)[1]


def block(tracer: Any, module: Any, path: str, spec: Call, elements: tuple[str, ...]) -> tuple[Any, tuple[str, ...] | None, str | None]:
    """A module called with the tensors named `elements` (as `spec` gives them): (its entry,
    unnamed; the elements of the list it returns, or None for a tensor; the name of the tensor
    it passes on where it computes nothing)."""
    from archc.importer.trace import Entry, Instance

    shapes = tracer.leaves.get(id(module))
    if shapes is None or len(shapes) != len(elements):
        raise Unsupported(f"{path}: {type(module).__name__} is called with {len(elements)} tensors in one place and another number elsewhere")
    tracer.list_calls[id(module)] = spec
    described = tracer.describe(module, path)
    if not isinstance(described, Instance) or described.reads is None:
        raise Unsupported(f"{path}: {type(module).__name__} takes a list of tensors, not as a block")
    returns = id(module) in tracer.returns
    if not described.entries:  # `return x[0]`: no entry
        (k,) = described.passes
        if returns:
            raise Unsupported(f"{path}: {type(module).__name__} returns its input list, computing nothing")
        return None, None, elements[k]
    reads = described.reads
    if reads:
        described.in_channels = shapes[reads[0]][0]
    if len(reads) > 1:
        names = leaf_names(spec)
        described.inputs = {names[k]: shapes[k][0] for k in reads}
    src: Any = tuple(elements[k] for k in reads) if len(reads) > 1 else elements[reads[0]] if reads else None
    entry = Entry(None, described, src, channels=described.in_channels)
    own = "\0"
    out = tuple(own if p is None else elements[p] for p in described.passes) if returns else None
    return entry, out, None


def own_name(out: tuple[str, ...] | None, name: str) -> tuple[str, ...] | None:
    """The elements of a block's result, its own tensor named `name`."""
    return None if out is None else tuple(name if e == "\0" else e for e in out)


_WEIGHTLESS = {"maxpool", "avgpool", "adaptive_avgpool", "identity", "dropout"}


def unread(entries: list[Any], outputs: dict[str, str]) -> list[Any]:
    """`entries` without the weightless layers whose tensor nothing reads: where a block
    does not read an input it is called with (timm's DlaTree passes its `shortcut` to a tree
    that makes its own), the layer that computed it is dead code, which a spec refuses. Pools,
    not activations: an in-place activation whose result is unread still changes its input."""
    from archc.importer.trace import Group, Layer, Merge

    def reads(items: list[Any]) -> set[str]:
        found: set[str] = set()
        for e in items:
            names = [e.src] if isinstance(e.src, str) else list(e.src or ())
            names += e.node.inputs if isinstance(e.node, Merge) else []
            names += [e.node.args["like"]] if isinstance(e.node, Layer) and isinstance(e.node.args.get("like"), str) else []
            found |= {n.split(".")[0] for n in names} | set(names)
            if isinstance(e.node, Group):
                found |= reads(e.node.entries)
        return found

    read = reads(entries) | set(outputs.values()) | {n.split(".")[0] for n in outputs.values()}
    kept = []
    for k, e in enumerate(entries):
        dead = (
            isinstance(e.node, Layer) and e.node.kind in _WEIGHTLESS
            and e.name is not None and e.name not in read and k + 1 < len(entries) and entries[k + 1].src is not None
        )  # fmt: skip
        if not dead:
            kept.append(e)
    return kept
