"""Backends: IR -> source text through jinja2 templates.

`emit(graph, backend)` builds the template context in Python (every name,
number and import is decided there), renders it, and parses the result before
returning it, so a broken module is never handed to the caller.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from archc.ir.graph import Graph

if TYPE_CHECKING:
    import jinja2

BACKENDS = ("torch", "keras")


def template_dir() -> Path:
    """templates/ ships inside the wheel as archc/templates; a checkout has it at the top."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise RuntimeError("archc templates are missing from this installation")


@cache
def _environment() -> jinja2.Environment:
    import jinja2  # here, not at the top: `check` imports archc.backends.common but renders nothing

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals["signature"] = _signature
    return env


def _signature(func: str, params: list[str], returns: str, indent: str = "    ") -> str:
    """A `def` line, split one parameter per line when it does not fit in 88 columns."""
    one = f"{indent}def {func}({', '.join(params)}) -> {returns}:"
    if len(one) <= 88:
        return one
    inner = indent + "    "
    joined = f"{inner}{', '.join(params)}"
    if len(joined) <= 88:
        return f"{indent}def {func}(\n{joined}\n{indent}) -> {returns}:"
    body = "\n".join(f"{inner}{p}," for p in params)
    return f"{indent}def {func}(\n{body}\n{indent}) -> {returns}:"


def emit(graph: Graph, backend: str, *, memory_efficient: bool = False) -> str:
    """`memory_efficient` (torch only) is the default of the generated build_model's
    option to checkpoint dense layers."""
    if backend == "torch":
        from archc.backends.torch import TorchEmitter

        context = TorchEmitter(graph, memory_efficient).context()
    elif memory_efficient:
        raise ValueError("memory_efficient applies to the torch backend only")
    elif backend == "keras":
        from archc.backends.keras import KerasEmitter

        context = KerasEmitter(graph).context()
    else:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    text = _environment().get_template(f"{backend}/module.py.j2").render(**context)
    try:
        compile(text, f"<archc {graph.name} {backend}>", "exec")  # never hand out a module Python rejects
    except (SyntaxError, ValueError) as e:  # pragma: no cover - a template bug
        raise RuntimeError(f"archc produced invalid Python for {graph.name} ({backend}): {e}") from e
    return text
