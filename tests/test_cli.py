"""The command line: exit codes, output locations, and no framework imports on the compiler path."""

import json
import subprocess
import sys

from conftest import ROOT

ARCHC = [sys.executable, "-m", "archc"]


def run(*args, cwd=ROOT):
    return subprocess.run([*ARCHC, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_check_ok_and_error(tmp_path):
    ok = run("check", "specs/resnet50.yaml")
    assert ok.returncode == 0 and "25,557,032" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("archc: 1\nname: tiny\ninput: [3, 8, 8]\nlayers:\n  - c: {conv: {filters: 4}}\n")
    result = run("check", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"archc: error: {bad}:5:15: layers.0.c.conv: missing required key 'kernel'"
    assert "Traceback" not in result.stderr
    missing = run("check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_build_to_file_and_stdout(tmp_path):
    target = tmp_path / "sub" / "model.py"
    result = run("build", "specs/cifar/resnet20.yaml", "--backend", "keras", "-o", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text() == (ROOT / "generated/resnet20_keras.py").read_text()
    assert [p.name for p in target.parent.iterdir()] == ["model.py"]  # no temp files left
    stdout = run("build", "specs/cifar/resnet20.yaml", "--backend", "keras", "-o", "-")
    assert stdout.stdout == target.read_text()


def test_summary_json_matches_ir():
    result = run("summary", "specs/densenet121.yaml", "--json")
    data = json.loads(result.stdout)
    assert (data["trainable"], data["non_trainable"], data["total"]) == (7_978_856, 83_648, 8_062_504)
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["features.denseblock1"]["output_shape"] == [256, 56, 56]
    assert rows["features.transition3"]["output_shape"] == [512, 7, 7]
    assert sum(r["trainable"] for r in data["rows"]) == data["trainable"]


def test_version():
    result = run("--version")
    assert result.returncode == 0 and "archc" in result.stdout


def test_compiler_imports_no_framework():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from archc.cli import main\n"
        "r = CliRunner()\n"
        "for args in (['check', 'specs/resnet50.yaml'], ['summary', 'specs/densenet121.yaml'],\n"
        "             ['build', 'specs/resnet50.yaml', '-b', 'torch', '-o', '-'],\n"
        "             ['build', 'specs/resnet50.yaml', '-b', 'keras', '-o', '-'],\n"
        "             ['build', 'specs/densenet121.yaml', '-b', 'torch', '--memory-efficient', '-o', '-'],\n"
        "             ['check', 'specs/cifar/resnet1202.yaml']):\n"
        "    assert r.invoke(main, args).exit_code == 0, args\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
