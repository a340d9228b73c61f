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
        out = frozenset()
        for c, _ in self.blocks:
            out |= c.sources
        return out

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
        edge, to the power ``t``). With ``K``: ``‖Σ‖‖K‖(1+√(d/m))²``."""
        if self.contour is not None:
            return self.contour
        if self.core.chain:
            raise NotImplementedError(f"matrix functions of feature-space cores ({self.core}) are not implemented")
        from ..objects.functionals import Norm, Tr
        X = self.core.data
        m = self.core.m
        if isinstance(X.K, Identity):
            S = X.Sigma
            u = Norm(S) + sp.sqrt(Tr(S * S) / m)
            edge = u * (1 + Tr(S * (u * Identity(S.shape[0]) - S).inverse()) / m)
        else:
            edge = Norm(X.Sigma) * Norm(X.K) * (1 + sp.sqrt(X.d / m)) ** 2
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
