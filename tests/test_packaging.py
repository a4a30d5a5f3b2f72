"""The wheel carries templates and libraries; generated code passes ruff."""

import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT, need, ruff_executable


def test_wheel_builds_and_works_outside_checkout(tmp_path):
    need("build")
    need("hatchling")  # the build backend; --no-isolation uses this environment's
    dist = tmp_path / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (wheel,) = dist.glob("archc-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "archc/templates/torch/module.py.j2" in names and "archc/library/resnet.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    spec = tmp_path / "r20.yaml"
    shutil.copy(ROOT / "specs/cifar/resnet.yaml", spec)
    code = "import sys; from archc.__main__ import main; sys.argv = ['archc', 'build', 'r20.yaml', '-b', 'torch', '-o', '-']; main()"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "class CifarBasic(nn.Module):" in out.stdout


def test_generated_code_passes_ruff():
    ruff = ruff_executable()
    for args in (["check", "generated"], ["format", "--check", "generated"]):
        result = subprocess.run([ruff, *args], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_helper_templates_pass_ruff(tmp_path):
    """The helper classes a module prints when a spec uses them (templates without Jinja,
    printed as they are, at top level) pass `ruff check` and `ruff format --check`: the zoo in
    generated/ does not use every one of them (GlobalContext, StdConv2d, ...)."""
    helpers = [p for p in sorted((ROOT / "templates").glob("*/*.py.j2")) if "{{" not in p.read_text() and "{%" not in p.read_text()]
    assert len(helpers) >= 30
    for p in helpers:
        (tmp_path / f"{p.parent.name}_{p.name.removesuffix('.j2')}").write_text(p.read_text())
    ruff = ruff_executable()
    for args in (["check", "--no-cache", "--select", "E,W", "--ignore", "E501", "."], ["format", "--check", "--no-cache", "."]):
        result = subprocess.run([ruff, *args], cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
