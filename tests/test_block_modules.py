"""`modules:` containers inside a block kind: named entries (an nn.ModuleDict) and numbered
ones (an nn.ModuleList), entries reading tensors outside the container and each other, read
from outside as `container.entry` at any depth, nested containers, and grids of module lists
(HRNet's fuse layers). Each network is written twice, at model level (lowered by the model's
own walker) and as a block kind (its symbolic form, specialised): both forms agree IR =
PyTorch = Keras (test_differential.agree), and with each other in counts, shapes, state_dict
keys (under the instance's name) and, with the weights copied by name, outputs. The proof
against a reference is tests/test_timm.py (timm's HighResolutionModule)."""

from __future__ import annotations

import re
import textwrap

import pytest
from conftest import ROOT, assert_ruff_clean, need
from test_differential import HEAD, agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
need("keras")

# an FPN in miniature: a named container holding numbered ones, merges and resizes among them
FPN_LAYERS = """\
- c1: {conv: {filters: 2 * w, kernel: 3, padding: 1, stride: 2}}
- c2: {conv: {filters: 3 * w, kernel: 3, padding: 1, stride: 2}}
- fpn:
    modules:
      - inner:
          modules:
            - {conv: {filters: w, kernel: 1, bias: true}, from: IN}
            - {conv: {filters: w, kernel: 1, bias: true}, from: c1}
            - {conv: {filters: w, kernel: 1, bias: true}, from: c2}
      - top1: {resize: {like: inner.1, mode: nearest}, from: inner.2}
      - merged1: {add: [inner.1, top1]}
      - top0: {resize: {like: inner.0, mode: nearest}}
      - merged0: {add: [inner.0, top0]}
      - outer:
          modules:
            - {group: [{conv: {filters: w, kernel: 3, padding: 1}}, batchnorm, relu], from: merged0}
            - {conv: {filters: w, kernel: 3, padding: 1}, from: merged1}
- coarse: {resize: {like: fpn.outer.0}, from: fpn.outer.1}
- joined: {concat: [fpn.outer.0, coarse, fpn.inner.0]}
"""


def fpn_block() -> str:
    body = textwrap.indent(FPN_LAYERS.replace("IN", "input"), "    ")
    return HEAD + f"blocks:\n  fpn_kind:\n    params: {{w: int}}\n    layers:\n{body}layers:\n  - stem: {{conv: {{filters: 5, kernel: 3, padding: 1}}}}\n  - neck: {{block: fpn_kind, with: {{w: 4}}}}\n  - pool: global_avgpool\n"


def fpn_model() -> str:
    body = textwrap.indent(FPN_LAYERS.replace("IN", "stem").replace("w", "4").replace("4ith", "with"), "  ")
    return HEAD + f"layers:\n  - stem: {{conv: {{filters: 5, kernel: 3, padding: 1}}}}\n{body}  - pool: global_avgpool\n"


def hrnet_block() -> str:
    return (ROOT / "tests" / "hrnet_module.yaml").read_text()


def hrnet_model() -> str:
    """tests/hrnet_module.yaml with the block's layers written in the model's own list."""
    text = hrnet_block()
    start = text.index("    layers:\n      - branches:")
    end = text.index("layers:\n  - x0:")
    body = textwrap.dedent(text[start + len("    layers:\n") : end])
    for name, value in (("x0_channels", "16"), ("x1_channels", "32"), ("x2_channels", "64"), ("repeat: n", "repeat: 2")):
        body = body.replace(name, value)
    head = text[: text.index("  hr_module:")]
    model = text[end:].replace("  - h: {block: hr_module, from: [x0, x1, x2]}\n", "")
    model = model.replace('outputs: {"0": h, "1": h.y1, "2": h.y2}', textwrap.indent(body, "  ") + 'outputs: {"0": y0, "1": y1, "2": y2}')
    return head + model


def both(model_text: str, block_text: str, instance: str):
    """Both forms, each agreeing IR = PyTorch = Keras; then equal counts, output shapes and
    state_dict keys (the block's under `instance.`), and equal PyTorch outputs with the model
    form's weights copied into the block form by name."""
    at_model, in_block = agree(model_text), agree(block_text)
    assert at_model.counts == in_block.counts
    assert [o.shape for o in at_model.outputs] == [o.shape for o in in_block.outputs] and at_model.output_shape == in_block.output_shape
    a = module_from(emit(at_model, "torch"), "model_form").build_model().eval()
    b = module_from(emit(in_block, "torch"), "block_form").build_model().eval()
    outside = {k for k in a.state_dict() if k.split(".")[0] in {k.split(".")[0] for k in b.state_dict()}}  # layers before it
    renamed = {k if k in outside else f"{instance}.{k}": v for k, v in a.state_dict().items()}
    assert set(renamed) == set(b.state_dict())
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for value in renamed.values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
        a.load_state_dict({k: renamed[k if k in outside else f"{instance}.{k}"] for k in a.state_dict()})
        b.load_state_dict(renamed, strict=True)
        x = torch.randn(2, *at_model.input_shape.as_tuple(), generator=generator)
        want, got = a(x), b(x)
    want = want if isinstance(want, dict) else {None: want}
    got = got if isinstance(got, dict) else {None: got}
    assert list(want) == list(got)
    for key in want:
        assert torch.allclose(want[key], got[key], atol=1e-5), key
    return at_model, in_block


def test_named_and_numbered_containers_nested_in_a_block_kind():
    at_model, in_block = both(fpn_model(), fpn_block(), "neck")
    neck = next(i for i in in_block.body if i.name == "neck")
    fpn = next(i for i in neck.children if i.name == "fpn")
    model_fpn = next(i for i in at_model.body if i.name == "fpn")
    # the same GroupInst the model level gives: entries, their reads (paths), counts
    assert fpn.dataflow and [c.name for c in fpn.items] == [c.name for c in model_fpn.items]
    assert [c.inputs for c in fpn.items] == [c.inputs for c in model_fpn.items] == [
        (), ("fpn.inner.2", "fpn.inner.1"), ("fpn.inner.1", "fpn.top1"), ("fpn.merged1", "fpn.inner.0"), ("fpn.inner.0", "fpn.top0"), (),
    ]  # fmt: skip
    assert fpn.counts == model_fpn.counts
    nodes = {n.id: n for n in in_block.nodes}
    assert nodes["neck.fpn.inner.1"].inputs == ("neck.c1",) and nodes["neck.fpn.outer.1"].inputs == ("neck.fpn.merged1",)
    assert nodes["neck.joined"].inputs == ("neck.fpn.outer.0.2", "neck.coarse", "neck.fpn.inner.0")
    code = emit(in_block, "torch")
    assert "self.fpn = nn.ModuleDict(\n            OrderedDict(\n                inner=nn.ModuleList(" in code
    assert "fpn_inner_1 = self.fpn.inner[1](c1)" in code
    assert "fpn_top1 = F.interpolate(fpn_inner_2, size=fpn_inner_1.shape[-2:])" in code
    assert "out = fpn_inner_0 + fpn_top0\n        fpn_outer_0 = self.fpn.outer[0](out)" in code
    keras_code = emit(in_block, "keras")
    assert 'name=f"{name}_fpn_outer_0_1"' in keras_code and 'name=f"{name}_fpn_merged1"' in keras_code


def test_hrnet_module_as_a_block_kind_is_the_model_level_grid():
    """timm's HighResolutionModule (branches and fuse layers) as a block kind with three inputs
    and outputs, and the same written at model level."""
    at_model, in_block = both(hrnet_model(), hrnet_block(), "h")
    nodes = {n.id: n for n in in_block.nodes}
    assert nodes["h.branches.1.0.conv1"].inputs == ("x1",)
    assert nodes["h.fuse_layers.2"].inputs == ("h.fuse_layers.2.0.1.1", "h.fuse_layers.2.1.0.1", "h.fuse_layers.2.2")
    assert nodes["h.fuse_layers.2.2"].inputs == ("h.branches.2.1.relu_2",)  # its basic block's relu, called again
    assert nodes["h.y1"].inputs == ("h.fuse_layers.1",)
    code = emit(in_block, "torch")
    assert "branches_2 = self.branches[2](x2)" in code
    assert "fuse_layers_1 = (\n            self.fuse_layers[1][0](branches_0)\n" in code
    keras_code = emit(in_block, "keras")
    assert all(f'name=f"{{name}}_{n}"' in keras_code for n in ("fuse_layers_0_1_0", "fuse_layers_2_0_1", "fuse_layers_2", "branches_1_0"))
    from archc import verify

    assert verify.verify(in_block, batch=1).ok


@pytest.mark.parametrize("text", [fpn_block(), hrnet_block()], ids=["fpn", "hrnet"])
def test_generated_code_passes_ruff(tmp_path, text):
    graph = lower(load_spec_text(text, "t.yaml"))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


def _refused(text: str, pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        lower(load_spec_text(text, "t.yaml"))


def _before(text: str, anchor: str, entry: str) -> str:
    """`text` with `entry` inserted as a list entry before the line holding `anchor`, at its indentation."""
    line = next(line for line in text.splitlines() if anchor in line)
    indent = line[: len(line) - len(line.lstrip())]
    return text.replace(line, f"{indent}{entry}\n{line}", 1)


def test_containers_in_a_block_kind_are_checked():
    block = fpn_block()
    _refused(_before(block, "- top0:", "- {conv: {filters: 4, kernel: 1}}"), r"fpn: a `modules:` container has named entries .* not both$")
    _refused(block.replace("{conv: {filters: w, kernel: 3, padding: 1}, from: merged1}", "{resize: {like: merged0}, from: merged1}"), r"outer: the entries of a numbered `modules:` container are modules")
    _refused(block.replace("from: fpn.outer.1}", "from: fpn.outer.2}"), r"unknown tensor 'fpn.outer.2'")
    _refused(re.sub(r"- fpn:\n( +)modules:", r"- fpn:\n\1if: w > 2\n\1modules:", block), r"fpn: a `modules:` container inside a block kind is not conditional")
    _refused(block.replace("- merged0: {add: [inner.0, top0]}", "- merged0: {add: [inner.0, top0], if: w > 2}"), r"fpn.merged0: the entries of a `modules:` container inside a block kind are not conditional")
    _refused(block.replace("- c2: {conv: {filters: 3 * w, kernel: 3, padding: 1, stride: 2}}", "- c2: [{conv: {filters: 3 * w, kernel: 3, padding: 1, stride: 2}}, {m: {modules: [relu]}}]"), r"m: a `modules:` container is an entry of a block kind's list or of another `modules:`, not of a list")
    # an entry read by nothing is the container's business (as at model level); the container read by nobody is not
    unread = block.replace("- joined: {concat: [fpn.outer.0, coarse, fpn.inner.0]}", "- joined: {concat: [c2, c2]}").replace("from: fpn.outer.1}", "from: c1}")
    _refused(unread.replace("- coarse: {resize: {like: fpn.outer.0}, from: c1}", "- coarse: {resize: {like: c1}, from: c1}"), r"'fpn'.* never read|never read.*fpn")


def test_every_entry_of_a_container_in_a_block_kind_is_read():
    """PyTorch would build an entry nothing reads and Keras would drop it (counts differed by
    its weights, found by test_differential's container_specs)."""
    text = fpn_block().replace("- coarse: {resize: {like: fpn.outer.0}, from: fpn.outer.1}", "- coarse: {resize: {like: fpn.inner.1}, from: fpn.outer.0}")
    with pytest.raises(SpecError, match=r"t.yaml:26:19: entry 'fpn.outer.1' of block 'fpn_kind' is never read"):
        lower(load_spec_text(text, "t.yaml"))


def test_an_entry_reads_the_container_before_it_by_name():
    """A container read by its name is its last entry's tensor (`fpn` here is `fpn.outer.1`)."""
    text = fpn_block().replace("- coarse: {resize: {like: fpn.outer.0}, from: fpn.outer.1}", "- coarse: {resize: {like: fpn.outer.0}, from: fpn}")
    graph = agree(text)
    assert {n.id: n for n in graph.nodes}["neck.coarse"].inputs[0] == "neck.fpn.outer.1"
    assert re.search(r"coarse = F.interpolate\(fpn_outer_1, ", emit(graph, "torch"))


# timm's Res2Net bottleneck in miniature: `convs.i` and `bns.i` (two nn.ModuleLists) called in
# turn, between channel slices, an add and a shared ReLU: each entry written where it is called
RES2NET_LAYERS = """\
- conv1: {conv: {filters: 3 * w, kernel: 1}}
- bn1: batchnorm
- relu: relu
- split1: {slice: {stop: w}}
- convs.0: {conv: {filters: w, kernel: 3, padding: 1}}
- bns.0: batchnorm
- relu1: relu
- split2: {slice: {start: w, stop: 2 * w}, from: relu}
- add: {add: [relu1, split2]}
- convs.1: CONV1
- bns.1: batchnorm
- relu2: relu
- split3: {slice: {start: 2 * w}, from: relu}
- cat: {concat: [relu1, relu2, split3]}
- conv3: {conv: {filters: 12, kernel: 1}}
- bn3: batchnorm
- add1: {add: [bn3, IN]}
- relu3: relu
"""
CONV = "{conv: {filters: w, kernel: 3, padding: 1}}"


def res2net_block(conv1: str = CONV) -> str:
    body = textwrap.indent(RES2NET_LAYERS.replace("IN", "input").replace("CONV1", conv1), "    ")
    kinds = "  cb:\n    params: {f: int}\n    layers:\n      - conv: {conv: {filters: f, kernel: 3, padding: 1}}\n      - bn: batchnorm\n"
    return HEAD + f"blocks:\n{kinds}  r2n:\n    params: {{w: int}}\n    layers:\n{body}layers:\n  - stem: {{conv: {{filters: 12, kernel: 3, padding: 1}}}}\n  - b: {{block: r2n, with: {{w: 4}}}}\n  - pool: global_avgpool\n"


def res2net_model() -> str:
    body = RES2NET_LAYERS.replace("IN", "stem").replace("CONV1", CONV).replace("3 * w", "12").replace("2 * w", "8").replace(": w", ": 4")
    return HEAD + "layers:\n  - stem: {conv: {filters: 12, kernel: 3, padding: 1}}\n" + textwrap.indent(body, "  ") + "  - pool: global_avgpool\n"


def test_container_entries_written_where_forward_calls_them():
    """`convs.0`, `convs.1`: the entries of one nn.ModuleList, each at its own place of the list,
    at model level and in a block kind: IR = PyTorch = Keras, and the two forms agree."""
    at_model, in_block = both(res2net_model(), res2net_block(), "b")
    nodes = {n.id: n for n in in_block.nodes}
    assert nodes["b.convs.1"].inputs == ("b.add",) and nodes["b.bns.0"].inputs == ("b.convs.0",)
    code = emit(in_block, "torch")
    assert "self.convs = nn.ModuleList(\n            [\n                nn.Conv2d(w, w, kernel_size=3, padding=1, bias=False),\n" in code
    assert "self.bns = nn.ModuleList([nn.BatchNorm2d(w), nn.BatchNorm2d(w)])" in code
    assert "out = self.convs[0](out)\n        out = self.bns[0](out)\n        relu1 = self.relu1(out)" in code
    assert "out = relu1 + split2\n        out = self.convs[1](out)" in code
    assert "self.convs = nn.ModuleList(" in emit(at_model, "torch")
    assert 'name=f"{name}_convs_1"' in emit(in_block, "keras")


def test_a_container_entry_written_in_place_may_be_a_block():
    graph = agree(res2net_block("{block: cb, with: {f: w}}"))
    assert {n.id: n for n in graph.nodes}["b.convs.1.bn"].inputs == ("b.convs.1.conv",)
    assert "self.convs = nn.ModuleList(" in emit(graph, "torch")


def test_container_entries_written_in_place_are_checked():
    block = res2net_block()
    _refused(block.replace("- convs.1:", "- convs.2:"), r"t.yaml:\d+:\d+: convs.2: the entries of container 'convs' are numbered from 0 .* expected convs.1")
    _refused(block.replace("- relu3: relu", "- convs: relu"), r"convs: the name of a container whose entries are written `convs.0`")
    _refused(block.replace("- add: {add:", "- bns.9: {add:"), r"bns.9: the entries of a numbered container are modules: .* not add")
    _refused(block.replace("- convs.1: " + CONV, "- convs.1: {conv: {filters: w, kernel: 3, padding: 1}, if: w > 2}"), r"convs.1: an entry of a container is not conditional")
    _refused(block.replace("- relu3: relu", "- relu3: [{convs.7: relu}]"), r"convs.7: an entry written as `container.number` is an entry of a block kind's `layers:`")
    _refused(block.replace("- relu3: relu", "- relu3: {act: relu, from: convs}"), r"unknown tensor 'convs'")
    _refused(block.replace("- convs.1:", "- convs.01:"), r"'convs.01' is not a valid name")



AFTER_PIECES = """\
archc: 1
name: after
input: [4, 8, 8]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  b:
    connectivity: skip
    layers:
      - convs.0: {conv: {filters: 4, kernel: 3, padding: 1}}
      - r: relu
      - LAST
    after:
      - AFTER
layers:
  - x: {block: b}
"""


def test_container_entries_written_in_place_across_a_blocks_sections():
    """A piece in `after:` (numbered apart from `layers:`, PyTorch ran the 3x3 conv where the 1x1
    belonged) and an `after:` layer named as a container of `layers:` (dropped from __init__)
    are refused; a piece as the block's last layer is its output (it was refused as never read)."""
    text = AFTER_PIECES.replace("      - LAST\n", "")
    _refused(text.replace("AFTER", "convs.0: {conv: {filters: 4, kernel: 1}}"), r"convs.0: an entry written as `container.number` .* not of a list or `after:`")
    _refused(text.replace("AFTER", "convs: {conv: {filters: 4, kernel: 1}}"), r"convs: the name of a container whose entries are written `convs.0`")
    graph = agree(AFTER_PIECES.replace("LAST", "convs.1: {conv: {filters: 4, kernel: 1}}").replace("AFTER", "out: relu"))
    assert [n.id for n in graph.nodes if n.op.kind == "conv"] == ["x.convs.0", "x.convs.1"]
    # an unnamed module in `after:` of a block with named layers has no attribute (`self.0 = ...`)
    _refused(text.replace("AFTER", "relu").replace("convs.0:", "c:"), r"t.yaml:12:9: block 'b' names some of its layers, so this one needs a name too")


# timm's SelecSLS in miniature: its blocks pass lists [x, skip] down an nn.Sequential; here a
# numbered container whose entries read earlier ones by number, `from: ["1", "0"]`
SLS_KINDS = """\
blocks:
  sls_first:
    params: {w: int}
    layers:
      - conv1: {conv: {filters: w, kernel: 3, padding: 1, stride: 2}}
      - conv2: {conv: {filters: w, kernel: 3, padding: 1}}
      - cat: {concat: [conv1, conv2]}
      - conv6: [{conv: {filters: w, kernel: 1}}, batchnorm, relu]
  sls:
    inputs: [x0, x1]
    params: {w: int}
    layers:
      - conv1: {conv: {filters: w, kernel: 3, padding: 1}, from: x0}
      - cat: {concat: [conv1, x1]}
      - conv6: [{conv: {filters: w, kernel: 1}}, batchnorm, relu]
"""
SLS_LAYERS = """\
- features:
    modules:
      - {block: sls_first, with: {w: 6}}
      - {block: sls, with: {w: 6}, from: ["0", "0"]}
      - {block: sls, with: {w: 5}, from: ["1", "0"]}
      - {block: sls_first, with: {w: 7}, from: "2"}
- head: {conv: {filters: 3, kernel: 3, stride: 2, padding: 1}, from: features.2}
- joined: {concat: [features, head]}
"""


def sls_model() -> str:
    return HEAD + SLS_KINDS + "layers:\n  - stem: {conv: {filters: 5, kernel: 3, padding: 1}}\n" + textwrap.indent(SLS_LAYERS, "  ")


def sls_block() -> str:
    kinds = SLS_KINDS + "  trunk:\n    layers:\n" + textwrap.indent(SLS_LAYERS, "      ")
    return HEAD + kinds + "layers:\n  - stem: {conv: {filters: 5, kernel: 3, padding: 1}}\n  - body: {block: trunk}\n"


def test_numbered_entries_read_earlier_ones_by_number():
    """A numbered container's entry reads an earlier entry of the same container by its number,
    at model level and inside a block kind: the same IR and function either way."""
    at_model, in_block = both(sls_model(), sls_block(), "body")
    nodes = {n.id: n for n in at_model.nodes}
    assert nodes["features.2.conv1"].inputs == ("features.1.conv6.2",)
    assert nodes["features.2.cat"].inputs == ("features.2.conv1", "features.0.conv6.2")
    assert nodes["features.3.conv1"].inputs == ("features.2.conv6.2",)
    code = emit(at_model, "torch")
    assert "features_1 = self.features[1](features_0, features_0)" in code
    assert "features_2 = self.features[2](features_1, features_0)" in code
    keras_code = emit(in_block, "keras")
    assert re.search(r"sls\(\s*features_1, features_0,", keras_code), keras_code


def test_a_number_reads_only_an_earlier_entry_of_its_numbered_container():
    text = sls_model()
    _refused(text.replace('from: ["0", "0"]', 'from: ["0", "2"]'), r"unknown tensor '2'")
    _refused(text.replace("from: features.2}", 'from: "2"}'), r"unknown tensor '2'.*known here: input, stem, features")
    _refused(text.replace('from: ["0", "0"]', 'from: ["0", "00"]'), r"'00' is not a valid name")
