"""The timm-layout zoo models are timm's: the same state_dict keys and shapes, timm's
weights load strictly, and with them (BatchNorm statistics randomised) the outputs agree.
Needs timm, which lives with torchvision in the parity environment (`make test-torchvision`);
skips without it."""

import pytest
from conftest import ROOT, load_module, need
from test_torchvision import assert_same_init, assert_same_model

torch = need("torch")
timm = need("timm")

MODELS = ["seresnet50"]


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm(name):
    torch.manual_seed(0)
    assert_same_model(timm.create_model(name, pretrained=False), name)


@pytest.mark.parametrize("name", MODELS)
def test_init_matches_timm(name):
    """timm's init_weights (kaiming_normal fan_out convs) and zero_init_last (the bottleneck's bn3)."""
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False)
    assert_same_init(reference, load_module(ROOT / "generated" / f"{name}_torch.py").build_model())
