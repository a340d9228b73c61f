"""Fluctuations of traces (docs/math.md §"Fluctuations of traces", second order).

Unnormalised traces of resolvents fluctuate by ``O(1)`` through the whole
spectrum (a central limit theorem for linear spectral statistics), not by the
quadratic-form rule ``rules.covariance`` (which is right for low-rank
statistics ``uᵀGv`` only).

The law. Real Gaussian iid rows ``X = ZΣ^{1/2}`` (``m`` samples, ``Σ̂ = XᵀX/m``),
deterministic symmetric deformations ``B_i``, ``z_i > 0``:

    Cov(log det(Σ̂ + B₁ + z₁), log det(Σ̂ + B₂ + z₂)) ≃ −2 log(1 − γ₁₂),
    γ₁₂ = ρ₁ρ₂ Tr[ΣR₁ΣR₂]/m,  R_i = (ρ_iΣ + B_i + z_i)⁻¹,  ρ_i = 1/(1 + Tr[ΣR_i]/m)

(the general one-point law, docs/math.md; complex data: half). Writing
``P_i = ρ_iR_i = (Σ + κ_i(I + B_i/z_i))⁻¹`` with ``κ_i = z_i/ρ_i``,
``γ₁₂ = Tr[ΣP₁ΣP₂]/m`` and the law's equation is the engine's own,
deformed: ``κ(1 − Tr[ΣP]/m) = z`` (at ``B = 0``: ``κ(1 − df₁(κ)/m) = z``).
With sources ``B_i = Σ_k s_{ik}A_{ik}`` every trace of resolvents against
deterministic matrices is a derivative of ``log det``:

    Tr[A G]       = ∂_s log det(Σ̂ + sA + z)|₀             (A = I: ∂_z)
    Tr[A G B G]   = −∂_{s_A}∂_{s_B} log det(…)|₀          (A, B symmetric)
    Tr[A Gᵏ]      = (−1)^{k−1}/(k−1)! ∂_z^{k−1} Tr[A G]    (k ≤ 3)
    G(a)G(b)      = (G(a) − G(b))/(b − a)                  (partial fractions, a ≠ b)
    Tr[A G]       = Tr[((A + Aᵀ)/2) G]                     (G symmetric)

so ``Cov(Tr w₁, Tr w₂) = ∂_{vars₁}∂_{vars₂}[−2 log(1 − γ₁₂)]|_{s=0}``. The
symmetrisation is required: the law holds for symmetric deformations (the
Gaussian gradient of ``log det`` sees ``(G + Gᵀ)/2``); with it, rank-one
sources ``(uvᵀ + vuᵀ)/2`` reproduce the quadratic-form rule with both Wick
pairings to ``O(1/n²)`` relative — a check of the factor 2 and of ``γ₁₂``.
For ``A = I`` the law reproduces ``Cov(Tr G(z₁), Tr G(z₂)) ≃
2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(z₁−z₂)²]`` (because ``z₁ − z₂ = (κ₁−κ₂)(1−γ₁₂)``)
and ``Var Tr G ≃ S[κ]/3`` (Bai–Silverstein, real case), both kept below as
references for the tests.

Derivation (SymPy): ``γ₁₂`` is bilinear in ``(P₁, P₂)``, so
``∂_{U₁}∂_{U₂}γ₁₂ = Tr[Σ ∂_{U₁}P₁ Σ ∂_{U₂}P₂]/m``; ``P_i`` is differentiated by
``mdiff`` one variable at a time, the chain rule of ``−2 log(1 − γ)`` and of
the equation is SymPy's on abstract scalar functions, and the derivatives of
``κ`` are solved order by order from the derivatives of the equation
(implicit differentiation, so compiled values come from the same equation).
The value keeps the structure ``2[∂₁∂₂γ/(1−γ₁₂) + ∂₁γ∂₂γ/(1−γ₁₂)²]`` (first
derivatives) with ``∂κ`` nested, ``Tr[ΣR] = df₁`` replaced by ``m(1 − z/κ)``
(exact on the equation; no cancellation in ``1 − df₁/m``); for ``A = I`` every
term is positive and the value is regular at ``z₁ = z₂`` (the docs/math.md
form is 0/0 there). Partial fractions ``1/(b − a)`` do cancel as ``b → a``
(inherent in the rewrite).

Scope: white Wishart cores — data side ``XᵀX/m`` with iid rows, zero mean
(or ``sr.sample_covariance``, ``ddof=0`` about the known mean, ``ddof=1``
exactly a white Wishart with ``n − 1`` samples: ``m = n − 1``); the Gram side
``XXᵀ/m`` only against the identity (``Tr f(XXᵀ/m) = Tr f(XᵀX/m) + (m−d)f(0)``).
Refused by name (``NotImplementedError``): two resolvents at different
ridges with non-identity matrices between both pairs, ``Tr[GAGB]`` with a
non-symmetric ``A`` or ``B``, three resolvents with matrices between them,
``Gᵏ`` with ``k > 3``, a sample covariance apart from its resolvent, spectral
functions, complex ``z``, correlated samples ``K``, random-feature chains,
other Gram-side traces; a trace against a quadratic form of the same data is
refused in ``covariance.cov_core``.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, Transpose, ZeroMatrix

from ..objects import Tr, mdiff
from ..rewrite.letters import Core, Det, Rand, Res, word_sources


def is_low_rank(word):
    """A word that is a quadratic form: it contains a vector (rank-one letter)."""
    for l in word:
        if isinstance(l, Det) and 1 in l.shape:
            return True
        if isinstance(l, Rand) and 1 in tuple(l.sym.shape):
            return True
    return False


def _word_str(word):
    from .engine import canonical_str
    return canonical_str(word)


def trace_cov(engine, w1, w2):
    """``Cov(Tr w1, Tr w2)`` for two traces (no rank-one letter), by the
    log-determinant law (module docstring)."""
    from .covariance import _canon
    total = sp.S.Zero
    for c1, v1 in _canon(engine, w1):
        for c2, v2 in _canon(engine, w2):
            if not (word_sources(v1) & word_sources(v2)):
                continue  # a constant, or independent randomness
            for a1, t1 in _as_logdet(v1, w1):
                for a2, t2 in _as_logdet(v2, w2):
                    total += c1 * c2 * a1 * a2 * _logdet_cov(engine, t1, t2, w1, w2)
    return total


# ------------------------------------------------------------------ words as log-det derivatives
def _as_logdet(v, w):
    """``Tr[v] = Σ c · ∂_{vars} log det(Σ̂ + z + Σ_k s_k A_k)|_{s=0}``: a list of
    ``(c, (core, z, vars))``, ``vars`` a tuple of ``None`` (``∂_z``) or a
    symmetric deterministic ``A`` (``∂_s`` of the source ``sA``). Exact
    rewrites only: ``∂_s log det = Tr[A G]``, ``∂_s Tr[A' G] = −Tr[A' G A G]``,
    ``G(a)G(b) = (G(a) − G(b))/(b − a)``, ``Tr[A G] = Tr[((A+Aᵀ)/2) G]``."""
    if not word_sources(v):
        return []
    bad = [l for l in v if not isinstance(l, (Det, Res))]
    if bad:
        raise NotImplementedError(
            f"fluctuation of the trace Tr[{_word_str(w)}] (reduced to Tr[{_word_str(v)}]): the letter {bad[0]} is "
            "not a resolvent of a white Wishart core or a deterministic matrix; only traces of resolvents against "
            "deterministic matrices are derived (docs/math.md §Fluctuations of traces)")
    res = [l for l in v if isinstance(l, Res)]
    cores = {l.core for l in res}
    if len(cores) > 1:
        raise NotImplementedError(
            f"fluctuation of the trace Tr[{_word_str(w)}]: resolvents of different sample covariances "
            f"({', '.join(sorted(map(str, cores)))}) in one trace are not derived")
    core = _white_core(res[0].core, w)
    i0 = next(i for i, l in enumerate(v) if isinstance(l, Res))
    v = v[i0:] + v[:i0]
    segs = []                     # [(z, between-product)], read cyclically
    for l in v:
        if isinstance(l, Res):
            segs.append([l.z, []])
        else:
            segs[-1][1].append(l.expr)
    segs = [(sp.sympify(z), _product(ms, core.dim)) for z, ms in segs]
    if res[0].core.side == "gram" and any(not isinstance(M, Identity) for _, M in segs):
        raise NotImplementedError(
            f"fluctuation of the trace Tr[{_word_str(w)}]: a Gram-side resolvent against a matrix other than "
            "the identity is not derived (only Tr f(XXᵀ/m) = Tr f(XᵀX/m) + (m − d) f(0))")
    return [(c, (core,) + t) for c, t in _segments(segs, w)]


def _product(ms, dim):
    if not ms:
        return Identity(dim)
    M = MatMul(*ms).doit() if len(ms) > 1 else ms[0]
    return M


def _is_symmetric(M):
    """Structurally symmetric (``Mᵀ`` rebuilds to ``M``); ``False`` when unsure."""
    try:
        T = Transpose(M).doit()
        return T == M or sp.simplify(T - M) == ZeroMatrix(*M.shape)
    except Exception:  # unsure: treat as not symmetric (symmetrising is exact anyway)
        return False


def _sym(M):
    if isinstance(M, Identity) or _is_symmetric(M):
        return M
    return sp.Rational(1, 2) * (M + Transpose(M).doit())


def _segments(segs, w, depth=0):
    """``Tr[Π_j G(z_j) M_j]`` as log-det derivatives: list of ``(c, (z, vars))``."""
    k = len(segs)
    zs = [z for z, _ in segs]
    nonid = [j for j, (_, M) in enumerate(segs) if not isinstance(M, Identity)]
    if k == 1:
        M = segs[0][1]
        return [(sp.S.One, (zs[0], (None,) if isinstance(M, Identity) else (_sym(M),)))]
    # partial fractions: G(a) G(b) = (G(a) − G(b))/(b − a) where nothing sits between and a ≠ b
    for j in range(k):
        a, M = segs[j]
        b = segs[(j + 1) % k][0]
        if isinstance(M, Identity) and sp.simplify(a - b) != 0:
            rot = segs[j:] + segs[:j]
            out = []
            for keep, sign in ((a, 1), (b, -1)):
                for c, t in _segments([(keep, rot[1][1])] + rot[2:], w, depth + 1):
                    out.append((sign * c / (b - a), t))
            return out
    if any(sp.simplify(z - zs[0]) != 0 for z in zs):
        raise NotImplementedError(
            f"fluctuation of the trace Tr[{_word_str(w)}]: resolvents at different spectral parameters with "
            "non-identity matrices between both pairs are not derived")
    z = zs[0]
    if len(nonid) <= 1:
        # Tr[G^k M] = (−1)^{k−1}/(k−1)! ∂_z^{k−1} Tr[M G]
        M = segs[nonid[0]][1] if nonid else None
        if k > 3:
            raise NotImplementedError(f"fluctuation of the trace Tr[{_word_str(w)}]: powers G^k, k > 3")
        c = sp.S.NegativeOne ** (k - 1) / sp.factorial(k - 1)
        return [(c, (z, (None,) * (k - 1) + (None if M is None else _sym(M),)))]
    if k == 2:
        (_, M1), (_, M2) = segs
        if not (_is_symmetric(M1) and _is_symmetric(M2)):
            raise NotImplementedError(
                f"fluctuation of the trace Tr[{_word_str(w)}]: Tr[G A G B] with A or B not symmetric "
                f"({M1}, {M2}) is not a derivative in symmetric sources")
        return [(sp.S.NegativeOne, (z, (M1, M2)))]
    raise NotImplementedError(
        f"fluctuation of the trace Tr[{_word_str(w)}]: {k} resolvents with matrices between them are not derived")


# ------------------------------------------------------------------ the law and its derivatives
def _logdet_cov(engine, t1, t2, w1, w2):
    (core1, z1, vars1), (core2, z2, vars2) = t1, t2
    if core1 != core2:
        raise NotImplementedError(
            f"covariance of Tr[{_word_str(w1)}] and Tr[{_word_str(w2)}]: resolvents of different sample "
            f"covariances of the same data ({core1}, {core2}) are not implemented")
    for z in (z1, z2):
        if z.has(sp.I) or z.is_real is False:
            raise NotImplementedError(f"fluctuation of traces at a complex spectral parameter ({z})")
    return logdet_cov_derivative(engine, core1, (z1, vars1), (z2, vars2))


def logdet_cov_derivative(engine, core, side1, side2):
    """``∂_{vars₁}∂_{vars₂} [−2 log(1 − γ₁₂)]`` at ``s = 0`` (module docstring),
    each side ``(z, vars)``.

    Derived in SymPy without differentiating large matrix expressions:
    ``γ₁₂ = Tr[ΣP₁ΣP₂]/m`` is bilinear, so ``∂_{U₁}∂_{U₂}γ = Tr[Σ ∂_{U₁}P₁ Σ ∂_{U₂}P₂]/m``
    (``P_i`` differentiated by ``mdiff``, one variable at a time); the chain
    rule for ``−2 log(1 − γ)`` and for the equation ``κ(1 − h) = z``,
    ``h = Tr[ΣP]/m``, is SymPy's on abstract scalar functions ``γ``, ``h``,
    ``κ``; ``∂κ`` solved order by order (implicit differentiation of the
    engine's own equation, deformed by the sources)."""
    S, m = core.data.Sigma, core.m
    d = S.shape[0]
    Id = Identity(d)
    sides = []
    for i, (z, vars_) in enumerate((side1, side2), 1):
        k, F = _F(engine, core, z)
        zeta = sp.Dummy(f"zeta{i}", positive=True)
        mats = []
        for v in vars_:
            if v is not None and v not in mats:
                mats.append(v)
        ss = [sp.Dummy(f"s{i}_{j}", real=True) for j in range(len(mats))]
        allv = (zeta, *ss)
        kap = sp.Function(f"kappa_{i}")(*allv)
        terms = [S, kap * Id] + [(kap * s_ / zeta) * M for s_, M in zip(ss, mats)]
        P = Inverse(MatAdd(*terms).doit())   # canonical order: SymPy rebuilds it so inside products
        same = sides and sides[0]["k"] == k
        Q = sides[0]["Q"] if same else sp.MatrixSymbol(f"_Q{i}", d, d)   # one placeholder per κ
        R = (S + k * Id).inverse()
        h = sp.Function(f"h_{i}")(*allv)
        E = kap * (1 - h) - zeta
        e0 = (k * (1 - Tr(S * R) / m) - z)
        if sp.simplify(e0 - (F - z)) != 0:
            raise AssertionError(f"internal: source law at s = 0 is not the engine's equation ({e0} vs {F} = {z})")
        dv = tuple(zeta if v is None else ss[mats.index(v)] for v in vars_)
        sd = dict(z=sp.sympify(z), k=k, zeta=zeta, ss=ss, kap=kap, P=P, E=E, Q=Q, R=R, dv=dv, h=h,
                  allv=allv, dsym={})
        # derivatives of P over every sub-multiset of the variables, frozen at s = 0
        dP = {(): P}
        fz = {(): [(sp.S.One, (Q,))]}
        for key in _multisets(dv):
            dP[key] = mdiff(dP[key[:-1]], key[-1])
            if dP[key] is None:
                dP[key] = ZeroMatrix(d, d)
        for key in _multisets(dv):
            sd["dsym"][key] = sp.Dummy("dk_" + "_".join(str(v) for v in key))
        for key in _multisets(dv):
            fz[key] = _freeze_matrix(dP[key], sd)
        sd["fz"] = fz
        sides.append(sd)
    s1, s2 = sides
    gam = sp.Function("gamma")(*s1["allv"], *s2["allv"])
    D = sp.diff(-2 * sp.log(1 - gam), *s1["dv"], *s2["dv"])
    Sw = [(sp.S.One, (S,))]
    if s1["Q"] == s2["Q"]:
        # same κ: 1 − γ = z/κ + κ Tr[ΣR²]/m exactly (all positive; the same factor as ∂_z κ's)
        k, z = s1["k"], s1["z"]
        rep = {gam: 1 - (z / k + k * _trace_sum(Sw, [(sp.S.One, (s1["Q"], s1["Q"]))]) / m)}
    else:
        rep = {gam: _trace_sum(Sw, Q_of(s1, ()), Sw, Q_of(s2, ())) / m}
    for dv in D.atoms(sp.Derivative):
        if dv.expr == gam:
            key = _dkey(dv)
            k1 = tuple(v for v in key if v in s1["allv"])
            k2 = tuple(v for v in key if v in s2["allv"])
            rep[dv] = _trace_sum(Sw, Q_of(s1, k1), Sw, Q_of(s2, k2)) / m
    D = D.xreplace(rep)
    subs = {}
    for sd in sides:
        subs.update(_implicit(sd, m, S))
    return _finish(D.xreplace(subs), sides, S, m)


def Q_of(sd, key):
    return sd["fz"][tuple(sorted(key, key=sp.default_sort_key))]


def _terms(M):
    """A matrix expression as ``[(coeff, factors)]`` (distributed; ``I`` dropped)."""
    if isinstance(M, ZeroMatrix):
        return []
    if isinstance(M, MatAdd):
        return [t for a in M.args for t in _terms(a)]
    if isinstance(M, MatMul):
        c, mats = M.as_coeff_matrices()
        out = [(c, ())]
        for a in mats:
            ta = _terms(a)
            out = [(c1 * c2, f1 + f2) for c1, f1 in out for c2, f2 in ta]
        return out
    if isinstance(M, Identity):
        return [(sp.S.One, ())]
    if isinstance(M, MatPow) and M.args[1].is_Integer and M.args[1] > 0:
        return [(sp.S.One, (M.args[0],) * int(M.args[1]))]
    return [(sp.S.One, (M,))]


def _trace_sum(*factors):
    """``Tr`` of a product of term lists: ``Σ c · Tr[word]``, each word
    rotated to a canonical cyclic form and runs merged into powers."""
    out = [(sp.S.One, ())]
    for f in factors:
        out = [(c1 * c2, w1 + w2) for c1, w1 in out for c2, w2 in f]
    total = sp.S.Zero
    for c, w in out:
        if c == 0:
            continue
        if not w:
            raise AssertionError("internal: trace of the identity in a fluctuation")
        rots = [w[i:] + w[:i] for i in range(len(w))]
        w = min(rots, key=lambda r: tuple(sp.sstr(x) for x in r))
        mats, i = [], 0
        while i < len(w):
            j = i
            while j < len(w) and w[j] == w[i]:
                j += 1
            mats.append(w[i] if j - i == 1 else MatPow(w[i], j - i))
            i = j
        total += c * Tr(MatMul(*mats) if len(mats) > 1 else mats[0])
    return total


def _freeze_matrix(M, sd):
    """A derivative of ``P`` at ``s = 0``: ``P → Q``, ``∂κ → symbols``, ``κ → κ``
    (the engine's unknown), ``ζ → z``."""
    base = sd["P"].args[0]

    def _q(x):
        if not (isinstance(x, MatPow) and x.args[1].is_Integer and x.args[1] < 0):
            return None
        b = x.args[0] if x.args[0] == base else x.args[0].doit()
        if b != base:
            return None
        return sd["Q"] if x.args[1] == -1 else MatPow(sd["Q"], -x.args[1])

    M = M.replace(lambda x: _q(x) is not None, _q)
    drep = {dv: sd["dsym"][_dkey(dv)] for dv in M.atoms(sp.Derivative) if dv.expr == sd["kap"]}
    M = M.xreplace(drep)
    M = M.xreplace({sd["kap"]: sd["k"], sd["zeta"]: sd["z"], **{s_: 0 for s_ in sd["ss"]}})
    if M.has(sd["kap"]) or any(M.has(s_) for s_ in sd["ss"]):
        raise AssertionError("internal: a source-deformed resolvent was not recognised")
    return _terms(M)


def _multisets(dv):
    """Non-empty sub-multisets of the derivative variables (sorted tuples),
    smallest first."""
    from itertools import combinations
    out = []
    for r in range(1, len(dv) + 1):
        for c in combinations(range(len(dv)), r):
            key = tuple(sorted((dv[j] for j in c), key=sp.default_sort_key))
            if key not in out:
                out.append(key)
    return out


def _dkey(deriv):
    return tuple(sorted((v for v, c in deriv.variable_count for _ in range(int(c))), key=sp.default_sort_key))


def _implicit(sd, m, S):
    """``{∂κ symbol: value}`` from the derivatives of ``κ(1 − h) − z = 0``,
    lowest order first (each is linear in its highest derivative)."""
    sols = {}
    for key in _multisets(sd["dv"]):
        t = sd["dsym"][key]
        eq = sp.diff(sd["E"], *key)
        Sw = [(sp.S.One, (S,))]
        rep = {sd["h"]: _trace_sum(Sw, Q_of(sd, ())) / m}
        for dv in eq.atoms(sp.Derivative):
            if dv.expr == sd["h"]:
                rep[dv] = _trace_sum(Sw, Q_of(sd, _dkey(dv))) / m
            elif dv.expr == sd["kap"]:
                rep[dv] = sd["dsym"][_dkey(dv)]
        eq = eq.xreplace(rep).xreplace({sd["kap"]: sd["k"], sd["zeta"]: sd["z"]})
        eq = _df1_sub(eq, [sd], S, m).xreplace(sols)
        coef = sp.diff(eq, t)
        rest = eq.xreplace({t: 0})
        sols[t] = -rest / coef
    return sols


def _df1_sub(expr, sides, S, m):
    """``Tr[ΣQ] = df₁(κ) → m(1 − z/κ)`` (exact on the equation; no cancellation in ``1 − df₁/m``)."""
    df = {sd["Q"]: m * (1 - sd["z"] / sd["k"]) for sd in sides}

    def _df1(x):
        if not isinstance(x, Tr) or not isinstance(x.arg, MatMul):
            return None
        c, mats = x.arg.as_coeff_matrices()
        if c == 1 and len(mats) == 2 and S in mats:
            other = mats[1] if mats[0] == S else mats[0]
            return df.get(other)
        return None
    return expr.replace(lambda x: _df1(x) is not None, _df1)


def _finish(expr, sides, S, m):
    expr = _df1_sub(expr, sides, S, m)
    return expr.xreplace({sd["Q"]: sd["R"] for sd in sides})


def _white_core(core, w):
    X = core.data
    bad = None
    if core.chain:
        bad = "random features"
    elif X.correlated:
        bad = "correlated samples (K)"
    elif core.ddof is None and not isinstance(X.mean, ZeroMatrix):
        bad = "data with a non-zero mean in a raw XᵀX/n"
    elif core.ddof not in (None, 0, 1):
        bad = f"ddof={core.ddof}"
    if bad:
        raise NotImplementedError(
            f"fluctuation of the trace Tr[{_word_str(w)}] with {bad} ({core}) is not implemented")
    if core.side == "gram":
        if core.ddof is not None:
            raise NotImplementedError(f"fluctuation of Tr[{_word_str(w)}]: Gram side of a centred sample covariance")
        return Core(X, "data", (), core.ddof)
    return core


def _F(engine, core, z):
    """The engine's self-consistent equation solved for ``z``: ``F(κ) = z``."""
    side = engine.reg.side(core, z)
    g = engine.reg._groups[(engine.reg._key(core), sp.sympify(z))]["group"]
    (eq,) = g.equations
    if sp.simplify(eq.rhs - sp.sympify(z)) != 0 or len(g.unknowns) != 1:
        raise AssertionError(f"internal: unexpected equation {eq} for {core} at {z}")
    return side.kA, eq.lhs


def kappa_derivatives(engine, core, z):
    """``(κ, κ', κ'', κ''')`` in ``z``, by implicit differentiation of the
    engine's equation ``F(κ(z)) = z``."""
    k, F = _F(engine, core, z)
    F1 = sp.diff(F, k)      # one order at a time: functionals differentiate through mdiff
    F2 = sp.diff(F1, k)
    F3 = sp.diff(F2, k)
    F1, F2, F3 = (_pull(f) for f in (F1, F2, F3))
    return k, 1 / F1, -F2 / F1 ** 3, (3 * F2 ** 2 - F1 * F3) / F1 ** 5


def _pull(e):
    """Scalars out of traces (``Tr(−3A) = −3 Tr A``), for readable values."""
    from ..objects.functionals import split_linear
    return sp.expand(e.replace(lambda x: isinstance(x, Tr), lambda x: split_linear(Tr, x.arg)))


def schwarzian(engine, core, z):
    """``S[κ](z) = κ'''/κ' − (3/2)(κ''/κ')²``."""
    _, k1, k2, k3 = kappa_derivatives(engine, core, z)
    return k3 / k1 - sp.Rational(3, 2) * (k2 / k1) ** 2


def trace_resolvent_cov(engine, core, z1, z2):
    """``Cov(Tr G(z₁), Tr G(z₂))`` for a white Wishart core (module docstring)."""
    z1, z2 = sp.sympify(z1), sp.sympify(z2)
    if z1.has(sp.I) or z2.has(sp.I) or z1.is_real is False or z2.is_real is False:
        raise NotImplementedError(f"fluctuation of Tr G at complex spectral parameters ({z1}, {z2})")
    if sp.simplify(z1 - z2) == 0:
        return schwarzian(engine, core, z1) / 3
    k1, _ = _F(engine, core, z1)
    k2, _ = _F(engine, core, z2)
    S = core.data.Sigma
    m = core.m
    d = S.shape[0]
    R1 = (S + k1 * Identity(d)).inverse()
    R2 = (S + k2 * Identity(d)).inverse()
    U = {j: Tr(S ** j * R1 ** 2 * R2 ** 2) for j in (2, 3, 4)}
    g1, g2 = Tr(S ** 2 * R1 ** 2) / m, Tr(S ** 2 * R2 ** 2) / m
    g12 = Tr(S ** 2 * R1 * R2) / m
    num = U[2] / m - (U[4] * U[2] - U[3] ** 2) / m ** 2
    return 2 * num / ((1 - g1) * (1 - g2) * (1 - g12) ** 2)


def trace_resolvent_cov_mathmd(engine, core, z1, z2):
    """The docs/math.md form ``2[κ'₁κ'₂/(κ₁−κ₂)² − 1/(z₁−z₂)²]`` (for tests: equal
    to :func:`trace_resolvent_cov` at ``z₁ ≠ z₂``, cancels badly as ``z₂ → z₁``)."""
    k1, d1, _, _ = kappa_derivatives(engine, core, z1)
    k2, d2, _, _ = kappa_derivatives(engine, core, z2)
    return 2 * (d1 * d2 / (k1 - k2) ** 2 - 1 / (sp.sympify(z1) - z2) ** 2)
