"""Audit of the pooled recipes against the papers' formulas (h_paudit).

The engine's derived per-group errors of pooled ridge (``derivations/_pooled.py``,
``sr.deterministic_equivalent`` of the model as written) against the formulas of
*Strong model collapse* (Dohmatob, Feng, Subramonian, Kempe, arXiv:2410.04840) and
*An effective theory of bias amplification* (Subramonian, Bell, Sagun, Dohmatob,
arXiv:2410.17263), coded independently in plain NumPy in
``derivations/_paper_pooled.py`` (no symrmt): relative agreement ≤ 1e-9 at several
settings, non-commuting covariances included; the paper formulas themselves
against an independent dense NumPy Monte Carlo at two sizes (tolerance
``4·sem + 4·|th|/d``); their limits (one group, ``p → ∞``, large ``n``)."""
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
import _paper_pooled as pp  # noqa: E402
from _pooled import PooledRidge, ProjectedPooled, eigen_bindings, teacher  # noqa: E402

REL = 1e-9


@pytest.fixture(scope="module")
def model():
    m = PooledRidge()
    m.derive(log=lambda *a: None)
    m.rp_theory = {k: ProjectedPooled(m, k) for k in ("E_1", "E_2")}
    return m


def _power_law(d, ratio, p2, lam=0.05, flat=False):
    s = eigen_bindings(d, 1.0)
    N = int(ratio * d)
    n2 = max(int(round(p2 * N)), 1)
    w = teacher(d, 1)
    return dict(Sigma1=s, Sigma2=eigen_bindings(d, 0.5) if flat else s, n1=N - n2, n2=n2, lam=lam, w1=w,
                w2=w + teacher(d, 2, 0.5), s1=0.1, s2=0.2)


def _rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("setting", ["power_law_flat", "noncommuting_1", "noncommuting_2", "n_below_d"])
def test_general_form_equals_engine(model, setting):
    """Both groups' errors: engine vs the general (effective-noise) form."""
    b = {"power_law_flat": lambda: _power_law(80, 2.0, 0.3, flat=True),
         "noncommuting_1": lambda: pp.random_noncommuting(30, 1),
         "noncommuting_2": lambda: pp.random_noncommuting(30, 2),
         "n_below_d": lambda: dict(pp.random_noncommuting(30, 3), n1=8, n2=7, lam=0.02)}[setting]()
    pap = pp.pooled_errors(**b)
    for g, key in ((0, "E_1"), (1, "E_2")):
        assert _rel(float(model.risk(b, key)), pap[g]) <= REL, (setting, key)


@pytest.mark.parametrize("ratio,p2,full", [(1.0, 0.1, False), (4.0, 0.5, True), (1e4, 0.01, False)])
def test_strong_model_collapse_theorem_equals_engine(model, ratio, p2, full):
    """Σ₁ = Σ₂: the paper's ``E + ζ`` (and its parts) vs the engine averaged over
    ``w₂ = w₁ ± δ`` (the paper's shift has mean zero) and at ``δ = 0``."""
    if full:
        b = pp.random_noncommuting(30, 4)
        b["Sigma2"] = b["Sigma1"]
        b.update(n1=int(ratio * 30 * (1 - p2)), n2=int(ratio * 30 * p2))
    else:
        b = _power_law(60, ratio, p2)
    w1, dl = b["w1"], b["w2"] - b["w1"]
    plus, minus = (float(model.risk(dict(b, w2=w1 + s * dl), "E_1")) for s in (1.0, -1.0))
    e0 = float(model.risk(dict(b, w2=w1), "E_1"))
    th = pp.smc_theorem(b["Sigma1"], w1, dl, b["s1"], b["s2"], b["n1"], b["n2"], b["lam"])
    assert _rel(0.5 * (plus + minus), th["E_test"]) <= REL
    assert _rel(e0, th["Bias"] + th["Var"]) <= REL
    assert _rel(0.5 * (plus + minus) - e0, th["zeta"]) <= 1e-7          # a difference: cancellation


def test_general_form_reduces_to_the_theorem_and_to_one_group():
    """Pure NumPy: formula (2) averaged over ±δ with Σ₁ = Σ₂ is the Theorem; with
    group 2 identical to group 1 it is the one-group ridge risk at n₁ + n₂."""
    b = _power_law(50, 3.0, 0.2)
    dl = b["w2"] - b["w1"]
    sym = 0.5 * sum(pp.pooled_errors(**dict(b, w2=b["w1"] + s * dl))[0] for s in (1.0, -1.0))
    th = pp.smc_theorem(b["Sigma1"], b["w1"], dl, b["s1"], b["s2"], b["n1"], b["n2"], b["lam"])["E_test"]
    assert _rel(sym, th) <= 1e-12
    same = dict(b, w2=b["w1"], s2=b["s1"])
    one = pp.single_group_error(b["Sigma1"], b["w1"], b["s1"], b["n1"] + b["n2"], b["lam"])
    assert _rel(pp.pooled_errors(**same)[0], one) <= 1e-12
    # large-n floor of the Theorem: p₂² c²(Δ), c²(Δ) = Tr[ΣΔ] = δᵀΣδ
    big = pp.smc_theorem(b["Sigma1"], b["w1"], dl, 0.1, 0.1, 99e8, 1e8, 1e-9)
    assert _rel(big["E_test"], 0.01 ** 2 * float(dl @ (b["Sigma1"] * dl))) <= 1e-3


def test_bias_amplification_disparities_equal_engine(model):
    """Separate models (each group's own ridge) and ODD/EDD/ADD: engine vs formulas."""
    for seed in (1, 5):
        b = pp.random_noncommuting(30, seed)
        joint_e = [float(model.risk(b, k)) for k in ("E_1", "E_2")]
        sep = [dict(Sigma1=b[f"Sigma{g}"], n1=b[f"n{g}"], lam=b["lam"], w1=b[f"w{g}"], s1=b[f"s{g}"]) for g in (1, 2)]
        sep_e = [float(model.risk(v, "E_real_only")) for v in sep]
        sep_p = [pp.single_group_error(v["Sigma1"], v["w1"], v["s1"], v["n1"], v["lam"]) for v in sep]
        for a, c in zip(sep_e, sep_p):
            assert _rel(a, c) <= REL
        de = pp.disparities(joint_e, sep_e)
        dp = pp.disparities(pp.pooled_errors(**b), sep_p)
        for a, c in zip(de, dp):
            assert abs(a - c) <= REL * max(abs(c), 1e-3)


@pytest.mark.parametrize("setting", ["p_half_d", "p_twice_d", "noncommuting"])
def test_random_projection_formula_equals_two_stage_theory(model, setting):
    """Formula (5) (no ridgeless root) vs the recipes' two-stage theory, both groups."""
    if setting == "noncommuting":
        b = dict(pp.random_noncommuting(30, 2), p=20)
    else:
        b = dict(_power_law(80, 2.0, 0.3, lam=0.05, flat=True), p=40 if setting == "p_half_d" else 160)
    pap = pp.rp_errors(**b)
    for g, key in ((0, "E_1"), (1, "E_2")):
        assert _rel(float(model.rp_theory[key](b)), pap[g]) <= REL, (setting, key)


def test_random_projection_formula_limits():
    """``p → ∞``: formula (5) becomes formula (2); F scaled to ``N(0, 1/d)`` at
    ``λ·p/d`` is the same predictor (conditional reference, same draws)."""
    b = pp.random_noncommuting(30, 1)
    big = pp.rp_errors(**b, p=1e12)
    for a, c in zip(big, pp.pooled_errors(**b)):
        assert _rel(a, c) <= 1e-8
    x = pp.conditional_rp_errors(**b, p=20, draws=2, seed=1)
    y = pp.conditional_rp_errors(**dict(b, lam=b["lam"] * 20 / 30), p=20, draws=2, seed=1, f_scale="d")
    assert pp.lam_from_paper_scale(b["lam"] * 20 / 30, 30, 20) == pytest.approx(b["lam"], rel=1e-15)
    for g in (1, 2):
        assert _rel(x[g][0], y[g][0]) <= 1e-10


def test_paper_formula_against_dense_monte_carlo():
    """The general form against plain NumPy draws (non-commuting, two sizes; both
    groups; tolerance 4·sem + 4·|th|/d)."""
    for d, trials in ((40, 200), (80, 100)):
        rng = np.random.default_rng(d)
        Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
        b = dict(Sigma1=np.diag(np.linspace(0.2, 1.5, d)), Sigma2=Q @ np.diag(np.geomspace(0.05, 2, d)) @ Q.T,
                 w1=teacher(d, 3), w2=teacher(d, 3) + teacher(d, 4, 0.6), s1=0.1, s2=0.3, n1=int(1.5 * d),
                 n2=d // 2, lam=0.05)
        th = pp.pooled_errors(**b)
        mc = pp.dense_pooled_mc(**b, trials=trials, seed=d + 1)
        for g in (1, 2):
            m, se = mc[g]
            assert abs(m - th[g - 1]) <= 4 * se + 4 * abs(th[g - 1]) / d, (d, g, th[g - 1], m, se)


def test_random_projection_formula_against_dense_monte_carlo():
    """Formula (5) against plain NumPy draws of X and F (non-commuting, p < d and
    p > d, two sizes; tolerance 4·sem + 4·|th|/d)."""
    for d, trials in ((40, 200), (80, 100)):
        rng = np.random.default_rng(d + 7)
        Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
        base = dict(Sigma1=np.diag(np.linspace(0.2, 1.5, d)), Sigma2=Q @ np.diag(np.geomspace(0.05, 2, d)) @ Q.T,
                    w1=teacher(d, 5), w2=teacher(d, 5) + teacher(d, 6, 0.6), s1=0.1, s2=0.3, n1=int(1.5 * d),
                    n2=d // 2, lam=0.05)
        for p in (d // 2, 2 * d):
            th = pp.rp_errors(**base, p=p)
            mc = pp.dense_pooled_mc(**base, trials=trials, seed=d + p, p=p)
            for g in (1, 2):
                m, se = mc[g]
                assert abs(m - th[g - 1]) <= 4 * se + 4 * abs(th[g - 1]) / d, (d, p, g, th[g - 1], m, se)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="group sizes"):
        pp.pooled_errors(np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0.1, 0.1, 0, 4, 0.1)
    with pytest.raises(ValueError, match="lam"):
        pp.pooled_errors(np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0.1, 0.1, 3, 4, 0.0)
    with pytest.raises(ValueError, match="f_scale"):
        pp.conditional_rp_errors(np.ones(3), np.ones(3), np.ones(3), np.ones(3), 0.1, 0.1, 3, 4, 0.1, 2, 1, 0,
                                 f_scale="n")
    with pytest.raises(ValueError, match="covariance"):
        pp.pooled_errors(np.ones((3, 2)), np.ones(3), np.ones(3), np.ones(3), 0.1, 0.1, 3, 4, 0.1)


def test_strong_model_collapse_theorem_against_dense_monte_carlo_two_sizes():
    """The Theorem (isotropic Σ, n = 10d, p₂ ∈ {0.01, 0.1}) against plain NumPy draws
    averaged over ``w₂ = w₁ ± δ``, at d = 50 and 100 (tolerance 4·sem + 4·|th|/d)."""
    for d in (50, 100):
        s, w, dl = np.ones(d), teacher(d, 1), teacher(d, 2, np.sqrt(0.1))
        for p2 in (0.01, 0.1):
            N = 10 * d
            n2 = int(p2 * N)
            th = pp.smc_theorem(s, w, dl, 0.1, 0.1, N - n2, n2, 1e-3)["E_test"]
            base = dict(Sigma1=s, Sigma2=s, w1=w, s1=0.1, s2=0.1, n1=N - n2, n2=n2, lam=1e-3)
            m1, m2 = (pp.dense_pooled_mc(**base, w2=w + sg * dl, trials=60, seed=d + i)[1]
                      for i, sg in enumerate((1.0, -1.0)))
            mean, sem = 0.5 * (m1[0] + m2[0]), 0.5 * np.hypot(m1[1], m2[1])
            assert abs(mean - th) <= 4 * sem + 4 * th / d, (d, p2, th, mean, sem)
