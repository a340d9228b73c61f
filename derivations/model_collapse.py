"""Strong model collapse (Dohmatob, Feng, Subramonian, Kempe 2024): ridge on real + synthetic data, test error vs the synthetic fraction, derived and checked by Monte Carlo.

Model (``derivations/_pooled.py``): real rows ``X₁`` (``n₁ × d``, ``N(0, Σ)``)
labelled ``X₁w + ε₁``; synthetic rows ``X₂`` (``n₂ × d``, ``N(0, Σ₂)``,
``Σ₂ = Σ`` or a different spectrum) labelled by a shifted teacher
``X₂(w + Δ) + ε₂``; pooled ridge ``ŵ = (Σ̂ + λ)⁻¹(X₁ᵀy₁ + X₂ᵀy₂)/N``,
``N = n₁ + n₂``. Test error against the true teacher (excess over the test
noise): ``E = (ŵ − w)ᵀΣ(ŵ − w)``, as a function of the synthetic fraction
``p₂ = n₂/N``.

The risk is assembled from four one-point generating functions derived by
``sr.deterministic_equivalent`` (source derivatives; see ``_pooled.py``) and
compared with ``sr.monte_carlo`` of ``E`` as written, at d ∈ {100, 400}.
The "even 1 % synthetic data" effect: at fixed ``p₂ > 0`` the error does not
vanish as ``N/d → ∞`` (it tends to ``p₂²‖Δ‖²_Σ``-like floor), while with
``p₂ = 0`` it decays like ``1/N``.

Not included: the random-projection variant (the random-feature two-point
law of the pooled model is not derivable in the engine today).

    python derivations/model_collapse.py [--quick] [--out DIR]
    symrmt run model_collapse --quick
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np
import sympy as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import markdown_table, pyplot, readable_log_axes, trend_table  # noqa: E402
from _pooled import PooledRidge, compare, eigen_bindings, teacher  # noqa: E402

ALPHA, S_NOISE, DELTA_NORM, LAM = 1.0, 0.1, 0.5, 0.05
K_TOL, C_TOL = 4.0, 4.0


def bindings(d, ratio, p2, cov2="same", lam=LAM):
    """Real + synthetic problem at size ``d``, ``N = ratio·d``, synthetic
    fraction ``p2``. ``cov2``: ``same`` (Σ₂ = Σ) or ``flat`` (Σ₂ with
    spectrum ``i^{-α/2}``: a different synthetic covariance)."""
    s = eigen_bindings(d, ALPHA)
    N = int(round(ratio * d))
    n2 = int(round(p2 * N))
    n2 = max(n2, 1)          # the engine needs n₂ ≥ 1: p₂ = 0 is taken as one synthetic row
    return dict(Sigma1=s, Sigma2=s if cov2 == "same" else eigen_bindings(d, ALPHA / 2), T=s,
                n1=N - n2, n2=n2, lam=lam, wT=teacher(d, 1), Delta=teacher(d, 2, DELTA_NORM),
                s1=S_NOISE, s2=S_NOISE)


def grid_bindings(d, ratios, p2, lam):
    """``bindings`` vectorised over ``N/d`` (the sample sizes as arrays)."""
    b = bindings(d, 1.0, p2, "same", lam=lam)
    N = np.round(np.asarray(ratios) * d)
    n2 = np.maximum(np.round(p2 * N), 1.0)
    return dict(b, n1=N - n2, n2=n2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d = 100 only, few draws (CI)")
    ap.add_argument("--out", default="reports/model_collapse")
    args = ap.parse_args(argv)
    log = print
    t_start = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model = PooledRidge()
    des = model.derive(log)

    sizes = [100] if args.quick else [100, 400]
    trials = {100: 60 if args.quick else 300, 400: 100}
    grid = ([(2.0, 0.1, "same")] if args.quick else
            [(r, p, cv) for r in (1.0, 4.0) for p in (0.01, 0.1, 0.5) for cv in ("same", "flat")])
    rows, fd = [], []
    for d in sizes:
        for ratio, p2, cov2 in grid:
            t0 = time.perf_counter()
            b = bindings(d, ratio, p2, cov2)
            row, err = compare(model, b, trials[d], seed=d + int(100 * p2), d=d,
                               label=f"E, p₂={p2:g}, Σ₂ {cov2}", ratio=ratio, c_tol=C_TOL, k_tol=K_TOL)
            rows.append(row)
            fd.append(err)
            log(f"  d={d} N/d={ratio:g} p₂={p2:g} Σ₂ {cov2}: theory {row.theory:.5g}, MC {row.mc:.5g} ± "
                f"{row.sem:.2g} ({'ok' if row.passed else 'FAIL'}) {time.perf_counter() - t0:.1f} s")

    # the "even 1 %" effect: theory only (cheap), N/d up to 1000 at fixed p₂, λ small
    d_plot = sizes[-1]      # theory curves at the size of the Monte Carlo points they are drawn with
    ratios = np.geomspace(0.5, 1e5, 25 if args.quick else 80)
    fractions = (0.0, 0.01, 0.05, 0.2)
    d_floor = 100           # the floor table and plot (theory only)
    curves = {p: model.risk(grid_bindings(d_floor, ratios, p, lam=1e-4)) for p in fractions}
    fine_p = np.linspace(0.0, 0.9, 10 if args.quick else 46)
    frac_curve = {}
    for r in (1.0, 4.0):
        b = bindings(d_plot, r, 0.5, "same")
        N = round(r * d_plot)
        n2 = np.maximum(np.round(fine_p * N), 1.0)
        frac_curve[r] = model.risk(dict(b, n1=N - n2, n2=n2))
    floor = {p: float(curves[p][-1]) for p in fractions}
    ok = all(r.passed for r in rows)

    # --------------------------------------------------------------- outputs
    lines = ["# Strong model collapse: the derived formulas", "",
             "Pooled ridge on real ($n_1$, $\\Sigma$, teacher $w$) and synthetic ($n_2$, $\\Sigma_2$, teacher "
             "$w+\\Delta$) rows; $E=(\\hat w-w)^\\top\\Sigma(\\hat w-w)$. Exact decomposition (noise averaged):",
             "", r"$$\mathbb E E=\lambda^2 w^\top G\Sigma Gw-2\lambda w^\top G\Sigma G\hat\Sigma_2\Delta"
             r"+\Delta^\top\hat\Sigma_2G\Sigma G\hat\Sigma_2\Delta+\tfrac{s_1}{N}\mathrm{Tr}\,\Sigma G\hat\Sigma_1G"
             r"+\tfrac{s_2}{N}\mathrm{Tr}\,\Sigma G\hat\Sigma_2G$$", "",
             "each term $=-\\partial$ of a one-point generating function of "
             "$R=(t_1\\hat\\Sigma_1+t_2\\hat\\Sigma_2+\\lambda+zT)^{-1}$ ($T=\\Sigma$) at $z=0,t=1$ "
             "($\\partial_z$ for the first three, $\\partial_{t_k}$ for the noise). "
             "Their equivalents, derived by `sr.deterministic_equivalent` (the test teacher $c$ is the vector `wT` $= w$):", ""]
    for k, de in des.items():
        lines += [f"### {k}  (derived in {model.derive_seconds[k]:.2f} s)", "", "$$" + de.latex() + "$$", ""]
    (out / "formulas.md").write_text("\n".join(lines))
    (out / "table.md").write_text(
        "# Strong model collapse: theory vs Monte Carlo\n\n"
        f"Σ spectrum i^-{ALPHA}, ‖w‖ = 1, ‖Δ‖ = {DELTA_NORM}, noise s₁ = s₂ = {S_NOISE}; Σ₂ 'same' = Σ, "
        f"'flat' = spectrum i^-{ALPHA / 2}. The σ² column holds λ. Tolerance k·sem + c·|th|/d, "
        f"k = {K_TOL}, c = {C_TOL}. Monte Carlo: `sr.monte_carlo` of E as written. "
        f"Finite-difference error of the theory ≤ {max(fd):.1e} (h vs 2h).\n\n"
        + markdown_table(rows) + "\n\n## O(1/d) trend\n\n" + trend_table(rows)
        + "\n\n## Error floor at large N (theory, d = 100, λ = 1e-4, N/d = 1e5)\n\n| p₂ | E |\n|---:|---:|\n"
        + "\n".join(f"| {p:g} | {v:.4g} |" for p, v in floor.items()) + "\n")
    summary = dict(passed=ok, n_rows=len(rows), failed=sum(not r.passed for r in rows), quick=args.quick,
                   sizes=sizes, table=[dict(quantity=r.quantity, d=r.d, ratio=r.ratio, lam=r.sigma2,
                                            theory=r.theory, mc=r.mc, sem=r.sem, passed=r.passed) for r in rows],
                   floor_at_N_over_d_1e5=floor, max_finite_difference_error=max(fd),
                   derive_seconds=model.derive_seconds, seconds=time.perf_counter() - t_start)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plt = pyplot(log)
    files = []
    if plt is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        for p, v in curves.items():
            ax.loglog(ratios, v, label=f"p₂ = {p:g}")
        ax.set_xlabel("N/d (total samples per dimension)")
        ax.set_ylabel("test error E (excess)")
        ax.set_title(f"error floor at fixed synthetic fraction, d = {d_floor}, λ = 1e-4")
        ax.legend(fontsize=8)
        readable_log_axes(ax)
        fig.tight_layout()
        fig.savefig(out / "floor.png", dpi=120)
        files.append("floor.png")
        fig, ax = plt.subplots(figsize=(6, 4))
        for r, v in frac_curve.items():
            ln, = ax.plot(fine_p, v, label=f"theory N/d = {r:g}")
            pts = [x for x in rows if x.ratio == r and x.d == sizes[-1] and "same" in x.quantity]
            if pts:
                ax.errorbar([float(x.quantity.split("p₂=")[1].split(",")[0]) for x in pts], [x.mc for x in pts],
                            yerr=[x.sem for x in pts], fmt="o", color=ln.get_color(),
                            label=f"MC N/d = {r:g}, d = {sizes[-1]}")
        ax.set_xlabel("synthetic fraction p₂ = n₂/N")
        ax.set_ylabel("test error E (excess)")
        ax.set_title(f"real + synthetic ridge, Σ₂ = Σ, λ = {LAM}, d = {sizes[-1]}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "fraction.png", dpi=120)
        files.append("fraction.png")
    log(f"== wrote {out}/: formulas.md, table.md, summary.json" + (", " + ", ".join(files) if files else ""))
    log(f"floor at N/d = 1e5: " + ", ".join(f"p₂={p:g}: {v:.3g}" for p, v in floor.items()))
    log(f"{summary['n_rows'] - summary['failed']}/{summary['n_rows']} comparisons pass; "
        f"{summary['seconds']:.1f} s")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
