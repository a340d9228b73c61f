"""The general one-point law: independent Gaussian blocks, weights and a
deterministic shift (docs/math.md, "The general one-point law")::

    (Σ_k c_k X_kᵀX_k/n_k + B + z)⁻¹ ≃ R = (Σ_k c_k ρ_k Σ_k + B + z)⁻¹,
    δ_k = c_k Tr[Σ_k R]/n_k,
    ρ_k = Tr[K_k(I + δ_k K_k)⁻¹]/n_k         (X_k = K_k^{1/2} Z_k Σ_k^{1/2}),
    ρ_k = 1/(1 + δ_k)                       (iid rows, K_k = I).

Unknowns ``δ_k`` (one per block); ``B`` need not commute with anything. One
block with ``B = 0`` is the Wishart law with ``κ = z(1 + δ)``. Its blocks
are the cores of families that declare ``pools`` (white Wishart, correlated
samples); the Registry refuses any other.

Numeric hooks: :class:`symrmt.numerics.laws.general.GeneralSystem` (real
ridge: the increasing fixed-point map from ``δ = 0`` with Newton steps;
complex ridge: Newton in ``δ`` continued from large ``|z|``). Sampler: none
of its own — each block is drawn by its own family.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..equivalence.result import UnknownGroup
from ..objects import Tr
from .base import Law, register


@register
class PooledLaw(Law):
    kind = "general"
    title = "pooled blocks, deterministic shifts"
    numeric = "symrmt.numerics.laws.general:GeneralSystem"

    def applies(self, core):
        return False        # reached through Registry.general, never for a single core

    def general_equations(self, reg, blocks, B, z):
        """The group dict: ``R`` (the matrix), ``delta``, ``rho`` (lists over
        blocks), ``weights``, ``general=True``."""
        i = reg.next_index()
        d = blocks[0][0].dim
        deltas, rhos, eqs = [], [], []
        for j, (core, w) in enumerate(blocks, 1):
            dl = sp.Dummy(f"delta{i}_{j}", positive=True)
            X = core.data
            if X.correlated:
                if core.ddof == 1:
                    raise NotImplementedError(
                        "centred sample covariance of correlated samples (K) is not implemented")
                n = X.K.shape[0]
                rho = Tr(X.K * (Identity(n) + dl * X.K).inverse()) / core.m
            else:
                rho = 1 / (1 + dl)
            deltas.append(dl)
            rhos.append(rho)
        inner = sp.MatAdd(*[w * r * core.data.Sigma for (core, w), r in zip(blocks, rhos)])
        if B is not None:
            inner = inner + B
        if z != 0:
            inner = inner + z * Identity(d)
        R = inner.inverse()
        for (core, w), dl in zip(blocks, deltas):
            eqs.append(sp.Eq(dl, w * Tr(core.data.Sigma * R) / core.m, evaluate=False))
        group = UnknownGroup(tuple(deltas), tuple(eqs), z, self.kind, blocks[0][0].data.Sigma,
                             (B,) if B is not None else ())
        return dict(general=True, delta=deltas, rho=rhos, R=R, group=group, order=i,
                    weights=[w for _, w in blocks])
