"""What `archc check`'s start-up savings (bench/RESULTS.md, issue 14) must leave unchanged."""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys

from conftest import ROOT

RUN_CHECK = """
import sys
from archc import dataclass_cache
dataclass_cache.FILE = dataclass_cache.Path(sys.argv[1])
from archc.__main__ import main
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
