"""archc: one YAML spec for a CNN, readable PyTorch and Keras code out.

The Python API (`load_spec`, `compile`, `build`, `summary`, `lower`) lives in
`archc.api` and is imported on first use, so `import archc` stays light and never
imports torch or keras.
"""

__version__ = "0.1.0"
__all__ = ["build", "compile", "load_spec", "lower", "summary"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name in __all__:
        from archc import api

        return getattr(api, name)
    raise AttributeError(f"module 'archc' has no attribute {name!r}")
