"""Tables of stages (`stages:`): a table stands for the stage entries it replaces (the same
nodes, names, shapes and counts, the same state_dict and Keras layer names), and the
generated code keeps it as a list of tuples and builds the stages in a loop, as torchvision's
efficientnet.py and mobilenetv2.py do."""

import re
from pathlib import Path

import pytest
from conftest import need

from archc import api
from archc.ir.graph import GroupInst
from archc.lower import lower
from archc.spec.loader import load_spec_text

ROOT = Path(__file__).resolve().parent.parent

HEAD = """\
archc: 1
name: tabled
input: [3, 16, 16]
params: {num_classes: 5, width: 1.0, prob: 0.3, n2: 3}
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
blocks:
  unit:
    params: {filters: int, expand: 1, stride: 1, rate: 0.0}
    layers:
      - conv1: {conv: {filters: filters * expand, kernel: 3, stride: stride, padding: 1}}
      - bn1: batchnorm
      - act: relu
      - conv2: {conv: {filters: filters, kernel: 1}}
      - bn2: batchnorm
      - drop: {dropout: {rate: rate}}
  down:
    params: {filters: int}
    layers:
      - {conv: {filters: filters, kernel: 2, stride: 2}}
      - batchnorm
layers:
  - features:
      - {conv: {filters: 8, kernel: 3, padding: 1}}
"""
TAIL = """\
      - {conv: {filters: 32, kernel: 1}}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""
# the same stages, as a table and as stage entries (nested: one list per row)
NESTED_TABLE = """\
      - stages: unit
        columns: [expand, stride, filters, repeat]
        rows:
          - [1, 1, 8, 1]
          - [2, 2, "round(16 * width)", n2]
          - [4, 2, 24, 2]
        with: {rate: prob * stage_block_id / total_stage_blocks}
        first: {stride: stride}
"""
NESTED_STAGES = """\
      - - {stage: unit, repeat: 1, with: {expand: 1, filters: 8, rate: prob * stage_block_id / total_stage_blocks}}
      - - {stage: unit, repeat: n2, with: {expand: 2, filters: "round(16 * width)", rate: prob * stage_block_id / total_stage_blocks}, first: {stride: 2}}
      - - {stage: unit, repeat: 2, with: {expand: 4, filters: 24, rate: prob * stage_block_id / total_stage_blocks}, first: {stride: 2}}
"""
# flat (each row's instances entries of the list), one instance per row where there is no `repeat` column
FLAT_TABLE = """\
      - stages: unit
        flat: true
        columns: [expand, filters, repeat, stride]
        rows:
          - [1, 8, 1, 1]
          - [2, "round(16 * width)", n2, 2]
        first: {stride: stride}
      - stages: unit
        flat: true
        columns: [filters, stride]
        rows:
          - [24, 2]
          - [24, 1]
        with: {rate: prob}
"""
FLAT_STAGES = """\
      - {block: unit, with: {expand: 1, filters: 8}}
      - {stage: unit, repeat: n2, with: {expand: 2, filters: "round(16 * width)"}, first: {stride: 2}}
      - {block: unit, with: {filters: 24, stride: 2, rate: prob}}
      - {block: unit, with: {filters: 24, rate: prob}}
"""

# ConvNeXt's layout: a downsampling between consecutive stages (`between:`), reading the later row
BETWEEN_TABLE = """\
      - stages: unit
        columns: [dim, repeat]
        rows:
          - [8, 2]
          - ["round(16 * width)", n2]
          - [24, 1]
        with: {filters: dim, rate: prob * stage_block_id / (total_stage_blocks - 1.0)}
        between: {block: down, with: {filters: dim}}
"""
BETWEEN_STAGES = """\
      - - {stage: unit, repeat: 2, with: {filters: 8, rate: prob * stage_block_id / (total_stage_blocks - 1.0)}}
      - {block: down, with: {filters: "round(16 * width)"}}
      - - {stage: unit, repeat: n2, with: {filters: "round(16 * width)", rate: prob * stage_block_id / (total_stage_blocks - 1.0)}}
      - {block: down, with: {filters: 24}}
      - - {stage: unit, repeat: 1, with: {filters: 24, rate: prob * stage_block_id / (total_stage_blocks - 1.0)}}
"""
FORMS = [(NESTED_TABLE, NESTED_STAGES), (FLAT_TABLE, FLAT_STAGES), (BETWEEN_TABLE, BETWEEN_STAGES)]


def graph_of(body: str, overrides=()):
    return lower(load_spec_text(HEAD + body + TAIL, "tabled.yaml", overrides))


def shape_of(graph):
    """What a table must keep: every node (id, op values, inputs, shape, counts) and the item tree's names."""

    def names(items, prefix=""):
        for item in items:
            yield prefix + item.name, type(item).__name__
            yield from names(getattr(item, "items", ()), f"{prefix}{item.name}.")

    nodes = [(n.id, n.op.kind, n.op.values(), n.inputs, n.shape, n.trainable, n.non_trainable, n.macs) for n in graph.nodes]
    return nodes, list(names(graph.body)), graph.counts, graph.exposed


@pytest.mark.parametrize(("table", "stages"), FORMS, ids=["nested", "flat", "between"])
@pytest.mark.parametrize("overrides", [(), ("params.n2=5", "params.width=1.5")], ids=["defaults", "set"])
def test_a_table_is_the_stage_entries_it_stands_for(table, stages, overrides):
    tabled, staged = graph_of(table, overrides), graph_of(stages, overrides)
    assert shape_of(tabled) == shape_of(staged)
    assert len(tabled.nodes) > 20
    features = tabled.body[0]
    assert isinstance(features, GroupInst) and features.tables  # kept for the emitters


def test_the_table_is_kept_evaluated_in_the_ir():
    (table,) = graph_of(NESTED_TABLE, ("params.width=1.5",)).body[0].tables
    assert (table.start, table.end, table.flat, table.block) == (1, 4, False, "unit")
    assert table.columns == ("expand", "stride", "filters", "repeat")
    assert table.rows == ((1, 1, 8, 1), (2, 2, 24, 3), (4, 2, 24, 2))  # round(16 * 1.5) = 24, n2 = 3
    assert (table.block_id, table.total_stage_blocks) == (0, 6)


def test_generated_torch_keeps_the_table_and_loops():
    graph = graph_of(NESTED_TABLE)
    code = api.compile(graph, "torch")
    init = code[code.index("class Tabled") :]
    assert "# expand, stride, filters, repeat: one stage per row\n" in init
    assert "unit_setting = [\n            (1, 1, 8, 1),\n            (2, 2, 16, 3),\n            (4, 2, 24, 2),\n        ]" in init
    assert "for expand, stride, filters, repeat in unit_setting:" in init
    assert "total_stage_blocks = sum(row[-1] for row in unit_setting)" in init
    assert "stride=stride if i == 0 else 1" in init and "rate=0.3 * stage_block_id / total_stage_blocks" in init
    assert "layers.append(nn.Sequential(*stage))" in init and "self.features = nn.Sequential(*layers)" in init
    assert len(re.findall(r"\bUnit\(", init)) == 1  # one call, in the loop


def test_generated_flat_tables_loop_into_the_list():
    code = api.compile(graph_of(FLAT_TABLE), "torch")
    init = code[code.index("class Tabled") :]
    assert "for expand, filters, repeat, stride in unit_setting_1:\n            for i in range(repeat):\n                layers.append(" in init
    assert "# filters, stride: one block per row\n        unit_setting_2 = [" in init  # no `repeat` column
    assert "nn.Sequential(*stage)" not in init
    keras = api.compile(graph_of(FLAT_TABLE), "keras")
    assert 'name=f"features_{entry}"' in keras


def test_generated_code_downsamples_between_rows():
    code = api.compile(graph_of(BETWEEN_TABLE), "torch")
    init = code[code.index("class Tabled") :]
    assert "for k, (dim, repeat) in enumerate(unit_setting):\n            if k > 0:\n                layers.append(Down(in_channels, filters=dim))" in init
    keras = api.compile(graph_of(BETWEEN_TABLE), "keras")
    assert 'x = down(x, in_channels, filters=dim, name=f"features_{entry}")' in keras
    assert 'name=f"features_{entry}_{i}"' in keras


def _torch_modules(body):
    torch = need("torch")
    graph = graph_of(body)
    torch.manual_seed(0)
    return api.load_module(graph, "torch").build_model().eval()


@pytest.mark.parametrize(("table", "stages"), FORMS, ids=["nested", "flat", "between"])
def test_the_loop_builds_the_modules_of_the_stage_entries(table, stages):
    torch = need("torch")
    looped, written = _torch_modules(table), _torch_modules(stages)
    a, b = looped.state_dict(), written.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    assert str(looped) == str(written)  # every module, its arguments and place
    written.load_state_dict(a)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(looped(x), written(x))


@pytest.mark.parametrize("body", [NESTED_TABLE, FLAT_TABLE, BETWEEN_TABLE], ids=["nested", "flat", "between"])
def test_backends_agree_on_a_table(body):
    need("torch")
    need("keras")
    from archc import verify

    report = verify.verify(graph_of(body))
    assert report.ok, verify.to_table(report)


def test_a_tapped_list_is_written_out():
    """A list read from outside runs in pieces: its stages are written out, still exactly."""
    text = HEAD + NESTED_TABLE + TAIL + "outputs: {logits: fc, mid: features.2}\n"
    graph = lower(load_spec_text(text, "tabled.yaml"))
    assert graph.body[0].tables
    code = api.compile(graph, "torch")
    assert "unit_setting" not in code
    assert "self.features = nn.Sequential(" in code


def test_efficientnet_spec_is_a_table_with_the_torchvision_layout():
    source = (ROOT / "specs" / "efficientnet.yaml").read_text()
    assert source.count("stages: mbconv") == 1 and "stage: mbconv" not in source
    graph = api.to_ir(ROOT / "specs" / "efficientnet_b0.yaml")
    (table,) = graph.body[0].tables
    # torchvision's _efficientnet_conf for B0: bneck_conf(expand_ratio, kernel, stride, input_channels, out_channels, num_layers)
    reference = [(1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
                 (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1)]  # fmt: skip
    assert table.rows == tuple((e, k, s, o, n) for e, k, s, _, o, n in reference)
    code = (ROOT / "generated" / "efficientnet_b0_torch.py").read_text()
    assert "for expand_ratio, kernel, stride, out_channels, repeat in mbconv_setting:" in code
    assert code.count("MBConv(\n") == 1
    keras = (ROOT / "generated" / "efficientnet_b0_keras.py").read_text()
    assert 'name=f"features_{stage}_{i}"' in keras


def test_a_table_reads_its_columns_only_where_written():
    """A column that is a parameter `first:` sets is only a name: later instances keep the default."""
    graph = graph_of(NESTED_TABLE)
    strides = [dict(inst.args)["stride"] for row in graph.body[0].items[1:4] for inst in row.items]
    assert strides == [1, 2, 1, 1, 2, 1]



def test_deploy_drops_the_column_of_a_parameter_it_removes():
    """`archc deploy` removes a parameter no expression reads any more: off a table too, its
    column and each row's value, unless `with`, `first` or `last` still reads the name."""
    from archc.deploy.doc import drop_unused_params

    doc = {
        "params": {"num_classes": 5},
        "blocks": {"unit": {"params": {"filters": "int", "rate": 0.0, "gap": 1}, "layers": [{"conv": {"conv": {"filters": "filters"}}}]}},
        "layers": [{"features": [
            {"stages": "unit", "columns": ["filters", "rate", "gap", "repeat"], "rows": [[8, 0.1, 1, 2], [16, 0.2, 2, 1]],
             "first": {"filters": "filters * gap"}},
        ]}, {"fc": {"dense": {"units": "num_classes"}}}],
    }  # fmt: skip
    done = drop_unused_params(doc)
    assert "block unit: parameter rate unused, removed" in done and "block unit: parameter gap unused, removed" in done
    table = doc["layers"][0]["features"][0]
    assert table["columns"] == ["filters", "gap", "repeat"]  # `gap` is still read by `first`
    assert table["rows"] == [[8, 1, 2], [16, 2, 1]]
