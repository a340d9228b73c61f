"""Implicitly defined scalars: roots of equations in traces.

``sr.df_inverse(K, t)`` is the unique ``ν > 0`` with ``Tr[K(K+ν)⁻¹] = t``
(``K`` symmetric PSD ``m×m``, ``0 < t < rank K``): the inverse of the
degrees-of-freedom map of ``K``, ``ν ↦ Tr[K(K+ν)⁻¹]``, which decreases
strictly from ``rank K`` to ``0``. ``t`` may be random (a trace of the
data), e.g. the empirical ``t = Tr[Σ̂(Σ̂+λ)⁻¹]`` of CorrGCV (Atanasov,
Zavatone-Veth, Pehlevan 2024), where ``ν̂`` is the sample-side renormalised
ridge.

Equivalent: ``ν̂`` is a continuous function of ``t``, and ``t`` concentrates,
so ``ν̂ ≃ df_K⁻¹(t̄)`` with ``t̄`` the equivalent of ``t``. When ``t̄`` is the
degrees of freedom ``Tr[Σ(Σ+κ)⁻¹]`` of a correlated-samples law with this
``K``, that root is the law's own unknown ``ν`` (its first equation reads
``Tr[K(K+ν)⁻¹] = Tr[Σ(Σ+κ)⁻¹]``); other ``t̄`` are refused
(``equivalence/sample_side.py``). With ``K = I`` (``m×m``) the root is
explicit: ``ν = (m − t)/t``. Monte Carlo evaluates the root on every draw
(bisection in ``log ν`` on the eigenvalues of the bound ``K``).
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import Identity, MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixExpr


class DfInverse(sp.Expr):
    """``df_K⁻¹(t)``: the ``ν > 0`` with ``Tr[K(K+ν)⁻¹] = t`` (module docstring)."""

    is_commutative = True

    def __new__(cls, K, t):
        t = sp.sympify(t)
        if isinstance(t, MatrixExpr):
            if tuple(t.shape) != (1, 1):
                raise TypeError(f"df_inverse: t must be a scalar, got a {t.shape} matrix")
        if not isinstance(K, MatrixExpr) or K.shape[0] != K.shape[1]:
            raise TypeError(f"df_inverse: K must be a square matrix (sr.Covariance), got {K!r}")
        if getattr(K, "is_random", False) or any(getattr(a, "is_random", False) for a in K.atoms(MatrixSymbol)):
            raise TypeError("df_inverse: K must be deterministic")
        if isinstance(K, Identity):
            return (K.shape[0] - t) / t
        if not (isinstance(K, MatrixSymbol) and getattr(K, "is_symmetric", False)):
            raise TypeError(f"df_inverse: K must be a symmetric PSD matrix symbol (sr.Covariance), got {K}")
        return sp.Expr.__new__(cls, K, t)

    K = property(lambda s: s.args[0])
    t = property(lambda s: s.args[1])

    def _eval_is_positive(self):
        return True

    def _eval_is_real(self):
        return True

    def _sympystr(self, printer):
        return f"df_inverse({printer._print(self.K)}, {printer._print(self.t)})"

    def _latex(self, printer):
        return r"\operatorname{df}_{%s}^{-1}\left(%s\right)" % (printer._print(self.K), printer._print(self.t))

    # ---------------------------------------------------------------- Monte Carlo
    def mc_node(self, program):
        """A per-draw scalar node: the root for the draw's value of ``t``."""
        from ..montecarlo import nodes as N
        child = program.scalar(self.t)
        name = self.K.name
        cache = {}

        def fn(tv):
            a = np.asarray(program.bound.matrices[name], dtype=float)
            key = id(a)
            if key not in cache:
                cache.clear()
                cache[key] = np.clip(a if a.ndim == 1 else np.linalg.eigvalsh((a + a.T) / 2), 0, None)
            return df_inverse_numeric(cache[key], tv)

        node = N.SFunc(fn, [child], self)
        node.random, node.batched = child.random, child.batched
        return node


def df_inverse_numeric(eigs, t, iters=120):
    """Vectorised root of ``Σ_i k_i/(k_i+ν) = t`` over an array ``t``
    (bisection in ``log ν``; NaN where ``t`` is outside ``(0, rank K)``)."""
    k = np.asarray(eigs, dtype=float)
    t = np.asarray(np.real(t), dtype=float)
    kmax = k.max()
    rank = np.count_nonzero(k > kmax * 1e-12)
    lo = np.full(t.shape, np.log(kmax) - 60.0)
    hi = np.full(t.shape, np.log(kmax) + 60.0)
    for _ in range(iters):
        mid = (lo + hi) / 2
        v = np.exp(mid)
        f = (k[(...,) + (None,) * t.ndim] / (k[(...,) + (None,) * t.ndim] + v)).sum(0) - t
        lo = np.where(f > 0, mid, lo)
        hi = np.where(f > 0, hi, mid)
    out = np.exp((lo + hi) / 2)
    return np.where((t > 0) & (t < rank), out, np.nan)


def df_inverse(K, t):
    """``ν = df_K⁻¹(t)``: the unique ``ν > 0`` with ``Tr[K(K+ν)⁻¹] = t``
    (``K`` an ``sr.Covariance``; ``t`` any scalar, random allowed).
    Example (CorrGCV's sample-side ridge): ``sr.df_inverse(K, sr.ntr(Sh*G)*d)``."""
    return DfInverse(K, t)
