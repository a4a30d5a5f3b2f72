"""The depthwise_conv op (Keras' DepthwiseConv2D) and uneven zeropad (keras.applications'
correct_pad): at model level and inside a block kind whose padding depends on the stride,
the IR's counts are the generated models', PyTorch and Keras compute the same function after
`archc.interop`'s weight transfer, and the weights go back."""

import textwrap

import numpy as np
import pytest
from conftest import need

from archc import api
from archc.backends import emit
from archc.interop import keras_to_torch, torch_to_keras
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

SPEC = """\
archc: 1
name: depthwise_ops
input: [4, 10, 9]
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-3, momentum: 0.01}
blocks:
  dw_block:
    params: {stride: 1}
    layers:
      - pad: {zeropad: {padding: [[0, 1], [0, 1]]}, if: stride == 2}
      - depthwise: {depthwise_conv: {kernel: 3, stride: stride, padding: 1 if stride == 1 else 0}}
      - bn: batchnorm
      - relu: relu6
layers:
  - pad: {zeropad: {padding: [[2, 0], [1, 0]]}}
  - dw: {depthwise_conv: {kernel: 3, bias: true}}
  - same: {depthwise_conv: {kernel: 5, padding: 2}}
  - down: {block: dw_block, with: {stride: 2}}
  - keep: {stage: dw_block, repeat: 2}
  - pool: global_avgpool
"""


@pytest.fixture(scope="module")
def built():
    graph = lower(load_spec_text(textwrap.dedent(SPEC), "depthwise.yaml"))
    return graph, api.load_module(graph, "torch"), api.load_module(graph, "keras")


def test_shapes_and_counts(built):
    graph, tm, km = built
    # (4, 10, 9) -> pad top 2, left 1 -> (4, 12, 10) -> 3x3 valid -> (4, 10, 8) -> 'same' 5x5
    # -> pad bottom/right, 3x3 /2 valid -> (4, 5, 4) -> two 'same' blocks -> global pool (4,)
    shapes = {n.id: n.shape.as_tuple() for n in graph.nodes}
    assert shapes["pad"] == (4, 12, 10) and shapes["dw"] == (4, 10, 8) and shapes["same"] == (4, 10, 8)
    assert shapes["down.depthwise"] == (4, 5, 4) and shapes["keep.1.relu"] == (4, 5, 4)
    # dw: 4 filters of 3x3 + 4 biases; same: 4 x 5x5; three blocks of 4 x 3x3 + BN (8 + 8)
    assert (graph.counts.trainable, graph.counts.non_trainable) == (40 + 100 + 3 * (36 + 8), 3 * 8)
    t_model, k_model = tm.build_model(), km.build_model()
    assert sum(p.numel() for p in t_model.parameters()) == graph.counts.trainable
    assert k_model.count_params() == graph.counts.total


def test_backends_agree(built):
    graph, _, _ = built
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)


def test_weights_round_trip(built):
    """Depthwise kernels (C, 1, kh, kw) <-> (kh, kw, C, 1), both directions."""
    graph, tm, km = built
    original = tm.build_model()
    verify.randomize(original, graph, seed=0)
    k_model = km.build_model()
    torch_to_keras(original, k_model, graph)
    kernel = k_model.get_layer("dw").get_weights()[0]
    weight = original.dw.weight.detach().numpy()
    assert kernel.shape == (3, 3, 4, 1)
    assert np.array_equal(kernel[:, :, 1, 0], weight[1, 0]) and np.array_equal(kernel[:, :, 3, 0], weight[3, 0])
    copy = tm.build_model()
    keras_to_torch(k_model, copy, graph)
    for key, value in original.state_dict().items():
        assert torch.equal(value, copy.state_dict()[key]), key


def test_code():
    graph = lower(load_spec_text(textwrap.dedent(SPEC), "depthwise.yaml"))
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert "nn.ZeroPad2d((1, 0, 2, 0))" in torch_src and "nn.ZeroPad2d((0, 1, 0, 1))" in torch_src
    assert "layers.ZeroPadding2D(((2, 0), (1, 0)), name=\"pad\")" in keras_src
    assert "nn.Conv2d(4, 4, kernel_size=3, groups=4)\n" in torch_src  # bias=True: the default
    # PyTorch's default weight, uniform in +-1/sqrt(fan_in = k * k): Keras' fan_out of (k, k, C, 1)
    words = " ".join(keras_src.split())
    assert '"config": {"scale": 1.0 / 3.0, "mode": "fan_out", "distribution": "uniform"}' in words  # 1 / k, k = 3
    init = "depthwise_initializer=CONV_DEPTHWISE_INITIALIZER,"
    assert f'layers.DepthwiseConv2D( 3, {init} bias_initializer=torch_bias_initializer(9), name="dw", )' in words
    assert f'layers.DepthwiseConv2D( 5, padding="same", use_bias=False, {init} name="same", )' in words
    assert "padding=1 if stride == 1 else 0" in torch_src
    assert 'padding="same" if stride == 1 else "valid"' in keras_src


def test_consecutive_guards_merge():
    """Keras block functions put consecutive layers under one condition in one `if`, as
    keras.applications' MobileNetV2 does (`if block_id:` over expand, expand_BN, expand_relu)."""
    from archc.backends.keras_idioms import merge_guards

    lines = ["    if a:", "        x = f(x)", "    if a:", "        x = g(", "            x", "        )(x)", "    if a:", "        x = h(x)"]
    assert merge_guards(lines) == [lines[0], lines[1], *lines[3:6], lines[7]]
    apart = ["    if a:", "        x = f(x)", "    y = x", "    if a:", "        x = g(x)"]
    assert merge_guards(apart) == apart  # a statement in between: two guards
    other = ["    if a:", "        x = f(x)", "    if b:", "        x = g(x)", "    else:", "        x = k(x)", "    if b:", "        x = h(x)"]
    assert merge_guards(other) == other
