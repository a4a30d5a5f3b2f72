"""One source of truth: the IR (counts, shapes, and the function its graph describes, run by
tests/ir_exec.py), the generated PyTorch and the generated Keras agree on every spec.

Each shape of disagreement found between the three is a named regression test below; the
random dataflow specs at the end look for the next one."""

from __future__ import annotations

import random
import textwrap
import types

import numpy as np
import pytest
import yaml
from conftest import assert_ruff_clean, need
from ir_exec import run_ir

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")

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
    from archc.interop import torch_key, torch_to_keras

    graph = lower(load_spec_text(text, "t.yaml"))
    counts = (graph.counts.trainable, graph.counts.non_trainable)
    tm = module_from(emit(graph, "torch"), "t_torch")
    model = tm.build_model().eval()
    params = dict(model.named_parameters())
    trainable = sum(p.numel() for p in params.values())
    # non-trainable: the state_dict's other tensors (a non-persistent buffer, blurpool's constant filter, is not state)
    buffers = sum(v.numel() for k, v in model.state_dict().items() if k not in params and not k.endswith("num_batches_tracked"))
    assert (trainable, buffers) == counts, "PyTorch counts differ from the IR's"
    weighted = {torch_key(n.id, w) for n in graph.nodes for w in n.op.weight_names()}
    assert weighted == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}, "module names differ from node ids"
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=generator) + 0.5)
        x = torch.randn(2, *graph.input_shape.as_tuple(), generator=generator)
        expected = outputs(graph, model(x))
        ir = outputs(graph, run_ir(graph, model, tm.__dict__, x))
    assert list(expected) == list(ir) == [o.key for o in graph.outputs] or [None]
    for key, value in expected.items():
        shape = next((o.shape for o in graph.outputs if o.key == key), graph.output_shape)
        assert tuple(value.shape) == (2, *shape.as_tuple())
        scale = max(1.0, float(value.abs().max()))
        assert float((ir[key] - value).abs().max()) <= 1e-5 * scale, f"the generated forward is not the IR's function ({key})"
    if not keras_too:
        return graph
    km = module_from(emit(graph, "keras"), "t_keras")
    kmodel = km.build_model()
    k_counts = (
        sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights),
        sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights),
    )
    assert k_counts == counts, "Keras counts differ from the IR's"
    torch_to_keras(model, kmodel, graph)
    nhwc = x.numpy().transpose(0, *range(2, x.dim()), 1)
    got = outputs(graph, kmodel(nhwc, training=False))
    assert list(got) == list(expected)
    for key, value in expected.items():
        want = value.numpy()
        want = want.transpose(0, *range(2, want.ndim), 1) if want.ndim > 2 else want  # Keras maps are channels-last
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(np.asarray(got[key]) - want).max() <= 1e-4 * scale, f"Keras computes another function ({key})"
    return graph


def outputs(graph, result) -> dict:
    """A model's result as {key: tensor}: its dict, or {None: tensor} for a single output."""
    if graph.outputs:
        assert isinstance(result, dict), "a model with `outputs:` returns a dict"
        return dict(result)
    return {None: result}


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


ALTERNATIVES = """\
b:
  params: {w: int, mode: 0, bn: true}
  layers:
    - conv: {conv: {filters: w, kernel: 1}}
    - wide: {conv: {filters: w, kernel: 1}, if: mode == 0}
    - tall: {conv: {filters: w, kernel: 3, padding: 1}, if: mode == 1}
    - deep: {group: [{conv: {filters: w, kernel: 1}}, relu], if: mode > 1}
    - norm: {batchnorm: {}, if: bn}
    - act: {act: relu6, if: not bn}
    - head:
        - c: {conv: {filters: w, kernel: 1}}
        - n: {batchnorm: {}, if: bn}
        - r: {act: relu, if: not bn and mode == 1}
        - s: {act: silu, if: not bn and mode != 1}
    - tail:
        - {conv: {filters: w, kernel: 1}}
        - {batchnorm: {}, if: bn}
        - {act: hardswish, if: not bn}
    - res: {add: [tail, input], if: mode == 1 and in_channels == w}
    - res: {concat: [tail, input], if: mode != 1 or in_channels != w}
"""


@pytest.mark.parametrize(
    "instances",
    [
        ["{w: 6}", "{w: 10, mode: 1, bn: false}", "{w: 6, mode: 2}", "{w: 6, mode: -1, bn: false}"],  # each alternative taken
        ["{w: 4, mode: 1, bn: false}"],  # one instance: Keras prints what it decides
        ["{w: 4, mode: 2, bn: false}", "{w: 8, mode: 0}"],
    ],
)
def test_alternatives_chained_as_if_elif_else_agree(instances):
    """Entries under conditions that exclude each other are printed as one if/elif/else chain
    (tests/test_conditions.py shows the text); each instance runs the alternative its
    parameters choose, in the IR, PyTorch and Keras alike."""
    layers = "".join(f"- b{k}: {{block: b, with: {w}}}\n" for k, w in enumerate(instances))
    source = spec(ALTERNATIVES, layers)
    if len(instances) == 4:
        code = emit(lower(load_spec_text(source, "t.yaml")), "torch")
        assert "elif mode > 1:" in code and "elif self.use_res_2:" in code
    agree(source)


NEVER_IN_A_NUMBERED_LIST = """\
b:
  params: {w: int, gate: false}
  layers:
    - l2: {conv: {filters: w, kernel: 1}}
    - l3: {group: [{conv: {filters: w, kernel: 1}, if: gate}, batchnorm, relu]}
"""


def test_keras_numbers_a_list_past_an_entry_that_never_runs_as_lowering_does():
    """Lowering numbers a list's entries as present: with `gate` false in every instance the
    batch norm is `l3.0`. The Keras code prints no layer for the conv that never runs, and
    still names the batch norm `l3_0` (it was `l3_1`: the entry was dropped from the list, and
    the entries after it kept the numbers of the spec's positions)."""
    graph = agree(spec(NEVER_IN_A_NUMBERED_LIST, "- blk: {block: b, with: {w: 3}}\n"))
    assert {n.id for n in graph.nodes} >= {"blk.l3.0", "blk.l3.1"} and "blk.l3.2" not in {n.id for n in graph.nodes}
    source = emit(graph, "keras")
    assert 'name=f"{name}_l3_0"' in source and 'name=f"{name}_l3_1"' in source and "_l3_2" not in source
    assert "if gate" not in source  # decided: no branch that never runs


NEVER_BEFORE_A_SPLICED_STAGE = """\
unit:
  params: {k: int}
  layers:
    - conv: {filters: k, kernel: 1}
seq:
  params: {w: int, c: false}
  layers:
    - conv: {filters: w, kernel: 1}
    - {conv: {filters: w, kernel: 1}, if: c}
    - {stage: unit, repeat: 2, with: {k: w}}
    - batchnorm
"""


def test_keras_numbers_a_numbered_kind_past_an_entry_that_never_runs():
    """A block kind of unnamed layers (an nn.Sequential) whose second entry runs in no instance:
    the stage's instances and the batch norm after it are `1`, `2` and `3`, as lowering numbers them."""
    graph = agree(spec(NEVER_BEFORE_A_SPLICED_STAGE, "- a: {block: seq, with: {w: 4}}\n"))
    assert [n.id for n in graph.nodes][:4] == ["a.0", "a.1.0", "a.2.0", "a.3"]
    source = emit(graph, "keras")
    assert 'name=f"{name}_1")' in source and 'name=f"{name}_3")' in source and "if c" not in source


NEVER_WITH_FROM = """\
b:
  params: {w: int, flag: false}
  layers:
    - l1: {conv: {filters: w, kernel: 1}}
    - l2: {conv: {filters: w * 2, kernel: 3, padding: 1}, from: input}
    - l3: {act: relu, from: l1, if: flag}
    - l4: relu
    - l5: {concat: [l4, l2]}
"""


def test_keras_entry_that_never_runs_passes_on_its_from():
    """An entry absent in every instance passes on what it reads (`from: l1`), and the entry
    after it reads that: the Keras code keeps it in the dataflow (dropped, `l4` read `l2`,
    twice as wide, and the model after it had other weights)."""
    graph = agree(spec(NEVER_WITH_FROM, "- blk: {block: b, with: {w: 3}}\n"))
    assert graph.output_shape.c == 5 and "blk.l3" not in {n.id for n in graph.nodes}
    assert "if flag" not in emit(graph, "keras")


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
    assert proj.op.stride == 2 and proj.shape.size[0] == 6


ANTI_ALIASED = """\
archc: 1
name: anti_aliased
input: [3, 20, 12]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  aa:
    params: {w: int, stride: 1}
    connectivity: skip
    shortcut: {kind: projection}
    layers:
      - conv1: {conv: {filters: w, kernel: 3, padding: 1}}
      - blur: {blurpool: {kernel: 3, stride: stride}, if: stride != 1}
      - bn: batchnorm
layers:
  - s2d: {space_to_depth: {block: 4}}
  - stem: {conv: {filters: 8, kernel: 3, padding: 1}}
  - stage: {stage: aa, repeat: 2, with: {w: 8}, first: {stride: 2}}
  - pool: global_avgpool
"""


def test_anti_aliased_skip_block_agrees():
    """TResNet's shape in all three: a space-to-depth stem (20 x 12 -> 5 x 3, 48 channels) and a
    skip block kind whose blur pool is present, at the block's stride, only where it downsamples
    (5 x 3 -> 3 x 2, the projection shortcut's stride 2 too)."""
    graph = agree(ANTI_ALIASED)
    sizes = {n.id: n.shape.as_tuple() for n in graph.nodes}
    assert sizes["s2d"] == (48, 5, 3) and sizes["stage.0.blur"] == (8, 3, 2) and "stage.1.blur" not in sizes


def ranked_spec(rank: int, seed: int) -> str:
    """A small random spec of 1-D or 3-D maps: a strided stem with per-dimension lists, a stage
    of a skip block kind with projection shortcuts, parallel branches, padding, pooling,
    upsampling, a flatten or a global pool and a classifier."""
    r = random.Random(f"rank{rank}-{seed}")

    def per_dim(draw):
        return draw() if r.random() < 0.4 else [draw() for _ in range(rank)]

    kernel = per_dim(lambda: r.choice([1, 3]))
    pad = [(k - 1) // 2 for k in kernel] if isinstance(kernel, list) else (kernel - 1) // 2
    size = [r.randint(10, 16) for _ in range(rank)] if rank == 1 else [r.randint(8, 10) for _ in range(rank)]
    w = r.choice([4, 8])
    head = "flatten" if r.random() < 0.5 else "global_avgpool"
    spec_dict = {
        "archc": 1, "name": f"rank{rank}_{seed}", "input": [r.choice([1, 3]), *size],
        "defaults": {"conv": {"bias": r.random() < 0.5}, "batchnorm": {"eps": 1e-5, "momentum": 0.1}, "activation": "relu"},
        "blocks": {"res": {
            "params": {"planes": "int", "stride": 1}, "connectivity": "skip",
            "shortcut": {"kind": "projection", "name": "downsample"},
            "layers": [
                {"conv1": [{"conv": {"filters": "planes", "kernel": 3, "stride": "stride", "padding": 1}}, "batchnorm", "relu"]},
                {"conv2": {"conv": {"filters": "planes", "kernel": kernel, "padding": pad}}},
                {"bn2": "batchnorm"},
            ],
            "after": [{"relu": "act"}],
        }},
        "layers": [
            {"stem": {"conv": {"filters": w, "kernel": per_dim(lambda: r.choice([2, 3])), "stride": per_dim(lambda: r.randint(1, 2)),
                               "padding": per_dim(lambda: r.randint(0, 1))}}},
            {"relu": "relu"},
            {"mix": {"branches": [{"a": {"conv": {"filters": w, "kernel": 1}}}, {"b": {"avgpool": {"kernel": 3, "stride": 1, "padding": 1}}}],
                     "merge": "concat"}},
            {"pad": {"zeropad": {"padding": [[r.randint(0, 1), r.randint(0, 1)] for _ in range(rank)]}}},
            {"pool": {"maxpool": {"kernel": per_dim(lambda: 2), "stride": 1}}},
            {"layer1": {"stage": "res", "repeat": r.randint(1, 2), "with": {"planes": 2 * w}, "first": {"stride": 2}}},
            {"up": {"upsample": {"scale": 2}}},
            {"bn": "batchnorm"},
            {"head": head},
            {"fc": {"dense": {"units": r.randint(2, 5)}}},
        ],
    }  # fmt: skip
    return yaml.safe_dump(spec_dict, sort_keys=False)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rank", [1, 3])
def test_random_specs_of_other_ranks_agree(rank, seed):
    """IR = PyTorch = Keras for small random 1-D and 3-D specs (a flatten's order differs between
    the frameworks at every rank; interop reorders the dense weight)."""
    graph = agree(ranked_spec(rank, seed), seed=seed)
    assert graph.input_shape.rank == rank
    assert {n.shape.rank for n in graph.nodes if n.shape.spatial} == {rank}


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


# timm's byobnet BottleneckBlock as archc import writes it: a width expression that a nested
# block's argument (not `filters`) uses first and later layers use again
WIDTH_IN_A_BLOCKS_ARGUMENT = """\
cna:
  params: {out_channels: int, kernel_size: 1}
  layers:
    - conv: {conv: {filters: out_channels, kernel: kernel_size, padding: kernel_size // 2}}
bneck:
  params: {out_chs: int}
  layers:
    - conv1: {block: cna, with: {out_channels: out_chs // 4}}
    - conv2: {block: cna, with: {out_channels: out_chs // 4, kernel_size: 3}}
    - conv3: {block: cna, with: {out_channels: out_chs}}
"""


def test_a_width_named_before_a_blocks_argument_uses_it():
    """The named width (`conv1_channels = out_chs // 4`) is defined before the first line that
    uses it, a nested block's argument (it was defined before the next layer's input channels,
    after its use: UnboundLocalError in __init__ and in Keras' block function)."""
    graph = agree(spec(WIDTH_IN_A_BLOCKS_ARGUMENT, "- b: {block: bneck, with: {out_chs: 16}}\n"))
    assert [n.shape.c for n in graph.nodes if n.id.endswith(".conv")] == [4, 4, 16]


# --- random dataflow specs ------------------------------------------------------------------------

from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

SETTINGS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
ACTS = ["relu", "silu", "sigmoid", "tanh", "gelu"]


class _Block:
    """A random block kind built while tracking each tensor's channels for one instance
    (`w`, `flag` and the input channels known), so that most drawn specs are valid."""

    def __init__(self, draw, name: str, c_in: int, w: int, flag: bool, inner: str | None, skip: bool):
        self.draw, self.w, self.flag = draw, w, flag
        self.layers: list[dict] = []
        self.ch = {"input": c_in}
        self.last = "input"
        self.n = 0
        for _ in range(draw(st.integers(1, 4))):
            self.step(inner)
        self.finish(skip)
        params = {"w": "int", "flag": False, "stride": 1}
        self.definition = {"params": params, "layers": self.layers}
        if skip:
            self.definition |= {"connectivity": "skip", "shortcut": {"kind": "projection"}, "after": [{"post": "relu"}]}
        self.name = name

    def fresh(self) -> str:
        self.n += 1
        return f"l{self.n}"

    def add(self, name: str, body: dict, channels: int) -> None:
        self.layers.append({name: body})
        self.ch[name] = channels
        self.last = name

    def cond(self) -> tuple[str | None, bool]:
        """An optional `if:` and whether it holds for this instance."""
        text = self.draw(st.sampled_from([None, None, "flag", "not flag", "w > 3", "channels == w"]))
        holds = {None: True, "flag": self.flag, "not flag": not self.flag, "w > 3": self.w > 3}.get(text)
        return text, holds

    def standardized(self) -> dict:
        """A conv's weight standardization (BiT), or its scaled form with a gain (NFNet), or none."""
        form = self.draw(st.sampled_from([None, None, "standardize", "gain"]))
        return {} if form is None else {"standardize": True, "eps": 1e-6, **({"gain": True, "gamma": 1.5} if form == "gain" else {})}

    def step(self, inner: str | None) -> None:
        draw = self.draw
        kind = draw(st.sampled_from(["conv", "conv", "act", "group", "branches", "merge", "inner", "parallel", "eca", "scale", "blur", "rms", "gc"]))
        src = draw(st.sampled_from([self.last, self.last, *self.ch]))
        body: dict = {} if src == self.last else {"from": src}
        c = self.ch[src]
        text, holds = self.cond()
        if text == "channels == w":
            holds = c == self.w
        if text:
            body["if"] = text
        name = self.fresh()
        if kind == "conv":
            filters = draw(st.sampled_from(["w", "channels", "w * 2"]))
            out = {"w": self.w, "channels": c, "w * 2": 2 * self.w}[filters]
            k = draw(st.sampled_from([1, 3]))
            body["conv"] = {"filters": filters, "kernel": k, "padding": k // 2, **self.standardized()}
        elif kind == "act":
            body["act"], out = draw(st.sampled_from(ACTS)), c
        elif kind == "eca":  # a kernel as a literal, or odd from the block's parameter
            body["eca"], out = {"kernel": draw(st.sampled_from([1, 3, "w // 2 * 2 + 1"]))}, c
        elif kind == "blur":  # a blur pool at stride 1 keeps the size (kernel 3: padding 1 by reflection)
            body["blurpool"], out = {"kernel": 3, "stride": 1}, c
        elif kind == "gc":  # GCNet's global context: its width a literal or from the block's parameter
            fuse = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
            body["global_context"] = {"rd_channels": draw(st.sampled_from([2, "w // 2 + 1"])), "eps": 1e-6, "fuse_add": fuse[0], "fuse_scale": fuse[1]}
            out = c
        elif kind == "rms":  # timm's RmsNorm2d over the map's channels
            body["rmsnorm"], out = {"eps": draw(st.sampled_from([1e-6, 1e-2]))}, c
        elif kind == "scale":  # a bare parameter, torchvision's (C, 1, 1) or timm's vector (C,)
            body["layer_scale"], out = {"init_value": 0.5, "vector": draw(st.booleans())}, c
        elif kind == "group":
            entry = {"conv": {"filters": "w", "kernel": 1, **self.standardized()}}  # a norm after a standardized conv stays in deploy
            if draw(st.booleans()):
                entry["if"] = "flag"
            body["group"] = [entry, "batchnorm", "relu"]
            out = self.w if "if" not in entry or self.flag else c
            if not text and "if" not in entry and draw(st.booleans()):  # a tap: later layers may read `l3.1`
                self.ch[f"{name}.1"] = self.w
        elif kind == "branches":
            merge = draw(st.sampled_from(["add", "concat"]))
            branches = [{"b1": {"conv": {"filters": "w", "kernel": 1}}}, {"b2": [{"conv": {"filters": "w", "kernel": 3, "padding": 1}}, "relu"]}]
            if draw(st.booleans()) and len(self.ch) > 1:  # one branch reads another tensor of the same size
                branches[1] = {"b2": {"conv": {"filters": "w", "kernel": 1}, "from": draw(st.sampled_from(list(self.ch)))}}
            for b in branches:
                (bname,) = b
                b[f"{name}_{bname}"] = b.pop(bname)
            body |= {"branches": branches, "merge": merge}
            out = 2 * self.w if merge == "concat" else self.w
        elif kind == "parallel":  # a module list: numbered paths, one maybe reading another tensor
            merge = draw(st.sampled_from(["add", "concat", "multiply"]))
            paths: list = [{"conv": {"filters": "w", "kernel": 1}}, [{"conv": {"filters": "w", "kernel": 3, "padding": 1}}, "batchnorm", "relu"]]
            if inner is not None and draw(st.booleans()):
                paths.append({"block": inner, "with": {"w": "w"}})
            if draw(st.booleans()) and len(self.ch) > 1:
                paths[0] = {"conv": {"filters": "w", "kernel": 1}, "from": draw(st.sampled_from(list(self.ch)))}
            if draw(st.booleans()):  # a row of a grid, one of its paths maybe reading another tensor
                read = {"from": draw(st.sampled_from(list(self.ch)))} if len(self.ch) > 1 and draw(st.booleans()) else {}
                row = [{"conv": {"filters": "w", "kernel": 1}}, {"conv": {"filters": "w", "kernel": 1}, **read}]
                paths.append({"parallel": row, "merge": "add"})
            body |= {"parallel": paths, "merge": merge}
            out = len(paths) * self.w if merge == "concat" else self.w
        elif kind == "merge":
            same = [n for n, ch in self.ch.items() if ch == c and n != src]
            if not same:
                return
            other = draw(st.sampled_from(same))
            op = draw(st.sampled_from(["add", "concat", "weighted_sum"]))
            body.pop("from", None)
            body[op] = [src, other]
            if op == "weighted_sum":
                body["normalize"] = draw(st.booleans())
            out = 2 * c if op == "concat" else c
            if text:  # absent, a merge passes the previous tensor on
                c = self.ch[self.last]
        else:
            if inner is None:
                return
            body["block"], body["with"] = inner, {"w": draw(st.sampled_from(["w", "channels"]))}
            out = self.w if body["with"]["w"] == "w" else c
            if draw(st.booleans()):  # a stage of it whose arguments read the instance index, and `last:`
                del body["block"]
                body |= {"stage": inner, "repeat": draw(st.integers(1, 3)), "with": {"w": "w", "flag": "i % 2 == 1"}, "last": {"flag": "not flag"}}
                out = self.w
        self.add(name, body, out if holds else c)

    def unread(self) -> list[str]:
        """The layers so far that nothing reads (a spec error): read by name, or by the next layer."""
        read, prev = set(), "input"
        for entry in self.layers:
            (name, body), = entry.items()
            if isinstance(body, dict):
                lists = [body.get(op, []) for op in ("add", "concat", "multiply", "weighted_sum")]
                read.update(n for names in lists for n in names)
                read.update(b[k].get("from", prev) for b in body.get("branches", []) for k in b if isinstance(b[k], dict))
                read.update(p.get("from", prev) for p in body.get("parallel", []) if isinstance(p, dict))
                if not any(lists):
                    read.add(body.get("from", prev))
            else:
                read.add(prev)
            prev = name
        return [n for n in self.ch if n not in read and n not in ("input", self.last)]

    def finish(self, skip: bool) -> None:
        """End on `w` channels: a 1x1 conv (strided where the block is), a strided pair of
        branches, or a 1x1 conv and a blur pool at the block's stride; the layers nothing read are first concatenated with the last, so that most drawn
        blocks are valid specs."""
        unread = self.unread()
        if unread:
            self.add(self.fresh(), {"concat": [self.last, *unread]}, sum(self.ch[n] for n in [self.last, *unread]))
        shape = self.draw(st.sampled_from(["conv", "branches", "blur"] if skip else ["conv"]))
        if shape == "blur":  # TResNet's anti-aliased downsampling: a 1x1 conv, then a blur pool at the block's stride
            self.add(self.fresh(), {"conv": {"filters": "w", "kernel": 1}}, self.w)
            self.add("final", {"blurpool": {"stride": "stride"}}, self.w)
        elif shape == "branches":
            body = {"branches": [
                {"f1": {"conv": {"filters": "w", "kernel": 1, "stride": "stride"}}},
                {"f2": {"conv": {"filters": "w", "kernel": 3, "stride": "stride", "padding": 1}}},
            ], "merge": "add"}  # fmt: skip
        else:
            body = {"conv": {"filters": "w", "kernel": 1, "stride": "stride" if skip else 1}}
        if shape != "blur":
            self.add("final", body, self.w)
        # a batch norm, or a group norm (groups a constant or an expression of w; w is even)
        self.layers.append({"norm": self.draw(st.sampled_from(["batchnorm", {"groupnorm": {"groups": 2}}, {"groupnorm": {"groups": "w // 2"}}]))})


def recursive_kind(draw) -> dict:
    """A block kind `rec` (w, depth) holding an instance of itself under `if: depth > 1`, at `w`
    or twice it, maybe merged with the tensor before it, maybe a skip block whose
    `shape_changes` shortcut the inner instances switch by the declared `out_channels`."""
    k = draw(st.sampled_from([1, 3]))
    inner_w = draw(st.sampled_from(["w", "w * 2"]))
    layers: list[dict] = [
        {"a": {"conv": {"filters": "w", "kernel": k, "padding": k // 2}}},
        {"r": draw(st.sampled_from(ACTS))},
        {"inner": {"block": "rec", "with": {"w": inner_w, "depth": "depth - 1"}, "if": "depth > 1"}},
    ]
    merge = draw(st.sampled_from([None, "concat"] + (["add"] if inner_w == "w" else [])))
    if merge:
        layers.append({"j": {merge: ["r", "inner"], "if": "depth > 1"}})
    layers.append({"last": {"conv": {"filters": "w", "kernel": 1}}})
    definition = {"params": {"w": "int", "depth": "int"}, "out_channels": "w", "layers": layers}
    if draw(st.booleans()):
        definition |= {"connectivity": "skip", "shortcut": {"kind": "projection", "batchnorm": draw(st.booleans())}}
    return definition


@st.composite
def dataflow_specs(draw):
    c0 = draw(st.sampled_from([3, 4]))
    size = draw(st.sampled_from([8, 10]))
    stem = draw(st.sampled_from([4, 6]))
    blocks: dict = {}
    inner = None
    if draw(st.booleans()):
        block = _Block(draw, "inner", stem, 4, False, None, False)
        blocks["inner"] = block.definition
        inner = "inner"
    standardized = {"standardize": True, "eps": 1e-8} if draw(st.booleans()) else {}  # BiT's stem; its norm stays in deploy
    layers: list[dict] = [{"stem": {"conv": {"filters": stem, "kernel": 3, "padding": 1, **standardized}}}, {"bn": "batchnorm"}, {"act": "relu"}]
    if draw(st.booleans()):  # TResNet's stem: 2x2 blocks of the input's positions as channels (sizes 8 and 10 are even)
        layers.insert(0, {"s2d": {"space_to_depth": {"block": 2}}})
    outputs: dict = {}
    grouping = draw(st.sampled_from(["none", "named", "numbered"]))  # the stem as a group, tapped
    if grouping == "named":
        layers = [{"features": layers}]
        outputs["tap"] = draw(st.sampled_from(["features.stem", "features.bn", "features.act"]))
    elif grouping == "numbered":
        layers = [{"features": [next(iter(entry.values())) for entry in layers]}]
        outputs["tap"] = f"features.{draw(st.integers(0, 2))}"
    c = stem
    for k in range(draw(st.integers(1, 3))):
        w, flag = draw(st.sampled_from([2, 4, 6])), draw(st.booleans())
        skip = draw(st.booleans())
        block = _Block(draw, f"blk{k}", c, w, flag, inner, skip)
        blocks[f"blk{k}"] = block.definition
        mode = draw(st.sampled_from(["block", "stage", "dense", "table", "named"] if not skip else ["block", "stage", "table", "named"]))
        args = {"w": w, "flag": flag}
        if mode == "block":
            item = {"block": f"blk{k}", "with": args | ({"stride": 2} if skip and draw(st.booleans()) else {})}
            c = w
        elif mode == "stage":
            item = {"stage": f"blk{k}", "repeat": draw(st.integers(1, 3)), "with": args}
            if skip and draw(st.booleans()):
                item["first"] = {"stride": 2}
            c = w
        elif mode == "table":  # a table of stages (rows: width, repeat), in a list of its own
            widths = [w, draw(st.sampled_from([2, 4, 6]))]
            table = {"stages": f"blk{k}", "columns": ["w", "repeat"], "rows": [[v, draw(st.integers(1, 2))] for v in widths]}
            table |= {"with": {"flag": flag}, "flat": draw(st.booleans())}
            if skip and draw(st.booleans()):
                table["first"] = {"stride": 2}
            item = [table]
            c = widths[-1]
        elif mode == "named":  # a stage's instances named into the list that holds it
            item = [{"stage": f"blk{k}", "repeat": draw(st.integers(1, 3)), "names": "u{n}", "with": args}]
            if draw(st.booleans()):
                item.insert(0, {"identity": {}})  # a numbered entry beside the named instances
            c = w
        else:
            repeat = draw(st.integers(1, 3))
            item = {"stage": f"blk{k}", "repeat": repeat, "connectivity": "dense", "with": args}
            c += repeat * w
        layers.append({f"s{k}": item})
        if draw(st.booleans()):  # a model-level side path and a merge, maybe absent
            layers.append({f"side{k}": {"conv": {"filters": c, "kernel": 1}, "from": f"s{k}"}})
            merge = {draw(st.sampled_from(["add", "weighted_sum"])): [f"s{k}", f"side{k}"]}
            if draw(st.booleans()):
                merge["if"] = draw(st.sampled_from(["true", "false"]))
            layers.append({f"m{k}": merge})
        if draw(st.booleans()):  # a model-level module list, one path maybe reading the side path
            merge = draw(st.sampled_from(["add", "concat", "multiply"]))
            paths: list = [{"conv": {"filters": c, "kernel": 1}}, [{"conv": {"filters": c, "kernel": 3, "padding": 1}}, "batchnorm", "relu"]]
            if f"side{k}" in [next(iter(e)) for e in layers] and draw(st.booleans()):
                paths[0]["from"] = f"side{k}"
            if draw(st.booleans()):  # a row of a grid, its identity keeping index 0
                paths.append({"parallel": [{"identity": {}}, {"conv": {"filters": c, "kernel": 1}}], "merge": "add"})
            layers.append({f"par{k}": {"parallel": paths, "merge": merge}})
            c = len(paths) * c if merge == "concat" else c
    if draw(st.booleans()):  # a block kind with two inputs reading an earlier tensor and the last one
        blocks["two"], c = _two_inputs(draw, c)
        earlier = [next(iter(e)) for e in layers[:-1]]
        layers.append({"joined": {"block": "two", "with": {"w": c}, "from": [draw(st.sampled_from(earlier)), next(iter(layers[-1]))]}})
    if draw(st.booleans()):  # a block kind with two outputs, both read
        blocks["split"], merge = _two_outputs(draw), draw(st.sampled_from(["add", "concat"]))
        layers += [{"sp": {"block": "split", "with": {"w": c}}}, {"spj": {merge: ["sp", "sp.b"]}}]
        c = 2 * c if merge == "concat" else c
    if draw(st.booleans()):  # a block kind that contains itself while `depth > 1`
        blocks["rec"] = recursive_kind(draw)
        w = draw(st.sampled_from([2, 4]))
        layers.append({"rec": {"block": "rec", "with": {"w": w, "depth": draw(st.integers(1, 3))}}})
        c = w
    if draw(st.booleans()):  # a container wired by dataflow, an entry of it an output
        heads = [
            {"a": {"conv": {"filters": c, "kernel": 1}}},
            {"b": {"conv": {"filters": c, "kernel": 3, "padding": 1}, "from": draw(st.sampled_from(["a", "input" if c == c0 else "a"]))}},
            {"j": {draw(st.sampled_from(["add", "concat"])): ["a", "b"]}},
        ]
        if draw(st.booleans()):  # resized to the input's size, read when the model runs
            heads.append({"up": {"resize": {"like": "input", "mode": draw(st.sampled_from(["nearest", "bilinear"]))}}})
        layers.append({"heads": {"modules": heads}})
        outputs[draw(st.sampled_from(["0", "head"]))] = draw(st.sampled_from(["heads.a", "heads.b", "heads.j", "heads"]))
    if draw(st.booleans()):  # a grid (HRNet's fuse layers): a numbered container of module lists, identity entries kept
        last = next(iter(layers[-1]))
        rows = [
            {"parallel": [{"identity": {}}, {"conv": {"filters": c, "kernel": 1}}], "merge": "add"},
            {"parallel": [{"conv": {"filters": c, "kernel": 3, "padding": 1}}, {"identity": {}, "from": last}], "merge": "add"},
        ]
        layers.append({"grid": {"modules": rows}})  # row 1's first path reads row 0, its second the grid's input
        outputs["grid"] = "grid.1"
    if draw(st.booleans()):  # a block kind holding containers (named, a numbered one nested, or rows of a grid)
        blocks["mods"], c = _block_modules(draw, c, pieces=True)
        layers.append({"mb": {"block": "mods", "with": {"w": c}}})
    layers += [{"pool": "global_avgpool"}, {"fc": {"dense": {"units": 5}}}]
    spec = {
        "archc": 1, "name": "rand", "input": [c0, size, size],
        "defaults": {"conv": {"bias": draw(st.booleans())}, "batchnorm": {"eps": 1e-5, "momentum": 0.1}},
        "blocks": blocks, "layers": layers,
    }  # fmt: skip
    if outputs:
        spec["outputs"] = {"out": "fc", **outputs}
    return spec


def _block_modules(draw, w: int, pieces: bool = False) -> tuple[dict, int]:
    """A block kind `mods` (w) with a named `modules:` container whose entries read the block's
    tensors and each other, maybe a numbered container nested in it (its entries maybe reading
    earlier ones by number) or a grid of rows, every entry read after it by path, and with
    `pieces` maybe entries of a numbered container written where they are called; and its
    output channels."""
    k = draw(st.sampled_from([1, 3]))
    merge = draw(st.sampled_from(["add", "concat"]))
    entries: list[dict] = [
        {"a": {"conv": {"filters": "w", "kernel": 1}, "from": "input"}},
        {"b": {"conv": {"filters": "w", "kernel": k, "padding": k // 2}, "from": draw(st.sampled_from(["a", "pre"]))}},
        {"j": {merge: ["a", "b"]}},
    ]
    leaves, box = ["box.j"], 2 * w if merge == "concat" else w  # what `out` reads; the container's tensor
    nested = draw(st.sampled_from(["none", "list", "grid"]))
    if nested == "list":  # nn.ModuleList inside the nn.ModuleDict
        inner = [{"conv": {"filters": "w", "kernel": 1}, "from": "a"}, [{"conv": {"filters": "w", "kernel": 1}, "from": "pre"}, draw(st.sampled_from(ACTS))]]
        if draw(st.booleans()):  # an entry reading an earlier one of its numbered container by number
            inner.append({"conv": {"filters": "w", "kernel": 1}, "from": draw(st.sampled_from(["0", "1"]))})
        entries.append({"inner": {"modules": inner}})
        leaves, box = [*leaves, *(f"box.inner.{i}" for i in range(len(inner)))], w
    elif nested == "grid":  # rows of module lists read one by one
        rows = [
            {"parallel": [{"identity": {}, "from": "a"}, {"conv": {"filters": "w", "kernel": 1}, "from": "b"}], "merge": "add"},
            {"parallel": [{"conv": {"filters": "w", "kernel": 3, "padding": 1}, "from": "a"}, {"identity": {}, "from": "b"}], "merge": draw(st.sampled_from(["add", "multiply"]))},
        ]
        entries.append({"rows": {"modules": rows}})
        leaves, box = [*leaves, "box.rows.0", "box.rows.1"], w
    if pieces and draw(st.booleans()):  # a numbered container's entries written where they are called (Res2Net's convs.i), a merge between
        second = draw(st.sampled_from([{"conv": {"filters": "w", "kernel": 3, "padding": 1}}, {"group": [{"conv": {"filters": "w", "kernel": 1}}, "relu"]}]))
        written = [
            {"seq.0": {"conv": {"filters": "w", "kernel": 1}, "from": "pre"}},
            {"mid": {draw(st.sampled_from(["add", "multiply"])): ["seq.0", "pre"]}},
            {"seq.1": second},
        ]
        leaves = [*leaves, "seq.1"]
    else:
        written = []
    layers = [{"pre": {"conv": {"filters": "w", "kernel": 1}}}, {"box": {"modules": entries}}, *written, {"out": {"concat": draw(st.permutations(leaves))}}]
    out = (2 * w if merge == "concat" else w) + w * (len(leaves) - 1)
    if len(leaves) == 1:
        layers[-1] = {"out": {"add": ["box.j", "box.j"]}} if merge == "add" else {"out": {"concat": ["box.a", "box.j"]}}
        out = w if merge == "add" else 3 * w
    if draw(st.booleans()):  # the container read by its name: its last entry
        layers.append({"last": {"concat": ["out", "box"]}})
        out += box
    return {"params": {"w": "int"}, "layers": layers}, out


def _two_inputs(draw, w: int) -> tuple[dict, int]:
    """A block kind with inputs `lo` and `hi` (any sizes: `hi` is resized to `lo`'s), its layers
    reading them by name, one maybe under a condition on their channels; and its output channels."""
    merge = draw(st.sampled_from(["add", "concat"]))
    k = draw(st.sampled_from([1, 3]))
    layers = [
        {"p": {"conv": {"filters": "w", "kernel": 1}, "from": "hi"}},
        {"pa": {"act": draw(st.sampled_from(ACTS))}},
        {"up": {"resize": {"like": "lo", "mode": draw(st.sampled_from(["nearest", "bilinear"]))}}},
        {"q": {"conv": {"filters": "w", "kernel": k, "padding": k // 2}, "from": "lo"}},
        {"j": {merge: ["up", "q"]}},
    ]
    if draw(st.booleans()):
        layers[1]["pa"]["if"] = draw(st.sampled_from(["lo_channels != hi_channels", "lo_channels == hi_channels", "w > 3"]))
    return {"inputs": ["lo", "hi"], "params": {"w": "int"}, "layers": layers}, 2 * w if merge == "concat" else w


def _two_outputs(draw) -> dict:
    """A block kind returning `a` and `b` (each `w` channels at its input's size): `b` reads `a`
    or the input, through a conv or a list; either may come first in its list."""
    a = {"a": {"conv": {"filters": "w", "kernel": 1}}}
    b_body: dict = {"conv": {"filters": "w", "kernel": 3, "padding": 1}} if draw(st.booleans()) else {
        "group": [{"conv": {"filters": "w", "kernel": 1}}, "batchnorm", draw(st.sampled_from(ACTS))]}
    b = {"b": b_body | ({"from": draw(st.sampled_from(["a", "input"]))})}
    layers = [a, b] if b["b"]["from"] == "a" or draw(st.booleans()) else [b, a]
    return {"params": {"w": "int"}, "outputs": ["a", "b"], "layers": layers}


def _lowered(spec_dict):
    import yaml

    text = yaml.safe_dump(spec_dict, sort_keys=False, default_flow_style=None, width=1000)
    try:
        lower(load_spec_text(text, "rand.yaml"))
    except SpecError:
        assume(False)
    return text


@settings(max_examples=40, **SETTINGS)
@given(dataflow_specs())
def test_random_dataflow_specs_agree_in_the_ir_and_pytorch(spec_dict):
    agree(_lowered(spec_dict), keras_too=False)


@settings(max_examples=8, **SETTINGS)
@given(dataflow_specs())
def test_random_dataflow_specs_agree_in_all_three(spec_dict):
    agree(_lowered(spec_dict))


@st.composite
def container_specs(draw):
    """A model whose block kind holds `modules:` containers (_block_modules), at one of two widths."""
    c = draw(st.sampled_from([2, 4]))
    kind, _ = _block_modules(draw, c, pieces=True)
    return {
        "archc": 1, "name": "rand", "input": [3, 8, 8], "defaults": {"conv": {"bias": draw(st.booleans())}},
        "blocks": {"mods": kind},
        "layers": [{"stem": {"conv": {"filters": c, "kernel": 3, "padding": 1}}}, {"mb": {"block": "mods", "with": {"w": c}}}, {"pool": "global_avgpool"}],
    }  # fmt: skip


@settings(max_examples=6, **SETTINGS)
@given(container_specs())
def test_random_block_kinds_with_containers_agree_in_all_three(spec_dict):
    agree(_lowered(spec_dict))


CONDITIONAL_NESTED_READ = """\
archc: 1
name: nest
input: [2, 8, 8]
defaults: {conv: {bias: false}}
blocks:
  k:
    params: {w: int, flag: false}
    layers:
      - l1: {conv: {filters: w, kernel: 1}}
      - l2:
          from: input
          if: not flag
          parallel:
            - {conv: {filters: w, kernel: 1}}
            - parallel:
                - {conv: {filters: w, kernel: 1}}
                - {conv: {filters: w, kernel: 1}, from: l1}
              merge: add
          merge: add
layers:
  - b: {block: k, with: {w: 6}}
"""


def test_a_conditional_module_list_reading_the_tensor_before_it_by_a_nested_path_agrees():
    """A conditional module list first sets its variable to what it passes on (`out = x`); the
    tensor before it, read by a nested row's path (`from: l1`), had been left in that variable,
    so PyTorch's conv read the block's input (2 channels, not 6). Found by
    test_random_dataflow_specs_agree_in_the_ir_and_pytorch."""
    agree(CONDITIONAL_NESTED_READ)
    agree(CONDITIONAL_NESTED_READ.replace("w: 6}", "w: 6, flag: true}"))  # absent: the block passes its input on


# --- several outputs --------------------------------------------------------------------------------

OUTPUTS = """\
archc: 1
name: two_heads
input: [3, 16, 16]
defaults: {conv: {bias: true}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
layers:
  - stem: [{conv: {filters: 8, kernel: 3, padding: 1}}, batchnorm, relu]
  - mid: {conv: {filters: 8, kernel: 3, stride: 2, padding: 1}}
  - act: relu
  - head: {conv: {filters: 5, kernel: 1}}
  - aux: {conv: {filters: 5, kernel: 1}, from: mid}
  - pooled: global_avgpool
  - fc: {dense: {units: 4}}
outputs: {out: head, aux: aux, "0": stem, logits: fc}
"""


def test_several_outputs_are_a_dict_in_their_order():
    graph = agree(OUTPUTS)
    assert [(o.key, o.item, o.shape.as_tuple()) for o in graph.outputs] == [
        ("out", "head", (5, 8, 8)), ("aux", "aux", (5, 8, 8)), ("0", "stem", (8, 16, 16)), ("logits", "fc", (4,)),
    ]  # fmt: skip
    torch_code, keras_code = emit(graph, "torch"), emit(graph, "keras")
    assert "def forward(self, x: Tensor) -> dict[str, Tensor]:" in torch_code
    assert 'return {"out": head, "aux": aux, "0": stem, "logits": fc}' in torch_code
    assert 'inputs, {"out": head, "aux": aux, "0": stem, "logits": fc}, name="two_heads"' in keras_code


def test_an_output_names_a_known_layer():
    bad = OUTPUTS.replace("aux: aux,", "aux: auxx,")
    with pytest.raises(SpecError, match=r"t.yaml:\d+:\d+: unknown tensor 'auxx'.*did you mean 'aux'"):
        lower(load_spec_text(bad, "t.yaml"))


def test_with_outputs_the_last_layer_is_not_one_unless_named():
    with pytest.raises(SpecError, match="layer 'fc' of the model is never read"):
        lower(load_spec_text(OUTPUTS.replace(", logits: fc}", "}"), "t.yaml"))


def test_several_outputs_in_summary_verify_convert_and_the_diagram(tmp_path):
    from archc import convert, verify
    from archc.api import load_module
    from archc.passes.diagram import diagram
    from archc.passes.summary import summarize, to_table

    graph = lower(load_spec_text(OUTPUTS, "t.yaml"))
    report = summarize(graph)
    assert report.to_dict()["outputs"] == {"out": [5, 8, 8], "aux": [5, 8, 8], "0": [8, 16, 16], "logits": [4]}
    assert to_table(report).splitlines()[0] == "two_heads: input (3, 16, 16) -> outputs out (5, 8, 8), aux (5, 8, 8), 0 (8, 16, 16), logits (4,)"

    result = verify.verify(graph)
    assert result.ok and [r.item for r in result.rows if r.item.startswith("output ")] == [
        "output 'out'", "output 'aux'", "output '0'", "output 'logits'",
    ]  # fmt: skip

    for level in ("blocks", "layers"):
        d = diagram(graph, level)
        outs = {e.src: e.dst for e in d.edges if e.dst.startswith("output")}
        assert sorted(outs.values()) == ["output.0", "output.aux", "output.logits", "output.out"], level

    model = load_module(graph, "torch").build_model()
    torch.save(model.state_dict(), tmp_path / "w.pth")
    done = convert.convert(graph, tmp_path / "w.pth", tmp_path / "w.weights.h5")
    assert done.max_abs <= 1e-4 * max(1.0, done.magnitude) and (tmp_path / "w.weights.h5").exists()


@pytest.mark.parametrize("which", ["outputs", "taps and resize", "modules"])
def test_generated_code_with_several_outputs_passes_ruff(tmp_path, which):

    graph = lower(load_spec_text({"outputs": OUTPUTS, "taps and resize": TAPS, "modules": MODULES}[which], "t.yaml"))
    for backend in ("torch", "keras"):
        path = tmp_path / f"{backend}.py"
        path.write_text(emit(graph, backend))
        assert_ruff_clean(path)


# --- names the generated code uses itself --------------------------------------------------------

CODE_NAMES = """\
archc: 1
name: code_names
input: [3, 12, 12]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  unit:
    params: {w: int}
    connectivity: skip
    shortcut: {kind: projection}
    layers:
      - x: {conv: {filters: w, kernel: 1}}
      - identity: batchnorm
      - y: {conv: {filters: w, kernel: 3, padding: 1}, from: x}
      - inputs: {add: [identity, y]}
      - out: relu
layers:
  - x: {conv: {filters: 4, kernel: 3, padding: 1}}
  - out: {block: unit, with: {w: 6}}
  - identity: {conv: {filters: 6, kernel: 1}, from: x}
  - y: {add: [out, identity]}
  - pool: global_avgpool
  - fc: {dense: {units: 3}}
"""


def test_layers_may_have_the_names_of_the_codes_own_locals():
    """`out`, `identity`, `x`, `y`, `inputs` are the generated code's locals: a layer of that
    name is `self.out` and its tensor, read by name, the variable `out_out`."""
    graph = agree(CODE_NAMES)
    assert {"out.x", "out.identity", "out.y", "identity", "x"} <= {n.id for n in graph.nodes}
    assert "out_x = self.x(x)" in emit(graph, "torch")


def test_every_reserved_name_is_reported_at_once():
    bad = CODE_NAMES.replace("params: {w: int}", "params: {w: int, self: 1, forward: 2}").replace("name: code_names", "name: code_names\nparams: {nn: 1}")
    with pytest.raises(SpecError) as e:
        lower(load_spec_text(bad, "t.yaml"))
    text = str(e.value)
    assert text.count("used by the generated code") == 2 and all(f"'{n}'" in text for n in ("nn", "self", "forward")), text


# --- resizing to another tensor's size -----------------------------------------------------------

RESIZE = """\
archc: 1
name: seg
input: [3, 20, 18]
defaults: {conv: {bias: true}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  aspp_pool:                       # torchvision's ASPPPooling: pool, 1x1 conv, back to the map's size
    params: {width: int}
    layers:
      - pool: {adaptive_avgpool: {size: 1}}
      - conv: {conv: {filters: width, kernel: 1}}
      - act: relu
      - back: {resize: {like: input, mode: MODE}}
layers:
  - stem: [{conv: {filters: 4, kernel: 3, padding: 1}}, batchnorm, relu]
  - down: {conv: {filters: 8, kernel: 3, stride: 2, padding: 1}}
  - deeper: {conv: {filters: 8, kernel: 3, stride: 2, padding: 1}}
  - pooled: {block: aspp_pool, with: {width: 8}}
  - joined: {concat: [deeper, pooled]}
  - up: {resize: {like: stem, mode: MODE}}
  - head: {conv: {filters: 3, kernel: 1}}
"""


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_resize_to_another_tensors_size(mode):
    """The size is read when the model runs: PyTorch's model works at any input size, and
    both backends agree with the IR (Keras' nearest gathers PyTorch's pixels, floor(i * in / out))."""
    graph = agree(RESIZE.replace("MODE", mode))
    assert graph.output_shape.as_tuple() == (3, 20, 18)
    assert next(n for n in graph.nodes if n.id == "up").inputs == ("joined", "stem.2")
    source = emit(graph, "torch")
    # nearest is F.interpolate's default mode: left out
    corners = ', mode="bilinear", align_corners=False' if mode == "bilinear" else ""
    squashed = " ".join(source.split()).replace("( ", "(").replace(" )", ")")  # lines split as ruff splits them
    assert f"x = F.interpolate(joined, size=stem.shape[-2:]{corners})" in squashed
    assert f"out = F.interpolate(out, size=x.shape[-2:]{corners})" in squashed  # the block's input
    assert "import torch.nn.functional as F" in source
    model = module_from(source, "seg").build_model().eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 23, 17)).shape) == (1, 3, 23, 17)  # not a multiple of the stride


def test_resize_reads_a_known_map():
    with pytest.raises(SpecError, match="unknown tensor 'stm'.*did you mean 'stem'"):
        lower(load_spec_text(RESIZE.replace("MODE", "nearest").replace("like: stem", "like: stm"), "t.yaml"))


# --- taps: reading an entry of a model-level group from outside it ---------------------------------

TAPS = """\
archc: 1
name: tapped
input: [3, 20, 18]
params: {aux: true}
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
blocks:
  unit:
    params: {w: int, stride: 1}
    connectivity: skip
    shortcut: {kind: projection, name: downsample}
    layers:
      - conv1: {conv: {filters: w, kernel: 3, stride: stride, padding: 1}}
      - bn1: batchnorm
      - relu: relu
layers:
  - backbone:
      - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}
      - relu: relu
      - layer1: {stage: unit, repeat: 2, with: {w: 8}}
      - relu_again: relu
      - layer2: {stage: unit, repeat: 2, with: {w: 16}, first: {stride: 2}}
  - features:
      from: backbone.layer1
      group:
        - {conv: {filters: 8, kernel: 1}}
        - relu
        - {conv: {filters: 8, kernel: 3, stride: 2, padding: 1}}
  - head: {conv: {filters: 5, kernel: 1}}
  - logits: {resize: {like: input, mode: bilinear}}
  - aux_head: {conv: {filters: 5, kernel: 1}, from: backbone.layer1, if: aux}
  - low: {add: [features.0, backbone.relu_again]}
  - aux_logits: {resize: {like: backbone.relu, mode: nearest}, if: aux, from: aux_head}
outputs: {out: logits, aux: aux_logits, low: low, "1": backbone.layer1, deep: backbone}
"""


@pytest.mark.parametrize("aux", [True, False])
def test_taps_read_entries_of_groups(aux):
    """`from: backbone.layer1`, a merge of `features.0` and `backbone.relu_again`, an output
    naming a tap: IR = PyTorch = Keras; an output whose layer is absent is left out."""
    graph = agree(TAPS.replace("aux: true", f"aux: {str(aux).lower()}"))
    assert [o.key for o in graph.outputs] == ["out", "aux", "low", "1", "deep"] if aux else ["out", "low", "1", "deep"]
    assert graph.tapped() == {"backbone": {"layer1", "relu_again", *(["relu"] if aux else [])}, "features": {"0"}}
    source = emit(graph, "torch")
    assert ("x = self.backbone.relu(x)" in source) != aux  # a tapped entry gets its variable
    assert ("backbone_relu = self.backbone.relu(x)" in source) == aux
    assert "features_0 = self.features[0](backbone_layer1)" in source
    assert "x = self.features[1:](features_0)" in source
    assert source.split("relu_again=")[1].startswith("nn.ReLU()")  # its input is a tap's: never in place
    assert "relu=nn.ReLU(inplace=True)" in source  # where nothing reads its input again, in place
    model = module_from(source, "tapped").build_model().eval()
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 3, 23, 17))["out"].shape) == (1, 5, 23, 17)


def test_a_tap_names_an_entry_of_an_earlier_group():
    bad = TAPS.replace("from: backbone.layer1,", "from: backbone.layer3,")
    with pytest.raises(SpecError, match=r"unknown tensor 'backbone.layer3'.*did you mean 'backbone.layer\d'"):
        lower(load_spec_text(bad, "t.yaml"))
    with pytest.raises(SpecError, match=r"unknown tensor 'backbone.layer1.0'.*did you mean 'backbone.layer1'"):
        lower(load_spec_text(TAPS.replace("from: backbone.layer1,", "from: backbone.layer1.0,"), "t.yaml"))  # a direct entry
    with pytest.raises(SpecError, match=r"layer 'backbone_relu' has the name the generated code gives the tap 'backbone.relu'"):
        lower(load_spec_text(TAPS.replace("  - low:", "  - backbone_relu: relu\n  - low:"), "t.yaml"))


def test_taps_are_verified_where_the_group_runs_in_pieces():
    from archc import verify

    report = verify.verify(lower(load_spec_text(TAPS, "t.yaml")), batch=1)
    assert report.ok and not report.first_disagreement()
    assert "backbone" in [row.item for row in report.rows]


# --- modules: containers wired by dataflow (nn.ModuleDict / nn.ModuleList) -------------------------

MODULES = """\
archc: 1
name: fpn_t
input: [3, 33, 29]
defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
layers:
  - body:
      - conv1: {conv: {filters: 8, kernel: 3, stride: 2, padding: 1}}
      - bn1: batchnorm
      - relu: relu
      - layer1: {conv: {filters: 8, kernel: 3, padding: 1}}
      - layer2: {conv: {filters: 12, kernel: 3, stride: 2, padding: 1}}
      - layer3: {conv: {filters: 16, kernel: 3, stride: 2, padding: 1}}
  - fpn:
      modules:
        - inner_blocks:
            modules:
              - {from: body.layer1, group: [{conv: {filters: 6, kernel: 1, bias: true}}]}
              - {from: body.layer2, group: [{conv: {filters: 6, kernel: 1, bias: true}}]}
              - {from: body.layer3, group: [{conv: {filters: 6, kernel: 1, bias: true}}]}
        - top2: {resize: {like: inner_blocks.1, mode: nearest}, from: inner_blocks.2}
        - merged1: {add: [inner_blocks.1, top2]}
        - top1: {resize: {like: inner_blocks.0, mode: nearest}}
        - merged0: {add: [inner_blocks.0, top1]}
        - layer_blocks:
            modules:
              - {from: merged0, group: [{conv: {filters: 6, kernel: 3, padding: 1, bias: true}}]}
              - {from: merged1, group: [{conv: {filters: 6, kernel: 3, padding: 1, bias: true}}]}
              - {from: inner_blocks.2, group: [{conv: {filters: 6, kernel: 3, padding: 1, bias: true}}]}
  - pool: {maxpool: {kernel: 1, stride: 2}, from: fpn.layer_blocks.2}
outputs: {"0": fpn.layer_blocks.0, "1": fpn.layer_blocks.1, "2": fpn.layer_blocks.2, pool: pool}
"""


def test_modules_containers_are_called_entry_by_entry():
    """An FPN in miniature: module lists read at different places of forward, merges and
    resizes among them, outputs naming their entries: IR = PyTorch = Keras, torchvision's keys."""
    graph = agree(MODULES)
    source = emit(graph, "torch")
    assert "self.fpn = nn.ModuleDict(" in source and "inner_blocks=nn.ModuleList(" in source
    assert "fpn_inner_blocks_2 = self.fpn.inner_blocks[2](body_layer3)" in source
    assert "fpn_layer_blocks_2 = self.fpn.layer_blocks[2](fpn_inner_blocks_2)" in source
    model = module_from(source, "fpn").build_model()
    assert "fpn.layer_blocks.2.0.weight" in model.state_dict()
    assert [o.key for o in graph.outputs] == ["0", "1", "2", "pool"]


def test_modules_containers_are_checked():
    with pytest.raises(SpecError, match=r"named entries \(nn.ModuleDict\) or numbered ones \(nn.ModuleList\), not both"):
        lower(load_spec_text(MODULES.replace("        - top2:", "        - {conv: {filters: 6, kernel: 1}}\n        - top2:"), "t.yaml"))
    with pytest.raises(SpecError, match=r"numbered `modules:` container are modules"):
        bad = MODULES.replace("              - {from: body.layer3, group:", "              - {resize: {like: body.layer1}}\n              - {from: body.layer3, group:")
        lower(load_spec_text(bad, "t.yaml"))
    with pytest.raises(SpecError, match=r"unknown tensor 'fpn.layer_blocks.3'"):
        lower(load_spec_text(MODULES.replace("from: fpn.layer_blocks.2}", "from: fpn.layer_blocks.3}"), "t.yaml"))
    block_kind = MODULES.replace("layers:\n  - body:", "blocks:\n  k:\n    layers:\n      - m: {modules: [relu]}\nlayers:\n  - k0: {block: k}\n  - body:", 1)
    k0 = next(i for i in lower(load_spec_text(block_kind, "t.yaml")).body if i.name == "k0")  # a block kind's (tests/test_block_modules.py)
    assert [(c.name, c.dataflow) for c in k0.children] == [("m", True)]


def test_modules_containers_are_verified_entry_by_entry():
    from archc import verify

    report = verify.verify(lower(load_spec_text(MODULES, "t.yaml")), batch=1)
    assert report.ok and not report.first_disagreement()
    assert {"fpn.inner_blocks.0", "fpn.layer_blocks.2", "pool"} <= {row.item for row in report.rows}



# --- recursive block kinds ---------------------------------------------------------------------------


@settings(max_examples=12, **SETTINGS)
@given(st.data())
def test_random_recursive_kinds_agree_in_all_three(data):
    """The generator's recursive kind alone, so that every example has one (and Keras runs it)."""
    kind = recursive_kind(data.draw)
    depth = data.draw(st.integers(1, 3))
    text = spec(yaml.safe_dump({"rec": kind}, sort_keys=False), f"- top: {{block: rec, with: {{w: 4, depth: {depth}}}}}\n")
    graph = agree(text)
    assert len([n for n in graph.nodes if n.id.endswith(".a")]) == depth  # one level per depth, each its own `a`
