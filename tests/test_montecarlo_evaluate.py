"""The Monte Carlo evaluator against direct NumPy, draw by draw.

``evaluate_draw`` returns the arrays it sampled; each test recomputes the
expression from them with dense NumPy linear algebra (one matrix inverse per
grid point) and requires agreement to ~1e-10 relative.
"""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.montecarlo import evaluate_draw

n, d, p = sr.dims("n d p")
lam, lam2, mu, sigma2 = (sr.scalar(s) for s in ("lam", "lam2", "mu", "sigma2"))
Sigma = sr.Covariance("Sigma", d)
A = sr.Deterministic("A", d, d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
I = sr.I(d)
G = (Sh + lam * I).inverse()
G2 = (Sh + lam2 * I).inverse()

DD, NN = 24, 40
rng = np.random.default_rng(1)
S_DIAG = np.sort(rng.uniform(0.1, 2.0, DD))
A_MAT = rng.standard_normal((DD, DD))
S_FULL = A_MAT @ A_MAT.T / DD
W_VEC = rng.standard_normal(DD)
LAMS = np.array([0.01, 0.3, 2.0])
BASE = dict(Sigma=S_DIAG, n=NN, lam=LAMS)


def sh(D, key=X):
    return D[key].T @ D[key] / D[key].shape[0]


def inv(M, l):
    return np.linalg.inv(M + l * np.eye(M.shape[0]))


def mpow(M, s):
    e, U = np.linalg.eigh((M + M.T) / 2)
    return (U * np.clip(e, 0, None) ** s) @ U.T


def close(value, ref, tol=1e-10):
    value, ref = np.asarray(value), np.asarray(ref)
    assert value.shape == ref.shape
    assert np.max(np.abs(value - ref) / np.maximum(1.0, np.abs(ref))) < tol


CASES = {
    "ntr Sh G": (sr.ntr(Sh * G), BASE,
                 lambda D: [np.trace(sh(D) @ inv(sh(D), l)) / DD for l in LAMS]),
    "ntr Sigma G (diag)": (sr.ntr(Sigma * G), BASE,
                           lambda D: [np.trace(np.diag(S_DIAG) @ inv(sh(D), l)) / DD for l in LAMS]),
    "ntr Sigma G (full)": (sr.ntr(Sigma * G), dict(BASE, Sigma=S_FULL),
                           lambda D: [np.trace(S_FULL @ inv(sh(D), l)) / DD for l in LAMS]),
    "form w G w": (w.T * G * w, dict(BASE, w=W_VEC),
                   lambda D: [W_VEC @ inv(sh(D), l) @ W_VEC for l in LAMS]),
    "form w G Sigma G w": (w.T * G * Sigma * G * w, dict(BASE, w=W_VEC),
                           lambda D: [W_VEC @ inv(sh(D), l) @ np.diag(S_DIAG) @ inv(sh(D), l) @ W_VEC
                                      for l in LAMS]),
    "two ridges, non-commuting A": (
        sr.Tr(A * G * A.T * G2), dict(BASE, A=A_MAT, lam2=0.7),
        lambda D: [np.trace(A_MAT @ inv(sh(D), l) @ A_MAT.T @ inv(sh(D), 0.7)) for l in LAMS]),
    "integer powers": (sr.Tr(Sh ** 2) + sr.Tr(G ** 2), BASE,
                       lambda D: [np.trace(sh(D) @ sh(D)) + np.trace(inv(sh(D), l) @ inv(sh(D), l))
                                  for l in LAMS]),
    "fractional power": (sr.ntr(sr.sqrt(Sh + lam * I)), BASE,
                         lambda D: [np.trace(mpow(sh(D) + l * np.eye(DD), 0.5)) / DD for l in LAMS]),
    "fractional two-point form": (
        w.T * sr.power(Sh + lam * I, sp.Rational(1, 2)) * sr.power(Sh + mu * I, -sp.Rational(1, 2)) * w,
        dict(BASE, w=W_VEC, mu=2.0),
        lambda D: [W_VEC @ mpow(sh(D) + l * np.eye(DD), 0.5) @ mpow(sh(D) + 2 * np.eye(DD), -0.5) @ W_VEC
                   for l in LAMS]),
    "non-symmetric core (dense fallback)": (
        sr.Tr((A * Sh + lam * I).inverse()), dict(BASE, A=A_MAT),
        lambda D: [np.trace(inv(A_MAT @ sh(D), l)) for l in LAMS]),
    "grid-dependent core (batched fallback)": (
        sr.Tr((Sh + lam * Sigma + mu * I).inverse()), dict(BASE, mu=0.1),
        lambda D: [np.trace(np.linalg.inv(sh(D) + l * np.diag(S_DIAG) + 0.1 * np.eye(DD))) for l in LAMS]),
    "scalar functions": (
        sp.log(1 + sr.ntr(G)) + sp.exp(-sr.ntr(Sh)) * lam, BASE,
        lambda D: [np.log(1 + np.trace(inv(sh(D), l)) / DD) + np.exp(-np.trace(sh(D)) / DD) * l
                   for l in LAMS]),
    "sympy Trace": (sp.Trace(Sh * G) / d, BASE,
                    lambda D: [np.trace(sh(D) @ inv(sh(D), l)) / DD for l in LAMS]),
    "OneMatrix": (sr.Tr(sp.OneMatrix(d, d) * G), BASE, lambda D: [np.sum(inv(sh(D), l)) for l in LAMS]),
    "n < d (Gram eigenvalues)": (
        sr.ntr(Sh * G) + sr.ntr(G), dict(BASE, n=15),
        lambda D: [np.trace(sh(D) @ inv(sh(D), l)) / DD + np.trace(inv(sh(D), l)) / DD for l in LAMS]),
    "transposes around a core": (
        sr.Tr(A.T * (A * Sh * A.T + lam * I).inverse() * A), dict(BASE, A=A_MAT),
        lambda D: [np.trace(A_MAT.T @ inv(A_MAT @ sh(D) @ A_MAT.T, l) @ A_MAT) for l in LAMS]),
    "deterministic inverse, full Sigma": (
        sr.Tr((Sigma + lam * I).inverse() * Sh), dict(BASE, Sigma=S_FULL),
        lambda D: [np.trace(inv(S_FULL, l) @ sh(D)) for l in LAMS]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_numpy(name):
    expr, bindings, ref = CASES[name]
    value, draws = evaluate_draw(expr, seed=3, **bindings)
    close(value, np.array(ref(draws)))


def test_ridge_risk_with_noise():
    eps = sr.GaussianNoise("eps", n, sigma2)
    wbar = sr.Vector("wbar", d)
    y = X * wbar + eps
    w_hat = G * X.T * y / n
    risk = (w_hat - wbar).T * Sigma * (w_hat - wbar) + sigma2
    value, D = evaluate_draw(risk, seed=5, wbar=W_VEC, sigma2=0.25, **BASE)
    ya = D[X] @ W_VEC + np.sqrt(0.25) * D[eps][:, 0]  # draws hold the noise before sqrt(variance)
    ref = []
    for l in LAMS:
        wh = inv(sh(D), l) @ D[X].T @ ya / NN
        ref.append((wh - W_VEC) @ np.diag(S_DIAG) @ (wh - W_VEC) + 0.25)
    close(value, np.array(ref))


def test_noise_variance_on_grid_and_correlated():
    Kn = sr.Covariance("K", n)
    eps = sr.GaussianNoise("eps", n, 2 * sigma2, K=Kn)
    u = sr.Vector("u", n)
    K = rng.standard_normal((NN, NN))
    K = K @ K.T / NN
    uv = rng.standard_normal(NN)
    s2 = np.array([0.1, 0.2, 0.4])
    value, D = evaluate_draw((u.T * eps) ** 2, seed=2, K=K, u=uv, sigma2=s2)
    close(value, (uv @ D[eps][:, 0]) ** 2 * 2 * s2)
    # the drawn noise has covariance K: check its construction from the same stream
    z = np.random.Generator(np.random.PCG64(np.random.SeedSequence(2, spawn_key=(0, 0)))).standard_normal((NN, 1))
    close(D[eps], mpow(K, 0.5) @ z, tol=1e-12)


def test_sample_mean_and_covariance_use_the_same_draw():
    K = sr.Covariance("K", n)
    m = sr.Vector("m", d)
    Y = sr.GaussianData("Y", n, Sigma, K=K, mean=m)
    S1, S0, mh = sr.sample_covariance(Y, ddof=1), sr.sample_covariance(Y, ddof=0), sr.sample_mean(Y)
    kk, mv = rng.uniform(0.5, 1.5, NN), rng.standard_normal(DD)
    b = dict(BASE, A=A_MAT, K=kk, m=mv)
    expr = sr.Tr(A * S1) + sr.Tr((S1 + lam * I).inverse()) + sr.Tr(A * S0) + mh.T * A * mh
    value, D = evaluate_draw(expr, seed=4, **b)
    Ya = D[Y]
    C1 = np.cov(Ya, rowvar=False)
    C0 = (Ya - mv).T @ (Ya - mv) / NN
    ref = [np.trace(A_MAT @ C1) + np.trace(inv(C1, l)) + np.trace(A_MAT @ C0) + Ya.mean(0) @ A_MAT @ Ya.mean(0)
           for l in LAMS]
    close(value, np.array(ref))
    # the draw is K^{1/2} Z Σ^{1/2} + 1 mᵀ, with Z from the object's own stream
    Z = np.random.Generator(np.random.PCG64(np.random.SeedSequence(4, spawn_key=(0, 0)))).standard_normal((NN, DD))
    close(Ya, np.sqrt(kk)[:, None] * Z * np.sqrt(S_DIAG) + mv, tol=1e-12)


def test_random_features():
    F = sr.RandomFeatures("F", d, p)
    expr = sr.Tr((F.T * Sh * F + lam * sr.I(p)).inverse())
    value, D = evaluate_draw(expr, seed=6, p=11, **BASE)
    close(value, np.array([np.trace(inv(D[F].T @ sh(D) @ D[F], l)) for l in LAMS]))


def test_independent_copies_differ_and_share_nothing():
    X2 = sr.GaussianData("X", n, Sigma)  # same name and law: an independent copy
    value, D = evaluate_draw(sr.ntr(X.T * X2) / n, seed=0, Sigma=S_DIAG, n=NN)
    assert not np.allclose(D[X], D[X2])
    close(value, np.trace(D[X].T @ D[X2]) / NN / DD)


def test_grid_equals_pointwise():
    """A grid of ridges gives, point by point, the scalar-ridge value."""
    expr = w.T * G * Sigma * G * w + sr.ntr(Sigma * G)
    grid, _ = evaluate_draw(expr, seed=8, w=W_VEC, **BASE)
    for i, l in enumerate(LAMS):
        point, _ = evaluate_draw(expr, seed=8, w=W_VEC, Sigma=S_DIAG, n=NN, lam=l)
        assert np.isscalar(point) or np.ndim(point) == 0
        assert abs(grid[i] - point) <= 1e-12 * max(1.0, abs(point))


def test_two_dimensional_grid_broadcasts():
    value, _ = evaluate_draw(sr.ntr(G) + mu, seed=1, Sigma=S_DIAG, n=NN,
                             lam=LAMS[:, None], mu=np.array([0.0, 1.0]))
    assert value.shape == (3, 2)
    close(value[:, 1] - value[:, 0], np.ones(3))


def test_fractional_power_of_non_psd_is_refused():
    with pytest.raises(ValueError, match="positive semi-definite"):
        evaluate_draw(sr.ntr(sr.sqrt(Sh - lam * I)), Sigma=S_DIAG, n=NN, lam=1.0)
    with pytest.raises(ValueError, match="not symmetric"):
        evaluate_draw(sr.ntr(sr.sqrt(A * Sh + lam * I)), A=A_MAT, Sigma=S_DIAG, n=NN, lam=1.0)


def test_fractional_power_at_rank_deficiency():
    """n < d: Σ̂ has exact zero eigenvalues; its square root is still fine."""
    value, D = evaluate_draw(sr.Tr(sr.sqrt(Sh)), Sigma=S_DIAG, n=10)
    close(value, np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(sh(D)), 0, None))), tol=1e-8)


def test_unsupported_nodes_are_named():
    with pytest.raises(NotImplementedError, match="HadamardProduct"):
        evaluate_draw(sr.Tr(sp.HadamardProduct(Sh, Sigma)), Sigma=S_DIAG, n=NN)


def test_scaled_core_on_the_grid_stays_spectral():
    """(t·Σ̂ + I)⁻¹ with t on the grid: one eigendecomposition, eigenvalues only."""
    from symrmt.montecarlo.bindings import bind
    from symrmt.montecarlo.program import Program
    expr = sr.ntr((lam * Sh + I).inverse()) + sr.ntr(sr.power(lam * X.T * X + I, -sp.Rational(1, 2)))
    value, D = evaluate_draw(expr, seed=2, **BASE)
    ref = [np.trace(np.linalg.inv(l * sh(D) + np.eye(DD))) / DD
           + np.trace(mpow(l * NN * sh(D) + np.eye(DD), -0.5)) / DD for l in LAMS]
    close(value, np.array(ref))
    prog = Program([expr], bind(expr, BASE))
    plan = prog.make_plan(np.random.SeedSequence(0))
    assert plan.need_vectors == frozenset() and plan.block is None
    assert len(prog.cores) == 1  # Σ̂ = XᵀX/n and XᵀX share one core: XᵀX


def test_gcv_composite():
    """Training error over (1 − Tr[Σ̂G]/n)²: sums of products of vectors and
    resolvents, a ratio of traces — against NumPy."""
    eps = sr.GaussianNoise("eps", n, sigma2)
    wbar = sr.Vector("wbar", d)
    y = X * wbar + eps
    w_hat = G * X.T * y / n
    gcv = ((y - X * w_hat).T * (y - X * w_hat) / n) / (1 - sr.Tr(Sh * G) / n) ** 2
    value, D = evaluate_draw(gcv, seed=1, wbar=W_VEC, sigma2=0.3, **BASE)
    ya = D[X] @ W_VEC + np.sqrt(0.3) * D[eps][:, 0]
    ref = []
    for l in LAMS:
        r = ya - D[X] @ inv(sh(D), l) @ D[X].T @ ya / NN
        ref.append((r @ r / NN) / (1 - np.trace(sh(D) @ inv(sh(D), l)) / NN) ** 2)
    close(value, np.array(ref))
