"""One test per canonicalisation rule (``symrmt/rewrite/canonical.py``): each
rule, applied to a word, must return a sum of words equal to it — checked on a
random draw by dense NumPy (``tests/dense_reference.mat``, no symrmt numerics)
through ``Tr[word · T]`` with a random test matrix ``T`` (the words are read
cyclically, so the trace is the invariant). Then the strategy's order, and
that a rule that does not apply says so (``None``)."""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.rewrite import canonical as C
from symrmt.rewrite.letters import Bare, Core, Det, Fn, Rand, Res, word_matrix

from .dense_reference import mat

N, D, P = 9, 6, 4
n, d, p = sr.dims("n d p")
z1, z2 = sp.Rational(3, 10), sp.Rational(7, 10)
Sigma = sr.Covariance("Sigma", d)
A = sr.Deterministic("A", d, d)
Bn = sr.Deterministic("Bn", n, n)
X = sr.GaussianData("X", n, Sigma)
F = sr.RandomFeatures("F", d, p)
data, gram = Core(X, "data"), Core(X, "gram")
feat = Core(X, "data", (F,))
OPT = C.Options()


def _env(seed=0):
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.5, 2.0, D)
    Q = np.linalg.qr(rng.standard_normal((D, D)))[0]
    S = (Q * s) @ Q.T
    return {Sigma: S, A: rng.standard_normal((D, D)), Bn: rng.standard_normal((N, N)),
            X: rng.standard_normal((N, D)) @ np.linalg.cholesky(S).T,
            F: rng.standard_normal((D, P)) / np.sqrt(P),
            "_dims": {n: N, d: D, p: P}}


def _trace(word, env):
    M = mat(word_matrix(word), env)
    return np.trace(M)


def _check(rule, word, i=0, opt=OPT):
    out = rule(word, i, opt)
    assert out is not None, f"{rule.__name__} did not apply to {word}"
    env = _env()
    lhs = _trace(word, env)
    rhs = sum(complex(sp.sympify(c).subs(env["_dims"])) * _trace(w, env) for c, w in out)
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs)), (rule.__name__, lhs, rhs)
    return out


def test_rule_sample_covariance():
    # Tr[Xᵀ X A] = n Tr[Σ̂ A]; Tr[X Xᵀ Bn] = n Tr[Σ̂ₙ Bn]
    out = _check(C.rule_sample_covariance, (Rand(X, True), Rand(X), Det(A)))
    assert out == [(X.n, (Bare(data), Det(A)))]
    _check(C.rule_sample_covariance, (Rand(X), Rand(X, True), Det(Bn)))


def test_rule_resolvent_identity():
    # Tr[Σ̂ (Σ̂+z)⁻¹ A Σ̂] = Tr[A Σ̂] − z Tr[(Σ̂+z)⁻¹ A Σ̂] (not a lone pair: two bare copies)
    w = (Bare(data), Res(data, z1), Det(A), Bare(data))
    out = _check(C.rule_resolvent_identity, w)
    assert len(out) == 2 and out[1][0] == -z1
    # a lone pair is kept for the engine's direct average, unless asked not to
    lone = (Bare(data), Res(data, z1), Det(A))
    assert C.rule_resolvent_identity(lone, 0, OPT) is None
    _check(C.rule_resolvent_identity, lone, opt=C.Options(keep_lone_pairs=False))


def test_rule_merge_functions():
    # (Σ̂+z₁)^{1/2} (Σ̂+z₁)^{-1} = (Σ̂+z₁)^{-1/2}; checked densely through the eigendecomposition
    half = Fn(data, ((z1, sp.Rational(1, 2)),), None)
    out = C.rule_merge_functions((half, Res(data, z1), Det(A)), 0, OPT)
    assert out is not None and len(out) == 1
    (c, (f, a)) = out[0]
    assert c == 1 and isinstance(f, Fn) and f.factors == ((z1, sp.Rational(-1, 2)),) and a == Det(A)
    env = _env()
    Sh = env[X].T @ env[X] / N
    e, V = np.linalg.eigh(Sh)
    lhs = np.trace((V * np.sqrt(e + 0.3)) @ V.T @ np.linalg.inv(Sh + 0.3 * np.eye(D)) @ env[A])
    rhs = np.trace((V / np.sqrt(e + 0.3)) @ V.T @ env[A])
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    # a function next to a deterministic matrix: the rule does not apply
    two = Fn(data, ((z2, sp.Integer(-1)), (z1, sp.Rational(1, 2))), None)
    assert C.rule_merge_functions((two, Det(A)), 0, OPT) is None      # a function next to a matrix


def test_rule_feature_core():
    # Tr[Fᵀ Σ̂ F B] with the feature-space core: identical matrices
    Bp = sr.Deterministic("Bp", p, p)
    w = (Rand(F, True), Bare(data), Rand(F), Det(Bp))
    env = _env()
    env[Bp] = np.random.default_rng(1).standard_normal((P, P))
    out = C.rule_feature_core(w, 0, OPT)
    assert out == [(1, (Bare(feat), Det(Bp)))]
    assert abs(_trace(w, env) - _trace(out[0][1], env)) <= 1e-10 * abs(_trace(w, env))


def test_rule_push_through():
    # Tr[X (Σ̂+z)⁻¹ Xᵀ Bn] = n Tr[Bn] − n z Tr[(Σ̂ₙ+z)⁻¹ Bn], and the mirror
    _check(C.rule_push_through, (Rand(X), Res(data, z1), Rand(X, True), Det(Bn)))
    _check(C.rule_push_through, (Rand(X, True), Res(gram, z2), Rand(X), Det(A)))
    # wrong side: X (Σ̂ₙ+z)⁻¹ Xᵀ does not match
    assert C.rule_push_through((Rand(X), Res(gram, z1), Rand(X, True)), 0, OPT) is None


def test_strategy_order_and_exhaust():
    """Merging comes first, then two-letter, then three-letter rules; the
    exhaustive rewrite of ``Tr[X(Σ̂+z₁)⁻¹XᵀX Xᵀ Bn]`` equals the word."""
    w = (Rand(X), Res(data, z1), Rand(X, True), Rand(X), Rand(X, True), Det(Bn))
    assert C.step(w) is not None
    out = C.exhaust(w)
    assert all(C.step(v) is None for _, v in out)
    env = _env(3)
    lhs = _trace(w, env)
    rhs = sum(complex(sp.sympify(c).subs(env["_dims"])) * _trace(v, env) for c, v in out)
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    assert [s.rules for s in C.CANONICAL.strategies] == [
        (C.rule_merge_functions,), (C.rule_sample_covariance, C.rule_resolvent_identity),
        (C.rule_feature_core, C.rule_push_through)]


def test_a_mean_is_refused_by_name():
    Xm = sr.GaussianData("Xm", n, Sigma, mean=sr.Vector("mu", d))
    with pytest.raises(NotImplementedError, match="Xm has a nonzero mean"):
        C.rule_sample_covariance((Rand(Xm, True), Rand(Xm)), 0, OPT)
