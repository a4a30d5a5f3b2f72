"""The op kinds softmax (over the channels, or timm's RadixSoftmax over groups of channels)
and identity: on random valid arguments the IR's shape is PyTorch's and Keras', neither has
parameters, PyTorch computes timm's definition and Keras the same; both work inside block
kinds and in lists; generated code passes ruff and `archc verify`. And the in-place rule
they exposed: nothing overwrites the output of an op that returns its input (an identity, a
dropout in eval) where that input is read elsewhere."""

import random
import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, assert_ruff_clean, need

from archc import api
from archc.backends import emit
from archc.cli import main
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")


def graph_of(text, name="spec.yaml"):
    return lower(load_spec_text(textwrap.dedent(text), name))


def softmax_ref(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def radix_softmax_ref(x, radix, cardinality):
    """timm.layers.split_attn.RadixSoftmax, written from its definition in NumPy (NCHW or NC):
    view(B, cardinality, radix, -1).transpose(1, 2), softmax over dim 1, reshape(B, -1);
    radix 1: a sigmoid. Reshaped to the input's shape, as timm's SplitAttn views it back."""
    if radix == 1:
        return 1 / (1 + np.exp(-x))
    y = x.reshape(x.shape[0], cardinality, radix, -1).transpose(0, 2, 1, 3)
    return softmax_ref(y, 1).reshape(x.shape)


def draw(seed):
    """Random valid arguments and input: a plain or grouped softmax, or an identity, on a map
    (C, H, W) or flat features (C,)."""
    rng = random.Random(seed)
    kind = rng.choice(["plain", "radix", "radix", "radix1", "identity"])
    radix = {"plain": None, "identity": None, "radix1": 1, "radix": rng.randint(2, 4)}[kind]
    cardinality = rng.choice([None, 1, 2, 3]) if radix else None
    c = (radix or 1) * (cardinality or 1) * rng.randint(1, 3) if kind == "radix" else rng.randint(1, 9)
    flat = rng.random() < 0.4
    h, w = (1, 1) if flat else (rng.randint(1, 5), rng.randint(1, 5))
    if kind == "identity":
        layer = "identity"
    elif radix is None:
        layer = "softmax"
    else:
        args = {"radix": radix, **({"cardinality": cardinality} if cardinality else {})}
        layer = "{softmax: {" + ", ".join(f"{k}: {v}" for k, v in args.items()) + "}}"
    spec = f"""\
        archc: 1
        name: case{seed}
        input: [{c}, {h}, {w}]
        layers:
        {"  - flat: flatten" if flat else ""}
          - op: {layer}
        """
    return spec, kind, radix, cardinality or 1, flat


@pytest.mark.parametrize("seed", range(12))
def test_shape_rule_is_pytorchs_and_keras_and_outputs_agree(seed):
    spec, kind, radix, cardinality, flat = draw(seed)
    graph = graph_of(spec)
    (node,) = [n for n in graph.nodes if n.id == "op"]
    assert (node.trainable, node.non_trainable) == (0, 0)
    out = graph.output_shape.as_tuple()
    t_model = api.load_module(graph, "torch").build_model().eval()
    k_model = api.load_module(graph, "keras").build_model()
    assert sum(p.numel() for p in t_model.parameters()) == 0 and not k_model.weights
    x = torch.randn(3, *graph.input_shape.as_tuple(), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        t_out = t_model(x).numpy()
    k_out = np.asarray(k_model(x.permute(0, 2, 3, 1).numpy()))
    assert t_out.shape == (3, *out)
    assert k_out.shape == ((3, *out[1:], out[0]) if len(out) == 3 else (3, *out))
    if len(out) == 3:
        k_out = k_out.transpose(0, 3, 1, 2)
    features = x.numpy().reshape(3, -1) if flat else x.numpy()
    if kind == "identity":
        want = features
    elif kind == "plain":
        want = softmax_ref(features, 1)
    else:
        want = radix_softmax_ref(features, radix, cardinality)
    assert np.abs(t_out - want).max() <= 1e-6
    assert np.abs(k_out - t_out).max() <= 1e-6


def test_the_draws_cover_every_form():
    forms = {(draw(seed)[1], draw(seed)[4]) for seed in range(12)}
    assert {kind for kind, _ in forms} == {"plain", "radix", "radix1", "identity"}
    assert {flat for _, flat in forms} == {True, False}


def test_radix_groups_channels_not_positions():
    """A hand-computed case: 4 channels, radix 2, cardinality 2; the softmax pairs channel
    0 with 1 and 2 with 3 (per cardinal group), and the result is radix-major: the first
    splits of both groups, then the second splits."""
    graph = graph_of("""\
        archc: 1
        name: hand
        input: [4, 1, 2]
        layers:
          - op: {softmax: {radix: 2, cardinality: 2}}
        """)
    x = torch.tensor([[[[0.0, 1.0]], [[0.0, 0.0]], [[2.0, 0.0]], [[0.0, 3.0]]]])
    with torch.no_grad():
        y = api.load_module(graph, "torch").build_model()(x)[0, :, 0]
    s = lambda a, b: float(np.exp(a) / (np.exp(a) + np.exp(b)))  # noqa: E731
    want = [[s(0, 0), s(1, 0)], [s(2, 0), s(0, 3)], [s(0, 0), s(0, 1)], [s(0, 2), s(3, 0)]]
    assert np.allclose(y.numpy(), want, atol=1e-7)


# Split attention's gate as timm writes it, in a block kind whose radix and cardinality are
# parameters (radix 1 in one instance: timm's sigmoid), and identities: a placeholder in a
# numbered list and in a block; a plain softmax head.
BLOCKS = """\
archc: 1
name: split_attention
input: [8, 6, 6]
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
blocks:
  attn_gate:
    params: {radix: 2, groups: 1}
    layers:
      - conv: {conv: {filters: channels * radix, kernel: 3, padding: 1, groups: groups * radix}}
      - bn0: batchnorm
      - act0: relu
      - pool: {adaptive_avgpool: {size: 1}}
      - fc2: {conv: {filters: channels, kernel: 1, groups: groups}}
      - rsoftmax: {softmax: {radix: radix, cardinality: groups}}
      - drop: identity
layers:
  - a1: {block: attn_gate}
  - a2: {block: attn_gate, with: {radix: 1, groups: 4}}
  - a3: {block: attn_gate, with: {radix: 4, groups: 2}}
  - features:
      - {conv: {filters: 8, kernel: 1}}
      - identity
      - relu
      - {conv: {filters: 8, kernel: 1}}
  - pool: global_avgpool
  - probs: softmax
"""


def test_in_block_kinds_and_lists():
    graph = graph_of(BLOCKS)
    t_model = api.load_module(graph, "torch").build_model()
    k_model = api.load_module(graph, "keras").build_model()
    assert sum(p.numel() for p in t_model.parameters()) == graph.counts.trainable
    assert sum(int(np.prod(w.shape)) for w in k_model.trainable_weights) == graph.counts.trainable
    # the identity holds index 1: the conv after it is features.3, as in the reference
    assert [k for k in t_model.state_dict() if k.startswith("features.")] == ["features.0.weight", "features.3.weight"]
    assert isinstance(t_model.features[1], torch.nn.Identity)
    # Keras has no layer for a model-level identity (no name needs one); one that ends a block
    # kind stays, as `archc verify` reads the block's output by its name
    assert "features_1" not in {layer.name for layer in k_model.layers} and k_model.get_layer("features_3")
    assert isinstance(k_model.get_layer("a1_drop"), keras.layers.Identity)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert "self.rsoftmax = RadixSoftmax(radix, groups)" in torch_src
    assert 'RadixSoftmax(radix, groups, name=f"{name}_rsoftmax")' in keras_src
    assert "self.probs = nn.Softmax(dim=1)" in torch_src and 'layers.Activation("softmax", name="probs")' in keras_src
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
    assert {"a1", "a2", "a3", "features"} <= {r.item for r in report.rows}


def test_labels():
    graph = graph_of(BLOCKS)
    labels = {n.id: n.op.label() for n in graph.nodes}
    assert labels["a1.rsoftmax"] == "radix softmax, radix 2, cardinality 1"
    assert labels["a2.rsoftmax"] == "sigmoid (radix 1)"
    assert labels["probs"] == "softmax" and labels["features.1"] == "identity"


def test_helpers_only_where_used():
    plain = graph_of("archc: 1\nname: p\ninput: [4, 2, 2]\nlayers:\n  - s: softmax\n  - ident: identity\n")
    for backend in ("torch", "keras"):
        assert "RadixSoftmax" not in emit(plain, backend)
        assert "class RadixSoftmax(" in emit(graph_of(BLOCKS), backend)


def test_generated_code_passes_ruff_and_archc_verify(tmp_path):
    ruff = shutil.which("ruff") or shutil.which(str(Path(sys.executable).parent / "ruff")) or str(ROOT / ".venv/bin/ruff")
    if not shutil.which(ruff):
        pytest.skip("ruff is not installed")
    graph = graph_of(BLOCKS)
    for backend in ("torch", "keras"):
        path = tmp_path / f"split_attention_{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)
    spec = tmp_path / "split_attention.yaml"
    spec.write_text(BLOCKS)
    result = CliRunner().invoke(main, ["verify", str(spec)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


@pytest.mark.parametrize(
    "layer, message",
    [
        ("{softmax: {cardinality: 2}}", "cardinality applies to the grouped softmax only: give radix too"),
        ("{softmax: {radix: 4}}", r"radix x cardinality \(4\) must divide the input channels 6"),
        ("{softmax: {radix: 0}}", "softmax radix must be >= 1, got 0"),
        ("{softmax: {radix: 2, cardinality: 0}}", "softmax cardinality must be >= 1, got 0"),
        ("{act: softmax}", "softmax reads every channel, so it is a layer kind of its own"),
    ],
)
def test_mistakes(layer, message):
    with pytest.raises(SpecError, match=message):
        graph_of(f"archc: 1\nname: bad\ninput: [6, 4, 4]\nlayers:\n  - s: {layer}\n")


def test_radix_one_needs_no_grouping():
    """timm's radix 1 is a sigmoid of every channel: the cardinality need not divide them."""
    graph = graph_of("archc: 1\nname: r1\ninput: [6, 4, 4]\nlayers:\n  - s: {softmax: {radix: 1, cardinality: 4}}\n")
    assert graph.output_shape.as_tuple() == (6, 4, 4)


def test_softmax_needs_channels_first_in_pytorch():
    text = """\
        archc: 1
        name: last
        input: [6, 4, 4]
        layers:
          - to_last: {permute: {to: channels_last}}
          - s: softmax
          - to_first: {permute: {to: channels_first}}
        """
    with pytest.raises(SpecError, match="softmax needs a channels-first map"):
        graph_of(text)


# --- in place after an op that returns its input ---------------------------------------------

# PyTorch's nn.Identity returns its input, and so does nn.Dropout in eval: an in-place ReLU
# after one overwrites the tensor the skip connection (or a later merge) still reads.
ALIASED = """\
archc: 1
name: aliased
input: [8, 5, 5]
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
blocks:
  pre_identity:
    connectivity: skip
    layers:
      - first: identity
      - relu: relu
      - conv: {conv: {filters: channels, kernel: 3, padding: 1}}
      - bn: batchnorm
  pre_dropout:
    connectivity: skip
    layers:
      - drop: {dropout: {rate: 0.1}}
      - relu: relu
      - conv: {conv: {filters: channels, kernel: 3, padding: 1}}
      - bn: batchnorm
  only_identity:
    connectivity: skip
    layers:
      - nothing: identity
layers:
  - r1: {stage: pre_identity, repeat: 2}
  - r2: {stage: pre_dropout, repeat: 2}
  - conv: {conv: {filters: 8, kernel: 1}}
  - seq: {group: [identity, relu], from: conv}
  - named: {group: [keep: identity, relu: relu], from: conv}
  - twice: {block: only_identity, from: conv}
  - sum: {add: [conv, seq, named, twice]}
"""


def test_no_in_place_write_into_an_aliased_input():
    graph = graph_of(ALIASED)
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
    torch_src = emit(graph, "torch")
    for block in ("class PreIdentity", "class PreDropout"):
        assert "self.relu = nn.ReLU()\n" in torch_src[torch_src.index(block):]
    assert "nn.Sequential(nn.Identity(), nn.ReLU())" in torch_src
    assert "out = out + identity" in torch_src  # only_identity: out is x itself
    # and the value: every list reads conv's output unchanged (twice: 2 * conv)
    t_model = api.load_module(graph, "torch").build_model().eval()
    x = torch.randn(1, 8, 5, 5)
    with torch.no_grad():
        conv = t_model.conv(t_model.r2(t_model.r1(x)))
        assert torch.allclose(t_model(x), 3 * conv + 2 * torch.relu(conv), atol=1e-5)
