"""`archc convert SPEC SRC DST`: PyTorch state_dict -> Keras weights and back, the round
trip, the output check before writing, and checkpoints that do not fit the spec (exit 2
naming the first mismatching tensor)."""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, need

from archc import api
from archc.cli import main

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")

SPEC = ROOT / "specs/cifar/resnet20.yaml"
# Grouped conv, a flatten of a 4x4 map and a dense layer: every layout conversion, small.
TINY = """\
archc: 1
name: tiny
input: [3, 8, 8]
params: {width: 8}
defaults:
  conv: {bias: true}
  batchnorm: {eps: 1.0e-5, momentum: 0.1}
  activation: relu
layers:
  - conv1: {conv: {filters: width, kernel: 3, padding: 1}}
  - bn: batchnorm
  - relu: act
  - conv2: {conv: {filters: 12, kernel: 3, stride: 2, padding: 1, groups: 4}}
  - flatten: flatten
  - fc: {dense: {units: 5}}
"""


def convert(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def random_torch(spec, seed=0, overrides=()):
    graph = api.to_ir(spec, overrides)
    model = api.load_module(graph, "torch").build_model()
    verify.randomize(model, graph, seed)
    return graph, model


class Payload:
    """Unpickling this runs code (touches a file), as a hostile checkpoint would."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_torch_to_keras_to_torch(tmp_path):
    """A resnet20 checkpoint becomes Keras weights that compute what torch computes, and
    converting those back gives every tensor exactly."""
    graph, original = random_torch(SPEC)
    src, mid, back = tmp_path / "r20.pth", tmp_path / "r20.weights.h5", tmp_path / "back.pt"
    torch.save(original.state_dict(), src)

    result = convert(SPEC, src, mid)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {mid} (resnet20, torch -> keras, ")
    k_model = api.load_module(graph, "keras").build_model()
    k_model.load_weights(str(mid))
    x = np.random.default_rng(3).standard_normal((2, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        want = original.eval()(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(k_model(x.transpose(0, 2, 3, 1), training=False))
    assert np.abs(want - got).max() <= 1e-4 * max(1.0, np.abs(want).max())

    result = convert(SPEC, mid, back)
    assert result.exit_code == 0, result.output
    assert "keras -> torch" in result.output
    restored = torch.load(back, weights_only=True)
    before = original.state_dict()
    assert restored.keys() == before.keys()
    for key, value in before.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(restored[key], value), key
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_overrides_and_layouts(tiny, tmp_path):
    """--set applies as elsewhere; a grouped conv and a flatten into a dense layer convert."""
    graph, model = random_torch(tiny, overrides=["params.width=16"])
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")  # a training script's wrapper
    result = convert(tiny, tmp_path / "ckpt.pth", tmp_path / "t.weights.h5", "--set", "params.width=16", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["command"] == "convert" and report["direction"] == "torch->keras"
    assert report["max_abs"] <= 1e-4 * max(1.0, report["magnitude"])
    # without the --set, the checkpoint does not fit: the first tensor that differs is named
    result = convert(tiny, tmp_path / "ckpt.pth", tmp_path / "u.weights.h5")
    assert result.exit_code == 2
    assert "tensor conv1.weight has shape (16, 3, 3, 3) but the spec's model needs (8, 3, 3, 3)" in result.output
    assert not (tmp_path / "u.weights.h5").exists()


def test_torch_checkpoint_mismatches(tiny, tmp_path):
    _, model = random_torch(tiny)
    state = model.state_dict()
    cases = {
        "missing": ({k: v for k, v in state.items() if k != "bn.running_var"}, "missing tensor bn.running_var (8,)"),
        "unexpected": ({**state, "head.weight": torch.zeros(2, 2)}, "unexpected tensor head.weight (2, 2)"),
        "shape": ({**state, "fc.weight": torch.zeros(7, 192)}, "tensor fc.weight has shape (7, 192) but the spec's model needs (5, 192)"),
    }  # fmt: skip
    for name, (bad, message) in cases.items():
        src = tmp_path / f"{name}.pth"
        torch.save(bad, src)
        result = convert(tiny, src, tmp_path / f"{name}.weights.h5")
        assert result.exit_code == 2, (name, result.output)
        assert f"archc: error: {src}: {message}" in result.output, (name, result.output)
        assert "Traceback" not in result.output
    # a checkpoint without BatchNorm's step counter (older PyTorch) is fine
    torch.save({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, tmp_path / "old.pth")
    assert convert(tiny, tmp_path / "old.pth", tmp_path / "old.weights.h5").exit_code == 0


def test_unsafe_or_foreign_files(tiny, tmp_path):
    """weights_only=True: a pickled object is refused, not run; other data is not a state_dict."""
    torch.save({"optimizer": Payload(tmp_path / "ran")}, tmp_path / "pickled.pth")
    result = convert(tiny, tmp_path / "pickled.pth", tmp_path / "a.weights.h5")
    assert result.exit_code == 2 and "not a PyTorch state_dict that can be loaded safely" in result.output
    assert not (tmp_path / "ran").exists()
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    result = convert(tiny, tmp_path / "list.pth", tmp_path / "b.weights.h5")
    assert result.exit_code == 2 and "expected a state_dict (a mapping of names to tensors), found list" in result.output
    (tmp_path / "text.weights.h5").write_text("not hdf5")
    result = convert(tiny, tmp_path / "text.weights.h5", tmp_path / "c.pth")
    assert result.exit_code == 2 and "not a Keras weights file (HDF5)" in result.output


def test_keras_file_mismatch(tmp_path):
    """A Keras file from another spec: Keras groups variables by class and position, and the
    message says which layer of the spec's model the tensor would have filled."""
    resnet56 = api.build(ROOT / "specs/cifar/resnet56.yaml", "keras")
    resnet56.save_weights(str(tmp_path / "r56.weights.h5"))
    result = convert(SPEC, tmp_path / "r56.weights.h5", tmp_path / "r20.pth")
    assert result.exit_code == 2
    # resnet20's 8th conv opens stage 2 (16 -> 32 channels); resnet56's is still in stage 1
    assert (
        "r56.weights.h5: tensor layers/conv2d_7/vars/0 (layer2_0_conv1 kernel) has shape (3, 3, 16, 16) "
        "but the spec's model needs (3, 3, 16, 32)"
    ) in result.output
    assert not (tmp_path / "r20.pth").exists()


def test_names_and_existing_files(tiny, tmp_path):
    assert "both torch files" in convert(tiny, tmp_path / "a.pth", tmp_path / "b.pt").output
    result = convert(tiny, tmp_path / "a.pth", tmp_path / "b.h5")
    assert result.exit_code == 2 and "Keras weights files end in .weights.h5" in result.output
    result = convert(tiny, tmp_path / "a.onnx", tmp_path / "b.weights.h5")
    assert result.exit_code == 2 and "cannot tell the framework" in result.output
    result = convert(tiny, tmp_path / "absent.pth", tmp_path / "b.weights.h5")
    assert result.exit_code == 2 and "absent.pth: file not found" in result.output
    _, model = random_torch(tiny)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    (tmp_path / "m.weights.h5").write_text("keep me")
    result = convert(tiny, tmp_path / "m.pth", tmp_path / "m.weights.h5")
    assert result.exit_code == 2 and "exists; pass --force" in result.output
    assert (tmp_path / "m.weights.h5").read_text() == "keep me"
    assert convert(tiny, tmp_path / "m.pth", tmp_path / "m.weights.h5", "--force").exit_code == 0


def test_disagreeing_outputs_write_nothing(tiny, tmp_path, monkeypatch):
    """The output check is real: a transfer that drops the kernel transpose keeps every shape
    (square kernels, equal channels aside) but not the function, and nothing is written."""
    _, model = random_torch(tiny)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    monkeypatch.setattr(
        "archc.ops.conv.Conv.to_keras",
        lambda self, name, w: w.reshape(w.shape[2], w.shape[3], w.shape[1], w.shape[0]) if name == "weight" else w,
    )
    result = convert(tiny, tmp_path / "m.pth", tmp_path / "m.weights.h5")
    assert result.exit_code == 1, result.output
    assert "the converted model disagrees with the source" in result.output
    assert not (tmp_path / "m.weights.h5").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth", "tiny.yaml"]  # no temporary file left


def test_progress_goes_to_stderr_only_when_asked(tiny, tmp_path):
    _, model = random_torch(tiny)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    quiet = CliRunner()  # keeps stdout and stderr apart
    result = quiet.invoke(main, ["convert", str(tiny), str(tmp_path / "m.pth"), str(tmp_path / "a.weights.h5")])
    assert result.exit_code == 0 and "transfer" not in result.stderr
    result = quiet.invoke(main, ["convert", str(tiny), str(tmp_path / "m.pth"), str(tmp_path / "b.weights.h5"), "--progress"])
    assert result.exit_code == 0
    assert "transfer [##############################] 4/4" in result.stderr
    assert result.stdout.startswith("wrote ") and "transfer" not in result.stdout
