"""Variants: `--set` overrides, `extends:` chains and `archc diff`, checked against published
figures (one spec gives every CIFAR ResNet of the paper; densenet121 edited twice is densenet169)."""

import json
import textwrap

import pytest
from click.testing import CliRunner
from conftest import CIFAR_RESNETS, ROOT, ZOO, need

from archc.api import load_module
from archc.backends import emit
from archc.cli import main
from archc.errors import SpecError, SpecWarning
from archc.lower import lower
from archc.spec.compose import apply_overrides
from archc.spec.loader import load_spec
from archc.spec.yamlsrc import load_yaml_text

in_memory = load_module  # the generated module, executed without writing a file


@pytest.mark.parametrize("depth", sorted(CIFAR_RESNETS))
def test_one_spec_gives_every_cifar_resnet(depth):
    graph = lower(load_spec(ROOT / "specs/cifar/resnet.yaml", [f"params.depth={depth}"]))
    assert graph.counts.trainable == CIFAR_RESNETS[depth]
    torch = need("torch")
    model = in_memory(graph, "torch").build_model()
    assert sum(p.numel() for p in model.parameters()) == CIFAR_RESNETS[depth]
    assert tuple(model(torch.zeros(1, 3, 32, 32)).shape) == (1, 10)
    need("keras")
    keras_model = in_memory(graph, "keras").build_model()
    assert sum(int(w.shape.num_elements()) for w in keras_model.trainable_weights) == CIFAR_RESNETS[depth]


# torchvision's four ShuffleNet V2 widths (stages_out_channels[1:]) and their num_params.
SHUFFLENET_V2 = {
    "x0_5": ((48, 96, 192, 1024), 1_366_792),
    "x1_0": ((116, 232, 464, 1024), 2_278_604),
    "x1_5": ((176, 352, 704, 1024), 3_503_624),
    "x2_0": ((244, 488, 976, 2048), 7_393_996),
}


@pytest.mark.parametrize("width", sorted(SHUFFLENET_V2))
def test_one_spec_gives_every_shufflenet_v2(width):
    channels, trainable = SHUFFLENET_V2[width]
    names = ("stage2_channels", "stage3_channels", "stage4_channels", "conv5_channels")
    graph = lower(load_spec(ROOT / "specs/shufflenet_v2.yaml", [f"params.{n}={c}" for n, c in zip(names, channels)]))
    assert graph.counts.trainable == trainable
    named = ROOT / f"specs/shufflenet_v2_{width}.yaml"
    if named.exists():  # the named spec is the family with these widths
        assert lower(load_spec(named)).counts == graph.counts


def test_extends_children_keep_their_base_counts():
    """resnet56.yaml is resnet.yaml with one param changed: the same model as --set."""
    child = lower(load_spec(ROOT / "specs/cifar/resnet56.yaml"))
    via_set = lower(load_spec(ROOT / "specs/cifar/resnet.yaml", ["params.depth=56", "name=resnet56"]))
    assert child.counts == via_set.counts
    assert [n.id for n in child.nodes] == [n.id for n in via_set.nodes]


def test_set_reaches_named_entries_inside_groups():
    """DenseNet-169 is DenseNet-121 with 32 layers in blocks 3 and 4 (torchvision)."""
    sets = ["layers.features.denseblock3.repeat=32", "layers.features.denseblock4.repeat=32"]
    graph = lower(load_spec(ROOT / "specs/densenet121.yaml", sets))
    assert (graph.counts.trainable, graph.counts.non_trainable) == ZOO["specs/densenet169.yaml"]
    assert "--set layers.features.denseblock3.repeat=32" in emit(graph, "torch")  # provenance in the header


def test_set_by_index_and_new_keys():
    graph = lower(load_spec(ROOT / "specs/resnet18.yaml", ["input[1]=160", "input[2]=160", "layers[9].fc.dense.units=7"]))
    assert graph.input_shape.as_tuple() == (3, 160, 160) and graph.output_shape.as_tuple() == (7,)


@pytest.mark.parametrize(
    "override, message",
    [
        ("params.depth=21", "--set params.depth=21"),  # the check names where depth came from
        ("params.depth", "expected path=value"),
        ("params..depth=3", "bad path"),
        ("layers.layer9.repeat=3", "no entry named 'layer9' in layers; entries: conv1, bn1, relu"),
        ("layers[40].x=1", "[40] does not exist at layers (a list of 8)"),
        ("nope.x=1", "no key 'nope' at the spec root"),
        ("layers.layer2.repeat=2.5", "layers.4.layer2.repeat: Input should be a valid integer, got 2.5"),
        ("layers.layer2.repeats=2", "unknown key 'repeats'; did you mean 'repeat'?"),
        ("params.depth=[1, 2", "invalid YAML"),
    ],
)
def test_set_errors_name_the_override(override, message):
    with pytest.raises(SpecError) as info:
        lower(load_spec(ROOT / "specs/cifar/resnet.yaml", [override]))
    assert message in str(info.value)
    if "depth=21" in override:  # located at the failing check, naming the override
        assert str(info.value.where).endswith("specs/cifar/resnet.yaml:15:5")
    else:
        assert str(info.value).startswith(f"--set {override}")


def _paths(value, at=()):
    """Every path in plain data, the root's included."""
    yield at
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*at, key))


SETS = [
    "layers[2]={x: {dropout: {rate: 0.1}}}",  # c is now x
    "layers.x.dropout.rate=0.2",
    "layers[3]={b: {dropout: {rate: 0.5}}}",  # two entries named b: the first is the one named
    "layers.b.conv.filters=8",
    "layers[1]={y: {conv: {filters: 16, kernel: 1}}}",  # now only the second
    "layers.b.dropout.rate=0.6",
    "layers[0].extra=1",  # a is no longer a `name: layer` entry
]


def test_overrides_find_entries_by_the_names_earlier_overrides_left():
    text = "layers:\n  - a: relu\n  - b: {conv: {filters: 4, kernel: 3}}\n  - c: relu\n  - d: relu\n"
    data, smap = load_yaml_text(text, "s.yaml")
    data = apply_overrides(data, smap, SETS)
    assert data["layers"] == [
        {"a": "relu", "extra": 1}, {"y": {"conv": {"filters": 16, "kernel": 1}}}, {"x": {"dropout": {"rate": 0.2}}},
        {"b": {"dropout": {"rate": 0.6}}},
    ]  # fmt: skip
    for missing, entries in [("c", "a, b, x, d"), ("a", "y, x, b")]:
        data, smap = load_yaml_text(text, "s.yaml")
        upto = SETS[:2] if missing == "c" else SETS
        with pytest.raises(SpecError, match=rf"no entry named '{missing}' in layers; entries: {entries}$"):
            apply_overrides(data, smap, [*upto, f"layers.{missing}.rate=1"])


def test_an_override_brings_its_locations_and_drops_those_of_what_it_replaces():
    text = "layers:\n  - a: relu\n  - b: {conv: {filters: 4, kernel: 3}}\n  - c: relu\n  - d: relu\n"
    data, smap = load_yaml_text(text, "s.yaml")
    data = apply_overrides(data, smap, SETS)
    assert set(smap.marks) == set(_paths(data))
    assert set(smap.key_marks) <= set(_paths(data))
    assert str(smap.locate(("layers", 3, "b", "dropout", "rate"))) == "--set layers.b.dropout.rate=0.6"
    assert str(smap.locate(("layers", 3, "b", "dropout"))) == "--set layers[3]={b: {dropout: {rate: 0.5}}}"
    assert str(smap.locate(("layers", 0, "a"))) == "s.yaml:2:8"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


BASE = """\
    archc: 1
    name: base
    input: [3, 16, 16]
    params: {width: 8, num_classes: 10, drop: 0.5}
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    blocks:
      unit:
        params: {filters: int}
        layers:
          - conv: {conv: {filters: filters, kernel: 3, padding: 1}}
          - bn: batchnorm
          - relu: relu
    layers:
      - stem: {block: unit, with: {filters: width}}
      - pool: global_avgpool
      - fc: {dense: {units: num_classes}}
    """


def test_extends_merge_rules(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "variants/child.yaml", """\
        archc: 1
        extends: ../base.yaml
        name: child
        params: {width: 16, drop: null}
        defaults: {conv: {bias: true}}
        layers: {$append: [{probs: softmax}]}
        """)
    spec = load_spec(child)
    assert dict(spec.model.params) == {"width": 16, "num_classes": 10}  # merged; null deleted drop
    assert spec.model.defaults.conv.bias is True and spec.model.defaults.batchnorm.eps == 1e-5
    assert [next(iter(e)) for e in spec.model.layers] == ["stem", "pool", "fc", "probs"]
    graph = lower(spec)
    assert graph.counts.trainable == 3 * 16 * 9 + 16 + 2 * 16 + 16 * 10 + 10
    replaced = write(tmp_path, "replaced.yaml", """\
        archc: 1
        extends: base.yaml
        name: replaced
        params: {$replace: {width: 4, num_classes: 3}}
        """)
    assert dict(load_spec(replaced).model.params) == {"width": 4, "num_classes": 3}


def test_extends_renames_an_entry_keeping_its_body_and_place(tmp_path):
    """`stem: {$rename: trunk, ...}`: the entry keeps its place and body (merged with the rest of
    its patch); later patches and reads use the new name. The zoo's use: deeplabv3_mobilenet_v3_large
    is mobilenet_v3_large.yaml's `features` as `backbone` (test_torchvision proves the keys)."""
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", """\
        archc: 1
        extends: base.yaml
        name: child
        layers:
          stem: {$rename: trunk, with: {filters: 4}}
          extra: {$after: trunk, conv: {filters: 4, kernel: 1}}
        """)
    spec = load_spec(child)
    assert [next(iter(e)) for e in spec.model.layers] == ["trunk", "extra", "pool", "fc"]
    graph = lower(spec)
    assert graph.counts.trainable == 3 * 4 * 9 + 2 * 4 + 4 * 4 + 4 * 10 + 10
    assert {n.id.split(".")[0] for n in graph.nodes} == {"trunk", "extra", "pool", "fc"}
    assert spec.source.locate(("layers", 0)).file.endswith("base.yaml")  # the body keeps its location in the base
    dl = load_spec(ROOT / "specs/segmentation/deeplabv3_mobilenet_v3_large.yaml")
    mb = load_spec(ROOT / "specs/mobilenet_v3_large.yaml", overrides=["params.dilated=true"])
    assert dl.model.layers[0]["backbone"] == mb.model.layers[0]["features"]


def test_extends_errors_are_located_in_the_right_file(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    child = write(tmp_path, "child.yaml", "archc: 1\nextends: base.yaml\nname: child\nparams: {width: 0.5}\n")
    with pytest.raises(SpecError) as info:
        lower(load_spec(child))
    # located where the base uses the value, naming the file that supplied it
    assert str(info.value.where).startswith(f"{tmp_path / 'base.yaml'}:14:")
    assert "must be an integer, got 0.5" in str(info.value)
    assert str(info.value).endswith(f"(width = 0.5 from {child}:4:17)")
    bad_base = write(tmp_path, "bad.yaml", BASE.replace("kernel: 3", "kernel: 3, strid: 2"))
    child = write(tmp_path, "child2.yaml", "archc: 1\nextends: bad.yaml\nname: child2\n")
    with pytest.raises(SpecError) as info:
        load_spec(child)
    assert str(info.value.where).startswith(f"{bad_base}:10:") and "did you mean 'stride'" in str(info.value)


def test_extends_cycles_and_missing_files(tmp_path):
    write(tmp_path, "a.yaml", "archc: 1\nextends: b.yaml\nname: a\n")
    write(tmp_path, "b.yaml", "archc: 1\nextends: a.yaml\nname: b\n")
    with pytest.raises(SpecError, match=r"extends cycle: a.yaml -> b.yaml -> a.yaml"):
        load_spec(tmp_path / "a.yaml")
    write(tmp_path, "c.yaml", "archc: 1\nextends: missing.yaml\nname: c\n")
    with pytest.raises(SpecError, match="not found") as info:
        load_spec(tmp_path / "c.yaml")
    assert str(info.value.where) == f"{tmp_path / 'c.yaml'}:2:10"


DOCUMENTED = BASE.replace(", drop: 0.5", "").replace("name: base\n", "name: base\n    doc: DOC\n")


def test_extends_that_changes_params_does_not_keep_the_base_doc_silently(tmp_path):
    """A variant whose params differ and that writes no `doc:` would carry the base's description
    into its docstring: check warns (once, located at the changed param), and the docstring says
    what differs. Its own doc, or params the base already had, need neither."""
    write(tmp_path, "base.yaml", DOCUMENTED.replace("DOC", "A small net, 8 filters wide."))
    write(tmp_path, "wide.yaml", "archc: 1\nextends: base.yaml\nname: wide\nparams: {width: 32, num_classes: 10}\n")
    checked = CliRunner().invoke(main, ["check", str(tmp_path / "wide.yaml")])
    assert checked.exit_code == 0 and checked.stdout.startswith(f"{tmp_path / 'wide.yaml'}: ok")
    assert checked.stderr.count("\n") == 1 and checked.stderr.startswith(f"{tmp_path / 'wide.yaml'}:4:10: warning: ")
    assert "params of base.yaml (width)" in checked.stderr and "add a `doc:`" in checked.stderr
    module = CliRunner().invoke(main, ["build", str(tmp_path / "wide.yaml"), "-b", "torch", "-o", "-"]).stdout
    docstring = " ".join(module.split('"""')[1].split("\n\n")[0].split())
    assert docstring == "A small net, 8 filters wide. (wide.yaml extends base.yaml with width=32 instead of 8: the text above describes base.yaml.)"
    # a spec over the variant that writes nothing new inherits the note and the warning, at the variant
    write(tmp_path, "wider.yaml", "archc: 1\nextends: wide.yaml\nname: wider\n")
    again = CliRunner().invoke(main, ["check", str(tmp_path / "wider.yaml")])
    assert again.stderr.startswith(f"{tmp_path / 'wide.yaml'}:4:10: warning: ")
    with pytest.warns(SpecWarning, match="params of base.yaml"):
        assert "with width=32 instead of 8" in load_spec(tmp_path / "wider.yaml").model.doc
    for name, text in (
        ("described.yaml", "archc: 1\nextends: wide.yaml\nname: described\ndoc: A small net, 32 filters wide.\n"),
        ("same.yaml", "archc: 1\nextends: base.yaml\nname: same\nparams: {width: 8}\n"),
    ):
        write(tmp_path, name, text)
        result = CliRunner().invoke(main, ["check", str(tmp_path / name)])
        assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert load_spec(tmp_path / "described.yaml").model.doc == "A small net, 32 filters wide."
    assert load_spec(tmp_path / "same.yaml").model.doc == "A small net, 8 filters wide."


def test_a_noted_doc_stays_within_the_docstring_limit(tmp_path):
    long_doc = "A net described at length, " * 74  # 1,998 characters, the base at the limit
    write(tmp_path, "base.yaml", DOCUMENTED.replace("DOC", long_doc.strip()))
    write(tmp_path, "v.yaml", "archc: 1\nextends: base.yaml\nname: v\nparams: {width: 16}\n")
    with pytest.warns(SpecWarning, match="add a `doc:`"):
        doc = load_spec(tmp_path / "v.yaml").model.doc
    assert len(doc) <= 2000 and doc.endswith("(v.yaml extends base.yaml with width=16 instead of 8: the text above describes base.yaml.)")
    target = tmp_path / "v_torch.py"
    for _ in range(2):  # the second build recognises the first one's header: the docstring fits it
        result = CliRunner().invoke(main, ["build", str(tmp_path / "v.yaml"), "-b", "torch", "-o", str(target)])
        assert result.exit_code == 0, result.output


def run(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_diff_two_specs_with_deltas():
    code, out = run("diff", "specs/resnet50.yaml", "specs/resnext50_32x4d.yaml")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    total = rows["total"].split()
    assert total[5] == f"-{(25_557_032 + 53_120) - (25_028_904 + 68_224):,}"
    code, out = run("diff", "specs/resnet50.yaml", "specs/resnext50_32x4d.yaml", "--json")
    data = json.loads(out)
    assert data["delta"]["trainable"] == 25_028_904 - 25_557_032
    assert data["a"]["macs"] == 4_089_184_256  # torchvision: resnet50 4.09 GFLOPS (MACs)
    assert data["b"]["macs"] == 4_230_479_872  # torchvision: resnext50_32x4d 4.23
    layer1 = next(r for r in data["rows"] if r["name"] == "layer1")
    assert layer1["a"]["output_shape"] == layer1["b"]["output_shape"] == [256, 56, 56]


def test_diff_one_spec_two_sets_of_overrides():
    code, out = run("diff", "specs/cifar/resnet.yaml", "--set-a", "params.depth=20", "--set-b", "params.depth=110", "--json")
    assert code == 0
    data = json.loads(out)
    assert (data["a"]["trainable"], data["b"]["trainable"]) == (CIFAR_RESNETS[20], CIFAR_RESNETS[110])
    assert data["b"]["label"] == "specs/cifar/resnet.yaml --set params.depth=110"
    code, out = run("diff", "specs/cifar/resnet.yaml", "--set-b", "params.depth=23")
    assert code == 2 and "depth must be 6n+2" in out and "--set params.depth=23" in out


PREACT18 = """\
    archc: 1
    name: preact_resnet18
    input: [3, 32, 32]
    params: {num_classes: 10}
    defaults: {conv: {bias: false}, batchnorm: {eps: 1.0e-5, momentum: 0.1}}
    use: [resnet]
    layers:
      - conv1: {conv: {filters: 64, kernel: 3, padding: 1}}
      - layer1: {stage: preact_basic, repeat: 2, with: {planes: 64}}
      - layer2: {stage: preact_basic, repeat: 2, with: {planes: 128}, first: {stride: 2}}
      - layer3: {stage: preact_basic, repeat: 2, with: {planes: 256}, first: {stride: 2}}
      - layer4: {stage: preact_basic, repeat: 2, with: {planes: 512}, first: {stride: 2}}
      - avgpool: global_avgpool
      - fc: {dense: {units: num_classes}}
    """


def test_preact_library_block(tmp_path):
    """PreAct ResNet-18 for CIFAR as in the widely used kuangliu/pytorch-cifar layout: 11,171,146
    parameters (by hand: 1,728 stem + 147,968 + 525,184 + 2,098,944 + 8,392,192 stages + 5,130 fc)."""
    graph = lower(load_spec(write(tmp_path, "preact18.yaml", PREACT18)))
    assert graph.counts.trainable == 11_171_146
    ids = {n.id for n in graph.nodes}
    assert "layer2.0.shortcut" in ids and "layer2.1.shortcut" not in ids and "layer1.0.shortcut" not in ids
    shortcut = next(n for n in graph.nodes if n.id == "layer2.0.shortcut")
    assert shortcut.inputs == ("layer2.0.relu1",)  # reads the pre-activated input


def test_shortcut_rules_are_checked(tmp_path):
    text = PREACT18.replace("use: [resnet]", textwrap.dedent("""\
        blocks:
          odd:
            params: {planes: int, stride: 1, flag: true}
            connectivity: skip
            shortcut:
              - {kind: projection, when: flag, name: a}
              - {kind: projection, when: stride > 1, name: b}
            layers:
              - conv1: {conv: {filters: planes, kernel: 3, stride: stride, padding: 1}}
        """).replace("\n", "\n    ")).replace("preact_basic", "odd")
    with pytest.raises(SpecError, match="shortcuts 'a' and 'b' both apply to this instance"):
        lower(load_spec(write(tmp_path, "odd.yaml", text)))
    bad_input = text.replace("when: flag, name: a", "when: flag, name: a, input: conv9")
    with pytest.raises(SpecError, match="shortcut input 'conv9' is not a layer"):
        lower(load_spec(write(tmp_path, "odd2.yaml", bad_input)))
    unknown = text.replace("when: flag, name: a", "when: flagz, name: a")
    with pytest.raises(SpecError, match="unknown: flagz"):
        lower(load_spec(write(tmp_path, "odd3.yaml", unknown)))


def test_always_shortcut_stands_alone_and_unknown_arguments_are_located(tmp_path):
    text = PREACT18.replace("use: [resnet]", textwrap.dedent("""\
        blocks:
          two:
            params: {planes: int, stride: 1}
            connectivity: skip
            shortcut:
              - {kind: projection, name: a}
              - {kind: option_a, when: always, name: b}
            layers:
              - conv1: {conv: {filters: planes, kernel: 3, stride: stride, padding: 1}}
        """).replace("\n", "\n    ")).replace("preact_basic", "two")
    with pytest.raises(SpecError, match="`when: always` is used on every instance, so it must be the only one"):
        load_spec(write(tmp_path, "two.yaml", text))
    with pytest.raises(SpecError) as info:
        lower(load_spec(ROOT / "specs/resnet18.yaml", ["layers.layer2.first.strid=2"]))
    assert str(info.value) == "--set layers.layer2.first.strid=2: block 'basic' has no parameter 'strid'; its parameters: planes, stride"

