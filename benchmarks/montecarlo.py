"""Monte Carlo throughput against a bare eigendecomposition (issue 17 items 3 and 6).

Baseline, measured in the same process and interleaved with the Monte Carlo
runs: ``numpy.linalg.eigh`` (eigenvalues and eigenvectors, LAPACK ``syevd``) of
one fixed ``d×d`` symmetric positive definite matrix — a sample covariance
``XᵀX/n`` of the same Σ, so that both see the same spectrum — called
``--repeats`` times. (The rate of SciPy's ``eigh(driver="evd",
overwrite_a=True)``, which the Monte Carlo uses per draw, is printed for
information.) For each size ``d`` (``n = 2d``, power-law Σ ``s_i = i^-1.5``,
100-point λ grid) it times draws per second of

    (1/d) Tr[Σ̂(Σ̂+λ)⁻¹]                          eigenvalues only (target ≥ 0.6)
    (1/d) Tr[Σ(Σ̂+λ)⁻¹]                          eigenvectors (target ≥ 0.8)
    vᵀ(Σ̂+λ)⁻¹x                                  a quadratic form, v, x fixed (≥ 0.8)
    (ŵ−w̄)ᵀΣ(ŵ−w̄) + σ²,  ŵ = (Σ̂+λ)⁻¹Xᵀy/n,  y = Xw̄ + ε      the ridge risk (≥ 0.8)

with ``sampling="direct"`` (X drawn entry by entry, ``n·d`` normals) and
``sampling="gram"`` (the Gram matrix by the Bartlett decomposition, ``d²/2``
normals; ``Xᵀε`` as ``Rᵀg``), and prints their ratios to the eigh rate:

* ``run``: a whole ``monte_carlo`` call of ``--trials`` draws (compilation and
  the planning draw included) — what a user sees;
* ``marginal``: ``(T − 2)/(t(T) − t(2))``, the cost of one more draw.

Timing is CPU time of this process (``time.process_time``) by default, which
is robust to other jobs on a shared machine when BLAS runs one thread (set
``OPENBLAS_NUM_THREADS=1``; with several BLAS threads use ``--clock wall``).
Rates are medians over ``--rounds`` interleaved rounds. Peak memory: the
largest traced allocation peak of one Monte Carlo call (``tracemalloc``: NumPy
arrays included), and the process's maximum resident set.

    OPENBLAS_NUM_THREADS=1 python benchmarks/montecarlo.py [--sizes 400 1000] [--trials 20] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tracemalloc

import numpy as np

import symrmt as sr
from symrmt.montecarlo import monte_carlo

TARGETS = {"vals": 0.6, "vecs": 0.8, "form": 0.8, "risk": 0.8}
NAMES = {"vals": "(1/d)Tr[Σ̂(Σ̂+λ)⁻¹]  eigenvalues", "vecs": "(1/d)Tr[Σ(Σ̂+λ)⁻¹]  eigenvectors",
         "form": "vᵀ(Σ̂+λ)⁻¹x          eigenvectors", "risk": "ridge risk            eigenvectors"}


def _clock(kind):
    return time.process_time if kind == "cpu" else time.perf_counter


def eigh_rates(A, repeats, clock):
    """``(numpy.linalg.eigh, scipy evd)`` calls per second on ``A``."""
    from scipy.linalg import eigh
    np.linalg.eigh(A)
    t0 = clock()
    for _ in range(repeats):
        np.linalg.eigh(A)
    t1 = clock()
    for _ in range(repeats):
        eigh(A.copy(), driver="evd", overwrite_a=True, check_finite=False)
    t2 = clock()
    return repeats / (t1 - t0), repeats / (t2 - t1)


def mc_times(expr, trials, clock, sampling, bindings):
    """``(t(2), t(trials))``: clock seconds of two whole runs."""
    t0 = clock()
    monte_carlo(expr, trials=2, seed=0, progress=False, sampling=sampling, **bindings)
    t1 = clock()
    monte_carlo(expr, trials=trials, seed=0, progress=False, sampling=sampling, **bindings)
    t2 = clock()
    return t1 - t0, t2 - t1


def peak_bytes(expr, sampling, bindings):
    tracemalloc.start()
    try:
        monte_carlo(expr, trials=2, seed=0, progress=False, sampling=sampling, **bindings)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def problem(D, grid):
    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    Sh = X.T * X / n
    G = (Sh + lam * sr.I(d)).inverse()
    v, x, wbar = sr.Vector("v", d), sr.Vector("x", d), sr.Vector("wbar", d)
    s2 = sr.scalar("s2")
    eps = sr.GaussianNoise("eps", n, s2)
    w_hat = G * X.T * (X * wbar + eps) / n
    base = dict(Sigma=np.arange(1, D + 1) ** -1.5, n=2 * D, lam=np.logspace(-3, 1, grid))
    vrng = np.random.default_rng(1)
    return {
        "vals": (sr.ntr(Sh * G), base),
        "vecs": (sr.ntr(Sigma * G), base),
        "form": (v.T * G * x, dict(base, v=vrng.standard_normal(D), x=vrng.standard_normal(D))),
        "risk": ((w_hat - wbar).T * Sigma * (w_hat - wbar) + s2,
                 dict(base, wbar=vrng.standard_normal(D) / np.sqrt(D), s2=0.25)),
    }


def run_size(D, args, clock):
    cases = problem(D, args.grid)
    rng = np.random.default_rng(0)
    s = cases["vals"][1]["Sigma"]
    Z = rng.standard_normal((2 * D, D)) * np.sqrt(s)
    A = Z.T @ Z / (2 * D)
    keys = [(k, smp) for k in cases for smp in ("direct", "gram")]
    for k, smp in keys:  # warm-up: imports, caches, first compilation
        monte_carlo(cases[k][0], trials=2, seed=1, progress=False, sampling=smp, **cases[k][1])
    eig, evd, runs = [], [], {key: [] for key in keys}
    for _ in range(args.rounds):
        e, f = eigh_rates(A, args.repeats, clock)
        eig.append(e)
        evd.append(f)
        for key in keys:
            runs[key].append(mc_times(cases[key[0]][0], args.trials, clock, key[1], cases[key[0]][1]))
    e = float(np.median(eig))
    print(f"\nd={D}, n={2 * D}, {args.grid}-point λ grid, {args.trials} draws per run, "
          f"median of {args.rounds} rounds ({args.clock} time)")
    print(f"  baseline numpy.linalg.eigh ({D}×{D} SPD): {e:8.2f} /s   "
          f"(scipy eigh driver='evd', overwrite_a: {np.median(evd):.2f} /s, ratio {np.median(evd) / e:.2f})")
    print(f"  {'expression':38s} {'sampling':8s} {'run /s':>8s} {'ratio':>6s} {'marg /s':>8s} {'ratio':>6s}"
          f" {'target':>6s} {'peak MiB':>8s}")
    out = {}
    for key in keys:
        t2 = np.array([r[0] for r in runs[key]])
        tT = np.array([r[1] for r in runs[key]])
        rate = float(np.median(args.trials / tT))
        marg = float(np.median((args.trials - 2) / np.maximum(tT - t2, 1e-9)))
        peak = peak_bytes(cases[key[0]][0], key[1], cases[key[0]][1]) / 2**20
        out[key] = (rate / e, marg / e)
        print(f"  {NAMES[key[0]]:38s} {key[1]:8s} {rate:8.2f} {rate / e:6.2f} {marg:8.2f} {marg / e:6.2f}"
              f" {TARGETS[key[0]]:6.1f} {peak:8.1f}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 1000])
    ap.add_argument("--grid", type=int, default=100)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    args = ap.parse_args(argv)
    clock = _clock(args.clock)
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load {load:.1f}, BLAS threads {threads or 'default'}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}")
    if args.clock == "cpu" and not threads:
        print("  note: CPU time with multithreaded BLAS adds up all threads; set OPENBLAS_NUM_THREADS=1")
    out = {D: run_size(D, args, clock) for D in args.sizes}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nprocess peak resident set: {rss:.0f} MiB")
    return out


if __name__ == "__main__":
    main()
