"""Module lists (`parallel:`): numbered paths that read one tensor (or each its own) and are
merged, as torchvision's ASPP (`self.convs = nn.ModuleList(modules)`). The IR, the generated
PyTorch and the generated Keras agree (test_differential.agree), module names are the
checkpoint keys, and the code reads as torchvision writes it."""

from __future__ import annotations

import subprocess
import textwrap

import pytest
from conftest import need, ruff_executable
from test_differential import agree, module_from, spec

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")

ASPP = """\
aspp_conv:
  params: {w: int, rate: int}
  layers:
    - {conv: {filters: w, kernel: 3, padding: rate, dilation: rate}}
    - batchnorm
    - relu
aspp:
  params: {w: int, rate: 2}
  layers:
    - convs:
        parallel:
          - [{conv: {filters: w, kernel: 1}}, batchnorm, relu]
          - {block: aspp_conv, with: {w: w, rate: rate}}
          - {conv: {filters: w, kernel: 1}}
        merge: concat
    - project: [{conv: {filters: w, kernel: 1}}, batchnorm, relu]
"""


def test_module_list_in_a_block_kind():
    graph = agree(spec(ASPP, "- head: {block: aspp, with: {w: 3}}\n"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["head.convs"].inputs == ("head.convs.0.2", "head.convs.1.2", "head.convs.2")
    assert nodes["head.convs"].shape.c == 9 and nodes["head.project.0"].inputs == ("head.convs",)
    for path in ("head.convs.0.0", "head.convs.1.0", "head.convs.2"):
        assert nodes[path].inputs == ("input",)
    code = emit(graph, "torch")
    assert "self.convs = nn.ModuleList(" in code
    assert "out = torch.cat([path(x) for path in self.convs], 1)" in code
    model = module_from(code, "t").build_model()
    keys = [k for k in model.state_dict() if k.startswith("head.convs.")]
    assert keys[:3] == ["head.convs.0.0.weight", "head.convs.0.1.weight", "head.convs.0.1.bias"]
    assert "head.convs.1.0.weight" in keys and "head.convs.2.weight" in keys
    keras_code = emit(graph, "keras")
    for name in ('f"{name}_convs_0_0"', 'f"{name}_convs_1"', 'f"{name}_convs_2"', 'f"{name}_convs"'):
        assert name in keras_code


FROM = """\
b:
  params: {w: int}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - m:
        parallel:
          - {conv: {filters: w, kernel: 1}}
          - {group: [{conv: {filters: w, kernel: 3, padding: 1}}, relu], from: input}
        merge: add
"""


def test_a_path_reads_its_own_from():
    graph = agree(spec(FROM, "- blk: {block: b, with: {w: 4}}\n"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["blk.m.0"].inputs == ("blk.a",) and nodes["blk.m.1.0"].inputs == ("input",)
    assert "out = self.m[0](out) + self.m[1](x)" in emit(graph, "torch")


def test_from_on_the_list_is_every_paths_input():
    blocks = """\
    b:
      params: {w: int}
      layers:
        - a: {conv: {filters: w, kernel: 1}}
        - m: {parallel: [{conv: {filters: w, kernel: 1}}, [{conv: {filters: w, kernel: 1}}, relu]], merge: add, from: input}
        - j: {concat: [a, m]}
    """
    graph = agree(spec(textwrap.dedent(blocks), "- blk: {block: b, with: {w: 4}}\n"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["blk.m.0"].inputs == ("input",) == nodes["blk.m.1.0"].inputs
    assert "m = self.m[0](x) + self.m[1](x)" in emit(graph, "torch")


CONDITIONAL = """\
b:
  params: {w: int, use: false}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - m:
        parallel: [{conv: {filters: w, kernel: 1}}, [{conv: {filters: w, kernel: 1}}, sigmoid]]
        merge: multiply
        if: use
    - n: batchnorm
"""


@pytest.mark.parametrize("on", [False, True])
def test_a_module_list_under_if_exists_only_where_it_holds(on):
    graph = agree(spec(CONDITIONAL, f"- blk: {{block: b, with: {{w: 4, use: {str(on).lower()}}}}}\n"))
    nodes = {n.id: n for n in graph.nodes}
    assert ("blk.m.0" in nodes) == on and ("blk.m.1.0" in nodes) == on
    assert nodes["blk.n"].inputs == (("blk.m",) if on else ("blk.a",))


def test_generated_code_passes_ruff(tmp_path):
    ruff = ruff_executable()
    graph = lower(load_spec_text(spec(ASPP + FROM, "- head: {block: aspp, with: {w: 3}}\n- blk: {block: b, with: {w: 4}}\n"), "t.yaml"))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        for args in (["check", "--no-cache", str(path)], ["format", "--check", "--no-cache", str(path)]):
            result = subprocess.run([ruff, *args], capture_output=True, text=True)
            assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("- p0: {conv: {filters: w, kernel: 1}}", "take no name"),
        ("- {conv: {filters: w, kernel: 1}, if: w > 2}", "cannot be conditional"),
        ("- {resize: {like: a}}", "not resize"),
        ("- {stage: unit, repeat: 2, with: {w: w}}", "not stage"),
    ],
)
def test_paths_the_language_refuses(path, message):
    blocks = f"""\
    unit:
      params: {{w: int}}
      layers: [{{conv: {{conv: {{filters: w, kernel: 1}}}}}}]
    b:
      params: {{w: int}}
      layers:
        - a: {{conv: {{filters: w, kernel: 1}}}}
        - m:
            parallel:
              - {{conv: {{filters: w, kernel: 1}}}}
              {path}
    """
    with pytest.raises(SpecError, match=message):
        lower(load_spec_text(spec(textwrap.dedent(blocks), "- blk: {block: b, with: {w: 4}}\n"), "t.yaml"))


def test_shape_mismatch_names_the_paths():
    blocks = """\
    b:
      params: {w: int}
      layers:
        - m:
            parallel: [{conv: {filters: w, kernel: 1}}, {conv: {filters: w, kernel: 1, stride: 2}}]
    """
    with pytest.raises(SpecError, match=r"m: cannot concatenate maps of different size: \(4, 12, 12\), \(4, 6, 6\)$"):
        lower(load_spec_text(spec(textwrap.dedent(blocks), "- blk: {block: b, with: {w: 4}}\n"), "t.yaml"))


MODEL = """\
archc: 1
name: lists
input: [3, 12, 14]
params: {num_classes: 4}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  cbr:
    params: {w: int, rate: 1}
    layers: [{conv: {filters: w, kernel: 3, padding: rate, dilation: rate}}, batchnorm, relu]
layers:
  - stem: [{conv: {filters: 8, kernel: 3, padding: 1}}, batchnorm, relu]
  - a: {conv: {filters: 8, kernel: 1}}
  - convs:
      from: stem
      parallel:
        - [{conv: {filters: 6, kernel: 1}}, batchnorm, relu]
        - {block: cbr, with: {w: 6, rate: 2}}
        - {conv: {filters: 6, kernel: 1}, from: a}
      merge: add
  - fuse: {parallel: [{conv: {filters: 5, kernel: 1}}, [{conv: {filters: 5, kernel: 3, padding: 1}}, relu]]}
  - pool: global_avgpool
  - heads: {parallel: [{dense: {units: num_classes}}, [{dense: {units: 8}}, relu, {dense: {units: num_classes}}]], merge: add}
"""


def test_module_lists_at_model_level():
    graph = agree(MODEL)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["convs"].inputs == ("convs.0.2", "convs.1.2", "convs.2") and nodes["convs.2"].inputs == ("a",)
    assert nodes["convs.0.0"].inputs == ("stem.2",) and nodes["fuse"].shape.c == 10
    assert nodes["heads"].inputs == ("heads.0", "heads.1.2")
    code = emit(graph, "torch")
    assert "self.convs = nn.ModuleList(" in code and "x = torch.cat([path(x) for path in self.fuse], 1)" in code
    assert "x = self.heads[0](x) + self.heads[1](x)" in code
    keys = set(module_from(code, "t").build_model().state_dict())
    assert {"convs.0.0.weight", "convs.1.0.weight", "convs.2.weight", "fuse.1.0.weight", "heads.1.2.bias"} <= keys
    keras_code = emit(graph, "keras")
    assert all(f'name="{n}"' in keras_code for n in ("convs_0_0", "convs_1", "convs_2", "convs", "fuse_1_0", "heads_1_2"))


def test_module_lists_in_summary_diagram_and_verify():
    from archc import verify
    from archc.passes.diagram import diagram
    from archc.passes.summary import summarize

    graph = lower(load_spec_text(MODEL, "t.yaml"))
    rows = {r.name: r for r in summarize(graph).rows}
    assert rows["convs"].kind == "add" and rows["convs.1"].kind == "cbr" and rows["convs.0.0"].kind == "conv"
    d = diagram(graph, "blocks")
    into = sorted(e.src for e in d.edges if e.dst == "convs")
    assert into == ["convs.0.2", "convs.1", "convs.2"]
    assert next(e.src for e in d.edges if e.dst == "convs.2") == "a"
    assert verify.verify(graph).ok


def test_model_level_path_errors_name_the_path():
    bad = MODEL.replace("        - {conv: {filters: 6, kernel: 1}, from: a}\n", "        - third: {conv: {filters: 6, kernel: 1}, from: a}\n")
    with pytest.raises(SpecError, match=r"t.yaml:18:\d+: convs.2: the paths of a parallel list are numbered"):
        lower(load_spec_text(bad, "t.yaml"))


ABSENT = """\
archc: 1
name: t
input: [3, 8, 8]
params: {flag: false}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
layers:
  - a: {conv: {filters: 4, kernel: 1}}
  - b: {conv: {filters: 4, kernel: 1}, if: flag}
  - c: {conv: {filters: 4, kernel: 1}, from: b}
  - d: {parallel: [{conv: {filters: 4, kernel: 1}}, {conv: {filters: 4, kernel: 1}, from: b}], merge: add}
  - e: {add: [c, d, b]}
  - pool: global_avgpool
"""


@pytest.mark.parametrize("flag", [False, True])
def test_reading_an_absent_model_level_layer_reads_what_it_passes_on(flag):
    """`from: b` and `add: [..., b]` with b absent read a (the emitters once looked up a variable for b)."""
    graph = agree(ABSENT.replace("flag: false", f"flag: {str(flag).lower()}"))
    nodes = {n.id: n for n in graph.nodes}
    source = "b" if flag else "a"
    assert nodes["c"].inputs == (source,) and nodes["d.1"].inputs == (source,)
    assert nodes["e"].inputs == ("c", "d", source)


POOLING = """\
aspp_pooling:
  params: {w: int}
  layers:
    - {adaptive_avgpool: {size: 1}}
    - {conv: {filters: w, kernel: 1}}
    - batchnorm
    - relu
    - {resize: {like: input, mode: bilinear}}
b:
  params: {w: int}
  layers:
    - convs:
        parallel:
          - [{conv: {filters: w, kernel: 1}}, batchnorm, relu]
          - {block: aspp_pooling, with: {w: w}}
"""


def test_a_numbered_block_kind_with_a_resize_is_torchvisions_aspp_pooling():
    """Unnamed layers and an unnamed resize: an nn.Sequential subclass numbered around the
    resize (`convs.1.1.weight`), whose forward resizes back to its input's size."""
    graph = agree(spec(POOLING, "- blk: {block: b, with: {w: 3}}\n"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["blk.convs.1.resize"].inputs == ("blk.convs.1.3", "input") and nodes["blk.convs.1.resize"].shape.size[0] == 12
    code = emit(graph, "torch")
    assert "class AsppPooling(nn.Sequential):" in code and "out = super().forward(x)" in code
    keys = set(module_from(code, "t").build_model().state_dict())
    assert {"blk.convs.1.1.weight", "blk.convs.1.2.running_mean"} <= keys
    assert 'name=f"{name}_resize"' in emit(graph, "keras")


def test_an_expression_between_modules_is_numbered_around():
    blocks = """\
    k:
      params: {w: int}
      layers:
        - {conv: {filters: w, kernel: 1}}
        - {resize: {like: input}}
        - {conv: {filters: w, kernel: 1}}
        - relu
    """
    graph = agree(spec(textwrap.dedent(blocks), "- blk: {block: k, with: {w: 4}}\n"))
    assert [n.id for n in graph.nodes][:4] == ["blk.0", "blk.resize", "blk.1", "blk.2"]
    code = emit(graph, "torch")
    assert "out = self[0](x)\n" in code and "out = self[1](out)\n        out = self[2](out)\n" in code


def test_a_numbered_kind_with_an_expression_has_no_conditional_entries():
    blocks = """\
    k:
      params: {w: int, use_act: true}
      layers:
        - {conv: {filters: w, kernel: 1}}
        - {act: relu, if: use_act}
        - {resize: {like: input}}
    """
    with pytest.raises(SpecError, match="no conditional or repeated entries"):
        lower(load_spec_text(spec(textwrap.dedent(blocks), "- blk: {block: k, with: {w: 4}}\n"), "t.yaml"))
