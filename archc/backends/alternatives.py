"""Alternatives: consecutive entries of a block kind under conditions that exclude each other
are printed as one `if ... elif ... else` chain, as torchvision writes FusedMBConv's
`if expanded_channels != input_channels: ... else: ...`, not as separate `if`s. Whether they
exclude each other (and whether one always holds, for `else:`) is archc.spec.logic's sound
symbolic check, true for every binding, not only the model's instances."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from archc.spec import expr
from archc.spec.logic import excludes, exhaustive


def keywords(conditions: Sequence[ast.expr | None]) -> list[str | None]:
    """For consecutive entries under `conditions` (None: unconditional), the keyword each is
    printed under: "if", "elif" (it excludes each earlier one of its chain) or "else" (it
    does, and one of the chain always holds); None for an unconditional entry."""
    out: list[str | None] = []
    chain: list[ast.expr] = []
    for condition in conditions:
        if condition is None:
            out.append(None)
            chain = []
        elif chain and out[-1] != "else" and all(excludes(c, condition) for c in chain):
            chain.append(condition)
            out.append("else" if exhaustive(chain) else "elif")
        else:
            chain = [condition]
            out.append("if")
    return out


def guard(keyword: str | None, condition: str | None) -> str | None:
    """The guard line's text (without indent): `if c:`, `elif c:`, `else:`; None unguarded."""
    if keyword is None or condition is None:
        return None
    return "else:" if keyword == "else" else f"{keyword} {condition}:"


def chain_lines(lines: list[str]) -> list[str]:
    """A line pass for code whose `if` conditions read only arguments that nothing reassigns
    (a Keras block function): an `if B:` that directly follows the body of an `if A:` (or of
    its `elif`s) at the same level becomes `elif B:` where B excludes each condition of the
    chain, `else:` where one of them also always holds."""
    out: list[str] = []
    open_: list[tuple[int, list[ast.expr]]] = []  # the open chains, outermost first: (indent, conditions)
    for line in lines:
        stripped = line.strip()
        if not stripped:
            out.append(line)
            continue
        indent = len(line) - len(line.lstrip())
        while open_ and open_[-1][0] > indent:  # their bodies and the chains end here
            open_.pop()
        condition = _parsed(stripped[3:-1]) if stripped.startswith("if ") and stripped.endswith(":") else None
        if open_ and open_[-1][0] == indent:
            chain = open_.pop()[1]
            if condition is not None and all(excludes(c, condition) for c in chain):
                chain = [*chain, condition]
                closed = exhaustive(chain)
                line = line[:indent] + ("else:" if closed else f"elif {stripped[3:]}")
                if not closed:
                    open_.append((indent, chain))
                out.append(line)
                continue
        if condition is not None:
            open_.append((indent, [condition]))
        out.append(line)
    return out


def _parsed(text: str) -> ast.expr | None:
    try:
        return expr.parse(text)
    except expr.ExprError:
        return None
