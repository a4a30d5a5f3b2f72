"""The `archc` command (the script and `python -m archc`): process settings, then archc.cli.

`archc check` runs on every save in editors and pre-commit hooks. The settings below are
documented configuration of this command's own process (the garbage collector's thresholds,
an environment variable pydantic reads); importing archc or archc.cli (the tests, a notebook)
changes nothing process-wide. This module imports only what the interpreter has loaded
before it runs, so that `python -m archc` takes the working directory off sys.path before
anything else is imported (below).
"""

import atexit
import gc
import os
import sys


def main() -> None:
    # Start-up makes many long-lived objects (modules, classes, pydantic validators) and few
    # cycles: the default threshold (700) runs the collector hundreds of times in it. The
    # older generations keep their default ratios, so the commands that build models
    # (verify, convert) still collect cycles.
    gc.set_threshold(100_000, 10, 10)
    # At exit Python's last collections walk every object the process made (every module,
    # class, validator and graph node: about 5 % of a `check`); frozen objects are skipped and
    # still freed with their modules. Only garbage cycles left at exit are not collected, and
    # Python does not promise to finalize objects that exist at exit anyway; archc closes and
    # renames every file it writes before it returns.
    atexit.register(gc.freeze)
    # archc's spec models use no pydantic plugins; with this documented setting pydantic does
    # not read every installed package's metadata to look for them (about 20 ms).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from archc.cli import main as cli

    cli()


if __name__ == "__main__":
    # `python -m` puts the working directory first on sys.path (unless -P or PYTHONSAFEPATH):
    # a click.py or yaml.py there would be imported in place of archc's dependencies.
    if not sys.flags.safe_path and sys.path and sys.path[0] == os.getcwd():
        del sys.path[0]
    main()
