"""Equivalence rules on words (docs/math.md §One-point, §Two-point, §Variances).

Each rule takes a word (a cyclic product, read as its trace) and returns a
sum of ``(coeff, (word, word, …))`` — products of traces — in which one
random core has been replaced by deterministic matrices. Notation:
``R_i = (A + κ_i)⁻¹``, ``w_i = κ_i/z_i``, ``M = R₁ A R₂``,
``γ₁₂ = Tr[A² R₁ R₂]/m`` and ``ρ₁₂`` the correlated-sample factor
(``ρ = 1`` for iid rows; with ``K``: ``ρ = w₁w₂ ν₁ν₂ Tr[K²(K+ν₁)⁻¹(K+ν₂)⁻¹]/m``).

* one-point   ``G ≃ w R``
* two-point   ``Tr[P G₁ Q G₂] ≃ w₁w₂ { Tr[P R₁ Q R₂] + c Tr[P M] Tr[Q M] }``,
  ``c = ρ/(m(1 − ργ))`` — the source derivative of the generalised resolvent;
  in *variance mode* the second Wick pairing ``c Tr[P M Qᵀ M]`` is added.
* covariance  ``Cov(Tr[P G₁], Tr[Q G₂]) ≃ w₁w₂ c (Tr[P M Qᵀ M] + Tr[P M Q M])``
  (real Gaussian data, both pairings).
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..objects import Tr
from ..rewrite.letters import Bare, Det, Rand, Res, transpose_word


def rotate_to(word, i):
    return word[i:] + word[:i]


def _R(side, k):
    A = side.A
    return Det((A + k * Identity(A.shape[0])).inverse())


def _rho(side, sd1, sd2):
    """``ρ₁₂`` (1 for iid rows)."""
    if isinstance(side.B, Identity):
        return sp.S.One
    B, m = side.B, side.m
    n = B.shape[0]
    tau = sd1.kB * sd2.kB * Tr(B * B * (B + sd1.kB * Identity(n)).inverse()
                                * (B + sd2.kB * Identity(n)).inverse()) / m
    return tau * sd1.kA * sd2.kA / (sd1.z * sd2.z)


def one_point(word, i, side, z):
    """Replace the resolvent at position ``i`` by ``(κ/z)(A+κ)⁻¹``."""
    return [(side.kA / z, (word[:i] + (_R(side, side.kA),) + word[i + 1:],))]


class _SideAt:
    """A side together with its spectral parameter (for pair rules)."""

    def __init__(self, side, z, bare=False):
        self.side, self.z, self.bare = side, z, bare
        self.kA, self.kB = side.kA, side.kB

    @property
    def w(self):
        return sp.S.NegativeOne if self.bare else self.kA / self.z

    def R(self):
        return () if self.bare else (_R(self.side, self.kA),)


def _pair_coeff(s1, s2):
    side = s1.side
    A, m = side.A, side.m
    if s1.bare or s2.bare:
        if not isinstance(side.B, Identity):
            raise NotImplementedError("covariance of a bare sample covariance with correlated samples")
        rho, gamma = sp.S.One, sp.S.Zero
    else:
        rho = _rho(side, s1, s2)
        d = A.shape[0]
        gamma = Tr(A * A * (A + s1.kA * Identity(d)).inverse() * (A + s2.kA * Identity(d)).inverse()) / m
    return rho / (m * (1 - rho * gamma))


def two_point(word, i, j, s1, s2, variance_mode):
    """``Tr[G₁ Q G₂ P]`` with ``G₁`` at ``i`` and ``G₂`` at ``j``."""
    w = rotate_to(word, i)
    j = (j - i) % len(word)
    Q, P = w[1:j], w[j + 1:]
    A = Det(s1.side.A)
    R1, R2 = s1.R(), s2.R()
    M = R1 + (A,) + R2
    ww = s1.w * s2.w
    c = _pair_coeff(s1, s2)
    out = [(ww, (R1 + Q + R2 + P,)),
           (ww * c, ((A,) + R1 + Q + R2, P + M))]
    if variance_mode:
        out.append((ww * c, (P + M + transpose_word(Q) + M,)))
    return out


def covariance(P, Q, s1, s2):
    """``Cov(Tr[P L₁], Tr[Q L₂])`` for linear statistics ``L`` (resolvents or
    the bare core) of one core."""
    A = Det(s1.side.A)
    M = s1.R() + (A,) + s2.R()
    c = s1.w * s2.w * _pair_coeff(s1, s2)
    return [(c, (P + M + transpose_word(Q) + M,)), (c, (P + M + Q + M,))]


def bare_expectation(word, idxs, side, first_order=False):
    """``E`` over a core appearing only bare (no resolvent), exact for
    Gaussian rows: ``E[Σ̂] = Σ·Tr K/m``; ``E[Σ̂ B Σ̂] = ΣBΣ + (ΣBᵀΣ + Σ Tr[BΣ])/m``.
    ``first_order``: drop the transposed pairing ``ΣBᵀΣ/m`` (O(1/m) relative
    to ``ΣBΣ``), as the two-point resolvent equivalent does outside variance
    mode, so bare moments and resolvents (gradient descent at ``t = 1`` and at
    ``t ≥ 2``) are of one order."""
    A = Det(side.A)
    B, m = side.B, side.m
    if len(idxs) == 1:
        i = idxs[0]
        scale = Tr(B) / m if not isinstance(B, Identity) else sp.S.One
        return [(scale, (word[:i] + (A,) + word[i + 1:],))]
    if len(idxs) == 2 and isinstance(B, Identity):
        w = rotate_to(word, idxs[0])
        j = (idxs[1] - idxs[0]) % len(word)
        Q, P = w[1:j], w[j + 1:]
        return [(sp.S.One, ((A,) + Q + (A,) + P,))] + (
            [] if first_order else [(1 / m, ((A,) + transpose_word(Q) + (A,) + P,))]) + [
            (1 / m, ((A,) + P, (A,) + Q))]
    raise NotImplementedError(
        "expectation of a product of more than two bare sample covariances (or two with correlated samples)")


def features_expectation(word, i, j, F):
    """``E[F B Fᵀ] = Tr[B]/p · I`` and ``E[Fᵀ A F] = Tr[A]/p · I`` for
    ``F`` with iid ``N(0, 1/p)`` entries (``p`` = columns of ``F``)."""
    w = rotate_to(word, i)
    j = (j - i) % len(word)
    inner, outer = w[1:j], w[j + 1:]
    p = F.shape[1]
    first = w[0]
    size = F.shape[0] if not first.t else F.shape[1]
    from sympy import Identity as Id
    inner_w = inner if inner else (Det(Id(F.shape[1] if not first.t else F.shape[0])),)
    outer_w = outer if outer else (Det(Id(size)),)
    return [(1 / p, (inner_w, outer_w))]


def chain_sandwich(word, i, side, z, core):
    """One-point rule for feature chains: ``𝔉 G 𝔉ᵀ ≃ (κ₁/z)(Σ+κ)⁻¹`` and
    ``Tr[G] ≃ (p_L − df)/z`` (``𝔉 = F₁⋯F_L``)."""
    w = rotate_to(word, i)
    rest = w[1:]
    L = len(core.chain)
    head = tuple(Rand(F, True) for F in reversed(core.chain))
    tail = tuple(Rand(F) for F in core.chain)
    if len(rest) >= 2 * L and rest[:L] == head and rest[len(rest) - L:] == tail:
        mid = rest[L:len(rest) - L]
        R = Det((side.A + side.kA * Identity(side.A.shape[0])).inverse())
        return [(side.k1 / z, ((R,) + mid,))]
    if all(isinstance(l, Det) and isinstance(l.expr, Identity) for l in rest):
        from ..transforms.spectral import df1 as _df
        return [((core.dim - _df(side.A, side.kA)) / z, ((Det(Identity(1)),),))]
    raise NotImplementedError(
        f"feature-space resolvent with a test matrix other than I or a full sandwich 𝔉 … 𝔉ᵀ")
