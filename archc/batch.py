"""Batch builds: every spec under a directory (or one spec), for one or more backends.

`Batch.build(spec)` compiles one spec for every backend in memory and writes its
modules all-or-nothing; a spec with a mistake is recorded and skipped. The CLI
drives it (progress bar, one line per module) and renders the `BatchResult`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from archc.errors import Location, SpecError
from archc.output import write_all


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


@dataclass
class BatchResult:
    backends: tuple[str, ...]
    n_specs: int = 0
    built: list[Built] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)


def find_specs(root: Path) -> list[Path]:
    if not root.is_dir():
        return [root]
    specs = sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    if not specs:
        raise SpecError(f"{root}: no .yaml specs under this directory")
    return specs


@dataclass
class Batch:
    backends: tuple[str, ...]
    out_dir: Path
    overrides: tuple[str, ...] = ()
    force: bool = False
    memory_efficient: bool = False
    result: BatchResult = field(init=False)
    owner: dict[Path, str] = field(default_factory=dict)  # output path -> the spec that wrote it

    def __post_init__(self) -> None:
        self.result = BatchResult(self.backends)

    def build(self, spec: Path) -> list[Built] | Failed:
        """Build `spec` for every backend, writing all its modules or none of them."""
        from archc.api import to_ir
        from archc.backends import emit

        self.result.n_specs += 1
        try:
            graph = to_ir(str(spec), self.overrides)
            files: dict[Path, str] = {}
            for backend in self.backends:
                target = self.out_dir / f"{graph.name}_{backend}.py"
                if target in self.owner:
                    raise SpecError(
                        f"model name {graph.name!r} is also the name of {self.owner[target]}; "
                        f"{target} would be overwritten (rename one model)",
                        Location(str(spec)),
                    )
                files[target] = emit(graph, backend, memory_efficient=self.memory_efficient and backend == "torch")
            write_all(files, self.force)
        except SpecError as e:
            failed = Failed(str(spec), str(e))
            self.result.failed.append(failed)
            return failed
        c = graph.counts
        built = [Built(str(spec), b, graph.name, str(t), c.trainable, c.non_trainable) for b, t in zip(self.backends, files)]
        self.owner.update((t, str(spec)) for t in files)
        self.result.built += built
        return built
