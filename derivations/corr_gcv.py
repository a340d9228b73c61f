"""Ridge regression with correlated samples (Atanasov, Zavatone-Veth, Pehlevan, arXiv:2408.04607): out-of-sample risk, training error, GCV and its bias under AR(1) and exponential sample correlations — derived by the engine, checked against Monte Carlo.

Model: ``X = K^{1/2} Z Σ^{1/2}`` (``sr.GaussianData("X", n, Σ, K=K)``: rows
correlated across samples by ``K``), ``y = Xw + ε``, ridge
``ŵ = (Σ̂ + λ)⁻¹Xᵀy/n``, ``Σ̂ = XᵀX/n``. Derived by
``sr.deterministic_equivalent`` from these definitions (nothing typed in):

* out-of-sample risk ``(ŵ − w)ᵀΣ(ŵ − w) + σ²`` (fresh, uncorrelated test point);
* training (in-sample) error ``|y − Xŵ|²/n``;
* GCV ``train/(1 − Tr[Σ̂(Σ̂+λ)⁻¹]/n)²`` and its bias ``GCV − risk`` (derived
  as one expression): with K ≠ I the naive GCV no longer estimates the risk;
* ``|ŵ|²``;
* the time-series test point (the paper's correlated test point): the next
  sample ``x̃`` of the same process, ``Cov(x̃, x_t) = k_t Σ``, ``Var x̃ = Σ``
  (``k``, ``k₀ = 1`` = the last column of ``K``'s extension to ``n + 1``
  samples), label ``ỹ = x̃ᵀw + ε̃``. Gaussian conditioning (exact): given the
  training rows, ``x̃ | X ~ N(Xᵀa, sΣ)`` with ``a = K⁻¹k``, ``s = 1 − kᵀK⁻¹k``
  (``X`` has covariance ``K ⊗ Σ``), so the test error averaged over ``x̃`` and
  ``ε̃`` is, with white noise (``ε̃`` independent of ``ε``),
  ``(aᵀX(ŵ − w))² + s(ŵ − w)ᵀΣ(ŵ − w) + σ²``, and with K-noise (``ε̃`` the
  next sample of the noise process, ``ε̃ | ε ~ N(aᵀε, sσ²)``)
  ``(aᵀ(y − Xŵ))² + s[(ŵ − w)ᵀΣ(ŵ − w) + σ²]``. These expressions ("ts risk")
  are what the engine derives (the rank-one sandwich ``Xᵀ a aᵀ X`` through the
  sample-side lift); ``risk − ts risk`` is how optimistic the next-point error
  is about the long-time (uncorrelated test point) risk. With ``K = I``
  (``k = 0``) ts risk = risk. Its estimate from the training set when the
  noise shares ``K``: ``(aᵀr)² + s·CorrGCV`` ("K-noise ts corrgcv", ``r`` the
  observed residual) — derived, it equals the ts risk (the conditional error
  is ``(aᵀr)² + s·risk`` exactly, and CorrGCV ≃ risk). This estimator is the
  recipe's, written from these definitions, not typed from the paper.

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
``4·sem + c·|th|/d`` (c = 6). The time-series rows are also checked against an
independent dense NumPy simulation of the (n + 1)-sample process that
averages each draw's test error exactly over ``x̃`` and the label noise given
``X`` (its Gaussian conditional law), tolerance ``4·sem + 3·|th|/d``.

Engine vs the paper's formula (``_paper_ridge.py``, plain NumPy, no symrmt):
the paper's text could not be opened here beyond its abstract; its formulas
were transcribed from the authors' code (``Pehlevan-Group/S_transform``,
``solve_theory``/``S_exp_corr``, which draws the paper's figures): κ, κ̃ with
``κκ̃/λ = 1/d̃f₁``, ``γ = (df₂/df₁)(d̃f₂/d̃f₁)``, R_out, R_in (matched and white
noise), naive GCV, CorrGCV, norms (exact identity ``|ŵ|² = ∫_λ^∞ R_in/t² dt −
R_in/λ``) and the time-series factor (cited as Theorem VI.1 / Eq. (44) by a
third-party reproduction) ``c = 1 − kᵀK⁻¹k + κ̃²kᵀK⁻¹(K+κ̃)⁻²k``, ts error
``= c·R_out`` with matched noise. All agree with the engine to ≤ 1e-9 at the
recipe's settings and the paper's figure settings (N = 100, T = N/q,
q ∈ logspace(−1, 1, 15), K = e^{−|t−s|/ξ}, ξ = 1e2, λ = 1e-4 and ξ = 1e-2,
λ = 1e-2, α = 1.1, r = 0.8, σ_ε = 0.05; ``paper_figure.png``). With WHITE label
noise the authors' code uses ``c·R_g + σ²`` for the next-point error: that is
not the conditional error, and the dense Monte Carlo rejects it (|z| up to
~100 at d = 100) while it confirms the engine. The paper's closed-form
S-transform of the exponential K agrees with the finite-T spectrum to O(1/T).

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
from _common import Row, markdown_table, pyplot, readable_log_axes  # noqa: E402
from _ridge_common import start, compare, derive_all, formulas_md, write_report  # noqa: E402

ALPHA, BETA, LAM, SIGMA2, RHO, XI = 1.5, 1.0, 1e-3, 0.1, 0.5, 3.0
C, K = 6.0, 4.0
QUANTITIES = ("risk", "train", "gcv", "gcv - risk", "corrgcv", "corrgcv - risk", "norm")
C_DENSE = 3.0


def model():
    n, d = sr.dims("n d")
    lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
    Sigma = sr.Covariance("Sigma", d)
    Kc = sr.Covariance("K", n)
    X = sr.GaussianData("X", n, Sigma, K=Kc)
    w = sr.Vector("w", d)
    k = sr.Vector("k", n)                             # Cov(x̃, x_t) = k_t Σ: the last column of K's extension
    a = Kc.inverse() * k                              # E[x̃ | X] = Xᵀa
    s = 1 - k.T * Kc.inverse() * k                    # Cov[x̃ | X] = sΣ
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
        excess = (wh - w).T * Sigma * (wh - w)
        if tag:      # ε̃ | ε ~ N(aᵀε, sσ²): the mean error is aᵀ(y − Xŵ), the training residual seen through a
            ts = r.T * a * a.T * r + s * (excess + s2)
        else:        # ε̃ independent of ε
            ts = (wh - w).T * X.T * a * a.T * X * (wh - w) + s * excess + s2
        e[tag + "ts risk"] = ts
        e[tag + "risk - ts risk"] = risk - ts
        if tag:      # the next-point error estimated from the training set: observed (aᵀr)² plus s·CorrGCV
            e[tag + "ts corrgcv"] = r.T * a * a.T * r + s * corrgcv
            e[tag + "ts corrgcv - ts risk"] = e[tag + "ts corrgcv"] - ts
    return e


def problem(d):
    s = np.arange(1, d + 1, dtype=float) ** -ALPHA
    w = np.arange(1, d + 1, dtype=float) ** -BETA
    return s, w / np.linalg.norm(w)


def correlations(N):
    """``{name: K}`` (``N × N``): the training samples' correlations."""
    return {name: Ke[:N, :N] for name, Ke in extended(N).items()}


def extended(N):
    """``{name: K_ext}`` (``(N+1) × (N+1)``): the process at the N training
    samples and the next one (the time-series test point); the training block
    is :func:`correlations`' ``K``, the last column (without its diagonal 1)
    the test point's ``k``."""
    i = np.arange(N + 1)
    t = np.cumsum(np.random.default_rng(12345).exponential(1.0, N + 1))   # first N times: the training samples
    return {"iid": np.eye(N + 1),
            f"AR(1) ρ={RHO}": RHO ** np.abs(i[:, None] - i[None, :]),
            f"exp ξ={XI:g}": np.exp(-np.abs(t[:, None] - t[None, :]) / XI)}


def dense_ts(Ke, s, w, noise, trials, seed):
    """Independent dense NumPy check of the time-series test error: draws the
    training part of the process (``X = K^{1/2} Z Σ^{1/2}``) and, per draw,
    the EXACT average of ``(ỹ − x̃ᵀŵ)²`` over the label noise and the test
    point's conditional law ``x̃ | X ~ N(Xᵀa, sΣ)``, ``a = K⁻¹k``,
    ``s = 1 − kᵀK⁻¹k`` (``ŵ − w = m + Bε`` is Gaussian in ``ε``). Returns
    ``(mean, sem)`` over draws of ``X``."""
    N, D = Ke.shape[0] - 1, len(s)
    K, k = Ke[:N, :N], Ke[:N, N]
    a = np.linalg.solve(K, k)
    sres = Ke[N, N] - k @ a
    L = np.linalg.cholesky(K)
    Kn = K if noise == "K" else np.eye(N)
    rng = np.random.default_rng(seed)
    vals = np.empty(trials)
    for j in range(trials):
        X = L @ rng.standard_normal((N, D)) * np.sqrt(s)
        B = np.linalg.solve(X.T @ X / N + LAM * np.eye(D), X.T / N)     # ŵ = B y
        m = B @ (X @ w) - w                                              # E_ε[ŵ − w]
        C = SIGMA2 * B @ Kn @ B.T                                        # Cov_ε[ŵ − w]
        excess = m @ (s * m) + s @ np.diag(C)
        if noise == "K":
            ra = a - B.T @ (X.T @ a)                                     # aᵀ(y − Xŵ) = raᵀ y
            vals[j] = (ra @ (X @ w)) ** 2 + SIGMA2 * ra @ Kn @ ra + sres * (excess + SIGMA2)
        else:
            u = X.T @ a                                                  # aᵀX(ŵ − w) = uᵀ(ŵ − w)
            vals[j] = (u @ m) ** 2 + u @ C @ u + sres * excess + SIGMA2
    return vals.mean(), vals.std(ddof=1) / np.sqrt(trials)


# ------------------------------------------------------------------ the paper's own formulas
# The paper's main figure ("Correlated Regression", authors' notebook LR_correlated_samples.ipynb):
# N = 100 features, T = int(N/q) for q in logspace(−1, 1, 15), exponential K_ts = e^{−|t−s|/ξ}, Σ = diag(i^−α),
# w̄ ∝ i^−β, β = α(r − 1/2) + 1/2, matched noise (K' = K), σ_ε = 0.05; ξ = 1e2, λ = 1e-4, α = 1.1, r = 0.8 —
# and the weakly correlated regime ξ = 1e-2, λ = 1e-2.
PAPER_N, PAPER_ALPHA, PAPER_R, PAPER_SIGMA = 100, 1.1, 0.8, 0.05
PAPER_REGIMES = {"ξ=1e2, λ=1e-4": (1e2, 1e-4), "ξ=1e-2, λ=1e-2": (1e-2, 1e-2)}
PAPER_TOL = 1e-6
PAPER_QUANTITIES = ("risk", "train", "gcv", "corrgcv", "norm")


def paper_problem():
    """``(s, w)`` of the paper's figure: ``Σ = diag(i^−α)``, ``w̄ ∝ i^−β``."""
    beta = PAPER_ALPHA * (PAPER_R - 0.5) + 0.5
    s = np.arange(1, PAPER_N + 1, dtype=float) ** -PAPER_ALPHA
    w = np.arange(1, PAPER_N + 1, dtype=float) ** -beta
    return s, w / np.linalg.norm(w)


def paper_T_grid(quick):
    Ts = (PAPER_N / np.logspace(-1, 1, 15)).astype(int)
    return Ts[3::3] if quick else Ts


def exp_K(T, xi):
    i = np.arange(T)
    return np.exp(-np.abs(i[:, None] - i[None, :]) / xi)


def paper_check(fns, quick, log=print):
    """Engine (compiled derived equivalents) vs the paper's formulas coded
    independently in ``_paper_ridge.py`` (authors' ``solve_theory``: κ, κ̃,
    γ, R_out, R_in, the CorrGCV factor; Eq. (44) time-series factor; norms
    from R_in by the exact ridge identity). Rows: the recipe's settings and
    the paper's figure settings; pass when every rel. diff ≤ PAPER_TOL."""
    import _paper_ridge as pr
    rows, worst = [], 0.0

    def add(setting, name, D, N, lam, eng, ref):
        nonlocal worst
        rel = abs(eng - ref) / abs(ref)
        worst = max(worst, rel)
        rows.append((setting, name, D, N, lam, eng, ref, rel))

    for D in ([100] if quick else [100, 400]):
        s, w = problem(D)
        for q in (0.5, 2.0):
            N = int(q * D)
            for kname, Ke in extended(N).items():
                K, kv = Ke[:N, :N], Ke[:N, N]
                eK = np.linalg.eigvalsh(K)
                b = dict(Sigma=s, w=w, n=N, K=K, lam=LAM, sigma2=SIGMA2)
                for tag, noise in (("", "white"), ("K-noise ", "K")):
                    th = pr.corr_theory(s, w, eK, LAM, SIGMA2, noise)
                    for qn in PAPER_QUANTITIES:
                        if tag + qn not in fns or (qn == "norm" and quick and not kname.startswith("AR")):
                            continue     # --quick: norms (a quadrature each) on the AR(1) rows only
                        ref = pr.corr_norm(s, w, eK, LAM, SIGMA2, noise) if qn == "norm" else th[qn]
                        add(f"recipe, {kname}", tag + qn, D, N, LAM, float(fns[tag + qn](**b)), ref)
                if kname != "iid" and "K-noise ts risk" in fns:
                    add(f"recipe, {kname}", "K-noise ts risk (Eq. 44)", D, N, LAM,
                        float(fns["K-noise ts risk"](k=kv, **b)), pr.timeseries_risk(s, w, K, kv, LAM, SIGMA2, "K"))
    s, w = paper_problem()
    for reg, (xi, lam) in PAPER_REGIMES.items():
        if quick and xi < 1:
            continue
        for T in paper_T_grid(quick):
            K = exp_K(T, xi)
            eK = np.linalg.eigvalsh(K)
            b = dict(Sigma=s, w=w, n=int(T), K=K, lam=lam, sigma2=PAPER_SIGMA ** 2)
            for tag, noise in (("K-noise ", "K"), ("", "white")):
                th = pr.corr_theory(s, w, eK, lam, PAPER_SIGMA ** 2, noise)
                for qn in (PAPER_QUANTITIES if tag else ("risk", "train")):
                    if tag + qn not in fns or (qn == "norm" and quick):
                        continue
                    ref = pr.corr_norm(s, w, eK, lam, PAPER_SIGMA ** 2, noise) if qn == "norm" else th[qn]
                    add(f"paper's figure, {reg}", tag + qn, PAPER_N, int(T), lam, float(fns[tag + qn](**b)), ref)
    ok = bool(worst <= PAPER_TOL)
    log(f"  engine vs the paper's formula (independent NumPy): {len(rows)} rows, worst rel. diff {worst:.1e} "
        f"({'pass' if ok else 'FAIL'} ≤ {PAPER_TOL:g})")
    lines = ["| setting | quantity | d = N | n = T | λ | engine | paper (NumPy) | rel. diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {st} | {nm} | {D_} | {N_} | {l_:g} | {e_:.10g} | {r_:.10g} | {x_:.1e} |"
              for st, nm, D_, N_, l_, e_, r_, x_ in rows]
    table = ("Atanasov, Zavatone-Veth, Pehlevan (arXiv:2408.04607), coded independently in "
             "`derivations/_paper_ridge.py` from the authors' code (Pehlevan-Group/S_transform, `solve_theory`): "
             "κ, κ̃ from Tr[K(K+κ̃)⁻¹] = Tr[Σ(Σ+κ)⁻¹], κκ̃/λ = 1/d̃f₁; γ = (df₂/df₁)(d̃f₂/d̃f₁); "
             "R_out = κ²Σw̄²s/(s+κ)²/(1−γ) + σ²γ_n/(1−γ) + σ²; R_in as in `corr_theory`; naive GCV = "
             "R_in/(1−d̃f₁)²; CorrGCV = S₁/(1−d̃f₂/d̃f₁)·R_in; white noise: γ_n, d̃f₁ⁿ with K' = I; norms "
             "|ŵ|² = ∫_λ^∞ R_in(t)/t² dt − R_in(λ)/λ (exact identity); the time-series factor of Eq. (44) "
             "c = 1 − kᵀK⁻¹k + κ̃²kᵀK⁻¹(K+κ̃)⁻²k (matched noise: ts error = c·R_out). Settings: the recipe's "
             "(Σ = diag(i^-1.5), AR(1), irregular exponential K) and the paper's figure (N = 100, "
             f"T = int(N/q), q ∈ logspace(−1, 1, 15){' (--quick: every 3rd from T = 372)' if quick else ''}, K = e^(−|t−s|/ξ), "
             f"α = {PAPER_ALPHA}, r = {PAPER_R}, σ_ε = {PAPER_SIGMA}). Worst rel. diff **{worst:.1e}** "
             f"(pass ≤ {PAPER_TOL:g}).\n\n" + "\n".join(lines))
    fig = [(st.split(", ", 1)[1], nm, N_, e_, r_) for st, nm, D_, N_, l_, e_, r_, x_ in rows
           if st.startswith("paper's figure")]
    return dict(worst_rel=worst, passed=ok, n_rows=len(rows), table=table, figure_rows=fig)


def paper_figure(out, check, log=print):
    """The paper's main figure setting (R_out, R_in, naive GCV, CorrGCV vs T,
    matched noise): the engine's curves, the paper's formula as markers."""
    plt = pyplot(log)
    if plt is None or not check.get("figure_rows"):
        return
    regs = list(dict.fromkeys(r[0] for r in check["figure_rows"]))
    fig, axes = plt.subplots(1, len(regs), figsize=(5.5 * len(regs), 4.2), squeeze=False)
    for ax, reg in zip(axes[0], regs):
        for qn, lab in (("K-noise risk", "R_out"), ("K-noise train", "R_in"), ("K-noise gcv", "naive GCV"),
                        ("K-noise corrgcv", "CorrGCV"), ("risk", "R_out, white noise")):
            pts = sorted((T, e, r) for rg, nm, T, e, r in check["figure_rows"] if rg == reg and nm == qn)
            if not pts:
                continue
            T, e, r = map(np.array, zip(*pts))
            line, = ax.plot(T, e, "-", label=f"{lab} (engine)")
            ax.plot(T, r, "o", mfc="none", color=line.get_color(), ms=5, label=f"{lab} (paper's formula)")
        ax.set(xscale="log", yscale="log", xlabel="T", ylabel="error",
               title=f"paper's figure setting: N={PAPER_N}, α={PAPER_ALPHA}, r={PAPER_R}, σ_ε={PAPER_SIGMA}\n{reg}")
        readable_log_axes(ax)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "paper_figure.png", dpi=110)


def paper_ts_white(dense_rows, log=print):
    """The authors' code's next-point error with WHITE label noise,
    ``c·R_g + σ²``, against the same dense NumPy Monte Carlo that checks the
    engine (rows of :func:`dense_ts`): Monte Carlo decides."""
    import _paper_ridge as pr
    lines = ["| K | d | n/d | engine | authors' c·R_g + σ² | dense MC ± sem | (engine − MC)/sem | (authors' − MC)/sem |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    zs = []
    for r in dense_rows:
        if not r.quantity.startswith("ts risk ["):
            continue
        kname = r.quantity[len("ts risk ["):-1]
        N = int(r.ratio * r.d)
        Ke = extended(N)[kname]
        s, w = problem(r.d)
        p = pr.timeseries_risk(s, w, Ke[:N, :N], Ke[:N, N], LAM, SIGMA2, "white")
        zs.append((p - r.mc) / r.sem)
        lines.append(f"| {kname} | {r.d} | {r.ratio:g} | {r.theory:.6g} | {p:.6g} | {r.mc:.6g} ± {r.sem:.2g} | "
                     f"{(r.theory - r.mc) / r.sem:+.1f} | {(p - r.mc) / r.sem:+.1f} |")
    if zs:
        log(f"  white-noise next-point error, authors' formula vs dense MC: |z| up to {max(abs(z) for z in zs):.0f}")
    return dict(passed=True, table=(
        "With white label noise the authors' code (`solve_theory`, `uncorrelated_noise` branch) multiplies the "
        "long-time R_g by the matched-noise factor c and adds σ². The exact conditional error is "
        "(aᵀX(ŵ−w))² + s·(ŵ−w)ᵀΣ(ŵ−w) + σ² (a = K⁻¹k, s = 1 − kᵀa), which the engine derives; the dense "
        "NumPy Monte Carlo (exact average over x̃ | X and the noise) sides with the engine. With matched "
        "noise (K' = K) the authors' c·R_out and the engine agree to ~1e-14 (section above).\n\n"
        + "\n".join(lines)))


def s_transform_check(quick=False, log=print):
    """The paper's closed-form S-transform of the exponential correlation
    (T → ∞) vs the finite-T spectrum of the recipe's AR(1) K (ξ = −1/ln ρ),
    and the engine-free R_out with either: O(1/T) agreement."""
    import _paper_ridge as pr
    xi = -1.0 / np.log(RHO)
    lines = ["| T | df | S_K(df), finite T | S(df), closed form | rel. diff | T·rel. diff |", "|---:|---:|---:|---:|---:|---:|"]
    rels = {}
    for T in ((100, 400) if quick else (100, 400, 1600)):
        eK = np.linalg.eigvalsh(RHO ** np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]))
        for df in (0.1, 0.5, 0.9):
            a, b = pr.S_finite(eK, df), float(pr.S_exp_corr(xi, df))
            rels.setdefault(df, []).append(abs(a - b) / b)
            lines.append(f"| {T} | {df:g} | {a:.8g} | {b:.8g} | {abs(a - b) / b:.1e} | {T * abs(a - b) / b:.3f} |")
    lines += ["", "| d | n = T | R_out, finite-T K (matched noise) | R_out, closed-form S | rel. diff |",
              "|---:|---:|---:|---:|---:|"]
    for D in ((100, 400) if quick else (100, 400, 1600)):
        s, w = problem(D)
        N = D // 2
        eK = np.linalg.eigvalsh(RHO ** np.abs(np.arange(N)[:, None] - np.arange(N)[None, :]))
        a, b = pr.corr_theory(s, w, eK, LAM, SIGMA2, "K")["risk"], pr.corr_risk_Sclosed(s, w, N, xi, LAM, SIGMA2)
        lines.append(f"| {D} | {N} | {a:.8g} | {b:.8g} | {abs(a - b) / a:.1e} |")
    ok = all(all(x > y for x, y in zip(v, v[1:])) for v in rels.values())
    log(f"  S-transform closed form vs finite-T AR(1) spectrum: O(1/T) {'yes' if ok else 'NO'}")
    return dict(passed=ok, table=(f"AR(1) ρ = {RHO} is the paper's exponential correlation with ξ = −1/ln ρ = {xi:.4f}; "
                                  "S(df) = (1 − df)/(√(1 + (b²−1)df²) − b·df), b = coth(1/ξ) (authors' `S_exp_corr`) vs "
                                  "S_K(df) = (1 − df)/(df·κ̃), mean(k/(k+κ̃)) = df from K's spectrum (`get_S`). "
                                  "Pass: the difference shrinks with T (a boundary effect, O(1/T)).\n\n" + "\n".join(lines)))


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
    ts_trials = {100: 60 if args.quick else 400, 400: 240}
    dense_trials = {100: 60 if args.quick else 400, 400: 100}
    rows, dense, optimism = [], [], []
    for D in sizes:
        s, w = problem(D)
        for q in (0.5, 2.0):
            N = int(q * D)
            for kname, Ke in extended(N).items():
                t0 = time.perf_counter()
                Km, kv = Ke[:N, :N], Ke[:N, N]
                ts = () if kname == "iid" else ("ts risk", "ts corrgcv")
                for name in [t + q for t in ("", "K-noise ") for q in QUANTITIES + ts]:
                    if name not in fns:   # refused: listed under "Rows not computed"
                        continue
                    b = dict(Sigma=s, w=w, n=N, K=Km, lam=LAM, sigma2=SIGMA2)
                    nt = trials[D]
                    if "ts " in name:   # (aᵀ…)² with the label noise drawn: skewed draws, more of them
                        b["k"] = kv
                        nt = ts_trials[D]
                    rows.append(compare(f"{name} [{kname}]", exprs[name], fns[name], b, d=D, ratio=q,
                                        sigma2=SIGMA2, trials=nt, seed=D + 11, c=C, k=K))
                    if name in ("ts risk", "K-noise ts risk"):
                        th_risk = float(fns[name.replace("ts risk", "risk")](**{x: v for x, v in b.items()
                                                                                 if x != "k"}))
                        optimism.append((name.replace("ts risk", "").strip() or "white", kname, D, q, th_risk,
                                         rows[-1].theory, rows[-1].mc, rows[-1].sem,
                                         float(fns[name.replace("ts risk", "ts corrgcv")](**b))
                                         if name.replace("ts risk", "ts corrgcv") in fns else None))
                for tag, noise in (("", "white"), ("K-noise ", "K")):
                    name = tag + "ts risk"
                    if kname == "iid" or name not in fns:
                        continue
                    th = float(fns[name](Sigma=s, w=w, n=N, K=Km, k=kv, lam=LAM, sigma2=SIGMA2))
                    mean, sem = dense_ts(Ke, s, w, noise, dense_trials[D], seed=D + 23)
                    dense.append(Row(f"{name} [{kname}]", D, q, SIGMA2, th, float(mean), float(sem), dense_trials[D],
                                     c=C_DENSE, k=K))
                log(f"  d={D} n/d={q} {kname}: {time.perf_counter() - t0:.1f} s")
    extra = {"engine vs the paper's formula (independent NumPy)": paper_check(fns, args.quick, log)}
    ol = ["| noise | K | d | n/d | risk (theory) | next-point error (theory) | risk − next-point (theory) | "
          "next-point error, MC ± sem | (aᵀr)² + s·CorrGCV (theory) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    ol += [f"| {nz} | {kn} | {D_} | {q_:g} | {r_:.4g} | {t_:.4g} | {r_ - t_:+.4g} | {m_:.4g} ± {s_:.2g} | "
           + ("–" if e_ is None else f"{e_:.4g}") + " |"
           for nz, kn, D_, q_, r_, t_, m_, s_, e_ in optimism]
    extra["time-series test point: optimism of the next-point error about the long-time risk"] = dict(
        passed=True, table="Theory values of the derived `risk` and `ts risk` (both checked against Monte Carlo in "
                           "the rows above; their difference is derived too, as `risk - ts risk` in formulas.md). "
                           "The test point is the next sample of the process (k = the last column of K's "
                           "extension), label noise white or from the same process (K-noise). Last column: the "
                           "estimate of the next-point error from the training set, (aᵀr)² (observed residual r = "
                           "y − Xŵ) + s·CorrGCV, derived: it equals the next-point error when the noise shares K "
                           "(`K-noise ts corrgcv - ts risk` ≃ 0 in formulas.md), since E[error | training set] = "
                           "(aᵀr)² + s·(risk) exactly and CorrGCV ≃ risk:\n\n" + "\n".join(ol))
    extra["time-series test point: independent dense NumPy, test error averaged exactly over x̃ | X and the noise"] = dict(
        passed=all(r.passed for r in dense), n_rows=len(dense), n_failed=sum(not r.passed for r in dense),
        rows=[dict(quantity=r.quantity, d=r.d, ratio=r.ratio, theory=r.theory, mc=r.mc, sem=r.sem, tol=r.tol,
                   passed=r.passed) for r in dense],
        table=("Theory = the engine's equivalent of the ts-risk expression; MC = plain NumPy (not sr.monte_carlo): "
               "X drawn with the full K, each draw's test error averaged analytically over the noise and over "
               f"x̃ ~ N(Xᵀa, sΣ), a = K⁻¹k, s = 1 − kᵀK⁻¹k; tol = {K:g}·sem + {C_DENSE:g}·|th|/d.\n\n"
               + markdown_table(dense)))
    extra["time-series test point, white noise: the authors' formula vs dense Monte Carlo"] = paper_ts_white(dense, log)
    extra["the paper's S-transform of the exponential correlation vs the finite-T K"] = s_transform_check(args.quick, log)
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
    paper_figure(out, extra["engine vs the paper's formula (independent NumPy)"], log)
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
        for kname, Ke in extended(N).items():
            b = dict(Sigma=s, w=w, n=N, K=Ke[:N, :N], lam=lams, sigma2=SIGMA2)
            opt = {"on_failure": "nan"}
            line, = ax.plot(lams, fns["risk"](options=opt, **b), "-", label=f"risk, {kname}")
            ax.plot(lams, fns["gcv"](options=opt, **b), "--", color=line.get_color(), label=f"GCV, {kname}")
            if kname != "iid" and "ts risk" in fns:
                ax.plot(lams, fns["ts risk"](options=opt, k=Ke[:N, N], **b), ":", color=line.get_color(),
                        label=f"next-point (time-series) error, {kname}")
            for name, m in (("risk", "o"), ("gcv", "^")):
                pts = [r for r in rows if r.d == D and r.ratio == q and r.quantity == f"{name} [{kname}]"]
                ax.errorbar([LAM] * len(pts), [r.mc for r in pts], yerr=[r.sem for r in pts], fmt=m,
                            color=line.get_color(), ms=4)
        ax.set(xscale="log", yscale="log", xlabel="λ", ylabel="error",
               title=f"n/d={q:g}, d={D}\nrisk (—), naive GCV (--), next point (:); MC at λ={LAM}")
        readable_log_axes(ax)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "risk_vs_gcv.png", dpi=110)
    log(f"== wrote {out}/: formulas.md, table.md, summary.json, risk_vs_gcv.png")


if __name__ == "__main__":
    main()
