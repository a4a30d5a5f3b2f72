"""The `archc` command's process: what it imports and what it changes (its timing is in bench/)."""

from __future__ import annotations

import importlib
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
# the op modules imported are those of the kinds in the spec's graph, and the few that lowering
# and the spec models always read (the weighted kinds' init rules, act's activations)
from archc import ops
from archc.api import to_ir
from archc.ops import init
imported = {name.rpartition(".")[2] for name in sys.modules if name.startswith("archc.ops.")} - {"base", "init"}
used = {node.op.kind for node in to_ir("specs/resnet50.yaml").nodes}
assert imported <= used | set(init.KINDS) | {"act"}, imported - used
assert len(imported) < len(ops.ALL) / 2, imported
print("checked", len(sys.modules), "modules")
"""


def test_check_patches_no_module_and_imports_no_framework() -> None:
    """`archc check` imports no deep-learning framework (nor jinja2, which only builds need),
    only the op modules of the kinds the spec uses (archc.ops is lazy), and leaves every module of the standard library and of its dependencies as imported: no
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


def test_op_registry_is_what_the_modules_declare() -> None:
    """archc.ops knows its kinds without importing their modules (file names, INTERNAL) and
    its shorthands by looking in a few: both must equal what importing every module says."""
    import pkgutil

    from archc import ops
    from archc.backends import common, template_dir

    declared = {}
    for info in pkgutil.iter_modules(ops.__path__):
        if info.name in ("base", "init"):
            continue
        module = importlib.import_module(f"archc.ops.{info.name}")
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, ops.Op) and "kind" in vars(c)
                   and c.__module__ == module.__name__]  # fmt: skip
        assert [c.kind for c in classes] == [info.name], info.name  # one op kind per module, named after it
        declared[info.name] = classes[0]
    assert dict(ops.ALL) == declared
    assert set(ops.KINDS) == {kind for kind, op in declared.items() if op.Args is not None}
    assert ops.INTERNAL == set(declared) - set(ops.KINDS)
    assert ops.BatchNorm is declared["batchnorm"] and ops.PadShortcut is declared["pad_shortcut"]

    names = [name for op in declared.values() for name in op.SHORTHANDS]
    assert len(names) == len(set(names)) and "relu" in names  # no shorthand is declared twice
    table = {name: body for op in declared.values() for name, body in op.SHORTHANDS.items()}
    assert dict(ops.SHORTHANDS) == table and all(ops.SHORTHANDS[name] == body for name, body in table.items())
    assert "conv" not in ops.SHORTHANDS and "input" not in ops.SHORTHANDS

    for backend in ("torch", "keras"):  # the names a generated module may define, read from the templates
        helpers = common.helper_names(backend)
        assert {op.HELPERS[backend] for op in declared.values() if backend in op.HELPERS} <= set(helpers)
        for name in helpers:
            text = (template_dir() / backend / f"{name}.py.j2").read_text()
            assert f"class {name}(" in text or f"def {name}(" in text, (backend, name)
    assert {k for k in declared if k in common._MERGES} == {k for k, op in declared.items() if op.MERGE and k in ops.KINDS}
    assert {k for k in declared if k in common._EXPRESSIONS} == {k for k, op in declared.items() if op.EXPRESSION and k in ops.KINDS}
    assert "add" in common._MERGES and "nope" not in common._MERGES
