"""How fast and small archc's rejections are: every spec of the hostile corpus
(tests/hostile/) through the real CLI, each in its own forked process under the limits
the test suite enforces (RLIMIT_CPU 2 s, RLIMIT_AS 1 GiB; tests/corpus_runner.py), with
the CPU time and peak resident memory the kernel measured for it.

    python bench/corpus.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from corpus_runner import AS_BYTES, CPU_S, run_all  # noqa: E402

HOSTILE = ROOT / "tests" / "hostile"


def main() -> None:
    names = sorted(p.name for p in HOSTILE.glob("*.yaml"))
    with tempfile.TemporaryDirectory() as out:
        cases = [{"argv": ["build", n, "-b", "torch", "-o", f"{out}/{n}/model.py"], "cwd": str(HOSTILE)} for n in names]
        rows = run_all(cases, Path(out) / "scratch")
    cpu = sorted(r["cpu_s"] for r in rows)
    breaches = [n for n, r in zip(names, rows) if r["signal"] or r["timed_out"] or r["exit"] != 2]
    print(f"{len(rows)} hostile specs, each limited to {CPU_S} CPU s and {AS_BYTES / 2**30:.0f} GiB of address space; "
          f"exit 2 for {sum(r['exit'] == 2 for r in rows)}; breaches: {', '.join(breaches) or 'none'}")  # fmt: skip
    quantiles = statistics.quantiles(cpu, n=100) if len(cpu) > 1 else cpu * 99
    print(
        f"CPU per spec (forked from a warm process): median {statistics.median(cpu) * 1e3:.1f} ms, "
        f"p90 {quantiles[89] * 1e3:.1f} ms, p99 {quantiles[98] * 1e3:.1f} ms, max {cpu[-1] * 1e3:.1f} ms "
        f"(max/limit = {cpu[-1] / CPU_S:.3f})"
    )
    print(f"peak RSS: median {statistics.median(r['maxrss_mib'] for r in rows):.0f} MiB, "
          f"max {max(r['maxrss_mib'] for r in rows):.0f} MiB (limit {AS_BYTES / 2**20:.0f} MiB of address space)\n")  # fmt: skip
    print("| slowest specs | CPU ms | peak RSS MiB |\n|---|---:|---:|")
    for r, name in sorted(zip(rows, names), key=lambda t: -t[0]["cpu_s"])[:8]:
        print(f"| {name} | {r['cpu_s'] * 1e3:.1f} | {r['maxrss_mib']:.0f} |")


if __name__ == "__main__":
    main()
