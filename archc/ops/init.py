"""Initialisation: the `init` argument of the layers that have tensors (conv, conv_transpose,
dense, batchnorm; depthwise_conv, whose rules are the convs'), its vocabulary (the spec models
that validate it are archc.spec.init_rules), and what each rule becomes in PyTorch and in Keras.

This module holds the rule machinery only. What a rule means for one tensor of one op kind
(Keras' argument for it, what torch_default and keras_default are there, whether it has fans,
which argument leaves it out) is declared by the op itself: `Op.TENSORS` (a `Tensor` per role),
and `Op.TORCH_CLASS` / `Op.torch_init_classes` for PyTorch's init loop.

A layer's `init` names one rule per tensor, `{weight: RULE, bias: RULE}`, or one name for both
(`torch_default`, `keras_default`). What a layer leaves unset comes from `defaults.KIND.init`,
and what that leaves unset is `torch_default`: PyTorch's own constructor initialisation,
which archc states in Keras too (archc's numerics are PyTorch's), so a spec that says nothing
gets the same distributions in both frameworks.

The rules (each a string, or a one-key mapping with its arguments):
- `zeros`, `ones`, `{constant: VALUE}`;
- `{normal: {mean: 0, std: S}}`, `{uniform: {a: A, b: B}}`,
  `{trunc_normal: {mean: 0, std: S, a: -2, b: 2}}` (PyTorch's: the bounds are absolute values);
- PyTorch's fan rules `kaiming_normal`, `kaiming_uniform` (`a`, `mode`: fan_in | fan_out,
  `nonlinearity`) and `xavier_normal`, `xavier_uniform` (`gain`), with PyTorch's defaults;
- Keras' `{variance_scaling: {scale, mode: fan_in | fan_out | fan_avg, distribution:
  truncated_normal | untruncated_normal | uniform}}` and its presets `glorot_uniform`,
  `glorot_normal`, `he_normal`, `he_uniform`, `lecun_normal`, `lecun_uniform`;
- `torch_default` (weights: uniform(+-1/sqrt(fan_in)), PyTorch's kaiming_uniform_(a=sqrt(5));
  a bias: uniform(+-1/sqrt(fan_in of its weight)); batch norm: ones and zeros) and
  `keras_default` (kernels: glorot_uniform; biases zeros; batch norm: ones and zeros).

Fans are PyTorch's: fan_in = in_channels / groups * kernel area, fan_out = out_channels *
kernel area (a dense layer: its input and output features; a transposed conv's weight is
(in, out / groups, k, k), so its fan_in is out / groups * kernel area). Keras' VarianceScaling
computes the same fans for the layers archc emits (Conv2D with groups, Conv2DTranspose, Dense),
so every fan rule is one Keras initializer; a depthwise kernel's fans are PyTorch's swapped
(`swap_fans`). The only layer-dependent one is PyTorch's default bias, whose bound Keras
receives as a number (`torch_bias_initializer(fan_in)`).

PyTorch shows a model's rules as torchvision does: one loop over `self.modules()` per layer
kind, then a line per layer that differs from its kind. Keras receives initializers as layer
arguments, as keras.applications does, leaving out those equal to Keras' own defaults.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archc.code import Call, flat
from archc.spec.init_rules import RULES

# --- the rules as archc uses them --------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """One tensor's rule, resolved: `name` and its arguments (every default filled in)."""

    name: str  # constant | normal | uniform | trunc_normal | kaiming | xavier | variance_scaling | torch_default | keras_default
    args: tuple[tuple[str, Any], ...] = ()

    def arg(self, key: str) -> Any:
        return dict(self.args)[key]

    def __str__(self) -> str:
        if not self.args:
            return self.name
        return f"{self.name}({', '.join(f'{k}={v}' for k, v in self.args)})"


@dataclass(frozen=True)
class Init:
    """A layer's rules: weight and bias (batch norm: gamma and beta)."""

    weight: Rule
    bias: Rule

    def __str__(self) -> str:
        return f"weight {self.weight}, bias {self.bias}"


TORCH_DEFAULT = Rule("torch_default")
DEFAULT = Init(TORCH_DEFAULT, TORCH_DEFAULT)  # what a spec that says nothing gets
ZEROS = Rule("constant", (("value", 0.0),))
ONES = Rule("constant", (("value", 1.0),))
_PRESETS = {  # Keras' named initializers, as variance scaling
    "glorot_uniform": (1.0, "fan_avg", "uniform"), "glorot_normal": (1.0, "fan_avg", "truncated_normal"),
    "he_normal": (2.0, "fan_in", "truncated_normal"), "he_uniform": (2.0, "fan_in", "uniform"),
    "lecun_normal": (1.0, "fan_in", "truncated_normal"), "lecun_uniform": (1.0, "fan_in", "uniform"),
}  # fmt: skip


def _num(value: Any) -> float:
    return float(value)


def resolve(spec: Any) -> Rule | None:
    """The Rule of a validated RuleSpec (None stays None)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec in ("torch_default", "keras_default"):
            return Rule(spec)
        if spec == "zeros":
            return ZEROS
        if spec == "ones":
            return ONES
        if spec in _PRESETS:
            scale, mode, distribution = _PRESETS[spec]
            return Rule("variance_scaling", (("scale", scale), ("mode", mode), ("distribution", distribution)))
        return resolve(RULES[spec].model_validate({spec: {}}))  # kaiming_*, xavier_*: PyTorch's defaults
    key = next(iter(type(spec).model_fields))
    args = getattr(spec, key)
    if key == "constant":
        return Rule("constant", (("value", _num(args)),))
    if key == "normal":
        return Rule("normal", (("mean", _num(args.mean)), ("std", _num(args.std))))
    if key == "uniform":
        return Rule("uniform", (("a", _num(args.a)), ("b", _num(args.b))))
    if key == "trunc_normal":
        return Rule("trunc_normal", (("mean", _num(args.mean)), ("std", _num(args.std)), ("a", _num(args.a)), ("b", _num(args.b))))
    if key in ("kaiming_normal", "kaiming_uniform"):
        distribution = key.split("_")[1]
        return Rule("kaiming", (("distribution", distribution), ("a", _num(args.a)), ("mode", args.mode), ("nonlinearity", args.nonlinearity)))
    if key in ("xavier_normal", "xavier_uniform"):
        return Rule("xavier", (("distribution", key.split("_")[1]), ("gain", _num(args.gain))))
    return Rule("variance_scaling", (("scale", _num(args.scale)), ("mode", args.mode), ("distribution", args.distribution)))


GLOROT_UNIFORM = resolve("glorot_uniform")


@dataclass(frozen=True)
class Tensor:
    """One tensor of an op kind with an `init` argument, as its op declares it (`Op.TENSORS`):
    what its rules mean there and what Keras calls its initializer."""

    keras_arg: str  # Keras' initializer argument: kernel_initializer, gamma_initializer, ...
    keras_default: Rule  # Keras' own default for that argument: what keras_default means here
    # PyTorch's constructor initialisation where it is a constant (batch norm's ones and zeros);
    # None: PyTorch's fan-in bound, uniform(+-1/sqrt(fan_in)) (a conv's or linear layer's reset)
    torch_default: Rule | None = None
    fans: bool = False  # a weight with fans, which the fan rules (kaiming, xavier, ...) need
    switch: str | None = None  # the op's argument whose false leaves the tensor out (bias, scale)
    # Leaving it out makes the PyTorch module a subclass (batch norm's BatchNorm2dNoScale), which
    # the init loop tests as its base class: the loop guards the tensor (`if m.weight is not
    # None:`) wherever a layer lacks it, rather than leaving it out where every layer does.
    subclass_when_off: bool = False
    noun: str = "a bias"  # how an error names it
    # PyTorch's (fan_in, fan_out) of a weight read from its module `{m}`, as the PyTorch code
    # prints them where a rule needs a fan (`1.0 / math.sqrt(m.out_features)`)
    torch_fans: tuple[str, str] = ("{m}.weight[0].numel()", "{m}.weight[:, 0].numel()")


def weight(keras_arg: str, torch_fans: tuple[str, str] | None = None) -> Tensor:
    """A conv's or dense layer's weight: Keras' `keras_arg` (kernel_initializer, ...);
    `torch_fans`: its module's attributes that are its fans, where it has them (nn.Linear's
    in_features, out_features); else they are read from the weight (torch.nn.init's fans)."""
    fans = {"torch_fans": torch_fans} if torch_fans else {}
    return Tensor(keras_arg, GLOROT_UNIFORM, fans=True, noun="a weight", **fans)


BIAS = Tensor("bias_initializer", ZEROS, switch="bias")  # a conv's or dense layer's bias


def tensor(kind: str, role: str) -> Tensor:
    """The facts of op kind `kind`'s tensor `role` (weight or bias)."""
    from archc.ops import KINDS  # at call time: the op modules import this one

    return KINDS[kind].TENSORS[role]


def __getattr__(name: str) -> tuple[str, ...]:
    """`KINDS`: the op kinds with an `init` argument (those whose op declares TENSORS)."""
    if name == "KINDS":
        from archc.ops import KINDS

        return tuple(kind for kind, op in KINDS.items() if op.TENSORS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _grouped(kind: str) -> bool:
    """Whether the op kind's weight has a fan_out / groups (the convolutions)."""
    from archc.ops import KINDS
    from archc.ops.base import Op

    return kind in KINDS and KINDS[kind].group_fan_out.__func__ is not Op.group_fan_out.__func__  # type: ignore[attr-defined]


def problem(rule: Rule, role: str, kind: str) -> str | None:
    """Why `rule` cannot initialise this tensor, if it cannot: fan rules need a weight with fans."""
    facts = tensor(kind, role)
    fans = facts.fans
    if not fans and rule.name in ("kaiming", "xavier", "variance_scaling"):
        return f"{rule.name} needs a tensor with fans (a conv's or dense layer's weight), not {facts.noun}; use zeros, ones, constant, normal, uniform or trunc_normal"
    if rule.name == "kaiming" and rule.arg("mode") == "group_fan_out" and not (fans and _grouped(kind)):
        return "mode group_fan_out is for conv weights (fan_out / groups)"
    if rule.name == "kaiming" and rule.arg("a") != 0 and rule.arg("nonlinearity") != "leaky_relu":
        return "kaiming's `a` is leaky_relu's negative slope; it needs nonlinearity: leaky_relu"
    return None


def layer_init(spec: Any, default: Init) -> Init:
    """A layer's rules: what its `init` says, the kind's defaults for the rest."""
    if spec is None:
        return default
    if isinstance(spec, str):
        return Init(Rule(spec), Rule(spec))
    weight, bias = resolve(spec.weight), resolve(spec.bias)
    return Init(weight or default.weight, bias or default.bias)


def default_init(spec: Any) -> Init:
    """A kind's rules from `defaults.KIND.init`; unset means torch_default."""
    return layer_init(spec, DEFAULT)


def product(*parts: str) -> str:
    """The product of sources, folded to a literal where they all are integers."""
    if all(p.isdigit() for p in parts):
        return str(math.prod(int(p) for p in parts))
    parts = tuple(p for p in parts if p != "1")
    return " * ".join(f"({p})" if any(op in p for op in " +-") and not p.isidentifier() else p for p in parts)


# --- numbers ------------------------------------------------------------------------------------


def gain2(nonlinearity: str, a: float = 0.0) -> float:
    """The square of torch.nn.init.calculate_gain: the variance scale (Keras' `scale`)."""
    if nonlinearity == "tanh":
        return 25.0 / 9
    if nonlinearity == "relu":
        return 2.0
    if nonlinearity == "leaky_relu":
        return 2.0 / (1 + a**2)
    if nonlinearity == "selu":
        return 9.0 / 16
    return 1.0


_TRUNC2 = 0.87962566103423978  # std of a unit normal truncated at +-2 standard deviations


def _truncated_std(std: float, lo: float, hi: float) -> float:
    """Standard deviation of N(0, std) truncated to [lo, hi] (in absolute values)."""
    a, b = lo / std, hi / std
    pdf = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))  # noqa: E731
    z = cdf(b) - cdf(a)
    mean = (pdf(a) - pdf(b)) / z
    var = 1 + (a * pdf(a) - b * pdf(b)) / z - mean**2
    return std * math.sqrt(var)


def moments(rule: Rule, role: str, kind: str, fan_in: int, fan_out: int, groups: int = 1) -> tuple[float, float]:
    """(mean, standard deviation) of one element under `rule`, for a tensor with these fans
    (a bias: its weight's fans; `groups`: a conv's). For tests."""
    if rule.name in ("torch_default", "keras_default"):
        facts = tensor(kind, role)
        default = facts.keras_default if rule.name == "keras_default" else facts.torch_default
        if default is None:
            return (0.0, 1 / math.sqrt(fan_in) / math.sqrt(3))  # uniform(+-1/sqrt(fan_in))
        rule = default
    a = dict(rule.args)
    if rule.name == "constant":
        return (a["value"], 0.0)
    if rule.name == "normal":
        return (a["mean"], a["std"])
    if rule.name == "uniform":
        return ((a["a"] + a["b"]) / 2, (a["b"] - a["a"]) / math.sqrt(12))
    if rule.name == "trunc_normal":
        return (a["mean"], _truncated_std(a["std"], a["a"] - a["mean"], a["b"] - a["mean"]))  # symmetric cut-offs in the zoo
    if rule.name == "kaiming":
        fan = {"fan_in": fan_in, "fan_out": fan_out, "group_fan_out": fan_out / groups}[a["mode"]]
        std = math.sqrt(gain2(a["nonlinearity"], a["a"])) / math.sqrt(fan)
        return (0.0, std)
    if rule.name == "xavier":
        return (0.0, a["gain"] * math.sqrt(2.0 / (fan_in + fan_out)))
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[a["mode"]]
    return (0.0, math.sqrt(a["scale"] / fan))  # Keras scales every distribution to this std


# --- PyTorch ------------------------------------------------------------------------------------


def _fraction(value: float, form: str = "{}") -> str | None:
    """`1 / 3` for 0.3333333333333333: a float whose shortest repr is long but which is a
    ratio of small integers, as a reader would write it (None: no such ratio); `form` prints
    each integer (`{}.0`: `1.0 / 3.0`, as keras.applications writes its configs)."""
    if len(repr(float(value)).lstrip("-")) <= 10:
        return None
    ratio = Fraction(value).limit_denominator(1000)
    if ratio.denominator == 1 or ratio.numerator / ratio.denominator != value:
        return None
    return f"{form.format(ratio.numerator)} / {form.format(ratio.denominator)}"


def _g(value: float) -> str:
    """A number as printed source: an integer without its `.0`, a ratio of small integers as
    that ratio (never where it would be a divisor: `x / 1 / 3`)."""
    if float(value).is_integer() and abs(value) < 1e15:
        return repr(int(value))
    return _fraction(value) or repr(value)


def _f(value: float) -> str:
    """A number as a float literal (`2.0`) or a ratio of small integers (`1.0 / 3.0`)."""
    return _fraction(float(value), "{}.0") or repr(float(value))


def torch_lines(rule: Rule, role: str, source: str, weight: str = "", kind: str = "conv") -> list[Call | str]:
    """Statements that initialise `source` by `rule`, as calls (laid out by archc.code.render)."""
    return [_as_call(line) for line in _torch_text(rule, role, source, weight, kind)]


def _as_call(text: str) -> Call | str:
    """`f(a, b=c)` as a Call; the arguments hold no top-level commas of their own. An
    assignment stays text."""
    func, _, rest = text.partition("(")
    if "=" in func or not rest:
        return text
    args, depth, start = [], 0, 0
    for i, ch in enumerate(rest[:-1]):
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            args.append(rest[start:i].strip())
            start = i + 1
    args.append(rest[start:-1].strip())
    return Call(func, tuple(args))


def _torch_text(rule: Rule, role: str, source: str, weight: str, kind: str) -> list[str]:
    """Statements that initialise `source` (source, e.g. `m.weight`) by `rule`. torch_default
    gives none in the init loop (the constructor has done it); where a layer returns to it
    from another kind default, PyTorch's reset is written out (`weight`: its weight's source)."""
    a = dict(rule.args)
    facts = tensor(kind, role)
    if rule.name == "torch_default":
        if not weight:
            return []
        if facts.torch_default is not None:
            return _torch_text(facts.torch_default, role, source, weight, kind)
        if facts.fans:
            return [f"nn.init.kaiming_uniform_({source}, a=math.sqrt(5))"]
        fan_in = tensor(kind, "weight").torch_fans[0].format(m=weight.rsplit(".", 1)[0])  # its weight's
        bound = f"1 / math.sqrt({fan_in})"
        return [f"nn.init.uniform_({source}, -{bound}, {bound})"]
    if rule.name == "keras_default":
        return _torch_text(facts.keras_default, role, source, weight, kind)
    if rule.name == "constant":
        value = a["value"]
        if value in (0, 1):
            return [f"nn.init.{'zeros' if value == 0 else 'ones'}_({source})"]
        return [f"nn.init.constant_({source}, {_g(value)})"]
    if rule.name == "normal":
        return [f"nn.init.normal_({source}, {_g(a['mean'])}, {_g(a['std'])})"]
    if rule.name == "uniform":
        return [f"nn.init.uniform_({source}, {_g(a['a'])}, {_g(a['b'])})"]
    if rule.name == "trunc_normal":
        return [f"nn.init.trunc_normal_({source}, mean={_g(a['mean'])}, std={_g(a['std'])}, a={_g(a['a'])}, b={_g(a['b'])})"]
    if rule.name == "kaiming" and a["mode"] == "group_fan_out":  # timm's _init_weight_goog, word for word
        m = source.rsplit(".", 1)[0]
        scale = _f(gain2(a["nonlinearity"], a["a"]))
        lines = [f"fan_out = {m}.kernel_size[0] * {m}.kernel_size[1] * {m}.out_channels", f"fan_out //= {m}.groups"]
        if a["distribution"] == "normal":
            return [*lines, f"nn.init.normal_({source}, 0.0, math.sqrt({scale} / fan_out))"]
        return [*lines, f"bound = math.sqrt(3 * {scale} / fan_out)", f"nn.init.uniform_({source}, -bound, bound)"]
    if rule.name == "kaiming":
        parts = [source] + ([f"a={_g(a['a'])}"] if a["a"] else [])
        parts += [f"mode={json.dumps(a['mode'])}"] if a["mode"] != "fan_in" else []
        parts += [f"nonlinearity={json.dumps(a['nonlinearity'])}"] if a["nonlinearity"] != "leaky_relu" else []
        return [f"nn.init.kaiming_{a['distribution']}_({', '.join(parts)})"]
    if rule.name == "xavier":
        more = f", gain={_g(a['gain'])}" if a["gain"] != 1 else ""
        return [f"nn.init.xavier_{a['distribution']}_({source}{more})"]
    return _variance_scaling_text(a["scale"], a["mode"], a["distribution"], source, facts)


def _variance_scaling_text(scale: float, mode: str, distribution: str, source: str, facts: Tensor) -> list[str]:
    """Keras' variance scaling in PyTorch's own calls, as torchvision writes them: xavier_*
    for fan_avg, kaiming_* where the scale is a gain's square (1 linear, 2 relu), else
    uniform_ / normal_ with the bound or deviation computed from the module's fan
    (EfficientNet's `init_range = 1.0 / math.sqrt(m.out_features)`). Keras' truncated normal
    (cut at 2 standard deviations, and rescaled) has no PyTorch call: the helper."""
    torch_kind = "uniform" if distribution == "uniform" else "normal"
    if distribution == "truncated_normal":
        return [f"{TORCH_HELPER}({source}, scale={_f(scale)}, mode={json.dumps(mode)}, distribution={json.dumps(distribution)})"]
    if mode == "fan_avg":  # xavier: std = gain * sqrt(2 / (fan_in + fan_out)), so gain = sqrt(scale)
        gain = "" if scale == 1 else f", gain={_root(scale)}"
        return [f"nn.init.xavier_{torch_kind}_({source}{gain})"]
    if scale in (1, 2):
        mode_arg = ', mode="fan_out"' if mode == "fan_out" else ""
        nonlinearity = '"relu"' if scale == 2 else '"linear"'
        return [f"nn.init.kaiming_{torch_kind}_({source}{mode_arg}, nonlinearity={nonlinearity})"]
    m = source.rsplit(".", 1)[0]
    fan = facts.torch_fans[mode == "fan_out"].format(m=m)
    if distribution == "uniform":  # uniform(+-b) has variance b^2 / 3 = scale / fan
        return [f"init_range = {_over_root(scale, fan, 3)}", f"nn.init.uniform_({source}, -init_range, init_range)"]
    return [f"nn.init.normal_({source}, 0.0, {_over_root(scale, fan)})"]


def _root(value: float) -> str:
    """sqrt(value) as source: a number where the root is one (`0.5`), else `math.sqrt(value)`."""
    root = math.sqrt(value)
    return _f(root) if root * root == value and len(repr(root)) <= 10 else f"math.sqrt({_f(value)})"


def _over_root(scale: float, fan: str, factor: int = 1) -> str:
    """sqrt(factor * scale / fan) as source: `1.0 / math.sqrt(fan)` where factor * scale is 1,
    `3.0 / ...` where it is 9, else `math.sqrt(3 * 25.0 / 9.0 / fan)`."""
    value = factor * scale
    root = math.sqrt(value)
    if root * root == value and len(repr(root)) <= 10:
        return f"{float(root)!r} / math.sqrt({fan})"
    return f"math.sqrt({f'{factor} * ' if factor != 1 else ''}{_f(scale)} / {_p(fan)})"


def _p(source: str) -> str:
    """A source in parentheses where it is a sum or product (a divisor)."""
    return f"({source})" if any(f" {op} " in source for op in "+-*/") else source


TORCH_HELPER = "variance_scaling_"  # templates/torch/variance_scaling_.py.j2, for Keras' truncated normals


def torch_needs_helper(rule: Rule) -> bool:
    return rule.name == "variance_scaling" and getattr(torch_lines(rule, "weight", "w", kind="conv")[0], "func", "") == TORCH_HELPER


def needs_math(rule: Rule) -> bool:
    """The rule's PyTorch statements call `math` (besides the helper's own)."""
    return rule.name != "torch_default" and any("math." in flat(line) for line in torch_lines(rule, "weight", "m.weight", kind="conv"))


# --- Keras --------------------------------------------------------------------------------------

KERAS_HELPER = "torch_bias_initializer"  # templates/keras/torch_bias_initializer.py.j2


def _config(class_name: str, **config: Any) -> dict[str, Any]:
    return {"class_name": class_name, "config": {k: (v if isinstance(v, str) else float(v)) for k, v in config.items()}}


def config_source(config: dict[str, Any], indent: str, head: str, tail: str = "") -> list[str]:
    """A config dict as ruff formats it: on one line if it fits, else one item per line."""

    def text(value: Any) -> str:
        if isinstance(value, dict):
            return "{" + ", ".join(f"{json.dumps(k)}: {text(v)}" for k, v in value.items()) + "}"
        if isinstance(value, str):
            return json.dumps(value)
        return _f(value)

    one = f"{indent}{head}{text(config)}{tail}"
    if len(one) <= 88:
        return [one]
    lines = [f"{indent}{head}{{"]
    for key, value in config.items():
        if isinstance(value, dict):
            lines += config_source(value, indent + "    ", f"{json.dumps(key)}: ", ",")
        else:
            lines.append(f"{indent}    {json.dumps(key)}: {text(value)},")
    return lines + [f"{indent}}}{tail}"]


def swap_fans(rule: Rule) -> Rule:
    """A weight's rule for a Keras kernel whose fans are PyTorch's swapped (a depthwise kernel:
    Keras' fan_in C*k*k and fan_out k*k are PyTorch's fan_out and fan_in): fan_in and fan_out
    exchanged, so that Keras draws from PyTorch's distribution. PyTorch's default weight is
    variance scaling (1/3, fan_in, uniform); fan_avg and fan-free rules stay as they are."""
    if rule.name == "torch_default":
        rule = Rule("variance_scaling", (("scale", 1 / 3), ("mode", "fan_in"), ("distribution", "uniform")))
    if rule.name not in ("kaiming", "variance_scaling") or rule.arg("mode") not in ("fan_in", "fan_out"):
        return rule
    swapped = "fan_out" if rule.arg("mode") == "fan_in" else "fan_in"
    return Rule(rule.name, tuple((k, swapped if k == "mode" else v) for k, v in rule.args))


def explicit_initializer(rule: Rule, fan_in: str, fan_out: str) -> Call | None:
    """A weight's fan rule with PyTorch's fans written out (sources): for a layer whose Keras
    kernel has other fans than its PyTorch weight (a depthwise kernel (k, k, C, 1) against
    (C, 1, k, k)), so that Keras draws from PyTorch's distribution. None: not a fan rule."""
    a = dict(rule.args)
    fi, fo = (f if f.isdigit() else f"({f})" for f in (fan_in, fan_out))
    if rule.name == "torch_default":
        rule, a = Rule("variance_scaling"), {"scale": 1 / 3, "mode": "fan_in", "distribution": "uniform"}
    if rule.name == "kaiming" and a["mode"] != "group_fan_out":
        scale, fan = gain2(a["nonlinearity"], a["a"]), fi if a["mode"] == "fan_in" else fo
        distribution = "untruncated_normal" if a["distribution"] == "normal" else "uniform"
    elif rule.name == "xavier":
        scale, fan = a["gain"] ** 2, f"({fi} + {fo}) / 2"
        distribution = "untruncated_normal" if a["distribution"] == "normal" else "uniform"
    elif rule.name == "variance_scaling":
        scale, distribution = a["scale"], a["distribution"]
        fan = {"fan_in": fi, "fan_out": fo, "fan_avg": f"({fi} + {fo}) / 2"}[a["mode"]]
    else:
        return None
    std = f"math.sqrt({_f(scale)} / {fan if fan.isdigit() or fan.startswith('(') and fan.endswith(')') else f'({fan})'})"
    if distribution == "uniform":
        return Call("keras.initializers.RandomUniform", (f"-math.sqrt(3) * {std}", f"math.sqrt(3) * {std}"))
    if distribution == "untruncated_normal":
        return Call("keras.initializers.RandomNormal", (f"stddev={std}",))
    return Call("keras.initializers.TruncatedNormal", (f"stddev={std} / {_TRUNC2!r}",))


def keras_initializer(
    rule: Rule, role: str, kind: str, fan_in: str | None, group_fan_out: str | None = None,
) -> str | Call | dict[str, Any] | None:  # fmt: skip
    """The Keras initializer for one tensor: a string name or a call of the helper for
    PyTorch's default bias, as source; or a config dict (a fresh initializer per layer, as
    keras.applications' EfficientNet writes them: one initializer object shared between
    layers would draw the same values for each). None: Keras' own default for that argument
    (left out). `fan_in`: the layer's fan_in as source (PyTorch's default bias needs it)."""
    facts = tensor(kind, role)
    if rule.name == "keras_default":
        return None
    if rule.name == "torch_default":
        if facts.torch_default is not None:
            rule = facts.torch_default
        elif not facts.fans:
            return f"{KERAS_HELPER}({fan_in})"
        else:
            rule = Rule("variance_scaling", (("scale", 1 / 3), ("mode", "fan_in"), ("distribution", "uniform")))
    if rule == facts.keras_default:
        return None
    a = dict(rule.args)
    if rule.name == "constant":
        value = a["value"]
        return '"zeros"' if value == 0 else '"ones"' if value == 1 else _config("Constant", value=value)
    if rule.name == "normal":
        return _config("RandomNormal", mean=a["mean"], stddev=a["std"])
    if rule.name == "uniform":
        return _config("RandomUniform", minval=a["a"], maxval=a["b"])
    if rule.name == "trunc_normal":
        # Keras' TruncatedNormal cuts at 2 standard deviations; PyTorch's bounds are absolute.
        if (a["a"] - a["mean"], a["b"] - a["mean"]) == (-2 * a["std"], 2 * a["std"]):
            return _config("TruncatedNormal", mean=a["mean"], stddev=a["std"])
        return _config("RandomNormal", mean=a["mean"], stddev=a["std"])  # only where the cut is far: see keras_problem
    if rule.name == "kaiming" and a["mode"] == "group_fan_out":  # no Keras fan divides by the groups
        scale = _f(gain2(a["nonlinearity"], a["a"]))
        fan = group_fan_out if str(group_fan_out).isdigit() else f"({group_fan_out})"
        if a["distribution"] == "normal":
            return Call("keras.initializers.RandomNormal", (f"stddev=math.sqrt({scale} / {fan})",))
        bound = f"math.sqrt(3 * {scale} / {fan})"
        return Call("keras.initializers.RandomUniform", (f"-{bound}", bound))
    if rule.name == "kaiming":
        distribution = "untruncated_normal" if a["distribution"] == "normal" else "uniform"
        return _config("VarianceScaling", scale=gain2(a["nonlinearity"], a["a"]), mode=a["mode"], distribution=distribution)
    if rule.name == "xavier":
        distribution = "untruncated_normal" if a["distribution"] == "normal" else "uniform"
        if a["gain"] == 1 and distribution == "uniform":
            return '"glorot_uniform"'
        return _config("VarianceScaling", scale=a["gain"] ** 2, mode="fan_avg", distribution=distribution)
    names = {v: k for k, v in _PRESETS.items()}
    name = names.get((a["scale"], a["mode"], a["distribution"]))
    if name:
        return json.dumps(name)
    return _config("VarianceScaling", scale=a["scale"], mode=a["mode"], distribution=a["distribution"])


def keras_problem(rule: Rule) -> str | None:
    """A rule Keras cannot draw from the same distribution."""
    if rule.name == "trunc_normal":
        a = dict(rule.args)
        lo, hi = a["a"] - a["mean"], a["b"] - a["mean"]
        if (lo, hi) != (-2 * a["std"], 2 * a["std"]) and min(-lo, hi) < 6 * a["std"]:
            return (
                "Keras' TruncatedNormal cuts at 2 standard deviations: trunc_normal needs a, b = mean -+ 2 std "
                f"(or cut-offs at least 6 std away, where it is the normal), got a={a['a']}, b={a['b']}, std={a['std']}"
            )
    return None



def section(kind: str) -> str:
    """The `defaults:` section (and init-loop branch) holding `kind`'s rules, as its `init`
    argument's default says: a depthwise conv's are the convs' (`defaults.conv.init`), since it
    is PyTorch's nn.Conv2d (groups = channels), one branch of the init loop, as in torchvision."""
    from archc.ops import KINDS as OPS  # at call time: the op modules import this one

    return next(a.default for a in OPS[kind].ATTRS if a.type == "init").split(".")[1]
