"""Initialisation rules read off a freshly built model: for each weighted layer kind (conv,
dense, batchnorm) and tensor (weight, bias), the one rule of archc's vocabulary
(archc.ops.init) that every layer of that kind is consistent with, for the spec's
`defaults:`. The importer builds its model without pretrained weights, so each tensor holds
what the model's own initialisation drew.

A rule is recognised by testing candidates, never by reading the model's code:
- each candidate is a distribution per tensor (a fan rule's std depends on the layer's fans),
  in a canonical form (`Dist`) in which rules of the same distribution are equal
  (kaiming_normal leaky_relu a=0 is relu; a trunc_normal cut 6 std away or more is the normal);
- a tensor refutes a candidate where its elements leave the candidate's support, or stay so
  far inside a bound that no sample near it has probability under e^-30, or its mean or std
  is more than K standard errors from the candidate's (std: relative standard error
  sqrt((kurtosis - 1) / 4n)); constants are exact; the kind's tensors, each standardised
  by its own mean and std and pooled, refute a candidate whose kurtosis (normal 3, uniform
  1.8, a truncated normal's own) they do not have;
- tensors under MIN elements only refute: a tensor role is decided by a kind with at least
  one tensor of MIN elements;
- candidates are tried in an order of preference (PyTorch's default, the fan rules of the
  common gains, fixed rules with parameters of 1 to 3 significant digits, fan rules with
  any such scale), and the first that no tensor refutes, and that the spec can state, is
  the kind's rule. Where none survives the kind's rule is left unset (archc's
  torch_default), which the import's exactness check does not see. Layer norms and group
  norms have no rule to state (ones and zeros, docs/spec.md "Initialisation"), and one
  layer unlike the rest of its kind is not written as a per-layer `init:`: the kind gets
  none (SqueezeNet's final_conv leaves its convs' weight rule unset).

The spec is written with the names the zoo uses (`torch_default`, `kaiming_normal: {mode:
fan_out, nonlinearity: relu}`, `{normal: {std: 0.01}}`, `zeros`); `canonical` maps any rule
of a spec back to its `Dist`, which is how the written rule is checked and how tests compare
it with a hand-written spec's.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from archc.ops.init import _TRUNC2, Rule, gain2, resolve

Dist = tuple  # ("constant", v) | ("fan", distribution, mode, scale) | ("torch_bias",)
# | ("normal", mean, std) | ("trunc", mean, std, a, b) | ("uniform", a, b)

K = 6.0  # standard errors a statistic may stray before it refutes
MIN = 64  # elements a tensor needs to decide (smaller ones only refute)
KINDS = ("conv", "dense", "batchnorm")
SCALES = (2.0, 1.0, 1.0 / 3, 25.0 / 9, 9.0 / 16)  # relu, linear, torch's a=sqrt(5), tanh, selu
MODES = {"conv": ("fan_out", "fan_in", "fan_avg", "group_fan_out"), "dense": ("fan_out", "fan_in", "fan_avg")}


class Tensor:
    """One tensor of one layer: its values (float64) and its layer's fans."""

    def __init__(self, values: Any, fan_in: int, fan_out: int, groups: int) -> None:
        x = values.detach().double().flatten()
        self.n = x.numel()
        self.fan_in, self.fan_out, self.groups = fan_in, fan_out, groups
        self.min, self.max = float(x.min()), float(x.max())
        x2 = x * x
        self.sums = [float(x.sum()), float(x2.sum()), float((x2 * x).sum()), float((x2 * x2).sum())]
        self.mean = self.sums[0] / self.n
        self.var = max(self.sums[1] / self.n - self.mean**2, 0.0) * self.n / max(self.n - 1, 1)

    def central4(self, mu: float) -> float:
        """sum((x - mu)^4)."""
        s1, s2, s3, s4 = self.sums
        return s4 - 4 * mu * s3 + 6 * mu**2 * s2 - 4 * mu**3 * s1 + self.n * mu**4

    def fan(self, mode: str) -> float:
        if mode == "fan_in":
            return self.fan_in
        if mode == "fan_out":
            return self.fan_out
        if mode == "group_fan_out":
            return self.fan_out / self.groups
        return (self.fan_in + self.fan_out) / 2


# --- the layers' tensors ------------------------------------------------------------------------


def tensors(model: Any) -> dict[tuple[str, str], list[Tensor]]:
    """(kind, role) -> the tensors of the model's layers of that archc kind."""
    from archc.importer.ops import Unsupported, leaf, norm_act

    out: dict[tuple[str, str], list[Tensor]] = {}
    for module in model.modules():
        try:
            found = leaf(module)
            kind = found[0] if found else (norm_act(module) or [(None,)])[0][0]
        except Unsupported:
            continue
        if kind not in KINDS:
            continue
        w = module.weight
        if kind == "batchnorm":
            fan_in = fan_out = groups = 1
        else:
            receptive = math.prod(w.shape[2:])
            fan_in, fan_out, groups = w.shape[1] * receptive, w.shape[0] * receptive, getattr(module, "groups", 1)
        for role in ("weight", "bias"):
            t = getattr(module, role, None)
            if t is not None:
                out.setdefault((kind, role), []).append(Tensor(t, fan_in, fan_out, groups))
    return out


# --- distributions -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _trunc_moments(alpha: float, beta: float) -> tuple[float, float, float, float, float]:
    """Mean, std, kurtosis, 8th standardised moment and density at the cuts (the larger) of a
    unit normal cut to [alpha, beta]."""
    import torch

    lo, hi = max(alpha, -12.0), min(beta, 12.0)
    z = torch.linspace(lo, hi, 20001, dtype=torch.float64)
    p = torch.exp(-z * z / 2)
    p = p / torch.trapezoid(p, z)
    mean = float(torch.trapezoid(z * p, z))
    var = float(torch.trapezoid((z - mean) ** 2 * p, z))
    u = (z - mean) / math.sqrt(var)
    edge = max(float(p[0]), float(p[-1]))
    return mean, math.sqrt(var), float(torch.trapezoid(u**4 * p, z)), float(torch.trapezoid(u**8 * p, z)), edge


def moments(dist: Dist, t: Tensor) -> tuple[float, float, float | None, float | None, float, float, float]:
    """(mean, std, lower bound, upper bound, kurtosis, 8th moment, density at the bounds) of
    `dist` for tensor `t` (bounds and density None and 0 for an unbounded one)."""
    kind = dist[0]
    if kind == "fan" or kind == "torch_bias":
        distribution, mode, scale = dist[1:] if kind == "fan" else ("uniform", "fan_in", 1.0 / 3)
        std = math.sqrt(scale / t.fan(mode))
        if distribution == "normal":
            return 0.0, std, None, None, 3.0, 105.0, 0.0
        if distribution == "uniform":
            bound = math.sqrt(3) * std
            return 0.0, std, -bound, bound, 1.8, 9.0, 1 / (2 * bound)
        cut = 2 * std / _TRUNC2  # Keras' truncated normal: cut at 2 of its (rescaled) std
        _, _, kurt, m8, edge = _trunc_moments(-2.0, 2.0)
        return 0.0, std, -cut, cut, kurt, m8, edge / (std / _TRUNC2)
    if kind == "normal":
        return dist[1], dist[2], None, None, 3.0, 105.0, 0.0
    if kind == "uniform":
        a, b = dist[1], dist[2]
        return (a + b) / 2, (b - a) / math.sqrt(12), a, b, 1.8, 9.0, 1 / (b - a)
    mean, std, a, b = dist[1:]  # trunc
    m, s, kurt, m8, edge = _trunc_moments((a - mean) / std, (b - mean) / std)
    return mean + m * std, s * std, a, b, kurt, m8, edge / std


def refutes(dist: Dist, group: list[Tensor]) -> bool:
    """Whether the tensors of one kind's role refute `dist` (the module docstring's tests)."""
    if dist[0] == "constant":
        v = _f32(dist[1])
        return any(t.min != v or t.max != v for t in group)
    pooled4, pooled8, count = 0.0, 0.0, 0
    for t in group:
        mean, std, lo, hi, kurt, m8, edge = moments(dist, t)
        if lo is not None:
            slack = 1e-6 * max(abs(lo), abs(hi)) + 1e-12
            if t.min < lo - slack or t.max > hi + slack:
                return True
            # a bounded rule's samples come close to its bounds: no sample within g of one
            # has probability about exp(-n * density * g)
            if t.n * edge * max(t.min - lo, hi - t.max) > 30:
                return True
        if t.n < 2:
            continue
        if abs(t.mean - mean) > K * std / math.sqrt(t.n) + 1e-12:
            return True
        if abs(math.sqrt(t.var) / std - 1) > K * math.sqrt((kurt - 1) / (4 * t.n)) + 1e-6:
            return True
        if t.var > 0:
            pooled4, count = pooled4 + t.central4(t.mean) / t.var**2, count + t.n
        pooled8 = max(pooled8, m8 - kurt**2)
    kurt = moments(dist, group[0])[4]
    return count >= MIN and abs(pooled4 / count - kurt) > K * math.sqrt(pooled8 / count)


def _f32(v: float) -> float:
    import struct

    return struct.unpack("f", struct.pack("f", v))[0]


# --- candidates --------------------------------------------------------------------------------


def _round(v: float, digits: int) -> float:
    return float(f"{v:.{digits}g}")


def _nice(v: float) -> list[float]:
    """v rounded to 1, 2 and 3 significant digits (each once)."""
    out: list[float] = []
    for d in (1, 2, 3):
        r = _round(v, d)
        if r not in out and r != 0:
            out.append(r)
    return out


def candidates(kind: str, role: str, group: list[Tensor]) -> list[Dist]:
    """The rules to try for one kind's role, in order of preference."""
    lo, hi = min(t.min for t in group), max(t.max for t in group)
    if lo == hi:
        return [("constant", float(f"{lo:.7g}"))]
    out: list[Dist] = []
    fans = kind != "batchnorm" and role == "weight"
    if fans:
        out.append(("fan", "uniform", "fan_in", 1.0 / 3))  # torch_default
        out += [("fan", d, m, s) for s in SCALES for m in MODES[kind] for d in ("normal", "uniform", "keras_trunc")]
    elif kind != "batchnorm":
        out.append(("torch_bias",))
    n = sum(t.n for t in group)
    mean = sum(t.sums[0] for t in group) / n
    second = sum(t.sums[1] for t in group) / n
    std = math.sqrt(max(second - mean**2, 0.0))
    means = [0.0] if abs(mean) <= K * std / math.sqrt(n) else _nice(mean)
    for m in means:
        rms = math.sqrt(max(second - 2 * m * mean + m * m, 0.0))
        out += [("normal", m, s) for s in _nice(rms)]
        out += [("trunc", m, s, -2.0, 2.0) for s in _nice(rms) if -2.0 < m < 2.0]
    if abs(lo + hi) <= K * std / math.sqrt(n) * 10:
        out += [("uniform", -b, b) for b in _nice(max(-lo, hi))]
    out += [("uniform", a, b) for a, b in zip(_nice(lo), _nice(hi)) if a < b]
    if fans:
        for m in MODES[kind]:
            scale = sum(t.sums[1] / t.n * t.fan(m) for t in group) / len(group)
            out += [("fan", d, m, s) for s in _nice(scale) for d in ("normal", "uniform", "keras_trunc")]
    return out


def recognise(model: Any) -> dict[str, dict[str, Dist]]:
    """kind -> role -> the one rule every layer of that kind is consistent with (and that the
    spec can state)."""
    out: dict[str, dict[str, Dist]] = {}
    for (kind, role), group in tensors(model).items():
        if max(t.n for t in group) < MIN:
            continue
        for dist in candidates(kind, role, group):
            if written(dist, kind, role) is not None and not refutes(dist, group):
                out.setdefault(kind, {})[role] = dist
                break
    return out


# --- rules as a spec writes them ---------------------------------------------------------------


def _num(v: float) -> float | int:
    return int(v) if float(v).is_integer() and abs(v) < 1e15 else v


def writable(dist: Dist, kind: str, role: str) -> Any:
    """The spec's rule for `dist` (the zoo's spellings), or None where the vocabulary has none."""
    name = dist[0]
    if name == "constant":
        v = dist[1]
        return "zeros" if v == 0 else "ones" if v == 1 else {"constant": _num(v)}
    if name == "torch_bias":
        return "torch_default"
    if name == "normal":
        return {"normal": {**({"mean": _num(dist[1])} if dist[1] else {}), "std": _num(dist[2])}}
    if name == "uniform":
        return {"uniform": {"a": _num(dist[1]), "b": _num(dist[2])}}
    if name == "trunc":
        mean, std, a, b = dist[1:]
        return {"trunc_normal": {**({"mean": _num(mean)} if mean else {}), "std": _num(std), "a": _num(a), "b": _num(b)}}
    distribution, mode, scale = dist[1:]
    if (distribution, mode, scale) == ("uniform", "fan_in", 1.0 / 3):
        return "torch_default"
    if distribution == "keras_trunc":
        if mode == "group_fan_out":
            return None
        return {"variance_scaling": {"scale": _num(scale), "mode": mode, "distribution": "truncated_normal"}}
    if mode == "fan_avg":
        gain = math.sqrt(scale)
        return {f"xavier_{distribution}": {"gain": _num(_round(gain, 15))}} if scale != 1 else f"xavier_{distribution}"
    named = {2.0: "relu", 1.0: "linear", 25.0 / 9: "tanh", 9.0 / 16: "selu"}
    if scale in named:
        args = {"mode": mode, "nonlinearity": named[scale]} if mode != "fan_in" else {"nonlinearity": named[scale]}
        return {f"kaiming_{distribution}": args}
    if mode != "group_fan_out":
        return {"variance_scaling": {"scale": _num(scale), "mode": mode, "distribution": distribution.replace("normal", "untruncated_normal")}}
    if scale < 2:
        return {f"kaiming_{distribution}": {"a": math.sqrt(2 / scale - 1), "mode": mode}}
    return None


def canonical(rule: Rule, kind: str, role: str) -> Dist:
    """The distribution of a resolved rule (archc.ops.init.Rule) for `kind`'s tensor `role`."""
    name = rule.name
    if name in ("torch_default", "keras_default"):
        if kind == "batchnorm":
            return ("constant", 1.0 if role == "weight" else 0.0)
        if role == "bias":
            return ("torch_bias",) if name == "torch_default" else ("constant", 0.0)
        return ("fan", "uniform", "fan_in", 1.0 / 3) if name == "torch_default" else ("fan", "uniform", "fan_avg", 1.0)
    if name == "constant":
        return ("constant", float(rule.arg("value")))
    if name == "normal":
        return ("normal", rule.arg("mean"), rule.arg("std"))
    if name == "uniform":
        return ("uniform", rule.arg("a"), rule.arg("b"))
    if name == "trunc_normal":
        mean, std, a, b = (rule.arg(k) for k in ("mean", "std", "a", "b"))
        return ("normal", mean, std) if a <= mean - 6 * std and b >= mean + 6 * std else ("trunc", mean, std, a, b)
    if name == "kaiming":
        scale = gain2(rule.arg("nonlinearity"), rule.arg("a"))
        return ("fan", rule.arg("distribution"), rule.arg("mode"), _close(scale))
    if name == "xavier":
        return ("fan", rule.arg("distribution"), "fan_avg", _close(rule.arg("gain") ** 2))
    distribution = {"truncated_normal": "keras_trunc", "untruncated_normal": "normal"}[rule.arg("distribution")] if rule.arg(
        "distribution"
    ) != "uniform" else "uniform"
    return ("fan", distribution, rule.arg("mode"), _close(rule.arg("scale")))


def _close(scale: float) -> float:
    """A scale snapped to SCALES where it is one of them up to rounding (1/3 as written)."""
    return next((s for s in SCALES if abs(scale - s) <= 1e-9 * s), scale)


def written(dist: Dist, kind: str, role: str) -> Any:
    """`writable(dist)` where it reads back (archc.ops.init.resolve) as `dist`, else None."""
    rule = writable(dist, kind, role)
    if rule is None or not _same(canonical(resolve(_adapter().validate_python(rule)), kind, role), dist):
        return None
    return rule


@functools.lru_cache(maxsize=1)
def _adapter() -> Any:
    from pydantic import TypeAdapter

    from archc.spec.init_rules import RuleSpec

    return TypeAdapter(RuleSpec)


def spec_rules(model: Any) -> dict[str, Any]:
    """kind -> the `init` value for `defaults.KIND`, for the kinds with a recognised rule."""
    out: dict[str, Any] = {}
    for kind, roles in recognise(model).items():
        pair = {role: written(roles[role], kind, role) for role in ("weight", "bias") if role in roles}
        torch_default = pair.get("weight") == "torch_default" and pair.get("bias", "torch_default") == "torch_default"
        out[kind] = "torch_default" if kind != "batchnorm" and torch_default else pair
    return out


def _same(a: Dist, b: Dist) -> bool:
    if a[0] == "trunc" and b[0] == "normal" or a[0] == "normal" and b[0] == "trunc":
        return False
    return len(a) == len(b) and all(
        x == y or isinstance(x, float) and isinstance(y, float) and abs(x - y) <= 1e-9 * max(abs(x), abs(y)) for x, y in zip(a, b)
    )


def add_defaults(spec: dict[str, Any], model: Any) -> None:
    """Write the model's recognised rules into the spec's `defaults:` (as `init:` of each kind)."""
    rules = spec_rules(model)
    defaults = spec.setdefault("defaults", {})
    for kind in KINDS:
        if kind in rules:
            defaults[kind] = {**defaults.get(kind, {}), "init": rules[kind]}
