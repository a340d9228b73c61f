"""SymPy matrix expression → sum of ``coeff × word``.

Distributes products over sums and transposes over products, and recognises
each random inverse as a resolvent of a sample-covariance core:
``(c·XᵀX + z·I)⁻¹ = (1/(c m)) (Σ̂ + z/(c m))⁻¹``, also for
``XXᵀ`` (Gram side), feature chains ``F_Lᵀ⋯F₁ᵀXᵀXF₁⋯F_L`` and
``sr.sample_covariance``; ``matrix_function(f, c·core + a·I)`` becomes the
analytic letter ``g(core)``, ``g(x) = f(cx + a)``. Anything else random under
an inverse is refused with ``NotImplementedError`` naming it.
"""
from __future__ import annotations

import itertools

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, Transpose, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..objects.matrices import (GaussianData, RandomFeatures, SampleCovariance,
                                random_symbols)
from ..objects.ops import MatrixFunction
from .letters import (An, Bare, Core, Det, Fn, GRes, PooledCore, Rand, Res, is_identity,
                      transpose_word)


def is_random(M):
    return bool(random_symbols(M))


def expand(M, tag=None):
    """List of ``(coeff, word)`` with ``M = Σ coeff · Π word``; ``tag`` marks
    spectral-function letters with the user's product factor they came from."""
    if not isinstance(M, MatrixExpr):
        raise TypeError(f"expected a matrix expression, got {M!r}")
    if isinstance(M, ZeroMatrix):
        return []
    if not is_random(M):
        return _expand_det(M)
    if isinstance(M, MatAdd):
        noisy = _feature_noise_letter(M)
        if noisy is not None:
            return noisy
        return [t for a in M.args for t in expand(a, tag)]
    if isinstance(M, MatMul):
        coeff, mats = M.as_coeff_matrices()
        out = []
        for combo in itertools.product(*[expand(a, tag) for a in mats]):
            c = coeff
            w = ()
            for ci, wi in combo:
                c *= ci
                w += wi
            out.append((c, _drop_identities(w)))
        return out
    if isinstance(M, Transpose):
        return [(c, transpose_word(w)) for c, w in expand(M.arg, tag)]
    if isinstance(M, Inverse):  # Inverse is a MatPow: test it first
        return _resolvent(M)
    if isinstance(M, MatPow):
        base, s = M.args
        if s.is_Integer and s > 0:
            return expand(MatMul(*([base] * int(s))), tag)
        if s.is_Integer and s < 0:  # SymPy writes G·G as (Σ̂+λ)^(-2)
            return expand(MatMul(*([Inverse(base)] * int(-s))), tag) if s != -1 else _resolvent(Inverse(base))
        return _power(M, base, s, tag)
    if isinstance(M, MatrixFunction):
        return _analytic(M, tag)
    if isinstance(M, SampleCovariance):
        return [(sp.S.One, (Bare(Core(M.data, "data", (), M.ddof)),))]
    if getattr(M, "is_random", False):
        return [(sp.S.One, (Rand(M),))]
    raise NotImplementedError(f"cannot rewrite the sub-expression {M} ({type(M).__name__})")


def _expand_det(M):
    """Deterministic part: keep as one letter, but split sums and scalars so
    identities and zero terms simplify."""
    if isinstance(M, MatAdd):
        return [t for a in M.args for t in _expand_det(a)]
    if isinstance(M, MatMul):
        coeff, mats = M.as_coeff_matrices()
        if not mats:
            return [(coeff, ())]
        inner = MatMul(*mats) if len(mats) > 1 else mats[0]
        return [(coeff, (Det(inner),))]
    return [(sp.S.One, (Det(M),))]


def _drop_identities(word):
    """Identity letters vanish in a product; keep one for an otherwise
    empty word so the word still knows its size."""
    kept = tuple(l for l in word if not is_identity(l))
    return kept if kept else word[:1]


def _resolvent(M):
    A = M.arg
    terms = expand(A)
    z = sp.S.Zero
    rest = []
    for c, w in terms:
        if len(w) == 1 and is_identity(w[0]):
            z += c
        else:
            rest.append((c, w))
    if z.free_symbols and any(getattr(s, "is_random", False) for s in z.free_symbols):
        raise NotImplementedError(f"random shift in {M}")
    det = [(c, w) for c, w in rest if not any(isinstance(l, (Rand, Bare, Res, Fn, An, GRes)) for l in w)]
    rnd = [(c, w) for c, w in rest if (c, w) not in det]
    if not rnd:
        raise NotImplementedError(f"cannot derive the inverse {M}: no random part")
    if len(rnd) > 1 or det:
        return _general_resolvent(M, rnd, det, z)
    c, w = rest[0]
    core, scale = _match_core(w, A)
    if z == 0:
        raise NotImplementedError(
            f"ridgeless inverse {M}: use a positive ridge and take the limit")
    if z.free_symbols and any(getattr(s, "is_random", False) for s in z.free_symbols):
        raise NotImplementedError(f"random shift in {M}")
    scale = c * scale
    return [(1 / scale, (Res(core, sp.simplify(z / scale)),))]


def _general_resolvent(M, rnd, det, z):
    """``(Σ_k c_k Σ̂_k + B + z)⁻¹`` as one :class:`GRes` letter (docs/math.md, the
    general one-point law): independent data-side cores with weights
    ``c_k`` (a repeated core's weights add up), a deterministic shift ``B``
    (the non-identity deterministic terms) and the scalar ``z``."""
    proj = _projected_pooled(M, rnd, det, z)
    if proj is not None:
        return proj
    weights = {}
    for c, w in rnd:
        core, scale = _match_core(w, M.arg)
        if core.side != "data" or core.chain:
            raise NotImplementedError(
                f"cannot derive the inverse {M}: the general law covers sums of data-side sample "
                f"covariances XᵀX/n and a deterministic shift; {core} is "
                + ("a Gram-side core" if core.side != "data" else "a feature-space core"))
        weights[core] = weights.get(core, sp.S.Zero) + c * scale
    srcs = {}
    for core in weights:
        for u in core.sources:
            if u in srcs:
                raise NotImplementedError(
                    f"cannot derive the inverse {M}: {core} and {srcs[u]} share the same data "
                    "(the blocks of the general law must be independent)")
            srcs[u] = core
    for core, c in weights.items():
        c = sp.simplify(c)
        weights[core] = c
        if c.is_zero or c.is_positive is False:
            raise ValueError(f"the weight of the sample covariance {core} in {M} must be > 0, got {c}")
    B = None
    if det:
        B = sp.MatAdd(*[c * (sp.MatMul(*[l.expr for l in w]) if len(w) > 1 else w[0].expr) for c, w in det])
        if B.shape[0] != B.shape[1]:
            raise ValueError(f"the deterministic shift {B} in {M} must be square")
    if z == 0 and B is None:
        raise NotImplementedError(f"ridgeless inverse {M}: use a positive ridge and take the limit")
    blocks = tuple(sorted(weights.items(), key=lambda t: (t[0].data.name, t[0].data.uid, str(t[0].ddof))))
    return [(sp.S.One, (GRes(blocks, B, sp.simplify(z)),))]


def _projected_pooled(M, rnd, det, z):
    """Random projections of pooled data: ``(Σ_k c_k FᵀX_kᵀX_kF/n_k + z)⁻¹``
    (every random term a feature-space core of one layer ``F``) is one
    resolvent of the core ``Fᵀ(Σ_k c_kΣ̂_k)F`` of the law ``projected_pooled``
    (``laws/projected_pooled.py``); ``None`` when no term is a feature core."""
    if not any(isinstance(l, Rand) and isinstance(l.sym, RandomFeatures) for _, w in rnd for l in w):
        return None
    from ..laws.projected_pooled import projected_pooled_resolvent
    terms = []
    for c, w in rnd:
        core, scale = _match_core(w, M.arg)
        terms.append((core, c * scale))
    return projected_pooled_resolvent(M, terms, det, z)


def _power(M, base, s, tag):
    """``(c·core + a)^s = c^s (core + a/c)^s`` for real non-integer ``s``; a
    pooled/shifted base ``Σ_k c_k Σ̂_k + B + a`` (``a ≥ 0``) becomes
    ``Fn(PooledCore, ((a, s),))``, whose Stieltjes integral runs over the
    general law's resolvents (:func:`_pooled_core`)."""
    if s.is_real is False or s.free_symbols:
        raise NotImplementedError(f"power with a non-numeric or complex exponent: {M}")
    a, rest = sp.S.Zero, []
    for c, w in expand(base):
        if len(w) == 1 and is_identity(w[0]):
            a += c
        else:
            rest.append((c, w))
    if _is_pooled(rest):
        core = _pooled_core(M, base, rest)
        if a.is_negative or (a.is_real is False):
            raise NotImplementedError(f"fractional power {M}: the shift {a} of the pooled/shifted sample "
                                      "covariance must be real and non-negative")
        return [(sp.S.One, (Fn(core, ((sp.simplify(a), s),), tag),))]
    if len(rest) != 1:
        raise NotImplementedError(f"fractional power of {base}: not a shifted sample covariance")
    c, w = rest[0]
    core, scale = _match_core(w, base)
    c = c * scale
    if c.is_positive is False or a.is_negative:
        raise NotImplementedError(f"fractional power {M}: base must be a positive multiple of a sample covariance plus a non-negative shift")
    return [(c ** s, (Fn(core, ((sp.simplify(a / c), s),), tag),))]


def _analytic(M, tag):
    """``f(c·core + a) = g(core)`` with ``g(x) = f(cx + a)``; an explicit
    contour is carried over to the core's eigenvalue. A pooled/shifted
    argument ``Σ_k c_k Σ̂_k + B + a`` gives ``g(x) = f(x + a)`` of the
    :class:`~.letters.PooledCore` ``Σ_k c_k Σ̂_k + B`` (Cauchy integral over
    the general law's resolvents, ``equivalence.spectral_fn``)."""
    a, rest = sp.S.Zero, []
    for c, w in expand(M.arg):
        if len(w) == 1 and is_identity(w[0]):
            a += c
        else:
            rest.append((c, w))
    if _is_pooled(rest):
        if random_symbols(a):
            raise NotImplementedError(f"random shift in the matrix function {M}")
        core = _pooled_core(M, M.arg, rest)
        x = M.function.variables[0]
        g = sp.Lambda(x, M.function.expr.xreplace({x: x + a}))
        if not g.expr.has(x):
            return [(g.expr, (Det(Identity(core.dim)),))]
        contour = None if M.contour is None else (M.contour[0] - a, M.contour[1])
        return [(sp.S.One, (An(core, g, tag, contour),))]
    if len(rest) != 1:
        raise NotImplementedError(f"matrix function of {M.arg}: not a shifted, scaled sample covariance")
    c, w = rest[0]
    core, scale = _match_core(w, M.arg)
    c = c * scale
    if random_symbols(a) or random_symbols(c):
        raise NotImplementedError(f"random shift or scale in the matrix function {M}")
    if c.is_real is False or c == 0:
        raise NotImplementedError(f"matrix function {M}: the sample covariance must enter with a real, "
                                  "non-zero coefficient")
    x = M.function.variables[0]
    g = sp.Lambda(x, M.function.expr.xreplace({x: c * x + a}))
    if not g.expr.has(x):       # a constant function: a multiple of the identity
        return [(g.expr, (Det(Identity(core.dim)),))]
    contour = None
    if M.contour is not None:
        center, radius = M.contour
        contour = ((center - a) / c, radius / sp.Abs(c))
    return [(sp.S.One, (An(core, g, tag, contour),))]


def _is_pooled(rest):
    """The non-identity terms ``rest`` of a spectral function's argument form
    a pooled/shifted core: random terms with a deterministic shift, or
    several random terms (one random term alone is a plain core)."""
    rnd = [1 for _, w in rest if _has_random_letter(w)]
    return bool(rnd) and len(rest) > 1


def _has_random_letter(w):
    return any(isinstance(l, (Rand, Bare, Res, Fn, An, GRes)) for l in w)


def _pooled_core(M, A, rest):
    """``Σ_k c_k Σ̂_k + B`` (the terms ``rest`` of ``A``, identity part
    excluded) as a :class:`~.letters.PooledCore` — blocks, weights and shift
    recognised exactly as for a resolvent (:func:`_general_resolvent`:
    independent data-side cores, weights ``c_k > 0``, ``B`` the
    deterministic terms): a spectral function ``f(M)`` is then an integral
    over the resolvents ``(M + z)⁻¹`` of the general law
    (``equivalence.spectral_fn``)."""
    rnd = [(c, w) for c, w in rest if _has_random_letter(w)]
    det = [(c, w) for c, w in rest if not _has_random_letter(w)]
    try:
        (_, (letter,)), = _general_resolvent(Inverse(A), rnd, det, sp.S.One)
        if not isinstance(letter, GRes):
            raise NotImplementedError(f"spectral function {M} of randomly projected pooled data "
                                      "(feature-space blocks FᵀX_kᵀX_kF): not derived")
    except ValueError as e:
        if "must be > 0" in str(e):
            raise NotImplementedError(f"spectral function {M}: {e} (the general one-point law "
                                      "needs positive weights)") from None
        raise
    for core, _ in letter.blocks:
        if core.ddof not in (None, 0):
            raise NotImplementedError(f"spectral function {M}: a centred sample covariance ({core}) inside "
                                      "a pooled/shifted core is not derived")
    return PooledCore(letter.blocks, letter.B)


def _match_core(w, A):
    """Recognise a sample-covariance core in the word ``w`` (inside ``A``):
    returns ``(core, scale)`` with ``word = scale · core``."""
    if len(w) == 1 and isinstance(w[0], Bare):
        return w[0].core, sp.S.One
    noisy = _noisy_core(w, A)
    if noisy is not None:
        return noisy
    # peel feature layers: Fᵀ … F
    chain = []
    i, j = 0, len(w) - 1
    while j - i >= 2 and isinstance(w[i], Rand) and isinstance(w[j], Rand) \
            and w[i].sym == w[j].sym and isinstance(w[i].sym, RandomFeatures) and w[i].t and not w[j].t:
        chain.append(w[i].sym)
        i, j = i + 1, j - 1
    inner = w[i:j + 1]
    chain = tuple(reversed(chain))  # innermost first: F₁ … F_L
    if len(inner) == 1 and isinstance(inner[0], Bare) and inner[0].core.side == "data" \
            and not inner[0].core.chain:
        base = inner[0].core
        return Core(base.data, "data", chain, base.ddof), sp.S.One
    if len(inner) == 2 and all(isinstance(l, Rand) for l in inner) \
            and inner[0].sym == inner[1].sym and isinstance(inner[0].sym, GaussianData):
        X = inner[0].sym
        if X.has_mean:
            raise NotImplementedError(
                f"{X.name} has a nonzero mean, so {A} is not a centred sample covariance; "
                f"use sr.sample_covariance({X.name})")
        if inner[0].t and not inner[1].t:
            return Core(X, "data", chain), X.n
        if not inner[0].t and inner[1].t and not chain:
            return Core(X, "gram", ()), X.n
    # Gram side of a feature chain: X F₁⋯F_L F_Lᵀ⋯F₁ᵀ Xᵀ (averaged by nested conditioning,
    # equivalence/features.py)
    L = (len(w) - 2) // 2
    if L >= 1 and len(w) == 2 * L + 2 and all(isinstance(l, Rand) for l in w) \
            and isinstance(w[0].sym, GaussianData) and w[-1] == Rand(w[0].sym, True) and not w[0].t \
            and all(isinstance(l.sym, RandomFeatures) and not l.t for l in w[1:L + 1]) \
            and tuple(w[L + 1:-1]) == tuple(Rand(l.sym, True) for l in reversed(w[1:L + 1])) \
            and not w[0].sym.has_mean:
        return Core(w[0].sym, "gram", tuple(l.sym for l in w[1:L + 1])), w[0].sym.n
    raise NotImplementedError(
        f"cannot recognise a sample-covariance core in {A}; supported: XᵀX/n, XXᵀ/n, "
        "Fᵀ⋯XᵀX⋯F/n (feature chains) and sr.sample_covariance(X)" + _feature_noise_hint(A))


def _feature_noise_letter(M):
    """``XF + c·Ξ`` (``F`` random features, ``Ξ`` iid ``N(0, 1)`` data with
    ``p`` columns; or its transpose ``FᵀXᵀ + c·Ξᵀ``) is one random letter: the
    noisy features ``Φ`` with ``τ = c²`` (``laws/feature_noise.py``), so that
    ``ΦᵀΦ/n`` is recognised as their core and ``Φ`` elsewhere (``Φᵀy``)
    stays whole for nested conditioning. ``None`` for any other sum."""
    from ..laws.feature_noise import feature_noise_of
    got = feature_noise_of(M)
    if got is None:
        return None
    phi, t = got
    return [(sp.S.One, (Rand(phi, t),))]


def _noisy_core(w, A):
    """``ΦᵀΦ`` of noisy features ``Φ = XF + √τΞ`` → ``(NoisyCore, n)``: the core
    ``ΦᵀΦ/n`` whose rows are ``N(0, FᵀΣF + τI)`` given ``F``. The Gram side
    ``ΦΦᵀ`` and further feature layers around ``ΦᵀΦ`` are refused by name."""
    from ..laws.feature_noise import NoisyCore, NoisyFeatures
    if not any(isinstance(l, Rand) and isinstance(l.sym, NoisyFeatures) for l in w):
        return None
    if len(w) == 2 and all(isinstance(l, Rand) for l in w) and w[0].sym == w[1].sym:
        phi = w[0].sym
        if w[0].t and not w[1].t:
            return NoisyCore(phi.X, "data", (phi.F,), noise=(phi.Xi, phi.c)), phi.X.n
        raise NotImplementedError(
            f"additive feature noise: the Gram form {A} of the noisy features {phi.name} is not derived "
            "(only the feature-space core ΦᵀΦ/n is)")
    raise NotImplementedError(
        f"additive feature noise: cannot recognise a sample-covariance core in {A}; with noisy features "
        "Φ = XF + √τΞ only ΦᵀΦ/n itself is derived (noise inside deeper feature chains or mixed with "
        "other random terms is not)")


def _feature_noise_hint(A):
    """Why a sum with random features and two data matrices is refused: the
    noisy features ``Φ = XF + √τΞ`` are derived only written as that sum
    (one feature layer ``F``, ``Ξ`` iid ``N(0, 1)`` with ``p`` columns,
    :func:`_feature_noise_letter`); deeper chains ``XF₁F₂ + √τΞ`` or other
    mixtures are not (the law ``feature_noise`` covers one layer)."""
    syms = random_symbols(A)
    feats = [x for x in syms if isinstance(x, RandomFeatures)]
    data = [x for x in syms if isinstance(x, GaussianData)]
    if not feats or len(data) < 2:
        return ""
    return ("; additive feature noise (XF + √τ·Ξ, " + ", ".join(sorted(x.name for x in data)) +
            ") is derived only as Φ = XF + √τ·Ξ with one feature layer F (d×p) and Ξ iid N(0, 1) "
            "(n×p); noise inside deeper feature chains or mixed otherwise is not derived")


# ----------------------------------------------------------------- stacking
def unstack(M):
    """``M`` with every ``sr.vstack`` multiplied out exactly:
    ``[A₁; A₂]ᵀ[B₁; B₂] = A₁ᵀB₁ + A₂ᵀB₂``, ``[A₁; A₂]P = [A₁P; A₂P]``,
    sums block by block. The result must be free of stacks (a stacked
    matrix left over, e.g. ``[X₁; X₂][X₁; X₂]ᵀ``, is refused)."""
    from ..objects.matrices import Stacked
    if not M.has(Stacked):
        return M
    kind, val = _unstack(M)
    if kind != "plain":
        raise NotImplementedError(f"cannot derive {M}: a stacked (vstack) matrix is left over after "
                                  "multiplying out; only products [A₁;A₂]ᵀ[B₁;B₂] reduce to sums")
    return val


def _unstack(M):
    from sympy import MatrixExpr
    from ..objects.matrices import Stacked
    if not isinstance(M, MatrixExpr) or not M.has(Stacked):
        return "plain", M
    if isinstance(M, Stacked):
        out = []
        for b in M.args:
            k, v = _unstack(b)
            if k != "plain":
                raise NotImplementedError(f"nested vstack in {M}")
            out.append(v)
        return "col", out
    if isinstance(M, Transpose):
        k, v = _unstack(M.arg)
        if k == "plain":
            return "plain", v.T
        return ("row" if k == "col" else "col"), [b.T for b in v]
    if isinstance(M, MatMul):
        coeff, mats = M.as_coeff_matrices()
        acc = None
        for f in mats:
            r = _unstack(f)
            acc = r if acc is None else _stack_mul(acc, r, M)
        k, v = acc
        if k == "plain":
            return k, coeff * v
        return k, [coeff * b for b in v]
    if isinstance(M, MatAdd):
        parts = [_unstack(a) for a in M.args]
        kinds = {k for k, _ in parts}
        if kinds == {"plain"}:
            return "plain", MatAdd(*[v for _, v in parts]).doit()
        if len(kinds) == 1 and len({len(v) for _, v in parts}) == 1:
            k = kinds.pop()
            n = len(parts[0][1])
            return k, [MatAdd(*[v[i] for _, v in parts]) for i in range(n)]
        raise NotImplementedError(f"cannot derive {M}: a sum of stacked and unstacked matrices")
    args = []
    for a in M.args:
        k, v = _unstack(a) if isinstance(a, MatrixExpr) else ("plain", a)
        if k != "plain":
            raise NotImplementedError(f"cannot derive {M}: a stacked (vstack) matrix inside {type(M).__name__}")
        args.append(v)
    return "plain", M.func(*args)


def _stack_mul(a, b, M):
    (ka, va), (kb, vb) = a, b
    if ka == "plain" and kb == "plain":
        return "plain", MatMul(va, vb)
    if ka == "row" and kb == "col":
        if len(va) != len(vb):
            raise ValueError(f"vstack blocks do not match in {M}: {len(va)} vs {len(vb)} blocks")
        for x, y in zip(va, vb):
            if sp.simplify(x.shape[1] - y.shape[0]) != 0:
                raise ValueError(f"vstack blocks of incompatible sizes in {M}: {x} ({x.shape[1]} columns) "
                                 f"times {y} ({y.shape[0]} rows)")
        return "plain", MatAdd(*[MatMul(x, y) for x, y in zip(va, vb)])
    if ka == "plain" and kb == "row":
        return "row", [MatMul(va, y) for y in vb]
    if ka == "col" and kb == "plain":
        return "col", [MatMul(x, vb) for x in va]
    raise NotImplementedError(
        f"cannot derive {M}: the product of stacked matrices ({ka} × {kb}) does not reduce to a sum "
        "(supported: [A₁;A₂]ᵀ[B₁;B₂], [A₁;A₂]P, P[A₁;A₂]ᵀ)")
