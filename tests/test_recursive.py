"""Recursive block kinds: a kind that contains itself under an `if:` that ends the recursion,
typed by its declared `out_channels` / `out_stride`, its instance chain bounded by
MAX_BLOCK_DEPTH. specs/unet_recursive.yaml is specs/unet.yaml written as one recursive level."""

import re
import textwrap

import numpy as np
import pytest
from conftest import (
    ROOT,
    ZOO,
    assert_ruff_clean,
    graph_of,
    load_module,
    need,
)
from test_differential import agree, spec

from archc import api, verify
from archc.backends import emit
from archc.errors import SpecError
from archc.lower import limits, lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")

FLAT, RECURSIVE = "specs/unet.yaml", "specs/unet_recursive.yaml"


def unet_counts(depth: int, base: int = 64, n_classes: int = 2, in_channels: int = 3) -> tuple[int, int]:
    """U-Net's (trainable, non-trainable) counts by hand: per level k (filters f = base * 2**k) a
    double conv (two bias-free 3x3 convs, two batch norms: 2f trainable and 2f statistics each);
    below the deepest level a 2x2 transposed conv from 2f to f with bias and a double conv from
    2f (the concatenation); a 1x1 conv head with bias."""
    trainable = non_trainable = 0

    def double_conv(c_in: int, f: int) -> None:
        nonlocal trainable, non_trainable
        trainable += 9 * c_in * f + 9 * f * f + 4 * f
        non_trainable += 4 * f

    c = in_channels
    for k in range(depth):
        f = base * 2**k
        double_conv(c, f)
        c = f
        if k < depth - 1:
            trainable += 4 * (2 * f) * f + f  # up
            double_conv(2 * f, f)  # conv_up
    trainable += base * n_classes + n_classes
    return trainable, non_trainable


def test_the_formula_gives_the_published_unet():
    assert unet_counts(5) == ZOO[FLAT] == (31_037_698, 11_776)


def test_unet_recursive_has_the_flat_unets_counts():
    for spec_path in (FLAT, RECURSIVE):
        counts = graph_of(spec_path).counts
        assert (counts.trainable, counts.non_trainable) == ZOO[FLAT]


def test_unet_recursive_is_one_class_and_one_function_that_call_themselves():
    torch_code = (ROOT / "generated/unet_recursive_torch.py").read_text()
    keras_code = (ROOT / "generated/unet_recursive_keras.py").read_text()
    assert torch_code.count("class Level(nn.Module):") == 1
    assert "self.inner = Level(filters, filters=inner_channels, depth=depth - 1)" in torch_code
    assert keras_code.count("def level(") == 1
    assert 'x = level(\n            x, filters, filters=inner_channels, depth=depth - 1, name=f"{name}_inner"' in keras_code


def test_unet_recursive_computes_the_flat_unet_with_its_weights():
    """The flat spec's weights, mapped in module order (the same shapes in the same order),
    give the recursive spec's PyTorch the flat spec's outputs."""
    flat = load_module(ROOT / "generated/unet_torch.py").build_model().eval()
    rec = load_module(ROOT / "generated/unet_recursive_torch.py").build_model().eval()
    flat_state, rec_state = flat.state_dict(), rec.state_dict()
    assert [t.shape for t in flat_state.values()] == [t.shape for t in rec_state.values()]
    assert list(rec_state)[:3] == ["levels.conv.conv1.weight", "levels.conv.bn1.weight", "levels.conv.bn1.bias"]
    assert "levels.inner.inner.inner.inner.conv.conv2.weight" in rec_state  # the fifth level
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, value in flat_state.items():  # BatchNorm statistics away from (0, 1)
            if name.endswith(("running_mean", "running_var")):
                value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
    rec.load_state_dict(dict(zip(rec_state, flat_state.values())), strict=True)
    x = torch.randn(2, 3, 48, 64, generator=generator)
    with torch.no_grad():
        want, got = flat(x), rec(x)
    assert got.shape == (2, 2, 48, 64)
    assert torch.equal(got, want)


def test_unet_recursive_verifies():
    report = verify.verify(graph_of(RECURSIVE, "input=[3, 32, 32]"), batch=1)
    assert report.ok and not any(r.problem for r in report.rows), verify.to_table(report)


@pytest.mark.parametrize("depth", [1, 3])
def test_other_depths_count_as_the_formula_says(depth):
    graph = graph_of(RECURSIVE, f"params.depth={depth}", "input=[3, 32, 32]")
    want = unet_counts(depth)
    assert (graph.counts.trainable, graph.counts.non_trainable) == want
    with torch.device("meta"):
        model = api.load_module(graph, "torch").build_model()
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (sum(p.numel() for p in model.parameters()), buffers) == want
    kmodel = api.load_module(graph, "keras").build_model()
    k_counts = tuple(sum(int(np.prod(w.shape)) for w in ws) for ws in (kmodel.trainable_weights, kmodel.non_trainable_weights))
    assert k_counts == want


# --- the language -------------------------------------------------------------------------------

ENDLESS = """\
level:
  params: {w: int, depth: int}
  out_channels: w
  layers:
    - conv: {conv: {filters: w, kernel: 3, padding: 1}}
    - inner: {block: level, with: {w: w, depth: depth + 1}, if: "depth > 0"}
"""


@pytest.mark.parametrize("limit", [None, 40])
def test_a_recursion_that_does_not_end_stops_at_the_nesting_limit(limit, monkeypatch):
    """`depth + 1` under `if: depth > 0` never ends: an error at MAX_BLOCK_DEPTH instances deep
    (raised or not), not Python's RecursionError."""
    if limit is not None:
        monkeypatch.setattr(limits, "MAX_BLOCK_DEPTH", limit)
    text = spec(ENDLESS, "- top: {block: level, with: {w: 4, depth: 1}}\n")
    with pytest.raises(SpecError, match=f"block 'level' contains itself more than {limits.MAX_BLOCK_DEPTH} deep .*recursion does not end"):
        lower(load_spec_text(text, "t.yaml"))
    unconditional = text.replace(', if: "depth > 0"', "")
    with pytest.raises(SpecError, match="recursion does not end"):
        lower(load_spec_text(unconditional, "t.yaml"))


def test_the_recursion_may_end_exactly_at_the_nesting_limit():
    """Levels depth, depth - 1, ..., 0: MAX_BLOCK_DEPTH instances deep, one more is refused."""
    ending = ENDLESS.replace("depth + 1", "depth - 1")
    top = "- top: {{block: level, with: {{w: 4, depth: {}}}}}\n"
    graph = lower(load_spec_text(spec(ending, top.format(limits.MAX_BLOCK_DEPTH - 1)), "t.yaml"))
    assert sum(n.id.endswith(".conv") for n in graph.nodes) == limits.MAX_BLOCK_DEPTH
    with pytest.raises(SpecError, match="recursion does not end"):
        lower(load_spec_text(spec(ending, top.format(limits.MAX_BLOCK_DEPTH)), "t.yaml"))


MUTUAL = """\
even:
  params: {w: int, depth: int}
  out_channels: w * 2
  layers:
    - conv: {conv: {filters: w, kernel: 1}}
    - deeper: {block: odd, with: {w: w, depth: depth - 1}, if: "depth > 0"}
    - cat: {concat: [conv, deeper], if: "depth > 0"}
    - proj: {conv: {filters: w * 2, kernel: 1}}
odd:
  params: {w: int, depth: int}
  layers:
    - conv: {conv: {filters: w, kernel: 3, padding: 1}}
    - bn: batchnorm
    - deeper: {block: even, with: {w: w, depth: depth - 1}, if: "depth > 0"}
    - act: relu
"""


def test_kinds_that_contain_each_other():
    """`even` reaches itself through `odd`: only `even` declares its output channels. (Its
    layers are not named `odd` and `even`: Keras would read the function's name as the
    tensor's variable, a clash of any block kind, recursive or not.)"""
    graph = agree(spec(MUTUAL, "- top: {block: even, with: {w: 3, depth: 3}}\n"))
    paths = [n.id for n in graph.nodes if n.op.weight_names()]
    assert "top.deeper.deeper.deeper.conv" in paths and "top.deeper.deeper.deeper.deeper.conv" not in paths


DOWN = """\
down:
  params: {w: int, depth: int}
  connectivity: skip
  shortcut: {kind: projection, batchnorm: true}
  out_channels: w
  out_stride: 2 ** depth
  layers:
    - conv: {conv: {filters: w, kernel: 3, stride: 2, padding: 1}}
    - bn: batchnorm
    - inner: {block: down, with: {w: w, depth: depth - 1}, if: "depth > 1"}
"""


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_recursive_skip_block_switches_its_shortcut_by_its_declaration(depth):
    """Each level's projection shortcut strides by the declared `out_stride` of the levels it
    holds, and the inner instances' `shape_changes` switches follow from the declaration."""
    graph = agree(spec(DOWN, f"- top: {{block: down, with: {{w: 6, depth: {depth}}}}}\n"))
    shortcuts = {n.id: n.op.stride for n in graph.nodes if n.id.endswith("downsample.0")}
    assert shortcuts == {"top" + ".inner" * k + ".downsample.0": 2 ** (depth - k) for k in range(depth)}


def test_a_recursive_kind_declares_its_output_channels():
    undeclared = ENDLESS.replace("  out_channels: w\n", "")
    with pytest.raises(SpecError, match=r"block 'level' contains itself \(level -> level\); .* add `out_channels:`") as e:
        lower(load_spec_text(spec(undeclared, "- top: {block: level, with: {w: 4, depth: 1}}\n"), "t.yaml"))
    assert e.value.where.line == 11  # the recursive instance


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ("out_channels: w * 2", "block 'level' declares out_channels w * 2 = 8, but this instance gives 4 channels"),
        ("out_channels: w\n  out_stride: 2", "block 'level' declares out_stride 2 = 2, but this instance gives 12->12x12->12 (map size)"),
        ("out_channels: width", "`out_channels` may use the block's parameters and its inputs' channels; unknown: width"),
    ],
)
def test_a_declaration_is_checked_on_every_instance(declared, message):
    ending = ENDLESS.replace("depth + 1", "depth - 1").replace("out_channels: w", declared)
    with pytest.raises(SpecError, match=re.escape(message)):
        lower(load_spec_text(spec(ending, "- top: {block: level, with: {w: 4, depth: 2}}\n"), "t.yaml"))


def test_a_non_recursive_kind_may_declare_its_signature_too():
    plain = textwrap.dedent("""\
        unit:
          params: {w: int}
          out_channels: w * 2
          layers:
            - conv: {conv: {filters: w * 2, kernel: 1}}
        """)
    agree(spec(plain, "- u: {block: unit, with: {w: 3}}\n"), keras_too=False)
    with pytest.raises(SpecError, match="declares out_channels w \\* 2 = 6, but this instance gives 3 channels"):
        lower(load_spec_text(spec(plain.replace("filters: w * 2", "filters: w"), "- u: {block: unit, with: {w: 3}}\n"), "t.yaml"))


def test_generated_code_of_recursive_kinds_passes_ruff(tmp_path):
    for name, blocks, top in [("mutual", MUTUAL, "even, with: {w: 3, depth: 3}"), ("down", DOWN, "down, with: {w: 6, depth: 2}")]:
        graph = lower(load_spec_text(spec(blocks, f"- top: {{block: {top}}}\n"), "t.yaml"))
        for backend in ("torch", "keras"):
            path = tmp_path / f"{name}_{backend}.py"
            path.write_text(emit(graph, backend))
            assert_ruff_clean(path)
