"""Operations users write: normalised trace, powers, variance, covariance.

Also makes a ``1×1`` matrix expression behave as the scalar it is: the risk
``(ŵ−w̄)ᵀΣ(ŵ−w̄) + σ²`` must be writable as it reads, and SymPy refuses to
add a scalar to a ``1×1`` matrix. The patch only turns that refusal into a
``Form``; nothing that SymPy already allowed changes meaning.
"""
from __future__ import annotations

import sympy as sp
from sympy import MatPow
from sympy.matrices.expressions.matexpr import MatrixExpr

from .functionals import Form, Tr


def as_scalar(e):
    """A scalar expression: ``1×1`` matrix expressions become ``Form``."""
    if isinstance(e, MatrixExpr):
        if tuple(e.shape) != (1, 1):
            raise ValueError(f"expected a scalar or a 1×1 expression, got shape {e.shape}: {e}")
        return Form(e)
    if isinstance(e, sp.Trace):
        return Tr(e.arg)
    return sp.sympify(e)


def ntr(M):
    """Normalised trace ``Tr M / rows(M)``."""
    if not isinstance(M, MatrixExpr):
        raise TypeError(f"ntr: expected a matrix expression, got {type(M).__name__}")
    return Tr(M) / M.shape[0]


def power(M, s):
    """Real power ``M^s`` of a PSD matrix expression (principal branch)."""
    if not isinstance(M, MatrixExpr) or M.shape[0] != M.shape[1]:
        raise TypeError("power: expected a square matrix expression")
    s = sp.sympify(s)
    if s.is_real is False:
        raise ValueError(f"power: exponent must be real, got {s}")
    if s == 1:
        return M
    if s == -1:
        return M.inverse()
    return MatPow(M, s)


def sqrt(M):
    """Principal square root ``M^{1/2}`` of a PSD matrix expression."""
    return power(M, sp.S.Half)


class Var(sp.Expr):
    """Variance of a scalar random expression across draws of all its
    random objects (second order for real Gaussian data: both Wick
    pairings, MATH.md)."""

    is_commutative = True

    def __new__(cls, e):
        return sp.Expr.__new__(cls, as_scalar(e))

    def _latex(self, printer):
        return r"\operatorname{Var}\left[%s\right]" % printer._print(self.args[0])


class Cov(sp.Expr):
    """Covariance of two scalar random expressions across draws."""

    is_commutative = True

    def __new__(cls, a, b):
        return sp.Expr.__new__(cls, as_scalar(a), as_scalar(b))

    def _latex(self, printer):
        return r"\operatorname{Cov}\left[%s, %s\right]" % tuple(printer._print(a) for a in self.args)


def var(e):
    """``Var[e]`` across draws of every random object in ``e``."""
    return Var(e)


def cov(a, b):
    """``Cov[a, b]`` across draws of every random object."""
    return Cov(a, b)


# ---- 1×1 matrix expressions as scalars ------------------------------------
def _patch():
    if getattr(MatrixExpr, "_symrmt_patched", False):
        return

    def wrap(name):
        orig = getattr(MatrixExpr, name)

        def method(self, other):
            o = other
            if tuple(self.shape) == (1, 1):
                try:
                    o = sp.sympify(other)
                except sp.SympifyError:
                    return NotImplemented
                if not isinstance(o, MatrixExpr) and not getattr(o, "is_Matrix", False):
                    return getattr(Form(self), name)(o)
                if isinstance(o, MatrixExpr) and tuple(o.shape) == (1, 1) and name in ("__truediv__", "__rtruediv__"):
                    return getattr(Form(self), name)(Form(o))
            return orig(self, other)

        method.__name__ = name
        method.__doc__ = orig.__doc__
        setattr(MatrixExpr, name, method)

    for name in ("__add__", "__radd__", "__sub__", "__rsub__", "__pow__", "__rtruediv__", "__truediv__"):
        wrap(name)
    MatrixExpr._symrmt_patched = True


_patch()
