"""Random projections of pooled data (:mod:`symrmt.laws.projected_pooled`):
unknowns ``(δ_1, …, δ_K, κ)`` per spectral parameter ``z > 0``,

    F_k = δ_k − c_k Tr[Σ_k R]/n_k = 0,      F_κ = κ(1 − Tr[M R]/p) − z = 0,
    R = (M + κ)⁻¹,   M = Σ_k c_k Σ_k/(1 + δ_k).

Real ridge: joint Newton on ``(δ, κ)`` (steps taken in ``(log(1+δ), log κ)``,
:data:`LOG_STEP`; backtracking that keeps ``δ ≥ 0``, ``z ≤ κ ≤ κ₀`` and
decreases ``|F|``), started at ``κ₀`` (above the root, below) with ``δ`` the
general law's root at ridge ``κ₀``.

Residuals and Jacobian at a Newton iterate (:class:`_Structured`, numpy): one
inverse ``R = (M + κ)⁻¹`` per point, the products ``P_l = Σ_l R`` once, and
every trace from them — ``Tr[Σ_k R]``, ``Tr[Σ_k R Σ_l R]``, ``Tr[Σ_k R²]``,
``Tr R``, ``Tr[R²]`` (``O(d²)`` each) — with the chain rule
``∂R/∂u = −R (∂A/∂u) R``, ``A = M + κ``; the scalar derivatives by SymPy. It is
checked once per plan against the lowered SymPy Jacobian (every contraction
its own dense inverse, :meth:`ProjectedPooledSystem._eval_lowered`, also the
path for mpmath and for residuals of another form) and dropped if they
disagree. Measured (``benchmarks/projected.py``, one BLAS thread, shared
machine): d = 400 per grid point 0.5–1.1 s against 7–325 s before.
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
import sympy as sp

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
        """Residuals ``F`` (K+1 arrays) and Jacobian ``J`` ((K+1)×(K+1) arrays) at points ``idx``:
        from one inverse per point (:class:`_Structured`) where the residuals
        have its form, else from the lowered SymPy Jacobian (:meth:`_eval_lowered`)."""
        out = self._eval_structured(env, bound, idx, deltas, kappa, z)
        return out if out is not None else self._eval_lowered(env, bound, idx, deltas, kappa, z)

    def _eval_structured(self, env, bound, idx, deltas, kappa, z):
        """:class:`_Structured` at points ``idx``, or ``None`` (switched off, not
        numpy, bindings it does not take, or it disagreed with the lowered
        residuals and Jacobian at the first point it was checked on)."""
        if not STRUCTURED or self.backend.name != "numpy" or not len(idx):
            return None
        if not hasattr(self, "_st"):
            self._st = _Structured.build(self) or False
            self._st_checked = False
        st = self._st
        if not st:
            return None
        from ..solvers import take
        e = take(env, idx)
        if not st.usable(e, bound):
            return None
        out = st(e, bound, np.arange(len(idx)), deltas, kappa, z[idx] if np.ndim(z) else z)
        if not self._st_checked:
            j = idx[:1]
            Fo, Jo = self._eval_lowered(env, bound, j, [np.asarray(v)[:1] if np.ndim(v) else v for v in deltas],
                                        np.asarray(kappa)[:1] if np.ndim(kappa) else kappa, z)
            x = np.abs(np.array([np.ravel(v)[0] for v in list(deltas) + [kappa]], dtype=float))
            scale = np.abs(Fo[0]) + np.abs(Jo[0]) @ x + np.abs(Jo[0]).sum(1) + 1e-300
            okF = np.all(np.abs(out[0][0] - Fo[0]) <= _CHECK_RTOL * scale)
            okJ = np.all(np.abs(out[1][0] - Jo[0]) <= _CHECK_RTOL * (np.abs(Jo[0]).sum(1, keepdims=True) + 1e-300))
            if not (okF and okJ and np.all(np.isfinite(out[0][0]))):
                self._st = False
                return None
            self._st_checked = True
        return out

    def _eval_lowered(self, env, bound, idx, deltas, kappa, z):
        """Residuals and Jacobian from the lowered SymPy expressions (a dense
        inverse per contraction)."""
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
            # Newton in y = (log(1+δ), log κ) where LOG_STEP: the same root, the same
            # quadratic convergence (near it the steps agree to second order), but a step
            # that shrinks κ by a factor is taken as one; the x-space step (first order)
            # decides 'small'
            sc = np.concatenate([1 + xa[:, :K], xa[:, K:]], axis=1) if LOG_STEP else np.ones_like(xa)
            with np.errstate(all="ignore"):
                try:
                    dy = np.linalg.solve(Ja * sc[:, None, :], Fa[..., None])[..., 0]
                except np.linalg.LinAlgError:
                    break
                step = sc * dy
            f0 = scale(Fa, xa)
            small = np.abs(step).sum(1) <= xtol * (1 + np.abs(xa).sum(1))
            t = np.ones(len(act))
            pend = np.arange(len(act))
            newF, newJ, newx = Fa.copy(), Ja.copy(), xa.copy()
            for _ in range(40):
                if not len(pend):
                    break
                if LOG_STEP:
                    with np.errstate(all="ignore"):
                        e = np.exp(-t[pend, None] * dy[pend])
                    cand = np.concatenate([(1 + xa[pend, :K]) * e[:, :K] - 1, xa[pend, K:] * e[:, K:]], axis=1)
                else:
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


# ---------------------------------------------------------------- structured evaluation
#: use :class:`_Structured` (one inverse per point and Newton step) where the
#: residuals have its form; ``False`` restores the lowered SymPy Jacobian
#: (every trace a contraction with its own dense inverse) — kept for comparison
#: (``benchmarks/projected.py --old``) and as the fallback
STRUCTURED = True
#: joint Newton steps in ``(log(1+δ), log κ)`` (:meth:`ProjectedPooledSystem._joint`);
#: ``False``: steps in ``(δ, κ)`` (the former iteration, kept for comparison)
LOG_STEP = True
#: relative agreement of the structured ``F``, ``J`` with the lowered ones at
#: the first point of the first solve (else the lowered path is used)
_CHECK_RTOL = 1e-8
_CHUNK_ELEMENTS = 2 ** 23          # entries of the (points, d, d) blocks held at once


class _Structured:
    """Residuals and Jacobian of the law from **one** inverse per point.

    The residuals are read (once, symbolically) as scalar functions
    ``F_i(u, τ)`` of the unknowns ``u = (δ, κ)`` and of traces
    ``τ = Tr[X R]``, where ``R = A⁻¹`` is the one inverse they contain,
    ``A = a₀(u) I + Σ_l b_l(u) Σ_l`` (bound matrices ``Σ_l``) and
    ``X ∈ span(I, Σ_l)`` (``Tr[MR] = Σ_l b_l Tr[Σ_l R]`` for ``M = A − κI``).
    With ``t_l = Tr[Σ_l R]``, ``t₀ = Tr R`` and ``∂R/∂u = −R (∂A/∂u) R``:

        ∂t_k/∂u = −(∂a₀/∂u) Tr[Σ_k R²] − Σ_l (∂b_l/∂u) Tr[Σ_k R Σ_l R],
        ∂t₀/∂u  = −(∂a₀/∂u) Tr[R²]     − Σ_l (∂b_l/∂u) Tr[Σ_l R²],

    and ``J_ij = ∂F_i/∂u_j + Σ_k ∂F_i/∂t_k · ∂t_k/∂u_j`` (chain rule; the
    scalar derivatives by SymPy). Per point: ``R`` (one inversion),
    ``P_l = Σ_l R`` (one product per full ``Σ_l``, a row scaling for a
    diagonal one), then every trace from them in ``O(d²)``:
    ``Tr[Σ_k R Σ_l R] = Σ_ab (P_k)_ab (P_l)_ba``, ``Tr[Σ_k R²] = Σ_ab (P_k)_ab R_ba``.
    With every ``Σ_l`` diagonal everything is ``O(d)``. Built only where the
    residuals have exactly this form (:meth:`build` returns ``None`` otherwise).
    """

    def __init__(self, backend, unknowns, zsym, F, inv, a0, terms, reps, tsyms, t0):
        self.unknowns, self.zsym = list(unknowns), zsym
        self.names = [S.name for _, S in terms]
        self.tsyms, self.t0 = tsyms, t0
        G = [f.xreplace(reps) for f in F]
        scal = list(self.unknowns) + tsyms + [t0, zsym]
        self.params = sorted({s for g in G for s in g.free_symbols} - set(scal) |
                             {s for e in [a0] + [b for b, _ in terms] for s in e.free_symbols} - set(self.unknowns),
                             key=str)
        outs = list(G)
        outs += [sp.diff(g, u) for g in G for u in self.unknowns]          # explicit ∂F_i/∂u_j
        outs += [sp.diff(g, t) for g in G for t in tsyms + [t0]]           # ∂F_i/∂t_k
        self.fn_F = backend.lambdify(scal + self.params, outs)
        coef = [a0] + [b for b, _ in terms]
        dcoef = [sp.diff(c, u) for c in coef for u in self.unknowns]
        self.fn_A = backend.lambdify(list(self.unknowns) + self.params, coef + dcoef)
        self.n, self.L = len(F), len(terms)

    @classmethod
    def build(cls, system):
        """The structured evaluator of ``system``'s residuals, or ``None``."""
        from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixExpr, MatrixSymbol
        from ...objects.functionals import Form, Tr
        F = [sp.sympify(f) for f in system.residuals]
        invs = {a for f in F for a in sp.preorder_traversal(f)
                if isinstance(a, Inverse) or (isinstance(a, MatPow) and a.args[1] == -1)}
        if len(invs) != 1 or any(f.atoms(Form) for f in F):
            return None
        (inv,) = invs
        A = inv.args[0]

        def linear(X):
            """``X`` as ``(a₀, [(b_l, Σ_l)])`` (``X = a₀ I + Σ_l b_l Σ_l``) or ``None``."""
            a0, terms = sp.S.Zero, []
            for t in (X.args if isinstance(X, MatAdd) else (X,)):
                if isinstance(t, MatMul):
                    c, mats = t.as_coeff_matrices()
                elif isinstance(t, (Identity, MatrixSymbol)):
                    c, mats = sp.S.One, [t]
                else:
                    return None
                if len(mats) != 1:
                    return None
                (m,) = mats
                if isinstance(m, Identity):
                    a0 += c
                elif isinstance(m, MatrixSymbol) and not getattr(m, "is_random", False):
                    terms.append((c, m))
                else:
                    return None
            return a0, terms

        lin = linear(A)
        if lin is None:
            return None
        a0, terms = lin
        mats = [S for _, S in terms]
        if len(set(mats)) != len(mats) or any(b.has(*[S for S in mats]) for b, _ in terms):
            return None
        tsyms = [sp.Dummy(f"t_{S.name}") for S in mats]
        t0 = sp.Dummy("t_I")
        reps = {}
        for f in F:
            for tr in f.atoms(Tr):
                arg = tr.arg
                if arg == inv:
                    c, X = sp.S.One, None
                elif isinstance(arg, MatMul):
                    c, ms = arg.as_coeff_matrices()
                    if ms[-1] == inv:
                        rest = ms[:-1]
                    elif ms[0] == inv:
                        rest = ms[1:]               # Tr[R X] = Tr[X R]
                    else:
                        return None
                    if inv in rest:
                        return None
                    X = None if not rest else (rest[0] if len(rest) == 1 else None)
                    if len(rest) > 1:
                        return None
                else:
                    return None
                if X is None:
                    reps[tr] = c * t0
                    continue
                lx = linear(X)
                if lx is None:
                    return None
                xa0, xterms = lx
                val = xa0 * t0
                for b, S in xterms:
                    if S not in mats:
                        return None
                    val += b * tsyms[mats.index(S)]
                reps[tr] = c * val
        G = [f.xreplace(reps) for f in F]
        if any(isinstance(a, MatrixExpr) for g in G for a in sp.preorder_traversal(g)):
            return None
        return cls(system.backend, system.unknowns, system._zsym, F, inv, a0, terms, reps, tsyms, t0)

    def usable(self, env, bound):
        """Whether the bindings are plain float matrices (diag or full) and every parameter is in ``env``."""
        for name in self.names:
            kind, arr = bound.mats.get(name, (None, None))
            arr = np.asarray(arr) if arr is not None else None
            if kind not in ("diag", "full") or arr is None or arr.dtype.kind != "f" \
                    or arr.ndim != (1 if kind == "diag" else 2):
                return False
        return all(s.name in env for s in self.params)

    def __call__(self, env, bound, idx, deltas, kappa, z):
        """``(F, J)`` at points ``idx`` (shapes ``(m, k)``, ``(m, k, k)``)."""
        m, k = len(idx), len(self.unknowns)
        u = [np.broadcast_to(np.asarray(v, dtype=float), (m,)) for v in list(deltas) + [kappa]]
        par = []
        for s in self.params:
            v = env[s.name]
            par.append(np.asarray(v)[idx] if isinstance(v, np.ndarray) and v.ndim == 1 else v)
        cf = [np.broadcast_to(np.asarray(c, dtype=float), (m,)) for c in self.fn_A(*u, *par)]
        L = self.L
        a0, b = cf[0], np.stack(cf[1:L + 1], axis=0) if L else np.zeros((0, m))
        da0 = np.stack(cf[L + 1:L + 1 + k], axis=-1)                                  # (m, k)
        db = np.stack(cf[L + 1 + k:], axis=-1).reshape(m, L, k) if L else np.zeros((m, 0, k))
        t, t0, U, T, tRR = self._traces(bound, a0, b)
        out = self.fn_F(*u, *[t[:, l] for l in range(L)], t0, np.asarray(z)[idx], *par)
        out = [np.broadcast_to(np.asarray(o, dtype=float), (m,)) for o in out]
        n = self.n
        Fv = np.stack(out[:n], axis=-1)
        Jx = np.stack(out[n:n + n * k], axis=-1).reshape(m, n, k)
        dG = np.stack(out[n + n * k:], axis=-1).reshape(m, n, L + 1)                # ∂F_i/∂(t_1…t_L, t₀)
        dt = -da0[:, None, :] * U[:, :, None] - np.einsum("mkl,mlj->mkj", T, db)    # ∂t_k/∂u_j
        dt0 = -da0 * tRR[:, None] - np.einsum("ml,mlj->mj", U, db)                  # ∂t₀/∂u_j
        J = Jx + np.einsum("mik,mkj->mij", dG[:, :, :L], dt) + dG[:, :, L:] * dt0[:, None, :]
        return Fv, J

    def _traces(self, bound, a0, b):
        """``t_l = Tr[Σ_l R]``, ``Tr R``, ``U_l = Tr[Σ_l R²]``, ``T_kl = Tr[Σ_k R Σ_l R]``, ``Tr[R²]``."""
        mats = [bound.mats[name] for name in self.names]
        m, L = len(a0), len(mats)
        if all(kind == "diag" for kind, _ in mats):
            S = np.stack([np.asarray(arr, dtype=float) for _, arr in mats]) if L else None
            a = a0[:, None] + (np.einsum("lm,ld->md", b, S) if L else 0.0)
            r = 1.0 / a
            r2 = r * r
            t = r @ S.T if L else np.zeros((m, 0))
            U = r2 @ S.T if L else np.zeros((m, 0))
            T = np.einsum("md,kd,ld->mkl", r2, S, S) if L else np.zeros((m, 0, 0))
            return t, r.sum(1), U, T, r2.sum(1)
        d = next(len(arr) for _, arr in mats)
        full_n = sum(kind == "full" for kind, _ in mats)
        step = max(1, _CHUNK_ELEMENTS // ((full_n + L + 2) * d * d))
        t, t0, U, T, tRR = (np.empty((m, L)), np.empty(m), np.empty((m, L)), np.empty((m, L, L)), np.empty(m))
        diag_idx = np.arange(d)
        for lo in range(0, m, step):
            sl = slice(lo, min(m, lo + step))
            q = sl.stop - sl.start
            A = np.zeros((q, d, d))
            A[:, diag_idx, diag_idx] = a0[sl, None]
            for l, (kind, arr) in enumerate(mats):
                if kind == "diag":
                    A[:, diag_idx, diag_idx] += b[l, sl, None] * arr
                else:
                    A += b[l, sl, None, None] * arr
            # LU (numpy's BLAS): a Cholesky inverse (scipy potrf/potri, d³ flops against 2d³) was
            # 2.6× faster on one thread but goes through scipy's own BLAS, whose threads a
            # caller's single-thread setting may miss (50× slower under load, measured)
            R = np.linalg.inv(A)
            del A
            P = [(arr[:, None] * R) if kind == "diag" else np.matmul(arr, R) for kind, arr in mats]
            for l in range(L):
                t[sl, l] = np.trace(P[l], axis1=1, axis2=2)
                U[sl, l] = np.einsum("mab,mba->m", P[l], R)
                for j in range(l, L):
                    T[sl, l, j] = T[sl, j, l] = np.einsum("mab,mba->m", P[l], P[j])
            t0[sl] = np.trace(R, axis1=1, axis2=2)
            tRR[sl] = np.einsum("mab,mba->m", R, R)
        return t, t0, U, T, tRR
