"""What `archc check`'s start-up savings (bench/RESULTS.md, issue 14) must leave unchanged."""

from __future__ import annotations

import dataclasses
import json
import marshal
import os
import subprocess
import sys
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


RUN_CHECK = """
import sys
from archc import dataclass_cache
dataclass_cache.FILE = dataclass_cache.Path(sys.argv[1])
from archc.cli import main
sys.argv = ["archc", "check", "specs/resnet50.yaml", "--json"]
try:
    main()
finally:
    print(len(dataclass_cache._added), file=sys.stderr)
"""


def test_dataclass_cache_serves_what_dataclasses_compiles(tmp_path) -> None:
    """The CLI's cache of dataclass methods (archc/dataclass_cache.py): a first run compiles and
    writes every method, a second compiles none and prints the same; each cached code object
    equals what compiling its text gives."""
    file = tmp_path / "methods.marshal"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    runs = [
        subprocess.run([sys.executable, "-c", RUN_CHECK, str(file)], cwd=ROOT, env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)
    assert int(runs[0].stderr.split()[-1]) > 300 and int(runs[1].stderr.split()[-1]) == 0
    codes = marshal.loads(file.read_bytes())
    assert len(codes) > 300 and all(text.startswith("def __create_fn__(") for text in codes)
    for text, code in codes.items():
        assert code == compile(text, "<string>", "exec", dont_inherit=True)
