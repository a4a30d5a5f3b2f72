"""Op kinds: one module each (see `archc.ops.base` for what a module holds).

Every module of this package is imported here and every op class it defines
with spec arguments (`Args`) becomes a layer kind: `KINDS` maps its spec key
(`conv`, `batchnorm`, ...) to the class. The spec models, lowering, both
backends, weight transfer and the diagram all read `KINDS`, so adding an op
kind means adding a module here and nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil

from archc.ops.base import REQUIRED, Attr, KerasCtx, Op, Shape, ShapeError


def _discover() -> dict[str, type[Op]]:
    kinds: dict[str, type[Op]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Op) and obj.__module__ == module.__name__ and "kind" in vars(obj):
                kinds[obj.kind] = obj
    return kinds


ALL: dict[str, type[Op]] = _discover()  # every op kind, spec layers and internal ones (pad_shortcut)
KINDS: dict[str, type[Op]] = {k: op for k, op in ALL.items() if op.Args is not None}
SHORTHANDS: dict[str, dict] = {k: v for op in KINDS.values() for k, v in op.SHORTHANDS.items()}


def __getattr__(name: str) -> type[Op]:
    """`ops.Conv`, `ops.BatchNorm`, ...: op classes by class name."""
    for op in ALL.values():
        if op.__name__ == name:
            return op
    raise AttributeError(f"module 'archc.ops' has no attribute {name!r}")


__all__ = ["ALL", "KINDS", "REQUIRED", "SHORTHANDS", "Attr", "KerasCtx", "Op", "Shape", "ShapeError"]
