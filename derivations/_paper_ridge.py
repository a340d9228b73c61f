"""The papers' own formulas for the ridge recipes, coded independently in
plain NumPy/SciPy (no ``symrmt`` import anywhere in this file; own fixed-point
solvers). Used by ``corr_gcv.py`` and ``norm_capacity.py`` ("engine vs the
paper's formula") and by ``tests/test_raudit_*.py``.

Sources and what could be retrieved
-----------------------------------
* Atanasov, Zavatone-Veth, Pehlevan, "Risk and cross validation in ridge
  regression with correlated samples", arXiv:2408.04607 (ICML 2025). The
  paper's text was not retrievable from the stored copies beyond its abstract;
  the formulas below are transcribed from the authors' own code, repository
  ``Pehlevan-Group/S_transform`` (notebooks ``LR_correlated_samples.ipynb`` and
  ``LR_exp_corr_sweep.ipynb``: ``solve_theory``, ``S_exp_corr``), which
  reproduces the paper's figures, cross-checked with a published summary of
  the paper (Theorem 3.2: ``R_g ≃ κ²/(1−γ)·w̄ᵀΣ(Σ+κ)⁻²w̄ + γ/(1−γ)·σ²``,
  ``γ = (df₂/df₁)(d̃f₂/d̃f₁)``, duality ``κκ̃/λ = 1/d̃f₁``, CorrGCV
  ``S(df₁)·d̃f₁/(d̃f₁ − d̃f₂)·R̂_in``). Model: ``X = K^{1/2} Z Σ^{1/2}``
  (``T × N``), ``y = Xw̄ + ε``, ``E[εεᵀ] = σ²K'`` with ``K' = K`` ("matched",
  CorrGCV's setting) or ``K' = I`` ("white"), ``ŵ = (XᵀX/T + λ)⁻¹Xᵀy/T``;
  ``R_out = E(ỹ − x̃ᵀŵ)²`` on a fresh test point (includes σ²), ``R_in =
  |y − Xŵ|²/T``.
* Wang, Chen, Rosasco, Liu, "Re-examining double descent and scaling laws
  under norm-based capacity via deterministic equivalence" (arXiv:2502.01585,
  v3 retitled "The φ Curve: ..."). Text not retrievable beyond the abstract; the
  ridge norm equivalent is the one quoted from it in a published review
  (Lemma 3.1 + its deterministic equivalent, ``λ*`` the renormalised ridge):
  ``N̄ = ⟨β, Σ²(Σ+λ*)⁻²β⟩ + Tr[Σ(Σ+λ*)⁻²]/n · λ*²⟨β, Σ(Σ+λ*)⁻²β⟩/(1 − Tr[Σ²(Σ+λ*)⁻²]/n)
  + σ² Tr[Σ(Σ+λ*)⁻²]/(n − Tr[Σ²(Σ+λ*)⁻²])`` (with the paper's ridge on
  ``XᵀX/n``). Random-feature ridge: the risk in the (ν₁, ν₂) form of
  Defilippis–Loureiro–Misiakiewicz (arXiv:2405.15699) that the paper builds
  on; the RF norm through the exact ridge identity below (the paper's RF
  norm theorem could not be retrieved to transcribe).

Exact identity used for norms (any ridge, any design): with
``L(λ) = min_a |y − Za|²/n + λ|a|² = λ·u(λ)``, ``u(λ) = yᵀ(ZZᵀ/n + λ)⁻¹y/n``,
the envelope theorem gives ``|â|² = L'(λ) = u + λu'`` and
``u'(λ) = −R_in(λ)/λ²``, ``u(∞) = 0``, hence

    |â(λ)|² = ∫_λ^∞ R_in(t)/t² dt − R_in(λ)/λ,

so a norm follows from the training-error formula alone (quadrature in
``log t``).
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import quad
from scipy.optimize import brentq


# --------------------------------------------------------------------------- helpers
def _root_log(f, lo=1e-14, hi=1e14):
    """Root of ``f(x)`` (a change of sign on ``[lo, hi]``) by Brent's method on
    ``log x``, to machine precision."""
    g = lambda s: f(np.exp(s))
    a, b = np.log(lo), np.log(hi)
    fa, fb = g(a), g(b)
    if not fa * fb < 0:
        raise ValueError(f"no sign change on [{lo:g}, {hi:g}]: f = {fa:g}, {fb:g}")
    return float(np.exp(brentq(g, a, b, xtol=1e-15, rtol=1e-15, maxiter=500)))


# ===================================================================== Atanasov et al.
def corr_solve(sS, eK, lam):
    """``(κ, κ̃)`` of ridge with correlated samples: the pair with
    ``Tr[K(K+κ̃)⁻¹] = Tr[Σ(Σ+κ)⁻¹]`` (= the empirical df) and the duality
    ``κκ̃/λ = 1/d̃f₁``, ``d̃f₁ = Tr[K(K+κ̃)⁻¹]/T`` (authors' ``solve_theory``:
    ``k₂ = λ/(k₁ q df₁^Σ)``, ``k₁ = λ/(k₂ df₁^K)``). ``sS``: eigenvalues of Σ
    (N); ``eK``: eigenvalues of K (T)."""
    sS, eK = np.asarray(sS, float), np.asarray(eK, float)
    N, T = len(sS), len(eK)

    def f(kt):
        d1k = np.mean(eK / (eK + kt))
        k = lam / (kt * d1k)
        return T * d1k - N * np.mean(sS / (sS + k))

    scale = max(eK.max(), 1e-300)
    kt = _root_log(f, 1e-16 * scale, 1e16 * scale * max(1.0, lam))
    return lam / (kt * np.mean(eK / (eK + kt))), kt


def corr_theory(sS, w, eK, lam, sigma2, noise="K"):
    """The paper's deterministic equivalents (authors' ``solve_theory``):

    ``γ = q(κκ̃/λ)² df₂^Σ d̃f₂``, ``γ_n = q(κκ̃/λ)² df₂^Σ d̃f₂ⁿ``,
    Bias = ``κ² Σ_i w̄_i² s_i/(s_i+κ)²``, Var_X = Bias·γ/(1−γ),
    Var_Xε = ``σ²γ_n/(1−γ)``, ``R_g`` = sum, ``R_out = R_g + σ²``,
    ``R_in = (Bias+Var_X)/GCV + σ²/S₁·[d̃f₂ⁿ/d̃f₁·(df₂^Σ/df₁^Σ − 1)/(1−γ) + d̃f₁ⁿ/d̃f₁]``,
    ``GCV = S₁/(1 − d̃f₂/d̃f₁)`` (the CorrGCV factor, ``S₁ = κ/λ``).
    ``df`` = normalised traces (``mean``). Noise ``"K"`` (K' = K):
    ``d̃f₂ⁿ = d̃f₂``, ``d̃f₁ⁿ = d̃f₁``; ``"white"`` (K' = I):
    ``d̃f₂ⁿ = mean(k/(k+κ̃)²)``, ``d̃f₁ⁿ = mean(1/(k+κ̃))``.

    Expected values of the estimators (their traces concentrate: the empirical
    df̂/T → d̃f₁, the sample-side ridge ν̂ → κ̃): naive GCV
    ``R_in/(1 − d̃f₁)²``; CorrGCV ``GCV·R_in``."""
    sS, w, eK = np.asarray(sS, float), np.asarray(w, float), np.asarray(eK, float)
    if noise not in ("K", "white"):
        raise ValueError(f"noise must be 'K' or 'white', got {noise!r}")
    N, T = len(sS), len(eK)
    q = N / T
    k, kt = corr_solve(sS, eK, lam)
    d1s, d2s = np.mean(sS / (sS + k)), np.mean((sS / (sS + k)) ** 2)
    d1k, d2k = np.mean(eK / (eK + kt)), np.mean((eK / (eK + kt)) ** 2)
    if noise == "K":
        d2kn, d1kn = d2k, d1k
    else:
        d2kn, d1kn = np.mean(eK / (eK + kt) ** 2), np.mean(1.0 / (eK + kt))
    S1 = k / lam
    g = q * (k * kt / lam) ** 2 * d2s * d2k
    gn = q * (k * kt / lam) ** 2 * d2s * d2kn
    bias = k ** 2 * np.sum(w ** 2 * sS / (sS + k) ** 2)
    varx = bias * g / (1 - g)
    varxe = sigma2 * gn / (1 - g)
    signal = bias + varx
    Eg = signal + varxe
    gcv_fac = S1 / (1 - d2k / d1k)
    Etr = signal / gcv_fac + sigma2 / S1 * (d2kn / d1k * (d2s / d1s - 1) / (1 - g) + d1kn / d1k)
    Eout = Eg + sigma2
    return dict(kappa=k, kappa_t=kt, df1_S=d1s, df2_S=d2s, df1_K=d1k, df2_K=d2k, gamma=g,
                bias=bias, var_x=varx, var_xe=varxe, Eg=Eg, risk=Eout, train=Etr,
                gcv=Etr / (1 - d1k) ** 2, corrgcv=gcv_fac * Etr, corrgcv_factor=gcv_fac)


def corr_norm(sS, w, eK, lam, sigma2, noise="K"):
    """``E|ŵ|²`` from the paper's training error through the exact identity
    ``|ŵ|² = ∫_λ^∞ R_in(t)/t² dt − R_in(λ)/λ`` (module docstring)."""
    return norm_from_train(lambda t: corr_theory(sS, w, eK, t, sigma2, noise)["train"], lam)


def timeseries_factor(K, k, kappa_t):
    """Eq. (44)-type optimism factor of the next-point (time-series) test
    error, as in the authors' ``solve_theory`` (``corr_fn`` branch):
    ``c = 1 − kᵀK⁻¹k + κ̃² kᵀK⁻¹(K+κ̃)⁻²k`` (= 1 − ρ + κ̃² αᵀK(K+κ̃)⁻²α,
    ``α = K⁻¹k``, ``ρ = kᵀα``); with matched noise
    ``R_out(test point correlated by k) = c·R_out``. (The notebook
    applies ``L⁻¹k`` with ``L`` the Cholesky factor of K in the last product;
    ``K⁻¹k`` is used here, the Gaussian-conditioning form, whose check against
    dense Monte Carlo is in the recipe's report.)"""
    lam_k, U = np.linalg.eigh(np.asarray(K, float))
    kh = U.T @ np.asarray(k, float)
    return float(1.0 - np.sum(kh ** 2 / lam_k) + kappa_t ** 2 * np.sum(kh ** 2 / (lam_k * (lam_k + kappa_t) ** 2)))


def timeseries_risk(sS, w, K, k, lam, sigma2, noise="K"):
    """Next-point test error per the authors' code: matched noise
    ``c·(R_g + σ²)``; white noise ``c·R_g + σ²`` (their ``uncorrelated_noise``
    branch)."""
    th = corr_theory(sS, w, np.linalg.eigvalsh(K), lam, sigma2, noise)
    c = timeseries_factor(K, k, th["kappa_t"])
    return c * th["risk"] if noise == "K" else c * th["Eg"] + sigma2


def S_exp_corr(xi, df):
    """The paper's S-transform of the exponential correlation
    ``K_ts = e^{−|t−s|/ξ}`` in the T → ∞ limit (authors' ``S_exp_corr``):
    ``S(df) = (1 − df)/(√(1 + (b² − 1)df²) − b·df)``, ``b = coth(1/ξ)``.
    For a finite K, ``S_K(df) = (1 − df)/(df·κ̃(df))`` with
    ``mean(k/(k+κ̃)) = df`` (authors' ``get_S``)."""
    b = 1.0 / np.tanh(1.0 / xi)
    return (1 - df) / (np.sqrt(1 + (b ** 2 - 1) * df ** 2) - b * df)


def S_finite(eK, df):
    """``S_K(df) = (1 − df)/(df·κ̃)``, ``mean(eK/(eK+κ̃)) = df``."""
    eK = np.asarray(eK, float)
    kt = _root_log(lambda x: np.mean(eK / (eK + x)) - df, 1e-16 * eK.max(), 1e16 * eK.max())
    return (1 - df) / (df * kt)


def corr_risk_Sclosed(sS, w, T, xi, lam, sigma2):
    """Matched-noise ``R_out`` with K's S-transform replaced by the paper's
    T → ∞ closed form (exponential K): ``κ = λ·S(d̃f₁)/(1 − d̃f₁)``,
    ``d̃f₁ = (N/T)·df₁^Σ(κ)``, ``κ̃ = λ/(κ d̃f₁)``; ``d̃f₂`` from the
    identity ``d̃f₂ = d̃f₁ + κ̃·d d̃f₁/dκ̃`` with the S-transform's
    ``κ̃(df) = (1 − df)/(df S(df))`` (differentiated numerically)."""
    sS, w = np.asarray(sS, float), np.asarray(w, float)
    N = len(sS)
    q = N / T

    def f(k):
        d = q * np.mean(sS / (sS + k))
        return k * (1 - d) / S_exp_corr(xi, d) - lam

    k = _root_log(f, lam * 1e-6, lam * 1e12 + 1e3)
    d1k = q * np.mean(sS / (sS + k))
    kt_of = lambda d: (1 - d) / (d * S_exp_corr(xi, d))
    kt = kt_of(d1k)
    h = 1e-6 * d1k
    dkt_dd = (kt_of(d1k + h) - kt_of(d1k - h)) / (2 * h)
    d2k = d1k + kt / dkt_dd            # d(df)/dκ̃ = 1/(dκ̃/d df); df₂ = df₁ + κ̃ ∂df₁/∂κ̃
    d1s, d2s = np.mean(sS / (sS + k)), np.mean((sS / (sS + k)) ** 2)
    g = (d2s / d1s) * (d2k / d1k)
    bias = k ** 2 * np.sum(w ** 2 * sS / (sS + k) ** 2)
    return bias / (1 - g) + sigma2 * g / (1 - g) + sigma2


# ===================================================================== Wang–Chen–Rosasco–Liu
def ridge_lam_star(s, n, lam):
    """``λ*``: ``λ* − λ = (λ*/n) Tr[Σ(Σ+λ*)⁻¹]`` (ridge on ``XᵀX/n``)."""
    s = np.asarray(s, float)
    return _root_log(lambda x: x - lam - x / n * np.sum(s / (s + x)), lam * (1 - 1e-12), 2 * lam + 1e3 * (s.sum() + 1))


def ridge_theory(s, w, n, lam, sigma2):
    """Ridge ``ŵ = (XᵀX/n + λ)⁻¹Xᵀy/n``, ``y = Xβ + ε``: the paper's norm
    ``N̄ = B̄_N + V̄_N`` (module docstring) and the risk
    ``R̄ = [λ*²⟨β, Σ(Σ+λ*)⁻²β⟩ + σ² df₂/n]/(1 − df₂/n)`` (excess);
    ``risk`` = ``R̄ + σ²`` (the recipe's convention: the test label noise
    included), ``train = (λ/λ*)²·risk``. ``df₂ = Tr[Σ²(Σ+λ*)⁻²]``."""
    s, w = np.asarray(s, float), np.asarray(w, float)
    ls = ridge_lam_star(s, n, lam)
    df2 = np.sum(s ** 2 / (s + ls) ** 2)
    t1 = np.sum(s / (s + ls) ** 2)
    bN = np.sum(w ** 2 * s ** 2 / (s + ls) ** 2) + t1 / n * ls ** 2 * np.sum(w ** 2 * s / (s + ls) ** 2) / (1 - df2 / n)
    vN = sigma2 * t1 / (n - df2)
    excess = (ls ** 2 * np.sum(w ** 2 * s / (s + ls) ** 2) + sigma2 * df2 / n) / (1 - df2 / n)
    risk = excess + sigma2
    return dict(lam_star=ls, norm=bN + vN, norm_bias=bN, norm_var=vN, excess=excess, risk=risk,
                train=(lam / ls) ** 2 * risk)


def rf_nu(s, n, p, lam):
    """``(ν₁, ν₂)`` of linear random-feature ridge (DLM 2405.15699 form):
    ``n − λ_n/ν₁ = Tr[Σ(Σ+ν₂)⁻¹]``, ``p − pν₁/ν₂ = Tr[Σ(Σ+ν₂)⁻¹]``, with
    ``λ_n = nλ`` (their loss ``Σ_i(y_i − f(x_i))² + λ_n|a|²`` ↔ ours
    ``|y − XFa|²/n + λ|a|²``; features ``Fᵀx``, F iid N(0, 1/p))."""
    s = np.asarray(s, float)
    m = min(n, p)

    def f(nu2):             # increasing in ν₂ where df < min(n, p) (d/dν₂[ν₂(1 − df/p)] = 1 − df₂/p > 0)
        df = np.sum(s / (s + nu2))
        return (n - df) * nu2 * (1 - df / p) - n * lam      # = 0 ⇔ n − nλ/ν₁ = df, ν₁ = ν₂(1 − df/p)

    hi = lam + 10 * (s.sum() * (1 / n + 1 / p) + lam + s.max())
    # ν₀: the branch point df(ν₀) = min(n, p) (0 when rank Σ < min(n, p)); there f = −nλ < 0
    lo = 0.0 if len(s) <= m else _root_log(lambda x: np.sum(s / (s + x)) - m, 1e-300, hi)
    nu2 = brentq(f, lo, hi, xtol=1e-300, rtol=1e-15, maxiter=500)
    df = np.sum(s / (s + nu2))
    return nu2 * (1 - df / p), nu2


def rf_theory(s, w, n, p, lam, sigma2):
    """Linear RF ridge ``â = (FᵀΣ̂F + λ)⁻¹FᵀXᵀy/n``: DLM's
    ``Υ = (p/n)[(1 − ν₁/ν₂)² + (ν₁/ν₂)² Tr[Σ²(Σ+ν₂)⁻²]/(p − Tr[Σ²(Σ+ν₂)⁻²])]``,
    ``χ = Tr[Σ(Σ+ν₂)⁻²]/(p − Tr[Σ²(Σ+ν₂)⁻²])``,
    ``B = ν₂²/(1−Υ)·[⟨β, Σ(Σ+ν₂)⁻²β⟩ + χ⟨β, Σ²(Σ+ν₂)⁻²β⟩]``,
    ``V = σ²Υ/(1−Υ)``; ``risk = B + V + σ²``; training error
    ``(λ/ν₁)²·risk`` (``1 − df̂/n = λ_n/(nν₁)``, GCV)."""
    s, w = np.asarray(s, float), np.asarray(w, float)
    nu1, nu2 = rf_nu(s, n, p, lam)
    r = nu1 / nu2
    df2 = np.sum(s ** 2 / (s + nu2) ** 2)
    U = (p / n) * ((1 - r) ** 2 + r ** 2 * df2 / (p - df2))
    chi = np.sum(s / (s + nu2) ** 2) / (p - df2)
    B = nu2 ** 2 / (1 - U) * (np.sum(w ** 2 * s / (s + nu2) ** 2) + chi * np.sum(w ** 2 * s ** 2 / (s + nu2) ** 2))
    V = sigma2 * U / (1 - U)
    risk = B + V + sigma2
    return dict(nu1=nu1, nu2=nu2, bias=B, variance=V, risk=risk, train=(lam / nu1) ** 2 * risk)


def norm_from_train(train_fn, lam):
    """``|â(λ)|² = ∫_λ^∞ R_in(t)/t² dt − R_in(λ)/λ`` (module docstring),
    ``train_fn(t)`` the deterministic training error at ridge t."""
    smax = 60.0          # t = λe^s; beyond e^60 the tail ∫ R_in/t² ≈ R_in(t_max)/t_max (R_in → |y|²/n)
    integ, _ = quad(lambda s: train_fn(lam * np.exp(s)) * np.exp(-s), 0.0, smax, epsabs=0.0, epsrel=1e-12,
                    limit=500)
    integ += train_fn(lam * np.exp(smax)) * np.exp(-smax)
    return integ / lam - train_fn(lam) / lam


def rf_norm(s, w, n, p, lam, sigma2):
    """``E|â|²`` of linear RF ridge from DLM's training error via
    :func:`norm_from_train`."""
    return norm_from_train(lambda t: rf_theory(s, w, n, p, t, sigma2)["train"], lam)
