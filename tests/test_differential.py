"""One source of truth: the IR (counts, shapes, and the function its graph describes, run by
tests/ir_exec.py), the generated PyTorch and the generated Keras agree on every spec.

Each shape of disagreement found between the three is a named regression test below; the
random dataflow specs at the end look for the next one."""

from __future__ import annotations

import textwrap
import types

import numpy as np
import pytest
from ir_exec import run_ir

from archc.backends import emit
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = pytest.importorskip("torch")
keras = pytest.importorskip("keras")

HEAD = """\
archc: 1
name: t
input: [4, 12, 12]
params: {flag: false, num_classes: 5}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
"""
TAIL = """\
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""


def module_from(text: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(text, f"<{name}>", "exec"), module.__dict__)
    return module


def agree(text: str, keras_too: bool = True, seed: int = 0):
    """Lower `text` and check IR = PyTorch = Keras: counts, output shape, module names,
    the IR's function against PyTorch's forward, and Keras' outputs with PyTorch's weights."""
    from archc.interop import torch_to_keras

    graph = lower(load_spec_text(text, "t.yaml"))
    counts = (graph.counts.trainable, graph.counts.non_trainable)
    tm = module_from(emit(graph, "torch"), "t_torch")
    model = tm.build_model().eval()
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (trainable, buffers) == counts, "PyTorch counts differ from the IR's"
    weighted = {n.id for n in graph.nodes if n.op.weight_names()}
    assert weighted == {n.rsplit(".", 1)[0] for n, _ in model.named_parameters()}, "module names differ from node ids"
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
        x = torch.randn(2, *graph.input_shape.as_tuple(), generator=generator)
        expected = model(x)
        assert tuple(expected.shape) == (2, *graph.output_shape.as_tuple())
        ir = run_ir(graph, model, tm.__dict__, x)
    scale = max(1.0, float(expected.abs().max()))
    assert float((ir - expected).abs().max()) <= 1e-5 * scale, "the generated forward is not the IR's function"
    if not keras_too:
        return graph
    km = module_from(emit(graph, "keras"), "t_keras")
    kmodel = km.build_model()
    k_counts = (
        sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights),
        sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights),
    )
    assert k_counts == counts, "Keras counts differ from the IR's"
    assert tuple(kmodel.output_shape) == (None, *graph.output_shape.as_tuple())
    torch_to_keras(model, kmodel, graph)
    nhwc = x.numpy().transpose(0, *range(2, x.dim()), 1)
    got = np.asarray(kmodel(nhwc, training=False))
    assert np.abs(got - expected.numpy()).max() <= 1e-4 * scale, "Keras computes another function"
    return graph


def spec(blocks: str, layers: str, head: str = HEAD) -> str:
    return head + "blocks:\n" + textwrap.indent(textwrap.dedent(blocks), "  ") + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ") + TAIL


# --- the disagreements found, each a regression test --------------------------------------------


BRANCHES_FROM = """\
b:
  params: {w: int}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - c: {conv: {filters: w, kernel: 3, padding: 1}, from: input}
    - m: {branches: [{x1: {conv: {filters: w, kernel: 1}}}, {x2: {conv: {filters: w, kernel: 3, padding: 1}}}], merge: concat, from: a}
    - joined: {concat: [m, c]}
"""


def test_branches_read_their_from_in_a_block():
    graph = agree(spec(BRANCHES_FROM, "- blk: {block: b, with: {w: 3}}\n"))
    (merge,) = [n for n in graph.nodes if n.id == "blk.m"]
    assert merge.inputs == ("blk.x1", "blk.x2") and merge.shape.c == 6
    assert next(n for n in graph.nodes if n.id == "blk.x1").inputs == ("blk.a",)


def test_branches_read_their_from_at_model_level():
    layers = """\
    - a: {conv: {filters: 3, kernel: 1}}
    - c: {conv: {filters: 3, kernel: 1}, from: input}
    - m: {branches: [{x1: {conv: {filters: 2, kernel: 1}}}, {x2: {conv: {filters: 2, kernel: 1}}}], merge: concat, from: a}
    - joined: {concat: [m, c]}
    """
    graph = agree(HEAD + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ") + TAIL)
    assert next(n for n in graph.nodes if n.id == "x2").inputs == ("a",)


ONE_BRANCH_FROM = """\
b:
  params: {w: int}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - m: {branches: [{x1: {conv: {filters: w, kernel: 1}}}, {x2: {conv: {filters: w, kernel: 1}, from: input}}], merge: add}
"""


@pytest.mark.parametrize("where", ["block", "model"])
def test_one_branch_reads_its_own_from(where):
    if where == "block":
        graph = agree(spec(ONE_BRANCH_FROM, "- blk: {block: b, with: {w: 4}}\n"))
        assert next(n for n in graph.nodes if n.id == "blk.x2").inputs == ("input",)
    else:
        layers = """\
        - a: {conv: {filters: 4, kernel: 1}}
        - m: {branches: [{x1: {conv: {filters: 4, kernel: 1}}}, {x2: {conv: {filters: 4, kernel: 1}, from: input}}], merge: add}
        """
        graph = agree(HEAD + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ") + TAIL)
        assert next(n for n in graph.nodes if n.id == "x2").inputs == ("input",)


BRANCHES_IF = """\
b:
  params: {w: int, enabled: false}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - m: {branches: [{x1: {conv: {filters: w, kernel: 1}}}, {x2: [{conv: {filters: w, kernel: 3, padding: 1}}, relu]}], merge: add, if: enabled}
    - n: batchnorm
"""


@pytest.mark.parametrize("on", [False, True])
def test_branches_under_if_exist_only_where_it_holds(on):
    """Absent, the branches build no modules and the merge passes their input on (not the last branch's output)."""
    graph = agree(spec(BRANCHES_IF, f"- blk: {{block: b, with: {{w: 4, enabled: {str(on).lower()}}}}}\n"))
    ids = {n.id for n in graph.nodes}
    assert ("blk.x1" in ids) == on and ("blk.x2.0" in ids) == on
    assert next(n for n in graph.nodes if n.id == "blk.n").inputs == (("blk.m",) if on else ("blk.a",))


MERGE_ONLY_READER = """\
b:
  params: {w: int, enabled: false}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - t: {conv: {filters: w, kernel: 1}, from: input}
    - m: {add: [a, t], if: enabled}
"""


@pytest.mark.parametrize("on", [False, True])
def test_a_layer_read_only_by_a_conditional_merge_exists_where_the_merge_does(on):
    """Absent, the merge passes `t` (the tensor before it) on, and `a` feeds nothing."""
    graph = agree(spec(MERGE_ONLY_READER, f"- blk: {{block: b, with: {{w: 4, enabled: {str(on).lower()}}}}}\n"))
    ids = {n.id for n in graph.nodes}
    assert ("blk.a" in ids) == on and "blk.t" in ids


DENSE_CONDITIONAL = """\
unit:
  params: {k: int, wide: false}
  layers:
    - norm: batchnorm
    - relu: relu
    - conv: {conv: {filters: k, kernel: 3, padding: 1}}
    - extra: {conv: {filters: k, kernel: 1}, if: wide}
"""


@pytest.mark.parametrize("wide", [False, True])
def test_dense_stage_of_a_block_kind_with_conditional_layers(wide):
    layers = f"- dense: {{stage: unit, repeat: 3, connectivity: dense, with: {{k: 2, wide: {str(wide).lower()}}}}}\n"
    graph = agree(spec(DENSE_CONDITIONAL, layers))
    assert graph.output_shape.c == 5


def test_false_model_level_if_drops_what_only_it_reads():
    layers = """\
    - a: {conv: {filters: 4, kernel: 1}}
    - t: {conv: {filters: 4, kernel: 1}, from: input}
    - m: {add: [a, t], if: flag}
    """
    graph = agree(HEAD + "layers:\n" + textwrap.indent(textwrap.dedent(layers), "  ") + TAIL)
    assert [n.id for n in graph.nodes][:2] == ["t", "pool"]  # absent, the merge passes `t` on; `a` feeds nothing
    assert [item.name for item in graph.body] == ["t", "pool", "fc"]


COMPLEMENTARY = """\
b:
  params: {w: int, sum: true}
  layers:
    - a: {conv: {filters: w, kernel: 1}}
    - c: {conv: {filters: w, kernel: 1}, from: input}
    - res: {add: [a, c], if: sum}
    - res: {concat: [a, c], if: not sum}
"""


@pytest.mark.parametrize("total", [True, False])
def test_alternative_merges_under_complementary_ifs(total):
    graph = agree(spec(COMPLEMENTARY, f"- blk: {{block: b, with: {{w: 3, sum: {str(total).lower()}}}}}\n"))
    assert graph.output_shape.c == 5


PARALLEL_STRIDED = """\
b:
  params: {w: int, stride: 1}
  connectivity: skip
  shortcut: {kind: projection}
  layers:
    - m: {branches: [{x1: {conv: {filters: w, kernel: 1, stride: stride}}}, {x2: {conv: {filters: w, kernel: 3, stride: stride, padding: 1}}}], merge: add}
    - n: batchnorm
"""


def test_skip_block_with_parallel_strided_branches():
    """The shortcut's stride is the branch's (2), not the product of every layer's (4)."""
    graph = agree(spec(PARALLEL_STRIDED, "- blk: {block: b, with: {w: 8, stride: 2}}\n"))
    (proj,) = [n for n in graph.nodes if n.id == "blk.downsample.0"]
    assert proj.op.stride == 2 and proj.shape.h == 6


CHANNELS_IN_WITH = """\
inner:
  params: {w: int}
  layers:
    - conv: {conv: {filters: w, kernel: 1}}
outer:
  params: {k: int}
  layers:
    - first: {conv: {filters: k, kernel: 1}}
    - again: {block: inner, with: {w: channels * 2}}
"""


def test_channels_in_a_nested_blocks_with():
    graph = agree(spec(CHANNELS_IN_WITH, "- blk: {block: outer, with: {k: 3}}\n"))
    assert next(n for n in graph.nodes if n.id == "blk.again.conv").shape.c == 6
