"""Lowering: a validated spec becomes the graph IR.

The spec is walked once. A block kind becomes one function-like structure, its symbolic
form (`BlockType`: items whose arguments are expressions over its parameters and
`in_channels`), built once; every instance of it is that form specialised to its
arguments and input. The model's own list is the top function: typed the same way and
specialised once, to the model's parameters and input. The emitters print each kind's
code from its form and the model's from its instance, so what archc counts is what the
code builds.

- `context`: where lowering is (the file, the module path, names in scope) and the
  checks every list shares;
- `values`: literals and expressions, typed, with the layer defaults and the rules;
- `limits`: the bounds that keep a spec's cost bounded;
- `symbolic`: a block kind's symbolic form, and when each of its items exists;
- `specialise`: an instance of a block kind, from its symbolic form;
- `model`: the model's own list as the top function, its outputs and what build_model()
  takes; the bound on its size before anything is typed.

Shape rules and parameter counts live in the ops (`archc.ops`); lowering only applies
them and turns their complaints into located errors.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Iterator

from archc import ops
from archc.errors import Location, SpecError
from archc.ir.graph import (
    BlockInst,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    ParallelInst,
    StageInst,
    SymBlock,
    SymGroup,
    SymItem,
    SymParallel,
    SymStage,
)
from archc.lower import limits
from archc.lower.context import Ctx, LayerKey, State, numbered_model
from archc.lower.model import check_size, lower_top
from archc.lower.values import run_checks, typed_value
from archc.ops import Shape
from archc.spec import expr
from archc.spec import models as m
from archc.spec.loader import LoadedSpec


@expr.work_budget
def lower(spec: LoadedSpec) -> Graph:
    """Lower a loaded spec to the IR; raises SpecError for any mistake in the spec."""
    model = spec.model
    state = State(spec)
    scope: dict[str, expr.Value] = {}
    top = Ctx(spec.source, ("params",), (), scope, True)
    for name, raw in model.params.items():
        scope[name] = typed_value(raw, scope, top.where(name), "param", state=state, ref_ok=False)
    run_checks(model.checks, scope, Ctx(spec.source, ("checks",), (), scope, True), state)
    c, *size = model.input
    in_shape = Shape(c, tuple(size))
    if max(model.input) > limits.MAX_CHANNELS or in_shape.numel() > limits.MAX_ELEMENTS:
        raise SpecError(
            f"input {in_shape} exceeds the limits of {limits.MAX_CHANNELS} per dimension and {limits.MAX_ELEMENTS} values; "
            "raise archc.lower.limits.MAX_CHANNELS / MAX_ELEMENTS deliberately if you mean it",
            spec.locate("input"),
        )
    check_size(state, model.layers, {**scope, "in_channels": c}, ("layers",))
    body, out_shape = lower_top(state, scope, in_shape)
    if out_shape.last and not state.outputs:
        where = spec.locate("layers", len(model.layers) - 1)
        raise SpecError("the model ends with a map PyTorch holds channels-last; end with `permute: {to: channels_first}`", where)
    for output in state.outputs:
        if output.shape.last:
            raise SpecError(
                f"output {output.key!r} is a map PyTorch holds channels-last; name a layer after `permute: {{to: channels_first}}`",
                spec.locate("outputs", output.key),
            )
    readers = _readers(state)
    _check_outputs_read(state, body, readers)
    exposed = _exposed_params(state, scope, body, readers)
    body = tuple(_mark_exposed(item, exposed, state.param_refs) for item in body)
    graph = Graph(
        name=model.name,
        doc=model.doc,
        input_shape=in_shape,
        output_shape=state.outputs[0].shape if state.outputs else out_shape,
        params=tuple(scope.items()),
        exposed=tuple((p, scope[p]) for p in exposed),
        blocks=tuple(state.block_types.values()),
        body=body,
        nodes=tuple(state.nodes),
        inits=tuple((kind, state.init(kind)) for kind in _init_sections()),
        source=shlex.join([spec.path, *(a for o in spec.overrides for a in ("--set", o))]),
        sha256=spec.sha256,
        locations=_locations(state),
        outputs=tuple(state.outputs),
        class_name=model.class_,
        numbered=numbered_model(model.layers),
        inlined=tuple(state.inlined),
    )
    if any(spec.blocks[b.name].definition.deploy is not None for b in graph.blocks):  # part of the spec: checked here
        from archc.deploy import plan

        plan(spec, graph)
    return graph


def _readers(state: State) -> dict[str, list[str]]:
    """The nodes that read each node: the one record of who reads what, for the checks below."""
    readers: dict[str, list[str]] = {}
    for node in state.nodes:
        for source in node.inputs:
            readers.setdefault(source, []).append(node.id)
    return readers


def _check_outputs_read(state: State, body: tuple[Inst, ...], readers: dict[str, list[str]]) -> None:
    """Each later output of an instance of a kind with several is read (inside the kind, by a
    later layer, or as a model output): Keras builds only what an output depends on, so a tensor
    nothing reads would be a layer in PyTorch and none in Keras."""
    read = {*readers, *(o.node for o in state.outputs)}

    def walk(items: tuple[Inst, ...], path: tuple[str, ...]) -> None:
        for item in items:
            here = (*path, item.name)
            if isinstance(item, BlockInst):
                source = state.spec.blocks[item.block]
                for k, (o, node, _) in enumerate(item.more_out, start=1):
                    if node not in read:
                        raise SpecError(
                            f"{'.'.join(here)}.{o} is never read: output {o!r} of block {item.block!r} is read as "
                            f"`{item.name}.{o}` (`from:`, a merge, `outputs:`), or removed from the kind's `outputs`",
                            source.locate("outputs", k),
                        )
            walk(getattr(item, "children", None) or getattr(item, "items", None) or getattr(item, "instances", ()), here)

    walk(body, ())


def _locations(state: State) -> tuple[tuple[str, Location], ...]:
    """Where the names that reach generated code are written, for the backends' checks."""
    spec = state.spec
    out = [("name", spec.locate("name"))]
    if spec.model.class_ is not None:
        out.append(("class", spec.locate("class")))
    out += [(f"params.{p}", spec.locate("params", p)) for p in spec.model.params]
    for block in state.block_types:
        source = spec.blocks[block]
        out.append((f"block.{block}", source.source.locate_key(source.path)))
        if source.definition.class_ is not None:
            out.append((f"block.{block}.class", source.locate("class")))
        out += [(f"block.{block}.params.{p}", source.locate("params", p)) for p in source.definition.params]
        if source.definition.shortcuts:
            out.append((f"block.{block}.shortcut", source.locate("shortcut")))
    # the `defaults:` rules, for checks of the layers that take them from there (a projection shortcut)
    out += [(f"defaults.{kind}.init", spec.locate("defaults", kind, "init")) for kind in _init_sections()]
    return tuple(out)


def _exposed_params(state: State, scope: dict[str, expr.Value], body: tuple[Inst, ...], readers: dict[str, list[str]]) -> list[str]:
    """Model params that build_model() can take: those whose every use passes the param itself
    (not an expression of it) at model level
    - to a layer as its dropout `rate`; or
    - to a layer as its width (`units`, `filters`), or to a block instance or stage as a
      parameter that changes only channels (`_passed_on`), where nothing that reads the result,
      directly or not, depends on the channels it receives (the classifier, then resizes, merges
      and outputs: their code holds no literal that the param sets)."""
    free_after = _channel_free_after(state, readers)
    calls = dict(_walk(body))
    exposed = []
    for name, refs in state.param_refs.items():
        if name in state.pinned or isinstance(scope[name], bool):
            continue
        if all(
            (attr == "rate" or (attr in ("units", "filters") and free_after(where)))
            if state.top_kinds[idx] in ops.KINDS
            else free_after(where) and _passed_on(state, calls.get(where), attr, scope[name])
            for idx, attr, where in refs
        ):
            exposed.append(name)
    return exposed


def _passed_on(state: State, call: Inst | None, attr: str, value: expr.Value) -> bool:
    """Whether a block instance or stage takes `value` as its parameter `attr` as a layer takes
    a width: its kind's code is the same for every value (its constructor passes the argument
    on), the value keeps its type, leaves the kind's stride alone (and, in a stage of several
    instances, its output channels, which the next instance's call prints), and no shortcut of
    the kind or of a kind it calls is a switch that its instances set (`when: shape_changes`)."""
    inst = call.instances[0] if isinstance(call, StageInst) and call.instances else call
    if not isinstance(inst, BlockInst) or type(dict(inst.args)[attr]) is not type(value):
        return False
    kind = state.block_types[inst.block]
    chained = isinstance(call, StageInst) and len(call.instances) > 1  # each instance reads the one before
    trees = (kind.stride, kind.out_channels) if chained else (kind.stride,)
    return not any(attr in expr.free_names(tree) for tree in trees) and _switch_free(state, inst.block)


def _channel_free_after(state: State, readers: dict[str, list[str]]) -> Callable[[LayerKey], bool]:
    """Whether every node that reads the nodes of the model-level item at a module path, directly
    or not, is a model-level layer whose module does not depend on its input channels."""
    free = {path for path, kind in zip(state.top_paths, state.top_kinds) if kind in ops.KINDS and ops.KINDS[kind].CHANNEL_FREE}

    def check(where: LayerKey) -> bool:
        path = ".".join(where)
        seen = {n.id for n in state.nodes if n.id == path or n.id.startswith(path + ".")}
        todo = list(seen)
        while todo:
            for reader in readers.get(todo.pop(), ()):
                if reader not in seen:
                    if reader not in free:
                        return False
                    seen.add(reader)
                    todo.append(reader)
        return True

    return check


def _switch_free(state: State, block: str) -> bool:
    """Whether no shortcut of a block kind, or of a kind it calls (recursive kinds included), is
    built by a switch (a `when: shape_changes` shortcut with no condition over the parameters):
    which switches a kind's code takes depends on the instances' values."""
    seen, todo = {block}, [block]
    while todo:
        kind = state.block_types[todo.pop()]
        if any(sc.when != "always" and sc.condition is None for sc in kind.shortcuts):
            return False
        todo += _called_kinds((*kind.layers, *kind.after)) - seen
        seen |= set(todo)
    return True


def _called_kinds(items: tuple[SymItem, ...]) -> set[str]:
    out: set[str] = set()
    for item in items:
        if isinstance(item, (SymBlock, SymStage)):
            out.add(item.block)
        elif isinstance(item, (SymGroup, SymParallel)):
            out |= _called_kinds(item.children)
    return out


def _walk(items: tuple[Inst, ...], path: LayerKey = ()) -> Iterator[tuple[LayerKey, Inst]]:
    """Every model-level item with its module path, lists entered."""
    for item in items:
        here = (*path, item.name)
        yield here, item
        if isinstance(item, (GroupInst, ParallelInst)):
            yield from _walk(item.items, here)


def _mark_exposed(item: Inst, exposed: list[str], refs: dict[str, list[tuple[int, str, LayerKey]]], path: LayerKey = ()) -> Inst:
    """Record on each model-level layer, block instance and stage instance which of its
    arguments come from build_model()."""
    here = (*path, item.name)
    if isinstance(item, (GroupInst, ParallelInst)):
        items = tuple(_mark_exposed(child, exposed, refs, here) for child in item.items)
        return dataclasses.replace(item, items=items)
    marks = tuple(dict.fromkeys((attr, p) for p in exposed for _, attr, where in refs.get(p, []) if where == here))
    if not marks:
        return item
    if isinstance(item, StageInst):
        return dataclasses.replace(item, instances=tuple(dataclasses.replace(inst, exposed=marks) for inst in item.instances))
    if isinstance(item, (LayerInst, BlockInst)):
        return dataclasses.replace(item, exposed=marks)
    return item


def _init_sections() -> list[str]:
    """The `defaults:` sections that hold initialisation rules (`defaults.conv.init`, ...), as
    the spec models declare them: each weighted kind's rules, which its layers share unless
    they say (asking the op kinds would import every op module)."""
    return sorted(name for name, f in m.Defaults.model_fields.items() if "init" in getattr(f.annotation, "model_fields", {}))
