"""Random projections of pooled data: the solve of the law ``projected_pooled``.

Model: ``derivations/_pooled.PooledRidge.rp_expressions`` — ridge on ``Z = XF``,
``X = vstack(X₁, X₂)``, ``F`` a ``d×p`` Gaussian projection, group-1 error
``(Fâ − w₁)ᵀΣ₁(Fâ − w₁)`` (derived by the engine once, compiled once). Bindings
as ``tests/test_proj_engine.py``: ``Σ₁ = diag(i⁻¹)`` (bound as a vector),
``Σ₂ = Q diag(linspace(0.1, 1)) Qᵀ`` (a full matrix, not commuting with Σ₁),
``n₁ = 1.5d``, ``n₂ = d/2``, ``p = p/d · d``. One BLAS thread.

For each d, p/d ∈ {0.5, 2} and ridge λ ∈ {1e-3, 0.05, 1} it prints the time of
one grid point (one call of the compiled function; the plan is built before,
at d = 20), for

* new: the structured Newton evaluation (one inverse ``R = (M + κ)⁻¹`` per
  point and step for every trace of the residuals and the Jacobian,
  ``numerics/laws/projected_pooled._Structured``) and the value's contractions
  sharing their dense sub-expressions (``numerics/kernels._dense_chains``:
  ``R`` once per point for every word, ``R²`` from it);
  and the joint Newton's steps in ``(log(1+δ), log κ)`` (far fewer damped
  steps at small λ with p ≥ d);
* old: the same compiled function with the three switched off
  (``projected_pooled.STRUCTURED = False``, ``kernels.SHARE_DENSE = False``,
  ``projected_pooled.LOG_STEP = False``: every contraction of the lowered SymPy
  Jacobian and value inverts ``M + κ`` on its own, steps in ``(δ, κ)``), the
  ratio old/new and the relative difference of the values (the old path at
  d = 400, p/d = 2, λ = 1e-3 takes minutes — 325 s measured under load — and
  runs only with ``--all-old``);

then the peak memory (tracemalloc) of one point of each, and the process's
maximum resident set.

Run: python benchmarks/projected.py [--quick] [--big] [--no-old] [--all-old]
(--quick: d = 100 only; --big: adds d = 1600, new path only, λ = 0.05;
--no-old: new path only)
"""
from __future__ import annotations

import pathlib
import resource
import sys
import time
import tracemalloc

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "derivations"))

import symrmt as sr  # noqa: E402
import symrmt.numerics.kernels as KN  # noqa: E402
import symrmt.numerics.laws.projected_pooled as PP  # noqa: E402
from _pooled import rp_problem, PooledRidge, single_blas_thread  # noqa: E402


def problem(d, p_ratio, lam, seed=1):
    return rp_problem(d, p_ratio, lam=lam, seed=seed)


def path(new):
    PP.STRUCTURED = KN.SHARE_DENSE = PP.LOG_STEP = bool(new)


def timed(f, b, new):
    path(new)
    t0 = time.perf_counter()
    v = float(np.asarray(f(**b), dtype=float))
    return v, time.perf_counter() - t0


def peak(f, b, new):
    path(new)
    tracemalloc.start()
    f(**b)
    out = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out


def main(argv):
    quick, big, no_old = "--quick" in argv, "--big" in argv, "--no-old" in argv
    all_old = "--all-old" in argv
    single_blas_thread()
    t0 = time.perf_counter()
    m = PooledRidge()
    de = sr.deterministic_equivalent(m.rp_expressions()["E_1 (random projections)"])
    f = de.compile()
    for new in (True, False):
        timed(f, problem(20, 0.5, 0.05), new)       # builds the plan (SymPy work, once)
    print(f"derived, compiled and planned in {time.perf_counter() - t0:.1f} s")
    print(f"{'d':>5} {'p/d':>4} {'λ':>6} {'new s':>8} {'old s':>8} {'old/new':>8} {'rel diff':>9}  value")
    ds = (100,) if quick else (100, 400)
    for d in ds:
        for pr in (0.5, 2.0):
            for lam in (1e-3, 0.05, 1.0):
                b = problem(d, pr, lam)
                v, tn = timed(f, b, True)
                if no_old or (d >= 400 and pr > 1 and lam < 0.01 and not all_old):
                    print(f"{d:5d} {pr:4g} {lam:6g} {tn:8.3f} {'-':>8} {'-':>8} {'-':>9}  {v:.15g}")
                    continue
                vo, to = timed(f, b, False)
                print(f"{d:5d} {pr:4g} {lam:6g} {tn:8.3f} {to:8.3f} {to / tn:8.1f} {abs(v / vo - 1):9.1e}  {v:.15g}",
                      flush=True)
    if big:
        for pr in (0.5, 2.0):
            b = problem(1600, pr, 0.05)
            v, tn = timed(f, b, True)
            print(f"{1600:5d} {pr:4g} {0.05:6g} {tn:8.3f} {'-':>8} {'-':>8} {'-':>9}  {v:.15g}", flush=True)
    d = ds[-1]
    b = problem(d, 0.5, 0.05)
    pn = peak(f, b, True)
    line = f"peak memory of one point (tracemalloc), d = {d}, p/d = 0.5: new {pn / 2**20:.1f} MiB"
    if not no_old:
        po = peak(f, b, False)
        line += f", old {po / 2**20:.1f} MiB (old/new {po / pn:.2f})"
    print(line)
    path(True)
    print(f"max resident set: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main(sys.argv[1:])
