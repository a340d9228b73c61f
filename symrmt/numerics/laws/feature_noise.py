"""Additive feature noise ``Φ = XF + √τΞ`` (:mod:`symrmt.laws.feature_noise`):
one unknown ``κ`` per spectral parameter ``z > 0``,

    h(κ) = [κ(1 − df(κ)/p) − τ]·[1 − df(κ)/n − pτ/(nκ)] = z,   df(κ) = Tr[Σ(Σ+κ)⁻¹].

Real ridge. Both brackets increase with ``κ`` wherever ``df < p`` (``df``
decreases, ``κ(1 − df/p)`` increases on that branch, ``−pτ/(nκ)`` increases).
The physical root is where both are positive: there ``h`` increases from
``0`` to ``+∞``; elsewhere ``h ≤ 0 < z`` (a negative second bracket with
a positive first, or a first bracket ``≤ 0``). So a point is *below* the root
iff ``df ≥ p``, or either bracket is ``≤ 0``, or ``h < z`` — a bracket test
for safeguarded Newton. Start above the root: ``κ df ≤ Tr Σ`` gives
``h ≥ (κ − c₁)(κ − c₂)/κ`` with ``c₁ = τ + Tr Σ/p``, ``c₂ = (Tr Σ + pτ)/n``,
and at ``κ₀ = z + c₁ + c₂`` the right side is ``≥ z``. Newton steps use the
derived residual and its SymPy derivative.

Complex ``z`` (contour integrals), ``z = 0`` and the standalone module
(``to_python``) are refused by name.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ...objects.functionals import Tr
from ..solvers import full
from .base import LawSystem, register


@register
class FeatureNoiseSystem(LawSystem):
    kind = "feature_noise"
    title = "additive feature noise XF + √τΞ, one unknown κ per spectral parameter"

    def __init__(self, group, index, lowering, backend):
        if len(group.unknowns) != 1:
            raise ValueError(f"a 'feature_noise' group has one unknown, got {tuple(group.unknowns)}")
        F = self._prepare(group, index, lowering, backend)
        n, p, tau = (sp.sympify(v) for v in group.sizes)
        df = group.df()
        self.newton = self.stage(F + self.jacobian + [df])
        self.setup = self.stage([Tr(group.Sigma), n, p, tau])
        self.complex_names = [self.unknowns[0].name]

    def solve_real(self, env, bound, z, opts):
        N = len(z)
        trS, n, p, tau = [full(v, N) for v in self.setup(env, bound)]
        if np.any(np.asarray(z == 0, dtype=bool)):
            raise NotImplementedError(
                f"numerics: the ridge {self.zlabel} = 0 with additive feature noise (ridgeless "
                "feature-noise law) is not implemented; use a positive ridge")
        if np.any(np.asarray(tau < 0, dtype=bool)):
            raise ValueError(f"the feature-noise variance τ must be ≥ 0 (group {self.unknowns})")
        x0 = z + tau + trS / p + (trS + p * tau) / n

        def step(e, idx, x):
            Fv, J, df = self.newton(e, bound)
            with np.errstate(all="ignore"):
                ni, pi, ti = n[idx], p[idx], tau[idx]
                a = x * (1 - df / pi) - ti
                b = 1 - df / ni - pi * ti / (ni * x)
                h = a * b
                off = (df >= pi) | (a <= 0) | (b <= 0)
                below = off | (h < z[idx])
                # two negative brackets give h > 0 again: never a Newton step off the branch
                return np.where(off, np.nan, Fv / J), below

        return self.newton_from_above(env, z, x0, opts, step)
