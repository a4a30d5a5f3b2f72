"""The `init` argument's vocabulary: the models that validate what a spec writes for a
layer's initialisation (`{weight: RULE, bias: RULE}`, or torch_default / keras_default for
both) and for each rule's arguments. What the rules mean, and what each becomes in PyTorch
and in Keras, is archc.ops.init (its `resolve` turns a validated rule into a `Rule`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    model_validator,
)

from archc.spec.types import FiniteFloat, Strict


def _positive(value: float) -> float:
    if not value > 0:
        raise ValueError(f"must be > 0, got {value}")
    return value


def _nonnegative(value: float) -> float:
    if not value >= 0:
        raise ValueError(f"must be >= 0, got {value}")
    return value


Num = Annotated[Union[StrictInt, FiniteFloat], Field(union_mode="left_to_right")]
Positive = Annotated[Num, AfterValidator(_positive)]
NonNegative = Annotated[Num, AfterValidator(_nonnegative)]

NAMES = (
    "zeros", "ones", "torch_default", "keras_default", "kaiming_normal", "kaiming_uniform", "xavier_normal",
    "xavier_uniform", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "lecun_normal", "lecun_uniform",
)  # fmt: skip
Named = Literal[NAMES]  # type: ignore[valid-type]
Nonlinearity = Literal["linear", "conv2d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]


class NormalArgs(Strict):
    mean: Num = Field(0.0, description="Mean.")
    std: Positive = Field(description="Standard deviation.")


class UniformArgs(Strict):
    a: Num = Field(description="Lower bound.")
    b: Num = Field(description="Upper bound (> a).")

    @model_validator(mode="after")
    def _order(self) -> UniformArgs:
        if not self.a < self.b:
            raise ValueError(f"uniform needs a < b, got a={self.a}, b={self.b}")
        return self


class TruncNormalArgs(Strict):
    mean: Num = Field(0.0, description="Mean of the normal before truncation.")
    std: Positive = Field(description="Standard deviation of the normal before truncation.")
    a: Num = Field(-2.0, description="Lower cut-off, an absolute value (PyTorch's trunc_normal_).")
    b: Num = Field(2.0, description="Upper cut-off, an absolute value.")

    @model_validator(mode="after")
    def _order(self) -> TruncNormalArgs:
        if not self.a < self.mean < self.b:
            raise ValueError(f"trunc_normal needs a < mean < b, got a={self.a}, mean={self.mean}, b={self.b}")
        return self


class KaimingArgs(Strict):
    a: NonNegative = Field(
        0.0, description="Negative slope of leaky_relu (its gain sqrt(2 / (1 + a^2))); only with leaky_relu."
    )
    mode: Literal["fan_in", "fan_out", "group_fan_out"] = Field(
        "fan_in",
        description="Which fan scales the variance; group_fan_out (convs): fan_out / groups, timm's _init_weight_goog.",
    )
    nonlinearity: Nonlinearity = Field("leaky_relu", description="The gain's nonlinearity (torch.nn.init.calculate_gain).")


class XavierArgs(Strict):
    gain: Positive = Field(1.0, description="Scaling factor.")


class VarianceScalingArgs(Strict):
    scale: Positive = Field(1.0, description="Variance scale: the variance is scale / fan.")
    mode: Literal["fan_in", "fan_out", "fan_avg"] = Field("fan_in", description="Which fan (fan_avg: their mean).")
    distribution: Literal["truncated_normal", "untruncated_normal", "uniform"] = Field(
        "truncated_normal", description="Keras' distributions; truncated_normal cuts at 2 standard deviations."
    )


class ConstantRule(Strict):
    constant: Num = Field(description="Every element this value.")


class NormalRule(Strict):
    normal: NormalArgs


class UniformRule(Strict):
    uniform: UniformArgs


class TruncNormalRule(Strict):
    trunc_normal: TruncNormalArgs


class KaimingNormalRule(Strict):
    kaiming_normal: KaimingArgs


class KaimingUniformRule(Strict):
    kaiming_uniform: KaimingArgs


class XavierNormalRule(Strict):
    xavier_normal: XavierArgs


class XavierUniformRule(Strict):
    xavier_uniform: XavierArgs


class VarianceScalingRule(Strict):
    variance_scaling: VarianceScalingArgs


RULES: dict[str, type[Strict]] = {
    "constant": ConstantRule, "normal": NormalRule, "uniform": UniformRule, "trunc_normal": TruncNormalRule,
    "kaiming_normal": KaimingNormalRule, "kaiming_uniform": KaimingUniformRule, "xavier_normal": XavierNormalRule,
    "xavier_uniform": XavierUniformRule, "variance_scaling": VarianceScalingRule,
}  # fmt: skip


def _rule_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "name"
    if isinstance(value, dict) and len(value) == 1:
        return next(iter(value)) if next(iter(value)) in RULES else None
    if isinstance(value, Strict):
        return next(iter(type(value).model_fields))
    return None


_RULE_TYPES = (Annotated[Named, Tag("name")], *(Annotated[model, Tag(key)] for key, model in RULES.items()))
RuleSpec = Annotated[
    Union[_RULE_TYPES],  # type: ignore[valid-type]
    Discriminator(
        _rule_tag,
        custom_error_type="init_rule",
        custom_error_message=f"an init rule is one of {', '.join(NAMES)}, or a one-key mapping: "
        + ", ".join(f"{{{k}: ...}}" for k in RULES),
    ),
    Field(description="An initialisation rule (see 'Initialisation' in docs/spec.md)."),
]


class InitPair(Strict):
    weight: RuleSpec | None = Field(None, description="The weight (a conv's kernel; batch norm's scale, gamma).")
    bias: RuleSpec | None = Field(None, description="The bias (batch norm's shift, beta).")


BOTH = Literal["torch_default", "keras_default"]
InitSpec = Annotated[
    Union[Annotated[BOTH, Tag("both")], Annotated[InitPair, Tag("pair")]],
    Discriminator(
        lambda v: "both" if isinstance(v, str) else "pair",
        custom_error_type="init",
        custom_error_message="init is {weight: RULE, bias: RULE}, or torch_default or keras_default for both",
    ),
    Field(description="Initialisation: {weight: RULE, bias: RULE}, or torch_default / keras_default for both."),
]
