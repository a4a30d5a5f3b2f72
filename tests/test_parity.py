"""The two backends compute the same function: copy weights torch -> keras by IR node
id, randomise BN statistics so BN mistakes cannot hide, compare outputs (eval mode)."""

import numpy as np
import pytest
from conftest import ROOT, load_module

from archc.ir import ops
from archc.lower import lower
from archc.spec.loader import load_spec

torch = pytest.importorskip("torch")
pytest.importorskip("keras")


def transfer(graph, t_model, k_model):
    for node in graph.nodes:
        if not node.op.has_params:
            continue
        module = t_model.get_submodule(node.id)
        layer = k_model.get_layer(node.id.replace(".", "_"))
        if isinstance(node.op, ops.Conv):
            weights = [module.weight.detach().numpy().transpose(2, 3, 1, 0)]  # OIHW -> HWIO
        elif isinstance(node.op, ops.Dense):
            weights = [module.weight.detach().numpy().T]
        else:
            weights = [module.weight, module.bias, module.running_mean, module.running_var]
            weights = [w.detach().numpy() for w in weights]
        if isinstance(node.op, (ops.Conv, ops.Dense)) and node.op.bias:
            weights.append(module.bias.detach().numpy())
        layer.set_weights(weights)


@pytest.mark.parametrize(
    "spec", ["specs/cifar/resnet20.yaml", "specs/cifar/keras_resnet20v1.yaml", "specs/cifar/densenet_bc100_k12.yaml",
             "specs/cifar/plain20.yaml", "specs/resnet18.yaml", "specs/cifar/wrn28_10.yaml", "specs/keras/resnet50v2.yaml"],
)  # fmt: skip
def test_backends_agree(spec):
    graph = lower(load_spec(ROOT / spec))
    tm = load_module(ROOT / "generated" / f"{graph.name}_torch.py")
    km = load_module(ROOT / "generated" / f"{graph.name}_keras.py")
    torch.manual_seed(0)
    t_model = tm.build_model().eval()
    with torch.no_grad():
        for m in t_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    k_model = km.build_model()
    transfer(graph, t_model, k_model)
    x = np.random.default_rng(0).standard_normal((2, *tm.INPUT_SHAPE)).astype("float32")
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    got = np.asarray(k_model(x.transpose(0, 2, 3, 1), training=False))
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(expected - got).max() <= 1e-4 * scale
