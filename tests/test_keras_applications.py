"""The keras-layout zoo specs are keras.applications' models: the same parameter count,
and with keras.applications' weights (random, BatchNorm statistics included) copied in
layer by layer, the same logits.

The specs name their layers after keras.applications' (whose names start with digits
where the spec language needs identifiers); each case's renames turn one into the other.
keras.applications' InceptionV3 leaves its conv and BN layers unnamed, so Keras numbers them
in creation order (conv2d, conv2d_1, ...; batch_normalization, ...; the count goes on from
earlier models in the session); its spec creates the same layers in the same order (the IR's
node order), and BY_ORDER pairs the two by that order, layer type by layer type.
Adding a model is adding a row to CASES.
"""

import re

import numpy as np
import pytest
from conftest import KERAS_TOTALS, ROOT, graph_of, load_module, need

from archc.lower import lower
from archc.spec.loader import load_spec

keras = need("keras")

# ours -> keras.applications: conv2_block1_b1_conv -> conv2_block1_1_conv, shortcut conv/BN -> _0_conv/_0_bn.
B_NAMES = [(r"_shortcut_0$", "_0_conv"), (r"_shortcut_1$", "_0_bn"), (r"_b(\d)_(\w+)$", r"_\1_\2")]
# conv2_block1_conv1 -> conv2_block1_1_conv, conv2_block1_bn1 -> conv2_block1_1_bn.
V2_NAMES = [(r"^conv1$", "conv1_conv"), (r"_shortcut$", "_0_conv"), (r"_(conv|bn)(\d)$", r"_\2_\1")]
# block2_1_dwconv -> block2b_dwconv (instance k of a stage is letter k).
EFFICIENTNET_NAMES = [(rf"^block(\d)_{k}_", rf"block\g<1>{chr(ord('a') + k)}_") for k in range(10)]
BY_ORDER = "by creation order"
CASES = [
    ("specs/keras/resnet50.yaml", "ResNet50", B_NAMES),
    ("specs/keras/densenet121.yaml", "DenseNet121", B_NAMES),
    ("specs/keras/resnet50v2.yaml", "ResNet50V2", V2_NAMES),
    ("specs/keras/vgg16.yaml", "VGG16", []),  # the same names
    ("specs/keras/inception_v3.yaml", "InceptionV3", BY_ORDER),
    ("specs/keras/efficientnet_b0.yaml", "EfficientNetB0", EFFICIENTNET_NAMES),
    ("specs/keras/convnext_tiny.yaml", "ConvNeXtTiny", []),  # the same names
    ("specs/keras/mobilenet_v2.yaml", "MobileNetV2", []),  # the same names
]
# Layers keras.applications leaves unnamed, which Keras numbers per session (normalization,
# normalization_1, ...): ours of that name pairs with the reference's one layer of its type.
UNNAMED = {"normalization": "Normalization"}
# The layer giving the logits, where it is not `predictions`.
LOGITS = {"ConvNeXtTiny": "convnext_tiny_head_dense"}


def reference_name(name, renames):
    for pattern, repl in renames:
        name = re.sub(pattern, repl, name)
    return name


def creation_order(graph, ours, reference):
    """Our weighted layers in the IR's node order, paired with the reference's of the same
    type in the order of Keras' automatic numbering (`conv2d` before `conv2d_1` ...)."""

    def number(name):
        suffix = re.search(r"_(\d+)$", name)
        return int(suffix.group(1)) if suffix else 0

    ours_by_name = {layer.name: layer for layer in ours.layers}
    pairs = {}
    for kind in {type(layer) for layer in reference.layers if layer.weights}:
        theirs = sorted((layer.name for layer in reference.layers if type(layer) is kind), key=number)
        mine = [n.id.replace(".", "_") for n in graph.nodes if n.op.weight_names()]
        mine = [n for n in mine if type(ours_by_name[n]) is kind]
        assert len(mine) == len(theirs), kind
        pairs.update(zip(mine, theirs))
    return pairs


def leaves(model):
    """The model's layers, those of nested models (ConvNeXt's stem Sequential) in their place."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaves(layer)
        else:
            yield layer


def randomize(model, rng):
    """Random kernels, biases, BN and layer norm gamma/beta and layer scales (multipliers of
    order 1, not ConvNeXt's 1e-6 start); BN statistics measured on a random batch, then
    perturbed per channel (so activations stay O(1) through the whole model)."""
    norms = [layer for layer in leaves(model) if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in leaves(model):
        if isinstance(layer, keras.layers.Normalization):  # mean, variance, sample count (adapt)
            if layer.weights:  # none where mean and variance are constants (ConvNeXt's preprocessing)
                mean, var, count = layer.get_weights()
                layer.set_weights([rng.uniform(-0.5, 0.5, mean.shape), rng.uniform(0.5, 2.0, var.shape), count + 1000])
                layer.finalize_state()
        elif isinstance(layer, keras.layers.LayerNormalization):
            gamma, beta = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.uniform(-0.5, 0.5, beta.shape)])
        elif type(layer).__name__ == "LayerScale":
            layer.set_weights([rng.uniform(0.5, 1.5, w.shape) for w in layer.get_weights()])
        elif layer in norms:
            *affine, mean, var = layer.get_weights()  # no gamma with scale=False (InceptionV3)
            gamma = [rng.uniform(0.5, 1.5, mean.shape)] if layer.scale else []
            layer.set_weights([*gamma, rng.uniform(-0.5, 0.5, mean.shape), mean, var])
            layer.momentum = 0.0  # the next training call sets the statistics to the batch's
        elif layer.weights:
            kernel, *bias = layer.get_weights()
            bound = np.sqrt(6 / np.prod(kernel.shape[:-1]))
            layer.set_weights([rng.uniform(-bound, bound, kernel.shape), *(rng.uniform(-0.5, 0.5, b.shape) for b in bias)])
    model(rng.standard_normal((2, *model.input_shape[1:])).astype("float32"), training=True)
    for layer in norms:
        *affine, mean, var = layer.get_weights()
        mean = mean + 0.25 * np.sqrt(var) * rng.standard_normal(mean.shape)
        layer.set_weights([*affine, mean, var * rng.uniform(0.5, 2.0, var.shape)])


def paired(graph, ours, reference, renames):
    """Both models' weighted layers by name, and ours -> theirs."""
    ref_layers = {layer.name: layer for layer in leaves(reference) if layer.weights}
    our_layers = {layer.name: layer for layer in ours.layers if layer.weights}
    if renames == BY_ORDER:
        pairs = creation_order(graph, ours, reference)
    else:
        pairs = {n: reference_name(n, renames) for n in our_layers}
        for ours_name, kind in UNNAMED.items():
            if ours_name in pairs:
                (pairs[ours_name],) = (n for n, layer in ref_layers.items() if type(layer).__name__ == kind)
    assert sorted(pairs) == sorted(our_layers) and sorted(pairs.values()) == sorted(ref_layers)
    return ref_layers, our_layers, pairs


def assert_same_distribution(ours, theirs, what):
    """Two freshly initialised tensors: equal if the reference's is a constant, else the same
    standard deviation and mean within 5 standard errors of their difference."""
    ours, theirs = np.asarray(ours, dtype=np.float64).ravel(), np.asarray(theirs, dtype=np.float64).ravel()
    if theirs.min() == theirs.max():
        assert np.array_equal(ours, theirs), what
        return
    n, std = theirs.size, theirs.std()
    assert abs(ours.std() / std - 1) < 5 / np.sqrt(n), f"{what}: std {ours.std():.6g}, reference {std:.6g} (n={n})"
    assert abs(ours.mean() - theirs.mean()) < 5 * np.sqrt(2) * std / np.sqrt(n), f"{what}: mean {ours.mean():.6g}, reference {theirs.mean():.6g}"


@pytest.mark.parametrize(
    "spec, constructor, renames",
    [pytest.param(*case, marks=pytest.mark.slow) if case[0] in ("specs/keras/vgg16.yaml", "specs/keras/inception_v3.yaml") else case for case in CASES],
)
def test_init_matches_keras_applications(spec, constructor, renames):
    """A freshly built generated model draws every tensor as keras.applications' does."""
    graph = graph_of(spec)
    ours = load_module(ROOT / "generated" / f"{graph.name}_keras.py").build_model()
    reference = getattr(keras.applications, constructor)(weights=None, classifier_activation=None)
    ref_layers, our_layers, pairs = paired(graph, ours, reference, renames)
    for n, layer in our_layers.items():
        for mine, theirs in zip(layer.weights, ref_layers[pairs[n]].weights, strict=True):
            assert_same_distribution(mine.numpy(), theirs.numpy(), f"{n}.{mine.name}")


@pytest.mark.parametrize("spec, constructor, renames", CASES)
def test_matches_keras_applications(spec, constructor, renames):
    graph = graph_of(spec)
    name = graph.name
    module = load_module(ROOT / "generated" / f"{name}_keras.py")
    ours = module.build_model()
    reference = getattr(keras.applications, constructor)(weights=None, classifier_activation=None)
    assert ours.count_params() == reference.count_params() == KERAS_TOTALS[spec]

    ref_layers, our_layers, pairs = paired(graph, ours, reference, renames)
    randomize(reference, np.random.default_rng(0))
    for n, layer in our_layers.items():
        layer.set_weights(ref_layers[pairs[n]].get_weights())
        if hasattr(layer, "finalize_state"):  # Normalization reads its statistics from its weights here
            layer.finalize_state()

    x = np.random.default_rng(1).standard_normal((1, *module.INPUT_SHAPE)).astype("float32")
    expected = np.asarray(reference(x, training=False))
    # The spec ends in a separate softmax layer; keras.applications' logits are the Dense output.
    logits = keras.Model(ours.input, ours.get_layer(LOGITS.get(constructor, "predictions")).output)
    got = np.asarray(logits(x, training=False))
    assert np.abs(expected - got).max() <= 1e-5 * max(1.0, np.abs(expected).max())
    assert isinstance(ours.layers[-1], keras.layers.Activation) and ours.layers[-1].get_config()["activation"] == "softmax"


@pytest.mark.parametrize("alpha", [0.35, 1.4])
def test_mobilenet_v2_width_multiplier(alpha):
    """The MobileNetV2 spec's `alpha` is keras.applications' width multiplier: channel rounding
    (make_divisible of int(filters * alpha)) and the widened last conv above 1.0 included."""
    counts = lower(load_spec(ROOT / "specs/keras/mobilenet_v2.yaml", [f"params.alpha={alpha}"])).counts
    reference = keras.applications.MobileNetV2(weights=None, alpha=alpha, input_shape=(224, 224, 3))
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    assert (counts.total, counts.trainable) == (reference.count_params(), trainable)
