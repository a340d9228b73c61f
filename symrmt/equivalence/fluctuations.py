"""Fluctuations of traces (docs/math.md §"Fluctuations of traces", second order).

Unnormalised traces of resolvents fluctuate by ``O(1)`` through the whole
spectrum (a central limit theorem for linear spectral statistics), not by the
quadratic-form rule ``rules.covariance`` (which is right for low-rank
statistics ``uᵀGv`` only). For a white Wishart core ``Σ̂ = XᵀX/m`` with real
Gaussian iid rows (``K = I``), ``G(z) = (Σ̂+z)⁻¹``, ``κ(z)`` solving its
self-consistent equation ``F(κ) := κ(1 − df₁(κ)/m) = z``:

    Cov(Tr G(z₁), Tr G(z₂)) ≃ 2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(z₁−z₂)²]          (z₁ ≠ z₂)
    Var Tr G(z)             ≃ S[κ](z)/3,  S[κ] = κ'''/κ' − (3/2)(κ''/κ')²

(Bai–Silverstein CLT, real case: twice the complex one; ``m̲(−z) = 1/κ``).
``κ', κ'', κ'''`` come from implicit differentiation of the engine's own
equation ``F(κ(z)) = z``: ``κ' = 1/F'``, ``κ'' = −F''/F'³``,
``κ''' = (3F''² − F'F''')/F'⁵``, with ``F`` differentiated in SymPy.

For ``z₁ ≠ z₂`` the value is emitted in a form free of cancellation (exactly
equal, using ``z₁ − z₂ = (κ₁−κ₂)(1−γ₁₂)`` and Lagrange's identity):

    2 [Tr(Σ²R₁²R₂²)/m − (U₄U₂ − U₃²)/m²] / ((1−γ₁)(1−γ₂)(1−γ₁₂)²),

``R_i = (Σ+κ_i)⁻¹``, ``U_k = Tr(Σᵏ R₁²R₂²)``, ``γ_i = Tr(Σ²R_i²)/m``,
``γ₁₂ = Tr(Σ²R₁R₂)/m``.

Scope: traces reducible exactly to ``Tr G`` (``Tr Σ̂G = d − z Tr G``,
identities, constants), data side ``XᵀX/m`` or the Gram side ``XXᵀ/m``
(``Tr (XXᵀ/m+z)⁻¹ = Tr (XᵀX/m+z)⁻¹ + (m−d)/z`` exactly, so both fluctuate
alike), ``sr.sample_covariance`` with ``ddof=1`` (exactly a white Wishart with
``n − 1`` samples normalised by ``n − 1``: the engine's ``m = n − 1``) or
``ddof=0`` (``n − 1`` samples normalised by ``n``: ``O(1/n)`` relative).
Everything else — ``Tr[AG]`` with ``A ≠ I``, spectral functions, feature
chains, correlated samples, a trace against a form — raises
``NotImplementedError`` naming the sub-expression.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, ZeroMatrix

from ..objects import Tr
from ..rewrite.letters import Core, Det, Rand, Res, word_sources


def is_low_rank(word):
    """A word that is a quadratic form: it contains a vector (rank-one letter)."""
    for l in word:
        if isinstance(l, Det) and 1 in l.shape:
            return True
        if isinstance(l, Rand) and 1 in tuple(l.sym.shape):
            return True
    return False


def _word_str(word):
    from .engine import canonical_str
    return canonical_str(word)


def trace_cov(engine, w1, w2):
    """``Cov(Tr w1, Tr w2)`` for two traces (no rank-one letter)."""
    from .covariance import _canon
    total = sp.S.Zero
    for c1, v1 in _canon(engine, w1):
        for c2, v2 in _canon(engine, w2):
            total += c1 * c2 * _cov_reduced(engine, v1, v2, w1, w2)
    return total


def _cov_reduced(engine, v1, v2, w1, w2):
    shared = word_sources(v1) & word_sources(v2)
    if not shared:
        return sp.S.Zero  # a constant, or independent randomness
    r1, r2 = _lone_resolvent(v1, w1), _lone_resolvent(v2, w2)
    c1, c2 = _white_core(r1.core, w1), _white_core(r2.core, w2)
    if c1 != c2:
        raise NotImplementedError(
            f"covariance of Tr[{_word_str(w1)}] and Tr[{_word_str(w2)}]: resolvents of different "
            f"sample covariances of the same data ({r1.core}, {r2.core}) are not implemented")
    return trace_resolvent_cov(engine, c1, r1.z, r2.z)


def _lone_resolvent(v, w):
    if len(v) == 1 and isinstance(v[0], Res):
        return v[0]
    raise NotImplementedError(
        f"fluctuation of the trace Tr[{_word_str(w)}] (reduced to Tr[{_word_str(v)}]): only traces reducible "
        "to Tr G of a white Wishart core are derived (docs/math.md §Fluctuations of traces); traces against other "
        "matrices (Tr[AG], spectral functions, products of resolvents) are not — not the quadratic-form rule")


def _white_core(core, w):
    X = core.data
    bad = None
    if core.chain:
        bad = "random features"
    elif X.correlated:
        bad = "correlated samples (K)"
    elif core.ddof is None and not isinstance(X.mean, ZeroMatrix):
        bad = "data with a non-zero mean in a raw XᵀX/n"
    elif core.ddof not in (None, 0, 1):
        bad = f"ddof={core.ddof}"
    if bad:
        raise NotImplementedError(
            f"fluctuation of the trace Tr[{_word_str(w)}] with {bad} ({core}) is not implemented")
    if core.side == "gram":
        if core.ddof is not None:
            raise NotImplementedError(f"fluctuation of Tr[{_word_str(w)}]: Gram side of a centred sample covariance")
        return Core(X, "data", (), core.ddof)
    return core


def _F(engine, core, z):
    """The engine's self-consistent equation solved for ``z``: ``F(κ) = z``."""
    side = engine.reg.side(core, z)
    g = engine.reg._groups[(engine.reg._key(core), sp.sympify(z))]["group"]
    (eq,) = g.equations
    if sp.simplify(eq.rhs - sp.sympify(z)) != 0 or len(g.unknowns) != 1:
        raise AssertionError(f"internal: unexpected equation {eq} for {core} at {z}")
    return side.kA, eq.lhs


def kappa_derivatives(engine, core, z):
    """``(κ, κ', κ'', κ''')`` in ``z``, by implicit differentiation of the
    engine's equation ``F(κ(z)) = z``."""
    k, F = _F(engine, core, z)
    F1 = sp.diff(F, k)      # one order at a time: functionals differentiate through mdiff
    F2 = sp.diff(F1, k)
    F3 = sp.diff(F2, k)
    F1, F2, F3 = (_pull(f) for f in (F1, F2, F3))
    return k, 1 / F1, -F2 / F1 ** 3, (3 * F2 ** 2 - F1 * F3) / F1 ** 5


def _pull(e):
    """Scalars out of traces (``Tr(−3A) = −3 Tr A``), for readable values."""
    from ..objects.functionals import split_linear
    return sp.expand(e.replace(lambda x: isinstance(x, Tr), lambda x: split_linear(Tr, x.arg)))


def schwarzian(engine, core, z):
    """``S[κ](z) = κ'''/κ' − (3/2)(κ''/κ')²``."""
    _, k1, k2, k3 = kappa_derivatives(engine, core, z)
    return k3 / k1 - sp.Rational(3, 2) * (k2 / k1) ** 2


def trace_resolvent_cov(engine, core, z1, z2):
    """``Cov(Tr G(z₁), Tr G(z₂))`` for a white Wishart core (module docstring)."""
    z1, z2 = sp.sympify(z1), sp.sympify(z2)
    if z1.has(sp.I) or z2.has(sp.I) or z1.is_real is False or z2.is_real is False:
        raise NotImplementedError(f"fluctuation of Tr G at complex spectral parameters ({z1}, {z2})")
    if sp.simplify(z1 - z2) == 0:
        return schwarzian(engine, core, z1) / 3
    k1, _ = _F(engine, core, z1)
    k2, _ = _F(engine, core, z2)
    S = core.data.Sigma
    m = core.m
    d = S.shape[0]
    R1 = (S + k1 * Identity(d)).inverse()
    R2 = (S + k2 * Identity(d)).inverse()
    U = {j: Tr(S ** j * R1 ** 2 * R2 ** 2) for j in (2, 3, 4)}
    g1, g2 = Tr(S ** 2 * R1 ** 2) / m, Tr(S ** 2 * R2 ** 2) / m
    g12 = Tr(S ** 2 * R1 * R2) / m
    num = U[2] / m - (U[4] * U[2] - U[3] ** 2) / m ** 2
    return 2 * num / ((1 - g1) * (1 - g2) * (1 - g12) ** 2)


def trace_resolvent_cov_mathmd(engine, core, z1, z2):
    """The docs/math.md form ``2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(z₁−z₂)²]`` (for tests: equal
    to :func:`trace_resolvent_cov` at ``z₁ ≠ z₂``, cancels badly as ``z₂ → z₁``)."""
    k1, d1, _, _ = kappa_derivatives(engine, core, z1)
    k2, d2, _, _ = kappa_derivatives(engine, core, z2)
    return 2 * (d1 * d2 / (k1 - k2) ** 2 - 1 / (sp.sympify(z1) - z2) ** 2)
