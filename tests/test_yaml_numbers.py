"""Numbers in YAML are read as YAML 1.2 and a person read them: `1e-5` is a float (PyYAML's
YAML 1.1 resolver reads it as a string), while quoted or `!!str` text stays text."""

import pytest
import yaml

from archc.backends import emit
from archc.lower import lower
from archc.spec.loader import load_spec_text
from archc.spec.yamlsrc import load_yaml_text

SPEC = """\
archc: 1
name: eps
input: [3, 8, 8]
defaults:
  batchnorm: {{eps: {eps}, momentum: 0.1}}
layers:
  - conv1: {{conv: {{filters: 4, kernel: 3, bias: false}}}}
  - bn1: batchnorm
"""


@pytest.mark.parametrize("text", ["1e-5", "1E5", "-2e3", "+1e5", "1e+5", "1E-05", "1.0e5", "1.e5", ".5e3", "-.5E-3", "1.0e-5"])
def test_exponent_forms_are_floats(text) -> None:
    assert load_yaml_text(f"a: {text}\nb: [{text}]\nc: {{d: {text}}}\n", "f.yaml")[0] == {
        "a": float(text), "b": [float(text)], "c": {"d": float(text)},
    }  # fmt: skip


@pytest.mark.parametrize(
    "text, value",
    [('"1e-5"', "1e-5"), ("'1E5'", "1E5"), ("!!str 1e-5", "1e-5"), ("1e", "1e"), ("e5", "e5"), ("1e5x", "1e5x"),
     ("1_0e3", "1_0e3"), ("12", 12), ("0x1e5", 0x1E5), ("1.5", 1.5)],
)  # fmt: skip
def test_other_scalars_keep_their_type(text, value) -> None:
    loaded = load_yaml_text(f"a: {text}\n", "f.yaml")[0]["a"]
    assert loaded == value and type(loaded) is type(value)


def test_defaults_eps_written_with_an_exponent() -> None:
    """docs/spec.md writes `eps: 1.0e-5`; `1e-5` is the same number and the same module."""
    short, long = (lower(load_spec_text(SPEC.format(eps=eps), "eps.yaml")) for eps in ("1e-5", "1.0e-5"))
    assert [n.op for n in short.nodes] == [n.op for n in long.nodes]
    assert [n.op.eps for n in short.nodes if n.op.kind == "batchnorm"] == [1e-5]
    same = [[line for line in emit(g, "torch").splitlines() if not line.startswith("spec sha256:")] for g in (short, long)]
    assert same[0] == same[1]  # all but the hash of the spec's text


def test_pyyaml_itself_is_unchanged() -> None:
    load_yaml_text("a: 1e-5\n", "f.yaml")
    assert yaml.safe_load("a: 1e-5") == {"a": "1e-5"}  # archc's resolver is its own subclass's
