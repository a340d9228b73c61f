"""Averaging rules: one random core of a word replaced by its deterministic
equivalent (docs/math.md), as small named units composed by a strategy.

Each rule is ``rule_xxx(ctx, word) -> list | None``: ``ctx`` is the
:class:`~symrmt.equivalence.engine.Derivation` (unknown registry, variance
mode, …), ``word`` a canonical word (a cyclic product read as its trace).
A rule returns ``[(coeff, (word, …)), …]`` — ``E[Tr word]`` as a sum of
products of traces in which the averaged core no longer appears — or
``None`` when it does not apply. A *refusal* (``refuse_xxx``) is a rule too:
it raises ``NotImplementedError`` naming the word where the words it
recognises are outside first-order Gaussian equivalence, and ``None``
otherwise. Every rule checks its own applicability in full (it may be used
alone); :data:`AVERAGE` composes them with
:func:`symrmt.rewrite.canonical.first_match` — the first that applies wins —
in this order:

 1. :func:`rule_general_law`        pooled blocks / deterministic shifts (``GRes``)
 2. :func:`rule_random_features`    nested conditioning over random features
 3. :func:`rule_sample_side`        ``X`` outside ``XᵀX`` (``XᵀMX``, selectors, mixed Gram/data)
 4. :func:`refuse_feature_two_point` two resolvents of one feature-space core
 5. :func:`rule_chain_sandwich`     ``𝔉G𝔉ᵀ ≃ (κ₁/z)(Σ+κ)⁻¹``, ``Tr G ≃ (p−df)/z``
 6. :func:`rule_stable_pair`        ``Σ̂(Σ̂+z)⁻¹ ≃ Σ(Σ+κ)⁻¹``
 7. :func:`refuse_bare_apart`       ``Σ̂`` apart from its resolvent
 8. :func:`rule_one_point`          ``(Σ̂+z)⁻¹ ≃ (κ/z)(Σ+κ)⁻¹``
 9. :func:`rule_two_point`          two resolvents of one core
10. :func:`rule_correlated_kpoint`  ``k ≥ 3`` resolvents, correlated rows (sample-side lift)
11. :func:`refuse_kpoint`           ``k ≥ 3`` of a Gram-side core
12. :func:`rule_kpoint_lift`        ``k ≥ 3`` resolvents, iid rows (block-bidiagonal lift)
13. :func:`rule_unfold_bare_chain`  bare ``𝔉ᵀΣ̂𝔉`` → ``Fᵀ (𝔉'ᵀΣ̂𝔉') F`` (exact)
14. :func:`rule_bare_moments`       ``E[Σ̂] = Σ``, ``E[Σ̂BΣ̂] = ΣBΣ + (ΣBᵀΣ + ΣTr[BΣ])/m``
15. :func:`rule_paired_features`    ``E[FBFᵀ] = Tr[B]/p · I``
16. :func:`refuse`                  the final refusal, naming the word

Rules 4–12 concern the core ``C`` of the word's first resolvent; each first
checks (:func:`check_alone`) that no other letter shares ``C``'s randomness,
and refuses by name otherwise — exactly the engine's order before the rules
became units (behaviour identical).
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..objects.matrices import RandomFeatures
from ..rewrite import canonical
from ..rewrite.letters import Bare, Det, GRes, Rand, Res, word_matrix
from . import features, general_law, rules, sample_side


def canonical_str(word):
    """A word as the matrix product it stands for (for messages)."""
    try:
        return sp.sstr(word_matrix(word))
    except Exception:  # messages must never fail
        return " ".join(map(str, word))


# ----------------------------------------------------------------- helpers
def check_alone(word, core):
    """No other letter may depend on ``core``'s sources: the rules average
    one core with everything else held fixed (independent of it)."""
    src = core.sources
    for l in word:
        if isinstance(l, (Res, Bare)) and l.core != core and (l.core.sources & src):
            raise NotImplementedError(
                f"{core} and {l.core} share randomness in {canonical_str(word)}: "
                "mixed data-space/Gram-space or feature/data resolvents are not implemented")
        if isinstance(l, Rand) and l.sym.uid in src and not (core.chain and l.sym in core.chain):
            raise NotImplementedError(
                f"{l} appears outside the sample covariance of {core} in {canonical_str(word)}")


def _first_core(word):
    """``(core, mine, bares)`` for the core of the word's first resolvent:
    ``mine`` its resolvents ``[(i, letter)]``, ``bares`` the positions of its
    bare copies; ``None`` when the word has no resolvent. Refuses (by name)
    a word in which another letter shares the core's randomness."""
    first = next((l for l in word if isinstance(l, Res)), None)
    if first is None:
        return None
    core = first.core
    check_alone(word, core)
    mine = [(i, l) for i, l in enumerate(word) if isinstance(l, Res) and l.core == core]
    bares = [i for i, l in enumerate(word) if isinstance(l, Bare) and l.core == core]
    return core, mine, bares


def _stable_pair(mine, bares, n):
    """Positions ``(i, j)``, ``i < j``, of a lone resolvent and a lone bare
    copy of its core that are cyclically adjacent, or ``None``."""
    if len(mine) == 1 and len(bares) == 1 and abs(bares[0] - mine[0][0]) in (1, n - 1):
        return tuple(sorted((bares[0], mine[0][0])))
    return None


def bare_side(core):
    """The :class:`~symrmt.equivalence.laws.Side` of a core that appears
    bare only (no unknowns: ``kA = kB = None``)."""
    from .laws import Side
    X = core.data
    if core.side == "gram":
        return Side(A=X.K if X.correlated else Identity(core.m), kA=None, B=X.Sigma, kB=None,
                    m=core.m, k1=None, iid=True)
    return Side(A=X.Sigma, kA=None, B=X.K if X.correlated else Identity(core.m), kB=None,
                m=core.m, k1=None, iid=not X.correlated)


def unfold(word, i):
    """A bare feature core back into ``Fᵀ Σ̂ F`` letters."""
    from ..rewrite.letters import Core
    core = word[i].core
    inner = Core(core.data, core.side, core.chain[:-1], core.ddof)
    F = core.chain[-1]
    return word[:i] + (Rand(F, True), Bare(inner), Rand(F)) + word[i + 1:]


# ----------------------------------------------------------------- rules
def rule_general_law(ctx, word):
    """Pooled blocks and deterministic shifts: the general one-point law
    ``(Σ_k c_k X_kᵀX_k/n_k + B + z)⁻¹ ≃ (Σ_k c_k ρ_k Σ_k + B + z)⁻¹``,
    ``ρ_k = 1/(1+δ_k)``, ``δ_k = c_k Tr[Σ_k R]/n_k`` (iid rows), and its
    block-bidiagonal lift for products (``general_law.average``)."""
    if not any(isinstance(l, GRes) for l in word):
        return None
    return general_law.average(word, ctx.reg, ctx.variance_mode, canonical_str)


def rule_random_features(ctx, word):
    """Random features by nested conditioning: average over the data with
    the features given, then over the features (``features.average_one``;
    its single-core cases go back through :data:`AVERAGE` with the
    features-legacy switch on, where this rule steps aside)."""
    if ctx.features_legacy_on or not features.involves_features(word):
        return None
    return features.average_one(ctx, word)


def rule_sample_side(ctx, word):
    """``X`` outside ``XᵀX``: ``XᵀMX/n`` is the sample covariance of rows
    correlated by ``K_t = K + tK^{1/2}MK^{1/2}``, ``G(XᵀMX/n)G = −∂_tG_t``,
    averaged by the lift with sample-side sources (``sample_side.average``)."""
    if not sample_side.applies(word):
        return None
    return sample_side.average(ctx, word, canonical_str)


def refuse_feature_two_point(ctx, word):
    """Refusal: two or more resolvents of one feature-space core in a trace
    (the single-core rules have no two-point equivalent for feature chains;
    nested conditioning handles what it can before this)."""
    got = _first_core(word)
    if got is None or not got[0].chain or len(got[1]) < 2:
        return None
    raise NotImplementedError(
        f"two resolvents of the feature-space core {got[0]} in one trace "
        f"({canonical_str(word)}): two-point equivalents with random features are not implemented")


def rule_chain_sandwich(ctx, word):
    """One resolvent ``G = (𝔉ᵀΣ̂𝔉 + z)⁻¹`` of a feature chain
    ``𝔉 = F₁⋯F_L``: ``𝔉G𝔉ᵀ ≃ (κ₁/z)(Σ+κ)⁻¹`` and ``Tr G ≃ (p_L − df)/z``,
    ``κ Π_l(1 − df/p_l)(1 − df/n) = z``, ``κ₁ = κ Π_l(1 − df/p_l)``,
    ``df = Tr[Σ(Σ+κ)⁻¹]`` (``rules.chain_sandwich``)."""
    got = _first_core(word)
    if got is None or not got[0].chain or len(got[1]) != 1:
        return None
    core, ((i, l),), _ = got
    return rules.chain_sandwich(word, i, ctx.reg.side(core, l.z), l.z, core)


def rule_stable_pair(ctx, word):
    """``Σ̂`` next to its (only) resolvent, kept in the stable form:
    ``Σ̂(Σ̂+z)⁻¹ = I − z(Σ̂+z)⁻¹ ≃ I − κ(Σ+κ)⁻¹ = Σ(Σ+κ)⁻¹`` (Gram side:
    ``K(K+ν)⁻¹``)."""
    got = _first_core(word)
    if got is None or got[0].chain:
        return None
    core, mine, bares = got
    pair = _stable_pair(mine, bares, len(word))
    if pair is None:
        return None
    i, j = pair
    side = ctx.reg.side(core, mine[0][1].z)
    A = side.A
    P = Det(A * (A + side.kA * Identity(A.shape[0])).inverse())
    if (i, j) == (0, len(word) - 1):
        return [(sp.S.One, ((P,) + word[1:-1],))]
    return [(sp.S.One, (word[:i] + (P,) + word[j + 1:],))]


def refuse_bare_apart(ctx, word):
    """Refusal: a sample covariance ``Σ̂`` in the word apart from its
    resolvent (not the lone adjacent pair of :func:`rule_stable_pair`;
    canonicalisation has already used ``Σ̂G = I − zG`` where it could)."""
    got = _first_core(word)
    if got is None or got[0].chain:
        return None
    core, mine, bares = got
    if not bares or _stable_pair(mine, bares, len(word)) is not None:
        return None
    raise NotImplementedError(
        f"sample covariance {core} appears apart from its resolvent in {canonical_str(word)}")


def _plain(word):
    """``(core, mine)`` for a chain-free first core without bare copies."""
    got = _first_core(word)
    if got is None or got[0].chain or got[2]:
        return None
    return got[0], got[1]


def rule_one_point(ctx, word):
    """One resolvent of a core: ``(Σ̂+z)⁻¹ ≃ (κ/z)(Σ+κ)⁻¹`` with
    ``κ(1 − df₁/n) = z``, ``df₁ = Tr[Σ(Σ+κ)⁻¹]`` (iid rows); Gram side
    ``(XXᵀ/n+z)⁻¹ ≃ (ν/z)(K+ν)⁻¹``; correlated rows ``Tr[K(K+ν)⁻¹] = df₁``,
    ``κνdf₁ = nz`` (``rules.one_point``)."""
    got = _plain(word)
    if got is None or len(got[1]) != 1:
        return None
    core, ((i, l),) = got
    return rules.one_point(word, i, ctx.reg.side(core, l.z), l.z)


def rule_two_point(ctx, word):
    """Two resolvents of one core: ``Tr[PG₁QG₂] ≃ w₁w₂{Tr[PR₁QR₂] +
    c Tr[PM]Tr[QM]}``, ``R_i = (Σ+κ_i)⁻¹``, ``w_i = κ_i/z_i``,
    ``M = R₁ΣR₂``, ``c = ρ/(m(1−ργ))``, ``γ = Tr[Σ²R₁R₂]/m``; in variance
    mode also the second pairing ``c Tr[PMQᵀM]`` (``rules.two_point``)."""
    got = _plain(word)
    if got is None or len(got[1]) != 2:
        return None
    core, ((i, l1), (j, l2)) = got
    s1 = rules._SideAt(ctx.reg.side(core, l1.z), l1.z)
    s2 = rules._SideAt(ctx.reg.side(core, l2.z), l2.z)
    return rules.two_point(word, i, j, s1, s2, ctx.variance_mode)


def _correlated_kpoint(ctx, core):
    return core.side == "data" and core.data.correlated and core.ddof is None and not ctx.variance_mode


def rule_correlated_kpoint(ctx, word):
    """``k ≥ 3`` resolvents of a data-side core with correlated rows
    (``X = K^{1/2}ZΣ^{1/2}``): a block of the inverse of the block-bidiagonal
    lift, averaged by the operator-valued one-point law with sample-side
    sources (``sample_side.average_core``; first order only)."""
    got = _plain(word)
    if got is None or len(got[1]) < 3 or not _correlated_kpoint(ctx, got[0]):
        return None
    return sample_side.average_core(ctx, word, got[0].data, canonical_str)


def refuse_kpoint(ctx, word):
    """Refusal: ``k ≥ 3`` resolvents of a Gram-side core, or of correlated
    rows where :func:`rule_correlated_kpoint` does not apply (a centred
    sample covariance, variance mode)."""
    got = _plain(word)
    if got is None or len(got[1]) < 3:
        return None
    core, mine = got
    if (core.side == "data" and not core.data.correlated) or _correlated_kpoint(ctx, core):
        return None
    raise NotImplementedError(
        f"{len(mine)} resolvents of {core} in one trace ({canonical_str(word)}): "
        "k-point equivalents (k ≥ 3) are derivable for data-side cores of iid rows only")


def rule_kpoint_lift(ctx, word):
    """``k ≥ 3`` resolvents of a data-side core of iid rows: the word is a
    block of ``D⁻¹`` for the upper block-bidiagonal lift
    ``D = Σ̂ ⊗ E₁₁-pattern + B̃`` (resolvent ridges on the diagonal, the
    deterministic letters above it), averaged by the general one-point law
    (docs/math.md, ``general_law.average``)."""
    got = _plain(word)
    if got is None or len(got[1]) < 3:
        return None
    core, mine = got
    if core.side != "data" or core.data.correlated:
        return None
    return general_law.average(word, ctx.reg, ctx.variance_mode, canonical_str, first=mine[0][1])


def _first_bare(word):
    if any(isinstance(l, Res) for l in word):
        return None
    return next(((i, l) for i, l in enumerate(word) if isinstance(l, Bare)), None)


def rule_unfold_bare_chain(ctx, word):
    """A bare feature-space core (no resolvent in the word) written back
    as its letters, exactly: ``𝔉ᵀΣ̂𝔉 = F_Lᵀ(𝔉'ᵀΣ̂𝔉')F_L`` with
    ``𝔉 = 𝔉'F_L``."""
    got = _first_bare(word)
    if got is None or not got[1].core.chain:
        return None
    return [(sp.S.One, (unfold(word, got[0]),))]


def rule_bare_moments(ctx, word):
    """A core appearing only bare (no resolvent), exact for Gaussian rows:
    ``E[Σ̂] = Σ·Tr K/m``; ``E[Σ̂BΣ̂] = ΣBΣ + (ΣBᵀΣ + ΣTr[BΣ])/m`` (iid
    rows; outside variance mode the transposed pairing ``ΣBᵀΣ/m`` is
    dropped, first order like the two-point rule) (``rules.bare_expectation``)."""
    got = _first_bare(word)
    if got is None or got[1].core.chain:
        return None
    core = got[1].core
    check_alone(word, core)
    idx = [i for i, l in enumerate(word) if isinstance(l, Bare) and l.core == core]
    return rules.bare_expectation(word, idx, bare_side(core), first_order=not ctx.variance_mode)


def rule_paired_features(ctx, word):
    """A random-feature matrix ``F`` (``iid N(0, 1/p)``, ``p`` columns)
    paired with its transpose and no core: ``E[FBFᵀ] = Tr[B]/p · I``,
    ``E[FᵀAF] = Tr[A]/p · I``; refuses an unpaired ``F`` by name."""
    if any(isinstance(l, (Res, Bare)) for l in word):
        return None
    feats = [(i, l) for i, l in enumerate(word) if isinstance(l, Rand) and isinstance(l.sym, RandomFeatures)]
    if not feats:
        return None
    i, l = feats[0]
    partner = next((j for j, m in feats[1:] if m.sym == l.sym and m.t != l.t), None)
    if partner is None:
        raise NotImplementedError(f"unpaired random features {l.sym.name} in {canonical_str(word)}")
    return rules.features_expectation(word, i, partner, l.sym)


def refuse(ctx, word):
    """The final refusal: no rule applies; the message names the word."""
    rnd = [l for l in word if isinstance(l, Rand)]
    if rnd:
        raise NotImplementedError(
            f"cannot average {canonical_str(word)}: {rnd[0]} appears outside a sample covariance "
            "(data matrices must pair as XᵀX, XXᵀ or sit next to their resolvent)")
    raise NotImplementedError(f"cannot average {canonical_str(word)}: no averaging rule applies to it")


#: the rules in the order they are tried (module docstring)
RULES = (
    rule_general_law,
    rule_random_features,
    rule_sample_side,
    refuse_feature_two_point,
    rule_chain_sandwich,
    rule_stable_pair,
    refuse_bare_apart,
    rule_one_point,
    rule_two_point,
    rule_correlated_kpoint,
    refuse_kpoint,
    rule_kpoint_lift,
    rule_unfold_bare_chain,
    rule_bare_moments,
    rule_paired_features,
    refuse,
)

#: ``AVERAGE(ctx, word)``: the first rule of :data:`RULES` that applies
#: (``canonical.first_match`` passes its two arguments through unchanged)
AVERAGE = canonical.first_match(*RULES)
