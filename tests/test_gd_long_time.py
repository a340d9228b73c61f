"""Long-time full-batch gradient descent (issue 13) and whole risk curves on
one shared contour (issue 17, item 2).

``w_t = g_t(Σ̂)Xᵀy/n``, ``g_t(x) = (1 − (1 − ηx)^t)/x``, ``y = Xw + ε``; test
risk ``R_t = (w_t − w)ᵀΣ(w_t − w) + σ²``, with a symbolic integer ``t``. The
default contour is the ellipse of ``spectral_fn.ellipse`` (``|1 − ηz|^t``
bounded on it), so ``t = 100, 1000`` converge where the former circle failed.

Independent references:
* isotropic ``Σ = I``: by rotational invariance
  ``R_t = |w|² ∫(1−ηx)^{2t} dμ + σ²(d/n) ∫ x g_t(x)² dμ + σ²`` with ``μ`` the
  Marchenko–Pastur law (its atom ``1 − n/d`` at 0 for ``n < d``), by
  ``scipy.integrate.quad`` on the real axis;
* power-law ``Σ``: a hand-written NumPy evaluation of the two-point formula of
  docs/math.md (``G₁ΣG₂ ≃ (κ₁κ₂/λ₁λ₂) R₁ΣR₂/(1 − γ₁₂)`` for the bias, the
  one-point equivalent for ``σ²Tr[g²Σ̂Σ]/n``) on a different contour (an
  ellipse with foci 0 and the exact edge found by a golden-section search,
  half the engine's growth allowance), with its own κ solver (bisection on the
  real axis, Newton continued along the contour) and a fixed large node count;
* Monte Carlo: a dense NumPy simulation (``eigh`` of ``XᵀX/n`` drawn here),
  at two sizes ``d``, ``|mc − th| ≤ K·sem + C·|th|/d`` with ``K = 4``, ``C = 2``.
"""
import numpy as np
import pytest
from scipy.integrate import quad

import symrmt as sr
from symrmt.numerics.contour import curve

K, C = 4.0, 2.0
n, d = sr.dims("n d")
lr, s2 = sr.scalar("lr"), sr.scalar("sigma2")
t = sr.scalar("t", integer=True)
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
Sh = X.T * X / n
WT = sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh) * X.T * (X * w + eps) / n
RISK = (WT - w).T * Sigma * (WT - w) + s2
_DE = {}


def risk_de():
    if "de" not in _DE:
        _DE["de"] = sr.deterministic_equivalent(RISK)
    return _DE["de"]


def mp_risk(q, eta, T, w2, sigma2):
    """Isotropic reference (unit variance, ``q = d/n``), real-axis quadrature."""
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2

    def dens(x):
        return np.sqrt(max((hi - x) * (x - lo), 0.0)) / (2 * np.pi * q * x)

    def h(x):
        return (1 - eta * x) ** T

    b = quad(lambda x: h(x) ** 2 * dens(x), lo, hi, epsabs=0, epsrel=1e-13, limit=500)[0]
    v = quad(lambda x: (1 - h(x)) ** 2 / x * dens(x), lo, hi, epsabs=0, epsrel=1e-13, limit=500)[0]
    if q > 1:
        b += 1 - 1 / q
    return w2 * b + sigma2 * q * v + sigma2


def _kappa_on(zs, s, m):
    """κ(λ = −z) on the nodes ``zs`` of a closed contour: the real physical root
    at the node on the negative real axis (``λ > 0``), then Newton continued
    node by node in both directions."""
    def F(k, lam):
        return k * (1 - np.sum(s / (s + k)) / m) - lam

    def dF(k):
        return 1 - np.sum(s / (s + k)) / m + k * np.sum(s / (s + k) ** 2) / m

    i0 = int(np.argmin(zs.real))
    lam0 = -zs[i0].real
    lo, hi = lam0, lam0 + np.sum(s) + 1.0
    for _ in range(200):                       # bisection on the increasing physical branch
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if F(mid, lam0) < 0 else (lo, mid)
    out = np.empty(len(zs), dtype=complex)
    k = complex((lo + hi) / 2)
    N = len(zs)
    for step in (1, -1):
        k_prev = complex((lo + hi) / 2)
        for j in range(N // 2 + 1):
            i = (i0 + step * j) % N
            lam = -zs[i]
            k = k_prev
            for _ in range(60):
                dk = F(k, lam) / dF(k)
                k -= dk
                if abs(dk) < 1e-15 * abs(k):
                    break
            assert abs(F(k, lam)) < 1e-10 * abs(lam)
            assert np.sign(k.imag) == np.sign(lam.imag) or abs(lam.imag) < 1e-14
            out[i] = k
            k_prev = k
    return out


def exact_edge(s, m):
    """The upper edge of the limiting spectrum, ``min_{u>‖Σ‖} u(1 + Σ_k s_k/(u − s_k)/m)``
    (golden-section search; the engine uses a closed-form upper bound instead)."""
    f = lambda u: u * (1 + np.sum(s / (u - s)) / m)
    a, b = s.max() * (1 + 1e-9), s.max() + 10 * (np.sqrt(np.sum(s ** 2) / m) + s.max())
    gr = (np.sqrt(5) - 1) / 2
    for _ in range(200):
        c1, c2 = b - gr * (b - a), a + gr * (b - a)
        a, b = (a, c2) if f(c1) < f(c2) else (c1, b)
    return f((a + b) / 2)


def reference_risk(s, m, wv, sigma2, eta, T, N):
    """The GD risk equivalent by hand: the midpoint rule on the ellipse with foci
    ``0`` and the exact edge ``x₊``, ``z = x₊/2 + x₊(ρe^{iθ} + e^{−iθ}/ρ)/4``,
    its size from ``|1 − ηz|^T ≤ e`` (half the growth the engine allows),
    ``N`` nodes per contour."""
    xp = exact_edge(s, m)
    hh = xp / 2
    a1, b1 = abs(1 - eta * hh), eta * hh
    A = 1 + min(0.25, (1 + a1 / b1) * np.expm1(1.0 / T))
    rho = A + np.sqrt(A * A - 1)
    th = 2 * np.pi * (np.arange(N) + 0.5) / N
    e = np.exp(1j * th)
    z = hh + hh * (rho * e + 1 / (rho * e)) / 2
    dz = 1j * hh * (rho * e - 1 / (rho * e)) / 2 * (2 * np.pi / N)
    kap = _kappa_on(z, s, m)
    h = (1 - eta * z) ** T
    g = (1 - h) / z
    R = 1 / (s[None, :] + kap[:, None])                        # N × d
    # one-point: (z − Σ̂)⁻¹ ≃ (κ/z)(Σ+κ)⁻¹; variance term σ² Tr[g(Σ̂)²Σ̂Σ]/n
    V = np.sum(z * g ** 2 * (kap / z) * (R @ s) * dz) / (2j * np.pi)
    # two-point: (z₁−Σ̂)⁻¹Σ(z₂−Σ̂)⁻¹ ≃ (κ₁κ₂/z₁z₂) R₁ΣR₂/(1−γ₁₂), γ₁₂ = Tr[Σ²R₁R₂]/m
    a = kap / z * h * dz
    Wf = (R * (wv ** 2 * s)) @ R.T
    gam = (R * s ** 2) @ R.T / m
    B = a @ (Wf / (1 - gam)) @ a / (2j * np.pi) ** 2
    return float(np.real(B + sigma2 * V / m + sigma2))


def gd_monte_carlo(s, m, wv, sigma2, eta, T, trials, seed):
    """Dense NumPy Monte Carlo of the GD risk: ``w_t`` from the eigendecomposition of ``XᵀX/m``."""
    rng = np.random.default_rng(seed)
    D = len(s)
    vals = []
    for _ in range(trials):
        Xd = rng.standard_normal((m, D)) * np.sqrt(s)
        y = Xd @ wv + np.sqrt(sigma2) * rng.standard_normal(m)
        ev, U = np.linalg.eigh(Xd.T @ Xd / m)
        ev = np.clip(ev, 0, None)
        gt = np.where(ev > 1e-12, (1 - (1 - eta * ev) ** T) / np.where(ev > 1e-12, ev, 1), eta * T)
        wt = U @ (gt * (U.T @ (Xd.T @ y / m)))
        e = wt - wv
        vals.append(e @ (s * e) + sigma2)
    return np.mean(vals), np.std(vals, ddof=1) / np.sqrt(trials)


# ---------------------------------------------------------------- isotropic, closed form
@pytest.mark.parametrize("q", [0.5, 2.0])
def test_isotropic_long_time_against_marchenko_pastur(q):
    """``t = 100, 1000`` at ``η = 1/edge`` and ``η = 0.5/edge``, ``n > d`` and
    ``n < d``: the shared-contour curve equals the real-axis MP value to
    1e-9; at ``t = 1000``, ``n > d`` this is the ridgeless limit
    ``σ²/(1 − q)`` (GD has converged to least squares)."""
    D = 40
    N = int(D / q)
    wv = np.random.default_rng(0).standard_normal(D) / np.sqrt(D)
    edge = (1 + np.sqrt(q)) ** 2
    ts, etas = np.array([100, 1000]), np.array([0.5, 1.0]) / edge
    res = curve(risk_de(), dict(Sigma=np.ones(D), n=N, w=wv, sigma2=0.25, t=ts[:, None], lr=etas[None, :]),
                over=("t", "lr"))
    assert res.success and np.all(res.error <= 1e-8 * np.abs(res.value))
    ref = np.array([[mp_risk(q, e, T, wv @ wv, 0.25) for e in etas] for T in ts])
    np.testing.assert_allclose(res.value, ref, rtol=1e-9)
    if q < 1:
        assert res.value[1, 1] == pytest.approx(0.25 / (1 - q), rel=1e-9)


@pytest.mark.slow
def test_engine_default_contour_long_time():
    """The per-point engine path (``de.compile()``) at ``t = 100``, power law,
    on its own default ellipse: equal to the curve evaluator (one contour for
    the grid) to 1e-10, with an honest quadrature error."""
    D = 30
    s = np.arange(1, D + 1) ** -1.5
    wv = np.random.default_rng(1).standard_normal(D) / np.sqrt(D)
    bind = dict(Sigma=s, n=2 * D, w=wv, sigma2=0.25)
    res = risk_de().compile().solve(**bind, t=100, lr=1.0)
    assert res.success and res.quad_error <= 1e-8 * abs(res.value)
    cur = curve(risk_de(), dict(bind, t=np.array([100]), lr=np.array([1.0])), over=("t", "lr"))
    assert float(cur.value[0]) == pytest.approx(float(res.value), rel=1e-10)


# ---------------------------------------------------------------- power law, independent NumPy
@pytest.mark.parametrize("q, cases", [
    (0.5, [(100, 1.0), (1000, 1.0)]),
    pytest.param(0.5, [(100, 0.5), (1000, 0.5)], marks=pytest.mark.slow),
    pytest.param(2.0, [(100, 0.5), (100, 1.0), (1000, 0.5), (1000, 1.0)], marks=pytest.mark.slow),
])
def test_power_law_long_time_against_hand_written_contour(q, cases):
    """Power-law spectrum ``s_k = k^{−1.5}``, ``t = 100, 1000``, ``η = 1``
    (``≈ 1/edge``) and ``0.5``: the engine-derived curve (ellipse from the
    engine's edge bound, adaptive nodes) against the hand-written two-point
    formula on another ellipse with 600 / 1500 nodes per contour, to 1e-8."""
    D = 40
    N = int(D / q)
    s = np.arange(1, D + 1) ** -1.5
    wv = np.random.default_rng(2).standard_normal(D) / np.sqrt(D)
    ts, etas = np.array([c[0] for c in cases]), np.array([c[1] for c in cases])
    res = curve(risk_de(), dict(Sigma=s, n=N, w=wv, sigma2=0.25, t=ts, lr=etas), over=("t", "lr"))
    assert res.success
    assert exact_edge(s, N) < 2 / etas.max()          # stable GD: |1 − ηx| ≤ 1 on the spectrum
    for i, (T, e) in enumerate(cases):
        ref = reference_risk(s, N, wv, 0.25, e, T, N=600 if T == 100 else 1500)
        assert res.value[i] == pytest.approx(ref, rel=1e-8), (T, e)


def test_power_law_long_time_against_monte_carlo():
    """``t = 100``, ``η = 1``, ``n = 2d``, ``d = 30, 60`` (300 and 150
    draws): within ``4·sem + 2|th|/d`` of a dense NumPy Monte Carlo."""
    for D, trials in ((30, 300), (60, 150)):
        s = np.arange(1, D + 1) ** -1.5
        wv = np.random.default_rng(3).standard_normal(D) / np.sqrt(D)
        th = float(curve(risk_de(), dict(Sigma=s, n=2 * D, w=wv, sigma2=0.25, t=np.array([100]),
                                         lr=np.array([1.0])), over=("t", "lr")).value[0])
        mean, sem = gd_monte_carlo(s, 2 * D, wv, 0.25, 1.0, 100, trials, seed=D)
        assert abs(th - mean) <= K * sem + C * abs(th) / D, (D, th, mean, sem)


# ---------------------------------------------------------------- honesty, refusals
def test_curve_reports_non_convergence():
    """Too few node doublings for the requested tolerance: ``converged`` is
    False and the value NaN, with the error estimate kept."""
    D = 30
    s = np.arange(1, D + 1) ** -1.5
    bind = dict(Sigma=s, n=2 * D, w=np.ones(D) / np.sqrt(D), sigma2=0.25, t=np.array([1000]), lr=np.array([1.0]))
    res = curve(risk_de(), bind, over=("t", "lr"), n0=8, max_level=1, rtol=1e-12)
    assert not res.success and np.isnan(res.value[0]) and res.error[0] > 1e-12


def test_curve_refuses_parameters_inside_kernels():
    D = 10
    bind = dict(Sigma=np.ones(D), n=np.array([20, 40]), w=np.ones(D) / np.sqrt(D), sigma2=0.25, t=10, lr=0.5)
    with pytest.raises(NotImplementedError, match="enter the self-consistent"):
        curve(risk_de(), bind, over=("n",))
    with pytest.raises(NotImplementedError, match="3 dimensions"):      # full d×d matrices are evaluated densely
        curve(risk_de(), dict(bind, n=20, Sigma=np.ones((D, D, 2)), t=np.array([10])), over=("t",))


def test_curve_validates_bindings():
    D = 10
    bind = dict(Sigma=np.ones(D), n=20, w=np.ones(D) / np.sqrt(D), sigma2=0.25, t=np.array([10, 20]), lr=0.5)
    with pytest.raises(ValueError, match="'t' must be integers"):
        curve(risk_de(), dict(bind, t=np.array([10.5])), over=("t",))
    with pytest.raises(ValueError, match="'lr' must be positive"):
        curve(risk_de(), dict(bind, lr=np.array([-0.5, 0.5])), over=("lr",))
    with pytest.raises(ValueError, match="no binding"):
        curve(risk_de(), {k: v for k, v in bind.items() if k != "t"}, over=("t",))


@pytest.mark.parametrize("T, eta, xp", [(1, 0.3, 4.0), (30, 1.0, 1.0), (1000, 1.0, 1.0), (1000, 1.9, 1.0),
                                        (200, 0.1, 5.0)])
def test_default_ellipse_bounds_growth(T, eta, xp):
    """The default ellipse (``spectral_fn.ellipse``: foci 0 and ``x₊``,
    ``A = (ρ+1/ρ)/2`` from the growth bounds): on it ``|1 − ηz|^T`` is at
    most ``e^GROWTH`` times its maximum on ``[0, x₊]`` (checked on 20000
    points), and it encloses ``[0, x₊]``."""
    import sympy as sp
    from symrmt.equivalence import spectral_fn as sf
    x = sp.Symbol("x")
    h = m = sp.Float(xp) / 2
    inv = 1 / sf.A_MAX + sum(1 / b for b in sf._growth_bounds((1 - sp.Float(eta) * x) ** T, x, m, h))
    A = float(1 + 1 / inv)
    rho = A + np.sqrt(A * A - 1)
    th = np.linspace(0, 2 * np.pi, 20001)
    z = xp / 2 + xp / 4 * (rho * np.exp(1j * th) + np.exp(-1j * th) / rho)
    seg = np.linspace(0, xp, 20001)
    on_seg = np.max(np.abs(1 - eta * seg)) ** T
    assert np.max(np.abs(1 - eta * z)) ** T <= np.exp(sf.GROWTH) * on_seg * (1 + 1e-12)
    assert z.real.min() < 0 and z.real.max() > xp
