"""Block kinds with several named inputs (`inputs: [low, high]`) and several outputs
(`outputs: [features, logits]`). An instance reads one tensor per input (`from: [a, b]`):
the generated PyTorch class takes one channel argument per input and `forward(self, low,
high)` (torchvision's LRASPPHead(low_channels, high_channels, ...)), the Keras function one
tensor and one channel count per input. An instance's later outputs are read as
`instance.logits`: PyTorch returns a tuple and the caller unpacks it (`h, h_logits =
self.h(x)`), Keras likewise. The IR, the generated PyTorch and the generated Keras agree
(test_differential.agree); the zoo's proof of inputs is lraspp_mobilenet_v3_large against
torchvision (test_torchvision)."""

from __future__ import annotations

import pytest
from conftest import need
from test_differential import agree, module_from, spec

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")

# a U-Net decoder step: the coarse map upsampled, concatenated with the skip, then a conv
UP = """\
up:
  inputs: [skip, low]
  params: {w: int}
  layers:
    - upsampled: {conv_transpose: {filters: w, kernel: 2, stride: 2, bias: true}, from: low}
    - joined: {concat: [skip, upsampled]}
    - conv: {conv: {filters: w, kernel: 3, padding: 1}}
    - bn: batchnorm
    - relu: relu
"""

MODEL = """\
- enc: [{conv: {filters: 4, kernel: 3, padding: 1}}, relu]
- down: [{maxpool: {kernel: 2}}, {conv: {filters: 8, kernel: 3, padding: 1}}, relu]
- dec: {block: up, with: {w: 4}, from: [enc, down]}
"""


def test_two_inputs_at_model_level():
    graph = agree(spec(UP, MODEL))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["dec.upsampled"].inputs == ("down.2",)  # the second input
    assert nodes["dec.joined"].inputs == ("enc.1", "dec.upsampled") and nodes["dec.joined"].shape.c == 8
    # conv_transpose 8 -> 4 (2x2, bias) and conv 8 -> 4 (3x3) inside dec
    assert nodes["dec.upsampled"].trainable == 8 * 4 * 4 + 4 and nodes["dec.conv"].trainable == 8 * 4 * 9
    code = emit(graph, "torch")
    assert "def __init__(self, skip_channels: int, low_channels: int, *, w: int) -> None:" in code
    assert "def forward(self, skip: Tensor, low: Tensor) -> Tensor:" in code
    assert "nn.ConvTranspose2d(low_channels, w, kernel_size=2, stride=2)\n" in code  # bias=True: the default
    assert "skip_channels + w, w, kernel_size=3" in code
    assert "self.dec = Up(4, 8, w=4)" in code
    assert "x = self.dec(enc, down)" in code
    keras_code = emit(graph, "keras")
    assert "def up(\n    skip: keras.KerasTensor,\n    low: keras.KerasTensor,\n    skip_channels: int,\n    low_channels: int," in keras_code
    assert 'x = up(enc, down, 4, 8, w=4, name="dec")' in keras_code


def test_two_inputs_inside_another_block_kind():
    outer = UP + """\
level:
  params: {w: int}
  layers:
    - skip: [{conv: {filters: w, kernel: 3, padding: 1}}, relu]
    - inner: [{maxpool: {kernel: 2}}, {conv: {filters: 2 * w, kernel: 3, padding: 1}}, relu]
    - merged: {block: up, with: {w: w}, from: [skip, inner]}
"""
    graph = agree(spec(outer, "- lvl: {block: level, with: {w: 3}}\n"))
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["lvl.merged.upsampled"].inputs == ("lvl.inner.2",)
    assert nodes["lvl.merged.joined"].inputs == ("lvl.skip.1", "lvl.merged.upsampled")
    code = emit(graph, "torch")
    assert "self.merged = Up(w, inner_channels, w=w)" in code
    assert "out = self.merged(skip, inner)" in code
    model = module_from(code, "t").build_model()
    assert model.lvl.merged.upsampled.in_channels == 6 and model.lvl.merged.conv.in_channels == 6


def test_a_conditional_instance_with_two_inputs_passes_its_first_on():
    outer = UP + """\
level:
  params: {w: int, decode: true}
  layers:
    - skip: [{conv: {filters: w, kernel: 3, padding: 1}}, relu]
    - inner: [{maxpool: {kernel: 2}}, {conv: {filters: 2 * w, kernel: 3, padding: 1}}, relu]
    - merged: {block: up, with: {w: w}, from: [skip, inner], if: decode}
    - head: {conv: {filters: w, kernel: 1}, from: merged}
"""
    on = agree(spec(outer, "- lvl: {block: level, with: {w: 3}}\n"))
    off = agree(spec(outer, "- lvl: {block: level, with: {w: 3, decode: false}}\n"))
    assert {n.id for n in on.nodes} > {n.id for n in off.nodes}
    head = next(n for n in off.nodes if n.id == "lvl.head")
    assert head.inputs == ("lvl.skip.1",)  # absent, the instance passes its first input on


def lowered(text: str):
    return lower(load_spec_text(text, "t.yaml"))


@pytest.mark.parametrize(
    ("blocks", "layers", "message"),
    [
        (UP, "- enc: {conv: {filters: 4, kernel: 1}}\n- dec: {block: up, with: {w: 4}}\n", "reads 2 inputs (skip, low): write `from: [...]` with 2"),
        (UP, "- a: {conv: {filters: 4, kernel: 1}}\n- dec: {block: up, with: {w: 4}, from: [input, a, a]}\n", "reads 2 inputs"),
        (
            "one: {params: {w: int}, layers: [{c: {conv: {filters: w, kernel: 1}}}]}\n",
            "- a: {conv: {filters: 4, kernel: 1}}\n- b: {block: one, with: {w: 4}, from: [input, a]}\n",
            "block 'one' reads one input; `from:` names one tensor",
        ),
        (UP, "- s: {stage: up, repeat: 2, with: {w: 4}}\n", "a stage repeats a block with one input; block 'up' has 2 (skip, low)"),
        (
            "two:\n  inputs: [a, b]\n  layers: [{c: {conv: {filters: 4, kernel: 1}, from: a}}]\n",
            "- x: {block: two, from: [input, input]}\n",
            "input 'b' of block 'two' is never read",
        ),
        (
            "two:\n  inputs: [a, b]\n  params: {a_channels: 3}\n  layers: [{m: {add: [a, b]}}]\n",
            "- x: {block: two, from: [input, input]}\n",
            "'a_channels' names an input or its channels and also a parameter or layer",
        ),
        (
            "two:\n  inputs: [a, b]\n  connectivity: skip\n  layers: [{m: {add: [a, b]}}]\n",
            "- x: {block: two, from: [input, input]}\n",
            "a block with several inputs has no skip connectivity",
        ),
        (
            "two:\n  inputs: [a, input]\n  layers: [{m: {add: [a, input]}}]\n",
            "- x: {block: two, from: [input, input]}\n",
            "`inputs` are distinct names, none of them `input`",
        ),
        (
            UP + "outer:\n  layers:\n    - a: {conv: {filters: 4, kernel: 1}}\n    - m: {block: up, with: {w: 4}}\n",
            "- o: {block: outer}\n",
            "m: block 'up' reads 2 inputs",
        ),
    ],
)
def test_mistakes_are_named(blocks, layers, message):
    with pytest.raises(SpecError) as e:
        lowered(spec(blocks, layers))
    assert message in str(e.value)


def test_a_tensor_named_like_a_block_kind_does_not_shadow_its_keras_function():
    """A layer read by name whose name is a block kind's: the Keras function `odd` stays callable
    (its tensor is `out_odd`), found by the recursion helper's mutual-recursion test."""
    kinds = """\
odd:
  params: {w: int}
  layers: [{c: {conv: {filters: w, kernel: 1}}}]
even:
  params: {w: int}
  layers:
    - odd: {block: odd, with: {w: w}}
    - both: {concat: [odd, input]}
"""
    graph = agree(spec(kinds, "- odd: {block: even, with: {w: 3}}\n- odd2: {block: odd, with: {w: 2}, from: input}\n- j: {concat: [odd, odd2]}\n"))
    keras_code = emit(graph, "keras")
    assert "    out_odd = x\n" in keras_code and "([out_odd, odd2])" in keras_code and "    odd = x\n" not in keras_code


# --- several outputs -------------------------------------------------------------------------------

BODY = """\
body:
  params: {w: int}
  outputs: [features, logits]
  layers:
    - features: [{conv: {filters: w, kernel: 3, padding: 1}}, batchnorm, relu]
    - logits: {conv: {filters: w, kernel: 1}}
"""


def test_two_outputs_at_model_level_read_by_path():
    text = spec(BODY, "- h: {block: body, with: {w: 8}}\n- aux: {conv: {filters: 8, kernel: 1}, from: h.logits}\n- m: {add: [h, aux]}\n")
    graph = agree(text)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["aux"].inputs == ("h.logits",) and nodes["m"].inputs == ("h.features.2", "aux")
    code = emit(graph, "torch")
    assert "def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:" in code and "return features, logits" in code
    assert "h, h_logits = self.h(x)" in code and "aux = self.aux(h_logits)" in code and "x = h + aux" in code
    keras_code = emit(graph, "keras")
    assert ") -> tuple[keras.KerasTensor, keras.KerasTensor]:" in keras_code and "    return features, logits\n" in keras_code
    assert 'x, h_logits = body(x, 4, w=8, name="h")' in keras_code


def test_a_later_output_nothing_reads_is_refused():
    """Keras builds only what the outputs depend on: an output of a kind that nothing reads would
    be a layer in PyTorch and none in Keras (here the `logits` conv: 64 parameters)."""
    with pytest.raises(SpecError, match=r"h\.logits is never read: output 'logits' of block 'body' is read as `h\.logits`"):
        lowered(spec(BODY, "- h: {block: body, with: {w: 8}}\n"))


def test_two_outputs_inside_a_block_kind_and_as_model_outputs():
    outer = BODY + """\
outer:
  params: {w: int}
  layers:
    - b: {block: body, with: {w: w}}
    - pooled: {adaptive_avgpool: {size: 1}, from: b.logits}
    - gate: sigmoid
    - scaled: {multiply: [b, gate]}
"""
    head = HEAD_OUTPUTS
    text = spec(outer, "- h: {block: body, with: {w: 6}}\n- o: {block: outer, with: {w: 6}, from: h}\n", head=head)
    text = text.replace("outputs: [features, logits]\n", "outputs: [features, logits]\n", 1)
    text += "outputs: {out: fc, logits: h.logits}\n"
    graph = agree(text)
    nodes = {n.id: n for n in graph.nodes}
    assert nodes["o.pooled"].inputs == ("o.b.logits",) and nodes["o.scaled"].inputs == ("o.b.features.2", "o.gate")
    assert [(o.key, o.node) for o in graph.outputs] == [("out", "fc"), ("logits", "h.logits")]
    code = emit(graph, "torch")
    assert "b, b_logits = self.b(x)" in code and 'return {"out": fc, "logits": h_logits}' in code


HEAD_OUTPUTS = """\
archc: 1
name: t
input: [4, 12, 12]
params: {num_classes: 5}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
"""


def test_verify_reads_the_first_of_several_outputs(tmp_path):
    from click.testing import CliRunner

    from archc.cli import main

    path = tmp_path / "t.yaml"
    path.write_text(spec(BODY, "- h: {block: body, with: {w: 8}}\n- m: {add: [h, h.logits]}\n"))
    result = CliRunner().invoke(main, ["verify", str(path)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "\nh " in result.output


@pytest.mark.parametrize(
    ("blocks", "layers", "message"),
    [
        (BODY, "- s: {stage: body, repeat: 2, with: {w: 4}}\n", "a stage chains one tensor from instance to instance; block 'body' returns several"),
        (BODY, "- g: [{block: body, with: {w: 4}}]\n", "block 'body' returns several tensors (features, logits): its instance is a named entry"),
        (BODY, "- h: {block: body, with: {w: 4}, if: \"num_classes > 1\"}\n", "h: block 'body' returns several tensors (features, logits), so its instance cannot be conditional"),
        (BODY, "- m: {parallel: [{block: body, with: {w: 4}}, {conv: {filters: 4, kernel: 1}}], merge: add}\n", "its instance is a named entry"),
        (
            "two:\n  outputs: [a, nope]\n  layers: [{a: {conv: {filters: 4, kernel: 1}}}]\n",
            "- x: {block: two}\n",
            "output 'nope' of block 'two' is not a layer of its list; its layers: a",
        ),
        (
            "two:\n  outputs: [a, b]\n  connectivity: skip\n  layers: [{a: {conv: {filters: 4, kernel: 1}}}, {b: relu}]\n",
            "- x: {block: two}\n",
            "a block with several outputs has no skip connectivity",
        ),
        (BODY, "- h: {block: body, with: {w: 4}}\n- y: {conv: {filters: 2, kernel: 1}, from: h.nope}\n", "unknown tensor 'h.nope'"),
    ],
)
def test_output_mistakes_are_named(blocks, layers, message):
    with pytest.raises(SpecError) as e:
        lowered(spec(blocks, layers))
    assert message in str(e.value)


def test_the_diagram_draws_every_input_and_output_of_an_instance():
    from archc.passes.diagram import diagram

    d = diagram(lowered(spec(UP, MODEL)))
    assert {(e.src, e.dst) for e in d.edges} >= {("enc.1", "dec"), ("down.2", "dec")}
    d = diagram(lowered(spec(BODY, "- h: {block: body, with: {w: 8}}\n- aux: {conv: {filters: 8, kernel: 1}, from: h.logits}\n- m: {add: [h, aux]}\n")))
    assert {(e.src, e.dst) for e in d.edges} >= {("h", "aux"), ("h", "m"), ("aux", "m")}


TWO = """\
two:
  inputs: [a, b]
  layers:
    - s: {add: [a, b]}
"""


@pytest.mark.parametrize("where", ["model", "kind"])
def test_a_branch_may_be_an_instance_with_two_inputs(where):
    branches = "{branches: [{x1: {block: two, from: [input, c]}}, {x2: {conv: {filters: 4, kernel: 1}}}], merge: concat}"
    if where == "model":
        graph = agree(spec(TWO, f"- c: {{conv: {{filters: 4, kernel: 1}}}}\n- m: {branches}\n"))
        assert next(n for n in graph.nodes if n.id == "x1.s").inputs == ("input", "c")
    else:
        kind = TWO + f"k:\n  layers:\n    - c: {{conv: {{filters: 4, kernel: 1}}}}\n    - m: {branches}\n"
        graph = agree(spec(kind, "- k: {block: k}\n"))
        assert next(n for n in graph.nodes if n.id == "k.x1.s").inputs == ("input", "k.c")
        assert "x1 = self.x1(x, c)" in emit(graph, "torch")


@pytest.mark.parametrize("where", ["model", "kind"])
def test_a_parallel_path_reads_one_tensor(where):
    path = "{parallel: [{block: two, from: [input, c]}, {conv: {filters: 4, kernel: 1}}], merge: add}"
    if where == "model":
        text = spec(TWO, f"- c: {{conv: {{filters: 4, kernel: 1}}}}\n- m: {path}\n")
    else:
        text = spec(TWO + f"k:\n  layers:\n    - c: {{conv: {{filters: 4, kernel: 1}}}}\n    - m: {path}\n", "- k: {block: k}\n")
    with pytest.raises(SpecError, match="m.0: a path of a parallel list reads one tensor; an instance of a block with several inputs"):
        lowered(text)


def test_conditions_read_the_channels_of_each_input():
    """`if: lo_channels != hi_channels` in a kind with inputs [lo, hi] (found by the random generator)."""
    kind = """\
mix:
  inputs: [lo, hi]
  params: {w: int}
  layers:
    - p: {conv: {filters: w, kernel: 1}, from: hi}
    - pa: {act: relu, if: "lo_channels != hi_channels"}
    - q: {conv: {filters: w, kernel: 1}, from: lo}
    - j: {add: [pa, q]}
"""
    same = agree(spec(kind, "- a: {conv: {filters: 4, kernel: 1}}\n- m: {block: mix, with: {w: 3}, from: [input, a]}\n"))
    other = agree(spec(kind, "- a: {conv: {filters: 6, kernel: 1}}\n- m: {block: mix, with: {w: 3}, from: [input, a]}\n"))
    assert "m.pa" not in {n.id for n in same.nodes} and "m.pa" in {n.id for n in other.nodes}
    assert "if lo_channels != hi_channels:" in emit(other, "torch")


def test_an_input_named_like_a_block_kind_is_one_variable_in_keras():
    """Keras' function for a kind with inputs [a, up], where `up` is also a kind's function:
    the parameter and the variable its layers read are one name (`out_up`); they were two."""
    kinds = "up:\n  layers: [{c: {conv: {filters: 4, kernel: 1}}}]\n" + TWO.replace("[a, b]", "[a, up]")
    graph = agree(spec(kinds, "- c: {block: up}\n- m: {block: two, from: [input, c]}\n"))
    assert "out_up: keras.KerasTensor" in emit(graph, "keras")
