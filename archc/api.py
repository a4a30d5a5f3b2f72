"""The Python API: what the CLI does, for notebooks and search loops.

    import archc
    spec = archc.load_spec("specs/cifar/densenet_bc100_k12.yaml", overrides=["params.growth_rate=24"])
    archc.summary(spec).macs            # from the IR; no framework imported (a table in notebooks)
    archc.diagram(spec)                 # block diagram: inline SVG in notebooks (Graphviz), else Mermaid
    model = archc.build(spec, "torch")  # compiled and imported in memory, no files written

`spec` may be a path, a `LoadedSpec` (from `load_spec`) or a lowered `Graph`.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from archc.ir.graph import Graph
from archc.spec.loader import LoadedSpec
from archc.spec.loader import load_spec as _load

if TYPE_CHECKING:
    from archc.passes.diagram import Diagram
    from archc.passes.summary import Summary

SpecLike = Union[str, Path, LoadedSpec, Graph]


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSpec:
    """Load and validate a spec; `overrides` are `--set` texts such as "params.growth_rate=24"."""
    return _load(path, overrides)


def to_ir(spec: SpecLike, overrides: Sequence[str] = ()) -> Graph:
    """The graph IR of a spec (shapes, parameter counts, MACs); `overrides` apply to a path."""
    from archc.lower import lower as lower_spec

    if isinstance(spec, Graph):
        return spec
    return lower_spec(spec if isinstance(spec, LoadedSpec) else _load(spec, overrides))


def compile(spec: SpecLike, backend: str) -> str:  # noqa: A001 - the name users expect
    """The generated module's source text, exactly what `archc build` writes."""
    from archc.backends import emit

    return emit(to_ir(spec), backend)


def build(spec: SpecLike, backend: str, **kwargs: Any) -> Any:
    """Compile, import in memory and return `build_model(**kwargs)`: a torch.nn.Module or keras.Model."""
    return load_module(to_ir(spec), backend).build_model(**kwargs)


def load_module(graph: Graph, backend: str) -> types.ModuleType:
    """The generated module for `graph`, executed in a fresh namespace; no file is written."""
    module = types.ModuleType(f"archc_generated_{graph.name}_{backend}")
    code = builtins.compile(compile(graph, backend), f"<archc {graph.source} ({backend})>", "exec")
    exec(code, module.__dict__)
    return module


def summary(spec: SpecLike, level: str = "blocks", batch: int = 1) -> Summary:
    """Per-block (or per-layer) output shapes, parameters, MACs and activation memory."""
    from archc.passes.summary import summarize

    return summarize(to_ir(spec), level, batch)


def diagram(spec: SpecLike, level: str = "blocks", expand: bool = False) -> Diagram:
    """The block (or layer) diagram of `archc graph`: `.to_dot()`, `.to_mermaid()`, `.svg()`;
    a notebook shows it inline (SVG drawn by Graphviz where installed, else Mermaid)."""
    from archc.passes.diagram import diagram as draw

    return draw(to_ir(spec), level, expand)
