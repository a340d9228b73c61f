"""Norm-based capacity (Wang, Chen, Rosasco, Liu): ‖ŵ‖² and test risk of ridge and random-feature ridge across λ, n, p — double descent in n or p disappears when the risk is plotted against the norm — derived by the engine, checked against Monte Carlo.

Setting of Wang, Chen, Rosasco, Liu, "Re-examining double descent and
scaling laws under norm-based capacity via deterministic equivalence":
the capacity of an estimator is its norm, ``‖ŵ‖²`` for ridge
``ŵ = (Σ̂+λ)⁻¹Xᵀy/n`` and ``‖â‖²`` for random-feature ridge
``â = (FᵀΣ̂F+λ)⁻¹FᵀXᵀy/n`` (``F = sr.RandomFeatures``, iid ``N(0, 1/p)``).
``sr.deterministic_equivalent`` derives both norms and both risks from
these definitions (nothing typed in); the recipe traces the curves
(risk, norm) parametrised by n (ridge) or p (RF) at fixed λ, and by λ.
At small λ the risk peaks at n = d (ridge) or p = n (RF, n = d/2 here);
``risk_vs_norm.png`` shows the same curves against the norm (what the
paper reads as the norm-based capacity picture; this recipe only draws the
derived curves, it makes no claim beyond the checked numbers).

Checks: theory vs ``sr.monte_carlo`` of the same expressions (norm and
risk) at n/d ∈ {0.5, 2} (ridge, λ ∈ {1e-3, 1e-1}) and p/d ∈ {0.5, 2} at n/d = 0.5
(RF), d ∈ {100, 400, 1600} (RF at p/d = 0.5 only at 1600; ``--quick``: d = 100, few draws); tolerance
``4·sem + c·|th|/d``, c = 6.

    python derivations/norm_capacity.py [--quick] [--out DIR]
    symrmt run norm_capacity --quick
"""
from __future__ import annotations

import os
import pathlib
import sys
import time

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):   # small matrices: threads only thrash
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

import symrmt as sr  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import pyplot, readable_log_axes  # noqa: E402
from _ridge_common import start, compare, derive_all, formulas_md, write_report  # noqa: E402
from _pooled import single_blas_thread  # noqa: E402

ALPHA, BETA, SIGMA2 = 1.0, 1.0, 0.2
C, K = 6.0, 4.0


def model():
    n, d, p = sr.dims("n d p")
    lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    w = sr.Vector("w", d)
    eps = sr.GaussianNoise("eps", n, s2)
    y = X * w + eps
    wh = (X.T * X / n + lam * sr.I(d)).inverse() * X.T * y / n
    F = sr.RandomFeatures("F", d, p)
    a = (F.T * X.T * X * F / n + lam * sr.I(p)).inverse() * F.T * X.T * y / n
    return {"ridge risk": (wh - w).T * Sigma * (wh - w) + s2,
            "ridge norm": wh.T * wh,
            "RF risk": (F * a - w).T * Sigma * (F * a - w) + s2,
            "RF norm": a.T * a}


def problem(d):
    s = np.arange(1, d + 1, dtype=float) ** -ALPHA
    w = np.arange(1, d + 1, dtype=float) ** -BETA
    return s, w / np.linalg.norm(w)


FORMULAS_INTRO = ("Ridge $\\hat w=(\\hat\\Sigma+\\lambda)^{-1}X^\\top y/n$ and RF ridge "
                  "$\\hat a=(F^\\top\\hat\\Sigma F+\\lambda)^{-1}F^\\top X^\\top y/n$, $y=Xw+\\varepsilon$. Each block: the "
                  "expression and the engine's derived equivalent, then the self-consistent equations of its unknowns.")


def main(argv=None):
    args, out, t_start = start(argv, __doc__, "reports/norm_capacity", "d = 100 only, few draws (CI)")
    log = print
    single_blas_thread()
    exprs = model()
    des, refused = derive_all(exprs, log)
    fns = {k: de.compile() for k, de in des.items()}
    sizes = [100] if args.quick else [100, 400, 1600]
    trials = {100: 30 if args.quick else 200, 400: 50, 1600: 6}
    rows = []
    for D in sizes:
        s, w = problem(D)
        t0 = time.perf_counter()
        for q in (0.5, 2.0):
            for lam in (1e-3, 1e-1):
                for name in ("ridge risk", "ridge norm"):
                    if name in fns:
                        b = dict(Sigma=s, w=w, n=int(q * D), lam=lam, sigma2=SIGMA2)
                        rows.append(compare(f"{name} (λ={lam:g})", exprs[name], fns[name], b, d=D, ratio=q,
                                            sigma2=SIGMA2, trials=trials[D], seed=D + 3, c=C, k=K))
        for r in ((0.5,) if D >= 1600 else (0.5, 2.0)):     # p = 3200 at d = 1600: skipped (cost)
            for name in ("RF risk", "RF norm"):
                if name in fns:
                    b = dict(Sigma=s, w=w, n=D // 2, p=int(r * D), lam=1e-2, sigma2=SIGMA2)
                    rows.append(compare(f"{name} (λ=0.01, p/d={r:g})", exprs[name], fns[name], b, d=D, ratio=0.5,
                                        sigma2=SIGMA2, trials=trials[D], seed=D + 5, c=C, k=K))
        log(f"  d={D}: {time.perf_counter() - t0:.1f} s")
    (out / "formulas.md").write_text(formulas_md("Norm-based capacity: derived formulas", FORMULAS_INTRO, des, refused))
    note = (f"α = {ALPHA}, β = {BETA}, σ² = {SIGMA2}; Σ = diag(i^-α), w ∝ i^-β. Theory = compiled engine equivalent, "
            f"MC = sr.monte_carlo of the same expression; tol = {K:g}·sem + {C:g}·|th|/d.")
    ok = write_report(out, "Norm-based capacity: theory vs Monte Carlo", note, rows, refused, extra={},
                      quick=args.quick, sizes=sizes, t_start=t_start, log=log)
    plots(out, fns, rows, min(sizes[-1], 400), log)
    sys.exit(0 if ok else 1)


def plots(out, fns, rows, D, log):
    plt = pyplot(log)
    if plt is None:
        return
    s, w = problem(D)
    opt = {"options": {"on_failure": "nan"}}
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ns = np.unique(np.round(np.geomspace(0.1, 10, 200) * D)).astype(int)
    for lam in (1e-4, 1e-3, 1e-2, 1e-1):
        r = fns["ridge risk"](Sigma=s, w=w, n=ns, lam=lam, sigma2=SIGMA2, **opt)
        nm = fns["ridge norm"](Sigma=s, w=w, n=ns, lam=lam, sigma2=SIGMA2, **opt)
        axes[0, 0].plot(ns / D, r, label=f"λ={lam:g}")
        axes[0, 1].plot(nm, r, label=f"λ={lam:g} (n varies)")
    for rr in rows:
        if rr.d == D and rr.quantity.startswith("ridge risk"):
            lam = float(rr.quantity.split("λ=")[1].rstrip(")"))
            norm = [x for x in rows if x.d == D and x.ratio == rr.ratio and x.quantity == f"ridge norm (λ={lam:g})"][0]
            axes[0, 0].errorbar([rr.ratio], [rr.mc], yerr=[rr.sem], fmt="o", color="k", ms=4)
            axes[0, 1].errorbar([norm.mc], [rr.mc], xerr=[norm.sem], yerr=[rr.sem], fmt="o", color="k", ms=4)
    axes[0, 0].set(xscale="log", yscale="log", xlabel="n/d", ylabel="test risk",
                   title=f"ridge: risk vs n/d, d={D} (theory; MC points)")
    axes[0, 1].set(xscale="log", yscale="log", xlabel="‖ŵ‖²", ylabel="test risk",
                   title=f"ridge: risk vs norm, d={D}, n/d ∈ [0.1, 10]")
    N = D // 2
    ps = np.unique(np.round(np.geomspace(0.1, 10, 200) * D)).astype(int)
    for lam in (1e-4, 1e-3, 1e-2, 1e-1):
        r = fns["RF risk"](Sigma=s, w=w, n=N, p=ps, lam=lam, sigma2=SIGMA2, **opt)
        nm = fns["RF norm"](Sigma=s, w=w, n=N, p=ps, lam=lam, sigma2=SIGMA2, **opt)
        axes[1, 0].plot(ps / D, r, label=f"λ={lam:g}")
        axes[1, 1].plot(nm, r, label=f"λ={lam:g} (p varies)")
    for rr in rows:
        if rr.d == D and rr.quantity.startswith("RF risk"):
            tail = rr.quantity.split("(")[1]
            norm = [x for x in rows if x.d == D and x.quantity == f"RF norm ({tail}"][0]
            pr = float(tail.split("p/d=")[1].rstrip(")"))
            axes[1, 0].errorbar([pr], [rr.mc], yerr=[rr.sem], fmt="o", color="k", ms=4)
            axes[1, 1].errorbar([norm.mc], [rr.mc], xerr=[norm.sem], yerr=[rr.sem], fmt="o", color="k", ms=4)
    axes[1, 0].set(xscale="log", yscale="log", xlabel="p/d", ylabel="test risk",
                   title=f"RF ridge: risk vs p/d, n/d=0.5, d={D} (theory; MC points λ=0.01)")
    axes[1, 1].set(xscale="log", yscale="log", xlabel="‖â‖²", ylabel="test risk",
                   title=f"RF ridge: risk vs norm, n/d=0.5, d={D}, p/d ∈ [0.1, 10]")
    for ax in axes.ravel():
        readable_log_axes(ax)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "risk_vs_norm.png", dpi=110)
    log(f"== wrote {out}/: formulas.md, table.md, summary.json, risk_vs_norm.png")


if __name__ == "__main__":
    main()
