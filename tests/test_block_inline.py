"""`inline: true` inside a block kind: an unnamed block or stage entry of a numbered list of a
kind (a list of the kind, or the kind's own layers when they are all unnamed) contributes
the layers of each instance as entries of that list, numbered with it. The independent fact:
the same network written at model level, where `inline` is the model's walker's, has the
same counts, state_dict keys and, with the weights copied by name, the same function in the
generated PyTorch; each side's IR, PyTorch and Keras agree (test_differential.agree)."""

from __future__ import annotations

import pytest
from conftest import assert_ruff_clean, need
from test_differential import agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")

HEAD = """\
archc: 1
name: t
input: [4, 12, 12]
params: {num_classes: 5}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  unit:
    params: {filters: int, batch_norm: false}
    layers:
      - {conv: {filters: filters, kernel: 3, padding: 1}}
      - {batchnorm: {}, if: batch_norm}
      - relu
"""
TAIL = """\
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""

IN_BLOCKS = HEAD + """\
  feats:
    params: {w: int, bn: false}
    layers:
      - body:
          - {block: unit, with: {filters: w, batch_norm: bn}, inline: true}
          - {block: unit, with: {filters: w}, inline: true, if: not bn}
          - {maxpool: {kernel: 2, stride: 2}}
          - {stage: unit, repeat: 2, with: {filters: 2 * w, batch_norm: true}, first: {batch_norm: bn}, inline: true}
      - head: {conv: {filters: w, kernel: 1}}
  seq:
    params: {w: int}
    layers:
      - {block: unit, with: {filters: w, batch_norm: true}, inline: true}
      - {maxpool: {kernel: 2, stride: 2}}
layers:
  - blk: {block: feats, with: {w: 6, bn: BN}}
  - s: {block: seq, with: {w: 5}}
""" + TAIL

AT_MODEL_LEVEL = HEAD + """\
layers:
  - blk:
      - body:
          - {block: unit, with: {filters: 6, batch_norm: BN}, inline: true}
          - {block: unit, with: {filters: 6}, inline: true, if: not BN}
          - {maxpool: {kernel: 2, stride: 2}}
          - {stage: unit, repeat: 2, with: {filters: 12, batch_norm: true}, first: {batch_norm: BN}, inline: true}
      - head: {conv: {filters: 6, kernel: 1}}
  - s:
      - {block: unit, with: {filters: 5, batch_norm: true}, inline: true}
      - {maxpool: {kernel: 2, stride: 2}}
""" + TAIL


@pytest.mark.parametrize("bn", [True, False])
def test_inline_in_a_block_kind_is_the_model_levels(bn):
    inside, outside = (agree(text.replace("BN", str(bn).lower())) for text in (IN_BLOCKS, AT_MODEL_LEVEL))
    assert inside.counts == outside.counts
    assert {n.id: n.shape for n in inside.nodes} == {n.id: n.shape for n in outside.nodes}  # the same numbering
    a = module_from(emit(inside, "torch"), "inside").build_model().eval()
    b = module_from(emit(outside, "torch"), "outside").build_model().eval()
    assert list(a.state_dict()) == list(b.state_dict())
    torch.manual_seed(0)
    with torch.no_grad():
        for key, value in b.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape) + 0.5 if key.endswith("running_var") else torch.randn(value.shape) * 0.3)
        a.load_state_dict(b.state_dict())
        x = torch.randn(2, 4, 12, 12)
        assert torch.allclose(a(x), b(x), atol=1e-5)
    assert ("blk.body.1" in {n.id for n in inside.nodes}) and (inside.counts.non_trainable == (2 * 6 + 2 * 12 * 2 + 2 * 5 if bn else 2 * 12 + 2 * 5))


def test_inline_code_in_a_block_kind(tmp_path):
    graph = lower(load_spec_text(IN_BLOCKS.replace("BN", "true"), "t.yaml"))
    source = emit(graph, "torch")
    assert "if bn:\n            body_layers.append(nn.BatchNorm2d(w))" in source  # the instance's condition, in the kind's terms
    assert "class Seq(nn.Sequential):" in source and "nn.MaxPool2d(kernel_size=2, stride=2),\n        )" in source
    keras_source = emit(graph, "keras")
    assert "class Unit" not in source and "def unit(" not in keras_source  # used only inline in kinds: no code of its own
    # the one instance of `feats` has bn: the Keras code decides it (issue 21 §5), and the relu is
    # body_2 as PyTorch numbers it; where the instances differ, its number is in the kind's terms
    assert 'x = layers.Activation("relu", name=f"{name}_body_2")(x)' in keras_source and "bn" not in keras_source.split("def feats(")[1].split("def seq(")[0].split("-> keras.KerasTensor:")[1]
    both = IN_BLOCKS.replace("BN", "true").replace("  - s: {block: seq", "  - blk2: {block: feats, with: {w: 6, bn: false}}\n  - s: {block: seq")
    undecided = emit(agree(both), "keras")
    assert 'name=f"{name}_body_{int(bn) + 1}"' in undecided  # the relu, numbered as PyTorch numbers it
    for backend, text in (("torch", source), ("keras", keras_source), ("keras_undecided", undecided)):
        path = tmp_path / f"{backend}.py"
        path.write_text(text)
        assert_ruff_clean(path)


@pytest.mark.parametrize("old, new, message", [
    ("- {block: unit, with: {filters: w, batch_norm: bn}, inline: true}", "- first: {block: unit, with: {filters: w, batch_norm: bn}, inline: true}",
     "first: `inline` writes a block's layers as entries of a numbered list"),
    ("repeat: 2, with: {filters: 2 * w", "repeat: w, with: {filters: 2 * w",
     "an `inline` stage inside a block kind repeats a fixed number of times"),
    ("- {block: unit, with: {filters: w}, inline: true, if: not bn}", "- {block: unit, with: {filters: w}, inline: true, if: not bn, from: input}",
     "entry 1: the entries of a list run in sequence"),
    ("- {block: unit, with: {filters: w, batch_norm: true}, inline: true}", "- {block: unit, with: {filters: w, batch_norm: true}, inline: true, from: input}",
     "entry 0: `inline` writes a block's layers as entries of a numbered list"),  # `from:`: the kind's layers are not a sequence
    ("      - relu\n", "      - relu\n      - {act: {fn: relu}, from: input}\n",
     "block 'unit' cannot be written `inline`"),
])  # fmt: skip
def test_inline_in_a_block_kind_mistakes(old, new, message):
    assert old in IN_BLOCKS
    with pytest.raises(SpecError, match=message.replace("`", ".").replace("(", r"\(")):
        lower(load_spec_text(IN_BLOCKS.replace(old, new, 1).replace("BN", "true"), "t.yaml"))
