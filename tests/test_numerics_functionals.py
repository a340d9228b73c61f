"""Numerics: spectral functionals of non-commuting matrices, bases, quadrature."""
import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad

import symrmt as sr
from symrmt.equivalence.result import DeterministicEquivalent, unknown_symbol
from symrmt.numerics.examples import (fractional_power, resolvent_trace, two_point, two_point_dense,
                                      wishart_group)
from symrmt.objects import Form, Tr


@pytest.fixture(scope="module")
def f2():
    return two_point().compile()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    d = 40
    s = rng.uniform(0.1, 2.0, d)
    A = rng.standard_normal((d, d))           # not symmetric, does not commute with Σ
    w = rng.standard_normal(d)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return dict(d=d, s=s, A=A, w=w, Q=Q)


def test_two_point_noncommuting_against_dense(f2, data):
    s, A, w = data["s"], data["A"], data["w"]
    lam1, lam2 = np.array([0.05, 0.5]), np.array([[0.1], [1.0], [4.0]])
    res = f2.solve(Sigma=s, A=A, w=w, n=70, lam1=lam1, lam2=lam2)
    assert res.value.shape == (3, 2) and res.success
    for idx in np.ndindex(res.value.shape):
        ref = two_point_dense(np.diag(s), A, w, res.x["kappa_1"][idx], res.x["kappa_2"][idx])
        assert res.value[idx] == pytest.approx(ref, rel=1e-12)


def test_sigma_bound_full_is_diagonalised_and_others_rotated(f2, data):
    s, A, w, Q = data["s"], data["A"], data["w"], data["Q"]
    S = Q @ np.diag(s) @ Q.T
    kw = dict(n=70, lam1=0.2, lam2=np.array([0.3, 2.0]))
    diag = f2.solve(Sigma=s, A=A, w=w, **kw)
    full = f2.solve(Sigma=S, A=Q @ A @ Q.T, w=Q @ w, **kw)     # the same operators in another basis
    np.testing.assert_allclose(full.value, diag.value, rtol=1e-11)
    # a 1-D binding of A is diagonal in the common basis, i.e. in the basis where S is full
    res = f2.solve(Sigma=S, A=np.arange(data["d"], dtype=float), w=w, **kw)
    for i in range(2):
        ref = two_point_dense(S, np.diag(np.arange(data["d"], dtype=float)), w,
                              res.x["kappa_1"][i], res.x["kappa_2"][i])
        assert res.value[i] == pytest.approx(ref, rel=1e-11)


def test_mpmath_chain_and_rotation_agree_with_numpy(f2, data):
    fm = two_point().compile(backend="mpmath", dps=25)
    d = 6
    s, A, w, Q = data["s"][:d], data["A"][:d, :d], data["w"][:d], data["Q"]
    Q6, _ = np.linalg.qr(Q[:d, :d])
    for Sig in (s, Q6 @ np.diag(s) @ Q6.T):
        kw = dict(Sigma=Sig, A=A, w=w, n=9, lam1=0.3, lam2=np.array([0.2, 1.0]))
        np.testing.assert_allclose(np.array(fm(**kw), dtype=float), f2(**kw), rtol=1e-12)


def test_dense_fallback_inverse_of_a_noncommuting_sum(data):
    """Tr[(Σ + κB)⁻¹] and wᵀ(Σ + κB)⁻¹w with B full: batched dense linear algebra."""
    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma, B, w = sr.Covariance("Sigma", d), sr.Covariance("B", d), sr.Vector("w", d)
    X = sr.GaussianData("X", n, Sigma)
    k = unknown_symbol("kappa")
    g, _ = wishart_group(k, lam, Sigma, (n,))
    M = (Sigma + k * B).inverse()
    value = Tr(M) / d + Form(w.T * M * w) + Form(w.T * sr.power(B, sp.Rational(1, 3)) * w)
    f = DeterministicEquivalent(expr=sr.ntr(X.T * X / n), value=value, groups=[g]).compile()
    s, w_ = data["s"], data["w"]
    G = data["A"] @ data["A"].T / data["d"]
    res = f.solve(Sigma=s, B=G, w=w_, n=70, lam=np.array([0.1, 1.0, 5.0]))
    gb, Ub = np.linalg.eigh(G)
    B13 = (Ub * gb ** (1 / 3)) @ Ub.T
    for i, kk in enumerate(res.x["kappa"]):
        Mi = np.linalg.inv(np.diag(s) + kk * G)
        assert res.value[i] == pytest.approx(np.trace(Mi) / data["d"] + w_ @ Mi @ w_ + w_ @ B13 @ w_, rel=1e-12)


def test_repeated_eigenvalues_are_merged_without_changing_the_sum():
    f = resolvent_trace().compile()
    s = np.repeat([0.5, 1.0, 3.0], [300, 200, 100])
    lam = np.logspace(-2, 1, 5)
    merged = f(Sigma=s, n=400, lam=lam)
    jitter = f(Sigma=s * (1 + 1e-15 * np.arange(600) / 600), n=400, lam=lam)   # all distinct
    np.testing.assert_allclose(merged, jitter, rtol=1e-13)


def test_integral_fractional_power_all_nodes_at_once():
    """(1/d)Tr[(Σ̂+a)^{-1/2}] as ∫ over resolvents; κ solved at every node in one call."""
    f = fractional_power().compile()
    f1 = resolvent_trace().compile()
    s = np.linspace(0.5, 2, 50)
    a = np.array([0.01, 0.1, 1.0])
    res = f.solve(Sigma=s, n=80, a=a)
    # |I_h − I_2h|: the error of the coarser rule, a pessimistic bound for I_h
    assert res.success and res.quad_error.max() < 1e-9
    for i, ai in enumerate(a):
        # independent check: adaptive quadrature of the one-point equivalent, split at t = 1
        g = lambda t: t ** -0.5 / np.pi * f1(Sigma=s, n=80, lam=ai + t)
        ref = quad(g, 0, 1, epsabs=0, epsrel=1e-13, limit=200)[0] + \
            quad(g, 1, np.inf, epsabs=0, epsrel=1e-13, limit=200)[0]
        assert res.value[i] == pytest.approx(ref, rel=1e-13)
    # isotropic check against the Marchenko–Pastur law: ∫ (x+a)^{-1/2} ρ(x) dx
    q, a0 = 0.5, 0.3
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    mp = quad(lambda x: (x + a0) ** -0.5 * np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * q * x), lo, hi,
              epsabs=0, epsrel=1e-13, limit=200)[0]
    assert f(Sigma=np.ones(100), n=200, a=a0) == pytest.approx(mp, rel=1e-10)


def test_contour_integral_of_a_spectral_function():
    """(1/d)Tr e^{−Σ̂} = ∮ e^{−z} (1/d)Tr(z − Σ̂)⁻¹ dz/2πi, κ continued along z(θ) = c + r e^{iθ}."""
    n, d = sr.dims("n d")
    c, r = sr.scalar("c"), sr.scalar("r")
    th = sp.Symbol("theta", real=True)
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    k = unknown_symbol("kappa")
    z = c + r * sp.exp(sp.I * th)
    g, R = wishart_group(k, -z, Sigma, (n,))           # (z − Σ̂)⁻¹ = −G(λ = −z) ≃ −(κ/λ)R
    value = sp.Integral(sp.exp(-z) * (k / z) * Tr(R) / d * r * sp.exp(sp.I * th) / (2 * sp.pi), (th, 0, 2 * sp.pi))
    f = DeterministicEquivalent(expr=sr.ntr(X.T * X / n), value=value, groups=[g]).compile()
    res = f.solve(Sigma=np.ones(100), n=200, c=1.5, r=np.array([1.6, 2.5]))
    q = 0.5
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    mp = quad(lambda x: np.exp(-x) * np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * q * x), lo, hi,
              epsabs=0, epsrel=1e-13)[0]
    assert res.success
    np.testing.assert_allclose(res.value, mp, rtol=1e-12, atol=1e-13)


def test_functionals_inside_matrix_coefficients():
    """Tr[(Σ + (Tr[ΣR]/n) I)⁻¹], wᵀ(Tr[BR] Σ + B)⁻¹w …: inner functionals are evaluated first."""
    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    S, B, w = sr.Covariance("Sigma", d), sr.Covariance("B", d), sr.Vector("w", d)
    k = unknown_symbol("kappa")
    g, R = wishart_group(k, lam, S, (n,))
    Id = sp.Identity(d)
    value = (Tr((S + Tr(S * R) / n * Id).inverse()) + Form(w.T * (Tr(B * R) * S + B).inverse() * w)
             + Tr(S * (Tr(R) * Id + Form(w.T * R * w) * S).inverse()))
    f = DeterministicEquivalent(expr=sr.ntr(S), value=value, groups=[g]).compile()
    rng = np.random.default_rng(0)
    s, M, wv = rng.uniform(0.5, 2, 8), rng.standard_normal((8, 8)), rng.standard_normal(8)
    Bm = M @ M.T
    res = f.solve(Sigma=s, B=Bm, w=wv, n=12, lam=np.array([0.1, 1.0]))
    for i, kk in enumerate(res.x["kappa"]):
        Sm, I8 = np.diag(s), np.eye(8)
        Rm = np.linalg.inv(Sm + kk * I8)
        ref = (np.trace(np.linalg.inv(Sm + np.trace(Sm @ Rm) / 12 * I8)) + wv @ np.linalg.inv(np.trace(Bm @ Rm) * Sm + Bm) @ wv
               + np.trace(Sm @ np.linalg.inv(np.trace(Rm) * I8 + (wv @ Rm @ wv) * Sm)))
        assert res.value[i] == pytest.approx(ref, rel=1e-13)


def test_quad_rtol_trades_levels_for_accuracy():
    f = fractional_power().compile()
    s, a = np.linspace(0.5, 2, 50), np.array([0.01, 0.1, 1.0])
    tight = f.solve(Sigma=s, n=80, a=a)
    loose = f.solve(Sigma=s, n=80, a=a, quad_rtol=1e-4)
    assert loose.success
    # two levels agreeing to 1e-4: the finer one is much closer than that
    assert np.max(np.abs(loose.value / tight.value - 1)) < 1e-4
    assert np.all(loose.quad_error >= tight.quad_error)
    with pytest.raises(ValueError, match="quad_rtol"):
        f.solve(Sigma=s, n=80, a=a, quad_rtol=0)


def test_periodicity_is_decided_without_simplify_on_forms():
    """The quadrature picks the midpoint rule only for integrands periodic over
    their interval; the test is numerical (random points, 30 digits) so that
    integrands with products of forms do not hang in simplify."""
    from symrmt.numerics.quadrature import _periodic
    t, x = sp.symbols("t x", real=True)
    v = sr.Vector("v", sr.dims("d"))
    F = Form(v.T * sr.Covariance("Sigma", sr.dims("d")) * v)
    assert _periodic(sp.cos(t) ** 2 * F + x, t, 2 * sp.pi)
    assert _periodic(sp.exp(sp.I * t) * F ** 2 / (2 + sp.cos(t)), t, 2 * sp.pi)
    assert not _periodic(t * sp.cos(t) * F, t, 2 * sp.pi)
    assert not _periodic(sp.tan(t / 2) * F, t, sp.pi / 2)
