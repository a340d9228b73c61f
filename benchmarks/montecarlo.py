"""Monte Carlo throughput against a bare eigendecomposition (issue 17 items 3 and 6).

Baseline, measured in the same process and interleaved with the Monte Carlo
draws: ``numpy.linalg.eigh`` (eigenvalues and eigenvectors, LAPACK ``syevd``)
of one fixed ``d×d`` symmetric positive definite matrix — a sample covariance
``XᵀX/n`` of the same Σ, so that both see the same spectrum. For each size
``d`` (``n = 2d``, power-law Σ ``s_i = i^-1.5``, 100-point λ grid) it times

    (1/d) Tr[Σ̂(Σ̂+λ)⁻¹]                          eigenvalues only (target ≥ 0.6)
    (1/d) Tr[Σ(Σ̂+λ)⁻¹]                          eigenvectors (target ≥ 0.8)
    vᵀ(Σ̂+λ)⁻¹x                                  a quadratic form, v, x fixed (≥ 0.8)
    (ŵ−w̄)ᵀΣ(ŵ−w̄) + σ²,  ŵ = (Σ̂+λ)⁻¹Xᵀy/n,  y = Xw̄ + ε      the ridge risk (≥ 0.8)

with ``sampling="gram"`` (the default: the Gram matrix by the Bartlett
decomposition, ``d²/2`` normals; ``Xᵀε`` as ``Rᵀg``) and ``sampling="direct"``
(X drawn entry by entry, ``n·d`` normals), and prints as ratios to the eigh:

* ``per draw``: the median time of one draw against the median time of a bare
  eigh run right after each draw (from the progress callback, outside the
  draw's time) — paired, so that load from other jobs hits both alike;
* ``run``: whole ``monte_carlo`` calls of ``--trials`` draws (compilation,
  the planning draw, every draw) against as many bare eighs — what a user sees.

The ``path`` column says how the plan decomposes the random core: ``eigvalsh``
(eigenvalues only), ``dsyevd`` (eigenvectors formed) or ``factored``
(eigenvectors only applied to thin blocks — the form, the risk's grid of
``ŵ(λ)`` — kept as the tridiagonal reduction's reflectors and the tridiagonal
eigenvectors, ``dsyevd``'s back-transformation skipped:
``symrmt.montecarlo.values.Basis._factor``).

Timing is CPU time of this process (``time.process_time``) by default, which
is robust to other jobs on a shared machine when BLAS runs one thread (set
``OPENBLAS_NUM_THREADS=1``; with several BLAS threads use ``--clock wall``).
Peak memory: the largest traced allocation peak of one Monte Carlo call
(``tracemalloc``: NumPy arrays included), and the process's maximum resident
set.

    OPENBLAS_NUM_THREADS=1 python -u benchmarks/montecarlo.py [--sizes 400 1000] [--trials 8] [--rounds 2]
        [--cases vals vecs form risk] [--sampling gram direct]

(about 1.5 min on an idle core with the defaults; each row's per-draw median is
over ``rounds × (trials − 1)`` paired draws.)
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


def paired_run(expr, trials, clock, sampling, bindings, A):
    """One whole ``monte_carlo`` call of ``trials`` draws with one bare
    ``numpy.linalg.eigh(A)`` timed right after each draw (from the progress
    callback, outside the draw's own time), so that machine load hits both
    alike. Returns ``(run, draws, eighs)``: the call's own time (compilation,
    planning and all draws; the eigh calls subtracted), the per-draw times
    (trial 1 on; trial 0's interval holds compilation and planning) and the
    eigh times."""
    draws, eighs = [], []
    state = {"last": None, "spent": 0.0}

    def tick(done, total):
        t = clock()
        if state["last"] is not None:
            draws.append(t - state["last"])
        t0 = clock()
        np.linalg.eigh(A)
        t1 = clock()
        eighs.append(t1 - t0)
        state["spent"] += clock() - t
        state["last"] = clock()

    t0 = clock()
    monte_carlo(expr, trials=trials, seed=0, progress=tick, sampling=sampling, **bindings)
    run = clock() - t0 - state["spent"]
    return run, np.array(draws), np.array(eighs)


def peak_bytes(expr, sampling, bindings):
    tracemalloc.start()
    try:
        monte_carlo(expr, trials=2, seed=0, progress=False, sampling=sampling, **bindings)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def eigen_path(expr, sampling, bindings):
    """How the plan decomposes the random core (see the module docstring)."""
    from symrmt.montecarlo.bindings import bind
    from symrmt.montecarlo.estimand import parse
    from symrmt.montecarlo.program import Program
    est = parse(expr)
    prog = Program(est.observables, bind(est.expr, bindings), sampling=sampling)
    plan = prog.make_plan(np.random.SeedSequence(0))
    prog.drop_planning_draw()
    if getattr(plan, "thin_vectors", None):
        return "factored"
    return "dsyevd" if plan.need_vectors else "eigvalsh"


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
    keys = [(k, smp) for k in cases if k in args.cases for smp in args.sampling]
    for k, smp in keys:  # warm-up: imports, caches, first compilation
        monte_carlo(cases[k][0], trials=2, seed=1, progress=False, sampling=smp, **cases[k][1])
    eig, evd = eigh_rates(A, args.repeats, clock)
    runs = {key: [] for key in keys}
    for _ in range(args.rounds):
        for key in keys:
            runs[key].append(paired_run(cases[key[0]][0], args.trials, clock, key[1], cases[key[0]][1], A))
    print(f"\nd={D}, n={2 * D}, {args.grid}-point λ grid, {args.trials} draws per run, {args.rounds} runs per row "
          f"({args.clock} time)")
    print(f"  baseline numpy.linalg.eigh ({D}×{D} SPD, power-law sample covariance): {eig:8.2f} /s   "
          f"(scipy eigh driver='evd', overwrite_a: {evd:.2f} /s, ratio {evd / eig:.2f})")
    print("  per draw: median draw time against the median of the bare eigh timed right after each draw;")
    print("  run: whole monte_carlo calls (compilation, planning draw, all draws) against as many bare eigh")
    print(f"  {'expression':38s} {'sampling':8s} {'eigh ms':>8s} {'draw ms':>8s} {'ratio':>6s} {'run /s':>7s} "
          f"{'ratio':>6s} {'target':>6s} {'peak MiB':>8s}  path")
    out = {}
    for key in keys:
        run = np.array([r[0] for r in runs[key]])
        draws = np.concatenate([r[1] for r in runs[key]])
        eighs = np.concatenate([r[2] for r in runs[key]])
        e_ms, d_ms = 1e3 * np.median(eighs), 1e3 * np.median(draws)
        per_run_eigh = np.array([r[2].sum() for r in runs[key]])
        run_ratio = float(np.median(per_run_eigh / run))
        rate = float(np.median(args.trials / run))
        peak = peak_bytes(cases[key[0]][0], key[1], cases[key[0]][1]) / 2**20
        out[key] = (e_ms / d_ms, run_ratio)
        print(f"  {NAMES[key[0]]:38s} {key[1]:8s} {e_ms:8.2f} {d_ms:8.2f} {e_ms / d_ms:6.2f} {rate:7.2f} "
              f"{run_ratio:6.2f} {TARGETS[key[0]]:6.1f} {peak:8.1f}  {eigen_path(cases[key[0]][0], key[1], cases[key[0]][1])}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[400, 1000])
    ap.add_argument("--grid", type=int, default=100)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sampling", nargs="+", default=["gram", "direct"], choices=["gram", "direct"])
    ap.add_argument("--cases", nargs="+", default=list(TARGETS), choices=list(TARGETS))
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
