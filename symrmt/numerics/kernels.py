"""Numeric evaluation of lowered expressions over a grid of points.

A :class:`Stage` evaluates a list of scalar SymPy expressions (already
lowered by :mod:`.lower`) at many grid points at once. It first computes
the contractions they use and then one lambdified function of everything.

* :class:`~.lower.DiagSum` reductions of one space are fused into a single
  lambdified function with common subexpressions shared (``s+κ`` is formed
  once for ``Σ s/(s+κ)`` and ``Σ s/(s+κ)²``), evaluated on ``(points, 1) ×
  (entries,)`` arrays and summed over the entries (weighted by multiplicity
  when repeated eigenvalues were merged).
* :class:`~.lower.Chain` contractions become one ``einsum`` whose operands
  are diagonal factors ``(points, d)``, bound matrices ``(d, d)`` and dense
  per-point blocks ``(points, d, d)``; e.g. ``Tr[f(Σ)Ag(Σ)B]`` is
  ``einsum('zi,ij,zj,ji->z')``, which costs ``O(points·d²)``.
* :class:`~.lower.Dense` blocks (inverses of non-diagonal sums …) use batched
  dense linear algebra, in chunks of points to bound memory.

Grid values in ``env`` are 1-D arrays over the active points; anything else
is a scalar shared by all points.
"""
from __future__ import annotations

import string

import numpy as np
import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix

from .lower import Chain, Dense, Diag, DiagSum, Full

_DENSE_CHUNK_ELEMENTS = 2 ** 24   # entries of (points, r, c) blocks held at once
#: contractions with dense factors share their dense sub-expressions within a
#: chunk of points of one :class:`Stage` call (:func:`_dense_chains`); ``False``
#: evaluates each contraction on its own (the former path, kept for comparison)
SHARE_DENSE = True
_BLOCK_ELEMENTS = 2 ** 14          # (points, entries) elements per block of a reduction
#: key of ``env`` set by quadrature: the points are a ``(P, q)`` tensor (outer
#: point × node), see :class:`_TensorSum`
TENSOR = "__tensor__"
_TENSOR_ELEMENTS = 2 ** 23         # (rows, entries) elements of one tensor-product factor


def _is_grid(v):
    return isinstance(v, np.ndarray) and v.ndim == 1


def _col(v):
    return v[:, None] if _is_grid(v) else v


def _scalar_syms(expr):
    """Scalars an expression needs per point: bindings, unknowns and contraction placeholders."""
    return sorted((s for s in expr.free_symbols if not s.name.startswith("__e_")), key=str)


def _placeholders(expr):
    return {s for s in expr.free_symbols if s.name.startswith("__c")}


def _depends_on(c):
    """Placeholders a contraction's own expressions use (functionals inside coefficients)."""
    if isinstance(c, DiagSum):
        return _placeholders(c.expr)
    out = set()
    for f in c.factors:
        if isinstance(f, Diag):
            out |= _placeholders(f.expr)
        elif isinstance(f, Dense):
            out |= {s for s in f.expr.free_symbols if isinstance(s, sp.Symbol) and s.name.startswith("__c")}
    return out


def _entry_syms(expr):
    return sorted((s for s in expr.free_symbols if s.name.startswith("__e_")), key=str)


class _Fused:
    """Elementwise functions of one space's entries, evaluated together."""

    def __init__(self, backend, exprs, space):
        self.space = space
        self.entries = sorted({s for e in exprs for s in _entry_syms(e)}, key=str)
        self.names = [s.name[4:] for s in self.entries]
        self.scalars = sorted({s for e in exprs for s in _scalar_syms(e)}, key=str)
        self.fn = backend.lambdify(self.entries + self.scalars, exprs)
        self.fn_exprs = list(exprs)
        self.backend = backend

    def elementwise(self, env, bound, compress):
        ent, w = bound.entries(self.space, self.names, compress=compress)
        args = [ent[n] for n in self.names] + [_col(env[s.name]) for s in self.scalars]
        return self.fn(*args), w

    def sums(self, env, bound):
        if TENSOR in env and self.backend.name == "numpy":
            out = self._tensor_sums(env, bound)
            if out is not None:
                return out
        ent, w = bound.entries(self.space, self.names, compress=True)
        ents = [ent[n] for n in self.names]
        scal = [env[s.name] for s in self.scalars]
        npts = next((len(v) for v in scal if _is_grid(v)), 0)
        size = len(ents[0]) if ents else 1
        block = max(1, _BLOCK_ELEMENTS // size)
        if npts <= block or self.backend.name != "numpy":
            return self._sums(ents, [_col(v) for v in scal], w)
        # blocks of grid points whose (points, entries) temporaries stay in cache:
        # several times faster than one pass over the whole (points, entries) array
        parts = [self._sums(ents, [_col(v[lo:lo + block]) if _is_grid(v) else v for v in scal], w)
                 for lo in range(0, npts, block)]
        return [np.concatenate([np.broadcast_to(p[i], (min(block, npts - k * block),))
                                for k, p in enumerate(parts)]) for i in range(len(parts[0]))]

    def _tensor_sums(self, env, bound):
        """Each sum through :class:`_TensorSum` (one fused function for
        those it declines); ``None`` when it declines every one."""
        if not hasattr(self, "_tensor"):
            self._tensor = [_TensorSum(self.backend, e, self.space) for e in self.fn_exprs]
            self._single = {}
        out = [t(env, bound, compress=True) for t in self._tensor]
        rest = [i for i, v in enumerate(out) if v is None]
        if len(rest) == len(out):
            return None
        if rest:
            key = tuple(rest)
            if key not in self._single:
                self._single[key] = _Fused(self.backend, [self.fn_exprs[i] for i in rest], self.space)
            plain = {k: v for k, v in env.items() if k != TENSOR}
            for i, v in zip(rest, self._single[key].sums(plain, bound)):
                out[i] = v
        return out

    def _sums(self, ents, scal, w):
        out = []
        for v in self.fn(*ents, *scal):
            v = np.asarray(v)
            if v.dtype == object:      # mpmath: mpmath.fsum along the spectrum (fewer roundings, faster)
                out.append(self.backend.sum_last(v, w))
                continue
            out.append(v.sum(axis=-1) if w is None else v @ w)
        return out


class _TensorSum:
    """``Σ_k w_k f(e_k; scalars)`` at points that form a tensor, as one matrix product.

    Quadrature marks its extended points with ``env[TENSOR] = (P, q)``: the
    ``P·q`` points are ``q`` nodes of an integral at each of ``P`` outer points
    (row-major). Write the product ``f = A·B`` with ``A`` the factors whose
    scalars are constant along the nodes (read off the values) and ``B`` the
    others. ``B`` is evaluated once per distinct tuple of its scalars' values
    (``U`` rows: in ``∫∫ g(κ(θ₁), κ(θ₂)) dθ₂ dθ₁`` the inner ``κ(θ₂)`` is the
    same at every outer node) and ``A`` once per outer point; then

        ``Σ_k A_pk w_k B_uk = (A·diag(w)·Bᵀ)_pu``,

    one BLAS product, read at ``u = u(p, j)``. Where the outer points come in
    runs that each see their own node values — an inner integral at several
    grid points at once: ``κ(θ₂)`` depends on σ², not on ``θ₁`` — ``B`` is
    evaluated once per run and node, and ``C = A_g diag(w) B_gᵀ`` per run ``g``
    (:func:`_run_products`; before, these sums were direct, ``O(P·q·d)``
    elementwise evaluations: 3.6 s instead of 0.35 s on the diffusion
    recipe's six-point σ² grid at d = 40). The same terms are summed in
    another order (exact up to rounding). Declines (returns ``None``) where it
    would not save work (``P·U > 4·P·q``: ``B`` hardly repeats) or its
    factors would exceed ``_TENSOR_ELEMENTS``; the caller then sums directly.
    """

    def __init__(self, backend, expr, space):
        self.backend = backend
        self.expr = sp.sympify(expr)
        self.space = space
        self.args = sp.Mul.make_args(self.expr)
        self.entries = _entry_syms(self.expr)
        self.names = [s.name[4:] for s in self.entries]
        self.scalars = _scalar_syms(self.expr)
        self._fns = {}

    def _split(self, inner):
        key = frozenset(inner)
        if key not in self._fns:
            a = sp.Mul(*[x for x in self.args if not (x.free_symbols & key)])
            b = sp.Mul(*[x for x in self.args if x.free_symbols & key])
            sa, sb = _scalar_syms(a), _scalar_syms(b)
            ents = {e: sp.Symbol(f"_e{i}") for i, e in enumerate(self.entries)}
            # the factors up to the names of their arguments (positional): the same sum
            # under another integral of a variance (κ₃ for κ₁) shares its factors
            canon = [sp.srepr(f.xreplace({**ents, **{x: sp.Symbol(f"_s{i}") for i, x in enumerate(args)}}))
                     for f, args in ((a, sa), (b, sb))]
            self._fns[key] = (sa, self.backend.lambdify(self.entries + sa, [a]),
                              sb, self.backend.lambdify(self.entries + sb, [b]), canon)
        return self._fns[key]

    def __call__(self, env, bound, compress, weights=None):
        P, q = env[TENSOR]
        N = P * q
        if not self.names or q < 2:
            return None
        vals = {s: env[s.name] for s in self.scalars}
        inner = set()
        for s, v in vals.items():
            if _is_grid(v):
                if len(v) != N or v.dtype == object:
                    return None
                V = v.reshape(P, q)
                if not (V == V[:, :1]).all():
                    inner.add(s)
        ent, w = bound.entries(self.space, self.names, compress=compress)
        ents = [ent[n] for n in self.names]
        d = len(ents[0])
        if weights is not None and np.shape(weights) != (d,):
            return None
        if weights is not None:
            w = weights if w is None else w * weights
        sa, fa, sb, fb, canon = self._split(inner)
        grid_b = [vals[s] for s in sb if _is_grid(vals[s])]
        runs = None
        if grid_b and all((v.reshape(P, q) == v[:q]).all() for v in grid_b):
            # the usual case: every outer point sees the same node values (one grid point)
            first, inv = np.arange(q), np.tile(np.arange(q), P)
        elif grid_b and (runs := _row_runs(grid_b, P, q)) is not None:
            # outer points in a few groups, each seeing its own node values (an inner integral
            # at several grid points: κ(θ₂) depends on σ², not on θ₁): B per group
            first = (runs[:, None] * q + np.arange(q)).reshape(-1)
        elif grid_b:
            cols = []
            for v in grid_b:
                cols += [v.real, v.imag] if np.iscomplexobj(v) else [v]
            if d < _ROW_SORT_MIN_D:
                return None
            _, first, inv = np.unique(np.stack(cols, axis=1), axis=0, return_index=True, return_inverse=True)
            inv = inv.reshape(-1)
        else:
            first, inv = np.zeros(1, dtype=int), np.zeros(N, dtype=int)
        U = len(first)
        if (runs is None and P * U > 4 * N) or max(P, U) * d > _TENSOR_ELEMENTS:
            return None
        a_args = [_col(vals[s][::q]) if _is_grid(vals[s]) else vals[s] for s in sa]
        b_args = [_col(vals[s][first]) if _is_grid(vals[s]) else vals[s] for s in sb]
        spectrum = _digest(list(ents) + [w])
        ka = ("A", canon[0], P, spectrum, _digest(a_args))
        kb = ("B", canon[1], U, spectrum, _digest(b_args))
        A = _cached(ka, lambda: _times(np.broadcast_to(np.asarray(fa(*ents, *a_args)[0]), (P, d)), w))
        B = _cached(kb, lambda: np.ascontiguousarray(np.broadcast_to(np.asarray(fb(*ents, *b_args)[0]), (U, d))))
        if runs is not None:
            return _cached(("R", ka, kb, _digest([runs])), lambda: _run_products(A, B, runs, q)).reshape(-1)
        C = _cached(("C", ka, kb), lambda: A @ B.T)
        return C[np.repeat(np.arange(P), q), inv]


def _row_runs(grid_b, P, q):
    """The first rows of the runs of equal rows of the ``(P, q)`` node
    values (every array of ``grid_b`` read as ``P`` rows of ``q`` nodes):
    consecutive outer points that see the same node values — the layout of
    quadrature's extended points, grid point × outer node. ``None`` where
    runs are short (more than ``P/2`` of them: the factor over the nodes
    would hardly repeat) or a value is not a real or complex float."""
    if P < 2 or any(v.dtype.kind not in "fc" for v in grid_b):
        return None
    new = np.zeros(P, dtype=bool)
    new[0] = True
    for v in grid_b:
        V = v.reshape(P, q)
        new[1:] |= (V[1:] != V[:-1]).any(axis=1)     # NaN ≠ NaN: merely a new run
    first = np.nonzero(new)[0]
    if 2 * len(first) > P:
        return None
    return first


def _run_products(A, B, first, q):
    """``C[p, j] = Σ_k A[p, k] B[g(p)·q + j, k]`` for the runs ``g`` of outer
    points starting at ``first``: ``A_g B_gᵀ`` per run (one BLAS product
    each; one batched product when the runs are equally long, the usual
    layout of a grid of points × outer nodes)."""
    P, G = len(A), len(first)
    Bg = B.reshape(G, q, -1)
    if P % G == 0 and (first == np.arange(G) * (P // G)).all():
        return np.matmul(A.reshape(G, P // G, -1), Bg.transpose(0, 2, 1)).reshape(P, q)
    C = np.empty((P, q), dtype=np.result_type(A, B))
    for g, (lo, hi) in enumerate(zip(first, list(first[1:]) + [P])):
        C[lo:hi] = A[lo:hi] @ Bg[g].T
    return C


#: factors and products of :class:`_TensorSum`, by what they were computed from
#: (expression up to argument names, shape, spectrum and argument values):
#: ``A`` (one row per outer point) repeats at every level of an inner integral,
#: ``B`` (one row per node) at every outer chunk and level, and both under each
#: integral of a sum that uses the same sum at the same κ. Bounded in bytes.
_CACHE, _CACHE_BYTES = {}, [0]
#: node values that differ between outer points are deduplicated by a row sort
#: (``O(N log N)`` comparisons of rows) only for spectra at least this long: below,
#: the direct sums it would save (``O(N d)``) are cheaper — the diffusion recipe's
#: quick run (d ≤ 80) took 141 s with the sort and 87 s without
_ROW_SORT_MIN_D = 256
_CACHE_MAX_BYTES = 2 ** 26


def _cached(key, make):
    out = _CACHE.get(key)
    if out is None:
        out = make()
        if _CACHE_BYTES[0] + out.nbytes > _CACHE_MAX_BYTES:
            _CACHE.clear()
            _CACHE_BYTES[0] = 0
        _CACHE[key] = out
        _CACHE_BYTES[0] += out.nbytes
    return out


def _digest(args):
    """A key for scalar arguments: their values' bytes (arrays) or reprs."""
    return tuple((a.dtype.str, a.shape, a.tobytes()) if isinstance(a, np.ndarray) else repr(a) for a in args)


def _times(A, w):
    return np.ascontiguousarray(A) if w is None else A * w


class _DenseEval:
    """Batched dense evaluation of a matrix expression."""

    def __init__(self, backend, M):
        self.backend = backend
        self.M = M
        self.coeffs = {}
        self._prepare(M)

    def _prepare(self, M):
        if isinstance(M, MatMul):
            c, mats = M.as_coeff_matrices()
            if c != 1:
                syms = _scalar_syms(c)
                self.coeffs[M] = (syms, self.backend.lambdify(syms, [c]))
            for a in mats:
                self._prepare(a)
        elif isinstance(M, (MatAdd, Inverse, MatPow, Transpose)):
            for a in (M.args if not isinstance(M, (Inverse, MatPow)) else M.args[:1]):
                if isinstance(a, sp.MatrixExpr):
                    self._prepare(a)
            if isinstance(M, MatPow) and not M.args[1].is_Integer and not M.args[1].is_Rational:
                raise NotImplementedError(f"numerics: matrix power with symbolic exponent {M}")

    def __call__(self, env, bound, cache=None):
        """The matrix (stacked over the points of ``env``). ``cache``: a dict
        shared by the dense factors of one chunk of points of one
        :class:`Stage` call — every sub-expression (``(M + κ)⁻¹`` above all) is
        evaluated once there, and ``(M + κ)⁻²`` is the square of the cached
        inverse."""
        return self._eval(self.M, env, bound, cache)

    def _size(self, dim, bound):
        dim = sp.sympify(dim)
        if dim.is_number:
            return int(dim)
        return bound.sizes[dim]

    def _eval(self, M, env, bound, cache=None):
        if cache is None or isinstance(M, (MatrixSymbol, Identity, ZeroMatrix)):
            return self._eval1(M, env, bound, cache)
        out = cache.get(M)
        if out is None:
            out = cache[M] = self._eval1(M, env, bound, cache)
        return out

    def _eval1(self, M, env, bound, cache):
        be = self.backend
        if isinstance(M, MatrixSymbol):
            kind, arr = bound.mats[M.name]
            return dense_diag(arr) if kind == "diag" else arr
        if isinstance(M, Identity):
            n = self._size(M.shape[0], bound)
            return _eye(n, be)
        if isinstance(M, ZeroMatrix):
            return np.zeros((self._size(M.shape[0], bound), self._size(M.shape[1], bound)))
        if isinstance(M, MatAdd):
            parts = [self._eval(a, env, bound, cache) for a in M.args]
            out = parts[0]
            for p in parts[1:]:
                out = out + p
            return out
        if isinstance(M, MatMul):
            c, mats = M.as_coeff_matrices()
            out = self._eval(mats[0], env, bound, cache)
            for a in mats[1:]:
                out = out @ self._eval(a, env, bound, cache)
            if c != 1:
                syms, fn = self.coeffs[M]
                cv = fn(*[env[s.name] for s in syms])[0]
                cv = cv[:, None, None] if _is_grid(cv) else cv
                out = cv * out
            return out
        if isinstance(M, Inverse):
            return be.inv(self._eval(M.arg, env, bound, cache))
        if isinstance(M, MatPow):
            base, s = M.args
            if s.is_Integer and s < 0 and cache is not None:
                P = self._eval(Inverse(base), env, bound, cache)      # shared with the inverse's other uses
            else:
                B = self._eval(base, env, bound, cache)
            if s.is_Integer:
                P = B if s > 0 else (P if cache is not None else be.inv(B))
                out = P
                for _ in range(abs(int(s)) - 1):
                    out = out @ P
                return out
            # fractional power of a symmetric PSD matrix: through its eigenbasis
            return _sym_power(B, s, be)
        if isinstance(M, Transpose):
            return np.swapaxes(self._eval(M.arg, env, bound, cache), -1, -2)
        raise NotImplementedError(f"numerics: cannot evaluate the matrix expression {M} densely")


def _eye(n, be):
    if getattr(be, "name", "") == "mpmath":
        out = np.empty((n, n), dtype=object)
        out[...] = be.const(0)
        out[np.arange(n), np.arange(n)] = be.const(1)
        return out
    return np.eye(n)


def _sym_power(B, s, be):
    """``B^s`` for symmetric PSD ``B`` (stacked), through its eigenbasis."""
    if B.dtype == object:
        e = be.const(int(s.p)) / be.const(int(s.q))
        out = np.empty_like(B)
        for idx in np.ndindex(B.shape[:-2]):
            w, U = be.eigh(B[idx])
            w = np.array([max(v, 0 * v) ** e for v in w], dtype=object)
            out[idx] = (U * w) @ U.T
        return out
    w, U = np.linalg.eigh(B)
    w = np.clip(w, 0, None) ** float(s)
    return (U * w[..., None, :]) @ np.swapaxes(U, -1, -2)


class _ChainEval:
    """One ``einsum`` for ``Tr``/``Form`` of a product of factors."""

    def __init__(self, backend, chain: Chain):
        self.backend = backend
        self.chain = chain
        letters = iter(string.ascii_lowercase.replace("z", ""))
        subs, cur = [], None
        first_rows = _shape(chain.factors[0])[0]
        cur = next(letters) if first_rows != 1 else None
        first = cur
        for f in chain.factors:
            r, c = _shape(f)
            if isinstance(f, Diag):
                subs.append(cur)
                continue
            row = cur if r != 1 else ""
            cur = next(letters) if c != 1 else None
            subs.append(row + (cur or ""))
        if chain.cyclic and cur != first:
            subs = [s.replace(cur, first) for s in subs]
        self.subs = subs
        self.diag = {}
        self.dense = {}
        for i, f in enumerate(chain.factors):
            if isinstance(f, Diag):
                self.diag[i] = _Fused(backend, [f.expr], f.space)
            elif isinstance(f, Dense):
                self.dense[i] = _DenseEval(backend, f.expr)
        self._paths = {}

    def _vector_form(self):
        """``Form`` of diagonal factors between (or beside) bound vectors:
        ``Σ_k (Π vectors)_k · Π_diag f(e_k)``, a weighted diagonal sum
        (``(expr, space, vector names)``), or ``None``."""
        if not hasattr(self, "_vf"):
            self._vf = None
            fs = self.chain.factors
            diags = [f for f in fs if isinstance(f, Diag)]
            if (not self.chain.cyclic and diags and len(set(self.subs)) == 1 and len(self.subs[0]) == 1
                    and len({f.space for f in diags}) == 1
                    and all(isinstance(f, Diag) or (isinstance(f, Full) and sum(n != 1 for n in f.shape) == 1)
                            for f in fs)):
                self._vf = (sp.Mul(*[f.expr for f in diags]), diags[0].space,
                            [f.name for f in fs if isinstance(f, Full)])
                self._vf_sum = _TensorSum(self.backend, self._vf[0], self._vf[1])
        return self._vf

    def _tensor(self, env, bound):
        vf = self._vector_form()
        if vf is None:
            return None
        w = 1.0
        for name in vf[2]:
            kind, arr = bound.mats[name]
            arr = np.asarray(arr)
            if kind != "full" or arr.dtype == object or arr.size != max(arr.shape, default=1):
                return None
            w = w * arr.reshape(-1)
        return self._vf_sum(env, bound, compress=False, weights=np.asarray(w))

    def __call__(self, env, bound):
        if TENSOR in env and self.backend.name == "numpy":
            out = self._tensor(env, bound)
            if out is not None:
                return out
        npts = next((len(v) for v in env.values() if _is_grid(v)), None)
        if self.dense and npts:
            block = max(_block(self.chain.factors[i].expr, bound) for i in self.dense)
            step = max(1, _DENSE_CHUNK_ELEMENTS // max(block, 1))
            if step < npts:
                parts = []
                for lo in range(0, npts, step):
                    sub = {k: (v[lo:lo + step] if _is_grid(v) else v) for k, v in env.items()}
                    parts.append(np.broadcast_to(self._once(sub, bound), (min(step, npts - lo),)))
                return np.concatenate(parts)
        return self._once(env, bound)

    def _once(self, env, bound, cache=None):
        ops, subs, batched = [], [], False
        for i, f in enumerate(self.chain.factors):
            s = self.subs[i]
            if isinstance(f, Diag):
                (v,), _ = self.diag[i].elementwise(env, bound, compress=False)
                v = np.asarray(v)
            elif isinstance(f, Full):
                arr = bound.mats[f.name]
                v = arr[1]
                if arr[0] == "diag":
                    v = dense_diag(v)
                if f.transposed:
                    v = v.T
                v = v.reshape([n for n, keep in zip(v.shape, f.shape) if keep != 1] or [])
                v = v if v.ndim else v.reshape(())
            else:
                v = np.asarray(self.dense[i](env, bound, cache))
                lead = v.ndim - 2
                keep = [k for k, n in enumerate(f.shape) if n != 1]
                v = v.reshape(v.shape[:lead] + tuple(v.shape[lead + k] for k in keep))
            if v.ndim > len(s):
                batched = True
                s = "z" + s
            ops.append(v)
            subs.append(s)
        spec = ",".join(subs) + ("->z" if batched else "->")
        return self.backend.einsum(spec, *ops)


def _block(M, bound):
    size = 1
    for dim in M.shape:
        dim = sp.sympify(dim)
        size *= int(dim) if dim.is_number else bound.sizes[dim]
    return size


def dense_diag(v):
    """The diagonal matrix with diagonal ``v`` (float or mpmath object array)."""
    out = np.zeros((len(v), len(v)), dtype=v.dtype)
    if v.dtype == object:
        out[...] = 0 * v[0]
    out[np.arange(len(v)), np.arange(len(v))] = v
    return out


def _shape(f):
    if isinstance(f, Diag):
        return (2, 2)  # square, not 1
    return tuple(1 if sp.sympify(n) == 1 else 2 for n in f.shape)


def _dense_chains(chains, env, bound):
    """The values of ``chains`` (each with dense factors) at the points of
    ``env``: chunk by chunk of points (the chunk of :meth:`_ChainEval.__call__`,
    the smallest among the chains), all chains in a chunk sharing one cache of
    dense sub-expressions — ``(M + κ)⁻¹`` is inverted once per point for every
    trace and form that uses it (before: once per contraction)."""
    npts = next((len(v) for v in env.values() if _is_grid(v)), None)
    if npts:
        step = min(max(1, _DENSE_CHUNK_ELEMENTS // max(max(_block(ch.chain.factors[i].expr, bound)
                                                           for i in ch.dense), 1)) for ch in chains)
        if step < npts:
            parts = [[] for _ in chains]
            for lo in range(0, npts, step):
                sub = {k: (v[lo:lo + step] if _is_grid(v) else v) for k, v in env.items()}
                cache = {}
                for part, ch in zip(parts, chains):
                    part.append(np.broadcast_to(ch._once(sub, bound, cache), (min(step, npts - lo),)))
            return [np.concatenate(part) for part in parts]
    cache = {}
    return [ch._once(env, bound, cache) for ch in chains]


class Stage:
    """Evaluate lowered scalar expressions ``exprs`` at the points of ``env``.

    ``contractions`` maps each contraction placeholder to its contraction
    (from :class:`~.lower.Lowering`). Returns a list of arrays (or scalars
    where an output does not vary over the points).
    """

    def __init__(self, backend, exprs, contractions: dict):
        self.backend = backend
        exprs = [sp.sympify(e) for e in exprs]
        by_symbol = {v: k for k, v in contractions.items()}
        # the contractions needed, with those they depend on, in waves of dependency depth
        depth, todo = {}, sorted({s for e in exprs for s in _placeholders(e)}, key=str)
        while todo:
            sym = todo.pop()
            if sym not in depth:
                deps = _depends_on(by_symbol[sym])
                missing = [d for d in deps if d not in depth]
                if missing:
                    todo += [sym] + missing
                    continue
                depth[sym] = 1 + max((depth[d] for d in deps), default=-1)
        self.waves = []
        for level in range(max(depth.values(), default=-1) + 1):
            diag_by_space, chains = {}, []
            for sym in sorted((s for s in depth if depth[s] == level), key=str):
                c = by_symbol[sym]
                if isinstance(c, DiagSum):
                    diag_by_space.setdefault(c.space, []).append((sym, c.expr))
                else:
                    chains.append((sym, _ChainEval(backend, c)))
            fused = [([s for s, _ in items], _Fused(backend, [e for _, e in items], space))
                     for space, items in diag_by_space.items()]
            self.waves.append((fused, chains))
        self.args = sorted({s for e in exprs for s in _scalar_syms(e)}, key=str)
        self.fn = backend.lambdify(self.args, exprs)

    def __call__(self, env, bound):
        if self.waves:
            env = dict(env)
        for fused, chains in self.waves:
            for syms, f in fused:
                for sym, v in zip(syms, f.sums(env, bound)):
                    env[sym.name] = v
            shared = SHARE_DENSE and TENSOR not in env
            dense = [(sym, ch) for sym, ch in chains if ch.dense and shared]
            for sym, ch in chains:
                if not (ch.dense and shared):
                    env[sym.name] = ch(env, bound)
            if dense:
                for (sym, _), v in zip(dense, _dense_chains([ch for _, ch in dense], env, bound)):
                    env[sym.name] = v
        with self.backend.context():
            return list(self.fn(*[env[s.name] for s in self.args]))


__all__ = ["Stage", "TENSOR", "dense_diag"]
