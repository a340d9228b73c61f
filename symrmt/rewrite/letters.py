"""Letters: the non-commuting factors that words (traces) are made of.

An expression is rewritten into sums of ``coeff × Π Tr[word]``. A word is a
tuple of letters read cyclically (a trace), so quadratic forms become traces
with a rank-one deterministic letter ``v uᵀ``. Letters are immutable and
hashable; a word's meaning never depends on anything but its letters.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import Identity

from ..objects.matrices import GaussianData, SampleCovariance


@dataclass(frozen=True)
class Core:
    """A sample-covariance-type random matrix.

    side ``"data"``: ``𝔉ᵀ Σ̂ 𝔉`` with ``Σ̂ = XᵀX/m`` (``d×d``; ``p_L×p_L``
    with feature layers ``chain = (F₁, …, F_L)``, ``𝔉 = F₁⋯F_L``);
    side ``"gram"``: ``XXᵀ/m`` (``n×n``). ``ddof`` is ``None`` for a raw
    ``XᵀX/n``, else that of ``sr.sample_covariance``; ``ddof=1`` is a white
    Wishart with ``n−1`` samples normalised by ``n−1``.
    """

    data: GaussianData
    side: str = "data"
    chain: tuple = ()
    ddof: object = None

    @property
    def m(self):
        """Number of effective samples (= the normalisation)."""
        return self.data.n - 1 if self.ddof == 1 else self.data.n

    @property
    def dim(self):
        if self.side == "gram":
            return self.m
        return self.chain[-1].shape[1] if self.chain else self.data.d

    @property
    def sources(self):
        return frozenset([self.data.uid] + [F.uid for F in self.chain])

    def __str__(self):
        X = self.data.name
        base = f"{X}ᵀ{X}/{self.m}" if self.side == "data" else f"{X}{X}ᵀ/{self.m}"
        for F in self.chain:
            base = f"{F.name}ᵀ({base}){F.name}"
        return base

    def matrix(self):
        """The core as a SymPy matrix expression (for messages, Monte Carlo)."""
        X = self.data
        if self.side == "gram" and self.chain:     # X 𝔉 𝔉ᵀ Xᵀ / n
            A = X
            for F in self.chain:
                A = A * F
            return A * A.T / X.n
        if self.ddof is not None:
            S = SampleCovariance(X, self.ddof)
        else:
            S = X.T * X / X.n if self.side == "data" else X * X.T / X.n
        for F in self.chain:
            S = F.T * S * F
        return S


@dataclass(frozen=True)
class Det:
    """A deterministic matrix expression."""
    expr: sp.Basic

    @property
    def shape(self):
        return tuple(self.expr.shape)

    def T(self):
        return Det(self.expr.T)

    def __str__(self):
        return sp.sstr(self.expr)


@dataclass(frozen=True)
class Rand:
    """A random matrix/vector symbol (data ``X``, noise ``ε``, features
    ``F``, sample mean ``μ̂``), possibly transposed."""
    sym: sp.Basic
    t: bool = False

    @property
    def shape(self):
        r, c = self.sym.shape
        return (c, r) if self.t else (r, c)

    def T(self):
        return Rand(self.sym, not self.t)

    def __str__(self):
        return self.sym.name + ("ᵀ" if self.t else "")


@dataclass(frozen=True)
class Res:
    """The resolvent ``(core + z)⁻¹`` (symmetric)."""
    core: Core
    z: sp.Expr

    @property
    def shape(self):
        return (self.core.dim, self.core.dim)

    def T(self):
        return self

    def __str__(self):
        return f"G[{self.core}]({sp.sstr(self.z)})"


@dataclass(frozen=True)
class GRes:
    """The general resolvent ``(Σ_k c_k Σ̂_k + B + z)⁻¹`` (docs/math.md, "The
    general one-point law"): ``blocks`` a sorted tuple of ``(Core, c_k)``
    with independent data-side cores ``Σ̂_k = X_kᵀX_k/n_k`` and weights
    ``c_k``; ``B`` a deterministic ``d×d`` shift (``None`` for none); ``z``
    a scalar. A single core with ``B = None`` is a :class:`Res` instead."""
    blocks: tuple
    B: object
    z: sp.Expr

    @property
    def shape(self):
        d = self.blocks[0][0].dim
        return (d, d)

    @property
    def cores(self):
        return tuple(c for c, _ in self.blocks)

    @property
    def sources(self):
        return _block_sources(self.blocks)

    def T(self):
        return self if self.B is None else GRes(self.blocks, self.B.T, self.z)

    def matrix(self):
        d = self.shape[0]
        M = sp.MatAdd(*[c * core.matrix() for core, c in self.blocks])
        if self.B is not None:
            M = M + self.B
        return (M + self.z * Identity(d)).inverse()

    def __str__(self):
        parts = " + ".join(f"{sp.sstr(c)}·{core}" for core, c in self.blocks)
        if self.B is not None:
            parts += f" + {sp.sstr(self.B)}"
        return f"G[{parts}]({sp.sstr(self.z)})"


@dataclass(frozen=True)
class PooledCore:
    """The pooled/shifted core ``M = Σ_k c_k Σ̂_k + B`` (``Σ̂_k = X_kᵀX_k/n_k``
    independent data-side cores, weights ``c_k > 0``, ``B`` a deterministic
    symmetric PSD shift or ``None``) as the argument of a spectral function
    (:class:`Fn`, :class:`An`). Its resolvent ``(M + z)⁻¹`` is the
    :class:`GRes` letter ``(blocks, B, z)``, averaged by the general one-point
    law (docs/math.md); it is never itself averaged. ``blocks`` as in
    :class:`GRes`. Quacks like :class:`Core` where spectral functions need it
    (``dim``, ``sources``, ``chain = ()``, ``side = "data"``, ``matrix()``)."""
    blocks: tuple
    B: object = None

    pooled = True           # class attribute: marks the pooled core (canonical.integer_letters)
    side = "data"
    chain = ()
    ddof = None

    @property
    def dim(self):
        return self.blocks[0][0].dim

    @property
    def data(self):
        raise NotImplementedError(
            f"the pooled/shifted core {self} has no single data matrix (X) "
            "(a sample mean or a sample-side rule together with a spectral function of it is not derived)")

    @property
    def sources(self):
        return _block_sources(self.blocks)

    def resolvent(self, z):
        """``(M + z)⁻¹`` as the :class:`GRes` letter."""
        return GRes(self.blocks, self.B, z)

    def bare_terms(self):
        """``M`` itself as ``[(coeff, letters)]``: ``Σ_k c_k Σ̂_k + B``."""
        out = [(c, (Bare(core),)) for core, c in self.blocks]
        if self.B is not None:
            out.append((sp.S.One, (Det(self.B),)))
        return out

    def integer_letters(self, factors):
        """``Π (M + a)^k`` (integer ``k``) as words: ``(M + a)⁻¹`` the
        :class:`GRes` letter, positive powers multiplied out binomially with
        ``M = Σ_k c_k Σ̂_k + B`` (:meth:`bare_terms`)."""
        out = [(sp.S.One, ())]
        for a, k in factors:
            k = int(k)
            if k < 0:
                out = [(c, w + (self.resolvent(a),) * (-k)) for c, w in out]
                continue
            for j in range(k):                       # (M + a)^k: k factors of M + a
                terms = list(self.bare_terms())
                if a != 0:
                    terms.append((a, ()))
                out = [(c * c2, w + w2) for c, w in out for c2, w2 in terms]
        return [(c, w if w else (Det(Identity(self.dim)),)) for c, w in out]

    def edge(self):
        """A bound ``x₊`` on the spectrum of ``M`` (which lies in ``[0, x₊]``:
        all terms are PSD), also in the limit that defines the deterministic
        equivalent. Provable bound used:
        ``x₊ = Σ_k c_k ‖Σ_k‖‖K_k‖(1+√(d/n_k))² + ‖B‖``, from the triangle
        inequality ``‖Σ_k c_k Σ̂_k + B‖ ≤ Σ_k c_k ‖Σ̂_k‖ + ‖B‖``,
        ``‖Σ̂_k‖ ≤ ‖Σ_k‖‖K_k‖‖Z_kᵀZ_k/n_k‖`` and ``‖ZᵀZ/n‖ → (1+√(d/n))²``
        almost surely (Bai–Yin). The equivalent at finite ``d`` is the limit of
        the model replicated ``r`` times (``Σ_k ⊗ I_r``, ``K_k ⊗ I_r``,
        ``n_k r``, ``d r``), which leaves the bound unchanged, so its measure
        is supported in ``[0, x₊]`` too. (Cruder than the one-core ``x₊`` of
        :meth:`An.circle`, but compact: the contour's expression is repeated
        in every node of the derived integrand.)"""
        return self.edge_bound()

    def edge_bound(self):
        """``Σ_k c_k ‖Σ_k‖‖K_k‖(1+√(d/n_k))² + ‖B‖`` (:meth:`edge`; a given
        contour must provably enclose ``[0, it]``, as for one core)."""
        from ..objects.functionals import Norm
        tot = sp.S.Zero
        for core, c in self.blocks:
            X = core.data
            tot += c * Norm(X.Sigma) * Norm(X.K) * (1 + sp.sqrt(X.d / core.m)) ** 2
        return tot + self._norm_B()

    def _norm_B(self):
        """``‖B‖`` bounded by ``Σ_i c_i ‖B_i‖`` for ``B = Σ_i c_i B_i`` with
        ``c_i > 0`` and ``B_i`` bound matrices (a single bound shift is PSD by
        the law's check; several terms must each be declared PSD,
        ``sr.Covariance``); anything else is refused by name."""
        from sympy import MatAdd, MatMul, MatrixSymbol
        from ..objects.functionals import Norm
        if self.B is None:
            return sp.S.Zero
        terms = MatAdd.make_args(self.B) if isinstance(self.B, MatAdd) else (self.B,)
        tot = sp.S.Zero
        for t in terms:
            c, mats = (t.as_coeff_matrices() if isinstance(t, MatMul) else (sp.S.One, [t]))
            ok = len(mats) == 1 and isinstance(mats[0], MatrixSymbol) and sp.sympify(c).is_positive
            if ok and len(terms) > 1:
                from ..objects.matrices import Covariance
                ok = isinstance(mats[0], Covariance)
            if not ok:
                raise NotImplementedError(
                    f"spectral function of {self}: cannot bound the norm of the shift {sp.sstr(self.B)} "
                    "(needed for a contour around the spectrum); give B as one bound matrix, or as a "
                    "positive combination of sr.Covariance matrices")
            tot += c * Norm(mats[0])
        return tot

    def matrix(self):
        M = sp.MatAdd(*[c * core.matrix() for core, c in self.blocks])
        return M + self.B if self.B is not None else M

    def __str__(self):
        parts = " + ".join(f"{sp.sstr(c)}·{core}" for core, c in self.blocks)
        if self.B is not None:
            parts += f" + {sp.sstr(self.B)}"
        return parts


def core_edge(core):
    """``x₊`` of one data/Gram core (see :meth:`An.circle`)."""
    from ..objects.functionals import Norm, Tr
    X = core.data
    m = core.m
    if isinstance(X.K, Identity):
        S = X.Sigma
        u = Norm(S) + sp.sqrt(Tr(S * S) / m)
        return u * (1 + Tr(S * (u * Identity(S.shape[0]) - S).inverse()) / m)
    return Norm(X.Sigma) * Norm(X.K) * (1 + sp.sqrt(X.d / m)) ** 2


def resolvent_letter(core, z):
    """``(core + z)⁻¹``: :class:`Res` of a core, :class:`GRes` of a :class:`PooledCore`."""
    if getattr(core, "pooled", False):
        return core.resolvent(z)
    return Res(core, z)


@dataclass(frozen=True)
class Bare:
    """The core matrix itself, outside any resolvent (symmetric)."""
    core: Core

    @property
    def shape(self):
        return (self.core.dim, self.core.dim)

    def T(self):
        return self

    def __str__(self):
        return f"[{self.core}]"


@dataclass(frozen=True)
class Fn:
    """A spectral function ``f(core) = Π_i (core + a_i)^{s_i}`` with at
    least one non-integer ``s_i`` (symmetric). ``factors`` is a sorted tuple
    of ``(a_i, s_i)``. ``tag`` records which factor of the user's product it
    came from: in variance mode functions from different factors are not
    merged, so a product of two statistics stays a two-point quantity."""
    core: Core
    factors: tuple
    tag: object = None

    @property
    def shape(self):
        return (self.core.dim, self.core.dim)

    def T(self):
        return self

    def __str__(self):
        return "f[" + str(self.core) + "](" + ",".join(f"{sp.sstr(a)}^{sp.sstr(s)}" for a, s in self.factors) + ")"


@dataclass(frozen=True)
class An:
    """An analytic function ``g(core)`` (symmetric): ``g`` a SymPy ``Lambda``
    of the core's eigenvalue, evaluated by the engine as a Cauchy integral
    over resolvents on a circle around the core's spectrum. ``contour`` is
    ``None`` (the default circle) or ``(center, radius)`` in the core's
    eigenvalue; ``tag`` as for :class:`Fn`."""
    core: Core
    g: sp.Lambda
    tag: object = None
    contour: object = None

    @property
    def shape(self):
        return (self.core.dim, self.core.dim)

    def T(self):
        return self

    def circle(self):
        """``(center, radius)`` of the contour in the core's eigenvalue: the
        given one, or by default ``(x₊/2, 0.6x₊)`` around ``[0, x₊]`` (it
        crosses the real axis at ``−0.1x₊`` and ``1.1x₊``), ``x₊`` an upper
        bound on the edge of the limiting spectrum (data or Gram side: the
        same non-zero eigenvalues). iid rows: the edge is
        ``min_{u>‖Σ‖} u(1 + Tr[Σ(u−Σ)⁻¹]/m)`` (``κ = −u`` on the real branch
        beyond the spectrum, where ``λ(κ) = κ(1 − df₁(κ)/m)`` peaks at
        ``−x₊``), so any ``u > ‖Σ‖`` bounds it; ``u = ‖Σ‖ + √(Tr Σ²/m)`` gives
        the exact edge ``(1+√(d/m))²s`` for ``Σ = sI`` and stays close to it
        for decaying spectra, where ``‖Σ‖(1+√(d/m))²`` is several times too
        large (and ``(1 − ηz)^t`` on the circle grows like its ratio to the
        edge, to the power ``t``). With ``K``: ``‖Σ‖‖K‖(1+√(d/m))²``.
        A pooled/shifted core (:class:`PooledCore`): :meth:`PooledCore.edge`."""
        if self.contour is not None:
            return self.contour
        if self.core.chain:
            raise NotImplementedError(f"matrix functions of feature-space cores ({self.core}) are not implemented")
        edge = self.core.edge() if getattr(self.core, "pooled", False) else core_edge(self.core)
        return edge / 2, sp.Rational(3, 5) * edge

    def __str__(self):
        x = self.g.variables[0]
        return "g[" + str(self.core) + "](" + sp.sstr(self.g.expr.xreplace({x: sp.Symbol("x")})) + ")"


def transpose_word(word):
    return tuple(l.T() for l in reversed(word))


def is_identity(letter):
    return isinstance(letter, Det) and isinstance(letter.expr, Identity)


def ident(k):
    return Det(Identity(k))


def word_str(word):
    return " ".join(str(l) for l in word) or "I"


def word_sources(word):
    """Independent random sources (uids) a word depends on."""
    out = set()
    for l in word:
        if isinstance(l, (Res, Bare, Fn, An)):
            out |= l.core.sources
        elif isinstance(l, GRes):
            out |= l.sources
        elif isinstance(l, Rand):
            out.add(l.sym.uid)
    return out


def word_matrix(word):
    """The word as a SymPy matrix expression (for messages)."""
    from sympy import MatMul
    mats = []
    for l in word:
        if isinstance(l, Det):
            mats.append(l.expr)
        elif isinstance(l, Rand):
            mats.append(l.sym.T if l.t else l.sym)
        elif isinstance(l, Bare):
            mats.append(l.core.matrix())
        elif isinstance(l, An):
            from ..objects.ops import MatrixFunction
            mats.append(MatrixFunction(l.g, l.core.matrix()))
        elif isinstance(l, Fn):
            from sympy import MatMul as MM, MatPow
            C = l.core.matrix()
            mats.append(MM(*[MatPow(C + a * Identity(l.core.dim), s_) for a, s_ in l.factors]))
        elif isinstance(l, GRes):
            mats.append(l.matrix())
        else:
            mats.append((l.core.matrix() + l.z * Identity(l.core.dim)).inverse())
    return MatMul(*mats) if len(mats) != 1 else mats[0]


def _block_sources(blocks):
    """The random sources of a pooled sum: the union over its blocks' cores."""
    return frozenset().union(*(c.sources for c, _ in blocks))
