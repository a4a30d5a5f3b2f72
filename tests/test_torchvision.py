"""The torchvision-layout zoo models are torchvision's: the same state_dict keys and shapes,
torchvision's weights load strictly, and with them (BatchNorm statistics randomised) the
outputs agree. Needs torchvision, which the dev environment leaves out; run with
`make test-torchvision` (see the README)."""

import pytest
from conftest import ROOT, load_module

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

MODELS = [
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2",
    "densenet121", "densenet161", "densenet169", "densenet201", "squeezenet1_1", "mobilenet_v2",
    "googlenet", "alexnet", "vgg16", "vgg16_bn", "vgg19_bn", "squeezenet1_0",
    "shufflenet_v2_x1_0", "shufflenet_v2_x0_5", "inception_v3",
    "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet1_0", "mnasnet0_5",
]
# Constructor arguments of the reference where its defaults are not the spec's model.
KWARGS = {
    "googlenet": {"aux_logits": False, "init_weights": False},
    "inception_v3": {"aux_logits": False, "init_weights": False},  # transform_input stays False without weights
}  # fmt: skip


def randomize_batchnorm(model, input_shape):
    """Random gamma and beta; running statistics measured on a random batch, then perturbed
    per channel (so activations stay O(1) however deep the model is)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
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
    assert_same(reference, load_module(ROOT / "generated" / f"{name}_torch.py"))


@pytest.mark.parametrize("name", [m for m in MODELS if (ROOT / "specs" / f"{m}.yaml").exists()])
def test_matches_torchvision(name):
    torch.manual_seed(0)
    assert_same_model(getattr(torchvision.models, name)(weights=None, **KWARGS.get(name, {})), name)


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
    "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5", "googlenet",
}  # fmt: skip


@pytest.mark.parametrize(
    "name",
    [pytest.param(m, marks=() if m in INIT_FAST else pytest.mark.slow) for m in MODELS if (ROOT / "specs" / f"{m}.yaml").exists()],
)
def test_init_matches_torchvision(name):
    """A freshly built generated model initialises as torchvision's freshly built one."""
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None, **KWARGS.get(name, {}))
    assert_same_init(reference, load_module(ROOT / "generated" / f"{name}_torch.py").build_model())


# Family specs under --set: the members of torchvision's builders that have no spec file.
FAMILY = {
    "vgg11": ("vgg.yaml", ["params.depth=11"]),
    "vgg13_bn": ("vgg.yaml", ["params.depth=13", "params.batch_norm=true"]),
    "vgg19": ("vgg.yaml", ["params.depth=19"]),
}


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_family_member_matches_torchvision(name):
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec

    spec, sets = FAMILY[name]
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)
    assert_same(reference, api.load_module(lower(load_spec(ROOT / "specs" / spec, sets)), "torch"))


# A family spec with `--set` is torchvision's builder with the same arguments.
VARIANTS = [
    ("mobilenet_v3_large", ["params.width_mult=0.75"], "mobilenet_v3_large", {"width_mult": 0.75}),
    ("mobilenet_v3_large", ["params.reduced_tail=true", "params.dilated=true"], "mobilenet_v3_large", {"reduced_tail": True, "dilated": True}),
    ("mobilenet_v3_small", ["params.width_mult=1.25", "params.reduced_tail=true"], "mobilenet_v3_small", {"width_mult": 1.25, "reduced_tail": True}),
    ("mnasnet1_0", ["params.alpha=0.75"], "mnasnet0_75", {}),
    ("mnasnet1_0", ["params.alpha=1.3"], "mnasnet1_3", {}),
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


def assert_same(reference, module):
    """The generated `module`'s model has the reference's state_dict keys and shapes; the
    reference's weights (BN statistics randomised) load strictly and give the same outputs,
    for an input of the generated model's size."""
    assert not getattr(reference, "transform_input", False)  # the spec has no input transform
    randomize_batchnorm(reference, module.INPUT_SHAPE)
    ours = module.build_model().eval()

    def shapes(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    assert shapes(ours) == shapes(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *module.INPUT_SHAPE)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape
    assert (expected - got).abs().max() <= 1e-5 * max(1.0, expected.abs().max())

