"""archc: one YAML spec for a CNN, readable PyTorch and Keras code out.

The Python API (`load_spec`, `compile`, `build`, `summary`, `diagram`, `to_ir`) lives in
`archc.api` and is imported on first use, so `import archc` stays light and never
imports torch or keras. `SpecError` is what every user mistake raises. Importing this
package imports nothing else: `python -m archc` imports it before archc/__main__.py can take
the working directory off sys.path.
"""

__version__ = "0.1.0"
__all__ = ["SpecError", "build", "compile", "diagram", "load_spec", "summary", "to_ir"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name == "SpecError":
        from archc.errors import SpecError

        return SpecError
    if name in ("build", "compile", "diagram", "load_spec", "summary", "to_ir"):
        from archc import api

        return getattr(api, name)
    raise AttributeError(f"module 'archc' has no attribute {name!r}")
