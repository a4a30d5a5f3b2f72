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


@pytest.mark.parametrize("radix, cardinality, shape", [(2, 1, (6, 1, 1)), (2, 2, (8, 1, 1)), (4, 2, (16, 3, 2)), (3, 3, (18,)), (1, 4, (6, 2, 2))])
def test_radix_softmax_is_timms(radix, cardinality, shape):
    """archc's `softmax: {radix, cardinality}` is timm's RadixSoftmax (split attention), its
    flattened result viewed back to the input's shape (as timm's SplitAttn does)."""
    from timm.layers.split_attn import RadixSoftmax

    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    flat = len(shape) == 1
    spec = (
        f"archc: 1\nname: rsoftmax\ninput: [{shape[0]}, 1, 1]\nlayers:\n  - flat: flatten\n" if flat
        else f"archc: 1\nname: rsoftmax\ninput: {list(shape)}\nlayers:\n"
    ) + f"  - attn: {{softmax: {{radix: {radix}, cardinality: {cardinality}}}}}\n"
    ours = api.load_module(lower(load_spec_text(spec, "rsoftmax.yaml")), "torch").build_model()
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = ours(x.reshape(3, shape[0], 1, 1) if flat else x)
        want = RadixSoftmax(radix, cardinality)(x).reshape(x.shape)
    assert torch.allclose(got, want, atol=1e-7)
