"""What Inception v3 added to the ops: conv kernels and padding per dimension (`kernel: [1, 7],
padding: [0, 3]`), BatchNorm without a learned scale (`scale: false`, keras.applications'
InceptionV3) and average pooling that does not count padded zeros (`count_include_pad: false`,
Keras' 'same' pooling). At model level and inside block kinds the IR's counts are the
generated models', the two backends compute the same function, and what a backend cannot
match is a located mistake."""

import textwrap

import numpy as np
import pytest
from conftest import need

from archc import api
from archc.backends import emit
from archc.errors import SpecError
from archc.interop import keras_to_torch, torch_to_keras
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

SPEC = """\
archc: 1
name: factorised
input: [3, 13, 11]
defaults:
  conv: {bias: false}
  batchnorm: {eps: 0.001, momentum: 0.01, scale: false}
  avgpool: {count_include_pad: false}
blocks:
  conv_bn:
    params: {filters: int, kh: 1, kw: 1, ph: 0, pw: 0}
    layers:
      - conv: {conv: {filters: filters, kernel: [kh, kw], padding: [ph, pw]}}
      - bn: batchnorm
      - relu: relu
  split:
    params: {}
    layers:
      - a: {block: conv_bn, with: {filters: 4, kw: 3, pw: 1}}
      - b: {block: conv_bn, with: {filters: 4, kh: 3, ph: 1}, from: input}
      - pool: {avgpool: {kernel: 3, stride: 1, padding: 1}, from: input}
      - c: {block: conv_bn, with: {filters: 2}}
      - merged: {concat: [a, b, c]}
layers:
  - wide: {conv: {filters: 6, kernel: [1, 7], padding: [0, 3]}}
  - bn1: {batchnorm: {scale: true}}
  - tall: {conv: {filters: 6, kernel: [5, 1], stride: 2}}
  - bn2: batchnorm
  - relu: relu
  - pool: {avgpool: {kernel: 3, stride: 1, padding: 1}}
  - counted: {avgpool: {kernel: 3, stride: 1, padding: 1, count_include_pad: true}}
  - mixed: {block: split}
  - gap: global_avgpool
"""


def graph_of(text):
    return lower(load_spec_text(textwrap.dedent(text), "spec.yaml"))


@pytest.fixture(scope="module")
def built():
    graph = graph_of(SPEC)
    return graph, api.load_module(graph, "torch"), api.load_module(graph, "keras")


def test_counts_and_shapes(built):
    graph, tm, km = built
    # wide 6*3*7; bn1 with scale 2*6; tall 6*6*5; bn2 (no scale) 6; in the block (6 channels in):
    # a 4*6*1*3 + 4 (BN shift only), b 4*6*3*1 + 4, c 2*6 + 2
    assert graph.counts.trainable == 126 + 12 + 180 + 6 + 76 + 76 + 14
    assert graph.counts.non_trainable == 2 * (6 + 6 + 4 + 4 + 2)
    shapes = {node.id: node.shape.as_tuple() for node in graph.nodes}
    assert shapes["wide"] == (6, 13, 11) and shapes["tall"] == (6, 5, 6) and shapes["mixed.merged"] == (10, 5, 6)
    t_model, k_model = tm.build_model(), km.build_model()
    assert sum(p.numel() for p in t_model.parameters()) == graph.counts.trainable
    assert t_model.bn2.weight is None and t_model.bn1.weight is not None
    assert sum(int(np.prod(w.shape)) for w in k_model.trainable_weights) == graph.counts.trainable
    assert sum(int(np.prod(w.shape)) for w in k_model.non_trainable_weights) == graph.counts.non_trainable


def test_backends_agree(built):
    graph, _, _ = built
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)


def test_weights_round_trip(built):
    graph, tm, km = built
    torch.manual_seed(0)
    original = tm.build_model()
    verify.randomize(original, graph, seed=0)
    k_model = km.build_model()
    torch_to_keras(original, k_model, graph)
    copy = tm.build_model()
    keras_to_torch(k_model, copy, graph)
    assert original.state_dict().keys() == copy.state_dict().keys()
    for key, value in original.state_dict().items():
        assert torch.equal(value, copy.state_dict()[key]), key


def test_not_counting_padding_differs():
    """The two pooling modes are different functions (so the option is not a no-op)."""
    x = torch.ones(1, 1, 3, 3)
    counted = torch.nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True)(x)
    graph = graph_of(SPEC)
    pool = api.load_module(graph, "torch").build_model().pool
    assert pool(x)[0, 0, 0, 0] == 1.0 and counted[0, 0, 0, 0] == pytest.approx(4 / 9)


def test_code():
    graph = graph_of(SPEC)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert "nn.Conv2d(3, 6, kernel_size=(1, 7), padding=(0, 3), bias=False)" in torch_src
    assert "nn.Conv2d(6, 6, kernel_size=(5, 1), stride=2, bias=False)" in torch_src
    assert "kernel_size=(kh, kw)" in torch_src and "padding=(ph, pw)" in torch_src
    assert "class BatchNorm2dNoScale(nn.BatchNorm2d)" in torch_src
    assert "self.bn1 = nn.BatchNorm2d(6, eps=0.001, momentum=0.01)" in torch_src
    assert "self.bn2 = BatchNorm2dNoScale(6, eps=0.001, momentum=0.01)" in torch_src
    assert "self.bn = BatchNorm2dNoScale(filters, eps=0.001, momentum=0.01)" in torch_src
    assert "count_include_pad=False" in torch_src and "count_include_pad=True" not in torch_src  # True: the default
    assert "self.counted = nn.AvgPool2d(kernel_size=3, stride=1, padding=1)\n" in torch_src
    # a 1x7 conv padded (0, 3) is Keras' 'same'; 'same' average pooling leaves the padding out
    assert '        6,\n        (1, 7),\n        padding="same",\n        use_bias=False,\n' in keras_src
    assert 'kernel_initializer=CONV_KERNEL_INITIALIZER,\n        name="wide",' in keras_src
    assert 'layers.AveragePooling2D(3, strides=1, padding="same", name="pool")' in keras_src
    assert 'layers.ZeroPadding2D(1, name="counted_pad")' in keras_src
    assert keras_src.count("scale=False") == 2  # bn2 and the block's bn; bn1 learns its scale


def test_no_helper_without_scale_false():
    src = emit(graph_of(SPEC.replace(", scale: false}", "}").replace("bn1: {batchnorm: {scale: true}}", "bn1: batchnorm")), "torch")
    assert "BatchNorm2dNoScale" not in src


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("kernel: [1, 7]", "kernel: [1, 7, 3]", "kernel"),
        ("  - gap: global_avgpool", "  - gap: global_avgpool\n  - bnf: batchnorm", "scale: false needs a feature map"),
    ],
)
def test_mistakes(old, new, message):
    with pytest.raises(SpecError, match=message):
        graph_of(SPEC.replace(old, new))


def test_other_paddings_are_exact_in_keras():
    """Not counting the padding at stride 2 (not Keras' 'same'): the PaddedAveragePooling2D
    helper, the mean over each window's input pixels, as PyTorch's."""
    graph = graph_of(SPEC.replace("- pool: {avgpool: {kernel: 3, stride: 1, padding: 1}}", "- pool: {avgpool: {kernel: 3, stride: 2, padding: 1}}"))
    assert "count_include_pad=False" in emit(graph, "torch")
    assert 'x = PaddedAveragePooling2D(3, strides=2, padding=1, name="pool")(x)' in emit(graph, "keras")
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
