"""Op kinds: one module each (see `archc.ops.base` for what a module holds).

The module `archc/ops/<kind>.py` defines the op class of kind `<kind>` (its `kind`
attribute). `ALL` maps every kind to its class; `KINDS` holds the layer kinds, the ones a
spec may write (an op class with spec arguments, `Args`): all but the kinds lowering makes
itself (INTERNAL). The spec models, lowering, both backends, weight transfer and the
diagram all read them, so adding an op kind means adding a module here and nothing else
(and naming it in INTERNAL if specs do not write it).

Both are lazy: the names come from the modules' file names, and a kind's module is
imported the first time its class is looked up, so a `check` imports the modules of the
kinds its spec uses; going through all the classes (`.values()`, `.items()`) imports
every module.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any

from archc.ops.base import REQUIRED, Attr, KerasCtx, Op, Shape, ShapeError

INTERNAL = frozenset({"pad_shortcut"})  # op kinds that lowering makes (a shortcut), not spec layers
_NOT_KINDS = frozenset({"base", "init"})  # modules of this package that hold no op kind


_classes: dict[str, type[Op]] = {}  # the kinds whose module has been imported


def _load(kind: str) -> type[Op]:
    op = _classes.get(kind)
    if op is None:
        module = importlib.import_module(f"{__name__}.{kind}")
        found = [obj for obj in vars(module).values() if isinstance(obj, type) and issubclass(obj, Op)
                 and obj.__module__ == module.__name__ and vars(obj).get("kind") == kind]  # fmt: skip
        if len(found) != 1:
            raise RuntimeError(f"archc/ops/{kind}.py must define one op class of kind {kind!r}, not {len(found)}")
        op = _classes[kind] = found[0]
    return op


class _Registry(Mapping[str, type[Op]]):
    """Op kind -> its class, its module imported on first lookup."""

    def __init__(self, kinds: tuple[str, ...]):
        self._kinds = kinds
        self._known = frozenset(kinds)

    def __getitem__(self, kind: str) -> type[Op]:
        if kind not in self._known:
            raise KeyError(kind)
        return _load(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_KINDS))
ALL: Mapping[str, type[Op]] = _Registry(_MODULES)  # every op kind, spec layers and internal ones
KINDS: Mapping[str, type[Op]] = _Registry(tuple(k for k in _MODULES if k not in INTERNAL))


class _Shorthands(Mapping[str, dict[str, Any]]):
    """A bare name that stands for a layer body (`relu` -> {"act": {"fn": "relu"}}), as the
    layer kinds declare them (`Op.SHORTHANDS`; no two declare the same name). A kind's own
    name is looked up in its class; another name in the classes already imported (the kinds
    a spec has used so far, and act, whose activations the spec models read), then in all."""

    def _find(self, name: object) -> dict[str, Any] | None:
        if not isinstance(name, str):
            return None
        if name in KINDS and name in KINDS[name].SHORTHANDS:
            return KINDS[name].SHORTHANDS[name]
        for kinds in (tuple(k for k in KINDS if k in _classes), tuple(KINDS)):
            for kind in kinds:
                if name in KINDS[kind].SHORTHANDS:
                    return KINDS[kind].SHORTHANDS[name]
        return None

    def __getitem__(self, name: str) -> dict[str, Any]:
        found = self._find(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        return self._find(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (name for op in KINDS.values() for name in op.SHORTHANDS)

    def __len__(self) -> int:
        return sum(len(op.SHORTHANDS) for op in KINDS.values())


SHORTHANDS: Mapping[str, dict[str, Any]] = _Shorthands()


def __getattr__(name: str) -> type[Op]:
    """`ops.Conv`, `ops.BatchNorm`, `ops.PadShortcut`, ...: op classes by class name, looked up
    first in the module the name suggests (batchnorm, pad_shortcut), then in every module."""
    if name[:1].isupper():
        snake = "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(name))
        for kind in (name.lower(), snake):
            if kind in ALL and ALL[kind].__name__ == name:
                return ALL[kind]
        for op in ALL.values():
            if op.__name__ == name:
                return op
    raise AttributeError(f"module 'archc.ops' has no attribute {name!r}")


__all__ = ["ALL", "INTERNAL", "KINDS", "REQUIRED", "SHORTHANDS", "Attr", "KerasCtx", "Op", "Shape", "ShapeError"]
