"""Law families — one module per family, each holding its equations (SymPy,
from the S-transform catalogue), the name of its numeric hooks and its
sampler, registered into the layers' registries (:mod:`.base`).

=============  ===================================================  ===================
kind           equations (docs/math.md)                             module
=============  ===================================================  ===================
``wishart``    ``κ Π_j(1 − df₁(κ)/m_j) = z``                         :mod:`.wishart`
``separable``  ``Tr[K(K+ν)⁻¹] = df₁(κ)``, ``κ ν df₁ = m z``           :mod:`.separable`
``general``    ``δ_j = c_j Tr[Σ_j R(δ)]/n_j`` (blocks, shift B)      :mod:`.pooled`
=============  ===================================================  ===================

``feature_noise`` (:mod:`.feature_noise`): ``Φ = XF + √τΞ``,
``[κ(1 − df₁/p) − τ][1 − df₁/n − pτ/(nκ)] = z``.

``projected_pooled`` (:mod:`.projected_pooled`): ``Fᵀ(Σ_k c_kX_kᵀX_k/n_k)F``,
``δ_k = c_kTr[Σ_kR]/n_k``, ``κ(1 − Tr[MR]/p) = z``, ``R = (M+κ)⁻¹``, ``M = Σ_k c_kΣ_k/(1+δ_k)``.
"""
from .base import FAMILIES, Law, register, unregister
from . import wishart, separable, pooled, feature_noise, projected_pooled  # noqa: F401,E402  (registration)

__all__ = ["FAMILIES", "Law", "register", "unregister"]
