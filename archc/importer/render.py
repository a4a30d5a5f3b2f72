"""Entry trees -> a spec: block kinds (bottom-up, one per module class and structure),
stages for runs of instances, and the YAML text, one line per layer as the zoo writes it."""

from __future__ import annotations

import keyword
import re
from typing import Any

from archc.importer.kinds import (
    Mismatch,
    Scope,
    TEntry,
    TGroup,
    TInst,
    TLayer,
    TMerge,
    constructor_defaults,
    scope_of,
    unify,
)
from archc.importer.ops import ACTIVATION_LAYERS, DEFAULTS, Unsupported, omitted
from archc.importer.trace import Entry, Group, Instance

SHORTHAND = {"batchnorm", "global_avgpool", "flatten", "identity", "relu", "relu6", "silu", "sigmoid", "tanh",
             "hardswish", "hardsigmoid", "gelu"}  # fmt: skip


class Kind:
    def __init__(self, name: str, cls: type, params: dict[str, Any], layers: list[Any], inputs: list[str] | None = None):
        self.name, self.cls, self.params, self.layers = name, cls, params, layers
        self.inputs = inputs or []  # several named inputs (LRASPPHead's low, high)


class Renderer:
    def __init__(self) -> None:
        self.kinds: dict[str, Kind] = {}
        # kind -> parameter -> expression over stage_block_id (stochastic depth rates growing over the model)
        self.progressive: dict[str, dict[str, str]] = {}

    # -- kinds ---------------------------------------------------------------------------
    def form_kinds(self, root: Instance) -> None:
        """Give every instance below the root its kind and parameters, deepest classes first."""
        by_class: dict[type, list[Instance]] = {}
        depth: dict[type, int] = {}
        own: dict[int, int] = {}  # id(instance) -> its own depth
        recursive: set[type] = set()  # classes with instances inside instances of their own (timm's DlaTree)

        def walk(entries: list[Entry], outer: tuple[type, ...]) -> int:
            deepest = 0
            for e in entries:
                if isinstance(e.node, Instance):
                    if e.node.cls in outer:
                        recursive.add(e.node.cls)
                    d = own[id(e.node)] = walk(e.node.entries, (*outer, e.node.cls)) + 1
                    by_class.setdefault(e.node.cls, []).append(e.node)
                    depth[e.node.cls] = max(depth.get(e.node.cls, 0), d)
                    deepest = max(deepest, d)
                elif isinstance(e.node, Group):
                    deepest = max(deepest, walk(e.node.entries, outer))
            return deepest

        walk(root.entries, ())
        batches: list[tuple[int, type, list[Instance]]] = []  # a recursive class's kinds formed level by level, inner first
        for cls, found in by_class.items():
            levels = sorted({own[id(i)] for i in found}) if cls in recursive else [depth[cls]]
            for d in levels:
                batches.append((d, cls, [i for i in found if cls not in recursive or own[id(i)] == d]))
        for _, cls, instances in sorted(batches, key=lambda b: b[0]):
            try:
                self._kind(cls, instances)
            except Mismatch:
                parts: dict[str, list[Instance]] = {}
                for inst in instances:
                    parts.setdefault(repr((_shape(inst.entries), list(inst.inputs))), []).append(inst)
                for part in parts.values():
                    try:
                        self._kind(cls, part)
                    except Mismatch as e:
                        raise Unsupported(f"{part[0].path}: {cls.__name__}: instances of one structure that are no one kind ({e})") from None

    def _kind(self, cls: type, instances: list[Instance]) -> None:
        base = snake(cls.__name__)
        name, k = base, 2
        while name in self.kinds:
            name, k = f"{base}_{k}", k + 1
        tentries = unify([i.entries for i in instances])
        reserved = _names(tentries)
        scope = scope_of(instances, reserved)
        try:
            layers = self.entries(tentries, scope, [True] * len(instances))
        except Unsupported as e:
            raise Unsupported(f"{instances[0].path}: {cls.__name__} (and its other instances): {e}") from None
        defaults = constructor_defaults(cls)
        params: dict[str, Any] = {}
        for p in scope.used:
            if p == "in_channels" or p in (f"{k}_channels" for k in instances[0].inputs):
                continue
            values = scope.vars.get(p, scope.new.get(p))
            d = defaults.get(p) if p in scope.vars else None
            if type(d) is float and d.is_integer() and all(type(v) is int for v in values):
                d = int(d)  # `exp_ratio: float = 1.0` given ints (timm's RexNet): an int, so widths stay ints
            if (d is None or type(d) is not type(values[0])) and not any(
                re.search(rf"\b{p}\b", e) for e in scope.outputs
            ):  # a default for a stride or a ratio, not for a width
                d = _common(values)
            params[p] = d if d is not None else type(values[0]).__name__
        for k_, inst in enumerate(instances):
            inst.kind = name
            inst.params = {p: (scope.vars.get(p) or scope.new[p])[k_] for p in params}
        inputs = list(instances[0].inputs)
        if any(list(i.inputs) != inputs for i in instances):  # a kind per structure (form_kinds)
            raise Mismatch(f"{instances[0].path}: {cls.__name__} reads different named inputs in different instances")
        self.kinds[name] = Kind(name, cls, params, layers, inputs)

    # -- rendering -----------------------------------------------------------------------
    def entries(self, tentries: list[TEntry], scope: Scope, mask: list[bool]) -> list[Any]:
        items = []
        previous: str | None = "input"  # what an entry without `from:` reads, where that is a name
        for te in tentries:
            here = [p and m for p, m in zip(te.present, mask)]
            conditional = any(m and not p for p, m in zip(te.present, mask))
            src = {"from": list(te.src) if isinstance(te.src, tuple) else te.src} if te.src and te.src != previous else {}
            previous = te.name if not conditional else None
            stage = self._named_stage(te) if scope.n == 1 and not conditional else None
            if stage is not None:
                items.append(_item(te.name, None, src, stage))
                continue
            value, extra = self.node(te, scope, here)
            if conditional:
                extra["if"] = scope.condition(te.present, mask, te.name or _hint(te))
            items.append(_item(te.name, value, {**src, **extra}))
        return items

    def _inline(self, entries: list[TEntry]) -> list[Any] | None:
        """A model-level list of plain layers in which conv (+ batch norm) + activation units
        repeat with only their filters changing (torchvision's VGG `make_layers`): one block
        kind for the unit, written `inline: true` so the list keeps its numbering."""
        if not entries or not all(e.name is None and e.src is None and isinstance(e.node, TLayer) for e in entries):
            return None
        kinds = [e.node.kind for e in entries]  # type: ignore[union-attr]
        units: list[tuple[int, int]] = []  # (start, length) of each conv [batchnorm] act unit
        i = 0
        while i < len(kinds):
            n = 3 if kinds[i : i + 2] == ["conv", "batchnorm"] else 2 if kinds[i] == "conv" else 0
            if n and i + n <= len(kinds) and kinds[i + n - 1] in ACTIVATION_LAYERS:
                units.append((i, n))
                i += n
            else:
                i += 1
        if len(units) < 2 or len({tuple(kinds[a : a + n]) for a, n in units}) != 1:
            return None
        args = [{k: v[0] for k, v in entries[a].node.args.items()} for a, _ in units]  # type: ignore[union-attr]
        tails = [[entries[a + j].node.args for j in range(1, n)] for a, n in units]  # type: ignore[union-attr]
        varying = {k for k in args[0] if len({repr(a[k]) for a in args}) > 1}
        if varying != {"filters"} or any(t != tails[0] for t in tails):
            return None
        first, n = units[0]
        conv = {k: v for k, v in args[0].items() if k != "filters" and not omitted("conv", k, v, args[0])}
        layers: list[Any] = [{"conv": {"filters": "filters", **conv}}]
        for j in range(1, n):
            te = entries[first + j]
            value, _ = self.node(te, Scope(1, {}), [True])
            layers.append(value)
        kernel = args[0].get("kernel")
        name = f"conv{kernel}x{kernel}" if isinstance(kernel, int) else "conv_unit"
        while name in self.kinds:
            name += "_"
        cls = type("".join(part[:1].upper() + part[1:] for part in name.split("_")), (), {})  # conv3x3 -> Conv3x3
        self.kinds[name] = Kind(name, cls, {"filters": "int"}, layers)
        starts = {a: (k, n) for k, (a, n) in enumerate(units)}
        items: list[Any] = []
        i = 0
        while i < len(entries):
            if i not in starts:
                items += self.entries([entries[i]], Scope(1, {}), [True])
                i += 1
                continue
            k, n = starts[i]
            run = 1
            while k + run < len(units) and units[k + run][0] == i + run * n and args[k + run] == args[k]:
                run += 1
            with_ = {"filters": args[k]["filters"]}
            items.append({"stage": name, "repeat": run, "with": with_, "inline": True} if run > 1
                         else {"block": name, "with": with_, "inline": True})  # fmt: skip
            i += run * n
        return items

    def _named_stage(self, te: TEntry) -> dict[str, Any] | None:
        """A model-level list of one kind's instances as one stage (`layer1: {stage: ...}`):
        numbered entries, or entries named `prefix0`, `prefix1`, ... (`names: "block1-{i}"`)."""
        if te.name is None or not isinstance(te.node, TGroup) or not te.node.entries or te.node.parallel or te.node.modules:
            return None
        entries = te.node.entries
        if not all(isinstance(e.node, TInst) and e.src is None for e in entries):
            return None
        names = None
        if any(e.name is not None for e in entries):
            found = [re.fullmatch(r"(.*?)(\d+)", e.name or "") for e in entries]
            if not all(found) or len({f.group(1) for f in found}) != 1:  # type: ignore[union-attr]
                return None
            start = int(found[0].group(2))  # type: ignore[union-attr]
            if start not in (0, 1) or [int(f.group(2)) for f in found] != list(range(start, start + len(found))):  # type: ignore[union-attr]
                return None
            names = found[0].group(1) + ("{i}" if start == 0 else "{n}")  # type: ignore[union-attr]
        runs = self._runs([e.node for e in entries])  # type: ignore[misc]
        if len(runs) != 1 or len(runs[0]) < 2 and names is None:
            return None
        stage = self._stage(runs[0])[0]
        if "block" in stage:  # one instance, named block1-0: a stage of one
            stage = {"stage": stage["block"], "repeat": 1, **({"with": stage["with"]} if "with" in stage else {})}
        if te.node.dense:
            stage = {**stage, "connectivity": "dense"}
        return {**stage, "names": names} if names else stage

    def node(self, te: TEntry, scope: Scope, mask: list[bool]) -> tuple[Any, dict[str, Any]]:
        node = te.node
        if isinstance(node, TLayer):
            args = {}
            for a, values in node.args.items():
                hint = a if a in ("stride", "groups", "dilation") else f"{te.name or node.kind}_{a}"
                args[a] = scope.value(values, mask, hint, te.channels if a in ("groups", "filters") else None)
            args = {a: v for a, v in args.items() if isinstance(v, str) or not omitted(node.kind, a, v, args)}
            for a in ("filters", "units"):
                if isinstance(args.get(a), str):
                    scope.outputs.append(args[a])
            if not args and node.kind in SHORTHAND:
                return node.kind, {}
            return {node.kind: args}, {}
        if isinstance(node, TMerge):
            return {node.kind: list(node.inputs)}, {}
        if isinstance(node, TGroup) and node.parallel:  # a module list: its paths, unnamed
            if any(m and not p for e in node.entries for p, m in zip(e.present, mask)):
                raise Unsupported(f"{te.name}: a module list whose paths differ between instances")
            return {"parallel": [self.node(e, scope, mask)[0] for e in node.entries]}, {}
        if isinstance(node, TGroup) and node.modules:  # entries read earlier ones by number (archc.importer.listflow)
            if any(m and not p for e in node.entries for p, m in zip(e.present, mask)):
                raise Unsupported(f"{te.name}: a `modules:` container whose entries differ between instances")
            return {"modules": self.entries(node.entries, scope, mask)}, {}
        if isinstance(node, TGroup):
            return self.group(node, scope, mask), {}
        kind = self.kinds[node.kind]
        with_ = {}
        for p, values in node.params.items():
            v = scope.value(values, mask, p)
            if isinstance(v, str) and "channels" in p or p in ("filters", "planes", "width"):
                scope.outputs.append(v)
            if not (v == kind.params.get(p) and type(v) is type(kind.params.get(p))):
                with_[p] = v
        return {"block": node.kind, **({"with": with_} if with_ else {})}, {}

    def group(self, node: TGroup, scope: Scope, mask: list[bool]) -> list[Any]:
        """A list; at model level (one instance) runs of unnamed instances become stages."""
        if node.dense:
            raise Unsupported("a dense block (each layer reads all before it) that is not one stage of one kind at model level")
        if scope.n != 1:
            return self.entries(node.entries, scope, mask)
        inline = self._inline(node.entries)
        if inline is not None:
            return inline
        items: list[Any] = []
        i = 0
        while i < len(node.entries):
            j = i
            while j < len(node.entries) and node.entries[j].name is None and node.entries[j].src is None and isinstance(
                node.entries[j].node, TInst
            ):
                j += 1
            if j > i:
                for run in self._runs([te.node for te in node.entries[i:j]]):  # type: ignore[misc]
                    items += self._stage(run)
                i = j
            else:
                items += self.entries([node.entries[i]], scope, mask)
                i += 1
        return items

    def _runs(self, insts: list[TInst]) -> list[list[TInst]]:
        if self.progressive:  # only the growing kind's instances are in stages (see _progressive)
            out: list[list[TInst]] = []
            for run in _runs(insts, {k: set(v) for k, v in self.progressive.items()}):
                out += [run] if run[0].kind in self.progressive else [[inst] for inst in run]
            return out
        return _runs(insts)

    def _stage(self, run: list[TInst]) -> list[Any]:
        kind = self.kinds[run[0].kind]
        growing = self.progressive.get(kind.name, {})
        values = [{p: v[0] for p, v in inst.params.items() if p not in growing} for inst in run]
        if growing:  # every instance is in a stage, so that stage_block_id counts it
            item: dict[str, Any] = {"stage": kind.name, "repeat": len(run)}
            rest = values[-1]
            first = {p: v for p, v in values[0].items() if v != rest[p] or type(v) is not type(rest[p])}
            with_ = {p: v for p, v in rest.items() if not (v == kind.params.get(p) and type(v) is type(kind.params.get(p)))}
            item["with"] = {**with_, **growing}
            if first:
                item["first"] = first
            return [item]

        def shown(params: dict[str, Any]) -> dict[str, Any]:
            return {p: v for p, v in params.items() if not (v == kind.params.get(p) and type(v) is type(kind.params.get(p)))}

        if len(run) == 1:
            with_ = shown(values[0])
            return [{"block": kind.name, **({"with": with_} if with_ else {})}]
        rest = values[1]
        first = {p: v for p, v in values[0].items() if v != rest[p] or type(v) is not type(rest[p])}
        item: dict[str, Any] = {"stage": kind.name, "repeat": len(run)}
        if shown(rest):
            item["with"] = shown(rest)
        if first:
            item["first"] = first
        return [item]

    def model_layers(self, root: Instance) -> list[Any]:
        tentries = unify([root.entries])
        self.progressive = _progressive(_stage_instances(tentries), self.kinds)
        scope = Scope(1, {})
        return self.entries(tentries, scope, [True])


def _common(values: list[Any]) -> Any:
    """A default for a parameter the constructor gives none: the value most instances take,
    where there are at most three (a stride, an expansion ratio; not a width)."""
    distinct = list(dict.fromkeys(values))
    if len(distinct) > 3 or len(values) < 3:
        return None
    best = max(distinct, key=values.count)
    return best if values.count(best) * 2 > len(values) else None


def _stage_instances(tentries: list[TEntry]) -> list[TInst]:
    """The model-level instances a stage may hold (unnamed entries of lists), in model order."""
    out: list[TInst] = []
    for te in tentries:
        if isinstance(te.node, TGroup) and not te.node.parallel and not te.node.modules:
            out += [e.node for e in te.node.entries if e.name is None and e.src is None and isinstance(e.node, TInst)]
            out += _stage_instances([e for e in te.node.entries if isinstance(e.node, TGroup)])
    return out


def _progressive(every: list[TInst], kinds: dict[str, Kind]) -> dict[str, dict[str, str]]:
    """Float parameters that grow with the instance's index over the model, as torchvision's
    stochastic depth rates (EfficientNet: p * k / n; ConvNeXt: p * k / (n - 1)): written as
    `p * stage_block_id / total_stage_blocks`. For one kind; the others' instances are then
    written one by one, so that every stage instance is one of that kind's."""
    for name in dict.fromkeys(i.kind for i in every):
        found = _growing([i for i in every if i.kind == name])
        if found:
            return {name: found}
    return {}


def _growing(insts: list[TInst]) -> dict[str, str]:
    n = len(insts)
    found: dict[str, str] = {}
    for p in insts[0].params:
        values = [i.params[p][0] for i in insts]
        if n < 3 or not all(type(v) is float for v in values) or len(set(values)) < 3:
            continue
        fits = []
        for d, text in ((n, "total_stage_blocks"), (n - 1, "(total_stage_blocks - 1)")):
            c = float(f"{values[-1] * d / (n - 1):.12g}")
            if all(abs(v - c * k / d) <= 1e-12 * max(1.0, abs(c)) for k, v in enumerate(values)):
                fits.append((len(repr(c)), f"{c!r} * stage_block_id / {text}"))
        if fits:  # the rounder factor: ConvNeXt's 0.1 over n - 1, not 0.10588... over n
            found[p] = min(fits)[1]
    return found


def _runs(insts: list[TInst], ignore: dict[str, set[str]] | None = None) -> list[list[TInst]]:
    """Consecutive instances of one kind split into stages: the fewest entries, then the
    fewest `first:` overrides (a stage's instances after the first share their parameters)."""
    n = len(insts)
    best: list[tuple[float, int]] = [(0.0, 0)] + [(float("inf"), 0)] * n
    for end in range(1, n + 1):
        for start in range(end - 1, -1, -1):
            run = insts[start:end]
            if run[0].kind != run[-1].kind or any(r.kind != run[0].kind for r in run):
                break
            skip = (ignore or {}).get(run[0].kind, set())
            if len(run) > 2 and _params(run[-1], skip) != _params(run[1], skip):
                break
            extra = 0 if len(run) == 1 else sum(1 for p, v in _params(run[0], skip).items() if _params(run[1], skip)[p] != v)
            cost = best[start][0] + 1 + 0.4 * extra
            if cost < best[end][0]:
                best[end] = (cost, start)
    out: list[list[TInst]] = []
    end = n
    while end:
        start = best[end][1]
        out.append(insts[start:end])
        end = start
    return out[::-1]


def _params(inst: TInst, skip: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    return {p: (v[0], type(v[0])) for p, v in inst.params.items() if p not in skip}


def _item(name: str | None, value: Any, extra: dict[str, Any], whole: dict[str, Any] | None = None) -> Any:
    if whole is not None:
        body = {**whole, **extra}
    elif not extra:
        body = value
    elif isinstance(value, list):
        body = {"group": value, **extra}
    elif isinstance(value, str) and value in ACTIVATION_LAYERS:
        body = {"act": {"fn": value}, **extra}  # `relu: {}` is not a layer; `act: {fn: relu}` is
    elif isinstance(value, str):
        body = {value: {}, **extra}
    else:
        body = {**value, **extra}
    return body if name is None else {name: body}


def _hint(te: TEntry) -> str:
    node = te.node
    if isinstance(node, TInst):
        return node.kind
    if isinstance(node, TLayer):
        return node.kind
    return "group"


def _names(tentries: list[TEntry]) -> set[str]:
    out = set()
    for te in tentries:
        if te.name:
            out.add(te.name)
        if isinstance(te.node, TGroup):
            out |= _names(te.node.entries)
    return out


def _shape(entries: list[Entry]) -> Any:
    out = []
    for e in entries:
        node = e.node
        if isinstance(node, Group):
            out.append((e.name, e.src, node.parallel, _shape(node.entries)))
        elif isinstance(node, Instance):
            out.append((e.name, e.src, "I", node.kind))
        else:
            out.append((e.name, e.src, type(node).__name__, getattr(node, "kind", None), tuple(getattr(node, "inputs", ()))))
    return out


def snake(name: str) -> str:
    name = name.lstrip("_")
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    s = re.sub(r"\W", "_", s) or "block"
    return s if not keyword.iskeyword(s) else f"{s}_block"


def spec(renderer: Renderer, root: Instance, name: str, source: str, input_shape: tuple[int, ...]) -> dict[str, Any]:
    renderer.form_kinds(root)
    layers = renderer.model_layers(root)
    out: dict[str, Any] = {"archc": 1, "name": model_name(name)}
    cls = type(root).__name__ if not isinstance(root, Instance) else root.cls.__name__
    out["class"] = cls
    out["input"] = list(input_shape)
    out["defaults"] = dict(DEFAULTS)
    if renderer.kinds:
        out["blocks"] = {
            k.name: {"class": _class_name(k, renderer, cls), **({"inputs": k.inputs} if k.inputs else {}),
                     **({"params": k.params} if k.params else {}), "layers": k.layers}
            for k in renderer.kinds.values()
        }  # fmt: skip
    out["layers"] = layers
    if root.outputs:  # a forward that returns {"out": ...} (torchvision's segmentation models)
        out["outputs"] = dict(root.outputs)
    return out


def _class_name(kind: Kind, renderer: Renderer, model_class: str) -> str:
    base = kind.cls.__name__
    taken = [k.name for k in renderer.kinds.values() if k.cls is kind.cls]
    name = base if taken.index(kind.name) == 0 else f"{base}{taken.index(kind.name) + 1}"
    if name == model_class:
        name += "Block"
    return name


def model_name(label: str) -> str:
    s = re.sub(r"\W", "_", label).strip("_").lower() or "model"
    return s if s[0].isalpha() else f"m_{s}"
