"""Run the IR itself: evaluate the graph's nodes in order, each with the generated PyTorch
model's module at the node's id (module paths are node ids) or, for ops without a module,
the expression the op's own emitter writes. The result is the function the IR describes,
so comparing it with the model's `forward` checks the wiring the code was printed with
against the wiring archc counts and verifies (a differential test's third party)."""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the name generated code uses
from torch import nn

from archc.backends.common import literal
from archc.backends.torch import concrete_args
from archc.backends.torch_blocks import layer_module
from archc.code import flat
from archc.ir.graph import Graph


def run_ir(graph: Graph, model: nn.Module, namespace: dict[str, Any], x: torch.Tensor) -> Any:
    """The IR's output for `x` (a dict for a model with several outputs); `namespace` is the
    generated module's (its helper classes)."""
    ns = {**namespace, "torch": torch, "F": F, "nn": nn}
    modules = dict(model.named_modules())
    shapes = {"input": graph.input_shape, **{n.id: n.shape for n in graph.nodes}}
    values: dict[str, torch.Tensor] = {"input": x}
    for node in graph.nodes:
        args = [values[i] for i in node.inputs]
        op = node.op
        if op.MERGE and op.module_free():
            names = [f"v{k}" for k in range(len(args))]
            flats = [not shapes[i].spatial for i in node.inputs]
            values[node.id] = eval(op.torch_merge(names, flats), ns, dict(zip(names, args)))  # type: ignore[attr-defined]
            continue
        if op.EXPRESSION:
            names = [f"v{k}" for k in range(len(args))]
            source = flat(op.torch_expr("v0", op.with_reads(concrete_args(op, {}), names)))
            values[node.id] = eval(source, ns, dict(zip(names, args)))
            continue
        if op.PARAMETER:
            module: Any = model.get_parameter(node.id)
        else:
            module = modules.get(node.id) or modules.get(re.sub(r"_\d+$", "", node.id))
            if module is None:  # a weightless op the code applies without a module of this name
                shape = shapes[node.inputs[0]]
                code = layer_module(op.kind, concrete_args(op, {}), literal(shape.c), not shape.spatial, False)
                module = eval(flat(code), ns)
        local = {"m": module, "v0": args[0].clone()}  # in-place activations must not touch other readers' input
        more = [f"v{k}" for k in range(1, len(args))] if op.MERGE else []  # a merge with weights reads them all
        local.update(zip(more, args[1:]))
        local["out"] = eval(op.torch_apply("m", ", ".join(("v0", *more)), concrete_args(op, {})), ns, local)
        for line in op.torch_after("out"):
            exec(line, ns, local)
        values[node.id] = local["out"]
    if graph.outputs:
        return {o.key: values[o.node] for o in graph.outputs}
    return values[graph.body[-1].output]
