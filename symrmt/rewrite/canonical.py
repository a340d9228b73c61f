"""Canonical form of a word: random matrices gathered into cores.

One rewrite per call (the engine loops to a fixed point), each exact:

* ``Xᵀ X = m Σ̂``, ``X Xᵀ = m Σ̂ₙ`` (cyclically adjacent in the trace);
* ``Fᵀ Σ̂ F`` → the feature-space core;
* push-through ``X (Σ̂+z)⁻¹ Xᵀ = m (I − z (Σ̂ₙ+z)⁻¹)`` and its mirror;
* resolvent identity ``Σ̂ (Σ̂+z)⁻¹ = I − z (Σ̂+z)⁻¹`` (either side).
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..objects.matrices import GaussianData, RandomFeatures
from .letters import Bare, Core, Det, Rand, Res, is_identity


def drop_identities(word):
    kept = tuple(l for l in word if not is_identity(l))
    return kept if kept else word[:1]


def _rot(word, i):
    return word[i:] + word[:i]


def step(word):
    """Apply one exact rewrite; ``None`` when none applies. Returns a list of
    ``(coeff, word)``."""
    L = len(word)
    if L == 0:
        return None
    for i in range(L):
        a, b = word[i], word[(i + 1) % L]
        if L == 1 and i == 0:
            b = None
        # Xᵀ X and X Xᵀ
        if isinstance(a, Rand) and isinstance(b, Rand) and a.sym == b.sym \
                and isinstance(a.sym, GaussianData) and a.t != b.t and L >= 2:
            X = a.sym
            if X.has_mean:
                raise NotImplementedError(
                    f"{X.name} has a nonzero mean: {X.name}ᵀ{X.name}/n is not a centred sample "
                    f"covariance; use sr.sample_covariance({X.name})")
            side = "data" if a.t else "gram"
            w = _rot(word, i)
            return [(X.n, (Bare(Core(X, side)),) + w[2:])]
        # Bare/Res next to Res of the same core: resolvent identity
        if isinstance(a, (Bare, Res)) and isinstance(b, (Bare, Res)) and a.core == b.core \
                and (isinstance(a, Bare) != isinstance(b, Bare)):
            r = a if isinstance(a, Res) else b
            w = _rot(word, i)
            rest = w[2:]
            one = rest if rest else (Det(Identity(r.core.dim)),)
            return [(sp.S.One, one), (-r.z, (r,) + rest)]
    for i in range(L):
        if L < 3:
            break
        a, b, c = word[i], word[(i + 1) % L], word[(i + 2) % L]
        # Fᵀ Σ̂ F → feature core
        if isinstance(a, Rand) and isinstance(c, Rand) and a.sym == c.sym \
                and isinstance(a.sym, RandomFeatures) and a.t and not c.t \
                and isinstance(b, Bare) and b.core.side == "data":
            core = b.core
            new = Bare(Core(core.data, "data", core.chain + (a.sym,), core.ddof))
            w = _rot(word, i)
            return [(sp.S.One, (new,) + w[3:])]
        # push-through
        if isinstance(a, Rand) and isinstance(c, Rand) and a.sym == c.sym \
                and isinstance(a.sym, GaussianData) and a.t != c.t and isinstance(b, Res) \
                and b.core.data == a.sym and not b.core.chain and b.core.ddof is None:
            X = a.sym
            want = "data" if not a.t else "gram"
            if b.core.side == want:
                other = Core(X, "gram" if want == "data" else "data")
                w = _rot(word, i)
                rest = w[3:]
                dim = other.dim
                one = rest if rest else (Det(Identity(dim)),)
                return [(X.n, one), (-X.n * b.z, (Res(other, b.z),) + rest)]
    return None
