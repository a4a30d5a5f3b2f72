"""SOURCE -> an nn.Module in eval mode, with each module's constructor arguments recorded.

`torchvision:NAME`, `timm:NAME` and `path/to/file.py:factory` (a function returning an
nn.Module, called with the `--arg k=v` keywords). While the model is built, every module's
own `__init__` arguments (those of its most derived class, read when it calls
`nn.Module.__init__`) are recorded: block parameters are named after them (`planes`,
`stride`), so the spec reads like the source.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from archc.errors import SpecError


def parse_args(texts: tuple[str, ...]) -> dict[str, Any]:
    """`--arg k=v` texts as keywords, each value read as YAML (numbers, booleans, lists, text)."""
    import yaml

    out: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SpecError(f"--arg {text!r}: expected NAME=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


@contextlib.contextmanager
def recording(store: dict[int, dict[str, Any]]):  # type: ignore[no-untyped-def]
    """While active, `store[id(module)]` is the scalar arguments its class's `__init__` received."""
    import torch

    original = torch.nn.Module.__init__

    def init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        frame = sys._getframe(1)
        outermost = None
        while frame is not None and frame.f_code.co_name == "__init__" and frame.f_locals.get("self") is self:
            outermost = frame
            frame = frame.f_back
        if outermost is not None and id(self) not in store:
            code = outermost.f_code
            names = code.co_varnames[1 : code.co_argcount + code.co_kwonlyargcount]
            found: dict[str, Any] = {}
            configs: dict[str, Any] = {}
            for n in names:
                value = outermost.f_locals.get(n)
                if type(value) in (int, float, bool):
                    found[n] = value
                elif _config(value):  # a settings object (torchvision's MBConvConfig): its scalar fields
                    configs.update({k: v for k, v in vars(value).items() if type(v) in (int, float, bool)})
            store[id(self)] = {**{k: v for k, v in configs.items() if k not in found}, **found}
        original(self, *args, **kwargs)

    torch.nn.Module.__init__ = init  # type: ignore[method-assign]
    try:
        yield store
    finally:
        torch.nn.Module.__init__ = original  # type: ignore[method-assign]


def _config(value: Any) -> bool:
    import torch

    return (
        hasattr(value, "__dict__") and not isinstance(value, (torch.nn.Module, torch.Tensor, type))
        and not callable(value) and type(value).__module__ not in ("builtins", "functools")
    )  # fmt: skip


def load(source: str, kwargs: dict[str, Any]) -> tuple[Any, str, dict[int, dict[str, Any]]]:
    """(model in eval mode, a model name, constructor arguments by id(module))."""
    prefix, sep, name = source.partition(":")
    if not sep or not name:
        raise SpecError(f"SOURCE {source!r}: expected torchvision:NAME, timm:NAME or path/to/file.py:factory")
    store: dict[int, dict[str, Any]] = {}
    if prefix == "torchvision":
        try:
            import torchvision
        except ModuleNotFoundError:
            raise SpecError("torchvision:NAME needs torchvision, which is not installed") from None
        if name not in torchvision.models.list_models():
            raise SpecError(f"torchvision has no model {name!r} (torchvision.models.list_models())")
        with recording(store):
            model = _called(f"torchvision {name}", lambda: torchvision.models.get_model(name, weights=None, **kwargs))
        label = name
    elif prefix == "timm":
        try:
            import timm
        except ModuleNotFoundError:
            raise SpecError("timm:NAME needs timm, which is not installed") from None
        if not timm.is_model(name):
            raise SpecError(f"timm has no model {name!r} (timm.list_models())")
        with recording(store):
            model = _called(f"timm {name}", lambda: timm.create_model(name, pretrained=False, **kwargs))
        label = name
    else:
        path = Path(prefix)
        if path.suffix != ".py" or not path.is_file():
            raise SpecError(f"SOURCE {source!r}: {prefix} is not a Python file (expected path/to/file.py:factory)")
        spec = importlib.util.spec_from_file_location(f"archc_import_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        with recording(store):
            try:
                spec.loader.exec_module(module)  # type: ignore[union-attr]
            except Exception as e:
                raise SpecError(f"{path}: importing it failed: {type(e).__name__}: {e}") from None
            factory = getattr(module, name, None)
            if not callable(factory):
                raise SpecError(f"{path}: no function {name!r}")
            model = _called(f"{path}:{name}", lambda: factory(**kwargs))
        label = name
    import torch

    if not isinstance(model, torch.nn.Module):
        raise SpecError(f"{source}: gave a {type(model).__name__}, not an nn.Module")
    return model.eval(), label, store


def _called(what: str, build):  # type: ignore[no-untyped-def]
    try:
        return build()
    except TypeError as e:
        raise SpecError(f"{what}: {e}") from None
