"""Canonical form of a word: random matrices gathered into cores.

Small named rules, each an exact identity stated in its docstring, composed
by strategies (the ``sympy.strategies`` pattern: :func:`first_match` over
rule groups, :func:`at_positions` over the cyclic positions of a word);
:func:`step` applies one rewrite (the engine loops to a fixed point),
:func:`exhaust` all of them:

* :func:`rule_merge_functions` — ``f(Σ̂)g(Σ̂) = (fg)(Σ̂)``;
* :func:`rule_sample_covariance` — ``Xᵀ X = m Σ̂``, ``X Xᵀ = m Σ̂ₙ``;
* :func:`rule_resolvent_identity` — ``Σ̂ (Σ̂+z)⁻¹ = I − z (Σ̂+z)⁻¹``;
* :func:`rule_feature_core` — ``Fᵀ Σ̂ F`` → the feature-space core;
* :func:`rule_push_through` — ``X (Σ̂+z)⁻¹ Xᵀ = m (I − z (Σ̂ₙ+z)⁻¹)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import Identity

from ..objects.matrices import GaussianData, RandomFeatures
from .letters import An, Bare, Core, Det, Fn, Rand, Res, is_identity


def drop_identities(word):
    kept = tuple(l for l in word if not is_identity(l))
    return kept if kept else word[:1]


def _rot(word, i):
    return word[i:] + word[:i]


def _factors(l):
    if isinstance(l, Fn):
        return l.factors
    if isinstance(l, Res):
        return ((l.z, sp.S.NegativeOne),)
    return ((sp.S.Zero, sp.S.One),)


def merge_functions(a, b, strict_tags):
    """Adjacent functions of one core, at least one fractional, combine
    exactly (they commute). In variance mode (``strict_tags``) only
    fractional functions from the same factor of the user's product merge."""
    if isinstance(a, An) or isinstance(b, An):
        return merge_analytic(a, b, strict_tags)
    if not (isinstance(a, Fn) or isinstance(b, Fn)):
        return None
    if not isinstance(a, (Fn, Res, Bare)) or not isinstance(b, (Fn, Res, Bare)) or a.core != b.core:
        return None
    if strict_tags and not (isinstance(a, Fn) and isinstance(b, Fn) and a.tag == b.tag):
        return None
    acc = {}
    for shift, e in _factors(a) + _factors(b):
        key = next((k for k in acc if sp.simplify(k - shift) == 0), shift)
        acc[key] = acc.get(key, 0) + e
    factors = tuple(sorted(((k, e) for k, e in acc.items() if e != 0), key=lambda t: sp.default_sort_key(t[0])))
    tag = a.tag if isinstance(a, Fn) and (not isinstance(b, Fn) or b.tag == a.tag) else \
        (b.tag if isinstance(b, Fn) and not isinstance(a, Fn) else None)
    if all(sp.sympify(e).is_integer for _, e in factors):
        return integer_letters(a.core, factors)
    return [(sp.S.One, (Fn(a.core, factors, tag),))]


def merge_analytic(a, b, strict_tags):
    """An analytic function ``g`` next to a function of the same core:
    ``x·g`` (bare core), ``g₁g₂`` (another ``An`` on the same contour), and
    for a resolvent ``g(x)/(x+z) = (g(x) − C)/(x+z) + C(x+z)⁻¹`` with
    ``C = g(−z)`` when the pole ``−z`` lies inside the contour (the first
    part is then analytic there) and ``C = 0`` outside it (where ``g(−z)``
    may be huge, ``e^{z}``, or undefined, on a branch cut).
    Fractional powers are not merged: their branch cut may cross the
    contour; the engine represents both letters, under two integrals.
    Tags as in :func:`merge_functions`."""
    if not isinstance(a, (An, Res, Bare)) or not isinstance(b, (An, Res, Bare)) or a.core != b.core:
        return None
    if strict_tags and not (isinstance(a, An) and isinstance(b, An) and a.tag == b.tag):
        return None
    fa, fb = (a, b) if isinstance(a, An) else (b, a)
    x, g = fa.g.variables[0], fa.g.expr
    if isinstance(fb, An):
        if fb.contour != fa.contour:
            return None
        h = fb.g.expr.xreplace({fb.g.variables[0]: x})
        return [(sp.S.One, (An(fa.core, sp.Lambda(x, g * h), fa.tag if fa.tag == fb.tag else None,
                               fa.contour),))]
    if isinstance(fb, Bare):
        return [(sp.S.One, (An(fa.core, sp.Lambda(x, x * g), fa.tag, fa.contour),))]
    c0, r = fa.circle()
    gz = sp.Piecewise((g.xreplace({x: -fb.z}), sp.Abs(fb.z + c0) < r), (0, True))
    return [(sp.S.One, (An(fa.core, sp.Lambda(x, (g - gz) / (x + fb.z)), fa.tag, fa.contour),)),
            (gz, (fb,))]


def integer_letters(core, factors):
    """``Π (core + a)^k`` with integer ``k`` as sums of words of resolvents
    and bare cores (binomial expansion for positive powers)."""
    if getattr(core, "pooled", False):          # Σ_k c_k Σ̂_k + B: letters.PooledCore
        return core.integer_letters(factors)
    from math import comb
    out = [(sp.S.One, ())]
    for a, k in factors:
        k = int(k)
        if k < 0:
            out = [(c, w + (Res(core, a),) * (-k)) for c, w in out]
        else:
            terms = [(comb(k, j) * a ** (k - j), (Bare(core),) * j) for j in range(k + 1) if a != 0 or j == k]
            out = [(c * c2, w + w2) for c, w in out for c2, w2 in terms]
    return [(c, w if w else (Det(Identity(core.dim)),)) for c, w in out]


def lone_pair(word, core):
    """Exactly one resolvent and one bare copy of a chain-free ``core``."""
    if core.chain:
        return False
    ls = [l for l in word if isinstance(l, (Bare, Res, Fn)) and l.core == core]
    return len(ls) == 2 and sum(isinstance(l, Res) for l in ls) == 1 and sum(isinstance(l, Bare) for l in ls) == 1


# ============================================================ rules
# Each rule looks at the word at one cyclic position ``i`` (the word is a
# trace or a form read cyclically) and returns ``[(coeff, word), …]`` — an
# exact identity, the sum equal to the word — or ``None``. The strategy below
# composes them: first rule group that applies, first position, first rule.

@dataclass(frozen=True)
class Options:
    """How the rules apply: ``strict_tags`` (variance mode: merge fractional
    functions only within one factor of the user's product), ``keep_lone_pairs``
    (leave a lone ``Σ̂(Σ̂+z)⁻¹`` for the engine's direct average)."""
    strict_tags: bool = False
    keep_lone_pairs: bool = True


def rule_merge_functions(word, i, opt):
    """``f(Σ̂) g(Σ̂) = (fg)(Σ̂)`` for adjacent functions of one core
    (:func:`merge_functions`, :func:`merge_analytic`)."""
    m = merge_functions(word[i], word[(i + 1) % len(word)], opt.strict_tags)
    if m is None:
        return None
    w = _rot(word, i)
    return [(c, nw + w[2:]) for c, nw in m]


def rule_sample_covariance(word, i, opt):
    """``Xᵀ X = m Σ̂`` and ``X Xᵀ = m Σ̂ₙ`` (``m`` the normalisation of ``X``);
    a non-centred ``X`` (a mean) is refused: ``XᵀX/m`` is then not a sample
    covariance of the law."""
    a, b = word[i], word[(i + 1) % len(word)]
    if not (isinstance(a, Rand) and isinstance(b, Rand) and a.sym == b.sym
            and isinstance(a.sym, GaussianData) and a.t != b.t):
        return None
    X = a.sym
    if X.has_mean:
        raise NotImplementedError(
            f"{X.name} has a nonzero mean: {X.name}ᵀ{X.name}/n is not a centred sample "
            f"covariance; use sr.sample_covariance({X.name})")
    side = "data" if a.t else "gram"
    return [(X.n, (Bare(Core(X, side)),) + _rot(word, i)[2:])]


def rule_resolvent_identity(word, i, opt):
    """``Σ̂ (Σ̂+z)⁻¹ = (Σ̂+z)⁻¹ Σ̂ = I − z (Σ̂+z)⁻¹`` — except for a lone pair
    (one resolvent and one bare copy of a chain-free core, with
    ``keep_lone_pairs``), which the engine averages directly as ``Σ(Σ+κ)⁻¹``:
    the expanded ``I − κ(Σ+κ)⁻¹`` cancels catastrophically at large ``κ``."""
    a, b = word[i], word[(i + 1) % len(word)]
    if not (isinstance(a, (Bare, Res)) and isinstance(b, (Bare, Res)) and a.core == b.core
            and isinstance(a, Bare) != isinstance(b, Bare)):
        return None
    if opt.keep_lone_pairs and lone_pair(word, a.core):
        return None
    r = a if isinstance(a, Res) else b
    rest = _rot(word, i)[2:]
    one = rest if rest else (Det(Identity(r.core.dim)),)
    return [(sp.S.One, one), (-r.z, (r,) + rest)]


def rule_feature_core(word, i, opt):
    """``Fᵀ Σ̂ F`` (``F`` random features, ``Σ̂`` on the data side) is the
    feature-space core of the chain ``(…, F)``."""
    L = len(word)
    a, b, c = word[i], word[(i + 1) % L], word[(i + 2) % L]
    if not (isinstance(a, Rand) and isinstance(c, Rand) and a.sym == c.sym
            and isinstance(a.sym, RandomFeatures) and a.t and not c.t
            and isinstance(b, Bare) and b.core.side == "data"):
        return None
    core = b.core
    new = Bare(Core(core.data, "data", core.chain + (a.sym,), core.ddof))
    return [(sp.S.One, (new,) + _rot(word, i)[3:])]


def rule_push_through(word, i, opt):
    """Push-through: ``X (XᵀX/m + z)⁻¹ Xᵀ = m (I − z (XXᵀ/m + z)⁻¹)`` and its
    mirror ``Xᵀ (XXᵀ/m + z)⁻¹ X = m (I − z (XᵀX/m + z)⁻¹)`` (chain-free,
    uncentred cores)."""
    L = len(word)
    a, b, c = word[i], word[(i + 1) % L], word[(i + 2) % L]
    if not (isinstance(a, Rand) and isinstance(c, Rand) and a.sym == c.sym
            and isinstance(a.sym, GaussianData) and a.t != c.t and isinstance(b, Res)
            and b.core.data == a.sym and not b.core.chain and b.core.ddof is None):
        return None
    X = a.sym
    want = "data" if not a.t else "gram"
    if b.core.side != want:
        return None
    other = Core(X, "gram" if want == "data" else "data")
    rest = _rot(word, i)[3:]
    one = rest if rest else (Det(Identity(other.dim)),)
    return [(X.n, one), (-X.n * b.z, (Res(other, b.z),) + rest)]


# ============================================================ strategies
def at_positions(*rules, min_len=1):
    """Strategy: the first position ``i`` (in order) at which one of ``rules``
    (tried in order) applies; ``None`` for words shorter than ``min_len``."""
    def strategy(word, opt):
        if len(word) < min_len:
            return None
        for i in range(len(word)):
            for rule in rules:
                out = rule(word, i, opt)
                if out is not None:
                    return out
        return None
    strategy.rules = rules
    return strategy


def first_match(*strategies):
    """Strategy: the result of the first of ``strategies`` that applies."""
    def strategy(word, opt):
        for s in strategies:
            out = s(word, opt)
            if out is not None:
                return out
        return None
    strategy.strategies = strategies
    return strategy


#: merging functions of one core first (it shortens the word), then the
#: two-letter identities, then the three-letter ones
CANONICAL = first_match(
    at_positions(rule_merge_functions, min_len=2),
    at_positions(rule_sample_covariance, rule_resolvent_identity, min_len=2),
    at_positions(rule_feature_core, rule_push_through, min_len=3),
)


def step(word, strict_tags=False, keep_lone_pairs=True):
    """Apply one exact rewrite (:data:`CANONICAL`); ``None`` when none applies.
    Returns a list of ``(coeff, word)``."""
    if not word:
        return None
    return CANONICAL(word, Options(strict_tags, keep_lone_pairs))


def exhaust(word, strict_tags=False, keep_lone_pairs=True):
    """All words reachable by :func:`step` until none applies (a sum
    ``[(coeff, word), …]`` equal to ``word``)."""
    done, todo = [], [(sp.S.One, word)]
    while todo:
        c, w = todo.pop()
        out = step(w, strict_tags, keep_lone_pairs)
        if out is None:
            done.append((c, w))
        else:
            todo.extend((c * c2, w2) for c2, w2 in out)
    return done
