"""A weighted sum of tensors of one shape, one learned scalar weight per input:
`fuse: {weighted_sum: [a, b]}`, with `normalize: false` or `eps: E` beside the list.

With `normalize: true` (the default) it is EfficientDet's "fast normalized fusion" (Tan et
al. 2020, BiFPN), as its PyTorch ports write it (`p6_w1 = relu(self.p6_w1); weight = p6_w1 /
(torch.sum(p6_w1, dim=0) + self.epsilon); weight[0] * p6_in + weight[1] * p7_up`):

    w = relu(weight);  out = sum_i w_i * x_i / (sum_j w_j + eps)

`eps` (default 1e-4, EfficientDet's `epsilon`) keeps the division finite when every weight
is <= 0 (the output is then 0). With `normalize: false` it is the plain sum_i weight_i * x_i.
The weights start at 1 (BiFPN's `nn.Parameter(torch.ones(n))`): at start the normalized sum
is the mean, up to eps, and the plain one the sum.

A merge with weights has a module of its own, so it needs a name (its state_dict key is
`NAME.weight`, shape (n,)). PyTorch: the helper class `WeightedSum(n, normalize, eps)`
(templates/torch/WeightedSum.py.j2) called on the tensors, `self.fuse(a, b)`; Keras: the
helper layer `WeightedSum(normalize, eps)` (templates/keras/WeightedSum.py.j2, one weight
`weight` of shape (n,), initializer "ones") called on their list. It is not a `merge:` of
`branches` or `parallel` lists: those merges have no module name of their own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, Field, StrictBool, StrictInt

from archc.code import Call
from archc.ops.base import Defaults, KerasCtx, Op, Shape, ShapeError
from archc.spec.types import Arguments, FiniteFloat, TensorName


def _not_negative(value: float) -> float:
    if value < 0:
        raise ValueError(f"eps must be >= 0, got {value}")
    return value


class WeightedSumOptions(Arguments):
    """How a weighted sum is computed: written beside its list of inputs."""

    normalize: StrictBool = Field(
        True,
        description="true: EfficientDet's fast normalized fusion, sum_i relu(w_i) x_i / (sum_j relu(w_j) + eps); "
        "false: the plain weighted sum, sum_i w_i x_i.",
    )
    eps: Annotated[StrictInt | FiniteFloat, Field(union_mode="left_to_right"), AfterValidator(_not_negative)] = Field(
        1e-4, description="With normalize: added to the sum of the weights (EfficientDet's epsilon, 1e-4); >= 0."
    )


@dataclass(frozen=True)
class WeightedSum(Op):
    """A `weighted_sum` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "weighted_sum"
    Args: ClassVar[Any] = list[TensorName]
    OPTIONS: ClassVar[Any] = WeightedSumOptions
    MERGE: ClassVar[bool] = True
    WEIGHTS: ClassVar[tuple[str, ...]] = ("weight",)
    HELPERS: ClassVar[dict[str, str]] = {"torch": "WeightedSum", "keras": "WeightedSum"}
    TORCH_DEFAULTS: ClassVar[Defaults] = {"WeightedSum": {"normalize": True, "eps": 1e-4}}  # the helper's own
    KERAS_DEFAULTS: ClassVar[Defaults] = {"WeightedSum": {"normalize": True, "eps": 1e-4}}
    n: int = 2  # the number of tensors it sums: its weights
    normalize: bool = True
    eps: float = 1e-4

    @classmethod
    def merging(cls, n: int, item: Any) -> WeightedSum:
        return cls(n, item.normalize, float(item.eps))

    def infer_many(self, shapes: list[Shape]) -> Shape:
        if any(s != shapes[0] for s in shapes):
            raise ShapeError(f"a weighted sum needs tensors of one shape, got {' and '.join(map(str, shapes))}")
        return shapes[0]

    def params(self, s: Shape) -> tuple[int, int]:
        return (self.n, 0)

    def nonneg_after(self, nonneg_in: bool) -> bool:
        return nonneg_in and self.normalize  # relu'd weights: a sum of non-negative terms

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return cls.torch_call("WeightedSum", a["n"], normalize=a["normalize"], eps=a["eps"])

    @classmethod
    def keras_merge(cls, ctx: KerasCtx, srcs: list[str], flats: list[bool], a: dict[str, str]) -> tuple[Call, str]:
        layer = cls.keras_call("WeightedSum", normalize=a["normalize"], eps=a["eps"], name=ctx.name)
        return layer, f"[{', '.join(srcs)}]"

    def randomize(self, module: Any, gen: Any) -> None:
        module.weight.uniform_(-0.25, 1.5, generator=gen)  # some below 0, where normalize's relu matters

    def label(self) -> str:
        return "Σw·x/Σw" if self.normalize else "Σw·x"
