"""The archc command line: build, check, summary, verify.

Exit status: 0 ok, 2 a mistake in the spec or the command line (one located
message, no traceback), 1 a bug in archc (or, for verify, backends that
disagree). Only verify imports torch and keras, inside the command.
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
    "verify": "archc verify specs/resnet50.yaml\n\n    archc verify specs/densenet121.yaml --train-mode --batch 4 --json",
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
def build(spec: str, backend: str, output: str | None) -> None:
    """Compile SPEC to a self-contained PyTorch or Keras module."""

    def action() -> None:
        from archc.backends import emit

        graph = _graph(spec)
        text = emit(graph, backend)
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


@main.command(epilog="Examples:\n\n    " + EXAMPLES["verify"])
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
    help="Pass when max |torch - keras| <= T x max(1, max |torch|), for every block.",
)  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Batch size of the random input.")
@click.option("--train-mode", is_flag=True, help="BatchNorm uses batch statistics in both backends (dropout stays off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights and the input.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(spec: str, tolerance: float, batch: int, train_mode: bool, seed: int, as_json: bool) -> None:
    """Prove that SPEC's PyTorch and Keras code compute the same function.

    Builds both in memory, gives them the same random weights (BatchNorm
    statistics included), runs one random batch through both and compares the
    output of every block. Exit 0 when they agree, 1 when they do not.
    """

    def action() -> bool:
        graph = _graph(spec)
        if train_mode and batch < 2:
            raise SpecError("--train-mode needs --batch 2 or more: batch statistics of one sample are degenerate")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter
        try:
            from archc import verify as verifier
        except ImportError as e:
            raise SpecError(f"archc verify needs PyTorch and Keras ({e}); install them with pip install 'archc[torch,keras]'") from None
        report = verifier.verify(graph, tolerance=tolerance, batch=batch, train_mode=train_mode, seed=seed)
        click.echo(json.dumps(report.to_dict(), indent=2) if as_json else verifier.to_table(report))
        return report.ok

    sys.exit(0 if _run(action) else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
