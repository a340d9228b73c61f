"""Limiting spectrum of the sample covariance: Stieltjes transform and density.

For ``Σ̂ = XᵀX/n`` (optionally ``X = K^{1/2} Z Σ^{1/2}``; or ``Σ̂FFᵀ``
with linear random features ``F``, ``d×p``, iid ``N(0, 1/p)``) the one-point equivalent
``λ(Σ̂+λ)⁻¹ ≃ κ(Σ+κ)⁻¹`` at ``λ = −z`` gives the Stieltjes transform

    m(z) = (1/d) Tr[(Σ̂ − z)⁻¹] ≃ (κ/λ) (1/d) Tr[(Σ+κ)⁻¹],   λ = −z,

and the density ``ρ(x) = Im m(x + i0⁺)/π``. ``κ`` is solved at
``z = x + iη`` with ``η`` continued down to ``eta ×`` the spectral scale
(``max eig Σ · (1+√(d/n))²``…), and again at ``2η`` to extrapolate to
``η → 0`` (Richardson: error ``O(η²)``); the ``η`` used is returned. At
``n < d`` the spectrum has an atom ``1 − n/d`` at ``0`` that the density on
``x > 0`` does not include.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.optimize import OptimizeResult

from .examples import resolvent_trace


class SpectralDensity(OptimizeResult):
    """``x``; ``m``, the Stieltjes transform at ``x + i0⁺`` (extrapolated from
    ``η`` and ``2η``); ``m_eta``, the one at ``x + iη``; ``density``
    (``Im m/π``); ``eta`` (the ``η`` used, absolute); ``result`` (the
    :class:`~.result.SolveResult` at ``η``)."""

    def __repr__(self):
        return (f"SpectralDensity(points={np.size(self.x)}, eta≤{np.max(self.eta):.3g}, "
                f"mass on grid≈{np.trapezoid(self.density, self.x):.6f})")


@lru_cache(maxsize=None)
def _compiled(features, correlated, backend, dps):
    return resolvent_trace(features, correlated).compile(backend=backend, dps=dps)


def spectral_density(Sigma, n, x, p=None, K=None, eta=1e-9, backend="numpy", dps=50, **options):
    """Stieltjes transform and density of the limiting spectrum of ``Σ̂``.

    Parameters
    ----------
    Sigma : eigenvalues of ``Σ`` (1-D) or the matrix (2-D).
    n : number of samples.
    x : points (array) at which to evaluate ``m(x + iη)`` and ``ρ(x)``.
    p : width of linear random features ``F``: the spectrum of ``Σ̂FFᵀ`` (optional).
    K : ``n×n`` sample correlation (eigenvalues or matrix), optional.
    eta : smallest ``η`` as a fraction of the spectral scale (default 1e-9).
    backend, dps : as for ``compile``; other options go to ``solve``.

    Returns
    -------
    SpectralDensity with ``x``, ``m``, ``density``, ``eta``, ``result``.
    """
    x = np.asarray(x, dtype=float)
    f = _compiled(p is not None, K is not None, backend, int(dps))
    bindings = dict(Sigma=Sigma, n=n, lam=(-x).astype(complex))
    if p is not None:
        bindings["p"] = p
    if K is not None:
        bindings["K"] = K
    res = f.solve(bindings, eta=eta, **options)
    res2 = f.solve(bindings, eta=2 * eta, **options)
    # m(x + iη) = m(x + i0) + iη m'(x) + O(η²): Richardson removes the first-order term,
    # which dominates near the edges where m' ~ (x − edge)^(−1/2)
    m = 2 * res.value - res2.value
    density = np.array([float(v.imag) for v in m.ravel()]).reshape(m.shape) / np.pi
    return SpectralDensity(x=x, m=m, m_eta=res.value, density=density, eta=res.eta["lam"], result=res)
