"""Block kinds by name: each kind's symbolic form (`symbolic.build_type`) built once and
kept in the lowering state, and a kind met inside itself (a recursive kind) given a stand-in
built from what it declares (`out_channels`, `out_stride`) until its own form is built."""

from __future__ import annotations

import ast

from archc.errors import Location, SpecError
from archc.ir.graph import BlockType, SymShortcut
from archc.lower.context import State
from archc.lower.limits import check_block_depth
from archc.lower.nested import declared
from archc.lower.symbolic import block_params, build_type
from archc.spec.loader import BlockSource


def unknown_block(state: State, block: str, where: Location) -> SpecError:
    """The error for a block kind the spec does not define, with the nearest name."""
    known = ", ".join(sorted(state.spec.blocks)) or "none (add `use: [resnet]` or a `blocks:` section)"
    import difflib  # error messages only: not imported by a successful check

    hint = difflib.get_close_matches(block, list(state.spec.blocks), n=1)
    guess = f"did you mean {hint[0]!r}? " if hint else ""
    return SpecError(f"unknown block {block!r}; {guess}known blocks: {known}", where)


def type_of(state: State, block: str, where: Location) -> BlockType:
    """The symbolic form of a block kind, built once."""
    if block in state.block_types:
        return state.block_types[block]
    source = state.spec.blocks.get(block)
    if source is None:
        raise unknown_block(state, block, where)
    if block in state.typing:
        return _in_progress(state, source, where)
    check_block_depth(state.typing, block, where)
    state.typing.append(block)
    try:
        btype = build_type(state, source)
    finally:
        state.typing.pop()
        state.block_types.pop(block, None)  # its stand-in, where it met itself
    return state.block_types.setdefault(block, btype)


def _in_progress(state: State, source: BlockSource, where: Location) -> BlockType:
    """A block kind met inside itself (directly or through another kind) while its symbolic
    form is built: a stand-in with its parameters and the output channels and stride it
    declares, kept in `state.block_types` until the kind is built. Each instance is checked
    against the declaration (`specialise.check_declared`)."""
    name, definition = source.name, source.definition
    chain = " -> ".join([*state.typing[state.typing.index(name) :], name])
    if definition.outputs:
        raise SpecError(f"block {name!r} contains itself ({chain}); a recursive block kind returns one tensor, not `outputs`", source.locate("outputs"))
    if definition.out_channels is None:
        raise SpecError(
            f"block {name!r} contains itself ({chain}); a recursive block declares its output channels: add "
            f"`out_channels:` to block {name!r}, an expression over its parameters and in_channels (e.g. `out_channels: filters`)",
            where,
        )
    channels = declared(source, "out_channels")
    stride = declared(source, "out_stride")
    shortcuts = []
    for sc in definition.shortcuts:
        if sc.when != "shape_changes":
            continue  # the stand-in's shortcuts give its instances their `shape_changes` switches
        if sc.input is not None or definition.after:
            raise SpecError(
                f"block {name!r} contains itself ({chain}), and its shortcut {sc.name!r} (`when: shape_changes`) reads "
                f"{'layer ' + repr(sc.input) if sc.input else 'the input of a block with `after`'}, whose shape its declaration "
                "does not give; write `when:` as an expression over its parameters (e.g. `stride != 1`)",
                source.locate("shortcut"),
            )
        shortcuts.append(SymShortcut(sc.kind, sc.when, None, None, sc.name, ast.Name("in_channels"), channels, stride, False, False, None, None))
    stand_in = BlockType(name, definition.doc, block_params(definition), definition.connectivity, (), (), tuple(shortcuts), channels, stride, source.locate(), inputs=definition.input_names, class_name=definition.class_, sum=definition.sum)
    state.block_types[name] = stand_in
    return stand_in
