"""Weight transfer between the generated backends, driven by IR node ids: both directions,
layout conversions (conv OIHW <-> HWIO, grouped convs, dense, a flatten of a map), and a
loud failure when the models do not hold the spec's weights."""

import numpy as np
import pytest
from conftest import ROOT, load_module, need

from archc import api
from archc.interop import TransferError, channels_last, keras_to_torch, torch_to_keras
from archc.lower import lower
from archc.spec.loader import load_spec, load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

# Grouped conv, a flatten of a 4x4 map feeding dropout, a flat batch norm and a dense layer.
LAYOUTS = """
archc: 1
name: layouts
input: [3, 8, 8]
defaults:
  conv: {bias: true}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
  activation: relu
layers:
  - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}
  - relu: act
  - conv2: {conv: {filters: 12, kernel: 3, stride: 2, padding: 1, groups: 4}}
  - bn: batchnorm
  - flatten: flatten
  - drop: {dropout: {rate: 0.5}}
  - bn_flat: batchnorm
  - fc: {dense: {units: 5}}
"""

# A small ConvNeXt: layer norms on a channels-first map (LayerNorm2d), a channels-last one and a
# flat one; Linear layers at every position; a layer scale (a bare torch parameter, (C, 1, 1)).
CHANNELS_LAST = """
archc: 1
name: channels_last
input: [3, 16, 16]
defaults:
  conv: {bias: true}
blocks:
  unit:
    connectivity: skip
    layers:
      - block:
          - {conv: {filters: in_channels, kernel: 7, padding: 3, groups: in_channels}}
          - {permute: {to: channels_last}}
          - {layernorm: {eps: 1.0e-6}}
          - {dense: {units: 4 * in_channels}}
          - gelu
          - {dense: {units: in_channels}}
          - {permute: {to: channels_first}}
      - layer_scale: layer_scale
layers:
  - stem: [{conv: {filters: 8, kernel: 4, stride: 4}}, {layernorm: {eps: 1.0e-6}}]
  - stage: {stage: unit, repeat: 2}
  - pool: global_avgpool
  - norm: {layernorm: {eps: 1.0e-6}}
  - fc: {dense: {units: 5}}
"""

# A flatten of a 3x3 map read by a layer norm, an activation and a batch norm, each keeping the
# features in the flatten's order (C,H,W in PyTorch, H,W,C in Keras), then a dense layer.
FLAT_NORMS = """
archc: 1
name: flat_norms
input: [3, 6, 6]
defaults:
  conv: {bias: true}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
layers:
  - conv: {conv: {filters: 4, kernel: 3, stride: 2, padding: 1}}
  - flatten: flatten
  - ln: {layernorm: {eps: 1.0e-5}}
  - relu: relu
  - bn: batchnorm
  - fc: {dense: {units: 5}}
"""


def outputs(t_model, k_model, shape):
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype("float32")
    with torch.no_grad():
        expected = t_model.eval()(torch.from_numpy(x)).numpy()
    return expected, np.asarray(k_model(channels_last(x), training=False))


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("source", ["specs/cifar/resnet20.yaml", "specs/cifar/keras_resnet20v1.yaml", "text", "channels_last", "flat_norms"])
def test_round_trip(source):
    """torch -> keras -> a fresh torch model gives back every tensor exactly, and the Keras
    model computes what the torch model does."""
    texts = {"text": LAYOUTS, "channels_last": CHANNELS_LAST, "flat_norms": FLAT_NORMS}
    graph = lower(load_spec_text(texts[source]) if source in texts else load_spec(ROOT / source))
    tm, km = api.load_module(graph, "torch"), api.load_module(graph, "keras")
    torch.manual_seed(0)
    original = tm.build_model()
    verify.randomize(original, graph, seed=0)
    k_model = km.build_model()
    torch_to_keras(original, k_model, graph)
    copy = tm.build_model()
    keras_to_torch(k_model, copy, graph)
    before, after = state(original), state(copy)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    expected, got = outputs(original, k_model, tm.INPUT_SHAPE)
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_keras_trained_model_runs_in_torch():
    """Keras' own initialisation (not torch's) carried into torch gives the same outputs."""
    graph = lower(load_spec_text(LAYOUTS))
    tm, km = api.load_module(graph, "torch"), api.load_module(graph, "keras")
    keras.utils.set_random_seed(0)
    k_model = km.build_model()
    rng = np.random.default_rng(0)
    for layer in k_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
    t_model = tm.build_model()
    keras_to_torch(k_model, t_model, graph)
    expected, got = outputs(t_model, k_model, tm.INPUT_SHAPE)
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_flatten_order_matters():
    """Without reordering C,H,W <-> H,W,C after the flatten, the outputs disagree."""
    graph = lower(load_spec_text(LAYOUTS))
    assert verify.verify(graph).ok
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("archc.interop.flattened_map", lambda graph, node_id: None)
        assert not verify.verify(graph).ok


def test_flatten_then_layernorm_then_dense():
    """Regression: a layer norm on the flattened features kept them in the flatten's order, but
    interop moved neither its per-feature weights nor the dense layer's after it: `archc verify`
    (which moves torch's weights into Keras) failed on the spec `check` accepts."""
    graph = lower(load_spec_text(FLAT_NORMS))
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)


def test_spec_path_and_errors():
    spec = ROOT / "specs/cifar/resnet20.yaml"
    resnet20 = load_module(ROOT / "generated/resnet20_torch.py")
    keras20 = load_module(ROOT / "generated/resnet20_keras.py").build_model()
    torch_to_keras(resnet20.build_model(), keras20, spec)  # a path is enough
    resnet56 = load_module(ROOT / "generated/resnet56_torch.py").build_model()
    with pytest.raises(TransferError, match=r"PyTorch state_dict does not match spec resnet20 .*unexpected \d+: layer1\.3\.bn1"):
        torch_to_keras(resnet56, keras20, spec)
    with pytest.raises(TransferError, match=r"fc\.weight: the source gives shape \(64, 7\) but the keras model holds \(64, 10\)"):
        torch_to_keras(resnet20.build_model(num_classes=7), keras20, spec)
    keras56 = load_module(ROOT / "generated/resnet56_keras.py").build_model()
    with pytest.raises(TransferError, match=r"Keras model's weighted layers .*unexpected \d+: layer1_3_bn1"):
        keras_to_torch(keras56, resnet20.build_model(), spec)
