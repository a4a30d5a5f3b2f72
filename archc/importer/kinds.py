"""Instances of one module class -> one block kind: their entry lists aligned, the values
that differ between instances made parameters (written as expressions of `in_channels`
and the class's constructor arguments where one fits every instance), the entries that
only some instances have given an `if:`.

Every expression is checked against every instance when it is chosen, so a kind rebuilds
each of its instances exactly; the import's check (archc.importer.check) proves the whole.
"""

from __future__ import annotations

import inspect
import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Union

from archc.importer.ops import ACTIVATION_LAYERS, Unsupported
from archc.importer.trace import Entry, Group, Instance, Layer, Merge
from archc.spec.types import RESERVED_NAMES


class Mismatch(Exception):
    """Instances whose structures cannot be one kind (different wiring or layers)."""


@dataclass
class TLayer:
    kind: str
    args: dict[str, list[Any]]


@dataclass
class TMerge:
    kind: str
    inputs: list[Any]  # names (after unify)


@dataclass
class TGroup:
    entries: list[TEntry]
    dense: bool = False
    parallel: bool = False
    modules: bool = False


@dataclass
class TInst:
    kind: str
    params: dict[str, list[Any]]


TNode = Union[TLayer, TMerge, TGroup, TInst]


@dataclass
class TEntry:
    name: str | None
    src: str | None
    present: list[bool]
    channels: list[Any]
    node: TNode


def _key(entry: Entry) -> tuple[Any, ...]:
    node = entry.node
    if isinstance(node, Layer):
        sig: tuple[Any, ...] = ("L", node.kind)
    elif isinstance(node, Merge):
        sig = ("M", node.kind, len(node.inputs))
    elif isinstance(node, Group):
        sig = ("G", node.dense, node.parallel, node.modules)
    else:
        sig = ("I", node.kind)
    # a named entry is one slot whatever it reads (unify then finds one source for it);
    # a numbered one is matched by what it reads too
    return (entry.name, entry.src if entry.name is None else None, *sig)


def _align(seqs: list[list[Entry]]) -> list[list[Entry | None]]:
    """Slots over all sequences (a common supersequence by key, later entries matched first):
    slots[s][k] is sequence k's entry in slot s, or None."""
    slots: list[list[Entry | None]] = []
    keys: list[tuple[Any, ...]] = []
    for k, seq in enumerate(seqs):
        b = [_key(e) for e in seq]
        n, m = len(keys), len(b)
        dp = [[0] * (m + 1) for _ in range(n + 1)]
        for i in range(n):
            for j in range(m):
                dp[i + 1][j + 1] = dp[i][j] + 1 if keys[i] == b[j] else max(dp[i][j + 1], dp[i + 1][j])
        pairs = []
        i, j = n, m
        while i and j:
            if keys[i - 1] == b[j - 1]:
                pairs.append((i - 1, j - 1))
                i, j = i - 1, j - 1
            elif dp[i - 1][j] >= dp[i][j - 1]:
                i -= 1
            else:
                j -= 1
        pairs.reverse()
        new_slots: list[list[Entry | None]] = []
        new_keys: list[tuple[Any, ...]] = []
        i = j = 0
        for pi, pj in [*pairs, (n, m)]:
            while i < pi:
                new_slots.append(slots[i] + [None])
                new_keys.append(keys[i])
                i += 1
            while j < pj:
                new_slots.append([None] * k + [seq[j]])
                new_keys.append(b[j])
                j += 1
            if pi < n:
                new_slots.append(slots[pi] + [seq[pj]])
                new_keys.append(keys[pi])
                i, j = pi + 1, pj + 1
        slots, keys = new_slots, new_keys
    return slots


def unify(seqs: list[list[Entry] | None]) -> list[TEntry]:
    """One entry list over several instances' (None: the whole list is absent there)."""
    there = [s is not None for s in seqs]
    _varied_activations(seqs)
    out = []
    sources: list[list[str | None]] = []
    for slot in _align([s or [] for s in seqs]):
        first = next(e for e in slot if e is not None)
        present = [e is not None for e in slot]
        node = first.node
        channels = [e.channels if e is not None else None for e in slot]
        if isinstance(node, Layer):
            keys = list(node.args)
            for e in slot:
                if e is not None and list(e.node.args) != keys:  # type: ignore[union-attr]
                    raise Mismatch(f"{first.name}: arguments differ")
            tnode: TNode = TLayer(node.kind, {a: [e.node.args[a] if e is not None else None for e in slot] for a in keys})  # type: ignore[union-attr]
        elif isinstance(node, Merge):
            tnode = TMerge(node.kind, [[e.node.inputs[j] if e is not None else None for e in slot] for j in range(len(node.inputs))])  # type: ignore[union-attr]
        elif isinstance(node, Group):
            if any(e is not None and (e.node.dense, e.node.parallel, e.node.modules) != (node.dense, node.parallel, node.modules) for e in slot):  # type: ignore[union-attr]
                raise Mismatch(f"{first.name}: dense or a module list in some instances only")
            tnode = TGroup(unify([e.node.entries if e is not None else None for e in slot]), node.dense, node.parallel, node.modules)  # type: ignore[union-attr]
        else:
            names = list(node.params)
            tnode = TInst(node.kind, {p: [e.node.params[p] if e is not None else None for e in slot] for p in names})  # type: ignore[union-attr]
        out.append(TEntry(first.name, first.src, [p and t for p, t in zip(present, there)], channels, tnode))
        sources.append([e.src if e is not None else None for e in slot])
    for te, column in zip(list(out), sources):
        if len({n for n, p in zip(column, te.present) if p}) > 1:
            te.src = _merged_input(column, te, out)
    for te in list(out):
        if isinstance(te.node, TMerge):
            te.node.inputs = [_merged_input(column, te, out) for column in te.node.inputs]  # type: ignore[arg-type]
    for te in list(out):
        if isinstance(te.node, TMerge):
            _pass_on(te, out)
    _alternative_ends(out)
    for a, b in itertools.combinations([te for te in out if te.name is not None and not isinstance(te.node, TMerge)], 2):
        if a.name == b.name and not any(x and y for x, y in zip(a.present, b.present)):
            # alternatives of one name, which a spec allows of merges only (a max pool in some
            # instances, an average pool in others): a kind per structure
            raise Mismatch(f"{a.name}: a different layer in different instances")
    return out


def _pass_on(merge: TEntry, entries: list[TEntry]) -> None:
    """A merge absent in some instances passes on the entry before it (the spec's rule), where
    those instances return the merge's other input (timm's Xception block without a shortcut
    returns `stack`): an input `p` right before the merge, present only where the merge may be,
    is moved before the input `q` that is present wherever the merge is not, so `q` is passed on."""
    i = entries.index(merge)
    inputs = merge.node.inputs  # type: ignore[union-attr]
    if all(merge.present) or i < 2 or entries[i - 1].name not in inputs or entries[i - 1].src is None:
        return
    p = entries[i - 1]
    absent = [not m for m in merge.present]
    q = next((e for e in entries[:i - 1] if e.name in inputs and e.name != p.name and all(t for t, a in zip(e.present, absent) if a)), None)
    if q is None or all(p.present):
        return
    j = entries.index(q)
    defined = ["input", *(e.name for e in entries[:j])]
    if p.src not in defined:
        return
    if q.src is None:  # it read the entry before it, which p now is
        if j and entries[j - 1].name is None:
            return
        q.src = entries[j - 1].name if j else "input"
    entries.insert(j, entries.pop(i - 1))


def _alternative_ends(entries: list[TEntry]) -> None:
    """The last two entries, never both present, each reading the entry before them (timm's
    DPN BnAct: `bn` then `bn_relu` in some instances, `bn_silu` in others, see
    _varied_activations) are the list's output in their instances: the later reads the
    earlier, so that wherever it is absent it passes the earlier on (the spec's rule)."""
    if len(entries) < 3 or entries[-3].name is None:
        return
    before, p, q = entries[-3:]
    if any(isinstance(e.node, TMerge) or e.name is None for e in (p, q)) or any(x and y for x, y in zip(p.present, q.present)):
        return
    if (p.src or before.name) == before.name == (q.src or before.name) and q.src is not None:
        q.src = p.name


def _varied_activations(seqs: list[list[Entry] | None]) -> None:
    """An activation that is one name in the instances but not one function (timm's MobileNetV3
    blocks: `bn1_act` relu in some, hardswish in others) is one entry per function, named after
    it (`bn1_relu`, `bn1_hardswish`), each under the `if:` of its instances, as the zoo's
    Conv2dNormActivation writes them: a class has one attribute per name, and these hold no
    weights, so the state_dict keys stay the original's."""
    found: dict[str, set[str]] = {}
    for seq in seqs:
        for e in seq or []:
            if e.name is not None and isinstance(e.node, Layer) and e.node.kind in ACTIVATION_LAYERS and not e.node.args:
                found.setdefault(e.name, set()).add(e.node.kind)
    for seq in seqs:
        renamed = {}
        for e in seq or []:
            if e.name is not None and len(found.get(e.name, ())) > 1 and isinstance(e.node, Layer) and not e.node.args:
                renamed[e.name] = e.name = f"{e.name.removesuffix('_act')}_{e.node.kind}"
        for e in seq or [] if renamed else []:  # what reads it, by its new name
            e.src = renamed.get(e.src, e.src) if e.src is not None else None
            if isinstance(e.node, Merge):
                e.node.inputs = [renamed.get(n, n) for n in e.node.inputs]


def _merged_input(column: list[str | None], reader: TEntry, entries: list[TEntry]) -> str:
    """One name for what an entry (a merge's input, or its `from:`) reads in each instance:
    where some instances read `a` and the others `b`, an entry `b` that reads `a` and is
    absent exactly where `a` is read (an absent entry passes its input on: ResNet's
    `downsample`); or, where `a` and `b` read the same tensor and each is present exactly
    where it is read, the later made to read the earlier (ShuffleNet's stride-1 half `x1`
    and stride-2 `branch1`: `branch1` reads `x1`, which at stride 2 is absent and passes
    the input on). `entries` may be reordered for the second (see _chain)."""
    names = {n for n, p in zip(column, reader.present) if p}
    if len(names) == 1:
        return names.pop()
    if len(names) == 2:
        for b in names:
            (a,) = names - {b}
            for te in entries:
                if te is not reader and te.name == b and te.src == a and all(
                    (n == b) == bool(p) for n, p, m in zip(column, te.present, reader.present) if m
                ):
                    return b
        chained = _chain(sorted(names), column, reader, entries)
        if chained is not None:
            return chained
    raise Mismatch(f"{reader.name}: reads {sorted(names)} in different instances")


def _chain(names: list[str], column: list[str | None], reader: TEntry, entries: list[TEntry]) -> str | None:
    """Two alternatives `a`, `b` of one tensor as one: the later reads the earlier (see
    _merged_input); a layer is put before the group or block it stands in for, so that the
    block reads as the zoo writes it (`x1: {slice}`, then `branch1` reading it)."""
    found = [next((te for te in entries if te.name == n), None) for n in names]
    if any(te is None or te is reader for te in found):
        return None
    p, q = sorted(found, key=entries.index)  # type: ignore[arg-type]
    if p.src is None or q.src != p.src or any(x and y for x, y in zip(p.present, q.present)):
        return None
    for te in (p, q):  # each present exactly where the reader reads it
        if not all((n == te.name) == bool(t) for n, t, m in zip(column, te.present, reader.present) if m):
            return None
    for te in entries:  # nothing else reads the later one, whose value where absent changes
        reads = [te.src] + (list(te.node.inputs) if isinstance(te.node, TMerge) else [])
        if te is not reader and any(r == q.name or isinstance(r, list) and q.name in r for r in reads):
            return None
    i, j = entries.index(p), entries.index(q)
    after = entries[j + 1] if j + 1 < len(entries) else None
    if isinstance(q.node, TLayer) and not isinstance(p.node, TLayer) and (after is None or after.src is not None):
        entries.insert(i, entries.pop(j))  # q reads what p reads, which is written before p
        p, q = q, p
    q.src = p.name
    return q.name


@dataclass
class Scope:
    """What the expressions of one kind may read: `in_channels` and the constructor arguments."""

    n: int
    vars: dict[str, list[Any]]  # in_channels, then constructor arguments (same type on every instance)
    used: dict[str, None] = field(default_factory=dict)
    new: dict[str, list[Any]] = field(default_factory=dict)
    reserved: set[str] = field(default_factory=set)
    outputs: list[str] = field(default_factory=list)  # filters expressions, for conditions

    def value(self, values: list[Any], mask: list[bool], hint: str, channels: list[Any] | None = None) -> Any:
        pv = [v for v, m in zip(values, mask) if m]
        if all(v == pv[0] and type(v) is type(pv[0]) for v in pv):
            return pv[0]
        if all(type(v) is int for v in pv):
            plain = [n for n, vs in {**self.vars, **self.new}.items() if _same([v for v, m in zip(vs, mask) if m], pv)]
            if plain:  # the argument named most like the layer: expand3x3 reads expand3x3_planes
                return self._use(max(plain, key=lambda n: (_common_prefix(n, hint), -plain.index(n))))
            for expr, got in self._int_candidates(mask, channels):
                if got == pv:
                    return self._use(expr)
        elif all(type(v) is bool for v in pv):
            for name, vs in self.vars.items():
                sel = [v for v, m in zip(vs, mask) if m]
                if _same(sel, pv):
                    return self._use(name)
                if all(type(s) is bool for s in sel) and [not s for s in sel] == pv:
                    return self._use(f"not {name}")
        elif all(type(v) in (int, float) for v in pv):
            for name, vs in self.vars.items():
                if _same([v for v, m in zip(vs, mask) if m], pv):
                    return self._use(name)
        if all(isinstance(v, list) and v and all(isinstance(side, list) and len(side) == 2 for side in v) for v in pv) and len({len(v) for v in pv}) == 1:
            # a zeropad's [[top, bottom], [left, right]] ('same' padding computed per instance's input): each side on its own
            names = {1: ["left", "right"], 2: ["top", "bottom", "left", "right"], 3: ["front", "back", "top", "bottom", "left", "right"]}
            sides = names.get(len(pv[0])) or [f"{j}_{end}" for j in range(len(pv[0])) for end in ("before", "after")]
            # (an amount of its own where instances differ: no expression of the arguments is its reason)
            def side(j: int, k: int) -> Any:
                got = [v[j][k] for v in pv]
                return got[0] if len(set(got)) == 1 else self._new(f"{hint}_{sides[2 * j + k]}", [v[j][k] if m else got[0] for v, m in zip(values, mask)])

            return [[side(j, 0), side(j, 1)] for j in range(len(pv[0]))]
        sizes = {len(v) for v in pv if isinstance(v, list)}
        if len(sizes) == 1 and all(type(v) is int or isinstance(v, list) and all(type(x) is int for x in v) for v in pv):
            # a [height, width] pair in some instances (Inception's 1x7 and 7x1 kernels), or a
            # [depth, height, width] triple (the video ResNets' 1x3x3 kernels): each side on its own
            (n,) = sizes
            tuples = [v if isinstance(v, list) else None if v is None else [v] * n for v in values]  # type: ignore[union-attr]
            axes = "hw" if n == 2 else "dhw" if n == 3 else [str(j) for j in range(n)]
            sides = [self.value([t[j] if t is not None else None for t in tuples], mask, f"{hint}_{axes[j]}") for j in range(n)]
            return sides[0] if all(side == sides[0] for side in sides) else sides
        if not all(type(v) in (int, float, bool) for v in pv):
            raise Unsupported(f"{hint} takes the values {pv} in different instances")
        return self._new(hint, [v if m else pv[0] for v, m in zip(values, mask)])

    def _int_candidates(self, mask: list[bool], channels: list[Any] | None):  # type: ignore[no-untyped-def]
        ints = {n: [v for v, m in zip(vs, mask) if m] for n, vs in {**self.vars, **self.new}.items()}
        ints = {n: vs for n, vs in ints.items() if all(type(v) is int for v in vs)}
        for name, vs in ints.items():
            yield name, vs
        if channels is not None:
            sel = [c for c, m in zip(channels, mask) if m]
            if all(type(c) is int for c in sel):
                yield "channels", sel
        for (a, va), (b, vb) in itertools.combinations(ints.items(), 2):
            yield f"{a} * {b}", [x * y for x, y in zip(va, vb)]
        for name, vs in ints.items():
            for k in (2, 3, 4, 6, 8):
                yield f"{k} * {name}", [k * v for v in vs]
                yield f"{name} // {k}", [v // k for v in vs]
            yield f"({name} - 1) // 2", [(v - 1) // 2 for v in vs]

    def _use(self, expr: str) -> str:
        for name in re.findall(r"[A-Za-z_]\w*", expr):
            if name in self.vars or name in self.new:
                self.used[name] = None
        return expr

    def _new(self, hint: str, values: list[Any]) -> str:
        hint = re.sub(r"\W", "_", hint).strip("_") or "param"
        hint = hint if hint[0].isalpha() else f"p_{hint}"
        name, k = hint, 2
        while name in self.vars or name in self.new or name in self.reserved or name in RESERVED_NAMES:
            name, k = f"{hint}{k}", k + 1
        self.new[name] = values
        self.used[name] = None
        return name

    def condition(self, present: list[bool], scope_mask: list[bool], hint: str) -> str:
        """A boolean expression true exactly on the instances that have the entry."""
        want = [p for p, m in zip(present, scope_mask) if m]
        env = [{n: vs[k] for n, vs in {**self.vars, **self.new}.items()} for k in range(self.n) if scope_mask[k]]
        scope = {**self.vars, **self.new}
        atoms = [a for n, vs in scope.items() if all(type(v) is bool for v in vs) for a in (n, f"not {n}")]  # flags first
        atoms += [a for n, vs in scope.items() if n != "in_channels" and all(type(v) is int for v in vs) for a in (f"{n} != 1", f"{n} == 1")]
        widths = [n for n, vs in {**self.vars, **self.new}.items() if n != "in_channels" and all(type(v) is int for v in vs)]
        for expr in dict.fromkeys([*self.outputs, *widths]):
            atoms += [f"in_channels != {expr}", f"in_channels == {expr}"]
        candidates = atoms + [f"{a} or {b}" for a, b in itertools.permutations(atoms, 2)]
        candidates += [f"{a} and {b}" for a, b in itertools.permutations(atoms, 2)]
        for expr in candidates:
            try:
                if [bool(eval(expr, {}, e)) for e in env] == want:  # noqa: S307 - our own expressions
                    return self._use(expr)
            except Exception:
                continue
        return self._new(f"use_{hint}", [bool(p) for p in present])


def _same(a: list[Any], b: list[Any]) -> bool:
    """Equal values of equal types: an argument True is no padding 1."""
    return len(a) == len(b) and all(type(x) is type(y) and x == y for x, y in zip(a, b))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def constructor_defaults(cls: type) -> dict[str, Any]:
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return {}
    return {n: p.default for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def scope_of(instances: list[Instance], reserved: set[str]) -> Scope:
    n = len(instances)
    names = [k for k in instances[0].init if all(k in i.init for i in instances)]
    vars_: dict[str, list[Any]] = {"in_channels": [i.in_channels for i in instances]}
    if instances[0].inputs:  # several named inputs: their channels are `low_channels`, `high_channels`
        vars_ = {f"{k}_channels": [i.inputs.get(k) for i in instances] for k in instances[0].inputs}
    for name in names:
        if name in ("in_channels", "channels", "input") or name in RESERVED_NAMES or name in reserved or name.startswith("_"):
            continue
        values = [i.init[name] for i in instances]
        if len({type(v) for v in values}) != 1:
            continue
        if values == vars_.get("in_channels"):
            continue  # the input's channels under another name (inplanes, inp)
        vars_[name] = values
    return Scope(n, vars_, reserved=set(reserved))
