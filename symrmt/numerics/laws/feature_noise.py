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
from ..solvers import full, take
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

        out, nit, conv = self.newton_from_above(env, z, x0, opts, step)
        return out, nit, conv & self._precise(env, bound, z, out, tau)

    def _precise(self, env, bound, z, out, tau):
        """Points where the derived value keeps its precision. The value splits
        the poles of ``Ŝ`` at ``−τ`` and ``−(τ + κ_F)`` (``κ_F = κ(1 − df/p) − τ``,
        ``O(λ)`` as ``λ → 0`` when ``n > p``), with coefficients up to
        ``(τ/κ_F)³`` that cancel: measured relative errors ≈ ``ε(τ/κ_F)^k``,
        ``k ≤ 3`` (norm ``‖â‖²``; e.g. n = 120, p = 60, τ = 0.3: λ = 1e-6 gave
        3.7e-6, λ = 1e-8 gave 0.8 %, λ = 1e-10 a negative risk). Points with
        ``ε(τ/κ_F)³ > 1e-9`` (double precision: ``κ_F < 6e-3·τ``) are reported
        unconverged with a warning, never returned; the mpmath backend
        (``ε = 10^−dps``) reaches them."""
        (k,) = self.unknowns
        N = len(z)
        e = take(env, np.arange(N))
        e[k.name] = out[k.name]
        e[self.zname] = z
        df = full(self.newton(e, bound)[-1], N)
        x = out[k.name]
        be = self.backend
        eps = 10.0 ** (-getattr(be, "dps", 15.65))
        with np.errstate(all="ignore"):
            kF = x * (1 - df / full(self.setup(env, bound)[2], N)) - tau
            bad = np.asarray((tau > 0) & ~(kF ** 3 >= eps * 1e9 * tau ** 3), dtype=bool)
        if bad.any():
            import warnings
            i = int(np.nonzero(bad)[0][0])
            warnings.warn(
                f"additive feature noise: κ_F/τ = {float(kF[i] / tau[i]):.3g} at {self.zlabel} = {float(z[i]):.3g} "
                f"({int(bad.sum())} point(s)): the derived value would lose precision (relative error ≈ "
                f"ε(τ/κ_F)³); these points are reported unconverged — use backend='mpmath' there",
                RuntimeWarning, stacklevel=2)
        return ~bad
