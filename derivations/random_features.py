"""Random-feature ridge regression: risk, training error, GCV, bias/variance, norm, scaling in p and n — derived by the engine, checked against Monte Carlo and the closed form of arXiv:2405.00592.

Model (Atanasov, Zavatone-Veth, Pehlevan, "Scaling and renormalization in
high-dimensional regression", arXiv:2405.00592, linear random features):
``x ~ N(0, Σ)``, ``y = xᵀw + ε``, ``ε ~ N(0, σ²)``, features ``Fᵀx`` with
``F = sr.RandomFeatures("F", d, p)`` (iid ``N(0, 1/p)`` entries), and

    â = (FᵀΣ̂F + λ)⁻¹ FᵀXᵀy / n,     Σ̂ = XᵀX/n,

written raw. ``sr.deterministic_equivalent`` derives (no formula typed in):
test risk ``(Fâ − w)ᵀΣ(Fâ − w) + σ²``, training error ``|y − XFâ|²/n``, GCV
``train/(1 − Tr[FᵀΣ̂F(FᵀΣ̂F+λ)⁻¹]/n)²``, bias (the σ² = 0 part), variance
(the noise part), ``|â|²``; the deep linear chain ``F₁F₂`` is attempted and
checked against Monte Carlo where it derives (its refusal recorded where not). Power-law spectrum ``s_i = i^{-α}`` and target
``w_i ∝ i^{-β}``.

Checks: (1) theory vs ``sr.monte_carlo`` of the same expressions at
p/d, n/d ∈ {0.5, 2} and d ∈ {100, 400} and, for the risk at n·p ≤ d², d = 1600 (``--quick``: d = 100, 30 draws, risk/GCV/norm/deep chain) (tolerance ``4·sem + c·|th|/d``,
c = 6); (2) the engine's value vs an independently coded NumPy closed form
(κ(1 − df₁/n)(1 − df₁/p) = λ by bisection, E_g = [κ²wᵀΣR²w + κ(df₁−df₂)/
(p−df₂)·wᵀΣ²R²w + σ²]/(1−γ), γ = df₂/n + (df₁−df₂)²/(n(p−df₂)), train
= (1 − df₁/n)²E_g) on a grid (rel. 1e-8); (3) bias + variance + σ² = risk.

    python derivations/random_features.py [--quick] [--out DIR]
    symrmt run random_features --quick
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

ALPHA, BETA, LAM, SIGMA2 = 1.5, 1.0, 1e-2, 0.1
C, K = 6.0, 4.0
REGIMES = [(0.5, 0.5), (0.5, 2.0), (2.0, 0.5), (2.0, 2.0)]   # (n/d, p/d)


def model():
    n, d, p = sr.dims("n d p")
    lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    F = sr.RandomFeatures("F", d, p)
    w = sr.Vector("w", d)
    eps = sr.GaussianNoise("eps", n, s2)
    ShF = F.T * X.T * X * F / n
    G = (ShF + lam * sr.I(p)).inverse()
    y = X * w + eps
    a = G * F.T * X.T * y / n
    e = {}
    e["risk"] = (F * a - w).T * Sigma * (F * a - w) + s2
    r = y - X * F * a
    e["train"] = r.T * r / n
    e["gcv"] = e["train"] / (1 - sr.ntr(ShF * G) * p / n) ** 2
    e["norm"] = a.T * a
    ab = G * F.T * X.T * X * w / n
    av = G * F.T * X.T * eps / n
    e["bias"] = (F * ab - w).T * Sigma * (F * ab - w)
    e["variance"] = (F * av).T * Sigma * (F * av)
    # deep linear chain x → F₂ᵀF₁ᵀx
    F2 = sr.RandomFeatures("F2", p, p)
    G2 = (F2.T * ShF * F2 + lam * sr.I(p)).inverse()
    a2 = G2 * F2.T * F.T * X.T * y / n
    e["deep_chain_risk"] = (F * F2 * a2 - w).T * Sigma * (F * F2 * a2 - w) + s2
    return e


def problem(d):
    s = np.arange(1, d + 1, dtype=float) ** -ALPHA
    w = np.arange(1, d + 1, dtype=float) ** -BETA
    return s, w / np.linalg.norm(w)


def closed_form(s, w, N, P, lam, sigma2):
    """Independent NumPy coding of the linear-RF ridge closed form
    (arXiv:2405.00592 / Bach 2023), κ by bisection on the branch
    df₁ < min(n, p)."""
    lo, hi = lam, lam + 10 * (s.sum() * (1 / N + 1 / P) + lam + s.max())
    for _ in range(200):
        k = 0.5 * (lo + hi)
        df1 = np.sum(s / (s + k))
        if df1 >= min(N, P) or k * (1 - df1 / N) * (1 - df1 / P) < lam:
            lo = k
        else:
            hi = k
    k = 0.5 * (lo + hi)
    df1, df2 = np.sum(s / (s + k)), np.sum(s ** 2 / (s + k) ** 2)
    gamma = df2 / N + (df1 - df2) ** 2 / (N * (P - df2))
    b = (k ** 2 * np.sum(w ** 2 * s / (s + k) ** 2)
         + k * (df1 - df2) / (P - df2) * np.sum(w ** 2 * s ** 2 / (s + k) ** 2)) / (1 - gamma)
    Eg = b + sigma2 / (1 - gamma)
    return dict(risk=Eg, train=(1 - df1 / N) ** 2 * Eg, gcv=Eg, bias=b, variance=sigma2 * gamma / (1 - gamma))


def closed_form_check(fns, log):
    worst, lines = 0.0, ["| quantity | d | n | p | λ | engine | closed form | rel. diff |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for D in (100, 400):
        s, w = problem(D)
        for q, r in REGIMES:
            for lam in (1e-3, 1e-2, 1e-1):
                N, P = int(q * D), int(r * D)
                ref = closed_form(s, w, N, P, lam, SIGMA2)
                for name in ("risk", "train", "gcv", "bias", "variance"):
                    b = dict(Sigma=s, n=N, p=P, lam=lam)
                    if name != "variance":
                        b["w"] = w
                    if name != "bias":
                        b["sigma2"] = SIGMA2
                    th = float(fns[name](**b))
                    rel = abs(th - ref[name]) / abs(ref[name])
                    worst = max(worst, rel)
                    if lam == 1e-2:
                        lines.append(f"| {name} | {D} | {N} | {P} | {lam:g} | {th:.10g} | {ref[name]:.10g} | {rel:.1e} |")
    log(f"  engine vs independent closed form (arXiv:2405.00592): worst rel. diff {worst:.1e}")
    return dict(worst_rel=worst, passed=bool(worst < 1e-8),
                table="Independently coded NumPy closed form (module docstring) vs the engine; all "
                      f"(d, n/d, p/d, λ ∈ {{1e-3, 1e-2, 1e-1}}), shown λ = 0.01; worst rel. diff **{worst:.1e}** "
                      "(pass < 1e-8).\n\n" + "\n".join(lines))


FORMULAS_INTRO = ("Model: $\\hat a=(F^\\top\\hat\\Sigma F+\\lambda)^{-1}F^\\top X^\\top y/n$, $y=Xw+\\varepsilon$, "
                  "$F$ iid $N(0,1/p)$. Each block: the expression and the engine's derived equivalent, then the "
                  "self-consistent equations of its unknowns ($\\kappa$'s).")


def main(argv=None):
    args, out, t_start = start(argv, __doc__, "reports/random_features", "d = 100 only, few draws (CI)")
    log = print
    single_blas_thread()
    exprs = model()
    des, refused = derive_all(exprs, log)
    fns = {k: de.compile() for k, de in des.items()}
    sizes = [100] if args.quick else [100, 400, 1600]
    trials = {100: 30 if args.quick else 150, 400: 40, 1600: 6}     # d = 1600: risk only, n·p ≤ d²
    quantities = {100: ["risk", "train", "gcv", "norm", "bias", "variance", "deep_chain_risk"],
                  400: ["risk", "train", "gcv", "deep_chain_risk"], 1600: ["risk"]}
    rows = []
    for D in sizes:
        qs = [q for q in (["risk", "gcv", "norm", "deep_chain_risk"] if args.quick else quantities[D]) if q in des]
        s, w = problem(D)
        for q, r in REGIMES:
            if D >= 1600 and q * r > 1:     # n = p = 3200 at d = 1600: ~9 s CPU per draw; skipped there
                continue
            N, P = int(q * D), int(r * D)
            t0 = time.perf_counter()
            for name in qs:
                b = dict(Sigma=s, n=N, p=P, lam=LAM)
                if name != "variance":
                    b["w"] = w
                if name != "bias":
                    b["sigma2"] = SIGMA2
                rows.append(compare(f"{name} (p/d={r:g})", exprs[name], fns[name], b, d=D, ratio=q,
                                    sigma2=SIGMA2 if name != "bias" else 0.0, trials=trials[D], seed=D + 7, c=C, k=K))
            log(f"  d={D} n/d={q} p/d={r}: {time.perf_counter() - t0:.1f} s")
    extra = {"closed form (arXiv:2405.00592), independent NumPy": closed_form_check(fns, log)}
    # bias + variance + σ² = risk (three separately derived equivalents)
    s, w = problem(200)
    worst = 0.0
    for q, r in REGIMES:
        b = dict(Sigma=s, n=int(q * 200), p=int(r * 200), lam=LAM)
        tot = fns["bias"](w=w, **b) + fns["variance"](sigma2=SIGMA2, **b) + SIGMA2
        worst = max(worst, float(abs(tot - fns["risk"](w=w, sigma2=SIGMA2, **b)) / fns["risk"](w=w, sigma2=SIGMA2, **b)))
    extra["bias + variance + σ² = risk (separately derived)"] = dict(worst_rel=worst, passed=bool(worst < 1e-10),
                                                                    table=f"worst rel. diff {worst:.1e} (pass < 1e-10)")
    (out / "formulas.md").write_text(formulas_md("Random-feature ridge: derived formulas", FORMULAS_INTRO, des, refused))
    note = (f"α = {ALPHA}, β = {BETA}, λ = {LAM}, σ² = {SIGMA2}; Σ = diag(i^-α), w ∝ i^-β. Theory = compiled "
            f"engine equivalent, MC = sr.monte_carlo of the same expression; tol = {K:g}·sem + {C:g}·|th|/d. "
            "Column n/d; p/d in the quantity.")
    ok = write_report(out, "Random-feature ridge: theory vs Monte Carlo", note, rows, refused, extra,
                      args.quick, sizes, t_start, log)
    plots(out, fns, rows, min(sizes[-1], 400), log, Dl=400 if args.quick else 2000)
    sys.exit(0 if ok else 1)


def plots(out, fns, rows, D, log, Dl=2000):
    plt = pyplot(log)
    if plt is None:
        return
    s, w = problem(D)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    pgrid = np.unique(np.round(np.geomspace(0.1, 10, 300) * D)).astype(int)
    pr = pgrid / D
    for q in (0.5, 2.0):
        N = int(q * D)
        for name, ls in (("risk", "-"), ("train", "--"), ("gcv", ":")):
            th = fns[name](Sigma=s, w=w, n=N, p=pgrid, lam=LAM, sigma2=SIGMA2, options={"on_failure": "nan"})
            axes[0].plot(pr, th, ls, label=f"{name}, n/d={q:g} (theory)")
        for name, m in (("risk", "o"), ("train", "s"), ("gcv", "^")):
            pts = [rr for rr in rows if rr.d == D and rr.ratio == q and rr.quantity.startswith(name + " ")]
            axes[0].errorbar([float(rr.quantity.split("p/d=")[1].rstrip(")")) for rr in pts], [rr.mc for rr in pts],
                             yerr=[rr.sem for rr in pts], fmt=m, color="k", ms=4)
    axes[0].set(xscale="log", yscale="log", xlabel="p/d", ylabel="error",
                title=f"RF ridge vs p/d, d={D}, λ={LAM} (MC: points)")
    axes[0].legend(fontsize=6)
    # scaling in n (p = ∞ proxy: p = 8d) and in p (n = 8d), d large
    s, w = problem(Dl)
    ns = np.unique(np.geomspace(20, 8 * Dl, 40).astype(int))
    for P in (100, 400, 1600, 8 * Dl):
        th = fns["risk"](Sigma=s, w=w, n=ns, p=P, lam=1e-4, sigma2=0.0, options={"on_failure": "nan"})
        axes[1].plot(ns, th, label=f"p={P}")
    axes[1].set(xscale="log", yscale="log", xlabel="n", ylabel="risk (σ² = 0)",
                title=f"scaling in n, d={Dl}, λ=1e-4 (theory)")
    ps = np.unique(np.geomspace(20, 8 * Dl, 40).astype(int))
    for N in (100, 400, 1600, 8 * Dl):
        th = fns["risk"](Sigma=s, w=w, n=N, p=ps, lam=1e-4, sigma2=0.0, options={"on_failure": "nan"})
        axes[2].plot(ps, th, label=f"n={N}")
    axes[2].set(xscale="log", yscale="log", xlabel="p", ylabel="risk (σ² = 0)",
                title=f"scaling in p, d={Dl}, λ=1e-4 (theory)")
    for ax in axes:
        readable_log_axes(ax)
    for ax in axes[1:]:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    log(f"== wrote {out}/: formulas.md, table.md, summary.json, curves.png")


if __name__ == "__main__":
    main()
