"""Numerics: limiting spectral density of Σ̂ = XᵀX/n (complex spectral parameter)."""
import numpy as np
import pytest
from scipy.integrate import cumulative_trapezoid

from symrmt.numerics import spectral_density


def test_isotropic_matches_marchenko_pastur():
    s, q, d = 1.3, 0.5, 200
    lo, hi = s * (1 - np.sqrt(q)) ** 2, s * (1 + np.sqrt(q)) ** 2
    x = np.linspace(lo, hi, 1002)[1:-1]                 # 1000 points inside the bulk
    r = spectral_density(Sigma=np.full(d, s), n=int(d / q), x=x)
    mp = np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * q * s * x)
    assert np.abs(r.density - mp).max() < 1e-8
    assert r.result.success
    assert (r.eta > 0).all() and r.eta.max() <= 1e-9 * hi * 1.0001    # η ≈ 1e-9 × spectral scale
    # outside the support the density vanishes
    out = spectral_density(Sigma=np.full(d, s), n=int(d / q), x=np.array([0.5 * lo, 1.5 * hi]))
    assert np.abs(out.density).max() < 1e-8


def test_power_law_density_mass_and_monte_carlo():
    d, n = 2000, 4000
    s = np.arange(1, d + 1) ** -1.5
    x = np.geomspace(1e-6, 4.0, 3000)
    r = spectral_density(Sigma=s, n=n, x=x)
    assert r.result.success and (r.density >= -1e-10).all()
    assert np.trapezoid(r.density, x) == pytest.approx(1.0, abs=1e-3)
    # one draw: rows N(0, Σ); the empirical spectrum against the limiting CDF
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)) * np.sqrt(s)
    ev = np.sort(np.linalg.eigvalsh(X.T @ X / n))
    cdf = cumulative_trapezoid(r.density, x, initial=0.0)
    F = np.interp(ev, x, cdf / cdf[-1])
    k = np.arange(1, d + 1) / d
    ks = max(np.max(k - F), np.max(F - (k - 1 / d)))
    assert ks < 0.02


def test_correlated_samples_density_integrates_to_one():
    d, n = 100, 200
    i = np.arange(n)
    K = 0.5 ** np.abs(i[:, None] - i[None, :])
    x = np.geomspace(1e-4, 30, 2500)
    r = spectral_density(Sigma=np.linspace(0.2, 2.0, d), n=n, K=K, x=x)
    assert r.result.success
    assert np.trapezoid(r.density, x) == pytest.approx(1.0, abs=2e-3)
