"""White-Wishart family: iid Gaussian rows, ``Σ̂ = Σ^{1/2}(ZᵀZ/m)Σ^{1/2}``,
possibly with free feature layers ``F_l`` in a product (``𝔉ᵀΣ̂𝔉``).

Equation (docs/math.md, from the S-transform catalogue
:mod:`symrmt.transforms.stransform`): ``κ = z S(−df₁(κ)/d)`` with
``S = S_W Π_l S_{F_l}``, ``S_W(w) = 1/(1 + (d/m) w)`` (white Wishart) and
``S_{F_l}(w) = 1/(1 + (d/p_l) w)``, i.e. ``κ Π_j(1 − df₁(κ)/m_j) = z``. One
unknown ``κ`` per spectral parameter; the Gram side has
``ν = (m − df₁)/df₁`` explicitly.

Numeric hooks: :class:`symrmt.numerics.laws.wishart.WishartSystem` (the
increasing map ``h(κ) = κ Π_j(1 − df/m_j)``, bracket, start
``κ₀ = z + Tr Σ Σ_j 1/m_j``, complex continuation, ``_wishart`` in the
standalone module). Sampler: ``X = Z Σ^{1/2} + 1·meanᵀ``, ``Z`` iid
``N(0, 1)`` (Gram-samplable by Bartlett without a mean).
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..equivalence.laws import Side, gram_side
from ..equivalence.result import UnknownGroup
from ..objects.matrices import GaussianData
from ..transforms import stransform as st
from ..transforms.spectral import df1 as _df
from .base import Law, register


def feature_transform(d, sizes):
    """``Π_l S_{F_l}`` of the feature layers (free white factors,
    ``S(w) = 1/(1 + (d/p_l) w)`` each), ``1`` without layers."""
    return st.product(*[st.wishart(d / p) for p in sizes]) if sizes else sp.Lambda(sp.Symbol("w"), 1)


def gaussian_side(core, g):
    """What the rules need of a Gaussian-data core from its group ``g``: the
    data side sees ``(Σ, κ)`` against ``(K, ν)``, the Gram side the reverse
    (shared by the white-Wishart and correlated-samples families)."""
    gram_side(core)
    X = core.data
    if core.side == "gram":
        return Side(A=g["Kmat"], kA=g["nu"], B=X.Sigma, kB=g["kappa"], m=core.m, k1=g["nu"],
                    iid=isinstance(X.Sigma, Identity))
    return Side(A=X.Sigma, kA=g["kappa"], B=g["Kmat"], kB=g["nu"], m=core.m, k1=g["k1"], iid=g["iid"])


def gaussian_sampling_law(program, obj):
    """``Σ``, ``K`` (``None`` for iid rows) and the mean (``None`` if zero) as compiled nodes."""
    from sympy import ZeroMatrix
    return dict(Sigma=program.matrix(obj.Sigma),
                K=None if isinstance(obj.K, Identity) else program.matrix(obj.K),
                mean=None if isinstance(obj.mean, ZeroMatrix) else program.matrix(obj.mean))


def gaussian_draw(sampler, obj, ctx, rng):
    """``X = K^{1/2} Z Σ^{1/2} + 1·meanᵀ`` (``K`` omitted for iid rows), ``Z`` iid ``N(0,1)``;
    ``Σ^{1/2}``, ``K^{1/2}`` symmetric square roots computed once per run (``sampler.factor``)."""
    from ..montecarlo.sampler import _apply
    b = sampler.program.bound
    n, d = b.dim_value(obj.n), b.dim_value(obj.d)
    x = _apply(sampler.factor(obj, "Sigma", ctx), rng.standard_normal((n, d)), side="right")
    if sampler.laws[obj]["K"] is not None:
        x = _apply(sampler.factor(obj, "K", ctx), x, side="left")
    if sampler.laws[obj]["mean"] is not None:
        x += sampler.factor(obj, "mean", ctx)[None, :]
    return x


@register
class WishartLaw(Law):
    kind = "wishart"
    title = "white Wishart (iid Gaussian rows), free feature layers"
    presents_kappa = True
    pools = True
    gram = True
    numeric = "symrmt.numerics.laws.wishart:WishartSystem"

    def applies(self, core):
        return type(core.data) is GaussianData and not core.data.correlated

    def equations(self, reg, core, z):
        i = reg.next_index()
        m, Sigma = core.m, core.data.Sigma
        kappa = sp.Dummy(f"kappa{i}", positive=True)
        df = _df(Sigma, kappa)
        sizes = tuple(F.shape[1] for F in core.chain)
        k1 = kappa * sp.Mul(*[(1 - df / p) for p in sizes])
        d = Sigma.shape[0]
        S = st.product(st.wishart(d / m), feature_transform(d, sizes))
        # κ = z S(−df/d)  ⇔  κ / S(−df/d) = z
        eqs = (sp.Eq(kappa / S(-df / d), z, evaluate=False),)
        group = UnknownGroup((kappa,), eqs, z, self.kind, Sigma, (m,) + sizes)
        return dict(kappa=kappa, nu=(m - df) / df, k1=k1, iid=True, Kmat=Identity(m), group=group, order=i)

    side = staticmethod(gaussian_side)

    def samples(self, obj):
        return type(obj) is GaussianData and not obj.correlated

    sampling_law = staticmethod(gaussian_sampling_law)
    draw = staticmethod(gaussian_draw)
