"""The archc command line: build, check, summary, diff, graph, schema, completion, verify,
convert, blocks.

Exit status: 0 ok, 2 a mistake in the spec or the command line (one located
message, no traceback), 1 a bug in archc (or, for verify, backends that
disagree). Only verify imports torch and keras, inside the command.
`--json` output is always one JSON object whose "command" key
names the command, with counts as plain integers and shapes as lists. Colour is
used only on a terminal, and never when NO_COLOR is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from pathlib import Path

import click

from archc import __version__
from archc.cli_examples import EXAMPLES, examples
from archc.errors import SpecError, SpecWarning

GRAPH_FORMATS = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".svg": "svg", ".png": "png"}
SET_HELP = "Override a spec value: PATH=VALUE, e.g. params.depth=110 or layers.layer3.repeat=8 (repeatable)."


def _color() -> bool | None:
    """None lets click decide (colour on a terminal only); NO_COLOR turns it off everywhere."""
    return False if os.environ.get("NO_COLOR") else None


def _echo(message: str = "", **kwargs) -> None:  # type: ignore[no-untyped-def]
    _out(message, color=_color(), **kwargs)


def _out(message: str | bytes = "", **kwargs) -> None:  # type: ignore[no-untyped-def]
    """click.echo: everything archc prints goes through here (and click's own --help and
    --version through _Parsing), so a stream that cannot be written is always the same error."""
    err = bool(kwargs.get("err"))
    if (sys.stderr if err else sys.stdout) is None:
        raise _cannot_write(err)
    try:
        click.echo(message, **kwargs)
    except OSError as e:
        raise _cannot_write(err, e) from None


def _cannot_write(err: bool, error: OSError | None = None) -> SpecError:
    """stdout (or stderr) closed, or failing (a full disk, a pipe whose reader has gone): a user
    error, exit 2 with one line, never a traceback. A stream that failed is pointed at
    /dev/null, so that Python's flush at exit does not fail again."""
    stream, name = (sys.stderr, "standard error") if err else (sys.stdout, "standard output")
    if error is None:
        return SpecError(f"cannot write to {name}: it is closed")
    _silence(stream)
    return SpecError(f"cannot write to {name}: {error.strerror or error}")


def _silence(stream) -> None:  # type: ignore[no-untyped-def]
    """Point a stream that failed at /dev/null, so Python's flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


def _json(command: str, payload: dict, output: str = "-") -> None:  # type: ignore[type-arg]
    _write(json.dumps({"command": command, **payload}, indent=2), output)


def _write(text: str, output: str = "-") -> None:
    """`text` and a newline on stdout ('-') or, atomically, in the file `output`."""
    if output == "-":
        _out(text)
    else:
        from archc.output import write_atomic  # imports the IR: here only

        write_atomic(Path(output), text + "\n", guard=False)  # a report, not a module: no header to check


def _fail(message: str) -> None:
    # one line, even if a message from a library holds a newline
    with contextlib.suppress(SpecError):  # stderr itself may be closed or full: the exit status still says it
        _echo(click.style("archc: error:", fg="red", bold=True) + " " + " ".join(message.splitlines()), err=True)
    sys.exit(2)


def _warn(warning: SpecWarning) -> None:
    with contextlib.suppress(SpecError):
        _echo(" ".join(str(warning).splitlines()), err=True)


def _run(action):  # type: ignore[no-untyped-def]
    """Turn user mistakes into exit 2 and archc bugs into exit 1, never a bare traceback;
    print a valid spec's warnings (`file:line:col: warning: ...`) on stderr."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpecWarning)
            result = action()
        for w in caught:  # only for a spec that is otherwise fine: an error is the one line then
            if isinstance(w.message, SpecWarning):
                _warn(w.message)
        return result
    except SpecError as e:
        _fail(str(e))
    except click.exceptions.Exit:
        raise
    except RecursionError:  # a limit archc forgot to bound is still the input's fault, not a crash
        _fail("input nested too deeply for archc (RecursionError); please report it as a missing limit")
    except Exception:  # a bug in archc
        with contextlib.suppress(OSError, ValueError):
            click.echo("archc: internal error (a bug in archc; please report it with this trace):", err=True)
            import traceback

            click.echo(traceback.format_exc(), err=True)
        sys.exit(1)


def _graph(spec: str, overrides: tuple[str, ...] = ()):  # type: ignore[no-untyped-def]
    from archc.api import to_ir

    return to_ir(spec, overrides)


def _set_option(*names: str, help: str = SET_HELP):  # type: ignore[no-untyped-def]
    return click.option(*names, "overrides" if names == ("--set",) else names[0].lstrip("-").replace("-", "_"),
                        multiple=True, metavar="PATH=VALUE", help=help)  # fmt: skip


def _backends(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if value is None:  # summary's default: no backend
        return ()
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",")))
    for name in names:
        if name not in ("torch", "keras"):
            raise click.BadParameter(f"{name!r} is not a backend; use torch, keras or torch,keras")
    return names


def _complete_backends(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [b for b in ("torch", "keras", "torch,keras") if b.startswith(incomplete)]


class _Parsing:
    """click prints --help and --version while it parses the command line (make_context),
    where no command's _run is there to catch a failed write."""

    def make_context(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return super().make_context(*args, **kwargs)  # type: ignore[misc]
        except OSError as e:  # parsing writes nothing else
            _fail(str(_cannot_write(False, e)))
        except click.exceptions.Exit:  # it printed --help or --version, and stops
            if sys.stdout is None:  # click prints nothing to a closed stdout, and says nothing
                _fail(str(_cannot_write(False)))
            raise


class _Command(_Parsing, click.Command):
    pass


class _Group(_Parsing, click.Group):
    command_class = _Command


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Colour follows NO_COLOR. Shell completion:\n\n\b\n  " + EXAMPLES["completion"][0],
)
@click.version_option(__version__, prog_name="archc")
def main() -> None:
    """archc: compile a CNN architecture spec (YAML) to PyTorch or Keras code."""


@main.command(epilog=examples("build"))
@click.argument("spec", type=click.Path())
@click.option(
    "--backend", "-b", "backends", required=True, callback=_backends, shell_complete=_complete_backends,
    metavar="torch|keras|torch,keras", help="Target framework(s), comma-separated; only their limits apply.",
)  # fmt: skip
@click.option(
    "-o", "--output", "output", type=click.Path(), default=None,
    help="Output file ('-' for stdout); a directory when SPEC is a directory or there are several "
    "backends. Default: generated/<name>_<backend>.py.",
)  # fmt: skip
@click.option(
    "--memory-efficient", is_flag=True,
    help="torch: DenseNet layers checkpoint concat-BN-ReLU-conv by default (build_model(memory_efficient=...)).",
)  # fmt: skip
@_set_option("--set")
@click.option("--force", is_flag=True, help="Overwrite an existing file that archc did not generate.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report of what was built.")
def build(
    spec: str, backends: tuple[str, ...], output: str | None, memory_efficient: bool, overrides: tuple[str, ...],
    force: bool, as_json: bool,
) -> None:  # fmt: skip
    """Compile SPEC to a self-contained PyTorch or Keras module. SPEC may be a directory:
    every spec under it (recursively, in sorted order) is built, with a final table.
    With several backends, every module of a spec is written or none is. With --set,
    -o is required: generated/ holds the modules of the unmodified specs."""
    if memory_efficient and "torch" not in backends:
        _fail("--memory-efficient applies to --backend torch only")
    if overrides and output is None:
        _fail(
            "--set changes the model, so name its output with -o (the default generated/<name>_<backend>.py "
            "is the unmodified spec's module)"
        )
    if Path(spec).is_dir() or len(backends) > 1:
        _run(lambda: _build_many(spec, backends, output, overrides, as_json, force, memory_efficient))
        return
    backend = backends[0]

    def action() -> None:
        from archc.backends import emit

        graph = _graph(spec, overrides)
        text = emit(graph, backend, memory_efficient=memory_efficient)
        if output == "-" and as_json:
            raise SpecError("-o - and --json would both write to stdout; choose one")
        if output == "-":
            _out(text, nl=False)
            return
        from archc.output import write_atomic

        target = Path(output) if output else Path("generated") / f"{graph.name}_{backend}.py"
        write_atomic(target, text, force)
        counts = graph.counts
        if as_json:
            row = {"spec": spec, "backend": backend, "model": graph.name, "output": str(target),
                   "trainable": counts.trainable, "non_trainable": counts.non_trainable}  # fmt: skip
            _json("build", {"built": [row], "failed": []})
            return
        _out(f"wrote {target} ({counts.trainable:,} trainable + {counts.non_trainable:,} non-trainable parameters)")

    _run(action)


def _build_many(
    root: str, backends: tuple[str, ...], output: str | None, overrides: tuple[str, ...], as_json: bool,
    force: bool, memory_efficient: bool,
) -> None:  # fmt: skip
    """A directory, or one spec for several backends: build each spec (all its modules or
    none), report each as it goes, then a table (or JSON) of the whole batch."""
    from dataclasses import asdict

    from archc.batch import Batch, Failed, find_specs

    if output == "-":
        raise SpecError("-o - writes a single module; with a directory or several backends, -o names a directory")
    specs = find_specs(Path(root))
    batch = Batch(backends, Path(output) if output else Path("generated"), overrides, force, memory_efficient)
    live = sys.stdout is not None and sys.stdout.isatty() and not as_json
    items = (
        click.progressbar(specs, label="building", show_pos=True, item_show_func=lambda p: str(p) if p else None)
        if live else contextlib.nullcontext(specs)
    )  # fmt: skip
    with items as iterate:
        for spec in iterate:
            outcome = batch.build(spec)
            if as_json or live:
                continue
            if isinstance(outcome, Failed):
                _echo(click.style("failed", fg="red") + f" {outcome.message}")
            for b in outcome if isinstance(outcome, list) else ():
                _echo(f"wrote {b.output}")
    result = batch.result
    if as_json:
        _json("build", {"built": [asdict(b) for b in result.built], "failed": [asdict(f) for f in result.failed]})
    else:
        _echo(_batch_table(result))
    if result.failed:
        sys.exit(2)


def _batch_table(result) -> str:  # type: ignore[no-untyped-def]
    from archc.passes.summary import columns

    header = ("spec", "backend", "output", "trainable", "non-trainable")
    rows = [(b.spec, b.backend, b.output, f"{b.trainable:,}", f"{b.non_trainable:,}") for b in result.built]
    lines, rule = columns([header, *rows])
    out = [lines[0], rule, *lines[1:]]
    out += [click.style("FAILED", fg="red", bold=True) + f" {f.message}" for f in result.failed]
    per_backend = ", ".join(f"{b} {sum(x.backend == b for x in result.built)}" for b in result.backends)
    n = result.n_specs
    out.append(f"built {len(result.built)} modules from {n - len(result.failed)} of {n} specs ({per_backend}); {len(result.failed)} failed")
    return "\n".join(out)


@main.command(epilog=examples("check"))
@click.argument("spec", type=click.Path())
@click.option(
    "--backend", "-b", "backends", default="torch,keras", show_default=True, callback=_backends,
    shell_complete=_complete_backends, metavar="torch|keras|torch,keras",
    help="Whose limits apply: ok means `archc build` for these works.",
)  # fmt: skip
@_set_option("--set")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(spec: str, backends: tuple[str, ...], overrides: tuple[str, ...], as_json: bool) -> None:
    """Validate SPEC: exit 0 if it compiles for every backend of --backend (both by
    default), else 2 with a located message that names the backend that refuses it. SPEC
    may be a directory: every spec under it (recursively, in sorted order) is checked, one
    line each, then a count; exit 2 if any failed."""

    def checked(path: str):  # type: ignore[no-untyped-def]
        from archc.backends import check as check_backends

        graph = _graph(path, overrides)
        check_backends(graph, backends)  # what a backend rejects, check rejects: ok means each of those builds works
        return graph

    def row(path: str, graph) -> dict:  # type: ignore[no-untyped-def, type-arg]
        c = graph.counts
        return {"spec": path, "model": graph.name, "ok": True, "backends": list(backends),
                "output_shape": list(graph.output_shape.as_tuple()),
                "outputs": {o.key: list(o.shape.as_tuple()) for o in graph.outputs},
                "trainable": c.trainable, "non_trainable": c.non_trainable}  # fmt: skip

    def line(path: str, graph) -> str:  # type: ignore[no-untyped-def]
        shown = ", ".join(f"{o.key} {o.shape}" for o in graph.outputs) if graph.outputs else graph.output_shape
        what = "outputs" if graph.outputs else "output"
        return f"{path}: ok ({graph.name}: {what} {shown}, {graph.counts.trainable:,} trainable parameters)"

    def action() -> None:
        if not Path(spec).is_dir():
            graph = checked(spec)
            if as_json:
                _json("check", row(spec, graph))
            else:
                _out(line(spec, graph))
            return
        rows, failed = [], []
        for path, outcome in _each(spec, checked):
            if isinstance(outcome, SpecError):
                failed.append({"spec": path, "message": str(outcome)})
                if not as_json:
                    _echo(click.style("failed", fg="red") + f" {outcome}")
            else:
                rows.append(row(path, outcome))
                if not as_json:
                    _out(line(path, outcome))
        if as_json:
            _json("check", {"specs": rows, "failed": failed})
        else:
            _out(f"checked {len(rows) + len(failed)} specs: {len(rows)} ok, {len(failed)} failed")
        if failed:
            sys.exit(2)

    _run(action)


def _each(root: str, action):  # type: ignore[no-untyped-def]
    """(path, action(path) or the SpecError it raised) for every spec under the directory
    `root`, in sorted order; a spec's warnings are printed as it is done, an error's are not."""
    from archc.batch import find_specs

    for spec in find_specs(Path(root)):
        path = str(spec)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SpecWarning)
            try:
                outcome = action(path)
            except SpecError as e:
                outcome = e
        for w in caught if not isinstance(outcome, SpecError) else ():
            if isinstance(w.message, SpecWarning):
                _warn(w.message)
        yield path, outcome


@main.command(epilog=examples("summary"))
@click.argument("spec", type=click.Path())
@click.option("--level", type=click.Choice(["blocks", "layers"]), default="blocks", show_default=True,
              help="blocks: model-level layers, blocks and stages; layers: every layer of the expanded graph.")  # fmt: skip
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Batch size for the activation-memory estimate.")  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", help="Output file ('-', the default: stdout).")
@click.option(
    "--backend", "-b", "backends", default=None, callback=_backends, shell_complete=_complete_backends,
    metavar="torch|keras|torch,keras",
    help="Also refuse what these backends cannot build (default: none; the figures are the same for both).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_set_option("--set")
def summary(
    spec: str, level: str, batch: int, output: str, backends: tuple[str, ...], as_json: bool, overrides: tuple[str, ...]
) -> None:
    """Output shape, trainable and non-trainable parameters and MACs of every block (or
    layer) of SPEC, with totals and an activation-memory estimate, from the IR.

    MACs: multiply-accumulates of convolutions and dense layers (torchvision's "GFLOPS"
    column; BN, activations, pooling, add and concat are not counted). Activations:
    float32 bytes of every layer's output for --batch samples.

    SPEC may be a directory: one row of totals per spec under it (recursively, in sorted
    order), with --json every spec's full report; exit 2 if any failed."""

    def action() -> None:
        from archc.passes.summary import overview, summarize, to_table

        def summarized(path: str):  # type: ignore[no-untyped-def]
            graph = _graph(path, overrides)
            if backends:
                from archc.backends import check as check_backends

                check_backends(graph, backends)
            return summarize(graph, level, batch)

        if not Path(spec).is_dir():
            report = summarized(spec)
            if as_json:
                _json("summary", report.to_dict(), output)
            else:
                _write(to_table(report), output)
            return
        done, failed = [], []
        for path, outcome in _each(spec, summarized):
            if isinstance(outcome, SpecError):
                failed.append({"spec": path, "message": str(outcome)})
            else:
                done.append((path, outcome))
        if as_json:
            _json("summary", {"specs": [{"spec": p, **r.to_dict()} for p, r in done], "failed": failed}, output)
        else:
            lines = [overview(done, batch), *(f"FAILED {f['message']}" for f in failed)]
            lines.append(f"summarized {len(done)} of {len(done) + len(failed)} specs; {len(failed)} failed")
            _write("\n".join(lines), output)
        if failed:
            sys.exit(2)

    _run(action)


@main.command(epilog=examples("diff"))
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
        if as_json:
            _json("diff", report.to_dict())
        else:
            _out(to_table(report))

    _run(action)


@main.command(epilog=examples("graph"))
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--format", "-f", "fmt", type=click.Choice(["dot", "mermaid", "svg", "png"]), default=None,
              help="Output format. Default: from -o's extension (.dot .gv .mmd .svg .png), else dot.")  # fmt: skip
@click.option("--level", type=click.Choice(["blocks", "layers"]), default="blocks", show_default=True,
              help="blocks: one box per block (stages as 'block ×n'); layers: every layer.")  # fmt: skip
@click.option("--expand", is_flag=True, help="At block level, draw every block of a stage.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", help="Output file ('-', the default: stdout).")
@_set_option("--set")
@click.option("--json", "as_json", is_flag=True, help="The diagram's nodes and edges as JSON.")
def graph(spec: str, fmt: str | None, level: str, expand: bool, output: str, overrides: tuple[str, ...], as_json: bool) -> None:
    """Draw SPEC: blocks (or layers) as boxes, edges labelled with tensor shapes, skip
    connections dashed green, dense (concat) connections bold red. dot and mermaid are
    text; svg and png are rendered by Graphviz's `dot`, which must be installed."""

    def action() -> None:
        from dataclasses import asdict

        from archc.passes.diagram import diagram, render, to_dot, to_mermaid

        d = diagram(_graph(spec, overrides), level, expand)
        if as_json:
            _json("graph", {"model": d.name, "level": d.level, "nodes": [asdict(n) for n in d.nodes],
                            "edges": [asdict(e) for e in d.edges]})  # fmt: skip
            return
        form = fmt or GRAPH_FORMATS.get(Path(output).suffix.lower(), "dot")
        if form in ("svg", "png"):
            data: str | bytes = render(to_dot(d), form)
        else:
            data = to_mermaid(d) if form == "mermaid" else to_dot(d)
        if output != "-":
            from archc.output import write_atomic

            write_atomic(Path(output), data, guard=False)  # a diagram, not a module: no header to check
        elif isinstance(data, bytes):
            if sys.stdout is not None and sys.stdout.isatty():
                raise SpecError(f"{form} is binary; write it to a file with -o FILE.{form}")
            _out(data, nl=False)
        else:
            _out(data, nl=False)

    _run(action)


@main.command(epilog=examples("schema"))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="-", help="Output file ('-', the default: stdout).")
def schema(output: str) -> None:
    """Print the JSON Schema of the spec language (for editors: completion and inline errors).

    Zoo specs point at docs/archc.schema.json in their first line:
    `# yaml-language-server: $schema=../docs/archc.schema.json`."""

    def action() -> None:
        from archc.schema import schema_text

        if output == "-":
            _out(schema_text(), nl=False)
        else:
            from archc.output import write_atomic

            write_atomic(Path(output), schema_text(), guard=False)  # JSON has no header to check

    _run(action)


@main.command(epilog=examples("completion"))
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell-completion script for SHELL (the same as _ARCHC_COMPLETE=SHELL_source archc)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    _run(lambda: _out(cls(main, {}, "archc", "_ARCHC_COMPLETE").source()))  # type: ignore[misc]


def _label(spec: str, overrides: tuple[str, ...]) -> str:
    return " ".join([spec, *(f"--set {o}" for o in overrides)])


@main.command(epilog=examples("blocks"))
@click.argument("library", required=False)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def blocks(library: str | None, as_json: bool) -> None:
    """List the block kinds of the shipped libraries (or of LIBRARY: a shipped name such
    as resnet, or a path to a library .yaml) with their parameters, defaults, shortcuts,
    layers and docs: what `use:` makes available to `block:` and `stage:`."""

    def action() -> None:
        from archc import blocks as listing

        libraries = listing.load(library)
        if as_json:
            _json("blocks", listing.to_dict(libraries))
        else:
            _out(listing.to_text(libraries))

    _run(action)


import archc.cli_deploy  # noqa: E402, F401 - registers `archc deploy` on `main`
import archc.cli_frameworks  # noqa: E402, F401 - registers `archc verify` and `archc convert` on `main`
import archc.cli_import  # noqa: E402, F401 - registers `archc import` on `main`

if __name__ == "__main__":  # pragma: no cover
    main()
