"""An unnamed stage with a `names:` pattern places its instances into the enclosing list under
those names, with no level of their own (`conv2_1`, `conv2_2`, ...; issue 21): at model level
as attributes of the model, in a list as named entries of its nn.Sequential. The IR, PyTorch and
Keras agree on it, and a checkpoint laid out that way loads strictly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import assert_ruff_clean, need
from test_differential import agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")

HEAD = """\
archc: 1
name: t
input: [3, 12, 12]
defaults: {conv: {bias: false}}
blocks:
  unit:
    params: {filters: int}
    layers:
      - conv: {conv: {filters: filters, kernel: 3, padding: 1}}
      - relu: relu
layers:
"""
TAIL = """\
  - pool: global_avgpool
  - fc: {dense: {units: 10}}
"""
STAGE = """\
    stage: unit
    repeat: 3
    names: "conv2_{n}"
    with: {filters: 8}
"""
MODEL = HEAD + "  - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}\n  -" + STAGE[3:] + TAIL
NAMED_LIST = (
    HEAD + "  - features:\n      - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}\n      -"
    + STAGE.replace("    ", "        ")[7:] + TAIL
)
MIXED_LIST = (
    HEAD + "  - features:\n      - conv: {filters: 8, kernel: 3, padding: 1}\n      - relu\n      -"
    + STAGE.replace("    ", "        ")[7:] + "      - conv: {filters: 4, kernel: 1}\n" + TAIL
)
NAMED_AND_NUMBERED = NAMED_LIST.replace("      - stage: unit", "      - relu\n      - stage: unit").replace(
    "  - pool", "      - conv: {filters: 4, kernel: 1}\n  - pool"
)


def torch_source(text: str) -> str:
    return emit(lower(load_spec_text(text, "t.yaml")), "torch")


def state_keys(text: str) -> list[str]:
    return list(module_from(torch_source(text), "t_torch").build_model().state_dict())


@pytest.mark.parametrize(
    "text", [MODEL, NAMED_LIST, MIXED_LIST, NAMED_AND_NUMBERED], ids=["model", "named_list", "mixed_list", "named_and_numbered"]
)
def test_ir_pytorch_keras_agree(text):
    graph = agree(text)
    names = [n.id for n in graph.nodes if n.op.weight_names()]
    assert sum(bool(re.search(r"(^|\.)conv2_[123]\.conv$", n)) for n in names) == 3, names


def test_model_level_instances_are_attributes():
    assert state_keys(MODEL) == ["conv1.weight", "conv2_1.conv.weight", "conv2_2.conv.weight", "conv2_3.conv.weight", "fc.weight", "fc.bias"]
    source = torch_source(MODEL)
    init = [line.strip() for line in source.splitlines() if line.strip().startswith("self.conv2_")]
    assert init == [f"self.conv2_{n} = Unit(8, filters=8)" for n in (1, 2, 3)]
    assert "x = self.conv2_1(x)\n        x = self.conv2_2(x)\n        x = self.conv2_3(x)\n" in source
    assert "add_module" not in source


def test_list_instances_are_named_entries(tmp_path: Path):
    assert state_keys(NAMED_LIST) == [
        "features.conv1.weight", "features.conv2_1.conv.weight", "features.conv2_2.conv.weight", "features.conv2_3.conv.weight",
        "fc.weight", "fc.bias",
    ]  # fmt: skip
    source = torch_source(NAMED_LIST)
    assert """\
        self.features = nn.Sequential(
            OrderedDict(
                conv1=nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False),
                **{f"conv2_{i + 1}": Unit(8, filters=8) for i in range(3)},
            )
        )
""" in source
    path = tmp_path / "t_torch.py"
    path.write_text(source)
    assert_ruff_clean(path)


def test_mixed_list_numbers_only_its_unnamed_entries(tmp_path: Path):
    keys = state_keys(MIXED_LIST)
    assert keys == [
        "features.0.weight", "features.conv2_1.conv.weight", "features.conv2_2.conv.weight", "features.conv2_3.conv.weight",
        "features.2.weight", "fc.weight", "fc.bias",
    ]  # fmt: skip
    source = torch_source(MIXED_LIST)
    assert '"1": nn.ReLU(inplace=True),\n' in source
    assert '**{f"conv2_{i + 1}": Unit(8, filters=8) for i in range(3)},\n' in source
    assert '"2": nn.Conv2d(8, 4, kernel_size=1, bias=False),\n' in source
    path = tmp_path / "t_torch.py"
    path.write_text(source)
    assert_ruff_clean(path)


def test_instances_take_no_number_among_named_entries():
    assert state_keys(NAMED_AND_NUMBERED) == [
        "features.conv1.weight", "features.conv2_1.conv.weight", "features.conv2_2.conv.weight", "features.conv2_3.conv.weight",
        "features.2.weight", "fc.weight", "fc.bias",
    ]  # fmt: skip


def test_unlike_instances_stand_alone_and_alike_ones_loop():
    text = NAMED_LIST.replace("repeat: 3", "repeat: 4").replace("with: {filters: 8}", "with: {filters: 8}\n        last: {filters: 16}")
    agree(text)
    source = torch_source(text)
    assert '**{f"conv2_{i + 1}": Unit(8, filters=8) for i in range(3)},\n                conv2_4=Unit(8, filters=16),\n' in source
    assert state_keys(text)[1:5] == [f"features.conv2_{n}.conv.weight" for n in (1, 2, 3, 4)]


def test_index_of_the_instance_reaches_its_arguments():
    agree(MODEL.replace("with: {filters: 8}", "with: {filters: 4 * (i + 1)}"))


def test_keras_layer_names_follow_the_ir_path():
    graph = lower(load_spec_text(MODEL, "t.yaml"))
    kmodel = module_from(emit(graph, "keras"), "t_keras").build_model()
    names = {layer.name for layer in kmodel.layers}
    assert {"conv2_1_conv", "conv2_2_conv", "conv2_3_conv"} <= names


class Checkpoint(torch.nn.Module):
    """A model laid out as many checkpoints are, written by hand: conv1, then conv2_1..conv2_3."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
        for n in (1, 2, 3):
            unit = torch.nn.Module()
            unit.conv = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
            setattr(self, f"conv2_{n}", unit)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv1(x)
        for n in (1, 2, 3):
            x = torch.relu(getattr(self, f"conv2_{n}").conv(x))
        return self.fc(x.mean((2, 3)))


def test_checkpoint_laid_out_so_loads_strictly():
    torch.manual_seed(0)
    reference = Checkpoint().eval()
    model = module_from(torch_source(MODEL), "t_torch").build_model().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x), atol=1e-6)


def test_inside_a_block_kind_is_refused_located():
    block = "  layer:\n    layers:\n      - stage: unit\n        repeat: 3\n        names: conv2_{n}\n        with: {filters: 8}\n"
    text = HEAD.replace("\nlayers:\n", "\n" + block + "layers:\n") + "  - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}\n"
    text += "  - layer2: {block: layer}\n" + TAIL
    with pytest.raises(SpecError, match="but not inside a block kind") as e:
        lower(load_spec_text(text, "t.yaml"))
    assert (e.value.where.line, e.value.where.col) == (13, 9)


def test_an_instance_read_from_outside_its_list():
    tapped = NAMED_LIST.replace(
        "  - pool", "  - tap: {conv: {filters: 8, kernel: 1}, from: features.conv2_2}\n  - sum: {add: [features, tap]}\n  - pool"
    )
    agree(tapped)
    assert "features_conv2_2 = self.features.conv2_2(x)\n" in torch_source(tapped)


def test_under_a_condition_the_instances_are_there_or_not():
    text = MODEL.replace("archc: 1\n", "archc: 1\nparams: {deep: true}\n").replace("    repeat: 3\n", "    repeat: 3\n    if: deep\n")
    agree(text)
    assert "conv2_1.conv.weight" in state_keys(text)
    shallow = text.replace("deep: true", "deep: false")
    agree(shallow)
    assert not any(key.startswith("conv2_") for key in state_keys(shallow))


def test_a_model_level_instance_is_read_by_its_name():
    """`from: conv2_2` at model level reads that instance's tensor (in a list: `features.conv2_2`);
    the IR, PyTorch and Keras agree, and PyTorch keeps it in a variable of that name."""
    tapped = MODEL.replace("  - pool", "  - tap: {conv: {filters: 8, kernel: 1}, from: conv2_2}\n  - sum: {add: [conv2_3, tap]}\n  - pool")
    graph = agree(tapped)
    assert {n.id: n.inputs for n in graph.nodes}["tap"] == ("conv2_2.relu",)
    source = torch_source(tapped)
    assert "conv2_2 = self.conv2_2(x)\n" in source and "tap = self.tap(conv2_2)\n" in source
    keras_source = emit(graph, "keras")
    assert 'x = unit(x, 8, filters=8, name="conv2_2")\n    conv2_2 = x\n    x = unit(x, 8' in keras_source  # no `x = conv2_2` again


def test_reading_an_instance_the_stage_does_not_make_is_located():
    text = MODEL.replace("  - pool", "  - tap: {conv: {filters: 8, kernel: 1}, from: conv2_4}\n  - sum: {add: [conv2_3, tap]}\n  - pool")
    with pytest.raises(SpecError, match="conv2_4") as e:
        lower(load_spec_text(text, "t.yaml"))
    assert e.value.where is not None and e.value.where.line == 17
