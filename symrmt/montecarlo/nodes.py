"""Nodes of a compiled expression: each evaluates one SymPy sub-expression
on one draw and memoises the result.

Memo scope follows what a node depends on: a node free of random objects is
kept for the whole run (``Σ^{1/2}``, the eigenbasis of a deterministic
matrix), a random one for one draw; a node that does not depend on the
array-valued bindings is shared by all blocks of the grid (the random core's
eigendecomposition is computed once per draw, whatever the grid).
"""
from __future__ import annotations

import numpy as np

from . import values as V


class Context:
    """One draw: sampled arrays, the current grid block, the memo."""

    def __init__(self, program, draws, plan, record=None):
        self.program, self.draws, self.plan, self.record = program, draws, plan, record
        self.memo = {}
        self.block = (0, program.bound.size)


class Node:
    random = False
    batched = False

    def __call__(self, ctx):
        memo = ctx.memo if self.random else ctx.program.persistent
        key = (id(self), ctx.block if self.batched else None)
        try:
            return memo[key]
        except KeyError:
            out = memo[key] = self.compute(ctx)
            return out

    def compute(self, ctx):  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- scalars
class SConst(Node):
    def __init__(self, value):
        self.value = np.asarray(value, dtype=complex if isinstance(value, complex) else float)

    def compute(self, ctx):
        return self.value


class SSym(Node):
    def __init__(self, name, batched):
        self.name, self.batched = name, batched

    def compute(self, ctx):
        v = ctx.program.bound.scalars[self.name]
        return v[ctx.block[0]:ctx.block[1]] if v.ndim else v


class SFunc(Node):
    """A scalar SymPy expression lambdified over its leaves."""

    def __init__(self, fn, children, expr):
        self.fn, self.children, self.expr = fn, children, expr

    def compute(self, ctx):
        args = [c(ctx) for c in self.children]
        try:
            with np.errstate(all="ignore"):  # non-finite draws are counted and reported
                return np.asarray(self.fn(*args))
        except (NameError, TypeError) as exc:
            raise NotImplementedError(f"monte_carlo: cannot evaluate {self.expr} numerically ({exc})") from None


class STrace(Node):
    """``Tr M`` (``Form`` and ``sympy.Trace`` too: a 1×1 trace is the entry)."""

    def __init__(self, child):
        self.child = child

    def compute(self, ctx):
        return V.trace(self.child(ctx))


class SNorm(Node):
    """``‖M‖``: the largest eigenvalue of a symmetric PSD matrix."""

    def __init__(self, child):
        self.child = child

    def compute(self, ctx):
        return V.largest_eigenvalue(self.child(ctx))


# ---------------------------------------------------------------- matrices
class MConst(Node):
    """A deterministic matrix bound by name."""

    def __init__(self, name, is_vector):
        self.name, self.is_vector = name, is_vector

    def compute(self, ctx):
        a = ctx.program.bound.matrices[self.name]
        if self.is_vector:
            return V.dense(a[:, None])
        return V.diag(a) if a.ndim == 1 else V.dense(a)


class MIdentity(Node):
    def __init__(self, k):
        self.k = k

    def compute(self, ctx):
        return V.identity(self.k)


class MZero(Node):
    def __init__(self, r, c):
        self.r, self.c = r, c

    def compute(self, ctx):
        return V.zero(self.r, self.c)


class MOnes(Node):
    def __init__(self, r, c):
        self.r, self.c = r, c

    def compute(self, ctx):
        return V.dense(np.ones((self.r, self.c)))


class MAdd(Node):
    def __init__(self, children):
        self.children = children

    def compute(self, ctx):
        # a sum of vectors is summed once here, so that its transpose and
        # every product using it share the explicit array (``values.collapse_thin``)
        return V.collapse_thin(V.add(*[c(ctx) for c in self.children]))


class MMul(Node):
    def __init__(self, coeff, children):
        self.coeff, self.children = coeff, children

    def compute(self, ctx):
        out = self.children[0](ctx)
        for c in self.children[1:]:
            out = V.matmul(out, c(ctx))
        return V.scale(out, self.coeff(ctx)) if self.coeff is not None else out


class MTranspose(Node):
    def __init__(self, child):
        self.child = child

    def compute(self, ctx):
        return V.transpose(self.child(ctx))


class MInverse(Node):
    def __init__(self, child):
        self.child = child

    def compute(self, ctx):
        return V.inverse(self.child(ctx))


class MIntPower(Node):
    def __init__(self, child, k):
        self.child, self.k = child, k

    def compute(self, ctx):
        return V.int_power(self.child(ctx), self.k)


class MFracPower(Node):
    """``B^s``, ``s`` real (a scalar node): via the eigenbasis of ``B``."""

    def __init__(self, child, exponent, what):
        self.child, self.exponent, self.what = child, exponent, what

    def compute(self, ctx):
        s = self.exponent(ctx)
        if not s.ndim and np.isfinite(s) and float(s) == int(float(s)):
            return V.int_power(self.child(ctx), int(float(s)))
        return V.frac_power(self.child(ctx), s, self.what)


class MFunction(Node):
    """``f(B)`` for symmetric ``B``: ``f`` on the eigenvalues of ``B`` (in its
    eigenbasis, so a grid of parameters of ``f`` costs one decomposition).
    ``fns``: ``f``, and for a removable singularity the cancelled form and
    the cancelled factor ``q`` (see ``values.eigen_apply``)."""

    def __init__(self, child, fns, params, what):
        self.child, self.fns, self.params, self.what = child, fns, params, what

    def compute(self, ctx):
        ps = [p(ctx) for p in self.params]
        return V.function(self.child(ctx), lambda e: V.eigen_apply(self.fns, e, ps), self.what)


class MSpectral(Node):
    """A symmetric core (``Σ̂`` in ``(Σ̂+λ)⁻¹``) as ``Diag(e, V)`` in its own
    eigenbasis, so that shifts, inverses and powers of it act on ``e``.

    Left as it is when it is already diagonal, depends on the grid, or is
    not symmetric (the algebra then falls back to dense linear algebra).
    """

    def __init__(self, child, key):
        self.child, self.key = child, key

    def compute(self, ctx):
        v = self.child(ctx)
        if V.as_diag(v) is not None or V.batched(v):
            return v
        want = self.key in ctx.plan.need_vectors
        thin = self.key in ctx.plan.thin_vectors      # eigenvectors kept factored (plan.py)
        size = v.shape[0]
        gram = _gram(v)
        if gram is not None:
            basis = V.Basis(self.key, size, gram=gram, want_vectors=want, on_vectors=ctx.record, thin=thin)
        else:
            a = V.materialize(v)
            if not V.is_symmetric(a):
                return v
            basis = V.Basis(self.key, size, matrix=(a + a.T) / 2, want_vectors=want, on_vectors=ctx.record,
                            thin=thin)
        if ctx.plan.standin:
            basis.stand_in()
        return V.diag(basis.values, basis)


def _gram(v):
    """``(Y, c)`` if ``v`` is the single term ``c·YᵀY`` (one array, twice)."""
    if len(v.terms) != 1:
        return None
    c, fs = v.terms[0]
    if len(fs) != 2 or not all(isinstance(f, V.Dense) for f in fs):
        return None
    a, b = fs[0].a, fs[1].a
    if a.ndim != 2 or b.ndim != 2 or c.ndim:
        return None
    ia, ib = a.__array_interface__, b.__array_interface__
    same = (ia["data"][0] == ib["data"][0] and a.shape == b.shape[::-1]
            and a.strides == b.strides[::-1])
    return (b, float(c)) if same else None
