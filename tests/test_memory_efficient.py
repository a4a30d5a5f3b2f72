"""DenseNet's memory_efficient option (torchvision's): the concat -> BN -> ReLU -> 1x1 conv
of each dense layer is recomputed in backward instead of stored, only when gradients flow.
It must change nothing else: outputs, gradients and BatchNorm statistics are equal."""

import subprocess
import sys

import pytest
from conftest import ROOT, load_module, need

torch = need("torch")


@pytest.mark.parametrize("name", ["densenet_bc100_k12", "densenet40_k12"])
def test_same_outputs_gradients_and_statistics(name):
    module = load_module(ROOT / "generated" / f"{name}_torch.py")
    torch.manual_seed(0)
    standard = module.build_model()
    efficient = module.build_model(memory_efficient=True)
    efficient.load_state_dict(standard.state_dict())
    x = torch.randn(2, 3, 16, 16)  # CIFAR nets pool to 4x4; small is enough here
    for model in (standard, efficient):
        model(x).square().sum().backward()
    for (key, p), q in zip(standard.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=key)
    # running statistics are updated once per step, not again by the recomputation
    for key, value in standard.state_dict().items():
        assert torch.equal(efficient.state_dict()[key], value), key
    standard.eval(), efficient.eval()
    with torch.no_grad():
        torch.testing.assert_close(efficient(x), standard(x), rtol=0, atol=0)


def test_recomputes_only_when_gradients_flow():
    module = load_module(ROOT / "generated" / "densenet_bc100_k12_torch.py")
    model = module.build_model(memory_efficient=True)
    calls = []
    model.denseblock1.denselayer1.norm1.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(2, 3, 16, 16)  # CIFAR nets pool to 4x4; small is enough here
    model(x).sum().backward()
    assert len(calls) == 2  # forward, then the recomputation in backward
    calls.clear()
    with torch.no_grad():
        model(x)
    assert len(calls) == 1
    calls.clear()
    model.requires_grad_(False)
    model(x)  # no parameter and no input needs a gradient: nothing to checkpoint
    assert len(calls) == 1


def test_build_flag_sets_the_default(tmp_path):
    cmd = [sys.executable, "-m", "archc", "build", "specs/cifar/densenet40_k12.yaml"]
    out = tmp_path / "m.py"
    result = subprocess.run([*cmd, "-b", "torch", "--memory-efficient", "-o", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    model = load_module(out).build_model()
    assert all(layer.memory_efficient for layer in model.denseblock1.values())
    keras = subprocess.run([*cmd, "-b", "keras", "--memory-efficient", "-o", "-"], cwd=ROOT, capture_output=True, text=True)
    assert keras.returncode == 2 and keras.stderr.strip() == "archc: error: --memory-efficient applies to --backend torch only"
