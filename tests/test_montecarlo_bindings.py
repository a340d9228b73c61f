"""Bindings: inference of dimensions, and clear errors naming the binding."""
import numpy as np
import pytest

import symrmt as sr
from symrmt import BindingError
from symrmt.montecarlo import monte_carlo
from symrmt.montecarlo.bindings import bind

n, d, p = sr.dims("n d p")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
A = sr.Deterministic("A", d, p)
X = sr.GaussianData("X", n, Sigma)
G = (X.T * X / n + lam * sr.I(d)).inverse()
EXPR = sr.ntr(Sigma * G) + w.T * G * w
S = np.linspace(0.5, 1.5, 8)
W = np.ones(8)


def mc(expr=EXPR, **b):
    return monte_carlo(expr, trials=3, progress=False, **b)


def test_dimensions_inferred_and_grid_shape():
    b = bind(EXPR, dict(Sigma=S, w=W, n=12, lam=np.logspace(-2, 0, 5)))
    assert b.dims == {"d": 8, "n": 12}
    assert b.batch_shape == (5,) and b.size == 5
    assert b.largest_dim() == ("n", 12)


def test_unknown_binding_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown binding\(s\) \['sigma'\].*valid names are \['Sigma', 'd', 'lam', 'n', 'w'\]"):
        mc(Sigma=S, w=W, n=12, lam=0.1, sigma=1.0)


def test_binding_a_random_object_is_explained():
    with pytest.raises(ValueError, match="random: sampled, not bound"):
        mc(Sigma=S, w=W, n=12, lam=0.1, X=np.ones((12, 8)))


def test_missing_bindings_named():
    with pytest.raises(ValueError, match=r"missing binding\(s\) \['lam', 'w'\]"):
        mc(Sigma=S, n=12)


def test_dimension_not_inferable():
    with pytest.raises(ValueError, match=r"dimension\(s\) \['n'\] are not bound"):
        mc(Sigma=S, w=W, lam=0.1)


def test_dimension_mismatch_names_both_sources():
    with pytest.raises(ValueError, match=r"binding 'Sigma' has 8 rows.*d = 9.*d=9 bound explicitly"):
        mc(Sigma=S, w=W, n=12, lam=0.1, d=9)
    with pytest.raises(ValueError, match=r"binding 'w' has 7 rows.*d=8 inferred from 'Sigma'"):
        mc(Sigma=S, w=np.ones(7), n=12, lam=0.1)


def test_bad_dimension_values():
    for bad in (0, -3, 2.5, "ten"):
        with pytest.raises(BindingError, match="'n': a dimension must be a positive integer|'n': values must be numbers"):
            mc(Sigma=S, w=W, n=bad, lam=0.1)
    mc(Sigma=S, w=W, n=12.0, lam=0.1)  # an integral float is fine


def test_covariance_checks():
    with pytest.raises(BindingError, match="'Sigma': covariance eigenvalues must be ≥ 0, got -0.1"):
        mc(Sigma=np.r_[S[:-1], -0.1], w=W, n=12, lam=0.1)
    with pytest.raises(BindingError, match="'Sigma': contains nan at index"):
        mc(Sigma=np.r_[S[:-1], np.nan], w=W, n=12, lam=0.1)
    R = np.random.default_rng(0).standard_normal((8, 8))
    with pytest.raises(BindingError, match="'Sigma': a covariance must be symmetric"):
        mc(Sigma=R, w=W, n=12, lam=0.1)
    with pytest.raises(BindingError, match="'Sigma': a covariance must be positive semi-definite"):
        mc(Sigma=R + R.T, w=W, n=12, lam=0.1)


def test_scalar_checks():
    with pytest.raises(BindingError, match="'lam': contains inf at index"):
        mc(Sigma=S, w=W, n=12, lam=np.array([0.1, np.inf]))
    with pytest.raises(BindingError, match="'lam': complex values are not supported"):
        mc(Sigma=S, w=W, n=12, lam=0.1 + 1j)
    mu = sr.scalar("mu")
    with pytest.raises(BindingError, match=r"do not broadcast together: \{'lam': \(3,\), 'mu': \(4,\)\}"):
        mc(EXPR + mu, Sigma=S, w=W, n=12, lam=np.ones(3), mu=np.ones(4))


def test_rectangular_matrices():
    expr = sr.Tr(A.T * G * A)
    with pytest.raises(BindingError, match="'A': a 1-D array means a diagonal matrix, but A is d×p"):
        mc(expr, Sigma=S, A=np.ones(8), n=12, lam=0.1)
    r = mc(expr, Sigma=S, A=np.ones((8, 3)), n=12, lam=0.1)
    assert np.isfinite(r.mean)
    with pytest.raises(BindingError, match=r"'w': a vector \(d×1\) is bound to 1-D coordinates"):
        mc(Sigma=S, w=np.ones((8, 2)), n=12, lam=0.1)


def test_law_must_not_depend_on_the_grid():
    s2 = sr.scalar("s2")
    eps = sr.GaussianNoise("eps", n, s2)
    Y = sr.GaussianData("Y", n, s2 * Sigma)
    r = mc((eps.T * eps) / n, n=12, s2=np.array([1.0, 4.0]))  # a noise variance may be on the grid
    assert r.mean.shape == (2,)
    with pytest.raises(ValueError, match="law of Y .*depends on array-valued bindings"):
        mc(sr.ntr(Y.T * Y), Sigma=S, n=12, s2=np.array([1.0, 2.0]))
    with pytest.raises(BindingError, match="'s2': s2 is declared positive, got -1"):
        mc((eps.T * eps) / n, n=12, s2=-1.0)


def test_same_name_for_different_objects_is_refused():
    other = sr.Covariance("Sigma", p)
    with pytest.raises(ValueError, match="two different matrices are named 'Sigma'"):
        mc(sr.ntr(Sigma * G) + sr.ntr(other), Sigma=S, n=12, lam=0.1, p=3)
