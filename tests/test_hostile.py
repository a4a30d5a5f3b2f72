"""The hostile corpus: every file in tests/hostile/ is a broken or malicious spec.

Each starts with `# expect: TEXT` and marks the line the error must point at with
`#<`. Through the real CLI (`build --backend torch`, or the backend a second line
`# backend: NAME` names, for one backend's limits), each must end in exit 2 with one
line naming `file:line` and TEXT, no traceback, nothing written. (How fast: bench/corpus.py.)
"""

from pathlib import Path

import pytest
from click.testing import CliRunner

from archc.cli import main

HOSTILE = Path(__file__).parent / "hostile"
CORPUS = sorted(p.name for p in HOSTILE.glob("*.yaml"))


def expectation(path: Path) -> tuple[str, int]:
    lines = path.read_bytes().split(b"\n")
    expect = lines[0].decode("ascii").removeprefix("# expect: ").replace("#<", "").strip()
    line = next(i for i, text in enumerate(lines, start=1) if b"#<" in text)
    return expect, line


def backend_of(path: Path) -> str:
    second = path.read_bytes().split(b"\n")[1]
    return second.decode("ascii").removeprefix("# backend: ").strip() if second.startswith(b"# backend: ") else "torch"


@pytest.fixture(scope="module")
def runner():
    runner = CliRunner()
    runner.invoke(main, ["check", str(HOSTILE.parent.parent / "specs" / "resnet18.yaml")])  # imports, warm caches
    return runner


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("name", CORPUS)
def test_hostile_spec(name, runner, tmp_path, monkeypatch):
    expect, line = expectation(HOSTILE / name)
    out = tmp_path / "out"
    monkeypatch.chdir(HOSTILE)
    backend = backend_of(HOSTILE / name)
    result = runner.invoke(main, ["build", name, "--backend", backend, "-o", str(out / "model.py")])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = result.stderr
    assert message.endswith("\n") and message.count("\n") == 1, message
    assert message.startswith(f"archc: error: {name}:{line}:") or message.startswith(f"archc: error: {name}:{line} "), message
    assert expect in message, message
    assert "Traceback" not in message
    assert not out.exists()
    if backend != "torch":  # one backend's limit: the other builds it
        other = runner.invoke(main, ["build", name, "--backend", "torch", "-o", str(out / "model.py")])
        assert other.exit_code == 0, other.output
        assert f": {backend} backend: " in message and message.rstrip().endswith("(--backend torch)"), message


# --- docs/errors.md is generated from the corpus -------------------------------------------

KINDS = {
    "yaml": "Unsafe or malformed YAML: object tags, aliases that expand without bound, duplicate keys, bad bytes.",
    "key": "Unknown or missing keys (with a did-you-mean hint).",
    "type": "Values of the wrong type or range.",
    "layer": "Layers that are not layers, or whose options do not fit.",
    "name": "Names that would not be safe, distinct Python identifiers in the generated module.",
    "expr": "Expressions outside the small arithmetic language, or out of its bounds.",
    "limit": "Specs that would produce an absurd graph; each names the limit that stops it.",
    "shape": "Channel and spatial mismatches, with the shapes involved.",
    "rank": "Tensor rank: a per-dimension list with a value count other than the map's spatial dimensions, an op "
    "that cannot follow the map's rank (1-D (C, L) or 3-D (C, D, H, W)), a backend that cannot.",
    "block": "Block kinds and their parameters.",
    "check": "`checks:` rules that fail; their messages fill in `{param}` and nothing else.",
    "use": "Block libraries that are missing, misnamed or not libraries.",
    "extends": "`extends:` bases that are missing, are libraries, or loop through symlinks; patches of an "
    "inherited list by entry name that name no entry, or patch what has no names.",
    "init": "Initialisation rules that are unknown, out of range, or do not fit their tensor, their place in a block "
    "kind, or a backend.",
    "flow": "Dataflow mistakes: reading an unknown or later tensor, merging shapes that do not fit, a gate of "
    "the wrong size, a condition that is not true or false.",
    "parallel": "Module lists (`parallel:`): paths written with names or conditions, paths that are not modules, a "
    "module list inside a sequence, paths whose outputs do not merge, a grid deeper than rows of paths.",
    "inputs": "Block kinds with several inputs (`inputs:`): an instance giving another number of tensors, an input "
    "nothing reads, a name taken twice, a stage or a skip connection over several inputs.",
    "outputs": "Block kinds with several outputs (`outputs:`): an output that is not a layer of the kind or that "
    "nothing reads, an instance that is conditional, unnamed or inside a list (which passes one tensor on), a stage.",
    "table": "Tables of stages (`stages:`): a row of another length than the columns, a column that is neither `repeat`, "
    "a parameter of the kind nor read, one written twice or shadowing a parameter the table reads, a row's value "
    "that reads the columns or an index, a table outside a model-level list or under `if:`.",
}
DOC = Path(__file__).parent.parent / "docs" / "errors.md"


def errors_doc() -> str:
    """docs/errors.md: every error kind with the corpus file that shows it and its message."""
    import os

    runner, cwd = CliRunner(), os.getcwd()
    out = [
        "# archc error messages",
        "",
        "Every mistake in a spec ends in exit status 2 and one line, `archc: error: file:line:col: message`,",
        "never a traceback and never a written file. The examples below are the hostile corpus",
        "in `tests/hostile/`, which the test suite runs; the line shown is the one the error points at.",
        "Regenerate this file with `python tests/test_hostile.py`.",
    ]
    os.chdir(HOSTILE)
    try:
        for kind, text in KINDS.items():
            out += ["", f"## {kind}", "", text, ""]
            for name in (n for n in CORPUS if n.split("_")[0] == kind):
                _, line = expectation(HOSTILE / name)
                shown = (HOSTILE / name).read_bytes().split(b"\n")[line - 1].replace(b"#<", b"").strip()
                shown = shown.decode("utf-8", "replace")
                shown = shown if shown.isprintable() else ascii(shown)
                shown = shown if len(shown) <= 80 else shown[:77] + "..."
                message = runner.invoke(main, ["check", name]).stderr.strip().removeprefix("archc: error: ")
                out += [f"- `{name}`: `{shown or '(empty)'}`", "  ```", f"  {message}", "  ```"]
    finally:
        os.chdir(cwd)
    return "\n".join(out) + "\n"


def test_errors_doc_is_current():
    assert set(KINDS) == {name.split("_")[0] for name in CORPUS}
    assert DOC.read_text(encoding="utf-8") == errors_doc(), "docs/errors.md is stale; run `python tests/test_hostile.py`"


if __name__ == "__main__":
    DOC.write_text(errors_doc(), encoding="utf-8")
