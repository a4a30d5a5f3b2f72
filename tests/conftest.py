import functools
import importlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

ROOT = Path(__file__).resolve().parent.parent


def in_ci() -> bool:
    """CI runners set CI=true (.ci/run sets it too)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(what: str) -> None:
    """Something the test environments install (requirements-dev.txt; torchvision and timm:
    requirements-tvenv.txt) is absent. Locally the test skips; in CI it fails: a broken
    environment must not turn whole modules of skips into a green run."""
    if in_ci():
        pytest.fail(f"{what} is missing; CI installs it, so its tests must run (CI={os.environ['CI']})", pytrace=False)
    pytest.skip(f"{what} is not installed", allow_module_level=True)


def need(module: str):
    """The imported `module`, or `missing(...)` when it or a module it imports is not installed;
    use it instead of pytest.importorskip. Any other ImportError (a name that is not there, a
    missing archc module) is a bug and fails everywhere."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] == "archc":
            raise
        missing(f"{module} (no module named {e.name!r})")


def ruff_executable() -> str:
    """The ruff executable next to this interpreter or on PATH, or `missing("ruff")`."""
    found = shutil.which(str(Path(sys.executable).parent / "ruff")) or shutil.which("ruff")
    if found is None:
        missing("ruff")
    return found


def assert_ruff_clean(path: Path) -> None:
    """Generated code at `path` passes `ruff check` and `ruff format --check`."""
    ruff = ruff_executable()
    for args in (["check", "--no-cache", str(path)], ["format", "--check", "--no-cache", str(path)]):
        result = subprocess.run([ruff, *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr + path.read_text()

# spec -> (trainable, non-trainable or None). Trainable figures are the published ones
# (torchvision, the papers, the Keras example; see shared REFERENCE.md); the
# non-trainable figures are each model's BatchNorm channels x 2 (running mean and var),
# counted by hand from the architectures (e.g. densenet161: 109,968 BN channels; DenseNet-BC
# L=250 k=24: 128,988) and, for DenseNet-121/169/201 and ResNet-50, equal to keras.applications'
# total minus trainable; ResNeXt-50 and WRN-50-2 (68,224) match torchvision 0.29's buffers.
ZOO = {
    "specs/resnet18.yaml": (11_689_512, 9_600),
    "specs/resnet34.yaml": (21_797_672, 17_024),
    "specs/resnet50.yaml": (25_557_032, 53_120),
    "specs/resnet101.yaml": (44_549_160, 105_344),
    "specs/resnet152.yaml": (60_192_808, 151_424),
    "specs/resnext50_32x4d.yaml": (25_028_904, 68_224),
    "specs/wide_resnet50_2.yaml": (68_883_240, 68_224),
    "specs/squeezenet1_1.yaml": (1_235_496, 0),  # torchvision squeezenet1_1
    "specs/mobilenet_v2.yaml": (3_504_872, 34_112),  # torchvision mobilenet_v2
    "specs/mobilenet_v3_large.yaml": (5_483_032, 24_400),  # torchvision mobilenet_v3_large
    "specs/mobilenet_v3_small.yaml": (2_542_856, 12_112),  # torchvision mobilenet_v3_small
    "specs/mnasnet1_0.yaml": (4_383_312, 37_920),  # torchvision mnasnet1_0
    "specs/mnasnet0_5.yaml": (2_218_512, 20_624),  # torchvision mnasnet0_5
    "specs/regnet.yaml": (4_344_144, 27_152),  # the RegNet family spec; its defaults are regnet_y_400mf
    "specs/regnet_y_400mf.yaml": (4_344_144, 27_152),  # torchvision regnet_y_400mf
    "specs/regnet_x_400mf.yaml": (5_495_976, 37_856),  # torchvision regnet_x_400mf
    "specs/regnet_y_16gf.yaml": (83_590_140, 122_816),  # torchvision regnet_y_16gf
    "specs/efficientnet.yaml": (5_288_548, 42_016),  # the EfficientNet family spec; its defaults are B0
    "specs/efficientnet_b0.yaml": (5_288_548, 42_016),  # torchvision efficientnet_b0
    "specs/efficientnet_b4.yaml": (19_341_616, 125_200),  # torchvision efficientnet_b4
    "specs/efficientnet_b7.yaml": (66_347_960, 310_720),  # torchvision efficientnet_b7
    "specs/efficientnet_v2_s.yaml": (21_458_488, 153_872),  # torchvision efficientnet_v2_s
    "specs/googlenet.yaml": (6_624_904, 14_560),  # torchvision googlenet(aux_logits=False)
    "specs/timm/seresnet50.yaml": (28_088_024, 53_120),  # timm seresnet50
    "specs/repvgg_a0.yaml": (9_108_968, 23_648),  # timm repvgg_a0, training form: 11,824 BN channels
    "specs/timm/seresnext26d_32x4d.yaml": (16_809_512, 38_656),  # timm seresnext26d_32x4d
    "specs/timm/resnet50d.yaml": (25_576_264, 53_248),  # timm resnet50d
    "specs/unet.yaml": (31_037_698, 11_776),  # Ronneberger et al. 2015, same padding + BN, 3 -> 2 channels
    "specs/unet_recursive.yaml": (31_037_698, 11_776),  # the same U-Net, its levels one recursive block kind
    "specs/segmentation/fcn_resnet50.yaml": (32_957_013, 54_144),  # torchvision segmentation.fcn_resnet50(aux_loss=False)
    "specs/detection/resnet18_fpn.yaml": (13_783_616, 9_600),  # torchvision resnet_fpn_backbone("resnet18", BatchNorm2d)
    "specs/segmentation/lraspp_mobilenet_v3_large.yaml": (3_221_538, 24_656),  # torchvision segmentation.lraspp_mobilenet_v3_large
    "specs/segmentation/deeplabv3_resnet50.yaml": (39_638_869, 56_704),  # torchvision segmentation.deeplabv3_resnet50(aux_loss=False)
    "specs/segmentation/deeplabv3_mobilenet_v3_large.yaml": (11_025_477, 27_984),  # torchvision, aux_loss=False
    "specs/alexnet.yaml": (61_100_840, 0),  # torchvision alexnet
    "specs/squeezenet1_0.yaml": (1_248_424, 0),  # torchvision squeezenet1_0
    "specs/vgg.yaml": (138_357_544, 0),  # the VGG family spec at its defaults: VGG-16
    "specs/vgg16.yaml": (138_357_544, 0),  # torchvision vgg16
    "specs/vgg16_bn.yaml": (138_365_992, 8_448),  # torchvision vgg16_bn
    "specs/vgg19_bn.yaml": (143_678_248, 11_008),  # torchvision vgg19_bn
    "specs/shufflenet_v2.yaml": (2_278_604, 16_180),  # the family spec; its defaults are x1.0
    "specs/shufflenet_v2_x1_0.yaml": (2_278_604, 16_180),  # torchvision shufflenet_v2_x1_0
    "specs/shufflenet_v2_x0_5.yaml": (1_366_792, 7_952),  # torchvision shufflenet_v2_x0_5
    "specs/densenet121.yaml": (7_978_856, 83_648),
    "specs/densenet169.yaml": (14_149_480, 158_400),
    "specs/densenet201.yaml": (20_013_928, 229_056),
    "specs/densenet161.yaml": (28_681_000, 219_936),
    "specs/cifar/resnet.yaml": (269_722, 1_376),
    "specs/cifar/resnet20.yaml": (269_722, 1_376),
    "specs/cifar/resnet56.yaml": (853_018, 4_064),
    "specs/cifar/resnet110.yaml": (1_727_962, 8_096),
    "specs/cifar/resnet1202.yaml": (19_421_274, 89_632),  # the paper's 19.4M; see cifar_resnet_counts
    "specs/cifar/plain20.yaml": (269_722, 1_376),
    "specs/cifar/keras_resnet20v1.yaml": (273_066, 1_376),
    "specs/cifar/densenet40_k12.yaml": (1_019_722, 18_096),
    "specs/cifar/densenet_bc100_k12.yaml": (769_162, 23_988),
    "specs/cifar/densenet_bc250_k24.yaml": (15_324_406, 257_976),
    "specs/cifar/wrn28_10.yaml": (36_479_194, 17_952),  # the paper's 36.5M; 8,976 BN channels
    "specs/keras/resnet50v2.yaml": (25_568_360, 45_440),
    "specs/keras/resnet50.yaml": (25_583_592, 53_120),
    "specs/keras/densenet121.yaml": (7_978_856, 83_648),
    "specs/keras/vgg16.yaml": (138_357_544, 0),
    # keras.applications EfficientNetB0: torchvision's B0 counts + the input Normalization's
    # mean, variance (3 each) and count, non-trainable weights set by adapt()
    "specs/keras/efficientnet_b0.yaml": (5_288_548, 42_023),
    # torchvision inception_v3(aux_logits=False) at 299x299: 17,216 BN channels; keras.applications'
    # InceptionV3 learns no BN scale (scale=False), 17,216 parameters fewer.
    "specs/inception_v3.yaml": (23_834_568, 34_432),
    "specs/keras/inception_v3.yaml": (23_817_352, 34_432),
    "specs/convnext.yaml": (28_589_128, 0),  # the ConvNeXt family spec; its defaults are convnext_tiny
    "specs/convnext_tiny.yaml": (28_589_128, 0),  # torchvision convnext_tiny (layer norm: no statistics)
    "specs/convnext_small.yaml": (50_223_688, 0),  # torchvision convnext_small
    "specs/convnext_base.yaml": (88_591_464, 0),  # torchvision convnext_base
    "specs/keras/convnext_tiny.yaml": (28_589_128, 0),  # keras.applications ConvNeXtTiny
    # keras.applications MobileNetV2 (alpha 1.0): torchvision's mobilenet_v2 widths and so its
    # 17,056 BN channels, without the classifier dropout; the same 3,504,872 trainable.
    "specs/keras/mobilenet_v2.yaml": (3_504_872, 34_112),
    # M5 (Dai et al. 2017) at 128 channels, 1-D: 1,024 BN channels; the count is worked out in docs/spec.md's 'Tensor rank'
    "specs/audio/m5.yaml": (571_939, 2_048),
    "specs/video/r3d_18.yaml": (33_371_472, 9_600),  # torchvision r3d_18, 3-D: 4,800 BN channels as resnet18
}


def cifar_resnet_counts(n: int) -> tuple[int, int]:
    """Option-A CIFAR ResNet with n basic blocks per stage, counted in closed form:
    stem conv 3*16*9 + BN; stage 1: n blocks of two 16->16 3x3 convs + 2 BN; stages 2 and 3:
    a first block widening c->2c, then n-1 blocks at 2c; fc 64*10 + 10."""
    trainable, non_trainable = 3 * 16 * 9 + 2 * 16, 2 * 16
    c = 16
    for stage in range(3):
        out = 16 * 2**stage
        first = c * out * 9 + out * out * 9 + 4 * out
        trainable += first + (n - 1) * (2 * out * out * 9 + 4 * out)
        non_trainable += n * 4 * out
        c = out
    return trainable + 64 * 10 + 10, non_trainable


assert cifar_resnet_counts(3) == ZOO["specs/cifar/resnet20.yaml"]  # the formula reproduces the paper's table
assert cifar_resnet_counts(200) == ZOO["specs/cifar/resnet1202.yaml"]
# keras.applications count_params() (trainable + non-trainable), and the Keras CIFAR example.
KERAS_TOTALS = {
    "specs/keras/resnet50v2.yaml": 25_613_800,
    "specs/densenet121.yaml": 8_062_504,
    "specs/densenet169.yaml": 14_307_880,
    "specs/densenet201.yaml": 20_242_984,
    "specs/cifar/keras_resnet20v1.yaml": 274_442,
    "specs/keras/resnet50.yaml": 25_636_712,
    "specs/keras/densenet121.yaml": 8_062_504,
    "specs/keras/vgg16.yaml": 138_357_544,
    "specs/keras/inception_v3.yaml": 23_851_784,
    "specs/keras/efficientnet_b0.yaml": 5_330_571,
    "specs/keras/convnext_tiny.yaml": 28_589_128,
    "specs/keras/mobilenet_v2.yaml": 3_538_984,
}
# The zoo by family: specs whose generated code differs only in numbers (a family spec, the
# models that extend it, the sizes of one builder). The first spec of each family is its
# representative. Cheap checks (IR counts, PyTorch counts on the meta device, golden files)
# cover the whole zoo in `make test`; expensive per-model work (`archc verify`, torch.export,
# Keras builds, which create and initialise every weight, full-size forward passes) covers
# the representatives there and every spec in `make test-slow` (see `expensive`).
FAMILIES = {
    "resnet basic": ["specs/resnet18.yaml", "specs/resnet34.yaml"],
    "resnet bottleneck": [
        "specs/resnet50.yaml", "specs/resnet101.yaml", "specs/resnet152.yaml", "specs/resnext50_32x4d.yaml",
        "specs/wide_resnet50_2.yaml",
    ],
    "densenet": ["specs/densenet121.yaml", "specs/densenet161.yaml", "specs/densenet169.yaml", "specs/densenet201.yaml"],
    "cifar resnet": [
        "specs/cifar/resnet20.yaml", "specs/cifar/resnet.yaml", "specs/cifar/resnet56.yaml", "specs/cifar/resnet110.yaml",
        "specs/cifar/resnet1202.yaml",
    ],
    "cifar plain": ["specs/cifar/plain20.yaml"],
    "cifar keras resnet": ["specs/cifar/keras_resnet20v1.yaml"],
    "cifar densenet": ["specs/cifar/densenet40_k12.yaml"],
    "cifar densenet-bc": ["specs/cifar/densenet_bc100_k12.yaml", "specs/cifar/densenet_bc250_k24.yaml"],
    "cifar wide resnet": ["specs/cifar/wrn28_10.yaml"],
    "squeezenet": ["specs/squeezenet1_1.yaml", "specs/squeezenet1_0.yaml"],
    "alexnet": ["specs/alexnet.yaml"],
    "vgg": ["specs/vgg16_bn.yaml", "specs/vgg.yaml", "specs/vgg16.yaml", "specs/vgg19_bn.yaml"],
    "mobilenet_v2": ["specs/mobilenet_v2.yaml"],
    "mobilenet_v3": ["specs/mobilenet_v3_large.yaml", "specs/mobilenet_v3_small.yaml"],
    "mnasnet": ["specs/mnasnet1_0.yaml", "specs/mnasnet0_5.yaml"],
    "shufflenet_v2": ["specs/shufflenet_v2_x1_0.yaml", "specs/shufflenet_v2.yaml", "specs/shufflenet_v2_x0_5.yaml"],
    "googlenet": ["specs/googlenet.yaml"],
    "inception_v3": ["specs/inception_v3.yaml"],
    "efficientnet": [
        "specs/efficientnet_b0.yaml", "specs/efficientnet.yaml", "specs/efficientnet_b4.yaml", "specs/efficientnet_b7.yaml",
    ],
    "efficientnet_v2": ["specs/efficientnet_v2_s.yaml"],
    "regnet": ["specs/regnet_y_400mf.yaml", "specs/regnet.yaml", "specs/regnet_x_400mf.yaml", "specs/regnet_y_16gf.yaml"],
    "convnext": ["specs/convnext_tiny.yaml", "specs/convnext.yaml", "specs/convnext_small.yaml", "specs/convnext_base.yaml"],
    "seresnet": ["specs/timm/seresnet50.yaml"],
    "repvgg": ["specs/repvgg_a0.yaml"],
    "timm resnet options": ["specs/timm/seresnext26d_32x4d.yaml", "specs/timm/resnet50d.yaml"],
    "unet": ["specs/unet.yaml", "specs/unet_recursive.yaml"],
    "segmentation resnet": ["specs/segmentation/deeplabv3_resnet50.yaml", "specs/segmentation/fcn_resnet50.yaml"],
    "detection fpn": ["specs/detection/resnet18_fpn.yaml"],
    "segmentation mobilenet_v3": ["specs/segmentation/deeplabv3_mobilenet_v3_large.yaml"],
    "segmentation lraspp": ["specs/segmentation/lraspp_mobilenet_v3_large.yaml"],
    "keras resnet50": ["specs/keras/resnet50.yaml"],
    "keras resnet50v2": ["specs/keras/resnet50v2.yaml"],
    "keras densenet121": ["specs/keras/densenet121.yaml"],
    "keras vgg16": ["specs/keras/vgg16.yaml"],
    "keras inception_v3": ["specs/keras/inception_v3.yaml"],
    "keras mobilenet_v2": ["specs/keras/mobilenet_v2.yaml"],
    "keras efficientnet_b0": ["specs/keras/efficientnet_b0.yaml"],
    "keras convnext_tiny": ["specs/keras/convnext_tiny.yaml"],
    "m5 (1-D)": ["specs/audio/m5.yaml"],
    "r3d (3-D)": ["specs/video/r3d_18.yaml"],
}  # fmt: skip
REPRESENTATIVES = {members[0] for members in FAMILIES.values()}
# Representatives whose Keras forward pass at full size runs elsewhere (test_keras_applications).
KERAS_FORWARD_ELSEWHERE = {"specs/keras/vgg16.yaml", "specs/keras/inception_v3.yaml", "specs/keras/convnext_tiny.yaml"}


def per_family(names, fast=(), folder="specs"):
    """pytest parameters for expensive per-model work named by model (`resnet50`: the spec
    FOLDER/resnet50.yaml): each family's representative and `fast` in `make test`, the others
    marked slow."""
    return [n if f"{folder}/{n}.yaml" in REPRESENTATIVES or n in fast else pytest.param(n, marks=pytest.mark.slow) for n in names]


def expensive(specs):
    """pytest parameters for expensive per-model work: the representatives run in `make test`,
    the other family members are marked slow (`make test-slow`)."""
    return [s if s in REPRESENTATIVES else pytest.param(s, marks=pytest.mark.slow) for s in sorted(specs)]


# Deep enough that Keras needs minutes and a raised recursion limit to build it: `make test-slow`.
DEEP = {"specs/cifar/resnet1202.yaml"}
# Dense prediction specs: their INPUT_SHAPE is the reference's evaluation size (520 x 520),
# where a pass costs tens of GMACs; the suite's per-model work runs them at this size instead,
# which is not a multiple of their output stride (every layer is size-agnostic; the parity
# tests run the spec's own size with `make test-slow`).
TEST_INPUT = {
    "specs/segmentation/fcn_resnet50.yaml": (3, 97, 129),
    "specs/segmentation/deeplabv3_resnet50.yaml": (3, 97, 129),
    "specs/segmentation/deeplabv3_mobilenet_v3_large.yaml": (3, 97, 129),
    "specs/segmentation/lraspp_mobilenet_v3_large.yaml": (3, 97, 129),
}


def suite_input(spec, module):
    """The input shape (C, H, W) the suite runs `spec`'s generated `module` at."""
    return TEST_INPUT.get(spec, module.INPUT_SHAPE)


def suite_graph(spec):
    """The IR of `spec` at the input the suite runs it at (see TEST_INPUT)."""
    if spec not in TEST_INPUT:
        return graph_of(spec)
    return graph_of(spec, "input=" + json.dumps(list(TEST_INPUT[spec])))


def each_output(result):
    """A model's result as a list of tensors: its dict's values in order, or the tensor."""
    return list(result.values()) if isinstance(result, dict) else [result]
# The CIFAR ResNet family from one spec (specs/cifar/resnet.yaml --set params.depth=N):
# the paper's Table 6 sizes, exact for option A shortcuts.
CIFAR_RESNETS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@functools.cache
def graph_of(spec: str, *overrides: str):
    """The IR of a spec in the repository (a path relative to it) under `--set` overrides,
    lowered once per test process: the IR is immutable, and lowering the zoo is the suite's
    most repeated work."""
    from archc.lower import lower
    from archc.spec.loader import load_spec

    return lower(load_spec(ROOT / spec, list(overrides)))


def calibrate_batchnorm(model, input_shape) -> None:
    """Running statistics measured on one random batch (train mode, momentum None: a plain
    average), then eval mode. At the reference initialisation (mean 0, variance 1) eval-mode
    BatchNorm normalises nothing and a deep ResNet's activations grow block by block (ResNet-1202
    overflows to inf, then NaN); with measured statistics they stay O(1), so a comparison of two
    runs of the model compares numbers. Other layers keep their initialisation."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.train()(torch.randn(2, *input_shape, generator=generator))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def forward_statements(code: str, cls: str) -> list[str]:
    """The statements of `cls.forward` in generated code (an `if`'s body, not the `if`), each
    as ast.unparse writes it: `out += x`, `out = identity + out`."""
    import ast

    tree = ast.parse(code)
    klass = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    forward = next(n for n in klass.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    return [ast.unparse(n).split("\n")[0] for n in ast.walk(forward) if isinstance(n, ast.stmt) and not isinstance(n, ast.If)]


def load_module(path: Path):
    name = f"archc_test_{path.stem}_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
