"""Variances and covariances across draws (docs/math.md §Variances).

``Cov(s, t)`` for statistics linear in traces: by the law of total
covariance, first over Gaussian vectors (exact Wick pairings that connect
``s`` and ``t``), then over each random core in turn:

    Cov(s, t) = E_{rest}[Cov_core(s, t)] + Cov_{rest}(E_core s, E_core t),

with the second-order rule ``rules.covariance`` (both Wick pairings for
real data) for the core when both statistics are quadratic forms (a
rank-one letter ``v uᵀ`` in the word). Traces fluctuate by ``O(1)`` through
the whole spectrum: they go through the trace-fluctuation law
(``fluctuations``, docs/math.md §Fluctuations of traces), which refuses what it
cannot derive; a trace against a form of the same data is refused. Every
average inside a covariance keeps both Wick pairings (variance mode).
"""
from __future__ import annotations

import sympy as sp

from ..rewrite import canonical
from ..rewrite.letters import An, Bare, Det, Fn, Rand, Res, is_identity, word_sources
from ..rewrite.wick import check_mean_independence, wick
from . import rules


def linear_words(engine, e):
    """``e`` as ``const + Σ c_i Tr[W_i]``; refuses products of random traces."""
    from .derive import random_atoms
    atoms = random_atoms(e)
    syms = sp.symbols(f"_a0:{len(atoms)}")
    ex = sp.expand(e.xreplace(dict(zip(atoms, syms))))
    out = []
    for term in sp.Add.make_args(ex):
        c, rest = term.as_independent(*syms, as_Add=False)
        if rest == 1:
            continue  # constants do not covary
        if rest not in syms:
            raise NotImplementedError(
                f"variance of a nonlinear function of random traces ({rest.xreplace(dict(zip(syms, atoms)))}) "
                "is not derivable; write it as a sum of traces/forms")
        atom = atoms[syms.index(rest)]
        out += [(c * ci, w) for ci, w in engine.atom_words(atom)]
    return out


def cov_value(engine, a, b):
    """``Cov(a, b)``. Second order throughout: every average inside a
    covariance keeps both Wick pairings of the real Gaussian data (variance
    mode), e.g. the mean-estimation term ``E[vᵀ(I−Σ̂G)(Σ/n)(I−GΣ̂)v]`` keeps
    ``c·Tr[P M Qᵀ M]`` — dropping it made per-mode variances summed over a
    basis fall short of the two-copy total by ``κ²Tr[MΣM]/(n(n−1−df₂))``."""
    from .features import refuse_random_features
    refuse_random_features(a, b)        # variances over random features: not derived (first order only)
    A, B = linear_words(engine, a), linear_words(engine, b)
    total = sp.S.Zero
    with engine.variance():
        for ca, wa in A:
            for cb, wb in B:
                total += ca * cb * cov_words(engine, wa, wb)
    return total


def cov_words(engine, w1, w2):
    """``Cov(Tr w1, Tr w2)``."""
    check_mean_independence([w1, w2])
    # Gaussian vectors: connected pairings, then covariance of the averages
    total = sp.S.Zero
    joint = wick([w1, w2])
    sep = [(c1 * c2, ws1 + ws2) for c1, ws1 in wick([w1]) for c2, ws2 in wick([w2])]
    connected = _subtract(joint, sep)
    for c, ws in connected:
        total += c * engine.product_value(ws)
    for c1, ws1 in wick([w1]):
        for c2, ws2 in wick([w2]):
            r1 = [w for w in ws1 if word_sources(w)]
            r2 = [w for w in ws2 if word_sources(w)]
            if not r1 or not r2:
                continue
            if len(r1) > 1 or len(r2) > 1:
                raise NotImplementedError("covariance of products of random traces")
            d1 = engine.product_value([w for w in ws1 if not word_sources(w)])
            d2 = engine.product_value([w for w in ws2 if not word_sources(w)])
            total += c1 * c2 * d1 * d2 * cov_core(engine, r1[0], r2[0])
    return total


def _subtract(joint, sep):
    """Joint matchings minus those pairing within each factor (same words)."""
    from collections import Counter
    key = lambda t: (t[0], tuple(sorted(map(repr, t[1]))))
    pool = Counter(key(t) for t in sep)
    out = []
    for t in joint:
        k = key(t)
        if pool[k] > 0:
            pool[k] -= 1
        else:
            out.append(t)
    if sum(pool.values()):
        raise AssertionError("internal: Wick subtraction mismatch")
    return out


def _canon(engine, word):
    """Canonical rewrites only (no averaging): list of (coeff, word)."""
    word = canonical.drop_identities(word)
    # covariances need statistics linear in the core: always linearise Σ̂G = I − zG
    st = canonical.step(word, keep_lone_pairs=False)
    if st is None:
        return [(sp.S.One, word)]
    return [(c * c2, w2) for c, w in st for c2, w2 in _canon(engine, w)]


def cov_core(engine, w1, w2):
    """``Cov(Tr w1, Tr w2)`` over the random cores. Quadratic forms (words
    with a rank-one letter) by the second-order rule; traces by the
    trace-fluctuation law (``fluctuations``), which refuses what it cannot
    derive; a trace against a form of the same data is refused."""
    from . import fluctuations
    lr1, lr2 = fluctuations.is_low_rank(w1), fluctuations.is_low_rank(w2)
    if not (lr1 and lr2):
        if lr1 or lr2:
            if not (word_sources(w1) & word_sources(w2)):
                return sp.S.Zero
            from .engine import canonical_str
            raise NotImplementedError(
                f"covariance of the trace Tr[{canonical_str(w1 if lr2 else w2)}] with the quadratic form "
                f"Tr[{canonical_str(w2 if lr2 else w1)}] of the same data is not derived")
        return fluctuations.trace_cov(engine, w1, w2)
    total = sp.S.Zero
    for c1, v1 in _canon(engine, w1):
        for c2, v2 in _canon(engine, w2):
            total += c1 * c2 * _cov_canon(engine, v1, v2)
    return total


def _linear_letter(word, core):
    idx = [i for i, l in enumerate(word) if isinstance(l, (Res, Bare, Fn, An)) and l.core == core]
    if len(idx) != 1:
        raise NotImplementedError(
            f"covariance needs statistics linear in each sample covariance; {core} appears {len(idx)} times")
    return idx[0]


def _cov_canon(engine, v1, v2):
    shared = word_sources(v1) & word_sources(v2)
    if not shared:
        return sp.S.Zero
    core = next(l.core for l in v1 if isinstance(l, (Res, Bare, Fn, An)) and (l.core.sources & shared))
    if core.chain:
        raise NotImplementedError(f"covariances with random features ({core}) are not implemented")
    i, j = _linear_letter(v1, core), _linear_letter(v2, core)
    for v, k in ((v1, i), (v2, j)):
        if isinstance(v[k], (Fn, An)):  # linear in the resolvents under an integral
            return _cov_fn(engine, v1, v2, v is v1, k)
    engine._check_alone(v1, core)
    engine._check_alone(v2, core)
    s1, s2 = _side_at(engine, v1[i]), _side_at(engine, v2[j])
    P = rules.rotate_to(v1, i)[1:]
    Q = rules.rotate_to(v2, j)[1:]
    total = sp.S.Zero
    for c, ws in rules.covariance(P, Q, s1, s2):
        total += c * engine.product_value(ws)
    # remaining randomness: covariance of the core-averaged statistics
    if shared - core.sources:
        for c1, ws1 in _avg(engine, v1, i, s1):
            for c2, ws2 in _avg(engine, v2, j, s2):
                total += c1 * c2 * _cov_canon(engine, ws1, ws2)
    return total


def _cov_fn(engine, v1, v2, first, k):
    from . import spectral_fn
    v = v1 if first else v2
    theta = engine.new_theta()
    consts, integral = spectral_fn.representation(v[k], theta)

    def cov_of(word):
        total = sp.S.Zero
        for c, w in _canon(engine, word):
            total += c * (_cov_canon(engine, w, v2) if first else _cov_canon(engine, v1, w))
        return total
    with engine.contour_of(v1 + v2, v[k]) as real:
        total = sp.Add(*[c * cov_of(v[:k] + ls + v[k + 1:]) for c, ls in consts])
        integrand = sp.Add(*[c * cov_of(v[:k] + ls + v[k + 1:]) for c, ls in integral])
    return real(total + sp.Integral(integrand, (theta, 0, spectral_fn.upper_limit(v[k]))))


def _side_at(engine, letter):
    from .averaging import bare_side as _bare_side
    if isinstance(letter, Res):
        return rules._SideAt(engine.reg.side(letter.core, letter.z), letter.z)
    return rules._SideAt(_bare_side(letter.core), None, bare=True)


def _avg(engine, word, i, s):
    if s.bare:
        terms = rules.bare_expectation(word, [i], s.side)
    else:
        terms = rules.one_point(word, i, s.side, s.z)
    return [(c, ws[0]) for c, ws in terms]


# ---------------------------------------------------------------- connected parts
# docs/math.md §Variances: with two independent copies of one law compared in one
# expression (variance mode), the average of a product of two statistics of the
# SAME copy is split as
#
#     E[Tr(P f_a(Σ̂) Q f_b(Σ̂))] = Tr(P E[f_a] Q E[f_b]) + connected part,
#
# where ``a``/``b`` are the two factors of the user's product (the ``tag`` of the
# spectral-function letters). The first term is the average of the same word with
# the two factors on independent copies of the law, evaluated on canonical copies
# and memoised, so that it is the identical SymPy expression as the average of
# the cross-copy word ``Tr(P f_a(Σ̂₁) Q f_b(Σ̂₂))``: in ``|f₁ − f₂|²/2`` these cancel
# symbolically. The connected part is derived directly: the spectral functions
# become integrals over resolvents and, under the integrals, the two-point rule
# keeps only its connected terms
#
#     E[Tr P G₁ Q G₂] − w₁w₂ Tr[P R₁ Q R₂] = w₁w₂ c (Tr[A R₁ Q R₂] Tr[P M] + Tr[P M Qᵀ M])
#
# (``rules.two_point`` in variance mode: both Wick pairings of real Gaussian data;
# ``M = R₁AR₂``, ``c = ρ/(m(1 − ργ₁₂))``). Nothing of first order is subtracted, so
# the value carries no cancellation of O(1) integrals down to an O(1/n) result.
# Words outside this scope (analytic contour functions, a statistic with several
# letters of the core after expansion, two cores compared at once …) take the
# previous route (the full two-point average), which is correct but cancels.


class _NoSplit(Exception):
    """The connected part of this word is not derived directly: use the full average."""


def mean_value(engine, coeff, words):
    """``coeff · E[Π Tr words]`` in variance mode: exact Wick averages over the
    Gaussian vectors, then each trace through :func:`split_word_value`."""
    check_mean_independence(words)
    total = sp.S.Zero
    for c, ws in wick(list(words)):
        prod = sp.S.One
        for w in ws:
            prod *= split_word_value(engine, w)
        total += coeff * c * prod
    return total


def _groups(word):
    """``(labels, groups)``: each random letter's statistic ``(data uid, tag)``;
    ``None`` when the word is outside the split (then the full average is used)."""
    from ..objects.matrices import GaussianData
    labels, cores = [], {}
    for l in word:
        if isinstance(l, Det):
            labels.append(None)
            continue
        if not isinstance(l, Fn) or l.tag is None or l.core.chain or not isinstance(l.core.data, GaussianData):
            return None
        uid = l.core.data.uid
        if cores.setdefault(uid, l.core) != l.core:
            return None                      # one data set as two different cores (ddof, side)
        labels.append((uid, l.tag))
    return labels, cores


def split_word_value(engine, word):
    """``E[Tr word]`` (variance mode) as the product of the statistics' means
    (memoised on canonical copies) plus the connected part derived directly."""
    word = canonical.drop_identities(word)
    g = _groups(word)
    if g is None or not any(lab is not None for lab in g[0]):
        return engine.word_value(word)
    labels, cores = g
    stats = {}
    for lab in labels:
        if lab is not None:
            stats.setdefault(lab[0], [])
            if lab[1] not in stats[lab[0]]:
                stats[lab[0]].append(lab[1])
    paired = [uid for uid, tags in stats.items() if len(tags) == 2]
    if any(len(tags) > 2 for tags in stats.values()) or len(paired) > 1:
        return engine.word_value(word)
    conn = sp.S.Zero
    if paired:
        # on the law's canonical copy (memoised): copies of one law share one connected part
        core = _canonical_copy(engine, cores[paired[0]], 0)
        new = tuple(Fn(core, l.factors, l.tag) if lab is not None and lab[0] == paired[0] else l
                    for l, lab in zip(word, labels))
        memo = engine.memo("conn_parts")
        if new not in memo:
            try:
                memo[new] = _connected(engine, tuple(
                    (l, None if lab is None else ((core.data.uid, lab[1]) if lab[0] == paired[0] else lab))
                    for l, lab in zip(new, labels)))
            except _NoSplit:
                memo[new] = None
        conn = memo[new]
        if conn is None:
            return engine.word_value(word)
    return _mean_product(engine, word, labels, cores) + conn


def _canonical_copy(engine, core, index):
    """The ``index``-th canonical independent copy of ``core``'s law (one per engine)."""
    from sympy.core.symbol import Str
    from ..objects import matrices
    from ..rewrite.letters import Core
    copies = engine.memo("conn_copies")
    X = core.data
    key = (X.law_key(), core.side, core.ddof, index)
    if key not in copies:
        Y = matrices.GaussianData(Str(f"{X.name}{'′' * (index + 1)}"), X.n, X.d, X.Sigma, X.K, X.mean,
                                  sp.Integer(next(matrices._uid)))
        copies[key] = Core(Y, core.side, core.chain, core.ddof)
    return copies[key]


def _mean_product(engine, word, labels, cores):
    """``E`` of the word with every statistic (data set, tag) on its own
    independent copy of its law, numbered per law in order of (tag, position):
    the same canonical word, hence the same memoised SymPy value, for a
    same-copy product and the corresponding cross-copy product."""
    order = {}
    for pos, lab in enumerate(labels):
        if lab is not None and lab not in order:
            order[lab] = (lab[1] if isinstance(lab[1], int) else 0, pos)
    per_law, copy_of = {}, {}
    for lab in sorted(order, key=lambda k: order[k]):
        core = cores[lab[0]]
        law = (core.data.law_key(), core.side, core.ddof)
        i = per_law.setdefault(law, 0)
        per_law[law] = i + 1
        copy_of[lab] = _canonical_copy(engine, core, i)
    new = tuple(l if lab is None else Fn(copy_of[lab], l.factors, l.tag) for l, lab in zip(word, labels))
    memo = engine.memo("conn_means")
    if new not in memo:
        memo[new] = engine.word_value(new)
    return memo[new]


def _merge_labelled(lw):
    """Merge adjacent letters of one statistic (same label) exactly
    (``canonical.merge_functions``: they commute); drop identities."""
    changed = True
    while changed:
        changed = False
        lw = tuple(t for t in lw if not is_identity(t[0])) or lw[:1]
        L = len(lw)
        for i in range(L if L > 1 else 0):
            (a, la), (b, lb) = lw[i], lw[(i + 1) % L]
            if la is None or la != lb:
                continue
            m = canonical.merge_functions(a, b, strict_tags=False)
            if m is None:
                continue
            if len(m) != 1:
                raise _NoSplit()
            c, letters = m[0]
            if c != 1:
                raise _NoSplit()
            rot = lw[i:] + lw[:i]
            lw = tuple((x, la) for x in letters) + rot[2:]
            changed = True
            break
    return lw


def _connected(engine, lw):
    """Connected part of ``E[Tr word]`` for a word (letters with their
    statistic labels) in which one data set carries two statistics."""
    from . import spectral_fn
    lw = _merge_labelled(lw)
    labs = {lab for _, lab in lw if lab is not None}
    uids = {}
    for lab in labs:
        uids.setdefault(lab[0], set()).add(lab[1])
    paired = [u for u, t in uids.items() if len(t) == 2]
    if not paired:
        return sp.S.Zero                       # a statistic became deterministic: nothing connects
    uid = paired[0]
    # spectral functions of the paired core: integral representations (linear)
    for k, (l, lab) in enumerate(lw):
        if lab is not None and lab[0] == uid and isinstance(l, Fn):
            theta = engine.new_theta()
            consts, integral = spectral_fn.representation(l, theta)

            def sub(ls):
                return _connected(engine, lw[:k] + tuple((x, None if isinstance(x, Det) else lab) for x in ls)
                                  + lw[k + 1:])
            total = sp.Add(*[c * sub(ls) for c, ls in consts])
            integrand = sp.Add(*[c * sub(ls) for c, ls in integral])
            if integrand == 0:
                return total
            return total + sp.Integral(integrand, (theta, 0, spectral_fn.upper_limit(l)))
    # resolvents only: one per statistic, else not derived here
    mine = [(i, l, lab) for i, (l, lab) in enumerate(lw) if lab is not None and lab[0] == uid]
    if len(mine) != 2 or not all(isinstance(l, Res) for _, l, _ in mine):
        raise _NoSplit()
    word = tuple(l for l, _ in lw)
    if any(isinstance(l, (Fn, An, Bare, Res, Rand)) and lab is None for l, lab in lw):
        raise _NoSplit()
    (i, l1, _), (j, l2, _) = mine
    s1 = rules._SideAt(engine.reg.side(l1.core, l1.z), l1.z)
    s2 = rules._SideAt(engine.reg.side(l2.core, l2.z), l2.z)
    terms = rules.two_point(word, i, j, s1, s2, True)
    # rules.two_point: [disconnected w₁w₂Tr[R₁QR₂P], connected (first pairing), connected (second pairing)]
    first = rules.rotate_to(word, i)
    jj = (j - i) % len(word)
    disconnected = s1.R() + first[1:jj] + s2.R() + first[jj + 1:]
    if len(terms) != 3 or terms[0][1] != (disconnected,):
        raise AssertionError("internal: two-point rule layout changed")
    total = sp.S.Zero
    for c, ws in terms[1:]:
        total += c * engine.product_value(ws)
    return total
