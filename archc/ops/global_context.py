"""Global context attention (GCNet, Cao et al. 2019): `global_context: {rd_channels, eps,
fuse_add, fuse_scale}`, as timm's GlobalContext (gcresnet33ts, gcresnet50t).

The map is pooled to one context vector by attention over its positions, a 1x1 conv to one
logit per position (`conv_attn`, with bias) and a softmax over the H*W positions; an MLP of
1x1 convs through `rd_channels` (fc1, a layer norm over its channels with `eps`, ReLU, fc2)
then either adds the context to every position (`fuse_add`) or gates each channel by its
sigmoid (`fuse_scale`), or both (scale, then add), each with an MLP of its own:

    attn = softmax(conv_attn(x).reshape(N, 1, H * W), dim=-1)       # (N, 1, HW)
    context = (x.reshape(N, C, H * W) @ attn.transpose(1, 2))         # (N, C, 1)
    x = x * sigmoid(mlp_scale(context))  # fuse_scale
    x = x + mlp_add(context)             # fuse_add

Neither framework has the layer, so the generated modules define `GlobalContext`
(templates/<backend>/GlobalContext.py.j2). PyTorch's holds timm's children, so its keys are
timm's (`attn.conv_attn.weight` (1, C, 1, 1), `attn.mlp_add.fc1.weight` (rd, C, 1, 1),
`attn.mlp_add.norm.weight` (rd,), ...); Keras' holds the same tensors as weights of the layer
itself, the convs' kernels as matrices ((C, 1), (C, rd), (rd, C)), in the same order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field, StrictBool

from archc.code import Call, call
from archc.ops.base import Attr, KerasCtx, Op, Shape, ShapeError, need_rank
from archc.spec.types import Arguments, IntExpr, NumExpr


class GlobalContextArgs(Arguments):
    rd_channels: IntExpr = Field(description="Width of the MLP's hidden layer (timm: channels / 8).")
    eps: NumExpr = Field(description="The MLP's layer norm eps (timm's LayerNorm2d: 1e-6).")
    fuse_add: StrictBool = Field(False, description="Add the context's MLP output to every position (gcresnet's). A literal.")
    fuse_scale: StrictBool = Field(True, description="Gate each channel by the sigmoid of the context's MLP output. A literal.")


MLP = ("fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "fc2.weight", "fc2.bias")


@dataclass(frozen=True)
class GlobalContext(Op):
    """A `global_context` layer with its arguments resolved (what it is: the module docstring)."""

    kind: ClassVar[str] = "global_context"
    Args: ClassVar[Any] = GlobalContextArgs
    ATTRS: ClassVar[tuple[Attr, ...]] = (
        Attr("rd_channels", "int"), Attr("eps", "num"), Attr("fuse_add", "const", False), Attr("fuse_scale", "const", True),
    )  # fmt: skip
    CHANNEL_FREE: ClassVar[bool] = False
    HELPERS: ClassVar[dict[str, str]] = {"torch": "GlobalContext", "keras": "GlobalContext"}
    rd_channels: int
    eps: float
    fuse_add: bool = False
    fuse_scale: bool = True

    def infer(self, s: Shape) -> Shape:
        if not s.spatial or s.last:
            raise ShapeError(f"global_context needs a channels-first feature map (C, H, W), got {s}")
        need_rank("global_context", s)
        if self.rd_channels < 1 or not self.eps > 0:
            raise ShapeError(f"global_context needs rd_channels >= 1 and eps > 0, got {self.rd_channels} and {self.eps}")
        if not (self.fuse_add or self.fuse_scale):
            raise ShapeError("global_context needs fuse_add or fuse_scale (or both): how the context reaches the map")
        return s

    def _mlps(self) -> tuple[str, ...]:
        return ("mlp_add",) * self.fuse_add + ("mlp_scale",) * self.fuse_scale

    def params(self, s: Shape) -> tuple[int, int]:
        c, rd = s.c, self.rd_channels
        return (c + 1 + len(self._mlps()) * (c * rd + rd + 2 * rd + rd * c + c), 0)

    def macs(self, s: Shape) -> int:
        hw = s.numel() // s.c
        return 2 * s.c * hw + len(self._mlps()) * 2 * s.c * self.rd_channels  # the logits, the pooling; the MLPs

    def weight_names(self) -> tuple[str, ...]:
        return ("conv_attn.weight", "conv_attn.bias", *(f"{m}.{t}" for m in self._mlps() for t in MLP))

    @classmethod
    def torch_module(cls, a: dict[str, str], in_ch: str, flat: bool, inplace: bool) -> Call:
        return call("GlobalContext", in_ch, a["rd_channels"], eps=a["eps"], fuse_add=a["fuse_add"], fuse_scale=a["fuse_scale"])

    @classmethod
    def keras_layers(cls, a: dict[str, str], ctx: KerasCtx) -> list[Call]:
        return [call("GlobalContext", a["rd_channels"], eps=a["eps"], fuse_add=a["fuse_add"], fuse_scale=a["fuse_scale"], name=ctx.name)]

    def to_keras(self, name: str, w: Any) -> Any:
        if name.endswith("weight") and w.ndim == 4:  # a 1x1 conv (out, in, 1, 1) -> a matrix (in, out)
            return w[:, :, 0, 0].T
        return w

    def to_torch(self, name: str, k: Any) -> Any:
        if name.endswith("weight") and k.ndim == 2:
            return k.T[:, :, None, None]
        return k

    def randomize(self, module: Any, gen: Any) -> None:
        for name, tensor in module.named_parameters():
            if name.endswith("norm.weight"):
                tensor.uniform_(0.5, 1.5, generator=gen)
            else:
                bound = (3 / tensor[0].numel()) ** 0.5 if tensor.ndim > 1 else 0.5
                tensor.uniform_(-bound, bound, generator=gen)

    def label(self) -> str:
        return f"global context, {self.rd_channels}"
