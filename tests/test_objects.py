"""Objects layer: roles, laws, independence, errors, printing."""
import pickle

import pytest
import sympy as sp

import symrmt as sr


@pytest.fixture
def model():
    n, d, p = sr.dims("n d p")
    Sigma = sr.Covariance("Sigma", d)
    return n, d, p, Sigma


def test_independent_copies_are_distinct(model):
    n, d, p, Sigma = model
    X1 = sr.GaussianData("X", n, Sigma)
    X2 = sr.GaussianData("X", n, Sigma)
    assert X1 != X2 and X1 == X1.func(*X1.args)
    assert X1.law_key() == X2.law_key()


def test_pickle_roundtrip_keeps_identity(model):
    n, d, p, Sigma = model
    X = sr.GaussianData("X", n, Sigma)
    eps = sr.GaussianNoise("eps", n, sr.scalar("sigma2"))
    F = sr.RandomFeatures("F", d, p)
    for obj in (X, eps, F, sr.sample_mean(X), sr.sample_covariance(X, ddof=1)):
        assert pickle.loads(pickle.dumps(obj)) == obj


def test_symmetric_roles_transpose_to_themselves(model):
    n, d, p, Sigma = model
    X = sr.GaussianData("X", n, Sigma)
    assert Sigma.T == Sigma
    assert sr.sample_covariance(X).T == sr.sample_covariance(X)


def test_one_by_one_is_a_scalar(model):
    n, d, p, Sigma = model
    w = sr.Vector("w", d)
    s2 = sr.scalar("sigma2")
    e = w.T * Sigma * w + s2
    assert isinstance(e, sp.Expr) and s2 in e.free_symbols


@pytest.mark.parametrize("name, tex", [("lam", r"\lambda"), ("lam1", r"\lambda_{1}"), ("sigma2", r"\sigma^{2}"),
                                       ("sigma_T2", r"\sigma_{T}^{2}"), ("kappa", r"\kappa"), ("a", "a")])
def test_greek_latex_names(name, tex):
    assert sp.latex(sr.scalar(name)) == tex


def test_constructor_errors(model):
    n, d, p, Sigma = model
    with pytest.raises(ValueError, match="K must be"):
        sr.GaussianData("X", n, Sigma, K=sr.Covariance("K", d + 1))
    with pytest.raises(TypeError, match="Sigma"):
        sr.GaussianData("X", n, 3)
    with pytest.raises(ValueError, match="mean"):
        sr.GaussianData("X", n, Sigma, mean=sr.Vector("m", n + 1))
    with pytest.raises(ValueError, match="positive integer"):
        sr.dims("n"), sr.Covariance("S", 0)
    with pytest.raises(ValueError, match="variance"):
        sr.GaussianNoise("e", n, -1)
    with pytest.raises(TypeError, match="sample_mean"):
        sr.sample_mean(Sigma)
    with pytest.raises(ValueError, match="ddof"):
        sr.sample_covariance(sr.GaussianData("X", n, Sigma), ddof=2)
    with pytest.raises(ValueError, match="identifier"):
        sr.scalar("not a name")
    with pytest.raises(TypeError, match="square"):
        sr.power(sr.Vector("v", d), sp.Rational(1, 2))
