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

In double precision a finite interval is first tried with Gauss–Legendre
(``12·2^i`` points, error ``O(ρ^{−2N})`` for an integrand analytic in the
Bernstein ellipse ``E_ρ``: the θ-integrands of the Stieltjes/ratio
representations are, and need 3–5× fewer nodes than tanh-sinh); it is
abandoned for tanh-sinh when doubling its points stops squaring the error
(an endpoint singularity) or after ``GAUSS_LEVELS`` levels.

The step is halved from ``h = 1/4`` (the double-exponential rules are
nested: each level adds the odd multiples of the new ``h``; the midpoint
rule doubles from 16 points) until two levels agree to ``rtol`` at every
grid point. The error roughly squares at each level, so the last difference
(``SolveResult.quad_error``) overestimates the error of the result; a point
whose last two levels differ by more than ``√rtol`` is reported as not
converged. The limits may depend on bindings (grid values). All nodes of a
level, at all grid points, are solved *at once*: the grid is extended to
``points × nodes`` and the groups whose spectral parameter depends on ``t``
are solved there in one vectorised call; a group whose equations repeat in
another integral at the same nodes (the same ``κ(θ)`` under each of the
integrals of a variance) is solved once per evaluation.

Spectral sums in an integrand see the ``(point, node)`` structure
(``kernels.TENSOR``): ``Σ_k A(s_k; outer) B(s_k; node)`` is one matrix product
over the nodes (``kernels._TensorSum``). An integral nested in another
stops at ``rtol/16``, and its error, times ``|∂f/∂I|`` of the outer integrand
``f`` (symbolic) and the outer weights, is added to the outer one's estimate.
"""
from __future__ import annotations

import itertools
import random

import mpmath
import numpy as np
import sympy as sp

from .kernels import TENSOR, Stage

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


#: Gauss–Legendre levels: ``GAUSS_N0·2^i`` points, ``i < GAUSS_LEVELS``
GAUSS_N0, GAUSS_LEVELS = 12, 5
#: rules tried in turn on a finite interval in double precision (``"finite"``: tanh-sinh)
FINITE_RULES = ("gauss", "finite")
#: an integral nested in another stops at ``rtol/INNER_TIGHTER`` (the outer one at ``rtol``)
INNER_TIGHTER = 16
#: Gauss–Legendre is abandoned once doubling its points reduces the
#: difference of levels by less than this (algebraic convergence)
GAUSS_GIVE_UP = 0.3


def gauss_nodes(N):
    """``N``-point Gauss–Legendre rule on (0, 1): points ``u``, weights, ``1 − u``
    (computed from the symmetric node, accurate near 1). Exact for
    polynomials of degree ``2N − 1``; for ``f`` analytic inside the Bernstein
    ellipse ``E_ρ`` of the interval the error is ``O(ρ^{−2N})``."""
    x, w = np.polynomial.legendre.leggauss(int(N))
    return (1 + x) / 2, w / 2, (1 - x) / 2


def error_estimate(diffs, scale):
    """Error estimate of the latest level: the difference ``e_k`` of the last
    two levels (arrays over the points; ``scale = |I|``).

    Where the rule converges the latest level is far more accurate than the
    one before (Gauss–Legendre doubling its points, tanh-sinh halving its
    step, roughly square the error), so ``e_k`` over-estimates its error. It
    is *not* extrapolated (``e_k²/e_{k−1}``, a geometric tail): on the
    sampling map's θ-integrands (a near-singularity at ``θ ≈ i√(σ²/σ_T²)``)
    Gauss–Legendre's pre-asymptotic error oscillates, G₂₄ and G₄₈ agreed to
    2e-8 after G₁₂ differed by 4e-4, and the extrapolated 1e-12 hid a true
    error of 3.4e-8 (tests/test_quad_rules.py::test_split_disagreement_of_two_copies_matches_adaptive_rule).
    """
    return diffs[-1].copy()


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


def _group_key(s, ext, bound, N):
    """A key identifying the solution of group ``s`` at the points of ``ext``:
    its equations with the unknowns and ``z`` renamed canonically, the values
    of every other symbol they use, and ``z`` (``None`` if ``z`` is not real);
    and ``z``."""
    canon = getattr(s, "_quad_canon", None)
    if canon is None:
        rep = {u: sp.Symbol(f"__u{i}") for i, u in enumerate(s.unknowns)}
        rep[s._zsym] = sp.Symbol("__zc")
        res = [sp.sympify(r).xreplace(rep) for r in s.residuals]
        g = s.group
        extra = [getattr(g, a, None) for a in ("Sigma", "sizes", "K", "m")]
        free = sorted({x.name for r in res for x in r.free_symbols if isinstance(x, sp.Symbol)}
                      - {"__zc"} - {f"__u{i}" for i in range(len(s.unknowns))})
        canon = s._quad_canon = (s.kind, sp.srepr(res), sp.srepr(sp.Tuple(*[sp.sympify(e) if e is not None else
                                                                             sp.S.Zero for e in extra]).xreplace(rep)),
                                 tuple(free))
    z = np.asarray(s.z_values(ext, bound, N))
    if z.dtype.kind != "f":
        return None, z
    vals = []
    for name in canon[3]:
        v = ext.get(name)
        vals.append((name, v.tobytes() if isinstance(v, np.ndarray) else repr(v)))
    return canon + (tuple(vals), z.tobytes()), z


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
        self._levels = {}
        self.body = ValueNode(body, plan, self.level)
        self.nested = body.has(sp.Integral)
        self.integral, self._body_expr = integral, body
        #: the last evaluation's values and error estimates (read by an enclosing integral)
        self.last_value = self.last_error = None

    def _systems(self):
        """Groups solved at this integral's nodes: those whose spectral
        parameter depends on its variable (and on no variable of an integral
        further in). In ``∫∫ f(κ(s), κ(t)) ds dt`` the group of ``s`` is solved
        at the inner nodes, for every outer node."""
        if not hasattr(self, "_systems_cache"):
            self._systems_cache = [s for s in self.plan.systems
                                   if self.var.name in self.plan.level_of(s) and self.plan.level_of(s) <= self.level]
        return self._systems_cache

    def _solve_groups(self, ext, bound, N, opts):
        """:func:`~.plan.solve_groups` of this integral's groups, each solved
        once per evaluation: a group whose equations are those of one already
        solved (up to the names of its unknowns and spectral parameter) at the
        same ``z`` and inputs — the same ``κ(θ)`` under every integral of a
        sum over the same nodes — takes that solution (real ``z`` only)."""
        from .plan import solve_groups
        systems = self._systems()
        if self.backend.name != "numpy":
            return solve_groups(systems, ext, bound, N, opts)
        cache = opts.setdefault("_quad_groups", {})
        diag = {}
        for s in systems:
            key, z = _group_key(s, ext, bound, N)
            label = ",".join(u.name for u in s.unknowns)
            if key is not None and key in cache:
                vals, zv, d = cache[key]
                for u, v in zip(s.unknowns, vals):
                    ext[u.name] = v
                ext[s.zname] = zv
                diag[label] = d
                continue
            d = solve_groups([s], ext, bound, N, opts)
            diag.update(d)
            if key is not None and np.array_equal(np.asarray(ext[s.zname]), z):
                cache[key] = ([ext[u.name] for u in s.unknowns], ext[s.zname], d[label])
        return diag

    def _slopes(self):
        """A :class:`Stage` of ``∂f/∂I_k`` for the integrals ``I_k`` nested in the integrand ``f``."""
        if not hasattr(self, "_slope_stage"):
            ph = {node.integral: node.symbol for node in self.body.integrals}
            low = self.plan.lowering.lower_expr(sp.sympify(self._body_expr).xreplace(ph))
            self._slope_stage = Stage(self.backend, [sp.diff(low, node.symbol) for node in self.body.integrals],
                                      self.plan.lowering.contractions)
        return self._slope_stage

    def _rules(self):
        """Node rules tried in turn: Gauss–Legendre first on a finite
        interval (double precision), tanh-sinh where it does not converge
        within :data:`GAUSS_LEVELS` levels (endpoint singularities)."""
        if self.kind == "finite" and self.backend.name == "numpy":
            return list(FINITE_RULES)
        return [self.kind]

    def _level(self, i, rule=None):
        """Nodes of level ``i`` of ``rule`` (all of them for ``gauss`` and
        ``periodic``, the new ones for the nested double-exponential rules),
        converted for the backend."""
        rule = rule or self.kind
        levels = self._levels.setdefault(rule, []) if isinstance(self._levels, dict) else None
        if levels is None:
            self._levels = {}
            levels = self._levels.setdefault(rule, [])
        while len(levels) <= i:
            j = len(levels)
            if rule == "periodic":
                u, w, um = periodic_nodes(j)
            elif rule == "gauss":
                levels.append(gauss_nodes(GAUSS_N0 * 2 ** j))
                continue
            else:
                u, w, um = nodes(rule, H0 / 2 ** j, self.digits, odd=j > 0)
            be = self.backend
            conv = (lambda v: be.const(v)) if be.name == "mpmath" else float
            arr = (lambda xs: np.array([conv(v) for v in xs], dtype=object if be.name == "mpmath" else float))
            levels.append((arr(u), arr(w), arr(um) if rule in ("finite", "periodic") else None))
        return levels[i]

    def evaluate(self, env, bound, n, opts, diagnostics):
        """``(values, converged)`` at the ``n`` points of ``env``.

        Levels of the rule are added until the estimated error
        (:func:`error_estimate`) is at most ``rtol`` relative at every point.
        Gauss–Legendre that has not converged after :data:`GAUSS_LEVELS`
        levels is abandoned for tanh-sinh (its nodes are not reused)."""
        from .solvers import full
        lims = [full(v, n) for v in self.limits(env, bound)]
        rtol = opts.get("quad_rtol") or self.rtol
        rules = self._rules()
        for rule in rules:
            last = rule == rules[-1]
            # nested in another integral: a tighter target, so that the errors it passes on
            # (weighted by the outer rule) stay within the outer integral's tolerance
            total, ok, est, scale, done = self._adapt(rule, lims, env, bound, n, opts,
                                                      rtol * opts.get("_quad_factor", 1.0), last)
            if done or last:
                break
        # relative, and never looser than a requested quad_rtol (the default rtol allows √rtol)
        ok &= est <= (rtol if opts.get("quad_rtol") else rtol ** 0.5) * np.maximum(scale, 1e-300)
        diagnostics.setdefault("quad_error", []).append(est)
        self.last_value, self.last_error = total, est
        return total, ok

    def _adapt(self, rule, lims, env, bound, n, opts, rtol, last):
        """Levels of one rule: ``(total, ok, error estimate, |total|, converged everywhere)``.

        The estimate is the rule's own (:func:`error_estimate`) plus the
        errors of integrals nested in the integrand, propagated (``_chunk``)."""
        nested = rule not in ("gauss", "periodic")
        top = self.max_level if last or rule != "gauss" else GAUSS_LEVELS - 1
        total, ok, diffs, est, prop = None, np.ones(n, dtype=bool), [], None, np.zeros(n)
        scale = np.zeros(n)
        for i in range(top + 1):
            part, good, perr = self._sum(self._level(i, rule), lims, env, bound, n, opts)
            ok = ok & good
            # halving h: the old sum counts with weight 1/2 (weights carry h)
            new = part if total is None or not nested else total / 2 + part
            prop = perr if total is None or not nested else prop / 2 + perr
            if total is not None:
                diffs.append(np.asarray(abs(new - total), dtype=float))
                scale = np.asarray(abs(new), dtype=float)
                own = error_estimate(diffs, scale)
                est = own + prop
            total = new
            if est is not None:
                tol = rtol * np.maximum(scale, 1e-300)
                # done; or the rule's own error is small and the inner integrals' dominate (more
                # nodes of this rule cannot reduce it: reported, and judged by the caller)
                if ((est <= tol) | ((own <= tol / 2) & (prop > tol / 2))).all():
                    return total, ok, est, scale, True
            if rule == "gauss" and not last and len(diffs) >= 2 and (
                    (diffs[-1] > GAUSS_GIVE_UP * diffs[-2]) & (est > rtol * scale)).any():
                break    # doubling the points no longer squares the error: an endpoint singularity
        if est is None:
            est = np.full(n, np.inf)
        return total, ok, est, scale, False

    def _sum(self, level, lims, env, bound, n, opts):
        """``Σ_q w_q f(t_q)`` at the ``n`` points, the nodes taken in chunks so
        that at most :data:`POINTS` (``POINTS_NESTED`` when an integral is
        nested inside: each of its points carries the inner nodes) extended
        points ``point × node`` are held at once: the memory of a level is
        bounded whatever the grid, the number of nodes and the nesting depth."""
        u, w, um = level
        q = len(u)
        budget = POINTS_NESTED if self.nested else POINTS
        step = max(1, min(q, budget // max(n, 1)))
        total, ok, errs = None, np.ones(n, dtype=bool), np.zeros(n)
        for k in range(0, q, step):
            sl = slice(k, k + step)
            part, good, err = self._chunk((u[sl], w[sl], None if um is None else um[sl]), lims, env, bound,
                                          n, opts)
            total = part if total is None else total + part
            ok &= good
            errs = errs + err
        return total, ok, errs

    def _chunk(self, level, lims, env, bound, n, opts):
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
        ext = {k: (np.repeat(v, q) if isinstance(v, np.ndarray) and v.ndim == 1 else v)
               for k, v in env.items() if k != TENSOR}
        ext[self.var.name] = np.ascontiguousarray(t).reshape(-1)
        diag = self._solve_groups(ext, bound, n * q, opts)
        # the body's spectral sums see the (point, node) structure: matrix products (kernels._TensorSum)
        ext[TENSOR] = (n, q)
        inner_opts = (dict(opts, _quad_factor=opts.get("_quad_factor", 1.0) / INNER_TIGHTER)
                      if self.body.integrals else opts)
        vals, ok = self.body.evaluate(ext, bound, n * q, inner_opts, {})
        errs = np.zeros(n)
        if self.body.integrals:
            # nested integrals: an error e_k of the inner integral I_k at a node enters
            # the integrand f(…, I_k, …) as |∂f/∂I_k|·e_k and the sum with the node's
            # weight: Σ_q |w_q| Σ_k |∂f/∂I_k|_q e_kq (first order; the slope exact, symbolic)
            at = dict(ext)
            for node in self.body.integrals:
                at[node.symbol.name] = node.last_value
            per_node = np.zeros(n * q)
            for node, slope in zip(self.body.integrals, self._slopes()(at, bound)):
                per_node = per_node + (np.asarray(abs(np.asarray(full(slope, n * q))), dtype=float)
                                       * np.asarray(full(node.last_error, n * q), dtype=float))
            aw = np.abs(np.asarray(np.broadcast_to(w, (n, q)), dtype=float))
            errs = (per_node.reshape(n, q) * aw).sum(axis=1)
        for d in diag.values():
            ok = ok & d["converged"]
        vals = np.asarray(full(vals, n * q)).reshape(n, q) * w
        return vals.sum(axis=1), ok.reshape(n, q).all(axis=1), errs
