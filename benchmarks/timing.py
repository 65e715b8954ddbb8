"""Timing shared by the benchmarks: a shared machine's speed varies from pass to pass, so
each figure is the fastest of several passes."""

import time


def best_seconds(run, repeats: int = 3) -> float:
    """Wall-clock seconds of the fastest of ``repeats`` calls of ``run()``."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return min(seconds)
