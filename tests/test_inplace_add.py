"""How PyTorch's forward writes a residual sum: an `add` with `in_place: true` updates its
first tensor (`out += x`, torchvision's MobileNetV3 and EfficientNet), a skip kind with
`sum: new` writes a new tensor with the shortcut first (`out = identity + out`, RegNet).
The zoo's kinds are written so; both forms give the IR's function, in Keras too, and the
same gradients; a first tensor that must not be overwritten is refused where it is written.
(That torchvision itself writes each zoo kind so: tests/test_torchvision.py.)"""

from __future__ import annotations

import pytest
from conftest import ROOT, forward_statements, need
from test_differential import agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.ops.act import FUNCTIONS, KEEPS_OUTPUT
from archc.spec.loader import load_spec, load_spec_text

torch = need("torch")


# spec, class, the statement that adds the shortcut, as torchvision's forward writes it
ZOO = [
    ("mobilenet_v3_large", "InvertedResidual", "out += x"),  # result = self.block(input); result += input
    ("mobilenet_v3_small", "InvertedResidual", "out += x"),
    ("segmentation/lraspp_mobilenet_v3_large", "InvertedResidual", "out += x"),
    ("efficientnet_b0", "MBConv", "out += x"),  # result = self.stochastic_depth(result); result += input
    ("efficientnet_v2_s", "MBConv", "out += x"),
    ("efficientnet_v2_s", "FusedMBConv", "out += x"),
    ("regnet_y_400mf", "ResBottleneckBlock", "out = identity + out"),  # x = self.proj(x) + self.f(x)
    ("regnet_x_400mf", "ResBottleneckBlock", "out = identity + out"),
    ("mobilenet_v2", "InvertedResidual", "out = x + out"),  # return x + self.conv(x)
    ("resnet50", "Bottleneck", "out += identity"),  # out += identity
    ("convnext_tiny", "CNBlock", "out += identity"),  # result += input
]


@pytest.mark.parametrize("spec, cls, line", ZOO, ids=[f"{s}-{c}" for s, c, _ in ZOO])
def test_zoo_kinds_write_the_sum_as_torchvision_does(spec, cls, line):
    statements = forward_statements(emit(lower(load_spec(ROOT / "specs" / f"{spec}.yaml")), "torch"), cls)
    sums = [s for s in statements if "+" in s]
    assert sums == [line], statements


def test_generated_files_are_written_so():
    """The checked-in generated/ modules carry the same lines (they are regenerated from the specs)."""
    for spec, cls, line in ZOO:
        path = ROOT / "generated" / f"{spec.split('/')[-1]}_torch.py"
        assert line in [s for s in forward_statements(path.read_text(), cls) if "+" in s], (path, cls)


BLOCKS = """\
archc: 1
name: t
input: [4, 10, 10]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  mb:  # EfficientNet's MBConv: a list, stochastic depth and the input added where the shape is kept
    params: {out_channels: int, stride: 1, expand: 1}
    layers:
      - block:
          - {conv: {filters: in_channels * 2, kernel: 1}, if: expand != 1}
          - {conv: {filters: out_channels, kernel: 3, stride: stride, padding: 1}, if: expand == 1}
          - {conv: {filters: out_channels, kernel: 3, stride: stride, padding: 1}, if: expand != 1}
          - batchnorm
      - stochastic_depth: {stochastic_depth: {rate: 0.2}, if: stride == 1 and in_channels == out_channels}
      - residual: {add: [stochastic_depth, input]IN_PLACE, if: stride == 1 and in_channels == out_channels}
  res:
    params: {filters: int, stride: 1}
    connectivity: skip
    SUM
    shortcut: {kind: projection, name: proj}
    layers:
      - c1: {conv: {filters: filters, kernel: 3, stride: stride, padding: 1}}
      - bn1: batchnorm
      - r1: relu
      - c2: {conv: {filters: filters, kernel: 3, padding: 1}}
      - bn2: batchnorm
    after:
      - act: relu
layers:
  - m1: {block: mb, with: {out_channels: 4}}
  - m2: {block: mb, with: {out_channels: 4, expand: 2}}
  - m3: {block: mb, with: {out_channels: 6, stride: 2}}
  - r1: {block: res, with: {filters: 6}}
  - r2: {block: res, with: {filters: 8, stride: 2}}
  - a: {conv: {filters: 8, kernel: 1}}
  - b: {conv: {filters: 8, kernel: 3, padding: 1}, from: r2}
  - c: {batchnorm: {}, from: r2}
  - s: {add: [a, b, c]IN_PLACE}
  - pool: global_avgpool
  - fc: {dense: {units: 3}}
"""


def blocks(in_place: bool, new_sum: bool) -> str:
    return BLOCKS.replace("IN_PLACE", ", in_place: true" if in_place else "").replace("SUM", "sum: new" if new_sum else "")


@pytest.mark.parametrize("in_place, new_sum", [(True, True), (False, False), (True, False)])
def test_both_forms_are_the_irs_function_in_pytorch_and_keras(in_place, new_sum):
    text = blocks(in_place, new_sum)
    agree(text)
    code = emit(lower(load_spec_text(text, "t.yaml")), "torch")
    mb, res = forward_statements(code, "Mb"), forward_statements(code, "Res")
    assert ("out += x" in mb) == in_place and ("out = stochastic_depth + x" in mb or "out = out + x" in mb) != in_place, mb
    assert [s for s in res if "identity" in s and "+" in s] == ["out = identity + out" if new_sum else "out += identity"]
    model = forward_statements(code, "T")
    # three operands: one `+=` per later one, ((a + b) + c) as the new tensor's sum
    assert (["a += b", "a += c", "x = a"] == [s for s in model if s.startswith(("a +=", "x = a"))]) == in_place, model


def train_step(code: str, state: dict | None, x):
    """Outputs, input gradient and parameter gradients of one training step (BN in training
    mode, stochastic depth drawing from a seeded generator)."""
    module = module_from(code, "t_torch")
    model = module.build_model().train()
    if state is not None:
        model.load_state_dict(state)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(7)
    out = model(x)
    (out**2).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return model.state_dict(), out.detach(), x.grad, grads


def test_backward_through_the_in_place_forms_gives_the_out_of_place_gradients():
    x = torch.randn(3, 4, 10, 10, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    plain = emit(lower(load_spec_text(blocks(False, False), "t.yaml")), "torch")
    state, out, x_grad, grads = train_step(plain, None, x)
    written = emit(lower(load_spec_text(blocks(True, True), "t.yaml")), "torch")
    assert "out += x" in written and "a += b" in written and "out = identity + out" in written
    _, out2, x_grad2, grads2 = train_step(written, state, x)
    assert torch.equal(out, out2) and torch.equal(x_grad, x_grad2)
    assert grads.keys() == grads2.keys() and all(torch.equal(grads[k], grads2[k]) for k in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads.values())


@pytest.mark.parametrize("spec", ["mobilenet_v3_small", "efficientnet_b0"])
def test_zoo_models_train_through_their_in_place_sums(spec):
    """A training step through the generated zoo model equals the one through the same code
    written out of place (`out = out + x`): autograd accepts every `+=` it writes."""
    code = emit(lower(load_spec(ROOT / "specs" / f"{spec}.yaml")), "torch")
    assert code.count("out += x") == 1
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    state, out, x_grad, grads = train_step(code.replace("out += x", "out = out + x"), None, x)
    _, out2, x_grad2, grads2 = train_step(code, state, x)
    assert torch.equal(out, out2) and torch.equal(x_grad, x_grad2)
    assert all(torch.equal(grads[k], grads2[k]) for k in grads)


@pytest.mark.parametrize("fn", sorted(FUNCTIONS))
def test_the_activations_whose_output_backward_reads_are_those_listed(fn):
    """archc.ops.act.KEEPS_OUTPUT, measured: `+=` on the activation's output (built with and
    without inplace=True where it takes it, as archc may build it) fails in backward exactly
    for the activations listed."""
    module, can_inplace, _, _ = FUNCTIONS[fn]
    cls = getattr(torch.nn, module.removeprefix("nn."))
    failed = []
    for inplace in (False, True) if can_inplace else (False,):
        w = torch.randn(5, requires_grad=True)
        out = (cls(inplace=True) if inplace else cls())(w * 2.0)
        out += torch.ones(5)
        try:
            out.sum().backward()
        except RuntimeError as e:
            assert "modified by an inplace operation" in str(e)
            failed.append(inplace)
    assert bool(failed) == (fn in KEEPS_OUTPUT), failed


def test_softmax_output_is_read_by_backward():
    w = torch.randn(2, 5, requires_grad=True)
    out = torch.nn.Softmax(dim=1)(w * 2.0)
    out += torch.ones(2, 5)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


HEAD = "archc: 1\nname: t\ninput: [4, 8, 8]\ndefaults: {conv: {bias: false}}\n"
MODEL = HEAD + """\
blocks:
  unit:
    params: {w: int, project: false}
    layers:
LAYERS
layers:
  - stem: {conv: {filters: 4, kernel: 1}}
  - body: {block: unit, with: {w: 4}}
  - pool: global_avgpool
"""


def unit(*layers: str) -> str:
    return MODEL.replace("LAYERS", "\n".join(f"      - {layer}" for layer in layers))


REFUSED = [
    (["c1: {conv: {filters: w, kernel: 1}}", "s: {add: [input, c1], in_place: true}"], "'input' is the input of block 'unit'"),
    (
        ["c1: {conv: {filters: w, kernel: 1}}", "s: {add: [c1, input], in_place: true}", "t: {add: [s, c1]}"],
        "'c1' is also read by 't'",
    ),
    (["c1: {conv: {filters: w, kernel: 1}}", "s: {add: [c1, c1], in_place: true}"], "'s' reads 'c1' twice"),
    (["c1: {conv: {filters: w, kernel: 1}}", "r: sigmoid", "s: {add: [r, input], in_place: true}"], "'r' ends with act 'r'"),
    (
        ["c1: {conv: {filters: w, kernel: 1}}", "sm: softmax", "s: {add: [sm, input], in_place: true}"],
        "'sm' ends with softmax 'sm', whose backward reads its output",
    ),
    (  # absent, the conv passes on the block's input
        ["p: {conv: {filters: w, kernel: 1}, if: project}", "c1: {conv: {filters: w, kernel: 1}, from: input}", "s: {add: [p, c1], in_place: true}"],
        "'p' may pass its input on (under its `if:`, or as an identity or view), and 'input' is the input",
    ),
    (  # an identity passes its input itself on
        ["same: {identity: {}}", "c1: {conv: {filters: w, kernel: 1}, from: input}", "s: {add: [same, c1], in_place: true}"],
        "'same' may pass its input on",
    ),
    (  # a list whose every entry may be absent
        ["l: [{conv: {filters: w, kernel: 1}, if: project}]", "c1: {conv: {filters: w, kernel: 1}, from: input}", "s: {add: [l, c1], in_place: true}"],
        "'l' may pass its input on",
    ),
]


@pytest.mark.parametrize("layers, message", REFUSED, ids=range(len(REFUSED)))
def test_a_first_tensor_that_must_not_be_overwritten_is_refused(layers, message):
    text = unit(*layers)
    with pytest.raises(SpecError, match="in_place: true` overwrites the first tensor it lists") as info:
        lower(load_spec_text(text, "t.yaml"))
    assert message in str(info.value)
    assert info.value.where is not None and info.value.where.line == next(k for k, line in enumerate(text.splitlines(), 1) if "in_place" in line)


ACCEPTED = [
    ["c1: {conv: {filters: w, kernel: 1}}", "s: {add: [c1, input], in_place: true}"],
    ["c1: {conv: {filters: w, kernel: 1}}", "r: hardswish", "s: {add: [r, input], in_place: true}"],  # backward reads its input
    # alternatives under opposite conditions: one is always there (torchvision's FusedMBConv)
    ["l: [{conv: {filters: w, kernel: 1}, if: project}, {conv: {filters: w, kernel: 3, padding: 1}, if: not project}]", "s: {add: [l, input], in_place: true}"],
    # a dropout passes on the conv's output, which only it reads
    ["c1: {conv: {filters: w, kernel: 1}}", "d: {dropout: {rate: 0.1}, if: project}", "s: {add: [d, input], in_place: true}"],
]


@pytest.mark.parametrize("layers", ACCEPTED, ids=range(len(ACCEPTED)))
def test_a_first_tensor_only_the_merge_reads_is_updated_in_place(layers):
    graph = agree(unit(*layers), keras_too=False)
    assert "+= x" in emit(graph, "torch")


def test_a_nested_block_is_followed_case_by_case():
    """Walking back through a nested kind's list, a condition assumed on the way decides the
    items before it (archc.spec.logic): where `c1` is absent (`not p`), the relu under `p` is
    absent too, so the tensor is c0's, fresh; no case pairs c1's absence with the relu."""
    inner = (
        "blocks:\n  inner:\n    params: {w: int, p: false}\n    layers:\n      - c0: {conv: {filters: w, kernel: 1}}\n"
        "      - r: {act: relu, if: p}\n      - c1: {conv: {filters: w, kernel: 1}, if: p}\n"
    )
    text = unit("b: {block: inner, with: {w: w, p: project}}", "s: {add: [b, input], in_place: true}").replace("blocks:\n", inner, 1)
    for project in ("false", "true"):
        graph = agree(text.replace("with: {w: 4}", f"with: {{w: 4, project: {project}}}"), keras_too=False)
        assert "+= x" in emit(graph, "torch")
    ending = text.replace("      - c1: {conv: {filters: w, kernel: 1}, if: p}\n", "")  # then the relu may end it
    with pytest.raises(SpecError, match="ends with act 'r'"):
        lower(load_spec_text(ending, "t.yaml"))


def test_a_nested_block_that_ends_with_a_relu_is_refused():
    text = HEAD + """\
blocks:
  cbr:
    params: {w: int, act: true}
    layers:
      - c: {conv: {filters: w, kernel: 1}}
      - r: {act: relu, if: act}
  unit:
    params: {w: int}
    layers:
      - inner: {block: cbr, with: {w: w, act: ACT}}
      - s: {add: [inner, input], in_place: true}
layers:
  - body: {block: unit, with: {w: 4}}
  - pool: global_avgpool
"""
    with pytest.raises(SpecError, match="'inner' ends with act 'r'"):
        lower(load_spec_text(text.replace("ACT", "true"), "t.yaml"))
    agree(text.replace("ACT", "false"), keras_too=False)  # its relu is absent where the instance says so


def test_model_outputs_and_taps_are_read_from_outside():
    text = HEAD + """\
layers:
  - a: {conv: {filters: 4, kernel: 1}}
  - s: {add: [a, input], in_place: true}
  - pool: global_avgpool
outputs: {features: a, logits: pool}
"""
    with pytest.raises(SpecError, match="'a' is also read from outside the list"):
        lower(load_spec_text(text, "t.yaml"))
    entry = HEAD + """\
blocks:
  unit:
    params: {w: int}
    outputs: [s, body.c2]
    layers:
      - body: [{conv: {filters: w, kernel: 1}}, c2: {conv: {filters: w, kernel: 1}}]
      - s: {add: [body, input], in_place: true}
layers:
  - u: {block: unit, with: {w: 4}}
  - pool: {global_avgpool: {}, from: u}
"""  # the list's last entry is an output of the kind: its tensor is the list's
    with pytest.raises(SpecError, match="'body' is also read from outside the list"):
        lower(load_spec_text(entry, "t.yaml"))


def test_sum_applies_to_skip_kinds_only():
    text = unit("c1: {conv: {filters: w, kernel: 1}}").replace("    params: {w: int, project: false}", "    params: {w: int}\n    sum: new")
    with pytest.raises(SpecError, match="`sum` says how a skip block adds its shortcut") as info:
        load_spec_text(text, "t.yaml")
    assert info.value.where is not None and info.value.where.line == text.splitlines().index("    sum: new") + 1
