"""``symrmt.testing`` strategies, and property-based tests built on them.

Identities are checked on single draws of the Monte Carlo evaluator to
1e-10; the resolvent trace against its equivalent (independent bisection)
within ``3·sem + 2|θ|/(n−d)`` — the finite-size allowance is twice the
largest gap docs/math.md quotes (``1/(n−d−1)`` relative, ``tr Σ̂⁻¹``, ``Σ = I``).
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import symrmt as sr
import symrmt.testing as srt
from symrmt.montecarlo import evaluate_draw, monte_carlo

from .dense_reference import kappa_bisection as kappa

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MC = settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
I = sr.I(d)
G = (Sh + lam * I).inverse()


# ---------------------------------------------------------------- strategies
@FAST
@given(s=srt.spectra(srt.dimensions(1, 40)))
def test_spectra_are_valid(s):
    assert s.ndim == 1 and 1 <= s.size <= 40
    assert np.all(np.isfinite(s)) and np.all(s > 0)


@FAST
@given(s=srt.multilevel_spectra(30, levels=(2, 3)))
def test_multilevel_has_few_levels(s):
    assert s.size == 30 and 1 <= np.unique(s).size <= 3


@FAST
@given(s=srt.power_law_spectra(20))
def test_power_law_decreases(s):
    assert np.all(np.diff(s) < 0)


@FAST
@given(A=srt.psd_matrices(12))
def test_psd_matrices(A):
    assert A.shape == (12, 12) and np.array_equal(A, A.T)
    assert np.linalg.eigvalsh(A)[0] > -1e-12 * np.abs(A).max()


@FAST
@given(sh=srt.shapes(4, 50, aspect=srt.aspect_ratios(0.2, 2.0, avoid_critical=0.2)), lam_=srt.ridges(),
       v=srt.unit_vectors(9))
def test_scalars_and_shapes(sh, lam_, v):
    assert 4 <= sh["d"] <= 50 and sh["n"] >= 2
    assert abs(sh["d"] / sh["n"] - 1) > 0.1  # rounding n moves q a little
    assert 1e-3 <= lam_ <= 10 and np.isclose(np.linalg.norm(v), 1)


# ---------------------------------------------------------------- identities
@FAST
@given(data=st.data(), sh=srt.shapes(3, 30), lam_=srt.ridges(1e-2, 10), full=st.booleans(),
       seed=st.integers(0, 2**16))
def test_resolvent_identity_on_single_draws(data, sh, lam_, full, seed):
    """Tr[Σ̂(Σ̂+λ)⁻¹] = d − λTr[(Σ̂+λ)⁻¹] on every draw (diagonal or full Σ)."""
    dd = sh["d"]
    s = data.draw(srt.psd_matrices(dd) if full else srt.spectra(dd))
    gap, _ = evaluate_draw(sr.Tr(Sh * G) - (d - lam * sr.Tr(G)), seed=seed, Sigma=s, n=sh["n"], lam=lam_)
    assert abs(gap) <= 1e-10 * dd


@FAST
@given(data=st.data(), sh=srt.shapes(3, 30), lam_=srt.ridges(1e-2, 10), seed=st.integers(0, 2**16))
def test_trace_and_quadratic_form_agree(data, sh, lam_, seed):
    """Tr[w wᵀ M] = wᵀ M w for M = GΣG + (Σ̂+λ)^{1/2} on the same draw."""
    dd = sh["d"]
    s, v = data.draw(srt.spectra(dd)), data.draw(srt.unit_vectors(dd))
    M = G * Sigma * G + sr.sqrt(Sh + lam * I)
    b = dict(Sigma=s, n=sh["n"], lam=lam_, w=v)
    tr, _ = evaluate_draw(sr.Tr(w * w.T * M), seed=seed, **b)
    form, _ = evaluate_draw(w.T * M * w, seed=seed, **b)
    assert abs(tr - form) <= 1e-10 * max(1.0, abs(form))


# ---------------------------------------------------------------- equivalent


@MC
@given(data=st.data(), sh=srt.shapes(20, 60, aspect=srt.aspect_ratios(0.1, 0.5)),
       lam_=srt.ridges(1e-2, 10), seed=st.integers(0, 2**16))
def test_resolvent_trace_against_equivalent(data, sh, lam_, seed):
    """(1/d)Tr[Σ(Σ̂+λ)⁻¹] ≃ (κ/λ)(1/d)Σ s/(s+κ), κ(1 − df1(κ)/n) = λ."""
    dd, nn = sh["d"], sh["n"]
    s = data.draw(srt.spectra(dd))
    r = monte_carlo(sr.ntr(Sigma * G), trials=100, seed=seed, progress=False, Sigma=s, n=nn, lam=lam_)
    k = kappa(s, nn, lam_)
    theta = k / lam_ * np.mean(s / (s + k))
    assert abs(r.mean - theta) <= 3 * r.sem + 2 * abs(theta) / (nn - dd)
