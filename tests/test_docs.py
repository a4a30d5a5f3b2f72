"""docs/spec.md stays true: its field reference is generated from the models, its examples
build, and the tutorial's numbers are what archc prints."""

import re

from click.testing import CliRunner
from conftest import ROOT, need

from archc.cli import main
from archc.lower import lower
from archc.spec import reference
from archc.spec.loader import load_spec

SPEC_MD = ROOT / "docs/spec.md"


def test_field_reference_is_current():
    text = SPEC_MD.read_text()
    start, end = (
        text.index(reference.BEGIN),
        text.index(reference.END) + len(reference.END),
    )
    assert text[start:end] == reference.render(), (
        "run `python -m archc.spec.reference docs/spec.md`"
    )


def test_every_model_field_is_documented():
    for _, _, model in reference.SECTIONS:
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_examples_build_with_published_counts():
    # ResNeXt-29 8x64d and 16x64d: 34.4M and 68.1M (Xie et al. 2017, Table 7)
    resnext = ROOT / "docs/examples/resnext29_8x64d.yaml"
    assert lower(load_spec(resnext)).counts.trainable == 34_426_698
    assert (
        lower(load_spec(resnext, ["params.cardinality=16"])).counts.trainable
        == 68_155_210
    )
    variant = lower(load_spec(ROOT / "docs/examples/densenet_bc_drop.yaml"))
    assert variant.counts.trainable == 1_481_986
    assert any(n.id == "denseblock3.denselayer16.drop" for n in variant.nodes)


def test_timm_recipes_have_timms_counts():
    """docs/spec.md's SE-ResNet / ResNet-D recipes: each option's count is timm's
    (timm.create_model(NAME), summed parameters; outputs compared in tests/test_timm.py)."""
    examples = ROOT / "docs/examples"
    assert lower(load_spec(examples / "seresnext50_32x4d.yaml")).counts.trainable == 27_559_896  # seresnext50_32x4d
    assert lower(load_spec(examples / "resnet50c.yaml")).counts.trainable == 25_576_264  # resnet50c
    stem = ["layers.conv1={conv: {filters: 64, kernel: 7, stride: 2, padding: 3}}"]  # the 7x7 back
    assert lower(load_spec(ROOT / "specs/timm/resnet50d.yaml", stem)).counts.trainable == 25_557_032  # resnet50(avg_down=True)
    text = SPEC_MD.read_text()
    for count in ("27,559,896", "25,576,264", "25,557,032", "16,809,512"):
        assert count in text[text.index("## Recipes: SE-ResNet") : text.index("## Libraries")]


def test_tutorial_output_is_what_archc_prints():
    text = SPEC_MD.read_text()
    args = [
        "diff",
        "specs/cifar/densenet_bc100_k12.yaml",
        "--set-b",
        "params.growth_rate=16",
        "--set-b",
        "params.compression=0.6",
    ]
    out = CliRunner().invoke(main, args).output
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total in text
    summary = (
        CliRunner()
        .invoke(main, ["summary", "specs/cifar/densenet_bc100_k12.yaml"])
        .output
    )
    for line in summary.splitlines():
        if re.match(r"(conv0|denseblock1|transition1) ", line):
            assert line in text, line
    error = (
        CliRunner()
        .invoke(main, ["check", "specs/cifar/resnet.yaml", "--set", "params.depth=21"])
        .output
    )
    assert error.strip() in text


def test_dataflow_examples_agree_in_both_backends():
    """docs/examples' dual-path block and MBConv with squeeze-and-excitation: IR, PyTorch and
    Keras counts are equal, and `verify` finds equal outputs with the weights transferred."""
    need("torch")
    need("keras")
    import numpy as np

    from archc import api, verify

    for name in ("dual_path.yaml", "mbconv_se.yaml"):
        path = ROOT / "docs/examples" / name
        graph = lower(load_spec(path))
        counts = (graph.counts.trainable, graph.counts.non_trainable)
        torch_model = api.load_module(graph, "torch").build_model()
        buffers = sum(
            b.numel()
            for n, b in torch_model.named_buffers()
            if not n.endswith("num_batches_tracked")
        )
        assert (sum(p.numel() for p in torch_model.parameters()), buffers) == counts
        keras_model = api.load_module(graph, "keras").build_model()
        k_counts = tuple(
            sum(int(np.prod(w.shape)) for w in ws)
            for ws in (keras_model.trainable_weights, keras_model.non_trainable_weights)
        )
        assert k_counts == counts
        report = verify.verify(path)
        assert report.ok, verify.to_table(report)
