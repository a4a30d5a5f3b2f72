"""Backends: IR -> source text through jinja2 templates.

A backend is a module of this package with the `Backend` protocol's members: the
module-level names its generated code defines (`GLOBALS`, and `module_names(graph)`
for the classes or functions of a graph's blocks), `validate(graph)` (what it cannot
express, as located SpecErrors) and `context(graph, ...)` (the template context).
Lowering knows none of them.

Each backend's limits are its own: `emit(graph, backend)` checks only `backend`, and
`check(graph, backends)` (what `archc check` runs, every backend unless told) checks
each backend named, so what Keras cannot express never blocks a PyTorch build. A
refusal names its backend and the way round it (`keras backend: ...; or build for
torch only (--backend torch)`). `emit` builds the template context in Python
(every name, number and import is decided there), renders it, and parses the result
before returning it, so a broken module is never handed to the caller.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from archc.errors import SpecError
from archc.ir.graph import Graph

if TYPE_CHECKING:
    import jinja2

    from archc.backends.common import ModuleName

BACKENDS = ("torch", "keras")


class Backend(Protocol):
    GLOBALS: tuple[str, ...]  # module-level names of its generated modules besides block classes/functions

    def graph_globals(self, graph: Graph) -> tuple[str, ...]: ...  # those that depend on the ops it uses

    def module_names(self, graph: Graph) -> list[ModuleName]: ...

    def validate(self, graph: Graph) -> None: ...

    def context(self, graph: Graph, **options: Any) -> dict[str, Any]: ...


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"archc.backends.{name}")


@contextmanager
def refusal(backend: str) -> Iterator[None]:
    """A SpecError raised inside is one of `backend`'s limits: it names the backend and
    the way round it, the other backends (one line, at the same place in the spec)."""
    try:
        yield
    except SpecError as e:
        others = ",".join(b for b in BACKENDS if b != backend)
        message = f"{backend} backend: {e.message}; or build for {others} only (--backend {others})"
        raise SpecError(message, e.where) from None


def validate(graph: Graph, backend: str) -> None:
    """`backend`'s restrictions, and the names its generated module defines."""
    module = backend_module(backend)
    with refusal(backend):
        _check_module_names(graph, module)
        module.validate(graph)


def _check_module_names(graph: Graph, module: Backend) -> None:
    """Names that meet in one generated module must not clash: what the backend defines for
    the model and its blocks (`module_names`: PyTorch's classes, Keras' block functions),
    the helpers and imports (`GLOBALS`), and the parameters that become arguments."""
    taken = dict.fromkeys((*module.GLOBALS, *module.graph_globals(graph)), "the generated module")
    for defined in module.module_names(graph):
        if defined.name in taken:
            raise SpecError(
                f"{defined.owner} becomes {defined.form}, a name already used by {taken[defined.name]}; rename it",
                graph.locate(defined.key),
            )
        taken[defined.name] = defined.owner
    for name, _ in graph.params:
        if name in taken:
            raise SpecError(
                f"param {name!r} would shadow a class or function of the generated module; rename it",
                graph.locate(f"params.{name}"),
            )
    for block in graph.blocks:
        for name, _, _ in block.params:
            if name in taken:
                raise SpecError(
                    f"param {name!r} of block {block.name!r} would shadow a class or function of the generated module; rename it",
                    graph.locate(f"block.{block.name}.params.{name}"),
                )


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


def check(graph: Graph, backends: Sequence[str] = BACKENDS) -> None:
    """Everything a build for each of `backends` decides, short of laying out the text: its
    checks and its template context (where emission complains about what the backend cannot
    express). Templates only lay out what the context holds."""
    for name in backends:
        validate(graph, name)
        with refusal(name):
            backend_module(name).context(graph)


def emit(graph: Graph, backend: str, *, memory_efficient: bool = False) -> str:
    """`memory_efficient` (torch only) is the default of the generated build_model's
    option to checkpoint dense layers."""
    if memory_efficient and backend != "torch":
        raise ValueError("memory_efficient applies to the torch backend only")
    module = backend_module(backend)
    validate(graph, backend)
    with refusal(backend):
        context = module.context(graph, memory_efficient=memory_efficient)
    text = _environment().get_template(f"{backend}/module.py.j2").render(**context)
    try:
        compile(text, f"<archc {graph.name} {backend}>", "exec")  # never hand out a module Python rejects
    except (SyntaxError, ValueError) as e:  # pragma: no cover - a template bug
        raise RuntimeError(f"archc produced invalid Python for {graph.name} ({backend}): {e}") from e
    return text
