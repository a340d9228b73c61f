"""Expressions outside what the engine can derive raise NotImplementedError
naming the sub-expression — never a wrong formula."""
import pytest

import symrmt as sr
from symrmt.equivalence import deterministic_equivalent as DE

n, d, p = sr.dims("n d p")
lam, mu = sr.scalar("lam"), sr.scalar("mu")
Sigma = sr.Covariance("Sigma", d)
A = sr.Deterministic("A", d, d)
u = sr.Vector("u", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
G = (Sh + lam * sr.I(d)).inverse()


@pytest.mark.parametrize("expr, match", [
    (sr.ntr(G * A * G * A * sr.sample_covariance(X) * G), "share randomness"),
    (sr.ntr((X * X.T / n + sr.Covariance("C", n) + lam * sr.I(n)).inverse()), "Gram-side"),
    (sr.ntr((X.T * sr.Covariance("B", n) * X / n + lam * sr.I(d)).inverse()), "cannot recognise"),
    (sr.ntr(Sh.inverse()), "ridgeless"),
    (sr.ntr(A * Sh * A * G), "apart from its resolvent"),
])
def test_not_derivable(expr, match):
    with pytest.raises(NotImplementedError, match=match):
        DE(expr)


def test_nonzero_mean_raw_gram():
    Xm = sr.GaussianData("Xm", n, Sigma, mean=sr.Vector("m", d))
    with pytest.raises(NotImplementedError, match="sample_covariance"):
        DE(sr.ntr((Xm.T * Xm / n + lam * sr.I(d)).inverse()))


def test_sample_mean_dependent_on_uncentred_covariance():
    Xm = sr.GaussianData("Xm", n, Sigma, mean=sr.Vector("m", d))
    S0 = sr.sample_covariance(Xm, ddof=0)
    e = sr.sample_mean(Xm).T * (S0 + lam * sr.I(d)).inverse() * u
    with pytest.raises(NotImplementedError, match="dependent"):
        DE(e)


def test_variance_with_random_features_is_refused():
    # two-point traces of a feature core now derive (tests/test_random_features.py);
    # variances over the features are second order and still refused
    F = sr.RandomFeatures("F", d, p)
    GF = (F.T * Sh * F + lam * sr.I(p)).inverse()
    with pytest.raises(NotImplementedError, match="random features|feature|fluctuation"):
        DE(sr.var(sr.ntr(GF * GF)))


def test_matrix_valued_random_outside_trace():
    with pytest.raises((TypeError, ValueError)):
        DE(G)
