"""Module lists (`parallel:`): numbered paths that read one tensor (or each its own) and are
merged, as torchvision's ASPP (`self.convs = nn.ModuleList(modules)`). The IR, the generated
PyTorch and the generated Keras agree (test_differential.agree), module names are the
checkpoint keys, and the code reads as torchvision writes it."""

from __future__ import annotations

import textwrap

import pytest
from conftest import ROOT, assert_ruff_clean, need
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
    graph = lower(load_spec_text(spec(ASPP + FROM, "- head: {block: aspp, with: {w: 3}}\n- blk: {block: b, with: {w: 4}}\n"), "t.yaml"))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


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


# --- grids: module lists whose paths are module lists (HRNet's fuse layers) ------------------------

GRID = """\
archc: 1
name: grid
input: [3, 8, 8]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  gridk:
    params: {w: int}
    layers:
      - a: {conv: {filters: w, kernel: 1}}
      - b: {conv: {filters: w, kernel: 3, padding: 1}, from: input}
      - fuse:
          parallel:
            - parallel: [identity, [{conv: {filters: w, kernel: 1}}, batchnorm]]
              merge: add
            - parallel: [{conv: {filters: w, kernel: 1}, from: a}, {identity: {}, from: b}]
              merge: add
            - {conv: {filters: w, kernel: 1}, from: a}
          merge: concat
layers:
  - stem: {conv: {filters: 4, kernel: 3, padding: 1}}
  - a: {conv: {filters: 4, kernel: 1}}
  - blk: {block: gridk, with: {w: 4}}
  - fuse:
      parallel:
        - parallel: [identity, [{conv: {filters: 12, kernel: 1}}, batchnorm]]
          merge: add
        - parallel: [{conv: {filters: 12, kernel: 1}, from: a}, {identity: {}, from: blk}]
          merge: add
      merge: add
"""


def test_a_grid_of_module_lists():
    """Path k of a module list may be a module list (a row, `fuse.k.j`) whose paths read their
    own tensors; each row is merged into a variable of its own, then the list's merge. An
    identity entry keeps its index and has no keys."""
    graph = agree(GRID)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["blk.fuse.0"].inputs == ("blk.fuse.0.0", "blk.fuse.0.1.1") and nodes["blk.fuse.0.0"].inputs == ("blk.b",)
    assert nodes["blk.fuse.1.0"].inputs == ("blk.a",) and nodes["blk.fuse.2"].inputs == ("blk.a",)
    assert nodes["blk.fuse"].inputs == ("blk.fuse.0", "blk.fuse.1", "blk.fuse.2") and nodes["blk.fuse"].shape.c == 12
    assert nodes["fuse.1.0"].inputs == ("a",) and nodes["fuse.1.1"].inputs == ("blk.fuse",) and nodes["fuse"].inputs == ("fuse.0", "fuse.1")
    code = emit(graph, "torch")
    for line in (
        "fuse_0 = self.fuse[0][0](b) + self.fuse[0][1](b)",
        "fuse_1 = self.fuse[1][0](a) + self.fuse[1][1](b)",
        "out = torch.cat([fuse_0, fuse_1, self.fuse[2](a)], 1)",
        "fuse_0 = self.fuse[0][0](blk) + self.fuse[0][1](blk)",
        "x = fuse_0 + fuse_1",
    ):
        assert line in code, line
    keys = set(module_from(code, "t").build_model().state_dict())
    assert {"blk.fuse.0.1.0.weight", "blk.fuse.1.0.weight", "blk.fuse.2.weight", "fuse.0.1.1.running_mean", "fuse.1.0.weight"} <= keys
    assert not any(k.startswith(("blk.fuse.0.0.", "blk.fuse.1.1.", "fuse.0.0.", "fuse.1.1.")) for k in keys)
    keras_code = emit(graph, "keras")
    for name in ('f"{name}_fuse_0_1_0"', 'f"{name}_fuse_1_0"', 'f"{name}_fuse_1"', 'name="fuse_1_0"', 'name="fuse_0"', 'name="fuse"'):
        assert name in keras_code, name


def test_a_rows_variable_is_renamed_around_a_layer_of_its_name():
    """`fuse_0` is a layer and the variable of row 0 (a torch-only build: Keras would name both
    `..._fuse_0` and refuses it)."""
    graph = agree(GRID.replace("- b: {conv", "- fuse_0: {conv").replace("from: b}", "from: fuse_0}"), keras_too=False)
    code = emit(graph, "torch")
    assert "fuse_0_ = self.fuse[0][0](fuse_0) + self.fuse[0][1](fuse_0)" in code
    assert "out = torch.cat([fuse_0_, fuse_1, self.fuse[2](a)], 1)" in code


def test_grids_in_summary_diagram_and_verify():
    from archc import verify
    from archc.passes.diagram import diagram
    from archc.passes.summary import summarize

    graph = lower(load_spec_text(GRID, "t.yaml"))
    rows = {r.name: r for r in summarize(graph).rows}
    assert rows["fuse.0"].kind == "add" and rows["fuse.1.0"].kind == "conv" and rows["fuse"].kind == "add"
    d = diagram(graph, "blocks")
    assert sorted(e.src for e in d.edges if e.dst == "fuse") == ["fuse.0", "fuse.1"]
    assert sorted(e.src for e in d.edges if e.dst == "fuse.1") == ["fuse.1.0", "fuse.1.1"]
    assert next(e.src for e in d.edges if e.dst == "fuse.1.0") == "a"
    assert {c.id for c in next(c for c in d.clusters if c.id == "fuse").clusters} >= {"fuse.0", "fuse.1"}
    assert verify.verify(graph).ok


def test_a_grid_has_two_levels():
    deeper = GRID.replace(
        "        - parallel: [identity, [{conv: {filters: 12, kernel: 1}}, batchnorm]]\n",
        "        - parallel: [identity, {parallel: [identity, identity], merge: add}]\n",
    )
    with pytest.raises(SpecError, match=r"t.yaml:25:11: fuse.0: a row of a grid of module lists .* a grid has two levels$"):
        lower(load_spec_text(deeper, "t.yaml"))


HRNET = (ROOT / "tests" / "hrnet_fuse.yaml").read_text()


def test_hrnet_fuse_layers_as_a_container_of_rows():
    """HRNet's fuse layers (tests/hrnet_fuse.yaml, whose state_dict is timm's: tests/test_timm.py):
    a numbered `modules:` container of `parallel:` rows, each row's paths reading the branch
    outputs x0, x1, x2 and merged by add; the rows are read from outside (`fuse_layers.1`)."""
    from archc import verify
    from archc.passes.diagram import diagram

    graph = agree(HRNET)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["fuse_layers.2.0.0.0"].inputs == ("x0",) and nodes["fuse_layers.2.1.0.0"].inputs == ("x1",)
    assert nodes["fuse_layers.2"].inputs == ("fuse_layers.2.0.1.1", "fuse_layers.2.1.0.1", "fuse_layers.2.2")
    assert nodes["y1"].inputs == ("fuse_layers.1",) and [o.shape.c for o in graph.outputs] == [16, 32, 64]
    code = emit(graph, "torch")
    assert "fuse_layers_1 = (\n            self.fuse_layers[1][0](x0)\n" in code
    keras_code = emit(graph, "keras")
    assert all(f'name="{n}"' in keras_code for n in ("fuse_layers_0_1_0", "fuse_layers_2_0_1_0", "fuse_layers_2"))
    assert verify.verify(graph).ok
    d = diagram(graph, "blocks")
    assert sorted(e.src for e in d.edges if e.dst == "fuse_layers.1") == ["fuse_layers.1.0.0.1", "fuse_layers.1.1", "fuse_layers.1.2.2"]


CONTAINER = """\
archc: 1
name: t
input: [3, 8, 8]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
layers:
  - stem: {conv: {filters: 4, kernel: 3, padding: 1}}
  - s0: {conv: {filters: 2, kernel: 1}}
  - m0: {conv: {filters: 2, kernel: 1}, if: false}
  - grid:
      modules:
        - {parallel: [{identity: {}}, {conv: {filters: 2, kernel: 1}}], merge: add}
        - {parallel: [{conv: {filters: 2, kernel: 3, padding: 1}}, {identity: {}, from: m0}, {identity: {}, from: stem}], merge: add}
  - pool: global_avgpool
outputs: {out: pool, grid: grid.1}
"""


def test_module_lists_in_a_container_read_what_their_paths_name():
    """The first entry of a `modules:` container reads the tensor before it (not the model's
    input), a read of an absent layer outside reads what it passes on, and the layers its
    paths read are read (`stem` was reported as never read)."""
    with pytest.raises(SpecError, match="cannot add"):  # stem (4 channels) does not add to the row's 2
        agree(CONTAINER)
    graph = agree(CONTAINER.replace("{identity: {}, from: stem}", "{conv: {filters: 2, kernel: 1}, from: stem}"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["grid.0.0"].inputs == ("s0",) and nodes["grid.1.1"].inputs == ("s0",) and nodes["grid.1.2"].inputs == ("stem",)
    assert "grid_1 = self.grid[1][0](grid_0) + self.grid[1][1](s0) + self.grid[1][2](stem)" in emit(graph, "torch")


def test_the_block_diagram_follows_reads_by_path():
    """A tensor read by its path from outside its container (`from: body.layer1`, an output
    `fpn.layer_blocks.0`): the block diagram raised KeyError on resnet18_fpn."""
    from archc.passes.diagram import diagram
    from archc.spec.loader import load_spec

    d = diagram(lower(load_spec(ROOT / "specs" / "detection" / "resnet18_fpn.yaml")), "blocks")
    assert next(e.src for e in d.edges if e.dst == "output.0") == "fpn.layer_blocks.0"
    assert next(e.src for e in d.edges if e.dst == "fpn.inner_blocks.0").startswith("body.layer1")


@pytest.mark.parametrize("text", [GRID, HRNET], ids=["grid", "hrnet"])
def test_generated_grid_code_passes_ruff(tmp_path, text):
    graph = lower(load_spec_text(text, "t.yaml"))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)
