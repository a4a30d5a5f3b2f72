"""`inline: true`: the layers of a block instance are numbered entries of the enclosing list
(torchvision's VGG `make_layers`: `features.0` conv, `features.1` BN, `features.2` ReLU), not
one nested entry. Counts and numbering against torchvision's VGG family, the generated code of
both backends, and the backends against each other with shared weights."""

import re
import shutil
import subprocess
import textwrap

import numpy as np
import pytest
from conftest import ROOT, need

from archc import api
from archc.backends import emit
from archc.errors import SpecError
from archc.interop import channels_last
from archc.lower import lower
from archc.spec.loader import load_spec, load_spec_text

# torchvision 0.29.1: (trainable, BN statistics, the last numbered module with weights in `features`)
TORCHVISION_VGG = {
    (11, False): (132_863_336, 0, "features.18"),
    (11, True): (132_868_840, 5_504, "features.26"),
    (13, False): (133_047_848, 0, "features.22"),
    (13, True): (133_053_736, 5_888, "features.32"),
    (16, False): (138_357_544, 0, "features.28"),
    (16, True): (138_365_992, 8_448, "features.41"),
    (19, False): (143_667_240, 0, "features.34"),
    (19, True): (143_678_248, 11_008, "features.50"),
}


@pytest.mark.parametrize("depth, batch_norm", sorted(TORCHVISION_VGG))
def test_vgg_family_is_torchvisions(depth, batch_norm):
    """One spec, torchvision's cfgs A/B/D/E with and without batch norm: its counts and its
    flat numbering (each conv takes 2 indices, 3 with BN, each pool 1)."""
    sets = [f"params.depth={depth}", f"params.batch_norm={str(batch_norm).lower()}"]
    graph = lower(load_spec(ROOT / "specs/vgg.yaml", sets))
    trainable, buffers, last = TORCHVISION_VGG[depth, batch_norm]
    assert (graph.counts.trainable, graph.counts.non_trainable) == (trainable, buffers)
    weighted = [n.id for n in graph.nodes if n.id.startswith("features.") and n.trainable]
    assert weighted[-1] == last
    assert all(n.id.count(".") == 1 for n in graph.nodes if n.id.startswith("features."))  # never features.0.0


def test_vgg_depth_is_checked():
    with pytest.raises(SpecError, match="VGG depth is 11, 13, 16 or 19; got 15"):
        lower(load_spec(ROOT / "specs/vgg.yaml", ["params.depth=15"]))


SPEC = textwrap.dedent("""\
    archc: 1
    name: inline_net
    input: [3, 16, 16]
    params: {num_classes: 10, batch_norm: true}
    defaults: {conv: {bias: true}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    blocks:
      unit:
        params: {filters: int, batch_norm: false}
        layers:
          - {conv: {filters: filters, kernel: 3, padding: 1}}
          - {batchnorm: {}, if: batch_norm}
          - relu
    layers:
      - features:
          - {block: unit, with: {filters: 8, batch_norm: batch_norm}, inline: true}
          - {maxpool: {kernel: 2, stride: 2}}
          - {stage: unit, repeat: 4, with: {filters: 12}, inline: true}
          - {stage: unit, repeat: 2, with: {filters: 6, batch_norm: true}, inline: true}
      - pool: global_avgpool
      - fc: {dense: {units: num_classes}}
""")


def test_inline_numbering_and_code():
    graph = lower(load_spec_text(SPEC, "inline.yaml"))
    ids = [n.id for n in graph.nodes if n.id.startswith("features.")]
    # unit(8) with BN: 0-2; pool: 3; four units(12) without BN: 4-11; two units(6) with BN: 12-17
    assert ids == [f"features.{i}" for i in range(18)]
    kinds = {n.id: n.op.kind for n in graph.nodes}
    assert [kinds[f"features.{i}"] for i in (0, 1, 2, 3, 4, 5, 6, 12, 13, 14)] == [
        "conv", "batchnorm", "act", "maxpool", "conv", "act", "conv", "conv", "batchnorm", "act",
    ]  # fmt: skip
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert "class Unit(nn.Sequential):" in torch_src
    assert "*Unit(3, filters=8, batch_norm=True)," in torch_src
    assert "*(layer for _ in range(3) for layer in Unit(12, filters=12))," in torch_src  # the stage's loop
    assert "def unit(" not in keras_src  # Keras writes the layers out, named by position
    assert 'name="features_17"' in keras_src and 'name="features_17_' not in keras_src
    ruff = shutil.which("ruff") or str(ROOT / ".venv/bin/ruff")
    if shutil.which(ruff):
        for backend, src in (("torch", torch_src), ("keras", keras_src)):
            for args in (["check", "--no-cache", "-"], ["format", "--check", "--no-cache", "-"]):
                result = subprocess.run([ruff, *args, "--stdin-filename", f"{backend}.py"], input=src, capture_output=True, text=True)
                assert result.returncode == 0, result.stdout + src


def test_inline_backends_agree():
    torch = need("torch")
    need("keras")
    from archc.interop import torch_to_keras

    graph = lower(load_spec_text(SPEC, "inline.yaml"))
    t_model = api.load_module(graph, "torch").build_model().eval()
    k_model = api.load_module(graph, "keras").build_model()
    keys = set(t_model.state_dict())
    assert {"features.0.weight", "features.1.running_var", "features.4.weight", "features.13.weight"} <= keys
    assert not any(k.startswith(("features.2.", "features.5.")) for k in keys)  # the ReLUs
    assert sum(p.numel() for p in t_model.parameters()) == graph.counts.trainable
    with torch.no_grad():
        for m in t_model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    torch_to_keras(t_model, k_model, graph)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype("float32")
    with torch.no_grad():
        expected = t_model(torch.from_numpy(x)).numpy()
    got = np.asarray(k_model(channels_last(x), training=False))
    assert np.abs(expected - got).max() <= 1e-4 * max(1.0, float(np.abs(expected).max()))


@pytest.mark.parametrize("old, new, message", [
    ("- {block: unit, with: {filters: 8, batch_norm: batch_norm}, inline: true}",
     "- first: {block: unit, with: {filters: 8, batch_norm: batch_norm}, inline: true}",
     "first: `inline` writes a block's layers as entries of a numbered list: use it on an unnamed entry of a list"),
    ("  - pool: global_avgpool", "  - {block: unit, with: {filters: 4}, inline: true}\n  - pool: global_avgpool",
     "entry 1: `inline` writes a block's layers"),
    ("      - relu\n", "      - act: relu\n", "block 'unit' cannot be written `inline`: its layers become entries"),
    ("      - relu\n", "      - relu\n      - {act: {fn: relu}, from: input}\n", "block 'unit' cannot be written `inline`"),
    ("      - {conv: {filters: filters, kernel: 3, padding: 1}}\n      - {batchnorm: {}, if: batch_norm}\n      - relu\n",
     "      - {batchnorm: {}, if: batch_norm}\n",  # a unit without batch norm is empty
     "entry 2: this `inline` instance has no layers (every `if:` fails)"),
])  # fmt: skip
def test_inline_mistakes(old, new, message):
    assert old in SPEC
    with pytest.raises(SpecError, match=re.escape(message)):
        lower(load_spec_text(SPEC.replace(old, new, 1), "bad.yaml"))


def test_inline_in_a_list_of_a_block_kind():
    """Inside a block kind, `inline` works as at model level (tests/test_block_inline.py compares
    the two): the instance's layers are `seq.0` (conv), `seq.1` (relu) of the kind's list."""
    outer = textwrap.indent(textwrap.dedent("""\
        outer:
          params: {filters: int}
          layers:
            - seq:
                - {block: unit, with: {filters: filters}, inline: true}
    """), "  ")
    nested = SPEC.replace("layers:\n  - features:", outer + "layers:\n  - o: {block: outer, with: {filters: 4}}\n  - features:", 1)
    assert nested != SPEC
    graph = lower(load_spec_text(nested, "t.yaml"))
    assert [n.id for n in graph.nodes][:2] == ["o.seq.0", "o.seq.1"]
    assert "self.seq = nn.Sequential(nn.Conv2d(in_channels, filters" in emit(graph, "torch").replace("\n", "").replace("  ", "")
