"""Exact averaging over Gaussian vectors (label noise ε, sample-mean
fluctuations) by Wick's theorem.

A product of traces is cut into *pieces* at every Gaussian vector: ``g``
only ever ends a ``1×1`` piece on the right and ``gᵀ`` on the left. Each
perfect matching of equal sources joins pieces through the covariance
``C = E[g gᵀ]``: a right end meets a left end directly, two right ends meet
through a transpose. Closed loops become traces. Real Gaussian vectors, so
every matching counts once.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, ZeroMatrix

from ..objects.matrices import GaussianNoise, SampleCovariance, SampleMean
from .letters import An, Bare, Det, Rand, Res, transpose_word


def is_gaussian_vector(sym):
    return isinstance(sym, (GaussianNoise, SampleMean))


def covariance_of(sym):
    """``E[(g−Eg)(g−Eg)ᵀ]`` as a SymPy matrix."""
    if isinstance(sym, GaussianNoise):
        K = sym.K
        return sym.variance * (K if not isinstance(K, Identity) else Identity(sym.rows))
    X = sym.data
    if X.correlated:
        raise NotImplementedError(
            f"sample mean of correlated samples ({X.name} has K): its law is not implemented")
    return X.Sigma / X.n


def split_means(word):
    """``μ̂ = μ + ξ``: expand every sample-mean letter into its mean (a
    deterministic vector) and its fluctuation (kept as the ``μ̂`` letter,
    now meaning ``ξ``, zero-mean)."""
    out = [()]
    for l in word:
        if isinstance(l, Rand) and isinstance(l.sym, SampleMean):
            mean = l.sym.data.mean
            opts = [(l,)]
            if not isinstance(mean, ZeroMatrix):
                opts.append((Det(mean.T if l.t else mean),))
            out = [w + o for w in out for o in opts]
        else:
            out = [w + (l,) for w in out]
    return out


def check_mean_independence(words):
    """``μ̂`` is independent of the *centred* sample covariance only."""
    means = {l.sym.data for w in words for l in w if isinstance(l, Rand) and isinstance(l.sym, SampleMean)}
    for X in means:
        for w in words:
            for l in w:
                bad = (isinstance(l, Rand) and l.sym == X) or \
                      (isinstance(l, (Res, Bare, An)) and l.core.data == X and l.core.ddof != 1) or \
                      (isinstance(l, Rand) and isinstance(l.sym, SampleCovariance) and l.sym.data == X)
                if bad:
                    raise NotImplementedError(
                        f"sr.sample_mean({X.name}) together with {l} of the same data: they are "
                        f"dependent; use sr.sample_covariance({X.name}, ddof=1), which is independent of it")


def _pieces(word):
    """Cut a cyclic word at Gaussian vectors into ``(lsrc, mid, rsrc)``:
    a column ``g`` closes a piece on the right, a row ``gᵀ`` opens one."""
    gpos = [i for i, l in enumerate(word) if isinstance(l, Rand) and is_gaussian_vector(l.sym)]
    if not gpos:
        return None
    i = gpos[0]
    start = i if word[i].t else i + 1  # a cut: before gᵀ or after g
    w = word[start:] + word[:start]
    pieces, cur, lsrc = [], [], None
    for l in w:
        if isinstance(l, Rand) and is_gaussian_vector(l.sym):
            if l.t:
                if cur or lsrc is not None:
                    pieces.append((lsrc, tuple(cur), None))
                cur, lsrc = [], l.sym
            else:
                pieces.append((lsrc, tuple(cur), l.sym))
                cur, lsrc = [], None
        else:
            cur.append(l)
    if cur or lsrc is not None:
        pieces.append((lsrc, tuple(cur), None))
    return pieces


def _matchings(slots):
    if not slots:
        yield []
        return
    a = slots[0]
    for k in range(1, len(slots)):
        rest = slots[1:k] + slots[k + 1:]
        for m in _matchings(rest):
            yield [(a, slots[k])] + m


def wick(words):
    """Average a product of traces over all Gaussian vectors in it.

    Returns a list of ``(coeff, words)`` (products of traces)."""
    pieces, plain = [], []
    for w in words:
        ps = _pieces(w)
        if ps is None:
            plain.append(w)
        else:
            pieces.extend(ps)
    if not pieces:
        return [(sp.S.One, tuple(words))]
    slots = {}
    for i, (l, _, r) in enumerate(pieces):
        if l is not None:
            slots.setdefault(l, []).append((i, "L"))
        if r is not None:
            slots.setdefault(r, []).append((i, "R"))
    if any(len(s) % 2 for s in slots.values()):
        return []
    # product over sources of their matchings
    per_source = [[(src, m) for m in _matchings(s)] for src, s in slots.items()]
    out = []

    def combine(k, partner):
        if k == len(per_source):
            c, ws = _traverse(pieces, partner)
            out.append((c, tuple(plain) + tuple(ws)))
            return
        for src, m in per_source[k]:
            p = dict(partner)
            for a, b in m:
                p[a], p[b] = (b, src), (a, src)
            combine(k + 1, p)

    combine(0, {})
    return out


def _cov_letter(src):
    """``(scalar, letters)`` for ``E[ggᵀ]``: a multiple of I is a scalar."""
    C = covariance_of(src)
    c, mats = C.as_coeff_mmul() if hasattr(C, "as_coeff_mmul") else (sp.S.One, C)
    mats = mats.args if hasattr(mats, "args") and type(mats).__name__ == "MatMul" else (mats,)
    mats = tuple(m for m in mats if not isinstance(m, Identity))
    if not mats:
        return c, ()
    from sympy import MatMul
    return c, (Det(MatMul(*mats) if len(mats) > 1 else mats[0]),)


def _traverse(pieces, partner):
    words, seen = [], set()
    coeff = [sp.S.One]

    def walk(i, side_in, start):
        word = []
        while True:
            seen.add(i)
            l, mid, r = pieces[i]
            word.extend(mid if side_in == "L" else transpose_word(mid))
            side_out = "R" if side_in == "L" else "L"
            if (i, side_out) not in partner:
                return tuple(word)
            (j, s_in), src = partner[(i, side_out)]
            c, letters = _cov_letter(src)
            coeff[0] *= c
            word.extend(letters)
            if (j, s_in) == start:
                return tuple(word)
            i, side_in = j, s_in

    for i, (l, _, r) in enumerate(pieces):
        if i not in seen and l is None:
            words.append(walk(i, "L", None))
    for i in range(len(pieces)):
        if i not in seen:
            words.append(walk(i, "L", (i, "L")))
    words = [w if w else (Det(Identity(_size(pieces, partner))),) for w in words]
    return coeff[0], words


def _size(pieces, partner):
    """Dimension of an empty loop ``Tr[C]`` with ``C ∝ I``."""
    for (i, side), ((j, s), src) in partner.items():
        return src.shape[0]
    raise AssertionError("internal: empty loop without a Gaussian vector")
