"""The torchvision-layout zoo models are torchvision's: the same state_dict keys and shapes,
torchvision's weights load strictly, and with them (BatchNorm statistics randomised) the
outputs agree. Needs torchvision, which the dev environment leaves out; run with
`make test-torchvision` (see the README)."""

import pytest
from conftest import ROOT, forward_statements, graph_of, load_module, need, per_family
from test_class_names import TORCHVISION as CLASS_TABLE
from test_class_names import class_at

torch = need("torch")
torchvision = need("torchvision")

MODELS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2",
    "densenet121", "densenet161", "densenet169", "densenet201", "squeezenet1_1", "mobilenet_v2",
    "googlenet", "alexnet", "vgg16", "vgg16_bn", "vgg19_bn", "squeezenet1_0",
    "shufflenet_v2_x1_0", "shufflenet_v2_x0_5", "inception_v3",
    "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet1_0", "mnasnet0_5",
    "regnet_x_400mf", "regnet_y_400mf", "regnet_y_16gf",
    "efficientnet_b0", "efficientnet_b4", "efficientnet_b7", "efficientnet_v2_s",
    "convnext_tiny",
]
# Constructor arguments of the reference where its defaults are not the spec's model.
KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},  # transform_input stays False without weights
}  # fmt: skip
# Outputs compared at a smaller input than the spec's where the spec's takes seconds per pass
# (V2-S at 384x384; RegNet-Y-16GF, whose last stage then sees 2x2 maps; every layer is
# size-agnostic). EfficientNet-B4 and -B7 (32 and 55 blocks) take over 10 s even at 64x64 on
# 2 cores: their state_dicts load strictly, outputs unchecked; the same generated code runs
# with other numbers for B0 and, under --set, B2 (FAMILY).
TEST_INPUT = {
    "efficientnet_b4": None,
    "efficientnet_b7": None,
    "efficientnet_v2_s": (3, 64, 64),
    "efficientnet_b2": (3, 64, 64),
    "regnet_y_16gf": (3, 64, 64),
}  # fmt: skip


def randomize_batchnorm(model, input_shape):
    """Random gamma and beta; running statistics measured on a random batch, then perturbed
    per channel (so activations stay O(1) however deep the model is). Layer norms get a
    random weight and bias too, and ConvNeXt's layer scales random values instead of their
    1e-6 start (which would hide every block's branch)."""
    norms = [m for m in model.modules() if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d))]
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        for key, p in model.named_parameters():
            if key.endswith("layer_scale"):
                p.uniform_(0.1, 1.0)
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
            m.reset_running_stats()
            m.momentum = None  # a plain average: one batch sets the statistics
        model.train()(torch.randn(2, *input_shape))
        for m in norms:
            m.momentum = 0.1
            m.running_mean.add_(0.25 * m.running_var.sqrt() * torch.randn_like(m.running_mean))
            m.running_var.mul_(torch.rand_like(m.running_var) * 1.5 + 0.5)
    model.eval()


def assert_same_model(reference, name: str) -> None:
    """The generated module `name` is the reference (see `assert_same`)."""
    assert_same(reference, load_module(ROOT / "generated" / f"{name}_torch.py"), TEST_INPUT.get(name, ()))


# Each family's representative (conftest.FAMILIES) in make test, the other members in make test-slow.
@pytest.mark.parametrize("name", per_family([m for m in MODELS if (ROOT / "specs" / f"{m}.yaml").exists()]))
def test_matches_torchvision(name):
    torch.manual_seed(0)
    assert_same_model(getattr(torchvision.models, name)(weights=None, **KWARGS.get(name, {})), name)


# r3d_18's stride is 16 in height and width and 8 in time: (9, 75, 75) is a multiple of neither,
# so every strided conv rounds down (as torchvision's does), and the pooled map is not 1x1x1.
@pytest.mark.parametrize("input_shape", [(), (3, 9, 75, 75)], ids=["INPUT_SHAPE", "9x75x75"])
def test_r3d_18_matches_torchvision(input_shape):
    """specs/video/r3d_18.yaml, a 3-D model (input (C, D, H, W)), is torchvision.models.video.r3d_18:
    its state_dict loads strictly and gives the same outputs."""
    torch.manual_seed(0)
    module = load_module(ROOT / "generated" / "r3d_18_torch.py")
    assert module.INPUT_SHAPE == (3, 16, 112, 112)
    assert_same(torchvision.models.video.r3d_18(weights=None), module, input_shape)


def test_r3d_18_init_matches_torchvision():
    torch.manual_seed(0)
    reference = torchvision.models.video.r3d_18(weights=None)
    assert_same_init(reference, load_module(ROOT / "generated" / "r3d_18_torch.py").build_model())


@pytest.mark.parametrize("name", ["convnext_small", "convnext_base"])
def test_convnext_siblings_load_torchvision(name):
    """convnext_small and convnext_base differ from convnext_tiny (compared in full above)
    only in depths, widths and stochastic depth rates: their state_dicts are torchvision's
    and load strictly (no forward pass, which takes half a minute each on two cores: both are
    built on the meta device, names and shapes without storage), and every block's rate is
    torchvision's."""
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
        ours = load_module(ROOT / "generated" / f"{name}_torch.py").build_model()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in reference.state_dict().items()}
    ours.load_state_dict(reference.state_dict(), strict=True)

    def rates(model):
        return [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"]

    assert rates(ours) == rates(reference) and len(set(rates(ours))) > 1


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_b4", "efficientnet_b7", "convnext_small", "convnext_base"])
def test_large_family_members_match_torchvision(name):
    """The members above whose outputs `make test` leaves unchecked (a forward pass takes
    10-30 s each on two cores): strict load and equal outputs at 64x64 (every layer is
    size-agnostic; the last stage sees 2x2 maps)."""
    torch.manual_seed(0)
    assert_same(getattr(torchvision.models, name)(weights=None), load_module(ROOT / "generated" / f"{name}_torch.py"), (3, 64, 64))


def assert_same_init(reference, ours) -> None:
    """Two freshly built models draw every tensor alike: the reference's constants (BatchNorm's
    ones and zeros, zero biases, zero-initialised residual weights) exactly; its random tensors
    by standard deviation and mean, within 5 standard errors of the difference, so that large
    tensors make it tight."""
    mine = ours.state_dict()
    for key, theirs in reference.state_dict().items():
        got = mine[key].double().flatten()
        theirs = theirs.double().flatten()
        if theirs.min() == theirs.max():
            assert torch.equal(got, theirs), f"{key}: expected the constant {theirs[0].item()}"
            continue
        n, std = theirs.numel(), theirs.std(unbiased=False).item()
        assert abs(got.std(unbiased=False).item() / std - 1) < 5 / n**0.5, f"{key}: std {got.std().item():.6g}, reference {std:.6g} (n={n})"
        assert abs(got.mean().item() - theirs.mean().item()) < 5 * 2**0.5 * std / n**0.5, f"{key}: mean"


# One or two per family in `make test` (grouped convs, overrides, every rule); the rest in `make test-slow`.
INIT_FAST = {
    "resnet18", "resnext50_32x4d", "densenet121", "squeezenet1_0", "squeezenet1_1", "mobilenet_v2",
    "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "googlenet", "efficientnet_b0",
    "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny",
}  # fmt: skip
# Zoo models whose initialisation only is compared here (their outputs: the family's representative).
INIT_ONLY = ["convnext_small", "convnext_base"]


@pytest.mark.parametrize(
    "name",
    [pytest.param(m, marks=() if m in INIT_FAST else pytest.mark.slow) for m in MODELS + INIT_ONLY if (ROOT / "specs" / f"{m}.yaml").exists()],
)
def test_init_matches_torchvision(name):
    """A freshly built generated model initialises as torchvision's freshly built one."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None, **KWARGS.get(name, {}))
    assert_same_init(reference, load_module(ROOT / "generated" / f"{name}_torch.py").build_model())


@pytest.mark.parametrize("name", ["efficientnet_b0", "convnext_tiny"])
def test_seeded_init_draws_torchvisions_values(name):
    """From the same seed, the generated model draws torchvision's very values: its init code
    (EfficientNet's `init_range = 1.0 / math.sqrt(m.out_features)`, ConvNeXt's one branch for
    nn.Conv2d and nn.Linear) draws from the same distributions, in the same order."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None).state_dict()
    torch.manual_seed(0)
    ours = load_module(ROOT / "generated" / f"{name}_torch.py").build_model().state_dict()
    assert list(ours) == list(reference)
    assert [key for key, value in reference.items() if not torch.equal(ours[key], value)] == []


# Family specs under --set: the members of torchvision's builders that have no spec file.
FAMILY = {
    "vgg11": ("vgg.yaml", ["params.depth=11"]),
    "vgg13_bn": ("vgg.yaml", ["params.depth=13", "params.batch_norm=true"]),
    "vgg19": ("vgg.yaml", ["params.depth=19"]),
    # torchvision's regnet_x_800mf / regnet_y_800mf: BlockParams.from_init_params arguments
    "regnet_x_800mf": ("regnet.yaml", ["params.depth=16", "params.w_0=56", "params.w_a=35.73", "params.w_m=2.28", "params.group_width=16", "params.se_ratio=0"]),
    "regnet_y_800mf": ("regnet.yaml", ["params.depth=14", "params.w_0=56", "params.w_a=38.84", "params.w_m=2.4", "params.group_width=16"]),
    "efficientnet_b2": ("efficientnet.yaml", ["params.width_mult=1.1", "params.depth_mult=1.2", "params.dropout=0.3"]),
}


# one per family spec in make test (VGG with batch norm, RegNetY, EfficientNet's scaling), the rest in make test-slow
@pytest.mark.parametrize("name", per_family(sorted(FAMILY), fast={"vgg13_bn", "regnet_y_800mf", "efficientnet_b2"}))
def test_family_member_matches_torchvision(name):
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec

    spec, sets = FAMILY[name]
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)
    assert_same(reference, api.load_module(lower(load_spec(ROOT / "specs" / spec, sets)), "torch"), TEST_INPUT.get(name, ()))


# A family spec with `--set` is torchvision's builder with the same arguments.
# one per family spec in make test, the rest in make test-slow
SLOW = pytest.mark.slow
VARIANTS = [
    pytest.param("mobilenet_v3_large", ["params.width_mult=0.75"], "mobilenet_v3_large", {"width_mult": 0.75}, marks=SLOW),
    ("mobilenet_v3_large", ["params.reduced_tail=true", "params.dilated=true"], "mobilenet_v3_large", {"reduced_tail": True, "dilated": True}),
    pytest.param("mobilenet_v3_small", ["params.width_mult=1.25", "params.reduced_tail=true"], "mobilenet_v3_small", {"width_mult": 1.25, "reduced_tail": True}, marks=SLOW),
    ("mnasnet1_0", ["params.alpha=0.75"], "mnasnet0_75", {}),
    pytest.param("mnasnet1_0", ["params.alpha=1.3"], "mnasnet1_3", {}, marks=SLOW),
]  # fmt: skip


@pytest.mark.parametrize("spec, overrides, name, kwargs", VARIANTS)
def test_family_arguments_match_torchvision(spec, overrides, name, kwargs):
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec

    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None, **kwargs)
    assert_same(reference, api.load_module(lower(load_spec(ROOT / "specs" / f"{spec}.yaml", overrides)), "torch"))


def test_make_divisible_is_torchvisions():
    from torchvision.models._utils import _make_divisible
    from torchvision.models.mnasnet import _round_to_multiple_of

    from archc.spec.expr import make_divisible

    for channels in range(1, 1500, 3):
        for mult in (0.25, 0.35, 0.5, 0.75, 1.0, 1.3, 2.0):
            v = channels * mult
            assert make_divisible(v, 8) == _make_divisible(v, 8) == _round_to_multiple_of(v, 8), v
            for divisor, minimum in ((4, None), (16, None), (8, 16), (3, 7)):
                assert make_divisible(v, divisor, minimum) == _make_divisible(v, divisor, minimum), (v, divisor)


SUMS = [  # spec, our class, torchvision's (module, class): the zoo kinds tests/test_inplace_add.py checks
    ("mobilenet_v3_large", "InvertedResidual", "mobilenetv3", "InvertedResidual"),
    ("efficientnet_b0", "MBConv", "efficientnet", "MBConv"),
    ("efficientnet_v2_s", "FusedMBConv", "efficientnet", "FusedMBConv"),
    ("regnet_y_400mf", "ResBottleneckBlock", "regnet", "ResBottleneckBlock"),
    ("mobilenet_v2", "InvertedResidual", "mobilenetv2", "InvertedResidual"),
    ("resnet50", "Bottleneck", "resnet", "Bottleneck"),
    ("convnext_tiny", "CNBlock", "convnext", "CNBlock"),
]


@pytest.mark.parametrize("spec, ours, module, theirs", SUMS, ids=[f"{s}-{c}" for s, c, _, _ in SUMS])
def test_residual_sums_are_written_as_torchvision_writes_them(spec, ours, module, theirs):
    """Where torchvision's forward adds the residual in place (`result += input`), the
    generated forward does (`out += x`); where it writes a new tensor, so does ours, with the
    operand that torchvision writes first (RegNet's shortcut: `self.proj(x) + self.f(x)`)."""
    import ast
    import importlib
    import inspect
    import textwrap

    cls = getattr(importlib.import_module(f"torchvision.models.{module}"), theirs)
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.forward)))
    in_place = [n for n in ast.walk(tree) if isinstance(n, ast.AugAssign) and isinstance(n.op, ast.Add)]
    new = [n for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Add)]
    assert len(in_place) + len(new) >= 1
    generated = (ROOT / "generated" / f"{spec}_torch.py").read_text()
    sums = [s for s in forward_statements(generated, ours) if "+" in s]
    assert len(sums) == 1 and ("+=" in sums[0]) == bool(in_place), (sums, ast.unparse(tree))
    if new:  # the shortcut's value first, as torchvision writes it
        first = ast.unparse(new[0].left)
        shortcut = first in ("x", "input") or first.startswith("self.proj")
        assert sums[0].split(" = ")[1].split(" + ")[0] == ("identity" if shortcut and ours == "ResBottleneckBlock" else "x" if shortcut else "out"), (sums, first)


def test_stochastic_depth_is_torchvisions():
    """The StochasticDepth a generated module defines draws as torchvision.ops.StochasticDepth
    in "row" mode: the same samples dropped, the same scaling, for the same seed."""
    from torchvision.ops import StochasticDepth

    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    spec = (
        "archc: 1\nname: sd\ninput: [2, 3, 3]\n"
        "layers:\n  - drop: {stochastic_depth: {rate: 0.3}}\n  - pool: global_avgpool\n"
    )
    ours = api.load_module(lower(load_spec_text(spec, "sd.yaml")), "torch").StochasticDepth(0.3).train()
    x = torch.randn(64, 2, 3, 3)
    torch.manual_seed(1)
    expected = StochasticDepth(0.3, "row").train()(x)
    torch.manual_seed(1)
    assert torch.equal(ours(x), expected)


def test_regnet_stages_are_torchvisions():
    """regnet_width / regnet_depth / regnet_stages and the spec's group-width adjustment
    (make_divisible) give torchvision's BlockParams for every torchvision RegNet and for random
    designs, ties of its float32 roundings included (float64 arithmetic misses about 1 in 1,500)."""
    import random

    from torchvision.models.regnet import BlockParams

    from archc.spec import expr

    def ours(depth, w_0, w_a, w_m, group_width, b=1.0):
        """What regnet.yaml's params compute, for any number of stages."""
        widths, depths, groups = [], [], []
        for k in range(1, expr.regnet_stages(depth, w_0, w_a, w_m) + 1):
            bottleneck = int(expr.regnet_width(depth, w_0, w_a, w_m, k) * b)
            groups.append(min(group_width, bottleneck))
            widths.append(int(expr.make_divisible(bottleneck, groups[-1]) / b))
            depths.append(expr.regnet_depth(depth, w_0, w_a, w_m, k))
        return widths, depths, groups

    torchvisions = [
        (16, 48, 27.89, 2.09, 8), (14, 56, 38.84, 2.4, 16), (27, 48, 20.71, 2.65, 24), (21, 80, 42.63, 2.66, 24),
        (17, 192, 76.82, 2.19, 56), (18, 200, 106.23, 2.48, 112), (20, 232, 115.89, 2.53, 232),
        (27, 456, 160.83, 2.52, 264), (22, 24, 24.48, 2.54, 16), (16, 56, 35.73, 2.28, 16), (18, 80, 34.01, 2.25, 24),
        (25, 88, 26.31, 2.25, 48), (23, 80, 49.56, 2.88, 120), (22, 216, 55.59, 2.1, 128), (23, 320, 69.86, 2.0, 168),
    ]  # fmt: skip
    rng = random.Random(0)
    designs = [(design, 1.0) for design in torchvisions]
    for _ in range(3000):
        depth, w_0, group_width = rng.randint(1, 40), 8 * rng.randint(1, 60), rng.choice([1, 2, 4, 8, 16, 24, 48, 128])
        w_a, w_m = (round(rng.uniform(0, 200), 2), round(rng.uniform(1.05, 3.5), 2)) if rng.random() < 0.5 else (rng.uniform(0, 300), rng.uniform(1.01, 4))
        designs.append(((depth, w_0, w_a, w_m, group_width), rng.choice([1.0, 0.5, 2.0, 0.25, 4.0])))
    for design, b in designs:
        params = BlockParams.from_init_params(*design, bottleneck_multiplier=b)
        assert ours(*design, b) == (params.widths, params.depths, params.group_widths), (design, b)


def assert_same(reference, module, input_shape=()):
    """The generated `module`'s model has the reference's state_dict keys and shapes; the
    reference's weights (BN statistics randomised) load strictly and give the same outputs,
    for an input of the generated model's size (or `input_shape`; None: no forward pass)."""
    assert not getattr(reference, "transform_input", False)  # the spec has no input transform
    input_shape = module.INPUT_SHAPE if input_shape == () else input_shape
    if input_shape is not None:
        randomize_batchnorm(reference, input_shape)
    ours = module.build_model().eval()

    def shapes(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    assert shapes(ours) == shapes(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    if input_shape is None:
        return
    assert_same_outputs(reference, ours, input_shape)


def assert_same_outputs(reference, ours, input_shape, batch=2):
    """Equal outputs for a random input; a dict of them (segmentation, detection backbones)
    with the same keys in the same order."""
    x = torch.randn(batch, *input_shape)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        pairs = [(expected[key], got[key]) for key in expected]
    else:
        pairs = [(expected, got)]
    for want, have in pairs:
        assert have.shape == want.shape
        assert (want - have).abs().max() <= 1e-5 * max(1.0, want.abs().max())



@pytest.mark.parametrize("multiplier", [0.5, 2.0])
def test_regnet_bottleneck_multiplier_matches_torchvision(multiplier):
    """No torchvision builder changes bottleneck_multiplier (its group-width adjustment and
    `int(round(width_out * bottleneck_multiplier))`), so the reference is its RegNet class on
    BlockParams.from_init_params, with regnet_x_400mf's design, at 64x64."""
    from torchvision.models.regnet import BlockParams, RegNet

    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec

    design = {"depth": 22, "w_0": 24, "w_a": 24.48, "w_m": 2.54, "group_width": 16}
    overrides = [f"params.{k}={v}" for k, v in design.items()] + ["params.se_ratio=0", f"params.bottleneck_multiplier={multiplier}"]
    torch.manual_seed(0)
    reference = RegNet(BlockParams.from_init_params(**design, bottleneck_multiplier=multiplier))
    assert_same(reference, api.load_module(lower(load_spec(ROOT / "specs" / "regnet.yaml", overrides)), "torch"), (3, 64, 64))
@pytest.mark.parametrize("name", ["efficientnet_b7", "efficientnet_v2_s"])
def test_stochastic_depth_rates_match_torchvision(name):
    """Each residual block's stochastic depth rate is torchvision's (it only acts in training):
    stochastic_depth_prob times the block's index among all blocks, over their number."""
    with torch.device("meta"):  # the modules' attributes, no storage
        reference = getattr(torchvision.models, name)(weights=None)
        ours = load_module(ROOT / "generated" / f"{name}_torch.py").build_model()
    expected = [b.stochastic_depth.p for b in reference.features.modules() if getattr(b, "use_res_connect", False)]
    got = [m.p for m in ours.modules() if type(m).__name__ == "StochasticDepth"]
    assert got == expected and len(got) > 30


# The rest of torchvision's EfficientNet family, by --set on the family spec (counts only: a
# forward of the wider members takes too long here; B2 runs in FAMILY).
EFFICIENTNET_SETS = {
    "efficientnet_b1": ["params.depth_mult=1.1"],
    "efficientnet_b3": ["params.width_mult=1.2", "params.depth_mult=1.4", "params.dropout=0.3"],
    "efficientnet_b5": ["params.width_mult=1.6", "params.depth_mult=2.2", "params.dropout=0.4", "defaults.batchnorm.eps=0.001", "defaults.batchnorm.momentum=0.01"],
    "efficientnet_b6": ["params.width_mult=1.8", "params.depth_mult=2.6", "params.dropout=0.5", "defaults.batchnorm.eps=0.001", "defaults.batchnorm.momentum=0.01"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EFFICIENTNET_SETS))
def test_efficientnet_family_counts_match_torchvision(name):
    from archc.lower import lower
    from archc.spec.loader import load_spec

    graph = lower(load_spec(ROOT / "specs" / "efficientnet.yaml", EFFICIENTNET_SETS[name]))
    with torch.device("meta"):  # counted, never run
        reference = getattr(torchvision.models, name)(weights=None)
    trainable = sum(p.numel() for p in reference.parameters())
    stats = sum(b.numel() for n, b in reference.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (graph.counts.trainable, graph.counts.non_trainable) == (trainable, stats)
    norms = {(m.eps, m.momentum) for m in reference.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    ours = {(n.op.eps, n.op.momentum) for n in graph.nodes if n.op.kind == "batchnorm"}
    assert ours == norms


# Dense prediction: torchvision's segmentation models (dict outputs, resized to the input at run
# time), from their specs with `--set` where a builder argument differs. Compared at a size that
# is not a multiple of the network stride; at the spec's own INPUT_SHAPE with `make test-slow`.
def _segmentation(builder, **kwargs):
    return lambda: getattr(torchvision.models.segmentation, builder)(weights=None, weights_backbone=None, **kwargs)


def _fpn(backbone):
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    return resnet_fpn_backbone(backbone_name=backbone, weights=None, trainable_layers=5, norm_layer=torch.nn.BatchNorm2d)


DENSE = {
    "fcn_resnet50": ("segmentation/fcn_resnet50.yaml", [], _segmentation("fcn_resnet50", aux_loss=False)),
    "fcn_resnet50_aux": ("segmentation/fcn_resnet50.yaml", ["params.aux_loss=true"], _segmentation("fcn_resnet50", aux_loss=True)),
    "resnet18_fpn": ("detection/resnet18_fpn.yaml", [], lambda: _fpn("resnet18")),
    "lraspp_mobilenet_v3_large": ("segmentation/lraspp_mobilenet_v3_large.yaml", [], _segmentation("lraspp_mobilenet_v3_large")),
    "deeplabv3_resnet50": ("segmentation/deeplabv3_resnet50.yaml", [], _segmentation("deeplabv3_resnet50", aux_loss=False)),
    "deeplabv3_mobilenet_v3_large": (
        "segmentation/deeplabv3_mobilenet_v3_large.yaml", [], _segmentation("deeplabv3_mobilenet_v3_large", aux_loss=False),
    ),
}  # fmt: skip
ODD_SIZE = (3, 97, 129)


def dense_pair(name):
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec

    spec, sets, build = DENSE[name]
    torch.manual_seed(0)
    reference = build()
    module = api.load_module(lower(load_spec(ROOT / "specs" / spec, sets)), "torch")
    assert_same(reference, module, None)  # keys, shapes, a strict load
    randomize_batchnorm(reference, ODD_SIZE)
    ours = module.build_model().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours, module.INPUT_SHAPE


# fcn_resnet50 (its aux_loss form, a superset, in make test) in make test-slow
@pytest.mark.parametrize("name", per_family(sorted(DENSE), fast=set(DENSE) - {"fcn_resnet50"}))
def test_dense_prediction_matches_torchvision(name):
    reference, ours, _ = dense_pair(name)
    assert_same_outputs(reference, ours, ODD_SIZE)


# build_model(num_classes=...) where the spec's num_classes reaches the head through a block
# kind's `with:` (FCN, LR-ASPP) or a layer (DeepLabV3): torchvision's builders take it too.
# (a block kind's `with:` with and without the aux head in make test; the others in make test-slow)
NUM_CLASSES = ["fcn_resnet50", "fcn_resnet50_aux", "lraspp_mobilenet_v3_large", "deeplabv3_resnet50"]


@pytest.mark.parametrize("name", per_family(NUM_CLASSES, fast={"fcn_resnet50_aux", "lraspp_mobilenet_v3_large"}))
def test_dense_prediction_num_classes_matches_torchvision(name):
    from archc import api

    spec, sets, _ = DENSE[name]
    builder = name.removesuffix("_aux")
    torch.manual_seed(0)
    kwargs = {"aux_loss": name.endswith("_aux")} if builder != "lraspp_mobilenet_v3_large" else {}
    reference = _segmentation(builder, num_classes=5, **kwargs)()
    randomize_batchnorm(reference, ODD_SIZE)
    ours = api.load_module(graph_of(f"specs/{spec}", *sets), "torch").build_model(num_classes=5).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert_same_outputs(reference, ours, ODD_SIZE)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_prediction_matches_torchvision_at_input_shape(name):
    reference, ours, input_shape = dense_pair(name)
    assert_same_outputs(reference, ours, input_shape, batch=1)


@pytest.mark.parametrize("spec", sorted(CLASS_TABLE))
def test_class_names_table_is_torchvisions(spec):
    """tests/test_class_names.py's table of torchvision's classes (which the generated modules
    must use) is torchvision's own."""
    name, classes = CLASS_TABLE[spec]
    kwargs = {"weights_backbone": None} if spec.startswith("segmentation/") else {}
    with torch.device("cpu" if name.startswith("regnet") else "meta"):  # RegNet's init has no meta kernel
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    for path, expected in classes.items():
        assert class_at(model, path) == expected, (spec, path)


@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2"])
def test_deploy_form_is_torch_fx_conv_bn_fusion(name, tmp_path):
    """`archc deploy`'s form of a torchvision model is what torch.fx's conv-bn fusion
    (torch.fx.experimental.optimization.fuse) makes of torchvision's: the same parameter
    count, the same folded tensors (the fused model keeps downsample.0 where archc's deploy
    spec writes the shortcut's one conv as downsample), and the same outputs."""
    from torch.fx.experimental.optimization import fuse

    from archc.api import load_module as build
    from archc.api import load_spec, to_ir
    from archc.deploy import plan
    from archc.deploy.weights import deploy_state

    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # statistics and an affine of its own: the fold uses them
                m.running_mean.uniform_(-0.5, 0.5), m.running_var.uniform_(0.5, 2.0), m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    fused = fuse(reference)
    spec = load_spec(ROOT / "specs" / f"{name}.yaml")
    train = to_ir(spec)
    the_plan = plan(spec, train)
    (tmp_path / "deploy.yaml").write_text(the_plan.text(name))
    graph = to_ir(load_spec(tmp_path / "deploy.yaml"))
    assert graph.counts.trainable == sum(p.numel() for p in fused.parameters())
    state = {k: v.double().numpy() for k, v in reference.state_dict().items()}
    moved = deploy_state(train, graph, state, the_plan.merges)
    ours = build(graph, "torch").build_model().eval()
    target = ours.state_dict()
    ours.load_state_dict({k: torch.from_numpy(moved[k] if k in moved else state[k]).to(v.dtype) for k, v in target.items()}, strict=True)
    for key, value in fused.state_dict().items():
        mine = ours.state_dict()[key.replace("downsample.0.", "downsample.")]
        torch.testing.assert_close(mine, value, rtol=1e-5, atol=1e-6, msg=key)
    x = torch.randn(2, 3, 96, 80)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), fused(x), rtol=1e-4, atol=1e-4)
