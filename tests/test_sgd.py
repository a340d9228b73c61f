"""SGD learning curves (``sr.SGD``, ``symrmt/dynamics``): theory against the
simulated SGD iterates of the same definition.

Tolerances: ``|theory − mc| ≤ K·sem + c·|theory|/d``.
- One-pass (linear, fixed or random ``F``): the moment recursion is an exact
  finite-``d`` identity for Gaussian data, so ``c = 0`` (``K = 4``; a
  ``1e-12`` relative floor covers ``t = 0``, where both are exact).
- Multi-pass: the default theory is the two-point deterministic equivalent
  of the closed Volterra recursion (first order in the proportional limit,
  one closure; ``tests/test_sgd_equivalent.py`` has its own tests):
  ``K = 4`` on the sem and ``c = C_MULTI = 4``. ``method="conditional"``
  (the closure on each data set, averaged) is tested where named.
- ``B = n`` is full-batch GD: equal to the ``sr.matrix_function`` route to
  1e-10 (on the same data draw, and for the deterministic equivalents).
"""
import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.dynamics import SGD, StabilityError
from symrmt.montecarlo import evaluate_draw

K = 4.0
C_MULTI = 4.0


def problem(d, alpha=1.0, beta=0.5):
    s = np.arange(1, d + 1, dtype=float) ** -alpha
    w = np.arange(1, d + 1, dtype=float) ** -beta
    return s, w / np.linalg.norm(w)


def check(th, th_sem, mc, d, c):
    th, th_sem = np.asarray(th), np.asarray(th_sem)
    sem = np.hypot(mc.sem, th_sem)
    tol = K * sem + c * np.abs(th) / d + 1e-12 * np.abs(th)
    err = np.abs(mc.mean - th)
    assert np.all(err <= tol), f"theory {th} vs MC {mc.mean} ± {sem}: {err} > {tol} (K={K}, c={c}, d={d})"


# ----------------------------------------------------------------- one-pass
@pytest.mark.parametrize("B", [1, 8])
def test_onepass_linear_exact(B):
    d = 20
    s, w = problem(d, 1.5)
    g = SGD(s, w, 0.1, lr=0.4 if B == 1 else 1.0, batch=B)
    t = np.array([0, 1, 3, 10, 30])
    th = g.theory(t)
    mc = g.monte_carlo(t, trials=3000, seed=1)
    check(th.risk, 0, mc.risk, d, c=0)
    check(th.train, 0, mc.train, d, c=0)


def test_onepass_full_sigma_matches_eigenbasis():
    """A 2-D ``Σ = U diag(s) Uᵀ`` with target ``Uw`` gives the curve of the
    diagonal problem (exact), and the simulation in the rotated basis agrees."""
    d = 15
    s, w = problem(d, 1.0)
    U = np.linalg.qr(np.random.default_rng(3).standard_normal((d, d)))[0]
    t = np.array([0, 2, 7, 25])
    g1 = SGD(s, w, 0.05, lr=0.5, batch=4)
    g2 = SGD(U @ np.diag(s) @ U.T, U @ w, 0.05, lr=0.5, batch=4)
    np.testing.assert_allclose(g2.theory(t).risk, g1.theory(t).risk, rtol=1e-12)
    check(g2.theory(t).risk, 0, g2.monte_carlo(t, trials=2000, seed=2).risk, d, c=0)


def test_onepass_infinite_batch_is_population_gd():
    """``B → ∞``: one-pass SGD is GD on the population loss,
    ``E[R(t)] = Σ_i λ_i (1 − ηλ_i)^{2t} (w*_i)² + σ²`` (w₀ = 0). (One-pass with
    ``B = n`` is *not* GD on a data set: each step sees a fresh batch.)"""
    s, w = problem(30, 1.0)
    t = np.array([0, 1, 5, 50])
    got = SGD(s, w, 0.2, lr=1.2, batch=10 ** 12).theory(t).risk
    ref = [np.sum(s * (1 - 1.2 * s) ** (2 * k) * w ** 2) + 0.2 for k in t]
    np.testing.assert_allclose(got, ref, rtol=1e-9)


@pytest.mark.parametrize("p", [10, 30])
def test_onepass_random_features_fixed_F_exact(p):
    """RF with a fixed ``F`` (``p < d`` and ``p > d``: singular ``Σ_F``)
    reduces exactly to linear SGD with ``Σ_F = FᵀΣF`` and noise ``σ² + σ_F²``."""
    d = 20
    s, w = problem(d, 1.0)
    F = np.random.default_rng(5).standard_normal((d, p)) / np.sqrt(p)
    g = SGD(s, w, 0.1, lr=0.5, batch=8, features=F)
    t = np.array([0, 1, 5, 20])
    check(g.theory(t).risk, 0, g.monte_carlo(t, trials=2000, seed=4).risk, d, c=0)


def test_onepass_random_features_averaged_over_F():
    d, p = 20, 15
    s, w = problem(d, 1.0)
    g = SGD(s, w, 0.1, lr=0.5, batch=8, features=p)
    t = np.array([0, 3, 20])
    th = g.theory(t, trials=400, seed=7)
    mc = g.monte_carlo(t, trials=1500, seed=8)
    check(th.risk, th.risk_sem, mc.risk, d, c=0)


# ----------------------------------------------------------------- multi-pass
@pytest.mark.parametrize("d", [20, 40])
@pytest.mark.parametrize("B", [1, 8, "n"])
def test_multipass_linear_against_simulation(B, d):
    s, w = problem(d, 1.0)
    n = 2 * d
    B = n if B == "n" else B
    g = SGD(s, w, 0.1, lr={1: 0.2, 8: 0.5}.get(B, 0.8), batch=B, passes="multi", n=n)
    t = np.array([0, 5, 30, 100])
    th = g.theory(t, trials=32, seed=11)
    mc = g.monte_carlo(t, trials=200, seed=12)
    check(th.risk, th.risk_sem, mc.risk, d, c=C_MULTI)
    check(th.train, th.train_sem, mc.train, d, c=C_MULTI)


def test_multipass_closure_tends_to_one_pass_as_n_grows():
    """``n → ∞`` with ``B`` fixed, multi-pass SGD becomes one-pass SGD: the
    Gaussian closure reproduces the exact one-pass recursion (tolerance
    ``4·sem + 10·|th|·d/n``, the O(d/n) reuse correction); the homogenized
    closure misses the Wick term ``(η²/B)ΣMΣ`` by > 1 % here."""
    d, n = 10, 40000
    s, w = problem(d, 1.0)
    t = [1, 5, 20, 60]
    one = SGD(s, w, 0.1, lr=0.5, batch=4).theory(t).risk
    multi = SGD(s, w, 0.1, lr=0.5, batch=4, passes="multi", n=n).theory(t, trials=4, seed=1, method="conditional")
    assert np.all(np.abs(multi.risk - one) <= 4 * multi.risk_sem + 10 * one * d / n)
    homog = SGD(s, w, 0.1, lr=0.5, batch=4, passes="multi", n=n, closure="homogenized").theory(
        t, trials=4, seed=1, method="conditional")
    assert np.all(one - homog.risk > 0.01 * one)


def test_multipass_random_features_against_simulation():
    d, p = 30, 20
    s, w = problem(d, 1.0)
    g = SGD(s, w, 0.1, lr=0.5, batch=8, passes="multi", n=2 * d, features=p)
    t = np.array([0, 5, 30, 100])
    th = g.theory(t, trials=32, seed=13)
    mc = g.monte_carlo(t, trials=200, seed=14)
    check(th.risk, th.risk_sem, mc.risk, d, c=C_MULTI)
    check(th.train, th.train_sem, mc.train, d, c=C_MULTI)


# ----------------------------------------------------------------- B = n is gradient descent
n_, d_ = sr.dims("n d")
lr_, s2_ = sr.scalar("lr"), sr.scalar("sigma2")
Sig = sr.Covariance("Sigma", d_)
wv = sr.Vector("w", d_)
X = sr.GaussianData("X", n_, Sig)
eps = sr.GaussianNoise("eps", n_, s2_)
Sh = X.T * X / n_


def gd_risk(t):
    """As in ``tests/test_contour.py``: ``w_t = g_t(Σ̂)Xᵀy/n``."""
    wt = sr.matrix_function(lambda x: (1 - (1 - lr_ * x) ** t) / x, Sh) * X.T * (X * wv + eps) / n_
    return (wt - wv).T * Sig * (wt - wv) + s2_, wt


def test_full_batch_equals_gradient_descent_on_the_same_draw():
    """Conditional on one data set, the ``B = n`` curve (risk and train
    error) equals the matrix-function GD expression evaluated on that draw."""
    D, N, T = 25, 40, 12
    s, w = problem(D, 1.0)
    h = 0.8
    risk, wt = gd_risk(T)
    res = X * wt - X * wv - eps
    b = dict(Sigma=s, n=N, w=w, sigma2=0.3, lr=h)
    r_ref, draws = evaluate_draw(risk, seed=3, **b)
    l_ref, _ = evaluate_draw(res.T * res / n_, seed=3, **b)
    g = SGD(s, w, 0.3, lr=h, batch=N, passes="multi", n=N)
    R, L = g.conditional([T], draws[X], np.sqrt(0.3) * np.ravel(draws[eps]))   # draws: z before √σ²
    assert R[0] == pytest.approx(float(r_ref), rel=1e-10)
    assert L[0] == pytest.approx(float(l_ref), rel=1e-10)


@pytest.mark.slow
def test_gd_equivalent_matches_matrix_function_route():
    """The engine's equivalent of the ``B = n`` curve (``SGD.gd_equivalent``)
    is the ``test_contour`` GD route (about 12 s: two contour compilations)."""
    D = 20
    s, w = problem(D, 1.0)
    edge = s.max() * (1 + np.sqrt(0.5)) ** 2
    g = SGD(s, w, 0.25, lr=1 / edge, batch=2 * D, passes="multi", n=2 * D)
    risk, _ = g.gd_equivalent([4], train=False)
    ref = sr.deterministic_equivalent(gd_risk(4)[0]).compile().solve(
        Sigma=s, n=2 * D, w=w, sigma2=0.25, lr=1 / edge)
    assert risk[0] == pytest.approx(float(ref.value), rel=1e-10)
    with pytest.raises(NotImplementedError, match="noise term"):
        SGD(s, w, 0.25, lr=0.1, batch=8, passes="multi", n=2 * D).gd_equivalent([5])


# ----------------------------------------------------------------- bad input
def test_bad_input():
    s, w = problem(20, 1.0)
    with pytest.raises(StabilityError, match="spectral radius .* ≥ 1"):
        SGD(s, w, 0.1, lr=2.0, batch=1)
    with pytest.raises(ValueError, match=r"batch: B = 50 > n = 40"):
        SGD(s, w, 0.1, lr=0.1, batch=50, passes="multi", n=40)
    with pytest.raises(StabilityError, match="spectral radius"):
        SGD(s, w, 0.1, lr=1.5, batch=1, passes="multi", n=40).theory([1, 2], trials=2)
    with pytest.raises(StabilityError, match="spectral radius"):
        SGD(s, w, 0.1, lr=1.5, batch=1, passes="multi", n=40).monte_carlo([1, 3000], trials=2)
    with pytest.raises(ValueError, match="target"):
        SGD(s, w[:5], lr=0.1)
    with pytest.raises(ValueError, match="n: multi-pass"):
        SGD(s, w, lr=0.1, passes="multi")
    with pytest.raises(ValueError, match="t: steps"):
        SGD(s, w, lr=0.1).theory([0.5])
    with pytest.raises(ValueError, match="lr"):
        SGD(s, w, lr=-1)


def test_recipe_quick_run_through_the_cli(tmp_path):
    """``symrmt run sgd_two_point --quick`` end to end: it exits non-zero if any
    theory-vs-simulated-SGD row fails its stated tolerance."""
    import os
    import pathlib
    import subprocess
    import sys
    root = pathlib.Path(__file__).resolve().parent.parent
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = tmp_path / "sgd"
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run", "sgd_two_point", "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=root, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "table.md").exists() and (out / "summary.json").exists()
