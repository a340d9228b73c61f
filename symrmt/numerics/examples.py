"""Deterministic equivalents built by hand, as the derivation engine builds
them (the ``UnknownGroup`` contract of ``symrmt.equivalence.result``).

They exercise the numerics independently of the engine: the tests and
``benchmarks/compile.py`` use them, and so does :func:`.density.spectral_density`.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from .. import objects as sr
from ..equivalence.result import DeterministicEquivalent, UnknownGroup, unknown_symbol
from ..objects import Form, Tr


def wishart_group(kappa, lam, Sigma, sizes):
    d = Sigma.shape[0]
    R = (Sigma + kappa * sp.Identity(d)).inverse()
    df = Tr(Sigma * R)
    prod = sp.Mul(*[(1 - df / m) for m in sizes])
    g = UnknownGroup(unknowns=(kappa,), equations=(sp.Eq(kappa * prod, lam),), z=lam, kind="wishart",
                     Sigma=Sigma, sizes=tuple(sizes))
    return g, R


def one_point(features=False):
    """(1/d) Tr[Σ(Σ̂+λ)⁻¹] ≃ (κ/λ) Tr[ΣR]/d; with features sizes (n, p)."""
    n, d, p = sr.dims("n d p")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    expr = sr.ntr(Sigma * (X.T * X / n + lam * sr.I(d)).inverse())
    kappa = unknown_symbol("kappa")
    g, R = wishart_group(kappa, lam, Sigma, (n, p) if features else (n,))
    return DeterministicEquivalent(expr=expr, value=kappa / lam * Tr(Sigma * R) / d, groups=[g])


def two_point():
    """A value with non-commuting A between two resolvents at λ₁, λ₂, a
    sandwich with a vector, a fractional power, and a noise variance that
    appears only in the expression (so the value does not depend on it)."""
    n, d = sr.dims("n d")
    lam1, lam2, sigma2 = sr.scalar("lam1"), sr.scalar("lam2"), sr.scalar("sigma2")
    Sigma = sr.Covariance("Sigma", d)
    A = sr.Deterministic("A", d, d)
    w = sr.Vector("w", d)
    X = sr.GaussianData("X", n, Sigma)
    eps = sr.GaussianNoise("eps", n, sigma2)
    G1 = (X.T * X / n + lam1 * sr.I(d)).inverse()
    G2 = (X.T * X / n + lam2 * sr.I(d)).inverse()
    expr = sr.ntr(Sigma * G1 * A * G2) + (w.T * G1 * A * G2 * w) + (eps.T * eps) / n
    k1, k2 = unknown_symbol("kappa", 1), unknown_symbol("kappa", 2)
    g1, R1 = wishart_group(k1, lam1, Sigma, (n,))
    g2, R2 = wishart_group(k2, lam2, Sigma, (n,))
    value = Tr(Sigma * R1 * A * R2) / d + Form(w.T * R1 * A * R2 * w) + Tr(sr.sqrt(Sigma) * A) / d
    return DeterministicEquivalent(expr=expr, value=value, groups=[g1, g2])


def two_point_dense(S, A, w, k1, k2):
    """The value of :func:`two_point` by dense NumPy linear algebra."""
    d = len(S)
    I = np.eye(d)
    R1, R2 = np.linalg.inv(S + k1 * I), np.linalg.inv(S + k2 * I)
    ev, U = np.linalg.eigh(S)
    sqrtS = (U * np.sqrt(np.clip(ev, 0, None))) @ U.T
    return np.trace(S @ R1 @ A @ R2) / d + w @ R1 @ A @ R2 @ w + np.trace(sqrtS @ A) / d


@lru_cache(maxsize=None)
def resolvent_trace(features=False, correlated=False):
    """``(1/d) Tr[(Σ̂ + λ)⁻¹] ≃ (κ/λ) Tr[(Σ+κ)⁻¹]/d`` (bindings ``Sigma``,
    ``n``, ``lam``; ``p`` with ``features``: the spectrum of ``Σ̂FFᵀ``; ``K``
    with ``correlated``: ``X = K^{1/2} Z Σ^{1/2}``, unknowns ``(κ, ν)``)."""
    n, d, p = sr.dims("n d p")
    lam = sr.scalar("lam")
    Sigma = sr.Covariance("Sigma", d)
    K = sr.Covariance("K", n) if correlated else None
    X = sr.GaussianData("X", n, Sigma, K=K)
    Sh = X.T * X / n
    if features:
        F = sr.RandomFeatures("F", d, p)
        Sh = Sh * F * F.T
    expr = sr.ntr((Sh + lam * sr.I(d)).inverse())
    kappa = unknown_symbol("kappa")
    layers = (p,) if features else ()
    if correlated:
        nu = unknown_symbol("nu")
        R = (Sigma + kappa * sp.Identity(d)).inverse()
        df = Tr(Sigma * R)
        dfK = Tr(K * (K + nu * sp.Identity(n)).inverse())
        prod = sp.Mul(*[(1 - df / m) for m in layers])
        g = UnknownGroup(unknowns=(kappa, nu), equations=(sp.Eq(dfK, df), sp.Eq(kappa * prod * nu * df, n * lam)),
                         z=lam, kind="separable", Sigma=Sigma, sizes=layers, K=K, m=n)
    else:
        g, R = wishart_group(kappa, lam, Sigma, (n,) + layers)
    return DeterministicEquivalent(expr=expr, value=kappa / lam * Tr(R) / d, groups=[g])


def fractional_power():
    """(1/d) Tr[(Σ̂+a)^{-1/2}] = (1/π)∫₀^∞ t^{-1/2} (1/d)Tr[(Σ̂+a+t)⁻¹] dt, κ(t) at z = a + t."""
    n, d = sr.dims("n d")
    a = sr.scalar("a")
    t = sp.Symbol("t", positive=True)
    Sigma = sr.Covariance("Sigma", d)
    X = sr.GaussianData("X", n, Sigma)
    expr = sr.ntr(sr.power(X.T * X / n + a * sr.I(d), sp.Rational(-1, 2)))
    kappa = unknown_symbol("kappa")
    g, R = wishart_group(kappa, a + t, Sigma, (n,))
    value = sp.Integral(t ** sp.Rational(-1, 2) / sp.pi * kappa / (a + t) * Tr(R) / d, (t, 0, sp.oo))
    return DeterministicEquivalent(expr=expr, value=value, groups=[g])


def isotropic_kappa(s, q, lam):
    """Root of κ² + κ(s − λ − qs) − λs = 0 on the physical branch (stable form)."""
    b = s - lam - q * s
    r = np.sqrt(b * b + 4 * lam * s)
    return np.where(b > 0, 2 * lam * s / (b + r), (r - b) / 2)
