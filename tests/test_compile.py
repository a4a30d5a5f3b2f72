"""Generated torch code is compiler-friendly: torch.export and torch.compile(fullgraph=True)
trace it without graph breaks, channels_last works, and ONNX export runs in onnxruntime."""

import pytest
from conftest import ROOT, ZOO, expensive, load_module

torch = pytest.importorskip("torch")

from archc.lower import lower  # noqa: E402
from archc.spec.loader import load_spec  # noqa: E402

SPECS = sorted(ZOO)
# Each family's representative; the other family members in `make test-slow`.
EXPORT = expensive(SPECS)
# One ImageNet ResNet, one DenseNet (with its DenseStage and checkpointing code), one CIFAR net.
REPRESENTATIVE = ["specs/resnet18.yaml", "specs/cifar/densenet_bc100_k12.yaml", "specs/cifar/resnet20.yaml"]


def generated(spec):
    name = lower(load_spec(ROOT / spec)).name
    return load_module(ROOT / "generated" / f"{name}_torch.py")


def example(module, batch=2):
    torch.manual_seed(0)
    return torch.randn(batch, *module.INPUT_SHAPE)


@pytest.mark.parametrize("spec", EXPORT)
def test_torch_export(spec):
    module = generated(spec)
    model = module.build_model().eval()
    x = example(module, 1)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("spec", REPRESENTATIVE)
def test_compile_fullgraph(spec):
    """fullgraph=True fails on any graph break; the eager backend runs TorchDynamo's
    tracing without minutes of C++ compilation (inductor: `make test-slow`)."""
    module = generated(spec)
    model = module.build_model().eval()
    x = example(module)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True, backend="eager")(x), model(x))


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
@pytest.mark.parametrize("spec", SPECS)
def test_compile_inductor(spec):
    module = generated(spec)
    model = module.build_model().eval()
    x = example(module)
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, fullgraph=True)(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", REPRESENTATIVE)
def test_channels_last(spec):
    module = generated(spec)
    model = module.build_model().eval()
    x = example(module)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    module = generated("specs/cifar/resnet20.yaml")  # option A shortcuts: strided slice + channel pad
    model = module.build_model().eval()
    x = example(module)
    path = tmp_path / "resnet20.onnx"
    torch.onnx.export(model, (x,), dynamo=True).save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    assert abs(out - expected).max() <= 1e-4 * max(1.0, abs(expected).max())
