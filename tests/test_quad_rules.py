"""Finite-interval quadrature (issue 17 item 1): Gauss–Legendre levels with an
error estimate, spectral sums over (point × node) tensors as matrix products,
and groups solved once across integrals, checked against the adaptive
tanh-sinh rule (the previous default, at a tight tolerance), a closed form and
scale invariance."""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.numerics import kernels, quadrature

n, d = sr.dims("n d")
s2, sT2 = sr.scalar("sigma2"), sr.scalar("sigmaT2")
Sigma = sr.Covariance("Sigma", d)
v, x = sr.Vector("v", d), sr.Vector("x", d)
X = sr.GaussianData("X", n, Sigma)
Sh = sr.sample_covariance(X, ddof=0)
half = sp.Rational(1, 2)
MAP = sr.sqrt(Sh + s2 * sr.I(d)) * sr.power(Sh + sT2 * sr.I(d), -half)

_DE = {}


def compiled(name):
    """The sampling map's expectation (single integral) and variance (double integrals)."""
    if name not in _DE:
        expr = {"mean": v.T * MAP * x, "var": sr.var(v.T * MAP * x)}[name]
        _DE[name] = sr.deterministic_equivalent(expr).compile()
    return _DE[name]


def bindings(D, ratio, scale=1.0, seed=0, sigma2=0.1, sigmaT2=10.0):
    """Power-law spectrum, a mid-spectrum read-out mode and an input of the
    noised data's size; ``scale`` multiplies the spectrum and noise levels (and
    ``x`` by ``√scale``): the variance then scales exactly by ``scale``."""
    rng = np.random.default_rng(seed)
    s = np.arange(1, D + 1, dtype=float) ** -1.0
    xT = np.sqrt(s + sigmaT2) * rng.standard_normal(D)
    return dict(Sigma=scale * s, v=np.eye(D)[D // 10], x=np.sqrt(scale) * xT, n=int(ratio * D),
                sigma2=sigma2 * scale, sigmaT2=sigmaT2 * scale)


def adaptive(f, b, monkeypatch):
    """The value by adaptive tanh-sinh alone (the rule before issue 17), at a tight tolerance."""
    with monkeypatch.context() as m:
        m.setattr(quadrature, "FINITE_RULES", ("finite",))
        return f.solve(**b, options=dict(quad_rtol=1e-13))


# ------------------------------------------------------------------ the rule
def test_gauss_nodes_integrate_polynomials_exactly():
    for N in (12, 48):
        u, w, um = quadrature.gauss_nodes(N)
        assert np.allclose(u + um, 1.0, rtol=0, atol=1e-15) and np.all((u > 0) & (u < 1))
        for k in (0, 1, 2 * N - 1):
            assert np.dot(w, u ** k) == pytest.approx(1.0 / (k + 1), rel=1e-13)


def test_error_estimate_is_the_last_difference():
    """Not extrapolated: e_k²/e_{k−1} = 1e-12 here would hide a lucky agreement."""
    I = np.array([1.0])
    assert quadrature.error_estimate([np.array([4e-4]), np.array([2e-8])], I)[0] == pytest.approx(2e-8)


def test_single_integral_matches_closed_form_at_large_n():
    """n → ∞: κ(z) = z(1 + O(1/n)) and E[vᵀx*] → vᵀ(Σ+σ²)^{1/2}(Σ+σ_T²)^{−1/2}x (dense NumPy)."""
    b = bindings(60, 1.0)
    s = b["Sigma"]
    closed = float(np.sum(b["v"] * np.sqrt((s + b["sigma2"]) / (s + b["sigmaT2"])) * b["x"]))
    vals = [float(compiled("mean")(**dict(b, n=m))) for m in (10 ** 7, 10 ** 8)]
    # O(1/n): Richardson over the two sizes removes it
    assert abs((10 * vals[1] - vals[0]) / 9 - closed) <= 1e-9 * abs(closed)


# ------------------------------------------------------------------ against the adaptive rule
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e3])
def test_sampling_map_variance_matches_adaptive_rule(ratio, scale, monkeypatch):
    """n < d, n = d, n > d and scaled spectra: the default rule (Gauss–Legendre,
    tensor sums, shared groups) equals adaptive tanh-sinh to 1e-9, its
    reported error is within the default tolerance, and the variance scales
    exactly (relative accuracy independent of the spectrum's scale)."""
    f = compiled("var")
    b = bindings(40, ratio, scale)
    new = f.solve(**b)
    ref = adaptive(f, b, monkeypatch)
    assert new.success and ref.success
    val, want = float(new.value), float(ref.value)
    assert abs(val - want) <= 1e-9 * abs(want)
    assert float(np.max(new["quad_error"])) <= 1e-5 * abs(val)
    if scale != 1.0:
        unit = float(f(**bindings(40, ratio, 1.0)))
        assert abs(val / scale - unit) <= 1e-9 * abs(unit)


def test_sharp_integrand_is_not_passed_off_as_converged(monkeypatch):
    """σ² = 0.01, σ_T² = 100 (the diffusion recipe's setting): the θ-integrand has
    a near-singularity at θ ≈ 0.01i, where Gauss–Legendre's pre-asymptotic error
    oscillates (two levels agree by chance); the value must still be exact."""
    f = compiled("var")
    b = bindings(40, 2.0, sigma2=0.01, sigmaT2=100.0)
    want = float(adaptive(f, b, monkeypatch).value)
    for opts in ({}, {"quad_rtol": 1e-6}):
        res = f.solve(**b, options=opts)
        assert res.success
        tol = opts.get("quad_rtol", 1e-9)
        assert abs(float(res.value) - want) <= tol * abs(want)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
def test_sampling_map_mean_matches_adaptive_rule(ratio, monkeypatch):
    f = compiled("mean")
    b = bindings(40, ratio)
    assert float(f(**b)) == pytest.approx(float(adaptive(f, b, monkeypatch).value), rel=1e-9)


def test_grid_of_noise_levels_matches_pointwise(monkeypatch):
    """A grid of σ²: the inner κ differs per grid point, so the tensor sums
    dedupe by values (or decline); every point equals its own solve."""
    f = compiled("var")
    b = bindings(30, 2.0)
    grid = np.array([0.05, 0.1, 0.4])
    out = f(**dict(b, sigma2=grid))
    for i, g in enumerate(grid):
        assert out[i] == pytest.approx(float(f(**dict(b, sigma2=g))), rel=1e-12)


def test_tensor_sums_equal_direct_sums(monkeypatch):
    """The matrix-product spectral sums are the same sums in another order."""
    f = compiled("var")
    b = bindings(50, 1.0)
    fast = float(f(**b))
    with monkeypatch.context() as m:
        m.setattr(kernels._TensorSum, "__call__", lambda self, *a, **k: None)
        direct = float(f(**b))
    assert fast == pytest.approx(direct, rel=1e-13)


def test_endpoint_singularity_falls_back_to_tanh_sinh():
    """(Σ̂+a)^{−1/3}: its θ-integrand has an endpoint singularity (cos^{1/3}), where
    Gauss–Legendre converges algebraically: the estimate must not pass it off
    as converged; tanh-sinh takes over and the value is exact for Σ̂ → Σ (large n)."""
    a = sr.scalar("a")
    f = sr.deterministic_equivalent(sr.ntr(sr.power(Sh + a * sr.I(d), -sp.Rational(1, 3)))).compile()
    s = np.linspace(0.2, 2.0, 30)
    res = f.solve(Sigma=s, n=10 ** 8, a=0.3)
    assert res.success
    assert float(res.value) == pytest.approx(np.mean((s + 0.3) ** (-1 / 3)), rel=1e-7)


@pytest.mark.slow
def test_split_disagreement_of_two_copies_matches_adaptive_rule(monkeypatch):
    """½|x*₁ − x*₂|² of two models on independent halves, derived from the two
    copies (40 integrals, one κ equation): the case where an extrapolated
    error estimate (e_k²/e_{k−1}) passed Gauss–Legendre off as converged with a
    6e-6 relative error (σ² = 0.01, σ_T² = 100, d = 40)."""
    X1, X2 = sr.GaussianData("X1", n / 2, Sigma), sr.GaussianData("X2", n / 2, Sigma)

    def smap(Xh):
        Sh_ = sr.sample_covariance(Xh, ddof=0)
        return sr.sqrt(Sh_ + s2 * sr.I(d)) * sr.power(Sh_ + sT2 * sr.I(d), -half) * x

    diff = smap(X1) - smap(X2)
    f = sr.deterministic_equivalent(diff.T * diff / 2).compile()
    b = {k: val for k, val in bindings(40, 2.0, sigma2=0.01, sigmaT2=100.0).items() if k != "v"}
    want = float(adaptive(f, b, monkeypatch).value)
    assert abs(float(f(**b)) - want) <= 1e-9 * abs(want)
