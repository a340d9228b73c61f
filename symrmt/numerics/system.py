"""One group of unknowns, prepared for the solvers (symbolic work done once).

For a group with unknowns ``u`` and equations ``lhs_i = rhs_i`` the residuals
are ``F_i = lhs_i − rhs_i`` with the group's spectral parameter ``z``
replaced by a placeholder (so that the solvers can move ``z`` off the real
axis, or along a continuation path), and the Jacobian ``J_ij = ∂F_i/∂u_j``
is differentiated by SymPy (``Tr``/``Form`` differentiate through symrmt's
matrix derivative). Everything is lowered to contractions and lambdified
into :class:`~.kernels.Stage` objects.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ..objects.functionals import Tr
from ..objects.matrices import Covariance
from .kernels import Stage


def _scatter_to(n, idx, v):
    out = np.zeros(n)
    out[idx] = v
    return out


class GroupSystem:
    def __init__(self, group, index, lowering, backend):
        self.group = group
        self.backend = backend
        self.kind = group.kind
        self.unknowns = tuple(group.unknowns)
        if self.kind == "general":
            self._init_general(group, index, lowering, backend)
            return
        if self.kind not in ("wishart", "separable"):
            raise NotImplementedError(f"numerics: unknown group kind {self.kind!r}")
        if self.kind == "wishart" and len(self.unknowns) != 1:
            raise ValueError(f"a 'wishart' group has one unknown, got {self.unknowns}")
        if self.kind == "separable":
            if len(self.unknowns) != 2:
                raise ValueError(f"a 'separable' group has two unknowns (κ, ν), got {self.unknowns}")
            if not isinstance(group.K, Covariance) or group.m is None:
                raise NotImplementedError("numerics: a 'separable' group needs K as an sr.Covariance and m")
        z = sp.sympify(group.z)
        zsym = sp.Symbol(f"__z{index}")
        self.zname, self.zlabel, self.z = zsym.name, sp.sstr(z), z
        F = [(e.lhs.subs(z, zsym) - e.rhs.subs(z, zsym)) for e in group.equations]
        if not any(zsym in f.free_symbols for f in F) and z.free_symbols:
            raise ValueError(f"the equations of the group {self.unknowns} do not contain its "
                             f"spectral parameter z = {z} literally")
        if len(F) != len(self.unknowns):
            raise ValueError(f"group {self.unknowns}: {len(F)} equations for {len(self.unknowns)} unknowns")
        self.residuals = F
        J = [sp.diff(f, u) for f in F for u in self.unknowns]
        Sigma = group.Sigma
        df = group.df()
        self.sizes_exprs = [sp.sympify(m) for m in group.sizes]
        low = lowering.lower_expr
        cons = lowering.contractions

        def stage(exprs):
            lowered = [low(sp.sympify(e)) for e in exprs]
            return Stage(backend, lowered, cons)

        self.newton = stage(F + J + [df])
        self.df_only = stage([df])
        self.zstage = stage([z])
        self.sigma = Sigma if isinstance(Sigma, Covariance) else None
        self.stable = None
        if self.kind == "wishart":
            self.setup = stage([Tr(Sigma), *self.sizes_exprs])
            self.stable = self._stable_stage(F[0], df, zsym, stage)
            self.complex_names = [self.unknowns[0].name]
            self.complex_newton = self.newton
        else:
            K, nu = group.K, self.unknowns[1]
            n_id = sp.Identity(K.shape[0])
            dfK = Tr(K * (K + nu * n_id).inverse())
            self.inner = stage([dfK, sp.diff(dfK, nu)])
            self._setup = stage([Tr(Sigma), group.m, Tr(K), *self.sizes_exprs])
            self.setup = self._separable_setup
            # Complex z: Newton in (κ, u = 1/ν) on the kind's canonical equations
            #   Tr[uK(uK+1)⁻¹] = df(κ),   κ Π_j(1 − df/m_j) · Tr[K(uK+1)⁻¹] = m z,
            # smooth where df(κ) crosses 0 (ν → ∞) inside gaps of a spiky spectrum,
            # where the (κ, ν) form has a pole and Newton stalls.
            u = sp.Symbol(f"__u{index}")
            k = self.unknowns[0]
            prod = sp.Mul(*[(1 - df / m) for m in self.sizes_exprs])
            E = [Tr(u * K * (u * K + n_id).inverse()) - df,
                 k * prod * Tr(K * (u * K + n_id).inverse()) - group.m * zsym]
            self.complex_names = [k.name, u.name]
            self.complex_newton = stage(E + [sp.diff(e, v) for e in E for v in (k, u)])
        self._inverse_z = None
        if len(z.free_symbols) == 1:
            (s,) = z.free_symbols
            w, free = sp.Symbol("__w"), sp.Dummy(s.name)   # drop s's sign assumptions
            sol = sp.solve(sp.Eq(w, z.xreplace({s: free})), free)
            if len(sol) == 1:
                self._inverse_z = (s.name, backend.lambdify([w], [sol[0]]))

    def _stable_stage(self, F, df, zsym, stage):
        """For the real-ridge Newton of a ``wishart`` group: a stage giving
        ``t = Tr[(Σ+κ)⁻¹]``, ``t₂ = Tr[(Σ+κ)⁻²]`` and ``d``, used through the exact identity
        ``df(κ) = Tr[Σ(Σ+κ)⁻¹] = d − κ t`` (every eigenvalue, zeros included), so that
        ``1 − df/m = ((m − d) + κ t)/m`` has no cancellation at ``m = d`` as ``κ → 0``.
        Used only if the derived residual is, identically in ``df``, the kind's canonical
        ``κ Π_j(1 − df/m_j) − z`` (checked symbolically here); otherwise ``None``."""
        k = self.unknowns[0]
        D = sp.Dummy("df")
        canon = k * sp.Mul(*[(1 - D / m) for m in self.sizes_exprs]) - zsym
        try:
            ok = sp.cancel(sp.together(F.xreplace({df: D}) - canon)) == 0
        except Exception:   # pragma: no cover - a form SymPy cannot cancel: keep the derived residual
            ok = False
        if not ok:
            return None
        Sigma = self.group.Sigma
        d = Sigma.shape[0]
        R = (Sigma + k * sp.Identity(d)).inverse()
        return stage([Tr(R), Tr(R * R), sp.sympify(d)])

    # ------------------------------------------------------------ general law
    def _init_general(self, group, index, lowering, backend):
        """The general one-point law (docs/math.md): unknowns ``δ_j``, residuals
        ``F_j = δ_j − c_j Tr[Σ_j R(δ)]/n_j`` with ``R = (Σ_j c_jρ_jΣ_j + B + z)⁻¹``,
        lowered like any functional (dense inverses where matrices do not
        commute), and their SymPy Jacobian."""
        z = sp.sympify(group.z)
        zsym = sp.Symbol(f"__z{index}")
        self.zname, self.zlabel, self.z = zsym.name, sp.sstr(z), z
        F = [(e.lhs.subs(z, zsym) - e.rhs.subs(z, zsym)) for e in group.equations]
        if len(F) != len(self.unknowns):
            raise ValueError(f"group {self.unknowns}: {len(F)} equations for {len(self.unknowns)} unknowns")
        self.residuals = F
        J = [sp.diff(f, u) for f in F for u in self.unknowns]
        low = lowering.lower_expr
        cons = lowering.contractions

        def stage(exprs):
            return Stage(backend, [low(sp.sympify(e)) for e in exprs], cons)

        self.newton = stage(F + J)
        self.zstage = stage([z])
        self.shift = group.sizes[0] if group.sizes else None
        self._shift_eval = None
        if self.shift is not None:
            from .kernels import _DenseEval
            self._shift_eval = _DenseEval(backend, self.shift)
        self._inverse_z = None
        if len(z.free_symbols) == 1:
            (s,) = z.free_symbols
            w, free = sp.Symbol("__w"), sp.Dummy(s.name)
            sol = sp.solve(sp.Eq(w, z.xreplace({s: free})), free)
            if len(sol) == 1:
                self._inverse_z = (s.name, backend.lambdify([w], [sol[0]]))

    def check_shift(self, env, bound):
        """The shift ``B`` must be symmetric positive semi-definite (the law's
        physical branch); raises a ``BindingError`` naming it otherwise."""
        from .result import BindingError
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

    def solve_general(self, env, bound, z, opts):
        """Real ``z ≥ 0``: Newton on ``F(δ) = 0`` with the SymPy Jacobian,
        safeguarded by the fixed-point map ``δ ↦ δ − F(δ)``
        (``= c_j Tr[Σ_j R]/n_j``), which is increasing in ``δ`` and from
        ``δ = 0`` rises monotonically to the physical root; a Newton step is
        kept where it stays non-negative and reduces ``|F|``."""
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
            done = fnorm <= xtol * (1 + sum(np.abs(v) for v in xa))
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
                if k == 1:
                    step = [F[0] / J[0]]
                else:
                    Jm = np.stack(J, axis=-1).reshape(-1, k, k)
                    Fm = np.stack(F, axis=-1)[..., None]
                    try:
                        step = list(np.moveaxis(np.linalg.solve(Jm, Fm)[..., 0], -1, 0))
                    except np.linalg.LinAlgError:
                        step = [np.full(len(act), np.nan) for _ in range(k)]
                xn = [a - s_ for a, s_ in zip(xa, step)]
                fp = [a - f for a, f in zip(xa, F)]
            good = np.all([np.isfinite(v) & (v >= 0) for v in xn], axis=0)
            cand = [np.where(good, v, f) for v, f in zip(xn, fp)]
            Fn_, Jn = ev([_scatter_to(n, act, c) for c in cand], act)
            fn_norm = sum(np.abs(f) for f in Fn_)
            worse = good & ~(fn_norm < fnorm)
            if worse.any():
                cand = [np.where(worse, f, c) for c, f in zip(cand, fp)]
                sub = np.nonzero(worse)[0]
                F2, J2 = ev([_scatter_to(n, act[sub], c[sub]) for c in cand], act[sub])
                for i_ in range(k):
                    Fn_[i_] = Fn_[i_].copy()
                    Fn_[i_][sub] = F2[i_]
                for i_ in range(k * k):
                    Jn[i_] = Jn[i_].copy()
                    Jn[i_][sub] = J2[i_]
            for i_ in range(k):
                x[i_][act] = cand[i_]
            nit[act] += 1
            F, J = Fn_, Jn
        return {nm: v for nm, v in zip(names, x)}, nit, conv

    # ------------------------------------------------------------ numbers
    def _separable_setup(self, env, bound):
        trS, m, trK, *ms = self._setup(env, bound)
        kind, arr = bound.mats[self.group.K.name]
        if kind != "diag":
            raise NotImplementedError("numerics: K must be diagonalisable in the common basis")
        rank = int(np.count_nonzero(arr > 0))
        return [trS, m, trK, self.backend.const(float(rank)), *ms]

    def scale(self, env, bound):
        if self.kind == "general":
            raise NotImplementedError("numerics: complex spectral parameters for the general law "
                                      "(pooled blocks, deterministic shifts) are not implemented")
        return self._scale(env, bound)

    def _scale(self, env, bound):
        """Spectral scale of ``Σ̂``: ``max eig Σ · Π_j (1 + √(d/m_j))²`` (× ``max eig K``)."""
        be = self.backend
        setup = self.setup(env, bound)
        if self.sigma is not None and bound.mats.get(self.sigma.name, ("",))[0] == "diag":
            smax = bound.mats[self.sigma.name][1].max()
        else:
            smax = setup[0]          # Tr Σ ≥ its largest eigenvalue
        d = bound.sizes.get(self.group.Sigma.shape[0]) or 1
        ms = setup[1:] if self.kind == "wishart" else setup[4:]
        s = smax
        for m in ms:
            s = s * (1 + (be.const(float(d)) / m) ** 0.5) ** 2
        if self.kind == "separable":
            m = setup[1]
            kmax = bound.mats[self.group.K.name][1].max()
            s = s * kmax * (1 + (be.const(float(d)) / m) ** 0.5) ** 2
        return s

    def complex_unknowns(self, U):
        """The group's unknowns from the complex Newton variables."""
        return list(U) if self.kind == "wishart" else [U[0], 1 / U[1]]

    def initial_guess(self, env, bound, z0):
        """Start of the complex Newton at large ``|z|``: ``κ ≈ z + Tr Σ Σ_j 1/m_j``
        (and ``u = 1/ν ≈ df(κ)/Tr K``)."""
        setup = self.setup(env, bound)
        n = len(z0)
        if self.kind == "wishart":
            trS, *ms = [np.broadcast_to(np.asarray(v), (n,)) for v in setup]
            return [z0 + trS * sum((1 / m for m in ms), 0 * z0)]
        trS, m, trK, _, *ms = [np.broadcast_to(np.asarray(v), (n,)) for v in setup]
        k0 = z0 * m / trK + trS / m + trS * sum((1 / mj for mj in ms), 0 * z0)
        e = dict(env)
        e[self.unknowns[0].name] = k0
        df = np.broadcast_to(np.asarray(self.df_only(e, bound)[0]), (n,))
        return [k0, df / trK]

    def z_values(self, env, bound, n):
        return np.broadcast_to(np.asarray(self.zstage(env, bound)[0]), (n,)).copy()

    def binding_for_z(self, z_used):
        """``(name, values)`` of the binding giving spectral parameter ``z_used``, if invertible."""
        if self._inverse_z is None:
            return None
        name, fn = self._inverse_z
        return name, fn(z_used)[0]
