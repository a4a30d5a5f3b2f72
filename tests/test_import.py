"""`archc import` (archc.importer): a torchvision model becomes a spec of block kinds and
stages that rebuilds it exactly. Each round trip is checked here independently of the
importer's own check: the spec, compiled by archc, loads torchvision's state_dict strictly
and, with the batch-norm statistics randomised, gives torchvision's outputs (relative difference <= 1e-5).
Needs torchvision (runs in .tvenv: `make test-torchvision`)."""

import functools
import gc
import importlib.util
import textwrap

import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT, need

torch = need("torch")
torchvision = need("torchvision")

from archc.api import build, summary  # noqa: E402
from archc.cli import main  # noqa: E402
from archc.importer import import_spec  # noqa: E402
from archc.spec.loader import load_spec_text  # noqa: E402

# model -> (block kinds, each model-level stage's (kind, repeat) in order or None, constructor
# arguments): torchvision's layouts, read off its source (resnet.py's [2, 2, 2, 2] and
# [3, 4, 6, 3], mobilenetv2.py's inverted_residual_setting, squeezenet.py's Fire modules,
# efficientnet.py's B0 repeats [1, 2, 2, 3, 3, 4, 1], convnext.py's [3, 3, 9, 3], mnasnet.py's
# _stack repeats [3, 3, 3, 2, 4, 1], densenet.py's (6, 12, 24, 16) dense blocks,
# regnet_y_400mf's depths [1, 3, 6, 6] (stages named
# block1-0, ...); a stage of one instance is a block, except where its name needs `names:`).
EXPECTED = {
    "resnet18": ({"basic_block"}, [("basic_block", 2)] * 4, {}),
    "resnet50": ({"bottleneck"}, [("bottleneck", 3), ("bottleneck", 4), ("bottleneck", 6), ("bottleneck", 3)], {}),
    "resnext50_32x4d": ({"bottleneck"}, [("bottleneck", 3), ("bottleneck", 4), ("bottleneck", 6), ("bottleneck", 3)], {}),
    "mobilenet_v2": (
        {"conv2d_norm_activation", "inverted_residual"},
        [("inverted_residual", n) for n in (2, 3, 4, 3, 3)],
        {},
    ),
    "squeezenet1_1": ({"fire"}, [("fire", 2)] * 4, {}),
    "vgg11": ({"conv3x3"}, [("conv3x3", 2)] * 3, {}),  # cfg A: 64, 128, 256 x 2, 512 x 2, 512 x 2
    "alexnet": (set(), [], {}),
    "efficientnet_b0": (
        {"conv2d_norm_activation", "squeeze_excitation", "mb_conv"},
        [("mb_conv", n) for n in (1, 2, 2, 3, 3, 4, 1)],
        {},
    ),
    "convnext_tiny": ({"conv2d_norm_activation", "cn_block"}, [("cn_block", n) for n in (3, 3, 9, 3)], {}),
    "mnasnet1_0": ({"inverted_residual"}, [("inverted_residual", n) for n in (3, 3, 3, 2, 4)], {}),
    "mobilenet_v3_large": ({"conv2d_norm_activation", "inverted_residual", "squeeze_excitation"}, None, {}),
    "densenet121": ({"dense_layer", "transition"}, [("dense_layer", n) for n in (6, 12, 24, 16)], {}),
    "regnet_y_400mf": (
        {"simple_stem_in", "conv2d_norm_activation", "squeeze_excitation", "bottleneck_transform", "res_bottleneck_block"},
        [("res_bottleneck_block", n) for n in (1, 3, 6, 6)],
        {},
    ),
    "googlenet": ({"basic_conv2d", "inception"}, [], {"aux_logits": False, "init_weights": False}),
    "inception_v3": (
        {"basic_conv2d", "inception_a", "inception_b", "inception_c", "inception_d", "inception_e"},
        [],
        {"aux_logits": False, "init_weights": False},
    ),
    # shufflenetv2.py: stages_repeats [4, 8, 4], each a stride-2 unit then stride-1 ones
    "shufflenet_v2_x1_0": ({"inverted_residual"}, [("inverted_residual", n) for n in (4, 8, 4)], {}),
}  # fmt: skip
INPUT = {"inception_v3": (3, 75, 75)}  # its smallest


# Every layer of these models takes any input size; 2 cores compare float64 passes at 64x64
# in a fraction of the time 224x224 takes (the spec's input is then (3, 64, 64)).
SMALL = (3, 64, 64)


def stages(layers):
    """(kind, repeat) of every stage in a layer list, nested lists included, in order."""
    found = []
    for item in layers:
        body = next(iter(item.values())) if isinstance(item, dict) and len(item) == 1 else item
        if isinstance(body, list):
            found += stages(body)
        elif isinstance(body, dict) and "stage" in body:
            found.append((body["stage"], body["repeat"]))
    return found


def randomise(model):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model.eval()


def assert_rebuilds(reference, text, input_shape=(3, 224, 224)):
    ours = build(load_spec_text(text), "torch")
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        want, got = reference(x), ours.eval()(x)
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5


# make test round-trips three designs (basic residual blocks, inverted residuals, MBConv with
# SE and stochastic depth; the tests below add VGG's inline kind, dense stages and the
# expressions); every other model runs in make test-slow (CI runs both)
FAST = {"resnet18", "mobilenet_v2", "efficientnet_b0"}


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in EXPECTED])
def test_round_trip(name):
    torch.manual_seed(0)
    kinds, expected_stages, kwargs = EXPECTED[name]
    shape = INPUT.get(name, SMALL)
    result = import_spec(f"torchvision:{name}", shape, kwargs)
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert set(spec.get("blocks", {})) == kinds
    if expected_stages is not None:
        assert stages(spec["layers"]) == expected_stages
    assert_rebuilds(randomise(getattr(torchvision.models, name)(weights=None, **kwargs)), result.text, shape)


def test_growing_rates_are_expressions():
    """torchvision's stochastic depth rates grow over the model (EfficientNet: 0.2 * k / 16;
    ConvNeXt: 0.1 * k / 17): one expression over stage_block_id, so a model-level stage keeps
    its instances together."""
    spec = yaml.safe_load(import_spec("torchvision:convnext_tiny", SMALL, check=False).text)
    rates = {s["with"]["stochastic_depth_prob"] for s in spec["layers"][0]["features"] if isinstance(s, list) for s in s if "stage" in s}
    assert rates == {"0.1 * stage_block_id / (total_stage_blocks - 1)"}
    spec = yaml.safe_load(import_spec("torchvision:efficientnet_b0", SMALL, check=False).text)
    rates = {s["with"]["stochastic_depth_prob"] for s in spec["layers"][0]["features"] if isinstance(s, list) for s in s if "stage" in s}
    assert rates == {"0.2 * stage_block_id / total_stage_blocks"}


def test_vgg_features_are_inline_stages():
    """torchvision's make_layers appends conv, BN, ReLU to one features list: a block kind
    whose instances are written `inline: true`, so the list keeps torchvision's numbering."""
    spec = yaml.safe_load(import_spec("torchvision:vgg16_bn", SMALL, check=False).text)
    assert spec["blocks"]["conv3x3"] == {
        "class": "Conv3x3",
        "params": {"filters": "int"},
        "layers": [{"conv": {"filters": "filters", "kernel": 3, "padding": 1, "bias": True}}, "batchnorm", "relu"],
    }
    convs = [(e["repeat"], e["with"]["filters"]) for e in spec["layers"][0]["features"] if "stage" in e]
    assert convs == [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]  # cfg D
    assert all(e["inline"] for e in spec["layers"][0]["features"] if "stage" in e)


def test_dense_blocks_are_dense_stages():
    """torchvision's _DenseBlock (each layer reads the concatenation of all before it) is a
    stage with connectivity: dense, its layers named as torchvision names them."""
    spec = yaml.safe_load(import_spec("torchvision:densenet121", SMALL, check=False).text)
    features = {name: body for item in spec["layers"][0]["features"] for name, body in item.items()}
    assert features["denseblock3"] == {"stage": "dense_layer", "repeat": 24, "connectivity": "dense", "names": "denselayer{n}"}


def test_parameters_are_expressions():
    """A kind's widths are written over its constructor's arguments and in_channels, as
    torchvision computes them (Bottleneck: conv3 is planes * expansion; its downsample
    exists where the input's width is not the output's)."""
    spec = yaml.safe_load(import_spec("torchvision:resnet50", check=False).text)
    kind = spec["blocks"]["bottleneck"]
    layers = {name: body for item in kind["layers"] for name, body in item.items()}
    assert kind["params"] == {"planes": "int", "stride": 1}
    assert layers["conv3"]["conv"]["filters"] == "4 * planes"
    assert layers["downsample"]["if"] == "in_channels != 4 * planes" and layers["downsample"]["from"] == "input"
    assert layers["add"] == {"add": ["bn3", "downsample"]}


MODELS_PY = '''
import torch
from torch import nn


class Unit(nn.Module):
    def __init__(self, cin, width, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.body = nn.Sequential(Unit(3, width, 2), Unit(width, 2 * width), Unit(2 * width, 2 * width))
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
        x = self.body(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        if x.mean() > 0:  # data-dependent control flow
            return self.conv(x)
        return x


class Gated(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.stem(x))


def net(width=8):
    return Net(width)


def gated():
    return Gated()
'''


def test_file_source_with_args(tmp_path):
    source = tmp_path / "models.py"
    source.write_text(textwrap.dedent(MODELS_PY))
    out = tmp_path / "net.yaml"
    result = CliRunner().invoke(main, ["import", f"{source}:net", "--arg", "width=16", "--input", "3,32,32", "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(out.read_text())
    assert spec["input"] == [3, 32, 32] and spec["blocks"]["unit"]["params"] == {"width": "int", "stride": 1}
    assert spec["layers"][0] == {"body": {"stage": "unit", "repeat": 3, "with": {"width": 32}, "first": {"width": 16, "stride": 2}}}
    namespace = {}
    exec(compile(textwrap.dedent(MODELS_PY), str(source), "exec"), namespace)
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["net"](width=16)), out.read_text(), (3, 32, 32))


def test_unsupported_module_is_one_line_and_writes_nothing(tmp_path):
    source = tmp_path / "models.py"
    source.write_text(textwrap.dedent(MODELS_PY))
    out = tmp_path / "gated.yaml"
    result = CliRunner().invoke(main, ["import", f"{source}:gated", "-o", str(out)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"archc: error: cannot import {source}:gated: gate: Gate: forward cannot be traced")
    assert not out.exists()


def test_unknown_model_is_one_line():
    result = CliRunner().invoke(main, ["import", "torchvision:resnet_nonexistent"])
    assert result.exit_code == 2
    assert result.output.strip() == "archc: error: torchvision has no model 'resnet_nonexistent' (torchvision.models.list_models())"


def test_no_check_writes_to_stdout(tmp_path):
    """Without -o the spec goes to stdout (nothing else there); --no-check skips the build,
    so the spec is the same text the checked import writes."""
    source = tmp_path / "models.py"
    source.write_text(textwrap.dedent(MODELS_PY))
    args = ["import", f"{source}:net", "--input", "3,32,32"]
    unchecked = CliRunner().invoke(main, [*args, "--no-check"])
    checked = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "net.yaml")])
    assert unchecked.exit_code == 0 and checked.exit_code == 0
    assert unchecked.stdout == (tmp_path / "net.yaml").read_text()
    assert unchecked.stdout.startswith(f"# archc import {source}:net\narchc: 1\n")


SHUFFLE_PY = '''
import torch
from torch import nn


def channel_shuffle(x, groups):  # torchvision's shufflenetv2.channel_shuffle
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, num_channels, height, width)


def branch(cin, cout, stride):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class Unit(nn.Module):
    """ShuffleNet V2's unit: stride 1 splits the input in halves, stride 2 has two branches."""

    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        self.left = branch(inp, oup // 2, stride) if stride > 1 else nn.Sequential()
        self.right = branch(inp if stride > 1 else oup // 2, oup // 2, stride)

    def forward(self, x):
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.right(b)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        return channel_shuffle(out, 2)


class Thirds(nn.Module):
    """chunk(3) of 10 channels (parts of 4, 4 and 2), read out of order; a shuffle of 3
    groups spelt with x.shape, -1, reshape and no contiguous()."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 1)

    def forward(self, x):
        parts = torch.chunk(x, 3, 1)
        y = torch.cat([parts[2], self.conv(parts[0]), parts[1]], 1)
        n, c, h, w = y.shape
        return y.reshape(n, 3, -1, h, w).transpose(2, 1).reshape(n, -1, h, w)


class Net(nn.Module):
    def __init__(self, split=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 10 if split else 8, 3, 2, 1)
        widths = [(8, 24, 2), (24, 24, 1), (24, 24, 1), (24, 48, 2), (48, 48, 1), (48, 48, 1)]
        self.body = Thirds() if split else nn.Sequential(*(Unit(*w) for w in widths))
        self.fc = nn.Linear(12 if split else 48, 10)

    def forward(self, x):
        return self.fc(self.body(self.stem(x)).mean([2, 3]))


class Tilted(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        x = self.stem(x)
        n, c, h, w = x.size()
        return x.view(n, 2, c // 2, h, w).transpose(2, 3).reshape(n, c, h, w)  # not a shuffle


def net(split=False):
    return Net(split)


def tilted():
    return Tilted()
'''


def shuffle_source(tmp_path):
    source = tmp_path / "shuffles.py"
    source.write_text(SHUFFLE_PY)
    namespace = {}
    exec(compile(SHUFFLE_PY, str(source), "exec"), namespace)
    return source, namespace


def test_channel_shuffle_and_chunk_are_layers(tmp_path):
    """A unit written as torchvision's ShuffleNet V2 (a module-level channel_shuffle that reads
    x.size(), views, transposes and views back; x.chunk(2, dim=1) and its halves) is one block
    kind: the halves are channel slices, present at stride 1 only, the shuffle a shuffle layer."""
    source, namespace = shuffle_source(tmp_path)
    result = import_spec(f"{source}:net", (3, 16, 16))
    spec = yaml.safe_load(result.text)
    assert set(spec["blocks"]) == {"unit"} and spec["blocks"]["unit"]["params"] == {"stride": 1, "oup": "int"}
    layers = {name: body for item in spec["blocks"]["unit"]["layers"] for name, body in item.items()}
    assert list(layers) == ["chunk1", "left", "chunk2", "right", "cat", "shuffle"]
    assert layers["chunk1"] == {"slice": {"stop": "in_channels // 2"}, "if": "stride == 1"}
    assert layers["chunk2"] == {"slice": {"start": "in_channels // 2"}, "from": "input", "if": "stride == 1"}
    assert layers["left"]["from"] == "chunk1" and layers["left"]["if"] == "stride != 1"
    assert layers["right"]["from"] == "chunk2" and "if" not in layers["right"]
    assert layers["cat"] == {"concat": ["left", "right"]} and layers["shuffle"] == {"shuffle": {"groups": 2}}
    stage = {"stage": "unit", "repeat": 3, "first": {"stride": 2}}
    assert spec["layers"][1] == {"body": [{**stage, "with": {"oup": 24}}, {**stage, "with": {"oup": 48}}]}
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["net"]()), result.text, (3, 16, 16))


def test_uneven_chunks_and_other_shuffle_spellings(tmp_path):
    """torch.chunk(x, 3, 1) of 10 channels: torch's parts of ceil(10 / 3) = 4, 4 and the 2
    left; a shuffle spelt y.reshape(n, 3, -1, h, w).transpose(2, 1).reshape(n, -1, h, w)."""
    source, namespace = shuffle_source(tmp_path)
    result = import_spec(f"{source}:net", (3, 16, 16), {"split": True})
    layers = {name: body for item in yaml.safe_load(result.text)["blocks"]["thirds"]["layers"] for name, body in item.items()}
    assert [layers[f"chunk{i}"]["slice"] for i in (1, 2, 3)] == [{"stop": 4}, {"start": 4, "stop": 8}, {"start": 8}]
    assert layers["cat"] == {"concat": ["chunk3", "conv", "chunk2"]} and layers["shuffle"] == {"shuffle": {"groups": 3}}
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["net"](split=True)), result.text, (3, 16, 16))


def test_a_transpose_that_is_no_shuffle_is_refused(tmp_path):
    """view, transpose(2, 3), view back is not a channel shuffle: one line naming the module
    and the construct, exit 2, nothing written."""
    source, _ = shuffle_source(tmp_path)
    out = tmp_path / "tilted.yaml"
    result = CliRunner().invoke(main, ["import", f"{source}:tilted", "--input", "3,8,8", "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()
    assert result.output.strip() == f"archc: error: cannot import {source}:tilted: model: Tilted: forward calls size, which archc has no layer for"


SPLITS_PY = '''
import math

import torch
from torch import nn


def cbr(cin, cout, k=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Ghost(nn.Module):
    """timm's GhostModule: a conv and a cheap depthwise conv of its output, concatenated and cut
    to out_chs channels."""

    def __init__(self, cin, out_chs):
        super().__init__()
        self.out_chs = out_chs
        init = math.ceil(out_chs / 2)
        self.primary_conv = cbr(cin, init)
        self.cheap_operation = cbr(init, init, 3, init)

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, :self.out_chs, :, :]


class Res2(nn.Module):
    """timm's Bottle2neck: torch.split into parts of width channels, each part added to the
    branch before it, the last part passed through (read as spx[-1])."""

    def __init__(self, cin, width):
        super().__init__()
        self.width = width
        self.conv1 = cbr(cin, 3 * width)
        self.b1, self.b2 = cbr(width, width, 3), cbr(width, width, 3)
        self.conv3 = nn.Conv2d(3 * width, cin, 1)

    def forward(self, x):
        spx = torch.split(self.conv1(x), self.width, 1)
        sp = self.b1(spx[0])
        sp2 = self.b2(sp + spx[1]).contiguous()  # as timm's CrossStage: the same values
        return x + self.conv3(torch.cat([sp, sp2, spx[-1]], 1))


class Dual(nn.Module):
    """timm's DualPathBlock: x[:, :n] and x[:, n:] (here x[:, n:, ...]); an uneven
    y.split([n, rest], dim=1), one part indexed again (b[:, 1:3], b[:, -2:])."""

    def __init__(self, cin, n):
        super().__init__()
        self.n, self.rest = n, cin + 4 - n
        self.conv = cbr(cin, cin + 4)

    def forward(self, x):
        a, b = self.conv(x).split([self.n, self.rest], dim=1)
        return torch.cat([x[:, :self.n] + a, x[:, self.n:, ...], b[:, 1:3], b[:, -2:]], dim=1)


class Net(nn.Module):
    def __init__(self, step=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 2, 1)
        self.ghost = Ghost(16, 15)
        self.res2 = Res2(15, 5)
        self.to16 = nn.Conv2d(15, 16, 1)
        self.dual = Dual(16, 10)
        self.step = step
        self.fc = nn.Linear(10 if step else 20, 10)

    def forward(self, x):
        x = self.dual(self.to16(self.res2(self.ghost(self.stem(x)))))
        if self.step:
            x = x[:, ::2]
        return self.fc(x.mean([2, 3]))


def net(step=False):
    return Net(step)
'''


def test_splits_and_channel_indexing_are_slices(tmp_path):
    """torch.split(x, size, 1), x.split([sizes], dim=1) read by constant (and negative) indices,
    and channel indexing x[:, :n, :, :], x[:, n:], x[:, n:, ...], x[:, -2:] are channel
    slices: GhostModule's cut, Res2Net's hierarchy, DPN's dual path; x.contiguous() is no
    layer; the spec rebuilds the model."""
    source = tmp_path / "splits.py"
    source.write_text(SPLITS_PY)
    namespace = {}
    exec(compile(SPLITS_PY, str(source), "exec"), namespace)
    result = import_spec(f"{source}:net", (3, 16, 16))
    blocks = yaml.safe_load(result.text)["blocks"]
    layers = {k: {name: body for item in b["layers"] for name, body in item.items()} for k, b in blocks.items()}
    # Ghost: 8 + 8 channels cut to out_chs 15
    assert list(layers["ghost"])[2:] == ["cat", "slice"] and layers["ghost"]["slice"] == {"slice": {"stop": 15}}
    # Res2: 15 channels in parts of 5; spx[-1] is the third
    res2 = layers["res2"]
    assert [res2[f"split{i}"] for i in (1, 2, 3)] == [
        {"slice": {"stop": 5}}, {"slice": {"start": 5, "stop": 10}, "from": "conv1"}, {"slice": {"start": 10}, "from": "conv1"},
    ]  # fmt: skip
    assert res2["add"] == {"add": ["b1", "split2"]} and res2["cat"] == {"concat": ["b1", "b2", "split3"]}
    # Dual: 20 channels split 10 / 10; the input's 16 at 10
    dual = layers["dual"]
    assert dual["split1"] == {"slice": {"stop": 10}} and dual["split2"] == {"slice": {"start": 10}, "from": "conv"}
    assert dual["slice"] == {"slice": {"stop": 10}, "from": "input"} and dual["slice1"] == {"slice": {"start": 10}, "from": "input"}
    assert dual["slice2"] == {"slice": {"start": 1, "stop": 3}, "from": "split2"}
    assert dual["slice3"] == {"slice": {"start": 8}, "from": "split2"}
    assert dual["cat"] == {"concat": ["add", "slice1", "slice2", "slice3"]}
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["net"]()), result.text, (3, 16, 16))


def test_a_strided_channel_index_is_refused(tmp_path):
    """x[:, ::2] is no channel slice: one line naming the module and the index, exit 2."""
    source = tmp_path / "splits.py"
    source.write_text(SPLITS_PY)
    result = CliRunner().invoke(main, ["import", f"{source}:net", "--input", "3,16,16", "--arg", "step=True"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"archc: error: cannot import {source}:net: model: Net: forward indexes dual[:, ::2], "
        "which no channel slice (constant bounds, step 1) expresses"
    )


RADIX_CUT_PY = '''
import torch
from torch import nn


class Cut(nn.Module):
    """A channel cut, then split attention's radix sum: x[:, :8] seen as (N, 2, 4, H, W),
    summed over the radix."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 10, 1)

    def forward(self, x):
        x = self.conv(x)[:, :8]
        n, c, h, w = x.shape
        return x.reshape(n, 2, c // 2, h, w).sum(dim=1)
'''


def test_a_radix_sum_of_a_channel_cut_is_read(tmp_path):
    """The slice that x[:, :8] becomes computes its channels, so the radix pass after it
    (archc.importer.radix, which runs the rewritten graph) still reads the radix sum."""
    source = tmp_path / "cut.py"
    source.write_text(RADIX_CUT_PY)
    namespace = {}
    exec(compile(RADIX_CUT_PY, str(source), "exec"), namespace)
    result = import_spec(f"{source}:Cut", (3, 8, 8))
    layers = {name: body for item in yaml.safe_load(result.text)["layers"] for name, body in item.items()}
    assert layers["slice"] == {"slice": {"stop": 8}}
    assert layers["add"] == {"add": ["split1", "split2"]}
    assert_rebuilds(namespace["Cut"]().eval(), result.text, (3, 8, 8))


REXNET_PY = '''
import torch
from torch import nn


class ConvBn(nn.Module):
    def __init__(self, cin, out_channels, kernel_size=1, stride=1, groups=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn(self.conv(x))


class Unit(nn.Module):
    """timm's RexNet LinearBottleneck: `exp_ratio: float = 1.0` given ints; the expansion conv
    only where exp_ratio != 1; the input added to the first channels, x[:, 0:in_chs]."""

    def __init__(self, in_chs, out_chs, exp_ratio: float = 1.0, stride=1):
        super().__init__()
        self.in_chs = in_chs
        self.use_shortcut = stride == 1 and in_chs <= out_chs
        mid = in_chs * exp_ratio
        self.conv_exp = ConvBn(in_chs, mid) if exp_ratio != 1.0 else None
        self.conv_dw = ConvBn(mid, mid, 3, stride, groups=mid)
        self.conv_pwl = ConvBn(mid, out_chs)

    def forward(self, x):
        shortcut = x
        if self.conv_exp is not None:
            x = self.conv_exp(x)
        x = self.conv_pwl(self.conv_dw(x))
        if self.use_shortcut:
            x = torch.cat([x[:, 0:self.in_chs] + shortcut, x[:, self.in_chs:]], dim=1)
        return x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.features = nn.Sequential(Unit(8, 10, 1), Unit(10, 12, 2, 2), Unit(12, 14, 2), Unit(14, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.features(self.stem(x)).mean([2, 3]))
'''


def test_an_integral_float_default_given_ints_is_an_int(tmp_path):
    """timm's RexNet LinearBottleneck, `exp_ratio: float = 1.0` given 1 and 2: the kind's
    default is the int 1, so `in_channels * exp_ratio` stays a whole number (with the float
    default the spec is refused: out_channels 8.0); the residual is added to x[:, 0:in_chs]."""
    source = tmp_path / "rex.py"
    source.write_text(REXNET_PY)
    namespace = {}
    exec(compile(REXNET_PY, str(source), "exec"), namespace)
    result = import_spec(f"{source}:Net", (3, 16, 16))
    unit = yaml.safe_load(result.text)["blocks"]["unit"]
    assert unit["params"]["exp_ratio"] == 1 and type(unit["params"]["exp_ratio"]) is int
    layers = {name: body for item in unit["layers"] for name, body in item.items()}
    assert layers["conv_exp"] == {"block": "conv_bn", "with": {"out_channels": "in_channels * exp_ratio"}, "if": "exp_ratio != 1"}
    assert layers["slice"] == {"slice": {"stop": "in_channels"}, "if": "stride == 1"}
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["Net"]()), result.text, (3, 16, 16))


NORM_ACT_PY = '''
from torch import nn


class NormAct(nn.Module):
    """timm's DPN BnAct: a batch norm, then `act`, a ReLU in some instances and a SiLU in others."""

    def __init__(self, channels, act):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.act = act()

    def forward(self, x):
        return self.act(self.bn(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.a, self.b, self.c = NormAct(8, nn.ReLU), NormAct(8, nn.SiLU), NormAct(8, nn.ReLU)

    def forward(self, x):
        return self.c(self.b(self.a(self.conv(x))))
'''


def test_alternative_activations_that_end_a_block_are_chained(tmp_path):
    """A block that ends in its activation, a ReLU in some instances and a SiLU in others
    (timm's DPN BnAct): the activations are alternatives, and the later reads the earlier, so
    each instance's output is its own activation's (read from the batch norm, the SiLU was
    never read: the spec was refused)."""
    source = tmp_path / "norm_act.py"
    source.write_text(NORM_ACT_PY)
    namespace = {}
    exec(compile(NORM_ACT_PY, str(source), "exec"), namespace)
    result = import_spec(f"{source}:Net", (3, 8, 8))
    layers = yaml.safe_load(result.text)["blocks"]["norm_act"]["layers"]
    assert layers[1:] == [
        {"act_relu": {"act": {"fn": "relu"}, "if": "use_act_relu"}},
        {"act_silu": {"act": {"fn": "silu"}, "from": "act_relu", "if": "not use_act_relu"}},
    ]
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["Net"]()), result.text, (3, 8, 8))


POOLS_PY = '''
from torch import nn


class Down(nn.Module):
    """A pool `pool` that is a max pool in some instances and an average pool in others."""

    def __init__(self, channels, pool):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.pool = pool(2)

    def forward(self, x):
        return self.pool(self.conv(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.a, self.b, self.c = Down(8, nn.MaxPool2d), Down(8, nn.AvgPool2d), Down(8, nn.MaxPool2d)

    def forward(self, x):
        return self.c(self.b(self.a(self.stem(x))))
'''


def test_a_layer_that_differs_between_instances_splits_the_kind(tmp_path):
    """Instances of one class whose layer of one name is a max pool in some and an average
    pool in others are two kinds (a spec's alternatives of one name may only be merges)."""
    source = tmp_path / "pools.py"
    source.write_text(POOLS_PY)
    namespace = {}
    exec(compile(POOLS_PY, str(source), "exec"), namespace)
    result = import_spec(f"{source}:Net", (3, 18, 18))
    spec = yaml.safe_load(result.text)
    assert spec["blocks"]["down"]["layers"][1] == {"pool": {"maxpool": {"kernel": 2}}}
    assert spec["blocks"]["down_2"]["layers"][1] == {"pool": {"avgpool": {"kernel": 2}}}
    assert [layer[k] for layer in spec["layers"][1:] for k in layer] == [{"block": "down"}, {"block": "down_2"}, {"block": "down"}]
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["Net"]()), result.text, (3, 18, 18))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "resnet50d", "tresnet_m", "res2net50_26w_4s", "skresnet18", "selecsls42", "dla34"])
def test_timm_round_trip(name):
    """timm:NAME: timm's ResNet (resnet50d: the deep stem and the average-pool downsample),
    TResNet (its space-to-depth stem and blur pools), Res2Net (module-list entries called one
    at a time, `convs.1`), SKNet (paths stacked on a new axis), SelecSLS (blocks that pass lists
    [x, skip] down an nn.Sequential, archc.importer.listflow) and DLA (blocks given a shortcut,
    roots a list, recursive trees their children)."""
    timm = need("timm")
    torch.manual_seed(0)
    result = import_spec(f"timm:{name}", SMALL)
    assert result.diff is not None and result.diff <= 1e-5
    assert_rebuilds(randomise(timm.create_model(name, pretrained=False)), result.text, SMALL)


@pytest.mark.parametrize(
    "name",
    ["mobilenet_v2", *(pytest.param(n, marks=pytest.mark.slow) for n in ("resnet50", "densenet121", "shufflenet_v2_x1_0"))],
)
def test_counts_match_the_zoo_spec(name):
    """What `archc diff` compares: the imported spec and the hand-written zoo spec have the
    same rows (output shape, parameters, MACs; the module path of each row with weights: a
    row without, such as DenseNet's functional pool, is named by whoever writes it) and totals,
    at the zoo's input."""
    imported = summary(load_spec_text(import_spec(f"torchvision:{name}", check=False).text))
    zoo = summary(str(ROOT / "specs" / f"{name}.yaml"))
    row = lambda r: (r.name if r.trainable + r.non_trainable else "", r.output_shape, r.trainable, r.non_trainable, r.macs)  # noqa: E731
    assert [row(r) for r in imported.rows] == [row(r) for r in zoo.rows]
    assert (imported.trainable, imported.non_trainable, imported.macs) == (zoo.trainable, zoo.non_trainable, zoo.macs)


def test_timm_batchnorm_act_round_trip():
    """timm's efficientnet_b0: every norm is a BatchNormAct2d (a BatchNorm2d that applies its
    child `act`, here SiLU, or none after the projection), its squeeze-excite pools with
    x.mean((2, 3), keepdim=True) and its classifier is timm.layers.Linear. Each norm becomes a
    batch norm under the module's own name (the state_dict's `bn1.weight`) and an activation
    entry `bn1_act`; the projection's norm (`bn3`, act Identity) has none."""
    timm = need("timm")
    torch.manual_seed(0)
    result = import_spec("timm:efficientnet_b0", SMALL)
    assert result.diff is not None and result.diff <= 1e-5
    assert_rebuilds(randomise(timm.create_model("efficientnet_b0", pretrained=False)), result.text, SMALL)
    spec = yaml.safe_load(result.text)
    layers = [next(iter(e)) for e in spec["layers"]]
    assert layers[:3] == ["conv_stem", "bn1", "bn1_act"] and spec["layers"][2] == {"bn1_act": "silu"}
    ir = spec["blocks"]["inverted_residual"]["layers"]
    names = [next(iter(e)) for e in ir]
    assert "bn3" in names and "bn3_act" not in names and "bn2_act" in names


ECA_PY = """
import torch
from timm.layers import EcaModule
from torch import nn


class Unit(nn.Module):
    def __init__(self, cin, width, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, width, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.se = EcaModule(width)  # timm's kernel from the channels: 16 -> 3, 256 -> 5

    def forward(self, x):
        return torch.relu(self.se(self.bn(self.conv(x))))


def net():
    return nn.Sequential(Unit(3, 16, 2), Unit(16, 256), Unit(256, 256))


def gated():
    return nn.Sequential(nn.Conv2d(3, 8, 1), EcaModule(kernel_size=3, gate_layer="hard_sigmoid"))


def mlp():
    return nn.Sequential(nn.Conv2d(3, 8, 1), EcaModule(8, use_mlp=True))
"""


def test_timm_eca_round_trip(tmp_path):
    """timm's EcaModule is an `eca` layer with its conv's kernel (here a parameter of the block
    kind, as timm picks it from the channels); other gates and timm's MLP form are refused."""
    need("timm")
    source = tmp_path / "eca.py"
    source.write_text(ECA_PY)
    result = import_spec(f"{source}:net", (3, 16, 16))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    layers = {name: body for item in spec["blocks"]["unit"]["layers"] for name, body in item.items()}
    kernel = layers["se"]["eca"]["kernel"]
    assert isinstance(kernel, str) and kernel in spec["blocks"]["unit"]["params"]  # 3, then 5
    namespace = {}
    exec(compile(ECA_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["net"]()), result.text, (3, 16, 16))
    for factory, why in [("gated", "1: EcaModule with gate Hardsigmoid, where archc's eca gates with a sigmoid"),
                         ("mlp", "1: EcaModule with children ['act', 'conv', 'conv2', 'gate'] (use_mlp)")]:  # fmt: skip
        refused = CliRunner().invoke(main, ["import", f"{source}:{factory}", "--input", "3,8,8"])
        assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
        assert refused.output.startswith(f"archc: error: cannot import {source}:{factory}: {why}"), refused.output


ANTI_ALIASED_PY = """
from functools import partial

import torch
from timm.layers import BlurPool2d, ConvNormAct, SpaceToDepth
from torch import nn


class Block(nn.Module):  # TResNet's BasicBlock in miniature: the blur only where it downsamples
    def __init__(self, cin, width, stride=1, aa_layer=BlurPool2d):
        super().__init__()
        self.conv1 = ConvNormAct(cin, width, 3, stride=stride, aa_layer=aa_layer)
        self.conv2 = ConvNormAct(width, width, 3, apply_act=False)
        self.down = nn.Conv2d(cin, width, 1, stride=stride, bias=False) if stride != 1 or cin != width else nn.Identity()

    def forward(self, x):
        return torch.relu(self.conv2(self.conv1(x)) + self.down(x))


class Net(nn.Module):
    def __init__(self, aa_layer=BlurPool2d):
        super().__init__()
        self.s2d = SpaceToDepth()
        self.layer1 = nn.Sequential(Block(48, 8, aa_layer=aa_layer), Block(8, 16, 2, aa_layer=aa_layer), Block(16, 16, aa_layer=aa_layer))

    def forward(self, x):
        return self.layer1(self.s2d(x))


def net():
    return Net()


def replicate_pad():
    return Net(partial(BlurPool2d, pad_mode="replicate"))
"""


def test_timm_space_to_depth_and_blur_pool_round_trip(tmp_path):
    """timm's SpaceToDepth is a `space_to_depth` layer and its BlurPool2d (a ConvNormAct's
    `aa`, present only where the stride is not 1) a `blurpool` one: the import is exact, on
    a map (16 x 20 -> 4 x 5 -> 2 x 3) whose strided sizes are odd; one padding with zeros
    (timm's `blurpc`) is `pad_mode: zeros`, and one replicating its edge is refused."""
    from timm.layers import BlurPool2d

    from archc.importer.ops import leaf

    need("timm")
    source = tmp_path / "aa.py"
    source.write_text(ANTI_ALIASED_PY)
    result = import_spec(f"{source}:net", (3, 16, 20))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["layers"][0] == {"s2d": {"space_to_depth": {"block": 4}}}
    assert "blurpool: {kernel: 3, stride: 2}" in result.text
    namespace = {}
    exec(compile(ANTI_ALIASED_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    assert_rebuilds(randomise(namespace["net"]()), result.text, (3, 16, 20))
    assert leaf(BlurPool2d(8, filt_size=5, pad_mode="constant")) == ("blurpool", {"kernel": 5, "stride": 2, "pad_mode": "zeros"})
    refused = CliRunner().invoke(main, ["import", f"{source}:replicate_pad", "--input", "3,16,16"])
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    why = "layer1.1.conv1.aa: BlurPool2d(pad_mode='replicate'), where archc's blurpool pads by reflection or with zeros"
    assert refused.output.startswith(f"archc: error: cannot import {source}:replicate_pad: {why}"), refused.output


SEQUENTIAL_PY = """
from collections import OrderedDict

from torch import nn


class Trunk(nn.Sequential):  # an nn.Sequential subclass that keeps nn.Sequential's forward
    pass


def plain():
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 8, 3), bn=nn.BatchNorm2d(8), relu=nn.ReLU(),
                                     features=nn.Sequential(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU())))


def trunk():
    # `body` keeps children 1 and 2 of a list, as torchvision's SSDlite keeps `block[1:]`
    body = nn.Sequential(OrderedDict([("1", nn.Conv2d(8, 8, 3, padding=1)), ("2", nn.BatchNorm2d(8))]))
    return Trunk(OrderedDict(stem=nn.Conv2d(3, 8, 3, stride=2), act=nn.ReLU(), body=body))


def numbered():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2), nn.Sequential(nn.BatchNorm2d(16), nn.ReLU()))
"""


def _sequential_models(tmp_path):
    source = tmp_path / "sequential.py"
    source.write_text(SEQUENTIAL_PY)
    namespace = {}
    exec(compile(SEQUENTIAL_PY, str(source), "exec"), namespace)
    return source, namespace


@pytest.mark.parametrize("factory", ["plain", "trunk"])
def test_sequential_model_round_trip(tmp_path, factory):
    """A bare nn.Sequential with named children and an nn.Sequential subclass as the whole
    model: its children are the model's entries (keys `conv.weight`, `body.1.weight`). A list
    whose numbers start at 1 keeps them with an nn.Identity (no weights) at 0."""
    source, namespace = _sequential_models(tmp_path)
    torch.manual_seed(0)
    result = import_spec(f"{source}:{factory}", (3, 32, 32))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["class"] == {"plain": "Sequential", "trunk": "Trunk"}[factory]
    if factory == "trunk":
        assert [next(iter(e)) for e in spec["layers"]] == ["stem", "act", "body"]
        assert spec["layers"][2]["body"][0] == "identity"
    assert_rebuilds(randomise(namespace[factory]()), result.text, (3, 32, 32))


def test_numbered_sequential_model_round_trip(tmp_path):
    """A model whose own children are numbered (`0.weight`): a numbered model, its layers
    unnamed (a list inside it is a nested list, `3.0.weight`), rebuilt exactly."""
    source, namespace = _sequential_models(tmp_path)
    torch.manual_seed(0)
    result = import_spec(f"{source}:numbered", (3, 32, 32))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["layers"][1] == "relu" and spec["layers"][3] == ["batchnorm", "relu"]  # unnamed entries
    assert_rebuilds(randomise(namespace["numbered"]()), result.text, (3, 32, 32))


def _detection_trunk(name):
    """bench/import_coverage.py's DetectionTrunk of detection model NAME (its rule)."""
    import importlib.util

    path = ROOT / "bench" / "import_coverage.py"
    spec = importlib.util.spec_from_file_location("import_coverage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module.detection_trunk(name)


@pytest.mark.slow
def test_detection_trunk_round_trip():
    """torchvision's Faster R-CNN ResNet-50 FPN trunk as the bench builds it, an nn.Sequential
    subclass at model level (conv1, bn1, relu, maxpool, layer1-4), rebuilds exactly."""
    path, _ = _detection_trunk("fasterrcnn_resnet50_fpn")
    torch.manual_seed(0)
    result = import_spec(f"{path}:detection_trunk", (3, 64, 64), {"name": "fasterrcnn_resnet50_fpn"})
    assert result.diff is not None and result.diff <= 1e-5
    assert [next(iter(e)) for e in yaml.safe_load(result.text)["layers"]][:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert_rebuilds(randomise(_detection_trunk("fasterrcnn_resnet50_fpn")[1]), result.text, (3, 64, 64))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_fpn"])
def test_numbered_detection_trunk_round_trip(name):
    """The bench's trunks whose children are numbered (`0.0.weight`; about 6 s each): numbered
    models, their layers unnamed, rebuilt exactly."""
    path, _ = _detection_trunk(name)
    torch.manual_seed(0)
    result = import_spec(f"{path}:detection_trunk", (3, 64, 64), {"name": name})
    assert result.diff is not None and result.diff <= 1e-5
    reference = randomise(_detection_trunk(name)[1])
    assert next(iter(reference.state_dict())).startswith("0.")  # numbered at model level
    assert_rebuilds(reference, result.text, (3, 64, 64))


SSDLITE_PY = """
import torchvision
from torch import nn


class Features(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features(x)


def ssdlite_features():
    model = torchvision.models.get_model("ssdlite320_mobilenet_v3_large", weights=None, weights_backbone=None)
    return Features(model.backbone.features)
"""


def test_detection_trunk_with_a_list_numbered_from_1_round_trip(tmp_path):
    """torchvision's SSDlite MobileNetV3 trunk (backbone.features) under a name: its
    features.1.0 keeps children 1, 2, 3 of an InvertedResidual's block (an identity at 0)."""
    source = tmp_path / "ssdlite.py"
    source.write_text(SSDLITE_PY)
    namespace = {}
    exec(compile(SSDLITE_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    result = import_spec(f"{source}:ssdlite_features", (3, 64, 64))
    assert result.diff is not None and result.diff <= 1e-5
    assert yaml.safe_load(result.text)["layers"][0]["features"][1][0][0] == "identity"
    assert_rebuilds(randomise(namespace["ssdlite_features"]()), result.text, (3, 64, 64))


GROUPNORM_PY = """
from torch import nn


class Unit(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(groups, cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.norm(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.gn = nn.GroupNorm(2, 8, eps=1e-6)
        self.body = nn.Sequential(Unit(8, 16, 4), Unit(16, 32, 8))

    def forward(self, x):
        return self.body(self.gn(self.stem(x)))


class TimmNet(nn.Module):  # timm's norm + activation modules: the norm's weights, then its act
    def __init__(self):
        super().__init__()
        from timm.layers import GroupNorm1Act, GroupNormAct

        self.conv1 = nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.bn1 = GroupNormAct(12, num_groups=3, act_layer=nn.SiLU)
        self.conv2 = nn.Conv2d(12, 8, 1, bias=False)
        self.bn2 = GroupNorm1Act(8, apply_act=False)

    def forward(self, x):
        return self.bn2(self.conv2(self.bn1(self.conv1(x))))


def net():
    return Net()


def timm_net():
    return TimmNet()


def numbered_act():
    from timm.layers import GroupNormAct

    return nn.Sequential(nn.Conv2d(3, 8, 1), GroupNormAct(8, num_groups=2))


def no_affine():
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8, affine=False))
"""


def _groupnorm_models(tmp_path):
    source = tmp_path / "groupnorm.py"
    source.write_text(GROUPNORM_PY)
    namespace = {}
    exec(compile(GROUPNORM_PY, str(source), "exec"), namespace)
    return source, namespace


def _random_group_norms(model):
    """Weights and biases away from PyTorch's ones and zeros, so a swapped or dropped tensor shows."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.copy_(torch.rand(m.num_channels, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_channels, generator=gen) * 0.5)
    return model.eval()


def test_group_norm_round_trip(tmp_path):
    """nn.GroupNorm is a `groupnorm` layer under its own name (keys `gn.weight`,
    `body.0.norm.bias`): its groups (a block parameter where the instances differ) and its eps,
    written only where it is not PyTorch's 1e-5."""
    source, namespace = _groupnorm_models(tmp_path)
    torch.manual_seed(0)
    result = import_spec(f"{source}:net", (3, 16, 16))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["layers"][1] == {"gn": {"groupnorm": {"groups": 2, "eps": 1.0e-6}}}
    (kind,) = spec["blocks"].values()
    (norm,) = [e["norm"] for e in kind["layers"] if "norm" in e]
    assert set(norm) == {"groupnorm"} and set(norm["groupnorm"]) == {"groups"}  # eps 1e-5: left out
    built = build(load_spec_text(result.text), "torch")
    assert [(m.num_groups, m.num_channels, m.eps) for m in built.modules() if isinstance(m, torch.nn.GroupNorm)] == [
        (2, 8, 1e-6), (4, 16, 1e-5), (8, 32, 1e-5)
    ]  # fmt: skip
    assert_rebuilds(_random_group_norms(namespace["net"]()), result.text, (3, 16, 16))


def test_timm_group_norm_act_round_trip(tmp_path):
    """timm's GroupNormAct (an nn.GroupNorm that applies its child `act`) is a group norm under
    the module's name and an activation `bn1_act`; GroupNorm1Act without an activation is one
    group and nothing after it. In a numbered nn.Sequential the activation would shift the
    numbers: one line naming the module."""
    need("timm")
    source, namespace = _groupnorm_models(tmp_path)
    torch.manual_seed(0)
    result = import_spec(f"{source}:timm_net", (3, 16, 16))
    assert result.diff is not None and result.diff <= 1e-5
    layers = yaml.safe_load(result.text)["layers"]
    assert layers == [
        {"conv1": {"conv": {"filters": 12, "kernel": 3, "padding": 1}}}, {"bn1": {"groupnorm": {"groups": 3}}}, {"bn1_act": "silu"},
        {"conv2": {"conv": {"filters": 8, "kernel": 1}}}, {"bn2": {"groupnorm": {"groups": 1}}},
    ]  # fmt: skip
    assert_rebuilds(_random_group_norms(namespace["timm_net"]()), result.text, (3, 16, 16))
    for factory, what in [("numbered_act", "1: GroupNormAct in a numbered nn.Sequential"), ("no_affine", "GroupNorm(affine=False)")]:
        result = CliRunner().invoke(main, ["import", f"{source}:{factory}", "--input", "3,8,8"])
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1 and what in result.output, result.output


def _randomised(model):
    """randomise() for every batch norm (the video models' BatchNorm3d too)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
    return model.eval()


def _assert_rebuilds_dict(reference, text, input_shape):
    """assert_rebuilds for a model that returns a dict of maps (torchvision's segmentation)."""
    ours = build(load_spec_text(text), "torch").eval()
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        want, got = reference(x), ours(x)
    assert isinstance(want, dict) and isinstance(got, dict) and list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape == (2, 21, *input_shape[1:])
        assert float((want[key] - got[key]).abs().max() / want[key].abs().max()) <= 1e-5


VIDEO = (3, 4, 32, 32)  # 4 frames of 32x32: every layer of the video ResNets takes it


# torchvision/models/video/resnet.py: basic blocks [2, 2, 2, 2]; conv_makers per stage
VIDEO_BLOCKS = {
    "mc3_18": ({"basic_block"}, "basic_stem"),  # Conv3DSimple in layer1, Conv3DNoTemporal (1x3x3) after
    "r3d_18": ({"basic_block"}, "basic_stem"),
    "r2plus1d_18": ({"basic_block", "conv2_plus1_d"}, "r2_plus1d_stem"),  # (2+1)D: a 1x3x3 then a 3x1x1 conv
}


@pytest.mark.parametrize("name", ["mc3_18", *(pytest.param(n, marks=pytest.mark.slow) for n in ("r3d_18", "r2plus1d_18"))])
def test_video_resnet_round_trip(name):
    """torchvision's video ResNets: their convs are nn.Conv3d subclasses that keep Conv3d's
    forward (Conv3DSimple, Conv3DNoTemporal: only a staticmethod added), so each is a conv
    layer; mc3_18's and r2plus1d_18's strides are 1x2x2 inside their block kinds (frames
    kept), as `stride: [1, stride, stride]`, their downsample written out."""
    torch.manual_seed(0)
    result = import_spec(f"torchvision:{name}", VIDEO)
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    kinds, stem = VIDEO_BLOCKS[name]
    assert set(spec["blocks"]) == kinds | {stem}
    assert spec["layers"][0] == {"stem": {"block": stem}}
    assert stages(spec["layers"]) == [("basic_block", 2)] * 4
    if name == "mc3_18":  # layer1's 3x3x3 kernels, 1x3x3 after: one kind, the depth a parameter
        conv = spec["blocks"]["basic_block"]["layers"][0]["conv1"][0]["conv"]
        assert conv["kernel"] == ["conv_kernel_d", 3, 3] and conv["padding"] == ["conv_kernel_d // 2", 1, 1]
        assert conv["stride"] == [1, "stride", "stride"]
    assert_rebuilds(_randomised(torchvision.models.get_model(name)), result.text, VIDEO)


CONV_SUBCLASS_PY = """
import torch
from torch import nn


class Conv3x3(nn.Conv2d):  # as torchvision's Conv3DSimple: only a staticmethod added
    def __init__(self, cin, cout):
        super().__init__(cin, cout, 3, padding=1, bias=False)

    @staticmethod
    def get_downsample_stride(stride):
        return stride


class Shifted(nn.Conv2d):  # computes otherwise: its own forward
    def forward(self, x):
        return super().forward(x) + 1


class Net(nn.Module):
    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv(x))


def plain():
    return Net(Conv3x3(3, 8))


def shifted():
    return Net(Shifted(3, 8, 1))
"""


def test_conv_subclass_keeping_the_forward_is_a_conv(tmp_path):
    """A subclass of nn.Conv2d that keeps its forward is a conv layer; one that overrides it
    is a module of its own (here refused in one line: its forward calls conv2d)."""
    source = tmp_path / "convs.py"
    source.write_text(CONV_SUBCLASS_PY)
    result = import_spec(f"{source}:plain", (3, 8, 8))
    spec = yaml.safe_load(result.text)
    assert "blocks" not in spec and spec["layers"][0] == {"conv": {"conv": {"filters": 8, "kernel": 3, "padding": 1}}}
    out = tmp_path / "shifted.yaml"
    run = CliRunner().invoke(main, ["import", f"{source}:shifted", "--input", "3,8,8", "-o", str(out)])
    assert run.exit_code == 2 and not out.exists()
    assert run.output.strip() == f"archc: error: cannot import {source}:shifted: conv: Shifted: forward calls conv2d, which archc has no layer for"


# make test round-trips lraspp (below: taps, a block of two inputs, a dict output) as the
# segmentation family's representative; the ResNet-50 ones, 4x its cost, run in make test-slow
@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_segmentation_round_trip(name):
    """torchvision's FCN and DeepLabV3: the backbone is an IntermediateLayerGetter (a list of
    the ResNet's children returning {"out": layer4}), read by `features["out"]`; the head's
    output resized to the input's size (F.interpolate(x, size=x.shape[-2:])) is returned as
    {"out": ...}: the spec's `outputs:`. DeepLabV3's ASPP concatenates its module list
    `convs` (a `parallel:` entry), its pooling branch resizing back to its input's size."""
    torch.manual_seed(0)
    result = import_spec(f"torchvision:{name}", SMALL, {"weights_backbone": None})
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["layers"][-1] == {"resize": {"resize": {"like": "input", "mode": "bilinear"}}}
    assert spec["outputs"] == {"out": "resize"}
    assert stages(spec["layers"][0]["backbone"]) == [("bottleneck", n) for n in (3, 4, 6, 3)]
    if name == "deeplabv3_resnet50":
        convs = spec["blocks"]["aspp"]["layers"][0]["convs"]["parallel"]
        assert len(convs) == 5 and convs[1:] == [{"block": "aspp_conv", "with": {"dilation": d}} for d in (12, 24, 36)] + [{"block": "aspp_pooling"}]
    reference = torchvision.models.get_model(name, weights=None, weights_backbone=None)
    _assert_rebuilds_dict(_randomised(reference), result.text, SMALL)


@pytest.mark.slow
def test_segmentation_aux_head_reads_a_tap():
    """fcn_resnet50(aux_loss=True): the getter also returns layer3 as "aux", read by the aux
    head: `from: backbone.layer3`, a second output."""
    result = import_spec("torchvision:fcn_resnet50", SMALL, {"weights_backbone": None, "aux_loss": True}, check=False)
    spec = yaml.safe_load(result.text)
    assert spec["layers"][-2] == {"aux_classifier": {"block": "fcn_head", "from": "backbone.layer3"}}
    assert spec["outputs"] == {"out": "resize", "aux": "resize1"}
    reference = torchvision.models.get_model("fcn_resnet50", weights=None, weights_backbone=None, aux_loss=True)
    _assert_rebuilds_dict(_randomised(reference), result.text, SMALL)


def test_lraspp_head_is_a_block_of_two_inputs():
    """lraspp_mobilenet_v3_large: the getter returns {"low": features 4, "high": features 16};
    its head reads that dict by name: a block kind with `inputs: [low, high]`, given
    `from: [backbone.4, backbone]` (16 is the list's last child), resizing like `low`."""
    torch.manual_seed(0)
    result = import_spec("torchvision:lraspp_mobilenet_v3_large", SMALL, {"weights_backbone": None})
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    head = spec["blocks"]["lraspp_head"]
    assert head["inputs"] == ["low", "high"]
    assert {"resize": {"resize": {"like": "low", "mode": "bilinear"}}} in head["layers"]
    assert spec["layers"][1] == {"classifier": {"block": "lraspp_head", "from": ["backbone.4", "backbone"]}}
    reference = torchvision.models.get_model("lraspp_mobilenet_v3_large", weights=None, weights_backbone=None)
    _assert_rebuilds_dict(_randomised(reference), result.text, SMALL)


SPLIT_ATTN_PY = """
from torch import nn
from timm.layers import SplitAttn


def net():
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16), SplitAttn(16, 16, radix=2, groups=2, norm_layer=nn.BatchNorm2d),
                         SplitAttn(16, 32, radix=4, norm_layer=nn.BatchNorm2d))
"""


def test_split_attention_is_slices_and_a_radix_softmax(tmp_path):
    """timm's SplitAttn (ResNeSt): the view of its R splits summed over dim 1, the RadixSoftmax
    and the weighted sum of the splits become channel slices, adds, `softmax: {radix,
    cardinality}` and multiplies; rebuilt exactly at radix 2 and 4, cardinality 2 and 1."""
    need("timm")
    source = tmp_path / "splat.py"
    source.write_text(SPLIT_ATTN_PY)
    namespace = {}
    exec(compile(SPLIT_ATTN_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    result = import_spec(f"{source}:net", (3, 16, 16))
    assert result.diff is not None and result.diff <= 1e-5
    layers = yaml.safe_load(result.text)["blocks"]["split_attn"]["layers"]
    assert any("softmax" in str(e) and "radix" in str(e) for e in layers), layers
    assert any("slice" in str(e) for e in layers)
    assert_rebuilds(randomise(namespace["net"]()), result.text, (3, 16, 16))


# --- initialisation rules (archc.importer.init) ------------------------------------------------
# The zoo's hand-written `defaults:` rules were read off torchvision's source (resnet.py's
# kaiming_normal_(mode="fan_out", nonlinearity="relu"), mobilenetv2.py's normal_(0, 0.01) for the
# Linear, efficientnet.py's uniform(+-1/sqrt(out_features)), convnext.py's trunc_normal_(std=0.02)):
# the importer, which sees only the tensors, must find the same distributions.
ZOO_INIT = {"resnet18": "resnet50", "mobilenet_v2": "mobilenet_v2", "efficientnet_b0": "efficientnet", "convnext_tiny": "convnext"}


def zoo_rules(spec_name):
    """(kind, role) -> the distribution the zoo spec's `defaults:` states (unset: torch_default)."""
    from pydantic import TypeAdapter

    from archc.importer.init import KINDS, canonical
    from archc.ops.init import default_init
    from archc.spec.init_rules import InitSpec

    defaults = yaml.safe_load((ROOT / "specs" / f"{spec_name}.yaml").read_text())["defaults"]
    out = {}
    for kind in KINDS:
        written = defaults.get(kind, {}).get("init")
        pair = default_init(None if written is None else TypeAdapter(InitSpec).validate_python(written))
        out.update({(kind, role): canonical(getattr(pair, role), kind, role) for role in ("weight", "bias")})
    return out


@pytest.mark.parametrize("name", list(ZOO_INIT))
def test_recognised_init_rules_are_the_zoo_specs(name):
    from archc.importer.init import MIN, recognise, tensors

    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None)
    found, want = recognise(model), zoo_rules(ZOO_INIT[name])
    present = {key for key, group in tensors(model).items() if max(t.n for t in group) >= MIN}
    assert present and {(kind, role) for kind, roles in found.items() for role in roles} == present
    assert {key: found[key[0]][key[1]] for key in present} == {key: want[key] for key in present}


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_imported_init_rules_rebuild_the_distributions(name):
    """The imported spec, built by archc, draws tensors that the zoo's (torchvision's) rules
    accept; the same spec without its `init:` rules draws tensors they refute."""
    from archc.importer.init import refutes, tensors

    torch.manual_seed(0)
    text = import_spec(f"torchvision:{name}", SMALL, check=False).text
    want = zoo_rules(ZOO_INIT[name])
    built = tensors(build(load_spec_text(text), "torch"))
    original = tensors(torchvision.models.get_model(name, weights=None))
    assert set(built) == set(original)
    for key, group in built.items():
        assert not refutes(want[key], original[key]), key
        assert not refutes(want[key], group), key
    spec = yaml.safe_load(text)
    for kind in spec["defaults"]:
        spec["defaults"][kind].pop("init", None)
    stripped = tensors(build(load_spec_text(yaml.safe_dump(spec, sort_keys=False)), "torch"))
    assert refutes(want[("conv", "weight")], stripped[("conv", "weight")])


CUSTOM_INIT_PY = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self, odd=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)  # 64 channels: biases large enough to decide
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 100)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.05)
                nn.init.constant_(m.bias, 0.1)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 0.5)
            elif isinstance(m, nn.Linear):
                nn.init.uniform_(m.weight, -0.2, 0.2)
        if odd:  # one conv unlike the other: no rule fits every conv
            nn.init.kaiming_uniform_(self.conv2.weight)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        return self.fc(self.pool(x).flatten(1))


def net(odd=False):
    return Net(odd)
'''


def test_custom_init_rules_are_recognised(tmp_path):
    source = tmp_path / "custom.py"
    source.write_text(CUSTOM_INIT_PY)
    torch.manual_seed(0)
    defaults = yaml.safe_load(import_spec(f"{source}:net", (3, 32, 32)).text)["defaults"]
    assert defaults["conv"]["init"] == {"weight": {"normal": {"std": 0.05}}, "bias": {"constant": 0.1}}
    assert defaults["batchnorm"]["init"] == {"weight": {"constant": 0.5}, "bias": "zeros"}
    assert defaults["dense"]["init"] == {"weight": {"uniform": {"a": -0.2, "b": 0.2}}, "bias": "torch_default"}
    torch.manual_seed(0)
    odd = yaml.safe_load(import_spec(f"{source}:net", (3, 32, 32), {"odd": True}).text)["defaults"]
    assert odd["conv"]["init"] == {"bias": {"constant": 0.1}} and odd["dense"]["init"] == defaults["dense"]["init"]


def test_timm_init_rules():
    """timm's own rules, read off its source: efficientnet.py's _init_weight_goog draws convs
    from normal(0, sqrt(2 / fan_out)) with fan_out = k * k * out_channels // groups (archc's
    group_fan_out) and the classifier from uniform(+-1/sqrt(out_features)); resnet.py's
    zero_init_last starts each block's last batch norm at zero, the others at one, so no
    one batch-norm weight rule fits."""
    timm = need("timm")
    from archc.importer.init import recognise

    torch.manual_seed(0)
    found = recognise(timm.create_model("efficientnet_b0", pretrained=False))
    assert found["conv"]["weight"] == ("fan", "normal", "group_fan_out", 2.0)
    assert found["dense"] == {"weight": ("fan", "uniform", "fan_out", 1.0 / 3), "bias": ("constant", 0.0)}
    found = recognise(timm.create_model("resnet18", pretrained=False))
    assert found["batchnorm"] == {"bias": ("constant", 0.0)}
    assert found["conv"]["weight"] == ("fan", "normal", "fan_out", 2.0)


STD_CONV_PY = """
import torch
from timm.layers import ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d
from torch import nn


class Unit(nn.Module):  # BiT's pre-activation unit, and NFNet's scaled conv
    def __init__(self, cin, width):
        super().__init__()
        self.norm = nn.GroupNorm(2, cin)
        self.conv = StdConv2d(cin, width, 3, padding=1, eps=1e-8)
        self.scaled = ScaledStdConv2d(width, width, 1, gamma=1.7139, eps=1e-6)

    def forward(self, x):
        return self.scaled(torch.relu(self.conv(torch.relu(self.norm(x)))))


def net():  # BiT's stem: a standardized 7x7 conv, a zero ConstantPad2d, then an unpadded max pool
    return nn.Sequential(StdConv2d(3, 8, 7, stride=2, padding=3, eps=1e-8), nn.ConstantPad2d(1, 0.0), nn.MaxPool2d(3, 2),
                         Unit(8, 16), Unit(16, 16), ScaledStdConv2dSame(16, 16, 3))  # stride 1: "SAME" is padding 1


def padded():
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ConstantPad2d((1, 2, 0, 3), 0.0), nn.ZeroPad2d(2))


def valued():
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ConstantPad2d(1, 0.5))
"""


def test_timm_standardized_convs_round_trip(tmp_path):
    """timm's StdConv2d is a conv with `standardize: true` and its eps, ScaledStdConv2d one with
    `gain: true` and its gamma (read back from timm's scale); their weights and gains load
    under the same keys and the outputs are timm's. nn.ConstantPad2d of zeros is a zeropad,
    uneven ones as [[top, bottom], [left, right]]; of another value it is refused."""
    need("timm")
    source = tmp_path / "std_conv.py"
    source.write_text(STD_CONV_PY)
    result = import_spec(f"{source}:net", (3, 32, 32))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["layers"][0] == {"conv": {"filters": 8, "kernel": 7, "stride": 2, "padding": 3, "standardize": True, "eps": 1e-8}}
    assert spec["layers"][1] == {"zeropad": {"padding": 1}}
    assert spec["layers"][-1] == {"conv": {"filters": 16, "kernel": 3, "padding": 1, "bias": True, "standardize": True, "eps": 1e-6, "gain": True}}
    layers = {name: body for item in spec["blocks"]["unit"]["layers"] for name, body in item.items()}
    assert layers["conv"]["conv"] | {"filters": None} == {"filters": None, "kernel": 3, "padding": 1, "standardize": True, "eps": 1e-8}
    assert layers["scaled"]["conv"] | {"filters": None} == {"filters": None, "kernel": 1, "bias": True, "standardize": True,
                                                            "eps": 1e-6, "gain": True, "gamma": 1.7139}  # fmt: skip
    namespace = {}
    exec(compile(STD_CONV_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    reference = namespace["net"]()
    with torch.no_grad():
        for m in reference.modules():
            if hasattr(m, "gain"):
                m.gain.uniform_(0.5, 1.5)  # not the ones it starts at
    assert_rebuilds(reference.eval(), result.text, (3, 32, 32))
    padded = import_spec(f"{source}:padded", (3, 8, 8))
    assert padded.diff is not None and padded.diff <= 1e-5
    assert yaml.safe_load(padded.text)["layers"][1:] == [
        {"zeropad": {"padding": [[0, 3], [1, 2]]}}, {"zeropad": {"padding": 2}},
    ]  # fmt: skip
    refused = CliRunner().invoke(main, ["import", f"{source}:valued", "--input", "3,8,8"])
    assert refused.exit_code == 2 and "1: ConstantPad2d(value=0.5) (archc's zeropad pads with zeros)" in refused.output, refused.output


RMS_NORM_PY = """
from timm.layers import RmsNorm2d
from torch import nn


class Block(nn.Module):  # convnext_atto_rms: RmsNorm2d on the map; nn.RMSNorm on a channels-last one
    def __init__(self, channels):
        super().__init__()
        self.norm = RmsNorm2d(channels, eps=1e-6)
        self.last = nn.RMSNorm(channels, eps=1e-5)

    def forward(self, x):
        x = self.norm(x)
        return self.last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), Block(8), Block(8))


def unscaled():
    return nn.Sequential(nn.Conv2d(3, 8, 1), RmsNorm2d(8, affine=False))
"""


def test_rms_norms_round_trip(tmp_path):
    """timm's RmsNorm2d (a map's channels) and nn.RMSNorm (the last axis) are `rmsnorm` layers
    with their eps; their weights load under the same keys; one without a weight is refused."""
    need("timm")
    source = tmp_path / "rms.py"
    source.write_text(RMS_NORM_PY)
    result = import_spec(f"{source}:net", (3, 16, 16))
    assert result.diff is not None and result.diff <= 1e-5
    block = yaml.safe_load(result.text)["blocks"]["block"]["layers"]
    assert {"norm": {"rmsnorm": {"eps": 1e-6}}} in block and {"last": {"rmsnorm": {"eps": 1e-5}}} in block
    namespace = {}
    exec(compile(RMS_NORM_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    reference = namespace["net"]()
    with torch.no_grad():
        for m in reference.modules():
            if "RmsNorm" in type(m).__name__ or isinstance(m, torch.nn.RMSNorm):
                m.weight.uniform_(0.5, 1.5)  # not the ones they start at
    assert_rebuilds(reference.eval(), result.text, (3, 16, 16))
    refused = CliRunner().invoke(main, ["import", f"{source}:unscaled", "--input", "3,8,8"])
    assert refused.exit_code == 2 and "1: RmsNorm2d((8,)) over more than the channels, or without a weight" in refused.output, refused.output


GLOBAL_CONTEXT_PY = """
import torch
from timm.layers import GlobalContext
from torch import nn


class Unit(nn.Module):  # timm's byobnet BottleneckBlock with attn_layer='gca' (gcresnet33ts)
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.attn = GlobalContext(channels, fuse_add=True, fuse_scale=False)

    def forward(self, x):
        return torch.relu(self.attn(self.conv(x)) + x)


def net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), Unit(16), Unit(16), GlobalContext(16, fuse_add=True, fuse_scale=True, rd_channels=4))


def mean():
    return nn.Sequential(nn.Conv2d(3, 16, 1), GlobalContext(16, use_attn=False))
"""


def test_timm_global_context_round_trip(tmp_path):
    """timm's GlobalContext (GCNet) is a `global_context` layer with its MLP width, its layer
    norm's eps and how it fuses (add, scale or both); its keys are timm's, its outputs timm's
    (MLPs randomised: timm starts mlp_add's fc2 at zeros, which would hide the context); the
    mean-pooled form (use_attn=False) is refused."""
    need("timm")
    source = tmp_path / "gc.py"
    source.write_text(GLOBAL_CONTEXT_PY)
    result = import_spec(f"{source}:net", (3, 16, 16))
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert spec["layers"][-1] == {"global_context": {"rd_channels": 4, "eps": 1e-6, "fuse_add": True}}  # timm LayerNorm2d eps
    unit = {name: body for item in spec["blocks"]["unit"]["layers"] for name, body in item.items()}
    assert unit["attn"] == {"global_context": {"rd_channels": 2, "eps": 1e-6, "fuse_add": True, "fuse_scale": False}}
    namespace = {}
    exec(compile(GLOBAL_CONTEXT_PY, str(source), "exec"), namespace)
    torch.manual_seed(0)
    reference = namespace["net"]()
    with torch.no_grad():
        for name, p in reference.named_parameters():
            if "mlp" in name:
                p.uniform_(0.5, 1.5) if "norm.weight" in name else p.normal_(0, 0.5)
    assert_rebuilds(reference.eval(), result.text, (3, 16, 16))
    refused = CliRunner().invoke(main, ["import", f"{source}:mean", "--input", "3,8,8"])
    assert refused.exit_code == 2 and "1: GlobalContext(use_attn=False) (a mean context)" in refused.output, refused.output


# bench/import_coverage.py's timm list, per timm module: how many of its models import
# exactly (bench/RESULTS.md §11, third run: 119 of 131, 91%, against issue 22's 80%)
TIMM_EXACT = {
    "resnet": 5, "resnetv2": 5, "efficientnet": 5, "mobilenetv3": 5, "regnet": 5, "convnext": 4, "densenet": 5, "dla": 5,
    "dpn": 5, "ghostnet": 5, "hrnet": 0, "rexnet": 5, "res2net": 5, "resnest": 5, "selecsls": 5, "sknet": 5, "senet": 5,
    "vgg": 5, "xception": 1, "xception_aligned": 5, "inception_v3": 1, "byobnet": 4, "cspnet": 5, "vovnet": 5, "nfnet": 0,
    "repghost": 5, "hardcorenas": 5, "tresnet": 4,
}  # fmt: skip


@functools.cache
def _coverage_rows() -> tuple:
    spec = importlib.util.spec_from_file_location("import_coverage", ROOT / "bench" / "import_coverage.py")
    coverage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(coverage)
    assert set(coverage.TIMM_MODULES) == set(TIMM_EXACT)
    return tuple(row for row in coverage.rows() if row[0].startswith("timm"))


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(TIMM_EXACT))
def test_the_timm_coverage_list(module):
    """The timm list of bench/import_coverage.py (for each module of its TIMM_MODULES the first
    models by name, chosen by that rule before anything is imported; its inputs), one timm
    module at a time: as many import exactly as the bench's table says (the import's own
    check: the spec, built by archc, loads timm's state_dict strictly and gives its outputs),
    and every other is refused in one line naming it, never an archc bug (any other exception
    fails the test)."""
    from archc.errors import SpecError

    need("timm")
    assert sum(TIMM_EXACT.values()) >= 0.8 * len(_coverage_rows()) and len(_coverage_rows()) >= 100
    exact, refused = 0, {}
    for _, source, args, shape in (row for row in _coverage_rows() if row[0] == f"timm-{module}"):
        try:
            result = import_spec(source, shape, args)
        except SpecError as e:
            refused[source] = str(e)
        else:
            assert result.diff is not None and result.diff <= 1e-5
            exact += 1
        gc.collect()
    for source, message in refused.items():
        assert message.startswith(f"cannot import {source}: ") and "\n" not in message, message
    assert exact >= TIMM_EXACT[module], refused


@pytest.mark.slow
def test_timm_vgg_pools_its_small_map_up_to_the_heads_kernel():
    """timm's vgg11_bn at 3x64x64: the features give 2x2, which ConvMlp pools up to 7x7 for its
    7x7 conv `fc1`; the spec has that pool and says the branch is this input's."""
    # the helpers of the main environment's tests of sizes, which has no timm
    from test_import_sizes import layers_of, same_model

    timm = need("timm")
    torch.manual_seed(0)
    result = import_spec("timm:vgg11_bn", (3, 64, 64))
    assert result.diff is not None and result.diff <= 1e-5 and result.input_only
    spec = yaml.safe_load(result.text)
    assert layers_of(spec, "conv_mlp")[:2] == [{"adaptive_avgpool": {"size": 7}}, {"conv": {"filters": 4096, "kernel": 7, "bias": True}}]
    assert "#   pre_logits (ConvMlp, input 512x2x2): x.shape[-2] < 7 is True; x.shape[-2] > 7 is False; x.shape[-1] > 7 is False" in result.text
    reference = timm.create_model("vgg11_bn", pretrained=False)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    same_model(result.text, reference, (3, 64, 64))
