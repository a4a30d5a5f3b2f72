"""Paired timing for the bench scripts: two ways of computing one thing, run in alternating
A B B A rounds in one process, so machine noise hits both alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(call: Callable[[], object], reps: int, sync: Callable[[], object] = lambda: None) -> float:
    """Seconds per call of `call` (after one warm call); `sync` waits for queued device work."""
    call()  # warm
    sync()
    start = time.perf_counter()
    for _ in range(reps):
        call()
    sync()
    return (time.perf_counter() - start) / reps


def ratio(
    a: Callable[[], object], b: Callable[[], object], rounds: int, reps: int, sync: Callable[[], object] = lambda: None
) -> tuple[float, float, float]:
    """Median seconds per call of a and b, and the median of b/a per A B B A round (>1: a is faster)."""
    ta, tb, ratios = [], [], []
    for _ in range(rounds):
        a1, b1, b2, a2 = (timed(f, reps, sync) for f in (a, b, b, a))
        ta += [a1, a2]
        tb += [b1, b2]
        ratios.append((b1 + b2) / (a1 + a2))
    return statistics.median(ta), statistics.median(tb), statistics.median(ratios)
