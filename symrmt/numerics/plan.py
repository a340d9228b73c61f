"""A compiled evaluation plan for one binding signature, and its execution.

The plan holds everything symbolic, done once: the lowered value, each
group's residuals and Jacobian (:class:`~.laws.LawSystem`, one class per law family), and the
quadrature of ``Integral`` nodes (:mod:`.quadrature`). Executing it is pure
array work: solve every group at every grid point (real branch or complex
continuation), then evaluate the value and the residuals in one pass.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .kernels import Stage
from .lower import Lowering
from .quadrature import IntegralNode, find_integrals
from .result import BindingError
from .solvers import full, solve_complex, solve_real, take
from .laws import system_for


class Plan:
    def __init__(self, de, backend, kinds):
        self.backend = backend
        self.lowering = Lowering(kinds)
        self.int_vars = frozenset(v.name for I in sp.preorder_traversal(de.value)
                                  if isinstance(I, sp.Integral) for v in I.variables)
        self.systems = [system_for(g, i, self.lowering, backend) for i, g in enumerate(de.groups)]
        self.top = [s for s in self.systems if not self.level_of(s)]
        self.value = ValueNode(de.value, self, frozenset(),
                               extra=[r for s in self.top for r in s.residuals])

    def level_of(self, system):
        """Integration variables the group's spectral parameter depends on."""
        return frozenset(v.name for v in system.z.free_symbols) & self.int_vars


class ValueNode:
    """An expression whose ``Integral`` nodes are placeholders evaluated by
    quadrature; ``extra`` expressions (residuals) are evaluated alongside."""

    def __init__(self, expr, plan, level, extra=()):
        self.plan = plan
        expr, found = find_integrals(sp.sympify(expr))
        self.integrals = [IntegralNode(I, sym, plan, level) for sym, I in found]
        low = plan.lowering.lower_expr
        self.stage = Stage(plan.backend, [low(expr)] + [low(e) for e in extra], plan.lowering.contractions)

    #: times the integrals are evaluated again, tighter, where the value-level
    #: error exceeds the tolerance (integrals cancelling in the value)
    VALUE_RETRIES = 3

    def evaluate(self, env, bound, n, opts, diagnostics, with_extra=False):
        """The value (and the ``extra`` expressions) at the ``n`` points, and where it converged.

        At the top level (``with_extra``) the integrals' errors are propagated
        to the value (:meth:`_value_error`); where that exceeds the tolerance
        — integrals each accurate to it but cancelling in the value — the
        integrals are evaluated again with their targets tightened by the
        missing factor (``opts["_quad_factor"]``; each restarts at the level
        where it stopped, and κ at nodes already solved is reused), at most
        :data:`VALUE_RETRIES` times. A point is reported converged only where
        the value-level error is within the tolerance."""
        if not (with_extra and self.integrals):
            return self._evaluate(env, bound, n, opts, diagnostics, with_extra)[:2]
        for attempt in range(self.VALUE_RETRIES + 1):
            diag = {}
            out, ok, ok_value, need = self._evaluate(env, bound, n, opts, diag, True)
            if ok_value.all() or need is None or attempt == self.VALUE_RETRIES:
                break
            opts = dict(opts, _quad_factor=opts.get("_quad_factor", 1.0) * need)
        for k, v in diag.items():
            if isinstance(v, list):
                diagnostics.setdefault(k, []).extend(v)
            else:
                diagnostics[k] = v
        return out, ok & ok_value

    def _evaluate(self, env, bound, n, opts, diagnostics, with_extra):
        """``(out, ok, ok_value, need)``: ``ok_value`` the value-level test
        (top level), ``need`` the factor to tighten the integrals' targets by
        where it fails (``None`` where tightening cannot help)."""
        ok = np.ones(n, dtype=bool)
        errs = []
        if self.integrals:
            env = dict(env)
            for node in self.integrals:
                own = {}
                v, good = node.evaluate(env, bound, n, opts, own)
                for k, e in own.items():
                    diagnostics.setdefault(k, []).extend(e)
                # the node's error: the largest of its estimate and those it carried from inside
                errs.append(np.max(np.stack([np.asarray(full(e, n), dtype=float)
                                             for e in own.get("quad_error", [np.zeros(n)])]), axis=0))
                env[node.symbol.name] = v
                ok &= good
        out = self.stage(env, bound)
        ok_value, need = np.ones(n, dtype=bool), None
        if with_extra and self.integrals:      # the top-level value: its own error, relative to it
            ok_value, need = self._value_error(env, bound, n, opts, diagnostics, out[0], errs)
        return (out if with_extra else out[0]), ok, ok_value, need

    def _value_error(self, env, bound, n, opts, diagnostics, value, errs):
        """Propagate the integrals' error estimates ``e_i`` to the value
        ``F(I_1, …)``: ``err = Σ_i |∂F/∂I_i| e_i`` (slopes by a step ``h_i``),
        stored as ``diagnostics["value_quad_error"]``; returns ``(converged,
        tightening factor or None)``. A point is converged only
        where ``err ≤ tol·|F|`` (``tol`` = ``quad_rtol``, else ``√rtol`` of
        the quadrature): integrals each accurate to ``tol`` but cancelling
        in ``F`` are not. ``err`` includes the integrals' rounding, ``64 ε Σ_i
        |∂F/∂I_i I_i|`` (quadrature cannot reduce it, the level differences do
        not show it). Where ``F`` is zero to rounding against its parts
        (``|F| ≤ 64 ε Σ_i |∂F/∂I_i I_i|``) no relative accuracy exists: the
        absolute error is reported, the point is converged only if
        ``err ≤ tol·Σ_i |∂F/∂I_i I_i|``, and ``diagnostics["value_near_zero"]``
        flags it."""
        from .solvers import full
        tol = opts.get("quad_rtol") or min(node.rtol for node in self.integrals) ** 0.5
        F = np.asarray(full(value, n))
        err, scale = np.zeros(n), np.zeros(n)
        achieved = np.zeros(n)      # the integrals' relative errors (their targets are ≥ these)
        for node, e in zip(self.integrals, errs):
            I = np.asarray(full(env[node.symbol.name], n))
            aI = np.asarray(abs(I), dtype=float)
            with np.errstate(all="ignore"):
                achieved = np.maximum(achieved, np.where(aI > 0, e / np.where(aI > 0, aI, 1), 0))
            h = np.maximum(e, 1e-7 * aI)
            h = np.where(h > 0, h, 1e-7)
            shifted = dict(env)
            shifted[node.symbol.name] = I + h
            slope = np.asarray(abs(np.asarray(full(self.stage(shifted, bound)[0], n)) - F), dtype=float) / h
            slope = np.where(np.isfinite(slope), slope, 0.0)
            err += slope * e
            scale += slope * aI
        aF = np.asarray(abs(F), dtype=float)
        eps = 2.0 ** -52 if F.dtype != object else 10.0 ** -getattr(self.plan.backend, "dps", 16)
        near_zero = aF <= 64 * eps * scale
        # the integrals' rounding (64 ε of each, through its slope): no quadrature level removes
        # it, and the differences of levels do not see it (two levels can round alike: a
        # difference of exactly zero); it bounds the value's accuracy where they cancel
        floor = 64 * eps * scale
        err = err + floor
        diagnostics["value_quad_error"] = err
        diagnostics["value_near_zero"] = near_zero
        allowed = np.where(near_zero, tol * scale, tol * aF)
        ok = err <= allowed
        need = None
        # tightening helps only where the tolerance is above the rounding floor
        bad = ~ok & (err > 0) & np.isfinite(err) & (allowed > 2 * floor)
        if bad.any() and self.plan.backend.name == "numpy":
            # tighten the integrals' targets to the missing factor times what they achieved
            # (at most their target), with a margin of 4
            target = (opts.get("quad_rtol") or min(node.rtol for node in self.integrals)) \
                * opts.get("_quad_factor", 1.0)
            ratio = np.min(allowed[bad] / err[bad]) * min(1.0, float(np.max(achieved[bad])) / target)
            need = float(np.clip(ratio / 4, 1e-6, 0.5))
        return ok, need


def solve_groups(systems, env, bound, n, opts):
    """Solve ``systems`` at the ``n`` points of ``env`` (updated in place).

    Returns ``{group label: dict(nit, converged, z, eta)}``.
    """
    diag = {}
    for s in systems:
        z = s.z_values(env, bound, n)
        first, inv = _distinct_points(s, env, z, n)
        if first is None:
            unknowns, nit, conv, z_used, eta = _solve_one(s, env, bound, z, n, opts)
        else:   # solve each distinct point once (an inner integral's nodes repeat per outer node)
            out = _solve_one(s, take(env, first), bound, z[first], len(first), opts)
            unknowns = {k: v[inv] for k, v in out[0].items()}
            nit, conv, z_used, eta = (v[inv] for v in out[1:])
        for name, v in unknowns.items():
            env[name] = v
        env[s.zname] = z_used
        if z_used is not z and (z_used != z).any():
            # the value is evaluated at the z actually used, through the binding it comes from;
            # a z built from several bindings (a contour z(θ)) keeps them: an O(η) inconsistency
            inv = s.binding_for_z(z_used)
            if inv is not None:
                env[inv[0]] = full(inv[1], n)
        diag[",".join(u.name for u in s.unknowns)] = dict(nit=nit, converged=conv, z=z_used, eta=eta)
    return diag


def _distinct_points(s, env, z, n):
    """``(first, inverse)`` indices of the distinct points of the group's
    inputs (``z`` and the grid values its equations use) when they repeat at
    least twice on average; ``(None, None)`` otherwise (or for mpmath)."""
    if n < 2 or z.dtype == object:
        return None, None
    if not hasattr(s, "_inputs"):
        exprs = [*s.group.equations, sp.sympify(s.group.z), *map(sp.sympify, s.group.sizes),
                 sp.sympify(s.group.m if s.group.m is not None else 0)]
        s._inputs = sorted({v.name for e in exprs for v in e.free_symbols} - {u.name for u in s.unknowns})
    cols = [z.real, z.imag] if np.iscomplexobj(z) else [z]
    for k in s._inputs:
        v = env.get(k)
        if isinstance(v, np.ndarray) and v.ndim == 1:
            if v.dtype == object:
                return None, None
            cols += [v.real, v.imag] if np.iscomplexobj(v) else [v]
    _, first, inv = np.unique(np.stack([np.asarray(c, dtype=float) for c in cols], axis=1), axis=0,
                              return_index=True, return_inverse=True)
    if 2 * len(first) > n:
        return None, None
    return first, inv.reshape(-1)


def _solve_one(s, env, bound, z, n, opts):
    be = s.backend
    if be.is_complex(z):
        im, re = np.asarray(be.imag(z)), np.asarray(be.real(z))
        real_pts = (im == 0) & (re > 0)
    else:
        bad = z < 0
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise BindingError(
                f"binding {s.zlabel!r}: the real branch needs {s.zlabel} > 0, got {z[i]} at grid index {i}; "
                f"for a spectral parameter z = x + iη bind a complex value (λ = −z)")
        real_pts = np.ones(n, dtype=bool)
    cplx = not real_pts.all()
    unknowns = {u.name: None for u in s.unknowns}
    nit = np.zeros(n, dtype=int)
    conv = np.zeros(n, dtype=bool)
    z_used = z
    eta = np.zeros(n)
    if real_pts.any():
        idx = np.nonzero(real_pts)[0]
        zr = be.real(z[idx]) if cplx or be.is_complex(z) else z[idx]
        zr = np.asarray(zr) if zr.dtype != object else zr
        u, it, ok = solve_real(s, take(env, idx), bound, zr, opts)
        _scatter(unknowns, u, idx, n, cplx or be.is_complex(z), be)
        nit[idx], conv[idx] = it, ok
    if cplx:
        idx = np.nonzero(~real_pts)[0]
        ec = take(env, idx)
        scale = full(s.scale(ec, bound), len(idx))
        floor = opts["eta"] * np.asarray(scale, dtype=float)
        zc = z[idx]
        im = np.asarray(be.imag(zc), dtype=float)
        need = np.abs(im) < floor
        if need.any():
            # λ = −z: z = x + iη with η > 0 means Im λ < 0; a real λ < 0 gets Im λ = −η
            sign = np.where(im > 0, 1.0, -1.0)
            zc = zc.copy()
            zc[need] = be.real(zc[need]) + be.const(1j) * be.const(1.0) * (sign * floor)[need]
            z_used = z.copy()
            z_used[idx] = zc
        u, it, ok = solve_complex(s, ec, bound, zc, floor, opts)
        _scatter(unknowns, u, idx, n, True, be)
        nit[idx], conv[idx] = it, ok
        eta[idx] = -np.asarray(be.imag(zc), dtype=float)
    return unknowns, nit, conv, z_used, eta


def _scatter(unknowns, u, idx, n, complex_, be):
    for name, v in u.items():
        if unknowns[name] is None:
            if v.dtype == object:
                arr = np.empty(n, dtype=object)
                arr[...] = be.const(complex("nan")) if complex_ else be.const(float("nan"))
            else:
                arr = np.full(n, np.nan, dtype=complex if complex_ else float)
            unknowns[name] = arr
        unknowns[name][idx] = v
