"""One-point equivalents (issue 2): derived values and equations against
the forms of docs/math.md, symbolically where SymPy can decide it and otherwise
at random numeric points to 1e-12 (dense reference, tests/dense_reference.py).
"""
import numpy as np
import pytest
import sympy as sp
from sympy import Identity

import symrmt as sr
from symrmt import Tr
from symrmt.equivalence import deterministic_equivalent as DE

from .dense_reference import evaluate

n, d, p, p2, p3 = sr.dims("n d p p2 p3")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)


def R(k):
    return (Sigma + k * Identity(d)).inverse()


def df(k):
    return Tr(Sigma * R(k))


def zero(e, trials=3):
    """``e == 0``: structurally after expansion, else at random numeric points
    (random spectra, vectors, κ, λ, dimensions) to 1e-12 relative — identities
    between spectral functionals (e.g. Tr[ΣR] + κTr[R] = d) are not known to
    SymPy."""
    e = sp.expand(e)
    if e == 0:
        return True
    return all(abs(v) <= 1e-12 * scale for v, scale in (_at_random_point(e, seed) for seed in range(trials)))


def _at_random_point(e, seed):
    from .dense_reference import mat, scal
    rng = np.random.default_rng(seed)
    D, N = int(rng.integers(3, 7)), int(rng.integers(8, 12))
    env = {"_dims": {d: D, n: N, p: int(rng.integers(5, 9)), p2: int(rng.integers(5, 9)),
                     p3: int(rng.integers(5, 9))}}
    for s in e.free_symbols:
        if isinstance(s, sp.Symbol) and s not in env["_dims"]:
            env[s] = float(rng.uniform(0.2, 2.0))
    for m in e.atoms(sp.MatrixSymbol):
        r, c = (int(sp.sympify(x).subs(env["_dims"])) for x in m.shape)
        if getattr(m, "is_symmetric", False):
            env[m] = np.diag(rng.uniform(0.1, 2.0, r))
        else:
            env[m] = rng.standard_normal((r, c))
    # scale: the size of the individual terms
    terms = [abs(scal(t, env)) for t in sp.Add.make_args(e)]
    return scal(e, env), max(terms + [1.0])


def iid_cases():
    X = sr.GaussianData("X", n, Sigma)
    Sh = X.T * X / n
    G = (Sh + lam * sr.I(d)).inverse()
    return [(sr.ntr(G), lambda k: k / lam * Tr(R(k)) / d),
            (sr.ntr(Sigma * G), lambda k: k / lam * df(k) / d),
            (sr.ntr(Sh * G), lambda k: df(k) / d),
            (w.T * G * w, lambda k: k / lam * sr.Form(w.T * R(k) * w))]


@pytest.mark.parametrize("case", range(4))
def test_iid_values_and_equation_match_math(case):
    expr, expected = iid_cases()[case]
    de = DE(expr)
    (k,) = de.unknowns
    assert str(k) == "kappa"
    assert zero(de.value - expected(k))
    (eq,) = de.equations
    assert zero((eq.lhs - eq.rhs) - (k * (1 - df(k) / n) - lam))


def test_isotropic_reproduces_marchenko_pastur_quadratic():
    s = sp.Symbol("s", positive=True)
    X = sr.GaussianData("X", n, Sigma)
    de = DE(sr.ntr((X.T * X / n + lam * sr.I(d)).inverse()))
    (k,) = de.unknowns
    (eq,) = de.equations
    # Σ = sI:  Tr[Σ(Σ+κ)⁻¹] = d s/(s+κ)
    iso = (eq.lhs - eq.rhs).xreplace({df(k): d * s / (s + k)})
    q = d / n
    mp = k**2 + k * (s - lam - q * s) - lam * s
    assert zero(sp.together(iso * (s + k)) - mp)


def test_sample_covariance_ddof1_uses_n_minus_1():
    X = sr.GaussianData("X", n, Sigma, mean=sr.Vector("mu", d))
    de = DE(sr.ntr((sr.sample_covariance(X, ddof=1) + lam * sr.I(d)).inverse()))
    (k,) = de.unknowns
    (eq,) = de.equations
    assert zero((eq.lhs - eq.rhs) - (k * (1 - df(k) / (n - 1)) - lam))


# ------------------------------------------------------------- random features
def rf_cases(layers):
    X = sr.GaussianData("X", n, Sigma)
    sizes = [p, p2, p3][:layers]
    Fs, prev = [], d
    for i, q in enumerate(sizes):
        Fs.append(sr.RandomFeatures(f"F{i}", prev, q))
        prev = q
    C = Fs[0]
    for F in Fs[1:]:
        C = C * F
    P = sizes[-1]
    ShF = C.T * X.T * X * C / n
    G = (ShF + lam * sr.I(P)).inverse()
    shrink = lambda k: sp.Mul(*[(1 - df(k) / q) for q in sizes])
    return sizes, P, [
        (sr.ntr(G), lambda k: (1 - df(k) / P) / lam),
        (sr.ntr(C.T * Sigma * C * G), lambda k: k * shrink(k) / lam * df(k) / P),
        (sr.ntr(ShF * G), lambda k: df(k) / P),
        ((C.T * w).T * G * (C.T * w), lambda k: k * shrink(k) / lam * sr.Form(w.T * R(k) * w)),
    ]


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("case", range(4))
def test_random_features_match_product_of_s_transforms(layers, case):
    sizes, P, cases = rf_cases(layers)
    expr, expected = cases[case]
    de = DE(expr)
    (k,) = de.unknowns
    (eq,) = de.equations
    # docs/math.md: κ = λ / [(1 − df/n) Π_l (1 − df/p_l)]
    target = k * (1 - df(k) / n) * sp.Mul(*[(1 - df(k) / q) for q in sizes]) - lam
    assert zero((eq.lhs - eq.rhs) - target)
    assert zero(de.value - expected(k))


# ------------------------------------------------------------- correlated samples
def _S_K_at(kv, t):
    """Independent route: S_K(−t) from K's eigenvalues via ψ_K (docs/math.md):
    find μ with tr[K(K+μ)⁻¹] = t, then S_K(−t) = (1 − t)/(μ t)."""
    from scipy.optimize import brentq
    mu = brentq(lambda m: np.mean(kv / (kv + m)) - t, 1e-14, 1e14, xtol=1e-15, rtol=1e-15)
    return (1 - t) / (mu * t)


@pytest.mark.parametrize("which", range(4))
def test_correlated_samples_kappa_from_S_K(which):
    K = sr.Covariance("K", n)
    X = sr.GaussianData("X", n, Sigma, K=K)
    Sh = X.T * X / n
    G = (Sh + lam * sr.I(d)).inverse()
    exprs = [sr.ntr(G), sr.ntr(Sigma * G), sr.ntr(Sh * G), w.T * G * w]
    de = DE(exprs[which])
    kappa, nu = de.unknowns
    rng = np.random.default_rng(which)
    D, N = 7, 11
    sv = rng.uniform(0.1, 2, D)
    kv = rng.uniform(0.2, 1.8, N)
    kv *= N / kv.sum()
    wv = rng.standard_normal((D, 1))
    env = {Sigma: np.diag(sv), K: np.diag(kv), lam: 0.3, w: wv}
    got = evaluate(de, env, {d: D, n: N})
    # κ must satisfy κ = λ S_W(−df/d) with S_W(w) = S_K(qw)/(1+qw), q = d/n
    from .dense_reference import solve_groups
    e2 = dict(env, _dims={d: D, n: N})
    solve_groups(de, e2)
    k = e2[kappa]
    dfv = np.sum(sv / (sv + k))
    t = dfv / N
    assert k == pytest.approx(0.3 * _S_K_at(kv, t) / (1 - t), rel=1e-12)
    Rv = 1 / (sv + k)
    expected = [k / 0.3 * Rv.mean(), k / 0.3 * np.mean(sv * Rv), np.mean(sv * Rv),
                k / 0.3 * float(wv[:, 0] ** 2 @ Rv)][which]
    assert got == pytest.approx(expected, rel=1e-12)


def test_two_copies_of_one_law_share_kappa():
    X1, X2 = sr.GaussianData("X1", n, Sigma), sr.GaussianData("X2", n, Sigma)
    G1 = (X1.T * X1 / n + lam * sr.I(d)).inverse()
    G2 = (X2.T * X2 / n + lam * sr.I(d)).inverse()
    de = DE(sr.ntr(G1 * Sigma * G2))
    assert len(de.unknowns) == 1
    (k,) = de.unknowns
    assert zero(de.value - (k / lam) ** 2 * Tr(Sigma * R(k) ** 2) / d)


def test_latex_and_repr_are_readable():
    X = sr.GaussianData("X", n, Sigma)
    de = DE(sr.ntr(Sigma * (X.T * X / n + lam * sr.I(d)).inverse()))
    tex = de.latex()
    assert r"\kappa" in tex and r"\lambda" in tex and r"\operatorname{Tr}" in tex
    r = repr(de)
    assert "kappa" in r and "equation" in r and "assumes" in r


def test_numeric_zero_check_can_fail():
    k = sp.Symbol("kappa", positive=True)
    assert not zero(df(k) / d - k / lam * Tr(R(k)) / d)
    assert zero(df(k) + k * Tr(R(k)) - d)  # Tr[Σ(Σ+κ)⁻¹] + κTr[(Σ+κ)⁻¹] = d
