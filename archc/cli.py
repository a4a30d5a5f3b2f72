"""The archc command line: build, check, summary.

Exit status: 0 ok, 2 a mistake in the spec or the command line (one located
message, no traceback), 1 a bug in archc. None of these commands imports
torch or tensorflow.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import click

from archc import __version__
from archc.errors import SpecError

EXAMPLES = {
    "build": "archc build specs/resnet50.yaml --backend torch\n\n    archc build specs/densenet121.yaml --backend keras -o model.py",
    "check": "archc check specs/densenet121.yaml",
    "summary": "archc summary specs/resnet50.yaml --json",
}


def _fail(message: str) -> None:
    click.echo(f"archc: error: {message}", err=True)
    sys.exit(2)


def _run(action):  # type: ignore[no-untyped-def]
    """Turn user mistakes into exit 2 and archc bugs into exit 1, never a bare traceback."""
    try:
        return action()
    except SpecError as e:
        _fail(str(e))
    except click.exceptions.Exit:
        raise
    except Exception:  # a bug in archc
        click.echo("archc: internal error (a bug in archc; please report it with this trace):", err=True)
        click.echo(traceback.format_exc(), err=True)
        sys.exit(1)


def _graph(spec: str):  # type: ignore[no-untyped-def]
    from archc.lower import lower
    from archc.spec.loader import load_spec

    return lower(load_spec(spec))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archc")
def main() -> None:
    """archc: compile a CNN architecture spec (YAML) to PyTorch or Keras code."""


@main.command(epilog="Examples:\n\n    " + EXAMPLES["build"])
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--backend", "-b", type=click.Choice(["torch", "keras"]), required=True, help="Target framework.")
@click.option(
    "-o", "--output", "output", type=click.Path(dir_okay=False), default=None,
    help="Output file ('-' for stdout). Default: generated/<name>_<backend>.py.",
)  # fmt: skip
@click.option(
    "--memory-efficient", is_flag=True,
    help="torch: DenseNet layers checkpoint concat-BN-ReLU-conv by default (build_model(memory_efficient=...)).",
)  # fmt: skip
def build(spec: str, backend: str, output: str | None, memory_efficient: bool) -> None:
    """Compile SPEC to a self-contained PyTorch or Keras module."""

    def action() -> None:
        from archc.backends import emit

        if memory_efficient and backend != "torch":
            raise SpecError("--memory-efficient applies to --backend torch only")
        graph = _graph(spec)
        text = emit(graph, backend, memory_efficient=memory_efficient)
        if output == "-":
            click.echo(text, nl=False)
            return
        target = Path(output) if output else Path("generated") / f"{graph.name}_{backend}.py"
        _write_atomic(target, text)
        counts = graph.counts
        click.echo(f"wrote {target} ({counts.trainable:,} trainable + {counts.non_trainable:,} non-trainable parameters)")

    _run(action)


def _write_atomic(target: Path, text: str) -> None:
    """Write through a temporary file and rename, so no half-written module is ever left."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        raise SpecError(f"cannot write {target}: {e.strerror}") from None


@main.command(epilog="Examples:\n\n    " + EXAMPLES["check"])
@click.argument("spec", type=click.Path(dir_okay=False))
def check(spec: str) -> None:
    """Validate SPEC: exit 0 if it compiles, else 2 with a located message."""

    def action() -> None:
        graph = _graph(spec)
        c = graph.counts
        click.echo(f"{spec}: ok ({graph.name}: output {graph.output_shape}, {c.trainable:,} trainable parameters)")

    _run(action)


@main.command(epilog="Examples:\n\n    " + EXAMPLES["summary"])
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def summary(spec: str, as_json: bool) -> None:
    """Per-block output shapes and parameter counts of SPEC, from the IR."""

    def action() -> None:
        from archc.passes.summary import summarize, to_table

        report = summarize(_graph(spec))
        click.echo(json.dumps(report.to_dict(), indent=2) if as_json else to_table(report))

    _run(action)


if __name__ == "__main__":  # pragma: no cover
    main()
