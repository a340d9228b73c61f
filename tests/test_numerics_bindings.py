"""Numerics: binding rules and validation errors (docs/api.md, Evaluating)."""
import numpy as np
import pytest

from symrmt.numerics import BindingError
from symrmt.numerics.examples import one_point, two_point


@pytest.fixture(scope="module")
def f():
    return one_point().compile()


@pytest.fixture(scope="module")
def f2():
    return two_point().compile()


S = np.linspace(0.5, 2.0, 10)


def test_parameters_list_every_symbol_of_the_expression(f, f2):
    assert set(f.parameters) == {"Sigma", "d", "n", "lam"}
    # sigma2 only appears in the user's expression (noise), not in the value
    assert {"A", "w", "sigma2", "lam1", "lam2"} <= set(f2.parameters)
    assert "sigma2" not in f2.required


def test_accepts_bindings_the_value_does_not_use(f2):
    rng = np.random.default_rng(0)
    b = dict(Sigma=S, A=rng.standard_normal((10, 10)), w=rng.standard_normal(10), n=20, lam1=0.1, lam2=0.3)
    assert f2(sigma2=0.5, **b) == f2(**b)


def test_dimensions_inferred_and_checked(f):
    assert f(Sigma=S, n=20, lam=0.1) == f(Sigma=S, n=20, lam=0.1, d=10)
    with pytest.raises(BindingError, match=r"'d': got d = 11, but the bound matrix 'Sigma' has d = 10"):
        f(Sigma=S, n=20, lam=0.1, d=11)


@pytest.mark.parametrize("bindings, message", [
    (dict(foo=1), r"unknown binding\(s\) \['foo'\]; valid bindings: Sigma \(Covariance\), d \(dimension\), "
                  r"lam \(scalar\), n \(dimension\)"),
    (dict(X=np.ones((20, 10))), r"'X': X is a random GaussianData; it is sampled by Monte Carlo"),
    (dict(Sigma=-S), r"'Sigma': covariance eigenvalues must be ≥ 0, got -0.5 at index 0"),
    (dict(Sigma=np.r_[S[:-1], np.nan]), r"'Sigma': contains nan at index \(9,\); values must be finite"),
    (dict(Sigma=np.r_[S[:-1], np.inf]), r"'Sigma': contains inf"),
    (dict(Sigma=np.triu(np.ones((10, 10)))), r"'Sigma': a covariance must be symmetric"),
    (dict(Sigma=np.diag(S) - np.ones((10, 10))), r"'Sigma': a covariance must be positive semi-definite"),
    (dict(Sigma=np.ones((10, 11))), r"'Sigma': Sigma is square \(d×d\) but the array has shape \(10, 11\)"),
    (dict(Sigma=np.ones((2, 2, 2))), r"'Sigma': expected a 1-D \(diagonal\) or 2-D array"),
    (dict(Sigma=["a"] * 10), r"'Sigma': entries must be numbers; could not read 'a'"),
    (dict(lam=-0.1), r"'lam': lam is declared positive, got -0.1; .*bound as a complex number"),
    (dict(lam=np.nan), r"'lam': contains nan; values must be finite"),
    (dict(lam=0.0), r"'lam': the ridge lam = 0 .* rank Σ ≤ min\(sizes\) = 20; use lam > 0"),
    (dict(n=0), r"'n': a dimension must be a positive integer, got 0"),
    (dict(n=-3), r"'n': a dimension must be a positive integer, got -3"),
    (dict(n=20.5), r"'n': a dimension must be a positive integer, got 20.5"),
    (dict(n=[20, 30], lam=[0.1, 0.2, 0.3]), r"do not broadcast together: \{'lam': \(3,\), 'n': \(2,\)\}"),
])
def test_validation_errors_name_the_binding(f, bindings, message):
    b = dict(Sigma=S, n=20, lam=0.1)
    b.update(bindings)
    with pytest.raises(BindingError, match=message):
        f(**b)


def test_missing_binding(f):
    with pytest.raises(BindingError, match=r"missing binding\(s\): n \(dimension\)"):
        f(Sigma=S, lam=0.1)
    with pytest.raises(BindingError, match=r"missing binding\(s\): Sigma \(Covariance\)"):
        f(n=20, lam=0.1, d=10)


def test_matrix_and_vector_shape_errors(f2):
    rng = np.random.default_rng(0)
    b = dict(Sigma=S, A=rng.standard_normal((10, 10)), w=rng.standard_normal(10), n=20, lam1=0.1, lam2=0.3)
    with pytest.raises(BindingError, match=r"'A': A is d×d so d = 9, but 'Sigma' gives d = 10"):
        f2(**{**b, "A": np.ones((9, 9))})
    with pytest.raises(BindingError, match=r"'w': a vector \(d×1\) is bound to 1-D coordinates"):
        f2(**{**b, "w": np.ones((10, 2))})
    with pytest.raises(BindingError, match=r"'A': complex matrices are not supported"):
        f2(**{**b, "A": np.ones((10, 10)) * 1j})


def test_integer_valued_float_dimensions_are_accepted(f):
    assert f(Sigma=S, n=20.0, lam=0.1) == f(Sigma=S, n=20, lam=0.1)
