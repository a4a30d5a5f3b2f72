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


def res2net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), Bottle2neck(8, 3, 3, stride=2), Bottle2neck(8, 3, 3), Bottle2neck(8, 3, 3))


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
    gen = torch.Generator().manual_seed(1)
    reference = namespace["res2net"]()
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    reference.eval()
    ours = build(load_spec_text(result.text), "torch")
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT, generator=gen)
    with torch.no_grad():
        want, got = reference(x), ours.eval()(x)
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5


def test_entries_called_out_of_their_order_are_refused(source):
    """A spec writes `convs.0`, `convs.1` in the order forward calls them, so a forward that
    calls convs[1] first is refused in one line, naming the list and the order."""
    path, _ = source
    with pytest.raises(SpecError, match=r"0: Bottle2neck: forward calls the entries of convs in the order \[1, 0\]"):
        import_spec(f"{path}:reversed_lists", INPUT)
