"""Audit of the diffusion and SGD recipes against the papers' own formulas, coded independently in
``derivations/_paper_diffusion.py`` (arXiv:2602.02908, its project page and toolkit ``rmt_core``) and
``derivations/_paper_sgd.py`` (arXiv:2502.05074) — plain NumPy, no symrmt there.

Engine vs paper: relative difference ≤ 1e-6 (both sides are roots/quadratures accurate to ~1e-12).
Monte Carlo (dense NumPy, not sr.monte_carlo): tolerance ``4·sem + c·|theory|/d`` with ``c = 6`` for
variances (as in tests/test_diffusion.py)."""
import pathlib
import sys

import numpy as np
import pytest

import symrmt as sr

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
import _paper_diffusion as P  # noqa: E402
import _paper_sgd as Q  # noqa: E402
import diffusion_consistency as dc  # noqa: E402

NEEDED = [f"{q}/{c}" for q in ("denoiser", "variance", "map", "split") for c in dc.CASES] + ["map_var/known"]
RTOL = 1e-6


@pytest.fixture(scope="module")
def des():
    e = dc.Model().expressions()
    return {k: sr.deterministic_equivalent(e[k]) for k in NEEDED}


def _settings():
    """The toolkit README's Gamma(2,1) spectrum at γ = d/n = 3.1, a power law at γ = 3 (the
    page's κ widget), and a random rotated Σ with n > d (not diagonal in the basis of v, x, μ)."""
    rng = np.random.default_rng(5)
    g = np.sort(rng.gamma(2.0, 1.0, 31))[::-1]
    s = rng.uniform(0.05, 3.0, 14)
    Qm, _ = np.linalg.qr(rng.standard_normal((14, 14)))
    return [("toolkit-gamma", g, 10), ("powerlaw-gamma3", np.arange(1, 25.0) ** -1.0, 8),
            ("rotated", (Qm * s) @ Qm.T, 36)]


@pytest.mark.parametrize("name,S,n", _settings(), ids=[s[0] for s in _settings()])
def test_engine_vs_paper_denoiser_and_map(des, name, S, n):
    """(E1) κ, (E2) E[vᵀD̂], (E3) + second pairing Var[vᵀD̂], the split disagreement (its sum over
    a basis at n/2) and E[vᵀx*] at σ_T² = 100, both mean cases: the engine's compiled equivalents
    equal the paper's formulas."""
    rng = np.random.default_rng(len(name))
    d = S.shape[0]
    s = S if S.ndim == 1 else np.linalg.eigvalsh(S)
    mu, v, x = rng.standard_normal(d) / np.sqrt(d), rng.standard_normal(d), rng.standard_normal(d)
    sig = np.array([0.01, 0.1, 1.0])
    b = dict(Sigma=S, mu=mu, v=v, x=x, n=n, sigma2=sig, sigmaT2=100.0)
    for case in dc.CASES:
        m = n if case == "known" else n - 1
        assert dc.max_rel_diff(dc.kappa_of(des[f"denoiser/{case}"], **dc.bindings_for(des[f"denoiser/{case}"].expr, b)),
                               P.kappa(sig, s, m)) < RTOL
        assert dc.max_rel_diff(dc.theory(des[f"denoiser/{case}"], b, quad_rtol=1e-10),
                               P.expected_denoiser(S, mu, v, x, m, sig)) < RTOL
        assert dc.max_rel_diff(dc.theory(des[f"variance/{case}"], b, quad_rtol=1e-10),
                               P.denoiser_variance(S, mu, v, x, n, sig, mean=case)) < RTOL
        assert dc.max_rel_diff(dc.theory(des[f"map/{case}"], b, quad_rtol=1e-10),
                               P.map_expectation(S, mu, v, x, n, sig, 100.0, mean=case)) < RTOL
        # disjoint halves: Σ_j Var[e_jᵀD̂] at n/2 samples per model
        assert dc.max_rel_diff(dc.theory(des[f"split/{case}"], b, quad_rtol=1e-10),
                               sum(P.denoiser_variance(S, mu, e, x, n / 2, sig, mean=case) for e in np.eye(d))) < RTOL
    if S.ndim == 2:
        assert dc.max_rel_diff(dc.theory(des["map_var/known"], b, quad_rtol=1e-10),
                               P.map_variance(S, mu, v, x, n, sig, 100.0)) < RTOL


def test_kappa_solves_the_toolkit_equation():
    """κ − z = γ Σ_k w_k κλ_k/(κ+λ_k), w_k = 1/p, γ = p/n (rmt_sc_lib.solve_kappa's equation),
    at n < d and n > d, z from 1e-8 to 1e6, and z = 0."""
    s = np.sort(np.random.default_rng(0).gamma(2.0, 1.0, 64))[::-1]
    for n in (20, 200):
        z = np.geomspace(1e-8, 1e6, 15)
        k = P.kappa(z, s, n)
        gam = s.size / n
        res = k - z - gam * np.mean(k[:, None] * s / (k[:, None] + s), axis=1)
        assert np.max(np.abs(res) / k) < 1e-13
    assert P.kappa([0.0], s, 200)[0] == 0.0
    k0 = P.kappa([0.0], s, 20)[0]
    assert abs(np.sum(s / (s + k0)) - 20) < 1e-10


def test_stieltjes_representation_of_the_map():
    """√((s+a)/(s+b)) = 1 − (1/π)∫_a^b √((t−a)/(b−t)) dt/(s+t) on the rule used for the map."""
    assert P.check_stieltjes() < 1e-12
    assert P.check_stieltjes(a=0.0, b=1.0) < 1e-10


def test_toolkit_fractional_power_rules_vs_engine(des):
    """(E4) the toolkit's (2/π)∫Σ(Σ+κ(u²))⁻¹du and its 100×100 sample-variance rule (σ → 0,
    σ_T → ∞) vs the engine's sampling map at σ² = 0, σ_T² = 1e8 (an O(s/σ_T²) ≈ 1e-8 difference);
    the trace form is read off the engine as σ_T²·(V(x−μ = 1) − V(x−μ = e_k)/2)."""
    d, n, k, ST2 = 20, 60, 3, 1e8
    s = np.sort(np.random.default_rng(2).gamma(2.0, 1.0, d))[::-1]
    e_k, z0 = np.eye(d)[k], np.zeros(d)
    b = dict(Sigma=s, mu=z0, v=e_k, n=n, sigma2=np.array([0.0]), sigmaT2=ST2)
    eng = dc.theory(des["map/known"], dict(b, x=e_k), quad_rtol=1e-8)[0] * np.sqrt(ST2)
    assert abs(eng / P.sqrt_expectation_toolkit(s, n)[k] - 1) < RTOL
    va = dc.theory(des["map_var/known"], dict(b, x=np.ones(d)), quad_rtol=1e-8)[0]
    vb = dc.theory(des["map_var/known"], dict(b, x=e_k), quad_rtol=1e-8)[0]
    assert abs(ST2 * (va - vb / 2) / P.sample_variance_toolkit(s, n, [k])[0] - 1) < RTOL


def test_second_pairing_decided_by_dense_monte_carlo(des):
    """Input along the read-out mode (x − μ = 2e₁, v = e₁): the paper's printed variance law
    (one pairing) is half the engine's; dense NumPy MC (300 training sets, d = 30) agrees with
    the engine within 4·sem + 6|th|/d and rejects the printed law (|z| > 3)."""
    d, n = 30, 60
    s = np.arange(1, d + 1.0) ** -1.0
    mu, v = np.zeros(d), np.eye(d)[0]
    x = 2.0 * np.eye(d)[0]
    sig = np.array([0.1, 1.0])
    eng = dc.theory(des["variance/known"], dict(Sigma=s, mu=mu, v=v, x=x, n=n, sigma2=sig), quad_rtol=1e-10)
    printed = P.denoiser_variance(s, mu, v, x, n, sig, pairings=1)
    assert np.allclose(eng, 2 * printed, rtol=1e-12)
    mc, sem = P.mc_denoiser_variance(s, mu, v, x, n, sig, 300, seed=30)
    assert np.all(np.abs(mc - eng) <= 4 * sem + 6 * np.abs(eng) / d), (mc, sem, eng)
    assert np.all(np.abs(mc - printed) > 3 * sem), (mc, sem, printed)


@pytest.mark.parametrize("lr,batch,rotate", [(0.25, 1, False), (1.0, 8, False), (0.5, 4, True)])
def test_sgd_onepass_engine_vs_paper_volterra(lr, batch, rotate):
    """(V1) the paper's one-pass Volterra equation (Gaussian a_k) = SGD.theory to 1e-10."""
    from symrmt.dynamics import SGD
    d = 60
    s = np.arange(1, d + 1.0) ** -1.5
    w = np.arange(1, d + 1.0) ** -0.75
    w /= np.linalg.norm(w)
    if rotate:
        Qm, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((d, d)))
        s, w = (Qm * s) @ Qm.T, Qm @ w
    steps = np.array([0, 1, 10, 100, 500])
    th = SGD(s, w, 0.05, lr=lr, batch=batch).theory(steps).risk
    ref = Q.onepass_volterra(s, w, 0.05, lr, batch, steps)
    assert np.max(np.abs(th - ref) / ref) < 1e-10


def test_sgd_full_batch_gd_first_step_closed_form():
    """B = n, t = 1: the engine's equivalent = σ² + w*ᵀΣw* − 2ηw*ᵀΣ²w* + η²[w*ᵀΣ³w* +
    (w*ᵀΣw* + σ²)TrΣ²/n] (first-order Wishart moment E[Σ̂AΣ̂] ≃ ΣAΣ + ΣTr(AΣ)/n)."""
    from symrmt.dynamics import SGD
    d, n, eta, s2 = 40, 80, 1.0, 0.05
    s = np.arange(1, d + 1.0) ** -1.5
    w = np.arange(1, d + 1.0) ** -0.75
    w /= np.linalg.norm(w)
    th = SGD(s, w, s2, lr=eta, batch=n, passes="multi", n=n).theory([1]).risk[0]
    wSw, w2, w3, T2 = w @ (s * w), w @ (s ** 2 * w), w @ (s ** 3 * w), np.sum(s ** 2)
    ref = s2 + wSw - 2 * eta * w2 + eta ** 2 * (w3 + (wSw + s2) * T2 / n)
    assert abs(th - ref) / ref < 1e-8


@pytest.mark.slow
def test_engine_vs_paper_map_variance_estimated_mean():
    """Var[vᵀx*] with the mean estimated (its derivation takes ~6 s): the engine vs
    gy-variance + (1/n)E[vᵀ(I−g)Σ(I−g)ᵀv] by the two-point rule (both pairings), rotated Σ."""
    de = sr.deterministic_equivalent(dc.Model().expressions()["map_var/estimated"])
    rng = np.random.default_rng(3)
    for d, n in ((16, 40), (24, 12)):
        s = rng.uniform(0.05, 3.0, d)
        Qm, _ = np.linalg.qr(rng.standard_normal((d, d)))
        S = (Qm * s) @ Qm.T
        mu, v, x = rng.standard_normal(d) / np.sqrt(d), rng.standard_normal(d), rng.standard_normal(d)
        sig = np.array([0.01, 0.1, 1.0])
        b = dict(Sigma=S, mu=mu, v=v, x=x, n=n, sigma2=sig, sigmaT2=100.0)
        assert dc.max_rel_diff(dc.theory(de, b, quad_rtol=1e-10),
                               P.map_variance(S, mu, v, x, n, sig, 100.0, mean="estimated")) < RTOL
