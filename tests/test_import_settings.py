"""`archc import` of the idioms timm's CNNs are built from, on small hand-written modules:
forward settings (`forward(self, x, pre_logits=False)`), placeholder nn.Identity children,
an activation that differs between instances of one class, and a classifier head that is a
1x1 conv of the pooled map before a flatten (timm's ClassifierHead with `use_conv`). Each
import is checked here independently of the importer's own check: the spec, compiled by
archc, loads the module's state_dict strictly and gives its outputs. Needs torch (runs in
.tvenv with the other import tests)."""

import pytest
import yaml
from conftest import need

torch = need("torch")

from archc.api import build  # noqa: E402
from archc.errors import SpecError  # noqa: E402
from archc.importer import import_spec  # noqa: E402
from archc.spec.loader import load_spec_text  # noqa: E402

SOURCE = '''
from torch import nn


class Head(nn.Module):  # timm's ClassifierHead: a setting after the tensor, and a 1x1 conv "fc"
    def __init__(self, channels, classes):
        super().__init__()
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, classes, 1, bias=True)
        self.flatten = nn.Flatten(1)

    def forward(self, x, pre_logits: bool = False):
        x = self.global_pool(x)
        if pre_logits:
            return self.flatten(x)
        return self.flatten(self.fc(x))


class Block(nn.Module):  # timm's InvertedResidual: `se` an nn.Identity in some instances, the activation varies
    def __init__(self, channels, hard, se):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.Hardswish() if hard else nn.ReLU()
        self.se = nn.Sequential(nn.Conv2d(channels, channels, 1), nn.Sigmoid()) if se else nn.Identity()

    def forward(self, x):
        return self.se(self.act(self.bn(self.conv(x))))


class Net(nn.Module):
    def __init__(self, pre_logits=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(Block(8, False, False), Block(8, False, True), Block(8, True, True), Block(8, True, False))
        self.head = Head(8, 10)
        self.pre_logits = pre_logits

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(x, pre_logits=True) if self.pre_logits else self.head(x)


class XceptionBlock(nn.Module):  # timm's XceptionModule: a shortcut where strided, the sum only where it starts with relu
    def __init__(self, channels, stride, residual):
        super().__init__()
        self.stack = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 3, stride=stride, padding=1))
        self.shortcut = nn.Conv2d(channels, channels, 1, stride=stride) if stride != 1 else None
        self.residual = residual

    def forward(self, x):
        skip = x
        x = self.stack(x)
        if self.shortcut is not None:
            skip = self.shortcut(skip)
        if self.residual:
            x = x + skip
        return x


def xception():
    return nn.Sequential(XceptionBlock(3, 2, True), XceptionBlock(3, 1, True), XceptionBlock(3, 1, False))


def net():
    return Net()


def pre_logits():
    return Net(pre_logits=True)
'''
INPUT = (3, 32, 32)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("settings") / "timmish.py"
    path.write_text(SOURCE)
    namespace = {}
    exec(compile(SOURCE, str(path), "exec"), namespace)
    return path, namespace


def randomised(model):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.eval()


def test_settings_placeholders_and_varied_activations_round_trip(source):
    path, namespace = source
    torch.manual_seed(0)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    # the placeholder nn.Identity is no layer; the activation is one entry per function, each
    # under the condition of its instances
    block = spec["blocks"]["block"]["layers"]
    names = [next(iter(e)) for e in block]
    assert "se" in names and sum(n == "se" for n in names) == 1
    acts = [e for e in block if next(iter(e)) in ("act_relu", "act_hardswish")]
    assert len(acts) == 2 and all("if" in next(iter(e.values())) for e in acts), block
    # the head: pool, 1x1 conv, flatten in one block kind (its map is one position throughout)
    head = [next(iter(e)) for e in spec["blocks"]["head"]["layers"]]
    assert head == ["global_pool", "fc", "flatten"]
    reference = randomised(namespace["net"]())
    ours = build(load_spec_text(result.text), "torch")
    assert list(ours.state_dict()) == list(reference.state_dict())
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        want, got = reference(x), ours.eval()(x)
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5


def test_a_setting_other_than_the_default_is_refused(source):
    """The head is traced at pre_logits=False; a parent that passes True would get the other
    branch, so the import says so in one line instead of writing a spec that differs."""
    path, _ = source
    with pytest.raises(SpecError, match=r"head: Head is called with pre_logits=True, not its forward's defaults"):
        import_spec(f"{path}:pre_logits", INPUT)


def test_flatten_after_a_pointwise_conv_of_a_pooled_map_counts():
    """Inside a block kind, a 1x1 conv (stride any, no padding) keeps the map's one position, so
    a flatten after it is `filters` features; a 3x3 conv with padding does not fix them."""
    text = """
archc: 1
name: tiny_classifier
input: [8, 5, 5]
blocks:
  head:
    layers:
      - {adaptive_avgpool: {size: 1}}
      - {conv: {filters: 10, kernel: 1, stride: 2, bias: true}}
      - flatten
      - {dense: {units: 3}}
layers:
  - {block: head}
"""
    model = build(load_spec_text(text), "torch")
    assert sum(p.numel() for p in model.parameters()) == 8 * 10 + 10 + 10 * 3 + 3
    assert tuple(model.eval()(torch.randn(2, 8, 5, 5)).shape) == (2, 3)
    with pytest.raises(SpecError, match="flatten inside a block kind"):
        load_then_build(text.replace("kernel: 1, stride: 2", "kernel: 3, padding: 1"))


def load_then_build(text):
    return build(load_spec_text(text), "torch")


def test_a_sum_some_instances_leave_out_passes_on_the_other_input(source):
    """The spec's rule: an absent merge passes on the entry before it. The block without the
    sum returns `stack`, so the shortcut (present only where strided) is written before
    `stack`, and `stack` is what the absent sum passes on."""
    path, namespace = source
    result = import_spec(f"{path}:xception", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    block = yaml.safe_load(result.text)["blocks"]["xception_block"]["layers"]
    assert [next(iter(e)) for e in block] == ["shortcut", "stack", "add"]
    ours = build(load_spec_text(result.text), "torch")
    reference = namespace["xception"]().eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.allclose(reference(x), ours.eval()(x), atol=1e-6)


CONVNEXT = '''
import torch
from torch import nn


class Block(nn.Module):  # timm's ConvNeXtBlock (conv_mlp=False): channels last around the MLP, a vector gamma
    def __init__(self, channels):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 7, padding=3, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.fc1 = nn.Linear(channels, 4 * channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * channels, channels)
        self.gamma = nn.Parameter(torch.full((channels,), 1e-6))

    def forward(self, x):
        shortcut = x
        x = self.conv_dw(x)
        x = x.permute(0, 2, 3, 1)
        x = self.fc2(self.act(self.fc1(self.norm(x))))
        x = x.permute(0, 3, 1, 2)
        x = x.mul(self.gamma.reshape(1, -1, 1, 1))
        return x + shortcut


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 4, stride=4), Block(8), Block(8))
'''


def test_a_vector_layer_scale_and_permutes_round_trip(tmp_path):
    """timm's ConvNeXt block: `x.permute(0, 2, 3, 1)` and back are permute layers, and
    `x.mul(self.gamma.reshape(1, -1, 1, 1))` a layer scale whose parameter stays a vector (C,)
    (`vector: true`), so the state_dict's `gamma` loads as it is."""
    path = tmp_path / "convnext.py"
    path.write_text(CONVNEXT)
    namespace = {}
    exec(compile(CONVNEXT, str(path), "exec"), namespace)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    block = yaml.safe_load(result.text)["blocks"]["block"]["layers"]
    assert {"gamma": {"layer_scale": {"init_value": 1e-6, "vector": True}}} in block
    assert sum("permute" in str(e) for e in block) == 2
    reference = namespace["net"]()
    with torch.no_grad():
        for m in reference.modules():
            if hasattr(m, "gamma"):
                m.gamma.uniform_(0.5, 1.5)
    ours = build(load_spec_text(result.text), "torch")
    assert ours.state_dict()["1.gamma"].shape == (8,)
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.allclose(reference.eval()(x), ours.eval()(x), atol=1e-5)


REPGHOST = '''
from torch import nn


class Ghost(nn.Module):  # timm's RepGhostModule: the entries of two lists called in a loop
    def __init__(self, channels, identity):
        super().__init__()
        self.primary_conv = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.fusion_conv = nn.Sequential(nn.Identity() if identity else nn.Conv2d(channels, channels, 1, bias=False), nn.Conv2d(channels, channels, 1))
        self.fusion_bn = nn.Sequential(nn.BatchNorm2d(channels))
        self.cheap_operation = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        x2 = x2 + self.fusion_bn[0](self.fusion_conv[1](self.fusion_conv[0](x1)))
        return x2


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), Ghost(8, True), Ghost(8, False))
'''


def test_calls_of_a_lists_entries_in_order_are_a_call_of_the_list(tmp_path):
    """`self.fusion_bn[0](self.fusion_conv[1](self.fusion_conv[0](x1)))`: each list's entries,
    called in order, each reading the one before, are the list (an nn.Sequential runs them so)."""
    path = tmp_path / "repghost.py"
    path.write_text(REPGHOST)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    names = [next(iter(e)) for e in yaml.safe_load(result.text)["blocks"]["ghost"]["layers"]]
    assert names[:4] == ["primary_conv", "cheap_operation", "fusion_conv", "fusion_bn"]


VOVNET = '''
from typing import List

import torch
from torch import nn


class SequentialAppendList(nn.Sequential):  # timm.models.vovnet's, as it is written there
    def forward(self, x: torch.Tensor, concat_list: List[torch.Tensor]) -> torch.Tensor:
        for i, module in enumerate(self):
            if i == 0:
                concat_list.append(module(x))
            else:
                concat_list.append(module(concat_list[-1]))
        return torch.cat(concat_list, dim=1)


class ConvAct(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


class Osa(nn.Module):
    def __init__(self, channels, mid):
        super().__init__()
        self.conv_reduction = nn.Conv2d(channels, mid, 1)
        self.conv_mid = SequentialAppendList(*[ConvAct(mid) for _ in range(3)])
        self.conv_concat = nn.Conv2d(channels + 3 * mid, channels, 1)

    def forward(self, x):
        output = [x]
        x = self.conv_reduction(x)
        x = self.conv_mid(x, output)
        return self.conv_concat(x) + output[0]


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), Osa(8, 4), Osa(8, 4))
'''


def test_an_append_list_is_a_list_and_a_concat_of_its_entries(tmp_path):
    """VoVNet's OSA block: `self.conv_mid(x, output)` runs the list's entries in a chain and
    returns the concatenation of the list it is given and every entry's output: the list, then
    `concat: [input, conv_mid.0, conv_mid.1, conv_mid]`."""
    path = tmp_path / "vovnet.py"
    path.write_text(VOVNET)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    layers = yaml.safe_load(result.text)["blocks"]["osa"]["layers"]
    assert {"cat": {"concat": ["input", "conv_mid.0", "conv_mid.1", "conv_mid"]}} in layers


GHOSTV2 = '''
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):  # GhostNetV2's DFC attention: pooled, gated, resized back by the pair of sizes
    def __init__(self, channels):
        super().__init__()
        self.short_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        res = self.short_conv(F.avg_pool2d(x, kernel_size=2, stride=2))
        return x * F.interpolate(res.sigmoid(), size=(x.shape[-2], x.shape[-1]), mode="nearest")


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3), Attention(8), Attention(8))
'''


def test_a_resize_to_the_pair_of_sizes(tmp_path):
    """`size=(x.shape[-2], x.shape[-1])` is `x.shape[-2:]` spelt item by item: `resize: {like: x}`."""
    path = tmp_path / "ghostv2.py"
    path.write_text(GHOSTV2)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    layers = yaml.safe_load(result.text)["blocks"]["attention"]["layers"]
    assert any(next(iter(e.values())) == {"resize": {"like": "input", "mode": "nearest"}} for e in layers), layers


def test_the_same_source_gives_the_same_spec_whatever_the_callers_rng(source):
    """The model is built under a seed of its own (its initialisation rules are read off its
    draw), so the spec does not depend on the caller's random state, which stays as it was."""
    path, _ = source
    texts = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        before = torch.random.get_rng_state()
        texts.append(import_spec(f"{path}:net", INPUT, check=False).text)
        assert torch.equal(torch.random.get_rng_state(), before)
    assert texts[0] == texts[1]


CLIP = '''
import torch
from torch import nn


class Head(nn.Module):  # torchvision's S3D head: a mean over the clip's frames and positions
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, 3)
        self.fc = nn.Conv3d(8, 4, 1, bias=True)

    def forward(self, x):
        return torch.mean(self.fc(self.conv(x)), dim=(2, 3, 4))


def net():
    return Head()
'''


def test_the_mean_over_a_clips_positions_is_a_global_pool(tmp_path):
    path = tmp_path / "clip.py"
    path.write_text(CLIP)
    result = import_spec(f"{path}:net", (3, 4, 8, 8))
    assert result.diff is not None and result.diff <= 1e-5
    assert yaml.safe_load(result.text)["layers"][-1] == {"global_avgpool": "global_avgpool"}


SELECSLS = '''
from typing import List

import torch
from torch import nn


def conv_bn(cin, cout, k, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class SequentialList(nn.Sequential):  # timm.models.selecsls's: the blocks pass lists on
    def forward(self, x) -> List[torch.Tensor]:
        for module in self:
            x = module(x)
        return x


class SelectSeq(nn.Module):
    def __init__(self, index=0):
        super().__init__()
        self.index = index

    def forward(self, x):
        return x[self.index]


class Block(nn.Module):  # SelecSlsBlock: [x] or [x, skip] in, [out, out] or [out, skip] out
    def __init__(self, in_chs, skip_chs, out_chs, is_first, stride, twice=False):
        super().__init__()
        self.is_first, self.twice = is_first, twice
        self.conv1 = conv_bn(in_chs, out_chs, 3, stride)
        self.conv2 = conv_bn(out_chs, out_chs, 1)
        self.conv6 = conv_bn(2 * out_chs + (0 if is_first else skip_chs), out_chs, 1)

    def forward(self, x: List[torch.Tensor]) -> List[torch.Tensor]:
        if not isinstance(x, list):
            x = [x]
        assert len(x) in [1, 2]
        d1 = self.conv1(x[0])
        d2 = self.conv2(d1)
        if self.is_first:
            out = self.conv6(torch.cat([d1, d2], 1))
            return [out, d2 if self.twice else out]
        return [self.conv6(torch.cat([d1, d2, x[1]], 1)), x[1]]


class Net(nn.Module):
    def __init__(self, twice=False):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.features = SequentialList(
            Block(8, 0, 8, True, 2, twice), Block(8, 8, 8, False, 1), Block(8, 8, 12, False, 1),
            Block(12, 0, 16, True, 2), Block(16, 16, 16, False, 1),
        )
        self.from_seq = SelectSeq()
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = self.features([self.stem(x)])
        return self.head(self.from_seq(x))


def net(twice=False):
    return Net(twice)
'''


def test_blocks_that_pass_lists_are_blocks_with_several_inputs(tmp_path):
    """timm's SelecSLS: blocks take `[x]` or `[x, skip]` and return `[out, out]` or
    `[out, skip]` down an nn.Sequential subclass; a module returns the list's first tensor.
    Each block is a kind with an input per element it reads, the list a numbered `modules:`
    container whose entries read the skip where it was made, by number."""
    path = tmp_path / "selecsls.py"
    path.write_text(SELECSLS)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    spec = yaml.safe_load(result.text)
    assert [k.get("inputs") for k in spec["blocks"].values()] == [None, ["x0", "x1"]]
    features = next(e["features"] for e in spec["layers"] if "features" in e)["modules"]
    assert [e.get("from") for e in features] == [None, ["0", "0"], ["1", "0"], None, ["3", "3"]]
    namespace = {}
    exec(compile(SELECSLS, str(path), "exec"), namespace)
    reference = randomised(namespace["net"]())
    ours = build(load_spec_text(result.text), "torch")
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.allclose(reference(x), ours.eval()(x), atol=1e-5)
    with pytest.raises(SpecError, match=r"features.0: Block: forward returns 2 tensors it computes in a list, where a block gives one$"):
        import_spec(f"{path}:net", INPUT, {"twice": True})


DLA = '''
from typing import List, Optional

import torch
from torch import nn


class Basic(nn.Module):  # timm's DlaBasic: a residual block given its shortcut, or its input
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()

    def forward(self, x, shortcut: Optional[torch.Tensor] = None, children: Optional[List[torch.Tensor]] = None):
        if shortcut is None:
            shortcut = x
        return self.relu(self.bn1(self.conv1(x)) + shortcut)


class Root(nn.Module):  # DlaRoot: a list of tensors concatenated, then conv, norm, relu
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x_children: List[torch.Tensor]):
        return torch.relu(self.bn(self.conv(torch.cat(x_children, 1))))


class Tree(nn.Module):  # DlaTree: recursive; an inner tree gets the list of the outer one's children
    def __init__(self, levels, cin, cout, stride=1, level_root=False, root_dim=0):
        super().__init__()
        root_dim = (root_dim or 2 * cout) + (cin if level_root else 0)
        self.downsample = nn.MaxPool2d(stride, stride=stride) if stride > 1 else nn.Identity()
        self.project = nn.Identity()
        if levels == 1:
            self.tree1 = Basic(cin, cout, stride)
            self.tree2 = Basic(cout, cout)
            if cin != cout:
                self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
            self.root = Root(root_dim, cout)
        else:
            self.tree1 = Tree(levels - 1, cin, cout, stride)
            self.tree2 = Tree(levels - 1, cout, cout, root_dim=root_dim + cout)
            self.root = None
        self.level_root = level_root

    def forward(self, x, shortcut: Optional[torch.Tensor] = None, children: Optional[List[torch.Tensor]] = None):
        if children is None:
            children = []
        bottom = self.downsample(x)
        shortcut = self.project(bottom)
        if self.level_root:
            children.append(bottom)
        x1 = self.tree1(x, shortcut)
        if self.root is not None:
            x2 = self.tree2(x1)
            return self.root([x2, x1] + children)
        children.append(x1)
        return self.tree2(x1, None, children)


def net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), Tree(1, 4, 6, 2), Tree(2, 6, 8, 2, level_root=True), Tree(2, 8, 8, 2))
'''


def test_calls_with_several_tensors_and_lists_are_blocks_with_several_inputs(tmp_path):
    """timm's DLA: blocks called with (x, shortcut), roots with a list, trees with (x, None,
    children): each a block kind with an input per tensor it reads; a recursive class's kinds
    formed level by level; the max pool whose tensor only an unread shortcut takes is dropped."""
    path = tmp_path / "dla.py"
    path.write_text(DLA)
    result = import_spec(f"{path}:net", INPUT)
    assert result.diff is not None and result.diff <= 1e-5
    kinds = yaml.safe_load(result.text)["blocks"]
    inputs = {k: v.get("inputs") for k, v in kinds.items()}
    assert inputs["basic"] == ["x0", "shortcut"] and inputs["root"] == ["x_children0", "x_children1"]
    assert ["x0", "children0", "children1"] in inputs.values()  # the inner tree given the outer one's children
    outer = next(v["layers"] for v in kinds.values() if any("tree2" in e and e["tree2"].get("from") == ["tree1", "downsample", "tree1"] for e in v["layers"]))
    assert [next(iter(e)) for e in outer] == ["downsample", "tree1", "tree2"]
    layers = [[next(iter(e)) for e in v["layers"]] for v in kinds.values()]
    assert ["tree1", "tree2"] in layers  # the last tree: its max pool only fed tree1's shortcut, which tree1 does not read
    namespace = {}
    exec(compile(DLA, str(path), "exec"), namespace)
    reference = randomised(namespace["net"]())
    ours = build(load_spec_text(result.text), "torch")
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *INPUT)
    with torch.no_grad():
        assert torch.allclose(reference(x), ours.eval()(x), atol=1e-5)


def test_the_import_check_leaves_no_parameter_at_a_constant():
    """The importer's own check (archc/importer/check.py) draws every parameter that starts as
    a constant: a zero-initialised last conv (timm's GlobalContext MLP), a gain of 0, norm
    scales of 1 and shifts of 0 would let wiring they multiply go unchecked."""
    from torch import nn

    from archc.importer.check import _randomise

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
    nn.init.zeros_(model[2].weight)
    model.register_parameter("gain", nn.Parameter(torch.zeros(())))
    before = model[0].weight.clone()
    _randomise(model)
    constant = [name for name, p in model.named_parameters() if p.numel() > 1 and bool((p == p.reshape(-1)[0]).all())]
    assert not constant and 0.5 <= float(model.gain) <= 1.5
    assert torch.equal(model[0].weight, before)  # drawn weights are kept
    assert not torch.equal(model[3].running_var, torch.ones(4))
