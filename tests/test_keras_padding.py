"""Keras pads explicitly (ZeroPadding2D before an unpadded conv or pool). Where a block kind's
padding is one of its parameters, the generated function pads only where that padding is not
0, as keras.applications writes `if stride == 2:` before its ZeroPadding2D: no instance gets a
layer that does nothing, and a block kind whose instances all pad has no `if`."""

import textwrap

import pytest
from conftest import need

from archc import api
from archc.backends import emit
from archc.lower import lower
from archc.spec.loader import load_spec_text

SPEC = """\
archc: 1
name: padded
input: [3, 12, 12]
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-3, momentum: 0.01}
blocks:
  cbr:
    params: {filters: int, kh: 3, kw: 3, ph: 1, pw: 1, pool_pad: 0}
    layers:
      - conv: {conv: {filters: filters, kernel: [kh, kw], padding: [ph, pw]}}
      - bn: batchnorm
      - relu: relu
      - pool: {maxpool: {kernel: 3, stride: 1, padding: pool_pad}}
  always:
    params: {kernel: 3}
    layers:
      - conv: {conv: {filters: 4, kernel: kernel, padding: (kernel - 1) // 2}}
  fork:
    params: {p: 0}
    layers:
      - left: {conv: {filters: 4, kernel: 3, padding: 1}}
      - right: {conv: {filters: 4, kernel: 2 * p + 1, padding: p}, from: input}
      - sum: {add: [left, right]}
  mixed:
    params: {p: 1, s: 1}
    layers:
      - conv: {conv: {filters: 4, kernel: 3, padding: [p, "1 if s == 2 else 0"]}}
layers:
  - a: {block: cbr, with: {filters: 4}}
  - b: {block: cbr, with: {filters: 6, kh: 1, kw: 1, ph: 0, pw: 0, pool_pad: 1}}
  - c: {block: cbr, with: {filters: 6, kh: 1, ph: 0}}
  - d: {block: always, with: {kernel: 5}}
  - e: {block: always}
  - f: {block: fork}
  - g: {block: fork, with: {p: 1}}
  - h: {block: mixed}
  - j: {block: mixed, with: {p: 0}}
  - pool: global_avgpool
"""


@pytest.fixture(scope="module")
def graph():
    return lower(load_spec_text(textwrap.dedent(SPEC), "padded.yaml"))


def test_code_pads_only_where_the_padding_is_not_zero(graph):
    keras_src = emit(graph, "keras")
    cbr = keras_src[keras_src.index("def cbr(") : keras_src.index("def always(")]
    assert '    if ph or pw:\n        x = layers.ZeroPadding2D((ph, pw), name=f"{name}_conv_pad")(x)\n' in cbr
    assert '    if pool_pad:\n        x = layers.ZeroPadding2D(pool_pad, name=f"{name}_pool_pad")(x)\n' in cbr
    always = keras_src[keras_src.index("def always(") : keras_src.index("def fork(")]
    assert "if " not in always.split("return")[0]  # (kernel - 1) // 2 is 2 and 1: every instance pads
    assert "x = layers.ZeroPadding2D((kernel - 1) // 2," in always
    fork = keras_src[keras_src.index("def fork(") : keras_src.index("def mixed(")]  # the padded conv reads the block input, not x
    assert '    right = inputs\n    if p:\n        right = layers.ZeroPadding2D(p, name=f"{name}_right_pad")(right)\n' in fork
    mixed = keras_src[keras_src.index("def mixed(") :]  # one `or`, parenthesised as Python needs it
    assert "    if p or (1 if s == 2 else 0):\n" in mixed


def test_no_layer_that_does_nothing(graph):
    keras = need("keras")
    model = api.load_module(graph, "keras").build_model()
    pads = {layer.name: layer.padding for layer in model.layers if isinstance(layer, keras.layers.ZeroPadding2D)}
    # a: conv padding 1; b: pool padding 1; c: conv padding (0, 1); d, e: conv padding 2 and 1;
    # g: the right conv (padding p = 1; left pads "same", in the Conv2D); h: (1, 0), where
    # `p or 1 if s == 2 else 0` (the guard without its parentheses) would be 0; j: (0, 0)
    assert sorted(pads) == ["a_conv_pad", "b_pool_pad", "c_conv_pad", "d_conv_pad", "e_conv_pad", "g_right_pad", "h_conv_pad"]
    assert all(any(any(side) for side in padding) for padding in pads.values())
    assert pads["c_conv_pad"] == ((0, 0), (1, 1))


def test_backends_agree(graph):
    need("torch")
    verify = need("archc.verify")
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
