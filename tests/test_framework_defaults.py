"""Generated code leaves out an argument whose value is its framework's default (`bias=True`,
`eps=1e-05`, `momentum=0.1`, `count_include_pad=True`, ...), so archc relies on those defaults.
Each op records them (`Op.TORCH_DEFAULTS`, `Op.KERAS_DEFAULTS`); these tests pin every recorded
value to the constructors of the installed torch and keras (and archc's helper templates), so an
upgrade that changes one fails here instead of silently changing the models archc generates."""

from __future__ import annotations

import ast
import inspect
from typing import Any

import pytest
from conftest import ROOT, need

from archc import ops
from archc.backends import template_dir
from archc.ops.base import is_default, without_defaults

torch = need("torch")
keras = need("keras")


def tables(attr: str) -> dict[str, dict[str, Any]]:
    """Every op's table `attr` merged; a class two ops call (nn.Conv2d: conv, depthwise_conv)
    must be recorded alike by both."""
    merged: dict[str, dict[str, Any]] = {}
    for op in ops.ALL.values():
        for func, defaults in getattr(op, attr).items():
            assert merged.setdefault(func, defaults) == defaults, f"{op.kind} records other defaults for {func}"
    return merged


TORCH, KERAS = tables("TORCH_DEFAULTS"), tables("KERAS_DEFAULTS")


def helper(backend: str, name: str) -> Any:
    """An archc helper class (templates/<backend>/NAME.py.j2, plain Python), defined as the
    generated module defines it."""
    namespace: dict[str, Any] = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional, "Tensor": torch.Tensor}
    if backend == "keras":
        namespace = {"keras": keras, "layers": keras.layers, "ops": keras.ops}
    exec((template_dir() / backend / f"{name}.py.j2").read_text(), namespace)
    return namespace[name]


def resolve(func: str) -> Any:
    """The class or function a generated call of `func` calls."""
    prefix, _, name = func.rpartition(".")
    modules = {"nn": torch.nn, "F": torch.nn.functional, "layers": keras.layers}
    return getattr(modules[prefix], name) if prefix else helper("torch" if func in TORCH else "keras", name)


def signature_defaults(func: str) -> dict[str, Any]:
    target = resolve(func)
    params = inspect.signature(target.__init__ if inspect.isclass(target) else target).parameters
    return {key: p.default for key, p in params.items() if p.default is not inspect.Parameter.empty}


def same(a: Any, b: Any) -> bool:
    """Equal in type and value (True is not 1, 1 is not 1.0, floats exactly)."""
    return type(a) is type(b) and repr(a) == repr(b)


@pytest.mark.parametrize("func", sorted({*TORCH, *KERAS}))
def test_recorded_defaults_are_the_installed_frameworks(func: str) -> None:
    recorded = TORCH.get(func) or KERAS[func]
    actual = signature_defaults(func)
    for key, value in recorded.items():
        assert key in actual, f"{func} has no keyword {key!r} with a default any more; archc records {key}={value!r}"
        assert same(actual[key], value), (
            f"{func}({key}=...) defaults to {actual[key]!r} in the installed framework, but archc leaves out "
            f"{key}={value!r} as its default (archc/ops); update the op's table and regenerate generated/"
        )


def test_tables_cover_what_the_ops_leave_out() -> None:
    """The defaults archc leaves out or relies on, for the classes the issue names."""
    for func, keys in {
        "nn.Conv2d": {"bias", "stride", "padding", "dilation", "groups"},
        "nn.BatchNorm2d": {"eps", "momentum"},
        "nn.AvgPool2d": {"count_include_pad", "ceil_mode", "padding"},
        "nn.MaxPool2d": {"padding", "ceil_mode"},
        "nn.Linear": {"bias"},
        "nn.ReLU": {"inplace"},
        "layers.Conv2D": {"strides", "padding", "use_bias"},
        "layers.BatchNormalization": {"epsilon", "momentum"},
        "layers.Dense": {"use_bias"},
    }.items():
        table = TORCH.get(func) or KERAS.get(func, {})
        assert keys <= set(table), f"{func}: {sorted(keys - set(table))} not recorded"


@pytest.mark.parametrize(
    ("src", "default", "expected"),
    [
        ("True", True, True),
        ("1", True, False),  # True vs 1: different
        ("True", 1, False),
        ("1", 1, True),
        ("1.0", 1, False),
        ("1e-05", 1e-05, True),
        ("1.001e-05", 1e-05, False),  # floats exactly
        ("0.1", 0.1, True),
        ('"valid"', "valid", True),
        ("'valid'", "valid", True),
        ("1", (1, 1), True),  # one value for every spatial dimension, as Keras reads it
        ("(1, 1)", (1, 1), True),
        ("(1, 2)", (1, 1), False),
        ("True", (1, 1), False),
        ("(1, 1)", 1, False),  # PyTorch's default is the int
        ("stride", 1, False),  # an expression of a block's parameters
        ("1 if stride else 2", 1, False),
        ("None", None, True),
    ],
)
def test_is_default_compares_type_and_value(src: str, default: Any, expected: bool) -> None:
    assert is_default(src, default) is expected


def test_emission_leaves_out_defaults_only() -> None:
    kept = without_defaults("nn.Conv2d", TORCH, {"stride": "1", "padding": "p", "bias": "False", "groups": "True"})
    assert kept == {"stride": None, "padding": "p", "bias": "False", "groups": "True"}
    assert without_defaults("MyConv", TORCH, {"stride": "1"}) == {"stride": "1"}  # no table: everything written


def test_generated_code_writes_no_recorded_default() -> None:
    """No call in generated/ of a class with recorded defaults writes a keyword at its default."""
    calls, found = 0, []
    for path in sorted((ROOT / "generated").glob("*_*.py")):
        table = TORCH if path.name.endswith("_torch.py") else KERAS
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in table:
                calls += 1
                defaults = table[ast.unparse(node.func)]
                for kw in node.keywords:
                    if kw.arg in defaults and is_default(ast.unparse(kw.value), defaults[kw.arg]):
                        found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    assert calls > 1000  # the zoo's convs, batch norms, linear layers, activations and pools
    assert not found, "\n".join(found[:20])
