"""k-point equivalents by the block-bidiagonal lift of the general law
(docs/math.md): three and four resolvents of one core with non-commuting
deterministic matrices between them.

Checks: exact resolvent identities against the (unchanged) two-point rule,
the lift at k = 2 against the two-point rule, and Monte Carlo at two sizes
(tolerance ``4·sem + c·|theory|/d``, ``c`` stated).
"""
import numpy as np
import pytest

import symrmt as sr
from tests.mc_check import check

n, d = sr.dims("n d")
z1, z2, z3, z4 = (sr.scalar(s) for s in ("z1", "z2", "z3", "z4"))
Sigma, A1, A2, B = (sr.Covariance(s, d) for s in ("Sigma", "A1", "A2", "B"))
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n


def G(z):
    return (Sh + z * sr.I(d)).inverse()


def _setup(dd, seed=0):
    rng = np.random.default_rng(seed)
    Q1 = np.linalg.qr(rng.standard_normal((dd, dd)))[0]
    Q2 = np.linalg.qr(rng.standard_normal((dd, dd)))[0]
    return dict(Sigma=np.linspace(0.2, 2.0, dd), A1=Q1 @ np.diag(np.linspace(0.5, 1.5, dd)) @ Q1.T,
                A2=Q2 @ np.diag(np.linspace(0.1, 1.0, dd)) @ Q2.T, n=2 * dd,
                z1=0.3, z2=0.5, z3=0.8, z4=0.4)


def _only(expr, b):
    names = {s.name for s in expr.free_symbols} | {m.name for m in expr.atoms(sr.Covariance)}
    return {k: v for k, v in b.items() if k in names}


def _val(expr, b):
    return float(sr.deterministic_equivalent(expr).compile()(**_only(expr, b)))


def test_three_point_resolvent_identity():
    # G1 G2 = (G1 − G2)/(z2 − z1): Tr[A1 G1 G2 A2 G3] from the lift equals two-point values exactly
    b = _setup(30)
    lhs = _val(sr.ntr(A1 * G(z1) * G(z2) * A2 * G(z3)), b)
    rhs = (_val(sr.ntr(A1 * G(z1) * A2 * G(z3)), b) - _val(sr.ntr(A1 * G(z2) * A2 * G(z3)), b)) / (0.5 - 0.3)
    assert abs(lhs - rhs) < 1e-9 * abs(rhs)


def test_lift_reproduces_two_point_rule():
    # the lift (a shift B bound to 0 routes the resolvent through the general law) vs the two-point rule
    b = _setup(30)
    Gb = (Sh + B + z1 * sr.I(d)).inverse()
    two = _val(sr.ntr(Sigma * G(z1) * A1 * G(z1)), b)
    lift = _val(sr.ntr(Sigma * Gb * A1 * Gb), dict(b, B=np.zeros(30)))
    assert abs(lift - two) < 1e-9 * abs(two)


@pytest.mark.parametrize("dd", [40, pytest.param(80, marks=pytest.mark.slow)])
def test_three_point_mc(dd):
    # k = 3, non-commuting Σ, A1, A2, n = 2d, z = 0.3, 0.5, 0.8; c = 3
    e = sr.ntr(G(z1) * A1 * G(z2) * A2 * G(z3))
    check(e, d=dd, trials=60, c=3.0, **_only(e, _setup(dd)))


@pytest.mark.slow
@pytest.mark.parametrize("dd", [40, 80])
def test_four_point_mc(dd):
    # k = 4 with a repeated ridge; c = 4
    e = sr.ntr(Sigma * G(z1) * A1 * G(z2) * A2 * G(z3) * A1 * G(z4))
    check(e, d=dd, trials=60, c=4.0, **_only(e, _setup(dd)))


def test_correlated_samples_three_point_refused():
    K = sr.Covariance("K", n)
    Xk = sr.GaussianData("Xk", n, Sigma, K=K)
    Gk = (Xk.T * Xk / n + z1 * sr.I(d)).inverse()
    # correlated rows (K): k ≥ 3 now derive by the lift with sample-side sources
    # (equivalence/sample_side.py; Monte Carlo in tests/test_sample_side.py), no longer refused
    de = sr.deterministic_equivalent(sr.ntr(Gk * A1 * Gk * A2 * Gk))
    assert not sr.objects.random_symbols(de.value)
