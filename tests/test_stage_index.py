"""A model-level stage's arguments may read `i`, the instance's index in the stage (EfficientNet
numbers its blocks across stages for their stochastic depth rates), and an unnamed list inside a
list nests its stage's instances in one numbered entry (EfficientNet's `features.1.0`). The
generated code passes the index as a loop variable, not one call per instance."""

import textwrap

from conftest import need

from archc import api
from archc.backends import emit
from archc.ir.graph import BlockInst, GroupInst
from archc.lower import lower
from archc.spec.loader import load_spec_text

SPEC = """\
archc: 1
name: indexed
input: [3, 16, 16]
params: {num_classes: 5, first_stage: 2}
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
blocks:
  unit:
    params: {filters: int, block_id: int, total: int}
    layers:
      - conv: {conv: {filters: filters, kernel: 3, padding: 1}}
      - drop: {dropout: {rate: 0.5 * block_id / total}}
layers:
  - features:
      - {conv: {filters: 8, kernel: 3, padding: 1}}
      - - {stage: unit, repeat: first_stage, with: {filters: 8, block_id: i, total: 6}}
      - - {stage: unit, repeat: 4, with: {filters: 8, block_id: first_stage + i, total: 6}, last: {filters: 4 + i}}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""


def graph():
    return lower(load_spec_text(textwrap.dedent(SPEC), "indexed.yaml"))


def test_instances_read_their_index():
    features = graph().body[0]
    assert isinstance(features, GroupInst) and [item.name for item in features.items] == ["0", "1", "2"]
    stages = [item.items for item in features.items[1:]]  # each nested list holds its stage's instances
    instances = [inst for items in stages for inst in items]
    assert all(isinstance(inst, BlockInst) for inst in instances)
    assert [dict(inst.args)["block_id"] for inst in instances] == [0, 1, 2, 3, 4, 5]
    assert [inst.name for inst in instances] == ["0", "1", "0", "1", "2", "3"]
    assert dict(instances[-1].args)["filters"] == 7  # `last:` reads the index too: 4 + 3
    rates = [n.op.rate for n in graph().nodes if n.op.kind == "dropout"]
    assert rates == [0.5 * k / 6 for k in range(6)]


def test_generated_torch_loops_over_the_index():
    code = emit(graph(), "torch")
    assert "Unit(8, filters=8, block_id=2 + i, total=6) for i in range(3)" in code
    torch = need("torch")
    model = api.load_module(graph(), "torch").build_model()
    assert [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)] == [0.5 * k / 6 for k in range(6)]
    assert "features.2.3.conv.weight" in model.state_dict()
    assert model.state_dict()["features.2.3.conv.weight"].shape[0] == 7


def test_backends_agree():
    need("torch")
    need("keras")
    from archc import verify

    report = verify.verify(graph())
    assert report.ok, verify.to_table(report)


def test_float_arguments_loop_over_their_expression():
    """A float argument of `i` (ConvNeXt's stochastic depth rates) does not step evenly in
    floating point: both backends write one loop over its expression, model parameters filled
    in, `first:` still overriding; the PyTorch model holds exactly archc's values."""
    text = """
archc: 1
name: indexed
input: [4, 8, 8]
params: {rate: 0.3, n: 5}
blocks:
  unit:
    params: {p: float}
    layers:
      - drop: {stochastic_depth: {rate: p}}
layers:
  - stage: {stage: unit, repeat: n, with: {p: "rate * (2 + i) / (n - 1.0) / 2"}, first: {p: 0.05}}
  - pool: global_avgpool
"""
    graph = lower(load_spec_text(text, "indexed.yaml"))
    want = [0.05] + [0.3 * (2 + i) / (5 - 1.0) / 2 for i in range(1, 5)]
    assert [dict(inst.args)["p"] for inst in graph.body[0].instances] == want
    torch_src, keras_src = api.compile(graph, "torch"), api.compile(graph, "keras")
    assert "Unit(4, p=0.05)" in torch_src and "for i in range(1, 5)" in torch_src
    assert "p=0.3 * (2 + i) / 4.0 / 2" in torch_src and "p=0.3 * (2 + i) / 4.0 / 2" in keras_src
    need("torch")
    model = api.load_module(graph, "torch").build_model()
    assert [m.p for m in model.modules() if type(m).__name__ == "StochasticDepth"] == want


NUMBERED = """\
archc: 1
name: numbered
input: [3, 16, 16]
params: {num_classes: 5, deep: false, prob: 0.4}
defaults:
  conv: {bias: false}
blocks:
  unit:
    params: {filters: int, rate: float}
    layers:
      - conv: {conv: {filters: filters, kernel: 3, padding: 1}}
      - drop: {dropout: {rate: rate}}
layers:
  - features:
      - {conv: {filters: 8, kernel: 3, padding: 1}}
      - - {stage: unit, repeat: 2, with: {filters: 8, rate: prob * stage_block_id / total_stage_blocks}}
      - - {stage: unit, repeat: 3, with: {filters: 8, rate: 0.0}, if: deep}
      - - stage: unit
          repeat: 3
          with: {filters: 8, rate: prob * stage_block_id / total_stage_blocks}
          first: {filters: 6 + stage_block_id, rate: 0.5}
          last: {filters: total_stage_blocks - 1}
  - extra: {stage: unit, repeat: 3, with: {filters: 7, rate: prob * stage_block_id / total_stage_blocks}}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""


def numbered(**params):
    return lower(load_spec_text(NUMBERED, "numbered.yaml", overrides=[f"params.{k}={v}" for k, v in params.items()]))


def test_stage_block_id_counts_across_the_models_stages():
    """`stage_block_id` is an instance's index among the instances of all the model's present
    stages (nested lists and later top-level entries included, an absent stage not), and
    `total_stage_blocks` their number: torchvision's EfficientNet/ConvNeXt builder counters."""
    g = numbered()
    rates = [n.op.rate for n in g.nodes if n.op.kind == "dropout"]
    assert rates == [0.0, 0.4 * 1 / 8, 0.5, 0.4 * 3 / 8, 0.4 * 4 / 8, 0.4 * 5 / 8, 0.4 * 6 / 8, 0.4 * 7 / 8]
    stage3 = g.body[0].items[3].items  # items[2]: the absent stage's empty list
    assert [dict(inst.args)["filters"] for inst in stage3] == [6 + 2, 8, 7]  # first: 6 + id; last: the total - 1
    deep = numbered(deep="true")  # the conditional stage is present: 3 more instances, numbered in order
    rates = [n.op.rate for n in deep.nodes if n.op.kind == "dropout"]
    assert rates == [0.0, 0.4 / 11, 0.0, 0.0, 0.0, 0.5, 0.4 * 6 / 11, 0.4 * 7 / 11, 0.4 * 8 / 11, 0.4 * 9 / 11, 0.4 * 10 / 11]
    assert [dict(inst.args)["filters"] for inst in deep.body[0].items[3].items] == [6 + 5, 8, 10]


def test_stage_block_id_prints_as_a_loop_over_i():
    """The generated code writes the number as the stage's loop variable plus the instances
    before (`3 + i`), the total folded in, as it wrote the cumulative sums it replaces."""
    code = emit(numbered(), "torch")
    assert "Unit(7, filters=7, rate=0.4 * (5 + i) / 8) for i in range(3)" in code
    # outside a loop, a float of the index is its expression at that index, not 0.05 or 0.30000000000000004
    assert "Unit(8, filters=8, rate=0.4 * 1 / 8)" in code and "Unit(8, filters=8, rate=0.4 * 3 / 8)" in code
    keras = emit(numbered(), "keras")
    assert "rate=0.4 * (5 + i) / 8" in keras and "rate=0.4 * 3 / 8" in keras


def test_stage_block_id_backends_agree():
    need("torch")
    need("keras")
    from archc import verify

    for g in (numbered(), numbered(deep="true")):
        report = verify.verify(g)
        assert report.ok, verify.to_table(report)
