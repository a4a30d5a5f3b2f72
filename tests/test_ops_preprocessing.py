"""The op kinds rescaling, normalization (Keras' preprocessing layers, which keras.applications'
EfficientNet and ConvNeXt start with) and stochastic_depth: counts equal in the IR and both
generated models, the same function as Keras' own layers, weights moved both ways, and
stochastic depth as torchvision's row mode."""

import textwrap

import numpy as np
import pytest
from conftest import need

from archc import api
from archc.interop import keras_to_torch, torch_to_keras
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

SPEC = """\
archc: 1
name: preprocessing_ops
input: [3, 12, 12]
defaults: {conv: {bias: true}}
blocks:
  res:
    params: {filters: int, drop: 0.1}
    layers:
      - conv1: {conv: {filters: filters, kernel: 3, padding: 1}}
      - sd: {stochastic_depth: {rate: drop}}
      - merge: {add: [input, sd]}
layers:
  - rescale: {rescaling: {scale: 1 / 255}}
  - norm: normalization
  - prestem: {normalization: {mean: [123.675, 116.28, 103.53], variance: [3409.976, 3262.6944, 3291.890625]}}
  - shift: {rescaling: {scale: 2, offset: -1}}
  - stem: {conv: {filters: 8, kernel: 3, padding: 1}}
  - b1: {block: res, with: {filters: 8}}
  - b2: {block: res, with: {filters: 8, drop: 0.3}}
  - pool: global_avgpool
  - fc: {dense: {units: 10}}
"""


@pytest.fixture(scope="module")
def built():
    graph = lower(load_spec_text(textwrap.dedent(SPEC), "pre.yaml"))
    return graph, api.load_module(graph, "torch"), api.load_module(graph, "keras")


def test_counts(built):
    graph, tm, km = built
    # conv 3*3*3*8 + 8, two res convs 2 * (3*3*8*8 + 8), fc 8*10 + 10; the learned
    # normalization: mean and variance per channel and Keras' sample count
    assert (graph.counts.trainable, graph.counts.non_trainable) == (224 + 2 * 584 + 90, 7)
    t_model, k_model = tm.build_model(), km.build_model()
    state = t_model.state_dict()
    assert sorted(k for k in state if k.startswith(("norm.", "prestem."))) == ["norm.count", "norm.mean", "norm.variance"]
    assert sum(p.numel() for p in t_model.parameters()) == graph.counts.trainable
    assert k_model.count_params() == graph.counts.trainable + graph.counts.non_trainable


def test_same_function_as_keras_layers(built):
    """The generated PyTorch Normalization and Rescaling compute Keras' own layers' function."""
    _, tm, _ = built
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 5, 5, 3)).astype("float32")
    mean, var = rng.uniform(50, 150, 3), rng.uniform(0, 3000, 3)
    var[0] = 0.0  # Keras divides by max(sqrt(var), epsilon)
    k = keras.layers.Normalization(mean=mean, variance=var)(x)
    t = tm.Normalization(3, mean=tuple(mean), variance=tuple(var))(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(t.permute(0, 2, 3, 1).numpy(), keras.ops.convert_to_numpy(k), rtol=1e-5, atol=1e-2)
    k = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    t = tm.Rescaling(1 / 127.5, offset=-1.0)(torch.from_numpy(x))
    np.testing.assert_allclose(t.numpy(), keras.ops.convert_to_numpy(k), rtol=1e-6, atol=1e-6)


def test_backends_agree_and_weights_round_trip(built):
    graph, tm, km = built
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
    original = tm.build_model()
    verify.randomize(original, graph, seed=0)
    assert original.norm.count.item() != 0 and not torch.equal(original.norm.mean, torch.zeros(3))
    k_model = km.build_model()
    torch_to_keras(original, k_model, graph)
    copy = tm.build_model()
    keras_to_torch(k_model, copy, graph)
    for key, value in original.state_dict().items():
        assert torch.equal(value, copy.state_dict()[key]), key


def test_stochastic_depth_is_torchvisions_row_mode(built):
    _, tm, km = built
    sd = tm.StochasticDepth(0.3)
    x = torch.ones(4000, 2, 3, 3)
    torch.manual_seed(0)
    y = sd(x)
    per_sample = y.flatten(1)
    assert torch.equal(per_sample, per_sample[:, :1].expand_as(per_sample))  # one draw per sample
    assert per_sample[:, 0].unique().tolist() == [0.0, pytest.approx(1 / 0.7)]
    assert abs((per_sample[:, 0] == 0).float().mean().item() - 0.3) < 0.03
    assert torch.equal(sd.eval()(x), x)
    model = km.build_model()
    drops = [layer for layer in model.layers if layer.name.endswith("_sd")]
    assert [(d.rate, tuple(d.noise_shape)) for d in drops] == [(0.1, (None, 1, 1, 1)), (0.3, (None, 1, 1, 1))]


def test_a_module_with_only_the_preprocessing_layers_imports_what_it_reads():
    """The Normalization and Rescaling classes read `torch`: their module imports it even
    when nothing else in it does (the generated module used to rely on another op for that)."""
    spec = "archc: 1\nname: just_preprocessing\ninput: [3, 4, 4]\nlayers:\n  - norm: normalization\n  - scale: {rescaling: {scale: 0.5}}\n"
    graph = lower(load_spec_text(spec, "pre.yaml"))
    model = api.load_module(graph, "torch").build_model()
    assert tuple(model(torch.zeros(1, 3, 4, 4)).shape) == (1, 3, 4, 4)
