"""Bias amplification (Subramonian, Bell, Sagun, Dohmatob 2024): two groups with different covariances and teachers, pooled ridge; per-group test error and its gap vs λ and the group proportion, derived and checked by Monte Carlo.

Model (``derivations/_pooled.py``): group A has ``n_A`` rows ``N(0, Σ_A)``
with labels ``X_A w_A + ε_A``; group B ``n_B`` rows ``N(0, Σ_B)`` (a different
spectrum, and a different eigenbasis ordering: the big directions of B are
the small ones of A) with labels ``X_B w_B + ε_B``. One ridge on the pooled
data, ``ŵ = (Σ̂ + λ)⁻¹(X_Aᵀy_A + X_Bᵀy_B)/N``. Per-group test error
``E_g = (ŵ − w_g)ᵀΣ_g(ŵ − w_g)`` and the gap ``E_B − E_A`` as functions of
``λ`` and the proportion ``p_B = n_B/N``.

``E_A`` is the pooled risk of ``_pooled.py`` with block 1 = A, ``Δ = w_B − w_A``,
``T = Σ_A``; ``E_B`` the same with the blocks' bindings swapped. Each is
assembled from one-point generating functions derived by
``sr.deterministic_equivalent`` and compared with an independent dense
NumPy Monte Carlo of ``E_g`` at d ∈ {100, 400}.

Not included: the random-projection variant (the pooled random-feature
two-point law is not derivable in the engine today).

    python derivations/bias_amplification.py [--quick] [--out DIR]
    symrmt run bias_amplification --quick
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import markdown_table, pyplot, readable_log_axes, trend_table  # noqa: E402
from _pooled import PooledRidge, compare, eigen_bindings, teacher  # noqa: E402

S_NOISE, TEACHER_GAP = 0.1, 0.7
K_TOL, C_TOL = 4.0, 4.0


def groups(d):
    sA = eigen_bindings(d, 1.0)
    sB = 0.5 * eigen_bindings(d, 0.5)[::-1]          # different spectrum, reversed order
    wA = teacher(d, 11)
    wB = wA + teacher(d, 12, TEACHER_GAP)
    return (sA, wA), (sB, wB)


def bindings(d, ratio, pB, lam, group):
    """Bindings of ``E_group`` (``group`` = "A" or "B"), ``N = ratio·d``.
    Block 1 is the tested group, block 2 the other one."""
    (sA, wA), (sB, wB) = groups(d)
    N = np.round(np.asarray(ratio, dtype=float) * d)
    nB = np.maximum(np.round(np.asarray(pB, dtype=float) * N), 1.0)
    nA = np.maximum(N - nB, 1.0)
    if group == "A":
        return dict(Sigma1=sA, Sigma2=sB, T=sA, n1=nA, n2=nB, lam=lam, wT=wA, Delta=wB - wA, s1=S_NOISE, s2=S_NOISE)
    return dict(Sigma1=sB, Sigma2=sA, T=sB, n1=nB, n2=nA, lam=lam, wT=wB, Delta=wA - wB, s1=S_NOISE, s2=S_NOISE)


def scalar_dims(b):
    return dict(b, n1=int(b["n1"]), n2=int(b["n2"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="d = 100 only, few draws (CI)")
    ap.add_argument("--out", default="reports/bias_amplification")
    args = ap.parse_args(argv)
    log = print
    t_start = time.perf_counter()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = PooledRidge()
    des = model.derive(log)

    sizes = [100] if args.quick else [100, 400]
    trials = {100: 60 if args.quick else 300, 400: 100}
    grid = ([(2.0, 0.2, 0.1)] if args.quick else
            [(2.0, p, lam) for p in (0.2, 0.5) for lam in (0.01, 0.1, 1.0)])
    rows, fd = [], []
    for d in sizes:
        for ratio, pB, lam in grid:
            for g in ("A", "B"):
                t0 = time.perf_counter()
                b = scalar_dims(bindings(d, ratio, pB, lam, g))
                row, err = compare(model, b, trials[d], seed=7 * d + (g == "B"), d=d,
                                   label=f"E_{g}, p_B={pB:g}", ratio=ratio, c_tol=C_TOL, k_tol=K_TOL)
                rows.append(row)
                fd.append(err)
                log(f"  d={d} p_B={pB:g} λ={lam:g} E_{g}: theory {row.theory:.5g}, MC {row.mc:.5g} ± "
                    f"{row.sem:.2g} ({'ok' if row.passed else 'FAIL'}) {time.perf_counter() - t0:.1f} s")

    d_plot = sizes[-1]      # theory curves at the size of the Monte Carlo points they are drawn with
    lams = np.geomspace(1e-3, 10, 40)  # index 0, 13, 26, 39 in the gap table
    by_lam = {p: {g: model.risk(bindings(d_plot, 2.0, p, lams, g)) for g in "AB"} for p in (0.2, 0.5)}
    props = np.linspace(0.05, 0.95, 10 if args.quick else 37)
    by_prop = {lam: {g: model.risk(bindings(d_plot, 2.0, props, lam, g)) for g in "AB"} for lam in (0.01, 0.1, 1.0)}
    ok = all(r.passed for r in rows)

    lines = ["# Bias amplification: the derived formulas", "",
             "Per-group error $E_g=(\\hat w-w_g)^\\top\\Sigma_g(\\hat w-w_g)$ of the pooled ridge; with block 1 the "
             "tested group, $c=w_g$ (the vector `wT`), $\\Delta=w_{g'}-w_g$, $T=\\Sigma_g$:", "",
             r"$$\mathbb E E_g=\lambda^2 c^\top GTGc-2\lambda c^\top GTG\hat\Sigma_2\Delta"
             r"+\Delta^\top\hat\Sigma_2GTG\hat\Sigma_2\Delta+\tfrac{s_1}{N}\mathrm{Tr}\,TG\hat\Sigma_1G"
             r"+\tfrac{s_2}{N}\mathrm{Tr}\,TG\hat\Sigma_2G$$", "",
             "each term $=-\\partial$ of a one-point generating function of "
             "$R=(t_1\\hat\\Sigma_1+t_2\\hat\\Sigma_2+\\lambda+zT)^{-1}$ at $z=0,t=1$; derived equivalents:", ""]
    for k, de in des.items():
        lines += [f"### {k}  (derived in {model.derive_seconds[k]:.2f} s)", "", "$$" + de.latex() + "$$", ""]
    (out / "formulas.md").write_text("\n".join(lines))
    gap_lines = ["| p_B | λ | E_A | E_B | gap E_B − E_A |", "|---:|---:|---:|---:|---:|"]
    for p in (0.2, 0.5):
        for j in (0, 13, 26, 39):
            a, bb = by_lam[p]["A"][j], by_lam[p]["B"][j]
            gap_lines.append(f"| {p:g} | {lams[j]:.3g} | {a:.4g} | {bb:.4g} | {bb - a:+.4g} |")
    (out / "table.md").write_text(
        "# Bias amplification: theory vs Monte Carlo\n\n"
        f"Σ_A spectrum i^-1, Σ_B = 0.5·i^-0.5 in reversed order, ‖w_A‖ = 1, ‖w_B − w_A‖ = {TEACHER_GAP}, "
        f"noise {S_NOISE}, N = 2d. The σ² column holds λ; n/d is N/d. Tolerance k·sem + c·|th|/d, "
        f"k = {K_TOL}, c = {C_TOL}. Monte Carlo: independent dense NumPy draws of E_g. "
        f"Finite-difference error of the theory ≤ {max(fd):.1e}.\n\n"
        + markdown_table(rows) + "\n\n## O(1/d) trend\n\n" + trend_table(rows)
        + "\n\n## Gap vs λ (theory, d = 100)\n\n" + "\n".join(gap_lines) + "\n")
    summary = dict(passed=ok, n_rows=len(rows), failed=sum(not r.passed for r in rows), quick=args.quick,
                   sizes=sizes, table=[dict(quantity=r.quantity, d=r.d, ratio=r.ratio, lam=r.sigma2,
                                            theory=r.theory, mc=r.mc, sem=r.sem, passed=r.passed) for r in rows],
                   max_finite_difference_error=max(fd), derive_seconds=model.derive_seconds,
                   seconds=time.perf_counter() - t_start)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plt = pyplot(log)
    files = []
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for p, v in by_lam.items():
            for g in "AB":
                ln, = axes[0].loglog(lams, v[g], label=f"E_{g}, p_B = {p:g} (theory)")
                pts = [r for r in rows if r.quantity == f"E_{g}, p_B={p:g}" and r.d == sizes[-1]]
                if pts:
                    axes[0].errorbar([r.sigma2 for r in pts], [r.mc for r in pts], yerr=[r.sem for r in pts],
                                     fmt="o", color=ln.get_color(), ms=4)
        axes[0].set_xlabel("ridge λ")
        axes[0].set_ylabel("per-group test error E_g")
        axes[0].set_title(f"N/d = 2, d = {d_plot} (theory and MC)")
        axes[0].legend(fontsize=7)
        readable_log_axes(axes[0])
        for lam, v in by_prop.items():
            axes[1].plot(props, v["B"] - v["A"], label=f"λ = {lam:g}")
        axes[1].axhline(0, c="gray", lw=0.5)
        axes[1].set_xlabel("proportion of group B, p_B = n_B/N")
        axes[1].set_ylabel("gap E_B − E_A")
        axes[1].set_title(f"gap vs proportion, N/d = 2, d = {d_plot}")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "groups.png", dpi=120)
        files.append("groups.png")
    log(f"== wrote {out}/: formulas.md, table.md, summary.json" + (", " + ", ".join(files) if files else ""))
    log(f"{summary['n_rows'] - summary['failed']}/{summary['n_rows']} comparisons pass; {summary['seconds']:.1f} s")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
