"""The timm-layout zoo models are timm's: the same state_dict keys and shapes, timm's
weights load strictly, and with them (BatchNorm statistics randomised) the outputs agree.
Needs timm, which lives with torchvision in the parity environment (`make test-torchvision`);
skips without it."""

import pytest
from test_torchvision import assert_same_model

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

MODELS = ["seresnet50"]


@pytest.mark.parametrize("name", MODELS)
def test_matches_timm(name):
    torch.manual_seed(0)
    assert_same_model(timm.create_model(name, pretrained=False), name)
