"""Numerics on the derivation engine's output: the contract both sides keep."""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.numerics.examples import fractional_power, one_point, resolvent_trace

S = np.random.default_rng(0).uniform(0.2, 2.0, 30)
LAM = np.array([0.01, 0.1, 1.0])


@pytest.fixture(scope="module")
def sym():
    n, d, p = sr.dims("n d p")
    Sigma = sr.Covariance("Sigma", d)
    return dict(n=n, d=d, p=p, lam=sr.scalar("lam"), Sigma=Sigma, X=sr.GaussianData("X", n, Sigma))


def test_one_point(sym):
    X, n, d = sym["X"], sym["n"], sym["d"]
    de = sr.deterministic_equivalent(sr.ntr(sym["Sigma"] * (X.T * X / n + sym["lam"] * sr.I(d)).inverse()))
    np.testing.assert_allclose(de.compile()(Sigma=S, n=50, lam=LAM),
                               one_point().compile()(Sigma=S, n=50, lam=LAM), rtol=1e-13)


def test_correlated_samples(sym):
    n, d = sym["n"], sym["d"]
    K = sr.Covariance("K", n)
    X = sr.GaussianData("XK", n, sym["Sigma"], K=K)
    de = sr.deterministic_equivalent(sr.ntr((X.T * X / n + sym["lam"] * sr.I(d)).inverse()))
    i = np.arange(50)
    Km = 0.5 ** np.abs(i[:, None] - i[None, :])
    res = de.compile().solve(Sigma=S, n=50, K=Km, lam=LAM)
    ref = resolvent_trace(correlated=True).compile()(Sigma=S, n=50, K=Km, lam=LAM)
    np.testing.assert_allclose(res.value, ref, rtol=1e-12)


def test_fractional_power_integral(sym):
    X, n, d = sym["X"], sym["n"], sym["d"]
    a = sr.scalar("a")
    de = sr.deterministic_equivalent(sr.ntr(sr.power(X.T * X / n + a * sr.I(d), sp.Rational(-1, 2))))
    assert de.value.has(sp.Integral)
    np.testing.assert_allclose(de.compile()(Sigma=S, n=50, a=LAM),
                               fractional_power().compile()(Sigma=S, n=50, a=LAM), rtol=1e-11)
