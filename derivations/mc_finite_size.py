"""Finite-size gap between Monte Carlo and the deterministic equivalent.

For real Gaussian data the expectation of a normalised resolvent trace at
finite size differs from its deterministic equivalent by ``O(1/d)``
(docs/math.md, "Finite-size behaviour"; e.g. exactly ``1/(n−d−1)`` relative for
``tr Σ̂⁻¹`` with ``Σ = I``). This script measures

    m(d) = E (1/d) Tr[(Σ̂+λ)⁻¹]     Σ̂ = XᵀX/n,  n = 2d,  s_i = i^{-1/2}

by ``sr.monte_carlo`` at d = 100, 400, 1600 and compares with the
equivalent ``(κ/λ)(1/d)Σᵢ 1/(sᵢ+κ)``, ``κ(1 − df1(κ)/n) = λ``, solved here
by bisection (independent of the engine). It prints the relative error with
its standard error and the slope of ``log|rel. error|`` against ``log d``,
which should be close to −1.

The Monte Carlo noise of a normalised trace is ``O(1/(d√T))``, the gap
``O(1/d)``: their ratio grows like ``√T`` and not with ``d``, so every size
needs the same number of draws (default 200) to resolve the gap.

    python derivations/mc_finite_size.py [--trials 200] [--alpha 0.5] [--out DIR] [--no-plots]

Writes ``DIR/finite_size.png`` (default ``reports/mc_finite_size``): the
relative gap against d with its standard error, the fitted power law, and
``d × gap``, which levels off when the gap is ``O(1/d)``.
"""
from __future__ import annotations

import argparse
import pathlib
import time

import numpy as np

import symrmt as sr
from symrmt.montecarlo import monte_carlo


def kappa(s, n, lam, iters=200):
    """Renormalised ridge: the root of ``κ(1 − Σ s/(s+κ)/n) = λ`` on the
    physical branch (``df1 < n``), by bisection."""
    lo, hi = lam, lam + s.sum() / n + 10 * (lam + s.max())
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        df1 = np.sum(s / (s + mid))
        if df1 >= n or mid * (1 - df1 / n) > lam:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def theory(s, n, lam):
    k = kappa(s, n, lam)
    return k / lam * np.mean(1.0 / (s + k))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=0.5, help="power-law exponent of Σ")
    ap.add_argument("--ratio", type=float, default=2.0, help="n/d")
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    ap.add_argument("--out", default="reports/mc_finite_size", help="folder of the plot")
    ap.add_argument("--no-plots", action="store_true", help="print only")
    args = ap.parse_args(argv)

    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    expr = sr.ntr((X.T * X / n + lam * sr.I(d)).inverse())
    lams = np.array([1e-3, 1e-2])

    print(f"(1/d) Tr[(Σ̂+λ)⁻¹], s_i = i^-{args.alpha:g}, n = {args.ratio:g}·d, {args.trials} draws per size")
    print(f"{'d':>6} {'λ':>7} {'theory':>10} {'monte carlo':>12} {'rel. error':>11} {'± sem':>9} {'d·rel':>7}  time")
    rel = np.zeros((len(args.sizes), lams.size))
    rel_sem = np.zeros_like(rel)
    for i, dd in enumerate(args.sizes):
        s = np.arange(1, dd + 1, dtype=float) ** -args.alpha
        nn = int(round(args.ratio * dd))
        t0 = time.perf_counter()
        mc = monte_carlo(expr, trials=args.trials, seed=i, Sigma=s, n=nn, lam=lams)
        dt = time.perf_counter() - t0
        th = np.array([theory(s, nn, l) for l in lams])
        rel[i] = (mc.mean - th) / th
        rel_sem[i] = mc.sem / th
        for j, l in enumerate(lams):
            print(f"{dd:>6} {l:>7.0e} {th[j]:>10.5f} {mc.mean[j]:>12.5f} {rel[i, j]:>11.2e} "
                  f"{mc.sem[j] / th[j]:>9.1e} {dd * rel[i, j]:>7.3f}  {dt:.1f} s" if j == 0 else
                  f"{dd:>6} {l:>7.0e} {th[j]:>10.5f} {mc.mean[j]:>12.5f} {rel[i, j]:>11.2e} "
                  f"{mc.sem[j] / th[j]:>9.1e} {dd * rel[i, j]:>7.3f}")
    logd = np.log(args.sizes)
    fits = []
    for j, l in enumerate(lams):
        slope, icpt = np.polyfit(logd, np.log(np.abs(rel[:, j])), 1)
        fits.append((slope, icpt))
        print(f"λ = {l:.0e}: fitted slope of log|rel. error| vs log d = {slope:.2f} (expected ≈ −1)")
    if not args.no_plots:
        plot(args, lams, rel, rel_sem, fits)


def plot(args, lams, rel, rel_sem, fits):
    """``finite_size.png``: |relative gap| vs d (Monte Carlo ± sem; the fitted
    power law as a line on a fine grid of d) and ``d × gap`` vs d."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        return None
    from _common import readable_log_axes
    sizes = np.asarray(args.sizes, dtype=float)
    fine = np.geomspace(sizes.min() / 1.3, sizes.max() * 1.3, 100)
    fig, axs = plt.subplots(1, 2, figsize=(11, 4.3))
    for j, (l, (slope, icpt)) in enumerate(zip(lams, fits)):
        c = f"C{j}"
        axs[0].errorbar(sizes, np.abs(rel[:, j]), yerr=rel_sem[:, j], fmt="o", color=c, capsize=2,
                        label=f"Monte Carlo ± sem, λ = {l:g}")
        axs[0].plot(fine, np.exp(icpt) * fine ** slope, "-", color=c, lw=1, label=f"fit ∝ d^{slope:.2f}")
        axs[1].errorbar(sizes, sizes * rel[:, j], yerr=sizes * rel_sem[:, j], fmt="o-", color=c, capsize=2,
                        label=f"λ = {l:g}")
    axs[0].set_xscale("log")
    axs[0].set_yscale("log")
    axs[1].set_xscale("log")
    axs[1].axhline(0, color="k", lw=0.8)
    axs[0].set_ylabel("|MC − theory| / theory  of  (1/d) Tr[(Σ̂+λ)⁻¹]")
    axs[1].set_ylabel("d × (MC − theory) / theory")
    for ax in axs:
        ax.set_xlabel("dimension d")
        readable_log_axes(ax)
        ax.grid(True, which="major", alpha=0.25)
        ax.legend(fontsize=8)
    head = f"n/d = {args.ratio:g}, s_i = i^-{args.alpha:g}, {args.trials} draws per d"
    axs[0].set_title(f"finite-size gap of the deterministic equivalent\n{head}", fontsize=9)
    axs[1].set_title(f"O(1/d): d × gap levels off\n{head}", fontsize=9)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / "finite_size.png", dpi=120)
    plt.close(fig)
    print(f"wrote {out / 'finite_size.png'}")
    return out / "finite_size.png"


if __name__ == "__main__":
    main()
