"""Generated torch code is compiler-friendly: torch.export and torch.compile(fullgraph=True)
trace it without graph breaks, channels_last works, and ONNX export runs in onnxruntime.

Outputs are compared where they are numbers: each model's BatchNorm statistics are measured
on a batch first (conftest.calibrate_batchnorm; at the reference initialisation ResNet-1202's
eval-mode output is NaN and ResNet-152's about 1e8), the reference output must be finite, and
the difference is bounded relative to its magnitude, as `archc verify` bounds it."""

import copy

import pytest
from conftest import (
    REPRESENTATIVES,
    ROOT,
    TEST_INPUT,
    ZOO,
    calibrate_batchnorm,
    each_output,
    expensive,
    graph_of,
    load_module,
    need,
    suite_input,
)

from archc.errors import SpecError

torch = need("torch")

SPECS = sorted(ZOO)
# Each family's representative; the other family members in `make test-slow`.
EXPORT = expensive(SPECS)
# One ImageNet ResNet, one DenseNet (with its DenseStage and checkpointing code), one CIFAR net.
REPRESENTATIVE = ["specs/resnet18.yaml", "specs/cifar/densenet_bc100_k12.yaml", "specs/cifar/resnet20.yaml"]


def generated(spec):
    return load_module(ROOT / "generated" / f"{graph_of(spec).name}_torch.py")


def example(module, batch=2):
    torch.manual_seed(0)
    return torch.randn(batch, *module.INPUT_SHAPE)


def calibrated(spec, batch=2, small=False):
    """The spec's generated model in eval mode with measured BatchNorm statistics, and an input
    (at the size the suite runs it, conftest.TEST_INPUT; `small`: see smaller)."""
    module = generated(spec)
    model = module.build_model()
    shape = suite_input(spec, module)
    if small and spec not in TEST_INPUT:  # those already run at a size of their own
        shape = smaller(spec, tuple(shape))
    calibrate_batchnorm(model, shape)
    torch.manual_seed(0)
    return model, torch.randn(batch, *shape)


def assert_same_output(got, expected, tolerance=1e-4):
    """max |got - expected| <= tolerance * max(1, max |expected|), for a finite reference;
    output by output for a dict of them."""
    if isinstance(expected, dict):
        assert list(got) == list(expected)
        for key in expected:
            assert_same_output(got[key], expected[key], tolerance)
        return
    assert torch.isfinite(expected).all(), "the reference output is not finite: there is nothing to compare"
    assert got.shape == expected.shape
    error, magnitude = (got - expected).abs().max().item(), expected.abs().max().item()
    assert error <= tolerance * max(1.0, magnitude), f"max |difference| {error:.3g} at output magnitude {magnitude:.3g}"


def test_calibration_keeps_a_deep_resnet_in_range():
    """ResNet-110 at the reference initialisation: its eval-mode output is ~1e9 (ResNet-1202's
    overflows); with measured statistics it is O(1). A non-finite reference fails the comparison
    rather than comparing NaN with NaN."""
    module = generated("specs/cifar/resnet110.yaml")
    torch.manual_seed(0)
    model = module.build_model().eval()
    x = example(module)
    with torch.no_grad():
        assert model(x).abs().max() > 1e6
        calibrate_batchnorm(model, module.INPUT_SHAPE)
        assert model(x).abs().max() < 100
    nan = torch.full((2, 10), float("nan"))
    with pytest.raises(AssertionError, match="not finite"):
        assert_same_output(nan, nan)


def smaller(spec, shape):
    """A 2-D `shape` at height and width at most 97 x 128 (as `archc verify` runs the
    representatives: the same code, odd and even maps), where the spec's layers are
    size-agnostic there: the IR counts the same parameters at both sizes (a flatten before a
    dense layer fixes the size: keras/vgg16's); else `shape`."""
    if len(shape) != 3 or (shape[1] <= 97 and shape[2] <= 128):
        return shape
    small = (shape[0], min(shape[1], 97), min(shape[2], 128))
    try:
        same = graph_of(spec, f"input={list(small)}").counts == graph_of(spec).counts
    except SpecError:
        same = False
    return small if same else shape


@pytest.mark.parametrize("spec", EXPORT)
def test_torch_export(spec):
    """torch.export traces each generated model and runs as it does: the representatives at
    height and width at most 97 x 128 (`smaller`), every other spec at its own size in
    `make test-slow`."""
    model, x = calibrated(spec, batch=1, small=spec in REPRESENTATIVES)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        assert_same_output(program.module()(x), model(x), tolerance=1e-5)


@pytest.mark.parametrize("spec", REPRESENTATIVE)
def test_compile_fullgraph(spec):
    """fullgraph=True fails on any graph break; the eager backend runs TorchDynamo's
    tracing without minutes of C++ compilation (inductor: `make test-slow`)."""
    model, x = calibrated(spec)
    with torch.no_grad():
        assert_same_output(torch.compile(model, fullgraph=True, backend="eager")(x), model(x), tolerance=1e-5)


def test_compile_fullgraph_training_step():
    """Forward and backward traced as inductor would (aot_eager), gradients as in eager mode."""
    module = generated("specs/cifar/resnet20.yaml")
    torch.manual_seed(0)
    eager = module.build_model()
    compiled_model = module.build_model()
    compiled_model.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    x = example(module)
    for model in (eager, compiled):
        model(x).square().mean().backward()
    for (key, p), q in zip(eager.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(REPRESENTATIVES))
def test_compile_inductor(spec):
    """Each family's representative (its members are the same code with other numbers; every zoo
    spec is traced whole by torch.export above, which fails on a graph break). Inductor fuses and reorders float32 arithmetic, and a deep random network amplifies
    rounding: ResNet-152's eager float32 output is 5e-4 of its magnitude from the float64 one
    (101: 9e-5, 50: 2e-5), so no fixed bound on |inductor - eager| is both safe and tight. The
    compiled output is as close to the float64 output as eager float32 is (within 4x), or within
    1e-5 of its magnitude."""
    model, x = calibrated(spec)
    with torch.no_grad():
        compiled, eager = torch.compile(model, fullgraph=True)(x), model(x)
        exact = copy.deepcopy(model).double()(x.double())
    for compiled, eager, exact in zip(each_output(compiled), each_output(eager), each_output(exact)):  # a dict's in order
        assert torch.isfinite(exact).all(), "the reference output is not finite: there is nothing to compare"
        magnitude = exact.abs().max().item()
        eager_error = (eager.double() - exact).abs().max().item()
        error = (compiled.double() - exact).abs().max().item()
        assert error <= 4 * eager_error + 1e-5 * max(1.0, magnitude), f"inductor {error:.3g}, eager {eager_error:.3g} from float64, magnitude {magnitude:.3g}"


@pytest.mark.parametrize("spec", REPRESENTATIVE)
def test_channels_last(spec):
    model, x = calibrated(spec)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    assert_same_output(out, expected)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    need("onnxscript")
    ort = need("onnxruntime")
    model, x = calibrated("specs/cifar/resnet20.yaml")  # option A shortcuts: strided slice + channel pad
    path = tmp_path / "resnet20.onnx"
    torch.onnx.export(model, (x,), dynamo=True).save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert_same_output(torch.from_numpy(out), model(x))
