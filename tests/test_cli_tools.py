"""Batch builds, check and summary of a directory, --help examples, --json conventions,
shell completion and NO_COLOR."""

import json
import shlex
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT

from archc.cli import EXAMPLES, main

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


@pytest.mark.parametrize("command", [None, *main.commands])
def test_help_prints_examples_as_written(command):
    """On a narrow terminal too, each example is one whole line: pasting a line runs what it says
    (a wrapped `# PyTorch -> Keras` once ran `PyTorch -` with its output sent to a file `Keras`)."""
    args = [command, "--help"] if command else ["--help"]
    lines = [line.strip() for line in CliRunner().invoke(main, args, terminal_width=40).output.splitlines()]
    examples = EXAMPLES[command or "completion"]
    assert examples and all(example in lines for example in examples), lines
    if command:  # every line after "Examples:" is one of them
        assert [line for line in lines[lines.index("Examples:") + 1 :] if line] == list(examples)


@pytest.mark.parametrize("example", [e for examples in EXAMPLES.values() for e in examples])
def test_help_examples_are_valid_commands(example):
    words = shlex.split(example.split(" | ")[0], comments=True)
    if words[0] == "eval":  # eval "$(archc completion bash)"
        words = words[1].removeprefix("$(").removesuffix(")").split()
    assert words[0] == "archc"
    main.commands[words[1]].make_context(words[1], words[2:])  # raises on an unknown option or a missing argument


def _specs_dir(tmp_path):
    specs = tmp_path / "specs"
    (specs / "cifar").mkdir(parents=True)
    shutil.copy(ROOT / "specs/resnet18.yaml", specs / "a.yaml")
    shutil.copy(ROOT / "specs/cifar/resnet20.yaml", specs / "cifar/resnet20.yaml")
    shutil.copy(ROOT / "specs/cifar/resnet.yaml", specs / "cifar/resnet.yaml")  # what resnet20.yaml extends
    (specs / "c.yaml").write_text("archc: 1\nname: bad\ninput: [3, 8, 8]\nlayers:\n  - c: {conv: {filters: 4}}\n")
    return specs


def test_check_a_directory(tmp_path):
    specs = _specs_dir(tmp_path)
    result = CliRunner().invoke(main, ["check", str(specs)])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == f"{specs / 'a.yaml'}: ok (resnet18: output (1000,), 11,689,512 trainable parameters)"
    assert lines[1].startswith(f"failed {specs / 'c.yaml'}:5:") and "missing required key 'kernel'" in lines[1]
    assert lines[2] == f"{specs / 'cifar/resnet.yaml'}: ok (cifar_resnet: output (10,), 269,722 trainable parameters)"
    assert lines[3] == f"{specs / 'cifar/resnet20.yaml'}: ok (resnet20: output (10,), 269,722 trainable parameters)"
    assert lines[4:] == ["checked 4 specs: 3 ok, 1 failed"]
    data = json.loads(CliRunner().invoke(main, ["check", str(specs), "--json", "--set", "input[1]=64"]).stdout)
    assert data["command"] == "check" and [r["spec"] for r in data["specs"]] == [str(specs / n) for n in ("a.yaml", "cifar/resnet.yaml", "cifar/resnet20.yaml")]
    assert data["specs"][0]["output_shape"] == [1000] and data["specs"][1]["trainable"] == 269_722
    assert [f["spec"] for f in data["failed"]] == [str(specs / "c.yaml")]
    (specs / "c.yaml").unlink()
    assert CliRunner().invoke(main, ["check", str(specs)]).exit_code == 0


def test_summary_of_a_directory_and_to_a_file(tmp_path):
    specs = _specs_dir(tmp_path)
    result = CliRunner().invoke(main, ["summary", str(specs), "--batch", "2"])
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["spec", "model", "output", "shape", "trainable", "non-trainable", "MACs", "activations,", "batch", "2"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert rows[str(specs / "a.yaml")][1:6] == ["resnet18", "(1000,)", "11,689,512", "9,600", "1.81"]  # torchvision's 1.81 GFLOPS
    assert rows[str(specs / "cifar/resnet20.yaml")][1:5] == ["resnet20", "(10,)", "269,722", "1,376"]
    assert lines[5].startswith(f"FAILED {specs / 'c.yaml'}:5:") and lines[6] == "summarized 3 of 4 specs; 1 failed"
    (specs / "c.yaml").unlink()
    out = tmp_path / "all.json"
    assert CliRunner().invoke(main, ["summary", str(specs), "--json", "-o", str(out)]).stdout == ""
    data = json.loads(out.read_text())
    assert [r["spec"] for r in data["specs"]] == [str(specs / n) for n in ("a.yaml", "cifar/resnet.yaml", "cifar/resnet20.yaml")]
    assert round(data["specs"][0]["macs"] / 1e9, 2) == 1.81 and data["failed"] == []  # torchvision: 1.81 GFLOPS
    one = tmp_path / "one.txt"
    written = CliRunner().invoke(main, ["summary", "specs/cifar/resnet20.yaml", "-o", str(one)])
    assert written.exit_code == 0 and written.stdout == ""
    assert one.read_text() == CliRunner().invoke(main, ["summary", "specs/cifar/resnet20.yaml"]).stdout


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
