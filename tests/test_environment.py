"""A missing dependency skips its tests locally and fails them in CI (conftest.need): a broken
environment cannot pass `make test` by skipping whole modules."""

import ast
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, in_ci, need

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
