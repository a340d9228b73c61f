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
from ..rewrite.letters import An, Bare, Fn, Res, word_sources
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
    saved = engine.variance_mode
    engine.variance_mode = True
    try:
        for ca, wa in A:
            for cb, wb in B:
                total += ca * cb * cov_words(engine, wa, wb)
    finally:
        engine.variance_mode = saved
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
    theta = spectral_fn.new_theta(len(engine.thetas))
    engine.thetas.append(theta)
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
    from .engine import _bare_side
    if isinstance(letter, Res):
        return rules._SideAt(engine.reg.side(letter.core, letter.z), letter.z)
    return rules._SideAt(_bare_side(letter.core), None, bare=True)


def _avg(engine, word, i, s):
    if s.bare:
        terms = rules.bare_expectation(word, [i], s.side)
    else:
        terms = rules.one_point(word, i, s.side, s.z)
    return [(c, ws[0]) for c, ws in terms]
