"""Operations users write: normalised trace, powers, matrix functions,
variance, covariance.

Also makes a ``1×1`` matrix expression behave as the scalar it is: the risk
``(ŵ−w̄)ᵀΣ(ŵ−w̄) + σ²`` must be writable as it reads, and SymPy refuses to
add a scalar to a ``1×1`` matrix. The patch only turns that refusal into a
``Form``; nothing that SymPy already allowed changes meaning.
"""
from __future__ import annotations

import sympy as sp
from sympy import MatPow
from sympy.matrices.expressions.matexpr import MatrixExpr

from .functionals import Form, Norm, Tr


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


#: The variable of every matrix function (one ``Dummy``: equal functions give
#: equal nodes, and no symbol of the user's is captured).
_X = sp.Dummy("x")


class _Verbatim(sp.Symbol):
    """A symbol printed as its name, verbatim (LaTeX of a matrix argument)."""

    def _latex(self, printer):
        return self.name


class MatrixFunction(MatrixExpr):
    """``f(M)``: a scalar function applied to the eigenvalues of a symmetric
    matrix expression ``M`` (``M = V diag(e) Vᵀ ↦ V diag(f(e)) Vᵀ``).

    ``args`` are ``(f, M)``, or ``(f, M, (center, radius))`` with an explicit
    circle in the eigenvalue of ``M`` for the engine's Cauchy integral; ``f``
    is a SymPy ``Lambda`` of one variable. Build it with
    :func:`matrix_function`.
    """

    is_symmetric = True

    def __new__(cls, f, M, contour=None):
        if not isinstance(f, sp.Lambda) or len(f.variables) != 1:
            raise TypeError(f"matrix_function: expected a Lambda of one variable, got {f!r}")
        if not isinstance(M, MatrixExpr) or M.shape[0] != M.shape[1]:
            raise TypeError(f"matrix_function: expected a square matrix expression, got {M!r}")
        if contour is None:
            return MatrixExpr.__new__(cls, f, M)
        contour = sp.Tuple(*contour)
        if len(contour) != 2 or any(isinstance(c, MatrixExpr) for c in contour):
            raise ValueError(f"matrix_function: contour must be (center, radius), got {contour}")
        if contour[1].is_positive is False:
            raise ValueError(f"matrix_function: the contour radius must be positive, got {contour[1]}")
        return MatrixExpr.__new__(cls, f, M, contour)

    function = property(lambda s: s.args[0])
    arg = property(lambda s: s.args[1])
    contour = property(lambda s: tuple(s.args[2]) if len(s.args) > 2 else None)

    @property
    def shape(self):
        return self.args[1].shape

    def _eval_transpose(self):
        return self

    def _latex(self, printer):
        M = self.arg
        m = printer._print(M)
        if not M.is_symbol:
            m = r"\left(%s\right)" % m
        x = self.function.variables[0]
        return printer._print(self.function.expr.xreplace({x: _Verbatim(m)}))

    def _sympystr(self, printer):
        x, body = self.function.variables[0], self.function.expr
        return "matrix_function(x ↦ %s, %s)" % (printer._print(body.xreplace({x: sp.Symbol("x")})),
                                                printer._print(self.arg))


def matrix_function(f, M, contour=None):
    """``f(M)`` for a symmetric random matrix expression ``M`` (a shifted or
    scaled sample covariance such as ``X.T*X/n`` or ``eta*X.T*X/n``): ``f``
    applied to the eigenvalues of ``M``.

    ``f`` is a Python callable of one SymPy scalar (use SymPy functions:
    ``lambda x: sp.exp(-x)``) or a SymPy ``Lambda``. The engine writes
    ``f(M)`` as the Cauchy integral ``∮ f(z)(z − M)⁻¹ dz/2πi`` over a circle
    around the limiting spectrum, so ``f`` must be analytic on and inside
    that circle and real on the real axis; ``contour=(center, radius)`` (in
    the eigenvalue of ``M``, SymPy expressions allowed, e.g. with
    ``sr.Norm(Sigma)``) replaces the default circle, e.g. to keep a pole
    outside it. The engine proves this or refuses with ``NotImplementedError``
    naming ``f`` (``Abs``, ``Piecewise``, poles or branch cuts not provably
    outside the circle; ``equivalence.spectral_fn.check_analytic``); an ``f``
    that is exactly a fractional power ``C·Π(p x + q)^s`` (``sp.sqrt``,
    ``√((x+a)/(x+b))``) is derived as ``sr.power`` would be. Monte Carlo
    evaluates ``f`` on the eigenvalues exactly.
    """
    if isinstance(f, sp.Lambda):
        if len(f.variables) != 1:
            raise TypeError(f"matrix_function: f must be a function of one variable, got {f}")
        body = f.expr.xreplace({f.variables[0]: _X})
    elif callable(f):
        try:
            body = sp.sympify(f(_X))
        except (TypeError, AttributeError, ValueError, sp.SympifyError) as exc:
            raise TypeError("matrix_function: f must accept a SymPy symbol and return a SymPy scalar "
                            f"(use sympy functions such as sp.exp, not numpy ones): {exc}") from None
    else:
        raise TypeError(f"matrix_function: f must be callable or a sympy Lambda, got {type(f).__name__}")
    if not isinstance(body, sp.Expr) or isinstance(body, MatrixExpr):
        raise TypeError(f"matrix_function: f must return a scalar expression, got {body!r}")
    return MatrixFunction(sp.Lambda(_X, body), M, contour)


def removable_form(f):
    """For a rational ``f`` (a ``Lambda``) whose numerator and denominator
    share a factor ``q(x)`` (``f`` is ``0/0`` where ``q = 0``, e.g.
    ``(1 − (1 − ηx)^t)/x`` at ``x = 0``): ``(cancelled body, q)``; else
    ``None``. The cancelled form is exact but may evaluate badly far from
    the zeros of ``q`` (an expanded ``(1 − ηx)^t``), so numerical code uses it
    only near them."""
    x, body = f.variables[0], f.expr
    if not body.is_rational_function(x):
        return None
    num, den = sp.fraction(sp.together(body))
    q = sp.gcd(num, den)
    if not q.has(x):
        return None
    return sp.cancel(body), q


class Var(sp.Expr):
    """Variance of a scalar random expression across draws of all its
    random objects (second order for real Gaussian data: both Wick
    pairings, docs/math.md)."""

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
