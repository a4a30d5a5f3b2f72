"""Activations: `act: {fn, negative_slope, alpha}`, or a shorthand (`relu`, `act: relu6`).
A softmax is an op of its own (archc.ops.softmax): it reads every channel, not one element."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from archc.code import Call, call
from archc.ops.base import Attr, Defaults, KerasCtx, Op
from archc.spec.types import Arguments, NumExpr

# name -> (PyTorch module, takes inplace=, Keras layer or Activation name, output >= 0)
FUNCTIONS: dict[str, tuple[str, bool, str, bool]] = {
    "relu": ("nn.ReLU", True, '"relu"', True),
    "relu6": ("nn.ReLU6", True, '"relu6"', True),
    "leaky_relu": ("nn.LeakyReLU", True, "layers.LeakyReLU", False),
    "elu": ("nn.ELU", True, "layers.ELU", False),
    "gelu": ("nn.GELU", False, '"gelu"', False),
    "silu": ("nn.SiLU", True, '"silu"', False),
    "sigmoid": ("nn.Sigmoid", False, '"sigmoid"', True),
    "tanh": ("nn.Tanh", False, '"tanh"', False),
    "hardswish": ("nn.Hardswish", True, '"hard_swish"', False),
    "hardsigmoid": ("nn.Hardsigmoid", True, '"hard_sigmoid"', True),
}
ACTIVATIONS = tuple(FUNCTIONS)
# Those whose PyTorch backward reads their output, as archc builds them (in place where it may):
# overwriting it (`out += x`) makes backward fail. relu6, silu, hardswish, hardsigmoid and gelu
# read their input, in place or not (tests/test_inplace_add.py measures this table).
KEEPS_OUTPUT = frozenset({"relu", "leaky_relu", "elu", "sigmoid", "tanh"})
# The argument an activation takes, with its default.
EXTRA = {"leaky_relu": ("negative_slope", 0.01), "elu": ("alpha", 1.0)}


class ActArgs(Arguments):
    fn: Literal[ACTIVATIONS] | None = Field(None, description="Activation; unset means defaults.activation.")  # type: ignore[valid-type]
    negative_slope: NumExpr | None = Field(None, description="leaky_relu only (default 0.01).")
    alpha: NumExpr | None = Field(None, description="elu only (default 1.0).")

    @model_validator(mode="before")
    @classmethod
    def _short(cls, data: Any) -> Any:
        # `act: relu` is short for `act: {fn: relu}`
        data = {"fn": data} if isinstance(data, str) else data
        if isinstance(data, dict) and data.get("fn") == "softmax":
            raise ValueError("softmax reads every channel, so it is a layer kind of its own: write `softmax`, not `act: softmax`")
        return data


@dataclass(frozen=True)
class Act(Op):
    """A `act` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "act"
    CHANNELS_LAST: ClassVar[bool] = True  # elementwise: any layout
    KEEPS_FEATURE_ORDER: ClassVar[bool] = True
    Args: ClassVar[Any] = ActArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("fn", "str", "defaults.activation"), Attr("negative_slope", "num", None), Attr("alpha", "num", None),
    )  # fmt: skip
    SHORTHANDS: ClassVar[dict[str, dict[str, Any]]] = {"act": {"act": {}}, **{fn: {"act": {"fn": fn}} for fn in FUNCTIONS}}
    TORCH_DEFAULTS: ClassVar[Defaults] = {
        **{module: {"inplace": False} for module, can_inplace, _, _ in FUNCTIONS.values() if can_inplace},
        "nn.LeakyReLU": {"negative_slope": 0.01, "inplace": False},
        "nn.ELU": {"alpha": 1.0, "inplace": False},
        "nn.GELU": {"approximate": "none"},
    }
    KERAS_DEFAULTS: ClassVar[Defaults] = {"layers.LeakyReLU": {"negative_slope": 0.3}, "layers.ELU": {"alpha": 1.0}}
    fn: str
    negative_slope: float | None = None  # leaky_relu
    alpha: float | None = None  # elu

    def nonneg_after(self, nonneg_in: bool) -> bool:
        return FUNCTIONS[self.fn][3]

    @classmethod
    def keeps_output(cls, args: dict[str, ast.expr]) -> bool:
        fn = args.get("fn")
        return not isinstance(fn, ast.Constant) or fn.value in KEEPS_OUTPUT

    @classmethod
    def sym_nonneg(cls, args: dict[str, ast.expr], nonneg_in: bool) -> bool:
        return FUNCTIONS[args["fn"].value][3]  # type: ignore[attr-defined]

    @classmethod
    def check_args(cls, values: dict[str, Any]) -> str | None:
        """Fill in the argument `fn` takes; complain about one it does not."""
        extra = EXTRA.get(values["fn"])
        for key in ("negative_slope", "alpha"):
            if values.get(key) is not None and (extra is None or extra[0] != key):
                return f"{key} does not apply to {values['fn']}"
        if extra and values.get(extra[0]) is None:
            values[extra[0]] = extra[1]
        return None

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        module, can_inplace, _, _ = FUNCTIONS[a["fn"]]
        kwargs = {k: a[k] for k in ("negative_slope", "alpha") if k in a}
        if can_inplace:
            kwargs["inplace"] = str(inplace)
        return cls.torch_call(module, **kwargs)

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        keras = FUNCTIONS[a["fn"]][2]
        if keras.startswith("layers."):
            key = EXTRA[a["fn"]][0]
            return [cls.keras_call(keras, **{key: a[key]}, name=ctx.name)]
        return [call("layers.Activation", keras, name=ctx.name)]

    @classmethod
    def out_channels(cls, args: dict[str, ast.expr], in_channels: ast.expr) -> ast.expr:
        return in_channels

    def label(self) -> str:
        return self.fn
