"""The `archc` command (the script and `python -m archc`): start-up settings, then archc.cli.

`archc check` runs on every save in editors and pre-commit hooks, so the command's own
process starts as fast as it can. These settings are made here, for the command's process
only: importing archc or archc.cli (the tests, a notebook) changes nothing process-wide.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import types


def main() -> None:
    # Start-up makes many long-lived objects (modules, classes, pydantic validators) and few
    # cycles: the default threshold (700) runs the collector hundreds of times in it, about 3 %
    # of a `check`. The older generations keep their default ratios, so the commands that
    # build models (verify, convert) still collect cycles every ~10 M allocations.
    gc.set_threshold(100_000, 10, 10)
    # At exit Python's last garbage collections walk every object the process made (every
    # module, class, validator and graph node: about 7 ms of a `check`); frozen objects are
    # skipped, and still freed with their modules. Only cycles that are garbage at exit stay
    # to the OS.
    atexit.register(gc.freeze)
    _no_pydantic_plugins()
    from archc import compile_cache

    compile_cache.install()  # before pydantic and archc's modules make their classes
    from archc.cli import main as cli

    cli()


# archc's spec models need no pydantic plugins, and looking for them reads the metadata of
# every installed package (about 20 ms of each `archc check` in a venv with the runtimes).
_PLUGINS_OFF = ("__all__", "1", "true")  # the values with which pydantic's loader returns no plugins


def _no_pydantic_plugins() -> None:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    if os.environ["PYDANTIC_DISABLE_PLUGINS"] in _PLUGINS_OFF and "pydantic.plugin._loader" not in sys.modules:
        sys.modules["pydantic.plugin._loader"] = loader = types.ModuleType("pydantic.plugin._loader", _get_plugins.__doc__)
        loader.get_plugins = _get_plugins  # type: ignore[attr-defined]


def _get_plugins():  # type: ignore[no-untyped-def]
    """pydantic.plugin._loader.get_plugins, without importing importlib.metadata (and with it
    email, zipfile, csv, socket: about 15 ms) while plugins are off; the real loader otherwise."""
    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") in _PLUGINS_OFF:
        return ()
    del sys.modules["pydantic.plugin._loader"]
    import pydantic.plugin._loader as loader

    return loader.get_plugins()


if __name__ == "__main__":
    main()
