"""The archc command line: build, check, summary, diff, verify.

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
    "diff": "archc diff specs/resnet50.yaml specs/resnext50_32x4d.yaml\n\n"
    "    archc diff specs/cifar/resnet.yaml --set-a params.depth=20 --set-b params.depth=56",
    "verify": "archc verify specs/resnet50.yaml\n\n    archc verify specs/densenet121.yaml --train-mode --batch 4 --json",
}
SET_HELP = "Override a spec value: PATH=VALUE, e.g. params.depth=110 or layers.layer3.repeat=8 (repeatable)."


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


def _graph(spec: str, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    from archc.lower import lower
    from archc.spec.loader import load_spec

    return lower(load_spec(spec, overrides))


def _set_option(*names: str, help: str = SET_HELP):  # type: ignore[no-untyped-def]
    return click.option(*names, "overrides" if names == ("--set",) else names[0].lstrip("-").replace("-", "_"),
                        multiple=True, metavar="PATH=VALUE", help=help)  # fmt: skip


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
@_set_option("--set")
def build(spec: str, backend: str, output: str | None, overrides: tuple[str, ...]) -> None:
    """Compile SPEC to a self-contained PyTorch or Keras module."""

    def action() -> None:
        from archc.backends import emit

        graph = _graph(spec, overrides)
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
@_set_option("--set")
def check(spec: str, overrides: tuple[str, ...]) -> None:
    """Validate SPEC: exit 0 if it compiles, else 2 with a located message."""

    def action() -> None:
        graph = _graph(spec, overrides)
        c = graph.counts
        click.echo(f"{spec}: ok ({graph.name}: output {graph.output_shape}, {c.trainable:,} trainable parameters)")

    _run(action)


@main.command(epilog="Examples:\n\n    " + EXAMPLES["summary"])
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_set_option("--set")
def summary(spec: str, as_json: bool, overrides: tuple[str, ...]) -> None:
    """Per-block output shapes, parameter counts and MACs of SPEC, from the IR."""

    def action() -> None:
        from archc.passes.summary import summarize, to_table

        report = summarize(_graph(spec, overrides))
        click.echo(json.dumps(report.to_dict(), indent=2) if as_json else to_table(report))

    _run(action)


@main.command(epilog="Examples:\n\n    " + EXAMPLES["diff"])
@click.argument("spec_a", metavar="A", type=click.Path(dir_okay=False))
@click.argument("spec_b", metavar="[B]", required=False, type=click.Path(dir_okay=False))
@_set_option("--set", help="Override applied to both A and B (repeatable).")
@_set_option("--set-a", help="Override applied to A only (repeatable).")
@_set_option("--set-b", help="Override applied to B only (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def diff(
    spec_a: str, spec_b: str | None, overrides: tuple[str, ...], set_a: tuple[str, ...], set_b: tuple[str, ...],
    as_json: bool,
) -> None:  # fmt: skip
    """Compare two specs (or one spec under two sets of overrides): per-stage output
    shapes, parameters and MACs side by side, with totals and deltas."""

    def action() -> None:
        from archc.passes.diff import diff as compare
        from archc.passes.diff import to_table
        from archc.passes.summary import summarize

        b = spec_b or spec_a
        sets_a, sets_b = (*overrides, *set_a), (*overrides, *set_b)
        report = compare(
            summarize(_graph(spec_a, sets_a)), summarize(_graph(b, sets_b)), _label(spec_a, sets_a), _label(b, sets_b)
        )
        click.echo(json.dumps(report.to_dict(), indent=2) if as_json else to_table(report))

    _run(action)


def _label(spec: str, overrides: tuple[str, ...]) -> str:
    return " ".join([spec, *(f"--set {o}" for o in overrides)])


@main.command(epilog="Examples:\n\n    " + EXAMPLES["verify"])
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
    help="Pass when the output's max |torch - keras| <= T x max(1, max |torch|).",
)  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Batch size of the random input.")
@click.option("--train-mode", is_flag=True, help="BatchNorm uses batch statistics in both backends (dropout stays off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights and the input.")
@_set_option("--set")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify(
    spec: str, tolerance: float, batch: int, train_mode: bool, seed: int, overrides: tuple[str, ...], as_json: bool
) -> None:
    """Prove that SPEC's PyTorch and Keras code compute the same function.

    Builds both in memory, gives them the same random weights (BatchNorm
    statistics included), runs one random batch through both and compares the
    output of every block. Exit 0 when they agree, 1 when they do not.
    """

    def action() -> bool:
        graph = _graph(spec, overrides)
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
