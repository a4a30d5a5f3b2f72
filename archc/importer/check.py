"""The import's proof: the spec, built by archc, loads the original's state_dict strictly
and gives its outputs (eval mode, batch-norm statistics and affine parameters randomised so
that no layer is the identity, and every parameter whose elements all start equal made
random: a zero-initialised last conv, as timm's GlobalContext MLP, a gain of 0, norm scales
of 1, which would hide the wiring they multiply) on a random input. float32: the same operations in the same
order give the same numbers, and PyTorch's float64 depthwise convs take seconds a pass."""

from __future__ import annotations

from typing import Any

from archc.errors import SpecError

TOLERANCE = 1e-5


def check(model: Any, text: str, input_shape: tuple[int, ...], file: str) -> float:
    """The relative difference of the outputs; SpecError when the spec does not rebuild `model`."""
    import torch

    from archc.api import build
    from archc.spec.loader import load_spec_text

    try:
        built = build(load_spec_text(text, file), "torch")
    except SpecError as e:
        raise SpecError(f"the imported spec does not build: {e}") from None
    _randomise(model)
    try:
        built.load_state_dict(model.state_dict(), strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise SpecError(f"the imported spec's state_dict is not the original's: {first}") from None
    model, built = model.eval(), built.eval()
    torch.manual_seed(0)
    x = torch.randn(2, *input_shape)
    with torch.no_grad():
        want, got = model(x), built(x)
    if isinstance(want, dict) and isinstance(got, dict):  # {"out": ...}: each output by its name
        if list(want) != list(got):
            raise SpecError(f"the imported spec returns the outputs {list(got)}, the original {list(want)}")
        return max(_compare(want[k], got[k], f" {k!r}") for k in want)
    return _compare(want, got, "")


def _compare(want: Any, got: Any, which: str) -> float:
    import torch

    if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor):
        raise SpecError(f"the original returns a {type(want).__name__}; archc import compares tensors or dicts of them")
    if want.shape != got.shape:
        raise SpecError(f"the imported spec gives{which} outputs of shape {tuple(got.shape)}, the original {tuple(want.shape)}")
    diff = float((want - got).abs().max() / want.abs().max().clamp_min(1e-12))
    if not diff <= TOLERANCE:
        raise SpecError(f"the imported spec's{which} outputs differ from the original's (relative difference {diff:.3g})")
    return diff


def _randomise(model: Any) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)
        for p in model.parameters():  # constants at initialisation (zeros, ones, a scalar gain)
            if p.numel() and bool((p == p.reshape(-1)[0]).all()):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
