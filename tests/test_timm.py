"""The timm-layout zoo models are timm's: the same state_dict keys and shapes, timm's
weights load strictly, and with them (BatchNorm statistics randomised) the outputs agree.
Needs timm, which lives with torchvision in the parity environment (`make test-torchvision`);
skips without it."""

import pytest
from conftest import ROOT, load_module, need, per_family
from test_torchvision import assert_same, assert_same_init, assert_same_model

torch = need("torch")
timm = need("timm")

MODELS = ["seresnet50"]
# Specs over the torchvision zoo with the resnet library's timm kinds (deep_stem, timm_bottleneck's
# se and avg_down): compared at 97 x 83 in `make test`, where stride-2 maps are odd (the average-pool
# shortcuts' last windows are partial), and at 224 x 224 in `make test-slow`.
VARIANTS = ["seresnext26d_32x4d", "resnet50d"]


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


@pytest.mark.parametrize("size", [pytest.param((224, 224), marks=pytest.mark.slow), (97, 129)], ids=["224x224", "97x129"])
def test_repvgg_a0_matches_timm(size):
    """specs/repvgg_a0.yaml is timm's repvgg_a0 in its training form: its state_dict loads
    strictly (the identity batch norm only in the blocks that keep their shape), and with
    random BN statistics the outputs agree, at a size that is not a multiple of the stride 32
    (every strided conv rounds down; the last map is 4x5) and, in make test-slow, at 224x224."""
    torch.manual_seed(0)
    reference = timm.create_model("repvgg_a0", pretrained=False)
    keys = reference.state_dict()
    assert {"stem.conv_kxk.conv.weight", "stem.conv_1x1.bn.running_var", "stages.0.1.identity.weight", "head.fc.weight"} <= set(keys)
    assert not any(k.startswith(("stem.identity.", "stages.0.0.identity.", "stages.3.0.identity.")) for k in keys)
    assert_same(reference, load_module(ROOT / "generated" / "repvgg_a0_torch.py"), (3, *size))


def test_repvgg_a0_init_matches_timm():
    """timm's ByobNet init (convs normal with std sqrt(2 / fan_out), the Linear std 0.01),
    then RepVggBlock.init_weights: every batch norm's gamma normal(0.1, 0.1), beta normal(0, 0.1)."""
    torch.manual_seed(0)
    reference = timm.create_model("repvgg_a0", pretrained=False)
    assert_same_init(reference, load_module(ROOT / "generated" / "repvgg_a0_torch.py").build_model())


@pytest.mark.parametrize("name", per_family(VARIANTS, folder="specs/timm"))  # seresnext26d_32x4d in make test, resnet50d in make test-slow
def test_resnet_options_match_timm(name):
    torch.manual_seed(0)
    assert_same(timm.create_model(name, pretrained=False), load_module(ROOT / "generated" / f"{name}_torch.py"), (3, 97, 83))


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_resnet_options_match_timm_at_224(name):
    torch.manual_seed(0)
    assert_same_model(timm.create_model(name, pretrained=False), name)


@pytest.mark.parametrize("name", VARIANTS)
def test_resnet_options_init_matches_timm(name):
    """timm_bottleneck's zero bn3 (zero_init_last); the SE convs' biases as PyTorch's default."""
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False)
    assert_same_init(reference, load_module(ROOT / "generated" / f"{name}_torch.py").build_model())


@pytest.mark.parametrize("name, options", [("seresnet18", {"se": 16}), ("resnet18d", {"avg_down": True})])
def test_basic_block_options_match_timm(name, options):
    """The timm_resnet library's timm_basic: resnet18.yaml with its stages switched to it (and
    for ResNet-18-D the deep stem) is timm's SE-ResNet-18 and ResNet-18-D, at 97 x 83."""
    from archc import api

    overrides: dict = {"use": ["resnet", "timm_resnet"]}
    if options.get("avg_down"):
        overrides["layers.conv1"] = {"block": "deep_stem"}
    for i in range(1, 5):
        overrides[f"layers.layer{i}.stage"] = "timm_basic"
        overrides.update({f"layers.layer{i}.with.{k}": v for k, v in options.items()})
    module = api.load_module(api.to_ir(ROOT / "specs" / "resnet18.yaml", overrides), "torch")
    torch.manual_seed(0)
    assert_same(timm.create_model(name, pretrained=False), module, (3, 97, 83))


@pytest.mark.parametrize(
    "name, kwargs, spec, overrides",
    [
        ("seresnext50_32x4d", {}, "docs/examples/seresnext50_32x4d.yaml", []),
        ("resnet50c", {}, "docs/examples/resnet50c.yaml", []),
        ("resnet50", {"avg_down": True}, "specs/timm/resnet50d.yaml", ["layers.conv1={conv: {filters: 64, kernel: 7, stride: 2, padding: 3}}"]),
    ],
)
def test_docs_recipes_match_timm(name, kwargs, spec, overrides):
    """docs/spec.md's recipes, one option each, are timm's models, at 97 x 83."""
    from archc import api

    module = api.load_module(api.to_ir(ROOT / spec, overrides), "torch")
    torch.manual_seed(0)
    assert_same(timm.create_model(name, pretrained=False, **kwargs), module, (3, 97, 83))


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


@pytest.mark.parametrize("channels, kernel, shape", [(None, 3, (16, 5, 7)), (None, 1, (4, 2, 3)), (None, 9, (6, 3, 3)), (256, 5, (256, 2, 2))])
def test_eca_is_timms(channels, kernel, shape):
    """archc's `eca: {kernel: K}` is timm's EcaModule(kernel_size=K) with its sigmoid gate
    (channels=256: timm picks K = 5 from them, ECA-Net's gamma 2, beta 1): K parameters,
    timm's state_dict (`conv.weight`, (1, 1, K)) loads strictly as `se.conv.weight`, and the
    outputs are equal. K = 9 on 6 channels: the padding is wider than the channels."""
    from timm.layers import EcaModule

    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    theirs = EcaModule(channels, kernel_size=kernel).eval()
    assert theirs.conv.kernel_size == (kernel,)
    torch.nn.init.uniform_(theirs.conv.weight, -1, 1, generator=torch.Generator().manual_seed(0))
    spec = f"archc: 1\nname: eca\ninput: {list(shape)}\nlayers:\n  - se: {{eca: {{kernel: {kernel}}}}}\n"
    graph = lower(load_spec_text(spec, "eca.yaml"))
    ours = api.load_module(graph, "torch").build_model().eval()
    assert graph.counts.trainable == sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters()) == kernel
    ours.load_state_dict({f"se.{k}": v for k, v in theirs.state_dict().items()}, strict=True)
    x = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))


def _archc_torch(layer: str, shape: tuple[int, ...]):
    """A one-layer archc model (`op: LAYER`) on `shape`, built for PyTorch, and its graph."""
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    graph = lower(load_spec_text(f"archc: 1\nname: one\ninput: {list(shape)}\nlayers:\n  - op: {layer}\n", "one.yaml"))
    return api.load_module(graph, "torch").build_model().eval(), graph


@pytest.mark.parametrize("shape", [(3, 8, 12), (5, 4, 4)])
def test_space_to_depth_is_timms(shape):
    """archc's `space_to_depth: {block: 4}` is timm's SpaceToDepth (TResNet's stem, which allows
    block 4 only): the same output shape and elements in the same channel order, compared
    exactly, on a map that is not square; nothing in either state_dict."""
    from timm.layers import SpaceToDepth

    ours, graph = _archc_torch("{space_to_depth: {block: 4}}", shape)
    theirs = SpaceToDepth(4)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = theirs(x)
        assert torch.equal(ours(x), want)
    assert tuple(want.shape[1:]) == graph.output_shape.as_tuple()
    assert not ours.state_dict() and not theirs.state_dict()


@pytest.mark.parametrize(
    "channels, kernel, stride, pad_mode, shape",
    [(8, 3, 2, "reflect", (8, 9, 6)), (None, 3, 2, "reflect", (4, 8, 8)), (6, 5, 2, "reflect", (6, 7, 10)),
     (None, 3, 1, "reflect", (2, 5, 4)), (4, 3, 2, "constant", (4, 7, 6)), (None, 5, 2, "constant", (2, 2, 3))],
)  # fmt: skip
def test_blurpool_is_timms(channels, kernel, stride, pad_mode, shape):
    """archc's `blurpool: {kernel: K, stride: S}` is timm's BlurPool2d(channels, K, S) (its filter
    repeated per channel, or expanded where channels is None), and with `pad_mode: zeros` timm's
    pad_mode="constant" (its `blurpc`; 2 x 3: padding wider than the map, which only zeros
    allow): equal outputs, bit for bit, at odd and even sizes; timm's state_dict (empty: the
    filter is a non-persistent buffer) loads strictly, and archc's holds the same filter as a
    buffer left out of its state_dict."""
    from timm.layers import BlurPool2d

    ours, graph = _archc_torch(f"{{blurpool: {{kernel: {kernel}, stride: {stride}, pad_mode: {pad_mode.replace('constant', 'zeros')}}}}}", shape)
    theirs = BlurPool2d(channels, filt_size=kernel, stride=stride, pad_mode=pad_mode).eval()
    ours.load_state_dict({f"op.{k}": v for k, v in theirs.state_dict().items()}, strict=True)
    assert torch.equal(ours.op.filt[0, 0], theirs.filt[0, 0]) and not ours.state_dict()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = theirs(x)
        assert torch.equal(ours(x), want)
    assert tuple(want.shape[1:]) == graph.output_shape.as_tuple()
    assert graph.counts.trainable == graph.counts.non_trainable == 0


@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_hrnet_fuse_layers_are_timms(size):
    """A `modules:` container of `parallel:` rows is HRNet's grid of module lists: the
    generated `fuse_layers` loads the fuse layers of timm's hrnet_w18_small stage3 strictly
    (keys `fuse_layers.i.j`, none for the identity entries `0.0`, `1.1`, `2.2`, whose indexes
    are kept), and with the branches' outputs x0, x1, x2 given to timm's own forward (its
    branches replaced by identities) returns timm's fused maps."""
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    spec = ROOT / "tests" / "hrnet_fuse.yaml"
    ours = api.load_module(lower(load_spec_text(spec.read_text(), spec.name)), "torch").build_model().eval()
    torch.manual_seed(0)
    module = timm.create_model("hrnet_w18_small", pretrained=False).stage3[0].eval()
    reference = module.fuse_layers
    keys = reference.state_dict()
    assert not any(k.startswith(("0.0.", "1.1.", "2.2.")) for k in keys)
    assert {"2.0.0.0.weight", "2.0.1.1.running_var", "0.2.0.weight"} <= set(keys)
    _nontrivial_batchnorm(reference)
    ours.fuse_layers.load_state_dict(reference.state_dict(), strict=True)
    module.branches = torch.nn.ModuleList([torch.nn.Identity() for _ in range(3)])
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = ours(x)
        want = module([ours.x0(x), ours.x1(x), ours.x2(x)])
    assert list(got) == ["0", "1", "2"]
    for i, w in enumerate(want):
        assert got[str(i)].shape == w.shape
        assert torch.allclose(got[str(i)], w, atol=1e-5), (i, (got[str(i)] - w).abs().max())


@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_hrnet_module_as_a_block_kind_is_timms(size):
    """timm's HighResolutionModule as a block kind (tests/hrnet_module.yaml: `modules:`
    containers inside a block kind, `branches` of stages and `fuse_layers` of `parallel:`
    rows): the instance `h` loads hrnet_w18_small's stage3[0] state_dict strictly and, given
    the same three maps, returns timm's three fused maps."""
    from archc import api
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    spec = ROOT / "tests" / "hrnet_module.yaml"
    ours = api.load_module(lower(load_spec_text(spec.read_text(), spec.name)), "torch").build_model().eval()
    torch.manual_seed(0)
    module = timm.create_model("hrnet_w18_small", pretrained=False).stage3[0].eval()
    assert {"branches.2.1.bn2.running_var", "fuse_layers.2.0.1.1.running_var", "fuse_layers.0.2.0.weight"} <= set(module.state_dict())
    _nontrivial_batchnorm(module)
    ours.h.load_state_dict(module.state_dict(), strict=True)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = ours(x)
        want = module([ours.x0(x), ours.x1(x), ours.x2(x)])
    assert list(got) == ["0", "1", "2"]
    for i, w in enumerate(want):
        assert got[str(i)].shape == w.shape
        assert torch.allclose(got[str(i)], w, atol=1e-5), (i, (got[str(i)] - w).abs().max())


def _nontrivial_batchnorm(module) -> None:
    """Give every BatchNorm2d statistics and an affine of its own, so eval-mode outputs use them."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def test_repvgg_a0_deploy_form_is_timms_reparameterized_model(tmp_path):
    """`archc deploy`'s form of specs/repvgg_a0.yaml is timm's repvgg_a0 after
    reparameterize_model: 8,309,384 parameters, timm's re-parameterised state_dict loads into
    the deploy module strictly (each block's 3x3 + 1x1 + identity BN branches one reparam_conv),
    the outputs agree, and the weights archc moves from the training checkpoint are timm's."""
    import numpy as np
    from timm.utils.model import reparameterize_model

    from archc.api import load_module as build
    from archc.api import load_spec, to_ir
    from archc.deploy import plan
    from archc.deploy.weights import deploy_state

    torch.manual_seed(0)
    reference = timm.create_model("repvgg_a0", pretrained=False).eval()
    _nontrivial_batchnorm(reference)
    spec = load_spec(ROOT / "specs" / "repvgg_a0.yaml")
    train = to_ir(spec)
    the_plan = plan(spec, train)
    (tmp_path / "deploy.yaml").write_text(the_plan.text("specs/repvgg_a0.yaml"))
    graph = to_ir(load_spec(tmp_path / "deploy.yaml"))
    fused = reparameterize_model(reference)
    assert graph.counts.trainable == sum(p.numel() for p in fused.parameters()) == 8_309_384
    ours = build(graph, "torch").build_model().eval()
    ours.load_state_dict(fused.state_dict(), strict=True)
    x = torch.randn(2, 3, 97, 129)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), fused(x), rtol=1e-5, atol=1e-5)
        want, got = reference.double()(x.double()), ours.double()(x.double())  # float64: the fold itself, not float32 rounding
        assert (got - want).abs().max() <= 1e-5 * max(1.0, want.abs().max())
    state = {k: v.double().numpy() for k, v in reference.state_dict().items()}
    moved = deploy_state(train, graph, state, the_plan.merges)
    for key, value in fused.state_dict().items():
        np.testing.assert_allclose(moved[key] if key in moved else state[key], value.double().numpy(), rtol=1e-5, atol=1e-6, err_msg=key)
