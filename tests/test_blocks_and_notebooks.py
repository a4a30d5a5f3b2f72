"""`archc blocks [LIBRARY]` lists the shipped block kinds from the library files; notebooks
render `archc.summary(...)` as an HTML table and `archc.diagram(...)` as inline SVG
(Graphviz) or, without Graphviz, as a Mermaid block."""

import json
import os
import stat
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT

import archc
from archc.cli import main
from archc.passes.diagram import render_svg

LIBRARIES = sorted(p.stem for p in (ROOT / "archc/library").glob("*.yaml"))


def test_blocks_lists_every_kind_with_params_and_docs():
    result = CliRunner().invoke(main, ["blocks"])
    assert result.exit_code == 0, result.output
    for lib in LIBRARIES:
        data = yaml.safe_load((ROOT / f"archc/library/{lib}.yaml").read_text())
        assert f"{lib} (archc/library/{lib}.yaml): {len(data['blocks'])} block kinds" in result.output
        for name in data["blocks"]:
            assert f"\n  {name}  [" in result.output, name
    text = result.output
    bottleneck = text[text.index("\n  bottleneck  [skip connection]"):]
    bottleneck = bottleneck[: bottleneck.index("\n\n")]
    assert "params: planes: int (required), stride = 1, groups = 1, base_width = 64, dilation = 1, expansion = 4" in bottleneck
    assert "shortcut: projection (downsample, where the shape changes); otherwise identity" in bottleneck
    assert "layers: conv1 -> bn1 -> relu -> conv2 -> bn2 -> relu -> conv3 -> bn3 -> + -> relu" in bottleneck
    assert "torchvision" in bottleneck  # the doc line
    assert "checks: 0 < compression <= 1" in text


def test_blocks_one_library_json_and_mistakes(tmp_path):
    result = CliRunner().invoke(main, ["blocks", "densenet", "--json"])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["command"] == "blocks" and [lib["name"] for lib in report["libraries"]] == ["densenet"]
    transition = next(b for b in report["libraries"][0]["blocks"] if b["name"] == "transition")
    assert transition["params"] == [{"name": "compression", "type": "float", "default": 0.5, "required": False}]
    result = CliRunner().invoke(main, ["blocks", "densnet"])
    assert result.exit_code == 2 and "unknown library 'densnet'; did you mean 'densenet'?" in result.output
    own = tmp_path / "mine.yaml"
    own.write_text("archc: 1\nlibrary: mine\nblocks:\n  b:\n    params: {k: int, bn: true}\n    layers: [{c: {conv: {filters: k, kernel: 1}}}]\n")
    result = CliRunner().invoke(main, ["blocks", str(own)])
    assert result.exit_code == 0 and "params: k: int (required), bn = true" in result.output
    own.write_text("archc: 1\nlibrary: mine\nblocks:\n  b:\n    parms: {}\n    layers: []\n")
    result = CliRunner().invoke(main, ["blocks", str(own)])
    assert result.exit_code == 2 and f"{own}:5:5" in result.output


def test_summary_renders_as_html_table():
    s = archc.summary(ROOT / "specs/cifar/resnet20.yaml")
    page = s._repr_html_()
    assert page.count("<tr>") == 1 + len(s.rows) + 1  # header, one row per item, totals
    assert "<td style='text-align:left'>layer2</td><td style='text-align:left'>cifar_basic x3</td>" in page
    assert "<td style='text-align:right'>51,072</td>" in page and "trainable 269,722" in page
    assert str(s).splitlines()[0] == "resnet20: input (3, 32, 32) -> output (10,)"


def test_summary_shows_its_table_in_a_repl():
    """What `>>> archc.summary(spec)` prints: the table, not the dataclass's fields."""
    session = "import archc\narchc.summary('specs/cifar/resnet20.yaml')\n"
    result = subprocess.run([sys.executable, "-i", "-q"], input=session, cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    assert lines[0] == "resnet20: input (3, 32, 32) -> output (10,)", result.stdout + result.stderr
    assert "trainable 269,722   non-trainable 1,376   total 271,098   MACs 40.55 M" in lines  # He et al.: 0.27M
    assert "Summary(" not in result.stdout


def fake_dot(tmp_path):
    """A `dot` that answers like Graphviz, so the notebook path is tested without Graphviz."""
    dot = tmp_path / "dot"
    dot.write_text("#!/bin/sh\ncat > /dev/null\necho '<svg xmlns=\"http://www.w3.org/2000/svg\"><text>drawn</text></svg>'\n")
    dot.chmod(dot.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def test_diagram_renders_inline_svg_or_mermaid(tmp_path, monkeypatch):
    d = archc.diagram(ROOT / "specs/cifar/resnet20.yaml")
    assert d.to_dot().startswith('digraph "resnet20"')
    render_svg.cache_clear()
    monkeypatch.setenv("PATH", str(fake_dot(tmp_path)) + os.pathsep + os.environ["PATH"])
    assert d._repr_svg_().startswith("<svg") and d._repr_markdown_() is None
    render_svg.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert d._repr_svg_() is None  # no Graphviz: no SVG, and no error
    markdown = d._repr_markdown_()
    assert markdown.startswith("```mermaid\nflowchart TB\n") and markdown.endswith("```\n")
    assert "layer3" in markdown
    with pytest.raises(archc.SpecError, match=r"not on PATH: install Graphviz \(apt-get install graphviz"):
        d.svg()  # asked for outright: an error saying what to install, not None
    render_svg.cache_clear()


def test_check_and_blocks_stay_light():
    """`check` (run on every save by editors) and `blocks` import no framework, no numpy and
    not jinja2 (templates are for build); importing archc.convert imports no framework."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from archc.cli import main\n"
        "import archc.convert\n"
        "for args in (['check', 'specs/resnet50.yaml'], ['blocks']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'jax', 'numpy', 'jinja2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
