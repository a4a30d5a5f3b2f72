"""Read a spec file and the block libraries it uses into validated models.

Every pydantic error becomes one `SpecError` at the YAML line that caused it.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from archc.errors import Location, SpecError, SpecWarning
from archc.spec.compose import apply_overrides, from_override, load_chain
from archc.spec.models import (
    _ITEM_KEYS,
    BlockDef,
    LibrarySpec,
    ModelSpec,
    build_validators,
)
from archc.spec.yamlsrc import (
    SourceMap,
    load_yaml_bytes,
    load_yaml_text,
    read_spec_bytes,
)

LIBRARY_DIR = Path(__file__).resolve().parent.parent / "library"


@dataclass(frozen=True)
class BlockSource:
    """A block definition and where it was written (for located errors)."""

    name: str
    definition: BlockDef
    source: SourceMap
    path: tuple[Any, ...]  # path of the definition inside its file

    def locate(self, *sub: Any) -> Location:
        return self.source.locate((*self.path, *sub))


@dataclass(frozen=True)
class LoadedSpec:
    """A validated model spec, where its values were written, and the block kinds it can use."""

    model: ModelSpec
    source: SourceMap
    blocks: dict[str, BlockSource]
    sha256: str  # of every file in the extends chain, every library it uses and every override
    path: str
    overrides: tuple[str, ...] = ()

    def locate(self, *sub: Any) -> Location:
        return self.source.locate(sub)


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSpec:
    """Load a model spec, the specs it extends and the libraries it uses, then apply
    `overrides` (`--set` texts such as "params.depth=110") in order."""
    path = Path(path)
    if path.is_absolute() and path.is_relative_to(Path.cwd()):
        path = path.relative_to(Path.cwd())  # generated headers name the spec the same way from anywhere here
    data, smap, raws = load_chain(path)
    return _finish(data, smap, raws, overrides)


def load_spec_text(text: str, file: str = "<string>", overrides: Sequence[str] = ()) -> LoadedSpec:
    data, smap = load_yaml_text(text, file)
    return _finish(data, smap, [text.encode()], overrides)


def _finish(data: Any, smap: SourceMap, raws: list[bytes], overrides: Sequence[str]) -> LoadedSpec:
    if isinstance(data, dict) and "library" in data and "layers" not in data:
        raise SpecError("this is a block library; pass a model spec (or `use:` this library from one)", smap.locate(()))
    data = apply_overrides(data, smap, overrides)
    model = validate(ModelSpec, data, smap)
    _warn_unused_params(data, smap)
    blocks: dict[str, BlockSource] = {}
    libraries: list[bytes] = []  # their text decides the code as much as the spec's does
    for i, ref in enumerate(model.use):
        where = smap.locate(("use", i))
        if ref in model.use[:i]:
            raise SpecError(f"library {ref!r} is listed twice", where)
        # a path is relative to the file that names it (which may be a base spec), not to the working directory
        base_dir = Path.cwd() if from_override(where) else Path(where.file).parent
        lib_path = LIBRARY_DIR / f"{ref}.yaml" if "." not in ref else (base_dir / ref)
        if "." not in ref and not lib_path.exists():
            shipped = sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))
            import difflib  # error messages only: not imported by a successful check

            hint = difflib.get_close_matches(ref, shipped, n=1)
            raise SpecError(
                f"unknown library {ref!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (shipped libraries: {', '.join(shipped)}; a path must end in .yaml)",
                where,
            )  # fmt: skip
        shown = f"archc/library/{ref}.yaml" if "." not in ref else str(_shown(lib_path))  # not the install path
        lib_bytes = read_spec_bytes(lib_path, where)
        libraries.append(lib_bytes)
        lib_data, lib_map = load_yaml_bytes(lib_bytes, shown)
        if not (isinstance(lib_data, dict) and "library" in lib_data):
            raise SpecError(f"{ref} is not a block library (it has no `library:` key)", where)
        library = validate(LibrarySpec, lib_data, lib_map)
        for name, definition in library.blocks.items():
            if name in blocks:
                raise SpecError(f"block {name!r} is defined by two libraries ({blocks[name].source.file}, {lib_map.file})", where)
            blocks[name] = BlockSource(name, definition, lib_map, ("blocks", name))
    for name, definition in model.blocks.items():
        blocks[name] = BlockSource(name, definition, smap, ("blocks", name))  # local blocks override libraries
    parts = [*raws, *libraries, *(o.encode() for o in overrides)]
    if len(parts) == 1:
        sha256 = hashlib.sha256(parts[0]).hexdigest()  # what `sha256sum spec.yaml` prints
    else:
        sha256 = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).hexdigest()
    return LoadedSpec(model, smap, blocks, sha256, smap.file, tuple(overrides))


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _warn_unused_params(data: dict[str, Any], smap: SourceMap) -> None:
    """A model parameter that no expression, argument or check message names is probably a
    typo or a leftover: warn (`file:line:col: warning: ...`), as it is still a valid spec.
    (A parameter's own definition cannot name it: that would be an unknown name.)"""
    used: set[str] = set()
    stack: list[Any] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(v for k, v in value.items() if k != "doc")
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            used.update(_WORD.findall(value))
    for name in data.get("params") or {}:
        if name not in used:
            where = smap.locate_key(("params", name))
            warnings.warn(SpecWarning(f"parameter {name!r} is declared but never used", where), stacklevel=2)


def _shown(path: Path) -> Path:
    """A path as messages show it: relative to the working directory when under it."""
    path = Path(os.path.normpath(path.absolute()))
    return path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path


def validate(model_type: type[BaseModel], data: Any, smap: SourceMap) -> Any:
    if not isinstance(data, dict):
        raise SpecError("a spec is a mapping; start with `archc: 1`", smap.locate(()))
    build_validators()
    try:
        return model_type.model_validate(data)
    except ValidationError as e:
        raise _located(e, data, smap) from None


def _located(err: ValidationError, data: Any, smap: SourceMap) -> SpecError:
    errors = err.errors(include_url=False)
    # Union branches each report an error; the one a person wants is the
    # deepest one that came from our own validators or an unknown key.
    def rank(e: dict[str, Any]) -> tuple[int, int]:
        order = ("extra_forbidden", "value_error", "finite_number", "unknown_layer", "missing")
        return (order.index(e["type"]) if e["type"] in order else len(order), -len(e["loc"]))

    e = sorted(errors, key=rank)[0]
    path = _data_path(e["loc"], data)
    message = e["msg"].removeprefix("Value error, ")
    shown = ".".join(_short(str(p)) for p in path) or "spec"
    if e["type"] == "extra_forbidden":
        key = path[-1] if path else ""
        import difflib  # error messages only: not imported by a successful check

        hint = difflib.get_close_matches(str(key), _known_keys(_siblings(data, path)), n=1)
        message = f"unknown key {_short(repr(key))}" + (f"; did you mean {hint[0]!r}?" if hint else "; see docs/spec.md")
    elif e["type"] == "unknown_layer":
        message = _unknown_layer(e.get("input"), message)
    elif e["type"] == "missing":
        message = f"missing required key {e['loc'][-1]!r}"
    elif _bare_kind(e.get("input")):  # `- layernorm`: an unnamed entry of a kind with no shorthand
        message = _needs_options(e["input"])
    elif e["type"] in _SHOW_INPUT:
        message = f"{message}, got {_short(repr(e.get('input')))}"
    where = smap.locate_key(path) if e["type"] == "extra_forbidden" else smap.locate(path)
    if RESERVED in message:  # every reserved name at once, not one error per run
        others = []
        for other in errors:
            if other is not e and RESERVED in other["msg"]:
                at = smap.locate(_data_path(other["loc"], data))
                text = f"{_short(repr(other.get('input')))} at {at}"
                if at != where and text not in others:
                    others.append(text)
        if others:
            message += f"; also used by the generated code: {', '.join(others)}"
    return SpecError(f"{shown}: {message}", where)


RESERVED = "is used by the generated code"


def _unknown_layer(given: Any, message: str) -> str:
    """`unknown layer kind 'batchnrm'; did you mean 'batchnorm'?`, before the list of kinds."""
    from archc.spec import models

    words = [given] if isinstance(given, str) else [k for k in given if k not in ("from", "if")] if isinstance(given, dict) else []
    if not words or not isinstance(words[0], str):
        return message
    if _bare_kind(given):
        return _needs_options(given)
    if isinstance(given, dict) and words[0] in models._SHORTHANDS and words[0] not in models.ITEMS:
        return _shorthand_with_keys(words[0], given)
    import difflib  # error messages only: not imported by a successful check

    hint = difflib.get_close_matches(words[0], [*models._ITEM_KEYS, *models._SHORTHANDS], n=1)
    guess = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"unknown layer kind {_short(repr(words[0]))}{guess} ({message})"


def _flow(value: Any) -> str:
    """A value as YAML flow text, for a message that shows how to write it."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(map(_flow, value)) + "]"
    return str(value)


def _bare_kind(given: Any) -> bool:
    from archc.spec import models

    return isinstance(given, str) and given in models.ITEMS and given not in models._SHORTHANDS


def _needs_options(kind: str) -> str:
    """`- ln: layernorm`: a kind with required options has no shorthand."""
    from archc import ops

    args = ops.KINDS[kind].args_model() if kind in ops.KINDS else None
    if isinstance(args, type) and issubclass(args, BaseModel):
        needed = [f.alias or n for n, f in args.model_fields.items() if f.is_required()]
        example = "{" + ", ".join(f"{n}: ..." for n in needed) + "}" if needed else "{...}"
    else:  # a merge: the tensors it reads; a block, stage or list: see docs/spec.md
        example = "[a, b]" if kind in ops.KINDS else "..."
    what = "the tensors it reads" if example == "[a, b]" else "its options"
    return f"{kind} needs {what}, so it has no shorthand: write `{{{kind}: {example}}}` (see docs/spec.md)"


def _shorthand_with_keys(name: str, given: dict[str, Any]) -> str:
    """`{relu: {}, from: x}`: a shorthand is a whole layer; with options or keys it is written as its kind."""
    from archc.spec import models

    ((kind, args),) = models._SHORTHANDS[name].items()
    options = given[name]
    merged = {**args, **options} if isinstance(options, dict) else args
    rest = {k: v for k, v in given.items() if k != name}
    forms = [_flow({kind: merged, **rest})]
    if list(merged) == ["fn"]:
        forms.insert(0, _flow({kind: merged["fn"], **rest}))
    return (
        f"{name!r} is a shorthand for a whole layer, not a layer kind: with options or other keys write "
        + " or ".join(f"`{_short(f)}`" for f in forms)
    )


_SHOW_INPUT = (
    "int_type", "float_type", "bool_type", "string_type", "literal_error", "greater_than_equal",
    "tuple_type", "list_type", "dict_type", "model_type", "model_attributes_type", "finite_number",
)  # fmt: skip


def _short(text: str, limit: int = 60) -> str:
    """User text quoted in a message, cut so the message stays one readable line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _data_path(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """The longest path of pydantic location parts that exists in the YAML data.

    Locations carry union tags (`stage`, `conv`, ...) besides keys; a tag may
    also be a key (`stage: bottleneck`), so each tag is tried both ways.
    The search is memoised on (position in `loc`, node): the node fixes the path taken to
    reach it, so each pair is solved once and the cost is at most len(loc) * depth steps
    (trying both readings of every tag without it was exponential in nesting).
    """
    memo: dict[tuple[int, int], tuple[Any, ...]] = {}

    def walk(i: int, node: Any) -> tuple[Any, ...]:
        """The longest continuation from `node` for loc[i:] (the first found on a tie)."""
        key = (i, id(node))
        if key in memo:
            return memo[key]
        best: tuple[Any, ...] = ()
        if i < len(loc):
            part = "with" if loc[i] == "with_" else loc[i]
            exists = isinstance(node, dict) and part in node
            exists |= isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if part in _ITEM_KEYS or not exists:
                best = walk(i + 1, node)  # skip the tag first: on a tie, the later key wins
            if exists:
                taken = (part, *walk(i + 1, node[part]))
                best = taken if len(taken) > len(best) else best
        memo[key] = best
        return best

    return walk(0, data)


def _siblings(data: Any, path: tuple[Any, ...]) -> set[str]:
    """The other keys of the mapping that holds the last key of `path`."""
    node = data
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return set()
    return {str(k) for k in node if k != path[-1]} if isinstance(node, dict) else set()


def _known_keys(siblings: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """The keys valid where an unknown key is written, for "did you mean" hints: those of the
    model (spec, block kind, layer arguments, ...) whose keys the mapping's other keys fit best;
    every key the language knows when nothing tells."""
    from archc import ops
    from archc.spec import models

    fields: list[set[str]] = []
    for obj in [*vars(models).values(), *(op.args_model() for op in ops.KINDS.values())]:
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            fields.append({f.alias or n for n, f in obj.model_fields.items()})
    best = max((len(siblings & keys) for keys in fields), default=0)
    if siblings and best:
        return sorted({k for keys in fields if len(siblings & keys) == best for k in keys})
    return sorted({k for keys in fields for k in keys})
