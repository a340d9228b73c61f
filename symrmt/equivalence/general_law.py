"""The general one-point law and its block-bidiagonal lift (docs/math.md, "The
general one-point law").

For independent Gaussian data blocks ``X_j`` (``n_j × d``, iid rows
``N(0, Σ_j)``), weights ``c_j > 0`` and a deterministic ``B``::

    (Σ_j c_j Σ̂_j + B + z)⁻¹ ≃ R = (Σ_j c_j ρ_j Σ_j + B + z)⁻¹,
    δ_j = c_j Tr[Σ_j R]/n_j,   ρ_j = 1/(1 + δ_j)

(``ρ_j = Tr[K_j(I+δ_jK_j)⁻¹]/n_j`` for ``X_j = K_j^{1/2}Z_jΣ_j^{1/2}``).

**Lift.** A trace ``Tr[L₁P₁L₂P₂⋯L_kP_k]`` whose letters ``L`` are resolvents
of (sums of) these cores — at any ridges and shifts — or bare ``Σ̂_j``, and
whose ``P`` are anything independent of them, is ``Tr[(D⁻¹)_{1K} P_k]`` for
the upper block-bidiagonal ``D = Σ_j Σ̂_j ⊗ C_j + B̃``: each resolvent is a
diagonal index (``C_j,aa = c_j``, ``B̃_aa = B + z``), a bare ``Σ̂_j`` an
off-diagonal entry ``C_j,a,a+1 = −1`` between two identity indices
(``C_aa = 0``, ``B̃_aa = I``), and ``P`` an entry ``B̃_{a,a+1} = −P``.
Leave-one-out with the rank-``K`` Woodbury identity gives, for iid rows,
the operator-valued law

    E[D⁻¹] ≃ R̃ = (Σ_j Σ_j ⊗ Φ_j + B̃)⁻¹,   Φ_j = C_j(I + Δ_jC_j)⁻¹,
    (Δ_j)_{ab} = Tr[Σ_j R̃_{ab}]/n_j,

upper triangular, solved from the diagonal out: the diagonal is the
one-point law at each index; at distance ``s`` the ``Δ_{j,ab}`` solve a
linear system (one unknown per block) whose matrix involves only diagonal
resolvents. For one block and ``k = 2`` this is the two-point formula of
docs/math.md. Deterministic matrices never commute with anything here.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..objects import Tr
from ..rewrite.letters import An, Bare, Det, Fn, GRes, Rand, Res, word_sources
from .output import words_to_scalar


# ----------------------------------------------------------------- polynomials
# scalar poly: list of (coeff, swords); matrix poly: list of (coeff, swords, mword)
def _collect_s(p):
    acc = {}
    for c, sw in p:
        acc[sw] = acc.get(sw, 0) + c
    return [(c, sw) for sw, c in acc.items() if c != 0]


def _collect_m(p):
    acc = {}
    for c, sw, mw in p:
        acc[(sw, mw)] = acc.get((sw, mw), 0) + c
    return [(c, sw, mw) for (sw, mw), c in acc.items() if c != 0]


def _smul(a, b):
    return _collect_s([(c1 * c2, s1 + s2) for c1, s1 in a for c2, s2 in b])


def _sm_times_m(s, m):
    return [(c1 * c2, s1 + s2, mw) for c1, s1 in s for c2, s2, mw in m]


def _trace_with(left, m):
    """``Tr[left · m]`` as a scalar poly (``left`` a letter tuple)."""
    return _collect_s([(c, sw + (left + mw,)) for c, sw, mw in m])


def _subst_linear(coeff, xs, sols):
    """``coeff`` (linear in the symbols ``xs``) with ``xs`` replaced by the
    scalar polys ``sols``: a scalar poly."""
    c0 = coeff.subs({x: 0 for x in xs})
    out = [(c0, ())] if c0 != 0 else []
    for x, sol in zip(xs, sols):
        cx = sp.diff(coeff, x)
        if cx != 0:
            out += [(cx * c, sw) for c, sw in sol]
    return out


def _subst_s(p, xs, sols):
    out = []
    for c, sw in p:
        out += [(c2, sw2 + sw) for c2, sw2 in _subst_linear(c, xs, sols)]
    return _collect_s(out)


def _subst_m(p, xs, sols):
    out = []
    for c, sw, mw in p:
        out += [(c2, sw2 + sw, mw) for c2, sw2 in _subst_linear(c, xs, sols)]
    return _collect_m(out)


def _deterministic_scalar(p, what):
    total = sp.S.Zero
    for c, sw in p:
        if any(word_sources(w) for w in sw):
            raise NotImplementedError(f"internal: random trace in the lift's linear system ({what})")
        total += c * sp.Mul(*[words_to_scalar((w,)) for w in sw])
    return total


def _inverse(A):
    """Inverse of a small matrix of scalar expressions, without SymPy's
    simplification (cofactors over the determinant)."""
    k = A.shape[0]
    if k == 1:
        return sp.Matrix([[1 / A[0, 0]]])
    if k == 2:
        det = A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]
        return sp.Matrix([[A[1, 1], -A[0, 1]], [-A[1, 0], A[0, 0]]]) / det
    try:
        return A.inv(method="LU", iszerofunc=lambda e: e == 0, simplify=False)
    except TypeError:       # SymPy ≥ 1.13: no ``simplify`` keyword (LU does not simplify)
        return A.inv(method="LU", iszerofunc=lambda e: e == 0)


# ----------------------------------------------------------------- the lift
class _Index:
    """One diagonal index of the lift."""

    def __init__(self, R, phi, delta, weights):
        self.R = R              # letter tuple: () for the identity
        self.phi = phi          # {core: Φ_j,aa}
        self.delta = delta      # {core: Δ_j,aa}
        self.weights = weights  # {core: C_j,aa}


def closure(word, start):
    """The cores averaged together with the resolvent ``start``:
    all cores sharing randomness with it, transitively."""
    src = _sources(start)
    while True:
        more = set()
        for l in word:
            s = _sources(l)
            if s & src and not s <= src:
                more |= s
        if not more:
            return src
        src |= more


def _sources(l):
    if isinstance(l, GRes):
        return set(l.sources)
    if isinstance(l, (Res, Bare, Fn, An)):
        return set(l.core.sources)
    if isinstance(l, Rand):     # a composite letter (noisy features XF + √τΞ) names all its sources
        return set(getattr(l.sym, "sources", None) or {l.sym.uid})
    return set()


def average(word, reg, variance_mode, describe, first=None):
    """``E[Tr word]`` over the cores of the word's first general resolvent
    (or of the plain resolvent ``first``: k-point products of one core),
    and every core sharing randomness with it: a list of
    ``(coeff, (word, …))`` whose words are free of those cores."""
    if first is None:
        first = next(l for l in word if isinstance(l, GRes))
    src = closure(word, first)
    pos = []
    cores = {}
    for i, l in enumerate(word):
        s = _sources(l)
        if not (s & src):
            continue
        if isinstance(l, Rand):
            raise NotImplementedError(
                f"{l} appears outside the sample covariance of {first} in {describe(word)}")
        if isinstance(l, (Fn, An)):
            raise NotImplementedError(
                f"a spectral function of {l.core} together with the general resolvent {first} "
                f"in {describe(word)} is not implemented")
        lcores = l.cores if isinstance(l, GRes) else (l.core,)
        for c in lcores:
            if c.side != "data" or c.chain:
                raise NotImplementedError(
                    f"{c} shares randomness with {first} in {describe(word)}: mixed data-space/Gram-space "
                    "or feature-space resolvents are not implemented")
            cores[c] = True
        pos.append(i)
    cores = list(cores)
    by_src = {}
    for c in cores:
        for u in c.sources:
            if u in by_src and by_src[u] != c:
                raise NotImplementedError(
                    f"{c} and {by_src[u]} are built from the same data in {describe(word)} "
                    "(e.g. XᵀX/n and sr.sample_covariance(X)): not implemented")
            by_src[u] = c
    n_random = len(pos)
    if variance_mode and n_random > 1:
        raise NotImplementedError(
            f"products of pooled/shifted resolvents compared across independent copies "
            f"({describe(word)}): second-order (two-pairing) terms are not implemented for the general law")
    if n_random > 1 and any(c.data.correlated for c in cores):
        raise NotImplementedError(
            f"products of pooled/shifted resolvents of correlated samples (K) in {describe(word)}: "
            "the lift is implemented for iid rows only")
    # rotate to the first random letter
    i0 = pos[0]
    w = word[i0:] + word[:i0]
    pos = sorted((p - i0) % len(word) for p in pos)
    d = word[i0].shape[0]
    # chain: diagonal indices and links
    indices, links = [], []

    def need_index():
        if len(links) == len(indices):
            indices.append(_identity_index(cores))

    for k, p in enumerate(pos):
        l = w[p]
        if isinstance(l, Bare):
            need_index()
            links.append(("bare", l.core))
        else:
            if len(indices) > len(links):
                links.append(("word", ()))
            indices.append(_resolvent_index(l, cores, reg))
        nxt = pos[k + 1] if k + 1 < len(pos) else len(w)
        between = w[p + 1:nxt]
        if k + 1 < len(pos) and between:
            need_index()
            links.append(("word", between))
    need_index()
    tail = w[pos[-1] + 1:]
    Rt = lift(indices, links, cores)
    out = []
    for c, sw, mw in Rt:
        tw = mw + tail
        out.append((c, sw + (tw if tw else (Det(Identity(d)),),)))
    return out


def _identity_index(cores):
    return _Index((), {c: sp.S.Zero for c in cores},
                  {c: Tr(c.data.Sigma) / c.m for c in cores}, {c: sp.S.Zero for c in cores})


def _resolvent_index(l, cores, reg):
    if isinstance(l, GRes):
        g = reg.general(l.blocks, l.B, l.z)
        mine = dict(zip(l.cores, zip(g["delta"], g["rho"], g["weights"])))
        R = Det(g["R"])
        phi, delta, weights = {}, {}, {}
        for c in cores:
            if c in mine:
                dl, rho, wgt = mine[c]
                phi[c], delta[c], weights[c] = wgt * rho, dl / wgt, wgt
            else:
                phi[c], weights[c] = sp.S.Zero, sp.S.Zero
                delta[c] = Tr(c.data.Sigma * g["R"]) / c.m
        return _Index((R,), phi, delta, weights)
    # a plain resolvent (Σ̂_j + z)⁻¹ of one of the cores: ρ = z/κ, R = (κ/z)(Σ+κ)⁻¹, δ = κ/z − 1
    side = reg.side(l.core, l.z)
    k, z = side.kA, l.z
    S = l.core.data.Sigma
    R = Det((k / z) * (S + k * Identity(S.shape[0])).inverse())
    phi, delta, weights = {}, {}, {}
    for c in cores:
        if c == l.core:
            phi[c], delta[c], weights[c] = z / k, k / z - 1, sp.S.One
        else:
            phi[c], weights[c] = sp.S.Zero, sp.S.Zero
            delta[c] = Tr(c.data.Sigma * R.expr) / c.m
    return _Index((R,), phi, delta, weights)


# tagged polys of the lift: the unknowns ``Δ_j,ab`` of one step enter linearly, so a
# term carries the index ``j`` of the unknown it is multiplied by (or ``None``)
# instead of a SymPy symbol: the linear system's matrix and right-hand side are
# read off the tags, and substitution is a product of polys — no ``diff``/``subs``
# on large coefficients.  scalar: (coeff, swords, tag); matrix: (coeff, swords, mword, tag)
def _tcollect_s(p):
    acc = {}
    for c, sw, t in p:
        k = (sw, t)
        acc[k] = acc[k] + c if k in acc else c
    return [(c, sw, t) for (sw, t), c in acc.items() if c != 0]


def _tcollect_m(p):
    acc = {}
    for c, sw, mw, t in p:
        k = (sw, mw, t)
        acc[k] = acc[k] + c if k in acc else c
    return [(c, sw, mw, t) for (sw, mw, t), c in acc.items() if c != 0]


def _tsubst_s(p, sols):
    """Replace each tagged unknown ``j`` by the untagged poly ``sols[j]``."""
    out = []
    for c, sw, t in p:
        if t is None:
            out.append((c, sw, None))
        else:
            out += [(c2 * c, sw2 + sw, None) for c2, sw2 in sols[t]]
    return _tcollect_s(out)


def _tsubst_m(p, sols):
    out = []
    for c, sw, mw, t in p:
        if t is None:
            out.append((c, sw, mw, None))
        else:
            out += [(c2 * c, sw2 + sw, mw, None) for c2, sw2 in sols[t]]
    return _tcollect_m(out)


def lift(indices, links, cores):
    """Block ``(1, K)`` of ``R̃`` as a matrix poly (see the module docstring).

    Built from the diagonal out, distance ``s = b − a`` at a time:
    ``Φ_j,ab (1 + Δ_j,bb C_j,bb) = C_j,ab − Σ_{(c,e) ≠ (b,b)} Φ_j,ac Δ_j,ce C_j,eb``,
    ``R̃_ab = −R_aa Σ_{c=a+1}^{b} D_ac R̃_cb`` with ``D_ac = Σ_j Φ_j,ac Σ_j + B̃_ac``, and
    ``Δ_j,ab = Tr[Σ_j R̃_ab]/n_j`` — linear in the unknowns ``Δ_·,ab`` (one per core),
    solved by a small matrix inverse whose entries are abbreviated by symbols while
    inverting and substituted back into the (small) inverse at once."""
    K = len(indices)
    Rt = {}
    Phi, Delta = {}, {}
    C = {}
    for a, ix in enumerate(indices):
        Rt[a, a] = [(sp.S.One, (), ix.R, None)]
        for c in cores:
            Phi[c, a, a] = [(ix.phi[c], (), None)] if ix.phi[c] != 0 else []
            Delta[c, a, a] = [(ix.delta[c], (), None)]
            C[c, a, a] = ix.weights[c]
    for a, (kind, what) in enumerate(links):
        for c in cores:
            C[c, a, a + 1] = sp.S.NegativeOne if (kind == "bare" and what == c) else sp.S.Zero
    Cget = lambda c, a, b: C.get((c, a, b), sp.S.Zero)  # noqa: E731
    nc = len(cores)
    for s in range(1, K):
        for a in range(K - s):
            b = a + s
            for j, c in enumerate(cores):
                Delta[c, a, b] = [(sp.S.One, (), j)]
            # Φ_ab (1 + Δ_bb C_bb) = C_ab − Σ_{(c,e) ≠ (b,b)} Φ_ac Δ_ce C_eb
            for c in cores:
                acc = [(Cget(c, a, b), (), None)] if Cget(c, a, b) != 0 else []
                for cc in range(a, b + 1):
                    for e in range(cc, b + 1):
                        Ceb = Cget(c, e, b)
                        if (cc, e) == (b, b) or Ceb == 0:
                            continue
                        # Φ_ac is untagged (c < b, or c = b with e = b excluded)
                        acc += [(-Ceb * (c1 * c2), s1 + s2, t2)
                                for c1, s1, _ in Phi[c, a, cc] for c2, s2, t2 in Delta[c, cc, e]]
                den = 1 + indices[b].delta[c] * indices[b].weights[c]
                Phi[c, a, b] = _tcollect_s([(co / den, sw, t) for co, sw, t in acc])
            # R̃_ab = −R_aa Σ_{c=a+1}^{b} D_ac R̃_cb,  D_ac = Σ_j Φ_j,ac Σ_j + B̃_ac
            ra = indices[a].R
            terms = []
            for cc in range(a + 1, b + 1):
                for c in cores:
                    if Phi[c, a, cc]:
                        S = (Det(c.data.Sigma),)
                        terms += [(-co1 * co2, sw1 + sw2, ra + S + mw, t1)
                                  for co1, sw1, t1 in Phi[c, a, cc] for co2, sw2, mw, _ in Rt[cc, b]]
            kind, what = links[a]
            if kind == "word":
                terms += [(co, sw, ra + what + mw, t) for co, sw, mw, t in Rt[a + 1, b]]
            Rab = _tcollect_m(terms)
            # Δ_j,ab = Tr[Σ_j R̃_ab]/n_j: linear in the tagged unknowns
            A = sp.zeros(nc, nc)
            abbrev = {}
            h = []
            for i, c in enumerate(cores):
                Sw = (Det(c.data.Sigma),)
                r = _tcollect_s([(co / c.m, sw + (Sw + mw,), t) for co, sw, mw, t in Rab])
                for k2 in range(nc):
                    part = [(co, sw) for co, sw, t in r if t == k2]
                    val = (1 if i == k2 else 0) - _deterministic_scalar(part, "coefficient")
                    if val.is_number:
                        A[i, k2] = val
                    else:       # abbreviated while inverting (cheap algebra), substituted right after
                        a_ = sp.Dummy(f"lift{len(abbrev)}")
                        abbrev[a_] = val
                        A[i, k2] = a_
                h.append([(co, sw) for co, sw, t in r if t is None])
            Ainv = _inverse(A)
            if abbrev:
                Ainv = Ainv.xreplace(abbrev)
            sols = []
            for k2 in range(nc):
                sol = []
                for i in range(nc):
                    if Ainv[k2, i] != 0:
                        sol += [(Ainv[k2, i] * co, sw) for co, sw in h[i]]
                sols.append(_collect_s(sol))
            for c, sol in zip(cores, sols):
                Delta[c, a, b] = [(co, sw, None) for co, sw in sol]
            for c in cores:
                Phi[c, a, b] = _tsubst_s(Phi[c, a, b], sols)
            Rt[a, b] = _tsubst_m(Rab, sols)
    return [(c, sw, mw) for c, sw, mw, _ in Rt[0, K - 1]]


def _lift_reference(indices, links, cores):
    """:func:`lift` as first written: the unknowns ``Δ_·,ab`` as SymPy dummies in the
    coefficients, read off by ``diff``/``subs`` and substituted at the end (slow on the
    large coefficients of 4- and 5-point traces). Kept as the reference the tagged
    :func:`lift` is tested against (``tests/test_dspeed_cache.py``) and as the
    baseline of ``benchmarks/derive.py``."""
    K = len(indices)
    abbrev = {}
    Rt = {}
    Phi, Delta = {}, {}
    C = {}
    for a, ix in enumerate(indices):
        Rt[a, a] = [(sp.S.One, (), ix.R)]
        for c in cores:
            Phi[c, a, a] = [(ix.phi[c], ())] if ix.phi[c] != 0 else []
            Delta[c, a, a] = [(ix.delta[c], ())]
            C[c, a, a] = ix.weights[c]
    for a, (kind, what) in enumerate(links):
        for c in cores:
            C[c, a, a + 1] = sp.S.NegativeOne if (kind == "bare" and what == c) else sp.S.Zero
    Cget = lambda c, a, b: C.get((c, a, b), sp.S.Zero)  # noqa: E731
    for s in range(1, K):
        for a in range(K - s):
            b = a + s
            xs = [sp.Dummy(f"x{j}") for j in range(len(cores))]
            for c, x in zip(cores, xs):
                Delta[c, a, b] = [(x, ())]
            # Φ_ab (1 + Δ_bb C_bb) = C_ab − Σ_{(c,e) ≠ (b,b)} Φ_ac Δ_ce C_eb
            for c in cores:
                acc = [(Cget(c, a, b), ())] if Cget(c, a, b) != 0 else []
                for cc in range(a, b + 1):
                    for e in range(cc, b + 1):
                        if (cc, e) == (b, b) or Cget(c, e, b) == 0:
                            continue
                        acc += [(-Cget(c, e, b) * co, sw)
                                for co, sw in _smul(Phi[c, a, cc], Delta[c, cc, e])]
                den = 1 + indices[b].delta[c] * indices[b].weights[c]
                Phi[c, a, b] = _collect_s([(co / den, sw) for co, sw in acc])
            # R̃_ab = −R_aa Σ_{c=a+1}^{b} D_ac R̃_cb,  D_ac = Σ_j Φ_j,ac Σ_j + B̃_ac
            ra = indices[a].R
            terms = []
            for cc in range(a + 1, b + 1):
                for c in cores:
                    if Phi[c, a, cc]:
                        S = (Det(c.data.Sigma),)
                        terms += [(-co1 * co2, sw1 + sw2, ra + S + mw)
                                  for co1, sw1 in Phi[c, a, cc] for co2, sw2, mw in Rt[cc, b]]
            kind, what = links[a]
            if kind == "word":
                terms += [(co, sw, ra + what + mw) for co, sw, mw in Rt[a + 1, b]]
            Rab = _collect_m(terms)
            # Δ_j,ab = Tr[Σ_j R̃_ab]/n_j: linear in xs
            rhs = [_collect_s([(co / c.m, sw) for co, sw in _trace_with((Det(c.data.Sigma),), Rab)])
                   for c in cores]
            A = sp.zeros(len(cores), len(cores))
            h = []
            for i, r in enumerate(rhs):
                for k2, x in enumerate(xs):
                    part = [(sp.diff(co, x), sw) for co, sw in r if sp.diff(co, x) != 0]
                    val = (1 if i == k2 else 0) - _deterministic_scalar(part, "coefficient")
                    if val.is_number:
                        A[i, k2] = val
                    else:       # abbreviated while solving (cheap algebra), substituted at the end
                        a_ = sp.Symbol(f"__lift{len(abbrev)}")
                        abbrev[a_] = val
                        A[i, k2] = a_
                h.append(_collect_s([(co.subs({x: 0 for x in xs}), sw) for co, sw in r]))
            Ainv = _inverse(A)
            sols = []
            for k2 in range(len(cores)):
                sol = []
                for i in range(len(cores)):
                    if Ainv[k2, i] != 0:
                        sol += [(Ainv[k2, i] * co, sw) for co, sw in h[i]]
                sols.append(_collect_s(sol))
            for c, sol in zip(cores, sols):
                Delta[c, a, b] = sol
            for c in cores:
                Phi[c, a, b] = _subst_s(Phi[c, a, b], xs, sols)
            Rt[a, b] = _subst_m(Rab, xs, sols)
    if not abbrev:
        return Rt[0, K - 1]
    return _collect_m([(c.xreplace(abbrev), sw, mw) for c, sw, mw in Rt[0, K - 1]])
