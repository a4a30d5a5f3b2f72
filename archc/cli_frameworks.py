"""`archc verify` and `archc convert`: the commands of archc.cli that build the model in both
frameworks and run it, in a module of their own (archc.verify and archc.convert do the work;
each imports torch and keras inside the command)."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path

import click

from archc.cli import _echo, _graph, _json, _out, _run, _set_option, _silence, main
from archc.cli_examples import examples
from archc.errors import SpecError


def _finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number")
    return value


@main.command(epilog=examples("verify"))
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True, callback=_finite,
    help="Pass when the output's max |torch - keras| <= T x max(1, max |torch|).",
)  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=2, show_default=True, help="Batch size of the random input.")
@click.option("--train-mode", is_flag=True, help="BatchNorm uses batch statistics in both backends (dropout stays off).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights and the input.")
@_set_option("--set")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all-rows", is_flag=True, help="Print every block; by default long runs of agreeing blocks are folded.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
def verify(
    spec: str, tolerance: float, batch: int, train_mode: bool, seed: int, overrides: tuple[str, ...], as_json: bool,
    all_rows: bool, progress: bool | None,
) -> None:
    """Prove that SPEC's PyTorch and Keras code compute the same function.

    Builds both in memory, gives them the same random weights (BatchNorm
    statistics included), runs one random batch through both and compares the
    output of every block. Exit 0 when they agree, 1 when they do not. The report
    names the Keras backend (KERAS_BACKEND) and the versions of torch, keras and
    that backend.
    """

    def action() -> bool:
        graph = _graph(spec, overrides)
        if train_mode and batch < 2:
            raise SpecError("--train-mode needs --batch 2 or more: batch statistics of one sample are degenerate")
        show = sys.stderr is not None and sys.stderr.isatty() if progress is None else progress
        try:
            from archc import verify as verifier
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in ("torch", "keras", "tensorflow", "numpy"):
                raise  # a bug in archc, not a missing runtime
            raise SpecError(f"archc verify needs PyTorch and Keras ({e}); install them with pip install 'archc[torch,keras]'") from None
        report = verifier.verify(
            graph, tolerance=tolerance, batch=batch, train_mode=train_mode, seed=seed, progress=_bar() if show else None
        )
        if as_json:
            _json("verify", report.to_dict())
        else:
            _out(verifier.to_table(report, all_rows=all_rows))
        return report.ok

    sys.exit(0 if _run(action) else 1)


@main.command(epilog=examples("convert"))
@click.argument("spec", type=click.Path(dir_okay=False))
@click.argument("src", type=click.Path(dir_okay=False))
@click.argument("dst", type=click.Path(dir_okay=False))
@_set_option("--set")
@click.option(
    "--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-4, show_default=True,
    help="Write DST only when the output's max |torch - keras| <= T x max(1, max |torch|) on a random batch.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace DST if it exists.")
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr (default: when stderr is a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def convert(
    spec: str, src: str, dst: str, overrides: tuple[str, ...], tolerance: float, force: bool, progress: bool | None,
    as_json: bool,
) -> None:  # fmt: skip
    """Convert SRC's weights for SPEC's model from PyTorch to Keras or back: a
    `.weights.h5` file is Keras (keras.Model.save_weights), `.pth`/`.pt`/`.bin` a
    PyTorch state_dict (read with torch.load(weights_only=True)).

    Builds both models in memory, checks SRC tensor by tensor against the spec
    (exit 2 naming the first missing, unexpected, misshapen, sparse, complex, integer
    or non-finite tensor; a pickled model is refused, never run), moves the
    weights through the IR, and writes DST only if one random batch gives the same
    output in both frameworks (exit 1 otherwise)."""

    def action() -> None:
        from archc import convert as converter

        for path in (src, dst):
            converter.kind_of(path)  # a name that says no framework fails before anything is built
        target = Path(dst)
        if target.exists() and not force:
            raise SpecError(f"{dst} exists; pass --force to replace it")
        graph = _graph(spec, overrides)
        show = sys.stderr.isatty() if progress is None else progress
        try:
            result = converter.convert(graph, Path(src), target, tolerance=tolerance, progress=_bar() if show else None)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in ("torch", "keras", "tensorflow", "h5py"):
                raise
            raise SpecError(f"archc convert needs PyTorch and Keras ({e}); install them with pip install 'archc[torch,keras]'") from None
        except converter.ConversionMismatch as e:
            with contextlib.suppress(SpecError):  # a full stderr does not turn archc's bug into a user error
                _echo(click.style("archc: error:", fg="red", bold=True) + f" {e}", err=True)
            sys.exit(1)
        if as_json:
            _json("convert", {"spec": spec, "model": graph.name, "src": src, "dst": dst, "direction": result.direction,
                              "tensors": result.tensors, "max_abs": result.max_abs, "magnitude": result.magnitude,
                              "tolerance": result.tolerance})  # fmt: skip
            return
        source, target_kind = result.direction.split("->")
        _out(
            f"wrote {dst} ({graph.name}, {source} -> {target_kind}, {result.tensors} tensors; "
            f"outputs agree: max |torch - keras| {result.max_abs:.2e})"
        )

    _run(action)


def _bar():  # type: ignore[no-untyped-def]
    """progress(step, done, total) drawing one line per step on stderr, while stderr takes it."""

    def report(step: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        try:
            sys.stderr.write(f"\r{step:<9}[{'#' * filled}{'.' * (width - filled)}] {done}/{total}{end}")
            sys.stderr.flush()
        except (OSError, AttributeError):  # a full or closed stderr: the bar is decoration, the work goes on
            _silence(sys.stderr)

    return report
