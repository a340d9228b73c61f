"""Forms across two eigenbases in the Monte Carlo evaluator.

A form such as ``uᵀ f₁(Σ̂₁) f₂(Σ̂₂) w`` (two independent training sets: the
split disagreement of diffusion denoisers) is the chain
``uᵀ V₁ diag(f₁) V₁ᵀ V₂ diag(f₂) V₂ᵀ w`` batched over a grid of N noise
levels. ``contract.trace`` sweeps it from the thin end with BLAS
matrix–vector products; this script times that against the einsum path it
used before (same contraction order) and prints the ratio, then the draw rate
of the whole split disagreement against two eigendecompositions (its floor),
and the peak memory of each (``tracemalloc``) with the process's maximum
resident set.

    python benchmarks/contract.py [--d 1600] [--grid 3] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _measure import max_rss_mib, peak_mib  # noqa: E402

import symrmt as sr
from symrmt.montecarlo import contract
from symrmt.montecarlo.values import Dense, Diag


class _Basis:
    def __init__(self, vectors):
        self.vectors = vectors


def best(f, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=1600)
    ap.add_argument("--grid", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    d, N = args.d, args.grid
    b1, b2 = (_Basis(np.linalg.qr(rng.standard_normal((d, d)))[0]) for _ in range(2))
    u = rng.standard_normal((d, 1))
    fs = (Dense(u.T), Diag(rng.random((N, d)), b1), Diag(rng.random((N, d)), b2), Dense(u))
    elems = contract._elements(fs, cyclic=True)
    a, b = contract.trace(fs), contract._einsum(elems, cyclic=True)
    t_sweep = best(lambda: contract.trace(fs), args.repeats)
    t_einsum = best(lambda: contract._einsum(elems, cyclic=True), args.repeats)
    A = rng.standard_normal((d, d))
    A = A @ A.T / d
    t_eigh = best(lambda: np.linalg.eigh(A), max(2, args.repeats // 2))
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    print(f"d = {d}, grid N = {N}; BLAS threads {threads or 'default'}")
    print(f"form over two eigenbases: sweep {1e3 * t_sweep:7.1f} ms, einsum path {1e3 * t_einsum:7.1f} ms, "
          f"speed-up {t_einsum / t_sweep:5.1f}×, max rel. diff {np.max(np.abs(a - b) / np.abs(b)):.1e}")

    m_sweep, m_einsum = peak_mib(lambda: contract.trace(fs)), peak_mib(lambda: contract._einsum(elems, cyclic=True))
    print(f"  peak memory (tracemalloc): sweep {m_sweep:.1f} MiB, einsum path {m_einsum:.1f} MiB")
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "derivations"))
    import diffusion_consistency as dc
    model = dc.Model()
    st = dc.Setting(d, 1.0, 0)
    expr = model.expressions()["split/known"]
    bind = dict(Sigma=st.s, mu=st.mu, x=st.x_typ, n=2 * d, sigma2=np.logspace(-2, 0, N))
    sr.monte_carlo(expr, trials=1, seed=1, progress=False, **bind)   # warm-up
    T = 4
    t0 = time.perf_counter()
    sr.monte_carlo(expr, trials=T, seed=0, progress=False, **bind)
    per_draw = (time.perf_counter() - t0) / T
    print(f"split disagreement ½|D̂₁(x) − D̂₂(x)|², n = {2 * d}: {per_draw:.2f} s per draw "
          f"= {per_draw / t_eigh:.1f} × eigh ({1e3 * t_eigh:.0f} ms; a draw needs 2 eigh + 2 Gram matrices)")
    m_draw = peak_mib(lambda: sr.monte_carlo(expr, trials=1, seed=0, progress=False, **bind))
    m_eigh = peak_mib(lambda: np.linalg.eigh(A))
    print(f"  peak memory (tracemalloc): one Monte Carlo draw {m_draw:.1f} MiB = {m_draw / m_eigh:.1f} × one eigh "
          f"({m_eigh:.1f} MiB); process max RSS {max_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
