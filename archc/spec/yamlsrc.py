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

# YAML 1.1 (PyYAML) reads 1e-5 as a string; YAML 1.2 and every user read it as a float.
_FLOAT_EXP = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")

Path_ = tuple[Any, ...]
_PLAIN_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}


@dataclass
class SourceMap:
    """Maps a value's path (keys and list indexes from the root) to where it was written.

    After `extends:` and `--set` (see `archc.spec.compose`) one document holds
    values from several files and command-line overrides; each keeps its own location.
    """

    file: str  # the spec named on the command line
    marks: dict[Path_, Location] = field(default_factory=dict)

    def locate(self, path: Path_) -> Location:
        """The location of `path`, or of its nearest ancestor that has one."""
        path = tuple(path)
        while path not in self.marks and path:
            path = path[:-1]
        return self.marks.get(path, Location(self.file))


def load_yaml_text(text: str, file: str) -> tuple[Any, SourceMap]:
    """Parse one YAML document into plain data plus its source map."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SPEC_BYTES:
        raise SpecError(
            f"spec is larger than {MAX_SPEC_BYTES} bytes; split it with `use:` libraries",
            Location(file),
        )
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecError("spec is empty; start with `archc: 1`", Location(file, 1, 1))
        smap = SourceMap(file)
        data = _Converter(loader, smap).convert(node, ())
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file)
        problem = (e.problem or e.context or "invalid YAML").strip()
        raise SpecError(f"invalid YAML: {problem}", where) from None
    except yaml.YAMLError as e:
        raise SpecError(f"invalid YAML: {e}", Location(file)) from None
    finally:
        loader.dispose()
    return data, smap


def load_yaml_file(path: Path) -> tuple[Any, SourceMap]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("file not found; check the path", Location(str(path))) from None
    except OSError as e:
        raise SpecError(f"cannot read file: {e.strerror}", Location(str(path))) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(
            f"spec is larger than {MAX_SPEC_BYTES} bytes; split it with `use:` libraries",
            Location(str(path)),
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(f"not UTF-8 text (byte {e.start})", Location(str(path))) from None
    return load_yaml_text(text, str(path))


class _Converter:
    def __init__(self, loader: yaml.SafeLoader, smap: SourceMap):
        self.loader = loader
        self.smap = smap
        self.count = 0

    def convert(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise SpecError(
                f"document expands to more than {MAX_NODES} values (alias bomb?)",
                Location(self.smap.file, node.start_mark.line + 1),
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
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, str) and node.style is None and _FLOAT_EXP.match(value):
            return float(value)
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise SpecError(
                f"unsupported YAML value of type {type(value).__name__}; use numbers, strings, lists, mappings",
                Location(self.smap.file, node.start_mark.line + 1, node.start_mark.column + 1),
            )
        return value
