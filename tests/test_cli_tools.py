"""Batch builds, --help examples, --json conventions, shell completion and NO_COLOR."""

import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT

from archc.cli import main

COMMANDS = ["build", "check", "summary", "diff", "graph", "schema", "completion"]


def test_batch_build_matches_generated(tmp_path):
    """specs/cifar for both backends: byte-identical to the committed generated/ files."""
    result = CliRunner().invoke(main, ["build", str(ROOT / "specs/cifar"), "--backend", "torch,keras", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.iterdir())
    specs = len(list((ROOT / "specs/cifar").glob("*.yaml")))
    assert len(written) == 2 * specs
    for name in written:
        assert (tmp_path / name).read_text() == (ROOT / "generated" / name).read_text(), name
    lines = result.output.splitlines()
    # not a terminal: one plain line per module, before the table
    assert sorted(lines[: 2 * specs]) == [f"wrote {tmp_path / n}" for n in written]
    assert lines[-1] == f"built {2 * specs} modules from {specs} of {specs} specs (torch {specs}, keras {specs}); 0 failed"
    assert any("densenet_bc100_k12_keras.py" in line and "769,162" in line and "23,988" in line for line in lines)


def test_batch_build_reports_failures(tmp_path):
    specs = tmp_path / "specs"
    specs.mkdir()
    shutil.copy(ROOT / "specs/resnet18.yaml", specs / "a.yaml")
    shutil.copy(ROOT / "specs/resnet18.yaml", specs / "b.yaml")  # the same model name
    (specs / "c.yaml").write_text("archc: 1\nname: bad\ninput: [3, 8, 8]\nlayers:\n  - c: {conv: {filters: 4}}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", str(specs), "-b", "torch", "-o", str(out), "--json"])
    assert result.exit_code == 2
    data = json.loads(result.output)
    assert data["command"] == "build" and [b["spec"] for b in data["built"]] == [str(specs / "a.yaml")]
    assert [f["spec"] for f in data["failed"]] == [str(specs / "b.yaml"), str(specs / "c.yaml")]
    assert "would be overwritten" in data["failed"][0]["message"]
    assert f"{specs / 'c.yaml'}:5:" in data["failed"][1]["message"]
    assert [p.name for p in out.iterdir()] == ["resnet18_torch.py"]


def test_build_rejects_unknown_backend():
    result = CliRunner().invoke(main, ["build", "specs/resnet18.yaml", "-b", "torch,jax"])
    assert result.exit_code == 2 and "'jax' is not a backend" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0 and "Examples:" in result.output and f"archc {command}" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["check", "specs/cifar/resnet20.yaml"],
        ["summary", "specs/cifar/resnet20.yaml"],
        ["diff", "specs/cifar/resnet20.yaml", "specs/cifar/resnet56.yaml"],
        ["graph", "specs/cifar/resnet20.yaml"],
        ["build", "specs/cifar/resnet20.yaml", "-b", "torch", "-o", "{tmp}/m.py"],
    ],
)
def test_json_conventions(args, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["command"] == args[0]
    text = json.dumps(data)
    assert '"trainable": 269722' in text or '"trainable": 853018' in text or args[0] == "graph"


def test_shell_completion():
    runner = CliRunner()
    env = {"_ARCHC_COMPLETE": "bash_complete", "COMP_WORDS": "archc gr", "COMP_CWORD": "1"}
    result = runner.invoke(main, [], env=env, prog_name="archc")
    assert "plain,graph" in result.output.split()
    env = {"_ARCHC_COMPLETE": "bash_complete", "COMP_WORDS": "archc build x.yaml --backend to", "COMP_CWORD": "4"}
    result = runner.invoke(main, [], env=env, prog_name="archc")
    assert result.output.split() == ["plain,torch", "plain,torch,keras"]
    script = runner.invoke(main, ["completion", "bash"]).output
    assert "_ARCHC_COMPLETE=bash_complete" in script and "complete " in script


def test_no_color(tmp_path, monkeypatch):
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\n")
    colored = CliRunner().invoke(main, ["check", str(bad)], color=True)
    assert colored.exit_code == 2 and "\x1b[" in colored.output
    monkeypatch.setenv("NO_COLOR", "1")
    plain = CliRunner().invoke(main, ["check", str(bad)], color=True)
    assert plain.exit_code == 2 and "\x1b[" not in plain.output and plain.output.startswith("archc: error: ")


def test_new_commands_import_no_framework(tmp_path):
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from archc.cli import main\n"
        "r = CliRunner()\n"
        "for args in (['graph', 'specs/resnet50.yaml', '--level', 'layers'], ['schema'],\n"
        "             ['summary', 'specs/resnet50.yaml', '--level', 'layers', '--json'],\n"
        f"             ['build', 'specs/cifar', '-b', 'torch,keras', '-o', {str(tmp_path)!r}]):\n"
        "    assert r.invoke(main, args).exit_code == 0, args\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
