"""A whole curve of contour-integral values at once (issue 17, item 2).

A value derived from ``sr.matrix_function(g, Σ̂)`` (gradient descent:
``g_t(x) = (1 − (1 − ηx)^t)/x``) is a sum of single and double contour
integrals ``∮ P(θ; v) Q(θ) dθ`` and ``∮∮ P(θ; v) P'(θ'; v) K(θ, θ') dθ dθ'``,
where the parameters ``v`` of the curve (``t``, ``η``) enter only through the
weights ``P`` (``g`` at the contour point times the Jacobian) and through the
contour's shape (:class:`~symrmt.equivalence.spectral_fn.ContourScale`), and
the kernels ``Q``, ``K`` hold everything random-matrix: ``κ`` at the nodes and
the spectral sums. :func:`curve` puts every point of the grid on one contour
(the narrowest the grid asks for, which is valid for all of them: ``max|g|`` on
a smaller ellipse is smaller), solves ``κ`` once per node with the engine's own
compiled solver, and contracts: ``Σ_k W P_k Q_k`` and ``Σ_kl W² P_k K_kl P'_l``
are matrix products over the nodes, for every grid point at once. Spectral sums
over two contours' unknowns ``Σ_i c_i a(s_i, κ(θ)) b(s_i, κ(θ'))`` are the
matrix products ``A diag(c) Bᵀ`` (diagonal bindings: ``Σ`` by its eigenvalues,
vectors in its eigenbasis).

The rule is the periodic midpoint rule (as ``quadrature.periodic_nodes``) with
``N = n0·2^j`` nodes per contour, doubled until the error estimate at every
grid point is at most ``rtol`` relative. The estimate of the finest level's
error is the last difference ``δ_j = |v_j − v_{j−1}|`` (the error of the
coarser level) reduced by the observed geometric rate, ``δ_j (δ_j/δ_{j−1})²``
(for an error ``Cρ^{−N}`` the rate squares at each doubling), and ``δ_j``
itself unless the differences contract by at least 2; the value is the finest
level. Where that is not reached in ``max_level`` doublings, or a
node's ``κ`` did not converge, the point is ``converged=False`` and its value
NaN, with the error estimate kept — never a silent value.

Full-matrix bindings (pooled/shifted cores ``Σ_k c_kX_kᵀX_k/n_k + B`` with
non-commuting ``Σ_k``, ``B``; any ``d×d`` binding) switch to dense kernels
(:class:`_DenseEval`): every word of the value is on the same nodes; groups
of unknowns equal up to the names of θ and of the unknowns (the general law's
complex ``δ_k`` at ``z(θ)``, one group per word as derived) are solved once
per node and shared by every word, ``t`` and ``η``; each factor of a trace is
evaluated once per node (the resolvent ``(Σ_k c_kρ_kΣ_k + B − z)⁻¹`` one
batched inverse) and cached under its canonical form; a trace over two
contours is split cyclically into the run of factors on each,
``Tr[L(θ)M(θ')] = Σ_ij L_ij(θ) M_ji(θ')``, one matrix product of the
flattened per-node products over all node pairs (in blocks, ``PAIR_CHUNK``),
and a double integral's kernel is evaluated in blocks of outer nodes
(``PAIRS`` node pairs at once), so memory stays bounded at any node count.

Anything outside this form (a parameter of the curve inside a kernel, an
integral nested more than twice, a non-contour integral, an unknown outside
the integrals, a trace alternating between two contours more than once, a
binding with more than two axes) raises ``NotImplementedError`` naming the
piece: use ``de.compile()`` on the grid instead (slower, same numbers). The
symbolic preparation is cached per derived value and curve parameters;
``over=()`` evaluates one point.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix

from ..objects.functionals import Form, Norm, Tr

__all__ = ["curve", "CurveResult"]

_CACHE = {}
#: largest number of (node, node, spectral index) entries held at once by a non-separable sum
CHUNK = 2 ** 22
#: largest number of node pairs at which a double integral's kernel is evaluated at once
PAIRS = 2 ** 16


@dataclasses.dataclass
class CurveResult:
    """``value`` (the broadcast shape of the curve parameters; NaN where not
    converged), ``error`` (difference of the last two levels, absolute),
    ``converged`` (per point), ``success``, ``nodes`` (per contour at the last
    level), ``scale`` (each contour's ``A = (ρ+1/ρ)/2``), ``timings``."""
    value: np.ndarray
    error: np.ndarray
    converged: np.ndarray
    success: bool
    nodes: int
    scale: list
    timings: dict


def curve(de, bindings, over, rtol=1e-8, n0=32, max_level=6):
    """Evaluate the derived value ``de`` over a grid of the parameters named
    in ``over`` (arrays in ``bindings``, broadcast together), all other
    bindings fixed, on one contour shared by the whole grid (module docstring).

    Returns a :class:`CurveResult`. ``rtol``: relative tolerance of the
    doubling of nodes."""
    t0 = time.perf_counter()
    over = tuple(over)
    missing = [k for k in over if k not in bindings]
    if missing:
        raise ValueError(f"curve: the curve parameters {missing} have no binding")
    if not (0 < rtol < 1):
        raise ValueError(f"curve: rtol must be in (0, 1), got {rtol!r}")
    shape = np.broadcast_shapes(*[np.shape(bindings[k]) for k in over]) if over else ()
    G = int(np.prod(shape)) if shape else 1
    grid = {k: np.broadcast_to(np.asarray(bindings[k]), shape).reshape(-1) for k in over}
    grid = {k: (v if v.dtype.kind in "iu" else v.astype(float)) for k, v in grid.items()}
    fixed = {k: v for k, v in bindings.items() if k not in over}
    vec, mats = {}, {}
    for k, v in fixed.items():
        if np.ndim(v) == 0:
            continue
        if np.ndim(v) == 2:
            mats[k] = _dense_binding(k, v)
            continue
        if np.ndim(v) != 1:
            raise NotImplementedError(
                f"curve: binding {k!r} has {np.ndim(v)} dimensions (give covariances by their eigenvalues or as "
                "full d×d matrices, vectors as 1-D arrays)")
        vec[k] = np.asarray(v, dtype=float)
    dense = bool(mats)
    if dense:
        # full matrices: every matrix binding dense (diagonal ones as diag(s)), vectors as columns
        shapes = {m.name: m.shape for m in de.expr.atoms(MatrixSymbol)}
        for k, v in vec.items():
            if k in shapes and shapes[k][1] != 1:
                mats[k] = np.diag(v)
        vec = {**{k: v for k, v in vec.items() if k not in mats}, **mats}
    key = (id(de), over, tuple(sorted(vec)), dense)
    prep = _CACHE.get(key)
    if prep is None or prep.de is not de:
        prep = _CACHE[key] = _Prepared(de, over, set(vec), dense=dense)
    t_prep = time.perf_counter() - t0
    for k, v in bindings.items():
        if np.ndim(v) <= 1 and k in prep.syms:
            _validate(k, v, prep.syms[k])

    t1 = time.perf_counter()
    scal = {k: float(v) for k, v in fixed.items() if np.ndim(v) == 0}
    dlen = {len(v) for v in vec.values() if len(v) > 1}
    for dsym in prep.dims:
        if dsym.name not in scal:
            if len(dlen) != 1:
                raise NotImplementedError(f"curve: cannot infer the dimension {dsym} from the bindings")
            scal[dsym.name] = float(next(iter(dlen)))
    missing = [s for s in prep.scalars if s not in scal]
    if missing:
        raise ValueError(f"curve: missing binding(s) {missing}")
    # constant functionals, innermost first, then the contour scales (narrowest over the grid)
    for sym, atom in prep.consts:
        scal[sym.name] = float(np.real(_dense_functional(atom, vec, scal) if dense else
                                       _functional(atom, vec, scal)))
    scales = []
    for sym, fn, args in prep.scales:
        vals = np.broadcast_to(np.asarray(fn(*[grid[a] if a in grid else scal[a] for a in args]), dtype=float), (G,))
        if not np.all(np.isfinite(vals)) or np.min(vals) <= 1:
            raise NotImplementedError("curve: a contour scale is not > 1 on the whole grid")
        scal[sym.name] = float(np.min(vals))
        scales.append(scal[sym.name])
    solver_bind = {**{k: v for k, v in fixed.items() if np.ndim(v) > 0}, **scal}

    prev, err, last_diff, ok_nodes, N, vals = None, None, None, True, n0, None
    for level in range(max_level + 1):
        N = n0 * 2 ** level
        th = 2 * np.pi * (np.arange(N) + 0.5) / N
        W = 2 * np.pi / N
        kap, solved = {}, {}
        cache = {}              # dense mode: per-node matrices shared by every word (canonical keys)
        for us, (tsym, f, names, same, reps) in prep.solvers.items():
            if same not in solved:      # the same equations on the same contour: solved once
                res = f.solve(**{k: solver_bind[k] for k in names if k in solver_bind}, **{tsym.name: th},
                              options=dict(raise_on_failure=False))
                ok_nodes &= bool(np.all(res.converged))
                solved[same] = [np.broadcast_to(np.asarray(res.x[r.name], dtype=complex).reshape(-1), (N,))
                                for r in reps]
            for u, vals in zip(us, solved[same]):
                kap[u] = (tsym, vals)
        Js = []
        for terms in prep.plans:
            J = np.zeros(G, dtype=complex)
            for term in terms:
                Pm = term.P(th, grid, scal, G)                                  # G × N
                if term.inner is None:
                    q = term.kernel(th, kap, vec, scal, cache)
                    J += W * (Pm @ np.broadcast_to(q, (N,)))
                else:
                    # Σ_kl P_k K_kl P'_l with K in blocks of outer rows: at most PAIRS node pairs at once
                    acc = np.zeros((G, N), dtype=complex)
                    step = max(1, PAIRS // N)
                    for i0 in range(0, N, step):
                        rows = slice(i0, min(N, i0 + step))
                        Kb = term.kernel(th, kap, vec, scal, cache, rows=rows if step < N else None)
                        acc += Pm[:, rows] @ np.broadcast_to(Kb, (rows.stop - rows.start, N))
                    for key in [k for k in cache if k[0] == "pair"]:
                        del cache[key]          # per-node products of this term's two-contour traces
                    J += W * W * np.einsum("gk,gk->g", acc, term.P2(th, grid, scal, G))
            Js.append(J)
        args = Js + [grid[a] if a in grid else scal[a] for a in prep.top_args]
        vals = np.broadcast_to(np.asarray(prep.top(*args)), (G,))
        if np.iscomplexobj(vals):
            if np.any(np.abs(vals.imag) > 1e-8 * np.abs(vals)):
                raise NotImplementedError("curve: the value is complex; only real values are evaluated here")
            vals = vals.real
        vals = np.asarray(vals, dtype=float)
        if prev is not None:
            diff = np.abs(vals - prev)
            err = diff
            if last_diff is not None:
                # geometric convergence ρ^{−N}: the error of this level ≈ diff·(diff/last_diff)²
                with np.errstate(over="ignore", invalid="ignore"):
                    ratio = diff / np.maximum(last_diff, 1e-300)
                    err = np.where(ratio <= 0.5, diff * ratio ** 2, diff)
            last_diff = diff
            if np.all(err <= rtol * np.abs(vals)):
                break
        prev = vals
    if err is None:
        err = np.full(G, np.inf)
    conv = (err <= rtol * np.abs(vals)) & ok_nodes & np.isfinite(vals)
    out = np.where(conv, vals, np.nan)
    return CurveResult(value=out.reshape(shape), error=err.reshape(shape), converged=conv.reshape(shape),
                       success=bool(conv.all()), nodes=N, scale=scales,
                       timings=dict(prepare=t_prep, evaluate=time.perf_counter() - t1))


def _validate(name, v, sym):
    """A binding of the scalar ``sym``: finite, real, and integral / positive
    as ``sym`` is declared (``t`` integer, ``lr`` positive …)."""
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"curve: binding {name!r} must be real numbers, got {v!r}") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"curve: binding {name!r} must be finite")
    if sym.is_integer and not np.all(a == np.round(a)):
        raise ValueError(f"curve: binding {name!r} must be integers ({sym} is declared integer)")
    if sym.is_positive and not np.all(a > 0):
        raise ValueError(f"curve: binding {name!r} must be positive")
    if sym.is_nonnegative and not np.all(a >= 0):
        raise ValueError(f"curve: binding {name!r} must be non-negative")


# ------------------------------------------------------------------ preparation (symbolic, cached)
def _fake(de, value, groups):
    from ..equivalence.result import DeterministicEquivalent
    return DeterministicEquivalent(expr=de.expr, value=value, groups=list(groups), assumptions=[])


class _Term:
    pass


class _Prepared:
    """Everything symbolic for :func:`curve`, independent of the binding values."""

    def __init__(self, de, over, vectors, dense=False):
        from ..equivalence.spectral_fn import ContourScale
        from ..objects.walk import atoms_shared
        from .quadrature import find_integrals
        self.de = de
        self.dense = dense
        # shared-tree walks throughout: a derived value repeats its sub-trees (traces, resolvents) many times
        self.syms = {x.name: x for x in atoms_shared(sp.sympify(de.value), sp.Symbol) | de.expr.free_symbols
                     if isinstance(x, sp.Symbol)}
        unknowns = {u for g in de.groups for u in g.unknowns}
        value = sp.sympify(de.value)
        groups = list(de.groups)
        self.dims = {x for m in de.expr.atoms(MatrixSymbol) for dim in m.shape for x in sp.sympify(dim).free_symbols}
        over_syms = {s for s in self.syms.values() if s.name in over}
        bound = {v for I in atoms_shared(value, sp.Integral) for v in I.variables}
        for g in groups:
            # the contour (hence z) may depend on them only through a ContourScale
            cs = {a: sp.S.One for e in (sp.sympify(g.z), *g.equations) for a in atoms_shared(e, ContourScale)}
            inside = {x.name for e in (sp.sympify(g.z), *g.equations)
                      for x in atoms_shared(_replace(e, cs), sp.Symbol)} & set(over)
            if inside:
                raise NotImplementedError(f"curve: the curve parameters {sorted(inside)} enter the self-consistent "
                                          f"equation of {g.unknowns}; evaluate with de.compile() on the grid")
        matnames = {m.name for m in atoms_shared(value, MatrixSymbol)}

        # constant functionals (of bindings only) → symbols, innermost first
        self.consts = []
        rep_all = {}

        def constant(a, known):
            return all(isinstance(x, MatrixSymbol) or x in known for x in a.free_symbols)

        while True:
            exprs = [value] + [sp.sympify(g.z) for g in groups] + [e for g in groups for e in g.equations]
            base = set().union(*[atoms_shared(e, sp.Symbol) for e in exprs]) - unknowns - over_syms
            known = {x for x in base if x not in bound} | self.dims | {s for s, _ in self.consts}
            atoms = set().union(*[atoms_shared(e, Tr, Form, Norm) for e in exprs])
            atoms = [a for a in atoms if constant(a, known)
                     and not any(b is not a and isinstance(b, (Tr, Form, Norm)) for b in sp.preorder_traversal(a))]
            if not atoms:
                break
            rep = {}
            for a in sorted(atoms, key=sp.default_sort_key):
                sym = sp.Symbol(f"contour_c{len(self.consts)}", real=True)
                self.consts.append((sym, a))
                rep[a] = sym
            rep_all.update(rep)
            memo = {}
            value = _replace(value, rep, memo)
            groups = [dataclasses.replace(g, z=_replace(sp.sympify(g.z), rep, memo),
                                          equations=tuple(_replace(e, rep, memo) for e in g.equations))
                      for g in groups]
        # contour scales → symbols; their arguments evaluated over the grid
        self.scales = []
        srep = {}
        for a in sorted(set(atoms_shared(value, ContourScale)).union(*[sp.sympify(g.z).atoms(ContourScale)
                                                                        for g in groups]),
                        key=sp.default_sort_key):
            sym = sp.Symbol(f"contour_A{len(self.scales)}", positive=True)
            args = sorted(a.args[0].free_symbols, key=str)
            if any(x in unknowns or isinstance(x, MatrixSymbol) for x in args) or a.args[0].has(Tr, Form, Norm):
                raise NotImplementedError(f"curve: the contour scale {a} depends on random-matrix quantities")
            self.scales.append((sym, sp.lambdify(args, a.args[0], modules="numpy"), [x.name for x in args]))
            srep[a] = sym
        memo = {}
        value = _replace(value, srep, memo)
        groups = [dataclasses.replace(g, z=_replace(sp.sympify(g.z), srep, memo),
                                      equations=tuple(_replace(e, srep, memo) for e in g.equations)) for g in groups]

        thetas = {}
        for v in sorted(bound, key=str):
            thetas[v] = sp.Symbol(f"contour_{v.name.lstrip('_')}_{len(thetas)}", real=True)
        self.thetas = thetas
        params = {s for s, _ in self.consts} | {s for s, _, _ in self.scales}
        top, found = find_integrals(value)
        if top.free_symbols & unknowns or top.has(Tr, Form, Norm):
            raise NotImplementedError(f"curve: unknowns or spectral sums outside the integrals in {top}")
        plain = sorted((top.free_symbols - {s for s, _ in found}), key=str)
        self.top_args = [x.name for x in plain]
        self.top = sp.lambdify([s for s, _ in found] + plain, top, modules="numpy")
        self.scalars = sorted({x.name for x in atoms_shared(value, sp.Symbol)
                               if not isinstance(x, MatrixSymbol) and x not in unknowns and x not in over_syms
                               and x not in params and x not in thetas and x.name not in matnames}
                              - {x.name for x in self.dims})
        self.plans = []
        # dense mode: which contour each unknown lives on, and canonical names (one contour's equations
        # up to renaming are the same numbers at the same nodes: computed once, shared by every word)
        self.evaluator = None
        if dense:
            theta_of, canon = {}, {}
            classes = {}
            for g in groups:
                th = [thetas[v] for v in sp.sympify(g.z).free_symbols if v in thetas]
                if len(th) != 1:
                    raise NotImplementedError(f"curve: the spectral parameter {g.z} depends on {len(th)} "
                                              "integration variables")
                for u in g.unknowns:
                    theta_of[u] = th[0]
                key = _group_key(g, th[0], thetas)
                rep_th, rep_us = classes.setdefault(key, (sp.Symbol(f"contour_th{len(classes)}", real=True),
                                                          [sp.Symbol(f"contour_u{len(classes)}_{i}")
                                                           for i in range(len(g.unknowns))]))
                canon[th[0]] = rep_th
                canon.update(zip(g.unknowns, rep_us))
            self.evaluator = _DenseEval(set(thetas.values()), theta_of, canon)
        tmemo = {}
        for _, I in found:
            single, double = _integral_terms(I, over_syms, unknowns, thetas)
            terms = []
            for (P, outer), Q in single.items():
                t = _Term()
                t.inner = None
                t.P = _weight(P.xreplace(thetas), thetas[outer])
                t.kernel = _Kernel(_replace(Q, thetas, tmemo), (thetas[outer],), unknowns, vectors, self.evaluator)
                terms.append(t)
            for (P, P2, outer, inner), K in double.items():
                t = _Term()
                t.inner = thetas[inner]
                t.P = _weight(P.xreplace(thetas), thetas[outer])
                t.P2 = _weight(P2.xreplace(thetas), thetas[inner])
                t.kernel = _Kernel(_replace(K, thetas, tmemo), (thetas[outer], thetas[inner]), unknowns, vectors,
                                   self.evaluator)
                terms.append(t)
            self.plans.append(terms)
        # κ (or the general law's δ_k) of each contour, solved by the engine at that contour's nodes;
        # groups with the same equations up to the names of θ and of the unknowns are solved once
        self.solvers, compiled_by, solved_name = {}, {}, {}
        for g in groups:
            th = [thetas[v] for v in sp.sympify(g.z).free_symbols if v in thetas]
            if len(th) != 1:
                raise NotImplementedError(f"curve: the spectral parameter {g.z} depends on {len(th)} integration "
                                          "variables")
            g2 = dataclasses.replace(g, z=sp.sympify(g.z).xreplace(thetas),
                                     equations=tuple(e.xreplace(thetas) for e in g.equations))
            if len(g.unknowns) != 1 and not dense:
                raise NotImplementedError(f"curve: the group {g.unknowns} has several unknowns")
            same = _group_key(g, th[0], thetas)
            f = compiled_by.get(same)
            if f is None:
                f = compiled_by[same] = _fake(de, g.unknowns[0], [g2]).compile()
                solved_name[same] = tuple(g.unknowns)
            self.solvers[tuple(g.unknowns)] = (th[0], f, set(f.parameters), same, solved_name[same])


def _replace(e, rep, memo=None):
    """``e.xreplace(rep)`` rebuilding each distinct sub-tree once (``memo``
    shared between calls with the same ``rep``), without re-evaluating
    ``re(…)`` (costly on a contour integral, its value known not to change)
    or re-checking an ``Integral``'s limits."""
    memo = {} if memo is None else memo

    def rec(x):
        hit = memo.get(id(x))
        if hit is not None:
            return hit[0]
        if x in rep:
            out = rep[x]
        elif not x.args:
            out = x
        else:
            args = [rec(a) if isinstance(a, sp.Basic) else a for a in x.args]
            if all(a is b for a, b in zip(args, x.args)):
                out = x
            elif isinstance(x, sp.re):
                out = sp.re(args[0], evaluate=False)
            elif isinstance(x, sp.Integral):
                out = sp.Expr.__new__(type(x), *args)       # as ExprWithLimits builds it, limits unchanged
                out.is_commutative = args[0].is_commutative
            else:
                out = x.func(*args)
        memo[id(x)] = (out, x)
        return out
    return rec(e)


def _weight(P, th):
    """``P(θ; v)`` as ``(θ nodes, grid, scalars, G) → G × N``."""
    free = sorted(P.free_symbols - {th}, key=str)
    f = sp.lambdify([th] + free, P, modules="numpy")
    names = [x.name for x in free]

    def ev(nodes, grid, scal, G):
        args = [nodes[None, :]] + [grid[a][:, None] if a in grid else scal[a] for a in names]
        return np.broadcast_to(np.asarray(f(*args), dtype=complex), (G, len(nodes)))
    return ev


class _Kernel:
    """A kernel on the node grid (``(N,)`` for one contour, ``(N, N)`` for two),
    its spectral sums evaluated for diagonal bindings (separable sums over two
    contours by a matrix product)."""

    def __init__(self, Q, axes, unknowns, vectors, evaluator=None):
        self.axes = axes
        self.sums = []
        rep = {}
        from ..objects.walk import atoms_shared
        for a in sorted(atoms_shared(Q, Tr, Form), key=sp.default_sort_key):
            sym = sp.Symbol(f"contour_f{len(rep)}")
            rep[a] = sym
            self.sums.append((sym.name, _Sum(a, unknowns, vectors) if evaluator is None
                              else _DenseSum(a, evaluator)))
        if atoms_shared(Q, Norm):
            raise NotImplementedError(f"curve: a spectral norm inside the kernel {Q}")
        e = _replace(Q, rep)
        free = sorted(atoms_shared(e, sp.Symbol), key=str)
        self.names = [x.name for x in free]
        self.fn = sp.lambdify(free, e, modules="numpy")

    def __call__(self, nodes, kap, vec, scal, cache=None, rows=None):
        """The kernel on the node grid; ``rows`` (a slice): only those nodes of the
        first (outer) contour."""
        env, where = {}, {}
        outer = self.axes[0] if rows is not None else None
        for i, ax in enumerate(self.axes):
            shp = [1] * len(self.axes)
            shp[i] = -1
            where[ax] = tuple(shp)
            env[ax.name] = (nodes[rows] if ax == outer else nodes).reshape(shp)
        for u, (tsym, vals) in kap.items():
            if tsym in where:
                env[u.name] = (vals[rows] if tsym == outer else vals).reshape(where[tsym])
        for name, s in self.sums:
            env[name] = (s(env, kap, where, vec, scal) if cache is None else
                         s(env, kap, where, vec, scal, cache, nodes=nodes, rows=rows, outer=outer))
        return np.asarray(self.fn(*[env[a] if a in env else scal[a] for a in self.names]), dtype=complex)


class _Sum:
    """``Tr f(Σ) = Σ_i f(s_i)`` or ``uᵀf(Σ)v = Σ_i u_i v_i f(s_i)``."""

    def __call__(self, env, kap, where, vec, scal, cache=None, **_):
        return self._call(env, kap, where, vec, scal)

    def __init__(self, a, unknowns, vectors):
        self.c, e = _parts(a, vectors)
        self.entries = sorted({x for x in e.free_symbols if x.name.startswith("contour_diag_")}, key=str)
        self.us = sorted((e.free_symbols & unknowns), key=str)
        self.split = self.pf = None
        if len(self.us) == 2:
            fa, fb, rest, ok = sp.S.One, sp.S.One, sp.S.One, True
            for fac in sp.Mul.make_args(e):
                has = [u for u in self.us if fac.has(u)]
                if len(has) == 2:
                    ok = False
                    break
                if has == [self.us[0]]:
                    fa *= fac
                elif has == [self.us[1]]:
                    fb *= fac
                else:
                    rest *= fac
            if ok:
                self.split = (_entry_fn(fa * rest, self.entries), _entry_fn(fb, self.entries))
                pa, pb = _simple_pole(fa, self.us[0], self.entries), _simple_pole(fb, self.us[1], self.entries)
                if pa is not None and pb is not None and sp.simplify(pa[1] - pb[1]) == 0:
                    # Σ_i w_i/((e_i+κa)(e_i+κb)) = (F(κa) − F(κb))/(κb − κa), F(κ) = Σ_i w_i/(e_i+κ):
                    # O(N·d) sums and an N×N difference quotient instead of an N×d×N product
                    self.pf = (_entry_fn(pa[0], []), _entry_fn(pb[0], []), _entry_fn(rest, self.entries),
                               _entry_fn(pa[1], self.entries))
        self.whole = _entry_fn(e, self.entries)

    def _call(self, env, kap, where, vec, scal):
        arrs = [vec[x.name[len("contour_diag_"):]] for x in self.entries]
        d = len(arrs[0]) if arrs else 1
        c = np.ones(d) if self.c is None else vec[self.c[0]] * vec[self.c[1]]
        if self.pf is not None:
            (pa, na), (pb, nb), (fr, nr), (fe, ne) = self.pf
            ua, ub = self.us
            ka, kb = (np.asarray(env[u.name]).reshape(-1) for u in (ua, ub))
            w = np.broadcast_to(np.asarray(fr(*arrs, *[scal[a] for a in nr])), (d,)) * c
            e = np.broadcast_to(np.asarray(fe(*arrs, *[scal[a] for a in ne])), (d,))
            Ra, Rb = 1 / (e[None, :] + ka[:, None]), 1 / (e[None, :] + kb[:, None])
            Fa, Fb, Ha = Ra @ w, Rb @ w, (Ra * Ra) @ w
            den = kb[None, :] - ka[:, None]
            same = np.abs(den) <= 1e-13 * np.abs(ka)[:, None]
            D = np.where(same, Ha[:, None], (Fa[:, None] - Fb[None, :]) / np.where(same, 1, den))
            phia = np.broadcast_to(np.asarray(pa(*[ka if a == ua.name else scal[a] for a in na])), ka.shape)
            phib = np.broadcast_to(np.asarray(pb(*[kb if a == ub.name else scal[a] for a in nb])), kb.shape)
            out = phia[:, None] * D * phib[None, :]
            return out if where[kap[ua][0]] == (-1, 1) else out.T
        if self.split is not None:
            (fa, na), (fb, nb) = self.split
            ua, ub = self.us
            A = _table(fa, na, arrs, env, scal, ua, d)
            B = _table(fb, nb, arrs, env, scal, ub, d)
            out = (A * c) @ B.T
            return out if where[kap[ua][0]] == (-1, 1) else out.T
        f, names = self.whole
        cols = [np.asarray(env[a] if a in env else scal[a]) for a in names]
        shape = np.broadcast_shapes(*[np.shape(x) for x in cols]) if cols else ()
        if not shape or int(np.prod(shape)) * d <= CHUNK:
            vals = f(*arrs, *[x[..., None] for x in cols])
            return np.sum(np.asarray(vals) * c, axis=-1)
        # (nodes × nodes × spectrum) in slices of the first axis: memory bounded by CHUNK entries
        cols = [np.broadcast_to(x, shape) for x in cols]
        step = max(1, CHUNK // max(1, int(np.prod(shape[1:])) * d))
        out = np.empty(shape, dtype=complex)
        for i in range(0, shape[0], step):
            vals = f(*arrs, *[x[i:i + step][..., None] for x in cols])
            out[i:i + step] = np.sum(np.asarray(vals) * c, axis=-1)
        return out


def _simple_pole(f, u, entries):
    """``(φ(u), e)`` with ``f = φ(u)/(e + u)``, ``e`` a function of the entries
    only and ``φ`` free of them; else ``None``."""
    pole, phi = None, sp.S.One
    for fac in sp.Mul.make_args(f):
        if fac.free_symbols & set(entries):
            b, k = fac.as_base_exp()
            if pole is not None or k != -1 or not isinstance(b, sp.Add):
                return None
            e = b - u
            if e.has(u) or sp.expand(b - e - u) != 0:
                return None
            pole = e
        else:
            phi *= fac
    return None if pole is None else (phi, pole)


def _entry_fn(e, entries):
    free = sorted(e.free_symbols - set(entries), key=str)
    return sp.lambdify(list(entries) + free, e, modules="numpy"), [x.name for x in free]


def _table(f, names, arrs, env, scal, u, d):
    cols = [np.asarray(env[a]).reshape(-1)[:, None] if a in env else scal[a] for a in names]
    n = np.asarray(env[u.name]).size
    return np.broadcast_to(np.asarray(f(*arrs, *cols)), (n, d))


def _diag_fn(M, vectors):
    """``f(s)`` with ``M = diag(f(s_i))`` for diagonal bindings."""
    if isinstance(M, MatrixSymbol):
        if M.name not in vectors:
            raise NotImplementedError(f"curve: {M} has no diagonal binding")
        return sp.Symbol(f"contour_diag_{M.name}")
    if isinstance(M, Identity):
        return sp.S.One
    if isinstance(M, ZeroMatrix):
        return sp.S.Zero
    if isinstance(M, Transpose):
        return _diag_fn(M.arg, vectors)
    if isinstance(M, Inverse):
        return 1 / _diag_fn(M.arg, vectors)
    if isinstance(M, MatPow):
        return _diag_fn(M.base, vectors) ** M.exp
    if isinstance(M, MatMul):
        return sp.Mul(*[_diag_fn(a, vectors) if getattr(a, "is_Matrix", False) else a for a in M.args])
    if isinstance(M, MatAdd):
        return sp.Add(*[_diag_fn(a, vectors) for a in M.args])
    if not getattr(M, "is_Matrix", False):
        return M
    raise NotImplementedError(f"curve: {M} is not a function of diagonal matrices")


def _parts(f, vectors):
    """``(None or (u, v) names, f(s))`` of ``Tr``/``Form`` ``f``."""
    if isinstance(f, Tr):
        return None, _diag_fn(f.arg, vectors)
    M = f.arg
    args = list(M.args) if isinstance(M, MatMul) else [M]
    coeff = sp.Mul(*[a for a in args if not getattr(a, "is_Matrix", False)])
    mats = [a for a in args if getattr(a, "is_Matrix", False)]
    u, v = mats[0], mats[-1]
    if not (isinstance(u, Transpose) and isinstance(u.arg, MatrixSymbol) and isinstance(v, MatrixSymbol)
            and u.arg.shape[1] == 1 and v.shape[1] == 1):
        raise NotImplementedError(f"curve: the form {f} is not uᵀMv")
    for x in (u.arg, v):
        if x.name not in vectors:
            raise NotImplementedError(f"curve: the vector {x} has no binding")
    mid = mats[1:-1]
    return (u.arg.name, v.name), coeff * (sp.Mul(*[_diag_fn(m, vectors) for m in mid]) if mid else sp.S.One)


def _functional(a, vec, scal):
    """A constant functional at the bindings (its inner functionals already in ``scal``)."""
    if isinstance(a, Norm):
        if not isinstance(a.arg, MatrixSymbol) or a.arg.name not in vec:
            raise NotImplementedError(f"curve: the spectral norm {a}")
        return float(np.max(np.abs(vec[a.arg.name])))
    c, e = _parts(a, set(vec))
    entries = sorted({x for x in e.free_symbols if x.name.startswith("contour_diag_")}, key=str)
    f, names = _entry_fn(e, entries)
    arrs = [vec[x.name[len("contour_diag_"):]] for x in entries]
    vals = np.asarray(f(*arrs, *[scal[n] for n in names]))
    if c is not None:
        vals = vals * vec[c[0]] * vec[c[1]]
    d = max([len(x) for x in arrs] + ([len(vec[c[0]])] if c is not None else []) + [1])
    return np.sum(np.broadcast_to(vals, (d,)))


# ------------------------------------------------------------------ full-matrix (dense) bindings
def _dense_binding(name, v):
    """A full ``d×d`` matrix binding: finite, real, square."""
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"curve: binding {name!r} must be a real matrix") from None
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"curve: binding {name!r} must be a square matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"curve: binding {name!r} must be finite")
    return a


def _group_key(g, th, thetas):
    """The equations of a group up to the names of its contour variable and
    its unknowns: groups with equal keys have equal values at equal nodes."""
    hit = _KEYS.get(id(g))
    if hit is not None and hit[0] is g:
        return hit[1]
    common = sp.Symbol("contour_common")
    us = {u: sp.Symbol(f"contour_unknown{i}") for i, u in enumerate(g.unknowns)}
    rep = {v: (common if thetas[v] == th else thetas[v]) for v in thetas}
    rep.update({th: common, **us})
    z = sp.sympify(g.z).xreplace(rep)
    eqs = tuple(e.xreplace(rep) for e in g.equations)
    key = (g.kind, z, eqs)
    _KEYS[id(g)] = (g, key)
    return key


_KEYS = {}


class _DenseEval:
    """Values of matrix expressions at the contour nodes for full-matrix
    bindings (pooled/shifted cores, non-commuting ``Σ_k``, ``B``).

    A factor depends on at most one contour variable ``θ`` (directly or
    through the unknowns solved on that contour) and is held as an
    ``(N, p, q)`` array over the nodes (``(p, q)`` when constant; vectors are
    columns). Its value depends only on the factor *up to the names of θ and
    of the unknowns* (:func:`_group_key`): the cache is keyed by that
    canonical form, so the resolvent ``(Σ_k c_kρ_k(θ)Σ_k + B − z(θ))⁻¹`` is
    inverted once per node for every word of the value, whichever contour
    variable the word's integral was given. A trace of factors on two
    contours, ``Tr[L(θ) M(θ')]`` with ``L`` the product of the factors on
    ``θ`` (and constants), ``M`` the rest, read cyclically, is the matrix
    product ``T_kl = Σ_ij L_k,ij M_l,ji`` over the node pairs (``L``, ``M``
    flattened to ``N × pq``); words that alternate between the two contours
    more than once are refused by name."""

    def __init__(self, thetas, theta_of, canon):
        self.thetas = thetas
        self.theta_of = theta_of
        self.canon = canon
        self.scalar_fns = {}
        self.deps_memo = {}

    def deps(self, e):
        r = self.deps_memo.get(e)
        if r is None:
            r = set()
            for x in e.free_symbols:
                if x in self.thetas:
                    r.add(x)
                elif x in self.theta_of:
                    r.add(self.theta_of[x])
            r = self.deps_memo[e] = frozenset(r)
        return r

    # -- scalars
    def scalar(self, e, nodes, kap, scal):
        """A scalar expression on one contour: ``(N,)`` array (or a number)."""
        e = sp.sympify(e)
        if e.is_Number:
            return complex(e)
        key = e.xreplace(self.canon)
        hit = self.scalar_fns.get(key)
        if hit is None:
            free = sorted(key.free_symbols, key=str)
            hit = self.scalar_fns[key] = (sp.lambdify(free, key, modules="numpy"), free)
        f, free = hit
        inv = {v: k for k, v in self.canon.items() if k in e.free_symbols}
        args = []
        for x in free:
            orig = inv.get(x, x)
            if orig in self.thetas:
                args.append(nodes)
            elif orig in kap:
                args.append(kap[orig][1])
            elif x.name in scal:
                args.append(scal[x.name])
            else:
                raise NotImplementedError(f"curve: no value for {x} in {e}")
        return np.asarray(f(*args), dtype=complex)

    # -- matrices
    def matrix(self, M, nodes, kap, vec, scal, cache):
        """``M`` (one contour at most) as ``(N, p, q)`` or ``(p, q)``."""
        if len(self.deps(M)) > 1:
            raise NotImplementedError(f"curve: the factor {M} depends on two contour variables")
        key = ("m", M.xreplace(self.canon)) if self.deps(M) else ("m", M)
        out = cache.get(key)
        if out is None:
            out = cache[key] = self._matrix(M, nodes, kap, vec, scal, cache)
        return out

    def _dim(self, k, scal):
        k = sp.sympify(k)
        return int(round(float(k.xreplace({x: scal[x.name] for x in k.free_symbols}))))

    def _matrix(self, M, nodes, kap, vec, scal, cache):
        if isinstance(M, MatrixSymbol):
            if M.name not in vec:
                raise NotImplementedError(f"curve: {M} has no binding")
            v = vec[M.name]
            return v[:, None] if v.ndim == 1 else v
        if isinstance(M, Identity):
            return np.eye(self._dim(M.shape[0], scal))
        if isinstance(M, ZeroMatrix):
            return np.zeros((self._dim(M.shape[0], scal), self._dim(M.shape[1], scal)))
        if isinstance(M, Transpose):
            return np.swapaxes(self.matrix(M.arg, nodes, kap, vec, scal, cache), -1, -2)
        if isinstance(M, Inverse):
            return np.linalg.inv(self.matrix(M.arg, nodes, kap, vec, scal, cache))
        if isinstance(M, MatPow) and sp.sympify(M.exp).is_integer:
            A = self.matrix(M.base, nodes, kap, vec, scal, cache)
            k = int(M.exp)
            return np.linalg.matrix_power(np.linalg.inv(A) if k < 0 else A, abs(k))
        if isinstance(M, MatMul):
            c, mats = M.as_coeff_matrices()
            out = None
            for m in mats:
                a = self.matrix(m, nodes, kap, vec, scal, cache)
                out = a if out is None else out @ a
            return _scale(self.scalar(c, nodes, kap, scal), out)
        if isinstance(M, MatAdd):
            out = 0
            for a in M.args:
                out = out + self.matrix(a, nodes, kap, vec, scal, cache)
            return out
        raise NotImplementedError(f"curve: cannot evaluate the matrix {M} for full-matrix bindings")

    # -- traces and forms
    def trace(self, arg, where, nodes, kap, vec, scal, cache, rows=None, outer=None):
        """``Tr[arg]`` (a form ``uᵀMv`` is the trace of the ``1×1`` product)
        on the node grid: a number, ``(N,)`` on one contour (all nodes), ``(N, N)``
        on two (oriented by ``where``; only ``rows`` of the ``outer`` contour
        when given)."""
        if isinstance(arg, MatAdd):
            out = 0
            for a in arg.args:
                out = out + self.trace(a, where, nodes, kap, vec, scal, cache, rows, outer)
            return out
        c, mats = arg.as_coeff_matrices() if isinstance(arg, MatMul) else (sp.S.One, [arg])
        cdeps = self.deps(sp.sympify(c))
        if cdeps:
            raise NotImplementedError(f"curve: the coefficient {c} of {arg} depends on a contour variable")
        c = complex(self.scalar(c, nodes, kap, scal)) if sp.sympify(c).free_symbols else complex(c)
        tags = []
        for m in mats:
            dm = self.deps(m)
            if len(dm) > 1:
                raise NotImplementedError(f"curve: the factor {m} depends on two contour variables")
            tags.append(next(iter(dm)) if dm else None)
        on = sorted({x for x in tags if x is not None}, key=str)
        if len(on) > 2:
            raise NotImplementedError(f"curve: the trace of {arg} involves more than two contour variables")
        if len(on) <= 1:
            key = ("tr", arg.xreplace(self.canon) if on else arg)
            out = cache.get(key)
            if out is None:
                vals = [self.matrix(m, nodes, kap, vec, scal, cache) for m in mats]
                out = vals[0]
                for v in vals[1:]:
                    out = out @ v
                out = cache[key] = c * np.trace(out, axis1=-2, axis2=-1)
            return out
        pair = cache.get(("pair", arg))
        if pair is not None:
            return self._pair(pair, where, rows, outer)
        vals = [self.matrix(m, nodes, kap, vec, scal, cache) for m in mats]
        # read cyclically: one run on θa, one on θb (constants between runs go with either)
        k = len(vals)
        nz = [i for i in range(k) if tags[i] is not None]
        cuts = [j for j in range(len(nz)) if tags[nz[j]] != tags[nz[j - 1]]]
        if len(cuts) != 2:
            raise NotImplementedError(
                f"curve: the trace of {arg} alternates between two contours more than once; use de.compile()")
        # start at 0 (a form's uᵀ stays first) when the first factor on a contour opens a run
        start = 0 if cuts[0] == 0 else nz[cuts[0]]
        seq = [(r + start) % k for r in range(k)]
        first = next(tags[j] for j in seq if tags[j] is not None)
        split = next(i for i, j in enumerate(seq) if tags[j] is not None and tags[j] != first)
        L = vals[seq[0]]
        for j in seq[1:split]:
            L = L @ vals[j]
        Rm = vals[seq[split]]
        for j in seq[split + 1:]:
            Rm = Rm @ vals[j]
        N = len(nodes)
        L = np.broadcast_to(L, (N,) + L.shape[-2:])
        Rm = np.broadcast_to(Rm, (N,) + Rm.shape[-2:])
        pair = cache[("pair", arg)] = (c, first, L, Rm)
        return self._pair(pair, where, rows, outer)

    @staticmethod
    def _pair(pair, where, rows, outer):
        """``T[k, l] = c·Tr[L_k R_l]`` (first contour on axis 0), oriented by
        ``where``; only ``rows`` of the ``outer`` contour when given."""
        c, first, L, Rm = pair
        if rows is None:
            T = c * _pair_trace(L, Rm)
            return T if where[first] == (-1, 1) else T.T
        if first == outer:
            return c * _pair_trace(L[rows], Rm)
        return (c * _pair_trace(L, Rm[rows])).T


#: entries of one block of :func:`_pair_trace` (``rows × p·q`` complex numbers)
PAIR_CHUNK = 2 ** 21


def _pair_trace(L, R):
    """``T[k, l] = Tr[L_k R_l] = Σ_ij L_k,ij R_l,ji`` for ``L: (N, p, q)``,
    ``R: (N, q, p)``: one matrix product of the flattened arrays, in blocks of
    rows so that at most ``PAIR_CHUNK`` entries are copied at once."""
    N, p, q = L.shape
    Lf = L.reshape(N, p * q)
    Rf = np.swapaxes(R, -1, -2).reshape(R.shape[0], p * q)
    step = max(1, PAIR_CHUNK // max(1, p * q))
    if step >= N:
        return Lf @ Rf.T
    out = np.empty((N, R.shape[0]), dtype=np.result_type(Lf, Rf))
    for i in range(0, N, step):
        out[i:i + step] = Lf[i:i + step] @ Rf.T
    return out


def _scale(c, A):
    c = np.asarray(c)
    if c.ndim == 0:
        return complex(c) * A if np.iscomplexobj(c) and c.imag != 0 else c.real * A if c.imag == 0 else c * A
    return c[:, None, None] * A


class _DenseSum:
    """A ``Tr``/``Form`` of the kernel for full-matrix bindings (:class:`_DenseEval`)."""

    def __init__(self, a, evaluator):
        self.a, self.ev = a, evaluator

    def __call__(self, env, kap, where, vec, scal, cache, nodes=None, rows=None, outer=None):
        v = np.asarray(self.ev.trace(self.a.arg, where, nodes, kap, vec, scal, cache, rows=rows, outer=outer))
        if v.ndim == 1:
            (ax,) = self.ev.deps(self.a.arg)
            return (v[rows] if ax == outer else v).reshape(where[ax])
        return v


def _dense_functional(a, vec, scal):
    """A constant functional at full-matrix bindings."""
    if isinstance(a, Norm):
        if not isinstance(a.arg, MatrixSymbol) or a.arg.name not in vec:
            raise NotImplementedError(f"curve: the spectral norm {a}")
        return float(np.linalg.norm(vec[a.arg.name], 2))
    ev = _DenseEval(set(), {}, {})
    return complex(ev.trace(a.arg, {}, np.zeros(1), {}, vec, scal, {}))


# ------------------------------------------------------------------ structure
def _integral_terms(I, over_syms, unknowns, thetas):
    """``({(P, θ): Q}, {(P, P', θ, θ'): K})`` for ``I = ∮ Σ P Q dθ + ∮ Σ P ∮ Σ P' K dθ' dθ``."""
    (th, a, b), = I.limits if len(I.limits) == 1 else ((None, None, None),)
    if th is None or a != 0 or b != 2 * sp.pi:
        raise NotImplementedError(f"curve: only contour integrals over [0, 2π] are handled, got limits {I.limits}")
    single, double = {}, {}
    for P, Q, inner in _split(I.function, over_syms, unknowns):
        _check_weight(P, th, thetas)
        if inner is None:
            single[(P, th)] = single.get((P, th), 0) + Q
            continue
        (th2, a2, b2), = inner.limits if len(inner.limits) == 1 else ((None, None, None),)
        if th2 is None or a2 != 0 or b2 != 2 * sp.pi:
            raise NotImplementedError(f"curve: only contour integrals over [0, 2π] are handled, got {inner.limits}")
        for P2, Q2, inner2 in _split(inner.function, over_syms, unknowns):
            if inner2 is not None:
                raise NotImplementedError("curve: contour integrals nested more than twice")
            _check_weight(P2, th2, thetas)
            key = (P, P2, th, th2)
            double[key] = double.get(key, 0) + Q * Q2
    return single, double


def _check_weight(P, th, thetas):
    others = (P.free_symbols & set(thetas)) - {th}
    if others:
        raise NotImplementedError(f"curve: the weight {P} of {th} depends on another integration variable")


def _split(f, over_syms, unknowns):
    """``[(P, Q, inner)]`` with ``f = Σ P·Q·inner``: ``P`` the factors holding
    curve parameters (no unknowns, no spectral sums), ``Q`` the rest,
    ``inner`` an ``Integral`` factor or ``None``."""
    if isinstance(f, sp.Add):
        return [t for a in f.args for t in _split(a, over_syms, unknowns)]
    out = [(sp.S.One, sp.S.One, None)]
    for fac in sp.Mul.make_args(f):
        if isinstance(fac, sp.Integral):
            if any(i is not None for _, _, i in out):
                raise NotImplementedError(f"curve: a product of two integrals in {f}")
            out = [(P, Q, fac) for P, Q, _ in out]
        elif fac.has(sp.Integral) or (fac.free_symbols & over_syms and
                                      (fac.free_symbols & unknowns or fac.has(Tr, Form))):
            if not isinstance(fac, sp.Add):
                raise NotImplementedError(
                    f"curve: the curve parameters {sorted(map(str, over_syms))} or an integral enter {fac} "
                    "together with random-matrix quantities; evaluate with de.compile() on the grid instead")
            sub = _split(fac, over_syms, unknowns)
            out = [(P * p, Q * q, _one(i, j, f)) for P, Q, i in out for p, q, j in sub]
        elif not (fac.free_symbols & over_syms):
            out = [(P, Q * fac, i) for P, Q, i in out]
        else:
            out = [(P * fac, Q, i) for P, Q, i in out]
    return out


def _one(i, j, f):
    if i is not None and j is not None:
        raise NotImplementedError(f"curve: a product of two integrals in {f}")
    return i if i is not None else j
