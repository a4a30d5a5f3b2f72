"""A block kind accepts what the model's own list accepts: `flatten`, and stages whose
arguments read the instance index `i` or give the last instance its own (`last:`).

The independent fact each test checks against is the same network written at model level
(the model's own walker): equal counts and output shapes, and with the model-level
network's weights copied over in module order, equal PyTorch outputs. Each spec also
passes `test_differential.agree` (IR = PyTorch = Keras with shared weights), so the Keras
module computes that same function."""

from __future__ import annotations

import textwrap

import pytest
from conftest import need
from test_differential import agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
need("keras")

HEAD = """\
archc: 1
name: t
input: [4, 12, 12]
params: {num_classes: 5}
defaults: {conv: {bias: false}, dense: {bias: true}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
"""


def text(layers: str, blocks: str = "") -> str:
    section = "blocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  ") if blocks else ""
    return HEAD + section + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ")


def same_as_model_level(in_block: str, at_model: str, keras_too: bool = True):
    """Both specs agree in the IR, PyTorch (and Keras); the block-kind network has the
    model-level one's counts, output shape, and, with its weights, its outputs."""
    graph, reference = agree(in_block, keras_too), agree(at_model, keras_too)
    assert graph.counts == reference.counts
    assert graph.output_shape == reference.output_shape
    mine = module_from(emit(graph, "torch"), "b_torch").build_model().eval()
    theirs = module_from(emit(reference, "torch"), "m_torch").build_model().eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for value in theirs.state_dict().values():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)  # running variances stay positive
    ours, given = mine.state_dict(), theirs.state_dict()
    assert [v.shape for v in ours.values()] == [v.shape for v in given.values()]
    mine.load_state_dict(dict(zip(ours, given.values())))
    x = torch.randn(3, *graph.input_shape.as_tuple(), generator=generator)
    with torch.no_grad():
        want, got = theirs(x), mine(x)
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))
    return graph, reference


# --- flatten ------------------------------------------------------------------------------------

CLASSIFIER = """\
- pool: {adaptive_avgpool: {size: CELLS}}
- norm: batchnorm
- flatten: flatten
- fc1: {dense: {units: 3 * classes}}
- ln: {layernorm: {eps: 1.0e-5}}
- act: relu
- fc: {dense: {units: classes}}
"""


def classifier(cells: int) -> tuple[str, str]:
    """A classifier head as a block kind, and the same layers at model level."""
    layers = CLASSIFIER.replace("CELLS", str(cells))
    kind = "head:\n  params: {classes: int}\n  layers:\n" + textwrap.indent(layers, "    ")
    stem = "- stem: [{conv: {filters: 6, kernel: 3, padding: 1, stride: 2}}, relu]\n"
    in_block = text(stem + "- head: {block: head, with: {classes: num_classes}}\n", kind)
    at_model = text(stem + layers.replace("classes", "num_classes"))
    return in_block, at_model


def test_flatten_in_a_block_kind_is_the_model_levels():
    graph, _ = same_as_model_level(*classifier(1))
    assert graph.output_shape.as_tuple() == (5,)
    fc1 = next(n for n in graph.nodes if n.id == "head.fc1")
    assert fc1.trainable == 6 * 15 + 15  # flatten of (6, 1, 1): 6 features
    code = emit(graph, "torch")
    assert "self.flatten = nn.Flatten()" in code and "nn.Linear(in_channels, fc1_channels)" in code
    assert 'layers.Flatten(name=f"{name}_flatten")' in emit(graph, "keras")


def test_flatten_of_a_fixed_map_counts_its_positions():
    """adaptive_avgpool to 2x2 fixes the map: the dense layer reads in_channels * 2 ** 2
    features, in_channels * 4 (Keras has no adaptive pool to 2x2 inside a block kind: PyTorch only)."""
    graph, _ = same_as_model_level(*classifier(2), keras_too=False)
    assert next(n for n in graph.nodes if n.id == "head.fc1").trainable == 24 * 15 + 15
    assert "nn.Linear(in_channels * 4, fc1_channels)" in emit(graph, "torch")


def test_flatten_of_a_flat_tensor_keeps_its_features():
    kind = "head:\n  layers:\n    - pool: global_avgpool\n    - flatten: flatten\n    - fc: {dense: {units: 7}}\n"
    stem = "- stem: {conv: {filters: 6, kernel: 3, padding: 1}}\n"
    graph, _ = same_as_model_level(
        text(stem + "- head: {block: head}\n", kind), text(stem + "- pool: global_avgpool\n- flatten: flatten\n- fc: {dense: {units: 7}}\n")
    )
    assert graph.output_shape.as_tuple() == (7,)


def test_flatten_after_a_pointwise_conv_of_one_position_is_the_model_levels():
    """A 1x1 conv without padding keeps one position at any stride (timm's ClassifierHead with a
    conv `fc`): the flatten after it gives `filters` features, in IR, PyTorch and Keras."""
    kind = "head:\n  layers:\n    - pool: {adaptive_avgpool: {size: 1}}\n    - fc: {conv: {filters: 7, kernel: 1, stride: 2, bias: true}}\n    - flatten: flatten\n    - out: {dense: {units: 3}}\n"
    stem = "- stem: {conv: {filters: 6, kernel: 3, padding: 1}}\n"
    graph, _ = same_as_model_level(
        text(stem + "- head: {block: head}\n", kind),
        text(stem + "- pool: {adaptive_avgpool: {size: 1}}\n- fc: {conv: {filters: 7, kernel: 1, stride: 2, bias: true}}\n- flatten: flatten\n- out: {dense: {units: 3}}\n"),
    )
    assert next(n for n in graph.nodes if n.id == "head.out").trainable == 7 * 3 + 3


@pytest.mark.parametrize(
    "between", ["{conv: {filters: 4, kernel: 1, padding: 1}}", "{conv: {filters: 4, kernel: 3, padding: 1}}", "{maxpool: {kernel: 2}}"]
)
def test_flatten_of_a_map_whose_size_the_kind_does_not_fix_is_refused(between):
    kind = f"head:\n  layers:\n    - pool: {{adaptive_avgpool: {{size: 1}}}}\n    - mid: {between}\n    - flatten: flatten\n"
    with pytest.raises(SpecError, match="the kind does not fix its map's size"):
        lower(load_spec_text(text("- head: {block: head}\n", kind), "t.yaml"))


# --- stages with `i` and `last:` ----------------------------------------------------------------

UNIT = """\
unit:
  params: {filters: int, block_id: int, total: int, stride: 1}
  layers:
    - conv: {conv: {filters: filters, kernel: 3, padding: 1, stride: stride}}
    - bn: batchnorm
    - relu: {act: relu, if: block_id % 2 == 0}  # the index decides the function, not only a rate
    - drop: {dropout: {rate: 0.5 * block_id / total}}
"""
STAGE = "{stage: unit, repeat: COUNT, names: NAMES, with: {filters: WIDTH, block_id: i, total: COUNT}, first: {stride: 2}, last: {filters: WIDTH * 2}}"
TAIL = "- pool: global_avgpool\n- fc: {dense: {units: num_classes}}\n"


def fill(template: str, width: str, count: str) -> str:
    return template.replace("WIDTH", width).replace("COUNT", count)


def staged(n: int, names: str) -> tuple[str, str]:
    """A stage whose instances read `i` and whose last widens, inside a block kind and at model level."""
    stage = STAGE.replace("NAMES", f'"{names}"')
    group = f"group:\n  params: {{w: int, count: int}}\n  layers:\n    - units: {fill(stage, 'w', 'count')}\n"
    in_block = text(f"- body: {{block: group, with: {{w: 6, count: {n}}}}}\n" + TAIL, UNIT + group)
    at_model = text("- units: " + fill(stage, "6", str(n)) + "\n" + TAIL, UNIT)
    return in_block, at_model


@pytest.mark.parametrize("names", ["{i}", "unit{n}"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_stage_reading_i_with_last_in_a_block_kind_is_the_model_levels(n, names):
    graph, _ = same_as_model_level(*staged(n, names))
    body = graph.body[0]
    instances = body.children[0].instances
    assert [dict(inst.args)["block_id"] for inst in instances] == list(range(n))
    assert [dict(inst.args)["filters"] for inst in instances] == [6] * (n - 1) + [12]
    assert [dict(inst.args).get("stride", 1) for inst in instances] == [2] + [1] * (n - 1)
    assert body.out_shape.as_tuple() == (12, 6, 6)


def test_the_code_loops_over_i():
    graph = lower(load_spec_text(staged(3, "{i}")[0], "t.yaml"))
    torch_code, keras_code = emit(graph, "torch"), emit(graph, "keras")
    # the first is also the last where count == 1: PyTorch's class keeps the choice; the Keras
    # function decides it where every instance does (count is 3 in the only one, issue 21 §5)
    assert "filters=w * 2 if count == 1 else w" in torch_code
    assert "count == 1" not in keras_code and "filters=w,\n        block_id=0," in keras_code
    for code in (torch_code, keras_code):
        assert "filters=w * 2 if i == count - 1 else w" in code and "block_id=i," in code
        assert "for i in range(1, count)" in code
    # with an instance whose one unit is also its last, the Keras function keeps the choice too
    both = staged(3, "{i}")[0].replace("  - pool:", "  - one: {block: group, with: {w: 6, count: 1}}\n  - pool:")
    assert "filters=w * 2 if count == 1 else w" in emit(agree(both), "keras")


NUMBERED = """\
seq:
  params: {WIDTH: int, COUNT: int}
  layers:
    - {conv: {filters: WIDTH, kernel: 1}}
    - {stage: unit, repeat: COUNT, with: {filters: WIDTH, block_id: i, total: COUNT}, last: {stride: 2}}
    - relu
"""


@pytest.mark.parametrize("n", [1, 3])
def test_an_unnamed_stage_reading_i_is_numbered_on_in_a_numbered_block_kind(n):
    """torchvision's `nn.Sequential(first, *remaining)`: the instances are entries 1 ... n."""
    stage = fill(NUMBERED.split("    - ")[2].strip(), "6", str(n))
    in_block = text(f"- body: {{block: seq, with: {{w: 6, count: {n}}}}}\n" + TAIL, UNIT + fill(NUMBERED, "w", "count"))
    at_model = text(f"- body:\n  - {{conv: {{filters: 6, kernel: 1}}}}\n  - {stage}\n  - relu\n" + TAIL, UNIT)
    graph, reference = same_as_model_level(in_block, at_model)
    ids = {node.id for node in graph.nodes}
    assert ids == {node.id for node in reference.nodes}  # the same module paths: body.1 ... body.n
    assert f"body.{n}.conv" in ids and f"body.{n + 1}" in ids
    keras_code = emit(graph, "keras")
    if n > 1:
        assert 'name=f"{name}_{i + 1}"' in keras_code  # instance i is entry i + 1


DENSE_UNIT = """\
dense_unit:
  params: {growth: int, block_id: int}
  layers:
    - bn: batchnorm
    - relu: {act: relu, if: block_id != 1}
    - conv: {conv: {filters: growth, kernel: 3, padding: 1}}
"""


def test_a_dense_stage_reading_i_in_a_block_kind_is_the_model_levels():
    stage = "{stage: dense_unit, repeat: 3, connectivity: dense, with: {growth: 4, block_id: i}, last: {block_id: 1}}"
    kind = DENSE_UNIT + f"dense_block:\n  layers:\n    - block: {stage}\n"
    stem = "- stem: {conv: {filters: 6, kernel: 3, padding: 1}}\n"
    graph, _ = same_as_model_level(text(stem + "- db: {block: dense_block}\n" + TAIL, kind), text(stem + f"- block: {stage}\n" + TAIL, DENSE_UNIT))
    instances = graph.body[1].children[0].instances
    assert [dict(inst.args)["block_id"] for inst in instances] == [0, 1, 1]


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("with: {filters: w + i, block_id: 0, total: 3}", r"later instances must keep their input shape \(here w -> w \+ i channels\)"),
        ("with: {block_id: 0, total: 3}, first: {filters: w}, last: {filters: w}", "`last:` gives 'filters', which the other instances"),
        ("connectivity: dense, with: {filters: w + i, block_id: 0, total: 3}", "a dense stage's instances must add a fixed number"),
    ],
)
def test_stage_arguments_a_block_kind_cannot_loop_over_are_refused(stage, message):
    kind = UNIT + f"group:\n  params: {{w: int}}\n  layers:\n    - units: {{stage: unit, repeat: 3, {stage}}}\n"
    with pytest.raises(SpecError, match=message):
        lower(load_spec_text(text("- body: {block: group, with: {w: 6}}\n" + TAIL, kind), "t.yaml"))
