"""Diagram pass: the IR as a drawable graph, written as Graphviz DOT or Mermaid.

Two levels:
- `blocks` (default): one box per model-level layer and per block; a stage is one
  box "block ×n" unless `expand` asks for every instance. A residual block ends in
  a "+" node fed by a dashed skip edge (identity, projection or option A); a dense
  stage feeds a "concat" node through a bold dense edge.
- `layers`: every IR node, boxed by the block instance it belongs to.

Every edge carries the shape of the tensor on it. Rendering to SVG/PNG is
Graphviz's job: `render` shells out to `dot` (for the CLI and notebooks' inline SVG).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache

from archc import ops
from archc.errors import SpecError
from archc.ir.graph import (
    BlockInst,
    Graph,
    GroupInst,
    Inst,
    LayerInst,
    ParallelInst,
    StageInst,
    path_reads,
)
from archc.ops import Shape


@dataclass(frozen=True)
class DNode:
    id: str
    label: str
    kind: str  # io | layer | block | add | concat


@dataclass(frozen=True)
class DEdge:
    src: str
    dst: str
    shape: str
    kind: str = "data"  # data | skip | dense
    note: str = ""  # what a skip or dense edge carries, e.g. "projection"


@dataclass(frozen=True)
class Cluster:
    id: str
    label: str
    members: tuple[str, ...]  # node ids, and ids of nested clusters
    clusters: tuple[Cluster, ...] = ()


@dataclass(frozen=True)
class Diagram:
    name: str
    level: str
    nodes: tuple[DNode, ...]
    edges: tuple[DEdge, ...]
    clusters: tuple[Cluster, ...]

    def to_dot(self) -> str:
        return to_dot(self)

    def to_mermaid(self) -> str:
        return to_mermaid(self)

    def svg(self) -> str:
        """The diagram drawn by Graphviz's `dot` as SVG text (a SpecError saying how to install
        Graphviz when `dot` is not on PATH)."""
        return render_svg(to_dot(self))

    # Notebooks (IPython/Jupyter): inline SVG where Graphviz is installed; otherwise a
    # Mermaid block, which JupyterLab and GitHub draw themselves.
    def _repr_svg_(self) -> str | None:
        return self.svg() if shutil.which("dot") else None

    def _repr_markdown_(self) -> str | None:
        return None if shutil.which("dot") else f"```mermaid\n{to_mermaid(self)}```\n"


def describe(op: ops.Op) -> str:
    """A short, readable description of a primitive op: 'conv 3×3 /2, 128'."""
    return op.label()


def shape_label(shape: Shape) -> str:
    return "×".join(map(str, shape.as_tuple()))


def diagram(graph: Graph, level: str = "blocks", expand: bool = False) -> Diagram:
    if level == "layers":
        return _layers(graph)
    if level != "blocks":
        raise ValueError(f"unknown level {level!r}; choose blocks or layers")
    return _Blocks(graph, expand).build()


def _layers(graph: Graph) -> Diagram:
    shapes = {"input": graph.input_shape, **{n.id: n.shape for n in graph.nodes}}
    nodes = [DNode("input", f"input\n{shape_label(graph.input_shape)}", "io")]
    edges: list[DEdge] = []
    for n in graph.nodes:
        kind = {"add": "add", "concat": "concat", "multiply": "add"}.get(n.op.kind, "layer")
        name, text = n.id.rsplit(".", 1)[-1], describe(n.op)
        nodes.append(DNode(n.id, n.op.label() if kind == "add" else name if text == name else f"{name}\n{text}", kind))
        for i, src in enumerate(n.inputs):
            edges.append(DEdge(src, n.id, shape_label(shapes[src]), EDGE_KINDS[n.edge(i)]))
    for nid, label, src, shape in _outputs(graph, graph.nodes[-1].id, {o.item: o.node for o in graph.outputs}):
        nodes.append(DNode(nid, label, "io"))
        edges.append(DEdge(src, nid, shape_label(shape)))
    return Diagram(graph.name, "layers", tuple(nodes), tuple(edges), _instance_clusters(graph))


def _outputs(graph: Graph, last: str, sources: dict[str, str]) -> list[tuple[str, str, str, Shape]]:
    """The output nodes: (id, label, the diagram node it comes from, shape); one per key of `outputs:`."""
    if not graph.outputs:
        return [("output", "output", last, graph.output_shape)]
    return [(f"output.{o.key}", f"output {o.key}", sources[o.item], o.shape) for o in graph.outputs]


def _instance_clusters(graph: Graph) -> tuple[Cluster, ...]:
    """Clusters for groups, stages and block instances, nested as in the model."""

    def walk(items: tuple[Inst, ...], prefix: str) -> tuple[list[str], list[Cluster]]:
        members: list[str] = []
        clusters: list[Cluster] = []
        for item in items:
            path = prefix + item.name
            if isinstance(item, LayerInst):
                members.append(path)
            elif isinstance(item, GroupInst):
                clusters.append(_cluster(path, item.name, *walk(item.items, path + ".")))
            elif isinstance(item, ParallelInst):  # its paths and the merge
                inner_members, inner = walk(item.items, path + ".")
                clusters.append(_cluster(path, f"{item.name}: parallel", [*inner_members, path], inner))
            elif isinstance(item, BlockInst):
                clusters.append(_cluster(path, f"{item.name}: {item.block}", _ids_under(graph, path), []))
            else:
                inner = [_cluster(f"{path}.{b.name}", f"{b.name}: {b.block}", _ids_under(graph, f"{path}.{b.name}"), [])
                         for b in item.instances]  # fmt: skip
                merges = [n.id for n in graph.nodes if n.id.startswith(path + ".") and n.op.kind == "concat"]
                clusters.append(_cluster(path, f"{item.name}: {item.block} ×{len(item.instances)}", merges, inner))
        return members, clusters

    return tuple(walk(graph.body, "")[1])


def _cluster(cid: str, label: str, members: list[str], clusters: list[Cluster]) -> Cluster:
    return Cluster(cid, label, tuple(members), tuple(clusters))


def _ids_under(graph: Graph, path: str) -> list[str]:
    return [n.id for n in graph.nodes if n.id.startswith(path + ".")]


class _Blocks:
    """Builds the block-level diagram by walking the instance tree with the current source node."""

    def __init__(self, graph: Graph, expand: bool):
        self.graph, self.expand = graph, expand
        self.nodes: list[DNode] = [DNode("input", f"input\n{shape_label(graph.input_shape)}", "io")]
        self.edges: list[DEdge] = []
        self.paths: dict[str, str] = {}  # the diagram node of each model-level tensor, by its path

    def build(self) -> Diagram:
        cur, clusters = self.items(self.graph.body, "", "input")
        for nid, label, src, shape in _outputs(self.graph, cur, {**self.paths, **self.top}):
            self.nodes.append(DNode(nid, label, "io"))
            self.edges.append(DEdge(src, nid, shape_label(shape)))
        return Diagram(self.graph.name, "blocks", tuple(self.nodes), tuple(self.edges), tuple(clusters))

    def parallel(self, item: ParallelInst, path: str, srcs: list[str]) -> Cluster:
        """A module list: each path from its input (`srcs`: diagram nodes; a row of a grid, its
        paths from theirs), then the merge, the node `path`."""
        first = len(self.nodes)
        ends, inner = [], []
        for child, read in zip(item.items, path_reads(item.items, srcs)):
            if isinstance(child, ParallelInst):
                inner.append(self.parallel(child, f"{path}.{child.name}", list(read)))
                ends.append(f"{path}.{child.name}")
                continue
            end, more = self.items((child,), path + ".", read[0])
            ends.append(end)
            inner += more
        kind = "concat" if item.merge == "concat" else "add"
        self.nodes.append(DNode(path, item.name if kind == "concat" else ops.KINDS[item.merge]().label(), kind))
        self.edges += [DEdge(end, path, "", EDGE_KINDS["branch"]) for end in ends]
        members = [n.id for n in self.nodes[first:] if not any(n.id in c.members for c in inner)]
        return Cluster(path, item.name, tuple(members), tuple(inner))

    def items(self, items: tuple[Inst, ...], prefix: str, cur: str) -> tuple[str, list[Cluster]]:
        clusters: list[Cluster] = []
        outs = {"input": cur}  # the diagram node holding each named tensor, for `from:` and merges
        for item in items:
            path = prefix + item.name
            first = len(self.nodes)
            if item.inputs and not (isinstance(item, LayerInst) and item.op.MERGE):
                cur = outs.get(item.inputs[0]) or self.paths[item.inputs[0]]
            if isinstance(item, LayerInst) and item.op.MERGE:
                kind = "concat" if item.op.kind == "concat" else "add"
                self.nodes.append(DNode(path, item.name if kind == "concat" else item.op.label(), kind))
                node = next(n for n in self.graph.nodes if n.id == path)
                for i, name in enumerate(item.inputs):
                    self.edges.append(DEdge(outs.get(name) or self.paths[name], path, "", EDGE_KINDS[node.edge(i)]))
                cur = path
            elif isinstance(item, LayerInst):
                text = describe(item.op)
                self.node(path, item.name if text == item.name else f"{item.name}\n{text}", "layer", cur, item.in_shape)
                cur = path
            elif isinstance(item, GroupInst):
                cur, inner = self.items(item.items, path + ".", cur)
                members = [n.id for n in self.nodes[first:] if not any(n.id in c.members for c in inner)]
                clusters.append(Cluster(path, item.name, tuple(members), tuple(inner)))
            elif isinstance(item, ParallelInst):  # each path from its input, then the merge
                clusters.append(self.parallel(item, path, [outs.get(src) or self.paths[src] for src in item.inputs]))
                cur = path
            elif isinstance(item, BlockInst):
                cur = self.block(path, f"{item.name}\n{item.block}{self.args(item)}", item, [item], cur)
                for name, shape in zip(item.inputs[1:], item.more_in):  # a kind with several inputs: the others
                    self.edges.append(DEdge(outs.get(name) or self.paths[name], path, shape_label(shape)))
                for o in item.more_outputs:  # and several outputs: each read from the block's box
                    outs[f"{item.name}.{o}"] = self.paths[f"{path}.{o}"] = cur
            elif item.connectivity == "dense":
                cur = self.dense_stage(path, item, cur)
            elif self.expand or len(item.instances) == 1:
                for inst in item.instances:
                    label = f"{path}.{inst.name}\n{inst.block}{self.args(inst)}"
                    cur = self.block(f"{path}.{inst.name}", label, inst, [inst], cur)
            else:
                label = f"{item.name}\n{item.block} ×{len(item.instances)}{self.stage_args(item)}"
                cur = self.block(path, label, item.instances[0], list(item.instances), cur)
            outs[item.name] = cur
            self.paths[path] = cur  # a tensor read by its path from outside its container (`fpn.inner_blocks.2`)
        if not prefix:
            self.top = outs  # the model-level tensors, for the outputs
        return cur, clusters

    def node(self, nid: str, label: str, kind: str, src: str, shape: Shape) -> None:
        self.nodes.append(DNode(nid, label, kind))
        self.edges.append(DEdge(src, nid, shape_label(shape)))

    def block(self, nid: str, label: str, inst: BlockInst, instances: list[BlockInst], cur: str) -> str:
        """A block box (or a collapsed stage of them); a residual block adds its "+" and skip edge."""
        self.node(nid, label, "block", cur, inst.in_shape)
        btype = self.graph.block(inst.block)
        if btype.connectivity != "skip":
            return nid
        add = f"{nid}.add"
        after = ", ".join(layer.name for layer in btype.after)
        self.nodes.append(DNode(add, "+" + (f" → {after}" if after else ""), "add"))
        self.edges.append(DEdge(nid, add, shape_label(instances[-1].out_shape)))
        by_name = {sc.name: sc.kind for sc in btype.shortcuts}
        kinds = [by_name[i.shortcut] if i.shortcut else "identity" for i in instances]
        counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
        note = ", ".join(SHORTCUTS[k] if len(instances) == 1 else f"{SHORTCUTS[k]} ×{c}" for k, c in counts.items())
        self.edges.append(DEdge(cur, add, shape_label(inst.in_shape), "skip", note))
        return add

    def dense_stage(self, path: str, stage: StageInst, cur: str) -> str:
        """Each instance reads the running concatenation and adds its features to it."""
        if not self.expand:
            label = f"{stage.name}\n{stage.block} ×{len(stage.instances)}{self.stage_args(stage)}"
            self.node(path, label, "block", cur, stage.in_shape)
            concat = f"{path}.concat"
            self.nodes.append(DNode(concat, f"concat ×{len(stage.instances)}", "concat"))
            grown = stage.out_shape.c - stage.in_shape.c
            new = Shape(grown, stage.out_shape.size)
            self.edges.append(DEdge(path, concat, shape_label(new)))
            self.edges.append(DEdge(cur, concat, shape_label(stage.in_shape), "dense", "dense"))
            return concat
        running, shape = cur, stage.in_shape
        for inst in stage.instances:
            nid = f"{path}.{inst.name}"
            self.node(nid, f"{nid}\n{inst.block}{self.args(inst)}", "block", running, shape)
            concat = f"{nid}_concat"
            self.nodes.append(DNode(concat, "concat", "concat"))
            self.edges.append(DEdge(nid, concat, shape_label(inst.out_shape)))
            self.edges.append(DEdge(running, concat, shape_label(shape), "dense", "dense"))
            shape = Shape(shape.c + inst.out_shape.c, shape.size)
            running = concat
        return running


    def changed(self, inst: BlockInst) -> dict[str, object]:
        """The arguments that differ from the block's defaults (all of the required ones)."""
        defaults = {name: default for name, default, _ in self.graph.block(inst.block).params}
        return {k: v for k, v in inst.args if defaults.get(k) is None or defaults[k] != v}

    def args(self, inst: BlockInst) -> str:
        return _args(self.changed(inst))

    def stage_args(self, stage: StageInst) -> str:
        """The arguments of the middle instances, then what the first and last ones change."""
        insts = stage.instances
        middle = insts[len(insts) // 2] if len(insts) > 2 else insts[-1]
        common = dict(middle.args)
        out = _args(self.changed(middle))
        for label, inst in (("first", insts[0]), ("last", insts[-1])):
            diff = {k: v for k, v in inst.args if common[k] != v}
            if diff and inst is not middle:
                out += f"\n{label}: " + _args(diff).strip()
        return out


SHORTCUTS = {"identity": "identity", "projection": "projection", "option_a": "option A"}


def _args(args: dict[str, object]) -> str:
    return "\n" + ", ".join(f"{k}={v}" for k, v in args.items()) if args else ""


# --- writers ----------------------------------------------------------------------------

NODE_STYLE = {
    "io": 'shape=oval, style=filled, fillcolor="#eeeeee"',
    "layer": 'shape=box, style="rounded,filled", fillcolor="#dbe9f6"',
    "block": 'shape=box, style="rounded,filled", fillcolor="#fde9c9"',
    "add": 'shape=circle, style=filled, fillcolor="#c7e9c0", fontsize=11',
    "concat": 'shape=box, style=filled, fillcolor="#f4c7c3", fontsize=11',
}
EDGE_STYLE = {
    "data": "",
    "skip": ', style=dashed, color="#2b8a3e", fontcolor="#2b8a3e"',
    "dense": ', style=bold, color="#c92a2a", fontcolor="#c92a2a"',
    "gate": ', style=dotted, color="#5f3dc4", fontcolor="#5f3dc4"',
}
# IR edge kinds (archc.ir.graph.Node.edges) -> diagram edge styles
EDGE_KINDS = {"data": "data", "residual": "skip", "dense": "dense", "branch": "data", "gate": "gate"}


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(d: Diagram) -> str:
    out = [
        f"digraph {_q(d.name)} {{",
        "  rankdir=TB;",
        '  node [fontname="Helvetica", fontsize=12];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    styles = {n.id: NODE_STYLE[n.kind] for n in d.nodes}
    labels = {n.id: n.label for n in d.nodes}

    def emit_node(nid: str, indent: str) -> None:
        out.append(f"{indent}{_q(nid)} [label={_q(labels[nid])}, {styles[nid]}];")

    def emit_cluster(c: Cluster, indent: str) -> None:
        out.append(f"{indent}subgraph {_q('cluster_' + c.id)} {{")
        out.append(f'{indent}  label={_q(c.label)}; style="rounded,dashed"; color="#999999";')
        for member in c.members:
            emit_node(member, indent + "  ")
        for inner in c.clusters:
            emit_cluster(inner, indent + "  ")
        out.append(f"{indent}}}")

    clustered = _clustered(d.clusters)
    for n in d.nodes:
        if n.id not in clustered:
            emit_node(n.id, "  ")
    for c in d.clusters:
        emit_cluster(c, "  ")
    for e in d.edges:
        label = f"{e.note}\n{e.shape}" if e.note else e.shape
        out.append(f"  {_q(e.src)} -> {_q(e.dst)} [label={_q(label)}{EDGE_STYLE[e.kind]}];")
    out.append("}")
    return "\n".join(out) + "\n"


def _clustered(clusters: tuple[Cluster, ...]) -> set[str]:
    ids: set[str] = set()
    for c in clusters:
        ids.update(c.members)
        ids |= _clustered(c.clusters)
    return ids


MERMAID_SHAPES = {"io": ("([", "])"), "layer": ("(", ")"), "block": ("[", "]"), "add": ("((", "))"), "concat": ("[[", "]]")}
MERMAID_ARROWS = {"data": "-->", "skip": "-.->", "dense": "==>", "gate": "-.->"}


def to_mermaid(d: Diagram) -> str:
    """Mermaid flowchart: skip edges dotted, dense edges thick; ids are n0, n1, ... in node
    order and c0, c1, ... for clusters."""
    ids = {n.id: f"n{i}" for i, n in enumerate(d.nodes)}
    out = ["flowchart TB"]

    def label(text: str) -> str:
        return '"' + text.replace('"', "#quot;").replace("\n", "<br/>") + '"'

    def emit_node(n: DNode, indent: str) -> None:
        left, right = MERMAID_SHAPES[n.kind]
        out.append(f"{indent}{ids[n.id]}{left}{label(n.label)}{right}")

    by_id = {n.id: n for n in d.nodes}

    clusters = 0

    def emit_cluster(c: Cluster, indent: str) -> None:
        nonlocal clusters
        out.append(f"{indent}subgraph c{clusters}[{label(c.label)}]")
        clusters += 1
        for member in c.members:
            emit_node(by_id[member], indent + "  ")
        for inner in c.clusters:
            emit_cluster(inner, indent + "  ")
        out.append(f"{indent}end")

    clustered = _clustered(d.clusters)
    for n in d.nodes:
        if n.id not in clustered:
            emit_node(n, "  ")
    for c in d.clusters:
        emit_cluster(c, "  ")
    for e in d.edges:
        text = f"{e.note} {e.shape}" if e.note else e.shape
        out.append(f"  {ids[e.src]} {MERMAID_ARROWS[e.kind]}|{label(text)}| {ids[e.dst]}")
    styles = {
        "skip": "stroke:#2b8a3e,stroke-dasharray:4",
        "dense": "stroke:#c92a2a,stroke-width:3px",
        "gate": "stroke:#5f3dc4,stroke-dasharray:2",
    }
    for i, e in enumerate(d.edges):
        if e.kind in styles:
            out.append(f"  linkStyle {i} {styles[e.kind]}")
    return "\n".join(out) + "\n"


INSTALL_GRAPHVIZ = (
    "svg and png are drawn by Graphviz's `dot`, which is not on PATH: install Graphviz "
    "(apt-get install graphviz, brew install graphviz or conda install graphviz), "
    "or write --format dot or --format mermaid (in Python: .to_dot() or .to_mermaid())"
)


def render(dot_text: str, form: str) -> bytes:
    """`dot_text` drawn by Graphviz's `dot` as `form` (svg, png); a SpecError when dot is not on PATH."""
    dot = shutil.which("dot")
    if dot is None:
        raise SpecError(INSTALL_GRAPHVIZ)
    result = subprocess.run([dot, f"-T{form}"], input=dot_text.encode(), capture_output=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"dot failed on archc's output: {result.stderr.decode(errors='replace')}")
    return result.stdout


@lru_cache(maxsize=16)
def render_svg(dot_text: str) -> str:
    """SVG text for a notebook (cached: IPython asks for several representations)."""
    return render(dot_text, "svg").decode()
