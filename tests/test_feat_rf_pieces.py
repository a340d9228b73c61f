"""Random features: two feature resolvents at equal ridges, and bare feature
cores without a resolvent.

* Two resolvents at two ridge symbols ``G(λ₁)⋯G(λ₂)`` used to be 0/0 at
  ``λ₁ = λ₂`` (stage F split ``(s+a₁)⁻¹(s+a₂)⁻¹`` into partial fractions with
  ``1/(a₁ − a₂)``). The product is now kept whole and replaced by its
  divided-difference equivalent, written without ``1/(a₁ − a₂)``
  (``features._Calculus._pair``). Checked: at ``λ₁ = λ₂`` it equals the
  one-ridge form (same symbol twice, the ``−∂_a`` route) to 1e-9; it is
  continuous and symmetric; at ``λ₁ ≠ λ₂`` it equals the partial-fraction
  route to 1e-9.
* ``Tr[FᵀΣ̂F]`` (refused before) derives to ``Tr Σ`` (exact:
  ``E[FFᵀ] = I``, checked by dense NumPy draws) and ``Tr[Σ̂_F²G]`` to
  ``Tr Σ − λ Tr[Σ̂_F G]``'s equivalent (the identity ``Σ̂²G = Σ̂ − λΣ̂G``).
"""
import numpy as np
import pytest

import symrmt as sr
import symrmt.equivalence.features as fe

n, d, p = sr.dims("n d p")
lam, l1, l2 = sr.scalar("lam"), sr.scalar("l1"), sr.scalar("l2")
Sig, w = sr.Covariance("Sigma", d), sr.Vector("w", d)
X = sr.GaussianData("X", n, Sig)
F = sr.RandomFeatures("F", d, p)
Sh = F.T * X.T * X * F / n
SF = F.T * Sig * F


def G(z):
    return (Sh + z * sr.I(p)).inverse()


EV = np.linspace(0.1, 1.0, 40)
B = dict(Sigma=EV, n=60, p=30, w=EV / 7)


def _compile(e):
    f = sr.deterministic_equivalent(e).compile()
    return lambda **kw: float(np.real(f(**{k: v for k, v in {**B, **kw}.items() if k in f.parameters})))


def test_two_ridges_at_equal_values_equal_the_one_ridge_form():
    two = _compile(w.T * Sig * F * G(l1) * SF * G(l2) * F.T * Sig * w)
    one = _compile(w.T * Sig * F * G(lam) * SF * G(lam) * F.T * Sig * w)
    for z in (0.05, 0.2, 1.0):
        for N, P in ((60, 30), (30, 60)):
            ref = one(lam=z, n=N, p=P)
            assert abs(two(l1=z, l2=z, n=N, p=P) - ref) <= 1e-9 * abs(ref)
            near = two(l1=z, l2=z * (1 + 1e-7), n=N, p=P)
            assert abs(near - ref) <= 1e-5 * abs(ref)
    assert abs(two(l1=0.2, l2=0.7) - two(l1=0.7, l2=0.2)) <= 1e-12 * abs(two(l1=0.2, l2=0.7))


def test_pair_route_equals_partial_fractions_at_distinct_ridges(monkeypatch):
    e = sr.Tr(G(l1) * SF * G(l2))
    new = _compile(e)
    fe._PIECES.clear()
    monkeypatch.setattr(fe._Calculus, "_two_poles", lambda self, chi: None)
    try:
        old = _compile(e)
    finally:
        fe._PIECES.clear()
    for a, b in ((0.2, 0.7), (0.05, 1.3)):
        ref = old(l1=a, l2=b)
        assert abs(new(l1=a, l2=b) - ref) <= 1e-9 * abs(ref)


def test_bare_feature_core_traces_derive():
    tr = _compile(sr.Tr(Sh))
    assert abs(tr() - EV.sum()) <= 1e-12 * EV.sum()
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(300):
        Fm = rng.standard_normal((40, 30)) / np.sqrt(30)
        Xm = rng.standard_normal((60, 40)) * np.sqrt(EV)
        Z = Xm @ Fm
        vals.append(np.sum(Z * Z) / 60)
    mean, sem = np.mean(vals), np.std(vals, ddof=1) / np.sqrt(len(vals))
    assert abs(mean - tr()) <= 4 * sem + 3 * tr() / 40
    sq = _compile(sr.Tr(Sh * Sh * G(lam)))
    sg = _compile(sr.Tr(Sh * G(lam)))
    for z in (0.1, 1.0):
        ref = tr() - z * sg(lam=z)
        assert abs(sq(lam=z) - ref) <= 1e-10 * abs(ref)


def test_cube_of_the_bare_core_is_refused_by_name():
    with pytest.raises(NotImplementedError, match="feature-space term"):
        sr.deterministic_equivalent(sr.Tr(Sh * Sh * Sh))
