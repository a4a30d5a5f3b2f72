"""`archc import`: a command of archc.cli in a module of its own (archc.importer does the work)."""

from __future__ import annotations

from pathlib import Path

import click

from archc.cli import _out, _run, main
from archc.cli_examples import examples
from archc.errors import SpecError


def _input_shape(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        dims = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected channels and sizes, e.g. 3,224,224") from None
    if not 2 <= len(dims) <= 4 or min(dims) < 1:
        raise click.BadParameter(f"{value!r}: expected 2 to 4 positive sizes, e.g. 3,224,224")
    return dims


@main.command("import", epilog=examples("import"))
@click.argument("source")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
@click.option("--input", "input_shape", callback=_input_shape, metavar="C,H,W",
              help="Input shape without the batch (default: timm's input_size, else 3,224,224).")  # fmt: skip
@click.option("--arg", "args", multiple=True, metavar="NAME=VALUE",
              help="Keyword argument of the model's constructor or factory (value read as YAML).")  # fmt: skip
@click.option("--no-check", is_flag=True, help="Write the spec without building it and comparing outputs.")
def import_(source: str, output: str | None, input_shape: tuple[int, ...] | None, args: tuple[str, ...], no_check: bool) -> None:
    """Write a spec that rebuilds the PyTorch model SOURCE: torchvision:NAME, timm:NAME, or
    path/to/file.py:FACTORY (a function returning an nn.Module).

    One block kind per module class, the values that differ between its instances as
    parameters, runs of instances as stages, module names (and so state_dict keys) the
    original's. Unless --no-check, nothing is written until the spec, built by archc, loads
    the original's state_dict strictly and gives its outputs (relative difference <= 1e-5);
    what archc cannot express is one line naming the module (exit 2)."""

    def action() -> None:
        from archc.importer import import_spec
        from archc.importer.source import parse_args

        result = import_spec(source, input_shape, parse_args(args), check=not no_check)
        if output is None:
            _out(result.text, nl=False)
            return
        try:
            Path(output).write_text(result.text)
        except OSError as e:
            raise SpecError(f"{output}: cannot write: {e.strerror or e}") from None
        checked = "not checked" if result.diff is None else f"checked: strict load, outputs within {result.diff:.1e}"
        sized = "; exact at this input shape only: its forwards read sizes (see the spec's comment)" if result.input_only else ""
        _out(f"wrote {output} ({result.name}, {result.text.count(chr(10))} lines; {checked}{sized})", err=True)

    _run(action)
