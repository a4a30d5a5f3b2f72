"""Run archc's CLI on hostile inputs, each in its own process under hard resource limits.

A parent process imports archc once (and warms its caches), then forks one child per
case; the child sets RLIMIT_CPU and RLIMIT_AS and runs the `archc` script's entry point
(archc.__main__.main, with the process settings a user's command runs with). A child killed
by the CPU limit (SIGXCPU), out of memory (MemoryError: exit 1), or past the wall
clock limit is a breach. Used by tests/test_cost_bounds.py and bench/corpus.py:

    python tests/corpus_runner.py CASES.json RESULTS.json
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from pathlib import Path

CPU_S = 2  # per case, CPU seconds (RLIMIT_CPU)
AS_BYTES = 1 << 30  # per case, address space (RLIMIT_AS): 1 GiB
WALL_S = 10.0  # per case, wall clock (a blocked read is not CPU time)


def _child(argv: list[str], cwd: str, out_file: str, err_file: str) -> None:
    code = 1
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (CPU_S, CPU_S + 1))
        resource.setrlimit(resource.RLIMIT_AS, (AS_BYTES, AS_BYTES))
        os.chdir(cwd)
        for fd, path in ((1, out_file), (2, err_file)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        # the `archc` script itself, with its process settings
        from archc.__main__ import main

        sys.argv = ["archc", *argv]
        main()
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - anything escaping the CLI is a breach
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110 - exiting anyway
                pass
        os._exit(code)


def run_case(argv: list[str], cwd: str, scratch: Path) -> dict:
    """One CLI run in a limited child: exit status or signal, CPU seconds, peak RSS, output."""
    out_file, err_file = scratch / "stdout", scratch / "stderr"
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        _child(argv, cwd, str(out_file), str(err_file))
    timed_out = False
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() - start > WALL_S:
            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
            timed_out = True
            break
        time.sleep(0.002)
    return {
        "argv": argv,
        "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
        "signal": signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None,
        "timed_out": timed_out,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mib": usage.ru_maxrss / 1024,
        "wall_s": time.monotonic() - start,
        "stdout": out_file.read_text(errors="replace")[:20000],
        "stderr": err_file.read_text(errors="replace")[:20000],
    }


def run_all(cases: list[dict], scratch: Path) -> list[dict]:
    """`cases`: {"argv": [...], "cwd": "..."}; archc is imported and warmed up first."""
    from click.testing import CliRunner

    from archc.cli import main

    root = Path(__file__).resolve().parent.parent
    CliRunner().invoke(main, ["check", str(root / "specs" / "resnet18.yaml")])  # imports, warm caches
    scratch.mkdir(parents=True, exist_ok=True)
    return [run_case(case["argv"], case["cwd"], scratch) for case in cases]


if __name__ == "__main__":
    cases_file, results_file = sys.argv[1:3]
    results = run_all(json.loads(Path(cases_file).read_text()), Path(results_file).parent / "scratch")
    Path(results_file).write_text(json.dumps(results))
