"""A numbered model: a spec whose top-level `layers:` are all unnamed is an nn.Sequential
subclass in PyTorch (torchvision's detection trunks), its children `0`, `1`, ... The
independent fact: a hand-written nn.Sequential of the same modules has the same state_dict
keys, and the generated model's weights load into it strictly and give the same outputs;
IR, PyTorch and Keras agree (test_differential.agree)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from conftest import assert_ruff_clean, need
from test_differential import agree, module_from

from archc.backends import emit
from archc.cli import main
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
nn = torch.nn

NUMBERED = """\
archc: 1
name: net
input: [3, 12, 12]
params: {num_classes: 5, bn: true}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  unit:
    params: {filters: int}
    layers:
      - conv: {filters: filters, kernel: 3, padding: 1}
      - relu
layers:
  - conv: {filters: 8, kernel: 3, stride: 2, padding: 1}
  - {batchnorm: {}, if: bn}
  - relu
  - {block: unit, with: {filters: 6}}
  - - {conv: {filters: 4, kernel: 1}}
    - batchnorm
  - {stage: unit, repeat: 2, with: {filters: 5}}
  - {block: unit, with: {filters: 3}, inline: true}
  - global_avgpool
  - dense: {units: num_classes}
"""


def unit(c_in: int, c_out: int) -> list:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.ReLU()]


def by_hand(bn: bool) -> nn.Sequential:
    """The same network as a plain nn.Sequential, written without archc."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False),
        *([nn.BatchNorm2d(8)] if bn else []),
        nn.ReLU(),
        nn.Sequential(*unit(8, 6)),
        nn.Sequential(nn.Conv2d(6, 4, 1, bias=False), nn.BatchNorm2d(4)),
        nn.Sequential(*unit(4, 5)),
        nn.Sequential(*unit(5, 5)),
        *unit(5, 3),  # written `inline`: its layers are entries of the model
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(3, 5),
    )


@pytest.mark.parametrize("bn", [True, False])
def test_numbered_model_is_a_hand_written_sequential(bn):
    graph = agree(NUMBERED.replace("bn: true}", f"bn: {str(bn).lower()}}}"))
    generated = module_from(emit(graph, "torch"), "t_torch").build_model().eval()
    assert isinstance(generated, nn.Sequential) and type(generated).__name__ == "Net"
    hand = by_hand(bn).eval()
    assert list(generated.state_dict()) == list(hand.state_dict())
    assert next(iter(generated.state_dict())) == "0.weight" and ("3.0.weight" in generated.state_dict())
    torch.manual_seed(1)
    with torch.no_grad():
        for key, value in generated.state_dict().items():
            if value.is_floating_point():
                value.copy_(torch.rand(value.shape) + 0.5 if key.endswith("running_var") else torch.randn(value.shape) * 0.3)
        hand.load_state_dict(generated.state_dict(), strict=True)
        x = torch.randn(2, 3, 12, 12)
        assert torch.allclose(generated(x), hand(x), atol=1e-5)
    assert {n.id for n in graph.nodes if n.op.weight_names()} == {k.rsplit(".", 1)[0] for k, _ in hand.named_parameters()}


def test_numbered_model_code(tmp_path):
    graph = lower(load_spec_text(NUMBERED, "t.yaml"))
    source = emit(graph, "torch")
    model_class = source.split("class Net(nn.Sequential):\n")[1].split("\ndef build_model")[0]
    assert model_class.startswith('    """net"""\n\n    def __init__(self, num_classes: int = 5) -> None:\n        super().__init__(\n'), model_class
    assert "\nfrom torch import nn\n" in source  # no forward anywhere: no Tensor annotations
    assert "def forward" not in model_class and "self." not in model_class
    assert "*Unit(5, filters=3)," in model_class and "nn.Linear(3, num_classes)," in model_class
    keras_source = emit(graph, "keras")
    assert 'name="0"' in keras_source and 'name="4_1"' in keras_source  # the IR's paths, as interop.keras_name spells them
    for backend, text in (("torch", source), ("keras", keras_source)):
        path = tmp_path / f"{backend}.py"
        path.write_text(text)
        assert_ruff_clean(path)


def test_verify_agrees(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(NUMBERED)
    result = CliRunner().invoke(main, ["verify", str(spec)])
    assert result.exit_code == 0 and "PASS" in result.output, result.output


RELU = "  - relu\n  - {block"  # the model's relu, entry 2


@pytest.mark.parametrize("old, new, line, message", [
    (RELU, "  - r: relu\n  - {block", 13, "this conv is a module of the model, so it needs a name"),  # a mix stays refused
    ("  - global_avgpool\n", "  - {stage: unit, repeat: 2, with: {filters: 3}, names: \"layer{i}\"}\n  - global_avgpool\n", 21,
     "a stage takes no `names: layer{i}` here"),
    (RELU, "  - resize: {like: input, mode: bilinear}\n  - {block", 15, "entry 2: resize is an expression in PyTorch's forward"),
    (RELU, "  - {act: {fn: relu}, from: input}\n  - {block", 15, "entry 2: the entries of a list run in sequence"),
])  # fmt: skip
def test_numbered_model_mistakes(tmp_path, old, new, line, message):
    assert old in NUMBERED
    text = NUMBERED.replace(old, new, 1)
    with pytest.raises(SpecError, match=message.replace("`", ".").replace("(", r"\(").replace("{", r"\{").replace("}", r"\}")):
        lower(load_spec_text(text, "t.yaml"))
    spec = tmp_path / "net.yaml"
    spec.write_text(text)
    result = CliRunner().invoke(main, ["build", str(spec), "--backend", "torch", "-o", str(tmp_path / "net.py")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"archc: error: {spec}:{line}:") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "net.py").exists()


def test_unnamed_entries_that_number_nothing_keep_the_model_named():
    """A model whose only unnamed entries are a stage with `names:` (attributes of the model)
    numbers nothing: it stays an nn.Module with those attributes, as before numbered models."""
    text = NUMBERED.split("layers:\n  - conv: {filters: 8")[0] + 'layers:\n  - {stage: unit, repeat: 2, names: "conv{n}", with: {filters: 4}}\n'
    graph = agree(text.replace("params: {num_classes: 5, bn: true}\n", ""))
    assert not graph.numbered
    model = module_from(emit(graph, "torch"), "t_torch").build_model()
    assert not isinstance(model, nn.Sequential) and list(model.state_dict()) == ["conv1.0.weight", "conv2.0.weight"]
