"""A missing dependency skips its tests locally and fails them in CI (conftest.need): a broken
environment cannot pass `make test` by skipping whole modules."""

import ast
import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, in_ci, missing, need

NO_SUCH = "archc_no_such_module_for_the_test"


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("True", True), ("", False), ("false", False), ("0", False)])
def test_in_ci_reads_the_ci_variable(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_need_imports(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert need("json") is json


def test_missing_module_skips_locally(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=NO_SUCH):
        need(NO_SUCH)


def test_missing_module_fails_in_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=f"{NO_SUCH}.*CI installs it"):
        need(NO_SUCH)


def test_a_broken_import_fails_even_locally(monkeypatch, tmp_path):
    """Only a module that is not installed skips: an import that fails otherwise is a bug."""
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "archc_test_broken.py").write_text("from json import no_such_name\n")
    with pytest.raises(ImportError, match="no_such_name"):
        need("archc_test_broken")


@pytest.mark.parametrize("ci, status, outcome", [("", 5, "1 skipped"), ("true", 2, "1 error")])
def test_module_level_need_fails_the_run_in_ci(tmp_path, ci, status, outcome):
    """The whole run: a test module that needs a missing module at import is one skipped module
    locally (no test collected: pytest's exit 5), a collection error (exit 2) in CI."""
    (tmp_path / "test_needs.py").write_text(f"from conftest import need\n\nneed({NO_SUCH!r})\n\n\ndef test_x():\n    pass\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--rootdir", str(tmp_path), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert result.returncode == status, result.stdout + result.stderr
    assert outcome in result.stdout.splitlines()[-1]


def test_tests_do_not_skip_on_import_errors_themselves():
    """Every test module imports what the environment should have through conftest.need (or
    conftest.ruff_executable); pytest.importorskip or an `except ImportError` would skip in CI."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == "conftest.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "importorskip":
                offenders.append(f"{path.name}:{node.lineno}: pytest.importorskip")
            caught = ast.unparse(node.type) if isinstance(node, ast.ExceptHandler) and node.type else ""
            if "ImportError" in caught or "ModuleNotFoundError" in caught:
                offenders.append(f"{path.name}:{node.lineno}: except {caught}")
    assert not offenders, offenders


def fake_python(path, name, log):
    """An executable that logs its name and arguments and exits with $STATUS_<NAME> (default 0)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\nexit "${{STATUS_{name.upper()}:-0}}"\n')
    path.chmod(0o755)


@pytest.mark.parametrize("target", ["test", "test-slow"])
@pytest.mark.parametrize("main, parity, ok", [(0, 0, True), (1, 0, False), (0, 1, False), (5, 0, False), (0, 5, False)])
def test_make_runs_both_environments_and_fails_if_either_did(tmp_path, target, main, parity, ok):
    """`make test` and `make test-slow` run the main environment's tests and the parity tests
    whatever the first run's status, and fail if either failed; pytest's exit 5 (no test ran)
    fails too. The environments are stand-ins that log their command lines."""
    make = shutil.which("make") or missing("make")
    log = tmp_path / "log"
    for name in ("venv", "tvenv"):
        fake_python(tmp_path / name / "bin" / "python", name, log)
        (tmp_path / name / ".installed").touch()  # newer than the requirements: no install
    env = {**os.environ, "STATUS_VENV": str(main), "STATUS_TVENV": str(parity)}
    result = subprocess.run(
        [make, "-s", target, f"VENV={tmp_path / 'venv'}", f"TVENV={tmp_path / 'tvenv'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    (main_run, parity_run) = log.read_text().splitlines()
    assert main_run.startswith("venv -m pytest") and "--ignore=tests/test_torchvision.py --ignore=tests/test_timm.py --ignore=tests/test_import.py" in main_run
    assert parity_run.startswith("tvenv -m pytest") and parity_run.split()[-3:] in (
        ["tests/test_torchvision.py", "tests/test_timm.py", "tests/test_import.py"],
        ["tests/test_import.py", "-m", "slow"],
    )
    assert ("-m slow" in main_run and "-m slow" in parity_run) is (target == "test-slow")


@pytest.mark.parametrize("statuses, ok", [((0, 0), True), ((1, 0), False), ((0, 1), False)])
def test_ci_runs_the_suite_then_the_slow_tests(tmp_path, statuses, ok):
    """.ci/run sets CI=true and runs `make test`, then `make test-slow` even when the first
    failed; it fails if either did (a stand-in `make` logs the targets)."""
    log = tmp_path / "log"
    make = tmp_path / "bin" / "make"
    make.parent.mkdir()
    make.write_text(f'#!/bin/sh\necho "$1 CI=$CI" >> "{log}"\n[ "$1" = test ] && exit {statuses[0]}\nexit {statuses[1]}\n')
    make.chmod(0o755)
    env = {**os.environ, "PATH": f"{make.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("CI", None)
    result = subprocess.run([str(ROOT / ".ci/run")], env=env, capture_output=True, text=True, timeout=60)
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert log.read_text().splitlines() == ["test CI=true", "test-slow CI=true"]
