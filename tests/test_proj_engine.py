"""Random projections of pooled data derived by the engine (law
``projected_pooled``, ``symrmt/laws/projected_pooled.py``; nested conditioning
in ``equivalence/features.py``: F given X, then X through the general pooled
law at the stage-F ridge κ).

Model (``derivations/_pooled.PooledRidge.rp_expressions``): ridge on ``Z = XF``,
``X = vstack(X₁, …, X_K)`` (groups with non-commuting ``Σ_k``, different
teachers and noises), ``ŵ = Fâ``, per-group error ``(ŵ − w_g)ᵀΣ_g(ŵ − w_g)``.

Checks:
(a) the engine equals the recipe-level nested route ``_pooled.ProjectedPooled``
    (X given F first, then F; an independent derivation) to ≤ 1e-8 relative, at
    p < d and p > d, over a ridge grid;
(b) equal groups (``Σ₁ = Σ₂``, ``w₁ = w₂``, ``s₁ = s₂``) equal the engine's own
    random-feature ridge ``(Fâ − w)ᵀΣ(Fâ − w)`` (one data matrix) to ≤ 1e-9;
(c) an independent dense NumPy Monte Carlo (``_pooled.dense_group_mc``: draws of
    ``X₁, X₂, ε, F``, Cholesky solve) with tolerance ``k·sem + c·|th|/d``,
    ``k = 4``, ``c = 4``: d = 40 in the default run, d = 80, 160 behind
    ``--runslow`` (the O(1/d) trend);
(d) K = 3 groups against a dense Monte Carlo written here (no other route exists);
(e) words outside the class are refused by name.
"""
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
from _pooled import rp_problem, PooledRidge, ProjectedPooled, dense_group_mc, single_blas_thread  # noqa: E402

import symrmt as sr  # noqa: E402

K, C = 4.0, 4.0


@pytest.fixture(scope="module")
def setup():
    single_blas_thread()
    m = PooledRidge()
    ex = m.expressions()
    m.des = {k: sr.deterministic_equivalent(ex[k]) for k in ("E_1", "E_2")}
    ref = {1: ProjectedPooled(m, "E_1"), 2: ProjectedPooled(m, "E_2")}
    rp = m.rp_expressions()
    des = {g: sr.deterministic_equivalent(rp[f"E_{g} (random projections)"]) for g in (1, 2)}
    return m, ref, des, {g: des[g].compile() for g in (1, 2)}


def _problem(d, seed, p_ratio, lam=0.05):
    return rp_problem(d, p_ratio, lam=lam, seed=seed)


def test_the_engine_derives_it_with_unknowns_delta_k_and_kappa(setup):
    _, _, des, _ = setup
    for de in des.values():
        (g,) = de.groups
        assert g.kind == "projected_pooled" and len(g.unknowns) == 3      # δ₁, δ₂, κ


@pytest.mark.parametrize("p_ratio", [0.5, 2.0])
def test_engine_equals_the_recipe_level_nested_route(setup, p_ratio):
    _, ref, _, fns = setup
    lams = np.array([1e-3, 0.05, 1.0])
    for g in (1, 2):
        b = _problem(30, 3, p_ratio, lam=lams)
        eng = np.asarray(fns[g](**b), dtype=float)
        for i, lam in enumerate(lams):
            r = ref[g](dict(b, lam=float(lam)))
            assert abs(eng[i] - r) <= 1e-8 * abs(r), (p_ratio, g, lam, eng[i], r)


def test_equal_groups_equal_the_engines_random_feature_ridge(setup):
    _, _, _, fns = setup
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
            v = float(fns[g](**b))
            assert abs(v - ref) <= 1e-9 * ref, (dd, pp, nn, g, v, ref)


def _against_mc(fns, d, trials, p_ratio):
    b = _problem(d, 1, p_ratio)
    mc = dense_group_mc(b, trials, seed=7, p=b["p"])
    out = {}
    for g in (1, 2):
        th = float(fns[g](**b))
        mean, sem = mc[g]
        assert abs(mean - th) <= K * sem + C * abs(th) / d, (d, p_ratio, g, th, mean, sem)
        out[g] = (th, mean, sem)
    return out


@pytest.mark.parametrize("p_ratio", [0.5, 2.0])
def test_two_groups_against_dense_monte_carlo(setup, p_ratio):
    _against_mc(setup[3], 40, 600, p_ratio)


@pytest.mark.slow
@pytest.mark.parametrize("p_ratio", [0.5, 2.0])
def test_two_groups_against_dense_monte_carlo_trend(setup, p_ratio):
    errs = {}
    for d, trials in ((80, 800), (160, 400)):
        out = _against_mc(setup[3], d, trials, p_ratio)
        errs[d] = {g: (t, m, s, (m - t) / t) for g, (t, m, s) in out.items()}
    print("theory, MC, sem, rel. gap by d:", errs)


# ------------------------------------------------------------------ three groups
def _three_groups():
    """``(ŵ, w₂, Σ₂)`` of ridge on ``XF``, ``X = vstack(X₁, X₂, X₃)``."""
    n1, n2, n3, d, p = sr.dims("n1 n2 n3 d p")
    lam = sr.scalar("lam")
    Xs, ys = [], []
    for k, n in enumerate((n1, n2, n3), 1):
        S = sr.Covariance(f"Sigma{k}", d)
        X = sr.GaussianData(f"X{k}", n, S)
        Xs.append(X)
        ys.append(X * sr.Vector(f"w{k}", d) + sr.GaussianNoise(f"eps{k}", n, sr.scalar(f"s{k}")))
    X, y, N = sr.vstack(*Xs), sr.vstack(*ys), n1 + n2 + n3
    F = sr.RandomFeatures("F", d, p)
    Z = X * F
    w_hat = F * (Z.T * Z / N + lam * sr.I(p)).inverse() * Z.T * y / N
    return w_hat, sr.Vector("w2", d), sr.Covariance("Sigma2", d)


def _dense_three(b, trials, seed):
    """Independent dense NumPy Monte Carlo for three groups (full matrices):
    ``(mean, sem)`` of ``w₂ᵀΣ₂ŵ`` and of ``E₂ = (ŵ − w₂)ᵀΣ₂(ŵ − w₂)``."""
    rng = np.random.default_rng(seed)
    d, p, lam = b["Sigma1"].shape[0], b["p"], b["lam"]
    chol = [np.linalg.cholesky(b[f"Sigma{k}"]) for k in (1, 2, 3)]
    ns = [b[f"n{k}"] for k in (1, 2, 3)]
    N = sum(ns)
    vals = np.empty((trials, 2))
    for t in range(trials):
        X = np.vstack([rng.standard_normal((n, d)) @ L.T for n, L in zip(ns, chol)])
        y = np.concatenate([X[sum(ns[:k]):sum(ns[:k + 1])] @ b[f"w{k + 1}"]
                            + np.sqrt(b[f"s{k + 1}"]) * rng.standard_normal(ns[k]) for k in range(3)])
        F = rng.standard_normal((d, p)) / np.sqrt(p)
        Z = X @ F
        wh = F @ np.linalg.solve(Z.T @ Z / N + lam * np.eye(p), Z.T @ y / N)
        e = wh - b["w2"]
        vals[t] = b["w2"] @ b["Sigma2"] @ wh, e @ b["Sigma2"] @ e
    return [(float(vals[:, j].mean()), float(vals[:, j].std(ddof=1) / np.sqrt(trials))) for j in (0, 1)]


def _three_bindings(d):
    rng = np.random.default_rng(5)
    Q = [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(2)]
    w = rng.standard_normal(d) / np.sqrt(d)
    return dict(Sigma1=np.diag(np.arange(1, d + 1) ** -1.0),
                Sigma2=Q[0] @ np.diag(np.linspace(0.1, 1.0, d)) @ Q[0].T,
                Sigma3=Q[1] @ np.diag(np.linspace(0.5, 2.0, d) ** 2 / 2) @ Q[1].T,
                n1=d, n2=d // 2, n3=3 * d // 4, lam=0.05, p=3 * d // 4, s1=0.1, s2=0.2, s3=0.3,
                w1=w, w2=w + 0.6 * rng.standard_normal(d) / np.sqrt(d),
                w3=w + 0.3 * rng.standard_normal(d) / np.sqrt(d))


def test_three_groups_against_dense_monte_carlo():
    """The law with K = 3 (unknowns δ₁, δ₂, δ₃, κ) on the one-resolvent
    functional ``w₂ᵀΣ₂ŵ`` (default run; the error ``E₂``, whose two-resolvent
    lift is a 3×3 system, is checked behind ``--runslow``)."""
    single_blas_thread()
    d = 40
    b = _three_bindings(d)
    w_hat, w2, S2 = _three_groups()
    de = sr.deterministic_equivalent(w2.T * S2 * w_hat)
    (g,) = de.groups
    assert g.kind == "projected_pooled" and len(g.unknowns) == 4
    th = float(de.compile()(**b))
    (mean, sem), _ = _dense_three(b, 600, seed=11)
    assert abs(mean - th) <= K * sem + C * abs(th) / d, (th, mean, sem)


@pytest.mark.slow
def test_three_groups_error_against_dense_monte_carlo():
    single_blas_thread()
    d = 40
    b = _three_bindings(d)
    w_hat, w2, S2 = _three_groups()
    th = float(sr.deterministic_equivalent((w_hat - w2).T * S2 * (w_hat - w2)).compile()(**b))
    _, (mean, sem) = _dense_three(b, 1000, seed=11)
    print("K = 3, E_2: theory", th, "MC", mean, "±", sem)
    assert abs(mean - th) <= K * sem + C * abs(th) / d, (th, mean, sem)


# ------------------------------------------------------------------ refusals
def test_words_outside_the_class_are_refused_by_name(setup):
    m = setup[0]
    n1, n2, d, p = m.n1, m.n2, m.d, m.p
    X1 = sr.GaussianData("X1", n1, m.Sigma1)
    X2 = sr.GaussianData("X2", n2, m.Sigma2)
    F = sr.RandomFeatures("F", d, p)
    X = sr.vstack(X1, X2)
    Z = X * F
    G = (Z.T * Z / m.N + m.lam * sr.I(p)).inverse()
    # ‖â‖²-type word: F G G Fᵀ (two resolvents with no FᵀAF between them)
    with pytest.raises(NotImplementedError, match="F outside F"):
        sr.deterministic_equivalent(sr.Tr(F * G * G * F.T * m.Sigma1))
    # a deterministic shift in feature space
    B = sr.Covariance("B", p)
    with pytest.raises(NotImplementedError, match="deterministic shift B in feature space"):
        sr.deterministic_equivalent(sr.Tr((Z.T * Z / m.N + B + m.lam * sr.I(p)).inverse()))
    # a spectral function of the projected pooled core
    with pytest.raises(NotImplementedError, match="randomly projected pooled data"):
        sr.deterministic_equivalent(sr.Tr(sr.sqrt(Z.T * Z / m.N + m.lam * sr.I(p))))
