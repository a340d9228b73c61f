"""Numerics: solving the self-consistent equations (real branch, mpmath, complex)."""
import mpmath
import numpy as np
import pytest
from scipy.optimize import brentq

from symrmt.numerics import ConvergenceError, SolveResult
from symrmt.numerics.examples import isotropic_kappa, one_point, resolvent_trace


@pytest.fixture(scope="module")
def f_one():
    return one_point().compile()


@pytest.fixture(scope="module")
def f_res():
    return resolvent_trace().compile()


@pytest.mark.parametrize("d,n", [(200, 100), (100, 200), (150, 150)])
def test_isotropic_closed_form(f_one, d, n):
    s, lam = 1.7, np.logspace(-6, 2, 40)
    res = f_one.solve(Sigma=np.full(d, s), n=n, lam=lam)
    assert isinstance(res, SolveResult) and res.success and res.converged.all()
    kappa = isotropic_kappa(s, d / n, lam)
    # n = d with λ → 0 (κ ≈ √(λs)) loses digits to cancellation in 1 − df/n
    tol = 1e-13 if d != n else 1e-10
    np.testing.assert_allclose(res.x["kappa"], kappa, rtol=tol)
    np.testing.assert_allclose(res.value, kappa / lam * s / (s + kappa), rtol=tol)
    assert np.abs(res.residuals["kappa[0]"]).max() < 1e-12 * max(1, lam.max())
    assert (res.x["kappa"] >= lam).all()       # κ ≥ λ: the physical branch


def test_broadcast_over_lam_and_n(f_one):
    s = np.linspace(0.1, 2, 60)
    lam = np.logspace(-3, 1, 7)
    n = np.array([[30], [60], [240]])
    out = f_one(Sigma=s, n=n, lam=lam)
    assert out.shape == (3, 7)
    for i in range(3):
        np.testing.assert_allclose(out[i], f_one(Sigma=s, n=int(n[i, 0]), lam=lam), rtol=1e-14)


def test_ridgeless_limit_underparametrised_side(f_one):
    # n < d: κ(0⁺) = κ₀ > 0 with df(κ₀) = n
    s = np.linspace(0.2, 3, 100)
    # the value itself diverges at λ = 0 (reported as undefined, not returned as inf); κ is solved
    res = f_one.solve(Sigma=s, n=40, lam=0.0, options={"raise_on_failure": False})
    assert not res.converged.any()
    k0 = brentq(lambda k: (s / (s + k)).sum() - 40, 1e-12, 100, xtol=1e-15, rtol=1e-15)
    assert res.x["kappa"] == pytest.approx(k0, rel=1e-12)


def test_random_features_against_independent_bisection():
    f = one_point(features=True).compile()
    s = np.arange(1, 301) ** -1.0
    n, p = 200, 120
    lam = np.logspace(-5, 1, 30)
    res = f.solve(Sigma=s, n=n, p=p, lam=lam)
    df = lambda k: (s / (s + k)).sum()
    kmin = brentq(lambda k: df(k) - min(n, p), 1e-14, 1e3, xtol=1e-300, rtol=1e-15)
    ref = [brentq(lambda k: k * (1 - df(k) / n) * (1 - df(k) / p) - l, kmin, l + s.sum() * (1 / n + 1 / p),
                  xtol=1e-300, rtol=1e-15, maxiter=500) for l in lam]
    np.testing.assert_allclose(res.x["kappa"], ref, rtol=1e-13)
    assert (res.x["kappa"] > kmin).all()


def _exp_correlation(n, rho):
    i = np.arange(n)
    return rho ** np.abs(i[:, None] - i[None, :])


def test_separable_residuals_and_reductions(f_res):
    f = resolvent_trace(correlated=True).compile()
    s = np.arange(1, 151) ** -1.0
    n = 100
    Km = _exp_correlation(n, 0.5)
    lam = np.logspace(-4, 1, 25)
    res = f.solve(Sigma=s, n=n, K=np.linalg.eigvalsh(Km), lam=lam)
    assert res.success
    nu = res.x["nu"]
    # residuals of both equations, relative to the size of their terms
    assert np.abs(res.residuals["kappa,nu[0]"]).max() <= 1e-12
    assert (np.abs(res.residuals["kappa,nu[1]"]) / (n * lam)).max() <= 1e-12
    assert (nu > 0).all() and (res.x["kappa"] > 0).all()
    # K bound as a full matrix (diagonalised once) gives the same answer
    np.testing.assert_allclose(f(Sigma=s, n=n, K=Km, lam=lam), res.value, rtol=1e-11)
    # K = I is the iid case
    np.testing.assert_allclose(f(Sigma=s, n=n, K=np.ones(n), lam=lam), f_res(Sigma=s, n=n, lam=lam), rtol=1e-13)


def test_mpmath_isotropic_to_45_digits():
    f = one_point().compile(backend="mpmath", dps=50)
    d, n, s = 60, 100, 1.25
    lam = np.array([1e-3, 0.3, 7.0])
    res = f.solve(Sigma=np.full(d, s), n=n, lam=lam)
    assert res.success
    with mpmath.workdps(60):
        q, S = mpmath.mpf(d) / n, mpmath.mpf(s)
        for i, l in enumerate(lam):
            L = mpmath.mpf(l)          # the binding is the float l, exactly
            b = S - L - q * S
            k = 2 * L * S / (b + mpmath.sqrt(b * b + 4 * L * S))
            assert abs(res.x["kappa"][i] - k) / k < mpmath.mpf(10) ** -45
            assert abs(res.value[i] - k / L * S / (S + k)) < mpmath.mpf(10) ** -45


def test_mpmath_matches_numpy_on_a_spectrum(f_one):
    fm = one_point().compile(backend="mpmath", dps=30)
    s = np.linspace(0.3, 2.0, 8)
    lam = np.array([0.01, 1.0])
    np.testing.assert_allclose(np.array(fm(Sigma=s, n=5, lam=lam), dtype=float),
                               f_one(Sigma=s, n=5, lam=lam), rtol=1e-13)


def test_complex_lambda_isotropic_stieltjes(f_res):
    # m(z) of Marchenko–Pastur (Σ = sI, q = d/n): κ solves the quadratic at λ = −z
    s, d, n = 1.0, 100, 200
    z = np.array([0.3 + 0.2j, 1.0 + 0.01j, 2.5 + 1j, -0.5 + 0.1j, 1.2 - 0.3j])
    res = f_res.solve(Sigma=np.full(d, s), n=n, lam=-z)
    assert res.success
    lam = -z
    b = s - lam - (d / n) * s
    roots = np.stack([(-b + np.sqrt(b * b + 4 * lam * s)) / 2, (-b - np.sqrt(b * b + 4 * lam * s)) / 2])
    # the Stieltjes branch: sign(Im κ) = sign(Im λ)
    pick = np.where(np.sign(roots[0].imag) == np.sign(lam.imag), roots[0], roots[1])
    np.testing.assert_allclose(res.x["kappa"], pick, rtol=1e-12)
    m = res.value
    assert (np.sign(m.imag) == np.sign(z.imag)).all()
    np.testing.assert_allclose(res.eta["lam"], z.imag)       # above the floor: η used as given


def test_complex_on_the_real_axis_reports_eta(f_res):
    res = f_res.solve(Sigma=np.full(50, 1.0), n=100, lam=np.array([-1.0 + 0j, 0.5 + 0j]))
    # inside the spectrum a floor η ≈ 1e-9 × scale is used; at λ > 0 the real branch
    scale = (1 + np.sqrt(0.5)) ** 2
    assert res.eta["lam"][0] == pytest.approx(1e-9 * scale)
    assert res.eta["lam"][1] == 0.0
    assert res.z["lam"][0] == pytest.approx(-1.0 - 1e-9 * scale * 1j)
    assert res.value[0].imag > 0


def test_nonconvergence_raises_with_diagnostics(f_one):
    s = np.linspace(0.1, 2, 40)
    lam = np.logspace(-3, 1, 5)
    with pytest.raises(ConvergenceError, match=r"not converged at 5 of 5 .*lam=0\.001.*kappa = .*residual") as e:
        f_one(Sigma=s, n=20, lam=lam, maxiter=2)
    assert not e.value.result.converged.any()
    out = f_one(Sigma=s, n=20, lam=lam, maxiter=2, on_failure="nan")
    assert np.isnan(out).all()
    res = f_one.solve(Sigma=s, n=20, lam=lam, maxiter=2, raise_on_failure=False)
    assert not res.success and "not converged" in res.message
    assert np.isfinite(res.x["kappa"]).all()          # the last iterate, flagged by .converged


def test_undefined_value_is_reported_not_silent():
    import sympy as sp
    import symrmt as sr
    from symrmt.equivalence.result import DeterministicEquivalent, unknown_symbol
    from symrmt.numerics.examples import wishart_group
    n, d = sr.dims("n d")
    lam, c = sr.scalar("lam"), sr.scalar("c")
    S = sr.Covariance("Sigma", d)
    k = unknown_symbol("kappa")
    g, _ = wishart_group(k, lam, S, (n,))
    f = DeterministicEquivalent(expr=sr.ntr(S), value=sp.sin(c) / c * k, groups=[g]).compile()
    with pytest.raises(ConvergenceError, match=r"value is NaN \(undefined, e.g. 0/0\) at 1 solved .*c=0.0"):
        f(Sigma=np.ones(3), n=5, lam=0.1, c=[0.0, 1.0])
    out = f(Sigma=np.ones(3), n=5, lam=0.1, c=[0.0, 1.0], on_failure="nan")
    assert np.isnan(out[0]) and np.isfinite(out[1])
