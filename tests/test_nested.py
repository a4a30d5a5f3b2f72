"""Blocks inside blocks: a dense block of user-defined dense layers and a stage of residual
blocks, each written as a block kind. Counts are checked by hand, the generated code of both
backends against the IR, and the backends against each other with shared weights."""

import textwrap

import numpy as np
import pytest
from conftest import assert_ruff_clean, need
from test_variants import in_memory

from archc.backends import emit
from archc.errors import SpecError
from archc.interop import channels_last, torch_to_keras
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
need("keras")

SPEC = textwrap.dedent("""\
    archc: 1
    name: nested_net
    input: [3, 32, 32]
    params: {growth_rate: 12, num_classes: 10}
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    use: [resnet, densenet]
    blocks:
      my_dense_layer:
        params: {growth_rate: int}
        layers:
          - norm: batchnorm
          - relu: relu
          - conv: {conv: {filters: growth_rate, kernel: 3, padding: 1}}
      dense_unit:
        doc: A dense block of user-defined layers, then a transition.
        params: {n: int, growth_rate: int}
        layers:
          - block: {stage: my_dense_layer, repeat: n, connectivity: dense, names: "layer{n}", with: {growth_rate: growth_rate}}
          - transition: {block: transition, with: {compression: 0.5}}
      res_group:
        doc: A stage of residual blocks inside a block.
        params: {planes: int, n: int, stride: 1}
        layers:
          - blocks: {stage: basic, repeat: n, names: NAMES, with: {planes: planes}, first: {stride: stride}}
    layers:
      - conv1: {conv: {filters: 16, kernel: 3, padding: 1}}
      - dense1: {block: dense_unit, with: {n: 4, growth_rate: growth_rate}}
      - dense2: {block: dense_unit, with: {n: 4, growth_rate: growth_rate}}
      - res: {stage: res_group, repeat: 2, with: {planes: 64, n: 2}, first: {stride: 2}}
      - pool: global_avgpool
      - fc: {dense: {units: num_classes}}
    """)


@pytest.fixture(params=['"{i}"', '"unit{n}"'])
def graph(request):
    return lower(load_spec_text(SPEC.replace("NAMES", request.param), "nested.yaml"))


def test_counts_by_hand(graph):
    # dense1: 4 layers on 16 + 12i channels (BN 2c, conv 108c) + transition on 64 (BN 128, conv 64*32)
    dense1 = 2 * 136 + 108 * 136 + 128 + 64 * 32
    assert next(i for i in graph.body if i.name == "dense1").counts.trainable == dense1 == 17_136
    ids = {n.id for n in graph.nodes}
    assert {"dense1.block.layer4.conv", "dense1.block.layer4_concat", "dense1.transition.conv"} <= ids
    first = "res.0.blocks.0" if "res.0.blocks.0.conv1" in ids else "res.0.blocks.unit1"
    assert f"{first}.downsample.0" in ids  # 40 -> 64 channels, stride 2
    assert not any(i.startswith("res.1.blocks.") and ".downsample" in i for i in ids)


def test_backends_match_the_ir_and_each_other(graph, tmp_path):
    t_model = in_memory(graph, "torch").build_model().eval()
    k_model = in_memory(graph, "keras").build_model()
    counts = graph.counts
    assert sum(p.numel() for p in t_model.parameters()) == counts.trainable
    assert sum(int(w.shape.num_elements()) for w in k_model.weights) == counts.total
    keys = {k.rsplit(".", 1)[0] for k in t_model.state_dict()}
    assert keys == {n.id for n in graph.nodes if n.op.weight_names()}  # module paths are node ids
    with torch.no_grad():
        for m in t_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    torch_to_keras(t_model, k_model, graph)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    got = np.asarray(k_model(channels_last(x), training=False))
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


def test_nested_limits_are_explained():
    grows = SPEC.replace("NAMES", '"{i}"').replace("with: {planes: planes}, first: {stride: stride}}", "with: {planes: planes * 2}}")
    lower(load_spec_text(grows, "ok.yaml"))  # planes*2 everywhere: later instances keep their shape
    last = SPEC.replace("NAMES", '"{i}"').replace("first: {stride: stride}}", "first: {stride: stride}, last: {stride: 2}}")
    ids = {n.id for n in lower(load_spec_text(last, "last.yaml")).nodes}  # `last:` downsamples the last instance
    assert {"res.0.blocks.1.downsample.0", "res.1.blocks.1.downsample.0"} <= ids and "res.1.blocks.0.downsample.0" not in ids
    wide = SPEC.replace("NAMES", '"{i}"').replace("with: {planes: planes}, first: {stride: stride}}", "with: {planes: planes + i}}")
    with pytest.raises(SpecError, match="a stage's later instances must keep their input shape"):
        lower(load_spec_text(wide, "wide.yaml"))
    loop = SPEC.replace("NAMES", '"{i}"').replace("transition: {block: transition, with: {compression: 0.5}}", "again: {block: dense_unit, with: {n: 1, growth_rate: 4}}")
    with pytest.raises(SpecError, match="block 'dense_unit' contains itself"):
        lower(load_spec_text(loop, "loop.yaml"))


DENSE_UNITS = textwrap.dedent("""\
    archc: 1
    name: dense_units
    input: [3, 16, 16]
    params: {num_classes: 10}
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    use: [densenet]
    blocks:
      unit:                       # a dense stage's block holding another block
        params: {growth_rate: int}
        layers:
          - inner: {block: dense_layer_basic, with: {growth_rate: growth_rate}}
          - squeeze: {conv: {filters: growth_rate, kernel: 1}}
      plain:                      # a layer named like the memory-efficient helper method
        params: {growth_rate: int}
        layers:
          - norm: batchnorm
          - relu: relu
          - bottleneck: {conv: {filters: growth_rate, kernel: 3, padding: 1}}
    layers:
      - conv0: {conv: {filters: 8, kernel: 3, padding: 1}}
      - block1: {stage: unit, repeat: 3, connectivity: dense, with: {growth_rate: 4}}
      - block2: {stage: plain, repeat: 3, connectivity: dense, with: {growth_rate: 4}}
      - pool: global_avgpool
      - fc: {dense: {units: num_classes}}
    """)


def test_dense_stage_blocks_with_nested_blocks_and_any_layer_names():
    graph = lower(load_spec_text(DENSE_UNITS, "units.yaml"))
    module = in_memory(graph, "torch")
    for efficient in (False, True):
        model = module.build_model(memory_efficient=efficient)
        assert sum(p.numel() for p in model.parameters()) == graph.counts.trainable
        x = torch.randn(2, 3, 16, 16, requires_grad=True)
        model(x).sum().backward()  # the layer `bottleneck` is a module, not the checkpointed method
        assert x.grad is not None


SEQUENCE = textwrap.dedent("""\
    archc: 1
    name: sequences
    input: [3, 16, 16]
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    blocks:
      unit:
        params: {filters: int, use_relu: true}
        layers:
          - {conv: {filters: filters, kernel: 1}}
          - batchnorm
          - {act: hardswish, if: not use_relu}
          - {act: relu, if: use_relu}
      stack:  # torchvision's _stack: nn.Sequential(first, *remaining)
        params: {filters: int, n: int, stride: 1}
        layers:
          - {conv: {filters: filters, kernel: 3, padding: 1, stride: stride}}
          - {stage: unit, repeat: n, with: {filters: filters}, first: {use_relu: false}}
          - {batchnorm: {}, if: n > 1}
          - relu
      grouped:
        params: {filters: int, n: int}
        layers:
          - layers:
              - {stage: unit, repeat: n, with: {filters: filters}}
              - relu
          - post: {conv: {filters: filters, kernel: 1}}
          - residual: {add: [layers, post]}  # `layers` is read by name: a variable
    layers:
      - layers:
          - {block: stack, with: {filters: 8, n: 3, stride: 2}}
          - {block: stack, with: {filters: 8, n: 1}}
          - {block: grouped, with: {filters: 8, n: 2}}
      - pool: global_avgpool
    """)


def test_unnamed_stages_in_sequences_are_numbered_on_in_every_backend():
    """An unnamed stage of a block kind that is a sequence, or of a list inside a block, adds
    its instances to the numbering (IR node ids, PyTorch state_dict keys, Keras layer names),
    after conditional entries; a layer may be named `layers` (torchvision's MNASNet)."""
    graph = lower(load_spec_text(SEQUENCE, "sequences.yaml"))
    ids = {n.id for n in graph.nodes}
    assert {"layers.0.0", "layers.0.1.0", "layers.0.3.0", "layers.0.4", "layers.0.5"} <= ids  # 3 units at 1, 2, 3
    assert {"layers.1.1.2", "layers.1.2"} <= ids and "layers.1.3" not in ids  # n = 1: no batchnorm
    assert {"layers.2.layers.0.0", "layers.2.layers.1.0", "layers.2.layers.2", "layers.2.residual"} <= ids
    t_model = in_memory(graph, "torch").build_model().eval()
    k_model = in_memory(graph, "keras").build_model()
    keys = {k.rsplit(".", 1)[0] for k in t_model.state_dict()}
    assert keys == {n.id for n in graph.nodes if n.op.weight_names()}
    named = {layer.name for layer in k_model.layers}
    assert {n.id.replace(".", "_") for n in graph.nodes} <= named
    assert isinstance(t_model.layers[0][1][2], torch.nn.Hardswish) and isinstance(t_model.layers[0][2][2], torch.nn.ReLU)
    torch_to_keras(t_model, k_model, graph)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype("float32")
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    got = np.asarray(k_model(channels_last(x), training=False))
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    assert "out_layers" in emit(graph, "keras")  # never a variable named like keras' `layers`


MANY_UNDER_ONE_FLAG = """\
archc: 1
name: many_flags
input: [3, 8, 8]
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
blocks:
  unit:
    layers:
      - conv: {conv: {filters: in_channels, kernel: 3, padding: 1}}
      - bn: batchnorm
      - add: {add: [bn, input]}
  stage:
    params: {use_pre_activation_bottleneck_2: bool}
    layers:
      - blocks:
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit, if: use_pre_activation_bottleneck_2}
          - {block: unit}
layers:
  - stem: {conv: {filters: 4, kernel: 3, padding: 1}}
  - s1: {block: stage, with: {use_pre_activation_bottleneck_2: true}}
  - s2: {block: stage, with: {use_pre_activation_bottleneck_2: false}}
  - pool: global_avgpool
"""


TWO_STAGES_OF_ONE_COUNT = """\
archc: 1
name: twice
input: [3, 8, 8]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  unit:
    params: {filters: int}
    layers:
      - {conv: {filters: filters, kernel: 1}}
      - relu
  grouped:
    params: {filters: int, n: int}
    layers:
      - layers:
          - {stage: unit, repeat: n - 1, with: {filters: filters}}
          - {stage: unit, repeat: n - 1, with: {filters: filters}}
          - relu
          - {conv: {filters: filters, kernel: 1}}
layers:
  - g: {block: grouped, with: {filters: 4, n: 3}}
  - pool: global_avgpool
"""


def _named_alike_and_equal(graph, shape):
    """Keras layer names, PyTorch keys and IR node ids are one numbering; the outputs agree."""
    t_model = in_memory(graph, "torch").build_model().eval()
    k_model = in_memory(graph, "keras").build_model()
    assert {k.rsplit(".", 1)[0] for k in t_model.state_dict()} == {n.id for n in graph.nodes if n.op.weight_names()}
    assert {n.id.replace(".", "_") for n in graph.nodes} <= {layer.name for layer in k_model.layers}
    torch_to_keras(t_model, k_model, graph)
    x = np.random.default_rng(0).standard_normal((2, *shape)).astype("float32")
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    got = np.asarray(k_model(channels_last(x), training=False))
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


def test_many_entries_under_one_flag_number_keras_layers_as_pytorch():
    """24 entries of a list under one long flag, then one without (timm's ResNetV2 stage, as
    imported): the last entry's number is `24 * int(flag)`, once per distinct term; written
    term by term it passed the expression length limit and the Keras emitter failed (exit 1)."""
    graph = lower(load_spec_text(MANY_UNDER_ONE_FLAG, "many.yaml"))
    ids = {n.id for n in graph.nodes}
    assert {"s1.blocks.24.conv", "s2.blocks.0.conv"} <= ids and "s2.blocks.1.conv" not in ids
    assert 'name=f"{name}_blocks_{24 * int(use_pre_activation_bottleneck_2)}"' in emit(graph, "keras")
    _named_alike_and_equal(graph, (3, 8, 8))


def test_two_stages_of_one_count_number_keras_layers_as_pytorch():
    """Two unconditional stages of `n - 1` blocks in one list: the entries after them are at
    2 * (n - 1) + k (written `2 * n - 1` the Keras names were one off the PyTorch keys)."""
    graph = lower(load_spec_text(TWO_STAGES_OF_ONE_COUNT, "twice.yaml"))
    assert {"g.layers.4", "g.layers.5"} <= {n.id for n in graph.nodes}
    _named_alike_and_equal(graph, (3, 8, 8))


def test_layers_is_a_layer_name_only():
    """`layers` may name a layer (torchvision's MNASNet), not a parameter or block, which
    would shadow Keras' `layers` module in generated code."""
    lower(load_spec_text(SEQUENCE, "sequences.yaml"))  # layers as a model-level and a block-level layer name
    for old, new in (("params: {filters: int, n: int}", "params: {filters: int, n: int, layers: 1}"), ("  grouped:", "  layers:")):
        assert old in SEQUENCE
        with pytest.raises(SpecError, match="'layers' is used by the generated code"):
            lower(load_spec_text(SEQUENCE.replace(old, new), "sequences.yaml"))
