"""Conditions (`if:`) that a ShuffleNet V2 unit needs, in a small model: a conditional list
inside a block kind (built only where its condition holds, in both backends), an absent
layer with `from:` (it passes on the tensor it names, at model level and in blocks), and
the input channels of a conditional item simplified by its condition."""

import ast
import textwrap
from pathlib import Path

import pytest
from conftest import assert_ruff_clean, need
from test_differential import ALTERNATIVES as KIND

from archc import api
from archc.backends import emit
from archc.lower import lower
from archc.lower.symbolic import _assume
from archc.spec import expr
from archc.spec.loader import load_spec_text

ROOT = Path(__file__).resolve().parents[1]

# The ShuffleNet V2 unit: at stride 1 the first half (x1) passes through branch1, which is
# absent, and branch2 reads the second half (x2); at stride 2 both slices are absent, so
# branch1 reads the block input (x1 passes it on) and so does branch2 (x2 passes on `input`).
SPLIT = """\
archc: 1
name: split_units
input: [3, 16, 16]
params: {num_classes: 5}
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
blocks:
  inverted_residual:
    params: {out_channels: int, stride: 1}
    layers:
      - x1: {slice: {stop: in_channels // 2}, if: stride == 1}
      - branch1:
          group:
            - {conv: {filters: in_channels, kernel: 3, stride: stride, padding: 1, groups: in_channels}}
            - batchnorm
            - {conv: {filters: out_channels // 2, kernel: 1}}
            - batchnorm
            - relu
          if: stride != 1
      - x2: {slice: {start: in_channels // 2}, from: input, if: stride == 1}
      - branch2:
          - {conv: {filters: out_channels // 2, kernel: 1}}
          - batchnorm
          - relu
          - {conv: {filters: out_channels // 2, kernel: 3, stride: stride, padding: 1, groups: out_channels // 2}}
          - batchnorm
      - cat: {concat: [branch1, branch2]}
      - shuffle: {shuffle: {groups: 2}}
layers:
  - conv1: {conv: {filters: 6, kernel: 3, padding: 1}}
  - stage2: {stage: inverted_residual, repeat: 3, with: {out_channels: 12}, first: {stride: 2}}
  - stage3: {stage: inverted_residual, repeat: 2, with: {out_channels: 20}, first: {stride: 2}}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""


def graph_of(text, name="spec.yaml"):
    return lower(load_spec_text(textwrap.dedent(text), name))


def unit_counts(cin, cout, stride):
    """Trainable and BN-statistic counts of one unit, written out."""
    half = cout // 2
    if stride == 1:
        branch2 = half * half + 2 * half + half * 9 + 2 * half  # 1x1, BN, 3x3 depthwise, BN
        return branch2, 4 * half
    branch1 = cin * 9 + 2 * cin + cin * half + 2 * half
    branch2 = cin * half + 2 * half + half * 9 + 2 * half
    return branch1 + branch2, 2 * cin + 6 * half


def expected_counts():
    trainable, stats = 3 * 6 * 9, 0
    for cin, cout, repeat in ((6, 12, 3), (12, 20, 2)):
        for k in range(repeat):
            t, s = unit_counts(cin if k == 0 else cout, cout, 2 if k == 0 else 1)
            trainable, stats = trainable + t, stats + s
    return trainable + 20 * 5 + 5, stats


def test_counts_agree_in_ir_and_both_backends():
    torch = need("torch")
    need("keras")
    import numpy as np

    graph = graph_of(SPLIT)
    assert (graph.counts.trainable, graph.counts.non_trainable) == expected_counts()
    model = api.load_module(graph, "torch").build_model().eval()
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (trainable, buffers) == expected_counts()
    assert model.stage2[0].branch1 is not None and model.stage2[1].branch1 is None
    assert not any(k.startswith("stage2.1.branch1") for k in model.state_dict())
    with torch.no_grad():
        assert tuple(model(torch.zeros(2, 3, 16, 16)).shape) == (2, 5)
    k_model = api.load_module(graph, "keras").build_model()
    k_trainable = sum(int(np.prod(w.shape)) for w in k_model.trainable_weights)
    k_stats = sum(int(np.prod(w.shape)) for w in k_model.non_trainable_weights)
    assert (k_trainable, k_stats) == expected_counts()
    names = {layer.name for layer in k_model.layers}
    assert "stage2_0_branch1_0" in names and "stage2_1_branch1_0" not in names


def test_backends_agree():
    need("torch")
    need("keras")
    from archc import verify

    report = verify.verify(graph_of(SPLIT))
    assert report.ok, verify.to_table(report)


def test_block_code():
    graph = graph_of(SPLIT)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    # the list exists only where its condition holds, and reads in_channels there (not
    # `in_channels // 2 if stride == 1 else in_channels`, the channels of x1 in general)
    assert "        self.branch1 = None\n        if stride != 1:\n            self.branch1 = nn.Sequential(\n" in torch_src
    assert "                nn.Conv2d(\n                    in_channels,\n                    in_channels,\n" in torch_src
    assert "if self.branch1 is not None:\n            branch1 = self.branch1(branch1)" in torch_src
    assert "    branch1 = x\n    if stride != 1:\n        x = layers.ZeroPadding2D(1, " in keras_src
    # a hoisted width too long for one line is parenthesised as ruff format writes it
    assert "        branch2_channels = (\n            in_channels - in_channels // 2 if stride == 1 else in_channels\n        )\n" in torch_src
    assert "branch2_channels" not in keras_src  # Keras convs infer their input channels: no dead name


def test_generated_code_passes_ruff(tmp_path):
    graph = graph_of(SPLIT)
    for backend in ("torch", "keras"):
        path = tmp_path / f"split_{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


MODEL = """\
archc: 1
name: absent_from
input: [3, 8, 8]
defaults:
  conv: {bias: false}
layers:
  - wide: {conv: {filters: 8, kernel: 3, padding: 1}}
  - narrow: {conv: {filters: 4, kernel: 1}}
  - side: {conv: {filters: 2, kernel: 1}, from: wide, if: WHEN}
  - cat: {concat: [narrow, side]}
"""


@pytest.mark.parametrize(
    "when, channels",
    [
        ("true", 4 + 2),
        ("false", 4 + 8),  # side is absent: cat reads `wide`, what side reads, not `narrow`
        ("channels == 8", 4 + 2),  # `channels` is that of the tensor the layer reads (wide)
        ("channels == 4", 4 + 8),
    ],
)
def test_absent_layer_passes_on_what_it_reads(when, channels):
    graph = graph_of(MODEL.replace("WHEN", when))
    assert graph.output_shape.as_tuple() == (channels, 8, 8)
    assert [n.id for n in graph.nodes if n.op.kind == "conv"] == (["wide", "narrow", "side"] if channels == 6 else ["wide", "narrow"])


def test_absent_layer_in_a_block_passes_on_what_it_reads():
    """Concrete lowering (shapes, counts) and the block's symbolic form agree."""
    graph = graph_of(SPLIT)
    unit = next(n for n in graph.nodes if n.id == "stage2.0.branch2.0")  # x2 is absent: the whole input
    assert unit.op.values()["filters"] == 6 and graph.counts.trainable == expected_counts()[0]
    assert next(n for n in graph.nodes if n.id == "stage2.1.branch2.0").shape.c == 6


def tree(src):
    return expr.parse(src)


@pytest.mark.parametrize(
    "condition, value, expected",
    [
        ("stride == 1", "a if stride == 1 else b", "a"),
        ("stride != 1", "a if stride == 1 else b", "b"),
        ("stride > 1", "a if stride <= 1 else b", "b"),
        ("not extra", "a if extra else b", "b"),
        ("extra", "a if not extra else b", "b"),
        ("stride >= 2", "a if stride == 1 else b", "a if stride == 1 else b"),  # not decided by it
        ("stride == 1", "in_channels // 2", "in_channels // 2"),
        ("stride == 1", "(a if stride == 1 else c) if stride == 1 else b", "a"),
    ],
)
def test_assume(condition, value, expected):
    assert expr.to_python(_assume(tree(condition), tree(value))) == expected
    assert isinstance(_assume(tree(condition), tree(value)), ast.expr)


@pytest.mark.parametrize(
    "rows, expected",
    [
        # a stage: the strided first instance, then identical ones (a loop follows it)
        ([(24, 116, 2), (116, 116, 1), (116, 116, 1), (116, 116, 1)], [(0, 1), (1, 3)]),
        # only two identical ones follow: nothing to loop, the first pairs up as before
        ([(24, 116, 2), (116, 116, 1), (116, 116, 1)], [(0, 2), (2, 1)]),
        # instances stepping evenly from the first stay one run (dense layers)
        ([(64, 32), (96, 32), (128, 32), (160, 32)], [(0, 4)]),
        # later instances keep the greedy split (MobileNet's numbered features, unchanged)
        ([(1, 1), (9, 1), (2, 2), (3, 3), (3, 3), (3, 3), (3, 3)], [(0, 2), (2, 2), (4, 3)]),
    ],
)
def test_stage_runs(rows, expected):
    from archc.backends.common import runs

    assert [(r.start, r.count) for r in runs(rows)] == expected


def test_stages_are_loops_after_their_first_instance():
    graph = graph_of(SPLIT.replace("repeat: 3, with: {out_channels: 12}", "repeat: 4, with: {out_channels: 12}"))
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert "            InvertedResidual(6, out_channels=12, stride=2),\n            *(InvertedResidual(12, out_channels=12) for _ in range(3)),\n" in torch_src
    assert '    for i in range(1, 4):\n        x = inverted_residual(x, 12, out_channels=12, name=f"stage2_{i}")\n' in keras_src


def test_a_compound_condition_used_twice_is_computed_once():
    """torchvision's `self.use_res_connect = stride == 1 and in_channels == out_channels`: the
    condition of a conditional merge that a module of the kind is under too is computed once,
    as the merge's switch, before the module that reads it; a simple comparison (`stride != 1`)
    stays written where it is used."""
    source = (ROOT / "generated" / "efficientnet_b0_torch.py").read_text()
    assert (
        "        self.use_residual = stride == 1 and in_channels == out_channels\n"
        "        self.stochastic_depth = None\n"
        "        if self.use_residual:\n"
        "            self.stochastic_depth = StochasticDepth(stochastic_depth_prob)\n"
    ) in source
    assert source.count("stride == 1 and in_channels == out_channels") == 1
    assert "if stride != 1:" in emit(graph_of(SPLIT), "torch")


def test_a_width_a_conditional_item_reads_first_is_named_before_it():
    """A channel expression that a conditional item reads first, and the items after it again,
    is named before that item, outside its condition (timm's RexNet expansion conv: the name
    was read before it was assigned, an UnboundLocalError wherever ratio != 1); both backends
    build and agree on a model with the conv present and absent."""
    text = """\
    archc: 1
    name: late_width
    input: [3, 8, 8]
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    blocks:
      cbn:
        params: {out_channels: int, groups: 1}
        layers:
          - conv: {conv: {filters: out_channels, kernel: 1, groups: groups}}
          - bn: batchnorm
      unit:
        params: {ratio: 1}
        layers:
          - exp: {block: cbn, with: {out_channels: in_channels * ratio}, if: ratio != 1}
          - wide: {block: cbn, with: {out_channels: in_channels * ratio, groups: in_channels * ratio}}
    layers:
      - stem: {conv: {filters: 4, kernel: 1}}
      - u1: {block: unit}
      - u2: {block: unit, with: {ratio: 2}}
    """
    graph = graph_of(text)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert (
        "        exp_channels = in_channels * ratio\n        self.exp = None\n        if ratio != 1:\n"
        "            self.exp = Cbn(in_channels, out_channels=exp_channels)\n"
    ) in torch_src
    assert "    exp_channels = in_channels * ratio\n    if ratio != 1:\n" in keras_src
    need("torch")
    need("keras")
    from archc import verify

    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)


# Alternatives: entries under conditions that exclude each other, in a block kind (`wide`,
# `tall`, `deep`: at most one holds; `norm`, `act`: exactly one) and in its lists (numbered:
# `tail`; named: `head`); each instance takes another one.
ALTERNATIVES = (
    "archc: 1\nname: alternatives\ninput: [4, 12, 12]\nparams: {num_classes: 5}\n"
    "defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}\nblocks:\n"
    # the kind test_differential checks IR = PyTorch = Keras on, without its merges
    + textwrap.indent("".join(line for line in KIND.splitlines(keepends=True) if "- res:" not in line), "  ")
    + """\
layers:
  - b0: {block: b, with: {w: 6}}
  - b1: {block: b, with: {w: 6, mode: 1, bn: false}}
  - b2: {block: b, with: {w: 6, mode: 2}}
  - b3: {block: b, with: {w: 6, mode: -1, bn: false}}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""
)


def test_alternatives_are_one_if_elif_else_chain():
    """torchvision's FusedMBConv `if ...: ... else: ...`: consecutive entries under conditions
    that exclude each other are one chain in __init__ (each module that may be absent set to
    None first), in forward and in Keras; `else:` where one of them always holds."""
    graph = graph_of(ALTERNATIVES)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert (
        "        self.wide = None\n        self.tall = None\n        self.deep = None\n"
        "        if mode == 0:\n            self.wide = nn.Conv2d(w, w, kernel_size=1, bias=False)\n"
        "        elif mode == 1:\n            self.tall = nn.Conv2d(w, w, kernel_size=3, padding=1, bias=False)\n"
        "        elif mode > 1:\n            self.deep = nn.Sequential(\n"
    ) in torch_src  # mode < 0 takes none: no else
    assert (
        "        self.norm = None\n        self.act = None\n        if bn:\n            self.norm = nn.BatchNorm2d(w)\n"
        "        else:\n            self.act = nn.ReLU6(inplace=True)\n"
    ) in torch_src
    assert (
        "        if self.wide is not None:\n            out = self.wide(out)\n"
        "        elif self.tall is not None:\n            out = self.tall(out)\n"
        "        elif self.deep is not None:\n            out = self.deep(out)\n"
        "        if self.norm is not None:\n            out = self.norm(out)\n"
        "        else:\n            out = self.act(out)\n"
    ) in torch_src
    assert (
        '        if bn:\n            head_layers["n"] = nn.BatchNorm2d(w)\n'
        '        elif not bn and mode == 1:\n            head_layers["r"] = nn.ReLU(inplace=True)\n'
        '        else:\n            head_layers["s"] = nn.SiLU(inplace=True)\n'
    ) in torch_src
    assert (
        "        if bn:\n            tail_layers.append(nn.BatchNorm2d(w))\n"
        "        else:\n            tail_layers.append(nn.Hardswish(inplace=True))\n"
    ) in torch_src
    assert "    if mode == 0:\n" in keras_src and "    elif mode == 1:\n" in keras_src and "    elif mode > 1:\n" in keras_src
    assert keras_src.count("    else:\n") == 3  # act, head's s, tail's hardswish
    assert '    else:\n        x = layers.Activation("relu6", name=f"{name}_act")(x)\n' in keras_src
    # entries under conditions that may hold together stay separate ifs
    overlapping = emit(graph_of(ALTERNATIVES.replace("if: mode == 1}", "if: mode >= 0}")), "torch")  # mode 0 takes both
    assert "        self.tall = None\n        if mode >= 0:\n" in overlapping and "elif mode >= 0" not in overlapping


def test_alternatives_pass_ruff(tmp_path):
    graph = graph_of(ALTERNATIVES)
    for backend in ("torch", "keras"):
        path = tmp_path / f"alternatives_{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


def test_keras_chains_only_ifs_at_one_level_with_nothing_between():
    """The Keras line pass: an `if` joins the chain whose body ends just above it at its own
    level (a nested chain is its own); a line at that level in between, or an overlap, ends it."""
    from archc.backends.alternatives import chain_lines

    lines = [
        "if stride == 1:", "    x = 1", "if stride == 2:", "    x = 2", "    if bn:", "        y = 1",
        "    if not bn:", "        y = 2", "if stride == 3:", "    x = 3", "z = x", "if stride != 1:", "    x = 4",
        "if stride > 0:", "    x = 5", "if stride <= 0:", "    x = 6",
    ]  # fmt: skip
    assert chain_lines(lines) == [
        "if stride == 1:", "    x = 1", "elif stride == 2:", "    x = 2", "    if bn:", "        y = 1",
        "    else:", "        y = 2", "elif stride == 3:", "    x = 3", "z = x", "if stride != 1:", "    x = 4",
        "if stride > 0:", "    x = 5", "else:", "    x = 6",
    ]  # fmt: skip
