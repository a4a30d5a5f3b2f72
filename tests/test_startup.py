"""What `archc check`'s start-up savings (bench/RESULTS.md, issue 14) must leave unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

from conftest import ROOT

from archc import ops
from archc.lower import lower
from archc.spec.loader import load_spec

SPECS = ("resnet50.yaml", "convnext_tiny.yaml", "mobilenet_v3_large.yaml", "inception_v3.yaml", "shufflenet_v2.yaml")


def test_ops_compare_hash_and_print_as_dataclasses() -> None:
    """Op kinds are `dataclass(frozen=True, eq=False, repr=False)` and take ==, hash and repr
    from Op: the same results as the methods dataclass(frozen=True) would generate."""
    seen: set[str] = set()
    for spec in SPECS:
        for node in lower(load_spec(ROOT / "specs" / spec)).nodes:
            op = node.op
            seen.add(op.kind)
            twin = dataclasses.make_dataclass(
                type(op).__name__, [(f.name, Any) for f in dataclasses.fields(op)], frozen=True
            )
            twin.__qualname__ = type(op).__qualname__
            ref = twin(**op.values())
            assert repr(op) == repr(ref)
            assert hash(op) == hash(ref)
            assert op == dataclasses.replace(op) and not (op != dataclasses.replace(op))
            assert op != ref  # another class: never equal, as between two dataclasses
    assert len(seen) >= 15
    for op in ops.ALL.values():
        assert "__eq__" not in vars(op) and "__repr__" not in vars(op) and "__hash__" not in vars(op), op
        assert op.__dataclass_params__.frozen, op  # type: ignore[attr-defined]
