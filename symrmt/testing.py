"""Hypothesis strategies for property-based tests of random-matrix code.

Each strategy generates plain NumPy data in the conventions of docs/api.md (a
covariance as its 1-D eigenvalues, or a 2-D matrix; dimensions as ints) that
can be passed straight to ``sr.monte_carlo``, ``sr.verify`` or a compiled
equivalent. Strategies taking ``d`` accept an int or a strategy of ints.

Requires ``hypothesis`` (``pip install symrmt[test]``); it is not needed by
the rest of symrmt.

Example::

    from hypothesis import given, settings
    import symrmt.testing as srt

    @settings(max_examples=20, deadline=None)
    @given(s=srt.spectra(d=50), lam=srt.ridges())
    def test_trace_bounds(s, lam):
        ...
"""
from __future__ import annotations

import math

import numpy as np

try:
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp
except ImportError as exc:  # pragma: no cover - exercised only without hypothesis
    raise ImportError("symrmt.testing needs hypothesis: pip install hypothesis") from exc

__all__ = ["dimensions", "log_uniform", "ridges", "aspect_ratios", "shapes", "isotropic_spectra",
           "power_law_spectra", "multilevel_spectra", "random_spectra", "spectra", "psd_matrices",
           "unit_vectors"]


def _with_d(d, build):
    return d.flatmap(build) if isinstance(d, st.SearchStrategy) else build(int(d))


def dimensions(min_value=2, max_value=64):
    """Matrix dimensions: integers in ``[min_value, max_value]``."""
    return st.integers(min_value, max_value)


def log_uniform(min_value, max_value):
    """Positive floats spread evenly in ``log`` between the bounds
    (shrinking towards ``min_value``)."""
    if not 0 < min_value <= max_value:
        raise ValueError(f"log_uniform: need 0 < min_value <= max_value, got {min_value}, {max_value}")
    lo, hi = math.log(min_value), math.log(max_value)
    return st.floats(lo, hi).map(lambda t: float(min(max(math.exp(t), min_value), max_value)))


def ridges(min_value=1e-3, max_value=10.0):
    """Ridge parameters ``λ > 0``, log-uniform in ``[min_value, max_value]``."""
    return log_uniform(min_value, max_value)


def aspect_ratios(min_value=0.1, max_value=4.0, avoid_critical=0.0):
    """Aspect ratios ``q = d/n``, log-uniform; ``avoid_critical > 0``
    excludes ``|q − 1| < avoid_critical``, where small ridges are singular."""
    q = log_uniform(min_value, max_value)
    return q.filter(lambda x: abs(x - 1.0) >= avoid_critical) if avoid_critical else q


def shapes(min_d=4, max_d=64, aspect=None, min_n=2):
    """``{"n": n, "d": d}`` with ``d`` in ``[min_d, max_d]`` and
    ``n = round(d/q)`` for ``q`` from ``aspect`` (default
    ``aspect_ratios()``), at least ``min_n``."""
    aspect = aspect_ratios() if aspect is None else aspect
    return st.builds(lambda d, q: {"n": max(min_n, int(round(d / q))), "d": d},
                     st.integers(min_d, max_d), aspect)


def isotropic_spectra(d, scale=(0.1, 10.0)):
    """``Σ = s·I``: ``d`` equal eigenvalues, ``s`` log-uniform in ``scale``."""
    return _with_d(d, lambda k: log_uniform(*scale).map(lambda s: np.full(k, s)))


def power_law_spectra(d, alpha=(0.5, 2.5), scale=(0.1, 10.0)):
    """Power law ``s_i = c·i^{-α}``, ``i = 1…d``, ``α`` uniform in
    ``alpha``, ``c`` log-uniform in ``scale`` (sorted decreasingly)."""
    def build(k):
        return st.builds(lambda a, c: c * np.arange(1, k + 1, dtype=float) ** -a,
                         st.floats(*alpha), log_uniform(*scale))
    return _with_d(d, build)


def multilevel_spectra(d, levels=(2, 4), spread=(1.0, 100.0)):
    """A few distinct eigenvalues with multiplicities (block-isotropic
    covariances): ``levels`` is the range of the number of levels; the
    levels are log-uniform within a ratio of ``spread`` of each other."""
    def build(k):
        def make(m, cuts, ratio, vals):
            bounds = [0] + sorted(cuts) + [k]
            sizes = [b - a for a, b in zip(bounds, bounds[1:])]
            lv = ratio ** np.asarray(vals[:len(sizes)])  # in [1, ratio]
            return np.repeat(lv / lv.max(), sizes)
        @st.composite
        def draw(drw):
            m = drw(st.integers(min(levels[0], k), min(levels[1], k)))
            cuts = drw(st.lists(st.integers(1, k - 1), min_size=m - 1, max_size=m - 1, unique=True)) \
                if m > 1 else []
            ratio = drw(log_uniform(*spread))
            vals = drw(st.lists(st.floats(0.0, 1.0), min_size=m, max_size=m))
            return make(m, cuts, ratio, vals)
        return draw()
    return _with_d(d, build)


def random_spectra(d, low=1e-2, high=10.0):
    """``d`` independent eigenvalues, each log-uniform in ``[low, high]``
    (a generic PSD spectrum with no structure)."""
    return _with_d(d, lambda k: hnp.arrays(np.float64, k, elements=log_uniform(low, high)))


def spectra(d, kinds=("isotropic", "power_law", "multilevel", "random")):
    """One of the spectrum families above (chosen by Hypothesis)."""
    table = {"isotropic": isotropic_spectra, "power_law": power_law_spectra,
             "multilevel": multilevel_spectra, "random": random_spectra}
    unknown = set(kinds) - set(table)
    if unknown:
        raise ValueError(f"spectra: unknown kinds {sorted(unknown)}; choose from {sorted(table)}")
    return st.one_of(*[table[k](d) for k in kinds])


def psd_matrices(d, spectrum=None):
    """Full symmetric PSD ``d×d`` matrices ``U diag(s) Uᵀ``: ``s`` from
    ``spectrum`` (default ``spectra(d)``), ``U`` a Haar-random rotation
    built from a drawn seed — generic, *not* diagonal in the common basis,
    so they exercise non-commuting code paths."""
    def build(k):
        spec = spectra(k) if spectrum is None else spectrum
        def make(s, seed):
            Q, R = np.linalg.qr(np.random.default_rng(seed).standard_normal((k, k)))
            Q = Q * np.sign(np.diag(R))
            A = (Q * s) @ Q.T
            return (A + A.T) / 2
        return st.builds(make, spec, st.integers(0, 2**32 - 1))
    return _with_d(d, build)


def unit_vectors(d):
    """Unit vectors in ``R^d`` (Gaussian direction from a drawn seed)."""
    def build(k):
        def make(seed):
            v = np.random.default_rng(seed).standard_normal(k)
            return v / np.linalg.norm(v)
        return st.integers(0, 2**32 - 1).map(make)
    return _with_d(d, build)
