"""Gradient-descent risk curves on one shared contour (issue 17, item 2; issue 13).

Risk of full-batch GD from w₀ = 0, R_t = (w_t − w)ᵀΣ(w_t − w) + σ², written
with sr.matrix_function(lambda x: (1 - (1 - lr*x)**t)/x, Sh) and a symbolic
integer t, derived once by the engine. Σ with power-law eigenvalues
s_i = i^-1.5, d = 1000, n = 2000, σ² = 0.25, w Gaussian with |w| ≈ 1.
The curve: t = 1 … 100 (100 times) × 10 learning rates η = 0.1 … 1.0
(η = 1 ≈ 1/edge), evaluated by symrmt.numerics.contour.curve at rtol 1e-8.

Prints
* the time of the whole curve (second call: κ on the nodes, kernels and the
  contraction; the first call adds the symbolic preparation, cached per derived
  value), the node count, its largest error estimate;
* the baseline in the same process: the current route, de.compile().solve per
  point, timed on 2 points and scaled to the 1000 points of the curve, and the
  largest relative difference between the two at those points;
* peak memory (tracemalloc) of the curve and of one per-point solve, their
  ratio, and the process's maximum resident set.

Run: python benchmarks/contour.py [--quick]   (--quick: d = 200)
"""
from __future__ import annotations

import resource
import sys
import time
import tracemalloc

import numpy as np

import symrmt as sr
from symrmt.numerics.contour import curve


def main(d=1000):
    n, dd = sr.dims("n d")
    lr, s2 = sr.scalar("lr"), sr.scalar("sigma2")
    t = sr.scalar("t", integer=True)
    Sigma = sr.Covariance("Sigma", dd)
    w = sr.Vector("w", dd)
    X = sr.GaussianData("X", n, Sigma)
    eps = sr.GaussianNoise("eps", n, s2)
    Sh = X.T * X / n
    wt = sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh) * X.T * (X * w + eps) / n
    risk = (wt - w).T * Sigma * (wt - w) + s2

    t0 = time.perf_counter()
    de = sr.deterministic_equivalent(risk)
    t_derive = time.perf_counter() - t0

    s = np.arange(1, d + 1) ** -1.5
    wv = np.random.default_rng(0).standard_normal(d) / np.sqrt(d)
    ts = np.arange(1, 101)
    etas = np.linspace(0.1, 1.0, 10)
    bind = dict(Sigma=s, n=2 * d, w=wv, sigma2=0.25, t=ts[:, None], lr=etas[None, :])

    t0 = time.perf_counter()
    first = curve(de, bind, over=("t", "lr"))
    t_first = time.perf_counter() - t0
    tracemalloc.start()
    t0 = time.perf_counter()
    res = curve(de, bind, over=("t", "lr"))
    t_curve = time.perf_counter() - t0
    peak_curve = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.success and np.array_equal(res.value, first.value)
    rel_err = float(np.max(res.error / np.abs(res.value)))

    # baseline: the engine's per-point route (its own contour per point)
    f = de.compile()
    pts = [(99, 9), (9, 4)]                        # (t = 100, η = 1.0), (t = 10, η = 0.5)
    times, diffs = [], []
    for i, j in pts:
        tracemalloc.start()
        t0 = time.perf_counter()
        r = f.solve(Sigma=s, n=2 * d, w=wv, sigma2=0.25, t=int(ts[i]), lr=float(etas[j]))
        times.append(time.perf_counter() - t0)
        peak_point = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        diffs.append(abs(float(r.value) - res.value[i, j]) / abs(float(r.value)))
    per_point = float(np.mean(times))
    baseline = per_point * ts.size * etas.size

    print(f"GD risk curve, d = {d}, n = {2 * d}, power law s_i = i^-1.5: {ts.size} times x {etas.size} learning rates")
    print(f"  derivation (once)                      {t_derive:8.2f} s")
    print(f"  curve, first call (with preparation)   {t_first:8.2f} s")
    print(f"  curve                                  {t_curve:8.3f} s   ({res.nodes} nodes per contour, "
          f"contour A = {res.scale[0]:.5f}, max error estimate {rel_err:.1e} relative)")
    print(f"  baseline: de.compile().solve per point {per_point:8.2f} s/point x {ts.size * etas.size} = "
          f"{baseline:.0f} s  (timed on {len(pts)} points)")
    print(f"  ratio baseline / curve                 {baseline / t_curve:8.0f}x")
    print(f"  agreement at the timed points          {max(diffs):.1e} relative")
    print(f"  peak memory (tracemalloc): curve {peak_curve / 2 ** 20:.0f} MiB, one per-point solve "
          f"{peak_point / 2 ** 20:.0f} MiB (ratio {peak_curve / peak_point:.1f}; limit 1024); process max RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return t_curve


if __name__ == "__main__":
    main(200 if "--quick" in sys.argv else 1000)
