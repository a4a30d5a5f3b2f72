"""Where Keras has no layer for what PyTorch computes, the Keras backend emits an exact
equivalent instead of refusing (or, worse, passing `check` and failing in build_model):

- a conv with stride > 1 and dilation > 1 (Keras' Conv2D refuses the pair): the conv at
  stride 1, then every stride-th output (`<name>_subsample`); the weights stay on the conv;
- a depthwise conv padded other than Keras' 'same': a ZeroPadding2D before it, as a conv;
- max pooling with padding of a map that may be negative: -inf padding (NegInfPadding2D),
  as PyTorch pads it;
- average pooling with ceil_mode: the floor-mode pool where no window is partial, and
  PaddedAveragePooling2D (each window's mean over the pixels it counts) where one is, or
  where the padding does not count (count_include_pad: false) other than as Keras' 'same'.

PyTorch's modules are the reference: every model here is run in both frameworks.
"""

import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, assert_ruff_clean, need

from archc import api
from archc.backends import check, emit
from archc.cli import main
from archc.errors import SpecError
from archc.interop import channels_first, channels_last
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")
interop = need("archc.interop")

DILATED = """\
archc: 1
name: dilated
input: [3, 40, 37]
defaults:
  conv: {bias: true}
blocks:
  unit:
    params: {stride: 1, dilation: 1}
    layers:
      - conv: {conv: {filters: 4, kernel: 3, stride: stride, padding: dilation, dilation: dilation}}
      - relu: relu
  plain:
    params: {stride: 1, dilation: 1}
    layers:
      - conv: {conv: {filters: 4, kernel: 3, stride: stride, padding: dilation, dilation: dilation}}
layers:
  - conv1: {conv: {filters: 4, kernel: 3, stride: 2, padding: 2, dilation: 2}}
  - a: {block: unit, with: {stride: 2, dilation: 2}}
  - b: {block: unit, with: {stride: 1, dilation: 2}}
  - c: {block: unit, with: {stride: 2}}
  - d: {block: unit}
  - e: {block: plain, with: {dilation: 2}}
  - f: {block: plain, with: {stride: 2}}
  - conv2: {conv: {filters: 4, kernel: 3, stride: 3, padding: 2, dilation: 2}}
"""

DEPTHWISE = """\
archc: 1
name: depthwise
input: [4, 15, 14]
defaults:
  conv: {bias: true}
blocks:
  dw:
    params: {kernel: 3, stride: 1, padding: 1}
    layers:
      - conv: {depthwise_conv: {kernel: kernel, stride: stride, padding: padding}}
  same:
    params: {kernel: 3, stride: 1}
    layers:
      - conv: {depthwise_conv: {kernel: kernel, stride: stride, padding: "kernel // 2 if stride == 1 else 0"}}
layers:
  - a: {depthwise_conv: {kernel: 3, stride: 2, padding: 1}}
  - b: {block: dw}
  - c: {block: dw, with: {stride: 2}}
  - d: {block: same, with: {kernel: 5}}
  - e: {block: same, with: {stride: 2}}
"""

# One pool on an input that is negative in places (all negative in test_pools_match_pytorch),
# 7 x 8: kernel 3, stride 2, padding 1 with ceil_mode gives 4 rows (whole windows) and 5
# columns (the last one partial); kernel 2, stride 2 gives 4 rows (the last partial), 4 columns.
POOL = """\
archc: 1
name: pool
input: [2, 7, 8]
blocks:
  maxp:
    params: {p: 1}
    layers:
      - pool: {maxpool: {kernel: 3, stride: 2, padding: p}}
  avgp:
    params: {p: 1, s: 2}
    layers:
      - pool: {avgpool: {kernel: 3, stride: s, padding: p, count_include_pad: false}}
  avgc:
    params: {s: 2}
    layers:
      - pool: {avgpool: {kernel: 2, stride: s, ceil_mode: true, count_include_pad: false}}
layers:
  - LAYER
"""
POOLS = {  # the layer, and its Keras form
    "mp": ("{maxpool: {kernel: 3, stride: 2, padding: 1}}", 'x = NegInfPadding2D(1, name="mp_pad")(x)'),
    "mp_ceil": (
        "{maxpool: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}}",
        'x = NegInfPadding2D(((1, 1), (1, 2)), name="mp_ceil_pad")(x)',
    ),
    "mp_block": ("{block: maxp}", 'x = NegInfPadding2D(p, name=f"{name}_pool_pad")(x)'),
    "ap_excl": (
        "{avgpool: {kernel: 3, stride: 2, padding: 1, count_include_pad: false}}",
        'x = PaddedAveragePooling2D(3, strides=2, padding=1, name="ap_excl")(x)',
    ),
    "ap_ceil": (
        "{avgpool: {kernel: 2, stride: 2, ceil_mode: true}}",
        'x = PaddedAveragePooling2D(2, strides=2, padding=((0, 1), (0, 0)), name="ap_ceil")(x)',
    ),
    "ap_ceil_pad": (  # the padding counts (a ZeroPadding2D), the partial column's extra does not
        "{avgpool: {kernel: 3, stride: 2, padding: 1, ceil_mode: true}}",
        'x = layers.ZeroPadding2D(1, name="ap_ceil_pad_pad")(x)\n'
        '    x = PaddedAveragePooling2D(3, strides=2, padding=((0, 0), (0, 1)), name="ap_ceil_pad")(x)',
    ),
    "ap_ceil_excl": (
        "{avgpool: {kernel: 3, stride: 2, padding: 1, ceil_mode: true, count_include_pad: false}}",
        'x = PaddedAveragePooling2D(3, strides=2, padding=((1, 1), (1, 2)), name="ap_ceil_excl")(x)',
    ),
    "ap_block": ("{block: avgp}", 'x = PaddedAveragePooling2D(3, strides=s, padding=p, name=f"{name}_pool")(x)'),
    # timm's ResNet-D shortcut pool in a block kind: the helper finds the partial row on its input
    "ap_block_ceil": ("{block: avgc}", 'x = PaddedAveragePooling2D(2, strides=s, padding=0, ceil_mode=True, name=f"{name}_pool")(x)'),
    "ap_block_s1": ("{block: avgp, with: {p: 0, s: 1}}", 'x = avgp(x, 2, p=0, s=1, name="ap_block_s1")'),
}


def squash(code):
    """Code without its layout (ruff's line breaks)."""
    return "".join(code.split()).replace(",)", ")")


def pool_spec(name):
    return POOL.replace("LAYER", f"{name}: {POOLS[name][0]}")


def graph_of(text, name="spec.yaml"):
    return lower(load_spec_text(textwrap.dedent(text), name))


def run(graph, x):
    """Each model-level item's output in PyTorch and in Keras (NCHW), on the input x (NCHW),
    with the same random weights."""
    t_model = api.load_module(graph, "torch").build_model().eval()
    k_model = api.load_module(graph, "keras").build_model()
    verify.randomize(t_model, graph, seed=0)
    interop.torch_to_keras(t_model, k_model, graph)
    items = [item.name for item in graph.body]
    outs = {}
    hooks = [t_model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: outs.__setitem__(n, o)) for n in items]
    with torch.no_grad():
        t_model(torch.from_numpy(x))
    for h in hooks:
        h.remove()
    nodes = {n.id: n for n in graph.nodes}
    layers = [nodes[item.output].op.keras_output(interop.keras_name(item.output)) for item in graph.body]
    probe = keras.Model(k_model.input, [k_model.get_layer(name).output for name in layers])
    got = probe(channels_last(x))
    got = got if isinstance(got, (list, tuple)) else [got]
    return {n: (outs[n].numpy(), channels_first(np.asarray(g))) for n, g in zip(items, got)}


# --- conv: stride and dilation ---------------------------------------------------------------


def test_strided_dilated_conv_builds_and_matches():
    graph = graph_of(DILATED)
    check(graph)  # both backends
    src = emit(graph, "keras")
    model = api.load_module(graph, "keras").build_model()  # Keras refused strides=2 with dilation_rate=2 here
    names = {layer.name for layer in model.layers}
    assert {"conv1_subsample", "a_conv_subsample", "conv2_subsample"} <= names
    assert not {"b_conv_subsample", "c_conv_subsample", "d_conv_subsample"} & names
    # the weights are the conv's, with PyTorch's layout transposed: interop is unchanged
    assert [w.shape for w in model.get_layer("conv1").get_weights()] == [(3, 3, 3, 4), (4,)]
    assert 'layers.MaxPooling2D(1, strides=3, name="conv2_subsample")' in src
    unit = src[src.index("def unit(") : src.index("def plain(")]
    assert "strides=stride if dilation == 1 else 1," in unit
    assert '    if stride > 1 and dilation > 1:\n        x = layers.MaxPooling2D(1, strides=stride, name=f"{name}_conv_subsample")(x)\n' in unit
    # no instance of `plain` has both: its conv is Keras' strided one, as written
    plain = src[src.index("def plain(") : src.index("def build_model(")]
    assert "strides=stride," in plain and "subsample" not in plain
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
    assert {"conv1", "a", "b", "c", "e", "f", "conv2"} <= {r.item for r in report.rows}


def test_strided_dilated_conv_weights_round_trip():
    graph = graph_of(DILATED)
    t_model = api.load_module(graph, "torch").build_model()
    verify.randomize(t_model, graph, seed=1)
    k_model = api.load_module(graph, "keras").build_model()
    interop.torch_to_keras(t_model, k_model, graph)
    copy = api.load_module(graph, "torch").build_model()
    interop.keras_to_torch(k_model, copy, graph)
    for key, value in t_model.state_dict().items():
        assert torch.equal(value, copy.state_dict()[key]), key


def test_depthwise_conv_padding():
    """Padding 1 at stride 2 (and a block kind where one instance has it): a ZeroPadding2D,
    then Keras' unpadded DepthwiseConv2D; a block kind whose every instance pads 'same' or
    not at all keeps keras.applications' `padding="same" if ... else "valid"`."""
    graph = graph_of(DEPTHWISE)
    check(graph)
    src = emit(graph, "keras")
    assert 'x = layers.ZeroPadding2D(1, name="a_pad")(x)' in src
    dw = src[src.index("def dw(") : src.index("def same(")]
    assert 'x = layers.ZeroPadding2D(padding, name=f"{name}_conv_pad")(x)' in dw and "padding=" not in dw.split("DepthwiseConv2D")[1]
    same = src[src.index("def same(") : src.index("def build_model(")]
    assert 'padding="same" if stride == 1 else "valid",' in same and "ZeroPadding2D" not in same
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
    assert {r.item for r in report.rows} >= {"a", "b", "c", "d", "e"}


# --- pooling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(POOLS))
def test_pools_match_pytorch(name):
    """On an all-negative input, zero padding would win every border window of a max pool;
    the partial windows of ceil_mode divide by fewer pixels than the window's size."""
    graph = graph_of(pool_spec(name))
    src = emit(graph, "keras")
    assert squash(POOLS[name][1]) in squash(src), src
    x = -1 - np.abs(np.random.default_rng(0).standard_normal((2, 2, 7, 8))).astype("float32")
    ((want, got),) = run(graph, x).values()
    assert want.shape == got.shape and np.abs(want - got).max() <= 1e-6
    if name == "mp":
        assert want.max() < 0  # what zero padding would have made 0
    if name in ("ap_ceil", "ap_block_ceil"):  # the last row averages one input row (divisor 1 x 2), not a 2 x 2 window
        last = x[:, :, 6:7, 0:2].mean(axis=(2, 3))
        assert np.allclose(want[:, :, 3, 0], last) and not np.allclose(want[:, :, 3, 0], last / 2)


def test_ceil_mode_without_partial_windows_is_the_floor_pool():
    """Input 7 x 7, kernel 3, stride 2, padding 1: ceil_mode gives 4 windows, as floor mode
    does, all inside the padded input: Keras' own pooling, no helper."""
    graph = graph_of(pool_spec("ap_ceil_pad").replace("input: [2, 7, 8]", "input: [2, 7, 7]"))
    src = emit(graph, "keras")
    assert 'x = layers.ZeroPadding2D(((1, 1), (1, 1)), name="ap_ceil_pad_pad")(x)' in src
    assert 'x = layers.AveragePooling2D(3, strides=2, name="ap_ceil_pad")(x)' in src and "Padded" not in src
    x = np.random.default_rng(1).standard_normal((2, 2, 7, 7)).astype("float32")
    ((want, got),) = run(graph, x).values()
    assert np.abs(want - got).max() <= 1e-6


@pytest.mark.parametrize("include", [True, False])
def test_partial_rows_and_whole_columns(include):
    """9 x 11, kernel 3, stride 3, padding 1, ceil_mode: 4 rows, the last partial; 4 columns,
    all whole, the last padding column unread (so Keras pads it nowhere)."""
    layer = "{avgpool: {kernel: 3, stride: 3, padding: 1, ceil_mode: true, count_include_pad: %s}}" % str(include).lower()
    graph = graph_of(POOL.replace("input: [2, 7, 8]", "input: [2, 9, 11]").replace("LAYER", f"ap: {layer}"))
    padding = "((0, 1), (0, 0))" if include else "((1, 2), (1, 0))"
    assert squash(f'PaddedAveragePooling2D(3, strides=3, padding={padding}, name="ap")') in squash(emit(graph, "keras"))
    x = np.random.default_rng(2).standard_normal((2, 2, 9, 11)).astype("float32")
    ((want, got),) = run(graph, x).values()
    assert want.shape == got.shape == (2, 2, 4, 4) and np.abs(want - got).max() <= 1e-6


def test_layer_named_like_a_parameter():
    """A block kind's layer named like one of its parameters (timm's `se` gate under
    `if: se > 0`, `se` its reduction) gets a Keras variable of its own: the condition still
    reads the parameter (a KerasTensor in `if` was a TypeError)."""
    graph = graph_of(
        """
        archc: 1
        name: shadow
        input: [4, 5, 5]
        blocks:
          unit:
            params: {se: 0}
            layers:
              - conv: {conv: {filters: 4, kernel: 1, bias: true}}
              - se: {conv: {filters: 4, kernel: 1, bias: true}, if: se > 0}
              - shortcut: {conv: {filters: 4, kernel: 1, bias: true}, from: input}
              - add: {add: [se, shortcut]}
        layers:
          - a: {block: unit, with: {se: 2}}
          - b: {block: unit}
        """
    )
    src = emit(graph, "keras")
    assert "    out_se = x\n    if se > 0:\n" in src and "([out_se, shortcut])" in src
    report = verify.verify(graph)
    assert report.ok and {"a", "b"} <= {r.item for r in report.rows}, verify.to_table(report)


def test_zero_padding_after_relu():
    """A max pool after a relu keeps keras.applications' ZeroPadding2D (and no helper)."""
    text = "archc: 1\nname: relu_pool\ninput: [2, 7, 8]\nlayers:\n  - relu: relu\n  - mp: {maxpool: {kernel: 3, stride: 2, padding: 1}}\n"
    src = emit(graph_of(text), "keras")
    assert 'x = layers.ZeroPadding2D(1, name="mp_pad")(x)' in src and "NegInfPadding2D" not in src


def test_generated_code_passes_ruff(tmp_path):
    ruff = shutil.which("ruff") or shutil.which(str(Path(sys.executable).parent / "ruff")) or str(ROOT / ".venv/bin/ruff")
    if not shutil.which(ruff):
        pytest.skip("ruff is not installed")
    for name, text in (("dilated", DILATED), ("depthwise", DEPTHWISE), *((name, pool_spec(name)) for name in POOLS)):
        path = tmp_path / f"{name}_keras.py"
        path.write_text(emit(graph_of(text), "keras"))
        assert_ruff_clean(path)


# --- one backend's limits --------------------------------------------------------------------


def test_backend_option(tmp_path, monkeypatch):
    """A Keras limit (a grouped transposed conv) refuses `check` (both backends by default),
    `summary --backend keras` and `build --backend keras`; `--backend torch` and a plain
    `summary` do not apply it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "up.yaml").write_text(
        "archc: 1\nname: up\ninput: [4, 8, 8]\ndefaults: {conv: {bias: false}}\nlayers:\n"
        "  - up: {conv_transpose: {filters: 4, kernel: 2, stride: 2, groups: 2}}\n"
    )
    runner = CliRunner()
    refused = "archc: error: up.yaml:6:9: keras backend: conv_transpose with groups"
    for args in (["check"], ["check", "-b", "torch,keras"], ["check", "-b", "keras"], ["summary", "-b", "keras"],
                 ["build", "-b", "keras", "-o", "-"]):  # fmt: skip
        result = runner.invoke(main, [*args, "up.yaml"])
        assert result.exit_code == 2 and result.stderr.startswith(refused), (args, result.output)
        assert result.stderr.endswith("; or build for torch only (--backend torch)\n"), result.stderr
    both = runner.invoke(main, ["build", "-b", "torch,keras", "-o", "out", "up.yaml"])
    assert both.exit_code == 2 and refused.removeprefix("archc: error: ") in both.stdout
    for args in (["check", "-b", "torch"], ["summary"], ["summary", "-b", "torch"], ["build", "-b", "torch", "-o", "-"]):
        result = runner.invoke(main, [*args, "up.yaml"])
        assert result.exit_code == 0, (args, result.output)
    assert runner.invoke(main, ["check", "-b", "torch", "--json", "up.yaml"]).stdout.count('"torch"') == 1
    bad = runner.invoke(main, ["check", "-b", "tf", "up.yaml"])
    assert bad.exit_code == 2 and "'tf' is not a backend" in bad.stderr


def test_names_are_each_backends_own():
    """A block `channel_shuffle` is class ChannelShuffle in PyTorch and function
    channel_shuffle in Keras, whose module defines a ChannelShuffle helper: neither clashes.
    A parameter named as a block shadows the Keras function only."""
    text = """\
    archc: 1
    name: names
    input: [4, 8, 8]
    blocks:
      channel_shuffle:
        layers:
          - shuf: {shuffle: {groups: 2}}
    layers:
      - a: {block: channel_shuffle}
    """
    graph = graph_of(text)
    check(graph)
    shadow = graph_of(text.replace("    layers:\n      - a:", "    params: {channel_shuffle: 1}\n    layers:\n      - a:"))
    check(shadow, ["torch"])
    with pytest.raises(SpecError, match=r"keras backend: param 'channel_shuffle' would shadow .*\(--backend torch\)$"):
        check(shadow, ["keras"])
