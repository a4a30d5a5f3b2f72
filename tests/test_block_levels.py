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


@pytest.mark.parametrize("between", ["{conv: {filters: 4, kernel: 1}}", "{maxpool: {kernel: 2}}"])
def test_flatten_of_a_map_whose_size_the_kind_does_not_fix_is_refused(between):
    kind = f"head:\n  layers:\n    - pool: {{adaptive_avgpool: {{size: 1}}}}\n    - mid: {between}\n    - flatten: flatten\n"
    with pytest.raises(SpecError, match="the kind does not fix its map's size"):
        lower(load_spec_text(text("- head: {block: head}\n", kind), "t.yaml"))
