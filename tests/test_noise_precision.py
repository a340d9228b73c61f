"""Additive feature noise at a tiny ridge: the value is refused where double
precision cannot hold it, never returned wrong.

The derived feature-noise values split the poles of ``Ŝ`` at ``−τ`` and
``−(τ+κ_F)``, ``κ_F = κ(1 − df/p) − τ = O(λ)`` when ``n > p``, with cancelling
coefficients up to ``(τ/κ_F)³``: measured relative errors ≈ ``ε(τ/κ_F)^k``. In
double precision the risk at n = 120, p = 60, τ = 0.3 was 0.8 % off at
λ = 1e-8 and negative at λ = 1e-10 (mpmath: 0.5475…). Now such points are
reported unconverged with a warning (``numerics/laws/feature_noise.py``), and
the mpmath backend gives them (checked against itself at more digits)."""
import sys
import warnings

import numpy as np
import pytest

import symrmt as sr
from .test_noise_engine import RISK, a, _problem


@pytest.fixture(scope="module")
def risk():
    return sr.deterministic_equivalent(RISK)


def _b(lm):
    ev, wv = _problem(40)
    return dict(Sigma=ev, w=wv, n=120, p=60, lam=lm, tau=0.3, s2=0.1)


def test_double_precision_refuses_where_it_would_be_wrong(risk):
    f = risk.compile()
    with pytest.warns(RuntimeWarning, match="κ_F/τ"):
        with pytest.raises(sr.ConvergenceError):
            f(**_b(1e-8))
    with pytest.warns(RuntimeWarning):
        assert np.isnan(f(**_b(1e-10), options={"on_failure": "nan"}))
    # a grid: the refused points are NaN, the others agree with mpmath
    lams = np.array([1e-2, 1e-3, 1e-8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        v = f(**_b(lams), options={"on_failure": "nan"})
    fm = risk.compile(backend="mpmath", dps=30)
    assert np.isnan(v[2])
    for i in (0, 1):
        ref = float(fm(**_b(lams[i])))
        assert abs(v[i] - ref) <= 1e-10 * abs(ref)


def test_mpmath_reaches_the_tiny_ridge(risk):
    lo, hi = risk.compile(backend="mpmath", dps=40), risk.compile(backend="mpmath", dps=60)
    for lm in (1e-8, 1e-10):
        x, y = float(lo(**_b(lm))), float(hi(**_b(lm)))
        assert abs(x - y) <= 1e-12 * abs(y)
        assert 0.5 < y < 0.6                 # the λ → 0 limit, positive (double precision gave −0.40)
