"""The `archc` command's process: what it imports and what it changes (its timing is in bench/)."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

# Runs `archc check` through the command's own entry point (archc/__main__.py, the settings
# included) in this process, then looks at every module loaded.
CHECK_THEN_INSPECT = """
import sys, types
sys.argv = ["archc", "check", "specs/resnet50.yaml"]
from archc.__main__ import main
try:
    main()
except SystemExit as e:
    assert e.code in (None, 0), e.code
frameworks = sorted({"torch", "tensorflow", "keras", "jax", "numpy", "jinja2"} & set(sys.modules))
assert not frameworks, frameworks
for name, module in list(sys.modules.items()):
    if name == "__main__" or name.partition(".")[0] == "archc":
        continue
    if not isinstance(module, types.ModuleType):  # typing.io and typing.re are classes of typing
        assert getattr(module, "__module__", "").partition(".")[0] != "archc", name
        continue
    if "." in name or name in sys.stdlib_module_names:  # (Cython makes a top-level `cython_runtime` by hand)
        assert module.__spec__ is not None, name  # a stand-in module, made by hand rather than imported
    for attr, value in list(vars(module).items()):
        try:
            owner = getattr(value, "__module__", None)
        except Exception:
            continue
        # a function, class or module of archc put into the standard library or a dependency
        assert not (isinstance(owner, str) and owner.partition(".")[0] == "archc"), f"{name}.{attr} is {value!r}"
print("checked", len(sys.modules), "modules")
"""


def test_check_patches_no_module_and_imports_no_framework() -> None:
    """`archc check` imports no deep-learning framework (nor jinja2, which only builds need),
    and leaves every module of the standard library and of its dependencies as imported: no
    attribute replaced by archc's code, no module replaced by a stand-in."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", CHECK_THEN_INSPECT], cwd=ROOT, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("specs/resnet50.yaml: ok") and "checked" in run.stdout


def test_python_m_ignores_modules_in_the_working_directory(tmp_path) -> None:
    """`python -m archc` puts the working directory first on sys.path; a module there named
    like one archc imports (a dependency, or a standard module such as dataclasses) must not be
    the one imported."""
    for name in ("click", "yaml", "pydantic", "dataclasses", "typing", "re", "json"):
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('{name}.py was imported from the working directory')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    env["PYTHONPATH"] = str(ROOT)
    spec = str(ROOT / "specs/resnet50.yaml")
    for args in (["--version"], ["check", spec]):
        run = subprocess.run([sys.executable, "-m", "archc", *args], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert run.returncode == 0, (args, run.stderr)
    assert run.stdout.startswith(f"{spec}: ok")
