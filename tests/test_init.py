"""Initialisation (`init`, archc/ops/init.py): every rule of the vocabulary draws in both
generated backends from the distribution it names, with PyTorch's fans; the zoo models draw
every tensor from their spec's rule in PyTorch and in Keras (the torchvision and timm
references themselves: tests/test_torchvision.py, test_init_matches_reference); and a rule
that does not fit its tensor is a located error.

Per tensor: constants exactly; random tensors by their standard deviation and mean, within
5 standard errors (relative error 5 / sqrt(numel) for the standard deviation), so large
tensors make the test tight: PyTorch's default initialisation fails it for every rule that
differs from it (test_default_init_would_fail)."""

import math
import re
import sys

import numpy as np
import pytest
from conftest import DEEP, ROOT, ZOO, graph_of, load_module, need

from archc import api
from archc.errors import SpecError
from archc.lower import lower
from archc.ops import init
from archc.spec.loader import load_spec, load_spec_text

torch = need("torch")
keras = need("keras")


def fans(graph, node) -> tuple[int, int, int]:
    """PyTorch's (fan_in, fan_out) of a node's weight, and its groups."""
    shapes = {n.id: n.shape for n in graph.nodes}
    c_in = shapes[node.inputs[0]].c if node.inputs and node.inputs[0] in shapes else graph.input_shape.c
    op = node.op
    if op.kind == "dense":
        return c_in, op.units, 1
    if op.kind == "batchnorm":
        return 1, 1, 1
    rank = len(graph.input_shape.size)  # a kernel's spatial dimensions: 1 (C, L), 2 or 3 (C, D, H, W)
    k = math.prod([op.kernel] * rank if isinstance(op.kernel, int) else op.kernel)
    if op.kind == "depthwise_conv":  # PyTorch's weight (C, 1, *kernel), one group per channel
        return k, c_in * k, c_in
    if op.kind == "conv_transpose":
        return op.filters // op.groups * k, c_in * k, op.groups
    return c_in // op.groups * k, op.filters * k, op.groups


def expected(graph, node, name: str) -> tuple[float, float]:
    """(mean, std) of the node's tensor `name` under its rule."""
    role = "weight" if name == "weight" else "bias"
    rule = getattr(node.op.init, role)
    return init.moments(rule, role, node.op.kind, *fans(graph, node))


def check(values: np.ndarray, mean: float, std: float, what: str) -> None:
    values = np.asarray(values, dtype=np.float64).ravel()
    n = values.size
    if std == 0:
        assert np.all(values == np.float32(mean)), f"{what}: expected every element {mean}, got {values[:5]}"
        return
    assert abs(values.std() / std - 1) < 5 / math.sqrt(n) + 1e-4, f"{what}: std {values.std():.6g}, expected {std:.6g} (n={n})"
    assert abs(values.mean() - mean) < 5 * std / math.sqrt(n) + 1e-7, f"{what}: mean {values.mean():.6g}, expected {mean:.6g}"


def weighted(graph):
    return [n for n in graph.nodes if n.op.kind in init.KINDS]


def fixed(graph):
    """(node, tensor, value) of the tensors that start at a constant outside the rules: layer
    scales at their init_value, layer norms at ones and zeros (in both frameworks)."""
    for n in graph.nodes:
        if n.op.kind == "layer_scale":
            yield n, "", n.op.init_value
        elif n.op.kind == "layernorm":
            yield n, "weight", 1.0
            yield n, "bias", 0.0
        elif n.op.kind == "rmsnorm":
            yield n, "weight", 1.0


def check_torch(graph, model) -> int:
    state = model.state_dict()
    count = 0
    for node in weighted(graph):
        for name in node.op.weight_names():
            if name in ("weight", "bias"):
                check(state[f"{node.id}.{name}"].numpy(), *expected(graph, node, name), f"torch {node.id}.{name}")
                count += 1
    for node, name, value in fixed(graph):
        key = f"{node.id}.{name}" if name else node.id
        check(state[key].numpy(), value, 0.0, f"torch {key}")
        count += 1
    return count


def check_keras(graph, model) -> int:
    count = 0
    for node in weighted(graph):
        layer = model.get_layer(node.id.replace(".", "_"))
        for name, value in zip(node.op.weight_names(), layer.get_weights()):
            if name in ("weight", "bias"):
                check(value, *expected(graph, node, name), f"keras {node.id}.{name}")
                count += 1
    for node, name, value in fixed(graph):
        weights = dict(zip(node.op.weight_names(), model.get_layer(node.id.replace(".", "_")).get_weights()))
        check(weights[name], value, 0.0, f"keras {node.id}.{name}")
        count += 1
    return count


RULES = """
archc: 1
name: rules
input: [64, 16, 16]
defaults:
  conv: {bias: true, init: {weight: {kaiming_normal: {mode: fan_out, nonlinearity: relu}}, bias: zeros}}
  batchnorm: {eps: 1.0e-5, momentum: 0.1, init: {weight: ones, bias: zeros}}
  dense: {init: {weight: {normal: {std: 0.01}}, bias: zeros}}
  conv_transpose: {init: {weight: xavier_normal, bias: {constant: 0.5}}}
blocks:
  unit:
    params: {gate: true}
    layers:
      - a: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: he_uniform, bias: {uniform: {a: -0.3, b: 0.1}}}}}
      - bn: {batchnorm: {init: {weight: zeros}}}
      - b: {conv: {filters: 64, kernel: 1, init: torch_default}, if: gate}
      - seq:
          - {conv: {filters: 64, kernel: 3, padding: 1, groups: 64, init: {weight: lecun_normal}}}
          - {batchnorm: {init: {bias: {constant: 0.25}}}}
      - g: {conv: {filters: 64, kernel: 3, padding: 1, groups: 16, init: {weight: {kaiming_normal: {mode: group_fan_out, nonlinearity: relu}}}}}
layers:
  - c1: {conv: {filters: 64, kernel: 3, padding: 1}}
  - c2: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: kaiming_uniform}}}
  - c3: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {kaiming_normal: {a: 0.2}}}}}
  - c4: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {kaiming_uniform: {mode: fan_out, nonlinearity: tanh}}}}}
  - c5: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {xavier_uniform: {gain: 2.0}}}}}
  - c6: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: xavier_normal, bias: torch_default}}}
  - c7: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: glorot_normal, bias: ones}}}
  - c8: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: he_normal}}}
  - c9: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: lecun_uniform}}}
  - c10: {conv: {filters: 64, kernel: [1, 3], padding: [0, 1], init: {weight: {variance_scaling: {scale: 0.5, mode: fan_avg, distribution: untruncated_normal}}}}}
  - c11: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {variance_scaling: {scale: 3.0, mode: fan_out, distribution: uniform}}}}}
  - c12: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {variance_scaling: {scale: 2.0, mode: fan_out}}}}}
  - c13: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {trunc_normal: {std: 0.02}}}}}
  - c14: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {trunc_normal: {mean: 0.1, std: 0.05, a: 0.0, b: 0.2}}}}}
  - c15: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {normal: {mean: -0.5, std: 0.2}}}}}
  - c16: {conv: {filters: 64, kernel: 3, padding: 1, init: {weight: {uniform: {a: 0, b: 1}}, bias: {constant: -2}}}}
  - c17: {conv: {filters: 64, kernel: 3, padding: 1, init: keras_default}}
  - c18: {conv: {filters: 64, kernel: 3, padding: 1, groups: 8, init: {weight: {kaiming_normal: {mode: fan_out}}}}}
  - c19: {conv: {filters: 64, kernel: 3, padding: 1, groups: 8, init: {weight: {kaiming_normal: {mode: group_fan_out, nonlinearity: relu}}}}}
  - c20: {conv: {filters: 64, kernel: 3, padding: 1, groups: 4, init: {weight: {kaiming_uniform: {mode: group_fan_out}}}}}
  - dw1: {depthwise_conv: {kernel: 3, padding: 1, bias: true}}
  - dw2: {depthwise_conv: {kernel: 3, padding: 1, bias: true, init: torch_default}}
  - dw3: {depthwise_conv: {kernel: 5, padding: 2, init: {weight: {variance_scaling: {scale: 2.0, mode: fan_in, distribution: truncated_normal}}}}}
  - dw4: {depthwise_conv: {kernel: 3, padding: 1, init: {weight: xavier_normal}}}
  - dw5: {depthwise_conv: {kernel: 3, padding: 1, init: {weight: {kaiming_uniform: {nonlinearity: relu}}}}}
  - bn1: batchnorm
  - bn2: {batchnorm: {init: keras_default}}
  - bn3: {batchnorm: {init: {weight: {uniform: {a: 0.5, b: 1.5}}, bias: {normal: {std: 0.1}}}}}
  - u1: {block: unit}
  - u2: {block: unit, with: {gate: false}}
  - up: {conv_transpose: {filters: 64, kernel: 2, stride: 2, bias: true}}
  - up2: {conv_transpose: {filters: 64, kernel: 4, stride: 2, padding: 1, bias: true, init: torch_default}}
  - pool: global_avgpool
  - bnf: {batchnorm: {init: {bias: {constant: 0.1}}}}
  - fc1: {dense: {units: 512}}
  - fc2: {dense: {units: 512, init: {weight: torch_default, bias: torch_default}}}
  - fc3: {dense: {units: 512, init: {weight: {kaiming_uniform: {mode: fan_out, nonlinearity: sigmoid}}}}}
  - fc4: {dense: {units: 512, init: {weight: {variance_scaling: {scale: 0.3333333333333333, mode: fan_out, distribution: uniform}}}}}
"""


@pytest.fixture(scope="module")
def rules_graph():
    return lower(load_spec_text(RULES))


def test_every_rule_draws_its_distribution_in_torch(rules_graph):
    torch.manual_seed(0)
    model = api.load_module(rules_graph, "torch").build_model()
    assert check_torch(rules_graph, model) > 60


def test_every_rule_draws_its_distribution_in_keras(rules_graph):
    keras.utils.set_random_seed(0)
    model = api.load_module(rules_graph, "keras").build_model()
    assert check_keras(rules_graph, model) > 60


def test_torch_shows_rules_as_torchvision_does(rules_graph):
    """One loop per kind, block kinds' own layers by isinstance, model layers by path."""
    source = api.compile(rules_graph, "torch")
    assert 'nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")' in source
    assert "for m in self.modules():\n            if isinstance(m, Unit):" in source
    assert "nn.init.zeros_(m.bn.weight)" in source
    assert "if m.b is not None:\n                    nn.init.kaiming_uniform_(m.b.weight, a=math.sqrt(5))" in source
    assert "nn.init.kaiming_uniform_(self.c2.weight)" in source
    assert "elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):" in source
    keras_source = api.compile(rules_graph, "keras")
    assert "CONV_KERNEL_INITIALIZER = {" in keras_source and 'kernel_initializer="he_normal"' in keras_source


@pytest.mark.parametrize(
    "rule, numel",
    [("{kaiming_normal: {mode: fan_out, nonlinearity: relu}}", 64 * 64 * 9), ("{normal: {std: 0.01}}", 64 * 64 * 9), ("kaiming_uniform", 64 * 64 * 9)],
)
def test_default_init_would_fail(rule, numel):
    """PyTorch's default initialisation of the same layer fails the check: the test has teeth."""
    graph = lower(load_spec_text(f"archc: 1\nname: one\ninput: [64, 8, 8]\ndefaults: {{conv: {{bias: false, init: {{weight: {rule}}}}}}}\nlayers:\n  - c: {{conv: {{filters: 64, kernel: 3}}}}\n"))
    (node,) = weighted(graph)
    torch.manual_seed(0)
    default = torch.nn.Conv2d(64, 64, 3, bias=False).weight.detach().numpy()
    assert default.size == numel
    with pytest.raises(AssertionError):
        check(default, *expected(graph, node, "weight"), "default")


# A representative per family in `make test`; the rest, and the large ones, in `make test-slow`.
FAST = {
    "specs/resnet18.yaml", "specs/squeezenet1_1.yaml", "specs/mobilenet_v3_small.yaml", "specs/mnasnet0_5.yaml",
    "specs/shufflenet_v2_x0_5.yaml", "specs/cifar/resnet20.yaml", "specs/cifar/densenet40_k12.yaml",
    "specs/cifar/keras_resnet20v1.yaml", "specs/densenet121.yaml", "specs/efficientnet_b0.yaml",
    "specs/regnet_y_400mf.yaml", "specs/convnext_tiny.yaml", "specs/keras/efficientnet_b0.yaml",
    "specs/keras/mobilenet_v2.yaml",
}  # fmt: skip


@pytest.mark.parametrize("spec", [pytest.param(s, marks=() if s in FAST else pytest.mark.slow) for s in sorted(ZOO)])
def test_zoo_models_draw_their_rules(spec):
    """The checked-in generated modules: every tensor of a fresh model, in both backends."""
    graph = graph_of(spec)
    name = graph.name
    torch.manual_seed(0)
    assert check_torch(graph, load_module(ROOT / "generated" / f"{name}_torch.py").build_model()) > 0
    keras.utils.set_random_seed(0)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000 if spec in DEEP else limit)  # Keras builds ResNet-1202 recursively
    try:
        model = load_module(ROOT / "generated" / f"{name}_keras.py").build_model()
    finally:
        sys.setrecursionlimit(limit)
    assert check_keras(graph, model) > 0


def test_every_zoo_spec_states_its_rules():
    """No zoo model leaves a weighted kind to the unstated default."""
    for spec in sorted(ZOO):
        graph = graph_of(spec)
        kinds = {n.op.kind for n in weighted(graph)}
        loaded = load_spec(ROOT / spec).model.defaults
        for kind in kinds:
            section = init.section(kind)  # a depthwise conv takes the convs' rules
            assert getattr(loaded, section).init is not None, f"{spec}: defaults.{section}.init is not stated"
        for node in graph.nodes:  # a layer scale states where it starts (1 would be the identity)
            if node.op.kind == "layer_scale":
                assert node.op.init_value != 1, f"{spec}: {node.id} states no init_value"


BAD = [
    ("defaults: {conv: {bias: false, init: {weight: {kaiming_normal: {mode: fan_avg}}}}}", "fan_avg"),
    ("defaults: {conv: {bias: true, init: {bias: kaiming_uniform}}}", "needs a tensor with fans"),
    ("defaults: {conv: {bias: false, init: {weight: {normal: {std: 0}}}}}", "must be > 0"),
    ("defaults: {conv: {bias: false, init: {weight: {uniform: {a: 1, b: -1}}}}}", "a < b"),
    ("defaults: {conv: {bias: false, init: {weight: {kaiming_normal: {a: 0.1, nonlinearity: relu}}}}}", "leaky_relu"),
    ("defaults: {conv: {bias: false, init: {weight: gaussian}}}", "got 'gaussian'"),
    ("defaults: {conv: {bias: false, init: {weight: {normal: {sd: 1}}}}}", "unknown key 'sd'"),
    ("defaults: {conv: {bias: false, init: {weight: {normal: {std: 1}, uniform: {a: 0, b: 1}}}}}", "an init rule is one of"),
    ("defaults: {conv: {bias: false, init: xavier}}", "Input should be 'torch_default' or 'keras_default'"),
]


@pytest.mark.parametrize("defaults, message", BAD)
def test_bad_rules_are_located_errors(defaults, message):
    text = f"archc: 1\nname: bad\ninput: [3, 8, 8]\n{defaults}\nlayers:\n  - c: {{conv: {{filters: 4, kernel: 3}}}}\n"
    with pytest.raises(SpecError) as e:
        lower(load_spec_text(text))
    assert message in str(e.value) and e.value.where is not None


def test_batchnorm_rule_must_be_fan_free():
    text = "archc: 1\nname: bad\ninput: [3, 8, 8]\ndefaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}\nlayers:\n  - c: {conv: {filters: 4, kernel: 3}}\n  - bn: {batchnorm: {init: {weight: he_normal}}}\n"
    with pytest.raises(SpecError, match="batch norm's weight"):
        lower(load_spec_text(text))


def test_keras_truncation_must_match():
    text = "archc: 1\nname: bad\ninput: [3, 8, 8]\ndefaults: {conv: {bias: false}}\nlayers:\n  - c: {conv: {filters: 4, kernel: 3, init: {weight: {trunc_normal: {std: 1.0, a: -3, b: 3}}}}}\n"
    graph = lower(load_spec_text(text))
    api.compile(graph, "torch")  # a Keras limit: the torch backend builds it, `archc check` reports it
    with pytest.raises(SpecError, match="TruncatedNormal cuts at 2 standard deviations") as e:
        api.compile(graph, "keras")
    assert e.value.where is not None


def test_keras_truncation_of_a_shortcut_rule_is_located():
    """A projection shortcut takes defaults.conv's rule: Keras' limit on it names that line."""
    text = (
        "archc: 1\nname: bad\ninput: [3, 8, 8]\n"
        "defaults:\n  conv: {bias: false, init: {weight: {trunc_normal: {std: 0.02, a: -0.05, b: 0.05}}}}\n"
        "  batchnorm: {eps: 1.0e-5, momentum: 0.1}\n"
        "blocks:\n  b:\n    params: {planes: int}\n    connectivity: skip\n"
        "    shortcut: {kind: projection, name: downsample, when: always}\n    layers:\n      - r: act\n"
        "layers:\n  - s: {block: b, with: {planes: 8}}\n  - g: global_avgpool\n"
    )
    graph = lower(load_spec_text(text, "sc.yaml"))
    with pytest.raises(SpecError, match="TruncatedNormal cuts at 2 standard deviations") as e:
        api.compile(graph, "keras")
    assert e.value.where is not None and (e.value.where.file, e.value.where.line) == ("sc.yaml", 5)


def test_fan_rules_written_out_where_keras_fans_differ(rules_graph, monkeypatch):
    """An op whose Keras kernel has other fans than its PyTorch weight (KERAS_FANS = False, a
    depthwise kernel) gets its fan rules with PyTorch's fans written out: the same draws."""
    from archc import ops

    for kind in ("conv", "dense", "conv_transpose"):
        monkeypatch.setattr(ops.KINDS[kind], "KERAS_FANS", False)
    source = api.compile(rules_graph, "keras")
    assert "keras.initializers.TruncatedNormal(" in source and "VarianceScaling" not in source.split("def build_model")[1]
    keras.utils.set_random_seed(0)
    model = api.load_module(rules_graph, "keras").build_model()
    assert check_keras(rules_graph, model) > 60


def test_depthwise_group_fan_out():
    """A depthwise conv has one group per channel: fan_out / groups is k * k, whether the rule
    is its own or inherited from defaults.conv (it once printed `None` into the Keras code)."""
    text = (
        "archc: 1\nname: dw\ninput: [8, 16, 16]\n"
        "defaults: {conv: {bias: false, init: {weight: {kaiming_normal: {mode: group_fan_out}}}}}\n"
        "layers:\n  - dw: {depthwise_conv: {kernel: 3, padding: 1}}\n"
        "  - dw2: {depthwise_conv: {kernel: 5, padding: 2, init: {weight: {kaiming_normal: {mode: group_fan_out}}}}}\n"
        "  - pool: global_avgpool\n"
    )
    graph = lower(load_spec_text(text))
    source = api.compile(graph, "keras")
    assert "stddev=math.sqrt(2.0 / 9)" in source and "stddev=math.sqrt(2.0 / 25)" in source and "None" not in source
    torch.manual_seed(0)
    assert check_torch(graph, api.load_module(graph, "torch").build_model()) > 0
    keras.utils.set_random_seed(0)
    assert check_keras(graph, api.load_module(graph, "keras").build_model()) > 0


# --- the printed forms (issue 21 §4): PyTorch's own calls, one branch per body, one Keras
# constant per config, no unexplained numbers ----------------------------------------------------

VARIANCE_SCALING = [
    (scale, mode, distribution)
    for scale in (1 / 3, 0.5, 1.0, 2.0, 3.0, 25 / 9)
    for mode in ("fan_in", "fan_out", "fan_avg")
    for distribution in ("uniform", "untruncated_normal")
]


def _torch_statements(rule, kind: str) -> str:
    from archc.code import render

    return "\n".join(line for code in init.torch_lines(rule, "weight", "m.weight", kind=kind) for line in render(code))


@pytest.mark.parametrize(
    "kind, make", [("conv", lambda: torch.nn.Conv2d(32, 48, (3, 5), groups=4)), ("dense", lambda: torch.nn.Linear(40, 24))]
)
def test_variance_scaling_prints_torch_calls_that_draw_the_helpers_values(kind, make):
    """Every variance-scaling rule PyTorch has a call for is printed as that call, with the fan
    read from the module (`m.out_features`, `m.weight[:, 0].numel()`), and draws from the same
    seed the values of the helper archc printed before (templates/torch/variance_scaling_.py.j2,
    Keras' formula with torch.nn.init's fans): the numerics are unchanged."""
    helper = {"math": math, "nn": torch.nn, "Tensor": torch.Tensor}
    exec((ROOT / "templates" / "torch" / f"{init.TORCH_HELPER}.py.j2").read_text(), helper)
    for scale, mode, distribution in VARIANCE_SCALING:
        rule = init.Rule("variance_scaling", (("scale", scale), ("mode", mode), ("distribution", distribution)))
        text = _torch_statements(rule, kind)
        assert init.TORCH_HELPER not in text and not init.torch_needs_helper(rule), text
        assert not re.search(r"\d\.\d{8}", text), text  # 25 / 9 prints as 25.0 / 9.0, not 2.7777777777777777
        module = make()
        torch.manual_seed(0)
        exec(text, {"m": module, "nn": torch.nn, "math": math})
        printed = module.weight.detach().clone()
        torch.manual_seed(0)
        helper[init.TORCH_HELPER](module.weight, scale, mode, distribution)
        assert torch.allclose(printed, module.weight.detach(), rtol=1e-5, atol=1e-8), (text, scale, mode, distribution)


def test_variance_scaling_reads_as_torchvision_writes_it():
    """EfficientNet's Linear: torchvision's `init_range = 1.0 / math.sqrt(m.out_features)`; a
    fan rule of a conv reads the fan from its weight, a Linear's bias back at PyTorch's default
    its in_features; Keras' truncated normal keeps the helper."""
    from archc.code import flat

    efficientnet = init.Rule("variance_scaling", (("scale", 1 / 3), ("mode", "fan_out"), ("distribution", "uniform")))
    assert _torch_statements(efficientnet, "dense") == (
        "init_range = 1.0 / math.sqrt(m.out_features)\nnn.init.uniform_(m.weight, -init_range, init_range)"
    )
    lecun = init.Rule("variance_scaling", (("scale", 1 / 3), ("mode", "fan_in"), ("distribution", "untruncated_normal")))
    assert _torch_statements(lecun, "conv") == "nn.init.normal_(m.weight, 0.0, math.sqrt(1.0 / 3.0 / m.weight[0].numel()))"
    avg = init.Rule("variance_scaling", (("scale", 0.25), ("mode", "fan_avg"), ("distribution", "uniform")))
    assert _torch_statements(avg, "conv") == "nn.init.xavier_uniform_(m.weight, gain=0.5)"
    keras_he = init.resolve("he_normal")  # truncated: no PyTorch call cuts at 2 deviations and rescales
    assert _torch_statements(keras_he, "conv") == 'variance_scaling_(m.weight, scale=2.0, mode="fan_in", distribution="truncated_normal")'
    assert init.torch_needs_helper(keras_he)
    bias = init.torch_lines(init.TORCH_DEFAULT, "bias", "self.fc.bias", weight="self.fc.weight", kind="dense")  # a layer back at PyTorch's bias
    assert [flat(code) for code in bias] == ["nn.init.uniform_(self.fc.bias, -1 / math.sqrt(self.fc.in_features), 1 / math.sqrt(self.fc.in_features))"]


def test_efficientnet_b0_classifier_bound_is_one_over_sqrt_out_features():
    """The checked-in efficientnet_b0 draws its classifier from uniform(+-1/sqrt(out_features)):
    1,280,000 values reach within 0.01% of the bound and never past it."""
    source = (ROOT / "generated" / "efficientnet_b0_torch.py").read_text()
    assert "init_range = 1.0 / math.sqrt(m.out_features)\n" in source and init.TORCH_HELPER not in source
    torch.manual_seed(0)
    weight = load_module(ROOT / "generated" / "efficientnet_b0_torch.py").build_model().classifier[1].weight
    bound = 1 / math.sqrt(weight.shape[0])
    assert weight.shape == (1000, 1280)
    assert bound * (1 - 1e-4) < weight.abs().max().item() <= bound


BRANCHES = """
archc: 1
name: branches
input: [16, 8, 8]
defaults:
  conv: {bias: true, init: {weight: {trunc_normal: {std: 0.02}}, bias: zeros}}
  batchnorm: {eps: 1.0e-5, momentum: 0.1, init: {weight: ones, bias: zeros}}
  dense: {init: {weight: DENSE, bias: zeros}}
layers:
  - c: {conv: {filters: 16, kernel: 3, padding: 1}}
  - bn: batchnorm
  - pool: global_avgpool
  - fc: {dense: {units: 10}}
"""


def test_one_branch_for_kinds_with_the_same_rules():
    """ConvNeXt's `isinstance(m, (nn.Conv2d, nn.Linear))`: kinds whose statements are the same
    share one branch; kinds whose statements differ keep their own. Both draw their rules."""
    same = lower(load_spec_text(BRANCHES.replace("DENSE", "{trunc_normal: {std: 0.02}}")))
    source = api.compile(same, "torch")
    assert "            if isinstance(m, (nn.Conv2d, nn.Linear)):\n" in source
    assert source.count("nn.init.trunc_normal_(") == 1 and "isinstance(m, nn.Linear)" not in source
    assert "            elif isinstance(m, nn.BatchNorm2d):\n" in source
    other = lower(load_spec_text(BRANCHES.replace("DENSE", "{normal: {std: 0.01}}")))
    source = api.compile(other, "torch")
    assert "if isinstance(m, nn.Conv2d):" in source and "elif isinstance(m, nn.Linear):" in source
    for graph in (same, other):
        torch.manual_seed(0)
        assert check_torch(graph, api.load_module(graph, "torch").build_model()) == 6
    convnext = (ROOT / "generated" / "convnext_tiny_torch.py").read_text()
    assert convnext.count("isinstance(m, ") == 1 and "if isinstance(m, (nn.Conv2d, nn.Linear)):" in convnext


def _constants(source: str) -> dict[str, str]:
    import ast

    return {n.targets[0].id: ast.dump(n.value) for n in ast.parse(source).body if isinstance(n, ast.Assign) and n.targets[0].id.endswith("_INITIALIZER")}


def test_one_keras_constant_per_initializer_config():
    """Kinds whose defaults give the same config share one constant, named after the argument
    (KERNEL_INITIALIZER); configs that differ keep their kind's names (keras.applications'
    CONV_KERNEL_INITIALIZER and DENSE_KERNEL_INITIALIZER). No generated module defines two
    constants with the same config."""
    rule = "{variance_scaling: {scale: 2.0, mode: fan_out, distribution: untruncated_normal}}"
    text = BRANCHES.replace("{trunc_normal: {std: 0.02}}", rule)
    same = api.compile(lower(load_spec_text(text.replace("DENSE", rule))), "keras")
    assert list(_constants(same)) == ["KERNEL_INITIALIZER"] and same.count("kernel_initializer=KERNEL_INITIALIZER") == 2
    other = api.compile(lower(load_spec_text(text.replace("DENSE", "{normal: {std: 0.01}}"))), "keras")
    assert list(_constants(other)) == ["CONV_KERNEL_INITIALIZER", "DENSE_KERNEL_INITIALIZER"]
    own = text.replace("DENSE", "{normal: {std: 0.01}}").replace("units: 10}", f"units: 10, init: {{weight: {rule}}}}}")
    assert list(_constants(api.compile(lower(load_spec_text(own)), "keras"))) == ["CONV_KERNEL_INITIALIZER"]  # the layer's own: that one
    for path in sorted((ROOT / "generated").glob("*_keras.py")):
        configs = list(_constants(path.read_text()).values())
        assert len(configs) == len(set(configs)), f"{path.name}: two initializer constants hold the same config"


def test_numbers_print_as_a_reader_writes_them():
    assert (init._g(1 / 3), init._f(1 / 3), init._f(-1 / 3), init._f(25 / 9)) == ("1 / 3", "1.0 / 3.0", "-1.0 / 3.0", "25.0 / 9.0")
    assert (init._g(0.1), init._g(0.02), init._g(2.0), init._f(2.0), init._f(0.5625)) == ("0.1", "0.02", "2", "2.0", "0.5625")
    assert init._g(math.pi) == repr(math.pi) and init._g(1e-06) == "1e-06"  # no small ratio: the number itself
    config = init.config_source(init.keras_initializer(init.resolve("torch_default"), "weight", "dense", "8"), "", "X = ")
    assert config[0].startswith("X = {") and '"scale": 1.0 / 3.0,' in "\n".join(config)


def test_no_unexplained_numbers_in_generated_init_code():
    """Init code in generated/ (Keras' initializer constants and calls, PyTorch's nn.init calls
    and helper calls, the statements of its init loops) holds no float whose repr is a long run
    of digits (`0.3333333333333333`): a ratio prints as the ratio (`1.0 / 3.0`)."""
    import ast

    def long_floats(node):
        return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, float) and len(repr(n.value)) > 10]

    for path in sorted((ROOT / "generated").glob("*.py")):
        tree = ast.parse(path.read_text())
        places = [n.value for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id.endswith("_INITIALIZER")]
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                if func.startswith(("nn.init.", "keras.initializers.", init.TORCH_HELPER, init.KERAS_HELPER)):
                    places.append(node)
            elif isinstance(node, ast.For) and ast.unparse(node.iter) == "self.modules()":
                places.append(node)
        found = [v for place in places for v in long_floats(place)]
        assert not found, f"{path.name}: {found}"
