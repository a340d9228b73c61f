"""S-transform catalogue and algebra (conventions fixed in docs/math.md).

``ψ_A(z) = tr[zA(1−zA)⁻¹]``, ``χ_A`` its functional inverse and
``S_A(w) = (1+w)/w · χ_A(w)``. For free ``A, B``: ``S_{AB} = S_A S_B``.
At ``z = −1/λ``: ``ψ_A(−1/λ) = −df_A(λ)`` with the normalised
``df_A(λ) = tr[A(A+λ)⁻¹]``, hence ``S_A(−df_A) = (1 − df_A)/(λ df_A)``.

Every function returns a SymPy ``Lambda`` of ``w`` so transforms compose
symbolically; ``evaluate at −df/d`` gives the renormalised ridge
``κ = λ S_W(−df(κ)/d)``.
"""
from __future__ import annotations

import sympy as sp

_w = sp.Symbol("w")


def wishart(q):
    """White Wishart ``W = ZᵀZ/n`` (``d×d``, ``q = d/n``): ``S(w) = 1/(1 + q w)``."""
    q = sp.sympify(q)
    return sp.Lambda(_w, 1 / (1 + q * _w))


def gram(q):
    """The ``n×n`` Gram form ``ZZᵀ/n`` (``q = d/n``): ``S(w) = 1/(q + w)``."""
    q = sp.sympify(q)
    return sp.Lambda(_w, 1 / (q + _w))


def product(*transforms):
    """Product of free factors: ``S_{A₁⋯A_k} = Π S_{A_i}``."""
    return sp.Lambda(_w, sp.Mul(*[S(_w) for S in transforms]))


def rescale(S, c):
    """``S_{cA}(w) = S_A(w)/c``."""
    return sp.Lambda(_w, S(_w) / sp.sympify(c))


def rectangular(S, r):
    """Same non-zero spectrum in a space ``r`` times the size
    (``r = dim_new/dim_old``): ``ψ_new = ψ/r`` hence
    ``S_new(w) = r(1+w)/(1+rw) · S(rw)``. ``rectangular(gram(q), q)`` is
    ``wishart(q)``."""
    r = sp.sympify(r)
    return sp.Lambda(_w, r * (1 + _w) / (1 + r * _w) * S(r * _w))


def from_spectrum(df_expr, t, mu):
    """S-transform at ``−t`` of a deterministic matrix given by its
    spectrum, implicitly: ``S(−t) = (1 − t)/(μ t)`` where ``μ`` solves the
    normalised ``df(μ) = t``. Returns ``(value, equation)``."""
    return (1 - t) / (mu * t), sp.Eq(df_expr, t)


def correlated_samples(q, SK):
    """``W = ZᵀKZ/n`` (``d×d``, ``q = d/n``) from the sample correlation's
    ``S_K``: ``S_W(w) = S_K(q w)/(1 + q w)``."""
    q = sp.sympify(q)
    return sp.Lambda(_w, SK(q * _w) / (1 + q * _w))


def psi_from_eigenvalues(eigs, z):
    """Numeric ``ψ_A(z) = tr[zA(1−zA)⁻¹]`` from eigenvalues (for checks)."""
    import numpy as np
    a = np.asarray(eigs, dtype=complex)
    return np.mean(z * a / (1 - z * a))
