"""Gram sampling (``monte_carlo(..., sampling="gram")``, issue 17 item 3).

The shortcut replaces Gaussian data/noise ``[X, ε]`` (``n`` rows) by an
``m = min(n, D)``-row matrix ``R`` with ``RᵀR =_d [Z, z]ᵀ[Z, z]`` (Bartlett)
where the expression uses the rows only through contractions. Checked here:

* the Bartlett factor's law: Wishart moments (mean, second moments, cross
  moments with the noise column) against exact formulas, and a two-sample KS
  test of a spectral statistic against ``ZᵀZ`` drawn directly;
* the rule (which expressions qualify, and the named reason when not);
* invariance on the actual expression: the engine's value on a compressed draw
  equals an independent dense NumPy computation on ``(QR, Qg)`` with ``n``
  rows, ``Q`` a random orthogonal map (steps 1–2 of the proof);
* per-draw laws of ridge risk / training error (with ``εᵀε``) / a form:
  two-sample KS tests of ``"gram"`` against ``"direct"`` at ``n > d``,
  ``n = d`` and ``n < d``;
* Monte Carlo with ``"gram"`` against the deterministic equivalent at two
  sizes, ``|mc − th| ≤ k·sem + c·|th|/d`` with ``k = 4``, ``c = 3``;
* the ``lauum`` path (``d ≥ 256``) against dense NumPy on the same draw;
* same-seed reproducibility across executors; bad arguments.
"""
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest
from scipy import stats

import symrmt as sr
from symrmt.objects.ops import as_scalar
from symrmt.montecarlo.bindings import bind
from symrmt.montecarlo.program import Program
from symrmt.montecarlo.bindings import collect
from symrmt.montecarlo.sampler import base_objects, bartlett, gram_groups

n, d = sr.dims("n d")
lam, s2 = sr.scalar("lam"), sr.scalar("s2")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
G = (X.T * X / n + lam * sr.I(d)).inverse()
wbar, v, u = sr.Vector("wbar", d), sr.Vector("v", d), sr.Vector("u", d)
y = X * wbar + eps
w_hat = G * X.T * y / n
RISK = (w_hat - wbar).T * Sigma * (w_hat - wbar) + s2
TRAIN = (y - X * w_hat).T * (y - X * w_hat) / n          # contains εᵀε
FORM = v.T * G * u


def _bindings(D, N, lams=(0.05, 0.5), seed=1):
    rng = np.random.default_rng(seed)
    return dict(Sigma=np.linspace(0.3, 2.0, D), n=N, lam=np.array(lams), s2=0.25,
                wbar=rng.standard_normal(D) / np.sqrt(D), v=rng.standard_normal(D), u=rng.standard_normal(D))


def _only(expr, b):
    dims, sc, det, _ = collect(as_scalar(expr))
    names = set(dims) | set(sc) | set(det)
    return {k: x for k, x in b.items() if k in names}


def _program(expr, b, sampling):
    b = _only(expr, b)
    return Program([as_scalar(expr)], bind(as_scalar(expr), b), sampling=sampling)


def _per_draw(expr, b, sampling, trials, seed):
    """Per-draw values by the same code path as ``monte_carlo``."""
    prog = _program(expr, b, sampling)
    ss = np.random.SeedSequence(seed)
    plan = prog.make_plan(ss)
    return prog.run(plan, ss, range(trials))[:, 0, :]


# ---------------------------------------------------------------- the Bartlett factor
@pytest.mark.parametrize("N, widths, lower", [(9, [4], True), (9, [4, 1], True), (4, [4, 1], True),
                                              (3, [4, 1], True), (9, [2, 3, 1], False), (2, [3], True)])
def test_bartlett_wishart_moments(N, widths, lower):
    """``RᵀR`` vs ``W_D(N, I)``: ``E W = N·I``, ``E W_ii² = N² + 2N``,
    ``E W_ij² = N`` (``i ≠ j``), each within 4 sem over 6000 draws; shape and
    triangular layout as documented."""
    rng = np.random.default_rng(5)
    D = sum(widths)
    T = 6000
    Ws = np.empty((T, D, D))
    for t in range(T):
        blocks = bartlett(rng, N, widths, lower_first=lower)
        R = np.concatenate(blocks, axis=1)
        assert R.shape == (min(N, D), D)
        Ws[t] = R.T @ R
    A = blocks[0]
    if lower and A.shape[0] >= A.shape[1]:
        w = A.shape[1]
        assert np.all(np.triu(A[:w], 1) == 0) and np.all(A[w:] == 0) and np.all(np.diag(A) > 0)
    eye = np.eye(D)
    for stat, exact in ((Ws, N * eye), (Ws ** 2, np.where(eye > 0, N * N + 2.0 * N, N))):
        mean, sem = stat.mean(0), stat.std(0, ddof=1) / np.sqrt(T)
        assert np.all(np.abs(mean - exact) <= 4 * sem + 1e-12), (mean, exact, sem)


def test_bartlett_ks_smallest_eigenvalue_against_direct():
    """Two-sample KS: smallest and largest eigenvalue of ``RᵀR`` vs ``ZᵀZ``
    (``Z`` 10×6 drawn directly), 1500 draws each."""
    rng = np.random.default_rng(7)
    T, N, D = 1500, 10, 6
    def gram(R):
        return R.T @ R
    a = np.array([np.linalg.eigvalsh(gram(np.concatenate(bartlett(rng, N, [D - 1, 1]), 1))) for _ in range(T)])
    b = np.array([np.linalg.eigvalsh(gram(rng.standard_normal((N, D)))) for _ in range(T)])
    for k in (0, -1):
        assert stats.ks_2samp(a[:, k], b[:, k]).pvalue > 1e-3


def test_group_draw_moments_with_sigma_and_noise():
    """Through the sampler (Σ dense, noise column): ``E XᵀX = NΣ``,
    ``E[(Xᵀg)(Xᵀg)ᵀ] = NΣ``, ``E gᵀg = N``, ``E[gᵀg·XᵀX] = N²Σ`` (``ε``
    independent of ``X``), ``E Xᵀg = 0``: 4 sem, 3000 draws."""
    D, N = 3, 7
    rng = np.random.default_rng(3)
    A = rng.standard_normal((D, D))
    S = A @ A.T / D + 0.2 * np.eye(D)
    prog = _program(RISK, dict(_bindings(D, N), Sigma=S), "gram")
    assert prog.sampler.groups == [(X, eps)]
    ss = np.random.SeedSequence(2)
    plan = prog.make_plan(ss)
    T = 3000
    rows = []
    for t in range(T):
        dr = prog.draw(plan, ss, t)
        Xd, g = dr[X], dr[eps][:, 0]
        h = Xd.T @ g
        rows.append(np.concatenate([(Xd.T @ Xd).ravel(), np.outer(h, h).ravel(), [g @ g],
                                    (g @ g * Xd.T @ Xd).ravel(), h]))
    rows = np.array(rows)
    exact = np.concatenate([(N * S).ravel(), (N * S).ravel(), [N], (N * N * S).ravel(), np.zeros(D)])
    mean, sem = rows.mean(0), rows.std(0, ddof=1) / np.sqrt(T)
    assert np.all(np.abs(mean - exact) <= 4 * sem), (mean - exact) / sem


# ---------------------------------------------------------------- the rule
def _groups(expr):
    expr = as_scalar(expr)
    return gram_groups([expr], base_objects(collect(expr)[3]))


def test_rule_accepts_contractions():
    assert _groups(RISK) == ([(X, eps)], {})
    assert _groups(TRAIN) == ([(X, eps)], {})
    assert _groups(sr.ntr(Sigma * G) + FORM) == ([(X,)], {})
    assert _groups(sr.Tr(X * G * X.T) / n + sr.Tr((X * X.T) ** 2)) == ([(X,)], {})
    X2 = sr.GaussianData("X2", n, Sigma)
    assert _groups(sr.Tr(X.T * X2 * X2.T * X) + sr.Tr(G)) == ([(X, X2)], {})


@pytest.mark.parametrize("make, reason", [
    (lambda: sr.Tr((X * X.T / n + lam * sr.I(n)).inverse()), "acts on the n-dimensional side"),
    (lambda: sr.ntr(sr.sample_covariance(X) * G), "uses the rows of X"),
    (lambda: sr.Vector("yv", n).T * X * G * X.T * sr.Vector("yv", n), "has the dimension n"),
    (lambda: sr.Vector("a", n).T * eps, "has the dimension n"),
    (lambda: sr.ntr((sr.GaussianData("Xk", n, Sigma, K=sr.Covariance("K", n)).T
                     * sr.GaussianData("Xk", n, Sigma, K=sr.Covariance("K", n)) / n + lam * sr.I(d)).inverse()),
     "correlated rows"),
])
def test_rule_refuses_with_reason(make, reason):
    groups, refused = _groups(make())
    assert groups == [] and reason in " ".join(refused.values())


def test_refused_group_is_drawn_directly():
    e = sr.Tr((X * X.T / n + lam * sr.I(n)).inverse()) / n
    b = dict(Sigma=np.ones(5), n=8, lam=0.3)
    direct = sr.monte_carlo(e, trials=5, seed=4, progress=False, **b)
    gram = sr.monte_carlo(e, trials=5, seed=4, progress=False, sampling="gram", **b)
    assert np.array_equal(direct.mean, gram.mean)            # same draws: nothing was compressed


# ---------------------------------------------------------------- invariance on the expression
@pytest.mark.parametrize("N", [12, 6, 9])     # n > d + 1, n < d, n = d + 1
def test_value_on_compressed_draw_equals_dense_numpy_with_n_rows(N):
    """Engine value (risk, training error, form) on a Gram draw ``(R, g)``
    vs dense NumPy on ``X = QR``, ``ε = √σ²·Qg`` with ``Q`` (``N×m``,
    orthonormal columns) random: equal to 1e-10 relative."""
    D = 8
    b = _bindings(D, N)
    rng = np.random.default_rng(N)
    S = np.diag(b["Sigma"])
    for expr in (RISK, TRAIN, FORM):
        prog = _program(expr, b, "gram")
        ss = np.random.SeedSequence(9)
        plan = prog.make_plan(ss)
        draws = prog.draw(plan, ss, 3)
        got = prog.evaluate(draws, plan)[0]
        R = draws[X]
        m = R.shape[0]
        assert m == min(N, D + (1 if eps in draws else 0))
        Q = np.linalg.qr(rng.standard_normal((N, N)))[0][:, :m]
        Xn = Q @ R
        e = np.sqrt(b["s2"]) * Q @ draws[eps][:, 0] if eps in draws else None
        ref = []
        for l in b["lam"]:
            Gl = np.linalg.inv(Xn.T @ Xn / N + l * np.eye(D))
            if expr is FORM:
                ref.append(b["v"] @ Gl @ b["u"])
                continue
            yn = Xn @ b["wbar"] + e
            wh = Gl @ Xn.T @ yn / N
            if expr is RISK:
                ref.append((wh - b["wbar"]) @ S @ (wh - b["wbar"]) + b["s2"])
            else:
                r = yn - Xn @ wh
                ref.append(r @ r / N)
        np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_lauum_path_against_numpy():
    """``d = 300 ≥ LAUUM_MIN``: ``XᵀX`` of the lower-triangular block by
    ``lauum``; ``(1/d)Tr[Σ(Σ̂+λ)⁻¹]`` and a form vs dense NumPy on the draw."""
    from symrmt.montecarlo import values as V
    D, N = 300, 600
    assert D >= V.LAUUM_MIN
    b = _bindings(D, N)
    expr = sr.ntr(Sigma * G) + FORM
    prog = _program(expr, b, "gram")
    ss = np.random.SeedSequence(1)
    plan = prog.make_plan(ss)
    draws = prog.draw(plan, ss, 0)
    R = draws[X]
    assert R.shape == (D, D) and V._is_lower(R) and np.all(np.triu(R, 1) == 0)
    got = prog.evaluate(draws, plan)[0]
    ref = []
    for l in b["lam"]:
        Gl = np.linalg.inv(R.T @ R / N + l * np.eye(D))
        ref.append(np.trace(np.diag(b["Sigma"]) @ Gl) / D + b["v"] @ Gl @ b["u"])
    np.testing.assert_allclose(got, ref, rtol=1e-9)


# ---------------------------------------------------------------- laws of the per-draw values
@pytest.mark.parametrize("D, N", [(8, 14), pytest.param(8, 8, marks=pytest.mark.slow),
                                  pytest.param(8, 5, marks=pytest.mark.slow)])
def test_per_draw_law_ks_gram_vs_direct(D, N):
    """Two-sample KS (400 draws each, both samplers through ``Program.run``)
    of the ridge risk, the training error (``εᵀε`` included) and a form, at
    the smallest ridge: p > 1e-3."""
    b = _bindings(D, N, lams=(0.05,))
    for expr in (RISK, TRAIN, FORM):
        a = _per_draw(expr, b, "gram", 400, 11)[:, 0]
        c = _per_draw(expr, b, "direct", 400, 12)[:, 0]
        p = stats.ks_2samp(a, c).pvalue
        assert p > 1e-3, (expr, p)


@pytest.mark.parametrize("expr, c, sizes, trials", [
    (RISK, 3.0, (30, 60), 200), (FORM, 3.0, (30, 60), 200),
    pytest.param(RISK, 3.0, (100, 300), 1000, marks=pytest.mark.slow),
    pytest.param(TRAIN, 3.0, (100, 300), 1000, marks=pytest.mark.slow)])
def test_gram_monte_carlo_against_theory_two_sizes(expr, c, sizes, trials):
    """``|mc − th| ≤ 4·sem + c·|th|/d`` at two sizes (n = 2d,
    sampling="gram"); the equivalent from the same expression."""
    de = sr.deterministic_equivalent(expr).compile()
    for D in sizes:
        b = _only(expr, _bindings(D, 2 * D, lams=(0.1, 1.0)))
        th = np.asarray(de(**b), dtype=float)
        mc = sr.monte_carlo(expr, trials=trials, seed=D, progress=False, sampling="gram", **b)
        tol = 4 * mc.sem + c * np.abs(th) / D
        assert np.all(np.abs(mc.mean - th) <= tol), (D, th, mc.mean, mc.sem)


# ---------------------------------------------------------------- reproducibility, arguments
def test_same_seed_identical_across_executors():
    b = _only(RISK, _bindings(10, 16))
    serial = sr.monte_carlo(RISK, trials=12, seed=5, progress=False, sampling="gram", **b)
    with ThreadPoolExecutor(3) as ex:
        th = sr.monte_carlo(RISK, trials=12, seed=5, progress=False, sampling="gram", executor=ex, **b)
    with ProcessPoolExecutor(2) as ex:
        pr = sr.monte_carlo(RISK, trials=12, seed=5, progress=False, sampling="gram", executor=ex, **b)
    for r in (th, pr):
        assert np.array_equal(serial.mean, r.mean) and np.array_equal(serial.sem, r.sem)
    direct = sr.monte_carlo(RISK, trials=12, seed=5, progress=False, sampling="direct", **b)
    assert not np.array_equal(direct.mean, serial.mean)       # other draws, same law


def test_bad_arguments():
    b = dict(Sigma=np.ones(4), n=6, lam=0.2)
    with pytest.raises(ValueError, match="sampling must be one of"):
        sr.monte_carlo(sr.ntr(G), trials=2, sampling="bartlett", **b)
    with pytest.raises(ValueError, match="backend must be one of"):
        sr.monte_carlo(sr.ntr(G), trials=2, backend="torch", **b)
