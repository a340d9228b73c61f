"""The runner: seeds, executors, nested trial counts, statistics, reporting."""
import io
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import symrmt as sr
from symrmt.montecarlo import MonteCarloResult, MonteCarloSeries, evaluate_draw, monte_carlo
from symrmt.montecarlo.bindings import bind
from symrmt.montecarlo.stats import RunningMean

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
G = (X.T * X / n + lam * sr.I(d)).inverse()
EXPR = sr.ntr(Sigma * G) + w.T * G * w
B = dict(Sigma=np.linspace(0.2, 2.0, 20), w=np.ones(20) / np.sqrt(20), n=30, lam=np.logspace(-2, 0, 4))


def run(**kw):
    kw.setdefault("progress", False)
    return monte_carlo(EXPR, **kw, **B)


def test_mean_and_sem_are_those_of_the_draws():
    T = 12
    r = run(trials=T, seed=7)
    vals = np.array([evaluate_draw(EXPR, seed=7, trial=t, **B)[0] for t in range(T)])
    assert isinstance(r, MonteCarloResult) and r.trials == T and r.mean.shape == (4,)
    np.testing.assert_allclose(r.mean, vals.mean(0), rtol=1e-13)
    np.testing.assert_allclose(r.std, vals.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(r.sem, vals.std(0, ddof=1) / np.sqrt(T), rtol=1e-10)


def test_same_seed_same_numbers_different_seed_different():
    a, b, c = run(trials=8, seed=3), run(trials=8, seed=3), run(trials=8, seed=4)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.sem, b.sem)
    assert not np.array_equal(a.mean, c.mean)


def test_serial_equals_process_pool_exactly():
    serial = run(trials=16, seed=11)
    with ProcessPoolExecutor(2) as ex:
        pooled = run(trials=16, seed=11, executor=ex)
    assert np.array_equal(serial.mean, pooled.mean)
    assert np.array_equal(serial.sem, pooled.sem)


def test_thread_pool_and_chunking_do_not_change_results():
    serial = run(trials=10, seed=2)
    for workers in (1, 3):
        with ThreadPoolExecutor(workers) as ex:
            r = run(trials=10, seed=2, executor=ex)
        assert np.array_equal(serial.mean, r.mean) and np.array_equal(serial.sem, r.sem)


def test_nested_trial_counts_share_draws():
    series = run(trials=[4, 10, 6], seed=5)
    assert isinstance(series, MonteCarloSeries)
    assert series.trials == (4, 6, 10) and series.mean.shape == (3, 4)
    for t in (4, 6, 10):
        single = run(trials=t, seed=5)
        assert np.array_equal(series.at(t).mean, single.mean)
        assert np.array_equal(series.at(t).sem, single.sem)
    assert series.final is series[-1] and len(series) == 3
    assert "trials" in repr(series)


def test_seed_none_is_reported_and_reproducible():
    r = run(trials=3, seed=None)
    again = run(trials=3, seed=np.random.SeedSequence(r.seed))
    assert np.array_equal(r.mean, again.mean)


def test_trial_and_seed_validation():
    for bad in (0, [5, 5], [0, 3]):
        with pytest.raises(ValueError, match="trials"):
            run(trials=bad)
    with pytest.raises(TypeError, match="trials must be an int"):
        run(trials=2.5)
    with pytest.raises(TypeError, match="seed"):
        run(trials=2, seed=-1)


def test_progress_forced_and_callback(capsys):
    run(trials=3, progress=True)
    err = capsys.readouterr().err
    assert "3/3 draws" in err and err.endswith("\n")
    calls = []
    run(trials=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    run(trials=3, progress=None)  # not a terminal: silent
    assert capsys.readouterr().err == ""


def test_progress_default_on_terminal(monkeypatch):
    from symrmt.montecarlo import progress as P

    class TTY(io.StringIO):
        def isatty(self):
            return True
    fake = TTY()
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setattr(P, "DELAY", 0.0)
    run(trials=2, progress=None)
    assert "2/2 draws" in fake.getvalue()


def test_repr_scalar_and_grid():
    r = monte_carlo(sr.ntr(Sigma * G), trials=5, progress=False, Sigma=B["Sigma"], n=30, lam=0.1)
    assert isinstance(r.mean, float) and "±" in repr(r) and "trials=5" in repr(r)
    g = run(trials=5)
    text = repr(g)
    assert "lam" in text and "mean" in text and "sem" in text and len(text.splitlines()) == 6


def test_nonfinite_draws_are_counted_and_warned():
    # λ = 0 with n < d: the resolvent is singular on every draw
    with pytest.warns(RuntimeWarning, match="3 of 3 draws gave NaN or inf"):
        r = monte_carlo(sr.ntr(G), trials=3, progress=False, Sigma=B["Sigma"], n=10, lam=0.0)
    assert r.nonfinite == 3 and not np.isfinite(r.mean)
    assert "non-finite" in repr(r)


def test_constant_expression_has_zero_sem():
    r = monte_carlo(sr.ntr(Sigma) + lam, trials=4, progress=False, Sigma=np.ones(5), lam=1.0)
    assert r.mean == 2.0 and r.sem == 0.0


def test_running_mean_is_stable():
    rm = RunningMean((1,))
    xs = 1e9 + np.arange(5.0)
    for x in xs:
        rm.update(np.array([x]))
    assert rm.mean[0] == xs.mean() and np.isclose(rm.std[0], xs.std(ddof=1), rtol=1e-9)


def test_large_grid_fallback_is_blocked(monkeypatch):
    """Dense batched fallbacks are evaluated in blocks of the grid when the
    memory budget is small; results do not change."""
    from symrmt.montecarlo import plan as plan_module
    from symrmt.montecarlo.program import Program
    expr = sr.Tr((X.T * X / n + lam * Sigma + sr.I(d)).inverse())
    ref = monte_carlo(expr, trials=2, progress=False, Sigma=B["Sigma"], n=30, lam=np.logspace(-2, 0, 7))
    monkeypatch.setattr(plan_module, "BLOCK_BYTES", 3 * 20 * 20 * 8)
    prog = Program([expr], bind(expr, dict(Sigma=B["Sigma"], n=30, lam=np.logspace(-2, 0, 7))))
    plan = prog.make_plan(np.random.SeedSequence(0))
    assert plan.block is not None and plan.block < 7
    blocked = monte_carlo(expr, trials=2, progress=False, Sigma=B["Sigma"], n=30, lam=np.logspace(-2, 0, 7))
    np.testing.assert_allclose(blocked.mean, ref.mean, rtol=1e-12)


def test_no_warning_for_clean_runs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run(trials=3)


def test_serial_equals_process_pool_exactly_at_blas_sizes():
    """Large enough for multithreaded BLAS/LAPACK paths (GEMM, eigh)."""
    b = dict(Sigma=np.linspace(0.1, 1.0, 160), w=np.ones(160), n=240, lam=np.logspace(-2, 0, 5))
    serial = monte_carlo(EXPR, trials=6, seed=1, progress=False, **b)
    with ProcessPoolExecutor(2) as ex:
        pooled = monte_carlo(EXPR, trials=6, seed=1, progress=False, executor=ex, **b)
    assert np.array_equal(serial.mean, pooled.mean) and np.array_equal(serial.sem, pooled.sem)


def test_serial_equals_process_pool_with_deterministic_cores():
    """A full Σ that is both the law of X and a core ((Σ+λ)⁻¹): its
    eigenbasis must be computed the same way in every process."""
    R = np.random.default_rng(3).standard_normal((40, 40))
    b = dict(Sigma=R @ R.T / 40 + 0.1 * np.eye(40), w=np.ones(40), n=60, lam=np.logspace(-2, 0, 3))
    expr = sr.Tr((Sigma + lam * sr.I(d)).inverse() * X.T * X / n) + EXPR
    serial = monte_carlo(expr, trials=6, seed=1, progress=False, **b)
    with ProcessPoolExecutor(2) as ex:
        pooled = monte_carlo(expr, trials=6, seed=1, progress=False, executor=ex, **b)
    assert np.array_equal(serial.mean, pooled.mean) and np.array_equal(serial.sem, pooled.sem)
