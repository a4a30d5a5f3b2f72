"""`extends:` patching an inherited list of `name: layer` entries by name: merge into an
entry, remove one, insert before or after a named one; errors located in the file that
wrote the patch, with did-you-mean."""

import random
import textwrap

import pytest
from conftest import ROOT

from archc.errors import SpecError
from archc.lower import lower
from archc.spec.compose import load_chain
from archc.spec.loader import load_spec


def variant(tmp_path, text, name="variant.yaml"):
    """A spec in tmp_path extending the zoo (base paths are relative to this file)."""
    path = tmp_path / name
    specs = ROOT / "specs"
    path.write_text(textwrap.dedent(text).replace("SPECS", str(specs)))
    return path


def names(spec, key="layers"):
    return [next(iter(e)) for e in getattr(spec.model, key)]


def test_resnext101_from_resnext50_in_one_line(tmp_path):
    """torchvision's ResNeXt-101 32x8d: ResNeXt-50 with 8 channels per group and 23 blocks in layer3."""
    path = variant(tmp_path, """\
        archc: 1
        extends: SPECS/resnext50_32x4d.yaml
        name: resnext101_32x8d
        doc: ResNeXt-101 32x8d, as torchvision.models.resnext101_32x8d.
        params: {width_per_group: 8}
        layers: {layer3: {repeat: 23}}
        """)
    graph = lower(load_spec(path))
    assert graph.counts.trainable == 88_791_336  # torchvision.models.resnext101_32x8d
    stage = next(item for item in graph.body if item.name == "layer3")
    assert len(stage.instances) == 23
    base = load_spec(ROOT / "specs/resnext50_32x4d.yaml")
    # the rest of the entry and every other entry are the base's, in the base's order
    assert names(load_spec(path)) == names(base)
    assert load_spec(path).model.layers[6]["layer3"].first == base.model.layers[6]["layer3"].first


def test_remove_insert_move_and_nested_groups(tmp_path):
    path = variant(tmp_path, """\
        archc: 1
        extends: SPECS/resnet18.yaml
        name: variant
        layers:
          maxpool: null
          drop: {$before: fc, dropout: {rate: 0.2}}
          relu: {$after: layer1}
          layer4: {with: {planes: 256}}
        """)
    spec = load_spec(path)
    assert names(spec) == ["conv1", "bn1", "layer1", "relu", "layer2", "layer3", "layer4", "avgpool", "drop", "fc"]
    assert spec.model.layers[8]["drop"].dropout.rate == 0.2
    layer4 = spec.model.layers[6]["layer4"]
    assert dict(layer4.with_) == {"planes": 256} and layer4.repeat == 2 and dict(layer4.first) == {"stride": 2}
    # a group (torchvision's `features`) is patched by name too, recursively
    dense = variant(tmp_path, """\
        archc: 1
        extends: SPECS/densenet121.yaml
        name: densenet_patched
        layers:
          features: {denseblock3: {repeat: 32}, denseblock4: {repeat: 32}}
        """, "dense.yaml")
    assert lower(load_spec(dense)).counts.trainable == 14_149_480  # densenet169


def test_positions_follow_the_patch_order(tmp_path):
    """Entries are placed in the order the patch gives them, so a new entry can anchor the next."""
    path = variant(tmp_path, """\
        archc: 1
        extends: SPECS/cifar/resnet20.yaml
        name: variant
        layers:
          pre: {$after: relu, batchnorm: {}}
          pre_act: {$after: pre, act: {}}
        """)
    assert names(load_spec(path))[:5] == ["conv1", "bn1", "relu", "pre", "pre_act"]


@pytest.mark.parametrize(
    "patch, where, message",
    [
        ("layer3: {repeats: 8}", "5:12", "layers.6.layer3.repeats: unknown key 'repeats'; did you mean 'repeat'?"),
        ("layr3: {repeat: 8}", "5:3", "no entry named 'layr3' in layers; to add it, place it with $before: NAME "
         "or $after: NAME; did you mean 'layer3'?"),
        ("layr3: null", "5:3", "cannot remove 'layr3': no entry named 'layr3' in layers; did you mean 'layer3'?"),
        ("drop: {$after: fcc, dropout: {rate: 0.1}}", "5:18", "$after: no entry named 'fcc' in layers; did you mean 'fc'?"),
        ("drop: {$after: fc, $before: fc, dropout: {rate: 0.1}}", "5:3", "give $before or $after, not both"),
    ],
)  # fmt: skip
def test_patch_errors_are_located(tmp_path, patch, where, message):
    path = variant(tmp_path, f"archc: 1\nextends: SPECS/resnet50.yaml\nname: variant\nlayers:\n  {patch}\n")
    with pytest.raises(SpecError) as info:
        lower(load_spec(path))
    assert str(info.value) == f"{path}:{where}: {message}"


def test_only_named_entries_are_patched(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "archc: 1\nname: base\ninput: [3, 8, 8]\nuse: [resnet, densenet]\nlayers:\n  - fc: {dense: {units: 2}}\n"
    )
    path = tmp_path / "child.yaml"
    path.write_text("archc: 1\nextends: base.yaml\nname: child\nuse: {resnet: null}\n")
    with pytest.raises(SpecError, match=r"child.yaml:4:6: use: only a list of `name: layer` entries can be patched by name"):
        load_spec(path)


def test_a_repeated_name_is_not_patched_by_name(tmp_path):
    """A model-level activation may be listed twice (the same module called again); which one a
    patch meant would be a guess."""
    (tmp_path / "base.yaml").write_text(
        "archc: 1\nname: base\ninput: [3, 8, 8]\nlayers:\n  - relu: act\n  - c: {conv: {filters: 4, kernel: 1}}\n"
        "  - relu: act\n  - fc: global_avgpool\n"
    )
    path = tmp_path / "child.yaml"
    path.write_text("archc: 1\nextends: base.yaml\nname: child\nlayers:\n  relu: null\n")
    with pytest.raises(SpecError, match=r"child.yaml:5:3: layers has 2 entries named 'relu'; a list is patched by name only where"):
        load_spec(path)
    path.write_text("archc: 1\nextends: base.yaml\nname: child\nlayers:\n  c: {conv: {filters: 8}}\n")
    assert load_spec(path).model.layers[1]["c"].conv.filters == 8  # the unique ones still can be
    path.write_text("archc: 1\nextends: base.yaml\nname: child\nlayers:\n  d: {$after: relu, dropout: {rate: 0.1}}\n")
    with pytest.raises(SpecError, match=r"child.yaml:5:15: \$after: layers has 2 entries named 'relu'; place an entry next to one"):
        load_spec(path)  # nor is an entry placed next to one of them


def test_a_long_patch_does_what_each_step_does_in_turn(tmp_path):
    """Removals, moves and new entries on a 600-entry list, against the same steps applied one
    by one to a Python list; every entry keeps the location of the file that wrote it."""
    rng = random.Random(20)
    names = [f"e{k}" for k in range(600)]
    (tmp_path / "base.yaml").write_text("archc: 1\nname: b\ninput: [3, 8, 8]\nlayers:\n" + "".join(f"  - {n}: relu\n" for n in names))
    expected, patch, patched = list(names), [], set()  # patch: its lines, in order; it names each entry once
    for step in range(900):
        key = f"n{step}" if step % 3 == 0 else rng.choice([n for n in expected if n.startswith("e") and n not in patched])
        patched.add(key)
        if step % 3 == 1:
            expected.remove(key)
            patch.append(f"  {key}:")
            continue
        if key in expected:
            expected.remove(key)
        anchor, place = rng.choice(expected), rng.choice(["$before", "$after"])
        expected.insert(expected.index(anchor) + (place == "$after"), key)
        patch.append(f"  {key}:")  # new entries are relu layers; a moved one is moved only
        patch[-1] += f" {{{place}: {anchor}" + (", relu: {}}" if key.startswith("n") else "}")
    child = "".join(f"{line} null\n" if line.endswith(":") else f"{line}\n" for line in patch)
    (tmp_path / "child.yaml").write_text("archc: 1\nextends: base.yaml\nname: c\nlayers:\n" + child)
    data, smap, _ = load_chain(tmp_path / "child.yaml")
    assert [next(iter(e)) for e in data["layers"]] == expected
    lines = {line.split(":")[0].strip(): i for i, line in enumerate(patch)}
    for j, name in enumerate(expected):
        where = smap.locate(("layers", j))
        if name.startswith("n"):  # written in the patch
            assert (where.file, where.line) == (str(tmp_path / "child.yaml"), 5 + lines[name])
        else:
            assert (where.file, where.line) == (str(tmp_path / "base.yaml"), 5 + names.index(name))
