"""Monte Carlo against exact expectations and independent equivalents.

Exact expectations (laws of the sampled objects) are checked within
``3·sem`` and nothing else; deterministic equivalents within
``3·sem + 1/d`` (the finite-size allowance of docs/math.md), with the equivalent
computed here by bisection, independently of the symbolic engine.
"""
import numpy as np
import pytest

import symrmt as sr
from symrmt.montecarlo import monte_carlo

from .dense_reference import kappa_bisection as kappa

n, d, p = sr.dims("n d p")
lam, s2 = sr.scalar("lam"), sr.scalar("s2")
Sigma = sr.Covariance("Sigma", d)
K = sr.Covariance("K", n)
m = sr.Vector("m", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
I = sr.I(d)


def within(r, exact, allowance=0.0, k=3.0):
    gap = np.abs(np.asarray(r.mean) - exact)
    assert np.all(gap <= k * np.asarray(r.sem) + allowance), (r.mean, exact, r.sem, allowance)


def test_power_law_df1_equivalent():
    """(1/d)Tr[Σ̂(Σ̂+λ)⁻¹] ≃ df1(κ)/d, power-law Σ, d=400, n=800, 200 draws."""
    dd, nn = 400, 800
    s = np.arange(1, dd + 1, dtype=float) ** -1.5
    lams = np.array([1e-3, 1e-2, 1e-1])
    r = monte_carlo(sr.ntr(Sh * (Sh + lam * I).inverse()), trials=200, seed=0, progress=False,
                    Sigma=s, n=nn, lam=lams)
    theory = np.array([np.sum(s / (s + kappa(s, nn, l))) / dd for l in lams])
    # theory ≈ 0.33, 0.10, 0.024: the tolerance (≈ 1/d = 0.0025) resolves errors of a few %
    assert np.all(np.diff(theory) < -10 / dd)
    within(r, theory, allowance=1.0 / dd)


def test_data_law_with_correlation_and_mean():
    """E[Tr(XᵀX)/n] = Tr(Σ)·Tr(K)/n + n‖m‖²/n for X = K^{1/2}ZΣ^{1/2} + 1mᵀ."""
    Y = sr.GaussianData("Y", n, Sigma, K=K, mean=m)
    s, k, mv = np.linspace(0.5, 1.5, 6), np.linspace(0.2, 1.8, 9), np.arange(6.0) / 6
    r = monte_carlo(sr.Tr(Y.T * Y) / n, trials=400, seed=1, progress=False, Sigma=s, K=k, m=mv)
    within(r, s.sum() * k.sum() / 9 + mv @ mv)


def test_sample_mean_and_unbiased_covariance():
    Y = sr.GaussianData("Y", n, Sigma, mean=m)
    s, mv = np.linspace(0.5, 1.5, 6), np.ones(6)
    mh, S1 = sr.sample_mean(Y), sr.sample_covariance(Y, ddof=1)
    r = monte_carlo(mh.T * mh, trials=400, seed=2, progress=False, Sigma=s, m=mv, n=5)
    within(r, mv @ mv + s.sum() / 5)
    r = monte_carlo(sr.Tr(S1), trials=400, seed=3, progress=False, Sigma=s, m=mv, n=5)
    within(r, s.sum())


def test_noise_and_features_laws():
    eps = sr.GaussianNoise("eps", n, s2)
    r = monte_carlo(eps.T * eps, trials=400, seed=4, progress=False, n=7, s2=np.array([0.5, 2.0]))
    within(r, 7 * np.array([0.5, 2.0]))
    F = sr.RandomFeatures("F", d, p)
    r = monte_carlo(sr.Tr(F * F.T) + sr.Tr(F.T * F * F.T * F) / d, trials=400, seed=5, progress=False,
                    d=6, p=4)
    # E Tr FFᵀ = d; E Tr (FᵀF)² = d p (d + p + 1)/p² for iid N(0, 1/p) entries
    within(r, 6 + 6 * 4 * (6 + 4 + 1) / 16 / 6)


@pytest.mark.slow
def test_power_law_resolvent_against_equivalent_large():
    """(1/d)Tr[Σ(Σ̂+λ)⁻¹] ≃ (κ/λ)(1/d)Σ s/(s+κ) at d=1000 on a λ grid."""
    dd, nn = 1000, 2000
    s = np.arange(1, dd + 1, dtype=float) ** -1.0
    lams = np.logspace(-3, 0, 20)
    r = monte_carlo(sr.ntr(Sigma * (Sh + lam * I).inverse()), trials=100, seed=0, progress=False,
                    Sigma=s, n=nn, lam=lams)
    ks = np.array([kappa(s, nn, l) for l in lams])
    theory = ks / lams * np.array([np.mean(s / (s + k)) for k in ks])
    within(r, theory, allowance=1.0 / dd)
