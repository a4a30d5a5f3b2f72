"""Property tests (hypothesis, seeded and bounded).

1. Random valid specs (library and inline blocks, plain, skip and dense connectivity,
   growth rates, compression, strides, groups, activations, and blocks as dataflow
   graphs: named tensors, conditional entries, branches, gates, conditional residuals)
   build in both backends, and each generated model has the IR's output shape and
   parameter counts; a sample of dataflow specs passes `verify` (equal outputs).
2. Random mutations of valid specs (wrong types, missing and extra keys, out-of-range
   values, truncated YAML, random bytes) end in exit 0 or in exit 2 with one located
   line, never a traceback (exit 1) and never a written file.
"""

import contextlib
import math
import re
import tempfile
import types
from pathlib import Path

import yaml
from click.testing import CliRunner
from conftest import need
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archc.backends import emit
from archc.cli import main
from archc.lower import lower
from archc.spec.loader import load_spec_text

SETTINGS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
ACTS = ["relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh"]


KINDS = ["basic", "bottleneck", "cifar_basic", "dense", "transition", "skip", "plain", "dense_inline", "flow"]


@st.composite
def valid_specs(draw, kinds=tuple(KINDS)):
    """A spec that compiles, built while tracking channels c and the square map size h."""
    c0, h0 = draw(st.sampled_from([1, 3, 4])), draw(st.sampled_from([8, 12, 16]))
    h = h0
    c = draw(st.sampled_from([4, 6, 8]))
    layers = [{"stem": {"conv": {"filters": c, "kernel": 3, "padding": 1}}}, {"bn": "batchnorm"}, {"relu": "relu"}]
    blocks, use = {}, set()
    for k in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(list(kinds)))
        stride = draw(st.sampled_from([1, 2])) if h >= 4 and kind not in ("dense", "dense_inline") else 1
        repeat = draw(st.integers(1, 3))
        name = f"stage{k}"
        if kind in ("basic", "bottleneck", "cifar_basic"):
            use.add("resnet")
            planes = draw(st.sampled_from([c, 2 * c])) if kind == "cifar_basic" else draw(st.sampled_from([2, 4, 8]))
            args = {"planes": planes}
            if kind == "bottleneck":
                args["groups"] = draw(st.sampled_from([1, 2]))
                out = planes * 4
            else:
                out = planes
            item = {"stage": kind, "repeat": repeat, "with": args}
            if stride > 1:
                item["first"] = {"stride": stride}
            c, h = out, -(-h // stride)
        elif kind == "dense":
            use.add("densenet")
            growth, bn_size = draw(st.sampled_from([2, 4, 6])), draw(st.sampled_from([1, 2, 4]))
            item = {"stage": "dense_layer", "repeat": repeat, "connectivity": "dense",
                    "names": draw(st.sampled_from(["denselayer{n}", "{i}"])),
                    "with": {"growth_rate": growth, "bn_size": bn_size}}  # fmt: skip
            c += repeat * growth
        elif kind == "transition":
            compression = draw(st.sampled_from([0.5, 1.0]))
            if h < 2 or math.floor(compression * c) < 1:
                continue
            use.add("densenet")
            item = {"block": "transition", "with": {"compression": compression}}
            c, h = math.floor(compression * c), h // 2
        elif kind == "flow":
            block, args, out = flow_block(draw)
            blocks[f"blk{k}"] = block
            item = {"stage": f"blk{k}", "repeat": repeat, "with": args}
            c = out
        else:
            block, planes, out = inline_block(draw, c, skip=kind == "skip")
            blocks[f"blk{k}"] = block
            item = {"stage": f"blk{k}", "repeat": repeat, "with": {"planes": planes}}
            if kind == "dense_inline":
                item["connectivity"] = "dense"
                c += repeat * out
            else:
                if stride > 1:
                    item["first"] = {"stride": stride}
                c, h = out, -(-h // stride)
        layers.append({name: item})
    layers.append({"pool": "global_avgpool"})
    if draw(st.booleans()):
        layers.append({"drop": {"dropout": {"rate": 0.2}}})
    layers.append({"fc": {"dense": {"units": "num_classes"}}})
    spec = {
        "archc": 1,
        "name": "prop",
        "input": [c0, h0, h0],
        "params": {"num_classes": draw(st.integers(2, 10))},
        "defaults": {
            "conv": {"bias": draw(st.booleans())},
            "batchnorm": {"eps": draw(st.sampled_from([1e-5, 1.001e-5, 1e-3])), "momentum": 0.1},
        },
        "use": sorted(use),
        "blocks": blocks,
        "layers": layers,
    }
    return spec


def inline_block(draw, c, skip):
    """A block written in the spec: conv-bn-act [conv-bn], with groups only where they divide."""
    planes = draw(st.sampled_from([2, 4, 8]))
    mult = draw(st.sampled_from([1, 2]))
    kernel = draw(st.sampled_from([1, 3]))
    groups = draw(st.sampled_from([1, 2])) if c % 2 == 0 else 1
    conv1 = {"filters": "planes * mult", "kernel": kernel, "stride": "stride", "padding": kernel // 2, "groups": groups}
    layers = [{"conv1": {"conv": conv1}}, {"bn1": "batchnorm"}, {"act1": {"act": draw(st.sampled_from(ACTS))}}]
    out = planes * mult
    if draw(st.booleans()):
        layers += [{"conv2": {"conv": {"filters": "planes", "kernel": 1}}}, {"bn2": "batchnorm"}]
        out = planes
    block = {"params": {"planes": "int", "stride": 1, "mult": mult}, "layers": layers}
    if skip:
        option_a = out >= c and draw(st.booleans())
        block |= {"connectivity": "skip", "shortcut": {"kind": "option_a" if option_a else "projection"}}
        block["sum"] = draw(st.sampled_from(["in_place", "new"]))  # `out += identity` or `out = identity + out`
        block["after"] = [{"act2": "relu"}]
    return block, planes, out


def flow_block(draw):
    """A block as a small dataflow graph: a named tensor read again, a list with a conditional
    entry, parallel branches merged by concat or add, an optional squeeze-and-excitation gate,
    a residual that exists only where the shapes allow, adds written in place or not; returns
    (block, with, out channels)."""
    width = draw(st.sampled_from([2, 4, 6]))
    merge = draw(st.sampled_from(["concat", "add"]))
    out = 2 * width if merge == "concat" else width
    layers = [
        {"pre": {"conv": {"filters": "width", "kernel": 1}}},
        {"pre_act": {"act": draw(st.sampled_from(ACTS))}},
        {"body": [{"conv": {"filters": "width", "kernel": 3, "padding": 1}, "if": "extra"}, "batchnorm"]},
        {"merged": {"branches": [
            {"left": {"conv": {"filters": "width", "kernel": 1}}},
            {"right": [{"conv": {"filters": "width", "kernel": 3, "padding": 1}}, "relu"]},
        ], "merge": merge}},
    ]  # fmt: skip
    if draw(st.booleans()):  # a (C,) gate over the (C, H, W) map
        layers += [
            {"squeeze": "global_avgpool"},
            {"excite": {"dense": {"units": "channels"}}},
            {"gate": "sigmoid"},
            {"scaled": {"multiply": ["merged", "gate"]}},
        ]
    if draw(st.booleans()):  # a side path from an earlier tensor, added back
        last = next(iter(layers[-1]))
        layers.append({"tail": {"conv": {"filters": out, "kernel": 1}, "from": draw(st.sampled_from(["pre_act", "pre"]))}})
        layers.append({"joined": {"add": [last, "tail"], "in_place": draw(st.booleans())}})  # `last` only it reads
    if draw(st.booleans()):  # PyTorch's `out += x` (the branch's output, which only the sum reads) or `x + out`
        layers.append({"residual": {"add": [next(iter(layers[-1])), "input"], "in_place": True, "if": f"in_channels == {out}"}})
    else:
        layers.append({"residual": {"add": ["input", next(iter(layers[-1]))], "if": f"in_channels == {out}"}})
    block = {"params": {"width": "int", "extra": False}, "layers": layers}
    return block, {"width": width, "extra": draw(st.booleans())}, out


def dump(spec) -> str:
    return yaml.safe_dump(spec, sort_keys=False, default_flow_style=None, width=1000)


def module_from(text: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(text, f"<{name}>", "exec"), module.__dict__)
    return module


@settings(max_examples=25, **SETTINGS)
@given(valid_specs())
def test_random_specs_agree_with_the_ir_in_both_backends(spec):
    torch = need("torch")
    need("keras")
    import numpy as np

    graph = lower(load_spec_text(dump(spec), "prop.yaml"))
    counts = (graph.counts.trainable, graph.counts.non_trainable)

    tm = module_from(emit(graph, "torch"), "prop_torch")
    model = tm.build_model().eval()
    trainable = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    assert (trainable, buffers) == counts
    with torch.no_grad():
        out = model(torch.zeros(2, *graph.input_shape.as_tuple()))
    assert tuple(out.shape) == (2, *graph.output_shape.as_tuple())
    assert {n.id for n in graph.nodes if n.op.weight_names()} == {n.rsplit(".", 1)[0] for n, _ in model.named_parameters()}

    km = module_from(emit(graph, "keras"), "prop_keras")
    kmodel = km.build_model()
    k_trainable = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    k_non_trainable = sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights)
    assert (k_trainable, k_non_trainable) == counts
    assert tuple(kmodel.output_shape) == (None, *graph.output_shape.as_tuple())
    weighted = {layer.name for layer in kmodel.layers if layer.weights}
    assert weighted == {n.id.replace(".", "_") for n in graph.nodes if n.op.weight_names()}


@settings(max_examples=10, **SETTINGS)
@given(valid_specs(kinds=("flow",)))
def test_random_dataflow_blocks_agree_with_the_ir_in_both_backends(spec):
    test_random_specs_agree_with_the_ir_in_both_backends.hypothesis.inner_test(spec)


@settings(max_examples=3, **SETTINGS)
@given(valid_specs(kinds=("flow",)))
def test_random_dataflow_blocks_verify(tmp_path_factory, spec):
    """Both backends compute the same function (weights transferred through the IR)."""
    need("torch")
    need("keras")
    from archc import verify

    path = tmp_path_factory.mktemp("flow") / "flow.yaml"
    path.write_text(dump(spec))
    report = verify.verify(path)
    assert report.ok, verify.to_table(report)


# --- mutations ---------------------------------------------------------------------------------

HOSTILE_VALUES = [
    "x", "", "__import__('os').system('true')", "1 +", "2 ** 10000", "1 / 0", "width * 2.5", [], [1, 2], {},
    {"a": 1}, None, True, False, 0, -1, 1.5, 10**12, -(10**12), 1e308, "class", "a.b", "{i}",
]  # fmt: skip
EXTRA_KEYS = ["kernal", "fliters", "extra", "layer", "__class__", "with", "doc", "repeat", "0"]


def paths(node, prefix=()):
    """Every path to a value in the spec (keys and list indexes)."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, (*prefix, i))


def at(node, path):
    for part in path:
        node = node[part]
    return node


@st.composite
def mutated_specs(draw):
    """The bytes of a valid spec after one structural or textual mutation."""
    spec = draw(valid_specs())
    how = draw(st.sampled_from(["replace", "delete", "extra", "truncate", "bytes"]))
    if how in ("replace", "delete", "extra"):
        targets = [p for p in paths(spec) if p]
        if how == "extra":
            targets = [p for p in paths(spec) if isinstance(at(spec, p), dict)]
        path = draw(st.sampled_from(targets))
        if how == "extra":
            at(spec, path)[draw(st.sampled_from(EXTRA_KEYS))] = draw(st.sampled_from(HOSTILE_VALUES))
        else:
            parent = at(spec, path[:-1])
            if how == "delete":
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(st.sampled_from(HOSTILE_VALUES))
        return dump(spec).encode()
    raw = dump(spec).encode()
    cut = draw(st.integers(0, len(raw)))
    if how == "truncate":
        return raw[:cut]
    return raw[:cut] + draw(st.binary(min_size=1, max_size=16)) + raw[cut + draw(st.integers(0, 16)) :]


LOCATED = re.compile(r"archc: error: spec\.yaml:\d+(:\d+)?: \S")


@settings(max_examples=300, **SETTINGS)
@given(mutated_specs())
def test_mutated_specs_fail_cleanly(raw):
    runner = CliRunner()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "spec.yaml").write_bytes(raw)
        out = tmp / "out"
        with contextlib.chdir(tmp):
            result = runner.invoke(main, ["build", "spec.yaml", "-b", "torch", "-o", str(out / "model.py")])
        assert result.exit_code in (0, 2), result.stderr  # 1 is a bug in archc
        if result.exit_code == 0:  # some mutations leave a valid spec
            compile((out / "model.py").read_text(), "model.py", "exec")
            return
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
        assert LOCATED.match(result.stderr), result.stderr
        assert not out.exists()


# --- alternatives: the exclusivity check behind if/elif/else chains ------------------------------

NAMES = ("x", "y", "b")
GRID = [-3, -2, -1, 0, 1, 2, 3, -0.5, 0.5, 1.5, 2.5, True, False]  # every binding of x, y and b over these


@st.composite
def conditions(draw, depth=2):
    """A random condition over x, y (numbers) and b: comparisons with small numbers (so that
    two of them often meet), `and`, `or`, `not`, chains and bare names."""
    kind = draw(st.sampled_from(["cmp", "cmp", "cmp", "name", "not", "and", "or", "chain"] if depth else ["cmp", "name"]))
    if kind == "cmp":
        left, right = draw(st.sampled_from(["x", "y", "x + y", "max(x, y)"])), draw(st.sampled_from(["-1", "0", "1", "1.5", "2", "y"]))
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"{right} {op} {left}" if draw(st.booleans()) else f"{left} {op} {right}"
    if kind == "name":
        return draw(st.sampled_from(NAMES))
    if kind == "chain":
        return f"{draw(st.sampled_from(['0', '1', 'y']))} {draw(st.sampled_from(['<', '<=']))} x {draw(st.sampled_from(['<', '<=', '==']))} 2"
    if kind == "not":
        return f"not ({draw(conditions(depth - 1))})"
    return f"({draw(conditions(depth - 1))}) {kind} ({draw(conditions(depth - 1))})"


@st.composite
def condition_lists(draw):
    """2 to 4 conditions, each after the first often built from an earlier one (its negation,
    one of its comparisons under another operator, or it and another), so that many pairs
    exclude each other, or nearly."""
    texts = [draw(conditions())]
    for _ in range(draw(st.integers(1, 3))):
        earlier = draw(st.sampled_from(texts))
        how = draw(st.sampled_from(["fresh", "not", "reop", "reop", "and"]))
        if how == "not":
            texts.append(f"not ({earlier})")
        elif how == "reop":
            ops = ["==", "!=", "<=", ">=", "<", ">"]
            op = next((o for o in ops if f" {o} " in earlier), None)
            texts.append(earlier.replace(f" {op} ", f" {draw(st.sampled_from(ops))} ", 1) if op else draw(conditions()))
        elif how == "and":
            texts.append(f"({draw(conditions(1))}) and ({earlier})")
        else:
            texts.append(draw(conditions()))
    return texts


def _holds(tree, binding):
    from archc.spec import expr

    return bool(expr.evaluate(tree, binding))


BINDINGS = [{"x": x, "y": y, "b": b} for x in GRID for y in GRID for b in (True, False, 0, 2)]


@settings(max_examples=300, **SETTINGS)
@given(condition_lists())
def test_exclusive_conditions_never_hold_together_and_chains_run_what_separate_ifs_run(texts):
    """Independent fact: evaluation. Where the check calls two conditions exclusive, no binding
    makes both hold; where it calls them exhaustive, none makes all fail; and the if/elif/else
    keywords it gives a list of entries run, in every binding, exactly the entries that
    separate `if`s run."""
    from archc.backends import alternatives
    from archc.spec import expr, logic

    trees = [expr.parse(t) for t in texts]
    a, b = trees[0], trees[1]
    if logic.excludes(a, b):
        assert not any(_holds(a, s) and _holds(b, s) for s in BINDINGS), texts
    if logic.exhaustive([a, b]):
        assert all(_holds(a, s) or _holds(b, s) for s in BINDINGS), texts
    keywords = alternatives.keywords(trees)
    for s in BINDINGS:
        separate = [_holds(t, s) for t in trees]
        chained, taken = [], False
        for tree, keyword in zip(trees, keywords):
            if keyword == "if":
                taken = _holds(tree, s)
                chained.append(taken)
            elif keyword == "elif":
                run = not taken and _holds(tree, s)
                taken |= run
                chained.append(run)
            else:
                chained.append(not taken)
        assert chained == separate, (texts, keywords, s)


def test_the_exclusivity_check_sees_the_alternatives_specs_write():
    """What the property above cannot show: that the check claims something. Each pair here
    is exclusive (the second also exhaustive where marked) and is seen as such; the pairs that
    overlap in some binding are not."""
    from archc.spec import expr, logic

    exclusive = [
        ("stride == 1", "stride != 1", True), ("stride == 1", "stride == 2", False), ("stride > 1", "stride <= 1", True),
        ("1 < stride", "stride == 1", False), ("bn", "not bn", True), ("activation and use_hs", "activation and not use_hs", False),
        ("make_divisible(c * e) != c", "make_divisible(c * e) == c", True), ("a < b", "b <= a", True), ("x < 2", "x > 3", False),
        ("not (a or b)", "a", False), ("0 < x < 2", "x >= 2", False), ("x >= 1.5", "x < 1.5", True),
    ]  # fmt: skip
    for first, second, total in exclusive:
        a, b = expr.parse(first), expr.parse(second)
        assert logic.excludes(a, b) and logic.excludes(b, a), (first, second)
        assert logic.exhaustive([a, b]) == total, (first, second)
    for first, second in [("x < 2", "x > 1"), ("x == 1", "x == true"), ("x", "x == 0"), ("a and b", "a"), ("x != 1", "x != 2")]:
        assert not logic.excludes(expr.parse(first), expr.parse(second)), (first, second)
