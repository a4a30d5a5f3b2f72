"""Generated Keras code reads like keras.applications (issue 21 §5): no no-op padding or
Identity layer inside block functions, conditions that every instance of a block kind
decides printed decided, and a conv or dense directly followed by its activation taking it
as `activation=`. Layer names that carry weights are unchanged (the parity tests check them)."""

import ast
import re

import pytest
from conftest import ROOT, graph_of, need

from archc.backends import decide, emit
from archc.backends.common import instances_of
from archc.ir.graph import SymBlock, SymGroup, SymLayer, SymParallel, SymStage
from archc.spec import expr

GENERATED = sorted((ROOT / "generated").glob("*_keras.py"))


def block_functions(source):
    """The source of a generated module's block functions (everything before build_model)."""
    return source.split("\ndef build_model(")[0]


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.stem)
def test_no_no_op_layers(path):
    source = path.read_text()
    assert "ZeroPadding2D((0, 0))" not in source and "padding=((0, 0), (0, 0))" not in source
    assert "ZeroPadding2D(0" not in source
    assert "layers.Identity(" not in source


def test_identity_left_out_where_nothing_reads_it():
    """resnet50d's downsample holds an Identity where the stride is 1 (timm's nn.Identity keeps
    the conv at index 1); the Keras code has no layer for it, and the conv keeps its name."""
    source = (ROOT / "generated" / "resnet50d_keras.py").read_text()
    assert "layers.Identity" not in source and "if stride == 1:" not in source
    assert 'name=f"{name}_downsample_1",' in source and 'name=f"{name}_downsample_2"' in source


def test_decided_where_every_instance_decides():
    source = emit(graph_of("specs/mobilenet_v3_large.yaml"), "keras")
    assert 'x = layers.Activation("relu", name=f"{name}_2")(x)' in source  # was int(activation and use_hs) + 2
    assert "int(activation and use_hs)" not in source and "dilation > 1" not in source
    assert 'name=f"{name}_block_2",' in source  # squeeze_excitation: every block with SE expands
    # with a dilation some instances take the other branch: the condition is printed
    dilated = emit(graph_of("specs/mobilenet_v3_large.yaml", "params.dilated=true"), "keras")
    assert "stride=1 if dilation > 1 else stride" in dilated
    regnet = emit(graph_of("specs/regnet_y_400mf.yaml"), "keras")
    assert "if se_ratio > 0:" not in regnet and "squeeze_excitation(" in regnet.split("def bottleneck_transform(")[1]
    regnet_x = emit(graph_of("specs/regnet_x_400mf.yaml"), "keras")  # se_ratio 0: the branch never runs
    assert "if se_ratio > 0:" not in regnet_x and "squeeze_excitation" not in regnet_x  # nor its function
    with_se = emit(graph_of("specs/regnet_x_400mf.yaml", "params.se_ratio=0.25"), "keras")  # every instance has one
    assert "if se_ratio > 0:" not in with_se and "x = squeeze_excitation(" in with_se


def _pairs(original, decided, context):
    """(original tree, decided tree, the conditions around it) for every tree of two items of the same shape."""
    condition = original.condition
    yield condition, decided.condition, context
    inner = context if condition is None else (*context, condition)
    yield original.in_channels, decided.in_channels, inner
    if isinstance(original, (SymLayer, SymBlock)):
        for (_, a), (_, b) in zip(original.args, decided.args, strict=True):
            if isinstance(a, ast.expr):
                yield a, b, inner
    if isinstance(original, SymStage):
        yield original.repeat, decided.repeat, inner
        yield from _pairs(original.first, decided.first, inner)
    if isinstance(original, (SymGroup, SymParallel)):
        for a, b in zip(original.children, decided.children, strict=True):
            yield from _pairs(a, b, inner)


def _value(tree, scope):
    try:
        return expr.evaluate(tree, scope)
    except Exception:  # noqa: BLE001 - a loop variable, a missing name: not compared
        return None


@pytest.mark.parametrize("spec", ["specs/mobilenet_v3_large.yaml", "specs/timm/resnet50d.yaml", "specs/regnet_y_400mf.yaml", "specs/efficientnet_v2_s.yaml"])
def test_decided_trees_keep_their_values(spec):
    """Every tree of a decided block kind has the original's value in each instance where the
    conditions around it hold, and at least one tree is decided."""
    graph = graph_of(spec)
    instances = {b.name: instances_of(graph, b.name) for b in graph.blocks}
    varying = decide.varying(graph, instances)
    changed = 0
    for block in graph.blocks:
        scopes = decide.scopes(graph, instances[block.name], varying[block.name])
        decided = decide.block(block, decide.Decider(scopes))
        for a_item, b_item in zip((*block.layers, *block.after), (*decided.layers, *decided.after), strict=True):
            for a, b, context in _pairs(a_item, b_item, ()):
                if a is None:
                    continue
                changed += b is None or expr.to_python(a) != expr.to_python(b)
                for scope in scopes:
                    if all(_value(c, scope) for c in context):
                        want = _value(a, scope)
                        got = True if b is None else _value(b, scope)  # a condition dropped: it holds
                        assert want is None or bool(got) == bool(want) if b is None else got == want, (block.name, expr.to_python(a))
    assert changed


def test_activation_inside_conv_and_dense():
    """keras.applications' `Conv2D(..., activation="relu")`: SqueezeNet's Fire convs take their
    ReLU, the SE convs of EfficientNet theirs; the activation keeps its layer where the spec
    names it after its function (keras.applications ConvNeXt's `_gelu`) or where it ends a block."""
    squeezenet = (ROOT / "generated" / "squeezenet1_1_keras.py").read_text()
    assert re.search(r'squeeze_activation = layers\.Conv2D\([^)]*activation="relu",\s*name=f"\{name\}_squeeze",', squeezenet)
    assert "_squeeze_activation" not in squeezenet
    efficientnet = (ROOT / "generated" / "keras_efficientnet_b0_keras.py").read_text()
    assert 'activation="silu",\n        name=f"{name}_se_reduce",' in efficientnet
    assert 'activation="sigmoid",\n        name=f"{name}_se_expand",' in efficientnet
    convnext = (ROOT / "generated" / "keras_convnext_tiny_keras.py").read_text()
    assert 'layers.Activation("gelu", name=f"{name}_gelu")' in convnext and "activation=" not in convnext
    mobilenet = (ROOT / "generated" / "mobilenet_v3_large_keras.py").read_text()
    assert 'activation="hard_sigmoid",\n        name=f"{name}_fc2",' in mobilenet
    assert 'x = layers.Activation("relu", name=f"{name}_2")(x)' in mobilenet  # after a batch norm: its own layer


def test_model_level_layers_like_keras_applications():
    """keras.applications' VGG16 writes `Conv2D(64, (3, 3), activation="relu", padding="same",
    name="block1_conv1")`; the spec's ReLU entries fold in the same way, the softmax after the
    logits stays a layer (the logits stay a layer's output)."""
    vgg = (ROOT / "generated" / "keras_vgg16_keras.py").read_text()
    assert 'x = layers.Conv2D(64, 3, padding="same", activation="relu", name="block1_conv1")(x)' in vgg
    assert 'x = layers.Dense(4096, activation="relu", name="fc1")(x)' in vgg and "_relu" not in vgg
    assert 'x = layers.Dense(num_classes, name="predictions")(x)' in vgg
    alexnet = (ROOT / "generated" / "alexnet_keras.py").read_text()
    assert 'name="avgpool"' not in alexnet  # torchvision's AdaptiveAvgPool2d(6) on a 6x6 map
    assert 'activation="relu",\n        name="features_0",' in alexnet and 'name="features_1"' not in alexnet


def test_verify_reads_the_layers_left():
    """`archc verify` reads an identity left out at its input's layer, and leaves out the
    pre-activation tensor of a conv that takes its activation in (Keras has none)."""
    verify = need("archc.verify")
    report = verify.verify("specs/alexnet.yaml")
    assert report.ok, verify.to_table(report)
    rows = {r.item for r in report.rows}
    # features.1: read at features_0; avgpool: at features_12 (its input); features.0: a conv without a
    # tensor of its own in Keras
    assert {"features.1", "features.2", "avgpool", "classifier.2"} <= rows and "features.0" not in rows and "features.3" not in rows


def test_fused_model_runs_like_torch():
    keras = need("keras")
    verify = need("archc.verify")
    report = verify.verify("specs/squeezenet1_1.yaml")
    assert report.ok, verify.to_table(report)
    from conftest import load_module

    model = load_module(ROOT / "generated" / "squeezenet1_1_keras.py").build_model()
    names = {layer.name for layer in model.layers}
    assert model.get_layer("features_3_squeeze").get_config()["activation"] == "relu"
    assert "features_3_squeeze_activation" not in names and isinstance(model.get_layer("features_3_expand"), keras.layers.Concatenate)


UNITS = """
archc: 1
name: units
input: [3, 8, 8]
defaults: {conv: {bias: true}}
blocks:
  unit:
    params: {wide: false, gate: 1}
    layers:
      - squeeze: {conv: {filters: 4, kernel: 1}, if: wide}
      - squeeze_act: relu
      - expand: {conv: {filters: 6, kernel: 1}, if: gate > 0}
      - expand_act: {act: sigmoid, if: gate > 0}
      - mix: {conv: {filters: 6, kernel: 1}}
layers:
  - u1: {block: unit, with: {gate: 0}}
  - u2: {block: unit, with: {wide: true, gate: 2}}
  - pool: global_avgpool
"""


def test_conditions_and_fusion_in_a_small_block():
    """`gate > 0` differs between the instances: printed; the conv under it takes in the
    activation under the same condition; the ReLU after a conditional conv keeps its layer."""
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    source = emit(lower(load_spec_text(UNITS)), "keras")
    assert "if wide:" in source and "if gate > 0:" in source
    assert 'activation="sigmoid",\n            name=f"{name}_expand",' in source and "_expand_act" not in source
    assert 'x = layers.Activation("relu", name=f"{name}_squeeze_act")(x)' in source
    verify = need("archc.verify")
    report = verify.verify(lower(load_spec_text(UNITS)))
    assert report.ok, verify.to_table(report)
    # every instance gates: the condition is decided, the layers unconditional
    both = emit(lower(load_spec_text(UNITS.replace("gate: 0}", "gate: 3}"))), "keras")
    assert "if gate > 0:" not in both and 'activation="sigmoid",\n        name=f"{name}_expand",' in both
