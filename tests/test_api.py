"""The Python API and `archc summary`: MACs against torchvision's published figure and
against hooks on the generated PyTorch model, layer and block levels agreeing, the
activation-memory estimate, and a small version of the README's DenseNet sweep."""

import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import ROOT, need

import archc
from archc.cli import main

DENSENET_BC = ROOT / "specs/cifar/densenet_bc100_k12.yaml"


def test_resnet50_macs_match_torchvision():
    s = archc.summary(ROOT / "specs/resnet50.yaml")
    assert s.macs == 4_089_184_256  # torchvision's table: 4.09 "GFLOPS" (multiply-accumulates)
    assert s.trainable == 25_557_032


def test_macs_match_hooks_on_the_torch_model():
    """Count conv and linear multiply-accumulates from the shapes PyTorch actually produces."""
    torch = need("torch")
    shallow = [f"layers.layer{i}.repeat=2" for i in range(1, 5)]  # still a first block and a repeated one
    spec = archc.load_spec(ROOT / "specs/resnext50_32x4d.yaml", ["input[1]=64", "input[2]=64", *shallow])
    model = archc.build(spec, "torch").eval()
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        else:
            total += output.numel() * module.in_features

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert archc.summary(spec).macs == total


@pytest.mark.parametrize("spec", ["specs/resnet50.yaml", "specs/densenet121.yaml", "specs/cifar/resnet20.yaml"])
def test_layer_level_totals_equal_block_level(spec):
    blocks, layers = archc.summary(ROOT / spec), archc.summary(ROOT / spec, level="layers")
    graph = archc.to_ir(ROOT / spec)
    assert len(layers.rows) == len(graph.nodes)
    for key in ("trainable", "non_trainable", "macs"):
        assert sum(getattr(r, key) for r in layers.rows) == getattr(layers, key) == getattr(blocks, key)
        assert sum(getattr(r, key) for r in blocks.rows) == getattr(blocks, key)


def test_activation_memory_by_hand(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(
        "archc: 1\nname: tiny\ninput: [3, 8, 8]\ndefaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}\n"
        "layers:\n  - conv: {conv: {filters: 4, kernel: 3, stride: 2, padding: 1}}\n  - bn: batchnorm\n  - relu: act\n"
        "  - pool: global_avgpool\n  - fc: {dense: {units: 10}}\n"
    )
    # conv, bn and relu each output 4x4x4 = 64 values, the pool 4, the dense 10; float32, batch 16
    assert archc.summary(spec, batch=16).activation_bytes == 4 * 16 * (3 * 64 + 4 + 10)
    result = CliRunner().invoke(main, ["summary", str(spec), "--batch", "16", "--json"])
    assert result.exit_code == 0
    assert '"activation_bytes": 13184' in result.output and '"batch": 16' in result.output


def test_summary_table_and_json_agree():
    runner = CliRunner()
    table = runner.invoke(main, ["summary", "specs/resnet50.yaml", "--level", "layers"]).output
    assert "layer4.2.conv3" in table and "MACs 4.09 G" in table and "activations, batch 1" in table
    import json

    data = json.loads(runner.invoke(main, ["summary", "specs/resnet50.yaml", "--level", "layers", "--json"]).output)
    assert data["command"] == "summary" and data["level"] == "layers" and data["macs"] == 4_089_184_256
    assert len(data["rows"]) == len(table.splitlines()) - 6  # title, header, 2 rules, 2 total lines


def test_compile_is_what_build_writes():
    assert archc.compile(ROOT / "specs/cifar/resnet20.yaml", "keras") == (ROOT / "generated/resnet20_keras.py").read_text()
    spec = archc.load_spec(ROOT / "specs/cifar/resnet.yaml", overrides=["params.depth=56", "name=resnet56"])
    assert archc.to_ir(spec).counts.trainable == 853_018  # He et al. 2015, Table 6
    with pytest.raises(archc.SpecError, match="depth") as e:
        archc.to_ir(archc.load_spec(ROOT / "specs/cifar/resnet.yaml", overrides=["params.depth=57"]))
    assert "--set params.depth=57" in str(e.value)


def test_import_archc_stays_light():
    code = (
        "import sys, archc\n"
        "s = archc.summary('specs/densenet121.yaml')\n"
        "archc.compile('specs/densenet121.yaml', 'torch')\n"
        "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_densenet_sweep():
    """The README's sweep, smaller: every variant's summary equals its built model's counts."""
    torch = need("torch")
    published = archc.summary(DENSENET_BC)
    assert published.trainable == 769_162  # DenseNet-BC L=100 k=12 (Huang et al. 2017)
    for k in (12, 24):
        for theta in (0.5, 1.0):
            spec = archc.load_spec(DENSENET_BC, [f"params.growth_rate={k}", f"params.compression={theta}", "params.depth=16"])
            s = archc.summary(spec)
            model = archc.build(spec, "torch")
            assert sum(p.numel() for p in model.parameters()) == s.trainable
            assert tuple(model(torch.zeros(1, 3, 32, 32)).shape) == (1, *s.output_shape)
    need("keras")
    import numpy as np

    keras_model = archc.build(spec, "keras", num_classes=100)
    assert keras_model.output_shape == (None, 100)
    assert sum(int(np.prod(w.shape)) for w in keras_model.weights) == archc.summary(
        archc.load_spec(DENSENET_BC, ["params.growth_rate=24", "params.compression=1.0", "params.depth=16", "params.num_classes=100"])
    ).total


def test_overrides_as_a_dict_or_a_list():
    spec = ROOT / "specs/cifar/resnet.yaml"
    # He et al. 2015, Table 6: ResNet-56 has 0.85M parameters
    assert archc.summary(spec, overrides={"params.depth": 56}).trainable == 853_018
    assert archc.to_ir(spec, ["params.depth=56"]).counts.trainable == 853_018
    assert archc.load_spec(spec, {"params.depth": 56, "name": "r56"}).model.name == "r56"
    assert archc.compile(spec, "torch", {"params.depth": 56}) == archc.compile(spec, "torch", ["params.depth=56"])
    with pytest.raises(archc.SpecError, match="depth") as e:
        archc.summary(spec, overrides={"params.depth": 57})
    assert "--set params.depth=57" in str(e.value)  # the equivalent command line names the culprit
    with pytest.raises(archc.SpecError, match=r"overrides\['params.depth'\]: .* is not a spec value"):
        archc.summary(spec, overrides={"params.depth": object()})
    with pytest.raises(TypeError, match="not one string"):
        archc.summary(spec, overrides="params.depth=56")
    with pytest.raises(ValueError, match="pass them to load_spec"):  # a loaded spec is not loaded again
        archc.summary(archc.load_spec(spec), overrides={"params.depth": 56})
    torch = need("torch")
    model = archc.build(spec, "torch", overrides={"params.depth": 56}, num_classes=100)
    assert sum(p.numel() for p in model.parameters()) == 853_018 + 64 * 90 + 90  # a 100-way classifier
    assert tuple(model(torch.zeros(1, 3, 32, 32)).shape) == (1, 100)


def test_a_built_torch_model_pickles(tmp_path):
    """torch.save(model) keeps the generated code in the file: torch.load(weights_only=False)
    restores the model in a process that never built it; deepcopy keeps the class."""
    import copy

    torch = need("torch")
    model = archc.build(ROOT / "specs/cifar/resnet20.yaml", "torch").eval()
    x = torch.randn(2, 3, 32, 32)
    torch.save(model, tmp_path / "model.pt")
    torch.save({"x": x, "y": model(x).detach()}, tmp_path / "io.pt")
    code = (
        "import sys, torch\n"
        f"model = torch.load({str(tmp_path / 'model.pt')!r}, weights_only=False)\n"
        f"io = torch.load({str(tmp_path / 'io.pt')!r})\n"
        "assert not model.training and torch.equal(model(io['x']), io['y'])\n"
        "assert type(model).__name__ == 'CifarResNet' and type(model.layer1[0]).__name__ == 'CifarBasic'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    twin = copy.deepcopy(model)
    assert type(twin) is type(model) and type(twin.layer1[0]) is type(model.layer1[0])
    assert torch.equal(twin(x), model(x))
    same = torch.load(tmp_path / "model.pt", weights_only=False)
    assert type(same) is type(model)  # unpickled here: the module built above, not a second copy

    class Mine(type(model)):  # a user's subclass is copied (and pickled) as Python does it
        pass

    mine = Mine.__new__(Mine)
    mine.__setstate__(dict(model.__dict__))
    assert type(copy.deepcopy(mine)) is Mine
    with pytest.raises(Exception, match="Unsupported global"):  # torch's default refuses code in a checkpoint
        torch.load(tmp_path / "model.pt")
