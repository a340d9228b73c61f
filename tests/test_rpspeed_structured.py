"""Random projections of pooled data: the fast solve of the law ``projected_pooled``.

* The structured Newton evaluation (``numerics/laws/projected_pooled._Structured``:
  one inverse ``R = (M + κ)⁻¹`` per point for every trace of the residuals and
  of the Jacobian, hand chain rule ``∂R/∂u = −R ∂A/∂u R``) equals the lowered
  SymPy residuals and Jacobian (``sp.diff`` through ``Tr``, every contraction
  evaluated on its own) at **every** Newton evaluation of whole solves:
  Σ₁ diagonal and Σ₂ full (non-commuting), both diagonal, K = 3 groups.
* Values with the fast path equal those of the former path (the switches
  off: ``projected_pooled.STRUCTURED``, ``projected_pooled.LOG_STEP``,
  ``kernels.SHARE_DENSE``) to ≤ 1e-12 relative, p < d and p > d, several λ.
* Where the structured evaluation disagrees with the lowered one at its first
  check it is dropped (the lowered path solves; the value is unchanged).
* The value's contractions share one inverse per chunk of points
  (``kernels._dense_chains``): counted, and equal under forced chunking.

The model is small (``ntr(FGFᵀΣ₁)`` plus a form through two resolvents) so
that the derivation stays short; the recipe model at d = 100, 400 is timed and
compared in ``benchmarks/projected.py``.
"""
import numpy as np
import pytest

import symrmt as sr
import symrmt.numerics.kernels as KN
import symrmt.numerics.laws.projected_pooled as PP
from symrmt.numerics.backend import NumpyBackend


def _model(K):
    d, p = sr.dims("d p")
    lam = sr.scalar("lam")
    ns = sr.dims(" ".join(f"n{k + 1}" for k in range(K)))
    ns = ns if isinstance(ns, (tuple, list)) else (ns,)
    Ss = [sr.Covariance(f"Sigma{k + 1}", d) for k in range(K)]
    F = sr.RandomFeatures("F", d, p)
    Zs = [sr.GaussianData(f"X{k + 1}", n, S) * F for k, (n, S) in enumerate(zip(ns, Ss))]
    core = Zs[0].T * Zs[0] / ns[0]
    for Z, n in zip(Zs[1:], ns[1:]):
        core = core + Z.T * Z / n
    G = (core + lam * sr.I(p)).inverse()
    w = sr.Vector("w", d)
    Q = F * G * F.T
    expr = sr.ntr(Q * Ss[0]) + w.T * Q * Ss[-1] * Q * w
    return sr.deterministic_equivalent(expr)


@pytest.fixture(scope="module")
def f2():
    de = _model(2)
    assert de.groups[0].kind == "projected_pooled"
    return de.compile()


def _bind(d, p, lam, full2=True, K=2, seed=0):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    b = dict(Sigma1=np.linspace(0.2, 1.0, d), n1=int(0.8 * d), p=p, lam=lam, w=rng.standard_normal(d) / np.sqrt(d))
    b["Sigma2"] = Q @ np.diag(np.linspace(0.1, 2.0, d)) @ Q.T if full2 else np.arange(1, d + 1) ** -0.5
    b["n2"] = d // 2
    if K == 3:
        b.update(Sigma3=np.linspace(1.0, 0.05, d) ** 2, n3=d // 3)
    return b


@pytest.fixture
def both_paths(monkeypatch):
    """Every Newton evaluation: structured and lowered, compared (row scale ``Σ_j |J_ij|(1+|u_j|)``)."""
    seen = []
    orig = PP.ProjectedPooledSystem._eval

    def _eval(self, env, bound, idx, deltas, kappa, z):
        lo = self._eval_lowered(env, bound, idx, deltas, kappa, z)
        st = self._eval_structured(env, bound, idx, deltas, kappa, z)
        assert st is not None, "the structured evaluation was not used"
        u = np.abs(np.column_stack([np.broadcast_to(np.asarray(v, float), (len(idx),))
                                    for v in list(deltas) + [kappa]]))
        scale = np.abs(lo[1]) @ (1 + u)[..., None]                  # (m, k, 1)
        assert np.all(np.abs(st[0] - lo[0]) <= 1e-10 * (scale[..., 0] + np.abs(lo[0]))), (st[0], lo[0])
        assert np.all(np.abs(st[1] - lo[1]) <= 1e-10 * scale), (st[1], lo[1])
        seen.append(len(idx))
        return orig(self, env, bound, idx, deltas, kappa, z)

    monkeypatch.setattr(PP.ProjectedPooledSystem, "_eval", _eval)
    return seen


@pytest.mark.parametrize("full2,p", [(True, 12), (True, 60), (False, 12), (False, 60)])
def test_structured_residuals_and_jacobian_equal_the_lowered_ones(f2, both_paths, full2, p):
    f2(**_bind(30, p, np.array([1e-3, 0.05, 1.0]), full2=full2))
    assert sum(both_paths) >= 6


@pytest.mark.slow
def test_structured_equals_lowered_with_three_groups(both_paths):
    f3 = _model(3).compile()
    v = f3(**_bind(24, 30, np.array([0.01, 0.5]), K=3))
    assert np.all(np.isfinite(v)) and sum(both_paths) >= 4


@pytest.mark.parametrize("p", [15, 60])
def test_values_equal_the_former_path(f2, monkeypatch, p):
    lams = np.array([1e-3, 0.05, 1.0])
    for full2 in (True, False):
        b = _bind(30, p, lams, full2=full2)
        new = f2(**b)
        for flag in ("STRUCTURED", "LOG_STEP"):
            monkeypatch.setattr(PP, flag, False)
        monkeypatch.setattr(KN, "SHARE_DENSE", False)
        old = f2(**b)
        for flag in ("STRUCTURED", "LOG_STEP"):
            monkeypatch.setattr(PP, flag, True)
        monkeypatch.setattr(KN, "SHARE_DENSE", True)
        np.testing.assert_allclose(new, old, rtol=1e-12, atol=0)


def _fresh(f):
    """Forget the structured evaluators of ``f``'s plans (rebuilt and checked again on the next solve)."""
    for plan in f._plans.values():
        for s in plan.systems:
            s.__dict__.pop("_st", None)


def test_a_structured_evaluation_that_disagrees_is_dropped(f2, monkeypatch):
    b = _bind(20, 10, np.array([0.02, 0.4]))
    monkeypatch.setattr(PP, "STRUCTURED", False)
    ref = f2(**b)
    monkeypatch.setattr(PP, "STRUCTURED", True)
    good = PP._Structured.__call__
    monkeypatch.setattr(PP._Structured, "__call__",
                        lambda self, *a: (lambda F, J: (F, 1.001 * J))(*good(self, *a)))
    _fresh(f2)
    try:
        np.testing.assert_allclose(f2(**b), ref, rtol=1e-12, atol=0)
        (system,) = [s for plan in f2._plans.values() for s in plan.systems if "_st" in s.__dict__]
        assert system._st is False
    finally:
        _fresh(f2)


def test_the_value_inverts_once_per_chunk(f2, monkeypatch):
    b = _bind(30, 15, np.linspace(0.01, 1.0, 7))
    ref = f2(**b)
    calls = []
    inv = NumpyBackend.inv
    monkeypatch.setattr(NumpyBackend, "inv", staticmethod(lambda a: (calls.append(a.shape), inv(a))[1]))
    np.testing.assert_allclose(f2(**b), ref, rtol=1e-14, atol=0)
    assert len(calls) == 1 and calls[0] == (7, 30, 30), calls     # the Newton steps invert in _Structured
    calls.clear()
    monkeypatch.setattr(KN, "_DENSE_CHUNK_ELEMENTS", 3 * 30 * 30)                # chunks of 3 points
    np.testing.assert_allclose(f2(**b), ref, rtol=1e-14, atol=0)
    assert [c[0] for c in calls] == [3, 3, 1], calls


@pytest.mark.slow
@pytest.mark.parametrize("p_ratio", [0.5, 2.0])
def test_recipe_model_values_equal_the_former_path_at_d100(monkeypatch, p_ratio):
    """The recipes' model (``_pooled.PooledRidge.rp_expressions``, group-1 error) at
    d = 100, Σ₂ full and not commuting with Σ₁: fast path = former path ≤ 1e-12."""
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "derivations"))
    from _pooled import PooledRidge
    f = sr.deterministic_equivalent(PooledRidge().rp_expressions()["E_1 (random projections)"]).compile()
    d = 100
    rng = np.random.default_rng(1)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    w1 = rng.standard_normal(d) / np.sqrt(d)
    b = dict(Sigma1=np.arange(1, d + 1) ** -1.0, Sigma2=Q @ np.diag(np.linspace(0.1, 1.0, d)) @ Q.T,
             n1=150, n2=50, lam=np.array([1e-3, 0.05, 1.0]), w1=w1, w2=w1 + 0.6 * rng.standard_normal(d) / np.sqrt(d),
             s1=0.1, s2=0.2, p=int(p_ratio * d))
    new = f(**b)
    for flag in ("STRUCTURED", "LOG_STEP"):
        monkeypatch.setattr(PP, flag, False)
    monkeypatch.setattr(KN, "SHARE_DENSE", False)
    np.testing.assert_allclose(new, f(**b), rtol=1e-12, atol=0)
