"""`archc deploy` (archc/deploy/): the inference form of a spec. Over the whole zoo (cheap):
the deploy spec loads, and its graph, walked on its own, has no batch norm left that a conv
before it could hold, no dropout and no stochastic depth. On a representative per family and
on random dataflow specs: the deploy model with the moved weights gives the training model's
outputs in eval mode (float64), and from the command line the PyTorch and Keras weights are
written and agree; in make test-slow, on every zoo spec, the same in PyTorch, and the deploy
Keras module with the moved weights gives the training Keras model's outputs. Declared deploy forms (a user's
MobileOne-like block) and batch norms folded into the layer after them, on specs of their own. The reference forms (timm's reparameterize_model, torch.fx's conv-bn
fusion) are in tests/test_timm.py and tests/test_torchvision.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, ZOO, need
from hypothesis import given, settings
from test_differential import SETTINGS, _lowered, dataflow_specs

from archc.api import load_spec, to_ir
from archc.deploy import plan
from archc.deploy.doc import document, to_yaml
from archc.errors import SpecError
from archc.spec.loader import load_spec_text

torch = need("torch")


def deploy_graph(spec, tmp_path: Path):
    train = to_ir(spec)
    the_plan = plan(spec, train)
    path = tmp_path / f"{train.name}_deploy.yaml"
    path.write_text(the_plan.text(str(spec.path)))
    return train, the_plan, to_ir(load_spec(path)), path


def foldable(graph) -> list[str]:
    """Batch norms that read a conv or dense layer of the same module (block instance or list)
    that nothing else reads: what fold leaves none of. (A norm that reads another instance's
    conv, as a pre-activation block's first norm reads the stem's, differs between the
    instances of its kind, so the kind keeps it.)"""
    readers: dict[str, int] = {}
    for n in graph.nodes:
        for i in n.inputs:
            readers[i] = readers.get(i, 0) + 1
    nodes = {n.id: n for n in graph.nodes}
    return [
        n.id for n in graph.nodes
        if n.op.kind == "batchnorm" and n.inputs[0] in nodes and type(op := nodes[n.inputs[0]].op).folds_norm(op.values())
        and readers[n.inputs[0]] == 1
        and n.id.rpartition(".")[0] == n.inputs[0].rpartition(".")[0]
    ]  # fmt: skip


@pytest.mark.filterwarnings("error::archc.errors.SpecWarning")  # no parameter left unused
@pytest.mark.parametrize("spec_path", ZOO, ids=lambda p: Path(p).stem)
def test_every_zoo_spec_has_a_deploy_form(spec_path, tmp_path):
    spec = load_spec(ROOT / spec_path)
    train, the_plan, graph, path = deploy_graph(spec, tmp_path)
    assert not [n.id for n in graph.nodes if n.op.INFERENCE_IDENTITY]
    left = foldable(graph)
    assert not left, f"batch norms left after a conv: {left[:5]}"
    assert graph.counts.trainable <= train.counts.trainable
    assert sum(n.macs for n in graph.nodes) <= sum(n.macs for n in train.nodes)
    assert the_plan.text(str(spec.path)) == plan(spec, train).text(str(spec.path))  # same spec in, same text out
    training = to_yaml(document(spec, [b.name for b in train.blocks]), "")  # the same spec, its kinds written out
    assert path.read_text().count("\n") <= training.count("\n") + 6, "the passes made the spec longer"  # a header, the doc's note


def check(spec, tmp_path: Path, **kwargs):
    from archc.deploy.run import deploy

    return deploy(spec, tmp_path / "out", **kwargs)


# one per family of what deploy rewrites: shortcut folds, numbered lists (identities keep the
# numbers), dense connections, SE gates and dropout, stochastic depth, merges, inception
# branches (conditional norms in inline blocks: vgg16_bn, in the zoo-wide test of make test-slow)
REPRESENTATIVES = {
    "specs/resnet18.yaml": 64, "specs/mobilenet_v3_large.yaml": 64, "specs/densenet121.yaml": 64,
    "specs/efficientnet_b0.yaml": 64, "specs/convnext_tiny.yaml": 64, "specs/repvgg_a0.yaml": 64, "specs/googlenet.yaml": 64,
}  # fmt: skip


@pytest.mark.parametrize("spec_path", REPRESENTATIVES, ids=lambda p: Path(p).stem)
def test_deploy_form_gives_the_training_outputs(spec_path, tmp_path):
    size = REPRESENTATIVES[spec_path]
    spec = load_spec(ROOT / spec_path, (f"input=[3, {size}, {size}]",))
    result = check(spec, tmp_path)
    assert result.max_rel <= 1e-9  # float64, unrounded weights: the rewrites themselves
    assert result.plan.steps
    assert [p.name for p in result.files] == [f"{result.train.name}_deploy{s}" for s in (".yaml", "_torch.py", "_keras.py")]


@pytest.mark.slow
@pytest.mark.parametrize("spec_path", ZOO, ids=lambda p: Path(p).stem)
def test_every_zoo_spec_deploys_exactly_in_both_frameworks(spec_path, tmp_path):
    """PyTorch: the rewrites are exact (float64, moved weights unrounded). Keras: the deploy Keras
    module, generated from the deploy spec, with the moved weights copied as `archc convert`
    copies them, gives the training Keras model's outputs (that model holding the training
    PyTorch model's weights, random with non-trivial batch-norm statistics) in inference mode,
    float32, to 1e-4 of their scale, as the float32 PyTorch models are checked. Both at the
    spec's input with height and width at most 128 where Keras builds the spec so
    (archc.verify.smaller: the rewrites do not depend on the size; EfficientNet-B7 at 600x600
    in float64 took minutes), one set of PyTorch models shared by both checks."""
    need("keras")
    from archc.deploy.keras_check import compare_keras
    from archc.verify import smaller

    spec = smaller(load_spec(ROOT / spec_path))
    result = check(spec, tmp_path, write=False)
    assert result.max_rel <= 1e-9, result.plan.steps
    # float32: the folded weights round differently; the difference is of the order of the
    # training model's own float32 rounding (keras/efficientnet_b0 at 128x128: 8.2e-05 against
    # its own 4.9e-05 at the logits), never far above it
    assert result.max_rel32 <= max(1e-4, 4 * result.own_rel32), (result.max_rel32, result.own_rel32)
    keras = compare_keras(spec, result.train, result.deploy, result.plan.steps, *result.models)
    assert keras.deploy_params <= keras.train_params
    assert keras.max_rel <= 1e-4, keras.steps


@settings(max_examples=12, **SETTINGS)
@given(dataflow_specs())
def test_random_dataflow_specs_deploy_exactly(spec_dict):
    """Random block kinds with branches, merges, conditional layers, taps and skip stages: the
    deploy form (whatever the passes find to fold or merge) gives the training outputs."""
    import tempfile

    text = _lowered(spec_dict)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rand.yaml").write_text(text)
        result = check(load_spec(Path(tmp) / "rand.yaml"), Path(tmp))
    assert result.max_rel <= 1e-9


def test_a_spec_with_nothing_to_fold_says_so(tmp_path):
    (tmp_path / "plain.yaml").write_text(
        "archc: 1\nname: plain\ninput: [3, 16, 16]\ndefaults: {conv: {bias: true}}\n"
        "layers:\n  - conv: {conv: {filters: 8, kernel: 3}}\n  - act: relu\n  - pool: global_avgpool\n  - fc: {dense: {units: 10}}\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "archc", "deploy", str(tmp_path / "plain.yaml"), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "plain: nothing to fold, remove or merge; the deploy form is the training form" in out.stdout


def test_a_mismatch_names_the_first_module_that_differs(tmp_path, monkeypatch):
    """A wrong weight transform (here: a batch norm's shift dropped) is caught before anything
    is written, naming the first block instance whose outputs differ."""
    from archc.deploy import weights

    fold = weights._fold
    monkeypatch.setattr(weights, "_fold", lambda w, b, norm, state: (fold(w, b, norm, state)[0], fold(w, b, norm, state)[1] * 0))
    spec = load_spec(ROOT / "specs" / "resnet18.yaml", ("input=[3, 32, 32]",))
    with pytest.raises(SpecError, match=r"the deploy form differs from the training form .*; first at conv1"):
        check(spec, tmp_path)
    assert not (tmp_path / "out" / "resnet18_deploy.yaml").exists()


def test_a_saturated_softmax_does_not_hide_a_mismatch(tmp_path, monkeypatch):
    """A softmax over large logits is one-hot: a wrong fold leaves the model's outputs equal.
    The check compares every softmax's input as well, so it still catches it."""
    from archc.deploy import run, weights

    fold = weights._fold
    monkeypatch.setattr(weights, "_fold", lambda w, b, norm, state: (fold(w, b, norm, state)[0], fold(w, b, norm, state)[1] * 1.001))
    outputs = []
    real_run = run._run
    monkeypatch.setattr(run, "_run", lambda *a, **k: outputs.append(real_run(*a, **k)[0]) or real_run(*a, **k))
    spec = load_spec_text(
        "archc: 1\nname: sat\ninput: [3, 16, 16]\ndefaults: {conv: {bias: false}, dense: {bias: true}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}\n"
        "layers:\n  - conv: {conv: {filters: 8, kernel: 3}}\n  - bn: batchnorm\n  - act: relu\n  - pool: global_avgpool\n"
        "  - fc: {dense: {units: 10}}\n  - sharpen: {rescaling: {scale: 10000}}\n  - softmax: softmax\n"
    )
    with pytest.raises(SpecError, match=r"the deploy form differs from the training form"):
        check(spec, tmp_path)
    want, got = outputs[:2]  # the float64 runs: the outputs alone agree
    assert abs(want - got).max() <= 1e-12


def test_weights_are_written_for_both_frameworks(tmp_path):
    """`--weights`: a PyTorch checkpoint of the training model becomes the deploy model's, in
    PyTorch and (through archc convert) Keras; both give the training model's outputs."""
    need("keras")
    import numpy as np

    from archc.api import load_module
    from archc.verify import randomize

    spec_path = ROOT / "specs" / "cifar" / "resnet.yaml"
    train = to_ir(load_spec(spec_path))
    model = load_module(train, "torch").build_model()
    randomize(model, train, seed=1)
    torch.save(model.state_dict(), tmp_path / "train.pth")
    out = subprocess.run(
        [sys.executable, "-m", "archc", "deploy", str(spec_path), "--weights", str(tmp_path / "train.pth"), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    name = train.name + "_deploy"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        f"{name}{s}" for s in (".yaml", "_torch.py", "_keras.py", ".pth", ".weights.h5")
    )
    graph = to_ir(load_spec(tmp_path / "out" / f"{name}.yaml"))
    deployed = load_module(graph, "torch").build_model().eval()
    deployed.load_state_dict(torch.load(tmp_path / "out" / f"{name}.pth", weights_only=True), strict=True)
    x = torch.randn(2, *train.input_shape.as_tuple())
    with torch.no_grad():
        want = model.eval()(x)
        torch.testing.assert_close(deployed(x), want, rtol=1e-4, atol=1e-4)
    keras_model = load_module(graph, "keras").build_model()
    keras_model.load_weights(tmp_path / "out" / f"{name}.weights.h5")
    got = keras_model(np.transpose(x.numpy(), (0, 2, 3, 1)), training=False)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-3, atol=1e-3)


def test_a_checkpoint_of_another_model_is_refused_in_one_line(tmp_path):
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    out = subprocess.run(
        [sys.executable, "-m", "archc", "deploy", "specs/cifar/resnet.yaml", "--weights", str(tmp_path / "other.pth"), "-o", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "other.pth" in out.stderr, out.stderr
    assert not (tmp_path / "o" / "cifar_resnet_deploy.yaml").exists()


def test_the_deploy_spec_of_a_spec_given_as_text_is_a_spec(tmp_path):
    """A LoadedSpec from text (the API) deploys as one from a file."""
    text = (ROOT / "specs" / "repvgg_a0.yaml").read_text()
    spec = load_spec_text(text, str(tmp_path / "repvgg_a0.yaml"))
    _, the_plan, graph, _ = deploy_graph(spec, tmp_path)
    assert graph.counts.trainable == 8_309_384
    assert "reparam_conv" in the_plan.text("x")


# A user's own re-parameterisable block, MobileOne's (Vasu et al. 2023; timm's MobileOneBlock):
# k parallel 3x3 conv + BN branches, a 1x1 conv + BN "scale" branch and a BN identity, summed;
# its deploy form declared in the spec, so no Python knows it.
MOBILEONE = """\
archc: 1
name: mobileone_like
input: [3, 32, 32]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  conv_bn:
    params: {filters: int, kernel: int, stride: 1, groups: 1}
    layers:
      - conv: {conv: {filters: filters, kernel: kernel, stride: stride, padding: kernel // 2, groups: groups}}
      - bn: batchnorm
  mobileone:
    params: {filters: int, stride: 1, groups: 1}
    layers:
      - identity: {batchnorm: {}, if: stride == 1 and in_channels == filters}
      - scale: {block: conv_bn, from: input, with: {filters: filters, kernel: 1, stride: stride, groups: groups}}
      - kxk_0: {block: conv_bn, from: input, with: {filters: filters, kernel: 3, stride: stride, groups: groups}}
      - kxk_1: {block: conv_bn, from: input, with: {filters: filters, kernel: 3, stride: stride, groups: groups}}
      - kxk_2: {block: conv_bn, from: input, with: {filters: filters, kernel: 3, stride: stride, groups: groups}}
      - sum: {add: [kxk_0, kxk_1, kxk_2, scale]}
      - total: {add: [sum, identity], if: stride == 1 and in_channels == filters}
      - act: relu
    deploy: {merge: [kxk_0, kxk_1, kxk_2, scale, identity], into: reparam_conv}
layers:
  - stem: {block: mobileone, with: {filters: 16, stride: 2}}
  - b1: {block: mobileone, with: {filters: 16}}
  - dw: {block: mobileone, with: {filters: 16, groups: 16}}
  - b3: {block: mobileone, with: {filters: 32, stride: 2}}
  - pool: global_avgpool
  - fc: {dense: {units: 10}}
"""


def test_a_declared_deploy_form_merges_a_users_own_block(tmp_path):
    """The declared merge gives one 3x3 conv per instance, under the declared name (which the
    training form does not have: its adds are `sum` and `total`), with the training outputs;
    its parameters are counted by hand: a 3x3 conv with a bias per block, then the classifier."""
    (tmp_path / "m.yaml").write_text(MOBILEONE)
    result = check(load_spec(tmp_path / "m.yaml"), tmp_path)
    assert result.max_rel <= 1e-9
    assert "block mobileone: branches identity, scale, kxk_0, kxk_1, kxk_2 and the adds joining them merged into one conv reparam_conv (declared)" in result.plan.steps
    convs = [n.id for n in result.deploy.nodes if n.op.kind == "conv"]
    assert convs == ["stem.reparam_conv", "b1.reparam_conv", "dw.reparam_conv", "b3.reparam_conv"]
    assert not [n for n in result.deploy.nodes if n.op.kind in ("batchnorm", "add")]
    by_hand = (16 * 3 * 9 + 16) + (16 * 16 * 9 + 16) + (16 * 1 * 9 + 16) + (32 * 16 * 9 + 32) + (32 * 10 + 10)
    assert result.deploy.counts.trainable == by_hand == 7_898
    assert "deploy:" not in (tmp_path / "out" / "mobileone_like_deploy.yaml").read_text()


@pytest.mark.parametrize(
    "edits, message, line",
    [
        ([("merge: [kxk_0, kxk_1,", "merge: [kxk_0, kxk_9,")], r"'kxk_9' is not a layer of block mobileone \(nor its input\)", 22),
        ([("kxk_1, kxk_2, scale, identity]", "kxk_1, scale, identity]")],
         r"no add joins exactly the branches kxk_0, kxk_1, scale, identity \(through nested adds\); sum joins kxk_0, kxk_1, kxk_2, scale; total joins", 22),
        ([("      - kxk_2: {block", "      - kxk_2c: {block"), ("      - sum:", "      - kxk_2: relu\n      - sum:")],
         r"the branches joined by total cannot be merged into one conv: kxk_2 is a layer of kind act, not linear", 23),
        ([("      - act: relu", "      - act: relu\n      - out: {add: [act, kxk_0]}")],
         r"the branches joined by total cannot be merged into one conv: kxk_0 is read elsewhere too", 23),
        ([("into: reparam_conv", "into: act")], r"`into: act` is already a name in block mobileone", 22),
    ],
    ids=["unknown", "not-joined", "nonlinear", "read-elsewhere", "into-taken"],
)  # fmt: skip
def test_an_invalid_deploy_declaration_is_one_located_error(tmp_path, edits, message, line):
    """`archc check` (lowering) checks a declared deploy form: one message at the line of the
    declaration, naming what is wrong, exit 2."""
    text = MOBILEONE
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    (tmp_path / "m.yaml").write_text(text)
    out = subprocess.run(
        [sys.executable, "-m", "archc", "check", str(tmp_path / "m.yaml")], capture_output=True, text=True, cwd=ROOT
    )  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert re.search(rf"m\.yaml:{line}:\d+: block mobileone: deploy: {message}", out.stderr), out.stderr


# Batch norms before a conv or dense layer: folded where exact (an unpadded conv; a dense layer
# after a global average pool), left where not (a padded conv: its zeros are not shifted).
BN_BEFORE = """\
archc: 1
name: bn_before
input: [3, 20, 20]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  pre:
    params: {filters: int, groups: 1}
    layers:
      - act: relu
      - bn: batchnorm
      - conv: {conv: {filters: filters, kernel: 3, groups: groups}}
      - act2: relu
      - bn2: batchnorm
      - padded: {conv: {filters: filters, kernel: 3, padding: 1}}
layers:
  - bn0: batchnorm
  - stem: {conv: {filters: 16, kernel: 1}}
  - b1: {block: pre, with: {filters: 16, groups: 4}}
  - b2: {block: pre, with: {filters: 24}}
  - act: relu
  - bn_head: batchnorm
  - pool: global_avgpool
  - flat: flatten
  - fc: {dense: {units: 10}}
"""


def test_a_batch_norm_folds_into_the_layer_after_it_where_exact(tmp_path):
    """The model's input norm into the 1x1 stem, a block's norm into its unpadded (grouped)
    3x3 conv, the head's norm through the pool and flatten into the classifier; the norm
    before the padded conv stays. Parameters by hand: 12,016 less the four norms' 118, plus
    the biases the stem and the two convs get (16 + 16 + 24)."""
    (tmp_path / "m.yaml").write_text(BN_BEFORE)
    result = check(load_spec(tmp_path / "m.yaml"), tmp_path)
    assert result.max_rel <= 1e-9
    assert [s for s in result.plan.steps if "after it" in s] == [
        "block pre.bn: batch norm folded into conv after it",
        "model.bn_head: batch norm folded into fc after it",
        "model.bn0: batch norm folded into stem after it",
    ]
    assert [n.id for n in result.deploy.nodes if n.op.kind == "batchnorm"] == ["b1.bn2", "b2.bn2"]
    assert result.train.counts.trainable == 12_016
    assert result.deploy.counts.trainable == 12_016 - 2 * (3 + 16 + 16 + 24) + 16 + 16 + 24 == 11_954


def test_folding_a_batch_norm_into_a_padded_conv_would_be_caught(tmp_path, monkeypatch):
    """Why padding refuses the fold: made anyway, the deploy check finds the difference
    (the border, where the conv reads zeros the norm never shifted) and writes nothing."""
    import importlib

    monkeypatch.setattr(importlib.import_module("archc.deploy.fold"), "_unpadded", lambda args: True)
    (tmp_path / "m.yaml").write_text(BN_BEFORE)
    with pytest.raises(SpecError, match=r"the deploy form differs from the training form .*; first at b1"):
        check(load_spec(tmp_path / "m.yaml"), tmp_path)
    assert not (tmp_path / "out" / "bn_before_deploy.yaml").exists()


INLINE_BRANCHES = """\
archc: 1
name: inline
input: [8, 12, 12]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  rep:
    params: {filters: int}
    layers:
      - k3: {conv: {filters: filters, kernel: 3, padding: 1}}
      - k3_bn: batchnorm
      - k1: {conv: {filters: filters, kernel: 1}, from: input}
      - out: {add: [k3_bn, k1, input]}
      - act: relu
    deploy: {merge: [k3_bn, k1, input], into: fused}
layers:
  - a: {block: rep, with: {filters: 8}}
  - b: {block: rep, with: {filters: 8}}
"""


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "found"])
def test_branches_written_inline_merge_with_the_input(tmp_path, declared):
    """A branch written in the block kind itself (a conv, then its batch norm, which the add
    reads by name) and the block's input itself as the identity branch: one 3x3 conv per
    block, 2 x (8 x 8 x 9 + 8) parameters, named as declared (else after the add)."""
    text = INLINE_BRANCHES if declared else INLINE_BRANCHES.replace("    deploy: {merge: [k3_bn, k1, input], into: fused}\n", "")
    (tmp_path / "m.yaml").write_text(text)
    result = check(load_spec(tmp_path / "m.yaml"), tmp_path)
    assert result.max_rel <= 1e-9
    name = "fused" if declared else "out"
    assert [n.id for n in result.deploy.nodes if n.op.weight_names()] == [f"a.{name}", f"b.{name}"]
    assert result.deploy.counts.trainable == 2 * (8 * 8 * 9 + 8) == 1_168


STANDARDIZED = """\
archc: 1
name: standardized
input: [3, 12, 12]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  stem:
    params: {w: int}
    layers:
      - conv: {conv: {filters: w, kernel: 3, padding: 1, standardize: true, eps: 1.0e-8}}
  rep:
    params: {w: int}
    layers:
      - a: [{conv: {filters: w, kernel: 3, padding: 1, standardize: true, eps: 1.0e-6, gain: true, gamma: 1.7}}, batchnorm]
      - b: [{conv: {filters: w, kernel: 1, standardize: true, eps: 1.0e-6}}, batchnorm]
      - sum: {add: [a, b]}
layers:
  - s: {block: stem, with: {w: 8}}
  - bn_s: batchnorm
  - conv: {conv: {filters: 8, kernel: 3, padding: 1, standardize: true, eps: 1.0e-8}}
  - bn: batchnorm
  - act: relu
  - bn_before: batchnorm
  - unpadded: {conv: {filters: 8, kernel: 1, standardize: true, eps: 1.0e-8}}
  - r: {block: rep, with: {w: 8}}
  - pool: global_avgpool
  - fc: {dense: {units: 4}}
"""


def test_a_batch_norm_stays_beside_a_standardized_conv(tmp_path):
    """A standardized conv computes with its weight normalized per filter, which undoes a
    folded norm's scale: the norm after it (in a list, and after every call of a block kind
    ending in one), the norm before an unpadded one and branches of them meeting at an add
    all stay, and the deploy form gives the training outputs."""
    (tmp_path / "m.yaml").write_text(STANDARDIZED)
    result = check(load_spec(tmp_path / "m.yaml"), tmp_path)
    assert result.max_rel <= 1e-9
    norms = [n.id for n in result.train.nodes if n.op.kind == "batchnorm"]
    assert len(norms) == 5 and [n.id for n in result.deploy.nodes if n.op.kind == "batchnorm"] == norms
    assert result.deploy.counts == result.train.counts


def test_folding_a_batch_norm_into_a_standardized_conv_would_be_caught(tmp_path, monkeypatch):
    """Why the fold is refused: made anyway (as for a plain conv), the deploy check finds the
    difference and writes nothing."""
    from archc import ops

    monkeypatch.setattr(ops.Conv, "folds_norm", classmethod(lambda cls, args: True))
    (tmp_path / "m.yaml").write_text(STANDARDIZED)
    with pytest.raises(SpecError, match=r"the deploy form differs from the training form"):
        check(load_spec(tmp_path / "m.yaml"), tmp_path)
    assert not (tmp_path / "out" / "standardized_deploy.yaml").exists()
