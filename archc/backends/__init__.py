"""Backends: IR -> source text through jinja2 templates.

A backend is a module of this package with the `Backend` protocol's members: the
module-level names its generated code defines (`GLOBALS`), `validate(graph)`
(what it cannot express, as located SpecErrors) and `context(graph, ...)` (the
template context). Lowering knows none of them.

`emit(graph, backend)` validates the graph for every backend (so a spec that
builds for one builds for all, and `archc check` means both), builds the
template context in Python (every name, number and import is decided there),
renders it, and parses the result before returning it, so a broken module is
never handed to the caller.
"""

from __future__ import annotations

import importlib
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from archc.errors import SpecError
from archc.ir.graph import Graph

if TYPE_CHECKING:
    import jinja2

BACKENDS = ("torch", "keras")


class Backend(Protocol):
    GLOBALS: tuple[str, ...]  # module-level names of its generated modules besides block classes/functions

    def validate(self, graph: Graph) -> None: ...

    def context(self, graph: Graph, **options: Any) -> dict[str, Any]: ...


def backend_module(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(f"archc.backends.{name}")


def validate(graph: Graph) -> None:
    """Every backend's restrictions, and the names all of them share a module with."""
    modules = [backend_module(name) for name in BACKENDS]
    _check_module_names(graph, tuple(n for m in modules for n in m.GLOBALS))
    for module in modules:
        module.validate(graph)


def _check_module_names(graph: Graph, globals_: tuple[str, ...]) -> None:
    """Names that meet in one generated module must not clash: block classes
    (PyTorch, CamelCase), block functions (Keras), the model class, the helpers,
    and the parameters that become arguments."""
    from archc.backends.common import class_name

    classes = {name: "the generated module" for name in globals_}
    model_class = class_name(graph.name)
    if model_class in classes:
        raise SpecError(
            f"model {graph.name!r} becomes class {model_class} in PyTorch, a name the generated module uses; rename it",
            graph.locate("name"),
        )
    classes[model_class] = f"model {graph.name!r}"
    for block in graph.blocks:
        cls = class_name(block.name)
        if cls in classes:
            raise SpecError(
                f"block {block.name!r} becomes class {cls} in PyTorch, a name already used by {classes[cls]}; rename it",
                graph.locate(f"block.{block.name}"),
            )
        classes[cls] = f"block {block.name!r}"
    module_scope = set(classes) | {b.name for b in graph.blocks}
    for name, _ in graph.params:
        if name in module_scope:
            raise SpecError(
                f"param {name!r} would shadow a class or function of the generated module; rename it",
                graph.locate(f"params.{name}"),
            )
    for block in graph.blocks:
        for name, _, _ in block.params:
            if name in module_scope:
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


def check_all(graph: Graph) -> None:
    """Everything a build decides, for every backend, short of laying out the text: every
    backend's checks and template context (where emission complains about what a backend
    cannot express). Templates only lay out what the context holds."""
    validate(graph)
    for name in BACKENDS:
        backend_module(name).context(graph)


def emit(graph: Graph, backend: str, *, memory_efficient: bool = False) -> str:
    """`memory_efficient` (torch only) is the default of the generated build_model's
    option to checkpoint dense layers."""
    if memory_efficient and backend != "torch":
        raise ValueError("memory_efficient applies to the torch backend only")
    module = backend_module(backend)
    validate(graph)
    context = module.context(graph, memory_efficient=memory_efficient)
    text = _environment().get_template(f"{backend}/module.py.j2").render(**context)
    try:
        compile(text, f"<archc {graph.name} {backend}>", "exec")  # never hand out a module Python rejects
    except (SyntaxError, ValueError) as e:  # pragma: no cover - a template bug
        raise RuntimeError(f"archc produced invalid Python for {graph.name} ({backend}): {e}") from e
    return text
