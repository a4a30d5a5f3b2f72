"""A stride that differs per dimension inside a block kind (the video ResNets' 1x2x2 convs:
frames kept, height and width halved). Allowed where no shortcut follows the kind's stride
(the downsample written out as layers, as torchvision's BasicBlock has it); refused where
one does (tests/hostile/rank_stride_in_block.yaml). Shapes are checked against the
arithmetic of a strided conv, and both backends against them."""

import textwrap

from conftest import need

from archc.api import build, summary
from archc.spec.loader import load_spec_text

torch = need("torch")

SPEC = textwrap.dedent("""\
    archc: 1
    name: clip
    input: [3, 4, 16, 16]
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    blocks:
      down:
        params: {planes: int, stride: 1}
        layers:
          - conv1: {conv: {filters: planes, kernel: [1, 3, 3], stride: [1, stride, stride], padding: [0, 1, 1]}}
          - bn1: batchnorm
          - downsample: {conv: {filters: planes, kernel: 1, stride: [1, stride, stride]}, from: input, if: stride != 1 or in_channels != planes}
          - add: {add: [bn1, downsample]}
    layers:
      - b1: {block: down, with: {planes: 8}}
      - b2: {block: down, with: {planes: 16, stride: 2}}
      - b3: {block: down, with: {planes: 16}}
    """)


def test_per_dimension_stride_in_a_block_without_shortcut():
    spec = load_spec_text(SPEC, "clip.yaml")
    # 16x16 -> (16 + 2 - 3) // 2 + 1 = 8 at stride 2; the 4 frames kept (stride 1, kernel 1)
    rows = summary(spec).rows
    assert [tuple(r.output_shape) for r in rows if r.name in ("b1", "b2", "b3")] == [(8, 4, 16, 16), (16, 4, 8, 8), (16, 4, 8, 8)]
    model = build(spec, "torch").eval()
    assert tuple(model.b2.conv1.stride) == (1, 2, 2) and tuple(model.b2.downsample.stride) == (1, 2, 2)
    assert tuple(model.b3.conv1.stride) == (1, 1, 1) and getattr(model.b3, "downsample", None) is None
    with torch.no_grad():
        assert tuple(model(torch.randn(2, 3, 4, 16, 16)).shape) == (2, 16, 4, 8, 8)
