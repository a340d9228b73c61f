"""n = d (and n − 1 = d with ddof = 1): the one-block Wishart equation near λ = 0.

κ(1 − df(κ)/m) = λ with df(κ) = Tr[Σ(Σ+κ)⁻¹] = d − κ Tr[(Σ+κ)⁻¹] (exact, zeros of Σ
included), so 1 − df/m = ((m − d) + κ Tr[(Σ+κ)⁻¹])/m does not cancel at m = d, where
κ ≈ √(λ m / Tr Σ⁻¹) → 0. References are independent: the isotropic quadratic
κ² + κ(s − λ − q s) − λ s = 0 (q = d/m) and a bisection, both in mpmath at 50 digits;
the Marchenko–Pastur law (ratio 1) for E√x; a dense NumPy Monte Carlo.
"""
import mpmath as mp
import numpy as np
import pytest
from scipy import integrate

import symrmt as sr
from symrmt.numerics.examples import one_point

LAMS = [1e-2, 1e-8, 1e-16, 1e-40, 1e-200]


@pytest.fixture(scope="module")
def f_one():
    return one_point().compile()


def _kappa_iso(s, q, lam):
    """Positive root of κ² + κ(s − λ − q s) − λ s = 0, 50 digits (stable form)."""
    with mp.workdps(50):
        s, q, lam = mp.mpf(s), mp.mpf(q), mp.mpf(lam)
        b = s - lam - q * s
        disc = mp.sqrt(b * b + 4 * lam * s)
        return -b / 2 + disc / 2 if b <= 0 else 2 * lam * s / (b + disc)


def _kappa_bisect(spec, m, lam):
    """κ with κ(1 − Σ_i σ_i/(σ_i+κ)/m) = λ on df < m, by geometric bisection on
    [λ, λ + Tr Σ/m] (κ ≥ λ on the physical branch), in mpmath with the equation as written
    at 50 + |log10 λ| digits (1 − df/m ~ √λ cancels; the extra digits absorb it)."""
    with mp.workdps(50 + int(abs(np.log10(lam)))):
        sig = [mp.mpf(float(v)) for v in spec]
        m, lam = mp.mpf(m), mp.mpf(lam)

        def h(k):
            return k * (1 - mp.fsum(v / (v + k) for v in sig) / m)
        lo, hi = lam, lam + mp.fsum(sig) / m
        while hi - lo > mp.mpf(10) ** -45 * hi:
            mid = mp.sqrt(lo * hi)
            if h(mid) < lam:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2


@pytest.mark.parametrize("s", [1.7])
def test_isotropic_kappa_full_precision_at_n_equal_d(f_one, s):
    d = n = 150
    lam = np.array(LAMS)
    res = f_one.solve(Sigma=np.full(d, s), n=n, lam=lam)
    assert res.converged.all()
    ref = np.array([float(_kappa_iso(s, 1, l)) for l in LAMS])
    err = np.abs(res.x["kappa"] / ref - 1)
    assert err.max() <= 1e-12, err
    # κ ≈ √(λ n/Tr Σ⁻¹) = √(λ s) as λ → 0
    assert abs(res.x["kappa"][-1] / np.sqrt(LAMS[-1] * s) - 1) < 1e-12


def test_kappa_down_to_1e_300(f_one):
    d = n = 80
    res = f_one.solve(Sigma=np.full(d, 0.5), n=n, lam=np.array([1e-300]))
    assert res.converged.all()
    assert abs(res.x["kappa"][0] / float(_kappa_iso(0.5, 1, 1e-300)) - 1) <= 1e-12


def test_power_law_spectrum_vs_bisection(f_one):
    d = n = 60
    spec = np.arange(1, d + 1, dtype=float) ** -1.0
    lam = np.array(LAMS)
    res = f_one.solve(Sigma=spec, n=n, lam=lam)
    assert res.converged.all()
    ref = np.array([float(_kappa_bisect(spec, n, l)) for l in LAMS])
    err = np.abs(res.x["kappa"] / ref - 1)
    assert err.max() <= 1e-12, err


def test_under_parametrised_and_over_parametrised_sides(f_one):
    """n > d and n < d (κ(0⁺) = κ₀ > 0) still agree with the closed form."""
    s = 1.3
    for d, n in [(100, 200), (200, 100)]:
        lam = np.array([1e-1, 1e-8, 1e-40, 1e-200])
        res = f_one.solve(Sigma=np.full(d, s), n=n, lam=lam)
        assert res.converged.all()
        ref = np.array([float(_kappa_iso(s, d / n, l)) for l in lam])
        assert np.abs(res.x["kappa"] / ref - 1).max() <= 1e-12
    # n < d: the ridgeless limit κ(0⁺) = κ₀ = s(q − 1) (isotropic)
    # (the value (κ/λ)·tr[(Σ+κ)⁻¹] is a λ → 0 divergence: reported as undefined, κ still solved)
    out = f_one.solve(Sigma=np.full(200, s), n=100, lam=np.array([0.0]), options={"raise_on_failure": False})
    assert abs(out.x["kappa"][0] / (s * (2 - 1)) - 1) <= 1e-12 and not out.converged.any()


def test_ddof1_at_n_minus_1_equal_d():
    """Centred sample covariance: m = n − 1; at n − 1 = d, κ² − λκ − λs = 0 (isotropic)."""
    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    S = sr.sample_covariance(X, ddof=1)
    de = sr.deterministic_equivalent(sr.ntr((S + lam * sr.I(d)).inverse()))
    f = de.compile()
    s, dd = 0.8, 60
    lams = np.array(LAMS)
    res = f.solve(Sigma=np.full(dd, s), n=dd + 1, lam=lams)
    assert res.converged.all()
    (kname,) = [k for k in res.x]
    ref = np.array([float(_kappa_iso(s, 1, l)) for l in LAMS])
    assert np.abs(res.x[kname] / ref - 1).max() <= 1e-12
    # value ntr[(Σ̂+λ)⁻¹] = (κ/λ)/(s + κ) (isotropic one-point law)
    np.testing.assert_allclose(res.value, ref / lams / (s + ref), rtol=1e-12)


def _sqrt_trace_fn():
    n, d = sr.dims("n d")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    expr = sr.ntr(sr.sqrt(X.T * X / n))
    return expr, sr.deterministic_equivalent(expr).compile()


def test_sqrt_trace_at_n_equal_d_vs_marchenko_pastur():
    """E√x under Marchenko–Pastur with ratio 1 (density √(x(4−x))/(2πx) on [0, 4]),
    integrated numerically (= 8/(3π))."""
    _, f = _sqrt_trace_fn()
    ref = integrate.quad(lambda x: np.sqrt(x) * np.sqrt(x * (4 - x)) / (2 * np.pi * x), 0, 4,
                         epsabs=0, epsrel=1e-13)[0]
    for d in (50, 200):
        assert abs(float(f(Sigma=np.ones(d), n=d)) / ref - 1) <= 1e-9
    # scale: Σ = s I gives √s · E√x
    assert abs(float(f(Sigma=np.full(40, 2.5), n=40)) / (np.sqrt(2.5) * ref) - 1) <= 1e-9


def test_sqrt_trace_at_n_equal_d_vs_dense_monte_carlo():
    """Dense NumPy Monte Carlo, d = n = 100, power-ish spectrum; allowance k·sem + c·|th|/d,
    k = 4, c = 2 (first-order equivalent, O(1/d) relative)."""
    _, f = _sqrt_trace_fn()
    d = n = 100
    spec = np.linspace(0.1, 2.0, d)
    th = float(f(Sigma=spec, n=n))
    rng = np.random.default_rng(13)
    vals = []
    for _ in range(40):
        X = rng.standard_normal((n, d)) * np.sqrt(spec)
        ev = np.linalg.eigvalsh(X.T @ X / n)
        vals.append(np.mean(np.sqrt(np.clip(ev, 0, None))))
    vals = np.array(vals)
    mean, sem = vals.mean(), vals.std(ddof=1) / np.sqrt(len(vals))
    k, c = 4.0, 2.0
    assert abs(mean - th) <= k * sem + c * abs(th) / d, (th, mean, sem)


@pytest.mark.parametrize("case", ["known", "estimated"])
def test_sampling_map_endpoint_at_n_equal_d(case):
    """The diffusion sampling map (derivations/diffusion_consistency.py) at σ² = 0 with
    m = d (m = n, or n − 1 with the mean estimated): finite, and the limit of σ² → 0⁺
    (κ(σ²) ~ √σ² there, so the map's σ²-dependence is O(√σ²))."""
    import pathlib
    import sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "derivations"))
    import diffusion_consistency as dc
    model = dc.Model()
    f = sr.deterministic_equivalent(model.expressions()[f"map/{case}"]).compile()
    b = dc.random_bindings(np.random.default_rng(2))
    d = len(b["Sigma"])
    bb = {k: b[k] for k in ("Sigma", "mu", "v", "x")}
    bb.update(n=d if case == "known" else d + 1, sigmaT2=1.0)
    at0 = float(f(**bb, sigma2=0.0))
    near = f(**bb, sigma2=np.array([1e-20, 1e-16]))
    assert np.isfinite(at0)
    assert abs(near[0] - at0) <= 1e-8 * abs(at0) and abs(near[1] - at0) <= 1e-6 * abs(at0)


def test_generated_module_keeps_digits_at_n_equal_d():
    """The standalone module (``de.to_python()``) uses the same cancellation-free
    residual: ``ntr G`` at n = d against the closed form at 60 digits."""
    import types
    import mpmath as mp
    import symrmt as sr
    n, d = sr.dims("n d")
    lam = sr.scalar("lam")
    X = sr.GaussianData("X", n, sr.Covariance("Sigma", d))
    de = sr.deterministic_equivalent(sr.ntr((X.T * X / n + lam * sr.I(d)).inverse()))
    mod = types.ModuleType("generated_n_equals_d")
    exec(de.to_python(), mod.__dict__)
    s = 1.7
    with mp.workdps(60):
        for lamv in (1e-2, 1e-8, 1e-16, 1e-30):
            a = mp.mpf(s) - lamv - s                      # q = d/n = 1
            k = (-a + mp.sqrt(a * a + 4 * lamv * s)) / 2
            exact = k / (lamv * (k + s))                    # ntr G = (κ/λ)/(s+κ)
            got = mod.evaluate(Sigma=np.full(150, s), n=150, lam=lamv)
            assert float(abs(got - exact) / exact) < 1e-12, (lamv, got, exact)
