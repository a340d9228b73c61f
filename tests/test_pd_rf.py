"""Random-feature quantities at the feature interpolation threshold ``p = d``: a value, not NaN.

Model (``derivations/norm_capacity.py``): ``X`` rows ``N(0, Σ)``, ``F`` iid ``N(0, 1/p)``,
``y = Xw + ε``, ``â = (FᵀΣ̂F + λ)⁻¹FᵀXᵀy/n``. Stage F of the nested conditioning
(``symrmt/equivalence/features.py``) meets ``Σ_F⁺`` pieces, ``u'ᵀŜ⁺u' ≃ κ₀'uᵀΣ²(Σ+κ₀)⁻²u``
(``Ŝ = Σ^{1/2}FFᵀΣ^{1/2}``, ``κ₀' = 1/(1 − Tr[Σ²(Σ+κ₀)⁻²]/p)``), infinite at ``p = d``; in ``‖â‖²``, the
training error and GCV their total coefficient is identically zero once ``λ`` is written through the
law, so they are dropped (``_resolve_pinv``): ``p = d`` gets the limit, ``p ≠ d`` is unchanged.

References, independent of symrmt: ``derivations/_paper_ridge.py`` (plain NumPy; DLM's (ν₁, ν₂) form,
``‖â‖²`` from the training error by ``|â|² = ∫_λ^∞ R_in(t)/t² dt − R_in(λ)/λ``), regular at ``p = d``;
and a dense NumPy Monte Carlo drawing ``X, F, ε`` (tolerance ``k·sem + c·|th|/d``, k = 4, c = 3).
"""
import pathlib
import sys

import numpy as np
import pytest

import symrmt as sr
from symrmt.equivalence import features as fe

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "derivations"))
import _paper_ridge as pr  # noqa: E402

K, C = 4.0, 3.0
SIGMA2 = 0.2

n, d, p = sr.dims("n d p")
lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
Sig = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sig)
w = sr.Vector("w", d)
F = sr.RandomFeatures("F", d, p)
eps = sr.GaussianNoise("eps", n, s2)
y = X * w + eps
A_HAT = (F.T * X.T * X * F / n + lam * sr.I(p)).inverse() * F.T * X.T * y / n
NORM = A_HAT.T * A_HAT
TRAIN = (y - X * F * A_HAT).T * (y - X * F * A_HAT) / n

_CACHE = {}


def _f(name):
    if name not in _CACHE:
        _CACHE[name] = sr.deterministic_equivalent({"norm": NORM, "train": TRAIN}[name]).compile()
    return _CACHE[name]


def _problem(D):
    s = np.arange(1, D + 1, dtype=float) ** -1.0
    return s, s / np.linalg.norm(s)


def test_rf_norm_at_p_equals_d_equals_the_paper_formula():
    """``‖â‖²`` at ``p = d`` (and ``d ± 1``) against ``_paper_ridge.rf_norm``; measured ≤ 2e-14."""
    f = _f("norm")
    for D, prob, Ns, lms in ((100, _problem, (50, 100, 200), (1e-3, 1e-1)),
                             (60, lambda D: (np.ones(D), np.ones(D) / np.sqrt(D)), (30, 120), (1e-2,))):
        s, wv = prob(D)
        for N in Ns:
            for lm in lms:
                for P in (D - 1, D, D + 1):
                    th = float(f(Sigma=s, w=wv, n=N, p=P, lam=lm, sigma2=SIGMA2))
                    ref = pr.rf_norm(s, wv, N, P, lm, SIGMA2)
                    assert np.isfinite(th) and abs(th - ref) <= 1e-12 * ref, (D, N, P, lm, th, ref)


def test_rf_training_error_at_p_equals_d_equals_the_closed_form():
    """Training error at ``p = d``, ``n ∈ {d/2, d, 2d}`` (so also ``p = d = n``), λ down to 1e-10 for
    ``n ≥ p``, against DLM's ``(λ/ν₁)²·risk`` (``_paper_ridge.rf_theory``); measured ≤ 7e-13. (For
    ``n < p`` the training error is O(λ²) and the derived form, a difference of O(1) terms, has an
    absolute error ~1e-16 there: not tested at λ = 1e-10.)"""
    f = _f("train")
    D = 80
    s, wv = _problem(D)
    for N in (D // 2, D, 2 * D):
        for lm, tol in ((1e-1, 1e-12), (1e-3, 1e-12)) + (((1e-10, 1e-9),) if N >= D else ()):
            th = float(f(Sigma=s, w=wv, n=N, p=D, lam=lm, sigma2=SIGMA2))
            ref = pr.rf_theory(s, wv, N, D, lm, SIGMA2)["train"]
            assert np.isfinite(th) and abs(th - ref) <= tol * ref, (N, lm, th, ref)


def _dense_norm(s, wv, N, P, lm, trials, seed):
    """Dense NumPy draws of ``|â|²`` (no symrmt): mean and standard error."""
    rng = np.random.default_rng(seed)
    D = len(s)
    out = np.empty(trials)
    for t in range(trials):
        Xd = rng.standard_normal((N, D)) * np.sqrt(s)
        Fd = rng.standard_normal((D, P)) / np.sqrt(P)
        yd = Xd @ wv + np.sqrt(SIGMA2) * rng.standard_normal(N)
        Z = Xd @ Fd
        a = np.linalg.solve(Z.T @ Z / N + lm * np.eye(P), Z.T @ yd / N)
        out[t] = a @ a
    return out.mean(), out.std(ddof=1) / np.sqrt(trials)


def test_rf_norm_at_p_equals_d_against_dense_monte_carlo_two_sizes():
    """Dense Monte Carlo of ``‖â‖²`` at ``p = d``, d = 40 and 80, ``n ∈ {d/2, 2d}``, λ = 0.05."""
    f = _f("norm")
    errs = {}
    for D, trials in ((40, 1000), (80, 500)):
        s, wv = _problem(D)
        for N in (D // 2, 2 * D):
            th = float(f(Sigma=s, w=wv, n=N, p=D, lam=0.05, sigma2=SIGMA2))
            m, se = _dense_norm(s, wv, N, D, 0.05, trials, seed=D + N)
            assert abs(m - th) <= K * se + C * abs(th) / D, (D, N, th, m, se)
            errs[(D, N)] = (th, m, se)
    print("‖â‖² at p = d: (d, n) → (theory, dense MC, sem):", errs)


def test_pinv_placeholder_test_is_exact():
    """The dependence test of ``_resolve_pinv``: exact rational evaluation at random points."""
    import sympy as sp
    P, Q, a, b = sp.symbols("P Q a b")
    expr = a * P / (1 + b) - P * a / (b + 1) + Q * b ** 2
    assert fe._independent_of(expr, P, [P, Q])
    assert not fe._independent_of(expr, Q, [P, Q])
    assert not fe._independent_of(a * P * 1e-30 + b, P, [P])         # a tiny coefficient is still a coefficient


F2 = sr.RandomFeatures("F2", p, p)
A2 = (F2.T * F.T * X.T * X * F * F2 / n + lam * sr.I(p)).inverse() * F2.T * F.T * X.T * y / n


@pytest.mark.slow
def test_deep_chain_norm_against_dense_monte_carlo_two_sizes():
    """``‖â‖²`` of the two-layer chain ``Z = XF₁F₂`` (``F₂`` square ``p×p``): its second layer is always
    at the square point (``p₂ = p₁ = rank Σ₁``), where ``Σ_F⁺`` pieces are infinite. Before the
    ``_resolve_pinv`` rewriting they were evaluated as ``1e115·c − 1e115·c'`` and gave NaN or wrong
    numbers (d = 60, n = p = 30: 0.8819 against dense MC 0.9447 ± 0.0019; d = 240, n = p = 120: 0.9797
    against 0.8805 ± 0.0023); now 0.9387 and 0.8747. Dense NumPy MC, k = 4, c = 3, d = 60 and 240."""
    f = sr.deterministic_equivalent(A2.T * A2).compile()
    rng = np.random.default_rng(7)
    for D, trials in ((60, 2000), (240, 600)):
        s, wv = _problem(D)
        for N, P in ((D // 2, D // 2), (D, D // 2)):
            th = float(f(Sigma=s, w=wv, n=N, p=P, lam=0.1, sigma2=SIGMA2))
            out = np.empty(trials)
            for t in range(trials):
                Xd = rng.standard_normal((N, D)) * np.sqrt(s)
                Z = Xd @ (rng.standard_normal((D, P)) / np.sqrt(P)) @ (rng.standard_normal((P, P)) / np.sqrt(P))
                yd = Xd @ wv + np.sqrt(SIGMA2) * rng.standard_normal(N)
                a = np.linalg.solve(Z.T @ Z / N + 0.1 * np.eye(P), Z.T @ yd / N)
                out[t] = a @ a
            m, se = out.mean(), out.std(ddof=1) / np.sqrt(trials)
            print("deep chain ‖â‖²", D, N, P, th, m, se)
            assert abs(m - th) <= K * se + C * abs(th) / D, (D, N, P, th, m, se)
