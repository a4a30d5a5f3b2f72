"""Load YAML safely into plain Python data, remembering where every value came from.

Only PyYAML's safe scalar types are constructed (no tags that build objects),
duplicate keys are errors, alias expansion is bounded, and each value's
file:line:col is kept in a `SourceMap` keyed by its path from the document root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archc.errors import Location, SpecError

MAX_SPEC_BYTES = 1_000_000  # a spec is text written by a person; 1 MB is generous
MAX_NODES = 200_000  # bounds alias ("billion laughs") expansion
MAX_DEPTH = 64  # nesting of mappings and lists; real specs need about 10

# YAML 1.1 (PyYAML) reads 1e-5 as a string; YAML 1.2 and every user read it as a float.
_FLOAT_EXP = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

Path_ = tuple[Any, ...]
_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}
_SCALAR_TAGS = {f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null")}


@dataclass
class SourceMap:
    """Maps a value's path (keys and list indexes from the root) to where it was written.

    After `extends:` and `--set` (see `archc.spec.compose`) one document holds
    values from several files and command-line overrides; each keeps its own location.
    """

    file: str  # the spec named on the command line
    marks: dict[Path_, Location] = field(default_factory=dict)
    key_marks: dict[Path_, Location] = field(default_factory=dict)  # where a mapping key is written

    def locate(self, path: Path_) -> Location:
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, Location(self.file))

    def locate_key(self, path: Path_) -> Location:
        """The location of the key that names `path` (for unknown keys)."""
        return self.key_marks.get(tuple(path)) or self.locate(path)


def load_yaml_text(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError(_too_large(), Location(file))
    loader = None
    try:
        loader, node = _compose_fast(text)
        if loader is None:
            loader = _Loader(text, file)
            node = loader.get_single_node()
        if node is None:
            raise SpecError("spec is empty; start with `archc: 1`", Location(file, 1, 1))
        _expanded_size(node, file, {}, set())
        smap = SourceMap(file)
        data = _Converter(loader, smap).convert(node, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            problem = f"{e.problem} ({e.context})"
        problem = " ".join(problem.split())
        raise SpecError(f"invalid YAML: {problem}", where) from None
    except yaml.reader.ReaderError as e:
        line, col = _line_col(text, e.position)
        char = chr(e.character) if isinstance(e.character, int) else e.character
        raise SpecError(f"invalid YAML: character {char!r} is not allowed in YAML text", Location(file, line, col)) from None
    except yaml.YAMLError as e:  # pragma: no cover - PyYAML's other errors carry marks
        raise SpecError(f"invalid YAML: {' '.join(str(e).split())}", Location(file)) from None
    except RecursionError:  # PyYAML's composer recurses once per nesting level
        mark = loader.get_mark() if loader is not None else None
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        raise SpecError(f"YAML nested more than {MAX_DEPTH} levels deep", where) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, smap


class _Loader(yaml.SafeLoader):
    def __init__(self, text: str, file: str):
        super().__init__(text)
        self.file = file

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # PyYAML's scanner takes time quadratic in flow nesting ("[[[[..."): stop early
        if self.flow_level >= MAX_DEPTH:
            mark = self.get_mark()
            raise SpecError(f"YAML nested more than {MAX_DEPTH} levels deep", Location(self.file, mark.line + 1, mark.column + 1))
        super().fetch_flow_collection_start(token_class)


if yaml.__with_libyaml__:

    class _FastLoader(yaml.composer.Composer, yaml.cyaml.CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """libyaml's scanner and parser (C) under PyYAML's own composer, constructor and
        resolver: the same nodes, marks and values as `_Loader`, parsed about five times faster."""

        def __init__(self, text: str):
            yaml.cyaml.CParser.__init__(self, text)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


def _compose_fast(text: str) -> tuple[Any, Any]:
    """(loader, node) through libyaml, or (None, None) when it is not installed or the text is
    anything but plain valid YAML: `_Loader` then parses it again and reports the problem
    with PyYAML's messages and limits, so errors do not depend on libyaml."""
    if not yaml.__with_libyaml__ or yaml.reader.Reader.NON_PRINTABLE.search(text):
        return None, None
    loader = _FastLoader(text)
    try:
        return loader, loader.get_single_node()
    except (yaml.YAMLError, RecursionError):
        loader.dispose()
        return None, None


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _too_large() -> str:
    return (
        f"spec is larger than {MAX_SPEC_BYTES} bytes; split it with `use:` libraries "
        "(or raise archc.spec.yamlsrc.MAX_SPEC_BYTES deliberately)"
    )


def read_spec_bytes(path: Path, where: Location | None = None) -> bytes:
    """The file's bytes, reading at most MAX_SPEC_BYTES + 1 (a spec may name /dev/zero).
    `where` is the place that names the file, when that is another file."""
    named = "" if where is None else f"{path}: "
    where = where or Location(str(path))
    if not path.is_file():
        problem = "not a regular file" if path.exists() else "file not found; check the path"
        raise SpecError(named + problem, where)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPEC_BYTES + 1)
    except OSError as e:
        raise SpecError(f"{named}cannot read file: {e.strerror}", where) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(_too_large(), Location(str(path)))
    return raw


def load_yaml_bytes(raw: bytes, file: str) -> tuple[Any, SourceMap]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(raw[: e.start].decode("utf-8", "replace"), e.start)
        raise SpecError(f"not UTF-8 text (byte {raw[e.start]:#04x}); specs are UTF-8 YAML", Location(file, line, col)) from None
    return load_yaml_text(text, file)


def _expanded_size(node: yaml.Node, file: str, sizes: dict[int, int], open_: set[int]) -> int:
    """Values in the document once aliases are expanded, counted per distinct node (so a
    "billion laughs" is refused before anything is expanded)."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    where = Location(file, node.start_mark.line + 1, node.start_mark.column + 1)
    if key in open_:
        raise SpecError("an alias refers to the collection that contains it", where)
    open_.add(key)
    children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else []
    children = node.value if isinstance(node, yaml.SequenceNode) else children
    size = 1 + sum(_expanded_size(child, file, sizes, open_) for child in children)
    if size > MAX_NODES:
        raise SpecError(
            f"document expands to more than {MAX_NODES} values through aliases (a \"billion laughs\"?); "
            "raise archc.spec.yamlsrc.MAX_NODES deliberately if you mean it",
            where,
        )
    open_.discard(key)
    sizes[key] = size
    return size


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap):
        self.loader = loader
        self.smap = smap

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        if len(path) > MAX_DEPTH:
            raise SpecError(
                f"YAML nested more than {MAX_DEPTH} levels deep",
                Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1),
            )
        self.smap.marks.setdefault(path, Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1))
        expected = _PLAIN_TAGS.get(type(node))
        if expected is not None and node.tag != expected:
            raise SpecError(
                f"YAML tag {node.tag!r} is not allowed; specs hold plain mappings, lists and values",
                Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1),
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise SpecError(
                        "mapping keys must be names",
                        Location(self.smap.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                    )
                if key in out:
                    raise SpecError(
                        f"duplicate key {key!r}; YAML would silently keep only the last one",
                        Location(self.smap.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1),
                    )
                self.smap.key_marks[(*path, key)] = Location(self.smap.file, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self.convert(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise SpecError(
                "expected a plain value here",
                Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1),
            )
        where = Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1)
        if node.tag == "tag:yaml.org,2002:merge":
            raise SpecError("YAML merge keys (<<) are not supported; write the keys out", where)
        if node.tag not in _SCALAR_TAGS:
            raise SpecError(
                f"YAML tag {node.tag!r} is not allowed; specs hold plain text, numbers and true/false "
                "(quote a value that is text)",
                where,
            )
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, str) and node.style is None and _FLOAT_EXP.match(value):
            return float(value)
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise SpecError(
                f"unsupported YAML value of type {type(value).__name__}; use numbers, strings, lists, mappings",
                Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1),
            )
        return value
