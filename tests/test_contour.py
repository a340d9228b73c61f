"""Analytic functions of a sample covariance through a contour integral
(``sr.matrix_function``), the spectral norm ``sr.Norm``, and full-batch
gradient descent on least squares (docs/math.md §Spectral functions, §SGD).

Monte Carlo tolerances: ``|theory − mean| ≤ K·sem + C·|theory|/d`` with
``K = 4`` (sampling) and ``C = 2`` (the O(1/d) finite-size bias of a
first-order equivalent).
"""
import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad

import symrmt as sr
from symrmt.montecarlo import evaluate_draw

K, C = 4.0, 2.0

n, d = sr.dims("n d")
a, b, lr, s2 = sr.scalar("a"), sr.scalar("b"), sr.scalar("lr"), sr.scalar("sigma2")   # ``eta`` is an option name
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
Sh = X.T * X / n
I = sr.I(d)
EDGE = sr.Norm(Sigma) * (1 + sp.sqrt(d / n)) ** 2          # ≥ the edge of the spectrum of Σ̂

T = 7
EXP = sr.ntr(sr.matrix_function(lambda x: sp.exp(-x), Sh))
POWER = sr.ntr(sr.matrix_function(lambda x: x ** T, I - lr * Sh))      # (1/d)Tr[(I − ηΣ̂)^t]


def gd_weights(t):
    """``w_t = η Σ_{k<t} (I − ηΣ̂)^k Xᵀy/n = g_t(Σ̂) Xᵀy/n``, ``w₀ = 0``."""
    return sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh) * X.T * (X * w + eps) / n


def marchenko_pastur(f, q):
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    return quad(lambda x: f(x) * np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * q * x), lo, hi,
                epsabs=0, epsrel=1e-13, limit=200)[0]


def check_mc(value, mc, dim):
    err = np.abs(np.asarray(value) - mc.mean)
    tol = K * mc.sem + C * np.abs(value) / dim
    assert np.all(err <= tol), (value, mc.mean, mc.sem)


# ---------------------------------------------------------------- objects
def test_matrix_function_object():
    F = sr.matrix_function(lambda x: sp.exp(-x), Sh)
    assert F == sr.matrix_function(sp.Lambda(sp.Symbol("y"), sp.exp(-sp.Symbol("y"))), Sh)
    assert F.func(*F.args) == F and F.T == F and F.shape == (d, d)
    assert sp.latex(F) == r"e^{- \left(\frac{1}{n} X^{T} X\right)}"
    assert sp.latex(sr.Norm(Sigma)) == r"\left\lVert \Sigma \right\rVert" and sr.Norm(I) == 1
    G = sr.matrix_function(lambda x: x, Sh, contour=(EDGE / 2, EDGE))
    assert G.contour == (EDGE / 2, EDGE)
    with pytest.raises(TypeError, match="sympy functions"):
        sr.matrix_function(np.exp, Sh)
    with pytest.raises(TypeError, match="random"):
        sr.Norm(Sh)


# ---------------------------------------------------------------- traces
def test_traces_against_marchenko_pastur():
    """Isotropic Σ: the contour integral of the equivalent against the
    Marchenko–Pastur density, to 1e-9; a 2-D binding of Σ (‖Σ‖ from its
    eigenvalues) gives the same."""
    D, q = 100, 0.5
    f = sr.deterministic_equivalent(EXP).compile()
    assert float(f(Sigma=np.ones(D), n=int(D / q))) == pytest.approx(
        marchenko_pastur(lambda x: np.exp(-x), q), abs=1e-9)
    Q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((D, D)))
    s = np.linspace(0.5, 1.5, D)
    assert float(f(Sigma=Q @ np.diag(s) @ Q.T, n=2 * D)) == pytest.approx(float(f(Sigma=s, n=2 * D)), abs=1e-12)
    g = sr.deterministic_equivalent(POWER).compile()
    lrs = np.array([0.2, 1 / (1 + np.sqrt(q)) ** 2])
    ref = [marchenko_pastur(lambda x: (1 - h * x) ** T, q) for h in lrs]
    np.testing.assert_allclose(g(Sigma=np.ones(D), n=int(D / q), lr=lrs), ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("expr", [EXP, POWER], ids=["exp", "power"])
def test_traces_against_monte_carlo(expr):
    D = 80
    bind = dict(Sigma=np.linspace(0.2, 2, D), n=2 * D)
    if expr is POWER:
        bind["lr"] = np.array([0.1, 0.2])
    value = sr.deterministic_equivalent(expr).compile()(**bind)
    check_mc(value, sr.monte_carlo(expr, trials=100, seed=0, **bind), D)


def test_contour_route_agrees_with_fractional_power_route():
    """``(1/d)Tr[(Σ̂+a)^{1/2}(Σ̂+b)^{−1/2}]``: Cauchy integral on a circle
    that keeps the branch cut ``[−b, −a]`` outside (``c₀ − r = −a/2``) vs
    the branch-cut integral of the fractional powers; and Monte Carlo of the
    two expressions agrees draw by draw."""
    contour = sr.ntr(sr.matrix_function(lambda x: sp.sqrt((x + a) / (x + b)), Sh,
                                        contour=(EDGE / 2, EDGE / 2 + a / 2)))
    powers = sr.ntr(sr.sqrt(Sh + a * I) * sr.power(Sh + b * I, -sp.Rational(1, 2)))
    D = 80
    bind = dict(Sigma=np.linspace(0.2, 2, D), n=2 * D, a=np.array([0.5, 1.0]), b=np.array([2.0, 3.0]))
    v1 = sr.deterministic_equivalent(contour).compile()(**bind)
    v2 = sr.deterministic_equivalent(powers).compile()(**bind)
    np.testing.assert_allclose(v1, v2, rtol=0, atol=1e-9)
    np.testing.assert_allclose(evaluate_draw(contour, seed=3, **bind)[0], evaluate_draw(powers, seed=3, **bind)[0],
                               rtol=1e-12)


def test_monte_carlo_removable_singularity():
    """``g_t(x) = (1 − (1 − ηx)^t)/x`` at ``n < d`` (zero eigenvalues, where
    ``g_t = tη``), long time: no 0/0 and no cancellation of the expanded
    polynomial; against the geometric sum on the same draw."""
    t, D, N, h = 100, 30, 15, 0.25
    e = sr.ntr(sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh))
    got, draws = evaluate_draw(e, seed=1, Sigma=np.linspace(0.5, 1.5, D), n=N, lr=h)
    Xd = draws[X]
    ev = np.clip(np.linalg.eigvalsh(Xd.T @ Xd / N), 0, None)
    ref = np.mean([h * sum((1 - h * x) ** k for k in range(t)) for x in ev])
    assert got == pytest.approx(ref, rel=1e-10)


# ---------------------------------------------------------------- gradient descent
@pytest.mark.parametrize("t", [1, 10, 30])
def test_gradient_descent_risk_against_monte_carlo(t):
    """Test risk of full-batch GD (``w₀ = 0``, ``η = 1/edge``) at step ``t``:
    products of two matrix functions, i.e. two-point equivalents under a
    double contour integral."""
    wt = gd_weights(t)
    risk = (wt - w).T * Sigma * (wt - w) + s2
    D = 60
    s = np.linspace(0.2, 2, D)
    edge = s.max() * (1 + np.sqrt(0.5)) ** 2
    bind = dict(Sigma=s, n=2 * D, w=np.random.default_rng(0).standard_normal(D) / np.sqrt(D),
                sigma2=0.25, lr=1 / edge)
    de = sr.deterministic_equivalent(risk)
    res = de.compile().solve(**bind)
    assert res.success
    check_mc(res.value, sr.monte_carlo(risk, trials=200, seed=0, **bind), D)


def test_refused_cases():
    F = sr.RandomFeatures("F", d, 2 * d)
    with pytest.raises(NotImplementedError, match="feature-space"):
        sr.deterministic_equivalent(sr.ntr(sr.matrix_function(lambda x: sp.exp(-x), F.T * Sh * F)))
    # f(Σ̂ + B) derives now (general law, tests/test_pfn_spectral.py); a negative weight is refused
    with pytest.raises(NotImplementedError, match="weight"):
        sr.deterministic_equivalent(sr.ntr(sr.matrix_function(lambda x: sp.exp(-x), Sigma - Sh)))


def test_codegen_refuses_norm_and_matrix_functions():
    de = sr.deterministic_equivalent(sr.ntr(sr.matrix_function(sp.exp, Sigma) * (Sh + lr * I).inverse()))
    with pytest.raises(NotImplementedError, match="MatrixFunction"):
        de.to_python()


def test_gradient_descent_one_order_in_t():
    """Issue 13: at ``t = 1`` (``w₁ = ηXᵀy/n``, no matrix function) the risk
    used exact finite-``n`` Wishart moments (``E[Σ̂BΣ̂]`` with the transposed
    pairing ``ΣBᵀΣ/n``) while ``t ≥ 2`` uses first-order equivalents: a jump
    of ``η²wᵀΣ³w/n``. Now the same first order throughout: the ``t = 1``
    value equals (i) the contour route on ``g(x) = η(1 + c x)`` at ``c = 0``
    and (ii) the first-order closed form
    ``wᵀΣw − 2η wᵀΣ²w + η²(wᵀΣ³w + (wᵀΣw + σ²)TrΣ²/n) + σ²``, no longer
    the exact moment (``+ jump``); the curve decreases from there."""
    c = sr.scalar("c", positive=None)
    D = 60
    s = np.linspace(0.2, 2, D)
    wv = np.random.default_rng(0).standard_normal(D) / np.sqrt(D)
    h = 1 / (s.max() * (1 + np.sqrt(0.5)) ** 2)
    bind = dict(Sigma=s, n=2 * D, w=wv, sigma2=0.25, lr=h)

    def risk(wt, **extra):
        e = (wt - w).T * Sigma * (wt - w) + s2
        return float(sr.deterministic_equivalent(e).compile()(**bind, **extra))

    y = X * w + eps
    r1 = risk(lr * X.T * y / n)
    rc = risk(sr.matrix_function(lambda x: lr * (1 + c * x), Sh) * X.T * y / n, c=0.0)
    tr2 = np.sum(s ** 2)
    first = wv @ (s * wv) - 2 * h * wv @ (s ** 2 * wv) + h * h * (
        wv @ (s ** 3 * wv) + (wv @ (s * wv) + 0.25) * tr2 / (2 * D)) + 0.25
    jump = h * h * wv @ (s ** 3 * wv) / (2 * D)
    assert r1 == pytest.approx(first, rel=1e-12)
    assert rc == pytest.approx(first, rel=1e-9)
    assert abs(r1 - (first + jump)) > 1e3 * 1e-12 * first
    curve = [r1] + [risk(gd_weights(t)) for t in (2, 3)]
    assert np.all(np.diff(curve) < 0)


# ---------------------------------------------------------------- long time, memory
def edge_bound(s, m):
    """The default circle's ``x₊ = u(1 + Σ s/(u−s)/m)``, ``u = ‖Σ‖ + √(Tr Σ²/m)``
    (``An.circle``), computed here in NumPy."""
    u = s.max() + np.sqrt(np.sum(s ** 2) / m)
    return u * (1 + np.sum(s / (u - s)) / m)


@pytest.mark.parametrize("spec, q", [("iso", 0.5), ("iso", 2.0), ("pow", 0.5), ("pow", 2.0)])
def test_default_circle_bounds_the_edge(spec, q):
    """``x₊`` is the exact edge ``(1+√q)²`` for ``Σ = I``; for a power law it
    bounds the edge of the limiting density (``numerics.density``: no mass in
    ``(x₊, 1.1x₊)``, mass just below the edge) within a factor 1.5, where the
    former ``‖Σ‖(1+√q)²`` is ≥ 2.5 times too large at ``q = 1/2``."""
    from symrmt.numerics.density import spectral_density
    D = 200
    s = np.ones(D) if spec == "iso" else np.arange(1, D + 1) ** -1.5
    N = int(D / q)
    xp = edge_bound(s, N)
    if spec == "iso":
        assert xp == pytest.approx((1 + np.sqrt(q)) ** 2, rel=1e-12)
        return
    beyond = spectral_density(s, N, np.linspace(xp, 1.1 * xp, 5)).density
    assert np.all(np.abs(beyond) < 1e-6)
    x = np.linspace(xp / 1.5, xp, 200)
    assert np.max(spectral_density(s, N, x).density) > 1e-3
    if q == 0.5:
        assert s.max() * (1 + np.sqrt(q)) ** 2 > 2.5 * xp / 1.5


def test_long_time_gradient_descent_power_law():
    """Issue 13: power-law spectrum, ``η = 1`` (≈ 1/edge), ``t = 30`` failed
    with the circle around ``[0, ‖Σ‖(1+√q)²]`` (``|1 − ηz|^t`` up to ~1e10 on
    it); with the circle from the spectral edge it converges, against Monte
    Carlo (``d = 40``, ``n = 2d``, 100 draws)."""
    wt = gd_weights(30)
    risk = (wt - w).T * Sigma * (wt - w) + s2
    D = 40
    s = np.arange(1, D + 1) ** -1.5
    bind = dict(Sigma=s, n=2 * D, w=np.random.default_rng(0).standard_normal(D) / np.sqrt(D), sigma2=0.25, lr=1.0)
    res = sr.deterministic_equivalent(risk).compile().solve(**bind)
    assert res.success and np.max(res.quad_error) < 1e-8 * abs(res.value)
    check_mc(res.value, sr.monte_carlo(risk, trials=100, seed=0, **bind), D)


def test_quadrature_chunks_do_not_change_values(monkeypatch):
    """Nodes are evaluated in chunks of at most ``POINTS`` extended points
    (``POINTS_NESTED`` with an integral inside): tiny chunks give the same
    double integral (sampling-map variance) to rounding."""
    from symrmt.numerics import quadrature
    sT2, x = sr.scalar("sigmaT2"), sr.Vector("x", d)
    v = sr.Vector("v", d)
    expr = sr.var(v.T * sr.sqrt(Sh + s2 * I) * sr.power(Sh + sT2 * I, -sp.Rational(1, 2)) * x)
    de = sr.deterministic_equivalent(expr)
    D = 10
    bind = dict(Sigma=np.linspace(0.5, 1.5, D), n=3 * D, v=np.eye(D)[0], x=np.ones(D),
                sigma2=np.array([0.1, 1.0]), sigmaT2=10.0)
    ref = de.compile()(**bind)
    monkeypatch.setattr(quadrature, "POINTS", 64)
    monkeypatch.setattr(quadrature, "POINTS_NESTED", 3)
    np.testing.assert_allclose(de.compile()(**bind), ref, rtol=1e-13)


@pytest.mark.slow
def test_quadrature_memory_bound():
    """Peak NumPy/Python allocation (tracemalloc) of the sampling-map variance
    at ``d = n = 1600`` (isotropic) and of the gradient-descent risk (power
    law, ``d = 400``, ``t = 10``) stays under 1 GiB."""
    import tracemalloc
    sT2, x, v = sr.scalar("sigmaT2"), sr.Vector("x", d), sr.Vector("v", d)
    mv = sr.var(v.T * sr.sqrt(Sh + s2 * I) * sr.power(Sh + sT2 * I, -sp.Rational(1, 2)) * x)
    wt = gd_weights(10)
    D1, D2 = 1600, 400
    cases = [(mv, dict(Sigma=np.ones(D1), n=D1, v=np.eye(D1)[0], x=np.ones(D1), sigma2=0.1, sigmaT2=10.0)),
             ((wt - w).T * Sigma * (wt - w) + s2,
              dict(Sigma=np.arange(1, D2 + 1) ** -1.5, n=2 * D2, w=np.ones(D2) / np.sqrt(D2), sigma2=0.25, lr=1.0))]
    for expr, bind in cases:
        f = sr.deterministic_equivalent(expr).compile()
        tracemalloc.start()
        res = f.solve(**bind)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert res.success and peak < 2 ** 30, peak
