"""Quadrature paths: time and peak memory (issue 13: long-time gradient
descent and the sampling-map variance at ``n = d`` must stay under 1 GB).

    python benchmarks/quadrature.py [--quick]

Each case is derived once, then solved once with ``tracemalloc`` on (peak of
Python/NumPy allocations during the solve) and once without it (time). The
resident-set high-water mark (``ru_maxrss``, whole process, including SymPy)
is printed at the end.
"""
import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np
import sympy as sp

import symrmt as sr


def gd_risk(t):
    n, d = sr.dims("n d")
    lr, s2 = sr.scalar("lr"), sr.scalar("sigma2")
    Sigma, w = sr.Covariance("Sigma", d), sr.Vector("w", d)
    X, eps = sr.GaussianData("X", n, Sigma), sr.GaussianNoise("eps", n, s2)
    Sh = X.T * X / n
    wt = sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh) * X.T * (X * w + eps) / n
    return (wt - w).T * Sigma * (wt - w) + s2


def map_var():
    n, d = sr.dims("n d")
    s2, sT2 = sr.scalar("sigma2"), sr.scalar("sigmaT2")
    Sigma, v, x = sr.Covariance("Sigma", d), sr.Vector("v", d), sr.Vector("x", d)
    X = sr.GaussianData("X", n, Sigma)
    Sh, I = sr.sample_covariance(X, ddof=0), sr.I(d)
    m = sr.sqrt(Sh + s2 * I) * sr.power(Sh + sT2 * I, -sp.Rational(1, 2)) * x
    return sr.var(v.T * m)


def measure(name, expr, bind):
    t0 = time.perf_counter()
    f = sr.deterministic_equivalent(expr).compile()
    t_derive = time.perf_counter() - t0
    tracemalloc.start()
    res = f.solve(**bind)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    t0 = time.perf_counter()
    res = f.solve(**bind)
    t_solve = time.perf_counter() - t0
    err = np.max(np.asarray(res.quad_error)) if "quad_error" in res else float("nan")
    print(f"{name:38s} value {float(np.ravel(res.value)[0]):.10g}  success {res.success}  quad_error {err:.2g}  "
          f"derive {t_derive:6.2f} s  solve {t_solve:6.2f} s  peak (tracemalloc) {peak / 2**20:7.1f} MiB",
          flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    for D, t in ([(100, 30)] if args.quick else [(100, 30), (400, 10), (400, 30)]):
        s = np.arange(1, D + 1) ** -1.5
        bind = dict(Sigma=s, n=2 * D, w=rng.standard_normal(D) / np.sqrt(D), sigma2=0.25, lr=1.0)
        measure(f"GD risk, power law, d={D}, t={t}, η=1", gd_risk(t), bind)
    for D in ([400] if args.quick else [400, 1600]):
        bind = dict(Sigma=np.ones(D), n=D, v=np.eye(D)[0], x=np.ones(D), sigma2=0.1, sigmaT2=10.0)
        measure(f"sampling-map variance, d=n={D}", map_var(), bind)
    print(f"max resident set (whole process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
