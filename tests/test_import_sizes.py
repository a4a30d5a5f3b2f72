"""`archc import` of forwards that test their input's size (timm's VGG ConvMlp pools a map
smaller than its 7x7 conv up to 7x7): traced at the spec's input shape, the spec has the
branch that input takes and says so (a comment naming each test and its value, and `doc:`).
A test of a tensor's values, or of the batch size, stays refused. Each import is checked
here independently of the importer's own check (strict state_dict load, equal outputs).
Needs torch."""

import pytest
import yaml
from click.testing import CliRunner
from conftest import need

torch = need("torch")

from archc.api import build  # noqa: E402
from archc.cli import main  # noqa: E402
from archc.errors import SpecError  # noqa: E402
from archc.importer import import_spec  # noqa: E402
from archc.spec.loader import load_spec_text  # noqa: E402

SOURCE = '''
import math

import torch
import torch.nn.functional as F
from torch import nn


class ConvMlp(nn.Module):  # timm's VGG pre_logits: a map smaller than the conv's kernel is pooled up to it
    def __init__(self, channels, kernel=7):
        super().__init__()
        self.kernel = kernel
        self.reduce = nn.Conv2d(channels, channels, 1)  # run for the test's value (a child called while tracing)
        self.fc1 = nn.Conv2d(channels, 6, kernel, bias=True)
        self.act = nn.ReLU()

    def forward(self, x):
        x = self.reduce(x)
        if x.shape[-2] < self.fc1.weight.shape[-2] or x.shape[-1] < self.kernel:
            x = F.adaptive_avg_pool2d(x, (max(self.kernel, x.shape[-2]), max(self.kernel, x.shape[-1])))
        return self.act(self.fc1(x))


class Quarter(nn.Module):  # an int of a size (a pool's window), then a resize like its input (stays symbolic)
    def forward(self, x):
        y = F.avg_pool2d(x, int(x.shape[-1]) // 4)
        return F.interpolate(y, size=x.shape[-2:], mode="nearest")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.quarter = Quarter()
        self.pre_logits = ConvMlp(8)

    def forward(self, x):
        return self.pre_logits(self.quarter(self.stem(x)))


class Signed(nn.Module):  # a test of the values: no input shape decides it
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.mean() > 0:
            x = -x
        return self.conv(x)


class Batched(nn.Module):  # a test of the batch size, which a spec does not fix
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        if x.shape[0] > 1:
            x = F.relu(x)
        return self.conv(x)


class SamePad(nn.Module):  # timm's pad_same: TensorFlow's 'same' padding from the input size, then the conv
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(cin, cout, 3, stride, bias=False)

    def forward(self, x):
        ih, iw = x.size()[-2:]
        pad_h = max((math.ceil(ih / self.stride) - 1) * self.stride + 3 - ih, 0)
        pad_w = max((math.ceil(iw / self.stride) - 1) * self.stride + 3 - iw, 0)
        return self.conv(F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0))


def net():
    return Net()


def same():
    return nn.Sequential(SamePad(3, 4, 2), SamePad(4, 4, 1), SamePad(4, 4, 1))


def signed():
    return Signed()


def batched():
    return Batched()
'''


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("sizes") / "sized.py"
    path.write_text(SOURCE)
    namespace = {}
    exec(compile(SOURCE, str(path), "exec"), namespace)
    return path, namespace


def same_model(text, reference, shape):
    ours = build(load_spec_text(text), "torch").eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        want, got = reference.eval()(x), ours(x)
    assert want.shape == got.shape
    assert float((want - got).abs().max() / want.abs().max()) <= 1e-5


def layers_of(spec, kind):
    return [next(iter(e.values())) if isinstance(e, dict) else e for e in spec["blocks"][kind]["layers"]]


def test_a_size_test_takes_the_branch_of_the_spec_input_and_says_so(source):
    path, namespace = source
    result = import_spec(f"{path}:net", (3, 8, 8))  # the ConvMlp gets 4x4: pooled up to 7x7
    spec = yaml.safe_load(result.text)
    assert layers_of(spec, "conv_mlp")[1] == {"adaptive_avgpool": {"size": 7}}
    quarter = layers_of(spec, "quarter")
    assert {"avgpool": {"kernel": 1}} in quarter and {"resize": {"like": "input", "mode": "nearest"}} in quarter, quarter
    lines = result.text.splitlines()
    assert lines[1].startswith("# traced at input 3x8x8, where these forwards read their input's size") and "exact at this input only" in lines[1]
    assert "#   quarter (Quarter, input 8x4x4): int(x.shape[-1]) is 4" in lines
    assert (
        "#   pre_logits (ConvMlp, input 8x4x4): reduce.shape[-2] < fc1_weight.shape[-2] is True; "
        "reduce.shape[-2] > 7 is False; reduce.shape[-1] > 7 is False"
    ) in lines
    assert spec["doc"] == (
        "Imported at input 3x8x8, where the forwards of Quarter (quarter) and ConvMlp (pre_logits) read their input's size "
        "as Python values (tests, numbers): exact at this input only."
    )
    same_model(result.text, namespace["net"](), (3, 8, 8))

    result = import_spec(f"{path}:net", (3, 16, 16))  # 8x8: the conv reads the map as it is
    spec = yaml.safe_load(result.text)
    assert [next(iter(e)) for e in spec["blocks"]["conv_mlp"]["layers"]] == ["reduce", "fc1", "act"]
    assert {"avgpool": {"kernel": 2}} in layers_of(spec, "quarter")
    assert "#   quarter (Quarter, input 8x8x8): int(x.shape[-1]) is 8" in result.text.splitlines()
    assert "reduce.shape[-2] < fc1_weight.shape[-2] is False; reduce.shape[-1] < 7 is False" in result.text
    same_model(result.text, namespace["net"](), (3, 16, 16))


def test_a_test_of_values_or_of_the_batch_stays_refused(source):
    path, _ = source
    with pytest.raises(SpecError, match=r"model: Signed: forward cannot be traced \(symbolically traced variables cannot be used as inputs to control flow\)"):
        import_spec(f"{path}:signed", (3, 8, 8))
    with pytest.raises(SpecError, match=r"model: Batched: forward cannot be traced \(a test of x.shape\[0\] > 1, which depends on the batch size"):
        import_spec(f"{path}:batched", (3, 8, 8))


def test_a_size_a_call_takes_is_its_number_at_the_spec_input(source, tmp_path):
    """F.pad's amounts from a 'same' padding rule: uneven before a strided conv on an even map
    (0, 1, 0, 1), even before an unstrided one. The command says the spec is exact at its input only."""
    path, namespace = source
    out = tmp_path / "same.yaml"
    result = CliRunner().invoke(main, ["import", f"{path}:same", "--input", "3,8,8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "checked: strict load" in result.output and "; exact at this input shape only: its forwards read sizes" in result.output
    text = out.read_text()
    spec = yaml.safe_load(text)
    assert "pad(x, (0, 1, 0, 1))" in text and "pad(x, (1, 1, 1, 1))" in text
    # one block kind: the amounts that differ between its instances are parameters of their own
    assert layers_of(spec, "same_pad")[0] == {"zeropad": {"padding": [["zeropad_padding_top", 1], ["zeropad_padding_left", 1]]}}
    assert [e.get("with") for e in spec["layers"]] == [{"zeropad_padding_top": 0, "zeropad_padding_left": 0, "stride": 2}, None, None]
    same_model(text, namespace["same"](), (3, 8, 8))
