"""Draws of the random objects, and the nodes that read them.

Laws (objects layer, docs/api.md):

* ``GaussianData`` ``n×d``: ``X = K^{1/2} Z Σ^{1/2} + 1·meanᵀ``, ``Z`` iid
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
"""
from __future__ import annotations

import numpy as np
from sympy import Identity, ZeroMatrix

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


def stream(seed_seq, trial, j):
    child = np.random.SeedSequence(seed_seq.entropy, spawn_key=tuple(seed_seq.spawn_key) + (trial, j),
                                   pool_size=seed_seq.pool_size)
    return np.random.Generator(np.random.PCG64(child))


class Sampler:
    def __init__(self, program, objects):
        self.program, self.objects = program, objects
        self.laws = {}
        for obj in objects:
            if isinstance(obj, GaussianData):
                self.laws[obj] = dict(
                    Sigma=program.matrix(obj.Sigma),
                    K=None if isinstance(obj.K, Identity) else program.matrix(obj.K),
                    mean=None if isinstance(obj.mean, ZeroMatrix) else program.matrix(obj.mean))
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
            rng = stream(seed_seq, trial, j)
            if isinstance(obj, GaussianData):
                n, d = b.dim_value(obj.n), b.dim_value(obj.d)
                x = _apply(self.factor(obj, "Sigma", ctx), rng.standard_normal((n, d)), side="right")
                if self.laws[obj]["K"] is not None:
                    x = _apply(self.factor(obj, "K", ctx), x, side="left")
                if self.laws[obj]["mean"] is not None:
                    x += self.factor(obj, "mean", ctx)[None, :]
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
