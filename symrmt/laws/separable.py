"""Correlated samples: ``X = K^{1/2} Z Σ^{1/2}`` (``m`` samples), unknowns ``(κ, ν)``.

Equations (docs/math.md), from the S-transform catalogue: the
correlated-samples factor ``W = ZᵀKZ/m`` has ``S_W = st.correlated_samples(d/m, S_K)``
with ``S_K(−t) = (1 − t)/(ν t)``, ``t = df₁/m``, implicit through
``Tr[K(K+ν)⁻¹]/m = t`` (:func:`~symrmt.transforms.stransform.from_spectrum`);
with feature layers ``Π_l S_{F_l}``. Written two-sided:
``Tr[K(K+ν)⁻¹] = df₁(κ)``, ``κ₁ ν df₁ = m z`` (``κ₁ = κ Π_l(1 − df₁/p_l)``),
and the catalogue route ``κ/S(−df₁/d)`` is checked equal to ``κ₁ν df₁/m``
symbolically on every group (guards the algebra).

Numeric hooks: :class:`symrmt.numerics.laws.separable.SeparableSystem`.
Sampler: ``X = K^{1/2} Z Σ^{1/2} + 1·meanᵀ``.
"""
from __future__ import annotations

import sympy as sp

from ..equivalence.result import UnknownGroup
from ..objects.matrices import GaussianData
from ..transforms import stransform as st
from ..transforms.spectral import df1 as _df
from .base import Law, register
from .wishart import feature_transform, gaussian_draw, gaussian_sampling_law, gaussian_side


def check_separable(a, b):
    """The catalogue's ``κ/S_W(−df/d)`` must equal the two-sided form
    ``κ₁ ν df/m`` (guards the algebra of the two routes)."""
    if sp.simplify(a - b) != 0:
        raise AssertionError(f"internal: S-transform route disagrees: {a} vs {b}")


@register
class SeparableLaw(Law):
    kind = "separable"
    title = "correlated samples (κ, ν)"
    pools = True
    numeric = "symrmt.numerics.laws.separable:SeparableSystem"

    def applies(self, core):
        return type(core.data) is GaussianData and core.data.correlated

    def equations(self, reg, core, z):
        if core.ddof == 1:
            raise NotImplementedError("centred sample covariance of correlated samples (K) is not implemented")
        i = reg.next_index()
        X = core.data
        m, Sigma, Kmat = core.m, X.Sigma, X.K
        kappa = sp.Dummy(f"kappa{i}", positive=True)
        nu = sp.Dummy(f"nu{i}", positive=True)
        df = _df(Sigma, kappa)
        sizes = tuple(F.shape[1] for F in core.chain)
        k1 = kappa * sp.Mul(*[(1 - df / p) for p in sizes])
        d = Sigma.shape[0]
        # S_K(−df/m) is implicit: = (1 − t)/(ν t), t = df/m, with Tr[K(K+ν)⁻¹]/m = t
        t = df / m
        SK_val, _ = st.from_spectrum(_df(Kmat, nu) / m, t, nu)
        SK = sp.Lambda(sp.Symbol("w"), SK_val)  # only ever evaluated at −t
        S = st.product(st.correlated_samples(d / m, SK), feature_transform(d, sizes))
        eqs = (sp.Eq(_df(Kmat, nu), df, evaluate=False),
               sp.Eq(k1 * nu * df, m * z, evaluate=False))
        check_separable(kappa / S(-df / d), k1 * nu * df / m)
        group = UnknownGroup((kappa, nu), eqs, z, self.kind, Sigma, sizes, Kmat, m)
        return dict(kappa=kappa, nu=nu, k1=k1, iid=False, Kmat=Kmat, group=group, order=i)

    side = staticmethod(gaussian_side)

    def samples(self, obj):
        return type(obj) is GaussianData and obj.correlated

    sampling_law = staticmethod(gaussian_sampling_law)
    draw = staticmethod(gaussian_draw)
