"""Shared measuring helpers of the benchmark scripts (each script puts this
folder on ``sys.path`` so that it also works when loaded by file path)."""
import resource
import time
import tracemalloc

import numpy as np


def best_time(fn, repeats=7):
    """``(best wall time, last result)`` over ``repeats`` calls of ``fn``."""
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def peak_mib(fn):
    """Largest traced allocation (MiB) during one call of ``fn``."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def max_rss_mib():
    """The process's maximum resident set so far (MiB; Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
