"""The papers' formulas for pooled ridge, coded independently in plain NumPy/SciPy
(no ``symrmt`` import): the reference the recipes ``model_collapse`` and
``bias_amplification`` compare the engine's derived values against.

Setting shared by both papers (Dohmatob, Feng, Subramonian, Kempe, *Strong model
collapse*, arXiv:2410.04840, ICLR 2025; Subramonian, Bell, Sagun, Dohmatob, *An
effective theory of bias amplification*, arXiv:2410.17263, ICLR 2025): group
``k ∈ {1, 2}`` contributes ``n_k`` rows ``x ~ N(0, Σ_k)`` with labels
``y = xᵀw_k + ε``, ``ε ~ N(0, σ_k²)``; ``n = n₁ + n₂``, ``p_k = n_k/n``; one ridge
on the pooled data

    ŵ = argmin_w (1/n)‖Xw − y‖² + λ‖w‖² = (XᵀX/n + λ)⁻¹Xᵀy/n,

and the test error of group ``g`` against its clean teacher (excess over the
noise): ``E_g = E_x~N(0,Σ_g)[(xᵀŵ − xᵀw_g)²] = (ŵ − w_g)ᵀΣ_g(ŵ − w_g)``. In the
model-collapse paper group 1 is the real data, group 2 the synthetic data with
the shifted teacher ``w₂ = w₁ + δ`` (``Δ = E[δδᵀ]``; a fixed ``δ`` is the case
``Δ = δδᵀ`` with the cross term ``w₁ ↔ δ`` removed, i.e. the average over ``±δ``),
and the test error is ``E_1``. In the bias-amplification paper ``E_1, E_2`` are the
per-group test risks, their gap the observed difficulty disparity
``ODD = |E_2 − E_1|`` of the joint model; the expected difficulty disparity
``EDD = |E_2(ŵ_2) − E_1(ŵ_1)|`` uses the separate models ``ŵ_s`` (ridge on group
``s``'s own ``n_s`` rows, same ``λ``); we report ``ADD = ODD − EDD`` (positive:
the joint model amplifies the disparity).

Formulas (first order in the proportional limit; ``Tr`` unnormalised):

1. **Pooled one-point law** (both papers' fixed point): ``K = Σ_k p_k e_k Σ_k + λ``,
   ``e_k = 1/(1 + Tr[Σ_k K⁻¹]/n)``; ``(XᵀX/n + λ)⁻¹ ≃ K⁻¹``. Solved here by damped
   iteration then Newton (``scipy.optimize.root``) on ``log e_k``.
2. **Per-group errors, general Σ₁, Σ₂ (non-commuting allowed)** — the
   "effective noise" form: with the mean predictor ``m = K⁻¹Σ_k p_k e_k Σ_k w_k``,
   the bias ``b_j = (m − w_j)ᵀΣ_j(m − w_j)``, and
   ``M_{jk} = p_k e_k² Tr[Σ_j K⁻¹ Σ_k K⁻¹]/n``, the errors solve the 2×2 linear
   system ``E_j = b_j + Σ_k M_{jk}(σ_k² + E_k)``: each group's training residual
   (its own error plus its noise) acts as label noise on every group's test
   error. One group: ``E = (b + γσ²)/(1 − γ)``, ``γ = df₂(κ)/n``, the textbook
   ridge risk (``κ = λ/e``).
3. **Strong model collapse, Theorem (Σ₁ = Σ₂ = Σ)**: ``E_test ≃ E + ζ`` with
   ``κ − λ = κ df₁(κ)/n``, ``df_m(κ) = Tr[Σ^m(Σ+κ)^{-m}]``, ``u = (df₂/n)/(1 − df₂/n)``,
   ``E = Bias + Var``, ``Bias = κ²w₁ᵀΣ(Σ+κ)⁻²w₁/(1 − df₂/n)``,
   ``Var = σ̄² (df₂/n)/(1 − df₂/n)``, ``σ̄² = p₁σ₁² + p₂σ₂²``, and
   ``ζ = p₂²(1 + p₁u) Tr[ΔΣ³(Σ+κ)⁻²] + p₂u Tr[ΔΣ(p₁Σ + κ)²(Σ+κ)⁻²]``
   (the large-``n`` floor ``p₂² Tr[ΣΔ]`` = ``p₂² c²(Δ)``). Coded separately from
   (2) (scalar κ by bisection, eigenvalues only); (2) reduces to it exactly
   (``E_1 = (1 + p₁u)b₁ + p₂u b₂ + uσ̄²``).
4. **Random projections, conditional on F** (ridge on ``XF``, ``F`` ``d × p`` iid
   ``N(0, 1/p)``, ``ŵ = Fâ``): ``conditional_rp_errors`` draws ``F`` and applies (2) in feature
   space (``S_k = FᵀΣ_kF``, teachers ``θ_k = S_k⁻¹FᵀΣ_kw_k``, noise
   ``σ_k² + r_k``, ``r_k = w_kᵀΣ_kw_k − θ_kᵀS_kθ_k``, plus ``r_g``): exact first
   order in ``X`` given ``F``; its average over a few ``F`` draws is a reference for
   the F-averaged theory up to the F-fluctuation (reported with its sem).
5. **Random projections, averaged over F** (``rp_errors``): (2) given F rewritten
   in d-space (the projected teacher's residual absorbed), then
   ``F(FᵀMF + λ)⁻¹Fᵀ ≃ (M + κ)⁻¹`` and its source derivative; exact first order.

Caveat (stated in the reports): the papers' full texts could not be opened from
the machine this was written on (the search tool returns their abstracts only);
the formulas are the papers' theorem statements as recalled, each re-derived and
checked here (MC and the engine), with conventions made explicit above.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, root


def _mat(a):
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        return np.diag(a)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"covariance must be a 1-D spectrum or a square matrix, got shape {a.shape}")
    return a


def pooled_fixed_point(Sigmas, ns, lam):
    """``(e, Kinv)``: ``e_k = 1/(1 + Tr[Σ_k K⁻¹]/n)``, ``K = Σ_k (n_k/n)e_kΣ_k + λ``."""
    diag = all(np.ndim(s) == 1 for s in Sigmas)      # one common eigenbasis: vectors of eigenvalues
    S = [np.asarray(s, dtype=float) if diag else _mat(s) for s in Sigmas]
    ns = np.asarray(ns, dtype=float)
    if np.any(ns <= 0):
        raise ValueError(f"group sizes must be positive, got {ns}")
    if not lam > 0:
        raise ValueError(f"lam must be positive, got {lam}")
    n = ns.sum()
    p = ns / n
    d = S[0].shape[0]

    def Kinv(e):
        K = sum(pk * ek * Sk for pk, ek, Sk in zip(p, e, S))
        return 1.0 / (K + lam) if diag else np.linalg.inv(K + lam * np.eye(d))

    def F(e):
        Ki = Kinv(e)
        return np.array([1.0 / (1.0 + (np.sum(Sk * Ki) if diag else np.sum(Sk * Ki.T)) / n) for Sk in S])

    e = np.ones(len(S))
    for _ in range(40):
        e_new = F(e)
        if np.max(np.abs(e_new - e)) < 1e-13:
            e = e_new
            break
        e = 0.5 * e + 0.5 * e_new
    sol = root(lambda le: np.log(F(np.exp(le))) - le, np.log(e), method="hybr", options=dict(xtol=1e-15))
    e = np.exp(sol.x)
    res = np.max(np.abs(F(e) - e) / e)
    if res > 1e-11:
        raise RuntimeError(f"pooled fixed point not solved (relative residual {res:.1e})")
    Ki = Kinv(e)
    return e, (np.diag(Ki) if diag else Ki)


def pooled_errors(Sigma1, Sigma2, w1, w2, s1, s2, n1, n2, lam):
    """``(E_1, E_2)``: per-group excess test errors of pooled ridge, formula (2)
    of the module docstring (general, non-commuting ``Σ₁, Σ₂``)."""
    S = [_mat(Sigma1), _mat(Sigma2)]
    w = [np.asarray(w1, float), np.asarray(w2, float)]
    s = np.array([float(s1), float(s2)])
    ns = np.array([float(n1), float(n2)])
    n = ns.sum()
    p = ns / n
    e, Ki = pooled_fixed_point([Sigma1, Sigma2], ns, lam)
    m = Ki @ sum(p[k] * e[k] * S[k] @ w[k] for k in range(2))
    b = np.array([(m - w[j]) @ S[j] @ (m - w[j]) for j in range(2)])
    A = [Ki @ S[k] @ Ki for k in range(2)]
    M = np.array([[p[k] * e[k] ** 2 * np.sum(S[j] * A[k].T) / n for k in range(2)] for j in range(2)])
    E = np.linalg.solve(np.eye(2) - M, b + M @ s)
    return float(E[0]), float(E[1])


def single_group_error(Sigma, w, s, n, lam):
    """Ridge on one group: ``(b + γσ²)/(1 − γ)`` (formula (2) with one group),
    ``κ(1 − df₁(κ)/n) = λ``, ``b = κ²wᵀΣ(Σ+κ)⁻²w``, ``γ = df₂(κ)/n``."""
    if np.ndim(Sigma) == 1:
        ev, U = np.clip(np.asarray(Sigma, float), 0.0, None), np.eye(np.size(Sigma))
    else:
        ev, U = np.linalg.eigh(_mat(Sigma))
        ev = np.clip(ev, 0.0, None)
    wc = U.T @ np.asarray(w, float)
    kap = _kappa(ev, float(n), float(lam))
    g = np.sum(ev ** 2 / (ev + kap) ** 2) / n
    bias = kap ** 2 * np.sum(wc ** 2 * ev / (ev + kap) ** 2)
    return float((bias + g * float(s)) / (1.0 - g))


def _kappa(ev, n, lam):
    """Root of ``κ − λ = κ Σ_i s_i/(s_i + κ)/n`` above ``λ`` (bisection/brentq)."""
    f = lambda k: k - lam - k * np.sum(ev / (ev + k)) / n  # noqa: E731
    hi = lam + np.sum(ev) / n + lam
    while f(hi) < 0:
        hi *= 2
    return brentq(f, lam, hi, xtol=1e-300, rtol=1e-15, maxiter=500)


def smc_theorem(Sigma, w1, delta, s1, s2, n1, n2, lam, Delta=None):
    """Strong model collapse, Σ₁ = Σ₂ = Σ (formula (3)): ``E + ζ`` and its parts.

    ``Sigma`` a 1-D spectrum (``w1``, ``delta`` in its eigenbasis) or a matrix;
    ``Delta`` (matrix, optional) overrides ``δδᵀ``. Returns a dict with
    ``E_test, Bias, Var, zeta, kappa, u``."""
    if np.ndim(Sigma) == 1:                 # eigenvalues: the basis is the identity
        ev, U = np.clip(np.asarray(Sigma, float), 0.0, None), np.eye(np.size(Sigma))
    else:
        ev, U = np.linalg.eigh(_mat(Sigma))
        ev = np.clip(ev, 0.0, None)
    n1, n2 = float(n1), float(n2)
    n = n1 + n2
    p1, p2 = n1 / n, n2 / n
    kap = _kappa(ev, n, float(lam))
    df2 = np.sum(ev ** 2 / (ev + kap) ** 2)
    g = df2 / n
    u = g / (1.0 - g)
    wc = U.T @ np.asarray(w1, float)
    if Delta is None:
        dc = U.T @ np.asarray(delta, float)
        Dd = dc ** 2                        # diag of Uᵀ Δ U for Δ = δδᵀ (only the diagonal enters)
    else:
        Dd = np.diag(U.T @ np.asarray(Delta, float) @ U)
    bias = kap ** 2 * np.sum(wc ** 2 * ev / (ev + kap) ** 2) / (1.0 - g)
    var = (p1 * float(s1) + p2 * float(s2)) * u
    zeta = (p2 ** 2 * (1.0 + p1 * u) * np.sum(Dd * ev ** 3 / (ev + kap) ** 2)
            + p2 * u * np.sum(Dd * ev * (p1 * ev + kap) ** 2 / (ev + kap) ** 2))
    return dict(E_test=float(bias + var + zeta), Bias=float(bias), Var=float(var), zeta=float(zeta),
                kappa=float(kap), u=float(u))


def disparities(E_joint, E_sep):
    """``(ODD, EDD, ADD)`` from the joint model's ``(E_1, E_2)`` and the separate
    models' ``(E_1(ŵ_1), E_2(ŵ_2))``; ``ADD = ODD − EDD``."""
    odd = abs(E_joint[1] - E_joint[0])
    edd = abs(E_sep[1] - E_sep[0])
    return odd, edd, odd - edd


def rp_errors(Sigma1, Sigma2, w1, w2, s1, s2, n1, n2, lam, p):
    """``(E_1, E_2)`` with random projections (ridge on ``XF``, ``F`` ``d × p`` iid
    ``N(0, 1/p)``, ``ŵ = Fâ``), first order in X and F — formula (5):

    Given F, formula (2) in feature space, rewritten in d-space: the total error
    ``Ẽ_j = E_j^F + r_j`` solves ``Ẽ_j = B_j + Σ_k M_jk(σ_k² + Ẽ_k)`` with
    ``B_j = (Qv − w_j)ᵀΣ_j(Qv − w_j)`` (Pythagoras in the ``Σ_j`` inner product: the
    residual ``r_j`` of the projected teacher is absorbed, no ridgeless root needed),
    ``Q = F(FᵀMF + λ)⁻¹Fᵀ``, ``M = Σ_k p_k e_k Σ_k``, ``v = Σ_k p_k e_k Σ_k w_k``,
    ``M_jk = p_k e_k² Tr[Σ_j QΣ_k Q]/n``, ``e_k = 1/(1 + Tr[Σ_k Q]/n)``. Average over F:
    ``Q ≃ R = (M + κ)⁻¹``, ``κ(1 − Tr[MR]/p) = λ`` (``M^{1/2}FFᵀM^{1/2}`` is a sample
    covariance of p draws from ``N(0, M)``), and by the source derivative
    ``∂_t Q(M + tA) = −QAQ``: ``QAQ ≃ R(A + κ'_A)R``,
    ``κ'_A = (κ²/p) Tr[AR²]/(1 − Tr[M²R²]/p)``. Unknowns ``(e₁, e₂, κ)`` solved
    jointly (κ by brentq inside, ``e`` by damped iteration then ``root``). ``p → ∞``
    gives formula (2)."""
    diag = np.ndim(Sigma1) == 1 and np.ndim(Sigma2) == 1
    S = [np.asarray(Sigma1, float), np.asarray(Sigma2, float)] if diag else [_mat(Sigma1), _mat(Sigma2)]
    w = [np.asarray(w1, float), np.asarray(w2, float)]
    sig = np.array([float(s1), float(s2)])
    ns = np.array([float(n1), float(n2)])
    n = ns.sum()
    pr = ns / n
    p = float(p)
    lam = float(lam)
    if not (lam > 0 and p > 0 and np.all(ns > 0)):
        raise ValueError(f"rp_errors: lam, p, n1, n2 must be positive (got {lam}, {p}, {ns})")
    def parts(e):
        M = pr[0] * e[0] * S[0] + pr[1] * e[1] * S[1]
        if diag:
            ev, U = M, None
        else:
            ev, U = np.linalg.eigh(M)
        ev = np.clip(ev, 0.0, None)
        g = lambda k: k * (1.0 - np.sum(ev / (ev + k)) / p) - lam  # noqa: E731
        hi = 2 * lam + np.sum(ev) / p
        while g(hi) < 0:
            hi *= 2
        kap = brentq(g, lam, hi, xtol=1e-300, rtol=1e-15, maxiter=500)
        R = 1.0 / (ev + kap) if diag else (U / (ev + kap)) @ U.T
        return M, kap, R, ev

    def F(e):
        _, _, R, _ = parts(e)
        tr = [np.sum(Sk * R) if diag else np.sum(Sk * R.T) for Sk in S]
        return np.array([1.0 / (1.0 + t / n) for t in tr])

    e = np.ones(2)
    for _ in range(40):
        e = 0.5 * e + 0.5 * F(e)
    sol = root(lambda le: np.log(F(np.exp(le))) - le, np.log(e), method="hybr", options=dict(xtol=1e-15))
    e = np.exp(sol.x)
    res = np.max(np.abs(F(e) - e) / e)
    if res > 1e-11:
        raise RuntimeError(f"rp_errors: (e, κ) not solved (relative residual {res:.1e})")
    M, kap, R, ev = parts(e)
    if diag:
        M, R, S = np.diag(M), np.diag(R), [np.diag(Sk) for Sk in S]
    R2 = R @ R
    gam = kap ** 2 / p / (1.0 - np.sum((M @ R) * (M @ R).T) / p)
    kp = [gam * np.sum(Sk * R2) for Sk in S]                       # κ'_{Σ_k} (R² symmetric)
    v = pr[0] * e[0] * S[0] @ w[0] + pr[1] * e[1] * S[1] @ w[1]
    Rv = R @ v
    B = np.array([Rv @ S[j] @ Rv + kp[j] * (Rv @ Rv) - 2 * Rv @ S[j] @ w[j] + w[j] @ S[j] @ w[j] for j in range(2)])
    SR = [Sk @ R for Sk in S]
    Mm = np.array([[pr[k] * e[k] ** 2 * (np.sum(SR[j] * SR[k].T) + kp[k] * np.sum(S[j] * R2)) / n for k in range(2)]
                   for j in range(2)])
    E = np.linalg.solve(np.eye(2) - Mm, B + Mm @ sig)
    return float(E[0]), float(E[1])


def lam_from_paper_scale(lam_paper, d, p):
    """The ridge on ``F ~ N(0, 1/p)`` features equivalent to ``lam_paper`` on
    ``S ~ N(0, 1/d)`` features (``S = F·√(p/d)``: the same predictor ``ŵ`` when
    ``λ = λ_paper·d/p``). The engine's ``sr.RandomFeatures`` and the recipes use
    ``N(0, 1/p)``; a reference written with ``N(0, 1/d)`` maps through this."""
    return float(lam_paper) * float(d) / float(p)


def conditional_rp_errors(Sigma1, Sigma2, w1, w2, s1, s2, n1, n2, lam, p, draws, seed, f_scale="p"):
    """Random projections (formula (4)): for each of ``draws`` matrices ``F``
    (``d × p``, iid ``N(0, 1/p)``, or ``N(0, 1/d)`` with ``f_scale="d"``), the
    first-order errors given ``F`` — formula (2) in feature space with
    ``S_k = FᵀΣ_kF``, ``θ_k``, noise ``σ_k² + r_k`` — plus ``r_g``. Returns
    ``{g: (mean, sem)}`` over the draws."""
    if f_scale not in ("p", "d"):
        raise ValueError(f"f_scale must be 'p' (N(0, 1/p)) or 'd' (N(0, 1/d)), got {f_scale!r}")
    S = [_mat(Sigma1), _mat(Sigma2)]
    w = [np.asarray(w1, float), np.asarray(w2, float)]
    d = S[0].shape[0]
    rng = np.random.default_rng(seed)
    vals = np.empty((draws, 2))
    for t in range(draws):
        F = rng.standard_normal((d, int(p))) / np.sqrt(p if f_scale == "p" else d)
        Sf = [F.T @ Sk @ F for Sk in S]
        th, r = [], []
        for k in range(2):
            c = F.T @ S[k] @ w[k]
            th.append(np.linalg.lstsq(Sf[k], c, rcond=None)[0])
            r.append(float(w[k] @ S[k] @ w[k] - th[k] @ Sf[k] @ th[k]))
        E = pooled_errors(Sf[0], Sf[1], th[0], th[1], float(s1) + r[0], float(s2) + r[1], n1, n2, lam)
        vals[t] = (E[0] + r[0], E[1] + r[1])
    m = vals.mean(0)
    se = vals.std(0, ddof=1) / np.sqrt(draws) if draws > 1 else np.full(2, np.nan)
    return {1: (float(m[0]), float(se[0])), 2: (float(m[1]), float(se[1]))}


def dense_pooled_mc(Sigma1, Sigma2, w1, w2, s1, s2, n1, n2, lam, trials, seed, p=None):
    """Plain NumPy Monte Carlo of ``(E_1, E_2)`` (full matrices; Cholesky sampling;
    with ``p``: ridge on ``XF``, a fresh ``F`` (``d × p``, iid ``N(0, 1/p)``) per draw,
    ``ŵ = Fâ``): ``{g: (mean, sem)}``. Independent of ``derivations/_pooled.py``."""
    S = [_mat(Sigma1), _mat(Sigma2)]
    C = [np.linalg.cholesky(Sk + 1e-300 * np.eye(len(Sk))) for Sk in S]
    w = [np.asarray(w1, float), np.asarray(w2, float)]
    ns = [int(n1), int(n2)]
    sd = [np.sqrt(float(s1)), np.sqrt(float(s2))]
    n = sum(ns)
    d = S[0].shape[0]
    rng = np.random.default_rng(seed)
    vals = np.empty((trials, 2))
    for t in range(trials):
        Xs = [rng.standard_normal((ns[k], d)) @ C[k].T for k in range(2)]
        y = np.concatenate([Xs[k] @ w[k] + sd[k] * rng.standard_normal(ns[k]) for k in range(2)])
        X = np.vstack(Xs)
        if p is None:
            wh = np.linalg.solve(X.T @ X / n + lam * np.eye(d), X.T @ y / n)
        else:
            F = rng.standard_normal((d, int(p))) / np.sqrt(p)
            Z = X @ F
            wh = F @ np.linalg.solve(Z.T @ Z / n + lam * np.eye(int(p)), Z.T @ y / n)
        vals[t] = [(wh - w[g]) @ S[g] @ (wh - w[g]) for g in range(2)]
    return {g + 1: (float(vals[:, g].mean()), float(vals[:, g].std(ddof=1) / np.sqrt(trials))) for g in range(2)}


# ------------------------------------------------------------------ report helpers (formatting only)
PAPER_TOL = 1e-6       # relative agreement required of the engine against the papers' formulas


def comparison_section(title, intro, rows, tol=PAPER_TOL, log=None):
    """Markdown lines, worst relative difference and pass flag for rows
    ``(setting, quantity, engine, paper)``; a row passes when
    ``|engine − paper| ≤ tol·|paper|``. ``log``: a callable given the
    one-line summary."""
    lines = [f"## {title}", "", intro, "",
             f"Tolerance: relative difference ≤ {tol:g} per row.", "",
             "| setting | quantity | engine | paper's formula (NumPy) | rel. diff | ok |",
             "|---|---|---:|---:|---:|:---:|"]
    worst = 0.0
    for setting, q, eng, pap in rows:
        rel = abs(eng - pap) / max(abs(pap), 1e-300)
        worst = max(worst, rel)
        lines.append(f"| {setting} | {q} | {eng:.12g} | {pap:.12g} | {rel:.1e} | {'✓' if rel <= tol else '**✗**'} |")
    passed = bool(worst <= tol)
    lines += ["", f"Worst rel. diff **{worst:.1e}** ({'pass' if passed else '**FAIL**'}, {len(rows)} rows)."]
    if log is not None:
        log(f"  {title}: {len(rows)} rows, worst rel. diff {worst:.1e} ({'ok' if passed else 'FAIL'})")
    return lines, worst, passed


def random_noncommuting(d, seed):
    """A random non-commuting two-group problem (full matrices): ``Σ₁ = AAᵀ/d``
    (Wishart-like, well conditioned), ``Σ₂ = Q diag(linspace) Qᵀ`` (random
    rotation), teachers of norm ~1 differing by a random shift, noise levels,
    sizes and ridge drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((d, 2 * d))
    S1 = A @ A.T / (2 * d) + 0.05 * np.eye(d)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    S2 = Q @ np.diag(np.geomspace(0.05, 2.0, d)) @ Q.T
    w1 = rng.standard_normal(d) / np.sqrt(d)
    w2 = w1 + rng.uniform(0.2, 1.0) * rng.standard_normal(d) / np.sqrt(d)
    n1 = int(rng.integers(d // 4, 3 * d))
    n2 = int(rng.integers(d // 4, 2 * d))
    lam = float(10 ** rng.uniform(-3, 0))
    return dict(Sigma1=S1, Sigma2=S2, w1=w1, w2=w2, s1=float(rng.uniform(0, 0.5)), s2=float(rng.uniform(0, 0.5)),
                n1=n1, n2=n2, lam=lam)
