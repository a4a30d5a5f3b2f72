"""`archc convert SPEC SRC DST`: PyTorch state_dict -> Keras weights and back, the round
trip, the output check before writing, and checkpoints that do not fit the spec (exit 2
naming the first mismatching tensor), hold tensors that are not plain finite weights
(sparse, meta, quantized, complex, integer, NaN, inf), or are not state_dicts at all."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ROOT, need

from archc import api
from archc.cli import main
from archc.interop import channels_last

torch = need("torch")
keras = need("keras")
verify = need("archc.verify")
h5py = need("h5py")

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


def refused(args, message):
    """convert exits 2 with exactly `archc: error: message` on one line and writes nothing."""
    result = convert(*args)
    assert result.exit_code == 2, result.output
    assert result.output == f"archc: error: {message}\n", result.output
    assert not os.path.exists(args[-1])


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
    got = keras.ops.convert_to_numpy(k_model(channels_last(x), training=False))
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


def test_standardized_convs_move_unchanged(tmp_path):
    """Weight-standardized convs (BiT's, and NFNet's with a gain): the raw weights move as a
    conv's, the gain (O, 1, 1, 1) as Keras' (O,), saved in and loaded from the Keras file
    (Keras' Conv2D writes only its kernel and bias there); the round trip is exact."""
    spec = tmp_path / "std.yaml"
    spec.write_text(TINY.replace("padding: 1}}", "padding: 1, standardize: true, eps: 1.0e-8}}", 1)
                    .replace("groups: 4}}", "groups: 4, standardize: true, eps: 1.0e-6, gain: true, gamma: 1.7}}"))  # fmt: skip
    graph, original = random_torch(spec)
    assert original.conv2.gain.shape == (12, 1, 1, 1) and len(set(original.conv2.gain.flatten().tolist())) == 12  # randomized
    src, mid, back = tmp_path / "s.pth", tmp_path / "s.weights.h5", tmp_path / "back.pt"
    torch.save(original.state_dict(), src)
    assert convert(spec, src, mid).exit_code == 0
    k_model = api.load_module(graph, "keras").build_model()
    k_model.load_weights(str(mid))
    assert np.array_equal(k_model.get_layer("conv2").gain.numpy(), original.conv2.gain.detach().numpy().reshape(-1))
    assert convert(spec, mid, back).exit_code == 0
    restored = torch.load(back, weights_only=True)
    for key, value in original.state_dict().items():
        assert torch.equal(restored[key], value), key


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
    # a stderr that cannot take the message does not turn archc's bug into a user error (exit 2)
    from archc import cli
    from archc.errors import SpecError

    def full(message="", **kwargs):
        raise SpecError("cannot write to standard error: No space left on device")

    monkeypatch.setattr(cli, "_out", full)
    assert convert(tiny, tmp_path / "m.pth", tmp_path / "m.weights.h5").exit_code == 1


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


def test_tensors_that_are_not_plain_weights(tiny, tmp_path):
    """Each of these used to be a traceback (sparse, meta, quantized), or loaded silently wrong:
    complex64 lost its imaginary part, int64 and bool weights were cast to float."""
    _, model = random_torch(tiny)
    state = model.state_dict()
    fc = state["fc.weight"]
    with warnings.catch_warnings():  # PyTorch deprecates creating quantized tensors; files holding them exist
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.quantize_per_tensor(fc, 0.01, 0, torch.qint8)
    cases = {
        "sparse": (fc.to_sparse(), "tensor fc.weight is stored in the sparse_coo layout, not dense; save it with tensor.to_dense()"),
        "meta": (torch.empty(5, 192, device="meta"), "tensor fc.weight is on the meta device and holds no values (saved from a model that was never given weights?); save the state_dict of a model with real weights"),
        "quantized": (quantized, "tensor fc.weight is quantized (qint8); save the float weights: tensor.dequantize()"),
        "complex": (fc.to(torch.complex64), "tensor fc.weight holds complex64 values but the spec's model needs floating-point values (float32)"),
        "int64": (fc.to(torch.int64), "tensor fc.weight holds int64 values but the spec's model needs floating-point values (float32)"),
        "bool": (fc > 0, "tensor fc.weight holds bool values but the spec's model needs floating-point values (float32)"),
        "counter": ({"bn.num_batches_tracked": torch.tensor(1.0)}, "tensor bn.num_batches_tracked holds float32 values but the spec's model needs integer values (int64)"),
    }  # fmt: skip
    for name, (bad, message) in cases.items():
        src = tmp_path / f"{name}.pth"
        torch.save({**state, **(bad if isinstance(bad, dict) else {"fc.weight": bad})}, src)
        refused((tiny, src, tmp_path / f"{name}.weights.h5"), f"{src}: {message}")
    # other floating dtypes are weights like float32 ones: half precision, bfloat16, float64
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "half.pth")
        result = convert(tiny, tmp_path / "half.pth", tmp_path / "half.weights.h5", "--force")
        assert result.exit_code == 0, (dtype, result.output)


def test_non_finite_weights_are_the_checkpoints_fault(tiny, tmp_path):
    """NaN or inf in a checkpoint: exit 2 naming the tensor (it was exit 1, "the converted model
    disagrees", which blamed archc), in both directions; likewise a float64 value that float32
    cannot hold, and finite weights whose output overflows (nothing can be compared)."""
    _, model = random_torch(tiny)
    state = model.state_dict()
    nan, inf = state["fc.weight"].clone(), state["bn.running_var"].clone()
    nan[0, :3] = float("nan")
    nan[1, 0] = float("inf")
    inf[2] = float("-inf")
    wide = state["conv1.weight"].double()
    wide[0, 0, 0, 0] = 1e300
    huge = {k: v.clone() for k, v in state.items()}
    huge["conv1.weight"].fill_(1e30)
    huge["conv2.weight"].fill_(1e30)  # each finite in float32; their product is not
    cases = {
        "nan": ({**state, "fc.weight": nan}, "tensor fc.weight holds 3 NaN and 1 inf of 960 values; only finite weights can be converted (was the checkpoint saved after training diverged?)"),
        "inf": ({**state, "bn.running_var": inf}, "tensor bn.running_var holds 1 inf of 8 values; only finite weights can be converted (was the checkpoint saved after training diverged?)"),
        "wide": ({**state, "conv1.weight": wide}, "tensor conv1.weight holds values beyond the range of float32, the spec model's dtype (largest |x| = 1e+300)"),
        "huge": (huge, "with these weights the spec's model computes NaN or inf on the check batch (standard-normal inputs), so the conversion cannot be checked; {dst} was not written"),
    }  # fmt: skip
    for name, (bad, message) in cases.items():
        src, dst = tmp_path / f"{name}.pth", tmp_path / f"{name}.weights.h5"
        torch.save(bad, src)
        refused((tiny, src, dst), f"{src}: {message.format(dst=dst)}")

    keras_file = tmp_path / "k.weights.h5"
    api.build(tiny, "keras").save_weights(str(keras_file))
    with h5py.File(keras_file, "r+") as f:
        f["layers/dense/vars/0"][4, 2] = float("nan")
    refused(
        (tiny, keras_file, tmp_path / "k.pth"),
        f"{keras_file}: tensor layers/dense/vars/0 (fc kernel) holds 1 NaN of 960 values; only finite weights can be "
        "converted (was the checkpoint saved after training diverged?)",
    )


def test_what_is_not_a_state_dict(tiny, tmp_path):
    """A pickled whole model, numpy arrays, a wrapper without weights, a damaged file: one line
    each that says what to save instead; a training script's wrapper and nn.DataParallel's
    `module.` prefix are read."""
    whole = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())
    _, model = random_torch(tiny)
    state = model.state_dict()
    save_state_dict = "torch.save(model.state_dict(), PATH)"
    cases = {
        "whole": (whole, f"holds a whole pickled model (torch.save(model)), which cannot be loaded without running its code; save its weights instead, {save_state_dict}, and convert that file"),
        "inside": ({"epoch": 3, "model": whole}, f"holds a whole pickled model (torch.save(model)), which cannot be loaded without running its code; save its weights instead, {save_state_dict}, and convert that file"),
        "numpy": ({k: v.numpy() for k, v in state.items()}, "holds numpy arrays, which torch.load(weights_only=True) does not read; save torch tensors: torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, PATH)"),
        "epoch": ({"epoch": 3, "weights": state}, "expected a state_dict (a mapping of names to tensors), but entry 'epoch' is of type int; a training checkpoint's weights are read from its 'state_dict', 'model_state_dict' or 'model' entry"),
    }  # fmt: skip
    for name, (bad, message) in cases.items():
        src = tmp_path / f"{name}.pth"
        torch.save(bad, src)
        refused((tiny, src, tmp_path / f"{name}.weights.h5"), f"{src}: {message}")
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "epoch.pth").read_bytes()[:1000])
    for name, error in (("empty", "EOFError"), ("cut", "RuntimeError: PytorchStreamReader failed reading zip archive: failed finding central directory")):  # fmt: skip
        src = tmp_path / f"{name}.pth"
        message = f"{src}: torch.load cannot read it ({error}); convert reads a file written by {save_state_dict}"
        refused((tiny, src, tmp_path / f"{name}.weights.h5"), message)

    torch.save({"epoch": 3, "model_state_dict": state, "optimizer_state_dict": {"lr": 0.1}}, tmp_path / "tutorial.pth")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "parallel.pth")
    for name in ("tutorial", "parallel"):
        result = convert(tiny, tmp_path / f"{name}.pth", tmp_path / f"{name}.weights.h5")
        assert result.exit_code == 0, (name, result.output)


def test_keras_files_that_keras_refuses(tiny, tmp_path):
    """Values kept outside the file (HDF5 external storage, external or soft links) are refused
    before anything reads them (a file must not make convert copy another file's bytes into the
    weights); so are files without Keras' layers/ group and complex values."""
    good = tmp_path / "good.weights.h5"
    api.build(tiny, "keras").save_weights(str(good))
    kernel = "layers/dense/vars/0"
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(960, dtype="float32").tobytes())

    def external(f, data):
        f.create_dataset(kernel, shape=data.shape, dtype=data.dtype, external=[(str(secret), 0, data.nbytes)])

    def external_link(f, data):
        with h5py.File(tmp_path / "other.h5", "w") as other:
            other["d"] = data
        f[kernel] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/d")

    def soft_link(f, data):
        f["elsewhere"] = data
        f[kernel] = h5py.SoftLink("/elsewhere")

    def complex_values(f, data):
        f[kernel] = data.astype("complex64")

    def no_layers(f, data):
        f[kernel] = data
        f.move("layers", "model_weights")

    cases = {
        external: f"{kernel} keeps its values outside the file (external storage); Keras loads only tensors stored in the file itself",
        external_link: f"{kernel} is an HDF5 ExternalLink; Keras loads only tensors stored in the file itself",
        soft_link: f"{kernel} is an HDF5 SoftLink; Keras loads only tensors stored in the file itself",
        complex_values: f"tensor {kernel} (fc kernel) holds complex64 values but the spec's model needs floating-point values (float32)",
        no_layers: "not a Keras weights file: it has no layers/ group, which keras.Model.save_weights writes",
    }  # fmt: skip
    for edit, message in cases.items():
        src = tmp_path / f"{edit.__name__}.weights.h5"
        src.write_bytes(good.read_bytes())
        with h5py.File(src, "r+") as f:
            data = f[kernel][()]
            del f[kernel]
            edit(f, data)
        refused((tiny, src, tmp_path / f"{edit.__name__}.pth"), f"{src}: {message}")
    # the unedited file converts
    assert convert(tiny, good, tmp_path / "good.pth").exit_code == 0


def test_success_line_to_a_full_stdout(tiny, tmp_path):
    """`archc convert ... > /dev/full`: exit 2 and one line on stderr (it was a traceback)."""
    _, model = random_torch(tiny)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    command = f"{sys.executable} -m archc convert tiny.yaml m.pth m.weights.h5 > /dev/full"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    # TensorFlow's start-up log lines are another matter (issue 20, section 6); archc says one line
    archc_lines = [line for line in result.stderr.splitlines() if line.startswith("archc")]
    assert archc_lines == ["archc: error: cannot write to standard output: No space left on device"], result.stderr


def test_progress_bar_on_a_full_stderr(monkeypatch):
    """The bar is decoration: a stderr that cannot take it (full, closed) stops the drawing, not
    the conversion."""
    from archc import cli_frameworks

    class Full:
        def write(self, text):
            raise OSError(28, "No space left on device")

        def flush(self):
            raise OSError(28, "No space left on device")

        def fileno(self):
            raise OSError(9, "no descriptor")

    for stream in (Full(), None):
        monkeypatch.setattr(sys, "stderr", stream)
        report = cli_frameworks._bar()
        report("transfer", 1, 4)
        report("transfer", 4, 4)
