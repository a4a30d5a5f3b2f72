"""Good and bad specs: every mistake is one located message (file:line:col)."""

import textwrap

import pytest

from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

GOOD = """\
archc: 1
name: tiny
input: [3, 32, 32]
params: {num_classes: 10, width: 8}
defaults:
  conv: {bias: false}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
use: [resnet]
layers:
  - conv1: {conv: {filters: width, kernel: 3, padding: 1}}
  - bn1: batchnorm
  - relu: relu
  - layer1: {stage: basic, repeat: 2, with: {planes: 16}, first: {stride: 2}}
  - pool: global_avgpool
  - fc: {dense: {units: num_classes}}
"""


def compile_text(text):
    return lower(load_spec_text(textwrap.dedent(text), "spec.yaml"))


def error_of(text):
    with pytest.raises(SpecError) as info:
        compile_text(text)
    return str(info.value)


def test_good_spec_compiles():
    graph = compile_text(GOOD)
    assert graph.output_shape.as_tuple() == (10,)
    # conv 3*8*9; bn 16; stage: conv 8->16 s2 + bn + conv 16->16 + bn + downsample(1x1 8->16 + bn)
    # + second block 2 x (conv 16->16 + bn); fc 16*10+10
    expected = 216 + 16 + (1152 + 32 + 2304 + 32 + 128 + 32) + 2 * (2304 + 32) + 170
    assert graph.counts.trainable == expected
    assert dict(graph.exposed) == {"num_classes": 10}


@pytest.mark.parametrize(
    "old, new, message, line",
    [
        ("kernel: 3, padding: 1}", "kernl: 3, padding: 1}", "unknown key 'kernl'; did you mean 'kernel'?", 10),
        ("archc: 1", "archc: 2", "archc: Input should be 1, got 2", 1),
        ("  - bn1: batchnorm", "  - bn1: batchnrm", "expected a layer", 11),
        ("  - relu: relu", "  - class: relu", "'class' is a Python keyword", 12),
        ("  - relu: relu", "  - forward: relu", "'forward' is used by the generated code", 12),
        ("filters: width,", "filters: __import__('os'),", "Call is not allowed|unknown function", 10),
        ("filters: width,", "filters: width * 2.5,", "must be an integer, got 20.0", 10),
        ("filters: width,", "filters: depth,", "unknown name 'depth'", 10),
        ("repeat: 2", "repeat: 0", "repeat must be between 1 and", 13),
        ("stage: basic", "stage: basik", "unknown block 'basik'", 13),
        ("with: {planes: 16}", "with: {planes: 16, width: 3}", "block 'basic' has no parameter 'width'", 13),
        ("with: {planes: 16}", "with: {}", "block 'basic' needs parameter 'planes'", 13),
        ("  - pool: global_avgpool", "  - pool: {maxpool: {kernel: 64}}", "shrinks (16, 16, 16) below 1x1", 14),
        ("  - pool: global_avgpool\n", "", "dense needs a flat input", 14),
        ("  batchnorm: {eps: 1.0e-5, momentum: 0.1}\n", "", "batchnorm eps is not set", 10),
        ("use: [resnet]", "use: [resnot]", "unknown library 'resnot'", 8),
        ("kernel: 3, padding: 1}", "kernel: 3, padding: 1, groups: 3}", "groups=3 must divide input channels 3 and filters 8", 10),
        ("input: [3, 32, 32]", "input: [3, 2, 32, 32, 32]", "has 5 dimensions; archc compiles (channels, length)", 3),
        ("name: tiny", "name: tiny\nname: again", "duplicate key 'name'", 3),
        ("archc: 1", "archc: !!python/object/apply:os.system ['true']", "is not allowed", 1),
        ("archc: 1", "archc: !!python/name:os.system ''", "python/name:os.system' is not allowed", 1),
        # weight standardization (BiT's StdConv2d, NFNet's scaled form): its options belong together
        ("padding: 1}", "padding: 1, standardize: true}", "conv standardize needs `eps`", 10),
        ("padding: 1}", "padding: 1, eps: 1.0e-8}", "conv eps belongs to weight standardization: add `standardize: true`", 10),
        ("padding: 1}", "padding: 1, standardize: true, eps: 0.0}", "conv standardize needs eps > 0, got 0.0", 10),
        ("padding: 1}", "padding: 1, standardize: true, eps: 1.0e-8, gamma: 1.7}", "conv gamma scales the learned gain: add `gain: true`", 10),
        ("padding: 1}", "padding: 1, gain: true}", "conv gain belongs to weight standardization", 10),
        ("padding: 1}", "padding: 1, standardize: width > 4, eps: 1.0e-8}", "standardize: Input should be a valid boolean", 10),
    ],
)
def test_bad_spec(old, new, message, line):
    import re

    assert old in GOOD
    text = str(error_of(GOOD.replace(old, new, 1)))
    assert re.search(message, text) or message in text, text
    assert text.startswith(f"spec.yaml:{line}:") or text.startswith(f"spec.yaml:{line} "), text


@pytest.mark.parametrize("shape, rank", [("[3, 32]", "1-D (C, L) map (3, 32)"), ("[3, 8, 8, 8]", "3-D (C, D, H, W) map (3, 8, 8, 8)")])
def test_weight_standardization_refuses_other_ranks(shape, rank):
    text = error_of(f"""\
        archc: 1
        name: std1d
        input: {shape}
        layers:
          - c: {{conv: {{filters: 4, kernel: 3, bias: false, standardize: true, eps: 1.0e-8}}}}
        """)
    assert text.startswith("spec.yaml:5:") and f"conv with standardize works on 2-D (C, H, W) maps only, not on the {rank}" in text, text


def test_identity_shortcut_over_shape_change_is_located():
    text = GOOD.replace("use: [resnet]", "blocks:\n  noproj:\n    params: {planes: int, stride: 1}\n"
                        "    connectivity: skip\n    layers:\n"
                        "      - conv1: {conv: {filters: planes, kernel: 3, stride: stride, padding: 1}}")
    text = text.replace("stage: basic", "stage: noproj")
    message = error_of(text)
    assert "identity shortcut over a shape change" in message and "(8, 32, 32) to (16, 16, 16)" in message
    assert message.startswith("spec.yaml:18:")


def test_check_rule_message():
    text = GOOD.replace("params: {num_classes: 10, width: 8}", "params: {num_classes: 10, width: 7}\n"
                        "checks:\n  - {that: 'width % 2 == 0', message: 'width must be even; got {width}'}")
    assert error_of(text) == "spec.yaml:6:5: width must be even; got 7"


def test_compression_leaving_no_channels():
    text = """\
    archc: 1
    name: t
    input: [3, 8, 8]
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    use: [densenet]
    layers:
      - conv0: {conv: {filters: 1, kernel: 3, padding: 1}}
      - transition1: {block: transition, with: {compression: 0.5}}
    """
    assert "conv filters must be >= 1, got 0" in error_of(text)
    assert "compression must be in (0, 1], got 1.5" in error_of(text.replace("0.5", "1.5"))
