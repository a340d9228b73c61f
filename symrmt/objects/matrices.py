"""Matrix symbols that carry a role (and, for random ones, a law).

Every object is an immutable SymPy ``MatrixSymbol`` whose ``args`` hold the
whole law, so ``func(*args)`` rebuilds it (SymPy's tree contract) and two
objects are equal exactly when they are the same object. Random objects hold
a unique integer tag: two ``GaussianData`` made separately are independent
copies even if their names and laws coincide.

User-facing constructors accept the friendly signature of docs/api.md; the
canonical signature (name given as a SymPy ``Str``) is what ``func`` uses.
"""
from __future__ import annotations

import itertools

import sympy as sp
from sympy import Basic, Identity, MatrixSymbol, ZeroMatrix
from sympy.core.symbol import Str
from sympy.matrices.expressions.matexpr import MatrixExpr

from .symbols import as_dim
from .walk import atoms_shared

_uid = itertools.count(1)


def _make(cls, name, rows, cols, *law):
    """Build with args ``(name, rows, cols, *law)`` (MatrixSymbol's own
    ``__new__`` takes exactly three)."""
    name = name if isinstance(name, Str) else Str(name)
    return Basic.__new__(cls, name, sp.sympify(rows), sp.sympify(cols), *law)


class SymrmtMatrix(MatrixSymbol):
    """Base class: a matrix symbol with a role."""

    role = "matrix"
    is_random = False
    is_symmetric = False

    def _eval_transpose(self):
        return self if self.is_symmetric else None

    def _sympystr(self, printer):
        return self.name

    def _latex(self, printer):
        return printer._print(sp.Symbol(self.name))


# ---------------------------------------------------------------- deterministic
class Deterministic(SymrmtMatrix):
    """A deterministic matrix with no structure assumed (need not commute
    with anything). ``Deterministic("A", rows, cols)``."""

    role = "deterministic"

    def __new__(cls, name, rows, cols):
        if not isinstance(name, (str, Str)):
            raise TypeError(f"{cls.__name__}: name must be a string, got {name!r}")
        rows, cols = as_dim(rows, f"{name}: rows"), as_dim(cols, f"{name}: cols")
        return _make(cls, name, rows, cols)


class Covariance(Deterministic):
    """A deterministic symmetric positive semi-definite ``d×d`` matrix
    (population covariance, correlation ``K``, test matrix …)."""

    role = "covariance"
    is_symmetric = True

    def __new__(cls, name, d, cols=None):
        if cols is not None and sp.sympify(cols) != sp.sympify(d):
            raise ValueError(f"Covariance {name}: must be square, got {d}×{cols}")
        return Deterministic.__new__(cls, name, d, d)


class Vector(Deterministic):
    """A deterministic column vector ``d×1``."""

    role = "vector"

    def __new__(cls, name, d, cols=1):
        if sp.sympify(cols) != 1:
            raise ValueError(f"Vector {name}: a vector has one column")
        return Deterministic.__new__(cls, name, d, 1)


def I(d):  # noqa: E743 - the API name
    """The ``d×d`` identity."""
    return Identity(as_dim(d, "I: dimension"))


# ---------------------------------------------------------------- random
class RandomMatrix(SymrmtMatrix):
    is_random = True
    role = "random"

    @property
    def uid(self):
        return int(self.args[-1])


def _check_square_deterministic(M, size, what):
    if M is None:
        return Identity(size)
    if not isinstance(M, MatrixExpr):
        raise TypeError(f"{what} must be a matrix (e.g. sr.Covariance), got {type(M).__name__}")
    if M.shape != (size, size):
        raise ValueError(f"{what} must be {size}×{size}, got {M.shape[0]}×{M.shape[1]}")
    if any(getattr(a, "is_random", False) for a in M.atoms(MatrixSymbol)):
        raise TypeError(f"{what} must be deterministic")
    return M


class GaussianData(RandomMatrix):
    """Random ``n×d`` data, rows ``N(mean, Σ)``; with ``K``,
    ``X = K^{1/2} Z Σ^{1/2}`` (+ mean), ``Z`` iid ``N(0,1)``.

    ``GaussianData("X", n, Sigma, K=None, mean=None)``. ``K`` is an
    ``n×n`` sample-correlation matrix (``Tr K = n`` by convention).
    """

    role = "data"

    def __new__(cls, name, n, Sigma=None, K=None, mean=None, *rest):
        if isinstance(name, Str):  # canonical rebuild: (name, n, d, Sigma, K, mean, uid)
            return _make(cls, name, n, Sigma, K, mean, *rest)
        if not isinstance(name, str):
            raise TypeError(f"GaussianData: name must be a string, got {name!r}")
        n = as_dim(n, f"GaussianData {name}: n")
        if Sigma is None:
            raise TypeError(f"GaussianData {name}: give the population covariance Sigma")
        if not isinstance(Sigma, MatrixExpr) or Sigma.shape[0] != Sigma.shape[1]:
            raise TypeError(f"GaussianData {name}: Sigma must be a square matrix (sr.Covariance)")
        d = Sigma.shape[0]
        _check_square_deterministic(Sigma, d, f"GaussianData {name}: Sigma")
        K = _check_square_deterministic(K, n, f"GaussianData {name}: K")
        if mean is None:
            mean = ZeroMatrix(d, 1)
        elif not isinstance(mean, MatrixExpr) or mean.shape != (d, 1):
            raise ValueError(f"GaussianData {name}: mean must be a {d}×1 sr.Vector")
        return _make(cls, Str(name), n, d, Sigma, K, mean, sp.Integer(next(_uid)))


    def __getnewargs__(self):
        return self.args

    n = property(lambda s: s.args[1])
    d = property(lambda s: s.args[2])
    Sigma = property(lambda s: s.args[3])
    K = property(lambda s: s.args[4])
    mean = property(lambda s: s.args[5])

    @property
    def correlated(self):
        return not isinstance(self.K, Identity)

    @property
    def has_mean(self):
        return not isinstance(self.mean, ZeroMatrix)

    def law_key(self):
        """Law without identity: equal for independent copies of one law."""
        return ("data", self.n, self.d, self.Sigma, self.K, self.mean)


class GaussianNoise(RandomMatrix):
    """Random ``n×1`` vector ``N(0, variance·I)`` (or ``variance·K``),
    independent of everything else."""

    role = "noise"

    def __new__(cls, name, n, variance=None, K=None, *rest):
        if isinstance(name, Str):  # canonical: (name, n, 1, variance, K, uid)
            return _make(cls, name, n, variance, K, *rest)
        if not isinstance(name, str):
            raise TypeError(f"GaussianNoise: name must be a string, got {name!r}")
        n = as_dim(n, f"GaussianNoise {name}: n")
        if variance is None:
            raise TypeError(f"GaussianNoise {name}: give the variance")
        variance = sp.sympify(variance)
        if isinstance(variance, MatrixExpr) or variance.is_negative:
            raise ValueError(f"GaussianNoise {name}: variance must be a non-negative scalar")
        K = _check_square_deterministic(K, n, f"GaussianNoise {name}: K")
        return _make(cls, Str(name), n, sp.Integer(1), variance, K,
                                    sp.Integer(next(_uid)))


    def __getnewargs__(self):
        return self.args

    variance = property(lambda s: s.args[3])
    K = property(lambda s: s.args[4])


class RandomFeatures(RandomMatrix):
    """Random ``d×p`` matrix with iid ``N(0, 1/p)`` entries."""

    role = "features"

    def __new__(cls, name, d, p=None, *rest):
        if isinstance(name, Str):  # canonical: (name, d, p, uid)
            return _make(cls, name, d, p, *rest)
        if not isinstance(name, str):
            raise TypeError(f"RandomFeatures: name must be a string, got {name!r}")
        if p is None:
            raise TypeError(f"RandomFeatures {name}: give both d and p")
        d, p = as_dim(d, f"RandomFeatures {name}: d"), as_dim(p, f"RandomFeatures {name}: p")
        return _make(cls, Str(name), d, p, sp.Integer(next(_uid)))


    def __getnewargs__(self):
        return self.args

    def law_key(self):
        return ("features", self.rows, self.cols)


class SampleMean(RandomMatrix):
    """``μ̂ = Xᵀ1/n`` of a ``GaussianData`` ``X`` (``d×1``)."""

    role = "sample_mean"

    def __new__(cls, X, *rest):
        if isinstance(X, Str):  # canonical: (name, d, 1, X)
            return _make(cls, X, *rest)
        if not isinstance(X, GaussianData):
            raise TypeError("sample_mean: argument must be sr.GaussianData")
        return _make(cls, Str(f"mu_hat_{X.name}"), X.d, sp.Integer(1), X)


    def __getnewargs__(self):
        return self.args

    data = property(lambda s: s.args[3])

    def _latex(self, printer):
        return r"\hat{\mu}_{%s}" % printer._print(self.data)

    @property
    def uid(self):
        return self.data.uid


class SampleCovariance(RandomMatrix):
    """Sample covariance of a ``GaussianData`` ``X`` (``d×d``, symmetric).

    ``ddof=0``: ``(X−1μᵀ)ᵀ(X−1μᵀ)/n`` about the known mean μ;
    ``ddof=1``: ``(X−1μ̂ᵀ)ᵀ(X−1μ̂ᵀ)/(n−1)``, centred at the sample mean.
    """

    role = "sample_covariance"
    is_symmetric = True

    def __new__(cls, X, ddof=0, *rest):
        if isinstance(X, Str):  # canonical: (name, d, d, X, ddof)
            return _make(cls, X, ddof, *rest)
        if not isinstance(X, GaussianData):
            raise TypeError("sample_covariance: argument must be sr.GaussianData")
        if ddof not in (0, 1):
            raise ValueError(f"sample_covariance: ddof must be 0 or 1, got {ddof!r}")
        return _make(cls, Str(f"Sigma_hat_{X.name}"), X.d, X.d, X, sp.Integer(ddof))


    def __getnewargs__(self):
        return self.args

    data = property(lambda s: s.args[3])
    ddof = property(lambda s: int(s.args[4]))

    def _latex(self, printer):
        return r"\hat{\Sigma}_{%s}" % printer._print(self.data)

    @property
    def uid(self):
        return self.data.uid


def sample_mean(X):
    """``μ̂ = Xᵀ1/n``. For Gaussian rows it is independent of the centred
    sample covariance (``ddof=1``)."""
    return SampleMean(X)


def sample_covariance(X, ddof=0):
    """``Σ̂`` of ``X``: ``ddof=0`` about the known mean (``/n``),
    ``ddof=1`` centred at ``μ̂`` (``/(n−1)``)."""
    return SampleCovariance(X, ddof)


def random_symbols(expr):
    """All random matrix symbols in ``expr`` (sample means/covariances
    included as themselves)."""
    if not isinstance(expr, sp.Basic):
        return set()
    return {a for a in atoms_shared(expr, MatrixSymbol) if getattr(a, "is_random", False)}


# ---------------------------------------------------------------- stacking
class Stacked(MatrixExpr):
    """Row blocks stacked on top of each other, ``[A₁; A₂; …]`` (equal
    numbers of columns). Built by :func:`vstack`; the engine rewrites
    products through it exactly (``[A₁; A₂]ᵀ[B₁; B₂] = A₁ᵀB₁ + A₂ᵀB₂``) and
    Monte Carlo samples it by concatenating its blocks' draws."""

    def __new__(cls, *blocks):
        return Basic.__new__(cls, *blocks)

    @property
    def blocks(self):
        return self.args

    @property
    def shape(self):
        return (sp.Add(*[b.shape[0] for b in self.args]), self.args[0].shape[1])

    @property
    def is_random(self):
        return False        # a container: its blocks carry the randomness

    def _sympystr(self, printer):
        return "vstack(" + ", ".join(printer._print(b) for b in self.args) + ")"

    def _latex(self, printer):
        return r"\begin{bmatrix}" + r" \\ ".join(printer._print(b) for b in self.args) + r"\end{bmatrix}"


def vstack(*blocks):
    """``[A₁; A₂; …]``: pooled data ``sr.vstack(X1, X2)`` (independent
    ``GaussianData`` blocks with their own ``Σ_k``, ``n_k``, ``K_k``), or
    stacked labels/noise ``sr.vstack(X1*w1 + e1, X2*w2 + e2)``. Every block
    must be a matrix expression with the same number of columns."""
    if len(blocks) < 2:
        raise ValueError(f"vstack: give at least two blocks, got {len(blocks)}")
    for i, b in enumerate(blocks):
        if not isinstance(b, MatrixExpr):
            raise TypeError(f"vstack: block {i} must be a matrix expression, got {type(b).__name__}")
    cols = blocks[0].shape[1]
    for i, b in enumerate(blocks[1:], 1):
        if sp.simplify(b.shape[1] - cols) != 0:
            raise ValueError(f"vstack: block {i} ({b}) has {b.shape[1]} columns, block 0 ({blocks[0]}) has {cols}")
    return Stacked(*blocks)
