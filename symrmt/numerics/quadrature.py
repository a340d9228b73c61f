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

In double precision a finite interval is first tried with Gauss–Kronrod
pairs (``gk``): level ``i`` evaluates the ``N_i``-point Gauss–Legendre rule
(:data:`GK_LADDER`) and its ``(2N_i+1)``-point Kronrod extension on the same
nodes (:func:`gauss_kronrod_nodes`), returns the Kronrod sum and reports
``|K − G|`` — the error of the Gauss sum, an over-estimate of the returned
one's — so a level carries its own estimate and costs no second evaluation.
For ``f`` analytic inside the Bernstein ellipse ``E_ρ`` the Gauss error is
``O(ρ^{−2N})`` (the θ-integrands of the Stieltjes/ratio representations are,
and need 3–5× fewer nodes than tanh-sinh). Because levels are self-contained
the next one is *chosen*: from the rate fitted to the estimates so far
(:meth:`IntegralNode._next_level`), at least the level the integrals nested
inside needed; an integral evaluated again in the same solve (an inner
integral, once per outer level or chunk) starts where it converged before.
Each grid point stops at the level where its own estimate is within ``rtol``
(:meth:`IntegralNode._adapt_pairs`): later levels evaluate only the points
still open, so a grid from smooth to sharp integrands (the diffusion recipe's
σ² from 14.7 down to 1e-3 at σ_T² = 100) pays each point's level rather than
the sharpest point's everywhere. The points still open are handed to
tanh-sinh (and the pairs skipped for the rest of the solve) when the
fitted rate needs more than the largest level, or when more points stop
reducing the estimate geometrically (an endpoint singularity). κ is solved
once per node and group equation in a solve (:meth:`IntegralNode._solve_groups`):
the inner nodes once for all outer nodes and levels, the nodes shared by an
outer and an inner integral once for both. ``gauss`` (Gauss–Legendre
``12·2^i`` points, each level a full rule, the error the difference of the
last two) is the rule before the pairs, kept for comparison.

The step is halved from ``h = 1/4`` (the double-exponential rules are
nested: each level adds the odd multiples of the new ``h``; the midpoint
rule doubles from 16 points) until two levels agree to ``rtol`` at every
grid point; evaluated again in the same solve, a double-exponential rule
starts with levels ``0 … k`` at once (``k`` where it converged before) and
the sums at steps ``h_k`` and ``h_{k−1}`` from that one evaluation
(:meth:`IntegralNode._union`). The error roughly squares at each level, so the last difference
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
over the nodes (``kernels._TensorSum``), one per run of outer points that see
the same inner nodes (an inner integral at several grid points at once: κ at
its nodes depends on the grid point, not on the outer node; the distinct κ
nodes are likewise found per run, :func:`_distinct`). An integral nested in another
stops at ``rtol/16``, and its error, times ``|∂f/∂I|`` of the outer integrand
``f`` (symbolic) and the outer weights, is added to the outer one's estimate.
"""
from __future__ import annotations

import functools
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
#: (``"gk"``: the ``GAUSS_N0·2^i``-point Gauss rule and its Kronrod extension)
GAUSS_N0, GAUSS_LEVELS = 12, 5
#: Gauss points ``N`` of the ``gk`` levels (Kronrod: ``2N + 1`` nodes); steps of
#: ×4/3 and ×3/2, so that the level predicted from the error of the first one
#: (``IntegralNode._next_level``) overshoots what is needed by less
GK_LADDER = (12, 16, 24, 32, 48, 64, 96, 128, 192)
#: rules tried in turn on a finite interval in double precision (``"gk"``:
#: Gauss–Kronrod pairs, ``"gauss"``: Gauss–Legendre doubling, the rule before
#: the pairs, ``"finite"``: tanh-sinh)
FINITE_RULES = ("gk", "finite")
#: Gauss–Kronrod levels stop at each point where it has converged (``False``: every
#: point runs to the level the last one needs, the rule before; kept for comparison)
STOP_PER_POINT = True
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


def _kronrod_jacobi(N, a0, b0):
    """Recurrence coefficients ``(a, b)`` of the ``(2N+1)``-point Gauss–Kronrod
    rule extending the ``N``-point Gauss rule of the monic recurrence ``(a0,
    b0)`` (Laurie, Math. Comp. 66 (1997) 1133–1145: the Jacobi–Kronrod
    matrix by a mixed-moment recurrence; only rational operations). The
    rule's nodes and weights are then those of a Gauss rule (Golub–Welsch)."""
    a = np.zeros(2 * N + 1)
    b = np.zeros(2 * N + 1)
    na, nb = 3 * N // 2 + 1, -(-3 * N // 2) + 1
    a[:na], b[:nb] = a0[:na], b0[:nb]
    s, t = np.zeros(N // 2 + 2), np.zeros(N // 2 + 2)
    t[1] = b[N + 1]
    for m in range(N - 1):
        k = np.arange((m + 1) // 2, -1, -1)
        lo = m - k
        s[k + 1] = np.cumsum((a[k + N + 1] - a[lo]) * t[k + 1] + b[k + N + 1] * s[k] - b[lo] * s[k + 1])
        s, t = t, s
    j = np.arange(N // 2, -1, -1)
    s[j + 1] = s[j]
    for m in range(N - 1, 2 * N - 2):
        k = np.arange(m + 1 - N, (m - 1) // 2 + 1)
        lo = m - k
        j = N - 1 - lo
        s[j + 1] = np.cumsum(-(a[k + N + 1] - a[lo]) * t[j + 1] - b[k + N + 1] * s[j + 1] + b[lo] * s[j + 2])
        j, k = j[-1], (m + 1) // 2
        if m % 2 == 0:
            a[k + N + 1] = a[k] + (s[j + 1] - b[k + N + 1] * s[j + 2]) / t[j + 2]
        else:
            b[k + N + 1] = s[j + 1] / s[j + 2]
        s, t = t, s
    a[2 * N] = a[N - 1] - b[2 * N] * s[1] / t[1]
    return a, b


_GK = {}
#: double-exponential and periodic levels, converted for a backend: ``(rule, level, digits, backend, dps)``
_NODES = {}


def gauss_kronrod_nodes(N):
    """The ``N``-point Gauss–Legendre rule and its ``(2N+1)``-point Kronrod
    extension on (0, 1), which *reuses* the Gauss nodes: points ``u``,
    weights ``(q, 2)`` (column 0 Kronrod, column 1 Gauss, zero at the ``N+1``
    added nodes) and ``1 − u``. Kronrod is exact for polynomials of degree
    ``3N + 1`` (Gauss ``2N − 1``), so ``|K − G|`` estimates the error of the
    Gauss sum from the same evaluations and over-estimates that of ``K``,
    which is returned (the pair QUADPACK's ``qk21`` uses for ``N = 10``)."""
    if N not in _GK:
        M = 2 * N + 1
        k = np.arange(M + 1, dtype=float)
        # monic Legendre on [−1, 1]: a_k = 0, b_0 = ∫1 = 2, b_k = k²/(4k² − 1)
        b0 = np.where(k == 0, 2.0, k * k / np.maximum(4 * k * k - 1, 1))
        a, b = _kronrod_jacobi(N, np.zeros(M + 1), b0)
        # the symmetric tridiagonal Jacobi–Kronrod matrix: LAPACK's tridiagonal solver (a dense
        # eigh of the (2N+1)² matrix took 0.1–0.5 s at N = 192 under threaded BLAS on a loaded machine)
        from scipy.linalg import eigh_tridiagonal
        x, V = eigh_tridiagonal(a, np.sqrt(b[1:]))
        x = (x - x[::-1]) / 2                       # exactly symmetric
        wk = b[0] * V[0] ** 2
        wk = (wk + wk[::-1]) / 2
        xg, wg = np.polynomial.legendre.leggauss(N)
        W = np.zeros((M, 2))
        W[:, 0] = wk / 2
        W[1::2, 1] = wg / 2                         # the Gauss nodes are the odd-indexed ones
        x[1::2] = xg
        _GK[N] = ((1 + x) / 2, W, (1 - x) / 2)
    return _GK[N]


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
    """A key identifying the equations of group ``s`` at the points of
    ``ext`` up to ``z``: the equations with the unknowns and ``z`` renamed
    canonically and the values of every other symbol they use; and ``z``.
    The key is ``None`` where ``z`` is not real or another input varies over
    the points (solved without sharing)."""
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
    if z.dtype.kind != "f" or not np.isfinite(z).all():
        return None, z
    vals = []
    for name in canon[3]:
        v = ext.get(name)
        if isinstance(v, np.ndarray) and v.ndim > 0:
            return None, z
        vals.append((name, repr(v)))
    return canon + (tuple(vals),), z


def _subset(env, idx):
    """``env`` at the points ``idx`` (grid arrays are 1-D). The points of a
    subset no longer form the ``(points, nodes)`` tensor of an enclosing
    integral's chunk: its mark (``kernels.TENSOR``) is dropped."""
    return {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim == 1 else v) for k, v in env.items() if k != TENSOR}


def _distinct(z, q):
    """``(values, first, inverse)`` of the distinct entries of ``z``; ``z``
    is ``P × q`` (outer point × node), usually the same ``q`` values in every
    row (one sort of ``q`` values then)."""
    Z = z.reshape(-1, q) if q > 1 and len(z) % q == 0 else z.reshape(1, -1)
    if len(Z) > 1 and not (Z == Z[:1]).all():
        runs = _row_runs(Z)
        if runs is not None:
            # rows in runs (grid point × outer node: the inner nodes' z depends on the grid
            # point only): one sort of the runs' rows
            starts, run = runs
            u, first, inv = np.unique(Z[starts].reshape(-1), return_index=True, return_inverse=True)
            return u, starts[first // q] * q + first % q, inv.reshape(len(starts), q)[run].reshape(-1)
        Z = z.reshape(1, -1)
    u, first, inv = np.unique(Z[0], return_index=True, return_inverse=True)
    return u, first, np.tile(inv.reshape(-1), len(Z))


def _row_runs(Z):
    """``(first row of each run, run of each row)`` of the runs of equal
    consecutive rows of ``Z``, or ``None`` where no two consecutive rows are
    equal."""
    new = np.ones(len(Z), dtype=bool)
    new[1:] = (Z[1:] != Z[:-1]).any(axis=1)
    if new.all():
        return None
    return np.nonzero(new)[0], np.cumsum(new) - 1


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

    def _solve_groups(self, ext, bound, N, opts, q=1):
        """:func:`~.plan.solve_groups` of this integral's groups, each solved
        once per node: a group whose equations are those of one already
        solved (up to the names of its unknowns and spectral parameter), with
        the same other inputs, takes the solution at every ``z`` solved before
        in this solve — the same ``κ(θ)`` under every integral of a sum over
        the same nodes, at an inner integral's nodes once for all outer nodes
        and levels, and at the outer nodes of a Gauss–Kronrod level that the
        inner integral has already used — and solves only the new ``z``
        (real ``z`` and scalar inputs; otherwise each call solves its
        distinct points, :func:`~.plan.solve_groups`)."""
        from .plan import solve_groups
        from .solvers import take
        systems = self._systems()
        if self.backend.name != "numpy":
            return solve_groups(systems, ext, bound, N, opts)
        cache = opts.setdefault("_quad_nodes", {})
        diag = {}
        for s in systems:
            key, z = _group_key(s, ext, bound, N)
            label = ",".join(u.name for u in s.unknowns)
            if key is None:
                diag.update(solve_groups([s], ext, bound, N, opts))
                continue
            zu, first, inv = _distinct(z, q)
            zs, sol, conv = cache.get(key, (np.empty(0), [np.empty(0)] * len(s.unknowns), np.empty(0, dtype=bool)))
            pos = np.minimum(np.searchsorted(zs, zu), max(len(zs) - 1, 0))
            miss = ~(zs[pos] == zu) if len(zs) else np.ones(len(zu), dtype=bool)
            if miss.any():
                sub = take(ext, first[miss])
                d = solve_groups([s], sub, bound, int(miss.sum()), opts)[label]
                if not np.array_equal(np.asarray(sub[s.zname]), zu[miss]):
                    # the solver moved z (continuation): no sharing
                    diag.update(solve_groups([s], ext, bound, N, opts))
                    continue
                zs = np.concatenate([zs, zu[miss]])
                order = np.argsort(zs, kind="stable")
                zs = zs[order]
                sol = [np.concatenate([v, np.asarray(sub[u.name])])[order] for v, u in zip(sol, s.unknowns)]
                conv = np.concatenate([conv, np.asarray(d["converged"], dtype=bool)])[order]
                cache[key] = (zs, sol, conv)
                pos = np.searchsorted(zs, zu)
            at = pos[inv]
            for u, v in zip(s.unknowns, sol):     # by position: κ₃ takes κ₁'s values
                ext[u.name] = v[at]
            ext[s.zname] = z
            diag[label] = dict(nit=np.zeros(N, dtype=int), converged=conv[at], z=z, eta=np.zeros(N))
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
            if rule == "gauss":
                levels.append(gauss_nodes(GAUSS_N0 * 2 ** j))
                continue
            elif rule == "gk":
                levels.append(gauss_kronrod_nodes(GK_LADDER[j]))
                continue
            be = self.backend
            key = (rule, j, self.digits, be.name, getattr(be, "dps", None))
            if key not in _NODES:
                # the mpmath nodes cost ~10 ms a level: computed once per process, not per integral
                if rule == "periodic":
                    u, w, um = periodic_nodes(j)
                else:
                    u, w, um = nodes(rule, H0 / 2 ** j, self.digits, odd=j > 0)
                conv = (lambda v: be.const(v)) if be.name == "mpmath" else float
                arr = (lambda xs: np.array([conv(v) for v in xs], dtype=object if be.name == "mpmath" else float))
                _NODES[key] = (arr(u), arr(w), arr(um) if rule in ("finite", "periodic") else None)
            levels.append(_NODES[key])
        return levels[i]

    def evaluate(self, env, bound, n, opts, diagnostics):
        """``(values, converged)`` at the ``n`` points of ``env``.

        Levels of the rule are added until the estimated error
        (:func:`error_estimate`) is at most ``rtol`` relative at every point.
        Gauss–Kronrod levels stop at each point where it has converged
        (:meth:`_adapt_pairs`); the points where they do not converge (an
        endpoint singularity, or a need beyond the largest level) go on with
        tanh-sinh. Gauss–Legendre that has not converged after
        :data:`GAUSS_LEVELS` levels is abandoned for tanh-sinh (its nodes are
        not reused)."""
        from .solvers import full
        lims = [full(v, n) for v in self.limits(env, bound)]
        rtol = opts.get("quad_rtol") or self.rtol
        rules = self._rules()
        todo = np.arange(n)
        total = ok = est = scale = None
        for rule in rules:
            last = rule == rules[-1]
            part = len(todo) < n
            sub, sub_lims = (_subset(env, todo), [v[todo] for v in lims]) if part else (env, lims)
            # nested in another integral: a tighter target, so that the errors it passes on
            # (weighted by the outer rule) stay within the outer integral's tolerance
            adapt = self._adapt_pairs if rule == "gk" else functools.partial(self._adapt, rule)
            t, o, e, sc, done = adapt(sub_lims, sub, bound, len(todo), opts,
                                      rtol * opts.get("_quad_factor", 1.0), last)
            if not part:
                total, ok, est, scale = t, o, e, sc
            elif t is not None:
                total = total.astype(np.result_type(total, t)) if total.dtype != object else total
                total[todo], ok[todo], est[todo], scale[todo] = t, o, e, sc
            todo = todo[~np.broadcast_to(done, (len(todo),))]
            if not len(todo) or last:
                break
        # relative, and never looser than a requested quad_rtol (the default rtol allows √rtol)
        ok &= est <= (rtol if opts.get("quad_rtol") else rtol ** 0.5) * np.maximum(scale, 1e-300)
        diagnostics.setdefault("quad_error", []).append(est)
        self.last_value, self.last_error = total, est
        return total, ok

    def _adapt_pairs(self, lims, env, bound, n, opts, rtol, last):
        """Gauss–Kronrod levels: ``(total, ok, error estimate, |total|,
        converged)``, each an array over the points.

        A level evaluates ``G_N`` and ``K_{2N+1}`` on the same nodes and
        returns ``K`` with the estimate ``|K − G|`` (the error of ``G``, an
        over-estimate of ``K``'s) plus the errors of integrals nested in the
        integrand, propagated (``_chunk``). Levels are self-contained, so

        * a point stops at the first level where its estimate is within
          ``rtol`` of its value; later levels evaluate the other points only
          (a grid of σ² from smooth to sharp integrands pays each point's
          own level, not the sharpest point's at every point);
        * a level need not follow the one below: the next is predicted from
          the fitted convergence rate of the points still open
          (:meth:`_next_level`); an integral evaluated again in the same
          solve (an inner integral, once per level or chunk of the outer
          one) starts at the level where it converged the time before, and
          an outer integral whose first level fails jumps to at least the
          level its inner integrals needed.

        Where the rate needs more than the largest level, or more points
        stop reducing the estimate geometrically (an endpoint singularity),
        the open points are left unconverged (``converged`` false) for
        tanh-sinh, and later calls in the solve skip the pairs. The test is
        the same at whatever level: only the cost depends on the guesses."""
        rule, top = "gk", len(GK_LADDER) - 1
        starts = opts.setdefault("_quad_start", {})
        key = (id(self), rule)
        done = np.zeros(n, dtype=bool)
        if starts.get(key) == "abandoned" and not last:
            return None, np.zeros(n, dtype=bool), np.full(n, np.inf), np.zeros(n), done
        hint = starts.get(key, 0)
        i = min(hint, top) if isinstance(hint, int) else 0
        total, ok, est, scale = None, np.ones(n, dtype=bool), np.full(n, np.inf), np.zeros(n)
        diffs, done_levels, act = [], [], np.arange(n)
        while i <= top:
            part = len(act) < n
            sub, sub_lims = (_subset(env, act), [v[act] for v in lims]) if part else (env, lims)
            vals, good, prop = self._sum(self._level(i, rule), sub_lims, sub, bound, len(act), opts)
            done_levels.append(i)
            if total is None or np.result_type(total, vals) != total.dtype:
                total = np.zeros(n, dtype=vals.dtype) if total is None else total.astype(np.result_type(total, vals))
            # Kronrod (returned) and Gauss on its nodes; |K − G| bounds G's error
            own = np.asarray(abs(vals[:, 0] - vals[:, 1]), dtype=float)
            sc = np.asarray(abs(vals[:, 0]), dtype=float)
            total[act], ok[act], scale[act], est[act] = vals[:, 0], good, sc, own + prop
            diff = np.zeros(n)
            diff[act] = own
            diffs.append(diff)
            tol = rtol * np.maximum(sc, 1e-300)
            # done; or the rule's own error is small and the inner integrals' dominate (more
            # nodes of this rule cannot reduce it: reported, and judged by the caller)
            conv = (own + prop <= tol) | ((own <= tol / 2) & (prop > tol / 2))
            if not STOP_PER_POINT:
                conv = np.full(len(act), conv.all())
            done[act[conv]] = True
            act = act[~conv]
            if not len(act):
                starts[key] = i
                return total, ok, est, scale, done
            # more points no longer reduce the error geometrically: an endpoint singularity
            # (the factor for the ratio of the points of the two levels)
            if not last and len(diffs) >= 2:
                give_up = GAUSS_GIVE_UP ** (GK_LADDER[i] / GK_LADDER[done_levels[-2]] - 1)
                if ((diffs[-1][act] > give_up * diffs[-2][act]) & (est[act] > rtol * scale[act])).any():
                    starts[key] = "abandoned"     # for the rest of this solve (an inner integral's next calls)
                    break
            i = self._next_level(done_levels, [e[act] for e in diffs], scale[act], rtol, starts, rule,
                                 opts.get("_quad_factor", 1.0) < 1.0)
            if i is None:
                if not last:
                    starts[key] = "abandoned"
                    break
                i = done_levels[-1] + 1
        return total, ok, est, scale, done

    def _adapt(self, rule, lims, env, bound, n, opts, rtol, last):
        """Levels of one rule (``gauss``, tanh-sinh and the other
        double-exponential rules, ``periodic``): ``(total, ok, error
        estimate, |total|, converged everywhere)``.

        The estimate is the rule's own (:func:`error_estimate`) plus the
        errors of integrals nested in the integrand, propagated (``_chunk``).
        A nested double-exponential rule evaluated again in the same solve
        starts with its levels ``0 … k`` at once (:meth:`_union`, ``k``
        where it converged before)."""
        nested = rule not in ("gauss", "periodic")
        top = self.max_level if last or rule != "gauss" else GAUSS_LEVELS - 1
        starts = opts.setdefault("_quad_start", {})
        key = (id(self), rule)
        if starts.get(key) == "abandoned" and not last:
            return None, np.zeros(n, dtype=bool), np.full(n, np.inf), np.zeros(n), False
        hint = starts.get(key, 0) if self.backend.name == "numpy" and rule != "periodic" else 0
        i = min(hint, top) if nested else 0
        total, ok, diffs, est, prop = None, np.ones(n, dtype=bool), [], None, np.zeros(n)
        scale = np.zeros(n)
        while i <= top:
            union = nested and total is None and i > 0
            level = self._union(i, rule) if union else self._level(i, rule)
            part, good, perr = self._sum(level, lims, env, bound, n, opts)
            if union:
                # levels 0 … i at once (where this integral converged before): the sums of
                # the rules at steps h_i and h_{i−1} from one evaluation
                total, ok, prop = part[:, 0], good, perr
                diffs.append(np.asarray(abs(part[:, 0] - part[:, 1]), dtype=float))
                scale = np.asarray(abs(total), dtype=float)
                own = error_estimate(diffs, scale)
                est = own + prop
            else:
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
                    if nested:
                        starts[key] = i
                    return total, ok, est, scale, True
            # doubling the points no longer squares the error: an endpoint singularity
            if rule == "gauss" and not last and len(diffs) >= 2 and (
                    (diffs[-1] > GAUSS_GIVE_UP * diffs[-2]) & (est > rtol * scale)).any():
                starts[key] = "abandoned"     # for the rest of this solve (an inner integral's next calls)
                break
            i += 1
        if est is None:
            est = np.full(n, np.inf)
        return total, ok, est, scale, False

    def _union(self, k, rule):
        """Levels ``0 … k`` of a nested double-exponential rule as one node set
        with paired weights ``(q, 2)``: the rule at step ``h_k`` (a level-``j``
        node's weight ``w_j/2^{k−j}``: the weights carry ``h``) and at step
        ``h_{k−1}`` (``w_j/2^{k−1−j}``, zero at the level-``k`` nodes)."""
        cache = self._levels.setdefault(("union", rule), {})
        if k not in cache:
            parts = [self._level(j, rule) for j in range(k + 1)]
            u = np.concatenate([p[0] for p in parts])
            um = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
            W = np.zeros((len(u), 2))
            at = 0
            for j, p in enumerate(parts):
                q = len(p[0])
                W[at:at + q, 0] = np.asarray(p[1], dtype=float) / 2.0 ** (k - j)
                if j < k:
                    W[at:at + q, 1] = np.asarray(p[1], dtype=float) / 2.0 ** (k - 1 - j)
                at += q
            cache[k] = (u, W, um)
        return cache[k]

    def _next_level(self, levels, diffs, scale, rtol, starts, rule, inner):
        """The ``gk`` level after the failed ``levels[-1]``: the first whose
        Gauss points ``N`` reach the predicted need. The error of
        Gauss–Legendre on an analytic integrand falls geometrically in ``N``
        (``C ρ^{−2N}``): from two levels the rate is fitted (``log r`` linear
        in ``N``, ``r`` the relative error at the worst point); from one,
        ``C = 1`` is taken (``N ≥ N_i log(rtol)/log r_i``). An integral nested
        in another (``inner``) takes the next step first, to fit the rate:
        its first levels run at the outer integral's first level, a few outer
        nodes, where a step is cheap and an overshoot of its final level
        would be paid at every outer node. An integral with integrals inside
        takes at least the level where those converged (the same variable's
        scale). ``None`` where the need exceeds the largest level (a
        near-singularity close to the interval, ``ρ → 1``: the caller turns to
        tanh-sinh at once instead of climbing the ladder). Only the cost
        depends on the choice: every level is judged by its own estimate."""
        i = levels[-1]
        nxt = i + 1
        r = [float(np.max(e / np.maximum(scale, 1e-300))) for e in diffs[-2:]]
        need = None
        if len(r) == 2 and 0.0 < r[1] < r[0] and rtol < r[1]:
            rate = np.log(r[1] / r[0]) / (GK_LADDER[i] - GK_LADDER[levels[-2]])
            need = GK_LADDER[i] + np.log(rtol / r[1]) / rate
        elif len(r) == 1 and not inner and 0.0 < r[0] < 1.0 and rtol < r[0]:
            need = GK_LADDER[i] * np.log(rtol) / np.log(r[0])
        if need is not None:
            if need > GK_LADDER[-1]:
                return None     # beyond the largest level at the fitted rate: tanh-sinh
            while nxt < len(GK_LADDER) - 1 and GK_LADDER[nxt] < need:
                nxt += 1
        if self.body.integrals:
            inner_levels = [starts.get((id(node), rule), 0) for node in self.body.integrals]
            nxt = max(nxt, min(v if isinstance(v, int) else 0 for v in inner_levels))
        return nxt

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
            ok = ok & good
            errs = errs + err
        return total, ok, errs

    def _chunk(self, level, lims, env, bound, n, opts):
        from .solvers import full
        u, w, um = level
        q = len(u)
        # paired weights (q, 2): Kronrod and Gauss sums of the same values (rule "gk")
        paired = np.ndim(w) == 2
        if self.kind in ("finite", "periodic"):
            a, b = lims
            L = (b - a)[:, None]
            t = np.where(u < 0.5, a[:, None] + L * u, b[:, None] - L * um)
            w = L[:, :, None] * w if paired else L * w
        elif self.kind == "half":
            t = lims[0][:, None] + u
        else:
            t = np.broadcast_to(u, (n, q))
        ext = {k: (np.repeat(v, q) if isinstance(v, np.ndarray) and v.ndim == 1 else v)
               for k, v in env.items() if k != TENSOR}
        ext[self.var.name] = np.ascontiguousarray(t).reshape(-1)
        diag = self._solve_groups(ext, bound, n * q, opts, q)
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
            aw = np.abs(np.asarray(np.broadcast_to(w[..., 0] if paired else w, (n, q)), dtype=float))
            errs = (per_node.reshape(n, q) * aw).sum(axis=1)
        for d in diag.values():
            ok = ok & d["converged"]
        vals = np.asarray(full(vals, n * q)).reshape(n, q)
        if paired:
            return np.einsum("nq,nqr->nr", vals, np.broadcast_to(w, (n, q, 2))), \
                ok.reshape(n, q).all(axis=1), errs
        return (vals * w).sum(axis=1), ok.reshape(n, q).all(axis=1), errs
