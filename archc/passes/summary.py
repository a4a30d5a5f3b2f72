"""Summary pass: per-item output shapes, parameter counts and MACs, from the IR alone.

MACs count the multiply-accumulates of convolutions and dense layers, the
convention behind torchvision's "GFLOPS" column (ResNet-50: 4.09 G at 224x224).
Activation memory is the float32 size of every IR node's output (every conv,
BN, activation, pool, add and concat) for a batch: what a plain forward pass
keeps for backward, before in-place or checkpointing savings.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass

from archc.ir.graph import Graph, GroupInst, Inst, ParallelInst, StageInst


@dataclass(frozen=True)
class Row:
    name: str  # module path, e.g. features.denseblock1
    kind: str  # the op, or block kind (x repeats)
    output_shape: tuple[int, ...]
    trainable: int
    non_trainable: int
    macs: int


@dataclass(frozen=True, repr=False)
class Summary:
    model: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    rows: tuple[Row, ...]
    trainable: int
    non_trainable: int
    macs: int
    level: str = "blocks"  # blocks: model-level items, blocks and stages; layers: every IR node
    batch: int = 1
    activation_bytes: int = 0  # float32 outputs of every node for `batch` samples
    outputs: tuple[tuple[str, tuple[int, ...]], ...] = ()  # several outputs (`outputs:`): key, shape

    @property
    def shown_output(self) -> str:
        """`(1000,)`, or `out (21, 224, 224), aux (21, 224, 224)` for several outputs."""
        if not self.outputs:
            return str(self.output_shape)
        return ", ".join(f"{key} {shape}" for key, shape in self.outputs)

    @property
    def total(self) -> int:
        return self.trainable + self.non_trainable

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        return {**asdict(self), "outputs": {key: list(shape) for key, shape in self.outputs}, "total": self.total}

    def __str__(self) -> str:
        return to_table(self)

    def __repr__(self) -> str:
        """The table: what a REPL shows for `archc.summary(spec)`."""
        return to_table(self)

    def _repr_html_(self) -> str:
        """The summary table in a notebook (IPython/Jupyter), with the totals as a footer."""
        return to_html(self)


def summarize(graph: Graph, level: str = "blocks", batch: int = 1) -> Summary:
    if level not in ("blocks", "layers"):
        raise ValueError(f"unknown level {level!r}; choose blocks or layers")
    macs_under = _macs_by_prefix(graph)
    rows: list[Row] = []

    def walk(items: tuple[Inst, ...], prefix: str) -> None:
        for item in items:
            path = f"{prefix}{item.name}"
            if isinstance(item, GroupInst):
                walk(item.items, path + ".")
                continue
            if isinstance(item, ParallelInst):  # its paths, then the merge
                walk(item.items, path + ".")
                rows.append(Row(path, item.merge, item.out_shape.as_tuple(), 0, 0, 0))
                continue
            if isinstance(item, StageInst):
                kind = f"{item.block} x{len(item.instances)}" + (" (dense)" if item.connectivity == "dense" else "")
            elif hasattr(item, "op"):
                kind = item.op.kind  # type: ignore[union-attr]
            else:
                kind = item.block  # type: ignore[union-attr]
            c = item.counts
            rows.append(Row(path, kind, item.out_shape.as_tuple(), c.trainable, c.non_trainable, macs_under.get(path, 0)))

    if level == "blocks":
        walk(graph.body, "")
    else:
        rows = [Row(n.id, n.op.kind, n.shape.as_tuple(), n.trainable, n.non_trainable, n.macs) for n in graph.nodes]
    c = graph.counts
    macs = sum(n.macs for n in graph.nodes)
    activations = 4 * batch * sum(n.shape.numel() for n in graph.nodes)
    return Summary(
        graph.name, graph.input_shape.as_tuple(), graph.output_shape.as_tuple(), tuple(rows), c.trainable,
        c.non_trainable, macs, level, batch, activations, tuple((o.key, o.shape.as_tuple()) for o in graph.outputs),
    )  # fmt: skip


def _macs_by_prefix(graph: Graph) -> dict[str, int]:
    """MACs under every module path: `layer1.0.conv1` counts for itself, `layer1.0` and `layer1`."""
    out: dict[str, int] = {}
    for node in graph.nodes:
        if node.macs:
            parts = node.id.split(".")
            for i in range(1, len(parts) + 1):
                key = ".".join(parts[:i])
                out[key] = out.get(key, 0) + node.macs
    return out


def si(n: int) -> str:
    """1234567 -> '1.23 M'; MACs read best in engineering units."""
    for unit, scale in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def columns(rows: list[tuple[str, ...]], left: int = 3) -> tuple[list[str], str]:
    """Rows as aligned text (the first `left` columns to the left, numbers to the right),
    and a rule as wide as the columns; the text tables of summary, diff and batch builds."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(v.ljust(w) if i < left else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths))).rstrip()
        for r in rows
    ]
    return lines, "  ".join("-" * w for w in widths)


def to_html(s: Summary) -> str:
    esc = html.escape
    head = "".join(f"<th style='text-align:{a}'>{h}</th>" for h, a in zip(_HEADER, _ALIGN))
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:{a}'>{esc(v)}</td>" for v, a in zip(_cells(r), _ALIGN)) + "</tr>"
        for r in s.rows
    )
    foot = (
        f"trainable {s.trainable:,} &nbsp; non-trainable {s.non_trainable:,} &nbsp; total {s.total:,} &nbsp; "
        f"MACs {si(s.macs)}<br>activations, batch {s.batch} (float32, every layer output): "
        f"{s.activation_bytes / 2**20:,.1f} MiB &nbsp; parameters (float32): {4 * s.total / 2**20:,.1f} MiB"
    )
    return (
        f"<div><b>{esc(s.model)}</b>: input {esc(str(s.input_shape))} &rarr; {'outputs' if s.outputs else 'output'} {esc(s.shown_output)}"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        f"<tfoot><tr><td colspan='{len(_HEADER)}'>{foot}</td></tr></tfoot></table></div>"
    )


_HEADER = ("layer", "kind", "output shape", "trainable", "non-trainable", "MACs")
_ALIGN = ("left", "left", "left", "right", "right", "right")


def _cells(r: Row) -> tuple[str, ...]:
    return (r.name, r.kind, str(r.output_shape), f"{r.trainable:,}", f"{r.non_trainable:,}", si(r.macs))


def overview(reports: list[tuple[str, Summary]], batch: int) -> str:
    """One row of totals per spec: `archc summary DIRECTORY`."""
    header = ("spec", "model", "output shape", "trainable", "non-trainable", "MACs", f"activations, batch {batch}")
    rows = [
        (path, s.model, s.shown_output, f"{s.trainable:,}", f"{s.non_trainable:,}", si(s.macs),
         f"{s.activation_bytes / 2**20:,.1f} MiB")
        for path, s in reports
    ]  # fmt: skip
    lines, rule = columns([header, *rows])
    return "\n".join([lines[0], rule, *lines[1:]])


def to_table(s: Summary) -> str:
    lines, rule = columns([_HEADER, *(_cells(r) for r in s.rows)])
    out = [f"{s.model}: input {s.input_shape} -> {'outputs' if s.outputs else 'output'} {s.shown_output}", lines[0], rule, *lines[1:], rule]
    out.append(f"trainable {s.trainable:,}   non-trainable {s.non_trainable:,}   total {s.total:,}   MACs {si(s.macs)}")
    out.append(
        f"activations, batch {s.batch} (float32, every layer output): {s.activation_bytes / 2**20:,.1f} MiB"
        f"   parameters (float32): {4 * s.total / 2**20:,.1f} MiB"
    )
    return "\n".join(out)
