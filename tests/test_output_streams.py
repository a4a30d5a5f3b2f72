"""Every way the `archc` command prints survives a stdout it cannot write: full (/dev/full), a
pipe whose reader has gone, or closed. Each ends with exit 2 and one line on stderr, never a
traceback (archc/cli.py: `_out` for archc's output, `_Parsing` for click's --help and --version)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from archc.cli import main

SPEC = "specs/cifar/resnet20.yaml"
# command -> invocations that print to stdout ({tmp}: a fresh directory); every command is here
PRINTING = {
    "build": [
        ["build", SPEC, "-b", "torch", "-o", "-"],
        ["build", SPEC, "-b", "keras", "-o", "{tmp}/m.py"],  # the "wrote ..." line
        ["build", SPEC, "-b", "torch,keras", "-o", "{tmp}/out", "--json"],
        ["build", SPEC, "-b", "torch,keras", "-o", "{tmp}/out"],  # a line per module, then the table
    ],
    "check": [["check", SPEC], ["check", SPEC, "--json"]],
    "summary": [["summary", SPEC], ["summary", SPEC, "--json"]],
    "diff": [["diff", SPEC, "specs/cifar/resnet56.yaml"], ["diff", SPEC, "specs/cifar/resnet56.yaml", "--json"]],
    "graph": [["graph", SPEC], ["graph", SPEC, "--format", "mermaid"], ["graph", SPEC, "--json"]],
    "schema": [["schema"]],
    "completion": [["completion", "bash"]],
    "blocks": [["blocks"], ["blocks", "resnet", "--json"]],
    "verify": [pytest.param(["verify", SPEC, "--json"], marks=pytest.mark.slow)],  # builds both models
    "convert": [],  # needs a checkpoint: test_convert_success_line below
    "deploy": [["deploy", SPEC, "-o", "{tmp}/deploy"]],  # the rewrites, the check, the files written
    "import": [["import", "tests/tiny_torch_model.py:tiny", "--input", "3,16,16"]],  # the spec, checked
}
CLICK = [["--help"], ["--version"], ["check", "--help"]]  # printed by click while it parses
CASES = [case for cases in PRINTING.values() for case in cases] + CLICK
# a closed pipe and a closed stdout, for one invocation of each kind of printing
FEW = [["check", SPEC], ["blocks"], ["schema"], ["build", SPEC, "-b", "torch", "-o", "-"], ["--help"], ["--version"]]


def archc(args: list[str], tmp_path, stdout, **kwargs) -> subprocess.CompletedProcess[str]:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "archc", *args], stdout=stdout, stderr=subprocess.PIPE, text=True,
                          cwd=ROOT, env=env, timeout=600, **kwargs)  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    # (verify and convert may leave TensorFlow's start-up log lines before archc's)
    lines = [line for line in result.stderr.splitlines() if line.startswith("archc")]
    assert lines == [f"archc: error: cannot write to standard output: {message}"], result.stderr


def test_every_command_is_covered() -> None:
    assert set(PRINTING) == set(main.commands)


@pytest.mark.parametrize("args", CASES, ids=" ".join)
def test_full_stdout(args, tmp_path) -> None:
    with open("/dev/full", "w") as full:
        result = archc(args, tmp_path, full)
    one_line(result, "No space left on device")
    if not any(arg.startswith("verify") for arg in args):
        assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("args", FEW, ids=" ".join)
def test_closed_pipe(args, tmp_path) -> None:
    read, write = os.pipe()
    os.close(read)  # nobody will read: the first write fails with EPIPE
    try:
        result = archc(args, tmp_path, write)
    finally:
        os.close(write)
    one_line(result, "Broken pipe")


@pytest.mark.parametrize("args", FEW, ids=" ".join)
def test_closed_stdout(args, tmp_path) -> None:
    result = archc(args, tmp_path, None, preexec_fn=lambda: os.close(1))  # Python starts with sys.stdout None
    one_line(result, "it is closed")


def test_convert_success_line(tmp_path) -> None:
    """convert writes DST, then says so: to a full stdout that is the one-line error too."""
    make = (
        "import sys, torch\n"
        "from archc import api\n"
        "model = api.load_module(api.to_ir(sys.argv[1]), 'torch').build_model()\n"
        "torch.save(model.state_dict(), sys.argv[2])\n"
    )
    src, dst = tmp_path / "r20.pth", tmp_path / "r20.weights.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    made = subprocess.run([sys.executable, "-c", make, SPEC, str(src)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    with open("/dev/full", "w") as full:
        result = archc(["convert", SPEC, str(src), str(dst)], tmp_path, full)
    one_line(result, "No space left on device")
    assert dst.is_file()
