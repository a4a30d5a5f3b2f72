"""A weighted sum (`fuse: {weighted_sum: [a, b]}`, EfficientDet's fast normalized fusion or
a plain weighted sum): IR = PyTorch = Keras at model level and in a block kind, counts with
its n weights, the function against sums computed here, weights moved both ways, verify."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need
from test_differential import agree, module_from

from archc.backends import emit
from archc.errors import SpecError
from archc.lower import lower
from archc.spec.loader import load_spec_text

torch = need("torch")

MODEL = """\
archc: 1
name: t
input: [4, 6, 6]
defaults: {conv: {bias: true}}
blocks:
  fuse2:
    params: {w: int}
    layers:
      - a: {conv: {filters: w, kernel: 3, padding: 1}}
      - b: {conv: {filters: w, kernel: 1}, from: input}
      - fuse: {weighted_sum: [a, b], normalize: false}
      - act: relu
layers:
  - c1: {conv: {filters: 4, kernel: 3, padding: 1}}
  - c2: {conv: {filters: 4, kernel: 1}, from: input}
  - fuse: {weighted_sum: [c1, c2, input]}
  - blk: {block: fuse2, with: {w: 6}}
  - pool: global_avgpool
  - fc: {dense: {units: 3}}
"""

TWO = """\
archc: 1
name: two
input: [3, 5, 5]
layers:
  - a: {conv: {filters: 3, kernel: 1, bias: false}}
  - s: {weighted_sum: [input, a]OPTIONS}
"""


def test_model_level_and_block_kind_agree():
    graph = agree(MODEL)
    nodes = {n.id: n for n in graph.nodes}
    assert (nodes["fuse"].trainable, nodes["blk.fuse"].trainable) == (3, 2)  # one weight per input
    conv = lambda cin, cout, k: cout * cin * k * k + cout  # noqa: E731
    assert graph.counts.trainable == conv(4, 4, 3) + conv(4, 4, 1) + 3 + conv(4, 6, 3) + conv(4, 6, 1) + 2 + 6 * 3 + 3


def test_generated_code_reads_as_written():
    graph = lower(load_spec_text(MODEL, "t.yaml"))
    torch_code, keras_code = emit(graph, "torch"), emit(graph, "keras")
    assert "self.fuse = WeightedSum(3)" in torch_code and "x = self.fuse(c1, c2, inputs)" in torch_code
    assert "self.fuse = WeightedSum(2, normalize=False)" in torch_code and "out = self.fuse(a, b)" in torch_code
    assert 'WeightedSum(name="fuse")([c1, c2, inputs])' in keras_code
    assert 'WeightedSum(normalize=False, name=f"{name}_fuse")([a, b])' in keras_code
    model = module_from(torch_code, "t_torch").build_model()
    assert {n: tuple(p.shape) for n, p in model.named_parameters() if "fuse" in n} == {"fuse.weight": (3,), "blk.fuse.weight": (2,)}
    assert all(float(p.min()) == float(p.max()) == 1.0 for n, p in model.named_parameters() if n.endswith("fuse.weight"))


def _run(options: str, weight: tuple[float, float]):
    graph = lower(load_spec_text(TWO.replace("OPTIONS", options), "two.yaml"))
    model = module_from(emit(graph, "torch"), "two_torch").build_model().eval()
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.s.weight.copy_(torch.tensor(weight))
        return x, model.a(x), model(x)


def test_plain_weighted_sum_is_the_sum_of_weighted_inputs():
    x, a, out = _run(", normalize: false", (1.0, 2.0))
    torch.testing.assert_close(out, 1 * x + 2 * a, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("weight", "eps"), [((1.0, 2.0), 1e-4), ((-0.5, 3.0), 1e-4), ((2.0, 0.25), 0.5)])
def test_normalized_sum_is_fast_normalized_fusion(weight, eps):
    x, a, out = _run(f", eps: {eps}" if eps != 1e-4 else "", weight)
    w = [max(v, 0.0) for v in weight]  # relu
    torch.testing.assert_close(out, (w[0] * x + w[1] * a) / (sum(w) + eps), rtol=1e-6, atol=1e-6)


def test_weights_round_trip_and_verify():
    need("keras")
    from archc.interop import keras_to_torch, torch_to_keras

    graph = lower(load_spec_text(MODEL, "t.yaml"))
    tmodel = module_from(emit(graph, "torch"), "t_torch").build_model()
    kmodel = module_from(emit(graph, "keras"), "t_keras").build_model()
    with torch.no_grad():
        for p in tmodel.parameters():
            p.copy_(torch.randn(p.shape))
    before = {n: p.detach().clone() for n, p in tmodel.state_dict().items()}
    torch_to_keras(tmodel, kmodel, graph)
    assert np.allclose(kmodel.get_layer("fuse").get_weights()[0], before["fuse.weight"].numpy())
    fresh = module_from(emit(graph, "torch"), "t_torch").build_model()
    keras_to_torch(kmodel, fresh, graph)
    assert all(torch.equal(before[n], t) for n, t in fresh.state_dict().items())
    from archc.verify import verify

    report = verify(graph)
    assert report.ok, report
    assert "fuse" in {r.item for r in report.rows}  # compared after its own weights


@pytest.mark.parametrize(
    ("layers", "message"),
    [
        ("  - a: {conv: {filters: 2, kernel: 1, bias: false}}\n  - s: {weighted_sum: [input, a]}\n", "a weighted sum needs tensors of one shape"),
        ("  - a: {conv: {filters: 3, kernel: 1, bias: false}}\n  - {weighted_sum: [input, a], normalize: false}\n", "weighted_sum has weights, so it is a module and needs a name"),
        ("  - a: {conv: {filters: 3, kernel: 1, bias: false}}\n  - s: {weighted_sum: [input, a], eps: -1.0}\n", "eps must be >= 0"),
        ("  - a: {conv: {filters: 3, kernel: 1, bias: false}}\n  - s: {parallel: [relu, relu], merge: weighted_sum}\n", "merge"),
    ],
)
def test_mistakes_are_named(layers, message):
    text = TWO.split("layers:\n")[0] + "layers:\n" + layers
    with pytest.raises(SpecError, match=message):
        lower(load_spec_text(text, "two.yaml"))


CONTAINER = """\
archc: 1
name: c
input: [4, 8, 8]
defaults: {conv: {bias: true}}
layers:
  - stem: {conv: {filters: 4, kernel: 3, padding: 1}}
  - fpn:
      modules:
        - lat: {conv: {filters: 4, kernel: 1}, from: stem}
        - fused: {weighted_sum: [lat, stem]}
        - out: {conv: {filters: 4, kernel: 3, padding: 1}, from: fused}
  - pool: {global_avgpool: {}, from: fpn.out}
  - fc: {dense: {units: 3}}
"""


def test_in_a_dataflow_container_it_is_an_entry_of_its_module_dict():
    graph = agree(CONTAINER)
    code = emit(graph, "torch")
    assert "fused=WeightedSum(2)," in code and "x = self.fpn.fused(fpn_lat, stem)" in code
    assert tuple(module_from(code, "c_torch").build_model().get_parameter("fpn.fused.weight").shape) == (2,)


def test_diagram_label_says_which_sum():
    graph = lower(load_spec_text(MODEL, "t.yaml"))
    labels = {n.id: n.op.label() for n in graph.nodes if n.op.kind == "weighted_sum"}
    assert labels == {"fuse": "Σw·x/Σw", "blk.fuse": "Σw·x"}


@pytest.mark.parametrize("use", [True, False])
def test_under_if_it_exists_only_where_it_holds(use):
    text = MODEL.replace("params: {w: int}", "params: {w: int, use: bool}")
    text = text.replace("normalize: false}", "normalize: false, if: use}").replace("with: {w: 6}}", f"with: {{w: 6, use: {str(use).lower()}}}}}")
    graph = agree(text)
    assert any(n.id == "blk.fuse" for n in graph.nodes) == use
    assert "if self.fuse is not None:\n            out = self.fuse(a, b)" in emit(graph, "torch")  # guarded by its condition
