"""Draws of the random objects, and the nodes that read them.

Laws (objects layer, docs/api.md):

* ``GaussianData`` ``n×d``: drawn by its law family (:func:`law_of`; the
  families' modules in :mod:`symrmt.laws` hold the draws): white Wishart and
  correlated samples draw ``X = K^{1/2} Z Σ^{1/2} + 1·meanᵀ``, ``Z`` iid
  ``N(0,1)`` (``K = I``: iid rows);
* ``GaussianNoise`` ``n×1``: ``sqrt(variance)·K^{1/2} z``;
* ``RandomFeatures`` ``d×p``: iid ``N(0, 1/p)``;
* ``SampleMean(X) = Xᵀ1/n`` and ``SampleCovariance(X, ddof)`` — functions of
  the *same* draw of ``X``.

``K^{1/2}``, ``Σ^{1/2}`` are symmetric square roots, computed once per run
(a 1-D binding needs only ``sqrt`` of its entries). Each base object gets its
own stream ``SeedSequence(seed, spawn_key=(trial, j))``, ``j`` its rank in a
canonical order, so a trial's draw does not depend on which process runs it
nor on how many trials there are in total.

Gram sampling (``sampling="gram"``). When the rows of a set of objects —
``GaussianData`` ``X₁, X₂, …`` (``K = I``, mean 0) and ``GaussianNoise``
``ε₁, …`` (``K = I``) sharing one row dimension ``n`` — enter the expression
only through contractions over that dimension (``XᵀX``, ``Xᵀε``, ``εᵀε``,
``Tr(X A Xᵀ)``, … : see :func:`gram_groups` for the exact rule), the
expression is a function of the Gram matrix ``MᵀM`` of ``M = [Z₁ … ε₁ …]``
(``Z_k`` the standard normal cores, ``n×D``) alone, and ``M`` is replaced by
an ``m×D`` matrix ``R``, ``m = min(n, D)``, with ``RᵀR`` equal to ``MᵀM`` *in
distribution* (the Bartlett decomposition, :func:`bartlett`). Exactness:

1. *Invariance.* Every node whose shape involves ``n`` is built from the
   objects by products, sums, transposes and positive integer powers, so
   under ``(X, ε) ↦ (QX, Qε)``, ``Q`` orthogonal ``n×n``, an ``n×k`` node
   becomes ``Q·N``, a ``k×n`` node ``N·Qᵀ``, an ``n×n`` node ``Q N Qᵀ``, and
   a node without ``n`` is unchanged (each ``n``-index is contracted as
   ``QᵀQ = I``; ``Tr(Q N Qᵀ) = Tr N``). The expression is therefore a
   function of ``MᵀM``: two ``n×D`` matrices with equal Gram matrices differ
   by an orthogonal ``Q``.
2. *Padding.* ``R̄ = [R; 0]`` (``n×D``) has ``R̄ᵀR̄ = RᵀR``; evaluating with
   ``R`` instead of ``R̄`` drops zero rows, which contribute nothing to a
   contraction or to a trace. So the value on ``R`` is the value on ``R̄``.
3. *Law.* ``RᵀR =_d MᵀM`` (Bartlett), hence the value on ``R`` has the law
   of the value on ``M`` — jointly for all observables of one draw.

Cost: about ``D²/2`` normals and ``D`` chi variates instead of ``n·D``
normals, and the Gram matrix of ``m ≤ n`` rows. ``Xᵀε`` given ``XᵀX`` is
then ``Rᵀg`` with ``g`` the ``ε`` column, i.e. ``N(0, σ²XᵀX)`` as it should.
"""
from __future__ import annotations

import numpy as np
import sympy as sp
from sympy import Identity, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..objects.functionals import Form, Tr
from ..objects.matrices import (GaussianData, GaussianNoise, RandomFeatures, SampleCovariance,
                                SampleMean)
from . import values as V
from .nodes import Node

BASE = (GaussianData, GaussianNoise, RandomFeatures)


def base_objects(rand):
    """The independently drawn objects behind ``rand``, in canonical order."""
    base = set()
    for r in rand:
        if isinstance(r, (SampleMean, SampleCovariance)):
            base.add(r.data)
        elif isinstance(r, BASE):
            base.add(r)
        else:
            raise NotImplementedError(f"monte_carlo: cannot sample random object {r!r} "
                                      f"({type(r).__name__})")
    return sorted(base, key=lambda r: (type(r).__name__, r.name, r.uid))


def law_of(obj):
    """The law family that draws the data block ``obj`` (registry keyed by
    kind in the equivalence layer, :func:`~symrmt.equivalence.laws.family_for_object`;
    each family's module in :mod:`symrmt.laws` holds its draw), or ``None``."""
    from ..equivalence.laws import family_for_object
    return family_for_object(obj)


def stream(seed_seq, trial, j):
    child = np.random.SeedSequence(seed_seq.entropy, spawn_key=tuple(seed_seq.spawn_key) + (trial, j),
                                   pool_size=seed_seq.pool_size)
    return np.random.Generator(np.random.PCG64(child))


# ---------------------------------------------------------------- Gram sampling
SAMPLING = ("direct", "gram")


def _related(shape, r):
    """Whether a shape involves the row dimension ``r`` (equal to it, or
    sharing a symbol with it: conservative)."""
    rs = r.free_symbols
    for s in shape:
        s = sp.sympify(s)
        if s == r or (rs and s.free_symbols & rs):
            return True
    return False


def _structural(node):
    """Operations under which ``n``-indices stay contracted between the
    objects themselves (see the module docstring, step 1)."""
    if isinstance(node, (MatMul, MatAdd, Transpose)):
        return True
    return isinstance(node, MatPow) and node.args[1].is_Integer and node.args[1] > 0


def _eligible(obj):
    """``None`` if ``obj`` can be Gram-sampled by law, else why not."""
    if isinstance(obj, GaussianData):
        if not isinstance(obj.K, Identity):
            return f"{obj.name} has correlated rows (K)"
        if not isinstance(obj.mean, ZeroMatrix):
            return f"{obj.name} has a mean"
        law = law_of(obj)
        if law is None or not law.gram:
            return f"{obj.name} is drawn by the {getattr(law, 'kind', None)!r} law, not Gram-samplable"
        return None
    if isinstance(obj, GaussianNoise):
        return None if isinstance(obj.K, Identity) else f"{obj.name} has correlated entries (K)"
    return f"{obj.name} is not Gaussian data or noise"


def _check_group(observables, r, members):
    """``None`` if every use of the row dimension ``r`` in ``observables`` is a
    contraction between ``members`` (step 1 of the module docstring), else the
    reason (naming the sub-expression) why not."""
    seen = set()

    def visit(node):
        if node in seen:
            return None
        seen.add(node)
        if isinstance(node, MatrixSymbol):
            if node in members:
                return None
            if isinstance(node, (SampleMean, SampleCovariance)) and node.data in members:
                return f"{node} uses the rows of {node.data.name} one by one"
            if _related(node.shape, r):
                return f"{node} has the dimension {r}"
            return None  # a symbol's law (Σ, K, mean) is not part of the expression
        structural = False
        if isinstance(node, MatrixExpr):
            structural = _structural(node)
            if not structural and _related(node.shape, r):
                return f"{node} ({type(node).__name__}) acts on the {r}-dimensional side"
        if not (structural or isinstance(node, (Tr, Form, sp.Trace))):
            for a in node.args:
                if isinstance(a, MatrixExpr) and _related(a.shape, r):
                    return f"{node} ({type(node).__name__}) takes the {r}-dimensional {a}"
        for a in node.args:
            if isinstance(a, sp.Basic):
                why = visit(a)
                if why:
                    return why
        return None

    for e in observables:
        why = visit(sp.sympify(e))
        if why:
            return why
    return None


def gram_groups(observables, objects):
    """``(groups, refused)``: ``groups`` a list of tuples of base objects (in
    canonical order) sharing a row dimension that may be Gram-sampled
    exactly; ``refused`` maps each other row dimension of Gaussian data/noise
    to the reason (naming the sub-expression) it is sampled directly.

    Rule: every object of row dimension ``n`` is ``GaussianData`` with
    ``K = I`` and mean 0 or ``GaussianNoise`` with ``K = I``, none is used
    through ``sample_mean``/``sample_covariance``, no other matrix has a
    dimension involving ``n``, and every node whose shape involves ``n`` (and
    every node taking one as an argument) is a product, sum, transpose,
    positive integer power, trace or 1×1 form."""
    rows = {}
    for obj in objects:
        if isinstance(obj, (GaussianData, GaussianNoise)):
            rows.setdefault(sp.sympify(obj.shape[0]), []).append(obj)
    groups, refused = [], {}
    for r, members in rows.items():
        why = next((w for w in map(_eligible, members) if w), None)
        why = why or _check_group(observables, r, set(members))
        if why:
            refused[r] = why
        else:
            groups.append(tuple(members))
    return groups, refused


def bartlett(rng, n, widths, lower_first=True):
    """Blocks ``R_b`` (``m×w_b``, ``m = min(n, D)``, ``D = Σ w_b``) of an
    ``m×D`` matrix ``R = [R₁ … R_B]`` with ``RᵀR =_d ZᵀZ``, ``Z`` ``n×D`` iid
    ``N(0,1)`` (``ZᵀZ`` Wishart ``W_D(n, I)``).

    Bartlett decomposition: Gram–Schmidt on the columns of ``Z`` in some order
    ``k = 0, 1, …`` writes ``ZᵀZ = RᵀR`` with ``R`` upper trapezoidal in that
    order; its entries are independent, ``R_ik ~ N(0,1)`` for
    ``i < min(k, m)`` (the coordinates of column ``k`` on the earlier
    orthonormal directions: ``N(0,1)`` because the column is isotropic and
    independent of them) and ``R_kk ~ χ_{n−k}`` for ``k < m`` (the norm of its
    projection on the ``n − k``-dimensional complement), zero below. Any
    order of the columns and any orthogonal map of the rows keep
    ``RᵀR =_d ZᵀZ``. With ``lower_first`` and ``m ≥ w₁`` the first block's
    columns are processed last-to-first and its rows reversed, so that ``R₁``
    is lower triangular in its first ``w₁`` rows (zero below): ``R₁ᵀR₁ = LᵀL``
    is then formed by LAPACK ``lauum`` at a third of the cost of a general
    product. Its diagonal is ``L_jj ~ χ_{n−w₁+1+j}``, strictly lower entries
    ``N(0,1)``."""
    D = int(sum(widths))
    m = min(int(n), D)
    chi_steps = np.arange(min(m, D))
    chi = np.sqrt(rng.chisquare(int(n) - chi_steps))          # R_kk ~ χ_{n−k}, k = 0 … m−1
    out, off = [], 0
    for b, w in enumerate(widths):
        A = np.zeros((m, w))
        if b == 0 and lower_first and m >= w:
            # column j processed at step k = w−1−j; rows reversed: the diagonal lands on (j, j)
            A[np.arange(w), np.arange(w)] = chi[w - 1 - np.arange(w)]
            z = rng.standard_normal(w * (w - 1) // 2)
            p = 0
            for i in range(1, w):
                A[i, :i] = z[p:p + i]
                p += i
        else:
            top = min(off, m)
            if top:
                A[:top] = rng.standard_normal((top, w))            # rows of the earlier steps
            z = rng.standard_normal(sum(min(j, m - off) for j in range(w)) if off < m else 0)
            p = 0
            for j in range(w):
                k = off + j
                cnt = min(j, m - off) if off < m else 0             # rows off … off+cnt−1 above the diagonal
                if cnt:
                    A[off:off + cnt, j] = z[p:p + cnt]
                    p += cnt
                if k < m:
                    A[k, j] = chi[k]
        out.append(A)
        off += w
    return out


class Sampler:
    """Draws of ``objects`` for ``program``. ``sampling="gram"``: the groups
    of :func:`gram_groups` (found in ``observables``) are drawn through
    :func:`bartlett`, the rest directly; ``"direct"``: every object as its
    law is written."""

    def __init__(self, program, objects, observables=(), sampling="direct"):
        if sampling not in SAMPLING:
            raise ValueError(f"monte_carlo: sampling must be one of {SAMPLING}, got {sampling!r}")
        self.program, self.objects, self.sampling = program, objects, sampling
        self.groups, self.refused = (gram_groups(observables, objects) if sampling == "gram"
                                     else ([], {}))
        self._leader = {g[0]: g for g in self.groups}
        self._grouped = {o for g in self.groups for o in g}
        self.laws = {}
        self.families = {}       # data block → its law family (the per-law draw)
        for obj in objects:
            if isinstance(obj, GaussianData):
                law = law_of(obj)
                if law is None:
                    raise NotImplementedError(f"monte_carlo: no registered law family draws {obj.name} "
                                              f"({type(obj).__name__})")
                self.families[obj] = law
                self.laws[obj] = law.sampling_law(program, obj)
            elif isinstance(obj, GaussianNoise):
                self.laws[obj] = dict(K=None if isinstance(obj.K, Identity) else program.matrix(obj.K))
        self._factors = {}

    def reset(self):
        self._factors.clear()

    def factor(self, obj, part, ctx):
        """``Σ^{1/2}``/``K^{1/2}`` as ``('diag', r)`` or ``('dense', R)``; the mean as a vector."""
        key = (obj, part)
        if key not in self._factors:
            node = self.laws[obj][part]
            what = f"{obj.name}: {part}"
            v = node(ctx)
            if V.batched(v):
                raise ValueError(f"monte_carlo: the law of {obj.name} ({part}) depends on array-valued "
                                 "bindings; bind the scalars that enter a law to single values")
            if part == "mean":
                out = V.materialize(v).reshape(-1)
            else:
                out = sqrt_factor(v, what)
            self._factors[key] = out
        return self._factors[key]

    def draw(self, ctx, seed_seq, trial):
        b = self.program.bound
        out = {}
        for j, obj in enumerate(self.objects):
            if obj in self._grouped:
                if obj in self._leader:  # the group's stream is its first member's
                    out.update(self._draw_group(self._leader[obj], ctx, stream(seed_seq, trial, j)))
                continue
            rng = stream(seed_seq, trial, j)
            if obj in self.families:
                x = self.families[obj].draw(self, obj, ctx, rng)
            elif isinstance(obj, GaussianNoise):
                x = rng.standard_normal((b.dim_value(obj.rows), 1))
                if self.laws[obj]["K"] is not None:
                    x = _apply(self.factor(obj, "K", ctx), x, side="left")
            else:
                p = b.dim_value(obj.cols)
                x = rng.standard_normal((b.dim_value(obj.rows), p))
                x *= 1.0 / np.sqrt(p)
            out[obj] = x
        return out


    def _draw_group(self, group, ctx, rng):
        """``{obj: array}`` with ``m = min(n, D)`` rows for a Gram group:
        the Bartlett blocks, ``Σ^{1/2}`` applied on the right of each data
        block (for a diagonal ``Σ`` a column scaling, which keeps the first
        block lower triangular); noise columns stay standard (``MNoise``
        applies ``sqrt(variance)``)."""
        b = self.program.bound
        n = b.dim_value(group[0].shape[0])
        widths = [b.dim_value(o.shape[1]) for o in group]
        blocks = bartlett(rng, n, widths)
        out = {}
        for i, (obj, A) in enumerate(zip(group, blocks)):
            if isinstance(obj, GaussianData):
                f = self.factor(obj, "Sigma", ctx)
                A = _apply(f, A, side="right")
                if i == 0 and f[0] == "diag" and A.shape[0] >= A.shape[1]:
                    V.mark_lower(A)
            out[obj] = A
        return out


def sqrt_factor(v, what):
    d = V.as_diag(v)
    if d is not None and (d[1] is None or isinstance(d[1], str)):
        f = np.asarray(d[0], dtype=float)
        if np.any(f < 0):
            raise ValueError(f"monte_carlo: {what} has a negative eigenvalue ({f.min():.3g})")
        return ("diag", np.sqrt(f))
    a = V.materialize(v)
    if not V.is_symmetric(a):
        raise ValueError(f"monte_carlo: {what} must be symmetric positive semi-definite")
    e, U = np.linalg.eigh((a + a.T) / 2)
    return ("dense", (U * np.sqrt(V.psd_power(e, 1.0, what))) @ U.T)


def _apply(factor, x, side):
    kind, r = factor
    if kind == "diag":
        x *= r if (side == "right" or not r.ndim) else r[:, None]
        return x
    return x @ r if side == "right" else r @ x


# ---------------------------------------------------------------- nodes
class MRandom(Node):
    """A drawn ``GaussianData`` or ``RandomFeatures``."""

    random = True

    def __init__(self, obj):
        self.obj = obj

    def compute(self, ctx):
        return V.dense(ctx.draws[self.obj])


class MNoise(Node):
    random = True

    def __init__(self, obj, variance, batched):
        self.obj, self.variance, self.batched = obj, variance, batched

    def compute(self, ctx):
        var = self.variance(ctx)
        if np.any(var < 0):
            raise ValueError(f"monte_carlo: the variance of {self.obj.name} is negative ({np.min(var):.3g})")
        return V.dense(ctx.draws[self.obj], c=np.sqrt(var))


class MSampleMean(Node):
    random = True

    def __init__(self, obj):
        self.obj = obj

    def compute(self, ctx):
        return V.dense(ctx.draws[self.obj.data].mean(axis=0)[:, None])


class MSampleCovariance(Node):
    """``c·XcᵀXc`` kept as a Gram product (its eigenvalues come from the
    smaller of ``XcᵀXc`` and ``XcXcᵀ``)."""

    random = True

    def __init__(self, obj):
        self.obj = obj

    def compute(self, ctx):
        X = ctx.draws[self.obj.data]
        n = X.shape[0]
        if self.obj.ddof == 1:
            xc, c = X - X.mean(axis=0), 1.0 / (n - 1)
        else:
            sampler = ctx.program.sampler
            has_mean = sampler.laws[self.obj.data]["mean"] is not None
            xc = X - sampler.factor(self.obj.data, "mean", ctx)[None, :] if has_mean else X
            c = 1.0 / n
        return V.Mat((xc.shape[1],) * 2, [(np.asarray(c), (V.Dense(xc.T), V.Dense(xc)))])


class MStack(Node):
    """``sr.vstack(A₁, A₂, …)``: the blocks' values concatenated along rows
    (each block evaluated on the same draw as everywhere else)."""

    def __init__(self, children):
        self.children = children
        self.random = any(c.random for c in children)
        self.batched = any(c.batched for c in children)

    def compute(self, ctx):
        parts = [V.materialize(c(ctx)) for c in self.children]
        nb = max((p.shape[0] for p in parts if p.ndim == 3), default=None)
        if nb is not None:
            parts = [p if p.ndim == 3 else np.broadcast_to(p, (nb,) + p.shape) for p in parts]
        return V.dense(np.concatenate(parts, axis=-2))
