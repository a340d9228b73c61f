"""Random projections of pooled data (:mod:`symrmt.laws.projected_pooled`):
unknowns ``(δ_1, …, δ_K, κ)`` per spectral parameter ``z > 0``,

    F_k = δ_k − c_k Tr[Σ_k R]/n_k = 0,      F_κ = κ(1 − Tr[M R]/p) − z = 0,
    R = (M + κ)⁻¹,   M = Σ_k c_k Σ_k/(1 + δ_k).

Real ridge: joint Newton on ``(δ, κ)`` (SymPy Jacobian, backtracking that
keeps ``δ ≥ 0``, ``z ≤ κ ≤ κ₀`` and decreases ``|F|``), started at ``κ₀``
(above the root, below) with ``δ`` the general law's root at ridge ``κ₀``.
A point counts as solved only on the physical branch (``δ ≥ 0``, ``κ ≥ z``,
``Tr[MR] < p``, residual at tolerance), where the root is unique (for each
``κ`` one non-negative ``δ(κ)``, and ``h`` below is increasing); any other
point goes through the nested safeguarded solver (:meth:`ProjectedPooledSystem.solve_nested`):

* inner — for fixed ``κ`` the ``δ`` equations are the general law at ridge
  ``κ``: the map ``δ ↦ c Tr[ΣR(δ)]/n`` is increasing and rises from
  ``δ = 0`` monotonically to the physical root; Newton steps (the ``K×K``
  block of the SymPy Jacobian) are kept where they stay non-negative and
  reduce ``|F|``, else the fixed-point step is taken (warm-started from the
  previous outer iterate);
* outer — ``h(κ) = κ(1 − df(κ)/p)``, ``df(κ) = Tr[M R]`` at ``δ(κ)``, is the
  equivalent of ``κ(1 − Tr[Σ̂(Σ̂+κ)⁻¹]/p)``, increasing where ``df < p``; its
  root is bracketed in ``[z, z + Σ_k c_kTrΣ_k/p]`` (``h(κ) ≥ κ − Tr M/p`` and
  ``M ⪯ Σ_k c_kΣ_k``), a point is *below* the root iff ``df ≥ p`` or
  ``h < z``; :func:`~symrmt.numerics.solvers.bracketed_newton` with the
  total derivative ``dh/dκ = J_κκ − J_κδ J_δδ⁻¹ J_δκ`` (Schur complement).

Complex ``z``, ``z = 0`` and the standalone module are refused by name.
"""
from __future__ import annotations

import numpy as np

from ..solvers import bracketed_newton, full
from .base import LawSystem, register


@register
class ProjectedPooledSystem(LawSystem):
    kind = "projected_pooled"
    title = "random projections of pooled blocks, unknowns δ_k and κ"

    def __init__(self, group, index, lowering, backend):
        F = self._prepare(group, index, lowering, backend)
        self.K = len(self.unknowns) - 1
        if self.K < 1:
            raise ValueError(f"a 'projected_pooled' group has unknowns δ_1…δ_K, κ; got {self.unknowns}")
        self.newton = self.stage(F + self.jacobian)
        p, trace = group.sizes
        self.setup = self.stage([p, trace])
        self.complex_names = [u.name for u in self.unknowns]

    def _eval(self, env, bound, idx, deltas, kappa, z):
        """Residuals ``F`` (K+1 arrays) and Jacobian ``J`` ((K+1)×(K+1) arrays) at points ``idx``."""
        from ..solvers import take
        e = take(env, idx)
        for u, v in zip(self.unknowns[:-1], deltas):
            e[u.name] = v
        e[self.unknowns[-1].name] = kappa
        e[self.zname] = z[idx]
        out = self.newton(e, bound)
        m, k = len(idx), self.K + 1
        out = [np.broadcast_to(np.asarray(o, dtype=float), (m,)) for o in out]
        Fv = np.stack(out[:k], axis=-1)
        J = np.stack(out[k:], axis=-1).reshape(m, k, k)
        return Fv, J

    def _inner(self, env, bound, idx, kappa, z, d0, maxiter, xtol):
        """``δ(κ)`` at points ``idx`` (start ``d0``): Newton safeguarded by the fixed-point map."""
        K = self.K
        dl = d0.copy()
        Fv, J = self._eval(env, bound, idx, dl.T, kappa, z)
        ok = np.zeros(len(idx), dtype=bool)
        for _ in range(maxiter):
            Fd = Fv[:, :K]
            fn = np.abs(Fd).sum(1)
            ok = fn <= xtol * (1 + np.abs(dl).sum(1))
            if ok.all():
                break
            with np.errstate(all="ignore"):
                try:
                    step = np.linalg.solve(J[:, :K, :K], Fd[..., None])[..., 0]
                except np.linalg.LinAlgError:
                    step = np.full_like(dl, np.nan)
                newton = dl - step
                fixed = dl - Fd
            good = np.all(np.isfinite(newton) & (newton >= 0), axis=1)
            cand = np.where(good[:, None], newton, fixed)
            Fn, Jn = self._eval(env, bound, idx, cand.T, kappa, z)
            worse = good & ~(np.abs(Fn[:, :K]).sum(1) < fn)
            if worse.any():
                cand[worse] = fixed[worse]
                sub = np.nonzero(worse)[0]
                F2, J2 = self._eval(env, bound, idx[sub], cand[sub].T, kappa[sub], z)
                Fn[sub], Jn[sub] = F2, J2
            cand[ok] = dl[ok]
            Fn[ok], Jn[ok] = Fv[ok], J[ok]
            dl, Fv, J = cand, Fn, Jn
        return dl, Fv, J, ok

    def _joint(self, env, bound, z, x0, hi, maxiter, xtol):
        """Joint Newton on ``(δ, κ)`` with backtracking (``δ ≥ 0``, ``z ≤ κ ≤ hi``,
        ``|F|`` decreasing); ``(δ, κ, converged)``. A point counts as converged
        only at a root on the physical branch (``δ ≥ 0``, ``κ ≥ z``,
        ``Tr[MR] < p``): there the root is unique (module docstring)."""
        K, N = self.K, len(z)
        x = x0.copy()
        idx = np.arange(N)
        Fv, J = self._eval(env, bound, idx, x[:, :K].T, x[:, K], z)
        conv = np.zeros(N, dtype=bool)
        act = idx.copy()
        scale = lambda F, x: np.abs(F).sum(1) / (1 + np.abs(x).sum(1))  # noqa: E731
        for _ in range(maxiter):
            if not len(act):
                break
            xa, Fa, Ja = x[act], Fv[act], J[act]
            with np.errstate(all="ignore"):
                try:
                    step = np.linalg.solve(Ja, Fa[..., None])[..., 0]
                except np.linalg.LinAlgError:
                    break
            f0 = scale(Fa, xa)
            small = np.abs(step).sum(1) <= xtol * (1 + np.abs(xa).sum(1))
            t = np.ones(len(act))
            pend = np.arange(len(act))
            newF, newJ, newx = Fa.copy(), Ja.copy(), xa.copy()
            for _ in range(40):
                if not len(pend):
                    break
                cand = xa[pend] - t[pend, None] * step[pend]
                inside = np.all(np.isfinite(cand), axis=1) & np.all(cand[:, :K] >= 0, axis=1) \
                    & (cand[:, K] >= z[act[pend]]) & (cand[:, K] <= hi[act[pend]])
                ok = np.zeros(len(pend), dtype=bool)
                if inside.any():
                    sub = pend[inside]
                    F2, J2 = self._eval(env, bound, act[sub], cand[inside, :K].T, cand[inside, K], z)
                    better = scale(F2, cand[inside]) < f0[sub]
                    better |= small[sub]
                    ok[np.nonzero(inside)[0][better]] = True
                    for j, s_ in enumerate(sub):
                        if better[j]:
                            newF[s_], newJ[s_], newx[s_] = F2[j], J2[j], cand[inside][j]
                t[pend[~ok]] /= 2
                pend = pend[~ok]
            stuck = np.zeros(len(act), dtype=bool)
            stuck[pend] = True
            x[act], Fv[act], J[act] = newx, newF, newJ
            done = small & ~stuck
            conv[act[done]] = True
            act = act[~done & ~stuck]
        with np.errstate(all="ignore"):
            df = self._p * (1 - (Fv[:, K] + z) / x[:, K])
            phys = np.all(x[:, :K] >= 0, axis=1) & (x[:, K] >= z) & (df < self._p) \
                & (scale(Fv, x) <= 1e3 * xtol)
        return x, conv & phys

    def solve_real(self, env, bound, z, opts):
        """Joint Newton from ``κ₀ = z + Σ_k c_kTrΣ_k/p`` (above the root), ``δ = 0``;
        points it does not bring to the physical root go through the nested
        safeguarded solver (:meth:`solve_nested`)."""
        N = len(z)
        if np.any(np.asarray(z <= 0, dtype=bool)):
            raise NotImplementedError(
                f"numerics: the ridge {self.zlabel} ≤ 0 for random projections of pooled data "
                "(ridgeless projected law) is not implemented; use a positive ridge")
        z = np.asarray(z, dtype=float)
        p, trace = [full(np.asarray(v, dtype=float), N) for v in self.setup(env, bound)]
        self._p = p
        K = self.K
        xtol = min(opts.get("xtol") or 1e-12, 1e-12)
        x0 = np.zeros((N, K + 1))
        hi = (z + trace / p) * (1 + 1e-12)
        x0[:, K] = hi
        # δ at κ₀: the general law at ridge κ₀ (the joint Newton then starts on the δ(κ) curve)
        x0[:, :K] = self._inner(env, bound, np.arange(N), hi, z, x0[:, :K],
                                max(int(opts.get("maxiter", 100)), 50), 1e-3)[0]
        x, conv = self._joint(env, bound, z, x0, hi, max(int(opts.get("maxiter", 100)), 50), xtol)
        nit = np.zeros(N, dtype=int)
        out = {u.name: x[:, j].copy() for j, u in enumerate(self.unknowns)}
        bad = np.nonzero(~conv)[0]
        if len(bad):
            from ..solvers import take
            sub, nit_b, conv_b = self.solve_nested(take(env, bad), bound, z[bad], opts)
            for k, v in sub.items():
                out[k][bad] = v
            conv[bad] = conv_b
            nit[bad] = nit_b
        return out, nit, conv

    def solve_nested(self, env, bound, z, opts):
        """Outer safeguarded Newton in ``κ`` on ``h(κ) − z`` (bracket ``[z, κ₀]``),
        inner general-law solve of ``δ(κ)`` at every outer iterate (module docstring)."""
        N = len(z)
        if np.any(np.asarray(z <= 0, dtype=bool)):
            raise NotImplementedError(
                f"numerics: the ridge {self.zlabel} ≤ 0 for random projections of pooled data "
                "(ridgeless projected law) is not implemented; use a positive ridge")
        p, trace = [full(np.asarray(v, dtype=float), N) for v in self.setup(env, bound)]
        K = self.K
        xtol = min(opts.get("xtol") or 1e-12, 1e-12)
        inner_iter = max(int(opts.get("maxiter", 100)), 50) * 4
        deltas = np.zeros((N, K))
        inner_ok = np.zeros(N, dtype=bool)
        z = np.asarray(z, dtype=float)

        def step(idx, kap):
            dl, Fv, J, ok = self._inner(env, bound, idx, kap, z, deltas[idx], inner_iter, xtol * 1e-2)
            deltas[idx] = dl
            inner_ok[idx] = ok
            with np.errstate(all="ignore"):
                g = Fv[:, K]                           # h(κ) − z
                a = J[:, K, K]
                b = J[:, K, :K]
                c = J[:, :K, K]
                try:
                    corr = np.einsum("mi,mi->m", b, np.linalg.solve(J[:, :K, :K], c[..., None])[..., 0])
                except np.linalg.LinAlgError:
                    corr = np.full(len(idx), np.nan)
                dh = a - corr
                df = p[idx] * (1 - (g + z[idx]) / kap)   # Tr[MR] from h = κ(1 − df/p)
                below = (df >= p[idx]) | (g < 0)
                return g / dh, below

        x0 = z + trace / p
        lo = z.copy()
        kap, nit, conv = bracketed_newton(step, x0 * (1 + 1e-12), lo, x0 * (1 + 1e-12), self.backend,
                                          max(int(opts.get("maxiter", 100)), 100), xtol)
        # final inner solve at the converged κ (the δ of the last accepted iterate)
        idx = np.arange(N)
        step(idx, kap)
        conv = conv & inner_ok
        out = {u.name: deltas[:, j].copy() for j, u in enumerate(self.unknowns[:-1])}
        out[self.unknowns[-1].name] = kap
        return out, nit, conv
