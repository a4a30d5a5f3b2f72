"""The Python API: what the CLI does, for notebooks and search loops.

    import archc
    spec = archc.load_spec("specs/cifar/densenet_bc100_k12.yaml", overrides={"params.growth_rate": 24})
    archc.summary(spec).macs            # from the IR; no framework imported (a table in notebooks)
    archc.diagram(spec)                 # block diagram: inline SVG in notebooks (Graphviz), else Mermaid
    model = archc.build(spec, "torch")  # compiled and imported in memory, no files written

`spec` may be a path, a `LoadedSpec` (from `load_spec`) or a lowered `Graph`. Overrides
(for a path) are `--set` texts, ["params.depth=56"], or a dict, {"params.depth": 56}.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import types
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from archc.errors import SpecError
from archc.ir.graph import Graph
from archc.spec.loader import LoadedSpec
from archc.spec.loader import load_spec as _load

if TYPE_CHECKING:
    from archc.passes.diagram import Diagram
    from archc.passes.summary import Summary

SpecLike = Union[str, Path, LoadedSpec, Graph]
Overrides = Union[Sequence[str], Mapping[str, Any]]


def load_spec(path: str | Path, overrides: Overrides = ()) -> LoadedSpec:
    """Load and validate a spec; `overrides` are `--set` texts such as "params.growth_rate=24",
    or a dict such as {"params.growth_rate": 24}, applied in order."""
    return _load(path, _set_texts(overrides))


def to_ir(spec: SpecLike, overrides: Overrides = ()) -> Graph:
    """The graph IR of a spec (shapes, parameter counts, MACs); `overrides` apply to a path."""
    from archc.lower import lower as lower_spec

    if isinstance(spec, (LoadedSpec, Graph)):
        if overrides:
            raise ValueError("overrides apply to a spec path; pass them to load_spec(path, overrides)")
        return spec if isinstance(spec, Graph) else lower_spec(spec)
    return lower_spec(load_spec(spec, overrides))


def _set_texts(overrides: Overrides) -> tuple[str, ...]:
    """`--set` texts from a list of them or from a {path: value} dict (values as JSON, which is YAML)."""
    if isinstance(overrides, (str, bytes)):
        raise TypeError('overrides: a list of "path=value" texts or a {path: value} dict, not one string')
    if not isinstance(overrides, Mapping):
        return tuple(overrides)
    texts = []
    for path, value in overrides.items():
        try:
            texts.append(f"{path}={json.dumps(value, ensure_ascii=False, allow_nan=False)}")
        except (TypeError, ValueError):
            raise SpecError(
                f"overrides[{path!r}]: {value!r} is not a spec value (use numbers, strings, booleans, None, lists or dicts)"
            ) from None
    return tuple(texts)


def compile(spec: SpecLike, backend: str, overrides: Overrides = ()) -> str:  # noqa: A001 - the name users expect
    """The generated module's source text, exactly what `archc build` writes."""
    from archc.backends import emit

    return emit(to_ir(spec, overrides), backend)


def build(spec: SpecLike, backend: str, overrides: Overrides = (), **kwargs: Any) -> Any:
    """Compile, import in memory and return `build_model(**kwargs)`: a torch.nn.Module or keras.Model.

    A PyTorch model pickles (`torch.save(model)`) with the generated code inside, so
    `torch.load(file, weights_only=False)` restores it in any process with archc installed;
    `torch.save(model.state_dict())` stays the portable way (README: "Saving a model")."""
    return load_module(to_ir(spec, overrides), backend).build_model(**kwargs)


# The modules executed in memory, by the sha256 of their text, while any of their classes is in
# use: a module built twice, or unpickled, is the same module with the same classes.
_LOADED: weakref.WeakValueDictionary[str, types.ModuleType] = weakref.WeakValueDictionary()


def load_module(graph: Graph, backend: str) -> types.ModuleType:
    """The generated module for `graph`, executed in memory (no file is written); while it is
    in use, the same text gives the same module, classes included."""
    name = f"archc_generated_{graph.name}_{backend}"
    return _executed(compile(graph, backend), name, f"<archc {graph.source} ({backend})>", backend == "torch")


def _executed(source: str, name: str, filename: str, torch: bool) -> types.ModuleType:
    key = hashlib.sha256(source.encode()).hexdigest()
    module = _LOADED.get(key)
    if module is None:
        module = types.ModuleType(name)
        exec(builtins.compile(source, filename, "exec"), module.__dict__)
        if torch:
            _pickle_by_value(module, (source, name, filename))
        _LOADED[key] = module
    return module


def _pickle_by_value(module: types.ModuleType, where: tuple[str, str, str]) -> None:
    """Pickle instances of the module's nn.Module classes with the module's source instead of an
    import path (nothing can import a module that exists only in memory): `_unpickled` executes
    the source again, or finds it loaded, and pickle restores the instance's state as usual."""
    import torch

    def reduce(self: Any, protocol: int) -> Any:  # holds `module`: its _LOADED entry lives as long as its classes
        cls = type(self)
        if vars(module).get(cls.__name__) is not cls:  # a user's subclass: pickled as Python does
            return object.__reduce_ex__(self, protocol)
        return _unpickled, (*where, cls.__name__), self.__getstate__()

    for value in list(vars(module).values()):
        if isinstance(value, type) and value.__module__ == module.__name__ and issubclass(value, torch.nn.Module):
            value.__reduce_ex__ = reduce  # type: ignore[method-assign, assignment]


def _unpickled(source: str, name: str, filename: str, cls_name: str) -> Any:
    """A bare instance of a generated class, for pickle to restore (see `_pickle_by_value`)."""
    cls = getattr(_executed(source, name, filename, True), cls_name)
    return cls.__new__(cls)


def summary(spec: SpecLike, level: str = "blocks", batch: int = 1, overrides: Overrides = ()) -> Summary:
    """Per-block (or per-layer) output shapes, parameters, MACs and activation memory."""
    from archc.passes.summary import summarize

    return summarize(to_ir(spec, overrides), level, batch)


def diagram(spec: SpecLike, level: str = "blocks", expand: bool = False, overrides: Overrides = ()) -> Diagram:
    """The block (or layer) diagram of `archc graph`: `.to_dot()`, `.to_mermaid()`, `.svg()`;
    a notebook shows it inline (SVG drawn by Graphviz where installed, else Mermaid)."""
    from archc.passes.diagram import diagram as draw

    return draw(to_ir(spec, overrides), level, expand)
