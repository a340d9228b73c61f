"""Spectral functionals of deterministic matrices (docs/math.md notation).

``df1(κ) = Tr[Σ(Σ+κ)⁻¹]``, ``df2(κ) = Tr[Σ²(Σ+κ)⁻²]`` (unnormalised) and the
Stieltjes transform ``m(z) = tr[(A − z)⁻¹]``.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..objects import Tr


def _res(A, k):
    return (A + k * Identity(A.shape[0])).inverse()


def df1(Sigma, kappa):
    """``Tr[Σ(Σ+κ)⁻¹]``."""
    return Tr(Sigma * _res(Sigma, kappa))


def df2(Sigma, kappa):
    """``Tr[Σ²(Σ+κ)⁻²]``."""
    R = _res(Sigma, kappa)
    return Tr(Sigma * Sigma * R * R)


def stieltjes(A, z):
    """``m_A(z) = tr[(A − z)⁻¹]`` (normalised)."""
    return Tr(_res(A, -z)) / A.shape[0]
