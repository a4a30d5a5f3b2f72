"""`archc import`: a PyTorch model -> a spec (block kinds, stages, parameters) that rebuilds
it exactly. Imports torch only when called (the compiler core never does).

    from archc.importer import import_spec
    result = import_spec("torchvision:resnet18")
    result.text       # the spec, checked: strict state_dict load, equal outputs
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from archc.errors import SpecError


@dataclass(frozen=True)
class Imported:
    text: str  # the spec's YAML
    name: str
    diff: float | None  # the check's relative output difference; None with check=False
    input_only: bool = False  # a forward read its input's size as a Python value: exact at this input shape only (sizes.py)


def import_spec(
    source: str, input_shape: tuple[int, ...] | None = None, args: dict[str, Any] | None = None, check: bool = True
) -> Imported:
    """The spec of SOURCE (`torchvision:NAME`, `timm:NAME`, `path/to/file.py:factory`);
    SpecError (one line: the module path and what it is) for what archc cannot express."""
    try:
        import torch
    except ModuleNotFoundError:
        raise SpecError("archc import needs PyTorch; install it with pip install 'archc[torch]'") from None
    from archc.importer import check as checking
    from archc.importer import init as initialisation
    from archc.importer import render, sizes, text
    from archc.importer import source as sources
    from archc.importer.ops import Unsupported
    from archc.importer.trace import Tracer

    with torch.random.fork_rng():  # the caller's random state stays as it was
        torch.manual_seed(0)  # one draw of the model's own init per SOURCE (its rules are read off it): the same spec every time
        model, label, init = sources.load(source, dict(args or {}))
        shape = tuple(input_shape) if input_shape else _default_input(model)
        try:
            tracer = Tracer(model, init, shape)
            root = tracer.root(model)
            spec = render.spec(render.Renderer(), root, label, source, shape)
            initialisation.add_defaults(spec, model)  # the model is freshly built: its own init drew its tensors
        except Unsupported as e:
            raise SpecError(f"cannot import {source}: {e}") from None
        doc, tested = sizes.describe(tracer.size_tests, shape)  # forwards that branch on their input's size
        if doc:
            spec = _with_doc(spec, doc)
        comment = f"archc import {source}" + "".join(f" --arg {k}={text.flow(v)}" for k, v in (args or {}).items())
        written = text.dump(spec, "\n".join([comment, *tested]))
        try:
            diff = checking.check(model, written, shape, f"<import {source}>") if check else None
        except SpecError as e:  # the spec does not rebuild the model: one line naming SOURCE, as any refusal
            raise SpecError(f"cannot import {source}: {e}") from None
    return Imported(written, spec["name"], diff, bool(doc))


def _with_doc(spec: dict[str, Any], doc: str) -> dict[str, Any]:
    """The spec with `doc:` after its input (the generated model's docstring)."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        out[key] = value
        if key == "input":
            out["doc"] = doc
    return out


def _default_input(model: Any) -> tuple[int, ...]:
    """timm's pretrained_cfg input size where there is one, else 3x224x224."""
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = cfg.get("input_size") if isinstance(cfg, dict) else None
    return tuple(size) if size else (3, 224, 224)
