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

Anything outside this form (a parameter of the curve inside a kernel, an
integral nested more than twice, a non-contour integral, an unknown outside
the integrals, a full-matrix binding) raises ``NotImplementedError`` naming
the piece: use ``de.compile()`` on the grid instead (slower, same numbers).
The symbolic preparation is cached per derived value and curve parameters.
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
    if not over:
        raise ValueError("curve: name at least one parameter of the curve in `over`")
    missing = [k for k in over if k not in bindings]
    if missing:
        raise ValueError(f"curve: the curve parameters {missing} have no binding")
    if not (0 < rtol < 1):
        raise ValueError(f"curve: rtol must be in (0, 1), got {rtol!r}")
    shape = np.broadcast_shapes(*[np.shape(bindings[k]) for k in over])
    G = int(np.prod(shape)) if shape else 1
    grid = {k: np.broadcast_to(np.asarray(bindings[k]), shape).reshape(-1) for k in over}
    grid = {k: (v if v.dtype.kind in "iu" else v.astype(float)) for k, v in grid.items()}
    fixed = {k: v for k, v in bindings.items() if k not in over}
    vec = {}
    for k, v in fixed.items():
        if np.ndim(v) == 0:
            continue
        if np.ndim(v) != 1:
            raise NotImplementedError(
                f"curve: binding {k!r} is not diagonal (give covariances by their eigenvalues, vectors in that "
                "eigenbasis); use de.compile() for full matrices")
        vec[k] = np.asarray(v, dtype=float)
    key = (id(de), over, tuple(sorted(vec)))
    prep = _CACHE.get(key)
    if prep is None or prep.de is not de:
        prep = _CACHE[key] = _Prepared(de, over, set(vec))
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
        scal[sym.name] = float(np.real(_functional(atom, vec, scal)))
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
        for u, (tsym, f, names, same) in prep.solvers.items():
            if same not in solved:      # the same equation on the same contour: solved once
                res = f.solve(**{k: solver_bind[k] for k in names if k in solver_bind}, **{tsym.name: th},
                              options=dict(raise_on_failure=False))
                ok_nodes &= bool(np.all(res.converged))
                solved[same] = np.asarray(res.x[prep.solver_unknown[u].name], dtype=complex).reshape(-1)
            kap[u] = (tsym, solved[same])
        Js = []
        for terms in prep.plans:
            J = np.zeros(G, dtype=complex)
            for term in terms:
                Pm = term.P(th, grid, scal, G)                                  # G × N
                if term.inner is None:
                    q = term.kernel(th, kap, vec, scal)
                    J += W * (Pm @ np.broadcast_to(q, (N,)))
                else:
                    K = np.broadcast_to(term.kernel(th, kap, vec, scal), (N, N))
                    J += W * W * np.einsum("gk,gk->g", Pm @ K, term.P2(th, grid, scal, G))
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

    def __init__(self, de, over, vectors):
        from ..equivalence.spectral_fn import ContourScale
        from .compiled import _replace
        from .quadrature import find_integrals
        self.de = de
        self.syms = {x.name: x for x in sp.sympify(de.value).free_symbols | de.expr.free_symbols
                     if isinstance(x, sp.Symbol)}
        unknowns = {u for g in de.groups for u in g.unknowns}
        value = sp.sympify(de.value)
        groups = list(de.groups)
        self.dims = {x for m in de.expr.atoms(MatrixSymbol) for dim in m.shape for x in sp.sympify(dim).free_symbols}
        over_syms = {s for s in value.free_symbols if s.name in over}
        for g in groups:
            inside = {x.name for e in (sp.sympify(g.z), *g.equations) for x in e.free_symbols} & set(over)
            # the contour (hence z) may depend on them only through a ContourScale
            eqs = [e.replace(lambda a: isinstance(a, ContourScale), lambda a: sp.S.One) for e in g.equations]
            z = sp.sympify(g.z).replace(lambda a: isinstance(a, ContourScale), lambda a: sp.S.One)
            inside = {x.name for e in (z, *eqs) for x in e.free_symbols} & set(over)
            if inside:
                raise NotImplementedError(f"curve: the curve parameters {sorted(inside)} enter the self-consistent "
                                          f"equation of {g.unknowns}; evaluate with de.compile() on the grid")
        matnames = {m.name for m in value.atoms(MatrixSymbol)}

        # constant functionals (of bindings only) → symbols, innermost first
        self.consts = []
        rep_all = {}

        def constant(a, known):
            return all(isinstance(x, MatrixSymbol) or x in known for x in a.free_symbols)

        while True:
            exprs = [value] + [sp.sympify(g.z) for g in groups] + [e for g in groups for e in g.equations]
            base = set().union(*[e.free_symbols for e in exprs]) - unknowns - over_syms
            known = {x for x in base if not isinstance(x, MatrixSymbol)
                     and not any(x in I.variables for I in value.atoms(sp.Integral))} | self.dims | \
                {s for s, _ in self.consts}
            atoms = set().union(*[e.atoms(Tr, Form, Norm) for e in exprs])
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
            value = _replace(value, rep)
            groups = [dataclasses.replace(g, z=sp.sympify(g.z).xreplace(rep),
                                          equations=tuple(e.xreplace(rep) for e in g.equations)) for g in groups]
        # contour scales → symbols; their arguments evaluated over the grid
        self.scales = []
        srep = {}
        for a in sorted(set(value.atoms(ContourScale)).union(*[sp.sympify(g.z).atoms(ContourScale) for g in groups]),
                        key=sp.default_sort_key):
            sym = sp.Symbol(f"contour_A{len(self.scales)}", positive=True)
            args = sorted(a.args[0].free_symbols, key=str)
            if any(x in unknowns or isinstance(x, MatrixSymbol) for x in args) or a.args[0].has(Tr, Form, Norm):
                raise NotImplementedError(f"curve: the contour scale {a} depends on random-matrix quantities")
            self.scales.append((sym, sp.lambdify(args, a.args[0], modules="numpy"), [x.name for x in args]))
            srep[a] = sym
        value = _replace(value, srep)
        groups = [dataclasses.replace(g, z=sp.sympify(g.z).xreplace(srep),
                                      equations=tuple(e.xreplace(srep) for e in g.equations)) for g in groups]

        ints = [I for I in sp.preorder_traversal(value) if isinstance(I, sp.Integral)]
        thetas = {}
        for I in ints:
            for v in I.variables:
                thetas.setdefault(v, sp.Symbol(f"contour_{v.name.lstrip('_')}_{len(thetas)}", real=True))
        self.thetas = thetas
        params = {s for s, _ in self.consts} | {s for s, _, _ in self.scales}
        top, found = find_integrals(value)
        if top.free_symbols & unknowns or top.has(Tr, Form, Norm):
            raise NotImplementedError(f"curve: unknowns or spectral sums outside the integrals in {top}")
        plain = sorted((top.free_symbols - {s for s, _ in found}), key=str)
        self.top_args = [x.name for x in plain]
        self.top = sp.lambdify([s for s, _ in found] + plain, top, modules="numpy")
        self.scalars = sorted({x.name for x in value.free_symbols
                               if not isinstance(x, MatrixSymbol) and x not in unknowns and x not in over_syms
                               and x not in params and x not in thetas and x.name not in matnames}
                              - {x.name for x in self.dims})
        self.plans = []
        for _, I in found:
            single, double = _integral_terms(I, over_syms, unknowns, thetas)
            terms = []
            for (P, outer), Q in single.items():
                t = _Term()
                t.inner = None
                t.P = _weight(P.xreplace(thetas), thetas[outer])
                t.kernel = _Kernel(Q.xreplace(thetas), (thetas[outer],), unknowns, vectors)
                terms.append(t)
            for (P, P2, outer, inner), K in double.items():
                t = _Term()
                t.inner = thetas[inner]
                t.P = _weight(P.xreplace(thetas), thetas[outer])
                t.P2 = _weight(P2.xreplace(thetas), thetas[inner])
                t.kernel = _Kernel(K.xreplace(thetas), (thetas[outer], thetas[inner]), unknowns, vectors)
                terms.append(t)
            self.plans.append(terms)
        # κ of each contour, solved by the engine at that contour's nodes
        self.solvers, self.solver_unknown, compiled_by, solved_name = {}, {}, {}, {}
        for g in groups:
            th = [thetas[v] for v in sp.sympify(g.z).free_symbols if v in thetas]
            if len(th) != 1:
                raise NotImplementedError(f"curve: the spectral parameter {g.z} depends on {len(th)} integration "
                                          "variables")
            g2 = dataclasses.replace(g, z=sp.sympify(g.z).xreplace(thetas),
                                     equations=tuple(e.xreplace(thetas) for e in g.equations))
            if len(g.unknowns) != 1:
                raise NotImplementedError(f"curve: the group {g.unknowns} has several unknowns")
            u = g.unknowns[0]
            common = sp.Symbol("contour_common")
            same = (g.kind, sp.srepr(sp.sympify(g2.z).xreplace({th[0]: common})),
                    sp.srepr(tuple(e.xreplace({th[0]: common, u: common}) for e in g2.equations)))
            f = compiled_by.get(same)
            if f is None:
                f = compiled_by[same] = _fake(de, u, [g2]).compile()
                solved_name[same] = u
            self.solvers[u] = (th[0], f, set(f.parameters), same)
            self.solver_unknown[u] = solved_name[same]


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

    def __init__(self, Q, axes, unknowns, vectors):
        self.axes = axes
        self.sums = []
        rep = {}
        for a in sorted(Q.atoms(Tr, Form), key=sp.default_sort_key):
            sym = sp.Symbol(f"contour_f{len(rep)}")
            rep[a] = sym
            self.sums.append((sym.name, _Sum(a, unknowns, vectors)))
        if Q.atoms(Norm):
            raise NotImplementedError(f"curve: a spectral norm inside the kernel {Q}")
        e = Q.xreplace(rep)
        free = sorted(e.free_symbols, key=str)
        self.names = [x.name for x in free]
        self.fn = sp.lambdify(free, e, modules="numpy")

    def __call__(self, nodes, kap, vec, scal):
        env, where = {}, {}
        for i, ax in enumerate(self.axes):
            shp = [1] * len(self.axes)
            shp[i] = -1
            where[ax] = tuple(shp)
            env[ax.name] = nodes.reshape(shp)
        for u, (tsym, vals) in kap.items():
            if tsym in where:
                env[u.name] = vals.reshape(where[tsym])
        for name, s in self.sums:
            env[name] = s(env, kap, where, vec, scal)
        return np.asarray(self.fn(*[env[a] if a in env else scal[a] for a in self.names]), dtype=complex)


class _Sum:
    """``Tr f(Σ) = Σ_i f(s_i)`` or ``uᵀf(Σ)v = Σ_i u_i v_i f(s_i)``."""

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

    def __call__(self, env, kap, where, vec, scal):
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
