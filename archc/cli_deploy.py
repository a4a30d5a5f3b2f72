"""`archc deploy`: a command of archc.cli in a module of its own (archc.deploy.run does the work)."""

from __future__ import annotations

from pathlib import Path

import click

from archc.cli import _out, _run, _set_option, main
from archc.cli_examples import examples
from archc.errors import SpecError


@main.command(epilog=examples("deploy"))
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write to.",
)
@click.option(
    "--weights", type=click.Path(dir_okay=False),
    help="A PyTorch state_dict of SPEC's model: written in the deploy form as DIR/NAME_deploy.pth and .weights.h5.",
)  # fmt: skip
@_set_option("--set")
@click.option(
    "--tolerance", type=click.FloatRange(min=0, min_open=True), default=1e-5, show_default=True,
    help="Write only when the outputs differ by at most T x max(1, max |output|) (float64, eval mode).",
)  # fmt: skip
def deploy(
    spec: str,
    output: str,
    weights: str | None,
    overrides: tuple[str, ...],
    tolerance: float,
) -> None:
    """Write SPEC's inference form to DIR: the deploy spec NAME_deploy.yaml (batch norms
    folded into the conv or dense layer before them, or after them where exact, dropout and stochastic depth removed,
    parallel linear branches that meet at an add merged into one conv) and its generated
    PyTorch and Keras modules.

    Nothing is written unless the deploy model, given the training model's weights moved
    to it (random ones with non-trivial batch-norm statistics, or --weights), gives the
    training model's outputs in eval mode; a mismatch names the first module that differs."""

    def action() -> None:
        from archc.api import load_spec

        try:
            from archc.deploy.run import deploy as run
        except (
            ModuleNotFoundError
        ) as e:  # pragma: no cover - torch is a dependency of the checks
            raise SpecError(
                f"archc deploy needs PyTorch ({e}); install it with pip install 'archc[torch]'"
            ) from None
        loaded = load_spec(spec, overrides)
        result = run(
            loaded,
            Path(output),
            weights=Path(weights) if weights else None,
            tolerance=tolerance,
        )
        counts = f"{result.train.counts.trainable:,} -> {result.deploy.counts.trainable:,} trainable parameters"
        if not result.plan.steps:
            _out(
                f"{result.train.name}: nothing to fold, remove or merge; the deploy form is the training form ({counts})"
            )
        else:
            _out(f"{result.train.name}: {len(result.plan.steps)} rewrites, {counts}")
            for step in result.plan.steps:
                _out(f"  {step}")
        _out(
            f"outputs agree: max relative difference {result.max_rel:.1e} in float64 (the rewrites; tolerance {tolerance:g}), "
            f"{result.max_rel32:.1e} in float32 (rounding; the training model's own float32 rounding is {result.own_rel32:.1e})"
        )
        _out("wrote " + ", ".join(str(p) for p in result.files))

    _run(action)
