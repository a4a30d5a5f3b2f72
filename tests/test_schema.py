"""archc schema: the committed docs/archc.schema.json is current, every zoo spec validates
against it (jsonschema), it rejects the mistakes an editor should flag, and the zoo specs
point editors at it."""

import copy
import json

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from conftest import ROOT, ZOO

from archc.cli import main
from archc.schema import schema_text

COMMITTED = ROOT / "docs" / "archc.schema.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(COMMITTED.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_is_current():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.output == schema_text()
    assert COMMITTED.read_text() == result.output, "docs/archc.schema.json is stale; run `archc schema -o docs/archc.schema.json`"


@pytest.mark.parametrize("spec", sorted(ZOO))
def test_zoo_spec_validates(spec, validator):
    path = ROOT / spec
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors, errors
    depth = spec.count("/") - 1
    assert path.read_text().splitlines()[0] == f"# yaml-language-server: $schema={'../' * depth}../docs/archc.schema.json"


RESNET18 = yaml.safe_load((ROOT / "specs/resnet18.yaml").read_text())


def edited(edit):
    data = copy.deepcopy(RESNET18)
    edit(data)
    return data


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.pop("layers"),  # required without extends
        lambda d: d.update(layerz=[]),  # typo at the top
        lambda d: d["layers"][0]["conv1"]["conv"].pop("kernel"),  # a required argument
        lambda d: d["layers"][0]["conv1"]["conv"].update(kernal=3),  # typo in a layer
        lambda d: d["layers"][0].update(conv1b={"conv": {"filters": 8, "kernel": 1}}),  # two layers in one entry
        lambda d: d["layers"].append({"head": "softmaxx"}),  # unknown shorthand
        lambda d: d["layers"].append({"act2": {"act": "swish"}}),  # unknown activation
        lambda d: d["layers"].append({"2fc": {"dense": {"units": 10}}}),  # a name must be an identifier
        lambda d: d["layers"][4]["layer1"].update(connectivity="residual"),
        lambda d: d.update(input=[3]),  # (C, L), (C, H, W) or (C, D, H, W)
        lambda d: d.update(input=[3, 8, 8, 8, 8]),
        lambda d: d.update(params=None),  # null deletes only in a spec that extends another
    ],
)
def test_schema_rejects(edit, validator):
    assert list(validator.iter_errors(edited(edit)))


def test_schema_accepts_the_language_forms(validator):
    data = edited(lambda d: d["layers"].extend([
        {"act2": {"act": "leaky_relu"}},
        {"act3": {"act": {"fn": "leaky_relu", "negative_slope": "0.1 * 2"}}},
        {"head": [{"drop": {"dropout": {"rate": 0.2}}}, {"sm": "softmax"}]},
    ]))  # fmt: skip
    assert not list(validator.iter_errors(data))


def test_partial_spec_with_extends(validator):
    ok = {"archc": 1, "extends": "resnet50.yaml", "params": {"groups": 32}, "checks": None,
          "layers": {"$append": [{"extra": "relu"}]}, "use": {"$replace": ["resnet"]}}  # fmt: skip
    assert not list(validator.iter_errors(ok))
    assert list(validator.iter_errors({**ok, "layerz": []}))
    assert list(validator.iter_errors({**ok, "layers": {"$append": [{"extra": "relux"}]}}))
    patch = {"layer3": {"repeat": 23}, "maxpool": None, "drop": {"$before": "fc", "dropout": {"rate": 0.2}}}
    assert not list(validator.iter_errors({**ok, "layers": patch}))
    assert list(validator.iter_errors({**ok, "layers": {"layer3": 23}}))  # an entry patch is a mapping, a list or null
    renamed = {"features": {"$rename": "backbone"}, "classifier": [{"block": "aspp"}, "relu"]}  # a list replaces
    assert not list(validator.iter_errors({**ok, "layers": renamed, "params": {"dropout": None}}))  # null deletes a param
    assert list(validator.iter_errors({"archc": 1, "params": {"groups": 32}}))  # no extends: incomplete
