"""One test per averaging rule (``symrmt/equivalence/averaging.py``).

Each rule is applied to a small word; its output — deterministic words with
the law's unknowns — is evaluated densely (``tests/dense_reference.mat``)
with the unknowns solved HERE by NumPy bisection / fixed-point iteration
(``κ Π_l(1 − df/m_l) = z``; ``Tr K(K+ν)⁻¹ = df``, ``κνdf = nz``;
``δ_k = Tr[Σ_k R]/n_k``), not by the engine's solvers. The reference is a
dense Monte Carlo average of the same trace over NumPy draws of ``X`` (and
``F``), at two sizes ``d ∈ {40, 80}`` (and ``d = 200`` with ``--runslow``;
ratios fixed: ``n = 1.5d``, ``p = d/2``), with tolerance ``K_SEM·sem + C_DIM·|theory|/d``
(``K_SEM = 4``, ``C_DIM = 3``: first-order equivalents are exact up to
O(1/d) relative). Exact identities (bare moments, ``E[FBFᵀ]``, ``XᵀMX``,
unfolding) are checked with ``C_DIM = 0`` or on a single draw.
Then: the strategy's order, the refusals (each naming the word), and the
:class:`Derivation` context object's scoped state."""
import re

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.equivalence import averaging as AV
from symrmt.equivalence.engine import Derivation, Engine
from symrmt.objects import Tr
from symrmt.rewrite import canonical
from symrmt.rewrite.letters import Bare, Core, Det, Fn, Rand, Res, word_matrix

from .dense_reference import mat, scal

K_SEM, C_DIM = 4.0, 3.0
SIZES = (40, 80, pytest.param(200, marks=pytest.mark.slow))

n, d, p, n2 = sr.dims("n d p n2")
lam, mu, tau = sr.scalar("lam"), sr.scalar("mu"), sr.scalar("tau")
Z = {lam: 0.3, mu: 0.7, tau: 1.2}
Sigma, S2 = sr.Covariance("Sigma", d), sr.Covariance("S2", d)
Kc = sr.Covariance("K", n)
A = sr.Deterministic("A", d, d)
Bd = sr.Deterministic("B", d, d)
M = sr.Deterministic("M", n, n)
C = sr.Deterministic("C", p, p)
E = sr.Deterministic("E", p, d)
X = sr.GaussianData("X", n, Sigma)
X2 = sr.GaussianData("X2", n2, S2)
Xk = sr.GaussianData("Xk", n, Sigma, K=Kc)
F = sr.RandomFeatures("F", d, p)
I = sr.I(d)
data, gram, feat = Core(X, "data"), Core(X, "gram"), Core(X, "data", (F,))


# ----------------------------------------------------------------- problem and references
def _spd(rng, D, lo, hi):
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0]
    return (Q * np.linspace(lo, hi, D)) @ Q.T


def _sqrt(S):
    w, V = np.linalg.eigh(S)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


def _env(D, seed=0):
    """Sizes n = 1.5d, n2 = d, p = d/2; Σ, Σ₂, K non-commuting SPD; A, B
    non-symmetric (A = I + noise, so traces are O(1))."""
    rng = np.random.default_rng(seed)
    N, N2, P = 3 * D // 2, D, D // 2
    env = {Sigma: _spd(rng, D, 0.3, 2.0), S2: _spd(rng, D, 0.1, 3.0), Kc: _spd(rng, N, 0.4, 1.8),
           A: np.eye(D) + 0.5 * rng.standard_normal((D, D)) / np.sqrt(D),
           Bd: _spd(rng, D, 0.0, 1.0) + 0.2 * rng.standard_normal((D, D)) / np.sqrt(D),
           M: _spd(rng, N, 0.0, 2.0), C: np.eye(P) + 0.5 * rng.standard_normal((P, P)) / np.sqrt(P),
           "_dims": {n: N, d: D, p: P, n2: N2}}
    env[Bd] = env[Bd] @ env[Bd].T / 2           # PSD, non-scalar, not commuting with Σ
    env.update({s: v for s, v in Z.items()})
    return env


def _word(expr):
    """The single canonical word of ``Tr[expr]`` and its coefficient."""
    ctx = Derivation()
    out = [(c * c2, w2) for c, w in ctx.atom_words(Tr(expr)) for c2, w2 in canonical.exhaust(w)]
    assert len(out) == 1, out
    return out[0]


def _kappa(s, z, sizes):
    """``κ Π_l(1 − df(κ)/m_l) = z`` on the physical branch ``df < min m_l``
    (bisection; the map is increasing there)."""
    m = min(sizes)
    f = lambda k: k * np.prod([1 - np.sum(s / (s + k)) / ml for ml in sizes])
    lo, hi = 1e-12, z + 1.0
    while np.sum(s / (s + hi)) >= m or f(hi) < z:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.sum(s / (s + mid)) >= m or f(mid) < z else (lo, mid)
    return 0.5 * (lo + hi)


def _kappa_nu(s, kv, N, z):
    """Correlated rows: ``Tr K(K+ν)⁻¹ = df(κ)``, ``κ ν df = N z``."""
    from scipy.optimize import brentq

    def nu_of(k):
        df = np.sum(s / (s + k))
        return brentq(lambda v: np.sum(kv / (kv + v)) - df, 1e-14, 1e14, xtol=1e-16, rtol=1e-15)

    h = lambda k: k * nu_of(k) * np.sum(s / (s + k)) - N * z
    ks = np.logspace(-6, 4, 400)
    vals = [h(k) if np.sum(s / (s + k)) < np.sum(kv > 1e-12) - 1e-9 else -1.0 for k in ks]
    i = next(i for i in range(len(ks) - 1) if vals[i] < 0 <= vals[i + 1])
    k = brentq(h, ks[i], ks[i + 1], xtol=1e-16, rtol=1e-15)
    return k, nu_of(k)


def _deltas(Ss, ns, B, z):
    """General law: ``δ_k = Tr[Σ_k R]/n_k``, ``R = (Σ_k Σ_k/(1+δ_k) + B + z)⁻¹`` (damped fixed point)."""
    D = Ss[0].shape[0]
    dl = np.zeros(len(Ss))
    for _ in range(2000):
        R = np.linalg.inv(sum(S / (1 + x) for S, x in zip(Ss, dl)) + B + z * np.eye(D))
        new = np.array([np.trace(S @ R) / m for S, m in zip(Ss, ns)])
        if np.max(np.abs(new - dl)) < 1e-14:
            break
        dl = 0.5 * dl + 0.5 * new
    return new


def _solve(ctx, env, general=None):
    """The registry's unknowns, solved by the functions above (``general``:
    ``{Σ symbol: n_k}`` and ``B`` for a general-law group)."""
    for g in ctx.reg.groups():
        z = float(scal(g.z, env))
        if g.kind == "wishart":
            s = np.linalg.eigvalsh(env[g.Sigma])
            env[g.unknowns[0]] = _kappa(s, z, [int(sp.sympify(m).subs(env["_dims"])) for m in g.sizes])
        elif g.kind == "separable":
            k, v = _kappa_nu(np.linalg.eigvalsh(env[g.Sigma]), np.linalg.eigvalsh(env[g.K]),
                             int(sp.sympify(g.m).subs(env["_dims"])), z)
            env[g.unknowns[0]], env[g.unknowns[1]] = k, v
        else:
            blocks, B = general
            # δ_k = Tr[Σ_k R]/n_k: the block is told by its sample size (R holds every Σ_k)
            order = [next(S for S in blocks if eq.rhs.has(blocks[S])) for eq in g.equations]
            dl = _deltas([env[S] for S in order], [env["_dims"][blocks[S]] for S in order],
                         env[B] if B is not None else 0, z)
            env.update(zip(g.unknowns, dl))
    return env


def _theory(out, env):
    """``Σ c · Π Tr[words]`` of a rule's output, densely."""
    total = 0.0
    for c, ws in out:
        v = complex(scal(c, env))
        for w in ws:
            v *= np.trace(mat(word_matrix(w), env))
        total += v
    assert abs(total.imag) < 1e-9 * max(1, abs(total))
    return total.real


def _check(theory, samples, D, k=K_SEM, c=C_DIM):
    mean, sem = samples.mean(), samples.std(ddof=1) / np.sqrt(len(samples))
    tol = k * sem + c * abs(theory) / D
    assert abs(mean - theory) <= tol, f"theory {theory} vs MC {mean} ± {sem} (d={D}, tol {tol}, k={k}, c={c})"
    return mean, sem


def _draw(env, T, rng, Sig=Sigma, N=None, K=None):
    """``T`` draws of ``X = K^{1/2} Z Σ^{1/2}`` (``T × N × D``)."""
    D = env[Sig].shape[0]
    N = N or env["_dims"][n]
    Zs = rng.standard_normal((T, N, D)) @ _sqrt(env[Sig])
    return _sqrt(env[K]) @ Zs if K is not None else Zs


def _res(Xs, z):
    N, D = Xs.shape[1:]
    return np.linalg.inv(np.swapaxes(Xs, 1, 2) @ Xs / N + z * np.eye(D))


def _tr(*Ms):
    out = Ms[0]
    for m in Ms[1:]:
        out = out @ m
    return np.trace(out, axis1=-2, axis2=-1)


def _run(rule, expr, D, sample, T=300, seed=1, general=None, ctx=None, c=C_DIM):
    """Apply ``rule`` to the word of ``Tr[expr]``, evaluate, compare with
    ``sample(env, T, rng)`` (per-draw values of the same trace, unnormalised)."""
    coeff, word = _word(expr)
    ctx = ctx or Derivation()
    out = rule(ctx, word)
    assert out is not None, f"{rule.__name__} did not apply to {word}"
    env = _solve(ctx, _env(D), general)
    th = float(scal(coeff, env)) * _theory(out, env) / D
    vals = sample(env, T, np.random.default_rng(seed)) / D
    return (th, *_check(th, vals, D, c=c))


# ----------------------------------------------------------------- resolvent rules
@pytest.mark.parametrize("D", SIZES)
def test_rule_one_point(D):
    # Tr[(Σ̂+λ)⁻¹A] ≃ (κ/λ) Tr[(Σ+κ)⁻¹A],  κ(1 − df₁/n) = λ
    _run(AV.rule_one_point, (X.T * X / n + lam * I).inverse() * A, D,
         lambda e, T, r: _tr(_res(_draw(e, T, r), Z[lam]), e[A]))
    # Gram side: Tr[(XXᵀ/n+λ)⁻¹M] ≃ (ν/λ) Tr[(I+ν)⁻¹M],  ν = (n − df₁)/df₁
    def gram_side(e, T, r):
        Xs = _draw(e, T, r)
        H = Xs @ np.swapaxes(Xs, 1, 2) / Xs.shape[1]
        return _tr(np.linalg.inv(H + Z[lam] * np.eye(H.shape[-1])), e[M])
    _run(AV.rule_one_point, (X * X.T / n + lam * sr.I(n)).inverse() * M, D, gram_side)
    # correlated rows X = K^{1/2}ZΣ^{1/2}: Tr K(K+ν)⁻¹ = df₁, κνdf₁ = nλ
    _run(AV.rule_one_point, (Xk.T * Xk / n + lam * I).inverse() * A, D,
         lambda e, T, r: _tr(_res(_draw(e, T, r, K=Kc), Z[lam]), e[A]))
    # not a one-point word
    assert AV.rule_one_point(Derivation(), _word((X.T * X / n + lam * I).inverse() * A
                                                  * (X.T * X / n + mu * I).inverse())[1]) is None


@pytest.mark.parametrize("D", SIZES)
def test_rule_stable_pair(D):
    # Tr[Σ̂(Σ̂+λ)⁻¹A] ≃ Tr[Σ(Σ+κ)⁻¹A]
    def sample(e, T, r):
        Xs = _draw(e, T, r)
        S = np.swapaxes(Xs, 1, 2) @ Xs / Xs.shape[1]
        return _tr(S, _res(Xs, Z[lam]), e[A])
    _run(AV.rule_stable_pair, X.T * X / n * (X.T * X / n + lam * I).inverse() * A, D, sample)


@pytest.mark.parametrize("D", SIZES)
def test_rule_two_point(D):
    # Tr[G(λ)AG(μ)Aᵀ] ≃ w₁w₂{Tr[R₁AR₂Aᵀ] + Tr[ΣR₁AR₂]Tr[AᵀR₁ΣR₂]/(n(1−γ))}
    def sample(e, T, r):
        Xs = _draw(e, T, r)
        return _tr(_res(Xs, Z[lam]), e[A], _res(Xs, Z[mu]), e[A].T)
    _run(AV.rule_two_point, (X.T * X / n + lam * I).inverse() * A * (X.T * X / n + mu * I).inverse() * A.T,
         D, sample)


_G3 = lambda Y, m: ((Y.T * Y / m + lam * I).inverse() * A * (Y.T * Y / m + mu * I).inverse() * A.T
                    * (Y.T * Y / m + tau * I).inverse())


def _sample3(K=None):
    def sample(e, T, r):
        Xs = _draw(e, T, r, K=K)
        return _tr(_res(Xs, Z[lam]), e[A], _res(Xs, Z[mu]), e[A].T, _res(Xs, Z[tau]))
    return sample


@pytest.mark.parametrize("D", SIZES)
def test_rule_kpoint_lift(D):
    # three resolvents at three ridges with non-commuting A between them: the block-bidiagonal lift
    _run(AV.rule_kpoint_lift, _G3(X, n), D, _sample3())
    assert AV.rule_kpoint_lift(Derivation(), _word(_G3(Xk, n))[1]) is None     # correlated: not this rule


@pytest.mark.parametrize("D", SIZES)
def test_rule_correlated_kpoint(D):
    # three resolvents of correlated rows: the lift with sample-side sources
    _run(AV.rule_correlated_kpoint, _G3(Xk, n), D, _sample3(K=Kc))
    assert AV.rule_correlated_kpoint(Derivation(), _word(_G3(X, n))[1]) is None


@pytest.mark.parametrize("D", SIZES)
def test_rule_general_law(D):
    # pooled blocks (Σ₁ ≠ Σ₂, not commuting): (Σ̂₁ + Σ̂₂ + λ)⁻¹ ≃ (Σ₁/(1+δ₁) + Σ₂/(1+δ₂) + λ)⁻¹
    def pooled(e, T, r):
        Y1, Y2 = _draw(e, T, r), _draw(e, T, r, Sig=S2, N=e["_dims"][n2])
        H = (np.swapaxes(Y1, 1, 2) @ Y1 / Y1.shape[1] + np.swapaxes(Y2, 1, 2) @ Y2 / Y2.shape[1]
             + Z[lam] * np.eye(D))
        return _tr(np.linalg.inv(H), e[A])
    _run(AV.rule_general_law, (X.T * X / n + X2.T * X2 / n2 + lam * I).inverse() * A, D, pooled,
         general=({Sigma: n, S2: n2}, None))

    # a non-scalar deterministic shift B: (Σ̂ + B + λ)⁻¹ ≃ (Σ/(1+δ) + B + λ)⁻¹
    def shifted(e, T, r):
        Xs = _draw(e, T, r)
        H = np.swapaxes(Xs, 1, 2) @ Xs / Xs.shape[1] + e[Bd] + Z[lam] * np.eye(D)
        return _tr(np.linalg.inv(H), e[A])
    _run(AV.rule_general_law, (X.T * X / n + Bd + lam * I).inverse() * A, D, shifted,
         general=({Sigma: n}, Bd))


@pytest.mark.parametrize("D", SIZES)
def test_rule_sample_side(D):
    # exact: E Tr[XᵀMXA] = Tr[M] Tr[ΣA] (no resolvent), MC with c = 0
    def bare(e, T, r):
        Xs = _draw(e, T, r)
        return _tr(np.swapaxes(Xs, 1, 2), e[M], Xs, e[A])
    th, _, _ = _run(AV.rule_sample_side, X.T * M * X * A, D, bare, c=0.0)
    e = _env(D)
    assert np.isclose(th, np.trace(e[M]) * np.trace(e[Sigma] @ e[A]) / D, rtol=1e-12)

    # XᵀMX/n next to a resolvent: the lift with sample-side sources
    def sandwich(e, T, r):
        Xs = _draw(e, T, r)
        return _tr(np.swapaxes(Xs, 1, 2), e[M], Xs, _res(Xs, Z[lam]), e[A]) / Xs.shape[1]
    _run(AV.rule_sample_side, X.T * M * X / n * (X.T * X / n + lam * I).inverse() * A, D, sandwich)


# ----------------------------------------------------------------- random features
def _feat(e, T, r):
    D, P = e[Sigma].shape[0], e["_dims"][p]
    return r.standard_normal((T, D, P)) / np.sqrt(P)


def _res_f(Xs, Fs, z):
    H = np.swapaxes(Xs @ Fs, 1, 2) @ (Xs @ Fs) / Xs.shape[1]
    return np.linalg.inv(H + z * np.eye(H.shape[-1]))


_GF = (F.T * X.T * X * F / n + lam * sr.I(p)).inverse()


@pytest.mark.parametrize("D", SIZES)
def test_rule_chain_sandwich(D):
    # 𝔉G𝔉ᵀ ≃ (κ₁/λ)(Σ+κ)⁻¹, κ₁ = κ(1 − df/p), κ(1 − df/n)(1 − df/p) = λ
    def sandwich(e, T, r):
        Xs, Fs = _draw(e, T, r), _feat(e, T, r)
        return _tr(Fs, _res_f(Xs, Fs, Z[lam]), np.swapaxes(Fs, 1, 2), e[A])
    _run(AV.rule_chain_sandwich, F * _GF * F.T * A, D, sandwich)

    # Tr G ≃ (p − df)/λ
    def trace(e, T, r):
        Xs, Fs = _draw(e, T, r), _feat(e, T, r)
        return _tr(_res_f(Xs, Fs, Z[lam]))
    _run(AV.rule_chain_sandwich, _GF, D, trace)


@pytest.mark.parametrize("D", SIZES)
def test_rule_random_features(D):
    # nested conditioning (features given, then averaged): Tr[Σ𝔉G𝔉ᵀΣ𝔉G𝔉ᵀ], two feature resolvents
    def sample(e, T, r):
        Xs, Fs = _draw(e, T, r), _feat(e, T, r)
        P = Fs @ _res_f(Xs, Fs, Z[lam]) @ np.swapaxes(Fs, 1, 2)
        return _tr(e[Sigma], P, e[Sigma], P)
    _run(AV.rule_random_features, F * _GF * F.T * Sigma * F * _GF * F.T * Sigma, D, sample)
    # inside the features-legacy switch the rule steps aside
    ctx = Derivation()
    with ctx.features_legacy():
        assert AV.rule_random_features(ctx, _word(F * _GF * F.T * A)[1]) is None


def test_rule_unfold_bare_chain():
    # exact: 𝔉ᵀΣ̂𝔉 = Fᵀ Σ̂ F letter by letter, checked on one draw
    word = (Bare(feat), Det(C))
    out = AV.rule_unfold_bare_chain(Derivation(), word)
    assert out == [(1, ((Rand(F, True), Bare(data), Rand(F), Det(C)),))]
    e = _env(40)
    r = np.random.default_rng(3)
    e[X] = _draw(e, 1, r)[0]
    e[F] = _feat(e, 1, r)[0]
    lhs = np.trace(mat(word_matrix(word), e))
    rhs = np.trace(mat(word_matrix(out[0][1][0]), e))
    assert np.isclose(lhs, rhs, rtol=1e-12)
    assert AV.rule_unfold_bare_chain(Derivation(), (Bare(data), Det(A))) is None


@pytest.mark.parametrize("D", SIZES)
def test_rule_paired_features(D):
    # exact: E[F C Fᵀ] = Tr[C]/p · I, so E Tr[F C Fᵀ A] = Tr C · Tr A / p
    def sample(e, T, r):
        Fs = _feat(e, T, r)
        return _tr(Fs, e[C], np.swapaxes(Fs, 1, 2), e[A])
    th, _, _ = _run(AV.rule_paired_features, F * C * F.T * A, D, sample, T=400, c=0.0)
    e = _env(D)
    assert np.isclose(th, np.trace(e[C]) * np.trace(e[A]) / e["_dims"][p] / D, rtol=1e-12)


# ----------------------------------------------------------------- bare moments (exact for Gaussian rows)
@pytest.mark.parametrize("D", SIZES)
def test_rule_bare_moments(D):
    Sh = X.T * X / n

    def second(e, T, r):
        Xs = _draw(e, T, r)
        S = np.swapaxes(Xs, 1, 2) @ Xs / Xs.shape[1]
        return _tr(S, e[A].T, S, e[A])
    # variance mode keeps both pairings: E[Σ̂BΣ̂] = ΣBΣ + (ΣBᵀΣ + ΣTr[BΣ])/n exactly (c = 0)
    ctx = Derivation(variance_mode=True)
    th, _, _ = _run(AV.rule_bare_moments, Sh * A.T * Sh * A, D, second, T=400, ctx=ctx, c=0.0)
    e = _env(D)
    S, Am, N = e[Sigma], e[A], e["_dims"][n]
    exact = (np.trace(S @ Am.T @ S @ Am) + (np.trace(S @ Am @ S @ Am) + np.trace(Am.T @ S) * np.trace(S @ Am)) / N) / D
    assert np.isclose(th, exact, rtol=1e-12)
    # first order drops exactly the transposed pairing Tr[ΣAΣA]/n
    _, word = _word(Sh * A.T * Sh * A)
    th1 = _theory(AV.rule_bare_moments(Derivation(), word), e) / D
    assert np.isclose(exact - th1, np.trace(S @ Am @ S @ Am) / N / D, rtol=1e-10)

    # correlated rows: E[Σ̂] = Σ Tr K/n exactly
    def first(e, T, r):
        Xs = _draw(e, T, r, K=Kc)
        return _tr(np.swapaxes(Xs, 1, 2) @ Xs / Xs.shape[1], e[A])
    th, _, _ = _run(AV.rule_bare_moments, Xk.T * Xk / n * A, D, first, T=400, c=0.0)
    assert np.isclose(th, np.trace(e[Kc]) / N * np.trace(S @ Am) / D, rtol=1e-12)


# ----------------------------------------------------------------- refusals, each naming the word
def _raises(rule, word, match):
    with pytest.raises(NotImplementedError, match=match) as info:
        rule(Derivation(), word)
    assert AV.canonical_str(word) in str(info.value), info.value
    return info


def test_refusals_name_the_word():
    _raises(AV.refuse_feature_two_point, (Res(feat, lam), Det(C), Res(feat, mu), Det(C)),
            "two resolvents of the feature-space core")
    _raises(AV.refuse_bare_apart, (Bare(data), Det(A), Res(data, lam), Det(Bd)), "apart from its resolvent")
    _raises(AV.refuse_kpoint, (Res(gram, lam), Det(M), Res(gram, mu), Det(M), Res(gram, tau)), "k ≥ 3")
    # another letter sharing the core's randomness: every resolvent rule refuses it first
    shared = (Res(data, lam), Det(A), Res(Core(X, "data", (), 1), mu), Det(A))    # XᵀX/n and sr.sample_covariance(X)
    for rule in (AV.refuse_feature_two_point, AV.rule_chain_sandwich, AV.rule_stable_pair, AV.rule_one_point,
                 AV.rule_two_point, AV.rule_kpoint_lift):
        _raises(rule, shared, "share randomness")
    # the final refusal: a data matrix outside a sample covariance, or no rule at all
    _raises(AV.refuse, (Rand(X, True), Det(M), Rand(X), Det(A)), "appears outside a sample covariance")
    fn = (Fn(data, ((lam, sp.Rational(1, 2)),), None), Det(A))
    info = _raises(AV.AVERAGE, fn, "no averaging rule applies")
    # rules that do not apply say so
    for rule in AV.RULES[:-1]:
        assert rule(Derivation(), (Det(A),)) is None, rule.__name__
    assert info is not None


def test_unpaired_features_refused():
    _raises(AV.rule_paired_features, (Rand(F), Det(C), Det(E)), "unpaired random features F")


# ----------------------------------------------------------------- the strategy
def test_strategy_tries_rules_in_order():
    assert AV.AVERAGE.strategies == AV.RULES
    assert AV.RULES[-1] is AV.refuse
    # the module docstring lists the rules in the order they are tried
    listed = re.findall(r"^\s*\d+\. :func:`(\w+)`", AV.__doc__, re.M)
    assert listed == [r.__name__ for r in AV.RULES]
    # a spy strategy: rules are called in order until the first that applies
    calls = []

    def spy(rule):
        def wrapped(ctx, word):
            calls.append(rule.__name__)
            return rule(ctx, word)
        return wrapped
    strategy = canonical.first_match(*[spy(r) for r in AV.RULES])
    word = _word((X.T * X / n + lam * I).inverse() * A)[1]
    ctx = Derivation()
    out = strategy(ctx, word)
    k = AV.RULES.index(AV.rule_one_point)
    assert calls == [r.__name__ for r in AV.RULES[:k + 1]]
    assert out == AV.AVERAGE(ctx, word) == AV.rule_one_point(ctx, word)
    # a lone Σ̂ next to its resolvent: the stable pair comes before the bare refusal and the one-point rule
    pair = (Bare(data), Res(data, lam), Det(A))
    assert AV.AVERAGE(ctx, pair) == AV.rule_stable_pair(ctx, pair)
    assert AV.rule_one_point(ctx, pair) is None
    with pytest.raises(NotImplementedError, match="apart from its resolvent"):
        AV.AVERAGE(ctx, (Bare(data), Det(A), Res(data, lam), Det(A)))
    # the engine averages by the strategy
    assert Engine is Derivation
    assert ctx.average_one(word) == AV.AVERAGE(ctx, word)


# ----------------------------------------------------------------- the Derivation context object
def test_derivation_scoped_state():
    ctx = Derivation()
    assert ctx.variance_mode is False and ctx.features_legacy_on is False
    with ctx.variance():
        assert ctx.variance_mode is True
        with ctx.variance(False):
            assert ctx.variance_mode is False
        assert ctx.variance_mode is True
    assert ctx.variance_mode is False
    with pytest.raises(RuntimeError):          # restored on an exception too
        with ctx.variance():
            raise RuntimeError
    assert ctx.variance_mode is False
    with ctx.features_legacy():
        assert ctx.features_legacy_on and ctx._features_legacy
    assert not ctx.features_legacy_on
    ctx._features_legacy = True                # shim kept for features.py
    assert ctx.features_legacy_on
    ctx._features_legacy = False
    assert Derivation(variance_mode=True).variance_mode is True
    # integration variables are numbered per derivation; memo tables are per derivation
    t0, t1 = ctx.new_theta(), ctx.new_theta()
    assert t0 != t1 and ctx.thetas == [t0, t1]
    ctx.memo("x")["k"] = 1
    assert ctx.memo("x") == {"k": 1} and Derivation().memo("x") == {}
    # the active-word guard refuses a word asked for again inside its own average, by name
    word = (Res(data, lam), Det(A))
    with ctx.averaging(word):
        with pytest.raises(NotImplementedError, match="rules return it unchanged"):
            with ctx.averaging(word):
                pass
    with ctx.averaging(word):      # released on exit
        pass


def test_covariance_scopes_variance_mode():
    # covariance.cov_value averages in variance mode through ctx.variance(): restored after, also on a refusal
    from symrmt.equivalence.covariance import cov_value
    ctx = Derivation()
    G = (X.T * X / n + lam * I).inverse()
    v = cov_value(ctx, Tr(G * A), Tr(G * A))
    assert v != 0 and ctx.variance_mode is False
    with pytest.raises(NotImplementedError):
        cov_value(ctx, Tr(X.T * M * X * G), Tr(G))      # X outside XᵀX while copies are compared: refused
    assert ctx.variance_mode is False
