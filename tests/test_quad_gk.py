"""Gauss–Kronrod levels of the finite-interval quadrature (issue 17 item 1).

Each level is the ``N``-point Gauss–Legendre rule and its ``(2N+1)``-point
Kronrod extension on the same evaluations: the Kronrod sum is returned, the
difference ``|K − G|`` (the error of ``G``) is the reported estimate. Levels
are chosen from the integrand's convergence rate, an inner integral starts at
the level it needed at the previous outer level, and κ is solved once per
node across levels and integrals. Checked against

* published nodes/weights (QUADPACK's G7–K15) and polynomial exactness;
* an independent hand-written NumPy evaluation of the sampling map's mean and
  variance (κ by its own Newton, spectral sums as matrix products) on a fixed
  200-point (200×200) Gauss rule — ``benchmarks/quadrature.py::fixed`` — at
  n < d, n = d, n > d and spectra scaled by 1e-6 and 1e3 (≤ 1e-9 relative);
* the rule it replaces (Gauss–Legendre doubling) and the κ node cache off.
"""
import importlib.util
import os

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.numerics import quadrature

_spec = importlib.util.spec_from_file_location(
    "_quad_gk_bench", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "quadrature.py"))
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)
fixed = _bench.fixed          # the hand-written NumPy reference

n, d = sr.dims("n d")
s2, sT2 = sr.scalar("sigma2"), sr.scalar("sigmaT2")
Sigma = sr.Covariance("Sigma", d)
v, x = sr.Vector("v", d), sr.Vector("x", d)
Sh = sr.sample_covariance(sr.GaussianData("X", n, Sigma), ddof=0)
MAP = sr.sqrt(Sh + s2 * sr.I(d)) * sr.power(Sh + sT2 * sr.I(d), -sp.Rational(1, 2))

_DE = {}


def compiled(name):
    if name not in _DE:
        expr = {"mean": v.T * MAP * x, "mode": sr.var(v.T * MAP * x)}[name]
        _DE[name] = sr.deterministic_equivalent(expr).compile()
    return _DE[name]


def setting(D, ratio, scale=1.0, seed=1):
    rng = np.random.default_rng(seed)
    s = 1.0 / np.arange(1, D + 1)
    xT = np.sqrt(s + 10.0) * rng.standard_normal(D)
    vv = np.eye(D)[D // 10]
    m = int(ratio * D)
    bind = dict(Sigma=scale * s, n=m, v=vv, x=np.sqrt(scale) * xT, sigma2=0.1 * scale, sigmaT2=10.0 * scale)
    ref = lambda name: fixed(name, scale * s, m, vv, np.sqrt(scale) * xT, 0.1 * scale, 10.0 * scale, N=200)
    return bind, ref


# ------------------------------------------------------------------ the rule
def test_kronrod_matches_published_g7_k15():
    """QUADPACK's qk15 (Piessens et al. 1983): the largest node and its weights."""
    u, W, um = quadrature.gauss_kronrod_nodes(7)
    x = 2 * u - 1
    assert len(x) == 15
    assert x[-1] == pytest.approx(0.991455371120812639206854697526329, abs=1e-15)
    assert 2 * W[-1, 0] == pytest.approx(0.022935322010529224963732008058970, abs=1e-15)
    assert 2 * W[-2, 1] == pytest.approx(0.129484966168869693270611432679082, abs=1e-15)   # G7 at 0.949…
    assert x[-2] == pytest.approx(0.949107912342758524526189684047851, abs=1e-15)


@pytest.mark.parametrize("N", quadrature.GK_LADDER)
def test_kronrod_extension_reuses_gauss_nodes_and_is_exact(N):
    u, W, um = quadrature.gauss_kronrod_nodes(N)
    assert len(u) == 2 * N + 1 and np.allclose(u + um, 1.0, rtol=0, atol=1e-15)
    assert np.all(W[:, 0] > 0) and np.all(np.diff(u) > 0)
    g, wg, _ = quadrature.gauss_nodes(N)
    gauss = W[:, 1] != 0
    assert gauss.sum() == N and np.allclose(u[gauss], g, rtol=0, atol=1e-15)
    assert np.allclose(W[gauss, 1], wg, rtol=1e-14, atol=0)
    # Kronrod: degree 3N + 1; Gauss: 2N − 1 (Legendre polynomials on (0, 1): ∫P_k = 0, k ≥ 1)
    for k in (0, 1, 2 * N - 1, 2 * N + 1, 3 * N + 1):
        P = np.polynomial.legendre.Legendre.basis(k)(2 * u - 1)
        assert abs(W[:, 0] @ P - (k == 0)) <= 1e-13
    P = np.polynomial.legendre.Legendre.basis(2 * N)(2 * u - 1)
    assert abs(W[:, 1] @ P) > 1e-6        # Gauss is not exact there: |K − G| measures G's error


# ------------------------------------------------------------------ against an independent evaluation
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e3])
def test_variance_matches_independent_numpy(ratio, scale):
    """n < d, n = d, n > d, scaled spectra: ≤ 1e-9 relative to the hand-written
    200×200-point evaluation, and the reported (value-level) error is an upper
    bound of the true one up to rounding."""
    bind, ref = setting(48, ratio, scale)
    res = compiled("mode").solve(**bind)
    want = ref("mode")
    got = float(res.value)
    assert res.success
    assert abs(got - want) <= 1e-9 * abs(want)
    assert abs(got - want) <= float(np.max(res["quad_error"])) + 1e-12 * abs(want)


@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("scale", [1.0, 1e-6, 1e3])
def test_mean_matches_independent_numpy(ratio, scale):
    bind, ref = setting(48, ratio, scale)
    res = compiled("mean").solve(**bind)
    want = ref("mean")
    assert res.success and abs(float(res.value) - want) <= 1e-9 * abs(want)


@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_pairs_match_gauss_doubling(ratio, monkeypatch):
    """The rule before (Gauss–Legendre levels 12·2^i, each a full rule) gives the same value."""
    bind, _ = setting(40, ratio)
    new = float(compiled("mode")(**bind))
    with monkeypatch.context() as m:
        m.setattr(quadrature, "FINITE_RULES", ("gauss", "finite"))
        old = float(compiled("mode")(**bind))
    assert new == pytest.approx(old, rel=1e-11)


def test_node_cache_changes_nothing(monkeypatch):
    """κ taken from the node cache (solved at another level or integral) equals κ solved afresh."""
    bind, _ = setting(40, 2.0)
    cached = float(compiled("mode")(**bind))
    with monkeypatch.context() as m:
        m.setattr(quadrature, "_group_key", lambda s, ext, bound, N: (None, None))
        fresh = float(compiled("mode")(**bind))
    assert cached == pytest.approx(fresh, rel=1e-13)


# ------------------------------------------------------------------ the levels
def test_inner_integral_level_is_chosen_once(monkeypatch):
    """After the first outer level, the inner integral is evaluated at one
    level per outer level (where it converged before), and the final levels
    are the same for the outer and the inner integral (the same θ-integrand
    no level of the old doubling sequence is repeated per outer level."""
    bind, _ = setting(40, 2.0)
    calls = []
    orig = quadrature.IntegralNode._sum

    def spy(self, level, lims, env, bound, n_, opts):
        calls.append((self.var.name, len(level[0]), n_))
        return orig(self, level, lims, env, bound, n_, opts)

    f = compiled("mode")
    with monkeypatch.context() as m:
        m.setattr(quadrature.IntegralNode, "_sum", spy)
        res = f.solve(**bind)
    assert res.success
    outer = [c for c in calls if c[2] == 1]
    inner = [c for c in calls if c[2] > 1]
    # the inner calls after the first outer level: one per later outer level, at the converged level
    first = outer[0][1]
    later = [c for c in inner if c[2] != first]
    assert len(later) == len(outer) - 1
    assert all(c[1] == inner[len(inner) - len(later) - 1][1] for c in later)


def test_cancelling_integrals_are_refined_to_the_value_tolerance(monkeypatch):
    """x* = μ + M(x − μ) read out along v: vᵀμ + vᵀMx − vᵀMμ, two integrals that
    cancel in part (the diffusion recipe's map with a known mean, σ² = 0.01).
    Each integral stops at quad_rtol of itself; the value-level error then
    exceeds quad_rtol of the value, and the integrals are evaluated again with
    tighter targets until it does not (without that: not converged)."""
    from symrmt.numerics import plan as plan_mod
    from symrmt.numerics.result import ConvergenceError
    mu = sr.Vector("mu", d)
    f = sr.deterministic_equivalent(v.T * mu + v.T * MAP * x - v.T * MAP * mu).compile()
    D = 40
    rng = np.random.default_rng(0)
    s = 1.0 / np.arange(1, D + 1)
    muv = rng.standard_normal(D) / np.sqrt(D)
    xT = muv + np.sqrt(s + 100.0) * rng.standard_normal(D)
    vv = np.eye(D)[4]
    b = dict(Sigma=s, mu=muv, x=xT, v=vv, n=2 * D, sigma2=np.array([0.01, 0.1]), sigmaT2=100.0)
    want = np.array([vv @ muv + fixed("mean", s, 2 * D, vv, xT, a, 100.0, N=200)
                     - fixed("mean", s, 2 * D, vv, muv, a, 100.0, N=200) for a in (0.01, 0.1)])
    res = f.solve(**b, options=dict(quad_rtol=1e-6))
    assert res.success
    assert np.all(np.abs(res.value - want) <= 1e-6 * np.abs(want))
    assert np.all(res["quad_error"] <= 1e-6 * np.abs(res.value))
    with monkeypatch.context() as m:
        m.setattr(plan_mod.ValueNode, "VALUE_RETRIES", 0)
        with pytest.raises(ConvergenceError):
            f.solve(**b, options=dict(quad_rtol=1e-6))
