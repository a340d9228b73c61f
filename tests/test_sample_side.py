"""Data matrices outside a sample covariance (equivalence/sample_side.py):
``XᵀMX`` between resolvents, K-correlated label noise, row selectors, mixed
Gram/data resolvents of one ``X``, correlated k-point products, and CorrGCV
with ``sr.df_inverse``.

Checks: an independent dense NumPy simulation (written here, not
``sr.monte_carlo``) for ``XᵀKX`` and a selector at d = 60, 120; the source
derivative's closed form ``ρ' RΣR`` (independent NumPy formula);
``sr.monte_carlo`` of the same expressions at two sizes (the larger ones
``slow``). Tolerance ``k·sem + c·|th|/d`` (``tests/mc_check.py``), k = 4,
c stated per test.
"""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from tests.mc_check import check

n, d = sr.dims("n d")
lam, mu, s2 = sr.scalar("lam"), sr.scalar("mu"), sr.scalar("sigma2")
Sigma = sr.Covariance("Sigma", d)
A = sr.Covariance("A", d)
K = sr.Covariance("K", n)
P = sr.Covariance("P", n)
u = sr.Vector("u", d)
w = sr.Vector("w", d)
Xk = sr.GaussianData("Xk", n, Sigma, K=K)        # correlated rows
Xi = sr.GaussianData("Xi", n, Sigma)             # iid rows
LAM, MU = 0.2, 0.5


def res(X, z=lam):
    return (X.T * X / n + z * sr.I(d)).inverse()


def gram(X, z=mu):
    return (X * X.T / n + z * sr.I(n)).inverse()


def setup(D, q=1.5):
    N = int(q * D)
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    i = np.arange(N)
    uu = rng.standard_normal(D)
    ww = np.arange(1, D + 1) ** -1.0
    return dict(Sigma=np.arange(1, D + 1) ** -1.0, A=Q @ np.diag(np.linspace(0.5, 2, D)) @ Q.T,
                K=0.5 ** np.abs(i[:, None] - i[None, :]), P=(i < N // 2).astype(float),
                u=uu / np.linalg.norm(uu), w=ww / np.linalg.norm(ww), n=N, lam=LAM, mu=MU, sigma2=0.1)


def only(e, b):
    names = {getattr(x, "name", str(x)) for x in sp.preorder_traversal(e)
             if isinstance(x, (sp.Symbol, sp.MatrixSymbol))} | {"n"}
    return {k: v for k, v in b.items() if k in names}


_COMPILED = {}


def theory(e, b):
    if e not in _COMPILED:
        _COMPILED[e] = sr.deterministic_equivalent(e).compile()
    return float(_COMPILED[e](**only(e, b)))


# ------------------------------------------------------------ independent dense simulation
def dense_mc(kind, D, trials, seed=0):
    """(1/d)Tr[Σ G XᵀKX G]/n (kind "K") or (1/d)Tr[G XᵀPX G]/n (kind "P", iid rows), by plain NumPy."""
    b = setup(D)
    N, s = b["n"], b["Sigma"]
    rng = np.random.default_rng(seed)
    Kh = np.linalg.cholesky(b["K"]) if kind == "K" else np.eye(N)
    M = b["K"] if kind == "K" else np.diag(b["P"])
    T = np.diag(s) if kind == "K" else np.eye(D)
    vals = []
    for _ in range(trials):
        X = Kh @ rng.standard_normal((N, D)) * np.sqrt(s)
        G = np.linalg.inv(X.T @ X / N + LAM * np.eye(D))
        vals.append(np.trace(T @ G @ X.T @ M @ X @ G) / N / D)
    vals = np.array(vals)
    return vals.mean(), vals.std(ddof=1) / np.sqrt(trials)


EXPR = {"K": sr.ntr(Sigma * res(Xk) * Xk.T * K * Xk * res(Xk)) / n,
        "P": sr.ntr(res(Xi) * Xi.T * P * Xi * res(Xi)) / n}


@pytest.mark.parametrize("kind", ["K", "P"])
@pytest.mark.parametrize("D", [60, pytest.param(120, marks=pytest.mark.slow)])
def test_dense_reference(kind, D):
    # c = 3: first-order equivalent, O(1/d) relative
    th = theory(EXPR[kind], setup(D))
    mean, sem = dense_mc(kind, D, trials=150 if D == 60 else 80, seed=D)
    assert abs(mean - th) <= 4 * sem + 3.0 * abs(th) / D, (kind, D, th, mean, sem)


def test_source_derivative_closed_form():
    """``(1/d)Tr[A G XᵀMX G]/n ≃ ρ' Tr[A RΣR]/d`` with ``R = (ρΣ+λ)⁻¹``,
    ``ρ' = Tr[MK(I+δK)⁻²]/n / (1 − Tr[K²(I+δK)⁻²]Tr[(ΣR)²]/n²)``, ``δ = Tr[ΣR]/n``,
    ``ρ = Tr[K(I+δK)⁻¹]/n`` — the one-point law differentiated in ``t`` at
    ``K_t = K + tK^{1/2}MK^{1/2}``, solved here by plain fixed-point iteration."""
    b = setup(40)
    e = sr.ntr(A * res(Xk) * Xk.T * P * Xk * res(Xk)) / n
    th = theory(e, b)
    S, Km, Mm, Am, N = np.diag(b["Sigma"]), b["K"], np.diag(b["P"]), b["A"], b["n"]
    I_n, I_d = np.eye(N), np.eye(40)
    delta = 1.0
    for _ in range(2000):
        rho = np.trace(Km @ np.linalg.inv(I_n + delta * Km)) / N
        R = np.linalg.inv(rho * S + LAM * I_d)
        delta = 0.5 * delta + 0.5 * np.trace(S @ R) / N
    E2 = np.linalg.matrix_power(np.linalg.inv(I_n + delta * Km), 2)
    rp = np.trace(Mm @ Km @ E2) / N / (1 - np.trace(Km @ Km @ E2) * np.trace(S @ R @ S @ R) / N ** 2)
    ref = rp * np.trace(Am @ R @ S @ R) / 40
    assert abs(th - ref) <= 1e-8 * abs(ref), (th, ref)


# ------------------------------------------------------------ sr.monte_carlo, two sizes
Gk, Gi = res(Xk), res(Xi)
MC_CASES = {
    "selector, correlated": sr.ntr(Sigma * Gk * Xk.T * P * Xk * Gk) / n,
    "two sandwiches": sr.ntr(Gk * Xk.T * K * Xk * Gk * Xk.T * P * Xk) / n ** 2,
    "sandwich in a 3-point": sr.ntr(Sigma * Gk * Xk.T * K * Xk * Gk * A * Gk) / n,
    "mixed Gram/data, iid": (u.T * Gi * Xi.T * gram(Xi) * Xi * Gi * u) / n,
    "mixed Gram/data, K between": sr.ntr(Gk * Xk.T * K * gram(Xk) * Xk) / n,
    "Gram resolvent with a d-side matrix": sr.ntr(gram(Xk) * Xk * A * Xk.T) / n,
    "correlated 3-point": sr.ntr(Sigma * Gk * A * res(Xk, mu) * A * Gk),
}


@pytest.mark.parametrize("name", ["selector, correlated", "two sandwiches"])
def test_mc_small(name):
    # c = 3
    e = MC_CASES[name]
    check(e, d=40, trials=60, c=3.0, seed=1, **only(e, setup(40)))


@pytest.mark.slow
@pytest.mark.parametrize("D", [60, 120])
@pytest.mark.parametrize("name", list(MC_CASES))
def test_mc_two_sizes(name, D):
    # c = 3
    e = MC_CASES[name]
    check(e, d=D, trials=200, c=3.0, seed=D, **only(e, setup(D)))


# ------------------------------------------------------------ ridge with K-correlated noise, CorrGCV
def ridge(X, eps):
    y = X * w + eps
    Sh = X.T * X / n
    G = (Sh + lam * sr.I(d)).inverse()
    wh = G * X.T * y / n
    risk = (wh - w).T * Sigma * (wh - w) + s2
    r = y - X * wh
    train = r.T * r / n
    df = sr.ntr(Sh * G) * d
    gcv = train / (1 - df / n) ** 2
    nu = sr.df_inverse(K, df)
    corrgcv = train * n / (nu * (df - sr.Tr(K * K * (K + nu * sr.I(n)).inverse() ** 2)))
    return dict(risk=risk, train=train, gcv=gcv, corrgcv=corrgcv)


KN = ridge(Xk, sr.GaussianNoise("eps", n, s2, K=K))


def test_corrgcv_equals_risk_in_theory():
    """CorrGCV ≃ out-of-sample risk when the noise shares K; GCV is biased."""
    for q in (0.5, 2.0):
        b = dict(setup(60, q), lam=1e-2)
        r, c, g = (theory(KN[k], b) for k in ("risk", "corrgcv", "gcv"))
        assert abs(c - r) <= 1e-9 * r, (q, r, c)
        assert (r - g) / r > 0.05, (q, r, g)      # GCV underestimates the risk under correlation


def test_df_inverse_iid_is_explicit_and_refusals():
    # K = I: ν = (n − t)/t exactly
    t = sr.scalar("t")
    assert sr.df_inverse(sr.I(n), t) == (n - t) / t
    with pytest.raises(TypeError, match="K"):
        sr.df_inverse(sr.Deterministic("B", n, n), t)
    # a root at a value that is not a law's degrees of freedom: refused by name
    e = sr.df_inverse(K, sr.ntr(Gk) * d)
    with pytest.raises(NotImplementedError, match="df_inverse"):
        sr.deterministic_equivalent(e)


def test_refusals_name_the_subexpression():
    # data with a mean, and the centred sample covariance, next to X outside XᵀX
    Xm = sr.GaussianData("Xm", n, Sigma, mean=u)
    with pytest.raises(NotImplementedError, match="mean"):
        sr.deterministic_equivalent(sr.ntr(Xm.T * P * Xm * A) / n)
    Gc = (sr.sample_covariance(Xi, ddof=1) + lam * sr.I(d)).inverse()
    with pytest.raises(NotImplementedError, match="sample_covariance"):
        sr.deterministic_equivalent(sr.ntr(Gc * Xi.T * P * Xi) / n)
    # compared copies (variance mode): second order not implemented
    Xk2 = sr.GaussianData("Xk2", n, Sigma, K=K)
    f1 = sr.ntr(Gk * Xk.T * K * Xk * Gk) / n
    f2 = sr.ntr(res(Xk2) * Xk2.T * K * Xk2 * res(Xk2)) / n
    with pytest.raises(NotImplementedError, match="copies"):
        sr.deterministic_equivalent((f1 - f2) ** 2)


@pytest.mark.parametrize("name", ["risk", "corrgcv"])
def test_ridge_k_noise_mc_small(name):
    # c = 6 (ratios of traces: GCV-type estimators have larger O(1/d) terms)
    e = KN[name]
    b = only(e, dict(setup(40, 2.0), lam=1e-2))
    th = theory(e, b)
    mc = sr.monte_carlo(e, trials=60, seed=2, **b)
    assert abs(float(mc.mean) - th) <= 4 * float(mc.sem) + 6.0 * abs(th) / 40, (name, th, mc.mean, mc.sem)


@pytest.mark.slow
@pytest.mark.parametrize("D", [60, 120])
@pytest.mark.parametrize("q", [0.5, 2.0])
@pytest.mark.parametrize("name", ["risk", "train", "gcv", "corrgcv"])
def test_ridge_k_noise_mc_two_sizes(name, q, D):
    # c = 6
    e = KN[name]
    b = dict(setup(D, q), lam=1e-2)
    check(e, d=D, trials=200, c=6.0, seed=D, **only(e, b))
