"""Load YAML safely into plain Python data, remembering where every value came from.

Only PyYAML's safe scalar types are constructed (no tags that build objects),
duplicate keys are errors, alias expansion is bounded, and each value's
file:line:col is kept in a `SourceMap` keyed by its path from the document root.

Cost is bounded by the text's size: libyaml's C parser (when PyYAML has it) scans and
parses, and PyYAML's Python composer builds the nodes, counting them and their nesting
as it goes, so a document with more than MAX_NODES values or MAX_DEPTH levels stops at
the first one too many. Numbers longer than MAX_NUMBER_CHARS characters are refused
before Python converts them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archc.errors import Location, SpecError

MAX_SPEC_BYTES = 1_000_000  # a spec is text written by a person; 1 MB is generous
MAX_NODES = 50_000  # values in a document, aliases expanded (a "billion laughs"); zoo specs hold < 2,000
MAX_DEPTH = 64  # nesting of mappings and lists; real specs need about 10
MAX_NUMBER_CHARS = 40  # a number literal; archc's numbers stay below 2**53 (16 digits) anyway

Path_ = tuple[Any, ...]
_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}
_NUMBER_TAGS = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
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
        _check_size(text, file)
        loader = _Loader(text)
        node = loader.get_single_node()
        if node is None:
            raise SpecError("spec is empty; start with `archc: 1`", Location(file, 1, 1))
        _expanded_size(node, file, {}, set())
        smap = SourceMap(file)
        data = _Converter(loader, smap).convert(node, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Location(file, *_clamped(text, mark.line + 1, mark.column + 1)) if mark else Location(file)
        problem = e.problem or e.context or "invalid YAML"
        if e.problem and e.context:
            problem = f"{e.problem} ({e.context})"
        problem = " ".join(problem.split())
        if "maximum nesting depth" in problem:  # libyaml's own limit, reached while it scans ahead
            raise SpecError(f"YAML nested more than {MAX_DEPTH} levels deep", where) from None
        raise SpecError(f"invalid YAML: {problem}", where) from None
    except yaml.reader.ReaderError as e:
        before = text.encode("utf-8", "surrogatepass")[: e.position].decode("utf-8", "replace")  # libyaml: bytes
        line, col = _line_col(before if yaml.__with_libyaml__ else text[: e.position])
        char = chr(e.character) if isinstance(e.character, int) else e.character
        raise SpecError(f"invalid YAML: character {char!r} is not allowed in YAML text", Location(file, line, col)) from None
    except yaml.YAMLError as e:  # pragma: no cover - PyYAML's other errors carry marks
        raise SpecError(f"invalid YAML: {' '.join(str(e).split())}", Location(file)) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, smap


if yaml.__with_libyaml__:  # pragma: no branch - PyYAML's wheels ship libyaml
    _Parser: type = yaml.cyaml.CParser
else:  # pragma: no cover

    class _Parser(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):  # type: ignore[no-redef]
        def __init__(self, stream: str):
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)

        def fetch_flow_collection_start(self, token_class: Any) -> None:
            # the Python scanner takes time quadratic in flow nesting ("[[[[..."): stop early
            if self.flow_level >= MAX_DEPTH:
                mark = self.get_mark()
                raise SpecError(f"YAML nested more than {MAX_DEPTH} levels deep", Location(self.name, mark.line + 1, mark.column + 1))
            super().fetch_flow_collection_start(token_class)


class _Resolver(yaml.resolver.Resolver):
    """PyYAML's resolver (YAML 1.1), which reads `1e-5`, `1E5` and `1.0e5` as strings: its
    floats need a dot and a signed exponent. YAML 1.2 and every reader of a spec take them for
    numbers, so a plain (unquoted, untagged) scalar of YAML 1.2's float form with an exponent is
    a float here too; `"1e-5"` and `!!str 1e-5` stay strings. (add_implicit_resolver gives
    this subclass its own table: PyYAML's loaders are unchanged.)"""


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$"), list("-+.0123456789")
)


# libyaml composes a document in C; without libyaml, PyYAML's composer does it in Python
_COMPOSER: tuple[type, ...] = () if yaml.__with_libyaml__ else (yaml.composer.Composer,)


class _Loader(*_COMPOSER, _Parser, yaml.constructor.SafeConstructor, _Resolver):  # type: ignore[misc]
    """libyaml's events and composer, safe constructors, archc's resolver."""

    def __init__(self, text: str):
        _Parser.__init__(self, text)
        for base in _COMPOSER:
            base.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        _Resolver.__init__(self)


def _check_size(text: str, file: str) -> None:
    """Refuse a document of more than MAX_NODES values or nested more than MAX_DEPTH levels
    before a node is made: one pass over the parser's events (which are not kept)."""
    parser = _Parser(text)
    try:
        nodes = depth = 0
        starts, ends = (yaml.SequenceStartEvent, yaml.MappingStartEvent), (yaml.SequenceEndEvent, yaml.MappingEndEvent)
        nodes_of = (yaml.ScalarEvent, yaml.AliasEvent, *starts)
        while not parser.check_event(yaml.StreamEndEvent):
            event = parser.get_event()
            if isinstance(event, ends):
                depth -= 1
                continue
            if not isinstance(event, nodes_of):
                continue
            nodes += 1
            depth += isinstance(event, starts)
            if nodes > MAX_NODES or depth > MAX_DEPTH:
                where = Location(file, event.start_mark.line + 1, event.start_mark.column + 1)
                raise SpecError(_too_many_values() if nodes > MAX_NODES else f"YAML nested more than {MAX_DEPTH} levels deep", where)
    finally:
        parser.dispose()


def _too_many_values(aliases: bool = False) -> str:
    how = " through aliases (a \"billion laughs\"?)" if aliases else ""
    return (
        f"document {'expands to' if aliases else 'has'} more than {MAX_NODES} values{how}; "
        "raise archc.spec.yamlsrc.MAX_NODES deliberately if you mean it"
    )


def _clamped(text: str, line: int, col: int) -> tuple[int, int]:
    """libyaml reports the end of a text without a final newline one line past it."""
    last = text.count("\n") + 1
    return (line, col) if line <= last else (last, len(text) - text.rfind("\n"))


def _line_col(before: str) -> tuple[int, int]:
    """Line and column (in characters) of the place that `before` leads up to."""
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


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
        line, col = _line_col(raw[: e.start].decode("utf-8", "replace"))
        raise SpecError(f"not UTF-8 text (byte {raw[e.start]:#04x}); specs are UTF-8 YAML", Location(file, line, col)) from None
    return load_yaml_text(text, file)


def _expanded_size(node: yaml.Node, file: str, sizes: dict[int, int], open_: set[int]) -> int:
    """Values in the document once aliases are expanded, counted per distinct node (so a
    "billion laughs" is refused before anything is expanded)."""
    if isinstance(node, yaml.ScalarNode):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise SpecError("an alias refers to the collection that contains it", _where(file, node))
    open_.add(key)
    children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else node.value
    size = 1 + sum(_expanded_size(child, file, sizes, open_) for child in children)
    if size > MAX_NODES:
        raise SpecError(_too_many_values(aliases=True), _where(file, node))
    open_.discard(key)
    sizes[key] = size
    return size


def _where(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap):
        self.loader = loader
        self.smap = smap

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        if len(path) > MAX_DEPTH:
            raise SpecError(f"YAML nested more than {MAX_DEPTH} levels deep", self.where(node))
        if path not in self.smap.marks:
            self.smap.marks[path] = self.where(node)
        expected = _PLAIN_TAGS.get(type(node))
        if expected is not None and node.tag != expected:
            raise SpecError(
                f"YAML tag {node.tag!r} is not allowed; specs hold plain mappings, lists and values",
                self.where(node),
            )
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.scalar(key_node)
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    raise SpecError("mapping keys must be names", self.where(key_node))
                if key in out:
                    raise SpecError(f"duplicate key {key!r}; YAML would silently keep only the last one", self.where(key_node))
                self.smap.key_marks[(*path, key)] = self.where(key_node)
                out[key] = self.convert(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)

    def where(self, node: yaml.Node) -> Location:
        return _where(self.smap.file, node)

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise SpecError("expected a plain value here", self.where(node))
        if node.tag == "tag:yaml.org,2002:merge":
            raise SpecError("YAML merge keys (<<) are not supported; write the keys out", self.where(node))
        if node.tag not in _SCALAR_TAGS:
            raise SpecError(
                f"YAML tag {node.tag!r} is not allowed; specs hold plain text, numbers and true/false "
                "(quote a value that is text)",
                self.where(node),
            )
        if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
            raise SpecError(
                f"number with {len(node.value)} characters; archc's numbers stay below 2**53 "
                f"(at most {MAX_NUMBER_CHARS} characters: archc.spec.yamlsrc.MAX_NUMBER_CHARS)",
                self.where(node),
            )
        value = self.loader.yaml_constructors[node.tag](self.loader, node)  # a plain tag's own constructor
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise SpecError(
                f"unsupported YAML value of type {type(value).__name__}; use numbers, strings, lists, mappings",
                self.where(node),
            )
        return value
