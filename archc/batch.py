"""Batch builds: every spec under a directory, for one or more backends.

On a terminal a progress bar runs while building; otherwise each written module
is one plain line. Either way a final table lists what was built, with counts.
A spec with a mistake is reported and skipped; the exit status is then 2.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from archc.cli import _echo, _graph, _json, _write_atomic
from archc.errors import SpecError
from archc.passes.summary import columns


@dataclass(frozen=True)
class Built:
    spec: str
    backend: str
    model: str
    output: str
    trainable: int
    non_trainable: int


@dataclass(frozen=True)
class Failed:
    spec: str
    message: str


def find_specs(root: Path) -> list[Path]:
    if not root.is_dir():
        return [root]
    specs = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not specs:
        raise SpecError(f"{root}: no .yaml specs under this directory")
    return specs


def build_many(
    root: str, backends: tuple[str, ...], output: str | None, overrides: tuple[str, ...], as_json: bool,
    force: bool = False, memory_efficient: bool = False,
) -> None:
    from archc.backends import emit

    if output == "-":
        raise SpecError("-o - writes a single module; with a directory or several backends, -o names a directory")
    out_dir = Path(output) if output else Path("generated")
    specs = find_specs(Path(root))
    built: list[Built] = []
    failed: list[Failed] = []
    owner: dict[Path, str] = {}  # output path -> the spec that wrote it

    def build_one(spec: Path) -> None:
        try:
            graph = _graph(str(spec), overrides)
            for backend in backends:
                target = out_dir / f"{graph.name}_{backend}.py"
                if target in owner:
                    raise SpecError(f"name {graph.name!r} is also the name of {owner[target]}; {target} would be overwritten")
                text = emit(graph, backend, memory_efficient=memory_efficient and backend == "torch")
                _write_atomic(target, text, force)
                owner[target] = str(spec)
                c = graph.counts
                built.append(Built(str(spec), backend, graph.name, str(target), c.trainable, c.non_trainable))
                if not (as_json or live):
                    _echo(f"wrote {target}")
        except SpecError as e:
            failed.append(Failed(str(spec), str(e)))
            if not (as_json or live):
                _echo(click.style("failed", fg="red") + f" {e}")

    live = sys.stdout.isatty() and not as_json
    if live:
        with click.progressbar(specs, label="building", show_pos=True, item_show_func=lambda p: str(p) if p else None) as bar:
            for spec in bar:
                build_one(spec)
    else:
        for spec in specs:
            build_one(spec)
    if as_json:
        _json("build", {"built": [asdict(b) for b in built], "failed": [asdict(f) for f in failed]})
    else:
        _echo(table(built, failed, len(specs), backends))
    if failed:
        sys.exit(2)


def table(built: list[Built], failed: list[Failed], n_specs: int, backends: tuple[str, ...]) -> str:
    header = ("spec", "backend", "output", "trainable", "non-trainable")
    rows = [(b.spec, b.backend, b.output, f"{b.trainable:,}", f"{b.non_trainable:,}") for b in built]
    lines, rule = columns([header, *rows])
    out = [lines[0], rule, *lines[1:]]
    out += [click.style("FAILED", fg="red", bold=True) + f" {f.message}" for f in failed]
    per_backend = ", ".join(f"{b} {sum(x.backend == b for x in built)}" for b in backends)
    out.append(f"built {len(built)} modules from {n_specs - len(failed)} of {n_specs} specs ({per_backend}); {len(failed)} failed")
    return "\n".join(out)
