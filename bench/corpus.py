"""How fast and small archc's rejections are: every spec of the hostile corpus
(tests/hostile/) through the real CLI in-process, timed and with its peak Python memory.

Issue 5's target: each one fails in well under a second, with small memory.

    python bench/corpus.py
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from click.testing import CliRunner

from archc.cli import main as archc

HOSTILE = Path(__file__).resolve().parent.parent / "tests" / "hostile"


def main() -> None:
    runner = CliRunner()
    runner.invoke(archc, ["check", str(HOSTILE.parent.parent / "specs" / "resnet18.yaml")])  # imports, warm caches
    rows = []
    with tempfile.TemporaryDirectory() as out:
        os.chdir(HOSTILE)
        for path in sorted(HOSTILE.glob("*.yaml")):
            tracemalloc.start()
            start = time.perf_counter()
            result = runner.invoke(archc, ["build", path.name, "-b", "torch", "-o", f"{out}/model.py"])
            elapsed = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            rows.append((elapsed, peak, path.name, result.exit_code))
    times = [r[0] for r in rows]
    print(f"{len(rows)} hostile specs; exit 2 for {sum(r[3] == 2 for r in rows)}")
    print(f"time: median {statistics.median(times) * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms "
          f"(target < 1000 ms: max/target = {max(times):.3f})")  # fmt: skip
    print(f"peak Python memory: max {max(r[1] for r in rows) / 2**20:.1f} MiB\n")
    print("| slowest specs | ms | peak MiB |\n|---|---:|---:|")
    for elapsed, peak, name, _ in sorted(rows, reverse=True)[:8]:
        print(f"| {name} | {elapsed * 1e3:.1f} | {peak / 2**20:.2f} |")


if __name__ == "__main__":
    main()
