"""Scalar functionals of matrix expressions: traces and ``1×1`` forms.

``Tr(M)`` is the *unnormalised* trace, ``Form(M)`` a ``1×1`` matrix
expression (``uᵀMv``) seen as a scalar and ``Norm(M)`` the spectral norm of a
deterministic symmetric PSD matrix (contours around a spectrum need it). They appear both in users'
expressions (random ``M``) and in derived values (deterministic ``M``), and
they differentiate with respect to scalars (``dκ``), which SymPy's own
``Trace`` cannot do through inverses.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, Transpose, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr


class _Functional(sp.Expr):
    is_commutative = True

    def __new__(cls, M):
        if isinstance(M, sp.Trace):
            M = M.arg
        if cls is Form and isinstance(M, sp.Expr) and not isinstance(M, MatrixExpr):
            return M  # SymPy's expand rebuilt the 1×1 argument as a scalar already
        if not isinstance(M, MatrixExpr):
            raise TypeError(f"{cls.__name__}: expected a matrix expression, got {M!r}")
        return sp.Expr.__new__(cls, M)

    @property
    def arg(self):
        return self.args[0]

    @property
    def is_real(self):
        return None

    def _eval_derivative(self, x):
        dM = mdiff(self.arg, x)
        if dM is None:
            return sp.S.Zero
        return split_linear(type(self), dM)

    def _eval_conjugate(self):
        return None


class Tr(_Functional):
    """Unnormalised trace ``Tr M`` of a square matrix expression."""

    def __new__(cls, M):
        obj = _Functional.__new__(cls, M)
        if obj.arg.shape[0] != obj.arg.shape[1]:
            raise ValueError(f"Tr: matrix must be square, got shape {obj.arg.shape}")
        return obj

    def _latex(self, printer):
        return r"\operatorname{Tr}\left[%s\right]" % printer._print(self.arg)

    def _sympystr(self, printer):
        return "Tr(%s)" % printer._print(self.arg)


class Form(_Functional):
    """A ``1×1`` matrix expression (e.g. ``uᵀ M v``) used as a scalar."""

    def __new__(cls, M):
        obj = _Functional.__new__(cls, M)
        if tuple(obj.arg.shape) != (1, 1):
            raise ValueError(f"Form: expression must be 1×1, got shape {obj.arg.shape}")
        return obj

    def _latex(self, printer):
        return printer._print(self.arg)

    def _sympystr(self, printer):
        return "(%s)" % printer._print(self.arg)


class Norm(sp.Expr):
    """Spectral norm ``‖M‖`` (largest eigenvalue) of a deterministic symmetric
    positive semi-definite matrix expression; ``‖I‖ = 1``."""

    is_commutative = True

    def __new__(cls, M):
        if not isinstance(M, MatrixExpr) or M.shape[0] != M.shape[1]:
            raise TypeError(f"Norm: expected a square matrix expression, got {M!r}")
        if any(getattr(a, "is_random", False) for a in M.atoms(sp.MatrixSymbol)):
            raise TypeError(f"Norm: {M} is random; the norm is defined for deterministic matrices")
        if isinstance(M, Identity):
            return sp.S.One
        return sp.Expr.__new__(cls, M)

    @property
    def arg(self):
        return self.args[0]

    def _eval_is_extended_real(self):
        return True

    def _eval_is_extended_nonnegative(self):
        return True

    def _eval_derivative(self, x):
        if mdiff(self.arg, x) is None:
            return sp.S.Zero
        raise NotImplementedError(f"derivative of the spectral norm {self}")

    def _latex(self, printer):
        return r"\left\lVert %s \right\rVert" % printer._print(self.arg)

    def _sympystr(self, printer):
        return "Norm(%s)" % printer._print(self.arg)


def split_linear(kind, M):
    """``kind(M)`` pulled apart by linearity: sums split, scalars out."""
    M = M.doit(deep=False) if isinstance(M, (MatAdd,)) else M
    if isinstance(M, MatAdd):
        return sp.Add(*[split_linear(kind, a) for a in M.args])
    if isinstance(M, ZeroMatrix):
        return sp.S.Zero
    c, m = M.as_coeff_mmul() if isinstance(M, MatMul) else (sp.S.One, M)
    m = MatMul(*m.args).doit() if isinstance(m, MatMul) else m
    if isinstance(m, Identity):
        return c * m.shape[0] if kind is Tr else c
    return c * kind(m)


def mdiff(M, x):
    """Derivative of a matrix expression with respect to a scalar ``x``;
    ``None`` when it does not depend on ``x``."""
    if x not in M.free_symbols:
        return None
    if isinstance(M, MatAdd):
        parts = [mdiff(a, x) for a in M.args]
        parts = [p for p in parts if p is not None]
        return MatAdd(*parts) if len(parts) > 1 else (parts[0] if parts else None)
    if isinstance(M, MatMul):
        coeff, mats = M.as_coeff_matrices()
        terms = []
        dc = sp.diff(coeff, x)
        if dc != 0:
            terms.append(MatMul(dc, *mats))
        for i, a in enumerate(mats):
            da = mdiff(a, x)
            if da is not None:
                terms.append(MatMul(coeff, *mats[:i], da, *mats[i + 1:]))
        if not terms:
            return None
        return MatAdd(*terms) if len(terms) > 1 else terms[0]
    if isinstance(M, Inverse):
        A = M.arg
        dA = mdiff(A, x)
        return None if dA is None else -MatMul(M, dA, M)
    if isinstance(M, Transpose):
        d = mdiff(M.arg, x)
        return None if d is None else Transpose(d)
    if isinstance(M, MatPow):  # (Inverse handled above: it is a MatPow)
        base, s = M.args
        if x in s.free_symbols:
            raise NotImplementedError(f"derivative of a matrix power with variable exponent: {M}")
        if s.is_Integer and s > 0:
            return mdiff(MatMul(*([base] * int(s))), x)
        if s.is_Integer and s < 0:
            return mdiff(MatMul(*([Inverse(base)] * int(-s))), x)
        dB = mdiff(base, x)
        # d(B^s) = s B^{s-1} dB holds when dB commutes with B: true when dB ∝ I
        scal = _identity_multiple(dB)
        if scal is None:
            raise NotImplementedError(
                f"derivative of the fractional power {M}: dB does not commute with B")
        return MatMul(s * scal, MatPow(base, s - 1))
    if hasattr(M, "_eval_mdiff"):
        return M._eval_mdiff(x)
    if isinstance(M, Identity) or M.is_symbol:
        return None
    raise NotImplementedError(f"cannot differentiate matrix expression {M} with respect to {x}")


def _identity_multiple(M):
    """``c`` if ``M == c·I`` structurally, else ``None``."""
    if isinstance(M, Identity):
        return sp.S.One
    if isinstance(M, MatMul):
        c, mats = M.as_coeff_matrices()
        if len(mats) == 1 and isinstance(mats[0], Identity):
            return c
    if isinstance(M, MatAdd):
        cs = [_identity_multiple(a) for a in M.args]
        if all(c is not None for c in cs):
            return sp.Add(*cs)
    return None
