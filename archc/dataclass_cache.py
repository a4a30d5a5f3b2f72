"""A cache of the methods `dataclasses` compiles, for the command line's start-up.

Python 3.11's `dataclasses` writes each method it generates (`__init__`, `__repr__`,
`__eq__`, `__hash__`, `__setattr__`, `__delattr__`) as source text and compiles it with
`exec` whenever a class is created: about 550 methods, 25-30 ms, of every `archc check`
(archc's op and IR classes, and the classes pydantic and annotated_types define). Like
Python's own bytecode cache, this keeps the code compiled from each text in `__pycache__`
(one file per Python version) and runs that instead of compiling again. Code compiled from
the same text is the same, so the classes are exactly the ones `dataclasses` makes.

Only classes of the packages in CACHED are served (the file holds nothing else). The file
is written at exit when something new was compiled, unless writing bytecode is off
(PYTHONDONTWRITEBYTECODE), as for .pyc files; a missing or unreadable file costs only the
compiling. `install()` is called by the `archc` command (archc/__main__.py) before anything makes a dataclass.
"""

from __future__ import annotations

import atexit
import dataclasses
import marshal
import os
import sys
import types
from pathlib import Path
from typing import Any

CACHED = ("archc", "pydantic", "annotated_types")  # top-level packages whose dataclasses are served
FILE = Path(__file__).parent / "__pycache__" / f"dataclass_methods.{sys.implementation.cache_tag}.marshal"

_codes: dict[str, types.CodeType] = {}
_added: list[str] = []  # texts compiled by this process, not yet in the file


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: dict[str, Any] | None = None) -> None:
    """`exec` as `dataclasses` calls it (the text of a function, the class's module globals)."""
    package = (globals or {}).get("__name__", "").partition(".")[0]
    if not isinstance(source, str) or package not in CACHED:
        return exec(source, globals, locals)
    code = _codes.get(source)
    if code is None:  # dont_inherit: compile as `exec` in dataclasses would, without this module's __future__
        code = _codes[source] = compile(source, "<string>", "exec", dont_inherit=True)
        _added.append(source)
    return exec(code, globals, locals)


def install() -> None:
    if getattr(dataclasses, "exec", None) is _exec:
        return
    try:
        saved = marshal.loads(FILE.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        saved = None
    if isinstance(saved, dict):
        _codes.update(saved)
    dataclasses.exec = _exec  # type: ignore[attr-defined]  # the module's global `exec`, not the builtin
    atexit.register(_save)


def _save() -> None:
    if not _added or sys.dont_write_bytecode:
        return
    try:
        FILE.parent.mkdir(exist_ok=True)
        tmp = FILE.with_name(f"{FILE.name}.{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(_codes))
        os.replace(tmp, FILE)  # another process may write the same file: each write is whole
    except OSError:
        pass
