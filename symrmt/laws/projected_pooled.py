"""Random projections of pooled data: ridge on ``Z = XF`` with
``X = vstack(X₁, …, X_K)`` (independent Gaussian groups, ``X_k`` with
``n_k`` iid rows ``N(0, Σ_k)``, the ``Σ_k`` arbitrary — no commutation
assumed) and ``F`` a ``d×p`` ``sr.RandomFeatures`` (iid ``N(0, 1/p)``).
The feature-space core is

    FᵀΣ̂F,   Σ̂ = Σ_k c_k X_kᵀX_k/n_k   (weights c_k > 0; pooled ridge: c_k = n_k/N),

recognised by ``rewrite/expand.py`` (:func:`projected_pooled_resolvent`) as
one core (:class:`ProjectedPooledCore`, its resolvent an ordinary ``Res``
letter) and averaged by nested conditioning in ``equivalence/features.py``
(:func:`~symrmt.equivalence.features.projected_pooled_value`):

* **stage F (F given X).** ``Ŝ = Σ̂^{1/2}FFᵀΣ̂^{1/2}`` is a white Wishart
  with ``p`` samples and population ``Σ̂``, so
  ``Q = F(FᵀΣ̂F + z)⁻¹Fᵀ ≃ Ĝ = (Σ̂ + κ̂)⁻¹``,
  ``κ̂(1 − Tr[Σ̂(Σ̂+κ̂)⁻¹]/p) = z``, and by a source ``Σ̂ → Σ̂ + tA``
  (``∂_tQ = −QAQ``): ``QAQ ≃ Ĝ(A + γ̂Tr[ĜAĜ])Ĝ``,
  ``γ̂ = (κ̂²/p)/(1 − Tr[Σ̂²Ĝ²]/p)``;
* **stage X.** the words in ``Ĝ = (Σ_k c_kX_kᵀX_k/n_k + κ)⁻¹`` are pooled
  words at ridge ``κ``: the engine's general law
  ``Ĝ ≃ R = (M + κ)⁻¹``, ``M = Σ_k c_kΣ_k/(1+δ_k)``,
  ``δ_k = c_kTr[Σ_kR]/n_k`` (and its lift for two resolvents), and
  ``Tr[Σ̂Ĝ] = d − κTrĜ ≃ Tr[MR]``.

Unknowns ``(δ_1, …, δ_K, κ)`` (this family, kind ``projected_pooled``)::

    δ_k = c_k Tr[Σ_k R]/n_k,     κ(1 − Tr[M R]/p) = z,
    R = (M + κ)⁻¹,  M = Σ_k c_k Σ_k/(1 + δ_k).

One group (``K = 1``) is the random-feature product law
``κ(1 − df₁/n)(1 − df₁/p) = z`` (``M = Σ/(1+δ)``, ``R = (1+δ)R_Σ(κ(1+δ))``).
Real ridge ``z > 0`` only (numeric hooks
:class:`symrmt.numerics.laws.projected_pooled.ProjectedPooledSystem`); a
deterministic shift in feature space, deeper chains, correlated rows,
centred covariances and complex ``z`` are refused by name. Monte Carlo
samples the user's expression as written (``X_k``, ``F`` by their own
laws): this family draws nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..equivalence.laws import FAMILIES, Side
from ..equivalence.result import UnknownGroup
from ..objects import Tr
from ..rewrite.letters import Core
from .base import Law, register


@dataclass(frozen=True)
class ProjectedPooledCore(Core):
    """``FᵀΣ̂F`` with ``Σ̂ = Σ_k c_k X_kᵀX_k/n_k``: ``blocks`` a sorted tuple of
    ``(Core(X_k), c_k)`` (independent iid-row data-side cores), ``chain = (F,)``;
    ``data`` is the first block's data (for code that asks for one)."""

    blocks: tuple = ()

    @property
    def sources(self):
        out = set(F.uid for F in self.chain)
        for c, _ in self.blocks:
            out |= set(c.sources)
        return frozenset(out)

    @property
    def feature(self):
        return self.chain[0]

    def pooled_matrix(self):
        """``Σ̂ = Σ_k c_k X_kᵀX_k/n_k`` (d×d)."""
        return sp.MatAdd(*[w * c.matrix() for c, w in self.blocks])

    def matrix(self):
        F = self.feature
        return F.T * self.pooled_matrix() * F

    def __str__(self):
        inner = " + ".join(f"{sp.sstr(w)}·{c}" for c, w in self.blocks)
        return f"{self.feature.name}ᵀ({inner}){self.feature.name}"


@register
class ProjectedPooledLaw(Law):
    kind = "projected_pooled"
    title = "random projections of pooled blocks (nested conditioning, unknowns δ_k and κ)"
    numeric = "symrmt.numerics.laws.projected_pooled:ProjectedPooledSystem"

    def applies(self, core):
        return isinstance(core, ProjectedPooledCore)

    def key_extra(self, core):
        return tuple((c.data.Sigma, c.m, sp.sympify(w)) for c, w in core.blocks) + (core.feature.shape,)

    def equations(self, reg, core, z):
        """``δ_k = c_kTr[Σ_kR]/n_k``, ``κ(1 − Tr[MR]/p) = z`` (module docstring).
        The ``δ`` part is built by the ``general`` family at ridge ``κ``
        (so ``R`` is literally the general law's resolvent at ``z = κ``)."""
        i = reg.next_index()
        kappa = sp.Dummy(f"kappa{i}", positive=True)
        gen = FAMILIES["general"].general_equations(reg, core.blocks, None, kappa)
        deltas, R = list(gen["delta"]), gen["R"]
        p = core.feature.shape[1]
        M = sp.MatAdd(*[w * r * c.data.Sigma for (c, w), r in zip(core.blocks, gen["rho"])])
        eqs = tuple(gen["group"].equations) + (sp.Eq(kappa * (1 - Tr(M * R) / p), z, evaluate=False),)
        trace = sp.Add(*[w * Tr(c.data.Sigma) for c, w in core.blocks])
        group = UnknownGroup(tuple(deltas) + (kappa,), eqs, z, self.kind, core.blocks[0][0].data.Sigma,
                             (p, trace))
        return dict(kappa=kappa, nu=None, k1=None, iid=True, Kmat=None, group=group, order=i,
                    delta=deltas, R=R, M=M, rho=list(gen["rho"]), general_index=gen["order"])

    def side(self, core, g):
        """``κ`` (``kA``); the population matrices are ``None`` so that no
        one-core rule can use this core by mistake. The group's ``δ_k``, ``R``
        and ``M`` ride along as attributes."""
        s = Side(A=None, kA=g["kappa"], B=None, kB=None, m=core.m, k1=None, iid=True)
        s.deltas, s.R, s.M = tuple(g["delta"]), g["R"], g["M"]
        return s


def projected_pooled_resolvent(M, terms, det, z):
    """``(Σ_k c'_k·FᵀX_kᵀX_kF + B + z)⁻¹`` → ``[(1, (Res(ProjectedPooledCore, z),))]``
    when every random term is a feature-space core of the same one-layer
    ``F`` over independent iid-row data (two or more blocks); ``None`` when
    no term is such a core (the caller decides). ``terms``: ``[(core, weight)]``
    already matched. Refuses by name a shift ``B``, ``z = 0``, deeper
    chains, mixed plain/feature cores, correlated or centred data."""
    from ..rewrite.letters import Res
    feats = [(c, w) for c, w in terms if c.chain]
    if not feats:
        return None
    what = f"random projections of pooled data in {M}"
    if len(feats) != len(terms):
        raise NotImplementedError(f"{what}: a sum of feature-space and data-space sample covariances "
                                  "is not derived (every block must be FᵀX_kᵀX_kF with the same F)")
    chains = {c.chain for c, _ in feats}
    if len(chains) != 1 or len(next(iter(chains))) != 1:
        raise NotImplementedError(f"{what}: the blocks must share one feature layer F "
                                  f"(got chains {', '.join(sorted('·'.join(F.name for F in ch) for ch in chains))}); "
                                  "deeper or different feature chains are not derived")
    (F,) = next(iter(chains))
    weights = {}
    for c, w in feats:
        if c.side != "data" or c.ddof is not None or c.data.correlated or c.data.has_mean \
                or type(c).__name__ != "Core":
            raise NotImplementedError(f"{what}: the block {c} is not a raw iid-row sample covariance "
                                      "(correlated rows, means, centring and feature noise are not derived here)")
        base = Core(c.data, "data", (), None)
        weights[base] = weights.get(base, sp.S.Zero) + w
    srcs = {}
    for core in weights:
        for u in core.sources:
            if u in srcs or u == F.uid:
                raise NotImplementedError(f"{what}: {core} and {srcs.get(u, F.name)} share the same data "
                                          "(the blocks must be independent of each other and of F)")
            srcs[u] = core
    for core, w in list(weights.items()):
        w = sp.simplify(w)
        if w.is_zero or w.is_positive is False:
            raise ValueError(f"the weight of the sample covariance {core} in {M} must be > 0, got {w}")
        weights[core] = w
    if det:
        raise NotImplementedError(f"{what}: a deterministic shift B in feature space is not derived "
                                  "(the law projected_pooled covers Σ_k c_k FᵀX_kᵀX_kF + z with B = 0)")
    if z == 0:
        raise NotImplementedError(f"ridgeless inverse {M}: use a positive ridge and take the limit")
    blocks = tuple(sorted(weights.items(), key=lambda t: (t[0].data.name, t[0].data.uid, str(t[0].ddof))))
    core = ProjectedPooledCore(blocks[0][0].data, "data", (F,), None, blocks=blocks)
    return [(sp.S.One, (Res(core, sp.simplify(z)),))]


__all__ = ["ProjectedPooledCore", "ProjectedPooledLaw", "projected_pooled_resolvent"]
