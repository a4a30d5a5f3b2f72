"""Class names the spec spells (`class:`): the zoo's generated PyTorch classes are torchvision's,
at the same module paths; a family's `--set` build keeps the family's class; a `class:` is
checked where it is written; Keras' block functions keep the kind's name."""

import ast

import pytest
from click.testing import CliRunner
from conftest import ROOT, graph_of, load_module, need

from archc.cli import main

# torchvision 0.29.1's class at a module path of each model (None: the model itself), read from
# torchvision/models/<file>: efficientnet.py (MBConv, FusedMBConv; Conv2dNormActivation and
# SqueezeExcitation from ops/misc.py), convnext.py (CNBlock), regnet.py (ResBottleneckBlock,
# BottleneckTransform), mobilenetv2.py / mobilenetv3.py (InvertedResidual), resnet.py
# (BasicBlock, Bottleneck), densenet.py (_DenseLayer, _Transition), inception.py (InceptionA-E,
# BasicConv2d), googlenet.py (Inception), squeezenet.py (Fire), shufflenetv2.py
# (InvertedResidual), mnasnet.py (_InvertedResidual), video/resnet.py (BasicBlock),
# segmentation/deeplabv3.py (ASPP, ASPPConv, ASPPPooling), fcn.py (FCNHead), lraspp.py (LRASPPHead).
# tests/test_torchvision.py (run in .tvenv) checks this table against torchvision itself.
TORCHVISION = {
    "efficientnet_b0": ("efficientnet_b0", {
        None: "EfficientNet", "features.0": "Conv2dNormActivation", "features.1.0": "MBConv",
        "features.1.0.block.1": "SqueezeExcitation", "features.2.0.block.0": "Conv2dNormActivation",
    }),
    "efficientnet_v2_s": ("efficientnet_v2_s", {None: "EfficientNet", "features.1.0": "FusedMBConv", "features.4.0": "MBConv"}),
    "convnext_tiny": ("convnext_tiny", {None: "ConvNeXt", "features.0": "Conv2dNormActivation", "features.1.0": "CNBlock"}),
    "regnet_y_400mf": ("regnet_y_400mf", {
        None: "RegNet", "trunk_output.block1.block1-0": "ResBottleneckBlock", "trunk_output.block1.block1-0.f": "BottleneckTransform",
        "trunk_output.block1.block1-0.f.a": "Conv2dNormActivation", "trunk_output.block1.block1-0.f.se": "SqueezeExcitation",
    }),
    "regnet_x_400mf": ("regnet_x_400mf", {None: "RegNet", "trunk_output.block2.block2-0": "ResBottleneckBlock"}),
    "mobilenet_v3_large": ("mobilenet_v3_large", {
        None: "MobileNetV3", "features.0": "Conv2dNormActivation", "features.1": "InvertedResidual",
        "features.4.block.2": "SqueezeExcitation",
    }),
    "mobilenet_v3_small": ("mobilenet_v3_small", {None: "MobileNetV3", "features.1": "InvertedResidual"}),
    "mobilenet_v2": ("mobilenet_v2", {None: "MobileNetV2", "features.0": "Conv2dNormActivation", "features.2": "InvertedResidual"}),
    "resnet18": ("resnet18", {None: "ResNet", "layer1.0": "BasicBlock"}),
    "resnet50": ("resnet50", {None: "ResNet", "layer1.0": "Bottleneck"}),
    "resnext50_32x4d": ("resnext50_32x4d", {None: "ResNet", "layer4.2": "Bottleneck"}),
    "densenet121": ("densenet121", {
        None: "DenseNet", "features.denseblock1.denselayer1": "_DenseLayer", "features.transition1": "_Transition",
    }),
    "inception_v3": ("inception_v3", {
        None: "Inception3", "Conv2d_1a_3x3": "BasicConv2d", "Mixed_5b": "InceptionA", "Mixed_6a": "InceptionB",
        "Mixed_6b": "InceptionC", "Mixed_7a": "InceptionD", "Mixed_7b": "InceptionE",
    }),
    "googlenet": ("googlenet", {None: "GoogLeNet", "conv1": "BasicConv2d", "inception3a": "Inception"}),
    "squeezenet1_0": ("squeezenet1_0", {None: "SqueezeNet", "features.3": "Fire"}),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {None: "ShuffleNetV2", "stage2.0": "InvertedResidual"}),
    "mnasnet1_0": ("mnasnet1_0", {None: "MNASNet", "layers.8.0": "_InvertedResidual"}),
    "alexnet": ("alexnet", {None: "AlexNet"}),
    "vgg16": ("vgg16", {None: "VGG"}),
    "video/r3d_18": ("r3d_18", {None: "VideoResNet", "layer1.0": "BasicBlock"}),
    "segmentation/deeplabv3_resnet50": ("deeplabv3_resnet50", {
        None: "DeepLabV3", "classifier.0": "ASPP", "classifier.0.convs.1": "ASPPConv", "classifier.0.convs.4": "ASPPPooling",
    }),
    "segmentation/deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", {None: "DeepLabV3", "classifier.0": "ASPP"}),
    "segmentation/fcn_resnet50": ("fcn_resnet50", {None: "FCN", "classifier": "FCNHead"}),
    "segmentation/lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", {None: "LRASPP", "classifier": "LRASPPHead"}),
}  # fmt: skip


def class_at(model, path):
    return type(model if path is None else model.get_submodule(path)).__name__


@pytest.mark.parametrize("spec", sorted(TORCHVISION))
def test_generated_classes_are_torchvision(spec):
    torch = need("torch")
    generated = ROOT / "generated" / f"{graph_of(f'specs/{spec}.yaml').name}_torch.py"
    with torch.device("meta"):
        model = load_module(generated).build_model()
    for path, expected in TORCHVISION[spec][1].items():
        assert class_at(model, path) == expected, (spec, path)


def defined(source: str) -> tuple[list[str], list[str]]:
    """The classes and functions a generated module defines, in order."""
    body = ast.parse(source).body
    return [n.name for n in body if isinstance(n, ast.ClassDef)], [n.name for n in body if isinstance(n, ast.FunctionDef)]


@pytest.mark.parametrize(("spec", "overrides", "family"), [
    ("specs/efficientnet_b0.yaml", ["params.width_mult=1.1", "params.depth_mult=1.2"], "EfficientNet"),  # efficientnet_b2
    ("specs/regnet_y_400mf.yaml", ["params.depth=16", "params.w_0=56", "params.w_a=35.73", "params.w_m=2.28",
                                   "params.group_width=16", "params.se_ratio=0"], "RegNet"),  # regnet_x_800mf
    ("specs/mobilenet_v3_large.yaml", ["params.width_mult=1.3"], "MobileNetV3"),
])  # fmt: skip
def test_family_member_built_with_set_keeps_the_family_class(spec, overrides, family, tmp_path):
    """A `--set` build of a member is named after the family, not after the member it no longer is."""
    out = tmp_path / "model.py"
    args = ["build", spec, "--backend", "torch", "-o", str(out)]
    for o in overrides:
        args += ["--set", o]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    classes, _ = defined(out.read_text())
    member = graph_of(spec).name
    assert classes[-1] == family
    assert not any(c.lower() == member.replace("_", "") for c in classes), classes


SPEC = """\
archc: 1
name: tiny
{model_class}input: [3, 32, 32]
defaults: {{conv: {{bias: false}}}}
blocks:
  mb_conv:
{block_class}    params: {{filters: int}}
    layers: [{{conv: {{conv: {{filters: filters, kernel: 1}}}}}}]
layers:
  - b1: {{block: mb_conv, with: {{filters: 8}}}}
"""


def build(tmp_path, backend, model_class="", block_class=""):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(model_class=model_class, block_class=block_class))
    out = tmp_path / f"tiny_{backend}.py"
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", backend, "-o", str(out)])
    return result, out


def test_spelled_and_derived_class_names(tmp_path):
    result, out = build(tmp_path, "torch")
    assert result.exit_code == 0, result.output
    assert defined(out.read_text()) == (["MbConv", "Tiny"], ["build_model"])
    result, out = build(tmp_path, "torch", "class: TinyNet\n", "    class: _MBConv\n")
    assert result.exit_code == 0, result.output
    source = out.read_text()
    assert defined(source) == (["_MBConv", "TinyNet"], ["build_model"])
    assert "self.b1 = _MBConv(3, filters=8)" in source and "def build_model() -> TinyNet:" in source
    torch = need("torch")
    model = load_module(out).build_model()
    assert type(model).__name__ == "TinyNet" and type(model.b1).__name__ == "_MBConv"
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 8, 32, 32)


def test_keras_function_names_keep_the_kind_name(tmp_path):
    """`class:` is PyTorch's: the Keras module is the same with it or without it."""
    _, plain = build(tmp_path, "keras")
    plain_source = plain.read_text()
    result, spelled = build(tmp_path, "keras", "class: TinyNet\n", "    class: MBConv\n")
    assert result.exit_code == 0, result.output
    _, functions = defined(spelled.read_text())
    assert "mb_conv" in functions and "MBConv" not in spelled.read_text()
    strip = [line for line in plain_source.splitlines() if not line.startswith("spec sha256")]
    assert strip == [line for line in spelled.read_text().splitlines() if not line.startswith("spec sha256")]


@pytest.mark.parametrize(("model_class", "block_class", "line", "message"), [
    ("", "    class: mbConv\n", 7, "must start with a capital letter"),
    ("", "    class: __MBConv\n", 7, "starts with two underscores"),
    ("", "    class: MB.Conv\n", 7, "is not a Python class name"),
    ("", "    class: None\n", 7, "is used by the generated code"),
    ("class: OrderedDict\n", "", 3, "is used by the generated code"),
    ("class: StochasticDepth\n", "", 3, "becomes class StochasticDepth in PyTorch, a name already used by the generated module"),
    ("class: Tiny\n", "    class: Tiny\n", 8, "a name already used by model 'tiny'"),
    ("", "    class: Permute\n", 7, "a name already used by the generated module"),
    ("", "    class: Iterator\n", 7, "a name already used by the generated module"),
])  # fmt: skip
def test_bad_class_is_refused_at_its_field(tmp_path, model_class, block_class, line, message):
    result, out = build(tmp_path, "torch", model_class, block_class)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"archc: error: {tmp_path / 'tiny.yaml'}:{line}:"), result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_block_class_may_not_clash_with_a_param(tmp_path):
    """A parameter named like a spelled class would shadow it in the constructor."""
    spec = tmp_path / "tiny.yaml"
    spec.write_text(SPEC.format(model_class="", block_class="    class: MBConv\n").replace("filters: int", "filters: int, MBConv: 1"))
    result = CliRunner().invoke(main, ["check", str(spec)])
    assert result.exit_code == 2 and "would shadow a class or function" in result.stderr, result.output
