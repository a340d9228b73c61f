"""Random features by nested conditioning (docs/math.md §Random features).

Words that contain a feature-space core ``FᵀΣ̂F`` (``F`` a ``d×p``
``sr.RandomFeatures``, iid ``N(0, 1/p)``; or a chain ``𝔉 = F₁⋯F_L``, or the
Gram form ``X𝔉𝔉ᵀXᵀ/n``) and that the single-core rules of ``rules`` do not
take (two or more resolvents, data ``X`` outside the core, …) are averaged
in two stages. Below, ``F`` stands for the whole chain ``𝔉``; stage F is
applied layer by layer from the top (``Σ_ℓ = F_ℓᵀΣ_{ℓ−1}F_ℓ`` given the
layers below, ``Σ₀ = Σ``; each layer's ridge is the chain law's
``κ Π_{j≤ℓ}(1 − df₁/p_j)``).

**Stage X — given F.** The features ``Y = XF`` have rows ``N(0, Σ_F)``,
``Σ_F = FᵀΣF``, so ``FᵀΣ̂F = YᵀY/n`` is an ordinary sample covariance with
the (deterministic given F) population ``Σ_F``. The data enter a word
otherwise only through ``X u`` for deterministic vectors ``u`` (a target
``y = Xw + ε``). Gaussian conditioning splits them exactly:

    X u = Y β_u + e_u,   β_u = Σ_F⁺ FᵀΣ u,   e_u = X_⊥ u ~ N(0, uᵀΣ_⊥u · I_n),

with ``X_⊥ = X − YΣ_F⁺FᵀΣ`` independent of ``Y`` and
``Σ_⊥ = Σ − ΣFΣ_F⁺FᵀΣ`` (``X_⊥F = 0``). Deterministic ``F`` next to ``Σ``
becomes ``FᵀΣF = Σ_F`` and ``FᵀΣu = Σ_F β_u``. The word is rebuilt with a
stand-in Gaussian data matrix ``Y`` (population a stand-in ``Σ_F``),
stand-in vectors ``β_u`` and stand-in noise ``e_u``, and derived by the
ordinary engine (one- and two-point equivalents, Wick). Its value is a
function of traces ``Tr φ(Σ_F)`` and forms ``β_uᵀ φ(Σ_F) β_v`` only (every
``p``-space matrix is a rational function of ``Σ_F``), and of the
renormalised ridge ``κ_F`` of the feature-space law.

**Stage F — average over F.** With ``B = Σ^{1/2}F`` and
``Ŝ = BBᵀ = Σ^{1/2}FFᵀΣ^{1/2}`` (a sample covariance of ``p`` samples with
population ``Σ``):

    uᵀΣ F ψ(Σ_F) FᵀΣ v = u'ᵀ χ(Ŝ) v',   χ(s) = s ψ(s),  u' = Σ^{1/2}u,
    Tr_p φ(Σ_F) = Tr_d φ(Ŝ) + (p − d) φ(0)

(the non-zero spectra of ``BᵀB`` and ``BBᵀ`` coincide; pseudo-inverses
``Σ_F⁺`` are ``0`` on the null space). ``χ`` is split into partial
fractions in ``s`` and each piece replaced by its one-point equivalent:
``(Ŝ+a)⁻¹ ≃ (κ/a)(Σ+κ)⁻¹`` with ``κ(1 − df₁(κ)/p) = a``; ``(Ŝ+a)⁻²`` by
``−∂_a`` of it (``dκ/da = 1/(1 − Tr[Σ²(Σ+κ)⁻²]/p)``); a product of two
resolvents at different ridges is kept whole (partial fractions would carry
``1/(a₁ − a₂)``, 0/0 at equal ridge values):
``(Ŝ+a₁)⁻¹(Ŝ+a₂)⁻¹ ≃ D₁₂[(κ₁/a₁)R₁R₂ + (κ₁κ₂/(a₁a₂p))Tr[ΣR₁R₂]R₂]``,
``R_i = (Σ+κ_i)⁻¹``, ``D₁₂ = 1/(1 − Tr[Σ²R₁R₂]/p)``; the pseudo-inverse
``Ŝ⁺ ≃ κ₀' Σ(Σ+κ₀)⁻²`` and the null-space projector
``I − ŜŜ⁺ ≃ κ₀(Σ+κ₀)⁻¹`` from the ridgeless law ``κ₀ = κ(0⁺)`` (``0`` when
``p ≥ rank Σ``), ``κ₀' = 1/(1 − Tr[Σ²(Σ+κ₀)⁻²]/p)``; polynomials by the exact
Wishart moments. ``E Ŝ⁺`` is infinite at ``p = rank Σ`` (square Wishart;
``κ₀ = 0``, ``κ₀' = ∞``), yet words finite there (``‖â‖²``, training error,
GCV, the square second layer of a chain) carry the ``Ŝ⁺`` pieces with a total
coefficient that vanishes identically once each ridge is written through its
law: such pieces are dropped exactly (:func:`_resolve_pinv`), so ``p = d`` is
the limit, not ``∞ − ∞``. The feature ridge is ``a = κ_F``, so ``κ`` is the unknown of
the product law ``κ(1 − df₁/n)(1 − df₁/p) = λ`` (docs/math.md) — the same block
the one-point rules use. In particular ``uᵀΣ_⊥u ≃ κ₀ uᵀΣ(Σ+κ₀)⁻¹u``.

**Additive feature noise** ``Φ = XF + √τΞ`` (one layer; ``Ξ`` iid
``N(0, 1)``, one letter ``Φ`` and its core ``ΦᵀΦ/n``,
``laws/feature_noise.py``). Stage X as above with ``Y = Φ`` and population
``S_τ = FᵀΣF + τI``: ``Xu = Φβ_u + e_u``, ``β_u = S_τ⁻¹FᵀΣu``,
``Var e_u = uᵀΣu − β_uᵀS_τβ_u`` (``e_u`` is uncorrelated with, hence
independent of, ``Φ``), ``FᵀΣF = S_τ − τ``. Stage F: ``S_τ`` is ``s + τ`` in
the functional calculus, ``β_uᵀψ(S_τ)β_v = uᵀΣF ψ(s+τ)/(s+τ)² FᵀΣv``; the
feature-space ridge is ``κ_F = κ(1 − df₁/p) − τ``, ``κ`` the unknown of the
``feature_noise`` law, so ``(S_τ + κ_F)⁻¹`` is the ``F``-law resolvent at ridge
``κ(1 − df₁/p)``; the poles at ``s = −τ`` go through the ``F``-law at ridge
``τ`` (``κ_τ``): ``Ŝ(Ŝ+τ)⁻¹ ≃ I − κ_τR_τ``, ``Ŝ(Ŝ+τ)⁻² ≃ κ_τ'ΣR_τ²``
(:meth:`_Calculus._noisy_form`, finite as ``τ → 0``).

**Random projections of pooled data** ``Fᵀ(Σ_k c_kX_kᵀX_k/n_k)F`` (several
independent groups, one layer ``F``; ``laws/projected_pooled.py``,
:func:`projected_pooled_value`) go the other way round: F given X first —
``Ŝ = Σ̂^{1/2}FFᵀΣ̂^{1/2}`` is a white Wishart with ``p`` samples and population
``Σ̂``, so ``F(FᵀΣ̂F + z)⁻¹Fᵀ ≃ (Σ̂ + κ)⁻¹`` with ``κ(1 − Tr[Σ̂(Σ̂+κ)⁻¹]/p) = z``,
and two of them ``QAQ ≃ Ĝ(A + γ̂Tr[ĜAĜ])Ĝ`` (source derivative,
``γ̂ = (κ²/p)/(1 − Tr[Σ̂²Ĝ²]/p)``) — then X through the general pooled law at
ridge ``κ`` (the engine, unchanged); the law's ``δ_k`` at ``κ`` and ``κ`` are
solved jointly. The reverse order (X given F, then F) is
``derivations/_pooled.ProjectedPooled``; the two agree to rounding.

First order only: products and ratios of ``F``-random traces are evaluated
at their equivalents (they concentrate); variances over ``F`` are refused.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix

from ..objects import Form, Tr
from ..objects.matrices import GaussianData, RandomFeatures
from ..rewrite.letters import An, Bare, Core, Det, Fn, Rand, Res
from .laws import family

_COUNT = [0]
#: ``κ₀ = κ(0⁺)`` of the ``p``-sample law is solved at this ridge: the solver
#: refuses ``z = 0`` where ``κ(0⁺) = 0`` (``p ≥ rank Σ``), and
#: ``|κ(ζ) − κ₀| ≤ ζ κ₀'`` is 180 orders below double (and 50-digit) precision.
RIDGELESS = sp.Float("1e-230", 15)


def involves_features(word):
    """Whether the word has a feature-space core or a random-feature letter."""
    for l in word:
        if isinstance(l, (Res, Bare, Fn, An)) and l.core.chain:
            return True
        if isinstance(l, Rand) and isinstance(l.sym, RandomFeatures):
            return True
        if isinstance(l, Rand) and getattr(l.sym, "role", None) == "noisy_features":
            return True             # Φ = XF + √τΞ (laws/feature_noise.py)
    return False


def refuse_random_features(*exprs):
    """Variances/covariances across draws of random features are second
    order in ``F``: nested conditioning is first order (products of
    ``F``-random traces concentrate, their fluctuations are not derived)."""
    from ..objects.matrices import random_symbols
    for e in exprs:
        feats = sorted(s.name for s in random_symbols(e) if isinstance(s, RandomFeatures))
        if feats:
            raise NotImplementedError(
                f"variance/covariance of {sp.sstr(e)[:120]} over the random features {', '.join(feats)}: "
                "not derived (random features are averaged at first order only)")


def average_one(eng, word):
    """Average a word containing random features. The engine's single-core
    rules go first (one resolvent sandwiched ``𝔉G𝔉ᵀ``/``Tr G``, bare
    chains, ``E[FBFᵀ]``: outputs unchanged); words they refuse go through
    nested conditioning — also words with bare feature cores and no
    resolvent (``Tr[𝔉ᵀΣ̂𝔉] ≃ Tr Σ``, met in ``Tr(Σ̂²G) = Tr Σ̂ − λTr(Σ̂G)``)."""
    if _projected(word):
        return [(projected_pooled_value(eng, word), ((Det(Identity(1)),),))]
    plan = _plan(word)
    if _noisy(word):
        # additive feature noise Φ = XF + √τΞ: no single-core rule knows its law
        if plan is None or len(plan) < 3:
            raise NotImplementedError(
                f"additive feature noise in {_word_str(word)}: outside nested conditioning (one noisy "
                "feature map Φ = XF + √τΞ with its core ΦᵀΦ/n, the data X only through Xu, F only "
                "through FᵀΣF and FᵀΣu; Ξ, XF or another core elsewhere in the word are not derived)")
        return _nested(eng, word, plan, None)
    if not _legacy_shape(word):
        if plan is not None:
            return _nested(eng, word, plan, None)
        deep = next((l.core for l in word if isinstance(l, (Res, Bare)) and len(l.core.chain) > 1), None)
        if deep is not None and any(isinstance(l, Res) for l in word):
            raise NotImplementedError(
                f"deep feature chain {deep} in {_word_str(word)}: nested conditioning (features given, then "
                "averaged) is implemented for one feature layer; beyond one resolvent sandwiched by the "
                "chain, deeper chains are not derived")
    with eng.features_legacy():
        try:
            return eng.average_one(word)
        except NotImplementedError as first:
            if plan is None:
                raise first
            return _nested(eng, word, plan, first)


def _legacy_shape(word):
    """One feature-space resolvent and nothing else random but its features:
    the single-core rules take it (their outputs are kept unchanged)."""
    res = [l for l in word if isinstance(l, Res)]
    return len(res) == 1 and all(isinstance(l, (Det, Res)) or (isinstance(l, Rand) and l.sym in res[0].core.chain)
                                 for l in word)


def _nested(eng, word, plan, first):
    try:
        if eng.variance_mode:
            raise NotImplementedError(
                f"second-order (variance/copy-comparison) quantities with random features "
                f"({_word_str(word)}) are not derived: only first-order nested conditioning is")
        return [(nested_value(eng, word, plan), ((Det(Identity(1)),),))]
    except NotImplementedError as e:
        if first is not None:
            raise e from first
        raise


# ---------------------------------------------------------------- stage X
def _plan(word):
    """``(X, chain)`` when the word is in the class nested conditioning
    covers: one data matrix (iid rows, raw ``XᵀX/n``) and one feature chain
    ``𝔉 = F₁⋯F_L``; ``(X, (F,), (Ξ, c))`` for one noisy feature map
    ``Φ = XF + cΞ`` (its letters, resolvents of its core only); else ``None``."""
    from ..laws.feature_noise import NoisyCore, NoisyFeatures
    X, chain, loose, noise, phis = None, None, set(), set(), set()
    for l in word:
        if isinstance(l, (Fn, An)):
            return None
        if isinstance(l, Rand) and isinstance(l.sym, NoisyFeatures):
            phi = l.sym
            noise.add(phi.Xi)
            noise.add(("c", phi.c))
            phis.add(phi)
            if X is not None and phi.X != X or chain is not None and chain != (phi.F,):
                return None
            X, chain = phi.X, (phi.F,)
            continue
        if isinstance(l, (Res, Bare)):
            c = l.core
            if isinstance(c, NoisyCore):
                if isinstance(l, Bare) or c.side != "data":
                    return None
                noise.add(c.noise[0])
                noise.add(("c", c.noise[1]))
            if (c.side != "data" and not c.chain) or c.ddof is not None or c.data.correlated or c.data.has_mean:
                return None
            if X is not None and c.data != X:
                return None
            X = c.data
            if c.chain:
                if chain is not None and c.chain != chain:
                    return None
                chain = c.chain
            elif isinstance(l, Res):
                return None          # a data-space resolvent next to features
        elif isinstance(l, Rand):
            if isinstance(l.sym, RandomFeatures):
                loose.add(l.sym)
            elif isinstance(l.sym, GaussianData):
                if X is not None and l.sym != X:
                    return None
                X = l.sym
            else:
                return None
    if X is None or chain is None or not any(isinstance(l, (Res, Bare)) and l.core.chain for l in word):
        return None
    if not loose <= set(chain) or chain[0].shape[0] != X.shape[1]:
        return None
    if noise:
        cores = {l.core for l in word if isinstance(l, (Res, Bare))}
        # one noisy feature map Φ = XF + cΞ (its letters and its core; XF − cΞ is another)
        if len(noise) != 2 or len(phis) > 1 or not all(isinstance(c, NoisyCore) for c in cores) \
                or len(chain) != 1:
            return None
        (Xi,) = [x for x in noise if not isinstance(x, tuple)]
        (c,) = [x[1] for x in noise if isinstance(x, tuple)]
        return X, chain, (Xi, c)
    return X, chain


# ---------------------------------------------------------------- random projections of pooled data
def _projected(word):
    """Whether the word has a resolvent of a projected pooled core ``Fᵀ(Σ_k c_kΣ̂_k)F``."""
    from ..laws.projected_pooled import ProjectedPooledCore
    return any(isinstance(l, (Res, Bare, Fn, An)) and isinstance(l.core, ProjectedPooledCore) for l in word)


_PP_PLACE = {}      # (core, z) → placeholder of the stage-F ridge κ


def projected_pooled_value(eng, word):
    """``E Tr[word]`` for a word with resolvents ``G = (FᵀΣ̂F + z)⁻¹`` of a
    projected pooled core, ``Σ̂ = Σ_k c_kX_kᵀX_k/n_k`` (``laws/projected_pooled.py``),
    at first order: F given X, then X.

    Class: ``F`` enters only as ``Q = FGFᵀ`` (one or two of them, one core,
    one ``z``); the other letters are the blocks' data ``X_k`` (``X_kᵀ``),
    their bare cores ``X_kᵀX_k/n_k`` and deterministic matrices. Anything
    else raises ``NotImplementedError`` naming the word.

    Stage F: ``Q ≃ Ĝ = (Σ̂ + κ)⁻¹`` and, with ``A`` and ``B`` the two stretches
    between the ``Q``'s of the cyclic word ``QAQB``,
    ``Tr[QAQB] ≃ Tr[ĜAĜB] + γ̂ Tr[ĜAĜ] Tr[Ĝ²B]``,
    ``γ̂ = (κ²/p)/(1 − (d − 2κTrĜ + κ²TrĜ²)/p)`` (the source derivative
    ``QAQ = −∂_tQ|_{Σ̂→Σ̂+tA}``; ``Tr[Σ̂²Ĝ²] = d − 2κTrĜ + κ²TrĜ²``). Stage X:
    every trace is derived by the engine (the general law at ridge ``κ``;
    products of traces at their equivalents), and the general law's unknowns
    at ``κ`` become the ``δ_k`` of the ``projected_pooled`` group, ``κ`` its
    last unknown (``κ(1 − Tr[MR]/p) = z``)."""
    from ..laws.projected_pooled import ProjectedPooledCore
    from ..rewrite.letters import GRes

    def what():                 # the word, for messages only (printing it costs)
        return _word_str(word)
    if eng.variance_mode:
        raise NotImplementedError(
            f"second-order (variance/copy-comparison) quantities with random projections of pooled data "
            f"({what()}) are not derived: only first-order nested conditioning is")
    res = [l for l in word if isinstance(l, Res)]
    cores = {l.core for l in word if isinstance(l, (Res, Bare, Fn, An)) and isinstance(l.core, ProjectedPooledCore)}
    if len(cores) != 1 or len({l.z for l in res}) != 1 or any(not isinstance(l, Res) and l.core in cores
                                                                   for l in word if isinstance(l, (Bare, Fn, An))):
        raise NotImplementedError(
            f"random projections of pooled data: {what()} has several projected cores or ridges, or a bare or "
            "spectral function of one (only resolvents (FᵀΣ̂F + z)⁻¹ of one core at one ridge are derived)")
    (core,) = cores
    z = res[0].z
    F = core.feature
    data = {c.data for c, _ in core.blocks}
    # bare feature cores FᵀX_kᵀX_kF/n_k back into letters Fᵀ (X_kᵀX_k/n_k) F
    unfolded = []
    for l in word:
        if isinstance(l, Bare) and l.core.chain == (F,) and type(l.core) is Core:
            unfolded += [Rand(F, True), Bare(Core(l.core.data, l.core.side, (), l.core.ddof)), Rand(F)]
        else:
            unfolded.append(l)
    word = tuple(unfolded)
    n = len(word)
    # F only as F G Fᵀ: rotate to start at a Q
    q_at = [i for i in range(n) if word[i] == Rand(F) and isinstance(word[(i + 1) % n], Res)
            and word[(i + 2) % n] == Rand(F, True)]
    nF = sum(1 for l in word if isinstance(l, Rand) and l.sym == F)
    if not q_at or nF != 2 * len(q_at) or len(res) != len(q_at):
        raise NotImplementedError(
            f"random projections of pooled data: {what()} has F outside F(FᵀΣ̂F + z)⁻¹Fᵀ "
            "(only ŵ = F·â-type words, F G Fᵀ, are derived)")
    if len(q_at) > 2:
        raise NotImplementedError(
            f"random projections of pooled data: {what()} has three or more projected resolvents (not derived)")
    w = word[q_at[0]:] + word[:q_at[0]]
    segs, cur, i = [], None, 0
    while i < n:
        l = w[i]
        if l == Rand(F) and isinstance(w[(i + 1) % n], Res):
            if cur is not None:
                segs.append(tuple(cur))
            cur = []
            i += 3
            continue
        if not ((isinstance(l, Rand) and l.sym in data) or isinstance(l, Det)
                or (isinstance(l, Bare) and type(l.core) is Core and not l.core.chain and l.core.side == "data"
                    and l.core.data in data and l.core.ddof is None)):
            raise NotImplementedError(
                f"random projections of pooled data: cannot condition on {l} in {what()} (the class: F G Fᵀ, "
                "the blocks' data X_k, their cores X_kᵀX_k/n_k and deterministic matrices)")
        cur.append(l)
        i += 1
    segs.append(tuple(cur))
    # stage X: one sub-derivation per (core, z) in this derivation (values memoised by word)
    memo = eng.memo("projected_pooled")
    if (core, z) not in memo:
        from .engine import Engine
        memo[(core, z)] = (Engine(), {}, sp.Dummy("kappaF", positive=True))
    sub, values, kap = memo[(core, z)]
    G = GRes(core.blocks, None, kap)            # Ĝ = (Σ_k c_kΣ̂_k + κ)⁻¹
    d, p = F.shape

    def value(ww):
        if ww not in values:
            try:
                values[ww] = sub.word_value(ww)
            except NotImplementedError as e:
                raise NotImplementedError(
                    f"random projections of pooled data: after averaging over F, {what()} needs "
                    f"Tr[{_word_str(ww)}], which the engine does not derive ({e})") from e
        return values[ww]

    def randomness(seg):
        return any(isinstance(l, (Rand, Bare)) for l in seg)

    if len(segs) == 1:
        total = value((G,) + segs[0])
    else:
        A, B = segs
        if randomness(A) and not randomness(B):
            A, B = B, A       # Tr[ĜAĜ] with the deterministic stretch (equal by cyclicity either way)
        trG, trG2 = value((G,)), value((G, G))
        gamma = (kap ** 2 / p) / (1 - (d - 2 * kap * trG + kap ** 2 * trG2) / p)
        total = value((G,) + A + (G,) + B) + gamma * value((G,) + A + (G,)) * value((G, G) + B)
    # the general law at ridge κ → the projected_pooled group (δ_k, κ)
    side = eng.reg.side(core, z)
    ours = list(_group_of(eng, side).equations)[:len(side.deltas)]
    rep = {kap: side.kA}
    for g in sub.reg.groups():
        if g.kind != "general" or sp.sympify(g.z) != kap or len(g.unknowns) != len(side.deltas):
            raise NotImplementedError(
                f"random projections of pooled data: internal — after averaging over F, {what()} brought in "
                f"the law {g.kind!r} at {sp.sstr(g.z)} (only the pooled law at the stage-F ridge is expected)")
        rep.update(zip(g.unknowns, side.deltas))
        if [e.xreplace(rep) for e in g.equations] != ours:
            raise NotImplementedError(
                f"random projections of pooled data: internal — the pooled law's equations at the stage-F "
                f"ridge in {what()} do not match the projected_pooled group")
    from .simplify import xreplace_shared
    return xreplace_shared(total, rep)


def _group_of(eng, side):
    """The :class:`UnknownGroup` whose last unknown is ``side.kA``."""
    for g in eng.reg.groups():
        if g.unknowns and g.unknowns[-1] == side.kA:
            return g
    raise NotImplementedError("random projections of pooled data: internal — group not registered")


def _noisy(word):
    """Whether the word has noisy features ``Φ = XF + √τΞ`` (a letter or its core)."""
    from ..laws.feature_noise import NoisyCore, NoisyFeatures
    return any((isinstance(l, Rand) and isinstance(l.sym, NoisyFeatures))
               or (isinstance(l, (Res, Bare, Fn, An)) and isinstance(l.core, NoisyCore)) for l in word)


class _Stage:
    """Stand-ins of one nested derivation: ``S_ℓ`` for ``Σ_ℓ = F_ℓᵀΣ_{ℓ−1}F_ℓ``
    (``Σ₀ = Σ``), ``β^{(ℓ)}_u = Σ_ℓ⁺(F₁⋯F_ℓ)ᵀΣu`` (``β^{(0)}_u = u``), the
    features' data ``Y`` and the residual noises ``e_u``."""

    def __init__(self, X, chain, noise=None, eng=None):
        from ..objects.matrices import Covariance, GaussianNoise, Vector
        from ..objects.symbols import Scalar
        _COUNT[0] += 1
        k = _COUNT[0]
        self.X, self.chain, self.L = X, chain, len(chain)
        self.n, self.d = X.n, X.d
        self.dims = [X.d] + [F.shape[1] for F in chain]
        self.p = self.dims[-1]
        self.Ss = [X.Sigma] + [Covariance(f"_SigmaF{k}_{l}", self.dims[l]) for l in range(1, self.L + 1)]
        self.S = self.Ss[-1]
        self.Y = GaussianData(f"_Y{k}", self.n, self.S)
        self._Vector, self._Noise, self._Scalar = Vector, GaussianNoise, Scalar
        self.k = k
        self.betas = {}     # key → [u, β⁽¹⁾, …, β⁽ᴸ⁾]
        self.noises = {}    # key → (u, e, v)
        self.places = {}    # (κ, m) → placeholder of κ Π_{j≤m}(1 − df₁(κ)/p_j)
        # additive feature noise Φ = XF + √τΞ: S stands for S_τ = FᵀΣF + τI (``tau`` = 0 without)
        self.fnoise, self.eng = noise, eng
        self.tau = sp.simplify(noise[1] ** 2) if noise else sp.S.Zero     # τ = c²
        self.lowered = {}   # ridge a (no placeholder) → κ_a of the F-law at ridge a (noise only)
        self.pinv = {}      # placeholder P → (layer, its value): pieces with a pole at s = 0 (Σ_F⁺, :func:`_stage_f`)
        self.relations = []  # (z, lhs): the chain laws' equations lhs(κ) = z of this word's ridges
        self.calcs = {}     # layer → its _Calculus

    def beta(self, u):
        key = sp.srepr(u)
        if key not in self.betas:
            i = len(self.betas)
            self.betas[key] = [u] + [self._Vector(f"_beta{self.k}_{i}_{l}", self.dims[l])
                                     for l in range(1, self.L + 1)]
        return self.betas[key][-1]

    def noise(self, u):
        key = sp.srepr(u)
        if key not in self.noises:
            if self.noises:
                raise NotImplementedError(
                    f"random features: the data enter through two different directions "
                    f"({sp.sstr(next(iter(self.noises.values()))[0].T)} and {sp.sstr(u.T)}); "
                    "their correlated residuals are not implemented")
            v = self._Scalar(f"_v{self.k}", positive=True)
            e = self._Noise(f"_e{self.k}", self.n, v)
            self.noises[key] = (u, e, v)
        return self.noises[key][1]

    def Xu(self, u):
        """``X u = Y β_u + e_u``."""
        return self.Y * self.beta(u) + self.noise(u)

    def place(self, kappa, m):
        """The ridge ``κ Π_{j≤m}(1 − df₁(κ)/p_j)`` seen by ``Σ_m`` in the chain
        law of ``κ`` (a placeholder for ``m ≥ 1``, ``κ`` itself at ``m = 0``)."""
        if m == 0:
            return kappa
        ph = _PLACES.setdefault((kappa, m), sp.Dummy(f"k{m}", positive=True))
        self.places[(kappa, m)] = ph
        return ph

    def place_values(self):
        Sigma, d = self.X.Sigma, self.d
        out = {}
        for (kappa, m), ph in self.places.items():
            df = Tr(Sigma * (Sigma + kappa * Identity(d)).inverse())
            out[ph] = kappa * sp.Mul(*[(1 - df / self.dims[j]) for j in range(1, m + 1)])
        return out

    def lower(self, a):
        """The placeholder one level down from ``a``. With feature noise a ridge
        that is no placeholder (the pole at ``s = −τ`` of ``S_τ⁻¹``) is seen by
        ``Σ`` through the ``F``-law at that ridge: ``κ_a(1 − df₁(κ_a)/p) = a``
        (a white-Wishart group with ``p`` samples and population ``Σ``)."""
        for (kappa, m), ph in self.places.items():
            if ph == a:
                return self.place(kappa, m - 1)
        if self.fnoise and self.L == 1 and not any(a.has(ph) for ph in self.places.values()):
            if a not in self.lowered:
                Phi = GaussianData(f"_Phi{self.k}_tau", self.p, self.X.Sigma)
                # solved at a + RIDGELESS: at τ = 0 (p ≥ rank Σ) the solver refuses z = 0 where
                # κ(0⁺) = 0; the shift is ~200 orders below double (and 50-digit) precision
                self.lowered[a] = self.eng.reg.side(Core(Phi, "data", ()), a + RIDGELESS).kA
            return self.lowered[a]
        raise NotImplementedError(f"random features: internal — unknown feature ridge {a}")

    def eff(self, a):
        """The ridge ``a`` as its law was solved: ``a + RIDGELESS`` for a lowered noise
        ridge (so ``κ_a/a`` stays finite at ``τ = 0``), ``a`` itself otherwise."""
        return a + RIDGELESS if a in self.lowered else a


def _tokens(word, st):
    """Letters → tokens ``(kind, payload)``; returns ``(coeff, tokens)``. The
    chain ``F₁⋯F_L`` (and its transpose) is one token."""
    X, chain, n, L = st.X, st.chain, st.n, st.L

    def cont(l):   # a letter continuing a chain begun before it
        return isinstance(l, Rand) and l.sym in chain and (
            (not l.t and chain.index(l.sym) > 0) or (l.t and chain.index(l.sym) < L - 1))
    r = next((i for i, l in enumerate(word) if not cont(l)), None)
    if r is None:
        raise NotImplementedError("random features: a word made of feature letters only")
    word = word[r:] + word[:r]
    coeff = sp.S.One
    out = []
    Ginv = lambda z: (st.Y.T * st.Y / n + z * Identity(st.p)).inverse()
    i = 0
    while i < len(word):
        l = word[i]
        if isinstance(l, Res) and l.core.side == "gram":      # (X𝔉𝔉ᵀXᵀ/n + z)⁻¹ = (YYᵀ/n + z)⁻¹
            out.append(("p", (st.Y * st.Y.T / n + l.z * Identity(n)).inverse()))
        elif isinstance(l, Bare) and l.core.side == "gram":
            out.append(("p", st.Y * st.Y.T / n))
        elif isinstance(l, Res):
            out.append(("p", Ginv(l.z)))
        elif isinstance(l, Bare) and l.core.chain:
            out.append(("p", st.Y.T * st.Y / n))
        elif isinstance(l, Bare):
            coeff /= n
            out += [("close", "X"), ("open", "X")]
        elif isinstance(l, Rand) and st.fnoise and getattr(l.sym, "role", None) == "noisy_features":
            out.append(("p", st.Y.T if l.t else st.Y))        # Φ = XF + √τΞ: rows N(0, S_τ) given F
        elif isinstance(l, Rand) and l.sym in chain:
            want = tuple(Rand(F, True) for F in reversed(chain)) if l.t else tuple(Rand(F) for F in chain)
            if tuple(word[i:i + L]) != want:
                raise NotImplementedError(
                    f"random features: {l} outside the full chain {'·'.join(F.name for F in chain)}")
            out.append(("open", "F") if l.t else ("close", "F"))
            i += L
            continue
        elif isinstance(l, Rand) and l.sym == X:
            out.append(("close", "X") if l.t else ("open", "X"))
        elif isinstance(l, Det):
            out.append(("det", l.expr))
        else:
            raise NotImplementedError(f"random features: cannot condition on {l}")
        i += 1
    return coeff, out


def _prod(mats, size):
    if not mats:
        return Identity(size)
    return MatMul(*mats).doit() if len(mats) > 1 else mats[0]


def _translate(word, st):
    """The word as a matrix expression in the stand-ins (stage X)."""
    coeff, toks = _tokens(word, st)
    opens = [i for i, t in enumerate(toks) if t[0] == "open"]
    if opens:
        toks = toks[opens[0]:] + toks[:opens[0]]
    mats, i = [], 0
    Sigma = st.X.Sigma
    while i < len(toks):
        kind, val = toks[i]
        if kind == "p":
            mats.append(val)
            i += 1
            continue
        if kind == "det":
            if val.shape[0] == st.d or val.shape[1] == st.d:
                raise NotImplementedError(f"random features: deterministic {sp.sstr(val)} outside a data block")
            mats.append(val)
            i += 1
            continue
        if kind == "close":
            raise NotImplementedError("random features: unbalanced data/feature letters")
        j = i + 1
        run = []
        while j < len(toks) and toks[j][0] == "det":
            run.append(toks[j][1])
            j += 1
        if j >= len(toks) or toks[j][0] != "close":
            raise NotImplementedError(f"random features: cannot condition the block after {val}")
        block, c = _block(val, run, toks[j][1], st, Sigma)
        coeff *= c
        mats.append(block)
        i = j + 1
    return coeff, mats


def _block(left, run, right, st, Sigma):
    """``L · run · R`` for ``L ∈ {X, Fᵀ}``, ``R ∈ {Xᵀ, F}``, ``run`` a
    product of deterministic ``d``-space letters."""
    run = [m for m in run if not isinstance(m, Identity)]
    cols = [k for k, m in enumerate(run) if m.shape[1] == 1]
    if not cols:
        if st.fnoise and {left, right} == {"X", "F"}:
            raise NotImplementedError(
                "additive feature noise: XF outside the noisy features Φ = XF + √τΞ is not derived")
        if left == "X" and right == "F" and not run:
            return st.Y, sp.S.One
        if left == "F" and right == "X" and not run:
            return st.Y.T, sp.S.One
        if left == "F" and right == "F" and len(run) == 1 and run[0] == Sigma:
            if st.fnoise:                       # FᵀΣF = S_τ − τI
                return st.S - st.tau * Identity(st.p), sp.S.One
            return st.S, sp.S.One
        what = {("X", "X"): "X M Xᵀ", ("F", "F"): "Fᵀ M F with M ≠ Σ"}.get((left, right), "X M F")
        raise NotImplementedError(
            f"random features: {what} (M = {sp.sstr(_prod(run, st.d))}) is outside nested conditioning")
    first = cols[0]
    last = max(k for k, m in enumerate(run) if m.shape[0] == 1)
    A, mid, B = run[:first + 1], run[first + 1:last], run[last:]
    c = Form(_prod(mid, 1)) if mid else sp.S.One
    if left == "X":
        L = st.Xu(_prod(A, st.d))
    else:
        if A[0] != Sigma or len(A) < 2:
            raise NotImplementedError(
                f"random features: Fᵀ next to {sp.sstr(A[0])} (only FᵀΣ… is conditioned)")
        L = st.S * st.beta(_prod(A[1:], st.d))
    if right == "X":
        R = st.Xu(_prod(B, 1).T).T
    else:
        if B[-1] != Sigma or len(B) < 2:
            raise NotImplementedError(
                f"random features: F next to {sp.sstr(B[-1])} (only …ΣF is conditioned)")
        R = st.beta(_prod(B[:-1], 1).T).T * st.S
    return L * R, c


# ---------------------------------------------------------------- the two stages
def nested_value(eng, word, plan):
    from .engine import Engine
    X, chain = plan[:2]
    noise = plan[2] if len(plan) > 2 else None
    st = _Stage(X, chain, noise, eng)
    coeff, mats = _translate(word, st)
    M = _prod(mats, st.p)
    sub = Engine()
    inner = sp.S.Zero
    try:
        for c, w in sub.atom_words(Tr(M)):
            inner += sub.term_value(c, [w])
    except NotImplementedError as e:
        raise NotImplementedError(
            f"random features: after conditioning on the features, {_word_str(word)} becomes a feature-space "
            f"term the engine does not derive ({e})") from e
    inner *= coeff
    # the feature-space law's unknown κ_F(z) → the chain law's ridge at level L
    a_of = {}
    for g in sub.reg.groups():
        # the feature-space stage must be the one-unknown law κ Π(1 − df₁/m_j) = z (laws registry)
        if not family(g.kind).presents_kappa or len(g.unknowns) != 1:
            raise NotImplementedError("random features: internal feature-space law not recognised")
        if noise:
            # κ_F = κ(1 − df₁(κ)/p) − τ, κ the feature-noise law's unknown (laws/feature_noise.py)
            from ..laws.feature_noise import NoisyCore
            side = eng.reg.side(NoisyCore(X, "data", chain, noise=noise), g.z)
            a_of[g.unknowns[0]] = st.place(side.kA, st.L) - st.tau
            st.relations.append(_relation(eng, side.kA))
            continue
        side = eng.reg.side(Core(X, "data", chain), g.z)
        a_of[g.unknowns[0]] = st.place(side.kA, st.L)
        st.relations.append(_relation(eng, side.kA))
    inner = inner.xreplace(a_of)
    return _stage_f(eng, st, inner)


def _stage_f(eng, st, value):
    """Average over ``F_L``, then ``F_{L−1}`` … ``F₁`` (each layer given the
    ones below it), then replace the ridge placeholders by their values."""
    for u, e, v in st.noises.values():
        # uᵀΣ_⊥u = uᵀΣu − β_uᵀ Σ_L β_u (Σ_⊥ = Σ − Σ𝔉Σ_L⁺𝔉ᵀΣ)
        bL = st.betas[sp.srepr(u)][-1]
        value = value.xreplace({v: Form(u.T * st.X.Sigma * u) - Form(bL.T * st.S * bL)})
    value = _layers(eng, st, value, st.L)
    # pieces with a pole at s = 0 (Σ_F⁺) of layer ℓ, averaged over the layers below it
    full, todo = {}, list(st.pinv)
    while todo:
        P = todo.pop()
        layer, expr = st.pinv[P]
        full[P] = _layers(eng, st, expr, layer - 1)
        todo += [Q for Q in st.pinv if Q not in full and Q not in todo]
    places = st.place_values()
    value = value.xreplace(places)
    full = {P: e.xreplace(places) for P, e in full.items()}
    return _resolve_pinv(st, value, full)


def _layers(eng, st, value, top):
    """Stage F of layers ``top, top−1, …, 1`` on ``value`` (functionals of the stand-ins)."""
    for layer in range(top, 0, -1):
        if layer not in st.calcs:
            st.calcs[layer] = _Calculus(eng, st, layer)
        calc = st.calcs[layer]
        mine = [calc.S] + list(calc.beta_of)
        for _ in range(8):      # innermost functionals first (a Gram-side trace can nest them)
            funcs = {f for f in value.atoms(Tr, Form) if any(f.has(x) for x in mine)
                     and not any(isinstance(g, (Tr, Form)) and g != f for g in sp.preorder_traversal(f.arg))}
            if not funcs:
                break
            value = value.xreplace({f: calc.functional(f) for f in funcs})
        if any(value.has(x) for x in mine):
            raise NotImplementedError("random features: internal — stand-ins left after averaging over F")
    return value


def _relation(eng, kappa):
    """``(z, lhs)`` of the one-equation group ``lhs(κ) = z`` of ``κ`` (``None`` if not that shape)."""
    for g in eng.reg.groups():
        if tuple(g.unknowns) == (kappa,) and len(g.equations) == 1 \
                and sp.sympify(g.equations[0].rhs) == sp.sympify(g.z):
            return sp.sympify(g.z), g.equations[0].lhs
    return None


def _resolve_pinv(st, value, full):
    """Replace the placeholders ``P`` of the ``Σ_F⁺`` pieces (:meth:`_Calculus._pinv`).

    ``E u'ᵀŜ⁺u'`` and ``E Tr Ŝ⁺`` (``Ŝ = Σ^{1/2}FFᵀΣ^{1/2}``, ``p`` samples) are
    infinite at ``p = d`` (square Wishart; their equivalent ``κ₀' = 1/(1 −
    Tr[Σ²(Σ+κ₀)⁻²]/p)`` with ``κ₀ = 0`` there), yet a word that is finite there
    (``‖â‖²``, the training error, …) carries them with a total coefficient
    that is identically zero once the ridge ``z`` is written through its law
    (``z = κ_F(1 − Tr[Σ_F(Σ_F+κ_F)⁻¹]/n)`` after stage F): the pieces cancel
    exactly, but ``∞ − ∞`` at ``p = d`` (NaN) and cancellation near it. A
    placeholder the value does not depend on is set to ``0`` (an exact
    rewriting for every ``p``, and the removable ``0/0`` at ``p = d`` gone);
    one it does depend on gets its value (unchanged: infinite at ``p = d``).

    The dependence is decided exactly, not numerically: the value, with each
    ``z`` replaced by its law's left side, is a rational function of the
    placeholders, the unknowns, the parameters and the trace/form atoms
    (taken as independent variables, which only makes the test stricter).
    It is evaluated in exact rational arithmetic at two random points that
    differ only in ``P``, at two independent draws (fixed seed); a rational
    function of degree ``D`` that depends on ``P`` takes equal values at such a
    pair with probability at most ``2D/2⁶²`` (Schwartz–Zippel lemma), and any
    undefined evaluation (a pole hit) keeps ``P``'s value."""
    if not full:
        return value
    subst = {}
    for rel in st.relations:
        if rel is None:
            continue
        z, lhs = rel
        if isinstance(z, sp.Symbol) and z not in subst and not lhs.has(z):
            subst[z] = lhs
    while True:
        ps = [P for P in full if value.has(P)]
        if not ps:
            return value
        P = ps[0]
        if _independent_of(value.xreplace(subst), P, ps):
            value = value.xreplace({P: sp.S.Zero})
        else:
            value = value.xreplace({P: full[P]})


def _independent_of(expr, P, others, draws=2, seed=20261128):
    """Whether ``expr`` (a rational function) does not depend on ``P``, by
    exact evaluation at random rational points (see :func:`_resolve_pinv`)."""
    import random
    rng = random.Random(seed)
    expr = expr.xreplace({f: sp.Rational(f) for f in expr.atoms(sp.Float)})

    def r():
        return sp.Rational(rng.randrange(1, 2 ** 62), rng.randrange(1, 2 ** 62))
    for _ in range(draws):
        vals = {a: r() for a in expr.atoms(Tr, Form)}
        e = expr.xreplace(vals)
        syms = {x: r() for x in e.free_symbols if x not in others}
        e = e.xreplace(syms)
        base = {Q: r() for Q in others if Q != P}
        v1 = e.xreplace({**base, P: r()})
        v2 = e.xreplace({**base, P: r()})
        if not (v1.is_Rational and v2.is_Rational) or v1 != v2:
            return False
    return True


_S = sp.Dummy("s")       # an eigenvalue of Σ_F
_PLACES = {}             # (κ, level) → placeholder of the ridge seen at that level
_PIECES = {}             # χ → its partial fractions


class _Calculus:
    """Stage F at one layer ``ℓ``: functional calculus in ``s`` (an eigenvalue
    of ``Σ_ℓ``), with ``Σ_{ℓ−1}`` playing ``Σ`` and ``β^{(ℓ−1)}`` playing ``u``."""

    def __init__(self, eng, st, layer):
        self.eng, self.st, self.layer = eng, st, layer
        self.s = _S
        self.S, self.Sigma = st.Ss[layer], st.Ss[layer - 1]
        self.d, self.p = st.dims[layer - 1], st.dims[layer]
        self.beta_of = {b[layer]: b[layer - 1] for b in st.betas.values()}
        self._k0 = None

    # -------- parsing
    def scalar(self, M):
        """A ``p×p`` function of ``Σ_F`` as a rational function of ``s``; ``None`` if not."""
        st, s = self.st, self.s
        if isinstance(M, Identity):
            return sp.S.One
        if isinstance(M, ZeroMatrix):
            return sp.S.Zero
        if M == self.S:
            return s + st.tau               # S_τ = Σ_F + τ (τ = 0 without feature noise)
        if isinstance(M, Transpose):
            return self.scalar(M.arg)
        if isinstance(M, MatAdd):
            parts = [self.scalar(a) for a in M.args]
            return None if any(x is None for x in parts) else sp.Add(*parts)
        if isinstance(M, MatMul):
            c, mats = M.as_coeff_matrices()
            parts = [self.scalar(a) for a in mats]
            return None if any(x is None for x in parts) else c * sp.Mul(*parts)
        if isinstance(M, Inverse):
            b = self.scalar(M.arg)
            return None if b is None else 1 / b
        if isinstance(M, MatPow):
            b = self.scalar(M.args[0])
            return None if b is None else b ** M.args[1]
        return None

    def terms(self, M):
        """``M`` as ``[(coeff, atoms)]``, atoms ``('f', φ)``, ``('col', u)``, ``('row', u)``."""
        phi = self.scalar(M)
        if phi is not None:
            return [(sp.S.One, [("f", phi)])]
        if isinstance(M, MatrixSymbol) and M in self.beta_of:
            return [(sp.S.One, [("col", self.beta_of[M])])]
        if isinstance(M, Transpose):
            out = []
            for c, atoms in self.terms(M.arg):
                out.append((c, [(("row" if k == "col" else "col" if k == "row" else k), v)
                                for k, v in reversed(atoms)]))
            return out
        if isinstance(M, MatAdd):
            return [t for a in M.args for t in self.terms(a)]
        if isinstance(M, MatMul):
            c, mats = M.as_coeff_matrices()
            out = [(c, [])]
            for a in mats:
                out = [(c1 * c2, w1 + w2) for c1, w1 in out for c2, w2 in self.terms(a)]
            return out
        raise NotImplementedError(
            f"random features: {sp.sstr(M)} is not a function of the feature covariance FᵀΣF")

    def functional(self, f):
        total = sp.S.Zero
        for c, atoms in self.terms(f.arg):
            total += c * self.cyclic(atoms)
        return total

    def cyclic(self, atoms):
        vec = [i for i, (k, _) in enumerate(atoms) if k != "f"]
        if not vec:
            return self.trace(sp.Mul(*[v for _, v in atoms]))
        i0 = next(i for i in vec if atoms[i][0] == "row")
        atoms = atoms[i0:] + atoms[:i0]
        out, row, phi = sp.S.One, None, sp.S.One
        for k, v in atoms:
            if k == "row":
                if row is not None:
                    raise NotImplementedError("random features: internal — malformed form")
                row, phi = v, sp.S.One
            elif k == "f":
                phi *= v
            else:
                if row is None:
                    raise NotImplementedError("random features: internal — malformed form")
                # β_uᵀ φ β_v = uᵀΣF (φ/(s+τ)²) FᵀΣv  (β_u = S_τ⁺FᵀΣu, S_τ = Σ_F + τ)
                out *= self.form(row, v, phi / (self.s + self.st.tau) ** 2)
                row = None
        return out

    # -------- stage F equivalents
    def kappa0(self):
        """``κ₀ = κ(0⁺)`` of this layer's law (population ``Σ_{ℓ−1}``, ``p_ℓ``
        samples): the ridgeless chain law of layers ``1..ℓ−1`` with ``p_ℓ``
        samples, seen at level ``ℓ−1``; ``κ₀' = 1/(1 − Tr[Σ_{ℓ−1}²(Σ_{ℓ−1}+κ₀)⁻²]/p_ℓ)``."""
        if self._k0 is None:
            st = self.st
            Phi = GaussianData(f"_Phi{st.k}_{self.layer}", self.p, st.X.Sigma)
            side = self.eng.reg.side(Core(Phi, "data", st.chain[:self.layer - 1]), RIDGELESS)
            k0 = st.place(side.kA, self.layer - 1)
            Sigma = self.Sigma
            R0 = (Sigma + k0 * Identity(self.d)).inverse()
            k0p = 1 / (1 - Tr(Sigma * Sigma * R0 * R0) / self.p)
            self._k0 = (k0, k0p)
        return self._k0

    def _pieces(self, chi):
        """Partial fractions of ``χ``: (polynomial coefficients, {(a, j): c}, c₋₁ at s=0, regular value at 0,
        {(a₁, a₂): c} products of two distinct simple poles kept whole)."""
        key = chi
        if key not in _PIECES:
            _PIECES[key] = self._two_poles(chi) or (self._pieces_uncached(chi) + ({},))
        return _PIECES[key]

    def _two_poles(self, chi):
        """``χ = P(s)/((s+a₁)(s+a₂))`` with two different ridges ``a₁ ≠ a₂``
        (and no pole at 0) is split without partial fractions in the ridges:
        ``P = q·(s+a₁)(s+a₂) + r₁s + r₀`` gives
        ``χ = q(s) + r₁/(s+a₂) + (r₀ − r₁a₁)/((s+a₁)(s+a₂))``; the last piece
        keeps the product whole (its equivalent, :meth:`_pair`, is regular at
        ``a₁ = a₂``, where ``1/(a₁ − a₂)`` of partial fractions is 0/0).
        ``None`` when ``χ`` is not of that shape."""
        s = self.s
        chi = sp.cancel(sp.together(chi))
        if not chi.has(s):
            return None
        num, den = sp.fraction(chi)
        cden, roots = sp.S.One, []
        for b, e in sp.factor(den).as_powers_dict().items():
            if not b.has(s):
                cden *= b ** e
                continue
            a = sp.expand(b - s)
            if e != 1 or a.has(s) or a == 0 or not sp.Poly(b, s).degree() == 1 or sp.Poly(b, s).LC() != 1:
                return None
            roots.append(a)
        if len(roots) != 2 or sp.simplify(roots[0] - roots[1]) == 0:
            return None
        a1, a2 = sorted(roots, key=sp.default_sort_key)
        q, r = sp.div(sp.Poly(sp.expand(num), s), sp.Poly(sp.expand((s + a1) * (s + a2)), s))
        r1, r0 = r.coeff_monomial(s), r.coeff_monomial(1)
        poly = {}
        for (k,), c in q.terms():
            poly[k] = poly.get(k, 0) + c / cden
        poles = {(a2, 1): r1 / cden} if r1 != 0 else {}
        pairs = {(a1, a2): (r0 - r1 * a1) / cden}
        reg0 = sp.factor(sp.cancel(chi.subs(s, 0)))
        return poly, poles, sp.S.Zero, reg0, pairs

    def _pair(self, a1, a2, make):
        """Equivalent of ``(Ŝ+a₁)⁻¹(Ŝ+a₂)⁻¹`` inside ``make(·)``, regular at
        ``a₁ = a₂``. With ``a_i = κ_i(1 − Tr[Σ(Σ+κ_i)⁻¹]/p)``, ``R_i = (Σ+κ_i)⁻¹``:
        ``a₁ − a₂ = (κ₁ − κ₂)(1 − Tr[Σ²R₁R₂]/p)`` and
        ``κ₁a₂ − κ₂a₁ = −κ₁κ₂(κ₁ − κ₂)Tr[ΣR₁R₂]/p``, so the divided difference
        ``((Ŝ+a₂)⁻¹ − (Ŝ+a₁)⁻¹)/(a₁ − a₂)`` of ``(Ŝ+a)⁻¹ ≃ (κ/a)R`` is

            D₁₂[(κ₁/a₁)R₁R₂ + (κ₁κ₂/(a₁a₂p))Tr[ΣR₁R₂]·R₂],   D₁₂ = 1/(1 − Tr[Σ²R₁R₂]/p)

        (at ``a₁ = a₂`` it is ``−∂_a`` of the one-resolvent equivalent)."""
        k1, k2 = self.st.lower(a1), self.st.lower(a2)
        a1, a2 = self.st.eff(a1), self.st.eff(a2)
        d, Sigma, p = self.d, self.Sigma, self.p
        R1 = (Sigma + k1 * Identity(d)).inverse()
        R2 = (Sigma + k2 * Identity(d)).inverse()
        D = 1 / (1 - Tr(Sigma * Sigma * R1 * R2) / p)
        return D * ((k1 / a1) * make(R1 * R2) + (k1 * k2 / (a1 * a2 * p)) * Tr(Sigma * R1 * R2) * make(R2))

    def _pieces_uncached(self, chi):
        s = self.s
        chi = sp.cancel(sp.together(chi))
        pf = sp.apart(chi, s) if chi.has(s) else chi
        poly, poles, c0 = {}, {}, sp.S.Zero
        reg0 = sp.S.Zero
        for t in sp.Add.make_args(sp.expand(pf) if not pf.is_Add else pf):
            num, den = sp.fraction(sp.factor_terms(t))
            den = sp.factor(den)
            if not den.has(s):
                P = sp.Poly(sp.expand(num), s)
                for (k,), c in P.terms():
                    poly[k] = poly.get(k, 0) + c / den
                reg0 += t.subs(s, 0)
                continue
            cden, base, j = sp.S.One, None, None
            for b, e in den.as_powers_dict().items():
                if b.has(s):
                    if base is not None:
                        raise NotImplementedError("random features: internal — partial fractions")
                    base, j = b, e
                else:
                    cden *= b ** e
            if num.has(s):
                raise NotImplementedError("random features: internal — partial fractions")
            a = sp.expand(base - s)
            if a.has(s):
                raise NotImplementedError(f"random features: pole of {base} not linear in the spectrum")
            c = num / cden
            if a == 0:
                if j != 1:
                    raise NotImplementedError(
                        "random features: a pole of order ≥ 2 at zero feature eigenvalue (ridgeless)")
                c0 += c
            else:
                poles[(a, int(j))] = poles.get((a, int(j)), 0) + c
                reg0 += t.subs(s, 0)
        return poly, poles, c0, sp.factor(sp.cancel(reg0))

    def _resolvent(self, a, j, make):
        """Equivalent of ``(Ŝ + a)^{-j}`` (``Ŝ = Σ_{ℓ−1}^{1/2}F_ℓF_ℓᵀΣ_{ℓ−1}^{1/2}``)
        inside the functional ``make(R)`` of a ``Σ_{ℓ−1}``-space matrix ``R``:
        ``(κ/a)(Σ_{ℓ−1}+κ)⁻¹``, ``κ`` the ridge one level down; ``j = 2`` by
        ``−∂_a`` with ``dκ/da = 1/(1 − Tr[Σ_{ℓ−1}²(Σ_{ℓ−1}+κ)⁻²]/p_ℓ)``."""
        kap = self.st.lower(a)
        if a in self.st.lowered:
            if j != 1:
                raise NotImplementedError(
                    "additive feature noise: a trace with a pole of order ≥ 2 at the noise ridge τ "
                    "(S_τ⁻² in a feature-space trace) is not derived")
            a = self.st.eff(a)
        d, Sigma = self.d, self.Sigma
        f = (kap / a) * make((Sigma + kap * Identity(d)).inverse())
        if j == 1:
            return f
        if j == 2:
            R = (Sigma + kap * Identity(d)).inverse()
            dk = 1 / (1 - Tr(Sigma * Sigma * R * R) / self.p)
            A = sp.Dummy("a")           # ∂_a at fixed κ (a may be a number or a product)
            fA = (kap / A) * make((Sigma + kap * Identity(d)).inverse())
            return -(sp.diff(fA, A).xreplace({A: a}) + sp.diff(f, kap) * dk)
        raise NotImplementedError("random features: three or more feature resolvents at one ridge")

    def form(self, u, v, psi):
        """``uᵀΣF ψ(Σ_F) FᵀΣv``."""
        tau = self.st.tau
        if self.st.fnoise and tau != 0 and psi.has(self.s):
            return self._noisy_form(u, v, psi, tau)
        return self._form(u, v, psi)

    def _noisy_form(self, u, v, psi, tau):
        """Feature noise: ``ψ`` has poles at ``s = −τ`` (from ``β_u = S_τ⁻¹FᵀΣu``).
        Their Laurent part ``Σ_j c_j/(s+τ)^j`` is taken through the regular
        equivalents ``Ŝ(Ŝ+τ)⁻¹ = τ(Ŝ+τ)⁻¹·Ŝ/τ ≃ I − κ_τR_τ`` and
        ``Ŝ(Ŝ+τ)⁻² = ∂_τ[τ(Ŝ+τ)⁻¹] ≃ κ_τ' ΣR_τ²`` (``τ(Ŝ+τ)⁻¹ ≃ κ_τR_τ``,
        ``R_τ = (Σ+κ_τ)⁻¹``, ``κ_τ(1 − df₁(κ_τ)/p) = τ``,
        ``κ_τ' = 1/(1 − Tr[Σ²R_τ²]/p)``), which stay finite as ``τ → 0``
        (partial fractions of ``sψ`` at ``−τ`` would carry ``κ_τ/τ``, ``κ_τ/τ²``
        cancelling between terms); the rest ``ψ − Σ_j c_j/(s+τ)^j`` (no pole at
        ``−τ``) goes through :meth:`_form`."""
        s = self.s
        psi = sp.cancel(sp.together(psi))
        num, den = sp.fraction(psi)
        m = 0
        while True:
            q, r = sp.div(sp.Poly(den, s), sp.Poly(s + tau, s))
            if not r.is_zero:
                break
            den, m = q.as_expr(), m + 1
        if m == 0:
            return self._form(u, v, psi)
        if m > 2:
            raise NotImplementedError(
                "additive feature noise: a pole of order ≥ 3 at the noise ridge τ is not derived")
        core = sp.cancel(num / den)           # (s+τ)^m ψ, regular at −τ
        coeffs = {}
        for j in range(1, m + 1):
            k = m - j
            coeffs[j] = sp.diff(core, s, k).subs(s, -tau) / sp.factorial(k)
        rest = sp.cancel(psi - sum(c / (s + tau) ** j for j, c in coeffs.items()))
        Sigma, d, p = self.Sigma, self.d, self.p
        kap = self.st.lower(tau)
        R = (Sigma + kap * Identity(d)).inverse()
        F = lambda M: Form(u.T * M * v)
        total = self._form(u, v, rest) if rest != 0 else sp.S.Zero
        total += coeffs[1] * (F(Sigma) - kap * F(Sigma * R))
        if 2 in coeffs:
            kp = 1 / (1 - Tr(Sigma * Sigma * R * R) / p)
            total += coeffs[2] * kp * F(Sigma * Sigma * R * R)
        return total

    def _form(self, u, v, psi):
        s = self.s
        Sigma, d, p = self.Sigma, self.d, self.p
        poly, poles, c0, reg0, pairs = self._pieces(s * psi)
        F = lambda M: Form(u.T * M * v)
        total = sp.S.Zero
        for k, c in poly.items():
            if k == 0:
                total += c * F(Sigma)
            elif k == 1:
                total += c * F(Sigma * Sigma)
            elif k == 2:
                total += c * (F(Sigma ** 3) * (1 + 1 / p) + F(Sigma * Sigma) * Tr(Sigma) / p)
            else:
                raise NotImplementedError("random features: a power ≥ 3 of the feature covariance")
        for (a, j), c in poles.items():
            total += c * self._resolvent(a, j, lambda R: F(Sigma * R))
        for (a1, a2), c in pairs.items():
            total += c * self._pair(a1, a2, lambda R: F(Sigma * R))
        if c0 != 0 or reg0 != 0:
            k0, k0p = self.kappa0()
            R0 = (Sigma + k0 * Identity(d)).inverse()
            if c0 != 0:
                total += c0 * self._pinv(k0p * F(Sigma * Sigma * R0 * R0))
            total -= reg0 * k0 * F(Sigma * R0)
        return total

    def _pinv(self, value):
        """A placeholder for a piece with a pole at ``s = 0`` (``Σ_F⁺``:
        ``u'ᵀŜ⁺u' ≃ κ₀'uᵀΣ²(Σ+κ₀)⁻²u``, ``Tr Ŝ⁺ ≃ κ₀'Tr[Σ(Σ+κ₀)⁻²]``), resolved by
        :func:`_resolve_pinv` (dropped where the word's value does not depend on it)."""
        for P, (layer, v) in self.st.pinv.items():
            if layer == self.layer and v == value:
                return P
        P = sp.Dummy(f"Pplus{self.layer}")
        self.st.pinv[P] = (self.layer, value)
        return P

    def trace(self, phi):
        """``Tr_p φ(Σ_F) = Tr_d φ(Ŝ) + (p − d) φ(0)``."""
        Sigma, d, p = self.Sigma, self.d, self.p
        poly, poles, c0, reg0, pairs = self._pieces(phi)
        total = sp.S.Zero
        for k, c in poly.items():
            if k == 0:
                total += c * d
            elif k == 1:
                total += c * Tr(Sigma)
            elif k == 2:
                total += c * (Tr(Sigma * Sigma) * (1 + 1 / p) + Tr(Sigma) ** 2 / p)
            else:
                raise NotImplementedError("random features: a power ≥ 3 of the feature covariance")
        for (a, j), c in poles.items():
            total += c * self._resolvent(a, j, Tr)
        for (a1, a2), c in pairs.items():
            total += c * self._pair(a1, a2, Tr)
        if c0 != 0:
            k0, k0p = self.kappa0()
            R0 = (Sigma + k0 * Identity(d)).inverse()
            total += c0 * self._pinv(k0p * Tr(Sigma * R0 * R0))
        return total + (p - d) * reg0


def _word_str(word):
    from .engine import canonical_str
    return canonical_str(word)
