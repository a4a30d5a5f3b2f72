"""Diff pass: two summaries side by side, matched by layer path, with deltas."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from archc.passes.summary import Row, Summary, columns, si


@dataclass(frozen=True)
class DiffRow:
    name: str
    a: Row | None  # None: the layer exists only in B
    b: Row | None


@dataclass(frozen=True)
class Diff:
    a: Summary
    b: Summary
    label_a: str
    label_b: str
    rows: tuple[DiffRow, ...]

    def to_dict(self) -> dict:  # type: ignore[type-arg]
        def side(r: Row | None) -> dict | None:  # type: ignore[type-arg]
            return None if r is None else {k: v for k, v in asdict(r).items() if k != "name"}

        def totals(s: Summary) -> dict:  # type: ignore[type-arg]
            return {"trainable": s.trainable, "non_trainable": s.non_trainable, "total": s.total, "macs": s.macs,
                    "output_shape": s.output_shape}  # fmt: skip

        ta, tb = totals(self.a), totals(self.b)
        return {
            "a": {"label": self.label_a, "model": self.a.model, **ta},
            "b": {"label": self.label_b, "model": self.b.model, **tb},
            "delta": {k: tb[k] - ta[k] for k in ("trainable", "non_trainable", "total", "macs")},
            "rows": [{"name": r.name, "a": side(r.a), "b": side(r.b)} for r in self.rows],
        }


def diff(a: Summary, b: Summary, label_a: str, label_b: str) -> Diff:
    """A's rows in order; a row only B has comes right after the row it follows in B."""
    b_rows = {r.name: r for r in b.rows}
    matched = [DiffRow(r.name, r, b_rows.get(r.name)) for r in a.rows]
    position = {r.name: i for i, r in enumerate(matched)}
    inserts: dict[int, list[DiffRow]] = {}
    after = -1
    for rb in b.rows:
        if rb.name in position:
            after = position[rb.name]
        else:
            inserts.setdefault(after, []).append(DiffRow(rb.name, None, rb))
    rows = inserts.get(-1, [])
    for i, r in enumerate(matched):
        rows += [r, *inserts.get(i, [])]
    return Diff(a, b, label_a, label_b, tuple(rows))


def _delta(a: int, b: int, fmt) -> str:  # type: ignore[no-untyped-def]
    d = b - a
    return "" if d == 0 else ("+" if d > 0 else "-") + fmt(abs(d))


def to_table(d: Diff) -> str:
    comma = "{:,}".format
    header = ("layer", "A shape", "B shape", "A params", "B params", "delta", "A MACs", "B MACs", "delta")

    def row(name: str, a: Row | None, b: Row | None) -> tuple[str, ...]:
        pa, pb = (a.trainable + a.non_trainable if a else 0), (b.trainable + b.non_trainable if b else 0)
        ma, mb = (a.macs if a else 0), (b.macs if b else 0)
        return (
            name, str(a.output_shape) if a else "-", str(b.output_shape) if b else "-",
            comma(pa) if a else "-", comma(pb) if b else "-", _delta(pa, pb, comma),
            si(ma) if a else "-", si(mb) if b else "-", _delta(ma, mb, si),
        )  # fmt: skip

    body = [row(r.name, r.a, r.b) for r in d.rows]
    ta, tb = d.a, d.b
    total = (
        "total", str(ta.output_shape), str(tb.output_shape), comma(ta.total), comma(tb.total),
        _delta(ta.total, tb.total, comma), si(ta.macs), si(tb.macs), _delta(ta.macs, tb.macs, si),
    )  # fmt: skip
    lines, rule = columns([header, *body, total])
    trainable = f"trainable: A {ta.trainable:,}  B {tb.trainable:,}  delta {_delta(ta.trainable, tb.trainable, comma) or '0'}"
    return "\n".join([f"A: {d.label_a}", f"B: {d.label_b}", lines[0], rule, *lines[1:-1], rule, lines[-1], trainable])
