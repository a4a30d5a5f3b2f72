"""The op kinds upsample, conv_transpose, adaptive_avgpool, slice and shuffle (and the
hardswish / hardsigmoid activations): at model level and inside block kinds, the IR's
counts and shapes are the generated PyTorch and Keras models', the two compute the same
function after `archc.interop` weight transfer, and bad arguments are located mistakes."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import assert_ruff_clean, need

from archc import api
from archc.backends import emit
from archc.errors import SpecError
from archc.interop import keras_to_torch, torch_to_keras
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

# Every new op at model level. The first item is a slice of the input: the relu after it must
# not work in place (it would overwrite the caller's tensor), and the last is a slice too (the
# model's output is an expression, with no module or layer of its own).
MODEL = """\
archc: 1
name: model_ops
input: [5, 6, 6]
defaults:
  conv: {bias: true}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
layers:
  - part: {slice: {start: 1}}
  - relu: relu
  - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}
  - bn1: batchnorm
  - hs: hardswish
  - up: {upsample: {scale: 2, mode: bilinear}}
  - shuf: {shuffle: {groups: 4}}
  - deconv: {conv_transpose: {filters: 6, kernel: 3, stride: 2, padding: 1, output_padding: 1}}
  - pool: {adaptive_avgpool: {size: 4}}
  - up2: {upsample: {scale: 3}}
  - deconv2: {conv_transpose: {filters: 4, kernel: 2, stride: 3, bias: false}}
  - same: {adaptive_avgpool: {size: 35}}
  - gate: hardsigmoid
  - pool1: {adaptive_avgpool: {size: 1}}
  - first: {slice: {stop: 3}}
"""

# The same ops inside block kinds: a ShuffleNet v2 unit (channel split, depthwise branch,
# concat, shuffle), a residual block whose first layer is a view of its input (the skip
# reads that input, so nothing may work in place on the view) with a conditional slice, and
# a decoder (bilinear upsampling, a padded transposed conv, a hard-sigmoid gate).
BLOCKS = """\
archc: 1
name: block_ops
input: [8, 8, 8]
params: {num_classes: 5}
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
  activation: relu
blocks:
  shuffle_unit:
    params: {}
    layers:
      - x1: {slice: {stop: channels // 2}}
      - x2: {slice: {start: in_channels // 2}, from: input}
      - conv1: {conv: {filters: channels, kernel: 1}}
      - bn1: batchnorm
      - relu1: relu
      - conv2: {conv: {filters: channels, kernel: 3, padding: 1, groups: channels}}
      - bn2: batchnorm
      - cat: {concat: [x1, bn2]}
      - shuf: {shuffle: {groups: 2}}
  view_skip:
    params: {trim: 0}
    connectivity: skip
    layers:
      - whole: {slice: {start: trim}}
      - relu: relu
      - fewer: {slice: {stop: channels - trim}, if: trim > 0}
      - conv: {conv: {filters: in_channels, kernel: 1}}
      - bn: batchnorm
  decoder:
    params: {scale: 2}
    layers:
      - up: {upsample: {scale: scale, mode: bilinear}}
      - deconv: {conv_transpose: {filters: channels // 2, kernel: 4, stride: 2, padding: 1}}
      - hs: hardswish
      - pool: {adaptive_avgpool: {size: 1}}
      - gate: hardsigmoid
layers:
  - conv1: {conv: {filters: 8, kernel: 3, padding: 1}}
  - stage1: {stage: shuffle_unit, repeat: 2}
  - skip: {stage: view_skip, repeat: 2, first: {trim: 1}}
  - dec: {block: decoder}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""

SPECS = {"model": MODEL, "blocks": BLOCKS}


def graph_of(text, name="spec.yaml"):
    return lower(load_spec_text(textwrap.dedent(text), name))


@pytest.fixture(scope="module", params=sorted(SPECS))
def built(request):
    graph = graph_of(SPECS[request.param], f"{request.param}.yaml")
    return graph, api.load_module(graph, "torch"), api.load_module(graph, "keras")


def test_counts_and_shapes_agree(built):
    graph, tm, km = built
    t_model, k_model = tm.build_model(), km.build_model()
    trainable = sum(p.numel() for p in t_model.parameters())
    buffers = sum(b.numel() for name, b in t_model.named_buffers() if not name.endswith("num_batches_tracked"))
    assert (trainable, buffers) == (graph.counts.trainable, graph.counts.non_trainable)
    k_trainable = sum(int(np.prod(w.shape)) for w in k_model.trainable_weights)
    k_fixed = sum(int(np.prod(w.shape)) for w in k_model.non_trainable_weights)
    assert (k_trainable, k_fixed) == (graph.counts.trainable, graph.counts.non_trainable)
    out = graph.output_shape.as_tuple()
    with torch.no_grad():
        assert tuple(t_model.eval()(torch.zeros(2, *graph.input_shape.as_tuple())).shape) == (2, *out)
    keras_out = (*out[1:], out[0]) if len(out) == 3 else out
    assert tuple(k_model.output.shape) == (None, *keras_out)


def test_backends_agree(built):
    """Every model-level item, stage and block instance, after interop's weight transfer."""
    graph, _, _ = built
    report = verify.verify(graph)
    assert report.ok, verify.to_table(report)
    items = [r.item for r in report.rows]
    if graph.name == "model_ops":
        assert "part" not in items and items[-1] == "first"  # an expression's row: only the output's
        assert report.output.shape == (3, 1, 1)
    else:
        assert {"stage1.0", "stage1.1", "skip.0", "skip.1", "dec"} <= set(items)


def test_weights_round_trip(built):
    """conv_transpose kernels (in, out, kh, kw) <-> (kh, kw, out, in), both directions."""
    graph, tm, km = built
    torch.manual_seed(0)
    original = tm.build_model()
    verify.randomize(original, graph, seed=0)
    k_model = km.build_model()
    torch_to_keras(original, k_model, graph)
    copy = tm.build_model()
    keras_to_torch(k_model, copy, graph)
    for key, value in original.state_dict().items():
        assert torch.equal(value, copy.state_dict()[key]), key


def test_model_level_code():
    graph = graph_of(MODEL)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    assert "        x = x[:, 1:]\n        x = self.relu(x)\n" in torch_src
    assert "self.relu = nn.ReLU()\n" in torch_src  # not in place on a view of the input
    assert "self.part" not in torch_src and "x = x[:, :3]\n        return x" in torch_src
    assert 'nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)' in torch_src
    assert "nn.ChannelShuffle(4)" in torch_src and "nn.AdaptiveAvgPool2d(35)" in torch_src
    assert "x = x[..., 1:]" in keras_src and "x = x[..., :3]" in keras_src
    assert 'layers.UpSampling2D(size=2, interpolation="bilinear", name="up")' in keras_src
    assert 'layers.Cropping2D(1, name="deconv_crop")' in keras_src
    assert 'layers.AveragePooling2D(6, name="pool")' in keras_src  # 24x24 -> 4x4
    assert 'name="same"' not in keras_src and "layers.Identity" not in keras_src  # 35x35 -> 35x35: no layer
    assert 'layers.GlobalAveragePooling2D(keepdims=True, name="pool1")' in keras_src
    # kernel 2 < stride 3: Keras' default output size would be H * 3, so output_padding is stated
    assert "        4,\n        2,\n        strides=3,\n        output_padding=0,\n        use_bias=False,\n" in keras_src
    # torch_default, stated: one constant for the conv's and the transposed conv's equal configs
    assert 'kernel_initializer=KERNEL_INITIALIZER,\n        name="deconv2"' in keras_src
    assert "class ChannelShuffle(layers.Layer)" in keras_src and "class ChannelShuffle" not in torch_src
    x = torch.randn(1, 5, 6, 6)
    before = x.clone()
    api.load_module(graph, "torch").build_model().eval()(x)
    assert torch.equal(x, before)


def test_block_code():
    graph = graph_of(BLOCKS)
    torch_src, keras_src = emit(graph, "torch"), emit(graph, "keras")
    # forward cannot see __init__'s arguments: an expression argument is stored on the module
    assert "self.x1_stop = in_channels // 2" in torch_src and "x1 = x[:, : self.x1_stop]" in torch_src
    assert "out = x[:, self.x2_start :]" in torch_src
    assert "self.use_fewer = trim > 0\n        if self.use_fewer:\n            self.fewer_stop = in_channels - 2 * trim" in torch_src  # collected (archc.spec.simplify)
    assert "if self.use_fewer:\n            out = out[:, : self.fewer_stop]" in torch_src
    # the relu after a view of the block input (which the skip reads) is not in place
    view_skip = torch_src[torch_src.index("class ViewSkip"):torch_src.index("class Decoder")]
    assert "self.relu = nn.ReLU()" in view_skip
    assert "x1 = inputs[..., : in_channels // 2]" in keras_src and "x = inputs[..., in_channels // 2 :]" in keras_src
    assert "channels = in_channels // 2 + " not in torch_src + keras_src  # no dead hoisted variable
    assert 'layers.Cropping2D(1, name=f"{name}_deconv_crop")' in keras_src


def test_generated_code_passes_ruff(tmp_path):
    for name, text in SPECS.items():
        graph = graph_of(text)
        for backend in ("torch", "keras"):
            path = tmp_path / f"{name}_{backend}.py"
            path.write_text(emit(graph, backend))
            assert_ruff_clean(path)


def test_conv_transpose_counts():
    """Parameters in * out / groups * k * k (+ bias); MACs as torchvision / fvcore count
    them: in * out * k * k * H_in * W_in / groups."""
    graph = graph_of(MODEL)
    node = next(n for n in graph.nodes if n.id == "deconv")  # 8 -> 6 channels, 3x3, on 12x12
    assert (node.trainable, node.macs, node.shape.as_tuple()) == (8 * 6 * 9 + 6, 8 * 6 * 9 * 12 * 12, (6, 24, 24))
    text = MODEL.replace("filters: 6, kernel: 3, stride: 2", "filters: 6, kernel: 3, stride: 2, groups: 2")
    node = next(n for n in graph_of(text).nodes if n.id == "deconv")
    assert (node.trainable, node.macs) == (8 * 3 * 9 + 6, 8 * 6 * 9 * 12 * 12 // 2)
    t_model = api.load_module(graph_of(text), "torch").build_model()
    assert tuple(t_model.deconv.weight.shape) == (8, 3, 3, 3)


def test_hard_activations_match():
    """PyTorch's Hardsigmoid relu6(x + 3) / 6 and Hardswish x * that, against the Keras
    activations archc maps them to, across both kinks (x = -3 and 3)."""
    x = np.linspace(-4, 4, 161, dtype="float32")
    for torch_fn, keras_fn in ((torch.nn.Hardsigmoid(), "hard_sigmoid"), (torch.nn.Hardswish(), "hard_swish")):
        want = torch_fn(torch.from_numpy(x)).numpy()
        got = np.asarray(keras.layers.Activation(keras_fn)(x))
        assert np.abs(want - got).max() <= 1e-6, keras_fn


def test_upsample_bilinear_matches_for_odd_sizes():
    """Keras' bilinear UpSampling2D is PyTorch's align_corners=False, edges included."""
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 5)).astype("float32")
    for scale in (2, 3, 4):
        want = torch.nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)(torch.from_numpy(x)).numpy()
        got = np.asarray(keras.layers.UpSampling2D(scale, interpolation="bilinear")(x.transpose(0, 2, 3, 1)))
        assert np.abs(want.transpose(0, 2, 3, 1) - got).max() <= 1e-5


@pytest.mark.parametrize(
    "old, new, message, line",
    [
        ("{slice: {start: 1}}", "{slice: {start: 5}}", "slice needs 0 <= start < stop <= channels (5), got start 5, stop 5", 8),
        ("{slice: {stop: 3}}", "{slice: {stop: 9}}", "slice needs 0 <= start < stop <= channels (4), got start 0, stop 9", 22),
        ("{slice: {stop: 3}}", "{slice: {stop: 3, step: 2}}", "unknown key 'step'", 22),
        ("{shuffle: {groups: 4}}", "{shuffle: {groups: 3}}", "shuffle groups=3 must divide the input channels 8", 14),
        ("{shuffle: {groups: 4}}", "{shuffle: {}}", "missing required key 'groups'", 14),
        ("output_padding: 1}", "output_padding: 2}", "0 <= output_padding < stride, got padding 1, output_padding 2, stride 2", 15),
        ("{conv_transpose: {filters: 4, kernel: 2, stride: 3", "{conv_transpose: {filters: 4, kernel: 2, padding: 20, stride: 3",
         "conv_transpose with kernel 2 and padding 20 crops (6, 12, 12) below 1x1", 18),
        ("mode: bilinear}", "mode: bicubic}", "bicubic", 13),
        ("{upsample: {scale: 3}}", "{upsample: {scale: 0}}", "upsample scale must be >= 1, got 0", 17),
        ("{adaptive_avgpool: {size: 4}}", "{adaptive_avgpool: {size: 0}}", "adaptive_avgpool size must be >= 1, got 0", 16),
        ("  - relu: relu\n", "  - relu: relu\n  - grp: [{slice: {stop: 2}}]\n", "slice is an expression in PyTorch's forward", 10),
    ],
)
def test_bad_arguments(old, new, message, line):
    import re

    assert old in MODEL
    with pytest.raises(SpecError) as info:
        graph_of(MODEL.replace(old, new, 1))
    text = str(info.value)
    assert re.search(message, text) or message in text, text
    assert text.startswith(f"spec.yaml:{line}:"), text


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("stride: 2, padding: 1, output_padding: 1}", "stride: 2, padding: 1, output_padding: 1, groups: 2}",
         "conv_transpose with groups: Keras' Conv2DTranspose has no groups argument"),
        ("{adaptive_avgpool: {size: 4}}", "{adaptive_avgpool: {size: 5}}", "adaptive_avgpool to 5x5 from a 24x24 map"),
    ],
)
def test_keras_cannot_match(old, new, message):
    """What Keras cannot compute is a located mistake for the keras backend only."""
    graph = graph_of(MODEL.replace(old, new, 1))
    emit(graph, "torch")
    with pytest.raises(SpecError, match=message) as info:
        emit(graph, "keras")
    assert str(info.value).startswith("spec.yaml:")


def test_adaptive_pool_in_block_needs_size_1_for_keras():
    graph = graph_of(BLOCKS.replace("{adaptive_avgpool: {size: 1}}", "{adaptive_avgpool: {size: 2}}"))
    emit(graph, "torch")
    with pytest.raises(SpecError, match="adaptive_avgpool with size 2 inside a block kind") as info:
        emit(graph, "keras")
    assert str(info.value).startswith("spec.yaml:")


def test_cli_exit_codes(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(MODEL.replace("{shuffle: {groups: 4}}", "{shuffle: {groups: 3}}"))
    run = [sys.executable, "-m", "archc"]
    result = subprocess.run([*run, "check", str(spec)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(f"archc: error: {spec}:14:"), result.stderr
    assert "Traceback" not in result.stderr
    spec.write_text(MODEL.replace("{adaptive_avgpool: {size: 4}}", "{adaptive_avgpool: {size: 5}}"))
    result = subprocess.run([*run, "build", str(spec), "-b", "keras", "-o", "-"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"{spec}:16:" in result.stderr, result.stderr
    result = subprocess.run([*run, "build", str(spec), "-b", "torch", "-o", "-"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "nn.AdaptiveAvgPool2d(5)" in result.stdout


def test_summary_and_diagram_labels():
    graph = graph_of(MODEL)
    summary = api.summary(graph)
    assert summary.trainable == graph.counts.trainable
    labels = {n.id: n.op.label() for n in graph.nodes}
    assert labels["up"] == "upsample ×2 bilinear" and labels["part"] == "slice [1:]"
    assert labels["deconv"] == "conv_transpose 3×3 ×2, 6" and labels["shuf"] == "channel shuffle, 4 groups"
    assert labels["pool"] == "adaptive avgpool 4×4"


def test_keras_crop_layer_name_is_reserved():
    """A padded transposed conv adds a `<name>_crop` layer in Keras; another layer of that name
    clashes (a Keras backend check, which `archc check` and Keras builds apply, and PyTorch
    builds do not)."""
    from archc.backends import validate

    graph = graph_of(MODEL.replace("  - gate: hardsigmoid\n", "  - deconv_crop: hardsigmoid\n"))
    validate(graph, "torch")
    with pytest.raises(SpecError, match="keras backend: 'deconv_crop' and 'deconv' would both be named 'deconv_crop' in Keras") as info:
        validate(graph, "keras")
    assert str(info.value).startswith("spec.yaml:20:")
