"""The PyTorch backend's module lists (`parallel:`, torchvision's nn.ModuleList of ASPP's
`convs`) and numbered block kinds with expressions among their modules (torchvision's
ASPPPooling, an nn.Sequential subclass whose forward resizes back)."""

from __future__ import annotations

from collections.abc import Callable

from archc import ops
from archc.backends import common
from archc.code import LINE, Call, Code, Gen, Seq, call, render
from archc.ir.graph import BlockType, SymGroup, SymItem, SymLayer


class ListEmission:
    """Module lists in archc.backends.torch.TorchEmitter (a base class of it): it builds the
    modules of their paths with the emitter's own layer, block and forward code."""

    needs_ordered_dict: bool
    _sym_module: Callable[[SymLayer, common.Hoister, bool], Code]  # a layer's module
    _nested: Callable[..., Code]  # a block or stage inside a block kind
    _forward_lines: Callable[[common.Step, common.Hoister], list[str]]  # an item in forward

    def _path_module(self, path: SymItem, hoist: common.Hoister) -> Code:
        """A path of a module list: a layer's module, a list's nn.Sequential or a block. Nothing
        else reads its input, so only a list's later entries may work in place."""
        if isinstance(path, SymLayer):
            return flattened(path.kind, self._sym_module(path, hoist, False))
        if not isinstance(path, SymGroup):
            return self._nested(path, hoist)
        modules: dict[str, Code] = {}
        for step in common.plan(path.children, "x", "out", set()):
            child = step.item
            modules[child.name] = self._sym_module(child, hoist, step.inplace) if isinstance(child, SymLayer) else self._nested(child, hoist)
        if path.positional:
            return Call("nn.Sequential", tuple(modules.values()))
        self.needs_ordered_dict = True
        return call("nn.Sequential", call("OrderedDict", **modules))

    def _sequence_forward(self, block: BlockType, hoist: common.Hoister) -> list[str]:
        """The forward of a numbered block kind with expressions among its modules: all the
        modules in a row are nn.Sequential's own forward, others each by its index; each
        expression in its place."""
        steps = common.plan(block.layers, "x", "out", set())
        count = sum(not free(step.item) for step in steps)
        lines: list[str] = []
        run: list[common.Step] = []
        first = 0  # the index of the run's first module
        for step in [*steps, None]:
            if step is not None and not free(step.item):
                run.append(step)
                continue
            if run and len(run) == count:
                lines.append(f"{run[-1].dst} = super().forward({run[0].srcs[0]})")
            else:  # one line per module, as torchvision's forward reads
                lines += [f"{s.dst} = self[{first + k}]({s.srcs[0]})" for k, s in enumerate(run)]
            first, run = first + len(run), []
            if step is not None:
                lines += self._forward_lines(step, hoist)
        return [*lines, f"return {steps[-1].dst}"]


def parallel_lines(name: str, merge: str, flats: tuple[bool, ...], srcs: tuple[str, ...], dst: str, indent: str) -> list[str]:
    """`dst = ` a module list applied, as lines at `indent` (returned without it), split as ruff
    format splits them: torchvision's ASPP loop as a comprehension where every path reads one
    tensor and the merge is a concatenation, else each path by its index."""
    if merge == "concat" and len(set(srcs)) == 1:
        each = "path" if srcs[0] != "path" else "path_"
        code: Code = Call("torch.cat", (Gen(f"{each}({srcs[0]})", f"for {each} in self.{name}", brackets="[]"), "1"))
    else:
        applied = [f"self.{name}[{k}]({src})" for k, src in enumerate(srcs)]
        if merge == "concat":
            code = Call("torch.cat", (Seq(tuple(applied)), "1"))
        else:  # a chain of + or *: the terms hold neither
            text = ops.KINDS[merge].torch_merge(applied, list(flats))  # type: ignore[attr-defined]
            if len(f"{indent}{dst} = {text}") <= LINE:
                return [f"{dst} = {text}"]
            sign = " + " if merge == "add" else " * "
            terms = text.split(sign)
            return [f"{dst} = (", f"    {terms[0]}", *(f"    {sign.strip()} {t}" for t in terms[1:]), ")"]
    return [line[len(indent):] for line in render(code, indent, f"{dst} = ")]


def flattened(kind: str, module: Code) -> Code:
    """A module that forward follows with a flatten (global_avgpool), as an entry of a container."""
    return call("nn.Sequential", module, call("nn.Flatten")) if kind in ops.KINDS and ops.KINDS[kind].torch_after("x") else module


def free(item: SymItem) -> bool:
    """An item of a block kind that is code in `forward`, no module (a merge or an expression)."""
    return isinstance(item, SymLayer) and (ops.KINDS[item.kind].MERGE or ops.KINDS[item.kind].EXPRESSION)
