"""``verify``: theory and Monte Carlo side by side, with a stated tolerance."""
import importlib

import numpy as np
import pytest

import symrmt as sr
from symrmt.verification import VerifyResult, verify

from .dense_reference import kappa_bisection as kappa

verify_module = importlib.import_module("symrmt.verification")

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
EXPR = sr.ntr(Sh * (Sh + lam * sr.I(d)).inverse())
S = np.arange(1, 101, dtype=float) ** -1.0
LAMS = np.array([1e-2, 1e-1, 1.0])
B = dict(Sigma=S, n=200, lam=LAMS)


def df1_theory(Sigma, n, lam):
    lam = np.atleast_1d(lam)
    return np.array([np.sum(Sigma / (Sigma + kappa(Sigma, n, l))) / Sigma.size for l in lam])


def test_default_theory_comes_from_the_engine_hook(monkeypatch):
    seen = {}

    def fake(expr, bindings):
        seen["expr"], seen["bindings"] = expr, bindings
        return df1_theory(**bindings)
    monkeypatch.setattr(verify_module, "_engine_theory", fake)
    res = verify(EXPR, trials=60, progress=False, **B)
    assert seen["expr"] is EXPR and set(seen["bindings"]) == {"Sigma", "n", "lam"}
    assert isinstance(res, VerifyResult) and res.passed, res
    assert res.dim_name == "n" and res.dim == 200
    np.testing.assert_allclose(res.tol, 3 * res.sem + np.abs(res.theory) / 200)
    np.testing.assert_allclose(res.z, res.diff / res.sem)
    text = repr(res)
    assert "PASSED" in text and "3·sem + 1·|theory|/d, d = n = 200" in text
    for col in ("theory", "mc", "sem", "diff", "z", "rel", "tol"):
        assert col in text
    res.assert_passed()


def test_wrong_theory_fails_and_says_where():
    shift = np.array([0.0, 0.02, 0.0])  # 0.02 ≫ 3·sem + |theory|/200 at the middle point only
    res = verify(EXPR, trials=60, progress=False, theory=lambda **b: df1_theory(**b) + shift, **B)
    assert not res.passed and list(res.ok) == [True, False, True]
    assert "FAILED at 1 of 3 point(s)" in repr(res)
    with pytest.raises(AssertionError, match="FAIL"):
        res.assert_passed()


def test_tolerance_parameters_are_used():
    base = verify(EXPR, trials=30, progress=False, theory=lambda **b: df1_theory(**b), **B)
    gap = np.abs(base.diff).max()
    tight = verify(EXPR, k=0.0, c=0.0, trials=30, progress=False, theory=lambda **b: df1_theory(**b) + 2 * gap,
                   **B)
    loose = verify(EXPR, k=0.0, c=200 * 3 * gap / np.abs(base.theory).min(), trials=30, progress=False,
                   theory=lambda **b: df1_theory(**b) + 2 * gap, **B)
    assert not tight.passed and loose.passed


def test_nan_theory_never_passes_and_shapes_are_checked():
    res = verify(EXPR, trials=10, progress=False, theory=lambda **b: np.full(3, np.nan), **B)
    assert not res.passed
    with pytest.raises(ValueError, match="theory has shape"):
        verify(EXPR, trials=10, progress=False, theory=lambda **b: np.ones(4), **B)
    with pytest.raises(TypeError, match="trials must be an int"):
        verify(EXPR, trials=[10, 20], theory=lambda **b: 0.0, **B)


def _engine_available():
    try:
        from symrmt.equivalence import deterministic_equivalent  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _engine_available(), reason="symrmt.equivalence.deterministic_equivalent not available")
def test_engine_against_monte_carlo():
    """The real engine: (1/d)Tr[Σ(Σ̂+λ)⁻¹], power-law Σ, d=100, n=200."""
    expr = sr.ntr(Sigma * (Sh + lam * sr.I(d)).inverse())
    res = verify(expr, trials=100, progress=False, **B)
    res.assert_passed()
    ks = np.array([kappa(S, 200, l) for l in LAMS])
    np.testing.assert_allclose(res.theory, ks / LAMS * np.array([np.mean(S / (S + k)) for k in ks]), rtol=1e-8)
