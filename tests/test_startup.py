"""What `archc check`'s start-up savings (bench/RESULTS.md, issue 14) must leave unchanged."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import subprocess
import sys

from conftest import ROOT

RUN_CHECK = """
import sys
from archc import compile_cache
compile_cache.FILE = compile_cache.Path(sys.argv[1])
from archc.__main__ import main
sys.argv = ["archc", "check", "specs/resnet50.yaml", "--json"]
try:
    main()
finally:
    print(compile_cache._added, file=sys.stderr)
"""


def test_compile_cache_serves_what_python_compiles(tmp_path) -> None:
    """The command's cache of code compiled from text (archc/compile_cache.py): a first run
    compiles and writes every dataclass method and forward reference, a second compiles none
    and prints the same; each cached code object equals what compiling its text gives."""
    file = tmp_path / "compiled.marshal"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    runs = [
        subprocess.run([sys.executable, "-c", RUN_CHECK, str(file)], cwd=ROOT, env=env, capture_output=True, text=True)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    assert json.loads(runs[0].stdout) == json.loads(runs[1].stdout)
    assert int(runs[0].stderr.split()[-1]) > 500 and int(runs[1].stderr.split()[-1]) == 0
    magic, codes = marshal.loads(file.read_bytes())
    assert magic == importlib.util.MAGIC_NUMBER
    methods = {text: code for (mode, text), code in codes.items() if mode == "exec"}
    references = {text: code for (mode, text), code in codes.items() if mode == "eval"}
    assert len(methods) > 300 and all(text.startswith("def __create_fn__(") for text in methods)
    assert len(references) > 200  # pydantic_core's TypedDicts, typing_extensions, ...
    for (mode, text), code in codes.items():
        assert code == compile(text, "<string>", mode, dont_inherit=True)
    # a file written by another bytecode version (same cache tag, as a pre-release may have)
    # is not used, as a .pyc with another magic number is not: everything is compiled again
    file.write_bytes(marshal.dumps((b"\0\0\r\n", codes)))
    again = subprocess.run([sys.executable, "-c", RUN_CHECK, str(file)], cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and int(again.stderr.split()[-1]) > 500, again.stderr


def test_forward_references_are_typings_own() -> None:
    """A forward reference made while the cache serves `typing.compile` evaluates as one made
    by Python itself, and other compiles (another file name, mode or flags) pass through."""
    script = """
import typing
from archc import compile_cache
compile_cache.install()
ref = typing.ForwardRef("list[int] | None")
assert ref.__forward_code__ == compile("list[int] | None", "<string>", "eval")
assert typing.get_type_hints(type("T", (), {"__annotations__": {"x": "dict[str, int]"}}))["x"] == dict[str, int]
assert typing.compile("1 + 1", "<x>", "eval").co_filename == "<x>"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout == "ok\n", run.stderr
