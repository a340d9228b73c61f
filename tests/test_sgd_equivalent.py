"""Multi-pass SGD from the two-point deterministic equivalent
(``symrmt/dynamics/sgd_equivalent.py``) against SGD simulated through
``sr.monte_carlo`` (``symrmt/montecarlo/sgd_node.py``), and the SGD estimand.

Tolerance ``|theory − mc| ≤ K·sem + c·|theory|/d`` with ``K = 4`` and
``c = C_DE = 4``: the equivalent is first order in the proportional limit
(relative error ``O(1/d)``) and keeps one approximation, the Gaussian closure
of the empirical fourth moment (exact at ``B = n``). Measured at d = 20 and 40
(n = 2d, power-law spectrum ``s_i = i^{-1}``, target ``∝ i^{-1/2}``, σ² = 0.1)
the largest ``|th − mc|/|th|`` is about 2 % (linear) and 3 % (random
features), well inside the ``c/d = 10–20 %`` allowance; the slow tests check
the ``O(1/d)`` trend against an independent dense computation.
"""
import concurrent.futures

import numpy as np
import pytest

import symrmt as sr
from symrmt.dynamics import SGD, StabilityError
from symrmt.dynamics.sgd_equivalent import MultiPassEquivalent

K = 4.0
C_DE = 4.0
T = np.array([0, 5, 30, 100])


def problem(d, alpha=1.0, beta=0.5):
    s = np.arange(1, d + 1, dtype=float) ** -alpha
    w = np.arange(1, d + 1, dtype=float) ** -beta
    return s, w / np.linalg.norm(w)


def check(th, mc, d, c=C_DE):
    th = np.asarray(th)
    tol = K * mc.sem + c * np.abs(th) / d + 1e-12 * np.abs(th)
    err = np.abs(mc.mean - th)
    assert np.all(err <= tol), f"theory {th} vs MC {mc.mean} ± {mc.sem}: {err} > {tol} (K={K}, c={c}, d={d})"


LR = {1: 0.2, 8: 0.5}


@pytest.mark.parametrize("d", [20, 40])
@pytest.mark.parametrize("B", [1, 8, "n"])
def test_linear_equivalent_against_simulated_sgd(B, d):
    s, w = problem(d)
    n = 2 * d
    B = n if B == "n" else B
    g = SGD(s, w, 0.1, lr=LR.get(B, 0.8), batch=B, passes="multi", n=n)
    th = g.theory(T)
    assert th.method.startswith("multi-pass two-point deterministic equivalent")
    assert np.all(th.quad_error <= 1e-5 * th.risk)
    mc = g.monte_carlo(T, trials=300, seed=d + B)
    check(th.risk, mc.risk, d)
    check(th.train, mc.train, d)


@pytest.mark.parametrize("B", [8])
def test_random_features_equivalent_against_simulated_sgd(B):
    d, p = 20, 14
    s, w = problem(d)
    g = SGD(s, w, 0.1, lr=0.5, batch=B, passes="multi", n=2 * d, features=p)
    th = g.theory(T)
    mc = sr.monte_carlo(g.risk(T), trials=600, seed=5)
    check(th.risk, mc, d)


def test_full_batch_is_gradient_descent_and_closures_agree_there():
    """``B = n``: ``c = 0``, both closures give the GD curve (identical
    numbers), the train error at ``t = 0`` is ``E[yᵀy/n] = w*ᵀΣw* + σ²``."""
    d = 20
    s, w = problem(d)
    t = [0, 3, 40]
    a = SGD(s, w, 0.1, lr=0.8, batch=2 * d, passes="multi", n=2 * d).theory(t)
    b = SGD(s, w, 0.1, lr=0.8, batch=2 * d, passes="multi", n=2 * d, closure="homogenized").theory(t)
    np.testing.assert_allclose(a.risk, b.risk, rtol=1e-12)
    np.testing.assert_allclose(a.train, b.train, rtol=1e-12)
    assert a.train[0] == pytest.approx(w @ (s * w) + 0.1, rel=1e-12)


def test_equivalent_matches_the_per_data_set_recursion_averaged():
    """The equivalent and the same closed recursion run on actual data sets
    (``method="conditional"``, an independent dense computation averaged over
    32 data sets) agree within ``4·sem + 4·|th|/d`` (d = 40)."""
    d = 40
    s, w = problem(d)
    g = SGD(s, w, 0.1, lr=0.5, batch=8, passes="multi", n=2 * d)
    de = g.theory(T)
    cond = g.theory(T, method="conditional", trials=32, seed=3)
    tol = K * cond.risk_sem + C_DE * de.risk / d + 1e-12
    assert np.all(np.abs(de.risk - cond.risk) <= tol)
    tol = K * cond.train_sem + C_DE * de.train / d + 1e-12
    assert np.all(np.abs(de.train - cond.train) <= tol)


def test_homogenized_closure_is_an_option_and_differs():
    """The homogenized closure drops the Wick terms; with a power-law
    spectrum it predicts a lower risk than the Gaussian closure at B = 1."""
    d = 20
    s, w = problem(d)
    gauss = SGD(s, w, 0.1, lr=0.2, batch=1, passes="multi", n=2 * d).theory(T)
    homog = SGD(s, w, 0.1, lr=0.2, batch=1, passes="multi", n=2 * d, closure="homogenized").theory(T)
    assert homog.method.endswith("(homogenized closure)")
    assert np.all(homog.risk[1:] < gauss.risk[1:])


def test_quadrature_refuses_rather_than_guesses():
    d = 20
    s, w = problem(d)
    eq = MultiPassEquivalent(s, w, 0.1, 2 * d, lr_max=0.5, t_max=100, nodes=16)
    with pytest.raises(ArithmeticError, match="contour quadrature did not reach"):
        eq.curve([0, 10, 100], 0.5, 8)
    with pytest.raises(ValueError, match="contour was built for"):
        eq.curve([200], 0.5, 8)


def test_bad_input():
    d = 20
    s, w = problem(d)
    with pytest.raises(ValueError, match=r"batch: B = 50 > n = 40"):
        SGD(s, w, 0.1, lr=0.1, batch=50, passes="multi", n=40)
    with pytest.raises(StabilityError, match="η·λ₊"):
        SGD(s, w, 0.1, lr=1.5, batch=8, passes="multi", n=40).theory([1, 2])
    F = np.random.default_rng(0).standard_normal((d, 10)) / np.sqrt(10)
    with pytest.raises(NotImplementedError, match="fixed feature matrix"):
        SGD(s, w, 0.1, lr=0.5, batch=8, passes="multi", n=40, features=F).theory([1])
    with pytest.raises(NotImplementedError, match="w0 = 0"):
        SGD(s, w, 0.1, lr=0.5, batch=8, passes="multi", n=40, w0=np.ones(d)).theory([1])
    with pytest.raises(ValueError, match="method"):
        SGD(s, w, 0.1, lr=0.5, batch=8, passes="multi", n=40).theory([1], method="closure")


# ----------------------------------------------------------------- the SGD estimand of sr.monte_carlo
def test_monte_carlo_estimand_is_reproducible_across_executors():
    d = 10
    s, w = problem(d)
    g = SGD(s, w, 0.1, lr=0.5, batch=4, passes="multi", n=2 * d)
    t = [0, 3, 10]
    a = sr.monte_carlo(g.risk(t), trials=40, seed=7)
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        b = sr.monte_carlo(g.risk(t), trials=40, seed=7, executor=ex)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.sem, b.sem)
    both = g.monte_carlo(t, trials=40, seed=7)
    np.testing.assert_array_equal(both.risk.mean, a.mean)
    tr = sr.monte_carlo(g.train(t), trials=40, seed=7)
    np.testing.assert_array_equal(both.train.mean, tr.mean)
    assert list(a.grid["t"]) == t and a.trials == 40
    series = sr.monte_carlo(g.risk(t), trials=[10, 40], seed=7)
    np.testing.assert_array_equal(series.at(40).mean, a.mean)
    with pytest.raises(TypeError, match="carries its own parameters"):
        sr.monte_carlo(g.risk(t), trials=10, n=30)
    with pytest.raises(ValueError, match="t: steps"):
        g.risk([0.5])


def test_one_pass_estimand_matches_exact_recursion():
    """One-pass SGD simulated through ``sr.monte_carlo`` against the exact
    finite-d moment recursion (``c = 0``)."""
    d = 15
    s, w = problem(d, 1.5)
    g = SGD(s, w, 0.1, lr=0.6, batch=8)
    t = [0, 2, 10, 40]
    check(g.theory(t).risk, sr.monte_carlo(g.risk(t), trials=2000, seed=2), d, c=0)


# ----------------------------------------------------------------- slow
@pytest.mark.slow
def test_equivalent_equals_matrix_function_gradient_descent():
    """``B = n``: the equivalent equals the engine's ``sr.matrix_function``
    GD route (``SGD.gd_equivalent``) to 1e-10 (about 40 s: contour compilations)."""
    D = 20
    s, w = problem(D)
    edge = s.max() * (1 + np.sqrt(0.5)) ** 2
    g = SGD(s, w, 0.25, lr=1 / edge, batch=2 * D, passes="multi", n=2 * D)
    R, L = g.gd_equivalent([4])
    th = g.theory([4])
    assert th.risk[0] == pytest.approx(R[0], rel=1e-10)
    assert th.train[0] == pytest.approx(L[0], rel=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("B", [1, 8, "n"])
def test_random_features_two_sizes(B):
    for d in (40, 80):
        s, w = problem(d)
        n, p = 2 * d, d // 2 + d // 4
        Bv = n if B == "n" else B
        g = SGD(s, w, 0.1, lr=LR.get(Bv, 0.8), batch=Bv, passes="multi", n=n, features=p)
        th = g.theory(T)
        mc = g.monte_carlo(T, trials=400, seed=d)
        check(th.risk, mc.risk, d)
        check(th.train, mc.train, d)


@pytest.mark.slow
def test_one_over_d_trend_against_the_dense_recursion():
    """The gap between the equivalent and the per-data-set recursion averaged
    over data sets shrinks with d (d = 25, 50, 100; measured largest relative
    gaps 6.5e-3, 5.2e-3, 2.4e-3 — comparable to the sem of the average,
    4.6e-3, 3.1e-3, 2.0e-3, so this is a weak, sem-limited trend check: ratio
    ≥ 2.5 from d = 25 to d = 100, or the d = 100 gap below 2e-3)."""
    gaps = []
    for d in (25, 50, 100):
        s, w = problem(d)
        g = SGD(s, w, 0.1, lr=0.5, batch=8, passes="multi", n=2 * d)
        de = g.theory(T)
        cond = g.theory(T, method="conditional", trials=400 if d < 100 else 200, seed=d)
        gaps.append(np.max(np.abs(de.risk - cond.risk) / de.risk))
        assert np.all(np.abs(de.risk - cond.risk) <= K * cond.risk_sem + C_DE * de.risk / d)
    assert gaps[0] >= 2.5 * gaps[2] or gaps[2] < 2e-3, gaps


def test_first_step_against_exact_one_pass_value_trend():
    """Independent closed form: one step from ``v_0 = 0`` uses ``B`` distinct
    samples of a fresh data set, i.e. ``B`` iid samples, so ``E[R(1)]`` is the
    exact one-pass value (finite-d Wick recursion, no closure). The
    equivalent approaches it as ``O(1/d)`` (measured relative gaps 4.6e-3,
    2.2e-3, 1.1e-3 at d = 100, 200, 400 with α = 1.5, β = 0.75, σ² = 0.05,
    η = 1, B = 8, n = 2d): gap ≤ 1/d and halving with d."""
    gaps = []
    for d in (100, 200, 400):
        s, w = problem(d, 1.5, 0.75)
        exact = SGD(s, w, 0.05, lr=0.25, batch=8)
        from symrmt.dynamics.sgd import _onepass_curve
        ex = _onepass_curve(*exact.reduced(None), 1.0, 8, np.array([1]))[0]   # η = 1: one step, no stability question
        de = SGD(s, w, 0.05, lr=1.0, batch=8, passes="multi", n=2 * d).theory([1]).risk[0]
        gaps.append(abs(de - ex) / ex)
        assert gaps[-1] <= 1.0 / d
    assert gaps[0] > 1.6 * gaps[1] > 2.56 * gaps[2]
