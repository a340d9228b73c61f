"""The general one-point law: independent Gaussian blocks and a deterministic shift.

``(Σ_k c_k X_kᵀX_k/n_k + B + z)⁻¹ ≃ R = (Σ_k c_k ρ_k Σ_k + B + z)⁻¹`` with
unknowns ``δ_k``, residuals ``F_k = δ_k − c_k Tr[Σ_k R(δ)]/n_k``,
(docs/math.md, "The general one-point law"; iid rows: ``ρ_k = 1/(1 + δ_k)``),
lowered like any functional (dense inverses where matrices do not commute),
with their SymPy Jacobian.

Real ``z ≥ 0``: the fixed-point map ``δ ↦ c Tr[ΣR(δ)]/n`` is increasing in
``δ`` and from ``δ = 0`` rises monotonically to the physical root; Newton
steps (in ``δ``, else in ``log δ``) are kept where they stay non-negative and
reduce ``|F|``, else the fixed-point step is taken. The shift
must be symmetric PSD (checked on the bound values).

Complex ``z`` (Im z < 0 after conjugation; the solvers' continuation in
``η = −Im z``, :func:`~symrmt.numerics.solvers.solve_complex`): Newton in
``δ`` itself with the same residuals and SymPy Jacobian (analytic in ``δ``
and ``z``), started at ``|z| ≫`` the spectrum from the fixed-point map
``δ ← δ − F(δ)`` iterated from ``δ = 0`` (a contraction there:
``δ = c Tr[ΣR]/n = O(1/|z|)``), and continued towards the real axis. The
physical branch is the one analytic in ``z`` off the spectrum: for PSD
``Σ_k``, ``K_k``, ``B`` and ``Im z < 0``, ``Im R⁻¹ = Im z + Σ_k c_k Im ρ_k Σ_k ≺ 0``
gives ``Im R ≻ 0`` hence ``Im δ_k ≥ 0`` and ``Im ρ_k ≤ 0``
(:meth:`GeneralSystem.branch_ok`; the opposite sign convention of ``κ``).
Spectral scale: ``Tr(Σ_k c_k ρ_k(0) Σ_k + B)``, which bounds the largest
eigenvalue of the random matrix up to its trace fluctuation (all terms PSD).
The standalone module is not implemented (it raises, naming the law).
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .base import LawSystem, register


def _scatter_to(n, idx, v):
    out = np.zeros(n)
    out[idx] = v
    return out


def _newton_step(F, J, k):
    """``J⁻¹F`` per point (NaN where ``J`` is singular)."""
    if k == 1:
        return [F[0] / J[0]]
    Jm = np.stack([np.broadcast_to(j, np.shape(F[0])) for j in J], axis=-1).reshape(-1, k, k)
    Fm = np.stack(F, axis=-1)[..., None]
    try:
        return list(np.moveaxis(np.linalg.solve(Jm, Fm)[..., 0], -1, 0))
    except np.linalg.LinAlgError:
        return [np.full(len(F[0]), np.nan) for _ in range(k)]


def _log_newton(x, F, J, k):
    """Newton step for ``G(u) = log φ(e^u) − u = 0`` (``u = log δ``, ``φ(δ) = δ − F(δ)`` the
    fixed-point map): ``∂G_i/∂u_j = (δ_ij − J_ij) δ_j/φ_i − δ_ij``. In log coordinates the
    map's saturation (``φ`` nearly linear with slope → 1 at ``n = d``, tiny ``z``, where plain
    Newton overshoots by orders of magnitude and the fixed-point map crawls) becomes a
    smooth ``G``; returns the new ``δ = δ e^{Δu}`` (NaN where ``δ`` or ``φ`` is not positive)."""
    with np.errstate(all="ignore"):
        phi = [a - f for a, f in zip(x, F)]
        pos = np.all([(a > 0) & (ph > 0) for a, ph in zip(x, phi)], axis=0)
        G = [np.log(np.where(pos, ph, 1.0)) - np.log(np.where(pos, a, 1.0)) for a, ph in zip(x, phi)]
        JG = [((1.0 if i == j else 0.0) - J[i * k + j]) * x[j] / phi[i] - (1.0 if i == j else 0.0)
              for i in range(k) for j in range(k)]
        if k == 1:
            du = [G[0] / JG[0]]
        else:
            Jm = np.stack([np.broadcast_to(j, np.shape(x[0])) for j in JG], axis=-1).reshape(-1, k, k)
            Gm = np.stack(G, axis=-1)[..., None]
            try:
                du = list(np.moveaxis(np.linalg.solve(np.where(np.isfinite(Jm), Jm, 0.0), Gm)[..., 0], -1, 0))
            except np.linalg.LinAlgError:
                du = [np.full(len(x[0]), np.nan) for _ in range(k)]
        return [np.where(pos, a * np.exp(np.clip(-d_, -30.0, 30.0)), np.nan) for a, d_ in zip(x, du)]


@register
class GeneralSystem(LawSystem):
    kind = "general"
    title = "pooled blocks, deterministic shifts"

    def __init__(self, group, index, lowering, backend):
        F = self._prepare(group, index, lowering, backend)
        self.newton = self.stage(F + self.jacobian)
        self.shift = group.sizes[0] if group.sizes else None
        self._shift_eval = None
        if self.shift is not None:
            from ..kernels import _DenseEval
            self._shift_eval = _DenseEval(backend, self.shift)
        self.complex_names = [u.name for u in self.unknowns]
        self.complex_newton = self.newton
        self._scale_stage = None
        self._residuals = F

    def _scale_expr(self):
        """``Tr`` of ``R⁻¹`` at ``δ = 0``, ``z = 0``: ``Tr(Σ_k c_k ρ_k(0) Σ_k + B)``.
        ``R`` is the largest inverse in the residuals (the others are the
        ``(I + δ_k K_k)⁻¹`` inside ``ρ_k``)."""
        invs = [a for f in self._residuals for a in sp.preorder_traversal(f) if isinstance(a, sp.Inverse)]
        if not invs:
            raise NotImplementedError(f"numerics: no resolvent in the general law's equations {self.unknowns}")
        R = max(invs, key=lambda a: (sp.count_ops(a), sp.default_sort_key(a)))
        from ...objects.functionals import Tr
        zero = {u: sp.S.Zero for u in self.unknowns}
        zero[self._zsym] = sp.S.Zero
        return Tr(R.arg.xreplace(zero))

    def branch_ok(self, U):
        """The physical branch at ``Im z < 0``: ``Im δ_k ≥ 0`` (module docstring), finite."""
        be = self.backend
        ok = np.ones(len(U[0]), dtype=bool)
        for u in U:
            ok &= np.asarray(be.imag(u) >= -1e-10 * abs(u), dtype=bool) & be.isfinite(u)
        return ok

    def scale(self, env, bound):
        """Spectral scale (module docstring); also checks that the shift is PSD."""
        self.check_shift(env, bound)
        if self._scale_stage is None:
            self._scale_stage = self.stage([self._scale_expr()])
        return abs(self._scale_stage(env, bound)[0])

    def initial_guess(self, env, bound, z0):
        """``δ`` at ``|z0| ≫`` the spectrum: two steps of the fixed-point map
        ``δ ← δ − F(δ) = c Tr[ΣR(δ)]/n`` from ``δ = 0`` (error ``O(|z0|⁻³)``;
        Newton finishes)."""
        n = len(z0)
        k = len(self.unknowns)
        if getattr(self, "_residual_stage", None) is None:
            self._residual_stage = self.stage(self._residuals)
        U = [np.zeros(n, dtype=complex) if z0.dtype != object else np.zeros(n) * z0 for _ in range(k)]
        for _ in range(2):
            e = dict(env)
            for u, name in zip(U, self.complex_names):
                e[name] = u
            e[self.zname] = z0
            out = self._residual_stage(e, bound)
            U = [u - np.broadcast_to(out[i], (n,)) for i, u in enumerate(U)]
        return U

    def check_shift(self, env, bound):
        """The shift ``B`` must be symmetric positive semi-definite (the law's
        physical branch); raises a ``BindingError`` naming it otherwise."""
        from ..result import BindingError
        if self._shift_eval is None:
            return
        B = np.asarray(self._shift_eval(env, bound))
        if B.dtype == object:
            return
        mats = B.reshape((-1,) + B.shape[-2:])
        name = sp.sstr(self.shift)
        for M in mats:
            if np.iscomplexobj(M) or not np.allclose(M, M.T, rtol=1e-10, atol=1e-12 * (1 + np.abs(M).max())):
                raise BindingError(f"the shift {name} must be a real symmetric matrix")
            e = np.linalg.eigvalsh((M + M.T) / 2)
            if e.min() < -1e-10 * max(1.0, abs(e).max()):
                raise BindingError(f"the shift {name} must be positive semi-definite: its smallest "
                                   f"eigenvalue is {e.min():.3g}")

    def solve_real(self, env, bound, z, opts):
        """Real ``z ≥ 0``: Newton on ``F(δ) = 0`` with the SymPy Jacobian,
        safeguarded by the fixed-point map ``δ ↦ δ − F(δ)``
        (``= c_j Tr[Σ_j R]/n_j``), which is increasing in ``δ`` and from
        ``δ = 0`` rises monotonically to the physical root; a Newton step is
        kept where it stays non-negative and reduces ``|F|``, else a Newton step
        in ``u = log δ`` on ``G(u) = log φ(e^u) − u`` (:func:`_log_newton`) where
        that reduces ``|F|``, else the fixed-point step. The positive fixed
        point is unique (the map is positive, increasing and sub-homogeneous,
        ``φ(αδ) < αφ(δ)`` for ``α > 1``), so any accepted step stays on the
        physical branch. Converged: ``Σ|F| ≤ xtol(1 + Σδ)`` and the Newton
        step ``Σ|J⁻¹F| ≤ 10³ xtol(1 + Σδ)`` (a small residual alone is not
        enough where ``J`` is nearly singular: ``n = d``, tiny ``z``)."""
        self.check_shift(env, bound)
        k = len(self.unknowns)
        n = len(z)
        names = [u.name for u in self.unknowns]
        maxiter = max(int(opts.get("maxiter", 100)), 50) * 4
        xtol = opts.get("xtol") or 1e-12

        def ev(x, idx):
            e = {kk: (v[idx] if isinstance(v, np.ndarray) and v.ndim == 1 and len(v) == n else v)
                 for kk, v in env.items()}
            for nm, v in zip(names, x):
                e[nm] = v[idx]
            e[self.zname] = z[idx]
            out = self.newton(e, bound)
            m = len(idx)
            F = [np.broadcast_to(np.asarray(f, dtype=float), (m,)) for f in out[:k]]
            J = [np.broadcast_to(np.asarray(j, dtype=float), (m,)) for j in out[k:]]
            return F, J

        x = [np.zeros(n) for _ in range(k)]
        nit = np.zeros(n, dtype=int)
        conv = np.zeros(n, dtype=bool)
        act = np.arange(n)
        F, J = ev(x, act)
        for it in range(maxiter):
            if not len(act):
                break
            xa = [v[act] for v in x]
            fnorm = sum(np.abs(f) for f in F)
            size = 1 + sum(np.abs(v) for v in xa)
            # a small residual alone is not enough where the Jacobian is nearly singular
            # (n = d, tiny z: |F| ≤ xtol·δ left δ 2e-8 off): the Newton step must be small too
            # (where J is singular the step is NaN and the residual test decides alone)
            with np.errstate(all="ignore"):
                snorm = sum(np.abs(s_) for s_ in _newton_step(F, J, k))
            done = (fnorm <= xtol * size) & ((snorm <= 1e3 * xtol * size) | ~np.isfinite(snorm))
            conv[act[done]] = True
            keep = ~done
            act = act[keep]
            if not len(act):
                break
            xa = [v[keep] for v in xa]
            F = [f[keep] for f in F]
            J = [j[keep] for j in J]
            fnorm = fnorm[keep]
            with np.errstate(all="ignore"):
                step = _newton_step(F, J, k)
                xn = [a - s_ for a, s_ in zip(xa, step)]
                fp = [a - f for a, f in zip(xa, F)]
                xl = _log_newton(xa, F, J, k)
            good = np.all([np.isfinite(v) & (v >= 0) for v in xn], axis=0)
            okl = np.all([np.isfinite(v) & (v > 0) for v in xl], axis=0)
            # candidates in order: Newton, Newton in log δ, the fixed-point map (always taken);
            # the first two only where they reduce |F|
            m_ = len(act)
            cand = [f.copy() for f in fp]
            Fn_ = [np.zeros(m_) for _ in range(k)]
            Jn = [np.zeros(m_) for _ in range(k * k)]
            pending = np.ones(m_, dtype=bool)
            for trial, valid in ((xn, good), (xl, okl), (fp, np.ones(m_, dtype=bool))):
                sub = np.nonzero(pending & valid)[0]
                if not len(sub):
                    continue
                F2, J2 = ev([_scatter_to(n, act[sub], t[sub]) for t in trial], act[sub])
                acc = (sum(np.abs(f) for f in F2) < fnorm[sub]) | (trial is fp)
                take_ = sub[acc]
                for i_ in range(k):
                    cand[i_][take_] = trial[i_][take_]
                    Fn_[i_][take_] = F2[i_][acc]
                for i_ in range(k * k):
                    Jn[i_][take_] = J2[i_][acc]
                pending[take_] = False
            for i_ in range(k):
                x[i_][act] = cand[i_]
            nit[act] += 1
            F, J = Fn_, Jn
        return {nm: v for nm, v in zip(names, x)}, nit, conv
