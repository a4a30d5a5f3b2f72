"""The timm-layout zoo models are timm's: the same state_dict keys and shapes, timm's
weights load strictly, and with them (BatchNorm statistics randomised) the outputs agree.
Needs timm, which lives with torchvision in the parity environment (`make test-torchvision`);
skips without it."""

import pytest
from conftest import ROOT, load_module
from test_torchvision import randomize_batchnorm

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

MODELS = ["seresnet50"]


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm(name):
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False)
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
