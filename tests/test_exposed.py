"""build_model() takes a model param where that is exact: the generated model built with
another value is the model archc lowers with `--set params.NAME=value` (same parameter
count, in PyTorch the same state_dict keys and shapes, in Keras the same count), and a param
is left out where some literal of the generated code would depend on it.

The param reaches its layers directly (a classifier's `units`/`filters`) or through a block
kind's instance or stage (`with: {num_classes: num_classes}`), whose constructor passes it on."""

import inspect

import pytest
from conftest import ROOT, graph_of, need

from archc import api
from archc.ir.graph import BlockInst, StageInst
from archc.lower import lower
from archc.spec.loader import load_spec_text

HEADER = """\
archc: 1
name: exposed
input: [3, 16, 16]
{params}
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
use: [resnet]
blocks:
  head:
    params: {num_classes: int}
    layers:
      - {conv: {filters: in_channels // 2, kernel: 3, padding: 1}}
      - batchnorm
      - relu
      - {conv: {filters: num_classes, kernel: 1, bias: true}}
  wrap:
    params: {num_classes: int}
    layers:
      - reduce: {conv: {filters: 8, kernel: 1}}
      - inner: {block: head, with: {num_classes: num_classes}}
  mix:
    params: {hidden: int}
    layers:
      - {conv: {filters: hidden, kernel: 1}}
      - relu
      - {conv: {filters: in_channels, kernel: 1}}
  strided:
    params: {num_classes: int, stride: 1}
    layers:
      - {conv: {filters: num_classes, kernel: 1, stride: stride}}
  level:  # recursive: while depth > 1, the next level at twice the filters, between a pool and an up-conv
    params: {filters: int, depth: int}
    out_channels: filters
    layers:
      - conv: {conv: {filters: filters, kernel: 3, padding: 1}}
      - pool: {maxpool: {kernel: 2}, if: "depth > 1"}
      - inner: {block: level, with: {filters: filters * 2, depth: depth - 1}, if: "depth > 1"}
      - up: {conv_transpose: {filters: filters, kernel: 2, stride: 2, bias: true}, if: "depth > 1"}
      - cat: {concat: [conv, up], if: "depth > 1"}
      - fuse: {conv: {filters: filters, kernel: 1}, if: "depth > 1"}
layers:
  - stem: {conv: {filters: 8, kernel: 3, padding: 1}}
"""

PARAMS = {"num_classes": 10, "width": 6, "factor": 2, "depth": 3}  # those a spec's layers use
# Each spec's layers after the stem, and whether build_model() takes num_classes (or width).
EXPOSED = {
    "block_then_resize": """
  - classifier: {block: head, with: {num_classes: num_classes}}
  - logits: {resize: {like: input, mode: bilinear}}
""",
    "block_in_group": """
  - head:
      - {conv: {filters: 8, kernel: 1}}
      - {block: head, with: {num_classes: num_classes}}
""",
    "blocks_in_modules": """
  - heads:
      modules:
        - {block: head, with: {num_classes: num_classes}, from: stem}
        - {block: head, with: {num_classes: num_classes}, from: stem}
  - sum: {add: [heads.0, heads.1]}
""",
    "nested_kind": """
  - classifier: {block: wrap, with: {num_classes: num_classes}}
""",
    # the param sets how deep a recursive kind goes: its code recurses on it
    "recursive_depth": """
  - unet: {block: level, with: {filters: 4, depth: depth}}
""",
    "stage_of_one": """
  - heads: {stage: head, repeat: 1, with: {num_classes: num_classes}}
""",
    "stage_loop": """
  - mixes: {stage: mix, repeat: 3, with: {hidden: width}}
""",
    # the second head reads the stem, not the first: a dataflow rule, not "everything after it"
    "two_heads": """
  - main: {block: head, with: {num_classes: num_classes}}
  - up: {upsample: {scale: 2}}
  - aux: {block: head, with: {num_classes: num_classes}, from: stem}
outputs: {out: up, aux: aux}
""",
    "merge_then_nothing_weighted": """
  - classifier: {block: head, with: {num_classes: num_classes}}
  - side: {conv: {filters: num_classes, kernel: 1}, from: stem}
  - sum: {add: [classifier, side]}
  - relu: relu
""",
}
NOT_EXPOSED = {
    # a layer with weights reads the head's output: its in_channels would be a literal 10
    "block_then_conv": """
  - classifier: {block: head, with: {num_classes: num_classes}}
  - post: {conv: {filters: 4, kernel: 1}}
""",
    "merge_then_conv": """
  - classifier: {block: head, with: {num_classes: num_classes}}
  - side: {conv: {filters: num_classes, kernel: 1}, from: stem}
  - sum: {add: [classifier, side]}
  - post: {conv: {filters: 4, kernel: 1}}
""",
    # an expression of the param: the layer rule passes only the param itself
    "expression": """
  - classifier: {block: head, with: {num_classes: num_classes * 2}}
""",
    # the second instance's call prints the first one's output channels (`Head(10, ...)`)
    "stage_chained": """
  - heads: {stage: head, repeat: 2, with: {num_classes: num_classes}}
""",
    # `with:` is overridden by `last:`: not every instance passes the param on
    "stage_overridden": """
  - mixes: {stage: mix, repeat: 3, with: {hidden: width}, last: {hidden: 4}}
""",
    # the kind's projection shortcut is a switch its instance sets (8 -> 10 channels: on)
    "shortcut_switch": """
  - classifier: {block: basic, with: {planes: num_classes}}
""",
    # the param sets the block's stride, not only channels: the Keras pool after it pads by a
    # literal computed from the size of its input (ceil_mode)
    "stride": """
  - classifier: {block: strided, with: {num_classes: 4, stride: factor}}
  - pool: {maxpool: {kernel: 3, stride: 2, ceil_mode: true}}
""",
}


def graph(layers: str, *sets: str):
    params = ", ".join(f"{k}: {v}" for k, v in PARAMS.items() if k in layers)
    text = HEADER.replace("{params}", f"params: {{{params}}}") + layers.lstrip("\n")
    return lower(load_spec_text(text, "exposed.yaml", list(sets)))


@pytest.mark.parametrize("case", sorted(NOT_EXPOSED))
def test_not_exposed(case):
    g = graph(NOT_EXPOSED[case])
    assert dict(g.exposed).keys().isdisjoint(PARAMS)
    need("torch")
    assert list(inspect.signature(api.load_module(g, "torch").build_model).parameters) == []


def _param(case):
    return next(p for p in ("width", "depth", "num_classes") if f": {p}" in EXPOSED[case])


@pytest.mark.parametrize("case", sorted(EXPOSED))
def test_exposed_is_the_model_set_with_that_value(case):
    """build_model(param=5) is the model lowered with --set params.param=5."""
    torch = need("torch")
    param = _param(case)
    g = graph(EXPOSED[case])
    assert param in dict(g.exposed)
    other = graph(EXPOSED[case], f"params.{param}=5")
    model = api.load_module(g, "torch").build_model(**{param: 5})
    reference = api.load_module(other, "torch").build_model()

    def shapes(m):
        return {k: tuple(v.shape) for k, v in m.state_dict().items()}

    assert shapes(model) == shapes(reference)
    assert sum(p.numel() for p in model.parameters()) == other.counts.trainable != g.counts.trainable
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        got = model(x)
    outputs = got.values() if isinstance(got, dict) else [got]
    assert [tuple(o.shape[1:]) for o in outputs] == ([o.shape.as_tuple() for o in other.outputs] or [other.output_shape.as_tuple()])
    keras = need("keras")
    kmodel = api.load_module(g, "keras").build_model(**{param: 5})
    assert sum(int(keras.ops.size(w)) for w in kmodel.trainable_weights) == other.counts.trainable


def test_block_instances_record_what_they_pass_on():
    """The IR says which argument of which instance comes from build_model(), and the emitters
    print the param's name there."""
    g = graph(EXPOSED["stage_loop"])
    (stage,) = [item for item in g.body if isinstance(item, StageInst)]
    assert [inst.exposed for inst in stage.instances] == [(("hidden", "width"),)] * 3
    torch_code = api.compile(g, "torch")
    assert "Mix(8, hidden=width) for _ in range(3)" in torch_code
    g = graph(EXPOSED["block_then_resize"])
    (block,) = [item for item in g.body if isinstance(item, BlockInst)]
    assert block.exposed == (("num_classes", "num_classes"),)
    assert "self.classifier = Head(8, num_classes=num_classes)" in api.compile(g, "torch")
    assert 'head(x, 8, num_classes=num_classes, name="classifier")' in api.compile(g, "keras")


# The zoo's segmentation heads are block kinds that take num_classes: torchvision's builders take
# it too (the PyTorch side against torchvision: tests/test_torchvision.py).
SEGMENTATION = [
    ("specs/segmentation/fcn_resnet50.yaml",),
    ("specs/segmentation/fcn_resnet50.yaml", "params.aux_loss=true"),
    ("specs/segmentation/lraspp_mobilenet_v3_large.yaml",),
]


@pytest.mark.parametrize("spec", SEGMENTATION, ids=["fcn", "fcn_aux", "lraspp"])
def test_segmentation_heads_take_num_classes(spec):
    torch = need("torch")
    keras = need("keras")
    g = graph_of(*spec)
    assert dict(g.exposed) == {"num_classes": 21}
    other = graph_of(*spec, "params.num_classes=5")
    model = api.load_module(g, "torch").build_model(num_classes=5)
    trainable = sum(p.numel() for p in model.parameters())
    assert trainable == other.counts.trainable < g.counts.trainable
    kmodel = api.load_module(g, "keras").build_model(num_classes=5)
    assert sum(int(keras.ops.size(w)) for w in kmodel.trainable_weights) == trainable
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 67, 75))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, 5, 67, 75) for k in out}


def test_generated_segmentation_modules_take_num_classes():
    """The checked-in modules (README: build_model() takes num_classes= where the head allows it)."""
    for name in ("fcn_resnet50", "lraspp_mobilenet_v3_large", "deeplabv3_resnet50"):
        source = (ROOT / "generated" / f"{name}_torch.py").read_text()
        assert "def build_model(num_classes: int = 21)" in source
        assert "def build_model(num_classes: int = 21)" in (ROOT / "generated" / f"{name}_keras.py").read_text()
