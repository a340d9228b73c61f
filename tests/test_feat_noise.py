"""Additive feature noise ``Φ = XF + √τ·Ξ`` (``Ξ`` an ``n×p`` matrix of iid
``N(0, 1)``, written ``sr.GaussianData("Xi", n, sr.I(p))``; ``F`` a ``d×p``
``sr.RandomFeatures``): the two-stage law, verified here, and the engine's
refusal naming it.

Convention (as in the papers): test features are noisy too,
``φ = Fᵀx + √τξ``; the risk is ``E[(φᵀâ − xᵀw)²]`` (excess over the test
label noise), ``â = (ΦᵀΦ/n + λ)⁻¹Φᵀy/n``, ``y = Xw + ε``, ``ε ~ N(0, σ²)``.

Derivation (nested conditioning, first order in ``F``). Given ``F`` the rows
of ``Φ`` are ``N(0, S_τ)``, ``S_τ = FᵀΣF + τI_p``, and
``xᵀw = φᵀβ + e``, ``β = S_τ⁻¹FᵀΣw``, ``e`` independent of ``φ`` with variance
``r = wᵀΣw − wᵀΣFS_τ⁻¹FᵀΣw``. So given ``F`` it is plain ridge with
population ``S_τ``, teacher ``β``, noise ``σ² + r``; ``E = (â−β)ᵀS_τ(â−β) + r``:

    Tr_p G ≃ (κ_F/λ) Tr_p(S_τ + κ_F)⁻¹,   κ_F(1 − Tr[S_τ(S_τ+κ_F)⁻¹]/n) = λ,
    E ≃ (κ_F² βᵀS_τ(S_τ+κ_F)⁻²β + σ²γ + r)/(1 − γ),   γ = Tr[S_τ²(S_τ+κ_F)⁻²]/n.

Stage F: ``S_τ + κ_F = FᵀΣF + a₂`` with ``a₂ = τ + κ_F``; the F-law at ridge
``a`` is ``κ_a(1 − df₁(κ_a)/p) = a``, ``df₁(κ) = Tr[Σ(Σ+κ)⁻¹]``, and
``Tr_p(FᵀΣF + a)⁻¹ ≃ (p − df₁(κ_a))/a = p/κ_a``. Writing ``κ = κ_{a₂}``,
``κ_F = κ(1 − df₁(κ)/p) − τ`` and ``Tr[S_τ(S_τ+κ_F)⁻¹] = p(1 − κ_F/κ)``, so the
law is one equation in ``κ``:

    [κ(1 − df₁(κ)/p) − τ]·[1 − df₁(κ)/n − pτ/(nκ)] = λ     (τ = 0: the product law),
    ntr_p G ≃ κ_F/(λκ).

Forms ``βᵀS_τψβ = u'ᵀχ(Ŝ)u'`` (``Ŝ = Σ^{1/2}FFᵀΣ^{1/2}``, ``u' = Σ^{1/2}w``) with
``χ(s) = s/((s+τ)(s+a₂)²) = −(τ/κ_F²)/(s+τ) + (τ/κ_F²)/(s+a₂) + (a₂/κ_F)/(s+a₂)²``,
each ``(Ŝ+a)⁻¹ ≃ (κ_a/a)(Σ+κ_a)⁻¹`` and ``(Ŝ+a)⁻²`` by ``−∂_a``
(``dκ/da = 1/(1 − Tr[Σ²(Σ+κ)⁻²]/p)``); ``γ = [p − 2κ_F p/κ + κ_F² p κ'/κ²]/n``;
``r ≃ κ_τ wᵀΣ(Σ+κ_τ)⁻¹w`` (``Ŝ(Ŝ+τ)⁻¹ ≃ I − κ_τ(Σ+κ_τ)⁻¹``).

Checks: τ = 0 equals the engine's random-feature ridge (``ntr G`` and the
risk, 1e-9); τ > 0 against a dense NumPy Monte Carlo drawing ``X, F, Ξ, ε``
(tolerance ``4·sem + 3·|th|/d``, k = 4, c = 3) at d = 40 (default) and d = 80
(``--runslow``, the O(1/d) trend); ``sr.monte_carlo`` samples the model as
written. The engine now derives it (law family ``feature_noise``,
``symrmt/laws/feature_noise.py``; checked against these formulas in
``tests/test_noise_engine.py``); noise inside deeper feature chains is still
refused naming the feature noise."""
import numpy as np
import pytest
import sympy as sp
from scipy.optimize import brentq

import symrmt as sr

K, C = 4.0, 3.0


def _kap(ev, p, a):
    """κ with κ(1 − Σ ev/(ev+κ)/p) = a (a ≥ 0); ridgeless root when a = 0."""
    f = lambda k: k * (1 - np.sum(ev / (ev + k)) / p) - a
    if a == 0:
        if len(ev) <= p:
            return 0.0
        g = lambda k: np.sum(ev / (ev + k)) - p
        hi = ev.max()
        while g(hi) > 0:
            hi *= 2
        return brentq(g, 0, hi, xtol=1e-300, rtol=1e-15)
    hi = a + ev.sum() / p + 1
    while f(hi) < 0:
        hi *= 2
    lo = _kap(ev, p, 0.0)
    return brentq(f, lo, hi, xtol=1e-300, rtol=1e-15)


def noisy_rf(ev, w, n, p, lam, tau, s2):
    """``(ntr_p G, risk)`` of ridge on ``Φ = XF + √τΞ`` (``Σ = diag(ev)``) by
    the two-stage law of the module docstring (``τ = 0``: plain random
    features, the pole at ``−τ`` becoming the null-space term)."""
    df = lambda k: np.sum(ev / (ev + k))
    a = lambda k: k * (1 - df(k) / p)
    h = lambda k: (a(k) - tau) * (1 - df(k) / n - p * tau / (n * k)) - lam
    kt = _kap(ev, p, tau)
    lo = max(kt, 1e-300)
    hi = 2 * (lo + lam + 1)
    while h(hi) < 0:
        hi *= 2
    k = brentq(h, lo, hi, xtol=1e-300, rtol=1e-15)
    kF = a(k) - tau
    ntr = kF / (lam * k)
    f = lambda kk: np.sum(w * w * ev / (ev + kk))
    fp = lambda kk: -np.sum(w * w * ev / (ev + kk) ** 2)
    kpr = 1 / (1 - np.sum(ev ** 2 / (ev + k) ** 2) / p)   # dκ/da at a2
    a2 = tau + kF
    two = -((kpr / a2 - k / a2 ** 2) * f(k) + (k / a2) * fp(k) * kpr)     # u'ᵀ(Ŝ+a2)⁻²u'
    B = -(kt / kF ** 2) * f(kt) + (tau / kF ** 2) * (k / a2) * f(k) + (a2 / kF) * two
    T1 = p / k
    T2 = p * kpr / k ** 2
    gam = (p - 2 * kF * T1 + kF ** 2 * T2) / n
    r = kt * f(kt)
    return ntr, (kF ** 2 * B + s2 * gam + r) / (1 - gam)


def dense(ev, w, n, p, lam, tau, s2, trials, seed):
    """Independent dense NumPy Monte Carlo: draw ``F, X, Ξ, ε``, solve, return
    the mean and sem of ``(ntr_p G, risk)`` (risk with noisy test features)."""
    rng = np.random.default_rng(seed)
    d = len(ev)
    out = np.empty((trials, 2))
    for t in range(trials):
        F = rng.standard_normal((d, p)) / np.sqrt(p)
        X = rng.standard_normal((n, d)) * np.sqrt(ev)
        Phi = X @ F + np.sqrt(tau) * rng.standard_normal((n, p))
        y = X @ w + np.sqrt(s2) * rng.standard_normal(n)
        A = Phi.T @ Phi / n + lam * np.eye(p)
        a = np.linalg.solve(A, Phi.T @ y / n)
        out[t, 0] = np.trace(np.linalg.inv(A)) / p
        # noisy test features: E[(φᵀa − xᵀw)²] = aᵀ(FᵀΣF + τ)a − 2aᵀFᵀΣw + wᵀΣw
        FS = F.T * ev
        out[t, 1] = a @ (FS @ F) @ a + tau * a @ a - 2 * a @ (FS @ w) + w @ (ev * w)
    return out.mean(0), out.std(0, ddof=1) / np.sqrt(trials)


n, d, p = sr.dims("n d p")
lam, tau, s2 = sr.scalar("lam"), sr.scalar("tau"), sr.scalar("s2")
Sig, w = sr.Covariance("Sigma", d), sr.Vector("w", d)
X = sr.GaussianData("X", n, Sig)
F = sr.RandomFeatures("F", d, p)
Xi = sr.GaussianData("Xi", n, sr.I(p))


def _problem(dd, seed=1):
    ev = np.linspace(0.1, 1.0, dd)
    return ev, np.random.default_rng(seed).standard_normal(dd) / np.sqrt(dd)


def test_tau_zero_is_the_engines_random_feature_ridge():
    Z = X * F
    G = (Z.T * Z / n + lam * sr.I(p)).inverse()
    a = G * Z.T * (X * w + sr.GaussianNoise("eps", n, s2)) / n
    risk = sr.deterministic_equivalent((F * a - w).T * Sig * (F * a - w)).compile()
    ntr = sr.deterministic_equivalent(sr.ntr(G)).compile()
    ev, wv = _problem(40)
    for N, P in ((80, 20), (20, 80), (60, 60)):
        t_ntr, t_risk = noisy_rf(ev, wv, N, P, 0.05, 0.0, 0.1)
        ref_ntr = float(ntr(Sigma=ev, n=N, p=P, lam=0.05))
        ref_risk = float(risk(Sigma=ev, w=wv, n=N, p=P, lam=0.05, s2=0.1))
        assert abs(t_ntr - ref_ntr) <= 1e-9 * ref_ntr, (N, P, t_ntr, ref_ntr)
        assert abs(t_risk - ref_risk) <= 1e-9 * ref_risk, (N, P, t_risk, ref_risk)


def _against_dense(dd, trials, configs):
    ev, wv = _problem(dd)
    out = []
    for N, P, t in configs:
        th = np.array(noisy_rf(ev, wv, N, P, 0.05, t, 0.1))
        m, s = dense(ev, wv, N, P, 0.05, t, 0.1, trials, seed=3)
        assert np.all(np.abs(m - th) <= K * s + C * np.abs(th) / dd), (dd, N, P, t, th, m, s)
        out.append(np.abs(m - th) / th)
    return out


def test_noisy_features_against_dense_monte_carlo():
    _against_dense(40, 150, [(80, 20, 0.3), (20, 80, 0.3), (80, 80, 1.0)])


@pytest.mark.slow
def test_noisy_features_against_dense_monte_carlo_trend():
    cfg = lambda dd: [(2 * dd, dd // 2, 0.3), (dd // 2, 2 * dd, 0.3), (2 * dd, 2 * dd, 1.0)]  # noqa: E731
    e40 = _against_dense(40, 800, cfg(40))
    e80 = _against_dense(80, 400, cfg(80))
    print("relative errors (ntr, risk) d=40:", e40, "d=80:", e80)


def test_sr_monte_carlo_samples_the_model_as_written():
    Phi = X * F + sp.sqrt(tau) * Xi
    e = sr.ntr((Phi.T * Phi / n + lam * sr.I(p)).inverse())
    ev, _ = _problem(40)
    mc = sr.monte_carlo(e, trials=100, seed=1, Sigma=ev, n=80, p=20, lam=0.05, tau=0.3)
    th = noisy_rf(ev, np.zeros(40), 80, 20, 0.05, 0.3, 0.1)[0]
    assert abs(float(mc.mean) - th) <= K * float(mc.sem) + C * th / 40


def test_engine_derives_the_noisy_trace_and_refuses_deeper_chains_by_name():
    Phi = X * F + sp.sqrt(tau) * Xi
    e = sr.deterministic_equivalent(sr.ntr((Phi.T * Phi / n + lam * sr.I(p)).inverse())).compile()
    ev, wv = _problem(40)
    th = noisy_rf(ev, wv, 80, 20, 0.05, 0.3, 0.1)[0]
    assert abs(float(e(Sigma=ev, n=80, p=20, lam=0.05, tau=0.3)) - th) <= 1e-9 * th
    F2 = sr.RandomFeatures("F2", p, p)
    Phi2 = X * F * F2 + sp.sqrt(tau) * Xi
    with pytest.raises(NotImplementedError, match="additive feature noise"):
        sr.deterministic_equivalent(sr.ntr((Phi2.T * Phi2 / n + lam * sr.I(p)).inverse()))
