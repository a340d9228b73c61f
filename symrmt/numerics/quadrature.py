"""Quadrature of ``sympy.Integral`` nodes of a value (spectral functions).

``∫_a^b f(t) dt`` is computed with double-exponential rules, which converge
quickly even with the algebraic endpoint singularities of Stieltjes/Cauchy
representations (``t^{−s}`` at ``0``, ``1/√`` at a branch point):

* finite ``[a, b]``: tanh-sinh, ``t = a + (b−a)·(1 + tanh(π/2 sinh x))/2``;
* ``[a, ∞)``: exp-sinh, ``t = a + exp(π/2 sinh x)``;
* ``(−∞, ∞)``: sinh-sinh, ``t = sinh(π/2 sinh x)``;

on ``x = k h``, ``|x| ≤ X`` (see :func:`nodes`). A finite interval over
which the integrand — and every spectral parameter inside it — is periodic
(a closed contour ``z(θ)``, ``θ ∈ [0, 2π]``) uses the midpoint rule
instead, which converges exponentially there.

The step is halved from ``h = 1/4`` (the double-exponential rules are
nested: each level adds the odd multiples of the new ``h``; the midpoint
rule doubles from 16 points) until two levels agree to ``rtol`` at every
grid point. The error roughly squares at each level, so the last difference
(``SolveResult.quad_error``) overestimates the error of the result; a point
whose last two levels differ by more than ``√rtol`` is reported as not
converged. The limits may depend on bindings (grid values). All nodes of a
level, at all grid points, are solved *at once*: the grid is extended to
``points × nodes`` and the groups whose spectral parameter depends on ``t``
are solved there in one vectorised call.
"""
from __future__ import annotations

import itertools
import random

import mpmath
import numpy as np
import sympy as sp

from .kernels import Stage

_ids = itertools.count()
H0 = mpmath.mpf(1) / 4
#: Extended points ``grid point × node`` evaluated at once by one integral
#: level (each holds O(1) scalars: spectral sums are blocked in ``kernels``);
#: an integral with another nested inside takes at most ``POINTS_NESTED``, so
#: the inner one, chunked again, stays within ``POINTS``.
POINTS = 2 ** 15
POINTS_NESTED = 2 ** 8


def find_integrals(expr):
    """Replace the outermost ``Integral`` nodes by placeholders."""
    found = []

    def rec(e):
        if isinstance(e, sp.Integral):
            if any(len(lim) != 3 for lim in e.limits):
                raise NotImplementedError(f"numerics: an integral needs explicit limits, got {e}")
            sym = sp.Symbol(f"__i{next(_ids)}")
            found.append((sym, e))
            return sym
        if not e.args or not isinstance(e, sp.Expr):
            return e
        new = [rec(a) if isinstance(a, sp.Expr) else a for a in e.args]
        return e.func(*new) if any(n is not o for n, o in zip(new, e.args)) else e

    return rec(expr), found


def nodes(kind, h, digits, odd):
    """Points ``u = φ(kh)``, weights ``h φ'(kh)`` and, for ``finite``, ``1 − u``
    (accurate near 1), as mpmath lists; ``odd`` keeps odd ``k`` only.

    ``finite`` is on (0, 1), ``half`` on (0, ∞), ``full`` on ℝ. The range
    ``|x| ≤ X`` reaches ``10^(−2·digits)`` from a finite endpoint and
    ``10^(2·digits)`` at infinity, so that ``t^(−1/2)`` endpoint singularities
    and ``t^(−3/2)`` tails are captured to the working precision.
    """
    with mpmath.workdps(digits + 10):
        pi2 = mpmath.pi / 2
        span = 2 * digits * mpmath.log(10)
        X = mpmath.asinh(span / mpmath.pi) if kind == "finite" else mpmath.asinh(span / pi2)
        K = int(mpmath.ceil(X / h))
        us, ws, ums = [], [], []
        for k in range(-K, K + 1):
            if odd and k % 2 == 0:
                continue
            x = k * h
            sh, ch = mpmath.sinh(x), mpmath.cosh(x)
            if kind == "finite":
                e = mpmath.exp(-2 * pi2 * sh)
                u, um = 1 / (1 + e), e / (1 + e)
                w = h * pi2 * ch / (2 * mpmath.cosh(pi2 * sh) ** 2)
            elif kind == "half":
                u, um = mpmath.exp(pi2 * sh), None
                w = h * pi2 * ch * u
            else:
                u, um = mpmath.sinh(pi2 * sh), None
                w = h * pi2 * ch * mpmath.cosh(pi2 * sh)
            us.append(u)
            ws.append(w)
            ums.append(um)
        return us, ws, ums


def periodic_nodes(level, n0=16):
    """Midpoint rule for a periodic integrand on (0, 1): ``n0·2^level`` points
    ``(k + 1/2)/N``. Exponentially accurate, at a rate set by the distance of
    the nearest singularity (a contour ``z(θ)`` to the spectrum); the half
    step keeps the nodes off the real axis where a contour crosses it. Not
    nested: each level is a full rule."""
    N = n0 * 2 ** level
    us = [(mpmath.mpf(k) + mpmath.mpf(1) / 2) / N for k in range(N)]
    return us, [mpmath.mpf(1) / N] * N, [1 - u for u in us]


def _periodic(e, t, period):
    """Whether ``e`` is structurally ``period``-periodic in ``t`` (``exp(i t)``, ``cos t`` …)."""
    if t not in e.free_symbols:
        return True
    # exp(i(θ + 2π)) reduces to exp(iθ) once its argument is expanded
    shifted = e.subs(t, t + period).replace(sp.exp, lambda a: sp.exp(sp.expand(a)))
    if shifted == e:
        return True
    if e.has(sp.Integral):
        return False
    # spectral functionals are opaque to SymPy (simplify can hang inside them): freeze them
    from ..objects.functionals import Form, Norm, Tr
    diff = shifted - e
    atoms = sorted(diff.atoms(Tr, Form, Norm), key=sp.default_sort_key)
    frozen = dict(zip(atoms, sp.symbols(f"_f0:{len(atoms)}")))
    diff, e = diff.xreplace(frozen), e.xreplace(frozen)
    # Decide numerically first: simplify takes tens of seconds on integrands
    # with products of forms. At random values of every symbol (30 digits) a
    # non-identity leaves a residual of order one; an identity leaves ~1e-30.
    rng = random.Random(20240611)
    symbols = sorted(diff.free_symbols | e.free_symbols, key=sp.default_sort_key)
    for _ in range(3):
        at = {x: sp.Float(rng.uniform(0.3, 1.7), 30) for x in symbols}
        try:
            r = complex(diff.xreplace(at).evalf(30))
            ref = complex(e.xreplace(at).evalf(30))
        except (TypeError, ValueError, ZeroDivisionError):
            break  # not evaluable at a point: let simplify decide
        if not (np.isfinite(r) and np.isfinite(ref)):
            break
        if abs(r) > 1e-20 * (1.0 + abs(ref)):
            return False
    else:
        return True
    try:
        return sp.simplify(diff) == 0
    except Exception:  # simplify is best effort; not proven periodic means tanh-sinh
        return False


class IntegralNode:
    """``∫ body dt`` with the groups that depend on ``t`` solved at its nodes."""

    def __init__(self, integral, symbol, plan, outer_vars):
        from .plan import ValueNode
        self.symbol = symbol
        # ∫∫ f ds dt: the last limit is the outermost; the rest stays an integral inside
        *inner, (t, a, b) = integral.limits
        body = sp.Integral(integral.function, *inner) if inner else integral.function
        self.var = t
        self.level = outer_vars | {t.name}
        self.plan = plan
        be = self.backend = plan.backend
        if a == -sp.oo and b == sp.oo:
            self.kind, limits = "full", []
        elif b == sp.oo:
            self.kind, limits = "half", [a]
        elif a == -sp.oo:
            raise NotImplementedError(f"numerics: substitute t → −t in {integral}: lower limit −∞")
        else:
            zs = [s.z for s in self._systems()]
            periodic = all(_periodic(e, t, b - a) for e in [body, *zs])
            self.kind, limits = ("periodic" if periodic else "finite"), [a, b]
        self.limits = Stage(be, limits, plan.lowering.contractions)
        self.digits = getattr(be, "dps", 16)
        # stop when two levels agree to rtol: the finer one is then far more accurate;
        # a point whose last two levels differ by more than √rtol is reported unconverged
        self.rtol = 10.0 ** -(self.digits * 5 // 8)
        self.max_level = 6 + int(np.ceil(np.log2(max(self.digits, 16) / 16)))
        self._levels = []
        self.body = ValueNode(body, plan, self.level)
        self.nested = body.has(sp.Integral)

    def _systems(self):
        """Groups solved at this integral's nodes: those whose spectral
        parameter depends on its variable (and on no variable of an integral
        further in). In ``∫∫ f(κ(s), κ(t)) ds dt`` the group of ``s`` is solved
        at the inner nodes, for every outer node."""
        return [s for s in self.plan.systems
                if self.var.name in self.plan.level_of(s) and self.plan.level_of(s) <= self.level]

    def _level(self, i):
        """Nodes added at level ``i`` (step ``H0/2^i``), converted for the backend."""
        while len(self._levels) <= i:
            j = len(self._levels)
            if self.kind == "periodic":
                u, w, um = periodic_nodes(j)
            else:
                u, w, um = nodes(self.kind, H0 / 2 ** j, self.digits, odd=j > 0)
            be = self.backend
            conv = (lambda v: be.const(v)) if be.name == "mpmath" else float
            arr = (lambda xs: np.array([conv(v) for v in xs], dtype=object if be.name == "mpmath" else float))
            self._levels.append((arr(u), arr(w), arr(um) if self.kind in ("finite", "periodic") else None))
        return self._levels[i]

    def evaluate(self, env, bound, n, opts, diagnostics):
        """``(values, converged)`` at the ``n`` points of ``env``."""
        from .solvers import full
        lims = [full(v, n) for v in self.limits(env, bound)]
        total, ok, prev, err = None, np.ones(n, dtype=bool), None, None
        rtol = opts.get("quad_rtol") or self.rtol
        for i in range(self.max_level + 1):
            part, good = self._sum(self._level(i), lims, env, bound, n, opts, diagnostics)
            ok &= good
            # halving h: the old sum counts with weight 1/2 (weights carry h)
            total = part if total is None or self.kind == "periodic" else total / 2 + part
            if prev is not None:
                err = np.asarray(abs(total - prev), dtype=float)
                scale = np.asarray(abs(total), dtype=float)
                if (err <= rtol * np.maximum(scale, 1e-300)).all():
                    break
            prev = total
        # relative, and never looser than a requested quad_rtol (the default rtol allows √rtol)
        ok &= err <= (rtol if opts.get("quad_rtol") else rtol ** 0.5) * np.maximum(scale, 1e-300)
        diagnostics.setdefault("quad_error", []).append(err)
        return total, ok

    def _sum(self, level, lims, env, bound, n, opts, diagnostics):
        """``Σ_q w_q f(t_q)`` at the ``n`` points, the nodes taken in chunks so
        that at most :data:`POINTS` (``POINTS_NESTED`` when an integral is
        nested inside: each of its points carries the inner nodes) extended
        points ``point × node`` are held at once: the memory of a level is
        bounded whatever the grid, the number of nodes and the nesting depth."""
        u, w, um = level
        q = len(u)
        budget = POINTS_NESTED if self.nested else POINTS
        step = max(1, min(q, budget // max(n, 1)))
        total, ok, errs = None, np.ones(n, dtype=bool), []
        for k in range(0, q, step):
            sl = slice(k, k + step)
            part, good, err = self._chunk((u[sl], w[sl], None if um is None else um[sl]), lims, env, bound,
                                          n, opts)
            total = part if total is None else total + part
            ok &= good
            errs = err if not errs else [a + b for a, b in zip(errs, err)]
        for e in errs:
            diagnostics.setdefault("quad_error", []).append(e)
        return total, ok

    def _chunk(self, level, lims, env, bound, n, opts):
        from .plan import solve_groups
        from .solvers import full
        u, w, um = level
        q = len(u)
        if self.kind in ("finite", "periodic"):
            a, b = lims
            L = (b - a)[:, None]
            t = np.where(u < 0.5, a[:, None] + L * u, b[:, None] - L * um)
            w = L * w
        elif self.kind == "half":
            t = lims[0][:, None] + u
        else:
            t = np.broadcast_to(u, (n, q))
        ext = {k: (np.repeat(v, q) if isinstance(v, np.ndarray) and v.ndim == 1 else v) for k, v in env.items()}
        ext[self.var.name] = np.ascontiguousarray(t).reshape(-1)
        diag = solve_groups(self._systems(), ext, bound, n * q, opts)
        inner = {}
        vals, ok = self.body.evaluate(ext, bound, n * q, opts, inner)
        # nested integrals: an inner error at a node enters the outer sum with
        # the node's weight, so its contribution to this point is Σ_q |w_q|·err_q
        aw = np.abs(np.asarray(np.broadcast_to(w, (n, q)), dtype=float))
        errs = [(np.asarray(full(e, n * q), dtype=float).reshape(n, q) * aw).sum(axis=1)
                for e in inner.get("quad_error", [])]
        for d in diag.values():
            ok = ok & d["converged"]
        vals = np.asarray(full(vals, n * q)).reshape(n, q) * w
        return vals.sum(axis=1), ok.reshape(n, q).all(axis=1), errs
