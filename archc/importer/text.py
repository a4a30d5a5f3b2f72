"""A spec dict -> YAML text as the zoo writes it: block style down to the layer lists, one
flow-style line per layer, a long list of layers in block style. Every line is read back
with PyYAML and must give the value it was written from."""

from __future__ import annotations

import json
import re
from typing import Any

WIDTH = 120
# one-key dicts that are a layer with its arguments, not `name: layer`
_KINDS = {"conv", "batchnorm", "maxpool", "avgpool", "adaptive_avgpool", "dense", "dropout", "act", "block", "stage",
          "add", "concat", "multiply", "group", "stochastic_depth", "layernorm", "rmsnorm", "groupnorm", "eca", "global_context",
          "permute", "layer_scale", "zeropad", "space_to_depth", "blurpool"}  # fmt: skip
_PLAIN = re.compile(r"[A-Za-z_(][A-Za-z0-9_ ()*/+\-.<>=!%]*")
_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


_SHORT = {"relu", "relu6", "silu", "sigmoid", "tanh", "hardswish", "hardsigmoid", "gelu", "global_avgpool",
          "flatten", "identity", "softmax"}  # fmt: skip


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        if "e" in text and "." not in text.split("e")[0]:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    text = str(value)
    if _PLAIN.fullmatch(text) and text.lower() not in _WORDS and not text.endswith(" ") and ": " not in text:
        return text
    return json.dumps(text)


def flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(k)}: {flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(flow(v) for v in value) + "]"
    return scalar(value)


def _named(value: Any) -> bool:
    """`{name: layer}` (written `- name: layer`), not an unnamed `{kind: arguments}`."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    ((key, body),) = value.items()
    if key not in _KINDS or isinstance(body, str) and key != "block":
        return True
    if isinstance(body, dict):
        return any(k in _KINDS or k in _SHORT for k in body)
    return False


def items(values: list[Any], indent: int) -> list[str]:
    """A list of layers, `- ` lines at `indent`."""
    pad = " " * indent
    out = []
    for value in values:
        if _named(value):
            (name, body), = value.items()
            line = f"{pad}- {scalar(name)}: {flow(body)}"
            if isinstance(body, list):
                out.append(f"{pad}- {scalar(name)}:")
                out += items(body, indent + 4)
                continue
        else:
            line = f"{pad}- {flow(value)}"
        if len(line) <= WIDTH and not (_named(value) and isinstance(next(iter(value.values())), list)):
            out.append(line)
            continue
        if isinstance(value, list):
            sub = items(value, indent + 2)
            out.append(f"{pad}- {sub[0].lstrip()}")
            out += sub[1:]
            continue
        if isinstance(value, dict) and len(value) == 1:
            (name, body), = value.items()
            if isinstance(body, list):
                out.append(f"{pad}- {scalar(name)}:")
                out += items(body, indent + 4)
                continue
            if isinstance(body, dict) and any(isinstance(body.get(k), list) for k in ("group", "modules")):
                out.append(f"{pad}- {scalar(name)}:")
                for k, v in body.items():
                    if k in ("group", "modules"):
                        out.append(f"{pad}    {k}:")
                        out += items(v, indent + 6)
                    else:
                        out.append(f"{pad}    {scalar(k)}: {flow(v)}")
                continue
        out.append(line)
    return out


def dump(spec: dict[str, Any], comment: str = "") -> str:
    import yaml

    lines: list[str] = [f"# {line}" for line in comment.splitlines()]
    for key, value in spec.items():
        if key in ("defaults",):
            lines.append(f"{key}:")
            lines += [f"  {scalar(k)}: {flow(v)}" for k, v in value.items()]
        elif key == "blocks":
            lines.append("blocks:")
            for name, kind in value.items():
                lines.append(f"  {scalar(name)}:")
                for k, v in kind.items():
                    if k == "layers":
                        lines.append("    layers:")
                        lines += items(v, 6)
                    else:
                        lines.append(f"    {scalar(k)}: {flow(v)}")
        elif key == "layers":
            lines.append("layers:")
            lines += items(value, 2)
        else:
            lines.append(f"{key}: {flow(value)}")
    text = "\n".join(lines) + "\n"
    if yaml.safe_load(text) != json.loads(json.dumps(spec)):
        raise AssertionError("archc import wrote YAML that does not read back as the spec it was written from")
    return text
