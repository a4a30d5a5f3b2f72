"""A cache of the code Python compiles from text while the `archc` command starts.

Two kinds of code are compiled from text on every start, the same texts each time:
- `dataclasses` writes each method it generates (`__init__`, `__repr__`, `__eq__`, ...) as
  source and compiles it whenever a class is created: about 550 methods of archc's op and IR
  classes and the classes pydantic and annotated_types define (25-30 ms of an `archc check`);
- `typing` compiles every string annotation it meets into a forward reference: pydantic_core
  declares its core schema as about 90 TypedDicts with 900 such annotations (about 5 % of a
  `check`).
Like Python's own bytecode cache, this keeps the code compiled from each text in
`__pycache__` (one file per Python version) and runs that instead of compiling again. Code
compiled from the same text with the same flags is the same, so the classes and references
are exactly the ones Python makes.

Dataclass methods are served only for the packages in CACHED; forward references for any
module (their text is a type expression, compiled in `eval` mode). The file is written at
exit when something new was compiled, unless writing bytecode is off
(PYTHONDONTWRITEBYTECODE), as for .pyc files; it keeps what this run used and what earlier
runs added, up to MAX_ENTRIES. A missing or unreadable file costs only the compiling.
`install()` is called by the `archc` command (archc/__main__.py) before anything else runs.
"""

# No `from __future__ import annotations` here: a compile passed through to the builtin inherits
# the future flags of this module, and must get none, as when typing calls it.
import atexit
import builtins
import dataclasses
import marshal
import os
import sys
import types
import typing
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from typing import Any

CACHED = ("archc", "pydantic", "annotated_types")  # top-level packages whose dataclasses are served
FILE = Path(__file__).parent / "__pycache__" / f"compiled_text.{sys.implementation.cache_tag}.marshal"
MAX_ENTRIES = 20_000  # beyond this the file keeps only what the last run used

# (mode, text) -> code; mode "exec" for dataclass methods, "eval" for forward references
_codes: dict[tuple[str, str], types.CodeType] = {}
_used: set[tuple[str, str]] = set()
_added = 0  # texts compiled by this process, not yet in the file


def _code(mode: str, source: str) -> types.CodeType:
    global _added
    key = (mode, source)
    code = _codes.get(key)
    if code is None:  # dont_inherit: compile as dataclasses and typing would, without this module's __future__
        code = _codes[key] = builtins.compile(source, "<string>", mode, dont_inherit=True)
        _added += 1
    _used.add(key)
    return code


def _exec(source: Any, globals: dict[str, Any] | None = None, locals: dict[str, Any] | None = None) -> None:
    """`exec` as `dataclasses` calls it (the text of a function, the class's module globals)."""
    package = (globals or {}).get("__name__", "").partition(".")[0]
    if not isinstance(source, str) or package not in CACHED:
        return exec(source, globals, locals)
    return exec(_code("exec", source), globals, locals)


def _compile(source: Any, filename: Any, mode: Any, *args: Any, **kwargs: Any) -> Any:
    """`compile` as `typing.ForwardRef` calls it: `compile(text, '<string>', 'eval')`."""
    if isinstance(source, str) and filename == "<string>" and mode == "eval" and not args and not kwargs:
        return _code("eval", source)
    return builtins.compile(source, filename, mode, *args, **kwargs)


def install() -> None:
    if getattr(dataclasses, "exec", None) is _exec:
        return
    try:
        magic, saved = marshal.loads(FILE.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        magic, saved = None, None
    if magic == MAGIC_NUMBER and isinstance(saved, dict):  # like a .pyc: only this bytecode's
        _codes.update(saved)
    dataclasses.exec = _exec  # type: ignore[attr-defined]  # the module's global `exec`, not the builtin
    typing.compile = _compile  # type: ignore[attr-defined]  # likewise `compile` in typing
    atexit.register(_save)


def _save() -> None:
    if not _added or sys.dont_write_bytecode:
        return
    keep = _codes if len(_codes) <= MAX_ENTRIES else {key: _codes[key] for key in _used}
    tmp = FILE.with_name(f"{FILE.name}.{os.getpid()}.tmp")
    try:
        FILE.parent.mkdir(exist_ok=True)
        tmp.write_bytes(marshal.dumps((MAGIC_NUMBER, keep)))
        os.replace(tmp, FILE)  # another process may write the same file: each write is whole
    except OSError:
        tmp.unlink(missing_ok=True)
