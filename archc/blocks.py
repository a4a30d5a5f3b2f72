"""`archc blocks [LIBRARY]`: the block kinds a library provides, with their parameters,
defaults, connectivity and docs, read from the library files themselves (validated like
any `use:`), so the listing cannot drift from what specs get."""

from __future__ import annotations

import difflib
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

from archc.errors import Location, SpecError
from archc.spec.loader import LIBRARY_DIR, validate
from archc.spec.models import BlockDef, LibrarySpec
from archc.spec.yamlsrc import load_yaml_bytes, read_spec_bytes


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # int | float | bool
    default: object  # None when required
    required: bool


@dataclass(frozen=True)
class Block:
    name: str
    doc: str
    params: tuple[Param, ...]
    connectivity: str  # none | skip
    shortcuts: tuple[str, ...]  # e.g. "projection (downsample, when the shape changes)"
    layers: tuple[str, ...]  # layer names, in order; `after` layers follow a "+"
    checks: tuple[str, ...]


@dataclass(frozen=True)
class Library:
    name: str
    file: str
    doc: str
    blocks: tuple[Block, ...]


def shipped() -> list[str]:
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.yaml"))


def load(ref: str | None = None) -> list[Library]:
    """Every shipped library, or one: a shipped name or a path to a library file."""
    refs = shipped() if ref is None else [ref]
    out = []
    for name in refs:
        if name.endswith((".yaml", ".yml")):
            path, shown = Path(name), name
        elif name in shipped():
            path, shown = LIBRARY_DIR / f"{name}.yaml", f"archc/library/{name}.yaml"
        else:
            hint = difflib.get_close_matches(name, shipped(), n=1)
            raise SpecError(
                f"unknown library {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (shipped libraries: {', '.join(shipped())}; a path must end in .yaml)"
            )  # fmt: skip
        data, smap = load_yaml_bytes(read_spec_bytes(path), shown)
        if not (isinstance(data, dict) and "library" in data):
            raise SpecError(f"{shown} is not a block library (it has no `library:` key)", Location(shown))
        spec: LibrarySpec = validate(LibrarySpec, data, smap)
        out.append(Library(spec.library, shown, spec.doc, tuple(_block(n, b) for n, b in spec.blocks.items())))
    return out


def _block(name: str, b: BlockDef) -> Block:
    params = []
    for pname, decl in b.params.items():
        if isinstance(decl, str):  # a type name: the parameter is required
            params.append(Param(pname, str(decl), None, True))
        else:
            kind = "bool" if isinstance(decl, bool) else "int" if isinstance(decl, int) else "float"
            params.append(Param(pname, kind, decl, False))
    shortcuts = []
    for sc in b.shortcuts:
        when = {"shape_changes": "where the shape changes", "always": "always"}.get(str(sc.when), f"when {sc.when}")
        source = f", from {sc.input}" if sc.input else ""
        shortcuts.append(f"{sc.kind} ({sc.name}, {when}{source})")
    layers = tuple(next(iter(e)) for e in b.layers) + (("+", *(next(iter(e)) for e in b.after)) if b.after else ())
    checks = tuple(c.that for c in b.checks)
    return Block(name, b.doc, tuple(params), b.connectivity, tuple(shortcuts), layers, checks)


def to_text(libraries: list[Library]) -> str:
    lines: list[str] = []
    for lib in libraries:
        if lines:
            lines.append("")
        lines.append(f"{lib.name} ({lib.file}): {len(lib.blocks)} block kinds")
        lines.extend(textwrap.wrap(lib.doc, 88, initial_indent="  ", subsequent_indent="  "))
        for block in lib.blocks:
            lines.append("")
            connectivity = "skip connection" if block.connectivity == "skip" else "sequential"
            lines.append(f"  {block.name}  [{connectivity}]")
            lines.extend(textwrap.wrap(block.doc, 88, initial_indent="    ", subsequent_indent="    "))
            params = ", ".join(f"{p.name}: {p.type} (required)" if p.required else f"{p.name} = {_value(p.default)}" for p in block.params)
            lines.append(f"    params: {params or 'none'}")
            if block.shortcuts:
                otherwise = "" if any("always" in s for s in block.shortcuts) else "; otherwise identity"
                lines.append(f"    shortcut: {'; else '.join(block.shortcuts)}{otherwise}")
            lines.append(f"    layers: {' -> '.join(block.layers)}")
            if block.checks:
                lines.append(f"    checks: {'; '.join(block.checks)}")
    return "\n".join(lines)


def _value(v: object) -> str:
    return "true" if v is True else "false" if v is False else str(v)


def to_dict(libraries: list[Library]) -> dict[str, object]:
    return {"libraries": [asdict(lib) for lib in libraries]}
