"""Every zoo model: IR, generated torch and generated keras agree with each other and
with the published parameter counts, and a forward pass gives the IR's output shape."""

import re
import sys

import numpy as np
import pytest
from conftest import (
    DEEP,
    FAMILIES,
    KERAS_FORWARD_ELSEWHERE,
    KERAS_TOTALS,
    REPRESENTATIVES,
    ROOT,
    ZOO,
    each_output,
    expensive,
    graph_of,
    load_module,
    need,
    suite_graph,
    suite_input,
)

from archc.backends import emit
from archc.lower import lower
from archc.spec.loader import load_spec

SPECS = sorted(ZOO)
# ResNet-1202 has about 4,800 Keras layers in one chain: 15-25 s to build on CPU, and
# Keras' functional graph walk recurses once per layer, past Python's default limit (as a
# hand-written Keras ResNet-1202 does too).


def generated_path(spec, backend):
    return ROOT / "generated" / f"{graph_of(spec).name}_{backend}.py"


def test_zoo_is_complete():
    on_disk = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "specs").rglob("*.yaml"))
    assert on_disk == SPECS
    in_families = [spec for members in FAMILIES.values() for spec in members]
    assert sorted(in_families) == SPECS  # each spec in exactly one family


def test_a_family_is_one_class():
    """A spec whose parameters build other members (`--set params.depth=16` of wrn28_10) names
    its model class after the family (`class: WideResNet`, as torchvision's ResNet, VGG,
    EfficientNet), so a variant's class is not named after another member (`Wrn2810`). Only
    the classifier's size (num_classes) does not count."""
    unnamed = [spec for spec in SPECS if set(load_spec(ROOT / spec).model.params) - {"num_classes"} and graph_of(spec).class_name is None]
    assert unnamed == []


@pytest.mark.parametrize("spec", SPECS)
def test_ir_counts_match_published(spec):
    counts = graph_of(spec).counts
    assert (counts.trainable, counts.non_trainable) == ZOO[spec]


@pytest.mark.parametrize("spec", sorted(KERAS_TOTALS))
def test_ir_total_matches_keras_reference(spec):
    assert graph_of(spec).counts.total == KERAS_TOTALS[spec]


@pytest.mark.parametrize("spec", SPECS)
def test_torch_module(spec):
    """Every spec's generated PyTorch model has the published counts; the family
    representatives also run a forward pass at full size (the others: test_verify's
    test_zoo_verifies in `make test-slow`), and the others are built on the meta device (shapes,
    no storage or initialisation) to count."""
    torch = need("torch")
    graph = graph_of(spec)
    module = load_module(generated_path(spec, "torch"))
    with torch.device("cpu" if spec in REPRESENTATIVES else "meta"):
        model = module.build_model().eval()
    trainable = sum(p.numel() for p in model.parameters())
    state = model.state_dict()  # constants (a normalization's fixed mean) are buffers outside it
    buffers = sum(b.numel() for n, b in model.named_buffers() if n in state and not n.endswith("num_batches_tracked"))
    assert (trainable, buffers) == ZOO[spec]
    assert module.INPUT_SHAPE == graph.input_shape.as_tuple()
    if spec in REPRESENTATIVES:
        torch_forward(spec, module, model)


def torch_forward(spec, module, model):
    import torch

    graph = suite_graph(spec)
    with torch.no_grad():
        out = model(torch.randn(2, *suite_input(spec, module)))
    assert [tuple(o.shape) for o in each_output(out)] == [(2, *shape.as_tuple()) for shape in output_shapes(graph)]


def output_shapes(graph):
    return [o.shape for o in graph.outputs] or [graph.output_shape]


@pytest.mark.parametrize("spec", expensive(ZOO))
def test_keras_module(spec):
    """The same for the generated Keras model, built (a Keras model has no meta device: every
    build creates and initialises its weights) and run: the representatives in `make test`,
    the other members (whose code is their representative's with other numbers) in
    `make test-slow`, where test_verify's test_zoo_verifies runs each of them at this size in
    both frameworks and compares every block. A fully convolutional spec the suite runs at a
    smaller size (TEST_INPUT) is built once, at that size: its counts do not depend on it."""
    need("keras")
    graph, suite = graph_of(spec), suite_graph(spec)
    module = load_module(generated_path(spec, "keras"))
    assert module.INPUT_SHAPE == (*graph.input_shape.size, graph.input_shape.c)  # channels last at every rank
    module.INPUT_SHAPE = keras_shape(suite.input_shape)  # what build_model reads: this module's own copy
    model = keras_model(spec, module)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (trainable, non_trainable) == ZOO[spec]
    assert [tuple(o.shape) for o in each_output(model.output)] == [(None, *keras_shape(s)) for s in output_shapes(suite)]
    if spec in REPRESENTATIVES and spec not in KERAS_FORWARD_ELSEWHERE:
        out = model(np.zeros((2, *keras_shape(suite.input_shape)), dtype="float32"), training=False)
        assert [tuple(o.shape) for o in each_output(out)] == [(2, *keras_shape(shape)) for shape in output_shapes(suite)]


def keras_model(spec, module):
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000 if spec in DEEP else limit)
    try:
        return module.build_model()
    finally:
        sys.setrecursionlimit(limit)


def keras_shape(shape):
    return (*shape.size, shape.c)  # channels_last


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_build_model_accepts_num_classes(backend):
    if backend == "torch":
        need("torch")
        model = load_module(generated_path("specs/resnet18.yaml", "torch")).build_model(num_classes=7)
        assert model.fc.out_features == 7
    else:
        need("keras")
        model = load_module(generated_path("specs/cifar/resnet20.yaml", "keras")).build_model(num_classes=7)
        assert model.output_shape == (None, 7)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_generated_is_in_sync(spec, backend):
    path = generated_path(spec, backend)
    expected = emit(graph_of(spec), backend)
    assert path.exists(), f"{path} is missing; run `make generated`"
    assert path.read_text() == expected, f"{path} is stale; run `make generated` and commit the result"


def test_output_is_deterministic():
    a = emit(lower(load_spec(ROOT / "specs/densenet121.yaml")), "keras")  # two lowerings, not the cached one
    b = emit(lower(load_spec(ROOT / "specs/densenet121.yaml")), "keras")
    assert a == b
    assert "spec sha256: " in a  # provenance ...
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", a)  # ... but no date or time


def test_the_header_hash_covers_the_libraries_a_spec_uses(tmp_path):
    """A library decides the code as much as the spec does: editing it changes `spec sha256`."""
    (tmp_path / "lib.yaml").write_text("archc: 1\nlibrary: lib\nblocks:\n  b:\n    layers: [{c: {conv: {filters: 4, kernel: 1, bias: true}}}]\n")
    (tmp_path / "m.yaml").write_text("archc: 1\nname: m\ninput: [3, 8, 8]\nuse: [lib.yaml]\nlayers:\n  - x: {block: b}\n")
    before = load_spec(tmp_path / "m.yaml").sha256
    (tmp_path / "lib.yaml").write_text((tmp_path / "lib.yaml").read_text().replace("filters: 4", "filters: 5"))
    after = load_spec(tmp_path / "m.yaml").sha256
    assert before != after


def meta_state_dict(spec):
    """The generated PyTorch model's state_dict, built on the meta device (names and shapes)."""
    torch = need("torch")
    with torch.device("meta"):
        return load_module(generated_path(spec, "torch")).build_model().state_dict()


def test_torchvision_state_dict_keys():
    """Module names follow torchvision's, so real checkpoints load (full parity: issue 4)."""
    resnet = meta_state_dict("specs/resnet50.yaml")
    assert "layer1.0.downsample.0.weight" in resnet and "layer2.0.downsample.1.running_var" in resnet
    assert "layer1.1.downsample.0.weight" not in resnet
    assert tuple(resnet["fc.weight"].shape) == (1000, 2048)
    densenet = meta_state_dict("specs/densenet121.yaml")
    for key in (
        "features.conv0.weight",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.denseblock4.denselayer16.conv2.weight",
        "features.transition3.conv.weight",
        "features.norm5.running_mean",
        "classifier.bias",
    ):
        assert key in densenet, key
    # torchvision: conv0 1 + norm0 5 + 58 layers x 12 + 3 transitions x 6 + norm5 5 + classifier 2
    assert len(densenet) == 727


def test_mobilenet_v3_and_mnasnet_state_dict_keys():
    """torchvision's names (full parity in test_torchvision.py): Conv2dNormActivation's
    numbering, SqueezeExcitation's fc1/fc2, MNASNet's `layers` and its _stack sequences."""
    large = meta_state_dict("specs/mobilenet_v3_large.yaml")
    for key in ("features.0.0.weight", "features.1.block.0.0.weight", "features.2.block.0.0.weight",
                "features.4.block.2.fc1.weight", "features.4.block.2.fc2.bias", "features.4.block.3.1.running_var",
                "features.16.0.weight", "classifier.0.weight", "classifier.3.bias"):  # fmt: skip
        assert key in large, key
    assert "features.1.block.2.0.weight" not in large  # no expansion where the width is kept
    small = meta_state_dict("specs/mobilenet_v3_small.yaml")
    assert "features.1.block.1.fc1.weight" in small and "features.12.0.weight" in small
    mnasnet = meta_state_dict("specs/mnasnet1_0.yaml")
    for key in ("layers.0.weight", "layers.8.0.layers.0.weight", "layers.8.2.layers.7.running_var",
                "layers.12.3.layers.3.weight", "layers.13.0.layers.7.bias", "layers.14.weight", "classifier.1.weight"):  # fmt: skip
        assert key in mnasnet, key
    assert "layers.13.1.layers.0.weight" not in mnasnet


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_code_size_follows_block_kinds_not_depth(backend):
    """ResNet-1202 has 60x the blocks of ResNet-20 but the same block kinds: stages are loops."""
    small = len(emit(graph_of("specs/cifar/resnet20.yaml"), backend))
    deep = len(emit(graph_of("specs/cifar/resnet1202.yaml"), backend))
    assert deep <= 1.2 * small, (deep, small)


def test_densenet_bc250_k24_matches_paper():
    """The L=100 spec's depth and growth rate are parameters: L=250, k=24 is Huang et al.'s 15.3M net."""
    spec = load_spec(ROOT / "specs/cifar/densenet_bc100_k12.yaml", ["params.depth=250", "params.growth_rate=24"])
    assert lower(spec).counts.trainable == 15_324_406


REGNET_IN_A_BLOCK = """\
archc: 1
name: regnet_widths
input: [3, 16, 16]
params: {w_a: 27.89}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  widths:
    params: {w_a: float}
    layers:
      - conv1: {conv: {filters: "regnet_width(16, 48, w_a, 2.09, 2) // 8", kernel: 1}}
      - conv2: {conv: {filters: "regnet_depth(16, 48, w_a, 2.09, 4) * regnet_stages(16, 48, w_a, 2.09)", kernel: 1}}
layers:
  - b: {block: widths, with: {w_a: w_a}}
"""


@pytest.mark.parametrize("backend", ["torch", "keras"])
def test_regnet_functions_are_defined_where_printed(backend, tmp_path):
    """A block that computes widths with regnet_* prints the calls; its module defines them, the
    per-block widths they call, and imports math. (The RegNet specs use them at model level only:
    their modules get numbers, as generated/ shows.)"""
    from archc.spec.loader import load_spec_text

    graph = lower(load_spec_text(REGNET_IN_A_BLOCK, "regnet_widths.yaml"))
    assert graph.output_shape.as_tuple() == (6 * 4, 16, 16)  # 104 // 8 = 13 channels, then 6 x 4 stages
    text = emit(graph, backend)
    assert "regnet_width(16, 48, w_a, 2.09, 2) // 8" in text and "import math" in text
    for name in ("regnet_block_widths", "regnet_width", "regnet_depth", "regnet_stages"):
        assert f"def {name}(" in text
    path = tmp_path / f"regnet_widths_{backend}.py"
    path.write_text(text)
    model = load_module(path).build_model()
    if backend == "torch":
        assert model.b.conv1.out_channels == 13 and model.b.conv2.out_channels == 24
    else:
        assert model.output_shape == (None, 16, 16, 24)


def test_regnet_module_names():
    """torchvision's RegNet keys (`block1-0` from its add_module), and Keras layer names along
    the same path (test_torchvision.py compares the whole state_dict with torchvision's)."""
    keys = meta_state_dict("specs/regnet_y_400mf.yaml")
    block = "trunk_output.block1.block1-0"
    expected = ["stem.0.weight", "stem.1.running_var", f"{block}.proj.0.weight", f"{block}.proj.1.bias",
                f"{block}.f.a.0.weight", f"{block}.f.b.0.weight", f"{block}.f.se.fc1.weight", f"{block}.f.se.fc2.bias",
                f"{block}.f.c.0.weight", f"{block}.f.c.1.running_mean", "trunk_output.block4.block4-5.f.c.1.weight",
                "fc.weight", "fc.bias"]  # fmt: skip
    for key in expected:
        assert key in keys, key
    assert "trunk_output.block2.block2-1.proj.0.weight" not in keys  # identity where the shape is kept
    assert not any(".se." in k for k in meta_state_dict("specs/regnet_x_400mf.yaml"))
    need("keras")
    names = {layer.name for layer in load_module(generated_path("specs/regnet_y_400mf.yaml", "keras")).build_model().layers}
    for key in expected:
        assert key.rsplit(".", 1)[0].replace(".", "_") in names, key
