"""Import time of ``symrmt`` (issue 14 aim: under 0.5 s), as a ratio to the
baseline ``import sympy`` (which symrmt cannot avoid: expressions are SymPy
objects).

Run: ``python benchmarks/import_time.py [repeats]``. Each import is timed in a
fresh interpreter (``subprocess``, ``-c "import time; t=…; import X; …"``, so
interpreter start-up is excluded); the median of the repeats is printed, the
two kinds of run interleaved so that machine load affects both alike. Also
shows which heavy modules a bare ``import symrmt`` loads (numerics, SciPy,
Monte Carlo and matplotlib should be absent: they load on first use), and the
peak memory of each import: the child interpreter's maximum resident set
(``resource.getrusage``) and the largest traced allocation of the import
(``tracemalloc``), as ratios to ``import sympy``."""
from __future__ import annotations

import statistics
import subprocess
import sys

SNIPPET = ("import time, sys; t = time.perf_counter(); import {mod}; "
           "print(time.perf_counter() - t); "
           "print(' '.join(m for m in ('numpy', 'scipy', 'matplotlib', 'symrmt.numerics', "
           "'symrmt.montecarlo') if m in sys.modules))")
MEMORY = ("import resource, tracemalloc; tracemalloc.start(); import {mod}; "
          "print(tracemalloc.get_traced_memory()[1], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def timed(mod):
    out = subprocess.run([sys.executable, "-c", SNIPPET.format(mod=mod)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return float(out[0]), (out[1] if len(out) > 1 else "")


def memory(mod):
    """``(traced peak MiB, max RSS MiB)`` of ``import mod`` in a fresh interpreter
    (a separate run: tracing slows the import, so it is not timed)."""
    out = subprocess.run([sys.executable, "-c", MEMORY.format(mod=mod)], capture_output=True,
                         text=True, check=True).stdout.split()
    return int(out[0]) / 2**20, int(out[1]) / 1024


def main(repeats=7):
    times = {"sympy": [], "symrmt": []}
    loaded = ""
    for _ in range(repeats):
        for mod in times:
            t, mods = timed(mod)
            times[mod].append(t)
            if mod == "symrmt":
                loaded = mods
    base = statistics.median(times["sympy"])
    for mod, ts in times.items():
        med = statistics.median(ts)
        print(f"import {mod:<7} median {med * 1e3:7.1f} ms  (min {min(ts) * 1e3:6.1f}, max {max(ts) * 1e3:6.1f}, "
              f"{repeats} fresh interpreters)  ratio to import sympy {med / base:5.2f}")
    print(f"heavy modules loaded by `import symrmt`: {loaded or 'none'}")
    mem = {mod: memory(mod) for mod in times}
    for mod, (traced, rss) in mem.items():
        print(f"import {mod:<7} peak traced {traced:6.1f} MiB (ratio {traced / mem['sympy'][0]:4.2f}), "
              f"max RSS {rss:6.1f} MiB (ratio {rss / mem['sympy'][1]:4.2f})")
    print("aim: import symrmt < 500 ms:", "met" if statistics.median(times["symrmt"]) < 0.5 else "NOT met")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
