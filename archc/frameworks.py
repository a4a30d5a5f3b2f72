"""Importing Keras for archc's runtime commands (verify, convert, scripts/demo.py) without
TensorFlow's start-up log lines.

TensorFlow logs from C++ as it loads ("oneDNN custom operations are on ...", the CPU's
instruction sets): lines about the machine, not the model, printed above archc's report.
Unless the user set TF_CPP_MIN_LOG_LEVEL (then their value stands, and every line it lets
through is shown), archc sets it to 3 before the import. TensorFlow 2.19 and later print
some lines whatever its value (the "before absl::InitializeLog()" banner, the oneDNN
notice), so stderr is also read during the import and its log lines left out; anything
else written there is passed on.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tempfile
from types import ModuleType

_LOG_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IWE]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*"  # absl: I0000 00:00:1796576204.600942   12508 port.cc:153] ...
    r"|\d{4}-\d\d-\d\d [\d:.]+: [IWE] [\w/.]+:\d+\] .*"  # TensorFlow's: 2025-09-17 14:44:05.157831: I xla/.../x.cc:32] ...
)


def import_quietly(name: str = "keras") -> ModuleType:
    """`import name` (keras, and through it TensorFlow) without TensorFlow's start-up log lines."""
    if name in sys.modules or "TF_CPP_MIN_LOG_LEVEL" in os.environ or sys.stderr is None:
        return importlib.import_module(name)
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr to read
            return importlib.import_module(name)
        os.dup2(captured.fileno(), 2)
        try:
            return importlib.import_module(name)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _LOG_LINE.fullmatch(line.rstrip("\r\n"))))
