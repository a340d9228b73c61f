"""The white-Wishart law with feature layers solves the PHYSICAL root.

``h(κ) = κ Π_j (1 − df(κ)/m_j) = λ`` (``df(κ) = Tr[Σ(Σ+κ)⁻¹]``, sizes
``m_j = n, p₁, p₂, …``) has one root on the branch ``df < min_j m_j`` (where
``h`` increases from 0 to ∞), but with two or more factors it can vanish
again off the branch, where an even number of factors are negative
(``df > n, p``). A solver that accepted a small Newton step there returned a
wrong κ — e.g. Σ = I₁₀₀, n = 50, p = 25, λ = 0.01: κ = 0.980 (df = 50.5)
instead of 3.026, and a negative random-feature risk. These tests compare
the engine's κ with an independent bisection on the branch, over random
spectra (flat ones included), shapes with ``d > n, p`` and ridges, for
one, two and three factors (plain ridge, random features, a deep chain).
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symrmt as sr


def _kappa_bisect(s, ms, lam):
    """Independent root of ``κ Π(1 − df/m) = λ`` on ``df < min m``: ``h`` is
    increasing there, from 0 at the branch edge (``df = min m``, or κ = 0)."""
    mmin = min(ms)

    def df(k):
        return float(np.sum(s / (s + k)))

    lo = 0.0
    if np.count_nonzero(s) > mmin:      # branch edge κ_min: df(κ_min) = min m
        a, b = 0.0, float(np.sum(s)) / mmin + 1.0
        for _ in range(200):
            c = 0.5 * (a + b)
            a, b = (c, b) if df(c) > mmin else (a, c)
        lo = b
    hi = lam + float(np.sum(s)) * sum(1.0 / m for m in ms) + 1.0

    def h(k):
        return k * np.prod([1 - df(k) / m for m in ms])

    for _ in range(300):
        c = 0.5 * (lo + hi)
        lo, hi = (c, hi) if h(c) < lam else (lo, c)
    return 0.5 * (lo + hi)


@pytest.fixture(scope="module")
def compiled():
    n, d, p, p2 = sr.dims("n d p p2")
    lam = sr.scalar("lam")
    S = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, S)
    F1 = sr.RandomFeatures("F", d, p)
    F2 = sr.RandomFeatures("F2", p, p2)
    out = {}
    for name, Z, k in (("ridge", X, d), ("rf", X * F1, p), ("deep", X * F1 * F2, p2)):
        G = (Z.T * Z / n + lam * sr.I(k)).inverse()
        out[name] = sr.deterministic_equivalent(lam * sr.ntr(G)).compile()
    return out


def test_flat_spectrum_regression(compiled):
    """The case that returned a spurious root (κ = 0.980, df = 50.5 > n, p)."""
    r = compiled["rf"].solve(Sigma=np.ones(100), n=50, p=25, lam=1e-2)
    k = float(r.x["kappa"])
    assert abs(k - _kappa_bisect(np.ones(100), [50, 25], 1e-2)) <= 1e-9 * k
    assert 100 / (1 + k) < 25


SPECTRA = st.sampled_from(["flat", "power", "two-level", "rank-deficient"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=SPECTRA, d=st.integers(20, 120), fn=st.floats(0.1, 3.0), fp=st.floats(0.1, 3.0),
       fp2=st.floats(0.1, 3.0), loglam=st.floats(-4, 1), layers=st.sampled_from(["ridge", "rf", "deep"]),
       seed=st.integers(0, 2 ** 16))
def test_engine_kappa_is_the_physical_root(compiled, kind, d, fn, fp, fp2, loglam, layers, seed):
    rng = np.random.default_rng(seed)
    s = {"flat": np.ones(d), "power": np.arange(1, d + 1) ** -rng.uniform(0.3, 2.0),
         "two-level": np.where(rng.random(d) < 0.5, 1.0, rng.uniform(0.01, 0.5)),
         "rank-deficient": np.where(np.arange(d) < d // 2, rng.uniform(0.5, 2.0, d), 0.0)}[kind]
    n, p, p2 = (max(2, int(round(f * d))) for f in (fn, fp, fp2))
    lam = 10.0 ** loglam
    ms = {"ridge": [n], "rf": [n, p], "deep": [n, p, p2]}[layers]
    b = dict(Sigma=s, n=n, lam=lam)
    if layers != "ridge":
        b["p"] = p
    if layers == "deep":
        b["p2"] = p2
    r = compiled[layers].solve(**b)
    assert bool(np.all(r.converged))
    k = float(r.x["kappa"])
    ref = _kappa_bisect(s, ms, lam)
    assert abs(k - ref) <= 1e-8 * ref + 1e-300, (k, ref, ms)
    assert float(np.sum(s / (s + k))) < min(ms)                    # on the branch


@pytest.mark.parametrize("layers", ["rf", "deep"])
@pytest.mark.parametrize("kind", ["flat", "power"])
def test_sweep_below_the_data_dimension(compiled, layers, kind):
    """Every (n, p[, p₂]) < d on a λ grid: the regime where two factors can be
    negative together (the old solver's spurious roots lived here)."""
    d = 100
    s = np.ones(d) if kind == "flat" else np.arange(1, d + 1) ** -1.0
    lams = np.logspace(-4, 0, 9)
    for n in (10, 25, 50, 75):
        for p in (10, 25, 50, 75):
            b = dict(Sigma=s, n=n, p=p, lam=lams)
            ms = [n, p]
            if layers == "deep":
                b["p2"] = 40
                ms.append(40)
            k = np.asarray(compiled[layers].solve(**b).x["kappa"], dtype=float)
            ref = np.array([_kappa_bisect(s, ms, l_) for l_ in lams])
            assert np.all(np.abs(k - ref) <= 1e-8 * ref), (n, p, k, ref)
