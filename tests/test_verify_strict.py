"""``sr.verify`` is at least as strict as the tests (issue 13): the allowance
is relative, ``k·sem + c·|theory|/d``, so a theory of 0 or one 2× too large
fails; solver options reach the compiled equivalent."""
import warnings

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt import verification

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
G = (Sh + lam * sr.I(d)).inverse()
v, x = sr.Vector("v", d), sr.Vector("x", d)
VAR = sr.var(v.T * Sh * G * x)            # the reported example: O(1/n), far below the old c/d = 1/d
DIM = 40
B = dict(Sigma=np.linspace(0.5, 2.0, DIM), v=np.ones(DIM) / np.sqrt(DIM), x=np.linspace(-1, 1, DIM),
         n=2 * DIM, lam=np.array([0.1, 1.0]))


@pytest.fixture(scope="module")
def engine():
    return verification._engine_theory(VAR, B)


def run(theory, **kw):
    return sr.verify(VAR, trials=150, seed=3, progress=False, theory=theory, **kw, **B)


def test_the_engine_passes(engine):
    res = run(lambda **b: engine)
    assert res.passed, res
    np.testing.assert_allclose(res.tol, 3 * res.sem + np.abs(engine) / (2 * DIM))


def test_a_zero_theory_fails():
    """Regression: ``theory=lambda **kw: 0*kw["lam"]`` printed PASSED at z ≈ 10."""
    res = run(lambda **kw: 0 * kw["lam"])
    assert not res.passed and not res.ok.any(), res
    assert "FAILED" in repr(res) and "·|theory|/d" in repr(res)
    assert np.all(np.abs(res.mc.mean) < 1 / DIM)      # within the old allowance c/d: it used to pass


def test_a_theory_twice_too_large_fails(engine):
    """Same Monte Carlo draws, theories 2× and ½× the engine's: both fail
    (the old absolute allowance 1/d = 0.025 passed them)."""
    good = run(lambda **kw: engine)
    for wrong in (2 * engine, 0.5 * engine):
        res = verification.VerifyResult(VAR, wrong, good.mc, good.k, good.c, good.dim_name, good.dim)
        assert not res.passed and not res.ok.any(), res
        assert np.all(np.abs(res.diff) < 1 / DIM)     # within the old allowance c/d: it used to pass


def test_solver_options_reach_the_compiled_equivalent(monkeypatch):
    seen = {}

    def fake(expr, bindings, **options):
        seen.update(options)
        return verification.__dict__["_real_engine"](expr, bindings, **options)
    monkeypatch.setattr(verification, "_real_engine", verification._engine_theory, raising=False)
    monkeypatch.setattr(verification, "_engine_theory", fake)
    expr = sr.ntr(sr.sqrt(Sh + lam * sr.I(d)))
    b = dict(Sigma=B["Sigma"], n=B["n"], lam=0.5)
    res = sr.verify(expr, trials=20, progress=False, options={"quad_rtol": 1e-6, "xtol": 1e-12}, **b)
    assert seen == {"quad_rtol": 1e-6, "xtol": 1e-12} and res.passed, res
    seen.clear()
    with pytest.warns(DeprecationWarning, match="quad_rtol"):
        sr.verify(expr, trials=5, progress=False, quad_rtol=1e-6, **b)
    assert seen == {"quad_rtol": 1e-6}
    with pytest.raises(TypeError, match="unknown option"):
        sr.verify(expr, trials=5, progress=False, options={"rtol": 1e-6}, **b)
    with pytest.raises(TypeError, match="not to a given theory"):
        sr.verify(expr, trials=5, progress=False, theory=lambda **kw: 1.0, options={"quad_rtol": 1e-6}, **b)


def test_any_name_is_bindable_through_a_dict():
    """A scalar named ``c`` (also verify's allowance) is bound via ``bindings=``."""
    c = sr.scalar("c")
    expr = c * sr.ntr(Sigma * G)
    b = {"Sigma": B["Sigma"], "n": B["n"], "lam": 0.5, "c": 2.0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sr.verify(expr, trials=20, progress=False, bindings=b)
    assert res.passed, res
    np.testing.assert_allclose(res.theory, 2 * sr.deterministic_equivalent(sr.ntr(Sigma * G)).compile()(
        Sigma=B["Sigma"], n=B["n"], lam=0.5))
