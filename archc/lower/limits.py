"""Limits that keep a spec from asking for an absurd graph; raise them deliberately
(`archc.lower.limits.MAX_NODES = ...`): every check reads them when it runs."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from archc.errors import Location, SpecError
from archc.ir.graph import (
    Node,
)

if TYPE_CHECKING:
    from archc.lower.context import State


# Limits that keep a spec from asking for an absurd graph; raise them deliberately.
MAX_NODES = 200_000  # expanded graph size; far above any published CNN


MAX_CHANNELS = 1_000_000  # channels, units, kernel sizes: any integer argument


MAX_REPEAT = 10_000  # instances in one stage


MAX_ELEMENTS = 10**9  # values in one feature map (C*H*W)


MAX_PARAMS = 10**10  # parameters in the whole model (40 GB of float32)


MAX_BLOCK_DEPTH = 16  # blocks inside blocks; real networks nest two or three


def check_block_depth(stack: list[str], name: str, where: Location) -> None:
    if len(stack) >= MAX_BLOCK_DEPTH and name in stack:
        raise SpecError(
            f"block {name!r} contains itself more than {MAX_BLOCK_DEPTH} deep ({stack[0]} -> ... -> {name}): "
            "its recursion does not end; give the recursive instance an `if:` that fails at some depth, or raise "
            "archc.lower.limits.MAX_BLOCK_DEPTH deliberately if you mean it",
            where,
        )
    if len(stack) >= MAX_BLOCK_DEPTH:
        raise SpecError(
            f"blocks nested more than {MAX_BLOCK_DEPTH} deep ({stack[0]} -> ... -> {name}); "
            "raise archc.lower.limits.MAX_BLOCK_DEPTH deliberately if you mean it",
            where,
        )


def check_repeat(repeat: Any, where: Location) -> None:
    if isinstance(repeat, bool) or not isinstance(repeat, int):
        hint = "; use // or int(...) for whole numbers" if isinstance(repeat, float) else ""
        raise SpecError(f"repeat must be an integer, got {repeat!r}{hint}", where)
    if not 1 <= repeat <= MAX_REPEAT:
        raise SpecError(
            f"repeat must be between 1 and {MAX_REPEAT}, got {repeat} "
            "(raise archc.lower.limits.MAX_REPEAT deliberately if you mean it)",
            where,
        )


def add_node(state: State, node: Node, where: Location) -> None:
    if len(state.nodes) >= MAX_NODES:
        raise SpecError(
            f"the model expands to more than {MAX_NODES} layers; raise archc.lower.limits.MAX_NODES deliberately if you mean it",
            where,
        )
    if node.shape.c > MAX_CHANNELS or node.shape.numel() > MAX_ELEMENTS:
        raise SpecError(
            f"{node.id} would produce {node.shape}, over the limits of {MAX_CHANNELS} channels and "
            f"{MAX_ELEMENTS} values per map; raise archc.lower.limits.MAX_CHANNELS / MAX_ELEMENTS deliberately if you mean it",
            where,
        )
    state.params += node.trainable + node.non_trainable
    if state.params > MAX_PARAMS:
        raise SpecError(
            f"the model has more than {MAX_PARAMS} parameters at {node.id}; "
            "raise archc.lower.limits.MAX_PARAMS deliberately if you mean it",
            where,
        )
    node = dataclasses.replace(node, where=where)
    state.nodes.append(node)
