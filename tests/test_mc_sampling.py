"""Issue 17 item 3: ``evaluate_draw(..., sampling=)`` and the default sampling.

* ``evaluate_draw`` with ``sampling="gram"`` is draw ``trial`` of
  ``monte_carlo(..., sampling="gram")`` bit for bit, returns arrays with ``n``
  rows (the Bartlett factor rotated by a uniformly random orthonormal ``n×m``
  ``Q``), and a dense NumPy recomputation on them gives the value (1e-10).
* In law: the returned ``X`` and ``ε`` are draws of their laws — second
  moments ``E[X_ij X_kl] = δ_ik Σ_jl``, ``E[ε_i ε_k] = δ_ik`` within 4 sem —
  and the per-draw value under ``"gram"`` and ``"direct"`` passes a two-sample
  KS test (p > 1e-3).
* The default of ``monte_carlo`` and ``evaluate_draw`` is the same
  (``run.DEFAULT_SAMPLING``); bad ``sampling`` is refused by name.
"""
import numpy as np
import pytest
from scipy import stats

import symrmt as sr
from symrmt.montecarlo import evaluate_draw, monte_carlo
from symrmt.montecarlo.bindings import bind
from symrmt.montecarlo.program import Program
from symrmt.montecarlo.run import DEFAULT_SAMPLING
from symrmt.montecarlo.single import _rotated
from symrmt.objects.ops import as_scalar

n, d = sr.dims("n d")
lam, s2 = sr.scalar("lam"), sr.scalar("s2")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
G = (X.T * X / n + lam * sr.I(d)).inverse()
wbar = sr.Vector("wbar", d)
y = X * wbar + eps
w_hat = G * X.T * y / n
RISK = (w_hat - wbar).T * Sigma * (w_hat - wbar) + s2

D, N = 5, 9
rng = np.random.default_rng(4)
S = np.linspace(0.5, 2.0, D)
W = rng.standard_normal(D) / np.sqrt(D)
B = dict(Sigma=S, n=N, lam=np.array([0.1, 1.0]), s2=0.25, wbar=W)


def _risk_numpy(Xd, e, lams, nrows):
    out = []
    for l in lams:
        Gl = np.linalg.inv(Xd.T @ Xd / nrows + l * np.eye(D))
        wh = Gl @ Xd.T @ (Xd @ W + np.sqrt(0.25) * e) / nrows
        out.append((wh - W) @ np.diag(S) @ (wh - W) + 0.25)
    return np.array(out)


@pytest.mark.parametrize("trial", [0, 3])
@pytest.mark.parametrize("nrows", [9, 4])              # n > D + 1 and n < D + 1 (m = n)
def test_gram_draw_in_the_open(trial, nrows):
    b = dict(B, n=nrows)
    value, draws = evaluate_draw(RISK, seed=6, trial=trial, sampling="gram", **b)
    assert draws[X].shape == (nrows, D) and draws[eps].shape == (nrows, 1)
    np.testing.assert_allclose(value, _risk_numpy(draws[X], draws[eps][:, 0], b["lam"], nrows), rtol=1e-10)
    if trial == 0:
        one = monte_carlo(RISK, trials=1, seed=6, progress=False, sampling="gram", **b)
        assert np.array_equal(one.mean, value)
    else:   # draw `trial` of the run: the run's per-draw values by the same program path
        e = as_scalar(RISK)
        prog = Program([e], bind(e, b), sampling="gram")
        ss = np.random.SeedSequence(6)
        plan = prog.make_plan(ss)
        assert np.array_equal(prog.run(plan, ss, range(trial + 1))[trial, 0], value)


def _program(expr, b, sampling):
    e = as_scalar(expr)
    prog = Program([e], bind(e, b), sampling=sampling)
    ss = np.random.SeedSequence(1)
    return prog, ss, prog.make_plan(ss)


def test_gram_draws_have_the_law_of_the_data():
    """The arrays ``evaluate_draw`` returns under ``"gram"`` (``single._rotated``
    of the Bartlett draw, the function it calls): ``E[X_ij X_kl] = δ_ik Σ_jl``
    (Σ diagonal here), ``E[X_ij ε_k] = 0``, ``E[ε_i ε_k] = δ_ik`` — every
    entry of rows 0–2 within 4 sem over 1500 draws."""
    T = 1500
    prog, ss, plan = _program(RISK, B, "gram")
    rows = []
    for t in range(T):
        dr = _rotated(prog, prog.draw(plan, ss, t), ss, t)
        M = np.concatenate([dr[X], dr[eps]], axis=1)[:3]                     # 3 × (D + 1)
        rows.append(np.einsum("ij,kl->ijkl", M, M).ravel())
    rows = np.array(rows)
    cov = np.diag(np.concatenate([S, [1.0]]))
    exact = np.einsum("ik,jl->ijkl", np.eye(3), cov).ravel()
    mean, sem = rows.mean(0), rows.std(0, ddof=1) / np.sqrt(T)
    assert np.all(np.abs(mean - exact) <= 4 * sem + 1e-12), np.max(np.abs(mean - exact) / sem)


def test_per_draw_law_gram_vs_direct():
    """Two-sample KS of the risk at λ = 0.1, 400 draws each (other seeds),
    per-draw values by the program path that ``evaluate_draw`` and
    ``monte_carlo`` share (equal to ``evaluate_draw`` bit for bit: checked on
    the first draws)."""
    T = 400
    b = dict(B, lam=0.1)
    vals = {}
    for sampling in ("gram", "direct"):
        prog, ss, plan = _program(RISK, b, sampling)
        ss = np.random.SeedSequence(2 if sampling == "gram" else 3)
        plan = prog.make_plan(ss)
        vals[sampling] = prog.run(plan, ss, range(T))[:, 0, 0]
        for t in (0, 1):
            assert evaluate_draw(RISK, seed=ss, trial=t, sampling=sampling, **b)[0] == vals[sampling][t]
    assert stats.ks_2samp(vals["gram"], vals["direct"]).pvalue > 1e-3


def test_default_is_shared_and_documented():
    b = dict(B)
    default = monte_carlo(RISK, trials=3, seed=9, progress=False, **b)
    explicit = monte_carlo(RISK, trials=3, seed=9, progress=False, sampling=DEFAULT_SAMPLING, **b)
    assert np.array_equal(default.mean, explicit.mean)
    v0, _ = evaluate_draw(RISK, seed=9, **b)
    assert np.array_equal(v0, monte_carlo(RISK, trials=1, seed=9, progress=False, **b).mean)
    assert f'``"{DEFAULT_SAMPLING}"`` (default)' in monte_carlo.__doc__


def test_bad_sampling_named():
    with pytest.raises(ValueError, match="evaluate_draw: sampling must be one of"):
        evaluate_draw(RISK, sampling="bartlett", **B)
    value, _ = evaluate_draw(sr.ntr(G) * lam, bindings={"lam": 0.5}, Sigma=S, n=N)
    assert np.isfinite(value)
