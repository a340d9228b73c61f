"""Var/Cov across draws: estimates, jackknife standard errors, refusals."""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.montecarlo import evaluate_draw, monte_carlo
from symrmt.montecarlo.bindings import collect

n, d = sr.dims("n d")
lam, s2 = sr.scalar("lam"), sr.scalar("s2")
u, v = sr.Vector("u", n), sr.Vector("v", n)
eps = sr.GaussianNoise("eps", n, s2)
a, b = u.T * eps, v.T * eps
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
G = (X.T * X / n + lam * sr.I(d)).inverse()

rng = np.random.default_rng(0)
U, V = rng.standard_normal(6), rng.standard_normal(6)
B = dict(u=U, v=V, n=6, s2=0.5)


def _bindings(expr, kw):
    """B restricted to the names ``expr`` uses (unknown names are errors)."""
    dims, scalars, det, _ = collect(expr)
    return {k: x for k, x in {**B, **kw}.items() if k in {*dims, *scalars, *det}}


def mc(expr, trials, seed=0, **kw):
    return monte_carlo(expr, trials=trials, seed=seed, progress=False, **_bindings(expr, kw))


def test_variance_of_gaussian_form():
    """Var[uᵀε] = s2‖u‖² exactly; the sample variance is within 3 sem, and
    the jackknife sem matches the Gaussian value √(2/(T−1))·Var."""
    T = 400
    r = mc(sr.var(a), T)
    exact = 0.5 * U @ U
    assert r.method == "jackknife" and r.trials == T
    assert abs(r.mean - exact) <= 3 * r.sem
    assert 0.75 < r.sem / (np.sqrt(2 / (T - 1)) * exact) < 1.33


def test_covariance_of_gaussian_forms():
    r = mc(sr.cov(a, b), 400, seed=1)
    assert abs(r.mean - 0.5 * U @ V) <= 3 * r.sem


def _draws(expr, T, seed=0, **kw):
    return np.array([evaluate_draw(expr, seed=seed, trial=t, **_bindings(expr, kw))[0] for t in range(T)])


def test_estimates_and_jackknife_match_brute_force():
    """n·Var[a]/Var[b] + E[b²]: estimate from the draws, and the delete-one
    jackknife computed by brute force."""
    T = 15
    expr = n * sr.var(a) / sr.var(b) + b ** 2
    r = mc(expr, T, seed=2)
    xa, xb = _draws(a, T, seed=2), _draws(b, T, seed=2)

    def est(ia, ib):
        return 6 * np.var(ia, ddof=1) / np.var(ib, ddof=1) + np.mean(ib ** 2)
    theta = est(xa, xb)
    loo = np.array([est(np.delete(xa, i), np.delete(xb, i)) for i in range(T)])
    sem = np.sqrt((T - 1) / T * np.sum((loo - loo.mean()) ** 2))
    assert np.isclose(r.mean, theta, rtol=1e-12) and np.isclose(r.sem, sem, rtol=1e-10)


def test_variance_on_a_grid():
    lams = np.array([0.05, 0.5])
    r = monte_carlo(sr.var(sr.ntr(G)), trials=8, seed=3, progress=False, Sigma=np.ones(5), n=9, lam=lams)
    vals = np.array([evaluate_draw(sr.ntr(G), seed=3, trial=t, Sigma=np.ones(5), n=9, lam=lams)[0]
                     for t in range(8)])
    assert r.mean.shape == (2,)
    np.testing.assert_allclose(r.mean, vals.var(0, ddof=1), rtol=1e-12)


def test_deterministic_factors_are_allowed():
    r = mc(sr.var(a) * s2 + sr.Tr(sr.Covariance("C", n)) * sr.cov(a, b), 5, C=np.ones(6))
    xa, xb = _draws(a, 5), _draws(b, 5)
    ref = np.var(xa, ddof=1) * 0.5 + 6 * np.cov(xa, xb)[0, 1]
    assert np.isclose(r.mean, ref, rtol=1e-12)


def test_series_of_trial_counts():
    s = mc(sr.var(a), [5, 9])
    assert np.isclose(s.at(5).mean, np.var(_draws(a, 5), ddof=1), rtol=1e-12)


def test_refusals():
    with pytest.raises(NotImplementedError, match="random quantity"):
        mc(sr.var(a) * sr.Tr(eps * eps.T), 5)
    with pytest.raises(NotImplementedError, match="nested"):
        mc(sr.var(sr.var(a) + a), 5)
    with pytest.raises(NotImplementedError, match="combined with the random quantity"):
        mc(sp.exp(a + sr.var(a)), 5)
    with pytest.raises(NotImplementedError, match="inside the matrix expression"):
        mc(sr.Tr(sr.var(a) * sr.Covariance("C", n)), 5, C=np.ones(6))
    with pytest.raises(ValueError, match="at least 3 trials"):
        mc(sr.var(a), 2)
    with pytest.raises(ValueError, match="Var/Cov"):
        evaluate_draw(sr.var(a), u=U, n=6, s2=0.5)
