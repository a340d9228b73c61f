"""Correlated samples: ``X = K^{1/2} Z Σ^{1/2}`` (``m`` samples), unknowns ``(κ, ν)``.

Equations (docs/math.md): ``Tr[K(K+ν)⁻¹] = Tr[Σ(Σ+κ)⁻¹] = df``,
``κ Π_j(1 − df/m_j) · ν df = m z`` (feature layers ``m_j``; ``Π = 1`` without).

Real ridge: for fixed ``κ``, ``ν`` solves ``Tr[K(K+ν)⁻¹] = df(κ)``;
``1/Tr[K(K+ν)⁻¹]`` is increasing and nearly linear in ``ν`` (exactly linear
for ``K = I``), so Newton on it with a bracket ``[0, Tr K/df]`` converges in a
few steps. The outer function ``κ Π_j(1−df/m_j) · ν(κ) · df(κ)`` is
increasing in ``κ`` (``ν·df = Tr[νK(K+ν)⁻¹]`` increases with ``ν``, which
increases with ``κ``), and the outer step is the ``κ`` component of the full
Newton step ``J⁻¹F`` — the Schur-complement (implicit-function) step, since
the inner equation holds.

Complex ``z``: Newton in ``(κ, u = 1/ν)`` on
``Tr[uK(uK+1)⁻¹] = df(κ)``, ``κ Π_j(1 − df/m_j) · Tr[K(uK+1)⁻¹] = m z``,
smooth where ``df(κ)`` crosses 0 (``ν → ∞``) inside gaps of a spiky
spectrum, where the ``(κ, ν)`` form has a pole and Newton stalls.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ...objects.functionals import Tr
from ...objects.matrices import Covariance
from ..solvers import bracketed_newton, check_ridgeless, full, take
from .base import LawSystem, register


@register
class SeparableSystem(LawSystem):
    kind = "separable"
    title = "correlated samples (κ, ν)"
    has_python_solver = True

    def __init__(self, group, index, lowering, backend):
        if len(group.unknowns) != 2:
            raise ValueError(f"a 'separable' group has two unknowns (κ, ν), got {tuple(group.unknowns)}")
        if not isinstance(group.K, Covariance) or group.m is None:
            raise NotImplementedError("numerics: a 'separable' group needs K as an sr.Covariance and m")
        F = self._prepare(group, index, lowering, backend)
        if not any(self._zsym in f.free_symbols for f in F) and self.z.free_symbols:
            raise ValueError(f"the equations of the group {self.unknowns} do not contain its "
                             f"spectral parameter z = {self.z} literally")
        Sigma, K = group.Sigma, group.K
        df = group.df()
        self.sizes_exprs = [sp.sympify(m) for m in group.sizes]
        self.newton = self.stage(F + self.jacobian + [df])
        self.df_only = self.stage([df])
        self.sigma = Sigma if isinstance(Sigma, Covariance) else None
        k, nu = self.unknowns
        n_id = sp.Identity(K.shape[0])
        dfK = Tr(K * (K + nu * n_id).inverse())
        self.inner = self.stage([dfK, sp.diff(dfK, nu)])
        self._setup = self.stage([Tr(Sigma), group.m, Tr(K), *self.sizes_exprs])
        u = sp.Symbol(f"__u{index}")
        prod = sp.Mul(*[(1 - df / m) for m in self.sizes_exprs])
        E = [Tr(u * K * (u * K + n_id).inverse()) - df,
             k * prod * Tr(K * (u * K + n_id).inverse()) - group.m * self._zsym]
        self.complex_names = [k.name, u.name]
        self.complex_newton = self.stage(E + [sp.diff(e, v) for e in E for v in (k, u)])

    def setup(self, env, bound):
        """``[Tr Σ, m, Tr K, rank K, *sizes]``."""
        trS, m, trK, *ms = self._setup(env, bound)
        kind, arr = bound.mats[self.group.K.name]
        if kind != "diag":
            raise NotImplementedError("numerics: K must be diagonalisable in the common basis")
        rank = int(np.count_nonzero(arr > 0))
        return [trS, m, trK, self.backend.const(float(rank)), *ms]

    # ------------------------------------------------------------ hooks
    def solve_real(self, env, bound, z, opts):
        be = self.backend
        n = len(z)
        trS, m, trK, rankK, *ms = [full(v, n) for v in self.setup(env, bound)]
        cap = rankK
        for mj in ms:
            cap = np.where(mj < cap, mj, cap)
        k, nu = self.unknowns
        x0 = z * m / trK + trS / m + trS * sum((1 / mj for mj in ms), 0 * z)
        zero = 0 * x0
        inf = zero + be.const(float("inf"))
        check_ridgeless(self, env, bound, z, cap, trS)
        nit_inner = np.zeros(n, dtype=int)

        def inner(idx, e, t):
            """ν with Tr[K(K+ν)⁻¹] = t, by Newton on 1/Tr[K(K+ν)⁻¹] − 1/t."""
            def ev(j, v):
                ee = take(e, j)
                ee[nu.name] = v
                dfK, ddfK = self.inner(ee, bound)
                with np.errstate(all="ignore"):
                    step = dfK * (1 - dfK / t[j]) / -ddfK
                return step, dfK > t[j]
            v0 = trK[idx] / t
            z0 = 0 * v0
            v, it, ok = bracketed_newton(ev, v0, z0, z0 + be.const(float("inf")), be, opts["maxiter"], opts["xtol"])
            nit_inner[idx] += it
            return v, ok

        def evaluate(idx, x):
            e = take(env, idx)
            e[k.name] = x
            e[self.zname] = z[idx]
            df = full(self.df_only(e, bound)[0], len(idx))
            valid = be.isfinite(df) & (df < cap[idx]) & (df > 0)
            step = zero[idx] + be.const(float("nan"))
            below = ~valid
            if valid.any():
                j = np.nonzero(valid)[0]
                ej = take(e, j)
                v, _ = inner(idx[j], ej, df[j])
                ej[nu.name] = v
                F1, F2, J11, J12, J21, J22, _ = self.newton(ej, bound)
                with np.errstate(all="ignore"):
                    det = J11 * J22 - J12 * J21
                    step[j] = full((J22 * F1 - J12 * F2) / det, len(j))
                    h = x[j] * v * df[j]
                    for mj in ms:
                        h = h * (1 - df[j] / mj[idx[j]])
                    below[j] = h < m[idx[j]] * z[idx[j]]
            return step, below

        x, nit, conv = bracketed_newton(evaluate, x0, zero, inf, be, opts["maxiter"], opts["xtol"])
        # ν at the final κ
        e = dict(env)
        e[k.name] = x
        e[self.zname] = z
        df = full(self.df_only(e, bound)[0], n)
        ok = be.isfinite(df) & (df < cap)
        v = zero + be.const(float("nan"))
        if ok.any():
            j = np.nonzero(ok)[0]
            v[j], okj = inner(j, take(e, j), df[j])
            ok[j] &= okj
            v[j] = self._better_nu(take(e, j), bound, x[j], v[j], df[j], z[j], m[j], [mj[j] for mj in ms])
        return {k.name: x, nu.name: v}, nit + nit_inner, conv & ok

    def _better_nu(self, e, bound, x, v, df, z, m, ms):
        """``ν`` at the converged ``κ`` from whichever equation is better conditioned.

        The first, ``Tr[K(K+ν)⁻¹] = df``, amplifies the rounding error of ``df``
        by ``c₁ = df/Tr[νK(K+ν)⁻²]``, which diverges as ``ν → 0`` when ``df`` nears
        ``rank K`` (rank-deficient or small ``K``, tiny ridge: e.g. flat ``Σ = I₆₀``,
        ``K`` of rank 3, ``n = 12``, ``λ = 1e-14`` gave ``ν`` 5 % off). The second,
        ``ν = m z/(κ Π_j(1 − df/m_j) df)`` (an identity at the root), amplifies it by
        ``c₂ = 1 + Σ_j df/(m_j − df)`` only; it is used where ``z > 0`` and ``c₂ < c₁``."""
        be = self.backend
        nu = self.unknowns[1]
        ee = dict(e)
        ee[nu.name] = v
        n = len(x)
        _, ddfK = (full(a, n) for a in self.inner(ee, bound))
        with np.errstate(all="ignore"):
            P, c2 = 1, 1
            for mj in ms:
                P = P * (1 - df / mj)
                c2 = c2 + abs(df / (mj - df))
            v2 = full(m * z / (x * P * df), n)
            c1 = abs(df / (v * ddfK))
            use = np.asarray((z > 0) & be.isfinite(v2) & (v2 > 0) & be.isfinite(v) & (c2 < c1), dtype=bool)
        return np.where(use, v2, v)

    def scale(self, env, bound):
        """Spectral scale: ``max eig Σ · Π_j (1 + √(d/m_j))² · max eig K · (1 + √(d/m))²``."""
        be = self.backend
        setup = self.setup(env, bound)
        if self.sigma is not None and bound.mats.get(self.sigma.name, ("",))[0] == "diag":
            smax = bound.mats[self.sigma.name][1].max()
        else:
            smax = setup[0]          # Tr Σ ≥ its largest eigenvalue
        d = bound.sizes.get(self.group.Sigma.shape[0]) or 1
        s = smax
        for m in setup[4:]:
            s = s * (1 + (be.const(float(d)) / m) ** 0.5) ** 2
        m = setup[1]
        kmax = bound.mats[self.group.K.name][1].max()
        return s * kmax * (1 + (be.const(float(d)) / m) ** 0.5) ** 2

    def initial_guess(self, env, bound, z0):
        """``κ ≈ z m/Tr K + Tr Σ/m + Tr Σ Σ_j 1/m_j``, ``u = 1/ν ≈ df(κ)/Tr K``."""
        n = len(z0)
        trS, m, trK, _, *ms = [np.broadcast_to(np.asarray(v), (n,)) for v in self.setup(env, bound)]
        k0 = z0 * m / trK + trS / m + trS * sum((1 / mj for mj in ms), 0 * z0)
        e = dict(env)
        e[self.unknowns[0].name] = k0
        df = np.broadcast_to(np.asarray(self.df_only(e, bound)[0]), (n,))
        return [k0, df / trK]

    def complex_unknowns(self, U):
        return [U[0], 1 / U[1]]

    @classmethod
    def python_solver(cls, b, group, names, label):
        z, S = b.scalar(group.z), b.matrix(group.Sigma)
        sizes = "[" + ", ".join(b.scalar(m) for m in group.sizes) + "]"
        K, m = b.matrix(group.K), b.scalar(group.m)
        return (f"    s[{names[0]!r}], s[{names[1]!r}] = "
                f"_separable({tuple(names)!r}, {z}, {S}, {K}, {m}, {sizes}, s)")
