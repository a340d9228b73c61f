"""Data matrices outside a sample covariance, by sample-side sources
(docs/math.md, "Data outside a sample covariance").

For ``X = K^{1/2} Z Σ^{1/2}`` (``n × d``, ``K = I`` for iid rows) and a
deterministic ``n×n`` matrix ``M`` between two data matrices,

    XᵀMX/n = Σ^{1/2} Zᵀ (K^{1/2} M K^{1/2}) Z Σ^{1/2}/n,

a sample covariance whose row correlation is deformed,
``K_t = K + t K^{1/2}MK^{1/2}``: ``G (XᵀMX/n) G = −∂_t G_t|_{t=0}``. Label
noise correlated like the samples (``ε ~ N(0, σ²K)``) averages to
``σ² G XᵀKX G/n²`` (``M = K``); a 0/1 row selector ``P`` gives ``K_t = I + tP``.

**Rule (the lift with sample-side sources).** A trace whose letters are
resolvents ``G(z_a) = (XᵀX/n + z_a)⁻¹``, bare ``Σ̂ = XᵀX/n``, sandwiches
``XᵀM_jX/n`` (``M_j`` anything independent of ``X``) and ``d×d`` letters
``P`` independent of ``X``, is a block of the inverse of the upper
block-bidiagonal lift

    D = Σ^{1/2} Zᵀ 𝒦 Z Σ^{1/2}/n + B̃,   𝒦_aa = c_a K,  𝒦_{a,a+1} = −K^{1/2}M_aK^{1/2},

(``c_a = 1`` at a resolvent index with ``B̃_aa = z_a``, ``c_a = 0`` and
``B̃_aa = I`` at an identity index; a word letter ``P`` is ``B̃_{a,a+1} = −P``;
a bare ``Σ̂`` is a sandwich with ``M = I``). The operator-valued one-point law
of the general law (rows correlated through the ``n``-side block matrix
``𝒦``) reads

    E[D⁻¹] ≃ R̃ = (Σ ⊗ Φ + B̃)⁻¹,   Φ = Tr_n[𝒥(I + Δ𝒥)⁻¹]/n,   Δ_ab = Tr[Σ R̃_ab]/n,

with ``𝒥 = 𝒩K`` (``𝒩_aa = c_a I``, ``𝒩_{a,a+1} = −M_a``; block traces of
``𝒦(I+Δ𝒦)⁻¹`` and of ``𝒩K(I+Δ𝒩K)⁻¹`` agree, so no square root of ``K``
appears). Everything is upper triangular and solved from the diagonal out:
the diagonal is the correlated-samples one-point law (``Φ_aa = z_a/κ_a``,
``Δ_aa = 1/ν_a``; iid rows ``Δ_aa = κ_a/z_a − 1``), and at distance ``s``
the one unknown ``Δ_ab`` solves a linear equation. With ``𝒦 = C ⊗ I`` it is
the lift of ``general_law``; for ``G XᵀMX G/n`` it is the source derivative
``ρ' R Σ R`` with ``ρ' = Tr[MK(I+δK)⁻²]/n / (1 − Tr[K²(I+δK)⁻²]Tr[(ΣR)²]/n²)``.

Rank-one sandwiches ``M = aaᵀ`` (``aᵀX`` is ``O(1)``: a test point correlated
with the training rows, ``x̃ | X ~ N(Xᵀa, sΣ)`` with ``a = K⁻¹k``) are covered
by the same rule at leading order: in ``K``'s eigenbasis ``K = UDUᵀ`` the rows
``D^{1/2}Z`` are independent and sign-symmetric, so e.g.
``E[(aᵀXGv)²] = Σ_i (Uᵀa)_i² D_i E[(z_iᵀΣ^{1/2}Gv)²]`` (cross terms vanish by
``z_i → −z_i``), and each term is a leave-one-out quadratic form that
concentrates at ``D_i/(1 + δD_i)²·E[vᵀGΣGv]`` — the rule's
``Tr[MK(I+δK)⁻²]/n`` weight. Checked against an independent dense NumPy
simulation of the next sample of the process (test error averaged exactly over
``x̃ | X``), relative error ≤ 1 % at d = 60 shrinking with d
(tests/test_corr_timeseries.py).

Gram-side letters of the same ``X`` are first rewritten exactly in data-side
terms: ``(XXᵀ/n + z)⁻¹ = (I − X(XᵀX/n + z)⁻¹Xᵀ/n)/z`` and ``XXᵀ/n`` as two
data letters (so mixed data-space/Gram-space resolvents of one ``X`` reduce
to this rule). First order only: outside variance mode; refused otherwise.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..objects import Tr
from ..objects.matrices import GaussianData, RandomFeatures
from ..rewrite.letters import An, Bare, Core, Det, Fn, GRes, Rand, Res
from .general_law import (_collect_m, _collect_s, _deterministic_scalar, _subst_m,
                          _trace_with)


# ----------------------------------------------------------------- routing
def target(word):
    """The data matrix ``X`` of the first bare data letter (``X`` or ``Xᵀ``)
    in the word, or ``None``."""
    for l in word:
        if isinstance(l, Rand) and isinstance(l.sym, GaussianData):
            return l.sym
    return None


def applies(word):
    """Whether this rule should average the word: a data matrix appears as a
    letter of its own (outside ``XᵀX``), with no random features around."""
    if any(isinstance(l, Rand) and isinstance(l.sym, RandomFeatures) for l in word):
        return False
    return target(word) is not None


def _mine(l, uid):
    if isinstance(l, Rand):
        return l.sym.uid == uid
    if isinstance(l, GRes):
        return uid in l.sources
    if isinstance(l, (Res, Bare, Fn, An)):
        return uid in l.core.sources
    return False


def average(eng, word, describe):
    """``E[Tr word]`` over the data matrix ``X`` of :func:`target`: a list of
    ``(coeff, (word, …))`` free of ``X``."""
    X = target(word)
    if X.has_mean:
        raise NotImplementedError(
            f"{X.name} (nonzero mean) appears outside a sample covariance in {describe(word)}: "
            "not implemented")
    if eng.variance_mode:
        raise NotImplementedError(
            f"{X.name} outside a sample covariance in {describe(word)} while independent copies are "
            "compared: second-order (two-pairing) terms of the sample-side rule are not implemented")
    if sp.simplify(X.n - X.d) == 0:
        raise NotImplementedError(f"{X.name} is square (n = d as symbols): sample-side rule needs n ≠ d")
    uid = X.uid
    for l in word:
        if not _mine(l, uid) or isinstance(l, Rand):
            continue
        ok = isinstance(l, (Res, Bare)) and not l.core.chain and l.core.ddof is None
        if not ok:
            raise NotImplementedError(
                f"{l} together with {X.name} outside a sample covariance in {describe(word)}: the sample-side "
                "rule covers resolvents and bare XᵀX/n, XXᵀ/n of X (no feature chains, no "
                "sr.sample_covariance, no spectral functions, no pooled blocks)")
    out = []
    for c, w in _data_side(word, X):
        for c2, ws in _lift_word(w, X, eng.reg, describe):
            out.append((c * c2, ws))
    return out


def average_core(eng, word, X, describe):
    """``E[Tr word]`` for a word of resolvents and bare ``XᵀX/n`` of one data
    core of correlated rows (``k ≥ 3`` resolvents): the same lift, no
    sandwich letters."""
    if eng.variance_mode:
        raise NotImplementedError(
            f"products of resolvents of correlated samples in {describe(word)} while independent copies "
            "are compared: not implemented")
    return _lift_word(word, X, eng.reg, describe)


def _data_side(word, X):
    """Gram-side letters of ``X`` rewritten exactly in data-side letters:
    ``XXᵀ/n → (1/n)·X·Xᵀ``, ``(XXᵀ/n + z)⁻¹ → (1/z)(I − (1/n)·X·G(z)·Xᵀ)``."""
    n = X.n
    data = Core(X, "data")
    terms = [(sp.S.One, ())]
    for l in word:
        if isinstance(l, Bare) and l.core.data == X and l.core.side == "gram":
            opts = [(1 / n, (Rand(X), Rand(X, True)))]
        elif isinstance(l, Res) and l.core.data == X and l.core.side == "gram":
            opts = [(1 / l.z, ()), (-1 / (n * l.z), (Rand(X), Res(data, l.z), Rand(X, True)))]
        else:
            opts = [(sp.S.One, (l,))]
        terms = [(c1 * c2, w1 + w2) for c1, w1 in terms for c2, w2 in opts]
    return [(c, w if w else (Det(Identity(n)),)) for c, w in terms]


# ----------------------------------------------------------------- parsing
def _items(word, X):
    """Cut the cyclic word into items of ``X`` and the letters between them.

    Returns ``(items, gaps, tail)`` with the word rotated to start at the first
    item: ``items`` a list of ``("res", z)`` or ``("sand", M-letters, scale)``;
    ``gaps[k]`` the letters between item ``k`` and item ``k+1``; ``tail`` the
    letters after the last item. ``None`` when no letter of ``X`` is left."""
    L = len(word)
    starts = [i for i, l in enumerate(word)
              if (isinstance(l, Rand) and l.sym == X and l.t)
              or (isinstance(l, (Res, Bare)) and l.core.data == X and l.core.side == "data")]
    if not starts:
        if any(isinstance(l, Rand) and l.sym == X for l in word):
            raise NotImplementedError(f"{X.name} without its transpose in a trace")
        return None
    w = word[starts[0]:] + word[:starts[0]]
    items, gaps = [], []
    cur = []
    i = 0
    while i < L:
        l = w[i]
        if isinstance(l, Res) and l.core.data == X:
            items.append(("res", l.z))
            gaps.append(cur)
            cur = []
            i += 1
        elif isinstance(l, Bare) and l.core.data == X:
            items.append(("sand", (), sp.S.One))
            gaps.append(cur)
            cur = []
            i += 1
        elif isinstance(l, Rand) and l.sym == X:
            if not l.t:
                raise NotImplementedError(f"{X.name} and {X.name}ᵀ do not alternate in the trace")
            j = i + 1
            M = []
            while j < L and not (isinstance(w[j], Rand) and w[j].sym == X):
                if _mine(w[j], X.uid):
                    raise NotImplementedError(
                        f"{w[j]} between {X.name}ᵀ and {X.name}: a Gram-side letter of {X.name} inside a "
                        "sample-side sandwich is not implemented")
                M.append(w[j])
                j += 1
            if j >= L or w[j].t:
                raise NotImplementedError(f"{X.name}ᵀ without a matching {X.name} in the trace")
            items.append(("sand", tuple(M), X.n))
            gaps.append(cur)
            cur = []
            i = j + 1
        else:
            cur.append(l)
            i += 1
    gaps.append(cur)
    # gaps[0] is empty (the word starts at an item); gaps[k+1] follows item k
    return items, [tuple(g) for g in gaps[1:-1]], tuple(gaps[-1])


# ----------------------------------------------------------------- the lift
def _npoly_mul(a, b):
    """Product of two ``n``-side matrix polys ``(coeff, swords, nword)``."""
    return _collect_m([(c1 * c2, s1 + s2, m1 + m2) for c1, s1, m1 in a for c2, s2, m2 in b])


def _scale_np(spoly, npoly):
    return [(c1 * c2, s1 + s2, m) for c1, s1 in spoly for c2, s2, m in npoly]


def _trn(npoly, n):
    """``Tr_n[·]/n`` of an ``n``-side matrix poly as a scalar poly."""
    out = []
    for c, sw, mw in npoly:
        if mw:
            out.append((c / n, sw + (mw,)))
        else:
            out.append((c, sw))
    return _collect_s(out)


def _lift_word(word, X, reg, describe):
    parsed = _items(word, X)
    if parsed is None:
        return [(sp.S.One, (word,))]
    items, gaps, tail = parsed
    n = X.n
    Sigma = X.Sigma
    d = Sigma.shape[0]
    core = Core(X, "data")
    iid = not X.correlated
    Klet = () if iid else (Det(X.K),)
    scale = sp.S.One
    # indices: dicts with R (letters), c, delta, E (scalar, letters), H (npoly)
    indices, links = [], []

    def identity_index():
        return dict(R=(), c=0, delta=Tr(Sigma) / n, E=(sp.S.One, ()), H=[])

    def need_index():
        if len(links) == len(indices):
            indices.append(identity_index())

    for k, it in enumerate(items):
        if it[0] == "res":
            z = it[1]
            side = reg.side(core, z)
            kap, nu = side.kA, side.kB
            R = (Det((kap / z) * (Sigma + kap * Identity(d)).inverse()),)
            if iid:
                ix = dict(R=R, c=1, delta=kap / z - 1, E=(z / kap, ()), H=[(z / kap, (), ())])
            else:
                Einv = Det(nu * (X.K + nu * Identity(n)).inverse())
                ix = dict(R=R, c=1, delta=1 / nu, E=(sp.S.One, (Einv,)), H=[(sp.S.One, (), (Det(X.K), Einv))])
            if len(indices) > len(links):
                links.append(("word", ()))
            indices.append(ix)
        else:
            _, M, sc = it
            scale *= sc
            need_index()
            links.append(("sand", M))
        if k + 1 < len(items) and gaps[k]:
            need_index()
            links.append(("word", gaps[k]))
    need_index()
    Rt = _lift(indices, links, Klet, Sigma, n, describe, word)
    out = []
    for c, sw, mw in Rt:
        tw = mw + tail
        out.append((scale * c, sw + (tw if tw else (Det(Identity(d)),),)))
    return out


def _lift(indices, links, Klet, Sigma, n, describe, word):
    """Block ``(0, K−1)`` of ``R̃`` (module docstring) as a matrix poly."""
    K = len(indices)
    Rt, H, Delta = {}, {}, {}
    for a, ix in enumerate(indices):
        Rt[a, a] = [(sp.S.One, (), ix["R"])]
        H[a, a] = ix["H"]
        Delta[a, a] = [(ix["delta"], ())]
    J = {}
    for a, (kind, what) in enumerate(links):
        if kind == "sand":
            J[a, a + 1] = [(sp.S.NegativeOne, (), tuple(what) + Klet)]
    S = (Det(Sigma),)
    for s in range(1, K):
        for a in range(K - s):
            b = a + s
            x = sp.Dummy("x")
            Delta[a, b] = [(x, ())]
            acc = list(J.get((a, b), [])) if s == 1 else []
            cb = indices[b]["c"]
            for c in range(a, b):
                if cb:
                    acc += _scale_np([(-co, sw) for co, sw in Delta[c, b]],
                                     _npoly_mul(H[a, c], [(sp.S.One, (), Klet)]))
                if (b - 1, b) in J and c <= b - 1:
                    acc += _scale_np([(-co, sw) for co, sw in Delta[c, b - 1]], _npoly_mul(H[a, c], J[b - 1, b]))
            eb, el = indices[b]["E"]
            Hab = _collect_m([(co * eb, sw, mw + el) for co, sw, mw in acc])
            Phi_ab = _trn(Hab, n)
            # R̃_ab = −R_a Σ_{c=a+1}^{b} Φ_ac Σ R̃_cb  (+ R_a P R̃_{a+1,b} for a word link)
            ra = indices[a]["R"]
            terms = []
            for c in range(a + 1, b + 1):
                phi = Phi_ab if c == b else _trn(H[a, c], n)
                terms += [(-co1 * co2, sw1 + sw2, ra + S + mw) for co1, sw1 in phi for co2, sw2, mw in Rt[c, b]]
            kind, what = links[a]
            if kind == "word":
                terms += [(co, sw, ra + tuple(what) + mw) for co, sw, mw in Rt[a + 1, b]]
            Rab = _collect_m(terms)
            rhs = _collect_s([(co / n, sw) for co, sw in _trace_with(S, Rab)])
            coef = [(sp.diff(co, x), sw) for co, sw in rhs if sp.diff(co, x) != 0]
            A = _deterministic_scalar(coef, f"sample-side lift of {describe(word)}")
            h = _collect_s([(co.subs(x, 0), sw) for co, sw in rhs])
            sol = _collect_s([(co / (1 - A), sw) for co, sw in h])
            Delta[a, b] = sol
            H[a, b] = _subst_m(Hab, [x], [sol])
            Rt[a, b] = _subst_m(Rab, [x], [sol])
    return Rt[0, K - 1]


# ----------------------------------------------------------------- implicit roots
def extract_roots(e):
    """``sr.df_inverse(K, t)`` nodes of ``e`` replaced by positive placeholder
    symbols: ``(e', {node: placeholder})``."""
    from ..objects.roots import DfInverse
    roots = {}
    for node in sp.preorder_traversal(e):
        if isinstance(node, DfInverse) and node not in roots:
            if node.t.has(DfInverse):
                raise NotImplementedError(f"nested df_inverse in {node}: not implemented")
            roots[node] = sp.Dummy(f"nuhat{len(roots)}", positive=True)
    return (e.xreplace(roots) if roots else e), roots


def resolve_roots(eng, value, e, roots, derive_scalar):
    """Each placeholder of :func:`extract_roots` replaced by the equivalent of
    its root (objects/roots.py): ``df_K⁻¹(t) ≃ df_K⁻¹(t̄)``, which is the
    unknown ``ν`` of the correlated-samples law whose degrees of freedom
    ``Tr[Σ(Σ+κ)⁻¹]`` equal ``t̄``. Returns ``(value, e)`` with the user's
    nodes put back into ``e``."""
    for node, ph in roots.items():
        tbar = sp.sympify(derive_scalar(node.t))
        nu = None
        for g in eng.reg._groups.values():
            if g.get("general") or g["iid"] or g["Kmat"] != node.K:
                continue
            df = g["group"].df(g["kappa"])
            if sp.expand(tbar - df) == 0:     # structural (conservative: a mismatch refuses)
                nu = g["nu"]
                break
        if nu is None:
            raise NotImplementedError(
                f"{node}: the equivalent of {node.t} is {tbar}, not the degrees of freedom Tr[Σ(Σ+κ)⁻¹] of a "
                f"correlated-samples law with {node.K}; the root of Tr[{node.K}({node.K}+ν)⁻¹] = t at other "
                "values is not implemented")
        value = value.xreplace({ph: nu})
    back = {ph: node for node, ph in roots.items()}
    return value, e.xreplace(back)
