"""One binding layer (issue 13): ``compile``, the generated module,
``monte_carlo`` and ``verify`` validate bindings with the same code
(``symrmt._bindings``) and raise the same ``BindingError``; options live in
their own namespace; solver honesty (``xtol`` capped, quadrature judged
against the requested relative tolerance)."""
import warnings

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt import _bindings
from symrmt.faces.codegen import to_python

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
G = (Sh + lam * sr.I(d)).inverse()
EXPR = sr.ntr(Sigma * G)
S = np.linspace(0.5, 2.0, 12)
A = sr.Deterministic("A", d, d)


@pytest.fixture(scope="module")
def de():
    return sr.deterministic_equivalent(EXPR)


@pytest.fixture(scope="module")
def f(de):
    return de.compile()


@pytest.fixture(scope="module")
def gen(de):
    ns = {}
    exec(compile(to_python(de), "<generated>", "exec"), ns)
    return ns


def _mc(expr=EXPR, trials=4, **b):
    return sr.monte_carlo(expr, trials=trials, seed=0, progress=False, **b)


def _message(fn):
    """The message of the BindingError raised by ``fn`` (the package's, or the
    generated module's own copy of the class)."""
    with pytest.raises(ValueError) as info:
        fn()
    assert type(info.value).__name__ == "BindingError" and isinstance(info.value, TypeError), info.value
    return str(info.value)


def test_one_error_class(gen):
    assert sr.BindingError is _bindings.BindingError
    from symrmt.numerics import BindingError
    assert BindingError is sr.BindingError
    assert issubclass(sr.BindingError, ValueError) and issubclass(sr.BindingError, TypeError)
    assert gen["BindingError"].__name__ == "BindingError"
    assert issubclass(gen["BindingError"], ValueError) and issubclass(gen["BindingError"], TypeError)


@pytest.mark.parametrize("bad, text", [
    (dict(lam=-1), "'lam': lam is declared positive, got -1"),
    (dict(lam=np.nan), "'lam': contains nan"),
    (dict(n=2.5), "'n': a dimension must be a positive integer, got 2.5"),
    (dict(n=0), "'n': a dimension must be a positive integer, got 0"),
    (dict(Sigma=-S), "'Sigma': covariance eigenvalues must be ≥ 0"),
    (dict(Sigma=np.triu(np.ones((12, 12)))), "'Sigma': a covariance must be symmetric"),
    (dict(Sigma=["x"] * 12), "'Sigma': entries must be numbers"),
    (dict(lam=[True, False]), "'lam': values must be numbers, got booleans"),
])
def test_same_validation_same_message_everywhere(f, gen, bad, text):
    """Each bad binding: the same BindingError text from compile, the generated
    module, monte_carlo and verify (regression: lam = −1 was computed by
    monte_carlo; three error types)."""
    b = dict(Sigma=S, n=24, lam=0.1)
    b.update(bad)
    msgs = [_message(lambda: f(**b)), _message(lambda: gen["evaluate"](**b)),
            _message(lambda: _mc(**b)), _message(lambda: sr.verify(EXPR, trials=4, progress=False, **b))]
    for m in msgs:
        assert text in m, msgs
    assert len({m.split(": ", 1)[1] for m in msgs}) == 1, msgs


def test_array_valued_dimension_same_behaviour_everywhere(f, gen):
    """``n=[16, 48]``: a grid over sizes for compile, the generated module and
    monte_carlo alike (regression: accepted by two, refused by one); Monte
    Carlo runs once per size with the same seed."""
    ns = np.array([16, 48])
    th = f(Sigma=S, n=ns, lam=0.1)
    np.testing.assert_allclose(gen["evaluate"](Sigma=S, n=ns, lam=0.1), th, rtol=1e-12)
    np.testing.assert_allclose(th, [f(Sigma=S, n=int(k), lam=0.1) for k in ns], rtol=1e-14)
    mc = _mc(trials=20, Sigma=S, n=ns, lam=[[0.1], [0.3]])
    assert mc.mean.shape == (2, 2) and mc.grid["n"].shape == (2, 2)
    for i, k in enumerate(ns):
        one = _mc(trials=20, Sigma=S, n=int(k), lam=np.array([0.1, 0.3]))
        np.testing.assert_array_equal(mc.mean[:, i], one.mean)
        np.testing.assert_array_equal(mc.sem[:, i], one.sem)
    ver = sr.verify(EXPR, trials=20, seed=0, progress=False, Sigma=S, n=ns, lam=0.1)
    np.testing.assert_allclose(ver.theory, th, rtol=1e-14)
    np.testing.assert_array_equal(ver.dim, [16, 48])             # the largest dimension at each point
    series = _mc(trials=[10, 20], Sigma=S, n=ns, lam=0.1)
    np.testing.assert_array_equal(series.final.mean, _mc(trials=20, Sigma=S, n=ns, lam=0.1).mean)


def test_scalar_and_matrix_with_one_name_are_refused():
    """Regression: a scalar and a matrix both named Sigma compiled and returned an
    array of the wrong shape."""
    s = sr.scalar("Sigma")
    expr = sr.ntr(Sigma * G) * s
    assert "used for both a scalar and a matrix" in _message(
        lambda: sr.deterministic_equivalent(expr).compile()(Sigma=S, n=24, lam=0.1))
    assert "used for both a scalar and a matrix" in _message(lambda: _mc(expr, Sigma=S, n=24, lam=0.1))


def test_fractional_power_needs_a_symmetric_psd_matrix():
    """Regression: ``sr.power(A, 1/2)`` of a non-symmetric bound A read its lower
    triangle only (Monte Carlo) — now refused by compile and Monte Carlo."""
    expr = sr.ntr(sr.power(A, sp.S.Half) * G)
    f = sr.deterministic_equivalent(expr).compile()
    An = np.eye(12) + 0.3 * np.triu(np.ones((12, 12)), 1)
    for run in (lambda **b: f(**b), lambda **b: _mc(expr, **b)):
        assert "'A': A enters a fractional power or matrix function, so it must be symmetric" in _message(
            lambda: run(Sigma=S, A=An, n=24, lam=0.1))
        assert "'A': A is raised to a fractional power, so its eigenvalues must be ≥ 0" in _message(
            lambda: run(Sigma=S, A=np.r_[np.ones(11), -1.0], n=24, lam=0.1))
    # a symmetric PSD A is fine and both sides agree with a dense NumPy simulation (d = 12: loose)
    Asym = An + An.T
    assert np.isfinite(f(Sigma=S, A=Asym, n=24, lam=0.1))


def test_singular_inverse_is_refused(gen):
    """Regression: ``sr.monte_carlo(ntr(A⁻¹G))`` with a singular A returned 1.5e14."""
    expr = sr.ntr(A.inverse() * G)
    de = sr.deterministic_equivalent(expr)
    ns = {}
    exec(compile(to_python(de), "<generated>", "exec"), ns)
    sing_diag = np.r_[np.ones(11), 0.0]
    sing_full = np.outer(np.ones(12), np.arange(1, 13.0))
    for run in (de.compile(), ns["evaluate"], lambda **b: _mc(expr, **b)):
        for Ab in (sing_diag, sing_full):
            assert "the expression inverts A, but the bound matrix is singular" in _message(
                lambda: run(Sigma=S, A=Ab, n=24, lam=0.1))
    ok = np.linspace(1, 2, 12)
    np.testing.assert_allclose(ns["evaluate"](Sigma=S, A=ok, n=24, lam=0.1),
                               de.compile()(Sigma=S, A=ok, n=24, lam=0.1), rtol=1e-10)


def test_exact_numbers_are_accepted_everywhere(f, gen):
    """Fractions, Decimals, decimal strings: read as numbers by every evaluator."""
    from decimal import Decimal
    from fractions import Fraction
    ref = f(Sigma=S, n=24, lam=0.1)
    for v in ("0.1", Fraction(1, 10), Decimal("0.1")):
        np.testing.assert_allclose(f(Sigma=S, n=24, lam=v), ref, rtol=1e-15)
        np.testing.assert_allclose(gen["evaluate"](Sigma=S, n=24, lam=v), ref, rtol=1e-12)
        assert _mc(Sigma=S, n=24, lam=v).mean == _mc(Sigma=S, n=24, lam=0.1).mean


# ------------------------------------------------------------------ options namespace
def test_a_scalar_named_eta_is_bindable_and_options_have_their_own_namespace(f):
    eta = sr.scalar("eta")
    expr = sr.ntr(Sigma * (Sh + eta * sr.I(d)).inverse())
    fe = sr.deterministic_equivalent(expr).compile()
    ref = f(Sigma=S, n=24, lam=0.3)
    np.testing.assert_allclose(fe(Sigma=S, n=24, eta=0.3), ref, rtol=1e-14)
    # the dict form: every keyword is an option, the binding eta and the option eta coexist
    np.testing.assert_allclose(fe({"Sigma": S, "n": 24, "eta": 0.3}, eta=1e-9, maxiter=50), ref, rtol=1e-14)
    np.testing.assert_allclose(fe(Sigma=S, n=24, eta=0.3, options={"eta": 1e-9}), ref, rtol=1e-14)
    res = fe.solve({"Sigma": S, "n": 24, "eta": 0.3}, raise_on_failure=False)
    assert res.success
    np.testing.assert_allclose(sr.monte_carlo(expr, trials=5, seed=1, progress=False, Sigma=S, n=24, eta=0.3).mean,
                               sr.monte_carlo(EXPR, trials=5, seed=1, progress=False, Sigma=S, n=24, lam=0.3).mean)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['tol'\]"):
        f(Sigma=S, n=24, lam=0.3, options={"tol": 1e-3})


def test_keyword_options_still_work_with_a_deprecation_warning(f):
    with pytest.warns(DeprecationWarning, match="options=\\{'xtol': ...\\}"):
        v = f(Sigma=S, n=24, lam=0.3, xtol=1e-12)
    np.testing.assert_allclose(v, f(Sigma=S, n=24, lam=0.3), rtol=1e-13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f(Sigma=S, n=24, lam=0.3, options={"xtol": 1e-12, "on_failure": "nan"})


# ------------------------------------------------------------------ solver honesty
def test_xtol_cannot_make_convergence_meaningless(f):
    """Regression: ``xtol=1.0`` reported converged=True with a value 17 % off."""
    with pytest.raises(ValueError, match=r"xtol must be in \(0, 1e-06\]"):
        f.solve(Sigma=S, n=24, lam=0.1, options={"xtol": 1.0})
    loose = f.solve(Sigma=S, n=24, lam=np.logspace(-3, 1, 9), options={"xtol": 1e-6})
    tight = f.solve(Sigma=S, n=24, lam=np.logspace(-3, 1, 9))
    assert loose.success
    # the loosest allowed xtol still gives κ to its relative tolerance
    np.testing.assert_allclose(loose.x["kappa"], tight.x["kappa"], rtol=1e-6)
    np.testing.assert_allclose(loose.value, tight.value, rtol=1e-6)


def test_quadrature_never_converged_beyond_the_requested_rtol():
    """A point is converged only where the integral's error estimate (its last
    two levels' difference) is within the requested ``quad_rtol`` relative to
    the integral (it used to pass up to √quad_rtol). mpmath at 20 digits cannot
    reach 1e-24 (rounding floor ~1e-20) except where two levels round alike."""
    a = sr.scalar("a")
    f = sr.deterministic_equivalent(sr.ntr(sr.power(Sh + a * sr.I(d), sp.S.Half))).compile(backend="mpmath",
                                                                                          dps=20)
    b = {"Sigma": np.linspace(0.5, 2, 5), "n": 10, "a": np.array([1.0])}
    ok = f.solve(b, quad_rtol=1e-10)
    assert ok.success and np.all(ok.quad_error <= 1e-10 * 5 * np.abs(ok.value.astype(float)))
    res = f.solve(b, quad_rtol=1e-24, raise_on_failure=False)
    integral = 5 * np.abs(ok.value.astype(float))          # the value is Tr(...)/d, d = 5
    assert not res.success and "quadrature error" in res.message
    assert np.all(res.quad_error[res.converged] <= 1e-24 * integral[res.converged])
    assert np.all(res.quad_error[~res.converged] > 1e-24 * integral[~res.converged])


def test_keyword_names_are_bindable_through_bindings_dict():
    """A scalar named like a keyword of ``monte_carlo`` (``seed``) binds through
    ``bindings={...}`` in Monte Carlo and compile alike; a name given twice is an error."""
    n, d = sr.dims("n d")
    seed = sr.scalar("seed")
    X = sr.GaussianData("X", n, sr.Covariance("Sigma", d))
    e = sr.ntr((X.T * X / n + seed * sr.I(d)).inverse())
    b = {"seed": 0.5, "Sigma": np.ones(30)}
    mc = sr.monte_carlo(e, trials=30, seed=1, bindings=b, n=60)
    th = sr.deterministic_equivalent(e).compile()(bindings=b, n=60)
    # isotropic closed form of the same equivalent (q = 1/2): κ² + κ(1 − λ − q) − λ = 0, value κ/(λ(κ+1))
    lam, q = 0.5, 0.5
    k = (-(1 - lam - q) + np.sqrt((1 - lam - q) ** 2 + 4 * lam)) / 2
    assert abs(float(th) - k / (lam * (k + 1))) < 1e-12
    assert abs(mc.mean - th) <= 4 * mc.sem + 3 * abs(th) / 30
    with pytest.raises(TypeError, match="both in bindings"):
        sr.monte_carlo(e, trials=5, bindings={"n": 60, **b}, n=60)
