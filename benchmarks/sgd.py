"""One-pass SGD learning curve: the exact moment recursion on a 1000-point
step grid at d = 1000 (target < 0.5 s), against a dense d×d reference.

Σ with power-law eigenvalues s_i = i^-1.5, target w*_i ∝ i^-0.75, σ² = 0.05,
B = 8, η = 1; the grid is the first 1000 distinct integers of a geometric grid on [1, 20000].
Prints the time (best of several repeats) and the largest relative
difference to the same recursion written on the full second-moment matrix
M_{t+1} = M − η(ΣM+MΣ) + η²(1+1/B)ΣMΣ + (η²/B)Σ(Tr ΣM + σ²) (dense, d = 200,
first 300 steps; target ≤ 1e-12).

Multi-pass (n = 2d, B = 8): the two-point deterministic equivalent
(``symrmt/dynamics/sgd_equivalent.py``) at d = 1000 — the derivation (once
per process), the spectral data at the contour nodes (once per problem and
contour), then a 1000-point curve t = 0 … 999 (η = 0.25), and the whole risk
surface over 100 t × 10 η from one set of spectral data. Every time is also
given as a ratio to a baseline measured in the same process (one
``numpy.linalg.eigh`` of a d×d symmetric matrix), so runs on different
machines compare. Peak memory: ``tracemalloc`` of the one-pass curve, the
dense reference and the multi-pass curve, and the process's maximum resident
set.

Run: python benchmarks/sgd.py
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import best_time, max_rss_mib, peak_mib  # noqa: E402

from symrmt.dynamics import SGD
from symrmt.dynamics import sgd_equivalent as se


def multipass(d, s, w, s2, base):
    n, B = 2 * d, 8
    t0 = time.perf_counter()
    se._derived("linear")
    se._separable("linear")
    t_der = time.perf_counter() - t0
    t0 = time.perf_counter()
    eq = se.MultiPassEquivalent(s, w, s2, n, lr_max=0.25, t_max=999)
    t_setup = time.perf_counter() - t0
    t = np.arange(1000)
    t_curve, (R, L, err) = best_time(lambda: eq.curve(t, 0.25, B))
    print(f"multi-pass equivalent, d = {d}, n = {n}, B = {B}: derivation {t_der:.2f} s (once per process), "
          f"spectral data at {eq.N} contour nodes {t_setup:.2f} s ({t_setup / base:.0f} eigh), "
          f"1000-point curve t = 0..999: {t_curve:.3f} s ({t_curve / base:.1f} eigh; target < 0.5 s) "
          f"{'OK' if t_curve < 0.5 else 'SLOW'}; max quadrature error estimate {np.max(err / R):.1e} relative")
    lrs = np.linspace(0.05, 0.5, 10)
    tt = np.unique(np.round(np.geomspace(1, 400, 200)).astype(int))[:100]
    t0 = time.perf_counter()
    eq2 = se.MultiPassEquivalent(s, w, s2, n, lr_max=lrs.max(), t_max=int(tt.max()))
    t_setup2 = time.perf_counter() - t0
    t_grid, surf = best_time(lambda: np.array([eq2.curve(tt, lr, B)[0] for lr in lrs]), 2)
    print(f"risk surface 100 t (1..{tt.max()}) × 10 η ({lrs[0]:g}..{lrs[-1]:g}): spectral data {t_setup2:.2f} s, "
          f"surface {t_grid:.3f} s ({t_grid / base:.1f} eigh; target < 1 s) {'OK' if t_grid < 1 else 'SLOW'}; "
          f"shape {surf.shape}")
    print(f"peak memory (tracemalloc): multi-pass 1000-point curve {peak_mib(lambda: eq.curve(t, 0.25, B)):.1f} MiB")


def dense_reference(s, w, s2, lr, B, steps):
    S = np.diag(s)
    M = np.outer(w, w)
    out, T = [], max(steps)
    for k in range(T + 1):
        if k in steps:
            out.append(np.trace(S @ M) + s2)
        M = M - lr * (S @ M + M @ S) + lr ** 2 * (1 + 1 / B) * S @ M @ S + lr ** 2 / B * S * (np.trace(S @ M) + s2)
    return np.array(out)


def main():
    d, B, lr, s2 = 1000, 8, 1.0, 0.05
    s = np.arange(1, d + 1) ** -1.5
    w = np.arange(1, d + 1) ** -0.75
    w /= np.linalg.norm(w)
    t = np.unique(np.round(np.geomspace(1, 20000, 2000)).astype(int))[:1000]
    assert len(t) == 1000, len(t)
    g = SGD(s, w, s2, lr=lr, batch=B)
    best, curve = best_time(lambda: g.theory(t), 5)
    print(f"one-pass recursion, d = {d}, 1000-point grid up to t = {t.max()}: {best:.3f} s "
          f"(target < 0.5 s) {'OK' if best < 0.5 else 'SLOW'}")
    dd = 200
    s2_, w2 = s[:dd], w[:dd] / np.linalg.norm(w[:dd])
    steps = [0, 1, 10, 100, 300]
    ref = dense_reference(s2_, w2, s2, lr, B, set(steps))
    got = SGD(s2_, w2, s2, lr=lr, batch=B).theory(steps).risk
    err = np.max(np.abs(got - ref) / np.abs(ref))
    print(f"vs dense second-moment recursion (d = {dd}): max rel diff {err:.2e} (target ≤ 1e-12)")
    print(f"risk at t = 1, 100, 10000: {np.interp([1, 100, 10000], t, curve.risk)}")
    M = np.random.default_rng(0).standard_normal((d, d))
    M = M + M.T
    base, _ = best_time(lambda: np.linalg.eigh(M))
    print(f"baseline: eigh of a {d}×{d} symmetric matrix {base:.3f} s; one-pass curve = {best / base:.2f} eigh")
    m_eigh = peak_mib(lambda: np.linalg.eigh(M))
    m_curve = peak_mib(lambda: g.theory(t))
    m_dense = peak_mib(lambda: dense_reference(s2_, w2, s2, lr, B, set(steps)))
    print(f"peak memory (tracemalloc): one-pass curve {m_curve:.1f} MiB = {m_curve / m_eigh:.2f} × one eigh "
          f"({m_eigh:.1f} MiB); dense reference (d = {dd}) {m_dense:.1f} MiB")
    multipass(d, s, w, s2, base)
    print(f"process max RSS {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
