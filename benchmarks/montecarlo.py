"""Monte Carlo throughput against a bare eigendecomposition.

Measures, in one run, draws per second of

    sr.monte_carlo((1/d) Tr[Σ̂(Σ̂+λ)⁻¹])     d = 1000, n = 2000, 100-point λ grid

(power-law Σ, s_i = i^-1.5) and the rate of ``numpy.linalg.eigh`` on a
1000×1000 symmetric matrix (a sample covariance of the same Σ, so that both
see the same spectrum), and prints their ratio (target ≥ 0.6: a draw —
sampling X, forming Σ̂, its spectrum, the whole λ grid — should cost little
more than one eigendecomposition). On the eigenvector path (one ``eigh``
per draw, target ≥ 0.8) it times

    (1/d) Tr[Σ(Σ̂+λ)⁻¹]
    vᵀ(Σ̂+λ)⁻¹x                              a quadratic form (v, x fixed)
    (ŵ−w̄)ᵀΣ(ŵ−w̄) + σ²,  ŵ = (Σ̂+λ)⁻¹Xᵀy/n,  y = Xw̄ + ε     the ridge risk

(``--no-forms`` skips the last two).

Rates are medians over ``--rounds`` interleaved rounds. The run prints the
BLAS thread settings and the load average: on a machine busy with other
work, multithreaded LAPACK timings are erratic (compare with
``OPENBLAS_NUM_THREADS=1``).

    python benchmarks/montecarlo.py [--trials 20] [--repeats 10] [--rounds 3] [--no-forms]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import symrmt as sr
from symrmt.montecarlo import monte_carlo


def eigh_rate(d, n, s, repeats, rng):
    """``eigh`` of a matrix like the ones the MC run diagonalises (a sample
    covariance of the same Σ), so both rates see the same spectrum."""
    Z = rng.standard_normal((n, d)) * np.sqrt(s)
    A = Z.T @ Z / n
    np.linalg.eigh(A)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        np.linalg.eigh(A)
    return repeats / (time.perf_counter() - t0)


def mc_rate(expr, trials, **bindings):
    """``(rate, marginal)``: draws/s of a whole run (compilation and the
    planning draw included), and the marginal rate of its draws
    ``(trials − 2)/(t(trials) − t(2))`` (fixed per-run costs cancel)."""
    monte_carlo(expr, trials=2, seed=1, progress=False, **bindings)  # warm-up (imports, caches)
    t0 = time.perf_counter()
    monte_carlo(expr, trials=2, seed=0, progress=False, **bindings)
    t1 = time.perf_counter()
    monte_carlo(expr, trials=trials, seed=0, progress=False, **bindings)
    t2 = time.perf_counter()
    return trials / (t2 - t1), (trials - 2) / max(t2 - t1 - (t1 - t0), 1e-9)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=1000)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--grid", type=int, default=100)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-forms", action="store_true", help="skip the quadratic form and the ridge risk")
    args = ap.parse_args(argv)

    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    Sh = X.T * X / n
    G = (Sh + lam * sr.I(d)).inverse()
    bindings = dict(Sigma=np.arange(1, args.d + 1) ** -1.5, n=args.n, lam=np.logspace(-3, 1, args.grid))
    v, x, wbar = sr.Vector("v", d), sr.Vector("x", d), sr.Vector("wbar", d)
    s2 = sr.scalar("s2")
    eps = sr.GaussianNoise("eps", n, s2)
    w_hat = G * X.T * (X * wbar + eps) / n
    vrng = np.random.default_rng(1)
    form_b = dict(bindings, v=vrng.standard_normal(args.d), x=vrng.standard_normal(args.d))
    risk_b = dict(bindings, wbar=vrng.standard_normal(args.d) / np.sqrt(args.d), s2=0.25)

    rng = np.random.default_rng(0)
    keys = ("eigh", "vals", "vecs") + (() if args.no_forms else ("form", "risk"))
    rates = {k: [] for k in keys}
    t_vec = max(args.trials // 2, 2)
    for _ in range(args.rounds):
        rates["eigh"].append(eigh_rate(args.d, args.n, bindings["Sigma"], args.repeats, rng))
        rates["vals"].append(mc_rate(sr.ntr(Sh * G), args.trials, **bindings))
        rates["vecs"].append(mc_rate(sr.ntr(Sigma * G), t_vec, **bindings))
        if not args.no_forms:
            rates["form"].append(mc_rate(v.T * G * x, t_vec, **form_b))
            rates["risk"].append(mc_rate((w_hat - wbar).T * Sigma * (w_hat - wbar) + s2, t_vec, **risk_b))
    marg = {k: float(np.median([r[1] for r in rates[k]])) for k in keys if k != "eigh"}
    rates = {k: [r[0] if isinstance(r, tuple) else r for r in rates[k]] for k in keys}
    e, r_vals, r_vecs = (float(np.median(rates[k])) for k in ("eigh", "vals", "vecs"))
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"d={args.d}, n={args.n}, {args.grid}-point λ grid; {os.cpu_count()} CPUs, load {load:.1f}, "
          f"BLAS threads {threads or 'default'}")
    print(f"numpy.linalg.eigh ({args.d}×{args.d})          : {e:8.2f} /s")
    print(f"MC (1/d)Tr[Σ̂(Σ̂+λ)⁻¹]  (eigenvalues only) : {r_vals:8.2f} draws/s   ratio {r_vals / e:.2f} (target ≥ 0.6)")
    print(f"MC (1/d)Tr[Σ(Σ̂+λ)⁻¹]  (eigenvectors)     : {r_vecs:8.2f} draws/s   ratio {r_vecs / e:.2f} (target ≥ 0.8)")
    if not args.no_forms:
        r_form, r_risk = (float(np.median(rates[k])) for k in ("form", "risk"))
        print(f"MC vᵀ(Σ̂+λ)⁻¹x          (eigenvectors)     : {r_form:8.2f} draws/s   ratio {r_form / e:.2f} (target ≥ 0.8)")
        print(f"MC ridge risk (ŵ−w̄)ᵀΣ(ŵ−w̄)+σ² (eigenvectors): {r_risk:8.2f} draws/s   ratio {r_risk / e:.2f} (target ≥ 0.8)")
    names = {"vals": "Tr[Σ̂(Σ̂+λ)⁻¹]", "vecs": "Tr[Σ(Σ̂+λ)⁻¹]", "form": "vᵀ(Σ̂+λ)⁻¹x", "risk": "ridge risk"}
    print("marginal draws/s (planning draw and compilation excluded), ratio to eigh: "
          + ", ".join(f"{names[k]} {marg[k]:.2f} ({marg[k] / e:.2f})" for k in marg))
    return r_vals / e


if __name__ == "__main__":
    main()
