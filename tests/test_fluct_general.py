"""Fluctuations of general traces (docs/math.md §"Fluctuations of traces"):
``Var Tr[AG]``, ``Cov(Tr[A₁G(λ₁)], Tr[A₂G(λ₂)])``, ``Var Tr[GAG]`` from the
log-determinant law ``Cov(log det(Σ̂+B₁+z₁), log det(Σ̂+B₂+z₂)) ≃ −2 log(1 − γ₁₂)``
differentiated in the sources ``B_i = s_iA_i`` (``symrmt/equivalence/fluctuations.py``).

Checks: (i) with ``A = I`` it reproduces the established ``Tr G`` law
(``2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(λ₁−λ₂)²]`` and ``S[κ]/3``) to 1e-10; (ii) with rank-one
sources it reproduces the quadratic-form rule (both Wick pairings) up to
``O(1/n²)``; (iii) isotropic ``Σ``: an independent closed form from Haar
invariance of the eigenvectors; (iv) an independent dense NumPy Monte Carlo
written here (draw ``X``, ``eigh``, traces) — not ``sr.monte_carlo`` — at
``d ∈ {50, 100, 200}`` (``400`` with ``--runslow``), ``n/d ∈ {0.5, 2}``, with ``A``
not commuting with ``Σ``.

Monte Carlo tolerance (``tests/mc_check.py``): ``|mc − theory| ≤ k·sem + c·|theory|/d``,
``k = 4`` standard errors of the Monte Carlo (co)variance, ``c = 8`` (the O(1/d)
finite-size gap: 7.5 % at d = 50 for ``Var Tr[ΣG]``, n/d = 0.5, i.e. c ≈ 3.8).
"""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.equivalence import fluctuations as fl
from symrmt.equivalence.engine import Engine
from symrmt.equivalence.result import DeterministicEquivalent
from symrmt.rewrite.letters import Core

K_SEM, C_FS = 4.0, 8.0
L1, L2 = 0.1, 0.5

n, d = sr.dims("n d")
lam, lam2 = sr.scalar("lam"), sr.scalar("lam2")
Sigma = sr.Covariance("Sigma", d)
A = sr.Covariance("A", d)
B = sr.Covariance("B", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n


def G(z):
    return (Sh + z * sr.I(d)).inverse()


EXPRS = {
    "var ntr(ΣG)": sr.var(sr.ntr(Sigma * G(lam))),           # the case (population Σ)
    "var Tr[AG]": sr.var(sr.Tr(A * G(lam))),
    "cov(Tr[AG1],Tr[BG2])": sr.cov(sr.Tr(A * G(lam)), sr.Tr(B * G(lam2))),
    "var Tr[GAG]": sr.var(sr.Tr(G(lam) * A * G(lam))),
    "cov(Tr[G1G2A],Tr[AG1])": sr.cov(sr.Tr(G(lam) * G(lam2) * A), sr.Tr(A * G(lam))),
}
_COMPILED = {}


def theory(key, **kw):
    if key not in _COMPILED:
        _COMPILED[key] = sr.deterministic_equivalent(EXPRS[key]).compile()
    f = _COMPILED[key]
    return float(f(**{k: v for k, v in kw.items() if k in f.catalog.names}))


def problem(dd, seed=123):
    """Power-law Σ (diagonal), ``A = O diag(0.5…2) Oᵀ`` with a random rotation
    ``O`` (does not commute with Σ), ``B`` diagonal."""
    s = 1.0 / np.arange(1, dd + 1)
    O, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dd, dd)))
    Am = O @ np.diag(np.linspace(0.5, 2.0, dd)) @ O.T
    Bm = np.diag(np.cos(np.arange(dd)) ** 2 + 0.2)
    return s, Am, Bm


def dense_mc(s, Am, Bm, nn, trials, seed):
    """Independent dense Monte Carlo: ``X`` rows ``N(0, diag s)``, ``Σ̂ = XᵀX/n = V e Vᵀ``;
    every statistic from the same draws. Returns ``{key: (cov, sem)}``."""
    rng = np.random.default_rng(seed)
    dd = len(s)
    root = np.sqrt(s)
    cols = {k: ([], []) for k in EXPRS}
    chunk = max(1, int(4e6 // (nn * dd)))
    for a in range(0, trials, chunk):
        b = min(trials, a + chunk)
        Z = rng.standard_normal((b - a, nn, dd)) * root
        e, V = np.linalg.eigh(Z.transpose(0, 2, 1) @ Z / nn)
        e = np.clip(e, 0, None)
        Av = V.transpose(0, 2, 1) @ Am @ V                    # Vᵀ A V
        dA = np.einsum("tii->ti", Av)
        dB = np.einsum("tji,j,tji->ti", V, np.diag(Bm), V)
        dS = np.einsum("tji,j,tji->ti", V, s, V)
        g1, g2 = 1.0 / (e + L1), 1.0 / (e + L2)
        trSG = (dS * g1).sum(1) / dd
        trAG = (dA * g1).sum(1)
        stats = {
            "var ntr(ΣG)": (trSG, trSG),
            "var Tr[AG]": (trAG, trAG),
            "cov(Tr[AG1],Tr[BG2])": (trAG, (dB * g2).sum(1)),
            "var Tr[GAG]": ((dA * g1 * g1).sum(1),) * 2,
            "cov(Tr[G1G2A],Tr[AG1])": ((dA * g1 * g2).sum(1), trAG),
        }
        for k, (x, y) in stats.items():
            cols[k][0].append(x)
            cols[k][1].append(y)
    out = {}
    for k, (x, y) in cols.items():
        x, y = np.concatenate(x), np.concatenate(y)
        p = (x - x.mean()) * (y - y.mean())
        out[k] = (p.sum() / (len(p) - 1), p.std(ddof=1) / np.sqrt(len(p)))
    return out


def check_all(dd, ratio, trials, seed):
    s, Am, Bm = problem(dd)
    nn = int(ratio * dd)
    mc = dense_mc(s, Am, Bm, nn, trials, seed)
    rows = []
    for key in EXPRS:
        th = theory(key, Sigma=s, A=Am, B=Bm, n=nn, lam=L1, lam2=L2)
        m, se = mc[key]
        tol = K_SEM * se + C_FS * abs(th) / dd
        rows.append((key, th, m, se, tol))
        assert abs(m - th) <= tol, (
            f"{key}, d={dd}, n={nn}: theory {th:.6g} vs MC {m:.6g} ± {se:.2g}, |diff| {abs(m - th):.3g} > tol "
            f"{tol:.3g} (k={K_SEM}, c={C_FS})")
    return rows


# ------------------------------------------------------------------ exact reductions and closed forms
def _compile_value(eng, val):
    nm = eng.reg.naming()
    groups = [type(g)(tuple(nm.get(u, u) for u in g.unknowns), tuple(e.xreplace(nm) for e in g.equations),
                      g.z, g.kind, g.Sigma, g.sizes, g.K, g.m) for g in eng.reg.groups()]
    return DeterministicEquivalent(expr=sp.S.Zero, value=val.xreplace(nm), groups=groups, assumptions=[]).compile()


def test_identity_source_reproduces_tr_g_law():
    """``A = I``: the source route equals docs/math.md's ``2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(λ₁−λ₂)²]``
    and the previous cancellation-free form, and ``S[κ]/3`` at λ₁ = λ₂, to 1e-10."""
    core = Core(X, "data")
    eng_md = Engine()
    f_md = _compile_value(eng_md, fl.trace_resolvent_cov_mathmd(eng_md, core, lam, lam2))
    eng_old = Engine()
    f_old = _compile_value(eng_old, fl.trace_resolvent_cov(eng_old, core, lam, lam2))
    eng_s = Engine()
    f_schw = _compile_value(eng_s, fl.schwarzian(eng_s, core, lam) / 3)
    f_new = sr.deterministic_equivalent(sr.cov(sr.Tr(G(lam)), sr.Tr(G(lam2)))).compile()
    f_var = sr.deterministic_equivalent(sr.var(sr.Tr(G(lam)))).compile()
    for s, nn in ((1.0 / np.arange(1, 151), 80), (np.linspace(0.3, 3, 120), 240), (np.ones(100), 50)):
        for l2 in (0.05, 0.2, 1.0):
            kw = dict(Sigma=s, n=nn, lam=0.1, lam2=l2)
            a, b, c = f_new(**kw), f_md(**kw), f_old(**kw)
            assert np.isclose(a, b, rtol=1e-10, atol=0), (l2, a, b)
            assert np.isclose(a, c, rtol=1e-10, atol=0), (l2, a, c)
        v, w = f_var(Sigma=s, n=nn, lam=0.1), f_schw(Sigma=s, n=nn, lam=0.1)
        assert np.isclose(v, w, rtol=1e-10, atol=0), (v, w)
        # no 0/0 as λ₂ → λ₁: the source form is evaluated there directly
        assert np.isclose(f_new(Sigma=s, n=nn, lam=0.1, lam2=0.1), v, rtol=1e-12)


def test_rank_one_sources_reproduce_the_quadratic_form_rule():
    """``A_i = (uvᵀ + vuᵀ)/2``: the log-det law gives ``Cov(uᵀG₁v, uᵀG₂v)``, whose leading
    order is the quadratic-form rule ``(κ₁κ₂/λ₁λ₂)[(uᵀMu)(vᵀMv) + (uᵀMv)²]/(n(1−γ₁₂))``
    (both Wick pairings; the symmetrisation is what produces the second); the rest is
    O(1/n²) relative."""
    u, v = sr.Vector("u", d), sr.Vector("v", d)
    eng = Engine()
    core = Core(X, "data")
    src = fl._sym(u * v.T)
    f_law = _compile_value(eng, fl.logdet_cov_derivative(eng, core, (lam, (src,)), (lam2, (src,))))
    f_form = sr.deterministic_equivalent(sr.cov(u.T * G(lam) * v, u.T * G(lam2) * v)).compile()
    rel = []
    for dd in (50, 200, 800):
        s = 1.0 / np.arange(1, dd + 1)
        kw = dict(Sigma=s, n=dd, lam=0.1, lam2=0.4, u=np.cos(np.arange(dd)), v=np.sin(0.7 * np.arange(dd)) + 0.3)
        a, b = float(f_law(**kw)), float(f_form(**kw))
        rel.append(abs(a - b) / abs(b))
    assert rel[0] < 1e-3 and rel[1] < rel[0] / 8 and rel[2] < rel[1] / 8, rel


def test_isotropic_closed_form_from_haar_invariance():
    """``Σ = I``: eigenvectors of ``Σ̂`` are Haar, so with ``Ā = tr A``, ``A₀ = A − ĀI``
    (real Haar: ``Var Σ_k g_k v_kᵀA₀v_k ≈ 2‖A₀‖²_F/d² Σ_k (g_k − ḡ)²``)
    ``Var Tr[AG] ≃ Ā² Var Tr G + 2(‖A₀‖²_F/d)(tr G² − (tr G)²)``, with the closed-form
    Marchenko–Pastur ``tr G = κ/(λ(1+κ))``, ``κ² + κ(1 − λ − q) − λ = 0``, ``tr G² = −∂_λ tr G``
    and ``Var Tr G = S[κ]/3`` with the derivatives of κ from the quadratic
    (``a = 2κ + 1 − λ − q``: ``κ' = (κ+1)/a``, ``κ'' = 2κ'(1 − κ')/a``, ``κ‴ = 3κ''(1 − 2κ')/a``)."""
    f = sr.deterministic_equivalent(sr.var(sr.Tr(A * G(lam)))).compile()
    for D, N, l in ((200, 100, 0.1), (300, 600, 0.3)):
        q = D / N

        def kap(x):
            b = 1 - q - x
            return (-b + np.sqrt(b * b + 4 * x)) / 2

        k = kap(l)
        k1 = (k + 1) / (2 * k + 1 - l - q)                       # implicit derivative of the quadratic
        trG = k / (l * (1 + k))
        trG2 = k / (l ** 2 * (1 + k)) - k1 / (l * (1 + k) ** 2)
        a_ = 2 * k + 1 - l - q
        d1 = (k + 1) / a_
        d2 = 2 * d1 * (1 - d1) / a_
        d3 = 3 * d2 * (1 - 2 * d1) / a_
        var_trg = (d3 / d1 - 1.5 * (d2 / d1) ** 2) / 3
        a = np.random.default_rng(D).uniform(0.2, 2.0, D)
        O, _ = np.linalg.qr(np.random.default_rng(D + 1).standard_normal((D, D)))
        Am = O @ np.diag(a) @ O.T
        abar = a.mean()
        closed = abar ** 2 * var_trg + 2 * np.sum((a - abar) ** 2) / D * (trG2 - trG ** 2)
        got = float(f(Sigma=np.ones(D), n=N, lam=l, A=Am))
        assert np.isclose(got, closed, rtol=1e-10), (D, N, got, closed)


def test_exact_rewrites_and_symmetrisation():
    """``Tr[Σ̂AG] = Tr A − λTr[AG]`` (exact), and ``Tr[BG] = Tr[((B+Bᵀ)/2)G]`` for a
    non-symmetric ``B`` (``G`` symmetric): the law is applied to symmetric sources."""
    s, Am, _ = problem(60)
    kw = dict(Sigma=s, n=40, lam=0.2)
    v = theory("var Tr[AG]", A=Am, **kw)
    f = sr.deterministic_equivalent(sr.var(sr.Tr(Sh * A * G(lam)))).compile()
    assert np.isclose(f(A=Am, **kw), 0.2 ** 2 * v, rtol=1e-10)
    Bn = sr.Deterministic("Bn", d, d)
    W = np.random.default_rng(3).standard_normal((60, 60))
    fn = sr.deterministic_equivalent(sr.var(sr.Tr(Bn * G(lam)))).compile()
    assert np.isclose(fn(Bn=Am + (W - W.T), **kw), v, rtol=1e-10)        # antisymmetric part: Tr[(W−Wᵀ)G] = 0


# ------------------------------------------------------------------ Monte Carlo
TRIALS = {50: 1200, 100: 500, 200: 160}


@pytest.mark.parametrize("ratio", [0.5, 2.0])
@pytest.mark.parametrize("dd", [50, 100, 200])
def test_general_traces_vs_dense_monte_carlo(dd, ratio):
    check_all(dd, ratio, TRIALS[dd], seed=dd + int(10 * ratio))


@pytest.mark.slow
@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_general_traces_convergence_slow(ratio):
    """d = 50 … 400: within the tolerance at each size; the table (``-s``) shows
    the relative gap shrinking like O(1/d)."""
    table = []
    for dd, trials in ((50, 6000), (100, 4000), (200, 2000), (400, 2000)):
        table += [(dd,) + r for r in check_all(dd, ratio, trials, seed=1000 + dd)]
    for dd, key, th, m, se, tol in table:
        print(f"n/d={ratio} d={dd:4d} {key:24s} theory {th:.5g} MC {m:.5g} ± {se:.2g} rel {(m - th) / th:+.3%}")


# ------------------------------------------------------------------ refusals
Bn = sr.Deterministic("Bn", d, d)


@pytest.mark.parametrize("expr, name", [
    (sr.var(sr.Tr(G(lam) * A * G(lam2) * Sigma)), "lam2"),              # two ridges, matrices between both
    (sr.var(sr.Tr(G(lam) * Bn * G(lam) * A)), "Bn"),                    # not a symmetric-source derivative
    (sr.var(sr.Tr(G(lam) * A * G(lam) * Sigma * G(lam))), "3 resolvents"),
    (sr.var(sr.Tr(G(lam) ** 4)), "G^k"),
    (sr.var(sr.ntr(Sh * A * G(lam) * Sigma)), "XᵀX/n"),                  # Σ̂ apart from its resolvent
])
def test_refusals_name_the_trace(expr, name):
    with pytest.raises(NotImplementedError, match="(?i)trace") as e:
        sr.deterministic_equivalent(expr)
    assert name in str(e.value)


def test_refuses_gram_side_matrix_and_correlated_samples():
    mu = sr.scalar("mu")
    Kn = sr.Covariance("Kn", n)
    with pytest.raises(NotImplementedError, match="Gram-side"):
        sr.deterministic_equivalent(sr.var(sr.Tr(Kn * (X * X.T / n + mu * sr.I(n)).inverse())))
    Xc = sr.GaussianData("Xc", n, Sigma, K=Kn)
    with pytest.raises(NotImplementedError, match="correlated"):
        sr.deterministic_equivalent(sr.var(sr.Tr(A * (Xc.T * Xc / n + lam * sr.I(d)).inverse())))
