"""`archc verify` on the whole zoo, in train mode, and on deliberately broken models:
a missing kernel transpose and Keras 'same' padding at stride 2 must both be caught."""

import json
import os

import pytest
from click.testing import CliRunner
from conftest import (
    DEEP,
    REPRESENTATIVES,
    ROOT,
    ZOO,
    expensive,
    graph_of,
    need,
    suite_graph,
)

from archc import api
from archc.cli import main

verify = need("archc.verify")


def blocks_of(report):
    return [r.item for r in report.rows]


@pytest.mark.parametrize("spec", expensive(set(ZOO) - DEEP))
def test_zoo_verifies(spec):
    """Each family's representative, at height and width at most 97 x 128 where Keras builds it
    so (odd and even maps at every stride: how each strided layer rounds and pads); every other
    zoo spec at its own input in `make test-slow`."""
    if spec in REPRESENTATIVES:
        graph = api.to_ir(verify.smaller(api.load_spec(ROOT / spec), 97, 128))
    else:
        graph = suite_graph(spec)
    report = verify.verify(graph, batch=1 if "cifar" not in spec else 2)
    out = report.output
    assert out.max_abs <= 1e-4 * max(1.0, out.magnitude), verify.to_table(report)
    assert report.ok and not any(r.problem for r in report.rows)


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(DEEP))
def test_deep_zoo_verifies(spec):
    """ResNet-1202: 6,000 Keras layers take minutes to build, so it runs with `make test-slow`."""
    report = verify.verify(graph_of(spec), batch=1)
    assert report.ok, verify.to_table(report)


def test_average_pool_shortcuts_verify_at_odd_sizes():
    """timm/seresnext26d_32x4d at 97 x 83: the maps its average-pool shortcuts (ceil_mode,
    inside a block kind) halve are odd in layer2 to layer4, so their last windows are
    partial; Keras' helper finds them on its input."""
    graph = graph_of("specs/timm/seresnext26d_32x4d.yaml", "input=[3, 97, 83]")
    report = verify.verify(graph, batch=1)
    assert report.ok, verify.to_table(report)
    assert {r.item: r.shape for r in report.rows}["layer4"] == (2048, 4, 3)


def test_rows_cover_every_block():
    report = verify.verify(ROOT / "specs/cifar/resnet20.yaml")
    stages = [f"layer{s}" for s in (1, 2, 3)]
    assert blocks_of(report) == ["conv1", "bn1", "relu"] + [
        x for s in stages for x in (s, *(f"{s}.{i}" for i in range(3)))
    ] + ["avgpool", "fc"]
    assert report.rows[-1].shape == (10,) and report.rows[4].depth == 1


@pytest.mark.parametrize("spec", ["specs/cifar/resnet20.yaml", "specs/cifar/densenet40_k12.yaml"])
def test_train_mode(spec):
    report = verify.verify(ROOT / spec, batch=4, train_mode=True)
    assert report.mode == "train" and report.ok, verify.to_table(report)


def test_missing_kernel_transpose_is_caught(monkeypatch):
    """A transfer that reshapes OIHW to HWIO instead of transposing keeps every shape right."""
    monkeypatch.setattr(
        "archc.ops.conv.Conv.to_keras",
        lambda self, name, w: w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0]) if name == "weight" else w,
    )
    report = verify.verify(ROOT / "specs/cifar/resnet20.yaml")
    assert not report.ok
    assert report.first_disagreement().item == "conv1"


def test_same_padding_at_stride_2_is_caught(monkeypatch):
    """Keras 'same' pads stride-2 convs bottom/right only. With it in place of the explicit
    ZeroPadding2D, stride-1 blocks still agree and the first stride-2 block does not."""
    emit = api.compile  # what verify's in-memory modules are made from
    pad = '    x = layers.ZeroPadding2D(1, name=f"{name}_conv1_pad")(x)\n'

    def same_padding(graph, backend):
        text = emit(graph, backend)
        if backend == "keras":
            assert pad in text and "strides=stride,\n" in text
            text = text.replace(pad, "").replace("strides=stride,\n", 'strides=stride,\n        padding="same",\n')
        return text

    monkeypatch.setattr(api, "compile", same_padding)
    report = verify.verify(ROOT / "specs/cifar/resnet20.yaml")
    assert not report.ok
    assert report.first_disagreement().item == "layer2.0"
    assert all(r.within for r in report.rows if r.item.startswith("layer1"))


def test_cli(monkeypatch):
    runner = CliRunner()
    result = runner.invoke(main, ["verify", str(ROOT / "specs/cifar/resnet20.yaml"), "--json", "--seed", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["mode"] == "eval" and data["seed"] == 3 and data["batch"] == 2
    assert data["output"] == data["blocks"][-1] and data["output"]["shape"] == [10]
    assert {"item", "shape", "max_abs", "max_rel", "magnitude", "within"} <= set(data["blocks"][0])
    import keras

    torch = verify.torch
    backend = keras.backend.backend()
    framework = __import__(backend)
    assert data["keras_backend"] == backend == os.environ["KERAS_BACKEND"]
    assert data["versions"] == {"torch": torch.__version__, "keras": keras.__version__, backend: framework.__version__}
    assert result.stderr == ""  # not a terminal: no progress bar

    table = runner.invoke(main, ["verify", str(ROOT / "specs/cifar/plain20.yaml"), "--progress"])
    assert table.exit_code == 0 and "PASS: every row within tolerance" in table.stdout and "layer3.2" in table.stdout
    assert f"torch {torch.__version__}; keras {keras.__version__} on {backend} {framework.__version__}" in table.stdout.splitlines()
    weighted = 2 * 19 + 1  # plain-20: 19 convs with their batch norms, and the classifier
    bars = table.stderr.replace("\r", "\n").splitlines()
    assert bars[-1] == "run      [##############################] 2/2"
    assert f"transfer [##############################] {weighted}/{weighted}" in bars and "build    [" + "#" * 30 + "] 2/2" in bars

    usage = runner.invoke(main, ["verify", str(ROOT / "specs/cifar/resnet20.yaml"), "--train-mode", "--batch", "1"])
    assert usage.exit_code == 2 and "--train-mode needs --batch 2" in usage.output

    monkeypatch.setattr(
        "archc.ops.conv.Conv.to_keras",
        lambda self, name, w: w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0]) if name == "weight" else w,
    )
    broken = runner.invoke(main, ["verify", str(ROOT / "specs/cifar/resnet20.yaml")])
    assert broken.exit_code == 1 and "FAIL:" in broken.output and "first disagreement is at conv1" in broken.output


def test_group_with_a_repeated_activation():
    """A group (nn.Sequential) that applies its `relu` twice: torch must run both."""
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    graph = lower(load_spec_text("""
archc: 1
name: shared_relu
input: [3, 8, 8]
defaults: {conv: {bias: true}, activation: relu}
layers:
  - body:
      - conv1: {conv: {filters: 4, kernel: 3, padding: 1}}
      - relu: act
      - conv2: {conv: {filters: 4, kernel: 3, padding: 1}}
      - relu: act
  - pool: global_avgpool
"""))
    report = verify.verify(graph)
    assert [r.item for r in report.rows][3:5] == ["body.conv2", "body.relu#2"]
    assert report.ok, verify.to_table(report)


def test_model_level_channels_last_section():
    """Layers between permutes at model level: PyTorch's tensors there are NHWC already, and
    verify compares them with Keras' as they are (a layer norm and a Linear at every position)."""
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    graph = lower(load_spec_text("""
archc: 1
name: channels_last
input: [3, 8, 6]
layers:
  - to_last: {permute: {to: channels_last}}
  - norm: {layernorm: {eps: 1.0e-6}}
  - fc: {dense: {units: 5}}
  - to_first: {permute: {to: channels_first}}
  - pool: global_avgpool
"""))
    report = verify.verify(graph)
    assert [r.item for r in report.rows][:4] == ["to_last", "norm", "fc", "to_first"]
    assert report.ok and not any(r.problem for r in report.rows), verify.to_table(report)


def test_model_level_layer_scales():
    """A layer scale at model level is a bare parameter, no module to hook: the next row covers
    it (it raised AttributeError, exit 1). Both PyTorch shapes, (C, 1, 1) and the vector (C,)."""
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    graph = lower(load_spec_text("""
archc: 1
name: scaled
input: [3, 8, 8]
defaults: {conv: {bias: true}}
layers:
  - conv: {conv: {filters: 4, kernel: 3, padding: 1}}
  - scale: {layer_scale: {init_value: 0.5}}
  - relu: relu
  - gamma: {layer_scale: {vector: true}}
  - pool: global_avgpool
"""))
    report = verify.verify(graph)
    assert [r.item for r in report.rows] == ["conv", "relu", "pool"]
    assert report.ok, verify.to_table(report)


def test_a_vector_layer_scale_in_a_memory_efficient_dense_layer():
    """A dense layer's first layers up to its conv are a method of their own (torchvision's
    memory-efficient `_bottleneck`); a vector layer scale there is printed with its reshape as
    everywhere else (it was `self.scale1 * out`, which broadcasts (C,) over the width)."""
    from archc.lower import lower
    from archc.spec.loader import load_spec_text

    graph = lower(load_spec_text("""
archc: 1
name: dense_scaled
input: [3, 8, 8]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  scaled_layer:
    params: {growth_rate: int}
    layers:
      - norm1: batchnorm
      - scale1: {layer_scale: {init_value: 0.5, vector: true}}
      - conv1: {conv: {filters: growth_rate, kernel: 3, padding: 1}}
layers:
  - conv0: {conv: {filters: 6, kernel: 3, padding: 1}}
  - block1: {stage: scaled_layer, repeat: 2, connectivity: dense, with: {growth_rate: 4}}
  - pool: global_avgpool
"""))
    report = verify.verify(graph)
    assert report.ok and not any(r.problem for r in report.rows), verify.to_table(report)


def test_long_stages_are_folded_but_disagreements_are_not():
    """A 200-block stage prints its first and last blocks and one line for the rest; a block
    that disagrees stays visible with its contents; --all-rows prints everything."""

    def row(item, depth, ok=True):
        return verify.Row(item, depth, (8, 4, 4), 0.0 if ok else 1.0, 1.0, ok)

    blocks = [row(f"stage.{i}", 1, ok=i != 120) for i in range(200)]
    inner = [row("stage.120.conv", 2, ok=False)]
    rows = (row("stem", 0), row("stage", 0, ok=False), *blocks[:121], *inner, *blocks[121:], row("fc", 0, ok=False))
    versions = {"torch": "2.13.0", "keras": "3.15.1", "jax": "0.10.2"}
    report = verify.Report("s.yaml", "m", "eval", 2, 0, 1e-4, rows, "jax", versions)
    text = verify.to_table(report)
    lines = text.splitlines()
    assert len(lines) < 30
    assert "  ... 115 more (stage.3 to stage.117), all ok; worst rel diff 0.00e+00 (stage.3)" in lines
    assert "  ... 74 more (stage.124 to stage.197), all ok; worst rel diff 0.00e+00 (stage.124)" in lines
    shown = [line.split()[0] for line in lines if line.startswith("  stage.") or line.startswith("    stage.")]
    assert shown == [*(f"stage.{i}" for i in (0, 1, 2, 118, 119, 120)), "stage.120.conv", *(f"stage.{i}" for i in (121, 122, 123, 198, 199))]
    assert lines[1] == "torch 2.13.0; keras 3.15.1 on jax 0.10.2"
    assert len(verify.to_table(report, all_rows=True).splitlines()) == len(rows) + 7  # three header lines, a blank, the column titles; a blank, the verdict


def test_a_row_over_tolerance_fails_the_verdict():
    """Two mistakes can cancel at the output: a table with any row over tolerance is a FAIL."""
    rows = (
        verify.Row("layer1", 0, (4, 8, 8), 2.58, 1.0, False),
        verify.Row("output", 0, (5,), 1e-7, 1.0, True),
    )
    report = verify.Report("t.yaml", "t", "eval", 2, 0, 1e-4, rows, "jax", {"torch": "2", "keras": "3", "jax": "0.10"})
    assert not report.ok and report.first_disagreement().item == "layer1"
    table = verify.to_table(report)
    assert "FAIL" in table and "PASS" not in table and "first disagreement is at layer1" in table
    assert report.to_dict()["ok"] is False


def test_rows_over_the_tolerance_are_judged_by_pytorchs_own_float32_error():
    """The float64 copy runs only when a row is over the tolerance; then each row passes
    within ROUNDING x PyTorch's own float32 error there, and says that error."""
    graph = graph_of("specs/cifar/resnet20.yaml")
    assert all(row.float32_error == 0.0 for row in verify.verify(graph, batch=1).rows)  # nothing over: not measured
    report = verify.verify(graph, batch=1, tolerance=1e-12)
    compared = [row for row in report.rows if not row.problem]
    assert all(row.float32_error > 0.0 for row in compared)
    assert all(row.within == (row.max_abs <= verify.ROUNDING * row.float32_error) for row in compared)
