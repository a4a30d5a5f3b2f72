"""The hostile corpus: every file in tests/hostile/ is a broken or malicious spec.

Each starts with `# expect: TEXT` and marks the line the error must point at with
`#<`. Through the real CLI, each must end in exit 2 with one line naming
`file:line` and TEXT, no traceback, nothing written, in under a second.
"""

import time
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
    start = time.perf_counter()
    result = runner.invoke(main, ["build", name, "--backend", "torch", "-o", str(out / "model.py")])
    elapsed = time.perf_counter() - start
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = result.stderr
    assert message.endswith("\n") and message.count("\n") == 1, message
    assert message.startswith(f"archc: error: {name}:{line}:") or message.startswith(f"archc: error: {name}:{line} "), message
    assert expect in message, message
    assert "Traceback" not in message
    assert not out.exists()
    assert elapsed < 1.0, f"{name} took {elapsed:.2f} s"
