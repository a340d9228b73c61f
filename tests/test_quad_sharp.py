"""The diffusion recipe's sharp σ² grid (h_quad): the sampling map's variance
across training sets, ``Var[vᵀx*]`` with ``x* = μ + (Σ̂+σ²)^{1/2}(Σ̂+σ_T²)^{−1/2}(x_T − μ)``
(mean known), on the trajectory grid ``σ² = 14.7 … 1e-3`` at ``σ_T² = 100``
(``derivations/diffusion_consistency.py --quick``) — a double integral whose
integrand sharpens as ``σ²/σ_T² → 0``.

Checked against

* the hand-written NumPy evaluation (``benchmarks/quadrature.py::fixed``: κ
  by its own Newton, spectral sums as matrix products, a fixed 200×200
  Gauss–Legendre rule; converged to ~1e-13 on this grid: the 1000- and
  2000-point rules agree with it to 2e-13) — ≤ 1e-9 relative, the reported
  error an upper bound of the true one;
* the path before the fix (direct sums over runs of grid points, every point
  to the sharpest point's level): the same nodes give the same value;
* dense products / sorts for the two kernels of the fix (tensor sums over runs
  of outer points, distinct κ nodes over runs of rows).
"""
import importlib.util
import os

import numpy as np
import pytest

import symrmt as sr
from symrmt.numerics import kernels, quadrature

_spec = importlib.util.spec_from_file_location(
    "_quad_sharp_bench", os.path.join(os.path.dirname(__file__), "..", "benchmarks", "quadrature.py"))
_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bench)

SIGMA2 = _bench.SHARP_SIGMA2
_F = {}


def compiled(case="known"):
    if case not in _F:
        de = sr.deterministic_equivalent(_bench.RecipeMap().expression("map_var", case))
        _F[case] = (de, de.compile())
    return _F[case]


def setting(D, sigma2=SIGMA2):
    s, mu, xT, v = _bench.recipe_setting(D)
    bind = dict(Sigma=s, mu=mu, v=v, x=xT, n=D, sigma2=sigma2, sigmaT2=100.0)
    ref = np.array([_bench.fixed("mode", s, D, v, xT - mu, a, 100.0, N=200) for a in np.atleast_1d(sigma2)])
    return bind, ref


@pytest.mark.parametrize("rtol", [None, 1e-6])
def test_sharp_grid_matches_independent_numpy(rtol):
    """Default tolerance: ≤ 1e-9 relative at every σ² of the grid (and the
    reported value-level error bounds the true one); the recipe's
    ``quad_rtol = 1e-6``: within it."""
    bind, ref = setting(24)
    res = compiled()[1].solve(**bind, options=dict(quad_rtol=rtol))
    got = np.asarray(res.value, dtype=float)
    assert res.success
    rel = np.abs(got - ref) / np.abs(ref)
    assert np.all(rel <= (1e-9 if rtol is None else rtol)), rel
    assert np.all(np.abs(got - ref) <= np.asarray(res["quad_error"]) + 1e-12 * np.abs(ref))


def test_points_stop_at_their_own_level(monkeypatch):
    """Each grid point stops at the Gauss–Kronrod level where it converged: the
    outer integrals' later levels run at fewer points than the grid holds
    (the smooth σ² = 14.7 converges at the first), and the values equal
    those of each point solved on its own to the tolerance."""
    bind, ref = setting(24)
    calls = []
    orig = quadrature.IntegralNode._sum

    def spy(self, level, lims, env, bound, n_, opts):
        calls.append((id(self), n_))
        return orig(self, level, lims, env, bound, n_, opts)

    f = compiled()[1]
    with monkeypatch.context() as m:
        m.setattr(quadrature.IntegralNode, "_sum", spy)
        res = f.solve(**bind)
    outer = {i for i, n_ in calls if n_ == len(SIGMA2)}
    later = [n_ for i, n_ in calls if i in outer and n_ < len(SIGMA2)]
    assert outer and later and min(later) < len(SIGMA2)
    alone = np.array([float(f(**dict(bind, sigma2=a))) for a in SIGMA2[[0, -1]]])
    assert np.allclose(np.asarray(res.value)[[0, -1]], alone, rtol=1e-9, atol=0)


def test_same_nodes_same_value_as_before_the_fix(monkeypatch):
    """The products over runs of outer points and the κ nodes sorted per run
    change only the order of the sums: with every point run to the same
    levels (``STOP_PER_POINT = False``), the path before (direct sums, one
    sort of all nodes) gives the same value to rounding."""
    bind, _ = setting(12, SIGMA2[-2:])
    f = compiled()[1]
    with monkeypatch.context() as m:
        m.setattr(quadrature, "STOP_PER_POINT", False)
        new = np.asarray(f.solve(**bind, options=dict(quad_rtol=1e-6)).value)
        m.setattr(kernels, "_row_runs", lambda *a: None)
        m.setattr(quadrature, "_row_runs", lambda *a: None)
        old = np.asarray(f.solve(**bind, options=dict(quad_rtol=1e-6)).value)
    assert np.allclose(new, old, rtol=1e-12, atol=0)


# ------------------------------------------------------------------ the kernels of the fix
@pytest.mark.parametrize("sizes", [(3, 3, 3), (2, 5, 1), (4,), (1, 1, 2, 2)])
def test_run_products_match_dense_sums(sizes):
    """``Σ_k A[p,k] B[g(p)·q + j, k]`` over runs of outer points (equal runs:
    one batched product; unequal: one product per run) against the direct sum."""
    rng = np.random.default_rng(len(sizes))
    q, d = 5, 7
    P, G = sum(sizes), len(sizes)
    A, B = rng.standard_normal((P, d)), rng.standard_normal((G * q, d))
    first = np.cumsum([0, *sizes[:-1]])
    g = np.repeat(np.arange(G), sizes)
    want = np.einsum("pk,pjk->pj", A, B.reshape(G, q, d)[g])
    assert np.allclose(kernels._run_products(A, B, first, q), want, rtol=1e-14, atol=1e-14)


def test_row_runs_and_distinct_nodes():
    rng = np.random.default_rng(3)
    q = 4
    rows = rng.standard_normal((3, q))
    Z = np.repeat(rows, [2, 3, 1], axis=0)
    assert np.array_equal(kernels._row_runs([Z.reshape(-1)], len(Z), q), [0, 2, 5])
    # all rows distinct: the factor over the nodes would not repeat — declined
    assert kernels._row_runs([rng.standard_normal(6 * q)], 6, q) is None
    for z in (Z.reshape(-1), np.repeat(np.arange(3.0), 4)[rng.permutation(12)]):
        u, first, inv = quadrature._distinct(z, q)
        assert np.array_equal(u, np.unique(z)) and np.array_equal(z[first], u) and np.array_equal(u[inv], z)


@pytest.mark.slow
def test_sharp_grid_estimated_mean_matches_fixed_tanh_sinh():
    """Mean estimated (``sr.sample_mean``, ``ddof=1``), d = 40 as in the recipe:
    against the engine's integrand on a fixed tanh-sinh tensor grid
    (``derivations/_common.py::integrate_equivalent``, h = 1/16), ≤ 1e-9."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "derivations"))
    from _common import integrate_equivalent
    de, f = compiled("estimated")
    bind, _ = setting(40)
    bb = {k: v for k, v in bind.items() if k != "options"}
    want = integrate_equivalent(de, bb).value
    res = f.solve(**bb)
    assert res.success
    assert np.all(np.abs(np.asarray(res.value) - want) <= 1e-9 * np.abs(want))
