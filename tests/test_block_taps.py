"""Taps inside a block kind: a layer of a kind reads an entry of a list of the same kind
(`from: body.relu`, a merge's `feats.1`, `resize: {like: body.relu}`, the kind's `outputs:`),
as the model's own list reads an entry of a model-level group. The independent fact: the same
network written at model level (the model's walker) has the same counts, shapes and
state_dict keys, and, with the weights copied by name, computes the same function in the
generated PyTorch; each side's IR, PyTorch and Keras agree (test_differential.agree)."""

from __future__ import annotations

import textwrap

import pytest
from conftest import assert_ruff_clean, need
from test_differential import HEAD, agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")

# the kind's layers; written at model level, the same entries are the model's own
LAYERS = """\
- body:
    - conv1: {conv: {filters: W, kernel: 3, padding: 1}}
    - relu: relu
    - conv2: {conv: {filters: W, kernel: 3, stride: 2, padding: 1}}
    - bn: batchnorm
    - relu2: relu
- feats:
    - {conv: {filters: W, kernel: 1}}
    - relu
    - {conv: {filters: W, kernel: 3, stride: 2, padding: 1}}
- side: {conv: {filters: W, kernel: 1}, from: body.relu}
- low: {add: [feats.1, body.relu2]}
- coarse: {resize: {like: low, mode: nearest}, from: feats}
- both: {add: [low, coarse]}
- up: {resize: {like: body.relu, mode: nearest}}
- total: {add: [up, side]}
"""
TAIL = """\
- pool: global_avgpool
- fc: {dense: {units: num_classes}}
"""


def in_block(layers: str = LAYERS, w: int = 6, extra: str = "") -> str:
    kind = "tapping:\n  params: {w: int}\n" + extra + "  layers:\n" + textwrap.indent(layers.replace("W", "w"), "    ")
    return HEAD + "blocks:\n" + textwrap.indent(kind, "  ") + "layers:\n" + textwrap.indent(f"- blk: {{block: tapping, with: {{w: {w}}}}}\n" + TAIL, "  ")


def at_model_level(layers: str = LAYERS, w: int = 6) -> str:
    return HEAD + "layers:\n" + textwrap.indent(layers.replace("W", str(w)) + TAIL, "  ")


def same_network(block_spec: str, model_spec: str, prefix: str = "blk.", renamed: dict[str, str] | None = None) -> None:
    """Equal counts, output shape, state_dict keys (the block's under its instance) and, with
    the weights copied by name, equal PyTorch outputs; each side's IR = PyTorch = Keras."""
    inside, outside = agree(block_spec), agree(model_spec)
    assert inside.counts == outside.counts and inside.output_shape == outside.output_shape
    shapes = {n.id: n.shape for n in outside.nodes}
    inner = {n.id.removeprefix(prefix): n.shape for n in inside.nodes if n.id.startswith(prefix)}
    assert {(renamed or {}).get(k, k): v for k, v in inner.items()}.items() <= shapes.items()
    a = module_from(emit(inside, "torch"), "inside").build_model().eval()
    b = module_from(emit(outside, "torch"), "outside").build_model().eval()
    keys = {k.removeprefix(prefix): v for k, v in a.state_dict().items()}
    assert set(keys) == set(b.state_dict()), "state_dict keys differ"
    torch.manual_seed(0)
    with torch.no_grad():
        for key, value in b.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape) - 0.3 if key.endswith("running_mean") else torch.rand(value.shape) + 0.5 if key.endswith("running_var") else torch.randn(value.shape) * 0.3)
        a.load_state_dict({prefix + k if prefix + k in a.state_dict() else k: v for k, v in b.state_dict().items()})
        x = torch.randn(2, *outside.input_shape.as_tuple())
        assert torch.allclose(a(x), b(x), atol=1e-5)


def test_taps_in_a_block_kind_are_the_model_levels():
    same_network(in_block(), at_model_level())
    graph = lower(load_spec_text(in_block(), "t.yaml"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["blk.side"].inputs == ("blk.body.relu",)
    assert nodes["blk.low"].inputs == ("blk.feats.1", "blk.body.relu2")
    assert nodes["blk.up"].inputs == ("blk.both", "blk.body.relu") and nodes["blk.up"].shape.size == (12, 12)
    source = emit(graph, "torch")
    assert "body_relu = self.body.relu(x)" in source and "x = self.body.conv2(body_relu)" in source
    assert "feats_1 = self.feats[:2](out)" in source and "feats = self.feats[2](feats_1)" in source
    assert "bn=nn.BatchNorm2d(w)" in source and "relu2=nn.ReLU(inplace=True)" in source
    assert "conv2=nn.Conv2d(w, w" in source  # after a tapped entry: in place it would overwrite the tap
    keras_source = emit(graph, "keras")
    assert "body_relu = x" in keras_source and "feats_1 = x" in keras_source


def test_a_tapped_entry_is_never_overwritten_in_place():
    """An activation right after a tapped entry gets its own tensor (PyTorch in place would
    change the tap's)."""
    layers = LAYERS.replace("- conv2: {conv: {filters: W, kernel: 3, stride: 2, padding: 1}}", "- act: relu\n    - conv2: {conv: {filters: W, kernel: 3, stride: 2, padding: 1}}")
    layers = layers.replace("- relu: relu", "- relu: {conv: {filters: W, kernel: 1}}")  # `relu` now a conv read by `side`
    same_network(in_block(layers), at_model_level(layers))
    source = emit(lower(load_spec_text(in_block(layers), "t.yaml")), "torch")
    assert "act=nn.ReLU()," in source


def test_a_skip_kind_reads_a_tap():
    """A skip kind (identity shortcut) whose branch merges its list with an entry of it; at
    model level the sum with the input is a layer."""
    layers = """\
- body:
    - conv1: {conv: {filters: W, kernel: 3, padding: 1}}
    - relu: relu
    - conv2: {conv: {filters: W, kernel: 3, padding: 1}}
- fuse: {add: [body, body.relu]}
"""
    same_network(in_block(layers, w=4, extra="  connectivity: skip\n"), at_model_level(layers + "- sum: {add: [fuse, input]}\n", w=4), renamed={"add": "sum"})


def test_an_output_of_a_kind_is_a_tap():
    """`outputs: [total, body.relu]`: the instance's later output `blk.body.relu` is the tap's tensor."""
    inside = in_block(extra="  outputs: [total, body.relu]\n").replace(
        "  - pool:", "  - s2: {conv: {filters: 6, kernel: 1}, from: blk.body.relu}\n  - j: {add: [blk, s2]}\n  - pool:"
    )
    same_network(inside, at_model_level(LAYERS + "- s2: {conv: {filters: W, kernel: 1}, from: body.relu}\n- j: {add: [total, s2]}\n"))
    graph = lower(load_spec_text(inside, "t.yaml"))
    assert {n.id: n for n in graph.nodes}["s2"].inputs == ("blk.body.relu",)
    source = emit(graph, "torch")
    assert "return total, body_relu" in source and "blk, blk_body_relu = self.blk(x)" in source
    assert "return total, body_relu" in emit(graph, "keras")


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("- relu: relu", "- relu: {act: {fn: relu}, if: w > 2}", r"side reads 'body.relu', .* an entry of the list is under `if:`"),
        ("- body:\n", "- body:\n    if: w > 2\n    group:\n", r"side reads 'body.relu', .* the list is under `if:`"),
        ("- total: {add: [up, side]}", "- total: {add: [up, side]}\n- body_relu: {act: {fn: relu}, from: total}", r"layer 'body_relu' has the name the generated code gives the tap 'body.relu'"),
        ("from: body.relu}", "from: body.relux}", r"unknown tensor 'body.relux'"),
    ],
)
def test_taps_that_cannot_be(old, new, message):
    layers = LAYERS.replace(old, new)
    if "group:" in new:  # the list's entries one level deeper
        head, _, rest = layers.partition("group:\n")
        entries, _, after = rest.partition("- feats:")
        layers = head + "group:\n" + textwrap.indent(entries, "  ") + "- feats:" + after
    with pytest.raises(SpecError, match=message):
        lower(load_spec_text(in_block(layers), "t.yaml"))


def test_generated_code_with_taps_in_a_kind_passes_ruff(tmp_path):

    extra = "  outputs: [total, body.relu]\n"
    text = in_block(extra=extra).replace("  - pool:", "  - s2: {conv: {filters: 6, kernel: 1}, from: blk.body.relu}\n  - j: {add: [blk, s2]}\n  - pool:")
    graph = lower(load_spec_text(text, "t.yaml"))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


@pytest.mark.parametrize("where", ["model", "block"])
def test_a_list_read_only_through_an_earlier_entry_is_unread(where):
    """`feats.1` is read, `feats.2` (the list's last entry) by nothing: PyTorch would build it and
    Keras drop it (their counts differed at model level), so at both levels it is an unread layer."""
    layers = LAYERS.replace("- coarse: {resize: {like: low, mode: nearest}, from: feats}\n- both: {add: [low, coarse]}\n", "")
    layers = layers.replace("{like: body.relu, mode: nearest}}", "{like: body.relu, mode: nearest}, from: low}")
    text = at_model_level(layers) if where == "model" else in_block(layers)
    with pytest.raises(SpecError, match=r"layer 'feats' of (the model|block 'tapping') is never read"):
        lower(load_spec_text(text, "t.yaml"))
