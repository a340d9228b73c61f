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

Pooled case (``--pooled``): the gradient-descent risk of the pooled ridge
``M = (X₁ᵀX₁ + X₂ᵀX₂)/(n₁+n₂) + λ``, non-commuting ``Σ₁``, ``Σ₂`` bound as
full matrices (tests/test_pfn_spectral.py's GD_RISK, t = 3, η = 0.25,
λ = 0.1, n₁ = d/2, n₂ = d), evaluated by ``curve`` on one shared contour
(general law once per node for every word, resolvents inverted once per node,
two-contour traces as matrix products over node pairs) against the old route
``de.compile().solve`` (each word its own contour, adaptive quadrature) in the
same process at d = 16, with peak memory (tracemalloc) of both; then the new
route at d = 64 and a curve over 20 times t = 1…20 on one contour.

Run: python benchmarks/contour.py [--quick] [--pooled [--no-old] [--old-memory]]   (--quick: d = 200;
--old-memory: the old route run twice, once under tracemalloc)
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


def pooled(old=True):
    """The pooled gradient-descent case (module docstring); returns the new route's time at d = 16."""
    import pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from tests.test_pfn_spectral import GD_RISK, _laws

    def bind(D, **kw):
        Sa, Sb = _laws(D)
        wv = np.random.default_rng(5).standard_normal(D) / np.sqrt(D)
        return dict(Sigma1=Sa, Sigma2=Sb, n1=D // 2, n2=D, d=D, lr=0.25, t=3, lam=0.1, sigma2=0.5, w=wv, **kw)

    from symrmt.numerics import contour as C

    def measured(fn, fresh=False, memory=True):
        """``(result, seconds, peak MiB)``: timed without tracemalloc (it slows Python
        allocation several-fold), the peak from a second call under tracemalloc;
        ``fresh``: the symbolic preparation cache emptied before each call."""
        if fresh:
            C._CACHE.clear()
        t0 = time.perf_counter()
        out = fn()
        sec = time.perf_counter() - t0
        if not memory:
            return out, sec, float("nan")
        if fresh:
            C._CACHE.clear()
        tracemalloc.start()
        try:
            fn()
            return out, sec, tracemalloc.get_traced_memory()[1] / 2 ** 20
        finally:
            tracemalloc.stop()

    print("Pooled GD risk, M = (X1'X1 + X2'X2)/(n1+n2) + lam, full non-commuting Sigma1, Sigma2; t = 3, lr = 0.25")
    de, t_derive, _ = measured(lambda: sr.deterministic_equivalent(GD_RISK), memory=False)
    print(f"  derivation                                  {t_derive:8.2f} s   ({len(de.groups)} groups of unknowns)")
    b16 = bind(16)
    first, t_first, m_first = measured(lambda: curve(de, b16, over=("t",)), fresh=True)
    new, t_new, m_new = measured(lambda: curve(de, b16, over=("t",)))
    assert new.success
    print(f"  d = 16, new route, first call (+ preparation) {t_first:6.2f} s   peak {m_first:6.1f} MiB")
    print(f"  d = 16, new route                           {t_new:8.2f} s   peak {m_new:6.1f} MiB   "
          f"({new.nodes} nodes, error estimate {float(new.error) / abs(float(new.value)):.1e} relative)")
    print(f"  d = 16: derivation + first call             {t_derive + t_first:8.2f} s")
    if old:
        f, t_comp, _ = measured(lambda: de.compile(), memory=False)
        r, t_old, m_old = measured(lambda: f.solve(**b16), memory="--old-memory" in sys.argv)
        print(f"  d = 16, old route: compile                  {t_comp:8.2f} s")
        print(f"  d = 16, old route: solve                    {t_old:8.2f} s   peak {m_old:6.1f} MiB")
        mem = (f"memory {m_old / m_new:.0f}x" if np.isfinite(m_old) else
               "old-route peak memory: run with --old-memory (it runs the old route twice)")
        print(f"  ratio old / new (evaluation)                {t_old / t_new:8.0f}x;  "
              f"(compile + solve) / first call {(t_comp + t_old) / t_first:.0f}x;  {mem}")
        print(f"  agreement                                   "
              f"{abs(float(r.value) - float(new.value)) / abs(float(r.value)):.1e} relative "
              f"(old {float(r.value):.15g}, new {float(new.value):.15g})")
    b64 = bind(64)
    r64, t64, m64 = measured(lambda: curve(de, b64, over=("t",)))
    print(f"  d = 64, new route                           {t64:8.2f} s   peak {m64:6.1f} MiB   ({r64.nodes} nodes, "
          f"success {r64.success})")
    for D in (16, 64):
        bb = bind(D, ) | dict(t=np.arange(1, 21))
        rc, tc, mc = measured(lambda: curve(de, bb, over=("t",), rtol=1e-6))
        print(f"  d = {D}, curve over t = 1..20 (rtol 1e-6)   {tc:8.2f} s   peak {mc:6.1f} MiB   ({rc.nodes} nodes, "
              f"success {rc.success}; one contour, δ solved once per node)")
    print(f"  process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return t_new


if __name__ == "__main__":
    if "--pooled" in sys.argv:
        pooled(old="--no-old" not in sys.argv)
    else:
        main(200 if "--quick" in sys.argv else 1000)
