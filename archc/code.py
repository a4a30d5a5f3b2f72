"""Tiny code-layout helpers shared by the emitters.

Emitters build expressions as `Call` / `Gen` trees and `render` lays them out
the way ruff format (black style) would: on one line when it fits in 88
columns, else arguments on one indented line, else one per line with a
trailing comma. Generated files therefore pass `ruff format --check` without
running a formatter at build time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

LINE = 88
INDENT = "    "


@dataclass(frozen=True)
class Call:
    """A call in generated code: `func(args)`, optionally starred or in other brackets."""

    func: str
    args: tuple[Code, ...] = ()
    prefix: str = ""  # e.g. "*" for a starred argument
    brackets: str = "()"
    guard: str | None = None  # a statement applying it runs under `if guard:` (render_applied)

    def when(self, condition: str | None) -> Call:
        """This call, applied only where `condition` holds (None: always)."""
        return replace(self, guard=condition)


@dataclass(frozen=True)
class Gen:
    """A generator or comprehension: `(elem for target in iter)`, optionally starred."""

    elem: Code
    clause: str  # "for _ in range(2)"
    prefix: str = ""
    brackets: str = "()"
    more: tuple[str, ...] = ()  # further clauses: `(layer for _ in range(2) for layer in block)`


@dataclass(frozen=True)
class Seq:
    """A list or tuple display in generated code: `[a, b]`."""

    items: tuple[Code, ...] = field(default_factory=tuple)
    brackets: str = "[]"


Code = str | Call | Gen | Seq


def call(func: str, *args: Code | None, **kwargs: Code | None) -> Call:
    """A call; None arguments are left out, keywords keep their order."""
    parts = [a for a in args if a is not None]
    parts += [f"{k}={flat(v)}" if not isinstance(v, (Call, Gen, Seq)) else _Kw(k, v) for k, v in kwargs.items() if v is not None]  # type: ignore[misc]
    return Call(func, tuple(parts))


@dataclass(frozen=True)
class _Kw:
    """A keyword argument whose value is itself structured code."""

    key: str
    value: Code


def flat(code: Code | _Kw) -> str:
    if isinstance(code, str):
        return code
    if isinstance(code, _Kw):
        return f"{code.key}={flat(code.value)}"
    if isinstance(code, Call):
        assert code.guard is None, "a guarded call is a statement: lay it out with render_applied"
        o, c = code.brackets
        return f"{code.prefix}{code.func}{o}{', '.join(flat(a) for a in code.args)}{c}"
    if isinstance(code, Gen):
        o, c = code.brackets
        return f"{code.prefix}{o}{flat(code.elem)} {' '.join((code.clause, *code.more))}{c}"
    o, c = code.brackets
    return f"{o}{', '.join(flat(a) for a in code.items)}{c}"


def render(code: Code | _Kw, indent: str = "", head: str = "", tail: str = "") -> list[str]:
    """Lines for `head + code + tail` at `indent`, split like ruff format."""
    one = f"{indent}{head}{flat(code)}{tail}"
    if len(one) <= LINE or isinstance(code, str):
        return [one]
    if isinstance(code, _Kw):
        return render(code.value, indent, f"{head}{code.key}=", tail)
    inner = indent + INDENT
    if isinstance(code, Gen):
        o, c = code.brackets
        return [
            f"{indent}{head}{code.prefix}{o}",
            *render(code.elem, inner),
            *(f"{inner}{clause}" for clause in (code.clause, *code.more)),
            f"{indent}{c}{tail}",
        ]
    if isinstance(code, Call):
        open_, args, (o, c) = f"{code.prefix}{code.func}", code.args, code.brackets
    else:
        open_, args, (o, c) = "", code.items, code.brackets
    joined = f"{inner}{', '.join(flat(a) for a in args)}"
    lines = [f"{indent}{head}{open_}{o}"]
    if len(joined) <= LINE and args:
        lines.append(joined)
    elif len(args) == 1 and isinstance(args[0], (Call, Seq, Gen)):
        # a sole bracketed argument is split on its own, without a trailing comma
        lines += render(args[0], inner)
    else:
        for a in args:
            lines += render(a, inner, "", ",")
    lines.append(f"{indent}{c}{tail}")
    return lines


def render_applied(layer: Call, indent: str, head: str, tail: str) -> list[str]:
    """`head + Layer(...) + tail`, e.g. `x = layers.Dense(10)(x)`.

    ruff splits such a line at the trailing call when the rest fits, giving an
    awkward `(\n    x\n)`; a magic trailing comma in the layer's arguments
    makes it split those instead, which is how the line reads best.
    """
    if layer.guard is not None:
        return [f"{indent}if {layer.guard}:", *render_applied(layer.when(None), indent + INDENT, head, tail)]
    one = f"{indent}{head}{flat(layer)}{tail}"
    if len(one) <= LINE:
        return [one]
    if len(f"{indent}{head}{flat(layer)}{tail[:1]}") <= LINE and layer.args:
        lines = [f"{indent}{head}{layer.func}("]
        for a in layer.args:
            lines += render(a, indent + INDENT, "", ",")
        return [*lines, f"{indent}){tail}"]
    return render(layer, indent, head, tail)
