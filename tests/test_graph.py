"""archc graph: the DOT parses (pydot, an independent parser), skip and dense edges are
drawn apart and counted as the architectures have them, edges carry the IR's shapes,
and svg/png render through Graphviz where `dot` is installed."""

import shutil

import pydot
import pytest
from click.testing import CliRunner
from conftest import graph_of

from archc.cli import main
from archc.passes.diagram import diagram, shape_label, to_dot, to_mermaid


def parse(text):
    (g,) = pydot.graph_from_dot_data(text)
    return g


def all_nodes(g):
    nodes = [n for n in g.get_nodes() if n.get_name() not in ("node", "edge", "graph")]
    for sub in g.get_subgraphs():
        nodes += all_nodes(sub)
    return nodes


def edges_by_style(g):
    out = {"dashed": [], "bold": [], None: []}
    for e in g.get_edges():
        out[e.get("style")].append(e)
    return out


@pytest.mark.parametrize(
    "spec, expand, skips, projections, denses",
    [
        # ResNet-50: 16 bottlenecks in 4 stages, a projection shortcut at the start of each stage
        ("specs/resnet50.yaml", False, 4, 4, 0),
        ("specs/resnet50.yaml", True, 16, 4, 0),
        # ResNet-20: 3 stages of 3 basic blocks; option A where the width doubles (stages 2, 3)
        ("specs/cifar/resnet20.yaml", True, 9, 0, 0),
        # DenseNet-121: 6 + 12 + 24 + 16 dense layers in 4 dense blocks, no skips
        ("specs/densenet121.yaml", False, 0, 0, 4),
        ("specs/densenet121.yaml", True, 0, 0, 58),
    ],
)
def test_block_level_edges(spec, expand, skips, projections, denses):
    edges = diagram(graph_of(spec), "blocks", expand).edges
    skip = [e for e in edges if e.kind == "skip"]
    assert len(skip) == skips and sum(e.kind == "dense" for e in edges) == denses
    notes = " ".join(e.note for e in skip)
    if expand:
        assert notes.count("projection") == projections
    if "resnet20" in spec:
        assert notes.count("option A") == 2 and notes.count("identity") == 7


def test_dot_styles_tell_skip_and_dense_apart():
    g = parse(to_dot(diagram(graph_of("specs/cifar/resnet20.yaml"), "blocks", expand=True)))
    styles = edges_by_style(g)
    assert len(styles["dashed"]) == 9 and not styles["bold"]
    assert {e.get("color") for e in styles["dashed"]} == {'"#2b8a3e"'}
    d = parse(to_dot(diagram(graph_of("specs/cifar/densenet40_k12.yaml", "params.depth=16"), "blocks", expand=True)))
    bold = edges_by_style(d)["bold"]
    assert len(bold) == 12 and all("dense" in e.get("label") for e in bold)  # 3 blocks of (16 - 4) / 3 layers


def test_collapsed_stage_names_its_shortcuts():
    text = to_dot(diagram(graph_of("specs/resnet50.yaml")))
    assert '"layer3" [label="layer3\\nbottleneck ×6\\nplanes=256\\nfirst: stride=2"' in text
    assert 'label="projection ×1, identity ×5\\n512×28×28"' in text


def test_edges_carry_ir_shapes():
    graph = graph_of("specs/cifar/resnet.yaml", "params.depth=8")  # one block per stage
    g = parse(to_dot(diagram(graph, "layers")))
    shapes = {n.id: shape_label(n.shape) for n in graph.nodes}
    shapes["input"] = shape_label(graph.input_shape)
    edges = g.get_edges()
    assert len(edges) == sum(len(n.inputs) for n in graph.nodes) + 1  # + the edge to "output"
    for e in edges:
        src = e.get_source().strip('"')
        assert e.get("label").strip('"').split("\\n")[-1] == shapes[src]


def test_layer_level_has_every_node_and_merge():
    graph = graph_of("specs/cifar/densenet40_k12.yaml", "params.depth=10")  # 2 layers per dense block
    g = parse(to_dot(diagram(graph, "layers")))
    names = {n.get_name().strip('"') for n in all_nodes(g)}
    assert names == {n.id for n in graph.nodes} | {"input", "output"}
    styles = edges_by_style(g)
    assert len(styles["bold"]) == 6 and not styles["dashed"]  # one concat per dense layer
    edges = diagram(graph_of("specs/resnet50.yaml"), "layers").edges
    assert sum(e.kind == "skip" for e in edges) == 16 and sum(e.kind == "dense" for e in edges) == 0
    edges = diagram(graph_of("specs/densenet121.yaml"), "layers").edges
    assert sum(e.kind == "dense" for e in edges) == 58 and sum(e.kind == "skip" for e in edges) == 0


def test_mermaid_arrows():
    text = to_mermaid(diagram(graph_of("specs/resnet50.yaml"), "blocks", expand=True))
    assert text.startswith("flowchart TB\n")
    assert text.count(" -.->|") == 16 and text.count(" ==>|") == 0
    dense = to_mermaid(diagram(graph_of("specs/densenet121.yaml")))
    assert dense.count(" ==>|") == 4 and 'subgraph c' in dense and dense.count("\n  end") == 1


def test_cli_formats(tmp_path):
    runner = CliRunner()
    dot = runner.invoke(main, ["graph", "specs/cifar/resnet20.yaml"])
    assert dot.exit_code == 0 and parse(dot.output).get_name() == '"resnet20"'
    mmd = runner.invoke(main, ["graph", "specs/cifar/resnet20.yaml", "-o", str(tmp_path / "r.mmd")])
    assert mmd.exit_code == 0 and (tmp_path / "r.mmd").read_text().startswith("flowchart TB")


def test_svg_without_dot_says_how_to_install(tmp_path):
    result = CliRunner(env={"PATH": str(tmp_path)}).invoke(main, ["graph", "specs/resnet18.yaml", "-o", str(tmp_path / "r.svg")])
    assert result.exit_code == 2
    assert "apt-get install graphviz" in result.output and "--format dot" in result.output
    assert not (tmp_path / "r.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_renders_with_graphviz(tmp_path):
    runner = CliRunner()
    for fmt, magic in (("svg", b"<svg"), ("png", b"\x89PNG\r\n\x1a\n")):
        out = tmp_path / f"d.{fmt}"
        result = runner.invoke(main, ["graph", "specs/densenet121.yaml", "-o", str(out)])
        assert result.exit_code == 0, result.output
        head = out.read_bytes()[:400]
        assert magic in head
    assert "denseblock4" in (tmp_path / "d.svg").read_text()


def test_regnet_draws_its_blocks_and_gates():
    """RegNetY-400MF: blocks named `block1-0` (the DOT quotes them), 16 residual sums with a
    projection at each of the 4 stage starts, and at layer level 16 squeeze-and-excitation
    gates (a dotted edge into each multiply); RegNetX has none."""
    graph = graph_of("specs/regnet_y_400mf.yaml")
    blocks = diagram(graph, "blocks", expand=True)
    g = parse(to_dot(blocks))
    assert '"trunk_output.block1.block1-0"' in {n.get_name() for n in all_nodes(g)}
    skips = [e for e in blocks.edges if e.kind == "skip"]
    assert len(skips) == 16 and " ".join(e.note for e in skips).count("projection") == 4
    layers = diagram(graph, "layers")
    gates = [e for e in layers.edges if e.kind == "gate"]
    assert len(gates) == 16 and all(e.dst.endswith(".f.se.scale") for e in gates)
    assert len(parse(to_dot(layers)).get_edges()) == len(layers.edges)
    assert not [e for e in diagram(graph_of("specs/regnet_x_400mf.yaml"), "layers").edges if e.kind == "gate"]


def test_mermaid_gates():
    """Squeeze-and-excitation gates are drawn (they once had no Mermaid arrow): MobileNetV3-Large
    has 8 SE blocks, each one gate edge into its multiply, styled apart from skips."""
    d = diagram(graph_of("specs/mobilenet_v3_large.yaml"), "layers")
    assert sum(e.kind == "gate" for e in d.edges) == 8
    assert to_mermaid(d).count("stroke:#5f3dc4") == 8
