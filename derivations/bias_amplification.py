"""Bias amplification (Subramonian, Bell, Sagun, Dohmatob 2024): two groups with different covariances and teachers, pooled ridge; per-group test error and its gap vs λ and the group proportion, derived from the model's definition and checked by Monte Carlo.

Model (``derivations/_pooled.py``), written with ``sr.vstack``: group A has
``n_A`` rows ``N(0, Σ_A)`` with labels ``X_A w_A + ε_A``; group B ``n_B`` rows
``N(0, Σ_B)`` (a different spectrum, and a different eigenbasis ordering: the
big directions of B are the small ones of A) with labels ``X_B w_B + ε_B``.
One ridge on the stacked data, ``ŵ = (XᵀX/N + λ)⁻¹Xᵀy/N``. Per-group test
error ``E_g = (ŵ − w_g)ᵀΣ_g(ŵ − w_g)`` and the gap ``E_B − E_A`` as functions of
``λ`` and the proportion ``p_B = n_B/N``. Both ``E_A`` and ``E_B`` are derived
directly from that one definition by ``sr.deterministic_equivalent`` (the
pooled-block law lifted to two resolvents).

Checks: every row against an independent dense NumPy Monte Carlo of
``(E_A, E_B)`` (tolerance ``4·sem + 4·|th|/d``) at d ∈ {100, 400, 1600}; at
d = 100 also against the previous source-derivative route (generating
functions and finite differences; 1e-6 relative).

Random projections (ridge on ``XF``, ``F`` a ``d×p`` random projection, ``p = d/2``):
written in ``_pooled.PooledRidge.rp_expressions``; ``sr.deterministic_equivalent``
refuses them (message recorded in the report), and their theory rows come from
``_pooled.ProjectedPooled`` — nested conditioning on the engine's pooled
derivation (stage X) and ``F(FᵀMF + λ)⁻¹Fᵀ ≃ (M + κ)⁻¹`` with its source
derivative (stage F) — checked against dense Monte Carlo of ``X_A, X_B, F`` at
d ∈ {100, 400} (same tolerance).

    python derivations/bias_amplification.py [--quick] [--out DIR]
    symrmt run bias_amplification --quick
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from _common import Row, markdown_table, pyplot, readable_log_axes, trend_table  # noqa: E402
from _pooled import (compact_latex, dense_group_mc, derive_recipe_models, rp_report,  # noqa: E402
                     eigen_bindings, old_bindings, teacher)
from _ridge_common import start  # noqa: E402

S_NOISE, TEACHER_GAP = 0.1, 0.7
K_TOL, C_TOL = 4.0, 4.0
CROSS_TOL = 1e-6
KEY = {"A": "E_1", "B": "E_2"}      # block 1 = group A, block 2 = group B


def bindings(d, ratio, pB, lam):
    """Bindings of the two-group model at size ``d``, ``N = ratio·d``,
    proportion ``pB`` of group B (scalars or arrays; ``n_A, n_B ≥ 1``)."""
    sA = eigen_bindings(d, 1.0)
    sB = 0.5 * eigen_bindings(d, 0.5)[::-1]          # different spectrum, reversed order
    wA = teacher(d, 11)
    wB = wA + teacher(d, 12, TEACHER_GAP)
    N = np.round(np.asarray(ratio, dtype=float) * d)
    nB = np.maximum(np.round(np.asarray(pB, dtype=float) * N), 1.0)
    nA = np.maximum(N - nB, 1.0)
    b = dict(Sigma1=sA, Sigma2=sB, n1=nA, n2=nB, lam=lam, w1=wA, w2=wB, s1=S_NOISE, s2=S_NOISE)
    if np.ndim(nA) == 0:
        b.update(n1=int(nA), n2=int(nB))
    return b


def main(argv=None):
    args, out, t_start = start(argv, __doc__, "reports/bias_amplification", "d = 100 only, few draws (CI)")
    log = print
    model, des, rp_refused, cross = derive_recipe_models(log)

    sizes = [100] if args.quick else [100, 400, 1600]
    trials = {100: 60 if args.quick else 300, 400: 100, 1600: 12}
    grid = ([(2.0, 0.2, 0.1)] if args.quick else
            [(2.0, p, lam) for p in (0.2, 0.5) for lam in (0.01, 0.1, 1.0)])
    rows, cross_rows = [], []
    for d in sizes:
        for ratio, pB, lam in grid:
            t0 = time.perf_counter()
            b = bindings(d, ratio, pB, lam)
            mc = dense_group_mc(b, trials[d], seed=7 * d + int(10 * pB) + int(100 * lam))
            for g, blk in (("A", 1), ("B", 2)):
                th = float(model.risk(b, KEY[g]))
                row = Row(f"E_{g}, p_B={pB:g}", d, ratio, lam, th, mc[blk][0], mc[blk][1], trials[d], c=C_TOL, k=K_TOL)
                rows.append(row)
                if d == 100:
                    old, step = cross.risk_with_error(old_bindings(b, blk))
                    cross_rows.append((row.quantity, lam, th, float(old), float(step), abs(float(old) - th) / th))
                log(f"  d={d} p_B={pB:g} λ={lam:g} E_{g}: theory {th:.5g}, MC {row.mc:.5g} ± {row.sem:.2g} "
                    f"({'ok' if row.passed else 'FAIL'})")
            log(f"    [{time.perf_counter() - t0:.1f} s]")

    # random projections (p = d/2): two-stage theory vs dense Monte Carlo of X_A, X_B and F
    rp_rows = []
    rp_sizes = [100] if args.quick else [100, 400]
    rp_trials = {100: 40 if args.quick else 200, 400: 150}
    for d in rp_sizes:
        for pB in ((0.2,) if args.quick else (0.2, 0.5)):
            t0 = time.perf_counter()
            b = dict(bindings(d, 2.0, pB, 0.1), p=d // 2)
            mc = dense_group_mc(b, rp_trials[d], seed=900 + d + int(10 * pB), p=d // 2)
            for g, blk in (("A", 1), ("B", 2)):
                th = model.rp_theory[KEY[g]](b)
                rp_rows.append(Row(f"E_{g} (random projections p=d/2), p_B={pB:g}", d, 2.0, 0.1, th, mc[blk][0],
                                   mc[blk][1], rp_trials[d], c=C_TOL, k=K_TOL))
                log(f"  random projections d={d} p_B={pB:g} E_{g}: theory {th:.5g}, MC {mc[blk][0]:.5g} ± "
                    f"{mc[blk][1]:.2g} ({'ok' if rp_rows[-1].passed else 'FAIL'})")
            log(f"    [{time.perf_counter() - t0:.1f} s]")

    d_plot = 100 if args.quick else 400
    lams = np.geomspace(1e-3, 10, 40)  # index 0, 13, 26, 39 in the gap table
    by_lam = {p: {g: model.risk(bindings(d_plot, 2.0, p, lams), KEY[g]) for g in "AB"} for p in (0.2, 0.5)}
    props = np.linspace(0.05, 0.95, 10 if args.quick else 37)
    by_prop = {lam: {g: model.risk(bindings(d_plot, 2.0, props, lam), KEY[g]) for g in "AB"}
               for lam in (0.01, 0.1, 1.0)}
    worst_cross = max(c[-1] for c in cross_rows)
    cross_ok = worst_cross <= CROSS_TOL
    ok = all(r.passed for r in rows + rp_rows) and cross_ok

    lines = ["# Bias amplification: the derived formulas", "",
             "Groups $A$ (block 1: $\\Sigma_1=\\Sigma_A$, teacher `w1` $=w_A$) and $B$ (block 2: $\\Sigma_2=\\Sigma_B$, "
             "`w2` $=w_B$) stacked, $\\hat w=(X^\\top X/N+\\lambda)^{-1}X^\\top y/N$; per-group error "
             "$E_g=(\\hat w-w_g)^\\top\\Sigma_g(\\hat w-w_g)$, derived by `sr.deterministic_equivalent` from that "
             "definition:", ""]
    for k, de in des.items():
        if k == "E_real_only":
            continue
        lines += [f"## {k} (group {'A' if k == 'E_1' else 'B'}; derived in {model.derive_seconds[k]:.2f} s)", "",
                  ] + compact_latex(de, model) + [""]
    lines += ["## Random projections (ridge on XF)", "",
              "`sr.deterministic_equivalent` refuses the pooled random-projection model (verbatim below); the table's "
              "theory for it is `_pooled.ProjectedPooled`: the derived $E_g$ above read in feature space "
              "($\\Sigma_k\\to F^\\top\\Sigma_kF$, $w_k\\to\\theta_k$, $s_k\\to s_k+r_k$, plus $r_g$), then averaged over "
              "$F$ with $F(F^\\top MF+\\lambda)^{-1}F^\\top\\simeq(M+\\kappa)^{-1}$, "
              "$\\kappa(1-\\mathrm{Tr}[M(M+\\kappa)^{-1}]/p)=\\lambda$, $M=\\sum_k (n_k/N)\\Sigma_k/(1+\\delta_k)$, "
              "and its source derivative for two resolvents.", ""]
    lines += [f"- engine refusal, **{k}**: `{v}`" for k, v in rp_refused.items()]
    (out / "formulas.md").write_text("\n".join(lines) + "\n")
    gap_lines = [f"| p_B | λ | E_A | E_B | gap E_B − E_A |", "|---:|---:|---:|---:|---:|"]
    for p in (0.2, 0.5):
        for j in (0, 13, 26, 39):
            a, bb = by_lam[p]["A"][j], by_lam[p]["B"][j]
            gap_lines.append(f"| {p:g} | {lams[j]:.3g} | {a:.4g} | {bb:.4g} | {bb - a:+.4g} |")
    cross_table = ["| row (d = 100) | λ | engine (direct) | generating functions (FD) | FD step bound | rel. diff |",
                   "|---|---:|---:|---:|---:|---:|"]
    cross_table += [f"| {q} | {lam:g} | {a:.10g} | {o:.10g} | {s:.1e} | {e:.1e} |" for q, lam, a, o, s, e in cross_rows]
    body = ["# Bias amplification: theory vs Monte Carlo", "",
            f"Σ_A spectrum i^-1, Σ_B = 0.5·i^-0.5 in reversed order, ‖w_A‖ = 1, ‖w_B − w_A‖ = {TEACHER_GAP}, "
            f"noise {S_NOISE}, N = 2d. The σ² column holds λ; n/d is N/d. Tolerance k·sem + c·|th|/d, "
            f"k = {K_TOL}, c = {C_TOL}. Theory: the direct derivation of E_A, E_B. Monte Carlo: independent "
            f"dense NumPy draws of (E_A, E_B) (trials per size {trials}).", "",
            markdown_table(rows), "", "## O(1/d) trend", "", trend_table(rows), "",
            f"## Gap vs λ (theory, d = {d_plot})", ""] + gap_lines
    body += ["", f"## Cross-check: previous route (generating functions + finite differences), "
                 f"tolerance {CROSS_TOL:g} relative: {'pass' if cross_ok else '**FAIL**'}", ""] + cross_table
    rp_body, rp_summary = rp_report("ridge on XF, F d×p, p = d/2, N/d = 2, λ = 0.1", "X_A, X_B, ε", rp_refused, rp_trials, rp_rows, rp_sizes)
    body += rp_body
    (out / "table.md").write_text("\n".join(body) + "\n")
    summary = dict(passed=ok, n_rows=len(rows) + len(rp_rows), failed=sum(not r.passed for r in rows + rp_rows),
                   quick=args.quick,
                   sizes=sizes, table=[dict(quantity=r.quantity, d=r.d, ratio=r.ratio, lam=r.sigma2, theory=r.theory,
                                            mc=r.mc, sem=r.sem, tol=r.tol, passed=r.passed) for r in rows],
                   cross_check=dict(passed=cross_ok, worst_rel=worst_cross, tol=CROSS_TOL),
                   random_projections=rp_summary,
                   derive_seconds=model.derive_seconds, seconds=time.perf_counter() - t_start)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plt = pyplot(log)
    files = []
    if plt is not None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for p, v in by_lam.items():
            for g in "AB":
                ln, = axes[0].loglog(lams, v[g], label=f"E_{g}, p_B = {p:g} (theory)")
                pts = [r for r in rows if r.quantity == f"E_{g}, p_B={p:g}" and r.d == d_plot]
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
    log(f"cross-check vs generating functions: worst rel. diff {worst_cross:.1e} ({'ok' if cross_ok else 'FAIL'})")
    log(f"{summary['n_rows'] - summary['failed']}/{summary['n_rows']} comparisons pass; {summary['seconds']:.1f} s")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
