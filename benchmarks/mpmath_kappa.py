"""κ at 80 digits: the compiled mpmath backend against a plain mpmath Newton.

The baseline is what a user writes by hand: for each ridge λ on the grid,
Newton on ``κ(1 − df₁(κ)/n) − λ`` with ``df₁ = Σ s/(s+κ)`` summed by
``mpmath.fsum``, from ``κ₀ = λ + Tr Σ/n`` (above the root: monotone
convergence), to a relative step of ``10^(−dps+3)``. Both run in this
process on the same spectrum and grid; the script prints both timings, the
ratio (> 1: symrmt faster), the largest relative difference of κ, and the
peak memory of each (``tracemalloc``) with the process's maximum resident set.

    python benchmarks/mpmath_kappa.py [--d 400] [--points 20] [--dps 80]
"""
import os
import sys
import argparse
import time

import mpmath
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import max_rss_mib, peak_mib  # noqa: E402

import symrmt as sr


def plain_newton(s, n, lams, dps):
    out = []
    with mpmath.workdps(dps):
        s = [mpmath.mpf(v) for v in s]
        n = mpmath.mpf(n)
        tol = mpmath.mpf(10) ** (-(dps - 3))
        trS = mpmath.fsum(s)
        for lam in lams:
            lam = mpmath.mpf(lam)
            k = lam + trS / n
            for _ in range(200):
                df = mpmath.fsum(v / (v + k) for v in s)
                ddf = -mpmath.fsum(v / (v + k) ** 2 for v in s)
                F = k * (1 - df / n) - lam
                J = (1 - df / n) - k * ddf / n
                step = F / J
                k -= step
                if abs(step) <= tol * abs(k):
                    break
            out.append(k)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=400)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--points", type=int, default=20)
    ap.add_argument("--dps", type=int, default=80)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)

    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    G = (X.T * X / n + lam * sr.I(d)).inverse()
    f = sr.deterministic_equivalent(sr.ntr(Sigma * G)).compile(backend="mpmath", dps=a.dps)

    with mpmath.workdps(a.dps + 10):
        s = np.array([mpmath.mpf(j) ** mpmath.mpf("-1.5") for j in range(1, a.d + 1)], dtype=object)
        lams = [mpmath.mpf(10) ** (mpmath.mpf(-3) + 4 * mpmath.mpf(i) / (a.points - 1)) for i in range(a.points)]
    grid = np.array(lams, dtype=object)

    t_ours, t_base = [], []
    for _ in range(a.repeat):
        t = time.perf_counter()
        k_ours = f.solve(Sigma=s, n=a.n, lam=grid).x["kappa"]
        t_ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        k_base = plain_newton(s, a.n, lams, a.dps)
        t_base.append(time.perf_counter() - t)
    with mpmath.workdps(a.dps):
        diff = max(abs(x - y) / abs(y) for x, y in zip(k_ours, k_base))
    to, tb = min(t_ours), min(t_base)
    print(f"kappa at {a.dps} digits, d = {a.d}, n = {a.n}, {a.points} ridges (best of {a.repeat})")
    print(f"  symrmt mpmath backend : {to:8.3f} s")
    print(f"  plain mpmath Newton   : {tb:8.3f} s")
    print(f"  ratio (plain / symrmt): {tb / to:8.2f}   (> 1: symrmt faster)")
    print(f"  max relative difference of kappa: {mpmath.nstr(diff, 3)}")
    m_ours = peak_mib(lambda: f.solve(Sigma=s, n=a.n, lam=grid))
    m_base = peak_mib(lambda: plain_newton(s, a.n, lams, a.dps))
    print(f"  peak memory (tracemalloc): symrmt {m_ours:.2f} MiB, plain {m_base:.2f} MiB "
          f"(ratio {m_ours / m_base:.2f}); process max RSS "
          f"{max_rss_mib():.0f} MiB")
    return tb / to, diff


if __name__ == "__main__":
    main()
