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
    "googlenet", "mobilenet_v3_large", "mobilenet_v3_small", "mnasnet1_0", "mnasnet0_5",
]
# Constructor arguments of the reference where its defaults are not the spec's model.
KWARGS = {"googlenet": {"aux_logits": False, "init_weights": False}}  # fmt: skip


def randomize_batchnorm(model):
    """Random gamma and beta; running statistics measured on a random batch, then perturbed
    per channel (so activations stay O(1) however deep the model is)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for m in norms:
            m.weight.uniform_(0.5, 1.5)
            m.bias.uniform_(-0.5, 0.5)
            m.reset_running_stats()
            m.momentum = None  # a plain average: one batch sets the statistics
        model.train()(torch.randn(2, 3, 224, 224))
        for m in norms:
            m.momentum = 0.1
            m.running_mean.add_(0.25 * m.running_var.sqrt() * torch.randn_like(m.running_mean))
            m.running_var.mul_(torch.rand_like(m.running_var) * 1.5 + 0.5)
    model.eval()


@pytest.mark.parametrize("name", [m for m in MODELS if (ROOT / "specs" / f"{m}.yaml").exists()])
def test_matches_torchvision(name):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None, **KWARGS.get(name, {}))
    randomize_batchnorm(reference)
    ours = load_module(ROOT / "generated" / f"{name}_torch.py").build_model().eval()

    def shapes(model):
        return {k: tuple(v.shape) for k, v in model.state_dict().items()}

    assert shapes(ours) == shapes(reference)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert got.shape == expected.shape == (2, 1000)
    assert (expected - got).abs().max() <= 1e-5 * max(1.0, expected.abs().max())
