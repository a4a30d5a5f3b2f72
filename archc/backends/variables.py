"""The variables of a block's generated code, for both emitters: which variable holds each
tensor and which may be overwritten in place (`plan`), and the channel expressions named once
where several lines use them (`Hoister`)."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

from archc.code import INDENT, LINE
from archc.ir.graph import (
    LayerInst,
    SymBlock,
    SymGroup,
    SymItem,
    SymLayer,
    SymParallel,
    SymStage,
    container_results,
    flat_items,
    passed_on,
    path_variable,
    tapped_groups,
)
from archc.ops import KINDS
from archc.spec import expr
from archc.spec.types import LAYER_NAMES


@dataclass(frozen=True)
class Step:
    """One item of a list in a block kind's code: the variables it reads and writes."""

    item: SymItem
    srcs: tuple[str, ...]  # variables it reads (a merge reads several)
    dst: str  # the variable it writes
    passthrough: str  # the variable that holds its value where its condition fails
    inplace: bool  # its input is read by nothing else, so an activation may overwrite it
    taps: tuple[tuple[str, str], ...] = ()  # a group's entries read from outside it: (entry, variable)
    unpacked: tuple[str, ...] = ()  # an instance of a kind with several outputs: the later ones' variables (`_`: unread)

    @property
    def targets(self) -> str:
        """What the item assigns: `dst`, or `dst, logits` for a kind with several outputs."""
        return ", ".join((self.dst, *self.unpacked))


def plan(
    items: tuple, first: str, default: str, keep: set[str | None], first_safe: bool = False, keep_first: bool = True,  # type: ignore[type-arg]
    outputs: frozenset[str] = frozenset(), inputs: Sequence[str] = ("input",), reserved: frozenset[str] = frozenset(),
) -> list[Step]:
    """Variables for a list of items that read the previous tensor or named ones.

    A tensor that a later item reads by name gets a variable of that name; the others
    share `default` (`out`), so a plain sequence reads `out = self.conv1(x)`,
    `out = self.bn1(out)`, ... as torchvision's blocks do. `keep` names items whose
    output is read again elsewhere (a shortcut's input), so the next item must not
    work in place on it; `outputs`, items whose tensors the model returns (each keeps a
    variable of its own); `inputs`: the names of a block kind's several inputs, the first
    held in `first` and the others in variables of their names; `reserved`: the module-level
    names of the generated code that a variable must not shadow (Keras' block functions).
    """
    items = flat_items(items)  # a block kind's `modules:` containers opened (the model's are by flat_body)
    last = container_results(items)  # an output naming a container is its last entry's tensor
    outputs = frozenset(last.get(o, o) for o in outputs)
    keep = {*keep, *outputs}
    # a tensor needs a variable of its own when something other than the next item reads it,
    # or a merge reads it with other named tensors (`torch.cat([branch1, branch2], 1)`)
    after = {item.name: nxt.name for item, nxt in zip(items, items[1:])}
    named = {n for item in items for n in item.inputs if after.get(n) != item.name} - {*inputs}
    named |= {n for item in items if len(set(item.inputs) & named) > 0 for n in item.inputs} - {*inputs}
    named |= {p for item in items if (p := getattr(item, "passes", None)) and after.get(p) != item.name} - {*inputs}
    named |= set(outputs) - {*inputs}
    # a conditional item first sets its variable to what it passes on (`out = x`, then `if
    # self.l2 is not None:`), so a tensor it reads besides that one (a nested path's `from:`)
    # must not be held in that variable
    before = {nxt.name: item.name for item, nxt in zip(items, items[1:])}
    named |= {
        n for item in items if getattr(item, "condition", None) is not None
        for n in item.inputs if n != passed_on(item, before.get(item.name, inputs[0]))
    } - {*inputs}  # fmt: skip
    taps = tapped_groups(items, outputs)
    read = {n for item in items for n in item.inputs} | set(outputs)
    var = {inputs[0]: first, **{n: tensor_variable(n, reserved) for n in inputs[1:]}}
    prev, prev_safe = first, first_safe  # the block input is kept (skip and dense connections read it)
    prev_name = inputs[0]
    steps = []
    for item in items:
        srcs = tuple(var[n] for n in item.inputs) if item.inputs else (prev,)
        condition = getattr(item, "condition", None)
        dst = tensor_variable(item.name, reserved) if item.name in named else default
        safe = prev_safe if not item.inputs else False
        tapped = tuple((entry, tensor_variable(f"{item.name}.{entry}", reserved)) for entry in sorted(taps.get(item.name, ())))
        more = [f"{item.name}.{o}" for o in getattr(item, "more_outputs", ())]
        unpacked = tuple(tensor_variable(path, reserved) if path in read else "_" for path in more)
        steps.append(Step(item, srcs, dst, var[passed_on(item, prev_name)], safe, tapped, unpacked))
        var[item.name] = dst
        var.update(zip(more, unpacked))
        var.update({f"{item.name}.{entry}": v for entry, v in tapped})
        prev, prev_name = dst, item.name
        # where a conditional item is absent, its variable holds its input: as safe as that was
        prev_safe = dst not in named and (condition is None or safe) and item.name not in keep and (dst != first or not keep_first)
        prev_safe = prev_safe and not tapped  # its last entry's tensor may be a tap's
        if aliases(item):
            prev_safe = prev_safe and safe  # its input itself or a view of it: writing it writes the input
    return steps


def tensor_variable(name: str, reserved: frozenset[str] = frozenset()) -> str:
    """The variable of a tensor read by name: the layer's name, unless that is a number or
    a module-level name of the generated code (LAYER_NAMES); a tap `backbone.layer3` reads
    `backbone_layer3`, an entry of a container `fpn_inner_blocks_0`. A name in `reserved`
    (a module-level name of this backend's code, such as a Keras block function) is renamed too."""
    if "." in name:
        name = path_variable(name)
        return name if name not in reserved else f"out_{name}"
    return name if name.isidentifier() and name not in LAYER_NAMES and name not in reserved else f"out_{name}"


def aliases(item: object) -> bool:
    """A layer whose PyTorch output may be its input or a view of it (Op.ALIASES, EXPRESSION)."""
    if isinstance(item, SymLayer):
        op = KINDS[item.kind]
    elif isinstance(item, LayerInst):
        op = item.op
    else:
        return False
    return op.ALIASES or op.EXPRESSION


def width_trees(layer: SymItem) -> list[ast.expr]:
    """The channel expressions of an item that the Hoister may name."""
    if isinstance(layer, SymLayer):
        return [layer.in_channels, *(t for k, t in layer.args if k in ("filters", "units", "groups"))]
    if isinstance(layer, (SymGroup, SymParallel, SymBlock)):  # a block's width arguments are used where it is built
        return _widths(layer)
    return [layer.in_channels]


def _used_widths(layer: SymItem, in_channels: bool = True) -> list[ast.expr]:
    """The channel expressions that an item's code uses (a conv's input channels, not a relu's;
    in_channels=False: a backend whose layers infer their input channels, as Keras')."""
    if isinstance(layer, SymLayer):
        op = KINDS[layer.kind]
        takes = in_channels and not (op.CHANNEL_FREE or op.MERGE or op.EXPRESSION)
        return [layer.in_channels] * takes + [t for k, t in layer.args if k in ("filters", "units", "groups")]
    if isinstance(layer, (SymGroup, SymParallel)):
        return [t for child in layer.children for t in _used_widths(child, in_channels)]
    if isinstance(layer, SymBlock):
        return [layer.in_channels, *(t for _, t in layer.args)]
    return [layer.in_channels]


def _widths(layer: SymItem) -> list[ast.expr]:
    """Channel expressions of an item, a list's entries' included (for the Hoister)."""
    if isinstance(layer, (SymGroup, SymParallel)):
        return [layer.in_channels, *(t for child in layer.children for t in _widths(child))]
    if isinstance(layer, SymBlock):  # every argument: its code passes each (`Cna(c, out_channels=...)`)
        return [layer.in_channels, *(t for _, t in layer.args)]
    return width_trees(layer)


class Hoister:
    """Names the non-trivial channel expressions of a block that are used more than once."""

    def __init__(self, layers: tuple[SymLayer | SymBlock | SymStage, ...], taken: set[str], in_channels: bool = True):
        counts: dict[str, int] = {}
        first_owner: dict[str, str] = {}
        used = {expr.to_python(tree) for layer in layers for tree in _used_widths(layer, in_channels)}
        for layer in layers:
            for tree in _widths(layer):
                src = expr.to_python(tree)
                if not isinstance(tree, (ast.Name, ast.Constant)):
                    counts[src] = counts.get(src, 0) + 1
                    first_owner.setdefault(src, layer.name)
        self.names: dict[str, str] = {}
        for src, n in counts.items():
            if n > 1 and src in used:  # else every line with it is channel-free: no dead variable
                owner = first_owner[src]  # a positional entry's name is its number
                local = f"{owner}_channels" if owner.isidentifier() else f"channels_{owner}"
                while local in taken:  # a parameter of the same name
                    local += "_"
                taken.add(local)
                self.names[src] = local
        self.emitted: set[str] = set()

    def src(self, tree: ast.expr) -> str:
        """The expression's source, with its name if it has one, or with the names of the
        parts that are already defined (`a_channels // group_width`)."""
        text = expr.to_python(tree)
        if text in self.names or not self.emitted:
            return self.names.get(text, text)
        return expr.to_python(expr.replace_named(tree, {source: self.names[source] for source in self.emitted}))

    def condition(self, tree: ast.expr | None) -> str | None:
        """A condition as source, naming the expressions already defined in it
        (`if block_channels != in_channels:`)."""
        if tree is None:
            return None
        return expr.to_python(expr.replace_named(tree, {text: self.names[text] for text in self.emitted}))

    def definitions(self, trees: list[ast.expr], indent: str) -> list[str]:
        """`name = expression` at `indent` for each named expression not defined yet;
        one too long for a line is parenthesised, as ruff format writes it."""
        lines = []
        for tree in trees:
            text = expr.to_python(tree)
            if text in self.names and text not in self.emitted:
                self.emitted.add(text)
                line = f"{indent}{self.names[text]} = {text}"
                if len(line) > LINE:
                    lines += [f"{indent}{self.names[text]} = (", f"{indent}{INDENT}{text}", f"{indent})"]
                else:
                    lines.append(line)
        return lines
