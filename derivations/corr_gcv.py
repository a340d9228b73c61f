"""Ridge regression with correlated samples (Atanasov, Zavatone-Veth, Pehlevan, arXiv:2408.04607): out-of-sample risk, training error, GCV and its bias under AR(1) and exponential sample correlations — derived by the engine, checked against Monte Carlo.

Model: ``X = K^{1/2} Z Σ^{1/2}`` (``sr.GaussianData("X", n, Σ, K=K)``: rows
correlated across samples by ``K``), ``y = Xw + ε``, ridge
``ŵ = (Σ̂ + λ)⁻¹Xᵀy/n``, ``Σ̂ = XᵀX/n``. Derived by
``sr.deterministic_equivalent`` from these definitions (nothing typed in):

* out-of-sample risk ``(ŵ − w)ᵀΣ(ŵ − w) + σ²`` (fresh, uncorrelated test point);
* training (in-sample) error ``|y − Xŵ|²/n``;
* GCV ``train/(1 − Tr[Σ̂(Σ̂+λ)⁻¹]/n)²`` and its bias ``GCV − risk`` (derived
  as one expression): with K ≠ I the naive GCV no longer estimates the risk;
* ``|ŵ|²``.

Correlations (``Tr K = n``): i.i.d. ``K = I``; AR(1) ``K_ij = ρ^|i−j|``
(ρ = 0.5); exponential ``K_ij = exp(−|t_i − t_j|/ξ)`` at irregular sample
times (``t`` = cumulative Exp(1) gaps, ξ = 3: an Ornstein–Uhlenbeck process
sampled at Poisson times). Label noise white, ``ε ~ N(0, σ²I)``, or shared with the
samples, ``ε ~ N(0, σ²K)`` ("K-noise" rows).

The paper's CorrGCV, written as it defines it from empirical traces:
``CorrGCV = S(df₁)·df̃₁/(df̃₁ − df̃₂)·R̂_in`` with the training error ``R̂_in``,
the empirical ``df̂ = Tr[Σ̂(Σ̂+λ)⁻¹]``, the sample-side ridge
``ν̂ = sr.df_inverse(K, df̂)`` (the root of ``Tr[K(K+ν)⁻¹] = df̂``),
``df̃₁ = df̂/n``, ``df̃₂ = Tr[K²(K+ν̂)⁻²]/n`` and ``S(df₁) = n/(ν̂ df̂)`` — i.e.
``CorrGCV = n·R̂_in/(ν̂(df̂ − Tr[K²(K+ν̂)⁻²]))`` (``= GCV`` for ``K = I``). It is
unbiased when the noise shares ``K`` (``sr.GaussianNoise("eps", n, σ², K=K)``,
whose rows the engine derives through sample-side sources, ``XᵀKX``); with
white noise it is not. Rows ``corrgcv − risk`` show both.

Checks: theory vs ``sr.monte_carlo`` of the same expressions at n/d ∈ {0.5, 2},
d ∈ {100, 400} (``--quick``: d = 100, few draws), tolerance
``4·sem + c·|th|/d`` (c = 6).

    python derivations/corr_gcv.py [--quick] [--out DIR]
    symrmt run corr_gcv --quick
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

ALPHA, BETA, LAM, SIGMA2, RHO, XI = 1.5, 1.0, 1e-3, 0.1, 0.5, 3.0
C, K = 6.0, 4.0
QUANTITIES = ("risk", "train", "gcv", "gcv - risk", "corrgcv", "corrgcv - risk", "norm")


def model():
    n, d = sr.dims("n d")
    lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
    Sigma = sr.Covariance("Sigma", d)
    Kc = sr.Covariance("K", n)
    X = sr.GaussianData("X", n, Sigma, K=Kc)
    w = sr.Vector("w", d)
    e = {}
    for tag, eps in (("", sr.GaussianNoise("eps", n, s2)),
                     ("K-noise ", sr.GaussianNoise("eps", n, s2, K=Kc))):
        y = X * w + eps
        Sh = X.T * X / n
        G = (Sh + lam * sr.I(d)).inverse()
        wh = G * X.T * y / n
        risk = (wh - w).T * Sigma * (wh - w) + s2
        r = y - X * wh
        train = r.T * r / n
        df = sr.ntr(Sh * G) * d
        gcv = train / (1 - df / n) ** 2
        nu = sr.df_inverse(Kc, df)                    # ν̂: Tr[K(K+ν̂)⁻¹] = df̂
        corrgcv = n * train / (nu * (df - sr.Tr(Kc * Kc * (Kc + nu * sr.I(n)).inverse() ** 2)))
        e[tag + "risk"] = risk
        e[tag + "train"] = train
        e[tag + "gcv"] = gcv
        e[tag + "gcv - risk"] = gcv - risk
        e[tag + "corrgcv"] = corrgcv
        e[tag + "corrgcv - risk"] = corrgcv - risk
        e[tag + "norm"] = wh.T * wh
    return e


def problem(d):
    s = np.arange(1, d + 1, dtype=float) ** -ALPHA
    w = np.arange(1, d + 1, dtype=float) ** -BETA
    return s, w / np.linalg.norm(w)


def correlations(N):
    i = np.arange(N)
    t = np.cumsum(np.random.default_rng(12345).exponential(1.0, N))
    return {"iid": np.eye(N),
            f"AR(1) ρ={RHO}": RHO ** np.abs(i[:, None] - i[None, :]),
            f"exp ξ={XI:g}": np.exp(-np.abs(t[:, None] - t[None, :]) / XI)}


FORMULAS_INTRO = ("Model: $X=K^{1/2}Z\\Sigma^{1/2}$, $\\hat w=(\\hat\\Sigma+\\lambda)^{-1}X^\\top y/n$, $y=Xw+\\varepsilon$. "
                  "Each block: the expression and the engine's derived equivalent, then the self-consistent equations "
                  "of its unknowns.")


def main(argv=None):
    args, out, t_start = start(argv, __doc__, "reports/corr_gcv", "d = 100 only, few draws (CI)")
    log = print
    exprs = model()
    des, refused = derive_all(exprs, log)
    fns = {k: de.compile() for k, de in des.items()}
    sizes = [100] if args.quick else [100, 400]
    trials = {100: 30 if args.quick else 200, 400: 60}
    rows = []
    for D in sizes:
        s, w = problem(D)
        for q in (0.5, 2.0):
            N = int(q * D)
            for kname, Km in correlations(N).items():
                t0 = time.perf_counter()
                for name in [t + q for t in ("", "K-noise ") for q in QUANTITIES]:
                    if name not in fns:   # refused: listed under "Rows not computed"
                        continue
                    b = dict(Sigma=s, w=w, n=N, K=Km, lam=LAM, sigma2=SIGMA2)
                    rows.append(compare(f"{name} [{kname}]", exprs[name], fns[name], b, d=D, ratio=q,
                                        sigma2=SIGMA2, trials=trials[D], seed=D + 11, c=C, k=K))
                log(f"  d={D} n/d={q} {kname}: {time.perf_counter() - t0:.1f} s")
    extra = {}
    # the bias of naive GCV, theory: is it resolved (|bias| > tol) under correlation?
    lines = ["| noise | K | d | n/d | GCV − risk (theory) | MC ± sem | CorrGCV − risk (theory) | MC ± sem |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    by = {(r.quantity, r.d, r.ratio): r for r in rows}
    for r in rows:
        for tag, noise in (("gcv - risk [", "white"), ("K-noise gcv - risk [", "K")):
            if r.quantity.startswith(tag):
                kname = r.quantity[len(tag):-1]
                c = by.get((r.quantity.replace("gcv", "corrgcv", 1), r.d, r.ratio))
                cg = f"{c.theory:+.4g} | {c.mc:+.4g} ± {c.sem:.2g}" if c else "– | –"
                lines.append(f"| {noise} | {kname} | {r.d} | {r.ratio:g} | {r.theory:+.4g} | {r.mc:+.4g} ± {r.sem:.2g} "
                             f"| {cg} |")
    extra["bias of GCV and CorrGCV (estimator − out-of-sample risk)"] = dict(
        passed=True, table="Derived biases: GCV's is zero for K = I and non-zero under correlation (either noise); "
                           "CorrGCV's is zero (to solver precision) when the label noise shares K, non-zero with white "
                           "noise under correlation. MC is the same expression's average (the rows above carry the "
                           "pass/fail):\n\n" + "\n".join(lines))
    (out / "formulas.md").write_text(formulas_md("Ridge with correlated samples: derived formulas", FORMULAS_INTRO,
                                                 des, refused))
    note = (f"α = {ALPHA}, β = {BETA}, λ = {LAM}, σ² = {SIGMA2} (white label noise); Σ = diag(i^-α), w ∝ i^-β. "
            f"Theory = compiled engine equivalent, MC = sr.monte_carlo of the same expression (X drawn with the "
            f"full K matrix); tol = {K:g}·sem + {C:g}·|th|/d. 'K-noise' rows: label noise ε ~ N(0, σ²K) (CorrGCV's "
            "setting); CorrGCV = n·train/(ν̂(df̂ − Tr[K²(K+ν̂)⁻²])), ν̂ = df_K⁻¹(df̂).")
    ok = write_report(out, "Ridge with correlated samples: theory vs Monte Carlo", note, rows, refused, extra,
                      args.quick, sizes, t_start, log)
    plots(out, fns, rows, sizes[-1], log)
    sys.exit(0 if ok else 1)


def plots(out, fns, rows, D, log):
    plt = pyplot(log)
    if plt is None:
        return
    s, w = problem(D)
    lams = np.geomspace(1e-4, 1, 120)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, q in zip(axes, (0.5, 2.0)):
        N = int(q * D)
        for kname, Km in correlations(N).items():
            b = dict(Sigma=s, w=w, n=N, K=Km, lam=lams, sigma2=SIGMA2)
            opt = {"on_failure": "nan"}
            line, = ax.plot(lams, fns["risk"](options=opt, **b), "-", label=f"risk, {kname}")
            ax.plot(lams, fns["gcv"](options=opt, **b), "--", color=line.get_color(), label=f"GCV, {kname}")
            for name, m in (("risk", "o"), ("gcv", "^")):
                pts = [r for r in rows if r.d == D and r.ratio == q and r.quantity == f"{name} [{kname}]"]
                ax.errorbar([LAM] * len(pts), [r.mc for r in pts], yerr=[r.sem for r in pts], fmt=m,
                            color=line.get_color(), ms=4)
        ax.set(xscale="log", yscale="log", xlabel="λ", ylabel="error",
               title=f"n/d={q:g}, d={D}: risk (—) vs naive GCV (--), MC at λ={LAM}")
        readable_log_axes(ax)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "risk_vs_gcv.png", dpi=110)
    log(f"== wrote {out}/: formulas.md, table.md, summary.json, risk_vs_gcv.png")


if __name__ == "__main__":
    main()
