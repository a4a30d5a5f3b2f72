"""`make bench`: every CPU-side benchmark, printing markdown tables with ratios.

    python bench/run.py            # the workloads of issue 6 (about 10 minutes on 2 idle cores)
    python bench/run.py --quick    # fewer rounds, DenseNet-BC-250 at batch 16
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    quick = ["--quick"] if "--quick" in sys.argv else []
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}")
    for script in ("compiler.py", "corpus.py", "runtime.py", "keras_apps.py"):
        print(f"\n## bench/{script}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *quick], check=True)


if __name__ == "__main__":
    main()
