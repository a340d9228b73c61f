"""Pooled ridge on random projections ``XF`` (``X = vstack(X₁, X₂)``, groups
with non-commuting ``Σ₁, Σ₂`` and different teachers), theory by
``derivations/_pooled.ProjectedPooled``: the engine's pooled derivation read
in feature space given ``F`` (stage X), then ``F(FᵀMF + λ)⁻¹Fᵀ ≃ (M + κ)⁻¹``
and its source derivative ``QAQ ≃ R(A + γTr[RAR])R`` (stage F).

Checks: (a) one group (``Σ₁ = Σ₂``, ``w₁ = w₂``, ``s₁ = s₂``) equals the
engine's own random-feature ridge formula, derived from
``(Fâ − w)ᵀΣ(Fâ − w)`` by ``sr.deterministic_equivalent``, to 1e-9 relative,
for p < d (the unseen part ``r = wᵀΣ_⊥w`` non-zero) and p > d; (b) an
independent dense NumPy Monte Carlo drawing ``X₁, X₂, ε, F``
(``_pooled.dense_group_mc``), tolerance ``4·sem + 4·|th|/d`` (k = 4, c = 4),
at d = 40 in the default run and d = 80, 160 (the O(1/d) trend) behind
``--runslow``; (c) a word outside the alternating ``FᵀΣF``/resolvent class
raises ``NotImplementedError`` naming it."""
import pathlib
import sys

import numpy as np
import pytest
import sympy as sp

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
from _pooled import rp_problem, PooledRidge, ProjectedPooled, dense_group_mc  # noqa: E402

import symrmt as sr  # noqa: E402

K, C = 4.0, 4.0


@pytest.fixture(scope="module")
def theory():
    m = PooledRidge()
    ex = m.expressions()
    m.des = {k: sr.deterministic_equivalent(ex[k]) for k in ("E_1", "E_2")}
    return m, {1: ProjectedPooled(m, "E_1"), 2: ProjectedPooled(m, "E_2")}


def _problem(d, seed, p_ratio):
    return rp_problem(d, p_ratio, seed=seed)


def test_one_group_equals_the_engines_random_feature_ridge(theory):
    _, P = theory
    n, d, p = sr.dims("n d p")
    Sig, w = sr.Covariance("Sigma", d), sr.Vector("w", d)
    lam, s = sr.scalar("lam"), sr.scalar("s")
    X, F = sr.GaussianData("X", n, Sig), sr.RandomFeatures("F", d, p)
    Z = X * F
    a = (Z.T * Z / n + lam * sr.I(p)).inverse() * Z.T * (X * w + sr.GaussianNoise("eps", n, s)) / n
    rf = sr.deterministic_equivalent((F * a - w).T * Sig * (F * a - w)).compile()
    rng = np.random.default_rng(0)
    for dd, pp, nn in ((40, 20, 60), (40, 80, 30), (30, 30, 90)):
        ev = np.linspace(0.1, 1, dd)
        wv = rng.standard_normal(dd) / np.sqrt(dd)
        ref = float(rf(Sigma=ev, w=wv, lam=0.05, s=0.2, n=nn, p=pp))
        b = dict(Sigma1=ev, Sigma2=ev, w1=wv, w2=wv, s1=0.2, s2=0.2, n1=nn // 3, n2=nn - nn // 3, lam=0.05, p=pp)
        for g in (1, 2):
            assert abs(P[g](b) - ref) <= 1e-9 * ref, (dd, pp, nn, g, P[g](b), ref)


def _against_mc(P, d, trials, p_ratio):
    b = _problem(d, 1, p_ratio)
    mc = dense_group_mc(b, trials, seed=7, p=b["p"])
    out = {}
    for g in (1, 2):
        th = P[g](b)
        mean, sem = mc[g]
        assert abs(mean - th) <= K * sem + C * abs(th) / d, (d, p_ratio, g, th, mean, sem)
        out[g] = (th, mean, sem)
    return out


@pytest.mark.parametrize("p_ratio", [0.5, 2.0])
def test_two_groups_against_dense_monte_carlo(theory, p_ratio):
    _against_mc(theory[1], 40, 600, p_ratio)


@pytest.mark.slow
@pytest.mark.parametrize("p_ratio", [0.5, 2.0])
def test_two_groups_against_dense_monte_carlo_trend(theory, p_ratio):
    errs = {}
    for d, trials in ((80, 800), (160, 400)):
        out = _against_mc(theory[1], d, trials, p_ratio)
        errs[d] = max(abs(m - t) / t for t, m, _ in out.values())
    print("relative errors by d:", errs)


def test_words_outside_the_class_are_refused_by_name(theory):
    m, P = theory
    pp = P[1]
    bad = sr.Tr(m.Sigma1 * m.Sigma2 * pp.R_expr)          # two FᵀΣF side by side: FFᵀ left bare
    with pytest.raises(NotImplementedError, match="Sigma1"):
        pp._parse(sp.sympify(bad))
