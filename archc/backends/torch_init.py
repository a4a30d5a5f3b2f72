"""The PyTorch backend's initialisation code: the spec's `init` rules (archc.ops.init), as
torchvision writes them in a model's `__init__`: one loop over `self.modules()` with a branch
per layer kind, then the layers whose rules differ from their kind's."""

from __future__ import annotations

import ast
from typing import Any

from archc import ops
from archc.backends import common
from archc.code import Code, flat, render
from archc.errors import SpecError
from archc.ir.graph import (
    BlockType,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymStage,
)
from archc.ops import init


class InitEmission:
    """The init emission of archc.backends.torch.TorchEmitter (a base class of it): it reads
    the graph and the module names, and notes the helpers and imports its code needs."""

    graph: Graph
    names: dict[str, str]  # block kind -> its class name
    helpers: set[str]
    needs_math: bool

    def init_lines(self, indent: str) -> list[str]:
        """The spec's initialisation, as torchvision writes it: a loop over `self.modules()`
        with one branch per layer kind (its `defaults:` rules; torch_default is what the
        constructor already did, so it adds nothing), then the layers that differ from their
        kind: in a block kind, a loop over its instances (torchvision's zero_init_residual);
        at model level, one line each."""
        kinds: dict[str, dict[str, set[Any]]] = {}  # kind -> facts about its layers: each tensor's presence, ranks
        for node in self.graph.nodes:
            if node.op.TENSORS:  # a depthwise conv is an nn.Conv2d: the convs' branch
                facts = kinds.setdefault(init.section(node.op.kind), {"weight": set(), "bias": set(), "ranks": set()})
                for role, tensor in node.op.TENSORS.items():
                    facts[role].add(bool(getattr(node.op, tensor.switch)) if tensor.switch else True)
                facts["ranks"].add(node.shape.rank)
        same: dict[tuple[tuple[int, str], ...], tuple[list[str], list[tuple[int, Code]]]] = {}  # body -> classes, body
        for kind, facts in kinds.items():
            rules = self.graph.init(kind)
            body: list[tuple[int, Code]] = []
            for role, tensor in ops.KINDS[kind].TENSORS.items():
                lines = init.torch_lines(getattr(rules, role), role, f"m.{role}", kind=kind)
                if (facts[role] == {False} and not tensor.subclass_when_off) or not lines:
                    continue
                if facts[role] != {True}:  # some layers of the kind leave the tensor out
                    body += [(1, f"if m.{role} is not None:"), *((2, line) for line in lines)]
                else:
                    body += [(1, line) for line in lines]
            if not body:
                continue
            self._note_init(rules)
            key = tuple((depth, flat(code)) for depth, code in body)
            same.setdefault(key, ([], body))[0].extend(ops.KINDS[kind].torch_init_classes(facts["ranks"]))
        branches: list[tuple[int, Code]] = []  # (depth, statement)
        for classes, body in same.values():  # kinds with the same statements share a branch (convnext.py's)
            test = classes[0] if len(classes) == 1 else f"({', '.join(classes)})"
            branches += [(0, f"{'elif' if branches else 'if'} isinstance(m, {test}):"), *body]
        lines: list[tuple[int, Code]] = [(0, "for m in self.modules():"), *((d + 1, c) for d, c in branches)] if branches else []
        blocks: list[tuple[int, Code]] = []
        for block in self.graph.blocks:
            overrides = self._block_overrides(block)
            if overrides:
                blocks += [(0, f"{'elif' if blocks else 'if'} isinstance(m, {self.names[block.name]}):"), *((d + 1, c) for d, c in overrides)]
        if blocks:
            lines += [(0, "for m in self.modules():"), *((d + 1, c) for d, c in blocks)]
        lines += [(0, c) for c in self._model_overrides(self.graph.body, "self")]
        return [out for depth, code in lines for out in _statement(code, indent + "    " * depth)]

    def _note_init(self, rules: Any) -> None:
        for rule in (rules.weight, rules.bias):
            self.helpers |= {init.TORCH_HELPER} if init.torch_needs_helper(rule) else set()
            self.needs_math |= init.torch_needs_helper(rule) or init.needs_math(rule)

    def _overrides(self, rules: Any, kind: str, path: str, present: dict[str, bool]) -> list[Code]:
        """Statements for one layer whose rules differ from its kind's (`present`: whether it
        has each tensor)."""
        default = self.graph.init(init.section(kind))
        lines: list[Code] = []
        for role in ("weight", "bias"):
            rule = getattr(rules, role)
            if present[role] and rule != getattr(default, role):
                lines += init.torch_lines(rule, role, f"{path}.{role}", weight=f"{path}.weight", kind=kind)
                self._note_init(type(rules)(rule, rule))
                self.needs_math |= rule.name == "torch_default" and init.tensor(kind, role).torch_default is None
        return lines

    def _model_overrides(self, items: tuple[Inst, ...], path: str, positional: bool = False) -> list[Code]:
        lines: list[Code] = []
        for item in items:
            here = f"{path}[{item.name}]" if positional else f"{path}.{item.name}"
            if isinstance(item, GroupInst):
                lines += self._model_overrides(item.items, here, item.positional)
            elif isinstance(item, LayerInst) and item.op.TENSORS:
                op = item.op
                present = {role: bool(getattr(op, t.switch)) if t.switch else True for role, t in op.TENSORS.items()}
                lines += self._overrides(op.init, op.kind, here, present)  # type: ignore[attr-defined]
        return lines

    def _block_overrides(self, block: BlockType) -> list[tuple[int, Code]]:
        """Statements for the layers of a block kind whose rules differ from their kind's, each
        reached from the instance `m`, with their depth."""
        lines: list[tuple[int, Code]] = []
        inline = block.name in common.inline_only(self.graph)

        def visit(layer: SymItem, path: str | None, where: str) -> None:
            nonlocal lines
            op = ops.ALL.get(layer.kind) if isinstance(layer, SymLayer) else None
            if op is None or not op.TENSORS:
                return
            rules = layer.arg("init").value  # type: ignore[attr-defined]
            present = {}
            for role, tensor in op.TENSORS.items():
                switch = layer.arg(tensor.switch) if tensor.switch in dict(layer.args) else ast.Constant(True)  # type: ignore[union-attr]
                present[role] = not (isinstance(switch, ast.Constant) and switch.value is False)
            body = self._overrides(rules, layer.kind, path or "m", present)
            if not body:
                return
            if path is None or inline:
                raise SpecError(
                    f"block {block.name!r}, layer {where}: an init of its own is supported on the named layers of a "
                    "block kind and on entries of its lists before any conditional or repeated entry; give the "
                    "layer a name or set the rule in `defaults:`",
                    layer.where or self.graph.locate(f"block.{block.name}") or block.where,
                )
            if layer.condition is not None:
                lines += [(0, f"if {path} is not None:"), *((1, line) for line in body)]
            else:
                lines += [(0, line) for line in body]

        def group(children: tuple[SymItem, ...], base: str | None, positional: bool, where: str) -> None:
            static = base is not None  # entries after a conditional or repeated one have no fixed index
            k = -1  # the index of a numbered entry: an expression (a resize) has none, and no init
            for child in children:
                k += not (isinstance(child, SymLayer) and ops.ALL[child.kind].module_free())
                path = None if base is None else (f"{base}[{k}]" if static else None) if positional else f"{base}.{child.name}"
                if isinstance(child, SymGroup):
                    group(child.children, path if child.condition is None else None, child.positional, f"{where}{child.name}.")
                elif isinstance(child, SymParallel):  # an nn.ModuleList: `m.convs[0]`
                    group(child.children, path if child.condition is None else None, True, f"{where}{child.name}.")
                else:
                    visit(child, path if not (positional and child.condition is not None) else None, where + child.name)
                static &= child.condition is None and not isinstance(child, SymStage)

        if common.sequential(block):
            group(block.layers, "m", True, "")
        else:
            group((*block.layers, *block.after), "m", False, "")
        return lines


def _statement(code: Code, indent: str) -> list[str]:
    """A statement laid out as ruff does; a long assignment's value goes in parentheses."""
    if isinstance(code, str) and " = " in code and len(indent + code) > 88:
        target, value = code.split(" = ", 1)
        return [f"{indent}{target} = (", f"{indent}    {value}", f"{indent})"]
    return render(code, indent)
