"""The JSON Schema of the spec language, for editors (VS Code's YAML extension) and tools.

It is pydantic's schema of `ModelSpec`, with the named types (TypeAliasType: the value types
`NumExpr`, ..., archc.spec.types.VALUE_TYPES, and a layer entry) written out in place as
pydantic writes unnamed ones, and what the validators add by hand:
- a layer entry is a one-key mapping `name: layer`, and a layer may be a shorthand
  (`batchnorm`, `relu`, ...), a list (a group) or `act: relu`;
- a spec with `extends:` is a partial document: nothing else is required, and a
  top-level value may be `null` (delete it from the base), `{$replace: value}` or
  `{$append: [...]}`, a mapping's keys `null`, and `layers` a patch by entry name. Nested merge operators are
  left to archc itself, which also checks what no schema can (expressions, names in
  scope, shapes, the merged result).
"""

from __future__ import annotations

import json
from typing import Any

from archc.ops.act import ACTIVATIONS
from archc.spec.models import _SHORTHANDS, json_schema
from archc.spec.types import VALUE_TYPES

SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
ENTRY_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.(0|[1-9][0-9]*))?$"  # `convs.1`: an entry of a numbered container


def schema() -> dict[str, Any]:
    full = json_schema()
    defs = full.pop("$defs")
    aliases = {name: defs.pop(name) for name in (*VALUE_TYPES, "LayerEntry")}  # named types, written out
    full, defs = _inline(full, aliases), _inline(defs, aliases)
    layer_kinds = _find_layer_union(full)
    defs["Layer"] = {
        "description": "A layer: a primitive (conv, batchnorm, ...), a block, a stage, a list (a named group), "
        "or a shorthand such as batchnorm, relu, act, global_avgpool, flatten.",
        "anyOf": [
            layer_kinds,
            {"enum": sorted(_SHORTHANDS)},
            {"type": "array", "items": {"$ref": "#/$defs/LayerEntry"}},
        ],
    }
    defs["LayerEntry"] = {
        "description": "One `name: layer` pair (the name becomes the module name), or a layer without a name "
        "(numbered by its position, like an nn.Sequential's children).",
        "anyOf": [
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "propertyNames": {"pattern": ENTRY_NAME, "maxLength": 64},
                "additionalProperties": {"$ref": "#/$defs/Layer"},
            },
            {"$ref": "#/$defs/Layer"},
        ],
    }
    full = _replace_entries(full, layer_kinds)
    defs = {k: _replace_entries(v, layer_kinds) for k, v in defs.items()}
    defs["ActItem"]["properties"]["act"] = {
        "description": "An activation: its name (act: relu) or its arguments.",
        "anyOf": [{"enum": list(ACTIVATIONS)}, {"$ref": "#/$defs/ActArgs"}],
    }
    # The top level admits both forms (so editors complete and describe every key);
    # `else` holds a spec without `extends` to the full rules.
    strict = {"required": full.pop("required"), "properties": full["properties"]}
    full["properties"] = {k: v if k in ("archc", "extends") else _mergeable(v) for k, v in full["properties"].items()}
    return {
        "$schema": SCHEMA_URL,
        **full,
        "title": "archc spec",
        "description": "A CNN architecture spec for archc (docs/spec.md). A spec with `extends:` only states "
        "what it changes in its base.",
        "if": {"required": ["extends"]},
        "then": {"required": ["archc", "extends"]},
        "else": strict,
        "$defs": dict(sorted(defs.items())),
    }


def schema_text() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


def _find_layer_union(node: Any) -> dict[str, Any]:
    """The `oneOf` of layer kinds that pydantic writes for a layer entry's value."""
    if isinstance(node, dict):
        value = node.get("additionalProperties")
        if isinstance(value, dict) and any(r.get("$ref") == "#/$defs/ConvItem" for r in value.get("oneOf", [])):
            return value
        for child in node.values():
            found = _find_layer_union(child)
            if found:
                return found
    elif isinstance(node, list):
        for child in node:
            found = _find_layer_union(child)
            if found:
                return found
    return {}


def _inline(node: Any, aliases: dict[str, Any]) -> Any:
    """Every reference to a named type (`NumExpr`, `LayerEntry`, ...) becomes its schema, in
    place, as pydantic writes the type when it is not named."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            name = value.removeprefix("#/$defs/") if key == "$ref" else None
            if name in aliases:
                out.update(_inline(aliases[name], aliases))
            elif key == "properties":  # pydantic titles a field unless its schema is a reference
                out[key] = {
                    field: {**_inline(prop, aliases), "title": field.title().replace("_", " ")}
                    if _refers(prop, aliases) and "title" not in prop else _inline(prop, aliases)
                    for field, prop in value.items()
                }
            elif key == "anyOf":  # flattened and deduplicated as pydantic writes an inline union
                members: list[Any] = []
                for member in _inline(value, aliases):
                    for m in member["anyOf"] if list(member) == ["anyOf"] else [member]:
                        if m not in members:
                            members.append(m)
                out[key] = members
            else:
                out[key] = _inline(value, aliases)
        return out
    if isinstance(node, list):
        return [_inline(v, aliases) for v in node]
    return node


def _refers(node: Any, aliases: dict[str, Any]) -> bool:
    if isinstance(node, dict):
        return node.get("$ref", "").removeprefix("#/$defs/") in aliases or any(_refers(v, aliases) for v in node.values())
    return isinstance(node, list) and any(_refers(v, aliases) for v in node)


def _replace_entries(node: Any, layer_kinds: dict[str, Any]) -> Any:
    """Every pydantic layer-entry schema becomes a reference to LayerEntry."""
    if isinstance(node, dict):
        if node.get("additionalProperties") == layer_kinds and node.get("type") == "object":
            return {"$ref": "#/$defs/LayerEntry"}
        return {k: _replace_entries(v, layer_kinds) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace_entries(v, layer_kinds) for v in node]
    return node


def _mergeable(prop: dict[str, Any]) -> dict[str, Any]:
    """A top-level value in a spec with `extends:`: itself, null, or a merge operator."""
    described = {k: v for k, v in prop.items() if k in ("description", "title")}
    value = {k: v for k, v in prop.items() if k not in ("description", "title", "default")}
    ops: list[dict[str, Any]] = [
        value,
        {"type": "null"},
        {"type": "object", "properties": {"$replace": value}, "required": ["$replace"], "additionalProperties": False},
    ]
    if value.get("type") == "array":
        items = {"type": "array", "items": value.get("items", {})}
        ops.append({"type": "object", "properties": {"$append": items}, "required": ["$append"], "additionalProperties": False})
        if value.get("items") == {"$ref": "#/$defs/LayerEntry"}:
            # a patch by entry name: null removes, a mapping merges or, with $before/$after, inserts
            # ($rename renames), a list replaces the entry's value (a group's entries)
            entry = {"anyOf": [{"type": "null"}, {"type": "object"}, {"type": "array"}]}
            ops.append({"type": "object", "propertyNames": {"pattern": IDENTIFIER}, "additionalProperties": entry})
    if value.get("type") == "object" and isinstance(value.get("additionalProperties"), dict):
        # merged key by key: a key given null is deleted from the base (`params: {dropout: null}`)
        ops.append({"type": "object", "additionalProperties": {"anyOf": [value["additionalProperties"], {"type": "null"}]}})
    return {**described, "anyOf": ops}
