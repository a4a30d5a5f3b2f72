"""Every op kind of `archc.ops`, found in its registry (a new op kind fails `test_every_op_kind_
is_covered` until it has a case here or a reason in NOT_PLACED): for seeded random valid
arguments, a tiny model around the op, and
- the shape rule (the IR) = the generated PyTorch model's output = the Keras model's;
- equal parameter counts (trainable, non-trainable) in the IR, PyTorch and Keras;
- an exact interop round trip of its weights: torch -> keras -> torch gives back every tensor;
- equal outputs of the two models with the transferred weights (flat features after a flatten
  compared in each framework's order, which `archc.interop` declares);
- the initialisation facts the op declares (`Op.TENSORS`): PyTorch's fans are the op's
  `fan_in` / `fan_out`, its constant defaults are what nn's constructor gives, and each Keras
  initializer argument is one the Keras layer has, whose own default is the declared one.
The same at ranks 1 and 3 (inputs (C, L) and (C, D, H, W), per-dimension lists of random
lengths' values) for every op kind that follows the rank (RANK_BUILDERS); the others refuse
those ranks with a message naming the op and the rank (RANK_REFUSED)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import need

from archc import api, ops
from archc.errors import SpecError
from archc.interop import (
    channels_last,
    flattened_map,
    keras_feature_order,
    keras_name,
    keras_to_torch,
    torch_to_keras,
)
from archc.lower import lower
from archc.ops import init
from archc.spec.loader import load_spec_text

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

CASES = 5  # seeded random argument sets per op kind
Layers = list[dict[str, Any]]
Case = tuple[list[int], Layers]  # input (C, H, W), layers; the op under test is the last, named `op`


def _map(r: random.Random, lo: int = 3, hi: int = 7) -> list[int]:
    return [r.choice([2, 4, 6]), r.randint(lo, hi), r.randint(lo, hi)]


def _flat(r: random.Random) -> tuple[list[int], Layers]:
    """Flat features: a flatten of a map with H*W > 1 (their order differs between the
    frameworks), or a global average pool."""
    if r.random() < 0.6:
        return [r.choice([2, 3]), r.randint(2, 3), r.randint(2, 3)], [{"flat": "flatten"}]
    return _map(r), [{"pool": "global_avgpool"}]


def _merge(kind: str) -> Callable[[random.Random], Case]:
    def case(r: random.Random) -> Case:
        c = r.choice([2, 4])
        other = r.choice([2, 6]) if kind == "concat" else c
        return _map(r), [
            {"a": {"conv": {"filters": c, "kernel": 1}}},
            {"b": {"conv": {"filters": other, "kernel": 3, "padding": 1}, "from": "input"}},
            {"op": {kind: ["a", "b"]}},
        ]

    return case


def _weighted_sum(r: random.Random) -> Case:
    """Two or three tensors of one shape; normalized (some eps) or plain."""
    shape, layers = _merge("add")(r)
    inputs = ["a", "b", "c"][: r.choice([2, 3])]
    layers[-1:] = [{"c": {"conv": {"filters": layers[0]["a"]["conv"]["filters"], "kernel": 1}, "from": "input"}}] * (len(inputs) == 3)
    options = {"normalize": r.random() < 0.6, **({"eps": r.choice([1e-4, 1e-2, 0.5])} if r.random() < 0.5 else {})}
    return shape, [*layers, {"op": {"weighted_sum": inputs, **options}}]


def _act(r: random.Random) -> Case:
    fn = r.choice(sorted(ops.act.FUNCTIONS))  # type: ignore[attr-defined]
    args: dict[str, Any] = {"fn": fn}
    if fn in ops.act.EXTRA:  # type: ignore[attr-defined]
        key, _ = ops.act.EXTRA[fn]  # type: ignore[attr-defined]
        args[key] = round(r.uniform(0.05, 0.5), 3)
    shape, before = _flat(r) if r.random() < 0.3 else (_map(r), [])
    return shape, [*before, {"op": {"act": args}}]


def _pool(kind: str) -> Callable[[random.Random], Case]:
    def case(r: random.Random) -> Case:
        kernel = r.randint(2, 3)
        args: dict[str, Any] = {"kernel": kernel, "stride": r.randint(1, kernel), "padding": r.randint(0, kernel // 2)}
        if kind == "avgpool":
            args["count_include_pad"] = r.random() < 0.5
        return _map(r, 5, 8), [{"op": {kind: args}}]

    return case


def _conv(r: random.Random) -> Case:
    c = r.choice([2, 4])
    groups = r.choice([1, 2])
    kernel: Any = r.choice([1, 3, [1, 3], [3, 1]])
    args = {"filters": groups * r.randint(1, 3), "kernel": kernel, "stride": r.randint(1, 2), "groups": groups}
    args.update({"padding": r.randint(0, 1), "dilation": r.randint(1, 2), "bias": r.random() < 0.5})
    if isinstance(kernel, list):
        args["dilation"] = 1
    form = r.choice(["plain", "plain", "standardize", "gain", "gamma"]) if kernel != 1 else "plain"
    if form != "plain":  # weight standardization (BiT), scaled with a gain (NFNet)
        args.update({"standardize": True, "eps": r.choice([1e-8, 1e-6, 1e-3])})
        args.update({"gain": True} if form == "gain" else {"gain": True, "gamma": r.choice([0.5, 1.7])} if form == "gamma" else {})
    return [c, r.randint(5, 8), r.randint(5, 8)], [{"op": {"conv": args}}]


def _conv_transpose(r: random.Random) -> Case:
    stride = r.randint(1, 2)
    kernel = r.randint(max(stride, 2), 4)
    args = {"filters": r.randint(1, 3), "kernel": kernel, "stride": stride, "bias": r.random() < 0.5}  # groups: PyTorch only
    args.update({"padding": r.randint(0, (kernel - 1) // 2), "output_padding": r.randint(0, stride - 1)})
    return [2 * r.randint(1, 2), r.randint(3, 5), r.randint(3, 5)], [{"op": {"conv_transpose": args}}]


def _depthwise(r: random.Random) -> Case:
    kernel = r.choice([3, 5])
    args = {"kernel": kernel, "stride": r.randint(1, 2), "padding": r.randint(0, kernel // 2), "bias": r.random() < 0.5}
    return _map(r, 5, 8), [{"op": {"depthwise_conv": args}}]


def _batchnorm(r: random.Random) -> Case:
    args = {"eps": r.choice([1e-5, 1e-3]), "momentum": r.choice([0.1, 0.01])}
    if r.random() < 0.5:
        shape, before = _flat(r)
        return shape, [*before, {"op": {"batchnorm": args}}]
    args["scale"] = r.random() < 0.7
    return _map(r), [{"op": {"batchnorm": args}}]


def _dense(r: random.Random) -> Case:
    shape, before = _flat(r)
    if r.random() < 0.3:  # layers that keep the flatten's order before it
        before += [{"norm": {"layernorm": {"eps": 1e-5}}}, {"relu": "relu"}]
    return shape, [*before, {"op": {"dense": {"units": r.randint(1, 5), "bias": r.random() < 0.5}}}]


def _layernorm(r: random.Random) -> Case:
    shape, before = _flat(r) if r.random() < 0.5 else (_map(r), [])
    return shape, [*before, {"op": {"layernorm": {"eps": r.choice([1e-6, 1e-5])}}}]


def _rmsnorm(r: random.Random) -> Case:
    """On a map's channels, on flat features, or on a map held channels-last (timm's RmsNorm)."""
    form = r.choice(["map", "flat", "last"])
    shape, before = _flat(r) if form == "flat" else (_map(r), [])
    if form == "last":
        before = [{"to_last": {"permute": {"to": "channels_last"}}}]
    after = [{"back": {"permute": {"to": "channels_first"}}}] if form == "last" else []
    return shape, [*before, {"op": {"rmsnorm": {"eps": r.choice([1e-6, 1e-5, 0.1])}}}, *after]


def _global_context(r: random.Random) -> Case:
    """GCNet's attention pooling and MLP, added (gcresnet's), gating, or both."""
    fuse = r.choice([(True, False), (False, True), (True, True)])
    args = {"rd_channels": r.randint(1, 3), "eps": r.choice([1e-6, 1e-2]), "fuse_add": fuse[0], "fuse_scale": fuse[1]}
    return _map(r), [{"op": {"global_context": args}}]


def _groupnorm(r: random.Random) -> Case:
    """Groups of one channel up to all of them, after a conv to more channels or on the input;
    eps unset (1e-5) or written."""
    shape, before = _map(r), []
    c = shape[0]
    if r.random() < 0.5:
        c = r.choice([6, 8, 12])
        before = [{"wide": {"conv": {"filters": c, "kernel": 1}}}]
    args: dict[str, Any] = {"groups": r.choice([g for g in range(1, c + 1) if c % g == 0])}
    if r.random() < 0.5:
        args["eps"] = r.choice([1e-6, 1e-3])
    return shape, [*before, {"op": {"groupnorm": args}}]


def _plain(layer: Any, flat_ok: bool = False) -> Callable[[random.Random], Case]:
    """An op whose arguments are drawn by `layer(r)`, on a map (or flat features too)."""

    def case(r: random.Random) -> Case:
        shape, before = _flat(r) if flat_ok and r.random() < 0.4 else (_map(r), [])
        return shape, [*before, {"op": layer(r)}]

    return case


def _normalization(r: random.Random) -> Case:
    c = r.choice([1, 3])
    if r.random() < 0.3:  # learned from data: non-trainable weights
        return [c, 4, 4], [{"op": {"normalization": {}}}]
    args = {"mean": [round(r.uniform(-1, 1), 3) for _ in range(c)], "variance": [round(r.uniform(0.5, 2), 3) for _ in range(c)]}
    return [c, 4, 4], [{"op": {"normalization": args}}]


def _permute(r: random.Random) -> Case:
    return _map(r), [{"last": {"permute": {"to": "channels_last"}}}, {"op": {"permute": {"to": "channels_first"}}}]


def _slice(r: random.Random) -> Case:
    shape = _map(r)
    start = r.randint(0, shape[0] - 1)
    return shape, [{"op": {"slice": {"start": start, "stop": r.randint(start + 1, shape[0])}}}]


def _softmax(r: random.Random) -> Case:
    radix, cardinality = r.choice([(None, None), (2, 1), (2, 2), (1, 2)])
    args = {} if radix is None else {"radix": radix, "cardinality": cardinality}
    return [4 * r.randint(1, 2), 1, 1] if radix else _map(r), [{"op": {"softmax": args} if args else "softmax"}]


def _zeropad(r: random.Random) -> Case:
    padding: Any = r.randint(1, 2) if r.random() < 0.5 else [[r.randint(0, 2), r.randint(0, 2)], [r.randint(0, 2), r.randint(1, 2)]]
    return _map(r), [{"op": {"zeropad": {"padding": padding}}}]


def _blurpool(r: random.Random) -> Case:
    """Kernel 2 to 5, stride 1 to 3, padded by reflection (written or not) or with zeros, on a
    map of 5 to 8 positions (wider than the reflection's padding)."""
    args = {"kernel": r.randint(2, 5), "stride": r.randint(1, 3), "pad_mode": r.choice(["reflect", "zeros", None])}
    return _map(r, 5, 8), [{"op": {"blurpool": {k: v for k, v in args.items() if v is not None}}}]


def _space_to_depth(r: random.Random) -> Case:
    """Sizes that the block divides (height and width apart), on the input or after a conv."""
    block = r.choice([2, 3, 4])
    shape = [r.choice([1, 3]), block * r.randint(1, 3), block * r.randint(1, 3)]
    before = [{"mix": {"conv": {"filters": r.choice([2, 5]), "kernel": 1}}}] if r.random() < 0.5 else []
    return shape, [*before, {"op": {"space_to_depth": {"block": block}}}]


BUILDERS: dict[str, Callable[[random.Random], Case]] = {
    "act": _act,
    "adaptive_avgpool": lambda r: ([2, 6, 6], [{"op": {"adaptive_avgpool": {"size": r.choice([1, 2, 3, 6])}}}]),
    "add": _merge("add"),
    "avgpool": _pool("avgpool"),
    "batchnorm": _batchnorm,
    "blurpool": _blurpool,
    "concat": _merge("concat"),
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "dense": _dense,
    "depthwise_conv": _depthwise,
    "dropout": _plain(lambda r: {"dropout": {"rate": round(r.uniform(0.1, 0.9), 2)}}, flat_ok=True),
    "eca": _plain(lambda r: {"eca": {"kernel": r.choice([1, 3, 5, 7])}}),  # 7: wider than the channels
    "flatten": lambda r: (_map(r, 2, 4), [{"op": "flatten"}]),
    "global_avgpool": _plain(lambda r: "global_avgpool"),
    "groupnorm": _groupnorm,
    "identity": _plain(lambda r: "identity", flat_ok=True),
    "layer_scale": _plain(lambda r: {"layer_scale": {"init_value": round(r.uniform(0.1, 2), 3), "vector": r.random() < 0.5}}),
    "layernorm": _layernorm,
    "global_context": _global_context,
    "rmsnorm": _rmsnorm,
    "maxpool": _pool("maxpool"),
    "multiply": _merge("multiply"),
    "normalization": _normalization,
    "permute": _permute,
    "rescaling": _plain(lambda r: {"rescaling": {"scale": round(r.uniform(0.1, 2), 3), "offset": round(r.uniform(-1, 1), 3)}}),
    "reshape": lambda r: (_map(r), [{"pool": "global_avgpool"}, {"op": "reshape"}]),
    "resize": lambda r: (
        [r.randint(1, 3), r.randint(4, 9), r.randint(4, 9)],
        [{"small": {"avgpool": {"kernel": 2}}}, {"op": {"resize": {"like": "input", "mode": r.choice(["nearest", "bilinear"])}}}],
    ),
    "shuffle": lambda r: ([6, 4, 4], [{"op": {"shuffle": {"groups": r.choice([2, 3])}}}]),
    "slice": _slice,
    "softmax": _softmax,
    "space_to_depth": _space_to_depth,
    "stochastic_depth": _plain(lambda r: {"stochastic_depth": {"rate": round(r.uniform(0.1, 0.5), 2)}}),
    "weighted_sum": _weighted_sum,
    "upsample": _plain(lambda r: {"upsample": {"scale": r.randint(2, 3), "mode": r.choice(["nearest", "bilinear"])}}),
    "zeropad": _zeropad,
}
# Op kinds that a small spec cannot hold as a layer of their own, and why.
NOT_PLACED = {
    "pad_shortcut": "internal: the option_a shortcut of a skip block (`shortcut: option_a`), no spec layer; "
    "tests/test_zoo.py covers it in specs/cifar/resnet20.yaml",
}
DEFAULTS = {
    "conv": {"bias": True},
    "dense": {"bias": True},
    "batchnorm": {"eps": 1e-5, "momentum": 0.1, "scale": True},
    "activation": "relu",
    "avgpool": {"count_include_pad": True},
}


def test_every_op_kind_is_covered():
    """Discovered from the registry: no op kind is skipped silently."""
    assert set(BUILDERS) | set(NOT_PLACED) == set(ops.ALL), "give every op kind a case in BUILDERS or a reason in NOT_PLACED"
    assert not set(BUILDERS) & set(NOT_PLACED)
    assert all(ops.ALL[kind].Args is None for kind in NOT_PLACED)  # only what a spec cannot write


def spec_text(kind: str, seed: int) -> str:
    shape, layers = BUILDERS[kind](random.Random(f"{kind}-{seed}"))
    spec = {"archc": 1, "name": f"{kind}_{seed}", "input": shape, "defaults": DEFAULTS, "layers": layers}
    return yaml.safe_dump(spec, sort_keys=False)


def torch_as_keras(graph: Any, out: np.ndarray) -> np.ndarray:
    """A PyTorch output in Keras' layout: NCHW -> NHWC, flat features in H,W,C order."""
    shape, last = graph.output_shape, graph.nodes[-1]
    if shape.spatial:
        return out if shape.last else channels_last(out)
    order = flattened_map(graph, last.id)
    return out if order is None else out[:, keras_feature_order(order)]


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_op_conforms(kind):
    for seed in range(CASES):
        conforms(kind, seed, spec_text(kind, seed))


def test_rmsnorm_of_flattened_features_conforms():
    """After a flatten of a 3x3 map (its features in C,H,W order in PyTorch, H,W,C in Keras) the
    norm's per-feature weight is reordered as a dense layer's columns are (no seed above draws it)."""
    layers = [{"flat": "flatten"}, {"op": {"rmsnorm": {"eps": 1e-5}}}, {"fc": {"dense": {"units": 3, "bias": True}}}]
    spec = {"archc": 1, "name": "rms_flat", "input": [2, 3, 3], "defaults": DEFAULTS, "layers": layers}
    conforms("rmsnorm", 0, yaml.safe_dump(spec, sort_keys=False))


def conforms(kind: str, seed: int, text: str) -> None:
    """The op `op` of the spec `text` conforms (see the module docstring)."""
    graph = lower(load_spec_text(text, f"{kind}_{seed}.yaml"))
    (node,) = [n for n in graph.nodes if n.id == "op"]
    assert node.op.kind == kind, text
    tm, km = api.load_module(graph, "torch"), api.load_module(graph, "keras")
    torch.manual_seed(seed)
    t_model, k_model = tm.build_model().eval(), km.build_model()
    what = f"{kind}, seed {seed}:\n{text}"

    # counts: IR = PyTorch = Keras
    params = dict(t_model.named_parameters())  # non-trainable: the state_dict's other tensors
    t_counts = (sum(p.numel() for p in params.values()),
                sum(v.numel() for k, v in t_model.state_dict().items() if k not in params and not k.endswith("num_batches_tracked")))  # fmt: skip
    k_counts = (sum(int(np.prod(w.shape)) for w in k_model.trainable_weights),
                sum(int(np.prod(w.shape)) for w in k_model.non_trainable_weights))  # fmt: skip
    assert t_counts == k_counts == (graph.counts.trainable, graph.counts.non_trainable), what

    # the initialisation facts, on PyTorch's freshly constructed module
    _check_init_facts(node, graph, t_model, k_model, what)

    # the exact round trip, then equal outputs with the transferred weights
    verify.randomize(t_model, graph, seed=seed)  # leaves the model in train mode
    t_model.eval()
    torch_to_keras(t_model, k_model, graph)
    copy = tm.build_model()
    keras_to_torch(k_model, copy, graph)
    for key, value in t_model.state_dict().items():
        assert torch.equal(value, copy.state_dict()[key]), f"{key} after torch -> keras -> torch; {what}"

    x = np.random.default_rng(seed).standard_normal((2, *graph.input_shape.as_tuple())).astype("float32")
    with torch.no_grad():
        want = t_model(torch.from_numpy(x)).numpy()
    got = np.asarray(k_model(channels_last(x), training=False))
    out = graph.output_shape.as_tuple()
    keras_shape = (*out[1:], out[0]) if graph.output_shape.spatial else out
    assert want.shape == (2, *(keras_shape if graph.output_shape.last else out)), what
    assert got.shape == (2, *keras_shape), what
    want = torch_as_keras(graph, want)
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max()), what
    if seed == 0:  # `archc convert` reads Keras' weights file where the layout says Keras writes each weight
        _check_keras_file_layout(k_model, what)


def _check_keras_file_layout(k_model: Any, what: str) -> None:
    import tempfile

    import h5py

    from archc.convert import keras_file_layout

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/m.weights.h5"
        k_model.save_weights(path)
        with h5py.File(path, "r") as f:
            written: dict[str, tuple[int, ...]] = {}
            f.visititems(lambda name, obj: written.__setitem__(name, obj.shape) if isinstance(obj, h5py.Dataset) else None)
    assert written == {path: shape for path, _, shape, _ in keras_file_layout(k_model)}, what



# --- ranks 1 and 3 ---------------------------------------------------------------------------


def _sizes(r: random.Random, rank: int, lo: int, hi: int) -> list[int]:
    return [r.randint(lo, hi) for _ in range(rank)]


def _per_dim(r: random.Random, rank: int, draw: Callable[[], int]) -> Any:
    """One value for every spatial dimension, or a list with one per dimension."""
    return draw() if r.random() < 0.4 else [draw() for _ in range(rank)]


def _ranked_conv(r: random.Random, rank: int) -> Layers:
    groups = r.choice([1, 2])
    args = {"filters": groups * r.randint(1, 3), "kernel": _per_dim(r, rank, lambda: r.choice([1, 2, 3])), "groups": groups}
    args.update({"stride": _per_dim(r, rank, lambda: r.randint(1, 2)), "padding": _per_dim(r, rank, lambda: r.randint(0, 1))})
    args.update({"dilation": _per_dim(r, rank, lambda: r.randint(1, 2)), "bias": r.random() < 0.5})
    return [{"op": {"conv": args}}]


def _ranked_pool(kind: str) -> Callable[[random.Random, int], Layers]:
    def layers(r: random.Random, rank: int) -> Layers:
        kernel = r.randint(2, 3)
        args: dict[str, Any] = {"kernel": _per_dim(r, rank, lambda: kernel), "stride": _per_dim(r, rank, lambda: r.randint(1, kernel))}
        args["padding"] = _per_dim(r, rank, lambda: r.randint(0, kernel // 2))
        # max pooling pads with zeros after a relu in Keras (its -inf padding helper is 2-D)
        return [{"relu": "relu"}] * (kind == "maxpool") + [{"op": {kind: args}}]

    return layers


def _ranked_conv_transpose(r: random.Random, rank: int) -> Layers:
    stride = r.randint(1, 2)
    kernel = r.randint(max(stride, 2), 3)
    args = {"filters": r.randint(1, 3), "kernel": _per_dim(r, rank, lambda: kernel), "stride": stride, "bias": r.random() < 0.5}
    args.update({"padding": _per_dim(r, rank, lambda: r.randint(0, (kernel - 1) // 2)), "output_padding": r.randint(0, stride - 1)})
    return [{"op": {"conv_transpose": args}}]


def _ranked_zeropad(r: random.Random, rank: int) -> Layers:
    padding: Any = r.randint(1, 2) if r.random() < 0.4 else [[r.randint(0, 2), r.randint(1, 2)] for _ in range(rank)]
    return [{"op": {"zeropad": {"padding": padding}}}]


def _ranked_merge(kind: str) -> Callable[[random.Random, int], Layers]:
    def layers(r: random.Random, rank: int) -> Layers:
        return _merge(kind)(r)[1]

    return layers


RANK_BUILDERS: dict[str, Callable[[random.Random, int], Layers]] = {
    "act": lambda r, rank: [{"op": {"act": {"fn": r.choice(["relu", "silu", "sigmoid", "gelu"])}}}],
    "adaptive_avgpool": lambda r, rank: [{"op": {"adaptive_avgpool": {"size": r.choice([1, 2, 3])}}}],
    "add": _ranked_merge("add"),
    "avgpool": _ranked_pool("avgpool"),
    "batchnorm": lambda r, rank: [{"op": {"batchnorm": {"eps": r.choice([1e-5, 1e-3]), "momentum": 0.1}}}],
    "concat": _ranked_merge("concat"),
    "conv": _ranked_conv,
    "conv_transpose": _ranked_conv_transpose,
    # a dense layer after a flatten: PyTorch's and Keras' feature orders differ at every rank
    "dense": lambda r, rank: [{"flat": "flatten"}, {"op": {"dense": {"units": r.randint(1, 4)}}}],
    "dropout": lambda r, rank: [{"op": {"dropout": {"rate": 0.5}}}],
    "flatten": lambda r, rank: [{"op": "flatten"}],
    "global_avgpool": lambda r, rank: [{"op": "global_avgpool"}],
    "groupnorm": lambda r, rank: [{"op": {"groupnorm": {"groups": r.choice([1, 2])}}}],
    "identity": lambda r, rank: [{"op": "identity"}],
    "maxpool": _ranked_pool("maxpool"),
    "multiply": _ranked_merge("multiply"),
    "rescaling": lambda r, rank: [{"op": {"rescaling": {"scale": 0.5, "offset": 0.25}}}],
    # flat -> (C, 1) or (C, 1, 1, 1), then a gate over the map: squeeze-and-excitation at the rank
    "reshape": lambda r, rank: [{"pool": "global_avgpool"}, {"op": "reshape"}, {"gate": {"multiply": ["op", "input"]}}],
    "slice": lambda r, rank: [{"op": {"slice": {"start": 1, "stop": 2}}}],
    "softmax": lambda r, rank: [{"op": "softmax"}],
    "upsample": lambda r, rank: [{"op": {"upsample": {"scale": r.randint(2, 3)}}}],  # nearest: bilinear is 2-D
    "weighted_sum": lambda r, rank: _weighted_sum(r)[1],
    "zeropad": _ranked_zeropad,
}
RANK_ONE_ONLY = {"depthwise_conv"}  # Keras has DepthwiseConv1D and 2D, no 3D: PyTorch only at rank 3
RANK_BUILDERS["depthwise_conv"] = lambda r, rank: [
    {"op": {"depthwise_conv": {"kernel": _per_dim(r, rank, lambda: r.choice([1, 3])), "stride": r.randint(1, 2), "padding": 1}}}
]
# Op kinds that work on (C, H, W) maps only, each with a layer that shows it, and what refuses it
RANK_REFUSED: dict[str, Layers] = {
    "blurpool": [{"op": {"blurpool": {"kernel": 3, "stride": 2}}}],
    "eca": [{"op": {"eca": {"kernel": 3}}}],
    "layer_scale": [{"op": {"layer_scale": {"init_value": 0.5}}}],
    "layernorm": [{"op": {"layernorm": {"eps": 1e-5}}}],
    "global_context": [{"op": {"global_context": {"rd_channels": 2, "eps": 1e-6}}}],
    "rmsnorm": [{"op": {"rmsnorm": {"eps": 1e-5}}}],
    "normalization": [{"op": {"normalization": {"mean": [0.0, 0.0], "variance": [1.0, 1.0]}}}],
    "permute": [{"op": {"permute": {"to": "channels_last"}}}],
    "resize": [{"op": {"resize": {"like": "input"}}}],
    "shuffle": [{"op": {"shuffle": {"groups": 2}}}],
    "space_to_depth": [{"op": {"space_to_depth": {"block": 2}}}],
    "stochastic_depth": [{"op": {"stochastic_depth": {"rate": 0.2}}}],
}


def rank_spec_text(kind: str, rank: int, seed: int) -> str:
    r = random.Random(f"{kind}-rank{rank}-{seed}")
    layers = RANK_BUILDERS[kind](r, rank)
    size = [6] * rank if kind == "adaptive_avgpool" else _sizes(r, rank, 6, 9 if rank == 1 else 6)  # Keras: divisible sizes
    shape = [r.choice([2, 4]), *size]
    spec = {"archc": 1, "name": f"{kind}_rank{rank}_{seed}", "input": shape, "defaults": DEFAULTS, "layers": layers}
    return yaml.safe_dump(spec, sort_keys=False)


def test_every_op_kind_has_a_rank_case():
    assert set(RANK_BUILDERS) | set(RANK_REFUSED) | set(NOT_PLACED) == set(ops.ALL)
    assert not set(RANK_BUILDERS) & set(RANK_REFUSED)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("kind", sorted(RANK_BUILDERS))
def test_op_conforms_at_rank(kind, rank):
    if kind in RANK_ONE_ONLY and rank != 1:
        graph = lower(load_spec_text(rank_spec_text(kind, rank, 0), "x.yaml"))
        model = api.load_module(graph, "torch").build_model()
        assert type(model.get_submodule("op")).__name__ == "Conv3d" and model.get_submodule("op").groups == graph.input_shape.c
        with pytest.raises(SpecError, match=rf"keras backend: {kind} on a 3-D map: Keras has DepthwiseConv1D and DepthwiseConv2D"):
            api.load_module(graph, "keras")
        return
    for seed in range(3):
        text = rank_spec_text(kind, rank, seed)
        conforms(kind, seed, text)
        assert lower(load_spec_text(text, "x.yaml")).input_shape.rank == rank


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("kind", sorted(RANK_REFUSED))
def test_op_refuses_rank(kind, rank):
    """A 2-D-only op on a 1-D or 3-D map: a located error naming the op and the map's rank."""
    spec = {"archc": 1, "name": "refused", "input": [2, *[4] * rank], "defaults": DEFAULTS, "layers": RANK_REFUSED[kind]}
    name = {1: r"1-D \(C, L\)", 3: r"3-D \(C, D, H, W\)"}[rank]
    with pytest.raises(SpecError, match=rf"op: .*{kind.split('_')[0]}.* works on 2-D \(C, H, W\) maps only, not on the {name} map") as e:
        lower(load_spec_text(yaml.safe_dump(spec, sort_keys=False), "x.yaml"))
    assert e.value.where is not None and e.value.where.line > 0

def _check_init_facts(node: Any, graph: Any, t_model: Any, k_model: Any, what: str) -> None:
    op = node.op
    if not op.TENSORS:
        return
    module = t_model.get_submodule(node.id)
    # the init loop's branch (the convs' for a depthwise conv) tests the module's class
    classes = ops.KINDS[init.section(op.kind)].torch_init_classes({node.shape.rank})
    assert isinstance(module, tuple(getattr(torch.nn, c.removeprefix("nn.")) for c in classes)), what
    in_ch = str(graph.input_shape.c if node.inputs[0] == "input" else next(n for n in graph.nodes if n.id == node.inputs[0]).shape.c)
    a = {k: str(v) for k, v in op.values().items() if k != "init"}
    # PyTorch's own fans (those of nn.init) are the op's
    fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(module.weight) if op.TENSORS["weight"].fans else (None, None)
    if op.TENSORS["weight"].fans:
        assert (_value(op.fan_in(a, in_ch)), _value(op.fan_out(a, in_ch))) == (fan_in, fan_out), what
        group_fan_out = op.group_fan_out(a)
        if group_fan_out is not None:
            assert _value(group_fan_out) == fan_out // module.groups, what
    layer = k_model.get_layer(keras_name(node.id))
    for role, tensor in op.TENSORS.items():
        present = getattr(module, role, None) is not None
        assert present == (not tensor.switch or bool(getattr(op, tensor.switch))), f"{role}; {what}"
        # the declared constant default is what PyTorch's constructor gives
        standardized = {"eps": module.eps} if isinstance(module, torch.nn.modules.conv._ConvNd) and hasattr(module, "eps") else {}
        fresh = type(module)(*_ctor_args(module), **standardized)  # a standardized conv's eps: a keyword
        if tensor.torch_default is not None and present:
            value = tensor.torch_default.arg("value")
            assert torch.all(getattr(fresh, role) == value), f"{role}; {what}"
        # Keras' argument exists on the layer, and its own default is the declared one
        assert hasattr(layer, tensor.keras_arg), f"{tensor.keras_arg}; {what}"
        config = layer.get_config()
        config.pop(tensor.keras_arg)
        default = getattr(type(layer).from_config(config), tensor.keras_arg)
        assert _keras_rule(default) == tensor.keras_default, f"{tensor.keras_arg}: {default}; {what}"
    if op.TENSORS["weight"].fans:
        # PyTorch's default weight is uniform(+-1/sqrt(fan_in)), the op's torch_default
        bound = 1 / np.sqrt(fan_in)
        standardized = {"eps": module.eps} if isinstance(module, torch.nn.modules.conv._ConvNd) and hasattr(module, "eps") else {}
        fresh = type(module)(*_ctor_args(module), **standardized)  # a standardized conv's eps: a keyword
        assert fresh.weight.abs().max().item() <= bound + 1e-7, what
        assert init.moments(init.TORCH_DEFAULT, "weight", op.kind, fan_in, fan_out)[1] == pytest.approx(bound / np.sqrt(3))


def _value(source: str) -> int:
    """A fan as the op gives it: Python source of integer arithmetic, e.g. `(4 // 2) * 9`."""
    return int(eval(source, {"__builtins__": {}}))


def _ctor_args(module: Any) -> tuple[Any, ...]:
    """A module of the same class, constructed as the generated code constructs it."""
    if isinstance(module, torch.nn.Linear):
        return (module.in_features, module.out_features, module.bias is not None)
    if isinstance(module, torch.nn.modules.conv._ConvNd):
        return (module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                *((module.output_padding,) if module.transposed else ()), *(() if module.transposed else (module.dilation,)),
                module.groups, module.bias is not None)  # fmt: skip
    return (module.num_features, module.eps, module.momentum)


def _keras_rule(initializer: Any) -> init.Rule:
    """A Keras initializer object as archc's Rule."""
    name, config = type(initializer).__name__, initializer.get_config()
    if name in ("Zeros", "Ones"):
        return init.ZEROS if name == "Zeros" else init.ONES
    if name == "Constant":
        return init.Rule("constant", (("value", float(config["value"])),))
    assert isinstance(initializer, keras.initializers.VarianceScaling), name
    args = (("scale", float(initializer.scale)), ("mode", initializer.mode), ("distribution", initializer.distribution))
    return init.Rule("variance_scaling", args)


def test_avgpool_3d_needs_its_kernel_inside_the_map():
    """PyTorch's AvgPool3d (unlike 1d and 2d) refuses a map smaller than its kernel even where
    the padding makes room (found by tests/test_differential.py's random 3-D specs): the IR
    refuses it too, and accepts what PyTorch accepts."""
    def spec(size: list[int]) -> str:
        layers = [{"op": {"avgpool": {"kernel": 3, "stride": 1, "padding": 1}}}]
        return yaml.safe_dump({"archc": 1, "name": "pool", "input": [2, *size], "defaults": DEFAULTS, "layers": layers})

    pool = torch.nn.AvgPool3d(3, stride=1, padding=1)
    with pytest.raises(RuntimeError, match="smaller than kernel size"):
        pool(torch.zeros(1, 2, 4, 2, 2))
    with pytest.raises(SpecError, match=r"PyTorch's AvgPool3d needs every size at least the kernel"):
        lower(load_spec_text(spec([4, 2, 2]), "pool.yaml"))
    assert tuple(pool(torch.zeros(1, 2, 4, 3, 3)).shape[2:]) == lower(load_spec_text(spec([4, 3, 3]), "pool.yaml")).output_shape.size
    assert lower(load_spec_text(spec([2, 2]), "pool.yaml")).output_shape.size == (2, 2)  # 2-D: PyTorch pools it


def test_eca_kernel_starts_as_pytorchs_conv1d_in_keras():
    """eca declares no `init` (PyTorch's Conv1d default, as timm leaves it): Keras' conv starts
    from the same distribution, uniform(+-1/sqrt(K)), its fan_in K as PyTorch's."""
    spec = {"archc": 1, "name": "eca", "input": [4, 3, 3], "layers": [{"se": {"eca": {"kernel": 5}}}]}
    k_model = api.load_module(lower(load_spec_text(yaml.safe_dump(spec), "eca.yaml")), "keras").build_model()
    layer = k_model.get_layer("se")
    assert [tuple(w.shape) for w in layer.weights] == [(5, 1, 1)]  # Conv1D's layout: (kernel, in, out)
    values = np.asarray(layer.kernel_initializer((5, 1, 20000)))  # fan_in 5 (kernel 5 x 1 input channel), many draws
    bound = 1 / np.sqrt(torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(1, 1, 5))[0])
    assert np.abs(values).max() <= bound and np.abs(values).max() > 0.99 * bound
    assert abs(values.std() / (bound / np.sqrt(3)) - 1) < 0.02 and abs(values.mean()) < 0.01 * bound
    fresh = torch.nn.Conv1d(1, 1, 5, padding=2, bias=False)  # PyTorch's own bound for the weight
    assert float(fresh.weight.detach().abs().max()) <= bound


def _both(spec: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The PyTorch and Keras models of `spec` on `x` (N, C, H, W), Keras' output made channels-first."""
    graph = lower(load_spec_text(yaml.safe_dump(spec), f"{spec['name']}.yaml"))
    with torch.no_grad():
        t_out = api.load_module(graph, "torch").build_model().eval()(torch.from_numpy(x)).numpy()
    k_out = np.asarray(api.load_module(graph, "keras").build_model()(channels_last(x), training=False))
    return t_out, k_out.transpose(0, 3, 1, 2)


def test_space_to_depth_orders_channels_as_documented():
    """out[(i * B + j) * C + c, y, x] = in[c, y * B + i, x * B + j] in both frameworks (timm's
    and tf.nn.space_to_depth's order), written out here element by element."""
    block, (c, h, w) = 2, (3, 4, 6)
    x = np.arange(2 * c * h * w, dtype="float32").reshape(2, c, h, w)
    want = np.zeros((2, block * block * c, h // block, w // block), "float32")
    for i in range(block):
        for j in range(block):
            for k in range(c):
                want[:, (i * block + j) * c + k] = x[:, k, i::block, j::block]
    spec = {"archc": 1, "name": "s2d", "input": [c, h, w], "layers": [{"op": {"space_to_depth": {"block": block}}}]}
    for got in _both(spec, x):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("kernel, stride, row, pad_mode", [(3, 2, [1, 2, 1], "reflect"), (5, 2, [1, 4, 6, 4, 1], "reflect"),
                                                      (2, 1, [1, 1], "reflect"), (3, 2, [1, 2, 1], "zeros")])  # fmt: skip
def test_blurpool_is_a_binomial_filter_after_padding(kernel, stride, row, pad_mode):
    """blurpool: the outer product of Pascal's row / 2^(K-1), padded by (S - 1 + K - 1) // 2
    by reflection (numpy's "reflect", the edge not repeated) or with zeros, at stride S;
    computed here with numpy's sliding windows."""
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 6)).astype("float32")
    filt = np.outer(row, row) / 4 ** (kernel - 1)
    p = (stride - 1 + kernel - 1) // 2
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), mode={"reflect": "reflect", "zeros": "constant"}[pad_mode])
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kernel, kernel), axis=(2, 3))[:, :, ::stride, ::stride]
    want = (windows * filt).sum(axis=(-2, -1))
    layer = {"blurpool": {"kernel": kernel, "stride": stride, "pad_mode": pad_mode}}
    spec = {"archc": 1, "name": "blur", "input": [3, 7, 6], "layers": [{"op": layer}]}
    for got in _both(spec, x):
        assert got.shape == want.shape and np.abs(got - want).max() < 1e-5
