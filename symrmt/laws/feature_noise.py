"""Additive feature noise: ``Φ = XF + √τ·Ξ`` (``X`` iid rows ``N(0, Σ)``,
``F`` a ``d×p`` ``sr.RandomFeatures`` with iid ``N(0, 1/p)`` entries, ``Ξ``
an ``n×p`` matrix of iid ``N(0, 1)``, written
``sr.GaussianData("Xi", n, sr.I(p))``, all independent).

Given ``F`` the rows of ``Φ`` are ``N(0, S_τ)``, ``S_τ = FᵀΣF + τI_p``: the
feature-space core ``ΦᵀΦ/n`` is a sample covariance whose population is
itself random. Its resolvent is averaged by nested conditioning
(``equivalence/features.py``: stage X in feature space with population
``S_τ``, whose renormalised ridge ``κ_F`` solves
``κ_F(1 − Tr[S_τ(S_τ+κ_F)⁻¹]/n) = z``; stage F sees ``(FᵀΣF + τ + κ_F)⁻¹``,
a resolvent of ``FᵀΣF`` at ridge ``a₂ = τ + κ_F``, whose ``F``-law is
``κ(1 − df₁(κ)/p) = a₂``, ``df₁(κ) = Tr[Σ(Σ+κ)⁻¹]``). With
``Tr[S_τ(S_τ+κ_F)⁻¹] ≃ p(1 − κ_F/κ)`` the two laws are one equation in ``κ``
(tests/test_feat_noise.py derives and checks it):

    [κ(1 − df₁(κ)/p) − τ]·[1 − df₁(κ)/n − pτ/(nκ)] = z,     κ_F = κ(1 − df₁(κ)/p) − τ

(``τ = 0``: the random-feature product law ``κ(1 − df₁/p)(1 − df₁/n) = z``).
One unknown ``κ`` per spectral parameter; the physical root is the one with
both brackets positive (``κ > κ_τ``, the ``F``-law's ridge at ``τ``).

This module holds the random object ``Φ`` as one letter
(:class:`NoisyFeatures`, built by ``rewrite/expand.py`` when it meets the sum
``XF + c·Ξ``, ``τ = c²``), its core (:class:`NoisyCore`) and the law family
``feature_noise`` (equations above; numeric hooks
:class:`symrmt.numerics.laws.feature_noise.FeatureNoiseSystem`). Monte
Carlo samples the user's expression as written (``X``, ``F``, ``Ξ`` each by
its own law), so this family draws nothing. The one-core rules of the engine
never see this core: every word with it goes through nested conditioning
(its :meth:`FeatureNoiseLaw.side` carries only ``κ``).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import Identity

from ..equivalence.laws import Side
from ..equivalence.result import UnknownGroup
from ..objects.matrices import RandomMatrix, _make
from ..rewrite.letters import Core
from ..transforms.spectral import df1 as _df
from .base import Law, register


class NoisyFeatures(RandomMatrix):
    """The ``n×p`` noisy features ``Φ = XF + c·Ξ`` (``τ = c²``) as one random
    letter (``NoisyFeatures(X, F, Xi, c)``); equal for equal ``(X, F, Ξ, c)``
    (``XF + cΞ`` and ``XF − cΞ`` are different matrices)."""

    role = "noisy_features"

    def __new__(cls, X, F, Xi, c, *rest):
        c = sp.sympify(c)
        name = f"({X.name}{F.name} + {sp.sstr(c)}*{Xi.name})"
        return _make(cls, name, X.shape[0], F.shape[1], X, F, Xi, c)

    X = property(lambda s: s.args[3])
    F = property(lambda s: s.args[4])
    Xi = property(lambda s: s.args[5])
    c = property(lambda s: s.args[6])
    tau = property(lambda s: sp.simplify(s.args[6] ** 2))

    @property
    def uid(self):
        return ("noisy", self.X.uid, self.F.uid, self.Xi.uid)

    @property
    def sources(self):
        """The independent sources ``Φ`` depends on (``X``, ``F``, ``Ξ``)."""
        return frozenset([self.X.uid, self.F.uid, self.Xi.uid])

    def matrix(self):
        """``XF + √τΞ`` as a SymPy matrix expression."""
        return self.X * self.F + self.c * self.Xi

    def law_key(self):
        return ("noisy_features", self.X.law_key(), self.F.law_key(), self.Xi.law_key(), self.tau)


@dataclass(frozen=True)
class NoisyCore(Core):
    """The feature-space core ``ΦᵀΦ/n`` of ``Φ = XF + cΞ``: ``data = X``,
    ``chain = (F,)``, ``noise = (Ξ, c)``, ``τ = c²`` (its law depends on ``τ``
    only, but ``XF ± cΞ`` are different matrices)."""

    noise: tuple = ()

    @property
    def phi(self):
        """``Φ = XF + cΞ``."""
        return NoisyFeatures(self.data, self.chain[0], self.noise[0], self.noise[1])

    @property
    def tau(self):
        return sp.simplify(self.noise[1] ** 2)

    @property
    def sources(self):
        return frozenset([self.data.uid, self.chain[0].uid, self.noise[0].uid])

    def __str__(self):
        return f"{self.phi.name}ᵀ{self.phi.name}/{self.m}"

    def matrix(self):
        P = self.phi.matrix()
        return P.T * P / self.data.n


@register
class FeatureNoiseLaw(Law):
    kind = "feature_noise"
    title = "additive feature noise XF + √τΞ (nested conditioning, one unknown κ)"
    numeric = "symrmt.numerics.laws.feature_noise:FeatureNoiseSystem"

    def applies(self, core):
        return isinstance(core, NoisyCore)

    def key_extra(self, core):
        return (core.tau,)

    def equations(self, reg, core, z):
        """``[κ(1 − df₁/p) − τ][1 − df₁/n − pτ/(nκ)] = z`` (module docstring)."""
        i = reg.next_index()
        n, Sigma, tau = core.m, core.data.Sigma, core.tau
        p = core.chain[0].shape[1]
        kappa = sp.Dummy(f"kappa{i}", positive=True)
        df = _df(Sigma, kappa)
        kF = kappa * (1 - df / p) - tau
        eqs = (sp.Eq(kF * (1 - df / n - p * tau / (n * kappa)), z, evaluate=False),)
        group = UnknownGroup((kappa,), eqs, z, self.kind, Sigma, (n, p, tau))
        return dict(kappa=kappa, nu=None, k1=kF, iid=True, Kmat=Identity(n), group=group, order=i)

    def side(self, core, g):
        """Only ``κ`` (``kA``) and ``κ_F`` (``k1``): the population matrices are
        ``None`` so that no one-core rule can use this core by mistake."""
        return Side(A=None, kA=g["kappa"], B=None, kB=None, m=core.m, k1=g["k1"], iid=True)


def feature_noise_of(M):
    """``NoisyFeatures`` for ``M = XF + c·Ξ`` (or its transpose written
    ``FᵀXᵀ + c·Ξᵀ``), ``τ = c²``; ``(Φ, transposed)`` or ``None``. ``X``:
    ``GaussianData`` with iid rows and no mean; ``F``: ``RandomFeatures``
    with ``F.rows = X.d``; ``Ξ``: iid ``N(0, 1)`` (``Σ = I_p``, no ``K``,
    no mean), ``Ξ.n = X.n``; ``c`` a non-zero real deterministic scalar."""
    from sympy import MatAdd, MatMul, Transpose
    from ..objects.matrices import GaussianData, RandomFeatures, random_symbols
    if not isinstance(M, MatAdd) or len(M.args) != 2:
        return None

    def parts(t):
        c, mats = t.as_coeff_matrices() if isinstance(t, MatMul) else (sp.S.One, [t])
        return c, list(mats)

    for t in (False, True):
        XF = Xi = c = deep = None
        for a in M.args:
            ca, mats = parts(a)
            if t:
                if not all(isinstance(m, Transpose) for m in mats):
                    continue
                mats = [m.arg for m in reversed(mats)]
            if len(mats) == 2 and ca == 1 and isinstance(mats[0], GaussianData) \
                    and isinstance(mats[1], RandomFeatures):
                XF = mats
            elif len(mats) == 1 and isinstance(mats[0], GaussianData):
                Xi, c = mats[0], ca
            elif len(mats) >= 3 and isinstance(mats[0], GaussianData) \
                    and all(isinstance(m, RandomFeatures) for m in mats[1:]):
                deep = mats
        if deep is not None and Xi is not None:
            raise NotImplementedError(
                f"additive feature noise inside a deep feature chain ({sp.sstr(M)}): the law "
                "feature_noise covers one feature layer, XF + √τ·Ξ; deeper chains are not derived")
        if XF is None or Xi is None:
            continue
        X, F = XF
        if type(X) is not GaussianData or type(Xi) is not GaussianData or X == Xi:
            return None
        if X.correlated or X.has_mean or Xi.correlated or Xi.has_mean:
            return None
        p = F.shape[1]
        if not isinstance(Xi.Sigma, Identity) or sp.simplify(Xi.Sigma.shape[0] - p) != 0 \
                or sp.simplify(Xi.n - X.n) != 0 or sp.simplify(F.shape[0] - X.d) != 0:
            return None
        if random_symbols(c) or c == 0 or c.is_real is False:
            return None
        return NoisyFeatures(X, F, Xi, c), t
    return None


__all__ = ["NoisyFeatures", "NoisyCore", "FeatureNoiseLaw", "feature_noise_of"]
