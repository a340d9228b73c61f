"""Fluctuations of traces (docs/math.md §"Fluctuations of traces"): the CLT law
for ``Cov(Tr G(λ₁), Tr G(λ₂))``, checked against an independent dense NumPy
Monte Carlo written here (draw X, eigenvalues, Tr G) — not ``sr.monte_carlo``.

Tolerance (``tests/mc_check.py``): ``|mc − theory| ≤ k·sem + c·|theory|/d``,
``k = 4`` standard errors of the Monte Carlo variance (covariance) and
``c = 8`` (the O(1/d) finite-size gap; docs/math.md lists 8.5 % at d = 50,
n/d = 0.5, λ = 0.1, i.e. c ≈ 4.3).
"""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.equivalence import fluctuations
from symrmt.equivalence.engine import Engine
from symrmt.rewrite.letters import Core

K_SEM, C_FS = 4.0, 8.0

n, d = sr.dims("n d")
lam, lam2, mu = sr.scalar("lam"), sr.scalar("lam2"), sr.scalar("mu")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n


def G(z):
    return (Sh + z * sr.I(d)).inverse()


# ------------------------------------------------------------------ dense reference
def dense_traces(s, nn, lams, trials, seed, center=None):
    """``Tr (XᵀX/m + λ)⁻¹`` per draw and per λ, from eigenvalues (``X`` rows
    ``N(0, diag s)``); ``center``: ``None`` raw ``XᵀX/n``, else the ``ddof`` of
    a centred sample covariance."""
    rng = np.random.default_rng(seed)
    dd = len(s)
    out = np.empty((trials, len(lams)))
    chunk = max(1, int(2e7 // (nn * dd)))
    root = np.sqrt(np.asarray(s, float))
    for a in range(0, trials, chunk):
        b = min(trials, a + chunk)
        Z = rng.standard_normal((b - a, nn, dd)) * root
        norm = nn
        if center is not None:
            Z = Z - Z.mean(axis=1, keepdims=True)
            norm = nn - center
        if nn < dd:
            e = np.linalg.eigvalsh(Z @ Z.transpose(0, 2, 1) / norm)
            e = np.concatenate([e, np.zeros((b - a, dd - nn))], axis=1)
        else:
            e = np.linalg.eigvalsh(Z.transpose(0, 2, 1) @ Z / norm)
        e = np.clip(e, 0, None)
        for j, l in enumerate(lams):
            out[a:b, j] = (1.0 / (e + l)).sum(axis=1)
    return out


def sample_cov(x, y):
    """Unbiased sample covariance and its standard error (delta method)."""
    xc, yc = x - x.mean(), y - y.mean()
    p = xc * yc
    T = len(x)
    return p.sum() / (T - 1), p.std(ddof=1) / np.sqrt(T)


def assert_close(theory, mc, sem, dd, what):
    tol = K_SEM * sem + C_FS * abs(theory) / dd
    assert abs(mc - theory) <= tol, (
        f"{what}: theory {theory:.5g} vs MC {mc:.5g} ± {sem:.2g}, |diff| {abs(mc - theory):.3g} > tol {tol:.3g} "
        f"(k={K_SEM}, c={C_FS}, d={dd})")


def spectrum(kind, dd):
    return np.ones(dd) if kind == "iso" else 1.0 / np.arange(1, dd + 1)


VAR_TR = sr.deterministic_equivalent(sr.var(sr.Tr(G(lam)))).compile()
COV_TR = sr.deterministic_equivalent(sr.cov(sr.Tr(G(lam)), sr.Tr(G(lam2)))).compile()
TRIALS = {50: 1500, 100: 800, 200: 400, 400: 1500}


# ------------------------------------------------------------------ closed forms / docs/math.md numbers
def test_reference_numbers_of_math_md():
    """Theory values quoted in docs/math.md (themselves checked there by Monte Carlo)."""
    D = 200
    assert np.isclose(VAR_TR(Sigma=np.ones(D), n=100, lam=0.1), 1.543, atol=1e-3)
    assert np.isclose(VAR_TR(Sigma=np.ones(D), n=400, lam=0.1), 3.189, atol=1e-3)
    s = 1.0 / np.arange(1, D + 1)
    assert np.isclose(VAR_TR(Sigma=s, n=400, lam=0.1), 1.264, atol=1e-3)
    assert np.isclose(VAR_TR(Sigma=s, n=100, lam=0.1), 3.352, atol=2e-3)


def test_isotropic_closed_form():
    """Isotropic Σ = I, q = d/n: κ solves κ(1 − q/(1+κ)) = λ in closed form
    (a quadratic); S[κ]/3 by finite differences of that closed form."""
    D, N, l = 300, 150, 0.3
    q = D / N

    def kap(x):  # κ² + (1 − q − x)κ − x = 0, positive root
        b = 1 - q - x
        return (-b + np.sqrt(b * b + 4 * x)) / 2

    h = 1e-3
    k = [kap(l + j * h) for j in (-2, -1, 0, 1, 2)]
    k1 = (k[3] - k[1]) / (2 * h)
    k2 = (k[3] - 2 * k[2] + k[1]) / h ** 2
    k3 = (k[4] - 2 * k[3] + 2 * k[1] - k[0]) / (2 * h ** 3)
    schw = k3 / k1 - 1.5 * (k2 / k1) ** 2
    assert np.isclose(VAR_TR(Sigma=np.ones(D), n=N, lam=l), schw / 3, rtol=1e-4)  # O(h²) differences


def test_stable_form_equals_math_md_form_and_schwarzian_limit():
    """The cancellation-free covariance equals docs/math.md's ``2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(λ₁−λ₂)²]``
    (both compiled) and tends to ``S[κ]/3`` as λ₂ → λ₁."""
    eng = Engine()
    core = Core(X, "data")
    math_md = fluctuations.trace_resolvent_cov_mathmd(eng, core, lam, lam2)
    from symrmt.equivalence.result import DeterministicEquivalent
    de = DeterministicEquivalent(expr=sp.S.Zero, value=math_md.xreplace(eng.reg.naming()),
                                 groups=[type(g)(tuple(eng.reg.naming().get(u, u) for u in g.unknowns),
                                                 tuple(e.xreplace(eng.reg.naming()) for e in g.equations),
                                                 g.z, g.kind, g.Sigma, g.sizes, g.K, g.m)
                                         for g in eng.reg.groups()], assumptions=[])
    f_math = de.compile()
    s = 1.0 / np.arange(1, 151)
    for l2 in (0.05, 0.2, 1.0):
        a = COV_TR(Sigma=s, n=80, lam=0.1, lam2=l2)
        b = f_math(Sigma=s, n=80, lam=0.1, lam2=l2)
        assert np.isclose(a, b, rtol=1e-9), (l2, a, b)
    v = VAR_TR(Sigma=s, n=80, lam=0.1)
    assert np.isclose(COV_TR(Sigma=s, n=80, lam=0.1, lam2=0.1 * (1 + 1e-7)), v, rtol=1e-5)


def test_reductions_to_tr_g():
    """``Tr Σ̂G = d − λ Tr G`` and normalised traces: exact rescalings of Var Tr G."""
    s = 1.0 / np.arange(1, 101)
    kw = dict(Sigma=s, n=60, lam=0.2)
    v = VAR_TR(**kw)
    f1 = sr.deterministic_equivalent(sr.var(sr.ntr(Sh * G(lam)))).compile()
    f2 = sr.deterministic_equivalent(sr.var(sr.ntr(G(lam)) + 3)).compile()
    f3 = sr.deterministic_equivalent(sr.cov(sr.Tr(G(lam)), sr.Tr(Sh * G(lam)) / 2)).compile()
    assert np.isclose(f1(**kw), 0.2 ** 2 * v / 100 ** 2, rtol=1e-10)
    assert np.isclose(f2(**kw), v / 100 ** 2, rtol=1e-10)
    assert np.isclose(f3(**kw), -0.2 * v / 2, rtol=1e-10)
    # Gram side: Tr (XXᵀ/n + μ)⁻¹ = Tr (XᵀX/n + μ)⁻¹ + (n − d)/μ exactly
    Gm = (X * X.T / n + mu * sr.I(n)).inverse()
    f4 = sr.deterministic_equivalent(sr.var(sr.Tr(Gm))).compile()
    assert np.isclose(f4(Sigma=s, n=60, mu=0.2), v, rtol=1e-10)


# ------------------------------------------------------------------ Monte Carlo
@pytest.mark.parametrize("kind", ["iso", "pow"])
@pytest.mark.parametrize("ratio", [0.5, 2.0])
@pytest.mark.parametrize("dd", [50, 100, 200])
def test_var_trace_vs_dense_monte_carlo(kind, ratio, dd):
    s, nn, l = spectrum(kind, dd), int(ratio * dd), 0.1
    tr = dense_traces(s, nn, [l], TRIALS[dd], seed=dd + int(10 * ratio))[:, 0]
    mc, sem = sample_cov(tr, tr)
    assert_close(float(VAR_TR(Sigma=s, n=nn, lam=l)), mc, sem, dd, f"Var Tr G {kind} n/d={ratio}")


def test_cov_two_ridges_and_normalised_trace_vs_dense_monte_carlo():
    dd, nn = 100, 50
    s = spectrum("pow", dd)
    tr = dense_traces(s, nn, [0.1, 0.5], 1500, seed=7)
    mc, sem = sample_cov(tr[:, 0], tr[:, 1])
    assert_close(float(COV_TR(Sigma=s, n=nn, lam=0.1, lam2=0.5)), mc, sem, dd, "Cov(Tr G(0.1), Tr G(0.5))")
    # var(ntr(Σ̂G)) = λ²/d² Var Tr G (the case, where the old rule gave 17.5 vs 7.29 at d = 200)
    f = sr.deterministic_equivalent(sr.var(sr.ntr(Sh * G(lam)))).compile()
    x = (dd - 0.1 * tr[:, 0]) / dd
    mc, sem = sample_cov(x, x)
    assert_close(float(f(Sigma=s, n=nn, lam=0.1)), mc, sem, dd, "Var ntr(Σ̂G)")


def test_centred_sample_covariance_ddof1_vs_dense_monte_carlo():
    """``sr.sample_covariance(X, ddof=1)`` is a white Wishart with n − 1 samples
    normalised by n − 1 (exact in law): the law with m = n − 1."""
    m0 = sr.Vector("m0", d)
    Xm = sr.GaussianData("Xm", n, Sigma, mean=m0)
    S1 = sr.sample_covariance(Xm, ddof=1)
    f = sr.deterministic_equivalent(sr.var(sr.Tr((S1 + lam * sr.I(d)).inverse()))).compile()
    dd, nn = 80, 40
    s = spectrum("pow", dd)
    tr = dense_traces(s, nn, [0.1], 1500, seed=11, center=1)[:, 0]
    mc, sem = sample_cov(tr, tr)
    th = float(f(Sigma=s, n=nn, lam=0.1, m0=np.ones(dd)))
    assert np.isclose(th, float(VAR_TR(Sigma=s, n=nn - 1, lam=0.1)), rtol=1e-12)
    assert_close(th, mc, sem, dd, "Var Tr G, ddof=1")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["iso", "pow"])
@pytest.mark.parametrize("ratio", [0.5, 2.0])
def test_var_trace_convergence_slow(kind, ratio):
    """d = 50 … 400: within the tolerance at each size; the relative error
    shrinks (O(1/d)) — printed as a table with ``-s``."""
    rows = []
    for dd in (50, 100, 200, 400):
        s, nn = spectrum(kind, dd), int(ratio * dd)
        tr = dense_traces(s, nn, [0.1], 2000, seed=dd)[:, 0]
        mc, sem = sample_cov(tr, tr)
        th = float(VAR_TR(Sigma=s, n=nn, lam=0.1))
        rows.append((dd, th, mc, sem))
        assert_close(th, mc, sem, dd, f"Var Tr G {kind} n/d={ratio}")
    for dd, th, mc, sem in rows:
        print(f"{kind} n/d={ratio} d={dd}: theory {th:.4f} MC {mc:.4f} ± {sem:.4f} rel {(mc - th) / th:+.3%}")


# ------------------------------------------------------------------ refusals
U = sr.Vector("u", d)
A = sr.Covariance("A", d)


Bn = sr.Deterministic("Bn", d, d)


# Tr[AG], Tr[GAG], Tr[G(λ₁)G(λ₂)] are derived now (tests/test_fluct_general.py); these still refuse
@pytest.mark.parametrize("expr, name", [
    (sr.var(sr.Tr(G(lam) * A * G(lam2) * Sigma)), "lam2"),
    (sr.var(sr.Tr(G(lam) * Bn * G(lam) * A)), "Bn"),
    (sr.var(sr.ntr(Sh * A * G(lam) * Sigma)), "A"),
    (sr.var(sr.ntr(sr.sqrt(Sh + lam * sr.I(d)))), "1/2"),
    (sr.cov(sr.Tr(G(lam)), U.T * G(lam) * U), "u.T"),
    (sr.var(sr.Tr(G(lam)) + U.T * G(lam) * U), "u.T"),
])
def test_traces_against_other_matrices_refuse(expr, name):
    with pytest.raises(NotImplementedError, match="(?i)trace") as e:
        sr.deterministic_equivalent(expr)
    assert name in str(e.value)


def test_refuses_correlated_and_features():
    K = sr.Covariance("K", n)
    Xc = sr.GaussianData("Xc", n, Sigma, K=K)
    with pytest.raises(NotImplementedError, match="correlated"):
        sr.deterministic_equivalent(sr.var(sr.Tr((Xc.T * Xc / n + lam * sr.I(d)).inverse())))
    p = sr.dims("p")
    F = sr.RandomFeatures("F", d, p)
    with pytest.raises(NotImplementedError, match="random features"):
        sr.deterministic_equivalent(sr.var(sr.Tr((F.T * Sh * F + lam * sr.I(p)).inverse())))


def test_forms_unchanged():
    """Variances of forms keep the quadratic-form rule
    ``Var uᵀGu ≃ 2κ²(uᵀΣR²u)²/(λ²(n − df₂))`` (κ by an independent bisection)."""
    f = sr.deterministic_equivalent(sr.var(U.T * G(lam) * U)).compile()
    s, nn, l = np.linspace(0.2, 2.0, 60), 90, 0.3
    uu = np.cos(np.arange(60))
    lo, hi = l, 100.0
    for _ in range(200):
        k = 0.5 * (lo + hi)
        lo, hi = (k, hi) if k * (1 - np.sum(s / (s + k)) / nn) < l else (lo, k)
    df2 = np.sum(s ** 2 / (s + k) ** 2)
    ref = 2 * k ** 2 * np.sum(uu ** 2 * s / (s + k) ** 2) ** 2 / (l ** 2 * (nn - df2))
    assert np.isclose(f(Sigma=s, n=nn, lam=l, u=uu), ref, rtol=1e-9)
