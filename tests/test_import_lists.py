"""`archc import` of a block whose forward calls the entries of an nn.ModuleList child one at a
time, between other ops (timm's Res2Net Bottle2neck: torch.split into parts, each part plus the
previous part's output through convs[i], bns[i] and a shared ReLU, then a concat): each entry is
written where forward calls it (`convs.1: {...}`), on a small hand-written module. The import is
checked here independently of the importer's own check: the spec, compiled by archc, loads the
module's state_dict strictly and gives its outputs. Needs torch."""

import pytest
import yaml
from conftest import need

torch = need("torch")

from archc.api import build  # noqa: E402
from archc.errors import SpecError  # noqa: E402
from archc.importer import import_spec  # noqa: E402
from archc.spec.loader import load_spec_text  # noqa: E402

SOURCE = '''
import torch
from torch import nn


class Bottle2neck(nn.Module):  # timm's Res2Net block, its scale and width as arguments
    def __init__(self, channels, width, scale, stride=1, reverse=False):
        super().__init__()
        self.width, self.scale, self.reverse = width, scale, reverse
        self.is_first = stride > 1
        self.conv1 = nn.Conv2d(channels, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False) for _ in range(scale - 1)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(scale - 1)])
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if self.is_first else None
        self.conv3 = nn.Conv2d(width * scale, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        spo = []
        sp = spx[0]
        pairs = list(zip(self.convs, self.bns))
        for i, (conv, bn) in enumerate(pairs[::-1] if self.reverse else pairs):
            sp = spx[i] if i == 0 or self.is_first else sp + spx[i]
            sp = self.relu(bn(conv(sp)))
            spo.append(sp)
        spo.append(self.pool(spx[-1]) if self.pool is not None else spx[-1])
        out = self.bn3(self.conv3(torch.cat(spo, 1)))
        if not self.is_first:
            out = out + x
        return self.relu(out)


class Attn(nn.Module):  # timm's SelectiveKernelAttn: reads the stacked paths (N, P, C, H, W)
    def __init__(self, channels, paths, reduced):
        super().__init__()
        self.num_paths = paths
        self.fc_reduce = nn.Conv2d(channels, reduced, 1, bias=False)
        self.bn = nn.BatchNorm2d(reduced)
        self.act = nn.ReLU(inplace=True)
        self.fc_select = nn.Conv2d(reduced, channels * paths, 1, bias=False)

    def forward(self, x):
        torch._assert(x.shape[1] == self.num_paths, "")
        x = x.sum(1).mean((2, 3), keepdim=True)
        x = self.fc_select(self.act(self.bn(self.fc_reduce(x))))
        B, C, H, W = x.shape
        x = x.view(B, self.num_paths, C // self.num_paths, H, W)
        return torch.softmax(x, dim=1)


class SelectiveKernel(nn.Module):  # timm's: each path on its part of the input, stacked on a new axis
    def __init__(self, channels, out, paths, split_input=True):
        super().__init__()
        self.split_input, self.channels, self.num_paths = split_input, channels, paths
        part = channels // paths if split_input else channels
        self.paths = nn.ModuleList([
            nn.Sequential(nn.Conv2d(part, out, 3, padding=k + 1, dilation=k + 1, bias=False), nn.BatchNorm2d(out), nn.ReLU())
            for k in range(paths)
        ])
        self.attn = Attn(out, paths, 4)

    def forward(self, x):
        if self.split_input:
            parts = torch.split(x, self.channels // self.num_paths, 1)
            x_paths = [op(parts[i]) for i, op in enumerate(self.paths)]
        else:
            x_paths = [op(x) for op in self.paths]
        x = torch.stack(x_paths, dim=1)
        x = x * self.attn(x)
        return torch.sum(x, dim=1)


def sknet():
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), SelectiveKernel(6, 6, 3), SelectiveKernel(6, 4, 2, split_input=False))


def res2net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Bottle2neck(8, 3, 3, stride=2), Bottle2neck(8, 3, 3))


def reversed_lists():
    return nn.Sequential(Bottle2neck(3, 2, 3, reverse=True))
'''
INPUT = (3, 16, 16)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("lists") / "res2netish.py"
    path.write_text(SOURCE)
    namespace = {}
    exec(compile(SOURCE, str(path), "exec"), namespace)
    return path, namespace


def exact(namespace, factory, text):
    """The spec, built by archc, loads the module's state_dict strictly and gives its outputs."""
    gen = torch.Generator().manual_seed(1)
    reference = namespace[factory]()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    reference.eval()
    ours = build(load_spec_text(text), "torch")
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT, generator=gen)
    with torch.no_grad():
        want, got = reference(x), ours.eval()(x)
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5


def test_module_list_entries_called_one_at_a_time_round_trip(source):
    path, namespace = source
    torch.manual_seed(0)
    result = import_spec(f"{path}:res2net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    (chained,) = [kind["layers"] for kind in spec["blocks"].values() if any("add" in next(iter(e.values())) for e in kind["layers"] if isinstance(e, dict))]
    names = [next(iter(e)) for e in chained]
    # each entry where forward calls it; the ReLU called again while its first output is still
    # sliced takes a name of its own, so the slices read the first
    assert names[:9] == ["conv1", "bn1", "relu", "split1", "convs.0", "bns.0", "relu1", "split2", "add"]
    assert names[9:12] == ["convs.1", "bns.1", "relu2"]
    assert chained[7]["split2"]["from"] == "relu"
    exact(namespace, "res2net", result.text)


def test_paths_stacked_on_a_new_axis_are_their_concatenation(source):
    """timm's SelectiveKernel: paths on parts of the input (or all of it), stacked on dim 1, an
    attention child that reads the stack (sum over the paths, softmax over them), the stack
    times it summed over the paths: a concat, slices, products and adds, and in the child
    `softmax: {radix: P}`."""
    path, namespace = source
    torch.manual_seed(0)
    result = import_spec(f"{path}:sknet", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    # its `torch._assert(x.shape[1] == num_paths)` holds at the input and takes no branch: the
    # spec is not one of those exact at their input only (archc/importer/sizes.py)
    assert not result.input_only and "this input only" not in result.text
    spec = yaml.safe_load(result.text)
    blocks = spec["blocks"]
    attn = blocks["attn"]["layers"]
    assert [next(iter(e)) for e in attn][:5] == ["split1", "split2", "split3", "add", "add1"]  # the sum over 3 paths
    assert attn[-1] == {"softmax": {"softmax": {"radix": 3, "cardinality": 1}}}
    assert blocks["attn_2"]["layers"][-1] == {"softmax": {"softmax": {"radix": 2, "cardinality": 1}}}
    kernel = [next(iter(e)) for e in blocks["selective_kernel"]["layers"]]
    assert kernel[:7] == ["split1", "paths.0", "split2", "paths.1", "split3", "paths.2", "cat"]
    assert kernel[-3:] == ["multiply2", "add", "add1"]
    assert [next(iter(e)) for e in blocks["selective_kernel_2"]["layers"]][:2] == ["paths", "attn"]  # one input: a module list
    exact(namespace, "sknet", result.text)


def test_entries_called_out_of_their_order_are_refused(source):
    """A spec writes `convs.0`, `convs.1` in the order forward calls them, so a forward that
    calls convs[1] first is refused in one line, naming the list and the order."""
    path, _ = source
    with pytest.raises(SpecError, match=r"0: Bottle2neck: forward calls the entries \[1, 0\] of convs \(2 entries\) one at a time"):
        import_spec(f"{path}:reversed_lists", INPUT)
