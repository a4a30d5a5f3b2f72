"""TensorFlow's start-up log lines stay out of verify, convert and scripts/demo.py (TensorFlow
2.19+ prints some whatever TF_CPP_MIN_LOG_LEVEL says); a TF_CPP_MIN_LOG_LEVEL the user set
stands, and so does anything else written to stderr meanwhile."""

import os
import subprocess
import sys

from conftest import ROOT

from archc.frameworks import import_quietly

# What TensorFlow 2.21 prints on import (the banner and the oneDNN notice come twice), and a line
# that is not a log line.
LOG = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796576204.600942   12508 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.\n"
    "2025-09-17 14:44:05.157831: I external/local_xla/xla/tsl/cuda/cudart_stub.cc:32] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
)
OTHER = "UserWarning: something the user should see\n"


def fake_framework(tmp_path, monkeypatch, name):
    """A module that writes to file descriptor 2 as it is imported, as TensorFlow's C++ does."""
    (tmp_path / f"{name}.py").write_text(f"import os\nos.write(2, {(LOG + OTHER).encode()!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_log_lines_are_left_out_and_the_rest_kept(tmp_path, monkeypatch, capfd):
    fake_framework(tmp_path, monkeypatch, "fake_tf_quiet")
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    assert import_quietly("fake_tf_quiet").__name__ == "fake_tf_quiet"
    assert capfd.readouterr().err == OTHER
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"


def test_a_level_the_user_set_stands(tmp_path, monkeypatch, capfd):
    fake_framework(tmp_path, monkeypatch, "fake_tf_loud")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    import_quietly("fake_tf_loud")
    assert capfd.readouterr().err == LOG + OTHER
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


def quiet_run(*args, cwd=ROOT):
    """A fresh process (TensorFlow not yet imported), with no TF_CPP_MIN_LOG_LEVEL of the user's."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_verify_prints_its_report_only():
    result = quiet_run("-m", "archc", "verify", "specs/cifar/resnet20.yaml")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("specs/cifar/resnet20.yaml: resnet20, eval mode")


def test_demo_prints_its_report_only():
    result = quiet_run("scripts/demo.py", "generated/resnet20_torch.py", "generated/resnet20_keras.py")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "torch  generated/resnet20_torch.py: input (2, 3, 32, 32) -> output (2, 10)"
    assert lines[2] == "keras  generated/resnet20_keras.py: input (2, 32, 32, 3) -> output (2, 10)"
    # He et al. 2015: ResNet-20 has 0.27M parameters; 688 BatchNorm channels, two statistics each
    assert lines[1].strip() == lines[3].strip() == (
        "269,722 trainable + 1,376 non-trainable (BatchNorm statistics) = 271,098 parameters"
    )


def test_convert_prints_its_line_only(tmp_path):
    import torch

    import archc

    torch.save(archc.build(ROOT / "specs/cifar/resnet20.yaml", "torch").state_dict(), tmp_path / "r20.pth")
    result = quiet_run("-m", "archc", "convert", str(ROOT / "specs/cifar/resnet20.yaml"), "r20.pth", "r20.weights.h5", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("wrote r20.weights.h5 (resnet20, torch -> keras, ")
