"""Symbolic lowering of spectral functionals to numeric contractions.

Every ``Tr(M)`` and ``Form(M)`` of a deterministic matrix expression ``M`` is
rewritten, once per binding signature (which matrices are diagonal in the
common basis), as ``Σ_t c_t · C_t``: scalar coefficients ``c_t`` times
*contractions* ``C_t``, each a placeholder symbol evaluated numerically.

* A sub-expression whose matrices are all diagonal is a diagonal matrix
  ``diag(f(s_i, t_i, …; κ, λ, …))``: a scalar function of the entries, e.g.
  ``Σ(Σ+κ)⁻¹ → s/(s+κ)``. ``Tr`` of it is the reduction ``Σ_i f(s_i, …)``
  (:class:`DiagSum`).
* Otherwise ``M`` is expanded into products of *factors* — diagonal
  functions (:class:`Diag`), bound full matrices or vectors (:class:`Full`),
  and sub-expressions that need dense per-point linear algebra
  (:class:`Dense`, e.g. ``(Σ + κA)⁻¹`` with ``A`` full) — and ``Tr``/``Form``
  becomes an index contraction (:class:`Chain`), e.g.
  ``Tr[f(Σ) A g(Σ) B] = Σ_ij f(s_i) A_ij g(s_j) B_ji``. Nothing assumes that
  matrices commute: factor order is kept.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix

from ..objects.functionals import Form, Tr
from ..objects.ops import MatrixFunction


@dataclass(frozen=True)
class Diag:
    """Diagonal factor ``diag(expr)``; ``expr`` in entry symbols of ``space``."""
    expr: sp.Expr
    space: sp.Basic


@dataclass(frozen=True)
class Full:
    """A bound full matrix (or vector), possibly transposed; ``shape`` after transposition."""
    name: str
    transposed: bool
    shape: tuple


@dataclass(frozen=True)
class Dense:
    """A sub-expression evaluated by dense (batched) linear algebra."""
    expr: sp.Basic

    @property
    def shape(self):
        return tuple(self.expr.shape)


@dataclass(frozen=True)
class DiagSum:
    """``Σ_i expr_i`` over the entries of ``space``."""
    expr: sp.Expr
    space: sp.Basic


@dataclass(frozen=True)
class Chain:
    """``Tr`` (``cyclic``) or ``Form`` of the product of ``factors``."""
    factors: tuple
    cyclic: bool


def is_entrywise(e):
    """Whether a scalar expression depends on diagonal entries."""
    return any(s.name.startswith("__e_") for s in e.free_symbols)


def entry_symbol(name):
    """The scalar standing for the diagonal entries of matrix ``name``."""
    return sp.Symbol(f"__e_{name}")


class Lowering:
    """Lowers functionals for one signature ``{matrix name: "diag"|"full"}``."""

    def __init__(self, kinds: dict):
        self.kinds = dict(kinds)
        self.contractions = {}      # contraction -> placeholder symbol
        self._cache = {}

    # ------------------------------------------------------------ public
    def lower_expr(self, expr):
        """``expr`` with every Tr/Form replaced by ``Σ c_t C_t``."""
        atoms = [a for a in sp.preorder_traversal(expr) if isinstance(a, (Tr, Form))]
        rep = {a: self.lower_functional(a) for a in atoms}
        return expr.xreplace(rep) if rep else expr

    def lower_functional(self, f):
        if f in self._cache:
            return self._cache[f]
        M = f.arg
        # functionals inside M (a scalar coefficient Tr[A]·B) are lowered first: their
        # placeholders are numbered before this one's, which orders the evaluation
        inner = {a: self.lower_functional(a) for a in sp.preorder_traversal(M)
                 if isinstance(a, (Tr, Form)) and a is not f}
        if inner:
            M = M.xreplace(inner)
        cyclic = isinstance(f, Tr)
        total = sp.S.Zero
        for coeff, factors in self.terms(M):
            factors = _merge(list(factors), cyclic)
            if cyclic and not factors:
                total += coeff * M.shape[0]
            elif not factors:
                total += coeff
            elif cyclic and len(factors) == 1 and isinstance(factors[0], Diag):
                c, e = factors[0].expr.as_coeff_Mul()
                total += coeff * c * self._placeholder(DiagSum(e, factors[0].space))
            else:
                total += coeff * self._placeholder(Chain(tuple(factors), cyclic))
        self._cache[f] = total
        return total

    # ------------------------------------------------------------ internals
    def _placeholder(self, c):
        if c not in self.contractions:
            self.contractions[c] = sp.Symbol(f"__c{len(self.contractions)}")
        return self.contractions[c]

    def elementwise(self, M):
        """Scalar function of diagonal entries equal to ``M`` if ``M`` is
        diagonal in the common basis, else ``None``."""
        if isinstance(M, Identity):
            return sp.S.One
        if isinstance(M, ZeroMatrix):
            return sp.S.Zero if M.shape[0] == M.shape[1] else None
        if isinstance(M, MatrixSymbol):
            if getattr(M, "is_random", False):
                raise TypeError(f"random matrix {M} in a deterministic equivalent's value")
            return entry_symbol(M.name) if self.kinds.get(M.name) == "diag" else None
        if isinstance(M, MatAdd):
            parts = [self.elementwise(a) for a in M.args]
            return None if any(p is None for p in parts) else sp.Add(*parts)
        if isinstance(M, MatMul):
            coeff, mats = M.as_coeff_matrices()
            parts = [self.elementwise(a) for a in mats]
            return None if any(p is None for p in parts) else coeff * sp.Mul(*parts)
        if isinstance(M, Inverse):
            b = self.elementwise(M.arg)
            return None if b is None else 1 / b
        if isinstance(M, MatPow):
            b = self.elementwise(M.args[0])
            return None if b is None else b ** M.args[1]
        if isinstance(M, Transpose):
            return self.elementwise(M.arg)
        if isinstance(M, MatrixFunction):
            b = self.elementwise(M.arg)
            return None if b is None else M.function(b)
        return None

    def terms(self, M):
        """``M`` as a list of ``(coeff, factors)`` products."""
        e = self.elementwise(M)
        if e is not None:
            if e == 0:
                return []
            if not is_entrywise(e):
                return [(e, ())]            # a scalar multiple of the identity
            c, rest = e.as_coeff_Mul()
            return [(c, (Diag(rest, M.shape[0]),))]
        if isinstance(M, ZeroMatrix):
            return []
        if isinstance(M, MatAdd):
            return [t for a in M.args for t in self.terms(a)]
        if isinstance(M, MatMul):
            coeff, mats = M.as_coeff_matrices()
            out = []
            for combo in itertools.product(*[self.terms(a) for a in mats]):
                c = coeff * sp.Mul(*[t[0] for t in combo])
                out.append((c, tuple(f for t in combo for f in t[1])))
            return out
        if isinstance(M, MatrixSymbol):
            return [(sp.S.One, (Full(M.name, False, tuple(M.shape)),))]
        if isinstance(M, Transpose):
            A = M.arg
            if isinstance(A, MatrixSymbol):
                return [(sp.S.One, (Full(A.name, True, tuple(M.shape)),))]
            pushed = A.T.doit() if not isinstance(A, (Inverse, MatPow)) else None
            if pushed is not None and not isinstance(pushed, Transpose):
                return self.terms(pushed)
            return [(sp.S.One, (Dense(M),))]
        if isinstance(M, Inverse):
            return [(sp.S.One, (Dense(M),))]
        if isinstance(M, MatPow):
            base, s = M.args
            if s.is_Integer and s > 0:
                return self.terms(MatMul(*([base] * int(s))))
            return [(sp.S.One, (Dense(M),))]
        raise NotImplementedError(f"numerics: cannot evaluate the matrix expression {M} ({type(M).__name__})")


def _merge(factors, cyclic):
    """Merge neighbouring diagonal factors (cyclically for a trace)."""
    out = []
    for f in factors:
        if out and isinstance(f, Diag) and isinstance(out[-1], Diag):
            out[-1] = Diag(out[-1].expr * f.expr, f.space)
        else:
            out.append(f)
    if cyclic and len(out) > 1 and isinstance(out[0], Diag) and isinstance(out[-1], Diag):
        last = out.pop()
        out[0] = Diag(last.expr * out[0].expr, last.space)
    return out
