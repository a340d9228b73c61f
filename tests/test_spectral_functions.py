"""Fractional powers and spectral functions of Σ̂ (issue 6): integrals of
one- and two-point equivalents, against Monte Carlo of the same expressions
and against an independent limit."""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr

from .mc_check import check

n, d = sr.dims("n d")
a, b = sr.scalar("a"), sr.scalar("b")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
half = sp.Rational(1, 2)
ratio_map = sr.sqrt(Sh + a * sr.I(d)) * sr.power(Sh + b * sr.I(d), -half)

D = 400
spec = np.linspace(0.1, 2.0, D)

EXPRS = {
    "(Σ̂+a)^-1/2": sr.ntr(sr.power(Sh + a * sr.I(d), -half)),
    "Σ̂^1/2": sr.ntr(sr.sqrt(Sh)),
    "(Σ̂+a)^1/2(Σ̂+b)^-1/2": sr.ntr(ratio_map),
}


SHIFTS = {"(Σ̂+a)^-1/2": dict(a=0.3), "Σ̂^1/2": {}, "(Σ̂+a)^1/2(Σ̂+b)^-1/2": dict(a=0.3, b=2.0)}
# Σ̂^{1/2} at n = d is left out here: there κ(z) ~ √z as z → 0; it is tested against the
# Marchenko–Pastur law and a dense Monte Carlo in tests/test_n_equals_d.py
CASES = [(name, r) for name in EXPRS for r in (0.5, 1.0, 2.0) if not (name == "Σ̂^1/2" and r == 1.0)]


@pytest.mark.parametrize("name, ratio", CASES)
def test_fractional_traces_against_monte_carlo(name, ratio):
    # c = 2: O(1/d) relative finite-size allowance of first-order equivalents
    Dn = 100
    check(EXPRS[name], d=Dn, trials=60, k=4.0, c=2.0, Sigma=np.linspace(0.1, 2.0, Dn), n=int(ratio * Dn),
          **SHIFTS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name, ratio", CASES)
def test_fractional_traces_against_monte_carlo_d400(name, ratio):
    check(EXPRS[name], d=D, trials=60, k=4.0, c=2.0, Sigma=spec, n=int(ratio * D), **SHIFTS[name])


def test_square_root_at_n_equal_d_converges():
    """n = d: κ ~ √z at the quadrature's small-z nodes (issue 13); isotropic value is
    E√x under Marchenko–Pastur with ratio 1, ∫₀⁴ √(4−x)/(2π) dx = 8/(3π)."""
    f = sr.deterministic_equivalent(EXPRS["Σ̂^1/2"]).compile()
    assert np.isfinite(f(Sigma=spec[:50], n=50))
    assert abs(float(f(Sigma=np.ones(50), n=50)) / (8 / (3 * np.pi)) - 1) < 1e-9


def test_several_shifts_in_one_call():
    f = sr.deterministic_equivalent(EXPRS["(Σ̂+a)^1/2(Σ̂+b)^-1/2"]).compile()
    grid = np.array([[0.05, 0.5], [1.0, 4.0]])
    out = f(Sigma=spec[:100], n=200, a=grid[:, :1], b=grid[:, 1:])
    assert out.shape == (2, 1) and np.all(np.isfinite(out))


def test_quadrature_error_is_reported_and_small():
    f = sr.deterministic_equivalent(EXPRS["(Σ̂+a)^-1/2"]).compile()
    res = f.solve(Sigma=spec[:100], n=50, a=0.3)
    assert res.success and float(np.max(res["quad_error"])) < 1e-10 * abs(float(res.value))


def test_sampling_map_tends_to_square_root_as_b_grows():
    """√b (Σ̂+a)^{1/2}(Σ̂+b)^{−1/2} → (Σ̂+a)^{1/2} as b → ∞: the ratio
    representation (branch cut [−b, −a]) against the single-power one. The
    error is O(1/b); Richardson extrapolation over b ∈ {1e5, 1e6} removes it
    and the two routes must then agree to 1e-9."""
    f_map = sr.deterministic_equivalent(EXPRS["(Σ̂+a)^1/2(Σ̂+b)^-1/2"]).compile()
    f_sqrt = sr.deterministic_equivalent(sr.ntr(sr.sqrt(Sh + a * sr.I(d)))).compile()
    bind = dict(Sigma=spec[:80], n=120, a=0.3)
    target = float(f_sqrt(**bind))
    bs = np.array([1e3, 1e4, 1e5, 1e6])
    vals = np.array([np.sqrt(bb) * float(f_map(b=bb, **bind)) for bb in bs])
    errs = np.abs(vals - target) / target
    assert np.all(np.diff(np.log10(errs[:3])) == pytest.approx(-1.0, abs=0.05))   # O(1/b)
    b1, b2 = bs[-2:]
    extrapolated = (b2 * vals[-1] - b1 * vals[-2]) / (b2 - b1)
    assert abs(extrapolated - target) / target < 1e-9


def test_isotropic_inverse_square_root_matches_marchenko_pastur_integral():
    from scipy.integrate import quad
    q, a0 = 0.5, 0.3
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    mp = quad(lambda x: (x + a0) ** -0.5 * np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * q * x), lo, hi,
              epsabs=0, epsrel=1e-13, limit=200)[0]
    f = sr.deterministic_equivalent(EXPRS["(Σ̂+a)^-1/2"]).compile()
    assert float(f(Sigma=np.ones(50), n=100, a=a0)) == pytest.approx(mp, rel=1e-10)


def test_variance_of_sampling_map_form_against_monte_carlo():
    """Var[vᵀ(Σ̂+a)^{1/2}(Σ̂+b)^{−1/2}ξ]: a double integral of the
    second-order (two Wick pairings) rule."""
    v, xi = sr.Vector("v", d), sr.Vector("xi", d)
    Dn = 80
    rng = np.random.default_rng(4)
    # c = 6: variances carry a larger O(1/d) correction (see test_twopoint)
    check(sr.var(v.T * ratio_map * xi), d=Dn, trials=1500, k=4.0, c=6.0, Sigma=np.linspace(0.1, 2, Dn),
          n=2 * Dn, a=0.3, b=2.0, v=rng.standard_normal(Dn), xi=rng.standard_normal(Dn))
