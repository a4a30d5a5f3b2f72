"""torch.nn leaf modules and traced functions -> archc layers: `(kind, arguments)`.

Arguments equal to the spec's `defaults:` (conv bias false, dense bias true, batch norm eps
1e-5 and momentum 0.1, see DEFAULTS) are left out. A module archc cannot rebuild exactly is
an `Unsupported` naming what it is.
"""

from __future__ import annotations

import operator
from typing import Any

DEFAULTS: dict[str, Any] = {
    "conv": {"bias": False},
    "batchnorm": {"eps": 1.0e-5, "momentum": 0.1},
}

# nn activation class name -> archc layer kind (the shorthand, no arguments)
ACTIVATIONS = {
    "ReLU": "relu", "ReLU6": "relu6", "SiLU": "silu", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "Hardswish": "hardswish", "Hardsigmoid": "hardsigmoid",
}  # fmt: skip
# the activation layers that take no arguments, as archc writes them (`relu`, `gelu`)
ACTIVATION_LAYERS = frozenset({*ACTIVATIONS.values(), "gelu"})


class Unsupported(Exception):
    """A construct archc cannot express; the message says what it is."""


def _single(value: Any, what: str) -> Any:
    """A symmetric tuple (3, 3) as 3; an asymmetric one as a list."""
    if isinstance(value, (tuple, list)):
        values = list(value)
        if len(set(values)) == 1:
            return values[0]
        return values
    if isinstance(value, str):
        raise Unsupported(f"{what} {value!r}")
    return value


def leaf(module: Any) -> tuple[str, dict[str, Any]] | None:
    """The layer for a torch.nn module archc has, or None when the module is not a leaf op."""
    import torch.nn as nn

    name = type(module).__name__
    standardized = _standardized(module)
    if _plain(module, nn.Conv1d, nn.Conv2d, nn.Conv3d) or standardized:
        if module.padding_mode != "zeros":
            raise Unsupported(f"{name} with padding_mode={module.padding_mode!r}")
        args = {
            "filters": module.out_channels,
            "kernel": _single(module.kernel_size, "kernel"),
            "stride": _single(module.stride, "stride"),
            "padding": _single(module.padding, f"{name} padding"),
            "groups": module.groups,
            "dilation": _single(module.dilation, "dilation"),
            "bias": module.bias is not None,
            **(standardized or {}),
        }
        return "conv", args
    if _plain(module, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
        return _batchnorm(module)
    if type(module) is nn.GroupNorm or (isinstance(module, nn.GroupNorm) and type(module).__module__ == "timm.layers.norm"):
        # timm.layers.GroupNorm, GroupNorm1: nn.GroupNorm with a forward that calls F.group_norm
        return _groupnorm(module)
    if name in ACTIVATIONS and type(module).__module__.startswith("torch.nn"):
        return ACTIVATIONS[name], {}
    if type(module) is nn.LeakyReLU:
        return "act", {"fn": "leaky_relu", "negative_slope": module.negative_slope}
    if type(module) is nn.GELU:
        if module.approximate != "none":
            raise Unsupported(f"GELU(approximate={module.approximate!r})")
        return "gelu", {}
    if _plain(module, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d):
        if _single(module.dilation, "dilation") != 1 or module.return_indices:
            raise Unsupported(f"{name} with dilation or return_indices")
        kernel = _single(module.kernel_size, "kernel")
        args = {"kernel": kernel, "stride": _single(module.stride, "stride"), "padding": _single(module.padding, "padding"),
                "ceil_mode": module.ceil_mode}  # fmt: skip
        return "maxpool", args
    if _plain(module, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d):
        if getattr(module, "divisor_override", None) is not None:
            raise Unsupported(f"{name} with divisor_override")
        kernel = _single(module.kernel_size, "kernel")
        args = {"kernel": kernel, "stride": _single(module.stride, "stride"), "padding": _single(module.padding, "padding"),
                "ceil_mode": module.ceil_mode, "count_include_pad": module.count_include_pad}  # fmt: skip
        return "avgpool", args
    if _plain(module, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d):
        size = _single(module.output_size, "output_size")
        if not isinstance(size, int):
            raise Unsupported(f"{name}({module.output_size})")
        return "adaptive_avgpool", {"size": size}
    if type(module) is nn.Linear or (isinstance(module, nn.Linear) and type(module).__module__ == "timm.layers.linear"):
        # timm.layers.Linear: nn.Linear with a forward that casts for TorchScript, F.linear otherwise
        return "dense", {"units": module.out_features, "bias": module.bias is not None}
    if type(module) in (nn.Dropout, nn.Dropout1d, nn.Dropout2d):
        if type(module) is not nn.Dropout:
            raise Unsupported(f"{name} (channel dropout)")
        return "dropout", {"rate": module.p}
    if name == "StochasticDepth" and hasattr(module, "p") and hasattr(module, "mode"):  # torchvision.ops
        if module.mode != "row":
            raise Unsupported(f"StochasticDepth(mode={module.mode!r}) (archc's drops rows)")
        return "stochastic_depth", {"rate": module.p}
    timm_norm = type(module).__module__.startswith("timm.layers") and not getattr(module, "_fast_norm", False)
    if isinstance(module, nn.LayerNorm) and (type(module) is nn.LayerNorm or name == "LayerNorm2d" or timm_norm and name == "LayerNorm"):
        if len(module.normalized_shape) != 1 or not module.elementwise_affine or module.bias is None:
            raise Unsupported(f"{name}({tuple(module.normalized_shape)}) over more than the channels, or without weights")
        return "layernorm", {"eps": module.eps}
    if type(module) is getattr(nn, "RMSNorm", None) or timm_norm and name in ("RmsNorm", "RmsNorm2d"):
        return _rmsnorm(module)
    if name == "Permute" and hasattr(module, "dims"):  # torchvision.ops.misc.Permute
        to = {(0, 2, 3, 1): "channels_last", (0, 3, 1, 2): "channels_first"}.get(tuple(module.dims))
        if to is None:
            raise Unsupported(f"Permute({list(module.dims)})")
        return "permute", {"to": to}
    if type(module) is nn.Identity:
        return "identity", {}
    if type(module) in (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d):
        return _zeropad(module)
    if name == "RadixSoftmax" and type(module).__module__.startswith("timm.layers"):  # ResNeSt's split attention
        return "softmax", {"radix": module.radix, "cardinality": module.cardinality}
    if name == "SelectAdaptivePool2d" and type(module).__module__.startswith("timm.layers"):
        return _timm_pool(module)
    if name == "EcaModule" and type(module).__module__.startswith("timm.layers"):
        return _timm_eca(module)
    if name == "SpaceToDepth" and type(module).__module__.startswith("timm.layers"):  # TResNet's stem
        return "space_to_depth", {"block": module.bs}
    if name == "BlurPool2d" and type(module).__module__.startswith("timm.layers"):
        modes = {"reflect": {}, "constant": {"pad_mode": "zeros"}}  # F.pad's modes archc's blurpool has
        if module.pad_mode not in modes:
            raise Unsupported(f"BlurPool2d(pad_mode={module.pad_mode!r}), where archc's blurpool pads by reflection or with zeros")
        return "blurpool", {"kernel": module.filt_size, "stride": module.stride, **modes[module.pad_mode]}
    if name == "GlobalContext" and type(module).__module__.startswith("timm.layers"):
        return _timm_global_context(module)
    if type(module) is nn.Flatten:
        if module.start_dim != 1 or module.end_dim != -1:
            raise Unsupported(f"Flatten(start_dim={module.start_dim}, end_dim={module.end_dim})")
        return "flatten", {}
    return None


def _standardized(module: Any) -> dict[str, Any] | None:
    """timm's weight-standardized convs (timm.layers.std_conv): StdConv2d (BiT) as `standardize:
    true, eps`, ScaledStdConv2d (NFNet) with `gain: true` and its gamma (timm keeps only
    scale = gamma / sqrt(fan_in), so gamma is read back from it); None for any other module.
    Their `...Same` forms (TensorFlow's "SAME") too where that padding is static (a stride-1
    conv: `same_pad` false, its padding the conv's); where it depends on the input's size
    (`same_pad`: pad_same in forward) they are None, traced as other modules are."""
    import torch.nn as nn

    name = type(module).__name__
    if name not in ("StdConv2d", "ScaledStdConv2d", "StdConv2dSame", "ScaledStdConv2dSame") or not type(module).__module__.startswith("timm.layers"):
        return None
    if getattr(module, "same_pad", False):
        return None
    name = name.removesuffix("Same")
    if type(module).__bases__ != (nn.Conv2d,) or any(True for _ in module.children()):
        raise Unsupported(f"{name} that is not timm's nn.Conv2d with a standardized weight")
    out: dict[str, Any] = {"standardize": True, "eps": float(module.eps)}
    if name == "ScaledStdConv2d":
        gamma = float(module.scale) * module.weight[0].numel() ** 0.5
        out |= {"gain": True, **({"gamma": float(f"{gamma:.7g}")} if f"{gamma:.7g}" != "1" else {})}
    return out


def _plain(module: Any, *classes: type) -> bool:
    """An instance of one of `classes` or of a subclass that computes as it does: the same
    `forward` (and a conv's `_conv_forward`), as torchvision's Conv3DSimple (an nn.Conv3d
    that only adds a staticmethod); its weights are the base class's, by the same names."""
    cls = type(module)
    for base in classes:
        if cls is base:
            return True
        if isinstance(module, base) and all(
            getattr(cls, m, None) is getattr(base, m, None) for m in ("forward", "_conv_forward", "_check_input_dim")
        ):
            return not any(True for _ in module.children())
    return False


def _zeropad(module: Any) -> tuple[str, dict[str, Any]]:
    """nn.ZeroPad2d, and nn.ConstantPad2d of zeros (BiT's stem, before its max pool): `zeropad`,
    one value where every side has it, else [before, after] per dimension (PyTorch lists the
    last dimension first: (left, right, top, bottom))."""
    name = type(module).__name__
    if float(getattr(module, "value", 0.0)) != 0.0:
        raise Unsupported(f"{name}(value={module.value}) (archc's zeropad pads with zeros)")
    pads = tuple(module.padding)
    if min(pads) < 0:
        raise Unsupported(f"{name}({pads}) (a negative padding crops)")
    if len(set(pads)) == 1:
        return "zeropad", {"padding": pads[0]}
    return "zeropad", {"padding": [list(pads[i : i + 2]) for i in reversed(range(0, len(pads), 2))]}


def _rmsnorm(module: Any) -> tuple[str, dict[str, Any]]:
    """nn.RMSNorm and timm's RmsNorm (the last axis) and RmsNorm2d (a map's channels): `rmsnorm`
    over the channels, with a learned weight; other shapes, no weight or the dtype's eps refused."""
    name = type(module).__name__
    if len(module.normalized_shape) != 1 or getattr(module, "weight", None) is None:
        raise Unsupported(f"{name}({tuple(module.normalized_shape)}) over more than the channels, or without a weight")
    if module.eps is None:
        raise Unsupported(f"{name}(eps=None) (the dtype's epsilon; archc's rmsnorm states its eps)")
    return "rmsnorm", {"eps": float(module.eps)}


def _timm_pool(module: Any) -> tuple[str, dict[str, Any]]:
    """timm's SelectAdaptivePool2d (its children hold no weights): an average to one position,
    flat (`flatten=True`) or a 1x1 map; other pool types are refused by name."""
    import torch.nn as nn

    pool, flatten = module.pool, module.flatten
    kind = type(pool).__name__
    if kind == "FastAdaptiveAvgPool" and tuple(pool.dim) == (2, 3) and type(flatten) is nn.Identity:
        return ("global_avgpool", {}) if pool.flatten else ("adaptive_avgpool", {"size": 1})
    if type(pool) is nn.AdaptiveAvgPool2d and _single(pool.output_size, "output_size") == 1:
        if type(flatten) is nn.Identity:
            return "adaptive_avgpool", {"size": 1}
        if type(flatten) is nn.Flatten and (flatten.start_dim, flatten.end_dim) == (1, -1):
            return "global_avgpool", {}
    raise Unsupported(f"SelectAdaptivePool2d(pool_type={module.pool_type!r}) with {kind}, which archc has no layer for")


def _timm_eca(module: Any) -> tuple[str, dict[str, Any]]:
    """timm's EcaModule (timm.layers.eca): `eca` with its conv's kernel, as ECA-Net has it (a
    1-D conv across the channels, no bias, then a sigmoid gate); timm's other gates and its
    experimental MLP form (use_mlp, an activation between two convs) are refused by name."""
    import torch.nn as nn

    children = dict(module.named_children())
    if set(children) != {"conv", "gate"} or getattr(module, "conv2", None) is not None:
        raise Unsupported(f"EcaModule with children {sorted(children)} (use_mlp), where archc's eca has a conv and a sigmoid")
    gate = module.gate
    if not (type(gate) is nn.Sigmoid or (type(gate).__name__ == "Sigmoid" and type(gate).__module__ == "timm.layers.activations")):
        raise Unsupported(f"EcaModule with gate {type(gate).__name__}, where archc's eca gates with a sigmoid")
    conv = module.conv
    (k,) = conv.kernel_size
    shape = (conv.in_channels, conv.out_channels, conv.stride, conv.padding, conv.dilation, conv.groups, conv.padding_mode)
    if type(conv) is not nn.Conv1d or k % 2 == 0 or conv.bias is not None or shape != (1, 1, (1,), ((k - 1) // 2,), (1,), 1, "zeros"):
        raise Unsupported(f"EcaModule with conv {conv}, where archc's eca has Conv1d(1, 1, K odd, padding=(K - 1) // 2, bias=False)")
    return "eca", {"kernel": k}


def _timm_global_context(module: Any) -> tuple[str, dict[str, Any]]:
    """timm's GlobalContext (GCNet; timm.layers.global_context): `global_context` with its MLPs'
    width and layer norm eps, fused by add and/or sigmoid scale, as archc's has it (attention
    pooling by conv_attn, ConvMlp of 1x1 convs with biases, LayerNorm2d and ReLU); timm's mean
    pooling (use_attn=False), other gates, norms or activations are refused by name."""
    import torch.nn as nn

    gate = module.gate
    if module.conv_attn is None:
        raise Unsupported("GlobalContext(use_attn=False) (a mean context), where archc's global_context pools by attention")
    if not (type(gate) is nn.Sigmoid or (type(gate).__name__ == "Sigmoid" and type(gate).__module__ == "timm.layers.activations")):
        raise Unsupported(f"GlobalContext with gate {type(gate).__name__}, where archc's global_context gates with a sigmoid")
    attn = module.conv_attn
    if type(attn) is not nn.Conv2d or attn.kernel_size != (1, 1) or attn.bias is None or attn.out_channels != 1:
        raise Unsupported(f"GlobalContext with conv_attn {attn}, where archc's has a 1x1 conv to one channel with bias")
    found = set()
    for mlp in (m for m in (module.mlp_add, module.mlp_scale) if m is not None):
        fc1, norm, act, drop, fc2 = (getattr(mlp, key, None) for key in ("fc1", "norm", "act", "drop", "fc2"))
        convs = all(type(fc) is nn.Conv2d and fc.kernel_size == (1, 1) and fc.bias is not None and fc.groups == 1 for fc in (fc1, fc2))
        if not (convs and type(norm).__name__ == "LayerNorm2d" and isinstance(norm, nn.LayerNorm) and norm.bias is not None
                and type(act) is nn.ReLU and isinstance(drop, (nn.Dropout, nn.Identity)) and getattr(drop, "p", 0.0) == 0.0):  # fmt: skip
            raise Unsupported(f"GlobalContext with MLP {mlp}, where archc's has 1x1 convs with biases, LayerNorm2d and ReLU")
        found.add((fc1.out_channels, float(norm.eps)))
    if len(found) != 1:
        raise Unsupported("GlobalContext whose two MLPs differ in width or eps")
    ((rd, eps),) = found
    return "global_context", {"rd_channels": rd, "eps": eps, "fuse_add": module.mlp_add is not None, "fuse_scale": module.mlp_scale is not None}


def _batchnorm(module: Any) -> tuple[str, dict[str, Any]]:
    name = type(module).__name__
    if not module.affine or not module.track_running_stats:
        raise Unsupported(f"{name}(affine={module.affine}, track_running_stats={module.track_running_stats})")
    if module.momentum is None:
        raise Unsupported(f"{name}(momentum=None) (a cumulative average)")
    return "batchnorm", {"eps": module.eps, "momentum": module.momentum}


def _groupnorm(module: Any) -> tuple[str, dict[str, Any]]:
    if not module.affine:
        raise Unsupported(f"{type(module).__name__}(affine=False) (a group norm without weight and bias)")
    return "groupnorm", {"groups": module.num_groups, "eps": module.eps}


def norm_act(module: Any) -> list[tuple[str, dict[str, Any]]] | None:
    """timm's norm + activation modules (timm.layers.norm_act): BatchNormAct2d, a BatchNorm2d,
    and GroupNormAct / GroupNorm1Act, an nn.GroupNorm, whose forward then applies its children
    `drop` and `act`: the norm layer, then the activation's, if any; None for any other module.
    The weights are the module's own (`bn1.weight`), so the norm keeps the module's name and
    the activation, weightless, takes a name of its own."""
    import torch.nn as nn

    name = type(module).__name__
    if name == "BatchNormAct2d" and isinstance(module, nn.BatchNorm2d):
        norm = _batchnorm(module)
    elif name in ("GroupNormAct", "GroupNorm1Act") and isinstance(module, nn.GroupNorm):
        norm = _groupnorm(module)
    else:
        return None
    if set(dict(module.named_children())) != {"drop", "act"}:
        raise Unsupported(f"{name} with children {sorted(dict(module.named_children()))}")
    if type(module.drop) is not nn.Identity:
        raise Unsupported(f"{name} with drop {type(module.drop).__name__} (a dropout between the norm and its activation)")
    layers: list[tuple[str, dict[str, Any]]] = [norm]
    act = leaf(module.act)
    if act is None or act[0] not in ACTIVATION_LAYERS and act[0] not in ("act", "identity"):
        raise Unsupported(f"{name} with activation {type(module.act).__name__}, which archc has no layer for")
    if act[0] != "identity":
        layers.append(act)
    return layers


# Arguments left out of the spec where they have this value (archc's own default, or the
# spec's `defaults:`); "kernel" means equal to the layer's kernel.
OMIT: dict[str, dict[str, Any]] = {
    "conv": {"stride": 1, "padding": 0, "groups": 1, "dilation": 1, "bias": False, "standardize": False, "gain": False},
    "batchnorm": DEFAULTS["batchnorm"],
    "groupnorm": {"eps": 1.0e-5},
    "global_context": {"fuse_add": False, "fuse_scale": True},
    "maxpool": {"stride": "kernel", "padding": 0, "ceil_mode": False},
    "avgpool": {"stride": "kernel", "padding": 0, "ceil_mode": False, "count_include_pad": True},
    "dense": {"bias": True},
    "slice": {"start": 0},
}


def omitted(kind: str, key: str, value: Any, args: dict[str, Any]) -> bool:
    """Whether `key: value` of a `kind` layer goes without saying."""
    default = OMIT.get(kind, {}).get(key, _NONE)
    if default == "kernel":
        return value == args.get("kernel")
    return default is not _NONE and value == default and type(value) is type(default)


_NONE = object()


def is_container(module: Any) -> bool:
    import torch.nn as nn

    return type(module) is nn.Sequential


def function(target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The archc layer of a traced call_function / call_method: a merge (add, concat,
    multiply), flatten, an activation, a pool, a shuffle or channel slice (the markers
    archc.importer.patterns rewrites their idioms into); None when archc has none."""
    import torch
    import torch.nn.functional as F

    from archc.importer import patterns, radix

    kwargs = {k: v for k, v in kwargs.items() if k != "inplace"}
    if target is patterns.channel_shuffle:
        return "shuffle", {"groups": args[1]}
    if target is radix.radix_softmax:
        return "softmax", {"radix": args[1], "cardinality": 1}
    if target is patterns.channel_slice:
        return "slice", {"start": args[1], **({"stop": args[2]} if args[2] is not None else {})}
    if target in (F.gelu, F.silu) and len(args) == 2 and args[1] is False:  # F.silu(x, False)
        args = args[:1]
    if target in (operator.add, operator.iadd, torch.add, "add", "add_") and not kwargs and len(args) == 2:
        return "add", {}
    if target in (operator.mul, operator.imul, torch.mul, "mul", "mul_") and not kwargs and len(args) == 2:
        return "multiply", {}
    if target in (torch.cat, torch.concat):
        dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
        return ("concat", {}) if dim == 1 else None
    if target in (torch.flatten, "flatten"):
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        return ("flatten", {}) if (start, end) == (1, -1) else None
    if target in (F.relu, torch.relu, "relu", "relu_") and len(args) == 1:
        return "relu", {}
    if target in ("permute", torch.permute):  # x.permute(0, 2, 3, 1): channels last and back
        dims = tuple(args[1:]) if len(args) > 2 else tuple(args[1]) if len(args) == 2 else tuple(kwargs.get("dims", ()))
        to = {(0, 2, 3, 1): "channels_last", (0, 3, 1, 2): "channels_first"}.get(dims)
        return ("permute", {"to": to}) if to is not None and set(kwargs) <= {"dims"} else None
    if target in ("mean", torch.mean) and len(args) in (2, 3) and set(kwargs) <= {"keepdim", "dim"} or (
        target in ("mean", torch.mean) and len(args) == 1 and set(kwargs) >= {"dim"}
    ):
        # the mean over every position: (2, 3) of an image, (2, 3, 4) of a clip (S3D's head); a
        # mean over fewer dimensions than the map has would differ, which the import's check finds
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keep = kwargs.get("keepdim", args[2] if len(args) == 3 else False)
        if isinstance(dims, (tuple, list)) and list(dims) in ([2, 3], [2, 3, 4]) and type(keep) is bool:
            return ("adaptive_avgpool", {"size": 1}) if keep else ("global_avgpool", {})  # keepdim: a squeeze-excite's pool
    if target is F.gelu and len(args) == 1 and kwargs.get("approximate", "none") == "none":
        return "gelu", {}
    if target in (F.silu, "silu") and len(args) == 1:
        return "silu", {}
    if target in (torch.sigmoid, F.sigmoid, "sigmoid") and len(args) == 1:
        return "sigmoid", {}
    if target in (F.avg_pool2d, F.max_pool2d):
        names = ["input", "kernel_size", "stride", "padding"] + (
            ["ceil_mode", "count_include_pad", "divisor_override"] if target is F.avg_pool2d else ["dilation", "ceil_mode", "return_indices"]
        )
        given = {**dict(zip(names[1:], args[1:])), **kwargs}
        kernel = _single(given.get("kernel_size"), "kernel_size")
        stride = _single(given.get("stride") or kernel, "stride")
        if given.get("divisor_override") is not None or _single(given.get("dilation", 1), "dilation") != 1 or given.get("return_indices"):
            return None
        out = {"kernel": kernel, "stride": stride, "padding": _single(given.get("padding", 0), "padding"),
               "ceil_mode": bool(given.get("ceil_mode", False))}  # fmt: skip
        if target is F.avg_pool2d:
            return "avgpool", {**out, "count_include_pad": bool(given.get("count_include_pad", True))}
        return "maxpool", out
    if target is F.dropout:  # F.dropout(x, p=self.drop_rate, training=self.training): nn.Dropout's
        given = {**dict(zip(["p", "training"], args[1:])), **kwargs}
        if set(given) <= {"p", "training"} and isinstance(given.get("p", 0.5), float) and isinstance(given.get("training", True), bool):
            return "dropout", {"rate": given.get("p", 0.5)}
        return None
    if target is F.pad:  # constant amounts (a 'same' padding rule's, computed at the input shape: sizes.py)
        given = {**dict(zip(["pad", "mode", "value"], args[1:])), **kwargs}
        pad, value = given.get("pad"), given.get("value")
        if given.get("mode", "constant") != "constant" or value not in (None, 0) or not isinstance(pad, (tuple, list)) or len(pad) != 4:
            return None
        if not all(type(p) is int and p >= 0 for p in pad):
            return None
        return "zeropad", {"padding": [[pad[2], pad[3]], [pad[0], pad[1]]]}  # F.pad's (left, right, top, bottom)
    if target in (F.adaptive_avg_pool2d,):
        size = _single(kwargs.get("output_size", args[1] if len(args) > 1 else None), "output_size")
        return ("adaptive_avgpool", {"size": size}) if isinstance(size, int) else None
    return None
