"""Pooled gradient-descent risk on one shared contour with full-matrix bindings
(``symrmt.numerics.contour.curve``, dense mode).

The route: every word's integral is put on the same nodes; the general law
(complex ``δ_k``) is solved once per node for all words (groups equal up to the
names of θ and of the unknowns); each resolvent ``(Σ_k c_kρ_kΣ_k + B − z)⁻¹`` is
inverted once per node and shared; traces over two contours
``Tr[L(θ)M(θ')] = Σ_ij L_ij M_ji`` are one matrix product over the node pairs.

Checks:
* dense bindings against the diagonal route (single core, ``Σ = diag(s)`` and a
  rotated ``QΣQᵀ`` with ``Qw``: rotation invariance), ≤ 1e-12;
* ``(1/d) Tr e^{−M}`` of a pooled ``M`` (non-commuting ``Σ₁``, ``Σ₂``): dense
  curve against ``de.compile()`` (the engine's per-value quadrature), ≤ 1e-8;
* the pooled GD risk (t = 3) at d = 16 against an independent dense NumPy
  simulation of the same iteration (default run); slow: the new route against
  the old one (``de.compile()``, ~100 s and ~220 MB at d = 16) ≤ 1e-8, and the
  dense simulation plus ``sr.monte_carlo`` at d = 16, 24;
* refusals by name.
Tolerance of Monte Carlo checks: ``4·sem + 3·|theory|/d``.
"""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.numerics.contour import _DenseEval, curve

from .test_pfn_spectral import EXP_POOL, GD_RISK, _dense_gd, _laws

K_SEM, C_REL = 4.0, 3.0
n, d = sr.dims("n d")
lr, s2 = sr.scalar("lr"), sr.scalar("sigma2")
t = sr.scalar("t", integer=True)
S = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, S)
eps = sr.GaussianNoise("eps", n, s2)
WT = sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, X.T * X / n) * X.T * (X * w + eps) / n
ONE_CORE_RISK = (WT - w).T * S * (WT - w) + s2


@pytest.fixture(scope="module")
def gd_risk():
    return sr.deterministic_equivalent(GD_RISK)


def test_dense_bindings_equal_diagonal_route():
    de = sr.deterministic_equivalent(ONE_CORE_RISK)
    D = 10
    rng = np.random.default_rng(0)
    s = np.linspace(0.3, 2.0, D)
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0]
    wv = rng.standard_normal(D) / np.sqrt(D)
    bind = dict(Sigma=s, n=20, w=wv, sigma2=0.25, t=np.array([5, 10, 30]), lr=0.5)
    diag = curve(de, bind, over=("t",))
    full = curve(de, dict(bind, Sigma=np.diag(s)), over=("t",))
    rot = curve(de, dict(bind, Sigma=Q @ np.diag(s) @ Q.T, w=Q @ wv), over=("t",))
    assert diag.success and full.success and rot.success
    assert np.allclose(full.value, diag.value, rtol=1e-12, atol=0)
    assert np.allclose(rot.value, diag.value, rtol=1e-12, atol=0)


def test_pooled_exp_trace_equals_compiled_quadrature():
    de = sr.deterministic_equivalent(EXP_POOL)
    D = 16
    Sa, Sb = _laws(D)
    b = dict(Sigma1=Sa, Sigma2=Sb, n1=D // 2, n2=D, d=D)
    ref = float(de.compile()(**b))
    res = curve(de, b, over=())
    assert res.success
    assert abs(float(res.value) - ref) <= 1e-8 * abs(ref), (float(res.value), ref)


def _bind(D, **kw):
    Sa, Sb = _laws(D)
    wv = np.random.default_rng(5).standard_normal(D) / np.sqrt(D)
    return dict(Sigma1=Sa, Sigma2=Sb, n1=D // 2, n2=D, d=D, lr=0.25, t=3, lam=0.1, sigma2=0.5, w=wv, **kw)


def test_pooled_gd_risk_dense_simulation_d16(gd_risk):
    """Shared-contour route against the dense NumPy GD simulation (independent of
    ``sr.monte_carlo``) at d = 16, t = 3."""
    D = 16
    b = _bind(D)
    res = curve(gd_risk, b, over=("t",))
    assert res.success
    th = float(res.value)
    mean, sem = _dense_gd(b["Sigma1"], b["Sigma2"], D // 2, D, b["w"], 0.25, 3, 0.1, 0.5, trials=800, seed=D)
    assert abs(mean - th) <= K_SEM * sem + C_REL * abs(th) / D, (th, mean, sem)


@pytest.mark.slow
def test_pooled_gd_risk_new_route_equals_old_route(gd_risk):
    """d = 16, t = 3: the shared contour against ``de.compile()`` (each word its own
    contour, adaptive quadrature), ≤ 1e-8 relative."""
    b = _bind(16)
    old = float(gd_risk.compile()(**b))
    new = curve(gd_risk, b, over=("t",))
    assert new.success
    assert abs(float(new.value) - old) <= 1e-8 * abs(old), (float(new.value), old)


@pytest.mark.slow
def test_pooled_gd_risk_curve_two_sizes(gd_risk):
    """Times 1…8 on one contour at d = 16 and 24 against the dense simulation at
    t = 3 and 8, and ``sr.monte_carlo`` at t = 3."""
    gaps = []
    for D in (16, 24):
        b = _bind(D)
        res = curve(gd_risk, dict(b, t=np.arange(1, 9)), over=("t",))
        assert res.success
        for T in (3, 8):
            th = float(res.value[T - 1])
            mean, sem = _dense_gd(b["Sigma1"], b["Sigma2"], D // 2, D, b["w"], 0.25, T, 0.1, 0.5,
                                  trials=1500, seed=D + T)
            assert abs(mean - th) <= K_SEM * sem + C_REL * abs(th) / D, (D, T, th, mean, sem)
        mc = sr.monte_carlo(GD_RISK, trials=400, seed=D + 7, **b)
        th = float(res.value[2])
        assert abs(mc.mean - th) <= K_SEM * mc.sem + C_REL * abs(th) / D, (D, th, mc.mean, mc.sem)


def test_dense_trace_refusals_name_the_piece():
    a, b = sp.Symbol("ta", real=True), sp.Symbol("tb", real=True)
    A = sr.Covariance("A", d)
    Ra = (A + a * sr.I(d)).inverse()
    Rb = (A + b * sr.I(d)).inverse()
    ev = _DenseEval({a, b}, {}, {})
    nodes = np.linspace(1.0, 2.0, 4)
    vec, scal = {"A": np.eye(3)}, {"d": 3.0}
    with pytest.raises(NotImplementedError, match="alternates between two contours"):
        ev.trace(Ra * A * Rb * A * Ra * Rb, {a: (-1, 1), b: (1, -1)}, nodes, {}, vec, scal, {})
    with pytest.raises(NotImplementedError, match="two contour variables"):
        ev.trace((A + a * b * sr.I(d)).inverse() * A, {a: (-1, 1), b: (1, -1)}, nodes, {}, vec, scal, {})
    # a well-formed two-contour trace: Tr[(A + a)⁻¹ (A + b)⁻¹] with A = I₃ is 3/((1 + a)(1 + b))
    T = ev.trace(Ra * Rb, {a: (-1, 1), b: (1, -1)}, nodes, {}, vec, scal, {})
    assert np.allclose(T, 3 / np.outer(1 + nodes, 1 + nodes), rtol=1e-14)
    with pytest.raises(NotImplementedError, match="3 dimensions"):
        curve(sr.deterministic_equivalent(ONE_CORE_RISK),
              dict(Sigma=np.ones((3, 3, 2)), n=6, w=np.ones(3), sigma2=0.25, t=3, lr=0.5), over=("t",))
